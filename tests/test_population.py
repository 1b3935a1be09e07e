"""Virtual populations: per-patient keys, chunk independence, common random numbers, IIV."""

import jax
import numpy as np
import pytest

import popsim
from popsim.outcomes.study import StudySpec, run_study
from popsim.population.design import CohortDesign, MonitoringRule, Protocol, ProtocolCourse, TRTArm, TRTDesign
from popsim.population.distributions import Distribution
from popsim.population.sampling import sample_cohort
from popsim.population.variability import Variability

DESIGN = CohortDesign(trt=TRTDesign(
    arms=(TRTArm("enanthate", 1.0, Distribution("uniform", low=100, high=200)),
          TRTArm("gel", 1.0, Distribution("fixed", value=50), Distribution("fixed", value=1))),
    duration_days=Distribution("choice", values=(120.0, 240.0))))


def test_patient_k_is_the_same_man_whatever_the_population_size():
    key = jax.random.PRNGKey(3)
    small = sample_cohort(DESIGN, key, np.arange(10))
    large = sample_cohort(DESIGN, key, np.arange(1000))
    subset = sample_cohort(DESIGN, key, np.array([7, 3, 999]))
    for name, value in small.params.items():
        np.testing.assert_array_equal(value, large.params[name][:10], err_msg=name)
        np.testing.assert_array_equal(subset.params[name][:2], large.params[name][[7, 3]], err_msg=name)
    np.testing.assert_array_equal(small.trt["dose_mg"], large.trt["dose_mg"][:10])


def test_chunk_size_does_not_change_per_patient_results():
    def run(chunk):
        study = StudySpec(n_patients=70, recovery_horizon_days=200.0, n_trajectories=3,
                          settings=popsim.SolverSettings(chunk_size=chunk))
        return run_study(DESIGN, study)
    a, b = run(70), run(33)
    for name in a.outcomes:
        np.testing.assert_array_equal(a.outcomes[name], b.outcomes[name], err_msg=name)
    for name in a.trajectories:
        np.testing.assert_array_equal(a.trajectories[name], b.trajectories[name], err_msg=name)


def test_completed_chunks_are_reused_and_the_others_simulated():
    study = StudySpec(n_patients=70, recovery_horizon_days=200.0, n_trajectories=40,
                      settings=popsim.SolverSettings(chunk_size=32))
    stored = {}
    whole = run_study(DESIGN, study, on_chunk_result=lambda begin, part: stored.setdefault(begin, part))
    assert sorted(stored) == [0, 32, 64] and whole.simulated_patients == 32 + 32 + 32
    # Chunk 32 lost (killed while it ran): only it is simulated again.
    again = []
    resumed = run_study(DESIGN, study, completed_chunks={0: stored[0], 64: stored[64]},
                        on_chunk_result=lambda begin, part: again.append(begin))
    assert again == [32] and resumed.simulated_patients == 32
    for name in whole.outcomes:
        np.testing.assert_array_equal(whole.outcomes[name], resumed.outcomes[name], err_msg=name)
    for name in whole.trajectories:
        np.testing.assert_array_equal(whole.trajectories[name], resumed.trajectories[name], err_msg=name)
    np.testing.assert_array_equal(whole.trajectory_patient_ids, resumed.trajectory_patient_ids)


def test_protocol_arms_share_their_men_common_random_numbers():
    hcg = Protocol("hcg", (ProtocolCourse("hcg", 1500, "IU", 3.5, 120.0),))
    key = jax.random.PRNGKey(0)
    none_arm = sample_cohort(DESIGN, key, np.arange(50))
    hcg_arm = sample_cohort(CohortDesign(DESIGN.covariates, DESIGN.variability, DESIGN.trt, hcg), key, np.arange(50))
    for name in none_arm.params:
        np.testing.assert_array_equal(none_arm.params[name], hcg_arm.params[name])


def test_factorial_grid_cells_hold_the_same_men():
    design = CohortDesign(trt=DESIGN.trt, grid=(("trt.duration_days", (100.0, 300.0)), ("age_years", (30.0, 50.0))))
    cohort = sample_cohort(design, jax.random.PRNGKey(1), np.arange(40))
    assert set(np.unique(cohort.cell)) == {0, 1, 2, 3}
    same_man = cohort.man_id == 5
    assert same_man.sum() == 4
    np.testing.assert_array_equal(np.unique(cohort.params["sperm_base_m_ml"][same_man]).size, 1)
    assert set(cohort.trt["duration_days"][same_man]) == {100.0, 300.0}
    assert set(cohort.covariates["age_years"][same_man]) == {30.0, 50.0}


def test_iiv_reproduces_the_requested_cv_and_correlation():
    variability = Variability(cv=(("sperm_base_m_ml", 0.5), ("inhibin_b_base_pg_ml", 0.3)),
                              correlation=(("sperm_base_m_ml", "inhibin_b_base_pg_ml", 0.6),))
    design = CohortDesign(variability=variability)
    cohort = sample_cohort(design, jax.random.PRNGKey(2), np.arange(20000))
    eta_sperm = np.log(cohort.params["sperm_base_m_ml"] / 70.0)
    eta_inhibin = np.log(cohort.params["inhibin_b_base_pg_ml"] / 170.0)
    # Default covariates (testicular_function 1) leave these typical values unchanged.
    assert np.std(eta_sperm) == pytest.approx(np.sqrt(np.log1p(0.25)), rel=0.03)
    assert np.corrcoef(eta_sperm, eta_inhibin)[0, 1] == pytest.approx(0.6, abs=0.03)


def test_omega_must_be_positive_definite():
    bad = Variability(cv=(("t_base_nmol_l", 0.2), ("lh_base_iu_l", 0.2), ("fsh_base_iu_l", 0.2)),
                      correlation=(("t_base_nmol_l", "lh_base_iu_l", 0.95), ("lh_base_iu_l", "fsh_base_iu_l", 0.95),
                                   ("t_base_nmol_l", "fsh_base_iu_l", -0.95)))
    with pytest.raises(ValueError, match="positive-definite"):
        bad.validate()
    with pytest.raises(ValueError, match="not a model parameter"):
        Variability(cv=(("t_base", 0.2),)).validate()


def test_monitoring_rule_adds_anastrozole_only_for_men_with_high_estradiol():
    protocol = Protocol("ai_if_high_e2", (
        ProtocolCourse("hcg", 3000, "IU", 2.0, 180.0),
        ProtocolCourse("anastrozole", 1.0, "mg", 1.0, 180.0, enabled=False)),
        (MonitoringRule("estradiol_pg_ml", "above", 35.0, 1, every_days=14.0, first_check_offset_days=14.0),))
    design = CohortDesign(trt=TRTDesign(arms=(TRTArm("enanthate"),), duration_days=Distribution("fixed", value=120.0)),
                          protocol=protocol, variability=Variability(cv=(("e2_base_pg_ml", 0.5),)))
    study = StudySpec(n_patients=40, recovery_horizon_days=180.0, n_trajectories=40,
                      trajectory_observables=("anastrozole_ng_ml", "estradiol_pg_ml"), trajectory_step_days=1.0)
    result = run_study(design, study)
    anastrozole = result.trajectories["anastrozole_ng_ml"]
    e2 = result.trajectories["estradiol_pg_ml"]
    treated = anastrozole.max(axis=1) > 0
    assert 0 < treated.sum() < 40  # some men need it, some do not
    # Men who got anastrozole had E2 above the threshold at some check before it started.
    assert np.all(e2[treated].max(axis=1) > 35.0)
    # Men who never got it never exceeded the threshold at a check (checked every 14 d
    # from day 14 of the course, i.e. days origin+14, +28, ...).
    times = result.trajectory_times_days
    origin = result.outcomes["origin_day"][:40]
    for i in np.flatnonzero(~treated):
        checks = origin[i] + np.arange(14.0, 180.0, 14.0)
        idx = np.searchsorted(times, checks)
        idx = idx[idx < times.size]
        assert np.all(e2[i, idx] <= 35.0 + 0.5)


def test_loading_dose_adds_one_first_injection_row_only_for_men_who_have_one():
    from popsim.population.regimens import cohort_dosing
    from popsim.population.sampling import PRODUCT_NAMES

    tu = PRODUCT_NAMES.index("undecanoate")
    trt = {"product_index": np.array([tu, tu]), "dose_mg": np.array([500.0, 500.0]),
           "interval_days": np.array([30.0, 30.0]), "duration_days": np.array([300.0, 300.0]),
           "start_day": np.array([0.0, 0.0]), "first_dose_extra_mg": np.array([500.0, 0.0])}
    dosing = cohort_dosing(trt, Protocol())
    assert dosing.doses.amount.shape[1] == 2
    np.testing.assert_array_equal(dosing.doses.species[:, 1], dosing.doses.species[:, 0])
    np.testing.assert_array_equal(dosing.doses.amount[:, 1], [500.0, 0.0])
    np.testing.assert_array_equal(dosing.doses.n_doses[:, 1], [1, 0])
    np.testing.assert_array_equal(dosing.doses.n_doses[:, 0], [10, 10])
    # Without any loading dose the table keeps its single TRT row.
    no_loading = cohort_dosing({**trt, "first_dose_extra_mg": np.zeros(2)}, Protocol())
    assert no_loading.doses.amount.shape[1] == 1
    with pytest.raises(ValueError, match="first_dose_extra_mg"):
        CohortDesign(trt=TRTDesign(arms=(TRTArm("undecanoate", first_dose_extra_mg=-1.0),))).validate()
