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
