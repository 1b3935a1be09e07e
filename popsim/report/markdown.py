"""Plain-markdown reports of a study (``report.md``) and of a sweep of studies.

Input is the JSON-safe ``popsim.analysis.survival.study_summary`` dict (optionally after
a JSON round trip, where month keys became strings), relative paths of saved figures
and a free-form ``run_info`` dict; output is a markdown string a clinician can read.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd

from popsim.analysis.survival import DAYS_PER_MONTH, endpoint_label, month_entry

HEADLINE_ENDPOINTS = ("conc_ge_15", "conc_ge_20", "conc_ge_1", "any_sperm")
TABLE_ENDPOINTS = ("any_sperm", "conc_ge_1", "conc_ge_5", "conc_ge_15", "conc_ge_20", "tmc_ge_5",
                   "conc_ge_50pct_baseline", "conc_ge_85pct_baseline")
STRATA_ENDPOINT = "conc_ge_15"
STRATA_SHOWN = ("trt_duration", "age", "trt_dose", "trt_product", "protocol")
VARIANT_NAMES = {"latent": "latent", "sampled": "monthly samples"}
FIGURE_CAPTIONS = {
    "km": "Cumulative recovery (1 - Kaplan-Meier) with 95% confidence bands",
    "km_by_duration": "Cumulative recovery by TRT duration",
    "km_by_age": "Cumulative recovery by age",
    "probability_by_duration": "Probability of recovery by 6, 12 and 24 months, by TRT duration",
    "probability_by_age": "Probability of recovery by 6, 12 and 24 months, by age",
    "hormones": "Population median and 25-75% / 5-95% bands of hormones and sperm concentration",
    "suppression": "Depth of suppression during TRT",
    "protocols": "Median months to recovery per protocol",
}


# --------------------------------------------------------------------------- formatting

def _months(x: float | None) -> str:
    return "not reached" if x is None else f"{x:.1f}"


def _ci_months(interval: Mapping | None) -> str:
    """"2.6 (95% CI 2.5-2.7)"; NR for a bound that is not reached."""
    if not interval or interval.get("estimate") is None:
        lower = (interval or {}).get("lower")
        return "not reached" + (f" (95% CI {lower:.1f}-NR)" if lower is not None else "")
    lo, hi = interval.get("lower"), interval.get("upper")
    return f"{interval['estimate']:.1f} ({'NR' if lo is None else f'{lo:.1f}'}-{'NR' if hi is None else f'{hi:.1f}'})"


def _pct_value(x: float) -> str:
    v = 100 * x
    return f"{v:.0f}" if 1 <= v <= 99 else f"{v:.1f}"


def _pct(interval: Mapping | None) -> str:
    """"66% (62-70)"; "-" when not estimable (beyond follow-up)."""
    if not interval or interval.get("estimate") is None:
        return "-"
    lo, hi = interval.get("lower"), interval.get("upper")
    if interval["estimate"] >= 1.0 or interval["estimate"] <= 0.0:
        return f"{100 * interval['estimate']:.0f}%"  # everyone (no one) recovered: the band is degenerate
    if lo is None or hi is None:
        return f"{_pct_value(interval['estimate'])}%"
    return f"{_pct_value(interval['estimate'])}% ({_pct_value(lo)}-{_pct_value(hi)})"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _dist(q: Mapping | None, digits: int = 0) -> str:
    """"43 (IQR 34-52; 5-95% 27-58)"."""
    if not q or q.get("p50") is None:
        return "n/a"
    f = f"{{:.{digits}f}}"
    return (f"{f.format(q['p50'])} (IQR {f.format(q['p25'])}-{f.format(q['p75'])}; "
            f"5-95% range {f.format(q['p5'])}-{f.format(q['p95'])})")


def _summary(summary: Mapping, endpoint: str, variant: str) -> Mapping | None:
    return summary.get("endpoints", {}).get(endpoint, {}).get("variants", {}).get(variant, {}).get("summary")


# --------------------------------------------------------------------------- sections

def _question(summary: Mapping, run_info: Mapping) -> str:
    protocol = run_info.get("protocol") or "none"
    origin = run_info.get("origin", "first_missed_dose").replace("_", " ")
    follow = _follow_up(summary)
    return "\n".join([
        "## The question", "",
        f"How long after stopping testosterone replacement therapy (TRT) does sperm production come back, "
        f"for this cohort of {summary['cohort']['n']} virtual men and the recovery protocol **{protocol}**? "
        f"Time is counted from the {origin} and men are followed for {follow} months; "
        "a man who has not recovered by then is counted as censored (not as never recovering).",
    ])


def _follow_up(summary: Mapping) -> str:
    if summary.get("follow_up_months") is not None:
        return f"{summary['follow_up_months']:.0f}"
    for entry in summary.get("endpoints", {}).values():
        for v in entry.get("variants", {}).values():
            if v["summary"].get("follow_up_months") is not None:
                return f"{v['summary']['follow_up_months']:.0f}"
    return "?"


def _course_text(course: Any) -> str:
    if not isinstance(course, Mapping):
        return str(course)
    parts = [str(course.get("drug", "?"))]
    if course.get("dose") is not None:
        parts.append(f"{course['dose']:g} {course.get('dose_unit', '')}".strip())
    if course.get("interval_days") is not None:
        parts.append(f"every {course['interval_days']:g} days")
    if course.get("duration_days") is not None:
        parts.append(f"for {course['duration_days'] / DAYS_PER_MONTH:.1f} months")
    if course.get("start_offset_days") is not None:
        parts.append(f"starting {course['start_offset_days']:g} days after {str(course.get('anchor', 'trt_end')).replace('_', ' ')}")
    return " ".join(parts)


POPULATION_WORDS = {
    "trt_patients": "men on prescribed TRT, mostly for (often mild) hypogonadism: older and heavier than "
                    "trial volunteers, with low or low-normal T and a spread of baseline testicular function",
    "androgen_users": "users of supraphysiological androgens (cycles of 250-1000 mg testosterone a week)",
    "contraception_volunteers": "healthy eugonadal volunteers of the male contraception trials",
}


def _cohort(summary: Mapping, run_info: Mapping) -> str:
    c = summary["cohort"]
    lines = ["## The cohort", "",
             f"- **Men**: {c['n']} simulated, {c['n_analysed']} analysed "
             f"({c['n_failed']} excluded because of a numerical failure of the solver).",
             f"- **Age** (years): median {_dist(c.get('age_years'))}.",
             f"- **BMI** (kg/m²): median {_dist(c.get('bmi_kg_m2'), 1)}."]
    if run_info.get("population") in POPULATION_WORDS:
        lines.insert(2, f"- **Who**: {POPULATION_WORDS[run_info['population']]} "
                        f"(`population={run_info['population']}`).")
    if c.get("baseline_testosterone_nmol_l"):
        below = c.get("baseline_testosterone_below_10p4_fraction")
        lines.append(f"- **Pre-TRT total T** (nmol/L): median {_dist(c['baseline_testosterone_nmol_l'], 1)}"
                     + (f"; {_pct_value(below)}% below 10.4 nmol/L (300 ng/dL)" if below is not None else "") + ".")
    if c.get("baseline_lh_iu_l"):
        lines.append(f"- **Pre-TRT LH** (IU/L): median {_dist(c['baseline_lh_iu_l'], 1)}.")
    if (c.get("testicular_function") or {}).get("p50") is not None and c["testicular_function"]["p5"] < 0.999:
        lines.append(f"- **Baseline testicular function** (1 = eugonadal output): median "
                     f"{_dist(c['testicular_function'], 2)}.")
    if c.get("trt_products"):
        lines.append("- **TRT products**: " + ", ".join(f"{k} {v}" for k, v in c["trt_products"].items()) + ".")
    if c.get("trt_weekly_dose_mg", {}).get("p50") is not None:
        intervals = ", ".join(f"every {k} days: {v}" for k, v in c.get("trt_interval_days", {}).items())
        lines.append(f"- **TRT dose** (weekly equivalent, mg/week; injectables): median "
                     f"{_dist(c['trt_weekly_dose_mg'])}. Injection intervals: {intervals}.")
    if c.get("gel_daily_dose_mg"):
        lines.append(f"- **Gel dose** (mg/day applied): median {_dist(c['gel_daily_dose_mg'])}.")
    if c.get("trt_duration_months"):
        lines.append(f"- **TRT duration** (months): median {_dist(c['trt_duration_months'], 1)}.")
    if c.get("baseline_sperm_m_ml"):
        lines.append(f"- **Pre-TRT sperm concentration** (M/mL): median {_dist(c['baseline_sperm_m_ml'])}.")
    s = c.get("suppression", {})
    if s:
        bits = []
        if s.get("azoospermic_during_trt_fraction") is not None:
            bits.append(f"{_pct_value(s['azoospermic_during_trt_fraction'])}% became azoospermic at some point on TRT")
        if s.get("reached_conc_le_1_fraction") is not None:
            t = (s.get("time_to_conc_le_1_months") or {}).get("estimate")
            bits.append(f"{_pct_value(s['reached_conc_le_1_fraction'])}% fell to ≤ 1 M/mL"
                        + (f" (median {t:.1f} months after starting TRT)" if t is not None else ""))
        if (s.get("min_sperm_fraction") or {}).get("median") is not None:
            m = s["min_sperm_fraction"]
            bits.append(f"the lowest concentration on TRT was a median {m['median']:.2g} of the man's own "
                         f"pre-TRT value (IQR {m['p25']:.2g}-{m['p75']:.2g})")
        lines.append("- **Suppression on TRT**: " + "; ".join(bits) + ".")
    if c.get("protocols"):
        lines.append("- **Protocols in this table**: " + ", ".join(f"{k} ({v})" for k, v in c["protocols"].items()) + ".")
    lines.append(f"- **Recovery protocol**: {run_info.get('protocol') or 'none'}"
                 + (":" if run_info.get("courses") else " (TRT simply stopped)."))
    for course in run_info.get("courses") or ():
        lines.append(f"    - {_course_text(course)}")
    return "\n".join(lines)


def _lower_first(text: str) -> str:
    """Lower-case the first letter unless the first word is an acronym ("TRT", "LH")."""
    return text if text[1:2].isupper() else text[:1].lower() + text[1:]


def _headline(s: Mapping, variant: str) -> str:
    target = _lower_first(s["label"])
    median = s["median_months"]
    if median.get("estimate") is None:
        text = f"Fewer than half of the men reach {target} within follow-up (median not reached)"
    else:
        text = f"Half of the men reach {target} by **{median['estimate']:.1f} months** (95% CI {_ci_months(median).split('(')[1][:-1]})"
    by12 = month_entry(s["p_recovered_by_month"], 12)
    if by12 and by12.get("estimate") is not None:
        text += f"; by 12 months **{_pct(by12)}** have"
    never = s.get("never_recovered_fraction") or {}
    if never.get("estimate") == 0:
        text += f"; all have by {never['at_month']:.0f} months"
    elif never.get("estimate") is not None:
        text += f"; {_pct(never)} have not by {never['at_month']:.0f} months"
    if s.get("n_at_origin"):
        text += f" ({s['n_at_origin']} men, {_pct_value(s['n_at_origin'] / s['n'])}%, already met it at the origin)"
    return f"- *{VARIANT_NAMES[variant]}*: {text}."


def _answer(summary: Mapping) -> str:
    lines = ["## The answer", ""]
    for endpoint in HEADLINE_ENDPOINTS:
        variants = [v for v in ("latent", "sampled") if _summary(summary, endpoint, v)]
        if not variants:
            continue
        lines.append(f"**{endpoint_label(endpoint)}**")
        lines.append("")
        lines += [_headline(_summary(summary, endpoint, v), v) for v in variants]
        lines.append("")
    lines.append(_probability_table(summary))
    return "\n".join(lines)


def _probability_table(summary: Mapping) -> str:
    months = summary.get("months", [3, 6, 12, 18, 24])
    header = ["Endpoint", "Measured on", "n", "Median months (95% CI)", "25% / 75% by (months)"] + \
        [f"By {m} mo" for m in months]
    rows = []
    names = [e for e in TABLE_ENDPOINTS if e in summary.get("endpoints", {})] + \
        [e for e in summary.get("endpoints", {}) if e not in TABLE_ENDPOINTS and e not in HORMONE_ENDPOINTS]
    for endpoint in names:
        for variant in ("latent", "sampled"):
            s = _summary(summary, endpoint, variant)
            if not s:
                continue
            quart = f"{_months(s['p25_months']['estimate'])} / {_months(s['p75_months']['estimate'])}"
            rows.append([s["label"], VARIANT_NAMES[variant], s["n"], _ci_months(s["median_months"]), quart]
                        + [_pct(month_entry(s["p_recovered_by_month"], m)) for m in months])
    return "\n".join(["### Probability of recovery by time after the origin", "",
                      "Percent of men recovered (95% CI), Kaplan-Meier. \"-\" = beyond follow-up.", "",
                      _table(header, rows)])


HORMONE_ENDPOINTS = ("hormonal_recovery", "testosterone_ge_10p4", "lh_in_range", "fsh_in_range",
                     "testosterone_ge_90pct_baseline", "lh_ge_90pct_baseline", "fsh_ge_90pct_baseline")


def _hormones(summary: Mapping) -> str:
    """When LH, FSH and total T come back: recovery times and group means over baseline."""
    months = summary.get("months", [3, 6, 12, 18, 24])
    rows = []
    for endpoint in HORMONE_ENDPOINTS:
        s = _summary(summary, endpoint, "latent")
        if s:
            quart = f"{_months(s['p25_months']['estimate'])} / {_months(s['p75_months']['estimate'])}"
            rows.append([s["label"], s["n"], _ci_months(s["median_months"]), quart]
                        + [_pct(month_entry(s["p_recovered_by_month"], m)) for m in months])
    fractions = summary.get("hormones_over_baseline", {})
    if not rows and not fractions:
        return ""
    lines = ["## When the hormones come back", ""]
    if rows:
        lines += ["Percent of men recovered (95% CI), Kaplan-Meier, on the daily model trajectory. Reference "
                  "ranges: LH 1.7-8.6 IU/L, FSH 1.5-12.4 IU/L, total T ≥ 10.4 nmol/L (300 ng/dL).", "",
                  _table(["Endpoint", "n", "Median months (95% CI)", "25% / 75% by (months)"]
                         + [f"By {m} mo" for m in months], rows), ""]
    if fractions:
        all_months = sorted({e["month"] for v in fractions.values() for e in v})
        by = {h: {e["month"]: e for e in v} for h, v in fractions.items()}
        table_rows = []
        for m in all_months:
            cells = [f"{m:g}"]
            for hormone in ("lh", "fsh", "testosterone"):
                e = by.get(hormone, {}).get(m)
                cells.append("-" if e is None else f"{e['mean']:.2f} ({e['q10']:.2f}-{e['q90']:.2f})")
            table_rows.append(cells)
        lines += ["### Group mean over each man's own pre-TRT value, by month after the origin", "",
                  "Mean (10th-90th percentile) of the ratio; 1 = back at baseline.", "",
                  _table(["Month", "LH", "FSH", "Total T"], table_rows)]
    return "\n".join(lines)


def _strata(summary: Mapping) -> str:
    months = [m for m in (6, 12, 24) if m in summary.get("months", [])]
    lines = [f"## By subgroup: {endpoint_label(STRATA_ENDPOINT)}", ""]
    entry = summary.get("endpoints", {}).get(STRATA_ENDPOINT, {}).get("variants", {})
    titles = summary.get("stratifiers", {})
    for by in STRATA_SHOWN:
        tables = {v: e["strata"].get(by) for v, e in entry.items() if e.get("strata", {}).get(by)}
        if not tables or (by in ("trt_product", "protocol") and len(next(iter(tables.values()))) < 2):
            continue
        header = ["Stratum", "n"] + [f"Median months, {VARIANT_NAMES[v]}" for v in tables] + \
            [f"By {m} mo, {VARIANT_NAMES[v]}" for v in tables for m in months]
        first = next(iter(tables.values()))
        rows = []
        for i, row in enumerate(first):
            per_variant = [tables[v][i] for v in tables]
            rows.append([row["stratum"], row["n"]] + [_ci_months(r["median_months"]) for r in per_variant]
                        + [_pct(month_entry(r["p_recovered_by_month"], m)) for r in per_variant for m in months])
        lines += [f"### By {_lower_first(titles.get(by, by))}", "", _table(header, rows), ""]
    return "\n".join(lines)


def _cox(summary: Mapping) -> str:
    entry = summary.get("endpoints", {}).get(STRATA_ENDPOINT, {}).get("variants", {})
    fits = {v: e["cox"] for v, e in entry.items() if e.get("cox")}
    if not fits:
        return ""
    header = ["Covariate", "Hazard ratio is"] + [h for v in fits for h in (f"HR (95% CI), {VARIANT_NAMES[v]}", "p")]
    first = next(iter(fits.values()))
    rows, dropped = [], []
    for i, row in enumerate(first):
        if row["hazard_ratio"] is None:
            dropped.append(f"{row['covariate']} ({row['note']})")
            continue
        cells = []
        for v in fits:
            r = fits[v][i]
            cells += ["-", "-"] if r["hazard_ratio"] is None else [
                f"{r['hazard_ratio']:.3f} ({r['lower']:.3f}-{r['upper']:.3f})",
                "<0.001" if r["p_value"] < 0.001 else f"{r['p_value']:.3f}"]
        rows.append([row["covariate"], row["unit"]] + cells)
    notes = sorted({r["note"] for rs in fits.values() for r in rs if r["note"] and r["hazard_ratio"] is not None})
    lines = [f"## What predicts faster recovery to {_lower_first(endpoint_label(STRATA_ENDPOINT))}", "",
             "Multivariable Cox proportional-hazards model (ridge penalty 0.01). "
             "**HR > 1 means faster recovery**; each HR is per the unit shown, with the other covariates held fixed.", "",
             _table(header, rows)]
    if dropped:
        lines += ["", "Not in the model: " + "; ".join(dropped) + "."]
    if notes:
        lines += ["", "Notes: " + "; ".join(notes) + "."]
    return "\n".join(lines)


def _figures(figures: Mapping[str, str]) -> str:
    if not figures:
        return ""
    lines = ["## Figures", ""]
    for key, path in figures.items():
        caption = FIGURE_CAPTIONS.get(key, key.replace("_", " ").capitalize())
        lines += [f"### {caption}", "", f"![{caption}]({path})", ""]
    return "\n".join(lines)


def _caveats(summary: Mapping, run_info: Mapping) -> str:
    c = summary["cohort"]
    follow = _follow_up(summary)
    return "\n".join([
        "## How to read this / caveats", "",
        "- **Virtual cohort.** These are model predictions for simulated men, not observations. The model, its "
        "parameters and the evidence behind them are documented in `docs/model.md` (assumptions and extrapolations "
        "in its section 10). Confidence intervals express the Monte Carlo uncertainty of this finite virtual cohort "
        "only, not the uncertainty of the model itself.",
        "- **Latent vs monthly samples.** *Latent* is the day the model's underlying sperm production crosses the "
        "threshold. *Monthly samples* is the first monthly semen analysis (first at 30 days after the origin) that "
        "meets it, with the day-to-day variability of single semen samples; it is what a clinic or trial following "
        "men monthly would record, later and in 1-month steps (its medians and CIs sit on sample days). A noisy "
        "sample can also meet a threshold before the latent value does.",
        "- **Origin.** Time 0 is the recovery origin (the first missed TRT dose unless stated otherwise). Men "
        "already above a threshold at the origin (never suppressed below it) count as recovered at time 0.",
        f"- **Censoring.** Follow-up ends {follow} months after the origin; men not recovered by then are censored. "
        "\"Not reached\" means the estimate (or a CI bound) is not reached within follow-up; nothing is extrapolated.",
        "- **Hormone endpoints.** Testosterone ≥ 10.4 nmol/L counts from when serum T (exogenous included) first falls "
        "below the threshold after stopping; men whose pre-TRT testosterone was below 10.4 nmol/L cannot reach it.",
        f"- **Numerical failures.** {c['n_failed']} of {c['n']} simulated men had a numerical solver failure and are "
        "excluded from every statistic.",
        "- **Subgroups and Cox model** describe associations inside the virtual cohort; covariates in the simulated "
        "population may be correlated by design.",
    ])


def _run_info(run_info: Mapping) -> str:
    skip = {"courses"}
    items = [(k, v) for k, v in run_info.items() if k not in skip and v is not None]
    if not items:
        return ""
    return "\n".join(["## Run information", "", _table(["Setting", "Value"], [[k, f"`{v}`"] for k, v in items])])


def render_report(summary: Mapping, figures: Mapping[str, str], run_info: Mapping[str, Any]) -> str:
    """Markdown report of one study.

    Args:
        summary: ``survival.study_summary`` output (or its JSON round trip).
        figures: ``{key: relative path}`` of saved figures, embedded in order. Known keys
            (captions): km, km_by_duration, km_by_age, probability_by_duration,
            probability_by_age, hormones, suppression, protocols; other keys are captioned
            from their name.
        run_info: free-form settings shown in the report; used keys: ``title``,
            ``protocol`` (name), ``courses`` (list of str or ProtocolCourse-like dicts),
            ``origin``; every scalar entry is listed under "Run information".

    Returns:
        the markdown text of ``report.md``.
    """
    title = run_info.get("title") or "Recovery of sperm production after stopping testosterone replacement therapy"
    sections = [f"# {title}", _question(summary, run_info), _cohort(summary, run_info), _answer(summary),
                _hormones(summary), _strata(summary), _cox(summary), _figures(figures), _caveats(summary, run_info), _run_info(run_info)]
    return "\n\n".join(s.strip() for s in sections if s) + "\n"


def _num(value: Any, fmt: str = "{:.1f}", missing: str = "NR") -> str:
    return missing if value is None or pd.isna(value) else fmt.format(value)


def render_sweep_report(table: pd.DataFrame, figure: str | None = None) -> str:
    """Markdown report comparing the jobs of a sweep.

    Args:
        table: ``survival.sweep_table`` output.
        figure: relative path of the ``protocol_comparison`` figure, or None.

    Returns:
        markdown text.
    """
    def median(row, prefix):
        col = f"{prefix}_median_months"
        if col not in row or pd.isna(row[col]):
            return "not reached" if col in row else "-"
        return f"{row[col]:.1f} ({_num(row[col + '_lower'])}-{_num(row[col + '_upper'])})"

    def prob(row, prefix, m):
        col = f"{prefix}_p_{m}mo"
        if col not in row or pd.isna(row[col]):
            return "-"
        return _pct({"estimate": row[col], "lower": None if pd.isna(row[col + "_lower"]) else row[col + "_lower"],
                     "upper": None if pd.isna(row[col + "_upper"]) else row[col + "_upper"]})

    header = ["Job", "n", "≥15 M/mL median, latent", "≥15 M/mL median, monthly samples",
              "Any sperm median, latent", "≥15 M/mL by 6 mo", "by 12 mo", "by 24 mo"]
    rows = [[r.get("label", i), _num(r.get("n"), "{:.0f}", "?"), median(r, "conc_ge_15_latent"),
             median(r, "conc_ge_15_sampled"), median(r, "any_sperm_latent"),
             prob(r, "conc_ge_15_latent", 6), prob(r, "conc_ge_15_latent", 12), prob(r, "conc_ge_15_latent", 24)]
            for i, r in table.iterrows()]
    lines = ["# Sweep: time to recovery of sperm production per job", "",
             "Each row is one simulated cohort (job) with the settings named in its label. Medians are months from "
             "the recovery origin (95% CI, Kaplan-Meier); probabilities are the percent recovered to ≥ 15 M/mL "
             "(latent trajectory) by 6, 12 and 24 months. NR = not reached within follow-up.", "",
             _table(header, rows)]
    if figure:
        lines += ["", f"![Median months to recovery per job]({figure})"]
    failed = table["n_failed"].fillna(0).sum() if "n_failed" in table.columns else 0
    lines += ["", "## How to read this", "",
              "- Model-based virtual cohorts (see `docs/model.md`); CIs are Monte Carlo uncertainty only.",
              "- Jobs with the same seed simulate the same virtual men, so differences between jobs are paired "
              "comparisons rather than independent samples.",
              f"- {int(failed)} men with numerical solver failures are excluded in total."]
    return "\n".join(lines) + "\n"
