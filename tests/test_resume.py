"""A killed ``popsim`` run resumes from its completed chunks with bit-identical outcomes;
a resume with other settings is refused in one line and changes nothing."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from popsim.app import resume

ROOT = Path(__file__).resolve().parents[1]
# 12 chunks of 64 men: after the first (which includes compiling) each takes a fraction of
# a second, so the run, killed once two chunks are stored, is far from its end.
RUN = ["population.size=768", "solver.chunk_size=64", "trt.duration_months=3", "outcomes.horizon_months=8",
       "output.trajectories=70", "output.progress=false", "output.figures=false", "output.report=false"]
N_CHUNKS = 12


def popsim_command(args):
    return [sys.executable, "-m", "popsim.app.cli", *args]


def environment():
    return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))


def run_popsim(args):
    return subprocess.run(popsim_command(args), cwd=ROOT, env=environment(), capture_output=True, text=True,
                          timeout=900)


def chunk_files(run_dir):
    return sorted((run_dir / resume.CHUNKS).glob("chunk-*.npz"))


def killed_run(run_dir, chunks=2):
    """Start the run, SIGKILL it as soon as ``chunks`` chunks are stored."""
    proc = subprocess.Popen(popsim_command([*RUN, f"hydra.run.dir={run_dir}"]), cwd=ROOT, env=environment(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while len(chunk_files(run_dir)) < chunks:
            assert proc.poll() is None, f"popsim ended before storing {chunks} chunks"
            assert time.monotonic() < deadline, "no chunk stored in 10 minutes"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    return proc


def assert_same_table(a: pd.DataFrame, b: pd.DataFrame):
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    for name in a.columns:  # NaN in the same places, every other value bit for bit
        assert a[name].isna().equals(b[name].isna()), name


def test_a_killed_run_resumes_with_bit_identical_outcomes(tmp_path):
    reference = tmp_path / "reference"
    proc = run_popsim([*RUN, f"hydra.run.dir={reference}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (reference / resume.CHUNKS).exists()  # removed once the outputs are complete

    run_dir = tmp_path / "killed"
    killed = killed_run(run_dir)
    assert killed.returncode == -signal.SIGKILL
    assert not (run_dir / "summary.json").exists() and not (run_dir / "outcomes.parquet").exists()
    stored = chunk_files(run_dir)
    assert 2 <= len(stored) < N_CHUNKS
    assert (run_dir / resume.CHUNKS / resume.STUDY_FILE).is_file()
    stored[0].unlink()  # a hole: the resumed run simulates chunk 0 again and reuses the others
    reused = len(chunk_files(run_dir))

    # Other settings are refused: one line naming the key and what differs, nothing touched.
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")}
    refused = run_popsim([*RUN, "seed=1", f"resume={run_dir}"])
    assert refused.returncode == 2
    line = refused.stderr.strip()
    assert "\n" not in line and line.startswith("popsim: error: resume:") and "seed" in line, line
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")} == before

    proc = run_popsim([*RUN, f"resume={run_dir}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (run_dir / "simulate.log").read_text()
    assert f"{reused} completed chunks" in log
    # Its rate counts only what it simulated, not the chunks it read back.
    assert f"simulated {768 - 64 * reused} patients in" in log and f"{64 * reused} more read back" in log
    assert not (run_dir / resume.CHUNKS).exists()
    assert_same_table(pd.read_parquet(run_dir / "outcomes.parquet"), pd.read_parquet(reference / "outcomes.parquet"))
    import xarray as xr

    with xr.open_dataset(run_dir / "trajectories.nc", engine="h5netcdf") as a, \
            xr.open_dataset(reference / "trajectories.nc", engine="h5netcdf") as b:
        xr.testing.assert_identical(a.load(), b.load())

    # Resuming a complete run with its settings does nothing.
    again = run_popsim([*RUN, f"resume={run_dir}"])
    assert again.returncode == 0 and "skipped" in again.stdout, again.stderr[-2000:]


def compose_config(overrides):
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from popsim.app.store import CONFIG_MODULE, CONFIG_NAME, register

    register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            return compose(config_name=CONFIG_NAME, overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


def test_a_resume_with_other_settings_is_refused_in_one_line(tmp_path):
    from popsim.app import preflight

    run_dir = tmp_path / "run"
    store = resume.ChunkStore(run_dir, resume.study_config(compose_config(["population.size=40"])))
    store.start(resume=False)
    error = preflight.check(["population.size=40", f"resume={tmp_path / 'missing'}"])
    assert error.startswith("resume: '") and "is not a folder" in error
    assert preflight.check(["population.size=40", f"resume={run_dir}", "output.figures=false"]) is None
    error = preflight.check(["population.size=50", f"resume={run_dir}"])
    assert error.startswith("resume: the run in") and "population.size: the run has 40, given 50" in error, error
    assert "\n" not in error
    error = preflight.check(["-m", "population.size=40,50", f"resume={run_dir}"])
    assert error.startswith("resume: resumes one run, not a sweep")
    error = preflight.check(["population.size=40", f"resume={run_dir}", f"hydra.run.dir={tmp_path / 'other'}"])
    assert error.startswith("resume: ") and "different folders" in error
    assert sorted(p.name for p in (run_dir / resume.CHUNKS).iterdir()) == [resume.STUDY_FILE]
    assert not (tmp_path / "other").exists()
    # Chunks of another popsim version are not mixed in.
    older = resume.study_config(compose_config(["population.size=40"]))
    older["versions"]["popsim"] = "0.0.1"
    resume.ChunkStore(tmp_path / "older", older).start(resume=False)
    error = preflight.check(["population.size=40", f"resume={tmp_path / 'older'}"])
    assert 'versions.popsim: the run has "0.0.1"' in error, error


def test_the_fingerprint_ignores_output_only_keys():
    base = compose_config(["population.size=40"])
    output_only = compose_config(["population.size=40", "output.figures=false", "output.progress=false",
                                  "resume=somewhere"])
    other = compose_config(["population.size=40", "output.trajectories=3"])
    fp = resume.fingerprint
    assert fp(resume.study_config(base)) == fp(resume.study_config(output_only))
    assert fp(resume.study_config(base)) != fp(resume.study_config(other))


def test_the_progress_rate_of_a_resumed_run_counts_only_the_chunks_it_simulates(caplog):
    """A resumed million-man run once logged "42,416,394 patients/s": the chunks it read
    back were counted as simulated in no time. Chunks of 2 men: the first read back, the
    second simulated (its end starts the clock: it carries the compilation), the third
    simulated 0.05 s later."""
    import logging

    from popsim.app.progress import chunk_progress

    with caplog.at_level(logging.INFO, logger="popsim"), \
            chunk_progress(6, enabled=True, restored_chunk_starts=[0]) as on_chunk:
        on_chunk(2, 6)
        on_chunk(4, 6)
        time.sleep(0.05)
        on_chunk(6, 6)
    lines = [r.getMessage() for r in caplog.records if "/6 patients" in r.getMessage()]
    assert lines[0] == "2/6 patients (read back)" and lines[1] == "4/6 patients "
    rate = float(lines[2].split()[2].replace(",", ""))
    assert 0 < rate <= 2 / 0.05, lines[2]


def test_the_fingerprint_names_the_default_step_method(monkeypatch):
    """A run made before the default step method changed is not resumed with the new one
    (its config says only solver.method: null)."""
    import popsim

    cfg = compose_config(["population.size=40"])
    study = resume.study_config(cfg)
    assert study["solver"]["method"] == popsim.SolverSettings.method
    explicit = compose_config(["population.size=40", f"solver.method={popsim.SolverSettings.method}"])
    assert resume.fingerprint(study) == resume.fingerprint(resume.study_config(explicit))
    monkeypatch.setattr(popsim.SolverSettings, "method", "rk4")
    assert resume.fingerprint(resume.study_config(cfg)) != resume.fingerprint(study)
