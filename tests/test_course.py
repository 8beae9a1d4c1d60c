"""Student notebooks are generated from solutions/, deterministically, and never drift; conventions are enforced."""

import copy
import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

from fedlab import course
from fedlab.__main__ import main

FIXTURE = Path(__file__).parent / "fixtures" / "99_demo.ipynb"


def source():
    return course.read_notebook(FIXTURE)


def save(nb, path):
    course.write_atomic(path, course.notebook_bytes(nb))
    return path


# ---- the repository ----------------------------------------------------------------------------


def test_notebooks_are_up_to_date_with_solutions():
    problems = course.check()
    assert not problems, "\n".join(problems) + "\nrun `make notebooks`"


def _tracked_notebooks():
    try:
        out = subprocess.run(
            ["git", "ls-files", "--", "solutions/*.ipynb", "notebooks/*.ipynb"],
            cwd=course.ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.split()
        return [course.ROOT / p for p in out if (course.ROOT / p).is_file()]
    except (OSError, subprocess.CalledProcessError):
        return sorted(course.SOLUTIONS_DIR.glob("*.ipynb")) + sorted(course.NOTEBOOKS_DIR.glob("*.ipynb"))


def test_committed_notebooks_have_no_outputs_or_execution_counts():
    dirty = [
        str(p.relative_to(course.ROOT)) for p in _tracked_notebooks() if course.has_outputs(course.read_notebook(p))
    ]
    assert not dirty, f"notebooks committed with outputs (run `make notebooks` to strip them): {dirty}"


def test_the_demo_fixture_follows_the_conventions():
    course.validate(source(), lesson="99", where=str(FIXTURE))
    assert not course.has_outputs(source())


# ---- the student copy --------------------------------------------------------------------------


@pytest.fixture
def student(tmp_path):
    dest = tmp_path / "notebooks" / "99_demo.ipynb"
    assert course.build_student(FIXTURE, dest) is True
    return dest


def test_build_is_idempotent_and_deterministic(student, tmp_path):
    first = student.read_bytes()
    mtime = student.stat().st_mtime_ns
    assert course.build_student(FIXTURE, student) is False
    assert student.read_bytes() == first and student.stat().st_mtime_ns == mtime
    other = tmp_path / "again" / "99_demo.ipynb"
    course.build_student(FIXTURE, other)
    assert other.read_bytes() == first
    assert first.endswith(b"}\n") and json.loads(first)["metadata"]["fedlab"]["lesson"] == "99"


def test_student_copy_stubs_regions_drops_instructor_cells_and_keeps_tags(student):
    nb = course.read_notebook(student)
    text = "\n".join(course.cell_source(c) for c in nb.cells)
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text and "### HINT" not in text
    assert "np.sum(values * weights)" not in text and "A plain mean lets" not in text
    assert "Instructor note" not in text and "instructor: the solution passes" not in text
    assert not any("instructor" in course.cell_tags(c) for c in nb.cells)
    ex1 = next(c for c in nb.cells if course.cell_exercises(c) == ["99.1"])
    assert ex1.metadata.tags == ["exercise"]
    assert ex1.source.splitlines()[-2:] == [
        "    # Hint: multiply each value by its weight, add them up, divide by the total weight",
        '    raise NotImplementedError("Exercise 99.1: multiply each value by its weight, add them up, '
        'divide by the total weight")',
    ]
    ex2 = next(c for c in nb.cells if course.cell_exercises(c) == ["99.2", "99.3"])
    assert (
        'raise NotImplementedError("Exercise 99.2: write your code here, then run the check cell below")' in ex2.source
    )
    assert 'raise NotImplementedError("Exercise 99.3: np.prod(shape)' in ex2.source
    assert "*Your answer here.*" in text
    assert [course.cell_source(c) for c in nb.cells if "check" in course.cell_tags(c)] == [
        'check("99.1", weighted_mean)',
        'check("99.2", clip_norm)',
        'check("99.3", count_parameters)',
    ]
    assert not course.has_outputs(nb)
    assert nb.metadata.fedlab.source_sha256 == course.source_sha256(source())
    assert nb.metadata.kernelspec.name == "python3"
    nbformat.validate(nb)


def test_source_hash_ignores_outputs_and_ids_but_not_inputs():
    nb = source()
    ran = copy.deepcopy(nb)
    ran.cells[1].outputs = [nbformat.v4.new_output("stream", text="hi")]
    ran.cells[1].execution_count = 3
    ran.cells[1].id = "something-else"
    ran.cells[1].metadata["execution"] = {"iopub.status.idle": "2024-01-01"}
    assert course.source_sha256(ran) == course.source_sha256(nb)
    edited = copy.deepcopy(nb)
    edited.cells[0].source += " "
    assert course.source_sha256(edited) != course.source_sha256(nb)


def test_solved_copies_make_example_submissions():
    full = course.student_notebook(source(), solved="all")
    text = "\n".join(course.cell_source(c) for c in full.cells)
    assert "np.sum(values * weights)" in text and "BEGIN SOLUTION" not in text and "A plain mean lets" in text
    some = course.student_notebook(source(), solved=["99.2"])
    text = "\n".join(course.cell_source(c) for c in some.cells)
    assert "np.linalg.norm(v)" in text and "Exercise 99.1:" in text and "Exercise 99.3:" in text


# ---- validation: clear errors ------------------------------------------------------------------


def broken(edit):
    nb = source()
    edit(nb)
    return nb


def cell(nb, tag, ex_id):
    return next(
        c
        for c in nb.cells
        if tag in course.cell_tags(c) and ex_id in (course.cell_exercises(c) + [course.cell_check(c)])
    )


CASES = {
    "unmatched begin": (
        lambda nb: setattr(
            cell(nb, "exercise", "99.1"),
            "source",
            cell(nb, "exercise", "99.1").source.replace("    ### END SOLUTION", ""),
        ),
        "has no matching '### END SOLUTION'",
    ),
    "end without begin": (
        lambda nb: setattr(
            cell(nb, "exercise", "99.2"),
            "source",
            cell(nb, "exercise", "99.2").source.replace("    ### BEGIN SOLUTION\n", "", 1),
        ),
        "without a '### BEGIN SOLUTION'",
    ),
    "nested": (
        lambda nb: setattr(
            cell(nb, "exercise", "99.1"),
            "source",
            cell(nb, "exercise", "99.1").source.replace("    values = np", "    ### BEGIN SOLUTION\n    values = np"),
        ),
        "regions do not nest",
    ),
    "markdown unmatched": (
        lambda nb: setattr(nb.cells[5], "source", nb.cells[5].source.replace("<!-- END SOLUTION -->", "")),
        "unmatched '<!-- BEGIN SOLUTION -->'",
    ),
    "check without exercise": (
        lambda nb: cell(nb, "exercise", "99.1").metadata.__setitem__("tags", []) or cell_drop_meta(nb),
        "check cell for '99.1' has no exercise cell",
    ),
    "unregistered id": (
        lambda nb: cell(nb, "exercise", "99.1").metadata.fedlab.__setitem__("exercise", "99.9"),
        "exercise_id='99.9': lesson 99 has exercises",
    ),
    "duplicate id": (
        lambda nb: cell(nb, "exercise", "99.2").metadata.fedlab.__setitem__("exercise", ["99.1", "99.3"]),
        "duplicate exercise id '99.1'",
    ),
    "registered but absent": (
        lambda nb: cell(nb, "exercise", "99.2").metadata.fedlab.__setitem__("exercise", ["99.3"]),
        "exercise 99.2 is registered in fedlab.exercises.demo but no exercise cell defines it",
    ),
    "lesson mismatch": (
        lambda nb: nb.metadata.fedlab.__setitem__("lesson", "98"),
        "does not match the file name's lesson '99'",
    ),
    "check source": (
        lambda nb: setattr(cell(nb, "check", "99.1"), "source", "check('99.1', weighted_mean); print(1)"),
        "must be exactly check",
    ),
    "check answer name": (
        lambda nb: setattr(cell(nb, "check", "99.1"), "source", 'check("99.1", clip_norm)'),
        "is answered by `weighted_mean`",
    ),
    "hint not before begin": (
        lambda nb: setattr(
            cell(nb, "exercise", "99.1"), "source", "### HINT: x\n\n" + cell(nb, "exercise", "99.1").source
        ),
        "must be right before '### BEGIN SOLUTION'",
    ),
    "exercise without region": (
        lambda nb: setattr(cell(nb, "exercise", "99.1"), "source", "def weighted_mean(v, w):\n    return 0.0"),
        "needs a '### BEGIN SOLUTION' region",
    ),
    "missing exercise metadata": (
        lambda nb: cell(nb, "exercise", "99.1").metadata.pop("fedlab"),
        'an exercise cell needs metadata {"fedlab": {"exercise": "99.1"}}',
    ),
}


def cell_drop_meta(nb):
    c = next(c for c in nb.cells if course.cell_exercises(c) == ["99.1"])
    del c.metadata["fedlab"]
    c.source = "def weighted_mean(v, w):\n    return 0.0"


@pytest.mark.parametrize("case", sorted(CASES))
def test_validation_names_the_cell_and_what_is_allowed(case):
    edit, words = CASES[case]
    with pytest.raises(course.NotebookError, match=__import__("re").escape(words)) as err:
        course.validate(broken(edit), lesson="99", where="99_demo.ipynb")
    assert isinstance(err.value, ValueError) and "99_demo.ipynb" in str(err.value)


def test_file_names_must_carry_the_lesson():
    assert course.lesson_of_path("solutions/02_fedavg.ipynb") == "02"
    with pytest.raises(ValueError, match="must look like NN_slug.ipynb"):
        course.lesson_of_path("solutions/fedavg.ipynb")


# ---- building a course, checking for drift ------------------------------------------------------


@pytest.fixture
def course_dirs(tmp_path):
    sol, nbs = tmp_path / "solutions", tmp_path / "notebooks"
    sol.mkdir()
    shutil.copy(FIXTURE, sol / "99_demo.ipynb")
    return sol, nbs


def test_check_reports_missing_stale_extra_and_outputs_and_build_fixes_them(course_dirs, capsys):
    sol, nbs = course_dirs
    assert course.check(sol, nbs) == [f"missing: {nbs / '99_demo.ipynb'} (run `make notebooks`)"]
    assert main(["course", "check", "--solutions", str(sol), "--notebooks", str(nbs)]) == 1
    assert "missing:" in capsys.readouterr().out
    assert course.build(sol, nbs) == []
    assert course.check(sol, nbs) == []
    assert main(["course", "check", "--solutions", str(sol), "--notebooks", str(nbs)]) == 0

    nb = course.read_notebook(sol / "99_demo.ipynb")  # an author edits and runs the source
    nb.cells[0].source += "\n\nOne more sentence."
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="ran")]
    nb.cells[1].execution_count = 1
    save(nb, sol / "99_demo.ipynb")
    shutil.copy(nbs / "99_demo.ipynb", nbs / "98_gone.ipynb")
    problems = course.check(sol, nbs)
    assert [p.split(":")[0] for p in problems] == ["outputs", "stale", "extra"]

    assert main(["course", "build", "--solutions", str(sol), "--notebooks", str(nbs)]) == 0
    out = capsys.readouterr().out
    assert "stripped outputs from" in out and "wrote" in out and "removed" in out
    assert course.check(sol, nbs) == [] and not (nbs / "98_gone.ipynb").exists()
    assert not course.has_outputs(course.read_notebook(sol / "99_demo.ipynb"))


def test_build_refuses_a_broken_source_and_still_builds_the_others(course_dirs):
    sol, nbs = course_dirs
    nb = source()
    nb.metadata.fedlab.lesson = "97"
    save(nb, sol / "98_broken.ipynb")
    (sol / "scratch.ipynb").write_bytes(FIXTURE.read_bytes())
    problems = course.build(sol, nbs, out=lambda _: None)
    assert len(problems) == 2 and any("NN_slug.ipynb" in p for p in problems)
    assert any("does not match the file name's lesson '98'" in p for p in problems)
    assert (nbs / "99_demo.ipynb").is_file() and not (nbs / "98_broken.ipynb").exists()


def test_hand_made_notebook_in_notebooks_is_not_deleted(course_dirs):
    sol, nbs = course_dirs
    nbs.mkdir()
    save(nbformat.v4.new_notebook(), nbs / "50_handmade.ipynb")
    problems = course.build(sol, nbs, out=lambda _: None)
    assert len(problems) == 1 and "was not generated" in problems[0]
    assert (nbs / "50_handmade.ipynb").exists()


# ---- learners' working copies ------------------------------------------------------------------


def test_workdir_copies_once_and_never_overwrites(course_dirs, tmp_path, capsys):
    sol, nbs = course_dirs
    course.build(sol, nbs, out=lambda _: None)
    work = tmp_path / "work"
    assert main(["course", "workdir", "--dir", str(work), "--notebooks", str(nbs)]) == 0
    mine = work / "99_demo.ipynb"
    assert mine.read_bytes() == (nbs / "99_demo.ipynb").read_bytes()
    mine.write_bytes(b"my work in progress")
    assert course.make_workdir(nbs, work, out=lambda _: None) == []
    assert mine.read_bytes() == b"my work in progress"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="work_dir=.*is not a folder"):
        course.make_workdir(nbs, tmp_path / "afile")


def test_refresh_offers_new_and_updated_lessons_beside_the_learners_files(course_dirs, tmp_path):
    sol, nbs = course_dirs
    course.build(sol, nbs, out=lambda _: None)
    work = tmp_path / "work"
    course.make_workdir(nbs, work, out=lambda _: None)
    mine = work / "99_demo.ipynb"
    learner = json.loads(mine.read_bytes())
    learner["cells"][3]["source"] = "def weighted_mean(values, weights):\n    return 42.0\n"
    mine.write_text(json.dumps(learner))
    before = mine.read_bytes()
    said = []
    assert course.refresh(nbs, work, out=said.append) == []
    assert "current version" in said[-1]

    nb = course.read_notebook(sol / "99_demo.ipynb")  # the lesson changes, and a new lesson appears
    nb.cells[0].source += "\n\nA clarification."
    save(nb, sol / "99_demo.ipynb")
    other = copy.deepcopy(nb)
    save(other, sol / "99_other.ipynb")
    course.build(sol, nbs, out=lambda _: None)
    when = dt.datetime(2025, 3, 4, 5, 6, 7)
    said = []
    written = course.refresh(nbs, work, now=when, out=said.append)
    assert sorted(p.name for p in written) == ["99_demo.updated-20250304-050607.ipynb", "99_other.ipynb"]
    assert mine.read_bytes() == before
    assert (work / "99_demo.updated-20250304-050607.ipynb").read_bytes() == (nbs / "99_demo.ipynb").read_bytes()
    assert any("updated lesson" in s for s in said) and any("new lesson" in s for s in said)
    assert course.refresh(nbs, work, now=when + dt.timedelta(hours=1), out=said.append) == []
    assert "already at" in said[-1] or "current version" in said[-1]
