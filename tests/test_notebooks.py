"""Every lesson notebook runs: solutions top to bottom without errors; student copies fail only at the stubs.

Each notebook is executed once, with nbclient, in a fresh kernel of this
Python (``PYTHONHASHSEED=0``), 300 s per cell, with the working folder set to
the notebook's own folder, as Jupyter does (``solutions/``, ``notebooks/`` and
``work/`` sit at the same depth, so relative paths behave the same in all
three). Wall times are printed and written to ``notebook_times.json`` in
pytest's temporary folder. After a solution notebook runs, the figures its
markdown quotes are read back from its outputs, and the run times it types
are held against this run's (``tests/test_text_drift.py``).

``make test`` runs the suite with two xdist workers (``--dist loadfile``): a
clean-clone run of the whole suite took 11.6 min of test time on the 2-core CI
machine. The lessons' setup cells call ``torch.set_num_threads(1)``, so two
kernels at once share the two cores instead of oversubscribing them.
"""

import json
import os
import time
import warnings
from pathlib import Path

import pytest

from fedlab import course, grader
from tests.test_text_drift import QUOTES, TIMINGS, drift, wall_time_drift

pytestmark = pytest.mark.slow

FIXTURE = Path(__file__).parent / "fixtures" / "99_demo.ipynb"
SOURCES = sorted(course.SOLUTIONS_DIR.glob("*.ipynb")) + [FIXTURE]
STUDENTS = sorted(course.NOTEBOOKS_DIR.glob("*.ipynb")) + [None]  # None: the demo fixture's student copy
STUB_ERRORS = {"NotImplementedError", "CheckFailed"}
CELL_TIMEOUT = 300
TIMES: dict[str, float] = {}


def execute(path: Path, *, allow_errors: bool, tmp_root: Path, label: str):
    nb = course.read_notebook(path)
    kernel = (nb.metadata.get("kernelspec") or {}).get("name", "python3")
    km = grader.kernel_manager(asynchronous=True) if kernel == "python3" else None
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the inline backend, as learners get it
    env["PYTHONHASHSEED"] = "0"
    from nbclient import NotebookClient

    client = NotebookClient(
        nb,
        km=km,
        kernel_name=kernel,
        timeout=CELL_TIMEOUT,
        allow_errors=allow_errors,
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    client.execute(env=env, cleanup_kc=True)
    seconds = time.perf_counter() - start
    TIMES[label] = round(seconds, 2)
    (tmp_root / "notebook_times.json").write_text(json.dumps(TIMES, indent=1, sort_keys=True) + "\n")
    print(f"{label}: {seconds:.1f} s (times in {tmp_root / 'notebook_times.json'})")
    return nb


def errors_of(nb):
    return [
        (i, out.get("ename"), out.get("evalue"))
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory):
    return tmp_path_factory.getbasetemp()


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_solution_notebook_runs_without_errors(path, tmp_root):
    label = f"{path.parent.name}/{path.name}"
    nb = execute(path, allow_errors=False, tmp_root=tmp_root, label=label)
    assert not errors_of(nb)
    drifted = drift(nb, QUOTES.get(path.name, ()))  # the figures the markdown quotes, read back from the outputs
    # Typed run times are compared with this run's wall time, but only as a warning: the project keeps timing
    # out of pass/fail (a loaded CI machine is not a wrong lesson); the static rule that every typed time names
    # its measured run is tests/test_text_drift.py's, and the figures come from benchmarks/readme_timings.py.
    for slow in wall_time_drift(nb, TIMINGS.get(path.name, ()), seconds=TIMES[label]):
        warnings.warn(f"{path.name}: {slow}", stacklevel=1)
    assert not drifted, f"{path.name}: the text quotes figures its outputs no longer give:\n" + "\n".join(drifted)


@pytest.mark.parametrize("path", STUDENTS, ids=lambda p: p.name if p else "99_demo.ipynb(student)")
def test_student_notebook_errors_only_at_the_stubs(path, tmp_root, tmp_path):
    label = f"{path.parent.name}/{path.name}" if path else "fixtures/99_demo.ipynb (student copy)"
    if path is None:
        path = tmp_path / "99_demo.ipynb"
        course.build_student(FIXTURE, path)
    nb = execute(path, allow_errors=True, tmp_root=tmp_root, label=label)
    errors = errors_of(nb)
    wrong = [e for e in errors if e[1] not in STUB_ERRORS]
    assert not wrong, f"{path.name}: errors other than the stubs' (cell, ename, evalue): {wrong}"
    if any("exercise" in course.cell_tags(c) for c in nb.cells):
        assert errors, f"{path.name}: a blank student notebook should stop at its first exercise"
