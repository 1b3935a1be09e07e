#!/usr/bin/env python
"""Short NUTS trial on the shipped calibration example through the calibration's own code
path (``popsim.calibration.fit.calibrate_problem``): leapfrog steps and tree depth per
draw, step size, divergences, wall time and the ESS of the population parameters.

    python benchmarks/calibration_nuts_trial.py PARAMETERIZATION WARMUP SAMPLES MAX_TREE_DEPTH OUT.json [MASS_MATRIX [GRADIENT [DT_DAYS]]]
    python benchmarks/calibration_nuts_trial.py centred 20 20 5 nuts.json     # ~25 min on 2 cores
    python benchmarks/calibration_nuts_trial.py mixed 30 30 5 nuts.json laplace

    python benchmarks/calibration_nuts_trial.py mixed 60 40 5 nuts.json diagonal finite_difference

MASS_MATRIX: diagonal (default), dense or laplace; GRADIENT: finite_difference or reverse
(default: InferenceSettings' default, reverse with laplace; popsim.calibration.inference);
DT_DAYS: the likelihood step (default: CalibrationSpec's default).
"""

import json
import platform
import sys
import time

import arviz as az  # a benchmark script, outside the package's single ArviZ module
import numpy as np

from popsim.calibration.data import read_lab_data
from popsim.calibration.fit import calibrate_problem
from popsim.calibration.inference import InferenceSettings
from popsim.calibration.problem import build_problem
from popsim.calibration.spec import CalibrationSpec
from popsim.calibration.synthetic import EXAMPLE_CSV

if len(sys.argv) not in (6, 7, 8, 9):
    sys.exit(__doc__)
par, warmup, samples, depth, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
mass_matrix = sys.argv[6] if len(sys.argv) >= 7 else "diagonal"
gradient = sys.argv[7] if len(sys.argv) >= 8 else ("reverse" if mass_matrix == "laplace" else
                                                   InferenceSettings().gradient)
dt_days = float(sys.argv[8]) if len(sys.argv) == 9 else CalibrationSpec().dt_days
spec = CalibrationSpec(dt_days=dt_days, parameterization=par)
settings = InferenceSettings(chains=1, warmup=warmup, samples=samples, max_tree_depth=depth, progress_bar=True, seed=0,
                             mass_matrix=mass_matrix, gradient=gradient)
t0 = time.perf_counter()
result = calibrate_problem(build_problem(read_lab_data(EXAMPLE_CSV), spec), spec, settings)
p = result.posterior
s = p.sample_stats
ess = {}
for site in ("theta_pop", "omega", "sigma"):
    x = p.draws[site]
    for j in range(x.shape[-1]):
        v = x[..., j]
        ess[f"{site}[{j}]"] = {"bulk": float(az.ess(v, method="bulk")), "tail": float(az.ess(v, method="tail"))}
res = {"host": platform.node(), "parameterization": par, "chains": 1, "warmup": warmup, "samples": samples,
       "max_tree_depth": depth, "target_accept": settings.target_accept, "mass_matrix": settings.mass_matrix,
       "gradient": settings.gradient,
       "init_steps": settings.init_steps, "dt_days": dt_days,
       "timings_s": {k: round(v, 1) for k, v in p.timings_s.items()},
       "wall_time_s_calibrate": round(result.wall_time_s, 1), "wall_time_s_total": round(time.perf_counter() - t0, 1),
       "kept_draws": {"mean_n_steps": float(s["n_steps"].mean()), "max_n_steps": int(s["n_steps"].max()),
                      "min_n_steps": int(s["n_steps"].min()),
                      "mean_tree_depth": float(s["tree_depth"].mean()),
                      "fraction_at_max_depth": float(np.mean(s["n_steps"] >= 2 ** depth - 1)),
                      "step_size": float(s["step_size"].mean()), "acceptance": float(s["acceptance_rate"].mean()),
                      "divergences": int(s["diverging"].sum()), "gradients": int(s["n_steps"].sum())},
       "ess_population": ess,
       "ess_bulk_min_population": min(e["bulk"] for k, e in ess.items() if k.startswith(("theta_pop", "omega"))),
       "posterior_mean": {site: np.asarray(p.draws[site]).mean(axis=(0, 1)).round(4).tolist() for site in ("theta_pop", "omega", "sigma")},
       "map_start_final_potential": float(p.losses[-1]) if p.losses is not None else None}
text = json.dumps(res, indent=2)
print(text)
with open(out, "w") as f:
    f.write(text)
