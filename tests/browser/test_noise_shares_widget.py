"""Lesson 13 in a real browser: JupyterLab + headless Chromium run the lesson; keyboard presses move the noise-share
widget's "phones that drop" slider past the plan (the readout says the sum is refused, both charts change) and the
plan's minimum down (released again), with no request leaving 127.0.0.1.

A missing Chromium fails the test (see conftest.py); a failing test leaves a screenshot in test-artifacts/.
"""

import time
from pathlib import Path

import pytest

from tests.browser.conftest import SETTLED_JS, run_lesson, scroll_to, wait_image_changed, wait_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = Path(__file__).resolve().parents[2] / "solutions" / "13_distributed_dp.ipynb"
WIDGET = ".fedlab-noise"
BARS = f"{WIDGET} .fedlab-noise-bars"
EPS = f"{WIDGET} .fedlab-noise-eps"
READOUT = f"{WIDGET} .fedlab-noise-readout"


def _press(page, label, key, times):
    handle = page.locator(f"{WIDGET} .widget-slider", has_text=label).locator(".noUi-handle")
    handle.focus()
    for _ in range(times):
        handle.press(key)


def test_dropping_past_the_plan_is_refused_and_a_lower_plan_releases(lab_server, page):
    open_s, run_s = run_lesson(page, lab_server, NOTEBOOK)
    t_run = time.monotonic()

    scroll_to(page, WIDGET)
    page.locator(BARS).wait_for(state="visible", timeout=30_000)
    page.wait_for_function(SETTLED_JS, arg=[BARS, 500], polling=100, timeout=30_000)
    text0 = wait_text(page, READOUT, "released", "sum of 18", "epsilon with 18 survivors")
    bars0, eps0 = page.locator(BARS).get_attribute("src"), page.locator(EPS).get_attribute("src")

    _press(page, "phones that drop", "ArrowRight", 4)  # 2 -> 6 dropped: 14 < 15 survivors
    text1 = wait_text(page, READOUT, "refused", "sum of 14", timeout_ms=60_000)
    wait_image_changed(page, BARS, bars0)
    wait_image_changed(page, EPS, eps0)
    assert text1 != text0

    bars1 = page.locator(BARS).get_attribute("src")
    _press(page, "plan: min. survivors", "ArrowLeft", 5)  # the plan: 15 -> 10, each phone adds more noise
    text2 = wait_text(page, READOUT, "released", "sum of 14", timeout_ms=60_000)
    wait_image_changed(page, BARS, bars1)
    assert page.external_requests == [], page.external_requests
    print(
        f"\n[lesson 13] open {open_s:.1f} s, run all {run_s:.1f} s, two slider moves checked "
        f"{time.monotonic() - t_run:.1f} s; readout now: {text2.splitlines()[-1][:120]}"
    )
