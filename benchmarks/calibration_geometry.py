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
    python benchmarks/calibration_geometry.py --parameterization centred --start-from-non-centred --centred-lbfgs-iterations 0

The centred joint density has no mode: with every man's log parameter at the typical
value its potential falls like (n - 1) log omega_k as an IIV sd omega_k goes to 0, so
L-BFGS in centred coordinates runs down that funnel. ``--start-from-non-centred`` (centred
only) first finds the non-centred mode as above and maps it exactly to centred
coordinates (the model's own deterministic ``log_theta = log theta_pop + log covariate
factor + omega * eta``; the population and residual sites unchanged); with
``--centred-lbfgs-iterations 0`` the centred Hessian is taken there, at the same point
in parameter space as the non-centred one (not a centred stationary point: a local
curvature, not a Laplace approximation).
"""

from __future__ import annotations

import argparse
import json
import platform
import time


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="lab data CSV (default: the shipped synthetic example)")
    parser.add_argument("--parameterization", default="non_centred", choices=["non_centred", "centred", "mixed"])
    parser.add_argument("--dt", type=float, default=0.25, help="likelihood step, days")
    parser.add_argument("--adam-steps", type=int, default=200, help="Adam steps of the MAP start")
    parser.add_argument("--lbfgs-iterations", type=int, default=150)
    parser.add_argument("--start-from-non-centred", action="store_true",
                        help="centred: start L-BFGS at the non-centred mode mapped to centred coordinates")
    parser.add_argument("--centred-lbfgs-iterations", type=int, default=None,
                        help="with --start-from-non-centred: L-BFGS iterations in centred space (default: "
                             "--lbfgs-iterations; 0: the Hessian at the mapped non-centred mode itself)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import numpy as np
    import scipy.optimize
    from jax.flatten_util import ravel_pytree
    from numpyro.infer.util import constrain_fn, init_to_value, initialize_model

    from popsim.calibration.data import read_lab_data
    from popsim.calibration.inference import InferenceSettings, map_start, finite_difference_hessian
    from popsim.calibration.model import make_model
    from popsim.calibration.problem import build_problem, make_predictor
    from popsim.calibration.spec import CalibrationSpec
    from popsim.calibration.synthetic import EXAMPLE_CSV

    if args.start_from_non_centred and args.parameterization != "centred":
        parser.error("--start-from-non-centred needs --parameterization centred")
    t_start = time.perf_counter()
    data = read_lab_data(args.data or EXAMPLE_CSV)
    settings = InferenceSettings(init_steps=args.adam_steps, progress_bar=False)

    def build(parameterization):
        spec = CalibrationSpec(dt_days=args.dt, parameterization=parameterization)
        problem = build_problem(data, spec)
        return problem, make_model(problem, spec, make_predictor(problem, spec))

    def find_mode(model, start, iterations):
        """L-BFGS in numpyro's unconstrained space from the constrained values ``start``."""
        info = initialize_model(jax.random.PRNGKey(0), model, init_strategy=init_to_value(values=start))
        flat, unravel = ravel_pytree(info.param_info.z)
        value_and_grad = jax.jit(jax.value_and_grad(lambda x: info.potential_fn(unravel(x))))

        def potential(x):
            value, gradient = value_and_grad(jnp.asarray(x, flat.dtype))
            return float(value), np.asarray(gradient, np.float64)

        x0 = np.asarray(flat, np.float64)
        start_potential, start_gradient = potential(x0)
        if iterations == 0:
            mode = scipy.optimize.OptimizeResult(x=x0, fun=start_potential, jac=start_gradient, nit=0,
                                                 message="not run (--centred-lbfgs-iterations 0)")
        else:
            mode = scipy.optimize.minimize(potential, x0, jac=True, method="L-BFGS-B", options={"maxiter": iterations})
        summary = {"start_potential": start_potential, "start_max_abs_gradient": float(np.abs(start_gradient).max()),
                   "mode_potential": float(mode.fun), "mode_max_abs_gradient": float(np.abs(mode.jac).max()),
                   "lbfgs_iterations": int(mode.nit), "lbfgs_message": str(mode.message)}
        return info, flat, unravel, potential, mode, summary

    problem, model = build(args.parameterization)
    results = {"host": platform.node(), "processor": platform.processor() or platform.machine(),
               "data": str(args.data or EXAMPLE_CSV.name), "parameterization": args.parameterization,
               "dt_days": args.dt, "precision": str(jnp.zeros(()).dtype)}
    if args.start_from_non_centred:
        _, non_centred = build("non_centred")
        adam, losses, _ = map_start(non_centred, settings, jax.random.PRNGKey(0))
        _, nc_flat, nc_unravel, _, nc_mode, nc_summary = find_mode(non_centred, adam, args.lbfgs_iterations)
        results["non_centred_mode"] = {"adam_final_potential": float(losses[-1]), **nc_summary}
        # The non-centred mode in centred coordinates, through the model's own deterministic log_theta.
        nc_values = constrain_fn(non_centred, (), {}, nc_unravel(jnp.asarray(nc_mode.x, nc_flat.dtype)),
                                 return_deterministic=True)
        start = {k: v for k, v in nc_values.items() if k in ("theta_pop", "omega", "log_theta", "sigma", "sigma_additive")}
        results["start"] = "non-centred mode mapped to centred coordinates"
    else:
        start, losses, _ = map_start(model, settings, jax.random.PRNGKey(0))
        results["start"] = "Adam MAP start"
        results["adam_final_potential"] = float(losses[-1])
    centred_iterations = args.lbfgs_iterations
    if args.start_from_non_centred and args.centred_lbfgs_iterations is not None:
        centred_iterations = args.centred_lbfgs_iterations
    info, flat, unravel, potential, mode, summary = find_mode(model, start, centred_iterations)
    # In ravel_pytree's order (jax flattens a dict by sorted key), not the model's site order.
    # eta / log_theta are [patient, parameter].
    names = [f"{path[0].key}[{','.join(map(str, index))}]" if np.ndim(v) else path[0].key
             for path, v in jax.tree_util.tree_flatten_with_path(info.param_info.z)[0] for index in np.ndindex(np.shape(v))]
    results.update(summary)
    # Where the Hessian is taken: the population and residual sites, constrained.
    point = constrain_fn(model, (), {}, unravel(jnp.asarray(mode.x, flat.dtype)))
    results["point"] = {k: np.round(np.asarray(v, np.float64), 5).tolist() for k, v in point.items()
                        if k in ("theta_pop", "omega", "sigma", "sigma_additive")}
    # The same central differences as inference.mass_matrix=laplace.
    hessian = finite_difference_hessian(lambda x: potential(x)[1], mode.x)
    d = hessian.shape[0]
    curvature = np.linalg.eigvalsh(hessian)
    results.update({"dimension": int(d), "patients": problem.n_patients,
                    "identity_metric": {"min_curvature": float(curvature[0]), "max_curvature": float(curvature[-1])}})
    if curvature[0] > 0:
        results["identity_metric"]["condition_number"] = float(curvature[-1] / curvature[0])
        marginal_sd = np.sqrt(np.diag(np.linalg.inv(hessian)))
        scaled = hessian * np.outer(marginal_sd, marginal_sd)  # the best diagonal metric
        values, vectors = np.linalg.eigh(scaled)

        sites = [n.split("[")[0] for n in names]

        def direction(k):
            order = np.argsort(-np.abs(vectors[:, k]))[:6]
            weight = {}  # share of the direction's squared length on each site
            for site, v in zip(sites, vectors[:, k]):
                weight[site] = weight.get(site, 0.0) + float(v) ** 2
            return {"eigenvalue": float(values[k]), "loadings": {names[i]: round(float(vectors[i, k]), 3) for i in order},
                    "site_weight": {site: round(w, 3) for site, w in weight.items()}}

        results["diagonal_metric"] = {"condition_number": float(values[-1] / values[0]),
                                      "smallest_eigenvalues": [float(v) for v in values[:5]],
                                      "largest_eigenvalues": [float(v) for v in values[-5:]],
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
