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

PATHS = {
    "00.1": {
        "the share of nights (a number in [0, 1])": "known_answer",
        "a night of exactly the threshold is not short (<)": "exactly_threshold_is_not_short",
        "the threshold argument": "uses_threshold",
    },
}
