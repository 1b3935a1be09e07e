"""What a calibration estimates and how observations scatter around the model.

A :class:`CalibrationSpec` names the physiological parameters that get a population
value and inter-individual variability (IIV), the width of their priors, the residual
error model of each analyte, and the solver settings of the likelihood. Everything is
plain data, validated with messages that name the field and the valid values.

Priors (docs/calibration.md explains the choice):
- population value ``theta_pop[k] ~ LogNormal(log default_k, prior_log_sd_k)``: centred
  on the literature default (popsim.model.parameters), a log-sd of 0.5 lets the data move
  it by a factor of ~2.7 at 2 sd;
- IIV ``omega[k] ~ HalfNormal(omega_prior_k)`` on the log scale (0.5 ~ up to 50 % CV);
- per-patient ``theta[i, k] = theta_pop[k] * covariate_factor[i, k] * exp(omega[k] * eta[i, k])``
  with ``eta ~ Normal(0, 1)`` (non-centred);
- residual scales ``sigma ~ HalfNormal(prior)`` per analyte.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from popsim.calibration.lab_schema import ANALYTE_CANONICAL_UNITS
from popsim.model.parameters import PARAMETER_INDEX
from popsim.solve.methods import METHODS

ERROR_MODELS = ("lognormal", "proportional", "additive", "combined")
PARAMETERIZATIONS = ("centred", "non_centred", "mixed")
# Values of EstimatedParameter.centred: sampled centred for every man, for none, or only for
# the men whose data show a suppressed sperm output (AZOOSPERMIC_RULE).
CENTRED_CHOICES = (True, False, "azoospermic")
# A man counts as azoospermic in his data when one of his sperm concentrations is censored
# (below the LLOQ: no sperm seen) or below 1 M/mL (the suppression threshold of the
# contraception trials, calibration-targets.md): his spermatogonial reserve emptied, so
# his recovery curve informs his reserve regrowth rate.
AZOOSPERMIC_BELOW_M_ML = 1.0


class CalibrationSpecError(ValueError):
    """An invalid calibration setting; the message names the field and the valid values."""


@dataclass(frozen=True)
class EstimatedParameter:
    """One physiological parameter with a population value and IIV.

    Attributes:
        name: a model parameter (popsim.model.parameters.PARAMETER_INDEX).
        prior_log_sd: sd of the log-normal prior of the population value around the default.
        omega_prior: scale of the half-normal prior of the IIV sd (log scale).
        centred: under ``parameterization="mixed"``: True samples the parameter centred for
            every man (suits a parameter that every man's data pin tightly, e.g. a
            baseline measured at many visits), False non-centred for every man, and
            ``"azoospermic"`` centred for the men whose data show a sperm concentration
            censored or below ``AZOOSPERMIC_BELOW_M_ML`` and non-centred for the others
            (suits the reserve regrowth rate, which only those men's recovery curves see;
            a Laplace fit, which needs a proper mode, samples it non-centred for every man).
    """

    name: str
    prior_log_sd: float = 0.5
    omega_prior: float = 0.5
    centred: bool | str = False


@dataclass(frozen=True)
class ResidualModel:
    """Residual error of one analyte.

    ``lognormal``: log y ~ Normal(log f, sigma) (exponential error; ``sigma`` ~ CV).
    ``proportional``: y ~ Normal(f, sigma * f). ``additive``: y ~ Normal(f, sigma_additive).
    ``combined``: y ~ Normal(f, sqrt(sigma_additive^2 + (sigma * f)^2)).
    Values below the limit of quantification contribute P(y < LLOQ) (M3).

    Attributes:
        analyte: lab analyte (popsim.calibration.lab_schema.ANALYTE_CANONICAL_UNITS).
        model: one of ERROR_MODELS.
        sigma_prior: half-normal scale of the proportional / log-scale sd (unitless).
        additive_prior: half-normal scale of the additive sd, analyte's canonical unit.
    """

    analyte: str
    model: str = "lognormal"
    sigma_prior: float = 0.3
    additive_prior: float = 1.0


# Within-man CVs that set the default residual priors: hormones ~10-25 % (assay plus
# day-to-day), one semen sample 30-50 % (calibration-targets.md, "conventions").
DEFAULT_RESIDUALS: tuple[ResidualModel, ...] = (
    ResidualModel("total_testosterone", "lognormal", 0.25),
    ResidualModel("free_testosterone", "lognormal", 0.25),
    ResidualModel("lh", "lognormal", 0.3),
    ResidualModel("fsh", "lognormal", 0.3),
    ResidualModel("estradiol", "lognormal", 0.3),
    ResidualModel("inhibin_b", "lognormal", 0.3),
    ResidualModel("shbg", "lognormal", 0.2),
    ResidualModel("sperm_concentration", "lognormal", 0.5),
)

# What drives recovery after TRT in the model (docs/model.md): baselines of the axis and
# the rate at which the spermatogonial reserve regrows.
DEFAULT_ESTIMATED: tuple[EstimatedParameter, ...] = (
    # Baselines are measured at many visits (centred under "mixed"); the regrowth rate is
    # seen only through the recovery curve of a man whose reserve emptied: centred for the
    # men whose data show azoospermia, non-centred for the others (docs/calibration.md).
    EstimatedParameter("t_base_nmol_l", 0.3, 0.4, centred=True),
    EstimatedParameter("lh_base_iu_l", 0.3, 0.4, centred=True),
    EstimatedParameter("sperm_base_m_ml", 0.5, 0.7, centred=True),
    EstimatedParameter("k_reserve_recovery_per_day", 0.7, 0.7, centred="azoospermic"),
)


@dataclass(frozen=True)
class CalibrationSpec:
    """The statistical model of a calibration.

    Attributes:
        estimated: parameters with a population value and IIV.
        residuals: residual error model per analyte (analytes absent from the data are ignored).
        dt_days: integrator step of the likelihood (popsim.solve.settings.SolverSettings;
            for the combined default method, the step of its RK4 part).
        method: step method of the likelihood (SolverSettings.method).
        output_step_days: spacing of the simulated grid that predictions are interpolated from.
        sperm_floor_m_ml: floor of the predicted sperm concentration on the log scale
            (an azoospermic prediction is compared as this value; M/mL).
        precision: "float32" or "float64".
        parameterization: how individual parameters are sampled. "non_centred":
            the standardised effects ``eta ~ Normal(0, 1)`` (suits sparse data);
            "centred": each man's log parameters directly, ``log theta[i, k] ~
            Normal(log theta_pop[k] + log covariate_factor[i, k], omega[k])`` (often mixes
            better when every man has many observations, which pin his parameters and
            leave no funnel with omega); "mixed" (default): centred for the parameters
            marked ``centred``, non-centred for the others (one sampled site ``z``). All report
            ``eta``, ``log_theta`` and ``theta``.
    """

    estimated: tuple[EstimatedParameter, ...] = DEFAULT_ESTIMATED
    residuals: tuple[ResidualModel, ...] = DEFAULT_RESIDUALS
    # 12 h: on the shipped example within 0.073 residual sd of a 4x finer step everywhere
    # the step check looks (6 h: 0.011; 1 day: 12, unstable; docs/calibration.md).
    dt_days: float = 0.5
    output_step_days: float = 1.0
    sperm_floor_m_ml: float = 0.01
    precision: str = "float32"
    parameterization: str = "mixed"
    extra: dict = field(default_factory=dict)
    # The likelihood keeps the method its step was measured with: at 12 h, rk4-ros34pw2
    # takes two 6-hour RK4 parts per step, while the forward default (rk4-dose-ros34pw2)
    # would take one 12-hour part, unstable in the weeks after stopping, when the feedback
    # loop closes (eigenvalues to -10/day; docs/performance.md).
    method: str = "rk4-ros34pw2"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.estimated)

    def residual(self, analyte: str) -> ResidualModel:
        for r in self.residuals:
            if r.analyte == analyte:
                return r
        raise CalibrationSpecError(f"model.residuals: no residual error model for analyte '{analyte}' "
                                   f"(give one of {ERROR_MODELS} for it)")


def _positive(value, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise CalibrationSpecError(f"{where} must be a finite number > 0, got {value!r}")


def validate_spec(spec: CalibrationSpec) -> None:
    """Raise CalibrationSpecError naming the first invalid field."""
    if not spec.estimated:
        raise CalibrationSpecError("model.estimated is empty: name at least one parameter of popsim.model.parameters")
    seen = set()
    for i, e in enumerate(spec.estimated):
        where = f"model.estimated[{i}]"
        if e.name not in PARAMETER_INDEX:
            close = sorted(n for n in PARAMETER_INDEX if n.split("_")[0] == str(e.name).split("_")[0])[:8]
            raise CalibrationSpecError(f"{where}.name: unknown parameter '{e.name}'"
                                       + (f"; similar: {close}" if close else "") + " (see docs/model.md)")
        if not PARAMETER_INDEX[e.name].positive:
            raise CalibrationSpecError(f"{where}.name: '{e.name}' may be zero or negative; only positive parameters "
                                       "can have log-normal IIV")
        if e.name in seen:
            raise CalibrationSpecError(f"{where}.name: '{e.name}' is listed twice")
        seen.add(e.name)
        _positive(e.prior_log_sd, f"{where}.prior_log_sd")
        _positive(e.omega_prior, f"{where}.omega_prior")
        if not any(e.centred is c or (isinstance(c, str) and e.centred == c) for c in CENTRED_CHOICES):
            raise CalibrationSpecError(f"{where}.centred must be true, false or 'azoospermic', got {e.centred!r}")
    analytes = set()
    for i, r in enumerate(spec.residuals):
        where = f"model.residuals[{i}]"
        if r.analyte not in ANALYTE_CANONICAL_UNITS:
            raise CalibrationSpecError(f"{where}.analyte: unknown analyte '{r.analyte}'; valid: "
                                       f"{sorted(ANALYTE_CANONICAL_UNITS)}")
        if r.analyte in analytes:
            raise CalibrationSpecError(f"{where}.analyte: '{r.analyte}' is listed twice")
        analytes.add(r.analyte)
        if r.model not in ERROR_MODELS:
            raise CalibrationSpecError(f"{where}.model: '{r.model}' is not a residual error model; valid: {ERROR_MODELS}")
        _positive(r.sigma_prior, f"{where}.sigma_prior")
        _positive(r.additive_prior, f"{where}.additive_prior")
    if not isinstance(spec.method, str) or spec.method not in METHODS:
        raise CalibrationSpecError(f"solver.method must be one of {sorted(METHODS)}, got {spec.method!r}")
    _positive(spec.dt_days, "solver.dt_days")
    if spec.dt_days > 2.0:
        raise CalibrationSpecError(f"solver.dt_days must be <= 2 days, got {spec.dt_days}")
    _positive(spec.output_step_days, "model.output_step_days")
    ratio = spec.output_step_days / spec.dt_days
    if abs(ratio - round(ratio)) > 1e-6:
        raise CalibrationSpecError(f"model.output_step_days ({spec.output_step_days}) must be a whole multiple of "
                                   f"solver.dt_days ({spec.dt_days})")
    _positive(spec.sperm_floor_m_ml, "model.sperm_floor_m_ml")
    if spec.parameterization not in PARAMETERIZATIONS:
        raise CalibrationSpecError(f"model.parameterization must be one of {PARAMETERIZATIONS}, "
                                   f"got {spec.parameterization!r}")
    if spec.precision not in ("float32", "float64"):
        raise CalibrationSpecError(f"solver.precision must be 'float32' or 'float64', got {spec.precision!r}")
