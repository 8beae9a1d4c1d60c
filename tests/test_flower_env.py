"""Flower in the one course environment: its executables and app API are there beside syft 0.10.

Lesson 11 and the workshop commands run on the course's own Python (the second
environment, ``.venv-flower``, is retired); the lock itself is checked by
tests/test_environment.py.
"""

import importlib.util

import pytest

pytestmark = pytest.mark.flower


def test_flower_executables_and_app_imports():
    from fedlab.flower import local

    bin_dir = local.flower_bin()
    assert all((bin_dir / exe).exists() for exe in local.EXECUTABLES)
    import flwr
    from flwr.app import ArrayRecord  # noqa: F401
    from flwr.serverapp import Grid  # noqa: F401

    assert flwr.__version__ == "1.42.0"


def test_flower_and_syft_share_the_environment():
    assert importlib.util.find_spec("syft_rds") is not None and importlib.util.find_spec("flwr") is not None
