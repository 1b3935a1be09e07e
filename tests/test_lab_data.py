"""Lab data layer: the NONMEM-style CSV reader, its validation messages and converters."""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from popsim.calibration.data import (
    ANALYTE_CANONICAL_UNITS, ANALYTE_OBSERVABLES, CMT_CODES, DVID_CODES, SCHEMA, LabDataError, LabDataWarning,
    read_lab_data,
)
from popsim.dosing.drugs import PROTOCOL_DRUGS, TRT_PRODUCTS
from popsim.dosing.regimen import TRTCourse, DrugCourse, validate_regimen
from popsim.dosing.table import compile_regimens
from popsim.solve.integrator import OBSERVABLES
from popsim.units import ANALYTE_UNIT_FACTORS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "popsim" / "calibration" / "examples" / "lab_data_example.csv"
DOC = ROOT / "docs" / "lab-data.md"


def _read_quietly(source, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return read_lab_data(source, **kwargs)


def _write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text.strip() + "\n")
    return path


def _frame(rows, columns=("ID", "TIME", "EVID", "AMT", "DRUG", "DV", "ANALYTE", "UNIT", "MDV")):
    return pd.DataFrame(rows, columns=list(columns))


# ----------------------------------------------------------------------------- the example


def test_example_reads_cleanly():
    data = _read_quietly(EXAMPLE)
    assert data.ids == ("101", "102", "103")
    assert data.warnings == ()
    assert list(data.covariates.columns) == ["AGE", "BMI"]
    assert data.covariates.loc["102"].tolist() == [46.0, 31.4]
    obs = data.observations
    assert len(obs.time_days) == 54
    assert np.all(np.diff(obs.patient_index) >= 0)
    for i in range(3):
        assert np.all(np.diff(obs.time_days[obs.patient_index == i]) >= 0)
    assert set(obs.observable) <= set(OBSERVABLES)


def test_example_unit_conversion():
    data = _read_quietly(EXAMPLE)
    obs = data.observations
    row2 = np.flatnonzero(obs.row == 2)[0]  # 300 ng/dL total testosterone, patient 101
    assert obs.analyte[row2] == "total_testosterone"
    assert obs.observable[row2] == "total_testosterone_nmol_l"
    assert obs.value_canonical[row2] == pytest.approx(10.40, abs=0.005)
    e2 = np.flatnonzero((obs.analyte == "estradiol") & (obs.patient_index == 1))
    assert obs.value_canonical[e2[0]] == pytest.approx(73.4 / 3.671, rel=1e-3)  # 73.4 pmol/L
    assert obs.value_canonical[e2[0]] == pytest.approx(20.0, abs=0.05)
    # nmol/L testosterone passes unchanged; LH in IU/L unchanged
    t102 = np.flatnonzero((obs.analyte == "total_testosterone") & (obs.patient_index == 1))
    assert obs.value_canonical[t102].tolist() == [9.8, 14.6, 15.1, 6.2]


def test_example_blq_semen_sample():
    obs = _read_quietly(EXAMPLE).observations
    assert obs.censored.sum() == 1
    k = np.flatnonzero(obs.censored)[0]
    assert obs.analyte[k] == "sperm_concentration" and obs.time_days[k] == 182.0 and obs.row[k] == 17
    assert obs.lloq_canonical[k] == pytest.approx(0.1)
    assert obs.value_canonical[k] == pytest.approx(0.1)  # M3: value holds the limit
    assert np.isnan(obs.lloq_canonical[~obs.censored]).all()


def test_addl_expansion_gives_dose_times():
    data = _read_quietly(EXAMPLE)
    te, tc, p3 = data.doses
    np.testing.assert_allclose(te.time_days, 7.0 * np.arange(52))  # rows 0, 7, then 14 + 49 x 7
    assert set(te.drug) == {"enanthate"} and np.all(te.amount == 200.0) and set(te.unit) == {"mg"}
    assert te.row.tolist()[:4] == [7, 8, 9, 9]
    np.testing.assert_allclose(tc.time_days, 14.0 * np.arange(26))
    assert np.all(tc.amount == 100.0)
    hcg = p3.drug == "hcg"
    np.testing.assert_allclose(p3.time_days[hcg], 182.0 + 3.5 * np.arange(24))
    assert np.all(p3.amount[hcg] == 1500.0) and set(p3.unit[hcg]) == {"IU"}
    np.testing.assert_allclose(p3.time_days[~hcg], 7.0 * np.arange(26))


def test_regimens_reproduce_the_courses():
    data = _read_quietly(EXAMPLE)
    r101, r102, r103 = data.regimens()
    assert r101.trt == (TRTCourse("enanthate", 200.0, "mg", 7.0, 364.0, 0.0),)
    assert r101.drugs == ()
    assert r102.trt == (TRTCourse("cypionate", 100.0, "mg", 14.0, 364.0, 0.0),)
    assert r103.trt == (TRTCourse("enanthate", 150.0, "mg", 7.0, 182.0, 0.0),)
    assert r103.drugs == (DrugCourse("hcg", 1500.0, "IU", 3.5, 182.0, 266.0),)
    table = compile_regimens([r101, r102, r103])
    assert table.n_doses[0].max() == 52 and table.n_doses[1].max() == 26


def _dose_times_from_table(table, i):
    times = []
    for start, interval, n, amount in zip(table.start_days[i], table.interval_days[i], table.n_doses[i],
                                          table.amount[i]):
        times += [(round(start + k * interval, 6), amount) for k in range(n)]
    return sorted(times)


def test_regimens_of_irregular_dosing_reproduce_every_dose():
    # Weekly TE with a late dose, a dose change, Mon/Thu hCG (3/4-day gaps), and a lone dose.
    rows = []
    te = [(0, 200), (7, 200), (14, 200), (17, 200), (24, 200), (31, 200), (38, 150), (45, 150), (60, 150)]
    rows += [(1, t, 1, a, "enanthate", ".", ".", "mg", 1) for t, a in te]
    hcg = [70, 73, 77, 80, 84, 87, 91]
    rows += [(1, t, 1, 1000, "hcg", ".", ".", "IU", 1) for t in hcg]
    rows += [(1, 100, 1, 25, "clomiphene", ".", ".", "mg", 1)]
    rows += [(1, 120, 0, ".", ".", 12.0, "total_testosterone", "nmol/L", 0)]
    data = _read_quietly(_frame(rows), covariates=())
    (regimen,) = data.regimens()
    validate_regimen(regimen)
    assert regimen.trt[0] == TRTCourse("enanthate", 200.0, "mg", 7.0, 17.0, 0.0)  # 0, 7, 14; cut at 17
    assert regimen.trt[1] == TRTCourse("enanthate", 200.0, "mg", 7.0, 21.0, 17.0)
    table = compile_regimens([regimen])
    got = _dose_times_from_table(table, 0)
    # clomiphene enters two PK species: count it once
    clomiphene_rows = [j for j, n in enumerate(table.n_doses[0]) if n > 0 and table.amount[0][j] == 25.0]
    assert len(clomiphene_rows) == 2
    expected = sorted([(float(t), float(a)) for t, a in te] + [(float(t), 1000.0) for t in hcg]
                      + [(100.0, 25.0), (100.0, 25.0)])
    assert got == expected


def test_hours_codes_and_file_level_units():
    # CMT/DVID codes instead of names, TIME and II in hours, units given for the file.
    df = pd.DataFrame({
        "id": [7, 7, 7, 7], "time": [0, 0, 168, 336], "evid": [0, 1, 0, 0], "amt": [np.nan, 1, np.nan, np.nan],
        "cmt": [np.nan, 3, np.nan, np.nan], "ii": [np.nan, 1680, np.nan, np.nan], "addl": [np.nan, 2, np.nan, np.nan],
        "dv": [4.0, np.nan, 0.7, 600], "dvid": [3, np.nan, 3, 1], "mdv": [0, 1, 0, 0],
    })
    units = {"lh": "mIU/mL", "total_testosterone": "ng/dL", "undecanoate": "g"}
    data = _read_quietly(df, time_unit="hours", units=units, covariates=())
    assert data.ids == ("7",)
    (doses,) = data.doses
    np.testing.assert_allclose(doses.time_days, [0.0, 70.0, 140.0])
    np.testing.assert_allclose(doses.amount, [1000.0, 1000.0, 1000.0])  # 1 g: units= applies to AMT
    obs = data.observations
    np.testing.assert_allclose(obs.time_days, [0.0, 7.0, 14.0])
    assert obs.analyte.tolist() == ["lh", "lh", "total_testosterone"]
    assert obs.value_canonical[2] == pytest.approx(600 / 28.842)
    assert obs.row.tolist() == [2, 4, 5]  # DataFrame rows: position + 2


def test_observation_arrays_padded_for_a_likelihood():
    data = _read_quietly(EXAMPLE)
    arrays = data.observation_arrays()
    n_obs = [27, 12, 15]
    assert arrays.time_days.shape == (3, 27)
    assert arrays.mask.sum(axis=1).tolist() == n_obs
    for field in arrays:
        assert np.all(np.isfinite(field.astype(float)))
    for i, k in enumerate(n_obs):
        assert np.all(np.diff(arrays.time_days[i]) >= 0)
        assert np.all(arrays.time_days[i, k:] == arrays.time_days[i, k - 1])
    assert OBSERVABLES[arrays.observable[0, 0]] == "total_testosterone_nmol_l"
    assert OBSERVABLES[arrays.observable[0, 4]] == "sperm_concentration_m_ml"
    assert arrays.censored.sum() == 1 and arrays.lloq[arrays.censored][0] == pytest.approx(0.1)


# ----------------------------------------------------------------------------- validation

BAD_CSV = """
ID,TIME,EVID,AMT,DRUG,DV,ANALYTE,UNIT,MDV,AGE,BMI
1,0,0,.,.,350,total_testosterone,ng/dL,0,40,28
1,0,1,200,enanthate,.,.,mg,1,40,28
1,7,0,.,.,,lh,IU/L,0,40,28
1,14,0,.,.,"12,5",total_testosterone,nmol/L,0,40,28
1,14,1,,enanthate,.,.,mg,1,40,28
2,0,0,.,.,4.2,lh,IU/L,0,51,30
2,30,0,.,.,-0.4,lh,IU/L,0,51,30
2,21,0,.,.,5.1,fsh,IU/L,0,51,30
2,28,0,.,.,2.1,PSA,ng/mL,0,51,30
2,28,0,.,.,0.45,total_testosterone,mg/dL,0,51,30
2,28,1,250,nandrolone,.,.,mg,1,51,30
"""


def test_bad_csv_lists_every_problem_with_row_and_column(tmp_path):
    with pytest.raises(LabDataError) as info:
        read_lab_data(_write(tmp_path, BAD_CSV))
    err = info.value
    found = [(p.row, p.column) for p in err.problems]
    assert found == [(4, "DV"), (5, "DV"), (6, "AMT"), (8, "DV"), (9, "TIME"), (10, "ANALYTE"), (11, "UNIT"),
                     (12, "DRUG")]
    message = str(err)
    assert "8 problems" in message and "header is row 1" in message
    for expected in [
        "row 4, column DV, value '': DV is missing",
        "row 5, column DV, value '12,5': DV must be a number (use '.' as the decimal separator)",
        "row 6, column AMT",
        "row 8, column DV, value '-0.4': DV must be >= 0",
        "row 9, column TIME, value '21': TIME goes backwards within ID 2 (row 8 has TIME 30)",
        "row 10, column ANALYTE, value 'PSA': unknown analyte; valid analytes are total_testosterone",
        "row 11, column UNIT, value 'mg/dL': not a unit of total_testosterone; valid units are ng/dL, ng/mL, nmol/L",
        "row 12, column DRUG, value 'nandrolone': not a drug popsim can dose; valid: cypionate, enanthate",
    ]:
        assert expected in message, (expected, message)


def test_missing_required_column_is_one_clear_message(tmp_path):
    text = "\n".join(line.split(",", 2)[0] + "," + line.split(",", 2)[2]
                     for line in BAD_CSV.strip().splitlines()[:4])  # drop TIME
    with pytest.raises(LabDataError) as info:
        read_lab_data(_write(tmp_path, text))
    assert len(info.value.problems) == 1
    problem = info.value.problems[0]
    assert problem.row == 1
    assert "missing required column TIME" in problem.message
    assert "found columns: ID, EVID, AMT, DRUG, DV" in problem.message


def test_more_validation_rules():
    rows = [
        (1, 0, 3, ".", ".", ".", ".", ".", 1),                        # row 2: EVID 3
        (1, 0, 1, 200, "cypionate", ".", ".", "IU", 1),               # row 3: IU for an ester
        (1, 0, 1, 5000, "hcg", ".", ".", "IU", 0),                    # row 4: MDV 0 on a dose
        (1, 1, 0, ".", ".", 0.05, "sperm_concentration", "M/mL", 0),  # fine
        (2, 0, 1, 100, ".", ".", ".", "mg", 1),                       # row 6: no drug
        (2, 1, 0, ".", ".", 3.0, "lh", ".", 0),                       # row 7: no unit
        (1, 2, 0, ".", ".", 1.0, "lh", "IU/L", 0),                    # row 8: ID 1 again after ID 2
    ]
    with pytest.raises(LabDataError) as info:
        read_lab_data(_frame(rows), covariates=())
    by_row = {(p.row, p.column): p.message for p in info.value.problems}
    assert "not supported" in by_row[(2, "EVID")] and "reset" in by_row[(2, "EVID")]
    assert "valid units are g, mcg, mg, ug" in by_row[(3, "UNIT")]
    assert "MDV=1" in by_row[(4, "MDV")]
    assert "needs the drug" in by_row[(6, "DRUG")]
    assert "units={'lh': 'IU/L'}" in by_row[(7, "UNIT")]
    assert "appears again" in by_row[(8, "ID")]


def test_addl_without_ii_and_blq_without_lloq():
    df = pd.DataFrame({
        "ID": [1, 1, 1, 1], "TIME": [0, 0, 10, 20], "EVID": [0, 1, 0, 0], "AMT": [None, 200, None, None],
        "DRUG": [None, "enanthate", None, None], "II": [None, None, None, None], "ADDL": [None, 10, None, None],
        "DV": [15.0, None, None, 0.2], "ANALYTE": ["total_testosterone", None, "sperm_concentration", "lh"],
        "UNIT": ["nmol/L", "mg", "M/mL", "IU/L"], "MDV": [0, 1, 0, 0], "BLQ": [0, None, 1, 1],
        "LLOQ": [None, None, None, None],
    })
    with pytest.raises(LabDataError) as info:
        read_lab_data(df, covariates=())
    found = {(p.row, p.column): p.message for p in info.value.problems}
    assert set(found) == {(3, "II"), (4, "LLOQ")}
    assert "ADDL=10 needs II > 0" in found[(3, "II")]
    assert "needs the limit" in found[(4, "LLOQ")]
    # With the limit the same data reads; row 5 takes its limit from DV (M3 convention).
    df.loc[1, "II"] = 7
    df.loc[2, "LLOQ"] = 0.1
    data = _read_quietly(df, covariates=())
    assert data.observations.censored.tolist() == [False, True, True]
    np.testing.assert_allclose(data.observations.lloq_canonical[1:], [0.1, 0.2])
    assert len(data.doses[0].time_days) == 11


def test_warnings_for_patient_without_observations_and_varying_covariate():
    rows = [
        (1, 0, 0, ".", ".", 12.0, "total_testosterone", "nmol/L", 0, 40),
        (1, 30, 0, ".", ".", 13.0, "total_testosterone", "nmol/L", 0, 41),
        (2, 0, 1, 100, "enanthate", ".", ".", "mg", 1, 50),
    ]
    df = _frame(rows, columns=("ID", "TIME", "EVID", "AMT", "DRUG", "DV", "ANALYTE", "UNIT", "MDV", "AGE"))
    with pytest.warns(LabDataWarning) as record:
        data = read_lab_data(df, covariates=("AGE",))
    messages = " | ".join(str(w.message) for w in record)
    assert "ID 2 (row 4) has no observations" in messages
    assert "AGE varies within ID 1" in messages
    assert data.covariates["AGE"].tolist() == [40.0, 50.0]
    assert len(data.warnings) == 2


def test_problem_list_is_capped():
    rows = [(1, t, 0, ".", ".", -1.0, "lh", "IU/L", 0) for t in range(80)]
    with pytest.raises(LabDataError) as info:
        read_lab_data(_frame(rows), covariates=(), max_problems=50)
    assert len(info.value.problems) == 50 and info.value.n_problems == 80
    assert "30 more not shown" in str(info.value)


# ----------------------------------------------------------------------------- schema and docs


def test_schema_tables_are_consistent_with_popsim():
    assert set(CMT_CODES.values()) == set(TRT_PRODUCTS) | set(PROTOCOL_DRUGS)
    assert set(DVID_CODES.values()) == set(ANALYTE_UNIT_FACTORS) == set(ANALYTE_OBSERVABLES)
    assert set(ANALYTE_OBSERVABLES.values()) <= set(OBSERVABLES)
    for analyte, unit in ANALYTE_CANONICAL_UNITS.items():
        assert ANALYTE_UNIT_FACTORS[analyte][unit] == 1.0


def test_docs_cover_the_schema():
    text = DOC.read_text()
    for column in SCHEMA:
        assert f"`{column.name}`" in text, column.name
    for code, name in CMT_CODES.items():
        assert f"| {code} | {name} |" in text
    for code, name in DVID_CODES.items():
        assert f"| {code} | {name} |" in text
    for analyte, factors in ANALYTE_UNIT_FACTORS.items():
        for unit in factors:
            assert unit in text, (analyte, unit)


def test_semicolon_file_with_comments_keeps_line_numbers(tmp_path):
    text = """
# exported from the clinic's LIS, 2024-05-01
ID;TIME;EVID;AMT;DRUG;DV;ANALYTE;UNIT;MDV

1;0;0;.;.;3.5;LH;mIU/mL;0
1;7;0;.;.;12,5;Total T;nmol/L;0
"""
    path = tmp_path / "semicolon.csv"
    path.write_text(text.lstrip("\n"))
    with pytest.raises(LabDataError) as info:
        read_lab_data(path, covariates=())
    (problem,) = info.value.problems
    assert (problem.row, problem.column, problem.value) == (5, "DV", "12,5")
    assert "decimal separator" in problem.message
    path.write_text(text.lstrip("\n").replace("12,5", "12.5"))
    data = _read_quietly(path, covariates=())
    assert data.observations.row.tolist() == [4, 5]
    assert data.observations.analyte.tolist() == ["lh", "total_testosterone"]
