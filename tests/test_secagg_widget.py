"""The "what the server sees" widget in-process (no browser): every control refreshes the display, recovery
succeeds above the threshold and is refused below it, results are deterministic, and the math stays free of
widget imports."""

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fedlab import secagg
from fedlab.widgets import secagg as WS
from fedlab.widgets.secagg import ViewSettings


@pytest.fixture(scope="module")
def scene():
    return WS.ServerScene(seed=0)


@pytest.fixture
def widget(scene):
    return WS.server_sees(scene=scene)


def _verdict(widget):
    text = widget.status.value
    assert ("&#10004; recovered" in text) != ("&#10008; refused" in text), text
    return "recovered" if "&#10004; recovered" in text else "refused"


def test_initial_view(widget):
    import ipywidgets

    assert isinstance(widget, ipywidgets.VBox)
    for img in (widget.received_image, widget.sum_image, widget.data_image):
        assert img.format == "png" and img.width == str(WS.PANEL_PX) and img.height == str(WS.PANEL_PX)
        pic = Image.open(io.BytesIO(img.value))
        assert pic.size == (WS.PANEL_PX, WS.PANEL_PX) and pic.mode == "RGB"
    assert _verdict(widget) == "recovered"
    v = widget.view
    assert v.included == tuple(range(10)) and v.max_error < 1e-7
    np.testing.assert_allclose(v.total, widget.scene.inputs.sum(axis=0), atol=1e-7)
    assert 0.45 < v.uniformity < 0.55
    # the controls are keyboard-usable widget types that update on release, not on every step
    assert isinstance(widget.controls["dropped"], ipywidgets.IntSlider)
    assert isinstance(widget.controls["threshold"], ipywidgets.IntSlider)
    assert isinstance(widget.controls["when"], ipywidgets.ToggleButtons)
    assert not widget.controls["dropped"].continuous_update


@pytest.mark.parametrize("name,value", [("dropped", 3), ("when", "after"), ("threshold", 10)])
def test_each_control_refreshes_the_display(widget, name, value):
    if name != "dropped":
        widget.controls["dropped"].value = 2  # so that the move changes what the server can compute
    before = (bytes(widget.received_image.value), bytes(widget.sum_image.value), widget.status.value)
    widget.controls[name].value = value
    after = (bytes(widget.received_image.value), bytes(widget.sum_image.value), widget.status.value)
    assert getattr(widget.settings(), name) == value
    assert after[2] != before[2], f"moving {name} left the status unchanged"
    assert after[:2] != before[:2], f"moving {name} left both images unchanged"
    assert widget.view.settings == widget.settings()
    assert widget.last_update_seconds > 0


@pytest.mark.parametrize("when", ["before", "after"])
def test_recovery_above_the_threshold_refusal_below(scene, when):
    t = 6
    for dropped in range(10):
        view = scene.compute(ViewSettings(dropped=dropped, when=when, threshold=t))
        assert view.recovered == (10 - dropped >= t), (dropped, view.message)
        if view.recovered:
            expected = [u for u in range(10) if when == "after" or u not in view.dropped]
            assert view.included == tuple(expected)
            np.testing.assert_allclose(view.total, scene.inputs[expected].sum(axis=0), atol=1e-7)
            assert (len(view.masked) == 10) == (when == "after" or dropped == 0)
        else:
            assert view.total is None and "t = 6" in view.message


def test_refusal_is_shown_as_symbol_word_and_cross(widget):
    widget.controls["dropped"].value = 5
    assert _verdict(widget) == "refused"
    assert "#D55E00" in widget.status.value  # Okabe-Ito vermillion, beside the symbol and the word
    pic = np.asarray(Image.open(io.BytesIO(widget.sum_image.value)))
    assert (np.abs(pic.astype(int) - [0xD5, 0x5E, 0x00]).sum(axis=2) == 0).sum() > 500  # the cross is drawn
    widget.controls["dropped"].value = 4
    assert _verdict(widget) == "recovered"
    pic = np.asarray(Image.open(io.BytesIO(widget.sum_image.value)))
    assert (np.abs(pic.astype(int) - [0x00, 0x9E, 0x73]).sum(axis=2) == 0).sum() > 500  # the green frame


def test_masked_tiles_look_like_noise_and_differ_from_the_data(scene):
    view = scene.compute(ViewSettings())
    for u, y in view.masked.items():
        assert y.dtype == np.uint32 and y.shape == (64,)
        assert np.corrcoef(y.astype(float), scene.inputs[u])[0, 1] ** 2 < 0.3


def test_deterministic_and_cached(scene):
    s = ViewSettings(dropped=3, when="after", threshold=5)
    fresh = WS.ServerScene(seed=0)
    a, b = fresh.compute(s), scene.compute(s)
    for u in a.masked:
        np.testing.assert_array_equal(a.masked[u], b.masked[u])
    assert WS.render_received(a, num_clients=10) == WS.render_received(b, num_clients=10)
    assert fresh.compute(s).seconds == 0.0
    other = WS.ServerScene(seed=1).compute(s)
    assert not np.array_equal(other.masked[0], a.masked[0])


def test_bad_settings_are_refused_with_the_name(scene):
    with pytest.raises(ValueError, match="dropped=10"):
        scene.compute(ViewSettings(dropped=10))
    with pytest.raises(ValueError, match="threshold=1"):
        scene.compute(ViewSettings(threshold=1))
    with pytest.raises(ValueError, match="when='never'"):
        scene.compute(ViewSettings(when="never"))
    with pytest.raises(ValueError, match="num_clients=20"):
        WS.ServerScene(num_clients=20)


def test_compute_is_the_library_round(scene):
    s = ViewSettings(dropped=2, when="before", threshold=4)
    view = WS.compute(s, scene=scene)
    config = scene.config(4)
    assert view.included == tuple(u for u in range(10) if u not in scene.drop_order[:2])
    want = secagg.fixed_point_decode(secagg.plain_sum(scene.inputs, config=config, clients=view.included),
                                     frac_bits=config.frac_bits)  # fmt: skip
    np.testing.assert_array_equal(view.total, want)


def test_secagg_math_imports_no_widgets():
    code = "import sys, fedlab.secagg; print(any(m.startswith(('ipywidgets', 'IPython')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
