"""The one parameter table of the HPG-axis model: name, default, unit, meaning, source.

Every number the model uses lives here; ``docs/model.md`` is generated from this table
(``python -m popsim.model.docs``) and a test checks the two agree. Per-patient values
are a mapping ``name -> array`` whose leaves share a leading patient axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

LN2 = math.log(2.0)


@dataclass(frozen=True)
class ParamSpec:
    """One model parameter.

    Attributes:
        name: identifier, with the unit as suffix where it has one.
        default: value for a typical healthy man of 30 years (canonical units).
        unit: canonical unit ("1" for dimensionless).
        group: the mechanism the parameter belongs to (a section of docs/model.md).
        meaning: one line.
        source: citation, "derived: ..." or "calibrated to C-n" or "assumption".
        positive: whether the value must be > 0 (all log-normal IIV targets are).
        plausible: ``(low, high)`` physiologically plausible range that calibration must
            stay inside (None where no range has been set).
    """

    name: str
    default: float
    unit: str
    group: str
    meaning: str
    source: str
    positive: bool = True
    plausible: tuple[float, float] | None = None


def _p(name, default, unit, group, meaning, source, positive=True, plausible=None):
    return ParamSpec(name, float(default), unit, group, meaning, source, positive,
                     None if plausible is None else (float(plausible[0]), float(plausible[1])))


YEAR = 365.25


MF = "model-facts.md"

PARAMETERS: tuple[ParamSpec, ...] = (
    # --- Covariates that act inside the model
    _p("age_years", 30.0, "year", "covariate", "age; slows Leydig and spermatogonial regrowth",
       "MODEL.md mechanism 11"),
    # --- Baselines of an individual (set by covariates and inter-individual variability)
    _p("t_base_nmol_l", 18.4, "nmol/L", "baseline", "untreated total testosterone",
       "Travison 2017 harmonised median, non-obese 19-39 y (" + MF + " 7.1)"),
    _p("lh_base_iu_l", 4.5, "IU/L", "baseline", "untreated serum LH",
       "adult reference 1.7-8.6 IU/L (" + MF + " 7.3)"),
    _p("fsh_base_iu_l", 3.8, "IU/L", "baseline", "untreated serum FSH",
       "normozoospermic men 1.0-8.2 IU/L at 21-30 y (" + MF + " 7.3)"),
    _p("e2_base_pg_ml", 25.0, "pg/mL", "baseline", "untreated serum estradiol",
       "typical adult male 20-30 pg/mL (" + MF + " 7.3)"),
    _p("inhibin_b_base_pg_ml", 170.0, "pg/mL", "baseline", "untreated serum inhibin B",
       "fertile men 130-255 pg/mL (" + MF + " 4.6)"),
    _p("shbg_base_nmol_l", 35.0, "nmol/L", "baseline", "untreated SHBG",
       "young men; rises 1.6%/yr with age (Feldman 2002, " + MF + " 7.2)"),
    _p("sperm_base_m_ml", 70.0, "M/mL", "baseline", "untreated sperm concentration",
       "WHO control cohorts 60-110 M/mL (Bremner 1981, Matsumoto 1983; " + MF + " 4.4)"),
    _p("semen_volume_ml", 3.0, "mL", "baseline", "ejaculate volume",
       "WHO 2010 median ~3 mL (Cooper 2010)"),
    _p("motility_fraction", 0.55, "1", "baseline", "fraction of motile sperm",
       "WHO 2010 median total motility ~55-60% (Cooper 2010)"),
    # --- Exogenous testosterone pharmacokinetics
    _p("cl_testosterone_l_day", 1250.0, "L/day", "testosterone_pk",
       "metabolic clearance of testosterone at baseline SHBG",
       "derived: production ~6.5 mg/day at ~18 nmol/L (" + MF + " 2)"),
    _p("k_oil_dispersion_per_day", 1.5, "1/day", "testosterone_pk",
       "dispersion of an IM oil injection into the releasing depot",
       "assumption: gives Tmax 1.5-3 d for enanthate (" + MF + " 5.1)"),
    _p("k_release_enanthate_per_day", LN2 / 4.5, "1/day", "testosterone_pk",
       "depot release of testosterone enanthate", "release t1/2 4.5 d (Swiss label, " + MF + " 5.1)"),
    _p("k_release_cypionate_per_day", LN2 / 8.0, "1/day", "testosterone_pk",
       "depot release of testosterone cypionate", "t1/2 ~8 d (US label, " + MF + " 5.1)"),
    _p("k_release_undecanoate_per_day", LN2 / 34.0, "1/day", "testosterone_pk",
       "depot release of testosterone undecanoate (IM)",
       "terminal t1/2 21-34 d (" + MF + " 5.1); 34 d (castor oil) calibrated to C2 (long-acting preparation "
       "recovers more slowly, Liu 2006)"),
    _p("t_content_enanthate", 0.72, "1", "testosterone_pk", "testosterone mass fraction of the ester",
       "180 mg T in 250 mg TE (Swiss label)"),
    _p("t_content_cypionate", 0.70, "1", "testosterone_pk", "testosterone mass fraction of the ester",
       "140 mg T in 200 mg TC (Behre & Nieschlag)"),
    _p("t_content_undecanoate", 0.63, "1", "testosterone_pk", "testosterone mass fraction of the ester",
       "derived: molar masses 288.4/456.7"),
    _p("gel_absorbed_fraction", 0.10, "1", "testosterone_pk", "fraction of a gel dose absorbed",
       "AndroGel label ~10% (" + MF + " 5.1)"),
    _p("k_skin_uptake_per_day", 6.0, "1/day", "testosterone_pk", "uptake of gel into the skin reservoir",
       "assumption: gel dries within hours"),
    _p("k_skin_release_per_day", LN2 / 0.5, "1/day", "testosterone_pk",
       "release from the skin reservoir into plasma", "assumption: ~10% absorbed over 24 h, flat daily profile"),
    _p("shbg_clearance_exponent", 0.85, "1", "testosterone_pk",
       "clearance of total T scales as (SHBG/SHBG_base)^-exponent",
       "calibrated to C5 (serum T 1.5x/3x placebo at 100/300 mg TE); refit with the C5-C7 feedback "
       "(docs/validation.md)"),
    # --- Protocol-drug pharmacokinetics
    _p("k_absorption_hcg_per_day", 3.0, "1/day", "drug_pk", "hCG absorption (SC/IM)",
       "peak response ~6 h (" + MF + " 6.5)"),
    _p("k_elimination_hcg_per_day", LN2 / 1.25, "1/day", "drug_pk", "hCG elimination",
       "slow-phase t1/2 ~24-36 h (" + MF + " 6.5)"),
    _p("v_hcg_l", 6.1, "L", "drug_pk", "hCG volume of distribution",
       "derived: MCR 3.38 L/day x 1.25 d / ln 2 (" + MF + " 6.5)"),
    _p("k_absorption_fsh_per_day", 2.0, "1/day", "drug_pk", "recombinant FSH absorption (SC)", "assumption"),
    _p("k_elimination_fsh_per_day", LN2 / 1.5, "1/day", "drug_pk", "FSH elimination",
       "terminal t1/2 17-36 h (le Cotonnec 1993, " + MF + " 6.6)"),
    _p("v_fsh_l", 10.0, "L", "drug_pk", "FSH volume of distribution", "assumption"),
    _p("k_absorption_oral_per_day", 12.0, "1/day", "drug_pk", "absorption of oral drugs (SERMs, AI)",
       "Tmax 2-7 h (labels, " + MF + " 6.1-6.3)"),
    _p("k_elimination_enclomiphene_per_day", LN2 / (10.0 / 24.0), "1/day", "drug_pk",
       "enclomiphene elimination", "t1/2 ~10 h (Wiehle, " + MF + " 6.1)"),
    _p("v_enclomiphene_l", 4200.0, "L", "drug_pk", "apparent volume of enclomiphene",
       "derived: 2.2 ng/mL on clomiphene 25 mg/day (Helo 2017)"),
    _p("k_elimination_zuclomiphene_per_day", LN2 / 20.0, "1/day", "drug_pk",
       "zuclomiphene elimination", "derived: accumulates over weeks, detectable >1 month (Young 1999)"),
    _p("v_zuclomiphene_l", 4800.0, "L", "drug_pk", "apparent volume of zuclomiphene",
       "derived: 44 ng/mL after 6 wk of clomiphene 25 mg/day (Helo 2017)"),
    _p("zuclomiphene_fraction", 0.38, "1", "drug_pk", "cis isomer fraction of clomiphene citrate",
       "30-50% zuclomiphene (Clomid label)"),
    _p("k_elimination_tamoxifen_per_day", LN2 / 7.0, "1/day", "drug_pk",
       "tamoxifen (+ N-desmethyl metabolite) elimination", "t1/2 5-7 d, metabolite 14 d (labels)"),
    _p("v_tamoxifen_l", 1350.0, "L", "drug_pk", "apparent volume of tamoxifen",
       "derived: ~300 ng/mL at 40 mg/day steady state (Swiss label)"),
    _p("k_elimination_anastrozole_per_day", LN2 / (50.0 / 24.0), "1/day", "drug_pk",
       "anastrozole elimination", "t1/2 40-50 h (Arimidex label)"),
    _p("v_anastrozole_l", 110.0, "L", "drug_pk", "apparent volume of anastrozole",
       "derived: CL/F ~1.5 L/h (label)"),
    _p("k_absorption_gonadorelin_per_day", LN2 / (15.0 / 1440.0), "1/day", "drug_pk",
       "gonadorelin absorption (SC)", "assumption: minutes"),
    _p("k_effect_gonadorelin_per_day", LN2 / (1.5 / 24.0), "1/day", "drug_pk",
       "decay of the pituitary stimulus of a gonadorelin dose",
       "plasma t1/2 minutes; LH response to a bolus lasts ~2-4 h (" + MF + " 6.4)"),
    _p("k_plasma_gonadorelin_per_day", LN2 / (10.0 / 1440.0), "1/day", "drug_pk",
       "gonadorelin plasma elimination (sets the trough between pulses)",
       "terminal t1/2 10-40 min (" + MF + " 6.4)"),
    # --- Hypothalamus: separate androgen and estrogen feedback on GnRH drive
    _p("k_feedback_per_day", LN2 / 0.5, "1/day", "hypothalamus",
       "equilibration of the feedback signals with serum free T and estrogen activity",
       "assumption: LH falls within days of a T injection (Coviello 2005)"),
    _p("ic50_free_t_pmol_l", 225.0, "pmol/L", "hypothalamus",
       "free T halving GnRH drive (androgen-receptor feedback)",
       "calibrated jointly to C5/C6/C7 (LH ED50 ~50 mg TE/week, LH <10% at 200 mg, clomiphene T 250 -> "
       "~600 ng/dL; docs/validation.md)"),
    _p("hill_free_t", 3.7, "1", "hypothalamus", "steepness of androgen feedback",
       "calibrated to C5/C6/C7 (3.5 -> 3.7 with the FSH reserve exponent: LH at 100 mg TE/week <= 0.10 of placebo)"),
    _p("ic50_e2_pg_ml", 9.3, "pg/mL", "hypothalamus",
       "estrogen signal halving GnRH drive (estrogen-receptor feedback)",
       "calibrated jointly to C5/C6/C7 (clomiphene and anastrozole raise LH and T)"),
    _p("hill_e2", 5.4, "1", "hypothalamus", "steepness of estrogen feedback",
       "calibrated to C5/C6/C7: estrogen-receptor feedback carries most of the loop gain, so blocking it "
       "(clomiphene) lets T double in low-T men (Helo 2017, Katz 2012) while exogenous T still "
       "suppresses LH (Pitteloud 2008, Finkelstein 1991: E2 feedback at hypothalamus and pituitary)"),
    _p("ki_enclomiphene_ng_ml", 1.0, "ng/mL", "hypothalamus",
       "enclomiphene concentration halving estrogen-receptor signalling",
       "calibrated to C7 (Helo 2017, Katz 2012)"),
    _p("ki_zuclomiphene_ng_ml", 40.0, "ng/mL", "hypothalamus",
       "zuclomiphene concentration halving estrogen-receptor signalling", "assumption: weak antagonist"),
    _p("zuclomiphene_agonism_pg_ml_per_ng_ml", 0.2, "pg/mL per ng/mL", "hypothalamus",
       "estradiol-equivalent agonism of zuclomiphene", "assumption: weakly estrogenic cis isomer (Clomid label)"),
    _p("ki_tamoxifen_ng_ml", 60.0, "ng/mL", "hypothalamus",
       "tamoxifen concentration halving estrogen-receptor signalling",
       "assumption: 20 mg/day comparable to clomiphene 150 mg (Vermeulen 1978)"),
    _p("hypothalamic_suppression_ec50", 4.58, "1", "hypothalamus",
       "androgen feedback above the man's own baseline (free T / baseline - 1) that halves the capacity of "
       "the GnRH pulse generator after prolonged exposure",
       "calibrated jointly to C1/C7/C8/C9 (docs/validation.md): hormonal recovery after supraphysiological "
       "androgens takes months (Christou 2017, Eur J Endocrinol 2023) while recovery after contraceptive "
       "doses is quick (Liu 2006); only supraphysiological exposure suppresses the pulse generator deeply "
       "(anabolic-steroid induced hypogonadism)", plausible=(0.5, 8.0)),
    _p("hypothalamic_suppression_hill", 5.85, "1", "hypothalamus", "steepness of that suppression",
       "calibrated to C1/C9 jointly: a threshold response, so that contraceptive doses (free T ~3x baseline) "
       "leave the generator nearly intact while 500-1000 mg weekly (free T 8-16x) suppresses it deeply",
       plausible=(1.0, 8.0)),
    _p("k_hypothalamic_suppression_per_day", 0.0565, "1/day", "hypothalamus",
       "rate at which the pulse-generator capacity falls towards its suppressed level once the fall is under way",
       "calibrated jointly to C1/C7/C8/C9 with the onset floor (depth builds over months: longer cycles lower "
       "the odds of recovery, Eur J Endocrinol 2023, while T is back 3 months after a 14-week cycle, Smit 2021; "
       "docs/validation.md)",
       plausible=(1.0 / 365.0, 1.0 / 14.0)),
    _p("hypothalamic_suppression_onset_floor", 0.0184, "1", "hypothalamus",
       "floor of the self-reinforcing fall of the pulse-generator capacity, fall rate ~ (floor + 1 - H)/(1 + floor): "
       "the first weeks of exposure cost little and the fall accelerates once it has begun, so depth grows "
       "with the length of exposure over months rather than saturating within weeks",
       "calibrated jointly to C1/C7/C8/C9 (docs/validation.md): a 14-week 500 mg cycle leaves T within 15% "
       "of baseline 3 months later (C8) while cycles of 2-12 months take a median ~5 months to hormonal "
       "recovery (C9); a first-order fall (large floor) cannot give both", plausible=(0.005, 1.0e3)),
    _p("k_hypothalamic_recovery_per_day", 0.0135, "1/day", "hypothalamus",
       "recovery of the pulse-generator capacity at 30 y once the excess androgen is gone",
       "calibrated to C1/C7/C8/C9 (group-mean LH back 13-24 weeks after stopping a cycle; gonadotropins 3-6 "
       "months after anabolic steroids, Endocrine Connections 2023 in " + MF + " 9); 0.0150 -> 0.0135 with "
       "the faster Leydig regrowth (C9 hormonal recovery without PCT 17.9 -> 19.3 weeks, docs/validation.md)",
       plausible=(1.0 / 365.0, 1.0 / 14.0)),
    _p("hypothalamic_recovery_floor", 0.001, "1", "hypothalamus",
       "floor of the sigmoid regrowth of the pulse-generator capacity, regrowth ~ (floor + H)/(1 + floor): "
       "a deeply suppressed generator comes back after a lag",
       "model construct (sigmoid recovery curves after anabolic steroids); calibrated to C9",
       plausible=(0.001, 0.2)),
    _p("hypothalamic_recovery_decline_per_year", 0.01, "1/year", "hypothalamus",
       "fractional slowing of that recovery per year of age over 30",
       "assumption: older men recover the axis more slowly after TRT (MODEL.md mechanism 11)",
       plausible=(0.0, 0.03)),
    # --- Pituitary
    _p("gnrh_drive_saturation", 9.0, "1", "hypothalamus",
       "saturation of the GnRH pulse generator: disinhibited drive d acts as d (1 + K) / (d + K), at most "
       "1 + K times baseline",
       "LH reaches ~6-13x a eugonadal level after castration or a 100 ug gonadorelin bolus (peak ~60 IU/L, "
       + MF + " 3); without a ceiling a SERM after androgen withdrawal drove LH to hundreds of times "
       "baseline; 9 kept after a trial of 4 (C1/C7/C9 objective 61 vs 69)", plausible=(4.0, 15.0)),
    _p("lh_gnrh_exponent", 1.0, "1", "pituitary", "LH secretion ~ (GnRH drive)^exponent", "assumption"),
    _p("fsh_gnrh_exponent", 0.6, "1", "pituitary", "FSH secretion ~ (GnRH drive)^exponent",
       "FSH responds less than LH to each GnRH pulse (a basal, pulse-independent share of FSH secretion, "
       "Padmanabhan 1997, portal blood of sheep); calibrated to C5/C6 with fsh_reserve_exponent: at steady "
       "state the reserve follows drive^0.5, so FSH ~ drive^(0.6 + 3 x 0.5) = drive^2.1 (FSH ~ LH at 50 mg "
       "TE/week, ~0 on TE 200 mg)",
       plausible=(0.3, 1.7)),
    _p("fsh_reserve_exponent", 3.0, "1", "pituitary", "FSH secretion ~ (pituitary reserve)^exponent",
       "FSH is secreted as it is synthesised, LH from stores released by GnRH pulses, so FSH follows the "
       "gonadotrophs' biosynthetic reserve more steeply than LH (exponent 1); after androgen abuse FSH and "
       "inhibin B recover after LH (Shankara-Narayana 2020, J Clin Endocrinol Metab 105:1827; not a target). "
       "3 calibrated to C9 (group-mean FSH back with LH, 13-24 weeks)", plausible=(1.0, 4.0)),
    _p("fsh_inhibin_exponent", 0.5, "1", "pituitary", "FSH ~ (inhibin B/baseline)^-exponent",
       "assumption (inhibin B vs FSH r = -0.78, Pierik 1998); 0.5 calibrated to C5 (FSH at 100 mg TE/week "
       "as suppressed as at 300 mg)"),
    _p("k_pituitary_reserve_per_day", 1.0 / 30.0, "1/day", "pituitary",
       "adaptation of gonadotroph reserve to GnRH stimulation",
       "LH recovers over months after long TRT (MODEL.md; calibrated to C1/C4)"),
    _p("pituitary_reserve_exponent", 0.5, "1", "pituitary",
       "steady-state reserve ~ (GnRH stimulation)^exponent", "assumption"),
    _p("pituitary_reserve_max", 1.3, "1", "pituitary",
       "largest steady-state gonadotroph reserve over the man's baseline under high GnRH stimulation "
       "(approached smoothly: log reserve target = log(max) tanh(exponent log S / log(max)) above baseline)",
       "LH reaches ~6-13x a eugonadal level after castration (" + MF + " 3), most of which the pulse "
       "generator's saturation already gives; an unbounded reserve primed to (1 + K)^0.5 on top would give "
       "~30x. Calibrated to C8 with C9 (1.0-1.3 keep C9's group-mean LH back after 14-20 weeks, 1.5 brings it "
       "to week 6-7 through the LH rebound of men whose generator recovers while T is low; docs/validation.md)",
       plausible=(1.0, 3.2)),
    _p("gonadorelin_max_drive", 3.0, "1", "pituitary",
       "maximal gonadorelin stimulus in units of baseline GnRH drive", "assumption (extrapolated)"),
    _p("gonadorelin_ec50_ug", 2.0, "ug", "pituitary",
       "gonadorelin in the effect compartment giving half-maximal stimulus",
       "assumption: 5-20 ug pump pulses are physiological (" + MF + " 6.4)"),
    _p("k_gnrh_desensitisation_per_day", 5.0, "1/day", "pituitary",
       "maximal rate of GnRH-receptor desensitisation under sustained gonadorelin",
       "Belchetz 1978: continuous GnRH fails to sustain LH within days"),
    _p("k_gnrh_resensitisation_per_day", 0.5, "1/day", "pituitary",
       "recovery of GnRH-receptor responsiveness", "assumption"),
    _p("gonadorelin_sustained_ec50_ug_day", 100.0, "ug/day", "pituitary",
       "sustained (trough) gonadorelin exposure giving half-maximal desensitisation",
       "assumption: a 10 ug pump every 90 min keeps LH up, a continuous infusion suppresses it"),
    _p("gonadorelin_sustained_hill", 2.0, "1", "pituitary",
       "steepness of desensitisation in the sustained exposure", "assumption"),
    # --- Leydig cells and intratesticular testosterone
    _p("leydig_lh_ec50_iu_l", 5.18, "IU/L", "leydig", "LH giving half-maximal T stimulation",
       "Tornøe 2007 L50"),
    _p("leydig_lh_hill", 1.9, "1", "leydig", "Hill coefficient of LH on T production", "Tornøe 2007 kappa"),
    _p("leydig_lh_max_fold", 77.5, "1", "leydig", "maximal LH stimulation over LH-independent production",
       "Tornøe 2007 Lmax"),
    _p("hcg_lh_equivalence", 0.4, "1", "leydig", "IU/L of LH equivalent to 1 IU/L of hCG at the LH receptor at low hCG concentrations",
       "calibrated to C6 (Coviello 2005 ITT with hCG 125-500 IU)"),
    _p("hcg_lh_max_iu_l", 7.0, "IU/L", "leydig",
       "maximal LH-equivalent stimulus of hCG (saturation of the hCG response at the LH receptor)",
       "calibrated to C6: ITT rises less than in proportion to the hCG dose (Coviello 2005: 75/93/126% at "
       "125/250/500 IU); hCG desensitises Leydig steroidogenesis (Saez & Forest 1979, " + MF + " 6.5)"),
    _p("leydig_floor", 0.35, "1", "leydig", "Leydig capacity left after prolonged absence of LH",
       "assumption: T recovers within months of a cycle (C8)"),
    _p("leydig_max_capacity_age30", 1.5, "1", "leydig", "maximal Leydig capacity under strong LH/hCG at 30 y",
       "assumption: hCG stimulation raises T ~2x (" + MF + " 6.5)"),
    _p("leydig_max_capacity_decline_per_year", 0.008, "1/year", "leydig",
       "decline of maximal Leydig capacity per year of age over 30", "assumption from MMAS -0.8%/yr (Feldman 2002)"),
    _p("k_leydig_atrophy_per_day", 1.0 / 45.0, "1/day", "leydig", "loss of Leydig capacity without LH",
       "assumption: deeper suppression with longer TRT (MODEL.md)"),
    _p("k_leydig_regrowth_per_day", 0.035, "1/day", "leydig", "regrowth of Leydig capacity at 30 y",
       "calibrated to C8 (T back within 15% three months after a cycle) with the invariant that T recovers "
       "before sperm after TRT (tests/test_population_invariants.py; 1/40 with the capped reserve left the "
       "median T return at 155 against 149 days for sperm, docs/validation.md)",
       plausible=(1.0 / 90.0, 1.0 / 14.0)),
    _p("leydig_regrowth_decline_per_year", 0.015, "1/year", "leydig",
       "fractional slowing of Leydig regrowth per year of age over 30", "assumption"),
    _p("k_leydig_cell_loss_per_day", 0.00183, "1/day", "leydig",
       "loss of Leydig cells per day at full LH deprivation (in proportion to the shortfall of LH or hCG "
       "stimulation below baseline)",
       "calibrated to C10 (former long-term users keep ~23% lower T 1.5-4 y after stopping, Rasmussen 2016; "
       "scan of 1/(2 y) and 1/(1.5 y)); LH withdrawal causes Leydig apoptosis (hypophysectomy, GnRH "
       "antagonists; " + MF + " 4.2)",
       plausible=(1.0 / (20.0 * YEAR), 1.0 / (0.5 * YEAR))),
    _p("k_leydig_cell_regrowth_per_day", 0.000456, "1/day", "leydig",
       "regrowth of the Leydig cell number at 30 y under baseline LH (from stem Leydig cells); slows with "
       "age as leydig_regrowth_decline_per_year",
       "calibrated to C10; adult Leydig cells are replaced over years (attrition ~80 million of 700 million "
       "per decade, Kaler & Neaves 1978, " + MF + " 4.2)",
       plausible=(1.0 / (10.0 * YEAR), 1.0 / (0.25 * YEAR))),
    _p("itt_serum_ratio", 87.5, "1", "leydig", "baseline ITT / serum total T",
       "1234 nmol/L ITT at 14.1 nmol/L serum (Coviello 2005)"),
    _p("itt_diffusion_ratio", 1.0, "1", "leydig", "ITT contributed per nmol/L of serum T",
       "calibrated to C6 (ITT 6% of baseline on TE 200 mg/week)"),
    # --- Aromatisation, SHBG
    _p("anastrozole_imax", 0.85, "1", "estradiol", "maximal inhibition of aromatase by anastrozole",
       "-70 to -80% E2 in women at 1 mg (Arimidex label)"),
    _p("anastrozole_ic50_ng_ml", 12.0, "ng/mL", "estradiol", "anastrozole giving half-maximal aromatase inhibition",
       "calibrated to C7: ~60% aromatase inhibition at 1 mg/day, T/E2 x2.5 (Raman & Schlegel 2002; "
       "Leder 2004: E2/T fell 61% on 1 mg/day)"),
    _p("e2_t_independent_fraction", 0.58, "1", "estradiol",
       "share of baseline E2 that does not follow serum T (aromatisation of adrenal androstenedione via "
       "estrone)",
       "derived: T->E2 transfer 0.2-0.39% x T production 6.5 mg/day = 13-25 ug/day of an E2 production of "
       "25-45 ug/day, so 0-70% of E2 is not from serum T (" + MF + " 2); calibrated to C7 (T/E2 x1.3-2.0 on "
       "clomiphene)"),
    _p("k_shbg_per_day", LN2 / 7.0, "1/day", "shbg", "turnover of SHBG", "SHBG t1/2 ~7 d (assumption)"),
    _p("shbg_androgen_exponent", 0.3, "1", "shbg", "SHBG target ~ (total T/baseline)^-exponent",
       "androgens lower hepatic SHBG (assumption)"),
    _p("albumin_g_dl", 4.3, "g/dL", "shbg", "serum albumin for the free-T calculation", "Vermeulen 1999"),
    _p("ka_shbg_l_mol", 1.0e9, "L/mol", "shbg", "association constant of T to SHBG", "Vermeulen 1999"),
    _p("ka_albumin_l_mol", 3.6e4, "L/mol", "shbg", "association constant of T to albumin", "Vermeulen 1999"),
    # --- Sertoli cells, inhibin B
    _p("k_sertoli_per_day", LN2 / 7.0, "1/day", "sertoli", "adaptation of Sertoli function to FSH", "assumption"),
    _p("sertoli_fsh_ec50", 0.3, "1", "sertoli", "FSH (fraction of own baseline) giving half-maximal Sertoli function",
       "assumption"),
    _p("inhibin_sertoli_exponent", 0.5, "1", "sertoli", "inhibin B ~ (Sertoli function)^exponent",
       "inhibin B fell only to 75% on T+progestin (Matthiesson 2003)"),
    _p("inhibin_germ_weight", 0.4, "1", "sertoli", "share of inhibin B that tracks the germ-cell content",
       "inhibin B low in oligozoospermia (Grunewald 2013)"),
    # --- Spermatogenesis
    _p("spermatogenesis_days", 67.0, "day", "spermatogenesis", "mean transit spermatogonium -> testicular sperm",
       "64-74 d (Heller & Clermont; " + MF + " 4.1); calibrated to C1/C3/C4 within that range "
       "(docs/validation.md): median return to 3/10/20 M/mL 2.5/3.0/3.4 months, suppression to <=1 M/mL ~13 wk; "
       "73.5 -> 67 when FSH began to return after LH (fourth pass)"),
    _p("epididymal_transit_days", 6.0, "day", "spermatogenesis", "mean epididymal transit",
       "2-12 d (animal data, " + MF + " 9); calibrated to C1/C4 within that range (docs/validation.md; "
       "10 -> 6 in the fourth pass)"),
    _p("itt_support_ec50", 0.172, "1", "spermatogenesis", "ITT (fraction of baseline) giving half support",
       "spermatogenesis compromised below ~20 ng/mL ITT (~6% of baseline); calibrated to C3/C5 (sperm halved "
       "at 50 mg TE/week, Matsumoto 1990); 0.165 -> 0.172 in the fourth pass"),
    _p("itt_support_hill", 3.0, "1", "spermatogenesis", "steepness of ITT support", "assumption; calibrated to C3/C5"),
    _p("fsh_support_ec50", 0.3, "1", "spermatogenesis", "Sertoli function giving half FSH support", "assumption"),
    _p("fsh_support_hill", 2.0, "1", "spermatogenesis", "steepness of FSH support", "assumption"),
    _p("support_weight_itt", 0.50, "1", "spermatogenesis", "share of output sustained by ITT alone",
       "hCG alone restores ~1/2 of output (Bremner 1981)"),
    _p("support_weight_fsh", 0.33, "1", "spermatogenesis", "share of output sustained by FSH alone",
       "FSH alone restores ~1/3 (Matsumoto 1983)"),
    _p("germ_death_max_per_day", 0.065, "1/day", "spermatogenesis",
       "maximal loss rate of germ cells without hormonal support",
       "calibrated to C3 (suppression half-time 5.5 wk; <= 1 M/mL ~12-13 wk with the 68-d pipeline of that fit, "
       "docs/validation.md)"),
    _p("germ_death_support_ec50", 0.2, "1", "spermatogenesis", "support below which germ cells are lost",
       "assumption"),
    _p("k_reserve_depletion_per_day", 0.0015, "1/day", "spermatogenesis",
       "depletion of the spermatogonial reserve without support (at a full reserve)",
       "calibrated to C1/C4 (docs/validation.md): the share of men who end 12 months of TE with an empty "
       "reserve sets the slow minority (P(>=20 M/mL) 0.67/0.90 at 6/12 months); longer TRT recovers slower (C2)"),
    _p("k_reserve_recovery_per_day", 0.021, "1/day", "spermatogenesis",
       "regrowth of the spermatogonial reserve at 30 y (at a full reserve)",
       "calibrated to C1/C4 (docs/validation.md): median and slow tail of recovery to 20 M/mL, "
       "recovery to own baseline ~7 months, population plateau ~85% of baseline at 1-2 years; refit with "
       "C11 when the stem-cell pool was added (0.013 -> 0.021)"),
    _p("reserve_regrowth_floor", 0.05, "1", "spermatogenesis",
       "floor of reserve regrowth by self-renewal, regrowth ~ (floor + Q)/(1 + floor): an emptied reserve "
       "refills after a lag",
       "model construct (stem-cell self-renewal); calibrated to C1/C4 (bimodal recovery, docs/validation.md)"),
    _p("reserve_depletion_half_saturation", 0.05, "1", "spermatogenesis",
       "half-saturation reserve level of depletion, depletion ~ Q (1 + K)/(Q + K): the reserve drains at a "
       "near-constant rate until exhausted (values below ~1e-3 make depletion near Q = 0 too stiff for the "
       "default step)",
       "model construct; calibrated to C1/C4 (bimodal recovery, docs/validation.md)"),
    _p("germ_loss_impaired_per_day", 0.0, "1/day", "spermatogenesis",
       "germ-cell loss per pipeline stage at baseline support in an impaired testis (0 in a healthy man; "
       "set from testicular_function by the covariate model)",
       "derived: survival (k_tr / (k_tr + loss))^12 = testicular function (excess germ-cell apoptosis in "
       "oligozoospermia; Sinha Hikim & Swerdloff 1999, Amann 2008 in " + MF + " 4.2)", positive=False),
    _p("germ_survival_hormone_exponent", 2.0, "1", "spermatogenesis",
       "how strongly hormonal drive (Sertoli function x ITT, relative to baseline) lowers that loss",
       "calibrated to C7 (anastrozole in oligospermic men: concentration x2.8, Raman & Schlegel 2002); "
       "FSH and T are germ-cell survival factors (Sinha Hikim & Swerdloff 1999)"),
    _p("k_stem_cell_loss_per_day", 0.00105, "1/day", "spermatogenesis",
       "loss of spermatogonial stem cells per day without hormonal support (in proportion to the support "
       "shortfall): years of suppression wear down what reseeds an emptied reserve",
       "calibrated jointly to C1/C4/C11 (Nelder-Mead, docs/validation.md): a third of azoospermic TRT "
       "patients without sperm 6 months after stopping (Samplaski 2014); longer TRT recovers less (Liu 2006)",
       plausible=(1.0 / (20.0 * YEAR), 1.0 / (0.5 * YEAR))),
    _p("k_stem_cell_recovery_per_day", 1.0 / YEAR, "1/day", "spermatogenesis",
       "recovery of the stem-cell pool under full support", "assumption: slow self-renewal",
       plausible=(1.0 / (10.0 * YEAR), 1.0 / (0.25 * YEAR))),
    _p("reserve_recovery_decline_per_year", 0.01, "1/year", "spermatogenesis",
       "fractional slowing of reserve recovery per year of age over 30", "assumption"),
    # --- Semen observation
    _p("semen_cv_within", 0.45, "1", "semen", "within-man CV of sperm concentration between samples",
       "30-50% (calibration-targets.md conventions)"),
    _p("azoospermia_limit_m_ml", 0.05, "M/mL", "semen", "concentration below which a sample shows no sperm",
       "assumption: centrifuged-pellet detection"),
)

PARAMETER_INDEX: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMETERS}
PARAMETER_NAMES: tuple[str, ...] = tuple(spec.name for spec in PARAMETERS)


def default_parameters(n_patients: int | None = None, dtype=np.float64) -> dict[str, np.ndarray]:
    """Defaults for every parameter.

    Args:
        n_patients: if given, each value is broadcast to shape ``(n_patients,)``.
        dtype: NumPy dtype of the arrays.

    Returns:
        ``{name: array}`` with scalars (``n_patients=None``) or ``(n_patients,)`` arrays.
    """
    shape = () if n_patients is None else (int(n_patients),)
    return {spec.name: np.full(shape, spec.default, dtype=dtype) for spec in PARAMETERS}


def validate_parameters(params: Mapping[str, np.ndarray]) -> None:
    """Raise ``ValueError`` naming the parameter for unknown, missing or invalid values."""
    unknown = sorted(set(params) - set(PARAMETER_INDEX))
    if unknown:
        raise ValueError(f"unknown model parameter(s) {unknown}; valid names are listed in "
                         "docs/model.md (popsim.model.PARAMETER_NAMES)")
    missing = [name for name in PARAMETER_NAMES if name not in params]
    if missing:
        raise ValueError(f"missing model parameter(s) {missing}")
    for name, value in params.items():
        arr = np.asarray(value)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"model parameter '{name}' has non-finite values")
        if PARAMETER_INDEX[name].positive and np.any(arr <= 0):
            raise ValueError(f"model parameter '{name}' must be > 0 (unit {PARAMETER_INDEX[name].unit}); "
                             f"got min {arr.min()}")
