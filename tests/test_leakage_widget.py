"""The leakage explorer in-process (no browser): every control refreshes the display, results are
deterministic, and the math modules stay free of widget imports."""

import dataclasses
import io
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fedlab.widgets import leakage
from fedlab.widgets.leakage import Settings


@pytest.fixture(scope="module")
def scene():
    return leakage.LeakageScene(seed=0)


@pytest.fixture
def explorer(scene):
    return leakage.leakage_explorer(scene=scene)


def _psnr_text(explorer):
    m = re.search(r"PSNR (-?[\d.]+|inf) dB", explorer.readout.value)
    assert m, explorer.readout.value
    return float(m.group(1))


def test_initial_view_shows_an_exact_reconstruction(explorer):
    import ipywidgets

    assert isinstance(explorer, ipywidgets.VBox)
    assert explorer.original.width == str(leakage.PANEL_PX) and explorer.original.height == str(leakage.PANEL_PX)
    for img in (explorer.original, explorer.reconstruction):
        assert img.format == "png"
        pic = Image.open(io.BytesIO(img.value))
        assert pic.size == (leakage.PANEL_PX, leakage.PANEL_PX) and pic.mode == "L"
    assert _psnr_text(explorer) > 30
    assert explorer.outcome.labels_correct
    assert "&#10004;" in explorer.readout.value  # the label verdict is a symbol and text, not a colour
    assert list(explorer.controls) == list(leakage.CONTROLS)


# (control, new value, whether the reconstruction image must change; None: either)
MOVES = [
    ("client", 1, True),
    ("sample", 1, True),
    ("noise_multiplier", 0.01, True),
    ("clip_norm", 0.01, False),  # the informed (cosine) attacker ignores the scale: same picture
    ("topk_fraction", 0.1, True),
    ("clients_summed", 3, True),
    ("batch_size", 2, True),
    ("local_steps", 2, False),  # the unrolled attack is exact here as well
    ("model", "relu", True),
    ("attacker", "naive", None),  # the naive attacker also wins against an undefended update
]


@pytest.mark.parametrize("name,value,image_changes", MOVES, ids=[m[0] for m in MOVES])
def test_each_control_refreshes_the_display(explorer, name, value, image_changes):
    before_img, before_text = explorer.reconstruction.value, explorer.readout.value
    before_orig = explorer.original.value
    explorer.controls[name].value = value
    assert getattr(explorer.settings(), name) == value
    assert explorer.readout.value != before_text, f"moving {name} left the readout unchanged"
    if image_changes is not None:
        assert (bytes(explorer.reconstruction.value) != bytes(before_img)) == image_changes
    if name in ("client", "sample", "batch_size"):
        assert bytes(explorer.original.value) != bytes(before_orig)
    assert explorer.outcome.mean_psnr == explorer.scene.compute(explorer.settings()).mean_psnr
    assert explorer.last_update_seconds > 0


def test_defences_lower_the_psnr_shown(explorer):
    clean = _psnr_text(explorer)
    explorer.controls["noise_multiplier"].value = 0.01
    noisy = _psnr_text(explorer)
    explorer.controls["noise_multiplier"].value = 0.0
    explorer.controls["clients_summed"].value = 10
    summed = _psnr_text(explorer)
    assert clean > 30 and noisy < 20 and summed < 20, (clean, noisy, summed)


def test_clipping_alone_only_stops_the_naive_attacker(scene):
    clipped = Settings(clip_norm=0.01)
    assert scene.compute(clipped).clipped
    assert scene.compute(clipped).mean_psnr > 30
    assert scene.compute(dataclasses.replace(clipped, attacker="naive")).mean_psnr < 20
    assert scene.compute(Settings(attacker="naive")).mean_psnr > 30


def test_results_are_deterministic_and_independent_of_history(scene):
    target = Settings(client=2, sample=3, noise_multiplier=0.003, batch_size=2)
    fresh = leakage.LeakageScene(seed=0)
    a = fresh.compute(target)
    for s in [Settings(client=5), Settings(topk_fraction=0.5), Settings(batch_size=4, local_steps=2)]:
        scene.compute(s)
    b = scene.compute(target)
    np.testing.assert_array_equal(a.reconstruction, b.reconstruction)
    np.testing.assert_array_equal(a.recovered_labels, b.recovered_labels)
    assert fresh.is_cached(target)
    assert fresh.compute(target).seconds == 0.0  # from the cache
    other = leakage.LeakageScene(seed=1).compute(target)
    assert not np.array_equal(other.original, a.original)  # another seed splits the digits differently


def test_hidden_controls_keep_their_starting_values(scene):
    start = Settings(noise_multiplier=0.003, clients_summed=3)
    w = leakage.leakage_explorer(scene=scene, settings=start, controls=("noise_multiplier", "clip_norm"))
    assert list(w.controls) == ["noise_multiplier", "clip_norm"]
    assert w.settings() == start
    w.controls["noise_multiplier"].value = 0.0
    assert w.settings() == dataclasses.replace(start, noise_multiplier=0.0)


def test_bad_settings_are_refused_with_the_name(scene):
    with pytest.raises(ValueError, match="client=99"):
        scene.compute(Settings(client=99))
    with pytest.raises(ValueError, match="batch_size=9"):
        scene.compute(Settings(batch_size=9))
    with pytest.raises(ValueError, match="attacker='oracle'"):
        scene.compute(Settings(attacker="oracle"))
    with pytest.raises(ValueError, match="clipping norm C=0.5"):
        leakage.leakage_explorer(scene=scene, settings=Settings(clip_norm=0.5))
    with pytest.raises(ValueError, match="controls entry='volume'"):
        leakage.leakage_explorer(scene=scene, controls=("volume",))


def test_render_panel_layout():
    one = Image.open(io.BytesIO(leakage.render_panel(np.ones((1, 64)))))
    assert np.asarray(one)[96, 96] == 0  # full ink is black
    four = np.asarray(Image.open(io.BytesIO(leakage.render_panel(np.zeros((4, 64))))))
    assert four.shape == (192, 192) and four.max() == 255  # white paper


def test_math_modules_do_not_import_widgets():
    code = (
        "import sys, fedlab.attacks, fedlab.metrics, fedlab.defences; "
        "print(any(m.startswith(('ipywidgets', 'matplotlib', 'IPython')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
