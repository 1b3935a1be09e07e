"""Run the validation: every target's cohorts, its metrics, pass/fail.

A metric passes when its model value lies inside the published acceptance interval,
widened by ``tolerance`` Monte Carlo standard errors on each side (0 for the full run:
the point estimate must be inside; the fast test run uses a few SEs because its
cohorts are small). A sign metric passes when the Cox log hazard ratio has the published
sign, or with a tolerance when it is no more than ``tolerance`` SEs on the wrong side of
zero (a weak direction cannot be resolved in a small cohort). A "true" metric passes when
the statement holds.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from popsim.outcomes.study import StudyResult, run_study
from popsim.validation.cox import cox_directions
from popsim.validation.metrics import METRIC_FUNCTIONS
from popsim.validation.scenarios import Options, runs_for
from popsim.validation.targets import MetricTarget, load_targets


@dataclass
class MetricResult:
    """One metric: model value, Monte Carlo error, target, interval, pass/fail."""

    target: str
    name: str
    kind: str
    model: float
    mc_se: float
    published: float | None
    lo: float | None
    hi: float | None
    interval: str
    passed: bool


@dataclass
class TargetResult:
    """One target: its metrics, the curves of its figure and the run time."""

    id: str
    title: str
    source: str
    metrics: list[MetricResult]
    curves: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(m.passed for m in self.metrics)


def judge(target: MetricTarget, value: float, se: float, tolerance: float) -> bool:
    """Pass/fail of one metric (see the module docstring)."""
    if not np.isfinite(value):
        return False
    if target.kind == "sign":
        if tolerance > 0.0 and np.isfinite(se):
            return bool(target.sign * value >= -tolerance * se)
        return bool(np.sign(value) == target.sign)
    if target.kind == "true":
        return bool(value > 0.5)
    slack = tolerance * (se if np.isfinite(se) else 0.0)
    ok = True
    if target.lo is not None:
        ok &= value >= target.lo - slack
    if target.hi is not None:
        ok &= value <= target.hi + slack
    return bool(ok)


def simulate_target(target_id: str, options: Options) -> list[StudyResult]:
    """Run the cohorts of one target."""
    return [run_study(r.design, r.study) for r in runs_for(target_id, options)]


def target_values(target_id: str, results: list[StudyResult]):
    """``(values, curves, extra)`` of a target from its simulated cohorts."""
    if target_id == "C2":
        values, table = cox_directions(results)
        return values, {}, {"cox": table}
    values, curves = METRIC_FUNCTIONS[target_id](results)
    return values, curves, {}


def validate(ids=None, options: Options = Options(), tolerance: float = 0.0,
             on_target: Callable[[TargetResult], None] | None = None) -> list[TargetResult]:
    """Simulate and judge the targets ``ids`` (default: all of C1-C8)."""
    targets = load_targets(ids)
    out = []
    for tid, target in targets.items():
        started = time.perf_counter()
        values, curves, extra = target_values(tid, simulate_target(tid, options))
        metrics = []
        for m in target.metrics:
            value, se = values.get(m.name, (float("nan"), float("nan")))
            metrics.append(MetricResult(tid, m.name, m.kind, float(value), float(se),
                                        m.value if m.kind == "interval" else (m.sign if m.kind == "sign" else None),
                                        m.lo, m.hi, m.interval_text(), judge(m, value, se, tolerance)))
        result = TargetResult(tid, target.title, target.source, metrics, curves, extra,
                              round(time.perf_counter() - started, 1))
        out.append(result)
        if on_target is not None:
            on_target(result)
    return out


def to_json(results: list[TargetResult], info: dict) -> dict:
    """validation.json content (curves left out; figures carry them)."""
    def clean(x):
        if isinstance(x, float) and not np.isfinite(x):
            return None
        return x

    return {
        "info": info,
        "passed": all(r.passed for r in results),
        "n_metrics": sum(len(r.metrics) for r in results),
        "n_failed": sum(not m.passed for r in results for m in r.metrics),
        "targets": [{"id": r.id, "title": r.title, "source": r.source, "passed": r.passed, "seconds": r.seconds,
                     "metrics": [{k: clean(v) for k, v in asdict(m).items()} for m in r.metrics],
                     **({"cox": r.extra["cox"]} if "cox" in r.extra else {})} for r in results],
    }
