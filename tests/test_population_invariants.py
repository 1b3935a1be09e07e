"""A mixed virtual population through the Python API: the acceptance check of the
foundation issue (10,000 men in the slow suite, a few hundred by default)."""

import numpy as np
import pytest

import popsim
from popsim.population.design import CohortDesign
from popsim.population.sampling import sample_cohort

R, T = popsim.Regimen, popsim.TRTCourse


def mixed_population(n, seed=0):
    """TE 100-200 mg weekly, cypionate 100-200 mg every 1-2 weeks, gel; 1-5 years; ages 25-60."""
    rng = np.random.default_rng(seed)
    kinds = rng.integers(0, 3, n)
    years = rng.uniform(1, 5, n)
    regimens = []
    for kind, y in zip(kinds, years):
        if kind == 0:
            course = T("enanthate", float(rng.uniform(100, 200)), "mg", 7, y * 365.25)
        elif kind == 1:
            course = T("cypionate", float(rng.uniform(100, 200)), "mg", float(rng.choice([7, 14])), y * 365.25)
        else:
            course = T("gel", float(rng.choice([50, 75, 100])), "mg", 1, y * 365.25)
        regimens.append(R(trt=[course]))
    import jax
    cohort = sample_cohort(CohortDesign(), jax.random.PRNGKey(seed), np.arange(n))
    params = cohort.params
    params["age_years"] = rng.uniform(25, 60, n)
    return regimens, params, kinds, years


def check_population(n):
    regimens, params, kinds, years = mixed_population(n)
    times = np.arange(0, 5 * 365 + 1, 7.0)
    ds = popsim.simulate(regimens, params, times_days=times,
                         observables=("sperm_concentration_m_ml", "total_testosterone_nmol_l", "lh_iu_l", "fsh_iu_l",
                                      "estradiol_pg_ml", "free_testosterone_pmol_l", "itt_nmol_l", "inhibin_b_pg_ml"))
    assert not ds.failed.any()
    for name in ds.data_vars:
        if ds[name].dtype.kind == "f":
            values = ds[name].values
            assert np.isfinite(values).all() and (values >= 0).all(), name
    sperm = ds.sperm_concentration.values
    at_6_months = np.searchsorted(times, 182.6)
    te_weekly = (kinds == 0)
    assert np.mean(sperm[te_weekly, at_6_months] < 1.0) > 0.5  # most men on weekly TE < 1 M/mL
    lh = ds.lh.values
    assert np.median(lh[:, at_6_months] / params["lh_base_iu_l"]) < 0.25
    # Recovery: among men stopping after <= 3 years, T and LH are back (>= 80% of own
    # baseline) before sperm is (>= 50% of own baseline), in the median.
    stop = years * 365.25
    early = years <= 3
    def first_back(values, baseline, fraction):
        out = np.full(values.shape[0], np.inf)
        for i in np.flatnonzero(early):
            after = np.flatnonzero((times > stop[i] + 14) & (values[i] >= fraction * baseline[i]))
            if after.size:
                out[i] = times[after[0]] - stop[i]
        return out[early]
    t_back = first_back(ds.total_testosterone.values, params["t_base_nmol_l"], 0.8)
    lh_back = first_back(lh, params["lh_base_iu_l"], 0.8)
    sperm_back = first_back(sperm, params["sperm_base_m_ml"], 0.5)
    assert np.median(t_back) < np.median(sperm_back)
    assert np.median(lh_back) < np.median(sperm_back)


def test_mixed_population_of_a_few_hundred_men():
    check_population(256)


@pytest.mark.slow
def test_mixed_population_of_ten_thousand_men():
    check_population(10_000)
