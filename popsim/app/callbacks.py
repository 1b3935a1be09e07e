"""Hydra callback writing a sweep-level summary table when a multirun ends."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from popsim.analysis.survival import sweep_table
from popsim.app.outputs import staged_outputs
from popsim.plotting.figures import protocol_comparison
from popsim.report.markdown import render_sweep_report

log = logging.getLogger("popsim")


def write_sweep_summary(sweep_dir: Path) -> Path | None:
    """Collect every job's summary.json under ``sweep_dir`` into sweep_summary.csv/.md."""
    jobs = []
    for summary_file in sorted(sweep_dir.glob("*/summary.json")):
        overrides_file = summary_file.parent / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else []
        parsed = dict(o.split("=", 1) for o in overrides if "=" in o)
        jobs.append((parsed, json.loads(summary_file.read_text())))
    if not jobs:
        return None
    # Label jobs by what varies between them; settings common to every job are noise.
    keys = {k for overrides, _ in jobs for k in overrides}
    varying = {k for k in keys if len({overrides.get(k) for overrides, _ in jobs}) > 1} or keys
    jobs = [({k: v for k, v in overrides.items() if k in varying}, summary) for overrides, summary in jobs]
    table = sweep_table(jobs)
    with staged_outputs(sweep_dir) as tmp:
        table.to_csv(tmp / "sweep_summary.csv", index=False)
        figure_name = None
        try:
            fig = protocol_comparison(table)
            fig.savefig(tmp / "sweep_comparison.png", dpi=120, bbox_inches="tight")
            figure_name = "sweep_comparison.png"
        except ValueError as e:  # e.g. nothing to compare
            log.warning("no sweep comparison figure: %s", e)
        (tmp / "sweep_summary.md").write_text(render_sweep_report(table, figure_name))
    return sweep_dir / "sweep_summary.csv"


class SweepSummary(Callback):
    """Write sweep_summary.csv, sweep_summary.md and a comparison figure in the sweep dir."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        path = write_sweep_summary(Path(config.hydra.sweep.dir))
        if path is not None:
            print(f"popsim: sweep summary written to {path}")
