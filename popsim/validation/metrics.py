"""Model values of every published metric, with Monte Carlo standard errors.

Each ``metrics_<target>`` takes the StudyResults of that target's runs and returns
``(values, curves)``: ``values`` maps a metric name to ``(model value, Monte Carlo SE)``
and ``curves`` holds what the target's figure draws (plain arrays).

Monte Carlo errors are bootstrap standard errors over the virtual men (the cohort is a
sample of the virtual population; the seed is fixed, so a rerun gives the same value).
Conventions, chosen to match how each study measured (docs/validation.md):

* "P(>= x by t)" and medians from monthly semen samples use the cumulative fraction of
  men whose first sample at or above x was taken by each visit, linearly interpolated
  between visits (events spread evenly within a visit interval, i.e. interval-censored
  data read without a parametric model);
* population-curve times (C3, C4 in weeks) are medians of each man's latent crossing time;
* fractions of placebo / baseline are ratios of population means.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from popsim.model.parameters import PARAMETER_INDEX
from popsim.outcomes.endpoints import first_crossing
from popsim.outcomes.study import StudyResult
from popsim.units import DAYS_PER_MONTH, NG_DL_PER_NMOL_L_TESTOSTERONE

N_BOOT = 200
Value = tuple[float, float]


def bootstrap(stat: Callable[[np.ndarray], float], n: int, n_boot: int = N_BOOT, seed: int = 0) -> Value:
    """``stat(index)`` on all men and its bootstrap SE over ``n_boot`` resamples of men."""
    full = float(stat(np.arange(n)))
    rng = np.random.default_rng(seed)
    draws = np.array([stat(rng.integers(0, n, n)) for _ in range(n_boot)], float)
    draws = draws[np.isfinite(draws)]
    se = float(np.std(draws, ddof=1)) if draws.size > 1 else float("nan")
    return full, se


def visit_cdf(days: np.ndarray, observed: np.ndarray, visits_days: np.ndarray) -> np.ndarray:
    """Fraction of men whose event was seen by each visit (first sample meeting it)."""
    return np.array([np.mean(observed & (days <= v + 1e-6)) for v in visits_days])


def interpolated_cdf(days, observed, visits_days, at_days):
    """Visit CDF, 0 at the origin, linearly interpolated to ``at_days``."""
    grid = np.concatenate([[0.0], visits_days])
    cdf = np.concatenate([[0.0], visit_cdf(days, observed, visits_days)])
    return np.interp(at_days, grid, cdf)


def interpolated_median_days(days, observed, visits_days) -> float:
    """Time at which the interpolated visit CDF reaches 0.5 (NaN if never)."""
    grid = np.concatenate([[0.0], visits_days])
    cdf = np.concatenate([[0.0], visit_cdf(days, observed, visits_days)])
    above = np.flatnonzero(cdf >= 0.5)
    if not above.size:
        return float("nan")
    k = above[0]
    if k == 0:
        return 0.0
    return float(grid[k - 1] + (0.5 - cdf[k - 1]) / (cdf[k] - cdf[k - 1]) * (grid[k] - grid[k - 1]))


def median_event_days(days, observed) -> float:
    """Median of event times with censored men counted as later than everyone (NaN if
    fewer than half had the event)."""
    t = np.where(observed, days, np.inf)
    m = float(np.median(t))
    return m if np.isfinite(m) else float("nan")


def _visits(result: StudyResult, horizon_days: float = 24 * DAYS_PER_MONTH) -> np.ndarray:
    offsets = 30.0 + 30.0 * np.arange(int(np.floor((horizon_days - 30.0) / 30.0)) + 1)
    return offsets


def _sampled(out, name):
    return np.asarray(out[f"sampled_{name}_days"], float), np.asarray(out[f"sampled_{name}_observed"], bool)


def _latent(out, name):
    return np.asarray(out[f"{name}_days"], float), np.asarray(out[f"{name}_observed"], bool)


def _ok(out) -> np.ndarray:
    return ~np.asarray(out["failed"], bool)


def metrics_c1(results: Sequence[StudyResult]):
    r = results[0]
    out = {k: np.asarray(v)[_ok(r.outcomes)] for k, v in r.outcomes.items()}
    n = out["patient_id"].size
    visits = _visits(r)
    values: dict[str, Value] = {}
    d20, o20 = _sampled(out, "conc_ge_20")
    for months in (6, 12, 16, 24):
        values[f"p_conc_ge_20_by_{months}mo"] = bootstrap(
            lambda i, m=months: interpolated_cdf(d20[i], o20[i], visits, m * DAYS_PER_MONTH), n)
    for x in (20, 10, 3):
        d, o = _sampled(out, f"conc_ge_{x}")
        values[f"median_months_to_conc_ge_{x}"] = bootstrap(
            lambda i, d=d, o=o: interpolated_median_days(d[i], o[i], visits) / DAYS_PER_MONTH, n)
    months_grid = np.linspace(0, 24, 97)
    curves = {"months": months_grid,
              **{f"conc_ge_{x}": interpolated_cdf(*_sampled(out, f"conc_ge_{x}"), visits, months_grid * DAYS_PER_MONTH)
                 for x in (3, 10, 20)}}
    return values, curves


def metrics_c3(results: Sequence[StudyResult]):
    r = results[0]
    ok = _ok(r.outcomes)
    t = r.trajectory_times_days
    sperm = r.trajectories["sperm_concentration_m_ml"][ok]
    asian = np.asarray(r.outcomes["asian"])[ok] > 0.5
    limit = PARAMETER_INDEX["azoospermia_limit_m_ml"].default
    six = t <= 6 * DAYS_PER_MONTH + 1e-6
    n = sperm.shape[0]
    zero = np.zeros(n)
    le3 = first_crossing(t, sperm, zero, 3.0, rising=False, horizon_days=6 * DAYS_PER_MONTH)
    le1 = first_crossing(t, sperm, zero, 1.0, rising=False, horizon_days=6 * DAYS_PER_MONTH)
    azoo = (sperm[:, six] < limit).any(axis=1)
    lt3 = (sperm[:, six] < 3.0).any(axis=1)
    values = {
        "weeks_to_conc_le_3": bootstrap(lambda i: median_event_days(le3.time_days[i], le3.observed[i]) / 7.0, n),
        "weeks_to_conc_le_1": bootstrap(lambda i: median_event_days(le1.time_days[i], le1.observed[i]) / 7.0, n),
        "p_azoospermia_by_6mo_non_asian": bootstrap(lambda i: np.mean(azoo[i][~asian[i]]), n),
        "p_azoospermia_by_6mo_asian": bootstrap(lambda i: np.mean(azoo[i][asian[i]]), n),
        "p_conc_lt_3_by_6mo": bootstrap(lambda i: np.mean(lt3[i]), n),
    }
    weeks = t[six] / 7.0
    curves = {"weeks": weeks, "median": np.median(sperm[:, six], axis=0),
              "q10": np.quantile(sperm[:, six], 0.1, axis=0), "q90": np.quantile(sperm[:, six], 0.9, axis=0),
              "p_le_3": np.mean(np.minimum.accumulate(sperm[:, six], axis=1) <= 3.0, axis=0),
              "p_le_1": np.mean(np.minimum.accumulate(sperm[:, six], axis=1) <= 1.0, axis=0)}
    return values, curves


def metrics_c4(results: Sequence[StudyResult]):
    r = results[0]
    ok = _ok(r.outcomes)
    out = {k: np.asarray(v)[ok] for k, v in r.outcomes.items()}
    n = out["patient_id"].size
    visits = _visits(r)
    values: dict[str, Value] = {}
    for x in (3, 10, 20):
        d, o = _latent(out, f"conc_ge_{x}")
        values[f"weeks_to_conc_ge_{x}"] = bootstrap(lambda i, d=d, o=o: median_event_days(d[i], o[i]) / 7.0, n)
    t = r.trajectory_times_days
    sperm = r.trajectories["sperm_concentration_m_ml"][ok]
    since = t[None, :] - out["origin_day"][:, None]
    window = (since >= 18 * DAYS_PER_MONTH) & (since <= 24 * DAYS_PER_MONTH)
    late = np.where(window, sperm, np.nan)
    late_mean = np.nanmean(late, axis=1)
    base = out["baseline_sperm_m_ml"]
    log_late = np.log(np.maximum(late_mean, 0.05))
    log_base = np.log(base)
    values["recovery_plateau_fraction_of_baseline"] = bootstrap(
        lambda i: np.exp(np.mean(log_late[i]) - np.mean(log_base[i])), n)
    d, o = _sampled(out, "conc_ge_20")
    values["median_months_to_conc_ge_20_who1990"] = bootstrap(
        lambda i: interpolated_median_days(d[i], o[i], visits) / DAYS_PER_MONTH, n)
    db, ob = _sampled(out, "conc_ge_100pct_baseline")
    values["median_months_to_own_baseline_who1990"] = bootstrap(
        lambda i: interpolated_median_days(db[i], ob[i], visits) / DAYS_PER_MONTH, n)
    weeks_grid = np.arange(0, 105, 1.0)
    curves = {"weeks": weeks_grid}
    for x in (3, 10, 20):
        dd, oo = _latent(out, f"conc_ge_{x}")
        curves[f"conc_ge_{x}"] = np.array([np.mean(oo & (dd <= w * 7.0)) for w in weeks_grid])
    # Geometric-mean concentration relative to baseline, aligned at the origin.
    aligned = []
    for w in weeks_grid:
        idx = np.clip(np.searchsorted(t, out["origin_day"] + w * 7.0), 0, t.size - 1)
        aligned.append(np.exp(np.mean(np.log(np.maximum(sperm[np.arange(n), idx], 0.05)) - log_base)))
    curves["gm_fraction"] = np.array(aligned)
    return values, curves


def _window_mean(r: StudyResult, name: str, lo_day: float, hi_day: float, rows=None) -> np.ndarray:
    t = r.trajectory_times_days
    sel = (t >= lo_day) & (t <= hi_day)
    x = r.trajectories[name]
    if rows is not None:
        x = x[rows]
    return x[:, sel].mean(axis=1)


def metrics_c5(results: Sequence[StudyResult]):
    from popsim.validation.scenarios import C5_DOSES_MG

    r = results[0]
    ok = _ok(r.outcomes)
    cell = np.asarray(r.outcomes["cell"])
    lo, hi = 4 * DAYS_PER_MONTH, 6 * DAYS_PER_MONTH
    base = {"lh_iu_l": "baseline_lh_iu_l", "total_testosterone_nmol_l": "baseline_testosterone_nmol_l",
            "sperm_concentration_m_ml": "baseline_sperm_m_ml"}
    frac: dict[tuple[str, float], tuple[np.ndarray, np.ndarray]] = {}
    fsh_base = None
    for c, dose in enumerate(C5_DOSES_MG):
        rows = np.flatnonzero(ok & (cell == c))
        for name in ("lh_iu_l", "fsh_iu_l", "total_testosterone_nmol_l", "sperm_concentration_m_ml"):
            treated = _window_mean(r, name, lo, hi, rows)
            if name == "fsh_iu_l":
                # FSH baseline: the untreated value at day 0 of the trajectory.
                baseline = r.trajectories[name][rows, 0]
            else:
                baseline = np.asarray(r.outcomes[base[name]])[rows]
            frac[(name, dose)] = (treated, baseline)
    n = frac[("lh_iu_l", 50.0)][0].size

    def ratio(name, dose):
        treated, baseline = frac[(name, dose)]
        return lambda i: np.mean(treated[i]) / np.mean(baseline[i])

    def extra(i):
        return max(ratio(k, 100.0)(i) - ratio(k, 300.0)(i) for k in ("lh_iu_l", "fsh_iu_l", "sperm_concentration_m_ml"))

    values = {
        "lh_fraction_of_placebo_at_50mg": bootstrap(ratio("lh_iu_l", 50.0), n),
        "fsh_fraction_of_placebo_at_50mg": bootstrap(ratio("fsh_iu_l", 50.0), n),
        "sperm_fraction_of_placebo_at_50mg": bootstrap(ratio("sperm_concentration_m_ml", 50.0), n),
        "extra_suppression_300_vs_100mg": bootstrap(extra, n),
        "serum_t_fraction_of_placebo_at_100mg": bootstrap(ratio("total_testosterone_nmol_l", 100.0), n),
        "serum_t_fraction_of_placebo_at_300mg": bootstrap(ratio("total_testosterone_nmol_l", 300.0), n),
    }
    all_i = np.arange(n)
    curves = {"doses": np.array((0.0,) + C5_DOSES_MG)}
    for name in ("lh_iu_l", "fsh_iu_l", "sperm_concentration_m_ml", "total_testosterone_nmol_l"):
        curves[name] = np.array([1.0] + [ratio(name, d)(all_i) for d in C5_DOSES_MG])
    return values, curves


def metrics_c6(results: Sequence[StudyResult]):
    from popsim.validation.scenarios import C6_HCG_IU

    day = 21.0
    fractions = {}
    for iu, r in zip(C6_HCG_IU, results):
        ok = _ok(r.outcomes)
        k = int(np.argmin(np.abs(r.trajectory_times_days - day)))
        traj = {name: r.trajectories[name][ok] for name in ("lh_iu_l", "fsh_iu_l", "itt_nmol_l")}
        fractions[iu] = {name: traj[name][:, k] / traj[name][:, 0] for name in traj}
    n = fractions[0.0]["itt_nmol_l"].size

    def med(iu, name):
        return lambda i: float(np.median(fractions[iu][name][i]))

    values = {
        "lh_fraction_of_baseline_te_alone": bootstrap(med(0.0, "lh_iu_l"), n),
        "fsh_fraction_of_baseline_te_alone": bootstrap(med(0.0, "fsh_iu_l"), n),
    }
    for iu in C6_HCG_IU:
        values[f"itt_fraction_of_baseline_hcg_{iu:g}"] = bootstrap(med(iu, "itt_nmol_l"), n)
    itt = [values[f"itt_fraction_of_baseline_hcg_{iu:g}"][0] for iu in C6_HCG_IU]
    values["itt_monotone_in_hcg_dose"] = (float(all(b > a for a, b in zip(itt, itt[1:]))), 0.0)
    curves = {"hcg_iu": np.array(C6_HCG_IU), "itt": np.array(itt),
              "itt_q25": np.array([np.quantile(fractions[iu]["itt_nmol_l"], 0.25) for iu in C6_HCG_IU]),
              "itt_q75": np.array([np.quantile(fractions[iu]["itt_nmol_l"], 0.75) for iu in C6_HCG_IU])}
    return values, curves


# Enrolment criteria of the C7 studies, applied to the virtual men's untreated values:
# hypogonadal men with total T < 300 ng/dL (Shabsigh 2005), infertile men with a
# T (ng/dL) / E2 (pg/mL) ratio < 10 (Raman & Schlegel 2002).
C7_T_MAX_NMOL_L = 300.0 / NG_DL_PER_NMOL_L_TESTOSTERONE
C7_T_E2_RATIO_MAX = 10.0


def c7_enrolled(r: StudyResult, kind: str) -> np.ndarray:
    """Rows of men meeting the enrolment criterion of the clomiphene or anastrozole study."""
    ok = _ok(r.outcomes)
    t0 = r.trajectories["total_testosterone_nmol_l"][:, 0]
    if kind == "clomiphene":
        return np.flatnonzero(ok & (t0 < C7_T_MAX_NMOL_L))
    ratio = t0 * NG_DL_PER_NMOL_L_TESTOSTERONE / r.trajectories["estradiol_pg_ml"][:, 0]
    return np.flatnonzero(ok & (ratio < C7_T_E2_RATIO_MAX))


def metrics_c7(results: Sequence[StudyResult]):
    clomiphene, anastrozole = results
    rows_c, rows_a = c7_enrolled(clomiphene, "clomiphene"), c7_enrolled(anastrozole, "anastrozole")

    def at(r, rows, name, day):
        k = int(np.argmin(np.abs(r.trajectory_times_days - day)))
        x = r.trajectories[name][rows]
        return x[:, k], x[:, 0]

    t_on, t_off = at(clomiphene, rows_c, "total_testosterone_nmol_l", 42.0)
    e_on, e_off = at(clomiphene, rows_c, "estradiol_pg_ml", 42.0)
    n = t_on.size
    at_on, at_off = at(anastrozole, rows_a, "total_testosterone_nmol_l", 84.0)
    ae_on, ae_off = at(anastrozole, rows_a, "estradiol_pg_ml", 84.0)
    s_on, s_off = at(anastrozole, rows_a, "sperm_concentration_m_ml", 84.0)
    m = at_on.size
    ng = NG_DL_PER_NMOL_L_TESTOSTERONE
    values = {
        "clomiphene_mean_t_ng_dl": bootstrap(lambda i: ng * np.mean(t_on[i]), n),
        "clomiphene_t_e2_ratio_fold": bootstrap(
            lambda i: np.mean(t_on[i] / e_on[i]) / np.mean(t_off[i] / e_off[i]), n),
        "anastrozole_t_e2_ratio_fold": bootstrap(
            lambda i: np.mean(at_on[i] / ae_on[i]) / np.mean(at_off[i] / ae_off[i]), m),
        "anastrozole_oligospermic_concentration_fold": bootstrap(lambda i: np.mean(s_on[i]) / np.mean(s_off[i]), m),
    }
    tc = clomiphene.trajectory_times_days
    ta = anastrozole.trajectory_times_days
    a_traj = {k: anastrozole.trajectories[k][rows_a] for k in ("total_testosterone_nmol_l", "estradiol_pg_ml",
                                                               "sperm_concentration_m_ml")}
    curves = {
        "clomiphene_days": tc,
        "clomiphene_t_ng_dl": ng * clomiphene.trajectories["total_testosterone_nmol_l"][rows_c].mean(0),
        "clomiphene_baseline_t_ng_dl": ng * float(t_off.mean()) if n else float("nan"),
        "anastrozole_days": ta,
        "anastrozole_t_e2_fold": np.mean(a_traj["total_testosterone_nmol_l"] / a_traj["estradiol_pg_ml"], 0)
        / np.mean(at_off / ae_off),
        "anastrozole_sperm_fold": a_traj["sperm_concentration_m_ml"].mean(0) / s_off.mean(),
        "n_enrolled": {"clomiphene": int(n), "anastrozole": int(m)},
    }
    return values, curves


def metrics_c8(results: Sequence[StudyResult]):
    r = results[0]
    ok = _ok(r.outcomes)
    t = r.trajectory_times_days
    origin = np.asarray(r.outcomes["origin_day"])[ok]
    sperm = r.trajectories["sperm_concentration_m_ml"][ok]
    tt = r.trajectories["total_testosterone_nmol_l"][ok]
    n = sperm.shape[0]
    rows = np.arange(n)

    def after(x, months):
        idx = np.clip(np.searchsorted(t, origin + months * DAYS_PER_MONTH), 0, t.size - 1)
        return x[rows, idx]

    t3, s3, s9 = after(tt, 3), after(sperm, 3), after(sperm, 9)
    t0, s0 = tt[:, 0], sperm[:, 0]
    values = {
        "total_t_fraction_of_baseline_3mo_after": bootstrap(lambda i: np.mean(t3[i]) / np.mean(t0[i]), n),
        "sperm_fraction_of_baseline_3mo_after": bootstrap(lambda i: np.mean(s3[i]) / np.mean(s0[i]), n),
    }
    closer = abs(1 - np.mean(s9) / np.mean(s0)) < abs(1 - np.mean(s3) / np.mean(s0))
    values["sperm_closer_to_baseline_at_9mo_than_3mo"] = (float(closer), 0.0)
    months = np.arange(-4.0, 10.01, 0.25)
    curves = {"months": months,
              "t_fraction": np.array([np.mean(after(tt, m)) / np.mean(t0) for m in months]),
              "sperm_fraction": np.array([np.mean(after(sperm, m)) / np.mean(s0) for m in months]),
              "lh_fraction": np.array([np.mean(after(r.trajectories["lh_iu_l"][ok], m)) / np.mean(r.trajectories["lh_iu_l"][ok][:, 0])
                                       for m in months])}
    return values, curves


def _aligned(r: StudyResult, x: np.ndarray, origin: np.ndarray, days_after) -> np.ndarray:
    """Values of ``x`` ``(n, n_times)`` at ``origin + days_after`` (nearest grid time at or after);
    ``days_after`` scalar or ``(n,)``."""
    t = r.trajectory_times_days
    idx = np.clip(np.searchsorted(t, origin + days_after - 1e-9), 0, t.size - 1)
    return x[np.arange(x.shape[0]), idx]


def group_mean_back_week(r: StudyResult, name: str, ok: np.ndarray, fraction: float, max_weeks: int = 52):
    """Function of a row index: the first week after the origin (from week 1) at which the
    group-mean ``name`` reaches ``fraction`` of the group-mean untreated value (NaN if never)."""
    x = r.trajectories[name][ok]
    origin = np.asarray(r.outcomes["origin_day"])[ok]
    weeks = np.arange(1, max_weeks + 1)
    at = np.stack([_aligned(r, x, origin, w * 7.0) for w in weeks], axis=1)
    base = x[:, 0]

    def stat(i):
        ratio = at[i].mean(axis=0) / base[i].mean()
        k = np.flatnonzero(ratio >= fraction)
        return float(weeks[k[0]]) if k.size else float("nan")

    return stat, at, base


# Group-mean LH and FSH count as back at baseline within 10% of it (C9: assay CVs ~10%).
C9_BACK_FRACTION = 0.9


def metrics_c9(results: Sequence[StudyResult]):
    no_pct, pct = results
    values: dict[str, Value] = {}
    curves: dict = {"weeks": np.arange(1, 53)}
    for label, r in (("no_pct", no_pct), ("with_pct", pct)):
        ok = _ok(r.outcomes)
        d, o = _latent({k: np.asarray(v)[ok] for k, v in r.outcomes.items()}, "hormonal_recovery")
        values[f"median_weeks_to_hormonal_recovery_{label}"] = bootstrap(lambda i, d=d, o=o: median_event_days(d[i], o[i]) / 7.0,
                                                                        d.size)
        curves[f"p_hormonal_recovery_{label}"] = np.array([np.mean(o & (d <= w * 7.0)) for w in curves["weeks"]])
    ok = _ok(no_pct.outcomes)
    n = int(ok.sum())
    for name, key in (("lh_iu_l", "lh"), ("fsh_iu_l", "fsh")):
        stat, at, base = group_mean_back_week(no_pct, name, ok, C9_BACK_FRACTION)
        values[f"weeks_group_mean_{key}_back_to_baseline"] = bootstrap(stat, n)
        curves[f"{key}_fraction"] = at.mean(axis=0) / base.mean()
    _, t_at, t_base = group_mean_back_week(no_pct, "total_testosterone_nmol_l", ok, C9_BACK_FRACTION)
    curves["t_fraction"] = t_at.mean(axis=0) / t_base.mean()
    values["total_t_below_baseline_at_16_weeks"] = (float(curves["t_fraction"][15] < 1.0), 0.0)
    return values, curves


def _spread(n: int, lo: float, hi: float) -> np.ndarray:
    """``n`` times evenly spread over [lo, hi] in a fixed order unrelated to covariates
    (golden-ratio sequence over the men), for studies that saw each man once within a window."""
    return lo + (hi - lo) * np.mod(np.arange(n) * 0.6180339887 + 0.5, 1.0)


def metrics_c10(results: Sequence[StudyResult]):
    r = results[0]
    ok = _ok(r.outcomes)
    tt = r.trajectories["total_testosterone_nmol_l"][ok]
    origin = np.asarray(r.outcomes["origin_day"])[ok]
    n = tt.shape[0]
    never = tt[:, 0]  # the same men untreated: the never-user counterfactual
    former = _aligned(r, tt, origin, _spread(n, 1.5, 4.0) * 365.25)
    early = _aligned(r, tt, origin, _spread(n, 3.0, 26.0) * DAYS_PER_MONTH)
    low_t = 200.0 / NG_DL_PER_NMOL_L_TESTOSTERONE
    values = {
        "median_total_t_former_over_never_users": bootstrap(lambda i: np.median(former[i]) / np.median(never[i]), n),
        "fraction_former_users_t_below_12_1_nmol_l": bootstrap(lambda i: np.mean(former[i] < 12.1), n),
        "fraction_t_below_200_ng_dl_3_to_26_months_after": bootstrap(lambda i: np.mean(early[i] < low_t), n),
    }
    months = np.arange(0.0, 48.01, 1.0)
    curves = {"months": months,
              "t_fraction_median": np.array([np.median(_aligned(r, tt, origin, m * DAYS_PER_MONTH)) / np.median(never)
                                             for m in months]),
              "p_below_12_1": np.array([np.mean(_aligned(r, tt, origin, m * DAYS_PER_MONTH) < 12.1) for m in months]),
              "never_below_12_1": float(np.mean(never < 12.1))}
    return values, curves


def azoospermic_at_origin(r: StudyResult) -> np.ndarray:
    """Men whose latent sperm concentration was below the detection limit at the origin."""
    return np.asarray(r.outcomes["azoospermic_at_origin"], bool) & _ok(r.outcomes)


def metrics_c11(results: Sequence[StudyResult]):
    r = results[0]
    rows = azoospermic_at_origin(r)
    out = {k: np.asarray(v)[rows] for k, v in r.outcomes.items()}
    d, o = _sampled(out, "any_sperm")
    n = d.size
    values = {"p_any_sperm_by_6mo": bootstrap(lambda i: np.mean(o[i] & (d[i] <= 6 * DAYS_PER_MONTH + 1e-6)), n)}
    months = np.arange(0, 13)
    curves = {"months": months, "p_any_sperm": np.array([np.mean(o & (d <= m * DAYS_PER_MONTH + 1e-6)) for m in months]),
              "n_selected": int(n), "n_cohort": int(_ok(r.outcomes).sum())}
    return values, curves


# C12 on treatment: months 2-12, after the loading dose has built up the depot.
C12_ON_TREATMENT_DAYS = (30.0, 360.0)


def metrics_c12(results: Sequence[StudyResult]):
    r = results[0]
    ok = _ok(r.outcomes)
    out = {k: np.asarray(v)[ok] for k, v in r.outcomes.items()}
    t = r.trajectory_times_days
    sperm = r.trajectories["sperm_concentration_m_ml"][ok]
    n = sperm.shape[0]
    six = t <= 6 * DAYS_PER_MONTH + 1e-6
    not_suppressed = ~(sperm[:, six] < 3.0).any(axis=1)
    values: dict[str, Value] = {"fraction_not_below_3_by_6mo": bootstrap(lambda i: np.mean(not_suppressed[i]), n)}
    d20, o20 = _sampled(out, "conc_ge_20")
    visits = _visits(r, 12 * DAYS_PER_MONTH)
    values["p_conc_ge_20_by_12mo_recovery"] = bootstrap(
        lambda i: interpolated_cdf(d20[i], o20[i], visits, 12 * DAYS_PER_MONTH), n)
    lo, hi = C12_ON_TREATMENT_DAYS
    for name, key in (("lh_iu_l", "lh"), ("fsh_iu_l", "fsh"), ("total_testosterone_nmol_l", "total_t")):
        treated = _window_mean(r, name, lo, hi, np.flatnonzero(ok))
        baseline = r.trajectories[name][ok][:, 0]
        values[f"{key}_fraction_of_baseline_on_treatment"] = bootstrap(
            lambda i, a=treated, b=baseline: np.mean(a[i]) / np.mean(b[i]), n)
    keep = t <= 24 * DAYS_PER_MONTH
    curves = {"months": t[keep] / DAYS_PER_MONTH,
              **{k: r.trajectories[k][ok][:, keep].mean(0) / r.trajectories[k][ok][:, 0].mean()
                 for k in ("lh_iu_l", "fsh_iu_l", "total_testosterone_nmol_l")},
              "sperm_median": np.median(sperm[:, keep], axis=0)}
    return values, curves


METRIC_FUNCTIONS: Mapping[str, Callable] = {
    "C1": metrics_c1, "C3": metrics_c3, "C4": metrics_c4, "C5": metrics_c5, "C6": metrics_c6,
    "C7": metrics_c7, "C8": metrics_c8, "C9": metrics_c9, "C10": metrics_c10, "C11": metrics_c11,
    "C12": metrics_c12,
}
