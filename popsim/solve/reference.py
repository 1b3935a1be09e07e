"""Tight-tolerance reference solution of one patient, for accuracy checks.

Independent of the population integrator where it matters: the PK chains are ordinary
ODE states with doses applied as jumps, and an explicit adaptive 8th-order solver (diffrax
Dopri8, rtol 1e-10, atol 1e-12, float64) integrates between consecutive events and
output times. Requires 64-bit JAX.
"""

from __future__ import annotations

from typing import Mapping

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from popsim.dosing.table import DoseTable
from popsim.model import hpg, pk
from popsim.model.pk import N_SPECIES, SPECIES_INDEX
from popsim.model.state import N_STATES
from popsim.solve.integrator import OBSERVABLES


def _events(doses: DoseTable, row: int):
    """Dose events (time, species, amount) and gonadorelin course switch times of a patient."""
    events = []
    switches = set()
    for j in range(doses.species.shape[1]):
        count = int(doses.n_doses[row, j])
        if count == 0:
            continue
        start, tau = float(doses.start_days[row, j]), float(doses.interval_days[row, j])
        species, amount = int(doses.species[row, j]), float(doses.amount[row, j])
        for k in range(count):
            events.append((start + k * tau, species, amount))
        if species == SPECIES_INDEX["gonadorelin"]:
            switches.update([start, start + count * tau])
    events.sort()
    return events, sorted(switches)


def reference_solution(params: Mapping[str, np.ndarray], doses: DoseTable, times_days,
                       rtol: float = 1e-10, atol: float = 1e-12) -> dict[str, np.ndarray]:
    """Reference outputs of every patient of ``doses`` at ``times_days`` (left limits).

    Patients are solved together (vmapped) over the union of their event and output
    times; each advances independently with its own adaptive steps.

    Args:
        params: ``{name: (n_patients,)}`` parameters.
        doses: DoseTable (NumPy) with ``n_patients`` rows.
        times_days: sorted output times >= 0.
        rtol, atol: tolerances of the adaptive solver.

    Returns:
        ``{observable: (n_patients, n_times)}`` for every name in OBSERVABLES.
    """
    if not jax.config.jax_enable_x64:
        raise ValueError("the reference solver needs 64-bit JAX (JAX_ENABLE_X64=1)")
    n_patients = doses.species.shape[0]
    p_all = {k: jnp.asarray(np.asarray(v, np.float64)) for k, v in params.items()}
    per_patient = [_events(doses, i) for i in range(n_patients)]
    k_plasma = np.asarray(params["k_plasma_gonadorelin_per_day"], float)

    def sustained(i, t):
        total = 0.0
        for j in range(doses.species.shape[1]):
            if doses.n_doses[i, j] == 0 or doses.species[i, j] != SPECIES_INDEX["gonadorelin"]:
                continue
            start, tau, count = doses.start_days[i, j], doses.interval_days[i, j], doses.n_doses[i, j]
            if start <= t < start + count * tau:
                x = k_plasma[i] * tau
                total += doses.amount[i, j] / tau * x * np.exp(-x) / -np.expm1(-x)
        return total

    def field(t, z, args):
        p, g = args
        rates = pk.chain_rates(p)
        c = hpg.patient_constants(p)
        y, a1, a2 = z[:N_STATES], z[N_STATES:N_STATES + N_SPECIES], z[N_STATES + N_SPECIES:]
        dy = hpg.vector_field(y, pk.exposures(a2, rates), g, p, c)
        return jnp.concatenate([dy, -rates.k1_per_day * a1, rates.k1_per_day * a1 - rates.k2_per_day * a2])

    term = diffrax.ODETerm(field)
    solver = diffrax.Dopri8()
    controller = diffrax.PIDController(rtol=rtol, atol=atol)

    def advance_one(z, p, t0, t1, g):
        sol = diffrax.diffeqsolve(term, solver, t0, t1, (t1 - t0) / 8.0, z, args=(p, g),
                                  stepsize_controller=controller, max_steps=100_000)
        return sol.ys[-1]

    advance = jax.jit(jax.vmap(advance_one, in_axes=(0, 0, None, None, 0)))

    def observe_one(z, p):
        rates = pk.chain_rates(p)
        c = hpg.patient_constants(p)
        y, a2 = z[:N_STATES], z[N_STATES + N_SPECIES:]
        out = hpg.observables(y, pk.exposures(a2, rates), p, c)
        return {k: out[k] for k in OBSERVABLES}

    observe = jax.jit(jax.vmap(observe_one))
    bioavailability = np.asarray(jax.vmap(lambda p: pk.chain_rates(p).bioavailability)(p_all))

    times = np.asarray(times_days, float)
    nodes = set(times.tolist()) | {0.0}
    for events, switches in per_patient:
        nodes |= {e[0] for e in events} | set(switches)
    nodes = sorted(t for t in nodes if 0.0 <= t <= times[-1])
    z = jnp.concatenate([jnp.ones((n_patients, N_STATES)), jnp.zeros((n_patients, 2 * N_SPECIES))], axis=1)
    results = {k: np.full((n_patients, times.size), np.nan) for k in OBSERVABLES}
    next_event = [0] * n_patients
    for a, b in zip(nodes, nodes[1:] + [None]):
        hit = np.flatnonzero(times == a)
        if hit.size:  # outputs are left limits: record before the events at a
            for k, v in observe(z, p_all).items():
                results[k][:, hit] = np.asarray(v)[:, None]
        jumps = np.zeros((n_patients, 2 * N_SPECIES))
        for i, (events, _) in enumerate(per_patient):
            while next_event[i] < len(events) and events[next_event[i]][0] <= a:
                _, species, amount = events[next_event[i]]
                jumps[i, species] += amount * bioavailability[i, species]
                next_event[i] += 1
        z = z.at[:, N_STATES:].add(jnp.asarray(jumps))
        if b is None:
            break
        g = jnp.asarray([sustained(i, 0.5 * (a + b)) for i in range(n_patients)])
        z = advance(z, p_all, a, b, g)
    return results
