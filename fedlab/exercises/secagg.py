"""Lesson 07 exercises: secure aggregation.

07.1 ``additive_shares``      split an integer vector into n random shares that sum to it mod 2^32
07.2 ``mask_vector``          a client's masked input: self-mask plus pairwise masks that cancel in the sum
07.3 ``shamir_reconstruct``   the secret from t Shamir shares (Lagrange interpolation at 0 mod p)
07.4 ``fixed_point_encode``   float updates to integers mod 2^32 (clip, scale, round, two's complement)

Each test compares the learner's answer with the reference in
:mod:`fedlab.secagg` on small seeded problems, or checks a property every
right answer has (shares sum back; one share looks uniform).
"""

from __future__ import annotations

import itertools

import numpy as np

from fedlab import secagg
from fedlab.checks import CheckFailed, Exercise, Test, expect_equal, register, test_rng

RING = 2**32
_CHI2_CRIT_15 = 56.49  # chi-square with 15 degrees of freedom, upper 1e-6 tail: a fair share fails 1 time in 10^6


def _ints(got, *, what: str, shape: tuple | None = None, hint: str = "") -> np.ndarray:
    """``got`` as int64 values that must be integers in [0, 2^32) (any integer dtype)."""
    hint_txt = f" Hint: {hint}" if hint else ""
    try:
        a = np.asarray(got)
    except Exception:  # noqa: BLE001 - anything that is not array-like is a wrong answer
        raise CheckFailed(f"{what}: expected an array of integers, got {type(got).__name__}") from None
    if a.dtype.kind not in "iu":
        raise CheckFailed(
            f"{what}: expected integers mod 2^32 (e.g. dtype uint32), got dtype {a.dtype}.{hint_txt}"
        )
    if shape is not None and a.shape != shape:
        raise CheckFailed(f"{what}: expected shape {shape}, got shape {a.shape}.{hint_txt}")
    if a.size and (a.min() < 0 or a.max() >= RING):
        raise CheckFailed(
            f"{what}: every value must lie in [0, 2^32), got values from {a.min()} to {a.max()}. "
            f"Work mod 2^32: numpy's uint32 wraps around by itself.{hint_txt}"
        )
    return a.astype(np.int64)


# ---- 07.1 additive_shares -----------------------------------------------------------------------

_ADD_HINT = (
    "draw the first n - 1 shares with rng.integers(0, 2**32, size=(n - 1, len(x)), dtype=np.uint32); the last "
    "share is x minus their sum (in uint32 the subtraction wraps mod 2^32)"
)


def _shares_case(answer, x, n, seed, what):
    x = np.asarray(x, dtype=np.uint32)
    raw = answer(x, n=n, rng=test_rng(seed))
    rows = np.shape(raw)
    if len(rows) == 2 and rows[1] == x.size and rows[0] in (n - 1, n + 1):
        raise CheckFailed(
            f"{what}: expected {n} shares (shape ({n}, {x.size})), got {rows[0]}: off by one. Draw n - 1 random "
            f"shares; the n-th is x minus their sum. Hint: {_ADD_HINT}"
        )
    got = _ints(raw, what=what, shape=(n, x.size), hint=_ADD_HINT)
    total = got.sum(axis=0) % RING
    if not np.array_equal(total, x.astype(np.int64)):
        plus = n > 1 and np.array_equal(got[-1], (x.astype(np.int64) + got[:-1].sum(axis=0)) % RING)
        slip = " Your last share is x PLUS the others' sum; it must be x MINUS it." if plus else ""
        raise CheckFailed(
            f"{what}: the shares must sum to x mod 2^32; they sum to {total[:6].tolist()}... instead of "
            f"{x[:6].tolist()}...{slip} Hint: {_ADD_HINT}"
        )
    return got


def _chi2_top_bits(values: np.ndarray) -> float:
    counts = np.bincount((values >> 28).astype(np.int64), minlength=16)
    expected = values.size / 16
    return float(((counts - expected) ** 2 / expected).sum())


def _t_add_sums(answer):
    _shares_case(answer, [0, 1, 7, RING - 1, 123456789], 3, 0, "x = [0, 1, 7, 2^32 - 1, 123456789], n = 3")


def _t_add_uniform(answer):
    got = _shares_case(answer, np.zeros(4096), 2, 1, "x = 4096 zeros, n = 2")
    first = got[0]
    if np.array_equal(first, np.zeros(4096)) or np.array_equal(got[1], np.zeros(4096)):
        raise CheckFailed(
            "x = 4096 zeros, n = 2: one of your shares is x itself, so it gives x away. "
            f"Every share but the last must be uniformly random. Hint: {_ADD_HINT}"
        )
    for i in range(2):
        stat = _chi2_top_bits(got[i])
        if stat > _CHI2_CRIT_15:
            raise CheckFailed(
                f"x = 4096 zeros, n = 2: share {i} is not spread evenly over [0, 2^32) (chi-square of its top "
                f"4 bits = {stat:.0f}, a uniform share stays below {_CHI2_CRIT_15}). A share must look uniform "
                f"whatever x is. Hint: {_ADD_HINT}"
            )


def _t_add_reproducible(answer):
    x = np.arange(10, dtype=np.uint32)
    a = _ints(answer(x, n=4, rng=test_rng(5)), what="n = 4, seed 5")
    b = _ints(answer(x, n=4, rng=test_rng(5)), what="n = 4, seed 5 again")
    c = _ints(answer(x, n=4, rng=test_rng(6)), what="n = 4, seed 6")
    if not np.array_equal(a, b):
        raise CheckFailed("the same rng seed gave different shares: draw every random number from `rng`")
    if np.array_equal(a, c):
        raise CheckFailed("seeds 5 and 6 gave the same shares: draw the random shares from `rng`")


def _t_add_one(answer):
    x = np.array([4, 8, 15, 16, 23, 42], dtype=np.uint32)
    got = _shares_case(answer, x, 1, 2, "n = 1 (a single share)")
    expect_equal(got[0], x.astype(np.int64), what="n = 1: the only share", hint="with one share, it is x itself")


def _t_add_many(answer):
    x = test_rng(3).integers(0, RING, size=2000, dtype=np.uint32)
    got = _shares_case(answer, x, 10, 4, "n = 10 shares of 2000 random values")
    for i in range(9):
        if _chi2_top_bits(got[i]) > _CHI2_CRIT_15:
            raise CheckFailed(f"n = 10: share {i} is not spread evenly over [0, 2^32). Hint: {_ADD_HINT}")


# ---- 07.2 mask_vector ---------------------------------------------------------------------------

_MASK_HINT = (
    "start from y = x.astype(np.uint32); add secagg.prg(self_seed, len(x)); then for each (v, seed) in "
    "pair_seeds.items(): add secagg.prg(seed, len(x)) if v > client, subtract it if v < client (uint32 wraps)"
)


def _seed(tag: int) -> bytes:
    return np.random.default_rng(1000 + tag).bytes(32)


def _mask_slips(x, *, client, seeds, self_seed) -> dict:
    """Known wrong masked vectors (int64 in [0, 2^32)): signs swapped or alike, the self-mask left out or subtracted."""
    own = secagg.prg(self_seed, len(x)).astype(np.int64) if self_seed is not None else 0
    pair = {v: secagg.prg(seed, len(x)).astype(np.int64) for v, seed in seeds.items()}

    def masked(above, below, self_sign):
        total = x.astype(np.int64) + self_sign * own
        for v, m in pair.items():
            total = total + (above if v > client else below) * m
        return total % RING

    slips = {
        "the pairwise signs swapped: ADD the masks of partners v > client, SUBTRACT v < client": masked(-1, 1, 1),
        "every pairwise mask added: subtract the masks of partners v < client": masked(1, 1, 1),
        "every pairwise mask subtracted: add the masks of partners v > client": masked(-1, -1, 1),
    }
    if self_seed is not None:
        slips["the self-mask left out: add secagg.prg(self_seed, len(x)) when self_seed is not None"] = masked(1, -1, 0)
        slips["the self-mask subtracted: it is added"] = masked(1, -1, -1)
    return slips


def _mask_case(answer, *, x, client, peers, self_seed, what):
    x = np.asarray(x, dtype=np.uint32)
    seeds = {v: _seed(min(client, v) * 100 + max(client, v)) for v in peers}
    got = _ints(
        answer(x, client=client, pair_seeds=seeds, self_seed=self_seed), what=what, shape=x.shape, hint=_MASK_HINT
    )
    want = secagg.mask_vector(x, client=client, pair_seeds=seeds, self_seed=self_seed)
    if not np.array_equal(got, want.astype(np.int64)):
        slips = _mask_slips(x, client=client, seeds=seeds, self_seed=self_seed)
        slip = next((f" Yours looks like {d}." for d, y in slips.items() if np.array_equal(got, y)), "")
        raise CheckFailed(
            f"{what}: expected {want[:4].tolist()}..., got {got[:4].tolist()}...{slip} Hint: {_MASK_HINT}"
        )


def _t_mask_middle(answer):
    _mask_case(
        answer, x=np.arange(8) * 1000, client=1, peers=[0, 2], self_seed=_seed(7),
        what="client 1 with partners 0 and 2 and a self-mask",
    )  # fmt: skip


def _t_mask_cancel(answer):
    n, d = 4, 50
    x = test_rng(8).integers(0, 1000, size=(n, d)).astype(np.uint32)
    total = np.zeros(d, dtype=np.uint32)
    for u in range(n):
        seeds = {v: _seed(min(u, v) * 100 + max(u, v)) for v in range(n) if v != u}
        total += np.asarray(
            _ints(answer(x[u], client=u, pair_seeds=seeds, self_seed=None), what=f"client {u} of 4", shape=(d,)),
        ).astype(np.uint32)
    if not np.array_equal(total, x.sum(axis=0).astype(np.uint32)):
        raise CheckFailed(
            "4 clients, every pair masked, no self-masks: the masked vectors must sum to the sum of the inputs "
            f"(the pairwise masks cancel), but they do not. Hint: {_MASK_HINT}"
        )


def _t_mask_no_peers(answer):
    _mask_case(answer, x=[5, 6, 7], client=3, peers=[], self_seed=_seed(9), what="no partners, only a self-mask")


def _t_mask_no_self(answer):
    _mask_case(
        answer, x=[1, 2, 3, 4], client=2, peers=[0, 1, 3, 5], self_seed=None,
        what="self_seed=None (no self-mask), four partners",
    )  # fmt: skip


def _t_mask_wraps(answer):
    _mask_case(
        answer, x=[RING - 1, RING - 2, 0, 1], client=0, peers=[1, 2], self_seed=_seed(11),
        what="inputs near 2^32 (the sum must wrap around)",
    )  # fmt: skip


# ---- 07.3 shamir_reconstruct ---------------------------------------------------------------------

_SHAMIR_HINT = (
    "secret = sum_j y_j * prod_{m != j} x_m / (x_m - x_j) mod prime, where dividing by d means multiplying by "
    "pow(d, -1, prime); use Python ints, not floats, and reduce mod prime"
)
_WIKI = [(1, 1494), (2, 329), (3, 965), (4, 176), (5, 1188), (6, 775)]  # f(x) = 1234 + 166x + 94x^2 mod 1613


def _lagrange_at_0(shares, prime: int) -> int:
    xs = tuple(x for x, _ in shares)
    return sum(c * y for c, (_, y) in zip(secagg.lagrange_coefficients(xs, prime=prime), shares)) % prime


def _shamir_slip(shares, prime: int, value: int, want: int) -> str:
    """What a wrong secret suggests: no reduction mod prime, the sign flipped, or secagg.PRIME instead of prime."""
    if prime != secagg.PRIME and value == _lagrange_at_0(shares, secagg.PRIME):
        return f" That is the answer mod secagg.PRIME: work mod the prime you are given ({prime})."
    if value % prime == want:
        return " It is right mod prime but not in [0, prime): reduce with % prime."
    if value % prime == (-want) % prime:
        return " That is -secret mod prime: the sign is flipped; use x_m / (x_m - x_j), not x_m / (x_j - x_m)."
    return ""


def _shamir_case(answer, shares, prime, want, what):
    got = answer(list(shares), prime)
    if isinstance(got, float | np.floating):
        raise CheckFailed(
            f"{what}: expected an int, got the float {got!r}: true division `/` leaves the field. In GF(p), divide "
            f"by d by multiplying with pow(d, -1, prime), and keep Python ints. Hint: {_SHAMIR_HINT}"
        )
    try:
        value = int(got)
    except (TypeError, ValueError):
        raise CheckFailed(f"{what}: expected an int, got {type(got).__name__} {got!r}") from None
    if value != got:
        raise CheckFailed(f"{what}: expected an int, got {got!r}. Hint: {_SHAMIR_HINT}")
    if value != want:
        slip = _shamir_slip(shares, prime, value, want)
        raise CheckFailed(f"{what}: expected {want}, got {value}.{slip} Hint: {_SHAMIR_HINT}")


def _t_shamir_known(answer):
    _shamir_case(answer, _WIKI[:3], 1613, 1234, "shares (1, 1494), (2, 329), (3, 965) mod 1613")
    _shamir_case(answer, [_WIKI[5], _WIKI[1], _WIKI[3]], 1613, 1234, "shares at x = 6, 2, 4 mod 1613")


def _t_shamir_big(answer):
    rng = test_rng(12)
    secret = secagg.random_field_element(rng=rng)
    shares = secagg.shamir_share(secret, threshold=5, xs=[3, 7, 8, 11, 20], rng=rng)
    _shamir_case(answer, shares, secagg.PRIME, secret, "5 shares of a 255-bit secret mod 2^255 - 19")


def _t_shamir_subsets(answer):
    for subset in itertools.combinations(_WIKI, 3):
        _shamir_case(answer, subset, 1613, 1234, f"the 3 shares at x = {[x for x, _ in subset]} mod 1613")


def _t_shamir_other_prime(answer):
    prime = 2**127 - 1
    rng = test_rng(13)
    secret = secagg.random_field_element(rng=rng, prime=prime)
    shares = secagg.shamir_share(secret, threshold=4, xs=[2, 5, 9, 10], rng=rng, prime=prime)
    _shamir_case(answer, shares[::-1], prime, secret, "4 shares mod 2^127 - 1 (use the prime you are given)")


def _t_shamir_two(answer):
    _shamir_case(answer, [(1, 10), (2, 17)], 101, 3, "the line through (1, 10) and (2, 17) mod 101")


# ---- 07.4 fixed_point_encode ----------------------------------------------------------------------

_FIXED_HINT = (
    "q = np.rint(np.clip(x, -clip, clip) * 2**frac_bits).astype(np.int64), then q.astype(np.uint32): a negative "
    "value -v becomes 2^32 - v (two's complement)"
)


def _fixed_slips(x, clip: float, frac_bits: int) -> dict:
    """Known wrong encodings: not clipped, clipped after scaling, truncated, floored, scaled by frac_bits."""
    x, scale = np.asarray(x, dtype=np.float64), 2.0**frac_bits
    clipped = np.clip(x, -clip, clip)

    def ring(q):
        return np.asarray(q).astype(np.int64) % RING

    return {
        "not clipped: clip x to [-clip, clip] first": ring(np.rint(x * scale)),
        "clipped after scaling: clip x to [-clip, clip] BEFORE multiplying by 2**frac_bits": ring(
            np.rint(np.clip(x * scale, -clip, clip))
        ),
        "truncated toward zero (astype(int) alone does not round): round with np.rint first": ring(
            np.trunc(clipped * scale)
        ),
        "rounded down (np.floor): round to the nearest with np.rint": ring(np.floor(clipped * scale)),
        "scaled by frac_bits: the scale is 2**frac_bits": ring(np.rint(clipped * frac_bits)),
    }


def _fixed_case(answer, x, clip, frac_bits, want, what):
    got = _ints(
        answer(np.asarray(x, dtype=np.float64), clip=clip, frac_bits=frac_bits), what=what,
        shape=(len(x),), hint=_FIXED_HINT,
    )  # fmt: skip
    want = np.asarray(want, dtype=np.int64)
    if not np.array_equal(got, want):
        slips = _fixed_slips(x, clip, frac_bits)
        slip = next((f" Yours is {d}." for d, q in slips.items() if np.array_equal(got, q)), "")
        shown = (f"expected {want.tolist()}, got {got.tolist()}" if len(want) <= 8 else
                 f"{int(np.sum(got != want))} of {len(want)} values differ")  # fmt: skip
        raise CheckFailed(f"{what}: {shown}.{slip} Hint: {_FIXED_HINT}")


def _t_fixed_known(answer):
    _fixed_case(
        answer, [0.5, -0.25, 0.0, 1.0], 1.0, 2, [2, RING - 1, 0, 4],
        "x = [0.5, -0.25, 0, 1] with frac_bits = 2 (steps of 1/4)",
    )  # fmt: skip


def _t_fixed_round(answer):
    _fixed_case(
        answer, [0.7, -0.7, 0.3], 1.0, 2, [3, RING - 3, 1],
        "x = [0.7, -0.7, 0.3] with frac_bits = 2: round to the nearest step (0.7 * 4 = 2.8 -> 3)",
    )  # fmt: skip


def _t_fixed_clip(answer):
    _fixed_case(
        answer, [3.0, -7.0, 0.99], 1.0, 4, [16, RING - 16, 16], "x = [3, -7, 0.99], clip = 1, frac_bits = 4",
    )  # fmt: skip


def _t_fixed_random(answer):
    x = test_rng(14).uniform(-2, 2, size=200)
    want = secagg.fixed_point_encode(x, clip=1.5, frac_bits=20)
    _fixed_case(answer, x, 1.5, 20, want, "200 random values in [-2, 2], clip = 1.5, frac_bits = 20")


def _t_fixed_sum(answer):
    rng = test_rng(15)
    xs = rng.uniform(-1, 1, size=(10, 30))
    total = np.zeros(30, dtype=np.uint32)
    for i, x in enumerate(xs):
        total += _ints(answer(x, clip=1.0, frac_bits=24), what=f"vector {i}", shape=(30,)).astype(np.uint32)
    decoded = secagg.fixed_point_decode(total, frac_bits=24)
    err = float(np.max(np.abs(decoded - xs.sum(axis=0))))
    if err > 10 * 2.0**-25 + 1e-12:
        raise CheckFailed(
            f"10 encoded vectors summed mod 2^32 decode to their float sum only within {err:.2e} (expected at most "
            f"10 * 2^-25). Hint: {_FIXED_HINT}"
        )


register(
    Exercise(
        "07.1",
        "additive secret shares",
        "additive_shares",
        (
            Test("sums_back", _t_add_sums),
            Test("one_share_looks_uniform", _t_add_uniform),
            Test("reproducible_from_rng", _t_add_reproducible),
            Test("single_share", _t_add_one, in_check=False),
            Test("ten_shares", _t_add_many, in_check=False),
        ),
        hint=_ADD_HINT,
    ),
    Exercise(
        "07.2",
        "pairwise masks that cancel",
        "mask_vector",
        (
            Test("middle_client", _t_mask_middle),
            Test("masks_cancel", _t_mask_cancel),
            Test("no_partners", _t_mask_no_peers, in_check=False),
            Test("no_self_mask", _t_mask_no_self, in_check=False),
            Test("wraps_around", _t_mask_wraps),
        ),
        hint=_MASK_HINT,
    ),
    Exercise(
        "07.3",
        "Shamir reconstruction (Lagrange at 0)",
        "shamir_reconstruct",
        (
            Test("known_answer", _t_shamir_known),
            Test("big_prime", _t_shamir_big),
            Test("every_subset", _t_shamir_subsets),
            Test("other_prime", _t_shamir_other_prime),
            Test("two_shares", _t_shamir_two),
        ),
        hint=_SHAMIR_HINT,
    ),
    Exercise(
        "07.4",
        "fixed-point encoding",
        "fixed_point_encode",
        (
            Test("known_values", _t_fixed_known),
            Test("rounds_to_nearest", _t_fixed_round),
            Test("clips", _t_fixed_clip),
            Test("matches_reference", _t_fixed_random, in_check=False),
            Test("sums_decode", _t_fixed_sum),
        ),
        hint=_FIXED_HINT,
    ),
)
