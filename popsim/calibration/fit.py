"""One call from validated lab data to a posterior: ``calibrate(data, spec, settings)``."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable, NamedTuple

from popsim.calibration.data import LabData
from popsim.calibration.inference import InferenceSettings, Posterior, run_inference, validate_settings
from popsim.calibration.model import make_model
from popsim.calibration.problem import CalibrationProblem, build_problem, make_predictor
from popsim.calibration.spec import CalibrationSpec

# Sampled sites of either parameterization (popsim.calibration.model); those absent from
# a model are ignored.
LATENT_SITES = ("theta_pop", "omega", "eta", "log_theta", "z", "sigma", "sigma_additive")


class CalibrationResult(NamedTuple):
    """A finished calibration.

    Attributes:
        problem: the data as likelihood arrays.
        spec: the statistical model.
        posterior: draws and diagnostics.
        predict: ``predict(theta) -> (prediction, failed)`` (popsim.calibration.problem).
        wall_time_s: total wall time of the inference including compilation, seconds.
    """

    problem: CalibrationProblem
    spec: CalibrationSpec
    posterior: Posterior
    predict: Callable
    wall_time_s: float


def calibrate(data: LabData, spec: CalibrationSpec = CalibrationSpec(),
              settings: InferenceSettings = InferenceSettings()) -> CalibrationResult:
    """Fit the hierarchical model to lab data with NUTS or SVI.

    Raises:
        CalibrationSpecError, InferenceError: invalid settings (before any computation).
    """
    validate_settings(settings)
    return calibrate_problem(build_problem(data, spec), spec, settings)


def calibrate_problem(problem: CalibrationProblem, spec: CalibrationSpec,
                      settings: InferenceSettings = InferenceSettings()) -> CalibrationResult:
    """``calibrate`` for lab data already turned into a CalibrationProblem with ``spec``."""
    validate_settings(settings)
    if settings.method == "laplace":
        # A Laplace fit needs a proper mode; centred for the azoospermic men, the regrowth
        # rate's IIV sd has none on the shipped example (the centred funnel: Newton steps
        # stalled at a largest gradient of 1.3e3, against 0.14 non-centred), so the fast
        # path samples such parameters non-centred for every man.
        spec = replace(spec, estimated=tuple(replace(e, centred=False) if e.centred == "azoospermic" else e
                                             for e in spec.estimated))
    predict = make_predictor(problem, spec, settings.gradient)
    model = make_model(problem, spec, predict)
    t0 = time.perf_counter()
    posterior = run_inference(model, settings, LATENT_SITES)
    return CalibrationResult(problem, spec, posterior, predict, time.perf_counter() - t0)
