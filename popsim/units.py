"""The canonical unit system of popsim's numerical core, and conversions at the edges.

Inside the core every quantity is in these units; names that cross a boundary carry
their unit (``dose_mg``, ``interval_days``, ``testosterone_nmol_l``).

| quantity | canonical unit |
|---|---|
| time | day |
| total / free testosterone | nmol/L / pmol/L |
| intratesticular testosterone (ITT) | nmol/L |
| LH, FSH, hCG | IU/L |
| estradiol | pg/mL |
| inhibin B | pg/mL (= ng/L) |
| SHBG | nmol/L |
| sperm concentration | million/mL (M/mL) |
| small-molecule drug concentrations | ng/mL |
| doses | mg (testosterone esters, SERMs, anastrozole), IU (hCG, FSH), ug (gonadorelin) |
"""

from __future__ import annotations

# Molar mass of testosterone, g/mol (PubChem CID 6013).
TESTOSTERONE_G_PER_MOL = 288.42
# Molar mass of estradiol, g/mol (PubChem CID 5757).
ESTRADIOL_G_PER_MOL = 272.38

# 1 nmol/L testosterone = 28.84 ng/dL (model-facts.md, conventions).
NG_DL_PER_NMOL_L_TESTOSTERONE = TESTOSTERONE_G_PER_MOL / 10.0
# 1 pg/mL estradiol = 3.671 pmol/L (model-facts.md, conventions).
PMOL_L_PER_PG_ML_ESTRADIOL = 1000.0 / ESTRADIOL_G_PER_MOL

HOURS_PER_DAY = 24.0
DAYS_PER_WEEK = 7.0
# Mean Gregorian month and year, days.
DAYS_PER_MONTH = 30.4375
DAYS_PER_YEAR = 365.25


def mg_testosterone_to_nmol(mass_mg: float) -> float:
    """Convert a mass of testosterone in mg to nmol."""
    return mass_mg * 1e6 / TESTOSTERONE_G_PER_MOL


# Conversions from units users write to the canonical unit of each analyte:
# {analyte: {unit: factor}} with value_canonical = value_in_unit * factor.
ANALYTE_UNIT_FACTORS: dict[str, dict[str, float]] = {
    "total_testosterone": {"nmol/L": 1.0, "ng/dL": 1.0 / NG_DL_PER_NMOL_L_TESTOSTERONE,
                           "ng/mL": 100.0 / NG_DL_PER_NMOL_L_TESTOSTERONE},
    "free_testosterone": {"pmol/L": 1.0, "pg/mL": 1000.0 / TESTOSTERONE_G_PER_MOL,
                          "nmol/L": 1000.0},
    "lh": {"IU/L": 1.0, "mIU/mL": 1.0},
    "fsh": {"IU/L": 1.0, "mIU/mL": 1.0},
    "estradiol": {"pg/mL": 1.0, "pmol/L": 1.0 / PMOL_L_PER_PG_ML_ESTRADIOL,
                  "ng/L": 1.0},
    "inhibin_b": {"pg/mL": 1.0, "ng/L": 1.0},
    "shbg": {"nmol/L": 1.0},
    "sperm_concentration": {"M/mL": 1.0, "10^6/mL": 1.0, "million/mL": 1.0},
}

# Units of the dose of each drug a regimen may name, with the factor to the canonical
# dose unit of that drug (mg, IU or ug).
DOSE_UNIT_FACTORS: dict[str, dict[str, float]] = {
    "mg": {"mg": 1.0, "g": 1000.0, "ug": 1e-3, "mcg": 1e-3},
    "IU": {"IU": 1.0, "iu": 1.0, "kIU": 1000.0},
    "ug": {"ug": 1.0, "mcg": 1.0, "mg": 1000.0},
}

TIME_UNIT_TO_DAYS: dict[str, float] = {
    "days": 1.0, "day": 1.0, "d": 1.0,
    "hours": 1.0 / HOURS_PER_DAY, "hour": 1.0 / HOURS_PER_DAY, "h": 1.0 / HOURS_PER_DAY,
    "weeks": DAYS_PER_WEEK, "week": DAYS_PER_WEEK, "w": DAYS_PER_WEEK,
    "months": DAYS_PER_MONTH, "month": DAYS_PER_MONTH,
    "years": DAYS_PER_YEAR, "year": DAYS_PER_YEAR,
}
