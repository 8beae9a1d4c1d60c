"""The gradebook for learning-management systems: Canvas and Moodle CSV, and a Gradescope autograder bundle.

``python -m fedlab gradebook export grades.json --format canvas --roster roster.csv --out canvas.csv``
turns a JSON gradebook (``python -m fedlab grade ... --json grades.json``)
into a file the LMS imports; ``python -m fedlab gradescope-bundle --lesson 02
--out bundle.zip`` builds an autograder for Gradescope.

Roster
------
A CSV file with a header. Required columns: ``id`` (the learner's id in the
LMS) and ``submission`` (the submitted file's name, or a shell-style pattern
such as ``alice*.ipynb`` or ``*/alice/*``, matched against the gradebook's
``submission`` and against its last path part). Optional: ``name``,
``email``, ``username``, ``idnumber``, ``section``, ``canvas_id``,
``sis_login_id``. An exact name beats a pattern. Nothing is dropped in
silence: a submission that no learner's entry matches (or that several
match), a learner with no submission, and a learner with several are all
listed in ``<out>.report.txt`` and on the terminal, and such a learner gets
**no row** in the CSV: an empty cell is not "no change" for Canvas's importer
(it would show as clearing a grade the LMS already has), and a missing row
is. The command exits 3 when that list is not empty (the CSV is written anyway), 0
when every learner has exactly one submission and every file a learner.

The grade of a learner for a lesson is the sum of ``points`` over the
submission's rows (visible and hidden tests together); submission-level rows
(``unreadable`` ...) count 0.

Canvas (Gradebook > Import, the "gradebook CSV" format)
-------------------------------------------------------
Followed from Canvas's own importer (canvas-lms
``app/models/gradebook_importer.rb``) and its Instructor Guide page "How do I
import grades in the Gradebook?" (summarised by e.g. Ohio State's "Import a
CSV file to Carmen grades"). The importer wants a header whose first columns
are ``Student``, ``ID``, ``SIS User ID``, ``SIS Login ID`` and ``Section``
(the column before the assignments must be ``Section``); every later column
is an assignment titled ``Title (id)`` for an existing one, and a bare
``Title`` matches an assignment of that title or creates a new one. A row
whose first cell says ``Points Possible`` sets the assignments' points. A
learner is found by ``ID`` (Canvas user id), else ``SIS User ID``, else ``SIS
Login ID``, else the name; a learner absent from the file is left alone. So the file
is: that header, then ``Lesson 02`` per lesson (``Lesson 02 (12345)`` with
``--assignment-id 02=12345``); a ``Points Possible`` row with each lesson's
maximum; one row per matched roster learner: ``Student`` = roster ``name``, ``ID`` =
roster ``canvas_id`` (may be empty), ``SIS User ID`` = roster ``id``, ``SIS
Login ID`` = roster ``sis_login_id``, ``Section`` = roster ``section``.
UTF-8, comma-separated, RFC 4180 quoting.

Moodle (Grades > Import > CSV file)
-----------------------------------
Followed from Moodle's "Import grades" documentation and its importer
(``grade/import/csv``): a header row, one column that identifies the user
(at import, "Map from" = that column, "Map to" = the same user field), and
one column per grade item (mapped at import to an existing item or to "new
grade item"). The identifier is chosen by ``--moodle-identifier``:
``idnumber`` (default; roster ``idnumber``, else ``id``), ``email`` or
``username``; the header is that field's name. Grade columns are named
``Lesson 02``. Comma-separated, UTF-8.

Gradescope (an autograder bundle)
---------------------------------
Followed from Gradescope's "Autograder Specifications"
(gradescope-autograders.readthedocs.io/en/latest/specs/): a zip with
``setup.sh`` and ``run_autograder`` at its root; Gradescope unpacks it into
``/autograder/source``, runs ``setup.sh`` once (as root, Ubuntu) when it
builds the image, then ``run_autograder`` per submission with the learner's
files in ``/autograder/submission``; ``run_autograder`` must write
``/autograder/results/results.json``: top level ``score``,
``execution_time`` (seconds), ``output``, ``stdout_visibility``,
``extra_data`` and ``tests``, each test with ``name``, ``number``,
``score``, ``max_score``, ``status`` (``passed``/``failed``), ``output``,
``tags`` and ``visibility`` (``visible``, ``hidden``, ``after_due_date`` or
``after_published``). :data:`GRADESCOPE_RESULTS_SCHEMA` is that contract as a
JSON schema (the tests validate against it).

This bundle holds the course (``course/``: the ``fedlab`` package,
``datasets/``, the lesson's student notebook as the reference for its check
cells, ``pyproject.toml``, ``requirements.lock``), ``requirements-grader.txt``
(what grading needs, pinned to the lock), ``fedlab-gradescope.json`` (lesson,
limits, how hidden tests are shown) and optionally ``wheels/`` (``--wheelhouse
DIR``, for an offline ``setup.sh``). ``run_autograder`` runs the bundle's own
``course/fedlab`` (on ``PYTHONPATH``) in the venv ``setup.sh`` made. Every
test is one Gradescope test named ``"02.1 <title>: <test>"``; a hidden test
gets ``visibility`` ``hidden`` (default; only staff see it) or, with
``--hidden-visibility after_published``, a neutral name ("hidden test 1") and
no message, so publishing grades never reveals it.

Run it locally: unzip into ``<root>/source``, put a notebook in
``<root>/submission`` and run ``AUTOGRADER_ROOT=<root>
FEDLAB_PYTHON=$(which python) <root>/source/run_autograder``; the results
land in ``<root>/results/results.json``.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import math
import os
import re
import stat
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROSTER_REQUIRED = ("id", "submission")
ROSTER_OPTIONAL = ("name", "email", "username", "idnumber", "section", "canvas_id", "sis_login_id")
CANVAS_FIXED = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
MOODLE_IDENTIFIERS = ("idnumber", "email", "username")
VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")
EXIT_UNMATCHED = 3

GRADESCOPE_RESULTS_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Gradescope autograder results.json (gradescope-autograders.readthedocs.io/en/latest/specs/)",
    "type": "object",
    "properties": {
        "score": {"type": "number"},
        "execution_time": {"type": "number", "minimum": 0},
        "output": {"type": "string"},
        "output_format": {"enum": ["text", "html", "simple_format", "md", "ansi"]},
        "test_output_format": {"enum": ["text", "html", "simple_format", "md", "ansi"]},
        "test_name_format": {"enum": ["text", "html", "simple_format", "md", "ansi"]},
        "visibility": {"enum": list(VISIBILITIES)},
        "stdout_visibility": {"enum": list(VISIBILITIES)},
        "extra_data": {"type": "object"},
        "leaderboard": {"type": "array"},
        "tests": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "score": {"type": "number"},
                    "max_score": {"type": "number", "minimum": 0},
                    "status": {"enum": ["passed", "failed"]},
                    "name": {"type": "string"},
                    "name_format": {"enum": ["text", "html", "simple_format", "md", "ansi"]},
                    "number": {"type": "string"},
                    "output": {"type": "string"},
                    "output_format": {"enum": ["text", "html", "simple_format", "md", "ansi"]},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "visibility": {"enum": list(VISIBILITIES)},
                    "extra_data": {"type": "object"},
                },
                "additionalProperties": False,
            },
        },
    },
    "anyOf": [
        {"required": ["score"]},
        {"required": ["tests"], "properties": {"tests": {"items": {"required": ["score"]}}}},
    ],
    "additionalProperties": False,
}
"""Gradescope's results.json as a JSON schema: the fields its specification lists, nothing else."""


# ---- roster ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Learner:
    """One roster line: the learner's LMS id, the submission name or pattern, and optional fields."""

    id: str
    submission: str
    name: str = ""
    email: str = ""
    username: str = ""
    idnumber: str = ""
    section: str = ""
    canvas_id: str = ""
    sis_login_id: str = ""


def read_roster(path: str | os.PathLike) -> list[Learner]:
    """Read a roster CSV (see the module docstring); a missing column or id is a ValueError naming the line."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ValueError(f"roster={str(path)!r}: no such file") from None
    return parse_roster(text, where=str(path))


def parse_roster(text: str, *, where: str = "roster") -> list[Learner]:
    """Parse roster CSV text (header required; column names are case-insensitive)."""
    reader = csv.DictReader(io.StringIO(text))
    header = [(h or "").strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in ROSTER_REQUIRED if c not in header]
    if missing:
        raise ValueError(
            f"roster={where!r}: missing column(s) {missing}; a roster needs {list(ROSTER_REQUIRED)} "
            f"(optional: {list(ROSTER_OPTIONAL)}), got {header}"
        )
    learners, seen = [], set()
    for line, raw in enumerate(reader, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
        if not any(row.values()):
            continue
        for col in ROSTER_REQUIRED:
            if not row.get(col):
                raise ValueError(f"roster={where!r}: line {line} has an empty {col!r}")
        if row["id"] in seen:
            raise ValueError(f"roster={where!r}: line {line}: id {row['id']!r} appears twice")
        seen.add(row["id"])
        learners.append(Learner(**{k: row.get(k, "") for k in ROSTER_REQUIRED + ROSTER_OPTIONAL}))
    return learners


@dataclass
class Matching:
    """Which submission belongs to which learner, and everything that did not match one to one."""

    by_learner: dict[str, str] = field(default_factory=dict)  # learner id -> submission (exactly one)
    unmatched: list[str] = field(default_factory=list)  # submissions no roster entry matches
    ambiguous: dict[str, list[str]] = field(default_factory=dict)  # submission -> the learner ids it matches
    several: dict[str, list[str]] = field(default_factory=dict)  # learner id -> their submissions (>1)
    missing: list[str] = field(default_factory=list)  # learner ids without a submission

    @property
    def problems(self) -> list[str]:
        """One line per problem, for the report file and the terminal."""
        out = [f"unmatched submission: {s} (no roster entry matches it)" for s in self.unmatched]
        out += [f"ambiguous submission: {s} (matches learners {', '.join(ids)})" for s, ids in self.ambiguous.items()]
        out += [
            f"several submissions for learner {lid}: {', '.join(subs)} (no grade exported)"
            for lid, subs in self.several.items()
        ]
        out += [f"no submission for learner {lid} (no grade exported)" for lid in self.missing]
        return out


def _matches(pattern: str, submission: str) -> bool:
    base = submission.replace("\\", "/").rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(s, pattern) for s in (submission, base))


def match(roster: Sequence[Learner], submissions: Sequence[str]) -> Matching:
    """Map submissions to learners (exact name first, then patterns); list whatever is not one-to-one."""
    m = Matching()
    owners: dict[str, list[str]] = {}
    for sub in submissions:
        base = sub.replace("\\", "/").rsplit("/", 1)[-1]
        exact = [lr.id for lr in roster if lr.submission in (sub, base)]
        ids = exact or [lr.id for lr in roster if _matches(lr.submission, sub)]
        if not ids:
            m.unmatched.append(sub)
        elif len(ids) > 1:
            m.ambiguous[sub] = ids
        else:
            owners.setdefault(ids[0], []).append(sub)
    for lr in roster:
        subs = owners.get(lr.id, [])
        if len(subs) == 1:
            m.by_learner[lr.id] = subs[0]
        elif len(subs) > 1:
            m.several[lr.id] = subs
        else:
            m.missing.append(lr.id)
    return m


# ---- grades ------------------------------------------------------------------------------------


def lesson_totals(rows: Sequence[dict]) -> tuple[list[str], dict[tuple[str, str], float], dict[str, float]]:
    """``(lessons, {(submission, lesson): points}, {lesson: max points})`` from gradebook rows."""
    from fedlab.feedback import _num

    points: dict[tuple[str, str], float] = {}
    maxima: dict[tuple[str, str], float] = {}
    for r in rows:
        key = (str(r["submission"]), str(r.get("lesson") or ""))
        points[key] = points.get(key, 0.0) + _num(r.get("points"))
        maxima[key] = maxima.get(key, 0.0) + _num(r.get("max_points"))
    lessons = sorted({lesson for _, lesson in points if lesson})
    lesson_max = {lesson: max(v for (_, les), v in maxima.items() if les == lesson) for lesson in lessons}
    return lessons, points, lesson_max


def fmt_points(x: float) -> str:
    """Points as plain decimal text: ``7``, ``2.5``, ``0.3333`` (never exponent notation)."""
    return f"{x:.4f}".rstrip("0").rstrip(".") or "0"


def _submissions(rows: Sequence[dict]) -> list[str]:
    return list(dict.fromkeys(str(r["submission"]) for r in rows))


def _graded(roster, m: Matching, lessons, points) -> list[tuple[Learner, list[str]]]:
    """``[(learner, grade cells)]`` for the learners with exactly one submission, in roster order."""
    out = []
    for lr in roster:
        if lr.id in m.by_learner:
            sub = m.by_learner[lr.id]
            out.append((lr, [fmt_points(points.get((sub, les), 0.0)) for les in lessons]))
    return out


def canvas_csv(
    rows: Sequence[dict], roster: Sequence[Learner], *, assignment_ids: dict[str, str] | None = None
) -> tuple[str, Matching]:
    """Canvas's gradebook import CSV (see the module docstring) and the matching behind it."""
    assignment_ids = dict(assignment_ids or {})
    lessons, points, lesson_max = lesson_totals(rows)
    unknown = sorted(set(assignment_ids) - set(lessons))
    if unknown:
        raise ValueError(f"assignment_ids={assignment_ids!r}: no graded lesson {unknown}; the gradebook has {lessons}")
    m = match(roster, _submissions(rows))
    titles = [f"Lesson {les}" + (f" ({assignment_ids[les]})" if les in assignment_ids else "") for les in lessons]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(CANVAS_FIXED) + titles)
    w.writerow(["Points Possible", "", "", "", ""] + [fmt_points(lesson_max[les]) for les in lessons])
    for lr, cells in _graded(roster, m, lessons, points):
        w.writerow([lr.name, lr.canvas_id, lr.id, lr.sis_login_id, lr.section] + cells)
    return buf.getvalue(), m


def moodle_csv(
    rows: Sequence[dict], roster: Sequence[Learner], *, identifier: str = "idnumber"
) -> tuple[str, Matching]:
    """Moodle's grade import CSV (see the module docstring) and the matching behind it."""
    if identifier not in MOODLE_IDENTIFIERS:
        raise ValueError(f"identifier={identifier!r}: must be one of {list(MOODLE_IDENTIFIERS)}")
    lessons, points, _ = lesson_totals(rows)
    m = match(roster, _submissions(rows))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([identifier] + [f"Lesson {les}" for les in lessons])
    for lr, cells in _graded(roster, m, lessons, points):
        value = (lr.idnumber or lr.id) if identifier == "idnumber" else getattr(lr, identifier)
        if not value:
            raise ValueError(
                f"identifier={identifier!r}: learner {lr.id!r} has no {identifier} in the roster; "
                f"add a {identifier!r} column or choose another identifier ({list(MOODLE_IDENTIFIERS)})"
            )
        w.writerow([value] + cells)
    return buf.getvalue(), m


def _parse_assignment_ids(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        lesson, sep, aid = pair.partition("=")
        if not sep or not re.fullmatch(r"\d{2}", lesson.strip()) or not re.fullmatch(r"\d+", aid.strip()):
            raise ValueError(f"--assignment-id={pair!r}: must look like LESSON=CANVAS_ID, e.g. 02=12345")
        out[lesson.strip()] = aid.strip()
    return out


def export(
    gradebook: str | os.PathLike,
    *,
    fmt: str,
    roster: str | os.PathLike,
    out: str | os.PathLike,
    assignment_ids: dict[str, str] | None = None,
    moodle_identifier: str = "idnumber",
) -> tuple[Path, Matching]:
    """Write the LMS CSV to ``out`` and the matching problems to ``<out>.report.txt``; returns the report path."""
    from fedlab import course, feedback

    if fmt not in ("canvas", "moodle"):
        raise ValueError(f"format={fmt!r}: must be 'canvas' or 'moodle'")
    rows = feedback.read_gradebook(gradebook)
    learners = read_roster(roster)
    if fmt == "canvas":
        text, m = canvas_csv(rows, learners, assignment_ids=assignment_ids)
    else:
        text, m = moodle_csv(rows, learners, identifier=moodle_identifier)
    course.write_atomic(out, text.encode("utf-8"))
    report = Path(f"{out}.report.txt")
    lines = m.problems or ["every learner has exactly one submission and every submission a learner"]
    course.write_atomic(report, ("\n".join(lines) + "\n").encode("utf-8"))
    return report, m


# ---- Gradescope --------------------------------------------------------------------------------

GRADER_REQUIREMENTS = (
    "numpy",
    "torch",
    "matplotlib",
    "ipywidgets",
    "scikit-learn",
    "cryptography",
    "nbformat",
    "nbclient",
    "ipykernel",
    "jupyter_client",
)
"""What ``setup.sh`` installs (pinned to requirements.lock): the package, its ``lessons`` extra, the kernel."""

SETUP_SH = r"""#!/usr/bin/env bash
# fedlab's Gradescope autograder: set-up. Gradescope runs this once, as root, when it builds the image.
# It makes a venv in $AUTOGRADER_ROOT/venv (default /autograder/venv) with Python 3.11 and installs
# requirements-grader.txt: from wheels/ in this bundle when present (offline), else from the package index
# (torch from the CPU-only index; override with FEDLAB_PIP_ARGS).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PY="${FEDLAB_BASE_PYTHON:-python3.11}"
if ! command -v "$PY" >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.11 python3.11-venv
  fi
fi
command -v "$PY" >/dev/null 2>&1 || { echo "setup.sh: fedlab needs Python 3.11 ($PY not found)"; exit 1; }
# the grader sandboxes each kernel with bubblewrap where it can (else it grades with sandbox=none and says so)
command -v bwrap >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 \
  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap || echo "setup.sh: no bubblewrap"; }
"$PY" -m venv "$ROOT/venv"
if [ -d "$HERE/wheels" ]; then
  SRC=(--no-index --find-links "$HERE/wheels")
else
  read -r -a SRC <<< "${FEDLAB_PIP_ARGS:---extra-index-url https://download.pytorch.org/whl/cpu}"
fi
"$ROOT/venv/bin/python" -m pip install --disable-pip-version-check "${SRC[@]}" -r "$HERE/requirements-grader.txt"
PYTHONPATH="$HERE/course" "$ROOT/venv/bin/python" -c "import fedlab.grader, nbclient, ipykernel"
echo "setup.sh: fedlab's grader is ready in $ROOT/venv"
"""

RUN_AUTOGRADER = r"""#!/usr/bin/env bash
# fedlab's Gradescope autograder: grade /autograder/submission/*.ipynb, write /autograder/results/results.json.
# Locally: AUTOGRADER_ROOT=<folder with submission/> FEDLAB_PYTHON=<python with the grader's deps> ./run_autograder
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PY="${FEDLAB_PYTHON:-$ROOT/venv/bin/python}"
export PYTHONPATH="$HERE/course${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m fedlab gradescope-run --root "$ROOT" --config "$HERE/fedlab-gradescope.json"
"""


def grader_requirements(lock_text: str) -> str:
    """``requirements-grader.txt``: :data:`GRADER_REQUIREMENTS` pinned to the lock's versions."""
    from fedlab import environment

    pins = environment.read_lock(lock_text)
    lines = [
        f"{name}=={pins[key]}" if (key := environment.canonical(name)) in pins else name for name in GRADER_REQUIREMENTS
    ]
    return "# what fedlab's grader needs, pinned to requirements.lock\n" + "\n".join(lines) + "\n"


def _reference_notebook(lesson: str) -> Path:
    from fedlab import course

    found = sorted(course.NOTEBOOKS_DIR.glob(f"{lesson}_*.ipynb"))
    if not found:
        raise ValueError(f"lesson={lesson!r}: no student notebook notebooks/{lesson}_*.ipynb to take check cells from")
    return found[0]


def build_bundle(
    lesson: str,
    out: str | os.PathLike,
    *,
    reference: str | os.PathLike | None = None,
    wheelhouse: str | os.PathLike | None = None,
    include: Sequence[str | os.PathLike] = (),
    hidden_visibility: str = "hidden",
    timeout_per_test: float | None = None,
    budget_per_submission: float | None = None,
) -> Path:
    """Write the Gradescope autograder zip for ``lesson`` to ``out`` (see the module docstring)."""
    from fedlab import checks, course, grader

    if lesson not in checks.LESSON_MODULES:
        raise ValueError(f"lesson={lesson!r}: no exercises are defined for it; known: {sorted(checks.LESSON_MODULES)}")
    if hidden_visibility not in ("hidden", "after_published", "after_due_date"):
        raise ValueError(
            f"hidden_visibility={hidden_visibility!r}: must be 'hidden', 'after_due_date' or 'after_published'"
        )
    ref = Path(reference) if reference else _reference_notebook(lesson)
    if not ref.is_file():
        raise ValueError(f"reference={str(reference)!r}: no such notebook")
    root = course.ROOT
    config = {
        "lesson": lesson,
        "reference": f"course/reference/{ref.name}",
        "hidden_visibility": hidden_visibility,
        "timeout_per_test": timeout_per_test or grader.TIMEOUT_PER_TEST,
        "budget_per_submission": budget_per_submission or grader.BUDGET_PER_SUBMISSION,
    }
    files: dict[str, Path | bytes] = {
        "setup.sh": SETUP_SH.encode(),
        "run_autograder": RUN_AUTOGRADER.encode(),
        "fedlab-gradescope.json": (json.dumps(config, indent=1) + "\n").encode(),
        "requirements-grader.txt": grader_requirements((root / "requirements.lock").read_text()).encode(),
        f"course/reference/{ref.name}": ref,
    }
    for name in ("pyproject.toml", "README.md", "LICENSE", "LICENSE-lessons.md", "requirements.lock"):
        if (root / name).is_file():
            files[f"course/{name}"] = root / name
    extra = [root / "fedlab", root / "datasets"] + [Path(p) for p in include]
    for src in extra:
        if not src.exists():
            raise ValueError(f"include={str(src)!r}: no such file or folder")
        paths = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
        for p in paths:
            if "__pycache__" in p.parts or p.suffix == ".pyc":
                continue
            try:
                arc = p.resolve().relative_to(root.resolve())
            except ValueError:
                arc = Path(src.name) / p.relative_to(src) if src.is_dir() else Path(p.name)
            files[f"course/{arc.as_posix()}"] = p
    if wheelhouse:
        wheels = sorted(Path(wheelhouse).glob("*.whl"))
        if not wheels:
            raise ValueError(f"wheelhouse={str(wheelhouse)!r}: no .whl files there")
        for w in wheels:
            files[f"wheels/{w.name}"] = w
    out = Path(out)
    with course.atomic_open(out) as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
        for arc in sorted(files):
            data = files[arc]
            info = zipfile.ZipInfo(arc, date_time=(2020, 1, 1, 0, 0, 0))
            executable = arc in ("setup.sh", "run_autograder")
            info.external_attr = ((0o755 if executable else 0o644) | stat.S_IFREG) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data if isinstance(data, bytes) else data.read_bytes())
    return out


def extract_bundle(bundle: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Unzip a bundle into ``dest`` keeping the executable bits (what Gradescope does into /autograder/source)."""
    dest = Path(dest)
    with zipfile.ZipFile(bundle) as zf:
        for info in zf.infolist():
            target = (dest / info.filename).resolve()
            if not str(target).startswith(str(dest.resolve()) + os.sep):
                raise ValueError(f"bundle={str(bundle)!r}: entry {info.filename!r} points outside the folder")
            zf.extract(info, dest)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(target, mode)
    return dest


def gradescope_results(rows: Sequence[dict], *, hidden_visibility: str = "hidden", seconds: float = 0.0) -> dict:
    """results.json for one submission's gradebook rows (Gradescope's schema, see the module docstring)."""
    from fedlab import feedback

    report = feedback.learner_report(rows)
    tests = []
    hidden_k = 0
    for r in rows:
        if not r.get("exercise"):
            tests.append(
                {
                    "name": f"submission: {r.get('status')}",
                    "number": "0",
                    "score": 0.0,
                    "max_score": feedback._num(r.get("max_points")),
                    "status": "failed",
                    "output": f"{feedback.status_text(str(r.get('status')))}: {r.get('message') or ''}".strip(),
                    "tags": ["submission"],
                    "visibility": "visible",
                }
            )
            continue
        notes = "; ".join(f"{f}: {feedback.flag_text(f)}" for f in feedback._flags(r))
        for i, t in enumerate(r.get("tests") or [], start=1):
            passed = feedback._passed(t)
            entry = {
                "name": f"{r['exercise']} {r.get('title', '')}: {t.get('name', '')}",
                "number": f"{r['exercise']}.{i}",
                "score": feedback._num(t.get("points")),
                "max_score": feedback._num(t.get("max_points", t.get("points"))),
                "status": "passed" if passed else "failed",
                "output": (t.get("message") or "") + (f"\n(notes on this exercise: {notes})" if notes else ""),
                "tags": [str(r["exercise"])],
                "visibility": "visible",
            }
            if t.get("hidden"):
                entry["tags"].append("hidden")
                entry["visibility"] = hidden_visibility
                if hidden_visibility != "hidden":  # learners will see it one day: no name, no message
                    hidden_k += 1
                    entry["name"] = f"{r['exercise']} {r.get('title', '')}: hidden test {hidden_k}"
                    entry["output"] = "passed" if passed else "did not pass"
            tests.append(entry)
    summary = [
        f"{report.submission}: {fmt_points(report.points)} of {fmt_points(report.max_points)} points "
        f"(lesson {report.lesson or '?'})",
        feedback.sandbox_text(report.sandbox),
    ]
    for ex in report.exercises:
        line = f"Exercise {ex.exercise} ({ex.title}): {ex.status}, {feedback.status_text(ex.status)}"
        if ex.hidden_total:
            line += f"; hidden tests: {feedback.hidden_text(ex)}"
        summary.append(line)
        summary += [f"  note ({f}): {feedback.flag_text(f)}" for f in ex.flags]
    return {
        "score": round(report.points, 4),
        "execution_time": int(math.ceil(max(0.0, seconds))),  # whole seconds, as in Gradescope's example
        "output": "\n".join(summary),
        "stdout_visibility": "hidden",
        "extra_data": {"fedlab": {"lesson": report.lesson, "sha256": report.sha256, "sandbox": report.sandbox}},
        "tests": tests,
    }


def _pick_submission(folder: Path, lesson: str) -> tuple[Path | None, str]:
    from fedlab import grader

    found = grader.expand([folder]) if folder.is_dir() else []
    if not found:
        return None, f"no .ipynb file was submitted (looked in {folder})"
    for_lesson = [p for p in found if p.name.startswith(f"{lesson}_")]
    chosen = (for_lesson or found)[0]
    note = ""
    if len(found) > 1:
        note = f"{len(found)} notebooks were submitted; graded {chosen.name} (a name starting with '{lesson}_' wins)"
    return chosen, note


def run_gradescope(root: str | os.PathLike, config_path: str | os.PathLike) -> dict:
    """Grade ``<root>/submission`` with the bundle's config and write ``<root>/results/results.json``."""
    from fedlab import checks, grader

    root = Path(root)
    config = json.loads(Path(config_path).read_text())
    here = Path(config_path).parent
    lesson = config["lesson"]
    start = time.monotonic()
    chosen, note = _pick_submission(root / "submission", lesson)
    if chosen is None:
        total = sum(ex.points for ex in checks.lesson_exercises(lesson))
        rows = [
            {
                "submission": "(none)",
                "lesson": lesson,
                "exercise": "",
                "title": "",
                "points": 0.0,
                "max_points": total,
                "status": "unreadable",
                "message": note,
                "flags": "",
                "sha256": "",
                "tests": [],
            }
        ]
        note = ""
    else:
        limits = grader.Limits(
            timeout_per_test=float(config.get("timeout_per_test", grader.TIMEOUT_PER_TEST)),
            budget_per_submission=float(config.get("budget_per_submission", grader.BUDGET_PER_SUBMISSION)),
        )
        rows = grader.grade([chosen], lesson=lesson, reference=here / config["reference"], workers=1, limits=limits)
    results = gradescope_results(
        rows, hidden_visibility=config.get("hidden_visibility", "hidden"), seconds=time.monotonic() - start
    )
    if note:
        results["output"] = note + "\n" + results["output"]
    _write_results(root, results)
    return results


def _write_results(root: str | os.PathLike, results: dict) -> None:
    """Gradescope's ``results/results.json`` under ``root``, written atomically."""
    from fedlab import course

    course.write_atomic(Path(root) / "results" / "results.json", (json.dumps(results, indent=1) + "\n").encode("utf-8"))


# ---- command line ------------------------------------------------------------------------------


def add_commands(sub) -> None:
    """``gradebook export``, ``gradescope-bundle`` and (for the bundle) ``gradescope-run``."""
    gb = sub.add_parser("gradebook", help="export a JSON gradebook for an LMS (Canvas, Moodle)")
    gsub = gb.add_subparsers(dest="gradebook_command", required=True)
    ex = gsub.add_parser("export", help="write Canvas's or Moodle's grade import CSV from a JSON gradebook")
    ex.add_argument("gradebook", help="the JSON gradebook (python -m fedlab grade ... --json grades.json)")
    ex.add_argument("--format", dest="fmt", required=True, choices=("canvas", "moodle"))
    ex.add_argument("--roster", required=True, help="CSV with columns id, submission (name or pattern), ...")
    ex.add_argument("--out", required=True, help="the CSV to write; problems go to <out>.report.txt")
    ex.add_argument(
        "--assignment-id", action="append", default=[], help="Canvas: LESSON=ID of an existing assignment (repeat)"
    )
    ex.add_argument(
        "--moodle-identifier", default="idnumber", choices=MOODLE_IDENTIFIERS, help="Moodle: user field (idnumber)"
    )
    ex.set_defaults(run=_run_export)

    b = sub.add_parser("gradescope-bundle", help="build a Gradescope autograder zip for one lesson")
    b.add_argument("--lesson", required=True, help="e.g. 02")
    b.add_argument("--out", required=True, help="the zip to write")
    b.add_argument("--reference", help="notebook whose check cells are the reference (default notebooks/NN_*)")
    b.add_argument("--wheelhouse", help="folder of wheels to ship in the bundle (offline setup.sh)")
    b.add_argument("--include", action="append", default=[], help="extra file or folder for course/ (repeat)")
    b.add_argument("--hidden-visibility", default="hidden", choices=("hidden", "after_due_date", "after_published"))
    b.add_argument("--timeout-per-test", type=float, default=None, help="seconds (default: the grader's)")
    b.add_argument("--budget-per-submission", type=float, default=None, help="seconds (default: the grader's)")
    b.set_defaults(run=_run_bundle)

    r = sub.add_parser("gradescope-run", help="(run by the bundle's run_autograder) grade one Gradescope submission")
    r.add_argument("--root", default="/autograder", help="Gradescope's folder (submission/, results/)")
    r.add_argument("--config", required=True, help="the bundle's fedlab-gradescope.json")
    r.set_defaults(run=_run_gradescope)


def _run_export(args, out=print) -> int:
    try:
        report, m = export(
            args.gradebook,
            fmt=args.fmt,
            roster=args.roster,
            out=args.out,
            assignment_ids=_parse_assignment_ids(args.assignment_id),
            moodle_identifier=args.moodle_identifier,
        )
    except ValueError as err:
        out(f"error: {err}")
        return 2
    for line in m.problems:
        out(line)
    out(
        f"wrote {args.out} ({args.fmt}: {len(m.by_learner)} learner(s) with a grade); "
        f"{len(m.problems)} problem(s) listed in {report}"
    )
    return EXIT_UNMATCHED if m.problems else 0


def _run_bundle(args, out=print) -> int:
    try:
        path = build_bundle(
            args.lesson,
            args.out,
            reference=args.reference,
            wheelhouse=args.wheelhouse,
            include=args.include,
            hidden_visibility=args.hidden_visibility,
            timeout_per_test=args.timeout_per_test,
            budget_per_submission=args.budget_per_submission,
        )
    except ValueError as err:
        out(f"error: {err}")
        return 2
    with zipfile.ZipFile(path) as zf:
        n = len(zf.namelist())
    out(f"wrote {path} ({n} files, {path.stat().st_size / 1e6:.1f} MB): upload it as the Gradescope autograder")
    return 0


def _run_gradescope(args, out=print) -> int:

    try:
        results = run_gradescope(args.root, args.config)
    except Exception as err:  # noqa: BLE001 - Gradescope must get a results.json that says what went wrong
        results = {
            "score": 0.0,
            "output": f"The autograder itself failed ({type(err).__name__}: {err}); please tell your instructor.",
            "tests": [],
        }
        _write_results(args.root, results)
        out(f"error: {type(err).__name__}: {err}")
        return 1
    out(json.dumps({"score": results["score"], "tests": len(results["tests"])}))
    return 0
