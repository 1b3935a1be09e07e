#!/usr/bin/env python
"""Small-batch gradient latency: the NUTS regime.

One gradient of a log-density through ``popsim.solve.integrator.population_simulator``
(the function calibration differentiates), jitted, compile time excluded:

* 40 patients (``popsim.default_parameters``), enanthate 200 mg every 7 d for 2 years
  then 1 year off (3 years), monthly outputs (every 30.4375 d);
* log-density: the sum over patients and output times of log total T, log LH and log
  sperm concentration (floored at 1e-3);
* parameters: per-patient log-multipliers of 4 parameters (k_reserve_recovery_per_day,
  lh_base_iu_l, sperm_base_m_ml, t_base_nmol_l), i.e. a (40, 4) array;
* reverse mode (``jax.value_and_grad``); for comparison forward mode (4 tangents, one per
  parameter for every patient at once: patients are independent), batched forward
  differences (calibration's ``inference.gradient=finite_difference``: the cohort and 4
  perturbed copies of it in one simulator call), and the forward log-density alone.

Target (issue #5): one gradient <= 50 ms on CPU. The ratio to the target is reported.

    python benchmarks/bench_gradient.py                 # dt 1/6 (default step) and 1/2
    python benchmarks/bench_gradient.py --dt 1/6 --patients 40 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from fractions import Fraction

TARGET_MS = 50.0
PARAMETERS = ("k_reserve_recovery_per_day", "lh_base_iu_l", "sperm_base_m_ml", "t_base_nmol_l")
OBSERVED = ("total_testosterone_nmol_l", "lh_iu_l", "sperm_concentration_m_ml")
TRT_DAYS, HORIZON_DAYS, OUTPUT_STEP_DAYS = 730.0, 3 * 365.25, 30.4375


def _clock(fn, *args, repeats: int):
    """(median wall s, median CPU s) of ``repeats`` calls of ``fn`` (results pulled to host)."""
    import jax

    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        jax.block_until_ready(fn(*args))
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), walls


def measure(dt_days: float, n_patients: int = 40, repeats: int = 3, forward_mode: bool = True,
            method: str | None = None) -> dict:
    """Time the forward log-density, its reverse-mode gradient and (optionally) its
    forward-mode gradient at step ``dt_days`` (float32)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import popsim
    from popsim.calibration.problem import FINITE_DIFFERENCE_STEP, with_finite_difference_derivative
    from popsim.dosing.table import compile_regimens
    from popsim.model.parameters import default_parameters
    from popsim.solve.integrator import OutputGrid, Rules, population_simulator
    from popsim.solve.schedule import field_evaluations, plan_schedule

    n = int(n_patients)
    course = popsim.TRTCourse("enanthate", 200.0, "mg", 7.0, TRT_DAYS, 0.0)
    table = compile_regimens([popsim.Regimen(trt=(course,)) for _ in range(n)], 1)
    times = np.arange(0.0, HORIZON_DAYS, OUTPUT_STEP_DAYS)
    settings = popsim.SolverSettings(dt_days=dt_days, method=method or popsim.SolverSettings.method)
    schedule = plan_schedule(times, settings, table, 0.0, default_parameters(n))
    plan = schedule.grid
    species = tuple(np.unique(table.species[table.n_doses > 0]).tolist())
    sim = population_simulator("float32", species, schedule.max_steps, uniform=schedule.uniform,
                               method=settings.method, max_quiet_steps=schedule.max_quiet_steps)
    quiet = jnp.asarray(schedule.patient_quiet)
    params = {k: jnp.asarray(v, jnp.float32) for k, v in default_parameters(n).items()}
    z, zi = np.zeros((n, 0)), np.zeros((n, 0), np.int32)
    rules = Rules(zi, z, z, z, z, zi, zi, z, z)
    doses = jax.tree.map(jnp.asarray, table)
    grid = OutputGrid(*map(jnp.asarray, plan))
    scale0 = jnp.ones(table.species.shape, jnp.float32)

    def multiplied(theta):
        # (n, 4) parameter multipliers -> (flat outputs (3 n T,), failed (n,)).
        p = dict(params)
        for j, name in enumerate(PARAMETERS):
            p[name] = params[name] * theta[:, j]
        out, failed, _ = sim(p, doses, grid, scale0, rules, quiet)
        return jnp.stack([out[k] for k in OBSERVED]).ravel(), failed

    def outputs(eta):
        return multiplied(jnp.exp(eta))[0].reshape(len(OBSERVED), n, times.size)

    def log_density(eta):
        return jnp.sum(jnp.log(jnp.maximum(outputs(eta), 1e-3)))

    # The same simulation with calibration's batched finite-difference derivative.
    output_patient = jnp.broadcast_to(jnp.arange(n)[None, :, None], (len(OBSERVED), n, times.size)).ravel()
    multiplied_fd = with_finite_difference_derivative(multiplied, output_patient, n, len(PARAMETERS),
                                                      FINITE_DIFFERENCE_STEP["float32"], jnp.float32)

    def log_density_fd(eta):
        return jnp.sum(jnp.log(jnp.maximum(multiplied_fd(jnp.exp(eta))[0], 1e-3)))

    basis = jnp.stack([jnp.zeros((n, len(PARAMETERS)), jnp.float32).at[:, j].set(1.0)
                       for j in range(len(PARAMETERS))])

    def forward_gradient(eta):
        # One tangent per parameter, set for every patient: patient i's outputs depend only
        # on patient i's parameters, so 4 tangents give the whole (40, 4) gradient.
        o, t = jax.vmap(lambda v: jax.jvp(outputs, (eta,), (v,)), out_axes=(None, 0))(basis)
        weight = jnp.where(o > 1e-3, 1.0 / jnp.maximum(o, 1e-3), 0.0)
        return jnp.sum(jnp.log(jnp.maximum(o, 1e-3))), jnp.einsum("kbpt,bpt->pk", t, weight)

    eta = jnp.zeros((n, len(PARAMETERS)), jnp.float32)
    result = {"dt_days": dt_days, "method": settings.method,
              "field_evaluations_per_patient_year": field_evaluations(plan, settings.method) / (HORIZON_DAYS / 365.25),
              "n_patients": n, "years": HORIZON_DAYS / 365.25, "trt_days": TRT_DAYS,
              "output_step_days": OUTPUT_STEP_DAYS, "n_outputs": int(times.size), "parameters": list(PARAMETERS),
              "observed": list(OBSERVED), "precision": "float32", "steps_per_patient": int(plan.n_steps.sum()),
              "target_ms": TARGET_MS, "devices": [d.device_kind for d in jax.devices()]}

    forward = jax.jit(log_density)
    start = time.perf_counter()
    jax.block_until_ready(forward(eta))
    first = time.perf_counter() - start
    wall, cpu, _ = _clock(forward, eta, repeats=max(repeats, 3))
    result.update(forward_ms=1e3 * wall, forward_cpu_ms=1e3 * cpu, forward_compile_s=max(first - wall, 0.0),
                  forward_ns_per_patient_step=1e9 * wall / (n * result["steps_per_patient"]))

    reverse = jax.jit(jax.value_and_grad(log_density))
    start = time.perf_counter()
    value, grad = jax.block_until_ready(reverse(eta))
    first = time.perf_counter() - start
    wall, cpu, walls = _clock(reverse, eta + 0.01, repeats=repeats)
    result.update(gradient_ms=1e3 * wall, gradient_cpu_ms=1e3 * cpu, gradient_runs_ms=[1e3 * w for w in walls],
                  gradient_compile_s=max(first - wall, 0.0), gradient_over_forward=wall / (result["forward_ms"] / 1e3),
                  gradient_over_target=1e3 * wall / TARGET_MS, log_density=float(value),
                  gradient_sum_per_parameter=[float(x) for x in np.asarray(grad).sum(axis=0)])
    fd = jax.jit(jax.value_and_grad(log_density_fd))
    start = time.perf_counter()
    _, grad_fd = jax.block_until_ready(fd(eta))
    first = time.perf_counter() - start
    wall, cpu, _ = _clock(fd, eta + 0.01, repeats=repeats)
    scale = np.abs(np.asarray(grad)).max()
    result.update(finite_difference_ms=1e3 * wall, finite_difference_cpu_ms=1e3 * cpu,
                  finite_difference_compile_s=max(first - wall, 0.0),
                  reverse_over_finite_difference=result["gradient_ms"] / (1e3 * wall),
                  finite_difference_vs_reverse_max_rel_diff=float(np.max(np.abs(np.asarray(grad_fd) - np.asarray(grad)))
                                                                  / scale))
    if forward_mode:
        fwd = jax.jit(forward_gradient)
        start = time.perf_counter()
        _, grad_f = jax.block_until_ready(fwd(eta))
        first = time.perf_counter() - start
        wall, cpu, _ = _clock(fwd, eta + 0.01, repeats=repeats)
        scale = np.maximum(np.abs(np.asarray(grad)), 1e-3 * np.abs(np.asarray(grad)).max())
        result.update(forward_mode_ms=1e3 * wall, forward_mode_cpu_ms=1e3 * cpu,
                      forward_mode_compile_s=max(first - wall, 0.0),
                      forward_vs_reverse_max_rel_diff=float(np.max(np.abs(np.asarray(grad_f) - np.asarray(grad)) / scale)))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dt", action="append", help="step in days, e.g. 1/6 (repeatable; default 1/6 and 1/2)")
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-forward-mode", action="store_true")
    parser.add_argument("--method", action="append", help="step method (repeatable; default: the default method)")
    args = parser.parse_args(argv)
    for method in args.method or [None]:
        for text in args.dt or ["1/6", "1/2"]:
            r = measure(float(Fraction(text)), args.patients, args.repeats, not args.no_forward_mode, method)
            print(json.dumps(r))
            print(f"{r['method']} dt {text}: gradient {r['gradient_ms']:.0f} ms ({r['gradient_over_target']:.1f}x the "
                  f"{TARGET_MS:.0f} ms target), finite differences {r['finite_difference_ms']:.0f} ms, forward "
                  f"{r['forward_ms']:.0f} ms, forward mode "
                  f"{r.get('forward_mode_ms', float('nan')):.0f} ms, "
                  f"{r['field_evaluations_per_patient_year']:.0f} field evaluations per patient-year", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
