"""Robust aggregators (fedlab.robust): known answers, the breakdown point, norm bounds, bad inputs."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlab import fedavg, robust
from fedlab import params as P


def _d(*values):
    return [[np.asarray(v, np.float32)] for v in values]


def test_median_known_answers_odd_and_even():
    got = robust.coordinate_median(_d([1, 10], [2, -5], [100, 0]))
    assert P.allclose(got, [np.array([2.0, 0.0])])
    got = robust.coordinate_median(np.array([[1.0], [3.0], [4.0], [10.0]]))
    np.testing.assert_allclose(got, [3.5])
    assert got.dtype == np.float32


def test_median_keeps_shapes_of_several_tensors():
    rng = np.random.default_rng(0)
    deltas = [[rng.standard_normal((3, 2)), rng.standard_normal(2)] for _ in range(5)]
    got = robust.coordinate_median(deltas)
    assert [g.shape for g in got] == [(3, 2), (2,)]
    want = np.median(np.stack([P.flatten(d) for d in deltas]), axis=0)
    np.testing.assert_allclose(P.flatten(got), want, rtol=1e-6)


def test_trimmed_mean_known_answers():
    vals = _d([1.0], [2.0], [3.0], [4.0], [100.0])
    assert P.allclose(robust.trimmed_mean(vals, trim=0.2), [np.array([3.0])])
    assert P.allclose(robust.trimmed_mean(vals, trim=1), [np.array([3.0])])
    assert P.allclose(robust.trimmed_mean(vals, trim=2), [np.array([3.0])])  # the median for odd n
    assert P.allclose(robust.trimmed_mean(vals, trim=0), [np.array([22.0])])
    # each coordinate is trimmed on its own
    got = robust.trimmed_mean(_d([1, 50], [50, 1], [2, 2], [3, 3]), trim=0.25)
    assert P.allclose(got, [np.array([2.5, 2.5])])


def test_trim_count_fraction_and_int():
    assert robust.trim_count(10, 0.25) == 2
    assert robust.trim_count(10, 0.3) == 3
    assert robust.trim_count(10, 4) == 4
    assert robust.trim_count(5, 0.0) == 0


def test_norm_bound_known_answer_and_weights():
    got = robust.norm_bound(_d([3.0, 4.0], [0.6, 0.8]), max_norm=1.0)
    assert P.allclose(got, [np.array([0.6, 0.8])])
    got = robust.norm_bound(_d([0, 0, 0], [0, 0, 2]), max_norm=1.0, weights=[1, 3])
    assert P.allclose(got, [np.array([0, 0, 0.75])])
    # a bound above every norm is the plain weighted mean (FedAvg's aggregate)
    rng = np.random.default_rng(1)
    deltas = [[rng.standard_normal((2, 2)).astype(np.float32), rng.standard_normal(2).astype(np.float32)]
              for _ in range(4)]
    outs = [fedavg.ClientOutput(d, n) for d, n in zip(deltas, [3, 1, 7, 2])]
    assert P.allclose(robust.norm_bound(deltas, max_norm=1e6, weights=[3, 1, 7, 2]), fedavg.aggregate(outs))
    assert P.allclose(robust.aggregate(deltas, aggregator="mean", weights=[3, 1, 7, 2]), fedavg.aggregate(outs))


finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_median_resists_fewer_than_half_bad_clients(data):
    """Breakdown point 1/2: with f < n/2 arbitrary huge outliers every coordinate stays in the honest range."""
    d = data.draw(st.integers(1, 4))
    honest_n = data.draw(st.integers(1, 9))
    f = data.draw(st.integers(0, honest_n - 1))  # f < honest_n  <=>  f < n/2
    honest = np.array(data.draw(st.lists(st.lists(finite, min_size=d, max_size=d), min_size=honest_n,
                                         max_size=honest_n)), dtype=np.float64)
    bad = np.array(data.draw(st.lists(st.lists(st.sampled_from([-1e30, 1e30, 7e12, -3e9]), min_size=d, max_size=d),
                                      min_size=f, max_size=f)), dtype=np.float64).reshape(f, d)
    order = data.draw(st.permutations(range(honest_n + f)))
    m = np.vstack([honest, bad])[list(order)]
    med = robust.coordinate_median(m).astype(np.float64)
    lo, hi = honest.min(axis=0), honest.max(axis=0)
    assert np.all(med >= lo - 1e-3 * (1 + np.abs(lo))) and np.all(med <= hi + 1e-3 * (1 + np.abs(hi)))


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_trimmed_mean_resists_k_bad_clients(data):
    k = data.draw(st.integers(0, 3))
    honest_n = data.draw(st.integers(k + 1, 10))  # 2k < n: something honest is left
    honest = np.array(data.draw(st.lists(finite, min_size=honest_n, max_size=honest_n)), np.float64)[:, None]
    bad = np.full((k, 1), data.draw(st.sampled_from([-1e20, 1e20])))
    m = np.vstack([honest, bad])
    got = float(robust.trimmed_mean(m, trim=k)[0])
    assert honest.min() - 1e-2 <= got <= honest.max() + 1e-2


def test_the_median_breaks_at_half():
    honest = np.zeros((5, 1))
    assert robust.coordinate_median(np.vstack([honest, np.full((4, 1), 1e6)]))[0] == 0
    assert robust.coordinate_median(np.vstack([honest, np.full((6, 1), 1e6)]))[0] == 1e6


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(finite, min_size=3, max_size=3), min_size=1, max_size=6), st.floats(1e-3, 1e3))
def test_norm_bound_never_increases_norms(rows, max_norm):
    m = np.array(rows, np.float64)
    out = robust.norm_bound(m, max_norm=max_norm)
    assert np.linalg.norm(out) <= max_norm * (1 + 1e-5) + 1e-6
    assert np.linalg.norm(out) <= np.linalg.norm(m, axis=1).max() * (1 + 1e-5) + 1e-6
    scale = robust.clip_scale(np.linalg.norm(m, axis=1), max_norm=max_norm)
    assert np.all(scale <= 1) and np.all(scale > 0)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: robust.coordinate_median([]), "deltas is empty"),
        (lambda: robust.coordinate_median(np.zeros(3)), r"\[n_clients, n_params\]"),
        (lambda: robust.coordinate_median([[np.array(["a"])]]), r"deltas\[0\]\[0\] has dtype"),
        (lambda: robust.coordinate_median(_d([1.0, 2.0], [1.0])), r"deltas\[1\]\[0\] has shape"),
        (lambda: robust.coordinate_median(_d([1.0], [np.nan])), r"deltas\[1\] has non-finite"),
        (lambda: robust.trimmed_mean(_d([1.0], [2.0]), trim=0.5), "trim=0.5"),
        (lambda: robust.trimmed_mean(_d([1.0], [2.0], [3.0]), trim=-1), "trim=-1"),
        (lambda: robust.trimmed_mean(_d([1.0], [2.0], [3.0], [4.0]), trim=2), "2 \\* 2 must be < 4"),
        (lambda: robust.trimmed_mean(_d([1.0]), trim="a"), "trim='a'"),
        (lambda: robust.norm_bound(_d([1.0]), max_norm=0), "max_norm=0"),
        (lambda: robust.norm_bound(_d([1.0], [2.0]), max_norm=1, weights=[1]), "weights="),
        (lambda: robust.aggregate(_d([1.0]), aggregator="krum"), "aggregator='krum'"),
        (lambda: robust.aggregate(_d([1.0]), aggregator="norm_bound"), "needs max_norm"),
    ],
)
def test_bad_inputs_raise_clear_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
