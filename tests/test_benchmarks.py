"""The benchmark harness runs end to end on a tiny problem and writes its JSON and table."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_writes_hardware_and_popsim_figure(tmp_path):
    command = [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--peers", "popsim", "--years", "1",
               "--patients", "64", "--out", str(tmp_path), "--no-scaling", "--no-gradient"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == 1 and files[0].with_suffix(".md").exists()
    report = json.loads(files[0].read_text())

    hardware = report["hardware"]
    for key in ("processor", "uname", "cpu_count", "jax_devices", "versions"):
        assert key in hardware, key
    assert all("device_kind" in d for d in hardware["jax_devices"])
    for package in ("jax", "jaxlib", "numpy", "scipy", "diffrax", "numba"):
        assert package in hardware["versions"], package

    popsim = report["peers"]["popsim"]
    assert "error" not in popsim, popsim.get("error")
    assert popsim["n_patients"] == 64 and popsim["years"] == 1.0
    assert popsim["patient_years_per_s"] > 0 and popsim["compile_s"] >= 0 and popsim["peak_rss_mb"] > 0
    assert popsim["accuracy"]["worst_rel_error"] < 1e-3 and popsim["accuracy"]["recovery_diff_days"] < 1.0
    assert report["ratios"]["popsim"]["popsim_over_peer"] == 1.0
    assert "patient-years/s" in files[0].with_suffix(".md").read_text()


def test_gradient_benchmark_reverse_mode_matches_forward_mode_and_finite_differences():
    """The small-batch gradient benchmark (bench_gradient.py) runs, reverse-mode gradients
    through population_simulator work, and they agree with forward mode (exactly) and with
    the batched finite differences (to their float32 truncation and round-off)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_gradient
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    r = bench_gradient.measure(1.0, n_patients=4, repeats=1, forward_mode=True)
    assert r["gradient_ms"] > 0 and r["forward_ms"] > 0 and r["gradient_over_target"] > 0
    assert all(abs(g) > 0 for g in r["gradient_sum_per_parameter"])
    assert r["forward_vs_reverse_max_rel_diff"] < 1e-3
    assert r["finite_difference_vs_reverse_max_rel_diff"] < 2e-2 and r["finite_difference_ms"] > 0


def test_benchmark_port_matches_popsim_model():
    """benchmarks/bench_port.py (the scalar model the numba and scipy peers integrate) gives
    popsim.model.hpg's hormones and vector field at random states, exposures and patients,
    including terms the benchmark cohort leaves at zero (germ-cell loss of impaired testes,
    gonadorelin drive)."""
    import jax
    import numpy as np

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_common as bc
        import bench_port as bp
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from popsim.model import hpg
    from popsim.model.parameters import PARAMETER_NAMES
    from popsim.model.pk import EXPOSURE_NAMES
    from popsim.model import state as S
    from popsim.model.state import N_STATES

    n = 8
    rng = np.random.default_rng(5)
    params = bc.build_parameters(range(n))
    params["germ_loss_impaired_per_day"] = np.where(np.arange(n) % 2 == 1, rng.uniform(0.005, 0.05, n), 0.0)
    pmat = bp.parameter_matrix(params)
    port = bp.make_port(lambda fn: fn)
    names = ("total_testosterone_nmol_l", "exogenous_testosterone_nmol_l", "free_testosterone_pmol_l", "lh_iu_l",
             "lh_effective_iu_l", "fsh_iu_l", "estradiol_pg_ml", "estrogen_signal_pg_ml", "inhibin_b_pg_ml",
             "shbg_nmol_l", "itt_nmol_l", "gnrh_stimulation", "spermatogenic_support", "sperm_concentration_m_ml")
    scale = {"testosterone_release_mg_day": 20.0, "hcg_iu_l": 60.0, "fsh_exogenous_iu_l": 5.0,
             "enclomiphene_ng_ml": 2.0, "zuclomiphene_ng_ml": 5.0, "tamoxifen_ng_ml": 20.0,
             "anastrozole_ng_ml": 20.0, "gonadorelin_effect_ug": 50.0}
    with jax.enable_x64(True):
        field = jax.jit(lambda y, ex, p, c: hpg.vector_field(y, ex, None, p, c))
        horm = jax.jit(hpg.hormones)
        for i in range(n):
            p_row = pmat[i].tolist()
            p = {k: np.float64(v) for k, v in zip(PARAMETER_NAMES, p_row)}
            c_jax = hpg.patient_constants(p)
            c = [0.0] * bp.N_CONSTANTS
            port["patient_constants"](p_row, c)
            for trial in range(6):
                y = rng.uniform(0.02, 1.6, N_STATES)
                if trial == 0:
                    y[:] = 1.0  # untreated steady state: the field vanishes
                if trial >= 4:
                    # An emptied spermatogonial reserve, and one an RK4 stage overshot below 0
                    # (both clamp it at 0 before the saturable depletion divides by Q + K).
                    y[S.SPERMATOGONIAL_RESERVE] = 0.0 if trial == 4 else -0.01
                ex_vals = [scale[k] * rng.uniform(0.0, 1.0) * (trial > 0) for k in EXPOSURE_NAMES]
                ex = {k: np.float64(v) for k, v in zip(EXPOSURE_NAMES, ex_vals)}
                ref_h = horm(y, ex, p, c_jax)
                got_h = port["hormones"](y.tolist(), ex_vals, p_row, c)
                for name, value in zip(names, got_h):
                    assert np.isclose(value, float(ref_h[name]), rtol=1e-10, atol=1e-12), (i, trial, name)
                ref_dy = np.asarray(field(y, ex, p, c_jax))
                dy = [0.0] * N_STATES
                port["vector_field"](y.tolist(), ex_vals, 0.0, p_row, c, dy)
                np.testing.assert_allclose(dy, ref_dy, rtol=1e-9, atol=1e-12, err_msg=f"patient {i}, trial {trial}")


def test_outcome_stage_benchmark_reports_its_peak_memory(tmp_path):
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_outcome_stage.py"), "--rows", "3000", "--simulate", "16",
               "--out", str(tmp_path)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr[-2000:]
    [result] = tmp_path.glob("outcome-stage-*.json")
    report = json.loads(result.read_text())
    r = report["result"]
    assert r["rows"] == 3000 and r["simulated_men"] == 16 and r["columns"] > 50
    assert 0 < r["rss_before_stage_mib"] <= r["peak_rss_mib"] and r["stage_wall_s"] > 0
    assert report["hardware"]["cores_available"] >= 1
    assert (tmp_path / (result.stem + ".md")).read_text().startswith("# popsim outcome stage, 3,000 men")
