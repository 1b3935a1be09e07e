"""Each published target as popsim cohorts: population, regimen, origin and sampling as
the studies did it. The same scenarios ship as Hydra experiments
(configs/experiment/c1_*.yaml .. c12_*.yaml) for ``popsim +experiment=...``; C2's two
cohorts ship as one pooled cohort there, since an experiment has one population.

Scenario choices where a study is not a single regimen are documented in
docs/validation.md (e.g. the supraphysiological "cycle" of C8 is TE 500 mg weekly for
14 weeks; C7 has no TRT, represented by a negligible 1 ug gel dose because every popsim
cohort has a TRT history).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from popsim.outcomes.recovery import EndpointSpec
from popsim.outcomes.study import StudySpec
from popsim.population.design import CohortDesign, CovariateSpec, Protocol, ProtocolCourse, TRTArm, TRTDesign
from popsim.population.distributions import Distribution, fixed
from popsim.population.presets import ANDROGEN_USERS, TRT_PATIENTS
from popsim.population.variability import DEFAULT_VARIABILITY, Variability
from popsim.solve.settings import SolverSettings
from popsim.units import DAYS_PER_MONTH

# Contraception-trial volunteers (Liu 2006): 18-51 y, ~35% Chinese, healthy BMI.
CONTRACEPTION_AGE = Distribution("uniform", low=18.0, high=51.0)
WHO_AGE = Distribution("uniform", low=21.0, high=45.0)
HEALTHY_BMI = Distribution("normal", mean=24.0, sd=3.0, low=18.0, high=35.0)
ASIAN_FRACTION = 0.35
NO_SAMPLES = EndpointSpec(sperm_thresholds_m_ml=(1.0, 3.0), baseline_fractions=(0.5,), sampling_interval_days=0.0)
MONTHLY = EndpointSpec(sperm_thresholds_m_ml=(1.0, 3.0, 10.0, 20.0), baseline_fractions=(0.5, 0.85, 1.0),
                       sampling_interval_days=30.0, first_sample_offset_days=30.0)
C6_HCG_IU = (0.0, 125.0, 250.0, 500.0)
C5_DOSES_MG = (25.0, 50.0, 100.0, 300.0)
# C8: a testosterone-based cycle of ~3-4 months (HAARLEM median cycle ~13 weeks).
C8_DOSE_MG, C8_WEEKS = 500.0, 14
# C2: a long-acting arm (testosterone undecanoate 1000 mg loading dose then 500 mg monthly,
# as in the Chinese contraception trials pooled by Liu 2006, e.g. Gu 2003) beside TE 200 mg
# weekly. Undecanoate monotherapy was a Chinese regimen, so its men are Chinese and the
# enanthate arm carries the other Asian men (35% Asian in the pool); the Cox model then
# compares the preparations within Asian origin, as the pooled analysis adjusted for it.
C2_UNDECANOATE = TRTArm("undecanoate", 1.0, fixed(500.0), fixed(30.0), first_dose_extra_mg=500.0)
C2_ENANTHATE = TRTArm("enanthate", 1.0, fixed(200.0), fixed(7.0))
C2_LONG_ACTING_SHARE = 0.25
C2_ENANTHATE_ASIAN = (ASIAN_FRACTION - C2_LONG_ACTING_SHARE) / (1.0 - C2_LONG_ACTING_SHARE)
# C9/C10: androgen users, proxied by testosterone enanthate weekly (the commonest base of
# a cycle) at 250-1000 mg for 2-12 months (C9) or years (C10: 2-6 years of use, as the
# former long-term users of Rasmussen 2016 reported), eugonadal before use.
C9_DOSE_MG = Distribution("uniform", low=250.0, high=1000.0)
C9_DURATION_DAYS = Distribution("uniform", low=2 * DAYS_PER_MONTH, high=12 * DAYS_PER_MONTH)
C10_DURATION_DAYS = Distribution("uniform", low=2 * 365.25, high=6 * 365.25)
# Post-cycle therapy of C9: clomiphene 50 mg daily for 6 weeks, started 2 weeks after the
# last enanthate injection (as the SERM courses of the C9 cohorts, 4-8 weeks after stopping).
C9_PCT = Protocol("pct_clomiphene", (ProtocolCourse("clomiphene", 50.0, "mg", 1.0, 42.0, 14.0, "last_dose"),))
C9_HORIZON_DAYS = 52 * 7.0
C10_HORIZON_DAYS = 4 * 365.25
# C12: testosterone undecanoate 1000 mg loading dose, then 500 mg monthly for 12 months.
C12_UNDECANOATE = TRTArm("undecanoate", 1.0, fixed(500.0), fixed(30.0), first_dose_extra_mg=500.0)


@dataclass(frozen=True)
class Run:
    """One cohort of a target.

    Attributes:
        name: e.g. "C6_hcg_125".
        design: the cohort.
        study: sizes, origin, horizon, endpoints; all trajectories are kept on
            ``study.trajectory_step_days``.
    """

    name: str
    design: CohortDesign
    study: StudySpec


@dataclass(frozen=True)
class Options:
    """Sizes and numerics of a validation run.

    Attributes:
        size: men per cohort.
        seed: root seed (common random numbers across targets and parameter sets).
        settings: solver settings.
        variability: IIV of the cohorts (default: the model's).
        covariate_effects: overrides of the covariate model (used by the fitting procedure).
    """

    size: int = 2000
    seed: int = 20060415
    settings: SolverSettings = SolverSettings()
    variability: Variability = DEFAULT_VARIABILITY
    covariate_effects: tuple[tuple[str, float], ...] = ()


def _preset(options: Options, covariates, trt: TRTDesign, protocol: Protocol = Protocol()) -> CohortDesign:
    return CohortDesign(covariates, options.variability, trt, protocol, (), options.covariate_effects)


def prescribed_trt() -> TRTDesign:
    """Prescribed TRT products of the default run (configs/trt/default.yaml): enanthate or
    cypionate 100-200 mg every 1-2 weeks, or gel 50-100 mg daily, for 1-5 years."""
    return TRTDesign((TRTArm("enanthate", 0.4, Distribution("uniform", low=100.0, high=200.0), fixed(7.0)),
                      TRTArm("cypionate", 0.4, Distribution("uniform", low=100.0, high=200.0),
                             Distribution("choice", values=(7.0, 14.0))),
                      TRTArm("gel", 0.2, Distribution("choice", values=(50.0, 75.0, 100.0)), fixed(1.0))),
                     Distribution("uniform", low=12 * DAYS_PER_MONTH, high=60 * DAYS_PER_MONTH))


def _design(options: Options, age: Distribution, trt: TRTDesign, asian: float = ASIAN_FRACTION,
            protocol: Protocol = Protocol(), grid=(), bmi: Distribution = HEALTHY_BMI,
            testicular_function: Distribution = fixed(1.0)) -> CohortDesign:
    covariates = CovariateSpec(age, bmi, Distribution("bernoulli", p=asian), testicular_function)
    return CohortDesign(covariates, options.variability, trt, protocol, tuple(grid), options.covariate_effects)


def _study(options: Options, horizon_days: float, origin: str = "first_missed_dose", step_days: float = 1.0,
           observables=("sperm_concentration_m_ml",), endpoints: EndpointSpec | None = None) -> StudySpec:
    if endpoints is None:
        endpoints = MONTHLY if horizon_days >= 60.0 and origin == "first_missed_dose" else NO_SAMPLES
    return StudySpec(n_patients=options.size, seed=options.seed, origin=origin, recovery_horizon_days=horizon_days,
                     endpoints=endpoints, n_trajectories=options.size, trajectory_step_days=step_days,
                     trajectory_observables=tuple(observables), settings=options.settings)


def te(dose_mg: float = 200.0, months: float | None = 12.0, days: float | None = None) -> TRTDesign:
    """Testosterone enanthate weekly for ``months`` (or ``days``)."""
    duration = days if days is not None else months * DAYS_PER_MONTH
    return TRTDesign((TRTArm("enanthate", 1.0, fixed(dose_mg), fixed(7.0)),), fixed(duration))


def _no_trt() -> TRTDesign:
    return TRTDesign((TRTArm("gel", 1.0, fixed(0.001), fixed(1.0)),), fixed(1.0))


def runs_for(target: str, options: Options) -> list[Run]:
    """The cohorts that target ``target`` needs."""
    o = options
    if target == "C1":
        return [Run("C1", _design(o, CONTRACEPTION_AGE, te()), _study(o, 24 * DAYS_PER_MONTH, step_days=7.0))]
    if target == "C2":
        duration = Distribution("uniform", low=4 * DAYS_PER_MONTH, high=18 * DAYS_PER_MONTH)
        out = []
        for k, (arm, share, asian) in enumerate(((C2_ENANTHATE, 1.0 - C2_LONG_ACTING_SHARE, C2_ENANTHATE_ASIAN),
                                                 (C2_UNDECANOATE, C2_LONG_ACTING_SHARE, 1.0))):
            n = max(int(round(o.size * share)), 1)
            # Its own seed: the arms are different men, not the same men on two preparations.
            study = replace(_study(o, 24 * DAYS_PER_MONTH, step_days=7.0), n_patients=n, n_trajectories=n,
                            seed=o.seed + k)
            out.append(Run(f"C2_{arm.product}", _design(o, CONTRACEPTION_AGE, TRTDesign((arm,), duration), asian=asian),
                           study))
        return out
    if target == "C3":
        design = _design(o, WHO_AGE, te(months=6.0))
        return [Run("C3", design, _study(o, 30.0, step_days=1.0))]
    if target == "C4":
        return [Run("C4", _design(o, WHO_AGE, te()), _study(o, 24 * DAYS_PER_MONTH, step_days=7.0))]
    if target == "C5":
        design = _design(o, Distribution("uniform", low=20.0, high=50.0), te(months=6.0), asian=0.0,
                         grid=(("trt.dose_mg", C5_DOSES_MG),))
        obs = ("sperm_concentration_m_ml", "lh_iu_l", "fsh_iu_l", "total_testosterone_nmol_l")
        return [Run("C5", design, replace(_study(o, 14.0, step_days=1.0, observables=obs),
                                          n_patients=o.size * len(C5_DOSES_MG), n_trajectories=o.size * len(C5_DOSES_MG)))]
    if target == "C6":
        obs = ("lh_iu_l", "fsh_iu_l", "itt_nmol_l")
        out = []
        for iu in C6_HCG_IU:
            courses = () if iu == 0 else (ProtocolCourse("hcg", iu, "IU", 2.0, 21.0, 0.0, "trt_start"),)
            design = _design(o, Distribution("uniform", low=20.0, high=50.0), te(days=21.0), asian=0.0,
                             protocol=Protocol(f"hcg_{iu:g}", courses))
            out.append(Run(f"C6_hcg_{iu:g}", design, _study(o, 7.0, step_days=1.0, observables=obs)))
        return out
    if target == "C7":
        # Men screened for the studies' enrolment criteria (popsim.validation.metrics.c7_enrolled):
        # older, heavier men, of whom those with low T (clomiphene) or a low T/E2 ratio
        # (anastrozole) are analysed.
        obs = ("total_testosterone_nmol_l", "estradiol_pg_ml", "sperm_concentration_m_ml", "lh_iu_l")
        older_heavier = dict(age=Distribution("uniform", low=30.0, high=60.0),
                             bmi=Distribution("normal", mean=32.0, sd=5.0, low=20.0, high=50.0))
        clomiphene = Protocol("clomiphene", (ProtocolCourse("clomiphene", 25.0, "mg", 1.0, 42.0, 0.0, "day0"),))
        anastrozole = Protocol("anastrozole", (ProtocolCourse("anastrozole", 1.0, "mg", 1.0, 84.0, 0.0, "day0"),))
        # Oligospermic infertile men (Raman & Schlegel): impaired testes, ~5-10 M/mL.
        oligo = Distribution("uniform", low=0.05, high=0.2)
        return [
            Run("C7_clomiphene", _design(o, trt=_no_trt(), asian=0.0, protocol=clomiphene, **older_heavier),
                _study(o, 50.0, origin="last_dose", step_days=1.0, observables=obs)),
            Run("C7_anastrozole", _design(o, trt=_no_trt(), asian=0.0, protocol=anastrozole,
                                          testicular_function=oligo, **older_heavier),
                _study(o, 90.0, origin="last_dose", step_days=1.0, observables=obs)),
        ]
    if target == "C8":
        obs = ("sperm_concentration_m_ml", "total_testosterone_nmol_l", "lh_iu_l")
        design = _design(o, Distribution("uniform", low=25.0, high=40.0), te(C8_DOSE_MG, days=C8_WEEKS * 7.0),
                         asian=0.0, bmi=Distribution("normal", mean=26.0, sd=3.0, low=18.0, high=40.0))
        return [Run("C8", design, _study(o, 10 * DAYS_PER_MONTH, origin="last_dose", step_days=1.0, observables=obs))]
    if target == "C9":
        obs = ("lh_iu_l", "fsh_iu_l", "total_testosterone_nmol_l")
        trt = TRTDesign((TRTArm("enanthate", 1.0, C9_DOSE_MG, fixed(7.0)),), C9_DURATION_DAYS)
        return [Run(f"C9_{name}", _preset(o, ANDROGEN_USERS, trt, protocol),
                    _study(o, C9_HORIZON_DAYS, origin="last_dose", step_days=1.0, observables=obs))
                for name, protocol in (("no_pct", Protocol()), ("pct", C9_PCT))]
    if target == "C10":
        trt = TRTDesign((TRTArm("enanthate", 1.0, C9_DOSE_MG, fixed(7.0)),), C10_DURATION_DAYS)
        covariates = replace(ANDROGEN_USERS, age_years=Distribution("uniform", low=18.0, high=45.0))
        return [Run("C10", _preset(o, covariates, trt),
                    _study(o, C10_HORIZON_DAYS, origin="last_dose", step_days=7.0,
                           observables=("total_testosterone_nmol_l",)))]
    if target == "C11":
        # Men on prescribed TRT who want children (Samplaski 2014 saw them at a fertility
        # clinic): the TRT-patient preset at 25-50 y, selected for azoospermia on T in
        # popsim.validation.metrics; monthly semen samples after stopping.
        covariates = replace(TRT_PATIENTS, age_years=Distribution("normal", mean=38.0, sd=7.0, low=25.0, high=50.0))
        endpoints = EndpointSpec(sperm_thresholds_m_ml=(1.0,), baseline_fractions=(0.5,), sampling_interval_days=30.0,
                                 first_sample_offset_days=30.0)
        return [Run("C11", _preset(o, covariates, prescribed_trt()),
                    _study(o, 12 * DAYS_PER_MONTH, origin="last_dose", step_days=7.0, endpoints=endpoints))]
    if target == "C12":
        obs = ("sperm_concentration_m_ml", "lh_iu_l", "fsh_iu_l", "total_testosterone_nmol_l")
        design = _design(o, Distribution("uniform", low=20.0, high=45.0), TRTDesign((C12_UNDECANOATE,), fixed(360.0)),
                         asian=1.0)
        return [Run("C12", design, _study(o, 12 * DAYS_PER_MONTH, step_days=1.0, observables=obs))]
    raise ValueError(f"unknown target '{target}'")
