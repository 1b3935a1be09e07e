"""Time-to-event endpoints from trajectories: recovery and suppression times.

Pure NumPy on the host, vectorised over patients. Times are days; an endpoint is a
``(time_from_origin_days, event_observed)`` pair, right-censored at the last time.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class EventTimes(NamedTuple):
    """Per-patient event times, each ``(n_patients,)``.

    Attributes:
        time_days: time from the origin to the event, or to censoring.
        observed: True when the event happened within the horizon (False = censored).
    """

    time_days: np.ndarray
    observed: np.ndarray


def first_crossing(times_days: np.ndarray, values: np.ndarray, origin_days: np.ndarray, threshold,
                   rising: bool = True, interpolate: bool = True,
                   horizon_days: np.ndarray | float | None = None) -> EventTimes:
    """Time from ``origin`` until ``values`` first reach ``threshold``.

    Args:
        times_days: ``(n_times,)`` sorted grid.
        values: ``(n_patients, n_times)`` trajectories (latent values or samples).
        origin_days: ``(n_patients,)`` origin of each patient (NaN: no origin, censored at 0).
        threshold: scalar or ``(n_patients,)``; the event is value >= threshold when
            ``rising`` (recovery), value <= threshold otherwise (suppression).
        rising: direction of the crossing.
        interpolate: linear interpolation between grid points (latent trajectories);
            False for samples on a schedule (the event is the first sample meeting it).
        horizon_days: ``(n_patients,)`` or scalar end of follow-up from the origin
            (default: the last grid time).

    Returns:
        EventTimes; a patient already meeting the criterion at the origin has time 0.
    """
    times = np.asarray(times_days, float)
    values = np.asarray(values, float)
    n_patients = values.shape[0]
    origin = np.broadcast_to(np.asarray(origin_days, float), (n_patients,))
    thr = np.broadcast_to(np.asarray(threshold, float), (n_patients,))[:, None]
    end = times[-1] - origin if horizon_days is None else np.minimum(
        np.broadcast_to(np.asarray(horizon_days, float), (n_patients,)), times[-1] - origin)
    met = values >= thr if rising else values <= thr
    after = times[None, :] >= origin[:, None] - 1e-9
    within = times[None, :] <= (origin + end)[:, None] + 1e-9
    candidate = met & after & within
    has = candidate.any(axis=1) & np.isfinite(origin)
    idx = np.where(has, candidate.argmax(axis=1), 0)
    t_hit = times[idx]
    if interpolate:
        prev = np.maximum(idx - 1, 0)
        v0, v1 = values[np.arange(n_patients), prev], values[np.arange(n_patients), idx]
        t0 = times[prev]
        can = has & (idx > 0) & (t0 >= origin - 1e-9) & (v1 != v0)
        frac = np.where(can, (thr[:, 0] - v0) / np.where(v1 != v0, v1 - v0, 1.0), 1.0)
        t_hit = np.where(can, t0 + np.clip(frac, 0.0, 1.0) * (t_hit - t0), t_hit)
    time = np.where(has, np.maximum(t_hit - origin, 0.0), np.where(np.isfinite(end), end, 0.0))
    return EventTimes(time, has)


def suppression_depth(times_days: np.ndarray, values: np.ndarray, start_days: np.ndarray,
                      end_days: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Lowest value within [start, end] as a fraction of ``baseline``, ``(n_patients,)``.

    NaN where a patient has no window (e.g. no TRT).
    """
    times = np.asarray(times_days, float)
    values = np.asarray(values, float)
    inside = (times[None, :] >= np.asarray(start_days)[:, None]) & (times[None, :] <= np.asarray(end_days)[:, None])
    low = np.where(inside, values, np.inf).min(axis=1)
    return np.where(inside.any(axis=1), low / np.asarray(baseline, float), np.nan)
