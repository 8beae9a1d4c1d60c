"""Suite-wide pytest settings.

Parallel runs (``pytest -n 2 --dist loadgroup``, what ``make test`` uses): every
test file is one group, so it runs in a single worker and its module-scoped
fixtures (a grading room, a set of datasites, a JupyterLab server) are set up
once, exactly as with ``--dist loadfile``. The one exception is notebook
execution: each notebook of ``tests/test_notebooks.py`` is its own group, so
two notebooks run at once instead of all of them queuing behind one worker.
"""

import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
