"""Exercises and their checks: immediate feedback in the notebook, the same tests for the grader.

An :class:`Exercise` is known by its id (``"02.1"`` = lesson 02, exercise 1)
and names the object the learner writes (``answer="fedavg_aggregate"``). Its
:class:`Test` s are small functions that call the learner's answer on known
inputs and compare with the reference implementation in :mod:`fedlab`; a test
fails by raising :class:`CheckFailed` with a message saying what was expected,
what came back, and a hint.

In the notebook, ``check("02.1", fedavg_aggregate)`` runs the tests marked
``in_check`` and either prints a short success line or raises
:class:`CheckFailed`. The instructor's grader (:mod:`fedlab.grader`) runs *all*
of an exercise's tests, each for its points, in a fresh kernel per submission.

Exercises live in ``fedlab/exercises/<concept>.py``, one module per lesson,
listed in :data:`LESSON_MODULES` and imported only when a lesson's exercises
are first asked for. This module knows exercises by id and calls into the
math; the math knows nothing of it.
"""

from __future__ import annotations

import importlib
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

LESSON_MODULES: dict[str, str] = {
    "00": "fedlab.exercises.welcome",
    "01": "fedlab.exercises.baseline",
    "02": "fedlab.exercises.fedavg",
    "03": "fedlab.exercises.heterogeneity",
    "04": "fedlab.exercises.bandwidth",
    "05": "fedlab.exercises.leakage",
    "06": "fedlab.exercises.remote",
    "07": "fedlab.exercises.secagg",
    "08": "fedlab.exercises.dp",
    "09": "fedlab.exercises.monitoring",
    "10": "fedlab.exercises.capstone",
    "11": "fedlab.exercises.flower",
    "12": "fedlab.exercises.personal",
    "13": "fedlab.exercises.distributed",
    "99": "fedlab.exercises.demo",
}
"""Which module defines each lesson's exercises (lesson 99 is the grader's small demo lesson)."""


class CheckFailed(AssertionError):
    """An exercise check did not pass; the message says what was expected and gives a hint."""


@dataclass(frozen=True)
class Test:
    """One test of an exercise.

    Attributes
    ----------
    name
        Short identifier, unique within the exercise (a gradebook column).
    run
        ``run(answer)`` returns normally on success and raises
        :class:`CheckFailed` (or ``AssertionError``) on failure.
    points
        What the grader awards when it passes.
    in_check
        Whether the in-notebook ``check`` runs it too (quick tests); the
        grader always runs every test.
    """

    name: str
    run: Callable
    points: float = 1.0
    in_check: bool = True


@dataclass(frozen=True)
class Exercise:
    """An exercise: its id, title, the name of the learner's answer, and its tests."""

    id: str
    title: str
    answer: str
    tests: tuple
    hint: str = ""

    @property
    def lesson(self) -> str:
        return self.id.split(".")[0]

    @property
    def points(self) -> float:
        return float(sum(t.points for t in self.tests))


_REGISTRY: dict[str, Exercise] = {}


def register(*exercises: Exercise) -> None:
    """Add exercises to the registry (called by each ``fedlab.exercises`` module at import)."""
    for ex in exercises:
        names = [t.name for t in ex.tests]
        if len(set(names)) != len(names):
            raise ValueError(f"exercise {ex.id}: test names must be unique, got {names}")
        if not ex.tests:
            raise ValueError(f"exercise {ex.id}: needs at least one test")
        _REGISTRY[ex.id] = ex


def lesson_exercises(lesson: str) -> list[Exercise]:
    """The exercises of a lesson (``"02"``), in id order."""
    if lesson not in LESSON_MODULES:
        raise ValueError(f"lesson={lesson!r}: no exercises are defined for it; known: {sorted(LESSON_MODULES)}")
    importlib.import_module(LESSON_MODULES[lesson])
    found = [ex for ex in _REGISTRY.values() if ex.lesson == lesson]
    return sorted(found, key=lambda ex: tuple(int(p) for p in ex.id.split(".")))


def get(exercise_id: str) -> Exercise:
    """The exercise with this id, e.g. ``"02.1"``."""
    if not isinstance(exercise_id, str) or "." not in exercise_id:
        raise ValueError(f"exercise_id={exercise_id!r}: must look like '02.1' (lesson.number)")
    lesson = exercise_id.split(".")[0]
    ids = [ex.id for ex in lesson_exercises(lesson)]
    if exercise_id not in _REGISTRY:
        raise ValueError(f"exercise_id={exercise_id!r}: lesson {lesson} has exercises {ids}")
    return _REGISTRY[exercise_id]


def _describe_error(ex: Exercise, err: BaseException) -> str:
    if isinstance(err, NotImplementedError):
        return (
            f"Exercise {ex.id} ({ex.title}) is not done yet: `{ex.answer}` still raises NotImplementedError. "
            "Replace the `raise NotImplementedError(...)` line with your code, run that cell, then this one."
        )
    tb = traceback.extract_tb(err.__traceback__)
    where = f" (line {tb[-1].lineno} of your code: `{tb[-1].line}`)" if tb else ""
    return f"Exercise {ex.id} ({ex.title}): `{ex.answer}` raised {type(err).__name__}: {err}{where}"


def run_test(ex: Exercise, test: Test, answer) -> tuple[bool, str]:
    """Run one test on ``answer``; returns ``(passed, message)`` and never raises for a wrong answer."""
    try:
        test.run(answer)
    except CheckFailed as err:
        return False, f"Exercise {ex.id} ({ex.title}): {err}"
    except AssertionError as err:
        return False, f"Exercise {ex.id} ({ex.title}): {err or 'a check did not hold'}"
    except Exception as err:  # noqa: BLE001 - a learner's bug is feedback, not a crash
        return False, _describe_error(ex, err)
    return True, "passed"


def _visible(ex: Exercise) -> list:
    """The tests a learner may run (all of them unless a test is marked ``hidden``, the grader's own)."""
    return [t for t in ex.tests if not getattr(t, "hidden", False)]


def _coverage(ex: Exercise, ran: int, thorough: bool) -> str:
    """``"2 of 4 grading tests run here; check(..., thorough=True) runs all 4"``."""
    total = len(ex.tests)
    if thorough or ran == total:
        return f"all {ran} visible grading tests run" if ran < total else f"all {total} grading tests run"
    return f"{ran} of {total} grading tests run here; check(..., thorough=True) runs all {len(_visible(ex))}"


def check(exercise_id: str, answer, *, thorough: bool = False) -> None:
    """Check a learner's answer now: prints a success line or raises :class:`CheckFailed`.

    Parameters
    ----------
    exercise_id
        ``"02.1"`` etc.
    answer
        What the exercise asks for (usually the learner's function).
    thorough
        Run every visible grading test (what the grader runs, minus hidden tests), not only the quick ones.
        Both the success line and a failure say how many of the grader's tests were run.
    """
    ex = get(exercise_id)
    if not isinstance(thorough, bool):
        raise ValueError(f"thorough={thorough!r}: must be True or False")
    tests = _visible(ex) if thorough else [t for t in ex.tests if t.in_check]
    for test in tests:
        ok, message = run_test(ex, test, answer)
        if not ok:
            hint = f"\nHint: {ex.hint}" if ex.hint and "Hint:" not in message else ""
            raise CheckFailed(f"{message}{hint}\n({_coverage(ex, len(tests), thorough)}.)")
    print(f"\u2714 Exercise {ex.id} passed: {ex.title} ({_coverage(ex, len(tests), thorough)}).")


# ---- helpers for writing tests -------------------------------------------------------------


def _num(x) -> str:
    """A number in 4 significant digits, whole (``1.235e-05``, ``-0.5``)."""
    return f"{float(x):.4g}"


def _fmt(value, limit: int = 200) -> str:
    if _is_arraylike(value) and np.ndim(value) == 0:  # "3.0", not numpy's "3." (which reads badly before a full stop)
        item = np.asarray(value).item()
        text = repr(item)
        return f"{item:.6g}" if isinstance(item, float) and len(text) > 12 else text
    if _is_arraylike(value):
        text = np.array2string(np.asarray(value), precision=4, threshold=12)
    else:
        text = repr(_plain(value))
    if len(text) <= limit:
        return text
    cut = text[: limit - 4]
    for sep in (", ", " ", ","):  # never cut mid-number: end at the last separator
        if sep in cut:
            cut = cut[: cut.rindex(sep) + len(sep.rstrip())]
            break
    return cut + " ..."


def _plain(value):
    """``value`` with numpy scalars inside lists, tuples and dicts made plain Python numbers, so a message reads
    ``[0.1, 2]`` on numpy 2 as on numpy 1.24 (numpy 2's repr of a scalar is ``np.float64(0.1)``).
    """
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value) if type(value) in (list, tuple) else value
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value


def _is_arraylike(value) -> bool:
    return isinstance(value, np.ndarray) or (hasattr(value, "shape") and hasattr(value, "dtype"))


def _ratio(got: np.ndarray, want: np.ndarray) -> float | None:
    """``r`` when ``got`` is (within 5 %) ``r * want`` for one number ``r``; else ``None``."""
    g, w = got.ravel(), want.ravel()
    ww = float(w @ w)
    if not np.all(np.isfinite(g)) or ww == 0 or float(g @ g) == 0:
        return None
    r = float(g @ w) / ww
    return r if np.linalg.norm(g - r * w) <= 0.05 * np.linalg.norm(g) else None


def summarize_mismatch(got, want, *, like: dict | None = None, ratios: dict | None = None, atol: float = 1e-6) -> str:
    """What is wrong with ``got`` compared with ``want``, in one or two sentences, never a dump of the arrays.

    Says the shape, the largest absolute and relative error and where it is; whether ``got`` is a multiple
    ``r * want`` (with the explanation ``ratios`` gives for the nearest listed ``r``, within 10 %); and whether
    ``got`` matches one of the known wrong answers in ``like`` (``{"the parameters, not the delta": params}``).
    Small arrays (up to 8 values) are shown whole.
    """
    got_a, want_a = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    for desc, ref in (like or {}).items():
        ref_a = np.asarray(ref, dtype=np.float64)
        if ref_a.shape == got_a.shape and np.allclose(got_a, ref_a, rtol=1e-4, atol=max(atol, 1e-6)):
            return f"yours looks like {desc}."
    if got_a.size <= 8:
        text = f"expected {_fmt(want_a)}, got {_fmt(got_a)}"
    else:
        diff = np.abs(got_a - want_a)
        diff = np.where(np.isnan(diff), np.inf, diff)
        where = np.unravel_index(int(np.argmax(diff)), diff.shape)
        rel = diff / np.maximum(np.abs(want_a), atol)
        text = (
            f"shape {want_a.shape}, max abs error {_num(diff[where])} at index {list(map(int, where))} "
            f"(yours {_num(got_a[where])}, expected {_num(want_a[where])}), max rel error {_num(np.max(rel))}"
        )
    r = _ratio(got_a, want_a)
    if r is not None and abs(r - 1) > 0.05:
        text += f"; yours is {r:.3g}x the expected one"
        near = [(abs(k - r), k) for k in (ratios or {}) if abs(k - r) <= 0.1 * abs(k)]
        if near:
            text += f": {ratios[min(near)[1]]}"
        elif abs(r + 1) <= 0.05:
            text += " (the sign is flipped)"
    return text + "."


def expect_close(
    got,
    want,
    *,
    what: str,
    hint: str = "",
    rtol: float = 1e-5,
    atol: float = 1e-6,
    like: dict | None = None,
    ratios: dict | None = None,
) -> None:
    """Raise :class:`CheckFailed` unless ``got`` is numerically close to ``want`` (same shape).

    The message is :func:`summarize_mismatch`'s (``like`` and ``ratios`` name known wrong answers).
    """
    try:
        got_a = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        raise CheckFailed(f"{what}: expected numbers like {_fmt(want)}, got {type(got).__name__} {_fmt(got)}") from None
    want_a = np.asarray(want, dtype=np.float64)
    hint = f" Hint: {hint}" if hint else ""
    if got_a.shape != want_a.shape:
        raise CheckFailed(f"{what}: expected shape {want_a.shape}, got shape {got_a.shape}.{hint}")
    if not np.allclose(got_a, want_a, rtol=rtol, atol=atol, equal_nan=True):
        summary = summarize_mismatch(got_a, want_a, like=like, ratios=ratios, atol=atol)
        raise CheckFailed(f"{what}: {summary}{hint}")


def expect_params_close(
    got,
    want,
    *,
    what: str,
    hint: str = "",
    rtol: float = 1e-5,
    atol: float = 1e-6,
    like: dict | None = None,
    ratios: dict | None = None,
) -> None:
    """Like :func:`expect_close` for a list of arrays (model parameters); ``like`` maps names to lists of arrays.

    A wrong answer that matches a ``like`` entry (or a ``ratios`` multiple) in every tensor is named as such.
    """
    if not isinstance(got, list | tuple):
        raise CheckFailed(f"{what}: expected a list of {len(want)} arrays, got {type(got).__name__}")
    if len(got) != len(want):
        raise CheckFailed(f"{what}: expected a list of {len(want)} arrays, got {len(got)}")
    shapes_ok = all(np.shape(g) == np.shape(w) for g, w in zip(got, want))
    if shapes_ok and not all(
        np.allclose(np.asarray(g, np.float64), np.asarray(w, np.float64), rtol=rtol, atol=atol, equal_nan=True)
        for g, w in zip(got, want)
    ):
        flat_g = np.concatenate([np.asarray(g, np.float64).ravel() for g in got])
        flat_w = np.concatenate([np.asarray(w, np.float64).ravel() for w in want])
        flat_like = {k: np.concatenate([np.asarray(a, np.float64).ravel() for a in v]) for k, v in (like or {}).items()}
        whole = summarize_mismatch(flat_g, flat_w, like=flat_like, ratios=ratios, atol=atol)
        if "; yours is " in whole:
            whole = whole[whole.index("; yours is ") + 2 :]
        if whole.startswith(("yours looks like", "yours is ")):
            raise CheckFailed(f"{what}: over all {len(want)} tensors, {whole}{f' Hint: {hint}' if hint else ''}")
    for i, (g, w) in enumerate(zip(got, want)):
        expect_close(g, w, what=f"{what}, tensor {i}", hint=hint, rtol=rtol, atol=atol)


def expect_equal(got, want, *, what: str, hint: str = "") -> None:
    """Raise :class:`CheckFailed` unless ``got == want``."""
    same = np.array_equal(np.asarray(got), np.asarray(want)) if _is_arraylike(want) else got == want
    if not same:
        hint = f" Hint: {hint}" if hint else ""
        raise CheckFailed(f"{what}: expected {_fmt(want)}, got {_fmt(got)}.{hint}")
