"""calibration.md: what was fitted, how well the sampler did, and what it predicts."""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd

# What diagnostics.json's gradient_evaluations counts for each method: NUTS and Laplace leave
# out their Adam (MAP) start, and NUTS its warm-up, which costs about as much as the draws.
_COUNTED = {"nuts": "leapfrog steps (gradients) in the kept draws; warm-up and the Adam start not counted",
            "laplace": "gradients after the Adam start (L-BFGS, Newton steps and Hessians)",
            "svi": "SVI steps (one gradient of the ELBO each)"}


def _fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{x:.{digits}g}"


def _table(frame: pd.DataFrame, columns: list[str], index_name: str) -> str:
    head = f"| {index_name} | " + " | ".join(columns) + " |"
    rule = "|---|" + "---:|" * len(columns)
    rows = [f"| {idx} | " + " | ".join(_fmt(row[c]) for c in columns) + " |" for idx, row in frame.iterrows()]
    return "\n".join([head, rule, *rows])


def render_calibration_report(plan, diagnostics: Mapping, summary: pd.DataFrame, loo: Mapping,
                              patients: pd.DataFrame, cohort_table: pd.DataFrame, cohort: Mapping,
                              figures: Mapping[str, str]) -> str:
    """The markdown report of a popsim-calibrate run."""
    d = diagnostics
    lines = ["# popsim calibration", ""]
    lines += [f"- Data: `{plan.data_path.name}`: {d['patients']} patients, {d['observations']} observations "
              f"({d['censored_observations']} below the limit of quantification, M3 likelihood).",
              f"- Estimated with IIV: {', '.join(f'`{e.name}`' for e in plan.spec.estimated)}.",
              "- Residual error: " + ", ".join(f"{r.analyte} {r.model}" for r in plan.spec.residuals
                                              if r.analyte in d.get("analytes", [r.analyte])) + ".",
              f"- Likelihood simulated with dt = {plan.spec.dt_days:g} d ({plan.spec.precision}).",
              f"- Inference: {d['method']}, {d['chains']} chain(s) x {d['draws_per_chain']} draws, seed "
              f"{plan.inference.seed}; wall time {d['wall_time_s']} s "
              f"({', '.join(f'{k} {v} s' for k, v in d['timings_s'].items())}); "
              f"{d['gradient_evaluations']} {_COUNTED[d['method']]}.", ""]
    if d["method"] == "nuts":
        ok = d["r_hat_max_population"] is not None and d["r_hat_max_population"] < 1.01
        lines += ["## Convergence", "",
                  f"- Largest r_hat of the population parameters: {_fmt(d['r_hat_max_population'], 4)} "
                  f"({'below 1.01' if ok else 'NOT below 1.01: run more warm-up/draws before using the results'}).",
                  f"- Smallest bulk ESS: {_fmt(d['ess_bulk_min_population'])} "
                  f"({_fmt(d['ess_bulk_min_per_s'])} per second of wall time); divergences: {d['divergences']}.", ""]
    elif d["method"] == "laplace":
        converged = d.get("metric", {}).get("converged")
        state = {True: "reached a mode", False: "did NOT reach a mode (see the warnings in the log)",
                 None: "mode not checked"}[converged]
        lines += ["## Convergence", "",
                  f"- The Laplace fit {state}; its draws are independent (no r_hat). It describes the "
                  "population values and residual sds well and the IIV of weakly identified parameters "
                  "poorly: compare with NUTS on a subset (docs/calibration.md).", ""]
    else:
        lines += ["## Convergence", "", "- SVI gives no r_hat; check the loss trace and compare with NUTS on a subset.", ""]
    lines += ["## Population parameters", "", _table(summary, ["mean", "sd", "q5", "q95", "ess_bulk", "r_hat"], "parameter"), ""]
    if "error" in loo:
        lines += ["## LOO", "", f"LOO could not be computed: {loo['error']}", ""]
    else:
        lines += ["## LOO (PSIS)", "",
                  f"elpd_loo {_fmt(loo['elpd_loo'], 6)} (se {_fmt(loo['se'])}), p_loo {_fmt(loo['p_loo'])}; "
                  f"{loo['n_pareto_k_above_0_7']} of {loo['n_observations']} observations with Pareto k > 0.7 "
                  f"(max {_fmt(loo['pareto_k_max'])}).", ""]
    first = patients[patients["threshold_m_ml"] == plan.thresholds_m_ml[0]]
    lines += [f"## When will each man recover (sperm >= {plan.thresholds_m_ml[0]:g} M/mL)", "",
              "Months from the first missed TRT dose; posterior median and 90 % interval "
              f"(n/a: not within {plan.horizon_months:g} months in that share of draws). "
              "All thresholds: `patient_recovery.csv`.", "",
              _table(first.set_index("patient_id"), ["median_months", "q5_months", "q95_months",
                                                     "p_recovered_within_12_months"], "patient"), ""]
    medians = cohort["median_months"]
    finite = medians[np.isfinite(medians)]
    lines += [f"## New virtual cohort: {plan.cohort.label}", "",
              f"{cohort['n_men']} new men per posterior draw ({len(medians)} draws), age {plan.cohort.age_years:g}, "
              f"BMI {plan.cohort.bmi_kg_m2:g}. Median time to sperm >= {cohort['threshold_m_ml']:g} M/mL: "
              + (f"{np.median(finite):.1f} months (90 % credible interval {np.percentile(finite, 5):.1f}-"
                 f"{np.percentile(finite, 95):.1f})." if finite.size else "not reached within the horizon.")
              + " Monthly fractions: `cohort_recovery.csv`.", ""]
    shown = cohort_table[cohort_table["month"].isin([3, 6, 9, 12, 18, 24])].set_index("month")
    lines += [_table(shown, ["fraction_recovered_median", "fraction_recovered_q5", "fraction_recovered_q95"], "month"), ""]
    if figures:
        lines += ["## Figures", ""] + [f"![{name}]({path})" for name, path in figures.items()] + [""]
    lines += ["Open the posterior with `arviz.from_netcdf('posterior.nc')`.", ""]
    return "\n".join(lines)
