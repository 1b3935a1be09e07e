"""The ``popsim`` command: a virtual cohort through TRT, cessation and a protocol.

Hydra composes the configuration (configs/); popsim.app.preflight validates it before
anything runs; outputs are written atomically into Hydra's run directory, and a run
directory that already holds the complete outputs of the same configuration is left as it
is (so re-running an interrupted sweep into its folder runs only the unfinished jobs).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import hydra
import jax
import numpy as np
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from popsim.analysis.survival import study_summary
from popsim.analysis.trajectories import to_dataset
from popsim.app import preflight
from popsim.app.callbacks import finish_sweeps
from popsim.app.outputs import COMPLETE_MARKER, staged_outputs
from popsim.app.progress import chunk_progress
from popsim.app.resume import ChunkStore, study_config
from popsim.app.store import CONFIG_MODULE, CONFIG_NAME, register
from popsim.config.build import build_run
from popsim.outcomes import distributed
from popsim.outcomes.study import run_study
from popsim.plotting import figures
from popsim.report.markdown import render_report

log = logging.getLogger("popsim")


def write_run_outputs(run_dir: Path, cfg: DictConfig, plan, result, elapsed_s: float, make_figures: bool,
                      make_report: bool) -> None:
    """Write config, outcomes, summary, trajectories, figures and report (atomically)."""
    table = pd.DataFrame(result.outcomes, copy=False)  # shares the columns: a million men are not held twice
    # Rows of the men whose trajectories are kept (a lookup, not a re-indexed copy of the table).
    kept_rows = pd.Index(table["patient_id"]).get_indexer(result.trajectory_patient_ids)
    if (kept_rows < 0).any():
        raise ValueError("the kept trajectories name patients that are not in the outcome table")
    summary = study_summary(table, months=tuple(plan.info["report_months"]))
    summary["run"] = {**plan.info, "elapsed_s": round(elapsed_s, 2), "simulated_days": result.simulation_days,
                      "patients_per_s": round(len(table) / max(elapsed_s, 1e-9), 1)}
    with staged_outputs(run_dir) as tmp:
        (tmp / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        table.to_parquet(tmp / "outcomes.parquet", index=False)
        (tmp / COMPLETE_MARKER).write_text(json.dumps(summary, indent=2, allow_nan=False))
        if result.trajectories:
            failed = table["failed"].to_numpy()[kept_rows]
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
                origin = table["origin_day"].to_numpy()[kept_rows]
                made["hormone_bands"] = lambda: figures.hormone_bands(result.trajectory_times_days, result.trajectories,
                                                                      origin_days=origin)
            for name, make in made.items():
                fig = make()
                fig.savefig(tmp / "figures" / f"{name}.png", dpi=120, bbox_inches="tight")
                figure_paths[name] = f"figures/{name}.png"
        if make_report:
            (tmp / "report.md").write_text(render_report(summary, figure_paths, plan.info))


def already_done(run_dir: Path, cfg: DictConfig) -> bool:
    """Whether ``run_dir`` holds the complete outputs of a run of exactly ``cfg`` (whether
    or not either was resumed)."""
    config = run_dir / "config.yaml"
    if not ((run_dir / COMPLETE_MARKER).is_file() and config.is_file()):
        return False
    stored, given = OmegaConf.load(config), OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    for c in (stored, given):
        c.pop("resume", None)
    return OmegaConf.to_yaml(stored) == OmegaConf.to_yaml(given)


@hydra.main(config_path="pkg://popsim.configs", config_name=CONFIG_NAME, version_base="1.3")
def _run(cfg: DictConfig) -> float | None:
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if _skip(already_done(run_dir, cfg)):
        log.info("%s already holds the complete outputs of this configuration: skipped (delete it to run again)",
                 run_dir)
        print(f"popsim: outputs already complete in {run_dir}, skipped")
        return None
    typed = OmegaConf.to_object(cfg)
    plan = build_run(typed)
    if plan.study.settings.precision == "float64":
        jax.config.update("jax_enable_x64", True)
    plan.info.setdefault("population", HydraConfig.get().runtime.choices.get("population"))
    log.info("cohort of %d, protocol %s, seed %d, dt %.4f d, %s, %d local %s devices", plan.study.n_patients,
             plan.info["protocol"], plan.study.seed, plan.study.settings.dt_days, plan.study.settings.precision,
             jax.local_device_count(), jax.default_backend())
    started = time.perf_counter()
    # A single-process run stores each chunk as it completes, so that a killed run can resume
    # (resume=<run dir>) and read its completed chunks back; several processes store none.
    store = ChunkStore(run_dir, study_config(cfg)) if jax.process_count() == 1 else None
    if store is not None:
        store.start(resume=typed.resume is not None)
    completed = store.completed() if store is not None and typed.resume is not None else {}
    with chunk_progress(plan.study.n_patients, enabled=typed.output.progress,
                        restored_chunk_starts=completed.keys()) as on_chunk:
        if store is None:
            log.info("process 0 of %d: the other processes simulate their blocks of the cohort", jax.process_count())
            if typed.resume is not None:
                log.warning("resume: chunks are not stored across several processes; simulating every patient")
            result = distributed.run_study_across_processes(plan.design, plan.study, on_chunk=on_chunk)
        else:
            if typed.resume is not None:
                log.info("resuming %s: %d completed chunks of %d patients found", run_dir, len(completed),
                         plan.study.settings.chunk_size)
            result = run_study(plan.design, plan.study, on_chunk=on_chunk, completed_chunks=completed,
                               on_chunk_result=store.save)
    elapsed = time.perf_counter() - started
    n_failed = int(np.sum(result.outcomes["failed"]))
    read_back = sum(int(np.size(c.outcomes.get("patient_id"))) for c in completed.values())
    completed.clear()  # the study's outcome table holds them now: not kept twice through the outcome stage
    log.info("simulated %d patients in %.1f s (%.0f patients/s)%s; %d numerical failures",
             plan.study.n_patients - read_back, elapsed, (plan.study.n_patients - read_back) / elapsed,
             f", {read_back} more read back from completed chunks" if read_back else "", n_failed)
    write_run_outputs(run_dir, cfg, plan, result, elapsed, typed.output.figures, typed.output.report)
    if store is not None:
        store.remove()  # the outputs are complete: the chunks are no longer needed
    print(f"popsim: outputs written to {run_dir}")
    return None


def _skip(done: bool) -> bool:
    """Whether to skip the run; across processes, process 0's answer (it owns the outputs)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return bool(multihost_utils.broadcast_one_to_all(np.int32(done)))
    return done


def _worker(argv: list[str]) -> None:
    """Process 1.. of a cohort across processes: simulate this process's block of patients
    and hand it to process 0, which runs the Hydra job and writes the outputs (once)."""
    from hydra import compose, initialize_config_module

    overrides, _ = preflight.split_overrides(argv)
    task = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]  # the run dir etc. are process 0's
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose(config_name=CONFIG_NAME, overrides=task)
    if _skip(False):
        return
    plan = build_run(OmegaConf.to_object(cfg))
    if plan.study.settings.precision == "float64":
        jax.config.update("jax_enable_x64", True)
    distributed.run_study_across_processes(plan.design, plan.study)


def main() -> None:
    """Entry point of the ``popsim`` command."""
    register()
    argv = preflight.resume_argv(sys.argv[1:])
    sys.argv[1:] = argv  # Hydra reads sys.argv: a resumed run writes into the folder it resumes
    across = distributed.requested()
    if across:
        distributed.initialize()  # before any JAX computation, the checks' included
        if {"-m", "--multirun"} & set(argv):
            print("popsim: error: a sweep (-m) cannot run across several processes: run one cohort per command, "
                  "or sweep with hydra/launcher=slurm", file=sys.stderr)
            sys.exit(2)

    def run(_checked) -> None:
        if across and not distributed.is_writer():
            _worker(argv)
            return
        try:
            _run()
        finally:
            finish_sweeps()  # a sweep with a failed job still summarises the others and names it

    preflight.run_guarded("popsim", preflight.check_popsim, run, argv)


if __name__ == "__main__":
    main()
