"""House style enforced by a linter (ruff: pyflakes, pycodestyle, import order, docstrings)."""

import subprocess
import sys

import pytest

from fedlab import environment

pytestmark = pytest.mark.course_env  # ruff is in the course environment only


def test_ruff_is_clean():
    res = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--output-format", "concise", "fedlab", "tests", "benchmarks"],
        cwd=environment.ROOT, capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
