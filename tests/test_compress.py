"""Known answers, error bounds, unbiasedness, error-feedback conservation and byte accounting of fedlab.compress."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedlab import compress, fedavg, models
from fedlab import params as P

finite32 = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, width=32)
arrays = hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=2, max_side=12), elements=finite32)


# ---- quantization: known answers ------------------------------------------------------------


def test_quantize_on_grid_is_exact_known_answer():
    x = np.array([0.0, 1.0, 2.0, 3.0, 3.0, 0.0], np.float32)
    for rounding, rng in (("stochastic", 0), ("stochastic", 123), ("nearest", None)):
        q = compress.quantize(x, bits=2, rng=rng, rounding=rounding)
        assert q.lo == 0.0 and q.step == 1.0 and q.bits == 2
        assert q.codes.tolist() == [0, 1, 2, 3, 3, 0]
        assert q.codes.dtype == np.uint8
        np.testing.assert_array_equal(compress.dequantize(q), x)


def test_quantize_nearest_known_answer():
    x = np.array([0.0, 0.4, 0.6, 1.49, 3.0], np.float32)
    q = compress.quantize(x, bits=2, rounding="nearest")
    assert q.codes.tolist() == [0, 0, 1, 1, 3]


def test_quantize_shapes_and_code_dtypes():
    x = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    for bits, dtype in ((1, np.uint8), (8, np.uint8), (9, np.uint16), (16, np.uint16), (17, np.uint32), (32, np.uint32)):
        q = compress.quantize(x, bits=bits, rng=1)
        assert q.shape == (3, 4, 5) and q.codes.dtype == dtype
        assert int(q.codes.max()) <= 2**bits - 1
        assert compress.dequantize(q).dtype == np.float32 and compress.dequantize(q).shape == x.shape


def test_quantize_constant_and_empty():
    q = compress.quantize(np.full((2, 3), -0.25, np.float32), bits=4, rng=0)
    assert q.step == 0.0 and not q.codes.any()
    np.testing.assert_array_equal(compress.dequantize(q), np.full((2, 3), -0.25, np.float32))
    e = compress.quantize(np.zeros((0, 3), np.float32), bits=4, rng=0)
    assert compress.dequantize(e).shape == (0, 3)
    assert compress.message_bytes(e) == 8


def test_quantize_32_bits_is_lossless_up_to_float32():
    x = np.random.default_rng(1).standard_normal(5000).astype(np.float32) * 3
    deq = compress.dequantize(compress.quantize(x, bits=32, rng=2))
    np.testing.assert_allclose(deq, x, rtol=1e-6, atol=1e-6)


def test_quantize_is_reproducible_and_uses_the_generator():
    x = np.linspace(-1, 1, 101).astype(np.float32) + np.float32(0.003)
    a = compress.quantize(x, bits=3, rng=5).codes
    b = compress.quantize(x, bits=3, rng=5).codes
    np.testing.assert_array_equal(a, b)
    g = np.random.default_rng(5)
    c, d = compress.quantize(x, bits=3, rng=g).codes, compress.quantize(x, bits=3, rng=g).codes
    np.testing.assert_array_equal(a, c)  # an int seed and a fresh Generator with that seed agree
    assert not np.array_equal(c, d)  # the Generator advanced


# ---- quantization: properties ------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(x=arrays, bits=st.integers(1, 32), seed=st.integers(0, 2**16))
def test_stochastic_error_at_most_one_step(x, bits, seed):
    q = compress.quantize(x, bits=bits, rng=seed)
    deq = compress.dequantize(q).astype(np.float64)
    x64 = x.astype(np.float64)
    slack = 2 * np.finfo(np.float32).eps * np.abs(x64)  # the final cast to float32
    assert np.all(np.abs(deq - x64) <= q.step * (1 + 1e-9) + slack + 1e-30)
    # the grid covers the range, and the minimum comes back exactly
    assert float(x.min()) + (2**bits - 1) * q.step >= float(x.max())
    assert deq.min() == float(x.min())


@settings(max_examples=150, deadline=None)
@given(x=arrays, bits=st.integers(1, 32))
def test_nearest_error_at_most_half_a_step(x, bits):
    q = compress.quantize(x, bits=bits, rounding="nearest")
    deq = compress.dequantize(q).astype(np.float64)
    x64 = x.astype(np.float64)
    slack = 2 * np.finfo(np.float32).eps * np.abs(x64)
    assert np.all(np.abs(deq - x64) <= 0.5 * q.step * (1 + 1e-9) + slack + 1e-30)


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_stochastic_rounding_is_unbiased_over_many_draws(bits):
    # values at several fractions of a grid step; the mean of n draws has standard error <= step / (2 sqrt(n))
    rng = np.random.default_rng(bits)
    row = np.concatenate([[-1.0, 2.0], rng.uniform(-1, 2, 30)]).astype(np.float32)
    n = 20_000
    q = compress.quantize(np.tile(row, n), bits=bits, rng=7)
    mean = compress.dequantize(q).astype(np.float64).reshape(n, row.size).mean(axis=0)
    tol = 5 * 0.5 * q.step / np.sqrt(n)
    assert np.max(np.abs(mean - row)) <= tol
    # nearest rounding is biased on the same values: its error does not average away
    near = compress.dequantize(compress.quantize(row, bits=bits, rounding="nearest")).astype(np.float64)
    assert np.max(np.abs(near - row)) > 10 * tol


def test_stochastic_rounding_probability_known_answer():
    # 0.3 of the way between the levels 0 and 1: sent as 1 with probability 0.3
    x = np.tile(np.array([0.0, 0.3, 1.0], np.float32), 50_000)
    codes = compress.quantize(x, bits=1, rng=11).codes.reshape(-1, 3)
    assert codes[:, 0].max() == 0 and codes[:, 2].min() == 1
    assert abs(codes[:, 1].mean() - 0.3) < 5 * np.sqrt(0.21 / 50_000)


# ---- top-k and error feedback ------------------------------------------------------------------


def test_num_kept_known_answers():
    assert compress.num_kept(10, 0.25) == 3  # floor(2.5 + 0.5)
    assert compress.num_kept(30, 0.1) == 3
    assert compress.num_kept(10, 0.01) == 1  # at least one entry
    assert compress.num_kept(7, 1.0) == 7
    assert compress.num_kept(0, 0.5) == 0


def test_topk_known_answer_and_densify():
    x = np.array([[0.1, -3.0], [2.0, 0.5]], np.float32)
    s = compress.topk(x, fraction=0.5)
    assert s.indices.tolist() == [1, 2] and s.values.tolist() == [-3.0, 2.0] and s.shape == (2, 2)
    np.testing.assert_array_equal(compress.densify(s), [[0.0, -3.0], [2.0, 0.0]])


def test_topk_ties_go_to_the_lower_index_and_fraction_one_keeps_all():
    x = np.array([1.0, -1.0, 1.0, 0.5], np.float32)
    assert compress.topk(x, fraction=0.5).indices.tolist() == [0, 1]
    s = compress.topk(x, fraction=1.0)
    np.testing.assert_array_equal(compress.densify(s), x)


@settings(max_examples=100, deadline=None)
@given(x=arrays, fraction=st.floats(0.01, 1.0))
def test_topk_keeps_the_largest_magnitudes(x, fraction):
    s = compress.topk(x, fraction=fraction)
    k = compress.num_kept(x.size, fraction)
    assert s.indices.size == k and np.all(np.diff(s.indices) > 0)
    flat = x.ravel()
    np.testing.assert_array_equal(s.values, flat[s.indices])
    dropped = np.delete(np.abs(flat), s.indices)
    if dropped.size and k:
        assert np.abs(s.values).min() >= dropped.max()


def test_error_feedback_known_two_rounds():
    m1, r1 = compress.topk_with_feedback(np.array([1.0, 0.5, -0.2], np.float32), None, fraction=1 / 3)
    np.testing.assert_allclose(compress.densify(m1), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(r1, [0.0, 0.5, -0.2])
    m2, r2 = compress.topk_with_feedback(np.array([0.1, 0.3, 0.0], np.float32), r1, fraction=1 / 3)
    np.testing.assert_allclose(compress.densify(m2), [0.0, 0.8, 0.0], rtol=1e-6)
    np.testing.assert_allclose(r2, [0.1, 0.0, -0.2], rtol=1e-6)


@settings(max_examples=100, deadline=None)
@given(
    deltas=hnp.arrays(np.float32, st.tuples(st.integers(1, 8), st.integers(1, 20)), elements=finite32),
    fraction=st.floats(0.01, 1.0),
)
def test_error_feedback_conserves_the_sum(deltas, fraction):
    # sum over rounds of what was sent + the final residual == sum of the deltas
    residual = None
    sent = np.zeros(deltas.shape[1])
    for d in deltas:
        msg, residual = compress.topk_with_feedback(d, residual, fraction=fraction)
        sent += compress.densify(msg)
    total = deltas.astype(np.float64).sum(axis=0)
    scale = np.abs(deltas).astype(np.float64).sum(axis=0) + 1.0
    assert np.all(np.abs(sent + residual - total) <= 1e-5 * scale)


def test_error_feedback_sends_everything_eventually():
    # a constant delta of small entries that top-k alone would never send
    delta = np.array([1.0, 0.1, 0.1, 0.1], np.float32)
    residual, sent = None, np.zeros(4)
    for _ in range(40):
        msg, residual = compress.topk_with_feedback(delta, residual, fraction=0.25)
        sent += compress.densify(msg)
    assert np.all(sent[1:] > 0)
    assert compress.densify(compress.topk(delta, fraction=0.25))[1:].sum() == 0


# ---- bytes -------------------------------------------------------------------------------------


def test_message_bytes_known_answers():
    q = compress.quantize(np.zeros((10, 10), np.float32), bits=4, rng=0)
    assert compress.message_bytes(q) == 50 + 8
    q3 = compress.quantize(np.zeros(5, np.float32), bits=3, rng=0)
    assert compress.message_bytes(q3) == 2 + 8  # 15 bits -> 2 bytes
    x = np.arange(100, dtype=np.float32)
    assert compress.message_bytes(compress.topk(x, fraction=0.05)) == 20 + 13  # bitmap cheaper than 5 indices
    assert compress.message_bytes(compress.topk(x, fraction=0.5)) == 200 + 13
    assert compress.message_bytes(compress.topk(np.arange(1000.0), fraction=0.001)) == 4 + 4  # one int32 index
    assert compress.message_bytes([q, q3]) == 68


def test_message_bytes_of_the_course_mlp():
    params = models.init_params(models.mlp(64, (128,), 10), rng=0)
    assert compress.message_bytes([compress.quantize(p, bits=8, rng=0) for p in params]) == 9610 + 4 * 8
    assert compress.message_bytes([compress.quantize(p, bits=1, rng=0) for p in params]) == 1202 + 4 * 8
    assert compress.message_bytes([compress.quantize(p, bits=32, rng=0) for p in params]) == P.num_bytes(params) + 32


# ---- uplinks with fedavg.run -------------------------------------------------------------------


def _clients(sizes, *, d=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((d, classes))
    out = []
    for n in sizes:
        x = rng.standard_normal((n, d)).astype(np.float32)
        y = np.argmax(x @ w + 0.5 * rng.standard_normal((n, classes)), axis=1).astype(np.int64)
        out.append((x, y))
    return out


SPEC = models.mlp(6, (5,), 3)
CLIENTS = _clients([8, 12, 5, 9, 7, 10])
KW = dict(rounds=4, seed=3, fraction=0.5, epochs=2, batch_size=4, lr=0.2)


def test_run_with_32_bit_uplink_is_uncompressed():
    plain, h0 = fedavg.run(SPEC, CLIENTS, **KW)
    quant, h1 = fedavg.run(SPEC, CLIENTS, **KW, uplink=compress.quantized_uplink(32))
    assert P.allclose(plain, quant, atol=1e-5, rtol=1e-5)
    per_client = P.num_bytes(plain) + 8 * len(plain)
    assert h1.column("bytes_up").tolist() == [per_client * r.reported for r in h1.records]
    assert h1.column("bytes_down").tolist() == h0.column("bytes_down").tolist()


def test_run_with_full_topk_is_uncompressed_and_residuals_stay_zero():
    plain, _ = fedavg.run(SPEC, CLIENTS, **KW)
    up = compress.topk_uplink(1.0, error_feedback=True)
    dense, h = fedavg.run(SPEC, CLIENTS, **KW, uplink=up)
    assert P.allclose(plain, dense, atol=1e-5, rtol=1e-5)
    n = P.num_params(plain)
    assert h.records[0].bytes_up == h.records[0].reported * (4 * n + (n + 7) // 8)
    assert up.residuals.by_client and up.residuals.norm() == 0.0


def test_run_with_compression_is_reproducible_and_counts_fewer_bytes():
    a, ha = fedavg.run(SPEC, CLIENTS, **KW, uplink=compress.quantized_uplink(2))
    b, hb = fedavg.run(SPEC, CLIENTS, **KW, uplink=compress.quantized_uplink(2))
    assert P.allclose(a, b, atol=0, rtol=0)
    per_client = sum((int(np.prod(s)) * 2 + 7) // 8 + 8 for s in models.shapes(SPEC))  # 47 bytes vs 212 as float32
    assert ha.column("bytes_up").tolist() == [per_client * r.reported for r in ha.records]


def test_topk_uplink_keeps_a_residual_per_sampled_client():
    up = compress.topk_uplink(0.1)
    _, h = fedavg.run(SPEC, CLIENTS, **KW, uplink=up)
    assert set(up.residuals.by_client) <= set(range(len(CLIENTS)))
    assert 0 < len(up.residuals.by_client) and up.residuals.norm() > 0
    n = P.num_params(models.init_params(SPEC, rng=0))
    k = compress.num_kept(n, 0.1)
    assert h.records[0].bytes_up == h.records[0].reported * (4 * k + min(4 * k, (n + 7) // 8))
    assert compress.topk_uplink(0.1, error_feedback=False).residuals.by_client == {}


def test_uplink_call_returns_delta_shapes():
    delta = [np.ones((3, 2), np.float32), np.arange(4, dtype=np.float32)]
    for up in (compress.quantized_uplink(4), compress.topk_uplink(0.5)):
        decoded, nbytes = up(delta, client=0, rng=np.random.default_rng(0))
        assert [d.shape for d in decoded] == [(3, 2), (4,)] and nbytes > 0


# ---- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [0, 33, -1, 1.5, True, "8", None])
def test_bad_bits(bits):
    with pytest.raises(ValueError, match=r"bits=.*must be an int in 1\.\.32"):
        compress.quantize(np.ones(3), bits=bits, rng=0)
    with pytest.raises(ValueError, match=r"bits=.*1\.\.32"):
        compress.quantized_uplink(bits)


@pytest.mark.parametrize("fraction", [0, 0.0, 1.5, -0.1, float("nan"), "0.1"])
def test_bad_fraction(fraction):
    with pytest.raises(ValueError, match=r"fraction=.*\(0, 1\]"):
        compress.topk(np.ones(3), fraction=fraction)
    with pytest.raises(ValueError, match=r"fraction=.*\(0, 1\]"):
        compress.topk_uplink(fraction)
    with pytest.raises(ValueError, match=r"fraction=.*\(0, 1\]"):
        compress.topk_with_feedback(np.ones(3), None, fraction=fraction)


def test_other_bad_inputs():
    with pytest.raises(ValueError, match="rng=None"):
        compress.quantize(np.ones(3), bits=4)
    with pytest.raises(ValueError, match="rounding="):
        compress.quantize(np.ones(3), bits=4, rng=0, rounding="floor")
    with pytest.raises(ValueError, match="NaN or infinity"):
        compress.quantize(np.array([1.0, np.nan]), bits=4, rng=0)
    with pytest.raises(ValueError, match="residual has shape"):
        compress.topk_with_feedback(np.ones(3), np.ones(4), fraction=0.5)
    with pytest.raises(ValueError, match="must be a Quantized, a Sparse"):
        compress.message_bytes(np.ones(3))
    with pytest.raises(ValueError, match="must be a fedlab.compress.Quantized"):
        compress.dequantize(np.ones(3))
    with pytest.raises(ValueError, match="error_feedback="):
        compress.topk_uplink(0.1, error_feedback="yes")
