"""The monitoring dashboard (lesson 09) in-process: the pure render function and the live widget."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fedlab import data, models, partition, telemetry  # noqa: E402
from fedlab.widgets import dashboard as D  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run():
    d = data.load_digits()
    parts = partition.iid(len(d.y), num_clients=6, rng=0)
    clients = [(2 * d.x[p][:40] - 1, d.y[p][:40]) for p in parts]
    spec = models.logreg(64, 10)
    kw = dict(rounds=4, seed=0, faults={2: telemetry.Boosted(5.0), 4: telemetry.NaNUpdate(start=2)}, dropout_rate=0.2)
    _, tel = telemetry.run_monitored(spec, clients, **kw)
    return spec, clients, kw, tel


def _size(png: bytes) -> tuple[int, int]:
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def test_render_is_a_png_of_the_asked_size_and_deterministic(run):
    *_, tel = run
    a = D.render_dashboard(tel, highlight=2, rounds=10)
    assert a.startswith(PNG) and _size(a) == (D.WIDTH_PX, D.HEIGHT_PX)
    assert a == D.render_dashboard(tel, highlight=2, rounds=10)
    assert a != D.render_dashboard(tel, highlight=3, rounds=10)
    assert a != D.render_dashboard(tel, highlight=None, rounds=10)
    small = D.render_dashboard(tel, width_px=400, height_px=300)
    assert _size(small) == (400, 300)


def test_render_an_empty_run_and_bad_arguments(run):
    *_, tel = run
    assert D.render_dashboard(telemetry.Telemetry(5), rounds=3).startswith(PNG)
    with pytest.raises(ValueError, match="highlight=9"):
        D.render_dashboard(tel, highlight=9)
    with pytest.raises(ValueError, match="must be a fedlab.telemetry.Telemetry"):
        D.render_dashboard({"norm": []})


def test_live_dashboard_shows_progress_and_highlights_with_the_slider(run, monkeypatch):
    spec, clients, kw, tel = run
    seen = []
    real = D.render_dashboard

    def spy(t, **k):
        seen.append(len(t))
        return real(t, **k)

    monkeypatch.setattr(D, "render_dashboard", spy)
    params, got, box = D.live_dashboard(spec, clients, highlight=1, show=False, **kw)
    slider, progress, image, summary = box.children
    assert seen[:5] == [0, 1, 2, 3, 4]  # redrawn after every round, while the run goes on
    assert progress.value == progress.max == 4 and progress.description == "done"
    np.testing.assert_array_equal(got.matrix("norm"), tel.matrix("norm"))
    assert str(image.width) == str(D.WIDTH_PX) and str(image.height) == str(D.HEIGHT_PX)
    assert "fedlab-dashboard" in box._dom_classes and "fedlab-dashboard-picture" in image._dom_classes
    first = image.value
    assert first == real(tel, highlight=1, rounds=4)
    slider.value = 2
    assert image.value != first and image.value == real(tel, highlight=2, rounds=4)
    assert "client 2:" in summary.value and "round 4 of 4" in summary.value
    assert f"{len(tel.nonfinite())} non-finite updates dropped" in summary.value
