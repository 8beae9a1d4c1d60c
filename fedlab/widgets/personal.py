"""The personal-model explorer (lesson 12): is the global model good for *you*, user by user.

One dot per user: the global model's accuracy on the user's test nights (x) against their fine-tuned
personal model's (y); above the diagonal the personal model is better for that user. A slider sets
``k``, the fine-tuning steps on the phone (:func:`fedlab.personal.fine_tune`); a user box picks one user
(or the buttons jump to the user who gains or loses most), whose days are drawn below: their activity
rhythm (active minutes a day), their poor nights, and both models' predicted chance of a poor night on
the test days.

Why there is no click on a dot (decision): the charts are matplotlib figures rendered to PNG in an
``ipywidgets.Image``, which sends no click position back to the kernel, and the course adds no plotting
dependency (ipympl, plotly) for one widget. The pick is the typed user id and the gain/loss buttons.

Split like the other widgets: :class:`PersonalModel` is pure and cached (fine-tuned models and scores per
``k``, one user's view), so tests and the benchmark need no browser; :class:`PersonalExplorer` /
:func:`personal_explorer` is the ipywidgets front end. Every control takes the keyboard; the charts use
Okabe-Ito colours with distinct markers per group, and every number shown in a chart is also written out.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

import ipywidgets as W
import numpy as np
import torch

from fedlab import data, models, personal

SCATTER_W, SCATTER_H, USER_W, USER_H, DPI = 380, 330, 560, 330, 100
ACTIVE = data.HEALTH_FEATURES.index("active_minutes")


@dataclass(frozen=True)
class UserView:
    """What the explorer shows of one user at one ``k`` (all arrays in day order)."""

    user: int
    group: str
    steps: int
    train_days: np.ndarray
    test_days: np.ndarray
    active_minutes: np.ndarray
    poor_night: np.ndarray
    p_global: np.ndarray
    p_personal: np.ndarray
    accuracy_global: float
    accuracy_personal: float


class PersonalModel:
    """Fine-tuned personal models of every user for a few ``k``, their scores, and one user's view.

    Parameters
    ----------
    spec, global_params
        The global model (e.g. FedAvg's).
    train, test
        The health data split by time (:func:`fedlab.data.split_by_time`): a user's training days are what
        their phone fine-tunes on, their test days what they are scored on.
    steps
        The values of ``k`` the slider offers (ints >= 0).
    batch_size, lr, rng
        As :func:`fedlab.personal.fine_tune` (the same ``rng`` for every ``k``).

    """

    def __init__(self, spec, global_params, train, test, *, steps=(0, 5, 10, 30, 60), batch_size=10, lr=0.1, rng=0):
        self.spec, self.global_params = spec, models.check_params(spec, global_params)
        self.steps = tuple(personal.check_steps(k) for k in steps)
        if not self.steps:
            raise ValueError("steps=(): the slider needs at least one value of k")
        self.train, self.test = train, test
        self.num_users = int(max(train.user.max(), test.user.max())) + 1
        parts = [np.flatnonzero(train.user == u) for u in range(self.num_users)]
        self.clients = [(train.x[p], train.y[p]) for p in parts]
        self.group_names = tuple(train.group_names)
        self.kw = dict(batch_size=batch_size, lr=lr, rng=rng)
        self._models: OrderedDict = OrderedDict()
        self._scores: dict = {}
        self.global_scores = self._score(self.global_params, stacked=False)
        self.group_of = self.global_scores.group

    def _score(self, params, stacked):
        t = self.test
        return personal.per_user_scores(self.spec, params, t.x, t.y, t.user, num_users=self.num_users, group=t.group,
                                        stacked=stacked)  # fmt: skip

    def _check_k(self, k) -> int:
        if k not in self.steps:
            raise ValueError(f"k={k!r}: this explorer offers k in {list(self.steps)}")
        return int(k)

    def personal_params(self, k: int) -> list:
        """Stacked personal models after ``k`` steps (computed once per ``k``)."""
        k = self._check_k(k)
        if k not in self._models:
            self._models[k] = personal.fine_tune(self.spec, self.global_params, self.clients, steps=k, **self.kw)
        return self._models[k]

    def scores(self, k: int) -> personal.UserScores:
        """Every user's scores with their personal model after ``k`` steps."""
        k = self._check_k(k)
        if k not in self._scores:
            self._scores[k] = self._score(self.personal_params(k), stacked=True)
        return self._scores[k]

    def cached(self) -> int:
        """How many values of ``k`` are computed (for the benchmark: a move that computes is a fresh one)."""
        return len(self._scores)

    def extreme_user(self, k: int, *, best: bool) -> int:
        """The user (with at least ``personal.MIN_DAYS`` test days) who gains (``best``) or loses most at ``k``."""
        s = self.scores(k)
        ok = s.num_days >= personal.MIN_DAYS
        gain = np.where(ok, s.accuracy - self.global_scores.accuracy, np.nan)
        return int(np.nanargmax(gain) if best else np.nanargmin(gain))

    def user_view(self, user: int, k: int) -> UserView:
        """One user's days, rhythm and both models' predictions at ``k``."""
        user = personal.check_user(user, self.num_users)
        k = self._check_k(k)
        tr, te = self.train.user == user, self.test.user == user
        x = np.concatenate([self.train.x[tr], self.test.x[te]])
        days = np.concatenate([self.train.day[tr], self.test.day[te]])
        y = np.concatenate([self.train.y[tr], self.test.y[te]])
        mine = personal.take(self.personal_params(k), user)

        def prob(params):
            if not te.any():
                return np.zeros(0)
            with torch.no_grad():
                z = models.forward(self.spec, [torch.as_tensor(p) for p in params], torch.as_tensor(self.test.x[te]))
            return torch.softmax(z, 1)[:, 1].numpy().astype(np.float64)

        s = self.scores(k)
        g = int(self.group_of[user])
        return UserView(
            user, self.group_names[g] if g >= 0 else "-", k, self.train.day[tr], self.test.day[te],
            x[:, ACTIVE] * data.HEALTH_SCALE[ACTIVE] + data.HEALTH_CENTER[ACTIVE], np.stack([days, y], 1),
            prob(self.global_params), prob(mine), float(self.global_scores.accuracy[user]), float(s.accuracy[user]),
        )  # fmt: skip


def _figure(w, h):
    from fedlab.plots import pixel_figure

    return pixel_figure(w, h, dpi=DPI)


def _png(fig) -> bytes:
    from fedlab.plots import png_bytes

    return png_bytes(fig, dpi=DPI)


def render_scatter(model: PersonalModel, k: int, user: int) -> bytes:
    """One dot per user (>= ``personal.MIN_DAYS`` test days): global (x) against personal (y) accuracy."""
    from fedlab.plots import MARKERS, PALETTE

    fig = _figure(SCATTER_W, SCATTER_H)
    ax = fig.add_axes((0.15, 0.14, 0.8, 0.76))
    s, g = model.scores(k), model.global_scores
    ok = s.num_days >= personal.MIN_DAYS
    jitter = np.random.default_rng(0).uniform(-0.008, 0.008, (2, model.num_users))  # fixed: same dots every move
    for i, name in enumerate(model.group_names):
        m = ok & (model.group_of == i)
        ax.scatter(g.accuracy[m] + jitter[0, m], s.accuracy[m] + jitter[1, m], s=9, alpha=0.55, color=PALETTE[i],
                   marker=MARKERS[i], label=f"{name} activity", linewidths=0)  # fmt: skip
    ax.plot([0, 1], [0, 1], color="black", lw=1, ls="--")
    ax.plot([g.accuracy[user]], [s.accuracy[user]], marker="o", ms=13, mfc="none", mec="black", mew=2)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("global model: accuracy on the user's nights", fontsize=8)
    ax.set_ylabel(f"personal model (k = {k})", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="lower right", markerscale=1.5)
    ax.set_title(f"{int(ok.sum())} users; above the line: personal is better", fontsize=9)
    return _png(fig)


def render_user(view: UserView) -> bytes:
    """The user's rhythm (active minutes a day), poor nights, and both models' P(poor night) on test days."""
    from fedlab.plots import OKABE_ITO

    fig = _figure(USER_W, USER_H)
    ax = fig.add_axes((0.1, 0.14, 0.78, 0.74))
    days, poor = view.poor_night[:, 0], view.poor_night[:, 1].astype(bool)
    ax.bar(days, view.active_minutes, color=OKABE_ITO["sky_blue"], width=0.8, label="active minutes (left)")
    ax.plot(days[poor], view.active_minutes[poor], "v", color=OKABE_ITO["black"], ms=5, label="a poor night followed")
    if len(view.test_days):
        ax.axvspan(view.test_days.min() - 0.5, view.test_days.max() + 0.5, color="0.9", zorder=0)
    ax.set_xlabel("day (shaded: test days, never trained on)", fontsize=8)
    ax.set_ylabel("active minutes", fontsize=8)
    ax.tick_params(labelsize=7)
    ax2 = ax.twinx()
    ax2.plot(view.test_days, view.p_global, "o--", color=OKABE_ITO["orange"], ms=4, label="global P(poor night)")
    ax2.plot(view.test_days, view.p_personal, "s-", color=OKABE_ITO["bluish_green"], ms=4,
             label=f"personal P(poor night), k = {view.steps}")  # fmt: skip
    ax2.axhline(0.5, color="0.5", lw=0.8, ls=":")
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("predicted chance of a poor night", fontsize=8)
    ax2.tick_params(labelsize=7)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=6, loc="upper left", ncol=2, frameon=False)
    ax.set_title(f"user {view.user} ({view.group} activity)", fontsize=9)
    return _png(fig)


def _pct(a: float) -> str:
    return "-" if np.isnan(a) else f"{a:.0%}"


def readout(model: PersonalModel, view: UserView) -> str:
    """The numbers behind both charts, in words."""
    s, g = model.scores(view.steps), model.global_scores
    n_test = len(view.test_days)
    right_g = int(round(view.accuracy_global * n_test)) if n_test else 0
    right_p = int(round(view.accuracy_personal * n_test)) if n_test else 0
    return (
        "<div style='line-height:1.6'>"
        f"<span class='fedlab-personal-summary'>all users, k = {view.steps}: mean user {g.mean():.3f} &rarr; "
        f"<b>{s.mean():.3f}</b>; 10th-percentile user {g.percentile():.3f} &rarr; <b>{s.percentile():.3f}</b>; "
        f"personal better for {np.mean((s.accuracy > g.accuracy)[s.num_days >= personal.MIN_DAYS]):.0%} of users, "
        f"worse for {np.mean((s.accuracy < g.accuracy)[s.num_days >= personal.MIN_DAYS]):.0%}</span><br>"
        f"<span class='fedlab-personal-user'><b>user {view.user}</b> ({view.group} activity): "
        f"{len(view.train_days)} training days on the phone, {n_test} test nights; global model right on "
        f"{right_g} of {n_test} ({_pct(view.accuracy_global)}), personal model on <b>{right_p} of {n_test} "
        f"({_pct(view.accuracy_personal)})</b></span></div>"
    )


class PersonalExplorer(W.VBox):
    """The explorer (an ``ipywidgets.VBox``); see the module docstring.

    Attributes
    ----------
    model
        The :class:`PersonalModel`.
    controls
        ``{"k": SelectionSlider, "user": BoundedIntText}``.
    scatter, user_chart
        ``ipywidgets.Image`` (PNG, explicit sizes).
    readout
        ``ipywidgets.HTML``.
    view
        The :class:`UserView` on display.
    last_update_seconds
        Kernel-side time of the last refresh.

    """

    def __init__(self, *, model: PersonalModel, k: int | None = None, user: int | None = None) -> None:
        self.model = model
        k = model.steps[min(3, len(model.steps) - 1)] if k is None else model._check_k(k)
        user = model.extreme_user(k, best=True) if user is None else personal.check_user(user, model.num_users)
        style = {"description_width": "170px"}
        self.controls = {
            "k": W.SelectionSlider(options=[(str(s), s) for s in model.steps], value=k, continuous_update=False,
                                   description="k (steps on the phone)", style=style,
                                   layout=W.Layout(width="420px")),
            "user": W.BoundedIntText(value=user, min=0, max=model.num_users - 1, description="user id",
                                     style=style, layout=W.Layout(width="260px")),
        }  # fmt: skip
        self.best = W.Button(description="who gains most", layout=W.Layout(width="140px"))
        self.worst = W.Button(description="who loses most", layout=W.Layout(width="140px"))
        self.best.on_click(lambda _: self._jump(best=True))
        self.worst.on_click(lambda _: self._jump(best=False))
        self.scatter = W.Image(format="png", width=SCATTER_W, height=SCATTER_H)
        self.scatter.add_class("fedlab-personal-scatter")
        self.user_chart = W.Image(format="png", width=USER_W, height=USER_H)
        self.user_chart.add_class("fedlab-personal-days")
        self.readout = W.HTML()
        self.readout.add_class("fedlab-personal-readout")
        self.view: UserView | None = None
        self.last_update_seconds = 0.0
        title = W.HTML("<h4>Is the global model good for you? One dot per user</h4>")
        super().__init__([title, self.controls["k"], W.HBox([self.controls["user"], self.best, self.worst]),
                          self.readout, W.HBox([self.scatter, self.user_chart])])  # fmt: skip
        self.add_class("fedlab-personal")
        for w in self.controls.values():
            w.observe(lambda _c: self.refresh(), names="value")
        self.refresh()

    def _jump(self, *, best: bool) -> None:
        self.controls["user"].value = self.model.extreme_user(self.controls["k"].value, best=best)

    def refresh(self) -> UserView:
        """Recompute (cached per ``k``) and redraw both charts and the readout."""
        t0 = time.perf_counter()
        k, user = self.controls["k"].value, int(self.controls["user"].value)
        view = self.model.user_view(user, k)
        self.scatter.value = render_scatter(self.model, k, user)
        self.user_chart.value = render_user(view)
        self.readout.value = readout(self.model, view)
        self.view = view
        self.last_update_seconds = time.perf_counter() - t0
        return view


def personal_explorer(*, model: PersonalModel, k: int | None = None, user: int | None = None) -> PersonalExplorer:
    """The personal-model explorer: an ``ipywidgets`` container to display in a notebook.

    ``k`` defaults to the fourth offered value (30 with the default steps), ``user`` to the user who gains most.
    """
    return PersonalExplorer(model=model, k=k, user=user)


__all__ = ["PersonalExplorer", "PersonalModel", "UserView", "personal_explorer", "readout", "render_scatter",
           "render_user"]  # fmt: skip
