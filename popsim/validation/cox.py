"""C2: directions of covariate effects on the recovery rate, from a Cox model fitted to
simulated recovery times (lifelines), as Liu 2006 fitted one to the trial data.

The event is the first monthly semen sample at or above 20 M/mL after the end of
treatment (ties by visit, Efron's method). Covariates are standardised, so each
coefficient is the log hazard ratio per standard deviation; HR > 1 = faster recovery.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd

from popsim.outcomes.study import StudyResult
from popsim.units import DAYS_PER_MONTH

# Target metric -> covariate column.
COVARIATES = {
    "hr_sign_age": "age_years",
    "hr_sign_asian": "asian",
    "hr_sign_baseline_sperm_concentration": "log_baseline_sperm",
    "hr_sign_suppression_speed": "suppression_speed",
    "hr_sign_treatment_duration": "treatment_months",
    "hr_sign_long_acting_preparation": "long_acting",
    "hr_sign_baseline_lh": "log_baseline_lh",
}
# Suppression speed: how far sperm output had fallen 8 weeks into treatment,
# -log10(fraction of baseline), floored at 1e-3 (faster suppression = larger value).
SPEED_DAY = 56.0


def cox_table(results: StudyResult | Sequence[StudyResult]) -> pd.DataFrame:
    """The per-man table the Cox model is fitted to, pooled over cohorts."""
    if not isinstance(results, StudyResult):
        return pd.concat([cox_table(r) for r in results], ignore_index=True)
    result = results
    out = result.outcomes
    ok = ~np.asarray(out["failed"], bool)
    t = result.trajectory_times_days
    k = int(np.argmin(np.abs(t - SPEED_DAY)))
    sperm_at = result.trajectories["sperm_concentration_m_ml"][:, k]
    base = np.asarray(out["baseline_sperm_m_ml"], float)
    frame = pd.DataFrame({
        "months": np.asarray(out["sampled_conc_ge_20_days"], float) / DAYS_PER_MONTH,
        "event": np.asarray(out["sampled_conc_ge_20_observed"], bool),
        "age_years": np.asarray(out["age_years"], float),
        "asian": np.asarray(out["asian"], float),
        "log_baseline_sperm": np.log(base),
        "suppression_speed": -np.log10(np.maximum(sperm_at / base, 1e-3)),
        "treatment_months": np.asarray(out["trt_duration_days"], float) / DAYS_PER_MONTH,
        "long_acting": (np.asarray(out["trt_product"]) == "undecanoate").astype(float),
        "log_baseline_lh": np.log(np.asarray(out["baseline_lh_iu_l"], float)),
    })
    return frame[ok].reset_index(drop=True)


def cox_directions(results: StudyResult | Sequence[StudyResult], names: Sequence[str] = tuple(COVARIATES)):
    """``({metric: (log HR per SD, SE)}, table of coefficients)`` of the pooled cohorts."""
    from lifelines import CoxPHFitter

    frame = cox_table(results)
    columns = [COVARIATES[n] for n in names]
    x = frame[columns]
    z = (x - x.mean()) / x.std(ddof=0).replace(0.0, 1.0)
    data = pd.concat([frame[["months", "event"]], z], axis=1)
    fitter = CoxPHFitter(penalizer=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitter.fit(data, duration_col="months", event_col="event")
    summary = fitter.summary
    values = {n: (float(summary.loc[c, "coef"]), float(summary.loc[c, "se(coef)"])) for n, c in zip(names, columns)}
    table = [{"covariate": c, "log_hr_per_sd": float(summary.loc[c, "coef"]), "se": float(summary.loc[c, "se(coef)"]),
              "hr_per_sd": float(np.exp(summary.loc[c, "coef"])), "p": float(summary.loc[c, "p"])} for c in columns]
    return values, table
