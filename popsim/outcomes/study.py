"""Run a virtual cohort in chunks with streaming outcomes.

Memory is bounded by the chunk: each chunk is sampled, dosed, simulated on a daily grid,
reduced to one outcome row per patient, and dropped; only a configurable subset of
trajectories is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, NamedTuple

import jax
import numpy as np

from popsim.dosing.drugs import PROTOCOL_DRUGS, TRT_PRODUCTS
from popsim.model.pk import SPECIES_INDEX

from popsim.population.design import CohortDesign
from popsim.population.regimens import cohort_dosing
from popsim.population.sampling import PRODUCT_NAMES, sample_cohort
from popsim.outcomes.recovery import ORIGINS, EndpointSpec, compute_outcomes
from popsim.solve.integrator import OBSERVABLES, Rules
from popsim.solve.run import iterate_chunks
from popsim.solve.settings import SolverSettings

# PRNG streams of a study's root key.
STREAM_POPULATION, STREAM_SEMEN = 0, 1
# Observables needed to compute outcomes.
OUTCOME_OBSERVABLES = ("sperm_concentration_m_ml", "total_testosterone_nmol_l", "lh_iu_l", "fsh_iu_l")


@dataclass(frozen=True)
class StudySpec:
    """How a cohort is run.

    Attributes:
        n_patients: population size.
        seed: root seed (same seed, same virtual men).
        origin: recovery origin, one of ORIGINS.
        recovery_horizon_days: follow-up after the origin.
        endpoints: which endpoints to compute.
        n_trajectories: trajectories kept (patients 0..n-1); 0 keeps none.
        trajectory_step_days: spacing of kept trajectories.
        trajectory_observables: observables kept (default: all).
        settings: solver settings (step, precision, chunk size).
    """

    n_patients: int = 2000
    seed: int = 0
    origin: str = "first_missed_dose"
    recovery_horizon_days: float = 730.5
    endpoints: EndpointSpec = EndpointSpec()
    n_trajectories: int = 200
    trajectory_step_days: float = 7.0
    trajectory_observables: tuple[str, ...] = OBSERVABLES
    settings: SolverSettings = SolverSettings()

    def validate(self) -> None:
        if not (isinstance(self.n_patients, int) and self.n_patients > 0):
            raise ValueError(f"population.size must be a positive integer, got {self.n_patients!r}")
        if self.origin not in ORIGINS:
            raise ValueError(f"outcomes.origin '{self.origin}' is unknown; valid origins are {list(ORIGINS)}")
        if not self.recovery_horizon_days > 0:
            raise ValueError(f"outcomes.horizon must be > 0, got {self.recovery_horizon_days}")
        if self.n_trajectories < 0 or self.trajectory_step_days <= 0:
            raise ValueError("output.trajectories must be >= 0 and output.trajectory_step_days > 0")
        bad = [o for o in self.trajectory_observables if o not in OBSERVABLES]
        if bad:
            raise ValueError(f"output.trajectory_observables {bad} are unknown; valid: {list(OBSERVABLES)}")
        self.endpoints.validate()


class StudyResult(NamedTuple):
    """Outcomes of every patient and the kept trajectories.

    Attributes:
        outcomes: ``{column: (n_patients,)}``.
        trajectory_times_days: ``(n_kept_times,)``.
        trajectories: ``{observable: (n_trajectories, n_kept_times)}``.
        trajectory_patient_ids: ``(n_trajectories,)``.
        simulation_days: length of the simulated grid.
        simulated_patients: patients the compiled batches simulated, padding included
            (popsim.solve.run.padded_batch).
    """

    outcomes: dict[str, np.ndarray]
    trajectory_times_days: np.ndarray
    trajectories: dict[str, np.ndarray]
    trajectory_patient_ids: np.ndarray
    simulation_days: float
    simulated_patients: int = 0


class ChunkOutcome(NamedTuple):
    """The results of one chunk of a study, as run_study collects them.

    Attributes:
        outcomes: ``{column: (n_chunk,)}`` (patient_id among them).
        trajectories: ``{observable: (n_kept, n_kept_times)}`` of its kept patients.
        trajectory_patient_ids: ``(n_kept,)``.
    """

    outcomes: dict[str, np.ndarray]
    trajectories: dict[str, np.ndarray]
    trajectory_patient_ids: np.ndarray


def simulation_length_days(design: CohortDesign, study: StudySpec) -> float:
    """Days to simulate so that every patient reaches his horizon (fixed per study)."""
    longest_interval = max(arm.interval_days.upper_bound() for arm in design.trt.arms)
    grid = dict(design.grid)
    longest_trt = max([design.trt.duration_days.upper_bound()] + [float(v) for v in grid.get("trt.duration_days", ())])
    longest_interval = max([longest_interval] + [float(v) for v in grid.get("trt.interval_days", ())])
    end = design.trt.start_day + longest_trt + longest_interval
    protocol_start = max((c.start_offset_days for c in design.protocol.courses if c.anchor in ("trt_end", "last_dose")), default=0.0)
    if study.origin == "protocol_start":
        end += max(protocol_start, 0.0)
    return float(np.ceil(end + study.recovery_horizon_days))


def design_species(design: CohortDesign) -> tuple[int, ...]:
    """PK species any patient of the design can be dosed with (fixed for the study, so
    every chunk reuses one compiled simulator)."""
    products = {arm.product for arm in design.trt.arms if arm.weight > 0}
    products |= {str(v) for name, values in design.grid if name == "trt.product" for v in values}
    names = [s for p in products for s in TRT_PRODUCTS[p].species]
    names += [s for c in design.protocol.courses for s in PROTOCOL_DRUGS[c.drug].species]
    return tuple(sorted(SPECIES_INDEX[n] for n in set(names)))


def _origin(study: StudySpec, design: CohortDesign, dosing) -> np.ndarray:
    summary = dosing.trt
    if study.origin == "first_missed_dose":
        return summary.first_missed_dose_day
    if study.origin == "last_dose":
        return summary.last_dose_day
    if not design.protocol.courses:
        return summary.first_missed_dose_day
    first = design.protocol.courses[0]
    anchors = {"trt_end": summary.first_missed_dose_day, "last_dose": summary.last_dose_day,
               "trt_start": summary.first_dose_day, "day0": np.zeros_like(summary.first_dose_day)}
    return anchors[first.anchor] + first.start_offset_days


def _compact(name: str, values: np.ndarray) -> np.ndarray:
    """Store event times and fractions as float32 and flags as bool: the outcome table of a
    million patients then stays in a few hundred MB."""
    if values.dtype == np.bool_ or name.endswith("_observed"):
        return values.astype(bool)
    if values.dtype.kind == "f" and (name.endswith("_days") or name.startswith("suppression_")):
        return values.astype(np.float32)
    return values


def run_study(design: CohortDesign, study: StudySpec,
              on_chunk: Callable[[int, int], None] | None = None,
              patient_range: tuple[int, int] | None = None,
              completed_chunks: Mapping[int, ChunkOutcome] | None = None,
              on_chunk_result: Callable[[int, ChunkOutcome], None] | None = None) -> StudyResult:
    """Simulate a cohort chunk by chunk and return its outcome table.

    Args:
        design: the cohort.
        study: sizes, seed, origin, endpoints, outputs, solver settings.
        on_chunk: progress callback (patients done, total).
        patient_range: simulate only ids in [start, stop) (default: all).
        completed_chunks: results of chunks done before, by their first patient id (e.g.
            by an interrupted run of the same study): reused, not simulated again. A chunk
            whose patient ids are not those of this study's chunk there is simulated.
        on_chunk_result: called with (first patient id, ChunkOutcome) after each chunk
            simulated, e.g. to store it so that an interrupted run can resume.

    Returns:
        StudyResult; results for a patient do not depend on the chunk size.
    """
    design.validate()
    study.validate()
    root = jax.random.PRNGKey(study.seed)
    key_population = jax.random.fold_in(root, STREAM_POPULATION)
    key_semen = jax.random.fold_in(root, STREAM_SEMEN)
    days = simulation_length_days(design, study)
    times = np.arange(0.0, days + 0.5, 1.0)
    keep_every = max(int(round(study.trajectory_step_days)), 1)
    kept_times = times[::keep_every]
    start, stop = patient_range or (0, study.n_patients)
    chunk = study.settings.chunk_size
    columns: dict[str, list[np.ndarray]] = {}
    kept: dict[str, list[np.ndarray]] = {}
    kept_ids: list[np.ndarray] = []
    observables = tuple(dict.fromkeys(OUTCOME_OBSERVABLES + (study.trajectory_observables if study.n_trajectories else ())))
    species = design_species(design)
    done = simulated = 0
    for begin in range(start, stop, chunk):
        ids = np.arange(begin, min(begin + chunk, stop))
        previous = (completed_chunks or {}).get(begin)
        if previous is not None and np.array_equal(previous.outcomes.get("patient_id"), ids):
            part = previous
        else:
            part, count = _simulate_chunk(design, study, ids, key_population, key_semen, times, observables, species,
                                          keep_every)
            simulated += count
            if on_chunk_result is not None:
                on_chunk_result(begin, part)
        for k, v in part.outcomes.items():
            columns.setdefault(k, []).append(v)
        if part.trajectory_patient_ids.size:
            kept_ids.append(part.trajectory_patient_ids)
            for k in study.trajectory_observables:
                kept.setdefault(k, []).append(part.trajectories[k])
        done += ids.size
        if on_chunk is not None:
            on_chunk(done, stop - start)
    # Column by column, each column's chunks released as it is joined, so the joined table
    # and the chunks' columns are not both held whole (chunks read back from a resumed run
    # stay referenced by the caller's completed_chunks until it drops them).
    outcomes = {k: np.concatenate(columns.pop(k)) for k in list(columns)}
    trajectories = {k: np.concatenate(v) for k, v in kept.items()}
    return StudyResult(outcomes, kept_times, trajectories,
                       np.concatenate(kept_ids) if kept_ids else np.zeros(0, np.int64), days, simulated)


def _simulate_chunk(design: CohortDesign, study: StudySpec, ids: np.ndarray, key_population, key_semen,
                    times: np.ndarray, observables: tuple[str, ...], species: tuple[int, ...],
                    keep_every: int) -> tuple[ChunkOutcome, int]:
    """One chunk of run_study: (its results, patients simulated with padding)."""
    cohort = sample_cohort(design, key_population, ids)
    dosing = cohort_dosing(cohort.trt, design.protocol, cohort.protocol)
    origin = _origin(study, design, dosing)
    result = next(iterate_chunks(cohort.params, dosing.doses, times, study.settings, observables=observables,
                                 initial_scale=dosing.initial_scale, rules=Rules(*dosing.rules),
                                 species=species, population_size=study.n_patients))
    outputs = result.outputs
    rows = compute_outcomes(times, outputs, cohort.params, origin, study.recovery_horizon_days,
                            dosing.trt.first_dose_day, dosing.trt.first_missed_dose_day, study.endpoints,
                            key_semen, ids)
    failed = result.failed
    for name in list(rows):
        if name.endswith("_days"):
            rows[name] = np.where(failed, np.nan, rows[name])
        elif name.endswith("_observed"):
            rows[name] = np.where(failed, False, rows[name])
    table = {
        "patient_id": ids, "man_id": cohort.man_id, "cell": cohort.cell, "failed": failed,
        **{k: v for k, v in cohort.covariates.items()},
        "trt_product": np.asarray(PRODUCT_NAMES)[cohort.trt["product_index"]],
        "trt_dose_mg": cohort.trt["dose_mg"], "trt_interval_days": cohort.trt["interval_days"],
        "trt_duration_days": cohort.trt["duration_days"],
        "trt_last_dose_day": dosing.trt.last_dose_day, "origin_day": origin,
        **({"protocol_arm": cohort.protocol["arm"].astype(str)} if design.protocol.arms else {}),
        # Each man's draw of a course whose dose is a distribution (NaN: not in its arm).
        **{f"course{c}_dose": np.where(cohort.protocol["course_given"][:, c], cohort.protocol["course_dose"][:, c],
                                       np.nan)
           for c, course in enumerate(design.protocol.courses) if not isinstance(course.dose, (int, float))},
        "baseline_sperm_m_ml": cohort.params["sperm_base_m_ml"],
        "baseline_testosterone_nmol_l": cohort.params["t_base_nmol_l"],
        "baseline_lh_iu_l": cohort.params["lh_base_iu_l"],
        "baseline_fsh_iu_l": cohort.params["fsh_base_iu_l"],
        **rows,
    }
    outcomes = {k: _compact(k, np.asarray(v)) for k, v in table.items()}
    keep = ids < study.n_trajectories
    trajectories = {k: outputs[k][keep][:, ::keep_every] for k in study.trajectory_observables} if keep.any() else {}
    return ChunkOutcome(outcomes, trajectories, ids[keep]), result.simulated_patients
