"""Figures (popsim.plotting.figures) and markdown reports (popsim.report.markdown) on synthetic tables."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from popsim.analysis import survival as sv
from popsim.plotting import figures as pf
from popsim.report.markdown import render_report, render_sweep_report
from tests.test_survival import synthetic_table


@pytest.fixture(scope="module")
def table():
    return synthetic_table(240)


@pytest.fixture(scope="module")
def summary(table):
    return sv.study_summary(table)


def _check(fig, path):
    assert isinstance(fig, Figure)
    axes = fig.get_axes()
    assert axes
    assert any(ax.lines or ax.collections for ax in axes)
    assert all(ax.get_xlabel() or ax.get_ylabel() for ax in axes)
    fig.savefig(path)
    assert path.stat().st_size > 1000


def test_km_curves(table, tmp_path):
    _check(pf.km_curves(table, "conc_ge_15", "latent"), tmp_path / "km.png")
    fig = pf.km_curves(table, "conc_ge_15", "sampled", stratify_by="trt_duration")
    assert "15 M/mL" in fig.get_axes()[0].get_title()
    assert len(fig.get_axes()[0].lines) >= 3
    _check(fig, tmp_path / "km_strata.png")


@pytest.mark.parametrize("by", ["trt_duration", "age"])
def test_recovery_probability_vs(table, tmp_path, by):
    _check(pf.recovery_probability_vs(table, "conc_ge_15", "latent", by=by), tmp_path / f"p_{by}.png")


def test_hormone_bands(tmp_path):
    rng = np.random.default_rng(0)
    times = np.arange(0.0, 400.0, 7.0)
    n = 30
    base = rng.lognormal(0, 0.2, (n, 1))
    trajectories = {
        "total_testosterone_nmol_l": 15 * base + np.sin(times / 20)[None, :],
        "lh_iu_l": 5 * base * (times[None, :] > 100),
        "fsh_iu_l": 4 * base * np.ones_like(times)[None, :],
        "sperm_concentration_m_ml": 60 * base * (times[None, :] > 150) + 0.0,
    }
    _check(pf.hormone_bands(times, trajectories), tmp_path / "h.png")
    fig = pf.hormone_bands(times, trajectories, origin_days=rng.uniform(100, 150, n))
    assert len(fig.get_axes()) == 4
    assert fig.get_axes()[3].get_yscale() == "log"
    _check(fig, tmp_path / "h_aligned.png")


def test_protocol_comparison_and_suppression(table, summary, tmp_path):
    other = sv.study_summary(table.assign(conc_ge_15_days=table["conc_ge_15_days"] * 1.5),
                             endpoints=["conc_ge_15", "any_sperm"])
    sweep = sv.sweep_table([({"protocol": "none"}, summary), ({"protocol": "slow"}, other)])
    _check(pf.protocol_comparison(sweep), tmp_path / "forest.png")
    _check(pf.suppression_depth(table), tmp_path / "supp.png")
    text = render_sweep_report(sweep, "forest.png")
    assert "protocol=slow" in text and "](forest.png)" in text
    median = sweep.loc[0, "conc_ge_15_latent_median_months"]
    assert f"{median:.1f}" in text


def test_render_report(summary):
    figures = {"km": "km.png", "km_by_duration": "figures/km_by_duration.png"}
    courses = [{"drug": "hcg", "dose": 1500.0, "dose_unit": "IU", "interval_days": 3.0, "duration_days": 180.0,
                "start_offset_days": 0.0, "anchor": "trt_end"}]
    text = render_report(summary, figures, {"protocol": "hcg_1500", "courses": courses, "seed": 0})
    median = summary["endpoints"]["conc_ge_15"]["variants"]["latent"]["summary"]["median_months"]["estimate"]
    assert f"{median:.1f} months" in text
    for path in figures.values():
        assert f"]({path})" in text
    for heading in ("## The question", "## The cohort", "## The answer", "## How to read this", "docs/model.md"):
        assert heading in text
    assert "hcg_1500" in text and "1500 IU every 3 days" in text
    assert "3 excluded" in text  # numerical failures
    # Same report after a JSON round trip (month keys become strings).
    assert render_report(json.loads(json.dumps(summary)), figures, {"protocol": "hcg_1500", "courses": courses,
                                                                     "seed": 0}) == text
