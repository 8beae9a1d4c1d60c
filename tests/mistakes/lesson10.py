"""Lesson 10's catalogued slips: the private round's denominator, sum and noise; composing a schedule; the bytes."""

from tests.mistakes import Mistake

_STD = "std = noise_multiplier * clip_norm / expected_clients"
_MASKED = "masked = 4 + math.ceil(dim * bits / 8)"

MISTAKES = [
    # 10.1 private_round
    Mistake(
        "10.1",
        "divides_by_n",
        ("not by expected_clients",),
        edits=((_STD, "std = noise_multiplier * clip_norm / n"), ("(t / expected_clients + std", "(t / n + std")),
    ),
    Mistake(
        "10.1",
        "float_sum_not_the_protocol",
        ("exact float sum",),
        edits=(("total = secagg.run_round(x, config=config).sum", "total = x.sum(axis=0)"),),
    ),
    Mistake(
        "10.1",
        "not_clipped",
        ("not clipped",),
        edits=(
            (
                "\n    x = np.stack([P.flatten(dp.clip_update(d, max_norm=clip_norm))",
                "\n    x = np.stack([P.flatten(d)",
            ),
        ),
    ),
    Mistake(
        "10.1",
        "noise_std_of_the_sum",
        ("noise of std z S on the average",),
        edits=((_STD, "std = noise_multiplier * clip_norm"),),
    ),
    # 10.2 epsilon_spent
    Mistake(
        "10.2", "step_result_dropped", ("returns a new accountant",), edits=(("acc = acc.step(q=q", "acc.step(q=q"),)
    ),
    Mistake(
        "10.2",
        "epsilons_added",
        ("added up",),
        code="def epsilon_spent(schedule, *, delta):\n"
        "    return sum(dp.Accountant().step(q=q, noise_multiplier=z, steps=rounds).epsilon(delta=delta)\n"
        "               for q, z, rounds in schedule)\n",
    ),
    Mistake("10.2", "rounds_ignored", ("one round per phase",), edits=(("steps=rounds", "steps=1"),)),
    Mistake(
        "10.2",
        "new_accountant_each_phase",
        ("the last phase only",),
        edits=(("acc = acc.step(q=q", "acc = dp.Accountant().step(q=q"),),
    ),
    # 10.3 bytes_per_round
    Mistake("10.3", "rounds_down", ("round up",), edits=((_MASKED, "masked = 4 + dim * bits // 8"),)),
    Mistake("10.3", "bits_not_bytes", ("in bits, not bytes",), edits=((_MASKED, "masked = 4 + dim * bits"),)),
    Mistake(
        "10.3",
        "shares_for_all_n",
        ("one encrypted pair to each other client",),
        edits=(("(n - 1) * (4 + 4 + 88)", "n * (4 + 4 + 88)"),),
    ),
    Mistake("10.3", "unmask_for_n_minus_1", ("itself included",), edits=(("(4 + 32) * n", "(4 + 32) * (n - 1)"),)),
]

PATHS = {
    "10.1": {
        "clip each update to L2 norm S": "no_noise",
        "divide by expected_clients (q N), not the count": "no_noise",
        "the protocol's fixed-point sum (secagg.run_round)": "coarse_bits",
        "noise N(0, (z S)^2) on the sum: z S / (q N) on the average": "with_noise",
        "the noise drawn from rng": "with_noise",
    },
    "10.2": {
        "one phase: dp.Accountant().step(...).epsilon(delta=...)": "one_phase",
        "phases one after the other, composed by one accountant": "two_phases",
    },
    "10.3": {
        "the four messages of one round, no dropouts": "known_answer",
        "ceil(dim * bits / 8) bytes for the masked input": "known_answer",
        "n - 1 encrypted pairs of shares, n unmasking shares": "many_sizes",
    },
}
