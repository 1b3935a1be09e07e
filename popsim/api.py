"""The Python API: simulate virtual patients and get labelled trajectories.

    >>> import popsim
    >>> regimen = popsim.Regimen(trt=[popsim.TRTCourse("enanthate", 200, "mg", 7, 365)])
    >>> ds = popsim.simulate([regimen] * 3, times_days=range(0, 730, 7))
    >>> ds.sperm_concentration.sel(time=364).values  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from popsim.analysis.trajectories import to_dataset
from popsim.dosing.regimen import Regimen, RegimenError
from popsim.dosing.table import compile_regimens
from popsim.model.observation import sample_semen
from popsim.model.parameters import PARAMETER_INDEX, default_parameters
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
