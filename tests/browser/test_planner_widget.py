"""Lesson 10 in a real browser: JupyterLab + headless Chromium run the lesson, a keyboard press moves the
planner's bandwidth slider, and the plan and the chart change, with no request leaving 127.0.0.1.

A missing Chromium fails the test (see conftest.py); a failing test leaves a screenshot in test-artifacts/.
"""

import time
from pathlib import Path

import pytest

from tests.browser.conftest import SETTLED_JS, run_lesson, scroll_to, wait_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = Path(__file__).resolve().parents[2] / "solutions" / "10_capstone.ipynb"
PLANNER = ".fedlab-planner"
CHART = f"{PLANNER} .fedlab-planner-chart"
READOUT = f"{PLANNER} .fedlab-planner-readout"


def test_planner_answers_a_keyboard_move(lab_server, page):
    open_s, run_s = run_lesson(page, lab_server, NOTEBOOK)
    t_run = time.monotonic()

    scroll_to(page, PLANNER)
    chart = page.locator(CHART)
    chart.wait_for(state="visible", timeout=30_000)
    page.wait_for_function(SETTLED_JS, arg=[CHART, 500], polling=100, timeout=30_000)
    chart0, text0 = chart.get_attribute("src"), wait_text(page, READOUT, "best accuracy")
    assert "best accuracy" in text0 and "10 kB" in text0, text0

    slider = page.locator(f"{PLANNER} .widget-slider", has_text="bytes per user")
    handle = slider.locator(".noUi-handle")
    handle.focus()
    handle.press("ArrowLeft")  # noUiSlider takes the keyboard: the budget from 10 kB down to 5 kB
    page.locator(f"{PLANNER} .widget-readout", has_text="5 kB").wait_for(timeout=30_000)
    page.wait_for_function("([sel, s]) => document.querySelector(sel).src !== s", arg=[CHART, chart0], timeout=30_000)
    page.wait_for_function(SETTLED_JS, arg=[CHART, 1000], polling=100, timeout=30_000)
    text1 = wait_text(page, READOUT, "5 kB")
    assert text1 != text0 and "5 kB" in text1
    assert chart.get_attribute("src") != chart0
    assert page.external_requests == [], page.external_requests
    print(
        f"\n[lesson 10] open {open_s:.1f} s, run all {run_s:.1f} s, "
        f"slider move checked {time.monotonic() - t_run:.1f} s; readout now: {text1.splitlines()[1:3]}"
    )
