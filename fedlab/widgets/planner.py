"""The privacy budget planner (lesson 10): a target epsilon and a bandwidth budget in, the best accuracy out.

Two controls: the **target epsilon** (at a fixed ``delta`` = 1e-5, user level) and the **bytes each
user may send over the whole training** (the protocol's uplink messages). The widget searches a
grid of precomputed runs of the capstone pipeline (:func:`fedlab.capstone.run`: Poisson sampling,
10% dropouts during secure aggregation, clipping, fixed-point secure aggregation, central Gaussian
noise) over

- the expected number of users per round ``q N``,
- the noise multiplier ``z``,
- the fixed-point width ``bits`` of secure aggregation,
- the number of rounds,

keeps the configurations whose epsilon (computed live by :func:`fedlab.capstone.epsilon`: the
sampled Gaussian accountant plus the refusal term, so a cell whose refusal term alone exceeds
``delta`` - few users a round, many rounds - has ``epsilon = inf`` and never fits) and mean bytes
per user fit, and shows the best test accuracy
(mean over seeds), the configuration that gives it, and a chart of the best accuracy against the
target epsilon. When nothing fits it says so.

The grid (``datasets/capstone_planner.json``, datasheet ``datasets/capstone_planner.md``) is made by
:func:`make_grid` (``python datasets/make_capstone_planner.py``); the runs use the protocol's exact
plain equivalent (``secure=False``: the same fixed-point sum, the bytes counted from the messages;
``tests/test_capstone.py`` proves both equal the real protocol's).

Split like the other widgets: :func:`load_grid`, :class:`PlannerModel` and :meth:`PlannerModel.plan`
are pure and cached (tests and the benchmark need no browser); :class:`PlannerWidget` /
:func:`budget_planner` is the ipywidgets front end. Both sliders take the keyboard; the chart uses
Okabe-Ito colours with distinct markers and line styles, and every number is also written out.
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as W
import numpy as np

from fedlab import capstone, data, models, partition

GRID_FILE = "capstone_planner.json"
GRID_SHA256 = "3673b742de7b5e8e00d1256fc0863322a0c12b3517a0546179aba43e866ef917"
"""sha256 of the shipped ``datasets/capstone_planner.json`` (checked on load)."""

GRID_CONFIG: dict = {
    "dataset": "health",
    "model": {"kind": "logreg", "in_features": 8, "num_classes": 2},
    "clip_norm": 0.5,
    "dropout_rate": 0.1,
    "epochs": 1,
    "batch_size": 10,
    "lr": 0.1,
    "server_lr": 1.0,
    "delta": 1e-5,
    "seeds": [0, 1],
    "clients_per_round": [10, 20, 50],
    "noise_multiplier": [0.0, 0.5, 0.8, 1.2, 2.0, 3.0],
    "bits": [8, 12, 16, 32],
    "rounds": [10, 25, 50, 100, 200, 400],
}
"""What :func:`make_grid` trains: the health app (1,200 users, one client per user, each user's last 20%
of days held out as the test set; logistic regression as in lesson 01), for every seed, expected users per
round ``q N``, noise multiplier and ring width, one run of ``max(rounds)`` rounds measured after each
number of ``rounds``."""

EPSILON_OPTIONS: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, math.inf)
BUDGET_OPTIONS: tuple[int, ...] = (100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000)
CHART_W, CHART_H, CHART_DPI = 560, 300, 100


# ----------------------------------------------------------------------------
# the grid: how it is made, and how it is read
# ----------------------------------------------------------------------------


def _spec(config: dict) -> models.ModelSpec:
    m = config["model"]
    return models.logreg(m["in_features"], m["num_classes"])


def _federation():
    health = data.load_health()
    train, test = data.split_by_time(health, test_fraction=0.2)
    clients = [(train.x[p], train.y[p]) for p in partition.by_user(train.user)]
    return clients, (test.x, test.y)


def run_cell(config: dict, *, seed: int, clients_per_round: int, noise_multiplier: float, bits: int) -> dict:
    """One run of the grid: test accuracy and mean uplink bytes per user after each number of ``rounds``.

    :func:`fedlab.capstone.run` with ``q = clients_per_round / N`` and the settings of ``config``,
    ``secure=False`` (the protocol's exact plain equivalent), on one torch thread.

    Returns
    -------
    dict
        ``{"accuracy": [...], "bytes_per_user": [...], "refused": int}`` (one value per entry of
        ``config["rounds"]``; ``refused`` counts the rounds the protocol refused over the whole run).

    """
    clients, test = _federation()
    spec = _spec(config)
    checkpoints = [int(r) for r in config["rounds"]]
    acc = []

    def measure(r, params):
        if r in checkpoints:
            acc.append(models.evaluate(spec, params, *test)[1])

    _, hist = capstone.run(
        spec, clients, rounds=max(checkpoints), seed=seed, q=clients_per_round / len(clients),
        clip_norm=config["clip_norm"], noise_multiplier=noise_multiplier, bits=bits,
        dropout_rate=config["dropout_rate"], epochs=config["epochs"], batch_size=config["batch_size"],
        lr=config["lr"], server_lr=config["server_lr"], secure=False, callback=measure,
    )  # fmt: skip
    return {
        "accuracy": [round(float(a), 4) for a in acc],
        "bytes_per_user": [round(hist.bytes_per_user(r), 1) for r in checkpoints],
        "refused": int(hist.refused.sum()),
    }


def make_grid(config: dict = GRID_CONFIG, *, progress=None) -> dict:
    """Train every cell of the grid (a few minutes on one core); returns the JSON-ready dict.

    ``accuracy[s][c][i][b][r]`` is seed ``s``, users per round ``c``, noise multiplier ``i``, ring
    width ``b``, rounds ``r`` (the same for ``bytes_per_user``; ``refused[s][c][i][b]``).
    ``progress(done, total)`` is called after every run.
    """
    axes = [config["seeds"], config["clients_per_round"], config["noise_multiplier"], config["bits"]]
    shape = tuple(len(a) for a in axes)
    acc = np.zeros((*shape, len(config["rounds"])))
    nbytes = np.zeros_like(acc)
    refused = np.zeros(shape, np.int64)
    total, done = int(np.prod(shape)), 0
    for idx in np.ndindex(*shape):
        seed, c, z, b = (a[i] for a, i in zip(axes, idx))
        cell = run_cell(config, seed=seed, clients_per_round=c, noise_multiplier=z, bits=b)
        acc[idx], nbytes[idx], refused[idx] = cell["accuracy"], cell["bytes_per_user"], cell["refused"]
        done += 1
        if progress is not None:
            progress(done, total)
    return {
        "about": "Lesson 10's privacy budget planner: the capstone pipeline on the health app. "
        "See datasets/capstone_planner.md.",
        "config": config,
        "accuracy": acc.round(4).tolist(),
        "bytes_per_user": nbytes.round(1).tolist(),
        "refused": refused.tolist(),
    }


def grid_bytes(grid: dict) -> bytes:
    """The file's bytes for a grid dict: sorted keys, no spaces, one trailing newline (deterministic)."""
    return (json.dumps(grid, sort_keys=True, separators=(",", ":")) + "\n").encode("ascii")


@dataclass(frozen=True, eq=False)
class PlannerGrid:
    """The precomputed grid, as arrays (``[seeds, clients_per_round, noise_multiplier, bits, rounds]``)."""

    config: dict
    clients_per_round: tuple
    noise_multipliers: tuple
    bits: tuple
    rounds: tuple
    accuracy: np.ndarray
    bytes_per_user: np.ndarray
    refused: np.ndarray

    @property
    def delta(self) -> float:
        return float(self.config["delta"])


def grid_path() -> Path:
    """Where the shipped grid lives (the datasets folder of :mod:`fedlab.data`)."""
    return data.datasets_dir() / GRID_FILE


def load_grid(path: str | Path | None = None, *, check_sha256: bool = True) -> PlannerGrid:
    """Read and check ``datasets/capstone_planner.json`` (or ``path``).

    Raises
    ------
    FileNotFoundError
        If the file is missing (with the command that regenerates it).
    ValueError
        If the shipped file does not match :data:`GRID_SHA256`, or its arrays do not fit its axes.

    """
    p = Path(path) if path is not None else grid_path()
    raw = data.read_grid(
        GRID_FILE, path, sha256=GRID_SHA256, remake="python datasets/make_capstone_planner.py", what="planner grid",
        check_sha256=check_sha256,
    )
    obj = json.loads(raw)
    cfg = obj["config"]
    acc = np.asarray(obj["accuracy"], dtype=np.float64)
    nb = np.asarray(obj["bytes_per_user"], dtype=np.float64)
    refused = np.asarray(obj["refused"], dtype=np.int64)
    shape = tuple(len(cfg[k]) for k in ("seeds", "clients_per_round", "noise_multiplier", "bits"))
    if acc.shape != (*shape, len(cfg["rounds"])) or nb.shape != acc.shape or refused.shape != shape:
        raise ValueError(
            f"{p}: accuracy has shape {acc.shape}, bytes_per_user {nb.shape} and refused {refused.shape}; "
            f"the axes need {(*shape, len(cfg['rounds']))}"
        )
    return PlannerGrid(
        cfg, tuple(int(c) for c in cfg["clients_per_round"]), tuple(float(z) for z in cfg["noise_multiplier"]),
        tuple(int(b) for b in cfg["bits"]), tuple(int(r) for r in cfg["rounds"]), acc, nb, refused,
    )  # fmt: skip


# ----------------------------------------------------------------------------
# the pure computation
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """The best configuration of the grid for a target epsilon and a bytes-per-user budget.

    ``accuracy`` is ``None`` when no configuration fits. ``accuracy_std`` is over the grid's seeds;
    ``candidates`` counts the configurations that fit (of ``total``).
    """

    target_epsilon: float
    budget_bytes: float
    accuracy: float | None
    accuracy_std: float | None
    clients_per_round: int | None
    noise_multiplier: float | None
    bits: int | None
    rounds: int | None
    epsilon: float | None
    bytes_per_user: float | None
    candidates: int
    total: int
    seconds: float = 0.0

    @property
    def fits(self) -> bool:
        return self.accuracy is not None


def _check_target(name: str, value, *, allow_inf: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating) or math.isnan(value):
        raise ValueError(f"{name}={value!r}: must be a number > 0 (math.inf for no limit)")
    v = float(value)
    if not v > 0 or (math.isinf(v) and not allow_inf):
        raise ValueError(f"{name}={value!r}: must be a number > 0 (math.inf for no limit)")
    return v


class PlannerModel:
    """The grid and the accountant together, with caches (no widgets).

    Every configuration's epsilon (:func:`fedlab.capstone.epsilon` per ``(q, z)``, read at each
    number of rounds) and its mean accuracy and bytes are computed once when the model is built
    (well under a second); :meth:`plan` is then a masked arg-max.
    """

    def __init__(self, *, grid: PlannerGrid | None = None, num_users: int = 1200) -> None:
        self.grid = grid if grid is not None else load_grid()
        self.num_users = int(num_users)
        g = self.grid
        self.delta = g.delta
        eps = np.zeros((len(g.clients_per_round), len(g.noise_multipliers), len(g.rounds)))
        for c, k in enumerate(g.clients_per_round):
            for i, z in enumerate(g.noise_multipliers):
                for r, t in enumerate(g.rounds):
                    eps[c, i, r] = capstone.epsilon(
                        num_users=self.num_users, q=k / self.num_users, noise_multiplier=z, rounds=t,
                        dropout_rate=float(g.config["dropout_rate"]), delta=self.delta,
                    )  # fmt: skip
        self.epsilon = eps[:, :, None, :] * np.ones((1, 1, len(g.bits), 1))
        self.accuracy = g.accuracy.mean(0)
        self.accuracy_std = g.accuracy.std(0, ddof=1) if g.accuracy.shape[0] > 1 else np.zeros_like(self.accuracy)
        self.bytes = g.bytes_per_user.mean(0)
        self._plans: OrderedDict = OrderedDict()

    def plan(self, target_epsilon: float, budget_bytes: float) -> Plan:
        """The best mean accuracy with ``epsilon <= target_epsilon`` and mean bytes per user ``<= budget_bytes``."""
        e = _check_target("target_epsilon", target_epsilon)
        b = _check_target("budget_bytes", budget_bytes)
        key = (e, b)
        if key in self._plans:
            self._plans.move_to_end(key)
            return self._plans[key]
        t0 = time.perf_counter()
        ok = (self.epsilon <= e) & (self.bytes <= b)
        total = int(ok.size)
        if not ok.any():
            p = Plan(e, b, None, None, None, None, None, None, None, None, 0, total, time.perf_counter() - t0)
        else:
            score = np.where(ok, self.accuracy, -np.inf)
            best = np.unravel_index(int(np.argmax(score)), score.shape)  # first best: fewest users, least noise...
            c, i, k, r = best
            g = self.grid
            p = Plan(
                e, b, float(self.accuracy[best]), float(self.accuracy_std[best]), g.clients_per_round[c],
                g.noise_multipliers[i], g.bits[k], g.rounds[r], float(self.epsilon[best]), float(self.bytes[best]),
                int(ok.sum()), total, time.perf_counter() - t0,
            )  # fmt: skip
        self._plans[key] = p
        return p

    def curve(self, budget_bytes: float) -> np.ndarray:
        """Best accuracy for every target of :data:`EPSILON_OPTIONS` under this budget (``nan``: nothing fits)."""
        return np.array([np.nan if not (p := self.plan(e, budget_bytes)).fits else p.accuracy for e in EPSILON_OPTIONS])


# ----------------------------------------------------------------------------
# drawing
# ----------------------------------------------------------------------------


def _fmt_bytes(b: float) -> str:
    if math.isinf(b):
        return "no limit"
    return f"{b / 1000:g} kB" if b >= 1000 else f"{b:g} B"


def _fmt_eps(e: float) -> str:
    return "no limit (&infin;)" if math.isinf(e) else f"{e:g}"


def render_chart(model: PlannerModel, target_epsilon: float, budget_bytes: float) -> bytes:
    """Best accuracy against the target epsilon: under this budget (blue, solid) and with no limit (orange, dashed)."""
    from fedlab.plots import OKABE_ITO, pixel_figure, png_bytes

    fig = pixel_figure(CHART_W, CHART_H, dpi=CHART_DPI)
    ax = fig.add_axes((0.11, 0.17, 0.62, 0.72))
    x = np.arange(len(EPSILON_OPTIONS))
    for budget, color, marker, ls, label in (
        (math.inf, OKABE_ITO["orange"], "s", "--", "no bandwidth limit"),
        (budget_bytes, OKABE_ITO["blue"], "o", "-", f"budget {_fmt_bytes(budget_bytes)}/user"),
    ):
        y = model.curve(budget)
        ax.plot(x, y, color=color, marker=marker, ls=ls, lw=1.8, ms=6, label=label)
    cur = EPSILON_OPTIONS.index(target_epsilon) if target_epsilon in EPSILON_OPTIONS else None
    p = model.plan(target_epsilon, budget_bytes)
    if cur is not None and p.fits:
        ax.plot([cur], [p.accuracy], marker="o", ms=14, mfc="none", mec="black", mew=2)
    elif cur is not None:
        ax.axvline(cur, color="black", ls=":", lw=1.5)
        ax.text(cur, 0.655, " nothing fits", fontsize=8, rotation=90, va="bottom")
    ax.set_xticks(x, ["none" if math.isinf(e) else f"{e:g}" for e in EPSILON_OPTIONS])
    ax.set_ylim(0.65, 0.72)
    ax.set_xlabel(f"target epsilon (delta = {model.delta:g})", fontsize=8)
    ax.set_ylabel("best test accuracy", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_title("Best accuracy the grid offers (mean of seeds); ringed: your plan", fontsize=9)
    return png_bytes(fig, dpi=CHART_DPI)


def _readout(p: Plan, delta: float) -> str:
    head = (
        f"target <b>&epsilon; &le; {_fmt_eps(p.target_epsilon)}</b> at &delta; = {delta:g} (one user's whole data), "
        f"<b>&le; {_fmt_bytes(p.budget_bytes)}</b> sent per user over the training"
    )
    if not p.fits:
        body = (
            "<span class='fedlab-planner-best' style='font-size:1.2em'><b>No configuration fits</b></span>: "
            f"none of the {p.total} precomputed runs is that private within that bandwidth. "
            "Raise the budget or the target epsilon."
        )
    else:
        body = (
            f"<span class='fedlab-planner-best' style='font-size:1.2em'><b>best accuracy {p.accuracy:.3f}</b>"
            f"</span> &plusmn; {p.accuracy_std:.3f} (sd over seeds)<br>"
            f"<span class='fedlab-planner-config'>with about {p.clients_per_round} users a round, noise multiplier "
            f"z = {p.noise_multiplier:g}, {p.bits}-bit secure aggregation, {p.rounds} rounds</span><br>"
            f"it spends &epsilon; = {'&infin; (no guarantee)' if math.isinf(p.epsilon) else f'{p.epsilon:.2f}'} "
            f"and {p.bytes_per_user:,.0f} bytes per user; {p.candidates} of {p.total} runs fit"
        )
    return "<div style='line-height:1.6'>" + head + "<br>" + body + "</div>"


# ----------------------------------------------------------------------------
# the widget
# ----------------------------------------------------------------------------


class PlannerWidget(W.VBox):
    """The budget planner (an ``ipywidgets.VBox``); see the module docstring.

    Attributes
    ----------
    model
        The :class:`PlannerModel`.
    controls
        ``{"target_epsilon", "budget_bytes"}`` -> ``SelectionSlider``.
    chart
        ``ipywidgets.Image`` (PNG, explicit size).
    readout
        ``ipywidgets.HTML``: the plan in words and numbers.
    plan
        The :class:`Plan` on display.
    last_update_seconds
        Kernel-side time of the last refresh.

    """

    def __init__(self, *, model: PlannerModel | None = None, target_epsilon: float = 4.0,
                 budget_bytes: float = 10_000) -> None:  # fmt: skip
        self.model = model if model is not None else PlannerModel()
        if target_epsilon not in EPSILON_OPTIONS:
            raise ValueError(f"target_epsilon={target_epsilon!r}: the planner offers {list(EPSILON_OPTIONS)}")
        if budget_bytes not in BUDGET_OPTIONS:
            raise ValueError(f"budget_bytes={budget_bytes!r}: the planner offers {list(BUDGET_OPTIONS)}")
        style, layout = {"description_width": "190px"}, W.Layout(width="480px")
        self.controls = {
            "target_epsilon": W.SelectionSlider(
                options=[("none" if math.isinf(e) else f"{e:g}", e) for e in EPSILON_OPTIONS], value=target_epsilon,
                description="target epsilon", continuous_update=False, style=style, layout=layout,
            ),
            "budget_bytes": W.SelectionSlider(
                options=[(_fmt_bytes(b), b) for b in BUDGET_OPTIONS], value=budget_bytes,
                description="bytes per user (training)", continuous_update=False, style=style, layout=layout,
            ),
        }  # fmt: skip
        self.chart = W.Image(format="png", width=CHART_W, height=CHART_H)
        self.chart.add_class("fedlab-planner-chart")
        self.readout = W.HTML()
        self.readout.add_class("fedlab-planner-readout")
        self.plan: Plan | None = None
        self.last_update_seconds = 0.0
        self._charts: OrderedDict = OrderedDict()
        title = W.HTML(
            f"<h4>Privacy budget planner: the health app with every layer on (&delta; = {self.model.delta:g})</h4>"
        )
        super().__init__([title, *self.controls.values(), self.readout, self.chart])
        self.add_class("fedlab-planner")
        for w in self.controls.values():
            w.observe(self._on_change, names="value")
        self.refresh()

    def _on_change(self, _change) -> None:
        self.refresh()

    def refresh(self) -> Plan:
        """Compute (or fetch) the plan of the current controls and show it."""
        t0 = time.perf_counter()
        e, b = self.controls["target_epsilon"].value, self.controls["budget_bytes"].value
        p = self.model.plan(e, b)
        if (e, b) not in self._charts:
            self._charts[e, b] = render_chart(self.model, e, b)
            while len(self._charts) > 128:
                self._charts.popitem(last=False)
        self.chart.value = self._charts[e, b]
        self.readout.value = _readout(p, self.model.delta)
        self.plan = p
        self.last_update_seconds = time.perf_counter() - t0
        return p


def budget_planner(
    *, model: PlannerModel | None = None, target_epsilon: float = 4.0, budget_bytes: float = 10_000
) -> PlannerWidget:
    """The privacy budget planner: an ``ipywidgets`` container to display in a notebook.

    Parameters
    ----------
    model
        An existing :class:`PlannerModel` (default: the shipped grid).
    target_epsilon, budget_bytes
        Starting positions (values of :data:`EPSILON_OPTIONS` and :data:`BUDGET_OPTIONS`).

    """
    return PlannerWidget(model=model, target_epsilon=target_epsilon, budget_bytes=budget_bytes)


__all__ = [
    "BUDGET_OPTIONS",
    "EPSILON_OPTIONS",
    "GRID_CONFIG",
    "Plan",
    "PlannerGrid",
    "PlannerModel",
    "PlannerWidget",
    "budget_planner",
    "grid_bytes",
    "load_grid",
    "make_grid",
    "render_chart",
    "run_cell",
]
