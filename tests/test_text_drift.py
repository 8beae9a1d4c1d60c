"""Student copies never point at content that only the solutions hold (issue 18, point 5)."""

import re

import pytest

from fedlab import course

SOLUTION_ONLY = re.compile(r"\b(our (list|answer|solution)s?|the solution (below|above))\b", re.IGNORECASE)
"""Phrases that refer to an answer the solution notebook shows and the student copy strips."""

STUDENTS = sorted(course.NOTEBOOKS_DIR.glob("*.ipynb"))


@pytest.mark.parametrize("path", STUDENTS, ids=[p.stem for p in STUDENTS])
def test_student_copy_refers_to_nothing_it_lacks(path):
    nb = course.read_notebook(path)
    hits = [m.group(0) for c in nb.cells if c.cell_type == "markdown" for m in SOLUTION_ONLY.finditer(c.source)]
    assert not hits, f"{path.name} refers to content only the solution holds: {hits}"


def test_the_phrase_check_can_fail():
    assert SOLUTION_ONLY.search("Before reading our list, write your own")
