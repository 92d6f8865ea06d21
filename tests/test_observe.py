"""Observation model and cohort statistics (pure functions, synthetic data with known answers)."""

from __future__ import annotations

import numpy as np
import pytest

from hpgsim.observe.labs import WITHIN_PERSON_CV, diurnal_factor, is_azoospermic, observe
from hpgsim.observe.stats import change, cumulative, first_crossing_days, level, median_time_to, proportion, wilson_interval


def test_diurnal_testosterone_fall_matches_the_published_size():
    assert diurnal_factor(8, 35) == pytest.approx(1.0)
    assert 0.75 <= diurnal_factor(16, 35) <= 0.80  # -20 to -25% at 30-40 y
    assert diurnal_factor(16, 70) == pytest.approx(0.90)  # -10% at 70 y
    assert diurnal_factor(6, 35) == pytest.approx(1.0) and diurnal_factor(20, 35) == diurnal_factor(16, 35)


@pytest.mark.parametrize("quantity", ["total_testosterone", "lh", "estradiol", "sperm_concentration"])
def test_lab_noise_has_the_published_within_person_cv_and_unbiased_median(quantity):
    rng = np.random.default_rng(0)
    x = observe(quantity, np.full(200_000, 10.0), rng)
    assert np.median(x) == pytest.approx(10.0, rel=0.01)
    assert np.std(np.log(x)) == pytest.approx(np.sqrt(np.log1p(WITHIN_PERSON_CV[quantity] ** 2)), rel=0.02)


def test_observation_is_seeded_and_afternoon_draws_lower_t():
    a = observe("total_testosterone", np.full(50, 500.0), np.random.default_rng(3))
    b = observe("total_testosterone", np.full(50, 500.0), np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    pm = observe("total_testosterone", np.full(50_000, 500.0), np.random.default_rng(1), hour=16)
    assert np.median(pm) == pytest.approx(500 * diurnal_factor(16, 35), rel=0.01)
    assert is_azoospermic(np.array([0.0, 0.009, 0.011])).tolist() == [True, True, False]


def test_level_and_change_statistics():
    v = np.array([1.0, 2.0, 4.0])
    assert level("mean", v) == pytest.approx(7 / 3)
    assert level("median", v) == 2.0
    assert level("geometric_mean", v) == pytest.approx(2.0)
    assert change("percent_change", np.array([10.0, 20.0]), np.array([15.0, 30.0])) == pytest.approx(50.0)
    assert change("fold_change", np.array([10.0, 20.0]), np.array([5.0, 10.0])) == pytest.approx(0.5)
    assert proportion(np.array([0.0, 0.005, 3.0, 20.0]), 0.01, below=True) == 0.5
    assert proportion(np.array([0.0, 0.005, 3.0, 20.0]), 15, below=False) == 0.25


def test_crossing_times_median_and_cumulative():
    days = np.arange(0, 11, dtype=float)
    # man 0 falls below 5 on day 3, man 1 on day 6, man 2 never
    traj = np.array([10 - 2 * days, 10 - days + 0.5, np.full(11, 10.0)])
    t = first_crossing_days(traj, days, 5.0, below=True, from_day=0)
    assert t.tolist() == [3.0, 6.0, np.inf]
    assert median_time_to(traj, days, 5.0, below=True, from_day=0) == 6.0
    assert cumulative(traj, days, 5.0, below=True, from_day=0, day=4) == pytest.approx(1 / 3)
    assert cumulative(traj, days, 5.0, below=True, from_day=0, day=10) == pytest.approx(2 / 3)
    # counting from a later day (recovery after stopping a drug)
    up = np.array([np.minimum(days, 9.0)])
    assert median_time_to(up, days, 4.5, below=False, from_day=2) == 3.0


def test_wilson_interval():
    lo, hi = wilson_interval(0.5, 100)
    assert lo == pytest.approx(0.404, abs=1e-3) and hi == pytest.approx(0.596, abs=1e-3)
    assert wilson_interval(0.0, 10)[0] == 0.0
