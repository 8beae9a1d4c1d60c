"""Learners' feedback reports, built from a real grading of the demo lesson (tests/graded_room.py).

The room is graded once for the module (about 10 s: five submissions, two
kernels). The same rows are also turned into the schema of a grader with hidden
tests and a sandbox column, with one hidden test carrying an instructor-only
name and message that must never reach a report.
"""

import html
import json
import re
import subprocess
import sys
from html.parser import HTMLParser

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedlab import feedback, grader
from tests.graded_room import FIXTURE, HIDDEN_NAME, SCRIPT_NAME, grade_room, with_hidden


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    return grade_room(tmp_path_factory.mktemp("room"))


@pytest.fixture(scope="module")
def hidden_rows(rows):
    return with_hidden(rows)


def rows_of(rows, name):
    return [r for r in rows if r["submission"] == name]


class _Page(HTMLParser):
    """Collects tags, attributes and visible text of a page."""

    def __init__(self):
        super().__init__()
        self.tags, self.text, self.attrs = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> _Page:
    p = _Page()
    p.feed(page)
    return p


def test_report_of_a_partial_submission_has_every_visible_test_and_the_total(rows):
    report = feedback.learner_report(rows_of(rows, "partial.ipynb"))
    assert report.submission == "partial.ipynb" and report.lesson == "99"
    assert (report.points, report.max_points) == (6.0, 11.0)  # 99.1: 2/5, 99.2: 4/4, 99.3: 0/2
    assert report.sandbox in {"none", "bwrap"} and report.problem is None  # the grader records it
    ex = {e.exercise: e for e in report.exercises}
    assert {t.name: t.passed for t in ex["99.1"].tests} == {
        "equal_weights": True,
        "unequal_weights": False,
        "numpy_inputs": False,
        "scale_free": True,
    }
    assert ex["99.1"].hidden_total == 0 and feedback.hidden_text(ex["99.1"]) == ""
    md = feedback.markdown(report)
    assert "**6 of 11 points**" in md and "expected 2.5, got 2.0" in md
    assert grader.STATUSES["partial"] in md and grader.STATUSES["not_attempted"] in md
    assert feedback.sandbox_text(report.sandbox) in md


def test_hidden_tests_are_counts_only_never_names_or_messages(hidden_rows):
    for name in ("partial.ipynb", "correct.ipynb"):
        report = feedback.learner_report(rows_of(hidden_rows, name))
        ex = {e.exercise: e for e in report.exercises}["99.1"]
        assert HIDDEN_NAME not in [t.name for t in ex.tests] and len(ex.tests) == 3
        for text in (feedback.markdown(report), feedback.html_page(report)):
            assert HIDDEN_NAME not in text and "INSTRUCTOR-ONLY" not in text and "0.8125" not in text
            assert "numpy_inputs" not in text
    partial = feedback.learner_report(rows_of(hidden_rows, "partial.ipynb"))
    ex = {e.exercise: e for e in partial.exercises}["99.1"]
    assert feedback.hidden_text(ex) == "0 of 1 hidden test passed (0 of 1 points)"
    assert ex.message == ""  # the row's message repeated the hidden test's message: left out
    correct = {e.exercise: e for e in feedback.learner_report(rows_of(hidden_rows, "correct.ipynb")).exercises}
    assert feedback.hidden_text(correct["99.1"]) == "1 of 1 hidden test passed (1 of 1 points)"
    assert feedback.SANDBOX_TEXT["bwrap"] in feedback.markdown(partial)


def test_a_row_message_that_names_a_hidden_test_is_dropped_others_kept():
    row = {
        "submission": "a.ipynb",
        "exercise": "02.1",
        "status": "partial",
        "message": "cell 3 raised NameError: x",
        "tests": [{"name": "secret_case", "status": "failed", "points": 0, "max_points": 1, "hidden": True}],
    }
    assert feedback.exercise_feedback(row).message == "cell 3 raised NameError: x"
    row["message"] = "Exercise 02.1, test secret_case: did not finish in 30 s"
    assert feedback.exercise_feedback(row).message == ""


def test_html_escapes_learner_controlled_text(hidden_rows):
    rows = [dict(r) for r in rows_of(hidden_rows, SCRIPT_NAME)]
    evil = '<img src=x onerror="alert(1)"><b>bold</b> & <!-- comment -->'
    rows[0] = {**rows[0], "message": evil, "tests": [dict(t, message=evil) for t in rows[0]["tests"]]}
    page = feedback.html_page(feedback.learner_report(rows))
    parsed = parse(page)
    assert "script" not in parsed.tags and "img" not in parsed.tags and "b" not in parsed.tags
    assert not any(k.startswith("on") for k, _ in parsed.attrs)
    text = "".join(parsed.text)
    assert SCRIPT_NAME in text and evil in text  # shown literally
    assert html.escape(SCRIPT_NAME) in page
    assert "default-src 'none'" in page and "http://" not in page and "https://" not in page


def test_markdown_shows_learner_text_literally(hidden_rows):
    rows = [dict(r) for r in rows_of(hidden_rows, SCRIPT_NAME)]
    rows[0] = {**rows[0], "message": "```\n<script>x</script>\n````"}
    md = feedback.markdown(feedback.learner_report(rows))
    assert "# Feedback: \\<script\\>alert('x')\\<.ipynb" in md
    fence = re.search(r"^(`{5,})text\n```\n<script>x</script>\n````\n\1$", md, re.M)
    assert fence, md  # a fence longer than any backtick run in the message


def test_submission_level_problem_is_explained(rows):
    report = feedback.learner_report(rows_of(rows, "empty.ipynb"))
    assert report.problem == ("unreadable", "the file is empty") and report.exercises == ()
    assert report.max_points == 11.0
    for text in (feedback.markdown(report), feedback.html_page(report)):
        assert "could not be graded" in text and html.escape(grader.STATUSES["unreadable"]) in text


def test_flags_are_explained_in_plain_words():
    row = {
        "submission": "a.ipynb",
        "lesson": "99",
        "exercise": "99.1",
        "title": "weighted mean",
        "points": 5,
        "max_points": 5,
        "status": "ok",
        "flags": "checks_tampered;brand_new_flag",
        "message": "check cell edited",
        "tests": [{"name": "t", "status": "passed", "points": 5, "max_points": 5, "message": ""}],
    }
    md = feedback.markdown(feedback.learner_report([row]))
    assert grader.FLAGS["checks_tampered"] in md and "brand\\_new\\_flag" in md


@given(
    st.from_regex(r"hid_[a-z]{4,10}", fullmatch=True),
    st.text(min_size=0, max_size=80),
    st.sampled_from(["passed", "failed", "timeout", "error"]),
)
def test_no_hidden_name_or_message_reaches_any_report(name, message, status):
    secret = f"SECRET {message}"
    row = {
        "submission": "a.ipynb",
        "lesson": "02",
        "exercise": "02.1",
        "title": "t",
        "points": 1,
        "max_points": 3,
        "status": "partial",
        "flags": "",
        "message": f"Exercise 02.1, test {name}: {secret}",
        "tests": [
            {"name": "shown", "status": "passed", "points": 1, "max_points": 1, "message": "", "hidden": False},
            {"name": name, "status": status, "points": 0, "max_points": 2, "message": secret, "hidden": True},
        ],
    }
    report = feedback.learner_report([row])
    for text in (feedback.markdown(report), feedback.html_page(report)):
        assert name not in text and "SECRET" not in text
        assert "1 hidden test passed" in text or "0 of 1 hidden test" in text


@given(st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=12))
def test_file_names_are_safe_and_unique(names):
    taken: set[str] = set()
    stems = [feedback.safe_stem(n, taken) for n in names]
    assert len({s.lower() for s in stems}) == len(stems)
    for s in stems:
        assert re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", s), s
        assert s not in (".", "..") and "/" not in s and s.lower() != "index"


def test_write_reports_one_pair_per_submission_inside_the_folder(hidden_rows, tmp_path):
    rows = hidden_rows + [dict(r, submission="../../etc/partial.ipynb") for r in rows_of(hidden_rows, "partial.ipynb")]
    written = feedback.write_reports(rows, tmp_path / "fb")
    assert len(written) == 6
    files = sorted(p.name for p in (tmp_path / "fb").iterdir())
    assert len(files) == 2 * 6 + 1 and "index.csv" in files
    assert {p.parent for pair in written.values() for p in pair} == {tmp_path / "fb"}
    assert written["partial.ipynb"][0].name == "partial.html"
    assert written["../../etc/partial.ipynb"][0].name == "etc_partial.html"
    other = written["correct.ipynb"][0].read_text()
    assert "partial.ipynb" not in other and "blank.ipynb" not in other  # no other learner


def test_cli_feedback_from_a_saved_gradebook_and_grade_feedback_hook(hidden_rows, tmp_path):
    gradebook = tmp_path / "grades.json"
    gradebook.write_text(grader.json_text(hidden_rows))
    res = subprocess.run(
        [sys.executable, "-m", "fedlab", "feedback", str(gradebook), "--out", str(tmp_path / "fb")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "wrote 5 feedback report(s)" in res.stdout
    assert (tmp_path / "fb" / "partial.html").is_file() and (tmp_path / "fb" / "partial.md").is_file()

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    res = subprocess.run(
        [sys.executable, "-m", "fedlab", "feedback", str(bad), "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "not a JSON gradebook" in res.stdout


def test_grade_feedback_option_writes_reports(tmp_path):
    sub = tmp_path / "room" / "correct.ipynb"
    sub.parent.mkdir()
    from fedlab import course
    from tests.graded_room import _solved

    sub.write_bytes(course.notebook_bytes(_solved()))
    res = subprocess.run(
        [sys.executable, "-m", "fedlab", "grade", str(sub), "--lesson", "99", "--reference", str(FIXTURE)]
        + ["--quiet", "--json", str(tmp_path / "g.json"), "--feedback", str(tmp_path / "fb")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "wrote 1 feedback report(s)" in res.stdout
    page = (tmp_path / "fb" / "correct.html").read_text()
    assert "11 of 11 points" in page
    assert json.loads((tmp_path / "g.json").read_text())[0]["submission"] == "correct.ipynb"


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="rows: all rows of a report must have one submission"):
        feedback.learner_report([{"submission": "a"}, {"submission": "b"}])
    with pytest.raises(ValueError, match="gradebook=.*no such file"):
        feedback.read_gradebook(tmp_path / "nope.json")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="out_dir=.*not a folder"):
        feedback.write_reports([], tmp_path / "f")
