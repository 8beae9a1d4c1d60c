"""Small plotting helpers for the lessons: colour-blind-safe, readable without colour.

Every helper draws on a matplotlib ``Axes`` (a new figure when ``ax`` is
``None``) and returns it, so a lesson can add a title or a reference line.
Colours come from the Okabe-Ito palette (Okabe and Ito 2008, "Color Universal
Design"), which stays distinguishable under the common colour-vision
deficiencies; series also differ in marker, line style or hatching, and bars
carry their value as text, so nothing is told by colour alone.

This is the only ``fedlab`` module that imports matplotlib. The math modules
never import it; import it from a notebook (``from fedlab import plots``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

OKABE_ITO: dict[str, str] = {
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
    "black": "#000000",
}
"""The eight Okabe-Ito colours by name."""

PALETTE: tuple[str, ...] = (
    OKABE_ITO["blue"],
    OKABE_ITO["orange"],
    OKABE_ITO["bluish_green"],
    OKABE_ITO["vermillion"],
    OKABE_ITO["reddish_purple"],
    OKABE_ITO["sky_blue"],
    OKABE_ITO["black"],
)
"""The order in which series get colours (yellow left out: too pale on white)."""

MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X")
LINESTYLES: tuple[str, ...] = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 3)))
HATCHES: tuple[str, ...] = ("", "//", "..", "xx", "\\\\", "++", "oo")


def pixel_figure(width: int, height: int, *, dpi: int = 100):
    """A pyplot-free ``Figure`` of ``width`` x ``height`` pixels (Agg canvas): for widgets that send PNG charts."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig, *, dpi: int = 100) -> bytes:
    """``fig`` as PNG bytes, with no software stamp (the same chart gives the same bytes)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def _axes(ax, figsize: tuple[float, float]):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _finish(ax, *, title: str, xlabel: str, ylabel: str) -> None:
    if title:
        ax.set_title(title)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.spines[["top", "right"]].set_visible(False)


def histogram(
    values,
    *,
    bins=30,
    ax=None,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "count",
    color: str = PALETTE[0],
):
    """A histogram of ``values`` (1-D) with outlined bars; returns the ``Axes``."""
    ax = _axes(ax, (6.0, 3.2))
    ax.hist(np.asarray(values).ravel(), bins=bins, color=color, edgecolor="white", linewidth=0.6)
    _finish(ax, title=title, xlabel=xlabel, ylabel=ylabel)
    return ax


def curves(
    x,
    series: Mapping[str, Sequence[float]],
    *,
    ax=None,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    hlines: Mapping[str, float] | None = None,
    ylim: tuple[float, float] | None = None,
    markers: bool = True,
    legend: bool = True,
):
    """One line per entry of ``series`` against ``x``, each with its own colour, marker and dash.

    Parameters
    ----------
    x
        Shared x values, length ``n``.
    series
        ``{label: y values of length n}``.
    hlines
        ``{label: y}`` horizontal reference lines (e.g. a majority-class baseline), drawn grey and dotted.
    ylim
        Optional y-axis limits.
    markers
        Whether to mark every point (turn off for long series).
    legend
        Whether to draw the legend (leave it off for a single, labelled series).

    """
    ax = _axes(ax, (6.0, 3.4))
    x = np.asarray(x)
    for i, (label, y) in enumerate(series.items()):
        ax.plot(
            x,
            np.asarray(y, dtype=float),
            label=label,
            color=PALETTE[i % len(PALETTE)],
            linestyle=LINESTYLES[i % len(LINESTYLES)],
            marker=MARKERS[i % len(MARKERS)] if markers else None,
            markersize=5,
            linewidth=1.8,
        )
    for j, (label, y) in enumerate((hlines or {}).items()):
        ax.axhline(y, color="0.35", linestyle=(0, (1, 2 + j)), linewidth=1.4, label=label)
    if ylim is not None:
        ax.set_ylim(*ylim)
    _finish(ax, title=title, xlabel=xlabel, ylabel=ylabel)
    if legend:
        ax.legend(frameon=False)
    return ax


def grouped_bars(
    groups: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    ax=None,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    ylim: tuple[float, float] | None = None,
    fmt: str = "{:.3f}",
    hlines: Mapping[str, float] | None = None,
):
    """Bars for each group, one bar per entry of ``series``, hatched differently and labelled with their value.

    Parameters
    ----------
    groups
        Names along the x axis, length ``g``.
    series
        ``{label: g values}``; with one series the bars are plain.
    ylim
        Optional y-axis limits (bars of accuracies read better from ~0.5).
    fmt
        Format of the value printed on each bar (``None`` for no labels).
    hlines
        ``{label: y}`` horizontal reference lines, drawn grey and dotted.

    """
    ax = _axes(ax, (6.0, 3.4))
    k = max(len(series), 1)
    width = 0.8 / k
    pos = np.arange(len(groups), dtype=float)
    for i, (label, values) in enumerate(series.items()):
        values = np.asarray(values, dtype=float)
        bars = ax.bar(
            pos + (i - (k - 1) / 2) * width,
            values,
            width=width * 0.95,
            label=label,
            color=PALETTE[i % len(PALETTE)],
            hatch=HATCHES[i % len(HATCHES)],
            edgecolor="white",
            linewidth=0.6,
        )
        if fmt:
            ax.bar_label(bars, labels=[fmt.format(v) for v in values], padding=2, fontsize=8)
    for j, (label, y) in enumerate((hlines or {}).items()):
        ax.axhline(y, color="0.35", linestyle=(0, (1, 2 + j)), linewidth=1.4, label=label)
    ax.set_xticks(pos, list(groups))
    if ylim is not None:
        ax.set_ylim(*ylim)
    _finish(ax, title=title, xlabel=xlabel, ylabel=ylabel)
    if len(series) > 1 or hlines:
        ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax
