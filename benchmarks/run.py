#!/usr/bin/env python
"""Benchmark popsim against its peers on the same model and the same virtual cohort.

    python benchmarks/run.py --quick          # about 7 min on 2 cores
    python benchmarks/run.py                  # full run with the scaling section, < 15 min on 2 cores
    python benchmarks/run.py --quick --peers popsim --years 1 --patients 64 --out /tmp/bench

Every peer runs in its own subprocess (``run.py --peer NAME --config FILE``, which prints one
JSON line), so that its environment (XLA_FLAGS for sharding, JAX_ENABLE_X64) is set before
JAX starts and its peak memory (``ru_maxrss``) is its own. Results go to
``benchmarks/results/<host>-<YYYYMMDD-HHMMSS>.json`` and ``.md`` (or ``--out DIR``); the
markdown table is printed. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from popsim.devices import available_cores

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

MARK = "BENCH_JSON:"
ALL_PEERS = ("popsim", "popsim-rk4", "popsim-sharded", "numba", "diffrax", "scipy")
# Packages each peer needs; a peer whose package is missing is skipped with a message.
REQUIRES = {"popsim": ("jax", "popsim"), "popsim-rk4": ("jax", "popsim"), "popsim-sharded": ("jax", "popsim"),
            "numba": ("numba",),
            "diffrax": ("diffrax", "equinox", "jax"), "scipy": ("scipy",)}
VERSIONED = ("jax", "jaxlib", "numpy", "scipy", "diffrax", "equinox", "numba", "llvmlite")

# Sizes per mode: popsim's cohort, the numba and diffrax cohorts (first patients of the same
# cohort), timed repeats. The scipy peer is timed on the accuracy subset.
MODES = {
    "quick": {"years": 3.0, "popsim_patients": 192, "numba_patients": 96, "diffrax_patients": 18,
              "repeats": 2, "peer_repeats": 1, "timeout_s": 240},
    "full": {"years": 7.0, "popsim_patients": 576, "numba_patients": 144, "diffrax_patients": 45,
             "repeats": 2, "peer_repeats": 2, "timeout_s": 600},
}
# Scaling section per mode: throughput vs population size (1 simulated year) and vs simulated
# years, and peak memory of an outcome-only streaming study vs population size. The full
# run stops at 1e5 patients: 1e6 patient-years take ~20-25 min on 2 cores (more than the
# whole 15-min budget); run the scaling peer alone with larger "sizes" for that.
SCALING = {
    "quick": {"sizes": [100, 1000], "size_years": 1.0, "years_patients": 100, "years_list": [1.0, 3.0],
              "chunk_size": 1000},
    "full": {"sizes": [100, 1000, 10000, 100000], "size_years": 1.0, "years_patients": 100,
             "years_list": [1.0, 3.0, 7.0], "chunk_size": 4096},
}
STUDY_MEMORY = {"quick": [256, 1024], "full": [256, 1024, 4096, 16384]}
STUDY_SETTINGS = {"chunk_size": 256, "trt_days": 91.3125, "horizon_days": 182.625}
# Small-batch gradient latency (bench_gradient.py): steps, repeats, forward-mode comparison.
GRADIENT = {"quick": {"dts": [1.0 / 6.0], "repeats": 2, "forward_mode": False},
            "full": {"dts": [1.0 / 6.0, 1.0 / 4.0, 1.0 / 2.0], "repeats": 3, "forward_mode": True}}


# ----------------------------------------------------------------------------- worker side

def worker(name: str, config_path: str) -> int:
    """Run one peer and print its result as one JSON line (``MARK`` + JSON)."""
    with open(config_path) as fh:
        cfg = json.load(fh)
    start = time.perf_counter()
    try:
        import bench_peers

        result = bench_peers.PEERS[name](cfg)
        code = 0
    except Exception as exc:  # noqa: BLE001 - reported in the results, the run goes on
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
        code = 0
    result["wall_s"] = time.perf_counter() - start
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    print(MARK + json.dumps(result, default=_json_default), flush=True)
    return code


def _json_default(value):
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:
        pass
    return str(value)


# ----------------------------------------------------------------------------- orchestrator

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


_BUSY = ("import time\nc = time.process_time()\ns = 0\nfor i in range(3_000_000):\n    s += i\n"
         "print(time.process_time() - c)")


def effective_cores(n: int) -> float:
    """CPU seconds obtained per wall second by ``n`` concurrent busy processes (about ``n`` on an
    idle machine; less when other work shares the cores)."""
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", _BUSY], stdout=subprocess.PIPE, text=True) for _ in range(n)]
    cpu = sum(float(p.communicate()[0].strip() or 0.0) for p in procs)
    return round(cpu / max(time.perf_counter() - start, 1e-9), 2)


def hardware_block() -> dict:
    """Host, CPU, memory, JAX devices (with device_kind) and library versions."""
    uname = platform.uname()
    info = {
        "hostname": socket.gethostname(), "platform": platform.platform(), "processor": platform.processor(),
        "cpu_model": _cpu_model(), "uname": {k: getattr(uname, k) for k in ("system", "node", "release", "version",
                                                                          "machine")},
        "cpu_count": os.cpu_count(), "cores_available": available_cores(), "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "effective_cores_at_start": effective_cores(available_cores()),
    }
    try:
        pages, page = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gb"] = round(pages * page / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    try:
        import jax

        info["jax_devices"] = [{"id": d.id, "platform": d.platform, "device_kind": d.device_kind}
                               for d in jax.devices()]
        info["jax_backend"] = jax.default_backend()
    except Exception as exc:  # noqa: BLE001
        info["jax_devices"] = f"unavailable: {exc}"
    info["versions"] = {p: _version(p) for p in VERSIONED}
    info["versions"]["popsim"] = _version("popsim")
    return info


def _missing(peer: str) -> list[str]:
    return [m for m in REQUIRES.get(peer, ()) if importlib.util.find_spec(m) is None]


def _peer_env(name: str, cores: int) -> dict:
    env = dict(os.environ)
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", env.get("XLA_FLAGS", "")).strip()
    if name in ("popsim-sharded", "scaling"):
        flags = f"{flags} --xla_force_host_platform_device_count={cores}".strip()
    if flags:
        env["XLA_FLAGS"] = flags
    else:
        env.pop("XLA_FLAGS", None)
    if name in ("reference", "diffrax", "scipy"):
        env["JAX_ENABLE_X64"] = "1"
    else:
        env.pop("JAX_ENABLE_X64", None)
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    env["NUMBA_NUM_THREADS"] = str(cores)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def run_peer(name: str, cfg: dict, work: Path, cores: int, timeout_s: float, log) -> dict:
    """Run ``name`` in a subprocess and return its parsed JSON (or an error record)."""
    config_path = work / f"{name}.json"
    config_path.write_text(json.dumps(cfg))
    command = [sys.executable, str(Path(__file__).resolve()), "--peer", name, "--config", str(config_path)]
    log(f"  running {name} ...")
    start = time.perf_counter()
    load_before = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    try:
        proc = subprocess.run(command, env=_peer_env(name, cores), capture_output=True, text=True, timeout=timeout_s,
                              cwd=str(ROOT))
    except subprocess.TimeoutExpired as exc:
        return {"error": f"timed out after {timeout_s:.0f} s", "stderr_tail": (exc.stderr or "")[-2000:]
                if isinstance(exc.stderr, str) else ""}
    wall = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if not lines:
        return {"error": f"peer exited with code {proc.returncode} and no result",
                "stderr_tail": proc.stderr[-3000:], "stdout_tail": proc.stdout[-2000:], "subprocess_s": wall}
    result = json.loads(lines[-1][len(MARK):])
    result["subprocess_s"] = wall
    result["load_average_before"] = load_before
    if "error" in result:
        log(f"  {name}: ERROR {result['error']}")
    return result


def _fmt(x, digits=3) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if isinstance(x, float) and (math.isinf(x) or math.isnan(x)):
        return str(x)
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 1:
        return f"{x:.{max(digits - 2, 1)}f}"
    return f"{x:.{digits - 1}g}" if abs(x) >= 0.01 else f"{x:.1e}"


def _accuracy_cells(acc: dict | None) -> tuple[str, str]:
    if not acc:
        return "-", "-"
    rel = acc["max_rel_error"]
    short = {"total_testosterone_nmol_l": "T", "lh_iu_l": "LH", "fsh_iu_l": "FSH", "sperm_concentration_m_ml": "sperm"}
    cell = " / ".join(f"{rel[k]:.1e}" for k in short)
    return cell, f"{acc['recovery_diff_days']:.1e}"


def _settings_cell(name: str, r: dict) -> str:
    s = r.get("settings") or {}
    if name.startswith("popsim"):
        method = s.get("method", "rk4")
        quiet = f" (ROS34PW2 {s['quiet_dt_days']:g} d after {s['quiet_after_days']:g} d without doses)" \
            if method.endswith("-ros34pw2") else ""
        return f"{method}: RK4 dt={s.get('dt_days', 0) * 24:.0f} h{quiet}, {s.get('precision', '')}"
    if "rtol" in s:
        extra = f", {s['precision']}" if "precision" in s else ""
        return f"rtol={s['rtol']:.0e}, atol={s['atol']:.0e}{extra}"
    return "-"


def _rows(results: dict) -> list[tuple[str, dict, str]]:
    """(row name, result, note) for every timed configuration (numba gives two rows)."""
    rows = []
    for name, r in results.items():
        if "error" in r or "skipped" in r:
            continue
        if name == "numba" and r.get("threads"):
            for key, v in sorted(r["threads"].items(), key=lambda kv: int(kv[0])):
                row = dict(r, run_s=v["run_s"], cpu_s=v.get("cpu_s"), patient_years_per_s=v["patient_years_per_s"])
                rows.append((f"numba ({v['threads']} thread{'s' if v['threads'] > 1 else ''})", row, ""))
        else:
            rows.append((name, r, "extrapolated from the subset" if r.get("extrapolated") else ""))
    return rows


def compute_ratios(results: dict) -> dict:
    """popsim throughput / peer throughput, for popsim on 1 device and sharded over all cores."""
    base = {k: results[k]["patient_years_per_s"] for k in ("popsim", "popsim-sharded")
            if k in results and "patient_years_per_s" in results[k]}
    ratios = {}
    for row, r, _ in _rows(results):
        speed = r.get("patient_years_per_s")
        if not speed:
            continue
        ratios[row] = {f"{k}_over_peer": base[k] / speed for k in base}
    return ratios


def markdown(report: dict) -> str:
    hw, wl = report["hardware"], report["workload"]
    results = report["peers"]
    lines = [f"# popsim benchmark ({report['mode']}) - {report['host']} {report['timestamp']}", ""]
    devices = hw.get("jax_devices")
    dev_text = ", ".join(f"{d['platform']}:{d['device_kind']}" for d in devices) if isinstance(devices, list) else devices
    v = hw["versions"]
    lines += [f"- Hardware: {hw['cpu_model']} ({hw['uname']['machine']}), {hw['cores_available']} cores available "
              f"(cpu_count {hw['cpu_count']}), {hw.get('memory_gb', '?')} GB; JAX devices: {dev_text}; load average "
              f"at start {', '.join(f'{x:.1f}' for x in hw.get('load_average_at_start') or [])}; effective cores "
              f"(CPU-s per wall-s of {hw['cores_available']} busy processes) {hw.get('effective_cores_at_start')} at start, "
              f"{hw.get('effective_cores_at_end')} at end",
              "- Versions: " + ", ".join(f"{k} {v[k]}" for k in v if v[k]),
              f"- Workload: {wl['description']}",
              f"- Accuracy: against popsim's float64 reference on patients {wl['accuracy_subset']} "
              f"({report['reference'].get('seconds', float('nan')):.0f} s); targets for the adaptive peers: "
              f"hormone relative error <= {report['accuracy_targets']['rel_error']:.2e}, recovery-time difference "
              f"<= {report['accuracy_targets']['recovery_days']:.2e} d ({report['accuracy_targets']['source']})",
              f"- Metric: patient-years simulated per second (daily outputs of {', '.join(wl['timed_observables'])}), "
              "compile time excluded (first call compiles; the median of the timed repeats is used)", ""]
    head = ("| peer | settings | timed | compile s | run s | patient-years/s | patient-years/CPU-s | "
            "field evals / patient-year | popsim 1-dev / peer | popsim all-cores / peer | "
            "max rel err T / LH / FSH / sperm | recovery diff d | peak RSS MB | note |")
    lines += [head, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|"]
    ratios = report["ratios"]
    for row, r, note in _rows(results):
        acc, rec = _accuracy_cells(r.get("accuracy"))
        ratio = ratios.get(row, {})
        per_cpu = r["patient_years"] / statistics.median(r["cpu_s"]) if r.get("cpu_s") else None
        if r.get("accuracy_matched") is False:
            note = (note + "; " if note else "") + "accuracy NOT matched"
        lines.append(f"| {row} | {_settings_cell(row, r)} | {r['n_patients']} x {r['years']:g} y | "
                     f"{_fmt(r.get('compile_s'))} | {_fmt(statistics.median(r['run_s']))} | "
                     f"{_fmt(r['patient_years_per_s'])} | {_fmt(per_cpu)} | "
                     f"{_fmt(r.get('field_evaluations_per_patient_year'))} | {_fmt(ratio.get('popsim_over_peer'))} | "
                     f"{_fmt(ratio.get('popsim-sharded_over_peer'))} | {acc} | {rec} | {_fmt(r.get('peak_rss_mb'))} | "
                     f"{note} |")
    for name, r in results.items():
        if "skipped" in r:
            lines.append(f"| {name} | skipped: {r['skipped']} |||||||||||||")
        elif "error" in r:
            lines.append(f"| {name} | ERROR: {r['error'][:200]} |||||||||||||")
    lines.append("")
    new, old = results.get("popsim", {}), results.get("popsim-rk4", {})
    if new.get("field_evaluations_per_patient_year") and old.get("field_evaluations_per_patient_year"):
        lines += [f"popsim default ({new['settings']['method']}) over rk4, same run: "
                  f"{old['field_evaluations_per_patient_year'] / new['field_evaluations_per_patient_year']:.2f}x fewer "
                  f"field evaluations per patient-year, {new['patient_years_per_s'] / old['patient_years_per_s']:.2f}x "
                  "the patient-years/s.", ""]
    notes = [f"- {name}: {n}" for name, r in results.items() for n in r.get("notes", [])]
    for name, r in results.items():
        if r.get("calibration"):
            tried = ", ".join(f"{t['rtol']:.0e}: {t['worst_rel_error']:.1e}/{t['recovery_diff_days']:.1e} d"
                              f"{'' if t['meets'] else ' x'}" for t in r["calibration"])
            notes.append(f"- {name} tolerance search (rtol: worst rel err / recovery diff; x = misses): {tried}")
        if r.get("port_check"):
            notes.append(f"- {name} port check: " + ", ".join(f"{k} {v:.1e}" for k, v in r["port_check"].items()))
    if notes:
        lines += ["Notes:", ""] + notes + [""]
    if report.get("gradient"):
        lines += _gradient_markdown(report["gradient"])
    if report.get("scaling"):
        lines += _scaling_markdown(report["scaling"])
    if report.get("problems"):
        lines += ["## Problems found in popsim", ""] + [f"- {p}" for p in report["problems"]] + [""]
    lines.append(f"Total benchmark time: {report['total_seconds']:.0f} s.")
    return "\n".join(lines) + "\n"


def _scaling_markdown(s: dict) -> list[str]:
    lines = ["## Scaling (popsim)", ""]
    sc = s.get("throughput")
    if sc and "rows" in sc:
        lines += [f"{sc['label']}; compile excluded by a warm-up on the first chunk (same compiled program).", "",
                  "| sweep | patients | years | run s | patient-years/s |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {r['sweep']} | {r['n_patients']} | {r['years']:g} | {_fmt(r['seconds'])} | "
                  f"{_fmt(r['patient_years_per_s'])} |" for r in sc["rows"]]
        lines.append("")
    elif sc:
        lines += [f"throughput sweep: ERROR {sc.get('error')}", ""]
    mem = s.get("study_memory")
    if mem:
        lines += ["Outcome-only streaming study (`run_study`, n_trajectories=0, chunk "
                  f"{STUDY_SETTINGS['chunk_size']}, TRT {STUDY_SETTINGS['trt_days']:g} d + "
                  f"{STUDY_SETTINGS['horizon_days']:g} d follow-up), each size in its own process:", "",
                  "| patients | run s | peak RSS MB |", "|---:|---:|---:|"]
        lines += [f"| {r.get('n_patients')} | {_fmt(r.get('seconds'))} | {_fmt(r.get('peak_rss_mb'))} |"
                  if "error" not in r else f"| {r.get('n_patients', '?')} | ERROR {r['error'][:120]} | |" for r in mem]
        lines.append("")
    return lines


def _gradient_markdown(g: dict) -> list[str]:
    lines = ["## Small-batch gradient latency (NUTS regime)", ""]
    if "error" in g:
        return lines + [f"ERROR {g['error']}", ""]
    rows = g["rows"]
    r0 = rows[0]
    lines += [f"One `jax.value_and_grad` of a log-density (sum of log T, LH, sperm at {r0['n_outputs']} monthly "
              f"outputs) w.r.t. {len(r0['parameters'])} per-patient log-parameters, {r0['n_patients']} patients x "
              f"{r0['years']:g} y (enanthate 200 mg/7 d for {r0['trt_days']:g} d then off), {r0['precision']}, "
              f"jitted through `population_simulator`, compile excluded (benchmarks/bench_gradient.py). "
              f"Target: {g['target_ms']:g} ms.", "",
              "| dt | steps / patient | forward ms | gradient ms | gradient / target | gradient / forward | "
              "finite-difference gradient ms | forward-mode gradient ms | gradient compile s |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| 1/{1 / r['dt_days']:.3g} d | {r['steps_per_patient']} | {_fmt(r['forward_ms'])} | "
                     f"{_fmt(r['gradient_ms'])} | {_fmt(r['gradient_over_target'])} | {_fmt(r['gradient_over_forward'])} | "
                     f"{_fmt(r.get('finite_difference_ms'))} | {_fmt(r.get('forward_mode_ms'))} | "
                     f"{_fmt(r['gradient_compile_s'])} |")
    return lines + [""]


def _integrator_line(pattern: str) -> str:
    try:
        import popsim.solve.integrator as integ

        source = Path(integ.__file__).read_text().splitlines()
        for i, line in enumerate(source, 1):
            if pattern in line:
                return f"popsim/solve/integrator.py:{i}"
    except Exception:  # noqa: BLE001
        pass
    return "popsim/solve/integrator.py"


def detect_problems(report: dict) -> list[str]:
    problems = []
    for name, r in report["peers"].items():
        if r.get("failed_patients"):
            problems.append(f"{name}: {r['failed_patients']} patients flagged failed in the benchmark cohort")
        acc = r.get("accuracy")
        if name.startswith("popsim") and acc and not bc_meets(acc):
            import bench_common as bc

            misses = [f"{k} {v:.2e} (patient {acc['worst_at'].get(k, {}).get('patient')}, day "
                      f"{acc['worst_at'].get(k, {}).get('day', float('nan')):g})"
                      for k, v in acc["max_rel_error"].items() if not v < bc.TARGET_RELATIVE_ERROR]
            if not acc["recovery_diff_days"] < bc.TARGET_RECOVERY_DAYS:
                misses.append(f"recovery time {acc['recovery_diff_days']:.2e} d")
            problems.append(f"{name} (default SolverSettings: dt_days 1/6, float32) misses its documented "
                            f"accuracy target (relative error < {bc.TARGET_RELATIVE_ERROR:g}, recovery < "
                            f"{bc.TARGET_RECOVERY_DAYS:g} d, popsim/verify/accuracy.py) on the benchmark subset: "
                            + "; ".join(misses) + ". Patient designs: see workload.accuracy_subset "
                            "(product i % 3, protocol (i // 3) % 3, duration (i // 9) % 5).")
    return problems


def bc_meets(acc: dict) -> bool:
    import bench_common as bc

    return bc.meets(acc, bc.TARGET_RELATIVE_ERROR, bc.TARGET_RECOVERY_DAYS)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small cohorts, short horizon (about 7 min on 2 cores)")
    parser.add_argument("--peers", default=",".join(ALL_PEERS),
                        help=f"comma-separated peers among {', '.join(ALL_PEERS)} (default: all)")
    parser.add_argument("--years", type=float, help="simulated horizon in years (quick 3, full 7)")
    parser.add_argument("--patients", type=int, help="popsim cohort size (numba/diffrax cohorts are capped by it)")
    parser.add_argument("--out", help="output directory (default benchmarks/results)")
    parser.add_argument("--scaling", dest="scaling", action="store_true", default=None,
                        help="run the scaling section (default: on; quick mode uses small sizes)")
    parser.add_argument("--no-scaling", dest="scaling", action="store_false")
    parser.add_argument("--no-gradient", dest="gradient", action="store_false", default=True,
                        help="skip the small-batch gradient latency section")
    parser.add_argument("--repeats", type=int, help="timed repeats of popsim (default 2)")
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peer:
        return worker(args.peer, args.config)

    t_start = time.perf_counter()
    mode = "quick" if args.quick else "full"
    m = dict(MODES[mode])
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = sorted(set(peers) - set(ALL_PEERS))
    if unknown:
        parser.error(f"unknown peers {unknown}; valid peers are {', '.join(ALL_PEERS)}")
    years = float(args.years or m["years"])
    cores = available_cores()
    out_dir = Path(args.out) if args.out else HERE / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "host"
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = out_dir / f"{host}-{stamp}"
    log = lambda msg: print(msg, flush=True)  # noqa: E731

    import bench_common as bc

    h = bc.horizon(years)
    subset = bc.accuracy_subset(quick=args.quick)
    n_popsim = int(args.patients or m["popsim_patients"])
    need = max(subset) + 1
    n_numba = max(min(m["numba_patients"], n_popsim), need)
    n_diffrax = max(min(m["diffrax_patients"], n_popsim), need)
    repeats = int(args.repeats or m["repeats"])
    log(f"popsim benchmark ({mode}): peers {', '.join(peers)}; {bc.describe(h)}; {cores} cores")
    hardware = hardware_block()
    report = {
        "benchmark": "popsim vs peers", "schema": 1, "mode": mode, "host": host, "timestamp": stamp,
        "command": [Path(sys.argv[0]).name] + (sys.argv[1:] if argv is None else list(argv)),
        "hardware": hardware,
        "workload": {"description": bc.describe(h), "years": h.years, "durations_years": list(h.durations_years),
                     "recovery_years_min": h.recovery_years, "products": [list(p) for p in bc.PRODUCTS],
                     "protocols": list(bc.PROTOCOLS), "output_step_days": 1.0,
                     "timed_observables": list(bc.TIMED_OBSERVABLES), "accuracy_observables": list(bc.ACCURACY_OBSERVABLES),
                     "accuracy_subset": subset, "cohort_sizes": {"popsim": n_popsim, "popsim-rk4": n_popsim, "popsim-sharded": n_popsim,
                                                                 "numba": n_numba, "diffrax": n_diffrax,
                                                                 "scipy": len(subset)},
                     "patient_years_definition": "patients x simulated horizon (every patient is simulated over "
                                                 "the whole horizon with daily outputs)"},
        "peers": {}, "problems": [],
    }

    with tempfile.TemporaryDirectory(prefix="popsim-bench-") as tmp:
        work = Path(tmp)
        common = {"years": years, "subset": subset, "reference_path": str(work / "reference.npz"),
                  "quick": args.quick, "cores": cores}
        # 1. Reference on the accuracy subset.
        ref = run_peer("reference", dict(common), work, cores, m["timeout_s"], log)
        report["reference"] = ref
        if "error" in ref:
            common["reference_path"] = None
        else:
            log(f"  reference: {len(subset)} patients in {ref['seconds']:.1f} s")
        targets = {"rel_error": bc.TARGET_RELATIVE_ERROR, "recovery_days": bc.TARGET_RECOVERY_DAYS,
                   "source": "popsim's documented targets (popsim not run)"}
        for name in peers:
            missing = _missing(name)
            if missing:
                msg = f"package(s) {', '.join(missing)} not installed"
                log(f"  {name}: skipped ({msg})")
                report["peers"][name] = {"skipped": msg}
                continue
            cfg = dict(common, target_rel_error=targets["rel_error"], target_recovery_days=targets["recovery_days"],
                       repeats=repeats if name.startswith("popsim") else m["peer_repeats"])
            if name.startswith("popsim"):
                cfg.update(n_patients=n_popsim, subset_out=str(work / f"{name}-subset.npz"))
                if name == "popsim-rk4":
                    cfg.update(method="rk4")
            elif name == "numba":
                cfg.update(n_patients=n_numba, popsim_subset=str(work / "popsim-subset.npz"))
            elif name == "diffrax":
                cfg.update(n_patients=n_diffrax, max_trials=4 if args.quick else 5)
            elif name == "scipy":
                cfg.update(max_trials=3 if args.quick else 4)
            result = run_peer(name, cfg, work, cores, m["timeout_s"], log)
            report["peers"][name] = result
            if "patient_years_per_s" in result:
                log(f"  {name}: {result['patient_years_per_s']:.1f} patient-years/s "
                    f"(compile {result.get('compile_s', 0):.1f} s, peak RSS {result['peak_rss_mb']:.0f} MB)")
            if name == "popsim" and result.get("accuracy"):
                acc = result["accuracy"]
                targets = {"rel_error": acc["worst_rel_error"],
                           "recovery_days": max(acc["recovery_diff_days"], 1e-3),
                           "source": "popsim's measured errors on the subset (recovery floored at 0.001 d)"}
        report["accuracy_targets"] = targets

        if args.gradient:
            log("small-batch gradient ...")
            report["gradient"] = run_peer("gradient", dict(common, n_patients=40, **GRADIENT[mode]), work, cores,
                                          600, log)
            for r in report["gradient"].get("rows", []):
                log(f"  gradient dt 1/{1 / r['dt_days']:.3g}: {r['gradient_ms']:.0f} ms "
                    f"({r['gradient_over_target']:.1f}x the {r['target_ms']:.0f} ms target), forward {r['forward_ms']:.0f} ms")
        run_scaling = True if args.scaling is None else args.scaling
        if run_scaling:
            log("scaling section ...")
            scaling = {}
            scaling["throughput"] = run_peer("scaling", dict(common, **SCALING[mode]), work, cores, 900, log)
            scaling["study_memory"] = []
            for n in STUDY_MEMORY[mode]:
                r = run_peer("study-memory", dict(common, n_patients=n, **STUDY_SETTINGS), work, cores, 600, log)
                scaling["study_memory"].append(dict(r, n_patients=n))
                if "peak_rss_mb" in r:
                    log(f"  study {n} patients: {r.get('seconds', float('nan')):.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB")
            report["scaling"] = scaling

    report["ratios"] = compute_ratios(report["peers"])
    report["problems"] = detect_problems(report)
    report["hardware"]["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    report["hardware"]["effective_cores_at_end"] = effective_cores(cores)
    report["total_seconds"] = time.perf_counter() - t_start
    text = markdown(report)
    base.with_suffix(".json").write_text(json.dumps(report, indent=2, default=_json_default))
    base.with_suffix(".md").write_text(text)
    print()
    print(text)
    print(f"wrote {base.with_suffix('.json')} and {base.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
