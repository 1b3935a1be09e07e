"""The hierarchical NumPyro model of a calibration.

Sample sites (dims in brackets; K estimated parameters, A analytes, n patients):
- ``theta_pop`` [parameter]: population value at the reference covariates, natural units;
- ``omega`` [parameter]: IIV sd on the log scale;
- ``eta`` [patient, parameter] (non-centred parameterization): standardised
  individual effects, Normal(0, 1); or ``log_theta`` [patient, parameter] (centred): each
  man's log parameters, Normal(log theta_pop + log covariate factor, omega).
  The other one is recorded as a deterministic site, so both are always reported; under the
  "mixed" parameterization (the default) the sampled site is ``z`` [patient, parameter]: ``log_theta``
  for the parameters marked centred, ``eta`` for the others;
- ``sigma`` [analyte]: proportional / log-scale residual sd (unused, prior only, for an
  additive analyte); ``sigma_additive`` [additive_analyte]: additive sd of the analytes with
  an additive or combined error model (absent when there are none);
- deterministic ``theta`` [patient, parameter]: each man's parameters;
- observed ``y`` [observation]: every lab value, long format, with its residual error
  model and M3 left-censoring (popsim.calibration.spec).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import log_ndtr
from numpyro.distributions import constraints

from popsim.calibration.problem import CalibrationProblem
from popsim.calibration.spec import AZOOSPERMIC_BELOW_M_ML, ERROR_MODELS, CalibrationSpec

_LOGNORMAL, _PROPORTIONAL, _ADDITIVE, _COMBINED = (ERROR_MODELS.index(m) for m in ERROR_MODELS)
# Penalty (log density) per patient whose simulation failed: the proposal is rejected
# (a failed simulation may still give NaN gradients; NUTS then counts a divergence).
_FAILED_PENALTY = -1e6


class ResidualError(dist.Distribution):
    """Observation ``y`` around a model prediction ``f`` with a per-row error model and
    left-censoring (M3: a censored row contributes log P(y < LLOQ)).

    All arguments are ``(n_obs,)``: ``kind`` indexes ERROR_MODELS; ``floor`` is the
    smallest prediction used on the log scale (azoospermia as a tiny concentration).
    """

    arg_constraints = {}
    support = constraints.real
    reparametrized_params = []

    def __init__(self, prediction, sigma, sigma_additive, kind, censored, lloq, floor, validate_args=None):
        self.prediction, self.sigma, self.sigma_additive = prediction, sigma, sigma_additive
        self.kind, self.censored, self.lloq, self.floor = kind, censored, lloq, floor
        super().__init__(batch_shape=jnp.shape(prediction), validate_args=validate_args)

    def _normal_scale(self):
        # Every branch is evaluated (jnp.where), so each gets safe inputs: an unused branch
        # with an infinite derivative would turn the gradient into NaN (0 * inf).
        f = jnp.abs(self.prediction)
        proportional = self.sigma * f
        combined_sq = jnp.where(self.kind == _COMBINED, self.sigma_additive ** 2 + proportional ** 2, 1.0)
        combined = jnp.sqrt(jnp.maximum(combined_sq, 1e-30))
        return jnp.where(self.kind == _ADDITIVE, self.sigma_additive,
                         jnp.where(self.kind == _COMBINED, combined, proportional))

    def sample(self, key, sample_shape=()):
        shape = sample_shape + self.batch_shape
        z = jax.random.normal(key, shape)
        log_f = jnp.log(jnp.maximum(self.prediction, self.floor))
        lognormal = jnp.exp(log_f + self.sigma * z)
        normal = self.prediction + self._normal_scale() * z
        return jnp.where(self.kind == _LOGNORMAL, lognormal, normal)

    def log_prob(self, value):
        is_log = self.kind == _LOGNORMAL
        # Log-normal: log y ~ Normal(log f, sigma) (density of y, with the Jacobian 1/y).
        log_f = jnp.log(jnp.maximum(self.prediction, self.floor))
        # Safe inputs for rows of other error models (see _normal_scale); uncensored values
        # <= 0 of a log-normal analyte are rejected when the problem is built.
        sigma_log = jnp.where(is_log, self.sigma, 1.0)
        safe_value = jnp.where(value > 0, value, 1.0)
        z_log = (jnp.log(safe_value) - log_f) / sigma_log
        lp_log = -0.5 * z_log ** 2 - jnp.log(sigma_log) - 0.5 * jnp.log(2 * jnp.pi) - jnp.log(safe_value)
        z_lloq_log = (jnp.log(jnp.maximum(self.lloq, 1e-30)) - log_f) / sigma_log
        cens_log = log_ndtr(z_lloq_log)
        # Normal: y ~ Normal(f, s).
        s = jnp.where(is_log, 1.0, jnp.maximum(self._normal_scale(), 1e-12))
        z = (value - self.prediction) / s
        lp_normal = -0.5 * z ** 2 - jnp.log(s) - 0.5 * jnp.log(2 * jnp.pi)
        cens_normal = log_ndtr((self.lloq - self.prediction) / s)
        uncensored = jnp.where(is_log, lp_log, lp_normal)
        censored = jnp.where(is_log, cens_log, cens_normal)
        return jnp.where(self.censored, censored, uncensored)


class ModelArrays:
    """Device arrays of the observation model (built once per problem)."""

    def __init__(self, problem: CalibrationProblem, spec: CalibrationSpec):
        o = problem.observations
        kinds = np.array([ERROR_MODELS.index(spec.residual(a).model) for a in problem.analytes], np.int32)
        self.analyte = jnp.asarray(o.analyte)
        self.kind = jnp.asarray(kinds[o.analyte])
        self.additive_index = np.flatnonzero(np.isin(kinds, (_ADDITIVE, _COMBINED)))
        self.uses_sigma = jnp.asarray(kinds != _ADDITIVE)
        self.censored = jnp.asarray(o.censored)
        self.lloq = jnp.asarray(o.lloq)
        self.value = jnp.asarray(o.value)
        floors = np.array([spec.sperm_floor_m_ml if a == "sperm_concentration" else 1e-6 for a in problem.analytes])
        self.floor = jnp.asarray(floors[o.analyte])
        self.sigma_prior = jnp.asarray([spec.residual(a).sigma_prior for a in problem.analytes])
        self.additive_prior = jnp.asarray([spec.residual(a).additive_prior for a in problem.analytes])
        self.log_default = jnp.asarray(np.log(problem.defaults))
        self.prior_log_sd = jnp.asarray([e.prior_log_sd for e in spec.estimated])
        self.omega_prior = jnp.asarray([e.omega_prior for e in spec.estimated])


    def likelihood(self, prediction, sites: dict) -> "ResidualError":
        """The observation model around ``prediction`` ``(..., n_obs)`` for values of the
        ``sigma`` (and, if sampled, ``sigma_additive``) sites with the same leading dims."""
        sigma = jnp.where(self.uses_sigma, jnp.asarray(sites["sigma"]), 0.0)  # additive analytes: no proportional part
        additive = jnp.zeros_like(sigma)
        if self.additive_index.size:
            additive = additive.at[..., self.additive_index].set(jnp.asarray(sites["sigma_additive"]))
        return ResidualError(jnp.asarray(prediction), sigma[..., self.analyte], additive[..., self.analyte], self.kind,
                             self.censored, self.lloq, self.floor)


def azoospermic_in_data(problem: CalibrationProblem) -> np.ndarray:
    """``(n_patients,)`` bool: whether a man's data hold a sperm concentration that is
    censored (below the LLOQ) or below ``AZOOSPERMIC_BELOW_M_ML``."""
    o = problem.observations
    flags = np.zeros(problem.n_patients, bool)
    if "sperm_concentration" not in problem.analytes:
        return flags
    sperm = np.asarray(o.analyte) == problem.analytes.index("sperm_concentration")
    low = sperm & (np.asarray(o.censored, bool) | (np.asarray(o.value) < AZOOSPERMIC_BELOW_M_ML))
    flags[np.asarray(o.patient)[low]] = True
    return flags


def centred_by_patient(problem: CalibrationProblem, spec: CalibrationSpec) -> np.ndarray:
    """``(n_patients, n_estimated)`` bool: which individual parameters the "mixed"
    parameterization samples centred (EstimatedParameter.centred)."""
    azoospermic = azoospermic_in_data(problem)
    columns = [azoospermic if e.centred == "azoospermic" else np.full(problem.n_patients, e.centred is True)
               for e in spec.estimated]
    return np.stack(columns, axis=1)


def make_model(problem: CalibrationProblem, spec: CalibrationSpec, predict: Callable) -> Callable:
    """The NumPyro model ``model(observed=True)``; ``observed=False`` leaves ``y`` free
    (prior or posterior predictive draws)."""
    arrays = ModelArrays(problem, spec)
    n, k, a = problem.n_patients, len(problem.estimated), len(problem.analytes)
    centred = spec.parameterization == "centred"
    mixed = spec.parameterization == "mixed"
    centred_mask = jnp.asarray(centred_by_patient(problem, spec))
    log_factor = jnp.log(jnp.asarray(problem.covariate_factor))

    def model(observed: bool = True):
        with numpyro.plate("parameter", k):
            theta_pop = numpyro.sample("theta_pop", dist.LogNormal(arrays.log_default, arrays.prior_log_sd))
            omega = numpyro.sample("omega", dist.HalfNormal(arrays.omega_prior))
        # Each man's typical log parameters (population value and covariate effects).
        typical = jnp.log(theta_pop) + log_factor
        with numpyro.plate("patient", n, dim=-2), numpyro.plate("parameter_of_patient", k, dim=-1):
            if mixed:
                z = numpyro.sample("z", dist.Normal(jnp.where(centred_mask, typical, 0.0),
                                                    jnp.where(centred_mask, omega, 1.0)))
            elif centred:
                log_theta = numpyro.sample("log_theta", dist.Normal(typical, omega))
            else:
                eta = numpyro.sample("eta", dist.Normal(0.0, 1.0))
        if mixed:
            log_theta = numpyro.deterministic("log_theta", jnp.where(centred_mask, z, typical + omega * z))
            eta = numpyro.deterministic("eta", jnp.where(centred_mask, (z - typical) / omega, z))
        elif centred:
            eta = numpyro.deterministic("eta", (log_theta - typical) / omega)
        else:
            log_theta = numpyro.deterministic("log_theta", typical + omega * eta)
        with numpyro.plate("analyte", a):
            scales = {"sigma": numpyro.sample("sigma", dist.HalfNormal(arrays.sigma_prior))}
        if arrays.additive_index.size:
            # Only analytes with an additive or combined error model have an additive sd.
            with numpyro.plate("additive_analyte", arrays.additive_index.size):
                scales["sigma_additive"] = numpyro.sample(
                    "sigma_additive", dist.HalfNormal(arrays.additive_prior[arrays.additive_index]))
        theta = numpyro.deterministic("theta", jnp.exp(log_theta))
        prediction, failed = predict(theta)
        bad = failed | ~jnp.all(jnp.isfinite(theta), axis=-1)
        numpyro.factor("solver_failure", _FAILED_PENALTY * jnp.sum(bad))
        prediction = jnp.where(jnp.isfinite(prediction), prediction, 1.0)
        numpyro.deterministic("prediction", prediction)
        with numpyro.plate("observation", problem.n_observations):
            numpyro.sample("y", arrays.likelihood(prediction, scales), obs=arrays.value if observed else None)

    return model
