"""Regimens as data: TRT courses and protocol-drug courses, validated on the host.

A regimen is plain data (frozen dataclasses in canonical units: days, and the dose unit
stated explicitly). ``popsim.dosing.table`` compiles regimens to fixed-shape arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from popsim.dosing.drugs import PROTOCOL_DRUGS, TRT_PRODUCTS
from popsim.units import DOSE_UNIT_FACTORS


class RegimenError(ValueError):
    """A regimen that cannot be simulated; the message names the field and valid values."""


@dataclass(frozen=True)
class TRTCourse:
    """A course of testosterone replacement.

    Attributes:
        product: "enanthate", "cypionate", "undecanoate" (IM esters) or "gel".
        dose: amount per administration, in ``dose_unit`` (mass of ester, or of gel T).
        dose_unit: unit of ``dose`` ("mg", "g", "ug"); required.
        interval_days: time between administrations (> 0).
        duration_days: length of the course; doses at start + k*interval < start + duration.
        start_day: time of the first administration.
    """

    product: str
    dose: float
    dose_unit: str
    interval_days: float
    duration_days: float
    start_day: float = 0.0


@dataclass(frozen=True)
class DrugCourse:
    """A course of a protocol drug.

    Attributes:
        drug: one of popsim.dosing.drugs.PROTOCOL_DRUGS.
        dose: amount per administration, in ``dose_unit``.
        dose_unit: "mg", "IU" or "ug" as the drug requires; required.
        interval_days: time between administrations (> 0); a pump is a short interval.
        start_day: time of the first administration.
        stop_day: doses at start + k*interval < stop_day.
    """

    drug: str
    dose: float
    dose_unit: str
    interval_days: float
    start_day: float
    stop_day: float


@dataclass(frozen=True)
class Regimen:
    """Everything one virtual man is given: TRT courses and protocol-drug courses."""

    trt: tuple[TRTCourse, ...] = ()
    drugs: tuple[DrugCourse, ...] = field(default_factory=tuple)

    def __post_init__(self):
        object.__setattr__(self, "trt", tuple(self.trt))
        object.__setattr__(self, "drugs", tuple(self.drugs))


def _number(value, where: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RegimenError(f"{where}.{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise RegimenError(f"{where}.{name} must be finite, got {value!r}")
    return float(value)


def dose_in_canonical_unit(dose, dose_unit, canonical_unit: str, where: str) -> float:
    """Convert a dose to the drug's canonical unit, or raise naming the field."""
    if dose_unit is None or dose_unit == "":
        raise RegimenError(f"{where}.dose_unit is missing; give the unit of the dose, one of "
                           f"{sorted(DOSE_UNIT_FACTORS[canonical_unit])}")
    factors = DOSE_UNIT_FACTORS[canonical_unit]
    if dose_unit not in factors:
        raise RegimenError(f"{where}.dose_unit {dose_unit!r} is not valid for this drug; valid units are "
                           f"{sorted(factors)}")
    value = _number(dose, where, "dose")
    if value <= 0:
        raise RegimenError(f"{where}.dose must be > 0, got {value}")
    return value * factors[dose_unit]


def _check_course_times(where: str, interval, start, end, end_name: str) -> tuple[float, float, float]:
    interval = _number(interval, where, "interval_days")
    start = _number(start, where, "start_day")
    end = _number(end, where, end_name)
    if interval <= 0:
        raise RegimenError(f"{where}.interval_days must be > 0 (a positive number of days), got {interval}")
    return interval, start, end


def validate_regimen(regimen: Regimen, where: str = "regimen") -> None:
    """Raise RegimenError naming the first invalid field of ``regimen``."""
    if not isinstance(regimen, Regimen):
        raise RegimenError(f"{where} must be a popsim Regimen, got {type(regimen).__name__}")
    windows: dict[str, list[tuple[float, float, str]]] = {}
    for i, course in enumerate(regimen.trt):
        at = f"{where}.trt[{i}]"
        if not isinstance(course, TRTCourse):
            raise RegimenError(f"{at} must be a TRTCourse, got {type(course).__name__}")
        if course.product not in TRT_PRODUCTS:
            raise RegimenError(f"{at}.product {course.product!r} is unknown; valid products are {sorted(TRT_PRODUCTS)}")
        dose_in_canonical_unit(course.dose, course.dose_unit, "mg", at)
        interval, start, duration = _check_course_times(at, course.interval_days, course.start_day,
                                                        course.duration_days, "duration_days")
        if duration <= 0:
            raise RegimenError(f"{at}.duration_days must be > 0, got {duration}")
        windows.setdefault("trt", []).append((start, start + duration, at))
    for i, course in enumerate(regimen.drugs):
        at = f"{where}.drugs[{i}]"
        if not isinstance(course, DrugCourse):
            raise RegimenError(f"{at} must be a DrugCourse, got {type(course).__name__}")
        if course.drug not in PROTOCOL_DRUGS:
            raise RegimenError(f"{at}.drug {course.drug!r} is unknown; valid drugs are {sorted(PROTOCOL_DRUGS)}")
        product = PROTOCOL_DRUGS[course.drug]
        dose_in_canonical_unit(course.dose, course.dose_unit, product.dose_unit, at)
        interval, start, stop = _check_course_times(at, course.interval_days, course.start_day,
                                                    course.stop_day, "stop_day")
        if stop <= start:
            raise RegimenError(f"{at}.stop_day ({stop}) must be after start_day ({start})")
        windows.setdefault(course.drug, []).append((start, stop, at))
    # Two courses of the same drug (or two TRT courses) that overlap in time contradict
    # each other: which dose and interval holds in the overlap is ambiguous.
    for name, spans in windows.items():
        spans.sort()
        for (s0, e0, a0), (s1, e1, a1) in zip(spans, spans[1:]):
            if s1 < e0:
                raise RegimenError(
                    f"{a0} and {a1} overlap in time ({name} from day {s0:g} to {e0:g} and from day "
                    f"{s1:g} to {e1:g}); give one course per period, e.g. end the first at day {s1:g}")
