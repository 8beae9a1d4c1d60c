"""Real-browser fixtures: one JupyterLab server per test session, driven by Playwright + Debian's Chromium.

Adapted from ../shared/recipes/browser (measured on this machine). The server
serves a temporary folder into which tests copy the notebooks they open; it
runs with isolated Jupyter folders, no news or update checks, on 127.0.0.1 with
a random port. Every page blocks and records requests that leave 127.0.0.1, so
a test can assert that a lesson makes none. A missing Chromium is a failure,
never a skip: ``make test`` installs it (``make browser-deps``).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
TOKEN = "fedlab-test-token"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _isolated_env(tmp: Path) -> dict:
    env = dict(os.environ)
    for k in (
        "JUPYTER_CONFIG_DIR",
        "JUPYTER_DATA_DIR",
        "JUPYTER_RUNTIME_DIR",
        "JUPYTERLAB_SETTINGS_DIR",
        "JUPYTERLAB_WORKSPACES_DIR",
        "IPYTHONDIR",
    ):
        (tmp / k).mkdir()
        env[k] = str(tmp / k)
    settings = tmp / "JUPYTERLAB_SETTINGS_DIR" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    # the kernel must find the same interpreter as the server
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    return env


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1; ``root`` is the folder it serves."""
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "root"
    root.mkdir()
    env = _isolated_env(tmp)
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.port=0",
        f"--IdentityProvider.token={TOKEN}",
        "--ServerApp.open_browser=False",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    base = None
    while time.monotonic() - t0 < 120:
        assert proc.poll() is None, f"JupyterLab died: {(tmp / 'server.log').read_text()[-3000:]}"
        files = glob.glob(str(tmp / "JUPYTER_RUNTIME_DIR" / "jpserver-*.json"))
        if files:
            try:
                base = json.loads(Path(files[0]).read_text())["url"].rstrip("/")
                urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=2)
                break
            except Exception:
                base = None
        time.sleep(0.2)
    if base is None:
        proc.terminate()
        raise TimeoutError("JupyterLab did not start within 120 s")
    print(f"\n[lab server up in {time.monotonic() - t0:.1f}s at {base}]")
    yield {"base": base, "token": TOKEN, "root": root, "log": tmp / "server.log"}
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium; a missing browser fails the test (never skips)."""
    assert CHROMIUM, "Chromium is not installed: run `make browser-deps` (apt-get install chromium)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh page that blocks and records every request leaving 127.0.0.1."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = ctx.new_page()
    pg.external_requests = []
    pg.console_errors = []

    def block_external(route):
        pg.external_requests.append(route.request.url)
        route.abort()

    pg.route(lambda url: not url.startswith(("http://127.0.0.1", "ws://127.0.0.1")), block_external)
    pg.on("console", lambda m: m.type == "error" and pg.console_errors.append(m.text))
    yield pg
    ctx.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Save a screenshot of the page when a browser test fails."""
    rep = (yield).get_result()
    pg = item.funcargs.get("page") if hasattr(item, "funcargs") else None
    if rep.when == "call" and rep.failed and pg is not None:
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / f"FAILED_{item.name}.png"), full_page=True)


def open_notebook(page, lab_server, name: str, *, timeout_ms: int = 120_000) -> None:
    """Open ``name`` (relative to the server root) in JupyterLab and wait for an idle kernel."""
    page.goto(f"{lab_server['base']}/lab/tree/{name}?token={lab_server['token']}&reset")
    page.locator("#jp-main-statusbar").get_by_text("| Idle").wait_for(timeout=timeout_ms)


def run_all(page, *, timeout_ms: int = 240_000) -> None:
    """Run > Run All Cells, then wait until the kernel is idle again and no cell is queued."""
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    page.wait_for_timeout(500)
    page.wait_for_function(
        """() => ![...document.querySelectorAll('.jp-InputArea-prompt')].some(e => e.textContent.includes('[*]'))""",
        timeout=timeout_ms,
        polling=250,
    )
    page.locator("#jp-main-statusbar").get_by_text("| Idle").wait_for(timeout=timeout_ms)


SETTLED_JS = """([sel, quiet]) => {  // true once the <img> src has not changed for `quiet` ms
  const el = document.querySelector(sel); if (!el) return false;
  const s = el.src, now = performance.now();
  if (window.__lastSrc !== s) { window.__lastSrc = s; window.__since = now; }
  return now - window.__since > quiet; }"""
"""``page.wait_for_function(SETTLED_JS, arg=[selector, quiet_ms])``: wait until an image stops changing."""

BLOB_B64_JS = """async sel => { const b = await (await fetch(document.querySelector(sel).src)).arrayBuffer();
  let s = ''; const u = new Uint8Array(b);
  for (let i = 0; i < u.length; i += 0x8000) s += String.fromCharCode(...u.subarray(i, i + 0x8000));
  return btoa(s); }"""
"""``page.evaluate(BLOB_B64_JS, selector)``: the bytes of an <img>'s (blob) src, base64-encoded."""


def run_lesson(page, lab_server, notebook: Path, *, timeout_ms: int = 300_000) -> tuple[float, float]:
    """Copy ``notebook`` into the server's folder, open it, Run All, and fail on any error output.

    Returns the seconds spent opening it and running it.
    """
    t0 = time.monotonic()
    shutil.copy(notebook, Path(lab_server["root"]) / notebook.name)
    open_notebook(page, lab_server, notebook.name)
    t_open = time.monotonic()
    run_all(page, timeout_ms=timeout_ms)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']", has_text="Error")
    assert errors.count() == 0, errors.first.inner_text()
    return t_open - t0, time.monotonic() - t_open


def scroll_to(page, selector: str, *, timeout_s: float = 60) -> None:
    """JupyterLab renders only the cells near the viewport: scroll the notebook until ``selector`` is visible."""
    page.locator(".jp-NotebookPanel-notebook").first.click(position={"x": 5, "y": 5})  # command mode
    page.keyboard.press("Escape")
    page.keyboard.press("Control+Home")
    t0 = time.monotonic()
    while page.locator(selector).count() == 0 or not page.locator(selector).first.is_visible():
        assert time.monotonic() - t0 < timeout_s, f"{selector} never appeared in the notebook"
        page.locator(".jp-NotebookPanel-notebook").first.hover()
        page.mouse.wheel(0, 500)
        page.wait_for_timeout(150)
    page.locator(selector).first.scroll_into_view_if_needed()


_TEXT_JS = """([sel, needles]) => {  // the element's text once it holds every needle, else false
  const el = document.querySelector(sel); if (!el) return false;
  const t = el.innerText || el.textContent || '';
  return needles.every(n => t.includes(n)) ? t : false; }"""


def wait_image_changed(page, selector: str, old: str) -> None:
    """Wait until the ``<img>`` at ``selector`` shows another picture than ``old`` and has settled (a PNG widget)."""
    page.wait_for_function("([sel, s]) => document.querySelector(sel).src !== s", arg=[selector, old], timeout=60_000)
    page.wait_for_function(SETTLED_JS, arg=[selector, 1000], polling=100, timeout=60_000)


def wait_text(page, selector: str, *needles: str, timeout_ms: int = 30_000) -> str:
    """Wait until the first element matching ``selector`` shows every one of ``needles``; return its text.

    The check and the read happen in one browser call: a widget that re-renders between a wait and a later
    ``inner_text()`` cannot make the test read an empty, half-drawn element (a CI flake seen in lesson 07).
    """
    handle = page.wait_for_function(_TEXT_JS, arg=[selector, list(needles)], polling=100, timeout=timeout_ms)
    return handle.json_value()
