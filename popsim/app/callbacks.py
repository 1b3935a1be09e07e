"""Hydra callback writing a sweep-level summary table when a multirun ends, and naming the
jobs of a sweep that left no outputs (failed, killed by the cluster, never started)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import yaml
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from popsim.analysis.survival import sweep_table
from popsim.app.outputs import COMPLETE_MARKER, staged_outputs
from popsim.devices import release_compiled_code_near_the_mapping_limit
from popsim.plotting.figures import protocol_comparison
from popsim.report.markdown import render_sweep_report

log = logging.getLogger("popsim")

ERROR_FILE = "error.txt"
# Sweeps started in this process whose summary is not written yet: a failed job makes
# Hydra's sweeper raise before on_multirun_end, and popsim.app.simulate.main then calls
# finish_sweeps() so that the other jobs' results are still summarised.
_open_sweeps: list[Path] = []


def expected_jobs(sweep_dir: Path) -> list[list[str]] | None:
    """The override list of every job of the sweep in ``sweep_dir`` (from multirun.yaml,
    expanded as Hydra's basic sweeper does), or None if it cannot be read."""
    try:
        cfg = OmegaConf.load(sweep_dir / "multirun.yaml")
        task = list(OmegaConf.to_container(cfg.hydra.overrides.task, resolve=False))
        params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
        arguments = [f"{k}={v}" for k, v in params.items()] + task
        parsed = OverridesParser.create().parse_overrides(arguments)
        return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    except Exception:  # noqa: BLE001 - another sweeper, or no multirun.yaml: list what is there
        return None


def _job_label(overrides: list[str], varying: set[str]) -> dict[str, str]:
    parsed = dict(o.split("=", 1) for o in overrides if "=" in o)
    return {k: v for k, v in parsed.items() if k in varying}


def write_sweep_summary(sweep_dir: Path) -> tuple[Path | None, list[str]]:
    """Collect every complete job's summary.json under ``sweep_dir`` into
    sweep_summary.csv/.md (and a comparison figure).

    Returns:
        (path of sweep_summary.csv or None when no job finished, labels of the jobs of the
        sweep without complete outputs, each with the first line of its error if known).
    """
    complete, found = [], {}
    for overrides_file in sorted(sweep_dir.glob("*/.hydra/overrides.yaml")):
        job_dir = overrides_file.parent.parent
        overrides = yaml.safe_load(overrides_file.read_text()) or []
        found[tuple(sorted(overrides))] = job_dir
        if (job_dir / COMPLETE_MARKER).is_file():
            complete.append((overrides, json.loads((job_dir / COMPLETE_MARKER).read_text())))
    expected = expected_jobs(sweep_dir)
    jobs = expected or [list(k) for k in found]
    if expected:  # a folder re-used for another sweep: only this sweep's jobs
        wanted = {tuple(sorted(o)) for o in expected}
        complete = [(o, s) for o, s in complete if tuple(sorted(o)) in wanted]
    done = {tuple(sorted(o)) for o, _ in complete}
    # Label jobs by what varies between them; settings common to every job are noise.
    parsed = [dict(o.split("=", 1) for o in overrides if "=" in o) for overrides in jobs]
    keys = {k for p in parsed for k in p}
    varying = {k for k in keys if len({p.get(k) for p in parsed}) > 1} or keys
    missing = []
    for overrides in jobs:
        key = tuple(sorted(overrides))
        if key in done:
            continue
        label = ", ".join(f"{k}={v}" for k, v in _job_label(overrides, varying).items()) or "baseline"
        job_dir = found.get(key)
        error = job_dir / ERROR_FILE if job_dir is not None else None
        if error is not None and error.is_file():
            reason = error.read_text().strip().splitlines()[0] if error.read_text().strip() else "failed"
            missing.append(f"{label} ({reason}; {job_dir})")
        elif job_dir is not None:
            missing.append(f"{label} (no outputs: stopped before it finished; log in {job_dir})")
        else:
            missing.append(f"{label} (never started)")
    if not complete:
        return None, missing
    table = sweep_table([(_job_label(o, varying), s) for o, s in complete])
    with staged_outputs(sweep_dir) as tmp:
        table.to_csv(tmp / "sweep_summary.csv", index=False)
        figure_name = None
        try:
            fig = protocol_comparison(table)
            fig.savefig(tmp / "sweep_comparison.png", dpi=120, bbox_inches="tight")
            figure_name = "sweep_comparison.png"
        except ValueError as e:  # e.g. nothing to compare
            log.warning("no sweep comparison figure: %s", e)
        report = render_sweep_report(table, figure_name)
        if missing:
            report += ("\n## Jobs without outputs\n\n" + "".join(f"- {m}\n" for m in missing)
                       + "\nRe-running the same command with `hydra.sweep.dir` set to this folder runs only these "
                         "jobs: the finished ones are skipped.\n")
        (tmp / "sweep_summary.md").write_text(report)
    return sweep_dir / "sweep_summary.csv", missing


def _report(sweep_dir: Path) -> None:
    path, missing = write_sweep_summary(sweep_dir)
    n_jobs = len(expected_jobs(sweep_dir) or []) or None
    if missing:
        of = f" of {n_jobs}" if n_jobs else ""
        print(f"popsim: {len(missing)}{of} sweep jobs left no outputs:", file=sys.stderr)
        for m in missing:
            print(f"popsim:   {m}", file=sys.stderr)
        print(f"popsim: re-run the same command with hydra.sweep.dir={sweep_dir} to run only those jobs",
              file=sys.stderr)
    if path is not None:
        print(f"popsim: sweep summary written to {path}")


def finish_sweeps() -> None:
    """Summarise the sweeps of this process that ended without on_multirun_end (a job
    failed): the finished jobs' results are kept and the failed ones named."""
    while _open_sweeps:
        _report(_open_sweeps.pop())


class SweepSummary(Callback):
    """Write sweep_summary.csv, sweep_summary.md and a comparison figure in the sweep dir;
    record why a job failed in its folder (error.txt)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _open_sweeps.append(Path(config.hydra.sweep.dir))

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        job_dir = Path(config.hydra.runtime.output_dir)
        error = job_dir / ERROR_FILE
        if job_return.status == JobStatus.FAILED:
            e = job_return._return_value  # the exception (return_value would raise it)
            job_dir.mkdir(parents=True, exist_ok=True)
            error.write_text(f"{type(e).__name__}: {e}\n")
        elif error.exists():
            error.unlink()
        # The jobs of a sweep run one after another in this process, each compiling its own
        # programs: drop them before the process nears the kernel's limit on memory mappings.
        release_compiled_code_near_the_mapping_limit()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir in _open_sweeps:
            _open_sweeps.remove(sweep_dir)
        _report(sweep_dir)
