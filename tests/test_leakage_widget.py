"""The leakage explorer in-process (no browser): every control refreshes the display, results are
deterministic, the fast numpy attack is the library's attack, and the math modules stay free of widget
imports."""

import dataclasses
import io
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fedlab import attacks, defences, engine, models
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


# -- the numpy backend is fedlab.attacks' attack, only faster ---------------------------------------


def _autograd_loss(spec, params, labels, target, *, kind, steps, lr, mask):
    """The attack's loss as fedlab.attacks builds it (torch autograd): the reference for _MLPMatch."""
    tg = [torch.tensor(t, dtype=torch.float64) for t in target]
    mk = None if mask is None else [torch.as_tensor(m) for m in mask]
    yt = torch.as_tensor(labels)

    def loss(x):
        w0 = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in params]
        if steps == 0:
            pred = torch.autograd.grad(F.cross_entropy(models.forward(spec, w0, x), yt), w0, create_graph=True)
        else:
            w = w0
            for _ in range(steps):
                g = torch.autograd.grad(F.cross_entropy(models.forward(spec, w, x), yt), w, create_graph=True)
                w = [p - lr * q for p, q in zip(w, g)]
            pred = [a - b for a, b in zip(w, w0)]
        return attacks._match_loss(list(pred), tg, mk, kind)

    return loss


@pytest.mark.parametrize("model", ["sigmoid", "relu"])
@pytest.mark.parametrize("steps,kind,masked", [(0, "cosine", False), (0, "l2", False), (0, "cosine", True),
                                               (3, "cosine", False), (3, "cosine", True)])  # fmt: skip
def test_numpy_loss_and_gradient_match_autograd(scene, model, steps, kind, masked):
    spec, params = leakage.MODELS[model], scene.params[model]
    x, y = scene.batch(4, 2, 3)
    update = [u.astype(np.float64) for u in scene.client_update(model, 4, 2, 3, max(steps, 1))]
    if masked:
        update = [u.astype(np.float64) for u in defences.topk_mask(update, fraction=0.2)]
    mask = [u != 0 for u in update] if masked else None
    target = update if steps else attacks.pseudo_gradient(update, lr=scene.lr, steps=1)
    fast = leakage._MLPMatch(spec, params, y, target, kind=kind, steps=steps, lr=scene.lr, mask=mask)
    slow = _autograd_loss(spec, params, y, target, kind=kind, steps=steps, lr=scene.lr, mask=mask)
    for trial in range(3):
        x0 = np.random.default_rng(trial).random(x.shape) * (1 + trial)  # also far from the pixel range
        xt = torch.tensor(x0, requires_grad=True)
        with engine.torch_threads(1):
            ref = slow(xt)
            (ref_grad,) = torch.autograd.grad(ref, [xt])
        loss, grad = fast(x0)
        assert loss == pytest.approx(ref.item(), rel=1e-9, abs=1e-15)
        np.testing.assert_allclose(grad, ref_grad.numpy(), rtol=1e-8, atol=1e-12 * np.abs(ref_grad.numpy()).max())


class _Objective(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, fn):
        loss, grad = fn(x.detach().numpy())
        ctx.save_for_backward(torch.from_numpy(grad))
        return torch.tensor(loss, dtype=x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output * ctx.saved_tensors[0], None


@pytest.mark.parametrize("model,batch,steps", [("sigmoid", 1, 0), ("sigmoid", 8, 0), ("relu", 2, 3)])
def test_numpy_lbfgs_takes_the_steps_of_torch_lbfgs(scene, model, batch, steps):
    spec, params = leakage.MODELS[model], scene.params[model]
    x, y = scene.batch(0, 0, batch)
    update = scene.client_update(model, 0, 0, batch, max(steps, 1))
    target = update if steps else attacks.pseudo_gradient(update, lr=scene.lr, steps=1)
    fn = leakage._MLPMatch(spec, params, y, target, kind="cosine", steps=steps, lr=scene.lr, mask=None)
    x0 = np.random.default_rng(7).random(x.shape)
    with torch.no_grad(), engine.torch_threads(1):
        xt, loss_t, evals_t = attacks._lbfgs(lambda z: _Objective.apply(z, fn), torch.tensor(x0), max_evals=60)
    xn, loss_n, evals_n = leakage._lbfgs(fn, x0, max_evals=60)
    assert evals_n == evals_t
    np.testing.assert_allclose(xn, xt.numpy(), atol=1e-6)
    assert loss_n == pytest.approx(loss_t, rel=1e-6, abs=1e-12)


AGREE = [
    Settings(),
    Settings(batch_size=8, local_steps=5),  # the slowest corner: unrolled attack on a batch of 8
    Settings(batch_size=4, topk_fraction=0.5),  # mask-aware
    Settings(attacker="naive", batch_size=3, local_steps=2),
    Settings(model="relu", batch_size=2, noise_multiplier=0.003, clients_summed=2),
]


@pytest.mark.parametrize("settings", AGREE, ids=[str(i) for i in range(len(AGREE))])
def test_numpy_backend_agrees_with_fedlab_attacks(scene, settings):
    ref = leakage.LeakageScene(seed=0, backend="torch").compute(settings)
    out = scene.compute(settings)
    np.testing.assert_array_equal(out.recovered_labels, ref.recovered_labels)
    np.testing.assert_array_equal(out.original, ref.original)
    assert out.evaluations == ref.evaluations and out.budget == ref.budget
    assert out.mean_psnr == pytest.approx(ref.mean_psnr, abs=0.5) or min(out.mean_psnr, ref.mean_psnr) > 100
    np.testing.assert_allclose(out.reconstruction, ref.reconstruction, atol=1e-3)


def test_warm_up_runs_once_per_scene(scene):
    w = leakage.leakage_explorer(scene=scene)
    first = scene.warm_up_seconds
    assert first is not None and first >= 0
    leakage.leakage_explorer(scene=scene, settings=Settings(batch_size=8))
    assert scene.warm_up() == first == scene.warm_up_seconds
    assert w.last_update_seconds > 0


def test_bad_backend_is_refused():
    with pytest.raises(ValueError, match="backend='jax'"):
        leakage.LeakageScene(backend="jax")


def test_models_the_numpy_backend_does_not_handle_use_fedlab_attacks(monkeypatch):
    tanh = models.mlp(64, (16,), 10, activation="tanh")
    monkeypatch.setitem(leakage.MODELS, "tanh", tanh)
    fast, ref = leakage.LeakageScene(seed=0), leakage.LeakageScene(seed=0, backend="torch")
    s = Settings(model="tanh", batch_size=2)
    np.testing.assert_array_equal(fast.compute(s).reconstruction, ref.compute(s).reconstruction)
    with pytest.raises(ValueError, match="sigmoid and ReLU MLPs only"):
        leakage._MLPMatch(tanh, fast.params["tanh"], [0], [np.zeros(1)], kind="l2", steps=0, lr=0.1, mask=None)
