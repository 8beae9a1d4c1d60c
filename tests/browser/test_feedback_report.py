"""A learner's feedback report in a real browser: headless Chromium opens the HTML the grader wrote.

The room of the demo lesson is graded for real (tests/graded_room.py), turned
into the schema with hidden tests, and written with ``fedlab.feedback.write_reports``;
a plain HTTP server on 127.0.0.1 serves the folder. Each report must render
(heading, total, the test table styled by its inline CSS), name the learner's
file, run no script (a submission named ``<script>alert('x')<.ipynb`` opens no
dialog and adds no element), load nothing, and show no instructor-only text.

A missing Chromium fails the test (see conftest.py); a failing test leaves a screenshot in test-artifacts/.
"""

import functools
import http.server
import threading

import pytest

from fedlab import feedback
from tests.graded_room import HIDDEN_MESSAGE, HIDDEN_NAME, SCRIPT_NAME, grade_room, with_hidden

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``(base_url, {submission: html file name})`` of the room's reports, served on 127.0.0.1."""
    tmp = tmp_path_factory.mktemp("feedback")
    rows = with_hidden(grade_room(tmp / "room"))
    written = feedback.write_reports(rows, tmp / "reports")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp / "reports"))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", {s: h.name for s, (h, _) in written.items()}
    server.shutdown()
    server.server_close()


def _open(page, url) -> list:
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    resp = page.goto(url)
    assert resp is not None and resp.ok, url
    page.locator("h1").wait_for(state="visible", timeout=30_000)
    return dialogs


def test_partial_report_renders_names_the_file_and_hides_instructor_text(served, page):
    base, files = served
    dialogs = _open(page, f"{base}/{files['partial.ipynb']}")
    assert page.title() == "Feedback: partial.ipynb"
    assert page.locator("h1").inner_text() == "Feedback: partial.ipynb"
    assert page.locator(".total").inner_text() == "6 of 11 points"
    body = page.locator("body").inner_text()
    for text in (HIDDEN_NAME, HIDDEN_MESSAGE, "INSTRUCTOR-ONLY", "numpy_inputs", "correct.ipynb", "blank.ipynb"):
        assert text not in body, text
    assert "Hidden tests: 0 of 1 hidden test passed (0 of 1 points)." in body
    assert "expected 2.5, got 2.0" in body and feedback.SANDBOX_TEXT["bwrap"] in body
    assert page.locator("section.exercise").count() == 3
    rows = page.locator("section#ex-99\\.1 tbody tr")
    assert rows.count() == 3  # the visible tests only
    failed = page.locator("section#ex-99\\.1 td.failed").first
    assert failed.is_visible()
    assert failed.evaluate("e => getComputedStyle(e).color") == "rgb(180, 35, 24)"  # inline CSS applies
    box = page.locator("table").first.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 40
    assert dialogs == [] and page.external_requests == [] and page.console_errors == []


def test_report_of_a_file_named_like_html_shows_the_name_and_runs_nothing(served, page):
    base, files = served
    dialogs = _open(page, f"{base}/{files[SCRIPT_NAME]}")
    assert page.locator("h1 .submission").inner_text() == SCRIPT_NAME
    assert page.title() == f"Feedback: {SCRIPT_NAME}"
    assert page.locator("script").count() == 0 and page.locator("body *").evaluate_all(
        "els => els.every(e => [...e.attributes].every(a => !a.name.startsWith('on')))"
    )
    page.wait_for_timeout(300)
    assert dialogs == [] and page.external_requests == [] and page.console_errors == []


def test_unreadable_submission_report_explains_the_problem(served, page):
    base, files = served
    _open(page, f"{base}/{files['empty.ipynb']}")
    problem = page.locator(".problem").inner_text()
    assert "could not be graded: unreadable" in problem and "the file is empty" in problem
    assert page.locator(".total").inner_text() == "0 of 11 points"
