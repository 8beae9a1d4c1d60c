"""Lesson 13 exercises: distributed DP inside secure aggregation, and a server that lies.

13.1 ``hadamard_rotate``      the randomized Hadamard rotation ``H D x`` (pad, flip signs, orthonormal transform)
13.2 ``conditional_round``    unbiased randomized rounding, drawn again until the norm bound holds
13.3 ``noise_share``          the Skellam noise one phone adds for a plan with a minimum of survivors
13.4 ``may_sign``             the consistency check a phone runs before it signs the survivor list

Each test compares the learner's answer with the reference in :mod:`fedlab.distributed_dp` or
:mod:`fedlab.secagg_malicious` (a real defended :class:`fedlab.secagg_malicious.Phone` decides 13.4) on
small seeded problems, or checks a property every right answer has (the rotation keeps the norm and
:func:`fedlab.distributed_dp.unrotate` undoes it; the rounding is unbiased).
"""

from __future__ import annotations

import math

import numpy as np

from fedlab import distributed_dp, secagg, secagg_malicious
from fedlab.checks import CheckFailed, Exercise, Test, expect_close, register


def _array(got, *, what: str, shape: tuple, integers: bool = False, hint: str = "") -> np.ndarray:
    hint_txt = f" Hint: {hint}" if hint else ""
    try:
        a = np.asarray(got)
    except Exception:  # noqa: BLE001 - anything that is not array-like is a wrong answer
        raise CheckFailed(f"{what}: expected a numpy array, got {type(got).__name__}") from None
    if a.shape != shape:
        raise CheckFailed(f"{what}: expected shape {shape}, got shape {a.shape}.{hint_txt}")
    if integers and a.dtype.kind not in "iu":
        raise CheckFailed(
            f"{what}: expected integers (the ring holds integers; e.g. dtype int64), got dtype {a.dtype}.{hint_txt}"
        )
    if a.dtype.kind not in "iuf":
        raise CheckFailed(f"{what}: expected numbers, got dtype {a.dtype}.{hint_txt}")
    return a


class _Budget(np.random.Generator):
    """A Generator that stops a learner's loop which keeps drawing long after ``max_tries``."""

    def __init__(self, seed: int, *, limit: int) -> None:
        super().__init__(np.random.PCG64(seed))
        self.calls, self.limit = 0, limit

    def random(self, *args, **kwargs):
        self.calls += 1
        if self.calls > self.limit:
            raise CheckFailed(
                f"your function kept drawing after {self.limit} tries (max_tries={self.limit}): give up and raise "
                "ValueError after max_tries draws, as a loop 'for _ in range(max_tries)' does"
            )
        return super().random(*args, **kwargs)


# ---- 13.1 hadamard_rotate -----------------------------------------------------------------------

_ROT_HINT = (
    "pad x with zeros to len(signs), multiply by signs, then the butterfly: for h = 1, 2, 4, ... pair entry i with "
    "i + h inside blocks of 2h, (u, v) -> (u + v, u - v); finally divide by sqrt(len(signs))"
)


def _rot_case(answer, x, signs, what, hint=_ROT_HINT):
    x = np.asarray(x, dtype=np.float64)
    signs = np.asarray(signs, dtype=np.int8)
    before = x.copy()
    got = answer(x.copy(), signs=signs)
    want = distributed_dp.rotate(x, signs=signs)
    got = _array(got, what=what, shape=want.shape, hint=f"the rotated vector has len(signs) = {len(signs)} "
                 "coordinates: pad x with zeros first")  # fmt: skip
    d = len(signs)
    padded = np.zeros(d)
    padded[: len(x)] = x
    like = {
        "H x without the signs D (flip the signs before the transform)": distributed_dp.hadamard(padded),
        "D H x: the signs flipped after the transform, not before (the rotation is H D x)": (
            distributed_dp.hadamard(padded) * signs
        ),
    }
    ratios = {math.sqrt(d): f"the transform is not normalised: divide by sqrt(len(signs)) = sqrt({d})"}
    expect_close(got, want, what=what, hint=hint, like=like, ratios=ratios, atol=1e-9)
    if not np.array_equal(x, before):
        raise CheckFailed(f"{what}: your function changed the x it was given; work on a copy")


def _t_rot_known(answer):
    _rot_case(answer, [3.0, 4.0], [1, -1], "x = [3, 4], signs = [1, -1]",
              hint="D x = [3, -4]; H / sqrt(2) = [[1, 1], [1, -1]] / sqrt(2): [-1, 7] / sqrt(2)")  # fmt: skip


def _t_rot_padding(answer):
    gen = np.random.default_rng(1)
    _rot_case(answer, gen.standard_normal(5), distributed_dp.rotation_signs(5, rng=2),
              "5 coordinates, padded to 8", hint="np.zeros(len(signs)); padded[:len(x)] = x")  # fmt: skip


def _t_rot_reference(answer):
    gen = np.random.default_rng(3)
    _rot_case(answer, gen.standard_normal(100), distributed_dp.rotation_signs(100, rng=4),
              "100 coordinates (padded to 128), against distributed_dp.rotate")  # fmt: skip


def _t_rot_inverse(answer):
    gen = np.random.default_rng(5)
    x = gen.standard_normal(37) * 3
    signs = distributed_dp.rotation_signs(37, rng=6)
    y = _array(answer(x.copy(), signs=signs), what="the inverse", shape=(64,))
    if not math.isclose(float(np.linalg.norm(y)), float(np.linalg.norm(x)), rel_tol=1e-9):
        raise CheckFailed(
            f"norm kept: ||x|| = {np.linalg.norm(x):.6g} but ||your rotation|| = {np.linalg.norm(y):.6g}; a rotation "
            "keeps the norm (H / sqrt(d) is orthonormal)"
        )
    back = distributed_dp.unrotate(y, signs=signs, dim=37)
    expect_close(back, x, what="distributed_dp.unrotate(your rotation) must give x back", atol=1e-9,
                 hint="the inverse is D H: the rotation must be H D x, signs first")  # fmt: skip


# ---- 13.2 conditional_round ---------------------------------------------------------------------

_ROUND_HINT = (
    "floor = np.floor(y); up = gen.random(len(y)) < (y - floor); cand = (floor + up).astype(np.int64); accept when "
    "np.sum(cand * cand) <= bound**2, else draw again (at most max_tries times, then raise ValueError)"
)


def _round_case(answer, y, *, bound, seed, max_tries, what, hint=_ROUND_HINT):
    y = np.asarray(y, dtype=np.float64)
    want = distributed_dp.conditional_round(y, bound=bound, rng=np.random.default_rng(seed), max_tries=max_tries)
    got = answer(y.copy(), bound=bound, rng=_Budget(seed, limit=max_tries), max_tries=max_tries)
    got = _array(got, what=what, shape=y.shape, integers=True, hint=hint)
    if np.array_equal(got, want):
        return
    norm = float(np.linalg.norm(got.astype(np.float64)))
    first = np.floor(y) + (np.random.default_rng(seed).random(len(y)) < y - np.floor(y))
    flipped = np.floor(y) + (np.random.default_rng(seed).random(len(y)) > y - np.floor(y))
    if np.array_equal(got, np.round(y)):
        raise CheckFailed(f"{what}: you rounded to the nearest integer; randomized rounding goes up with probability "
                          "y - floor(y) (u < frac with u = rng.random(len(y))), so it is unbiased")  # fmt: skip
    if np.array_equal(got, flipped):
        raise CheckFailed(f"{what}: yours rounds up with probability 1 - frac (u > frac); round up when u < frac, so "
                          "that E[round(y)] = y")  # fmt: skip
    if norm > bound:
        raise CheckFailed(f"{what}: your rounding has norm {norm:.4g} > bound = {bound:.4g}: a draw above the bound "
                          "must be thrown away and drawn again")  # fmt: skip
    if np.array_equal(got, first):
        raise CheckFailed(f"{what}: expected the first draw within the bound; yours differs. Hint: {hint}")
    raise CheckFailed(f"{what}: expected {np.asarray(want).tolist()[:8]}, got {got.tolist()[:8]} (first 8). Draw "
                      f"rng.random(len(y)) once per try, in order. Hint: {hint}")  # fmt: skip


def _t_round_integers(answer):
    _round_case(answer, [1.0, -2.0, 3.0, 0.0], bound=10.0, seed=0, max_tries=10,
                what="integers stay as they are", hint="frac = y - floor(y) is 0: never round up")  # fmt: skip


def _t_round_reference(answer):
    gen = np.random.default_rng(1)
    y = gen.standard_normal(64) * 4
    bound = distributed_dp.rounded_l2_bound(norm=float(np.linalg.norm(y)), dim=64, beta=distributed_dp.DEFAULT_BETA)
    what = "64 coordinates, bound from rounded_l2_bound, against distributed_dp.conditional_round"
    _round_case(answer, y, bound=bound, seed=2, max_tries=100, what=what)


def _t_round_redraw(answer):
    y = np.full(16, 0.5)  # norm 2; a draw has norm sqrt(#ups): accepted when at most 4 of 16 round up
    _round_case(answer, y, bound=2.0, seed=0, max_tries=200,
                what="16 coordinates of 0.5 with bound 2 (most draws exceed it)")  # fmt: skip


def _t_round_unbiased(answer):
    y = np.array([0.25, -1.7, 2.5, 0.9])
    gen = np.random.default_rng(7)
    draws = np.stack([np.asarray(answer(y.copy(), bound=100.0, rng=gen, max_tries=5)) for _ in range(4000)])
    mean = draws.mean(0)
    if np.any(np.abs(mean - y) > 0.05):
        raise CheckFailed(
            f"unbiased: the mean of 4,000 roundings of {y.tolist()} is {np.round(mean, 3).tolist()}: randomized "
            "rounding must be unbiased, E[round(y)] = y (round up with probability y - floor(y))"
        )


def _t_round_gives_up(answer):
    y = np.full(4, 2.5)
    try:
        answer(y, bound=1.0, rng=_Budget(0, limit=7), max_tries=7)
    except (CheckFailed, NotImplementedError):
        raise
    except ValueError:
        return
    except Exception as err:  # noqa: BLE001 - a wrong kind of error is a wrong answer
        raise CheckFailed(f"gives up: the bound 1 is out of reach for [2.5] * 4; expected a ValueError after "
                          f"max_tries draws, got {type(err).__name__}: {err}") from None  # fmt: skip
    raise CheckFailed("gives up: the bound 1 is out of reach for [2.5] * 4 (every rounding has norm >= 4); expected "
                      "a ValueError after max_tries draws, your function returned a vector")  # fmt: skip


# ---- 13.3 noise_share ---------------------------------------------------------------------------

_NOISE_HINT = (
    "mu = (noise_multiplier * clip_norm * scale)**2 / (min_survivors - 1); then rng.poisson(mu / 2, dim) - "
    "rng.poisson(mu / 2, dim), in that order (mu = 0: zeros, no draws)"
)


def _planned_variance(*, dim, noise_multiplier, clip_norm, scale, min_survivors):
    plan = distributed_dp.make_plan(
        dim=dim, clip_norm=clip_norm, noise_multiplier=noise_multiplier, cohort=min_survivors,
        min_survivors=min_survivors, bits=32, scale=scale,
    )  # fmt: skip
    return plan.local_variance


def _noise_case(answer, *, dim, z, c, s, m, seed, what, hint=_NOISE_HINT):
    mu = _planned_variance(dim=dim, noise_multiplier=z, clip_norm=c, scale=s, min_survivors=m)
    want = distributed_dp.skellam_noise(dim, variance=mu, rng=np.random.default_rng(seed))
    got = answer(dim, noise_multiplier=z, clip_norm=c, scale=s, min_survivors=m, rng=np.random.default_rng(seed))
    got = _array(got, what=what, shape=(dim,), integers=True, hint=hint)
    if np.array_equal(got, want):
        return

    def share(variance):
        return distributed_dp.skellam_noise(dim, variance=variance, rng=np.random.default_rng(seed))

    wrong = {
        "you divided by min_survivors: the phone's own share does not count (it may know it); divide by "
        "min_survivors - 1, the shares of the *other* survivors": (z * c * s) ** 2 / m,
        "you left out the scale: the noise is added in the scaled integer domain, std z c s": (z * c) ** 2 / (m - 1),
        "you gave each phone the whole central variance; the min_survivors - 1 other shares together must make "
        "(z c s)^2, so each adds 1 / (min_survivors - 1) of it": (z * c * s) ** 2,
        "you used the standard deviation where the variance goes: Skellam(mu) has variance mu = (z c s)^2 / "
        "(min_survivors - 1)": z * c * s / math.sqrt(m - 1),
    }
    for desc, variance in wrong.items():
        if variance != mu and np.array_equal(got, share(variance)):
            raise CheckFailed(f"{what}: {desc}.")
    spread = float(np.var(got)) if dim >= 1000 else None
    if spread is not None and mu > 0 and abs(spread / mu - 1) < 0.1:
        raise CheckFailed(f"{what}: the variance is right ({spread:.4g} for {mu:.4g}) but the draws differ: draw "
                          "rng.poisson(mu / 2, dim) twice, first minus second (a rounded Gaussian is not Skellam: "
                          "sums of Skellam shares are exactly Skellam)")  # fmt: skip
    raise CheckFailed(f"{what}: expected the variance {mu:.6g} share {want[:6].tolist()} ..., got {got[:6].tolist()} "
                      f"... Hint: {hint}")  # fmt: skip


def _t_noise_known(answer):
    _noise_case(answer, dim=2000, z=1.0, c=1.0, s=10.0, m=5, seed=0,
                what="z = 1, c = 1, scale 10, min_survivors 5: variance 100 / 4 = 25 per phone")  # fmt: skip


def _t_noise_two(answer):
    _noise_case(answer, dim=2000, z=0.8, c=0.5, s=40.0, m=2, seed=1,
                what="min_survivors 2: the one other phone carries all the noise")  # fmt: skip


def _t_noise_zero(answer):
    _noise_case(answer, dim=7, z=0.0, c=1.0, s=3.0, m=4, seed=2, what="noise_multiplier 0: no noise (zeros)")


def _t_noise_reference(answer):
    _noise_case(answer, dim=3000, z=1.3, c=0.7, s=123.4, m=17, seed=3,
                what="z = 1.3, c = 0.7, scale 123.4, min_survivors 17, against distributed_dp.make_plan")  # fmt: skip


# ---- 13.4 may_sign ------------------------------------------------------------------------------

_SIGN_HINT = (
    "refuse (False) if you already signed a *different* list (compare sorted lists), if you are not in the list, if "
    "it has fewer than threshold phones, or if it names a phone outside view; else True"
)
_N, _T = 5, 3


def _phone(view: frozenset[int], me: int) -> secagg_malicious.Phone:
    """A real defended phone ``me`` of a 5-phone, t = 3 round that received shares from ``view - {me}``."""
    config = secagg.Config(num_clients=_N, threshold=_T, dim=4, clip=1.0, bits=16)
    devices = secagg_malicious.device_keys(_N, rng=0)
    phones = [secagg_malicious.Phone(u, config=config, devices=devices, defended=True, rng=10 + u) for u in range(_N)]
    roster = tuple(p.advertise() for p in phones)
    shares = [p.share(roster) for p in phones]
    inbox = secagg.route_shares(shares, config=config)[me]
    phones[me].mask(config.encode(np.zeros(4)), inbox=[e for e in inbox if e.sender in view])
    return phones[me]


def _sign_case(answer, *, survivors, me=0, view=range(_N), signed=None, what, hint=_SIGN_HINT):
    view = frozenset(view) | {me}
    phone = _phone(view, me)
    if signed is not None:
        phone.sign_survivors(signed)
    try:
        phone.sign_survivors(survivors)
        want = True
    except secagg_malicious.ConsistencyError:
        want = False
    got = answer(list(survivors), me=me, view=set(view), threshold=_T,
                 signed=None if signed is None else tuple(signed))  # fmt: skip
    if not isinstance(got, bool | np.bool_):
        raise CheckFailed(f"{what}: expected True (sign) or False (refuse), got {type(got).__name__} {got!r}")
    if bool(got) != want:
        verdict = "sign it (True)" if want else "refuse (False)"
        raise CheckFailed(f"{what}: the phone must {verdict}, yours returned {bool(got)}. Hint: {hint}")


def _t_sign_honest(answer):
    _sign_case(answer, survivors=[0, 1, 2, 3, 4], what="everyone survived and everyone shared keys with phone 0")
    _sign_case(answer, survivors=[4, 0, 2], what="phones 1 and 3 dropped (3 = t survivors, in any order)")


def _t_sign_left_out(answer):
    _sign_case(answer, survivors=[1, 2, 3, 4], what="the list leaves phone 0 out although it sent its masked input")


def _t_sign_threshold(answer):
    _sign_case(answer, survivors=[0, 3], what=f"the list has 2 < t = {_T} phones: too few to unmask safely")


def _t_sign_view(answer):
    _sign_case(answer, survivors=[0, 1, 2, 3, 4], view={0, 1, 2, 3},
               what="the list names phone 4, which never shared keys with phone 0 (not in its view)")  # fmt: skip


def _t_sign_once(answer):
    _sign_case(
        answer,
        survivors=[0, 1, 2, 3],
        signed=(0, 1, 2, 3, 4),
        what="phone 0 already signed [0, 1, 2, 3, 4] and is now asked to sign [0, 1, 2, 3]: a second story",
    )
    _sign_case(
        answer,
        survivors=[3, 2, 1, 0, 4],
        signed=(0, 1, 2, 3, 4),
        what="asked again for the same list it signed (in another order): signing it again is safe",
    )


register(
    Exercise(
        "13.1",
        "the randomized Hadamard rotation",
        "hadamard_rotate",
        (
            Test("known_answer", _t_rot_known),
            Test("padding", _t_rot_padding),
            Test("against_reference", _t_rot_reference),
            Test("inverse", _t_rot_inverse),
        ),
        hint=_ROT_HINT,
    ),
    Exercise(
        "13.2",
        "conditional randomized rounding",
        "conditional_round",
        (
            Test("integers_stay", _t_round_integers),
            Test("against_reference", _t_round_reference),
            Test("redraw_above_bound", _t_round_redraw),
            Test("unbiased", _t_round_unbiased),
            Test("gives_up", _t_round_gives_up),
        ),
        hint=_ROUND_HINT,
    ),
    Exercise(
        "13.3",
        "a phone's Skellam noise share",
        "noise_share",
        (
            Test("known_answer", _t_noise_known),
            Test("two_survivors", _t_noise_two),
            Test("no_noise", _t_noise_zero),
            Test("against_reference", _t_noise_reference, in_check=False),
        ),
        hint=_NOISE_HINT,
    ),
    Exercise(
        "13.4",
        "the consistency check before signing",
        "may_sign",
        (
            Test("honest_lists", _t_sign_honest),
            Test("left_out", _t_sign_left_out),
            Test("below_threshold", _t_sign_threshold),
            Test("outside_view", _t_sign_view),
            Test("one_story", _t_sign_once),
        ),
        hint=_SIGN_HINT,
    ),
)
