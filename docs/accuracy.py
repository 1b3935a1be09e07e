"""Measure the accuracy of the population integrator and write docs/accuracy.md.

    JAX_ENABLE_X64=1 python docs/accuracy.py --write docs/accuracy.md

Compares the population integrator (popsim.solve.integrator) with the tight-tolerance
reference (popsim.solve.reference) on every regimen of
popsim.verify.accuracy.ACCURACY_REGIMENS: every step method at its default settings, the
default method for each step dt_days and precision of the sweep over two years of daily
output, and a long off-treatment follow-up. Without ``--write`` the report goes to stdout.
"""

import os

os.environ.setdefault("JAX_ENABLE_X64", "1")  # the reference needs float64; before jax is imported

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from fractions import Fraction  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from popsim.verify import accuracy as acc  # noqa: E402
from popsim.solve.methods import METHODS  # noqa: E402
from popsim.solve.schedule import field_evaluations, plan_schedule  # noqa: E402
from popsim.solve.settings import SolverSettings  # noqa: E402

DEFAULT_DTS = (0.5, 0.25, 1 / 6, 1 / 12, 1 / 24, 1 / 48)
# Regimens followed for --long-years (one year of treatment, then years off).
LONG_FOLLOW_UP = ("te_200mg_weekly_stop", "gel_then_anastrozole_tamoxifen")
COMMAND = "JAX_ENABLE_X64=1 python docs/accuracy.py --write docs/accuracy.md"

DESCRIPTIONS = {
    "te_200mg_weekly_stop": "enanthate 200 mg every 7 d for 12 months, then stop",
    "cypionate_then_hcg_clomiphene": "cypionate 150 mg every 14 d for 12 months, then hCG 1500 IU every 3.5 d "
                                     "+ clomiphene 25 mg daily for 6 months",
    "gel_then_anastrozole_tamoxifen": "gel 50 mg daily for 12 months, then anastrozole 1 mg every 3.5 d "
                                      "+ tamoxifen 20 mg daily for 6 months",
    "undecanoate_then_fsh_enclomiphene": "undecanoate 1000 mg every 70 d for 12 months, then FSH 150 IU every "
                                         "2.333 d + enclomiphene 25 mg daily for 6 months",
    "te_with_hcg_preservation": "enanthate 200 mg every 7 d with hCG 500 IU every 2 d, both for 12 months",
    "te_then_gonadorelin_clinic": "enanthate 200 mg every 7 d for 12 months, then gonadorelin 100 ug every "
                                  "3.5 d for 6 months",
    "te_then_gonadorelin_pump": "enanthate 200 mg every 7 d for 12 months, then a gonadorelin pump of 10 ug "
                                "every 1/16 d (90 min) for 6 months",
}

SHORT = {
    "total_testosterone_nmol_l": "total T", "free_testosterone_pmol_l": "free T", "lh_iu_l": "LH",
    "fsh_iu_l": "FSH", "estradiol_pg_ml": "E2", "inhibin_b_pg_ml": "inhibin B", "itt_nmol_l": "ITT",
    "shbg_nmol_l": "SHBG", "sperm_ge_1_m_ml": "sperm >= 1", "sperm_ge_5_m_ml": "sperm >= 5",
    "sperm_ge_15_m_ml": "sperm >= 15", "sperm_ge_20_m_ml": "sperm >= 20", "total_t_ge_10_4_nmol_l": "T >= 10.4",
}


def dt_label(dt: float) -> str:
    frac = Fraction(dt).limit_denominator(1000)
    return f"{frac.numerator}/{frac.denominator}" if frac.denominator != 1 else f"{frac.numerator}"


def days(value: float) -> str:
    return "inf" if not np.isfinite(value) else f"{value:.3f}"


def git_state() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"
    if not head:
        return "unknown (not a git checkout)"
    return f"{head}" + (" with uncommitted changes to tracked files" if dirty else "")


def machine() -> list[str]:
    u = platform.uname()
    devices = ", ".join(f"{d.platform}:{d.device_kind}" for d in jax.devices())
    return [
        f"- machine: `{u.system} {u.release} {u.machine}`, processor `{platform.processor() or u.processor or 'n/a'}`, "
        f"{os.cpu_count()} logical CPUs",
        f"- Python {platform.python_version()}, jax {jax.__version__}, devices: {devices}",
        f"- popsim source: git {git_state()}",
        f"- generated {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
    ]


def run_sweep(names, horizon, dts, precisions, max_seconds, log):
    """{(precision, dt): (results, seconds)} and the list of dropped combinations."""
    results, dropped = {}, []
    for precision in precisions:
        too_slow = False
        for dt in dts:
            if too_slow:
                dropped.append((precision, dt, f"a coarser step already took over {max_seconds:.0f} s"))
                continue
            res, seconds = acc.timed(acc.compare_to_reference, names, horizon, dt, precision)
            results[(precision, dt)] = (res, seconds)
            log(f"{precision} dt={dt_label(dt)}: {seconds:.1f} s, worst "
                + ", ".join(f"{r.worst_hormone_error:.1e}" for r in res.values()))
            too_slow = seconds > max_seconds
    return results, dropped


def evaluations_per_year(names, horizon, settings) -> float:
    """Field evaluations per patient-year of the batch of ``names`` (one schedule for all)."""
    _, doses, params, _ = acc._problem(names)
    plan = plan_schedule(acc.output_times(horizon), settings, doses, 0.0, params)
    return field_evaluations(plan.grid, settings.method) / (horizon / 365.25)


def method_sweep(names, horizon, precision, log):
    """{method: (results, seconds, evaluations per patient-year)} at each method's defaults,
    the gonadorelin regimens at GONADORELIN_DT_DAYS for the RK4 (part of a) method."""
    gon = [n for n in names if n in acc.GONADORELIN_REGIMENS]
    other = [n for n in names if n not in acc.GONADORELIN_REGIMENS]
    out = {}
    for name in METHODS:
        res, seconds, evals = {}, 0.0, {}
        for group, dt in ((other, None), (gon, acc.GONADORELIN_DT_DAYS)):
            if not group:
                continue
            if name == "ros34pw2":
                dt = None
            r, sec = acc.timed(acc.compare_to_reference, group, horizon, dt, precision, 1.0, name)
            res.update(r)
            seconds += sec
            settings = SolverSettings(dt_days=dt, precision=precision, method=name)
            e = evaluations_per_year(tuple(group), horizon, settings)
            evals.update({n: e for n in group})
        out[name] = (res, seconds, evals)
        log(f"method {name}: {seconds:.1f} s, worst " + ", ".join(f"{r.worst_hormone_error:.1e}" for r in res.values()))
    return out


def render_methods(names, horizon, sweep, long_names, long_horizon, long_sweep) -> list[str]:
    default = SolverSettings()
    lines = ["## Step methods at their default settings", "",
             f"Every method of `popsim.solve.methods` with its default settings ({default.precision}, horizon "
             f"{horizon:g} d); the gonadorelin regimens with dt_days = {dt_label(acc.GONADORELIN_DT_DAYS)} for "
             "the RK4 steps (what the gonadorelin protocols set). Cell: worst hormone error (worst recovery-time "
             "difference in days); field evaluations per patient-year of the regimens' batch (one schedule for the "
             "batch; Jacobian-vector products counted as one evaluation each) on the line below.", "",
             "| regimen | " + " | ".join(f"`{m}`" for m in sweep) + " |", "|---|" + "---:|" * len(sweep)]
    for n in names:
        cells = []
        for m, (res, _, _) in sweep.items():
            r = res[n]
            cells.append(f"{r.worst_hormone_error:.1e} ({days(r.worst_recovery_diff_days)}){'' if r.meets() else ' ✗'}")
        lines.append(f"| `{n}` | " + " | ".join(cells) + " |")
    lines.append("| field evaluations / patient-year (without gonadorelin; gonadorelin) | " + " | ".join(
        f"{ev[next(n for n in names if n not in acc.GONADORELIN_REGIMENS)]:,.0f}; "
        f"{ev[next((n for n in names if n in acc.GONADORELIN_REGIMENS), names[0])]:,.0f}"
        for _, (_, _, ev) in sweep.items()) + " |")
    lines.append("| run time (s) | " + " | ".join(f"{sec:.1f}" for _, (_, sec, _) in sweep.items()) + " |")
    lines += ["", "✗: misses a target.", ""]
    if long_sweep:
        lines += [f"### Long off-treatment follow-up ({long_horizon / 365.25:.0f} years, {default.precision})", "",
                  "| regimen | method | worst hormone error | hormone | day | worst recovery diff (d) | "
                  "field evaluations / patient-year | meets |", "|---|---|---:|---|---:|---:|---:|---|"]
        for m, (res, _, ev) in long_sweep.items():
            for n in long_names:
                r = res[n]
                lines.append(f"| `{n}` | `{m}` | {r.worst_hormone_error:.2e} | {SHORT[r.worst_hormone]} | "
                             f"{r.hormone_worst_day[r.worst_hormone]:g} | {days(r.worst_recovery_diff_days)} | "
                             f"{ev[n]:,.0f} | {'yes' if r.meets() else 'no'} |")
        lines.append("")
    return lines


def largest_passing_dt(results, precision, dts, names):
    """Largest dt of the sweep from which every finer dt also meets the targets for ``names``."""
    best = None
    for dt in sorted(dts):
        if (precision, dt) not in results:
            continue
        res = results[(precision, dt)][0]
        if all(res[n].meets() for n in names):
            best = dt
        else:
            break
    return best


def render(names, horizon, dts, precisions, results, dropped, ref_seconds, method_lines=()) -> str:
    default = SolverSettings()
    gon = [n for n in names if n in acc.GONADORELIN_REGIMENS]
    other = [n for n in names if n not in acc.GONADORELIN_REGIMENS]
    target = f"{acc.TARGET_RELATIVE_ERROR:g} relative error on every hormone and {acc.TARGET_RECOVERY_DAYS:g} day on every recovery time"
    lines = [
        "# Accuracy of the population integrator",
        "",
        f"Generated by `docs/accuracy.py`; do not edit by hand. Reproduce with `{COMMAND}`.",
        "",
        "## Summary",
        "",
    ]

    default_key = (default.precision, default.dt_days)
    if default_key in results:
        res = results[default_key][0]
        ok_other = all(res[n].meets() for n in other)
        worst_other = max((res[n].worst_hormone_error for n in other), default=0.0)
        worst_days = max((res[n].worst_recovery_diff_days for n in other), default=0.0)
        verdict = "meets" if ok_other else "does NOT meet"
        lines.append(
            f"- The default `SolverSettings` use method `{default.method}` with dt_days = {dt_label(default.dt_days)} "
            f"({default.dt_days * 24:g} h) for its RK4 steps and {default.quiet_dt_days:g}-day ROS34PW2 steps on "
            f"quiet stretches, in {default.precision}. Over the regimens without gonadorelin it {verdict} the "
            f"targets ({target}): "
            f"worst hormone error {worst_other:.2e}, worst recovery-time difference {days(worst_days)} d.")
        if not ok_other:
            failing = [n for n in other if not res[n].meets()]
            lines.append("  Failing at the default: " + ", ".join(
                f"`{n}` ({res[n].worst_hormone_error:.2e} on {SHORT[res[n].worst_hormone]} at day "
                f"{res[n].hormone_worst_day[res[n].worst_hormone]:g})" for n in failing) + ".")
            best = largest_passing_dt(results, default.precision, dts, other)
            if best is not None:
                lines.append(f"  The largest step of the sweep that meets the targets for them is dt_days = {dt_label(best)}.")
        for n in gon:
            r = res[n]
            lines.append(f"- At the default step `{n}` has a worst hormone error of {r.worst_hormone_error:.2e} "
                         f"({SHORT[r.worst_hormone]}, day {r.hormone_worst_day[r.worst_hormone]:g}) and a worst "
                         f"recovery-time difference of {days(r.worst_recovery_diff_days)} d.")
    if gon:
        for precision in precisions:
            best = largest_passing_dt(results, precision, dts, gon)
            where = "the default precision" if precision == default.precision else precision
            if best is None:
                lines.append(f"- Gonadorelin boluses: no step of the sweep meets the targets in {where}.")
            else:
                lines.append(f"- Gonadorelin boluses need dt_days <= {dt_label(best)} ({best * 24 * 60:g} min) to meet the "
                             f"targets in {where} (largest step of the sweep meeting them, with every finer step).")
        lines.append(f"  `popsim.verify.accuracy.GONADORELIN_DT_DAYS` = {dt_label(acc.GONADORELIN_DT_DAYS)}. Per regimen "
                     f"({default.precision}): " + ", ".join(
                         f"`{n}` {dt_label(b) if (b := largest_passing_dt(results, default.precision, dts, [n])) else 'none'}"
                         for n in gon) + ".")
        fine = [dt for dt in sorted(dts)[:2] if ("float64", dt) in results]
        if len(fine) == 2:
            orders = []
            for n in gon:
                e1, e2 = (results[("float64", dt)][0][n].worst_hormone_error for dt in fine)
                orders.append(f"`{n}` {np.log(e2 / e1) / np.log(fine[1] / fine[0]):.1f}")
            lines.append(f"  Observed order of convergence in float64 between dt_days {dt_label(fine[1])} and "
                         f"{dt_label(fine[0])}: " + ", ".join(orders) + " (4 for a smooth problem). Each bolus "
                         "switches the pituitary stimulus on within seconds (dose >> gonadorelin_ec50_ug), which "
                         "the RK4 stages at the dose time resolve only to first order in the step; the pump also "
                         "puts several doses in one step when dt_days > 1/16 and only the first is a split point.")
    if "float32" in precisions and "float64" in precisions:
        gaps = []
        for dt in dts:
            if ("float32", dt) in results and ("float64", dt) in results:
                r32, r64 = results[("float32", dt)][0], results[("float64", dt)][0]
                gaps.append(f"{dt_label(dt)}: {max(abs(r32[n].worst_hormone_error - r64[n].worst_hormone_error) for n in names):.1e}")
        lines.append("- float32 round-off: largest change of a regimen's worst hormone error from float64 to float32, "
                     "per dt_days: " + ", ".join(gaps) + " (truncation error dominates where this is small "
                     "compared with the error itself; round-off grows with the number of steps).")
    if dropped:
        lines.append("- Dropped from the sweep because they took too long: " + "; ".join(
            f"{p} dt={dt_label(d)} ({why})" for p, d, why in dropped) + ".")
    lines.append("")

    lines += [
        "## How it was measured",
        "",
        "- Patient: one typical man (`popsim.default_parameters`) per regimen, starting at his untreated steady "
        "state on day 0.",
        f"- Horizon {horizon:g} days, errors measured on the daily output grid (left limits: a sample at a dose "
        "time is the pre-dose trough).",
        "- Reference: `popsim.solve.reference.reference_solution`: diffrax Dopri8 (explicit, adaptive) in float64, "
        "rtol 1e-10, atol 1e-12, with the PK chains as ODE states and every dose applied as a jump; it restarts "
        "at every dose, output time and gonadorelin course switch. Independent of the population integrator "
        "where it matters (no closed-form PK, no fixed step, no step splitting).",
        "- Population integrator: `popsim.solve.run.iterate_chunks` with `SolverSettings(dt_days, precision, "
        "method)`, PK in closed form, every dose at its exact time. `rk4`: fixed-step RK4, each step split at the "
        "first dose inside it (or at a quarter step after a dose at its start, else at its midpoint). `rk4-dose`: "
        "fixed-step RK4, one part per step unless one of the patient's doses falls inside the step (split "
        "there) or at its start (split at a quarter step). `ros34pw2`: "
        "the L-stable Rosenbrock-W method ROS34PW2 with the Jacobian columns of the fast states, one part per "
        "step unless a dose falls inside it. `rk4-dose-ros34pw2` (default) and `rk4-ros34pw2`: `rk4-dose` or "
        "`rk4` in every output interval within "
        "max(quiet_after_days, quiet_half_lives x the longest PK half-life) of one of the patient's doses, "
        "`ros34pw2` at quiet_dt_days elsewhere. The step sweeps below vary dt_days of the default "
        "method (its RK4 steps).",
        "- Hormone error: for each of " + ", ".join(SHORT[h] for h in acc.HORMONES) + ", the largest over time "
        "of |sim - ref| / max(|ref|, 1e-6 max|ref|); the table shows the worst hormone.",
        "- Recovery times, days from the first missed TRT dose (last dose + one interval), first time the "
        "linearly interpolated daily trajectory reaches: latent sperm concentration >= 1, 5, 15, 20 M/mL; total "
        "testosterone >= 10.4 nmol/L. A criterion censored in both solutions counts as equal; censored in only "
        "one as an infinite difference. A criterion met at the first missed dose gives 0 in both (see the "
        "reference recovery times below: for several regimens the criteria are met at the origin and test "
        "little).",
        "- The float32 runs happen with 64-bit JAX enabled (the reference needs it); the float32 integrator casts "
        "every input to float32, and its outputs are bit-identical to a run with 64-bit JAX off "
        "(tests/test_accuracy.py, slow).",
        f"- Reference time: {ref_seconds:.1f} s for all {len(names)} regimens together.",
        "",
        "### Regimens",
        "",
        "| name | regimen |",
        "|---|---|",
    ]
    lines += [f"| `{n}` | {DESCRIPTIONS.get(n, '')} |" for n in names]
    lines.append("")

    any_res = next(iter(results.values()))[0]
    crit = list(acc.RECOVERY_CRITERIA)
    lines += ["### Reference recovery times (days from the first missed dose; `cens.` = not within the horizon)", "",
              "| regimen | " + " | ".join(SHORT[c] for c in crit) + " |", "|---|" + "---:|" * len(crit)]
    for n in names:
        ref = any_res[n].recovery_ref_days
        lines.append(f"| `{n}` | " + " | ".join("cens." if not np.isfinite(ref[c]) else f"{ref[c]:.2f}" for c in crit) + " |")
    lines.append("")

    for precision in precisions:
        lines += [f"## Worst hormone error, {precision} (worst recovery-time difference in days)", "",
                  "| regimen | " + " | ".join(f"dt {dt_label(dt)}" for dt in dts) + " |",
                  "|---|" + "---:|" * len(dts)]
        for n in names:
            cells = []
            for dt in dts:
                if (precision, dt) not in results:
                    cells.append("dropped")
                    continue
                r = results[(precision, dt)][0][n]
                mark = "" if r.meets() else " ✗"
                cells.append(f"{r.worst_hormone_error:.1e} ({days(r.worst_recovery_diff_days)}){mark}")
            lines.append(f"| `{n}` | " + " | ".join(cells) + " |")
        lines.append("| run time (s) | " + " | ".join(
            f"{results[(precision, dt)][1]:.1f}" if (precision, dt) in results else "" for dt in dts) + " |")
        lines += ["", "✗: misses a target. Run time includes compilation on the first step of each precision.", ""]

    lines += list(method_lines)
    lines += ["## Details per precision and step", ""]
    for precision in precisions:
        for dt in dts:
            if (precision, dt) not in results:
                continue
            res, seconds = results[(precision, dt)]
            lines += [f"### {precision}, dt_days = {dt_label(dt)} ({seconds:.1f} s)", "",
                      "| regimen | worst hormone error | hormone | day | worst recovery diff (d) | criterion | meets |",
                      "|---|---:|---|---:|---:|---|---|"]
            for n in names:
                r = res[n]
                worst_c = max(r.recovery_diff_days, key=r.recovery_diff_days.get)
                lines.append(f"| `{n}` | {r.worst_hormone_error:.2e} | {SHORT[r.worst_hormone]} | "
                             f"{r.hormone_worst_day[r.worst_hormone]:g} | {days(r.worst_recovery_diff_days)} | "
                             f"{SHORT[worst_c]} | {'yes' if r.meets() else 'no'} |")
            lines.append("")

    lines += ["## Machine", ""] + machine() + ["", f"Reproduce: `{COMMAND}`", ""]
    return "\n".join(lines)


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="write the report here (atomically); default: stdout")
    parser.add_argument("--horizon-days", type=float, default=730.0)
    parser.add_argument("--dt", type=float, nargs="+", default=list(DEFAULT_DTS), help="steps to sweep (days)")
    parser.add_argument("--precision", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    parser.add_argument("--regimens", nargs="+", default=list(acc.ACCURACY_REGIMENS), choices=list(acc.ACCURACY_REGIMENS))
    parser.add_argument("--long-years", type=float, default=6.0,
                        help="horizon of the long off-treatment follow-up (years; 0 = skip it)")
    parser.add_argument("--max-seconds", type=float, default=300.0,
                        help="skip finer steps of a precision once one combination takes longer than this")
    args = parser.parse_args(argv)
    if not jax.config.jax_enable_x64:
        parser.error("64-bit JAX is off: run with JAX_ENABLE_X64=1 (the reference needs float64)")

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    names = tuple(args.regimens)
    dts = tuple(sorted(set(args.dt), reverse=True))
    _, ref_seconds = acc.timed(acc.reference_outputs, names, args.horizon_days)
    log(f"reference: {ref_seconds:.1f} s")
    results, dropped = run_sweep(names, args.horizon_days, dts, args.precision, args.max_seconds, log)
    precision = SolverSettings().precision
    methods = method_sweep(names, args.horizon_days, precision, log)
    long_names = tuple(n for n in LONG_FOLLOW_UP if n in names)
    long_sweep = {}
    if long_names and args.long_years > 0:
        long_horizon = args.long_years * 365.25
        acc.reference_outputs(long_names, long_horizon)
        for m in ("rk4", SolverSettings.method):
            r, sec = acc.timed(acc.compare_to_reference, long_names, long_horizon, None, precision, 1.0, m)
            e = evaluations_per_year(long_names, long_horizon, SolverSettings(precision=precision, method=m))
            long_sweep[m] = (r, sec, {n: e for n in long_names})
            log(f"long follow-up {m}: {sec:.1f} s")
    method_lines = render_methods(names, args.horizon_days, methods, long_names,
                                  args.long_years * 365.25, long_sweep)
    text = render(names, args.horizon_days, dts, args.precision, results, dropped, ref_seconds, method_lines)
    if args.write:
        write_atomic(args.write, text)
        log(f"wrote {args.write}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
