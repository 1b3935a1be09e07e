"""The ``popsim-calibrate`` command: Bayesian calibration of popsim to lab data.

The configuration (configs/calibrate.yaml) and the data file are checked before anything
runs: a bad key or value is one line naming it, a bad data file lists its row-level
problems; in both cases the command exits with status 2 and writes nothing. Outputs go
atomically into Hydra's run directory: posterior.nc (ArviZ InferenceData), summary.csv,
diagnostics.json, loo.json, predictions, figures and calibration.md.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from popsim.analysis import arviz_io
from popsim.analysis.calibration_groups import inference_groups
from popsim.app.outputs import staged_outputs
from popsim.app import preflight
from popsim.calibration.data import lab_columns, read_lab_data
from popsim.calibration.fit import calibrate_problem
from popsim.calibration.lab_schema import LabDataError, LabDataWarning
from popsim.calibration.problem import build_problem, likelihood_step_error
from popsim.calibration.spec import CalibrationSpecError
from popsim.dosing.regimen import RegimenError
from popsim.calibration.predict import (
    cohort_recovery, patient_recovery, pointwise_log_likelihood, posterior_predictive, visual_predictive_check,
)
from popsim.config.build import ConfigError
from popsim.config.calibrate import CalibrationPlan, build_calibration
from popsim.config.ranges import check_calibration_ranges
from popsim.plotting import calibration_figures as cf
from popsim.report.calibration import render_calibration_report
from popsim.units import DAYS_PER_MONTH

log = logging.getLogger("popsim.calibrate")
CONFIG_MODULE, CONFIG_NAME = "popsim.configs", "calibrate"
# Largest difference between the likelihood's predictions and a 4x finer step, in
# residual standard deviations, above which the run warns: a tenth of the within-man
# scatter shifts no observation's likelihood noticeably.
STEP_ERROR_WARNING = 0.1


# calibrate.yaml has no dataclass schema: its own keys are the valid ones, and these
# mappings take any key (checked by popsim.config.calibrate).
OPEN_KEYS = ("data.units", "model.residuals")
_PREFLIGHT: dict = {}


def _reference_schema() -> preflight.ReferenceSchema:
    cfg = compose(config_name=CONFIG_NAME, overrides=[])
    return preflight.ReferenceSchema(preflight.app_container(cfg), OPEN_KEYS)


def check_calibrate(argv: list[str]) -> preflight.Checked:
    """Check a popsim-calibrate command line and its data file before anything runs.

    Returns Checked(warnings, (plan, data)); raises preflight.Rejected with one line.
    """
    overrides, runs = preflight.split_overrides(argv)
    parsed = preflight.parse(overrides)
    if any(p.is_sweep_override() for p in parsed) or preflight.is_multirun(argv):
        raise preflight.Rejected("popsim-calibrate runs one calibration at a time; sweeps (-m, a,b) are not supported")
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        schema = _reference_schema()
        cfg = preflight.compose_checked(CONFIG_NAME, overrides, schema)
        try:
            container = OmegaConf.to_container(preflight.without_hydra(cfg), resolve=True)
        except OmegaConfBaseException as error:
            raise preflight.Rejected(preflight.explain_compose_error(error, overrides, schema)) from None
        unknown = schema.unknown(container)
        if unknown:
            raise preflight.Rejected(preflight.unknown_key_message(*unknown))
        if not runs:
            return preflight.Checked([])
        try:
            plan = build_calibration(container)
            warnings_found = check_calibration_ranges(container)
        except ConfigError as error:
            raise preflight.Rejected(preflight.one_line(error)) from None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", LabDataWarning)
            try:
                data = read_data(plan)
                build_problem(data, plan.spec)  # analytes without an error model, values <= 0 on a log scale, ...
            except LabDataError as error:
                raise preflight.Rejected(f"data.path: {error.brief()}") from None
            except (CalibrationSpecError, RegimenError, ValueError) as error:
                raise preflight.Rejected(preflight.one_line(error)) from None
        warnings_found += [str(w.message) for w in caught if issubclass(w.category, LabDataWarning)]
        preflight.check_output_dir(*preflight.output_dir_of(cfg, argv))
    return preflight.Checked(warnings_found, (plan, data))


def read_data(plan: CalibrationPlan):
    """The lab data of a plan; AGE and BMI are read when the file has them (optional)."""
    present = {c.strip().upper() for c in lab_columns(plan.data_path)}
    covariates = tuple(c for c in ("AGE", "BMI") if c in present)
    return read_lab_data(plan.data_path, time_unit=plan.time_unit, units=plan.units or None, covariates=covariates)


def _write(run_dir: Path, cfg: DictConfig, plan: CalibrationPlan, result, data, step_check: dict) -> dict:
    problem, posterior = result.problem, result.posterior
    t0 = time.perf_counter()
    y_rep = posterior_predictive(problem, plan.spec, posterior.draws, seed=plan.inference.seed)
    log_lik = pointwise_log_likelihood(problem, plan.spec, posterior.draws)
    additive = [a for a in problem.analytes if plan.spec.residual(a).model in ("additive", "combined")]
    groups = inference_groups(problem, posterior, y_rep, log_lik, additive_analytes=additive)
    population = ["theta_pop", "omega", "sigma"] + (["sigma_additive"] if additive else [])
    log.info("posterior predictive checks and recovery predictions ...")
    vpc = visual_predictive_check(problem, plan.spec, posterior.draws, result.predict,
                                  n_replicates=plan.vpc_replicates, seed=plan.inference.seed)
    recovery = patient_recovery(problem, plan.spec, posterior.draws, plan.thresholds_m_ml, plan.horizon_months,
                                plan.patient_draws)
    c = plan.cohort
    cohort = cohort_recovery(problem, plan.spec, posterior.draws, c.regimen, n_men=c.n_men, n_draws=c.draws,
                             threshold_m_ml=c.threshold_m_ml, horizon_months=plan.horizon_months,
                             age_years=c.age_years, bmi_kg_m2=c.bmi_kg_m2, seed=plan.inference.seed)
    prediction_s = time.perf_counter() - t0

    with staged_outputs(run_dir) as tmp:
        (tmp / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        attrs = {"created_by": "popsim-calibrate", "data_source": str(plan.data_path), "inference": posterior.method,
                 "arviz_version_at_write": arviz_io.arviz_version()}
        path = arviz_io.write_inference_data(groups, tmp / "posterior.nc", attrs=attrs)
        idata = arviz_io.load_inference_data(path)
        summary = arviz_io.summary(idata, population, diagnostics=posterior.method == "nuts")
        summary.to_csv(tmp / "summary.csv", float_format="%.6g")
        individual = arviz_io.summary(idata, ["theta"], diagnostics=posterior.method == "nuts")
        individual.to_csv(tmp / "summary_patients.csv", float_format="%.6g")
        try:
            loo = arviz_io.loo(idata)
        except Exception as error:  # noqa: BLE001 - LOO needs several draws; report why it is missing
            loo = {"error": str(error).splitlines()[0]}
        (tmp / "loo.json").write_text(json.dumps(loo, indent=2))
        ess_bulk_min = float(np.nanmin(summary["ess_bulk"])) if posterior.method == "nuts" else float("nan")
        sampling_s = posterior.timings_s.get("warmup_and_sampling", posterior.timings_s.get("svi", float("nan")))
        diagnostics = {
            "method": posterior.method, "chains": posterior.n_chains, "draws_per_chain": posterior.n_draws,
            "patients": problem.n_patients, "observations": problem.n_observations, "analytes": list(problem.analytes),
            "censored_observations": int(problem.observations.censored.sum()),
            "wall_time_s": round(result.wall_time_s, 1), "timings_s": {k: round(v, 1) for k, v in posterior.timings_s.items()},
            "prediction_time_s": round(prediction_s, 1),
            "gradient_evaluations": posterior.n_gradient_evaluations,
            "metric": posterior.metric, "parameterization": plan.spec.parameterization,
            "r_hat_max_population": float(np.nanmax(summary["r_hat"])) if posterior.method == "nuts" else None,
            "ess_bulk_min_population": ess_bulk_min if posterior.method == "nuts" else None,
            "ess_bulk_min_per_s": ess_bulk_min / result.wall_time_s if posterior.method == "nuts" else None,
            "divergences": int(posterior.sample_stats["diverging"].sum()) if "diverging" in posterior.sample_stats else None,
            "solver": {"dt_days": plan.spec.dt_days, "precision": plan.spec.precision, "step_check": step_check},
            "warnings": list(data.warnings),
        }
        (tmp / "diagnostics.json").write_text(json.dumps(diagnostics, indent=2, allow_nan=True))

        rows = []
        for thr, months in recovery["time_months"].items():
            for i, pid in enumerate(problem.ids):
                x = months[:, i]
                finite = x[np.isfinite(x)]
                q = unreached_quantiles(x, [0.05, 0.5, 0.95])
                rows.append({"patient_id": pid, "threshold_m_ml": thr,
                             "first_missed_dose_day": problem.first_missed_dose_day[i],
                             "median_months": q[1], "q5_months": q[0], "q95_months": q[2],
                             "p_recovered_within_12_months": (float(np.mean(np.nan_to_num(x, nan=np.inf) <= 12.0))
                                                              if plan.horizon_months >= 12 else float("nan")),
                             "p_recovered_within_horizon": float(finite.size / x.size)})
        patients = pd.DataFrame(rows).replace([np.inf], np.nan)
        patients.to_csv(tmp / "patient_recovery.csv", index=False, float_format="%.4g")
        q = np.percentile(cohort["fraction"], [5, 50, 95], axis=0)
        cohort_table = pd.DataFrame({"month": cohort["months"], "fraction_recovered_median": q[1],
                                     "fraction_recovered_q5": q[0], "fraction_recovered_q95": q[2]})
        cohort_table.to_csv(tmp / "cohort_recovery.csv", index=False, float_format="%.4g")
        figures = {}
        if plan.figures:
            (tmp / "figures").mkdir()
            scalars = {}
            for name in population:
                da = arviz_io.group(idata, "posterior")[name]
                for label in da[da.dims[-1]].values:
                    scalars[f"{name}[{label}]"] = da.sel({da.dims[-1]: label}).values
            pop_only = {k: v for k, v in scalars.items() if k.startswith(("theta_pop", "omega"))}
            o = problem.observations
            made = {
                "trace": lambda: cf.trace_plot(pop_only),
                "rank": lambda: cf.rank_plot(scalars),
                "pair": lambda: cf.pair_plot({k.split("[")[1].rstrip("]"): v for k, v in scalars.items()
                                              if k.startswith("theta_pop")},
                                             posterior.sample_stats.get("diverging")),
                "ppc": lambda: cf.ppc_plot(o.value, y_rep, o.analyte, problem.analytes, o.censored),
                "vpc": lambda: cf.vpc_plot(vpc.time_since_stop_days / DAYS_PER_MONTH, vpc.observed, vpc.simulated,
                                           o.analyte, problem.analytes, o.lloq, _bins(vpc.time_since_stop_days)),
                "patient_recovery": lambda: cf.patient_recovery_plot(
                    problem.ids, *(unreached_quantiles(recovery["time_months"][plan.thresholds_m_ml[0]], qq, axis=0)
                                   for qq in (0.5, 0.05, 0.95)),
                    plan.thresholds_m_ml[0], plan.horizon_months),
                "cohort_recovery": lambda: cf.cohort_recovery_plot(cohort["months"], cohort["fraction"],
                                                                   c.threshold_m_ml, c.label),
            }
            for name, make in made.items():
                fig = make()
                fig.savefig(tmp / "figures" / f"{name}.png", dpi=110)
                figures[name] = f"figures/{name}.png"
        report = render_calibration_report(plan, diagnostics, summary, loo, patients, cohort_table, cohort, figures)
        (tmp / "calibration.md").write_text(report)
    return diagnostics


def unreached_quantiles(x: np.ndarray, q, axis: int = 0) -> np.ndarray:
    """Quantiles of recovery times where NaN or inf means 'not reached within the horizon'.

    Such a time is larger than every reached one, so it sorts last; a quantile that falls
    among the unreached draws is inf. (numpy's linear interpolation between two infs
    computes inf - inf: the NaN and the RuntimeWarning a calibration run used to print.)
    """
    x = np.nan_to_num(np.asarray(x, float), nan=np.inf, posinf=np.inf)
    lower = np.quantile(x, q, axis=axis, method="lower")
    higher = np.quantile(x, q, axis=axis, method="higher")
    n = x.shape[axis]
    position = np.asarray(q, float) * (n - 1)
    weight = (position - np.floor(position)).reshape(np.shape(position) + (1,) * (lower.ndim - np.ndim(position)))
    reached = np.isfinite(higher)
    gap = np.where(reached, higher - np.where(reached, lower, 0.0), 0.0)
    return np.where(reached, lower + weight * gap, np.inf)


def _bins(time_since_stop_days: np.ndarray) -> np.ndarray:
    """VPC bins in months from the end of TRT: 3-month bins on TRT, monthly bins after it,
    centred on whole months (where scheduled visits fall)."""
    months = time_since_stop_days / DAYS_PER_MONTH
    if not np.isfinite(months).any():  # nobody stopped TRT in the data: no time axis to bin
        return np.array([-0.5, 0.5])
    lo, hi = np.floor(np.nanmin(months)), np.ceil(np.nanmax(months))
    before = np.arange(-0.5, lo - 3.0, -3.0)[::-1] if lo < 0 else np.array([-0.5])
    after = np.arange(0.5, hi + 1.5, 1.0)
    return np.unique(np.concatenate([before, after]))


@hydra.main(config_path="pkg://popsim.configs", config_name=CONFIG_NAME, version_base="1.3")
def _run(cfg: DictConfig) -> None:
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    plan, data = _PREFLIGHT["plan"], _PREFLIGHT["data"]
    if plan.spec.precision == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    log.info("%s: %d patients, %d observations; %s with %d chain(s) x %d draws, dt %.3g d",
             plan.data_path.name, data.n_patients, data.observations.value_canonical.size, plan.inference.method,
             plan.inference.chains if plan.inference.method == "nuts" else 1, plan.inference.samples, plan.spec.dt_days)
    problem = build_problem(data, plan.spec)
    step_check = likelihood_step_error(problem, plan.spec)
    level = logging.WARNING if step_check["max_error_in_residual_sd"] > STEP_ERROR_WARNING else logging.INFO
    log.log(level, "likelihood step %.4g d: predictions within %.3g residual sd of a 4x finer step (worst: %s at %s)%s",
            plan.spec.dt_days, step_check["max_error_in_residual_sd"], step_check["worst_analyte"],
            step_check["worst_case"], "" if level == logging.INFO else " -- lower solver.dt_days")
    result = calibrate_problem(problem, plan.spec, plan.inference)
    log.info("inference took %.1f s", result.wall_time_s)
    if result.posterior.metric.get("converged") is False:
        log.warning("laplace: no proper posterior mode was found (largest gradient %.3g after the Newton steps; "
                    "most likely a centred parameter's IIV sd collapsing, the centred funnel): do not use these draws; "
                    "use inference.method=nuts, or mark that parameter centred: false in model.estimated",
                    result.posterior.metric["largest_gradient_at_mode"])
    for flat in result.posterior.metric.get("flat_directions", []):
        log.warning("laplace: a direction curved only %.3g at the mode (%s): the Gaussian approximation is "
                    "unreliable along it and its draws are given a unit scale; check with inference.method=nuts",
                    flat["curvature"], ", ".join(flat["largest_loadings"]))
    diagnostics = _write(run_dir, cfg, plan, result, data, step_check)
    if diagnostics.get("r_hat_max_population") is not None:
        log.info("max r_hat (population) %.3f, min bulk ESS %.0f (%.2f per s), %d divergences",
                 diagnostics["r_hat_max_population"], diagnostics["ess_bulk_min_population"],
                 diagnostics["ess_bulk_min_per_s"], diagnostics["divergences"])
    print(f"popsim-calibrate: outputs written to {run_dir}")


def main() -> None:
    """Entry point of the ``popsim-calibrate`` command."""
    def run(payload) -> None:
        if payload is None:  # --help, --cfg: Hydra only prints
            _run()
            return
        _PREFLIGHT["plan"], _PREFLIGHT["data"] = payload
        _run()

    preflight.run_guarded("popsim-calibrate", check_calibrate, run)


if __name__ == "__main__":
    main()
