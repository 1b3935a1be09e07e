"""A scalar port of popsim's model (popsim/model/hpg.py and popsim/model/pk.py) for the
compiled per-patient baselines.

``make_port(jit)`` returns the model functions written as plain scalar code: with
``jit=numba.njit`` they are the numba (mrgsolve-like) baseline, with ``jit=lambda f: f``
the same source runs in the Python interpreter (the "NumPy right-hand side" a user of
scipy would write). The PK chains are ODE states (``A1``, ``A2`` per dosed species) and
doses are jumps, as in popsim.solve.reference; a drug that is not simulated has exposure
0 (popsim drops its terms: the difference is a Hill term of ~1e-30).

Every formula follows hpg.hormones / hpg.vector_field / hpg.patient_constants line by
line; the benchmark checks the port against popsim's float64 reference before timing it, and
tests/test_benchmarks.py checks its hormones and vector field against popsim's at random
states, exposures and patients (also the terms the benchmark cohort leaves at zero).
Gonadorelin's sustained (trough) input is not ported (the benchmark cohort has none).
"""

from __future__ import annotations

import math

import numpy as np

from popsim.model import state as S
from popsim.model.parameters import PARAMETER_NAMES
from popsim.model.pk import EXPOSURE_NAMES, SPECIES, SPECIES_EXPOSURE
from popsim.units import TESTOSTERONE_G_PER_MOL

N_STATES = S.N_STATES
N_OUT = 4  # total T, LH, FSH, sperm concentration (bench_common.ACCURACY_OBSERVABLES)
EXPOSURE_INDEX = {name: i for i, name in enumerate(EXPOSURE_NAMES)}
KIND_CODE = {"release": 0, "concentration": 1, "amount": 2}
N_CONSTANTS = 19


def chain_rates(params: dict, species) -> tuple[np.ndarray, ...]:
    """Port of popsim.model.pk.chain_rates for the ``species`` columns, vectorised over
    patients: ``(k1, k2, bioavailability, volume)`` each ``(n_patients, len(species))``."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    one = np.ones_like(p["k_oil_dispersion_per_day"])
    k_oral = p["k_absorption_oral_per_day"]
    k1 = [p["k_oil_dispersion_per_day"]] * 3 + [p["k_skin_uptake_per_day"], p["k_absorption_hcg_per_day"],
                                                 p["k_absorption_fsh_per_day"], k_oral, k_oral, k_oral, k_oral,
                                                 k_oral, p["k_absorption_gonadorelin_per_day"]]
    k2 = [p["k_release_enanthate_per_day"], p["k_release_cypionate_per_day"], p["k_release_undecanoate_per_day"],
          p["k_skin_release_per_day"], p["k_elimination_hcg_per_day"], p["k_elimination_fsh_per_day"],
          p["k_elimination_enclomiphene_per_day"], p["k_elimination_enclomiphene_per_day"],
          p["k_elimination_zuclomiphene_per_day"], p["k_elimination_tamoxifen_per_day"],
          p["k_elimination_anastrozole_per_day"], p["k_effect_gonadorelin_per_day"]]
    f = [p["t_content_enanthate"], p["t_content_cypionate"], p["t_content_undecanoate"], p["gel_absorbed_fraction"],
         one, one, one, 1.0 - p["zuclomiphene_fraction"], p["zuclomiphene_fraction"], one, one, one]
    v = [one, one, one, one, p["v_hcg_l"], p["v_fsh_l"], p["v_enclomiphene_l"] / 1000.0,
         p["v_enclomiphene_l"] / 1000.0, p["v_zuclomiphene_l"] / 1000.0, p["v_tamoxifen_l"] / 1000.0,
         p["v_anastrozole_l"] / 1000.0, one]
    cols = list(species)
    return tuple(np.ascontiguousarray(np.stack([a[s] for s in cols], axis=1)) for a in (k1, k2, f, v))


def species_tables(species) -> tuple[np.ndarray, np.ndarray]:
    """Exposure kind (0 release, 1 concentration, 2 amount) and exposure index of each species."""
    kinds = np.asarray([KIND_CODE[SPECIES_EXPOSURE[s][1]] for s in species], np.int64)
    index = np.asarray([EXPOSURE_INDEX[SPECIES_EXPOSURE[s][0]] for s in species], np.int64)
    return kinds, index


def parameter_matrix(params: dict) -> np.ndarray:
    """``(n_patients, n_parameters)`` float64 in PARAMETER_NAMES order."""
    return np.ascontiguousarray(np.stack([np.asarray(params[k], np.float64) for k in PARAMETER_NAMES], axis=1))


def make_port(jit):
    """The scalar model functions compiled with ``jit`` (numba.njit, or identity)."""
    P = {name: i for i, name in enumerate(PARAMETER_NAMES)}
    # Parameter indices (closure constants: numba folds them at compile time).
    age_years = P["age_years"]
    t_base, lh_base, fsh_base, e2_base = P["t_base_nmol_l"], P["lh_base_iu_l"], P["fsh_base_iu_l"], P["e2_base_pg_ml"]
    inhibin_base, shbg_base, sperm_base = P["inhibin_b_base_pg_ml"], P["shbg_base_nmol_l"], P["sperm_base_m_ml"]
    cl_t, shbg_clear_exp = P["cl_testosterone_l_day"], P["shbg_clearance_exponent"]
    k_fb, ic50_ft, hill_ft, ic50_e2, hill_e2 = (P["k_feedback_per_day"], P["ic50_free_t_pmol_l"], P["hill_free_t"],
                                                P["ic50_e2_pg_ml"], P["hill_e2"])
    ki_enclo, ki_zuclo, zuclo_agon, ki_tamox = (P["ki_enclomiphene_ng_ml"], P["ki_zuclomiphene_ng_ml"],
                                                P["zuclomiphene_agonism_pg_ml_per_ng_ml"], P["ki_tamoxifen_ng_ml"])
    lh_gnrh_exp, fsh_gnrh_exp, fsh_inh_exp = P["lh_gnrh_exponent"], P["fsh_gnrh_exponent"], P["fsh_inhibin_exponent"]
    fsh_reserve_exp = P["fsh_reserve_exponent"]
    k_reserve, reserve_exp = P["k_pituitary_reserve_per_day"], P["pituitary_reserve_exponent"]
    reserve_max = P["pituitary_reserve_max"]
    gn_max, gn_ec50 = P["gonadorelin_max_drive"], P["gonadorelin_ec50_ug"]
    k_desens, k_resens = P["k_gnrh_desensitisation_per_day"], P["k_gnrh_resensitisation_per_day"]
    gn_sus_ec50, gn_sus_hill = P["gonadorelin_sustained_ec50_ug_day"], P["gonadorelin_sustained_hill"]
    ley_ec50, ley_hill, ley_max = P["leydig_lh_ec50_iu_l"], P["leydig_lh_hill"], P["leydig_lh_max_fold"]
    hcg_equiv, hcg_max, ley_floor = P["hcg_lh_equivalence"], P["hcg_lh_max_iu_l"], P["leydig_floor"]
    cap30, cap_decline = P["leydig_max_capacity_age30"], P["leydig_max_capacity_decline_per_year"]
    k_atrophy, k_regrowth, regrowth_decline = (P["k_leydig_atrophy_per_day"], P["k_leydig_regrowth_per_day"],
                                               P["leydig_regrowth_decline_per_year"])
    itt_ratio, itt_diff = P["itt_serum_ratio"], P["itt_diffusion_ratio"]
    ana_imax, ana_ic50 = P["anastrozole_imax"], P["anastrozole_ic50_ng_ml"]
    e2_indep_frac = P["e2_t_independent_fraction"]
    k_shbg, shbg_andro_exp = P["k_shbg_per_day"], P["shbg_androgen_exponent"]
    albumin, ka_shbg, ka_alb = P["albumin_g_dl"], P["ka_shbg_l_mol"], P["ka_albumin_l_mol"]
    k_sertoli, sertoli_ec50 = P["k_sertoli_per_day"], P["sertoli_fsh_ec50"]
    inh_sert_exp, inh_germ_w = P["inhibin_sertoli_exponent"], P["inhibin_germ_weight"]
    sg_days, epi_days = P["spermatogenesis_days"], P["epididymal_transit_days"]
    itt_ec50, itt_hill, fsh_ec50, fsh_hill = (P["itt_support_ec50"], P["itt_support_hill"], P["fsh_support_ec50"],
                                              P["fsh_support_hill"])
    w_itt, w_fsh = P["support_weight_itt"], P["support_weight_fsh"]
    death_max, death_ec50 = P["germ_death_max_per_day"], P["germ_death_support_ec50"]
    germ_loss, survival_exp = P["germ_loss_impaired_per_day"], P["germ_survival_hormone_exponent"]
    k_depl, k_recov, recov_decline = (P["k_reserve_depletion_per_day"], P["k_reserve_recovery_per_day"],
                                      P["reserve_recovery_decline_per_year"])
    renewal_seed, depl_saturation = P["reserve_regrowth_floor"], P["reserve_depletion_half_saturation"]
    drive_sat = P["gnrh_drive_saturation"]
    hyp_onset = P["hypothalamic_suppression_onset_floor"]
    hyp_ec50, hyp_hill, k_hyp_down = (P["hypothalamic_suppression_ec50"], P["hypothalamic_suppression_hill"],
                                      P["k_hypothalamic_suppression_per_day"])
    k_hyp_up, hyp_floor, hyp_decline = (P["k_hypothalamic_recovery_per_day"], P["hypothalamic_recovery_floor"],
                                        P["hypothalamic_recovery_decline_per_year"])
    k_lc_loss, k_lc_regrowth = P["k_leydig_cell_loss_per_day"], P["k_leydig_cell_regrowth_per_day"]
    k_stem_loss, k_stem_recovery = P["k_stem_cell_loss_per_day"], P["k_stem_cell_recovery_per_day"]
    # State and exposure indices.
    FA, FE, PR, GR = S.FEEDBACK_ANDROGEN, S.FEEDBACK_ESTROGEN, S.PITUITARY_RESERVE, S.GNRH_RESPONSIVENESS
    LC, SH, SE, SR = S.LEYDIG_CAPACITY, S.SHBG, S.SERTOLI_FUNCTION, S.SPERMATOGONIAL_RESERVE
    G0, N_GERM, EPI = S.GERM_FIRST, S.N_GERM_STAGES, S.EPIDIDYMAL_SPERM
    HC, LM, SC = S.HYPOTHALAMIC_CAPACITY, S.LEYDIG_CELL_MASS, S.STEM_CELL_POOL
    GERM_CONTENT_FIRST = G0 + S.N_GERM_STAGES // 3
    N_CONTENT = S.N_GERM_STAGES - S.N_GERM_STAGES // 3
    E_REL, E_HCG, E_FSH = EXPOSURE_INDEX["testosterone_release_mg_day"], EXPOSURE_INDEX["hcg_iu_l"], \
        EXPOSURE_INDEX["fsh_exogenous_iu_l"]
    E_ENC, E_ZUC, E_TAM = EXPOSURE_INDEX["enclomiphene_ng_ml"], EXPOSURE_INDEX["zuclomiphene_ng_ml"], \
        EXPOSURE_INDEX["tamoxifen_ng_ml"]
    E_ANA, E_GN = EXPOSURE_INDEX["anastrozole_ng_ml"], EXPOSURE_INDEX["gonadorelin_effect_ug"]
    T_G_PER_MOL = TESTOSTERONE_G_PER_MOL
    # Patient-constant slots.
    (C_FT, C_DRIVE, C_LEYOUT, C_ITTSUP, C_FSHSUP, C_ITT, C_CAPMAX, C_HALF, C_KUP, C_RUP, C_KTR, C_DEATH,
     C_E2IND, C_E2PERT, C_INVHCGMAX, C_LOGITT, C_HUP, C_LMUP, C_LOGRMAX) = range(N_CONSTANTS)

    @jit
    def _pow(x, exponent):
        return math.exp(exponent * math.log(max(x, 1e-30)))

    @jit
    def _hill(x, ec50, n):
        xn = _pow(x / ec50, n)
        return xn / (1.0 + xn)

    @jit
    def _inhibition(x, ic50, n):
        return 1.0 / (1.0 + _pow(x / ic50, n))

    @jit
    def _sigmoid(x):
        if x >= 0.0:
            return 1.0 / (1.0 + math.exp(-x))
        e = math.exp(x)
        return e / (1.0 + e)

    @jit
    def free_testosterone(total_t, shbg, p):
        albumin_mol_l = p[albumin] * 10.0 / 66_430.0
        n = 1.0 + p[ka_alb] * albumin_mol_l
        k_s = p[ka_shbg]
        t = max(total_t, 0.0) * 1e-9
        s = max(shbg, 0.0) * 1e-9
        a = k_s * n
        b = n + k_s * (s - t)
        ft = 2.0 * t / (b + math.sqrt(b * b + 4.0 * a * t))
        return ft * 1e12

    @jit
    def _age_factor(decline, age):
        return max(1.0 - decline * max(age - 30.0, 0.0), 0.2)

    @jit
    def _leydig_output(lh_eff, p):
        return 1.0 + p[ley_max] * _hill(lh_eff, p[ley_ec50], p[ley_hill])

    @jit
    def patient_constants(p, c):
        ft_base = free_testosterone(p[t_base], p[shbg_base], p)
        age = p[age_years]
        cap_max = max(p[cap30] - p[cap_decline] * max(age - 30.0, 0.0), 1.05)
        c[C_FT] = ft_base
        c[C_DRIVE] = _inhibition(ft_base, p[ic50_ft], p[hill_ft]) * _inhibition(p[e2_base], p[ic50_e2], p[hill_e2])
        c[C_LEYOUT] = _leydig_output(p[lh_base], p)
        c[C_ITTSUP] = _hill(1.0, p[itt_ec50], p[itt_hill])
        c[C_FSHSUP] = _hill(1.0, p[fsh_ec50], p[fsh_hill])
        c[C_ITT] = p[itt_ratio] * p[t_base]
        c[C_CAPMAX] = cap_max
        c[C_HALF] = (cap_max - 1.0) / (1.0 - p[ley_floor])
        c[C_KUP] = p[k_regrowth] * _age_factor(p[regrowth_decline], age)
        c[C_RUP] = p[k_recov] * _age_factor(p[recov_decline], age)
        c[C_KTR] = N_GERM / p[sg_days]
        c[C_DEATH] = _inhibition(1.0, p[death_ec50], 4.0)
        c[C_E2IND] = p[e2_indep_frac] * p[e2_base]
        c[C_E2PERT] = (1.0 - p[e2_indep_frac]) * p[e2_base] / p[t_base]
        c[C_INVHCGMAX] = 1.0 / p[hcg_max]
        c[C_LOGITT] = math.log(p[itt_ratio] * p[t_base])
        c[C_HUP] = p[k_hyp_up] * _age_factor(p[hyp_decline], age)
        c[C_LMUP] = p[k_lc_regrowth] * _age_factor(p[regrowth_decline], age)
        c[C_LOGRMAX] = max(math.log(p[reserve_max]), 1e-6)

    @jit
    def hormones(y, ex, p, c):
        """(total T, exogenous T, free T, LH, effective LH, FSH, E2, ER signal, inhibin B,
        SHBG, ITT, GnRH stimulation, spermatogenic support, sperm concentration)."""
        ft_base = c[C_FT]
        x_t = max(y[FA], 0.0) * ft_base
        x_e = max(y[FE], 0.0) * p[e2_base]
        disinhibited = ((_inhibition(x_t, p[ic50_ft], p[hill_ft]) * _inhibition(x_e, p[ic50_e2], p[hill_e2]))
                        / c[C_DRIVE] * max(y[HC], 0.0))
        drive = disinhibited * (1.0 + p[drive_sat]) / (disinhibited + p[drive_sat])
        drive = drive + p[gn_max] * _hill(ex[E_GN], p[gn_ec50], 1.0)
        stimulation = max(y[GR], 0.0) * drive
        germ_sum = 0.0
        for k in range(GERM_CONTENT_FIRST, G0 + N_GERM):
            germ_sum += max(y[k], 0.0)
        germ_content = germ_sum / N_CONTENT
        sertoli = max(y[SE], 0.0)
        inhibin_rel = _pow(sertoli, p[inh_sert_exp]) * (1.0 - p[inh_germ_w] + p[inh_germ_w] * germ_content)
        inhibin_rel = max(inhibin_rel, 1e-3)
        reserve = max(y[PR], 0.0)
        lh = p[lh_base] * reserve * _pow(stimulation, p[lh_gnrh_exp])
        fsh = (p[fsh_base] * _pow(reserve, p[fsh_reserve_exp]) * _pow(stimulation, p[fsh_gnrh_exp])
               * _pow(inhibin_rel, -p[fsh_inh_exp]) + ex[E_FSH])
        # hCG's LH-equivalent stimulus saturates: e C / (1 + e C / M).
        hcg_equivalent = p[hcg_equiv] * max(ex[E_HCG], 0.0)
        lh_effective = lh + hcg_equivalent / (1.0 + hcg_equivalent * c[C_INVHCGMAX])
        production_rel = max(y[LC], 0.0) * max(y[LM], 0.0) * _leydig_output(lh_effective, p) / c[C_LEYOUT]
        shbg_rel = max(max(y[SH], 0.0), 1e-3)
        clearance_rel = _pow(shbg_rel, -p[shbg_clear_exp])
        t_endogenous = p[t_base] * production_rel / clearance_rel
        release_nmol_day = ex[E_REL] * 1e6 / T_G_PER_MOL
        t_exogenous = release_nmol_day / (p[cl_t] * clearance_rel)
        total_t = t_endogenous + t_exogenous
        shbg = p[shbg_base] * shbg_rel
        free_t = free_testosterone(total_t, shbg, p)
        itt_base = c[C_ITT]
        itt = (itt_base - p[itt_diff] * p[t_base]) * production_rel + p[itt_diff] * total_t
        # A T-independent share of E2 plus a share following total T: E2_0 (f + (1 - f) T / T0).
        e2 = c[C_E2IND] + c[C_E2PERT] * total_t
        e2 = e2 * (1.0 - p[ana_imax] * _hill(ex[E_ANA], p[ana_ic50], 1.0))
        divisor = 1.0 + ex[E_ENC] / p[ki_enclo] + ex[E_ZUC] / p[ki_zuclo] + ex[E_TAM] / p[ki_tamox]
        agonism = p[zuclo_agon] * ex[E_ZUC]
        estrogen_signal = (e2 + agonism) / divisor
        h_t = _hill(itt / itt_base, p[itt_ec50], p[itt_hill]) / c[C_ITTSUP]
        h_f = _hill(sertoli, p[fsh_ec50], p[fsh_hill]) / c[C_FSHSUP]
        w_t, w_f = p[w_itt], p[w_fsh]
        support = w_t * h_t + w_f * h_f + (1.0 - w_t - w_f) * h_t * h_f
        sperm = p[sperm_base] * max(y[EPI], 0.0)
        return (total_t, t_exogenous, free_t, lh, lh_effective, fsh, e2, estrogen_signal,
                p[inhibin_base] * inhibin_rel, shbg, itt, stimulation, support, sperm)

    @jit
    def vector_field(y, ex, sustained, p, c, dy):
        (total_t, _t_exo, free_t, _lh, lh_effective, fsh, _e2, estrogen_signal, _inh, _shbg, itt, stimulation,
         support, _sperm) = hormones(y, ex, p, c)
        kf = p[k_fb]
        dy[FA] = kf * (free_t / c[C_FT] - max(y[FA], 0.0))
        dy[FE] = kf * (estrogen_signal / p[e2_base] - max(y[FE], 0.0))
        reserve_target = _pow(max(stimulation, 0.0), p[reserve_exp])
        if reserve_target > 1.0:  # smooth cap, as in hpg.vector_field
            log_max = c[C_LOGRMAX]
            reserve_target = math.exp(log_max * math.tanh(math.log(reserve_target) / log_max))
        dy[PR] = p[k_reserve] * (reserve_target - max(y[PR], 0.0))
        responsiveness = max(y[GR], 0.0)
        d_resp = p[k_resens] * (1.0 - responsiveness)
        if sustained > 0.0:
            d_resp -= p[k_desens] * _hill(sustained, p[gn_sus_ec50], p[gn_sus_hill]) * responsiveness
        dy[GR] = d_resp
        excess = max(max(y[FA], 0.0) - 1.0, 0.0)
        capacity_target = _inhibition(excess, p[hyp_ec50], p[hyp_hill])
        capacity = max(y[HC], 0.0)
        k_cap_up = c[C_HUP] * (capacity + p[hyp_floor]) / (1.0 + p[hyp_floor])
        falling = _sigmoid((capacity - capacity_target) / 0.01)
        k_cap_down = p[k_hyp_down] * (p[hyp_onset] + 1.0 - min(capacity, 1.0)) / (1.0 + p[hyp_onset])
        dy[HC] = (k_cap_up + (k_cap_down - k_cap_up) * falling) * (capacity_target - capacity)
        floor = p[ley_floor]
        stim = lh_effective / p[lh_base]
        leydig_target = floor + (c[C_CAPMAX] - floor) * stim / (c[C_HALF] + stim)
        leydig = max(y[LC], 0.0)
        k_up = c[C_KUP]
        shrinking = _sigmoid((leydig - leydig_target) / 0.02)
        dy[LC] = (k_up + (p[k_atrophy] - k_up) * shrinking) * (leydig_target - leydig)
        lh_support = min(stim, 1.0)
        mass = max(y[LM], 0.0)
        dy[LM] = c[C_LMUP] * lh_support * (1.0 - mass) - p[k_lc_loss] * (1.0 - lh_support) * mass
        shbg_target = _pow(max(total_t / p[t_base], 0.25), -p[shbg_andro_exp])
        dy[SH] = p[k_shbg] * (shbg_target - max(y[SH], 0.0))
        fsh_rel = fsh / p[fsh_base]
        ec = p[sertoli_ec50]
        sertoli_target = (1.0 + ec) * fsh_rel / (ec + fsh_rel)
        dy[SE] = p[k_sertoli] * (sertoli_target - max(y[SE], 0.0))
        support_capped = min(support, 1.0)
        reserve = max(y[SR], 0.0)
        stem = max(y[SC], 0.0)
        dy[SC] = p[k_stem_recovery] * support_capped * (1.0 - stem) - p[k_stem_loss] * (1.0 - support_capped) * stem
        dy[SR] = (c[C_RUP] * support_capped * (1.0 - reserve) * (p[renewal_seed] * stem + reserve) / (1.0 + p[renewal_seed])
                  - p[k_depl] * (1.0 - support_capped) * reserve * (1.0 + p[depl_saturation])
                  / (reserve + p[depl_saturation]))
        ratio = max(support, 0.0) / p[death_ec50]
        ratio2 = ratio * ratio
        death = p[death_max] * max(1.0 / (1.0 + ratio2 * ratio2) - c[C_DEATH], 0.0)
        # Impaired testes: germ-cell loss lowered (raised) by hormonal drive above (below)
        # baseline, drive = Sertoli function x ITT / baseline ITT (0 when germ_loss is 0).
        log_drive = (math.log(max(max(y[SE], 0.0), 1e-30)) + math.log(max(itt, 1e-30)) - c[C_LOGITT])
        death = death - p[germ_loss] * math.tanh(0.5 * p[survival_exp] * log_drive)
        k_tr = c[C_KTR]
        inflow = reserve * support
        for k in range(N_GERM):
            germ = max(y[G0 + k], 0.0)
            dy[G0 + k] = k_tr * (inflow - germ) - death * germ
            inflow = germ
        dy[EPI] = (inflow - max(y[EPI], 0.0)) / p[epi_days]

    @jit
    def exposures(a2, k2, volume, kinds, index, ex):
        for e in range(len(ex)):
            ex[e] = 0.0
        for j in range(len(a2)):
            kind = kinds[j]
            if kind == 0:
                value = k2[j] * a2[j]
            elif kind == 1:
                value = a2[j] / volume[j]
            else:
                value = a2[j]
            ex[index[j]] += value

    @jit
    def full_rhs(z, p, c, k1, k2, volume, kinds, index, ex, dz):
        """d/dt of [slow states, A1, A2] (PK chains as ODE states)."""
        ns = len(k1)
        exposures(z[N_STATES + ns:], k2, volume, kinds, index, ex)
        vector_field(z, ex, 0.0, p, c, dz)
        for j in range(ns):
            a1 = z[N_STATES + j]
            a2 = z[N_STATES + ns + j]
            dz[N_STATES + j] = -k1[j] * a1
            dz[N_STATES + ns + j] = k1[j] * a1 - k2[j] * a2

    @jit
    def observe(z, p, c, k2, volume, kinds, index, ex, out_row):
        ns = len(k2)
        exposures(z[N_STATES + ns:], k2, volume, kinds, index, ex)
        h = hormones(z, ex, p, c)
        out_row[0] = h[0]   # total T
        out_row[1] = h[3]   # LH
        out_row[2] = h[5]   # FSH
        out_row[3] = h[13]  # sperm concentration

    return {"patient_constants": patient_constants, "hormones": hormones, "vector_field": vector_field,
            "exposures": exposures, "full_rhs": full_rhs, "observe": observe}


def make_numba_solver(parallel: bool = True):
    """The numba per-patient adaptive solver: Dormand-Prince 5(4) with an I step-size
    controller (RMS norm, as diffrax's PIDController default), FSAL, PK as ODE states,
    doses as jumps, the step landing exactly on every dose and output time (mrgsolve-like:
    LSODA there, stopping at every record). ``prange`` over patients."""
    import numba

    port = make_port(numba.njit(cache=False, fastmath=False, error_model="numpy"))
    full_rhs, observe, patient_constants = port["full_rhs"], port["observe"], port["patient_constants"]
    n_exposures = len(EXPOSURE_NAMES)

    # Dormand-Prince 5(4) tableau.
    a21 = 1 / 5
    a31, a32 = 3 / 40, 9 / 40
    a41, a42, a43 = 44 / 45, -56 / 15, 32 / 9
    a51, a52, a53, a54 = 19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729
    a61, a62, a63, a64, a65 = 9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656
    b1, b3, b4, b5, b6 = 35 / 384, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84
    e1, e3, e4, e5, e6, e7 = 71 / 57600, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40

    @numba.njit(cache=False, error_model="numpy")
    def solve_one(p, k1, k2, f, volume, kinds, index, col, amount, start, interval, n_doses, t_out,
                  rtol, atol, out):
        ns = k1.shape[0]
        n = N_STATES + 2 * ns
        c = np.empty(N_CONSTANTS)
        patient_constants(p, c)
        ex = np.zeros(n_exposures)
        z = np.zeros(n)
        z[:N_STATES] = 1.0
        ks = np.zeros((7, n))
        ztmp = np.empty(n)
        znew = np.empty(n)
        next_k = np.zeros(amount.shape[0], np.int64)
        n_out = t_out.shape[0]
        t = 0.0
        h = 0.05
        io = 0
        steps = 0
        full_rhs(z, p, c, k1, k2, volume, kinds, index, ex, ks[0])
        while True:
            while io < n_out and t_out[io] <= t + 1e-9:
                observe(z, p, c, k2, volume, kinds, index, ex, out[io])
                io += 1
            if io >= n_out:
                break
            jumped = False
            for j in range(amount.shape[0]):
                while next_k[j] < n_doses[j] and start[j] + next_k[j] * interval[j] <= t + 1e-9:
                    z[N_STATES + col[j]] += amount[j] * f[col[j]]
                    next_k[j] += 1
                    jumped = True
            if jumped:
                full_rhs(z, p, c, k1, k2, volume, kinds, index, ex, ks[0])
            t_end = t_out[io]
            for j in range(amount.shape[0]):
                if next_k[j] < n_doses[j]:
                    t_end = min(t_end, start[j] + next_k[j] * interval[j])
            while t < t_end:
                clipped = t + h >= t_end - 1e-12
                hs = t_end - t if clipped else h
                for i in range(n):
                    ztmp[i] = z[i] + hs * a21 * ks[0, i]
                full_rhs(ztmp, p, c, k1, k2, volume, kinds, index, ex, ks[1])
                for i in range(n):
                    ztmp[i] = z[i] + hs * (a31 * ks[0, i] + a32 * ks[1, i])
                full_rhs(ztmp, p, c, k1, k2, volume, kinds, index, ex, ks[2])
                for i in range(n):
                    ztmp[i] = z[i] + hs * (a41 * ks[0, i] + a42 * ks[1, i] + a43 * ks[2, i])
                full_rhs(ztmp, p, c, k1, k2, volume, kinds, index, ex, ks[3])
                for i in range(n):
                    ztmp[i] = z[i] + hs * (a51 * ks[0, i] + a52 * ks[1, i] + a53 * ks[2, i] + a54 * ks[3, i])
                full_rhs(ztmp, p, c, k1, k2, volume, kinds, index, ex, ks[4])
                for i in range(n):
                    ztmp[i] = z[i] + hs * (a61 * ks[0, i] + a62 * ks[1, i] + a63 * ks[2, i] + a64 * ks[3, i]
                                           + a65 * ks[4, i])
                full_rhs(ztmp, p, c, k1, k2, volume, kinds, index, ex, ks[5])
                for i in range(n):
                    znew[i] = z[i] + hs * (b1 * ks[0, i] + b3 * ks[2, i] + b4 * ks[3, i] + b5 * ks[4, i]
                                           + b6 * ks[5, i])
                full_rhs(znew, p, c, k1, k2, volume, kinds, index, ex, ks[6])
                acc = 0.0
                for i in range(n):
                    err = hs * (e1 * ks[0, i] + e3 * ks[2, i] + e4 * ks[3, i] + e5 * ks[4, i] + e6 * ks[5, i]
                                + e7 * ks[6, i])
                    scale = atol + rtol * max(abs(z[i]), abs(znew[i]))
                    acc += (err / scale) ** 2
                norm = math.sqrt(acc / n)
                steps += 1
                if norm <= 1.0:
                    factor = 10.0 if norm == 0.0 else min(10.0, max(0.2, 0.9 * norm ** -0.2))
                    t = t_end if clipped else t + hs
                    for i in range(n):
                        z[i] = znew[i]
                        ks[0, i] = ks[6, i]
                    h = max(h, hs * factor) if clipped else hs * factor
                else:
                    h = hs * max(0.2, 0.9 * norm ** -0.2)
                    if not h > 1e-10:  # also catches NaN
                        for r in range(io, n_out):
                            for q in range(out.shape[1]):
                                out[r, q] = np.nan
                        return steps
        return steps

    @numba.njit(parallel=parallel, cache=False, error_model="numpy")
    def solve_all(pmat, k1, k2, f, volume, kinds, index, col, amount, start, interval, n_doses, t_out, rtol, atol,
                  out):
        steps = np.zeros(pmat.shape[0], np.int64)
        for i in numba.prange(pmat.shape[0]):
            steps[i] = solve_one(pmat[i], k1[i], k2[i], f[i], volume[i], kinds, index, col[i], amount[i], start[i],
                                 interval[i], n_doses[i], t_out, rtol, atol, out[i])
        return steps

    return solve_all


def dose_columns(doses, species) -> tuple[np.ndarray, ...]:
    """DoseTable rows as (species column, amount, start, interval, n_doses), padding rows with
    n_doses 0; raises for species outside ``species``."""
    lookup = {s: j for j, s in enumerate(species)}
    dosed = doses.n_doses > 0
    bad = set(np.unique(doses.species[dosed]).tolist()) - set(lookup)
    if bad:
        raise ValueError(f"doses of species {[SPECIES[b] for b in sorted(bad)]} outside the simulated species")
    col = np.vectorize(lambda s: lookup.get(int(s), 0))(doses.species).astype(np.int64)
    return (np.ascontiguousarray(col), np.ascontiguousarray(doses.amount, np.float64),
            np.ascontiguousarray(doses.start_days, np.float64), np.ascontiguousarray(doses.interval_days, np.float64),
            np.ascontiguousarray(np.where(dosed, doses.n_doses, 0), np.int64))
