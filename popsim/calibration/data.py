"""Clinic lab data in a NONMEM-style table: read, validate, convert to canonical units.

One CSV row is one event of one patient: a dose (``EVID=1``), an observation
(``EVID=0``, ``MDV=0``) or another event (``EVID=2``, ignored). The reader checks every
row, collects every problem it finds (up to ``max_problems``) and raises one
:class:`LabDataError` listing them; nothing is returned from a file that failed. A file
that passes becomes a :class:`LabData`: per-patient dose histories and long observation
arrays in popsim's canonical units (popsim.units), covariates, and converters to popsim
regimens (:meth:`LabData.regimens`) and padded likelihood arrays
(:meth:`LabData.observation_arrays`). docs/lab-data.md documents the format.

Row numbers. Every message names the row as the line number of the CSV file, as a text
editor or spreadsheet shows it: the header is row 1 and the first data row is row 2
(comment lines starting with ``#`` and blank lines keep their line numbers). For a pandas
DataFrame the row is ``position + 2``, the line it would have in ``df.to_csv(index=False)``.

Codes (CMT for the drug of a dose row, DVID for the analyte of an observation row):

| CMT | drug | dose unit |     | DVID | analyte | canonical unit |
|---|---|---|---|---|---|---|
| 1 | enanthate | mg |  | 1 | total_testosterone | nmol/L |
| 2 | cypionate | mg |  | 2 | free_testosterone | pmol/L |
| 3 | undecanoate | mg |  | 3 | lh | IU/L |
| 4 | gel | mg |  | 4 | fsh | IU/L |
| 5 | hcg | IU |  | 5 | estradiol | pg/mL |
| 6 | clomiphene | mg |  | 6 | inhibin_b | pg/mL |
| 7 | enclomiphene | mg |  | 7 | shbg | nmol/L |
| 8 | tamoxifen | mg |  | 8 | sperm_concentration | M/mL |
| 9 | anastrozole | mg |  |  |  |  |
| 10 | gonadorelin | ug |  |  |  |  |
| 11 | fsh | IU |  |  |  |  |

Regimens: :meth:`LabData.regimens` turns each patient's doses into popsim courses
(popsim.calibration.lab_regimens gives the rule).
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd

from popsim.dosing.drugs import PROTOCOL_DRUGS, TRT_PRODUCTS, Product
from popsim.dosing.limits import DOSE_LIMITS
from popsim.dosing.regimen import Regimen, validate_regimen
from popsim.units import ANALYTE_UNIT_FACTORS, DOSE_UNIT_FACTORS, TIME_UNIT_TO_DAYS
from popsim.calibration.lab_regimens import regimen_from_doses
from popsim.calibration.lab_schema import (  # noqa: F401 - re-exported: the public names of this module
    ROW_CONVENTION, Column, REQUIRED_COLUMNS, SCHEMA, CMT_CODES, DVID_CODES, ANALYTE_OBSERVABLES, ANALYTE_CANONICAL_UNITS, ANALYTE_ALIASES,
    DRUG_ALIASES, ALL_DRUGS, ANALYTE_LIMITS, COVARIATE_LIMITS, MAX_ABS_TIME_DAYS, _MISSING, _SPACING_TOL_DAYS, _SINGLE_DOSE_INTERVAL_DAYS, _MAX_ADDL, Problem, LabDataError, LabDataWarning,
)


class _Collector:
    """Problems in discovery order up to ``limit``; ``sorted_items`` orders them by row."""

    def __init__(self, limit: int):
        self.items: list[Problem] = []
        self.count = 0
        self.limit = limit

    def add(self, row, column, value, message):
        self.count += 1
        if len(self.items) < self.limit:
            self.items.append(Problem(row, column, value, message))

    def __bool__(self):
        return self.count > 0

    def sorted_items(self) -> list[Problem]:
        return sorted(self.items, key=lambda p: (p.row is not None, p.row or 0))


# ----------------------------------------------------------------------------- results


class DoseHistory(NamedTuple):
    """The doses of one patient in time order (ADDL expanded), each ``(n_doses,)``.

    Attributes:
        time_days: time of each dose, days.
        drug: product or drug name (popsim.dosing.drugs).
        amount: amount per dose in the drug's canonical unit (``unit``).
        unit: canonical dose unit of the drug ("mg", "IU" or "ug").
        row: CSV row of the dose record (an ADDL-expanded dose has its record's row).
    """

    time_days: np.ndarray
    drug: np.ndarray
    amount: np.ndarray
    unit: np.ndarray
    row: np.ndarray


class Observations(NamedTuple):
    """All observations as long arrays, each ``(n_observations,)``, grouped by patient in
    file order and in time order within a patient.

    Attributes:
        patient_index: int index into ``LabData.ids``.
        time_days: sampling time, days.
        analyte: analyte name (keys of ANALYTE_OBSERVABLES).
        observable: the matching model output (popsim.solve.integrator.OBSERVABLES).
        value_canonical: value in the analyte's canonical unit (ANALYTE_CANONICAL_UNITS); on a
            censored row the limit of quantification (M3 convention).
        censored: True when the value is below the limit of quantification.
        lloq_canonical: limit of quantification, canonical unit; NaN where none was given.
        row: CSV row of the observation.
    """

    patient_index: np.ndarray
    time_days: np.ndarray
    analyte: np.ndarray
    observable: np.ndarray
    value_canonical: np.ndarray
    censored: np.ndarray
    lloq_canonical: np.ndarray
    row: np.ndarray


class ObservationArrays(NamedTuple):
    """Observations padded to ``(n_patients, max_obs)`` for a likelihood.

    Real entries of a patient come first, in time order; padding has ``mask`` False, time
    equal to the patient's last observation time (so times stay non-decreasing), observable
    0, value 1.0, censored False and lloq 0.0 (all finite, safe under jnp.where).

    Attributes:
        time_days: sampling times, days.
        observable: int32 index into the observable names (popsim.solve.integrator.OBSERVABLES).
        value: value in canonical units (the limit on censored entries).
        censored: bool, value below the limit of quantification.
        lloq: limit of quantification, canonical units; 0.0 where none was given.
        mask: bool, True for real entries.
    """

    time_days: np.ndarray
    observable: np.ndarray
    value: np.ndarray
    censored: np.ndarray
    lloq: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True, eq=False)
class LabData:
    """Validated lab data in canonical units (days; popsim.units).

    Attributes:
        ids: patient identifiers (as text, integers without ".0"), in file order.
        doses: one DoseHistory per patient.
        observations: all observations (long format).
        covariates: one row per patient (index ``ids``), one column per covariate.
        source: file name or "DataFrame".
        warnings: the warnings issued while reading.
    """

    ids: tuple[str, ...]
    doses: tuple[DoseHistory, ...]
    observations: Observations
    covariates: pd.DataFrame
    source: str = "lab data"
    warnings: tuple[str, ...] = ()

    @property
    def n_patients(self) -> int:
        return len(self.ids)

    def regimens(self) -> list[Regimen]:
        """One popsim Regimen per patient, reproducing the doses (module docstring: the rule)."""
        out = []
        for i, history in enumerate(self.doses):
            regimen = regimen_from_doses(history.time_days, history.drug, history.amount)
            validate_regimen(regimen, where=f"regimen of ID {self.ids[i]}")
            out.append(regimen)
        return out

    def observation_arrays(self, observables: Sequence[str] | None = None) -> ObservationArrays:
        """Observations padded to ``(n_patients, max_obs)``.

        Args:
            observables: names the observable index refers to; defaults to
                popsim.solve.integrator.OBSERVABLES.
        """
        if observables is None:
            from popsim.solve.integrator import OBSERVABLES as observables  # noqa: N811 (JAX module; lazy)
        names = list(observables)
        obs = self.observations
        missing = sorted(set(obs.observable.tolist()) - set(names))
        if missing:
            raise ValueError(f"observables {missing} of the data are not in the observables given ({names})")
        index = {name: k for k, name in enumerate(names)}
        n = self.n_patients
        counts = np.bincount(obs.patient_index, minlength=n) if obs.patient_index.size else np.zeros(n, int)
        width = int(counts.max()) if n else 0
        out = ObservationArrays(
            time_days=np.zeros((n, width)), observable=np.zeros((n, width), np.int32),
            value=np.ones((n, width)), censored=np.zeros((n, width), bool),
            lloq=np.zeros((n, width)), mask=np.zeros((n, width), bool),
        )
        offsets = np.concatenate([[0], np.cumsum(counts)])  # observations are grouped by patient
        for i in range(n):
            sel = np.arange(offsets[i], offsets[i + 1])
            k = sel.size
            if k == 0:
                continue
            out.time_days[i, :k] = obs.time_days[sel]
            out.time_days[i, k:] = obs.time_days[sel[-1]]
            out.observable[i, :k] = [index[name] for name in obs.observable[sel]]
            out.value[i, :k] = obs.value_canonical[sel]
            out.censored[i, :k] = obs.censored[sel]
            out.lloq[i, :k] = np.nan_to_num(obs.lloq_canonical[sel], nan=0.0)
            out.mask[i, :k] = True
        return out


# ----------------------------------------------------------------------------- parsing helpers


def _name_key(text: str) -> str:
    return "_".join(str(text).strip().casefold().replace("-", " ").split())


def _unit_key(text: str) -> str:
    return "".join(str(text).replace("\u00b5", "u").replace("\u03bc", "u").casefold().split())


def _lookup_unit(text: str, factors: Mapping[str, float]) -> str | None:
    """The spelling in ``factors`` of unit ``text`` (case, spaces and micro sign ignored)."""
    wanted = _unit_key(text)
    for unit in factors:
        if _unit_key(unit) == wanted:
            return unit
    return None


def _resolve_analyte(text: str) -> str | None:
    key = _name_key(text)
    if key in ANALYTE_UNIT_FACTORS:
        return key
    return ANALYTE_ALIASES.get(key)


def _resolve_drug(text: str) -> str | None:
    key = _name_key(text)
    if key in ALL_DRUGS:
        return key
    return DRUG_ALIASES.get(key)


def _is_missing(text: str) -> bool:
    return text.strip().casefold() in _MISSING


def _parse_float(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _normalize_id(text: str) -> str:
    value = _parse_float(text)
    if value is not None and value.is_integer():
        return str(int(value))
    return text.strip()


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    if isinstance(value, (np.floating,)):
        return "" if np.isnan(value) else repr(float(value))
    if value is pd.NA or value is pd.NaT:
        return ""
    return str(value)


def _valid_drugs_text() -> str:
    return (f"{', '.join(sorted(TRT_PRODUCTS))} (testosterone products) or "
            f"{', '.join(sorted(PROTOCOL_DRUGS))} (protocol drugs)")


def _units_text(factors: Mapping[str, float]) -> str:
    """Valid units, sorted, one spelling per unit (matching ignores case)."""
    seen: dict[str, str] = {}
    for unit in sorted(factors):
        seen.setdefault(_unit_key(unit), unit)
    return ", ".join(seen.values())


def _codes_text(codes: Mapping[int, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in codes.items())


def _load_table(source, delimiter: str | None) -> tuple[str, list[str], list[tuple[int, list[str]]]]:
    """(source name, header, [(row number, cells)]) with row numbers as in ROW_CONVENTION."""
    if isinstance(source, pd.DataFrame):
        header = [str(c) for c in source.columns]
        rows = [(k + 2, [_cell_text(v) for v in record])
                for k, record in enumerate(source.itertuples(index=False, name=None))]
        return "DataFrame", header, rows
    path = os.fspath(source)
    lines = _read_text(path).splitlines()
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if header is None:
            if delimiter is None:
                counts = {d: line.count(d) for d in (",", ";", "\t")}
                delimiter = max(counts, key=counts.get) if max(counts.values()) > 0 else " "
        cells = line.split() if delimiter == " " else next(csv.reader([line], delimiter=delimiter))
        if header is None:
            header = cells
        else:
            rows.append((number, cells))
    if header is None:
        raise LabDataError([Problem(None, None, None, "no header row: the file is empty or holds only comment "
                                    f"and blank lines; the first other line must name the columns "
                                    f"({', '.join(REQUIRED_COLUMNS)}, ...; docs/lab-data.md)")],
                           os.path.basename(path))
    return os.path.basename(path), header, rows


_TEXT_HELP = "save it as a UTF-8 CSV (a spreadsheet's 'CSV UTF-8' export)"


def _read_text(path: str) -> str:
    """The file as text, or a LabDataError saying what the file is and how to fix it."""
    name = os.path.basename(path)

    def fail(message: str):
        raise LabDataError([Problem(None, None, None, message)], name)

    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as e:
        fail(f"cannot read the file ({e.strerror or e})")
    head = raw[:4096]
    if head.startswith(b"\x1f\x8b"):
        fail("the file is gzip-compressed, not a CSV text file; decompress it (gunzip) and give the .csv")
    if head.startswith(b"PK\x03\x04"):
        fail("the file is a zip archive or an Excel workbook (.xlsx), not a CSV text file; export the sheet as "
             "'CSV UTF-8' and give that file")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or (head and head.count(b"\x00") > len(head) // 4
                                                       and (head[1:2] == b"\x00" or head[0:1] == b"\x00")):
        fail(f"the file is UTF-16 text, not UTF-8; {_TEXT_HELP}")
    control = sum(1 for b in head if b < 32 and b not in (9, 10, 13))
    if b"\x00" in head or control > len(head) // 20:
        fail("the file is not a text file (binary data); give the lab data as a CSV text file (docs/lab-data.md)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        fail(f"the file is not UTF-8 text: byte 0x{raw[e.start]:02x} on line {line} (Latin-1 or Windows-1252 "
             f"text?); {_TEXT_HELP}")
    return ""  # unreachable


def lab_columns(source) -> list[str]:
    """The column names of a lab-data file (its header), or a LabDataError for an unreadable file."""
    if isinstance(source, pd.DataFrame):
        return [str(c) for c in source.columns]
    return _load_table(source, None)[1]


# ----------------------------------------------------------------------------- reading


class _Dose(NamedTuple):
    id: str
    time_days: float
    drug: str
    amount: float
    ii_days: float
    addl: int
    row: int


class _Obs(NamedTuple):
    id: str
    time_days: float
    analyte: str
    value: float
    censored: bool
    lloq: float
    row: int


def _unit_maps(units: Mapping[str, Any] | None, problems: _Collector) -> tuple[dict[str, str], dict[str, str]]:
    """File-level units: ({analyte: DV unit}, {drug: AMT unit}).

    ``units`` maps analyte names to DV units and drug names to AMT units; "fsh" names the
    analyte. Nested ``{"DV": {analyte: unit}, "AMT": {drug: unit}}`` is also accepted.
    """
    dv: dict[str, str] = {}
    amt: dict[str, str] = {}
    if not units:
        return dv, amt
    items: list[tuple[str, str, Any]] = []
    for key, value in units.items():
        if str(key).upper() in ("DV", "AMT") and isinstance(value, Mapping):
            items += [(str(key).upper(), str(k), v) for k, v in value.items()]
        else:
            items.append(("", str(key), value))
    for kind, key, value in items:
        where = f"units[{key!r}]"
        analyte = _resolve_analyte(key) if kind in ("", "DV") else None
        drug = _resolve_drug(key) if kind == "AMT" or (kind == "" and analyte is None) else None
        if analyte is not None:
            unit = _lookup_unit(str(value), ANALYTE_UNIT_FACTORS[analyte])
            if unit is None:
                problems.add(None, where, str(value), f"{value!r} is not a unit of {analyte}; valid units are "
                             f"{_units_text(ANALYTE_UNIT_FACTORS[analyte])}")
            else:
                dv[analyte] = unit
        elif drug is not None:
            factors = DOSE_UNIT_FACTORS[ALL_DRUGS[drug].dose_unit]
            unit = _lookup_unit(str(value), factors)
            if unit is None:
                problems.add(None, where, str(value), f"{value!r} is not a dose unit of {drug}; valid units are "
                             f"{_units_text(factors)}")
            else:
                amt[drug] = unit
        else:
            valid = (f"analytes {', '.join(ANALYTE_UNIT_FACTORS)}" if kind == "DV" else
                     f"drugs {_valid_drugs_text()}" if kind == "AMT" else
                     f"analytes {', '.join(ANALYTE_UNIT_FACTORS)} or drugs {_valid_drugs_text()}")
            problems.add(None, "units", key, f"unknown key in units=; valid keys are {valid}")
    return dv, amt


def read_lab_data(source, time_unit: str = "days", units: Mapping[str, Any] | None = None,
                  covariates: Iterable[str] = ("AGE", "BMI"), *, delimiter: str | None = None,
                  max_problems: int = 50) -> LabData:
    """Read, validate and convert a NONMEM-style lab-data table (docs/lab-data.md).

    Args:
        source: path of a CSV file (comma-, semicolon-, tab- or space-separated; lines
            starting with ``#`` are comments) or a pandas DataFrame.
        time_unit: unit of TIME and II: "days" (default) or "hours" (or another key of
            popsim.units.TIME_UNIT_TO_DAYS).
        units: file-level units used where a row has no UNIT: ``{analyte: DV unit,
            drug: AMT unit}`` (or nested ``{"DV": {...}, "AMT": {...}}``).
        covariates: numeric columns read from each ID's first row (must exist).
        delimiter: field separator; detected from the header when None.
        max_problems: most problems listed in the error.

    Raises:
        LabDataError: listing every problem found (row, column, value, what is valid).

    Warns:
        LabDataWarning: an ID without observations, a covariate that varies within an ID,
            duplicate doses added together, observations of exactly 0.
    """
    problems = _Collector(max_problems)
    name = "DataFrame" if isinstance(source, pd.DataFrame) else os.path.basename(os.fspath(source))
    if str(time_unit) not in TIME_UNIT_TO_DAYS:
        problems.add(None, "time_unit", str(time_unit), f"unknown time unit; valid: {', '.join(TIME_UNIT_TO_DAYS)}")
        raise LabDataError(problems.sorted_items(), name, problems.count)
    day_factor = TIME_UNIT_TO_DAYS[str(time_unit)]
    name, header, rows = _load_table(source, delimiter)

    # ---- columns
    columns = [h.strip().upper() for h in header]
    positions: dict[str, int] = {}
    for k, col in enumerate(columns):
        if col in positions:
            problems.add(1, col, header[k], f"column {col} appears twice (columns {positions[col] + 1} and {k + 1}; "
                         "names are case-insensitive)")
        else:
            positions[col] = k
    missing = [c for c in REQUIRED_COLUMNS if c not in positions]
    if missing:
        problems.add(1, None, None, f"missing required column{'s' if len(missing) > 1 else ''} "
                     f"{', '.join(missing)}; the required columns are {', '.join(REQUIRED_COLUMNS)}; "
                     f"found columns: {', '.join(columns) if columns else '(none)'}")
        raise LabDataError(problems.sorted_items(), name, problems.count)
    covariate_names = [str(c).strip().upper() for c in covariates]
    absent = [c for c in covariate_names if c not in positions]
    if absent:
        problems.add(1, None, None, f"covariate column{'s' if len(absent) > 1 else ''} {', '.join(absent)} not found "
                     f"(found columns: {', '.join(columns)}); pass covariates= naming the covariate columns, "
                     "or covariates=() for none")
        covariate_names = [c for c in covariate_names if c not in absent]  # still check the rows

    dv_units, amt_units = _unit_maps(units, problems)
    has = positions.__contains__
    warn: list[str] = []

    def cell(cells: list[str], col: str) -> str:
        k = positions.get(col)
        return cells[k].strip() if k is not None and k < len(cells) else ""

    doses: list[_Dose] = []
    observations: list[_Obs] = []
    order: list[str] = []
    first_row: dict[str, int] = {}
    last_row: dict[str, int] = {}
    last_time: dict[str, tuple[float, int]] = {}
    cov_first: dict[str, dict[str, float | None]] = {}
    cov_seen: dict[str, dict[str, list[tuple[float, int]]]] = {}
    reentered: set[str] = set()
    n_dose_rows = n_obs_rows = 0
    zero_rows: list[int] = []
    no_unit: dict[tuple[str, str], list[int]] = {}  # (DV/AMT, analyte/drug) -> rows without a unit
    current_id: str | None = None

    for number, cells in rows:
        if len(cells) != len(columns):
            problems.add(number, None, None, f"the row has {len(cells)} fields but the header has {len(columns)}; "
                         "quote values that contain the separator, use '.' as the decimal separator")
            continue

        def number_of(col: str, required: bool, what: str, integer: bool = False) -> float | None:
            text = cell(cells, col)
            if _is_missing(text):
                if required:
                    problems.add(number, col, text, f"{col} is missing; {what}")
                return None
            value = _parse_float(text)
            if value is None:
                hint = ""
                if "," in text and _parse_float(text.replace(",", ".")) is not None:
                    hint = " (use '.' as the decimal separator)"
                elif text.startswith("<") or text.casefold() in ("blq", "bql", "nd", "lloq", "<lloq"):
                    hint = (" (for a value below the limit of quantification set CENS=1 or BLQ=1 and give "
                            "the limit in LLOQ)")
                problems.add(number, col, text, f"{col} must be a number{hint}; {what}")
                return None
            if integer and not value.is_integer():
                problems.add(number, col, text, f"{col} must be a whole number; {what}")
                return None
            return value

        # ID
        id_text = cell(cells, "ID")
        if _is_missing(id_text):
            problems.add(number, "ID", id_text, "ID is missing; every row needs the patient's ID")
            continue
        pid = _normalize_id(id_text)
        if pid != current_id:
            if pid in first_row and pid not in reentered:
                reentered.add(pid)
                problems.add(number, "ID", id_text, f"ID {pid} appears again after other IDs (its earlier rows end "
                             f"at row {last_row[pid]}); keep all rows of one ID together, sorted by TIME")
            current_id = pid
        if pid not in first_row:
            first_row[pid] = number
            order.append(pid)
        last_row[pid] = number

        # TIME
        time_raw = number_of("TIME", True, "TIME is elapsed time as a number "
                                           f"({time_unit}; clock times and dates are not supported)")
        time = None if time_raw is None else time_raw * day_factor
        if time is not None and abs(time) > MAX_ABS_TIME_DAYS:
            problems.add(number, "TIME", cell(cells, "TIME"), f"TIME {time_raw:g} {time_unit} is more than 100 years "
                         f"from the time origin; valid: within +-{MAX_ABS_TIME_DAYS / day_factor:g} {time_unit} "
                         "(check data.time_unit)")
            time = None
        if time is not None:
            if pid in last_time and time < last_time[pid][0] - 1e-12:
                prev_time, prev_row = last_time[pid]
                problems.add(number, "TIME", cell(cells, "TIME"),
                             f"TIME goes backwards within ID {pid} (row {prev_row} has TIME "
                             f"{prev_time / day_factor:g}); times must be non-decreasing within an ID: "
                             "sort by ID, then TIME")
            last_time[pid] = (time, number)

        # covariates
        if pid not in cov_first:
            cov_first[pid] = {}
            cov_seen[pid] = {c: [] for c in covariate_names}
            for c in covariate_names:
                value = number_of(c, True, f"covariates are read from each ID's first row (row {number} for ID {pid})")
                if value is not None and c in COVARIATE_LIMITS:
                    low, usual_low, usual_high, high = COVARIATE_LIMITS[c]
                    if not low <= value <= high:
                        problems.add(number, c, cell(cells, c), f"{c} {value:g} is outside the valid range "
                                     f"[{low:g}, {high:g}]")
                        value = None
                    elif not usual_low <= value <= usual_high:
                        warn.append(f"row {number}: {c} {value:g} of ID {pid} is extreme (usual range "
                                    f"{usual_low:g}-{usual_high:g}); it is used as given")
                cov_first[pid][c] = value
                if value is not None:
                    cov_seen[pid][c].append((value, number))
        else:
            for c in covariate_names:
                value = number_of(c, False, "covariates must be numbers")
                if value is not None:
                    cov_seen[pid][c].append((value, number))

        # EVID / MDV
        evid = number_of("EVID", True, "valid values are 0 (observation), 1 (dose), 2 (other event)", integer=True)
        mdv = number_of("MDV", True, "valid values are 0 (DV is an observation) and 1 (no observation)", integer=True)
        if evid is not None and evid not in (0, 1, 2):
            if evid in (3, 4):
                problems.add(number, "EVID", cell(cells, "EVID"),
                             f"EVID {int(evid)} ({'reset' if evid == 3 else 'reset and dose'}) is not supported: "
                             "popsim simulates one continuous history per ID; give each history its own ID; "
                             "valid values are 0, 1 and 2")
            else:
                problems.add(number, "EVID", cell(cells, "EVID"),
                             "valid values are 0 (observation), 1 (dose), 2 (other event, ignored)")
            evid = None
        if mdv is not None and mdv not in (0, 1):
            problems.add(number, "MDV", cell(cells, "MDV"), "valid values are 0 (DV is an observation) and 1 (no observation)")
            mdv = None
        if evid is None:
            continue

        if evid == 1:
            n_dose_rows += 1
            if mdv == 0:
                problems.add(number, "MDV", cell(cells, "MDV"), "a dose row (EVID=1) must have MDV=1")
            drug = _dose_drug(cells, number, cell, problems, has)
            amount = number_of("AMT", True, "a dose row (EVID=1) needs the amount given (> 0)")
            if amount is not None and amount <= 0:
                problems.add(number, "AMT", cell(cells, "AMT"), "AMT must be > 0 on a dose row (EVID=1)")
                amount = None
            canonical = None
            if drug is not None:
                product = ALL_DRUGS[drug]
                factors = DOSE_UNIT_FACTORS[product.dose_unit]
                unit_text = cell(cells, "UNIT")
                if _is_missing(unit_text):
                    unit = amt_units.get(drug)
                    if unit is None:
                        no_unit.setdefault(("AMT", drug), []).append(number)
                else:
                    unit = _lookup_unit(unit_text, factors)
                    if unit is None:
                        problems.add(number, "UNIT", unit_text,
                                     f"not a dose unit of {drug} (dosed in {product.dose_unit}); valid units are "
                                     f"{_units_text(factors)}")
                if unit is not None and amount is not None:
                    canonical = amount * factors[unit]
                    limit = DOSE_LIMITS.get(drug)
                    if limit is not None and canonical > limit.high:
                        problems.add(number, "AMT", cell(cells, "AMT"), f"a dose of {canonical:g} {product.dose_unit} "
                                     f"of {drug} is beyond any real dose (valid: up to {limit.high:g} "
                                     f"{product.dose_unit}; typical {product.typical}); check the amount and UNIT")
                        canonical = None
                    elif limit is not None and canonical > limit.usual_high:
                        warn.append(f"row {number}: a dose of {canonical:g} {product.dose_unit} of {drug} is extreme "
                                    f"(usual up to {limit.usual_high:g}); it is used as given")
            for col in ("SS", "RATE"):
                if has(col):
                    value = number_of(col, False, f"{col} must be 0 or empty")
                    if value not in (None, 0.0):
                        what = "steady-state dosing (SS)" if col == "SS" else "zero-order infusions (RATE)"
                        problems.add(number, col, cell(cells, col), f"{what} are not supported; give explicit doses "
                                     "(or ADDL/II) and leave it 0 or empty")
            ii = number_of("II", False, f"II is the interval between additional doses ({time_unit})") if has("II") else None
            addl = number_of("ADDL", False, "ADDL is the number of additional doses", integer=True) if has("ADDL") else None
            if ii is not None and ii < 0:
                problems.add(number, "II", cell(cells, "II"), "II must be >= 0")
                ii = None
            if addl is not None and not 0 <= addl <= _MAX_ADDL:
                problems.add(number, "ADDL", cell(cells, "ADDL"), f"ADDL must be between 0 and {_MAX_ADDL}")
                addl = None
            addl_n = int(addl or 0)
            if addl_n > 0 and not (ii and ii > 0):
                problems.add(number, "II", cell(cells, "II"),
                             f"ADDL={addl_n} needs II > 0, the interval between the additional doses ({time_unit})")
            if canonical is not None and time is not None:
                doses.append(_Dose(pid, time, drug, canonical, (ii or 0.0) * day_factor, addl_n, number))
        elif evid == 0 and mdv == 0:
            n_obs_rows += 1
            record = _observation(cells, number, cell, number_of, problems, has, dv_units, no_unit, pid, time)
            if record is not None:
                usual_high, high = ANALYTE_LIMITS.get(record.analyte, (math.inf, math.inf))
                unit = ANALYTE_CANONICAL_UNITS[record.analyte]
                if record.value > high:
                    problems.add(number, "DV", cell(cells, "DV"), f"{record.analyte} {record.value:g} {unit} is beyond "
                                 f"any measurable value (valid: 0 to {high:g} {unit}); check the value and UNIT")
                    record = None
                elif record.value > usual_high:
                    warn.append(f"row {number}: {record.analyte} {record.value:g} {unit} is extreme (usual up to "
                                f"{usual_high:g} {unit}); it is used as given")
            if record is not None:
                observations.append(record)
                if record.value == 0.0 and not record.censored:
                    zero_rows.append(number)
        # EVID 2, and EVID 0 with MDV 1: no observation, no dose.

    for (column, what), numbers in no_unit.items():
        if column == "DV":
            factors, example = ANALYTE_UNIT_FACTORS[what], ANALYTE_CANONICAL_UNITS[what]
        else:
            factors, example = DOSE_UNIT_FACTORS[ALL_DRUGS[what].dose_unit], ALL_DRUGS[what].dose_unit
        listed = ", ".join(map(str, numbers[:10])) + (f" and {len(numbers) - 10} more" if len(numbers) > 10 else "")
        problems.add(numbers[0], "UNIT", "", f"the unit of {column} is missing for {what} "
                     f"(row{'s' if len(numbers) > 1 else ''} {listed}); give it in UNIT or "
                     f"units={{'{what}': '{example}'}}; valid units are {_units_text(factors)}")
    if n_dose_rows and not (has("DRUG") or has("CMT")):
        problems.add(None, None, None, f"{n_dose_rows} dose rows (EVID=1) but no DRUG or CMT column: add DRUG "
                     f"({_valid_drugs_text()}) or CMT (codes {_codes_text(CMT_CODES)})")
    if n_obs_rows and not (has("ANALYTE") or has("DVID")):
        problems.add(None, None, None, f"{n_obs_rows} observation rows but no ANALYTE or DVID column: add ANALYTE "
                     f"({', '.join(ANALYTE_UNIT_FACTORS)}) or DVID (codes {_codes_text(DVID_CODES)})")

    expanded = _expand_doses(doses, order, problems)
    if problems:
        raise LabDataError(problems.sorted_items(), name, problems.count)

    # ---- warnings and assembly
    for pid in order:
        for c in covariate_names:
            values = cov_seen[pid][c]
            distinct = sorted({v for v, _ in values})
            if len(distinct) > 1:
                warn.append(f"covariate {c} varies within ID {pid} (values {', '.join(f'{v:g}' for v in distinct)} in "
                            f"rows {values[0][1]}-{values[-1][1]}); using the first row's value {values[0][0]:g}")
    with_obs = {o.id for o in observations}
    for pid in order:
        if pid not in with_obs:
            span = (f"row {first_row[pid]}" if first_row[pid] == last_row[pid]
                    else f"rows {first_row[pid]}-{last_row[pid]}")
            warn.append(f"ID {pid} ({span}) has no observations; it adds nothing to a likelihood")
    if zero_rows:
        shown = ", ".join(map(str, zero_rows[:10])) + (" ..." if len(zero_rows) > 10 else "")
        warn.append(f"{len(zero_rows)} uncensored observations are exactly 0 (rows {shown}); a log-scale "
                    "likelihood cannot use them; if 0 means 'undetectable', set CENS=1 and give LLOQ")
    warn += expanded[1]
    for message in warn:
        warnings.warn(f"{name}: {message}", LabDataWarning, stacklevel=2)

    index = {pid: k for k, pid in enumerate(order)}
    histories = []
    for pid in order:
        ds = expanded[0].get(pid, [])
        histories.append(DoseHistory(
            time_days=np.array([d[0] for d in ds], float), drug=np.array([d[1] for d in ds], dtype=object),
            amount=np.array([d[2] for d in ds], float),
            unit=np.array([ALL_DRUGS[d[1]].dose_unit for d in ds], dtype=object),
            row=np.array([d[3] for d in ds], np.int64)))
    obs = Observations(
        patient_index=np.array([index[o.id] for o in observations], np.int32),
        time_days=np.array([o.time_days for o in observations], float),
        analyte=np.array([o.analyte for o in observations], dtype=object),
        observable=np.array([ANALYTE_OBSERVABLES[o.analyte] for o in observations], dtype=object),
        value_canonical=np.array([o.value for o in observations], float),
        censored=np.array([o.censored for o in observations], bool),
        lloq_canonical=np.array([o.lloq for o in observations], float),
        row=np.array([o.row for o in observations], np.int64),
    )
    table = pd.DataFrame({c: [cov_first[pid][c] for pid in order] for c in covariate_names},
                         index=pd.Index(list(order), name="ID"), dtype=float)
    return LabData(ids=tuple(order), doses=tuple(histories), observations=obs, covariates=table,
                   source=name, warnings=tuple(warn))


def _dose_drug(cells, number, cell, problems: _Collector, has) -> str | None:
    """The drug of a dose row from DRUG (preferred) or CMT, or None after recording a problem."""
    name_text = cell(cells, "DRUG") if has("DRUG") else ""
    code_text = cell(cells, "CMT") if has("CMT") else ""
    if not _is_missing(name_text):  # DRUG is preferred: CMT is then ignored (it may hold compartments)
        from_name = _resolve_drug(name_text)
        if from_name is None:
            problems.add(number, "DRUG", name_text, f"not a drug popsim can dose; valid: {_valid_drugs_text()}")
        return from_name
    if not _is_missing(code_text):
        code = _parse_float(code_text)
        if code is None or not code.is_integer() or int(code) not in CMT_CODES:
            problems.add(number, "CMT", code_text, f"unknown CMT code; valid codes: {_codes_text(CMT_CODES)}")
            return None
        return CMT_CODES[int(code)]
    if has("DRUG") or has("CMT"):
        col = "DRUG" if has("DRUG") else "CMT"
        problems.add(number, col, cell(cells, col), f"a dose row (EVID=1) needs the drug in {col}; valid: "
                     + (_valid_drugs_text() if col == "DRUG" else _codes_text(CMT_CODES)))
    return None


def _observation(cells, number, cell, number_of, problems: _Collector, has, dv_units, no_unit, pid,
                 time) -> _Obs | None:
    """Parse one observation row (EVID=0, MDV=0), recording problems; None if it failed."""
    ok = True
    # analyte
    from_name = from_code = None
    name_text = cell(cells, "ANALYTE") if has("ANALYTE") else ""
    code_text = cell(cells, "DVID") if has("DVID") else ""
    if not _is_missing(name_text):  # ANALYTE is preferred: DVID is then ignored
        from_name = _resolve_analyte(name_text)
        if from_name is None:
            problems.add(number, "ANALYTE", name_text, f"unknown analyte; valid analytes are "
                         f"{', '.join(ANALYTE_UNIT_FACTORS)}")
            ok = False
    elif not _is_missing(code_text):
        code = _parse_float(code_text)
        if code is None or not code.is_integer() or int(code) not in DVID_CODES:
            problems.add(number, "DVID", code_text, f"unknown DVID code; valid codes: {_codes_text(DVID_CODES)}")
            ok = False
        else:
            from_code = DVID_CODES[int(code)]
    analyte = from_name or from_code
    if analyte is None and ok and (has("ANALYTE") or has("DVID")):
        col = "ANALYTE" if has("ANALYTE") else "DVID"
        problems.add(number, col, cell(cells, col), "an observation row (EVID=0, MDV=0) needs the analyte; valid: "
                     + (", ".join(ANALYTE_UNIT_FACTORS) if col == "ANALYTE" else _codes_text(DVID_CODES)))
        ok = False

    # censoring
    flags = {}
    flag_invalid = False  # a bad CENS/BLQ: do not also demand DV
    for col in ("CENS", "BLQ"):
        if not has(col):
            continue
        value = number_of(col, False, "valid values are 0 (quantified) and 1 (below the limit)", integer=True)
        if value is None:
            flag_invalid = flag_invalid or not _is_missing(cell(cells, col))
        elif value == -1 and col == "CENS":
            problems.add(number, col, cell(cells, col), "right-censoring (CENS=-1, above a limit) is not "
                         "supported; valid values are 0 and 1 (below the limit)")
            flag_invalid = True
        elif value not in (0, 1):
            problems.add(number, col, cell(cells, col), "valid values are 0 (quantified) and 1 (below the limit)")
            flag_invalid = True
        else:
            flags[col] = bool(value)
    ok = ok and not flag_invalid
    if len(set(flags.values())) > 1:
        problems.add(number, "BLQ", cell(cells, "BLQ"), f"BLQ={int(flags['BLQ'])} contradicts CENS={int(flags['CENS'])}")
        ok = False
    censored = any(flags.values())

    # DV and limit
    if censored or flag_invalid:
        dv = number_of("DV", False, "DV must be a number or empty on a censored row")
    else:
        dv = number_of("DV", True, "an observation row (EVID=0, MDV=0) needs DV; set MDV=1 if there is no value")
    if dv is not None and dv < 0:
        problems.add(number, "DV", cell(cells, "DV"), "DV must be >= 0 (a concentration or count)")
        ok = False
    limit_col = "LLOQ" if has("LLOQ") else "LIMIT" if has("LIMIT") else None
    lloq = number_of(limit_col, False, "the limit of quantification is a number in the row's UNIT") if limit_col else None
    if lloq is not None and lloq <= 0:
        problems.add(number, limit_col, cell(cells, limit_col), f"{limit_col} must be > 0 (the lower limit of "
                     "quantification, in the row's UNIT)")
        ok = False
        lloq = None
    elif censored and lloq is None:
        if dv is not None and dv > 0:
            lloq = dv  # NONMEM M3 / Monolix convention: DV holds the limit on a censored row
        else:
            col = limit_col or "LLOQ"
            problems.add(number, col, cell(cells, col) if limit_col else None,
                         f"a row below the limit of quantification ({'CENS' if 'CENS' in flags else 'BLQ'}=1) needs "
                         "the limit: give it in an LLOQ column (same unit as DV), or put it in DV")
            ok = False

    # unit
    factor = None
    if analyte is not None:
        factors = ANALYTE_UNIT_FACTORS[analyte]
        unit_text = cell(cells, "UNIT")
        if _is_missing(unit_text):
            unit = dv_units.get(analyte)
            if unit is None:
                no_unit.setdefault(("DV", analyte), []).append(number)
        else:
            unit = _lookup_unit(unit_text, factors)
            if unit is None:
                problems.add(number, "UNIT", unit_text, f"not a unit of {analyte}; valid units are "
                             f"{_units_text(factors)}")
        if unit is not None:
            factor = factors[unit]
    if not ok or analyte is None or factor is None or time is None or (dv is None and not censored):
        return None
    lloq_c = float("nan") if lloq is None else lloq * factor
    value = lloq_c if censored else dv * factor
    return _Obs(pid, time, analyte, value, censored, lloq_c, number)


def _expand_doses(doses: list[_Dose], order: list[str], problems: _Collector):
    """ADDL-expanded doses per ID as sorted (time, drug, amount, row), and warnings.

    Doses of one drug at the same time are added together (with a warning); two different
    TRT products at the same time cannot be one popsim regimen and are a problem.
    """
    per_id: dict[str, list[tuple[float, str, float, int]]] = {}
    for d in doses:
        for k in range(d.addl + 1):
            per_id.setdefault(d.id, []).append((d.time_days + k * d.ii_days, d.drug, d.amount, d.row))
    out: dict[str, list[tuple[float, str, float, int]]] = {}
    notes: list[str] = []
    for pid in order:
        items = sorted(per_id.get(pid, []), key=lambda x: (x[0], x[3]))
        merged: list[tuple[float, str, float, int]] = []
        rows_of: list[list[int]] = []
        for t, drug, amount, row in items:
            # Entries at the same time are at the end of ``merged`` (items are sorted by time).
            coincident = []
            for j in range(len(merged) - 1, -1, -1):
                if merged[j][0] < t - _SPACING_TOL_DAYS:
                    break
                coincident.append(j)
            same = next((j for j in coincident if merged[j][1] == drug), None)
            if same is not None:
                t0, _, a0, r0 = merged[same]
                merged[same] = (t0, drug, a0 + amount, r0)
                rows_of[same].append(row)
                continue
            clash = next((merged[j] for j in coincident
                          if merged[j][1] in TRT_PRODUCTS and drug in TRT_PRODUCTS), None)
            if clash is not None:
                problems.add(row, "DRUG", drug, f"ID {pid} gets {clash[1]} (row {clash[3]}) and {drug} at the same time "
                             f"(day {t:g}); a popsim regimen holds one testosterone product at a time")
                continue
            merged.append((t, drug, amount, row))
            rows_of.append([row])
        for (t, drug, amount, _), rows in zip(merged, rows_of):
            if len(rows) > 1:
                notes.append(f"ID {pid}: {len(rows)} doses of {drug} at day {t:g} (rows "
                             f"{', '.join(map(str, sorted(set(rows))))}) are added together ({amount:g} "
                             f"{ALL_DRUGS[drug].dose_unit})")
        out[pid] = merged
    return out, notes
