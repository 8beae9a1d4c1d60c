"""Lesson 03 in a real browser: run every cell, move the alpha slider with the keyboard, see the picture change.

The notebook is copied into the lab server's folder and run with Run All. The
slider's handle is focused and moved with ArrowRight / ArrowLeft (the slider
must work without a mouse); after each move the image must be redrawn with
exactly the bytes the pure function gives for the new alpha, and going back
must give back the first picture. The page must make no request off the machine.
"""

import base64
import shutil
import time
from pathlib import Path

import pytest

from tests.browser.conftest import open_notebook, run_all

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = Path(__file__).resolve().parents[2] / "solutions" / "03_real_world.ipynb"
EXPLORER = ".fedlab-partition-explorer"
PICTURE = f"{EXPLORER} .fedlab-partition-picture"
SUMMARY = f"{EXPLORER} .fedlab-partition-summary"
READOUT = f"{EXPLORER} .widget-readout"

SETTLED_JS = """([sel, quiet]) => {  // true once the <img> src has not changed for `quiet` ms
  const el = document.querySelector(sel); if (!el) return false;
  const s = el.src, now = performance.now();
  if (window.__lastSrc !== s) { window.__lastSrc = s; window.__since = now; }
  return now - window.__since > quiet; }"""
BLOB_B64_JS = """async sel => { const b = await (await fetch(document.querySelector(sel).src)).arrayBuffer();
  let s = ''; const u = new Uint8Array(b);
  for (let i = 0; i < u.length; i += 0x8000) s += String.fromCharCode(...u.subarray(i, i + 0x8000));
  return btoa(s); }"""


def _expected_png(alpha: float) -> bytes:
    """What the notebook's explorer draws for ``alpha`` (same data, clients and seed as its cell)."""
    import matplotlib

    matplotlib.use("Agg")
    from fedlab import data
    from fedlab.widgets import partition as wp

    train, _ = data.train_test_split(data.load_digits(), test_fraction=0.2, seed=0)
    return wp.dirichlet_picture(train.y, num_clients=20, alpha=alpha, seed=1, num_classes=10)[0]


def _scroll_to_explorer(page, *, timeout_s: float = 60) -> None:
    """JupyterLab renders only the cells near the viewport: scroll down until the explorer is there."""
    page.locator(".jp-NotebookPanel-notebook").first.click(position={"x": 5, "y": 5})  # command mode
    page.keyboard.press("Escape")
    page.keyboard.press("Control+Home")
    t0 = time.monotonic()
    while page.locator(EXPLORER).count() == 0 or not page.locator(EXPLORER).first.is_visible():
        assert time.monotonic() - t0 < timeout_s, "the partition explorer never appeared in the notebook"
        page.locator(".jp-NotebookPanel-notebook").first.hover()
        page.mouse.wheel(0, 600)
        page.wait_for_timeout(150)
    page.locator(EXPLORER).first.scroll_into_view_if_needed()


def _picture(page) -> bytes:
    page.wait_for_function(SETTLED_JS, arg=[PICTURE, 1000], polling=100, timeout=60_000)
    return base64.b64decode(page.evaluate(BLOB_B64_JS, PICTURE))


def _wait_readout(page, text: str) -> None:
    page.wait_for_function("([sel, t]) => document.querySelector(sel).innerText.trim() === t", arg=[READOUT, text],
                           timeout=30_000)


def _move(page, handle, key: str, readout: str) -> None:
    src = page.locator(PICTURE).get_attribute("src")
    handle.press(key)
    _wait_readout(page, readout)
    page.wait_for_function("([sel, s]) => document.querySelector(sel).src !== s", arg=[PICTURE, src],
                           timeout=60_000)


def test_alpha_slider_redraws_with_the_keyboard(lab_server, page):
    t0 = time.monotonic()
    shutil.copy(NOTEBOOK, Path(lab_server["root"]) / NOTEBOOK.name)
    open_notebook(page, lab_server, NOTEBOOK.name)
    t_open = time.monotonic()
    run_all(page, timeout_ms=300_000)
    t_run = time.monotonic()
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']", has_text="Error")
    assert errors.count() == 0, errors.first.inner_text()

    _scroll_to_explorer(page)
    page.locator(PICTURE).wait_for(state="visible", timeout=30_000)
    _wait_readout(page, "1.00")
    first = _picture(page)
    assert first == _expected_png(1.0)

    handle = page.locator(f"{EXPLORER} .noUi-handle").first
    handle.focus()
    _move(page, handle, "ArrowRight", "1.78")  # one step of 0.25 in the exponent: alpha = 10**0.25
    moved = _picture(page)
    assert moved != first and moved == _expected_png(10**0.25)
    assert "alpha = 1.78:" in page.locator(SUMMARY).inner_text()

    _move(page, handle, "ArrowLeft", "1.00")
    assert _picture(page) == first
    assert page.external_requests == [], page.external_requests
    print(f"\n[lesson 03] open {t_open - t0:.1f} s, run all {t_run - t_open:.1f} s, "
          f"two keyboard moves checked {time.monotonic() - t_run:.1f} s")
