"""A small graded room of the demo lesson 99, shared by the feedback and LMS tests.

:func:`grade_room` grades real submissions (made from tests/fixtures/99_demo.ipynb)
with the real grader; :func:`with_hidden` turns those rows into the gradebook
schema of a grader with hidden tests and a sandbox column (one visible test of
``partial.ipynb``'s 99.1 becomes a hidden one, with an instructor-only name and
message), so the tests run against both schemas.
"""

from __future__ import annotations

import copy
from pathlib import Path

from fedlab import course, grader

FIXTURE = Path(__file__).parent / "fixtures" / "99_demo.ipynb"
SCRIPT_NAME = "<script>alert('x')<.ipynb"
"""A submission file name a learner controls, full of HTML."""
HIDDEN_NAME = "instructor_only_zq_numpy_inputs"
HIDDEN_MESSAGE = "INSTRUCTOR-ONLY-7f3: the hidden reference expected 0.8125"


def _solved(ids="all"):
    return course.student_notebook(course.read_notebook(FIXTURE), solved=ids)


def make_submissions(folder: Path) -> list[Path]:
    """Write correct, partial (a plain mean in 99.1, 99.3 blank), blank, an HTML-named one, and an empty file."""
    nb = _solved(["99.1", "99.2"])
    cell = next(c for c in nb.cells if "99.1" in course.cell_exercises(c))
    old = "return float(np.sum(values * weights) / np.sum(weights))"
    assert old in cell.source
    cell.source = cell.source.replace(old, "return float(np.mean(values))")
    files = {
        "correct.ipynb": course.notebook_bytes(_solved()),
        "partial.ipynb": course.notebook_bytes(nb),
        "blank.ipynb": course.student_bytes(FIXTURE),
        SCRIPT_NAME: course.notebook_bytes(_solved(["99.2"])),
        "empty.ipynb": b"",
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in files]


def grade_room(folder: Path) -> list[dict]:
    """Grade :func:`make_submissions` with the real grader (two workers, small timeouts)."""
    paths = make_submissions(folder)
    limits = grader.Limits(timeout_per_test=20, timeout_per_cell=30, budget_per_submission=120)
    return grader.grade(paths, lesson="99", reference=FIXTURE, workers=2, limits=limits)


def with_hidden(rows: list[dict]) -> list[dict]:
    """The rows as a grader with hidden tests and a sandbox would write them (see the module docstring)."""
    out = copy.deepcopy(rows)
    for r in out:
        r["sandbox"] = "bwrap"
        tests = r.get("tests") or []
        for t in tests:
            t["hidden"] = False
        if r["submission"] == "partial.ipynb" and r["exercise"] == "99.1":
            t = next(t for t in tests if t["name"] == "numpy_inputs")
            assert t["status"] == "failed", t
            t.update(name=HIDDEN_NAME, hidden=True, message=HIDDEN_MESSAGE)
            r["message"] = f"first failure: {HIDDEN_MESSAGE}"
        if r["submission"] == "correct.ipynb" and r["exercise"] == "99.1":
            t = next(t for t in tests if t["name"] == "numpy_inputs")
            t.update(name=HIDDEN_NAME, hidden=True)
        hidden = [t for t in tests if t.get("hidden")]
        r["hidden_points"] = sum(t["points"] for t in hidden)
        r["hidden_max"] = sum(t["max_points"] for t in hidden)
        r["visible_points"] = r["points"] - r["hidden_points"]
        r["visible_max"] = r["max_points"] - r["hidden_max"]
    return out
