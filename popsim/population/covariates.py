"""Covariate model: how age, BMI, ethnicity and baseline testicular function set a
man's typical physiology before inter-individual variability.

Every coefficient lives in COVARIATE_EFFECTS (name, value, unit, meaning, source), which
docs/model.md renders next to the model parameter table.
"""

from __future__ import annotations

import numpy as np

from popsim.model.parameters import ParamSpec, default_parameters
from popsim.model.state import N_GERM_STAGES

MF = "model-facts.md"


def _c(name, value, unit, meaning, source):
    return ParamSpec(name, float(value), unit, "covariate_model", meaning, source, positive=False)


COVARIATE_EFFECTS: tuple[ParamSpec, ...] = (
    _c("reference_age_years", 30.0, "year", "age at which baselines equal the model defaults", "convention"),
    _c("reference_bmi_kg_m2", 24.0, "kg/m2", "BMI at which baselines equal the model defaults", "convention"),
    _c("t_base_change_per_year", -0.008, "1/year", "fractional change of baseline total T per year over the reference age",
       "MMAS cross-sectional -0.8%/yr (Feldman 2002, " + MF + " 7.2)"),
    _c("t_base_change_per_bmi", -0.02, "1/(kg/m2)", "fractional change of baseline total T per BMI unit over the reference",
       "EMAS: BMI >= 30 lowers TT by ~5 nmol/L (Wu 2008, " + MF + " 7.2)"),
    _c("shbg_change_per_year", 0.016, "1/year", "fractional change of SHBG per year over the reference age",
       "MMAS +1.6%/yr (Feldman 2002)"),
    _c("shbg_change_per_bmi", -0.025, "1/(kg/m2)", "fractional change of SHBG per BMI unit", "EMAS (Wu 2008); assumption on size"),
    _c("lh_change_per_year", 0.012, "1/year", "fractional change of baseline LH per year over the reference age",
       "LH rises with age (Yeap 2007; older RIA cohort 5.3 -> 9.5 IU/L, " + MF + " 7.2)"),
    _c("fsh_change_per_year", 0.018, "1/year", "fractional change of baseline FSH per year over the reference age",
       "FSH ranges widen with age (Asian Pac J Reprod 2021)"),
    _c("e2_change_per_bmi", 0.025, "1/(kg/m2)", "fractional change of baseline E2 per BMI unit (aromatase in adipose tissue)",
       "MODEL.md mechanism 6; assumption on size"),
    _c("semen_volume_change_per_year", -0.006, "1/year", "fractional change of semen volume per year over the reference age",
       "30 vs 50 y: -3 to -22% (Kidd 2001)"),
    _c("motility_change_per_year", -0.006, "1/year", "fractional change of motility per year over the reference age",
       "30 vs 50 y: -3 to -37% (Kidd 2001)"),
    _c("testicular_function_t_exponent", 0.5, "1", "baseline T ~ testicular_function^exponent",
       "assumption: primary hypogonadism lowers T with compensating LH"),
    _c("testicular_function_lh_exponent", -0.7, "1", "baseline LH ~ testicular_function^exponent", "assumption"),
    _c("testicular_function_fsh_exponent", -1.0, "1", "baseline FSH ~ testicular_function^exponent",
       "inhibin B / FSH relation (Pierik 1998)"),
    _c("testicular_function_sperm_exponent", 1.0, "1", "baseline sperm ~ testicular_function^exponent", "assumption"),
    _c("testicular_function_inhibin_exponent", 0.7, "1", "baseline inhibin B ~ testicular_function^exponent",
       "inhibin B lower in infertile men (78 vs 132 pg/mL)"),
    _c("testicular_function_reserve_recovery_exponent", 3.0, "1",
       "spermatogonial recovery rate ~ testicular_function^exponent: an impaired testis has fewer stem "
       "cells to repopulate an emptied reserve",
       "calibrated to C11 (azoospermic TRT patients, mostly hypogonadal, recover sperm more slowly than "
       "volunteers, Samplaski 2014; scan of 1, 2, 3); lower inhibin B and testis volume in hypogonadal men ("
       + MF + " 4.6)"),
    _c("asian_testosterone_clearance_factor", 0.75, "1",
       "metabolic clearance of testosterone in Asian men relative to others (smaller body size: the "
       "clearance of testosterone scales with body mass)",
       "calibrated to C12 (serum T 2.3x baseline and near-complete suppression on undecanoate 500 mg monthly in "
       "Chinese men, Gu 2003, against 1.5x for the same T dose in Matsumoto 1990, C5); also deepens the "
       "suppression of Asian men on enanthate (C3, WHO 1995)"),
    _c("asian_itt_support_ec50_factor", 2.1, "1", "ITT support threshold in Asian men relative to others",
       "calibrated to C3 (azoospermia by 6 months 89% Asian vs 67% non-Asian, WHO 1995)"),
    _c("reserve_recovery_change_per_year", 0.03, "1/year",
       "fractional change of the spermatogonial recovery rate per year of age relative to the reference age "
       "(constant beyond 51 y; floored at 0.2x)",
       "calibrated to C2: within 18-51 y older men recovered faster (Liu 2006); no mechanistic human data, "
       "empirical direction only"),
    _c("asian_reserve_recovery_factor", 2.0, "1", "spermatogonial recovery rate in Asian men relative to others",
       "calibrated to C1/C2 (Asian men recover faster, Liu 2006): offsets the deeper suppression of Asian "
       "men, which otherwise slows their recovery; the C2 direction holds over seeds from 2.0 (1.5: one seed "
       "of four wrong), while 3.0 made 89% of Asian men recover by 6 months and C1's pooled 6-month "
       "fraction too high"),
)

# Oldest age of the contraception trials that set the age effect on spermatogonial
# recovery (Liu 2006: 18-51 y); the effect is held constant beyond it (no data).
STUDIED_AGE_MAX_YEARS = 51.0

COVARIATE_INDEX = {spec.name: spec.default for spec in COVARIATE_EFFECTS}


def typical_parameters(age_years, bmi_kg_m2, asian, testicular_function,
                       effects: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """Typical (eta = 0) parameters of men with the given covariates.

    Args:
        age_years, bmi_kg_m2, testicular_function: ``(n,)`` covariates
            (testicular_function 1 = eugonadal, < 1 = impaired testes).
        asian: ``(n,)`` bool or 0/1.
        effects: overrides of COVARIATE_EFFECTS values by name.

    Returns:
        ``{parameter: (n,)}`` for every model parameter.
    """
    e = dict(COVARIATE_INDEX)
    unknown = set(effects or {}) - set(e)
    if unknown:
        raise ValueError(f"unknown covariate effect(s) {sorted(unknown)}; valid: {sorted(e)}")
    e.update(effects or {})
    age = np.asarray(age_years, float)
    bmi = np.asarray(bmi_kg_m2, float)
    asian = np.asarray(asian, float)
    tf = np.asarray(testicular_function, float)
    n = age.shape[0]
    p = default_parameters(n)
    older = np.maximum(age - e["reference_age_years"], 0.0)
    heavier = bmi - e["reference_bmi_kg_m2"]

    def factor(x):
        return np.maximum(1.0 + x, 0.2)

    p["age_years"] = age
    p["t_base_nmol_l"] = p["t_base_nmol_l"] * factor(e["t_base_change_per_year"] * older) * factor(
        e["t_base_change_per_bmi"] * np.maximum(heavier, 0.0)) * tf ** e["testicular_function_t_exponent"]
    p["shbg_base_nmol_l"] = p["shbg_base_nmol_l"] * factor(e["shbg_change_per_year"] * older) * factor(
        e["shbg_change_per_bmi"] * heavier)
    p["lh_base_iu_l"] = p["lh_base_iu_l"] * factor(e["lh_change_per_year"] * older) * tf ** e["testicular_function_lh_exponent"]
    p["fsh_base_iu_l"] = p["fsh_base_iu_l"] * factor(e["fsh_change_per_year"] * older) * tf ** e["testicular_function_fsh_exponent"]
    p["e2_base_pg_ml"] = p["e2_base_pg_ml"] * factor(e["e2_change_per_bmi"] * heavier)
    p["semen_volume_ml"] = p["semen_volume_ml"] * factor(e["semen_volume_change_per_year"] * older)
    p["motility_fraction"] = p["motility_fraction"] * factor(e["motility_change_per_year"] * older)
    p["sperm_base_m_ml"] = p["sperm_base_m_ml"] * tf ** e["testicular_function_sperm_exponent"]
    p["inhibin_b_base_pg_ml"] = p["inhibin_b_base_pg_ml"] * tf ** e["testicular_function_inhibin_exponent"]
    # Impaired testes: the lower output is excess germ-cell loss along the pipeline,
    # (k_tr / (k_tr + loss))^N = testicular_function (hpg.vector_field).
    k_transit = N_GERM_STAGES / p["spermatogenesis_days"]
    p["germ_loss_impaired_per_day"] = k_transit * (np.minimum(tf, 1.0) ** (-1.0 / N_GERM_STAGES) - 1.0)
    p["itt_support_ec50"] = p["itt_support_ec50"] * np.where(asian > 0.5, e["asian_itt_support_ec50_factor"], 1.0)
    p["cl_testosterone_l_day"] = p["cl_testosterone_l_day"] * np.where(asian > 0.5, e["asian_testosterone_clearance_factor"], 1.0)
    p["k_reserve_recovery_per_day"] = p["k_reserve_recovery_per_day"] * np.minimum(tf, 1.0) ** e[
        "testicular_function_reserve_recovery_exponent"] * np.where(
        asian > 0.5, e["asian_reserve_recovery_factor"], 1.0) * factor(
        e["reserve_recovery_change_per_year"] * (np.minimum(age, STUDIED_AGE_MAX_YEARS) - e["reference_age_years"]))
    return p
