"""Vectorised dose tables for a sampled cohort: TRT history plus the recovery protocol.

Builds the same DoseTable as popsim.dosing.table.compile_regimens, without one Python
object per patient, so millions of patients compile in seconds.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from popsim.dosing.drugs import PROTOCOL_DRUGS, TRT_PRODUCTS
from popsim.dosing.regimen import dose_in_canonical_unit
from popsim.dosing.table import DoseTable, TRTSummary
from popsim.model.pk import SPECIES_INDEX
from popsim.population.design import Protocol
from popsim.population.sampling import PRODUCT_NAMES
from popsim.solve.integrator import OBSERVABLES


class RuleTable(NamedTuple):
    """Monitoring rules per patient, each field ``(n_patients, n_rules)``.

    Attributes:
        observable: int index into popsim.solve.integrator.OBSERVABLES.
        sign: +1 when the rule fires above the threshold, -1 below.
        threshold: canonical unit of the observable.
        first_check_day, every_days: check schedule.
        n_checks: number of checks (0 = inactive rule).
        target_entry: int row of the DoseTable the rule changes.
        factor, max_scale: dose-scale update.
    """

    observable: np.ndarray
    sign: np.ndarray
    threshold: np.ndarray
    first_check_day: np.ndarray
    every_days: np.ndarray
    n_checks: np.ndarray
    target_entry: np.ndarray
    factor: np.ndarray
    max_scale: np.ndarray


class CohortDosing(NamedTuple):
    """Dose table, initial dose scales, rules and TRT facts of a cohort."""

    doses: DoseTable
    initial_scale: np.ndarray  # (n_patients, n_entries): 1, or 0 for courses a rule enables
    rules: RuleTable
    trt: TRTSummary


def _n_doses(duration, interval):
    return np.maximum(np.ceil(duration / interval - 1e-9), 1).astype(np.int32)


def cohort_dosing(trt: dict[str, np.ndarray], protocol: Protocol,
                  per_man: dict[str, np.ndarray] | None = None) -> CohortDosing:
    """Dose table of each patient: one TRT row (plus one loading-dose row when any man has
    a loading dose) then one row per protocol species.

    Args:
        trt: ``{product_index, dose_mg, interval_days, duration_days, start_day}`` arrays,
            optionally ``first_dose_extra_mg`` (extra amount with the first injection).
        protocol: the recovery protocol (courses anchored to each patient's TRT).
        per_man: each man's ``course_dose`` (n, n_courses), in each course's dose_unit,
            and ``course_given`` (n, n_courses) bool (popsim.population.sampling); default:
            every man gets every course at its (fixed) dose.
    """
    n = trt["dose_mg"].shape[0]
    n_trt = _n_doses(trt["duration_days"], trt["interval_days"])
    last = trt["start_day"] + (n_trt - 1) * trt["interval_days"]
    summary = TRTSummary(trt["start_day"].astype(float), last.astype(float), trt["interval_days"].astype(float),
                         (last + trt["interval_days"]).astype(float))
    anchors = {"trt_end": summary.first_missed_dose_day, "last_dose": summary.last_dose_day,
               "trt_start": summary.first_dose_day, "day0": np.zeros(n)}
    species = [np.asarray([SPECIES_INDEX[TRT_PRODUCTS[PRODUCT_NAMES[i]].species[0]] for i in range(len(PRODUCT_NAMES))])[trt["product_index"]]]
    amount, start, interval, count, scale = [trt["dose_mg"]], [trt["start_day"]], [trt["interval_days"]], [n_trt], [np.ones(n)]
    extra = np.asarray(trt.get("first_dose_extra_mg", np.zeros(n)), float)
    if np.any(extra > 0):
        species.append(species[0])
        amount.append(extra)
        start.append(trt["start_day"])
        interval.append(trt["interval_days"])
        count.append(np.where(extra > 0, 1, 0).astype(np.int32))
        scale.append(np.ones(n))
    course_first_row = []
    course_days = []
    for c, course in enumerate(protocol.courses):
        product = PROTOCOL_DRUGS[course.drug]
        if per_man is not None:
            per_dose = np.asarray(per_man["course_dose"][:, c], float)
            given = np.asarray(per_man["course_given"][:, c], bool)
        else:
            if not isinstance(course.dose, (int, float)):
                raise ValueError(f"protocol.courses[{c}].dose is a distribution: pass each man's draw (per_man)")
            per_dose, given = np.full(n, float(course.dose)), np.ones(n, bool)
        factor = dose_in_canonical_unit(1.0, course.dose_unit, product.dose_unit, f"protocol.courses[{c}]")
        begin = anchors[course.anchor] + course.start_offset_days
        if course.end_anchor is not None:
            days = anchors[course.end_anchor] + course.end_offset_days - begin
        else:
            days = np.full(n, float(course.duration_days))
        n_course = np.where(given & (days > 0), _n_doses(np.maximum(days, 1e-9), np.asarray(course.interval_days)), 0)
        course_days.append(np.where(given, days, 0.0))
        course_first_row.append(len(species))
        for name in product.species:
            species.append(np.full(n, SPECIES_INDEX[name]))
            amount.append(per_dose * factor)
            start.append(begin)
            interval.append(np.full(n, course.interval_days))
            count.append(n_course.astype(np.int32))
            scale.append(np.full(n, 1.0 if course.enabled else 0.0))
    doses = DoseTable(np.stack(species, 1).astype(np.int32), np.stack(amount, 1).astype(float),
                      np.stack(start, 1).astype(float), np.stack(interval, 1).astype(float),
                      np.stack(count, 1).astype(np.int32))
    rows = []
    for rule in protocol.rules:
        course = protocol.courses[rule.target_course]
        begin = anchors[course.anchor] + course.start_offset_days
        first = begin + rule.first_check_offset_days
        days = course_days[rule.target_course]
        checks = np.where(days > 0, np.maximum(np.floor((days - rule.first_check_offset_days) / rule.every_days) + 1, 0), 0)
        for offset in range(len(PROTOCOL_DRUGS[course.drug].species)):
            rows.append((OBSERVABLES.index(rule.observable), 1.0 if rule.direction == "above" else -1.0,
                         rule.threshold, first, rule.every_days, checks,
                         course_first_row[rule.target_course] + offset, rule.factor, rule.max_scale))
    if rows:
        fields = list(zip(*rows))
        rules = RuleTable(*(np.broadcast_to(np.stack([np.broadcast_to(np.asarray(v, float), (n,)) for v in f], 1), (n, len(rows))).copy()
                            for f in fields))
        rules = rules._replace(observable=rules.observable.astype(np.int32), n_checks=rules.n_checks.astype(np.int32),
                               target_entry=rules.target_entry.astype(np.int32))
    else:
        rules = empty_rules(n)
    return CohortDosing(doses, np.stack(scale, 1), rules, summary)


def empty_rules(n: int) -> RuleTable:
    """A rule table with no rules."""
    z = np.zeros((n, 0))
    zi = np.zeros((n, 0), np.int32)
    return RuleTable(zi, z, z, z, z, zi, zi, z, z)
