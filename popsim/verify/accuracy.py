"""Accuracy of the population integrator against the tight-tolerance reference.

The population integrator (popsim.solve.integrator, fixed-step RK4 with exact dose
times) is compared with popsim.solve.reference (diffrax Dopri8, float64, rtol 1e-10,
atol 1e-12, PK chains as ODE states with dose jumps) for one typical patient
(``default_parameters``) per regimen of ``ACCURACY_REGIMENS``, which together dose every
TRT product and every protocol drug.

Two kinds of error are reported per regimen:

* the worst relative error over the output grid of each hormone of ``HORMONES``:
  ``max_t |sim(t) - ref(t)| / max(|ref(t)|, 1e-6 * max_t |ref|)`` (dimensionless);
* the absolute difference, in days, of recovery times measured from the first missed
  TRT dose (``trt_summary(...).first_missed_dose_day``) for each criterion of
  ``RECOVERY_CRITERIA``: latent sperm concentration >= 1, 5, 15, 20 M/mL and total
  testosterone >= 10.4 nmol/L, linearly interpolated between output times. A time that
  is censored in both solutions counts as equal (difference 0); censored in one only
  gives an infinite difference.

The reference needs 64-bit JAX: set ``JAX_ENABLE_X64=1`` before jax is first imported.
Pure NumPy/JAX; nothing here imports xarray or pandas.
"""

from __future__ import annotations

import time
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from popsim.dosing.regimen import DrugCourse, Regimen, TRTCourse
from popsim.dosing.table import DoseTable, compile_regimens, trt_summary
from popsim.model.parameters import default_parameters
from popsim.outcomes.endpoints import first_crossing
from popsim.solve.reference import reference_solution
from popsim.solve.run import iterate_chunks
from popsim.solve.settings import SolverSettings
from popsim.units import DAYS_PER_MONTH

# Hormones whose relative error is reported (canonical units, popsim.units).
HORMONES: tuple[str, ...] = (
    "total_testosterone_nmol_l", "free_testosterone_pmol_l", "lh_iu_l", "fsh_iu_l",
    "estradiol_pg_ml", "inhibin_b_pg_ml", "itt_nmol_l", "shbg_nmol_l",
)

# Recovery criteria: name -> (observable, threshold in the observable's unit).
RECOVERY_CRITERIA: dict[str, tuple[str, float]] = {
    "sperm_ge_1_m_ml": ("sperm_concentration_m_ml", 1.0),
    "sperm_ge_5_m_ml": ("sperm_concentration_m_ml", 5.0),
    "sperm_ge_15_m_ml": ("sperm_concentration_m_ml", 15.0),
    "sperm_ge_20_m_ml": ("sperm_concentration_m_ml", 20.0),
    "total_t_ge_10_4_nmol_l": ("total_testosterone_nmol_l", 10.4),
}

# Accuracy targets of the default settings.
TARGET_RELATIVE_ERROR = 1e-3
TARGET_RECOVERY_DAYS = 1.0
# Relative-error floor, as a fraction of max |reference| of the trajectory (avoids 0/0).
RELATIVE_FLOOR = 1e-6
# Step that brings the gonadorelin regimens under the targets (measured with
# docs/accuracy.py, see docs/accuracy.md): each bolus switches the pituitary stimulus on
# within seconds (dose >> gonadorelin_ec50_ug), which the RK4 stages resolve only to
# first order in the step, so the error falls ~2x per halving of dt_days.
GONADORELIN_DT_DAYS = 1.0 / 48.0

_YEAR = 12 * DAYS_PER_MONTH  # 365.25 d
_HALF_YEAR = 6 * DAYS_PER_MONTH  # 182.625 d


def _after(course: TRTCourse) -> float:
    """First missed dose of a TRT course (day), i.e. when a follow-on protocol starts."""
    return float(trt_summary([Regimen(trt=[course])]).first_missed_dose_day[0])


def _regimens() -> dict[str, Regimen]:
    te = TRTCourse("enanthate", 200, "mg", 7, _YEAR)
    cyp = TRTCourse("cypionate", 150, "mg", 14, _YEAR)
    gel = TRTCourse("gel", 50, "mg", 1, _YEAR)
    und = TRTCourse("undecanoate", 1000, "mg", 70, _YEAR)
    t_te, t_cyp, t_gel, t_und = _after(te), _after(cyp), _after(gel), _after(und)
    return {
        "te_200mg_weekly_stop": Regimen(trt=[te]),
        "cypionate_then_hcg_clomiphene": Regimen(trt=[cyp], drugs=[
            DrugCourse("hcg", 1500, "IU", 3.5, t_cyp, t_cyp + _HALF_YEAR),
            DrugCourse("clomiphene", 25, "mg", 1, t_cyp, t_cyp + _HALF_YEAR)]),
        "gel_then_anastrozole_tamoxifen": Regimen(trt=[gel], drugs=[
            DrugCourse("anastrozole", 1, "mg", 3.5, t_gel, t_gel + _HALF_YEAR),
            DrugCourse("tamoxifen", 20, "mg", 1, t_gel, t_gel + _HALF_YEAR)]),
        "undecanoate_then_fsh_enclomiphene": Regimen(trt=[und], drugs=[
            DrugCourse("fsh", 150, "IU", 2.333, t_und, t_und + _HALF_YEAR),
            DrugCourse("enclomiphene", 25, "mg", 1, t_und, t_und + _HALF_YEAR)]),
        "te_with_hcg_preservation": Regimen(trt=[te], drugs=[
            DrugCourse("hcg", 500, "IU", 2, 0.0, _YEAR)]),
        "te_then_gonadorelin_clinic": Regimen(trt=[te], drugs=[
            DrugCourse("gonadorelin", 100, "ug", 3.5, t_te, t_te + _HALF_YEAR)]),
        "te_then_gonadorelin_pump": Regimen(trt=[te], drugs=[
            DrugCourse("gonadorelin", 10, "ug", 1.0 / 16.0, t_te, t_te + _HALF_YEAR)]),
    }


# name -> Regimen. TRT courses last 12 months (365.25 d) from day 0; a follow-on protocol
# starts at the first missed TRT dose and lasts 6 months (182.625 d); the hCG
# fertility-preservation course runs alongside TRT.
ACCURACY_REGIMENS: dict[str, Regimen] = _regimens()
GONADORELIN_REGIMENS: tuple[str, ...] = tuple(n for n in ACCURACY_REGIMENS if "gonadorelin" in n)
NON_GONADORELIN_REGIMENS: tuple[str, ...] = tuple(n for n in ACCURACY_REGIMENS if n not in GONADORELIN_REGIMENS)
# Widest dose table of ACCURACY_REGIMENS (clomiphene fills two rows); a fixed width lets
# every comparison reuse one compiled simulator.
N_ENTRIES = 4


class RegimenAccuracy(NamedTuple):
    """Accuracy of the population integrator for one regimen (one typical patient).

    Attributes:
        hormone_rel_error: ``{hormone: worst relative error over time}`` (dimensionless).
        hormone_worst_day: ``{hormone: output time of that worst error}`` (days).
        recovery_diff_days: ``{criterion: |t_sim - t_ref|}`` (days; 0 when censored in
            both, inf when censored in one only).
        recovery_sim_days, recovery_ref_days: ``{criterion: time from the first missed
            TRT dose}`` (days; NaN when censored).
    """

    hormone_rel_error: dict[str, float]
    hormone_worst_day: dict[str, float]
    recovery_diff_days: dict[str, float]
    recovery_sim_days: dict[str, float]
    recovery_ref_days: dict[str, float]

    @property
    def worst_hormone_error(self) -> float:
        """Largest relative error over every hormone."""
        return max(self.hormone_rel_error.values())

    @property
    def worst_hormone(self) -> str:
        """Hormone with the largest relative error."""
        return max(self.hormone_rel_error, key=self.hormone_rel_error.get)

    @property
    def worst_recovery_diff_days(self) -> float:
        """Largest recovery-time difference over every criterion (days)."""
        return max(self.recovery_diff_days.values())

    def meets(self, rel_error: float = TARGET_RELATIVE_ERROR, days: float = TARGET_RECOVERY_DAYS) -> bool:
        """Whether every hormone error is < ``rel_error`` and every recovery difference < ``days``."""
        return self.worst_hormone_error < rel_error and self.worst_recovery_diff_days < days


def output_times(horizon_days: float, output_step_days: float = 1.0) -> np.ndarray:
    """Output grid ``0, step, 2 step, ...`` up to ``horizon_days`` inclusive, ``(n_times,)``."""
    n = int(np.floor(horizon_days / output_step_days + 1e-9))
    return np.arange(n + 1, dtype=np.float64) * output_step_days


def _problem(regimen_names: Sequence[str]) -> tuple[list[Regimen], DoseTable, dict[str, np.ndarray], np.ndarray]:
    unknown = [n for n in regimen_names if n not in ACCURACY_REGIMENS]
    if unknown:
        raise KeyError(f"unknown accuracy regimens {unknown}; valid names are {sorted(ACCURACY_REGIMENS)}")
    regimens = [ACCURACY_REGIMENS[n] for n in regimen_names]
    doses = compile_regimens(regimens, N_ENTRIES)
    params = default_parameters(len(regimens))
    origin = trt_summary(regimens).first_missed_dose_day
    return regimens, doses, params, origin


_OBSERVED = HORMONES + ("sperm_concentration_m_ml",)
_REFERENCE_CACHE: dict[tuple, dict[str, np.ndarray]] = {}


def reference_outputs(regimen_names: Sequence[str], horizon_days: float,
                      output_step_days: float = 1.0) -> dict[str, np.ndarray]:
    """Reference trajectories ``{observable: (n_regimens, n_times)}`` (cached per call signature).

    Needs 64-bit JAX (``JAX_ENABLE_X64=1`` before jax is imported).
    """
    key = (tuple(regimen_names), float(horizon_days), float(output_step_days))
    if key not in _REFERENCE_CACHE:
        _, doses, params, _ = _problem(regimen_names)
        ref = reference_solution(params, doses, output_times(horizon_days, output_step_days))
        _REFERENCE_CACHE[key] = {k: np.asarray(ref[k], np.float64) for k in _OBSERVED}
    return _REFERENCE_CACHE[key]


def simulated_outputs(regimen_names: Sequence[str], horizon_days: float, dt_days: float | None,
                      precision: str = "float32", output_step_days: float = 1.0,
                      method: str = SolverSettings.method) -> dict[str, np.ndarray]:
    """Population-integrator trajectories ``{observable: (n_regimens, n_times)}`` (float64 copies).

    Raises:
        FloatingPointError: if the integrator flags a non-finite state.
    """
    _, doses, params, _ = _problem(regimen_names)
    settings = SolverSettings(dt_days=None if dt_days is None else float(dt_days), precision=precision, method=method)
    parts = list(iterate_chunks(params, doses, output_times(horizon_days, output_step_days), settings,
                                observables=_OBSERVED))
    failed = np.concatenate([c.failed for c in parts])
    if failed.any():
        bad = [n for n, f in zip(regimen_names, failed) if f]
        raise FloatingPointError(f"the population integrator failed (non-finite state) for {bad} "
                                 f"at method={method}, dt_days={settings.dt_days}, precision={precision}")
    return {k: np.concatenate([c.outputs[k] for c in parts]).astype(np.float64) for k in _OBSERVED}


def relative_error(sim: np.ndarray, ref: np.ndarray, floor: float = RELATIVE_FLOOR) -> np.ndarray:
    """Pointwise ``|sim - ref| / max(|ref|, floor * max_t |ref|)``, ``(n, n_times)``."""
    ref = np.asarray(ref, np.float64)
    scale = np.maximum(np.abs(ref), floor * np.max(np.abs(ref), axis=-1, keepdims=True))
    scale = np.where(scale > 0, scale, 1.0)
    return np.abs(np.asarray(sim, np.float64) - ref) / scale


def recovery_times(times_days: np.ndarray, outputs: Mapping[str, np.ndarray],
                   origin_days: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{criterion: (time_days, observed)}`` from the first missed dose, each ``(n,)``."""
    out = {}
    for name, (observable, threshold) in RECOVERY_CRITERIA.items():
        ev = first_crossing(times_days, outputs[observable], origin_days, threshold, rising=True, interpolate=True)
        out[name] = (np.asarray(ev.time_days, float), np.asarray(ev.observed, bool))
    return out


def recovery_difference(sim: tuple[np.ndarray, np.ndarray], ref: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``|t_sim - t_ref|`` per patient (days): 0 if censored in both, inf if in one only."""
    (ts, os_), (tr, or_) = sim, ref
    return np.where(os_ & or_, np.abs(ts - tr), np.where(os_ == or_, 0.0, np.inf))


def compare_outputs(regimen_names: Sequence[str], times_days: np.ndarray, sim: Mapping[str, np.ndarray],
                    ref: Mapping[str, np.ndarray]) -> dict[str, RegimenAccuracy]:
    """Per-regimen accuracy of ``sim`` against ``ref`` (both ``{observable: (n_regimens, n_times)}``)."""
    _, _, _, origin = _problem(regimen_names)
    times = np.asarray(times_days, float)
    errors = {h: relative_error(sim[h], ref[h]) for h in HORMONES}
    rec_sim = recovery_times(times, sim, origin)
    rec_ref = recovery_times(times, ref, origin)
    diffs = {c: recovery_difference(rec_sim[c], rec_ref[c]) for c in RECOVERY_CRITERIA}
    result = {}
    for i, name in enumerate(regimen_names):
        result[name] = RegimenAccuracy(
            hormone_rel_error={h: float(np.max(e[i])) for h, e in errors.items()},
            hormone_worst_day={h: float(times[np.argmax(e[i])]) for h, e in errors.items()},
            recovery_diff_days={c: float(d[i]) for c, d in diffs.items()},
            recovery_sim_days={c: float(t[i]) if o[i] else float("nan") for c, (t, o) in rec_sim.items()},
            recovery_ref_days={c: float(t[i]) if o[i] else float("nan") for c, (t, o) in rec_ref.items()},
        )
    return result


def compare_to_reference(regimen_names: Sequence[str] | None = None, horizon_days: float = 730.0,
                         dt_days: float | None = None, precision: str = SolverSettings.precision,
                         output_step_days: float = 1.0, method: str = SolverSettings.method
                         ) -> dict[str, RegimenAccuracy]:
    """Accuracy of the population integrator for the named regimens of ACCURACY_REGIMENS.

    Args:
        regimen_names: keys of ACCURACY_REGIMENS (default: all of them).
        horizon_days: simulate from day 0 (untreated steady state) to this day.
        dt_days: largest step (SolverSettings.dt_days; None = the method's default).
        precision: "float32" or "float64" (SolverSettings.precision).
        output_step_days: spacing of the output grid on which errors are measured.
        method: step method (SolverSettings.method).

    Returns:
        ``{regimen name: RegimenAccuracy}`` in the order of ``regimen_names``.

    Needs 64-bit JAX for the reference (``JAX_ENABLE_X64=1`` before jax is imported); the
    reference is computed once per (regimens, horizon, output step) and cached.
    """
    names = tuple(ACCURACY_REGIMENS) if regimen_names is None else tuple(regimen_names)
    ref = reference_outputs(names, horizon_days, output_step_days)
    sim = simulated_outputs(names, horizon_days, dt_days, precision, output_step_days, method)
    return compare_outputs(names, output_times(horizon_days, output_step_days), sim, ref)


def timed(fn, *args, **kwargs):
    """``(fn(*args, **kwargs), wall seconds)``."""
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start
