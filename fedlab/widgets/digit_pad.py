"""Draw your own digits for the workshop federation; they stay on your laptop (lesson 11).

A participant draws a digit with the mouse (or a finger) on an ipycanvas
pad, picks its label and presses *Add*; :meth:`DigitPad.data` returns the
drawings as ``x`` ``[n, 64]`` float32 and ``y`` ``[n]`` int64, preprocessed
the way the UCI 8x8 digits were (Alpaydin and Kaynak; ``datasets/digits.md``):
the drawing is scaled to fit a 32 x 32 bitmap, the bitmap is cut into 4 x 4
blocks, and each of the 64 features is the number of "on" pixels of its
block (0..16), divided by 16 as :func:`fedlab.data.load_digits` does. So the
workshop's model, trained on the shipped digits' scale, sees drawings on the
same scale. Then::

    from fedlab import workshop
    from fedlab.widgets.digit_pad import DigitPad
    pad = DigitPad(); pad                         # draw a few of each digit
    workshop.join("192.168.1.10:9093", token="...", pin="...", name="ada", data=pad)

``join`` saves the drawings to ``workshop-join/my-digits.npz``, which only the
laptop's own SuperNode reads: the pixels never leave the laptop (the model
updates computed from them do; lesson 05 showed what those can reveal).

The strokes are recorded and rasterised in the kernel (:func:`rasterize`,
:func:`to_digit`), not read back from the browser's canvas, so the pure parts
are tested without a browser and the same strokes always give the same
features.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fedlab import data, validate

BITMAP = 32
"""Side of the bitmap the UCI digits were counted from (32 x 32, 4 x 4 blocks -> 8 x 8)."""
BLOCK = 4
PAD_SIZE = 240
"""Side of the drawing pad in screen pixels."""


def rasterize(strokes: Sequence[Sequence[tuple[float, float]]], *, size: int = BITMAP, width: float = 4.5,
              margin: int = 1) -> np.ndarray:
    """Strokes (lists of ``(x, y)`` points, any scale) -> a ``[size, size]`` bool bitmap.

    The drawing's bounding box is scaled, keeping its aspect ratio, so that
    its longer side spans ``size - 2 * margin`` pixels, and centred (the UCI
    bitmaps were size-normalised the same way). A pixel is on when its centre
    lies within ``width / 2`` pixels of a stroke; the default 4.5 puts about
    as much ink in a drawn 0 as the shipped digits have on average (~310 of
    1024 pixels). An empty drawing gives an all-off bitmap.
    """
    size = validate.positive_int("size", size, minimum=BLOCK)
    validate.positive_float("width", width)
    pts = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes if len(s) > 0]
    if not pts:
        return np.zeros((size, size), dtype=bool)
    allp = np.concatenate(pts)
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    span = float(max(hi - lo)) or 1.0
    scale = (size - 2 * margin - 1) / span
    offset = (size - 1) / 2.0 - (lo + hi) / 2.0 * scale
    samples = []
    for s in pts:
        s = s * scale + offset
        if len(s) == 1:
            samples.append(s)
            continue
        for a, b in zip(s[:-1], s[1:]):
            n = max(2, int(np.ceil(np.linalg.norm(b - a) / 0.25)) + 1)
            t = np.linspace(0.0, 1.0, n)[:, None]
            samples.append(a + t * (b - a))
    p = np.concatenate(samples)
    grid = np.arange(size, dtype=np.float64)
    # distance from every pixel centre (row = y, column = x) to the nearest sample
    d2 = (grid[None, :, None] - p[:, 0][None, None, :]) ** 2 + (grid[:, None, None] - p[:, 1][None, None, :]) ** 2
    return d2.min(axis=2) <= (width / 2.0) ** 2


def to_digit(bitmap: np.ndarray) -> np.ndarray:
    """A ``[32, 32]`` bitmap -> the 64 features of the digits dataset: on-pixels per 4 x 4 block / 16, float32."""
    b = np.asarray(bitmap)
    if b.shape != (BITMAP, BITMAP):
        raise ValueError(f"bitmap has shape {b.shape}: must be ({BITMAP}, {BITMAP})")
    counts = b.astype(np.int64).reshape(8, BLOCK, 8, BLOCK).sum(axis=(1, 3))
    return (counts.reshape(64) / 16.0).astype(np.float32)


class DigitPad:
    """A drawing pad: draw, pick the label, *Add*; :meth:`data` and :meth:`save` give what you drew.

    Display it as the last expression of a cell (or ``pad.widget``). The
    handlers ``_down``, ``_move``, ``_up`` take canvas coordinates, so the
    pad can be driven without a browser (the tests do).
    """

    def __init__(self, *, size: int = PAD_SIZE) -> None:
        import ipywidgets as w
        from ipycanvas import Canvas

        self.size = validate.positive_int("size", size, minimum=32)
        self.strokes: list[list[tuple[float, float]]] = []
        self._drawing = False
        self.x: list[np.ndarray] = []
        self.y: list[int] = []
        self.canvas = Canvas(width=self.size, height=self.size, layout=w.Layout(border="1px solid #444"))
        self.canvas.line_width = max(6, self.size // 20)
        self.canvas.line_cap = "round"
        self.canvas.stroke_style = "#111"
        self.preview = Canvas(width=80, height=80, layout=w.Layout(border="1px solid #ccc"))
        self.canvas.on_mouse_down(self._down)
        self.canvas.on_mouse_move(self._move)
        self.canvas.on_mouse_up(self._up)
        self.canvas.on_mouse_out(self._up)
        self.canvas.on_touch_start(lambda touches: self._down(*touches[0]))
        self.canvas.on_touch_move(lambda touches: self._move(*touches[0]))
        self.canvas.on_touch_end(lambda touches: self._up(0, 0))
        self.label = w.ToggleButtons(options=[str(d) for d in range(10)], description="label",
                                     style={"button_width": "28px"})
        self.add_button = w.Button(description="Add", button_style="primary", tooltip="keep this drawing")
        self.clear_button = w.Button(description="Clear", tooltip="start this drawing again")
        self.undo_button = w.Button(description="Remove last", tooltip="drop the last added digit")
        self.status = w.HTML()
        self.add_button.on_click(lambda _: self.add())
        self.clear_button.on_click(lambda _: self.clear())
        self.undo_button.on_click(lambda _: self.remove_last())
        self.widget = w.VBox([
            w.HTML("<b>Draw one digit</b>, pick its label, press Add. Your drawings stay on this laptop."),
            w.HBox([self.canvas, w.VBox([w.HTML("what the model sees (8 x 8)"), self.preview])]),
            self.label,
            w.HBox([self.add_button, self.clear_button, self.undo_button]),
            self.status,
        ])
        self._update_status()

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    # -- drawing
    def _down(self, x: float, y: float) -> None:
        self._drawing = True
        self.strokes.append([(float(x), float(y))])

    def _move(self, x: float, y: float) -> None:
        if not self._drawing:
            return
        last = self.strokes[-1][-1]
        self.strokes[-1].append((float(x), float(y)))
        self.canvas.stroke_line(last[0], last[1], float(x), float(y))

    def _up(self, x: float, y: float) -> None:
        if self._drawing:
            self._drawing = False
            self._draw_preview(self.features())

    def features(self) -> np.ndarray:
        """The current drawing as the 64 digit features (all zero if nothing is drawn)."""
        return to_digit(rasterize(self.strokes))

    def _draw_preview(self, feats: np.ndarray) -> None:
        self.preview.clear()
        cell = self.preview.width / 8
        for i, v in enumerate(feats):
            if v > 0:
                shade = int(255 * (1 - float(v)))
                self.preview.fill_style = f"rgb({shade},{shade},{shade})"
                self.preview.fill_rect((i % 8) * cell, (i // 8) * cell, cell, cell)

    # -- buttons
    def clear(self) -> None:
        """Forget the current drawing."""
        self.strokes = []
        self._drawing = False
        self.canvas.clear()
        self.preview.clear()

    def add(self, label: int | None = None) -> None:
        """Keep the current drawing with ``label`` (default: the selected label button), then clear the pad."""
        label = int(self.label.value) if label is None else label
        validate.one_of("label", label, range(10))
        if not self.strokes:
            self.status.value = "<span style='color:#a00'>Nothing drawn yet: draw a digit first.</span>"
            return
        self.x.append(self.features())
        self.y.append(int(label))
        self.clear()
        self._update_status()

    def remove_last(self) -> None:
        """Drop the last added digit."""
        if self.x:
            self.x.pop()
            self.y.pop()
        self._update_status()

    def _update_status(self) -> None:
        counts = np.bincount(np.asarray(self.y, dtype=np.int64), minlength=10) if self.y else np.zeros(10, int)
        per = " ".join(f"{d}:{c}" for d, c in enumerate(counts))
        self.status.value = f"{len(self.y)} digits added ({per})"

    # -- results
    def data(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x [n, 64] float32 in [0, 1], y [n] int64)``; raises if nothing was added yet."""
        if not self.y:
            raise ValueError("the pad has no digits yet: draw some and press Add for each")
        return np.stack(self.x).astype(np.float32), np.asarray(self.y, dtype=np.int64)

    def save(self, path: str | os.PathLike = "workshop-join/my-digits.npz") -> Path:
        """Write the digits as the ``.npz`` a workshop SuperNode reads (``x``, ``y``); returns the path."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        x, y = self.data()
        return data.save_digits_file(p, x, y)
