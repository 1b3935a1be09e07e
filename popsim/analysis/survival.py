"""Time-to-recovery statistics of an outcome table: Kaplan-Meier, quantiles, strata, Cox.

Input is the outcome table of ``popsim.outcomes.study.run_study`` as a
``pandas.DataFrame`` (one row per virtual patient). An endpoint ``E`` has, per patient,
``E_days`` (days from the recovery origin to the event or to censoring) and
``E_observed`` (False = right-censored at the horizon); semen endpoints also have a
``sampled_`` variant (first monthly semen sample meeting the criterion). Rows flagged
``failed`` (numerical failure) are excluded from every statistic and counted.

Conventions:
    * times are reported in months of 365.25 / 12 = 30.4375 days;
    * "recovered by t" is ``1 - S(t)`` of the Kaplan-Meier estimate, with a 95%
      pointwise confidence band (lifelines' exponential Greenwood, i.e. log(-log)
      transformed); events at time 0 (criterion already met at the origin) count as
      recovered at 0;
    * quantile times are lifelines' "first time the KM survival is <= 1 - q" (no
      interpolation); a quantile the curve does not reach is None, as is a CI bound
      that is not reached;
    * estimates beyond the end of follow-up (the largest recorded time of the
      endpoint, latent or sampled) are None.

Every lifelines call of popsim lives in this module. Outputs are plain Python values
(JSON-serialisable after ``to_json_safe``), so reports and plots need no lifelines.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.utils import median_survival_times, qth_survival_times

from popsim.units import DAYS_PER_MONTH

VARIANTS = ("latent", "sampled")
DEFAULT_MONTHS = (3, 6, 12, 18, 24)
PRIMARY_ENDPOINTS = ("conc_ge_15", "conc_ge_20", "conc_ge_1")
STRATIFIERS = ("trt_duration", "age", "trt_dose", "trt_product", "asian", "protocol")
DEFAULT_COX_COVARIATES = ("age_years", "trt_duration_months", "trt_weekly_dose_mg", "asian", "bmi_kg_m2",
                          "baseline_sperm_m_ml", "baseline_lh_iu_l")
COX_PENALIZER = 0.01
ALPHA = 0.05

# Covariate -> (scale, unit of the hazard ratio). A covariate is divided by its scale
# before fitting, so the HR is per `scale` units of the covariate.
COX_UNITS: dict[str, tuple[float, str]] = {
    "age_years": (1.0, "per year of age"),
    "trt_duration_months": (12.0, "per 12 months of TRT"),
    "trt_weekly_dose_mg": (10.0, "per 10 mg/week of testosterone ester"),
    "asian": (1.0, "Asian vs non-Asian"),
    "bmi_kg_m2": (1.0, "per kg/m²"),
    "baseline_sperm_m_ml": (10.0, "per 10 M/mL of pre-TRT sperm concentration"),
    "baseline_lh_iu_l": (1.0, "per IU/L of pre-TRT LH"),
    "baseline_testosterone_nmol_l": (1.0, "per nmol/L of pre-TRT testosterone"),
    "testicular_function": (0.1, "per 0.1 of testicular function"),
}

# Stratifier -> (bin edges, labels) for the binned ones; see ``stratum_labels``.
_BINS: dict[str, tuple[tuple[float, ...], tuple[str, ...]]] = {
    "trt_duration": ((0.0, 6.0, 12.0, 24.0, 48.0, math.inf),
                     ("<6 mo", "6-12 mo", "12-24 mo", "24-48 mo", "≥48 mo")),
    "age": ((-math.inf, 30.0, 40.0, 50.0, math.inf), ("<30 y", "30-40 y", "40-50 y", "≥50 y")),
    "trt_dose": ((-math.inf, 100.0, 150.0, 200.0, math.inf),
                 ("<100 mg/wk", "100-150 mg/wk", "150-200 mg/wk", "≥200 mg/wk")),
}
STRATIFIER_TITLES = {
    "trt_duration": "TRT duration", "age": "Age", "trt_dose": "TRT dose (weekly equivalent)",
    "trt_product": "TRT product", "asian": "Ethnicity", "protocol": "Protocol",
}
GEL_LABEL = "gel (mg not comparable)"
# Stratifier -> the outcome-table columns it needs, and those it reads when present
# (trt_product puts gel users in their own dose stratum).
STRATIFIER_NEEDS: dict[str, tuple[str, ...]] = {
    "trt_duration": ("trt_duration_days",), "age": ("age_years",),
    "trt_dose": ("trt_dose_mg", "trt_interval_days"), "trt_product": ("trt_product",),
    "asian": ("asian",), "protocol": ("protocol",)}
STRATIFIER_COLUMNS: dict[str, tuple[str, ...]] = {
    **STRATIFIER_NEEDS, "trt_dose": ("trt_dose_mg", "trt_interval_days", "trt_product")}


# --------------------------------------------------------------------------- columns

def endpoint_columns(endpoint: str, variant: str = "latent") -> tuple[str, str]:
    """Column names ``(time_days, observed)`` of an endpoint variant.

    Args:
        endpoint: endpoint name, e.g. "conc_ge_15".
        variant: "latent" (daily latent trajectory) or "sampled" (monthly semen samples).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    prefix = "sampled_" if variant == "sampled" else ""
    return f"{prefix}{endpoint}_days", f"{prefix}{endpoint}_observed"


def has_endpoint(df: pd.DataFrame, endpoint: str, variant: str = "latent") -> bool:
    """True when the table has both columns of ``endpoint``/``variant``."""
    return all(c in df.columns for c in endpoint_columns(endpoint, variant))


def endpoints_in(df: pd.DataFrame) -> list[str]:
    """Recovery endpoints of the table, in column order (suppression columns excluded)."""
    names = [c[:-len("_days")] for c in df.columns if c.endswith("_days")]
    return [e for e in names if not e.startswith(("sampled_", "suppression_", "trt_"))
            and f"{e}_observed" in df.columns]


def endpoint_label(endpoint: str) -> str:
    """The endpoint in words, e.g. "conc_ge_15" -> "Sperm concentration ≥ 15 M/mL"."""
    fixed = {
        "any_sperm": "Any sperm in the ejaculate (above the detection limit)",
        "testosterone_ge_10p4": "Total testosterone ≥ 10.4 nmol/L (300 ng/dL)",
        "lh_in_range": "LH ≥ 1.7 IU/L (lower reference limit)",
        "fsh_in_range": "FSH ≥ 1.5 IU/L (lower reference limit)",
        "hormonal_recovery": "Hormonal recovery: LH 1.7-8.6 IU/L, FSH 1.5-12.4 IU/L and total T ≥ 10.4 nmol/L at once",
        "suppression_to_conc_le_1": "Sperm concentration ≤ 1 M/mL during TRT",
    }
    if endpoint in fixed:
        return fixed[endpoint]
    for hormone, words in (("testosterone", "Total testosterone"), ("lh", "LH"), ("fsh", "FSH")):
        if endpoint.startswith(f"{hormone}_ge_") and endpoint.endswith("pct_baseline"):
            return f"{words} ≥ {endpoint[len(hormone) + 4:-len('pct_baseline')]}% of own pre-TRT value"
    if endpoint.startswith("conc_ge_") and endpoint.endswith("pct_baseline"):
        return f"Sperm concentration ≥ {endpoint[len('conc_ge_'):-len('pct_baseline')]}% of own pre-TRT value"
    if endpoint.startswith("conc_ge_"):
        return f"Sperm concentration ≥ {endpoint[len('conc_ge_'):].replace('p', '.')} M/mL"
    if endpoint.startswith("tmc_ge_"):
        return f"Total motile sperm count ≥ {endpoint[len('tmc_ge_'):].replace('p', '.')} million"
    return endpoint


def variant_label(variant: str) -> str:
    """Short words for a variant: how the event time was observed."""
    return {"latent": "latent (daily model trajectory)",
            "sampled": "monthly semen samples"}.get(variant, variant)


def weekly_dose_mg(df: pd.DataFrame) -> pd.Series:
    """TRT weekly-equivalent dose, mg/week (``dose * 7 / interval``); NaN for gel.

    Gel is dosed as mg of gel applied per day, of which only a small fraction is absorbed,
    so its mg are not comparable with injected ester mg.
    """
    dose = df["trt_dose_mg"].astype(float) * 7.0 / df["trt_interval_days"].astype(float)
    if "trt_product" in df.columns:
        dose = dose.where(df["trt_product"].astype(str) != "gel")
    return dose


def _failed(df: pd.DataFrame) -> np.ndarray:
    """``(n_rows,)`` bool: the rows flagged as numerical failures."""
    return df["failed"].to_numpy(bool) if "failed" in df.columns else np.zeros(len(df), bool)


def analysable(df: pd.DataFrame, endpoint: str | None = None, variant: str = "latent",
               columns: Sequence[str] | None = None) -> tuple[pd.DataFrame, int]:
    """Rows usable for statistics and the number of excluded numerical failures.

    Args:
        df: outcome table.
        endpoint, variant: when given, rows with a missing time of this endpoint are dropped too.
        columns: the columns the caller needs (the endpoint's two are added); None keeps
            every column. Naming them keeps a million-row table from being copied whole.

    Returns:
        ``(rows, n_failed)``; ``rows`` is ``df`` itself (or its column selection) when no
        row is dropped.
    """
    failed = _failed(df)
    keep = ~failed
    if endpoint is not None:
        time_col, _ = endpoint_columns(endpoint, variant)
        keep &= np.isfinite(df[time_col].to_numpy(float))
    if columns is not None:
        wanted = list(columns) + (list(endpoint_columns(endpoint, variant)) if endpoint is not None else [])
        df = df[[c for c in dict.fromkeys(wanted) if c in df.columns]]
    return (df if keep.all() else df.loc[keep]), int(failed.sum())


# --------------------------------------------------------------------------- strata

def stratum_labels(df: pd.DataFrame, by: str) -> pd.Series:
    """Stratum of each row as an ordered categorical (NaN where not applicable).

    Args:
        df: outcome table.
        by: "trt_duration" (months: <6, 6-12, 12-24, 24-48, >=48; left-closed bins),
            "age" (years: <30, 30-40, 40-50, >=50), "trt_dose" (weekly-equivalent mg/week:
            <100, 100-150, 150-200, >=200, gel users in their own stratum), "trt_product",
            "asian" or "protocol".
    """
    if by not in STRATIFIERS:
        raise ValueError(f"by must be one of {STRATIFIERS}, got {by!r}")
    if by in ("trt_duration", "age", "trt_dose"):
        values = {"trt_duration": lambda: df["trt_duration_days"].astype(float) / DAYS_PER_MONTH,
                  "age": lambda: df["age_years"].astype(float),
                  "trt_dose": lambda: weekly_dose_mg(df)}[by]()
        edges, labels = _BINS[by]
        cut = pd.cut(values, bins=list(edges), labels=list(labels), right=False)
        if by == "trt_dose" and "trt_product" in df.columns:
            cut = cut.cat.add_categories([GEL_LABEL])
            cut[df["trt_product"].astype(str) == "gel"] = GEL_LABEL
        return cut
    column = {"trt_product": "trt_product", "asian": "asian", "protocol": "protocol"}[by]
    if column not in df.columns:
        raise ValueError(f"the table has no '{column}' column to stratify by")
    if by == "asian":
        values = pd.to_numeric(df[column], errors="coerce").to_numpy(float)
        codes = np.where(np.isnan(values), -1, (values >= 0.5).astype(np.int8))
        return pd.Series(pd.Categorical.from_codes(codes, categories=["non-Asian", "Asian"], ordered=True),
                         index=df.index)
    text = df[column].astype(str)
    return pd.Series(pd.Categorical(text, categories=list(dict.fromkeys(text)), ordered=True), index=df.index)


def available_stratifiers(df: pd.DataFrame) -> list[str]:
    """Stratifiers whose columns the table has."""
    return [by for by in STRATIFIERS if all(c in df.columns for c in STRATIFIER_NEEDS[by])]


# --------------------------------------------------------------------------- Kaplan-Meier

def _fit_km(rows: pd.DataFrame, endpoint: str, variant: str) -> KaplanMeierFitter:
    time_col, event_col = endpoint_columns(endpoint, variant)
    months = rows[time_col].to_numpy(float) / DAYS_PER_MONTH
    return KaplanMeierFitter(alpha=ALPHA).fit(months, rows[event_col].to_numpy(bool))


def follow_up_days(df: pd.DataFrame) -> float:
    """End of follow-up after the origin, days, inferred from the table.

    The largest recorded time of any recovery endpoint (latent or sampled) among
    non-failed rows. Every endpoint is censored at the same horizon, so this is the study
    horizon as soon as one man is censored in one endpoint, and a lower bound otherwise
    (then every endpoint has recovered everyone, and the bound does not matter).
    """
    columns = [endpoint_columns(e, v)[0] for e in endpoints_in(df) for v in VARIANTS if has_endpoint(df, e, v)]
    keep = ~_failed(df)
    longest = 0.0
    for column in columns:  # one column at a time: no (rows x endpoints) copy of a large table
        times = df[column].to_numpy(float)[keep]
        times = times[np.isfinite(times)]
        if times.size:
            longest = max(longest, float(times.max()))
    return longest


def _defined(kmf: KaplanMeierFitter, months: np.ndarray, horizon_months: float) -> np.ndarray:
    """Where the estimate is known: within follow-up, or anywhere once everyone recovered."""
    everyone = float(kmf.survival_function_.iloc[-1, 0]) <= 0.0
    return (np.asarray(months, float) <= horizon_months + 1e-9) | everyone


def _horizon_months(df: pd.DataFrame, horizon_days: float | None) -> float:
    return (follow_up_days(df) if horizon_days is None else float(horizon_days)) / DAYS_PER_MONTH


def _at(frame: pd.DataFrame | pd.Series, months: np.ndarray) -> np.ndarray:
    """Step-function (right-continuous) values of a KM frame at ``months``."""
    index = frame.index.to_numpy(float)
    pos = np.searchsorted(index, months, side="right") - 1
    values = np.asarray(frame, float).reshape(index.size, -1)[np.clip(pos, 0, None)]
    values[pos < 0] = 1.0  # before the first time point nobody has recovered
    return values


def _km_at(kmf: KaplanMeierFitter, months: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(p_recovered, lower, upper)`` at ``months`` (1 - survival, 95% band)."""
    s = _at(kmf.survival_function_, months)[:, 0]
    ci = _at(kmf.confidence_interval_survival_function_, months)
    return 1.0 - s, 1.0 - ci[:, 1], 1.0 - ci[:, 0]


def km_table(df: pd.DataFrame, endpoint: str, variant: str = "latent",
             times_days: Sequence[float] | np.ndarray | None = None,
             horizon_days: float | None = None) -> pd.DataFrame:
    """Cumulative recovery ``1 - KM`` with its 95% pointwise band.

    Args:
        df: outcome table (failed rows are excluded).
        endpoint: endpoint name, e.g. "conc_ge_15".
        variant: "latent" or "sampled".
        times_days: evaluation times, days from the origin (default: every distinct
            event/censoring time, starting at 0, and the end of follow-up).
        horizon_days: end of follow-up after the origin, days (default: ``follow_up_days(df)``).

    Returns:
        DataFrame with ``time_months``, ``p_recovered``, ``lower``, ``upper`` (fractions
        0-1). Rows beyond the end of follow-up are NaN unless everyone has recovered.
    """
    rows, _ = analysable(df, endpoint, variant, columns=())
    if rows.empty:
        return pd.DataFrame({"time_months": [], "p_recovered": [], "lower": [], "upper": []})
    kmf = _fit_km(rows, endpoint, variant)
    horizon = _horizon_months(df, horizon_days)
    if times_days is None:
        months = np.union1d(kmf.survival_function_.index.to_numpy(float), [horizon])
    else:
        months = np.asarray(times_days, float) / DAYS_PER_MONTH
    p, lo, hi = _km_at(kmf, months)
    beyond = ~_defined(kmf, months, horizon)
    p, lo, hi = (np.where(beyond, np.nan, a) for a in (p, lo, hi))
    return pd.DataFrame({"time_months": months, "p_recovered": p, "lower": lo, "upper": hi})


def _number(x: Any) -> float | None:
    """A finite float, else None."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _quantile(kmf: KaplanMeierFitter, fraction_recovered: float) -> dict[str, float | None]:
    """Time (months) by which ``fraction_recovered`` have recovered, with its 95% CI."""
    survival = 1.0 - fraction_recovered
    if survival == 0.5:
        estimate = median_survival_times(kmf.survival_function_)
        bounds = median_survival_times(kmf.confidence_interval_)
    else:
        estimate = qth_survival_times(survival, kmf.survival_function_)
        bounds = qth_survival_times(survival, kmf.confidence_interval_)
    bounds = np.asarray(bounds, float).ravel()
    # The lower survival band reaches the level first: it gives the lower time bound.
    return {"estimate": _number(estimate), "lower": _number(bounds[0]), "upper": _number(bounds[1])}


def _probabilities(kmf: KaplanMeierFitter, months: Iterable[float], horizon_months: float) -> dict:
    out = {}
    for m in months:
        p, lo, hi = (float(a[0]) for a in _km_at(kmf, np.asarray([m], float)))
        ok = bool(_defined(kmf, np.asarray([m], float), horizon_months)[0])
        out[m] = {"estimate": p if ok else None, "lower": lo if ok else None, "upper": hi if ok else None}
    return out


def _empty_interval() -> dict[str, None]:
    return {"estimate": None, "lower": None, "upper": None}


def recovery_summary(df: pd.DataFrame, endpoint: str, variant: str = "latent",
                     months: Sequence[int] = DEFAULT_MONTHS, horizon_days: float | None = None) -> dict:
    """Kaplan-Meier summary of one endpoint variant.

    Args:
        df: outcome table (failed rows are excluded and counted).
        endpoint: endpoint name, e.g. "conc_ge_15".
        variant: "latent" or "sampled".
        months: times (months after the origin) of the P(recovered by t) estimates.
        horizon_days: end of follow-up after the origin, days (default: ``follow_up_days(df)``);
            estimates after it are None unless everyone has recovered.

    Returns:
        dict with ``endpoint``, ``label``, ``variant``, ``n`` (analysed), ``n_events``,
        ``n_censored``, ``n_failed`` (excluded), ``n_at_origin`` (criterion already met at
        the origin, time 0), ``follow_up_months``; ``median_months``, ``p25_months``,
        ``p75_months`` (time by which 50/25/75% have recovered) each
        ``{estimate, lower, upper}`` in months, None where not reached;
        ``p_recovered_by_month`` ``{month: {estimate, lower, upper}}`` (fractions); and
        ``never_recovered_fraction`` ``{estimate, lower, upper, at_month}`` (KM survival
        at the end of follow-up).
    """
    rows, n_failed = analysable(df, endpoint, variant, columns=())
    time_col, event_col = endpoint_columns(endpoint, variant)
    events = rows[event_col].to_numpy(bool)
    out = {"endpoint": endpoint, "label": endpoint_label(endpoint), "variant": variant,
           "n": int(len(rows)), "n_events": int(events.sum()), "n_censored": int((~events).sum()),
           "n_failed": n_failed, "n_excluded_missing": int(len(df) - len(rows) - n_failed),
           "n_at_origin": int((events & (rows[time_col].to_numpy(float) <= 0)).sum())}
    if rows.empty:
        return {**out, "follow_up_months": None, "median_months": _empty_interval(),
                "p25_months": _empty_interval(), "p75_months": _empty_interval(),
                "p_recovered_by_month": {m: _empty_interval() for m in months},
                "never_recovered_fraction": {**_empty_interval(), "at_month": None}}
    kmf = _fit_km(rows, endpoint, variant)
    follow_up = _horizon_months(df, horizon_days)
    s, lo, hi = (float(a[0]) for a in _km_at(kmf, np.asarray([follow_up])))
    return {**out, "follow_up_months": follow_up,
            "median_months": _quantile(kmf, 0.5), "p25_months": _quantile(kmf, 0.25),
            "p75_months": _quantile(kmf, 0.75),
            "p_recovered_by_month": _probabilities(kmf, months, follow_up),
            "never_recovered_fraction": {"estimate": 1.0 - s, "lower": 1.0 - hi, "upper": 1.0 - lo,
                                         "at_month": follow_up}}


def stratified_summary(df: pd.DataFrame, endpoint: str, variant: str, by: str,
                       months: Sequence[int] = DEFAULT_MONTHS, horizon_days: float | None = None) -> list[dict]:
    """Kaplan-Meier summary per stratum (empty strata skipped).

    Args:
        df: outcome table.
        endpoint, variant: as in ``recovery_summary``.
        by: a stratifier of ``stratum_labels`` ("trt_duration", "age", "trt_dose",
            "trt_product", "asian", "protocol").
        months: times of the P(recovered by t) estimates, months.
        horizon_days: end of follow-up, days (default: ``follow_up_days`` of the whole table).

    Returns:
        one dict per stratum: ``by``, ``stratum`` (label), ``n``, ``n_events``,
        ``median_months`` ``{estimate, lower, upper}`` and ``p_recovered_by_month``.
    """
    if by not in STRATIFIERS:
        raise ValueError(f"by must be one of {STRATIFIERS}, got {by!r}")
    rows, _ = analysable(df, endpoint, variant, columns=STRATIFIER_COLUMNS[by])
    horizon_days = follow_up_days(df) if horizon_days is None else horizon_days
    labels = stratum_labels(rows, by)
    out = []
    for stratum in labels.cat.categories:
        part = rows.loc[(labels == stratum).to_numpy()]
        if part.empty:
            continue
        summary = recovery_summary(part, endpoint, variant, months, horizon_days)
        out.append({"by": by, "stratum": str(stratum), "n": summary["n"], "n_events": summary["n_events"],
                    "median_months": summary["median_months"],
                    "p_recovered_by_month": summary["p_recovered_by_month"]})
    return out


# --------------------------------------------------------------------------- Cox

# Derived Cox covariate -> the outcome-table columns it is computed from (trt_product:
# gel users are excluded when the dose is a covariate); any other covariate is a column.
COVARIATE_COLUMNS = {"trt_duration_months": ("trt_duration_days",),
                     "trt_weekly_dose_mg": ("trt_dose_mg", "trt_interval_days", "trt_product")}


def _covariate_values(df: pd.DataFrame, name: str) -> pd.Series | None:
    if name == "trt_duration_months":
        return df["trt_duration_days"].astype(float) / DAYS_PER_MONTH if "trt_duration_days" in df.columns else None
    if name == "trt_weekly_dose_mg":
        return weekly_dose_mg(df) if {"trt_dose_mg", "trt_interval_days"} <= set(df.columns) else None
    return df[name].astype(float) if name in df.columns else None


def _cox_row(name: str, **values) -> dict:
    scale, unit = COX_UNITS.get(name, (1.0, "per unit"))
    row = {"covariate": name, "unit": unit, "hazard_ratio": None, "lower": None, "upper": None,
           "p_value": None, "n": None, "n_events": None, "note": ""}
    row.update(values)
    return row


def _cox_design(df: pd.DataFrame, endpoint: str, variant: str, covariates: Sequence[str]
                ) -> tuple[pd.DataFrame, list[dict], list[str]]:
    """Scaled design matrix with ``T`` (months) and ``E``, dropped-covariate rows, notes."""
    rows, _ = analysable(df, endpoint, variant,
                         columns=[c for name in covariates for c in COVARIATE_COLUMNS.get(name, (name,))])
    time_col, event_col = endpoint_columns(endpoint, variant)
    # Event times to the whole day: the simulator's outputs are daily and its accuracy target
    # is 1 day, so finer differences are numerical, not information. With at most one
    # distinct time per day, lifelines' Efron fit runs in its batch mode: at a million men,
    # a continuous time per man made each fit take ~27 s in its per-time loop.
    data = pd.DataFrame({"T": np.round(rows[time_col].to_numpy(float)) / DAYS_PER_MONTH,
                         "E": rows[event_col].to_numpy(bool).astype(int)}, index=rows.index)
    dropped, notes = [], []
    if "trt_weekly_dose_mg" in covariates and "trt_product" in rows.columns and (rows["trt_product"] == "gel").any():
        n_gel = int((rows["trt_product"] == "gel").sum())
        data = data.loc[(rows["trt_product"] != "gel").to_numpy()]
        notes.append(f"{n_gel} gel users excluded (gel mg are not comparable with injected mg/week)")
    for name in covariates:
        values = _covariate_values(rows, name)
        if values is None:
            dropped.append(_cox_row(name, note="dropped: not in the table"))
            continue
        values = values.loc[data.index] / COX_UNITS.get(name, (1.0, ""))[0]
        if values.nunique(dropna=True) < 2:
            dropped.append(_cox_row(name, note="dropped: no variation in this cohort"))
            continue
        data[name] = values
    n_before = len(data)
    data = data.dropna()
    if len(data) < n_before:
        notes.append(f"{n_before - len(data)} rows with missing covariates excluded")
    return data, dropped, notes


def cox_hazard_ratios(df: pd.DataFrame, endpoint: str, variant: str = "latent",
                      covariates: Sequence[str] = DEFAULT_COX_COVARIATES) -> list[dict]:
    """Cox proportional-hazards model of time to recovery (multivariable, Efron ties; event
    times to the whole day).

    HR > 1 means faster recovery. Covariates are scaled (``COX_UNITS``) so that each HR
    is per a readable unit: per year of age, per 12 months of TRT, per 10 mg/week of
    weekly-equivalent dose, Asian vs non-Asian, per kg/m² BMI, per 10 M/mL baseline sperm
    concentration, per IU/L baseline LH. A small ridge penalty (``COX_PENALIZER``, on
    standardised covariates) stabilises the fit. Gel users are excluded when the dose is a
    covariate.

    Args:
        df: outcome table (failed rows are excluded).
        endpoint, variant: as in ``recovery_summary``.
        covariates: columns of the table or the derived ``trt_duration_months`` and
            ``trt_weekly_dose_mg``.

    Returns:
        one dict per covariate: ``covariate``, ``unit``, ``hazard_ratio``, ``lower``,
        ``upper`` (95% CI), ``p_value``, ``n``, ``n_events``, ``note``. Dropped covariates
        (absent, zero variance) have None values and say why in ``note``.
    """
    data, dropped, notes = _cox_design(df, endpoint, variant, covariates)
    used = [c for c in data.columns if c not in ("T", "E")]
    n, n_events = int(len(data)), int(data["E"].sum())
    if not used or n_events == 0:
        why = "no covariate left" if not used else "no events"
        return [_cox_row(c, n=n, n_events=n_events, note=f"not fitted: {why}") for c in used] + dropped
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cph = CoxPHFitter(penalizer=COX_PENALIZER, alpha=ALPHA).fit(data, duration_col="T", event_col="E")
        fit_warnings = sorted({str(w.message).split("\n")[0] for w in caught if "onvergence" in type(w.category).__name__
                               or "onvergence" in str(w.message)})
    except Exception as exc:  # lifelines raises ConvergenceError on singular designs
        return [_cox_row(c, n=n, n_events=n_events, note=f"fit failed: {exc}".split("\n")[0]) for c in used] + dropped
    note = "; ".join(notes + fit_warnings)
    table = cph.summary
    lo_col, hi_col = (f"exp(coef) {side} {100 * (1 - ALPHA):g}%" for side in ("lower", "upper"))
    rows = [_cox_row(c, hazard_ratio=float(table.loc[c, "exp(coef)"]), lower=float(table.loc[c, lo_col]),
                     upper=float(table.loc[c, hi_col]), p_value=float(table.loc[c, "p"]),
                     n=n, n_events=n_events, note=note) for c in used]
    return rows + dropped


# --------------------------------------------------------------------------- study summary

def _quantiles(values: pd.Series) -> dict[str, float | None]:
    values = values.dropna().astype(float)
    if values.empty:
        return {k: None for k in ("mean", "p5", "p25", "p50", "p75", "p95")}
    q = np.quantile(values, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {"mean": float(values.mean()), **{f"p{p}": float(v) for p, v in zip((5, 25, 50, 75, 95), q)}}


# The outcome-table columns cohort_description reads: those it summarises as distributions,
# then the others.
COHORT_DISTRIBUTIONS = ("age_years", "bmi_kg_m2", "testicular_function", "baseline_sperm_m_ml",
                        "baseline_testosterone_nmol_l", "baseline_lh_iu_l", "baseline_fsh_iu_l")
COHORT_COLUMNS = COHORT_DISTRIBUTIONS + (
    "trt_duration_days", "trt_dose_mg", "trt_interval_days", "trt_product", "asian", "protocol",
    "azoospermic_during_trt", "suppression_min_sperm_fraction", "suppression_to_conc_le_1_days",
    "suppression_to_conc_le_1_observed")


def cohort_description(df: pd.DataFrame) -> dict:
    """Who the analysed men are and how deeply TRT suppressed them.

    Returns:
        dict with ``n`` (rows), ``n_failed``, ``n_analysed``; distribution summaries
        (mean, 5/25/50/75/95th percentiles) of ``age_years``, ``bmi_kg_m2``,
        ``trt_duration_months``, ``trt_weekly_dose_mg`` (non-gel), ``gel_daily_dose_mg``
        and pre-TRT baselines; ``trt_products`` counts, ``trt_interval_days`` counts,
        ``asian_fraction``, ``protocols`` counts (if present); and ``suppression``:
        fraction azoospermic during TRT, min sperm concentration during TRT as a fraction
        of baseline (median, IQR), fraction reaching <= 1 M/mL and KM median time to
        <= 1 M/mL from TRT start (months, censored at TRT end).
    """
    rows, n_failed = analysable(df, columns=COHORT_COLUMNS)
    out: dict[str, Any] = {"n": int(len(df)), "n_failed": n_failed, "n_analysed": int(len(rows))}
    for name in COHORT_DISTRIBUTIONS:
        if name in rows.columns:
            out[name] = _quantiles(rows[name])
    if "baseline_testosterone_nmol_l" in rows.columns and len(rows):
        out["baseline_testosterone_below_10p4_fraction"] = float((rows["baseline_testosterone_nmol_l"] < 10.4).mean())
    if "trt_duration_days" in rows.columns:
        out["trt_duration_months"] = _quantiles(rows["trt_duration_days"] / DAYS_PER_MONTH)
    if {"trt_dose_mg", "trt_interval_days"} <= set(rows.columns):
        out["trt_weekly_dose_mg"] = _quantiles(weekly_dose_mg(rows))
        out["trt_interval_days"] = {f"{k:g}": int(v) for k, v in rows["trt_interval_days"].value_counts().sort_index().items()}
    if "trt_product" in rows.columns:
        out["trt_products"] = {str(k): int(v) for k, v in rows["trt_product"].value_counts().items()}
        gel = rows["trt_product"] == "gel"
        if gel.any():
            out["gel_daily_dose_mg"] = _quantiles(rows.loc[gel, "trt_dose_mg"] / rows.loc[gel, "trt_interval_days"])
    if "asian" in rows.columns:
        out["asian_fraction"] = float(rows["asian"].astype(float).mean()) if len(rows) else None
    if "protocol" in rows.columns:
        out["protocols"] = {str(k): int(v) for k, v in rows["protocol"].value_counts().items()}
    out["suppression"] = _suppression(rows)
    return out


def _suppression(rows: pd.DataFrame) -> dict:
    out: dict[str, Any] = {}
    if "azoospermic_during_trt" in rows.columns:
        out["azoospermic_during_trt_fraction"] = float(rows["azoospermic_during_trt"].astype(bool).mean()) if len(rows) else None
    if "suppression_min_sperm_fraction" in rows.columns:
        q = _quantiles(rows["suppression_min_sperm_fraction"])
        out["min_sperm_fraction"] = {"median": q["p50"], "p25": q["p25"], "p75": q["p75"]}
    if has_endpoint(rows, "suppression_to_conc_le_1"):
        s = recovery_summary(rows, "suppression_to_conc_le_1", "latent", months=(),
                             horizon_days=float(rows["suppression_to_conc_le_1_days"].max()))
        out["reached_conc_le_1_fraction"] = s["n_events"] / s["n"] if s["n"] else None
        out["time_to_conc_le_1_months"] = s["median_months"]
    return out


def study_summary(df: pd.DataFrame, endpoints: Sequence[str] | None = None,
                  months: Sequence[int] = DEFAULT_MONTHS, horizon_days: float | None = None) -> dict:
    """Everything the report needs, as plain JSON-serialisable values.

    Args:
        df: outcome table (one study or several with a ``protocol`` column).
        endpoints: endpoint names (default: all in the table).
        months: times of the P(recovered by t) estimates, months.
        horizon_days: end of follow-up after the origin, days (default: ``follow_up_days(df)``;
            pass ``StudySpec.recovery_horizon_days`` when known).

    Returns:
        ``{"cohort": cohort_description, "follow_up_months": float, "months": [...], "primary_endpoints": [...],
        "endpoints": {name: {"label": str, "variants": {variant: {"summary":
        recovery_summary, "strata": {by: stratified_summary}, "cox": [...] (primary
        endpoints only)}}}}}`` with None in place of NaN/inf.
    """
    endpoints = list(endpoints) if endpoints is not None else endpoints_in(df)
    stratifiers = available_stratifiers(df)
    horizon_days = follow_up_days(df) if horizon_days is None else float(horizon_days)
    out: dict[str, Any] = {"cohort": cohort_description(df), "follow_up_months": horizon_days / DAYS_PER_MONTH,
                           "months": list(months),
                           "primary_endpoints": [e for e in PRIMARY_ENDPOINTS if e in endpoints],
                           "stratifiers": {by: STRATIFIER_TITLES[by] for by in stratifiers}, "endpoints": {}}
    for endpoint in endpoints:
        variants = {}
        for variant in VARIANTS:
            if not has_endpoint(df, endpoint, variant):
                continue
            entry = {"summary": recovery_summary(df, endpoint, variant, months, horizon_days),
                     "strata": {by: stratified_summary(df, endpoint, variant, by, months, horizon_days)
                                for by in stratifiers}}
            if endpoint in PRIMARY_ENDPOINTS:
                entry["cox"] = cox_hazard_ratios(df, endpoint, variant)
            variants[variant] = entry
        out["endpoints"][endpoint] = {"label": endpoint_label(endpoint), "variants": variants}
    out["hormones_over_baseline"] = hormone_fraction_summary(df)
    return to_json_safe(out)


HORMONE_WORDS = {"lh": "LH", "fsh": "FSH", "testosterone": "Total testosterone"}


def hormone_fraction_summary(df: pd.DataFrame) -> dict:
    """Group means (and 10th/90th percentiles) of LH, FSH and total T over each man's own
    baseline at the months after the origin that the table holds
    (``<hormone>_fraction_of_baseline_<m>mo`` columns; numerical failures excluded).

    Returns:
        ``{hormone: [{"month", "mean", "q10", "q90", "n"}, ...]}``; empty when the table
        has no such columns.
    """
    rows, _ = analysable(df, columns=[c for c in df.columns if c.endswith("mo") and "_fraction_of_baseline_" in c])
    out: dict[str, list] = {}
    for hormone in HORMONE_WORDS:
        prefix = f"{hormone}_fraction_of_baseline_"
        entries = []
        for column in [c for c in df.columns if c.startswith(prefix) and c.endswith("mo")]:
            month = float(column[len(prefix):-2].replace("p", "."))
            x = rows[column].to_numpy(float)
            x = x[np.isfinite(x)]
            if x.size:
                entries.append({"month": month, "mean": float(x.mean()), "q10": float(np.quantile(x, 0.1)),
                                "q90": float(np.quantile(x, 0.9)), "n": int(x.size)})
        if entries:
            out[hormone] = sorted(entries, key=lambda e: e["month"])
    return out


def to_json_safe(value: Any) -> Any:
    """Recursively convert to plain Python (NumPy scalars -> int/float, NaN/inf -> None).

    Dict keys are kept (ints stay ints; ``json.dumps`` writes them as strings).
    """
    if isinstance(value, Mapping):
        return {k if isinstance(k, (str, int)) else str(k): to_json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [to_json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _number(value)
    if value is None or isinstance(value, str):
        return value
    return str(value)


# --------------------------------------------------------------------------- sweeps

def month_entry(mapping: Mapping, month: int | float) -> dict | None:
    """``mapping[month]`` whether the keys are ints or strings (after a JSON round trip)."""
    for key in (month, int(month) if float(month).is_integer() else month, str(month), f"{month:g}",
                str(float(month))):
        if key in mapping:
            return mapping[key]
    return None


SWEEP_ENDPOINTS = ("conc_ge_15", "conc_ge_20", "any_sperm")
SWEEP_MONTHS = (6, 12, 24)


def sweep_table(summaries: Sequence[tuple[Mapping[str, Any], Mapping]]) -> pd.DataFrame:
    """One row per sweep job with its overrides and key recovery numbers.

    Args:
        summaries: ``(overrides, study_summary)`` per job; ``overrides`` maps the swept
            setting (e.g. "protocol", "trt.duration_days") to its value in this job.

    Returns:
        DataFrame with the override columns, ``label`` ("k=v, ..."), ``n``, ``n_failed``;
        for conc_ge_15, conc_ge_20 and any_sperm, latent and sampled:
        ``{endpoint}_{variant}_median_months`` with ``_lower``/``_upper`` (NaN = not
        reached or not available); for conc_ge_15 both variants:
        ``conc_ge_15_{variant}_p_{m}mo`` with ``_lower``/``_upper`` for m in 6, 12, 24
        (fractions).
    """
    records = []
    for overrides, summary in summaries:
        cohort = summary.get("cohort", {})
        row: dict[str, Any] = {**{k: v for k, v in overrides.items()},
                               "label": ", ".join(f"{k}={v}" for k, v in overrides.items()) or "baseline",
                               "n": cohort.get("n_analysed"), "n_failed": cohort.get("n_failed")}
        for endpoint in SWEEP_ENDPOINTS:
            for variant in VARIANTS:
                s = summary.get("endpoints", {}).get(endpoint, {}).get("variants", {}).get(variant, {}).get("summary")
                median = (s or {}).get("median_months") or _empty_interval()
                prefix = f"{endpoint}_{variant}"
                row[f"{prefix}_median_months"] = median["estimate"]
                row[f"{prefix}_median_months_lower"] = median["lower"]
                row[f"{prefix}_median_months_upper"] = median["upper"]
                if endpoint != "conc_ge_15":
                    continue
                for m in SWEEP_MONTHS:
                    p = month_entry((s or {}).get("p_recovered_by_month", {}), m) or _empty_interval()
                    row[f"{prefix}_p_{m}mo"] = p["estimate"]
                    row[f"{prefix}_p_{m}mo_lower"] = p["lower"]
                    row[f"{prefix}_p_{m}mo_upper"] = p["upper"]
        records.append(row)
    table = pd.DataFrame.from_records(records)
    numeric = [c for c in table.columns if c.endswith(("_months", "_lower", "_upper")) or "_p_" in c]
    table[numeric] = table[numeric].astype(float)
    return table
