"""The published targets (popsim/evidence/targets.yaml) as typed records.

A target (C1..C12) is one study; a metric is one published number with its acceptance
interval, a required sign (+1/-1, for covariate directions) or a required truth (for an
ordering statement).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

TARGET_IDS = ("C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9", "C10", "C11", "C12")


@dataclass(frozen=True)
class MetricTarget:
    """One published number.

    Attributes:
        target: the study id, e.g. "C1".
        name: metric name as in targets.yaml.
        kind: "interval" (value in [lo, hi]), "sign" (sign of a log hazard ratio) or
            "true" (a statement that must hold).
        value: the published value (None where only a bound was published).
        lo, hi: acceptance interval (None = open side).
        sign: required sign for kind "sign".
    """

    target: str
    name: str
    kind: str
    value: float | None = None
    lo: float | None = None
    hi: float | None = None
    sign: int = 0

    @property
    def key(self) -> str:
        return f"{self.target}.{self.name}"

    def interval_text(self) -> str:
        if self.kind == "sign":
            return "HR > 1" if self.sign > 0 else "HR < 1"
        if self.kind == "true":
            return "true"
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        return f"[{lo}, {hi}]"


@dataclass(frozen=True)
class Target:
    """One study: id, title, source and its metrics."""

    id: str
    title: str
    source: str
    metrics: tuple[MetricTarget, ...]
    raw: dict


def _metric(target: str, name: str, spec: Any) -> MetricTarget:
    if isinstance(spec, bool):
        return MetricTarget(target, name, "true")
    if isinstance(spec, (int, float)):
        return MetricTarget(target, name, "sign", sign=int(spec))
    lo, hi = spec["interval"]
    value = spec.get("value")
    return MetricTarget(target, name, "interval", None if value is None else float(value),
                        None if lo is None else float(lo), None if hi is None else float(hi))


def load_targets(ids: tuple[str, ...] | list[str] | None = None) -> dict[str, Target]:
    """The targets of popsim/evidence/targets.yaml, in C1..C12 order (``ids`` selects)."""
    text = resources.files("popsim.evidence").joinpath("targets.yaml").read_text()
    data = yaml.safe_load(text)
    chosen = TARGET_IDS if ids is None else tuple(ids)
    unknown = [i for i in chosen if i not in data]
    if unknown:
        raise ValueError(f"unknown target(s) {unknown}; valid targets are {list(TARGET_IDS)}")
    out = {}
    for tid in chosen:
        entry = data[tid]
        metrics = tuple(_metric(tid, name, spec) for name, spec in entry["metrics"].items())
        out[tid] = Target(tid, entry.get("title", tid), entry["source"], metrics, entry)
    return out
