"""The Flower environment (.venv-flower): every pin of requirements-flower.lock is installed at its version.

Runs only in the Flower environment (marker ``flower``: ``make test-flower``);
the main environment's lock is checked by tests/test_environment.py.
"""

import sys

import pytest

from fedlab import environment

pytestmark = pytest.mark.flower

FLOWER_LOCK = environment.ROOT / "requirements-flower.lock"


def test_every_locked_package_is_installed_at_its_version():
    pins = environment.read_lock(FLOWER_LOCK.read_text())
    assert pins, f"{FLOWER_LOCK} has no pins"
    wrong = environment.lock_mismatches(pins)
    assert not wrong, f"{sys.executable}: installed versions differ from requirements-flower.lock: {wrong}"


def test_flower_pins_hold():
    pins = environment.read_lock(FLOWER_LOCK.read_text())
    assert pins["flwr"] == "1.42.0" and pins["torch"] == "2.13.0"
    assert int(pins["numpy"].split(".")[0]) >= 2
    assert "syft" not in pins  # the reason this environment exists


def test_flower_executables_and_app_imports():
    from fedlab.flower import local

    bin_dir = local.flower_bin()
    assert all((bin_dir / exe).exists() for exe in local.EXECUTABLES)
    import flwr
    from flwr.app import ArrayRecord  # noqa: F401
    from flwr.serverapp import Grid  # noqa: F401

    assert flwr.__version__ == "1.42.0"
