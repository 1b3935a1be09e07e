"""The diffrax peer: popsim's equations (popsim.model.hpg.vector_field, popsim.model.pk) with
the PK chains as ODE states and doses as jumps (as popsim.solve.reference does), solved by an
adaptive explicit solver (Tsit5 + PIDController) vmapped over patients in lockstep.

The segments are common to the cohort: the union of every patient's dose times and the
daily output times (what a user vmapping diffrax over a cohort does: one ``diffeqsolve``
per segment, every patient restarting at every node). The node loop runs inside one jitted
program (``lax.scan`` over output intervals, ``fori_loop`` over the nodes inside each);
``rtol``/``atol`` are traced arguments, so the tolerance search does not recompile.
"""

from __future__ import annotations

import numpy as np


def common_nodes(doses, times: np.ndarray, tol: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """Dose times of every patient grouped by output interval.

    Returns:
        ``(nodes, valid)`` of shape ``(n_times - 1, m)``: the sorted node times inside
        ``[times[i], times[i + 1])`` (the first is ``times[i]``), padded to the widest
        interval; ``valid`` marks real nodes.
    """
    dose_times = []
    for j in range(doses.species.shape[1]):
        for start, tau, count in zip(doses.start_days[:, j], doses.interval_days[:, j], doses.n_doses[:, j]):
            if count > 0:
                dose_times.append(start + tau * np.arange(count))
    all_times = np.concatenate(dose_times + [np.asarray(times, float)])
    all_times = np.unique(np.round(all_times[(all_times >= times[0]) & (all_times < times[-1])] / tol) * tol)
    which = np.searchsorted(times, all_times + tol, side="right") - 1
    counts = np.bincount(which, minlength=times.size - 1)[: times.size - 1]
    width = int(counts.max())
    nodes = np.repeat(np.asarray(times[1:], float)[:, None], width, axis=1)
    valid = np.zeros(nodes.shape, bool)
    position = np.arange(all_times.size) - np.concatenate([[0], np.cumsum(counts)])[which]
    nodes[which, position] = all_times
    valid[which, position] = True
    return nodes, valid


def make_diffrax_runner(species: tuple[int, ...], precision: str = "float64", max_steps: int = 4096):
    """A runner (see ``Runner``) of the jitted lockstep program."""
    import diffrax
    import jax
    import jax.numpy as jnp

    from popsim.model import hpg, pk
    from popsim.model.state import N_STATES

    dtype = jnp.float64 if precision == "float64" else jnp.float32
    ns = len(species)
    column = {s: j for j, s in enumerate(species)}
    lookup = np.asarray([column.get(s, 0) for s in range(pk.N_SPECIES)], np.int32)

    def field(t, z, args):
        p, c, rates = args
        y, a1, a2 = z[:N_STATES], z[N_STATES:N_STATES + ns], z[N_STATES + ns:]
        dy = hpg.vector_field(y, pk.exposures(a2, rates, species), None, p, c)
        return jnp.concatenate([dy, -rates.k1_per_day * a1, rates.k1_per_day * a1 - rates.k2_per_day * a2])

    term = diffrax.ODETerm(field)
    solver = diffrax.Tsit5()

    def segment(z, args, t0, t1, rtol, atol):
        controller = diffrax.PIDController(rtol=rtol, atol=atol)
        sol = diffrax.diffeqsolve(term, solver, t0, t1, t1 - t0, z, args=args, stepsize_controller=controller,
                                  saveat=diffrax.SaveAt(t1=True), max_steps=max_steps)
        return sol.ys[-1], sol.stats["num_accepted_steps"] + sol.stats["num_rejected_steps"]

    def observe(z, args):
        p, c, rates = args
        y, a2 = z[:N_STATES], z[N_STATES + ns:]
        h = hpg.hormones(y, pk.exposures(a2, rates, species), p, c)
        return jnp.stack([h["total_testosterone_nmol_l"], h["lh_iu_l"], h["fsh_iu_l"], h["sperm_concentration_m_ml"]])

    def jumps(z, dose, t):
        onehot, scaled_amount, start, interval, count = dose
        k = jnp.round((t - start) / interval)
        hit = (k >= 0) & (k < count) & (jnp.abs(start + k * interval - t) < 1e-6)
        add = jnp.sum(onehot * jnp.where(hit, scaled_amount, 0.0)[:, None], axis=0)
        return z.at[N_STATES:N_STATES + ns].add(add)

    segment_v = jax.vmap(segment, in_axes=(0, 0, None, None, None, None))
    observe_v = jax.vmap(observe)
    jumps_v = jax.vmap(jumps, in_axes=(0, 0, None))

    @jax.jit
    def program(params, species_idx, amount, start, interval, count, nodes, valid, t_next, rtol, atol):
        p = {k: v.astype(dtype) for k, v in params.items()}
        args = jax.vmap(lambda q: (q, hpg.patient_constants(q), pk.select(pk.chain_rates(q), species)))(p)
        rates = args[2]
        onehot = jax.nn.one_hot(jnp.asarray(lookup)[species_idx], ns, dtype=dtype) * (count > 0)[..., None]
        bio = jnp.einsum("pes,ps->pe", onehot, rates.bioavailability)
        dose = (onehot, (amount * bio).astype(dtype), start.astype(dtype), interval.astype(dtype),
                count.astype(dtype))
        n = species_idx.shape[0]
        z0 = jnp.concatenate([jnp.ones((n, N_STATES), dtype), jnp.zeros((n, 2 * ns), dtype)], axis=1)
        m = nodes.shape[1]

        def interval_body(carry, xs):
            z, steps = carry
            nd, vd, tn = xs

            def inner(k, state):
                def go(state):
                    z, steps = state
                    a = nd[k]
                    b = jnp.where((k + 1 < m) & vd[jnp.minimum(k + 1, m - 1)], nd[jnp.minimum(k + 1, m - 1)], tn)
                    z = jumps_v(z, dose, a)
                    z, s = segment_v(z, args, a, b, rtol, atol)
                    return z, steps + s
                return jax.lax.cond(vd[k], go, lambda s: s, state)

            z, steps = jax.lax.fori_loop(0, m, inner, (z, steps))
            return (z, steps), observe_v(z, args).astype(jnp.float32 if dtype == jnp.float32 else jnp.float64)

        (_, steps), obs = jax.lax.scan(interval_body, (z0, jnp.zeros(n, jnp.int32)),
                                       (nodes.astype(dtype), valid, t_next.astype(dtype)))
        first = observe_v(z0, args)[None].astype(obs.dtype)
        return jnp.concatenate([first, obs], axis=0), steps

    class Runner:
        """``runner(params, doses, times, rtol, atol) -> (outputs (n, n_times, 4), steps (n,),
        node width, node count)``; ``runner.compile(params, doses, times)`` compiles ahead of
        time (so compile time is measured exactly) for those shapes."""

        def __init__(self):
            self.compiled = {}

        @staticmethod
        def _args(params, doses, times, rtol, atol):
            nodes, valid = common_nodes(doses, times)
            args = ({k: jnp.asarray(v) for k, v in params.items()}, jnp.asarray(doses.species),
                    jnp.asarray(doses.amount), jnp.asarray(doses.start_days), jnp.asarray(doses.interval_days),
                    jnp.asarray(doses.n_doses), jnp.asarray(nodes), jnp.asarray(valid),
                    jnp.asarray(np.asarray(times[1:], float)), jnp.asarray(rtol, dtype), jnp.asarray(atol, dtype))
            return args, nodes, valid

        def compile(self, params, doses, times):
            args, nodes, _ = self._args(params, doses, times, 1e-6, 1e-9)
            key = (nodes.shape, args[1].shape)
            self.compiled[key] = program.lower(*args).compile()

        def __call__(self, params, doses, times, rtol, atol):
            args, nodes, valid = self._args(params, doses, times, rtol, atol)
            fn = self.compiled.get((nodes.shape, args[1].shape), program)
            out, steps = fn(*args)
            out = np.asarray(out)
            return np.transpose(out, (1, 0, 2)), np.asarray(steps), int(nodes.shape[1]), int(valid.sum())

    return Runner()
