"""Lab data turned into the arrays a likelihood needs, and the model prediction of them.

The prediction calls the same population simulator as forward simulation
(popsim.solve.integrator.population_simulator): every patient starts at his untreated
steady state at ``start_day`` (the earliest time in the data, or 0), takes his own doses,
and is simulated on a common uniform grid; each observation is the linear interpolation
of its analyte between the two grid times around it (an observation on a grid time, the
usual whole-day case, takes the grid value: the pre-dose trough at a dose time).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from popsim.calibration.data import LabData
from popsim.calibration.lab_schema import ANALYTE_OBSERVABLES
from popsim.calibration.spec import CalibrationSpec, CalibrationSpecError, validate_spec
from popsim.dosing.table import DoseTable, compile_regimens, trt_summary
from popsim.model.parameters import PARAMETER_INDEX
from popsim.population.covariates import COVARIATE_INDEX, typical_parameters
from popsim.solve.integrator import OutputGrid, Rules, population_simulator
from popsim.solve.schedule import plan_schedule
from popsim.solve.settings import SolverSettings
from popsim.solve.run import check_precision


class ObservationIndex(NamedTuple):
    """Where each observation sits, each ``(n_obs,)`` (long format, data order).

    Attributes:
        patient: int index into ``CalibrationProblem.ids``.
        analyte: int index into ``CalibrationProblem.analytes``.
        grid_left: int index of the grid time at or before the observation.
        weight: interpolation weight of the grid time after it (0 on a grid time).
        time_days: observation time, days (patient's own time frame).
        value: observed value in canonical units (the limit on censored rows).
        censored: True below the limit of quantification.
        lloq: limit of quantification, canonical unit (the value on censored rows).
        row: CSV row of the observation.
    """

    patient: np.ndarray
    analyte: np.ndarray
    grid_left: np.ndarray
    weight: np.ndarray
    time_days: np.ndarray
    value: np.ndarray
    censored: np.ndarray
    lloq: np.ndarray
    row: np.ndarray


class CalibrationProblem(NamedTuple):
    """Everything fixed during a calibration (host arrays).

    Attributes:
        ids: patient identifiers.
        analytes: analytes present in the data, in a fixed order.
        estimated: names of the estimated parameters (CalibrationSpec.names), K of them.
        defaults: ``(K,)`` literature defaults of the estimated parameters.
        covariate_factor: ``(n_patients, K)`` typical value of each man (from AGE, BMI)
            over the default: 1 where no covariate effect applies.
        base_params: ``{name: (n_patients,)}`` every model parameter at the man's typical
            value (estimated ones are replaced during the fit).
        doses: DoseTable of the patients' dosing histories.
        species: PK species dosed in the data (static for the simulator).
        grid_days: ``(n_times,)`` common simulation grid, days.
        start_day: untreated steady state at this time, days.
        observations: ObservationIndex.
        covariates: ``{name: (n_patients,)}`` covariates used (AGE in years, BMI in kg/m^2).
        first_missed_dose_day: ``(n_patients,)`` last TRT dose + one interval (origin of
            recovery), NaN for a man without TRT in the data.
        regimens: one popsim Regimen per patient.
    """

    ids: tuple[str, ...]
    analytes: tuple[str, ...]
    estimated: tuple[str, ...]
    defaults: np.ndarray
    covariate_factor: np.ndarray
    base_params: dict
    doses: DoseTable
    species: tuple[int, ...]
    grid_days: np.ndarray
    start_day: float
    observations: ObservationIndex
    covariates: dict
    first_missed_dose_day: np.ndarray
    regimens: tuple

    @property
    def n_patients(self) -> int:
        return len(self.ids)

    @property
    def n_observations(self) -> int:
        return int(self.observations.value.shape[0])


def _covariate(data: LabData, name: str, reference: float) -> np.ndarray:
    columns = {str(c).upper(): c for c in data.covariates.columns}
    if name not in columns:
        return np.full(data.n_patients, reference)
    values = data.covariates[columns[name]].to_numpy(dtype=float)
    return np.where(np.isfinite(values), values, reference)


def build_problem(data: LabData, spec: CalibrationSpec, horizon_days: float | None = None) -> CalibrationProblem:
    """Arrays of a calibration from validated lab data.

    Args:
        data: lab data (popsim.calibration.data.read_lab_data).
        spec: the statistical model.
        horizon_days: simulate at least until this time (default: the last observation).

    Raises:
        CalibrationSpecError: when the data hold an analyte without a residual model, or no
            observations at all.
    """
    validate_spec(spec)
    check_precision(spec.precision)
    obs = data.observations
    if obs.value_canonical.size == 0:
        raise CalibrationSpecError(f"{data.source}: no observations (rows with EVID=0 and MDV=0) to calibrate to")
    analytes = tuple(sorted(set(obs.analyte.tolist()), key=list(ANALYTE_OBSERVABLES).index))
    for analyte in analytes:
        spec.residual(analyte)
    log_scale = np.array([spec.residual(a).model == "lognormal" for a in obs.analyte])
    bad = log_scale & ~obs.censored.astype(bool) & (obs.value_canonical <= 0)
    if bad.any():
        rows = ", ".join(str(r) for r in obs.row[bad][:20]) + (" ..." if bad.sum() > 20 else "")
        raise CalibrationSpecError(
            f"{data.source}: {int(bad.sum())} uncensored value(s) <= 0 of a log-normal analyte (rows {rows}); a value "
            "below the assay limit must be censored (CENS=1 with its LLOQ), or give that analyte an additive or "
            "combined error model (model.residuals.<analyte>.model)")

    age = _covariate(data, "AGE", COVARIATE_INDEX["reference_age_years"])
    bmi = _covariate(data, "BMI", COVARIATE_INDEX["reference_bmi_kg_m2"])
    n = data.n_patients
    typical = typical_parameters(age, bmi, np.zeros(n), np.ones(n))
    defaults = np.array([PARAMETER_INDEX[name].default for name in spec.names])
    factor = np.stack([typical[name] / default for name, default in zip(spec.names, defaults)], axis=1)

    regimens = data.regimens()
    doses = compile_regimens(regimens)
    species = tuple(np.unique(doses.species[doses.n_doses > 0]).tolist())
    step = spec.output_step_days
    first_dose = min((float(h.time_days.min()) for h in data.doses if h.time_days.size), default=0.0)
    start_day = step * math.floor(min(0.0, first_dose, float(obs.time_days.min())) / step)
    last = max(float(obs.time_days.max()), horizon_days or 0.0)
    n_times = int(math.floor((last - start_day) / step + 1e-9)) + 2  # one grid time past the last observation
    grid_days = start_day + step * np.arange(n_times)

    position = (obs.time_days - start_day) / step
    left = np.clip(np.floor(position + 1e-9).astype(int), 0, n_times - 2)
    weight = np.clip(position - left, 0.0, 1.0)
    weight = np.where(weight < 1e-9, 0.0, weight)
    index = ObservationIndex(
        patient=obs.patient_index.astype(np.int32),
        analyte=np.array([analytes.index(a) for a in obs.analyte], np.int32),
        grid_left=left.astype(np.int32), weight=weight, time_days=obs.time_days.astype(float),
        value=obs.value_canonical.astype(float), censored=obs.censored.astype(bool),
        lloq=np.where(obs.censored, obs.value_canonical, np.nan_to_num(obs.lloq_canonical, nan=0.0)),
        row=obs.row.astype(int),
    )
    return CalibrationProblem(
        ids=tuple(data.ids), analytes=analytes, estimated=spec.names, defaults=defaults,
        covariate_factor=factor, base_params=typical, doses=doses, species=species,
        grid_days=grid_days, start_day=float(start_day), observations=index,
        covariates={"AGE": age, "BMI": bmi},
        first_missed_dose_day=trt_summary(regimens).first_missed_dose_day, regimens=tuple(regimens),
    )


# Relative step of the finite-difference derivative (theta * exp(step)), per precision:
# about the square root of the simulator's relative round-off over a few thousand steps
# (float32 ~1e-5, float64 ~1e-12), which balances truncation and round-off error.
FINITE_DIFFERENCE_STEP = {"float32": 3e-3, "float64": 1e-6}
DERIVATIVES = ("reverse", "finite_difference")


def make_predictor(problem: CalibrationProblem, spec: CalibrationSpec, derivative: str = "reverse") -> Callable:
    """The model prediction of every observation as a JAX function.

    Args:
        derivative: how ``jax.grad`` differentiates the prediction. "reverse": exact
            reverse mode through every integrator step. "finite_difference": forward
            differences in each man's K parameters, all K + 1 simulations in one batched
            call (each man's predictions depend only on his own parameters, so K
            perturbed copies of the cohort give the whole ``(n_patients, K)`` Jacobian).
            On a 2-core CPU at calibration's small batches this is 1.4-1.7x as fast for
            K = 4 (its cost grows with K, reverse mode's does not); its error is about
            1e-3 of the gradient's scale in float32. HMC and NUTS stay exact with it: the
            gradient only proposes, and the acceptance uses the exact log density.

    Returns:
        ``predict(theta) -> (prediction, failed)`` with ``theta`` ``(n_patients, K)`` the
        estimated parameters of each man (natural units), ``prediction`` ``(n_obs,)`` the
        latent model value of each observation (canonical units) and ``failed``
        ``(n_patients,)`` True where the simulation left the plausible state range.
        Differentiable in ``theta`` by reverse-mode autodiff (``jax.grad``, ``jax.vjp``);
        with "finite_difference", forward-mode autodiff (``jax.jvp``) is not available.

    Raises:
        ValueError: unknown ``derivative``.
    """
    if derivative not in DERIVATIVES:
        raise ValueError(f"derivative (inference.gradient) must be one of {DERIVATIVES}, got {derivative!r}")
    settings = SolverSettings(dt_days=spec.dt_days, precision=spec.precision, method=spec.method)
    plan = plan_schedule(problem.grid_days, settings, problem.doses, problem.start_day, problem.base_params)
    grid = plan.grid
    simulator = population_simulator(spec.precision, problem.species, plan.max_steps, uniform=plan.uniform,
                                     method=spec.method, max_quiet_steps=plan.max_quiet_steps)
    dtype = jnp.float32 if spec.precision == "float32" else jnp.float64
    n = problem.n_patients
    base = {k: jnp.asarray(v, dtype) for k, v in problem.base_params.items()}
    doses = DoseTable(*(jnp.asarray(a) for a in problem.doses))
    grid_j = OutputGrid(*(jnp.asarray(a) for a in grid))
    quiet = jnp.asarray(plan.patient_quiet)
    scale0 = jnp.ones(problem.doses.species.shape, dtype)
    z, zi = jnp.zeros((n, 0), dtype), jnp.zeros((n, 0), jnp.int32)
    rules = Rules(zi, z, z, z, z, zi, zi, z, z)
    observables = [ANALYTE_OBSERVABLES[a] for a in problem.analytes]
    o = problem.observations
    patient, analyte = jnp.asarray(o.patient), jnp.asarray(o.analyte)
    left, weight = jnp.asarray(o.grid_left), jnp.asarray(o.weight, dtype)
    names = problem.estimated

    def predict(theta):
        params = dict(base)
        for k, name in enumerate(names):
            params[name] = theta[:, k].astype(dtype)
        outputs, failed, _ = simulator(params, doses, grid_j, scale0, rules, quiet)
        stacked = jnp.stack([outputs[name] for name in observables])  # (n_analytes, n, n_times)
        lo = stacked[analyte, patient, left]
        hi = stacked[analyte, patient, left + 1]
        return lo + weight * (hi - lo), failed

    if derivative == "reverse":
        return predict
    return with_finite_difference_derivative(predict, patient, n, len(names),
                                             FINITE_DIFFERENCE_STEP[spec.precision], dtype)


def with_finite_difference_derivative(predict: Callable, patient, n_patients: int, n_parameters: int,
                                      relative_step: float, dtype) -> Callable:
    """``predict`` with a ``custom_vjp`` whose Jacobian is a forward difference.

    The forward pass simulates the cohort and K copies of it, copy k with every man's
    parameter k multiplied by ``exp(relative_step)``, as one batch ``(K + 1, n, K)``;
    the slope of observation j in parameter k is ``(prediction_k[j] - prediction[j]) /
    (theta[patient_j, k] (exp(relative_step) - 1))``. A perturbed man whose simulation
    failed or gave a non-finite value gets slope 0 (his failure penalty is in the
    unperturbed value).

    Args:
        predict: ``theta (n_patients, K) -> (values (n_obs,), failed (n_patients,))``,
            where value j depends only on the parameters of man ``patient[j]``.
        patient: ``(n_obs,)`` int index of the man of each value.
        relative_step: multiplicative step, log scale.
        dtype: dtype the simulation runs in.
    """
    k = n_parameters
    factors = jnp.exp(relative_step * jnp.eye(k, dtype=dtype))  # (K, K): row k scales parameter k

    @jax.custom_vjp
    def predict_fd(theta):
        return predict(theta)

    def forward(theta_in):
        theta = theta_in.astype(dtype)
        thetas = jnp.concatenate([theta[None], theta[None] * factors[:, None, :]])  # (K + 1, n, K)
        values, failed = jax.vmap(predict)(thetas)
        step = (theta * jnp.expm1(jnp.asarray(relative_step, dtype)))[patient].T  # (K, n_obs)
        slope = (values[1:] - values[0]) / step
        usable = jnp.isfinite(slope) & ~failed[1:][:, patient]
        return (values[0], failed[0]), jnp.where(usable, slope, 0.0).astype(theta_in.dtype)

    def backward(slope, cotangents):
        prediction_cotangent = cotangents[0]  # the failure flags are not differentiable
        per_observation = (slope * prediction_cotangent[None, :]).T  # (n_obs, K)
        return (jax.ops.segment_sum(per_observation, patient, num_segments=n_patients),)

    predict_fd.defvjp(forward, backward)
    return predict_fd


def patient_parameters(problem: CalibrationProblem, theta_pop, omega, eta):
    """``theta[i, k] = theta_pop[k] * covariate_factor[i, k] * exp(omega[k] * eta[i, k])``.

    Args:
        theta_pop: ``(..., K)`` population values; omega: ``(..., K)``; eta: ``(..., n, K)``.
    """
    factor = jnp.asarray(problem.covariate_factor)
    return theta_pop[..., None, :] * factor * jnp.exp(omega[..., None, :] * eta)


def likelihood_step_error(problem: CalibrationProblem, spec: CalibrationSpec, refinement: int = 4,
                          spread_sd: float = 2.0) -> dict:
    """How far the likelihood's predictions at ``spec.dt_days`` are from a ``refinement``
    times finer step, measured where and how the likelihood uses them, at the men's
    typical parameters and at parameters the posterior may visit.

    The fast hypothalamic feedback loop makes the model stiff (eigenvalue about -10/day
    at the defaults, -13/day at half the default LH baseline), so a step that is
    accurate at the typical parameters can be unstable elsewhere. The check therefore
    runs the typical parameters and, for each estimated parameter in turn, its value
    times ``exp(+-spread_sd * omega_prior)`` (2 K + 1 forward runs at each step).

    Only uncensored observations whose reference prediction is at or above the analyte's
    limit of quantification count (below it a prediction enters only through
    P(y < LLOQ), which a small step error barely moves). The error of each is
    ``|log coarse - log fine|`` (log-normal analytes) or ``|coarse - fine| / fine``
    (proportional, additive, combined), divided by the analyte's residual prior scale
    (``sigma_prior``, the expected within-man sd on that scale). A failed or non-finite
    coarse prediction counts as an infinite error.

    Returns:
        ``{"dt_days", "reference_dt_days", "max_error_in_residual_sd", "worst_analyte",
        "worst_case", "max_error_by_analyte" (on each analyte's error scale),
        "max_error_in_residual_sd_typical", "observations_checked"}``.
    """
    from dataclasses import replace

    typical = problem.defaults[None, :] * problem.covariate_factor
    cases = [("typical parameters", typical)]
    for k, e in enumerate(spec.estimated):
        for sign, label in ((1.0, "+"), (-1.0, "-")):
            theta = typical.copy()
            theta[:, k] *= math.exp(sign * spread_sd * e.omega_prior)
            cases.append((f"{e.name} x exp({label}{spread_sd:g} omega_prior)", theta))
    coarse_predict = jax.jit(make_predictor(problem, spec))
    fine_spec = replace(spec, dt_days=spec.dt_days / refinement)
    fine_predict = jax.jit(make_predictor(problem, fine_spec))
    o = problem.observations
    log_scale = np.array([spec.residual(a).model == "lognormal" for a in problem.analytes])[o.analyte]
    sigma = np.array([spec.residual(a).sigma_prior for a in problem.analytes])[o.analyte]
    worst = {"in_sd": -1.0}
    typical_in_sd = 0.0
    by_analyte = {a: 0.0 for a in problem.analytes}
    checked = 0
    for case, (label, theta) in enumerate(cases):
        coarse, coarse_failed = coarse_predict(jnp.asarray(theta))
        fine, _ = fine_predict(jnp.asarray(theta))
        coarse, fine = np.asarray(coarse, float), np.asarray(fine, float)
        unstable = ~np.isfinite(coarse) | np.asarray(coarse_failed)[o.patient]
        scale = np.array([np.max(np.abs(fine[o.analyte == a]), initial=0.0) for a in range(len(problem.analytes))])
        floor = np.maximum(o.lloq, 1e-3 * scale[o.analyte])
        keep = (~o.censored & (fine >= floor) & (fine > 0) & (coarse > 0)) | unstable
        with np.errstate(divide="ignore", invalid="ignore"):
            error = np.where(log_scale, np.abs(np.log(coarse) - np.log(fine)), np.abs(coarse - fine) / np.abs(fine))
        error = np.where(unstable, np.inf, error)
        in_sd = np.where(keep, error / sigma, 0.0)
        for k, a in enumerate(problem.analytes):
            by_analyte[a] = max(by_analyte[a], float(np.max(error[keep & (o.analyte == k)], initial=0.0)))
        checked = max(checked, int(keep.sum()))
        if case == 0:
            typical_in_sd = float(in_sd.max(initial=0.0))
        if keep.any() and float(in_sd.max()) > worst["in_sd"]:
            j = int(np.argmax(in_sd))
            worst = {"in_sd": float(in_sd[j]), "analyte": problem.analytes[int(o.analyte[j])], "case": label}
    return {
        "dt_days": spec.dt_days, "reference_dt_days": fine_spec.dt_days,
        "max_error_in_residual_sd": max(worst["in_sd"], 0.0), "worst_analyte": worst.get("analyte"),
        "worst_case": worst.get("case"), "max_error_by_analyte": by_analyte,
        "max_error_in_residual_sd_typical": typical_in_sd, "observations_checked": checked,
    }
