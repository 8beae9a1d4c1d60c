"""Lesson 08 exercises: differential privacy with accounting.

08.1 ``clip_to_norm``          one update clipped to a global L2 norm (the norm over all tensors together)
08.2 ``dp_average``            the DP-FedAvg server step: clip, sum, divide by the fixed denominator, add noise
08.3 ``rdp_sampled_gaussian``  Renyi DP of one step of the sampled Gaussian mechanism, integer order, in log space
08.4 ``epsilon_from_rdp``      the (epsilon, delta) guarantee from RDP values (Balle et al. 2020 conversion)

Each test compares the learner's answer with the reference in :mod:`fedlab.dp`
on small seeded problems; the noise of 08.2 is checked statistically (any way
of drawing ``N(0, std^2)`` from the given Generator passes).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from fedlab import dp
from fedlab import params as P
from fedlab.checks import CheckFailed, Exercise, Test, expect_close, expect_params_close, register, test_rng

# ---- 08.1 clip_to_norm --------------------------------------------------------------------------

_CLIP_HINT = (
    "norm = sqrt(sum over ALL tensors of sum(t ** 2)); scale = min(1, max_norm / norm); "
    "return [t * scale for t in delta] (an all-zero update stays as it is)"
)


def _as_list(got, what):
    if not isinstance(got, list | tuple):
        raise CheckFailed(f"{what}: expected a list of arrays (one per tensor), got {type(got).__name__}")
    return list(got)


def _t_clip_known(answer):
    got = _as_list(answer([np.array([3.0, 4.0])], 1.0), "clip [3, 4] to norm 1")
    like = {"[3, 4] scaled by max_norm / norm**2 (the squared norm): the norm is the square root of the sum of "
            "squares": [np.array([0.12, 0.16])]}  # fmt: skip
    expect_params_close(got, [np.array([0.6, 0.8])], what="clip [3, 4] (norm 5) to norm 1", hint=_CLIP_HINT, like=like)


def _t_clip_below(answer):
    delta = [np.array([[0.1, -0.2]]), np.array([0.2])]
    got = _as_list(answer(delta, 1.0), "an update of norm 0.3 with max_norm 1")
    expect_params_close(got, delta, what="an update of norm 0.3, max_norm 1 (already small enough)",
                        hint="clipping only ever scales DOWN: min(1, max_norm / norm)")  # fmt: skip


def _t_clip_global(answer):
    delta = [np.array([3.0]), np.array([[4.0]])]
    got = _as_list(answer(delta, 1.0), "two tensors [3.] and [[4.]]")
    expect_params_close(
        got, [np.array([0.6]), np.array([[0.8]])],
        what="two tensors [3.] and [[4.]], max_norm 1 (the update's norm is 5)",
        like={"each tensor clipped on its own norm (tensor by tensor)": [np.array([1.0]), np.array([[1.0]])]},
        hint="the norm runs over all tensors together, not tensor by tensor: " + _CLIP_HINT,
    )  # fmt: skip


def _t_clip_random(answer):
    rng = test_rng(8)
    for scale in (0.01, 1.0, 30.0):
        delta = [rng.standard_normal(s).astype(np.float32) * scale for s in ((5, 4), (5,), (3, 5), (3,))]
        before = [d.copy() for d in delta]
        got = _as_list(answer(delta, 0.5), "a random update")
        if not all(np.array_equal(a, b) for a, b in zip(delta, before)):
            raise CheckFailed("clip_to_norm changed the update it was given; return new arrays")
        expect_params_close(got, dp.clip_update(delta, max_norm=0.5), what=f"a random update of norm "
                            f"{P.norm(delta):.3g}, max_norm 0.5", hint=_CLIP_HINT, rtol=1e-5, atol=1e-7)  # fmt: skip


def _t_clip_zero(answer):
    delta = [np.zeros((2, 3)), np.zeros(3)]
    try:
        got = _as_list(answer(delta, 1.0), "an all-zero update")
    except ZeroDivisionError:
        raise CheckFailed("an all-zero update: your code divides max_norm by the norm, which is 0 here "
                          "(ZeroDivisionError). Hint: when the norm is 0 there is nothing to scale; return the zeros "
                          "(scale = 1 whenever norm <= max_norm)") from None  # fmt: skip
    if any(not np.all(np.isfinite(np.asarray(g, dtype=float))) for g in got):
        raise CheckFailed("an all-zero update (norm 0) came back with nan or inf. Hint: when the norm is 0 there "
                          "is nothing to scale; return the zeros")  # fmt: skip
    expect_params_close(got, delta, what="an all-zero update")


# ---- 08.2 dp_average ----------------------------------------------------------------------------

_AVG_HINT = (
    "clip every client's delta (dp.clip_update(d, max_norm=clip_norm)), add them up tensor by tensor, divide by "
    "expected_clients (NOT by len(deltas)), then add rng.normal(0, noise_multiplier * clip_norm / "
    "expected_clients, size=shape) to each tensor"
)


def _call_avg(answer, deltas, *, s, z, e, rng, what):
    got = answer(deltas, clip_norm=s, noise_multiplier=z, expected_clients=e, rng=rng)
    return [np.asarray(g, dtype=np.float64) for g in _as_list(got, what)]


def _avg_slips(deltas, *, s, e) -> dict:
    """Known wrong noise-free averages: len(deltas) as denominator, no clipping, the sum or average clipped."""

    def total(ds):
        return [sum(np.asarray(d[i], dtype=np.float64) for d in ds) for i in range(len(ds[0]))]

    clipped = total([dp.clip_update(d, max_norm=s) for d in deltas])
    raw = total(deltas)
    return {
        "the clipped deltas divided by len(deltas), the number of clients: divide by the fixed expected_clients":
            [t / len(deltas) for t in clipped],
        "the average of the deltas NOT clipped: clip each client's delta to clip_norm first": [t / e for t in raw],
        "the SUM clipped, not each client's delta (clip before adding up)":
            [t / e for t in dp.clip_update(raw, max_norm=s)],
        "the average clipped after averaging: clip each client's delta before adding up":
            dp.clip_update([t / e for t in raw], max_norm=s),
    }  # fmt: skip


def _t_avg_known(answer):
    deltas = [[np.array([3.0, 4.0])], [np.array([0.3, 0.4])]]
    got = _call_avg(answer, deltas, s=1.0, z=0.0, e=4.0, rng=test_rng(0), what="two clients")
    expect_params_close(
        got, [np.array([0.225, 0.3])],
        what="two clients [3, 4] and [0.3, 0.4], clip_norm 1, no noise, expected_clients 4",
        hint="([0.6, 0.8] + [0.3, 0.4]) / 4: clip each, sum, divide by the FIXED denominator expected_clients",
        like=_avg_slips(deltas, s=1.0, e=4.0),
    )  # fmt: skip


def _t_avg_random(answer):
    rng = test_rng(3)
    deltas = [[rng.standard_normal((4, 3)) * c, rng.standard_normal(3) * c] for c in (0.1, 1.0, 5.0, 0.5, 2.0)]
    want = dp.dp_aggregate(deltas, clip_norm=1.0, noise_multiplier=0.0, expected_clients=10.0, rng=0)
    got = _call_avg(answer, deltas, s=1.0, z=0.0, e=10.0, rng=test_rng(0), what="five clients")
    expect_params_close(got, want, what="five random clients, clip_norm 1, no noise, expected_clients 10",
                        hint=_AVG_HINT, rtol=1e-5, atol=1e-7, like=_avg_slips(deltas, s=1.0, e=10.0))  # fmt: skip


def _t_avg_noise(answer):
    n = 40_000
    deltas = [[np.full(n, 0.002)], [np.full(n, -0.001)], [np.full(n, 0.003)]]  # norms 0.4, 0.2, 0.6: S = 0.5 clips one
    clean = dp.dp_aggregate(deltas, clip_norm=0.5, noise_multiplier=0.0, expected_clients=5.0, rng=0)[0]
    got = _call_avg(answer, deltas, s=0.5, z=2.0, e=5.0, rng=test_rng(11), what="noise")[0]
    if got.shape != (n,):
        raise CheckFailed(f"noise test: expected one tensor of shape ({n},), got {got.shape}")
    noise = got - clean
    want_std = 2.0 * 0.5 / 5.0
    std, mean = float(noise.std()), float(noise.mean())
    if not math.isclose(std, want_std, rel_tol=0.03):
        slips = {
            2.0 / 5.0: "not multiplied by clip_norm: the noise std scales with the clipping norm S",
            2.0 * 0.5: "not divided by expected_clients: z * S is the noise on the SUM, the average's is z * S / qN",
            2.0 * 0.5 / 3: "divided by len(deltas) (3 clients), not expected_clients",
            want_std**2: "the variance (z * S / qN)^2: rng.normal takes the standard deviation",
            2.0: "z alone: the std is z * S / expected_clients",
        }
        slip = next((f" Yours looks like {d}." for v, d in slips.items() if math.isclose(std, v, rel_tol=0.03)), "")
        raise CheckFailed(
            f"noise test (noise_multiplier 2, clip_norm 0.5, expected_clients 5): the noise on the average has "
            f"standard deviation {std:.4g}, expected z * S / expected_clients = {want_std:.4g}.{slip} "
            f"Hint: {_AVG_HINT}"
        )
    if abs(mean) > 5 * want_std / math.sqrt(n):
        raise CheckFailed(f"noise test: the noise has mean {mean:.3g}, expected about 0 (is the clean average right?)")


def _t_avg_rng(answer):
    rng = test_rng(5)
    deltas = [[rng.standard_normal((3, 2))], [rng.standard_normal((3, 2))]]
    a = _call_avg(answer, deltas, s=1.0, z=1.0, e=2.0, rng=test_rng(7), what="seeded noise")
    b = _call_avg(answer, deltas, s=1.0, z=1.0, e=2.0, rng=test_rng(7), what="seeded noise")
    c = _call_avg(answer, deltas, s=1.0, z=1.0, e=2.0, rng=test_rng(8), what="seeded noise")
    if not all(np.array_equal(x, y) for x, y in zip(a, b)):
        raise CheckFailed("the same Generator seed gave different results: draw the noise from rng, not from "
                          "np.random's global state")  # fmt: skip
    if all(np.array_equal(x, y) for x, y in zip(a, c)):
        raise CheckFailed("two different Generator seeds gave the same result: is any noise added from rng?")


# ---- 08.3 rdp_sampled_gaussian ------------------------------------------------------------------

_RDP_HINT = (
    "A = sum_{i=0}^{alpha} binom(alpha, i) (1-q)^(alpha-i) q^i exp((i*i - i) / (2 sigma^2)); return log(A) / "
    "(alpha - 1). Work with logs of the terms (math.lgamma for log binom, math.log(q), math.log1p(-q)) and "
    "add them with a log-sum-exp, or large alpha overflows"
)


def _want_rdp(q, z, a):
    return float(dp.compute_rdp(q=q, noise_multiplier=z, steps=1, orders=[a])[0])


_Q_ONE = "at q = 1, log(1 - q) = log(0) is undefined: only the i = alpha term is left, return alpha / (2 z^2)"


def _call_rdp(answer, q, z, a):
    """``answer(q, z, a)`` as a finite float; names an overflow (no log space) and log(0) at q = 1."""
    what = f"q={q}, noise_multiplier={z}, alpha={a}"
    try:
        with np.errstate(all="ignore"):
            got = answer(q, z, a)
    except OverflowError as err:
        raise CheckFailed(
            f"{what}: OverflowError ({err}): the terms exp((i*i - i) / (2 z^2)) overflow; work in log space "
            f"(the log of every term, then a log-sum-exp). Hint: {_RDP_HINT}"
        ) from None
    except ValueError as err:
        if q == 1:
            raise CheckFailed(f"{what}: ValueError ({err}): {_Q_ONE}") from None
        raise
    if not isinstance(got, numbers.Real | np.floating) or not math.isfinite(float(got)):
        why = _Q_ONE if q == 1 else "the terms overflow for large alpha; work in log space"
        raise CheckFailed(f"{what}: expected a finite number, got {got!r}: {why}. Hint: {_RDP_HINT}")
    return float(got)


def _rdp_like(q, z, a, want) -> dict:
    """Known wrong RDP values: 1/alpha or no 1/(alpha - 1), the 2 of 2 z^2 dropped, q and 1 - q swapped."""
    like = {
        "log(A) / alpha: divide by alpha - 1": want * (a - 1) / a,
        "the exponent (i*i - i) / z^2: it is (i*i - i) / (2 z^2)": _want_rdp(q, z / math.sqrt(2), a),
    }
    if a > 2:
        like["log(A) without the 1 / (alpha - 1)"] = want * (a - 1)
    if q < 1:
        like["q and 1 - q swapped: the terms are (1-q)^(alpha-i) q^i"] = _want_rdp(1 - q, z, a)
    return like


def _rdp_case(answer, q, z, a, *, rtol=1e-6):
    want = _want_rdp(q, z, a)
    expect_close(_call_rdp(answer, q, z, a), want, what=f"q={q}, noise_multiplier={z}, alpha={a}",
                 hint=_RDP_HINT, rtol=rtol, atol=1e-12, like=_rdp_like(q, z, a, want))  # fmt: skip


def _t_rdp_alpha2(answer):
    q, z = 0.1, 1.0
    want = math.log1p(q * q * math.expm1(1 / z**2))  # alpha = 2: A = 1 + q^2 (e^{1/z^2} - 1)
    like = {"A itself: return log(A) / (alpha - 1)": 1 + q * q * math.expm1(1 / z**2), **_rdp_like(q, z, 2, want)}
    expect_close(_call_rdp(answer, q, z, 2), want, hint=_RDP_HINT, like=like,
                 what="q=0.1, noise_multiplier=1, alpha=2 (A = 1 + q^2 (e - 1) by hand)")  # fmt: skip


def _t_rdp_full_batch(answer):
    got = _call_rdp(answer, 1.0, 2.0, 8)
    expect_close(got, 8 / (2 * 2.0**2), what="q=1 (every client, every round), noise_multiplier=2, alpha=8",
                 hint="with q = 1 only the i = alpha term is left: RDP = alpha / (2 sigma^2) "
                 "(careful with log(1 - q) at q = 1)", like=_rdp_like(1.0, 2.0, 8, 1.0))  # fmt: skip


def _t_rdp_grid(answer):
    for q, z, a in [(0.01, 1.1, 5), (0.2, 0.7, 12), (0.05, 3.0, 32), (0.5, 1.5, 3)]:
        _rdp_case(answer, q, z, a)


def _t_rdp_large(answer):
    _rdp_case(answer, 0.01, 0.8, 256, rtol=1e-5)


# ---- 08.4 epsilon_from_rdp ----------------------------------------------------------------------

_EPS_HINT = (
    "for each order a: eps(a) = rdp(a) + log((a - 1) / a) - (log(delta) + log(a)) / (a - 1); "
    "return the smallest (and never below 0)"
)


def _eps_slips(rdp, orders, delta) -> dict:
    """Known wrong epsilons: the worst order, Mironov's looser conversion, no floor at 0, delta ignored."""
    r, a = np.asarray(rdp, dtype=float), np.asarray(orders, dtype=float)

    def balle(d):
        return r + np.log((a - 1) / a) - (np.log(d) + np.log(a)) / (a - 1)

    slips = {
        "the raw minimum, below 0: epsilon is never below 0, return max(0, ...)": float(np.min(balle(delta))),
        "the largest epsilon over the orders: take the smallest (the best order)":
            max(0.0, float(np.max(balle(delta)))),
        "Mironov's original conversion rdp + log(1/delta) / (alpha - 1): use Balle et al.'s tighter one":
            max(0.0, float(np.min(r + np.log(1 / delta) / (a - 1)))),
    }  # fmt: skip
    if delta != 1e-5:
        slips["epsilon for delta = 1e-5: use the delta you are given"] = max(0.0, float(np.min(balle(1e-5))))
    return slips


def _eps_case(answer, rdp, orders, delta, what):
    got = answer(np.asarray(rdp, dtype=float), np.asarray(orders, dtype=float), delta)
    want = dp.rdp_to_epsilon(rdp=rdp, orders=orders, delta=delta)[0]
    expect_close(got, want, what=what, hint=_EPS_HINT, rtol=1e-6, atol=1e-9, like=_eps_slips(rdp, orders, delta))


def _t_eps_one(answer):
    _eps_case(answer, [1.0], [10.0], 1e-5, "rdp [1.0] at order 10, delta 1e-5")


def _t_eps_min(answer):
    orders = [2.0, 4.0, 8.0, 16.0, 32.0]
    rdp = [0.05 * a for a in orders]
    _eps_case(answer, rdp, orders, 1e-5, "rdp 0.05 * alpha at orders 2 ... 32, delta 1e-5 (the best order wins)")


def _t_eps_floor(answer):
    _eps_case(answer, [0.001], [10.0], 0.5, "rdp [0.001] at order 10, delta 0.5 (the formula gives -0.28)")


def _t_eps_reference(answer):
    rdp = dp.compute_rdp(q=0.1, noise_multiplier=1.0, steps=100, orders=dp.DEFAULT_ORDERS)
    _eps_case(answer, rdp, dp.DEFAULT_ORDERS, 1e-5, "q=0.1, noise_multiplier=1, 100 steps, delta 1e-5 (about 7.90)")


def _t_eps_delta(answer):
    rdp = dp.compute_rdp(q=0.02, noise_multiplier=1.3, steps=500, orders=dp.DEFAULT_ORDERS)
    _eps_case(answer, rdp, dp.DEFAULT_ORDERS, 1e-6, "q=0.02, noise_multiplier=1.3, 500 steps, delta 1e-6")


register(
    Exercise(
        "08.1",
        "clip an update to a global L2 norm",
        "clip_to_norm",
        (
            Test("known_answer", _t_clip_known),
            Test("below_the_norm", _t_clip_below),
            Test("norm_over_all_tensors", _t_clip_global),
            Test("random_updates", _t_clip_random),
            Test("zero_update", _t_clip_zero),
        ),
        hint=_CLIP_HINT,
    ),
    Exercise(
        "08.2",
        "the DP-FedAvg average: clip, fixed denominator, Gaussian noise",
        "dp_average",
        (
            Test("known_answer", _t_avg_known),
            Test("random_clients", _t_avg_random),
            Test("noise_std", _t_avg_noise),
            Test("noise_from_rng", _t_avg_rng),
        ),
        hint=_AVG_HINT,
    ),
    Exercise(
        "08.3",
        "Renyi DP of the sampled Gaussian mechanism (integer order)",
        "rdp_sampled_gaussian",
        (
            Test("alpha_2_by_hand", _t_rdp_alpha2),
            Test("full_batch", _t_rdp_full_batch),
            Test("against_reference", _t_rdp_grid),
            Test("large_alpha_log_space", _t_rdp_large),
        ),
        hint=_RDP_HINT,
    ),
    Exercise(
        "08.4",
        "epsilon from RDP",
        "epsilon_from_rdp",
        (
            Test("one_order", _t_eps_one),
            Test("best_order", _t_eps_min),
            Test("never_below_zero", _t_eps_floor),
            Test("reference_7_90", _t_eps_reference, in_check=False),
            Test("other_delta", _t_eps_delta),
        ),
        hint=_EPS_HINT,
    ),
)
