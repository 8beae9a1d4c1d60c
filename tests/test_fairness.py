"""Per-group accuracy and opt-out sampling (fedlab.fairness)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlab import fairness


def test_per_group_accuracy_known_answer():
    got = fairness.per_group_accuracy([1, 0, 1, 1, 0, 0], [1, 0, 0, 1, 1, 0], [0, 0, 1, 1, 2, 2], num_groups=3)
    np.testing.assert_allclose(got, [1.0, 0.5, 0.5])


def test_empty_group_is_nan():
    got = fairness.per_group_accuracy([1, 0, 1], [1, 1, 1], [0, 0, 2], num_groups=4)
    np.testing.assert_allclose(got, [0.5, np.nan, 1.0, np.nan])


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 200), st.integers(1, 5), st.integers(0, 2**16))
def test_size_weighted_mean_is_overall_accuracy(n, groups, seed):
    rng = np.random.default_rng(seed)
    yt, yp, g = rng.integers(0, 3, n), rng.integers(0, 3, n), rng.integers(0, groups, n)
    acc = fairness.per_group_accuracy(yt, yp, g, num_groups=groups)
    sizes = np.bincount(g, minlength=groups)
    assert np.isnan(acc).tolist() == (sizes == 0).tolist()
    assert np.isclose(np.nansum(acc * sizes) / n, np.mean(yt == yp))


def test_opt_out_extremes_frequencies_and_seed():
    groups = np.repeat([0, 1, 2], 4000)
    stays = fairness.opt_out(groups, rates=[1.0, 0.25, 0.0], rng=0)
    assert not stays[groups == 0].any() and stays[groups == 2].all()
    assert abs(stays[groups == 1].mean() - 0.75) < 5 * np.sqrt(0.75 * 0.25 / 4000)
    np.testing.assert_array_equal(stays, fairness.opt_out(groups, rates=[1.0, 0.25, 0.0], rng=0))


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"rates\[1\]=1.5: must be a number in \[0, 1\]"):
        fairness.opt_out([0, 1], rates=[0.1, 1.5], rng=0)
    with pytest.raises(ValueError, match=r"rates\[0\]=-0.1"):
        fairness.opt_out([0, 1], rates=[-0.1, 0.5], rng=0)
    with pytest.raises(ValueError, match=r"groups has values in \[0, 2\]: must lie in \[0, 2\)"):
        fairness.opt_out([0, 2], rates=[0.1, 0.5], rng=0)
    with pytest.raises(ValueError, match="must match"):
        fairness.per_group_accuracy([1, 0], [1], [0, 0], num_groups=1)
    with pytest.raises(ValueError, match="num_groups=0"):
        fairness.per_group_accuracy([1], [1], [0], num_groups=0)
