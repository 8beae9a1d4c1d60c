"""Tests of the synthetic wearable-health generator (fedlab.health)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlab import data, health

SHIPPED = Path(__file__).resolve().parent.parent / "datasets" / "health.csv"


@pytest.fixture(scope="module")
def default() -> health.HealthData:
    return health.generate()


# ----------------------------------------------------------------------------
# Determinism and the shipped file
# ----------------------------------------------------------------------------


def test_shipped_file_is_exactly_the_generator_output(default):
    text = health.to_csv(default).encode("ascii")
    assert hashlib.sha256(text).hexdigest() == data.HEALTH_SHA256
    assert text == SHIPPED.read_bytes()


def test_command_line_regenerates_the_shipped_file(tmp_path, capsys):
    out = tmp_path / "health.csv"
    health.main(["--out", str(out)])
    assert out.read_bytes() == SHIPPED.read_bytes()
    assert "1200 users" in capsys.readouterr().out


def test_same_seed_same_data_different_seed_different_data(default):
    again = health.generate(seed=2024)
    for field in ("user", "day", "weekday", "x", "y", "prob"):
        np.testing.assert_array_equal(getattr(default, field), getattr(again, field))
    other = health.generate(seed=2025)
    assert health.to_csv(other) != health.to_csv(default)


def test_accepts_a_generator_and_advances_it():
    gen = np.random.default_rng(7)
    a = health.generate(num_users=20, seed=gen)
    b = health.generate(num_users=20, seed=gen)
    assert a.seed is None
    assert not np.array_equal(a.users.resting_hr, b.users.resting_hr)
    c = health.generate(num_users=20, seed=np.random.default_rng(7))
    np.testing.assert_array_equal(a.x, c.x)


def test_csv_values_round_trip(default):
    lines = health.to_csv(default).splitlines()
    assert tuple(lines[0].split(",")) == health.COLUMNS
    table = np.array([line.split(",") for line in lines[1:]], dtype=np.float64)
    np.testing.assert_array_equal(table[:, 5:11], default.x)
    np.testing.assert_array_equal(table[:, 0], default.user)
    np.testing.assert_array_equal(table[:, -1], default.y)
    np.testing.assert_array_equal(table[:, 3], default.activity_group)


# ----------------------------------------------------------------------------
# Properties the lessons rely on
# ----------------------------------------------------------------------------


def test_many_unbalanced_users(default):
    assert default.num_users >= 1000
    days = np.bincount(default.user)
    np.testing.assert_array_equal(days, default.users.num_days)
    assert days.min() >= 3 and days.max() <= 120
    assert (days < 10).sum() >= 50  # some users with very few days
    assert np.median(days) >= 30
    assert days.max() >= 10 * days.min()  # heavy tail


def test_rows_grouped_by_user_in_day_order(default):
    assert np.all(np.diff(default.user) >= 0)
    starts = np.r_[0, np.cumsum(default.users.num_days)[:-1]]
    expected_day = np.arange(len(default.user)) - np.repeat(starts, default.users.num_days)
    np.testing.assert_array_equal(default.day, expected_day)
    np.testing.assert_array_equal(np.diff(default.weekday)[np.diff(default.user) == 0] % 7, 1)


def test_base_rate_and_label_noise(default):
    assert 0.20 <= default.y.mean() <= 0.40
    # 5 % label noise: the Bayes-optimal rule on the true probability is good, not perfect.
    oracle = np.mean((default.prob > 0.5) == default.y)
    assert 0.75 < oracle < 0.92


def test_plausible_ranges(default):
    x = {name: default.x[:, j] for j, name in enumerate(health.FEATURES)}
    assert 35 <= x["resting_hr"].min() and x["resting_hr"].max() <= 110
    assert 3 <= x["sleep_hours"].min() and x["sleep_hours"].max() <= 11
    assert 0.5 <= x["sleep_efficiency"].min() and x["sleep_efficiency"].max() <= 0.99
    assert 0 <= x["steps"].min() and x["steps"].max() <= 40000
    assert 0 <= x["active_minutes"].min() and x["active_minutes"].max() <= 300
    assert np.all(x["hrv_ms"] > 0)


def test_users_are_non_iid(default):
    """Most of the spread of resting heart rate is between users, not within a user."""
    n = np.bincount(default.user).astype(float)
    for j in (0, 1, 4):  # resting_hr, hrv_ms, steps
        v = default.x[:, j]
        user_mean = np.bincount(default.user, weights=v) / n
        within = np.bincount(default.user, weights=(v - user_mean[default.user]) ** 2).sum() / len(v)
        between = np.average((user_mean - v.mean()) ** 2, weights=n)
        assert between > within, health.FEATURES[j]
    # and the label rate itself varies from user to user
    rates = (np.bincount(default.user, weights=default.y) / n)[n >= 40]
    assert rates.std() > 0.08


def test_activity_groups(default):
    shares = np.bincount(default.users.activity_group, minlength=3) / default.num_users
    assert np.all(shares > 0.2)
    typical_steps = [np.median(default.users.steps[default.users.activity_group == g]) for g in range(3)]
    assert typical_steps[0] < 5500 <= typical_steps[1] < 8500 <= typical_steps[2]
    response = [default.users.activity_response[default.users.activity_group == g].mean() for g in range(3)]
    assert response[0] < response[1] < response[2]


def _time_split(d: health.HealthData) -> np.ndarray:
    counts = np.bincount(d.user)
    num_test = np.minimum(np.maximum(np.floor(0.2 * counts + 0.5), 1), counts - 1).astype(int)
    return d.day >= (counts - num_test)[d.user]


def _features(d: health.HealthData, train: np.ndarray, *, baseline: bool) -> np.ndarray:
    x = np.column_stack([d.x, d.weekday >= 5, d.age_group]).astype(np.float64)
    x = (x - np.asarray(data.HEALTH_CENTER)) / np.asarray(data.HEALTH_SCALE)
    if not baseline:
        return x
    # each user's own mean over their *training* days, as a phone could compute
    n_train = np.bincount(d.user[train], minlength=d.num_users)
    mean = np.stack(
        [np.bincount(d.user[train], weights=x[train, j], minlength=d.num_users) / n_train for j in range(6)], 1
    )
    return np.column_stack([x, x[:, :6] - mean[d.user]])


@pytest.fixture(scope="module")
def learnability(default):
    LogisticRegression = pytest.importorskip("sklearn.linear_model").LogisticRegression

    test = _time_split(default)
    group = default.activity_group
    out = {"majority": max(default.y[test].mean(), 1 - default.y[test].mean())}
    for name, baseline, train in [
        ("global", False, ~test),
        ("baseline", True, ~test),
        ("opt_out", True, ~test & (group != 0)),  # the least active users opt out
    ]:
        x = _features(default, ~test, baseline=baseline)
        model = LogisticRegression(max_iter=2000).fit(x[train], default.y[train])
        right = model.predict(x[test]) == default.y[test]
        out[name] = right.mean()
        out[name + "_by_group"] = [right[group[test] == g].mean() for g in range(3)]
    return out


def test_target_is_learnable_but_not_trivial(learnability):
    assert learnability["global"] > learnability["majority"] + 0.03
    assert learnability["baseline"] < 0.9


def test_user_baselines_help(learnability):
    assert learnability["baseline"] > learnability["global"] + 0.03


def test_opt_out_of_least_active_users_hurts_them(learnability):
    low_all, low_opt_out = learnability["baseline_by_group"][0], learnability["opt_out_by_group"][0]
    assert low_opt_out < low_all - 0.005
    # the global model without baselines serves the least active users worst
    by_group = learnability["global_by_group"]
    assert np.argmin(by_group) == 0
    assert by_group[2] - by_group[0] > 0.03


# ----------------------------------------------------------------------------
# Arguments and small cases
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("num_users", [0, -3, 2.5, True, "10"])
def test_bad_num_users(num_users):
    with pytest.raises(ValueError, match="num_users"):
        health.generate(num_users=num_users)


@pytest.mark.parametrize("seed", [None, -1, 1.5, "2024"])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        health.generate(num_users=5, seed=seed)


@settings(max_examples=25, deadline=None)
@given(num_users=st.integers(1, 40), seed=st.integers(0, 2**32))
def test_any_small_dataset_is_well_formed(num_users, seed):
    d = health.generate(num_users=num_users, seed=seed)
    n = int(d.users.num_days.sum())
    assert d.x.shape == (n, len(health.FEATURES))
    assert d.user.shape == d.day.shape == d.weekday.shape == d.y.shape == d.prob.shape == (n,)
    assert set(np.unique(d.user)) == set(range(num_users))
    assert set(np.unique(d.y)) <= {0, 1}
    assert np.all((d.prob > 0) & (d.prob < 1))
    assert np.all(np.isfinite(d.x))
    assert d.user.dtype == d.y.dtype == np.int64
