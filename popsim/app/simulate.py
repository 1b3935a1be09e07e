"""The ``popsim`` command: a virtual cohort through TRT, cessation and a protocol.

Hydra composes the configuration (configs/); popsim.app.preflight validates it before
anything runs; outputs are written atomically into Hydra's run directory.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from popsim.analysis.survival import study_summary
from popsim.analysis.trajectories import to_dataset
from popsim.app import preflight
from popsim.app.outputs import staged_outputs
from popsim.app.progress import chunk_progress
from popsim.app.store import CONFIG_NAME, register
from popsim.config.build import build_run
from popsim.outcomes.study import run_study
from popsim.plotting import figures
from popsim.report.markdown import render_report

log = logging.getLogger("popsim")


def write_run_outputs(run_dir: Path, cfg: DictConfig, plan, result, elapsed_s: float, make_figures: bool,
                      make_report: bool) -> None:
    """Write config, outcomes, summary, trajectories, figures and report (atomically)."""
    table = pd.DataFrame(result.outcomes)
    summary = study_summary(table, months=tuple(plan.info["report_months"]))
    summary["run"] = {**plan.info, "elapsed_s": round(elapsed_s, 2), "simulated_days": result.simulation_days,
                      "patients_per_s": round(len(table) / max(elapsed_s, 1e-9), 1)}
    with staged_outputs(run_dir) as tmp:
        (tmp / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        table.to_parquet(tmp / "outcomes.parquet", index=False)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False))
        if result.trajectories:
            failed = table.set_index("patient_id").loc[result.trajectory_patient_ids, "failed"].to_numpy()
            ds = to_dataset(result.trajectories, failed, result.trajectory_patient_ids, result.trajectory_times_days,
                            attrs={"protocol": plan.info["protocol"], "seed": plan.info["seed"]})
            ds.to_netcdf(tmp / "trajectories.nc", engine="h5netcdf")
        figure_paths = {}
        if make_figures:
            (tmp / "figures").mkdir()
            endpoint = plan.info["primary_endpoint"]
            made = {
                "km_by_duration": lambda: figures.km_curves(table, endpoint, "latent", stratify_by="trt_duration"),
                "km_sampled_by_duration": lambda: figures.km_curves(table, endpoint, "sampled", stratify_by="trt_duration"),
                "km_by_age": lambda: figures.km_curves(table, endpoint, "latent", stratify_by="age"),
                "recovery_vs_duration": lambda: figures.recovery_probability_vs(table, endpoint, "latent", by="trt_duration"),
                "recovery_vs_age": lambda: figures.recovery_probability_vs(table, endpoint, "latent", by="age"),
                "suppression_depth": lambda: figures.suppression_depth(table),
            }
            if result.trajectories:
                origin = table.set_index("patient_id").loc[result.trajectory_patient_ids, "origin_day"].to_numpy()
                made["hormone_bands"] = lambda: figures.hormone_bands(result.trajectory_times_days, result.trajectories,
                                                                      origin_days=origin)
            for name, make in made.items():
                fig = make()
                fig.savefig(tmp / "figures" / f"{name}.png", dpi=120, bbox_inches="tight")
                figure_paths[name] = f"figures/{name}.png"
        if make_report:
            (tmp / "report.md").write_text(render_report(summary, figure_paths, plan.info))


@hydra.main(config_path="pkg://popsim.configs", config_name=CONFIG_NAME, version_base="1.3")
def _run(cfg: DictConfig) -> float | None:
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    typed = OmegaConf.to_object(cfg)
    plan = build_run(typed)
    if plan.study.settings.precision == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    log.info("cohort of %d, protocol %s, seed %d, dt %.4f d, %s", plan.study.n_patients, plan.info["protocol"],
             plan.study.seed, plan.study.settings.dt_days, plan.study.settings.precision)
    started = time.perf_counter()
    with chunk_progress(plan.study.n_patients, enabled=typed.output.progress) as on_chunk:
        result = run_study(plan.design, plan.study, on_chunk=on_chunk)
    elapsed = time.perf_counter() - started
    n_failed = int(np.sum(result.outcomes["failed"]))
    log.info("simulated %d patients in %.1f s (%.0f patients/s); %d numerical failures", plan.study.n_patients,
             elapsed, plan.study.n_patients / elapsed, n_failed)
    write_run_outputs(run_dir, cfg, plan, result, elapsed, typed.output.figures, typed.output.report)
    print(f"popsim: outputs written to {run_dir}")
    return None


def main() -> None:
    """Entry point of the ``popsim`` command."""
    register()
    preflight.run_guarded("popsim", preflight.check_popsim, lambda _: _run())


if __name__ == "__main__":
    main()
