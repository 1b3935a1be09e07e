"""The popsim command: configs compose and build, bad overrides fail cleanly, a tiny run
and a tiny sweep write every output."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import xarray as xr
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from popsim.app import preflight
from popsim.app.store import CONFIG_MODULE, CONFIG_NAME, register
from popsim.config.build import build_run

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = ["population.size=40", "trt.duration_months=3", "outcomes.horizon_months=8", "output.trajectories=5",
        "solver.chunk_size=64", "output.progress=false"]


def compose_config(overrides):
    register()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return compose(config_name=CONFIG_NAME, overrides=overrides)


@pytest.mark.parametrize("group", ["protocol", "population", "trt", "solver", "outcomes", "output"])
def test_every_group_option_composes_and_builds(group):
    for path in sorted((CONFIGS / group).glob("*.yaml")):
        cfg = compose_config([f"{group}={path.stem}"])
        plan = build_run(OmegaConf.to_object(cfg))
        assert plan.study.n_patients > 0, path


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml")))
def test_every_experiment_composes_and_builds(experiment):
    plan = build_run(OmegaConf.to_object(compose_config([f"+experiment={experiment}"])))
    plan.design.validate()


def test_gonadorelin_protocols_refine_the_step():
    plan = build_run(OmegaConf.to_object(compose_config(["protocol=gonadorelin_clinic"])))
    assert plan.study.settings.dt_days <= 1 / 48 + 1e-9


@pytest.mark.parametrize("override,expected", [
    ("population.size=-5", "population.size must be a positive integer"),
    ("trt.ester=unknown", "valid values are ['enanthate', 'cypionate', 'undecanoate', 'gel', 'mixed']"),
    ("protocol=nonexistent", "protocol: no config named 'nonexistent'; valid values are ["),
    ("population.sizee=10", "population.sizee: unknown key; valid keys under population are ['size'"),
    ("population.size=abc", "could not be converted to Integer"),
    ("outcomes.origin=yesterday", "valid values are ['first_missed_dose', 'last_dose', 'protocol_start']"),
])
def test_bad_overrides_get_one_line_errors(override, expected):
    error = preflight.check([override])
    assert error is not None and expected in error and "\n" not in error


def test_a_bad_value_inside_a_sweep_is_named():
    error = preflight.check(["-m", "protocol=none,hcg,bogus"])
    assert "no config named 'bogus'" in error


def run_cli(args, cwd):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "popsim.app.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_bad_override_exits_nonzero_and_writes_nothing(tmp_path):
    proc = run_cli(["population.size=-5", f"hydra.run.dir={tmp_path}/run"], tmp_path)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "population.size" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_tiny_run_writes_every_output(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli([*TINY, "protocol=hcg", f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert str(run_dir) in proc.stdout
    for name in ("config.yaml", "outcomes.parquet", "summary.json", "trajectories.nc", "report.md"):
        assert (run_dir / name).is_file(), name
    assert len(list((run_dir / "figures").glob("*.png"))) >= 5
    table = pd.read_parquet(run_dir / "outcomes.parquet")
    assert len(table) == 40 and {"patient_id", "age_years", "trt_product", "conc_ge_15_days",
                                 "conc_ge_15_observed"} <= set(table.columns)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["run"]["protocol"] == "hcg"
    ds = xr.open_dataset(run_dir / "trajectories.nc", engine="h5netcdf")
    assert ds.sizes["patient"] == 5 and ds["total_testosterone"].attrs["units"] == "nmol/L"
    assert not any(p.name.startswith(".staging") for p in run_dir.iterdir())


@pytest.mark.slow
def test_tiny_sweep_writes_a_sweep_summary(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run_cli(["-m", *TINY, "protocol=none,hcg", f"hydra.sweep.dir={sweep_dir}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_csv(sweep_dir / "sweep_summary.csv")
    assert len(table) == 2


def test_a_sweep_drops_compiled_code_before_the_process_nears_the_mapping_limit(tmp_path, monkeypatch):
    """The jobs of a sweep run one after another in one process, each compiling its own
    programs (about 1,000 memory mappings each); past the kernel's limit on mappings XLA
    aborts the process, so each job's end drops the compiled code once the process holds
    more than 30 % of the limit, and leaves it alone below."""
    import jax
    from hydra.core.utils import JobReturn, JobStatus

    from popsim import devices
    from popsim.app.callbacks import SweepSummary

    if devices.memory_mapping_count() is None:
        pytest.skip("this OS does not report the process's memory mappings")
    double = jax.jit(lambda x: 2.0 * x)
    double(1.0)
    job = OmegaConf.create({"hydra": {"runtime": {"output_dir": str(tmp_path)}}})
    done = JobReturn(status=JobStatus.COMPLETED)
    SweepSummary().on_job_end(job, done)
    assert double._cache_size() == 1  # far below the limit: kept
    monkeypatch.setattr(devices, "max_memory_mappings", lambda: 100)
    SweepSummary().on_job_end(job, done)
    assert double._cache_size() == 0
