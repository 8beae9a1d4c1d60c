"""`make lab` starts a JupyterLab that answers, as root too (issue 18, point 6).

The test asks make for the lab target's commands (``make -n``: printed, never run, so no venv is built), takes the
JupyterLab command line from them as it is, adds only ``JUPYTER_ARGS`` (no browser, a free port, a known
token, through the variable the README documents), starts it in a temporary directory with a ``work/`` folder,
polls ``/api`` until the server answers, then stops it. As root the command line must carry ``--allow-root``.
It needs the course environment's JupyterLab; it fails (never skips) when the server does not answer.
"""

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_command(jupyter_args: str) -> str:
    """The JupyterLab line of `make lab`, as make would run it."""
    venv = Path(sys.prefix)
    out = subprocess.run(
        ["make", "-n", "-s", "-C", str(ROOT), "lab", f"VENV={venv}", f"FLOWER_VENV={venv}", f"JUPYTER_ARGS={jupyter_args}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = [line for line in out.splitlines() if "bin/jupyter lab" in line]
    assert len(lines) == 1, f"expected one jupyter lab command in `make -n lab`, got:\n{out}"
    return lines[0]


def test_lab_command_passes_allow_root_only_as_root():
    line = lab_command("--no-browser")
    assert ("--allow-root" in shlex.split(line)) == (os.geteuid() == 0), line
    assert "--no-browser" in shlex.split(line)


def test_lab_start_up_answers(tmp_path):
    assert (Path(sys.prefix) / "bin" / "jupyter").exists(), f"no jupyter in {sys.prefix}: run in the course env"
    port, token = _free_port(), "fedlab-test-token"
    line = lab_command(f"--no-browser --port={port} --ServerApp.token={token} --ServerApp.open_browser=False")
    (tmp_path / "work").mkdir()
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), HOME=str(tmp_path))
    proc = subprocess.Popen(
        ["bash", "-c", line], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    answer, deadline = None, time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api?token={token}", timeout=2) as r:
                    answer = json.loads(r.read())
                    break
            except OSError:
                time.sleep(0.5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            output = proc.communicate(timeout=30)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output = proc.communicate()[0].decode(errors="replace")
    assert answer is not None and "version" in answer, f"JupyterLab did not answer on /api; it said:\n{output[-3000:]}"
