"""Fit default parameters to the published targets (the procedure of docs/validation.md).

    python -m popsim.validation.fit --targets C1,C4 --size 400 \
        --start k_reserve_recovery_per_day=0.0036 spermatogenesis_days=74 --maxfev 40

Nelder-Mead on the logarithms of the named parameters (model parameters or covariate
effects), on popsim.validation.objective.objective with fixed common random numbers;
prints every evaluation and the best set. Physiological plausibility is enforced by
``--bounds name=lo:hi`` (a value outside its bounds scores +1000).
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
from scipy.optimize import minimize

from popsim.validation.objective import objective
from popsim.validation.scenarios import Options


def _pairs(items, convert=float):
    out = {}
    for item in items or []:
        k, v = item.split("=", 1)
        out[k] = convert(v)
    return out


def fit(start: dict[str, float], targets, size: int, seed: int, maxfev: int, fixed=None, bounds=None, log=print):
    names = list(start)
    x0 = np.log([start[n] for n in names])
    options = Options(size=size, seed=seed)
    history = []

    def f(x):
        values = {**(fixed or {}), **{n: float(math.exp(v)) for n, v in zip(names, x)}}
        for n, (lo, hi) in (bounds or {}).items():
            if n in values and not lo <= values[n] <= hi:
                return 1000.0
        total = objective(values, targets, options)
        history.append((total, values))
        log(json.dumps({"objective": round(total, 3), **{k: round(v, 6) for k, v in values.items()}}))
        return total

    res = minimize(f, x0, method="Nelder-Mead", options={"maxfev": maxfev, "xatol": 0.01, "fatol": 0.05,
                                                         "initial_simplex": np.vstack([x0] + [x0 + 0.25 * e for e in np.eye(len(x0))])})
    best = min(history, key=lambda h: h[0])
    return best, res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="C1,C2,C3,C4,C5,C6,C7,C8")
    ap.add_argument("--size", type=int, default=400)
    ap.add_argument("--seed", type=int, default=Options().seed)
    ap.add_argument("--maxfev", type=int, default=40)
    ap.add_argument("--start", nargs="+", required=True, help="name=value of each fitted parameter")
    ap.add_argument("--fixed", nargs="*", help="name=value held fixed")
    ap.add_argument("--bounds", nargs="*", help="name=lo:hi plausible range")
    a = ap.parse_args(argv)
    bounds = {k: tuple(float(x) for x in v.split(":")) for k, v in _pairs(a.bounds, str).items()}
    best, _ = fit(_pairs(a.start), tuple(a.targets.split(",")), a.size, a.seed, a.maxfev, _pairs(a.fixed), bounds)
    print("best", json.dumps({"objective": best[0], **best[1]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
