#!/usr/bin/env python
"""Peak memory and time of ``popsim``'s outcome stage on a million-row cohort.

After the simulation, ``popsim`` runs its outcome stage once over every man of the cohort
(popsim.app.simulate.write_run_outputs: the outcome table, study_summary's Kaplan-Meier
curves, strata and Cox models, outcomes.parquet, summary.json, figures and report). Issue
#16 asks for a million men in < 4 GiB of peak RSS, and a million men take ~1.7 h to simulate
on 2 cores, so this benchmark:

1. simulates ``--simulate`` men of the default cohort with the default configuration (one
   chunk, in this process, so that what JAX holds after simulating counts in the peak);
2. repeats their outcome rows up to ``--rows`` men, patient ids renumbered, and moves every
   latent event time that is neither at the origin nor censored by up to 0.05 day, so that
   the times are as distinct as a real cohort's (Kaplan-Meier tables, plots and lifelines'
   Cox cost more with more distinct times; repeated times would flatter the stage). The
   statistics are those of the simulated men; only the size changes;
3. runs the outcome stage on them into a temporary folder, and reports the process's RSS
   before it, the peak RSS of the whole process (``ru_maxrss``, the figure that the 4 GiB
   target is about) and the stage's wall time.

    python benchmarks/bench_outcome_stage.py                       # a million rows, ~3 min on 2 cores
    python benchmarks/bench_outcome_stage.py --rows 200000 --out /tmp/bench

Results go to ``benchmarks/results/outcome-stage-<host>-<YYYYMMDD-HHMMSS>.json`` and ``.md``
(or ``--out DIR``), with the hardware they ran on.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

TARGET_GIB = 4.0


def _rss_mib() -> float:
    """Current resident set size of this process, MiB (Linux; NaN elsewhere)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def _peak_rss_mib() -> float:
    """Peak RSS of this process so far, MiB (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(rows: int, simulate: int) -> dict:
    """Simulate ``simulate`` men, repeat them to ``rows`` and time the outcome stage."""
    import numpy as np
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from popsim.app.simulate import write_run_outputs
    from popsim.app.store import CONFIG_MODULE, CONFIG_NAME, register
    from popsim.config.build import build_run
    from popsim.outcomes.study import StudyResult, run_study

    register()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose(config_name=CONFIG_NAME, overrides=[f"population.size={rows}", "output.trajectories=0",
                                                          "output.progress=false"])
    plan = build_run(OmegaConf.to_object(cfg))
    started = time.perf_counter()
    simulated = run_study(plan.design, dataclasses.replace(plan.study, n_patients=simulate, n_trajectories=0))
    simulate_s = time.perf_counter() - started
    reps = -(-rows // simulate)
    outcomes = {k: np.tile(v, reps)[:rows] for k, v in simulated.outcomes.items()}
    outcomes["patient_id"] = np.arange(rows, dtype=simulated.outcomes["patient_id"].dtype)
    rng = np.random.default_rng(0)
    for name, values in outcomes.items():  # event times made distinct (monthly samples stay monthly)
        if name.endswith("_days") and not name.startswith(("sampled_", "trt_")):
            inner = np.isfinite(values) & (values > 0) & (values < np.nanmax(values))
            values[inner] += rng.uniform(-0.05, 0.05, int(inner.sum())).astype(values.dtype)
    distinct = int(np.unique(outcomes["conc_ge_15_days"]).size) if "conc_ge_15_days" in outcomes else None
    table_mib = sum(v.nbytes for v in outcomes.values()) / 2**20
    result = StudyResult(outcomes, np.zeros(0), {}, np.zeros(0, np.int64), simulated.simulation_days, rows)
    del simulated
    rss_before, peak_before = _rss_mib(), _peak_rss_mib()
    with tempfile.TemporaryDirectory(prefix="outcome-stage-") as tmp:
        started = time.perf_counter()
        write_run_outputs(Path(tmp), cfg, plan, result, simulate_s, make_figures=True, make_report=True)
        stage_s = time.perf_counter() - started
        parquet_mib = (Path(tmp) / "outcomes.parquet").stat().st_size / 2**20
    peak = _peak_rss_mib()
    return {"rows": rows, "simulated_men": simulate, "columns": len(outcomes), "simulate_s": round(simulate_s, 1),
            "outcome_table_mib": round(table_mib, 1), "outcomes_parquet_mib": round(parquet_mib, 1),
            "distinct_conc_ge_15_days": distinct, "rss_before_stage_mib": round(rss_before, 1),
            "peak_rss_before_stage_mib": round(peak_before, 1), "stage_wall_s": round(stage_s, 1),
            "peak_rss_mib": round(peak, 1), "target_gib": TARGET_GIB,
            "peak_over_target": round(peak / (TARGET_GIB * 1024.0), 3)}


def markdown(report: dict) -> str:
    r, hw = report["result"], report["hardware"]
    return "\n".join([
        f"# popsim outcome stage, {r['rows']:,} men ({report['date']})", "",
        f"Hardware: {hw.get('cpu_model')} ({hw.get('cores_available')} cores available), "
        f"{hw.get('memory_gb', '?')} GB; JAX backend {hw.get('jax_backend')}.", "",
        "| rows | columns | outcome table | RSS before the stage | stage wall time | peak RSS (process) | "
        "peak / 4 GiB target |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {r['rows']:,} | {r['columns']} | {r['outcome_table_mib']:,.0f} MiB | {r['rss_before_stage_mib']:,.0f} MiB | "
        f"{r['stage_wall_s']:.1f} s | {r['peak_rss_mib']:,.0f} MiB | {r['peak_over_target']:.2f} |", "",
        f"The rows repeat the outcomes of {r['simulated_men']:,} simulated men of the default cohort "
        f"(simulated in {r['simulate_s']:.0f} s in the same process), latent event times moved by up to "
        f"0.05 day ({r['distinct_conc_ge_15_days']:,} distinct times to 15 M/mL); outcomes.parquet was "
        f"{r['outcomes_parquet_mib']:,.0f} MiB. Peak RSS before the stage (simulation and set-up): "
        f"{r['peak_rss_before_stage_mib']:,.0f} MiB.", ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="men in the outcome table (default 1,000,000)")
    parser.add_argument("--simulate", type=int, default=2048, help="men simulated and repeated (default 2048)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="folder of the results")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.simulate < 1:
        parser.error("--rows and --simulate must be positive integers")
    logging.basicConfig(level=logging.WARNING)
    from run import hardware_block

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    hardware = hardware_block()  # before the run: its load average is the machine's, not this run's
    result = measure(args.rows, min(args.simulate, args.rows))
    report = {"benchmark": "outcome_stage", "date": stamp, "hardware": hardware, "result": result}
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"outcome-stage-{hardware['hostname']}-{stamp}"
    base.with_suffix(".json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    base.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
