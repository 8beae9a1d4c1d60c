"""Lesson 09 in a real browser: run every cell, move the dashboard's client slider with the keyboard.

The notebook is copied into the shared lab server's folder and run with Run
All. The live dashboard's slider handle is focused and moved with ArrowRight
/ ArrowLeft; the picture must be redrawn (highlighting the next client) and
going back must give back the first picture. The page must make no request
off the machine.
"""

import base64
import shutil
import time
from pathlib import Path

import pytest

from tests.browser.conftest import open_notebook, run_all

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = Path(__file__).resolve().parents[2] / "solutions" / "09_monitor_debug.ipynb"
BOX = ".fedlab-dashboard"
PICTURE = f"{BOX} .fedlab-dashboard-picture"
SUMMARY = f"{BOX} .fedlab-dashboard-summary"
READOUT = f"{BOX} .widget-readout"

SETTLED_JS = """([sel, quiet]) => {  // true once the <img> src has not changed for `quiet` ms
  const el = document.querySelector(sel); if (!el) return false;
  const s = el.src, now = performance.now();
  if (window.__lastSrc !== s) { window.__lastSrc = s; window.__since = now; }
  return now - window.__since > quiet; }"""
BLOB_B64_JS = """async sel => { const b = await (await fetch(document.querySelector(sel).src)).arrayBuffer();
  let s = ''; const u = new Uint8Array(b);
  for (let i = 0; i < u.length; i += 0x8000) s += String.fromCharCode(...u.subarray(i, i + 0x8000));
  return btoa(s); }"""


def _scroll_to_dashboard(page, *, timeout_s: float = 60) -> None:
    page.locator(".jp-NotebookPanel-notebook").first.click(position={"x": 5, "y": 5})  # command mode
    page.keyboard.press("Escape")
    page.keyboard.press("Control+Home")
    t0 = time.monotonic()
    while page.locator(BOX).count() == 0 or not page.locator(BOX).first.is_visible():
        assert time.monotonic() - t0 < timeout_s, "the dashboard never appeared in the notebook"
        page.locator(".jp-NotebookPanel-notebook").first.hover()
        page.mouse.wheel(0, 500)
        page.wait_for_timeout(150)
    page.locator(BOX).first.scroll_into_view_if_needed()


def _picture(page) -> bytes:
    page.wait_for_function(SETTLED_JS, arg=[PICTURE, 1000], polling=100, timeout=60_000)
    return base64.b64decode(page.evaluate(BLOB_B64_JS, PICTURE))


def _move(page, handle, key: str, readout: str) -> None:
    src = page.locator(PICTURE).get_attribute("src")
    handle.press(key)
    page.wait_for_function("([sel, t]) => document.querySelector(sel).innerText.trim() === t", arg=[READOUT, readout],
                           timeout=30_000)
    page.wait_for_function("([sel, s]) => document.querySelector(sel).src !== s", arg=[PICTURE, src],
                           timeout=60_000)


def test_dashboard_slider_highlights_a_client_with_the_keyboard(lab_server, page):
    t0 = time.monotonic()
    shutil.copy(NOTEBOOK, Path(lab_server["root"]) / NOTEBOOK.name)
    open_notebook(page, lab_server, NOTEBOOK.name)
    t_open = time.monotonic()
    run_all(page, timeout_ms=300_000)
    t_run = time.monotonic()
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']", has_text="Error")
    assert errors.count() == 0, errors.first.inner_text()

    _scroll_to_dashboard(page)
    page.locator(PICTURE).wait_for(state="visible", timeout=30_000)
    assert page.locator(f"{BOX} .fedlab-dashboard-progress").count() == 1
    assert "round 20 of 20" in page.locator(SUMMARY).inner_text()
    first = _picture(page)
    assert first.startswith(b"\x89PNG")

    handle = page.locator(f"{BOX} .noUi-handle").first
    handle.focus()
    _move(page, handle, "ArrowRight", "1")
    moved = _picture(page)
    assert moved != first
    assert "client 1:" in page.locator(SUMMARY).inner_text()

    _move(page, handle, "ArrowLeft", "0")
    assert _picture(page) == first
    assert page.external_requests == [], page.external_requests
    print(f"\n[lesson 09] open {t_open - t0:.1f} s, run all {t_run - t_open:.1f} s, "
          f"two keyboard moves checked {time.monotonic() - t_run:.1f} s")
