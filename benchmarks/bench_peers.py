"""Peer runners. Each runs in its own subprocess (``benchmarks/run.py --peer NAME --config
FILE``), so that environment (XLA_FLAGS, JAX_ENABLE_X64) and peak memory are per peer, and
returns a JSON-able dict.

Common result fields: ``n_patients``, ``years``, ``patient_years`` (per timed run),
``compile_s``, ``run_s`` (each timed repeat), ``patient_years_per_s`` (median repeat),
``extrapolated`` (timed on a few patients only), ``accuracy`` (bench_common.compare on the
accuracy subset against popsim's float64 reference), ``settings`` (tolerance or step),
``peak_rss_mb`` (added by run.py), ``notes``.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np

import bench_common as bc


def _now() -> float:
    return time.perf_counter()


class _Clock:
    """Wall and process CPU time (all threads) of a block: ``with _Clock() as c: ...; c.wall, c.cpu``."""

    def __enter__(self):
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu
        return False


def _load_reference(cfg) -> tuple[np.ndarray, dict, np.ndarray] | None:
    if not cfg.get("reference_path") or not os.path.exists(cfg["reference_path"]):
        return None
    data = np.load(cfg["reference_path"])
    return data["times"], {k: data[k] for k in bc.ACCURACY_OBSERVABLES}, data["origin"]


def _subset_rows(out: dict, indices) -> dict:
    return {k: np.asarray(v)[list(indices)] for k, v in out.items()}


def _targets(cfg) -> tuple[float, float]:
    return float(cfg["target_rel_error"]), float(cfg["target_recovery_days"])


def _throughput(n: int, years: float, seconds: list[float]) -> float:
    return n * years / statistics.median(seconds)


def _jax_devices() -> list[dict]:
    import jax

    return [{"id": d.id, "platform": d.platform, "device_kind": d.device_kind} for d in jax.devices()]


# ----------------------------------------------------------------------------- reference

def peer_reference(cfg) -> dict:
    """Float64 reference (popsim.solve.reference) on the accuracy subset; saves an npz."""
    import jax

    if not jax.config.jax_enable_x64:
        raise RuntimeError("the reference needs JAX_ENABLE_X64=1")
    from popsim.solve.reference import reference_solution

    h = bc.horizon(cfg["years"])
    times = bc.output_times(h)
    indices = cfg["subset"]
    _, doses, params, origin = bc.build_cohort(indices, h)
    start = _now()
    ref = reference_solution(params, doses, times)
    seconds = _now() - start
    np.savez(cfg["reference_path"], times=times, origin=origin,
             **{k: np.asarray(ref[k], np.float64) for k in bc.ACCURACY_OBSERVABLES})
    return {"label": "reference (diffrax Dopri8, float64, rtol 1e-10, atol 1e-12)", "seconds": seconds,
            "n_patients": len(indices), "patients": list(indices), "years": h.years,
            "recovery_days_ge_15": [None if not o else float(t) for t, o in
                                    zip(*bc.recovery_days(times, ref["sperm_concentration_m_ml"], origin))]}


# ----------------------------------------------------------------------------- popsim

def _popsim_run(params, doses, times, settings, observables, species):
    from popsim.solve.run import iterate_chunks

    parts, failed = {}, []
    for chunk in iterate_chunks(params, doses, times, settings, observables=observables, species=species):
        for k, v in chunk.outputs.items():
            parts.setdefault(k, []).append(v)
        failed.append(chunk.failed)
    return {k: np.concatenate(v) for k, v in parts.items()}, np.concatenate(failed)


def _field_evaluations(doses, times, settings) -> float:
    """Vector-field evaluations per patient (Jacobian-vector products counted as one each)
    that the compiled simulator executes on this cohort's schedule (popsim.solve.schedule)."""
    from popsim.solve.schedule import field_evaluations, plan_schedule

    return float(field_evaluations(plan_schedule(times, settings, doses).grid, settings.method))


def peer_popsim(cfg) -> dict:
    """popsim.solve.run.iterate_chunks on the cohort (daily outputs); sharded over host devices
    when XLA_FLAGS forces several (set by run.py before JAX starts)."""
    import jax

    import popsim

    h = bc.horizon(cfg["years"])
    times = bc.output_times(h)
    n = int(cfg["n_patients"])
    _, doses, params, origin = bc.build_cohort(range(n), h)
    settings = popsim.SolverSettings(chunk_size=int(cfg.get("chunk_size", popsim.SolverSettings.chunk_size)),
                                     **({"method": cfg["method"]} if cfg.get("method") else {}))
    species = bc.cohort_species()
    evaluations = _field_evaluations(doses, times, settings)
    accuracy_observables = tuple(dict.fromkeys(bc.TIMED_OBSERVABLES + bc.ACCURACY_OBSERVABLES))
    start = _now()
    first, failed = _popsim_run(params, doses, times, settings, accuracy_observables, species)
    first_s = _now() - start
    run_s, cpu_s = [], []
    for _ in range(int(cfg["repeats"])):
        with _Clock() as clock:
            _popsim_run(params, doses, times, settings, bc.TIMED_OBSERVABLES, species)
        run_s.append(clock.wall)
        cpu_s.append(clock.cpu)
    result = {
        "label": f"popsim ({len(jax.devices())} {jax.devices()[0].platform} device{'s' if len(jax.devices()) > 1 else ''})",
        "n_patients": n, "years": h.years, "patient_years": n * h.years, "compile_s": max(first_s - min(run_s), 0.0),
        "first_call_s": first_s, "run_s": run_s, "cpu_s": cpu_s, "patient_years_per_s": _throughput(n, h.years, run_s),
        "extrapolated": False, "devices": _jax_devices(), "failed_patients": int(failed.sum()),
        "settings": {"dt_days": settings.dt_days, "precision": settings.precision, "chunk_size": settings.chunk_size,
                     "method": settings.method, "quiet_after_days": settings.quiet_after_days,
                     "quiet_dt_days": settings.quiet_dt_days, "scheme": f"{settings.method}, exact dose times, closed-form PK"},
        "field_evaluations_per_patient_year": evaluations / h.years,
        "observables": list(bc.TIMED_OBSERVABLES), "notes": [],
    }
    ref = _load_reference(cfg)
    subset = cfg["subset"]
    if ref is not None:
        ref_times, ref_out, ref_origin = ref
        if max(subset) < n:
            sim = _subset_rows(first, subset)
        else:
            _, sdoses, sparams, _ = bc.build_cohort(subset, h)
            sim, _ = _popsim_run(sparams, sdoses, times, settings, bc.ACCURACY_OBSERVABLES, species)
        result["accuracy"] = bc.compare(ref_times, sim, ref_out, ref_origin, subset)
        if cfg.get("subset_out"):
            np.savez(cfg["subset_out"], **{k: np.asarray(sim[k], np.float64) for k in bc.ACCURACY_OBSERVABLES})
    return result


# ----------------------------------------------------------------------------- numba

def peer_numba(cfg) -> dict:
    """Compiled per-patient adaptive loop (numba, Dormand-Prince 5(4)), prange over patients;
    timed with 1 thread (mrgsolve-like) and with every core."""
    import numba

    import bench_port as bp

    h = bc.horizon(cfg["years"])
    times = bc.output_times(h)
    species = bc.cohort_species()
    target_rel, target_days = _targets(cfg)

    def prepare(indices):
        _, doses, params, _ = bc.build_cohort(indices, h)
        k1, k2, f, v = bp.chain_rates(params, species)
        kinds, index = bp.species_tables(species)
        return (bp.parameter_matrix(params), k1, k2, f, v, kinds, index, *bp.dose_columns(doses, species))

    start = _now()
    solve = bp.make_numba_solver(parallel=True)
    subset = cfg["subset"]
    sub_args = prepare(subset)
    out = np.zeros((len(subset), times.size, bp.N_OUT))
    solve(*sub_args, times, 1e-6, 1e-9, out)
    first_s = _now() - start
    start = _now()
    solve(*sub_args, times, 1e-6, 1e-9, out)
    compile_s = max(first_s - (_now() - start), 0.0)

    ref = _load_reference(cfg)
    result = {"label": "numba per-patient DOPRI5 (PK as ODE states, doses as jumps)", "compile_s": compile_s,
              "notes": ["hand port of popsim/model/hpg.py + pk.py (benchmarks/bench_port.py)"]}
    matched = True
    rtol, atol = 1e-6, 1e-9
    if ref is not None:
        ref_times, ref_out, ref_origin = ref

        def trial(rtol, atol):
            s = _now()
            solve(*sub_args, times, rtol, atol, out)
            seconds = _now() - s
            sim = {k: out[:, :, j].copy() for j, k in enumerate(bc.ACCURACY_OBSERVABLES)}
            return bc.compare(ref_times, sim, ref_out, ref_origin, subset), seconds

        rtol, atol, errors, _, trials, matched = bc.calibrate(trial, cfg.get("start_rtol", 5e-6), target_rel,
                                                              target_days, max_trials=6)
        result.update(accuracy=errors, calibration=trials, accuracy_matched=matched)
        # Port check: the port must reproduce popsim's reference within the accuracy target at
        # its tightest tolerance before it is timed, and agree with popsim's own outputs.
        tight, _ = trial(1e-9, 1e-12)
        result["port_check"] = {"vs_reference_at_rtol_1e-9": tight["worst_rel_error"],
                                "recovery_diff_days_at_rtol_1e-9": tight["recovery_diff_days"]}
        if cfg.get("popsim_subset") and os.path.exists(cfg["popsim_subset"]):
            pop = np.load(cfg["popsim_subset"])
            trial(rtol, atol)
            result["port_check"]["vs_popsim_max_rel_diff"] = max(
                float(np.max(bc.relative_error(out[:, :, j], pop[k]))) for j, k in enumerate(bc.ACCURACY_OBSERVABLES))
        if not bc.meets(tight, bc.TARGET_RELATIVE_ERROR, bc.TARGET_RECOVERY_DAYS):
            result["error"] = ("the numba port does not reproduce popsim's reference within the accuracy target "
                               f"(worst relative error {tight['worst_rel_error']:.2e}); not timed")
            return result
    result["settings"] = {"rtol": rtol, "atol": atol, "scheme": "Dormand-Prince 5(4), I-controller, RMS norm"}

    n = int(cfg["n_patients"])
    args = prepare(range(n))
    out_all = np.zeros((n, times.size, bp.N_OUT))
    cores = int(cfg["cores"])
    variants = {}
    for threads in sorted({1, cores}):
        numba.set_num_threads(threads)
        run_s, cpu_s = [], []
        for _ in range(int(cfg["repeats"])):
            with _Clock() as clock:
                steps = solve(*args, times, rtol, atol, out_all)
            run_s.append(clock.wall)
            cpu_s.append(clock.cpu)
        variants[str(threads)] = {"threads": threads, "run_s": run_s, "cpu_s": cpu_s,
                                  "patient_years_per_s": _throughput(n, h.years, run_s)}
    result.update(n_patients=n, years=h.years, patient_years=n * h.years, extrapolated=False,
                  run_s=variants["1"]["run_s"], cpu_s=variants["1"]["cpu_s"],
                  patient_years_per_s=variants["1"]["patient_years_per_s"],
                  threads=variants, mean_steps_per_patient_day=float(np.mean(steps) / (times[-1] or 1.0)),
                  failed_patients=int(np.sum(~np.isfinite(out_all[:, -1, 0]))))
    return result


# ----------------------------------------------------------------------------- diffrax

def peer_diffrax(cfg) -> dict:
    """diffrax Tsit5 + PIDController vmapped over the cohort in lockstep (float64)."""
    import bench_diffrax as bd

    h = bc.horizon(cfg["years"])
    times = bc.output_times(h)
    n = int(cfg["n_patients"])
    subset = cfg["subset"]
    if max(subset) >= n:
        raise ValueError(f"the diffrax cohort ({n}) must contain the accuracy subset {subset}")
    _, doses, params, _ = bc.build_cohort(range(n), h)
    precision = cfg.get("precision", "float64")
    run = bd.make_diffrax_runner(bc.cohort_species(), precision)
    target_rel, target_days = _targets(cfg)
    ref = _load_reference(cfg)
    first = {}
    start = _now()
    run.compile(params, doses, times)
    compile_s = _now() - start

    def trial(rtol, atol):
        s = _now()
        out, steps, width, n_nodes = run(params, doses, times, rtol, atol)
        seconds = _now() - s
        first.update(steps=steps, width=width, nodes=n_nodes)
        if ref is None:
            return {"worst_rel_error": 0.0, "recovery_diff_days": 0.0}, seconds
        sim = {k: out[list(subset), :, j] for j, k in enumerate(bc.ACCURACY_OBSERVABLES)}
        return bc.compare(ref[0], sim, ref[1], ref[2], subset), seconds

    result = {"label": f"diffrax Tsit5 + PIDController, vmap lockstep ({precision})", "notes": [
        "segments common to the cohort: union of every patient's dose times and the daily outputs; "
        "PK chains as ODE states, doses as jumps; tolerance search on the timed cohort (errors on the subset)"]}
    if ref is not None:
        rtol, atol, errors, _, trials, matched = bc.calibrate(trial, cfg.get("start_rtol", 1e-5), target_rel,
                                                              target_days, max_trials=int(cfg.get("max_trials", 5)))
        result.update(accuracy=errors, calibration=trials, accuracy_matched=matched)
    else:
        rtol, atol = 1e-6, 1e-9
        trial(rtol, atol)
    run_s, cpu_s = [], []
    for _ in range(int(cfg["repeats"])):
        with _Clock() as clock:
            run(params, doses, times, rtol, atol)
        run_s.append(clock.wall)
        cpu_s.append(clock.cpu)
    result.update(n_patients=n, years=h.years, patient_years=n * h.years, compile_s=compile_s,
                  run_s=run_s, cpu_s=cpu_s, patient_years_per_s=_throughput(n, h.years, run_s),
                  extrapolated=False, devices=_jax_devices(),
                  settings={"rtol": rtol, "atol": atol, "precision": precision, "solver": "Tsit5",
                            "controller": "PIDController (I)", "segments": first["nodes"]},
                  mean_steps_per_patient_day=float(np.mean(first["steps"]) / (times[-1] or 1.0)))
    return result


# ----------------------------------------------------------------------------- scipy

def peer_scipy(cfg) -> dict:
    """scipy solve_ivp LSODA, one patient at a time; timed on the accuracy subset and
    extrapolated."""
    import bench_scipy as bs

    h = bc.horizon(cfg["years"])
    times = bc.output_times(h)
    subset = cfg["subset"]
    _, doses, params, _ = bc.build_cohort(subset, h)
    start = _now()
    peer = bs.ScipyPeer(params, doses, bc.cohort_species(), rhs=cfg.get("rhs", "auto"))
    setup_s = _now() - start
    target_rel, target_days = _targets(cfg)
    ref = _load_reference(cfg)
    nfev = {}

    cpu = {}

    def trial(rtol, atol):
        outs = []
        total = 0
        with _Clock() as clock:
            for i in range(len(subset)):
                o, f = peer.solve_patient(i, times, rtol, atol)
                outs.append(o)
                total += f
        seconds = clock.wall
        nfev[rtol] = total
        cpu.setdefault(rtol, []).append(clock.cpu)
        out = np.stack(outs)
        if ref is None:
            return {"worst_rel_error": 0.0, "recovery_diff_days": 0.0}, seconds
        sim = {k: out[:, :, j] for j, k in enumerate(bc.ACCURACY_OBSERVABLES)}
        return bc.compare(ref[0], sim, ref[1], ref[2], subset), seconds

    result = {"label": f"scipy solve_ivp LSODA per patient ({peer.rhs} RHS)",
              "rhs_seconds_per_call": peer.rhs_timings, "rhs": peer.rhs, "setup_s": setup_s,
              # The interpreted RHS compiles nothing; the JAX RHS is jitted during set-up.
              "compile_s": setup_s if peer.rhs == "jax" else 0.0,
              "notes": [f"right-hand side: '{peer.rhs}' (faster per call: python {peer.rhs_timings.get('python', 0) * 1e6:.1f} us, "
                        f"jitted JAX {peer.rhs_timings.get('jax', 0) * 1e6:.1f} us)",
                        f"timed on the {len(subset)} accuracy-subset patients only and extrapolated to patient-years/s"]}
    if ref is not None:
        rtol, atol, errors, seconds, trials, matched = bc.calibrate(trial, cfg.get("start_rtol", 2e-5), target_rel,
                                                                    target_days, max_trials=int(cfg.get("max_trials", 4)))
        result.update(accuracy=errors, calibration=trials, accuracy_matched=matched)
        run_s = [seconds]
    else:
        rtol, atol = 1e-6, 1e-9
        run_s = [trial(rtol, atol)[1]]
    for _ in range(int(cfg.get("repeats_scipy", 0))):
        run_s.append(trial(rtol, atol)[1])
    n = len(subset)
    result.update(n_patients=n, years=h.years, patient_years=n * h.years, run_s=run_s, cpu_s=cpu.get(rtol),
                  patient_years_per_s=_throughput(n, h.years, run_s), extrapolated=True,
                  settings={"rtol": rtol, "atol": atol, "method": "LSODA", "rhs": peer.rhs},
                  rhs_evaluations=nfev.get(rtol))
    return result


# ----------------------------------------------------------------------------- scaling

def peer_scaling_popsim(cfg) -> dict:
    """popsim throughput vs population size and vs simulated years. Compile time is excluded
    by a warm-up on the first chunk of the same cohort over the same output times: the
    compiled program depends on the padded chunk size, the number of output times and the
    steps per output interval, and every chunk of a population is padded to one size."""
    import jax

    import popsim

    species = bc.cohort_species()
    chunk = int(cfg["chunk_size"])
    settings = popsim.SolverSettings(chunk_size=chunk)
    rows = []
    measured = {}
    for kind, n, years in [("size", n, cfg["size_years"]) for n in cfg["sizes"]] + \
                          [("years", cfg["years_patients"], y) for y in cfg["years_list"]]:
        key = (int(n), float(years))
        if key not in measured:
            h = bc.horizon(years)
            times = bc.output_times(h)
            _, doses, params, _ = bc.build_cohort(range(int(n)), h)
            first = min(int(n), chunk)
            start = _now()
            _popsim_run({k: v[:first] for k, v in params.items()}, type(doses)(*(a[:first] for a in doses)),
                        times, settings, bc.TIMED_OBSERVABLES, species)
            warm = _now() - start
            start = _now()
            _popsim_run(params, doses, times, settings, bc.TIMED_OBSERVABLES, species)
            seconds = _now() - start
            measured[key] = {"n_patients": int(n), "years": h.years, "seconds": seconds, "warmup_s": warm,
                             "patient_years_per_s": n * h.years / seconds}
        rows.append({"sweep": kind, **measured[key]})
    return {"label": f"popsim scaling ({len(jax.devices())} device(s), chunk_size {chunk})", "rows": rows,
            "warmup": "first chunk of the same cohort over the same output times (same compiled program)",
            "devices": _jax_devices()}


def peer_study_memory(cfg) -> dict:
    """Outcome-only streaming study (popsim.outcomes.study.run_study, n_trajectories=0)."""
    import popsim
    from popsim.outcomes.study import StudySpec, run_study
    from popsim.population.design import CohortDesign, TRTDesign
    from popsim.population.distributions import fixed

    design = CohortDesign(trt=TRTDesign(duration_days=fixed(float(cfg["trt_days"]))))
    study = StudySpec(n_patients=int(cfg["n_patients"]), n_trajectories=0,
                      recovery_horizon_days=float(cfg["horizon_days"]),
                      settings=popsim.SolverSettings(chunk_size=int(cfg["chunk_size"])))
    start = _now()
    result = run_study(design, study)
    seconds = _now() - start
    n_rows = len(next(iter(result.outcomes.values())))
    return {"n_patients": int(cfg["n_patients"]), "chunk_size": int(cfg["chunk_size"]), "seconds": seconds,
            "simulation_days": result.simulation_days, "outcome_rows": n_rows,
            "outcome_columns": len(result.outcomes)}


def peer_gradient(cfg) -> dict:
    """Small-batch gradient latency (bench_gradient.py): one reverse-mode gradient of a
    log-density for 40 patients x 3 years through population_simulator, at each step in
    ``cfg["dts"]``, against the 50 ms target; forward log-density, batched finite-difference
    gradient and forward-mode gradient for comparison."""
    import bench_gradient

    rows = [bench_gradient.measure(float(dt), int(cfg.get("n_patients", 40)), int(cfg.get("repeats", 3)),
                                   forward_mode=bool(cfg.get("forward_mode", True)))
            for dt in cfg.get("dts", [1.0 / 6.0])]
    return {"rows": rows, "target_ms": bench_gradient.TARGET_MS, "devices": _jax_devices()}


PEERS = {
    "reference": peer_reference,
    "popsim": peer_popsim,
    "popsim-rk4": peer_popsim,
    "popsim-sharded": peer_popsim,
    "numba": peer_numba,
    "diffrax": peer_diffrax,
    "scipy": peer_scipy,
    "scaling": peer_scaling_popsim,
    "study-memory": peer_study_memory,
    "gradient": peer_gradient,
}
