"""Sample a virtual cohort: covariates, physiology (IIV) and TRT history per patient.

Each patient's draws come from ``fold_in(key, man_id)`` so that patient k is the same
virtual man whatever the population size, chunking or device count, and every cell of a
factorial grid holds the same men (common random numbers).
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from popsim.dosing.drugs import TRT_PRODUCTS
from popsim.population.covariates import typical_parameters
from popsim.population.design import CohortDesign
from popsim.population.distributions import Distribution

PRODUCT_NAMES: tuple[str, ...] = tuple(TRT_PRODUCTS)

# Sub-streams of a man's key (fixed numbers: adding a stream never changes the others).
_STREAM_COVARIATES, _STREAM_ETA, _STREAM_TRT, _STREAM_PROTOCOL = 0, 1, 2, 3


class Cohort(NamedTuple):
    """A sampled cohort; every array has shape ``(n_patients,)``.

    Attributes:
        patient_id: global patient ids.
        man_id: the virtual man (shared by the cells of a factorial grid).
        cell: index of the grid cell.
        covariates: ``{age_years, bmi_kg_m2, asian, testicular_function}``.
        params: ``{model parameter: (n,)}``.
        trt: ``{product_index, dose_mg, interval_days, duration_days, start_day, first_dose_extra_mg}``.
        protocol: ``{course_dose: (n, n_courses) in each course's dose_unit, course_given:
            (n, n_courses) bool, arm: (n,) arm name ("" without arms)}``.
    """

    patient_id: np.ndarray
    man_id: np.ndarray
    cell: np.ndarray
    covariates: dict[str, np.ndarray]
    params: dict[str, np.ndarray]
    trt: dict[str, np.ndarray]
    protocol: dict[str, np.ndarray] | None = None


def grid_cells(design: CohortDesign) -> list[dict[str, object]]:
    """All cells of the factorial grid, each ``{field: value}`` (one empty cell if none)."""
    names = [name for name, _ in design.grid]
    return [dict(zip(names, combo)) for combo in itertools.product(*(values for _, values in design.grid))]


def _draw(dist: Distribution, key, ids):
    return jax.vmap(lambda i: dist.sample(jax.random.fold_in(key, i)))(ids)


def sample_cohort(design: CohortDesign, key, patient_ids) -> Cohort:
    """Sample the patients ``patient_ids`` of a cohort.

    Args:
        design: the cohort design (validated here).
        key: root PRNG key of the population.
        patient_ids: ``(n,)`` int global ids (any subset, e.g. one chunk).

    Returns:
        Cohort with per-patient covariates, parameters and TRT history.
    """
    design.validate()
    ids = np.asarray(patient_ids, dtype=np.int64)
    cells = grid_cells(design)
    cell = ids % len(cells)
    man = ids // len(cells)
    man_j = jnp.asarray(man, jnp.uint32)
    keys = jax.vmap(lambda m: jax.random.fold_in(key, m))(man_j)

    def stream(s):
        return jax.vmap(lambda k: jax.random.fold_in(k, s))(keys)

    cov_keys = stream(_STREAM_COVARIATES)
    cov = {}
    for j, name in enumerate(("age_years", "bmi_kg_m2", "asian", "testicular_function")):
        dist = getattr(design.covariates, name)
        cov[name] = np.asarray(jax.vmap(lambda k, d=dist, j=j: d.sample(jax.random.fold_in(k, j)))(cov_keys), float)

    trt_keys = stream(_STREAM_TRT)
    arms = design.trt.arms
    weights = jnp.log(jnp.asarray([max(a.weight, 0.0) for a in arms], jnp.float32))
    arm_index = np.asarray(jax.vmap(lambda k: jax.random.categorical(jax.random.fold_in(k, 0), weights))(trt_keys))
    dose = np.zeros(ids.size)
    interval = np.zeros(ids.size)
    first_extra = np.zeros(ids.size)
    for a, arm in enumerate(arms):
        d = np.asarray(jax.vmap(lambda k, dist=arm.dose_mg: dist.sample(jax.random.fold_in(k, 1)))(trt_keys), float)
        iv = np.asarray(jax.vmap(lambda k, dist=arm.interval_days: dist.sample(jax.random.fold_in(k, 2)))(trt_keys), float)
        dose = np.where(arm_index == a, d, dose)
        interval = np.where(arm_index == a, iv, interval)
        first_extra = np.where(arm_index == a, float(arm.first_dose_extra_mg), first_extra)
    duration = np.asarray(jax.vmap(lambda k: design.trt.duration_days.sample(jax.random.fold_in(k, 3)))(trt_keys), float)
    product = np.asarray([PRODUCT_NAMES.index(arms[a].product) for a in arm_index], np.int32) if ids.size else np.zeros(0, np.int32)
    trt = {"product_index": product, "dose_mg": dose, "interval_days": interval, "duration_days": duration,
           "start_day": np.full(ids.size, float(design.trt.start_day)), "first_dose_extra_mg": first_extra}

    # Factorial grid values override the sampled ones, cell by cell.
    for c, values in enumerate(cells):
        in_cell = cell == c
        for name, value in values.items():
            if name == "trt.product":
                trt["product_index"] = np.where(in_cell, PRODUCT_NAMES.index(value), trt["product_index"]).astype(np.int32)
            elif name.startswith("trt."):
                trt[name[4:]] = np.where(in_cell, float(value), trt[name[4:]])
            else:
                cov[name] = np.where(in_cell, float(value), cov[name])
    if np.any(trt["interval_days"] <= 0) or np.any(trt["dose_mg"] <= 0) or np.any(trt["duration_days"] <= 0):
        raise ValueError("trt: sampled dose_mg, interval_days and duration_days must be > 0; bound the "
                         "distributions (e.g. uniform low > 0)")

    params = typical_parameters(cov["age_years"], cov["bmi_kg_m2"], cov["asian"], cov["testicular_function"],
                                dict(design.covariate_effects))
    if design.variability.cv:
        chol = design.variability.cholesky()
        eta_keys = stream(_STREAM_ETA)
        z = np.asarray(jax.vmap(lambda k: jax.random.normal(k, (chol.shape[0],)))(eta_keys), np.float64)
        # Row by row in float64 (no matrix product, whose blocking depends on the batch
        # size), so a patient's etas are bit-identical in any population or chunk.
        eta = np.stack([np.sum(z * chol[i][None, :], axis=1) for i in range(chol.shape[0])], axis=1)
        for j, name in enumerate(design.variability.names):
            params[name] = params[name] * np.exp(eta[:, j])
    return Cohort(ids, man, cell, cov, params, trt, _protocol_draws(design, stream(_STREAM_PROTOCOL)))


def _protocol_draws(design: CohortDesign, keys) -> dict[str, np.ndarray]:
    """Each man's protocol: his arm and the dose of every course (drawn once per man)."""
    protocol = design.protocol
    n = keys.shape[0]
    arms = protocol.arm_names()
    if arms:
        weights = jnp.log(jnp.asarray([max(w, 0.0) for _, w in protocol.arms], jnp.float32))
        index = np.asarray(jax.vmap(lambda k: jax.random.categorical(jax.random.fold_in(k, 1_000_000), weights))(keys))
        arm = np.asarray(arms, dtype=object)[index] if n else np.zeros(0, dtype=object)
    else:
        arm = np.full(n, "", dtype=object)
    doses, given = [], []
    for c, course in enumerate(protocol.courses):
        if isinstance(course.dose, Distribution):
            doses.append(np.asarray(jax.vmap(lambda k, d=course.dose, c=c: d.sample(jax.random.fold_in(k, c)))(keys), float))
        else:
            doses.append(np.full(n, float(course.dose)))
        given.append(np.ones(n, bool) if not course.arm else arm == course.arm)
    if doses and np.any(np.stack(doses) <= 0):
        raise ValueError("protocol: sampled course doses must be > 0; bound the dose distributions (e.g. low > 0)")
    shape = (n, len(protocol.courses))
    return {"course_dose": np.stack(doses, 1) if doses else np.zeros(shape),
            "course_given": np.stack(given, 1) if given else np.zeros(shape, bool), "arm": arm}
