"""Lesson 08 in a real browser: JupyterLab + headless Chromium run the lesson, a keyboard press moves the
frontier widget's noise slider, and epsilon, the labels and the chart change, with no request leaving 127.0.0.1.

A missing Chromium fails the test (see conftest.py); a failing test leaves a screenshot in test-artifacts/.
"""

import re
import time
from pathlib import Path

import pytest

from tests.browser.conftest import SETTLED_JS, run_lesson, scroll_to, wait_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = Path(__file__).resolve().parents[2] / "solutions" / "08_differential_privacy.ipynb"
FRONTIER = ".fedlab-dp-frontier"
CHART = f"{FRONTIER} .fedlab-dp-chart"
RECON = f"{FRONTIER} .fedlab-dp-reconstruction"
READOUT = f"{FRONTIER} .fedlab-dp-readout"


def _readout(page) -> tuple[str, str]:
    text = wait_text(page, READOUT, "ε = ", "accuracy ")
    eps = re.search(r"ε = (\S+)", text)
    acc = re.search(r"accuracy (\S+)", text)
    assert eps and acc, f"no epsilon or accuracy in the frontier's readout: {text!r}"
    return eps.group(1), acc.group(1)


def test_frontier_answers_a_keyboard_move(lab_server, page):
    open_s, run_s = run_lesson(page, lab_server, NOTEBOOK)
    t_run = time.monotonic()

    scroll_to(page, FRONTIER)
    chart = page.locator(CHART)
    chart.wait_for(state="visible", timeout=30_000)
    page.wait_for_function(SETTLED_JS, arg=[CHART, 500], polling=100, timeout=30_000)
    chart0, recon0 = chart.get_attribute("src"), page.locator(RECON).get_attribute("src")
    eps0, acc0 = _readout(page)

    slider = page.locator(f"{FRONTIER} .widget-slider", has_text="noise multiplier z")
    handle = slider.locator(".noUi-handle")
    handle.focus()
    handle.press("ArrowLeft")  # noUiSlider takes the keyboard: z from 1 down to 0.7
    page.locator(f"{FRONTIER} .widget-readout", has_text="0.7").wait_for(timeout=30_000)
    page.wait_for_function("([sel, s]) => document.querySelector(sel).src !== s", arg=[CHART, chart0], timeout=30_000)
    page.wait_for_function(SETTLED_JS, arg=[CHART, 1000], polling=100, timeout=30_000)
    page.wait_for_function(
        "([sel, e]) => !document.querySelector(sel).innerText.includes('ε = ' + e + ' ')",
        arg=[READOUT, eps0],
        timeout=30_000,
    )
    eps1, acc1 = _readout(page)
    assert float(eps1) > float(eps0), (eps0, eps1)  # less noise, more privacy spent
    assert acc1 != acc0
    assert chart.get_attribute("src") != chart0
    assert page.locator(RECON).get_attribute("src") != recon0
    assert page.external_requests == [], page.external_requests
    print(
        f"\n[lesson 08] open {open_s:.1f} s, run all {run_s:.1f} s, "
        f"slider move checked {time.monotonic() - t_run:.1f} s; epsilon {eps0} -> {eps1}, accuracy {acc0} -> {acc1}"
    )
