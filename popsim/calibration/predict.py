"""From posterior draws to predictions: posterior predictive draws, pointwise
log-likelihood, a visual predictive check, recovery times of the observed men, and
recovery curves of new virtual cohorts with parameter uncertainty.

Sperm recovery is judged on the latent concentration (popsim.outcomes.endpoints), from
each man's first missed TRT dose (last dose + one interval).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from popsim.calibration.model import ModelArrays
from popsim.calibration.problem import CalibrationProblem
from popsim.calibration.spec import CalibrationSpec
from popsim.dosing.regimen import Regimen
from popsim.dosing.table import compile_regimens, trt_summary
from popsim.model.parameters import PARAMETER_NAMES
from popsim.outcomes.endpoints import first_crossing
from popsim.population.covariates import typical_parameters
from popsim.solve.run import iterate_chunks
from popsim.solve.settings import SolverSettings
from popsim.units import DAYS_PER_MONTH


def _thin(n_total: int, n_wanted: int) -> np.ndarray:
    return np.unique(np.linspace(0, n_total - 1, min(n_wanted, n_total)).round().astype(int))


def flatten_draws(draws: dict, name: str) -> np.ndarray:
    """``(chains, draws, ...)`` -> ``(chains * draws, ...)``."""
    a = np.asarray(draws[name])
    return a.reshape((-1,) + a.shape[2:])


def posterior_predictive(problem: CalibrationProblem, spec: CalibrationSpec, draws: dict, seed: int = 0) -> np.ndarray:
    """New observations ``y`` for every posterior draw, ``(chains, draws, n_obs)``: the
    stored model prediction of the draw plus residual noise (uncensored values)."""
    likelihood = ModelArrays(problem, spec).likelihood(draws["prediction"], draws)
    return np.asarray(likelihood.sample(jax.random.PRNGKey(seed)))


def pointwise_log_likelihood(problem: CalibrationProblem, spec: CalibrationSpec, draws: dict) -> np.ndarray:
    """log p(y_j | draw) for every observation, ``(chains, draws, n_obs)`` (M3 for censored rows)."""
    arrays = ModelArrays(problem, spec)
    return np.asarray(arrays.likelihood(draws["prediction"], draws).log_prob(arrays.value))


def _parameter_table(base: dict, theta: np.ndarray, names: tuple[str, ...]) -> dict:
    params = {k: np.asarray(v, float) for k, v in base.items()}
    for k, name in enumerate(names):
        params[name] = np.asarray(theta[:, k], float)
    return params


def simulate_sperm(params: dict, regimens, times_days: np.ndarray, spec: CalibrationSpec,
                   start_day: float = 0.0, observables=("sperm_concentration_m_ml",)) -> dict:
    """Latent trajectories ``{observable: (n, n_times)}`` of men with explicit parameters."""
    table = compile_regimens(list(regimens))
    settings = SolverSettings(dt_days=spec.dt_days, precision=spec.precision, method=spec.method)
    out = {k: [] for k in observables}
    for chunk in iterate_chunks(params, table, times_days, settings, start_day=start_day, observables=tuple(observables)):
        for k in observables:
            out[k].append(chunk.outputs[k])
    return {k: np.concatenate(v) for k, v in out.items()}


class VPCResult(NamedTuple):
    """Simulated replicates of the observed design from the population posterior.

    Attributes:
        simulated: ``(n_replicates, n_obs)`` new observations (new men drawn from
            theta_pop and omega of a posterior draw, the observed doses and times,
            residual noise; values below a row's LLOQ are set to it, like the data).
        observed: ``(n_obs,)`` observed values (censored rows at their limit).
        time_since_stop_days: ``(n_obs,)`` time from the man's first missed TRT dose.
    """

    simulated: np.ndarray
    observed: np.ndarray
    time_since_stop_days: np.ndarray


def visual_predictive_check(problem: CalibrationProblem, spec: CalibrationSpec, draws: dict, predict,
                            n_replicates: int = 50, seed: int = 0) -> VPCResult:
    """Replicate the study ``n_replicates`` times with new men (prediction-corrected VPCs
    are not needed: every man has his own observed design)."""
    rng = np.random.default_rng(seed)
    theta_pop, omega = flatten_draws(draws, "theta_pop"), flatten_draws(draws, "omega")
    arrays = ModelArrays(problem, spec)
    scales = {k: flatten_draws(draws, k) for k in ("sigma", "sigma_additive") if k in draws}
    picks = rng.choice(theta_pop.shape[0], size=n_replicates, replace=theta_pop.shape[0] < n_replicates)
    jitted = jax.jit(predict)
    out = np.empty((n_replicates, problem.n_observations))
    lloq = np.asarray(problem.observations.lloq)
    for r, d in enumerate(picks):
        eta = rng.standard_normal((problem.n_patients, theta_pop.shape[1]))
        theta = theta_pop[d] * problem.covariate_factor * np.exp(omega[d] * eta)
        prediction, _ = jitted(jnp.asarray(theta))
        noise = arrays.likelihood(prediction, {k: v[d] for k, v in scales.items()})
        y = np.asarray(noise.sample(jax.random.PRNGKey(seed * 100_003 + r)))
        out[r] = np.where(lloq > 0, np.maximum(y, lloq), y)
    o = problem.observations
    since = o.time_days - problem.first_missed_dose_day[o.patient]
    return VPCResult(out, np.asarray(o.value), since)


def patient_recovery(problem: CalibrationProblem, spec: CalibrationSpec, draws: dict,
                     thresholds_m_ml=(15.0, 20.0), horizon_months: float = 24.0, n_draws: int = 100) -> dict:
    """When will each observed man recover, with credible intervals.

    For ``n_draws`` posterior draws, each man is simulated with his own parameters until
    ``horizon_months`` after his first missed TRT dose; recovery is the first time his
    latent sperm concentration reaches each threshold.

    Returns:
        ``{"time_months": {threshold: (n_draws, n_patients)}`` (NaN = not within the
        horizon), ``"draws"``: the draw indices used, ``"horizon_months"``}.
    """
    theta = flatten_draws(draws, "theta")  # (S, n, K)
    picks = _thin(theta.shape[0], n_draws)
    n, S = problem.n_patients, picks.size
    stop = problem.first_missed_dose_day
    horizon_days = horizon_months * DAYS_PER_MONTH
    end = float(np.nanmax(np.where(np.isfinite(stop), stop, problem.grid_days[-1])) + horizon_days)
    times = np.arange(problem.start_day, end + 1.0, 1.0)
    base = {k: np.tile(np.asarray(v, float), S) for k, v in problem.base_params.items()}
    params = _parameter_table(base, theta[picks].reshape(S * n, -1), problem.estimated)
    sperm = simulate_sperm(params, list(problem.regimens) * S, times, spec, start_day=problem.start_day)["sperm_concentration_m_ml"]
    origin = np.tile(stop, S)
    result = {}
    for thr in thresholds_m_ml:
        ev = first_crossing(times, sperm, origin, thr, rising=True, interpolate=True, horizon_days=horizon_days)
        months = np.where(ev.observed, ev.time_days / DAYS_PER_MONTH, np.nan)
        result[float(thr)] = months.reshape(S, n)
    return {"time_months": result, "draws": picks, "horizon_months": horizon_months}


def cohort_recovery(problem: CalibrationProblem, spec: CalibrationSpec, draws: dict, regimen: Regimen,
                    n_men: int = 200, n_draws: int = 50, threshold_m_ml: float = 15.0,
                    horizon_months: float = 24.0, age_years: float = 35.0, bmi_kg_m2: float = 26.0,
                    seed: int = 0) -> dict:
    """Recovery curve of a new virtual cohort with parameter uncertainty.

    For each of ``n_draws`` posterior draws, ``n_men`` new men (eta ~ N(0, 1) with the
    draw's theta_pop and omega; other parameters at their typical values for the given
    age and BMI) take ``regimen``; the fraction recovered (latent sperm >= threshold) is
    computed monthly from the first missed TRT dose.

    Returns:
        ``{"months": (M,), "fraction": (n_draws, M), "median_months": (n_draws,) (NaN when
        fewer than half recover), "threshold_m_ml", "n_men", "regimen"}``.
    """
    rng = np.random.default_rng(seed)
    theta_pop, omega = flatten_draws(draws, "theta_pop"), flatten_draws(draws, "omega")
    picks = _thin(theta_pop.shape[0], n_draws)
    S = picks.size
    typical = typical_parameters(np.full(n_men, age_years), np.full(n_men, bmi_kg_m2), np.zeros(n_men), np.ones(n_men))
    factor = np.stack([typical[k] / d for k, d in zip(problem.estimated, problem.defaults)], axis=1)
    eta = rng.standard_normal((S, n_men, theta_pop.shape[1]))
    theta = theta_pop[picks][:, None, :] * factor[None] * np.exp(omega[picks][:, None, :] * eta)
    base = {k: np.tile(np.asarray(v, float), S) for k, v in typical.items() if k in PARAMETER_NAMES}
    params = _parameter_table(base, theta.reshape(S * n_men, -1), problem.estimated)
    stop = float(trt_summary([regimen]).first_missed_dose_day[0])
    if not np.isfinite(stop):
        raise ValueError("predictions.cohort regimen has no TRT course: recovery needs a first missed TRT dose")
    horizon_days = horizon_months * DAYS_PER_MONTH
    times = np.arange(0.0, stop + horizon_days + 1.0, 1.0)
    sperm = simulate_sperm(params, [regimen] * (S * n_men), times, spec)["sperm_concentration_m_ml"]
    ev = first_crossing(times, sperm, np.full(S * n_men, stop), threshold_m_ml, rising=True, horizon_days=horizon_days)
    t_months = np.where(ev.observed, ev.time_days / DAYS_PER_MONTH, np.inf).reshape(S, n_men)
    months = np.arange(0.0, horizon_months + 1e-9, 1.0)
    fraction = (t_months[:, :, None] <= months[None, None, :]).mean(axis=1)
    # The median recovery time exists when more than half recover within the horizon.
    median = np.where(np.mean(np.isfinite(t_months), axis=1) > 0.5, np.median(t_months, axis=1), np.nan)
    return {"months": months, "fraction": fraction, "median_months": median, "threshold_m_ml": threshold_m_ml,
            "n_men": n_men, "regimen": regimen}
