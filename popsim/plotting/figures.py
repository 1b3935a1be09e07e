"""Figures of a study: recovery curves, recovery probabilities, hormone bands, sweeps.

Every function takes data and returns a ``matplotlib.figure.Figure`` built without
pyplot (no global state, no backend needed): save it with ``fig.savefig(path)``.
Statistics come from ``popsim.analysis.survival``; this module only draws.
"""

from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from popsim.analysis import survival
from popsim.analysis.trajectories import OBSERVABLE_LABELS

DAYS_PER_MONTH = survival.DAYS_PER_MONTH
# Observable -> (low, high) of the shaded adult reference range, canonical unit (None: open).
REFERENCE_RANGES: dict[str, tuple[float | None, float | None]] = {
    "lh_iu_l": (1.7, 8.6),
    "fsh_iu_l": (1.5, 8.0),
}
# Observable -> (threshold, label) of a horizontal reference line.
REFERENCE_LINES: dict[str, tuple[float, str]] = {
    "total_testosterone_nmol_l": (10.4, "10.4 nmol/L (300 ng/dL)"),
    "sperm_concentration_m_ml": (15.0, "15 M/mL (WHO 2010 lower reference)"),
}
LOG_SCALE = ("sperm_concentration_m_ml", "sperm_concentration_sample_m_ml", "total_motile_count_m")
LOG_FLOOR = 1e-3  # floor of log-scaled values (latent concentration can be ~0)


def _figure(n_panels: int = 1, width: float = 7.0, height: float = 4.5, sharex: bool = False) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height * n_panels if n_panels > 1 else height), layout="constrained")
    axes = fig.subplots(n_panels, 1, sharex=sharex, squeeze=False)[:, 0]
    return fig, list(axes)


def _title(endpoint: str, variant: str) -> str:
    return f"{survival.endpoint_label(endpoint)}\n{survival.variant_label(variant)}"


def km_curves(df: pd.DataFrame, endpoint: str, variant: str = "latent", stratify_by: str | None = None,
              min_n: int = 10) -> Figure:
    """Cumulative recovery (1 - Kaplan-Meier) vs months after the origin, 95% bands.

    Args:
        df: outcome table (failed rows are excluded).
        endpoint: endpoint name, e.g. "conc_ge_15".
        variant: "latent" or "sampled".
        stratify_by: None (whole cohort) or a stratifier of
            ``survival.stratum_labels`` (one curve per non-empty stratum).
        min_n: strata with fewer men are not drawn (named in a note on the plot).
    """
    fig, (ax,) = _figure()
    rows, n_failed = survival.analysable(df, endpoint, variant,
                                         columns=survival.STRATIFIER_COLUMNS.get(stratify_by, ()))
    small: list[str] = []
    if stratify_by is None:
        groups = [("all men", rows)]
    else:
        labels = survival.stratum_labels(rows, stratify_by)
        groups = [(str(s), rows.loc[(labels == s).to_numpy()]) for s in labels.cat.categories]
        small = [f"{s} (n={len(g)})" for s, g in groups if 0 < len(g) < min_n]
        groups = [(s, g) for s, g in groups if len(g) >= min_n]
    horizon_days = survival.follow_up_days(df)
    for label, group in groups:
        table = survival.km_table(group, endpoint, variant, horizon_days=horizon_days).dropna()
        line, = ax.step(table["time_months"], 100 * table["p_recovered"], where="post", label=f"{label} (n={len(group)})")
        ax.fill_between(table["time_months"], 100 * table["lower"], 100 * table["upper"], step="post",
                        alpha=0.2, color=line.get_color(), linewidth=0)
    ax.set_xlabel("Months since the recovery origin (first missed TRT dose)")
    ax.set_ylabel("Men recovered (%)")
    ax.set_ylim(0, 102)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.set_title(_title(endpoint, variant))
    legend_title = survival.STRATIFIER_TITLES.get(stratify_by, None) if stratify_by else None
    ax.legend(title=legend_title, loc="lower right", fontsize="small")
    notes = ([f"{n_failed} numerical failures excluded"] if n_failed else []) + \
        ([f"not drawn (n < {min_n}): " + ", ".join(small)] if small else [])
    if notes:
        ax.text(0.01, 0.99, "\n".join(notes), transform=ax.transAxes, va="top", fontsize="small")
    return fig


def recovery_probability_vs(df: pd.DataFrame, endpoint: str, variant: str = "latent", by: str = "trt_duration",
                            months: Sequence[int] = (6, 12, 24), min_n: int = 10) -> Figure:
    """P(recovered by t) per stratum of a binned covariate, with 95% CI error bars.

    Args:
        df: outcome table.
        endpoint, variant: as in ``km_curves``.
        by: stratifier, e.g. "trt_duration" or "age".
        months: times t (months after the origin), one marker series each.
        min_n: strata with fewer men are not drawn.

    The y axis starts below the lowest lower CI bound (not necessarily at 0).
    """
    fig, (ax,) = _figure()
    rows = [r for r in survival.stratified_summary(df, endpoint, variant, by, months) if r["n"] >= min_n]
    lowest = 100.0
    x = np.arange(len(rows))
    width = 0.7 / max(len(months), 1)
    for k, m in enumerate(months):
        entries = [survival.month_entry(r["p_recovered_by_month"], m) or {} for r in rows]
        est = np.array([np.nan if e.get("estimate") is None else 100 * e["estimate"] for e in entries])
        lo = np.array([np.nan if e.get("lower") is None else 100 * e["lower"] for e in entries])
        hi = np.array([np.nan if e.get("upper") is None else 100 * e["upper"] for e in entries])
        offset = (k - (len(months) - 1) / 2) * width
        ax.errorbar(x + offset, est, yerr=[est - lo, hi - est], fmt="o", capsize=3, label=f"by {m} months")
        lowest = min([lowest] + [v for v in lo if np.isfinite(v)])
    ax.set_xticks(x, [f"{r['stratum']}\n(n={r['n']})" for r in rows])
    ax.set_xlabel(survival.STRATIFIER_TITLES.get(by, by))
    ax.set_ylabel("Men recovered (%), 95% CI")
    ax.set_ylim(max(0.0, 10 * np.floor((lowest - 5) / 10)), 101)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    ax.set_title(_title(endpoint, variant))
    return fig


def _align(times_days: np.ndarray, values: np.ndarray, origin_days: np.ndarray, grid_days: np.ndarray) -> np.ndarray:
    """Re-sample each patient's trajectory on ``origin + grid`` (NaN outside the simulation)."""
    out = np.full((values.shape[0], grid_days.size), np.nan)
    for i in range(values.shape[0]):
        if np.isfinite(origin_days[i]):
            out[i] = np.interp(origin_days[i] + grid_days, times_days, values[i], left=np.nan, right=np.nan)
    return out


def hormone_bands(times_days: np.ndarray, trajectories: Mapping[str, np.ndarray],
                  observables: Sequence[str] = ("total_testosterone_nmol_l", "lh_iu_l", "fsh_iu_l",
                                                "sperm_concentration_m_ml"),
                  units: Mapping[str, str] | None = None, origin_days: np.ndarray | None = None) -> Figure:
    """Population median with 25-75% and 5-95% bands over time, one panel per observable.

    Reference ranges are shaded (LH 1.7-8.6 IU/L, FSH 1.5-8 IU/L) or drawn as lines
    (total T 10.4 nmol/L, sperm 15 M/mL); sperm is on a log scale (floored at 0.001 M/mL).

    Args:
        times_days: ``(n_times,)`` output times, days since the simulation start.
        trajectories: ``{observable: (n_patients, n_times)}``.
        observables: panels to draw (those missing from ``trajectories`` are skipped).
        units: ``{observable: unit}`` overrides (default: popsim's canonical units).
        origin_days: ``(n_patients,)`` per-patient recovery origin; when given the time
            axis is months since each man's origin (trajectories re-aligned), else months
            since the simulation start.
    """
    names = [o for o in observables if o in trajectories]
    if not names:
        raise ValueError(f"none of {list(observables)} is in the trajectories ({list(trajectories)})")
    fig, axes = _figure(len(names), width=7.0, height=2.6, sharex=True)
    times_days = np.asarray(times_days, float)
    if origin_days is not None:
        origin = np.asarray(origin_days, float)
        # The window in which every man has data: from his earliest origin back to the
        # simulation start, forward to the end of the simulation for the latest origin.
        grid = np.arange(-np.floor(np.nanmin(origin) - times_days[0]), times_days[-1] - np.nanmax(origin) + 1e-9, 7.0)
        xlabel = "Months since the recovery origin (first missed TRT dose)"
    else:
        grid, xlabel = times_days, "Months since the start of TRT (simulation day 0)"
    months = grid / DAYS_PER_MONTH
    for ax, name in zip(axes, names):
        values = np.asarray(trajectories[name], float)
        if origin_days is not None:
            values = _align(times_days, values, origin, grid)
        if name in LOG_SCALE:
            values = np.maximum(values, LOG_FLOOR)
            ax.set_yscale("log")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
            q = np.nanpercentile(values, [5, 25, 50, 75, 95], axis=0)
        ax.fill_between(months, q[0], q[4], alpha=0.2, color="C0", linewidth=0, label="5-95%")
        ax.fill_between(months, q[1], q[3], alpha=0.4, color="C0", linewidth=0, label="25-75%")
        ax.plot(months, q[2], color="C0", label="median")
        if name in REFERENCE_RANGES:
            low, high = REFERENCE_RANGES[name]
            ax.axhspan(low, high, color="green", alpha=0.1, label=f"reference {low:g}-{high:g}")
        if name in REFERENCE_LINES:
            level, text = REFERENCE_LINES[name]
            ax.axhline(level, color="green", linestyle="--", linewidth=1, label=text)
        if origin_days is not None:
            ax.axvline(0, color="grey", linestyle=":", linewidth=1)
        unit = (units or {}).get(name) or OBSERVABLE_LABELS.get(name, (name, "", name))[1]
        long_name = OBSERVABLE_LABELS.get(name, (name, "", name))[2]
        ax.set_ylabel(f"{long_name[0].upper()}{long_name[1:]}\n({unit})", fontsize="small")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small", loc="best", ncol=2)
    axes[-1].set_xlabel(xlabel)
    axes[0].set_title(f"Population bands (n = {np.asarray(trajectories[names[0]]).shape[0]} men)")
    return fig


def protocol_comparison(table: pd.DataFrame, endpoints: Sequence[str] = ("conc_ge_15",),
                        variants: Sequence[str] = ("latent", "sampled")) -> Figure:
    """Forest plot of median months to recovery (95% CI) per sweep job.

    Args:
        table: ``survival.sweep_table`` output (needs ``label`` and
            ``{endpoint}_{variant}_median_months[_lower|_upper]`` columns).
        endpoints, variants: which medians to draw (one marker series each).

    A median that is not reached is marked "not reached" at the right edge.
    """
    n = len(table)
    fig, (ax,) = _figure(width=7.5, height=max(2.5, 0.45 * n * max(len(endpoints) * len(variants), 1) ** 0.5 + 1.5))
    series = [(e, v) for e in endpoints for v in variants if f"{e}_{v}_median_months" in table.columns]
    y = np.arange(n)[::-1].astype(float)
    step = 0.6 / max(len(series), 1)
    upper_all = np.nanmax([table[f"{e}_{v}_median_months_upper"].astype(float).max() for e, v in series] + [
        table[f"{e}_{v}_median_months"].astype(float).max() for e, v in series] + [1.0])
    for k, (e, v) in enumerate(series):
        col = f"{e}_{v}_median_months"
        est, lo, hi = (table[c].to_numpy(float) for c in (col, f"{col}_lower", f"{col}_upper"))
        offset = (k - (len(series) - 1) / 2) * step
        ax.errorbar(est, y - offset, xerr=[est - lo, hi - est], fmt="o", capsize=3,
                    label=f"{survival.endpoint_label(e)}, {survival.variant_label(v)}")
        for yi, ok in zip(y - offset, np.isfinite(est)):
            if not ok:
                ax.text(upper_all, yi, "not reached", va="center", ha="right", fontsize="small")
    ax.set_yticks(y, [str(s) for s in table["label"]] if "label" in table.columns else [str(i) for i in range(n)])
    ax.set_xlabel("Median months to recovery (95% CI)")
    ax.set_xlim(left=0)
    ax.grid(axis="x", alpha=0.3)
    fig.legend(fontsize="small", loc="outside lower center", ncols=1)
    ax.set_title("Protocol comparison")
    return fig


def suppression_depth(df: pd.DataFrame) -> Figure:
    """How deeply TRT suppressed sperm output: two histograms.

    Left: lowest latent sperm concentration during TRT as a fraction of the man's
    pre-TRT value (log scale). Right: months from TRT start to <= 1 M/mL, among men who
    reached it (the fraction who did is in the title).
    """
    rows, n_failed = survival.analysable(df, columns=("suppression_min_sperm_fraction", "suppression_to_conc_le_1_days",
                                                      "suppression_to_conc_le_1_observed"))
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    fraction = rows["suppression_min_sperm_fraction"].to_numpy(float)
    fraction = fraction[np.isfinite(fraction) & (fraction > 0)]
    if fraction.size:
        bins = np.logspace(np.floor(np.log10(fraction.min())), max(np.ceil(np.log10(fraction.max())), 0), 40)
        ax1.hist(fraction, bins=bins, color="C0", alpha=0.8)
        median = float(np.median(fraction))
        ax1.axvline(median, color="k", linestyle="--", linewidth=1, label=f"median {median:.2g}")
        ax1.legend(fontsize="small")
    ax1.set_xscale("log")
    ax1.set_xlabel("Lowest sperm concentration during TRT\n(fraction of pre-TRT value, log scale)")
    ax1.set_ylabel("Men")
    ax1.set_title("Depth of suppression")
    reached = rows["suppression_to_conc_le_1_observed"].astype(bool).to_numpy()
    months = rows["suppression_to_conc_le_1_days"].to_numpy(float)[reached] / DAYS_PER_MONTH
    if months.size:
        ax2.hist(months, bins=40, color="C1", alpha=0.8)
        median = float(np.median(months))
        ax2.axvline(median, color="k", linestyle="--", linewidth=1,
                    label=f"median {median:.1f} months (men who reached it)")
        ax2.legend(fontsize="small")
    ax2.set_xlabel("Months from TRT start to sperm ≤ 1 M/mL")
    ax2.set_ylabel("Men")
    ax2.set_title(f"Time to ≤ 1 M/mL ({100 * reached.mean() if reached.size else 0:.0f}% of men reached it)")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    if n_failed:
        fig.suptitle(f"{n_failed} numerical failures excluded", fontsize="small")
    return fig
