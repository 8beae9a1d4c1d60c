"""Lesson 07 in a real browser: JupyterLab + headless Chromium run the lesson, keyboard presses move the
"what the server sees" widget's dropout slider, and the display goes from "recovered" to "refused" (status and
images change), with no request leaving 127.0.0.1.

A missing Chromium fails the test (see conftest.py); a failing test leaves a screenshot in test-artifacts/.
"""

import shutil
import time
from pathlib import Path

import pytest

from tests.browser.conftest import open_notebook, run_all

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = Path(__file__).resolve().parents[2] / "solutions" / "07_secure_aggregation.ipynb"
VIEW = ".fedlab-secagg-view"
SUM_IMG = f"{VIEW} .fedlab-secagg-sum"  # ipywidgets puts an Image's classes on the <img> itself
RECEIVED_IMG = f"{VIEW} .fedlab-secagg-received"
STATUS = f"{VIEW} .fedlab-secagg-status"

SETTLED_JS = """([sel, quiet]) => {  // true once the <img> src has not changed for `quiet` ms
  const el = document.querySelector(sel); if (!el) return false;
  const s = el.src, now = performance.now();
  if (window.__lastSrc !== s) { window.__lastSrc = s; window.__since = now; }
  return now - window.__since > quiet; }"""


def _scroll_to_widget(page, *, timeout_s: float = 60) -> None:
    """JupyterLab renders only the cells near the viewport: scroll the notebook until the widget is there."""
    page.locator(".jp-NotebookPanel-notebook").first.click(position={"x": 5, "y": 5})  # command mode
    page.keyboard.press("Escape")
    page.keyboard.press("Control+Home")
    t0 = time.monotonic()
    while page.locator(VIEW).count() == 0 or not page.locator(VIEW).first.is_visible():
        assert time.monotonic() - t0 < timeout_s, "the 'what the server sees' widget never appeared in the notebook"
        page.locator(".jp-NotebookPanel-notebook").first.hover()
        page.mouse.wheel(0, 600)
        page.wait_for_timeout(150)
    page.locator(VIEW).first.scroll_into_view_if_needed()


def test_server_view_answers_keyboard_moves(lab_server, page):
    t0 = time.monotonic()
    shutil.copy(NOTEBOOK, lab_server["root"] / NOTEBOOK.name)
    open_notebook(page, lab_server, NOTEBOOK.name)
    t_open = time.monotonic()
    run_all(page, timeout_ms=300_000)
    t_run = time.monotonic()
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']", has_text="Error")
    assert errors.count() == 0, errors.first.inner_text()

    _scroll_to_widget(page)
    status = page.locator(STATUS).first
    status.wait_for(state="visible", timeout=30_000)
    assert "recovered" in status.inner_text() and "nobody drops" in status.inner_text(), status.inner_text()
    sum_img, received_img = page.locator(SUM_IMG).first, page.locator(RECEIVED_IMG).first
    sum_sel = SUM_IMG
    page.wait_for_function(SETTLED_JS, arg=[sum_sel, 500], polling=100, timeout=30_000)
    sum0, received0 = sum_img.get_attribute("src"), received_img.get_attribute("src")
    assert sum0 and received0

    slider = page.locator(f"{VIEW} .widget-slider", has_text="clients that drop")
    handle = slider.locator(".noUi-handle")
    handle.focus()
    handle.press("ArrowRight")  # noUiSlider is keyboard-accessible: 0 -> 1 dropout, still recovered
    page.locator(f"{VIEW} .widget-readout", has_text="1").first.wait_for(timeout=30_000)
    page.wait_for_function("([sel, t]) => document.querySelector(sel).innerText.includes(t)",
                           arg=[STATUS, "1 of 10 clients drop"], timeout=30_000)  # fmt: skip
    assert "recovered" in status.inner_text(), status.inner_text()
    page.wait_for_function("([sel, s]) => document.querySelector(sel).src !== s", arg=[sum_sel, sum0], timeout=30_000)
    assert received_img.get_attribute("src") != received0  # a cross where the dropped client's vector was

    for _ in range(4):  # 5 dropouts: 5 clients remain, below t = 6
        handle.press("ArrowRight")
    page.wait_for_function("([sel, t]) => document.querySelector(sel).innerText.includes(t)",
                           arg=[STATUS, "refused"], timeout=30_000)  # fmt: skip
    page.wait_for_function(SETTLED_JS, arg=[sum_sel, 1000], polling=100, timeout=30_000)
    text = status.inner_text()
    assert "refused" in text and "5 of 10 clients drop" in text and "t = 6" in text, text
    assert sum_img.get_attribute("src") not in (sum0, None)
    assert page.external_requests == [], page.external_requests
    print(
        f"\n[lesson 07] open {t_open - t0:.1f} s, run all {t_run - t_open:.1f} s, "
        f"keyboard moves checked {time.monotonic() - t_run:.1f} s"
    )
