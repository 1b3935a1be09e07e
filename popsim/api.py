"""The Python API: simulate virtual patients and get labelled trajectories, or run a
whole cohort study (:class:`Cohort`, :func:`run_study`, :func:`published_cohorts`).

    >>> import popsim
    >>> regimen = popsim.Regimen(trt=[popsim.TRTCourse("enanthate", 200, "mg", 7, 365)])
    >>> ds = popsim.simulate([regimen] * 3, times_days=range(0, 730, 7))
    >>> ds.sperm_concentration.sel(time=364).values  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from popsim.analysis.trajectories import to_dataset
from popsim.dosing.regimen import Regimen, RegimenError
from popsim.dosing.table import compile_regimens
from popsim.model.observation import sample_semen
from popsim.model.parameters import PARAMETER_INDEX, default_parameters
from popsim.outcomes.study import StudySpec
from popsim.population.design import CohortDesign, Protocol, ProtocolCourse
from popsim.solve.run import iterate_chunks
from popsim.solve.settings import SolverSettings


def broadcast_parameters(params: Mapping[str, object] | None, n_patients: int) -> dict[str, np.ndarray]:
    """Fill unspecified parameters with defaults and broadcast scalars to ``(n_patients,)``.

    Raises:
        ValueError: for unknown names or arrays of the wrong length.
    """
    out = default_parameters(n_patients)
    for name, value in (params or {}).items():
        if name not in PARAMETER_INDEX:
            raise ValueError(f"unknown model parameter '{name}'; see popsim.PARAMETER_NAMES or docs/model.md")
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim == 0:
            arr = np.full(n_patients, float(arr))
        if arr.shape != (n_patients,):
            raise ValueError(f"parameter '{name}' has shape {arr.shape}; expected a scalar or ({n_patients},)")
        out[name] = arr
    return out


def simulate(regimens: Regimen | Sequence[Regimen], params: Mapping[str, object] | None = None,
             times_days=None, *, n_patients: int | None = None, seed: int = 0,
             settings: SolverSettings = SolverSettings(), patient_ids=None, n_entries: int | None = None,
             observables: Sequence[str] | None = None) -> xr.Dataset:
    """Simulate virtual patients through their regimens.

    Args:
        regimens: one Regimen for everybody, or one per patient.
        params: ``{parameter: scalar or (n_patients,)}``; the rest take their defaults.
        times_days: output times (days since the untreated steady state at day 0);
            default weekly for 2 years.
        n_patients: population size when ``regimens`` is a single Regimen (default 1).
        seed: seed of the semen-sample draws.
        settings: solver settings (step, precision, chunk size).
        patient_ids: ids used for per-patient random draws (default 0..n-1).
        n_entries: dose-table width; keep it fixed across calls to avoid recompiling.
        observables: core output names to keep (default all).

    Returns:
        Dataset with dims (patient, time), one variable per observable (units in attrs),
        sampled sperm concentration and total motile count, and a per-patient ``failed`` flag.
    """
    if isinstance(regimens, Regimen):
        regimens = [regimens] * (1 if n_patients is None else int(n_patients))
    else:
        regimens = list(regimens)
        if n_patients is not None and n_patients != len(regimens):
            raise RegimenError(f"n_patients={n_patients} but {len(regimens)} regimens were given")
    if not regimens:
        raise RegimenError("no regimens given: pass a Regimen or a non-empty list of them")
    n = len(regimens)
    times = np.arange(0.0, 731.0, 7.0) if times_days is None else np.asarray(times_days, dtype=float)
    full_params = broadcast_parameters(params, n)
    ids = np.arange(n) if patient_ids is None else np.asarray(patient_ids)
    if ids.shape != (n,):
        raise ValueError(f"patient_ids has shape {ids.shape}; expected ({n},)")
    doses = compile_regimens(regimens, n_entries)
    parts: dict[str, list[np.ndarray]] = {}
    failed = []
    for chunk in iterate_chunks(full_params, doses, times, settings, observables=None if observables is None
                                else tuple(set(observables) | {"sperm_concentration_m_ml"})):
        for k, v in chunk.outputs.items():
            parts.setdefault(k, []).append(v)
        failed.append(chunk.failed)
    outputs = {k: np.concatenate(v) for k, v in parts.items()}
    failed_all = np.concatenate(failed)
    key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)  # stream 1: semen samples
    sample, tmc = sample_semen(key, jnp.asarray(ids), jnp.arange(times.size), jnp.asarray(outputs["sperm_concentration_m_ml"]),
                               *(jnp.asarray(full_params[k], outputs["sperm_concentration_m_ml"].dtype) for k in
                                 ("semen_cv_within", "azoospermia_limit_m_ml", "semen_volume_ml", "motility_fraction")))
    outputs["sperm_concentration_sample_m_ml"] = np.asarray(sample)
    outputs["total_motile_count_m"] = np.asarray(tmc)
    if observables is not None:
        keep = set(observables) | {"sperm_concentration_sample_m_ml", "total_motile_count_m"}
        outputs = {k: v for k, v in outputs.items() if k in keep}
    return to_dataset(outputs, failed_all, ids, times, attrs={
        "dt_days": settings.dt_days, "precision": settings.precision, "seed": seed})


# ----------------------------------------------------------------------------- cohort studies


@dataclass(frozen=True)
class Cohort:
    """A virtual cohort study: who the men are, what they receive and how they are followed.

    Attributes:
        design: covariates, variability, TRT history and recovery protocol
            (popsim.CohortDesign; protocol doses may be distributions across men, courses
            may belong to arms of a mixture, end at an anchor, or be single doses, see
            :func:`dose_at`).
        study: size, seed, origin, horizon, endpoints, kept trajectories, solver.
        select: keep only the men for whom this pandas query of the outcome table is
            true, e.g. ``"azoospermic_at_origin"`` or ``"origin_sperm_m_ml < 1"`` (the state at
            the recovery origin); None keeps everyone.
        name: a label for reports.
    """

    design: CohortDesign = field(default_factory=CohortDesign)
    study: StudySpec = field(default_factory=StudySpec)
    select: str | None = None
    name: str = "cohort"

    def with_(self, *, size: int | None = None, seed: int | None = None, select: str | None = None,
              trajectories: int | None = None, protocol: Protocol | None = None, **study_changes) -> "Cohort":
        """A copy with another size, seed, selection, number of kept trajectories, protocol
        (the same men, another treatment) or StudySpec fields (e.g. ``endpoints=``)."""
        design = self.design if protocol is None else replace(self.design, protocol=protocol)
        changes = dict(study_changes)
        if size is not None:
            changes["n_patients"] = int(size)
            changes.setdefault("n_trajectories", min(self.study.n_trajectories, int(size)))
        if seed is not None:
            changes["seed"] = int(seed)
        if trajectories is not None:
            changes["n_trajectories"] = int(trajectories)
        return replace(self, design=design, study=replace(self.study, **changes),
                       select=self.select if select is None else select)

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field (nothing is simulated)."""
        self.design.validate()
        self.study.validate()
        if self.select is not None and not (isinstance(self.select, str) and self.select.strip()):
            raise ValueError(f"select must be a pandas query string such as 'azoospermic_at_origin', got {self.select!r}")

    def run(self, on_chunk=None) -> "StudyOutcome":
        """Simulate the cohort (see :func:`run_study`)."""
        return run_study(self, on_chunk=on_chunk)


@dataclass(frozen=True)
class StudyOutcome:
    """The result of a cohort study.

    Attributes:
        cohort: what was run.
        table: one row per (selected) man: covariates, TRT, protocol draws, the state at
            the origin, every endpoint's time and flag (latent and sampled) and, when the
            EndpointSpec asks for them, the semen samples taken before the origin.
        n_simulated: men simulated (before ``select``).
        trajectories: kept trajectories of the selected men (xarray Dataset) or None.
    """

    cohort: Cohort
    table: pd.DataFrame
    n_simulated: int
    trajectories: xr.Dataset | None

    def summary(self, months=(3, 6, 12, 18, 24)) -> dict:
        """Kaplan-Meier summaries, quantiles, strata and Cox models of every endpoint (as the
        popsim command's summary.json)."""
        from popsim.analysis.survival import study_summary

        return study_summary(self.table, months=tuple(months), horizon_days=self.cohort.study.recovery_horizon_days)

    def recovered_by(self, months, endpoint: str = "conc_ge_15", variant: str = "latent") -> pd.Series:
        """Kaplan-Meier P(recovered) at ``months`` for one endpoint (index: months)."""
        from popsim.analysis.survival import recovery_summary

        months = tuple(float(m) for m in np.atleast_1d(months))
        summary = recovery_summary(self.table, endpoint, variant, months, self.cohort.study.recovery_horizon_days)
        by_month = summary["p_recovered_by_month"]
        values = [np.nan if (v := by_month.get(m, by_month.get(int(m)) if float(m).is_integer() else None)) is None
                  or v.get("estimate") is None else v["estimate"] for m in months]
        return pd.Series(values, index=pd.Index(months, name="months"), name=endpoint, dtype=float)


def run_study(cohort: Cohort | CohortDesign, study: StudySpec | None = None, *, select: str | None = None,
              on_chunk=None) -> StudyOutcome:
    """Run a cohort study and return its outcome table.

    Args:
        cohort: a Cohort, or a CohortDesign (then ``study`` and ``select`` complete it).
        study: StudySpec when ``cohort`` is a design (default StudySpec()).
        select: pandas query keeping some men (see Cohort.select).
        on_chunk: progress callback (men done, total).

    Raises:
        ValueError: an invalid design, study or selection (before any simulation for the
            first two).
    """
    from popsim.analysis.trajectories import to_dataset
    from popsim.outcomes.study import run_study as run_core

    if isinstance(cohort, CohortDesign):
        cohort = Cohort(cohort, study or StudySpec(), select)
    elif study is not None or select is not None:
        cohort = replace(cohort, study=study or cohort.study, select=select if select is not None else cohort.select)
    cohort.validate()
    result = run_core(cohort.design, cohort.study, on_chunk=on_chunk)
    table = pd.DataFrame(result.outcomes)
    n = len(table)
    keep_ids = table["patient_id"].to_numpy()
    if cohort.select is not None:
        try:
            mask = table.eval(cohort.select)
        except Exception as e:  # noqa: BLE001 - pandas raises many types for a bad query
            raise ValueError(f"select {cohort.select!r} is not a valid query of the outcome table ({e}); columns "
                             f"are {list(table.columns)}") from None
        mask = np.asarray(mask, bool)
        if mask.shape != (n,):
            raise ValueError(f"select {cohort.select!r} must give one true/false per man")
        table = table[mask].reset_index(drop=True)
        keep_ids = table["patient_id"].to_numpy()
    trajectories = None
    if result.trajectories:
        chosen = np.isin(result.trajectory_patient_ids, keep_ids)
        ids = result.trajectory_patient_ids[chosen]
        failed = table.set_index("patient_id").loc[ids, "failed"].to_numpy() if ids.size else np.zeros(0, bool)
        trajectories = to_dataset({k: v[chosen] for k, v in result.trajectories.items()}, failed, ids,
                                  result.trajectory_times_days, attrs={"cohort": cohort.name, "seed": cohort.study.seed})
    return StudyOutcome(cohort, table, n, trajectories)


def published_cohorts(target: str, size: int = 2000, seed: int | None = None) -> dict[str, Cohort]:
    """The cohorts of a published validation target (C1-C8, docs/validation.md) as the
    studies ran them, by name (e.g. ``published_cohorts("C6")["C6_hcg_250"]``)."""
    from popsim.validation.scenarios import Options, runs_for
    from popsim.validation.targets import TARGET_IDS

    if target not in TARGET_IDS:
        raise ValueError(f"target {target!r} is unknown; valid targets are {list(TARGET_IDS)}")
    options = Options(size=int(size)) if seed is None else Options(size=int(size), seed=int(seed))
    return {run.name: Cohort(run.design, run.study, name=run.name) for run in runs_for(target, options)}


def dose_at(drug: str, dose, dose_unit: str, day: float, anchor: str = "trt_end", arm: str = "") -> ProtocolCourse:
    """One extra dose of a protocol drug at ``day`` days from ``anchor`` (a one-dose course)."""
    return ProtocolCourse(drug, dose, dose_unit, interval_days=1.0, duration_days=1.0, start_offset_days=float(day),
                          anchor=anchor, arm=arm)
