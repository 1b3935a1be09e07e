"""Shared helpers for tests: small simulations on a daily grid."""

from __future__ import annotations

import numpy as np

import popsim
from popsim.dosing.table import compile_regimens
from popsim.solve.run import iterate_chunks

DAYS_PER_MONTH = 30.4375


def run(regimens, params=None, days=730, step=1.0, settings=None, n_entries=4):
    """Simulate regimens (list) and return (times, outputs dict of (n, n_times))."""
    times = np.arange(0.0, days + step / 2, step)
    table = compile_regimens(regimens, n_entries)
    full = popsim.broadcast_parameters(params, len(regimens))
    outputs = {}
    for chunk in iterate_chunks(full, table, times, settings or popsim.SolverSettings()):
        for k, v in chunk.outputs.items():
            outputs.setdefault(k, []).append(v)
    return times, {k: np.concatenate(v) for k, v in outputs.items()}


def te(dose=200.0, months=12.0, interval=7.0, start=0.0):
    return popsim.TRTCourse("enanthate", dose, "mg", interval, months * DAYS_PER_MONTH, start)


def at(times, day):
    return int(np.argmin(np.abs(times - day)))
