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


def _support_terms(itt_rel, sertoli, p: Params, c: Params):
    """Normalised ITT and FSH (Sertoli) support of spermatogenesis, 1 at baseline."""
    h_t = _hill(itt_rel, p["itt_support_ec50"], p["itt_support_hill"]) / c["itt_support_base"]
    h_f = _hill(sertoli, p["fsh_support_ec50"], p["fsh_support_hill"]) / c["fsh_support_base"]
    w_t, w_f = p["support_weight_itt"], p["support_weight_fsh"]
    w_tf = 1.0 - w_t - w_f  # both hormones together give full output
    return w_t * h_t + w_f * h_f + w_tf * h_t * h_f


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
        "k_transit_per_day": N_GERM / p["spermatogenesis_days"],
        "death_at_baseline": _inhibition(1.0, death_ec, _DEATH_HILL),
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
    y = jnp.maximum(y, 0.0)
    t_base, e2_base = p["t_base_nmol_l"], p["e2_base_pg_ml"]
    shbg_base = p["shbg_base_nmol_l"]
    ft_base = c["free_t_base_pmol_l"]

    # Hypothalamus: absolute androgen and estrogen feedback, normalised to the man's own
    # baseline so that G = 1 untreated (Pitteloud 2008: two separate feedbacks).
    x_t = y[S.FEEDBACK_ANDROGEN] * ft_base
    x_e = y[S.FEEDBACK_ESTROGEN] * e2_base
    drive_endogenous = (_inhibition(x_t, p["ic50_free_t_pmol_l"], p["hill_free_t"])
                        * _inhibition(x_e, p["ic50_e2_pg_ml"], p["hill_e2"])) / c["drive_base"]
    drive = drive_endogenous
    if exposure["gonadorelin_effect_ug"] is not None:
        drive = drive + p["gonadorelin_max_drive"] * _hill(exposure["gonadorelin_effect_ug"], p["gonadorelin_ec50_ug"], 1.0)
    stimulation = y[S.GNRH_RESPONSIVENESS] * drive

    # Pituitary: LH and FSH from GnRH stimulation and gonadotroph reserve; FSH also
    # restrained by inhibin B.
    germ = y[S.GERM_FIRST:S.GERM_LAST + 1]
    germ_content = jnp.mean(germ[S.N_GERM_STAGES // 3:])  # spermatocytes and spermatids
    inhibin_rel = _pow(y[S.SERTOLI_FUNCTION], p["inhibin_sertoli_exponent"]) * (
        1.0 - p["inhibin_germ_weight"] + p["inhibin_germ_weight"] * germ_content)
    inhibin_rel = jnp.maximum(inhibin_rel, 1e-3)
    lh = p["lh_base_iu_l"] * y[S.PITUITARY_RESERVE] * _pow(stimulation, p["lh_gnrh_exponent"])
    fsh_endogenous = (p["fsh_base_iu_l"] * y[S.PITUITARY_RESERVE] * _pow(stimulation, p["fsh_gnrh_exponent"])
                      * _pow(inhibin_rel, -p["fsh_inhibin_exponent"]))
    fsh = fsh_endogenous if exposure["fsh_exogenous_iu_l"] is None else fsh_endogenous + exposure["fsh_exogenous_iu_l"]

    # Leydig cells: T production from LH (+ hCG at the LH receptor) times capacity.
    lh_effective = lh if exposure["hcg_iu_l"] is None else lh + p["hcg_lh_equivalence"] * exposure["hcg_iu_l"]
    production_rel = y[S.LEYDIG_CAPACITY] * _leydig_output(lh_effective, p) / c["leydig_output_base"]
    shbg_rel = jnp.maximum(y[S.SHBG], 1e-3)
    clearance_rel = _pow(shbg_rel, -p["shbg_clearance_exponent"])
    t_endogenous = t_base * production_rel / clearance_rel
    if exposure["testosterone_release_mg_day"] is None:
        t_exogenous = jnp.zeros_like(t_endogenous)
    else:
        release_nmol_day = exposure["testosterone_release_mg_day"] * 1e6 / TESTOSTERONE_G_PER_MOL
        t_exogenous = release_nmol_day / (p["cl_testosterone_l_day"] * clearance_rel)
    total_t = t_endogenous + t_exogenous
    shbg = shbg_base * shbg_rel
    free_t = free_testosterone_pmol_l(total_t, shbg, p)

    # Intratesticular T: made by the Leydig cells plus what diffuses in from serum.
    itt_base = c["itt_base_nmol_l"]
    itt = (itt_base - p["itt_diffusion_ratio"] * t_base) * production_rel + p["itt_diffusion_ratio"] * total_t

    # Estradiol: aromatisation of total T, inhibited by anastrozole.
    e2 = e2_base * (total_t / t_base)
    if exposure["anastrozole_ng_ml"] is not None:
        e2 = e2 * (1.0 - p["anastrozole_imax"] * _hill(exposure["anastrozole_ng_ml"], p["anastrozole_ic50_ng_ml"], 1.0))

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

    support = _support_terms(itt / itt_base, y[S.SERTOLI_FUNCTION], p, c)
    return {
        "total_testosterone_nmol_l": total_t,
        "exogenous_testosterone_nmol_l": t_exogenous,
        "free_testosterone_pmol_l": free_t,
        "lh_iu_l": lh,
        "lh_effective_iu_l": lh_effective,
        "fsh_iu_l": fsh,
        "estradiol_pg_ml": e2,
        "estrogen_signal_pg_ml": estrogen_signal,
        "inhibin_b_pg_ml": p["inhibin_b_base_pg_ml"] * inhibin_rel,
        "shbg_nmol_l": shbg,
        "itt_nmol_l": itt,
        "gnrh_stimulation": stimulation,
        "spermatogenic_support": support,
        "sperm_concentration_m_ml": p["sperm_base_m_ml"] * y[S.EPIDIDYMAL_SPERM],
    }


# Reported slow states (normalised, 1 = the man's own baseline).
REPORTED_STATES = {"leydig_capacity": S.LEYDIG_CAPACITY, "pituitary_reserve": S.PITUITARY_RESERVE,
                   "spermatogonial_reserve": S.SPERMATOGONIAL_RESERVE}


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
    h = hormones(y, exposure, p, c)
    y = jnp.maximum(y, 0.0)
    k_fb = p["k_feedback_per_day"]
    d_feedback_androgen = k_fb * (h["free_testosterone_pmol_l"] / c["free_t_base_pmol_l"] - y[S.FEEDBACK_ANDROGEN])
    d_feedback_estrogen = k_fb * (h["estrogen_signal_pg_ml"] / p["e2_base_pg_ml"] - y[S.FEEDBACK_ESTROGEN])

    reserve_target = _pow(jnp.maximum(h["gnrh_stimulation"], 0.0), p["pituitary_reserve_exponent"])
    d_reserve = p["k_pituitary_reserve_per_day"] * (reserve_target - y[S.PITUITARY_RESERVE])

    d_responsiveness = p["k_gnrh_resensitisation_per_day"] * (1.0 - y[S.GNRH_RESPONSIVENESS])
    if gonadorelin_sustained_ug_day is not None:
        desensitisation = p["k_gnrh_desensitisation_per_day"] * _hill(
            gonadorelin_sustained_ug_day, p["gonadorelin_sustained_ec50_ug_day"], p["gonadorelin_sustained_hill"])
        d_responsiveness = d_responsiveness - desensitisation * y[S.GNRH_RESPONSIVENESS]

    # Leydig capacity: target rises with LH stimulation from a floor to an age-limited
    # maximum, normalised so that the target is 1 at the man's baseline LH; atrophy and
    # regrowth have their own rates (smooth switch keeps the field differentiable).
    floor = p["leydig_floor"]
    stim = h["lh_effective_iu_l"] / p["lh_base_iu_l"]
    leydig_target = floor + (c["leydig_max_capacity"] - floor) * stim / (c["leydig_half_stimulus"] + stim)
    leydig = y[S.LEYDIG_CAPACITY]
    k_up = c["k_leydig_up_per_day"]
    k_down = p["k_leydig_atrophy_per_day"]
    shrinking = jax.nn.sigmoid((leydig - leydig_target) / 0.02)
    d_leydig = (k_up + (k_down - k_up) * shrinking) * (leydig_target - leydig)

    # Androgens lower hepatic SHBG; below a quarter of baseline T the target stops rising
    # (SHBG rises only modestly after castration).
    shbg_target = _pow(jnp.maximum(h["total_testosterone_nmol_l"] / p["t_base_nmol_l"], 0.25), -p["shbg_androgen_exponent"])
    d_shbg = p["k_shbg_per_day"] * (shbg_target - y[S.SHBG])

    fsh_rel = h["fsh_iu_l"] / p["fsh_base_iu_l"]
    ec = p["sertoli_fsh_ec50"]
    sertoli_target = (1.0 + ec) * fsh_rel / (ec + fsh_rel)
    d_sertoli = p["k_sertoli_per_day"] * (sertoli_target - y[S.SERTOLI_FUNCTION])

    # Spermatogenesis: reserve -> N_GERM_STAGES compartments -> epididymis. Low support
    # stops entry and kills cells already in the pipeline.
    support = h["spermatogenic_support"]
    support_capped = jnp.minimum(support, 1.0)
    reserve = y[S.SPERMATOGONIAL_RESERVE]
    d_spermatogonia = (c["k_reserve_up_per_day"] * support_capped * (1.0 - reserve)
                       - p["k_reserve_depletion_per_day"] * (1.0 - support_capped) * reserve)
    ratio = jnp.maximum(support, 0.0) / p["germ_death_support_ec50"]
    ratio2 = ratio * ratio
    death = p["germ_death_max_per_day"] * jnp.maximum(1.0 / (1.0 + ratio2 * ratio2) - c["death_at_baseline"], 0.0)
    germ = y[S.GERM_FIRST:S.GERM_LAST + 1]
    inflow = jnp.concatenate([jnp.reshape(reserve * support, (1,)), germ[:-1]])
    d_germ = c["k_transit_per_day"] * (inflow - germ) - death * germ
    d_epididymis = (germ[-1] - y[S.EPIDIDYMAL_SPERM]) / p["epididymal_transit_days"]
    return jnp.concatenate([
        jnp.stack([d_feedback_androgen, d_feedback_estrogen, d_reserve, d_responsiveness,
                   d_leydig, d_shbg, d_sertoli, d_spermatogonia]),
        d_germ, jnp.reshape(d_epididymis, (1,))])


def initial_state(dtype=jnp.float32) -> jnp.ndarray:
    """Untreated steady state: every normalised state at 1."""
    return jnp.ones((S.N_STATES,), dtype=dtype)
