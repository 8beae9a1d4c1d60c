"""Lesson 12 in a real browser: JupyterLab + headless Chromium run the lesson, a keyboard press moves the
explorer's k slider and typing a user id picks a user; the readout, the dots and the user's days change, with
no request leaving 127.0.0.1.

A missing Chromium fails the test (see conftest.py); a failing test leaves a screenshot in test-artifacts/.
"""

import time
from pathlib import Path

import pytest

from tests.browser.conftest import SETTLED_JS, run_lesson, scroll_to, wait_image_changed, wait_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = Path(__file__).resolve().parents[2] / "solutions" / "12_personal.ipynb"
EXPLORER = ".fedlab-personal"
SCATTER = f"{EXPLORER} .fedlab-personal-scatter"
DAYS = f"{EXPLORER} .fedlab-personal-days"
READOUT = f"{EXPLORER} .fedlab-personal-readout"


def test_explorer_answers_the_slider_and_a_picked_user(lab_server, page):
    open_s, run_s = run_lesson(page, lab_server, NOTEBOOK)
    t_run = time.monotonic()

    scroll_to(page, EXPLORER)
    page.locator(SCATTER).wait_for(state="visible", timeout=30_000)
    page.wait_for_function(SETTLED_JS, arg=[SCATTER, 500], polling=100, timeout=30_000)
    text0 = wait_text(page, READOUT, "k = 30", "mean user", "training days")
    scatter0, days0 = page.locator(SCATTER).get_attribute("src"), page.locator(DAYS).get_attribute("src")

    slider = page.locator(f"{EXPLORER} .widget-slider", has_text="k (steps on the phone)")
    handle = slider.locator(".noUi-handle")
    handle.focus()
    handle.press("ArrowRight")  # noUiSlider takes the keyboard: k from 30 up to 60
    page.locator(f"{EXPLORER} .widget-readout", has_text="60").wait_for(timeout=30_000)
    text1 = wait_text(page, READOUT, "k = 60", timeout_ms=60_000)
    wait_image_changed(page, SCATTER, scatter0)
    assert text1 != text0

    scatter1, days1 = page.locator(SCATTER).get_attribute("src"), page.locator(DAYS).get_attribute("src")
    box = page.locator(f"{EXPLORER} .widget-inline-hbox", has_text="user id").locator("input")
    box.fill("42")
    box.press("Enter")
    text2 = wait_text(page, READOUT, "user 42", "k = 60", timeout_ms=60_000)
    wait_image_changed(page, DAYS, days1)
    assert page.locator(DAYS).get_attribute("src") not in (days0, days1)
    assert page.locator(SCATTER).get_attribute("src") != scatter1  # the picked user's dot is ringed
    assert page.external_requests == [], page.external_requests
    print(
        f"\n[lesson 12] open {open_s:.1f} s, run all {run_s:.1f} s, slider move and user pick checked "
        f"{time.monotonic() - t_run:.1f} s; readout now: {text2.splitlines()[-1][:120]}"
    )
