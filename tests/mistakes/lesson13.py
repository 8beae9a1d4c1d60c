"""Lesson 13 (distributed DP, the lying server): likely wrong answers and the diagnosis each must get."""

from tests.mistakes import Mistake

MISTAKES = [
    # 13.1 hadamard_rotate
    Mistake("13.1", "not_normalised", ("not normalised", "sqrt"), edits=(("return y / math.sqrt(d)", "return y"),)),
    Mistake(
        "13.1",
        "signs_after_the_transform",
        ("signs flipped after the transform",),
        edits=(("    y = y * signs\n", ""), ("return y / math.sqrt(d)", "return y * signs / math.sqrt(d)")),
    ),
    Mistake("13.1", "no_signs", ("without the signs",), edits=(("    y = y * signs\n", ""),)),
    Mistake(
        "13.1",
        "no_padding",
        ("pad x with zeros",),
        edits=(
            (
                "    d = len(signs)\n    y = np.zeros(d)\n    y[: len(x)] = x\n",
                "    d = len(signs)\n    y = np.array(x, dtype=float)\n    signs = signs[: len(y)]\n",
            ),
        ),
    ),
    # 13.2 conditional_round
    Mistake(
        "13.2",
        "round_to_nearest",
        ("nearest integer",),
        edits=(
            ("cand = (floor + (gen.random(len(y)) < frac)).astype(np.int64)", "cand = np.round(y).astype(np.int64)"),
        ),
    ),
    Mistake(
        "13.2",
        "rounds_up_with_one_minus_frac",
        ("1 - frac",),
        edits=(("(gen.random(len(y)) < frac)).astype", "(gen.random(len(y)) > frac)).astype"),),
    ),
    Mistake(
        "13.2",
        "never_redraws",
        ("drawn again",),
        edits=(("        if np.sum(cand * cand) <= bound**2:\n            return cand", "        return cand"),),
    ),
    Mistake("13.2", "never_gives_up", ("kept drawing",), edits=(("for _ in range(max_tries):", "while True:"),)),
    # 13.3 noise_share
    Mistake(
        "13.3",
        "counts_its_own_share",
        ("own share does not count", "min_survivors - 1"),
        edits=(("scale) ** 2 / (min_survivors - 1)", "scale) ** 2 / min_survivors"),),
    ),
    Mistake(
        "13.3",
        "forgot_the_scale",
        ("left out the scale",),
        edits=(("(noise_multiplier * clip_norm * scale) ** 2", "(noise_multiplier * clip_norm) ** 2"),),
    ),
    Mistake(
        "13.3",
        "rounded_gaussian",
        ("rounded gaussian is not skellam",),
        edits=(
            (
                "return gen.poisson(mu / 2, dim) - gen.poisson(mu / 2, dim)",
                "return np.round(gen.normal(0, math.sqrt(mu), dim)).astype(np.int64)",
            ),
        ),
    ),
    Mistake(
        "13.3",
        "std_for_variance",
        ("standard deviation where the variance goes",),
        edits=(
            (
                "mu = (noise_multiplier * clip_norm * scale) ** 2 / (min_survivors - 1)",
                "mu = noise_multiplier * clip_norm * scale / math.sqrt(min_survivors - 1)",
            ),
        ),
    ),
    # 13.4 may_sign
    Mistake(
        "13.4",
        "no_threshold_check",
        ("fewer than threshold", "2 < t = 3"),
        edits=(("me in u3 and len(u3) >= threshold and", "me in u3 and"),),
    ),
    Mistake(
        "13.4", "trusts_phones_outside_its_view", ("never shared keys",), edits=((" and set(u3) <= set(view)", ""),)
    ),
    Mistake(
        "13.4",
        "refuses_to_sign_the_same_list_again",
        ("same list it signed",),
        edits=(("if signed is not None and sorted(set(signed)) != u3:", "if signed is not None:"),),
    ),
    Mistake(
        "13.4",
        "order_sensitive_lists",
        ("another order",),
        edits=(
            ("u3 = sorted(set(survivors))", "u3 = list(survivors)"),
            ("sorted(set(signed)) != u3", "list(signed) != u3"),
        ),
    ),
]

PATHS = {
    "13.1": {
        "H D x / sqrt(d'): signs first, then the orthonormal transform": "known_answer",
        "pad x with zeros to len(signs)": "padding",
        "the butterfly for every h = 1, 2, 4, ... (against distributed_dp.rotate)": "against_reference",
        "the norm kept, unrotate gives x back": "inverse",
    },
    "13.2": {
        "round up where u < y - floor(y) (integers stay)": "integers_stay",
        "one rng.random(len(y)) draw per try, int64": "against_reference",
        "accept when the squared norm is at most bound**2, else draw again": "redraw_above_bound",
        "unbiased: E[round(y)] = y": "unbiased",
        "ValueError after max_tries draws": "gives_up",
    },
    "13.3": {
        "mu = (z c s)^2 / (min_survivors - 1)": "known_answer",
        "min_survivors = 2: one other share carries it all": "two_survivors",
        "Poisson(mu / 2) minus Poisson(mu / 2), drawn in that order": "known_answer",
        "mu = 0: zeros, drawing nothing": "no_noise",
    },
    "13.4": {
        "sign an honest list, in any order": "honest_lists",
        "refuse a list without me": "left_out",
        "refuse fewer than threshold phones": "below_threshold",
        "refuse a phone outside view": "outside_view",
        "refuse a different list once signed; the same list again is fine": "one_story",
    },
}
