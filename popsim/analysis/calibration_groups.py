"""A calibration as InferenceData groups (xarray Datasets with named dims and coords).

Dims: ``chain``, ``draw``; ``parameter`` (estimated parameter names), ``patient``
(patient IDs), ``analyte``; ``observation`` (one lab value, long format) with
non-dimension coords ``patient_id``, ``time_days``, ``analyte_name``, ``censored`` and
``csv_row`` naming where each value came from.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from popsim.calibration.inference import Posterior
from popsim.calibration.problem import CalibrationProblem
from popsim.model.parameters import PARAMETER_INDEX

_SITE_DIMS = {
    "theta_pop": ("parameter",), "omega": ("parameter",), "eta": ("patient", "parameter"), "log_theta": ("patient", "parameter"),
    "z": ("patient", "parameter"),
    "theta": ("patient", "parameter"), "sigma": ("analyte",), "sigma_additive": ("additive_analyte",),
}


def _observation_coords(problem: CalibrationProblem) -> dict:
    o = problem.observations
    return {
        "observation": np.arange(problem.n_observations),
        "patient_id": ("observation", np.array(problem.ids)[o.patient].astype(str)),
        "time_days": ("observation", o.time_days),
        "analyte_name": ("observation", np.array(problem.analytes)[o.analyte].astype(str)),
        "censored": ("observation", o.censored.astype(np.int8)),
        "csv_row": ("observation", o.row),
    }


def inference_groups(problem: CalibrationProblem, posterior: Posterior, posterior_predictive: np.ndarray,
                     log_likelihood: np.ndarray, additive_analytes=()) -> dict[str, xr.Dataset]:
    """posterior, posterior_predictive, log_likelihood, sample_stats, observed_data and
    constant_data groups of a calibration."""
    coords = {"chain": np.arange(posterior.n_chains), "draw": np.arange(posterior.n_draws),
              "parameter": list(problem.estimated), "patient": list(problem.ids), "analyte": list(problem.analytes)}
    if "sigma_additive" in posterior.draws:
        coords["additive_analyte"] = list(additive_analytes)
    post = {}
    for name, dims in _SITE_DIMS.items():
        if name in posterior.draws:
            post[name] = (("chain", "draw") + dims, np.asarray(posterior.draws[name]))
    posterior_ds = xr.Dataset(post, coords=coords)
    for name in ("theta_pop", "theta"):
        posterior_ds[name].attrs["units"] = ", ".join(f"{p}: {PARAMETER_INDEX[p].unit}" for p in problem.estimated)
    posterior_ds["omega"].attrs["description"] = "inter-individual sd of the log parameter"

    observation = _observation_coords(problem)
    obs_coords = {**{k: coords[k] for k in ("chain", "draw")}, **observation}
    y_attrs = {"description": "lab values in canonical units (popsim.units); censored rows hold their LLOQ"}
    pp_attrs = {"description": "replicated lab values in canonical units (popsim.units), uncensored draws"}
    pp = xr.Dataset({"y": (("chain", "draw", "observation"), posterior_predictive, pp_attrs)}, coords=obs_coords)
    # float64: PSIS fits a generalised Pareto tail to exp(log-lik) ratios, fragile in float32.
    ll = xr.Dataset({"y": (("chain", "draw", "observation"), np.asarray(log_likelihood, np.float64))}, coords=obs_coords)
    observed = xr.Dataset({"y": (("observation",), problem.observations.value, y_attrs)},
                          coords=observation)
    stats = xr.Dataset({k: (("chain", "draw"), np.asarray(v)) for k, v in posterior.sample_stats.items()},
                       coords={k: coords[k] for k in ("chain", "draw")})
    if "prediction" in posterior.draws:
        pred = xr.Dataset({"prediction": (("chain", "draw", "observation"), np.asarray(posterior.draws["prediction"]),
                                          {"description": "latent model value of each observation"})},
                          coords=obs_coords)
        pp = pp.merge(pred)
    o = problem.observations
    constant = xr.Dataset(
        {
            "lloq": (("observation",), o.lloq),
            "covariate_factor": (("patient", "parameter"), problem.covariate_factor),
            "default_value": (("parameter",), problem.defaults),
            "age_years": (("patient",), problem.covariates["AGE"]),
            "bmi_kg_m2": (("patient",), problem.covariates["BMI"]),
            "first_missed_dose_day": (("patient",), problem.first_missed_dose_day),
        },
        coords={**observation, "patient": list(problem.ids), "parameter": list(problem.estimated)},
    )
    groups = {"posterior": posterior_ds, "posterior_predictive": pp, "log_likelihood": ll,
              "observed_data": observed, "constant_data": constant}
    if stats.data_vars:
        groups["sample_stats"] = stats
    return groups
