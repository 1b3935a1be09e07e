"""The HPG-axis physiology: algebraic hormone levels and the slow-state vector field.

Hormones with half-lives of minutes to hours (GnRH, LH, FSH, T, E2, free T, ITT,
inhibin B) are quasi-steady functions of the slow states and drug exposures; the slow
states (feedback signals, pituitary reserve, Leydig capacity, SHBG, Sertoli function,
spermatogonial reserve, germ-cell pipeline) carry the history. See docs/model.md for
the equations with sources. All functions act on one patient; vmap adds the patient axis.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

from popsim.model import state as S
from popsim.units import TESTOSTERONE_G_PER_MOL

Params = Mapping[str, jnp.ndarray]

_REFERENCE_AGE_YEARS = 30.0
N_GERM = S.N_GERM_STAGES
# Hill coefficient of germ-cell loss as support falls (assumption: loss is steep below
# the threshold support, negligible at baseline).
_DEATH_HILL = 4.0


def _pow(x, exponent):
    """x**exponent for x >= 0 as exp(exponent * log x): ~3x faster than a general pow on
    XLA CPU; x is floored at 1e-30 so that 0**positive -> ~0 and gradients stay finite."""
    return jnp.exp(exponent * jnp.log(jnp.maximum(x, 1e-30)))


def _log(x):
    """log x for x >= 0, floored at log 1e-30 (finite value and gradient at 0)."""
    return jnp.log(jnp.maximum(x, 1e-30))


def _hill_log(log_x, log_ec50, n):
    """x^n / (x^n + ec50^n) from log x: the logistic of n (log x - log ec50). One
    transcendental, saturates cleanly at 0 and 1, and its derivative reuses its value."""
    return jax.nn.sigmoid(n * (log_x - log_ec50))


def _michaelis(x, ec50):
    """x / (x + ec50) for x >= 0 (a Hill function of coefficient 1, no power needed)."""
    x = jnp.maximum(x, 0.0)
    return x / (x + ec50)


def _hill(x, ec50, n):
    """x^n / (x^n + ec50^n) for x >= 0."""
    xn = _pow(x / ec50, n)
    return xn / (1.0 + xn)


def _inhibition(x, ic50, n):
    """1 / (1 + (x/ic50)^n) for x >= 0."""
    return 1.0 / (1.0 + _pow(x / ic50, n))


def free_testosterone_pmol_l(total_t_nmol_l, shbg_nmol_l, p: Params):
    """Free testosterone by mass action with SHBG and albumin (Vermeulen 1999).

    Solves K_s N FT^2 + (N + K_s (SHBG - T)) FT - T = 0 with N = 1 + K_a [albumin].
    """
    albumin_mol_l = p["albumin_g_dl"] * 10.0 / 66_430.0  # g/dL -> mol/L (66.43 kDa)
    n = 1.0 + p["ka_albumin_l_mol"] * albumin_mol_l
    k_s = p["ka_shbg_l_mol"]
    t = jnp.maximum(total_t_nmol_l, 0.0) * 1e-9
    shbg = jnp.maximum(shbg_nmol_l, 0.0) * 1e-9
    a = k_s * n
    b = n + k_s * (shbg - t)
    # Stable root of a x^2 + b x - t = 0: x = 2t / (b + sqrt(b^2 + 4 a t)).
    ft = 2.0 * t / (b + jnp.sqrt(b * b + 4.0 * a * t))
    return ft * 1e12


def _age_factor(decline_per_year, age_years):
    """Multiplicative slowing with age over 30 y, floored at 0.2."""
    return jnp.maximum(1.0 - decline_per_year * jnp.maximum(age_years - _REFERENCE_AGE_YEARS, 0.0), 0.2)


def _leydig_output(lh_eff_iu_l, p: Params):
    """Tornøe 2007 stimulation 1 + Lmax LH^k / (L50^k + LH^k)."""
    return 1.0 + p["leydig_lh_max_fold"] * _hill(lh_eff_iu_l, p["leydig_lh_ec50_iu_l"], p["leydig_lh_hill"])


def patient_constants(p: Params) -> dict[str, jnp.ndarray]:
    """Quantities that depend only on a patient's parameters, computed once per patient.

    Everything here is a baseline normaliser or an age-adjusted rate; hoisting them out
    of the vector field keeps the integrator's inner loop lean.
    """
    ft_base = free_testosterone_pmol_l(p["t_base_nmol_l"], p["shbg_base_nmol_l"], p)
    age = p["age_years"]
    cap_max = jnp.maximum(p["leydig_max_capacity_age30"] - p["leydig_max_capacity_decline_per_year"]
                          * jnp.maximum(age - _REFERENCE_AGE_YEARS, 0.0), 1.05)
    death_ec = p["germ_death_support_ec50"]
    return {
        "free_t_base_pmol_l": ft_base,
        "drive_base": (_inhibition(ft_base, p["ic50_free_t_pmol_l"], p["hill_free_t"])
                       * _inhibition(p["e2_base_pg_ml"], p["ic50_e2_pg_ml"], p["hill_e2"])),
        "leydig_output_base": _leydig_output(p["lh_base_iu_l"], p),
        "itt_support_base": _hill(1.0, p["itt_support_ec50"], p["itt_support_hill"]),
        "fsh_support_base": _hill(1.0, p["fsh_support_ec50"], p["fsh_support_hill"]),
        "itt_base_nmol_l": p["itt_serum_ratio"] * p["t_base_nmol_l"],
        "leydig_max_capacity": cap_max,
        "leydig_half_stimulus": (cap_max - 1.0) / (1.0 - p["leydig_floor"]),
        "k_leydig_up_per_day": p["k_leydig_regrowth_per_day"] * _age_factor(p["leydig_regrowth_decline_per_year"], age),
        "k_reserve_up_per_day": p["k_reserve_recovery_per_day"] * _age_factor(p["reserve_recovery_decline_per_year"], age),
        "k_hypothalamic_up_per_day": p["k_hypothalamic_recovery_per_day"] * _age_factor(
            p["hypothalamic_recovery_decline_per_year"], age),
        "k_leydig_cell_up_per_day": p["k_leydig_cell_regrowth_per_day"] * _age_factor(
            p["leydig_regrowth_decline_per_year"], age),
        "k_transit_per_day": N_GERM / p["spermatogenesis_days"],
        "death_at_baseline": _inhibition(1.0, death_ec, _DEATH_HILL),
        # Logarithms and reciprocals of per-patient constants used by the vector field
        # (hoisted so the inner loop takes one log per varying quantity and no divisions
        # by constants).
        "log_ic50_free_t_rel": jnp.log(p["ic50_free_t_pmol_l"]) - jnp.log(ft_base),
        "log_ic50_e2_rel": jnp.log(p["ic50_e2_pg_ml"]) - jnp.log(p["e2_base_pg_ml"]),
        "log_leydig_lh_ec50": jnp.log(p["leydig_lh_ec50_iu_l"]),
        # Floored so that a cap of exactly 1 (no priming) does not divide by zero.
        "log_pituitary_reserve_max": jnp.maximum(jnp.log(p["pituitary_reserve_max"]), 1e-6),
        "log_itt_support_ec50_abs": jnp.log(p["itt_support_ec50"] * p["itt_serum_ratio"] * p["t_base_nmol_l"]),
        "log_fsh_support_ec50": jnp.log(p["fsh_support_ec50"]),
        "log_t_base": jnp.log(p["t_base_nmol_l"]),
        "log_itt_base": jnp.log(p["itt_serum_ratio"] * p["t_base_nmol_l"]),
        "log_gonadorelin_sustained_ec50": jnp.log(p["gonadorelin_sustained_ec50_ug_day"]),
        "inv_drive_base": 1.0 / (_inhibition(ft_base, p["ic50_free_t_pmol_l"], p["hill_free_t"])
                                 * _inhibition(p["e2_base_pg_ml"], p["ic50_e2_pg_ml"], p["hill_e2"])),
        "inv_leydig_output_base": 1.0 / _leydig_output(p["lh_base_iu_l"], p),
        "inv_free_t_base": 1.0 / ft_base,
        "inv_e2_base": 1.0 / p["e2_base_pg_ml"],
        "e2_independent_pg_ml": p["e2_t_independent_fraction"] * p["e2_base_pg_ml"],
        "e2_per_t": (1.0 - p["e2_t_independent_fraction"]) * p["e2_base_pg_ml"] / p["t_base_nmol_l"],
        "inv_hcg_lh_max": 1.0 / p["hcg_lh_max_iu_l"],
        "inv_lh_base": 1.0 / p["lh_base_iu_l"],
        "inv_fsh_base": 1.0 / p["fsh_base_iu_l"],
        "inv_t_base": 1.0 / p["t_base_nmol_l"],
        "release_to_nmol_l": 1e6 / TESTOSTERONE_G_PER_MOL / p["cl_testosterone_l_day"],
        "support_norm_itt": 1.0 / _hill(1.0, p["itt_support_ec50"], p["itt_support_hill"]),
        "support_norm_fsh": 1.0 / _hill(1.0, p["fsh_support_ec50"], p["fsh_support_hill"]),
    }


def hormones(y, exposure: Mapping[str, jnp.ndarray], p: Params, c: Params) -> dict[str, jnp.ndarray]:
    """Quasi-steady hormone levels of one patient.

    Args:
        y: ``(n_states,)`` slow states (see popsim.model.state).
        exposure: drug exposures from popsim.model.pk.exposures (None = drug absent).
        p: parameters of the patient (scalars).
        c: ``patient_constants(p)``.

    Returns:
        Hormones in canonical units plus intermediate signals used by the vector field.
    """
    return _hormones(y, exposure, p, c)[0]


def _hormones(y, exposure, p: Params, c: Params):
    """hormones() plus the logarithms the vector field reuses.

    Power laws are written as exp(e log x) and Hill functions as logistic(n (log x -
    log ec50)), with each varying quantity's logarithm taken once and the constants'
    logarithms hoisted into patient_constants: the same functions as the textbook forms
    (docs/model.md), about half the transcendental operations, and each intermediate
    used once, which lets XLA fuse the field into fewer kernels.
    """
    y = jnp.maximum(y, 0.0)
    t_base = p["t_base_nmol_l"]
    shbg_base = p["shbg_base_nmol_l"]

    # Hypothalamus: absolute androgen and estrogen feedback, normalised to the man's own
    # baseline so that G = 1 untreated (Pitteloud 2008: two separate feedbacks).
    # 1 / (1 + (x/ic50)^n) with x = state * baseline.
    inhibit_t = jax.nn.sigmoid(p["hill_free_t"] * (c["log_ic50_free_t_rel"] - _log(y[S.FEEDBACK_ANDROGEN])))
    inhibit_e = jax.nn.sigmoid(p["hill_e2"] * (c["log_ic50_e2_rel"] - _log(y[S.FEEDBACK_ESTROGEN])))
    # The pulse generator's capacity (hypothalamic_capacity, lowered by long or intense
    # androgen exposure) scales its disinhibited drive, and its output saturates: d acts
    # as d (1 + K) / (d + K), 1 at baseline, at most 1 + K (castrate LH is several-fold,
    # not hundreds-fold, baseline). A SERM still raises the output of a suppressed
    # generator; gonadorelin bypasses it at the pituitary.
    disinhibited = inhibit_t * inhibit_e * c["inv_drive_base"] * y[S.HYPOTHALAMIC_CAPACITY]
    k_sat = p["gnrh_drive_saturation"]
    drive = disinhibited * (1.0 + k_sat) / (disinhibited + k_sat)
    if exposure["gonadorelin_effect_ug"] is not None:
        drive = drive + p["gonadorelin_max_drive"] * _michaelis(exposure["gonadorelin_effect_ug"], p["gonadorelin_ec50_ug"])
    stimulation = y[S.GNRH_RESPONSIVENESS] * drive
    log_stimulation = _log(stimulation)

    # Pituitary: LH and FSH from GnRH stimulation and gonadotroph reserve; FSH also
    # restrained by inhibin B. LH is released from stores by each GnRH pulse; FSH is
    # secreted as it is made, so it follows the reserve more steeply and each pulse less.
    germ = y[S.GERM_FIRST:S.GERM_LAST + 1]
    germ_content = jnp.mean(germ[S.N_GERM_STAGES // 3:])  # spermatocytes and spermatids
    log_sertoli = _log(y[S.SERTOLI_FUNCTION])
    w_germ = p["inhibin_germ_weight"]
    log_inhibin_rel = jnp.maximum(p["inhibin_sertoli_exponent"] * log_sertoli
                                  + jnp.log(1.0 - w_germ + w_germ * germ_content), jnp.log(1e-3))
    reserve = y[S.PITUITARY_RESERVE]
    lh = p["lh_base_iu_l"] * reserve * jnp.exp(p["lh_gnrh_exponent"] * log_stimulation)
    fsh_endogenous = p["fsh_base_iu_l"] * jnp.exp(p["fsh_reserve_exponent"] * _log(reserve)
                                                  + p["fsh_gnrh_exponent"] * log_stimulation
                                                  - p["fsh_inhibin_exponent"] * log_inhibin_rel)
    fsh = fsh_endogenous if exposure["fsh_exogenous_iu_l"] is None else fsh_endogenous + exposure["fsh_exogenous_iu_l"]

    # Leydig cells: T production from LH (+ hCG at the LH receptor) times capacity.
    # hCG's LH-equivalent stimulus saturates (receptor down-regulation / steroidogenic
    # desensitisation at higher doses): e C / (1 + e C / M), slope e at low doses.
    if exposure["hcg_iu_l"] is None:
        lh_effective = lh
    else:
        hcg_equivalent = p["hcg_lh_equivalence"] * jnp.maximum(exposure["hcg_iu_l"], 0.0)
        lh_effective = lh + hcg_equivalent / (1.0 + hcg_equivalent * c["inv_hcg_lh_max"])
    leydig_output = 1.0 + p["leydig_lh_max_fold"] * _hill_log(_log(lh_effective), c["log_leydig_lh_ec50"],
                                                              p["leydig_lh_hill"])
    production_rel = y[S.LEYDIG_CAPACITY] * y[S.LEYDIG_CELL_MASS] * leydig_output * c["inv_leydig_output_base"]
    shbg_rel = jnp.maximum(y[S.SHBG], 1e-3)
    # 1 / clearance_rel = shbg_rel ** shbg_clearance_exponent
    inverse_clearance = jnp.exp(p["shbg_clearance_exponent"] * jnp.log(shbg_rel))
    t_endogenous = t_base * production_rel * inverse_clearance
    if exposure["testosterone_release_mg_day"] is None:
        t_exogenous = jnp.zeros_like(t_endogenous)
    else:
        t_exogenous = exposure["testosterone_release_mg_day"] * c["release_to_nmol_l"] * inverse_clearance
    total_t = t_endogenous + t_exogenous
    shbg = shbg_base * shbg_rel
    free_t = free_testosterone_pmol_l(total_t, shbg, p)

    # Intratesticular T: made by the Leydig cells plus what diffuses in from serum.
    itt_base = c["itt_base_nmol_l"]
    itt = (itt_base - p["itt_diffusion_ratio"] * t_base) * production_rel + p["itt_diffusion_ratio"] * total_t

    # Estradiol: a share from circulating T (aromatisation of total T) and a share that does
    # not follow serum T (adrenal androstenedione -> estrone -> E2), both through aromatase,
    # which anastrozole inhibits.
    e2 = c["e2_independent_pg_ml"] + c["e2_per_t"] * total_t
    if exposure["anastrozole_ng_ml"] is not None:
        e2 = e2 * (1.0 - p["anastrozole_imax"] * _michaelis(exposure["anastrozole_ng_ml"], p["anastrozole_ic50_ng_ml"]))

    # Estrogen-receptor signal at the hypothalamus: SERMs compete with E2 (Gaddum);
    # zuclomiphene adds a weak agonism.
    occupancy_divisor = 1.0
    agonism = 0.0
    for name, ki in (("enclomiphene_ng_ml", "ki_enclomiphene_ng_ml"), ("zuclomiphene_ng_ml", "ki_zuclomiphene_ng_ml"),
                     ("tamoxifen_ng_ml", "ki_tamoxifen_ng_ml")):
        if exposure[name] is not None:
            occupancy_divisor = occupancy_divisor + exposure[name] / p[ki]
    if exposure["zuclomiphene_ng_ml"] is not None:
        agonism = p["zuclomiphene_agonism_pg_ml_per_ng_ml"] * exposure["zuclomiphene_ng_ml"]
    estrogen_signal = (e2 + agonism) / occupancy_divisor

    # Spermatogenic support: normalised ITT and FSH (Sertoli) support, 1 at baseline.
    log_itt = _log(itt)
    h_t = _hill_log(log_itt, c["log_itt_support_ec50_abs"], p["itt_support_hill"]) * c["support_norm_itt"]
    h_f = _hill_log(log_sertoli, c["log_fsh_support_ec50"], p["fsh_support_hill"]) * c["support_norm_fsh"]
    w_t, w_f = p["support_weight_itt"], p["support_weight_fsh"]
    support = w_t * h_t + w_f * h_f + (1.0 - w_t - w_f) * h_t * h_f
    out = {
        "total_testosterone_nmol_l": total_t,
        "exogenous_testosterone_nmol_l": t_exogenous,
        "free_testosterone_pmol_l": free_t,
        "lh_iu_l": lh,
        "lh_effective_iu_l": lh_effective,
        "fsh_iu_l": fsh,
        "estradiol_pg_ml": e2,
        "estrogen_signal_pg_ml": estrogen_signal,
        "inhibin_b_pg_ml": p["inhibin_b_base_pg_ml"] * jnp.exp(log_inhibin_rel),
        "shbg_nmol_l": shbg,
        "itt_nmol_l": itt,
        "gnrh_stimulation": stimulation,
        "spermatogenic_support": support,
        "sperm_concentration_m_ml": p["sperm_base_m_ml"] * y[S.EPIDIDYMAL_SPERM],
    }
    # Hormonal drive of germ-cell survival: log of (Sertoli function x ITT / baseline ITT).
    log_survival_drive = log_sertoli + log_itt - c["log_itt_base"]
    return out, {"log_gnrh_stimulation": log_stimulation, "log_survival_drive": log_survival_drive}


# Reported slow states (normalised, 1 = the man's own baseline).
REPORTED_STATES = {"leydig_capacity": S.LEYDIG_CAPACITY, "pituitary_reserve": S.PITUITARY_RESERVE,
                   "spermatogonial_reserve": S.SPERMATOGONIAL_RESERVE,
                   "hypothalamic_capacity": S.HYPOTHALAMIC_CAPACITY, "leydig_cell_mass": S.LEYDIG_CELL_MASS,
                   "stem_cell_pool": S.STEM_CELL_POOL}


def observables(y, exposure: Mapping[str, jnp.ndarray | None], p: Params, c: Params) -> dict[str, jnp.ndarray]:
    """Everything reported at an output time: drug exposures (absent drugs as zeros),
    hormones, and the reported slow states."""
    filled = {k: jnp.zeros_like(y[0]) if v is None else v for k, v in exposure.items()}
    return {**filled, **hormones(y, exposure, p, c), **{name: y[i] for name, i in REPORTED_STATES.items()}}


def vector_field(y, exposure: Mapping[str, jnp.ndarray], gonadorelin_sustained_ug_day, p: Params, c: Params):
    """dy/dt (1/day) of the slow states of one patient.

    Args:
        y: ``(n_states,)`` slow states.
        exposure: drug exposures at this instant (popsim.model.pk.exposures).
        gonadorelin_sustained_ug_day: scalar sustained (trough) gonadorelin input, or
            None when no gonadorelin is simulated.
        p: parameters of the patient.
        c: ``patient_constants(p)``.
    """
    h, logs = _hormones(y, exposure, p, c)
    y = jnp.maximum(y, 0.0)
    k_fb = p["k_feedback_per_day"]
    d_feedback_androgen = k_fb * (h["free_testosterone_pmol_l"] * c["inv_free_t_base"] - y[S.FEEDBACK_ANDROGEN])
    d_feedback_estrogen = k_fb * (h["estrogen_signal_pg_ml"] * c["inv_e2_base"] - y[S.FEEDBACK_ESTROGEN])

    # The reserve is depleted by missing stimulation and restored by it, but primed above
    # baseline by at most pituitary_reserve_max (LH after castration: ~6-13x baseline).
    # The cap is smooth (log target = m tanh(x/m) above baseline, with continuous first and
    # second derivatives at x = 0), so a fixed-step integrator keeps its order across it.
    log_reserve_free = p["pituitary_reserve_exponent"] * logs["log_gnrh_stimulation"]
    log_reserve_max = c["log_pituitary_reserve_max"]
    reserve_target = jnp.exp(jnp.where(log_reserve_free > 0.0,
                                       log_reserve_max * jnp.tanh(log_reserve_free / log_reserve_max),
                                       log_reserve_free))
    d_reserve = p["k_pituitary_reserve_per_day"] * (reserve_target - y[S.PITUITARY_RESERVE])

    d_responsiveness = p["k_gnrh_resensitisation_per_day"] * (1.0 - y[S.GNRH_RESPONSIVENESS])

    # Hypothalamic capacity: androgen feedback above the man's own baseline lowers it
    # towards 1 / (1 + (excess / ec50)^n) over weeks to months. It regrows sigmoidally,
    # in proportion to (capacity + floor), so the lag after stopping grows with the log of
    # the depth that the exposure (dose x duration) reached: months after a heavy cycle,
    # nothing after contraceptive doses.
    excess = jnp.maximum(y[S.FEEDBACK_ANDROGEN] - 1.0, 0.0)
    # 1 / (1 + (excess / ec50)^n) as a logistic of the log, with excess floored at 1e-6
    # (target 1 to float precision there): a power at exactly 0 has an infinite second
    # derivative, which made reverse-mode gradients through the Rosenbrock step NaN.
    capacity_target = jax.nn.sigmoid(p["hypothalamic_suppression_hill"] * (
        jnp.log(p["hypothalamic_suppression_ec50"]) - jnp.log(jnp.maximum(excess, 1e-6))))
    capacity = y[S.HYPOTHALAMIC_CAPACITY]
    capacity_floor = p["hypothalamic_recovery_floor"]
    k_capacity_up = c["k_hypothalamic_up_per_day"] * (capacity + capacity_floor) / (1.0 + capacity_floor)
    # The fall is self-reinforcing (the mirror of the sigmoid regrowth): slow while the
    # capacity is intact, faster once it has begun, so depth grows with months of
    # exposure instead of saturating within weeks (C8 with C9).
    onset_floor = p["hypothalamic_suppression_onset_floor"]
    k_capacity_down = p["k_hypothalamic_suppression_per_day"] * (onset_floor + 1.0 - jnp.minimum(capacity, 1.0)) / (
        1.0 + onset_floor)
    capacity_falling = jax.nn.sigmoid((capacity - capacity_target) / 0.01)
    d_capacity = (k_capacity_up + (k_capacity_down - k_capacity_up) * capacity_falling) * (capacity_target - capacity)
    if gonadorelin_sustained_ug_day is not None:
        desensitisation = p["k_gnrh_desensitisation_per_day"] * _hill_log(
            _log(gonadorelin_sustained_ug_day), c["log_gonadorelin_sustained_ec50"], p["gonadorelin_sustained_hill"])
        d_responsiveness = d_responsiveness - desensitisation * y[S.GNRH_RESPONSIVENESS]

    # Leydig capacity: target rises with LH stimulation from a floor to an age-limited
    # maximum, normalised so that the target is 1 at the man's baseline LH; atrophy and
    # regrowth have their own rates (smooth switch keeps the field differentiable).
    floor = p["leydig_floor"]
    stim = h["lh_effective_iu_l"] * c["inv_lh_base"]
    leydig_target = floor + (c["leydig_max_capacity"] - floor) * stim / (c["leydig_half_stimulus"] + stim)
    leydig = y[S.LEYDIG_CAPACITY]
    k_up = c["k_leydig_up_per_day"]
    k_down = p["k_leydig_atrophy_per_day"]
    shrinking = jax.nn.sigmoid((leydig - leydig_target) / 0.02)
    d_leydig = (k_up + (k_down - k_up) * shrinking) * (leydig_target - leydig)
    # Leydig cell number: lost while LH (or hCG) stimulation is below the man's baseline
    # (LH is the Leydig cells' survival factor), regrown slowly from stem Leydig cells
    # under LH, so part of a long deprivation outlasts the return of LH.
    lh_support = jnp.minimum(stim, 1.0)
    mass = y[S.LEYDIG_CELL_MASS]
    d_mass = (c["k_leydig_cell_up_per_day"] * lh_support * (1.0 - mass)
              - p["k_leydig_cell_loss_per_day"] * (1.0 - lh_support) * mass)

    # Androgens lower hepatic SHBG; below a quarter of baseline T the target stops rising
    # (SHBG rises only modestly after castration).
    shbg_target = jnp.exp(-p["shbg_androgen_exponent"] * jnp.maximum(_log(h["total_testosterone_nmol_l"]) - c["log_t_base"],
                                                                      jnp.log(0.25)))
    d_shbg = p["k_shbg_per_day"] * (shbg_target - y[S.SHBG])

    fsh_rel = h["fsh_iu_l"] * c["inv_fsh_base"]
    ec = p["sertoli_fsh_ec50"]
    sertoli_target = (1.0 + ec) * fsh_rel / (ec + fsh_rel)
    d_sertoli = p["k_sertoli_per_day"] * (sertoli_target - y[S.SERTOLI_FUNCTION])

    # Spermatogenesis: reserve -> N_GERM_STAGES compartments -> epididymis. Low support
    # stops entry and kills cells already in the pipeline.
    support = h["spermatogenic_support"]
    support_capped = jnp.minimum(support, 1.0)
    reserve = y[S.SPERMATOGONIAL_RESERVE]
    # Regrowth by self-renewal (an emptied reserve refills from a small floor, after a lag)
    # and saturable depletion (the reserve drains at a near-constant rate until exhausted),
    # which together make recovery bimodal: men end treatment nearly full or nearly empty.
    floor = p["reserve_regrowth_floor"]
    half_saturation = p["reserve_depletion_half_saturation"]
    # The floor is seeded by the stem-cell pool, which years without support wear down.
    stem = y[S.STEM_CELL_POOL]
    d_stem = (p["k_stem_cell_recovery_per_day"] * support_capped * (1.0 - stem)
              - p["k_stem_cell_loss_per_day"] * (1.0 - support_capped) * stem)
    d_spermatogonia = (c["k_reserve_up_per_day"] * support_capped * (1.0 - reserve) * (floor * stem + reserve) / (1.0 + floor)
                       - p["k_reserve_depletion_per_day"] * (1.0 - support_capped) * reserve * (1.0 + half_saturation)
                       / (reserve + half_saturation))
    ratio = jnp.maximum(support, 0.0) / p["germ_death_support_ec50"]
    ratio2 = ratio * ratio
    death = p["germ_death_max_per_day"] * jnp.maximum(1.0 / (1.0 + ratio2 * ratio2) - c["death_at_baseline"], 0.0)
    # Impaired testes lose germ cells at baseline (normalised away: states are relative to the
    # man's own output); hormonal drive above baseline lowers that loss, below raises it.
    death = death - p["germ_loss_impaired_per_day"] * jnp.tanh(0.5 * p["germ_survival_hormone_exponent"]
                                                                 * logs["log_survival_drive"])
    germ = y[S.GERM_FIRST:S.GERM_LAST + 1]
    inflow = jnp.concatenate([jnp.reshape(reserve * support, (1,)), germ[:-1]])
    d_germ = c["k_transit_per_day"] * (inflow - germ) - death * germ
    d_epididymis = (germ[-1] - y[S.EPIDIDYMAL_SPERM]) / p["epididymal_transit_days"]
    return jnp.concatenate([
        jnp.stack([d_feedback_androgen, d_feedback_estrogen, d_reserve, d_responsiveness,
                   d_leydig, d_shbg, d_sertoli, d_spermatogonia]),
        d_germ, jnp.stack([d_epididymis, d_capacity, d_mass, d_stem])])


def initial_state(dtype=jnp.float32) -> jnp.ndarray:
    """Untreated steady state: every normalised state at 1."""
    return jnp.ones((S.N_STATES,), dtype=dtype)
