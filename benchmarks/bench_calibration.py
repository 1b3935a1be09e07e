#!/usr/bin/env python
"""Cost of one gradient of the calibration log-density, and what it means for NUTS.

The potential (negative log posterior) of ``popsim.calibration.model`` on a lab data set
(default: the shipped synthetic example, 16 men, 1228 observations) is differentiated
with ``jax.value_and_grad`` at the model's initial point, jitted, once per gradient method
(``inference.gradient``: exact reverse mode and batched forward differences, timed
alternately in one process so that their ratio is fair on a noisy machine); the log
density alone is timed too. Compile time is reported separately. A NUTS run costs about
(warm-up + draws) x leapfrog steps per draw gradients per chain; the projection uses the
given leapfrog count.

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
    from numpyro.infer import init_to_median
    from numpyro.infer.util import initialize_model

    from popsim.calibration.data import read_lab_data
    from popsim.calibration.inference import GRADIENTS
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
        functions, compile_s = {}, {}
        z = None
        for method in ("value", *GRADIENTS):
            model = make_model(problem, spec, make_predictor(problem, spec, "reverse" if method == "value" else method))
            info = initialize_model(jax.random.PRNGKey(0), model, init_strategy=init_to_median(num_samples=15))
            z = info.param_info.z if z is None else z  # one point for every method
            functions[method] = jax.jit(info.potential_fn if method == "value" else jax.value_and_grad(info.potential_fn))
            t0 = time.perf_counter()
            jax.block_until_ready(functions[method](z))
            compile_s[method] = time.perf_counter() - t0
        times = {method: [] for method in functions}
        for _ in range(args.repeats):
            for method, fn in functions.items():  # alternated: the load affects every method alike
                t0 = time.perf_counter()
                jax.block_until_ready(fn(z))
                times[method].append(time.perf_counter() - t0)
        ms = {method: 1000 * statistics.median(t) for method, t in times.items()}
        run = {"dt_days": dt, "patients": problem.n_patients, "observations": problem.n_observations,
               "simulated_days": float(problem.grid_days[-1] - problem.grid_days[0]),
               "log_density_ms": round(ms["value"], 1),
               "gradient_ms": {method: round(ms[method], 1) for method in GRADIENTS},
               "reverse_over_finite_difference": round(ms["reverse"] / ms["finite_difference"], 2),
               "compile_s": {method: round(seconds - ms[method] / 1000, 1) for method, seconds in compile_s.items()},
               "projected_nuts_minutes_per_chain": {
                   method: round(ms[method] / 1000 * args.leapfrogs * args.iterations / 60, 1) for method in GRADIENTS}}
        results["runs"].append(run)
        print(f"dt {dt:g} d: {problem.n_patients} men, {problem.n_observations} observations: log density "
              f"{ms['value']:.0f} ms; gradient {ms['reverse']:.0f} ms reverse mode, {ms['finite_difference']:.0f} ms "
              f"finite differences ({run['reverse_over_finite_difference']:.2f}x); NUTS with {args.iterations} "
              f"iterations x {args.leapfrogs} leapfrogs ~ {run['projected_nuts_minutes_per_chain']['reverse']:.0f} / "
              f"{run['projected_nuts_minutes_per_chain']['finite_difference']:.0f} min per chain", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
