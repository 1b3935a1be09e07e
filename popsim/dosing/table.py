"""Compile regimens to fixed-shape per-patient dose tables.

A dose table holds one row per (course, PK species) with the periodic schedule
``start + k * interval, k < n_doses``; rows are padded to a run-wide width so one
compiled simulator serves every patient and every regimen of that width.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np

from popsim.dosing.drugs import PROTOCOL_DRUGS, TRT_PRODUCTS
from popsim.dosing.regimen import Regimen, RegimenError, dose_in_canonical_unit, validate_regimen
from popsim.model.pk import SPECIES_INDEX

# Interval given to padding rows (any positive number; their dose count is 0).
_PAD_INTERVAL_DAYS = 1.0


class DoseTable(NamedTuple):
    """Periodic dose schedules, each field of shape ``(n_patients, n_entries)``.

    Attributes:
        species: int32 index into popsim.model.pk.SPECIES.
        amount: dose per administration in the drug's canonical unit (mg, IU, ug).
        start_days: time of the first dose.
        interval_days: time between doses.
        n_doses: int32 number of doses (0 for padding rows).
    """

    species: np.ndarray
    amount: np.ndarray
    start_days: np.ndarray
    interval_days: np.ndarray
    n_doses: np.ndarray


class TRTSummary(NamedTuple):
    """Per-patient facts of the TRT history, each ``(n_patients,)`` (NaN without TRT).

    Attributes:
        first_dose_day: first TRT administration.
        last_dose_day: last TRT administration.
        interval_days: interval of the last TRT course.
        first_missed_dose_day: last dose + one interval (end of treatment in the
            contraception trials).
    """

    first_dose_day: np.ndarray
    last_dose_day: np.ndarray
    interval_days: np.ndarray
    first_missed_dose_day: np.ndarray


def _count_doses(start: float, interval: float, end: float) -> int:
    # Doses at start + k*interval strictly before end (1e-9 d guards rounding).
    return max(int(math.ceil((end - start) / interval - 1e-9)), 0)


def regimen_rows(regimen: Regimen) -> list[tuple[int, float, float, float, int]]:
    """Rows ``(species, amount, start_days, interval_days, n_doses)`` of one regimen."""
    rows = []
    for course in regimen.trt:
        product = TRT_PRODUCTS[course.product]
        amount = dose_in_canonical_unit(course.dose, course.dose_unit, "mg", "trt")
        n = _count_doses(course.start_day, course.interval_days, course.start_day + course.duration_days)
        for species in product.species:
            rows.append((SPECIES_INDEX[species], amount, course.start_day, course.interval_days, n))
    for course in regimen.drugs:
        product = PROTOCOL_DRUGS[course.drug]
        amount = dose_in_canonical_unit(course.dose, course.dose_unit, product.dose_unit, "drug")
        n = _count_doses(course.start_day, course.interval_days, course.stop_day)
        for species in product.species:
            rows.append((SPECIES_INDEX[species], amount, course.start_day, course.interval_days, n))
    return rows


def compile_regimens(regimens: Sequence[Regimen], n_entries: int | None = None) -> DoseTable:
    """Validate and compile one regimen per patient into a padded DoseTable.

    Args:
        regimens: one Regimen per patient.
        n_entries: table width; defaults to the widest regimen. Keep it fixed across
            calls to reuse the compiled simulator.

    Raises:
        RegimenError: naming the patient, course and field of the first invalid entry, or
            when a regimen needs more rows than ``n_entries``.
    """
    all_rows = []
    for i, regimen in enumerate(regimens):
        validate_regimen(regimen, where=f"regimen[{i}]")
        all_rows.append(regimen_rows(regimen))
    widest = max((len(r) for r in all_rows), default=0)
    width = max(widest, 1) if n_entries is None else int(n_entries)
    if widest > width:
        raise RegimenError(f"a regimen needs {widest} dose-table rows but n_entries={width}; "
                           f"raise n_entries to at least {widest}")
    n = len(regimens)
    table = DoseTable(
        species=np.zeros((n, width), np.int32),
        amount=np.zeros((n, width), np.float64),
        start_days=np.zeros((n, width), np.float64),
        interval_days=np.full((n, width), _PAD_INTERVAL_DAYS, np.float64),
        n_doses=np.zeros((n, width), np.int32),
    )
    for i, rows in enumerate(all_rows):
        for j, (species, amount, start, interval, count) in enumerate(rows):
            table.species[i, j] = species
            table.amount[i, j] = amount
            table.start_days[i, j] = start
            table.interval_days[i, j] = interval
            table.n_doses[i, j] = count
    return table


def trt_summary(regimens: Sequence[Regimen]) -> TRTSummary:
    """First and last TRT dose, interval and first missed dose of each patient."""
    n = len(regimens)
    out = TRTSummary(*(np.full(n, np.nan) for _ in range(4)))
    for i, regimen in enumerate(regimens):
        courses = sorted(regimen.trt, key=lambda c: c.start_day)
        if not courses:
            continue
        last = courses[-1]
        n_last = _count_doses(last.start_day, last.interval_days, last.start_day + last.duration_days)
        out.first_dose_day[i] = courses[0].start_day
        out.last_dose_day[i] = last.start_day + (n_last - 1) * last.interval_days
        out.interval_days[i] = last.interval_days
        out.first_missed_dose_day[i] = out.last_dose_day[i] + last.interval_days
    return out


def concatenate_tables(tables: Sequence[DoseTable]) -> DoseTable:
    """Stack dose tables of equal width along the patient axis."""
    widths = {t.species.shape[1] for t in tables}
    if len(widths) != 1:
        raise RegimenError(f"dose tables have different widths {sorted(widths)}; compile with one n_entries")
    return DoseTable(*(np.concatenate(parts, axis=0) for parts in zip(*tables)))
