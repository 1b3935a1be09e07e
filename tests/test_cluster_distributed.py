"""One cohort across two JAX processes (jax.distributed, gloo collectives between CPU
processes on this machine): the ``popsim`` command started twice, as process 0 and 1 of 2,
writes the same per-patient outcomes and trajectories as one process, once, complete.

The two-process test is marked ``cluster``: run it with ``make test-cluster`` (.ci/run does).
"""

import os
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import xarray as xr

# A few hundred men: each process simulates 150 of them (both above the integrator's
# small-batch formulation, so the split changes no rounding).
SMALL = ["population.size=300", "trt.duration_months=3", "outcomes.horizon_months=6", "output.trajectories=200",
         "output.figures=false", "output.progress=false", "protocol=hcg"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(args):
    return [sys.executable, "-m", "popsim.app.cli", *SMALL, *args]


@pytest.mark.cluster
def test_two_processes_write_the_one_process_outcomes_once(tmp_path):
    # One CPU device per process, as for the single process: the test is about processes.
    base = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
    started = time.perf_counter()
    one = subprocess.run(command([f"hydra.run.dir={tmp_path}/one"]), cwd=tmp_path, env=base, capture_output=True,
                         text=True, timeout=600)
    one_s = time.perf_counter() - started
    assert one.returncode == 0, one.stderr[-3000:]

    address = f"127.0.0.1:{free_port()}"
    started = time.perf_counter()
    procs = [subprocess.Popen(command([f"hydra.run.dir={tmp_path}/two"]), cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env=dict(base, JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES="2",
                                       JAX_PROCESS_ID=str(rank)))
             for rank in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    two_s = time.perf_counter() - started
    print(f"\none process {one_s:.1f} s, two processes {two_s:.1f} s (300 men, 2 shared cores)")
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    # Process 0 ran the job and wrote the outputs; process 1 only simulated its block.
    assert f"outputs written to {tmp_path}/two" in outs[0][0] and "process 0 of 2" in outs[0][0]
    assert "outputs written" not in outs[1][0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]

    two = tmp_path / "two"
    assert not any(p.name.startswith(".staging") for p in two.iterdir())
    for name in ("config.yaml", "outcomes.parquet", "summary.json", "trajectories.nc", "report.md"):
        assert (two / name).is_file(), name
    a = pd.read_parquet(tmp_path / "one" / "outcomes.parquet")
    b = pd.read_parquet(two / "outcomes.parquet")
    assert len(b) == 300 and b["patient_id"].tolist() == list(range(300))
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    ta = xr.open_dataset(tmp_path / "one" / "trajectories.nc", engine="h5netcdf")
    tb = xr.open_dataset(two / "trajectories.nc", engine="h5netcdf")
    assert tb.sizes["patient"] == 200
    xr.testing.assert_identical(ta, tb)
    assert (tmp_path / "one" / "config.yaml").read_text() == (two / "config.yaml").read_text()


def test_patient_blocks_cover_the_cohort_once():
    from popsim.outcomes.distributed import patient_block

    for n in (1, 2, 299, 300, 301):
        for count in (1, 2, 3, 8):
            blocks = [patient_block(n, i, count) for i in range(count)]
            ids = np.concatenate([np.arange(*b) for b in blocks])
            assert ids.tolist() == list(range(n))
            assert max(b - a for a, b in blocks) - min(b - a for a, b in blocks) <= 1
