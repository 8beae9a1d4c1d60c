"""A room without internet: `make wheelhouse`, then `make lab WHEELHOUSE=...` installs with no index.

Building the whole wheelhouse (~1.5 GB) is too slow for CI, so the
install is tested on a subset of the lock (pytest and its dependencies, numpy)
plus the fedlab-workbook wheel, in a fresh virtual environment, with pip's
configuration isolated (this machine has a global pip.conf with extra indexes
and find-links), ``PIP_NO_INDEX=1``, a dead proxy, and, where the kernel
allows it, no network at all (``unshare -n``). The Makefile's own commands are
checked with ``make -n``.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds virtual environments; runs in the main environment's suite only

ROOT = Path(__file__).resolve().parents[1]
SUBSET = ("pytest", "iniconfig", "packaging", "pluggy", "pygments", "numpy")


def lock_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[name.lower().replace("_", "-")] = version.strip()
    return pins


def offline_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and "proxy" not in k.lower()}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PIP_NO_CACHE_DIR="1", HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9",
               https_proxy="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9", HOME=str(tmp_path))
    return env


def no_network_prefix() -> list[str]:
    """``["unshare", "-n"]`` when this kernel lets us drop the network (root), else ``[]``."""
    if shutil.which("unshare"):
        probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10)
        if probe.returncode == 0:
            return ["unshare", "-n"]
    return []


def test_makefile_installs_from_the_wheelhouse_with_no_index(tmp_path):
    wh = tmp_path / "usb" / "wheelhouse"
    res = subprocess.run(
        ["make", "-n", "lab", f"WHEELHOUSE={wh}", f"VENV={tmp_path / 'v'}",
         "TORCH_INDEX=https://download.pytorch.org/whl/cpu"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 0, res.stderr
    installs = [line for line in res.stdout.splitlines() if "pip install" in line and "-r requirements" in line]
    assert len(installs) == 1, res.stdout  # one environment for the whole course
    jobs = [line for line in res.stdout.splitlines() if "pip download" in line and "syft==0.10.0" in line]
    assert len(jobs) == 1, res.stdout  # lesson 06's job wheels, from the same wheelhouse
    for line in installs + jobs:
        assert f"--no-index --find-links {wh}" in line
        assert "--extra-index-url" not in line  # a wheelhouse replaces every index, TORCH_INDEX too
    assert "fedlab jobs warm" in res.stdout
    res = subprocess.run(["make", "-n", "wheelhouse", f"WHEELHOUSE_DIR={tmp_path / 'wh'}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "-r requirements.lock" in res.stdout and "requirements-flower" not in res.stdout
    assert "pip wheel" in res.stdout and "--no-build-isolation" in res.stdout


@pytest.mark.timeout(400)
def test_install_from_a_wheelhouse_works_with_no_index(tmp_path):
    pins = lock_pins(ROOT / "requirements.lock")
    reqs = tmp_path / "subset.txt"
    reqs.write_text("".join(f"{name}=={pins[name]}\n" for name in SUBSET))
    wh = tmp_path / "wheelhouse"
    # build, the way `make wheelhouse` does (this step may use the machine's indexes)
    for argv in (
        [sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-deps", "-w", str(wh), "-r",
         str(reqs)],
        [sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-deps", "--no-build-isolation",
         "-w", str(wh), str(ROOT)],
    ):
        res = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    wheels = sorted(p.name for p in wh.iterdir())
    assert all(w.endswith(".whl") for w in wheels) and any(w.startswith("fedlab_workbook-") for w in wheels)
    # install on a "laptop" with no index, no pip config, no network
    venv = tmp_path / "laptop"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = offline_env(tmp_path)
    pip = [*no_network_prefix(), str(venv / "bin" / "python"), "-m", "pip"]
    res = subprocess.run([*pip, "install", "--no-index", "--find-links", str(wh), "-r", str(reqs)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    res = subprocess.run([*pip, "install", "--no-index", "--find-links", str(wh), "--no-deps", "fedlab-workbook"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    code = "import numpy, pytest, fedlab.validate as v; print(numpy.__version__, v.positive_int('n', 3))"
    res = subprocess.run([str(venv / "bin" / "python"), "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [pins["numpy"], "3"]
    # and nothing outside the wheelhouse can be had: proof that no index was used
    res = subprocess.run([*pip, "install", "--no-index", "--find-links", str(wh), "six"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "No matching distribution" in res.stdout + res.stderr
