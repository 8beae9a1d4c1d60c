"""The label mix of every client, redrawn as you move a slider over the Dirichlet ``alpha`` (lesson 03).

One stacked bar per client: the share of each class in its data. With a
large ``alpha`` every bar looks like the whole dataset (IID); with a small
one most clients hold one or two classes. The pure parts are separate from
the widget so tests need no browser:

- :func:`label_shares` - ``[K, C]`` class shares per client of a split;
- :func:`render_label_shares` - those shares as a PNG (bytes);
- :func:`dirichlet_picture` - split with :func:`fedlab.partition.dirichlet`
  for one ``alpha`` and render: the same bytes for the same arguments;
- :func:`partition_explorer` - an ipywidgets ``FloatLogSlider`` over
  ``alpha`` above an ``ipywidgets.Image`` and a text line with the split's
  statistics (so nothing is told by colour alone).

Colours: the Okabe-Ito palette (Okabe and Ito 2008), readable with the
common colour-vision deficiencies; classes beyond the eighth repeat a colour
with a hatch. The slider's handle takes the keyboard (Tab to it, then the
arrow keys), and the split is seeded, so every learner sees the same picture.
"""

from __future__ import annotations

import numpy as np
from matplotlib.patches import Patch

from fedlab import partition, validate
from fedlab.plots import OKABE_ITO

CLASS_COLORS: tuple[str, ...] = (
    OKABE_ITO["blue"],
    OKABE_ITO["orange"],
    OKABE_ITO["bluish_green"],
    OKABE_ITO["vermillion"],
    OKABE_ITO["reddish_purple"],
    OKABE_ITO["sky_blue"],
    OKABE_ITO["yellow"],
    OKABE_ITO["black"],
)
"""Colour of class ``c`` is ``CLASS_COLORS[c % 8]``; classes 8 and up add a hatch."""

CLASS_HATCHES: tuple[str, ...] = ("", "///", "...", "xxx")

WIDTH_PX, HEIGHT_PX, DPI = 760, 300, 100


def label_shares(labels, parts, *, num_classes: int) -> np.ndarray:
    """``[K, C]`` float64: row ``k`` is client ``k``'s class shares (zeros for an empty client)."""
    counts = partition.label_counts(labels, parts, num_classes=num_classes).astype(np.float64)
    sizes = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, sizes, out=np.zeros_like(counts), where=sizes > 0)


def render_label_shares(
    shares,
    *,
    title: str = "",
    class_names=None,
    width_px: int = WIDTH_PX,
    height_px: int = HEIGHT_PX,
    dpi: int = DPI,
) -> bytes:
    """A stacked bar chart of ``shares`` (``[K, C]``, rows summing to 1 or 0) as PNG bytes.

    Drawn on a standalone ``matplotlib.figure.Figure`` (no pyplot, no global
    state), ``width_px`` x ``height_px`` pixels; the PNG carries no date, so
    equal inputs give equal bytes.
    """
    s = validate.array("shares", shares, ndim=2).astype(np.float64)
    validate.positive_int("width_px", width_px)
    validate.positive_int("height_px", height_px)
    validate.positive_int("dpi", dpi)
    k, c = s.shape
    names = [str(i) for i in range(c)] if class_names is None else [str(n) for n in class_names]
    if len(names) != c:
        raise ValueError(f"class_names has {len(names)} names: shares has {c} classes")
    from fedlab.plots import pixel_figure, png_bytes

    fig = pixel_figure(width_px, height_px, dpi=dpi)
    ax = fig.add_axes((0.07, 0.16, 0.80, 0.72))
    x = np.arange(k)
    bottom = np.zeros(k)
    for j in range(c):
        ax.bar(
            x,
            s[:, j],
            bottom=bottom,
            width=0.85,
            color=CLASS_COLORS[j % len(CLASS_COLORS)],
            hatch=CLASS_HATCHES[(j // len(CLASS_COLORS)) % len(CLASS_HATCHES)],
            edgecolor="white",
            linewidth=0.4,
        )
        bottom += s[:, j]
    ax.set_xlim(-0.6, k - 0.4)
    ax.set_ylim(0, 1)
    ax.set_xlabel("client", fontsize=9)
    ax.set_ylabel("share of its data", fontsize=9)
    step = max(1, int(np.ceil(k / 20)))
    ax.set_xticks(x[::step])
    ax.tick_params(labelsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    if title:
        ax.set_title(title, fontsize=10)
    handles = [
        Patch(
            facecolor=CLASS_COLORS[j % len(CLASS_COLORS)],
            hatch=CLASS_HATCHES[(j // len(CLASS_COLORS)) % len(CLASS_HATCHES)],
            edgecolor="white",
            label=names[j],
        )
        for j in range(c)
    ]
    ax.legend(handles=handles, title="class", fontsize=8, title_fontsize=8, frameon=False,
              loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return png_bytes(fig, dpi=dpi)


def dirichlet_picture(labels, *, num_clients: int, alpha: float, seed: int, num_classes: int) -> tuple[bytes, dict]:
    """Split ``labels`` with ``partition.dirichlet(alpha, rng=seed)`` and draw it.

    Returns
    -------
    (bytes, dict)
        The PNG and :func:`fedlab.partition.describe` of the split.

    """
    parts = partition.dirichlet(labels, num_clients=num_clients, alpha=alpha, rng=seed)
    stats = partition.describe(labels, parts, num_classes=num_classes)
    png = render_label_shares(
        label_shares(labels, parts, num_classes=num_classes),
        title=f"Dirichlet label skew, alpha = {alpha:.3g}, {num_clients} clients",
    )
    return png, stats


def _summary(alpha: float, stats: dict) -> str:
    return (
        f"alpha = {alpha:.3g}: on average {stats['mean_classes_per_client']:.1f} classes per client; "
        f"label distance from the whole dataset (TV) mean {stats['mean_tv_distance']:.2f}, "
        f"max {stats['max_tv_distance']:.2f}; {stats['num_empty']} empty clients"
    )


def partition_explorer(
    labels,
    *,
    num_clients: int = 20,
    num_classes: int,
    seed: int = 0,
    alpha: float = 1.0,
    min_exponent: float = -2.0,
    max_exponent: float = 3.0,
    step: float = 0.25,
):
    """An alpha slider (log scale) above the label-mix picture of a seeded Dirichlet split.

    Parameters
    ----------
    labels
        ``[N]`` integer class labels.
    num_clients, num_classes
        ``K`` and ``C``.
    seed
        The split's seed (the same for every alpha, so only alpha changes).
    alpha
        Starting value.
    min_exponent, max_exponent, step
        The slider runs over ``10**min_exponent .. 10**max_exponent`` in steps
        of ``step`` in the exponent (one arrow-key press).

    Returns
    -------
    ipywidgets.VBox
        ``children = (slider, image, summary)``: a ``FloatLogSlider``, an
        ``Image`` (PNG, explicit width and height) and an ``HTML`` line; CSS
        classes ``fedlab-partition-explorer`` (the box),
        ``fedlab-partition-picture`` and ``fedlab-partition-summary``.

    """
    import ipywidgets as W

    y = validate.array("labels", labels, ndim=1, dtype_kind="iu")
    validate.positive_int("num_clients", num_clients)
    validate.positive_int("num_classes", num_classes)
    validate.positive_float("alpha", alpha)
    slider = W.FloatLogSlider(
        value=alpha,
        base=10,
        min=min_exponent,
        max=max_exponent,
        step=step,
        description="alpha",
        readout_format=".3g",
        continuous_update=False,
        style={"description_width": "initial"},
        layout=W.Layout(width="480px"),
        tooltip="Dirichlet concentration: small = few classes per client, large = IID",
    )
    image = W.Image(format="png", width=WIDTH_PX, height=HEIGHT_PX)
    summary = W.HTML()

    def redraw(value: float) -> None:
        png, stats = dirichlet_picture(y, num_clients=num_clients, alpha=value, seed=seed, num_classes=num_classes)
        image.value = png
        summary.value = _summary(value, stats)

    slider.observe(lambda change: redraw(change["new"]), names="value")
    redraw(slider.value)
    image.add_class("fedlab-partition-picture")
    summary.add_class("fedlab-partition-summary")
    box = W.VBox([slider, image, summary])
    box.add_class("fedlab-partition-explorer")
    return box
