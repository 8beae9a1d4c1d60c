"""Lesson 07 in a real browser: JupyterLab + headless Chromium run the lesson, keyboard presses move the
"what the server sees" widget's dropout slider, and the display goes from "recovered" to "refused" (status and
images change), with no request leaving 127.0.0.1.

A missing Chromium fails the test (see conftest.py); a failing test leaves a screenshot in test-artifacts/.
"""

import time
from pathlib import Path

import pytest

from tests.browser.conftest import SETTLED_JS, run_lesson, scroll_to, wait_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = Path(__file__).resolve().parents[2] / "solutions" / "07_secure_aggregation.ipynb"
VIEW = ".fedlab-secagg-view"
SUM_IMG = f"{VIEW} .fedlab-secagg-sum"  # ipywidgets puts an Image's classes on the <img> itself
RECEIVED_IMG = f"{VIEW} .fedlab-secagg-received"
STATUS = f"{VIEW} .fedlab-secagg-status"


def test_server_view_answers_keyboard_moves(lab_server, page):
    open_s, run_s = run_lesson(page, lab_server, NOTEBOOK)
    t_run = time.monotonic()

    scroll_to(page, VIEW)
    page.locator(STATUS).first.wait_for(state="visible", timeout=30_000)
    wait_text(page, STATUS, "nobody drops", "recovered")  # the HTML widget fills in after it shows
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
    wait_text(page, STATUS, "1 of 10 clients drop", "recovered")
    page.wait_for_function("([sel, s]) => document.querySelector(sel).src !== s", arg=[sum_sel, sum0], timeout=30_000)
    assert received_img.get_attribute("src") != received0  # a cross where the dropped client's vector was

    for _ in range(4):  # 5 dropouts: 5 clients remain, below t = 6
        handle.press("ArrowRight")
    wait_text(page, STATUS, "refused", "5 of 10 clients drop", "t = 6")
    page.wait_for_function(SETTLED_JS, arg=[sum_sel, 1000], polling=100, timeout=30_000)
    assert sum_img.get_attribute("src") not in (sum0, None)
    assert page.external_requests == [], page.external_requests
    print(
        f"\n[lesson 07] open {open_s:.1f} s, run all {run_s:.1f} s, "
        f"keyboard moves checked {time.monotonic() - t_run:.1f} s"
    )
