"""The Python API and the compiled simulator: labelled outputs, no retracing, failures
as data, sharding, regimen validation."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

import popsim
from popsim.dosing.table import compile_regimens
from popsim.solve import integrator
from popsim.solve.run import iterate_chunks

R, T, D = popsim.Regimen, popsim.TRTCourse, popsim.DrugCourse
ROOT = Path(__file__).resolve().parents[1]


def test_simulate_returns_a_labelled_dataset_with_units():
    regimens = [R(trt=[T("enanthate", 200, "mg", 7, 120)]), R(trt=[T("gel", 50, "mg", 1, 120)],
                                                               drugs=[D("hcg", 500, "IU", 2, 0, 120)])]
    ds = popsim.simulate(regimens, times_days=np.arange(0, 200, 7.0))
    assert ds.sizes == {"patient": 2, "time": 29}
    for name, unit in (("total_testosterone", "nmol/L"), ("lh", "IU/L"), ("fsh", "IU/L"), ("estradiol", "pg/mL"),
                       ("inhibin_b", "pg/mL"), ("itt", "nmol/L"), ("sperm_concentration", "M/mL"),
                       ("sperm_concentration_sample", "M/mL"), ("total_motile_count", "M"), ("hcg", "IU/L"),
                       ("free_testosterone", "pmol/L")):
        assert ds[name].attrs["units"] == unit, name
        assert ds[name].dims == ("patient", "time")
    assert not ds.failed.any()
    for name in ds.data_vars:
        if ds[name].dtype.kind == "f":
            assert np.isfinite(ds[name]).all() and (ds[name] >= 0).all(), name
    assert float(ds.hcg.isel(patient=0).max()) == 0.0 and float(ds.hcg.isel(patient=1).max()) > 0.0


def test_new_regimen_values_reuse_the_compiled_simulator():
    times = np.arange(0.0, 60.0, 1.0)
    settings = popsim.SolverSettings(chunk_size=32)
    species = tuple(range(12))
    traces = []
    original = integrator._make_patient_simulator

    def counting(*args):
        traces.append(args)
        return original(*args)

    integrator._SIMULATORS.clear()
    integrator._make_patient_simulator = counting
    try:
        compiled = integrator.population_simulator("float32", species, 6, uniform=True)
        before = compiled._cache_size()
        for dose, interval, drug_dose in ((200, 7, 1500), (100, 14, 500), (75, 3.5, 3000)):
            regimens = [R(trt=[T("cypionate", dose, "mg", interval, 30)], drugs=[D("hcg", drug_dose, "IU", 3.5, 30, 60)])]
            params = popsim.broadcast_parameters({"age_years": 30.0 + dose / 10}, 1)
            next(iterate_chunks(params, compile_regimens(regimens, 3), times, settings, species=species))
        assert compiled._cache_size() - before == 1  # compiled once, reused for new values
        assert len(traces) == 1
    finally:
        integrator._make_patient_simulator = original


@pytest.mark.parametrize("name,bad", [("k_feedback_per_day", 1e7),      # unstable explicit step
                                      ("cl_testosterone_l_day", 1e-38)])  # float overflow
def test_a_numerical_failure_is_flagged_and_does_not_abort_the_batch(name, bad):
    regimens = [R(trt=[T("enanthate", 200, "mg", 7, 60)])] * 3
    default = popsim.default_parameters()[name]
    params = popsim.broadcast_parameters({name: np.array([default, bad, default])}, 3)
    ds = popsim.simulate(regimens, params, times_days=np.arange(0, 60, 5.0))
    assert ds.failed.values.tolist() == [False, True, False]
    assert ds.attrs["n_failed"] == 1
    assert np.isfinite(ds.total_testosterone.isel(patient=[0, 2])).all()


def test_sharded_results_equal_unsharded():
    code = textwrap.dedent("""
        import json, numpy as np, jax, popsim
        from popsim.dosing.table import compile_regimens
        from popsim.solve.run import iterate_chunks
        regs = [popsim.Regimen(trt=[popsim.TRTCourse("enanthate", 100 + 10 * i, "mg", 7, 90)]) for i in range(40)]
        params = popsim.broadcast_parameters({"age_years": np.linspace(25, 60, 40)}, 40)
        out = next(iterate_chunks(params, compile_regimens(regs), np.arange(0, 150, 3.0),
                                  popsim.SolverSettings(chunk_size=64))).outputs
        print(json.dumps({"devices": len(jax.devices()), "sperm": out["sperm_concentration_m_ml"].tolist(),
                          "lh": out["lh_iu_l"].tolist()}))
    """)
    results = []
    for count in (1, 2):
        env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={count}")
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        import json
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert [r["devices"] for r in results] == [1, 2]
    # Equal to float32 round-off: the SPMD-partitioned program may round a step in the
    # last bit differently (seen since rk4-dose: 4 of 2000 sperm values 1 ulp apart, and
    # LH suppressed 1e5-fold, a steep function of the feedback state, 2e-6 apart).
    np.testing.assert_allclose(results[0]["sperm"], results[1]["sperm"], rtol=1e-6, atol=0)
    np.testing.assert_allclose(results[0]["lh"], results[1]["lh"], rtol=1e-5, atol=0)


def test_padded_batch_sizes_are_few_and_on_the_side_of_the_full_batch():
    from popsim.solve.run import padded_batch

    small = integrator.SMALL_BATCH
    for multiple in (32, 64, 96):
        for full in (multiple, 2 * multiple, 4096 // multiple * multiple, 20 * multiple):
            sizes = {padded_batch(n, full, multiple) for n in range(1, full + 1)}
            assert max(sizes) == full and all(s % multiple == 0 for s in sizes)
            assert all((s > small) == (full > small) for s in sizes), (multiple, full, sorted(sizes))
            assert len(sizes) <= 2 + (full // multiple).bit_length()
    assert padded_batch(904, 4096, 32) == 1024 and padded_batch(10, 2048, 32) == 256
    assert padded_batch(10, 128, 32) == 32


def test_a_short_last_chunk_is_padded_less_and_results_do_not_change():
    # rk4: bit-identical for any batch sizes on one side of SMALL_BATCH (the combined method
    # can change the last bit with who shares a batch).
    n, times = 300, np.arange(0.0, 40.0, 2.0)
    regs = [R(trt=[T("enanthate", 100 + i % 7 * 20, "mg", 7 + i % 3, 20)]) for i in range(n)]
    params = popsim.broadcast_parameters({"age_years": np.linspace(25, 60, n)}, n)
    doses = compile_regimens(regs)

    def run(chunk, count):
        settings = popsim.SolverSettings(chunk_size=chunk, method="rk4")
        parts = list(iterate_chunks({k: v[:count] for k, v in params.items()},
                                    type(doses)(*(np.asarray(a)[:count] for a in doses)), times, settings,
                                    observables=("sperm_concentration_m_ml", "lh_iu_l")))
        return ({k: np.concatenate([p.outputs[k] for p in parts]) for k in parts[0].outputs},
                [p.simulated_patients for p in parts])

    assert len(jax.local_devices()) == 1  # batch multiple 32
    # Above SMALL_BATCH: a last chunk of 44 runs in 256 lanes (as many as a full chunk here).
    whole, lanes = run(300, n)
    assert lanes == [320]
    chunked, lanes = run(256, n)
    assert lanes == [256, 256]
    for k in whole:
        np.testing.assert_array_equal(whole[k], chunked[k], err_msg=k)
    # At or below SMALL_BATCH: last chunks of 22 and 54 men run in 32 and 64 lanes.
    small, lanes = run(128, 150)
    assert lanes == [128, 32]
    other, lanes = run(96, 150)
    assert lanes == [96, 64]
    for k in small:
        np.testing.assert_array_equal(small[k], other[k], err_msg=k)


@pytest.mark.parametrize("regimen,message", [
    (R(trt=[T("enanthate", 200, "mg", -7, 100)]), "regimen[0].trt[0].interval_days must be > 0"),
    (R(trt=[T("enanthate", 200, "mg", 0, 100)]), "interval_days must be > 0"),
    (R(trt=[T("propionate", 200, "mg", 7, 100)]), "product 'propionate' is unknown; valid products are"),
    (R(drugs=[D("letrozole", 2.5, "mg", 1, 0, 30)]), "drug 'letrozole' is unknown; valid drugs are"),
    (R(drugs=[D("hcg", 1500, "", 3.5, 0, 30)]), "regimen[0].drugs[0].dose_unit is missing"),
    (R(drugs=[D("hcg", 1500, "mg", 3.5, 0, 30)]), "dose_unit 'mg' is not valid for this drug; valid units are"),
    (R(drugs=[D("clomiphene", 25, "mg", 1, 0, 60), D("clomiphene", 50, "mg", 1, 30, 90)]), "overlap in time"),
    (R(trt=[T("enanthate", 200, "mg", 7, 100), T("gel", 50, "mg", 1, 100, start_day=50)]), "overlap in time"),
    (R(drugs=[D("hcg", 1500, "IU", 3.5, 30, 10)]), "stop_day (10.0) must be after start_day (30.0)"),
    (R(trt=[T("gel", float("nan"), "mg", 1, 100)]), "dose must be finite"),
])
def test_bad_regimens_raise_errors_naming_the_field(regimen, message):
    with pytest.raises(popsim.RegimenError) as info:
        compile_regimens([regimen])
    assert message in str(info.value)


def test_a_sequence_of_courses_of_one_drug_is_fine():
    regimen = R(drugs=[D("clomiphene", 25, "mg", 1, 0, 30), D("clomiphene", 50, "mg", 1, 30, 60)])
    table = compile_regimens([regimen])
    assert table.n_doses[0].tolist() == [30, 30, 30, 30]


def test_float64_needs_64_bit_jax():
    if jax.config.jax_enable_x64:
        pytest.skip("session runs 64-bit JAX")
    with pytest.raises(ValueError, match="JAX_ENABLE_X64"):
        popsim.simulate(R(), times_days=[0.0, 1.0], settings=popsim.SolverSettings(precision="float64"))


@pytest.mark.parametrize("method,times", [
    ("rk4", np.arange(0.0, 120.0, 7.0)), ("rk4", np.array([0.0, 3.0, 10.0, 45.0, 46.0, 120.0])),
    # the default: RK4 while doses are recent, ROS34PW2 one day at a time after day ~128
    (popsim.SolverSettings.method, np.arange(0.0, 200.0, 1.0))])
def test_reverse_mode_gradient_through_the_simulator_is_finite(method, times):
    import jax.numpy as jnp

    from popsim.dosing.table import DoseTable
    from popsim.solve.integrator import OutputGrid, Rules, population_simulator
    from popsim.solve.schedule import plan_schedule

    regimens = [R(trt=[T("enanthate", 200, "mg", 7, 60)], drugs=[D("hcg", 1500, "IU", 3.5, 60, 100)])] * 2
    doses = compile_regimens(regimens)
    schedule = plan_schedule(times, popsim.SolverSettings(method=method), doses)
    plan = schedule.grid
    assert schedule.patient_quiet.any() == (method != "rk4")
    sim = population_simulator("float32", tuple(range(12)), schedule.max_steps, uniform=schedule.uniform,
                               method=method, max_quiet_steps=schedule.max_quiet_steps)
    params = {k: jnp.asarray(v, jnp.float32) for k, v in popsim.default_parameters(2).items()}
    z, zi = jnp.zeros((2, 0)), jnp.zeros((2, 0), jnp.int32)
    args = (DoseTable(*(jnp.asarray(a) for a in doses)), OutputGrid(*(jnp.asarray(a) for a in plan)),
            jnp.ones(doses.species.shape), Rules(zi, z, z, z, z, zi, zi, z, z), jnp.asarray(schedule.patient_quiet))

    def loss(log_k):
        p = dict(params, k_pituitary_reserve_per_day=params["k_pituitary_reserve_per_day"] * jnp.exp(log_k))
        out, _, _ = sim(p, *args)
        return jnp.sum(jnp.log(out["lh_iu_l"] + 1e-3))

    grad = jax.grad(loss)(0.0)
    eps = 1e-2
    numeric = (loss(eps) - loss(-eps)) / (2 * eps)
    assert np.isfinite(grad) and grad != 0.0
    assert grad == pytest.approx(float(numeric), rel=0.05)
