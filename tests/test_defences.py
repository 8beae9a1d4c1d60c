"""fedlab.defences: the bare update transforms used by the leakage explorer (properties and known answers)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlab import defences
from fedlab import params as P


def _update(seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return [(scale * rng.standard_normal(s)).astype(np.float32) for s in [(4, 3), (4,), (2, 4), (2,)]]


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(1e-3, 1e3), max_norm=st.floats(1e-3, 1e3))
def test_clip_bounds_the_norm_and_keeps_the_direction(seed, scale, max_norm):
    d = _update(seed, scale)
    c = defences.clip_update(d, max_norm=max_norm)
    assert P.norm(c) <= max_norm * (1 + 1e-5)
    assert P.norm(c) == pytest.approx(min(P.norm(d), max_norm), rel=1e-5)
    a, b = P.flatten(d), P.flatten(c)
    assert np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)) == pytest.approx(1.0, abs=1e-5)


def test_clip_known_answer_and_no_op():
    d = [np.array([3.0, 4.0], np.float32)]
    np.testing.assert_allclose(defences.clip_update(d, max_norm=1.0)[0], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(defences.clip_update(d, max_norm=10.0)[0], d[0])
    np.testing.assert_array_equal(defences.clip_update(d, max_norm=math.inf)[0], d[0])
    assert d[0].tolist() == [3.0, 4.0]  # input untouched


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10_000), fraction=st.floats(0.01, 1.0))
def test_topk_keeps_exactly_the_largest_entries(seed, fraction):
    d = _update(seed)
    flat = P.flatten(d)
    out = P.flatten(defences.topk_mask(d, fraction=fraction))
    k = math.ceil(fraction * flat.size)
    kept = out != 0
    assert kept.sum() == k
    np.testing.assert_array_equal(out[kept], flat[kept])  # kept entries unchanged
    if k < flat.size:
        assert np.abs(flat[kept]).min() >= np.abs(flat[~kept]).max()


def test_noise_is_seeded_and_has_the_right_spread():
    d = [np.zeros((200, 200), np.float32)]
    a = defences.add_gaussian_noise(d, std=0.5, rng=3)
    b = defences.add_gaussian_noise(d, std=0.5, rng=3)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].std() == pytest.approx(0.5, rel=0.02)
    np.testing.assert_array_equal(defences.add_gaussian_noise(d, std=0.0, rng=0)[0], d[0])


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda d: defences.clip_update(d, max_norm=0), "max_norm=0"),
        (lambda d: defences.clip_update(d, max_norm=-1.0), "max_norm=-1.0"),
        (lambda d: defences.topk_mask(d, fraction=0.0), "fraction=0.0"),
        (lambda d: defences.topk_mask(d, fraction=1.5), "fraction=1.5"),
        (lambda d: defences.add_gaussian_noise(d, std=-1.0, rng=0), "std=-1.0"),
        (lambda d: defences.add_gaussian_noise(d, std=1.0, rng=None), "rng=None"),
        (lambda d: defences.clip_update(np.zeros(3), max_norm=1.0), "must be a list"),
        (lambda d: defences.clip_update([np.array([np.nan])], max_norm=1.0), "nan or inf"),
    ],
)
def test_errors_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call(_update(0))
