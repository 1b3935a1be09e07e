"""Step schedules: where the population integrator steps, planned on the host.

The schedule is separate from the step method (popsim.solve.methods), the way diffrax
separates a solver from its step-size controller, and it is the same for every patient of
a compiled batch, so that a vmapped batch runs one program with no per-patient control
flow: between two output times every patient takes the same number of steps of the same
length, and each patient's own doses inside a step split it (exact dose times). The plan
is made from the output times, the step settings and the batch's dose tables:

* ``plan_output_grid``: ``ceil(gap / dt)`` equal steps per output interval.
* ``mark_dose_splits``: where no dose of any patient falls strictly inside a step (or at
  its start, for a method that splits early after a dose), a method that splits only at
  doses takes that step in one part.
* ``patient_quiet``: for each patient, the output intervals with no dose of his in them
  or in the window before them (``quiet_after_days``, or ``quiet_half_lives`` PK
  half-lives if longer); a combined method (``rk4-dose-ros34pw2``) takes those with its
  quiet-stretch method and its own step. The batch runs a method only where some
  patient needs it, and each patient's own flag picks his result.
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
        split: ``(n_times, max_steps)`` bool per step of each interval: whether the step
            may hold a dose strictly inside it (or, for a method that splits after a dose,
            at its start) of any patient of the batch, so that methods that split only
            at doses take two parts there. True is always correct; ``mark_dose_splits``
            clears it where no dose of a dose table calls for a split. ``rk4`` ignores it.
        quiet_steps, quiet_step_days: steps of a combined method's quiet-stretch method
            in that interval and their length (``plan_schedule``).
        all_quiet, any_quiet: bool, whether the interval is quiet (no recent dose) for
            every / for some patient of the batch: which of a combined method's two methods
            must run there (each patient's own flag, ``Plan.patient_quiet``, picks his).
    """

    interval_start_days: np.ndarray
    interval_end_days: np.ndarray
    n_steps: np.ndarray
    step_days: np.ndarray
    split: np.ndarray
    quiet_steps: np.ndarray
    quiet_step_days: np.ndarray
    all_quiet: np.ndarray
    any_quiet: np.ndarray


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
    false = np.zeros(times.shape, bool)
    every_step = np.ones((times.size, max(int(n_steps.max()), 1)), bool)
    return OutputGrid(starts, times, n_steps, step, every_step, np.zeros(times.shape, np.int32), np.zeros(times.shape),
                      false, false)


def mark_dose_splits(grid: OutputGrid, doses, tol: float = 2e-4, after_dose: bool = False) -> OutputGrid:
    """``grid`` with ``split`` set for exactly the steps in which a dose of ``doses`` (a
    NumPy DoseTable, any number of patients) falls strictly inside the step, or, with
    ``after_dose``, at its start (a method that splits early after a dose).

    A dose within ``tol`` days of a step boundary counts as on the boundary (the
    integrator's coincidence tolerance in float32), i.e. at the start of the later step.
    """
    starts = np.asarray(grid.interval_start_days, np.float64)
    ends = np.asarray(grid.interval_end_days, np.float64)
    steps = np.asarray(grid.step_days, np.float64)
    n_steps = np.asarray(grid.n_steps)
    n = np.asarray(doses.n_doses)
    active = n > 0
    split = np.zeros((starts.size, max(int(n_steps.max()), 1)), bool)
    courses = np.unique(np.stack([np.asarray(doses.start_days, np.float64)[active],
                                  np.asarray(doses.interval_days, np.float64)[active],
                                  n[active].astype(np.float64)], axis=-1), axis=0)
    for start, interval, count in courses:
        times = start + interval * np.arange(int(count))
        # The interval [start, end) that gives the dose (a dose at an output time is given
        # after that output: outputs are left limits).
        k = np.searchsorted(ends, times + tol, side="right")
        keep = k < starts.size
        k, times = k[keep], times[keep]
        h = np.where(steps[k] > 0, steps[k], 1.0)
        position = (times - starts[k]) / h
        index = np.floor(position + tol / h).astype(np.int64)
        on_boundary = np.abs(position - np.round(position)) * h <= tol
        valid = (steps[k] > 0) & (index >= 0) & (index < n_steps[k])
        mark = valid & (~on_boundary | after_dose)
        split[k[mark], index[mark]] = True
    return grid._replace(split=split)


def half_lives(params) -> np.ndarray:
    """``(n_species, n_patients)`` longest PK half-life (days) of each species' chain for each
    patient of ``params`` (``{name: (n_patients,)}``): ln 2 over the smaller of its two rates."""
    from popsim.model import pk

    rates = pk.chain_rates({k: np.atleast_1d(np.asarray(v, np.float64)) for k, v in params.items()})
    slowest = np.minimum(np.asarray(rates.k1_per_day), np.asarray(rates.k2_per_day))
    return np.log(2.0) / slowest.reshape(slowest.shape[0], -1)


def patient_quiet(grid: OutputGrid, doses, quiet_after_days: float, quiet_half_lives: float,
                  params) -> np.ndarray:
    """``(n_patients, n_times)``: whether each output interval ``[a, b]`` is quiet for each
    patient, i.e. none of his doses falls in ``[a - w, b)``, where the window ``w`` of a dose
    is ``quiet_after_days`` or ``quiet_half_lives`` times the longest PK half-life of its
    species in this patient (``params``), whichever is longer. Depends on the patient alone."""
    starts = np.asarray(grid.interval_start_days, np.float64)[None, :]
    ends = np.asarray(grid.interval_end_days, np.float64)[None, :]
    n_doses = np.asarray(doses.n_doses)
    species = np.asarray(doses.species)
    lives = half_lives(params)  # (n_species, n)
    n = n_doses.shape[0]
    busy = np.zeros((n, starts.shape[1]), bool)
    for e in range(n_doses.shape[1]):
        count = n_doses[:, e].astype(np.float64)[:, None]
        if not np.any(count > 0):
            continue
        start = np.asarray(doses.start_days, np.float64)[:, e][:, None]
        tau = np.asarray(doses.interval_days, np.float64)[:, e][:, None]
        life = lives[np.clip(species[:, e], 0, lives.shape[0] - 1), np.arange(n) % lives.shape[1]][:, None]
        window = np.maximum(quiet_after_days, quiet_half_lives * life)
        # First dose at or after a - w; the interval is busy if it comes before b.
        j = np.maximum(np.ceil((starts - window - start) / np.where(tau > 0, tau, 1.0) - 1e-9), 0.0)
        busy |= (count > 0) & (j < count) & (start + j * tau < ends)
    return ~busy & (ends > starts)


class Plan(NamedTuple):
    """A schedule and the static loop sizes of the simulator that runs it.

    Attributes:
        grid: the OutputGrid (its batch-level flags for the patients planned together).
        max_steps: steps per output interval of the main method (largest ``n_steps``).
        uniform: whether every interval takes ``max_steps`` or 0 main-method steps.
        max_quiet_steps: steps per output interval of a combined method's quiet-stretch
            method (largest ``quiet_steps``; 1 without one).
        patient_quiet: ``(n_patients, n_times)`` per-patient quiet flags (a combined method;
            all False otherwise).
    """

    grid: OutputGrid
    max_steps: int
    uniform: bool
    max_quiet_steps: int
    patient_quiet: np.ndarray


def plan_schedule(times_days, settings, doses, start_day: float = 0.0, params=None) -> Plan:
    """The schedule of ``settings`` (a SolverSettings) for a batch with dose table ``doses``
    (NumPy) and parameters ``params`` (``{name: (n_patients,)}``; their PK half-lives set how
    long after a dose an interval stays busy; None = the default parameters).

    The static loop sizes depend only on the output times and the steps, so every batch of a
    population runs the same compiled program; each patient's quiet flags depend only on his
    own doses and parameters, so his results do not depend on who shares his batch."""
    method = get_method(settings.method)
    active = getattr(method, "active", method)
    grid = mark_dose_splits(plan_output_grid(times_days, settings.dt_days, start_day), doses,
                            after_dose=getattr(active, "split_after_dose", None) is not None)
    n = np.asarray(doses.n_doses).shape[0]
    quiet = np.zeros((n, grid.n_steps.size), bool)
    gaps = grid.interval_end_days - grid.interval_start_days
    if getattr(method, "quiet", None) is not None:
        if params is None:
            from popsim.model.parameters import default_parameters

            params = default_parameters(1)
        quiet = patient_quiet(grid, doses, settings.quiet_after_days, settings.quiet_half_lives, params)
        n_quiet = np.ceil(gaps / settings.quiet_dt_days - 1e-9).astype(np.int32)
        grid = grid._replace(quiet_steps=n_quiet, quiet_step_days=gaps / np.maximum(n_quiet, 1),
                             all_quiet=quiet.all(axis=0) & (n > 0), any_quiet=quiet.any(axis=0))
        if active.always_split:
            # quiet patients have no dose inside a step; busy ones split every step anyway
            grid = grid._replace(split=np.zeros_like(grid.split))
    max_steps = max(int(grid.n_steps.max()), 1)
    uniform = bool(np.all(np.isin(grid.n_steps, (0, max_steps))))
    return Plan(grid, max_steps, uniform, max(int(grid.quiet_steps.max()), 1), quiet)


def field_evaluations(grid: OutputGrid, method: str, n_states: int | None = None) -> int:
    """Vector-field evaluations (Jacobian-vector products counted as one each) that the
    compiled simulator performs per patient on ``grid``: every step the loop executes,
    masked ones included, times the method's parts per step and evaluations per part; where
    a combined method runs both of its methods (a batch with busy and quiet patients), both
    count."""
    from popsim.model.state import N_STATES

    combined = get_method(method)
    n_states = N_STATES if n_states is None else n_states
    active = getattr(combined, "active", combined)
    quiet_method = getattr(combined, "quiet", None)
    n_steps = np.asarray(grid.n_steps)
    if quiet_method is None:
        busy, calm = np.ones(n_steps.shape, bool), np.zeros(n_steps.shape, bool)
    else:
        calm = np.asarray(grid.any_quiet)
        busy = ~np.asarray(grid.all_quiet)
    split = np.asarray(grid.split)
    executed = np.arange(split.shape[1])[None, :] < n_steps[:, None]  # (n_times, max_steps)
    parts_per_interval = np.sum(np.where(split, 2, 1) * executed, axis=1)
    total = 0
    if active.always_split:
        total += int(busy.sum()) * max(int(n_steps.max()), 1) * 2 * active.evaluations(n_states)
    else:
        total += int(np.sum(parts_per_interval[busy])) * active.evaluations(n_states)
    if quiet_method is not None:
        total += int(np.sum(np.asarray(grid.quiet_steps)[calm])) * quiet_method.evaluations(n_states)
    return total
