"""A run's outputs are complete or absent: staged, moved into place with summary.json last
(removed first when a folder is rewritten), and nothing is left when writing fails."""

import os

import pytest

from popsim.app.outputs import COMPLETE_MARKER, staged_outputs


def write(tmp, names):
    for name in names:
        (tmp / name).write_text(name)


def test_the_marker_goes_last_and_an_old_one_first(tmp_path, monkeypatch):
    run = tmp_path / "run"
    with staged_outputs(run) as tmp:
        write(tmp, ["config.yaml", COMPLETE_MARKER, "outcomes.parquet", "report.md"])
    events = []
    real_replace, real_unlink = os.replace, type(run).unlink

    def replace(src, dst):
        events.append(("move", os.path.basename(dst), (run / COMPLETE_MARKER).exists()))
        real_replace(src, dst)

    def unlink(self, *args, **kwargs):
        events.append(("remove", self.name, None))
        real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(type(run), "unlink", unlink)
    with staged_outputs(run) as tmp:
        write(tmp, ["report.md", COMPLETE_MARKER, "config.yaml", "outcomes.parquet"])
    assert events[0] == ("remove", COMPLETE_MARKER, None)
    moves = [e for e in events if e[0] == "move"]
    assert [m[1] for m in moves][-1] == COMPLETE_MARKER
    # While the other files were replaced, the folder did not claim to be complete.
    assert not any(marker_present for _, _, marker_present in moves)
    assert sorted(p.name for p in run.iterdir()) == sorted(["config.yaml", COMPLETE_MARKER, "outcomes.parquet",
                                                            "report.md"])


def test_a_failure_while_writing_leaves_the_previous_outputs(tmp_path):
    run = tmp_path / "run"
    with staged_outputs(run) as tmp:
        write(tmp, ["config.yaml", COMPLETE_MARKER])
    with pytest.raises(RuntimeError):
        with staged_outputs(run) as tmp:
            write(tmp, ["config.yaml"])
            raise RuntimeError("disk full")
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", COMPLETE_MARKER]


def test_kept_trajectories_carry_their_own_patients_failure_flags(tmp_path):
    """write_run_outputs finds each kept patient's row by id, whatever the table's order."""
    import numpy as np
    import xarray as xr
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from popsim.app.simulate import write_run_outputs
    from popsim.app.store import CONFIG_MODULE, CONFIG_NAME, register
    from popsim.config.build import build_run
    from popsim.outcomes.study import StudyResult

    register()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose(config_name=CONFIG_NAME, overrides=["population.size=4"])
    plan = build_run(OmegaConf.to_object(cfg))
    outcomes = {"patient_id": np.array([3, 1, 2, 0]), "failed": np.array([True, False, False, False]),
                "origin_day": np.array([400.0, 300.0, 200.0, 100.0]),
                "conc_ge_15_days": np.array([100.0, np.nan, 200.0, 300.0], np.float32),
                "conc_ge_15_observed": np.array([True, False, True, True])}
    times = np.arange(0.0, 21.0, 7.0)
    trajectories = {"total_testosterone_nmol_l": np.ones((2, times.size), np.float32)}
    result = StudyResult(outcomes, times, trajectories, np.array([1, 3]), 1100.0, 4)
    write_run_outputs(tmp_path / "run", cfg, plan, result, 1.0, make_figures=False, make_report=False)
    with xr.open_dataset(tmp_path / "run" / "trajectories.nc", engine="h5netcdf") as ds:
        assert ds["patient"].values.tolist() == [1, 3]
        assert ds["failed"].values.tolist() == [False, True]  # patient 3 failed (row 0), patient 1 did not
