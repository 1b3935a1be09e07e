"""Survival statistics of outcome tables (popsim.analysis.survival) on hand-made tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from popsim.analysis import survival as sv

M = sv.DAYS_PER_MONTH
HORIZON_DAYS = 730.5


def event_table(months, observed=None, failed=None) -> pd.DataFrame:
    """One endpoint (conc_ge_15, latent) with the given times in months."""
    months = np.asarray(months, float)
    observed = np.ones(months.size, bool) if observed is None else np.asarray(observed, bool)
    failed = np.zeros(months.size, bool) if failed is None else np.asarray(failed, bool)
    return pd.DataFrame({"failed": failed, "conc_ge_15_days": months * M, "conc_ge_15_observed": observed})


def synthetic_table(n: int = 300, seed: int = 0, n_failed: int = 3) -> pd.DataFrame:
    """An outcome table with the columns of run_study for a few endpoints (fast, no simulation)."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(25, 60, n)
    duration = rng.uniform(180, 1826, n)
    product = rng.choice(["enanthate", "cypionate", "gel"], n, p=[0.45, 0.45, 0.1])
    interval = np.where(product == "gel", 1.0, rng.choice([7.0, 14.0], n))
    dose = np.where(product == "gel", rng.uniform(50, 100, n), rng.uniform(100, 200, n))
    slow = np.exp(0.01 * (age - 40) + 0.0003 * (duration - 900))
    df = pd.DataFrame({
        "patient_id": np.arange(n), "man_id": np.arange(n), "cell": 0, "failed": np.arange(n) < n_failed,
        "age_years": age, "bmi_kg_m2": rng.normal(27, 4, n), "asian": (rng.uniform(size=n) < 0.2).astype(float),
        "testicular_function": 1.0, "trt_product": product, "trt_dose_mg": dose, "trt_interval_days": interval,
        "trt_duration_days": duration, "baseline_sperm_m_ml": rng.lognormal(np.log(70), 0.5, n),
        "baseline_lh_iu_l": rng.lognormal(np.log(5), 0.3, n), "baseline_testosterone_nmol_l": rng.normal(16, 4, n),
    })
    for name, scale in (("any_sperm", 1.0), ("conc_ge_1", 1.5), ("conc_ge_15", 3.0), ("conc_ge_20", 3.5)):
        latent = scale * M * slow * rng.lognormal(0.0, 0.6, n)
        df[f"{name}_observed"] = latent <= HORIZON_DAYS
        df[f"{name}_days"] = np.minimum(latent, HORIZON_DAYS)
        sampled = np.ceil(latent / 30.0) * 30.0
        df[f"sampled_{name}_observed"] = sampled <= 720.0
        df[f"sampled_{name}_days"] = np.minimum(sampled, 720.0)
    df["testosterone_ge_10p4_days"] = rng.exponential(20, n)
    df["testosterone_ge_10p4_observed"] = True
    df["suppression_min_sperm_fraction"] = 10 ** rng.uniform(-7, 0, n)
    df["suppression_min_lh_fraction"] = 10 ** rng.uniform(-5, 0, n)
    df["suppression_to_conc_le_1_observed"] = rng.uniform(size=n) < 0.8
    df["suppression_to_conc_le_1_days"] = np.where(df["suppression_to_conc_le_1_observed"], rng.uniform(50, 120, n),
                                                   duration)
    df["azoospermic_during_trt"] = rng.uniform(size=n) < 0.6
    for c in [c for c in df.columns if c.endswith("_days") and c != "trt_duration_days"]:
        df.loc[df["failed"], c] = np.nan
    return df


def test_km_without_censoring_is_the_empirical_cdf():
    df = event_table([1, 2, 3, 4, 5])
    s = sv.recovery_summary(df, "conc_ge_15", "latent", months=(2.5, 3, 6))
    assert s["median_months"]["estimate"] == pytest.approx(3.0)  # 3 of 5 recovered by 3 months
    assert s["p25_months"]["estimate"] == pytest.approx(2.0)    # first time >= 25% recovered
    assert s["p75_months"]["estimate"] == pytest.approx(4.0)
    assert s["p_recovered_by_month"][2.5]["estimate"] == pytest.approx(0.4)
    assert s["p_recovered_by_month"][3]["estimate"] == pytest.approx(0.6)
    assert s["p_recovered_by_month"][6]["estimate"] == pytest.approx(1.0)  # everyone recovered
    assert (s["n"], s["n_events"], s["n_censored"]) == (5, 5, 0)
    table = sv.km_table(df, "conc_ge_15", "latent", times_days=np.array([0.5, 2.5, 4.5]) * M)
    np.testing.assert_allclose(table["p_recovered"], [0.0, 0.4, 0.8])
    np.testing.assert_allclose(table["time_months"], [0.5, 2.5, 4.5])


def test_km_confidence_band_is_exponential_greenwood():
    df = event_table([1, 2, 3, 4, 5])
    row = sv.km_table(df, "conc_ge_15", "latent", times_days=[2.5 * M]).iloc[0]
    s = 0.6
    var = 1 / (5 * 4) + 1 / (4 * 3)  # Greenwood sum of d / (n (n - d))
    half = 1.959964 * np.sqrt(var / np.log(s) ** 2)
    s_low, s_high = (np.exp(-np.exp(np.log(-np.log(s)) + k * half)) for k in (1, -1))
    assert row["lower"] == pytest.approx(1 - s_high, abs=1e-4)
    assert row["upper"] == pytest.approx(1 - s_low, abs=1e-4)
    assert row["lower"] < row["p_recovered"] < row["upper"]


def test_km_with_censoring_matches_hand_computation():
    # events at 1, 3, 4 months, one man censored at 2: S(1)=3/4, S(3)=3/4*1/2, S(4)=0
    df = event_table([1, 2, 3, 4], observed=[True, False, True, True])
    s = sv.recovery_summary(df, "conc_ge_15", "latent", months=(1, 2, 3))
    assert s["p_recovered_by_month"][1]["estimate"] == pytest.approx(0.25)
    assert s["p_recovered_by_month"][2]["estimate"] == pytest.approx(0.25)
    assert s["p_recovered_by_month"][3]["estimate"] == pytest.approx(1 - 3 / 8)
    assert s["median_months"]["estimate"] == pytest.approx(3.0)
    assert s["n_censored"] == 1


def test_censored_only_endpoint_has_no_median():
    df = event_table([24, 24, 24], observed=[False, False, False])
    s = sv.recovery_summary(df, "conc_ge_15", "latent")
    assert s["median_months"]["estimate"] is None
    assert s["p25_months"]["estimate"] is None and s["p75_months"]["estimate"] is None
    assert s["p_recovered_by_month"][12]["estimate"] == 0.0
    assert s["never_recovered_fraction"]["estimate"] == pytest.approx(1.0)
    assert s["n_events"] == 0


def test_estimates_beyond_follow_up_are_none():
    df = event_table([1, 2, 12], observed=[True, True, False])
    s = sv.recovery_summary(df, "conc_ge_15", "latent", months=(6, 12, 24))
    assert s["p_recovered_by_month"][12]["estimate"] == pytest.approx(2 / 3)
    assert s["p_recovered_by_month"][24]["estimate"] is None
    s = sv.recovery_summary(df, "conc_ge_15", "latent", months=(24,), horizon_days=HORIZON_DAYS)
    assert s["p_recovered_by_month"][24]["estimate"] == pytest.approx(2 / 3)


def test_failed_rows_are_excluded_and_counted():
    df = event_table([1, 2, 3, 4, 5, 0.1, 0.2], failed=[False] * 5 + [True, True])
    s = sv.recovery_summary(df, "conc_ge_15", "latent")
    assert s["n_failed"] == 2 and s["n"] == 5
    assert s["median_months"]["estimate"] == pytest.approx(3.0)


def test_strata_bins():
    months = np.array([5.9, 6.0, 7.0, 12.0, 30.0, 48.0])
    df = pd.DataFrame({"trt_duration_days": months * M, "age_years": [29.9, 30, 45, 50, 60, 35],
                       "trt_dose_mg": [100, 100, 200, 250, 60, 50], "trt_interval_days": [14, 7, 7, 7, 1, 7],
                       "trt_product": ["enanthate"] * 4 + ["gel", "cypionate"]})
    assert list(sv.stratum_labels(df, "trt_duration")) == ["<6 mo", "6-12 mo", "6-12 mo", "12-24 mo", "24-48 mo",
                                                           "≥48 mo"]
    assert list(sv.stratum_labels(df, "age")) == ["<30 y", "30-40 y", "40-50 y", "≥50 y", "≥50 y", "30-40 y"]
    assert list(sv.stratum_labels(df, "trt_dose")) == ["<100 mg/wk", "100-150 mg/wk", "≥200 mg/wk", "≥200 mg/wk",
                                                       sv.GEL_LABEL, "<100 mg/wk"]


def test_asian_strata_keep_missing_values_missing():
    df = pd.DataFrame({"asian": [0.0, 1.0, np.nan, 0.7, 0.2]})
    labels = sv.stratum_labels(df, "asian")
    assert list(labels.cat.categories) == ["non-Asian", "Asian"]
    assert labels.isna().tolist() == [False, False, True, False, False]
    assert list(labels.dropna()) == ["non-Asian", "Asian", "Asian", "non-Asian"]


def test_analysable_rows_carry_only_the_columns_asked_for():
    df = synthetic_table(300, n_failed=3)
    rows, n_failed = sv.analysable(df, "conc_ge_15", "latent", columns=("age_years", "not_a_column"))
    assert list(rows.columns) == ["age_years", "conc_ge_15_days", "conc_ge_15_observed"]
    assert n_failed == 3 and len(rows) == 297 and not rows.index.isin(range(3)).any()
    everything, _ = sv.analysable(df)
    assert list(everything.columns) == list(df.columns) and len(everything) == 297


def test_dose_strata_and_cox_still_see_gel_users():
    df = synthetic_table(300, n_failed=3)
    n_gel = int(((df["trt_product"] == "gel") & ~df["failed"]).sum())
    strata = {r["stratum"]: r["n"] for r in sv.stratified_summary(df, "conc_ge_15", "latent", "trt_dose")}
    assert strata[sv.GEL_LABEL] == n_gel and sum(strata.values()) == 297
    cox = {r["covariate"]: r for r in sv.cox_hazard_ratios(df, "conc_ge_15", "latent")}
    assert f"{n_gel} gel users excluded" in cox["age_years"]["note"] and cox["age_years"]["n"] == 297 - n_gel


def test_stratified_summary_skips_empty_strata():
    df = synthetic_table(200, n_failed=0)
    df["trt_duration_days"] = np.where(np.arange(200) < 100, 7 * M, 30 * M)
    rows = sv.stratified_summary(df, "conc_ge_15", "latent", "trt_duration")
    assert [r["stratum"] for r in rows] == ["6-12 mo", "24-48 mo"]
    assert sum(r["n"] for r in rows) == 200
    assert rows[0]["median_months"]["estimate"] is not None


def test_cox_hazard_ratio_per_year_of_age():
    rng = np.random.default_rng(1)
    n = 800
    age = rng.uniform(25, 60, n)
    months = rng.exponential(1.0, n) / (0.3 * np.exp(0.05 * (age - 40)))
    df = pd.DataFrame({"failed": False, "age_years": age, "asian": 0.0,
                       "conc_ge_15_days": np.minimum(months, 24) * M, "conc_ge_15_observed": months <= 24})
    rows = {r["covariate"]: r for r in sv.cox_hazard_ratios(df, "conc_ge_15", "latent", ("age_years", "asian"))}
    hr = rows["age_years"]
    assert hr["unit"] == "per year of age"
    assert hr["lower"] > 1.0 and hr["hazard_ratio"] > 1.0
    assert hr["lower"] < np.exp(0.05) < hr["upper"] * 1.01  # truth, up to the small ridge shrinkage
    assert hr["p_value"] < 1e-6
    assert rows["asian"]["hazard_ratio"] is None and "no variation" in rows["asian"]["note"]


def test_cox_default_covariates_on_a_table():
    rows = sv.cox_hazard_ratios(synthetic_table(), "conc_ge_15", "latent")
    by_name = {r["covariate"]: r for r in rows}
    assert set(by_name) == set(sv.DEFAULT_COX_COVARIATES)
    assert by_name["trt_duration_months"]["hazard_ratio"] < 1  # longer TRT, slower recovery in the table
    assert "gel users excluded" in by_name["age_years"]["note"]


def test_study_summary_is_json_serialisable():
    df = synthetic_table()
    summary = sv.study_summary(df)
    text = json.dumps(summary, allow_nan=False)
    assert summary["cohort"]["n_failed"] == 3 and summary["cohort"]["n_analysed"] == len(df) - 3
    latent = summary["endpoints"]["conc_ge_15"]["variants"]["latent"]
    assert latent["summary"]["n_failed"] == 3
    assert {"trt_duration", "age", "trt_dose", "trt_product", "asian"} <= set(latent["strata"])
    assert latent["cox"] and "cox" in summary["endpoints"]["conc_ge_15"]["variants"]["sampled"]
    assert "cox" not in summary["endpoints"]["any_sperm"]["variants"]["latent"]
    assert "sampled" not in summary["endpoints"]["testosterone_ge_10p4"]["variants"]
    assert summary["follow_up_months"] == pytest.approx(24.0)
    back = json.loads(text)
    assert sv.month_entry(back["endpoints"]["conc_ge_15"]["variants"]["latent"]["summary"]["p_recovered_by_month"], 12)


def test_sweep_table_has_one_row_per_job():
    df = synthetic_table(200)
    jobs = [({"protocol": "none"}, sv.study_summary(df, endpoints=["conc_ge_15", "any_sperm"])),
            ({"protocol": "hcg"}, sv.study_summary(df.assign(conc_ge_15_days=df["conc_ge_15_days"] / 2),
                                                   endpoints=["conc_ge_15", "any_sperm"]))]
    table = sv.sweep_table(jobs)
    assert list(table["protocol"]) == ["none", "hcg"]
    assert table.loc[1, "conc_ge_15_latent_median_months"] < table.loc[0, "conc_ge_15_latent_median_months"]
    assert np.isnan(table.loc[0, "conc_ge_20_latent_median_months"])  # endpoint not summarised
    for col in ("conc_ge_15_sampled_p_12mo", "conc_ge_15_latent_p_6mo_lower", "any_sperm_sampled_median_months_upper"):
        assert col in table.columns
