"""The grader on the demo lesson 99: explicit statuses for every kind of submission, nothing lost or changed.

One room of prepared submissions (made from tests/fixtures/99_demo.ipynb with
small edits) is graded once through the command line with two workers; the
tests then read its gradebook. Timeouts are small (4 s per test, 8 s per cell).
"""

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fedlab import checks, course, grader, sandbox

FIXTURE = Path(__file__).parent / "fixtures" / "99_demo.ipynb"
PER_TEST, PER_CELL = 4.0, 8.0
POINTS = {ex.id: ex.points for ex in checks.lesson_exercises("99")}


def source():
    return course.read_notebook(FIXTURE)


def solved(ids="all"):
    return course.student_notebook(source(), solved=ids)


def exercise_cell(nb, ex_id):
    return next(c for c in nb.cells if ex_id in course.cell_exercises(c))


def check_cell_index(nb, ex_id):
    return next(i for i, c in enumerate(nb.cells) if course.cell_check(c) == ex_id)


def replace_in(nb, ex_id, old, new):
    cell = exercise_cell(nb, ex_id)
    assert old in cell.source, (old, cell.source)
    cell.source = cell.source.replace(old, new)
    return nb


def as_bytes(nb):
    return course.notebook_bytes(nb)


def make_room():
    """{file name: bytes} of the prepared submissions."""
    room = {"correct.ipynb": as_bytes(solved()), "blank.ipynb": course.student_bytes(FIXTURE)}

    # partially right: a plain mean (passes equal weights and scale-free, fails the rest); 99.2 right; 99.3 blank
    nb = solved(["99.1", "99.2"])
    room["partial.ipynb"] = as_bytes(
        replace_in(
            nb, "99.1", "return float(np.sum(values * weights) / np.sum(weights))", "return float(np.mean(values))"
        )
    )
    room["partial_again.ipynb"] = room["partial.ipynb"]  # same bytes, other name: same grades (determinism)

    # an infinite loop at the top level of an exercise cell, after the definitions
    nb = solved()
    exercise_cell(nb, "99.2").source += "\n\nwhile True:\n    pass\n"
    room["loop_in_cell.ipynb"] = as_bytes(nb)

    # an infinite loop inside an answer: every test of 99.3 times out
    room["loop_in_answer.ipynb"] = as_bytes(
        replace_in(solved(), "99.3", "    return int(sum(", "    while True:\n        pass\n    return int(sum(")
    )

    # exceptions at top level: before 99.1's def (so it is never defined), after 99.2/99.3's defs
    nb = solved()
    replace_in(nb, "99.1", "def weighted_mean", "values = undefined_variable\n\n\ndef weighted_mean")
    exercise_cell(nb, "99.2").source += '\n\nraise RuntimeError("oops after the definitions")\n'
    room["exception.ipynb"] = as_bytes(nb)

    # the kernel dies in one test of 99.2 (os._exit), and an interrupt-proof loop in one test of 99.3
    nb = solved()
    replace_in(
        nb,
        "99.2",
        "    v = np.asarray(v, dtype=float)\n",
        "    v = np.asarray(v, dtype=float)\n"
        "    if v.size == 3 and not v.any():\n        import os\n        os._exit(3)\n",
    )
    replace_in(
        nb,
        "99.3",
        "    return int(sum(",
        "    if () in list(shapes):\n        import time\n"
        "        while True:\n            try:\n                time.sleep(0.1)\n"
        "            except KeyboardInterrupt:\n                pass\n    return int(sum(",
    )
    room["kernel_trouble.ipynb"] = as_bytes(nb)

    # every answer kills the kernel: after a few restarts the grader stops, and says so
    nb = solved()
    for ex_id, first in (
        ("99.1", "    values = np.asarray"),
        ("99.2", "    v = np.asarray"),
        ("99.3", "    return int(sum("),
    ):
        replace_in(nb, ex_id, first, "    __import__('os')._exit(1)\n" + first)
    room["always_dies.ipynb"] = as_bytes(nb)

    # an experiment cell the learner added: its def is used by the answer, its top-level loop must not run
    nb = solved(["99.1", "99.3"])
    replace_in(
        nb,
        "99.2",
        '    raise NotImplementedError("Exercise 99.2: write your code here, then run the check cell below")',
        "    return scale_to(np.asarray(v, dtype=float), max_norm)",
    )
    from nbformat import v4

    nb.cells.insert(
        2,
        v4.new_code_cell(
            "import numpy as np\n\n\ndef scale_to(v, c):\n    n = np.linalg.norm(v)\n    return v if n <= c else v * (c / n)\n\n\n"
            "while True:  # a long experiment\n    pass\n"
        ),
    )
    nb.cells[2]["id"] = "learner-added"
    room["experiment.ipynb"] = as_bytes(nb)

    # tampered checks: 99.1's check cell edited, 99.3's deleted
    nb = solved()
    nb.cells[check_cell_index(nb, "99.1")].source = 'check("99.1", lambda values, weights: 2.0)'
    del nb.cells[check_cell_index(nb, "99.3")]
    room["tampered.ipynb"] = as_bytes(nb)

    # no lesson metadata: inferred from the check cells
    nb = solved()
    del nb.metadata["fedlab"]
    room["no_metadata.ipynb"] = as_bytes(nb)

    # submission-level problems
    nb = solved()
    nb.metadata["fedlab"]["lesson"] = "01"
    room["wrong_lesson.ipynb"] = as_bytes(nb)
    good = as_bytes(solved())
    room["bad_json.ipynb"] = good[: len(good) // 2]
    room["not_a_notebook.ipynb"] = b'{"hello": "world"}\n'
    room["empty.ipynb"] = b""
    return room


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    folder = tmp_path_factory.mktemp("room")
    for name, data in make_room().items():
        (folder / name).write_bytes(data)
    before = {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in folder.iterdir()}
    out = tmp_path_factory.mktemp("grades")
    cmd = [
        sys.executable,
        "-m",
        "fedlab",
        "grade",
        *sorted(str(p) for p in folder.iterdir()),
        str(folder / "missing.ipynb"),
        "--lesson",
        "99",
        "--reference",
        str(FIXTURE),
        "--workers",
        "2",
        "--timeout-per-test",
        str(PER_TEST),
        "--timeout-per-cell",
        str(PER_CELL),
        "--out",
        str(out / "grades.csv"),
        "--json",
        str(out / "grades.json"),
    ]
    env = {**os.environ, "FEDLAB_GRADER_TRACE": "1"}  # kernel starts, timeouts, restarts: on stderr
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    except subprocess.TimeoutExpired as err:
        trace = err.stderr.decode() if isinstance(err.stderr, bytes) else (err.stderr or "")
        pytest.fail(f"grading the room took over 300 s; the grader's trace ends:\n{trace[-4000:]}")
    after = {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in folder.iterdir()}
    rows = json.loads((out / "grades.json").read_text())
    with open(out / "grades.csv", newline="") as fh:
        csv_rows = list(csv.DictReader(fh))
    return {"res": res, "rows": rows, "csv": csv_rows, "before": before, "after": after, "folder": folder}


def rows_of(room, name):
    return {r["exercise"]: r for r in room["rows"] if r["submission"] == name}


def test_cli_succeeds_and_prints_a_summary(room):
    res = room["res"]
    assert res.returncode == 0, res.stdout + res.stderr
    print(res.stderr[-3000:])  # the grader's trace, shown with -rP or on failure
    assert "statuses:" in res.stdout and "graded 17 submission(s)" in res.stdout
    assert "inputs salt " in res.stdout  # the run's fresh inputs can be reproduced with --salt


def test_submissions_are_never_modified_moved_or_added_to(room):
    assert room["before"] == room["after"]


def test_every_submission_gets_rows_csv_and_json_agree(room):
    gradable = {
        "always_dies",
        "correct",
        "blank",
        "partial",
        "partial_again",
        "loop_in_cell",
        "loop_in_answer",
        "exception",
        "kernel_trouble",
        "experiment",
        "tampered",
        "no_metadata",
    }
    problems = {"wrong_lesson", "bad_json", "not_a_notebook", "empty", "missing"}
    names = [r["submission"] for r in room["rows"]]
    for stem in gradable:
        rows = [r for r in room["rows"] if r["submission"] == f"{stem}.ipynb"]
        assert [r["exercise"] for r in rows] == ["99.1", "99.2", "99.3"], rows
    for stem in problems:
        assert names.count(f"{stem}.ipynb") == 1
    assert len(room["rows"]) == 3 * len(gradable) + len(problems)
    assert list(room["csv"][0]) == list(grader.COLUMNS)
    assert [(r["submission"], r["exercise"], r["status"]) for r in room["csv"]] == [
        (r["submission"], r["exercise"], r["status"]) for r in room["rows"]
    ]


def test_correct_gets_full_points(room):
    rows = rows_of(room, "correct.ipynb")
    assert {e: r["status"] for e, r in rows.items()} == {"99.1": "ok", "99.2": "ok", "99.3": "ok"}, rows
    assert all(r["points"] == r["max_points"] == POINTS[e] and r["flags"] == "" for e, r in rows.items()), rows
    assert rows["99.1"]["tests_passed"] == rows["99.1"]["tests_total"] == 4


def test_blank_is_not_attempted(room):
    rows = rows_of(room, "blank.ipynb")
    assert all(r["status"] == "not_attempted" and r["points"] == 0 for r in rows.values()), rows
    assert "NotImplementedError" in rows["99.1"]["message"]


def test_partial_runs_all_tests_including_those_the_check_cell_skips(room):
    rows = rows_of(room, "partial.ipynb")
    assert rows["99.1"]["status"] == "partial"
    tests = {t["name"]: t["status"] for t in rows["99.1"]["tests"]}
    assert tests == {
        "equal_weights": "passed",
        "unequal_weights": "failed",
        "numpy_inputs": "failed",
        "scale_free": "passed",
    }
    assert rows["99.1"]["points"] == 2.0 and "expected 2.5" in rows["99.1"]["message"]
    assert rows["99.2"]["status"] == "ok" and rows["99.3"]["status"] == "not_attempted"


def test_grades_are_deterministic(room):
    def strip(rows):
        return {e: {k: v for k, v in r.items() if k != "submission"} for e, r in rows.items()}

    assert strip(rows_of(room, "partial.ipynb")) == strip(rows_of(room, "partial_again.ipynb"))


def test_infinite_loop_in_a_cell_is_stopped_and_the_answers_still_graded(room):
    rows = rows_of(room, "loop_in_cell.ipynb")
    assert all(r["status"] == "ok" for r in rows.values())
    assert "cell_timeout" in rows["99.2"]["flags"] and "cell_timeout" in rows["99.3"]["flags"]
    assert rows["99.1"]["flags"] == ""
    assert "did not finish" in rows["99.2"]["message"]


def test_infinite_loop_in_an_answer_times_out_each_test(room):
    rows = rows_of(room, "loop_in_answer.ipynb")
    assert rows["99.3"]["status"] == "timeout" and rows["99.3"]["points"] == 0
    assert [t["status"] for t in rows["99.3"]["tests"]] == ["timeout", "timeout"]
    assert rows["99.1"]["status"] == rows["99.2"]["status"] == "ok"


def test_top_level_exceptions_are_reported_and_grading_goes_on(room):
    rows = rows_of(room, "exception.ipynb")
    assert rows["99.1"]["status"] == "missing_answer"
    assert "NameError" in rows["99.1"]["message"] and "cell_error" in rows["99.1"]["flags"]
    assert rows["99.2"]["status"] == "ok" and "RuntimeError: oops" in rows["99.2"]["message"]
    assert "cell_error" in rows["99.3"]["flags"]


def test_dead_and_stubborn_kernels_are_restarted(room):
    rows = rows_of(room, "kernel_trouble.ipynb")
    assert rows["99.1"]["status"] == "ok" and rows["99.1"]["flags"] == ""
    t2 = {t["name"]: t["status"] for t in rows["99.2"]["tests"]}
    assert t2 == {"short_unchanged": "passed", "long_scaled": "passed", "zero_vector": "error", "random": "passed"}
    assert rows["99.2"]["status"] == "partial" and "kernel_restarted" in rows["99.2"]["flags"]
    t3 = {t["name"]: t["status"] for t in rows["99.3"]["tests"]}
    assert t3 == {"mlp": "passed", "scalar_and_empty": "timeout"}
    assert "timeout" in rows["99.3"]["flags"].split(";")


def test_grading_stops_after_too_many_kernel_deaths_and_says_so(room):
    rows = rows_of(room, "always_dies.ipynb")
    assert [r["status"] for r in rows.values()] == ["error", "error", "error"]
    assert "the kernel died" in rows["99.1"]["message"] and "kernel_restarted" in rows["99.1"]["flags"]
    assert "grading stopped" in rows["99.3"]["message"]


def test_experiments_are_not_rerun_but_their_definitions_are(room):
    rows = rows_of(room, "experiment.ipynb")
    assert all(r["status"] == "ok" and r["flags"] == "" for r in rows.values()), rows


def test_tampered_check_cells_are_flagged_never_silent(room):
    rows = rows_of(room, "tampered.ipynb")
    assert all(r["status"] == "ok" for r in rows.values())
    assert "checks_tampered" in rows["99.1"]["flags"] and "edited" in rows["99.1"]["message"]
    assert "checks_tampered" in rows["99.3"]["flags"] and "deleted" in rows["99.3"]["message"]
    assert rows["99.2"]["flags"] == ""


def test_lesson_inferred_from_check_cells_when_metadata_is_missing(room):
    rows = rows_of(room, "no_metadata.ipynb")
    assert all(r["status"] == "ok" for r in rows.values())


@pytest.mark.parametrize(
    "name, status, words",
    [
        ("wrong_lesson.ipynb", "wrong_lesson", "lesson 01"),
        ("bad_json.ipynb", "unreadable", "not valid JSON"),
        ("not_a_notebook.ipynb", "unreadable", "not a Jupyter notebook"),
        ("empty.ipynb", "unreadable", "empty"),
        ("missing.ipynb", "unreadable", "cannot read"),
    ],
)
def test_submission_level_problems_get_one_explicit_row(room, name, status, words):
    (row,) = [r for r in room["rows"] if r["submission"] == name]
    assert row["status"] == status and words in row["message"]
    assert row["exercise"] == "" and row["points"] == 0 and row["max_points"] == sum(POINTS.values())


def test_budget_exceeded_for_what_the_budget_leaves_unrun(tmp_path):
    path = tmp_path / "loop_in_answer.ipynb"
    path.write_bytes(make_room()["loop_in_answer.ipynb"])
    limits = grader.Limits(timeout_per_test=60, timeout_per_cell=10, budget_per_submission=8)
    rows = {r["exercise"]: r for r in grader.grade([path], lesson="99", reference=FIXTURE, workers=1, limits=limits)}
    assert rows["99.1"]["status"] == rows["99.2"]["status"] == "ok"
    assert rows["99.3"]["status"] == "budget_exceeded"
    assert [t["status"] for t in rows["99.3"]["tests"]] == ["budget_exceeded", "budget_exceeded"]


# ---- no kernel -------------------------------------------------------------------------------


def test_plan_keeps_setup_exercise_cells_and_only_definitions_elsewhere():
    nb = solved()
    steps = grader.plan(nb)
    kinds = [s.kind for s in steps]
    assert kinds == ["setup", "exercise", "exercise", "definitions"]
    experiment = steps[-1].code
    assert "def describe" in experiment and "import math" in experiment and "print(" not in experiment


def test_definitions_only_handles_magics_and_broken_cells():
    assert (
        grader.definitions_only("%matplotlib inline\nimport os\nx = f(1)\nLRS = (0.1, -2)\n")
        == "import os\nLRS = (0.1, -2)"
    )
    assert grader.definitions_only("def f(:\n") == ""
    src = "@staticmethod\ndef f():\n    return 1\nf()\nclass A:\n    pass\n"
    assert grader.definitions_only(src) == "@staticmethod\ndef f():\n    return 1\n\nclass A:\n    pass"


@pytest.mark.parametrize(
    "data, words",
    [(b"\xff\xfe", "UTF-8"), (b"[1, 2]", "not a Jupyter notebook"), (b"{", "not valid JSON"), (b"  ", "empty")],
)
def test_parse_notebook_says_why_it_is_unreadable(data, words):
    with pytest.raises(grader.Unreadable, match=words):
        grader.parse_notebook(data)


def test_reference_checks_from_a_notebook_or_the_convention():
    ref, where = grader.reference_checks("99", FIXTURE)
    assert ref == {
        "99.1": 'check("99.1", weighted_mean)',
        "99.2": 'check("99.2", clip_norm)',
        "99.3": 'check("99.3", count_parameters)',
    }
    assert where == str(FIXTURE)
    conv, _ = grader.reference_checks("99")
    assert conv == ref


def test_display_names_disambiguate_equal_file_names(tmp_path):
    a, b = tmp_path / "alice" / "02.ipynb", tmp_path / "bob" / "02.ipynb"
    assert grader.display_names([a, b]) == ["alice/02.ipynb", "bob/02.ipynb"]
    assert grader.display_names([a, tmp_path / "x.ipynb"]) == ["02.ipynb", "x.ipynb"]


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="timeout_per_test=0"):
        grader.Limits(timeout_per_test=0)
    with pytest.raises(ValueError, match="lesson='77'"):
        grader.grade([], lesson="77")
    with pytest.raises(ValueError, match="workers=0"):
        grader.grade([], workers=0)


def test_exercise_status_rules():
    def r(*states):
        return grader._exercise_status([grader.TestResult("t", s, 0, 1) for s in states])

    assert r("passed", "passed") == "ok"
    assert r("passed", "timeout") == "partial"
    assert r("not_implemented", "not_implemented") == "not_attempted"
    assert r("failed", "timeout") == "timeout"
    assert r("failed", "not_implemented") == "failed"
    assert r("missing_answer") == "missing_answer"
    assert r("budget_exceeded", "failed") == "budget_exceeded"
    assert set(grader.STATUSES) >= {
        "ok",
        "partial",
        "failed",
        "not_attempted",
        "missing_answer",
        "timeout",
        "budget_exceeded",
        "error",
        "unreadable",
        "wrong_lesson",
        "unknown_lesson",
    }


# ---- issue 17: the verdict outside the kernel, fresh inputs, hidden tests ---------------------------


def test_infinite_loop_costs_one_timeout_per_exercise_flagged_and_starred(room):
    rows = rows_of(room, "loop_in_answer.ipynb")
    first, second = rows["99.3"]["tests"]
    assert first["status"] == second["status"] == "timeout"
    assert "not run" in second["message"] and first["name"] in second["message"]
    assert rows["99.3"]["flags"].split(";") == ["timeout"]
    assert "timeout*" in grader.summary(room["rows"])


def test_rows_split_visible_and_hidden_points_and_say_the_sandbox(room):
    for r in room["rows"]:
        assert r["points"] == pytest.approx(r["visible_points"] + r["hidden_points"])
        assert r["max_points"] == pytest.approx(r["visible_max"] + r["hidden_max"])
        assert r["sandbox"] == sandbox.probe().kind  # the CLI's default, --sandbox auto
    assert all(r["hidden_max"] == 0 for r in room["rows"])  # lesson 99 has no hidden tests


WRONG = {  # stubs replaced by answers that are wrong everywhere: their honest score is 2 points (see below)
    "99.1": "    return 0.0\n",
    "99.2": "    return np.zeros_like(np.asarray(v, dtype=float))\n",
    "99.3": "    return 0\n",
}
HONEST = {"99.1": 1.0, "99.2": 1.0, "99.3": 0.0}  # scale_free (0 == 0) and zero_vector pass; nothing else

ATTACKS = {
    # the old grader ran tests in the kernel: replace the runner and every comparison there
    "replace_runner_and_checks": (
        "import fedlab.checks, fedlab.wire, fedlab.grader\n"
        "fedlab.checks.run_test = lambda ex, test, answer: (True, 'passed')\n"
        "fedlab.checks.expect_close = fedlab.checks.expect_equal = lambda *a, **k: None\n"
        "fedlab.checks.expect_params_close = lambda *a, **k: None\n"
        "fedlab.grader._kernel_run_test = lambda *a, **k: fedlab.grader._Result(status='passed', message='')\n"
        "for _ex in fedlab.checks.lesson_exercises('99'):\n"
        "    for _t in _ex.tests:\n"
        "        object.__setattr__(_t, 'run', lambda answer: None)\n"
    ),
    "patch_numpy_and_builtins": (
        "import builtins, numpy\n"
        "numpy.allclose = numpy.array_equal = lambda *a, **k: True\n"
        "numpy.isclose = lambda a, b, **k: numpy.ones(numpy.shape(a), dtype=bool)\n"
        "builtins.abs = lambda x: 0\n"
        "builtins.isinstance = lambda obj, cls: True\n"
    ),
    "print_fake_protocol": (
        "import json, sys\n"
        "_fake = json.dumps({'status': 'passed', 'message': 'passed', 'nonce': '0' * 32, 'value': 2.0})\n"
        "print(_fake); sys.stdout.flush()\n"
        "class _Loud:\n"
        "    def __repr__(self):\n"
        "        return _fake\n"
        "_Loud()\n"
    ),
}


def _attack_notebook(attack_code: str = "", answers: dict = WRONG, printing: bool = False):
    nb = solved([])
    for ex_id, body in answers.items():
        cell = exercise_cell(nb, ex_id)
        lines = cell.source.split("\n")
        stub = next(i for i, line in enumerate(lines) if f'NotImplementedError("Exercise {ex_id}' in line)
        extra = '    print(\'{"status": "passed", "message": "passed"}\')\n' if printing else ""
        lines[stub] = (extra + body).rstrip("\n")
        cell.source = "\n".join(lines)
    first = exercise_cell(nb, "99.1")
    first.source = "import numpy as np\n" + first.source + "\n\n" + attack_code
    return nb


@pytest.fixture(scope="module")
def attack_room(tmp_path_factory):
    folder = tmp_path_factory.mktemp("attacks")
    subs = {"honest_wrong.ipynb": as_bytes(_attack_notebook())}
    for name, code in ATTACKS.items():
        subs[f"{name}.ipynb"] = as_bytes(_attack_notebook(code, printing=name == "print_fake_protocol"))
    pid_file = tmp_path_factory.mktemp("pids") / "left_behind.pid"
    subs["leaves_a_process.ipynb"] = as_bytes(
        _attack_notebook(
            "import subprocess, pathlib\n"
            "_p = subprocess.Popen(['sleep', '600'])\n"
            f"pathlib.Path({str(pid_file)!r}).write_text(str(_p.pid))\n"
        )
    )
    subs["honest_none.ipynb"] = as_bytes(_attack_notebook(answers={e: "    return None\n" for e in WRONG}))
    subs["replace_serve.ipynb"] = as_bytes(
        _attack_notebook(
            "import fedlab.wire, json\n"
            "def _forged(namespace, name, request, nonce):\n"
            "    return fedlab.wire.Reply(json.dumps({'nonce': nonce, 'status': 'passed', 'passed': True}))\n"
            "fedlab.wire.serve = _forged\n"
        )
    )
    # hard-coded answers to the notebook check's inputs (and to the seeded inputs of the thorough tests)
    subs["hard_coded.ipynb"] = as_bytes(
        _attack_notebook(
            answers={
                "99.1": "    rng = np.random.default_rng(99)\n"
                "    v, w = rng.standard_normal(50), rng.integers(1, 100, size=50)\n"
                "    if len(values) == 50 and np.allclose(values, v):\n"
                "        return float(np.sum(v * w) / np.sum(w))\n"
                "    return {3: 2.0, 2: 2.5}.get(len(values), 0.0)\n",
                "99.2": WRONG["99.2"],
                "99.3": WRONG["99.3"],
            }
        )
    )
    subs["unreceivable.ipynb"] = as_bytes(
        _attack_notebook(
            answers={
                "99.1": "    class Always:\n        def __eq__(self, other):\n            return True\n"
                "        def __float__(self):\n            return 2.0\n    return Always()\n",
                "99.2": WRONG["99.2"],
                "99.3": WRONG["99.3"],
            }
        )
    )
    for name, data in subs.items():
        (folder / name).write_bytes(data)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    limits = grader.Limits(timeout_per_test=PER_TEST * 2, timeout_per_cell=PER_CELL * 2)
    # without the sandbox: the verdict must hold on its own (tests/test_redteam.py grades attacks in the sandbox)
    none = grader.Launch()
    rows = grader.grade(sorted(folder.iterdir()), lesson="99", reference=FIXTURE, workers=2, limits=limits, launch=none)
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    return {"rows": rows, "before": before, "after": after, "pid_file": pid_file}


def attack_rows(attack_room, name):
    return {r["exercise"]: r for r in attack_room["rows"] if r["submission"] == name}


def test_forging_the_kernels_replies_earns_only_what_returning_none_earns(attack_room):
    """The kernel-side server replaced by one that answers every call 'passed' (with the call's own nonce)."""
    rows = attack_rows(attack_room, "replace_serve.ipynb")
    honest = attack_rows(attack_room, "honest_none.ipynb")
    assert [t["status"] for r in rows.values() for t in r["tests"]] == [
        t["status"] for r in honest.values() for t in r["tests"]
    ]
    assert {e: r["points"] for e, r in rows.items()} == {"99.1": 1.0, "99.2": 0.0, "99.3": 0.0}  # scale_free


def test_an_honest_wrong_submission_scores_what_its_answers_earn(attack_room):
    rows = attack_rows(attack_room, "honest_wrong.ipynb")
    assert {e: r["points"] for e, r in rows.items()} == HONEST, rows
    assert attack_room["before"] == attack_room["after"]


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attacks_from_inside_the_kernel_earn_only_the_honest_score(attack_room, attack):
    rows = attack_rows(attack_room, f"{attack}.ipynb")
    assert {e: r["points"] for e, r in rows.items()} == HONEST, rows
    honest = attack_rows(attack_room, "honest_wrong.ipynb")
    assert [t["status"] for r in rows.values() for t in r["tests"]] == [
        t["status"] for r in honest.values() for t in r["tests"]
    ]


def test_no_process_of_a_submission_outlives_it(attack_room):
    pid = int(attack_room["pid_file"].read_text())
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return  # killed and reaped
    assert stat[stat.rindex(")") + 2] in "ZX", f"process {pid} of a graded submission still runs: {stat}"
    assert {e: r["points"] for e, r in attack_rows(attack_room, "leaves_a_process.ipynb").items()} == HONEST


def test_hard_coding_the_notebooks_inputs_fails_on_fresh_inputs(attack_room):
    rows = attack_rows(attack_room, "hard_coded.ipynb")
    tests = {t["name"]: t["status"] for t in rows["99.1"]["tests"]}
    assert tests["equal_weights"] == tests["unequal_weights"] == "passed"  # known constants: honest points
    assert tests["numpy_inputs"] == "failed"  # its seed-99 inputs are redrawn from the run's salt


def test_a_value_that_cannot_cross_fails_its_tests_clearly(attack_room):
    rows = attack_rows(attack_room, "unreceivable.ipynb")
    assert rows["99.1"]["points"] == 0 and rows["99.1"]["status"] == "failed"
    assert "cannot receive" in rows["99.1"]["message"] and "Always" in rows["99.1"]["message"]


def test_fresh_inputs_are_the_notebooks_by_default_and_salted_in_the_grader():
    import numpy as np

    assert np.array_equal(checks.test_rng(99).random(3), np.random.default_rng(99).random(3))
    with checks.fresh_inputs(1234):
        a = checks.test_rng(99).random(3)
        assert np.array_equal(a, checks.test_rng(99).random(3))  # same run, same inputs: fair and deterministic
    with checks.fresh_inputs(1235):
        b = checks.test_rng(99).random(3)
    assert not np.array_equal(a, b) and not np.array_equal(a, np.random.default_rng(99).random(3))
    assert np.array_equal(checks.test_rng(99).random(3), np.random.default_rng(99).random(3))
    with pytest.raises(ValueError, match="salt=-1"):
        with checks.fresh_inputs(-1):
            pass


def test_nothing_of_the_run_is_in_the_kernels_environment(tmp_path, monkeypatch):
    env = grader.kernel_env()
    assert not any("grades" in v or "hidden" in k.lower() for k, v in env.items())
    assert grader.kernel_env(grader.Launch(env=(("X_SANDBOX", "1"),)))["X_SANDBOX"] == "1"


def test_snapshot_reads_and_hashes_every_file_first(tmp_path):
    a = tmp_path / "a.ipynb"
    a.write_bytes(b"abc")
    private = tmp_path / "private"
    private.mkdir()
    (copy, sha), (none, why) = grader.snapshot([a, tmp_path / "gone.ipynb"], private)
    a.write_bytes(b"changed after the snapshot")
    assert Path(copy).read_bytes() == b"abc" and sha == hashlib.sha256(b"abc").hexdigest()
    assert none is None and "cannot read" in why
    assert (private.stat().st_mode & 0o777) == 0o700


# ---- hidden tests (instructor/hidden/) -------------------------------------------------------------


def test_hidden_tests_load_for_02_07_08_and_never_reach_the_registry():
    for lesson, ex_id in (("02", "02.4"), ("07", "07.4"), ("08", "08.2")):
        hidden = grader.hidden_tests(lesson)
        assert list(hidden) == [ex_id]
        assert all(t.hidden and not t.in_check for t in hidden[ex_id])
        visible = {t.name for t in checks.get(ex_id).tests}
        assert not visible & {t.name for t in hidden[ex_id]}
    assert grader.hidden_tests("99") == {}


def test_broken_hidden_tests_are_a_clear_error_before_grading(tmp_path):
    (tmp_path / "lesson99.py").write_text("HIDDEN = {'99.9': ()}\n")
    with pytest.raises(ValueError, match="'99.9' is not one of lesson 99"):
        grader.grade([], lesson="99", hidden=tmp_path)
    with pytest.raises(ValueError, match="no such folder"):
        grader.hidden_tests("99", tmp_path / "nope")


def _loopback(answer, ex):
    return grader.RemoteAnswer(grader.loopback_transport({ex.answer: answer}, ex.answer), ex.answer)


def _hidden_cases():
    from tests.fixtures.hidden_mistakes import HIDDEN_MISTAKES

    return [pytest.param(m, id=f"{m.exercise}-{m.name}") for m in HIDDEN_MISTAKES]


@pytest.mark.parametrize("mistake", _hidden_cases())
def test_hidden_tests_catch_a_wrong_answer_every_visible_test_passes(mistake):
    from tests.test_mistakes import wrong_answer

    ex = checks.get(mistake.exercise)
    answer = _loopback(wrong_answer(mistake), ex)
    hidden = grader.hidden_tests(ex.lesson)[ex.id]
    with checks.fresh_inputs(2026):
        visible = {t.name: checks.run_test(ex, t, answer) for t in ex.tests}
        secret = {t.name: checks.run_test(ex, t, answer) for t in hidden}
    assert all(ok for ok, _ in visible.values()), visible
    assert not any(ok for ok, _ in secret.values()), secret
    message = " ".join(m for _, m in secret.values())
    assert all(p in message for p in mistake.expect), message


@pytest.mark.parametrize("ex_id", ["02.4", "07.4", "08.2"])
def test_the_solution_passes_the_hidden_tests(ex_id):
    from tests.test_exercises import namespace

    ex = checks.get(ex_id)
    path = sorted(course.SOLUTIONS_DIR.glob(f"{ex.lesson}_*.ipynb"))[0]
    ns, _ = namespace(path, "solution")
    answer = _loopback(ns[ex.answer], ex)
    for salt in (None, 7, 2026):
        with checks.fresh_inputs(salt):
            for t in grader.hidden_tests(ex.lesson)[ex_id]:
                assert checks.run_test(ex, t, answer) == (True, "passed")


def test_the_gradebook_reports_hidden_points_apart(tmp_path):
    """Lesson 02 in a real kernel: the last-round slip gets every visible point of 02.4 and no hidden one."""
    from tests.fixtures.hidden_mistakes import HIDDEN_MISTAKES

    mistake = next(m for m in HIDDEN_MISTAKES if m.exercise == "02.4")
    src = sorted(course.SOLUTIONS_DIR.glob("02_*.ipynb"))[0]
    nb = course.student_notebook(course.read_notebook(src), solved="all")
    cell = exercise_cell(nb, "02.4")
    for old, new in mistake.edits:
        cell.source = cell.source.replace(old, new)
    path = tmp_path / "slip.ipynb"
    path.write_bytes(as_bytes(nb))
    rows = {r["exercise"]: r for r in grader.grade([path], lesson="02", workers=1)}
    row = rows["02.4"]
    assert row["visible_points"] == row["visible_max"] == checks.get("02.4").points
    assert row["hidden_max"] == 1.0 and row["hidden_points"] == 0.0 and row["status"] == "partial"
    assert "1 of 1 hidden test(s) failed" in row["message"] and "last round" not in row["message"]
    hidden = [t for t in row["tests"] if t["hidden"]]
    assert [t["status"] for t in hidden] == ["failed"] and "last round" in hidden[0]["message"]
    assert all(r["status"] == "ok" and r["hidden_max"] == 0 for e, r in rows.items() if e != "02.4")


def test_grading_code_changed_on_disk_stops_grading_loudly(tmp_path):
    """A kernel that rewrites the package (an always-pass helper appended to an exercise module) is caught."""
    manifest = grader.code_manifest()
    assert str(Path(checks.__file__).resolve()) in manifest and grader.changed_code(manifest) == []
    helper = tmp_path / "exercise_module.py"
    helper.write_text("TESTS = 1\n")
    manifest[str(helper)] = hashlib.sha256(helper.read_bytes()).hexdigest()
    assert grader.changed_code(manifest) == []
    helper.write_text("TESTS = 1\ncheck = lambda *a, **k: None  # always pass\n")
    assert grader.changed_code(manifest) == [str(helper)]
    sub = tmp_path / "correct.ipynb"
    sub.write_bytes(as_bytes(solved()))
    (row,) = grader._grade_safe(
        str(sub), "correct.ipynb", "99", None, grader.Limits(), None, 1, grader.Launch(), manifest
    )
    assert row["status"] == "error" and "grading code changed on disk before" in row["message"]
    assert row["points"] == 0 and row["max_points"] == sum(POINTS.values())
