"""The configuration of ``popsim-calibrate`` (configs/calibrate.yaml) as core objects.

Takes the resolved configuration as plain Python containers; every problem is a
ConfigError naming the key and the valid values, raised before anything runs.
"""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from popsim.calibration.inference import InferenceError, InferenceSettings, validate_settings
from popsim.calibration.lab_schema import ANALYTE_CANONICAL_UNITS
from popsim.calibration.spec import (
    ERROR_MODELS, CalibrationSpec, CalibrationSpecError, EstimatedParameter, ResidualModel, validate_spec,
)
from popsim.calibration.synthetic import EXAMPLE_CSV
from popsim.config.build import ConfigError
from popsim.dosing.drugs import TRT_PRODUCTS
from popsim.dosing.regimen import Regimen, RegimenError, TRTCourse, validate_regimen
from popsim.units import DAYS_PER_MONTH, TIME_UNIT_TO_DAYS


class CohortPrediction(NamedTuple):
    regimen: Regimen
    label: str
    n_men: int
    draws: int
    age_years: float
    bmi_kg_m2: float
    threshold_m_ml: float


class CalibrationPlan(NamedTuple):
    """What popsim-calibrate runs."""

    data_path: Path
    time_unit: str
    units: dict
    spec: CalibrationSpec
    inference: InferenceSettings
    thresholds_m_ml: tuple[float, ...]
    horizon_months: float
    patient_draws: int
    vpc_replicates: int
    cohort: CohortPrediction
    figures: bool


def _section(cfg: Mapping, key: str, where: str | None = None) -> Mapping:
    value = cfg.get(key)
    if not isinstance(value, Mapping):
        raise ConfigError(f"'{where or key}' must be a mapping (see configs/calibrate.yaml), got {value!r}")
    return value


def _number(section: Mapping, key: str, where: str, positive: bool = True) -> float:
    value = section.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (positive and value <= 0):
        raise ConfigError(f"{where}.{key} must be a finite number{' > 0' if positive else ''}, got {value!r}")
    return float(value)


def _integer(section: Mapping, key: str, where: str, minimum: int = 1) -> int:
    value = section.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}.{key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


MODEL_KEYS = {"estimated", "residuals", "parameterization", "output_step_days", "sperm_floor_m_ml"}
SOLVER_KEYS = {"dt_days", "precision", "method"}


def build_calibration(cfg: Mapping[str, Any]) -> CalibrationPlan:
    """Check the configuration and turn it into a CalibrationPlan.

    Raises:
        ConfigError: naming the first invalid key and what would be valid.
    """
    data = _section(cfg, "data")
    path = data.get("path")
    if isinstance(path, str) and path.strip() == "":
        raise ConfigError("data.path: empty; give a CSV file (docs/lab-data.md), or leave data.path out "
                          "(data.path=null) to calibrate to the shipped example")
    data_path = EXAMPLE_CSV if path is None else Path(str(path)).expanduser()
    if data_path.is_dir():
        raise ConfigError(f"data.path: '{data_path}' is a folder; give the CSV file inside it")
    if not data_path.is_file():
        raise ConfigError(f"data.path: no such file '{data_path}' (give a CSV in the NONMEM-style format of "
                          "docs/lab-data.md, or leave data.path=null for the shipped example)")
    time_unit = data.get("time_unit", "days")
    if time_unit not in TIME_UNIT_TO_DAYS:
        raise ConfigError(f"data.time_unit must be one of {sorted(TIME_UNIT_TO_DAYS)}, got {time_unit!r}")
    units = data.get("units") or {}
    if not isinstance(units, Mapping):
        raise ConfigError(f"data.units must be a mapping analyte or drug -> unit, got {units!r}")

    model = _section(cfg, "model")
    unknown = set(model) - MODEL_KEYS
    if unknown:
        raise ConfigError(f"model: unknown key(s) {sorted(unknown)}; valid: {sorted(MODEL_KEYS)}")
    estimated_cfg = model.get("estimated")
    if not isinstance(estimated_cfg, (list, tuple)) or not estimated_cfg:
        raise ConfigError("model.estimated must be a non-empty list of {name, prior_log_sd, omega_prior}")
    estimated = []
    for i, item in enumerate(estimated_cfg):
        if not isinstance(item, Mapping) or "name" not in item:
            raise ConfigError(f"model.estimated[{i}] must be a mapping with a 'name', got {item!r}")
        unknown = set(item) - {"name", "prior_log_sd", "omega_prior", "centred"}
        if unknown:
            raise ConfigError(f"model.estimated[{i}]: unknown key(s) {sorted(unknown)}; "
                              "valid: name, prior_log_sd, omega_prior, centred")
        centred = item.get("centred", False)
        if not (isinstance(centred, bool) or centred == "azoospermic"):
            raise ConfigError(f"model.estimated[{i}].centred must be true, false or azoospermic "
                              f"(centred only for the men whose data show azoospermia), got {centred!r}")
        estimated.append(EstimatedParameter(str(item["name"]), item.get("prior_log_sd", 0.5), item.get("omega_prior", 0.5),
                                            centred))
    residual_cfg = model.get("residuals")
    if not isinstance(residual_cfg, Mapping) or not residual_cfg:
        raise ConfigError("model.residuals must map each analyte to {model, sigma_prior, additive_prior}")
    residuals = []
    for analyte, item in residual_cfg.items():
        if not isinstance(item, Mapping):
            raise ConfigError(f"model.residuals.{analyte} must be a mapping with a 'model', got {item!r}")
        unknown = set(item) - {"model", "sigma_prior", "additive_prior"}
        if unknown:
            raise ConfigError(f"model.residuals.{analyte}: unknown key(s) {sorted(unknown)}; valid: model, sigma_prior, additive_prior")
        if analyte not in ANALYTE_CANONICAL_UNITS:
            raise ConfigError(f"model.residuals.{analyte}: unknown analyte; valid: {sorted(ANALYTE_CANONICAL_UNITS)}")
        if item.get("model", "lognormal") not in ERROR_MODELS:
            raise ConfigError(f"model.residuals.{analyte}.model must be one of {ERROR_MODELS}, got {item.get('model')!r}")
        for key in ("sigma_prior", "additive_prior"):
            if key in item:
                _number(item, key, f"model.residuals.{analyte}")
        residuals.append(ResidualModel(str(analyte), item.get("model", "lognormal"), item.get("sigma_prior", 0.3),
                                       item.get("additive_prior", 1.0)))
    solver = _section(cfg, "solver")
    unknown = set(solver) - SOLVER_KEYS
    if unknown:
        raise ConfigError(f"solver: unknown key(s) {sorted(unknown)}; valid: {sorted(SOLVER_KEYS)}")
    spec = CalibrationSpec(estimated=tuple(estimated), residuals=tuple(residuals),
                           dt_days=solver.get("dt_days"), output_step_days=model.get("output_step_days", 1.0),
                           sperm_floor_m_ml=model.get("sperm_floor_m_ml", 0.01), precision=solver.get("precision", "float32"),
                           parameterization=model.get("parameterization", "mixed"),
                           method=solver.get("method", CalibrationSpec.method))
    try:
        validate_spec(spec)
    except CalibrationSpecError as error:
        raise ConfigError(str(error)) from None

    inference_cfg = dict(_section(cfg, "inference"))
    valid = {f.name for f in fields(InferenceSettings)} - {"seed"}
    unknown = set(inference_cfg) - valid
    if unknown:
        raise ConfigError(f"inference: unknown key(s) {sorted(unknown)}; valid: {sorted(valid)}")
    seed = cfg.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    settings = InferenceSettings(**inference_cfg, seed=seed)
    try:
        validate_settings(settings)
    except InferenceError as error:
        raise ConfigError(str(error)) from None

    pred = _section(cfg, "predictions")
    thresholds = pred.get("thresholds_m_ml")
    if (not isinstance(thresholds, (list, tuple)) or not thresholds
            or not all(isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0 for t in thresholds)):
        raise ConfigError(f"predictions.thresholds_m_ml must be a non-empty list of numbers > 0, got {thresholds!r}")
    cohort_cfg = _section(pred, "cohort", "predictions.cohort")
    product = cohort_cfg.get("product")
    if product not in TRT_PRODUCTS:
        raise ConfigError(f"predictions.cohort.product must be one of {sorted(TRT_PRODUCTS)}, got {product!r}")
    where = "predictions.cohort"
    dose = _number(cohort_cfg, "dose_mg", where)
    interval = _number(cohort_cfg, "interval_days", where)
    months = _number(cohort_cfg, "duration_months", where)
    regimen = Regimen(trt=(TRTCourse(product, dose, "mg", interval, months * DAYS_PER_MONTH, 0.0),))
    try:
        validate_regimen(regimen, where=where)
    except RegimenError as error:
        raise ConfigError(str(error)) from None
    cohort = CohortPrediction(
        regimen=regimen, label=f"{product} {dose:g} mg every {interval:g} d for {months:g} months, then stop",
        n_men=_integer(cohort_cfg, "n_men", where), draws=_integer(cohort_cfg, "draws", where),
        age_years=_number(cohort_cfg, "age_years", where), bmi_kg_m2=_number(cohort_cfg, "bmi_kg_m2", where),
        threshold_m_ml=_number(cohort_cfg, "threshold_m_ml", where),
    )
    output = _section(cfg, "output")
    unknown = set(output) - {"figures"}
    if unknown:
        raise ConfigError(f"output: unknown key(s) {sorted(unknown)}; valid: ['figures']")
    if not isinstance(output.get("figures", True), bool):
        raise ConfigError(f"output.figures must be true or false, got {output.get('figures')!r}")
    return CalibrationPlan(
        data_path=data_path, time_unit=str(time_unit), units=dict(units), spec=spec, inference=settings,
        thresholds_m_ml=tuple(float(t) for t in thresholds),
        horizon_months=_number(pred, "horizon_months", "predictions"),
        patient_draws=_integer(pred, "patient_draws", "predictions"),
        vpc_replicates=_integer(pred, "vpc_replicates", "predictions"),
        cohort=cohort, figures=bool(output.get("figures", True)),
    )
