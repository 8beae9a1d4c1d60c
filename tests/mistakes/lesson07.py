"""Lesson 07's catalogued slips: additive shares, pairwise masks, Shamir reconstruction, fixed point."""

from tests.mistakes import Mistake

_LAST_SHARE = "shares[-1] = x - shares[:-1].sum(axis=0, dtype=np.uint32)"
_SHAMIR_TERM = "term = term * xm * pow(xm - xj, -1, prime) % prime"
_SHAMIR_SUM = "secret = (secret + term) % prime"
_FIXED_Q = "q = np.rint(np.clip(np.asarray(x, dtype=np.float64), -clip, clip) * 2.0**frac_bits).astype(np.int64)"

MISTAKES = [
    Mistake(
        "07.1",
        "last_share_plus",
        ("x plus the others' sum",),
        edits=((_LAST_SHARE, "shares[-1] = x + shares[:-1].sum(axis=0, dtype=np.uint32)"),),
    ),
    Mistake(
        "07.1",
        "n_random_shares_plus_one",
        ("off by one",),
        code="def additive_shares(x, n, rng):\n"
        "    x = np.asarray(x, dtype=np.uint32)\n"
        "    shares = rng.integers(0, 2**32, size=(n, len(x)), dtype=np.uint32)\n"
        "    return np.vstack([shares, x - shares.sum(axis=0, dtype=np.uint32)])\n",
    ),
    Mistake(
        "07.1",
        "no_mod_arithmetic",
        ("work mod 2^32",),
        code="def additive_shares(x, n, rng):\n"
        "    shares = rng.integers(0, 2**32, size=(n - 1, len(x)))\n"
        "    return np.vstack([shares, np.asarray(x, dtype=np.int64) - shares.sum(axis=0)])\n",
    ),
    Mistake(
        "07.1",
        "shares_not_uniform",
        ("not spread evenly",),
        edits=(("rng.integers(0, 2**32, size=(n - 1, x.size), dtype=np.uint32)", "rng.integers(0, 1000, size=(n - 1, x.size), dtype=np.uint32)"),),
    ),
    Mistake(
        "07.1",
        "ignores_rng",
        ("draw the random shares from `rng`",),
        edits=(("shares[:-1] = rng.integers(", "shares[:-1] = np.random.default_rng(0).integers("),),
    ),
    Mistake("07.2", "pair_signs_swapped", ("signs swapped",), edits=(("if v > client:", "if v < client:"),)),
    Mistake(
        "07.2",
        "every_pair_mask_added",
        ("every pairwise mask added",),
        edits=(("y -= secagg.prg(seed, len(y))", "y += secagg.prg(seed, len(y))"),),
    ),
    Mistake(
        "07.2",
        "self_mask_left_out",
        ("self-mask left out",),
        edits=(("    if self_seed is not None:\n        y += secagg.prg(self_seed, len(y))\n", ""),),
    ),
    Mistake(
        "07.2",
        "int64_without_wrap",
        ("work mod 2^32",),
        edits=(("\n    y = np.array(x, dtype=np.uint32)\n", "\n    y = np.array(x, dtype=np.int64)\n"),),
    ),
    Mistake(
        "07.3",
        "true_division",
        ("true division",),
        edits=((_SHAMIR_TERM, "term = term * xm / (xm - xj) % prime"),),
    ),
    Mistake(
        "07.3",
        "sign_of_the_denominator",
        ("sign is flipped",),
        edits=((_SHAMIR_TERM, "term = term * xm * pow(xj - xm, -1, prime) % prime"),),
    ),
    Mistake(
        "07.3",
        "not_reduced_mod_prime",
        ("reduce with % prime",),
        edits=((_SHAMIR_TERM, "term = term * xm * pow(xm - xj, -1, prime)"), (_SHAMIR_SUM, "secret = secret + term")),
    ),
    Mistake(
        "07.3",
        "ignores_the_prime_argument",
        ("the prime you are given",),
        edits=(
            (_SHAMIR_TERM, "term = term * xm * pow(xm - xj, -1, secagg.PRIME) % secagg.PRIME"),
            (_SHAMIR_SUM, "secret = (secret + term) % secagg.PRIME"),
        ),
    ),
    Mistake(
        "07.4",
        "no_clipping",
        ("not clipped",),
        edits=((_FIXED_Q, "q = np.rint(np.asarray(x, dtype=np.float64) * 2.0**frac_bits).astype(np.int64)"),),
    ),
    Mistake(
        "07.4",
        "clip_after_scaling",
        ("clipped after scaling",),
        edits=((_FIXED_Q, "q = np.rint(np.clip(np.asarray(x, dtype=np.float64) * 2.0**frac_bits, -clip, clip)).astype(np.int64)"),),
    ),
    Mistake(
        "07.4",
        "truncates_not_rounds",
        ("truncated toward zero",),
        edits=((_FIXED_Q, "q = (np.clip(np.asarray(x, dtype=np.float64), -clip, clip) * 2.0**frac_bits).astype(np.int64)"),),
    ),
    Mistake(
        "07.4",
        "scales_by_frac_bits",
        ("scaled by frac_bits",),
        edits=((_FIXED_Q, "q = np.rint(np.clip(np.asarray(x, dtype=np.float64), -clip, clip) * frac_bits).astype(np.int64)"),),
    ),
]

PATHS = {
    "07.1": {
        "rows sum to x mod 2^32": "sums_back",
        "the first n - 1 shares uniform on [0, 2^32)": "one_share_looks_uniform",
        "drawn from rng, reproducible": "reproducible_from_rng",
    },
    "07.2": {
        "add the self-mask when self_seed is not None": "middle_client",
        "add for v > client, subtract for v < client": "middle_client",
        "the pairwise masks cancel in the sum (self_seed None)": "masks_cancel",
        "mod 2^32: uint32 wraps": "wraps_around",
    },
    "07.3": {
        "Lagrange interpolation at 0 mod p": "known_answer",
        "fedlab's p = 2^255 - 19, Python ints": "big_prime",
        "any t shares, in any order": "every_subset",
        "the prime argument": "other_prime",
        "threshold 2 (an odd number of sign flips)": "two_shares",
    },
    "07.4": {
        "clip to [-c, c]": "clips",
        "multiply by 2^f, negative q as 2^32 + q": "known_values",
        "round to the nearest integer": "rounds_to_nearest",
        "sums of encodings are encodings of the sums": "sums_decode",
    },
}
