"""Benchmark: grade a room of 30 submissions of one lesson, as an instructor would after a workshop.

The submissions are made from the lesson's source notebook in a temporary
folder: a third blank (the student copy), a third fully solved, a third with
the first half of the exercises solved. They are graded with the grader's
defaults (``min(2, CPUs)`` workers, default timeouts and budget), and the
script prints the total and per-submission seconds. Target (issue 17): 30
submissions of lesson 02 in at most 60 s on the 2-core machine. The tests run
in the grader's process and call the answers in the kernels
(:class:`fedlab.grader.RemoteAnswer`), with the lesson's hidden tests.

    python benchmarks/grade_room.py                 # lesson 02
    python benchmarks/grade_room.py --lesson 99     # the demo lesson (seconds)

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from fedlab import checks, course, grader

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
    args = parser.parse_args()
    source = lesson_source(args.lesson)
    workers = args.workers or grader.default_workers()
    with tempfile.TemporaryDirectory(prefix="fedlab-room-") as tmp:
        folder = Path(tmp)
        room = make_room(source, folder, args.submissions)
        paths = sorted(folder.glob("*.ipynb"))
        start = time.perf_counter()
        rows = grader.grade(paths, lesson=args.lesson, workers=workers)
        total = time.perf_counter() - start
    print(grader.summary(rows))
    wrong = [r for r in rows if room[r["submission"]] == "correct" and r["status"] != "ok"]
    if wrong:
        print(f"WARNING: {len(wrong)} exercise(s) of solved submissions did not get ok: {wrong[:3]}")
    statuses = Counter(r["status"] for r in rows)
    per = total / len(paths)
    print(
        f"lesson {args.lesson} ({source.name}): {len(paths)} submissions graded in {total:.1f} s "
        f"with {workers} worker(s): {per:.2f} s per submission; statuses {dict(statuses)}"
    )
    print(
        json.dumps(
            {
                "lesson": args.lesson,
                "submissions": len(paths),
                "total_s": round(total, 2),
                "per_submission_s": round(per, 3),
                "workers": workers,
            }
        )
    )


if __name__ == "__main__":
    main()
