"""The lab-data schema: columns, code tables, analyte and drug names, and the error types
of popsim.calibration.data (see docs/lab-data.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

from popsim.dosing.drugs import PROTOCOL_DRUGS, TRT_PRODUCTS, Product

__all__ = [
    "ANALYTE_CANONICAL_UNITS", "ANALYTE_OBSERVABLES", "CMT_CODES", "Column", "DVID_CODES", "DoseHistory",
    "LabData", "LabDataError", "LabDataWarning", "Observations", "ObservationArrays", "Problem",
    "REQUIRED_COLUMNS", "ROW_CONVENTION", "SCHEMA", "read_lab_data",
]

ROW_CONVENTION = ("row numbers are line numbers of the CSV file: the header is row 1, the first data row is "
                  "row 2 (for a DataFrame, row = position + 2)")


class Column(NamedTuple):
    """One column of the lab-data schema."""

    name: str
    required: bool
    description: str


REQUIRED_COLUMNS: tuple[str, ...] = ("ID", "TIME", "EVID", "AMT", "DV", "MDV")

SCHEMA: tuple[Column, ...] = (
    Column("ID", True, "patient identifier; all rows of one ID together, in time order"),
    Column("TIME", True, "time of the event, days (or hours with time_unit='hours'); non-decreasing within an ID"),
    Column("EVID", True, "0 observation, 1 dose, 2 other event (ignored); 3/4 (resets) are not supported"),
    Column("AMT", True, "dose amount on EVID=1 rows (> 0, in the row's UNIT); ignored on other rows"),
    Column("DV", True, "observed value on EVID=0 rows (>= 0, in the row's UNIT); ignored on dose rows"),
    Column("MDV", True, "1 = no observation on this row (required on dose rows), 0 = DV is an observation"),
    Column("DRUG", False, "drug of a dose row by name (preferred over CMT)"),
    Column("CMT", False, "drug of a dose row by code (CMT_CODES); ignored where DRUG is given and on "
                        "observation rows"),
    Column("ANALYTE", False, "analyte of an observation row by name"),
    Column("DVID", False, "analyte of an observation row by code (DVID_CODES); ignored where ANALYTE is given"),
    Column("UNIT", False, "unit of DV (observation rows) or AMT (dose rows); or pass units= to read_lab_data"),
    Column("II", False, "interval between additional doses, in the TIME unit"),
    Column("ADDL", False, "number of additional doses after this one at TIME + k*II (needs II > 0)"),
    Column("CENS", False, "1 = DV is below the limit of quantification (left-censored), 0 = not censored"),
    Column("BLQ", False, "same meaning as CENS (1 = below the limit)"),
    Column("LLOQ", False, "lower limit of quantification, in the row's UNIT; required on censored rows "
                          "unless DV holds the limit"),
    Column("LIMIT", False, "synonym of LLOQ when there is no LLOQ column"),
    Column("SS", False, "steady-state dosing: not supported (must be 0 or empty)"),
    Column("RATE", False, "zero-order infusion: not supported (must be 0 or empty)"),
    Column("AGE", False, "covariate, years (read from each ID's first row)"),
    Column("BMI", False, "covariate, kg/m^2 (read from each ID's first row)"),
)

CMT_CODES: dict[int, str] = {
    1: "enanthate", 2: "cypionate", 3: "undecanoate", 4: "gel", 5: "hcg", 6: "clomiphene",
    7: "enclomiphene", 8: "tamoxifen", 9: "anastrozole", 10: "gonadorelin", 11: "fsh",
}
DVID_CODES: dict[int, str] = {
    1: "total_testosterone", 2: "free_testosterone", 3: "lh", 4: "fsh", 5: "estradiol",
    6: "inhibin_b", 7: "shbg", 8: "sperm_concentration",
}
# Analyte -> name of the model output it is compared with (popsim.solve.integrator.OBSERVABLES).
ANALYTE_OBSERVABLES: dict[str, str] = {
    "total_testosterone": "total_testosterone_nmol_l", "free_testosterone": "free_testosterone_pmol_l",
    "lh": "lh_iu_l", "fsh": "fsh_iu_l", "estradiol": "estradiol_pg_ml", "inhibin_b": "inhibin_b_pg_ml",
    "shbg": "shbg_nmol_l", "sperm_concentration": "sperm_concentration_m_ml",
}
ANALYTE_CANONICAL_UNITS: dict[str, str] = {
    "total_testosterone": "nmol/L", "free_testosterone": "pmol/L", "lh": "IU/L", "fsh": "IU/L",
    "estradiol": "pg/mL", "inhibin_b": "pg/mL", "shbg": "nmol/L", "sperm_concentration": "M/mL",
}
# Other spellings accepted in the ANALYTE and DRUG columns (compared after _name_key).
ANALYTE_ALIASES: dict[str, str] = {
    "testosterone": "total_testosterone", "total_t": "total_testosterone", "tt": "total_testosterone",
    "t": "total_testosterone", "free_t": "free_testosterone", "ft": "free_testosterone",
    "e2": "estradiol", "inhibin": "inhibin_b", "inhb": "inhibin_b",
    "sperm": "sperm_concentration", "sperm_count_per_ml": "sperm_concentration",
    **{obs: analyte for analyte, obs in ANALYTE_OBSERVABLES.items()},
}
DRUG_ALIASES: dict[str, str] = {
    "te": "enanthate", "tc": "cypionate", "tu": "undecanoate",
    **{f"testosterone_{p}": p for p in TRT_PRODUCTS},
}
ALL_DRUGS: dict[str, Product] = {**TRT_PRODUCTS, **PROTOCOL_DRUGS}

# Plausible values, canonical units (docs/inputs.md): above ``usual_high`` a value gets a
# warning (possible but extreme, e.g. testosterone on a supraphysiological cycle); above
# ``high`` it is an error (no assay reports it: usually a unit or decimal mistake).
ANALYTE_LIMITS: dict[str, tuple[float, float]] = {  # analyte: (usual_high, high)
    "total_testosterone": (150.0, 2000.0), "free_testosterone": (3000.0, 50000.0),
    "lh": (100.0, 1000.0), "fsh": (150.0, 1000.0), "estradiol": (1000.0, 20000.0),
    "inhibin_b": (1000.0, 10000.0), "shbg": (250.0, 2000.0), "sperm_concentration": (500.0, 5000.0),
}
# covariate: (low, usual_low, usual_high, high), errors outside [low, high].
COVARIATE_LIMITS: dict[str, tuple[float, float, float, float]] = {
    "AGE": (12.0, 18.0, 90.0, 110.0), "BMI": (10.0, 15.0, 60.0, 100.0),
}
MAX_ABS_TIME_DAYS = 36525.0  # 100 years either side of the time origin

_MISSING = {"", ".", "na", "nan", "n/a", "none", "null"}
_SPACING_TOL_DAYS = 1e-6
_SINGLE_DOSE_INTERVAL_DAYS = 1.0
_MAX_ADDL = 100_000  # a daily gel for 270 years; guards against typos that would exhaust memory


# ----------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class Problem:
    """One problem in a lab-data table.

    Attributes:
        row: CSV line number (header = row 1, see ROW_CONVENTION); None for the whole file.
        column: the column at fault (None when not one column).
        value: the offending cell text (None when not one cell).
        message: what is wrong and what is valid.
    """

    row: int | None
    column: str | None
    value: str | None
    message: str

    def __str__(self) -> str:
        where = "file" if self.row is None else f"row {self.row}"
        if self.column is not None:
            where += f", column {self.column}"
        if self.value is not None:
            where += f", value {self.value!r}"
        return f"{where}: {self.message}"


class LabDataError(ValueError):
    """Lab data that failed validation; ``problems`` lists every problem found.

    Attributes:
        problems: the problems, in row order of discovery (at most ``max_problems``).
        n_problems: how many problems were found in all (may exceed ``len(problems)``).
        source: the file name (or "DataFrame").
    """

    def __init__(self, problems: Sequence[Problem], source: str = "lab data", n_problems: int | None = None):
        self.problems = list(problems)
        self.n_problems = len(self.problems) if n_problems is None else int(n_problems)
        self.source = source
        head = f"{source}: {self.n_problems} problem{'s' if self.n_problems != 1 else ''} in lab data ({ROW_CONVENTION}):"
        lines = [head] + [f"  - {p}" for p in self.problems]
        if self.n_problems > len(self.problems):
            lines.append(f"  ... and {self.n_problems - len(self.problems)} more not shown; fix these and read again")
        super().__init__("\n".join(lines))

    def brief(self, others: int = 8) -> str:
        """One line: the source, the first problem in full and where the others are."""
        if not self.problems:
            return f"{self.source}: {self.n_problems} problems in lab data"
        first, rest = self.problems[0], self.problems[1:]
        whole_file = first.row is None and first.column is None and first.value is None
        line = f"{self.source}: {first.message if whole_file else first}"
        more = self.n_problems - 1
        if more:
            shown = "; ".join(_short(p) for p in rest[:others])
            line += f" (and {more} more problem{'s' if more > 1 else ''}: {shown}{'; ...' if more > others else ''})"
        return line


def _short(p: "Problem") -> str:
    where = "file" if p.row is None else f"row {p.row}"
    if p.column is not None:
        where += f" column {p.column}"
    return where


class LabDataWarning(UserWarning):
    """Something in lab data that is usable but probably not what was meant."""
