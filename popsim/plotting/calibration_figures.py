"""Figures of a calibration: trace, rank and pair plots of the population parameters,
posterior predictive checks, a visual predictive check per analyte, and recovery
predictions. Drawn with matplotlib from arrays (the same figures whichever ArviZ is
installed); every function returns a ``matplotlib.figure.Figure`` built without pyplot.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from popsim.calibration.lab_schema import ANALYTE_CANONICAL_UNITS

ANALYTE_LABELS = {a: f"{a.replace('_', ' ')} ({unit})" for a, unit in ANALYTE_CANONICAL_UNITS.items()}


def _grid(n: int, cols: int, width: float, height: float) -> tuple[Figure, np.ndarray]:
    rows = -(-n // cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def trace_plot(samples: Mapping[str, np.ndarray]) -> Figure:
    """Traces and per-chain densities of scalar parameters, each ``(chains, draws)``."""
    names = list(samples)
    fig = Figure(figsize=(10, 2.0 * len(names)), layout="constrained")
    axes = fig.subplots(len(names), 2, squeeze=False)
    for i, name in enumerate(names):
        x = np.asarray(samples[name])
        for c in range(x.shape[0]):
            axes[i, 0].hist(x[c], bins=30, histtype="step", density=True, label=f"chain {c}")
            axes[i, 1].plot(x[c], lw=0.6)
        axes[i, 0].set_ylabel(name, fontsize=8)
        axes[i, 1].set_xlabel("draw" if i == len(names) - 1 else "")
    axes[0, 0].legend(fontsize=7)
    axes[0, 0].set_title("posterior density per chain")
    axes[0, 1].set_title("trace")
    return fig


def rank_plot(samples: Mapping[str, np.ndarray], n_bins: int = 20) -> Figure:
    """Rank histograms (Vehtari et al. 2021): ranks of each chain's draws among all draws;
    near-uniform bars mean the chains mix."""
    names = list(samples)
    fig, axes = _grid(len(names), 3, 4.0, 2.6)
    for ax, name in zip(axes, names):
        x = np.asarray(samples[name])
        ranks = np.argsort(np.argsort(x.ravel())).reshape(x.shape)
        edges = np.linspace(0, x.size, n_bins + 1)
        for c in range(x.shape[0]):
            counts, _ = np.histogram(ranks[c], bins=edges)
            ax.step(np.arange(n_bins), counts, where="mid", label=f"chain {c}")
        ax.axhline(x.shape[1] / n_bins, color="k", ls=":", lw=0.8)
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
    axes[0].legend(fontsize=7)
    return fig


def pair_plot(samples: Mapping[str, np.ndarray], divergent: np.ndarray | None = None, log: bool = True) -> Figure:
    """Pairwise scatter of parameters (log scale for positive ones); divergent draws in red."""
    names = list(samples)
    k = len(names)
    fig = Figure(figsize=(2.2 * k, 2.2 * k), layout="constrained")
    axes = fig.subplots(k, k, squeeze=False)
    flat = {n: np.asarray(samples[n]).ravel() for n in names}
    tr = {n: np.log(v) if log and np.all(v > 0) else v for n, v in flat.items()}
    div = None if divergent is None else np.asarray(divergent).ravel().astype(bool)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            ax = axes[i, j]
            if i == j:
                ax.hist(tr[a], bins=30, color="C0")
            elif i > j:
                ax.scatter(tr[b], tr[a], s=2, alpha=0.3, color="C0")
                if div is not None and div.any():
                    ax.scatter(tr[b][div], tr[a][div], s=4, color="red")
            else:
                ax.set_visible(False)
            if i == k - 1:
                ax.set_xlabel(("log " if log else "") + b, fontsize=7)
            if j == 0:
                ax.set_ylabel(("log " if log else "") + a, fontsize=7)
            ax.tick_params(labelsize=6)
    return fig


def ppc_plot(observed: np.ndarray, replicated: np.ndarray, analyte_of_obs: np.ndarray, analytes: Sequence[str],
             censored: np.ndarray, n_lines: int = 40) -> Figure:
    """Posterior predictive check per analyte: density of log10 observed values (black)
    over densities of replicated data sets (blue); censored rows are left out of both."""
    fig, axes = _grid(len(analytes), 2, 5.0, 3.2)
    rng = np.random.default_rng(0)
    for a, (ax, name) in enumerate(zip(axes, analytes)):
        sel = (analyte_of_obs == a) & ~censored
        if not sel.any():
            ax.set_title(f"{ANALYTE_LABELS.get(name, name)}: all censored")
            continue
        obs = np.log10(np.maximum(observed[sel], 1e-4))
        reps = replicated[..., sel].reshape(-1, sel.sum())
        picks = rng.choice(reps.shape[0], size=min(n_lines, reps.shape[0]), replace=False)
        lo, hi = np.percentile(np.concatenate([obs, np.log10(np.maximum(reps[picks].ravel(), 1e-4))]), [0.5, 99.5])
        edges = np.linspace(lo, hi, 40)
        for r in picks:
            h, _ = np.histogram(np.log10(np.maximum(reps[r], 1e-4)), bins=edges, density=True)
            ax.step(edges[:-1], h, where="post", color="C0", alpha=0.15, lw=0.8)
        h, _ = np.histogram(obs, bins=edges, density=True)
        ax.step(edges[:-1], h, where="post", color="k", lw=1.6, label="observed")
        ax.set_xlabel(f"log10 {ANALYTE_LABELS.get(name, name)}")
        ax.set_title(f"{name}: {sel.sum()} uncensored values")
    axes[0].plot([], [], color="C0", label="posterior predictive")
    axes[0].legend(fontsize=7)
    return fig


def vpc_plot(time_months: np.ndarray, observed: np.ndarray, simulated: np.ndarray, analyte_of_obs: np.ndarray,
             analytes: Sequence[str], lloq: np.ndarray, bin_edges_months: np.ndarray,
             quantiles=(0.05, 0.5, 0.95)) -> Figure:
    """Visual predictive check per analyte against time since the end of TRT.

    Lines: observed 5th/50th/95th percentiles per time bin; bands: 90 % intervals of the
    same percentiles over the simulated replicates. Values below a row's LLOQ are at the
    LLOQ in both (dotted line: the highest LLOQ of the analyte).
    """
    fig, axes = _grid(len(analytes), 2, 5.5, 3.4)
    centres = 0.5 * (bin_edges_months[1:] + bin_edges_months[:-1])
    for a, (ax, name) in enumerate(zip(axes, analytes)):
        sel = analyte_of_obs == a
        which = np.digitize(time_months[sel], bin_edges_months) - 1
        obs_q = np.full((len(quantiles), centres.size), np.nan)
        sim_q = np.full((simulated.shape[0], len(quantiles), centres.size), np.nan)
        for b in range(centres.size):
            in_bin = which == b
            if in_bin.sum() < 3:
                continue
            obs_q[:, b] = np.quantile(observed[sel][in_bin], quantiles)
            sim_q[:, :, b] = np.quantile(simulated[:, sel][:, in_bin], quantiles, axis=1).T
        used = np.isfinite(obs_q[0])  # bins with enough values; empty bins are skipped, not gaps
        for q in range(len(quantiles)):
            if used.any():
                lo, hi = np.percentile(sim_q[:, q][:, used], [5, 95], axis=0)
                ax.fill_between(centres[used], lo, hi, color="C1" if q == 1 else "C0", alpha=0.3, lw=0)
            ax.plot(centres[used], obs_q[q][used], color="k", lw=1.5 if q == 1 else 0.9, ls="-" if q == 1 else "--",
                    marker="o", ms=2)
        ax.scatter(time_months[sel], observed[sel], s=3, color="0.6", zorder=0)
        positive = lloq[sel][lloq[sel] > 0]
        if positive.size:
            ax.axhline(positive.max(), color="k", ls=":", lw=0.8)
        ax.set_yscale("log")
        ax.axvline(0.0, color="0.3", lw=0.6)
        ax.set_xlabel("months since the first missed TRT dose")
        ax.set_ylabel(ANALYTE_LABELS.get(name, name))
        ax.set_title(name)
    axes[0].plot([], [], color="k", label="observed 5/50/95 %")
    axes[0].fill_between([], [], [], color="C0", alpha=0.3, label="simulated 90 % CI")
    axes[0].legend(fontsize=7)
    return fig


def patient_recovery_plot(ids: Sequence[str], median: np.ndarray, low: np.ndarray, high: np.ndarray,
                          threshold_m_ml: float, horizon_months: float) -> Figure:
    """Each observed man's predicted time to recovery: posterior median and 90 % interval
    (a bar reaching the right edge: not recovered within the horizon in some draws)."""
    order = np.argsort(np.where(np.isfinite(median), median, np.inf))
    fig = Figure(figsize=(7, max(3.0, 0.18 * len(ids) + 1)), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(ids))
    hi = np.where(np.isfinite(high), high, horizon_months)
    lo = np.where(np.isfinite(low), low, horizon_months)
    med = np.where(np.isfinite(median), median, horizon_months)
    ax.hlines(y, lo[order], hi[order], color="C0")
    ax.plot(med[order], y, "o", color="C0", ms=3)
    ax.set_yticks(y)
    ax.set_yticklabels([ids[i] for i in order], fontsize=6)
    ax.set_xlim(0, horizon_months)
    ax.set_xlabel(f"months from the first missed TRT dose to sperm >= {threshold_m_ml:g} M/mL")
    ax.set_ylabel("patient ID")
    return fig


def cohort_recovery_plot(months: np.ndarray, fraction: np.ndarray, threshold_m_ml: float, label: str) -> Figure:
    """Fraction recovered of a new virtual cohort: posterior median and 50 % / 90 % bands
    over parameter draws."""
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    q05, q25, q50, q75, q95 = np.percentile(fraction, [5, 25, 50, 75, 95], axis=0)
    ax.fill_between(months, q05, q95, step="post", alpha=0.2, color="C0", label="90 % credible band")
    ax.fill_between(months, q25, q75, step="post", alpha=0.35, color="C0", label="50 % credible band")
    ax.step(months, q50, where="post", color="C0", label="posterior median")
    ax.set_ylim(0, 1)
    ax.set_xlabel("months from the first missed TRT dose")
    ax.set_ylabel(f"fraction with sperm >= {threshold_m_ml:g} M/mL")
    ax.set_title(label, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    return fig
