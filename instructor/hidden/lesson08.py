"""Lesson 08's hidden tests (instructor only; see instructor/README.md)."""

import numpy as np

from fedlab.checks import CheckFailed, Test, test_rng


def _t_deltas_unchanged(answer):
    rng = test_rng(80)
    deltas = [[rng.standard_normal((3, 2)) * 5, rng.standard_normal(2) * 5] for _ in range(4)]
    before = [[t.copy() for t in d] for d in deltas]
    answer(deltas, clip_norm=1.0, noise_multiplier=0.5, expected_clients=4.0, rng=test_rng(81))
    if not all(np.array_equal(a, b) for d, e in zip(deltas, before) for a, b in zip(d, e)):
        raise CheckFailed(
            "dp_average changed the clients' deltas it was given (clipped them in place); clip into new arrays"
        )


HIDDEN = {"08.2": (Test("deltas_unchanged", _t_deltas_unchanged),)}
