"""Lesson 03 in a real browser: run every cell, move the alpha slider with the keyboard, see the picture change.

The notebook is copied into the lab server's folder and run with Run All. The
slider's handle is focused and moved with ArrowRight / ArrowLeft (the slider
must work without a mouse); after each move the image must be redrawn with
exactly the bytes the pure function gives for the new alpha, and going back
must give back the first picture. The page must make no request off the machine.
"""

import base64
import time
from pathlib import Path

import pytest

from tests.browser.conftest import BLOB_B64_JS, SETTLED_JS, run_lesson, scroll_to, wait_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = Path(__file__).resolve().parents[2] / "solutions" / "03_real_world.ipynb"
EXPLORER = ".fedlab-partition-explorer"
PICTURE = f"{EXPLORER} .fedlab-partition-picture"
SUMMARY = f"{EXPLORER} .fedlab-partition-summary"
READOUT = f"{EXPLORER} .widget-readout"


def _expected_png(alpha: float) -> bytes:
    """What the notebook's explorer draws for ``alpha`` (same data, clients and seed as its cell)."""
    import matplotlib

    matplotlib.use("Agg")
    from fedlab import data
    from fedlab.widgets import partition as wp

    train, _ = data.train_test_split(data.load_digits(), test_fraction=0.2, seed=0)
    return wp.dirichlet_picture(train.y, num_clients=20, alpha=alpha, seed=1, num_classes=10)[0]


def _picture(page) -> bytes:
    page.wait_for_function(SETTLED_JS, arg=[PICTURE, 1000], polling=100, timeout=60_000)
    return base64.b64decode(page.evaluate(BLOB_B64_JS, PICTURE))


def _wait_readout(page, text: str) -> None:
    page.wait_for_function(
        "([sel, t]) => document.querySelector(sel).innerText.trim() === t", arg=[READOUT, text], timeout=30_000
    )


def _move(page, handle, key: str, readout: str) -> None:
    src = page.locator(PICTURE).get_attribute("src")
    handle.press(key)
    _wait_readout(page, readout)
    page.wait_for_function("([sel, s]) => document.querySelector(sel).src !== s", arg=[PICTURE, src], timeout=60_000)


def test_alpha_slider_redraws_with_the_keyboard(lab_server, page):
    open_s, run_s = run_lesson(page, lab_server, NOTEBOOK)
    t_run = time.monotonic()

    scroll_to(page, EXPLORER)
    page.locator(PICTURE).wait_for(state="visible", timeout=30_000)
    _wait_readout(page, "1.00")
    first = _picture(page)
    assert first == _expected_png(1.0)

    handle = page.locator(f"{EXPLORER} .noUi-handle").first
    handle.focus()
    _move(page, handle, "ArrowRight", "1.78")  # one step of 0.25 in the exponent: alpha = 10**0.25
    moved = _picture(page)
    assert moved != first and moved == _expected_png(10**0.25)
    wait_text(page, SUMMARY, "alpha = 1.78:")

    _move(page, handle, "ArrowLeft", "1.00")
    assert _picture(page) == first
    assert page.external_requests == [], page.external_requests
    print(
        f"\n[lesson 03] open {open_s:.1f} s, run all {run_s:.1f} s, "
        f"two keyboard moves checked {time.monotonic() - t_run:.1f} s"
    )
