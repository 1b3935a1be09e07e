"""Run the compiled simulator over a population in fixed-size chunks.

Full chunks are padded to ``chunk_size`` (rounded up to a batch multiple) so that every
chunk reuses one compiled function; a shorter last chunk is padded only to the next power
of two times the batch multiple (``padded_batch``), so it simulates few padding patients
and a run compiles at most a few extra sizes. Results do not depend on the chunk size
(each patient is simulated independently). With
``solver.method=rk4`` they are bit-identical for any two chunk sizes on the same side of
``popsim.solve.integrator.SMALL_BATCH`` padded patients, and equal to float32 round-off
(~1e-6 relative) across it, where the integrator switches between two equivalent
formulations of the stage PK. With a combined method a batch runs the methods its
patients need (popsim.solve.schedule), which can change a patient's results in the last
bit (~1e-7 relative) with who shares his batch.
"""

from __future__ import annotations

from typing import Callable, Iterator, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from popsim.dosing.table import DoseTable
from popsim.model.parameters import PARAMETER_NAMES, validate_parameters
from popsim.solve import integrator
from popsim.solve.integrator import OutputGrid, Rules, population_simulator
from popsim.solve.methods import get_method
from popsim.solve.schedule import field_evaluations, mark_dose_splits, plan_schedule
from popsim.solve.settings import SolverSettings


class ChunkResult(NamedTuple):
    """Outputs of one chunk (host NumPy arrays, padding removed).

    Attributes:
        patient_slice: the patients of this chunk in the population.
        outputs: ``{observable: (n_chunk, n_times)}``.
        failed: ``(n_chunk,)`` bool numerical-failure flags.
        field_evaluations: vector-field evaluations per patient of this chunk
            (popsim.solve.schedule.field_evaluations).
        simulated_patients: patients the compiled batches of this chunk simulated,
            padding included (``padded_batch``).
    """

    patient_slice: slice
    outputs: dict[str, np.ndarray]
    failed: np.ndarray
    field_evaluations: int = 0
    simulated_patients: int = 0


_BATCH_MULTIPLE = 32
# Patients per compiled batch when a combined method groups the patients of a chunk by
# when their quiet stretch starts (above SMALL_BATCH, so results equal those of one batch).
GROUP_SIZE = 512


def check_precision(precision: str) -> None:
    """Raise if float64 is asked for while JAX runs in 32-bit mode."""
    if precision == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("solver.precision='float64' needs 64-bit JAX: set the environment variable "
                         "JAX_ENABLE_X64=1 or call jax.config.update('jax_enable_x64', True) before "
                         "using JAX, or use precision='float32'")


def padded_batch(n: int, full: int, batch_multiple: int) -> int:
    """Patients a compiled batch of ``n`` real patients simulates, padding included.

    ``full`` is the padded size of a full batch (a multiple of ``batch_multiple``). A
    shorter batch is padded to ``batch_multiple`` times the next power of two (at most
    ``full``), so a run compiles at most a few extra sizes. Every size is a multiple of
    ``batch_multiple`` (XLA's vectorised loops then take one code path, see
    iterate_chunks) and lies on the same side of SMALL_BATCH as ``full``, so the integrator
    uses the same stage-PK formulation for every batch of a run and a patient's results are
    bit-identical whatever batch he falls in.
    """
    lanes = max(-(-int(n) // batch_multiple), 1)
    size = min(batch_multiple * (1 << (lanes - 1).bit_length()), full)
    small = integrator.SMALL_BATCH
    if full > small:
        smallest_large = batch_multiple * (1 << max(small // batch_multiple, 0).bit_length())
        size = max(size, min(smallest_large, full))
    return size


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    if array.shape[0] == size:
        return array
    reps = np.repeat(array[-1:], size - array.shape[0], axis=0)
    return np.concatenate([array, reps], axis=0)


def iterate_chunks(params: Mapping[str, np.ndarray], doses: DoseTable, times_days,
                   settings: SolverSettings = SolverSettings(), start_day: float = 0.0,
                   observables: tuple[str, ...] | None = None,
                   on_chunk: Callable[[int, int], None] | None = None,
                   initial_scale: np.ndarray | None = None, rules: Rules | None = None,
                   species: tuple[int, ...] | None = None,
                   population_size: int | None = None) -> Iterator[ChunkResult]:
    """Simulate a population chunk by chunk.

    Args:
        params: ``{name: (n_patients,)}`` for every model parameter.
        doses: compiled DoseTable with ``n_patients`` rows.
        times_days: ``(n_times,)`` output times, non-decreasing, >= start_day.
        settings: solver settings.
        start_day: time at which every patient is at his untreated steady state.
        observables: subset of outputs to keep (all by default).
        on_chunk: called with (patients done, total) after each chunk.
        initial_scale: ``(n_patients, n_entries)`` dose scales (default 1).
        rules: monitoring rules, fields ``(n_patients, n_rules)`` (default none).
        species: PK species to simulate (default: those dosed in ``doses``); keep it
            fixed across calls to reuse the compiled simulator.
        population_size: size of the whole population when ``params`` and ``doses`` hold
            one chunk of it (popsim.outcomes.study.run_study calls once per chunk): full
            chunks are padded as for that population, a short one by ``padded_batch``
            (default: ``n_patients``).

    Yields:
        ChunkResult per chunk, in patient order.
    """
    check_precision(settings.precision)
    validate_parameters(params)
    n = doses.species.shape[0]
    for name in PARAMETER_NAMES:
        if np.shape(params[name]) != (n,):
            raise ValueError(f"parameter '{name}' has shape {np.shape(params[name])}; expected ({n},) "
                             "(one value per patient)")
    if species is None:
        species = tuple(np.unique(doses.species[doses.n_doses > 0]).tolist())
    else:
        missing = set(np.unique(doses.species[doses.n_doses > 0]).tolist()) - set(species)
        if missing:
            raise ValueError(f"doses of PK species {sorted(missing)} but species={species}")
    # Static loop sizes come from the output times and the steps alone, so every chunk's own
    # schedule (its batch-level flags) runs in the same compiled program.
    first = min(settings.chunk_size, n)
    plan = plan_schedule(times_days, settings, DoseTable(*(np.asarray(a)[:first] for a in doses)), start_day,
                         {k: np.asarray(v)[:first] for k, v in params.items()})
    if initial_scale is None:
        initial_scale = np.ones(doses.species.shape)
    if rules is None:
        z, zi = np.zeros((n, 0)), np.zeros((n, 0), np.int32)
        rules = Rules(zi, z, z, z, z, zi, zi, z, z)
    simulator = population_simulator(settings.precision, species, plan.max_steps, uniform=plan.uniform,
                                     method=settings.method, max_quiet_steps=plan.max_quiet_steps)
    devices = jax.local_devices()
    batch_multiple = _BATCH_MULTIPLE * len(devices)
    if len(devices) > 1:
        # Shard the patient axis over every local device (GPUs, or CPU host devices
        # forced with XLA_FLAGS=--xla_force_host_platform_device_count=N).
        mesh = Mesh(np.asarray(devices), ("patients",))
        by_patient = NamedSharding(mesh, PartitionSpec("patients"))
        replicated = NamedSharding(mesh, PartitionSpec())
    else:
        by_patient = replicated = None
    dtype = np.float32 if settings.precision == "float32" else np.float64
    # Compiled batches are a multiple of _BATCH_MULTIPLE: XLA's vectorised loops then take
    # the same code path for every patient, so results are bit-identical whatever the
    # chunk size (a remainder loop may round differently) on either side of SMALL_BATCH.
    # A short (last) chunk is padded less, on the same side of SMALL_BATCH (padded_batch).
    reference = max(n, int(population_size or 0))
    size = -(-min(settings.chunk_size, reference) // batch_multiple) * batch_multiple

    def put(a):
        return jax.device_put(a, by_patient) if by_patient is not None else jnp.asarray(a)

    method = get_method(settings.method)
    combined = getattr(method, "quiet", None) is not None
    active_method = getattr(method, "active", method)
    splits_at_doses = not active_method.always_split
    after_dose = getattr(active_method, "split_after_dose", None) is not None
    group = -(-GROUP_SIZE // batch_multiple) * batch_multiple
    step = min(settings.chunk_size, n)
    for begin in range(0, n, step):
        end = min(begin + step, n)
        if begin:
            plan = plan_schedule(times_days, settings, DoseTable(*(np.asarray(a)[begin:end] for a in doses)),
                                 start_day, {k: np.asarray(v)[begin:end] for k, v in params.items()})
        m = end - begin
        if combined and m > group:
            # Patients whose quiet stretches start together share a batch, so that the
            # batch runs ROS34PW2 alone (not both methods) for as many days as possible;
            # results do not depend on the grouping beyond float32 round-off (each
            # patient's flags pick his result).
            busy_until = plan.patient_quiet.shape[1] - np.argmin(plan.patient_quiet[:, ::-1], axis=1)
            busy_until = np.where(plan.patient_quiet.all(axis=1), 0, busy_until)
            order = np.argsort(busy_until, kind="stable")
            batches = [order[i:i + group] for i in range(0, m, group)]
            full = group
        else:
            batches = [np.arange(m)]
            full = size
        host: dict[str, np.ndarray] = {}
        failed_all = np.zeros(m, bool)
        evaluations = 0.0
        simulated = 0
        for rows in batches:
            batch_size = padded_batch(rows.size, full, batch_multiple)
            simulated += batch_size
            take = begin + rows
            grid = plan.grid
            own_quiet = plan.patient_quiet[rows]
            if len(batches) > 1:
                grid = grid._replace(all_quiet=own_quiet.all(axis=0), any_quiet=own_quiet.any(axis=0))
                if splits_at_doses:
                    # The batch's own doses decide which of its steps run two parts.
                    grid = mark_dose_splits(grid, DoseTable(*(np.asarray(a)[take] for a in doses)),
                                            after_dose=after_dose)
            chunk_params = {k: put(_pad(np.asarray(v, dtype)[take], batch_size)) for k, v in params.items()}
            chunk_doses = DoseTable(*(put(_pad(np.asarray(a)[take], batch_size)) for a in doses))
            chunk_scale = put(_pad(np.asarray(initial_scale, dtype)[take], batch_size))
            chunk_rules = Rules(*(put(_pad(np.asarray(a)[take], batch_size)) for a in rules))
            grid_j = OutputGrid(*(jax.device_put(a, replicated) if replicated else jnp.asarray(a) for a in grid))
            chunk_quiet = put(_pad(own_quiet, batch_size))
            outputs, failed, _ = simulator(chunk_params, chunk_doses, grid_j, chunk_scale, chunk_rules, chunk_quiet)
            keep = observables or tuple(outputs)
            for k in keep:
                values = np.asarray(outputs[k])[: rows.size]
                if k not in host:
                    host[k] = np.empty((m,) + values.shape[1:], values.dtype)
                host[k][rows] = values
            failed_all[rows] = np.asarray(failed)[: rows.size]
            evaluations += field_evaluations(grid, settings.method) * rows.size
        if on_chunk is not None:
            on_chunk(end, n)
        yield ChunkResult(slice(begin, end), host, failed_all, int(round(evaluations / m)), simulated)
