"""Step schedules: where the population integrator steps, planned on the host.

The schedule is separate from the step method (popsim.solve.methods), the way diffrax
separates a solver from its step-size controller, and it is the same for every patient of
a compiled batch, so that a vmapped batch runs one program with no per-patient control
flow: between two output times every patient takes the same number of steps of the same
length, and each patient's own doses inside a step split it (exact dose times). The plan
is made from the output times, the step settings and the batch's dose tables:

* ``plan_output_grid``: ``ceil(gap / dt)`` equal steps per output interval.
* ``mark_dose_splits``: where no dose of any patient falls strictly inside a step, a
  method that splits only at doses takes each step in one part.
* ``mark_quiet``: output intervals with no dose of any patient in them or in the
  ``quiet_after_days`` before them; a combined method (``rk4-ros34pw2``) takes those
  with its quiet-stretch method and its own step.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from popsim.solve.methods import get_method


class OutputGrid(NamedTuple):
    """Host-computed stepping plan for a common output grid, each ``(n_times,)``.

    Attributes:
        interval_start_days: start of the interval ending at each output time.
        interval_end_days: the output times.
        n_steps: int32 steps in that interval (0 when two outputs coincide).
        step_days: step length in that interval.
        split: bool, whether a step of that interval may hold a dose strictly inside it
            (of any patient of the batch), so that methods that split only at doses take
            two parts there. True is always correct; ``mark_dose_splits`` clears it
            where no dose of a dose table falls inside a step. RK4 ignores it.
        quiet: bool, whether the interval is a quiet stretch (no dose of any patient of
            the batch in it or in the ``quiet_after_days`` before it), where a combined
            method switches to its quiet-stretch method (``mark_quiet``).
    """

    interval_start_days: np.ndarray
    interval_end_days: np.ndarray
    n_steps: np.ndarray
    step_days: np.ndarray
    split: np.ndarray
    quiet: np.ndarray


def plan_output_grid(times_days, dt_days: float, start_day: float = 0.0) -> OutputGrid:
    """Steps needed to reach each output time from ``start_day`` (untreated steady state).

    Raises:
        ValueError: if times are not finite, not non-decreasing, or before ``start_day``.
    """
    times = np.asarray(times_days, dtype=np.float64)
    if times.ndim != 1 or times.size == 0:
        raise ValueError(f"times_days must be a non-empty 1-D array, got shape {times.shape}")
    if not np.all(np.isfinite(times)):
        raise ValueError("times_days must be finite")
    if np.any(np.diff(times) < 0):
        raise ValueError("times_days must be non-decreasing")
    if times[0] < start_day:
        raise ValueError(f"times_days start at {times[0]} before the simulation start day {start_day}")
    starts = np.concatenate([[start_day], times[:-1]])
    gaps = times - starts
    n_steps = np.ceil(gaps / dt_days - 1e-9).astype(np.int32)
    step = np.where(n_steps > 0, gaps / np.maximum(n_steps, 1), 0.0)
    return OutputGrid(starts, times, n_steps, step, np.ones(times.shape, bool), np.zeros(times.shape, bool))


def mark_dose_splits(grid: OutputGrid, doses, tol: float = 2e-4) -> OutputGrid:
    """``grid`` with ``split`` cleared for every interval in which no dose of ``doses``
    (a NumPy DoseTable, any number of patients) falls strictly inside a step.

    A dose within ``tol`` days of a step boundary counts as on the boundary (the
    integrator's coincidence tolerance in float32).
    """
    starts = np.asarray(grid.interval_start_days, np.float64)
    steps = np.asarray(grid.step_days, np.float64)
    n = np.asarray(doses.n_doses)
    active = n > 0
    split = np.zeros(starts.shape, bool)
    courses = np.unique(np.stack([np.asarray(doses.start_days, np.float64)[active],
                                  np.asarray(doses.interval_days, np.float64)[active],
                                  n[active].astype(np.float64)], axis=-1), axis=0)
    for start, interval, count in courses:
        times = start + interval * np.arange(int(count))
        k = np.searchsorted(grid.interval_end_days, times, side="left")
        k = k[k < starts.size]
        times = times[: k.size]
        offset = (times - starts[k]) / np.where(steps[k] > 0, steps[k], 1.0)
        inside = (steps[k] > 0) & (np.abs(offset - np.round(offset)) * steps[k] > tol) & (times > starts[k])
        split[k[inside]] = True
    return grid._replace(split=split)


def slowest_half_lives(params) -> np.ndarray:
    """``(n_species,)`` longest PK half-life (days) of each species' chain over the patients of
    ``params`` (``{name: (n_patients,)}``): ln 2 over the smaller of its two rates."""
    from popsim.model import pk

    rates = pk.chain_rates({k: np.asarray(v, np.float64) for k, v in params.items()})
    slowest = np.minimum(np.asarray(rates.k1_per_day), np.asarray(rates.k2_per_day))  # (n_species, n)
    return np.log(2.0) / np.min(slowest.reshape(slowest.shape[0], -1), axis=1)


def mark_quiet(grid: OutputGrid, doses, quiet_after_days: float, quiet_dt_days: float,
               half_lives: np.ndarray | None = None, quiet_half_lives: float = 0.0) -> OutputGrid:
    """``grid`` with ``quiet`` set on every output interval ``[a, b]`` in which no dose of
    ``doses`` (a NumPy DoseTable, any number of patients) has acted recently: no dose falls
    in ``[a - w, b)``, where the window ``w`` of a dose is ``quiet_after_days`` or
    ``quiet_half_lives`` times its species' longest half-life (``half_lives``, days),
    whichever is longer. Quiet intervals are re-planned with ``ceil((b - a) / quiet_dt_days)``
    equal steps."""
    starts = np.asarray(grid.interval_start_days, np.float64)
    ends = np.asarray(grid.interval_end_days, np.float64)
    n = np.asarray(doses.n_doses)
    active = n > 0
    dosed = np.zeros(starts.shape, bool)
    if active.any():
        species = np.asarray(doses.species)[active]
        window = np.full(species.shape, float(quiet_after_days))
        if half_lives is not None:
            window = np.maximum(window, quiet_half_lives * np.asarray(half_lives)[species])
        courses = np.unique(np.stack([np.asarray(doses.start_days, np.float64)[active],
                                      np.asarray(doses.interval_days, np.float64)[active],
                                      n[active].astype(np.float64), window], axis=-1), axis=0)
        for start, interval, count, w in courses:
            times = start + interval * np.arange(int(count))
            # Intervals [a, b) that contain a dose time t or start within w after it:
            # a - w <= t < b, i.e. a in (t - (b - a), t + w].
            first = np.searchsorted(times, starts - w, side="left")
            hit = first < times.size
            dosed |= hit & (times[np.minimum(first, times.size - 1)] < ends)
    quiet = ~dosed & (ends > starts)
    gaps = ends - starts
    n_quiet = np.ceil(gaps / quiet_dt_days - 1e-9).astype(np.int32)
    n_steps = np.where(quiet, n_quiet, grid.n_steps).astype(np.int32)
    step = np.where(quiet, gaps / np.maximum(n_quiet, 1), grid.step_days)
    return grid._replace(n_steps=n_steps, step_days=step, quiet=quiet)


class Plan(NamedTuple):
    """A schedule and the static loop sizes of the simulator that runs it.

    Attributes:
        grid: the OutputGrid.
        max_steps: steps per output interval of the main method (largest ``n_steps``
            among the non-quiet intervals).
        uniform: whether every non-quiet interval takes ``max_steps`` or 0 steps.
        max_quiet_steps: steps per quiet interval (1 when there are none).
    """

    grid: OutputGrid
    max_steps: int
    uniform: bool
    max_quiet_steps: int


def plan_schedule(times_days, settings, doses, start_day: float = 0.0, params=None) -> Plan:
    """The schedule of ``settings`` (a SolverSettings) for a batch with dose table ``doses``
    and parameters ``params`` (``{name: (n_patients,)}``; their PK half-lives set how long
    after a dose an interval stays busy; None = the default parameters)."""
    method = get_method(settings.method)
    grid = mark_dose_splits(plan_output_grid(times_days, settings.dt_days, start_day), doses)
    if getattr(method, "quiet", None) is not None:
        if params is None:
            from popsim.model.parameters import default_parameters

            params = default_parameters(1)
        grid = mark_quiet(grid, doses, settings.quiet_after_days, settings.quiet_dt_days,
                          slowest_half_lives(params), settings.quiet_half_lives)
    n_main = grid.n_steps[~grid.quiet]
    max_steps = int(n_main.max()) if n_main.size else 1
    n_quiet = grid.n_steps[grid.quiet]
    max_quiet = int(n_quiet.max()) if n_quiet.size else 1
    uniform = bool(np.all(np.isin(n_main, (0, max_steps))))
    return Plan(grid, max(max_steps, 1), uniform, max(max_quiet, 1))


def field_evaluations(grid: OutputGrid, method: str, n_states: int | None = None) -> int:
    """Vector-field evaluations (Jacobian-vector products counted as one each) that the
    compiled simulator performs per patient on ``grid``: every step the loop executes,
    masked ones included, times the method's parts per step and evaluations per part."""
    from popsim.model.state import N_STATES

    combined = get_method(method)
    n_states = N_STATES if n_states is None else n_states
    n_steps = np.asarray(grid.n_steps)
    quiet = np.asarray(grid.quiet) if getattr(combined, "quiet", None) is not None else np.zeros(n_steps.shape, bool)
    parts = np.where(np.asarray(grid.split), 2, 1)
    total = 0
    for m, where in ((getattr(combined, "active", combined), ~quiet), (getattr(combined, "quiet", None), quiet)):
        if m is None or not where.any():
            continue
        per_part = m.evaluations(n_states)
        if m.always_split:
            loop = max(int(n_steps[where].max()), 1)
            total += int(where.sum()) * loop * 2 * per_part
        else:
            total += int(np.sum(n_steps[where] * parts[where])) * per_part
    return total
