"""LMS exports: Canvas and Moodle CSV with a roster, and the Gradescope autograder bundle run locally.

The gradebook comes from a real grading of the demo lesson (tests/graded_room.py,
graded once for the module). The Gradescope test builds the bundle, unpacks it
into a temporary folder standing in for /autograder, runs the bundle's own
``run_autograder`` (``AUTOGRADER_ROOT``, ``FEDLAB_PYTHON``) on a submission and
validates ``results.json`` against :data:`fedlab.lms.GRADESCOPE_RESULTS_SCHEMA`,
written from Gradescope's "Autograder Specifications".
"""

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedlab import grader, lms
from tests.graded_room import FIXTURE, HIDDEN_MESSAGE, HIDDEN_NAME, SCRIPT_NAME, grade_room, with_hidden

ROSTER = """id,name,email,submission,section,sis_login_id,canvas_id
s1,"Lovelace, Ada",ada@example.org,correct.ipynb,A,ada,101
s2,"Hopper, Grace",grace@example.org,part*.ipynb,A,grace,102
s3,"Turing, Alan",alan@example.org,missing_*.ipynb,B,alan,103
s4,"Noether, Emmy",emmy@example.org,empty.ipynb,B,emmy,104
s5,"Babbage, Charles",charles@example.org,bl*.ipynb,B,charles,105
s6,"Curie, Marie",marie@example.org,*ank.ipynb,B,marie,106
"""


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    folder = tmp_path_factory.mktemp("room")
    rows = grade_room(folder / "subs")
    gradebook = folder / "grades.json"
    gradebook.write_text(grader.json_text(rows))
    roster = folder / "roster.csv"
    roster.write_text(ROSTER)
    return {"rows": rows, "gradebook": gradebook, "roster": roster, "folder": folder}


def test_matching_lists_everything_that_is_not_one_to_one(room):
    m = lms.match(lms.read_roster(room["roster"]), lms._submissions(room["rows"]))
    assert m.by_learner == {"s1": "correct.ipynb", "s2": "partial.ipynb", "s4": "empty.ipynb"}
    assert m.unmatched == [SCRIPT_NAME]
    assert m.ambiguous == {"blank.ipynb": ["s5", "s6"]}
    assert m.missing == ["s3", "s5", "s6"]
    assert m.problems == [
        f"unmatched submission: {SCRIPT_NAME} (no roster entry matches it)",
        "ambiguous submission: blank.ipynb (matches learners s5, s6)",
        "no submission for learner s3 (no grade exported)",
        "no submission for learner s5 (no grade exported)",
        "no submission for learner s6 (no grade exported)",
    ]


def test_exact_names_beat_patterns_and_several_submissions_are_listed():
    roster = lms.parse_roster("id,submission\na,alice.ipynb\nb,*.ipynb\nc,carl*\n")
    m = lms.match(roster, ["alice.ipynb", "x/bob.ipynb", "bob2.ipynb", "carl1.ipynb", "carl2.ipynb"])
    assert m.several == {"b": ["x/bob.ipynb", "bob2.ipynb"]}
    assert m.ambiguous == {"carl1.ipynb": ["b", "c"], "carl2.ipynb": ["b", "c"]}
    assert m.by_learner == {"a": "alice.ipynb"}
    assert "several submissions for learner b: x/bob.ipynb, bob2.ipynb (no grade exported)" in m.problems


_names = st.text(alphabet="abc*?/.", min_size=1, max_size=6)


@given(
    st.lists(st.tuples(st.text(alphabet="xyz", min_size=1, max_size=3), _names), max_size=6, unique_by=lambda t: t[0]),
    st.lists(st.text(alphabet="abc/.", min_size=1, max_size=6), max_size=8, unique=True),
)
def test_matching_partitions_submissions_and_learners(entries, submissions):
    roster = [lms.Learner(id=i, submission=p) for i, p in entries]
    m = lms.match(roster, submissions)
    owned = [s for subs in m.several.values() for s in subs] + list(m.by_learner.values())
    assert sorted(owned + m.unmatched + list(m.ambiguous)) == sorted(submissions)  # each file exactly once
    assert sorted(list(m.by_learner) + list(m.several) + m.missing) == sorted(i for i, _ in entries)
    for sub, ids in m.ambiguous.items():
        assert len(ids) > 1 and all(lms._matches(p, sub) or p == sub for i, p in entries if i in ids)
    assert len(m.problems) == len(m.unmatched) + len(m.ambiguous) + len(m.several) + len(m.missing)


def test_canvas_csv_known_answer(room):
    text, _ = lms.canvas_csv(room["rows"], lms.read_roster(room["roster"]), assignment_ids={"99": "777"})
    assert text == (
        "Student,ID,SIS User ID,SIS Login ID,Section,Lesson 99 (777)\n"
        "Points Possible,,,,,11\n"
        '"Lovelace, Ada",101,s1,ada,A,11\n'
        '"Hopper, Grace",102,s2,grace,A,6\n'
        '"Noether, Emmy",104,s4,emmy,B,0\n'
    )  # s3 (no submission), s5 and s6 (blank.ipynb matches both) get no row: nothing cleared in Canvas
    new_column, _ = lms.canvas_csv(room["rows"], lms.read_roster(room["roster"]))
    assert new_column.splitlines()[0].endswith(",Lesson 99")


def test_moodle_csv_known_answer(room):
    roster = lms.read_roster(room["roster"])
    text, _ = lms.moodle_csv(room["rows"], roster, identifier="email")
    assert text == ("email,Lesson 99\nada@example.org,11\ngrace@example.org,6\nemmy@example.org,0\n")
    by_id, _ = lms.moodle_csv(room["rows"], roster)
    assert by_id.splitlines()[:3] == ["idnumber,Lesson 99", "s1,11", "s2,6"]
    with pytest.raises(ValueError, match="identifier='username': learner 's1' has no username"):
        lms.moodle_csv(room["rows"], roster, identifier="username")


def test_points_sum_every_row_and_never_use_exponents():
    rows = [
        {"submission": "a", "lesson": "02", "points": 1 / 3, "max_points": 1},
        {"submission": "a", "lesson": "02", "points": 2.5, "max_points": 3},
        {"submission": "a", "lesson": "07", "points": 1234567, "max_points": 2000000},
    ]
    lessons, points, maxima = lms.lesson_totals(rows)
    assert lessons == ["02", "07"] and maxima == {"02": 4.0, "07": 2000000.0}
    assert lms.fmt_points(points[("a", "02")]) == "2.8333" and lms.fmt_points(1234567.0) == "1234567"


def test_cli_export_writes_csv_and_report_and_says_what_did_not_match(room, tmp_path):
    out = tmp_path / "canvas.csv"
    res = subprocess.run(
        [sys.executable, "-m", "fedlab", "gradebook", "export", str(room["gradebook"]), "--format", "canvas"]
        + ["--roster", str(room["roster"]), "--out", str(out), "--assignment-id", "99=777"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == lms.EXIT_UNMATCHED, res.stdout + res.stderr
    assert f"unmatched submission: {SCRIPT_NAME}" in res.stdout
    assert "no submission for learner s3" in res.stdout
    report = (tmp_path / "canvas.csv.report.txt").read_text()
    assert SCRIPT_NAME in report and "ambiguous submission: blank.ipynb" in report
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert rows[0]["Student"] == "Points Possible" and rows[1]["Lesson 99 (777)"] == "11"

    res = subprocess.run(
        [sys.executable, "-m", "fedlab", "gradebook", "export", str(room["gradebook"]), "--format", "moodle"]
        + ["--roster", str(room["roster"]), "--out", str(tmp_path / "m.csv"), "--assignment-id", "x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "--assignment-id='x'" in res.stdout


def test_roster_errors_name_the_line_and_column():
    with pytest.raises(ValueError, match=r"missing column\(s\) \['submission'\]"):
        lms.parse_roster("id,name\n1,a\n")
    with pytest.raises(ValueError, match="line 3 has an empty 'id'"):
        lms.parse_roster("id,submission\n1,a.ipynb\n,b.ipynb\n")
    with pytest.raises(ValueError, match="id '1' appears twice"):
        lms.parse_roster("ID,Submission\n1,a.ipynb\n1,b.ipynb\n")


# ---- Gradescope ----------------------------------------------------------------------------------


def test_results_for_hidden_tests_follow_the_visibility_choice(room):
    rows = [r for r in with_hidden(room["rows"]) if r["submission"] == "partial.ipynb"]
    hidden = lms.gradescope_results(rows)
    jsonschema.validate(hidden, lms.GRADESCOPE_RESULTS_SCHEMA)
    (h,) = [t for t in hidden["tests"] if "hidden" in t["tags"]]
    assert h["visibility"] == "hidden" and HIDDEN_NAME in h["name"]  # staff only: full name and message
    published = lms.gradescope_results(rows, hidden_visibility="after_published")
    jsonschema.validate(published, lms.GRADESCOPE_RESULTS_SCHEMA)
    (p,) = [t for t in published["tests"] if "hidden" in t["tags"]]
    assert p["visibility"] == "after_published" and p["name"] == "99.1 weighted mean: hidden test 1"
    text = json.dumps(published)
    assert HIDDEN_NAME not in text and HIDDEN_MESSAGE not in text
    assert "0 of 1 hidden test passed" in published["output"]


def test_schema_rejects_what_gradescope_does_not_accept():
    ok = {"score": 1, "tests": [{"name": "t", "score": 1, "max_score": 1, "status": "passed"}]}
    jsonschema.validate(ok, lms.GRADESCOPE_RESULTS_SCHEMA)
    for bad in (
        {"tests": [{"name": "t", "max_score": 1}]},  # no score anywhere
        {"score": 1, "tests": [{"score": 1, "visibility": "secret"}]},
        {"score": 1, "tests": [{"score": 1, "status": "ok"}]},
        {"score": "1"},
        {"score": 1, "grade": 1},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, lms.GRADESCOPE_RESULTS_SCHEMA)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "bundle.zip"
    res = subprocess.run(
        [sys.executable, "-m", "fedlab", "gradescope-bundle", "--lesson", "99", "--out", str(out)]
        + ["--reference", str(FIXTURE), "--hidden-visibility", "after_published", "--timeout-per-test", "20"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return out


def test_bundle_has_gradescope_layout(bundle):
    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in zf.infolist()}
        config = json.loads(zf.read("fedlab-gradescope.json"))
        reqs = zf.read("requirements-grader.txt").decode()
    assert {"setup.sh", "run_autograder", "fedlab-gradescope.json", "requirements-grader.txt"} <= names
    assert modes["setup.sh"] == modes["run_autograder"] == 0o755
    assert "course/fedlab/grader.py" in names and "course/fedlab/lms.py" in names
    assert "course/reference/99_demo.ipynb" in names and "course/requirements.lock" in names
    assert any(n.startswith("course/datasets/") for n in names)
    assert not any("__pycache__" in n for n in names)
    assert config["lesson"] == "99" and config["hidden_visibility"] == "after_published"
    lock = open(os.path.join(os.path.dirname(lms.__file__), "..", "requirements.lock")).read()
    torch_pin = next(line for line in lock.splitlines() if line.startswith("torch=="))
    assert torch_pin in reqs.splitlines() and "nbclient==" in reqs


def test_bundle_scripts_are_valid_bash(bundle, tmp_path):
    lms.extract_bundle(bundle, tmp_path)
    for name in ("setup.sh", "run_autograder"):
        res = subprocess.run(["bash", "-n", str(tmp_path / name)], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr


def _run_autograder(bundle, root, submissions: dict):
    lms.extract_bundle(bundle, root / "source")
    # mark the bundle's own copy of fedlab, to prove run_autograder grades with it (not the one installed here)
    fb = root / "source" / "course" / "fedlab" / "feedback.py"
    text = fb.read_text()
    marked = text.replace("    if not sandbox:\n        return SANDBOX_UNKNOWN\n", '    return "BUNDLE-COPY"\n')
    assert marked != text, "the marker no longer fits feedback.sandbox_text"
    fb.write_text(marked)
    (root / "submission").mkdir(parents=True)
    for name, data in submissions.items():
        (root / "submission" / name).write_bytes(data)
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "FEDLAB_PYTHON": sys.executable, "PYTHONPATH": ""}
    res = subprocess.run(
        [str(root / "source" / "run_autograder")], capture_output=True, text=True, timeout=300, env=env, cwd=root
    )
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    return json.loads((root / "results" / "results.json").read_text())


def test_run_autograder_grades_a_submission_and_writes_valid_results(bundle, room, tmp_path):
    data = (room["folder"] / "subs" / "partial.ipynb").read_bytes()
    results = _run_autograder(bundle, tmp_path, {"partial.ipynb": data})
    jsonschema.validate(results, lms.GRADESCOPE_RESULTS_SCHEMA)
    assert results["score"] == 6.0
    assert sum(t["score"] for t in results["tests"]) == 6.0 and sum(t["max_score"] for t in results["tests"]) == 11.0
    by_name = {t["name"]: t for t in results["tests"]}
    assert by_name["99.1 weighted mean: unequal_weights"]["status"] == "failed"
    assert "expected 2.5" in by_name["99.1 weighted mean: unequal_weights"]["output"]
    assert by_name["99.2 clip a vector's norm: random"]["status"] == "passed"
    assert all(t["visibility"] == "visible" for t in results["tests"])  # lesson 99 has no hidden tests
    assert results["output"].startswith("partial.ipynb: 6 of 11 points")
    assert "BUNDLE-COPY" in results["output"]
    assert results["extra_data"]["fedlab"]["sha256"]
    assert (tmp_path / "submission" / "partial.ipynb").read_bytes() == data  # never written


def test_run_autograder_without_a_notebook_says_so(bundle, tmp_path):
    results = _run_autograder(bundle, tmp_path, {"answers.txt": b"42"})
    jsonschema.validate(results, lms.GRADESCOPE_RESULTS_SCHEMA)
    assert results["score"] == 0 and results["tests"][0]["max_score"] == 11.0
    assert "no .ipynb file was submitted" in results["tests"][0]["output"]


def test_a_broken_autograder_still_writes_results_that_say_so(tmp_path):
    config = tmp_path / "fedlab-gradescope.json"
    config.write_text(json.dumps({"lesson": "77", "reference": "none.ipynb"}))
    (tmp_path / "submission").mkdir()
    (tmp_path / "submission" / "a.ipynb").write_text("{}")
    res = subprocess.run(
        [sys.executable, "-m", "fedlab", "gradescope-run", "--root", str(tmp_path), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1 and "lesson='77'" in res.stdout
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    jsonschema.validate(results, lms.GRADESCOPE_RESULTS_SCHEMA)
    assert results["score"] == 0 and "autograder itself failed" in results["output"]


def test_bundle_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="lesson='77'"):
        lms.build_bundle("77", tmp_path / "b.zip")
    with pytest.raises(ValueError, match="hidden_visibility='public'"):
        lms.build_bundle("99", tmp_path / "b.zip", reference=FIXTURE, hidden_visibility="public")
    with pytest.raises(ValueError, match="no student notebook notebooks/99_"):
        lms.build_bundle("99", tmp_path / "b.zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="wheelhouse=.*no .whl files"):
        lms.build_bundle("99", tmp_path / "b.zip", reference=FIXTURE, wheelhouse=tmp_path / "empty")
    assert not (tmp_path / "b.zip").exists()
    shutil.rmtree(tmp_path / "empty")
