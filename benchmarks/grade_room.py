"""Benchmark: grade a room of 30 submissions of one lesson, as an instructor would after a workshop.

The submissions are made from the lesson's source notebook in a temporary
folder: a third blank (the student copy), a third fully solved, a third with
the first half of the exercises solved. They are graded with the grader's
defaults (``min(2, CPUs)`` workers, default timeouts and budget), and the
script prints the total and per-submission seconds. The tests run in the
grader's process and call the answers in the kernels
(:class:`fedlab.grader.RemoteAnswer`), with the lesson's hidden tests.

The room is graded twice in the same run: with every kernel in the bubblewrap
sandbox (:mod:`fedlab.sandbox`, the grader's default where it works) and
without (``--sandbox none``); ``seconds`` is the sandboxed time and
``sandbox_overhead`` the ratio of the two. ``--rounds 2`` grades sandboxed,
bare, bare, sandboxed (so the machine's drift cancels) and reports the sums.
The 1-minute load average is printed with the figures: on a shared machine
they mean little without it. Targets (issue 17): 30 submissions of lesson 02
in at most 60 s on the 2-core machine, overhead at most 1.3x.

    python benchmarks/grade_room.py                 # lesson 02
    python benchmarks/grade_room.py --lesson 99     # the demo lesson (seconds)

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from fedlab import checks, course, grader, sandbox

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "99_demo.ipynb"


def lesson_source(lesson: str) -> Path:
    found = sorted(course.SOLUTIONS_DIR.glob(f"{lesson}_*.ipynb")) or ([FIXTURE] if lesson == "99" else [])
    if not found:
        sys.exit(f"lesson={lesson!r}: no solutions/{lesson}_*.ipynb yet; try --lesson 99 (the demo lesson)")
    return found[0]


def make_room(source: Path, folder: Path, n: int) -> dict[str, str]:
    """Write ``n`` submissions into ``folder``; returns {file name: kind}."""
    nb = course.read_notebook(source)
    ids = [ex.id for ex in checks.lesson_exercises(course.notebook_lesson(nb))]
    kinds = {
        "blank": course.notebook_bytes(course.student_notebook(nb)),
        "correct": course.notebook_bytes(course.student_notebook(nb, solved="all")),
        "half": course.notebook_bytes(course.student_notebook(nb, solved=ids[: max(1, len(ids) // 2)])),
    }
    room = {}
    for i in range(n):
        kind = ("blank", "correct", "half")[i % 3]
        name = f"learner{i:02d}_{kind}.ipynb"
        (folder / name).write_bytes(kinds[kind])
        room[name] = kind
    return room


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lesson", default="02")
    parser.add_argument("--submissions", type=int, default=30)
    parser.add_argument("--workers", type=int, default=None, help="default: the grader's (min(2, CPUs))")
    parser.add_argument("--rounds", type=int, default=1, help="1: sandboxed then bare; 2: and bare then sandboxed")
    args = parser.parse_args()
    info = sandbox.probe()
    if info.kind != "bwrap":
        sys.exit(f"no sandbox here ({info.reason}); this benchmark compares grading with and without it")
    source = lesson_source(args.lesson)
    workers = args.workers or grader.default_workers()
    launches = {"bwrap": grader.sandboxed("bwrap"), "none": grader.Launch()}
    order = ["bwrap", "none"] + (["none", "bwrap"] if args.rounds >= 2 else [])
    seconds = {"bwrap": 0.0, "none": 0.0}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="fedlab-room-") as tmp:
        folder = Path(tmp)
        room = make_room(source, folder, args.submissions)
        paths = sorted(folder.glob("*.ipynb"))
        for kind in order:
            start = time.perf_counter()
            rows = grader.grade(paths, lesson=args.lesson, workers=workers, launch=launches[kind])
            took = time.perf_counter() - start
            seconds[kind] += took
            loads.append(os.getloadavg()[0])
            assert {r["sandbox"] for r in rows} == {kind}, {r["sandbox"] for r in rows}
            wrong = [r for r in rows if room[r["submission"]] == "correct" and r["status"] != "ok"]
            if wrong:
                print(f"WARNING: {len(wrong)} exercise(s) of solved submissions did not get ok: {wrong[:3]}")
            statuses = Counter(r["status"] for r in rows)
            print(
                f"sandbox={kind}: lesson {args.lesson} ({source.name}): {len(paths)} submissions in {took:.1f} s "
                f"with {workers} worker(s) ({took / len(paths):.2f} s each); statuses {dict(statuses)}; "
                f"load average now {loads[-1]:.2f}"
            )
    print(grader.summary(rows))
    rounds = order.count("bwrap")
    total = seconds["bwrap"] / rounds
    overhead = seconds["bwrap"] / seconds["none"]
    print(
        f"seconds {total:.1f} (sandboxed, per room), bare {seconds['none'] / rounds:.1f}; "
        f"sandbox_overhead {overhead:.3f}x; load average (1 min) {min(loads):.2f}-{max(loads):.2f}, "
        f"{os.cpu_count()} CPUs"
    )
    print(
        json.dumps(
            {
                "lesson": args.lesson,
                "submissions": len(paths),
                "seconds": round(total, 2),
                "seconds_bare": round(seconds["none"] / rounds, 2),
                "sandbox_overhead": round(overhead, 3),
                "per_submission_s": round(total / len(paths), 3),
                "workers": workers,
                "rounds": rounds,
                "load_average": [round(x, 2) for x in loads],
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
