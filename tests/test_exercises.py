"""Every exercise of every lesson, in-process (no kernel): the solution passes, the blank stub fails.

For each ``solutions/*.ipynb`` (and the demo lesson's fixture) the cells
tagged ``setup`` and ``exercise`` are executed in a fresh namespace, once in
their solution version and once in their student (stub) version, with the
working folder set to the notebook's folder as Jupyter does. Then, per
exercise id: the solution passes ``check`` and *every* grading test; the stub
fails ``check`` with :class:`CheckFailed` (so a blank notebook never passes).
"""

import functools
import os
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")  # before anything imports matplotlib in this process

import pytest  # noqa: E402

from fedlab import checks, course  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "99_demo.ipynb"
SOURCES = sorted(course.SOLUTIONS_DIR.glob("*.ipynb")) + [FIXTURE]


def _ids(path):
    try:
        nb = course.read_notebook(path)
    except course.NotebookError:
        return [f"{path.name}:unreadable"]
    return [ex_id for cell in nb.cells for ex_id in course.cell_exercises(cell)]


CASES = [pytest.param(path, ex_id, id=ex_id) for path in SOURCES for ex_id in _ids(path)]


class _Shell:
    """Enough of ``get_ipython()`` for magics in setup cells to be no-ops outside a kernel."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


@pytest.fixture(scope="module", autouse=True)
def _agg_backend():
    try:
        import matplotlib
    except ImportError:
        yield
        return
    matplotlib.use("Agg", force=True)
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@functools.lru_cache(maxsize=None)
def namespace(path: Path, version: str):
    """Run a lesson's setup and exercise cells; returns ``(globals, {cell: error})``."""
    from IPython.core.inputtransformer2 import TransformerManager
    from IPython.display import display

    nb = course.read_notebook(path)
    nb = course.student_notebook(nb, solved="all" if version == "solution" else (), where=path.name)
    ns = {"__name__": "__main__", "get_ipython": _Shell, "display": display}
    errors = {}
    here = os.getcwd()
    os.chdir(path.parent)
    try:
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or not {"setup", "exercise"} & set(course.cell_tags(cell)):
                continue
            code = TransformerManager().transform_cell(course.cell_source(cell))
            try:
                exec(compile(code, f"<{path.name} cell {i}>", "exec"), ns)
            except Exception as err:  # noqa: BLE001 - recorded; the solution version must have none
                errors[i] = f"{type(err).__name__}: {err}"
    finally:
        os.chdir(here)
    return ns, errors


@pytest.mark.parametrize("path, exercise_id", CASES)
def test_solution_passes_check_and_every_grading_test(path, exercise_id):
    ns, errors = namespace(path, "solution")
    assert not errors, f"{path.name}: the solution's setup/exercise cells raised {errors}"
    ex = checks.get(exercise_id)
    assert ex.answer in ns, f"{path.name}: the exercise cells define no `{ex.answer}`"
    checks.check(exercise_id, ns[ex.answer])
    failed = {}
    for test in ex.tests:
        ok, message = checks.run_test(ex, test, ns[ex.answer])
        if not ok:
            failed[test.name] = message
    assert not failed, f"{path.name}: the solution fails grading tests {failed}"


@pytest.mark.parametrize("path, exercise_id", CASES)
def test_blank_stub_fails_its_check(path, exercise_id):
    ns, _ = namespace(path, "stub")
    ex = checks.get(exercise_id)
    with pytest.raises(checks.CheckFailed):
        checks.check(exercise_id, ns.get(ex.answer))
    if callable(ns.get(ex.answer)):  # every grading test lets the stub's NotImplementedError out: "not attempted"
        for test in ex.tests:
            with pytest.raises(NotImplementedError):
                test.run(ns[ex.answer])


@pytest.mark.parametrize("path, exercise_id", CASES)
def test_solution_passes_every_grading_test_through_the_grader_wire(path, exercise_id):
    """What the grader does, without a kernel: every test (hidden ones too) calls the solution through
    :class:`fedlab.wire.RemoteAnswer` (pickled request, JSON reply, never unpickled) on a salted run's fresh
    inputs; an exercise whose arguments or results cannot cross the wire fails here, not in a room."""
    from fedlab import grader, wire

    ns, errors = namespace(path, "solution")
    assert not errors, f"{path.name}: the solution's setup/exercise cells raised {errors}"
    ex = checks.get(exercise_id)
    remote = wire.RemoteAnswer(wire.loopback_transport(ns, ex.answer), ex.answer)
    hidden = grader.hidden_tests(ex.id[:2]).get(ex.id, ())
    failed = {}
    with checks.fresh_inputs(20261207):
        for test in (*ex.tests, *hidden):
            ok, message = checks.run_test(ex, test, remote)
            if not ok:
                failed[test.name] = message
    assert not failed, f"{path.name}: through the grader's wire the solution fails {failed}"
