"""A sweep on a real single-node SLURM cluster (hydra/launcher=slurm through submitit)
gives the same sweep summary and per-patient outcomes as the local launcher; a job that
fails at run time is named and the other jobs' results are kept; re-running the sweep
into its folder skips the finished jobs.

The cluster (munged, slurmctld, slurmd on localhost) is installed from the distribution's
packages and started by tests/slurm_cluster.sh; the test stops it. Marked ``cluster``:
run with ``make test-cluster`` (.ci/run does).
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.cluster

SCRIPT = Path(__file__).resolve().parent / "slurm_cluster.sh"
# A few hundred men per job, short horizons, no figures: each job takes seconds.
SMALL = ["population.size=300", "trt.duration_months=3", "output.trajectories=5", "output.figures=false",
         "output.progress=false"]
# Settings of configs/hydra/launcher/slurm.yaml that this one-node, GPU-less cluster
# cannot grant (it has 2 CPUs and no GPUs), in the form a user changes them.
SLURM = ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.gpus_per_node=null",
         "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2", "hydra.launcher.timeout_min=10"]
# Every bad value is refused before anything is submitted (the first test), so the job
# that fails does so for a reason only its run meets: its output folder cannot be created
# (a file stands at its path, as after a lost or full disk), like any job lost at run time.
BAD = "7"
BAD_LABEL = "outcomes.horizon_months=7"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """Environment of a running private SLURM cluster; stopped after the module."""
    started = time.perf_counter()
    install = subprocess.run(["bash", str(SCRIPT), "install"], capture_output=True, text=True, timeout=900)
    if install.returncode != 0:
        pytest.skip(f"SLURM cannot be installed here: {install.stderr.strip()[-500:]}")
    installed = time.perf_counter()
    state = tmp_path_factory.mktemp("slurm")
    start = subprocess.run(["bash", str(SCRIPT), "start", str(state)], capture_output=True, text=True, timeout=120)
    assert start.returncode == 0, start.stdout + start.stderr
    print(f"\nSLURM install step {installed - started:.1f} s, cluster start {time.perf_counter() - installed:.1f} s")
    env = dict(os.environ, JAX_PLATFORMS="cpu", SLURM_CONF=str(state / "slurm.conf"))
    try:
        yield env, state
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], timeout=120)


def popsim(args, cwd, env):
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "popsim.app.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)
    return proc, time.perf_counter() - started


def slurm_jobs(state):
    """Jobs the cluster ran, from its job completion log: (job id, name, state)."""
    log = state / "jobcomp.log"
    text = log.read_text() if log.exists() else ""
    return [(int(m["id"]), m["name"], m["state"])
            for m in re.finditer(r"JobId=(?P<id>\d+) .*?Name=(?P<name>\S+) JobState=(?P<state>\S+)", text)]


def job_dir(sweep_dir, value):
    (match,) = [p for p in sweep_dir.iterdir() if p.is_dir() and f"outcomes.horizon_months={value}," in p.name]
    return match


def block_job_folder(local_dir, cluster_dir, job_number, value):
    """Put a file where job ``job_number`` of the cluster sweep (horizon ``value``) will
    want its folder: Hydra names job folders ``<number>_<task overrides>``, the same for
    the local and the SLURM launcher."""
    template = job_dir(local_dir, "6").name.split("_", 1)[1]
    name = f"{job_number}_" + template.replace("outcomes.horizon_months=6,", f"outcomes.horizon_months={value},")
    cluster_dir.mkdir(parents=True, exist_ok=True)
    (cluster_dir / name).write_text("not a folder\n")
    return cluster_dir / name


def test_a_bad_value_is_rejected_before_anything_is_submitted(slurm, tmp_path):
    env, state = slurm
    before = slurm_jobs(state)
    proc, _ = popsim(["-m", *SMALL, "protocol=none,bogus", *SLURM, f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path, env)
    assert proc.returncode == 2 and "no config named 'bogus'" in proc.stderr
    assert not (tmp_path / "sweep").exists()
    squeue = subprocess.run(["squeue", "-h"], env=env, capture_output=True, text=True, check=True)
    assert squeue.stdout.strip() == "" and slurm_jobs(state) == before


def test_slurm_sweep_matches_the_local_sweep_and_names_the_failed_job(slurm, tmp_path):
    env, state = slurm
    local_dir, cluster_dir = tmp_path / "local", tmp_path / "slurm"
    local, local_s = popsim(["-m", *SMALL, "outcomes.horizon_months=6,9", f"hydra.sweep.dir={local_dir}"],
                            tmp_path, env)
    assert local.returncode == 0, local.stderr[-3000:]

    before = {job for job, _, _ in slurm_jobs(state)}
    # The failing job is the last: submitit's launcher collects results in order and raises
    # at the first failure, so the jobs before it have finished by then.
    blocked = block_job_folder(local_dir, cluster_dir, 2, BAD)
    proc, cluster_s = popsim(["-m", *SMALL, f"outcomes.horizon_months=6,9,{BAD}", *SLURM,
                              f"hydra.sweep.dir={cluster_dir}"], tmp_path, env)
    print(f"\nlocal sweep of 2 jobs {local_s:.1f} s; SLURM sweep of 3 jobs (2 CPUs) {cluster_s:.1f} s")
    # The failed job makes the command fail, names the job and its error, and keeps the rest.
    assert proc.returncode != 0
    assert "1 of 3 sweep jobs left no outputs" in proc.stderr and BAD_LABEL in proc.stderr
    assert f"hydra.sweep.dir={cluster_dir}" in proc.stderr
    report = (cluster_dir / "sweep_summary.md").read_text()
    assert "## Jobs without outputs" in report and BAD_LABEL in report

    # Every job ran as a SLURM job (job completion log, submitit's logs, the job's environment).
    ran = [(job, name, st) for job, name, st in slurm_jobs(state) if job not in before]
    assert len(ran) == 3 and all(name == "simulate" for _, name, _ in ran), ran
    assert sorted(st for _, _, st in ran) == ["COMPLETED", "COMPLETED", "FAILED"], ran
    logs = sorted((cluster_dir / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 3 and all("Starting with JobEnvironment" in p.read_text() for p in logs)
    # Each job shards its patients over the CPUs SLURM gave it (1), not the submit host's.
    assert sum(", 1 local cpu devices" in p.read_text() for p in logs) == 2
    assert blocked.is_file(), "the failed job left nothing in its place"

    # Same summary and the same men as the local launcher, for the jobs that finished.
    pd.testing.assert_frame_equal(pd.read_csv(cluster_dir / "sweep_summary.csv"),
                                  pd.read_csv(local_dir / "sweep_summary.csv"))
    for value in ("6", "9"):
        pd.testing.assert_frame_equal(pd.read_parquet(job_dir(cluster_dir, value) / "outcomes.parquet"),
                                      pd.read_parquet(job_dir(local_dir, value) / "outcomes.parquet"))

    # Re-running the same sweep into its folder skips the two finished jobs.
    finished = {v: (job_dir(cluster_dir, v) / "outcomes.parquet").stat().st_mtime_ns for v in ("6", "9")}
    again, again_s = popsim(["-m", *SMALL, f"outcomes.horizon_months=6,9,{BAD}", *SLURM,
                             f"hydra.sweep.dir={cluster_dir}"], tmp_path, env)
    print(f"re-run with 2 of 3 jobs finished {again_s:.1f} s")
    assert again.returncode != 0 and BAD_LABEL in again.stderr
    assert {v: (job_dir(cluster_dir, v) / "outcomes.parquet").stat().st_mtime_ns for v in finished} == finished
    logs = sorted((cluster_dir / ".submitit").glob("*/*_log.out"))
    skipped = [p for p in logs if "already complete" in p.read_text()]
    assert len(skipped) == 2
    pd.testing.assert_frame_equal(pd.read_csv(cluster_dir / "sweep_summary.csv"),
                                  pd.read_csv(local_dir / "sweep_summary.csv"))
