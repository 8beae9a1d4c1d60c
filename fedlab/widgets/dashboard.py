"""A live monitoring dashboard for a federated run: rounds on the x axis, one panel per metric (lesson 09).

Four panels from :class:`fedlab.telemetry.Telemetry`: every client's update
norm (log scale; a non-finite update is drawn as a cross at the top), every
client's own training loss, how many sampled clients answered, and the bytes
received. One client can be *highlighted* (drawn in vermillion with markers,
the others thin grey lines), which is how a learner follows a suspect. The
pure parts are separate from the widget so tests need no browser:

- :func:`render_dashboard` - telemetry to PNG bytes (the same bytes for the
  same arguments);
- :func:`live_dashboard` - runs :func:`fedlab.telemetry.run_monitored` while
  showing a progress bar and redrawing the picture after every round, with an
  ``IntSlider`` to highlight a client (Tab to its handle, then arrow keys).

Colours: Okabe-Ito (Okabe and Ito 2008); the highlighted client also differs
by marker and line width, so nothing is told by colour alone.
"""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import MaxNLocator

from fedlab import telemetry, validate
from fedlab.plots import OKABE_ITO

WIDTH_PX, HEIGHT_PX, DPI = 900, 520, 100
HIGHLIGHT = OKABE_ITO["vermillion"]
OTHERS = "#9a9a9a"
AGGREGATE = OKABE_ITO["blue"]


def render_dashboard(
    tel: telemetry.Telemetry,
    *,
    highlight: int | None = None,
    rounds: int | None = None,
    title: str = "",
    width_px: int = WIDTH_PX,
    height_px: int = HEIGHT_PX,
    dpi: int = DPI,
) -> bytes:
    """Draw the four panels of ``tel`` as PNG bytes.

    Parameters
    ----------
    highlight
        A client index to draw in colour with markers, or ``None``.
    rounds
        The x axis runs over ``1 .. rounds`` (the planned length of a run still
        in progress); ``None`` for the rounds recorded so far.

    """
    if not isinstance(tel, telemetry.Telemetry):
        raise ValueError(f"tel is a {type(tel).__name__}: must be a fedlab.telemetry.Telemetry")
    if highlight is not None and not (0 <= int(highlight) < tel.num_clients):
        raise ValueError(f"highlight={highlight!r}: must be None or a client in [0, {tel.num_clients - 1}]")
    validate.positive_int("width_px", width_px)
    validate.positive_int("height_px", height_px)
    n_rounds = max(len(tel), 1) if rounds is None else validate.positive_int("rounds", rounds)
    from fedlab.plots import pixel_figure, png_bytes

    fig = pixel_figure(width_px, height_px, dpi=dpi)
    axes = fig.subplots(2, 2, sharex=True)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.1, top=0.9 if title else 0.94, wspace=0.18, hspace=0.25)
    r = np.arange(1, len(tel) + 1)
    norm, loss = tel.matrix("norm"), tel.matrix("loss")
    part, sent = tel.matrix("participated"), tel.matrix("bytes_up")

    def per_client(ax, m, *, log: bool):
        finite = np.where(np.isfinite(m), m, np.nan)
        if log:
            finite = np.where(finite > 0, finite, np.nan)
        top = np.nanmax(finite) if np.isfinite(finite).any() else 1.0
        others = [k for k in range(tel.num_clients) if k != highlight]
        if len(r) and others:
            ax.plot(r, finite[:, others], color=OTHERS, lw=0.8, alpha=0.7)
        if highlight is not None:
            ax.plot(r, finite[:, highlight], color=HIGHLIGHT, lw=2.2, marker="o", ms=4, label=f"client {highlight}")
        bad_r, bad_k = np.nonzero(np.isinf(m) | (np.isnan(m) & (part == 1)))
        if len(bad_r):
            ax.plot(r[bad_r], np.full(len(bad_r), top * (2 if log else 1.05)), "x", color=OKABE_ITO["black"], ms=7,
                    label="non-finite update")
        if log:
            ax.set_yscale("log")
        if highlight is not None or len(bad_r):
            ax.legend(fontsize=7, frameon=False, loc="upper right")

    per_client(axes[0, 0], norm, log=True)
    axes[0, 0].set_title("update norm per client (log)", fontsize=9)
    per_client(axes[0, 1], loss, log=False)
    axes[0, 1].set_title("each client's loss on its own data", fontsize=9)
    answered = np.nansum(part == 1, axis=1)
    sampled = np.sum(np.isfinite(part), axis=1)
    ax = axes[1, 0]
    ax.plot(r, sampled, color=OKABE_ITO["black"], ls="--", marker="s", ms=3, lw=1, label="sampled")
    ax.plot(r, answered, color=AGGREGATE, marker="o", ms=3, lw=1.5, label="answered")
    if len(tel):
        agg = tel.column("aggregated")
        ax.plot(r, agg, color=OKABE_ITO["orange"], ls=":", marker="^", ms=3, lw=1.5, label="aggregated")
    if highlight is not None:
        hit = r[part[:, highlight] == 1]
        ax.plot(hit, np.zeros(len(hit)), "|", color=HIGHLIGHT, ms=8, label=f"client {highlight} answered")
    ax.set_title("participation", fontsize=9)
    ax.set_ylim(bottom=-0.5)
    ax.legend(fontsize=7, frameon=False, loc="lower right", ncols=2)
    ax = axes[1, 1]
    ax.plot(r, np.nansum(sent, axis=1) / 1e3, color=AGGREGATE, marker="o", ms=3, lw=1.5)
    ax.set_title("kB received per round", fontsize=9)
    ax.set_ylim(bottom=0)
    for a in axes.ravel():
        a.set_xlim(0.5, n_rounds + 0.5)
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.grid(alpha=0.3)
        a.tick_params(labelsize=8)
        a.spines[["top", "right"]].set_visible(False)
    for a in axes[1]:
        a.set_xlabel("round", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return png_bytes(fig, dpi=dpi)


def _summary(tel: telemetry.Telemetry, highlight: int, rounds: int) -> str:
    if not len(tel):
        return f"round 0 of {rounds}"
    last = tel.rounds[-1]
    mine = [c for c in tel.clients if c.client == highlight and c.participated]
    bad = len(tel.nonfinite())
    acc = "" if np.isnan(last.test_accuracy) else f"; test accuracy {last.test_accuracy:.3f}"
    who = (
        f"client {highlight}: answered {len(mine)} times, last norm {mine[-1].norm:.3g}, last loss {mine[-1].loss:.3f}"
        if mine
        else f"client {highlight}: no update yet"
    )
    return f"round {last.round} of {rounds}{acc}; {bad} non-finite updates dropped. {who}"


def live_dashboard(spec, clients, *, rounds: int, seed: int, highlight: int = 0, show: bool = True, **run_kwargs):
    """Run :func:`fedlab.telemetry.run_monitored` while a dashboard shows its telemetry round by round.

    The widget is displayed first (``show=True``), then the run starts: after
    each round the progress bar advances and the picture is redrawn. The
    slider highlights a client; it keeps working after the run.

    Returns
    -------
    (params, telemetry, box)
        ``box`` is an ``ipywidgets.VBox`` with CSS class
        ``fedlab-dashboard`` holding the slider (``fedlab-dashboard-client``),
        the progress bar (``fedlab-dashboard-progress``), the ``Image``
        (``fedlab-dashboard-picture``, explicit width and height) and a text
        line (``fedlab-dashboard-summary``).

    """
    import ipywidgets as W

    validate.positive_int("rounds", rounds)
    n = len(clients)
    if not 0 <= highlight < n:
        raise ValueError(f"highlight={highlight!r}: must be a client in [0, {n - 1}]")
    slider = W.IntSlider(value=highlight, min=0, max=n - 1, step=1, description="highlight client",
                         continuous_update=False, style={"description_width": "initial"},
                         layout=W.Layout(width="480px"))
    progress = W.IntProgress(value=0, min=0, max=rounds, description="round 0", bar_style="info",
                             style={"description_width": "initial"}, layout=W.Layout(width="480px"))
    image = W.Image(format="png", width=WIDTH_PX, height=HEIGHT_PX)
    summary = W.HTML()
    state = {"tel": telemetry.Telemetry(n)}

    def redraw() -> None:
        image.value = render_dashboard(state["tel"], highlight=slider.value, rounds=rounds)
        summary.value = _summary(state["tel"], slider.value, rounds)

    def on_round(tel: telemetry.Telemetry) -> None:
        state["tel"] = tel
        progress.value = len(tel)
        progress.description = f"round {len(tel)}"
        redraw()

    slider.observe(lambda change: redraw(), names="value")
    redraw()
    for w, cls in ((slider, "client"), (progress, "progress"), (image, "picture"), (summary, "summary")):
        w.add_class(f"fedlab-dashboard-{cls}")
    box = W.VBox([slider, progress, image, summary])
    box.add_class("fedlab-dashboard")
    if show:
        from IPython.display import display

        display(box)
    params, tel = telemetry.run_monitored(spec, clients, rounds=rounds, seed=seed, callback=on_round, **run_kwargs)
    state["tel"] = tel
    progress.bar_style = "success"
    progress.description = "done"
    redraw()
    return params, tel, box
