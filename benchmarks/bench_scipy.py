"""The scipy peer: what a user writes by hand. One patient at a time, ``solve_ivp(method=
"LSODA")`` between consecutive dose events of that patient (PK chains as ODE states, doses as
jumps, as popsim.solve.reference does), daily outputs through ``t_eval``.

Two right-hand sides are offered, and the faster one (measured per call at start-up) is used:
``python``: the scalar port of popsim's model (bench_port.make_port without a JIT), run by
the interpreter on Python floats; ``jax``: popsim's own ``hpg.vector_field`` and ``pk``
jitted with JAX (float64) and called once per right-hand-side evaluation.
"""

from __future__ import annotations

import time

import numpy as np

from bench_port import N_CONSTANTS, N_STATES, chain_rates, make_port, parameter_matrix, species_tables
from popsim.model.pk import EXPOSURE_NAMES


def _events(doses, row: int, species) -> tuple[list[float], list[list[tuple[int, float]]]]:
    """Sorted dose times of one patient and, per time, the (species column, amount) jumps
    (amount before bioavailability)."""
    column = {s: j for j, s in enumerate(species)}
    by_time: dict[float, list[tuple[int, float]]] = {}
    for j in range(doses.species.shape[1]):
        count = int(doses.n_doses[row, j])
        if count <= 0:
            continue
        start, tau = float(doses.start_days[row, j]), float(doses.interval_days[row, j])
        for k in range(count):
            t = round(start + k * tau, 9)
            by_time.setdefault(t, []).append((column[int(doses.species[row, j])], float(doses.amount[row, j])))
    times = sorted(by_time)
    return times, [by_time[t] for t in times]


class ScipyPeer:
    """Per-patient LSODA with a chosen right-hand side ("python" or "jax")."""

    def __init__(self, params: dict, doses, species, rhs: str = "auto"):
        from scipy.integrate import solve_ivp

        self.solve_ivp = solve_ivp
        self.params, self.doses, self.species = params, doses, tuple(species)
        self.pmat = parameter_matrix(params)
        self.k1, self.k2, self.f, self.v = chain_rates(params, species)
        self.kinds, self.index = species_tables(species)
        self.port = make_port(lambda fn: fn)
        self.ns = len(species)
        self.n = N_STATES + 2 * self.ns
        self._jax_field = None
        self.rhs_timings = self._time_rhs()
        if rhs == "auto":
            rhs = min(self.rhs_timings, key=self.rhs_timings.get)
        self.rhs = rhs

    # -- right-hand sides
    def _python_rhs(self, i: int):
        port = self.port
        p = self.pmat[i].tolist()
        c = [0.0] * N_CONSTANTS
        port["patient_constants"](p, c)
        k1, k2, v = self.k1[i].tolist(), self.k2[i].tolist(), self.v[i].tolist()
        kinds, index = self.kinds.tolist(), self.index.tolist()
        full_rhs, n = port["full_rhs"], self.n
        ex = [0.0] * len(EXPOSURE_NAMES)

        def fun(t, z):
            dz = [0.0] * n
            full_rhs(z.tolist(), p, c, k1, k2, v, kinds, index, ex, dz)
            return np.array(dz)

        def observe(z):
            row = [0.0] * 4
            port["observe"](z.tolist(), p, c, k2, v, kinds, index, ex, row)
            return row

        return fun, observe

    def _jax_rhs(self, i: int):
        import jax
        import jax.numpy as jnp

        from popsim.model import hpg, pk
        from popsim.model.parameters import PARAMETER_NAMES

        species, ns = self.species, self.ns
        if self._jax_field is None:
            def unpack(pvec):
                p = {name: pvec[k] for k, name in enumerate(PARAMETER_NAMES)}
                return p, hpg.patient_constants(p), pk.select(pk.chain_rates(p), species)

            @jax.jit
            def field(z, pvec):
                p, c, rates = unpack(pvec)
                y, a1, a2 = z[:N_STATES], z[N_STATES:N_STATES + ns], z[N_STATES + ns:]
                dy = hpg.vector_field(y, pk.exposures(a2, rates, species), None, p, c)
                return jnp.concatenate([dy, -rates.k1_per_day * a1, rates.k1_per_day * a1 - rates.k2_per_day * a2])

            @jax.jit
            def obs(z, pvec):
                p, c, rates = unpack(pvec)
                h = hpg.hormones(z[:N_STATES], pk.exposures(z[N_STATES + ns:], rates, species), p, c)
                return jnp.stack([h["total_testosterone_nmol_l"], h["lh_iu_l"], h["fsh_iu_l"],
                                  h["sperm_concentration_m_ml"]])

            self._jax_field = (field, obs)
        field, obs = self._jax_field
        pvec = jnp.asarray(self.pmat[i])

        def fun(t, z):
            return np.asarray(field(z, pvec))

        def observe(z):
            return np.asarray(obs(z, pvec)).tolist()

        return fun, observe

    def _time_rhs(self, calls: int = 300) -> dict[str, float]:
        """Seconds per right-hand-side call of each option (after a warm-up)."""
        z = np.concatenate([np.ones(N_STATES), np.full(2 * self.ns, 10.0)])
        out = {}
        for name, make in (("python", self._python_rhs), ("jax", self._jax_rhs)):
            try:
                fun, _ = make(0)
                fun(0.0, z)
                start = time.perf_counter()
                for _ in range(calls):
                    fun(0.0, z)
                out[name] = (time.perf_counter() - start) / calls
            except Exception as exc:  # noqa: BLE001 - a missing option is reported, not fatal
                out[name] = float("inf")
                print(f"scipy peer: right-hand side '{name}' unavailable: {exc}")
        return out

    # -- solving
    def solve_patient(self, i: int, times: np.ndarray, rtol: float, atol: float) -> tuple[np.ndarray, int]:
        """Outputs ``(n_times, 4)`` (left limits) and RHS evaluations of patient ``i``."""
        fun, observe = (self._python_rhs if self.rhs == "python" else self._jax_rhs)(i)
        event_times, jumps = _events(self.doses, i, self.species)
        f = self.f[i]
        z = np.concatenate([np.ones(N_STATES), np.zeros(2 * self.ns)])
        out = np.full((times.size, 4), np.nan)
        out[0] = observe(z)
        t_end = float(times[-1])
        bounds = [t for t in event_times if 0.0 < t < t_end]
        starts = [0.0] + bounds
        ends = bounds + [t_end]
        next_event = 0
        nfev = 0
        for a, b in zip(starts, ends):
            while next_event < len(event_times) and event_times[next_event] <= a + 1e-9:
                for column, amount in jumps[next_event]:
                    z[N_STATES + column] += amount * f[column]
                next_event += 1
            lo = np.searchsorted(times, a + 1e-9, side="left")
            hi = np.searchsorted(times, b + 1e-9, side="left")
            t_eval = times[lo:hi]
            if t_eval.size == 0 or t_eval[-1] < b - 1e-12:
                t_eval = np.append(t_eval, b)
            sol = self.solve_ivp(fun, (a, b), z, method="LSODA", t_eval=t_eval, rtol=rtol, atol=atol)
            if sol.status < 0:
                return out, nfev
            nfev += sol.nfev
            for k in range(lo, hi):
                out[k] = observe(sol.y[:, k - lo])
            z = sol.y[:, -1].copy()
        return out, nfev
