"""The mistake catalogue (``tests/mistakes/``): each likely wrong answer fails its check with a message naming it.

Each mistake edits the exercise's solution cell, runs it in the lesson's namespace (the setup and exercise cells
of the solution notebook, executed in-process as ``tests/test_exercises.py`` does), and calls the learner's
``check``. The check must raise :class:`fedlab.checks.CheckFailed`, and its message must contain every phrase the
mistake ``expect`` s.
"""

import inspect
import os
from collections import Counter

import pytest

from fedlab import checks, course
from tests.mistakes import Mistake, catalogue
from tests.test_exercises import _Shell, namespace  # noqa: F401 - _Shell is used by the namespace

MISTAKES = catalogue()


def _solution_path(exercise_id: str):
    lesson = exercise_id.split(".")[0]
    paths = sorted(course.SOLUTIONS_DIR.glob(f"{lesson}_*.ipynb"))
    assert paths, f"no solution notebook for lesson {lesson}"
    return paths[0]


def _exercise_cell_source(path, exercise_id: str) -> str:
    nb = course.read_notebook(path)
    nb = course.student_notebook(nb, solved="all", where=path.name)
    cells = [c for c in nb.cells if c.cell_type == "code" and exercise_id in course.cell_exercises(c)]
    assert len(cells) == 1, f"{path.name}: expected one cell defining exercise {exercise_id}, found {len(cells)}"
    return course.cell_source(cells[0])


def wrong_answer(mistake: Mistake):
    """The learner's wrong answer: the solution cell with the mistake's edits, run in the lesson's namespace."""
    from IPython.core.inputtransformer2 import TransformerManager

    path = _solution_path(mistake.exercise)
    ns, errors = namespace(path, "solution")
    assert not errors, f"{path.name}: the solution's cells raised {errors}"
    source = mistake.code
    if not source:
        source = _exercise_cell_source(path, mistake.exercise)
        for old, new in mistake.edits:
            count = source.count(old)
            assert count == 1, f"{mistake.exercise}/{mistake.name}: {old!r} occurs {count} times in the cell, want 1"
            source = source.replace(old, new)
    ns = dict(ns)
    here = os.getcwd()
    os.chdir(path.parent)
    try:
        exec(compile(TransformerManager().transform_cell(source), f"<mistake {mistake.name}>", "exec"), ns)
    finally:
        os.chdir(here)
    return ns[checks.get(mistake.exercise).answer]


@pytest.mark.parametrize("mistake", MISTAKES, ids=[f"{m.exercise}-{m.name}" for m in MISTAKES])
def test_mistake_fails_its_check_with_a_message_naming_it(mistake):
    answer = wrong_answer(mistake)
    kwargs = {"thorough": True} if mistake.thorough else {}
    if kwargs:
        assert "thorough" in inspect.signature(checks.check).parameters, "check(..., thorough=True) is not available"
    with pytest.raises(checks.CheckFailed) as caught:
        checks.check(mistake.exercise, answer, **kwargs)
    message = str(caught.value)
    missing = [p for p in mistake.expect if p.lower() not in message.lower()]
    assert not missing, f"{mistake.exercise}/{mistake.name}: the message does not name the mistake {missing}:\n{message}"


def test_mistake_names_are_unique_per_exercise():
    counts = Counter((m.exercise, m.name) for m in MISTAKES)
    assert not [k for k, n in counts.items() if n > 1], "duplicate mistake names"


def test_every_exercise_of_every_lesson_has_at_least_two_catalogued_mistakes():
    counts = Counter(m.exercise for m in MISTAKES)
    lessons = [k for k in checks.LESSON_MODULES if k != "99"]  # 99 is the grader's demo lesson
    thin = {ex.id: counts[ex.id] for lesson in lessons for ex in checks.lesson_exercises(lesson) if counts[ex.id] < 2}
    assert not thin, f"exercises with fewer than 2 catalogued mistakes: {thin}"
