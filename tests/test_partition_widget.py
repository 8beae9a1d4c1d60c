"""The label-mix picture and its alpha slider, in-process (no browser): pure parts, determinism, redraws."""

import os
import struct
import subprocess
import sys

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fedlab import partition  # noqa: E402
from fedlab.widgets import partition as wp  # noqa: E402

LABELS = np.repeat(np.arange(10), 40)


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", png[16:24])


def test_label_shares_rows():
    parts = [np.array([0, 1, 40]), np.array([], dtype=np.int64), np.arange(80, 400)]
    s = wp.label_shares(LABELS, parts, num_classes=10)
    assert s.shape == (3, 10)
    np.testing.assert_allclose(s.sum(axis=1), [1.0, 0.0, 1.0])
    np.testing.assert_allclose(s[0, :2], [2 / 3, 1 / 3])


def test_render_is_deterministic_and_sized():
    parts = partition.dirichlet(LABELS, num_clients=12, alpha=0.3, rng=0)
    shares = wp.label_shares(LABELS, parts, num_classes=10)
    a = wp.render_label_shares(shares, title="t")
    assert a == wp.render_label_shares(shares, title="t")
    assert _png_size(a) == (wp.WIDTH_PX, wp.HEIGHT_PX)
    assert _png_size(wp.render_label_shares(shares, width_px=400, height_px=200)) == (400, 200)


def test_picture_depends_on_alpha_and_seed_only():
    a, stats_a = wp.dirichlet_picture(LABELS, num_clients=10, alpha=0.1, seed=0, num_classes=10)
    b, _ = wp.dirichlet_picture(LABELS, num_clients=10, alpha=0.1, seed=0, num_classes=10)
    c, stats_c = wp.dirichlet_picture(LABELS, num_clients=10, alpha=100.0, seed=0, num_classes=10)
    assert a == b and a != c
    assert stats_a["mean_tv_distance"] > stats_c["mean_tv_distance"]


def test_slider_redraws_the_image_deterministically():
    box = wp.partition_explorer(LABELS, num_clients=10, num_classes=10, seed=2, alpha=1.0)
    slider, image, summary = box.children
    assert (str(image.width), str(image.height)) == (str(wp.WIDTH_PX), str(wp.HEIGHT_PX))
    assert image.format == "png" and slider.description == "alpha"
    first, text = image.value, summary.value
    assert first == wp.dirichlet_picture(LABELS, num_clients=10, alpha=1.0, seed=2, num_classes=10)[0]
    slider.value = 0.01
    assert image.value != first and summary.value != text and "alpha = 0.01" in summary.value
    low = image.value
    slider.value = 1000.0
    assert image.value not in (first, low)
    slider.value = 1.0
    assert image.value == first and summary.value == text


def test_bad_inputs():
    with pytest.raises(ValueError, match="shares has shape"):
        wp.render_label_shares(np.ones(3))
    with pytest.raises(ValueError, match="class_names has 2 names"):
        wp.render_label_shares(np.ones((2, 3)) / 3, class_names=["a", "b"])
    with pytest.raises(ValueError, match="alpha=0"):
        wp.partition_explorer(LABELS, num_classes=10, alpha=0)


def test_math_modules_import_no_plotting_or_widgets():
    code = ("import sys, fedlab.compress, fedlab.server_opt, fedlab.fairness, fedlab.exercises.bandwidth, "
            "fedlab.exercises.heterogeneity; "
            "bad = [m for m in ('matplotlib', 'ipywidgets', 'IPython') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
