"""The course environment: the lock is installed, the conda file matches it, syft works, imports stay light."""

import importlib
import importlib.metadata
import subprocess
import sys

import pytest

from fedlab import environment

pytestmark = pytest.mark.course_env  # one environment for the whole course (lessons 00-11 and the workshop)

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
    "flwr",
    "syft_rds",
    "uv",
]


def test_every_locked_package_is_installed_at_its_version():
    wrong = environment.lock_mismatches(LOCK)
    assert not wrong, f"installed versions differ from requirements.lock: {wrong}"


def test_one_lock_holds_syft_010_and_flower_on_numpy_2():
    assert LOCK["syft"] == "0.10.0" and LOCK["syft-rds"] == "0.6.1" and LOCK["flwr"] == "1.42.0"
    assert LOCK["numpy"].startswith("2.") and LOCK["torch"] == "2.13.0" and "uv" in LOCK
    assert LOCK["jupyterlab"].startswith("4.") and LOCK["ipywidgets"].startswith("8.")
    assert not (environment.ROOT / "requirements-flower.lock").exists(), "the second environment is retired"


@pytest.mark.parametrize("module", COURSE_IMPORTS)
def test_course_package_imports(module):
    importlib.import_module(module)


def test_requirements_in_names_are_locked():
    wanted = []
    for line in (environment.ROOT / "requirements.in").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            wanted.append(environment.canonical(line.split("=")[0].split(">")[0].split("<")[0].split("[")[0]))
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
    assert "PROBLEM" not in res.stdout and "syft 0.10.0 and syft-rds import" in res.stdout
    for line in ("uv: uv ", "jobs' interpreter: this Python", "jobs' wheel folder: "):
        assert sum(line in x for x in res.stdout.splitlines()) == 1, f"doctor has no single line {line!r}"


def test_doctor_says_how_to_get_missing_job_pieces(monkeypatch, tmp_path):
    from fedlab import remote

    monkeypatch.setenv(remote.JOBS_DIR_VAR, str(tmp_path / "nowhere"))
    monkeypatch.setattr(remote, "uv_binary", lambda: None)
    lines = []
    environment._check_jobs(lambda ok, text: lines.append((ok, text)))
    assert [ok for ok, _ in lines] == [False, True, False]
    assert "uv: not found" in lines[0][1] and "make install" in lines[0][1]
    assert "no syft 0.10.0 wheel" in lines[2][1] and "python -m fedlab jobs prepare" in lines[2][1]
    wheels = tmp_path / "nowhere" / "wheels"
    wheels.mkdir(parents=True)
    (wheels / "syft-0.10.0-py3-none-any.whl").write_bytes(b"")
    (wheels / "pydantic_core-2.0-cp39-cp39-manylinux.whl").write_bytes(b"")
    lines.clear()
    environment._check_jobs(lambda ok, text: lines.append((ok, text)))
    assert lines[2][0] is False and "made for another Python" in lines[2][1]


def test_lock_mismatches_names_missing_and_wrong_versions():
    have = importlib.metadata.version("pytest")
    pins = {"pytest": have + "+local", "no-such-package-xyz": "1.0", "numpy": "0.0.1"}
    assert environment.lock_mismatches(pins) == {
        "no-such-package-xyz": ("1.0", None),
        "numpy": ("0.0.1", importlib.metadata.version("numpy")),
    }
