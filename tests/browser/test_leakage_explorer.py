"""Lesson 05 in a real browser: JupyterLab + headless Chromium run the lesson, a keyboard press moves the
leakage explorer's noise slider, and the reconstruction and its PSNR change, with no request leaving 127.0.0.1.

A missing Chromium fails the test (see conftest.py); a failing test leaves a screenshot in test-artifacts/.
"""

import re
import time
from pathlib import Path

import pytest

from tests.browser.conftest import SETTLED_JS, run_lesson, scroll_to, wait_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = Path(__file__).resolve().parents[2] / "solutions" / "05_leakage.ipynb"
EXPLORER = ".fedlab-leakage-explorer"
RECON_IMG = f"{EXPLORER} .fedlab-leakage-reconstruction"
READOUT = f"{EXPLORER} .fedlab-leakage-readout"


def _psnr(page) -> str:
    text = wait_text(page, READOUT, "PSNR ")
    m = re.search(r"PSNR (\S+) dB", text)
    assert m, f"no PSNR in the explorer's readout: {text!r}"
    return m.group(1)


def test_leakage_explorer_answers_a_keyboard_move(lab_server, page):
    open_s, run_s = run_lesson(page, lab_server, NOTEBOOK)
    t_run = time.monotonic()

    scroll_to(page, EXPLORER)
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
        f"\n[lesson 05] open {open_s:.1f} s, run all {run_s:.1f} s, "
        f"slider move checked {time.monotonic() - t_run:.1f} s; PSNR {psnr0} -> {psnr1} dB"
    )
