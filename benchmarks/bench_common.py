"""The benchmark workload and the accuracy metrics shared by every peer.

The cohort is a fixed, deterministic mixed-regimen cohort built with popsim's public API:
patient ``i`` gets TRT product ``i % 3`` (enanthate 200 mg / 7 d, cypionate 150 mg / 14 d,
gel 50 mg / 1 d), recovery protocol ``(i // 3) % 3`` (none; hCG 1500 IU every 3.5 d +
clomiphene 25 mg daily for 6 months; anastrozole 1 mg every 3.5 d for 6 months, both
from the first missed TRT dose) and TRT duration ``DURATIONS[(i // 9) % len(DURATIONS)]``
(1-5 years in the full run), followed by at least 2 years off; everybody is simulated over
the same horizon with daily outputs. Parameters are ``popsim.default_parameters`` with a
deterministic per-patient spread (age, baselines) that does not depend on the cohort size,
so patient ``i`` is the same man in every peer and every run.

Nothing here imports JAX at module level except through popsim (the orchestrator imports
this module too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DAYS_PER_YEAR = 365.25
HALF_YEAR_DAYS = DAYS_PER_YEAR / 2.0

PRODUCTS = (("enanthate", 200.0, 7.0), ("cypionate", 150.0, 14.0), ("gel", 50.0, 1.0))
PROTOCOLS = ("none", "hcg1500_clomiphene25_6mo", "anastrozole1_6mo")
# Observables of the timed runs (what popsim.outcomes needs) and of the accuracy check.
TIMED_OBSERVABLES = ("sperm_concentration_m_ml", "total_testosterone_nmol_l", "lh_iu_l")
ACCURACY_OBSERVABLES = ("total_testosterone_nmol_l", "lh_iu_l", "fsh_iu_l", "sperm_concentration_m_ml")
# Recovery criterion whose time difference is reported (days from the first missed dose).
RECOVERY_THRESHOLD_M_ML = 15.0
# Accuracy targets of popsim's default settings (docs/accuracy.md).
TARGET_RELATIVE_ERROR = 1e-3
TARGET_RECOVERY_DAYS = 1.0
# Relative-error floor as a fraction of max |reference| of a trajectory (popsim.verify.accuracy).
RELATIVE_FLOOR = 1e-6
# Width of the compiled dose table (TRT row + hCG row + two clomiphene rows).
N_ENTRIES = 4


@dataclass(frozen=True)
class Horizon:
    """Simulated horizon and the TRT durations that fit in it (whole years where possible)."""

    years: float
    recovery_years: float
    durations_years: tuple[float, ...]

    @property
    def days(self) -> float:
        return self.years * DAYS_PER_YEAR


def horizon(years: float) -> Horizon:
    """TRT durations for a horizon of ``years``: 1..min(5, years - 2) years then >= 2 years off
    (``years`` >= 3), or half the horizon on TRT and half off for shorter horizons."""
    years = float(years)
    if years <= 0:
        raise ValueError(f"years must be > 0, got {years}")
    recovery = 2.0 if years >= 3.0 else years / 2.0
    longest = years - recovery
    durations = tuple(float(d) for d in range(1, int(min(5.0, math.floor(longest + 1e-9))) + 1)) or (longest,)
    return Horizon(years, recovery, durations)


def output_times(h: Horizon) -> np.ndarray:
    """Daily output grid 0, 1, ..., floor(horizon days)."""
    return np.arange(0.0, math.floor(h.days + 1e-9) + 0.5, 1.0)


def _first_missed_dose_day(duration_days: float, interval_days: float) -> float:
    n = max(int(math.ceil(duration_days / interval_days - 1e-9)), 0)
    return n * interval_days


def patient_design(i: int, h: Horizon) -> tuple[int, int, float]:
    """(product index, protocol index, TRT duration in years) of patient ``i``."""
    return i % 3, (i // 3) % 3, h.durations_years[(i // 9) % len(h.durations_years)]


def build_regimens(indices, h: Horizon):
    """popsim Regimens of the patients ``indices`` (imports popsim lazily)."""
    import popsim

    regimens = []
    for i in indices:
        product_index, protocol_index, duration_years = patient_design(int(i), h)
        product, dose, interval = PRODUCTS[product_index]
        duration = duration_years * DAYS_PER_YEAR
        trt = popsim.TRTCourse(product, dose, "mg", interval, duration)
        start = _first_missed_dose_day(duration, interval)
        drugs = []
        if PROTOCOLS[protocol_index].startswith("hcg"):
            drugs = [popsim.DrugCourse("hcg", 1500, "IU", 3.5, start, start + HALF_YEAR_DAYS),
                     popsim.DrugCourse("clomiphene", 25, "mg", 1.0, start, start + HALF_YEAR_DAYS)]
        elif PROTOCOLS[protocol_index].startswith("anastrozole"):
            drugs = [popsim.DrugCourse("anastrozole", 1, "mg", 3.5, start, start + HALF_YEAR_DAYS)]
        regimens.append(popsim.Regimen(trt=[trt], drugs=drugs))
    return regimens


def _low_discrepancy(i: np.ndarray, alpha: float) -> np.ndarray:
    """Additive recurrence in (0, 1): deterministic, well spread, independent of n."""
    return np.mod(0.5 + alpha * (i + 1), 1.0)


def build_parameters(indices) -> dict[str, np.ndarray]:
    """``popsim.default_parameters`` with a deterministic spread of age and baselines."""
    from scipy.special import ndtri

    import popsim

    i = np.asarray(indices, dtype=np.float64)
    params = popsim.default_parameters(i.size)
    z = {name: ndtri(_low_discrepancy(i, a)) for name, a in (
        ("t", 0.7548776662), ("lh", 0.5698402910), ("sperm", 0.4142135624), ("shbg", 0.3247179572))}
    params["age_years"] = 25.0 + 35.0 * _low_discrepancy(i, 0.6180339887)
    params["t_base_nmol_l"] = params["t_base_nmol_l"] * np.exp(0.2 * z["t"])
    params["lh_base_iu_l"] = params["lh_base_iu_l"] * np.exp(0.25 * z["lh"])
    params["sperm_base_m_ml"] = params["sperm_base_m_ml"] * np.exp(0.4 * z["sperm"])
    params["shbg_base_nmol_l"] = params["shbg_base_nmol_l"] * np.exp(0.25 * z["shbg"])
    return params


def build_cohort(indices, h: Horizon):
    """``(regimens, DoseTable, params, first_missed_dose_day)`` of the patients ``indices``."""
    from popsim.dosing.table import compile_regimens, trt_summary

    regimens = build_regimens(indices, h)
    doses = compile_regimens(regimens, n_entries=N_ENTRIES)
    return regimens, doses, build_parameters(indices), trt_summary(regimens).first_missed_dose_day


def cohort_species() -> tuple[int, ...]:
    """PK species any patient of the cohort is dosed with (fixed, so one compiled program
    serves every subset)."""
    from popsim.model.pk import SPECIES_INDEX

    names = ("testosterone_enanthate", "testosterone_cypionate", "testosterone_gel", "hcg",
             "clomiphene_trans", "zuclomiphene", "anastrozole")
    return tuple(sorted(SPECIES_INDEX[n] for n in names))


def accuracy_subset(quick: bool) -> list[int]:
    """Patients on which accuracy is measured (and the slow peers are timed): quick: one per
    product, each with a different protocol; full: every product x protocol with TRT
    durations cycling through 1-5 years."""
    if quick:
        return [0, 4, 8]
    return [c + 9 * (c % 5) for c in range(9)]


def describe(h: Horizon) -> str:
    return (f"{h.years:g}-year horizon, daily outputs; TRT {', '.join(f'{d:g}' for d in h.durations_years)} y "
            f"x {{enanthate 200 mg/7 d, cypionate 150 mg/14 d, gel 50 mg/1 d}} x protocols {{none, hCG 1500 IU/3.5 d + "
            f"clomiphene 25 mg/d 6 mo, anastrozole 1 mg/3.5 d 6 mo}} from the first missed dose")


# ----------------------------------------------------------------------------- accuracy

def relative_error(sim: np.ndarray, ref: np.ndarray, floor: float = RELATIVE_FLOOR) -> np.ndarray:
    """Pointwise ``|sim - ref| / max(|ref|, floor * max_t |ref|)`` (as popsim.verify.accuracy)."""
    ref = np.asarray(ref, np.float64)
    scale = np.maximum(np.abs(ref), floor * np.max(np.abs(ref), axis=-1, keepdims=True))
    scale = np.where(scale > 0, scale, 1.0)
    return np.abs(np.asarray(sim, np.float64) - ref) / scale


def recovery_days(times: np.ndarray, sperm: np.ndarray, origin: np.ndarray):
    """Days from the first missed dose to latent sperm >= 15 M/mL (interpolated), and observed."""
    from popsim.outcomes.endpoints import first_crossing

    ev = first_crossing(times, np.asarray(sperm, np.float64), origin, RECOVERY_THRESHOLD_M_ML, rising=True,
                        interpolate=True)
    return np.asarray(ev.time_days, float), np.asarray(ev.observed, bool)


def compare(times, sim: dict, ref: dict, origin, patients=None) -> dict:
    """Worst errors of ``sim`` against ``ref`` (both ``{observable: (n, n_times)}``).

    Returns ``{"max_rel_error": {obs: float}, "worst_at": {obs: {"patient", "day"}},
    "worst_rel_error": float, "recovery_diff_days": float, "per_patient_recovery_diff_days":
    [...]}``; the recovery difference is 0 where both are censored and inf where only one is.
    ``patients`` names the rows (cohort indices) in ``worst_at``.
    """
    times = np.asarray(times, float)
    rel, worst_at = {}, {}
    for k in ACCURACY_OBSERVABLES:
        if not np.all(np.isfinite(sim[k])):
            rel[k] = float("inf")
            continue
        err = relative_error(sim[k], ref[k])
        row, col = np.unravel_index(int(np.argmax(err)), err.shape)
        rel[k] = float(err[row, col])
        worst_at[k] = {"patient": int(patients[row]) if patients is not None else int(row), "day": float(times[col])}
    ts, os_ = recovery_days(times, sim["sperm_concentration_m_ml"], origin)
    tr, or_ = recovery_days(times, ref["sperm_concentration_m_ml"], origin)
    diff = np.where(os_ & or_, np.abs(ts - tr), np.where(os_ == or_, 0.0, np.inf))
    return {"max_rel_error": rel, "worst_at": worst_at, "worst_rel_error": max(rel.values()),
            "recovery_diff_days": float(np.max(diff)),
            "per_patient_recovery_diff_days": [float(d) for d in diff],
            "reference_recovery_days": [float(t) if o else None for t, o in zip(tr, or_)]}


def meets(errors: dict, target_rel: float, target_days: float) -> bool:
    return errors["worst_rel_error"] <= target_rel and errors["recovery_diff_days"] <= target_days


# Tolerance ladder of the adaptive peers: rtol, with atol = ATOL_PER_RTOL * rtol (the states
# are normalised to 1 at baseline; germ-cell stages fall to ~1e-6 during suppression).
RTOL_LADDER = tuple(float(f"{m}e{e}") for e in range(-3, -10, -1) for m in (5, 2, 1))[1:]  # 2e-3, 1e-3, 5e-4, ..., 1e-9
ATOL_PER_RTOL = 1e-3


def calibrate(solve, start_rtol: float, target_rel: float, target_days: float, max_trials: int = 6):
    """Loosest rtol of RTOL_LADDER whose errors meet the targets, searched from ``start_rtol``.

    Args:
        solve: ``fn(rtol, atol) -> (errors dict, seconds)`` on the accuracy subset.

    Returns:
        ``(rtol, atol, errors, seconds, trials, matched)``: the chosen tolerance, its errors and
        run time, every trial ``[{rtol, atol, worst_rel_error, recovery_diff_days, seconds}]``,
        and whether the targets were met (else the tightest tolerance tried).
    """
    ladder = list(RTOL_LADDER)
    k = int(np.argmin([abs(math.log(r / start_rtol)) for r in ladder]))
    trials, results = [], {}

    def run(index):
        rtol = ladder[index]
        atol = rtol * ATOL_PER_RTOL
        errors, seconds = solve(rtol, atol)
        ok = meets(errors, target_rel, target_days)
        results[index] = (rtol, atol, errors, seconds, ok)
        trials.append({"rtol": rtol, "atol": atol, "worst_rel_error": errors["worst_rel_error"],
                       "recovery_diff_days": errors["recovery_diff_days"], "seconds": seconds, "meets": ok})
        return ok

    ok = run(k)
    step = -1 if ok else 1  # looser while it passes, tighter while it fails
    while len(trials) < max_trials:
        nxt = k + step
        if nxt < 0 or nxt >= len(ladder):
            break
        ok_next = run(nxt)
        if step == -1 and not ok_next:
            break
        k = nxt
        if step == 1 and ok_next:
            break
    passing = [i for i, r in results.items() if r[4]]
    best = min(passing) if passing else max(results)
    rtol, atol, errors, seconds, matched = results[best]
    return rtol, atol, errors, seconds, trials, matched
