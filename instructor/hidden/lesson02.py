"""Lesson 02's hidden tests (instructor only; see instructor/README.md)."""

from fedlab.checks import Test, expect_equal, test_rng


def _t_last_round(answer):
    rng = test_rng(20)
    n = int(rng.integers(3, 9))
    accuracies = [float(a) for a in rng.uniform(0.1, 0.8, size=n - 1)] + [0.97]
    expect_equal(
        answer(accuracies, 0.9),
        n,
        what=f"a run of {n} rounds that reaches 0.9 only in its last round",
        hint="look at every round, the last one too",
    )


HIDDEN = {"02.4": (Test("reached_in_the_last_round", _t_last_round),)}
