"""docs/model.md and the parameter table in code must not drift apart."""

from __future__ import annotations

import re
from pathlib import Path

from popsim.model.docs import END_MARKER, START_MARKER, render_model_doc
from popsim.model.parameters import PARAMETER_NAMES, PARAMETERS

ROOT = Path(__file__).parents[1]
DOC = ROOT / "docs" / "model.md"
PACKAGE = ROOT / "popsim"
REGENERATE = "python -m popsim.model.docs --write docs/model.md"


def _doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def _table_region(text: str) -> str:
    start, end = text.index(START_MARKER), text.index(END_MARKER)
    assert start < end, "parameter-table markers out of order in docs/model.md"
    return text[start + len(START_MARKER):end]


def test_model_doc_is_generated_from_parameter_table():
    text = _doc_text()
    assert text == render_model_doc(text), (
        f"docs/model.md is out of date with popsim/model/parameters.py; run `{REGENERATE}`")


def test_every_parameter_is_documented():
    text = _doc_text()
    missing = [name for name in PARAMETER_NAMES if f"`{name}`" not in text]
    assert not missing, f"parameters missing from docs/model.md: {missing}; run `{REGENERATE}`"


def test_parameter_tables_name_only_real_parameters():
    region = _table_region(_doc_text())
    rows = [line for line in region.splitlines() if line.startswith("|")]
    names = {token for line in rows for token in re.findall(r"`([^`]+)`", line)}
    assert names, "no parameter rows found between the parameter-table markers"
    unknown = sorted(names - set(PARAMETER_NAMES))
    assert not unknown, f"docs/model.md tables name unknown parameters {unknown}; run `{REGENERATE}`"
    assert set(PARAMETER_NAMES) <= names, f"parameter tables incomplete; run `{REGENERATE}`"


def test_no_dead_parameters():
    covariates = {spec.name for spec in PARAMETERS if spec.group == "covariate"}
    table = PACKAGE / "model" / "parameters.py"
    sources = [path.read_text(encoding="utf-8") for path in PACKAGE.rglob("*.py") if path != table]
    unused = [name for name in PARAMETER_NAMES
              if name not in covariates and not any(f'"{name}"' in src for src in sources)]
    assert not unused, f"parameters never read by popsim (dead): {unused}"
