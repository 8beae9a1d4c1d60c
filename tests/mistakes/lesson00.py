"""Lesson 00's catalogued slips: the share of short nights."""

from tests.mistakes import Mistake

MISTAKES = [
    Mistake("00.1", "less_or_equal", ("not <=",), edits=(("(sleep_hours < threshold)", "(sleep_hours <= threshold)"),)),
    Mistake("00.1", "fixed_threshold", ("threshold argument",), edits=(("(sleep_hours < threshold)", "(sleep_hours < 7)"),)),
    Mistake(
        "00.1",
        "count_not_share",
        ("2 / 4 = 0.5",),
        edits=(("float(np.mean(sleep_hours < threshold))", "float(np.sum(sleep_hours < threshold))"),),
    ),
]
