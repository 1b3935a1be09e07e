"""Integration of one patient with exact dose times, vmapped over patients.

Between two requested output times the patient takes ``ceil(gap / dt)`` equal steps
(the step schedule, ``plan_output_grid``). A step is taken in one part, or split in two
at the first dose inside it, and each part is one step of the step method
(popsim.solve.methods: ``rk4`` splits every step, at a dose or at its midpoint;
``rk4-dose`` and ``ros34pw2`` split only the steps in which the schedule says some
patient of the batch has a dose, and each patient at his own dose). The slow
physiological states follow the method, the linear PK chains are advanced in closed form
(popsim.model.pk), so every dose acts at its exact time. Outputs are left limits: a sample at a dose time is a pre-dose (trough) sample.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from popsim.model import hpg, pk
from popsim.model.pk import N_SPECIES, SPECIES_INDEX
from popsim.solve.methods import DEFAULT_METHOD, get_method
from popsim.solve.schedule import OutputGrid, mark_dose_splits, plan_output_grid  # noqa: F401 (re-exported)

_GONADORELIN = SPECIES_INDEX["gonadorelin"]
# Where a step with a dose at its start is split: the absorption transient right after
# a dose is the hardest part for RK4 (docs/accuracy.md measured 0.5, 0.35, 0.25, 0.2).
SPLIT_FRACTION = 0.25
# Largest batch (patients in one compiled call) that evaluates the PK of a step's six
# stage times as one batched computation (faster for small batches such as gradients
# in calibration; slower for large ones). Both forms give the same results.
SMALL_BATCH = 128
# Plausible range of the normalised physiological states (baseline 1).
STATE_LOWER_BOUND, STATE_UPPER_BOUND = -0.1, 1e3

# Observables returned at every output time (canonical units; see popsim.units).
OBSERVABLES: tuple[str, ...] = (
    "total_testosterone_nmol_l", "free_testosterone_pmol_l", "lh_iu_l", "fsh_iu_l",
    "estradiol_pg_ml", "inhibin_b_pg_ml", "shbg_nmol_l", "itt_nmol_l",
    "sperm_concentration_m_ml", "exogenous_testosterone_nmol_l",
    "hcg_iu_l", "fsh_exogenous_iu_l", "enclomiphene_ng_ml", "zuclomiphene_ng_ml",
    "tamoxifen_ng_ml", "anastrozole_ng_ml", "gonadorelin_effect_ug",
    "spermatogenic_support", "leydig_capacity", "pituitary_reserve", "spermatogonial_reserve",
    "hypothalamic_capacity", "leydig_cell_mass", "stem_cell_pool",
)


def _select(flag, new, old):
    """``new`` where ``flag`` else ``old``, leaf by leaf (a per-patient choice under vmap)."""
    return jax.tree.map(lambda a, b: jnp.where(flag, a, b), new, old)


class _Doses(NamedTuple):
    onehot: jnp.ndarray  # (n_entries, n_species)
    amount: jnp.ndarray
    start_days: jnp.ndarray
    interval_days: jnp.ndarray
    n_doses: jnp.ndarray


class Rules(NamedTuple):
    """Monitoring rules of the patients, each field ``(n_patients, n_rules)``; see
    popsim.population.regimens.RuleTable for the meaning of the fields."""

    observable: jnp.ndarray
    sign: jnp.ndarray
    threshold: jnp.ndarray
    first_check_day: jnp.ndarray
    every_days: jnp.ndarray
    n_checks: jnp.ndarray
    target_entry: jnp.ndarray
    factor: jnp.ndarray
    max_scale: jnp.ndarray


def _doses_before(doses: _Doses, t, tol):
    """Number of doses of each entry strictly before time t (a dose within ``tol`` after
    t counts as at t). Step boundaries are always computed the same way, so a dose near a
    boundary is attributed to exactly one step."""
    interval = doses.interval_days
    n = jnp.ceil((t - doses.start_days) / interval - tol / interval)
    return jnp.clip(n, 0.0, doses.n_doses.astype(n.dtype))


def _window(doses: _Doses, first_index, end_index, first_offset, until, strict, tol):
    """Doses of each entry with offsets in [0, until] (or [0, until) when strict), among
    the doses of the step (indices first_index .. end_index - 1)."""
    interval = doses.interval_days
    delta = tol / interval
    rel = (until - first_offset) / interval
    count = jnp.where(strict, jnp.ceil(rel - delta), jnp.floor(rel + delta) + 1.0)
    count = jnp.clip(count, 0.0, end_index - first_index)
    last_offset = first_offset + jnp.maximum(count - 1.0, 0.0) * interval
    return pk.DoseWindow(count, last_offset)


def _gonadorelin_sustained(doses: _Doses, scale, t, p, column: int):
    """Sustained (trough) gonadorelin input at time t, ug/day, summed over active courses.

    For boluses every tau with plasma elimination k the trough is a share
    k tau exp(-k tau) / (1 - exp(-k tau)) of the mean input: ~1 for a continuous
    infusion, ~0 for pulses far apart (MODEL.md: pulsatile keeps the pituitary
    responsive, continuous exposure desensitises).
    """
    k = p["k_plasma_gonadorelin_per_day"]
    tau = doses.interval_days
    x = k * tau
    share = x * jnp.exp(-x) / -jnp.expm1(-x)
    active = (t >= doses.start_days) & (t < doses.start_days + doses.n_doses * tau)
    rate = doses.amount * scale / tau * share * doses.onehot[:, column]
    return jnp.sum(jnp.where(active, rate, 0.0))


def _make_patient_simulator(dtype, species: tuple[int, ...], max_steps: int, uniform: bool,
                            batched_stages: bool = False, method_name: str = "rk4", max_quiet_steps: int = 1):
    # Dose-time coincidence tolerance, days: float32 resolves ~1e-4 d at t ~ 5 years.
    tol = 2e-4 if dtype == jnp.float32 else 1e-9
    method = get_method(method_name)
    # A combined method: one step method while doses are recent, another on quiet stretches.
    quiet_method = getattr(method, "quiet", None)
    method = getattr(method, "active", method)

    gonadorelin_column = species.index(_GONADORELIN) if _GONADORELIN in species else None

    def simulate_patient(params: Mapping[str, jnp.ndarray], doses: _Doses, grid: OutputGrid, scale0, rules: Rules,
                         quiet):
        p = {k: jnp.asarray(v, dtype) for k, v in params.items()}
        rates = pk.select(pk.chain_rates(p), species)
        c = hpg.patient_constants(p)
        entries = pk.entry_rates(rates, doses.onehot, doses.amount, doses.interval_days)

        n_rules = rules.sign.shape[-1]

        def pk_at(a1_0, a2_0, scaled, first_index, end_index, first_offset, until, strict):
            a1, a2 = pk.propagate(a1_0, a2_0, rates, until)
            window = _window(doses, first_index, end_index, first_offset, until, strict, tol)
            d1, d2 = pk.dose_sums(scaled, doses.interval_days, window, until)
            return a1 + d1, a2 + d2

        def rhs(y, a2, t, scale):
            exposure = pk.exposures(a2, rates, species)
            sustained = _gonadorelin_sustained(doses, scale, t, p, gonadorelin_column) if gonadorelin_column is not None else None
            return hpg.vector_field(y, exposure, sustained, p, c)

        # Reverse mode: save only the inputs of each vector-field evaluation and recompute
        # its intermediates in the backward pass. Saving every intermediate (JAX's default)
        # stores hundreds of small arrays per step, each a separate kernel on CPU; this
        # halves the time of a gradient (docs/performance.md) and does not touch the
        # forward pass or forward-mode derivatives.
        rhs = jax.checkpoint(rhs)

        def observe(y, a2):
            out = hpg.observables(y, pk.exposures(a2, rates, species), p, c)
            return {name: out[name] for name in OBSERVABLES}

        def apply_rules(y, a2, scale, t0, t1):
            # A check due in [t0, t1) is taken at t0 (pre-dose values at the boundary).
            values = jnp.stack(list(observe(y, a2).values()))
            for r in range(n_rules):
                due = jnp.ceil((t0 - rules.first_check_day[r]) / rules.every_days[r] - tol / rules.every_days[r])
                check_time = rules.first_check_day[r] + jnp.maximum(due, 0.0) * rules.every_days[r]
                is_due = (check_time < t1 - tol) & (due < rules.n_checks[r]) & (check_time >= t0 - tol)
                value = values[rules.observable[r]]
                fires = is_due & (rules.sign[r] * (value - rules.threshold[r]) > 0)
                target = rules.target_entry[r]
                current = scale[target]
                updated = jnp.minimum(jnp.maximum(current, 1.0) * rules.factor[r], rules.max_scale[r])
                scale = scale.at[target].set(jnp.where(fires, updated, current))
            return scale

        def step(method, carry, t0, t1, may_split=True):
            y, a1_0, a2_0, scale = carry
            if n_rules:
                scale = apply_rules(y, a2_0, scale, t0, t1)
            scaled = entries._replace(dose_scale=entries.dose_scale * scale)
            h = t1 - t0
            interval = doses.interval_days
            first_index = _doses_before(doses, t0, tol)
            end_index = _doses_before(doses, t1, tol)
            first_offset = doses.start_days + first_index * interval - t0
            # First dose strictly inside (0, h): split the step there.
            inner = jnp.where(first_offset > tol, first_offset, first_offset + interval)
            inner_index = jnp.where(first_offset > tol, first_index, first_index + 1.0)
            valid = (inner_index < end_index) & (inner < h - tol)
            split = jnp.min(jnp.where(valid, inner, h))
            zero = jnp.zeros_like(h)
            at = lambda u, s: pk_at(a1_0, a2_0, scaled, first_index, end_index, first_offset, u, s)  # noqa: E731
            field = lambda z, a2, u: rhs(z, a2, t0 + u, scale)  # noqa: E731

            if not method.always_split:
                after_dose = getattr(method, "split_after_dose", None)
                if after_dose is not None:
                    # A dose of the patient at the step start: split early, where its
                    # absorption transient is fastest.
                    dose_at_start = jnp.any((first_offset <= tol) & (first_index < end_index))
                    split = jnp.where(split < h, split, jnp.where(dose_at_start, after_dose * h, h))

                def stages_of(times):
                    # Stage times are right limits (post-dose) except those at the end of
                    # the part (the last time), which are left limits (pre-dose).
                    strict = list(method.stage_strict)
                    if batched_stages:
                        a1s, a2s = jax.vmap(at)(jnp.stack(times), jnp.asarray(strict))
                        return [a2s[k] for k in range(len(times))], (a1s[-1], a2s[-1])
                    pairs = [at(u, s_) for u, s_ in zip(times, strict)]
                    return [a for _, a in pairs], pairs[-1]

                def one_part(y):
                    stages, end = stages_of(method.stage_times(zero, h))
                    return (method.advance(field, y, zero, h, stages),) + end

                def two_parts(y):
                    # Each patient splits at his own dose; one without a dose in this step
                    # takes it whole (split = h) and a second part of zero length, which
                    # leaves his state unchanged, so his results do not depend on who
                    # shares his batch (beyond the last bit of round-off).
                    first, _ = stages_of(method.stage_times(zero, split))
                    y = method.advance(field, y, zero, split, first)
                    second, end = stages_of(method.stage_times(split, h))
                    return (method.advance(field, y, split, h, second),) + end

                # may_split is the schedule's flag for this step, the same for every
                # patient of the batch (some patient has a dose in it), so only one
                # branch runs.
                y, a1, a2 = jax.lax.cond(may_split, two_parts, one_part, y)
                return (y, a1, a2, scale)

            # No dose inside: split early if a dose sits at the step start (its absorption
            # transient is fastest just after the dose), else at the midpoint.
            dose_at_start = jnp.any((first_offset <= tol) & (first_index < end_index))
            split = jnp.where(split < h, split, jnp.where(dose_at_start, SPLIT_FRACTION * h, 0.5 * h))

            # The two RK4 substeps need the PK at six stage times: 0, split/2, split (pre-dose
            # end of the first substep), split (start of the second), (split+h)/2 and h
            # (pre-dose), the last also for the carry.
            if batched_stages:
                # Small batches: one batched closed-form evaluation of all six; XLA then
                # emits a few kernels for the PK instead of copying the dose-window
                # arithmetic into most kernels of the field (per-kernel overhead dominates
                # when a kernel touches only tens of patients).
                stage_times = jnp.stack([zero, 0.5 * split, split, split, 0.5 * (split + h), h])
                stage_strict = jnp.asarray([False, False, True, False, False, True])
                a1s, a2s = jax.vmap(lambda u, s: pk_at(a1_0, a2_0, scaled, first_index, end_index, first_offset,
                                                       u, s))(stage_times, stage_strict)
                stages = [a2s[k] for k in range(6)]
                a1, a2 = a1s[5], a2s[5]
            else:
                # Large batches: one evaluation per stage time (the batched form's strided
                # layout costs more than it saves once arithmetic dominates).
                a1, a2 = at(h, True)
                stages = [at(zero, False)[1], at(0.5 * split, False)[1], at(split, True)[1],
                          at(split, False)[1], at(0.5 * (split + h), False)[1], a2]

            y = method.advance(field, y, zero, split, stages[:3])
            y = method.advance(field, y, split, h, stages[3:])
            return (y, a1, a2, scale)

        def advance(method, carry, t_start, t_end, n_steps, h, may_split, loop_steps, uniform):
            def boundary(i):
                # One formula for every boundary, so consecutive steps (and intervals) agree.
                return jnp.where(i >= n_steps, t_end, t_start + i.astype(dtype) * h)

            # A static number of steps per interval keeps the loop a scan, which
            # reverse-mode differentiation supports; on a uniform grid every interval takes
            # exactly loop_steps, otherwise steps beyond an interval's n_steps are masked.
            if not method.always_split:
                # The schedule is the same for every patient of the batch, so steps
                # beyond n_steps are skipped, not masked.
                def body(i, c):
                    return jax.lax.cond(i < n_steps, lambda c: step(method, c, boundary(i), boundary(i + 1),
                                                                    may_split[i]), lambda c: c, c)

                return jax.lax.fori_loop(0, loop_steps, body, carry)
            if uniform:
                return jax.lax.fori_loop(0, loop_steps, lambda i, c: step(method, c, boundary(i), boundary(i + 1)),
                                         carry)

            def body(i, c):
                stepped = step(method, c, boundary(i), boundary(i + 1))
                return jax.tree.map(lambda new, old: jnp.where(i < n_steps, new, old), stepped, c)

            return jax.lax.fori_loop(0, loop_steps, body, carry)

        def interval_body(carry, xs):
            g, own_quiet = xs
            t_start, t_end, n_steps, h, may_split = g.interval_start_days, g.interval_end_days, g.n_steps, \
                g.step_days, g.split
            if quiet_method is None:
                carry = advance(method, carry, t_start, t_end, n_steps, h, may_split, max_steps, uniform)
            else:
                def busy(c):
                    return advance(method, c, t_start, t_end, n_steps, h, may_split, max_steps, uniform)

                def calm(c):
                    return advance(quiet_method, c, t_start, t_end, g.quiet_steps, g.quiet_step_days,
                                   jnp.zeros((max_quiet_steps,), bool), max_quiet_steps, False)

                def mixed(c):
                    return _select(own_quiet, calm(c), busy(c))

                # all_quiet and any_quiet are the same for every patient of the batch, so
                # only the methods some patient needs run; each patient's own flag picks
                # his result, which thus does not depend on who shares his batch.
                carry = jax.lax.cond(g.all_quiet, calm, lambda c: jax.lax.cond(g.any_quiet, mixed, busy, c), carry)
            y, a1, a2, scale = carry
            out = observe(y, a2)
            # A patient fails when a state is not finite or leaves the range any valid
            # trajectory stays in (normalised states live near 1; an unstable step, e.g.
            # from an absurd rate parameter, overshoots far outside it).
            finite = (jnp.all(jnp.isfinite(y)) & jnp.all(jnp.isfinite(a2))
                      & jnp.all(y > STATE_LOWER_BOUND) & jnp.all(y < STATE_UPPER_BOUND))
            return carry, (out, finite)

        y0 = hpg.initial_state(dtype)
        zeros = jnp.zeros((len(species),), dtype)
        carry0 = (y0, zeros, zeros, scale0.astype(dtype))
        final, (outputs, finite) = jax.lax.scan(interval_body, carry0, (grid, quiet))
        return outputs, ~jnp.all(finite), final[0]

    return simulate_patient


_SIMULATORS: dict = {}


def population_simulator(precision: str = "float32", species: tuple[int, ...] = pk.ALL_SPECIES,
                         max_steps: int = 1, uniform: bool = False, method: str = DEFAULT_METHOD,
                         max_quiet_steps: int = 1):
    """The jitted population simulator for a precision and step method (built once and cached).

    Args:
        precision: "float32" or "float64".
        method: name of the step method (popsim.solve.methods.METHODS).
        species: static indices of the PK species to simulate; doses of other species
            are ignored and their drugs drop out of the compiled model (a cohort without
            protocol drugs compiles to a smaller, faster program).
        max_steps: static number of steps taken between two output times (the largest
            ``OutputGrid.n_steps``; intervals needing fewer steps mask the rest).
        uniform: True when every interval takes ``max_steps`` or 0 steps (no masking:
            a zero-length interval's steps have zero length and change nothing).
        max_quiet_steps: for a combined method, the static number of steps of its
            quiet-stretch method per output interval (``OutputGrid.quiet``).

    Returns:
        ``fn(params, doses, grid, scale0, rules, quiet=None) -> (outputs, failed, final_state)`` where
        ``params`` is ``{name: (n_patients,)}``, ``doses`` a DoseTable of jnp arrays,
        ``grid`` an OutputGrid, ``scale0`` the ``(n_patients, n_entries)`` initial dose
        scales and ``rules`` a Rules table (``n_rules`` may be 0); ``outputs`` maps each name of OBSERVABLES to ``(n_patients, n_times)``,
        ``failed`` is ``(n_patients,)`` bool (a non-finite or implausible state anywhere), and
        ``final_state`` is ``(n_patients, n_states)``.
    """
    species = tuple(sorted(set(int(s) for s in species)))
    if not species:
        species = (0,)
    max_steps = max(int(max_steps), 1)
    get_method(method)
    max_quiet_steps = max(int(max_quiet_steps), 1)
    cache_key = (precision, species, max_steps, bool(uniform), method, max_quiet_steps)
    if cache_key not in _SIMULATORS:
        dtype = jnp.float32 if precision == "float32" else jnp.float64
        # Two formulations of the stage PK (same formulas, see step()); the batch size is
        # static under jit, so each traced shape picks one (built on first use).
        variants: dict = {}
        column = {s: j for j, s in enumerate(species)}
        lookup = jnp.asarray([column.get(s, -1) for s in range(N_SPECIES)], jnp.int32)

        def run(params, doses, grid, scale0, rules, quiet=None):
            onehot = jax.nn.one_hot(lookup[doses.species], len(species), dtype=dtype) * (doses.n_doses > 0)[..., None]
            d = _Doses(onehot, doses.amount.astype(dtype), doses.start_days.astype(dtype),
                       doses.interval_days.astype(dtype), doses.n_doses)
            g = grid._replace(interval_start_days=grid.interval_start_days.astype(dtype),
                              interval_end_days=grid.interval_end_days.astype(dtype),
                              step_days=grid.step_days.astype(dtype), quiet_step_days=grid.quiet_step_days.astype(dtype))
            if quiet is None:
                quiet = jnp.broadcast_to(grid.all_quiet, (doses.n_doses.shape[0],) + grid.all_quiet.shape)
            r = Rules(rules.observable, rules.sign.astype(dtype), rules.threshold.astype(dtype),
                      rules.first_check_day.astype(dtype), rules.every_days.astype(dtype), rules.n_checks,
                      rules.target_entry, rules.factor.astype(dtype), rules.max_scale.astype(dtype))
            batched = doses.n_doses.shape[0] <= SMALL_BATCH
            if batched not in variants:
                variants[batched] = _make_patient_simulator(dtype, species, max_steps, bool(uniform), batched, method,
                                                            max_quiet_steps)
            one = variants[batched]
            return jax.vmap(one, in_axes=(0, 0, None, 0, 0, 0))(params, d, g, scale0.astype(dtype), r, quiet)

        _SIMULATORS[cache_key] = jax.jit(run)
    return _SIMULATORS[cache_key]
