"""A corpus of realistic mistakes: every one gets one line naming what is wrong, exit
status 2, and nothing written.

Each case runs a command's real entry point (popsim.app.*.main, as the console scripts
call it) in a fresh working directory; a few go through the installed console scripts in
a subprocess. All of them must fail before any JAX compilation, so the corpus is fast.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from popsim.app import calibrate as calibrate_app
from popsim.app import preflight
from popsim.app import simulate as simulate_app
from popsim.app import validate as validate_app

MAINS = {"popsim": simulate_app.main, "popsim-validate": validate_app.main, "popsim-calibrate": calibrate_app.main}

HEADER = "ID,TIME,EVID,AMT,DRUG,DV,ANALYTE,UNIT,MDV,AGE,BMI"
GOOD_ROWS = [
    "1,-7,0,.,.,18.5,total_testosterone,nmol/L,0,35,26",
    "1,-7,0,.,.,40,sperm_concentration,M/mL,0,35,26",
    "1,0,1,200,enanthate,.,.,mg,1,35,26",
    "1,7,1,200,enanthate,.,.,mg,1,35,26",
    "1,14,0,.,.,30,total_testosterone,nmol/L,0,35,26",
    "1,60,0,.,.,20,total_testosterone,nmol/L,0,35,26",
    "1,90,0,.,.,15,sperm_concentration,M/mL,0,35,26",
]


def lab_file(rows=None, header=HEADER) -> str:
    return "\n".join([header, *(GOOD_ROWS if rows is None else rows)]) + "\n"


def replaced(index: int, row: str) -> str:
    rows = list(GOOD_ROWS)
    rows[index] = row
    return lab_file(rows)


# Files a case may use (written into the working directory before the command runs).
FILES: dict[str, bytes] = {
    "good.csv": lab_file().encode(),
    "empty.csv": b"",
    "comments.csv": b"# exported 2026-11-30\n# no data\n\n",
    "utf16.csv": lab_file().encode("utf-16"),
    "latin1.csv": lab_file(GOOD_ROWS + ["1,120,0,.,.,14,testost\u00e9rone,nmol/L,0,35,26"]).encode("latin-1"),
    "compressed.csv": gzip.compress(lab_file().encode()),
    "excel.csv": b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)) * 4,
    "random.csv": bytes((i * 7919 + 13) % 256 for i in range(4000)),
    "huge_value.csv": replaced(4, "1,14,0,.,.,1e308,total_testosterone,nmol/L,0,35,26").encode(),
    "negative_age.csv": lab_file([r.replace(",35,26", ",-4,26") for r in GOOD_ROWS]).encode(),
    "huge_dose.csv": replaced(2, "1,0,1,1e9,enanthate,.,.,mg,1,35,26").encode(),
    "negative_value.csv": replaced(5, "1,60,0,.,.,-3,total_testosterone,nmol/L,0,35,26").encode(),
    "far_time.csv": replaced(6, "1,1e9,0,.,.,15,sperm_concentration,M/mL,0,35,26").encode(),
    "no_columns.csv": b"patient,day,value\n1,0,3\n",
    "bad_unit.csv": replaced(4, "1,14,0,.,.,30,total_testosterone,ng/mL/h,0,35,26").encode(),
    "not_a_folder": b"a file where a folder is expected\n",
}

# (command, arguments, words the one-line error must contain). {cwd} is the working directory.
CASES = [
    # popsim: keys
    ("popsim", ["foo=1"], ["foo", "unknown key", "valid keys"]),
    ("popsim", ["+foo.bar=1"], ["foo", "unknown key", "population"]),
    ("popsim", ["population.sizee=10"], ["population.sizee", "unknown key", "did you mean 'size'"]),
    ("popsim", ["+population.foo=1"], ["population.foo", "unknown key"]),
    ("popsim", ["population.grid.age_years=[30,40]"], ["+population.grid.age_years", "'+'"]),
    ("popsim", ["+population.grid.bogus=[1,2]"], ["population.grid", "bogus", "valid grid fields"]),
    ("popsim", ["protocol=nonexistent"], ["protocol", "no config named 'nonexistent'", "hcg"]),
    # The group at fault is named even when another (valid) override comes after it.
    ("popsim", ["protocol=nonexistent", "population.size=10"], ["protocol", "no config named 'nonexistent'"]),
    ("popsim", ["+experiment=nonexistent"], ["experiment", "no config named 'nonexistent'"]),
    ("popsim", ["-m", "protocol=none,hcg,bogus"], ["no config named 'bogus'"]),
    ("popsim", ["protocol.courses.0.dose_unit=null"], ["protocol.courses", "no item 0"]),
    # popsim: values
    ("popsim", ["protocol=hcg", "protocol.courses.0.dose_unit=null"],
     ["protocol.courses[0].dose_unit", "null", "IU"]),
    ("popsim", ["protocol=hcg", "protocol.courses.0.dose_unit=mg"], ["protocol.courses[0].dose_unit", "'mg'", "IU"]),
    ("popsim", ["population.size=-5"], ["population.size", "-5"]),
    ("popsim", ["population.size=abc"], ["population.size", "integer", "abc"]),
    ("popsim", ["population.size="], ["population.size", "integer", "(empty)"]),
    ("popsim", ["population.size=1000000000000"], ["population.size", "GiB", "at most"]),
    ("popsim", ["output.figures=maybe"], ["output.figures", "true or false", "maybe"]),
    ("popsim", ["trt.ester=unknown"], ["trt.ester", "unknown", "enanthate"]),
    ("popsim", ["trt.dose_mg=1e9"], ["trt.dose_mg", "1e+09", "valid range"]),
    ("popsim", ["trt.duration_months=-12"], ["trt.duration_months", "-12"]),
    ("popsim", ["population.age_years.low=-4"], ["population.age_years.low", "-4", "[15, 100]"]),
    ("popsim", ["population.bmi_kg_m2.kind=weird"], ["population.bmi_kg_m2.kind", "weird", "uniform"]),
    ("popsim", ["outcomes.report_months=[-3,6]"], ["outcomes.report_months[0]", "-3", "valid range"]),
    ("popsim", ["outcomes.origin=yesterday"], ["outcomes.origin", "yesterday", "first_missed_dose"]),
    ("popsim", ["protocol=hcg", "protocol.courses.0.dose=1e7"], ["protocol.courses[0].dose", "IU", "valid range"]),
    ("popsim", ["solver.dt_days=0"], ["solver.dt_days", "(0, 2]"]),
    ("popsim", ["seed=-1"], ["seed", "-1"]),
    ("popsim", ["population.size=10", "population.size=[1,2]"], ["population.size", "integer"]),
    ("popsim", ["hydra.foo=1"], ["hydra.foo", "not a Hydra setting"]),
    ("popsim", ["hydra/launcher=bogus"], ["hydra/launcher", "no config named 'bogus'", "local_parallel"]),
    # popsim: output folder
    ("popsim", ["hydra.run.dir="], ["hydra.run.dir", "empty"]),
    ("popsim", ["hydra.run.dir=/proc/popsim-run"], ["hydra.run.dir", "cannot create", "/proc"]),
    ("popsim", ["hydra.run.dir={cwd}/not_a_folder/run"], ["hydra.run.dir", "is a file"]),
    ("popsim", ["-m", "hydra.sweep.dir={cwd}/not_a_folder/sweep", "protocol=none,hcg"], ["hydra.sweep.dir", "is a file"]),
    # popsim-validate
    ("popsim-validate", ["targets=C1"], ["targets", "expected a list", "targets=[C1]"]),
    ("popsim-validate", ["fast=maybe"], ["fast", "true or false", "maybe"]),
    ("popsim-validate", ["foo=1"], ["foo", "unknown key", "targets"]),
    ("popsim-validate", ["+foo=1"], ["foo", "unknown key"]),
    ("popsim-validate", ["targets=[]"], ["targets", "empty", "C1"]),
    ("popsim-validate", ["targets=[C99]"], ["targets", "C99", "valid targets are", "C1"]),
    ("popsim-validate", ["solver.dt_days=0"], ["solver.dt_days", "(0, 2]"]),
    ("popsim-validate", ["size=0"], ["size", "valid range"]),
    ("popsim-validate", ["size=1000000000000"], ["size", "valid range"]),
    ("popsim-validate", ["hydra.run.dir=/proc/popsim-validate"], ["hydra.run.dir", "cannot create"]),
    ("popsim-validate", ["-m", "size=100,200"], ["one validation at a time"]),
    # popsim-calibrate: configuration
    ("popsim-calibrate", ["foo=1"], ["foo", "unknown key", "inference"]),
    ("popsim-calibrate", ["+foo.bar=1"], ["foo", "unknown key"]),
    ("popsim-calibrate", ["+inference.chainz=2"], ["inference.chainz", "unknown key", "did you mean 'chains'"]),
    ("popsim-calibrate", ["data.path="], ["data.path", "empty", "null"]),
    ("popsim-calibrate", ["data.path=missing.csv"], ["data.path", "no such file", "missing.csv"]),
    ("popsim-calibrate", ["data.path=."], ["data.path", "is a folder"]),
    ("popsim-calibrate", ["data.units.total_testosterone=ng/dL"], ["+data.units.total_testosterone=ng/dL"]),
    ("popsim-calibrate", ["inference.chains=0"], ["inference.chains", "0"]),
    ("popsim-calibrate", ["output.figures=maybe"], ["output.figures", "true or false", "maybe"]),
    ("popsim-calibrate", ["predictions.cohort.dose_mg=1e9"], ["predictions.cohort.dose_mg", "valid range"]),
    ("popsim-calibrate", ["inference.method=svi,nuts"], ["one calibration at a time"]),
    ("popsim-calibrate", ["hydra.run.dir={cwd}/not_a_folder/run", "data.path=good.csv"], ["hydra.run.dir", "is a file"]),
    # popsim-calibrate: data files
    ("popsim-calibrate", ["data.path=empty.csv"], ["empty.csv", "no header row", "ID"]),
    ("popsim-calibrate", ["data.path=comments.csv"], ["comments.csv", "no header row"]),
    ("popsim-calibrate", ["data.path=utf16.csv"], ["utf16.csv", "UTF-16", "UTF-8"]),
    ("popsim-calibrate", ["data.path=latin1.csv"], ["latin1.csv", "not UTF-8", "line 9", "0xe9"]),
    ("popsim-calibrate", ["data.path=compressed.csv"], ["compressed.csv", "gzip"]),
    ("popsim-calibrate", ["data.path=excel.csv"], ["excel.csv", "Excel", "CSV"]),
    ("popsim-calibrate", ["data.path=random.csv"], ["random.csv", "not a text file"]),
    ("popsim-calibrate", ["data.path=huge_value.csv"], ["huge_value.csv", "row 6", "column DV", "1e308", "2000 nmol/L"]),
    ("popsim-calibrate", ["data.path=negative_age.csv"], ["negative_age.csv", "row 2", "column AGE", "-4", "[12, 110]"]),
    ("popsim-calibrate", ["data.path=huge_dose.csv"], ["huge_dose.csv", "row 4", "column AMT", "enanthate"]),
    ("popsim-calibrate", ["data.path=negative_value.csv"], ["row 7", "column DV", ">= 0"]),
    ("popsim-calibrate", ["data.path=far_time.csv"], ["row 8", "column TIME", "100 years"]),
    ("popsim-calibrate", ["data.path=no_columns.csv"], ["no_columns.csv", "missing required columns", "EVID"]),
    ("popsim-calibrate", ["data.path=bad_unit.csv"], ["row 6", "column UNIT", "ng/dL"]),
]


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    for name, content in FILES.items():
        (tmp_path / name).write_bytes(content)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run_in_process(command, args, capsys):
    argv = sys.argv
    sys.argv = [command, *args]
    try:
        with pytest.raises(SystemExit) as exit_info:
            MAINS[command]()
    finally:
        sys.argv = argv
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.mark.parametrize("command,args,words", CASES, ids=[f"{c}:{' '.join(a)}" for c, a, _ in CASES])
def test_bad_input_is_one_line_and_writes_nothing(command, args, words, workdir, capsys):
    before = _listing(workdir)
    args = [a.replace("{cwd}", str(workdir)) for a in args]
    code, out, err = _run_in_process(command, args, capsys)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{command}: error: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert out == ""
    assert _listing(workdir) == before


def test_the_corpus_is_large_and_its_good_inputs_pass(workdir):
    assert len(CASES) >= 40
    assert preflight.check_popsim(["population.size=10"]).warnings == []
    preflight.check_popsim(["protocol=hcg", "protocol.courses.0.dose=5", "protocol.courses.0.dose_unit=kIU"])
    assert validate_app.check_validate(["targets=[C1,C4]", "fast=true"]).warnings == []
    plan, data = calibrate_app.check_calibrate(["data.path=good.csv", "inference.method=svi"]).payload
    assert data.n_patients == 1 and plan.data_path.name == "good.csv"
    calibrate_app.check_calibrate(["data.units={total_testosterone: ng/dL}"])
    calibrate_app.check_calibrate(["+data.units.total_testosterone=ng/dL"])


@pytest.mark.parametrize("args,words", [
    (["trt.dose_mg=1500"], ["trt.dose_mg", "1500", "extreme"]),
    (["population.age_years.high=95"], ["population.age_years.high", "95", "extreme"]),
])
def test_extreme_but_possible_values_warn_and_run(args, words, workdir):
    warnings = preflight.check_popsim(args).warnings
    assert len(warnings) == 1 and all(w in warnings[0] for w in words), warnings


def test_a_run_longer_than_half_a_day_warns_with_its_projection(workdir, monkeypatch):
    from popsim.config import ranges

    monkeypatch.setattr(ranges, "CPU_STEPS_PER_S_PER_CORE", 1.0)
    monkeypatch.setattr(ranges.os, "cpu_count", lambda: 1)
    warnings = preflight.check_popsim(["population.size=100"]).warnings
    assert len(warnings) == 1 and "population.size: 100 men" in warnings[0] and "hours" in warnings[0], warnings


def test_extreme_lab_values_warn_in_one_line_each(workdir):
    (workdir / "extreme.csv").write_text(replaced(4, "1,14,0,.,.,180,total_testosterone,nmol/L,0,35,26")
                                         .replace(",35,26", ",95,26"))
    warnings = calibrate_app.check_calibrate(["data.path=extreme.csv"]).warnings
    assert any("AGE 95" in w and "extreme" in w for w in warnings), warnings
    assert any("row 6" in w and "total_testosterone 180" in w for w in warnings), warnings
    assert all("\n" not in w for w in warnings)


INSTALLED = [
    ("popsim", ["+foo.bar=1"], ["foo", "unknown key"]),
    ("popsim-validate", ["targets=[]"], ["targets", "empty"]),
    ("popsim-validate", ["targets=C1"], ["targets=[C1]"]),
    ("popsim-calibrate", ["data.path=empty.csv"], ["empty.csv", "no header row"]),
]


@pytest.mark.parametrize("command,args,words", INSTALLED, ids=[f"{c}:{' '.join(a)}" for c, a, _ in INSTALLED])
def test_installed_commands_fail_the_same_way(command, args, words, workdir):
    script = shutil.which(command, path=str(Path(sys.executable).parent)) or shutil.which(command)
    assert script, f"{command} is not installed next to {sys.executable}"
    before = _listing(workdir)
    proc = subprocess.run([script, *args], cwd=workdir, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{command}: error: "), proc.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert _listing(workdir) == before


def test_docs_list_the_ranges_the_code_checks():
    from popsim.config.ranges import ranges_markdown

    page = (Path(__file__).resolve().parents[1] / "docs" / "inputs.md").read_text()
    shown = page.split("<!-- ranges:start -->\n", 1)[1].split("<!-- ranges:end -->", 1)[0]
    assert shown == ranges_markdown(), "docs/inputs.md is out of date: paste popsim.config.ranges.ranges_markdown()"


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("override", [f"{group}={p.stem}" for group in ("population", "trt", "protocol", "solver",
                                                                         "outcomes", "output")
                                      for p in sorted((CONFIGS / group).glob("*.yaml"))]
                         + [f"+experiment={p.stem}" for p in sorted((CONFIGS / "experiment").glob("*.yaml"))])
def test_every_shipped_config_passes_the_checks_without_warnings(override, workdir):
    assert preflight.check_popsim([override]).warnings == []
