"""Lesson 04 exercises: bandwidth.

04.1 ``quantized_bytes``       bytes of an update quantized to k bits (bit-packed codes + lo and step per tensor)
04.2 ``quantize``              k-bit quantization with stochastic rounding: codes, lo, step
04.3 ``topk_sparsify``         keep the largest-magnitude entries: indices and values
04.4 ``error_feedback_step``   top-k with error feedback: send, and remember what was not sent

Quantization is random, so 04.2 is checked by its guarantees (codes in range,
error at most one step, unbiased over many draws, reproducible from the seed)
rather than by equality with :func:`fedlab.compress.quantize`. The others are
compared with :func:`fedlab.compress.message_bytes`, :func:`fedlab.compress.topk`
and :func:`fedlab.compress.topk_with_feedback`.
"""

from __future__ import annotations

import numpy as np

from fedlab import compress
from fedlab.checks import CheckFailed, Exercise, Test, expect_close, expect_equal, register, test_rng

MLP_SHAPES = [(128, 64), (128,), (10, 128), (10,)]

# ---- 04.1 quantized_bytes -----------------------------------------------------------------


def _t_bytes_mlp8(answer):
    expect_equal(
        answer(MLP_SHAPES, bits=8),
        9642,
        what="MLP 64-128-10 (9,610 parameters) at 8 bits",
        hint="one byte per parameter (9,610) plus 8 bytes (lo and step as float32) for each of the 4 tensors",
    )


def _t_bytes_odd(answer):
    expect_equal(
        answer([(3,), (5,)], bits=3),
        20,
        what="tensors of 3 and 5 entries at 3 bits",
        hint="pack each tensor on its own and round up to whole bytes: ceil(9 / 8) + 8 = 10 and ceil(15 / 8) + 8 = 10",
    )


def _t_bytes_mlp1(answer):
    expect_equal(
        answer(MLP_SHAPES, bits=1),
        1234,
        what="MLP 64-128-10 at 1 bit",
        hint="ceil(8192/8) + ceil(128/8) + ceil(1280/8) + ceil(10/8) = 1202, plus 4 x 8 bytes",
    )


def _t_bytes_reference(answer):
    rng = test_rng(0)
    shapes = [(7, 5), (11,), (2, 3, 4), (1,)]
    for bits in (1, 2, 5, 8, 13, 16, 32):
        msgs = [compress.quantize(rng.standard_normal(s), bits=bits, rng=rng) for s in shapes]
        expect_equal(answer(shapes, bits=bits), compress.message_bytes(msgs), what=f"shapes {shapes} at {bits} bits")


# ---- 04.2 quantize ------------------------------------------------------------------------


def _triple(out, what):
    if not isinstance(out, tuple | list) or len(out) != 3:
        raise CheckFailed(f"{what}: expected a tuple (codes, lo, step), got {type(out).__name__}")
    codes, lo, step = out
    codes = np.asarray(codes)
    if codes.dtype.kind == "f":
        if not np.all(codes == np.round(codes)):
            raise CheckFailed(f"{what}: codes must be whole numbers (the integers sent), got {codes.ravel()[:4]}")
    elif codes.dtype.kind not in "iu":
        raise CheckFailed(f"{what}: codes have dtype {codes.dtype}; expected integers")
    return codes.astype(np.float64), float(lo), float(step)


def _decoded(out, what):
    codes, lo, step = _triple(out, what)
    return lo + codes * step, codes, lo, step


def _t_q_range(answer):
    x = test_rng(1).standard_normal((5, 7)).astype(np.float32)
    for bits in (1, 3, 8):
        codes, lo, step = _triple(answer(x, bits=bits, rng=0), f"a 5x7 tensor at {bits} bits")
        expect_equal(codes.shape, x.shape, what=f"{bits} bits: shape of codes", hint="one code per entry of x")
        top = 2**bits - 1
        if codes.min() < 0 or codes.max() > top:
            raise CheckFailed(
                f"{bits} bits: expected codes in 0..{top}, got {codes.min():g}..{codes.max():g}. "
                "Hint: step = (max - min) / (2**bits - 1), t = (x - min) / step lies in [0, 2**bits - 1]"
            )
        expect_close(lo, x.min(), what=f"{bits} bits: lo", hint="lo is the tensor's minimum")
        expect_close(step, (x.max() - x.min()) / top, what=f"{bits} bits: step", rtol=1e-5,
                     like={"(max - min) / 2**bits: 2**bits levels have 2**bits - 1 gaps, so divide by 2**bits - 1":
                           (x.max() - x.min()) / 2**bits},
                     hint="step = (max - min) / (2**bits - 1)")


def _t_q_error(answer):
    x = test_rng(2).standard_normal(200).astype(np.float32)
    span = float(x.max() - x.min())
    for bits in (1, 2, 4, 8):
        deq, _, _, step = _decoded(answer(x, bits=bits, rng=3), f"{bits} bits")
        want_step = span / (2**bits - 1)
        if not step <= want_step * (1 + 1e-5):
            raise CheckFailed(
                f"{bits} bits: expected step = (max - min) / (2**bits - 1) = {want_step:.6g}, got {step:.6g}"
            )
        err = float(np.max(np.abs(deq - x)))
        if err > step * (1 + 1e-5) + 1e-7:
            raise CheckFailed(
                f"{bits} bits: expected every |x - (lo + code * step)| <= step = {step:.4g}, got an error of "
                f"{err:.4g}. Hint: round t = (x - lo) / step to floor(t) or floor(t) + 1, never further"
            )


def _t_q_unbiased(answer):
    # grid 0, 1, 2, 3 at 2 bits; the interior values sit at fractions 0.25, 0.6, 0.9, 0.5 of a step
    row = np.array([0.0, 3.0, 0.25, 1.6, 2.9, 1.5], dtype=np.float32)
    n = 4000
    x = np.tile(row, n)
    deq, _, _, step = _decoded(answer(x, bits=2, rng=4), "2 bits, 4000 copies of 6 values")
    mean = deq.reshape(n, row.size).mean(axis=0)
    tol = 5 * 0.5 * step / np.sqrt(n)  # five standard errors (the variance is at most step**2 / 4)
    if not np.all(np.abs(mean - row) <= tol):
        raise CheckFailed(
            f"expected the decoded values to average to x over many draws (stochastic rounding is unbiased): "
            f"x = {row.tolist()}, average of {n} draws = {np.round(mean, 3).tolist()}. Hint: round t up with "
            "probability t - floor(t): codes = floor(t) + (rng.random(t.shape) < t - floor(t)); "
            "rounding to the nearest grid point is biased"
        )


def _t_q_seeded(answer):
    x = np.linspace(-1, 1, 50).astype(np.float32) + np.float32(0.013)
    a, _, _ = _triple(answer(x, bits=2, rng=11), "seed 11")
    b, _, _ = _triple(answer(x, bits=2, rng=11), "seed 11 again")
    if not np.array_equal(a, b):
        raise CheckFailed(
            "the same seed gave different codes. Hint: take the random numbers from "
            "g = np.random.default_rng(rng) (or rng itself if it is a Generator), never from np.random.*"
        )
    g = test_rng(12)
    c, _, _ = _triple(answer(x, bits=2, rng=g), "a Generator, first call")
    d, _, _ = _triple(answer(x, bits=2, rng=g), "the same Generator, second call")
    if np.array_equal(c, d):
        raise CheckFailed("two calls with the same Generator gave the same codes: use the Generator passed in "
                          "(it advances), do not re-seed it")


def _t_q_endpoints(answer):
    x = np.array([-1.0, 0.3, 2.0, -1.0, 2.0], dtype=np.float32)
    for seed in range(5):
        deq, _, _, _ = _decoded(answer(x, bits=1, rng=seed), "1 bit, x = [-1, 0.3, 2, -1, 2]")
        expect_close(deq[[0, 2, 3, 4]], [-1.0, 2.0, -1.0, 2.0], what="min and max at 1 bit",
                     hint="the minimum and the maximum lie on the grid and must come back exactly")


def _t_q_constant(answer):
    x = np.full(6, 0.7, dtype=np.float32)
    deq, _, _, _ = _decoded(answer(x, bits=4, rng=0), "a constant tensor")
    expect_close(deq, x, what="a constant tensor (max == min)",
                 hint="when max == min use step = 0 and codes of 0 (do not divide by zero)")


def _t_q_16bits(answer):
    x = test_rng(6).standard_normal(1000).astype(np.float32)
    deq, _, _, _ = _decoded(answer(x, bits=16, rng=7), "16 bits")
    err = float(np.max(np.abs(deq - x)))
    if err > 2e-4 * float(x.max() - x.min()):
        raise CheckFailed(
            f"16 bits should be almost lossless: expected a max error below 2e-4 of the range, got {err:.3g}"
        )


# ---- 04.3 topk_sparsify -------------------------------------------------------------------


def _pairs(out, what):
    if not isinstance(out, tuple | list) or len(out) != 2:
        raise CheckFailed(f"{what}: expected a tuple (indices, values), got {type(out).__name__}")
    idx, val = np.asarray(out[0]).ravel(), np.asarray(out[1], dtype=np.float64).ravel()
    if idx.size != val.size:
        raise CheckFailed(f"{what}: {idx.size} indices but {val.size} values")
    if idx.size and idx.dtype.kind not in "iu":
        raise CheckFailed(f"{what}: indices have dtype {idx.dtype}; expected integers")
    order = np.argsort(idx, kind="stable")
    return idx[order].astype(np.int64), val[order]


def _topk_case(answer, x, fraction, what, hint=""):
    want = compress.topk(x, fraction=fraction)
    idx, val = _pairs(answer(x, fraction=fraction), what)
    expect_equal(idx, want.indices, what=f"{what}: indices (sorted)",
                 hint=hint or "k = compress.num_kept(x.size, fraction); take the k largest |x| of x.ravel()")
    expect_close(val, want.values, what=f"{what}: values", hint="the values are x.ravel()[indices], signs kept")


def _t_topk_known(answer):
    _topk_case(answer, np.array([0.1, -3.0, 2.0, 0.5], np.float32), 0.5, "x = [0.1, -3, 2, 0.5], fraction 0.5",
               hint="keep the 2 entries of largest MAGNITUDE: -3 (index 1) and 2 (index 2)")


def _t_topk_matrix(answer):
    x = test_rng(8).standard_normal((6, 5)).astype(np.float32)
    _topk_case(answer, x, 0.2, "a 6x5 matrix, fraction 0.2 (6 entries)",
               hint="work on x.ravel(); indices point into the flattened array")


def _t_topk_random(answer):
    rng = test_rng(9)
    for n, fraction in ((1000, 0.01), (97, 0.3), (10, 0.25)):
        _topk_case(answer, rng.standard_normal(n).astype(np.float32), fraction, f"{n} entries, fraction {fraction}")


def _t_topk_all(answer):
    x = np.array([0.5, -0.25, 0.0, 4.0], np.float32)
    _topk_case(answer, x, 1.0, "fraction 1 (keep everything)")


# ---- 04.4 error_feedback_step -------------------------------------------------------------


def _sent_res(out, what, shape):
    if not isinstance(out, tuple | list) or len(out) != 2:
        raise CheckFailed(f"{what}: expected a tuple (sent, new_residual), got {type(out).__name__}")
    sent, res = np.asarray(out[0], np.float64), np.asarray(out[1], np.float64)
    for name, a in (("sent", sent), ("new_residual", res)):
        if a.shape != shape:
            raise CheckFailed(f"{what}: expected {name} of shape {shape} (dense, like delta), got {a.shape}")
    return sent, res


def _t_ef_known(answer):
    d1 = np.array([1.0, 0.5, -0.2], np.float32)
    sent, res = _sent_res(answer(d1, np.zeros(3, np.float32), fraction=1 / 3), "round 1", (3,))
    expect_close(sent, [1.0, 0.0, 0.0], what="round 1: sent (k = 1 of 3)")
    expect_close(res, [0.0, 0.5, -0.2], what="round 1: new residual",
                 hint="the residual is what was not sent: (delta + residual) - sent")
    d2 = np.array([0.1, 0.3, 0.0], np.float32)
    sent, res = _sent_res(answer(d2, res.astype(np.float32), fraction=1 / 3), "round 2", (3,))
    expect_close(sent, [0.0, 0.8, 0.0], what="round 2: sent",
                 hint="select the top-k of delta + residual = [0.1, 0.8, -0.2], not of delta alone")
    expect_close(res, [0.1, 0.0, -0.2], what="round 2: new residual",
                 like={"delta - sent: the new residual is (delta + residual) - sent, the old residual too":
                       [0.1, -0.5, 0.0]},
                 hint="new_residual = (delta + residual) - sent")


def _t_ef_reference(answer):
    rng = test_rng(10)
    res_ref = res = np.zeros((4, 6), np.float32)
    for r in range(4):
        delta = rng.standard_normal((4, 6)).astype(np.float32)
        msg, res_ref = compress.topk_with_feedback(delta, res_ref, fraction=0.15)
        sent, res = _sent_res(answer(delta, res.astype(np.float32), fraction=0.15), f"round {r + 1}", (4, 6))
        expect_close(sent, compress.densify(msg), what=f"round {r + 1}: sent (a 4x6 delta, fraction 0.15)",
                     atol=1e-5)
        expect_close(res, res_ref, what=f"round {r + 1}: new residual", atol=1e-5)


def _t_ef_conserves(answer):
    rng = test_rng(11)
    res = np.zeros(50, np.float32)
    total_sent, total_delta = np.zeros(50), np.zeros(50)
    for r in range(6):
        delta = rng.standard_normal(50).astype(np.float32)
        sent, res = _sent_res(answer(delta, res.astype(np.float32), fraction=0.1), f"round {r + 1}", (50,))
        total_sent += sent
        total_delta += delta
    expect_close(total_sent + res, total_delta, what="over 6 rounds: everything sent + the final residual",
                 atol=1e-4, hint="nothing may be lost: new_residual = (delta + residual) - sent")


def _t_ef_first(answer):
    delta = test_rng(12).standard_normal(40).astype(np.float32)
    sent, _ = _sent_res(answer(delta, np.zeros(40, np.float32), fraction=0.1), "zero residual", (40,))
    expect_close(sent, compress.densify(compress.topk(delta, fraction=0.1)),
                 what="with a zero residual the step is plain top-k")


register(
    Exercise(
        "04.1",
        "bytes of a quantized update",
        "quantized_bytes",
        (
            Test("mlp_8_bits", _t_bytes_mlp8),
            Test("odd_sizes", _t_bytes_odd),
            Test("mlp_1_bit", _t_bytes_mlp1, in_check=False),
            Test("matches_reference", _t_bytes_reference, in_check=False),
        ),
        hint="sum over tensors of ceil(n * bits / 8) + 8, with n the tensor's number of entries",
    ),
    Exercise(
        "04.2",
        "k-bit quantization with stochastic rounding",
        "quantize",
        (
            Test("codes_in_range", _t_q_range),
            Test("error_at_most_one_step", _t_q_error),
            Test("unbiased", _t_q_unbiased),
            Test("seeded", _t_q_seeded),
            Test("endpoints_exact", _t_q_endpoints, in_check=False),
            Test("constant_tensor", _t_q_constant, in_check=False),
            Test("sixteen_bits", _t_q_16bits, in_check=False),
        ),
        hint="lo = x.min(); step = (x.max() - lo) / (2**bits - 1); t = (x - lo) / step; "
        "codes = floor(t) + (rng.random(t.shape) < t - floor(t))",
    ),
    Exercise(
        "04.3",
        "top-k sparsification",
        "topk_sparsify",
        (
            Test("known_answer", _t_topk_known),
            Test("matrix_flattened", _t_topk_matrix),
            Test("random_vectors", _t_topk_random, in_check=False),
            Test("keep_everything", _t_topk_all, in_check=False),
        ),
        hint="np.argsort(-np.abs(flat))[:k] gives the positions of the k largest magnitudes",
    ),
    Exercise(
        "04.4",
        "error feedback",
        "error_feedback_step",
        (
            Test("known_two_rounds", _t_ef_known),
            Test("conserves_the_sum", _t_ef_conserves),
            Test("matches_reference", _t_ef_reference, in_check=False),
            Test("zero_residual_is_topk", _t_ef_first, in_check=False),
        ),
        hint="corrected = delta + residual; send the top-k of corrected (dense, zeros elsewhere); "
        "new_residual = corrected - sent",
    ),
)
