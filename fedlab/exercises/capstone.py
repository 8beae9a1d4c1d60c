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
from fedlab import params as P
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


def _round_slips(deltas, *, clip_norm, noise_multiplier, expected_clients, bits, rng) -> dict:
    """Known wrong rounds, each with the noise drawn as the reference draws it (same seed, same order)."""
    n, s, z, e = len(deltas), float(clip_norm), float(noise_multiplier), float(expected_clients)
    clipped = np.stack([P.flatten(dp.clip_update(d, max_norm=s)) for d in deltas]).astype(np.float64)
    raw = np.stack([P.flatten(d) for d in deltas]).astype(np.float64)
    config = secagg.Config(num_clients=n, threshold=capstone.threshold_for(n), dim=raw.shape[1], clip=s, bits=bits)

    def protocol(x):
        return config.decode(secagg.plain_sum(x, config=config, clients=range(n)))

    def released(total, *, divide=e, std=z * s / e):
        gen = np.random.default_rng(rng)
        return P.unflatten(
            np.concatenate([(t / divide + std * gen.standard_normal(t.shape)).ravel()
                            for t in P.unflatten(total, deltas[0])]),  # fmt: skip
            deltas[0],
        )

    slips = {
        "divided by the number of clients n, not by expected_clients (q N, fixed before sampling: dividing "
        "by the count would tell who took part)": released(protocol(clipped), divide=n, std=z * s / n),
        "the sum divided by n but the noise scaled by q N: divide by expected_clients everywhere": released(
            protocol(clipped), divide=n
        ),
        "the exact float sum, not the protocol's fixed-point sum: the server only learns what "
        "secagg.run_round(...).sum decodes": released(clipped.sum(axis=0)),
        "the updates not clipped to L2 norm clip_norm: the fixed-point encoding only clamps each coordinate to "
        "[-S, S]; clip each update with dp.clip_update first": released(protocol(raw)),
    }
    if z > 0:
        slips["noise of std z S on the average: the noise N(0, (z S)^2) goes on the SUM, so on the average its "
              "std is z S / (q N)"] = released(protocol(clipped), std=z * s)  # fmt: skip
        slips["noise of std z S / (q N) added to the SUM before dividing by q N: add N(0, (z S)^2) to the sum, "
              "or z S / (q N) to the average"] = released(protocol(clipped), std=z * s / e**2)  # fmt: skip
        slips["no noise at all: add noise_multiplier * clip_norm / expected_clients * gen.standard_normal(shape) "
              "to every tensor of the average"] = released(protocol(clipped), std=0.0)  # fmt: skip
    return slips


def _round(answer, deltas, *, what, **kw):
    got = answer(deltas, **kw)
    want = capstone.private_round(deltas, secure=False, **kw).average
    if not isinstance(got, list | tuple) or len(got) != len(want):
        raise CheckFailed(f"{what}: expected a list of {len(want)} arrays (one per model tensor), got {got!r:.80}")
    if not all(np.shape(g) == w.shape and np.allclose(g, w, rtol=0, atol=2e-6) for g, w in zip(got, want)):
        flat = np.concatenate([np.asarray(g, np.float64).ravel() for g in got])
        for desc, ref in _round_slips(deltas, **kw).items():
            ref = np.concatenate([np.asarray(r, np.float64).ravel() for r in ref])
            if flat.shape == ref.shape and np.allclose(flat, ref, rtol=1e-5, atol=2e-6):
                raise CheckFailed(f"{what}: yours looks like {desc}. Hint: {_ROUND_HINT}")
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


def _eps_of(schedule, delta) -> float:
    acc = dp.Accountant()
    for q, z, t in schedule:
        acc = acc.step(q=q, noise_multiplier=z, steps=t)
    return acc.epsilon(delta=delta)


def _eps_slips(schedule, delta) -> dict:
    """Known wrong epsilons of a schedule: ``{what the slip is: the epsilon it gives}``."""
    return {
        "0, the epsilon of an empty accountant: acc.step(...) returns a NEW accountant (it does not change acc); "
        "write acc = acc.step(...)": 0.0,
        "the last phase only: one accountant must see every phase (create it once, before the loop)": _eps_of(
            schedule[-1:], delta
        ),
        "each phase's epsilon added up: compose in RDP (one accountant stepped through every phase) and convert "
        "to epsilon once, at the end": sum(_eps_of([phase], delta) for phase in schedule),
        "one round per phase: steps= is the phase's number of rounds": _eps_of(
            [(q, z, 1) for q, z, _ in schedule], delta
        ),
    }


def _eps(answer, schedule, delta, what):
    got = answer(schedule, delta=delta)
    want = _eps_of(schedule, delta)
    if isinstance(got, int | float | np.floating) and not math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9):
        named = [d for d, v in _eps_slips(schedule, delta).items() if math.isclose(got, v, rel_tol=1e-6, abs_tol=1e-9)
                 and not math.isclose(v, want, rel_tol=1e-6, abs_tol=1e-9)]  # fmt: skip
        if named:
            raise CheckFailed(f"{what}: expected {want:.6g}, got {got:.6g}; yours looks like {named[0]}")
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


def _bytes_slips(n, d, bits) -> dict:
    """Known wrong byte counts: ``{what the slip is: the count it gives}``."""
    advertise, share, masked, unmask = 4 + 2 * 32, 4 + 32 + (n - 1) * 96, 4 + math.ceil(d * bits / 8), 4 + 36 * n
    right = advertise + share + masked + unmask
    return {
        "d * bits // 8 for the masked input: a partly used last byte is still sent, round UP "
        "(math.ceil(dim * bits / 8))": right - masked + 4 + d * bits // 8,
        "the masked input counted in bits, not bytes: divide dim * bits by 8": right - masked + 4 + d * bits,
        "the masked input as float32 (4 bytes a value): it is a vector of bits-bit ring elements, "
        "ceil(dim * bits / 8) bytes": right - masked + 4 + 4 * d,
        "shares for all n clients: a client sends one encrypted pair to each OTHER client, n - 1 of them": right
        + 96,
        "unmasking shares for n - 1 clients: a client answers for every client of the round, itself included "
        "(36 bytes each, n of them)": right - 36,
        "the 4-byte sender id left out of the four messages: every message starts with it": right - 16,
    }


def _bytes(answer, n, d, bits):
    got = answer(num_clients=n, dim=d, bits=bits)
    want = int(capstone.protocol_bytes(num_clients=n, dim=d, bits=bits)[0])
    named = [k for k, v in _bytes_slips(n, d, bits).items() if got == v]
    hint = f"yours looks like {named[0]}. {_BYTES_HINT}" if named else _BYTES_HINT
    expect_equal(got, want, what=f"{n} clients, {d} parameters, {bits}-bit ring", hint=hint)


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
            Test("with_noise", _t_round_noise),
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
