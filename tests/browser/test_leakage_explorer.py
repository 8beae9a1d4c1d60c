"""Lesson 05 in a real browser: JupyterLab + headless Chromium run the lesson, a keyboard press moves the
leakage explorer's noise slider, and the reconstruction and its PSNR change, with no request leaving 127.0.0.1.

A missing Chromium fails the test (see conftest.py); a failing test leaves a screenshot in test-artifacts/.
"""

import re
import shutil
import time
from pathlib import Path

import pytest

from tests.browser.conftest import open_notebook, run_all

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = Path(__file__).resolve().parents[2] / "solutions" / "05_leakage.ipynb"
EXPLORER = ".fedlab-leakage-explorer"
RECON_IMG = f"{EXPLORER} .fedlab-leakage-reconstruction"
READOUT = f"{EXPLORER} .fedlab-leakage-readout"

SETTLED_JS = """([sel, quiet]) => {  // true once the <img> src has not changed for `quiet` ms
  const el = document.querySelector(sel); if (!el) return false;
  const s = el.src, now = performance.now();
  if (window.__lastSrc !== s) { window.__lastSrc = s; window.__since = now; }
  return now - window.__since > quiet; }"""


def _psnr(page) -> str:
    text = page.locator(READOUT).inner_text()
    m = re.search(r"PSNR (\S+) dB", text)
    assert m, f"no PSNR in the explorer's readout: {text!r}"
    return m.group(1)


def _scroll_to_explorer(page, *, timeout_s: float = 60) -> None:
    """JupyterLab renders only the cells near the viewport: scroll the notebook until the explorer is there."""
    page.locator(".jp-NotebookPanel-notebook").first.click(position={"x": 5, "y": 5})  # command mode
    page.keyboard.press("Escape")
    page.keyboard.press("Control+Home")
    t0 = time.monotonic()
    while page.locator(EXPLORER).count() == 0 or not page.locator(EXPLORER).first.is_visible():
        assert time.monotonic() - t0 < timeout_s, "the leakage explorer never appeared in the notebook"
        page.locator(".jp-NotebookPanel-notebook").first.hover()
        page.mouse.wheel(0, 600)
        page.wait_for_timeout(150)
    page.locator(EXPLORER).first.scroll_into_view_if_needed()


def test_leakage_explorer_answers_a_keyboard_move(lab_server, page):
    t0 = time.monotonic()
    shutil.copy(NOTEBOOK, lab_server["root"] / NOTEBOOK.name)
    open_notebook(page, lab_server, NOTEBOOK.name)
    t_open = time.monotonic()
    run_all(page, timeout_ms=300_000)
    t_run = time.monotonic()
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']", has_text="Error")
    assert errors.count() == 0, errors.first.inner_text()

    _scroll_to_explorer(page)
    img = page.locator(RECON_IMG)
    img.wait_for(state="visible", timeout=30_000)
    page.wait_for_function(SETTLED_JS, arg=[RECON_IMG, 500], polling=100, timeout=30_000)
    src0, psnr0 = img.get_attribute("src"), _psnr(page)
    assert src0 and float(psnr0) > 30, (src0, psnr0)  # the undefended update gives the digit away

    slider = page.locator(f"{EXPLORER} .widget-slider", has_text="noise multiplier z")
    handle = slider.locator(".noUi-handle")
    handle.focus()
    handle.press("ArrowRight")  # noUiSlider is keyboard-accessible: z from 0 to 0.001
    page.locator(f"{EXPLORER} .widget-readout", has_text="0.001").wait_for(timeout=30_000)
    page.wait_for_function("([sel, s]) => document.querySelector(sel).src !== s", arg=[RECON_IMG, src0], timeout=30_000)
    page.wait_for_function(SETTLED_JS, arg=[RECON_IMG, 1000], polling=100, timeout=30_000)
    page.wait_for_function(
        "([sel, p]) => !document.querySelector(sel).innerText.includes('PSNR ' + p + ' dB')",
        arg=[READOUT, psnr0],
        timeout=30_000,
    )
    src1, psnr1 = img.get_attribute("src"), _psnr(page)
    assert src1 != src0
    assert psnr1 != psnr0 and float(psnr1) < float(psnr0), (psnr0, psnr1)
    assert page.external_requests == [], page.external_requests
    print(
        f"\n[lesson 05] open {t_open - t0:.1f} s, run all {t_run - t_open:.1f} s, "
        f"slider move checked {time.monotonic() - t_run:.1f} s; PSNR {psnr0} -> {psnr1} dB"
    )
