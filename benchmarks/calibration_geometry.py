#!/usr/bin/env python
"""Why NUTS needs long trajectories on a calibration posterior: its Hessian at the mode.

Finds the posterior mode of ``popsim.calibration.model`` on a lab data set (default: the
shipped synthetic example) in numpyro's unconstrained space (the calibration's own Adam
MAP start, then L-BFGS), takes the Hessian there by central differences of the gradient
(as ``inference.mass_matrix=laplace``), and reports its spectrum: the condition number
with an identity metric, after the best diagonal metric (unit marginal variances), and
the parameters that make up the stiffest and flattest directions. NUTS's step size is
limited by the stiffest direction and its trajectory must cross the flattest one, so the
leapfrog steps per draw grow roughly like the square root of the condition number.

    python benchmarks/calibration_geometry.py                          # ~20 min on 2 cores
    python benchmarks/calibration_geometry.py --parameterization centred --out geometry.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="lab data CSV (default: the shipped synthetic example)")
    parser.add_argument("--parameterization", default="non_centred", choices=["non_centred", "centred"])
    parser.add_argument("--dt", type=float, default=0.25, help="likelihood step, days")
    parser.add_argument("--adam-steps", type=int, default=200, help="Adam steps of the MAP start")
    parser.add_argument("--lbfgs-iterations", type=int, default=150)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import numpy as np
    import scipy.optimize
    from jax.flatten_util import ravel_pytree
    from numpyro.infer.util import init_to_value, initialize_model

    from popsim.calibration.data import read_lab_data
    from popsim.calibration.inference import InferenceSettings, map_start, finite_difference_hessian
    from popsim.calibration.model import make_model
    from popsim.calibration.problem import build_problem, make_predictor
    from popsim.calibration.spec import CalibrationSpec
    from popsim.calibration.synthetic import EXAMPLE_CSV

    t_start = time.perf_counter()
    data = read_lab_data(args.data or EXAMPLE_CSV)
    spec = CalibrationSpec(dt_days=args.dt, parameterization=args.parameterization)
    problem = build_problem(data, spec)
    model = make_model(problem, spec, make_predictor(problem, spec))
    settings = InferenceSettings(init_steps=args.adam_steps, progress_bar=False)
    start, losses, _ = map_start(model, settings, jax.random.PRNGKey(0))
    info = initialize_model(jax.random.PRNGKey(0), model, init_strategy=init_to_value(values=start))
    flat, unravel = ravel_pytree(info.param_info.z)
    value_and_grad = jax.jit(jax.value_and_grad(lambda x: info.potential_fn(unravel(x))))
    names = [f"{site}[{j}]" if np.size(v) > 1 else site
             for site, v in info.param_info.z.items() for j in range(int(np.size(v)))]

    def potential(x):
        value, gradient = value_and_grad(jnp.asarray(x, flat.dtype))
        return float(value), np.asarray(gradient, np.float64)

    mode = scipy.optimize.minimize(potential, np.asarray(flat, np.float64), jac=True, method="L-BFGS-B",
                                   options={"maxiter": args.lbfgs_iterations})
    # The same central differences as inference.mass_matrix=laplace.
    hessian = finite_difference_hessian(lambda x: potential(x)[1], mode.x)
    d = hessian.shape[0]
    curvature = np.linalg.eigvalsh(hessian)
    results = {"host": platform.node(), "processor": platform.processor() or platform.machine(),
               "data": str(args.data or EXAMPLE_CSV.name), "parameterization": args.parameterization,
               "dt_days": args.dt, "dimension": int(d), "patients": problem.n_patients,
               "adam_final_potential": float(losses[-1]), "mode_potential": float(mode.fun),
               "mode_max_abs_gradient": float(np.abs(mode.jac).max()), "lbfgs_iterations": int(mode.nit),
               "identity_metric": {"min_curvature": float(curvature[0]), "max_curvature": float(curvature[-1])}}
    if curvature[0] > 0:
        results["identity_metric"]["condition_number"] = float(curvature[-1] / curvature[0])
        marginal_sd = np.sqrt(np.diag(np.linalg.inv(hessian)))
        scaled = hessian * np.outer(marginal_sd, marginal_sd)  # the best diagonal metric
        values, vectors = np.linalg.eigh(scaled)

        def direction(k):
            order = np.argsort(-np.abs(vectors[:, k]))[:6]
            return {"eigenvalue": float(values[k]), "loadings": {names[i]: round(float(vectors[i, k]), 3) for i in order}}

        results["diagonal_metric"] = {"condition_number": float(values[-1] / values[0]),
                                      "stiffest": direction(-1), "flattest": direction(0)}
        results["marginal_sd"] = {n: round(float(s), 4) for n, s in zip(names, marginal_sd)}
    else:
        results["note"] = "the Hessian at the end point is not positive definite (mode not reached)"
    results["seconds"] = round(time.perf_counter() - t_start, 1)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return results


if __name__ == "__main__":
    main()
