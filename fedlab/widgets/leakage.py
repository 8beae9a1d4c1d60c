"""The leakage explorer: one client's update, a few defences, and what an attacker rebuilds from it.

Pick a client and a sample; the client computes its FedAvg update on a batch of
``batch_size`` digits with ``local_steps`` gradient steps (learning rate
:attr:`LeakageScene.lr`). Before the server sees it, each update passes through
the defences the controls switch on, in the order a deployment would apply
them:

1. top-k sparsification (keep the ``topk_fraction`` largest entries),
2. clipping to L2 norm ``clip_norm`` (per client),
3. summing with the updates of ``clients_summed - 1`` other clients (what
   secure aggregation leaves the server: only the sum),
4. Gaussian noise of standard deviation ``noise_multiplier * clip_norm`` on
   the sum (the Gaussian mechanism of DP-FedAvg).

The attacker then rebuilds ``batch_size`` images from what it observed, with
:mod:`fedlab.attacks`:

- ``"informed"``: cosine loss (immune to rescaling by clipping), compares only
  the entries that survived top-k (mask-aware), and replays the client's
  ``local_steps`` steps (the unrolled FedAvg attack);
- ``"naive"``: the original DLG, the squared distance to the whole update read
  as one gradient.

The explorer shows the originals beside the reconstructions with PSNR, SSIM and
the recovered labels. Everything is deterministic given ``seed``: the same
settings always give the same picture, whatever was shown before.

Split in two so that tests and the benchmark need no browser:

- :class:`LeakageScene` and :meth:`LeakageScene.compute` - the pure computation
  (``Settings -> Outcome``), cached per setting;
- :class:`LeakageExplorer` / :func:`leakage_explorer` - the ipywidgets front end.

Lessons 07 and 08 reuse the explorer with some controls hidden and other
starting values (``controls=...``, ``settings=...``).
"""

from __future__ import annotations

import dataclasses
import html
import math
import struct
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass

import ipywidgets as W
import numpy as np

from fedlab import attacks, data, defences, engine, models, partition, seeding, validate
from fedlab import params as P

NOISE_MULTIPLIERS: tuple[float, ...] = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
CLIP_NORMS: tuple[float, ...] = (3.0, 1.0, 0.3, 0.1, 0.03, 0.01)
TOPK_FRACTIONS: tuple[float, ...] = (1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01)
LOCAL_STEPS: tuple[int, ...] = (1, 2, 3, 5)
MAX_BATCH = 8
MAX_SUMMED = 10
MODELS: dict[str, models.ModelSpec] = {
    "sigmoid": models.mlp(64, (32,), 10, activation="sigmoid"),
    "relu": models.mlp(64, (32,), 10, activation="relu"),
}
ATTACKERS: tuple[str, ...] = ("informed", "naive")
CONTROLS: tuple[str, ...] = (
    "client",
    "sample",
    "noise_multiplier",
    "clip_norm",
    "topk_fraction",
    "clients_summed",
    "batch_size",
    "local_steps",
    "model",
    "attacker",
)
"""Every control of the explorer, in display order (the fields of :class:`Settings`)."""

PANEL_PX = 192
"""Side of each image panel, in pixels."""


@dataclass(frozen=True)
class Settings:
    """One position of the explorer's controls (hashable: it is the cache key)."""

    client: int = 0
    sample: int = 0
    noise_multiplier: float = 0.0
    clip_norm: float = 1.0
    topk_fraction: float = 1.0
    clients_summed: int = 1
    batch_size: int = 1
    local_steps: int = 1
    model: str = "sigmoid"
    attacker: str = "informed"


@dataclass(frozen=True)
class Outcome:
    """What the explorer shows for one :class:`Settings`.

    Attributes
    ----------
    original
        ``[B, 64]`` the client's true batch.
    reconstruction
        ``[B, 64]`` the attacker's images, clipped to [0, 1] and put in the
        order of ``original`` (best pairing).
    psnr, ssim
        ``[B]`` per image.
    true_labels
        ``[B]`` the batch's labels.
    recovered_labels
        ``[B]`` the labels the attacker read off the update (sorted).
    update_norm
        L2 norm of the client's own update before any defence.
    clipped
        Whether clipping scaled the client's (top-k) update down.
    evaluations, budget
        L-BFGS evaluations used, and the budget.
    seconds
        Time to compute this outcome (0 when it came from the cache).

    """

    original: np.ndarray
    reconstruction: np.ndarray
    psnr: np.ndarray
    ssim: np.ndarray
    true_labels: np.ndarray
    recovered_labels: np.ndarray
    update_norm: float
    clipped: bool
    evaluations: int
    budget: int
    seconds: float

    @property
    def mean_psnr(self) -> float:
        return float(np.mean(self.psnr))

    @property
    def labels_correct(self) -> bool:
        return bool(np.array_equal(np.sort(self.true_labels), np.sort(self.recovered_labels)))


class LeakageScene:
    """The explorer's data, clients and models, and a cache of computed outcomes (no widgets).

    Parameters
    ----------
    seed
        Fixes the split of the digits over clients, the model's initial
        parameters, the noise and the attack's starting points.
    num_clients
        Clients the 1,797 digits are split over (IID).
    samples_per_client
        How many starting positions the ``sample`` control offers.
    lr
        The clients' learning rate (known to the attacker, like ``local_steps``).
    max_evals
        The attack's budget of L-BFGS evaluations; the unrolled attack gets
        ``max(min_evals, max_evals // local_steps)`` so that every setting costs
        about the same.
    min_evals
        Lower bound of the unrolled attack's budget.
    cache_size
        Outcomes kept (least recently used dropped first).

    """

    def __init__(
        self,
        *,
        seed: int = 0,
        num_clients: int = 10,
        samples_per_client: int = 20,
        lr: float = 0.1,
        max_evals: int = 100,
        min_evals: int = 30,
        cache_size: int = 512,
    ) -> None:
        self.seed = validate.positive_int("seed", seed, minimum=0)
        self.num_clients = validate.positive_int("num_clients", num_clients, minimum=MAX_SUMMED)
        self.samples_per_client = validate.positive_int("samples_per_client", samples_per_client)
        self.lr = validate.positive_float("lr", lr)
        self.max_evals = validate.positive_int("max_evals", max_evals)
        self.min_evals = validate.positive_int("min_evals", min_evals)
        self.cache_size = validate.positive_int("cache_size", cache_size)
        digits = data.load_digits()
        self.x = np.array(digits.x, dtype=np.float32)
        self.y = np.array(digits.y, dtype=np.int64)
        self.parts = partition.iid(len(self.y), num_clients=self.num_clients, rng=seeding.derive(self.seed, 0))
        self.params = {
            name: models.init_params(spec, rng=seeding.derive(self.seed, 1)) for name, spec in MODELS.items()
        }
        self._updates: OrderedDict = OrderedDict()
        self._outcomes: OrderedDict = OrderedDict()

    # -- the pieces ---------------------------------------------------------------------------

    def check(self, settings: Settings) -> Settings:
        """Return ``settings`` if every field is allowed, else raise ``ValueError`` naming it."""
        s = settings
        if not isinstance(s, Settings):
            raise ValueError(f"settings={s!r}: must be a fedlab.widgets.leakage.Settings")
        if not (isinstance(s.client, int) and 0 <= s.client < self.num_clients):
            raise ValueError(f"client={s.client!r}: must be an int in [0, {self.num_clients - 1}]")
        if not (isinstance(s.sample, int) and 0 <= s.sample < self.samples_per_client):
            raise ValueError(f"sample={s.sample!r}: must be an int in [0, {self.samples_per_client - 1}]")
        validate.positive_float("noise_multiplier", s.noise_multiplier, allow_zero=True)
        validate.positive_float("clip_norm", s.clip_norm)
        validate.fraction("topk_fraction", s.topk_fraction)
        if not (isinstance(s.clients_summed, int) and 1 <= s.clients_summed <= MAX_SUMMED):
            raise ValueError(f"clients_summed={s.clients_summed!r}: must be an int in [1, {MAX_SUMMED}]")
        if not (isinstance(s.batch_size, int) and 1 <= s.batch_size <= MAX_BATCH):
            raise ValueError(f"batch_size={s.batch_size!r}: must be an int in [1, {MAX_BATCH}]")
        validate.positive_int("local_steps", s.local_steps)
        validate.one_of("model", s.model, tuple(MODELS))
        validate.one_of("attacker", s.attacker, ATTACKERS)
        return s

    def batch(self, client: int, sample: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Client ``client``'s digits ``sample, sample + 1, ...`` (``batch_size`` of them): ``(x, y)``."""
        part = self.parts[client]
        idx = part[(sample + np.arange(batch_size)) % len(part)]
        return self.x[idx], self.y[idx]

    def client_update(self, model: str, client: int, sample: int, batch_size: int, local_steps: int) -> list:
        """The client's FedAvg update (float32, as sent): ``local_steps`` full-batch steps on its batch."""
        key = (model, client, sample, batch_size, local_steps)
        if key not in self._updates:
            x, y = self.batch(client, sample, batch_size)
            delta = attacks.local_update(MODELS[model], self.params[model], x, y, lr=self.lr, steps=local_steps)
            self._updates[key] = [d.astype(np.float32) for d in delta]
            while len(self._updates) > 4 * self.cache_size:
                self._updates.popitem(last=False)
        return self._updates[key]

    def observed_update(self, settings: Settings) -> tuple[list, float, bool]:
        """What the server observes: ``(update, client's own norm, whether it was clipped)``."""
        s = self.check(settings)
        total, own_norm, clipped = None, 0.0, False
        for j in range(s.clients_summed):
            client = (s.client + j) % self.num_clients
            raw = self.client_update(s.model, client, s.sample, s.batch_size, s.local_steps)
            delta = defences.topk_mask(raw, fraction=s.topk_fraction) if s.topk_fraction < 1.0 else raw
            if j == 0:
                own_norm, clipped = P.norm(raw), P.norm(delta) > s.clip_norm
            delta = defences.clip_update(delta, max_norm=s.clip_norm)
            total = delta if total is None else P.add(total, delta)
        if s.noise_multiplier > 0:
            rng = seeding.derive(self.seed, 2, s.client, s.sample, s.batch_size, s.local_steps, s.clients_summed)
            total = defences.add_gaussian_noise(total, std=s.noise_multiplier * s.clip_norm, rng=rng)
        return total, own_norm, clipped

    def budget(self, settings: Settings) -> int:
        """The attack's evaluation budget for these settings."""
        if settings.attacker == "informed" and settings.local_steps > 1:
            return max(self.min_evals, self.max_evals // settings.local_steps)
        return self.max_evals

    # -- the whole computation ------------------------------------------------------------------

    def is_cached(self, settings: Settings) -> bool:
        """Whether :meth:`compute` would answer ``settings`` from the cache."""
        return settings in self._outcomes

    def compute(self, settings: Settings) -> Outcome:
        """Attack the observed update for ``settings``; cached, and the same every time for a seed."""
        s = self.check(settings)
        if s in self._outcomes:
            self._outcomes.move_to_end(s)
            return dataclasses.replace(self._outcomes[s], seconds=0.0)
        t0 = time.perf_counter()
        observed, own_norm, clipped = self.observed_update(s)
        spec, params = MODELS[s.model], self.params[s.model]
        rng = seeding.derive(self.seed, 3, s.client, s.sample)
        budget = self.budget(s)
        with engine.torch_threads(1):
            if s.attacker == "naive":
                target = attacks.pseudo_gradient(observed, lr=self.lr, steps=s.local_steps)
                rec = attacks.invert_gradients(
                    spec, params, target, num_images=s.batch_size, loss="l2", max_evals=budget, rng=rng
                )
            else:
                mask = [o != 0 for o in observed] if s.topk_fraction < 1.0 and s.noise_multiplier == 0 else None
                rec = attacks.invert_update(
                    spec, params, observed, lr=self.lr, steps=s.local_steps, method="unrolled",
                    num_images=s.batch_size, loss="cosine", max_evals=budget, mask=mask, rng=rng,
                )  # fmt: skip
        x, y = self.batch(s.client, s.sample, s.batch_size)
        q = attacks.reconstruction_quality(x, rec.x)
        out = Outcome(
            original=x.astype(np.float64),
            reconstruction=np.clip(rec.x[q.order], 0.0, 1.0),
            psnr=q.psnr,
            ssim=q.ssim,
            true_labels=y.copy(),
            recovered_labels=rec.labels,
            update_norm=own_norm,
            clipped=bool(clipped),
            evaluations=rec.evaluations,
            budget=budget,
            seconds=time.perf_counter() - t0,
        )
        self._outcomes[s] = out
        while len(self._outcomes) > self.cache_size:
            self._outcomes.popitem(last=False)
        return out


def compute(settings: Settings, *, scene: LeakageScene) -> Outcome:
    """The explorer's computation without any widget: ``scene.compute(settings)``."""
    return scene.compute(settings)


# ----------------------------------------------------------------------------
# drawing (numpy -> PNG bytes, no plotting library)
# ----------------------------------------------------------------------------


def png_bytes(gray: np.ndarray) -> bytes:
    """Encode a ``[H, W]`` uint8 grayscale image as PNG (deterministic bytes)."""
    gray = np.ascontiguousarray(validate.array("gray", gray, ndim=2), dtype=np.uint8)
    h, w = gray.shape
    raw = b"".join(b"\x00" + row.tobytes() for row in gray)

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def render_panel(images: np.ndarray, *, size: int = PANEL_PX, gap: int = 4) -> bytes:
    """A ``size x size`` PNG of up to 9 square images in a grid, dark ink on white.

    Grayscale only (readable by everyone, whatever their colour vision);
    pixel values in [0, 1] become ink density; each image is scaled up with
    nearest-neighbour so that pixels stay visible.
    """
    images = np.clip(validate.array("images", images, ndim=2).astype(np.float64), 0.0, 1.0)
    n, d = images.shape
    side = math.isqrt(d)
    cols = math.ceil(math.sqrt(n))
    tile = (size - gap * (cols - 1)) // cols
    scale = max(1, tile // side)
    tile = side * scale
    canvas = np.full((size, size), 200, dtype=np.uint8)
    offset = (size - (cols * tile + gap * (cols - 1))) // 2
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        block = np.kron(img.reshape(side, side), np.ones((scale, scale)))
        y0, x0 = offset + r * (tile + gap), offset + c * (tile + gap)
        canvas[y0 : y0 + tile, x0 : x0 + tile] = np.round(255 * (1.0 - block)).astype(np.uint8)
    return png_bytes(canvas)


# ----------------------------------------------------------------------------
# the widget
# ----------------------------------------------------------------------------


def _fmt(v: float) -> str:
    return f"{v:g}"


def _make_controls(scene: LeakageScene, s: Settings) -> dict[str, W.Widget]:
    style = {"description_width": "170px"}
    layout = W.Layout(width="440px")

    def sel(desc, options, value, fmt=_fmt):
        if value not in options:
            raise ValueError(f"settings: {desc}={value!r}: the explorer's slider offers {list(options)}")
        return W.SelectionSlider(
            options=[(fmt(o), o) for o in options], value=value, description=desc,
            continuous_update=False, style=style, layout=layout,
        )  # fmt: skip

    def ints(desc, lo, hi, value):
        return W.IntSlider(
            value=value, min=lo, max=hi, description=desc, continuous_update=False, style=style, layout=layout
        )

    return {
        "client": ints("client", 0, scene.num_clients - 1, s.client),
        "sample": ints("sample", 0, scene.samples_per_client - 1, s.sample),
        "noise_multiplier": sel("noise multiplier z", NOISE_MULTIPLIERS, s.noise_multiplier),
        "clip_norm": sel("clipping norm C", CLIP_NORMS, s.clip_norm),
        "topk_fraction": sel("top-k fraction kept", TOPK_FRACTIONS, s.topk_fraction),
        "clients_summed": ints("clients summed", 1, MAX_SUMMED, s.clients_summed),
        "batch_size": ints("batch size", 1, MAX_BATCH, s.batch_size),
        "local_steps": sel("local steps", LOCAL_STEPS, s.local_steps, fmt=str),
        "model": W.ToggleButtons(
            options=[("sigmoid MLP", "sigmoid"), ("ReLU MLP", "relu")],
            value=s.model,
            description="model",
            style={**style, "button_width": "110px"},
        ),
        "attacker": W.ToggleButtons(
            options=[("informed", "informed"), ("naive (DLG)", "naive")],
            value=s.attacker,
            description="attacker",
            tooltips=["cosine loss, mask-aware, replays the local steps", "squared distance to the whole update"],
            style={**style, "button_width": "110px"},
        ),
    }


class LeakageExplorer(W.VBox):
    """The leakage explorer widget (an ``ipywidgets.VBox``); see the module docstring.

    Attributes
    ----------
    scene
        The :class:`LeakageScene` doing the computation.
    controls
        ``{name: widget}`` for the visible controls (names from :data:`CONTROLS`).
    original, reconstruction
        The two ``ipywidgets.Image`` panels.
    readout
        ``ipywidgets.HTML`` with PSNR, SSIM, labels, norms and the attack's cost.
    outcome
        The :class:`Outcome` on display.
    last_update_seconds
        Kernel-side time of the last refresh: from the control's change to the
        new image being set (computation and rendering included).

    """

    def __init__(
        self,
        *,
        scene: LeakageScene | None = None,
        seed: int = 0,
        settings: Settings | None = None,
        controls: tuple[str, ...] = CONTROLS,
        title: str = "Leakage explorer: what the server can rebuild from one update",
    ) -> None:
        self.scene = scene if scene is not None else LeakageScene(seed=seed)
        self._fixed = self.scene.check(settings if settings is not None else Settings())
        for name in controls:
            validate.one_of("controls entry", name, CONTROLS)
        all_controls = _make_controls(self.scene, self._fixed)
        self.controls = {name: all_controls[name] for name in CONTROLS if name in controls}
        self.original = W.Image(format="png", width=PANEL_PX, height=PANEL_PX)
        self.reconstruction = W.Image(format="png", width=PANEL_PX, height=PANEL_PX)
        self.original.add_class("fedlab-leakage-original")
        self.reconstruction.add_class("fedlab-leakage-reconstruction")
        self.readout = W.HTML()
        self.readout.add_class("fedlab-leakage-readout")
        self.outcome: Outcome | None = None
        self.last_update_seconds = 0.0

        def panel(caption, image):
            return W.VBox([W.HTML(f"<b>{html.escape(caption)}</b>"), image], layout=W.Layout(margin="0 12px 0 0"))

        images = W.HBox(
            [panel("the client's data", self.original), panel("rebuilt by the server", self.reconstruction)]
        )
        left = W.VBox(list(self.controls.values()), layout=W.Layout(width="460px"))
        right = W.VBox([images, self.readout])
        super().__init__([W.HTML(f"<h4>{html.escape(title)}</h4>"), W.HBox([left, right])])
        self.add_class("fedlab-leakage-explorer")
        for w in self.controls.values():
            w.observe(self._on_change, names="value")
        self.refresh()

    def settings(self) -> Settings:
        """The :class:`Settings` the controls show (hidden controls keep their starting values)."""
        values = {name: w.value for name, w in self.controls.items()}
        return dataclasses.replace(self._fixed, **values)

    def _on_change(self, _change) -> None:
        self.refresh()

    def refresh(self) -> Outcome:
        """Compute (or fetch) the outcome of the current settings and show it."""
        t0 = time.perf_counter()
        s = self.settings()
        out = self.scene.compute(s)
        self.original.value = render_panel(out.original)
        self.reconstruction.value = render_panel(out.reconstruction)
        self.readout.value = _readout(s, out)
        self.outcome = out
        self.last_update_seconds = time.perf_counter() - t0
        return out


def _readout(s: Settings, out: Outcome) -> str:
    psnr = out.mean_psnr
    verdict = "recognisable" if psnr >= 20 else ("blurry" if psnr >= 14 else "not recognisable")
    mark = "&#10004;" if out.labels_correct else "&#10008;"
    true = ", ".join(map(str, np.sort(out.true_labels)))
    rec = ", ".join(map(str, out.recovered_labels))
    label_word = "label" if len(out.true_labels) == 1 else "labels"
    clip = f"clipped to {_fmt(s.clip_norm)}" if out.clipped else "not clipped"
    stopped = "budget used up" if out.evaluations >= out.budget else "converged"
    lines = [
        f"<span class='fedlab-psnr' style='font-size:1.25em'><b>PSNR {psnr:.1f} dB</b></span> "
        f"&middot; SSIM {float(np.mean(out.ssim)):.2f} &middot; {verdict}",
        f"{label_word}: true {true} &middot; recovered {rec} {mark}",
        f"client's update norm {out.update_norm:.3g} ({clip}); noise std {_fmt(s.noise_multiplier * s.clip_norm)}",
        f"attack: {out.evaluations} L-BFGS evaluations of {out.budget} ({stopped})",
    ]
    return "<div style='line-height:1.6'>" + "<br>".join(lines) + "</div>"


def leakage_explorer(
    *,
    seed: int = 0,
    settings: Settings | None = None,
    controls: tuple[str, ...] = CONTROLS,
    scene: LeakageScene | None = None,
) -> LeakageExplorer:
    """The leakage explorer: an ``ipywidgets`` container to display in a notebook.

    Parameters
    ----------
    seed
        Fixes the data split, the model, the noise and the attack (ignored when
        ``scene`` is given).
    settings
        Starting position of the controls (a :class:`Settings`).
    controls
        Which controls to show (names from :data:`CONTROLS`); hidden ones stay
        at their ``settings`` value.
    scene
        An existing :class:`LeakageScene` to share its cache.

    """
    return LeakageExplorer(scene=scene, seed=seed, settings=settings, controls=controls)
