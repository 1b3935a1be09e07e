"""The aggregate-data objective of the default-parameter calibration and its optimiser.

Objective (a deviance; 0 = every published number reproduced exactly):

* proportions recovered/suppressed by a time (metrics named ``p_*``): binomial deviance
  ``2 n [p log(p/p_m) + (1-p) log((1-p)/(1-p_m))]`` with the effective sample size
  ``n = p(1-p)/sd^2`` that the published acceptance interval implies
  (``sd = (hi - lo) / 3.92``);
* reported medians, means and ratios with a published value: normal,
  ``((model - value) / sd)^2`` with the same ``sd``;
* one-sided bounds and bounds without a central value: ``(excess / sd)^2`` beyond the
  bound, ``sd`` 5% of the bound (0.02 for proportions);
* covariate directions (C2): ``max(0, 1 - sign * z)^2`` with ``z`` the Cox coefficient
  over its SE (pushes the sign to the published one with about one SE to spare);
* statements (C6 monotone ITT, C8 ordering): 25 when false.

Evaluated on simulated cohorts with fixed common random numbers (the seed fixes the
virtual men, their semen-sample noise and IIV; only the parameter values move), so the
objective is a deterministic function of the parameters and a derivative-free optimiser
(Nelder-Mead on log parameters) can be used on it. ``python -m popsim.validation.fit``
runs it; docs/validation.md records the run that set the defaults.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Iterator, Mapping

import numpy as np

from popsim.model import parameters as P
from popsim.population import covariates as CV
from popsim.validation.run import target_values, simulate_target
from popsim.validation.scenarios import Options
from popsim.validation.targets import MetricTarget, load_targets


@contextlib.contextmanager
def parameter_defaults(values: Mapping[str, float]) -> Iterator[None]:
    """Temporarily replace model-parameter defaults (``name -> value``) and covariate
    effects (names of popsim.population.covariates.COVARIATE_EFFECTS)."""
    model = {k: v for k, v in values.items() if k in P.PARAMETER_INDEX}
    cov = {k: v for k, v in values.items() if k in CV.COVARIATE_INDEX}
    unknown = set(values) - set(model) - set(cov)
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)}")
    saved = P.PARAMETERS, dict(P.PARAMETER_INDEX), dict(CV.COVARIATE_INDEX)
    try:
        P.PARAMETERS = tuple(dataclasses.replace(s, default=float(model[s.name])) if s.name in model else s
                             for s in P.PARAMETERS)
        P.PARAMETER_INDEX.update({s.name: s for s in P.PARAMETERS})
        CV.COVARIATE_INDEX.update({k: float(v) for k, v in cov.items()})
        yield
    finally:
        P.PARAMETERS = saved[0]
        P.PARAMETER_INDEX.clear()
        P.PARAMETER_INDEX.update(saved[1])
        CV.COVARIATE_INDEX.clear()
        CV.COVARIATE_INDEX.update(saved[2])


def _sd(m: MetricTarget) -> float:
    if m.lo is not None and m.hi is not None:
        return (m.hi - m.lo) / 3.92
    bound = m.lo if m.lo is not None else m.hi
    return 0.02 if m.name.startswith("p_") else max(0.05 * abs(bound), 1e-3)


def metric_deviance(m: MetricTarget, value: float, se: float) -> float:
    """One metric's contribution to the objective (see the module docstring)."""
    if not math.isfinite(value):
        return 100.0
    if m.kind == "sign":
        z = value / se if se > 0 else np.sign(value) * 10.0
        return max(0.0, 1.0 - m.sign * z) ** 2
    if m.kind == "true":
        return 0.0 if value > 0.5 else 25.0
    sd = _sd(m)
    if m.value is not None and m.lo is not None and m.hi is not None:
        if m.name.startswith("p_"):
            p = min(max(m.value, 1e-4), 1 - 1e-4)
            q = min(max(value, 1e-4), 1 - 1e-4)
            n = p * (1 - p) / sd ** 2
            return 2 * n * (p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q)))
        return ((value - m.value) / sd) ** 2
    excess = 0.0
    if m.lo is not None and value < m.lo:
        excess = m.lo - value
    if m.hi is not None and value > m.hi:
        excess = value - m.hi
    return (excess / sd) ** 2


def with_cv(options: Options, cvs: Mapping[str, float]) -> Options:
    """``options`` with the IIV CVs of ``cvs`` (parameter -> CV) replaced or added."""
    cv = dict(options.variability.cv)
    cv.update({k: float(v) for k, v in cvs.items()})
    return dataclasses.replace(options, variability=dataclasses.replace(options.variability, cv=tuple(cv.items())))


def objective(values: Mapping[str, float], targets=("C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8"),
              options: Options = Options(size=400), detail: bool = False):
    """Total deviance of the parameter set ``values`` over ``targets`` (and the per-metric
    terms when ``detail``). Keys ``cv.<parameter>`` set IIV CVs."""
    spec = load_targets(targets)
    terms = {}
    options = with_cv(options, {k[3:]: v for k, v in values.items() if k.startswith("cv.")})
    values = {k: v for k, v in values.items() if not k.startswith("cv.")}
    with parameter_defaults(values):
        for tid, target in spec.items():
            got, _, _ = target_values(tid, simulate_target(tid, options))
            for m in target.metrics:
                value, se = got.get(m.name, (float("nan"), float("nan")))
                terms[m.key] = (metric_deviance(m, value, se), value)
    total = float(sum(t for t, _ in terms.values()))
    return (total, terms) if detail else total
