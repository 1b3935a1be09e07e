"""Typed configuration schemas (stdlib dataclasses; no Hydra import here).

popsim.app registers these in Hydra's ConfigStore so that every YAML file and command-line
override is type-checked against them; popsim.config.build turns them into core objects.
Names carry their units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class DistributionConfig:
    """A distribution: kind is fixed, uniform, normal, lognormal, bernoulli or choice."""

    kind: str = "fixed"
    value: Optional[float] = None
    low: Optional[float] = None
    high: Optional[float] = None
    mean: Optional[float] = None
    sd: Optional[float] = None
    median: Optional[float] = None
    cv: Optional[float] = None
    p: Optional[float] = None
    values: List[float] = field(default_factory=list)
    weights: List[float] = field(default_factory=list)


@dataclass
class VariabilityConfig:
    """Log-normal IIV: CV per model parameter and correlations [a, b, rho] of the etas."""

    cv: Dict[str, float] = field(default_factory=dict)
    correlation: List[List[Any]] = field(default_factory=list)


@dataclass
class PopulationConfig:
    """The virtual men: size, covariate distributions, IIV, factorial grid."""

    size: int = 2000
    age_years: DistributionConfig = field(default_factory=lambda: DistributionConfig("uniform", low=25.0, high=60.0))
    bmi_kg_m2: DistributionConfig = field(default_factory=lambda: DistributionConfig(
        "normal", mean=27.0, sd=4.0, low=18.0, high=45.0))
    asian_fraction: float = 0.0
    testicular_function: DistributionConfig = field(default_factory=lambda: DistributionConfig("fixed", value=1.0))
    variability: VariabilityConfig = field(default_factory=VariabilityConfig)
    use_default_variability: bool = True
    covariate_effects: Dict[str, float] = field(default_factory=dict)
    grid: Dict[str, List[Any]] = field(default_factory=dict)


@dataclass
class TRTArmConfig:
    """One TRT product of a mixed cohort."""

    product: str = "enanthate"
    weight: float = 1.0
    dose_mg: DistributionConfig = field(default_factory=lambda: DistributionConfig("fixed", value=200.0))
    interval_days: DistributionConfig = field(default_factory=lambda: DistributionConfig("fixed", value=7.0))
    first_dose_extra_mg: float = 0.0  # loading dose: extra ester mass with the first injection


@dataclass
class TRTConfig:
    """TRT history. ``ester`` picks one product (its arm's dose and interval distributions)
    or "mixed" (all arms by weight); fixed values override the distributions."""

    ester: str = "mixed"
    dose_mg: Optional[float] = None
    interval_days: Optional[float] = None
    duration_months: Optional[float] = None
    duration_distribution_months: DistributionConfig = field(default_factory=lambda: DistributionConfig(
        "uniform", low=12.0, high=60.0))
    start_day: float = 0.0
    arms: List[TRTArmConfig] = field(default_factory=list)


@dataclass
class CourseConfig:
    """A protocol drug course relative to an anchor of the patient's TRT history.

    dose_distribution (when set) replaces ``dose`` by a per-man draw (e.g. {kind: choice,
    values: [25, 50]}); ``arm`` gives the course only to the men of that arm of
    ``protocol.arms``; ``end_anchor`` ends it at that anchor of each man's history plus
    ``end_offset_days`` (duration_days is then ignored).
    """

    drug: str = "hcg"
    dose: float = 0.0
    dose_unit: str = ""
    interval_days: float = 1.0
    duration_days: float = 180.0
    start_offset_days: float = 0.0
    anchor: str = "trt_end"
    enabled: bool = True
    dose_distribution: Optional[DistributionConfig] = None
    arm: str = ""
    end_anchor: Optional[str] = None
    end_offset_days: float = 0.0


@dataclass
class RuleConfig:
    """A monitoring rule: check ``observable`` every ``every_days``; change a course."""

    observable: str = "estradiol_pg_ml"
    direction: str = "above"
    threshold: float = 0.0
    target_course: int = 0
    factor: float = 1.0
    max_scale: float = 1.0
    every_days: float = 28.0
    first_check_offset_days: float = 28.0


@dataclass
class ProtocolConfig:
    """A named recovery protocol."""

    name: str = "none"
    description: str = ""
    courses: List[CourseConfig] = field(default_factory=list)
    rules: List[RuleConfig] = field(default_factory=list)
    arms: Dict[str, float] = field(default_factory=dict)  # arm -> weight: men split across arms
    # Largest step this protocol needs for the accuracy targets (e.g. gonadorelin).
    max_dt_days: Optional[float] = None


@dataclass
class SolverConfig:
    """Integrator settings; null = the method's default (dt_days reduced to protocol.max_dt_days)."""

    method: Optional[str] = None
    dt_days: Optional[float] = None
    precision: str = "float32"
    chunk_size: int = 2048
    quiet_after_days: Optional[float] = None
    quiet_dt_days: Optional[float] = None


@dataclass
class OutcomesConfig:
    """Endpoints, origin, horizon and summaries."""

    origin: str = "first_missed_dose"
    horizon_months: float = 24.0
    sperm_thresholds_m_ml: List[float] = field(default_factory=lambda: [1.0, 3.0, 5.0, 10.0, 15.0, 16.0, 20.0])
    baseline_fractions: List[float] = field(default_factory=lambda: [0.5, 0.85])
    tmc_threshold_m: float = 5.0
    sampling_interval_days: float = 30.0
    first_sample_offset_days: float = 30.0
    report_months: List[float] = field(default_factory=lambda: [3.0, 6.0, 12.0, 18.0, 24.0])
    pre_origin_sample_days: List[float] = field(default_factory=list)  # semen samples this many days before the origin
    primary_endpoint: str = "conc_ge_15"


@dataclass
class OutputConfig:
    """What each run writes."""

    trajectories: int = 200
    trajectory_step_days: float = 7.0
    figures: bool = True
    report: bool = True
    progress: bool = True


@dataclass
class PopsimConfig:
    """The whole run configuration."""

    seed: int = 0
    population: PopulationConfig = field(default_factory=PopulationConfig)
    trt: TRTConfig = field(default_factory=TRTConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    outcomes: OutcomesConfig = field(default_factory=OutcomesConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    # Run directory of an interrupted run to finish from its completed chunks (same settings).
    resume: Optional[str] = None
