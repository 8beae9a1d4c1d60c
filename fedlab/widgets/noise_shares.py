"""Who holds the noise (lesson 13): each phone's Skellam share, the noise in the sum the server sees, and epsilon.

One round of distributed DP (:mod:`fedlab.distributed_dp`) with a cohort of phones. Two sliders: the plan's
**minimum of survivors** (each phone adds ``mu = (z c s)^2 / (min_survivors - 1)``) and how many phones **drop**
before sending their masked input. Two charts:

1. **the noise each party holds**: one bar per phone, the standard deviation of the share it added (it knows its
   own share, nobody else's), a dropped phone's bar hatched and grey (its share left with it); beside them the
   noise in the **sum the server unmasks** (the survivors' shares) and the noise the **plan promised** (the
   central ``z c``), all in the update's units (the integer domain divided by the scale);
2. **epsilon as phones drop**: the plan's epsilon over the training schedule for every number of survivors
   (:func:`fedlab.distributed_dp.epsilon`), the current one marked; below the plan's minimum the server
   **refuses** (:class:`fedlab.distributed_dp.NoiseShortfallError`), shaded.

A readout writes every number out. Split like the other widgets: :class:`NoiseShareModel` is pure and cached (a
plan and an epsilon curve per minimum), so tests need no browser; :class:`NoiseShareWidget` /
:func:`noise_shares` is the ipywidgets front end. The charts are PNG (matplotlib), Okabe-Ito colours always with a
hatch, marker or word; every control takes the keyboard.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import ipywidgets as W
import numpy as np

from fedlab import distributed_dp, validate

BARS_W, BARS_H, EPS_W, EPS_H, DPI = 520, 300, 380, 300, 100


@dataclass(frozen=True)
class NoiseView:
    """One position of the sliders.

    Attributes
    ----------
    min_survivors, dropped, survivors
        The plan's minimum, the phones that dropped and those whose share is in the sum.
    share_std
        Standard deviation of one phone's share, in the update's units (``sqrt(mu) / s``).
    sum_std
        Of the noise in the sum the server unmasks: ``sqrt(survivors) * share_std``.
    counted_std
        Of the noise the accountant counts for one phone (the *other* survivors' shares).
    planned_std
        The central noise the plan promised, ``z c``.
    epsilon
        The plan's epsilon with this many survivors (``inf`` without noise).
    released
        Whether :func:`fedlab.distributed_dp.decode` releases the sum (survivors >= the minimum).
    bits, bytes_per_phone
        The ring width and one phone's masked vector in bytes.

    """

    min_survivors: int
    dropped: int
    survivors: int
    share_std: float
    sum_std: float
    counted_std: float
    planned_std: float
    epsilon: float
    released: bool
    bits: int
    bytes_per_phone: int


class NoiseShareModel:
    """Plans and epsilon curves of one round's distributed DP, for every minimum of survivors (cached).

    Parameters
    ----------
    cohort
        The phones asked to take part (at least 3).
    dim, clip_norm, noise_multiplier, bits
        As :func:`fedlab.distributed_dp.make_plan` (``noise_multiplier > 0``).
    q, rounds, delta
        The training schedule the epsilon is for (sampling rate, rounds, delta).

    """

    def __init__(self, *, cohort: int, dim: int, clip_norm: float, noise_multiplier: float, bits: int, q: float,
                 rounds: int, delta: float) -> None:  # fmt: skip
        self.cohort = validate.positive_int("cohort", cohort, minimum=3)
        if not (isinstance(noise_multiplier, int | float) and noise_multiplier > 0):
            raise ValueError(f"noise_multiplier={noise_multiplier!r}: must be a number > 0 (the widget shows noise)")
        self.kw = dict(dim=dim, clip_norm=clip_norm, noise_multiplier=float(noise_multiplier), cohort=self.cohort,
                       bits=bits)  # fmt: skip
        self.schedule = dict(q=q, rounds=rounds, delta=delta)
        self.plan(2)  # checks every argument once, with a clear error
        self._curves: dict[int, np.ndarray] = {}

    def _check_min(self, min_survivors) -> int:
        if (
            isinstance(min_survivors, bool)
            or not isinstance(min_survivors, int | np.integer)
            or not (2 <= min_survivors <= self.cohort)
        ):
            raise ValueError(f"min_survivors={min_survivors!r}: must be an int in [2, cohort={self.cohort}]")
        return int(min_survivors)

    def plan(self, min_survivors: int) -> distributed_dp.Plan:
        """The round's plan for this minimum (:func:`fedlab.distributed_dp.make_plan`)."""
        return distributed_dp.make_plan(min_survivors=self._check_min(min_survivors), **self.kw)

    def epsilon_curve(self, min_survivors: int) -> np.ndarray:
        """``[cohort + 1]``: epsilon with ``0 .. cohort`` survivors (``inf`` for 0 and 1: no other share)."""
        m = self._check_min(min_survivors)
        if m not in self._curves:
            plan = self.plan(m)
            eps = [distributed_dp.epsilon(plan, survivors=n, **self.schedule) for n in range(self.cohort + 1)]
            self._curves[m] = np.array(eps)
        return self._curves[m]

    def cached(self) -> int:
        """How many minimums have their epsilon curve computed."""
        return len(self._curves)

    def view(self, *, min_survivors: int, dropped: int) -> NoiseView:
        """What the widget shows when ``dropped`` phones drop from a round planned for ``min_survivors``."""
        m = self._check_min(min_survivors)
        if isinstance(dropped, bool) or not isinstance(dropped, int | np.integer) or not 0 <= dropped < self.cohort:
            raise ValueError(f"dropped={dropped!r}: must be an int in [0, cohort - 1 = {self.cohort - 1}]")
        plan = self.plan(m)
        n = self.cohort - int(dropped)
        share = math.sqrt(plan.local_variance) / plan.scale
        return NoiseView(
            min_survivors=m, dropped=int(dropped), survivors=n, share_std=share, sum_std=math.sqrt(n) * share,
            counted_std=math.sqrt(plan.noise_shares(n)) * share, planned_std=plan.noise_multiplier * plan.clip_norm,
            epsilon=float(self.epsilon_curve(m)[n]), released=n >= m, bits=plan.bits,
            bytes_per_phone=plan.bytes_per_phone,
        )  # fmt: skip


def _figure(w, h):
    from fedlab.plots import pixel_figure

    return pixel_figure(w, h, dpi=DPI)


def _png(fig) -> bytes:
    from fedlab.plots import png_bytes

    return png_bytes(fig, dpi=DPI)


def render_bars(model: NoiseShareModel, view: NoiseView) -> bytes:
    """One bar per phone (its share's std), then the sum the server sees and the plan's promise."""
    from fedlab.plots import OKABE_ITO

    fig = _figure(BARS_W, BARS_H)
    ax = fig.add_axes((0.1, 0.17, 0.87, 0.68))
    n = model.cohort
    for k in range(n):
        gone = k >= n - view.dropped
        ax.bar(k, view.share_std, color="0.85" if gone else OKABE_ITO["sky_blue"], hatch="//" if gone else None,
               edgecolor="0.5" if gone else OKABE_ITO["blue"], width=0.8)  # fmt: skip
    ax.bar(n + 2, view.sum_std, width=1.8, color=OKABE_ITO["orange"] if view.released else "0.85",
           hatch=None if view.released else "xx", edgecolor="black")  # fmt: skip
    ax.bar(n + 4.5, view.planned_std, width=1.8, color="white", edgecolor="black", hatch="..")
    ax.axhline(view.planned_std, color="black", lw=0.8, ls=":")
    ax.set_xticks([0, n - 1, n + 2, n + 4.5], ["phone 1", f"{n}", "sum\n(server)", "plan\n(z c)"], fontsize=7)
    ax.set_ylabel("noise std, update units", fontsize=8)
    ax.tick_params(labelsize=7)
    state = "released" if view.released else "REFUSED (below the plan)"
    ax.set_title(
        f"each phone's share ({view.dropped} dropped: hatched)\nthe sum the server unmasks: {state}", fontsize=9
    )
    return _png(fig)


def render_epsilon(model: NoiseShareModel, view: NoiseView) -> bytes:
    """Epsilon against the number of survivors, the plan's minimum and the current point marked."""
    from matplotlib.ticker import MaxNLocator

    from fedlab.plots import OKABE_ITO

    fig = _figure(EPS_W, EPS_H)
    ax = fig.add_axes((0.17, 0.16, 0.78, 0.72))
    eps = model.epsilon_curve(view.min_survivors)
    n = np.arange(2, model.cohort + 1)
    ax.semilogy(n, eps[2:], ".-", color=OKABE_ITO["blue"], label="epsilon with n survivors")
    ax.axvspan(1.5, view.min_survivors - 0.5, color="0.9", zorder=0, label="refused (below the plan)")
    ax.plot([view.survivors], [view.epsilon], "D", ms=10, mfc="none", mec=OKABE_ITO["vermillion"], mew=2,
            label=f"now: {view.survivors} survive")  # fmt: skip
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("phones whose share is in the sum", fontsize=8)
    ax.set_ylabel("epsilon over the schedule", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(f"plan: at least {view.min_survivors} of {model.cohort}", fontsize=9)
    return _png(fig)


def readout(model: NoiseShareModel, view: NoiseView) -> str:
    """Every number of both charts, in words."""
    verdict = (
        "<b>released</b>" if view.released else
        f"<b>refused</b>: {view.survivors} &lt; {view.min_survivors} survivors, less noise than the accountant assumed"
    )  # fmt: skip
    eps = "no guarantee" if math.isinf(view.epsilon) else f"{view.epsilon:,.2f}"
    return (
        "<div style='line-height:1.6'>"
        f"<span class='fedlab-noise-phones'>each of {model.cohort} phones adds a share of std <b>{view.share_std:.3f}"
        f"</b> (its own; it never leaves the phone unmasked); {view.dropped} dropped and took theirs along</span><br>"
        f"<span class='fedlab-noise-server'>the server unmasks the sum of {view.survivors}: noise std "
        f"<b>{view.sum_std:.3f}</b>; for one phone the others' shares count, std {view.counted_std:.3f}, against "
        f"the planned {view.planned_std:.3f} - {verdict}</span><br>"
        f"<span class='fedlab-noise-epsilon'>epsilon with {view.survivors} survivors: <b>{eps}</b>; "
        f"{view.bits}-bit ring, {view.bytes_per_phone} bytes per phone</span></div>"
    )


class NoiseShareWidget(W.VBox):
    """The widget (an ``ipywidgets.VBox``); see the module docstring.

    Attributes
    ----------
    model
        The :class:`NoiseShareModel`.
    controls
        ``{"min_survivors": IntSlider, "dropped": IntSlider}``.
    bars, epsilon_chart
        ``ipywidgets.Image`` (PNG, explicit sizes).
    readout
        ``ipywidgets.HTML``.
    view
        The :class:`NoiseView` on display.
    last_update_seconds
        Kernel-side time of the last refresh.

    """

    def __init__(self, *, model: NoiseShareModel, min_survivors: int, dropped: int = 0) -> None:
        self.model = model
        first = model.view(min_survivors=min_survivors, dropped=dropped)
        style = {"description_width": "200px"}
        self.controls = {
            "min_survivors": W.IntSlider(value=first.min_survivors, min=2, max=model.cohort, continuous_update=False,
                                         description="plan: min. survivors", style=style,
                                         layout=W.Layout(width="460px")),
            "dropped": W.IntSlider(value=first.dropped, min=0, max=model.cohort - 1, continuous_update=False,
                                   description="phones that drop", style=style, layout=W.Layout(width="460px")),
        }  # fmt: skip
        self.bars = W.Image(format="png", width=BARS_W, height=BARS_H)
        self.bars.add_class("fedlab-noise-bars")
        self.epsilon_chart = W.Image(format="png", width=EPS_W, height=EPS_H)
        self.epsilon_chart.add_class("fedlab-noise-eps")
        self.readout = W.HTML()
        self.readout.add_class("fedlab-noise-readout")
        self.view: NoiseView | None = None
        self.last_update_seconds = 0.0
        title = W.HTML(
            "<h4>Who holds the noise: each phone's share, the sum the server sees, epsilon as they drop</h4>"
        )
        super().__init__([title, self.controls["min_survivors"], self.controls["dropped"], self.readout,
                          W.HBox([self.bars, self.epsilon_chart])])  # fmt: skip
        self.add_class("fedlab-noise")
        for w in self.controls.values():
            w.observe(lambda _c: self.refresh(), names="value")
        self.refresh()

    def refresh(self) -> NoiseView:
        """Recompute (cached per minimum) and redraw both charts and the readout."""
        t0 = time.perf_counter()
        view = self.model.view(min_survivors=int(self.controls["min_survivors"].value),
                               dropped=int(self.controls["dropped"].value))  # fmt: skip
        self.bars.value = render_bars(self.model, view)
        self.epsilon_chart.value = render_epsilon(self.model, view)
        self.readout.value = readout(self.model, view)
        self.view = view
        self.last_update_seconds = time.perf_counter() - t0
        return view


def noise_shares(*, model: NoiseShareModel, min_survivors: int, dropped: int = 0) -> NoiseShareWidget:
    """The noise-share widget: an ``ipywidgets`` container to display in a notebook."""
    return NoiseShareWidget(model=model, min_survivors=min_survivors, dropped=dropped)


__all__ = ["NoiseShareModel", "NoiseShareWidget", "NoiseView", "noise_shares", "readout", "render_bars",
           "render_epsilon"]  # fmt: skip
