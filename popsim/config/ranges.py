"""Physiological and practical ranges of the ``popsim`` configuration (docs/inputs.md).

One table, one row per key: a value outside the hard range is a ConfigError (it cannot be
meant: a negative age, a dose of a kilogram); a value outside the usual range is a
warning (possible but extreme, e.g. 1000 mg of enanthate a week). Add a key by adding a
row; list items are written ``key[*]`` and a distribution's numbers (value, low, high,
mean, median, values) are each checked against its row. Protocol doses have one row per
drug, in the drug's canonical unit (popsim.dosing.limits).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, is_dataclass
from typing import Any, Iterator

from popsim.config.build import ConfigError
from popsim.dosing.drugs import PROTOCOL_DRUGS
from popsim.dosing.limits import DOSE_LIMITS
from popsim.dosing.regimen import dose_in_canonical_unit
from popsim.outcomes.recovery import endpoint_names
from popsim.units import DAYS_PER_MONTH


@dataclass(frozen=True)
class Range:
    """Accepted values of one key.

    Attributes:
        key: dotted path; ``[*]`` for every item of a list.
        low, high: hard limits (errors outside); None = unbounded.
        usual_low, usual_high: warnings outside; None = no warning on that side.
        unit: the key's unit, for messages and docs.
        low_open: True when ``low`` itself is invalid (must be > low).
    """

    key: str
    low: float | None
    high: float | None
    usual_low: float | None = None
    usual_high: float | None = None
    unit: str = ""
    low_open: bool = False

    def interval(self) -> str:
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        return f"{'(' if self.low_open or self.low is None else '['}{lo}, {hi}]"


YEARS_100 = 36525.0
RANGES: tuple[Range, ...] = (
    Range("seed", 0, 2 ** 63 - 1),
    Range("population.size", 1, None, unit="men"),
    Range("population.age_years", 15, 100, 18, 90, "years"),
    Range("population.bmi_kg_m2", 10, 80, 15, 60, "kg/m^2"),
    Range("population.testicular_function", 0, 5, 0.05, 2, "x typical", low_open=True),
    Range("population.asian_fraction", 0, 1, unit="fraction"),
    Range("trt.dose_mg", 0, 10000, None, 1000, "mg per dose", low_open=True),
    Range("trt.interval_days", 0, 365, None, 120, "days", low_open=True),
    Range("trt.duration_months", 0, 600, None, 360, "months", low_open=True),
    Range("trt.duration_distribution_months", 0, 600, None, 360, "months", low_open=True),
    Range("trt.start_day", 0, YEARS_100, unit="days"),
    Range("trt.arms[*].weight", 0, None),
    Range("trt.arms[*].dose_mg", 0, 10000, None, 1000, "mg per dose", low_open=True),
    Range("trt.arms[*].interval_days", 0, 365, None, 120, "days", low_open=True),
    Range("trt.arms[*].first_dose_extra_mg", 0, 10000, None, 2000, "mg"),
    Range("protocol.courses[*].interval_days", 0, 365, unit="days", low_open=True),
    Range("protocol.courses[*].duration_days", 0, YEARS_100, None, 3650, "days", low_open=True),
    Range("protocol.courses[*].start_offset_days", -YEARS_100, YEARS_100, unit="days"),
    Range("protocol.courses[*].end_offset_days", -YEARS_100, YEARS_100, unit="days"),
    Range("protocol.rules[*].every_days", 0, 3650, unit="days", low_open=True),
    Range("protocol.rules[*].first_check_offset_days", 0, YEARS_100, unit="days"),
    Range("protocol.rules[*].threshold", 0, None),
    Range("protocol.max_dt_days", 0, 2, unit="days", low_open=True),
    Range("solver.dt_days", 0, 2, unit="days", low_open=True),
    Range("solver.chunk_size", 1, 1_000_000, unit="men"),
    Range("outcomes.horizon_months", 0, 600, None, 240, "months", low_open=True),
    Range("outcomes.report_months[*]", 0, 600, unit="months", low_open=True),
    Range("outcomes.sperm_thresholds_m_ml[*]", 0, 1000, None, 200, "M/mL", low_open=True),
    Range("outcomes.baseline_fractions[*]", 0, 2, unit="fraction of baseline", low_open=True),
    Range("outcomes.tmc_threshold_m", 0, 10000, None, 1000, "million", low_open=True),
    Range("outcomes.sampling_interval_days", 0, 3650, unit="days"),
    Range("outcomes.first_sample_offset_days", 0, YEARS_100, unit="days"),
    Range("outcomes.pre_origin_sample_days[*]", 0, YEARS_100, unit="days before the origin"),
    Range("output.trajectories", 0, None, None, 100_000, "men"),
    Range("output.trajectory_step_days", 0, 3650, unit="days", low_open=True),
)
RANGE_INDEX = {r.key: r for r in RANGES}
# population.grid fields -> the row that bounds them.
GRID_RANGES = {"age_years": "population.age_years", "bmi_kg_m2": "population.bmi_kg_m2",
               "testicular_function": "population.testicular_function", "trt.dose_mg": "trt.dose_mg",
               "trt.interval_days": "trt.interval_days", "trt.duration_months": "trt.duration_months"}
_DISTRIBUTION_NUMBERS = ("value", "low", "high", "mean", "median")


def _numbers(value: Any, key: str) -> Iterator[tuple[str, Any]]:
    """(key, number) pairs of a value: itself, a list's items or a distribution's numbers."""
    if value is None:
        return
    if is_dataclass(value) and hasattr(value, "kind"):  # DistributionConfig
        for name in _DISTRIBUTION_NUMBERS:
            number = getattr(value, name)
            if number is not None:
                yield f"{key}.{name}", number
        for i, number in enumerate(value.values):
            yield f"{key}.values[{i}]", number
        return
    yield key, value


def _resolve(cfg: Any, key: str) -> Iterator[tuple[str, Any]]:
    """Every (concrete key, value) a table key names in ``cfg``."""
    head, _, rest = key.partition(".")
    star = head.endswith("[*]")
    name = head[:-3] if star else head
    value = getattr(cfg, name, None) if not isinstance(cfg, dict) else cfg.get(name)
    if star:
        for i, item in enumerate(value or []):
            if rest:
                yield from ((f"{name}[{i}].{k}", v) for k, v in _resolve(item, rest))
            else:
                yield f"{name}[{i}]", item
    elif rest:
        yield from ((f"{name}.{k}", v) for k, v in _resolve(value, rest))
    else:
        yield name, value


def check_value(row: Range, key: str, value: Any, warnings: list[str], usual_note: str = "") -> None:
    """Raise ConfigError when ``value`` is outside the hard range; note a warning outside the usual one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return  # types are the schema's business
    unit = f" {row.unit}" if row.unit else ""
    if not math.isfinite(value) or (row.low is not None and (value < row.low or (row.low_open and value == row.low))) \
            or (row.high is not None and value > row.high):
        raise ConfigError(f"{key}: {value:g}{unit} is outside the valid range {row.interval()}{unit}")
    if (row.usual_low is not None and value < row.usual_low) or (row.usual_high is not None and value > row.usual_high):
        lo = "" if row.usual_low is None else f"{row.usual_low:g}"
        hi = "" if row.usual_high is None else f"{row.usual_high:g}"
        usual = f"{lo}-{hi}" if lo and hi else (f"<= {hi}" if hi else f">= {lo}")
        warnings.append(f"{key}: {value:g}{unit} is extreme (usual range {usual}{unit}){usual_note}; "
                        "the run goes ahead")


def check_run_ranges(cfg) -> list[str]:
    """Check a typed PopsimConfig against RANGES; return warnings, raise ConfigError on errors."""
    warnings: list[str] = []
    ends_at_anchor = {f"protocol.courses[{i}].duration_days" for i, c in enumerate(cfg.protocol.courses)
                      if c.end_anchor is not None}  # duration_days is then ignored
    for row in RANGES:
        for key, value in _resolve(cfg, row.key):
            if key in ends_at_anchor:
                continue
            for number_key, number in _numbers(value, key):
                check_value(row, number_key, number, warnings)
    for name, values in cfg.population.grid.items():
        row = RANGE_INDEX.get(GRID_RANGES.get(name, ""))
        for i, v in enumerate(values):
            if row is not None:
                check_value(row, f"population.grid.{name}[{i}]", v, warnings)
    for i, course in enumerate(cfg.protocol.courses):
        limits = DOSE_LIMITS.get(course.drug)
        if limits is None or course.dose_unit == "":
            continue
        unit = PROTOCOL_DRUGS[course.drug].dose_unit
        doses = ([(f"protocol.courses[{i}].dose", course.dose)] if course.dose_distribution is None
                 else list(_numbers(course.dose_distribution, f"protocol.courses[{i}].dose_distribution")))
        for key, number in doses:
            if key.endswith((".sd", ".cv")):
                continue
            dose = dose_in_canonical_unit(number, course.dose_unit, unit, f"protocol.courses[{i}]")
            row = Range(key, 0, limits.high, None, limits.usual_high, f"{unit} per dose", low_open=True)
            check_value(row, key, dose, warnings, f"; typical {PROTOCOL_DRUGS[course.drug].typical}")
    return warnings


# ----------------------------------------------------------------------------- machine resources

# Bytes the outcome table takes per man and endpoint (latent and sampled time and flag, in
# the table and in the copies pandas and Parquet make), and per man for the other columns.
_BYTES_PER_ENDPOINT = 3 * 2 * (4 + 1)
_BYTES_PER_MAN = 3 * 8 * 24
# Integrator throughput per CPU core (patient-steps per second), from docs/performance.md;
# an accelerator is taken as 100 times faster.
CPU_STEPS_PER_S_PER_CORE = 4e5
LONG_RUN_HOURS = 12.0


def physical_memory_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def estimated_bytes(plan) -> int:
    """Memory the run holds at once: the outcome table and the kept trajectories."""
    from popsim.outcomes.study import simulation_length_days

    study = plan.study
    n_endpoints = len(endpoint_names(study.endpoints))
    table = study.n_patients * (_BYTES_PER_MAN + n_endpoints * _BYTES_PER_ENDPOINT)
    days = simulation_length_days(plan.design, study)
    kept = study.n_trajectories * (days / max(study.trajectory_step_days, 1.0)) * len(study.trajectory_observables) * 4 * 2
    chunk = min(study.settings.chunk_size, study.n_patients) * days * 8 * 4 * 2
    return int(table + kept + chunk)


def check_resources(plan) -> list[str]:
    """ConfigError when the run cannot fit in this machine's memory; a warning when it
    would take longer than LONG_RUN_HOURS."""
    from popsim.outcomes.study import simulation_length_days

    study = plan.study
    need = estimated_bytes(plan)
    have = physical_memory_bytes()
    if have is not None and need > 0.8 * have:
        most = int(study.n_patients * 0.8 * have / need)
        raise ConfigError(f"population.size: {study.n_patients:,} men need about {need / 2**30:,.0f} GiB for the outcome "
                          f"table and trajectories; this machine has {have / 2**30:,.0f} GiB; valid: at most about "
                          f"{max(most, 1):,} men (or fewer output.trajectories)")
    days = simulation_length_days(plan.design, study)
    steps = study.n_patients * days / study.settings.dt_days
    hours = steps / (CPU_STEPS_PER_S_PER_CORE * (os.cpu_count() or 1)) / 3600.0
    if hours > LONG_RUN_HOURS:
        try:
            import jax

            if jax.default_backend() != "cpu":
                hours /= 100.0
        except Exception:  # noqa: BLE001 - no backend: keep the CPU projection
            pass
    if hours > LONG_RUN_HOURS:
        return [f"population.size: {study.n_patients:,} men over {days:,.0f} days at a {study.settings.dt_days:g}-day "
                f"step would take roughly {hours:,.0f} hours on this machine; the run goes ahead"]
    return []


# ----------------------------------------------------------------------------- popsim-calibrate

CALIBRATE_RANGES: tuple[Range, ...] = (
    Range("seed", 0, 2 ** 63 - 1),
    Range("solver.dt_days", 0, 2, unit="days", low_open=True),
    Range("model.output_step_days", 0, 30, unit="days", low_open=True),
    Range("model.sperm_floor_m_ml", 0, 10, unit="M/mL", low_open=True),
    Range("inference.chains", 1, 256, None, 16),
    Range("inference.warmup", 0, 1_000_000, None, 20_000),
    Range("inference.samples", 1, 1_000_000, None, 20_000),
    Range("inference.max_tree_depth", 1, 15),
    Range("inference.init_steps", 0, 1_000_000),
    Range("inference.svi_steps", 1, 10_000_000),
    Range("inference.newton_steps", 0, 1000),
    Range("inference.lbfgs_steps", 0, 1_000_000),
    Range("predictions.thresholds_m_ml[*]", 0, 1000, None, 200, "M/mL", low_open=True),
    Range("predictions.horizon_months", 0, 600, None, 240, "months", low_open=True),
    Range("predictions.patient_draws", 1, 100_000),
    Range("predictions.vpc_replicates", 1, 10_000),
    Range("predictions.cohort.interval_days", 0, 365, None, 120, "days", low_open=True),
    Range("predictions.cohort.duration_months", 0, 600, None, 360, "months", low_open=True),
    Range("predictions.cohort.n_men", 1, 1_000_000, unit="men"),
    Range("predictions.cohort.draws", 1, 100_000),
    Range("predictions.cohort.age_years", 15, 100, 18, 90, "years"),
    Range("predictions.cohort.bmi_kg_m2", 10, 80, 15, 60, "kg/m^2"),
    Range("predictions.cohort.threshold_m_ml", 0, 1000, None, 200, "M/mL", low_open=True),
)


def check_calibration_ranges(cfg: dict) -> list[str]:
    """Check a resolved calibrate.yaml (plain containers) against CALIBRATE_RANGES and the
    dose limits of the cohort's product; return warnings, raise ConfigError on errors."""
    warnings: list[str] = []
    for row in CALIBRATE_RANGES:
        for key, value in _resolve(cfg, row.key):
            check_value(row, key, value, warnings)
    cohort = cfg.get("predictions", {}).get("cohort", {})
    limits = DOSE_LIMITS.get(cohort.get("product"))
    if limits is not None:
        row = Range("predictions.cohort.dose_mg", 0, limits.high, None, limits.usual_high, "mg per dose", low_open=True)
        check_value(row, row.key, cohort.get("dose_mg"), warnings)
    return warnings


# ----------------------------------------------------------------------------- docs


def _cell(x) -> str:
    return "" if x is None else f"{x:,g}"


def ranges_markdown() -> str:
    """The tables of docs/inputs.md (tests check that the page shows these)."""
    from popsim.calibration.lab_schema import (
        ANALYTE_CANONICAL_UNITS, ANALYTE_LIMITS, COVARIATE_LIMITS, MAX_ABS_TIME_DAYS,
    )
    from popsim.dosing.drugs import PROTOCOL_DRUGS, TRT_PRODUCTS

    def table(rows):
        out = ["| key | valid (error outside) | usual (warning outside) | unit |", "|---|---|---|---|"]
        for r in rows:
            usual = "" if r.usual_low is None and r.usual_high is None else \
                f"{_cell(r.usual_low) or '-'} to {_cell(r.usual_high) or '-'}"
            out.append(f"| `{r.key}` | {r.interval()} | {usual} | {r.unit} |")
        return out

    lines = ["### popsim", ""] + table(RANGES) + [
        "", "Distributions are checked number by number (`value`, `low`, `high`, `mean`, `median`, `values`); "
        "`population.grid` values are checked against the row of their field; `outcomes.report_months` after "
        "`outcomes.horizon_months` are reported as not estimable (the short-term experiments C5 and C6 ship "
        "them).", "",
        "### Doses per administration (protocol courses, lab-data AMT, `trt` products)", "",
        "| product or drug | unit | usual up to (warning above) | valid up to (error above) |", "|---|---|---|---|"]
    for name, limit in DOSE_LIMITS.items():
        unit = {**TRT_PRODUCTS, **PROTOCOL_DRUGS}[name].dose_unit
        lines.append(f"| {name} | {unit} | {_cell(limit.usual_high)} | {_cell(limit.high)} |")
    lines += ["", "### popsim-calibrate", ""] + table(CALIBRATE_RANGES) + [
        "", "### Lab data (docs/lab-data.md)", "",
        "| value | unit | usual up to (warning above) | valid up to (error above) |", "|---|---|---|---|"]
    for analyte, (usual, high) in ANALYTE_LIMITS.items():
        lines.append(f"| DV of {analyte} | {ANALYTE_CANONICAL_UNITS[analyte]} | {_cell(usual)} | {_cell(high)} |")
    lines += ["", "| covariate | valid | usual |", "|---|---|---|"]
    for name, (low, usual_low, usual_high, high) in COVARIATE_LIMITS.items():
        lines.append(f"| {name} | [{_cell(low)}, {_cell(high)}] | {_cell(usual_low)} to {_cell(usual_high)} |")
    lines += ["", f"`TIME` must lie within {MAX_ABS_TIME_DAYS:,g} days (100 years) of the time origin; negative times "
              "(before the first dose) are allowed."]
    return "\n".join(lines) + "\n"
