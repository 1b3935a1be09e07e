"""Step methods and step schedules of the population integrator (popsim.solve.methods,
popsim.solve.schedule): settings errors, the host-planned schedule, evaluation counts, and
the same answers whichever parts and methods a schedule picks."""

from __future__ import annotations

import numpy as np
import pytest

import popsim
from popsim.dosing.regimen import DrugCourse as D, Regimen as R, TRTCourse as T
from popsim.dosing.table import compile_regimens
from popsim.solve.methods import METHODS
from popsim.solve.run import iterate_chunks
from popsim.solve.schedule import field_evaluations, mark_dose_splits, plan_output_grid, plan_schedule
from popsim.solve.settings import SolverSettings


@pytest.mark.parametrize("kwargs,message", [
    ({"method": "euler"}, "solver.method must be one of ['rk4', 'rk4-dose', 'rk4-dose-ros34pw2', 'rk4-ros34pw2', "
                          "'ros34pw2'], got 'euler'"),
    ({"method": None}, "solver.method must be one of"),
    ({"dt_days": 0.0}, "solver.dt_days must be in (0, 2] days, got 0.0"),
    ({"dt_days": -1}, "solver.dt_days must be in (0, 2] days"),
    ({"dt_days": "1"}, "solver.dt_days must be in (0, 2] days"),
    ({"quiet_dt_days": 3.0}, "solver.quiet_dt_days must be a positive number of days <= 2, got 3.0"),
    ({"quiet_after_days": -1.0}, "solver.quiet_after_days must be a positive number of days, got -1.0"),
    ({"quiet_half_lives": float("nan")}, "solver.quiet_half_lives must be a positive number of days"),
])
def test_bad_solver_settings_name_the_key(kwargs, message):
    with pytest.raises(ValueError) as info:
        SolverSettings(**kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("override,expected", [
    ("solver.method=euler", "solver.method must be one of"),
    ("solver.dt_days=0", "solver.dt_days must be in (0, 2] days"),
    ("solver.quiet_dt_days=-1", "solver.quiet_dt_days must be a positive number"),
])
def test_bad_solver_overrides_get_one_line_errors(override, expected):
    from popsim.app import preflight

    error = preflight.check([override])
    assert error is not None and expected in error and "\n" not in error


def test_each_method_has_its_default_step():
    assert SolverSettings(method="rk4").dt_days == pytest.approx(1 / 6)
    assert SolverSettings(method="ros34pw2").dt_days == pytest.approx(1.0)
    s = SolverSettings()
    assert s.method == "rk4-dose-ros34pw2" and s.dt_days == pytest.approx(1 / 6) and s.quiet_dt_days == 1.0
    assert SolverSettings(method="rk4-dose").dt_days == pytest.approx(1 / 6)
    assert SolverSettings(dt_days=0.25).dt_days == 0.25


def _table(regimens):
    return compile_regimens(regimens, 4)


def test_dose_splits_only_where_a_dose_falls_inside_a_step():
    times = np.arange(0.0, 30.0)
    grid = plan_output_grid(times, 1.0)
    assert grid.split.all() and grid.split.shape == (30, 1)  # without a dose table every step may hold a dose
    weekly = mark_dose_splits(grid, _table([R(trt=[T("enanthate", 200, "mg", 7, 28)])]))
    assert not weekly.split.any()  # doses on day boundaries
    twice = mark_dose_splits(grid, _table([R(drugs=[D("hcg", 1500, "IU", 3.5, 0.0, 28.0)])]))
    # hCG at 0, 3.5, 7, 10.5, ...: the steps [3, 4), [10, 11), ... hold a dose inside
    assert np.flatnonzero(twice.split[:, 0]).tolist() == [4, 11, 18, 25]
    # A method that splits early after a dose also flags the step that starts with one
    # (the interval ending at day 1 starts at day 0: doses on days 0, 7, 14, 21).
    after = mark_dose_splits(grid, _table([R(trt=[T("enanthate", 200, "mg", 7, 28)])]), after_dose=True)
    assert np.flatnonzero(after.split[:, 0]).tolist() == [1, 8, 15, 22]


def test_dose_splits_are_flagged_per_step():
    """Six 4-hour steps a day: only the step that holds a dose runs two parts."""
    times = np.arange(0.0, 10.0)
    grid = plan_output_grid(times, 1 / 6)
    # gel daily at 08:00 (on a step boundary, step 2 of each day) and hCG on day 3.6
    # (inside step 3 of the interval ending at day 4)
    doses = _table([R(trt=[T("gel", 50, "mg", 1, 8, 1 / 3)]), R(drugs=[D("hcg", 1500, "IU", 7, 3.6, 7.0)])])
    flagged = mark_dose_splits(grid, doses, after_dose=True)
    assert flagged.split.shape == (10, 6)
    rows, cols = np.nonzero(flagged.split)
    assert set(zip(rows.tolist(), cols.tolist())) == {(d, 2) for d in range(1, 9)} | {(4, 3)}
    inside_only = mark_dose_splits(grid, doses)
    assert np.argwhere(inside_only.split).tolist() == [[4, 3]]
    # Evaluations: 4 per part, two parts in each flagged step (none in the empty interval
    # to day 0)
    plan = plan_schedule(times, SolverSettings(method="rk4-dose"), doses)
    assert field_evaluations(plan.grid, "rk4-dose") == (9 * 6 + 9) * 4


def test_quiet_intervals_start_after_the_slowest_drug_has_washed_out():
    times = np.arange(0.0, 200.0)
    doses = _table([R(trt=[T("enanthate", 200, "mg", 7, 28)])])  # last dose day 21
    settings = SolverSettings(quiet_after_days=10.0, quiet_half_lives=4.0)
    plan = plan_schedule(times, settings, doses, 0.0, popsim.default_parameters(1))
    # enanthate release half-life 4.5 d: busy until 21 + max(10, 4 x 4.5) = 39 d
    quiet = plan.patient_quiet[0]
    first_quiet = int(np.flatnonzero(quiet)[0])
    assert plan.grid.interval_start_days[first_quiet] == pytest.approx(39.0)
    assert quiet[first_quiet:].all() and not quiet[:first_quiet].any()
    assert (plan.grid.all_quiet == quiet).all() and (plan.grid.any_quiet == quiet).all()
    assert (plan.grid.quiet_steps[1:] == 1).all() and plan.max_steps == 6 and plan.max_quiet_steps == 1
    # Each patient's flags are his own: an untreated man is quiet from the start, and
    # the batch runs ROS34PW2 where any patient is quiet, RK4 where any is busy.
    both = plan_schedule(times, settings, _table([R(trt=[T("enanthate", 200, "mg", 7, 28)]), R()]), 0.0,
                         popsim.default_parameters(2))
    np.testing.assert_array_equal(both.patient_quiet[0], quiet)
    assert both.patient_quiet[1, 1:].all()
    np.testing.assert_array_equal(both.grid.all_quiet, quiet)
    assert both.grid.any_quiet[1:].all()
    # A long-acting product keeps the whole horizon busy: undecanoate's 34-day half-life.
    und = plan_schedule(times, settings, _table([R(trt=[T("undecanoate", 1000, "mg", 70, 140)])]), 0.0,
                        popsim.default_parameters(1))
    assert not und.patient_quiet.any()


def test_field_evaluations_count_what_the_loop_executes():
    times = np.arange(0.0, 366.0)
    doses = _table([R(trt=[T("enanthate", 200, "mg", 7, 7)])])
    rk4 = plan_schedule(times, SolverSettings(method="rk4"), doses)
    # 6 steps a day, 2 RK4 parts of 4 evaluations, also in the zero-length interval to day 0
    # (a uniform loop runs its steps there, with zero length)
    assert field_evaluations(rk4.grid, "rk4") == 366 * 6 * 8
    ros = plan_schedule(times, SolverSettings(method="ros34pw2"), doses)
    assert field_evaluations(ros.grid, "ros34pw2") == 365 * (4 + 3)  # 4 stages + 3 Jacobian columns
    combined = plan_schedule(times, SolverSettings(method="rk4-ros34pw2"), doses)
    quiet = int(combined.grid.all_quiet.sum())
    assert 300 < quiet < 365
    assert field_evaluations(combined.grid, "rk4-ros34pw2") == (366 - quiet) * 48 + quiet * 7
    # The default: one RK4 part per 4-hour step, two in the step that starts with a dose
    # (the interval to day 0 is empty: no steps run there)
    default = plan_schedule(times, SolverSettings(), doses)
    busy_days = 366 - int(default.grid.all_quiet.sum())
    assert field_evaluations(default.grid, "rk4-dose-ros34pw2") == ((busy_days - 1) * 6 + 1) * 4 + (366 - busy_days) * 7


def _simulate(regimens, times, **settings):
    doses = compile_regimens(regimens, 4)
    params = popsim.default_parameters(len(regimens))
    out = next(iterate_chunks(params, doses, times, SolverSettings(**settings)))
    assert not out.failed.any()
    return out.outputs


@pytest.mark.parametrize("method", ["ros34pw2", "rk4-ros34pw2", SolverSettings.method])
def test_a_patients_results_do_not_depend_on_who_shares_his_batch(method):
    """The batch runs the parts and methods that some patient of it needs (two parts where
    some patient has a dose inside a step; RK4 where some patient is busy, ROS34PW2 where
    some is quiet), and each patient's own doses pick his: the same results alone and beside
    a man dosed mid-step for longer (to float32 round-off: a branch compiled inside a
    different lax.cond may round differently in the last bit)."""
    times = np.arange(0.0, 150.0)
    alone = [R(trt=[T("enanthate", 200, "mg", 7, 56)])]
    shared = alone + [R(drugs=[D("hcg", 1500, "IU", 3.5, 0.25, 100.0)])]
    a = _simulate(alone, times, method=method)
    b = _simulate(shared, times, method=method)
    for k in a:
        np.testing.assert_allclose(a[k][0], b[k][0], rtol=1e-6, atol=1e-12, err_msg=k)


def test_combined_method_matches_rk4_on_a_long_off_treatment_follow_up():
    """12 weeks of TE then three years off: RK4 everywhere (4-hour steps) and the default
    (ROS34PW2 one day at a time once the drug has washed out) agree well within the 1e-3
    target, and the default spends a fraction of the evaluations."""
    times = np.arange(0.0, 3 * 365.25, 1.0)
    regimens = [R(trt=[T("enanthate", 200, "mg", 7, 84)]), R(trt=[T("gel", 50, "mg", 1, 84)])]
    ref = _simulate(regimens, times, method="rk4")
    new = _simulate(regimens, times)
    for k in ("total_testosterone_nmol_l", "lh_iu_l", "fsh_iu_l", "inhibin_b_pg_ml", "sperm_concentration_m_ml"):
        rel = np.abs(new[k] - ref[k]) / np.maximum(np.abs(ref[k]), 1e-6 * np.abs(ref[k]).max())
        assert rel.max() < 5e-4, (k, float(rel.max()))
    doses = compile_regimens(regimens, 4)
    e_rk4 = field_evaluations(plan_schedule(times, SolverSettings(method="rk4"), doses).grid, "rk4")
    e_new = field_evaluations(plan_schedule(times, SolverSettings(), doses).grid, SolverSettings.method)
    assert e_rk4 / e_new > 4.0


def test_every_registered_method_runs_and_is_close_to_rk4_off_treatment():
    times = np.arange(0.0, 60.0)
    regimens = [R()]  # untreated: the stiff loop at its steady state
    base = _simulate(regimens, times, method="rk4")
    for name in METHODS:
        out = _simulate(regimens, times, method=name)
        np.testing.assert_allclose(out["lh_iu_l"], base["lh_iu_l"], rtol=1e-5, err_msg=name)


def test_grouping_patients_by_their_quiet_stretch_changes_no_result():
    """A chunk larger than run.GROUP_SIZE is simulated in batches of patients whose quiet
    stretches start together: the same per-patient outputs (to float32 round-off) as
    batches in patient order, and fewer field evaluations than one mixed batch."""
    from popsim.solve import run

    times = np.arange(0.0, 120.0)
    regimens = [R(trt=[T("enanthate", 200, "mg", 7, 7 * (1 + i % 5))]) if i % 3 else R() for i in range(run.GROUP_SIZE + 90)]
    doses = compile_regimens(regimens, 4)
    params = popsim.default_parameters(len(regimens))
    grouped = next(iterate_chunks(params, doses, times, SolverSettings(chunk_size=len(regimens))))
    plain = list(iterate_chunks(params, doses, times, SolverSettings(chunk_size=160)))
    for k, v in grouped.outputs.items():
        np.testing.assert_allclose(v, np.concatenate([c.outputs[k] for c in plain]), rtol=1e-6, atol=1e-12,
                                   err_msg=k)
    one_batch = field_evaluations(plan_schedule(times, SolverSettings(), doses, 0.0, params).grid, SolverSettings.method)
    assert grouped.field_evaluations < one_batch  # 4,030 against 4,385 per patient here
