"""Lesson 08's catalogued slips: clipping, the DP-FedAvg average and its noise, RDP of the sampled Gaussian, epsilon."""

from tests.mistakes import Mistake

_SCALE = "scale = 1.0 if norm <= max_norm else max_norm / norm"
_STD = "\n    std = noise_multiplier * clip_norm / expected_clients"
_EPS = "\n    eps = rdp + np.log((a - 1) / a) - (np.log(delta) + np.log(a)) / (a - 1)"
_EPS_RETURN = "return max(0.0, float(np.min(eps)))"

MISTAKES = [
    Mistake(
        "08.1",
        "norm_per_tensor",
        ("tensor by tensor",),
        code="def clip_to_norm(delta, max_norm):\n"
        "    return [np.asarray(t, dtype=float) * min(1.0, max_norm / max(np.linalg.norm(t), 1e-12)) for t in delta]\n",
    ),
    Mistake("08.1", "always_rescales", ("only ever scales down",), edits=((_SCALE, "scale = max_norm / norm if norm else 1.0"),)),
    Mistake(
        "08.1",
        "squared_norm",
        ("squared norm",),
        edits=(("norm = math.sqrt(sum(", "norm = (sum("),),
    ),
    Mistake(
        "08.1",
        "mutates_the_input",
        ("changed the update it was given",),
        code="def clip_to_norm(delta, max_norm):\n"
        "    norm = math.sqrt(sum(float(np.sum(np.square(t))) for t in delta))\n"
        "    scale = 1.0 if norm <= max_norm else max_norm / norm\n"
        "    for t in delta:\n"
        "        t *= scale\n"
        "    return list(delta)\n",
    ),
    Mistake("08.1", "divides_by_a_zero_norm", ("divides max_norm by the norm",), edits=((_SCALE, "scale = min(1.0, max_norm / norm)"),)),
    Mistake(
        "08.2",
        "divides_by_len_deltas",
        ("divided by len(deltas)",),
        edits=(("for c in clipped) / expected_clients", "for c in clipped) / len(deltas)"),),
    ),
    Mistake(
        "08.2",
        "no_clipping",
        ("not clipped",),
        edits=(("clipped = [dp.clip_update(d, max_norm=clip_norm) for d in deltas]", "clipped = [list(d) for d in deltas]"),),
    ),
    Mistake(
        "08.2",
        "clips_after_averaging",
        ("clipped after averaging",),
        code="def dp_average(deltas, *, clip_norm, noise_multiplier, expected_clients, rng):\n"
        "    avg = [sum(np.asarray(d[i], dtype=float) for d in deltas) / expected_clients for i in range(len(deltas[0]))]\n"
        "    std = noise_multiplier * clip_norm / expected_clients\n"
        "    return [t + rng.normal(0.0, std, size=t.shape) for t in dp.clip_update(avg, max_norm=clip_norm)]\n",
    ),
    Mistake("08.2", "std_not_scaled_by_clip_norm", ("not multiplied by clip_norm",), edits=((_STD, "\n    std = noise_multiplier / expected_clients"),)),
    Mistake("08.2", "std_of_the_sum", ("noise on the sum",), edits=((_STD, "\n    std = noise_multiplier * clip_norm"),)),
    Mistake("08.2", "variance_for_std", ("the variance",), edits=((_STD, "\n    std = (noise_multiplier * clip_norm / expected_clients) ** 2"),)),
    Mistake(
        "08.2",
        "global_numpy_random",
        ("np.random's global state",),
        edits=(("+ rng.normal(0.0, std,", "+ np.random.normal(0.0, std,"),),
    ),
    Mistake(
        "08.3",
        "no_log_space",
        ("overflow", "log space"),
        code="def rdp_sampled_gaussian(q, noise_multiplier, alpha):\n"
        "    if q == 1:\n"
        "        return alpha / (2 * noise_multiplier**2)\n"
        "    A = sum(math.comb(alpha, i) * (1 - q) ** (alpha - i) * q**i * math.exp((i * i - i) / (2 * noise_multiplier**2))\n"
        "            for i in range(alpha + 1))\n"
        "    return math.log(A) / (alpha - 1)\n",
    ),
    Mistake(
        "08.3",
        "divides_by_alpha",
        ("divide by alpha - 1",),
        edits=(("return float((m + math.log(np.sum(np.exp(t - m)))) / (alpha - 1))", "return float((m + math.log(np.sum(np.exp(t - m)))) / alpha)"),),
    ),
    Mistake(
        "08.3",
        "exponent_without_the_2",
        ("it is (i*i - i) / (2 z^2)",),
        edits=(("(i * i - i) / (2 * noise_multiplier**2)\n", "(i * i - i) / noise_multiplier**2\n"),),
    ),
    Mistake(
        "08.3",
        "q_equal_1_not_handled",
        ("log(0) is undefined",),
        edits=(("    if q == 1:\n        return alpha / (2 * noise_multiplier**2)\n", ""),),
    ),
    Mistake("08.4", "worst_order", ("the largest epsilon over the orders",), edits=((_EPS_RETURN, "return max(0.0, float(np.max(eps)))"),)),
    Mistake(
        "08.4",
        "mironov_conversion",
        ("mironov's original conversion",),
        edits=((_EPS, "\n    eps = rdp + np.log(1 / delta) / (a - 1)"),),
    ),
    Mistake("08.4", "no_floor_at_zero", ("never below 0",), edits=((_EPS_RETURN, "return float(np.min(eps))"),)),
    Mistake("08.4", "delta_ignored", ("use the delta you are given",), edits=((_EPS, "\n    eps = rdp + np.log((a - 1) / a) - (np.log(1e-5) + np.log(a)) / (a - 1)"),)),
]

PATHS = {
    "08.1": {
        "scale to norm at most S": "known_answer",
        "already short enough stays as it is": "below_the_norm",
        "the norm over all tensors together": "norm_over_all_tensors",
        "a new list of arrays (the input unchanged)": "random_updates",
        "an all-zero update (norm 0) is short enough": "zero_update",
    },
    "08.2": {
        "clip each delta to S, sum": "known_answer",
        "divide by the expected number qN, not the count": "random_clients",
        "Gaussian noise of std z S / (qN)": "noise_std",
        "the noise drawn from rng": "noise_from_rng",
    },
    "08.3": {
        "integer order alpha, by hand at alpha = 2": "alpha_2_by_hand",
        "q = 1: the plain Gaussian mechanism": "full_batch",
        "Mironov, Talwar and Zhang's sum": "against_reference",
        "log space for large alpha (alpha = 256, z = 0.8)": "large_alpha_log_space",
    },
    "08.4": {
        "Balle et al.'s conversion at one order": "one_order",
        "the smallest epsilon over the orders": "best_order",
        "never below 0": "never_below_zero",
        "the delta argument": "other_delta",
    },
}
