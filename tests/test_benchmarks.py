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


def test_gradient_benchmark_reverse_mode_matches_forward_mode():
    """The small-batch gradient benchmark (bench_gradient.py) runs, reverse-mode gradients
    through population_simulator work, and they agree with forward mode."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_gradient
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    r = bench_gradient.measure(1.0, n_patients=4, repeats=1, forward_mode=True)
    assert r["gradient_ms"] > 0 and r["forward_ms"] > 0 and r["gradient_over_target"] > 0
    assert all(abs(g) > 0 for g in r["gradient_sum_per_parameter"])
    assert r["forward_vs_reverse_max_rel_diff"] < 1e-3
