"""Lesson 08 in a real browser: JupyterLab + headless Chromium run the lesson, a keyboard press moves the
frontier widget's noise slider, and epsilon, the labels and the chart change, with no request leaving 127.0.0.1.

A missing Chromium fails the test (see conftest.py); a failing test leaves a screenshot in test-artifacts/.
"""

import re
import shutil
import time
from pathlib import Path

import pytest

from tests.browser.conftest import open_notebook, run_all

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = Path(__file__).resolve().parents[2] / "solutions" / "08_differential_privacy.ipynb"
FRONTIER = ".fedlab-dp-frontier"
CHART = f"{FRONTIER} .fedlab-dp-chart"
RECON = f"{FRONTIER} .fedlab-dp-reconstruction"
READOUT = f"{FRONTIER} .fedlab-dp-readout"

SETTLED_JS = """([sel, quiet]) => {  // true once the <img> src has not changed for `quiet` ms
  const el = document.querySelector(sel); if (!el) return false;
  const s = el.src, now = performance.now();
  if (window.__lastSrc !== s) { window.__lastSrc = s; window.__since = now; }
  return now - window.__since > quiet; }"""


def _readout(page) -> tuple[str, str]:
    text = page.locator(READOUT).inner_text()
    eps = re.search(r"ε = (\S+)", text)
    acc = re.search(r"accuracy (\S+)", text)
    assert eps and acc, f"no epsilon or accuracy in the frontier's readout: {text!r}"
    return eps.group(1), acc.group(1)


def _scroll_to(page, selector: str, *, timeout_s: float = 60) -> None:
    """JupyterLab renders only the cells near the viewport: scroll the notebook until the widget is there."""
    page.locator(".jp-NotebookPanel-notebook").first.click(position={"x": 5, "y": 5})  # command mode
    page.keyboard.press("Escape")
    page.keyboard.press("Control+Home")
    t0 = time.monotonic()
    while page.locator(selector).count() == 0 or not page.locator(selector).first.is_visible():
        assert time.monotonic() - t0 < timeout_s, f"{selector} never appeared in the notebook"
        page.locator(".jp-NotebookPanel-notebook").first.hover()
        page.mouse.wheel(0, 600)
        page.wait_for_timeout(150)
    page.locator(selector).first.scroll_into_view_if_needed()


def test_frontier_answers_a_keyboard_move(lab_server, page):
    t0 = time.monotonic()
    shutil.copy(NOTEBOOK, lab_server["root"] / NOTEBOOK.name)
    open_notebook(page, lab_server, NOTEBOOK.name)
    t_open = time.monotonic()
    run_all(page, timeout_ms=300_000)
    t_run = time.monotonic()
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']", has_text="Error")
    assert errors.count() == 0, errors.first.inner_text()

    _scroll_to(page, FRONTIER)
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
        f"\n[lesson 08] open {t_open - t0:.1f} s, run all {t_run - t_open:.1f} s, "
        f"slider move checked {time.monotonic() - t_run:.1f} s; epsilon {eps0} -> {eps1}, accuracy {acc0} -> {acc1}"
    )
