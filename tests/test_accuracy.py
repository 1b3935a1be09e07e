"""Accuracy of the population integrator against the float64 reference (docs/accuracy.md).

The test session runs 32-bit JAX, and the reference needs 64-bit JAX, so every
comparison runs in a subprocess with JAX_ENABLE_X64=1 that prints its results as JSON.
float32 results computed there are bit-identical to a 32-bit session (checked by the
slow test below).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from popsim.verify.accuracy import (
    GONADORELIN_DT_DAYS, GONADORELIN_REGIMENS, HORMONES, NON_GONADORELIN_REGIMENS, RECOVERY_CRITERIA,
    TARGET_RECOVERY_DAYS, TARGET_RELATIVE_ERROR,
)
from popsim.solve.settings import SolverSettings

ROOT = Path(__file__).resolve().parents[1]
HORIZON_DAYS = 600.0  # covers 12 months of TRT, the 6-month protocols and sperm recovery


def run_x64(code: str, timeout: float = 600.0):
    """Run ``code`` in a fresh interpreter with 64-bit JAX on CPU; return the JSON it prints last."""
    env = dict(os.environ)
    env["JAX_ENABLE_X64"] = "1"
    env.setdefault("JAX_PLATFORMS", "cpu")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"x64 subprocess failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


COMPARE = """
    import json
    from popsim.verify import accuracy as acc
    out = {{}}
    for key, dt, precision in {jobs!r}:
        res = acc.compare_to_reference(tuple(acc.ACCURACY_REGIMENS), {horizon!r}, dt, precision)
        out[key] = {{name: r._asdict() for name, r in res.items()}}
    print(json.dumps(out))
"""


def compare(jobs, horizon=HORIZON_DAYS):
    """``{key: {regimen: RegimenAccuracy as dict}}`` for jobs ``(key, dt_days, precision)``,
    all regimens simulated together (one compiled simulator, one reference)."""
    return run_x64(COMPARE.format(jobs=list(jobs), horizon=horizon))


def failures(result: dict, names) -> list[str]:
    """Human-readable list of the targets missed by ``names`` in ``result``."""
    bad = []
    for name in names:
        r = result[name]
        for h in HORMONES:
            e = r["hormone_rel_error"][h]
            if not e < TARGET_RELATIVE_ERROR:
                bad.append(f"{name}: {h} relative error {e:.3g} (day {r['hormone_worst_day'][h]:g})")
        for c in RECOVERY_CRITERIA:
            d = r["recovery_diff_days"][c]
            if not d < TARGET_RECOVERY_DAYS:
                bad.append(f"{name}: {c} differs by {d:.3g} d (sim {r['recovery_sim_days'][c]}, "
                           f"ref {r['recovery_ref_days'][c]})")
    return bad


@pytest.fixture(scope="module")
def default_accuracy():
    default = SolverSettings()
    return compare([("default", default.dt_days, default.precision),
                    ("gonadorelin", GONADORELIN_DT_DAYS, default.precision)])


def test_default_settings_meet_targets_without_gonadorelin(default_accuracy):
    res = default_accuracy["default"]
    assert set(NON_GONADORELIN_REGIMENS) <= set(res)
    bad = failures(res, NON_GONADORELIN_REGIMENS)
    assert not bad, ("default SolverSettings miss the accuracy targets (docs/accuracy.md):\n  "
                     + "\n  ".join(bad))


def test_gonadorelin_meets_targets_at_its_step(default_accuracy):
    res = default_accuracy["gonadorelin"]
    assert GONADORELIN_REGIMENS
    bad = failures(res, GONADORELIN_REGIMENS)
    assert not bad, (f"gonadorelin regimens at dt_days={GONADORELIN_DT_DAYS:.5g} miss the accuracy targets:\n  "
                     + "\n  ".join(bad))


PRECISIONS = """
    import json
    from popsim.verify import accuracy as acc
    names = ("te_200mg_weekly_stop",)
    _, _, _, origin = acc._problem(names)
    times = acc.output_times({horizon!r})
    out = {{}}
    for precision in ("float32", "float64"):
        sim = acc.simulated_outputs(names, {horizon!r}, {dt!r}, precision)
        rec = acc.recovery_times(times, sim, origin)
        out[precision] = {{c: [float(t[0]), bool(o[0])] for c, (t, o) in rec.items()}}
    print(json.dumps(out))
"""


def test_float32_and_float64_recovery_times_agree():
    """TE 200 mg weekly for 12 months: float32 changes no recovery time by a day or more."""
    res = run_x64(PRECISIONS.format(horizon=HORIZON_DAYS, dt=SolverSettings().dt_days))
    for c in RECOVERY_CRITERIA:
        (t32, o32), (t64, o64) = res["float32"][c], res["float64"][c]
        assert o32 == o64, f"{c}: observed in one precision only (float32 {t32}, float64 {t64})"
        assert abs(t32 - t64) < TARGET_RECOVERY_DAYS, f"{c}: float32 {t32:.3f} d vs float64 {t64:.3f} d"
    # The sperm criteria are informative here: TE 200 mg/week suppresses below 1 M/mL.
    assert res["float64"]["sperm_ge_1_m_ml"][1] and res["float64"]["sperm_ge_1_m_ml"][0] > 0


@pytest.mark.slow
def test_two_year_sweep_meets_targets():
    """The measurement of docs/accuracy.md at the default step and the gonadorelin step,
    two years, both precisions."""
    default = SolverSettings()
    jobs = [(f"{p}/{dt}", dt, p) for p in ("float32", "float64") for dt in (default.dt_days, GONADORELIN_DT_DAYS)]
    res = compare(jobs, horizon=730.0)
    bad = []
    for p in ("float32", "float64"):
        bad += [f"{p} dt {default.dt_days:.4g}: {b}" for b in failures(res[f"{p}/{default.dt_days}"],
                                                                        NON_GONADORELIN_REGIMENS)]
        bad += [f"{p} dt {GONADORELIN_DT_DAYS:.4g}: {b}" for b in failures(res[f"{p}/{GONADORELIN_DT_DAYS}"],
                                                                           tuple(res[f"{p}/{GONADORELIN_DT_DAYS}"]))]
    assert not bad, "\n  ".join(["accuracy targets missed over two years:"] + bad)


@pytest.mark.slow
def test_float32_identical_with_and_without_x64(tmp_path):
    """float32 results measured under 64-bit JAX stand for the 32-bit default session."""
    import jax

    if jax.config.jax_enable_x64:
        pytest.skip("this session runs 64-bit JAX")
    from popsim.verify import accuracy as acc

    horizon = 120.0
    here = acc.simulated_outputs(tuple(acc.ACCURACY_REGIMENS), horizon, SolverSettings().dt_days, "float32")
    path = tmp_path / "x64.npz"
    run_x64(f"""
        import json
        import numpy as np
        from popsim.verify import accuracy as acc
        out = acc.simulated_outputs(tuple(acc.ACCURACY_REGIMENS), {horizon!r}, {SolverSettings().dt_days!r}, "float32")
        np.savez({str(path)!r}, **out)
        print(json.dumps("ok"))
    """)
    there = np.load(path)
    for k, v in here.items():
        np.testing.assert_array_equal(v, there[k], err_msg=k)


def test_recovery_difference_censoring():
    from popsim.verify.accuracy import recovery_difference, relative_error

    sim = (np.array([10.0, 5.0, 7.0, 3.0]), np.array([True, False, True, False]))
    ref = (np.array([10.5, 5.0, 9.0, 2.0]), np.array([True, False, False, True]))
    d = recovery_difference(sim, ref)
    assert d[0] == pytest.approx(0.5) and d[1] == 0.0 and math.isinf(d[2]) and math.isinf(d[3])
    # The floor keeps zeros of the reference from dividing by zero.
    e = relative_error(np.array([[1.0, 1e-7, 2.0]]), np.array([[1.0, 0.0, 1.0]]))
    assert np.all(np.isfinite(e)) and e[0, 0] == 0.0 and e[0, 2] == pytest.approx(1.0)


def test_small_and_large_batch_forms_agree():
    """The integrator's two formulations of the stage PK (batched for small batches,
    per stage for large ones; popsim.solve.integrator.SMALL_BATCH) agree to float32
    round-off on every observable of every accuracy regimen."""
    import popsim
    from popsim.solve import integrator
    from popsim.solve.run import iterate_chunks
    from popsim.verify import accuracy as acc

    _, doses, params, _ = acc._problem(tuple(acc.ACCURACY_REGIMENS))
    times = acc.output_times(120.0)
    saved = integrator.SMALL_BATCH
    outs = []
    try:
        for threshold in (0, 10**9):
            integrator.SMALL_BATCH = threshold
            integrator._SIMULATORS.clear()
            outs.append(next(iterate_chunks(params, doses, times, popsim.SolverSettings())).outputs)
    finally:
        integrator.SMALL_BATCH = saved
        integrator._SIMULATORS.clear()
    for name in outs[0]:
        np.testing.assert_allclose(outs[0][name], outs[1][name], rtol=2e-5, atol=1e-12, err_msg=name)
