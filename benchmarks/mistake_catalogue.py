"""The mistake catalogue, measured: catalogued mistakes per exercise and the share whose message names the mistake.

Runs every mistake of ``tests/mistakes/`` as ``tests/test_mistakes.py`` does (the solution cell with the slip,
in the lesson's namespace) and counts, per exercise of every lesson (the grader's demo lesson 99 aside), how many
mistakes it has and how many fail their check with a message containing every expected phrase. Last line: JSON.

    PYTHONPATH=$PWD python benchmarks/mistake_catalogue.py
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fedlab import checks  # noqa: E402
from tests.mistakes import catalogue  # noqa: E402
from tests.test_mistakes import wrong_answer  # noqa: E402


def diagnosed(mistake) -> bool:
    """Whether the check fails on this mistake with a message naming it."""
    try:
        checks.check(mistake.exercise, wrong_answer(mistake), thorough=mistake.thorough)
    except checks.CheckFailed as err:
        return all(p.lower() in str(err).lower() for p in mistake.expect)
    return False


def main() -> dict:
    mistakes = catalogue()
    per = defaultdict(lambda: [0, 0])
    for m in mistakes:
        per[m.exercise][0] += 1
        per[m.exercise][1] += diagnosed(m)
    lessons = sorted(k for k in checks.LESSON_MODULES if k != "99")  # every lesson, so a missing catalogue shows as 0
    exercises = [ex.id for lesson in lessons for ex in checks.lesson_exercises(lesson)]
    print(f"{'exercise':>8}  {'mistakes':>8}  {'named':>5}")
    for ex in exercises:
        n, ok = per.get(ex, (0, 0))
        print(f"{ex:>8}  {n:>8}  {ok:>5}")
    total, named = sum(v[0] for v in per.values()), sum(v[1] for v in per.values())
    return {
        "lessons": lessons,
        "exercises": len(exercises),
        "mistakes": total,
        "min_per_exercise": min((per.get(ex, (0, 0))[0] for ex in exercises), default=0),
        "named_share": round(named / total, 4) if total else 0.0,
        "per_exercise": {ex: per.get(ex, [0, 0])[0] for ex in exercises},
    }


if __name__ == "__main__":
    print(json.dumps(main()))
