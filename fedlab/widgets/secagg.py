"""What the server sees: secure aggregation's masked updates beside their exact sum, with dropouts.

Ten phones each hold a small picture (an 8x8 digit standing in for a model
update, so that hiding it is something you can see). They run one round of
secure aggregation (:func:`fedlab.secagg.run_round`, the real protocol with
X25519, ChaCha20 and Shamir shares). The widget shows three panels:

1. **what the server receives**: every masked vector that arrived, drawn as
   grey pixels (uniform noise); a client that dropped *before* sending its
   masked input is an empty tile with a cross, one that dropped *after* it has
   an orange frame;
2. **what the server computes**: the exact sum of the included clients' inputs
   (drawn as their mean picture) with a check mark, or a cross when the server
   refuses because fewer than ``t`` clients remain;
3. **hidden from the server**: the phones' own pictures, for comparison.

Controls: how many clients drop, when (before or after sending their masked
input) and the threshold ``t``. Every control works with the keyboard (Tab to
it; arrow keys move a slider, Space or Enter presses a button). Colours are
Okabe-Ito and always come with a shape or a word, never alone.

Split in two so that tests need no browser: :class:`ServerScene` and
:func:`compute` are the pure computation (``ViewSettings -> ServerView``,
deterministic for a seed); :class:`ServerSeesWidget` / :func:`server_sees` is
the ipywidgets front end.
"""

from __future__ import annotations

import dataclasses
import html
import math
import struct
import time
import warnings
import zlib
from collections import OrderedDict
from dataclasses import dataclass

import ipywidgets as W
import numpy as np

from fedlab import data, secagg, seeding, validate

PANEL_PX = 240
"""Side of each image panel, in pixels."""

WHEN: tuple[str, ...] = ("before", "after")
"""When the dropping clients leave: before or after sending their masked input."""

OKABE_ITO = {
    "orange": (0xE6, 0x9F, 0x00),
    "sky_blue": (0x56, 0xB4, 0xE9),
    "bluish_green": (0x00, 0x9E, 0x73),
    "blue": (0x00, 0x72, 0xB2),
    "vermillion": (0xD5, 0x5E, 0x00),
    "black": (0x00, 0x00, 0x00),
}
PAPER = (0xF4, 0xF4, 0xF4)


@dataclass(frozen=True)
class ViewSettings:
    """One position of the controls (hashable: the cache key).

    Attributes
    ----------
    dropped
        How many clients drop (the first ones of the scene's seeded drop order).
    when
        ``"before"``: they drop after sharing their keys but before sending
        their masked input (the server rebuilds their mask keys);
        ``"after"``: they send their masked input, then drop before unmasking
        (the server rebuilds their self-mask seeds).
    threshold
        ``t``, the Shamir threshold and the fewest clients the protocol goes on with.

    """

    dropped: int = 0
    when: str = "before"
    threshold: int = 6


@dataclass(frozen=True, eq=False)
class ServerView:
    """What the widget shows for one :class:`ViewSettings`.

    Attributes
    ----------
    settings
        The settings it was computed for.
    masked
        ``{client: y}``: the masked vectors the server received (uint32).
    dropped
        The clients that dropped, in the drop order.
    included
        The clients whose input is in the sum (empty when refused).
    recovered
        Whether the server unmasked the sum.
    message
        The refusal's reason, or a one-line account of the recovery.
    total
        ``[d]`` float64 decoded sum, or ``None`` when refused.
    max_error
        Largest difference between ``total`` and the float sum of the
        included inputs (fixed-point rounding only), or ``None``.
    uniformity
        Mean of the received masked entries divided by ``2^32`` (uniform: 0.5).
    bytes_per_client
        Mean bytes a client that finished the round sent (0 when refused).
    seconds
        Time to compute this view (0 when it came from the cache).

    """

    settings: ViewSettings
    masked: dict
    dropped: tuple[int, ...]
    included: tuple[int, ...]
    recovered: bool
    message: str
    total: np.ndarray | None
    max_error: float | None
    uniformity: float
    bytes_per_client: float
    seconds: float

    @property
    def status(self) -> str:
        return "recovered" if self.recovered else "refused"


class ServerScene:
    """The phones' pictures, the drop order and a cache of computed views (no widgets).

    Parameters
    ----------
    seed
        Fixes which digits the phones hold, the drop order and every key and mask.
    num_clients
        Phones in the round (4..16).
    cache_size
        Views kept (least recently used dropped first).

    """

    def __init__(self, *, seed: int = 0, num_clients: int = 10, cache_size: int = 256) -> None:
        self.seed = validate.positive_int("seed", seed, minimum=0)
        self.num_clients = validate.positive_int("num_clients", num_clients, minimum=4)
        if self.num_clients > 16:
            raise ValueError(f"num_clients={num_clients}: must be at most 16 (the panels hold a 4 x 4 grid)")
        self.cache_size = validate.positive_int("cache_size", cache_size)
        digits = data.load_digits()
        pick = seeding.derive(self.seed, 0).choice(len(digits.y), size=self.num_clients, replace=False)
        self.inputs = np.array(digits.x, dtype=np.float64)[pick]
        self.labels = np.array(digits.y)[pick]
        self.drop_order = tuple(int(u) for u in seeding.derive(self.seed, 1).permutation(self.num_clients))
        self._views: OrderedDict = OrderedDict()

    @property
    def dim(self) -> int:
        return int(self.inputs.shape[1])

    def check(self, settings: ViewSettings) -> ViewSettings:
        """Return ``settings`` if every field is allowed, else raise ``ValueError`` naming it."""
        s = settings
        if not isinstance(s, ViewSettings):
            raise ValueError(f"settings={s!r}: must be a fedlab.widgets.secagg.ViewSettings")
        n = self.num_clients
        if isinstance(s.dropped, bool) or not isinstance(s.dropped, int) or not 0 <= s.dropped <= n - 1:
            raise ValueError(f"dropped={s.dropped!r}: must be an int in [0, {n - 1}]")
        validate.one_of("when", s.when, WHEN)
        if isinstance(s.threshold, bool) or not isinstance(s.threshold, int) or not 2 <= s.threshold <= n:
            raise ValueError(f"threshold={s.threshold!r}: must be an int in [2, {n}]")
        return s

    def config(self, threshold: int) -> secagg.Config:
        """The round's public parameters: pixels in [0, 1] clipped to [-1, 1], 32-bit ring.

        The threshold slider goes below ``n/2`` on purpose (to see refusals move), so the
        :class:`fedlab.secagg.ThresholdWarning` for it is not repeated on every move.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", secagg.ThresholdWarning)
            return secagg.Config(num_clients=self.num_clients, threshold=threshold, dim=self.dim, clip=1.0)

    def compute(self, settings: ViewSettings) -> ServerView:
        """Run the round for ``settings`` (cached; the same every time for a seed)."""
        s = self.check(settings)
        if s in self._views:
            self._views.move_to_end(s)
            return dataclasses.replace(self._views[s], seconds=0.0)
        t0 = time.perf_counter()
        config = self.config(s.threshold)
        dropped = self.drop_order[: s.dropped]
        phase = "masked_input" if s.when == "before" else "unmask"
        result = secagg.run_round(
            self.inputs, config=config, rng=seeding.derive(self.seed, 2), seeded_keys=True,
            dropouts={u: phase for u in dropped},
            on_refusal="return",
        )  # fmt: skip
        received = np.concatenate(list(result.masked.values())) if result.masked else np.zeros(1)
        uniformity = float(np.mean(received.astype(np.float64)) / 2.0**32)
        if result.sum is None:
            view = ServerView(
                s, dict(result.masked), dropped, (), False, result.refusal, None, None, uniformity, 0.0,
                time.perf_counter() - t0,
            )  # fmt: skip
        else:
            inc = result.included
            err = float(np.max(np.abs(result.sum - self.inputs[list(inc)].sum(axis=0))))
            late = [u for u in dropped if u in inc]
            early = [u for u in dropped if u not in inc]
            parts = [f"the exact sum of {len(inc)} clients' inputs"]
            if late:
                parts.append(f"{len(late)} dropped after sending: their self-masks were rebuilt from shares")
            if early:
                parts.append(f"{len(early)} dropped before sending: their pair masks were rebuilt from shares")
            view = ServerView(
                s, dict(result.masked), dropped, inc, True, "; ".join(parts), result.sum, err, uniformity,
                secagg.expansion(result, config=config) * 4 * self.dim, time.perf_counter() - t0,
            )  # fmt: skip
        self._views[s] = view
        while len(self._views) > self.cache_size:
            self._views.popitem(last=False)
        return view


def compute(settings: ViewSettings, *, scene: ServerScene) -> ServerView:
    """The widget's computation without any widget: ``scene.compute(settings)``."""
    return scene.compute(settings)


# ----------------------------------------------------------------------------
# drawing (numpy -> RGB PNG bytes, no plotting library)
# ----------------------------------------------------------------------------


def png_rgb(rgb: np.ndarray) -> bytes:
    """Encode an ``[H, W, 3]`` uint8 image as PNG (deterministic bytes)."""
    rgb = np.ascontiguousarray(validate.array("rgb", rgb, ndim=3), dtype=np.uint8)
    if rgb.shape[2] != 3:
        raise ValueError(f"rgb has shape {rgb.shape}: must be [H, W, 3]")
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + row.tobytes() for row in rgb)

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def _canvas(size: int) -> np.ndarray:
    return np.broadcast_to(np.array(PAPER, np.uint8), (size, size, 3)).copy()


def _grid(n: int, size: int, gap: int) -> tuple[int, int, int, int]:
    """``(cols, tile, x0, y0)``: a centred grid of ``n`` square tiles (a multiple of 8 pixels each)."""
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    tile = (size - gap * (max(cols, rows) + 1)) // max(cols, rows) // 8 * 8  # whole pixels per digit pixel
    return cols, tile, (size - cols * tile - (cols - 1) * gap) // 2, (size - rows * tile - (rows - 1) * gap) // 2


def _place(canvas: np.ndarray, block: np.ndarray, u: int, grid: tuple[int, int, int, int], gap: int) -> None:
    cols, tile, x0, y0 = grid
    r, c = divmod(u, cols)
    y, x = y0 + r * (tile + gap), x0 + c * (tile + gap)
    canvas[y : y + tile, x : x + tile] = block


def _ink(values: np.ndarray, tile: int) -> np.ndarray:
    """``[64]`` values in [0, 1] as a ``tile x tile`` RGB block of dark ink on white."""
    side = math.isqrt(values.size)
    scale = tile // side
    block = np.kron(np.clip(values, 0, 1).reshape(side, side), np.ones((scale, scale)))
    grey = np.round(255 * (1.0 - block)).astype(np.uint8)
    out = np.full((tile, tile, 3), 255, np.uint8)
    off = (tile - grey.shape[0]) // 2
    out[off : off + grey.shape[0], off : off + grey.shape[1]] = grey[:, :, None]
    return out


def _cross(tile: int, colour, width: int = 3) -> np.ndarray:
    out = np.full((tile, tile, 3), 255, np.uint8)
    i = np.arange(tile)
    for w in range(-(width // 2), width // 2 + 1):
        j = np.clip(i + w, 0, tile - 1)
        out[i, j] = colour
        out[i, tile - 1 - j] = colour
    return out


def _frame(block: np.ndarray, colour, width: int = 3) -> np.ndarray:
    out = block.copy()
    out[:width], out[-width:], out[:, :width], out[:, -width:] = colour, colour, colour, colour
    return out


def render_received(view: ServerView, *, num_clients: int, size: int = PANEL_PX) -> bytes:
    """The masked vectors the server received, one tile per client (grey noise); crosses for missing ones."""
    grid = _grid(num_clients, size, 6)
    tile = grid[1]
    canvas = _canvas(size)
    for u in range(num_clients):
        if u in view.masked:
            block = _ink(view.masked[u].astype(np.float64) / 2.0**32, tile)
            if u in view.dropped:
                block = _frame(block, OKABE_ITO["orange"])
        else:
            block = _cross(tile, OKABE_ITO["vermillion"])
        _place(canvas, block, u, grid, 6)
    return png_rgb(canvas)


def render_sum(view: ServerView, *, size: int = PANEL_PX) -> bytes:
    """The decoded sum as the mean picture of the included clients, framed; a large cross when refused."""
    canvas = _canvas(size)
    inner = size - 24
    if view.recovered:
        block = _frame(_ink(view.total / max(1, len(view.included)), inner), OKABE_ITO["bluish_green"], width=5)
    else:
        block = _cross(inner, OKABE_ITO["vermillion"], width=7)
    canvas[12 : 12 + inner, 12 : 12 + inner] = block
    return png_rgb(canvas)


def render_data(scene: ServerScene, view: ServerView, *, size: int = PANEL_PX) -> bytes:
    """The phones' own pictures (what the server never sees); dropped-before clients faded."""
    grid = _grid(scene.num_clients, size, 6)
    canvas = _canvas(size)
    for u in range(scene.num_clients):
        values = scene.inputs[u] * (0.25 if (u in view.dropped and u not in view.masked) else 1.0)
        _place(canvas, _ink(values, grid[1]), u, grid, 6)
    return png_rgb(canvas)


# ----------------------------------------------------------------------------
# the widget
# ----------------------------------------------------------------------------


def _hex(rgb) -> str:
    return "#" + "".join(f"{c:02X}" for c in rgb)


def _status_html(view: ServerView, scene: ServerScene) -> str:
    s = view.settings
    if view.recovered:
        head = (
            f"<span class='fedlab-secagg-verdict' style='color:{_hex(OKABE_ITO['bluish_green'])}'>"
            f"<b>&#10004; recovered</b></span>: {html.escape(view.message)}."
        )
        detail = (
            f"Largest error against the plain float sum: {view.max_error:.1e} (fixed-point rounding: at most "
            f"2^-{scene.config(s.threshold).frac_bits + 1} per value). Each client sent "
            f"{view.bytes_per_client:,.0f} bytes for {scene.dim} values."
        )
    else:
        head = (
            f"<span class='fedlab-secagg-verdict' style='color:{_hex(OKABE_ITO['vermillion'])}'>"
            f"<b>&#10008; refused</b></span>: {html.escape(view.message)}."
        )
        detail = "Nothing is unmasked: the masked vectors stay noise."
    when = "before sending their masked input" if s.when == "before" else "after sending their masked input"
    drop = f"{len(view.dropped)} of {scene.num_clients} clients drop {when}" if view.dropped else "nobody drops"
    lines = [
        head,
        f"{drop}; threshold t = {s.threshold}.",
        detail,
        f"A masked entry / 2^32 averages {view.uniformity:.3f} over the received vectors (uniform noise: 0.5).",
    ]
    return "<div style='line-height:1.6'>" + "<br>".join(lines) + "</div>"


class ServerSeesWidget(W.VBox):
    """The "what the server sees" widget (an ``ipywidgets.VBox``); see the module docstring.

    Attributes
    ----------
    scene
        The :class:`ServerScene` doing the computation.
    controls
        ``{"dropped", "when", "threshold"}`` widgets.
    received_image, sum_image, data_image
        The three ``ipywidgets.Image`` panels.
    status
        ``ipywidgets.HTML`` with the verdict (a symbol and a word, plus colour) and the numbers.
    view
        The :class:`ServerView` on display.
    last_update_seconds
        Kernel-side time of the last refresh.

    """

    def __init__(
        self, *, scene: ServerScene | None = None, seed: int = 0, settings: ViewSettings | None = None
    ) -> None:
        self.scene = scene if scene is not None else ServerScene(seed=seed)
        s = self.scene.check(settings if settings is not None else ViewSettings())
        n = self.scene.num_clients
        style, layout = {"description_width": "150px"}, W.Layout(width="420px")
        self.controls = {
            "dropped": W.IntSlider(
                value=s.dropped, min=0, max=n - 1, description="clients that drop", continuous_update=False,
                style=style, layout=layout,
            ),
            "when": W.ToggleButtons(
                options=[("before sending", "before"), ("after sending", "after")], value=s.when,
                description="they drop", style={**style, "button_width": "125px"},
                tooltips=["after sharing keys, before sending the masked input",
                          "after sending the masked input, before unmasking"],
            ),
            "threshold": W.IntSlider(
                value=s.threshold, min=2, max=n, description="threshold t", continuous_update=False,
                style=style, layout=layout,
            ),
        }  # fmt: skip
        self.received_image = W.Image(format="png", width=PANEL_PX, height=PANEL_PX)
        self.sum_image = W.Image(format="png", width=PANEL_PX, height=PANEL_PX)
        self.data_image = W.Image(format="png", width=PANEL_PX, height=PANEL_PX)
        self.received_image.add_class("fedlab-secagg-received")
        self.sum_image.add_class("fedlab-secagg-sum")
        self.data_image.add_class("fedlab-secagg-data")
        self.status = W.HTML()
        self.status.add_class("fedlab-secagg-status")
        self.view: ServerView | None = None
        self.last_update_seconds = 0.0

        def panel(caption, image):
            return W.VBox([W.HTML(f"<b>{html.escape(caption)}</b>"), image], layout=W.Layout(margin="0 12px 0 0"))

        legend = W.HTML(
            "<small>Grey noise: a masked vector. "
            f"<span style='color:{_hex(OKABE_ITO['orange'])}'>&#9634; orange frame</span>: sent, then dropped. "
            f"<span style='color:{_hex(OKABE_ITO['vermillion'])}'>&#10008; cross</span>: nothing arrived / refused. "
            f"<span style='color:{_hex(OKABE_ITO['bluish_green'])}'>&#9634; green frame</span>: the unmasked sum, "
            "drawn as the mean picture.</small>"
        )
        images = W.HBox([
            panel("what the server receives", self.received_image),
            panel("what the server computes", self.sum_image),
            panel("hidden from the server", self.data_image),
        ])  # fmt: skip
        super().__init__([
            W.HTML("<h4>What the server sees: secure aggregation with dropouts</h4>"),
            W.HBox([W.VBox(list(self.controls.values()), layout=W.Layout(width="440px")), self.status]),
            images,
            legend,
        ])  # fmt: skip
        self.add_class("fedlab-secagg-view")
        for w in self.controls.values():
            w.observe(self._on_change, names="value")
        self.refresh()

    def settings(self) -> ViewSettings:
        """The :class:`ViewSettings` the controls show."""
        return ViewSettings(**{name: w.value for name, w in self.controls.items()})

    def _on_change(self, _change) -> None:
        self.refresh()

    def refresh(self) -> ServerView:
        """Compute (or fetch) the view of the current settings and show it."""
        t0 = time.perf_counter()
        view = self.scene.compute(self.settings())
        self.received_image.value = render_received(view, num_clients=self.scene.num_clients)
        self.sum_image.value = render_sum(view)
        self.data_image.value = render_data(self.scene, view)
        self.status.value = _status_html(view, self.scene)
        self.view = view
        self.last_update_seconds = time.perf_counter() - t0
        return view


def server_sees(
    *, seed: int = 0, settings: ViewSettings | None = None, scene: ServerScene | None = None
) -> ServerSeesWidget:
    """The "what the server sees" widget: an ``ipywidgets`` container to display in a notebook.

    Parameters
    ----------
    seed
        Fixes the phones' pictures, the drop order, the keys and the masks
        (ignored when ``scene`` is given).
    settings
        Starting position of the controls (a :class:`ViewSettings`).
    scene
        An existing :class:`ServerScene` to share its cache.

    """
    return ServerSeesWidget(scene=scene, seed=seed, settings=settings)
