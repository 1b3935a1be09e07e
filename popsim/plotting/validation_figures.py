"""Figures of the validation: for each published target the model curve over the
published numbers and their acceptance intervals.

Each function takes a popsim.validation.run.TargetResult and returns a
``matplotlib.figure.Figure`` built without pyplot (save with ``fig.savefig(path)``).
"""

from __future__ import annotations

import textwrap
from typing import Callable

import numpy as np
from matplotlib.figure import Figure

from popsim.units import DAYS_PER_MONTH
from popsim.validation.run import MetricResult, TargetResult

MODEL = "tab:blue"
PUBLISHED = "black"
FAILED = "tab:red"


def _figure(n: int = 1, width: float = 6.5, height: float = 4.0) -> tuple[Figure, list]:
    fig = Figure(figsize=(width * n, height), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    return fig, list(axes)


def _metric(result: TargetResult, name: str) -> MetricResult:
    return next(m for m in result.metrics if m.name == name)


def _target_point(ax, x: float, m: MetricResult, horizontal: bool = False, label: str | None = None,
                  top: float | None = None) -> None:
    """Published value with its interval (vertical bar at x, or horizontal bar at height x)."""
    lo = m.lo if m.lo is not None else (0.0 if top is None else None)
    hi = m.hi if m.hi is not None else top
    centre = m.published if m.published is not None else (lo if hi is None else hi)
    if horizontal:
        ax.errorbar([centre], [x], xerr=[[centre - (lo if lo is not None else centre)],
                                         [(hi if hi is not None else centre) - centre]],
                    fmt="s", color=PUBLISHED, capsize=4, label=label)
    else:
        ax.errorbar([x], [centre], yerr=[[centre - (lo if lo is not None else centre)],
                                         [(hi if hi is not None else centre) - centre]],
                    fmt="s", color=PUBLISHED, capsize=4, label=label)


def _model_point(ax, x: float, m: MetricResult, label: str | None = None, horizontal: bool = False) -> None:
    colour = MODEL if m.passed else FAILED
    se = m.mc_se if np.isfinite(m.mc_se) else 0.0
    if horizontal:
        ax.errorbar([m.model], [x], xerr=[[1.96 * se], [1.96 * se]], fmt="o", color=colour, capsize=3, label=label)
    else:
        ax.errorbar([x], [m.model], yerr=[[1.96 * se], [1.96 * se]], fmt="o", color=colour, capsize=3, label=label)


def _caption(ax, result: TargetResult) -> None:
    n_pass = sum(m.passed for m in result.metrics)
    # Wrapped so that long titles and sources stay inside the figure (~14 characters per
    # inch at 9 pt).
    width = max(int(14 * ax.figure.get_figwidth()), 40)
    text = f"{result.id}: {result.title}\n{result.source}  ({n_pass}/{len(result.metrics)} metrics pass)"
    ax.figure.suptitle("\n".join(textwrap.fill(line, width) for line in text.split("\n")), fontsize=9)


def figure_c1(result: TargetResult) -> Figure:
    c = result.curves
    fig, (ax,) = _figure()
    for x, style in ((3, ":"), (10, "--"), (20, "-")):
        ax.plot(c["months"], c[f"conc_ge_{x}"], style, color=MODEL, label=f"model: first monthly sample >= {x} M/mL")
    for months in (6, 12, 16, 24):
        m = _metric(result, f"p_conc_ge_20_by_{months}mo")
        _target_point(ax, months, m, top=1.0, label="Liu 2006 (>= 20 M/mL)" if months == 6 else None)
        _model_point(ax, months, m)
    for x, y in ((20, 0.5), (10, 0.5), (3, 0.5)):
        m = _metric(result, f"median_months_to_conc_ge_{x}")
        _target_point(ax, y, m, horizontal=True, label="published medians (20, 10, 3 M/mL)" if x == 20 else None)
    ax.set(xlabel="months after the end of treatment", ylabel="fraction of men recovered", ylim=(0, 1.02))
    ax.legend(fontsize=7, loc="lower right")
    _caption(ax, result)
    return fig


def figure_c2(result: TargetResult) -> Figure:
    fig, (ax,) = _figure()
    names = [m.name.replace("hr_sign_", "") for m in result.metrics]
    y = np.arange(len(names))
    for i, m in enumerate(result.metrics):
        colour = MODEL if m.passed else FAILED
        ax.errorbar([np.exp(m.model)], [i], xerr=[[np.exp(m.model) - np.exp(m.model - 1.96 * m.mc_se)],
                                                   [np.exp(m.model + 1.96 * m.mc_se) - np.exp(m.model)]],
                    fmt="o", color=colour, capsize=3)
        ax.annotate("published: faster" if m.published > 0 else "published: slower", (1.0, i), xytext=(6, 4),
                    textcoords="offset points", fontsize=7)
    ax.axvline(1.0, color=PUBLISHED, lw=0.8)
    ax.set_xscale("log")
    ax.set_yticks(y, names, fontsize=8)
    ax.set(xlabel="hazard ratio of recovery to 20 M/mL per SD (model, 95% CI)")
    _caption(ax, result)
    return fig


def figure_c3(result: TargetResult) -> Figure:
    c = result.curves
    fig, (a1, a2) = _figure(2)
    a1.fill_between(c["weeks"], np.maximum(c["q10"], 1e-3), np.maximum(c["q90"], 1e-3), color=MODEL, alpha=0.2,
                    label="model 10-90th percentile")
    a1.plot(c["weeks"], np.maximum(c["median"], 1e-3), color=MODEL, label="model median")
    a1.set_yscale("log")
    for thr in (3.0, 1.0):
        a1.axhline(thr, color="grey", lw=0.6)
    m3, m1 = _metric(result, "weeks_to_conc_le_3"), _metric(result, "weeks_to_conc_le_1")
    _target_point(a1, 3.0, m3, horizontal=True, label="published time to <= 3 and <= 1 M/mL")
    _target_point(a1, 1.0, m1, horizontal=True)
    a1.set(xlabel="weeks on TE 200 mg/week", ylabel="sperm concentration, M/mL")
    a1.legend(fontsize=7)
    for i, name in enumerate(("p_azoospermia_by_6mo_non_asian", "p_azoospermia_by_6mo_asian", "p_conc_lt_3_by_6mo")):
        m = _metric(result, name)
        _target_point(a2, i, m, top=1.0, label="published" if i == 0 else None)
        _model_point(a2, i, m, label="model" if i == 0 else None)
    a2.set_xticks(range(3), ["azoospermia\nnon-Asian", "azoospermia\nAsian", "< 3 M/mL"], fontsize=8)
    a2.set(ylabel="fraction by 6 months", ylim=(0, 1.05))
    a2.legend(fontsize=7)
    _caption(a1, result)
    return fig


def figure_c4(result: TargetResult) -> Figure:
    c = result.curves
    fig, (a1, a2) = _figure(2)
    for x, style in ((3, ":"), (10, "--"), (20, "-")):
        a1.plot(c["weeks"], c[f"conc_ge_{x}"], style, color=MODEL, label=f"model: latent >= {x} M/mL")
        _target_point(a1, 0.5, _metric(result, f"weeks_to_conc_ge_{x}"), horizontal=True,
                      label="published median times" if x == 3 else None)
    a1.set(xlabel="weeks after the end of treatment", ylabel="fraction of men recovered", xlim=(0, 52), ylim=(0, 1.02))
    a1.legend(fontsize=7)
    a2.plot(c["weeks"], c["gm_fraction"], color=MODEL, label="model: geometric mean / baseline")
    m = _metric(result, "recovery_plateau_fraction_of_baseline")
    _target_point(a2, 91.0, m, label="published plateau")
    _model_point(a2, 91.0, m)
    for name, y in (("median_months_to_conc_ge_20_who1990", 0.2), ("median_months_to_own_baseline_who1990", 0.3)):
        mm = _metric(result, name)
        def weeks(months):
            return None if months is None else months * DAYS_PER_MONTH / 7

        scaled = MetricResult(mm.target, mm.name, mm.kind, weeks(mm.model), weeks(mm.mc_se), weeks(mm.published),
                              weeks(mm.lo), weeks(mm.hi), mm.interval, mm.passed)
        _target_point(a2, y, scaled, horizontal=True, label="WHO 1990 medians (>= 20 M/mL, own baseline)"
                      if y == 0.2 else None)
        _model_point(a2, y, scaled, horizontal=True)
    a2.set(xlabel="weeks after the end of treatment", ylabel="fraction of baseline", ylim=(0, 1.1))
    a2.legend(fontsize=7)
    _caption(a1, result)
    return fig


def figure_c5(result: TargetResult) -> Figure:
    c = result.curves
    fig, (ax,) = _figure()
    labels = {"lh_iu_l": "LH", "fsh_iu_l": "FSH", "sperm_concentration_m_ml": "sperm concentration"}
    for (name, label), style in zip(labels.items(), ("-", "--", ":")):
        ax.plot(c["doses"], c[name], style, marker="o", color=MODEL, label=f"model {label}")
    ax.errorbar([50.0], [0.5], yerr=[[0.15], [0.15]], fmt="s", color=PUBLISHED, capsize=4,
                label="Matsumoto 1990: ED50 ~ 50 mg/week")
    ax.set(xlabel="TE dose, mg/week (6 months)", ylabel="fraction of placebo", ylim=(0, 1.1))
    ax2 = ax.twinx()
    ax2.plot(c["doses"], c["total_testosterone_nmol_l"], "-.", marker="^", color="tab:orange", label="model serum T")
    for dose, name in ((100.0, "serum_t_fraction_of_placebo_at_100mg"), (300.0, "serum_t_fraction_of_placebo_at_300mg")):
        _target_point(ax2, dose, _metric(result, name))
    ax2.set_ylabel("serum T / placebo")
    ax.legend(fontsize=7, loc="center right")
    ax2.legend(fontsize=7, loc="upper center")
    _caption(ax, result)
    return fig


def figure_c6(result: TargetResult) -> Figure:
    c = result.curves
    fig, (ax,) = _figure()
    ax.fill_between(c["hcg_iu"], c["itt_q25"], c["itt_q75"], color=MODEL, alpha=0.2, label="model interquartile range")
    ax.plot(c["hcg_iu"], c["itt"], "o-", color=MODEL, label="model median")
    for iu in c["hcg_iu"]:
        _target_point(ax, iu, _metric(result, f"itt_fraction_of_baseline_hcg_{iu:g}"),
                      label="Coviello 2005" if iu == 0 else None)
    ax.set(xlabel="hCG IU every other day (with TE 200 mg/week, 3 weeks)", ylabel="intratesticular T / baseline")
    ax.legend(fontsize=7)
    _caption(ax, result)
    return fig


def figure_c7(result: TargetResult) -> Figure:
    c = result.curves
    fig, (a1, a2) = _figure(2)
    a1.plot(c["clomiphene_days"], c["clomiphene_t_ng_dl"], color=MODEL, label="model mean T, clomiphene 25 mg/day")
    _target_point(a1, 42.0, _metric(result, "clomiphene_mean_t_ng_dl"), label="Shabsigh 2005 (from 248 ng/dL)")
    a1.set(xlabel="days", ylabel="total T, ng/dL")
    a1.legend(fontsize=7)
    a2.plot(c["anastrozole_days"], c["anastrozole_t_e2_fold"], color=MODEL, label="model T/E2 fold, anastrozole 1 mg/day")
    a2.plot(c["anastrozole_days"], c["anastrozole_sperm_fold"], "--", color=MODEL, label="model sperm fold (oligospermic)")
    _target_point(a2, 84.0, _metric(result, "anastrozole_t_e2_ratio_fold"), label="Raman & Schlegel 2002")
    _target_point(a2, 80.0, _metric(result, "anastrozole_oligospermic_concentration_fold"))
    a2.set(xlabel="days", ylabel="fold of baseline")
    a2.legend(fontsize=7)
    _caption(a1, result)
    return fig


def figure_c8(result: TargetResult) -> Figure:
    c = result.curves
    fig, (ax,) = _figure()
    ax.plot(c["months"], c["t_fraction"], color="tab:orange", label="model total T / baseline")
    ax.plot(c["months"], c["sperm_fraction"], color=MODEL, label="model sperm / baseline")
    ax.plot(c["months"], c["lh_fraction"], ":", color="grey", label="model LH / baseline")
    _target_point(ax, 3.0, _metric(result, "total_t_fraction_of_baseline_3mo_after"), label="Smit 2021: T at 3 months")
    _target_point(ax, 3.1, _metric(result, "sperm_fraction_of_baseline_3mo_after"), label="Smit 2021: sperm at 3 months")
    ax.axhline(1.0, color=PUBLISHED, lw=0.6)
    ax.set(xlabel="months after the last dose of the cycle", ylabel="fraction of baseline", ylim=(0, 2.5))
    ax.legend(fontsize=7)
    _caption(ax, result)
    return fig


def figure_c9(result: TargetResult) -> Figure:
    c = result.curves
    weeks = c["weeks"]
    fig, (a1, a2) = _figure(2)
    a1.plot(weeks, c["p_hormonal_recovery_no_pct"], color=MODEL, label="model, no drug after stopping")
    a1.plot(weeks, c["p_hormonal_recovery_with_pct"], "--", color=MODEL, label="model, clomiphene PCT")
    for name, y in (("median_weeks_to_hormonal_recovery_no_pct", 0.5), ("median_weeks_to_hormonal_recovery_with_pct", 0.52)):
        m = _metric(result, name)
        _target_point(a1, y, m, horizontal=True, label="published median" if y == 0.5 else None)
        _model_point(a1, y, m, horizontal=True)
    a1.set(xlabel="weeks after the last dose", ylabel="P(LH, FSH and T in range)", ylim=(0, 1))
    a1.legend(fontsize=7)
    a2.plot(weeks, c["lh_fraction"], color=MODEL, label="model group-mean LH / baseline")
    a2.plot(weeks, c["fsh_fraction"], "--", color=MODEL, label="model group-mean FSH / baseline")
    a2.plot(weeks, c["t_fraction"], color="tab:orange", label="model group-mean T / baseline")
    for name, y in (("weeks_group_mean_lh_back_to_baseline", 0.9), ("weeks_group_mean_fsh_back_to_baseline", 0.85)):
        m = _metric(result, name)
        _target_point(a2, y, m, horizontal=True, label="published weeks back at baseline" if y == 0.9 else None)
        _model_point(a2, y, m, horizontal=True)
    a2.axhline(1.0, color=PUBLISHED, lw=0.6)
    a2.set(xlabel="weeks after the last dose (no PCT)", ylabel="fraction of baseline", ylim=(0, 2.0))
    a2.legend(fontsize=7)
    _caption(a1, result)
    return fig


def figure_c10(result: TargetResult) -> Figure:
    c = result.curves
    fig, (ax,) = _figure()
    ax.plot(c["months"], c["t_fraction_median"], color=MODEL, label="model median T, former / never users")
    ax.plot(c["months"], c["p_below_12_1"], "--", color=MODEL, label="model fraction below 12.1 nmol/L")
    _target_point(ax, 30.0, _metric(result, "median_total_t_former_over_never_users"), label="Rasmussen 2016 (2.5 y)")
    _model_point(ax, 30.5, _metric(result, "median_total_t_former_over_never_users"))
    _target_point(ax, 31.0, _metric(result, "fraction_former_users_t_below_12_1_nmol_l"))
    _model_point(ax, 31.5, _metric(result, "fraction_former_users_t_below_12_1_nmol_l"))
    _target_point(ax, 14.5, _metric(result, "fraction_t_below_200_ng_dl_3_to_26_months_after"),
                  label="Kanayama 2015: below 200 ng/dL, 3-26 months")
    _model_point(ax, 15.0, _metric(result, "fraction_t_below_200_ng_dl_3_to_26_months_after"))
    ax.set(xlabel="months after the last dose", ylabel="ratio or fraction", ylim=(0, 1.3))
    ax.legend(fontsize=7)
    _caption(ax, result)
    return fig


def figure_c11(result: TargetResult) -> Figure:
    c = result.curves
    fig, (ax,) = _figure()
    ax.step(c["months"], c["p_any_sperm"], where="post", color=MODEL,
            label=f"model: {c['n_selected']} of {c['n_cohort']} men azoospermic at stopping")
    m = _metric(result, "p_any_sperm_by_6mo")
    _target_point(ax, 6.0, m, label="Samplaski 2014")
    _model_point(ax, 6.1, m)
    ax.set(xlabel="months after the last dose (monthly semen samples)", ylabel="P(any sperm)", ylim=(0, 1))
    ax.legend(fontsize=7)
    _caption(ax, result)
    return fig


def figure_c12(result: TargetResult) -> Figure:
    c = result.curves
    fig, (a1, a2) = _figure(2)
    for key, style, label in (("lh_iu_l", "-", "LH"), ("fsh_iu_l", "--", "FSH"), ("total_testosterone_nmol_l", ":", "total T")):
        a1.plot(c["months"], c[key], style, color=MODEL, label=f"model group-mean {label} / baseline")
    for x, name in ((6.0, "lh_fraction_of_baseline_on_treatment"), (6.2, "fsh_fraction_of_baseline_on_treatment"),
                    (6.4, "total_t_fraction_of_baseline_on_treatment")):
        _target_point(a1, x, _metric(result, name), label="Gu 2003 (months 2-12)" if x == 6.0 else None)
    a1.set(xlabel="months from the first injection", ylabel="fraction of baseline", yscale="log")
    a1.legend(fontsize=7)
    a2.plot(c["months"], c["sperm_median"], color=MODEL, label="model median sperm concentration")
    a2.axhline(3.0, color="grey", lw=0.6)
    a2.axhline(20.0, color="grey", lw=0.6)
    a2.set(xlabel="months from the first injection", ylabel="M/mL", yscale="symlog")
    a2.legend(fontsize=7)
    _caption(a1, result)
    return fig


FIGURES: dict[str, Callable[[TargetResult], Figure]] = {
    "C1": figure_c1, "C2": figure_c2, "C3": figure_c3, "C4": figure_c4, "C5": figure_c5, "C6": figure_c6,
    "C7": figure_c7, "C8": figure_c8, "C9": figure_c9, "C10": figure_c10, "C11": figure_c11, "C12": figure_c12,
}


def target_figure(result: TargetResult) -> Figure:
    """The figure of one target."""
    return FIGURES[result.id](result)
