"""Lesson 10 exercises: the capstone, every layer on at once.

10.1 ``private_round``    clip -> secure aggregation (fixed point, the real protocol) -> central noise -> average
10.2 ``epsilon_spent``    the privacy spent by a schedule of DP-FedAvg phases, with the accountant
10.3 ``bytes_per_round``  what one client sends in one round of secure aggregation, from the messages

Each test compares the learner's answer with the reference in :mod:`fedlab.capstone`,
:mod:`fedlab.dp` or :mod:`fedlab.secagg` on small seeded problems.
"""

from __future__ import annotations

import math

import numpy as np

from fedlab import capstone, dp, secagg
from fedlab.checks import CheckFailed, Exercise, Test, expect_close, expect_equal, register, test_rng

# ---- 10.1 private_round -------------------------------------------------------------------------

_ROUND_HINT = (
    "clip each delta with dp.clip_update, flatten (P.flatten) and stack; secagg.Config(num_clients=n, "
    "threshold=n // 2 + 1, dim=d, clip=clip_norm, bits=bits) picks frac_bits; secagg.run_round(...).sum is the "
    "decoded sum; then per tensor (sum / e + z * S / e * gen.standard_normal(shape)) with gen = default_rng(rng)"
)


def _deltas(n, *, seed, scale=0.3, shapes=((2, 3), (2,))):
    rng = test_rng(seed)
    return [[(scale * rng.standard_normal(s)).astype(np.float32) for s in shapes] for _ in range(n)]


def _round(answer, deltas, *, what, **kw):
    got = answer(deltas, **kw)
    want = capstone.private_round(deltas, secure=False, **kw).average
    if not isinstance(got, list | tuple) or len(got) != len(want):
        raise CheckFailed(f"{what}: expected a list of {len(want)} arrays (one per model tensor), got {got!r:.80}")
    for i, (g, w) in enumerate(zip(got, want)):
        expect_close(g, w, what=f"{what}, tensor {i}", hint=_ROUND_HINT, rtol=0, atol=2e-6)


def _t_round_no_noise(answer):
    deltas = [[np.array([[0.6, 0.8, 0.0], [0.0, 0.0, 0.0]], np.float32), np.zeros(2, np.float32)],
              [np.array([[0.0, 0.0, 0.0], [0.0, 0.1, 0.0]], np.float32), np.array([0.2, 0.0], np.float32)],
              [np.array([[3.0, 0.0, 0.0], [0.0, 0.0, 0.0]], np.float32), np.array([0.0, 4.0], np.float32)]]
    _round(answer, deltas, clip_norm=1.0, noise_multiplier=0.0, expected_clients=2.0, bits=32, rng=0,
           what="three clients, S = 1 (one update of norm 5 is clipped to [0.6, ..., 0.8]), no noise, qN = 2")


def _t_round_coarse_bits(answer):
    _round(answer, _deltas(6, seed=1), clip_norm=1.0, noise_multiplier=0.0, expected_clients=6.0, bits=12, rng=0,
           what="six clients, 12-bit ring (the fixed-point grid is coarse: the sum must be the protocol's)")


def _t_round_noise(answer):
    _round(answer, _deltas(5, seed=2), clip_norm=0.5, noise_multiplier=1.3, expected_clients=4.0, bits=32, rng=7,
           what="five clients, S = 0.5, z = 1.3, qN = 4, rng = 7")


def _t_round_generator(answer):
    gen_a, gen_b = test_rng(11), test_rng(11)
    deltas = _deltas(4, seed=3, shapes=((3,), (2, 2), (1,)))
    got = answer(deltas, clip_norm=2.0, noise_multiplier=0.7, expected_clients=3.0, bits=16, rng=gen_a)
    want = capstone.private_round(deltas, clip_norm=2.0, noise_multiplier=0.7, expected_clients=3.0, bits=16,
                                  rng=gen_b, secure=False).average
    for i, (g, w) in enumerate(zip(got, want)):
        expect_close(g, w, what=f"four clients, three tensors, 16 bits, rng a Generator; tensor {i}", hint=_ROUND_HINT,
                     rtol=0, atol=2e-6)


# ---- 10.2 epsilon_spent -------------------------------------------------------------------------

_EPS_HINT = "acc = dp.Accountant(); for q, z, rounds in schedule: acc = acc.step(q=q, noise_multiplier=z, steps=rounds)"


def _eps(answer, schedule, delta, what):
    got = answer(schedule, delta=delta)
    acc = dp.Accountant()
    for q, z, t in schedule:
        acc = acc.step(q=q, noise_multiplier=z, steps=t)
    want = acc.epsilon(delta=delta)
    if math.isinf(want):
        if not (isinstance(got, int | float | np.floating) and math.isinf(got)):
            raise CheckFailed(f"{what}: expected inf (no noise: no guarantee), got {got!r}")
        return
    expect_close(got, want, what=what, hint=_EPS_HINT, rtol=1e-6, atol=1e-9)


def _t_eps_one_phase(answer):
    _eps(answer, [(0.1, 1.0, 100)], 1e-5, "one phase: q = 0.1, z = 1, 100 rounds, delta = 1e-5 (about 7.9)")


def _t_eps_two_phases(answer):
    _eps(answer, [(20 / 1200, 1.0, 150), (50 / 1200, 2.0, 50)], 1e-5,
         "150 rounds of 20 users in 1,200 at z = 1, then 50 rounds of 50 users at z = 2")


def _t_eps_composes(answer):
    _eps(answer, [(0.05, 0.8, 30), (0.05, 0.8, 70)], 1e-6, "30 then 70 rounds of the same setting (= 100 rounds)")


def _t_eps_no_noise(answer):
    _eps(answer, [(0.02, 1.0, 10), (0.02, 0.0, 1)], 1e-5, "one round without noise spends everything")


# ---- 10.3 bytes_per_round -----------------------------------------------------------------------

_BYTES_HINT = (
    "advertise 4 + 2*32; share 4 + 32 + (n - 1) * (4 + 4 + 88); masked input 4 + ceil(dim * bits / 8); "
    "unmask 4 + 36 * n (no dropouts)"
)


def _bytes(answer, n, d, bits):
    got = answer(num_clients=n, dim=d, bits=bits)
    want = int(capstone.protocol_bytes(num_clients=n, dim=d, bits=bits)[0])
    expect_equal(got, want, what=f"{n} clients, {d} parameters, {bits}-bit ring", hint=_BYTES_HINT)


def _t_bytes_known(answer):
    _bytes(answer, 5, 11, 12)


def _t_bytes_sizes(answer):
    for n, d, bits in ((2, 1, 8), (20, 18, 32), (20, 18, 16), (50, 1000, 12), (100, 100_000, 32)):
        _bytes(answer, n, d, bits)


def _t_bytes_protocol(answer):
    n, d, bits = 6, 9, 20
    cfg = secagg.Config(num_clients=n, threshold=4, dim=d, clip=1.0, bits=bits)
    res = secagg.run_round(np.zeros((n, d)), config=cfg, rng=0, seeded_keys=True)
    expect_equal(answer(num_clients=n, dim=d, bits=bits), int(res.bytes_sent[0]),
                 what="bytes counted by a real secagg.run_round (6 clients, 9 parameters, 20 bits)", hint=_BYTES_HINT)


register(
    Exercise(
        "10.1",
        "one private round: clip, secure aggregation, noise",
        "private_round",
        (
            Test("no_noise", _t_round_no_noise),
            Test("coarse_bits", _t_round_coarse_bits),
            Test("with_noise", _t_round_noise, in_check=False),
            Test("generator_and_shapes", _t_round_generator, in_check=False),
        ),
        hint=_ROUND_HINT,
    ),
    Exercise(
        "10.2",
        "the privacy spent by a schedule",
        "epsilon_spent",
        (
            Test("one_phase", _t_eps_one_phase),
            Test("two_phases", _t_eps_two_phases),
            Test("phases_compose", _t_eps_composes, in_check=False),
            Test("no_noise", _t_eps_no_noise, in_check=False),
        ),
        hint=_EPS_HINT,
    ),
    Exercise(
        "10.3",
        "bytes a client sends in one round of secure aggregation",
        "bytes_per_round",
        (
            Test("known_answer", _t_bytes_known),
            Test("many_sizes", _t_bytes_sizes),
            Test("real_protocol", _t_bytes_protocol, in_check=False),
        ),
        hint=_BYTES_HINT,
    ),
)
