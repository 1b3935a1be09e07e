"""Turn a typed PopsimConfig into core objects, validating values and converting units.

Every error is a ConfigError whose message names the config key and the valid values.
"""

from __future__ import annotations

import math
from dataclasses import asdict, replace
from typing import NamedTuple

from popsim.config.schema import DistributionConfig, PopsimConfig
from popsim.dosing.drugs import PROTOCOL_DRUGS, TRT_PRODUCTS
from popsim.dosing.regimen import RegimenError
from popsim.outcomes.recovery import ORIGINS, EndpointSpec, endpoint_names
from popsim.outcomes.study import StudySpec
from popsim.population.design import (
    CohortDesign, CovariateSpec, MonitoringRule, Protocol, ProtocolCourse, TRTArm, TRTDesign,
)
from popsim.population.distributions import KINDS, Distribution
from popsim.population.variability import DEFAULT_VARIABILITY, Variability
from popsim.solve.integrator import OBSERVABLES
from popsim.solve.settings import SolverSettings
from popsim.units import DAYS_PER_MONTH

TRT_CHOICES = tuple(TRT_PRODUCTS) + ("mixed",)


class ConfigError(ValueError):
    """An invalid configuration value; the message names the key and the valid values."""


class RunPlan(NamedTuple):
    """What the app runs: the cohort, the study settings and a description for reports."""

    design: CohortDesign
    study: StudySpec
    info: dict


def _distribution(cfg: DistributionConfig, key: str, scale: float = 1.0) -> Distribution:
    if cfg.kind not in KINDS:
        raise ConfigError(f"{key}.kind '{cfg.kind}' is invalid; valid kinds are {list(KINDS)}")
    d = Distribution(
        kind=cfg.kind,
        value=None if cfg.value is None else cfg.value * scale,
        low=None if cfg.low is None else cfg.low * scale,
        high=None if cfg.high is None else cfg.high * scale,
        mean=None if cfg.mean is None else cfg.mean * scale,
        sd=None if cfg.sd is None else cfg.sd * scale,
        median=None if cfg.median is None else cfg.median * scale,
        cv=cfg.cv, p=cfg.p,
        values=tuple(float(v) * scale for v in cfg.values), weights=tuple(float(w) for w in cfg.weights))
    try:
        d.validate(key)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return d


def _positive(value, key: str, what: str = "> 0"):
    if value is None or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{key} must be {what}, got {value!r}")
    return value


def build_trt(cfg: PopsimConfig) -> TRTDesign:
    """TRT design from ``cfg.trt``."""
    t = cfg.trt
    if t.ester not in TRT_CHOICES:
        raise ConfigError(f"trt.ester '{t.ester}' is invalid; valid values are {list(TRT_CHOICES)}")
    if not t.arms:
        raise ConfigError("trt.arms is empty; give the products of the cohort (see configs/trt/default.yaml)")
    arms = []
    for i, arm in enumerate(t.arms):
        if arm.product not in TRT_PRODUCTS:
            raise ConfigError(f"trt.arms[{i}].product '{arm.product}' is invalid; valid values are {list(TRT_PRODUCTS)}")
        if not arm.first_dose_extra_mg >= 0:
            raise ConfigError(f"trt.arms[{i}].first_dose_extra_mg must be >= 0, got {arm.first_dose_extra_mg!r}")
        arms.append(TRTArm(arm.product, arm.weight, _distribution(arm.dose_mg, f"trt.arms[{i}].dose_mg"),
                           _distribution(arm.interval_days, f"trt.arms[{i}].interval_days"), float(arm.first_dose_extra_mg)))
    if t.ester != "mixed":
        chosen = [a for a in arms if a.product == t.ester]
        arms = [replace(chosen[0], weight=1.0) if chosen else TRTArm(t.ester, 1.0)]
    if t.dose_mg is not None:
        _positive(t.dose_mg, "trt.dose_mg")
        arms = [replace(a, dose_mg=Distribution("fixed", value=t.dose_mg)) for a in arms]
    if t.interval_days is not None:
        _positive(t.interval_days, "trt.interval_days")
        arms = [replace(a, interval_days=Distribution("fixed", value=t.interval_days)) for a in arms]
    if t.duration_months is not None:
        _positive(t.duration_months, "trt.duration_months")
        duration = Distribution("fixed", value=t.duration_months * DAYS_PER_MONTH)
    else:
        duration = _distribution(t.duration_distribution_months, "trt.duration_distribution_months", DAYS_PER_MONTH)
    return TRTDesign(tuple(arms), duration, float(t.start_day))


def build_protocol(cfg: PopsimConfig) -> Protocol:
    """Recovery protocol from ``cfg.protocol``."""
    p = cfg.protocol
    courses = []
    for i, c in enumerate(p.courses):
        key = f"protocol.courses[{i}]"
        if c.drug not in PROTOCOL_DRUGS:
            raise ConfigError(f"{key}.drug '{c.drug}' is invalid; valid values are {sorted(PROTOCOL_DRUGS)}")
        dose = c.dose if c.dose_distribution is None else _distribution(c.dose_distribution, f"{key}.dose_distribution")
        courses.append(ProtocolCourse(c.drug, dose, c.dose_unit, c.interval_days, c.duration_days,
                                      c.start_offset_days, c.anchor, c.enabled, c.arm, c.end_anchor,
                                      float(c.end_offset_days)))
    rules = []
    for i, r in enumerate(p.rules):
        if r.observable not in OBSERVABLES:
            raise ConfigError(f"protocol.rules[{i}].observable '{r.observable}' is invalid; valid values are {list(OBSERVABLES)}")
        rules.append(MonitoringRule(r.observable, r.direction, r.threshold, r.target_course, r.factor, r.max_scale,
                                    r.every_days, r.first_check_offset_days))
    return Protocol(p.name, tuple(courses), tuple(rules), tuple((str(k), float(v)) for k, v in p.arms.items()))


def build_design(cfg: PopsimConfig) -> CohortDesign:
    """Cohort design from the population, TRT and protocol sections."""
    pop = cfg.population
    if not 0.0 <= pop.asian_fraction <= 1.0:
        raise ConfigError(f"population.asian_fraction must be in [0, 1], got {pop.asian_fraction}")
    covariates = CovariateSpec(
        _distribution(pop.age_years, "population.age_years"),
        _distribution(pop.bmi_kg_m2, "population.bmi_kg_m2"),
        Distribution("bernoulli", p=pop.asian_fraction),
        _distribution(pop.testicular_function, "population.testicular_function"))
    cv = dict(DEFAULT_VARIABILITY.cv) if pop.use_default_variability else {}
    cv.update(pop.variability.cv)
    correlation = list(DEFAULT_VARIABILITY.correlation) if pop.use_default_variability else []
    for i, item in enumerate(pop.variability.correlation):
        if len(item) != 3:
            raise ConfigError(f"population.variability.correlation[{i}] must be [parameter_a, parameter_b, rho]")
        correlation.append((str(item[0]), str(item[1]), float(item[2])))
    variability = Variability(tuple(cv.items()), tuple(correlation))
    grid = []
    for name, values in pop.grid.items():
        if name == "trt.duration_months":  # the config speaks months, the core days
            name, values = "trt.duration_days", [float(v) * DAYS_PER_MONTH for v in values]
        grid.append((name, tuple(values)))
    design = CohortDesign(covariates, variability, build_trt(cfg), build_protocol(cfg), tuple(grid),
                          tuple(pop.covariate_effects.items()))
    try:
        design.validate()
    except (ValueError, RegimenError) as e:
        raise ConfigError(str(e)) from None
    return design


def build_study(cfg: PopsimConfig, design: CohortDesign) -> StudySpec:
    """Study settings from the population, solver, outcomes and output sections."""
    if isinstance(cfg.population.size, bool) or not isinstance(cfg.population.size, int) or cfg.population.size <= 0:
        raise ConfigError(f"population.size must be a positive integer, got {cfg.population.size!r}")
    o = cfg.outcomes
    if o.origin not in ORIGINS:
        raise ConfigError(f"outcomes.origin '{o.origin}' is invalid; valid values are {list(ORIGINS)}")
    _positive(o.horizon_months, "outcomes.horizon_months")
    endpoints = EndpointSpec(tuple(o.sperm_thresholds_m_ml), tuple(o.baseline_fractions), o.tmc_threshold_m,
                             o.sampling_interval_days, o.first_sample_offset_days,
                             pre_origin_sample_days=tuple(float(d) for d in o.pre_origin_sample_days))
    try:
        endpoints.validate()
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if o.primary_endpoint not in endpoint_names(endpoints):
        raise ConfigError(f"outcomes.primary_endpoint '{o.primary_endpoint}' is invalid; valid values are "
                          f"{endpoint_names(endpoints)}")
    s = cfg.solver
    try:
        method = SolverSettings.method if s.method is None else s.method
        default = SolverSettings(method=method)
        dt = default.dt_days if s.dt_days is None else s.dt_days
        if cfg.protocol.max_dt_days is not None and isinstance(dt, (int, float)):
            dt = min(dt, cfg.protocol.max_dt_days)
        settings = SolverSettings(dt_days=dt, precision=s.precision, chunk_size=s.chunk_size, method=method,
                                  quiet_after_days=s.quiet_after_days, quiet_dt_days=s.quiet_dt_days)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    out = cfg.output
    if out.trajectories < 0:
        raise ConfigError(f"output.trajectories must be >= 0, got {out.trajectories}")
    _positive(out.trajectory_step_days, "output.trajectory_step_days")
    return StudySpec(n_patients=cfg.population.size, seed=cfg.seed, origin=o.origin,
                     recovery_horizon_days=o.horizon_months * DAYS_PER_MONTH, endpoints=endpoints,
                     n_trajectories=min(out.trajectories, cfg.population.size),
                     trajectory_step_days=out.trajectory_step_days, settings=settings)


def build_run(cfg: PopsimConfig) -> RunPlan:
    """Validate everything and return the run plan (no simulation happens here)."""
    if not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {cfg.seed!r}")
    design = build_design(cfg)
    study = build_study(cfg, design)
    protocol = asdict(cfg.protocol)
    info = {"protocol": cfg.protocol.name, "protocol_description": cfg.protocol.description,
            "courses": protocol["courses"], "rules": protocol["rules"], "trt": asdict(cfg.trt),
            "population_size": cfg.population.size,
            "seed": cfg.seed, "dt_days": study.settings.dt_days, "precision": study.settings.precision,
            "origin": study.origin, "horizon_months": cfg.outcomes.horizon_months,
            "report_months": list(cfg.outcomes.report_months), "primary_endpoint": cfg.outcomes.primary_endpoint}
    return RunPlan(design, study, info)
