"""Lesson 00 exercises: the warm-up that shows how exercises, checks and hints work.

00.1 ``short_sleep_fraction``  the share of nights with less sleep than a threshold (7 h by default)

The tests call the learner's function on small fixed inputs and compare with
:func:`reference_short_sleep_fraction`.
"""

from __future__ import annotations

import numbers

import numpy as np

from fedlab.checks import CheckFailed, Exercise, Test, expect_close, register, test_rng


def reference_short_sleep_fraction(sleep_hours, *, threshold: float = 7.0) -> float:
    """Share of nights with ``sleep_hours < threshold``.

    Parameters
    ----------
    sleep_hours
        Hours asleep per night, shape ``[n]``, ``n >= 1``.
    threshold
        A night strictly below it counts as short; a night of exactly
        ``threshold`` hours does not.

    Returns
    -------
    float
        A number in ``[0, 1]``.

    """
    hours = np.asarray(sleep_hours, dtype=np.float64)
    return float(np.mean(hours < threshold))


def _call(answer, hours, what, **kwargs):
    got = answer(np.asarray(hours, dtype=np.float64), **kwargs)
    if isinstance(got, np.ndarray) and got.shape == ():
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, numbers.Real):
        raise CheckFailed(
            f"{what}: returned {got!r} ({type(got).__name__}), expected one number "
            "between 0 and 1. Hint: return the fraction, e.g. the mean of a True/False array."
        )
    return float(got)


def _t_known(answer):
    hours = [6.5, 7.5, 8.0, 5.0]
    what = f"short_sleep_fraction({hours})"
    expect_close(
        _call(answer, hours, what),
        0.5,
        what=what,
        hint="2 of the 4 nights are under 7 hours, so the answer is 2 / 4 = 0.5; "
        "divide by the number of nights, not by the number of short ones.",
    )


def _t_boundary(answer):
    hours = [7.0, 7.0, 6.99, 8.0]
    what = f"short_sleep_fraction({hours})"
    expect_close(
        _call(answer, hours, what),
        0.25,
        what=what,
        hint="a night of exactly 7.0 hours is not short: compare with < (less than), not <=.",
    )


def _t_threshold(answer):
    hours = [5.5, 6.5, 7.5]
    what = f"short_sleep_fraction({hours}, threshold=6.0)"
    expect_close(
        _call(answer, hours, what, threshold=6.0),
        1 / 3,
        what=what,
        hint="use the threshold argument instead of a fixed 7.",
    )


def _t_random(answer):
    rng = test_rng(0)
    for threshold in (6.0, 7.0, 7.5):
        hours = np.round(rng.normal(7.0, 1.0, size=60), 2)
        what = f"60 random nights, threshold={threshold}"
        expect_close(
            _call(answer, hours, what, threshold=threshold),
            reference_short_sleep_fraction(hours, threshold=threshold),
            what=what,
        )


def _t_extremes(answer):
    what = "short_sleep_fraction([9.0]) (one long night)"
    expect_close(_call(answer, [9.0], what), 0.0, what=what)
    what = "short_sleep_fraction([4.0, 3.5]) (two short nights)"
    expect_close(_call(answer, [4.0, 3.5], what), 1.0, what=what)


register(
    Exercise(
        id="00.1",
        title="share of short nights",
        answer="short_sleep_fraction",
        tests=(
            Test("known_answer", _t_known),
            Test("exactly_threshold_is_not_short", _t_boundary),
            Test("uses_threshold", _t_threshold),
            Test("random_nights", _t_random, in_check=False),
            Test("all_or_nothing", _t_extremes, in_check=False),
        ),
        hint="(sleep_hours < threshold) is a True/False array; its mean is the share of True.",
    )
)
