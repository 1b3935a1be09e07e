#!/usr/bin/env python
"""Cost of one gradient of the calibration log-density, and what it means for NUTS.

The potential (negative log posterior) of ``popsim.calibration.model`` on a lab data set
(default: the shipped synthetic example, 16 men, 1228 observations) is differentiated
with ``jax.value_and_grad`` at the model's initial point, jitted; compile time is
reported separately. A NUTS run costs about (warm-up + draws) x leapfrog steps per draw
gradients per chain; the projection uses the given leapfrog count.

    python benchmarks/bench_calibration.py                      # dt 0.25 (default) and 0.5
    python benchmarks/bench_calibration.py --dt 0.25 --data clinic.csv --leapfrogs 15
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from fractions import Fraction


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dt", action="append", help="likelihood step in days (repeatable; default 0.25 and 0.5)")
    parser.add_argument("--data", default=None, help="lab data CSV (default: the shipped synthetic example)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--leapfrogs", type=int, default=15, help="leapfrog steps per NUTS iteration for the projection")
    parser.add_argument("--iterations", type=int, default=300, help="warm-up + draws per chain for the projection")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)

    import jax
    from numpyro.infer.util import initialize_model

    from popsim.calibration.data import read_lab_data
    from popsim.calibration.model import make_model
    from popsim.calibration.problem import build_problem, make_predictor
    from popsim.calibration.spec import CalibrationSpec
    from popsim.calibration.synthetic import EXAMPLE_CSV

    data = read_lab_data(args.data or EXAMPLE_CSV)
    results = {"host": platform.node(), "processor": platform.processor() or platform.machine(),
               "devices": [str(d) for d in jax.devices()], "data": str(args.data or EXAMPLE_CSV.name), "runs": []}
    for dt_text in args.dt or ["0.25", "0.5"]:
        dt = float(Fraction(dt_text))
        spec = CalibrationSpec(dt_days=dt)
        problem = build_problem(data, spec)
        model = make_model(problem, spec, make_predictor(problem, spec))
        info = initialize_model(jax.random.PRNGKey(0), model)
        gradient = jax.jit(jax.value_and_grad(info.potential_fn))
        t0 = time.perf_counter()
        jax.block_until_ready(gradient(info.param_info.z))
        compile_s = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(gradient(info.param_info.z))
            times.append(time.perf_counter() - t0)
        seconds = statistics.median(times)
        run = {"dt_days": dt, "patients": problem.n_patients, "observations": problem.n_observations,
               "simulated_days": float(problem.grid_days[-1] - problem.grid_days[0]),
               "gradient_ms": round(1000 * seconds, 1), "compile_s": round(compile_s, 1),
               "projected_nuts_minutes_per_chain": round(seconds * args.leapfrogs * args.iterations / 60, 1)}
        results["runs"].append(run)
        print(f"dt {dt:g} d: {problem.n_patients} men, {problem.n_observations} observations: gradient "
              f"{run['gradient_ms']:.0f} ms (compile {compile_s:.0f} s); NUTS with {args.iterations} iterations x "
              f"{args.leapfrogs} leapfrogs ~ {run['projected_nuts_minutes_per_chain']:.0f} min per chain", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
