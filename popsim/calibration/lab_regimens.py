"""Explicit doses of one patient as popsim courses.

popsim.calibration.data.LabData.regimens turns each patient's explicit doses into popsim
courses with this rule: doses are taken in time order per overlap group (all TRT
products form one group, each protocol drug its own, because popsim.dosing.regimen
forbids overlapping courses within a group); a maximal run of consecutive doses of one
product with equal amounts and equal spacing (within 1e-6 days) is one course, with
``interval`` the spacing and ``duration = n * interval`` (doses at
``start + k * interval, k < n``), cut short at the first dose of the next course of the
group if that comes sooner. Runs are found greedily from the earliest dose. A dose that
fits no run is a one-dose course whose interval is the time to the group's next dose
(for the group's last dose: the interval of the course before it, or 1 day when the
drug was given once). The courses reproduce the dose times and amounts exactly.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from popsim.calibration.lab_schema import ALL_DRUGS, _SINGLE_DOSE_INTERVAL_DAYS, _SPACING_TOL_DAYS
from popsim.dosing.drugs import TRT_PRODUCTS
from popsim.dosing.regimen import DrugCourse, Regimen, TRTCourse


def _runs(times: np.ndarray, drugs: Sequence[str], amounts: np.ndarray) -> list[tuple[int, int]]:
    """Greedy maximal runs [i, j] of one drug, equal amounts and equal spacing."""
    runs = []
    i, m = 0, len(times)

    def same(a, b):
        return drugs[a] == drugs[b] and math.isclose(amounts[a], amounts[b], rel_tol=1e-9, abs_tol=0.0)

    while i < m:
        j = i
        if i + 1 < m and same(i, i + 1):
            spacing = times[i + 1] - times[i]
            j = i + 1
            while j + 1 < m and same(i, j + 1) and abs(times[j + 1] - times[j] - spacing) <= _SPACING_TOL_DAYS:
                j += 1
        runs.append((i, j))
        i = j + 1
    return runs


def regimen_from_doses(time_days: np.ndarray, drug: np.ndarray, amount: np.ndarray) -> Regimen:
    """The popsim Regimen of one patient's explicit doses (``(n_doses,)`` each, time order,
    amounts in the drug's canonical unit), by the rule of the module docstring."""
    trt: list[TRTCourse] = []
    drugs: list[DrugCourse] = []
    groups: dict[str, list[int]] = {}
    for k, name in enumerate(drug):
        groups.setdefault("trt" if name in TRT_PRODUCTS else name, []).append(k)
    for members in groups.values():
        sel = np.array(members, int)
        times, names, amounts = time_days[sel], list(drug[sel]), amount[sel]
        runs = _runs(times, names, amounts)
        previous_interval = None
        for r, (i, j) in enumerate(runs):
            n = j - i + 1
            start = float(times[i])
            next_start = float(times[runs[r + 1][0]]) if r + 1 < len(runs) else None
            if n >= 2:
                interval = float(times[j] - times[i]) / (n - 1)
            elif next_start is not None:
                interval = next_start - start
            else:
                interval = previous_interval or _SINGLE_DOSE_INTERVAL_DAYS
            end = start + n * interval
            if next_start is not None:
                end = min(end, next_start)
            previous_interval = interval
            name, dose = names[i], float(amounts[i])
            unit = ALL_DRUGS[name].dose_unit
            if name in TRT_PRODUCTS:
                trt.append(TRTCourse(product=name, dose=dose, dose_unit=unit, interval_days=interval,
                                     duration_days=end - start, start_day=start))
            else:
                drugs.append(DrugCourse(drug=name, dose=dose, dose_unit=unit, interval_days=interval,
                                        start_day=start, stop_day=end))
    trt.sort(key=lambda c: c.start_day)
    drugs.sort(key=lambda c: (c.drug, c.start_day))
    return Regimen(trt=tuple(trt), drugs=tuple(drugs))
