"""The course environment: its lock file, the conda file made from it, and ``doctor``.

``requirements.lock`` (pip freeze of one resolve of ``requirements.in``) is the
single source of versions. ``environment.yml`` is generated from it
(:func:`environment_yml`), so the conda route installs exactly the same set,
and :func:`doctor` tells a learner what they need to know about their machine.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name (``Foo_Bar`` -> ``foo-bar``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(text: str) -> dict[str, str]:
    """``{canonical name: version}`` of every ``name==version`` line of a lock file."""
    pins = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-")):
            continue
        m = _PIN.match(line)
        if not m:
            raise ValueError(f"lock line {line!r}: expected 'name==version'")
        pins[canonical(m.group(1))] = m.group(2)
    return pins


def environment_yml(lock_text: str) -> str:
    """The conda ``environment.yml`` for a lock: Python 3.11 and every pin in a pip section."""
    pins = read_lock(lock_text)
    lines = [
        "# Generated from requirements.lock by `make lock` (python -m fedlab lock-env): do not edit.",
        "# conda env create -f environment.yml && conda activate fedlab && pip install --no-deps -e .",
        "# torch: on Linux add the CPU wheel index first, see README (Install).",
        "name: fedlab",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        "  - python=3.11",
        "  - pip",
        "  - pip:",
    ]
    lines += [f"      - {name}=={version}" for name, version in sorted(pins.items())]
    return "\n".join(lines) + "\n"


def read_environment_yml(text: str) -> dict[str, str]:
    """``{canonical name: version}`` of the pip section of an ``environment.yml``."""
    pins = {}
    in_pip = False
    for line in text.splitlines():
        if line.strip() == "- pip:":
            in_pip = True
            continue
        if in_pip and line.strip().startswith("- "):
            pins.update(read_lock(line.strip()[2:]))
    return pins


def _line(ok: bool | None, text: str) -> str:
    tag = {True: "ok     ", False: "PROBLEM", None: "note   "}[ok]
    return f"{tag} {text}"


def lock_mismatches(pins: dict[str, str]) -> dict[str, tuple[str, str | None]]:
    """``{name: (locked, installed or None)}`` for every pin this Python does not have at its version.

    Local version labels (``+cpu``) are ignored: the CPU and PyPI torch builds count as the same version.
    """
    wrong = {}
    for name, version in pins.items():
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            wrong[name] = (version, None)
            continue
        if have.split("+")[0] != version.split("+")[0]:
            wrong[name] = (version, have)
    return wrong


def doctor(*, check_syft: bool = True, out=print) -> int:
    """Print what a learner needs to know about this environment; return the number of problems."""
    from fedlab import data

    problems = 0

    def report(ok, text):
        nonlocal problems
        problems += ok is False
        out(_line(ok, text))

    import fedlab

    report(
        sys.version_info[:2] == (3, 11),
        f"Python {platform.python_version()} ({sys.executable}); the course is tested on 3.11",
    )
    report(None, f"fedlab {fedlab.__version__} from {Path(fedlab.__file__).parent}")
    report(None, f"platform {platform.platform()}, {os.cpu_count()} CPU(s)")
    pins = read_lock(LOCK.read_text()) if LOCK.exists() else {}
    for name in (
        "numpy",
        "torch",
        "jupyterlab",
        "ipywidgets",
        "scikit-learn",
        "matplotlib",
        "opacus",
        "dp-accounting",
        "cryptography",
        "flwr",
    ):
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            report(False, f"{name} is not installed: run `make lab` (or pip install -r requirements.lock)")
            continue
        want = pins.get(canonical(name))
        same = want is None or have.split("+")[0] == want.split("+")[0]
        report(True if same else None, f"{name} {have}" + ("" if same else f" (the lock says {want})"))
    try:
        import torch

        cuda = "available" if torch.cuda.is_available() else "not used (CPU only, as the course expects)"
        report(None, f"torch uses {torch.get_num_threads()} thread(s); CUDA {cuda}")
    except ImportError:
        pass
    for name, ok, message in data.verify_all():
        report(ok, f"dataset {name}: {message}")
    if check_syft:
        _check_syft(report)
    _check_jobs(report)
    out(f"{problems} problem(s) found" if problems else "All good: open lesson 00.")
    return problems


def _check_syft(report) -> None:
    """Lesson 06's syft 0.10 and syft-rds import (in a fresh process, so a broken install shows)."""
    from fedlab import remote

    if importlib.util.find_spec("syft") is None or importlib.util.find_spec("syft_rds") is None:
        report(False, f"syft / syft-rds are not installed: lesson 06 needs syft {remote.SYFT_VERSION} (make install)")
        return
    code = "import syft, syft_rds, sys; sys.stdout.write(syft.__version__)"
    try:
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        report(False, "syft took over 180 s to import")
        return
    if res.returncode == 0:
        have = res.stdout.strip()
        report(have == remote.SYFT_VERSION, f"syft {have} and syft-rds import (lesson 06 needs {remote.SYFT_VERSION})")
    else:
        last = (res.stderr.strip().splitlines() or ["?"])[-1]
        report(False, f"syft does not import: {last}")


def _check_jobs(report) -> None:
    """Lesson 06's jobs, offline: uv, the interpreter they run on, the wheel folder (one line each)."""
    from fedlab import remote

    uv = remote.uv_binary()
    if uv is None:
        report(False, "uv: not found; lesson 06's jobs build their environment with it (make install installs it)")
    else:
        try:
            res = subprocess.run([str(uv), "--version"], capture_output=True, text=True, timeout=30)
            ok = res.returncode == 0
            report(ok, f"uv: {res.stdout.strip() or res.stderr.strip()} ({uv})")
        except (OSError, subprocess.TimeoutExpired) as err:
            report(False, f"uv at {uv} does not run ({err})")
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    report(
        True,
        f"jobs' interpreter: this Python {platform.python_version()} ({sys.executable}); lesson 06's jobs run on it, "
        "with the course's packages (no Python 3.12 needed)",
    )
    wheels = remote.job_paths()["wheels"]
    found = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    syft = [w for w in found if w.name.startswith(f"syft-{remote.SYFT_VERSION}-")]
    native = [w for w in found if f"-{tag}-" in w.name]
    if not syft:
        report(False, f"jobs' wheel folder: no syft {remote.SYFT_VERSION} wheel in {wheels}: run `make install` "
               "(or `python -m fedlab jobs prepare`) once with internet")
    elif not native:
        report(False, f"jobs' wheel folder {wheels} has no {tag} wheels: it was made for another Python; "
               "rerun `python -m fedlab jobs prepare`")
    else:
        cache = remote.job_paths()["cache"]
        warm = "warm" if cache.is_dir() and any(cache.iterdir()) else "cold (the first job takes ~10 s)"
        report(True, f"jobs' wheel folder: {len(found)} wheels in {wheels}, uv cache {warm}")
