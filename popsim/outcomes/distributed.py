"""One cohort across several JAX processes (``jax.distributed``): one per host, or per GPU.

Patients are independent, so each process simulates a contiguous block of patient ids
(the same seed gives the same virtual men whatever the split) and the blocks are gathered
to every process with a JAX collective (gloo on CPU, NCCL on GPUs). The gathered result
is the one-process result: same rows, same order, same values.

    from popsim.outcomes import distributed
    distributed.initialize()            # under srun: SLURM gives the coordinator, size, rank
    result = distributed.run_study_across_processes(design, study)
    if distributed.is_writer():         # process 0 writes the outputs, once
        ...
"""

from __future__ import annotations

import os
import pickle
from typing import Callable

import jax
import numpy as np

from popsim.outcomes.study import StudyResult, StudySpec, run_study
from popsim.population.design import CohortDesign

# Environment of a local launch (one command per process); under SLURM's srun JAX reads
# SLURM_NTASKS, SLURM_PROCID and SLURM_STEP_NODELIST itself.
ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID = "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"


def requested() -> bool:
    """Whether this process was launched as one of several: JAX_COORDINATOR_ADDRESS and
    JAX_NUM_PROCESSES > 1 are set, or it is a task of a SLURM step of several tasks
    (``srun --ntasks=N`` with N > 1; a one-task sweep job is not)."""
    if os.environ.get(ENV_COORDINATOR):
        return int(os.environ.get(ENV_NUM_PROCESSES, "1")) > 1
    return "SLURM_STEP_ID" in os.environ and int(os.environ.get("SLURM_STEP_NUM_TASKS", "1")) > 1


def initialize() -> tuple[int, int]:
    """Start ``jax.distributed`` from the environment (see ``requested``) before any JAX
    computation, with gloo collectives between CPU processes.

    Returns:
        (this process's index, number of processes).
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if os.environ.get(ENV_COORDINATOR):
        for name in (ENV_NUM_PROCESSES, ENV_PROCESS_ID):
            if not os.environ.get(name, "").isdigit():
                raise ValueError(f"{ENV_COORDINATOR} is set, so {name} must be set too (a whole number)")
        jax.distributed.initialize(os.environ[ENV_COORDINATOR], int(os.environ[ENV_NUM_PROCESSES]),
                                   int(os.environ[ENV_PROCESS_ID]))
    else:
        jax.distributed.initialize()
    return jax.process_index(), jax.process_count()


def is_writer() -> bool:
    """Whether this process writes the outputs (process 0)."""
    return jax.process_index() == 0


def patient_block(n_patients: int, index: int, count: int) -> tuple[int, int]:
    """Ids [start, stop) simulated by process ``index`` of ``count``: contiguous blocks,
    sizes differing by at most one."""
    base, extra = divmod(n_patients, count)
    start = index * base + min(index, extra)
    return start, start + base + (index < extra)


def all_gather_objects(obj) -> list:
    """``obj`` of every process, in process order, on every process (pickled bytes through
    a JAX all-gather: exact, whatever the dtypes; the data passes through every process)."""
    from jax.experimental import multihost_utils

    data = np.frombuffer(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.asarray([data.size], np.int32))).reshape(-1)
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[: data.size] = data
    gathered = np.asarray(multihost_utils.process_allgather(padded))
    return [pickle.loads(gathered[i, : sizes[i]].tobytes()) for i in range(sizes.size)]


def run_study_across_processes(design: CohortDesign, study: StudySpec,
                               on_chunk: Callable[[int, int], None] | None = None) -> StudyResult:
    """``run_study`` of the whole cohort, this process simulating its own block of patients.

    Every process must call it with the same design and study. Returns the whole cohort's
    StudyResult on every process, equal to ``run_study(design, study)`` in one process
    (per-patient results do not depend on how the cohort is chunked).
    """
    index, count = jax.process_index(), jax.process_count()
    start, stop = patient_block(study.n_patients, index, count)
    part = run_study(design, study, on_chunk=on_chunk, patient_range=(start, stop)) if stop > start else None
    parts = [p for p in all_gather_objects(part) if p is not None]
    first = parts[0]
    outcomes = {k: np.concatenate([p.outcomes[k] for p in parts]) for k in first.outcomes}
    trajectories = {k: np.concatenate([p.trajectories[k] for p in parts if p.trajectory_patient_ids.size])
                    for k in first.trajectories} if any(p.trajectory_patient_ids.size for p in parts) else {}
    ids = np.concatenate([p.trajectory_patient_ids for p in parts])
    return StudyResult(outcomes, first.trajectory_times_days, trajectories, ids, first.simulation_days,
                       sum(p.simulated_patients for p in parts))
