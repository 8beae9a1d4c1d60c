"""The mistake catalogue: learners' likely wrong answers, kept as fixtures, each with the diagnosis it must get.

One module per lesson, ``tests/mistakes/lessonNN.py``, defines ``MISTAKES``: a list of :class:`Mistake`. A
mistake is a small edit of the exercise's **solution** cell in ``solutions/NN_*.ipynb`` (the slip a learner
makes on the way to the right answer: a sign, a scale, an off-by-one, a forgotten ``zero_grad`` ...), or, where
an edit is awkward, the whole wrong cell as ``code``. ``tests/test_mistakes.py`` runs each one in the lesson's
namespace (setup and exercise cells executed as in ``tests/test_exercises.py``) and asserts that the learner's
in-notebook ``check`` fails **and** that its message names the mistake (every phrase of ``expect``,
case-insensitive): a test of the diagnosis, not just of the failure.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass


@dataclass(frozen=True)
class Mistake:
    """One catalogued wrong answer.

    Attributes
    ----------
    exercise
        The exercise id, ``"02.1"``.
    name
        Short id of the slip, unique within the exercise (``"no_zero_grad"``).
    expect
        Phrases the check's message must contain (case-insensitive): the words that name the mistake.
    edits
        ``(old, new)`` replacements applied, in order, to the source of the solution cell that defines the
        exercise; each ``old`` must occur exactly once in the current text.
    code
        The whole wrong cell instead (used when ``edits`` is empty).
    thorough
        Check with every visible grading test (``check(..., thorough=True)``) instead of the quick ones.
    """

    exercise: str
    name: str
    expect: tuple[str, ...]
    edits: tuple[tuple[str, str], ...] = ()
    code: str = ""
    thorough: bool = False

    def __post_init__(self):
        if bool(self.edits) == bool(self.code):
            raise ValueError(f"Mistake {self.exercise}/{self.name}: give exactly one of edits= or code=")
        if not self.expect:
            raise ValueError(f"Mistake {self.exercise}/{self.name}: expect= must name the diagnosis")


def catalogue() -> list[Mistake]:
    """Every mistake of every ``tests/mistakes/lessonNN.py`` module, in lesson order."""
    found: list[Mistake] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("lesson"):
            found.extend(importlib.import_module(f"{__name__}.{info.name}").MISTAKES)
    return found
