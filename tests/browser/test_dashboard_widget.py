"""Lesson 09 in a real browser: run every cell, move the dashboard's client slider with the keyboard.

The notebook is copied into the shared lab server's folder and run with Run
All. The live dashboard's slider handle is focused and moved with ArrowRight
/ ArrowLeft; the picture must be redrawn (highlighting the next client) and
going back must give back the first picture. The page must make no request
off the machine.
"""

import base64
import time
from pathlib import Path

import pytest

from tests.browser.conftest import BLOB_B64_JS, SETTLED_JS, run_lesson, scroll_to, wait_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = Path(__file__).resolve().parents[2] / "solutions" / "09_monitor_debug.ipynb"
BOX = ".fedlab-dashboard"
PICTURE = f"{BOX} .fedlab-dashboard-picture"
SUMMARY = f"{BOX} .fedlab-dashboard-summary"
READOUT = f"{BOX} .widget-readout"


def _picture(page) -> bytes:
    page.wait_for_function(SETTLED_JS, arg=[PICTURE, 1000], polling=100, timeout=60_000)
    return base64.b64decode(page.evaluate(BLOB_B64_JS, PICTURE))


def _move(page, handle, key: str, readout: str) -> None:
    src = page.locator(PICTURE).get_attribute("src")
    handle.press(key)
    page.wait_for_function(
        "([sel, t]) => document.querySelector(sel).innerText.trim() === t", arg=[READOUT, readout], timeout=30_000
    )
    page.wait_for_function("([sel, s]) => document.querySelector(sel).src !== s", arg=[PICTURE, src], timeout=60_000)


def test_dashboard_slider_highlights_a_client_with_the_keyboard(lab_server, page):
    open_s, run_s = run_lesson(page, lab_server, NOTEBOOK)
    t_run = time.monotonic()

    scroll_to(page, BOX)
    page.locator(PICTURE).wait_for(state="visible", timeout=30_000)
    assert page.locator(f"{BOX} .fedlab-dashboard-progress").count() == 1
    wait_text(page, SUMMARY, "round 20 of 20")
    first = _picture(page)
    assert first.startswith(b"\x89PNG")

    handle = page.locator(f"{BOX} .noUi-handle").first
    handle.focus()
    _move(page, handle, "ArrowRight", "1")
    moved = _picture(page)
    assert moved != first
    wait_text(page, SUMMARY, "client 1:")

    _move(page, handle, "ArrowLeft", "0")
    assert _picture(page) == first
    assert page.external_requests == [], page.external_requests
    print(
        f"\n[lesson 09] open {open_s:.1f} s, run all {run_s:.1f} s, "
        f"two keyboard moves checked {time.monotonic() - t_run:.1f} s"
    )
