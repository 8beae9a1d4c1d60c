"""Audit: the quick in-notebook check exercises every path an exercise's text names (issue 18, point 3).

Each ``tests/mistakes/lessonNN.py`` lists, beside its ``MISTAKES``, ``PATHS = {exercise_id: {path: test_name}}``:
the cases the exercise text names (``"batch_size=None: the full batch (FedSGD)"``) and the test that exercises
each. The audit fails when a lesson in :data:`AUDITED` (or any lesson module that defines ``PATHS``) has an
exercise without paths, a path whose test does not exist, or one whose test is not in the quick check.
Every stub of every lesson must also carry a ``### HINT:`` line, and every exercise's title in its lesson's
markdown must use the id its check prints: ``Exercise 06.1``, not ``Exercise 6.1`` or a shared
``Exercises 11.1 and 11.2`` heading.
"""

import importlib
import pkgutil
import re

import pytest

import tests.mistakes
from fedlab import checks, course

AUDITED = ("00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "13")
"""Lessons whose every exercise must list its named paths (add a lesson here once its PATHS table exists)."""


def _lesson_paths() -> dict[str, dict]:
    found = {}
    for info in pkgutil.iter_modules(tests.mistakes.__path__):
        if info.name.startswith("lesson"):
            module = importlib.import_module(f"tests.mistakes.{info.name}")
            if hasattr(module, "PATHS"):
                found[info.name.removeprefix("lesson")] = module.PATHS
    return found


PATHS = _lesson_paths()
LESSONS = sorted(set(AUDITED) | set(PATHS))


def audit(lesson: str, table: dict) -> list[str]:
    """What is missing from a lesson's PATHS table (an empty list when every named path has a quick test)."""
    problems = []
    exercises = checks.lesson_exercises(lesson)
    for ex in exercises:
        paths = table.get(ex.id)
        if not paths:
            problems.append(f"{ex.id}: no named paths listed")
            continue
        tests = {t.name: t for t in ex.tests}
        for path, name in paths.items():
            if name not in tests:
                problems.append(f"{ex.id}: path {path!r} names test {name!r}, which does not exist ({sorted(tests)})")
            elif not tests[name].in_check:
                problems.append(f"{ex.id}: path {path!r} is tested by {name!r}, which the quick check does not run")
    unknown = set(table) - {ex.id for ex in exercises}
    return problems + [f"{u}: not an exercise of lesson {lesson}" for u in sorted(unknown)]


@pytest.mark.parametrize("lesson", LESSONS)
def test_every_named_path_has_a_quick_test(lesson):
    assert lesson in PATHS, f"tests/mistakes/lesson{lesson}.py defines no PATHS table"
    problems = audit(lesson, PATHS[lesson])
    assert not problems, "\n".join(problems)


def test_the_audit_fails_on_a_path_only_the_grader_runs():
    table = {k: dict(v) for k, v in PATHS["02"].items()}
    table["02.2"]["the order of the clients does not matter"] = "order_independent"  # grading-only test
    del table["02.4"]
    problems = audit("02", table)
    assert any("quick check does not run" in p for p in problems) and any("02.4: no named paths" in p for p in problems)


SOLUTIONS = sorted(course.SOLUTIONS_DIR.glob("*.ipynb"))


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_every_stub_carries_a_hint(path):
    nb = course.read_notebook(path)
    bare = [
        ex
        for c in nb.cells
        if c.cell_type == "code"
        for ex in course.cell_exercises(c)
        if "### BEGIN SOLUTION" in course.cell_source(c) and "### HINT:" not in course.cell_source(c)
    ]
    assert not bare, f"{path.name}: stubs without a ### HINT: line: {bare}"


def untitled(nb) -> list[str]:
    """The exercises of a notebook whose id no markdown cell before their code cell names as ``Exercise NN.k``."""
    missing, text = [], ""
    for c in nb.cells:
        if c.cell_type == "markdown":
            text += c.source + "\n"
        for ex in course.cell_exercises(c) if c.cell_type == "code" else ():
            if not re.search(rf"\bExercise {re.escape(ex)}(?![0-9])", text):
                missing.append(ex)
    return missing


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_every_exercise_title_uses_the_id_its_check_prints(path):
    missing = untitled(course.read_notebook(path))
    assert not missing, f"{path.name}: no 'Exercise NN.k' title before the exercise cells of {missing}"


def test_the_title_audit_fails_on_a_short_id():
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("def f(): ...", metadata={"fedlab": {"exercise": "06.1"}})
    nb.cells = [nbformat.v4.new_markdown_cell("## The mock (Exercise 6.1)"), cell]
    assert untitled(nb) == ["06.1"]
    nb.cells[0].source = "### Exercise 06.1: the mock"
    assert untitled(nb) == []
