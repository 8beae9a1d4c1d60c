"""Grade a room's submitted notebooks: a fresh kernel per submission, every test, explicit statuses.

``python -m fedlab grade room/*.ipynb --lesson 02 --out grades.csv`` grades
a room like this:

1. **Snapshot first.** Every file's bytes are read once, hashed (SHA-256)
   and copied into the grader's own temporary folder (mode 0700) before any
   kernel starts (:func:`snapshot`); submissions are never written, moved or
   renamed, and a kernel is never told where any notebook is. The grading
   code (every ``.py`` of the package and the hidden tests) is hashed too
   (:func:`code_manifest`) and checked before and after each submission: if a
   submission rewrote it, the rest of the room gets ``error`` rows saying so.
   (Python's ``__pycache__`` is not covered: a read-only package, the
   sandbox's job, is what closes that.) A file that is
   not a readable notebook gets one row with status ``unreadable``; a
   notebook of another lesson ``wrong_lesson``.
2. Per submission, start a fresh kernel (``python3`` of this environment,
   ``PYTHONHASHSEED=0``, one thread, an empty temporary working folder, its
   own process session; see :class:`Launch` for how a sandbox plugs in) and
   run, in notebook order: the cells tagged ``setup`` and ``exercise`` in
   full, and from every other code cell only its top-level
   ``import``/``from`` statements, ``def``/``class`` definitions and literal
   constants (``LRS = (0.05, 0.1)``). **The grader runs your setup and
   exercise cells and the definitions from your other cells; experiments are
   not re-run.** Check cells are not run. (An error in those partial cells
   is not flagged: it comes from running part of a cell; if an answer needed
   what failed, its tests say so.)
3. **The verdict is computed in the grader's process, never in the kernel.**
   For every exercise of the lesson (:func:`fedlab.checks.lesson_exercises`)
   the grader runs *every* test (not only the quick ones the check cell runs)
   plus the exercise's hidden tests (:func:`hidden_tests`), in its own
   process, with its own ``fedlab.checks`` and numpy. The ``answer`` a test
   receives is a :class:`RemoteAnswer`: calling it pickles the arguments,
   sends them to the kernel, calls the learner's object there
   (:func:`fedlab.wire.serve`) and reads back the return value and every
   argument's state after the call, encoded by :mod:`fedlab.wire`'s typed
   codec (JSON; arrays and tensors as dtype, shape and bytes; fedlab's
   records field by field; never unpickled). A value the codec cannot carry
   fails the test as "cannot receive". So patching ``checks``, ``numpy`` or
   ``builtins`` in the kernel changes nothing but the learner's own outputs.
   Replies are read only from the execution's result message of that very
   call and must carry a random per-call nonce: printed text (a stream
   message) is never read, so it cannot imitate a result.
4. **Fresh inputs.** Tests draw random inputs from
   :func:`fedlab.checks.test_rng`, seeded in the grader from a random salt
   per grading run (``--salt`` to reproduce a run; printed at the end). An
   answer hard-coded to the notebook's inputs fails; all submissions of one
   run see the same inputs, so a run is fair and deterministic.
5. Timeouts: a test's calls of the answer share the per-test timeout of
   kernel time. A test that runs too long is interrupted (status
   ``timeout``, flag ``timeout``) and **the exercise's remaining tests get
   ``timeout`` without running**: an endless loop costs one timeout per
   exercise. A kernel that dies or ignores the interrupt is restarted and the
   cells of step 2 are run again (a cell that hung or killed the kernel is
   then reduced to its definitions; after :data:`MAX_RESTARTS` restarts the
   remaining tests get ``error``). A per-submission budget bounds the whole
   thing; what it leaves unrun is ``budget_exceeded``. A cell that raises or
   hangs is recorded in the message and ``flags`` of the rows it concerns,
   and grading goes on. When a submission is done its kernel's whole process
   session is killed (SIGKILL), so nothing it started outlives it.
6. Compare the check cells with the lesson's reference notebook; an edited or
   deleted check cell never changes the points but flags the exercise's row
   ``checks_tampered``.
7. The gradebook is written by the grader's main process only, atomically,
   after every submission is done (``--out``, ``--json``); no kernel is told
   its path (not in a kernel's environment or argv).

The gradebook has one row per (submission, exercise) with :data:`COLUMNS`
(visible and hidden points apart); submission-level problems give one row
with an empty ``exercise``, 0 points out of the lesson's total. Statuses: see
:data:`STATUSES`, flags :data:`FLAGS`.

**Hidden tests** are instructor-only: ``instructor/hidden/lessonNN.py`` at
the repository's root (``--hidden DIR`` for another folder), outside the
``fedlab`` package so they are not installed with it, loaded by the grader in
its own process only. The notebook's ``check`` (also with ``thorough=True``)
runs the visible tests only.

**The sandbox.** With ``--sandbox auto`` (the default) every kernel runs in
a :mod:`fedlab.sandbox` bubblewrap sandbox where one can be made (Linux with
``bwrap``): no network, a read-only view of ``fedlab/``, ``datasets/`` and
the Python environment only (:func:`private_paths`, the snapshot and the
gradebook's folder are also masked should they lie inside those), its own
writable folder (:attr:`Kernel.cwd`), its own PID namespace (nothing it
starts outlives it, it cannot see or signal the grader), and the limits of
``--memory-mb`` / ``--processes`` (:class:`fedlab.sandbox.SandboxLimits`):
hitting them flags the rows ``memory_limit`` / ``process_limit`` and grading
goes on. ``--sandbox bwrap`` refuses to grade without it; ``--sandbox none``
and a machine without it (macOS) grade bare, say so once on stderr
(:func:`fedlab.sandbox.warn_once`), and every row's ``sandbox`` column says
``none``: the kernel then runs with your permissions and can read what you
can read (the hidden tests, the solutions); the verdict still cannot be
forged from inside it.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import os
import queue
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fedlab import checks
from fedlab import course as _course
from fedlab import sandbox as _sandbox
from fedlab.wire import (  # noqa: F401 - AnswerRaised, Unreceivable, loopback_transport: the grader's API too
    AnswerMissing,
    AnswerRaised,
    RemoteAnswer,
    Unreceivable,
    loopback_transport,
)

STATUSES: dict[str, str] = {
    "ok": "every test passed",
    "partial": "some tests passed",
    "failed": "no test passed (wrong answers or errors in the answer)",
    "not_attempted": "the answer still raises the stub's NotImplementedError",
    "missing_answer": "no object of the answer's name was defined (renamed, deleted, or its cell failed)",
    "timeout": "no test passed and one ran past the per-test timeout (the exercise's later tests were not run)",
    "budget_exceeded": "the per-submission time budget ran out before these tests",
    "error": "the grader could not run the tests (kernel died or could not start)",
    "unreadable": "the file is not a readable notebook (missing, bad JSON, not nbformat)",
    "wrong_lesson": "the notebook belongs to another lesson than --lesson",
    "unknown_lesson": "no lesson could be told from the notebook (or the lesson has no exercises)",
}
"""Every status a gradebook row can have, with what it means."""

FLAGS: dict[str, str] = {
    "checks_tampered": "the exercise's check cell was edited or deleted (points are unaffected)",
    "cell_error": "a setup or exercise cell raised an exception at top level (or made the kernel die)",
    "cell_timeout": "a cell ran past the per-cell timeout and was stopped",
    "kernel_restarted": "the kernel died or ignored an interrupt and was restarted",
    "timeout": "a test timed out; the exercise's later tests were not run (status timeout or partial)",
    "budget_exceeded": "some tests were not run for lack of budget (status budget_exceeded or partial)",
    "checks_unverified": "the reference check cells could not be read, so tampering was not checked",
    "memory_limit": (
        "the code asked for more memory than the sandbox allows one process (--memory-mb); it got a MemoryError"
        " or its kernel was stopped, and grading went on"
    ),
    "process_limit": (
        "the code tried to start more processes or threads than the sandbox allows (--processes, e.g. a fork"
        " bomb); it got an error, and grading went on"
    ),
}

COLUMNS = (
    "submission",
    "lesson",
    "exercise",
    "title",
    "points",
    "max_points",
    "visible_points",
    "visible_max",
    "hidden_points",
    "hidden_max",
    "status",
    "tests_passed",
    "tests_total",
    "flags",
    "message",
    "sha256",
    "sandbox",
)
"""The gradebook's columns (CSV header; JSON rows have these keys plus ``tests``).

- ``submission``: the file's name (relative path when two share a name);
  ``lesson``, ``exercise`` (empty on a submission-level row), ``title``.
- ``points`` / ``max_points``: the totals, visible plus hidden tests;
  ``visible_points`` / ``visible_max`` and ``hidden_points`` / ``hidden_max``:
  the same split by the tests a learner can run (``check``) and the
  instructor-only ones (:func:`hidden_tests`). ``points = visible_points +
  hidden_points`` and ``max_points = visible_max + hidden_max``.
- ``status``: one of :data:`STATUSES`; ``flags``: ``;``-separated names from
  :data:`FLAGS`.
- ``tests_passed`` / ``tests_total``: over all tests, hidden included.
- ``message``: what went wrong, first the notes (cells that raised or hung),
  then the first failing *visible* test's message; hidden tests appear only
  as ``k of n hidden test(s) failed`` (a learner may see this column).
- ``sha256``: of the submitted file's bytes, as read before any kernel started.
- ``sandbox``: how the kernel was confined: ``bwrap`` (:mod:`fedlab.sandbox`) or ``none`` (not at all).

The JSON's ``tests`` lists every test as ``{name, status, points, max_points,
message, hidden}``; hidden tests' messages are there, for the instructor only.
"""

TIMEOUT_PER_TEST = 30.0
TIMEOUT_PER_CELL = 120.0
BUDGET_PER_SUBMISSION = 600.0
STARTUP_TIMEOUT = 90.0
INTERRUPT_GRACE = 5.0
STALL = 1.0  # seconds a wake-up may be late before it counts as the machine stalling
MESSAGE_LIMIT = 300
INLINE_REQUEST = 4096  # characters of a call's arguments sent in the code itself; more go through a file
MAX_RESTARTS = 4
TOO_MANY_RESTARTS = ("error", f"grading stopped: the kernel died or hung {MAX_RESTARTS + 1} times")
KERNEL_ENV = {
    "PYTHONHASHSEED": "0",
    "MPLBACKEND": "Agg",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
}
"""Set in every grading kernel: deterministic hashing, headless plots, one thread per kernel."""


@dataclass(frozen=True)
class Limits:
    """Time limits of a grading run, in seconds."""

    timeout_per_test: float = TIMEOUT_PER_TEST
    timeout_per_cell: float = TIMEOUT_PER_CELL
    budget_per_submission: float = BUDGET_PER_SUBMISSION

    def __post_init__(self):
        from fedlab import validate

        for name in ("timeout_per_test", "timeout_per_cell", "budget_per_submission"):
            validate.positive_float(name, getattr(self, name))


# ---- the learner's answer, seen from the grader -------------------------------------------------


class KernelTrouble(BaseException):
    """A call of the answer could not finish: it ran out of time, the kernel died, or the budget ran out.

    A ``BaseException`` so that a test's ``except Exception`` never mistakes it for the answer's own error.
    """

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


# ---- reading a submission ----------------------------------------------------------------------


class Unreadable(ValueError):
    """A submission is not a readable notebook."""


def parse_notebook(data: bytes):
    """Parse a submission's bytes into an nbformat v4 notebook, or raise :class:`Unreadable` saying why."""
    import logging

    import nbformat

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise Unreadable(f"not UTF-8 text ({err})") from None
    if not text.strip():
        raise Unreadable("the file is empty")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise Unreadable(f"not valid JSON: {err}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("cells", raw.get("worksheets")), list):
        raise Unreadable("valid JSON but not a Jupyter notebook (no list of cells)")
    logger = logging.getLogger("NotebookApp")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)  # nbformat logs (not raises) schema problems; we check what we use
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as err:  # noqa: BLE001 - any failure to parse is "unreadable"
        raise Unreadable(f"not a readable notebook ({type(err).__name__}: {err})") from None
    finally:
        logger.setLevel(previous)
    for i, cell in enumerate(nb.get("cells", [])):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            raise Unreadable(f"cell {i} is not a notebook cell")
        if not isinstance(cell.get("source", ""), str | list):
            raise Unreadable(f"cell {i} has no text source")
    return nb


def lessons_in_cells(nb) -> set[str]:
    """Lesson ids named by a notebook's exercise/check cells (metadata or check calls)."""
    found = set()
    for cell in nb.get("cells", []):
        ids = _course.cell_exercises(cell) + [x for x in [_course.cell_check(cell)] if x]
        parsed = _course.parse_check(_course.cell_source(cell)) if cell.get("cell_type") == "code" else None
        if parsed:
            ids.append(parsed[0])
        found.update(i.split(".")[0] for i in ids if _course.ID_RE.match(i))
    return found


def reference_checks(lesson: str, reference: str | os.PathLike | None = None) -> tuple[dict[str, str], str]:
    """The check cells a submission of ``lesson`` should have: ``({exercise_id: source}, where_from)``.

    From ``reference`` if given (a source or student notebook of that lesson),
    else from ``notebooks/NN_*.ipynb``, else the convention
    ``check("NN.k", answer)`` for each registered exercise.
    """
    candidates = [Path(reference)] if reference else sorted(_course.NOTEBOOKS_DIR.glob(f"{lesson}_*.ipynb"))
    for path in candidates:
        nb = _course.read_notebook(path)
        ref_lesson = _course.notebook_lesson(nb)
        if ref_lesson != lesson:
            if reference:
                raise ValueError(
                    f"reference={str(reference)!r}: is a notebook of lesson {ref_lesson!r}, not {lesson!r}"
                )
            continue
        found = {}
        for cell in nb.cells:
            ex_id = _course.cell_check(cell) or (_course.parse_check(_course.cell_source(cell)) or (None,))[0]
            if cell.cell_type == "code" and ex_id:
                found[ex_id] = _course.cell_source(cell).strip()
        return found, str(path)
    return {ex.id: f'check("{ex.id}", {ex.answer})' for ex in checks.lesson_exercises(lesson)}, "the convention"


def tampered_checks(nb, expected: dict[str, str]) -> dict[str, str]:
    """``{exercise_id: "edited" | "deleted"}`` for check cells that differ from ``expected``."""
    found: dict[str, list[str]] = {}
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        src = _course.cell_source(cell).strip()
        ex_id = _course.cell_check(cell) or (_course.parse_check(src) or (None,))[0]
        if ex_id:
            found.setdefault(ex_id, []).append(src)
    out = {}
    for ex_id, want in expected.items():
        if ex_id not in found:
            out[ex_id] = "deleted"
        elif want not in found[ex_id] or len(found[ex_id]) > 1:
            out[ex_id] = "edited"
    return out


# ---- which code runs ---------------------------------------------------------------------------


@dataclass
class Step:
    """One piece of code the grader runs before the tests: a whole cell, or a cell's definitions."""

    cell: int
    kind: str  # "setup" | "exercise" | "definitions"
    code: str
    exercises: tuple = ()
    definitions: str = ""  # the cell's imports/defs only: what runs again after a restart if the cell hung


_KEPT_NODES = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _is_constant(node) -> bool:
    """A top-level ``NAME = <literal>`` (``LRS = (0.05, 0.1)``): cheap, and often a default of a def."""
    if isinstance(node, ast.Assign):
        targets, value = node.targets, node.value
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        targets, value = [node.target], node.value
    else:
        return False
    names = all(
        isinstance(t, ast.Name) or (isinstance(t, ast.Tuple) and all(isinstance(e, ast.Name) for e in t.elts))
        for t in targets
    )
    try:
        ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return names


def definitions_only(source: str) -> str:
    """The top-level ``import``/``from`` statements, ``def``/``class`` definitions and literal constants of a cell.

    Returns '' if there are none. Literal constants are assignments like
    ``LRS = (0.05, 0.1)`` (nothing but literals on the right), kept because
    definitions often use them as defaults. IPython syntax (``%magic``,
    ``!cmd``) is translated first; a cell that does not parse contributes nothing.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        try:
            from IPython.core.inputtransformer2 import TransformerManager

            tree = ast.parse(TransformerManager().transform_cell(source))
        except Exception:  # noqa: BLE001 - a cell that does not parse contributes nothing
            return ""
    kept = [node for node in tree.body if isinstance(node, _KEPT_NODES) or _is_constant(node)]
    return ast.unparse(ast.Module(body=kept, type_ignores=[])) if kept else ""


def plan(nb) -> list[Step]:
    """The code the grader runs for a submission, in notebook order (see the module docstring)."""
    steps = []
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        tags, src = _course.cell_tags(cell), _course.cell_source(cell)
        if "check" in tags or _course.parse_check(src):
            continue
        defs = definitions_only(src)
        if "setup" in tags or "exercise" in tags:
            kind = "exercise" if "exercise" in tags else "setup"
            steps.append(Step(i, kind, src, tuple(_course.cell_exercises(cell)), defs))
        elif defs:
            steps.append(Step(i, "definitions", defs, (), defs))
    return steps


# ---- the kernel --------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one execution did: ``state`` is ok, error, timeout (kernel usable), stuck (restarted) or died."""

    state: str
    ename: str = ""
    evalue: str = ""
    result: str | None = None
    seconds: float = 0.0


async def _wait_for_ready(self, timeout: float | None = None) -> None:
    """Like ``KernelClient.wait_for_ready``, but sends *one* shell request, never a stream of them.

    jupyter_client re-sends ``kernel_info_request`` every second until a reply
    comes. On a slow start that queues several requests, and ipykernel 7.2
    can miss one that arrives while it sends the previous reply and then
    never reads its shell socket again (ipython/ipykernel#1554): the kernel
    looks hung from birth. Here one shell request waits for its reply, and
    IOPub's connection is confirmed by probing the control channel, which
    that bug does not touch.
    """
    from jupyter_client.utils import ensure_async

    deadline = time.monotonic() + (1e9 if timeout is None else timeout)
    msg_id = self.kernel_info()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"the kernel did not answer kernel_info within {timeout:g} s")
        try:
            msg = await ensure_async(self.shell_channel.get_msg(timeout=min(left, 1.0)))
        except queue.Empty:
            if not await ensure_async(self.is_alive()):
                raise RuntimeError("the kernel died before replying to kernel_info") from None
            continue
        if msg.get("parent_header", {}).get("msg_id") == msg_id:
            self._handle_kernel_info_reply(msg)
            break
    while True:  # IOPub: the status messages of a request prove it is connected
        try:
            await ensure_async(self.iopub_channel.get_msg(timeout=0.5))
            break
        except queue.Empty:
            if time.monotonic() > deadline:
                raise RuntimeError("the kernel's IOPub channel did not connect") from None
            self.control_channel.send(self.session.msg("kernel_info_request"))
    while True:  # flush what is left of the start-up chatter
        try:
            await ensure_async(self.iopub_channel.get_msg(timeout=0.2))
        except queue.Empty:
            break


def _client_classes():
    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.blocking import BlockingKernelClient
    from jupyter_client.utils import run_sync

    class Blocking(BlockingKernelClient):
        wait_for_ready = run_sync(_wait_for_ready)

    class Async(AsyncKernelClient):
        wait_for_ready = _wait_for_ready

    return Blocking, Async


def kernel_manager(*, asynchronous: bool = False, box: _sandbox.Sandbox | None = None):
    """A kernel manager for an ipykernel of *this* Python, whatever ``python3`` means in other kernelspecs.

    ``asynchronous=True`` gives an ``AsyncKernelManager`` (what nbclient wants).
    Its clients wait for the kernel with :func:`_wait_for_ready`; ``box`` is a
    :class:`fedlab.sandbox.Sandbox` the kernel runs in. The kernel's command line is
    :func:`fedlab.sandbox.local_kernel_manager`'s.
    """
    from jupyter_client import AsyncKernelManager, KernelManager

    blocking, async_ = _client_classes()
    cls, client = (AsyncKernelManager, async_) if asynchronous else (KernelManager, blocking)
    return _sandbox.local_kernel_manager(box, cls=cls, client_factory=client)


@dataclass(frozen=True)
class Launch:
    """How a grading kernel is started: in a sandbox or not, extra environment variables.

    ``sandbox`` is ``"bwrap"`` (each kernel in its own :class:`fedlab.sandbox.Sandbox`, with ``limits``,
    a :class:`fedlab.sandbox.SandboxLimits`, and the paths of ``hide`` masked) or ``"none"`` (run
    directly, the default of this class); it is what the gradebook's ``sandbox`` column says.
    :func:`sandboxed` makes one from the ``--sandbox`` choice; :func:`grade` without a ``launch`` uses
    ``sandboxed("auto")``.
    """

    env: tuple = ()  # (name, value) pairs, set after KERNEL_ENV
    sandbox: str = "none"
    hide: tuple = ()  # paths masked in the sandbox (the hidden tests, the snapshot, the gradebook, solutions/)
    limits: _sandbox.SandboxLimits | None = None  # None: SandboxLimits()


SANDBOX_CHOICES = ("auto", "bwrap", "none")


def sandboxed(
    mode: str = "auto",
    *,
    limits: _sandbox.SandboxLimits | None = None,
    hide: Sequence[str | os.PathLike] = (),
    warn: bool = True,
) -> Launch:
    """The :class:`Launch` for ``--sandbox mode``: ``auto`` (bubblewrap if :func:`fedlab.sandbox.probe`
    finds it works, else none), ``bwrap`` (a ValueError saying why if it is not available) or ``none``.

    Grading without a sandbox prints :func:`fedlab.sandbox.warning` once per process (``warn=False``: not).
    """
    if mode not in SANDBOX_CHOICES:
        raise ValueError(f"sandbox={mode!r}; allowed: {', '.join(SANDBOX_CHOICES)}")
    if limits is not None and not isinstance(limits, _sandbox.SandboxLimits):
        raise ValueError(f"limits={limits!r}; allowed: a fedlab.sandbox.SandboxLimits or None")
    info = _sandbox.probe() if mode != "none" else _sandbox.SandboxInfo("none", "grading with --sandbox none, as asked")
    if info.kind != "bwrap":
        if mode == "bwrap":
            raise ValueError(f"sandbox='bwrap' but no sandbox can be made here: {info.reason}")
        if warn:
            _sandbox.warn_once(info)
        return Launch()
    hide = tuple(sorted({os.path.realpath(p) for p in hide}))
    return Launch(sandbox="bwrap", hide=hide, limits=limits or _sandbox.SandboxLimits())


def private_paths(hidden: str | os.PathLike | None = None, outputs: Sequence[str | os.PathLike] = ()) -> list[str]:
    """What a sandboxed kernel must not see: ``instructor/``, the hidden tests' folder, ``solutions/`` and
    the folders the gradebook is written to (``outputs``: the files; a folder the kernel needs, such as the
    course's ``fedlab/``, is not masked whole, only the file).

    The sandbox shows only ``fedlab/``, ``datasets/`` and the Python environment, so these are invisible
    anyway unless they lie inside one of those; masking them too covers that case.
    """
    paths = [HIDDEN_DIR.parent, Path(hidden) if hidden is not None else HIDDEN_DIR, _course.SOLUTIONS_DIR]
    needed = _sandbox.Sandbox._shown(_course.ROOT.resolve(), (), sys.executable)
    for out in outputs:
        folder = os.path.dirname(os.path.realpath(out))
        contains_needed = any(_sandbox._under(n, folder) for n in needed)
        paths.append(os.path.realpath(out) if contains_needed else folder)
    return sorted({os.path.realpath(p) for p in paths})


def kernel_env(launch: Launch = Launch()) -> dict:
    """The environment of a grading kernel: this process's, :data:`KERNEL_ENV`, the launch's extras.

    Nothing of the grading run (output paths, the inputs' salt, hidden tests) is in it.
    """
    env = dict(os.environ)
    env.update(KERNEL_ENV)
    env["PYTHONPATH"] = os.pathsep.join([str(_course.ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.update(dict(launch.env))
    return env


def _kill_session(sid: int) -> int:
    """SIGKILL every process of session ``sid`` (a kernel and whatever it started); returns how many.

    jupyter_client starts each kernel in a new session whose id is the kernel's pid, and kills its process
    group; this also gets processes that moved to another group of the session. (A process that starts a
    session of its own escapes this; the sandbox's PID namespace is what contains it.)
    """
    import signal

    killed = 0
    proc = Path("/proc")
    if not proc.is_dir() or sid <= 1:
        return 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[3]) == sid:  # fields after the name: state ppid pgrp session ...
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
        except (OSError, ValueError, IndexError):
            continue
    return killed


class Kernel:
    """A fresh ``python3`` kernel of this environment in a temporary folder, with timed executions."""

    def __init__(self, *, startup_timeout: float = STARTUP_TIMEOUT, launch: Launch = Launch()):
        self.startup_timeout = startup_timeout
        self.launch = launch
        self.box = None
        if launch.sandbox == "bwrap":
            limits = launch.limits or _sandbox.SandboxLimits()
            self.box = _sandbox.Sandbox(course_root=_course.ROOT, hide=list(launch.hide), limits=limits)
            self.cwd = self.box.workdir  # writable inside: the grader hands large call requests over here
        elif launch.sandbox == "none":
            self.cwd = tempfile.mkdtemp(prefix="fedlab-grade-")
        else:
            raise ValueError(f"Launch.sandbox={launch.sandbox!r}; allowed: {', '.join(_sandbox.KINDS)}")
        self.km = None
        self.kc = None
        self.restarts = 0
        self.sessions: list[int] = []

    def start(self, *, attempts: int = 3) -> None:
        """Start the kernel; a failed start (e.g. a port taken meanwhile) is retried on fresh ports."""
        env = kernel_env(self.launch)
        problem = None
        for attempt in range(attempts):
            self.km = kernel_manager(box=self.box)
            began = time.monotonic()
            try:
                self.km.start_kernel(cwd=self.cwd, env=env)
                pid = getattr(self.km.provisioner, "pid", None)
                if pid:
                    self.sessions.append(int(pid))
                self._connect()
                _trace(f"kernel ready in {time.monotonic() - began:.1f} s")
                return
            except Exception as err:  # noqa: BLE001 - retried, then reported
                problem = err
                _trace(f"kernel start {attempt + 1} failed after {time.monotonic() - began:.1f} s: {err}")
                self._stop()
        raise RuntimeError(f"could not start a kernel ({attempts} tries): {type(problem).__name__}: {problem}")

    def _stop(self) -> None:
        try:
            if self.kc is not None:
                self.kc.stop_channels()
            if self.km is not None and self.km.has_kernel:
                self.km.shutdown_kernel(now=True)
        except Exception:  # noqa: BLE001 - best effort on a kernel that is already in trouble
            pass
        for sid in self.sessions:  # nothing the kernel started survives it
            _kill_session(sid)
        self.sessions = []
        self.kc = None

    def _connect(self) -> None:
        self.kc = self.km.client()
        self.kc.start_channels()
        try:
            self.kc.wait_for_ready(timeout=self.startup_timeout)
        except RuntimeError as err:
            raise RuntimeError(f"the kernel did not start within {self.startup_timeout:g} s: {err}") from None

    def restart(self) -> None:
        """Replace the kernel by a fresh one (new process, new ports, same working folder)."""
        self.restarts += 1
        _trace(f"restart #{self.restarts}")
        self._stop()
        self.start()

    def shutdown(self) -> None:
        try:
            self._stop()
        finally:
            if self.box is not None:
                self.box.cleanup()
            else:
                shutil.rmtree(self.cwd, ignore_errors=True)

    def call(self, name: str, request: str, nonce: str, timeout: float) -> Outcome:
        """Call the kernel's ``name`` on a :func:`fedlab.wire.encode_request` request (:func:`fedlab.wire.serve`).

        A large request is handed over in a file in the kernel's working folder, not in the code.
        """
        if len(request) > INLINE_REQUEST:
            path = os.path.join(self.cwd, f".fedlab-call-{nonce}")
            with open(path, "w") as fh:
                fh.write(request)
            request = "@" + path
        code = f"__import__('fedlab.wire', fromlist=['_']).serve(globals(), {name!r}, {request!r}, {nonce!r})"
        return self.run(code, timeout)

    def run(self, code: str, timeout: float) -> Outcome:
        """Execute ``code``; on timeout interrupt it (restart if that fails); restart if the kernel dies."""
        start = time.monotonic()
        msg_id = self.kc.execute(code, store_history=False, allow_stdin=False, stop_on_error=False)
        outcome = self._collect(msg_id, start + timeout)
        if outcome is None:  # timed out: interrupt, give it a moment to come back
            _trace(f"timeout after {time.monotonic() - start:.1f} s; interrupting: {code[:60]!r}")
            self.km.interrupt_kernel()
            if self._collect(msg_id, time.monotonic() + INTERRUPT_GRACE) is None or not self.km.is_alive():
                self.restart()
                outcome = Outcome("stuck")
            else:
                outcome = Outcome("timeout")
        elif outcome.state == "died":
            # why: memory_limit, process_limit (the sandbox's limits), killed, crashed or exited
            outcome.evalue = _sandbox.exit_status(self.km) or "exited"
            self.restart()
        outcome.seconds = time.monotonic() - start
        return outcome

    def _collect(self, msg_id: str, deadline: float) -> Outcome | None:
        """Wait for the execution's end (IOPub idle *and* its shell reply); ``None`` at the deadline.

        Waiting for the shell reply before the next request is not a
        formality: ipykernel 7.2 can miss a request that arrives while it is
        still sending the previous reply, and then never runs it
        (ipython/ipykernel#1554). Time during which this process itself could
        not run (the machine froze or was starved: a wake-up far later than
        asked for) moves the deadline, so a stall of the whole machine is not
        a learner's timeout.
        """
        result, error, idle = None, None, False
        allowance = max(0.0, deadline - time.monotonic())  # stalls may at most double the time limit
        while True:
            before = time.monotonic()
            left = deadline - before
            if left <= 0:
                return None
            wait = min(left, 0.25)
            try:
                msg = self.kc.get_shell_msg(timeout=wait) if idle else self.kc.get_iopub_msg(timeout=wait)
            except queue.Empty:
                msg = None
            overslept = time.monotonic() - before - wait
            if overslept > STALL and allowance > 0:
                _trace(f"this process stalled {overslept:.1f} s; deadline moved")
                deadline += min(overslept, allowance)
                allowance -= min(overslept, allowance)
            if msg is None:
                if not self.km.is_alive():
                    return Outcome("died")
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue  # output or a late reply of an earlier (interrupted) execution
            kind, content = msg["msg_type"], msg["content"]
            if kind == "execute_result":
                result = content.get("data", {}).get("text/plain")
            elif kind == "error":
                error = (content.get("ename", ""), content.get("evalue", ""))
            elif kind == "status" and content.get("execution_state") == "idle":
                idle = True
            elif kind == "execute_reply":
                if error:
                    return Outcome("error", ename=error[0], evalue=error[1], result=result)
                return Outcome("ok", result=result)


def _trace(message: str) -> None:
    """With ``FEDLAB_GRADER_TRACE=1`` in the environment, log what the kernels do to stderr."""
    if os.environ.get("FEDLAB_GRADER_TRACE"):
        print(f"[grader {os.getpid()} {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- grading one submission --------------------------------------------------------------------


@dataclass
class TestResult:
    """One test's outcome in the gradebook's JSON."""

    name: str
    status: str
    points: float
    max_points: float
    message: str = ""
    hidden: bool = False


@dataclass
class _Notes:
    """What happened outside the tests, per exercise id (``"*"``: every exercise)."""

    messages: dict = field(default_factory=dict)
    flags: dict = field(default_factory=dict)

    def add(self, target: str, flag: str, message: str = "") -> None:
        self.flags.setdefault(target, [])
        if flag not in self.flags[target]:
            self.flags[target].append(flag)
        if message:
            self.messages.setdefault(target, [])
            if message not in self.messages[target]:
                self.messages[target].append(message)

    def for_exercise(self, ex_id: str) -> tuple[list[str], list[str]]:
        flags = self.flags.get("*", []) + [f for f in self.flags.get(ex_id, []) if f not in self.flags.get("*", [])]
        return flags, self.messages.get(ex_id, []) + self.messages.get("*", [])


def _short(text: str, limit: int = MESSAGE_LIMIT) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _row(
    name,
    lesson,
    sha,
    *,
    exercise=None,
    status,
    points=0.0,
    max_points=0.0,
    passed=0,
    total=0,
    flags=(),
    message="",
    visible=(0.0, 0.0),
    hidden=(0.0, 0.0),
    sandbox="none",
):
    return {
        "submission": name,
        "lesson": lesson or "",
        "exercise": exercise.id if exercise else "",
        "title": exercise.title if exercise else "",
        "points": round(float(points), 4),
        "max_points": round(float(max_points), 4),
        "visible_points": round(float(visible[0]), 4),
        "visible_max": round(float(visible[1]), 4),
        "hidden_points": round(float(hidden[0]), 4),
        "hidden_max": round(float(hidden[1]), 4),
        "status": status,
        "tests_passed": passed,
        "tests_total": total,
        "flags": ";".join(flags),
        "message": _short(message),
        "sha256": sha,
        "sandbox": sandbox,
        "tests": [],
    }


def _exercise_status(results: list[TestResult]) -> str:
    states = [r.status for r in results]
    if all(s == "passed" for s in states):
        return "ok"
    if "passed" in states:
        return "partial"
    if all(s == "not_implemented" for s in states):
        return "not_attempted"
    if all(s == "missing_answer" for s in states):
        return "missing_answer"
    for s in ("timeout", "budget_exceeded", "error"):
        if s in states:
            return s
    return "failed"


def _submission_lesson(nb, wanted: str | None) -> tuple[str | None, str | None, str]:
    """``(lesson, problem_status, message)`` for a submission (problem_status None when gradable)."""
    meta = _course.notebook_lesson(nb)
    inferred = lessons_in_cells(nb)
    if wanted is not None:
        if meta is not None and meta != wanted:
            return wanted, "wrong_lesson", f"this is a notebook of lesson {meta}, not of lesson {wanted}"
        if meta is None and inferred and wanted not in inferred:
            return (
                wanted,
                "wrong_lesson",
                f"its check cells are of lesson(s) {sorted(inferred)}, not of lesson {wanted}",
            )
        return wanted, None, ""
    if meta is not None:
        return meta, None, ""
    if len(inferred) == 1:
        return inferred.pop(), None, ""
    why = (
        f"check cells name several lessons {sorted(inferred)}" if inferred else "no lesson metadata and no check cells"
    )
    return None, "unknown_lesson", f"cannot tell which lesson this is ({why}); pass --lesson"


def grade_submission(
    path: str | os.PathLike,
    *,
    name: str | None = None,
    lesson: str | None = None,
    reference: str | os.PathLike | None = None,
    limits: Limits = Limits(),
    hidden: str | os.PathLike | None = None,
    salt: int | None = None,
    launch: Launch = Launch(),
) -> list[dict]:
    """Grade one submission; returns its gradebook rows (dicts with :data:`COLUMNS` and ``tests``).

    Reads ``path`` once. Never
    raises for a bad submission, and never writes to it. ``hidden``: the
    hidden tests' folder (:func:`hidden_tests`); ``salt``: the seed of the
    tests' fresh inputs (:func:`fedlab.checks.test_rng`; None: a random one).
    """
    path = Path(path)
    name = name or path.name
    salt = secrets.randbits(63) if salt is None else salt
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as err:
        return [_problem(name, lesson, "", "unreadable", f"cannot read: {err}", hidden, launch)]
    sha = hashlib.sha256(data).hexdigest()
    try:
        nb = parse_notebook(data)
    except Unreadable as err:
        return [_problem(name, lesson, sha, "unreadable", str(err), hidden, launch)]
    lesson_id, problem, why = _submission_lesson(nb, lesson)
    if lesson_id is not None and lesson_id not in checks.LESSON_MODULES:
        problem, why = (
            "unknown_lesson",
            f"lesson {lesson_id!r} has no exercises (known: {sorted(checks.LESSON_MODULES)})",
        )
    if problem:
        return [_problem(name, lesson_id, sha, problem, why, hidden, launch)]
    exercises = checks.lesson_exercises(lesson_id)
    if not exercises:
        why = f"lesson {lesson_id} registers no exercises in {checks.LESSON_MODULES[lesson_id]}; nothing to grade"
        return [_row(name, lesson_id, sha, status="unknown_lesson", message=why, sandbox=launch.sandbox)]
    extra = hidden_tests(lesson_id, hidden)
    notes = _Notes()
    try:
        expected, _ = reference_checks(lesson_id, reference if _reference_lesson(reference) == lesson_id else None)
    except (ValueError, _course.NotebookError) as err:
        expected = {}
        notes.add("*", "checks_unverified", f"check cells not compared: {err}")
    for ex_id, how in tampered_checks(nb, expected).items():
        notes.add(ex_id, "checks_tampered", f"check cell {how}")
    began = time.monotonic()
    _trace(f"{name}: grading lesson {lesson_id}")
    try:
        results = _run_in_kernel(nb, lesson_id, exercises, limits, notes, hidden=extra, salt=salt, launch=launch)
        _trace(f"{name}: done in {time.monotonic() - began:.1f} s")
    except Exception as err:  # noqa: BLE001 - one submission's trouble must not stop the room
        return [_problem(name, lesson_id, sha, "error", f"grader error: {type(err).__name__}: {err}", hidden, launch)]
    rows = []
    for ex in exercises:
        res = results[ex.id]
        status = _exercise_status(res)
        flags, messages = notes.for_exercise(ex.id)
        for s in ("timeout", "budget_exceeded"):
            if any(r.status == s for r in res) and s not in flags:
                flags.append(s)
        visible, secret = [r for r in res if not r.hidden], [r for r in res if r.hidden]
        failure = next((r.message for r in visible if r.status != "passed"), "")
        failed_hidden = sum(r.status != "passed" for r in secret)
        if failed_hidden:  # hidden tests' own messages stay in the JSON's per-test results
            failure = "; ".join(x for x in (failure, f"{failed_hidden} of {len(secret)} hidden test(s) failed") if x)
        row = _row(
            name,
            lesson_id,
            sha,
            exercise=ex,
            status=status,
            points=sum(r.points for r in res),
            max_points=sum(r.max_points for r in res),
            passed=sum(r.status == "passed" for r in res),
            total=len(res),
            flags=flags,
            message="; ".join(messages + ([failure] if failure else [])),
            visible=(sum(r.points for r in visible), sum(r.max_points for r in visible)),
            hidden=(sum(r.points for r in secret), sum(r.max_points for r in secret)),
            sandbox=launch.sandbox,
        )
        row["tests"] = [dataclasses.asdict(r) for r in res]
        rows.append(row)
    return rows


def _problem(name, lesson, sha, status, message, hidden, launch) -> dict:
    """The one row of a submission that could not be graded: 0 points out of the lesson's total."""
    visible, secret = _lesson_points(lesson), _lesson_points(lesson, hidden, hidden_only=True)
    return _row(
        name,
        lesson,
        sha,
        status=status,
        max_points=visible + secret,
        message=message,
        visible=(0.0, visible),
        hidden=(0.0, secret),
        sandbox=launch.sandbox,
    )


def _reference_lesson(reference) -> str | None:
    if not reference:
        return None
    try:
        return _course.notebook_lesson(_course.read_notebook(reference))
    except _course.NotebookError:
        return None


def _lesson_points(lesson: str | None, hidden=None, *, hidden_only: bool = False) -> float:
    """The lesson's visible points (or, with ``hidden_only``, the points of its hidden tests in ``hidden``)."""
    if lesson is None or lesson not in checks.LESSON_MODULES:
        return 0.0
    try:
        if hidden_only:
            return float(sum(t.points for tests in hidden_tests(lesson, hidden).values() for t in tests))
        return sum(ex.points for ex in checks.lesson_exercises(lesson))
    except Exception:  # noqa: BLE001 - a broken exercise module still lets the row be written
        return 0.0


def _run_in_kernel(
    nb, lesson: str, exercises, limits: Limits, notes: _Notes, *, hidden: dict, salt: int, launch: Launch
) -> dict[str, list[TestResult]]:
    steps = plan(nb)
    kernel = Kernel(launch=launch)
    results: dict[str, list[TestResult]] = {ex.id: [] for ex in exercises}
    bad_cells: set[int] = set()
    try:
        kernel.start()
        began = time.monotonic()
        overhead = [0.0]  # loading the grading helpers is not the learner's time

        def left() -> float:
            return limits.budget_per_submission - (time.monotonic() - began - overhead[0])

        def prelude() -> bool:
            """Load the codec, then run the steps; returns None, or why the tests cannot run."""
            restarts_before = kernel.restarts
            helpers = kernel.run("__import__('fedlab.wire')", STARTUP_TIMEOUT)
            overhead[0] += helpers.seconds
            if helpers.state != "ok":
                why = f"{helpers.ename}: {helpers.evalue}" if helpers.state == "error" else helpers.state
                raise RuntimeError(f"could not load fedlab's grading helpers in the kernel ({why})")
            for step in steps:
                code = step.definitions if step.cell in bad_cells else step.code
                if not code.strip():
                    continue
                if left() <= 0:
                    return budget_out
                limit = min(limits.timeout_per_cell, left())
                out = kernel.run(code, limit)
                target = step.exercises or ("*",)
                where = f"cell {step.cell} ({step.kind})"
                hit = _limit_hit(out)
                if hit:
                    for t in target:
                        notes.add(t, hit)
                if out.state == "error" and step.kind != "definitions":
                    for t in target:
                        notes.add(t, "cell_error", f"{where} raised {out.ename}: {out.evalue}")
                elif out.state in ("timeout", "stuck"):
                    if limit < limits.timeout_per_cell:
                        return budget_out
                    bad_cells.add(step.cell)
                    for t in target:
                        notes.add(t, "cell_timeout", f"{where} did not finish in {limit:g} s and was stopped")
                elif out.state == "died":
                    bad_cells.add(step.cell)
                    for t in target:
                        notes.add(t, "cell_error", f"{where} made the kernel die ({out.evalue})")
                if kernel.restarts != restarts_before:
                    for t in target:
                        notes.add(t, "kernel_restarted")
                    if kernel.restarts > MAX_RESTARTS:
                        return TOO_MANY_RESTARTS
                    return prelude()
            return None

        def safely(run) -> tuple | None:
            """``run()``, or a stop reason if the kernel cannot be brought back."""
            try:
                return run()
            except RuntimeError as err:
                return ("error", f"grading stopped: {err}")

        budget_out = ("budget_exceeded", "the submission's time budget ran out")
        stop = safely(prelude)
        with checks.fresh_inputs(salt), _one_thread():
            for ex in exercises:
                timed_out = None  # after a timeout, the exercise's other tests are not run: one loop, one timeout
                for test in (*ex.tests, *hidden.get(ex.id, ())):
                    if stop is None and left() <= 0:
                        stop = budget_out
                    if stop is not None:
                        results[ex.id].append(_test_result(test, *stop))
                        continue
                    if timed_out is not None:
                        why = f"not run: test {timed_out} of this exercise timed out"
                        results[ex.id].append(
                            _test_result(test, "timeout", f"Exercise {ex.id}, test {test.name}: {why}")
                        )
                        continue
                    limit = min(limits.timeout_per_test, left())
                    hits: set[str] = set()
                    status, message, trouble = _run_test(
                        kernel, ex, test, limit, by_budget=limit < limits.timeout_per_test, hits=hits
                    )
                    for hit in sorted(hits):
                        notes.add(ex.id, hit)
                    results[ex.id].append(_test_result(test, status, message))
                    if status == "timeout":
                        timed_out = test.name
                    if trouble in ("stuck", "died"):
                        notes.add(ex.id, "kernel_restarted")
                        stop = TOO_MANY_RESTARTS if kernel.restarts > MAX_RESTARTS else safely(prelude)
                    elif trouble == "stopped":
                        stop = ("error", message)
    finally:
        kernel.shutdown()
    return results


@contextlib.contextmanager
def _one_thread():
    """Torch on one thread while the tests run here: the kernels (one thread each) share the machine with us."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch is not None:
            torch.set_num_threads(before)


def _limit_hit(out: Outcome) -> str | None:
    """``memory_limit`` or ``process_limit`` when an execution hit the sandbox's limits, else None.

    From the execution's error (a cell's ``MemoryError``, ``BlockingIOError``), the exit status of a dead
    kernel (:func:`fedlab.sandbox.exit_status`, put in ``evalue`` by :meth:`Kernel.run`), or what the
    learner's answer raised in a call (:func:`fedlab.wire.serve`'s ``raised`` reply). A kernel can make
    this say what it likes, but it only flags its own row.
    """
    if out.state == "died":
        return out.evalue if out.evalue in ("memory_limit", "process_limit") else None
    if out.state == "error":
        hit = _sandbox.classify(ename=out.ename, evalue=out.evalue)
    elif out.state == "ok" and out.result and '"raised"' in out.result:
        try:
            raised = json.loads(out.result).get("raised") or {}
            hit = _sandbox.classify(ename=str(raised.get("type", "")), evalue=str(raised.get("message", "")))
        except (ValueError, AttributeError):
            return None
    else:
        return None
    return hit if hit in ("memory_limit", "process_limit") else None


def _run_test(
    kernel: Kernel, ex, test, limit: float, *, by_budget: bool, hits: set | None = None
) -> tuple[str, str, str]:
    """Run one test here, calling the learner's answer in ``kernel``; ``(status, message, kernel trouble)``.

    The test's calls of the answer share ``limit`` seconds of kernel time. The
    trouble is ``""``, ``"stuck"`` or ``"died"`` (the kernel was restarted) or
    ``"stopped"`` (it could not be restarted). ``hits`` collects the sandbox
    limits the calls ran into (:func:`_limit_hit`).
    """
    hits = set() if hits is None else hits
    used = [0.0]
    trouble = [""]
    label = f"Exercise {ex.id}, test {test.name}"

    def transport(request: str, nonce: str) -> str:
        remaining = limit - used[0]
        if remaining <= 0:
            raise KernelTrouble("timeout", f"{label}: did not finish in {limit:g} s")
        try:
            out = kernel.call(ex.answer, request, nonce, remaining)
        except RuntimeError as err:  # the kernel could not be restarted
            trouble[0] = "stopped"
            raise KernelTrouble("error", f"grading stopped: {err}") from None
        used[0] += out.seconds
        hit = _limit_hit(out)
        if hit:
            hits.add(hit)
        if out.state in ("stuck", "died"):
            trouble[0] = out.state
        if out.state in ("timeout", "stuck"):
            if by_budget:
                raise KernelTrouble("budget_exceeded", f"{label}: the submission's time budget ran out")
            raise KernelTrouble("timeout", f"{label}: did not finish in {limit:g} s")
        if out.state == "died":
            raise KernelTrouble("error", f"{label}: the kernel died ({out.evalue})")
        if out.state == "error":
            raise checks.CheckFailed(f"the kernel could not run the call ({out.ename}: {out.evalue})")
        return out.result or ""

    stub_raised = []

    def run(answer):
        try:
            test.run(answer)
        except NotImplementedError:
            stub_raised.append(True)
            raise

    answer = RemoteAnswer(transport, ex.answer)
    try:
        passed, message = checks.run_test(ex, dataclasses.replace(test, run=run), answer)
    except KernelTrouble as err:
        return err.status, str(err), trouble[0]
    except AnswerMissing:
        message = f"Exercise {ex.id} ({ex.title}): no `{ex.answer}` is defined; keep the name the exercise cell uses"
        return "missing_answer", message, trouble[0]
    status = "passed" if passed else ("not_implemented" if stub_raised else "failed")
    return status, message, trouble[0]


def _test_result(test, status: str, message: str) -> TestResult:
    points = test.points if status == "passed" else 0.0
    message = "" if status == "passed" else _short(message)
    return TestResult(test.name, status, points, test.points, message, bool(getattr(test, "hidden", False)))


# ---- hidden tests ------------------------------------------------------------------------------

HIDDEN_DIR = _course.ROOT / "instructor" / "hidden"
"""Where the instructor-only tests live by default: ``instructor/hidden/lessonNN.py`` at the repository's root.

Not part of the ``fedlab`` package (not installed with it, not in the wheel);
the grader loads them in its own process, never in a learner's kernel.
"""

_HIDDEN_CACHE: dict = {}


def hidden_tests(lesson: str, folder: str | os.PathLike | None = None) -> dict[str, tuple]:
    """The instructor-only tests of ``lesson``: ``{exercise_id: (Test, ...)}``, each marked ``hidden``.

    Read from ``<folder>/lesson<NN>.py`` (default :data:`HIDDEN_DIR`), a
    module that defines ``HIDDEN = {"02.4": (Test(...), ...), ...}`` with
    :class:`fedlab.checks.Test` records of that lesson's exercises. No file: no
    hidden tests. A file that does not load, names an unknown exercise or
    reuses a visible test's name is a ``ValueError`` (an instructor's mistake,
    said before any submission is graded).
    """
    import importlib.util

    chosen = Path(folder) if folder is not None else HIDDEN_DIR
    if folder is not None and not chosen.is_dir():
        raise ValueError(f"hidden={str(folder)!r}: no such folder")
    path = chosen / f"lesson{lesson}.py"
    if not path.is_file():
        return {}
    key = (str(path.resolve()), path.stat().st_mtime_ns)
    if key in _HIDDEN_CACHE:
        return _HIDDEN_CACHE[key]
    spec = importlib.util.spec_from_file_location(f"fedlab_hidden_tests_{lesson}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 - said to the instructor with the file's name
        raise ValueError(f"hidden tests {path}: could not be loaded ({type(err).__name__}: {err})") from None
    found = getattr(module, "HIDDEN", None)
    if not isinstance(found, dict):
        raise ValueError(f"hidden tests {path}: must define HIDDEN = {{exercise_id: (Test, ...)}}")
    known = {ex.id: ex for ex in checks.lesson_exercises(lesson)}
    out = {}
    for ex_id, tests in found.items():
        if ex_id not in known:
            raise ValueError(f"hidden tests {path}: exercise {ex_id!r} is not one of lesson {lesson}'s {sorted(known)}")
        tests = tuple(tests)
        names = [t.name for t in known[ex_id].tests] + [t.name for t in tests]
        if not tests or not all(isinstance(t, checks.Test) for t in tests) or len(set(names)) != len(names):
            raise ValueError(f"hidden tests {path}: {ex_id} needs Test records with names unique in the exercise")
        out[ex_id] = tuple(dataclasses.replace(t, hidden=True, in_check=False) for t in tests)
    _HIDDEN_CACHE[key] = out
    return out


# ---- a room ------------------------------------------------------------------------------------


def default_workers() -> int:
    """``min(2, CPU count)``: two kernels keep a 2-core laptop busy without thrashing."""
    return max(1, min(2, os.cpu_count() or 1))


def display_names(paths: Sequence[Path]) -> list[str]:
    """File names, or paths relative to their common folder when two submissions share a file name."""
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    absolute = [str(p.resolve()) for p in paths]
    common = os.path.commonpath(absolute) if len(absolute) > 1 else str(Path(absolute[0]).parent)
    return [os.path.relpath(a, common) for a in absolute]


def expand(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Submissions from arguments: files as given, folders expanded to their ``*.ipynb`` (checkpoints skipped)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in q.parts))
        else:
            out.append(p)
    return out


def code_manifest(hidden: str | os.PathLike | None = None) -> dict[str, str]:
    """``{path: sha256}`` of the grading code: every ``.py`` file of the ``fedlab`` package and the hidden tests.

    Taken before any kernel starts; :func:`changed_code` compares the files with it before and after each
    submission, so a submission that rewrites the package (an always-pass helper appended to an exercise module)
    cannot change how the grader judges, without a sandbox too.
    """
    package = Path(checks.__file__).resolve().parent
    files = sorted(package.rglob("*.py"))
    folder = Path(hidden) if hidden is not None else HIDDEN_DIR
    if folder.is_dir():
        files += sorted(folder.glob("lesson*.py"))
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def changed_code(manifest: dict[str, str]) -> list[str]:
    """The files of ``manifest`` that changed or vanished, and fedlab modules loaded here from elsewhere."""
    changed = []
    for path, sha in manifest.items():
        try:
            if hashlib.sha256(Path(path).read_bytes()).hexdigest() != sha:
                changed.append(path)
        except OSError:
            changed.append(path)
    for name, module in list(sys.modules.items()):
        where = getattr(module, "__file__", None)
        if (name == "fedlab" or name.startswith("fedlab.")) and where and str(Path(where).resolve()) not in manifest:
            changed.append(where)
    return changed


def _grade_safe(
    path: str, name: str, lesson, reference, limits: Limits, hidden, salt, launch, manifest=None
) -> list[dict]:
    def tampered(when: str) -> list[dict] | None:
        bad = changed_code(manifest) if manifest else []
        if not bad:
            return None
        message = f"grading code changed on disk {when} this submission ({', '.join(bad[:3])}); not graded"
        return [_problem(name, lesson, "", "error", message, hidden, launch)]

    try:
        before = tampered("before")
        if before:
            return before
        rows = grade_submission(
            path, name=name, lesson=lesson, reference=reference, limits=limits, hidden=hidden, salt=salt, launch=launch
        )
        return tampered("while grading") or rows
    except Exception as err:  # noqa: BLE001 - never lose a submission's row
        return _error_rows(name, lesson, launch, f"grader error: {type(err).__name__}: {err}")


def _error_rows(name: str, lesson, launch: Launch, message: str) -> list[dict]:
    """The one row of a submission the grader itself failed on (never a lost submission)."""
    return [_row(name, lesson, "", status="error", message=message, sandbox=launch.sandbox)]


def _job_error_rows(job: tuple, message: str) -> list[dict]:
    """:func:`_error_rows` for a job of :func:`_grade_parallel` (the arguments of :func:`_grade_safe`)."""
    _path, name, lesson, _reference, _limits, _hidden, _salt, launch, _manifest = job
    return _error_rows(name, lesson, launch, message)


def snapshot(paths: Sequence[Path], folder: str | os.PathLike) -> list[tuple[str | None, str]]:
    """Read every submission once and copy its bytes into ``folder`` (the grader's own, mode 0700).

    Returns ``(copy's path or None, sha256 or why it could not be read)`` per
    submission, in order. Done before any kernel starts, so no submission can
    change another's bytes while the room is graded; kernels are never given
    these paths (they get cells as code, in a folder of their own).
    """
    folder = Path(folder)
    os.chmod(folder, 0o700)
    out = []
    for i, p in enumerate(paths):
        try:
            data = Path(p).read_bytes()
        except OSError as err:
            out.append((None, f"cannot read: {err}"))
            continue
        copy = folder / f"{i:05d}.ipynb"
        copy.write_bytes(data)
        os.chmod(copy, 0o400)
        out.append((str(copy), hashlib.sha256(data).hexdigest()))
    return out


def grade(
    paths: Sequence[str | os.PathLike],
    *,
    lesson: str | None = None,
    reference: str | os.PathLike | None = None,
    workers: int | None = None,
    limits: Limits = Limits(),
    progress: Callable[[str], object] | None = None,
    hidden: str | os.PathLike | None = None,
    salt: int | None = None,
    launch: Launch | None = None,
) -> list[dict]:
    """Grade submissions, ``workers`` at a time (each worker process runs its own kernels).

    Every file is read and copied into a private snapshot (:func:`snapshot`)
    before the first kernel starts. ``hidden``: the hidden tests' folder
    (default :data:`HIDDEN_DIR`); ``salt``: seeds the tests' inputs
    (:func:`fedlab.checks.test_rng`), random by default, one per run;
    ``launch``: how kernels are started (:class:`Launch`; default
    ``sandboxed("auto")``: in the bubblewrap sandbox where it works). A
    sandboxed kernel never sees :func:`private_paths` nor the snapshot.
    Returns the gradebook rows, in the order of ``paths`` then exercise id.
    """
    from fedlab import validate

    workers = default_workers() if workers is None else validate.positive_int("workers", workers)
    if lesson is not None and lesson not in checks.LESSON_MODULES:
        raise ValueError(f"lesson={lesson!r}: no exercises are defined for it; known: {sorted(checks.LESSON_MODULES)}")
    if reference is not None and not Path(reference).is_file():
        raise ValueError(f"reference={str(reference)!r}: no such notebook")
    if salt is not None and (not isinstance(salt, int) or salt < 0):
        raise ValueError(f"salt={salt!r}: must be a non-negative int")
    if lesson is not None:
        hidden_tests(lesson, hidden)  # an instructor's broken hidden tests are said now, not per submission
    salt = secrets.randbits(63) if salt is None else salt
    hidden = str(hidden) if hidden is not None else None
    manifest = code_manifest(hidden)
    paths = [Path(p) for p in paths]
    names = display_names(paths) if paths else []
    launch = sandboxed("auto") if launch is None else launch
    with tempfile.TemporaryDirectory(prefix="fedlab-snapshot-") as private:
        if launch.sandbox == "bwrap":
            launch = dataclasses.replace(launch, hide=tuple(sorted({*launch.hide, *private_paths(hidden), private})))
        copies = snapshot(paths, private)
        jobs, done = [], {}
        for i, ((copy, sha_or_why), n) in enumerate(zip(copies, names)):
            if copy is None:
                done[i] = [_problem(n, lesson, "", "unreadable", sha_or_why, hidden, launch)]
                _report(progress, done[i])
                continue
            ref = str(reference) if reference else None
            jobs.append((i, (copy, n, lesson, ref, limits, hidden, salt, launch, manifest)))
        if workers == 1 or len(jobs) <= 1:
            for i, job in jobs:
                done[i] = _grade_safe(*job)
                _report(progress, done[i])
        else:
            _grade_parallel(jobs, workers, done, progress)
    return [row for i in range(len(paths)) for row in done[i]]


def _grade_parallel(jobs, workers, done, progress) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    jobs = dict(jobs)
    pending = list(jobs)
    for _attempt in range(2):
        broken = []
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_grade_safe, *jobs[i]): i for i in pending}
            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    done[i] = fut.result()
                except BrokenProcessPool:
                    broken.append(i)
                    continue
                except Exception as err:  # noqa: BLE001 - never lose a submission's row
                    done[i] = _job_error_rows(jobs[i], f"grader error: {err}")
                _report(progress, done[i])
        pending = broken
        if not pending:
            return
    for i in pending:
        done[i] = _job_error_rows(jobs[i], "grader error: the worker process died")


def _report(progress, rows) -> None:
    if progress is not None and rows:
        got = sum(r["points"] for r in rows)
        total = sum(r["max_points"] for r in rows)
        states = ", ".join(f"{r['exercise'] or '-'} {r['status']}" for r in rows)
        progress(f"graded {rows[0]['submission']}: {got:g}/{total:g} ({states})")


# ---- the gradebook -----------------------------------------------------------------------------


def csv_text(rows: Sequence[dict]) -> str:
    """The gradebook as CSV text with the :data:`COLUMNS` header."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def json_text(rows: Sequence[dict]) -> str:
    """The gradebook as JSON: a list of rows, each with its per-test results under ``tests``."""
    return json.dumps(list(rows), indent=1, sort_keys=False) + "\n"


def summary(rows: Sequence[dict]) -> str:
    """A table for the terminal: one line per submission, its points and each exercise's status."""
    by_sub: dict[str, list[dict]] = {}
    for r in rows:
        by_sub.setdefault(r["submission"], []).append(r)
    exercise_ids = sorted({r["exercise"] for r in rows if r["exercise"]}, key=lambda e: tuple(map(int, e.split("."))))
    width = max([len("submission")] + [len(s) for s in by_sub])
    cols = [max(len(e), 14) for e in exercise_ids]
    header = f"{'submission':<{width}}  {'points':>11}  " + "  ".join(f"{e:<{w}}" for e, w in zip(exercise_ids, cols))
    lines = [header.rstrip()]
    for sub, sub_rows in by_sub.items():
        got, total = sum(r["points"] for r in sub_rows), sum(r["max_points"] for r in sub_rows)
        if len(sub_rows) == 1 and not sub_rows[0]["exercise"]:
            cells = f"{sub_rows[0]['status']}: {sub_rows[0]['message'][:80]}"
        else:
            status = {r["exercise"]: r["status"] + ("*" if r["flags"] else "") for r in sub_rows}
            cells = "  ".join(f"{status.get(e, ''):<{w}}" for e, w in zip(exercise_ids, cols))
        lines.append(f"{sub:<{width}}  {f'{got:g}/{total:g}':>11}  {cells}".rstrip())
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    lines.append("statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + "   (* = see flags)")
    return "\n".join(lines)


# ---- command line ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``grade`` command's arguments."""
    parser.add_argument("submissions", nargs="+", help="submitted .ipynb files (folders: every .ipynb inside)")
    parser.add_argument("--lesson", help="the lesson being graded, e.g. 02 (default: each notebook's metadata)")
    parser.add_argument("--reference", help="notebook whose check cells are the reference (default: notebooks/NN_*)")
    parser.add_argument("--out", help="write the gradebook as CSV here (atomically)")
    parser.add_argument("--json", dest="json_out", help="write the gradebook as JSON here, with per-test results")
    parser.add_argument("--workers", type=int, default=None, help=f"kernels at once (default {default_workers()})")
    parser.add_argument(
        "--timeout-per-test", type=float, default=TIMEOUT_PER_TEST, help="seconds (default %(default)g)"
    )
    parser.add_argument(
        "--timeout-per-cell", type=float, default=TIMEOUT_PER_CELL, help="seconds (default %(default)g)"
    )
    parser.add_argument(
        "--budget-per-submission", type=float, default=BUDGET_PER_SUBMISSION, help="seconds (default %(default)g)"
    )
    parser.add_argument(
        "--hidden", help="folder of the instructor-only tests, lessonNN.py files (default: instructor/hidden/)"
    )
    parser.add_argument(
        "--salt", type=int, default=None, help="seed of the tests' fresh inputs (default: random; printed at the end)"
    )
    parser.add_argument(
        "--sandbox",
        choices=SANDBOX_CHOICES,
        default="auto",
        help="run each kernel in a bubblewrap sandbox: auto (if it works here, else none, said loudly), "
        "bwrap (fail if it does not work), none (default %(default)s)",
    )
    limits = _sandbox.SandboxLimits()
    parser.add_argument(
        "--memory-mb",
        type=int,
        default=limits.memory_mb,
        help="sandbox: address space per kernel process, in MB (default %(default)s)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=limits.processes,
        help="sandbox: processes and threads per kernel (default %(default)s)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines, only the summary")
    parser.add_argument("--feedback", metavar="DIR", help="write one HTML + Markdown report per learner here")


def run_cli(args: argparse.Namespace, out: Callable[[str], object] = print) -> int:
    """Run ``python -m fedlab grade``; returns the exit code (0 when every submission got its rows)."""
    start = time.monotonic()
    try:
        limits = Limits(args.timeout_per_test, args.timeout_per_cell, args.budget_per_submission)
        paths = expand(args.submissions)
        if not paths:
            raise ValueError(f"submissions={args.submissions!r}: no .ipynb files found there")
        salt = secrets.randbits(63) if args.salt is None else args.salt
        box_limits = _sandbox.SandboxLimits(memory_mb=args.memory_mb, processes=args.processes)
        outputs = [p for p in (args.out, args.json_out) if p]
        if args.feedback:
            outputs.append(os.path.join(args.feedback, "index.csv"))
        launch = sandboxed(
            args.sandbox,
            limits=box_limits,
            hide=private_paths(args.hidden, outputs),
        )
        rows = grade(
            paths,
            lesson=args.lesson,
            reference=args.reference,
            workers=args.workers,
            limits=limits,
            progress=None if args.quiet else out,
            hidden=args.hidden,
            salt=salt,
            launch=launch,
        )
    except ValueError as err:
        out(f"error: {err}")
        return 2
    if args.out:
        _course.write_atomic(args.out, csv_text(rows).encode("utf-8"))
    if args.json_out:
        _course.write_atomic(args.json_out, json_text(rows).encode("utf-8"))
    if args.feedback:
        from fedlab import feedback

        out(f"wrote {len(feedback.write_reports(rows, args.feedback))} feedback report(s) to {args.feedback}")
    out(summary(rows))
    seconds = time.monotonic() - start
    out(
        f"graded {len(paths)} submission(s) in {seconds:.1f} s ({seconds / len(paths):.1f} s each, "
        f"{args.workers or default_workers()} worker(s); inputs salt {salt}; sandbox {launch.sandbox})"
        + (f"; wrote {args.out}" if args.out else "")
        + (f"; wrote {args.json_out}" if args.json_out else "")
    )
    return 0
