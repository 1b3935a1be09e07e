"""Long or intense suppression leaves a memory (docs/model.md, "Long-term suppression"):
a slow central recovery that grows with exposure and that a SERM shortens, a lasting
Leydig deficit, and spermatogenic recovery that slows with years of suppression and with
an impaired testis. Plus the named population presets and the hormone endpoints."""

from pathlib import Path

import numpy as np
import pytest
import yaml

import popsim
from popsim.outcomes.recovery import (
    FSH_LOWER_LIMIT_IU_L, FSH_UPPER_LIMIT_IU_L, LH_LOWER_LIMIT_IU_L, LH_UPPER_LIMIT_IU_L,
    TESTOSTERONE_THRESHOLD_NMOL_L, EndpointSpec, hormone_endpoint_names, hormone_outcomes,
)
from popsim.population import presets
from tests.helpers import DAYS_PER_MONTH, at, run, te

R, D = popsim.Regimen, popsim.DrugCourse
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _first_day(times, values, start_day, threshold):
    after = (times >= start_day) & (values >= threshold)
    return times[np.argmax(after)] - start_day if after.any() else np.inf


@pytest.fixture(scope="module")
def cycles():
    """TE 200 mg (contraceptive) and 750 mg (a heavy cycle) weekly for 6 months, the heavy
    cycle also for 12 months and with clomiphene 50 mg daily after it."""
    six, twelve = 6 * DAYS_PER_MONTH, 12 * DAYS_PER_MONTH
    last6, last12 = 7.0 * np.ceil(six / 7 - 1e-9) - 7.0, 7.0 * np.ceil(twelve / 7 - 1e-9) - 7.0
    pct = D("clomiphene", 50.0, "mg", 1.0, start_day=last6 + 14.0, stop_day=last6 + 56.0)
    regimens = [R(trt=[te(200, 6)]), R(trt=[te(750, 6)]), R(trt=[te(750, 12)]), R(trt=[te(750, 6)], drugs=[pct])]
    times, out = run(regimens, days=2 * 365, step=1.0)
    return times, out, (last6, last6, last12, last6)


def test_central_recovery_after_stopping_is_slower_the_heavier_and_longer_the_exposure(cycles):
    times, out, last = cycles
    lh = out["lh_iu_l"]
    days = [_first_day(times, lh[i], last[i], 0.9 * lh[i, 0]) for i in range(3)]
    assert days[0] < 6 * 7, "contraceptive doses: LH back within weeks"
    assert days[1] > 2 * days[0] and days[1] > 8 * 7, "a heavy cycle: LH takes months"
    # A longer cycle leaves a deeper central suppression that takes longer to lift. (LH's
    # own return is not the measure here: after 12 months the larger Leydig deficit keeps
    # T lower, which drives LH back about as early as after 6 months.)
    capacity = out["hypothalamic_capacity"]
    half_back = [_first_day(times, capacity[i], last[i], 0.5) for i in (1, 2)]
    assert capacity[2, int(last[2])] < capacity[1, int(last[1])], "a longer cycle suppresses deeper"
    assert half_back[1] > half_back[0], "a longer cycle recovers later centrally"


def test_a_serm_after_a_heavy_cycle_brings_lh_back_sooner(cycles):
    times, out, last = cycles
    lh = out["lh_iu_l"]
    without = _first_day(times, lh[1], last[1], LH_LOWER_LIMIT_IU_L)
    with_pct = _first_day(times, lh[3], last[3], LH_LOWER_LIMIT_IU_L)
    assert with_pct < without


def test_no_rebound_of_lh_far_above_baseline_after_a_cycle(cycles):
    times, out, last = cycles
    for i in range(3):
        after = times >= last[i]
        assert out["lh_iu_l"][i, after].max() < 2.0 * out["lh_iu_l"][i, 0]


@pytest.fixture(scope="module")
def years():
    """One simulation of 8 years: TE 500 mg weekly for 6 or 48 months, TE 200 mg weekly for
    12 or 60 months, TE 200 mg for 24 months in a healthy and an impaired testis, and no TRT."""
    from popsim.population.covariates import typical_parameters

    n = 7
    tf = np.array([1.0] * 5 + [0.4, 1.0])
    params = typical_parameters(np.full(n, 35.0), np.full(n, 25.0), np.zeros(n), tf)
    regimens = [R(trt=[te(500, 6)]), R(trt=[te(500, 48)]), R(trt=[te(200, 12)]), R(trt=[te(200, 60)]),
                R(trt=[te(200, 24)]), R(trt=[te(200, 24)]), R()]
    times, out = run(regimens, params, days=8 * 365, step=7.0)
    return times, out, params


def test_years_of_lh_deprivation_leave_a_lasting_leydig_deficit(years):
    times, out, _ = years
    mass, t = out["leydig_cell_mass"], out["total_testosterone_nmol_l"]
    two_years_after = [at(times, 6 * DAYS_PER_MONTH + 730), at(times, 48 * DAYS_PER_MONTH + 730)]
    assert mass[1, two_years_after[1]] < mass[0, two_years_after[0]] < 1.0
    assert t[1, two_years_after[1]] < 0.95 * t[1, 0], "part of T does not come back after years"
    assert t[0, two_years_after[0]] > 0.95 * t[0, 0], "after a 6-month cycle T comes back"


def test_stem_cells_wear_down_with_years_of_suppression_and_slow_the_return_of_sperm(years):
    times, out, _ = years
    stem, sperm = out["stem_cell_pool"], out["sperm_concentration_m_ml"]
    ends = {2: 12 * DAYS_PER_MONTH, 3: 60 * DAYS_PER_MONTH}
    assert stem[3, at(times, ends[3])] < stem[2, at(times, ends[2])] < 1.0
    back = {i: _first_day(times, sperm[i], end, 1.0) for i, end in ends.items()}
    assert back[3] > back[2]


def test_an_impaired_testis_recovers_sperm_more_slowly(years):
    times, out, params = years
    assert params["k_reserve_recovery_per_day"][5] < params["k_reserve_recovery_per_day"][4]
    end = 24 * DAYS_PER_MONTH
    sperm = out["sperm_concentration_m_ml"]
    back = [_first_day(times, sperm[i], end, 0.5 * sperm[i, 0]) for i in (4, 5)]
    assert back[1] > back[0]


def test_untreated_men_keep_the_new_states_at_one(years):
    _, out, _ = years
    for name in ("hypothalamic_capacity", "leydig_cell_mass", "stem_cell_pool"):
        np.testing.assert_allclose(out[name][6], 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_population_presets_in_configs_match_the_python_presets(name):
    text = (CONFIGS / "population" / f"{name}.yaml").read_text()
    data = yaml.safe_load(text)
    data = data.get("population", data)  # androgen_users sets trt.* too (package _global_)
    spec = presets.PRESETS[name]
    for field in ("age_years", "bmi_kg_m2", "testicular_function"):
        dist = getattr(spec, field)
        for key, value in data[field].items():
            assert getattr(dist, key) == pytest.approx(value), (name, field, key)
    assert data["asian_fraction"] == pytest.approx(spec.asian.p)


def test_trt_patients_start_low_or_low_normal():
    from popsim.population.design import CohortDesign
    from popsim.population.sampling import sample_cohort
    import jax

    design = CohortDesign(covariates=presets.TRT_PATIENTS)
    cohort = sample_cohort(design, jax.random.PRNGKey(0), np.arange(2000))
    t = np.asarray(cohort.params["t_base_nmol_l"])
    assert 9.0 < np.median(t) < 14.0
    assert 0.2 < np.mean(t < TESTOSTERONE_THRESHOLD_NMOL_L) < 0.6


def test_hormone_endpoints_mark_the_first_day_all_three_are_in_range():
    times = np.arange(0.0, 200.0)
    lh = np.where(times < 50, 0.2, 4.0)[None, :]
    fsh = np.where(times < 80, 0.5, 4.0)[None, :]
    t = np.where(times < 10, 40.0, np.where(times < 120, 6.0, 15.0))[None, :]
    outputs = {"lh_iu_l": lh, "fsh_iu_l": fsh, "total_testosterone_nmol_l": t}
    params = {"lh_base_iu_l": np.array([4.5]), "fsh_base_iu_l": np.array([4.0]), "t_base_nmol_l": np.array([16.0])}
    spec = EndpointSpec()
    out = hormone_outcomes(times, outputs, params, np.array([0.0]), 190.0, spec)
    assert set(f"{n}_days" for n in hormone_endpoint_names(spec)) <= set(out)
    assert out["hormonal_recovery_days"][0] == 120.0 and out["hormonal_recovery_observed"][0]
    assert out["lh_in_range_days"][0] == pytest.approx(49.0, abs=1.0)
    # T: exogenous at the origin, then the fall below 10.4, then the return at day 120.
    assert out["testosterone_ge_10p4_days"][0] == pytest.approx(119.0, abs=1.0)
    assert out["testosterone_ge_90pct_baseline_days"][0] == pytest.approx(119.0, abs=1.0)
    assert out["lh_fraction_of_baseline_3mo"][0] == pytest.approx(4.0 / 4.5)
    assert np.isnan(out["lh_fraction_of_baseline_9mo"][0]), "beyond follow-up"
    assert LH_UPPER_LIMIT_IU_L > LH_LOWER_LIMIT_IU_L and FSH_UPPER_LIMIT_IU_L > FSH_LOWER_LIMIT_IU_L
