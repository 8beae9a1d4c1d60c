"""The course environment: the lock is installed, the conda file matches it, syft works, imports stay light."""

import importlib
import importlib.metadata
import subprocess
import sys
import uuid

import pytest

from fedlab import environment

pytestmark = pytest.mark.course_env  # the Flower environment has its own lock (tests/test_flower_env.py)

LOCK = environment.read_lock(environment.LOCK.read_text())

COURSE_IMPORTS = [
    "jupyterlab",
    "ipywidgets",
    "ipycanvas",
    "numpy",
    "torch",
    "matplotlib",
    "sklearn",
    "cryptography",
    "opacus",
    "dp_accounting",
    "nbclient",
    "nbformat",
    "ipykernel",
    "pytest",
    "hypothesis",
    "playwright",
    "sniffio",
    "scipy",
]


def test_every_locked_package_is_installed_at_its_version():
    wrong = environment.lock_mismatches(LOCK)
    assert not wrong, f"installed versions differ from requirements.lock: {wrong}"


def test_syft_pins_hold():
    assert LOCK["syft"] == "0.9.5" and LOCK["numpy"].startswith("1.24.") and LOCK["torch"] == "2.13.0"
    assert LOCK["ipywidgets"] == "8.1.2" and LOCK["pydantic"] == "2.10.6"
    assert LOCK["jupyterlab"].startswith("4.")


@pytest.mark.parametrize("module", COURSE_IMPORTS)
def test_course_package_imports(module):
    importlib.import_module(module)


def test_requirements_in_names_are_locked():
    wanted = []
    for line in (environment.ROOT / "requirements.in").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            wanted.append(environment.canonical(line.split("=")[0].split(">")[0].split("<")[0]))
    missing = [w for w in wanted if w not in LOCK]
    assert not missing


def test_environment_yml_names_the_same_packages_as_the_lock():
    text = (environment.ROOT / "environment.yml").read_text()
    assert "python=3.11" in text
    assert environment.read_environment_yml(text) == LOCK
    assert text == environment.environment_yml(environment.LOCK.read_text()), (
        "run `make lock` / python -m fedlab lock-env"
    )


def test_read_lock_rejects_unpinned_lines():
    with pytest.raises(ValueError, match="name==version"):
        environment.read_lock("numpy>=1.24\n")


def _modules_after(code):
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return set(out.stdout.split())


def test_import_fedlab_is_light_and_never_imports_syft():
    mods = _modules_after("import fedlab")
    assert not {"syft", "torch", "ipywidgets", "jupyterlab", "matplotlib"} & mods
    mods = _modules_after("import fedlab.fedavg, fedlab.engine, fedlab.partition, fedlab.data, fedlab.models")
    assert "torch" in mods
    assert not {"syft", "ipywidgets", "jupyterlab", "matplotlib", "IPython"} & mods


def test_doctor_is_clean():
    res = subprocess.run([sys.executable, "-m", "fedlab", "doctor"], capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "PROBLEM" not in res.stdout and "syft 0.9.5 imports" in res.stdout
    assert "Flower environment for lesson 11: flwr 1.42.0" in res.stdout  # make test builds .venv-flower


def test_doctor_says_how_to_get_a_missing_flower_kernel(monkeypatch):
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    def missing(self, name):
        raise NoSuchKernel(name)

    monkeypatch.setattr(KernelSpecManager, "get_kernel_spec", missing)
    lines = []
    environment._check_flower(lambda ok, text: lines.append((ok, text)))
    assert lines == [(False, "no Jupyter kernel 'flower-lesson': lesson 11 needs the Flower env (run `make flower`)")]


SYFT_SMOKE = """
import syft as sy
from fedlab import remote
site = remote.launch("{name}")  # sy.orchestra.launch(name=..., reset=True) + owner login, quietly
assert site.owner is not None and sy.__version__ == "0.9.5"
print("DATASITE-UP", type(site.server).__name__)
remote.land(site)  # land() and delete the state folder
print("LANDED")
"""


@pytest.mark.syft
def test_syft_datasite_launches_and_lands():
    name = f"fedlab-smoke-{uuid.uuid4().hex[:8]}"
    res = subprocess.run([sys.executable, "-c", SYFT_SMOKE.format(name=name)], capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    assert "DATASITE-UP" in res.stdout and "LANDED" in res.stdout


def test_lock_mismatches_names_missing_and_wrong_versions():
    have = importlib.metadata.version("pytest")
    pins = {"pytest": have + "+local", "no-such-package-xyz": "1.0", "numpy": "0.0.1"}
    assert environment.lock_mismatches(pins) == {
        "no-such-package-xyz": ("1.0", None),
        "numpy": ("0.0.1", importlib.metadata.version("numpy")),
    }
