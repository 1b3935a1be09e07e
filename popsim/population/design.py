"""What a virtual cohort is: covariate distributions, IIV, a TRT design, a recovery
protocol (with monitoring rules) and optional factorial grids. Plain frozen data."""

from __future__ import annotations

from dataclasses import dataclass, field

from popsim.dosing.drugs import PROTOCOL_DRUGS, TRT_PRODUCTS
from popsim.dosing.regimen import RegimenError, dose_in_canonical_unit
from popsim.population.covariates import COVARIATE_INDEX
from popsim.population.distributions import Distribution, fixed
from popsim.population.variability import DEFAULT_VARIABILITY, Variability
from popsim.solve.integrator import OBSERVABLES

ANCHORS = ("trt_end", "last_dose", "trt_start", "day0")
GRID_FIELDS = ("age_years", "bmi_kg_m2", "asian", "testicular_function", "trt.duration_days", "trt.dose_mg",
               "trt.interval_days", "trt.product")


@dataclass(frozen=True)
class CovariateSpec:
    """Distributions of the covariates of a virtual man."""

    age_years: Distribution = Distribution("uniform", low=25.0, high=60.0)
    bmi_kg_m2: Distribution = Distribution("normal", mean=27.0, sd=4.0, low=18.0, high=45.0)
    asian: Distribution = Distribution("bernoulli", p=0.0)
    testicular_function: Distribution = fixed(1.0)


@dataclass(frozen=True)
class TRTArm:
    """One TRT product of a cohort, chosen with probability proportional to ``weight``.

    ``first_dose_extra_mg`` is added to the first injection (a loading dose, e.g. 500 for
    testosterone undecanoate 1000 mg then 500 mg monthly); 0 = none.
    """

    product: str
    weight: float = 1.0
    dose_mg: Distribution = fixed(200.0)
    interval_days: Distribution = fixed(7.0)
    first_dose_extra_mg: float = 0.0


@dataclass(frozen=True)
class TRTDesign:
    """TRT history of the cohort: products, duration, start day."""

    arms: tuple[TRTArm, ...] = (TRTArm("enanthate"),)
    duration_days: Distribution = fixed(365.25)
    start_day: float = 0.0


@dataclass(frozen=True)
class ProtocolCourse:
    """A recovery-protocol drug course placed relative to the patient's TRT history.

    Attributes:
        drug, dose_unit, interval_days: as in DrugCourse.
        dose: the dose, or a Distribution of it across men (each man keeps his draw for
            the whole course, e.g. ``Distribution("choice", values=(25, 50))``).
        start_offset_days: start relative to the anchor.
        duration_days: length of the course (ignored when ``end_anchor`` is set).
        anchor: "trt_end" (first missed dose), "last_dose", "trt_start" or "day0".
        enabled: False for a course that a monitoring rule switches on.
        arm: "" for every man, else only the men of this arm of ``Protocol.arms`` (a
            mixture of drugs across men).
        end_anchor: when set, each man's course ends at this anchor of his own history
            plus ``end_offset_days`` (e.g. hCG from ``trt_start`` to ``trt_end``: for as
            long as his TRT lasts); a course that would end before it starts gives no dose.
        end_offset_days: offset of the end from ``end_anchor``.
    """

    drug: str
    dose: float | Distribution
    dose_unit: str
    interval_days: float
    duration_days: float
    start_offset_days: float = 0.0
    anchor: str = "trt_end"
    enabled: bool = True
    arm: str = ""
    end_anchor: str | None = None
    end_offset_days: float = 0.0


@dataclass(frozen=True)
class MonitoringRule:
    """A lab check every ``every_days`` from the course's start that changes a course.

    When ``observable`` is above (``direction='above'``) or below the threshold at a
    check, the target course's dose scale is set to ``max(scale, 1) * factor`` capped at
    ``max_scale`` (a disabled course is switched on at scale 1 by factor 1).

    Attributes:
        observable: core output name, e.g. "estradiol_pg_ml", "total_testosterone_nmol_l".
        direction: "above" or "below".
        threshold: in the observable's canonical unit.
        target_course: index into the protocol's courses.
        factor: multiplier applied to the dose scale.
        max_scale: cap of the dose scale.
        every_days: interval between checks.
        first_check_offset_days: first check after the target course's start.
    """

    observable: str
    direction: str
    threshold: float
    target_course: int
    factor: float = 1.0
    max_scale: float = 1.0
    every_days: float = 28.0
    first_check_offset_days: float = 28.0


@dataclass(frozen=True)
class Protocol:
    """A named recovery protocol: courses and monitoring rules."""

    name: str = "none"
    courses: tuple[ProtocolCourse, ...] = ()
    rules: tuple[MonitoringRule, ...] = ()
    arms: tuple[tuple[str, float], ...] = ()  # (arm, weight): men split across arms by weight

    def arm_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.arms)


@dataclass(frozen=True)
class CohortDesign:
    """Everything needed to sample and dose a virtual cohort.

    Attributes:
        covariates: covariate distributions.
        variability: IIV on model parameters.
        trt: TRT design.
        protocol: recovery protocol.
        grid: factorial design ``((field, values), ...)`` over GRID_FIELDS; patient k
            is in cell ``k % n_cells`` and is man ``k // n_cells``, so every cell holds
            the same men (common random numbers).
        covariate_effects: overrides of the covariate model coefficients.
    """

    covariates: CovariateSpec = field(default_factory=CovariateSpec)
    variability: Variability = DEFAULT_VARIABILITY
    trt: TRTDesign = field(default_factory=TRTDesign)
    protocol: Protocol = field(default_factory=Protocol)
    grid: tuple[tuple[str, tuple[float | str, ...]], ...] = ()
    covariate_effects: tuple[tuple[str, float], ...] = ()

    @property
    def n_cells(self) -> int:
        n = 1
        for _, values in self.grid:
            n *= len(values)
        return n

    def validate(self) -> None:
        """Raise ValueError/RegimenError naming the invalid field and the valid values."""
        for name in ("age_years", "bmi_kg_m2", "asian", "testicular_function"):
            getattr(self.covariates, name).validate(f"population.covariates.{name}")
        self.variability.validate()
        if not self.trt.arms:
            raise ValueError("trt.arms is empty; give at least one TRT product")
        for i, arm in enumerate(self.trt.arms):
            if arm.product not in TRT_PRODUCTS:
                raise RegimenError(f"trt.arms[{i}].product '{arm.product}' is unknown; valid products are "
                                   f"{sorted(TRT_PRODUCTS)}")
            if arm.weight < 0:
                raise ValueError(f"trt.arms[{i}].weight must be >= 0, got {arm.weight}")
            if not arm.first_dose_extra_mg >= 0:
                raise ValueError(f"trt.arms[{i}].first_dose_extra_mg must be >= 0, got {arm.first_dose_extra_mg}")
            arm.dose_mg.validate(f"trt.arms[{i}].dose_mg")
            arm.interval_days.validate(f"trt.arms[{i}].interval_days")
        if sum(arm.weight for arm in self.trt.arms) <= 0:
            raise ValueError("trt.arms weights must have a positive sum")
        self.trt.duration_days.validate("trt.duration_days")
        for i, course in enumerate(self.protocol.courses):
            at = f"protocol.courses[{i}]"
            if course.drug not in PROTOCOL_DRUGS:
                raise RegimenError(f"{at}.drug '{course.drug}' is unknown; valid drugs are {sorted(PROTOCOL_DRUGS)}")
            if isinstance(course.dose, Distribution):
                course.dose.validate(f"{at}.dose")
                smallest = min(course.dose.values) if course.dose.kind == "choice" else (
                    course.dose.value if course.dose.kind == "fixed" else course.dose.low)
                if course.dose.kind in ("normal", "bernoulli") and course.dose.low is None:
                    raise RegimenError(f"{at}.dose: a '{course.dose.kind}' dose needs low > 0 (doses must be > 0)")
                if course.dose.kind == "lognormal":
                    smallest = course.dose.median
                dose_in_canonical_unit(smallest, course.dose_unit, PROTOCOL_DRUGS[course.drug].dose_unit, at)
            else:
                dose_in_canonical_unit(course.dose, course.dose_unit, PROTOCOL_DRUGS[course.drug].dose_unit, at)
            if course.arm and course.arm not in self.protocol.arm_names():
                raise ValueError(f"{at}.arm '{course.arm}' is not an arm of the protocol; valid arms are "
                                 f"{list(self.protocol.arm_names())}")
            if course.end_anchor is not None and course.end_anchor not in ANCHORS:
                raise RegimenError(f"{at}.end_anchor '{course.end_anchor}' is unknown; valid anchors are {list(ANCHORS)}")
            if not course.interval_days > 0:
                raise RegimenError(f"{at}.interval_days must be > 0, got {course.interval_days}")
            if course.end_anchor is None and not course.duration_days > 0:
                raise RegimenError(f"{at}.duration_days must be > 0, got {course.duration_days}")
            if course.anchor not in ANCHORS:
                raise RegimenError(f"{at}.anchor '{course.anchor}' is unknown; valid anchors are {list(ANCHORS)}")
        if self.protocol.arms:
            weights = [w for _, w in self.protocol.arms]
            if min(weights) < 0 or sum(weights) <= 0 or len(set(self.protocol.arm_names())) != len(weights):
                raise ValueError("protocol.arms must be distinct (name, weight) pairs with weights >= 0 and a positive sum")
        for i, rule in enumerate(self.protocol.rules):
            at = f"protocol.rules[{i}]"
            if rule.observable not in OBSERVABLES:
                raise ValueError(f"{at}.observable '{rule.observable}' is unknown; valid: {list(OBSERVABLES)}")
            if rule.direction not in ("above", "below"):
                raise ValueError(f"{at}.direction must be 'above' or 'below', got '{rule.direction}'")
            if not 0 <= rule.target_course < len(self.protocol.courses):
                raise ValueError(f"{at}.target_course {rule.target_course} is not a course index "
                                 f"(0..{len(self.protocol.courses) - 1})")
            if not rule.every_days > 0 or rule.factor <= 0 or rule.max_scale <= 0:
                raise ValueError(f"{at}: every_days, factor and max_scale must be > 0")
        for name, values in self.grid:
            if name not in GRID_FIELDS:
                raise ValueError(f"population.grid field '{name}' is unknown; valid grid fields are "
                                 f"{[f.replace('trt.duration_days', 'trt.duration_months') for f in GRID_FIELDS]}")
            if len(values) == 0:
                raise ValueError(f"grid field '{name}' has no values")
            if name == "trt.product":
                bad = [v for v in values if v not in TRT_PRODUCTS]
                if bad:
                    raise RegimenError(f"grid trt.product values {bad} are unknown; valid products are {sorted(TRT_PRODUCTS)}")
        unknown = {k for k, _ in self.covariate_effects} - set(COVARIATE_INDEX)
        if unknown:
            raise ValueError(f"unknown covariate effect(s) {sorted(unknown)}; valid: {sorted(COVARIATE_INDEX)}")
