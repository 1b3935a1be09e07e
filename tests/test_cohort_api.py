"""The cohort API: popsim.Cohort / run_study / published_cohorts, protocol doses that vary
across men, arms of a drug mixture, courses that end with TRT, extra single doses,
selection of men by their state at the origin, and semen samples before the origin."""

from __future__ import annotations

import re
from pathlib import Path

import jax
import numpy as np
import pytest

import popsim
from popsim.population.regimens import cohort_dosing
from popsim.population.sampling import PRODUCT_NAMES, sample_cohort

README = Path(__file__).resolve().parents[1] / "README.md"


def _trt(durations_days):
    n = len(durations_days)
    return {"product_index": np.full(n, PRODUCT_NAMES.index("enanthate")), "dose_mg": np.full(n, 200.0),
            "interval_days": np.full(n, 7.0), "duration_days": np.asarray(durations_days, float),
            "start_day": np.zeros(n)}


def test_a_course_anchored_to_the_end_of_trt_lasts_as_long_as_each_mans_trt():
    hcg = popsim.ProtocolCourse("hcg", 500, "IU", 3.5, 0.0, anchor="trt_start", end_anchor="trt_end")
    per_man = {"course_dose": np.full((3, 1), 500.0), "course_given": np.ones((3, 1), bool)}
    dosing = cohort_dosing(_trt([70.0, 140.0, 350.0]), popsim.Protocol("hcg_on_trt", (hcg,)), per_man)
    row = 1  # after the TRT row
    np.testing.assert_array_equal(dosing.doses.start_days[:, row], [0.0, 0.0, 0.0])
    # 10, 20 and 50 weeks of TRT: hCG twice a week until the first missed injection.
    np.testing.assert_array_equal(dosing.doses.n_doses[:, row], [20, 40, 100])
    last = dosing.doses.start_days[:, row] + (dosing.doses.n_doses[:, row] - 1) * 3.5
    assert np.all(last < dosing.trt.first_missed_dose_day) and np.all(last + 3.5 >= dosing.trt.first_missed_dose_day)


def test_arms_split_courses_across_men_and_doses_are_per_man():
    clomiphene = popsim.ProtocolCourse("clomiphene", popsim.Distribution("choice", values=(25.0, 50.0)), "mg", 1.0, 90.0,
                                       arm="serm")
    anastrozole = popsim.ProtocolCourse("anastrozole", 1.0, "mg", 3.5, 91.0, arm="ai")
    extra = popsim.dose_at("hcg", 5, "kIU", 30.0)
    protocol = popsim.Protocol("split", (clomiphene, anastrozole, extra), arms=(("serm", 0.5), ("ai", 0.5)))
    design = popsim.CohortDesign(protocol=protocol)
    cohort = sample_cohort(design, jax.random.PRNGKey(0), np.arange(400))
    arm = cohort.protocol["arm"]
    assert set(arm) == {"serm", "ai"} and 150 < np.sum(arm == "serm") < 250
    np.testing.assert_array_equal(cohort.protocol["course_given"][:, 0], arm == "serm")
    assert set(cohort.protocol["course_dose"][:, 0]) == {25.0, 50.0}
    # The same man keeps his arm and dose whatever else is sampled with him.
    again = sample_cohort(design, jax.random.PRNGKey(0), np.arange(350, 400))
    np.testing.assert_array_equal(again.protocol["arm"], arm[350:])
    np.testing.assert_array_equal(again.protocol["course_dose"], cohort.protocol["course_dose"][350:])
    dosing = cohort_dosing(cohort.trt, protocol, cohort.protocol)
    clomiphene_rows = [1, 2]  # clomiphene doses two species
    for row in clomiphene_rows:
        np.testing.assert_array_equal(dosing.doses.n_doses[:, row], np.where(arm == "serm", 90, 0))
        np.testing.assert_array_equal(dosing.doses.amount[:, row], cohort.protocol["course_dose"][:, 0])
    np.testing.assert_array_equal(dosing.doses.n_doses[:, 3], np.where(arm == "ai", 26, 0))
    # The extra dose: once, 30 days after the first missed TRT dose, 5000 IU, for everybody.
    np.testing.assert_array_equal(dosing.doses.n_doses[:, 4], 1)
    np.testing.assert_array_equal(dosing.doses.amount[:, 4], 5000.0)
    np.testing.assert_allclose(dosing.doses.start_days[:, 4], dosing.trt.first_missed_dose_day + 30.0)


@pytest.mark.parametrize("protocol,match", [
    (popsim.Protocol("x", (popsim.ProtocolCourse("hcg", 500, "IU", 3.5, 30, arm="a"),)), "arm 'a' is not an arm"),
    (popsim.Protocol("x", (popsim.ProtocolCourse("hcg", 500, "IU", 3.5, 30, end_anchor="later"),)), "end_anchor 'later'"),
    (popsim.Protocol("x", (popsim.ProtocolCourse("hcg", popsim.Distribution("choice"), "IU", 3.5, 30),)), "non-empty 'values'"),
    (popsim.Protocol("x", (popsim.ProtocolCourse("hcg", popsim.Distribution("normal", mean=500, sd=100), "IU", 3.5, 30),)),
     "needs low > 0"),
    (popsim.Protocol("x", (), arms=(("a", -1.0),)), "protocol.arms"),
])
def test_invalid_protocols_are_named(protocol, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        popsim.Cohort(popsim.CohortDesign(protocol=protocol)).validate()


def test_published_cohorts_are_the_validation_scenarios():
    c6 = popsim.published_cohorts("C6", size=50)
    assert sorted(c6) == ["C6_hcg_0", "C6_hcg_125", "C6_hcg_250", "C6_hcg_500"]
    assert all(c.study.n_patients == 50 for c in c6.values())
    assert c6["C6_hcg_250"].design.protocol.courses[0].dose == 250.0
    with pytest.raises(ValueError, match="valid targets are"):
        popsim.published_cohorts("C42")


def test_a_study_with_every_feature_selects_men_and_reports_pre_origin_samples():
    trt = popsim.TRTDesign((popsim.TRTArm("enanthate", 1.0, popsim.fixed(200.0), popsim.fixed(7.0)),),
                           popsim.Distribution("uniform", low=60.0, high=150.0))
    protocol = popsim.Protocol("everything", (
        popsim.ProtocolCourse("hcg", 500, "IU", 3.5, 0.0, anchor="trt_start", end_anchor="trt_end"),
        popsim.ProtocolCourse("clomiphene", popsim.Distribution("choice", values=(25.0, 50.0)), "mg", 1.0, 60.0,
                              arm="serm"),
        popsim.ProtocolCourse("anastrozole", 1.0, "mg", 3.5, 60.0, arm="ai"),
        popsim.dose_at("hcg", 5000, "IU", 14.0),
    ), arms=(("serm", 0.5), ("ai", 0.5)))
    study = popsim.StudySpec(n_patients=24, seed=3, recovery_horizon_days=120.0, n_trajectories=8,
                             endpoints=popsim.EndpointSpec(sperm_thresholds_m_ml=(15.0,), baseline_fractions=(0.5,),
                                                           pre_origin_sample_days=(56.0, 0.0)))
    everyone = popsim.run_study(popsim.Cohort(popsim.CohortDesign(trt=trt, protocol=protocol), study))
    table = everyone.table
    assert len(table) == everyone.n_simulated == 24
    assert set(table["protocol_arm"]) == {"serm", "ai"}
    assert table.loc[table.protocol_arm == "ai", "course1_dose"].isna().all()
    assert set(table.loc[table.protocol_arm == "serm", "course1_dose"]) <= {25.0, 50.0}
    for column in ("origin_sperm_m_ml", "origin_testosterone_nmol_l", "origin_lh_iu_l", "azoospermic_at_origin",
                   "sample_56d_before_origin_m_ml", "sample_0d_before_origin_m_ml"):
        assert column in table.columns, column
    # A sample is the latent concentration with within-man scatter: the sample at the
    # origin follows the latent value at the origin.
    latent, sample = table["origin_sperm_m_ml"].to_numpy(), table["sample_0d_before_origin_m_ml"].to_numpy()
    assert np.corrcoef(np.log1p(latent), np.log1p(sample))[0, 1] > 0.5
    # Selection by the state at the origin keeps exactly the men who match, and their trajectories.
    cutoff = float(np.median(latent))
    chosen = everyone.cohort.with_(select=f"origin_sperm_m_ml < {cutoff}").run()
    assert chosen.n_simulated == 24 and 0 < len(chosen.table) < 24
    assert (chosen.table["origin_sperm_m_ml"] < cutoff).all()
    np.testing.assert_array_equal(chosen.table["patient_id"], table.loc[latent < cutoff, "patient_id"])
    assert set(chosen.trajectories.patient.values) <= set(chosen.table["patient_id"])
    assert 0.0 <= chosen.recovered_by([3], "conc_ge_15").iloc[0] <= 1.0
    with pytest.raises(ValueError, match="not a valid query"):
        everyone.cohort.with_(select="no_such_column > 1").run()


def test_readme_cohort_example_is_the_documented_api():
    text = README.read_text()
    block = re.search(r"<!-- cohort-example -->\s*```python\n(.*?)```", text, re.S)
    assert block, "README.md has no cohort example"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 20
    for name in re.findall(r"popsim\.(\w+)", code):
        assert hasattr(popsim, name), name


@pytest.mark.slow
def test_readme_cohort_example_runs(capsys):
    code = re.search(r"<!-- cohort-example -->\s*```python\n(.*?)```", README.read_text(), re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "conc_ge_20" in printed and "months" in printed


def test_the_command_line_can_split_drugs_across_men_and_give_hcg_for_as_long_as_trt():
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from popsim.app.store import CONFIG_MODULE, CONFIG_NAME, register
    from popsim.config.build import build_run

    def plan(*overrides):
        register()
        GlobalHydra.instance().clear()
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            return build_run(OmegaConf.to_object(compose(config_name=CONFIG_NAME, overrides=list(overrides))))

    split = plan("protocol=serm_or_ai", "outcomes.pre_origin_sample_days=[60,0]")
    protocol = split.design.protocol
    assert protocol.arms == (("serm", 0.5), ("ai", 0.5))
    assert protocol.courses[0].arm == "serm" and protocol.courses[0].dose == popsim.Distribution("choice", values=(25.0, 50.0))
    assert split.study.endpoints.pre_origin_sample_days == (60.0, 0.0)
    on_trt = plan("protocol=hcg_on_trt").design.protocol.courses[0]
    assert (on_trt.anchor, on_trt.end_anchor) == ("trt_start", "trt_end")
