#!/usr/bin/env python
"""Compare popsim-calibrate runs of the shipped example (or any synthetic set with a truth
file) side by side: posterior mean, sd and 90 % interval of every population-level
variable (population values, IIV sds, residual sds) per run, whether the truth lies in the
interval, and for runs with several chains the split r_hat, bulk ESS and ESS per second
of wall time. The checks of the slow test `test_nuts_recovers_the_truth_of_the_shipped_example`
(r_hat < 1.01 for theta_pop and omega, truth inside at least 6 of their 8 intervals) are
applied to every multi-chain run.

    python benchmarks/calibration_compare.py OUT.json LABEL=RUN_DIR [LABEL=RUN_DIR ...] [--truth TRUTH.yaml]
    python benchmarks/calibration_compare.py cmp.json nuts=outputs/nuts laplace=outputs/laplace

Each RUN_DIR is a popsim-calibrate run folder (posterior.nc, diagnostics.json). Writes
OUT.json and prints a markdown table.
"""

import argparse
import json
import platform
from pathlib import Path

import arviz as az  # a benchmark script, outside the package's single ArviZ module
import numpy as np
import yaml

from popsim.calibration.synthetic import EXAMPLE_TRUTH


def population_variables(posterior) -> dict[str, np.ndarray]:
    """name -> draws (chain, draw) of every population-level variable."""
    out = {}
    for site, dim in (("theta_pop", "parameter"), ("omega", "parameter"), ("sigma", "analyte")):
        values = posterior[site]
        for label in values[dim].values:
            out[f"{site}[{label}]"] = np.asarray(values.sel({dim: label}).values, dtype=float)
    return out


def truth_of(name: str, truth: dict) -> float | None:
    site, label = name[:-1].split("[")
    return truth.get(site, {}).get(label)


def summarise(label: str, run_dir: Path, truth: dict) -> dict:
    idata = az.from_netcdf(run_dir / "posterior.nc")
    diagnostics = json.loads((run_dir / "diagnostics.json").read_text())
    wall_s = diagnostics.get("wall_time_s") or diagnostics.get("wall_s")
    draws = population_variables(idata.posterior)
    n_chains = next(iter(draws.values())).shape[0]
    rows = {}
    for name, x in draws.items():
        flat = x.reshape(-1)
        lo, hi = np.percentile(flat, [5, 95])
        row = {"mean": float(flat.mean()), "sd": float(flat.std(ddof=1)), "q5": float(lo), "q95": float(hi)}
        true = truth_of(name, truth)
        if true is not None:
            row["truth"] = float(true)
            row["truth_inside_90"] = bool(lo <= true <= hi)
        if n_chains > 1:
            row["r_hat"] = float(az.rhat(x))
            row["ess_bulk"] = float(az.ess(x, method="bulk"))
            row["ess_tail"] = float(az.ess(x, method="tail"))
            if wall_s:
                row["ess_bulk_per_s"] = row["ess_bulk"] / wall_s
        rows[name] = row
    result = {"label": label, "run_dir": str(run_dir), "chains": n_chains, "draws_per_chain": next(iter(draws.values())).shape[1],
              "diagnostics": diagnostics, "variables": rows}
    if n_chains > 1:
        # The slow test's checks: r_hat < 1.01 for theta_pop and omega; truth in >= 6 of 8.
        test_sites = [n for n in rows if n.startswith(("theta_pop", "omega"))]
        result["slow_test_r_hat_ok"] = all(rows[n]["r_hat"] < 1.01 for n in test_sites)
        result["slow_test_covered"] = sum(rows[n].get("truth_inside_90", False) for n in test_sites)
        result["all_population_r_hat_below_1_01"] = all(r["r_hat"] < 1.01 for r in rows.values())
        result["all_population_ess_bulk_at_least_100"] = all(r["ess_bulk"] >= 100 for r in rows.values())
    return result


def markdown(results: list[dict]) -> str:
    names = list(results[0]["variables"])
    head = "| variable | truth | " + " | ".join(f"{r['label']}: mean (sd) [90 %]" for r in results) + " |"
    lines = [head, "|---|---:|" + "---|" * len(results)]
    for name in names:
        truth = results[0]["variables"][name].get("truth")
        cells = []
        for r in results:
            v = r["variables"].get(name)
            if v is None:
                cells.append("")
                continue
            mark = "" if "truth_inside_90" not in v else (" ✓" if v["truth_inside_90"] else " ✗")
            extra = f"; r_hat {v['r_hat']:.3f}, ESS {v['ess_bulk']:.0f}" if "r_hat" in v else ""
            cells.append(f"{v['mean']:.4g} ({v['sd']:.2g}) [{v['q5']:.4g}, {v['q95']:.4g}]{mark}{extra}")
        lines.append(f"| {name} | {'' if truth is None else f'{truth:g}'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_DIR")
    parser.add_argument("--truth", default=str(EXAMPLE_TRUTH))
    args = parser.parse_args()
    truth = yaml.safe_load(Path(args.truth).read_text()) or {}
    results = []
    for item in args.runs:
        label, _, run_dir = item.partition("=")
        if not run_dir:
            parser.error(f"run {item!r}: expected LABEL=RUN_DIR")
        results.append(summarise(label, Path(run_dir), truth))
    table = markdown(results)
    Path(args.out).write_text(json.dumps({"machine": platform.platform(), "processor": platform.processor(),
                                          "runs": results, "table": table}, indent=1))
    print(table)
    for r in results:
        if r["chains"] > 1:
            print(f"{r['label']}: slow-test checks r_hat ok {r['slow_test_r_hat_ok']}, covered {r['slow_test_covered']}/8; "
                  f"every population variable r_hat < 1.01: {r['all_population_r_hat_below_1_01']}, "
                  f"bulk ESS >= 100: {r['all_population_ess_bulk_at_least_100']}")


if __name__ == "__main__":
    main()
