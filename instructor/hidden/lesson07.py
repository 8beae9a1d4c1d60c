"""Lesson 07's hidden tests (instructor only; see instructor/README.md)."""

import numpy as np

from fedlab.checks import CheckFailed, Test, test_rng


def _t_input_unchanged(answer):
    x = test_rng(70).uniform(-3.0, 3.0, size=50)
    before = x.copy()
    answer(x, clip=1.0, frac_bits=8)
    if not np.array_equal(x, before):
        raise CheckFailed(
            "fixed_point_encode changed the update it was given (clipped it in place); a client's update is "
            "still needed after encoding: clip into a new array"
        )


HIDDEN = {"07.4": (Test("input_unchanged", _t_input_unchanged),)}
