"""popsim-validate: targets load from the package, metrics and the objective behave,
the fast validation writes every output, and (slow) the full validation passes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from popsim.validation.metrics import interpolated_cdf, interpolated_median_days, median_event_days
from popsim.validation.objective import metric_deviance, parameter_defaults
from popsim.validation.run import judge
from popsim.validation.targets import TARGET_IDS, MetricTarget, load_targets

ROOT = Path(__file__).resolve().parents[1]


def test_targets_ship_with_the_package_with_sources():
    targets = load_targets()
    assert tuple(targets) == TARGET_IDS
    assert sum(len(t.metrics) for t in targets.values()) == 59
    for t in targets.values():
        assert t.source and t.metrics
    c1 = {m.name: m for m in targets["C1"].metrics}
    assert (c1["p_conc_ge_20_by_6mo"].lo, c1["p_conc_ge_20_by_6mo"].hi) == (0.61, 0.72)
    assert targets["C2"].metrics[0].kind == "sign"


def test_c2_runs_the_undecanoate_arm_as_chinese_men_beside_enanthate():
    """C2 is two cohorts pooled into one Cox model: 25% undecanoate, all Chinese (as in the
    trials), and 75% enanthate carrying the other Asian men, 35% Asian overall, with
    independent men (own seeds)."""
    from popsim.validation.scenarios import ASIAN_FRACTION, Options, runs_for

    runs = runs_for("C2", Options(size=200, seed=5))
    assert [r.design.trt.arms[0].product for r in runs] == ["enanthate", "undecanoate"]
    sizes = [r.study.n_patients for r in runs]
    assert sizes == [150, 50] and [r.study.n_trajectories for r in runs] == sizes
    assert len({r.study.seed for r in runs}) == 2
    asian = [r.design.covariates.asian.p for r in runs]
    assert asian[1] == 1.0
    assert (sizes[0] * asian[0] + sizes[1] * asian[1]) / sum(sizes) == pytest.approx(ASIAN_FRACTION)
    assert runs[1].design.trt.arms[0].first_dose_extra_mg == 500.0


def test_visit_cdf_interpolation_and_medians():
    visits = np.array([30.0, 60.0, 90.0])
    days = np.array([30.0, 60.0, 60.0, 90.0, 90.0])
    observed = np.array([True, True, True, True, False])
    assert interpolated_cdf(days, observed, visits, 45.0) == pytest.approx(0.4)
    assert interpolated_median_days(days, observed, visits) == pytest.approx(30 + (0.5 - 0.2) / 0.4 * 30)
    assert np.isnan(median_event_days(np.array([1.0, 2.0, 3.0]), np.array([True, False, False])))


def test_judge_uses_the_interval_and_the_monte_carlo_tolerance():
    m = MetricTarget("C1", "p_x", "interval", 0.67, 0.61, 0.72)
    assert judge(m, 0.70, 0.01, 0.0) and not judge(m, 0.73, 0.01, 0.0) and judge(m, 0.73, 0.01, 3.0)
    assert judge(MetricTarget("C2", "hr", "sign", sign=-1), -0.1, 0.05, 0.0)
    # A direction on the wrong side of zero fails the full run but passes the fast run's
    # tolerance while it is within that many SEs of zero.
    direction = MetricTarget("C2", "hr", "sign", sign=-1)
    assert not judge(direction, 0.02, 0.1, 0.0) and judge(direction, 0.02, 0.1, 3.0)
    assert not judge(direction, 0.5, 0.1, 3.0)
    assert not judge(MetricTarget("C8", "t", "true"), 0.0, 0.0, 0.0)


def test_objective_is_zero_at_the_published_value_and_grows_away_from_it():
    m = MetricTarget("C1", "p_conc_ge_20_by_6mo", "interval", 0.67, 0.61, 0.72)
    assert metric_deviance(m, 0.67, 0.01) == pytest.approx(0.0)
    assert 0 < metric_deviance(m, 0.70, 0.01) < metric_deviance(m, 0.75, 0.01)
    one_sided = MetricTarget("C5", "extra", "interval", 0.0, None, 0.10)
    assert metric_deviance(one_sided, 0.05, 0.01) == pytest.approx(0.0) and metric_deviance(one_sided, 0.2, 0.01) > 0


def test_parameter_defaults_are_restored():
    from popsim.model.parameters import PARAMETER_INDEX, default_parameters

    before = PARAMETER_INDEX["spermatogenesis_days"].default
    with parameter_defaults({"spermatogenesis_days": 66.0}):
        assert default_parameters()["spermatogenesis_days"] == 66.0
    assert default_parameters()["spermatogenesis_days"] == before


def test_fast_validation_writes_json_report_and_a_figure_per_target(tmp_path):
    """The fast popsim-validate (small cohorts, 3-SE tolerance) on every target."""
    run_dir = tmp_path / "run"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", "from popsim.app.cli import validate_main; validate_main()",
                           "fast=true", "fast_size=120", "report_only=true", f"hydra.run.dir={run_dir}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    payload = json.loads((run_dir / "validation.json").read_text())
    assert payload["n_metrics"] == 59
    assert [t["id"] for t in payload["targets"]] == list(TARGET_IDS)
    for t in payload["targets"]:
        assert (run_dir / "figures" / f"{t['id']}.png").stat().st_size > 10_000
        for m in t["metrics"]:
            assert set(m) >= {"model", "mc_se", "lo", "hi", "passed"}
    report = (run_dir / "validation.md").read_text()
    assert "## C8" in report and "figures/C1.png" in report and "expected to get wrong" in report


def test_a_bad_target_name_fails_cleanly(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "from popsim.app.cli import validate_main; validate_main()",
                           "targets=[C99]", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "valid targets are" in proc.stderr


@pytest.mark.slow
def test_full_validation_passes(tmp_path):
    """The full popsim-validate (2000 men per cohort, strict intervals) exits 0."""
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", "from popsim.app.cli import validate_main; validate_main()",
                           f"hydra.run.dir={run_dir}"], cwd=tmp_path, capture_output=True, text=True, timeout=3600)
    payload = json.loads((run_dir / "validation.json").read_text())
    failed = [f"{t['id']}.{m['name']}" for t in payload["targets"] for m in t["metrics"] if not m["passed"]]
    assert proc.returncode == 0 and not failed, failed
