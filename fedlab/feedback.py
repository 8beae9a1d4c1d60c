"""Feedback for learners: one readable report per graded submission, in HTML and in Markdown.

``python -m fedlab grade room/ --lesson 02 --feedback feedback/`` (or, from a
saved gradebook, ``python -m fedlab feedback grades.json --out feedback/``)
writes, for every submission, ``<name>.html`` (one self-contained page: inline
CSS, no script, no external asset, a Content-Security-Policy that forbids
both) and ``<name>.md``, plus ``index.csv`` (submission -> files) for the
instructor who hands them out. Each report holds what the learner may see
and nothing else:

- the learner's file name, lesson, the file's SHA-256, total points;
- each exercise: its status and flags explained in plain words (the texts of
  :data:`fedlab.grader.STATUSES` and :data:`fedlab.grader.FLAGS`), points,
  and every *visible* test's outcome and message;
- hidden tests as counts only ("1 of 2 hidden tests passed"): never their
  names, messages or points per test, and the row's ``message`` is left out
  when it repeats a hidden test's message or names a hidden test;
- whether the notebook ran in a sandbox (the row's ``sandbox`` column);
- no other learner, no solution, no instructor note.

Input: the JSON gradebook rows of :func:`fedlab.grader.json_text` (the
:data:`fedlab.grader.COLUMNS` plus ``tests``). Columns added by later grader
versions are read when present and default when absent: ``hidden_points``/
``hidden_max`` (0/0), ``sandbox`` (unknown), and a test's ``hidden`` (False).
A test's outcome is its ``status`` (``passed`` ...) or a boolean ``passed``.

File names come from the submission's name: every character outside
``A-Za-z0-9._-`` becomes ``_``, runs of dots become one, leading dots and
underscores are dropped, the name is cut to 80 characters, and a name already taken (two submissions that differ only in
unsafe characters, or case on a case-insensitive disk) gets ``-2``, ``-3``
... Nothing is written outside the output folder.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fedlab import grader

SANDBOX_TEXT = {
    "bwrap": "Your notebook ran in a sandbox (bubblewrap): no network, and no access to other learners' files "
    "or to the grader's.",
    "none": "Your notebook ran without a sandbox (none was available on the grading machine).",
}
"""What the report says for each value of the ``sandbox`` column (other values are shown as they are)."""
SANDBOX_UNKNOWN = "The grader did not record whether your notebook ran in a sandbox."


@dataclass(frozen=True)
class VisibleTest:
    """One visible test's outcome, as the learner sees it."""

    name: str
    passed: bool
    status: str
    points: float
    max_points: float
    message: str


@dataclass(frozen=True)
class ExerciseFeedback:
    """One exercise of a report: status, flags, points, visible tests and hidden-test counts."""

    exercise: str
    title: str
    status: str
    points: float
    max_points: float
    flags: tuple[str, ...]
    message: str
    tests: tuple[VisibleTest, ...]
    hidden_passed: int
    hidden_total: int
    hidden_points: float
    hidden_max: float


@dataclass(frozen=True)
class Report:
    """Everything one learner's report shows (nothing instructor-only is kept in it)."""

    submission: str
    lesson: str
    sha256: str
    points: float
    max_points: float
    sandbox: str | None
    exercises: tuple[ExerciseFeedback, ...]
    problem: tuple[str, str] | None  # (status, message) of a submission-level row, e.g. unreadable


# ---- from gradebook rows to reports ------------------------------------------------------------


def _passed(test: dict) -> bool:
    if "passed" in test and isinstance(test["passed"], bool):
        return test["passed"]
    return test.get("status") == "passed"


def _flags(row: dict) -> tuple[str, ...]:
    flags = row.get("flags") or ""
    if isinstance(flags, list | tuple):
        return tuple(str(f) for f in flags if f)
    return tuple(f for f in str(flags).split(";") if f)


def _num(value, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _leaks_hidden(message: str, hidden: list[dict]) -> bool:
    """Whether ``message`` repeats part of a hidden test's message or names a hidden test."""
    for t in hidden:
        name = str(t.get("name", ""))
        if name and re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", message):
            return True
        text = str(t.get("message") or "")
        for part in (text[:60], text[-60:]):
            if len(part.strip()) >= 12 and part in message:
                return True
    return False


def exercise_feedback(row: dict) -> ExerciseFeedback:
    """The learner's view of one exercise row: visible tests in full, hidden ones as counts."""
    tests = list(row.get("tests") or [])
    hidden = [t for t in tests if t.get("hidden")]
    visible = [t for t in tests if not t.get("hidden")]
    hidden_points = _num(row.get("hidden_points"), sum(_num(t.get("points")) for t in hidden if _passed(t)))
    hidden_max = _num(row.get("hidden_max"), sum(_num(t.get("max_points", t.get("points"))) for t in hidden))
    message = str(row.get("message") or "")
    if hidden and _leaks_hidden(message, hidden):
        message = ""
    return ExerciseFeedback(
        exercise=str(row.get("exercise") or ""),
        title=str(row.get("title") or ""),
        status=str(row.get("status") or ""),
        points=_num(row.get("points")),
        max_points=_num(row.get("max_points")),
        flags=_flags(row),
        message=message,
        tests=tuple(
            VisibleTest(
                name=str(t.get("name", "")),
                passed=_passed(t),
                status=str(t.get("status") or ("passed" if _passed(t) else "failed")),
                points=_num(t.get("points")),
                max_points=_num(t.get("max_points", t.get("points"))),
                message=str(t.get("message") or ""),
            )
            for t in visible
        ),
        hidden_passed=sum(_passed(t) for t in hidden),
        hidden_total=len(hidden),
        hidden_points=hidden_points,
        hidden_max=hidden_max,
    )


def group_rows(rows: Iterable[dict]) -> dict[str, list[dict]]:
    """Gradebook rows by submission, in first-seen order."""
    out: dict[str, list[dict]] = {}
    for row in rows:
        if not isinstance(row, dict) or "submission" not in row:
            raise ValueError(f"rows: every row must be a dict with a 'submission' key, got {row!r:.80}")
        out.setdefault(str(row["submission"]), []).append(row)
    return out


def learner_report(rows: Sequence[dict]) -> Report:
    """The report of one submission from its gradebook rows (all with the same ``submission``)."""
    if not rows:
        raise ValueError("rows: a report needs at least one gradebook row")
    names = {r["submission"] for r in rows}
    if len(names) != 1:
        raise ValueError(f"rows: all rows of a report must have one submission, got {sorted(names)}")
    first = rows[0]
    sandboxes = {r.get("sandbox") for r in rows if r.get("sandbox")}
    problem_rows = [r for r in rows if not r.get("exercise")]
    return Report(
        submission=str(first["submission"]),
        lesson=str(first.get("lesson") or ""),
        sha256=str(first.get("sha256") or ""),
        points=sum(_num(r.get("points")) for r in rows),
        max_points=sum(_num(r.get("max_points")) for r in rows),
        sandbox=sandboxes.pop() if len(sandboxes) == 1 else (", ".join(sorted(sandboxes)) or None),
        exercises=tuple(exercise_feedback(r) for r in rows if r.get("exercise")),
        problem=(str(problem_rows[0].get("status")), str(problem_rows[0].get("message") or ""))
        if problem_rows
        else None,
    )


# ---- words ---------------------------------------------------------------------------------------


def _pts(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def status_text(status: str) -> str:
    """A status in plain words (:data:`fedlab.grader.STATUSES`), or the status itself if unknown."""
    return grader.STATUSES.get(status, status)


def flag_text(flag: str) -> str:
    """A flag in plain words (:data:`fedlab.grader.FLAGS`), or the flag itself if unknown."""
    return grader.FLAGS.get(flag, flag)


def sandbox_text(sandbox: str | None) -> str:
    """The report's sandbox line for a ``sandbox`` column value (None: not recorded)."""
    if not sandbox:
        return SANDBOX_UNKNOWN
    return SANDBOX_TEXT.get(sandbox, f"Sandbox: {sandbox}.")


def hidden_text(ex: ExerciseFeedback) -> str:
    """'2 of 3 hidden tests passed (1 of 2 points)', or '' when the exercise has none."""
    if not ex.hidden_total:
        return ""
    noun = "hidden test" if ex.hidden_total == 1 else "hidden tests"
    return (
        f"{ex.hidden_passed} of {ex.hidden_total} {noun} passed "
        f"({_pts(ex.hidden_points)} of {_pts(ex.hidden_max)} points)"
    )


def failure_messages(ex: ExerciseFeedback, *, skip: str = "") -> list[tuple[str, list[str]]]:
    """``[(message, [test names])]`` of the failed visible tests, one entry per distinct message.

    A message equal to ``skip`` (the exercise's first message, already shown) is left out.
    """
    grouped: dict[str, list[str]] = {}
    for t in ex.tests:
        if not t.passed and t.message and t.message != skip:
            grouped.setdefault(t.message, []).append(t.name)
    return list(grouped.items())


def _tests_label(names: list[str], show) -> str:
    return ("Test " if len(names) == 1 else "Tests ") + ", ".join(show(n) for n in names)


# ---- Markdown ------------------------------------------------------------------------------------

_MD_PUNCT = re.compile(r"([\\`*_{}\[\]<>#|!~&$])")


def md_text(text: str) -> str:
    """Learner-controlled text as literal Markdown inline text: markup and HTML characters backslash-escaped.

    Used mid-line only (after a heading mark, a list mark or a table bar), so
    line-start syntax (``1.``, ``-``) cannot apply; newlines become spaces.
    """
    return _MD_PUNCT.sub(r"\\\1", " ".join(str(text).split()))


def md_block(text: str) -> str:
    """A fenced code block that shows ``text`` literally (the fence is longer than any backtick run in it)."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def markdown(report: Report) -> str:
    """The report as Markdown (learner-controlled text escaped or fenced)."""
    out = [
        f"# Feedback: {md_text(report.submission)}",
        "",
        f"- Lesson: {md_text(report.lesson or '?')}",
        f"- Total: **{_pts(report.points)} of {_pts(report.max_points)} points**",
        f"- File checksum (SHA-256): {md_text(report.sha256 or 'not recorded')}",
        f"- {sandbox_text(report.sandbox)}",
        "",
    ]
    if report.problem:
        status, message = report.problem
        out += [
            f"**Your notebook could not be graded: {md_text(status)}** ({md_text(status_text(status))}).",
            "",
        ]
        if message:
            out += [md_block(message), ""]
    for ex in report.exercises:
        out += [
            f"## Exercise {md_text(ex.exercise)}: {md_text(ex.title)}",
            "",
            f"**{_pts(ex.points)} of {_pts(ex.max_points)} points**, status `{ex.status}`: "
            f"{md_text(status_text(ex.status))}.",
            "",
        ]
        for flag in ex.flags:
            out.append(f"- Note ({md_text(flag)}): {md_text(flag_text(flag))}")
        if ex.flags:
            out.append("")
        if ex.message:
            out += ["What the grader noticed first:", "", md_block(ex.message), ""]
        if ex.tests:
            out += ["| test | result | points |", "|---|---|---|"]
            for t in ex.tests:
                result = "passed" if t.passed else md_text(t.status)
                out.append(f"| {md_text(t.name)} | {result} | {_pts(t.points)} / {_pts(t.max_points)} |")
            out.append("")
            for message, names in failure_messages(ex, skip=ex.message):
                out += [f"{_tests_label(names, md_text)}:", "", md_block(message), ""]
        if ex.hidden_total:
            out += [f"Hidden tests: {hidden_text(ex)}.", ""]
    return "\n".join(out).rstrip() + "\n"


# ---- HTML ----------------------------------------------------------------------------------------

_CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 52em; margin: 2em auto;
       padding: 0 1em; color: #1d2330; background: #fff; }
h1 { font-size: 1.5em; word-break: break-all; } h2 { font-size: 1.15em; margin-top: 1.8em; }
.total { font-size: 1.2em; font-weight: 600; }
.meta { color: #4a5366; } code, pre { font-family: ui-monospace, Menlo, Consolas, monospace; }
pre { white-space: pre-wrap; word-break: break-word; background: #f4f5f8; padding: .6em .8em; border-radius: 4px; }
table { border-collapse: collapse; margin: .5em 0; } th, td { text-align: left; padding: .25em .8em;
       border-bottom: 1px solid #dde1ea; }
.passed { color: #1a7f37; } .failed { color: #b42318; } .status { font-weight: 600; }
.flag { background: #fff6db; padding: .2em .5em; border-radius: 3px; }
.problem { background: #fdecea; padding: .6em .8em; border-radius: 4px; }
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def html_page(report: Report) -> str:
    """The report as one self-contained HTML page: every learner-controlled text escaped, no script."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Feedback: {_e(report.submission)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f'<h1>Feedback: <span class="submission">{_e(report.submission)}</span></h1>',
        f'<p class="total">{_e(_pts(report.points))} of {_e(_pts(report.max_points))} points</p>',
        '<ul class="meta">',
        f"<li>Lesson: {_e(report.lesson or '?')}</li>",
        f"<li>File checksum (SHA-256): <code>{_e(report.sha256 or 'not recorded')}</code></li>",
        f'<li class="sandbox">{_e(sandbox_text(report.sandbox))}</li>',
        "</ul>",
    ]
    if report.problem:
        status, message = report.problem
        parts.append(
            f'<div class="problem"><p><strong>Your notebook could not be graded: {_e(status)}</strong> '
            f"({_e(status_text(status))}).</p>" + (f"<pre>{_e(message)}</pre>" if message else "") + "</div>"
        )
    for ex in report.exercises:
        ok = "passed" if ex.status == "ok" else "failed"
        parts += [
            f'<section class="exercise" id="ex-{_e(ex.exercise)}">',
            f"<h2>Exercise {_e(ex.exercise)}: {_e(ex.title)}</h2>",
            f'<p><span class="status {ok}">{_e(_pts(ex.points))} of {_e(_pts(ex.max_points))} points, '
            f"{_e(ex.status)}</span>: {_e(status_text(ex.status))}.</p>",
        ]
        for flag in ex.flags:
            parts.append(f'<p class="flag">Note ({_e(flag)}): {_e(flag_text(flag))}</p>')
        if ex.message:
            parts.append(f"<p>What the grader noticed first:</p><pre>{_e(ex.message)}</pre>")
        if ex.tests:
            parts.append("<table><thead><tr><th>test</th><th>result</th><th>points</th></tr></thead><tbody>")
            for t in ex.tests:
                cls = "passed" if t.passed else "failed"
                parts.append(
                    f'<tr><td><code>{_e(t.name)}</code></td><td class="{cls}">{_e(t.status)}</td>'
                    f"<td>{_e(_pts(t.points))} / {_e(_pts(t.max_points))}</td></tr>"
                )
            parts.append("</tbody></table>")
            for message, names in failure_messages(ex, skip=ex.message):
                label = _tests_label(names, lambda n: f"<code>{_e(n)}</code>")
                parts.append(f"<p>{label}:</p><pre>{_e(message)}</pre>")
        if ex.hidden_total:
            parts.append(f'<p class="hidden-tests">Hidden tests: {_e(hidden_text(ex))}.</p>')
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# ---- files ---------------------------------------------------------------------------------------


def safe_stem(name: str, taken: set[str]) -> str:
    """A file stem for a submission name: only ``A-Za-z0-9._-``, no leading dot, unique (case-insensitively)."""
    stem = re.sub(r"\.ipynb$", "", str(name), flags=re.IGNORECASE)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem)
    stem = re.sub(r"\.{2,}", ".", stem).lstrip("._")[:80].rstrip("_") or "submission"
    if stem.lower() in {"index", "con", "prn", "aux", "nul"}:
        stem = f"{stem}_"
    candidate, k = stem, 1
    while candidate.lower() in taken:
        k += 1
        candidate = f"{stem}-{k}"
    taken.add(candidate.lower())
    return candidate


def write_reports(rows: Sequence[dict], out_dir: str | os.PathLike) -> dict[str, tuple[Path, Path]]:
    """Write ``<stem>.html`` and ``<stem>.md`` per submission, and ``index.csv``, into ``out_dir``.

    Returns ``{submission: (html_path, md_path)}``. Files are written
    atomically; the folder is created if needed.
    """
    from fedlab import course

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir={str(out_dir)!r}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    written: dict[str, tuple[Path, Path]] = {}
    for submission, sub_rows in group_rows(rows).items():
        report = learner_report(sub_rows)
        stem = safe_stem(submission, taken)
        html_path, md_path = out / f"{stem}.html", out / f"{stem}.md"
        course.write_atomic(html_path, html_page(report).encode("utf-8"))
        course.write_atomic(md_path, markdown(report).encode("utf-8"))
        written[submission] = (html_path, md_path)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["submission", "html", "markdown"])
    for submission, (h, m) in written.items():
        writer.writerow([submission, h.name, m.name])
    course.write_atomic(out / "index.csv", buf.getvalue().encode("utf-8"))
    return written


def read_gradebook(path: str | os.PathLike) -> list[dict]:
    """The rows of a JSON gradebook written by ``python -m fedlab grade --json``."""
    try:
        rows = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"gradebook={str(path)!r}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"gradebook={str(path)!r}: not a JSON gradebook ({err})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "submission" in r for r in rows):
        raise ValueError(f"gradebook={str(path)!r}: expected a JSON list of rows with a 'submission' key")
    return rows


# ---- command line --------------------------------------------------------------------------------


def add_command(sub) -> None:
    """``python -m fedlab feedback grades.json --out DIR``."""
    p = sub.add_parser("feedback", help="write one HTML + Markdown report per submission from a JSON gradebook")
    p.add_argument("gradebook", help="the JSON gradebook (python -m fedlab grade ... --json grades.json)")
    p.add_argument("--out", required=True, help="folder for the reports (created if needed)")
    p.set_defaults(run=run_cli)


def run_cli(args, out=print) -> int:
    """Run ``python -m fedlab feedback``; returns the exit code (2 for a bad gradebook or folder)."""
    try:
        written = write_reports(read_gradebook(args.gradebook), args.out)
    except ValueError as err:
        out(f"error: {err}")
        return 2
    out(f"wrote {len(written)} feedback report(s) (HTML and Markdown) and index.csv to {args.out}")
    return 0
