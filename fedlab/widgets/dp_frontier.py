"""The privacy-utility-leakage frontier (lesson 08): four sliders, and what they buy and cost together.

Move the **noise multiplier** ``z``, the **clipping norm** ``S``, the
**sampling rate** ``q`` and the number of **rounds** of DP-FedAvg
(:mod:`fedlab.dp`); the widget shows, side by side,

- the privacy guarantee ``epsilon`` at ``delta`` (computed live by the
  course's own accountant, :func:`fedlab.dp.epsilon`: a few milliseconds);
- the test **accuracy**, the **membership-inference AUC** (the
  loss-threshold attack of lesson 05) and that attack's **TPR at 0.1 % and
  1 % FPR** (as Carlini et al. 2022 report) of the model those settings train, read
  from a grid precomputed by :func:`make_grid` (``datasets/dp_frontier.json``,
  see its datasheet ``datasets/dp_frontier.md``), as the mean over seeds, with
  a chart of both against ``epsilon`` for the other settings fixed;
- an example **reconstruction**: lesson 05's leakage scene attacks one
  client's update clipped to ``S`` with Gaussian noise of standard deviation
  ``z S`` (what the server sees of a client that is alone in its round).

The federation of the grid is deliberately small (200 users holding one
digit each, :data:`GRID_CONFIG`) so that the membership attack has something
to find; with many users DP is far cheaper (the lesson's table shows the
health data with 1,200 users).

Split in two so that tests and the benchmark need no browser:

- :func:`load_grid`, :class:`FrontierModel` and :meth:`FrontierModel.point`:
  the pure computation (``FrontierSettings -> FrontierPoint``), cached;
  :func:`run_cell` and :func:`make_grid` regenerate the grid
  (``python datasets/make_dp_frontier.py``);
- :class:`FrontierWidget` / :func:`dp_frontier`: the ipywidgets front end.

Accessibility: every control is a slider that takes the keyboard (Tab to its
handle, then the arrow keys); colours are Okabe-Ito and each series also has
its own marker and line style, and every number is also written out.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as W
import numpy as np

from fedlab import attacks, data, dp, models
from fedlab.widgets import leakage

GRID_FILE = "dp_frontier.json"
GRID_SHA256 = "7c9ba3f4e41785c031254cd365ec5baafae38673cd1afbf63fa76800ed48c271"
"""sha256 of the shipped ``datasets/dp_frontier.json`` (checked on load, like :mod:`fedlab.data`)."""

GRID_CONFIG: dict = {
    "dataset": "digits",
    "num_users": 200,
    "digits_per_user": 1,
    "model": {"kind": "mlp", "in_features": 64, "hidden": [128], "num_classes": 10, "activation": "relu"},
    "epochs": 5,
    "batch_size": 1,
    "lr": 0.2,
    "server_lr": 1.0,
    "delta": 1e-5,
    "seeds": [0, 1, 2],
    "noise_multiplier": [0.0, 0.01, 0.03, 0.1, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0],
    "clip_norm": [0.1, 0.3, 1.0, 3.0],
    "sampling_rate": [0.02, 0.05, 0.1, 0.2],
    "rounds": [25, 50, 100, 200, 400],
    "mia_fprs": [0.001, 0.01],
}
"""What :func:`make_grid` trains: for every seed, noise multiplier, clipping norm and sampling rate, one
DP-FedAvg run of ``max(rounds)`` rounds, measured after each number of ``rounds``. Seed ``s`` draws the
200 members (one digit per user) from a permutation of the 1,797 digits; the other 1,597 digits are
the non-members and the test set. The membership attack's TPR is measured at each of ``mia_fprs``
(0.1 % and 1 %): the digits have too few images for the 10,000 non-members Carlini et al. (2022) ask for,
so the smallest measurable FPR is 1/1,597 = 0.063 % and the TPR at 0.1 % FPR is decided by the one
non-member with the lowest loss (the 1 % figure by the 15 lowest)."""

TPR_REPRODUCE_ATOL = 0.025
"""How closely the grid's TPR at low FPR reproduces on another machine (absolute): 5 of the 200 members.

Looser than :data:`fedlab.data.GRID_REPRODUCE_ATOL` (which counts among 1,597 test digits): the TPR at
0.1 % FPR is set by the one lowest-loss non-member and counts only 200 members, so a float32 difference
that moves that one loss moves the figure by steps of 0.005. The lesson quotes these figures to 0.01."""

PANEL_PX = leakage.PANEL_PX
CHART_W, CHART_H, CHART_DPI = 560, 300, 100
NO_GUARANTEE = 100.0
"""Above this epsilon the readout says there is no meaningful guarantee (exp(100) is astronomically large)."""


# ----------------------------------------------------------------------------
# the grid: how it is made, and how it is read
# ----------------------------------------------------------------------------


def _spec(config: dict) -> models.ModelSpec:
    m = config["model"]
    return models.ModelSpec(m["kind"], m["in_features"], m["num_classes"], tuple(m["hidden"]), m["activation"])


def run_cell(config: dict, *, seed: int, noise_multiplier: float, clip_norm: float, sampling_rate: float) -> dict:
    """One DP-FedAvg run of the grid: accuracy and membership AUC after each number of rounds.

    The members are the first ``num_users * digits_per_user`` digits of
    ``permutation(1797)`` drawn from ``seed`` (user ``u`` holds digits
    ``u * k .. u * k + k - 1``); the rest are non-members and the test set.
    After round ``r`` in ``config["rounds"]``: accuracy on the non-members,
    and the AUC of :func:`fedlab.attacks.loss_threshold_attack` on every
    member against every non-member, and its TPR at each FPR of
    ``config["mia_fprs"]``.

    Returns
    -------
    dict
        ``{"accuracy": [...], "mia_auc": [...], "mia_tpr": [[...], ...]}``, one value (``mia_tpr``: one
        list, one TPR per entry of ``mia_fprs``) per entry of ``config["rounds"]``.

    """
    digits = data.load_digits()
    x, y = np.array(digits.x), np.array(digits.y)
    k, users = int(config["digits_per_user"]), int(config["num_users"])
    perm = np.random.default_rng(seed).permutation(len(y))
    members, nonmembers = perm[: users * k], perm[users * k :]
    clients = [(x[members[u * k : (u + 1) * k]], y[members[u * k : (u + 1) * k]]) for u in range(users)]
    spec = _spec(config)
    checkpoints = [int(r) for r in config["rounds"]]
    fprs = tuple(float(f) for f in config["mia_fprs"])
    out = {"accuracy": [], "mia_auc": [], "mia_tpr": []}

    def measure(r, params):
        if r in checkpoints:
            out["accuracy"].append(models.evaluate(spec, params, x[nonmembers], y[nonmembers])[1])
            lm = attacks.per_example_loss(spec, params, x[members], y[members])
            ln = attacks.per_example_loss(spec, params, x[nonmembers], y[nonmembers])
            mia = attacks.loss_threshold_attack(lm, ln, low_fprs=fprs)
            out["mia_auc"].append(mia.auc)
            out["mia_tpr"].append([mia.tpr_at[f] for f in fprs])

    dp.run(
        spec, clients, rounds=max(checkpoints), seed=seed, q=sampling_rate, clip_norm=clip_norm,
        noise_multiplier=noise_multiplier, epochs=config["epochs"], batch_size=config["batch_size"],
        lr=config["lr"], server_lr=config["server_lr"], callback=measure,
    )  # fmt: skip
    return {key: np.asarray(vals, dtype=np.float64).round(4).tolist() for key, vals in out.items()}


def make_grid(config: dict = GRID_CONFIG, *, progress=None) -> dict:
    """Train every cell of the grid (several minutes on a laptop); returns the JSON-ready dict.

    ``accuracy[s][i][j][k][r]`` is seed ``s``, noise multiplier ``i``,
    clipping norm ``j``, sampling rate ``k``, rounds ``r`` (the same for
    ``mia_auc``), ``mia_tpr[s][i][j][k][r][f]`` the TPR at ``mia_fprs[f]``.
    ``progress(done, total)`` is called after every run.
    """
    seeds = config["seeds"]
    zs, ss, qs = config["noise_multiplier"], config["clip_norm"], config["sampling_rate"]
    total = len(seeds) * len(zs) * len(ss) * len(qs)
    acc = np.zeros((len(seeds), len(zs), len(ss), len(qs), len(config["rounds"])))
    auc = np.zeros_like(acc)
    tpr = np.zeros((*acc.shape, len(config["mia_fprs"])))
    done = 0
    for a, seed in enumerate(seeds):
        for i, z in enumerate(zs):
            for j, s in enumerate(ss):
                for k, q in enumerate(qs):
                    cell = run_cell(config, seed=seed, noise_multiplier=z, clip_norm=s, sampling_rate=q)
                    acc[a, i, j, k], auc[a, i, j, k] = cell["accuracy"], cell["mia_auc"]
                    tpr[a, i, j, k] = cell["mia_tpr"]
                    done += 1
                    if progress is not None:
                        progress(done, total)
    return {
        "about": "Lesson 08's privacy-utility frontier: DP-FedAvg on a small federation of digits. "
        "See datasets/dp_frontier.md.",
        "config": config,
        "accuracy": acc.round(4).tolist(),
        "mia_auc": auc.round(4).tolist(),
        "mia_tpr": tpr.round(4).tolist(),
    }


def grid_bytes(grid: dict) -> bytes:
    """The file's bytes for a grid dict: sorted keys, no spaces, one trailing newline (deterministic)."""
    return (json.dumps(grid, sort_keys=True, separators=(",", ":")) + "\n").encode("ascii")


@dataclass(frozen=True, eq=False)
class FrontierGrid:
    """The precomputed grid, as arrays.

    Attributes
    ----------
    config
        :data:`GRID_CONFIG` as it was when the grid was made.
    noise_multipliers, clip_norms, sampling_rates, rounds
        The axes.
    accuracy, mia_auc
        ``[seeds, z, S, q, rounds]`` per seed.
    mia_tpr
        ``[seeds, z, S, q, rounds, fprs]``: the attack's TPR at each of :attr:`mia_fprs`.
    mia_fprs
        The false-positive rates of ``mia_tpr`` (0.1 % and 1 %).

    """

    config: dict
    noise_multipliers: tuple
    clip_norms: tuple
    sampling_rates: tuple
    rounds: tuple
    accuracy: np.ndarray
    mia_auc: np.ndarray
    mia_tpr: np.ndarray
    mia_fprs: tuple

    @property
    def num_nonmembers(self) -> int:
        """Non-members of the attack: every digit that is not a member (1,597)."""
        return len(data.load_digits().y) - self.num_users * int(self.config["digits_per_user"])

    @property
    def delta(self) -> float:
        return float(self.config["delta"])

    @property
    def num_users(self) -> int:
        return int(self.config["num_users"])

    def index(self, *, noise_multiplier, clip_norm, sampling_rate, rounds) -> tuple[int, int, int, int]:
        """Grid indices of a setting; ``ValueError`` naming the value if it is not on the grid."""
        out = []
        for name, value, axis in (
            ("noise_multiplier", noise_multiplier, self.noise_multipliers),
            ("clip_norm", clip_norm, self.clip_norms),
            ("sampling_rate", sampling_rate, self.sampling_rates),
            ("rounds", rounds, self.rounds),
        ):
            hits = [i for i, v in enumerate(axis) if isinstance(value, int | float) and math.isclose(v, value)]
            if not hits:
                raise ValueError(f"{name}={value!r}: the frontier grid has {list(axis)}")
            out.append(hits[0])
        return tuple(out)


def grid_path() -> Path:
    """Where the shipped grid lives (the datasets folder of :mod:`fedlab.data`)."""
    return data.datasets_dir() / GRID_FILE


def load_grid(path: str | Path | None = None, *, check_sha256: bool = True) -> FrontierGrid:
    """Read and check ``datasets/dp_frontier.json`` (or ``path``).

    Raises
    ------
    FileNotFoundError
        If the file is missing (with the command that regenerates it).
    ValueError
        If the shipped file does not match :data:`GRID_SHA256`, or its arrays do not fit its axes.

    """
    p = Path(path) if path is not None else grid_path()
    raw = data.read_grid(
        GRID_FILE, path, sha256=GRID_SHA256, remake="python datasets/make_dp_frontier.py", what="frontier grid",
        check_sha256=check_sha256,
    )
    obj = json.loads(raw)
    cfg = obj["config"]
    acc, auc = np.asarray(obj["accuracy"], dtype=np.float64), np.asarray(obj["mia_auc"], dtype=np.float64)
    if "mia_tpr" not in obj or "mia_fprs" not in cfg:
        raise ValueError(f"{p}: no mia_tpr (TPR at low FPR); regenerate with python datasets/make_dp_frontier.py")
    tpr = np.asarray(obj["mia_tpr"], dtype=np.float64)
    shape = (len(cfg["seeds"]), len(cfg["noise_multiplier"]), len(cfg["clip_norm"]), len(cfg["sampling_rate"]),
             len(cfg["rounds"]))  # fmt: skip
    if acc.shape != shape or auc.shape != shape or tpr.shape != (*shape, len(cfg["mia_fprs"])):
        raise ValueError(
            f"{p}: accuracy has shape {acc.shape}, mia_auc {auc.shape} and mia_tpr {tpr.shape}; the axes need "
            f"{shape} (and {len(cfg['mia_fprs'])} FPRs for mia_tpr)"
        )
    return FrontierGrid(
        cfg, tuple(map(float, cfg["noise_multiplier"])), tuple(map(float, cfg["clip_norm"])),
        tuple(map(float, cfg["sampling_rate"])), tuple(map(int, cfg["rounds"])), acc, auc, tpr,
        tuple(map(float, cfg["mia_fprs"])),
    )  # fmt: skip


# ----------------------------------------------------------------------------
# the pure computation
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FrontierSettings:
    """One position of the four sliders (hashable: the cache key)."""

    noise_multiplier: float = 1.0
    clip_norm: float = 1.0
    sampling_rate: float = 0.1
    rounds: int = 200


@dataclass(frozen=True, eq=False)
class FrontierPoint:
    """What the frontier shows for one :class:`FrontierSettings`.

    Attributes
    ----------
    epsilon
        Privacy spent after ``rounds`` rounds at :attr:`delta` (``inf`` without noise).
    accuracy, accuracy_std, mia_auc, mia_auc_std
        Mean and standard deviation over the grid's seeds.
    mia_tpr
        ``{fpr: mean TPR over seeds}`` of the membership attack at the grid's
        low false-positive rates (0.1 % and 1 %).
    smallest_fpr
        ``1 / non-members`` (1/1,597): the lowest FPR the grid can measure.
    expected_clients
        ``q N``, the fixed denominator.
    noise_std
        Standard deviation of the noise on the average update, ``z S / (q N)``.
    reconstruction
        Lesson 05's :class:`fedlab.widgets.leakage.Outcome` against one
        client's update clipped to ``S`` plus ``N(0, (z S)^2)``.
    seconds
        Time to compute this point (0 when it came from the cache).

    """

    settings: FrontierSettings
    epsilon: float
    delta: float
    accuracy: float
    accuracy_std: float
    mia_auc: float
    mia_auc_std: float
    mia_tpr: dict
    smallest_fpr: float
    expected_clients: float
    noise_std: float
    reconstruction: leakage.Outcome
    seconds: float


class FrontierModel:
    """The grid, the accountant and the leakage scene together, with caches (no widgets).

    Parameters
    ----------
    grid
        A :class:`FrontierGrid`; default :func:`load_grid`.
    scene
        A :class:`fedlab.widgets.leakage.LeakageScene` (default: seed ``seed``),
        shared with a leakage explorer if you like.
    seed
        For the default scene.
    delta
        The ``delta`` of the epsilons shown (default: the grid's, 1e-5).

    """

    def __init__(
        self,
        *,
        grid: FrontierGrid | None = None,
        scene: leakage.LeakageScene | None = None,
        seed: int = 0,
        delta: float | None = None,
    ) -> None:
        self.grid = grid if grid is not None else load_grid()
        self.scene = scene if scene is not None else leakage.LeakageScene(seed=seed)
        self.delta = self.grid.delta if delta is None else float(delta)
        if not 0 < self.delta < 1:
            raise ValueError(f"delta={delta!r}: must be in (0, 1)")
        self._rdp: dict = {}
        self._points: OrderedDict = OrderedDict()

    def check(self, settings: FrontierSettings) -> FrontierSettings:
        """Return ``settings`` if every value is on the grid, else raise ``ValueError`` naming it."""
        if not isinstance(settings, FrontierSettings):
            raise ValueError(f"settings={settings!r}: must be a fedlab.widgets.dp_frontier.FrontierSettings")
        self.grid.index(**dataclasses.asdict(settings))
        return settings

    def epsilon(self, settings: FrontierSettings) -> float:
        """``epsilon`` after ``rounds`` rounds: one step's RDP is cached per ``(q, z)``, then scaled and converted."""
        q, z = settings.sampling_rate, settings.noise_multiplier
        if z == 0:
            return math.inf
        if (q, z) not in self._rdp:
            self._rdp[q, z] = dp.compute_rdp(q=q, noise_multiplier=z, steps=1)
        return dp.rdp_to_epsilon(rdp=self._rdp[q, z] * settings.rounds, orders=dp.DEFAULT_ORDERS, delta=self.delta)[0]

    def reconstruction(self, settings: FrontierSettings) -> leakage.Outcome:
        """Lesson 05's attack on one client's update clipped to ``S`` with noise ``z S`` (cached by the scene)."""
        return self.scene.compute(
            leakage.Settings(noise_multiplier=float(settings.noise_multiplier), clip_norm=float(settings.clip_norm))
        )

    def curve(self, settings: FrontierSettings) -> dict:
        """Every noise multiplier of the grid at this ``S``, ``q`` and rounds: epsilon, accuracy, AUC (means)."""
        _, j, k, r = self.grid.index(**dataclasses.asdict(settings))
        zs = self.grid.noise_multipliers
        eps = [self.epsilon(dataclasses.replace(settings, noise_multiplier=z)) for z in zs]
        return {
            "noise_multiplier": np.array(zs),
            "epsilon": np.array(eps),
            "accuracy": self.grid.accuracy[:, :, j, k, r].mean(0),
            "mia_auc": self.grid.mia_auc[:, :, j, k, r].mean(0),
        }

    def point(self, settings: FrontierSettings) -> FrontierPoint:
        """Everything the widget shows for ``settings`` (cached)."""
        s = self.check(settings)
        if s in self._points:
            self._points.move_to_end(s)
            return dataclasses.replace(self._points[s], seconds=0.0)
        t0 = time.perf_counter()
        i, j, k, r = self.grid.index(**dataclasses.asdict(s))
        acc, auc = self.grid.accuracy[:, i, j, k, r], self.grid.mia_auc[:, i, j, k, r]
        expected = s.sampling_rate * self.grid.num_users
        pt = FrontierPoint(
            settings=s,
            epsilon=self.epsilon(s),
            delta=self.delta,
            accuracy=float(acc.mean()),
            accuracy_std=float(acc.std(ddof=1)) if acc.size > 1 else 0.0,
            mia_auc=float(auc.mean()),
            mia_auc_std=float(auc.std(ddof=1)) if auc.size > 1 else 0.0,
            mia_tpr={f: float(t) for f, t in zip(self.grid.mia_fprs, self.grid.mia_tpr[:, i, j, k, r].mean(0))},
            smallest_fpr=1.0 / self.grid.num_nonmembers,
            expected_clients=expected,
            noise_std=s.noise_multiplier * s.clip_norm / expected,
            reconstruction=self.reconstruction(s),
            seconds=time.perf_counter() - t0,
        )
        self._points[s] = pt
        while len(self._points) > 1024:
            self._points.popitem(last=False)
        return pt

    def warm_up(self) -> float:
        """Compute every reconstruction and one-step RDP of the grid now (a few seconds); returns the seconds.

        Afterwards a slider move costs only a grid lookup, an epsilon conversion and the drawing. Calling it
        again is free (everything is cached).
        """
        t0 = time.perf_counter()
        for z in self.grid.noise_multipliers:
            for s in self.grid.clip_norms:
                self.reconstruction(FrontierSettings(z, s, self.grid.sampling_rates[0], self.grid.rounds[0]))
            for q in self.grid.sampling_rates:
                self.epsilon(FrontierSettings(z, self.grid.clip_norms[0], q, self.grid.rounds[0]))
        return time.perf_counter() - t0


def describe_epsilon(eps: float) -> str:
    """``epsilon`` for people: a number, and a word when it is no guarantee at all."""
    if math.isinf(eps):
        return "&infin; (no privacy guarantee)"
    if eps > NO_GUARANTEE:
        return f"{eps:.3g} (no meaningful guarantee: e^&epsilon; &gt; 10^{int(eps / math.log(10))})"
    return f"{eps:.2f}"


# ----------------------------------------------------------------------------
# drawing
# ----------------------------------------------------------------------------


def render_chart(curve: dict, settings: FrontierSettings, *, delta: float) -> bytes:
    """Accuracy and membership AUC against epsilon for every noise multiplier (PNG bytes).

    Two panels sharing the epsilon axis (logarithmic; the points without a
    meaningful guarantee, ``epsilon > 100`` or ``inf``, are drawn in the grey
    band at the right edge). Accuracy: blue circles, solid line; AUC:
    vermillion squares, dashed line; the current setting is ringed in black.
    The axis is drawn in ``log10`` coordinates with plain tick labels (no
    mathtext), which keeps a redraw near 50 ms.
    """
    from fedlab.plots import OKABE_ITO, pixel_figure, png_bytes

    eps = np.asarray(curve["epsilon"], dtype=np.float64)
    lo, band, edge = math.log10(0.05), math.log10(NO_GUARANTEE), math.log10(1000.0)
    x = np.where(np.isfinite(eps) & (eps <= NO_GUARANTEE), np.log10(np.maximum(eps, 0.06)), math.log10(400.0))
    ticks = [0.1, 1, 10, 100]
    fig = pixel_figure(CHART_W, CHART_H, dpi=CHART_DPI)
    cur = int(np.argmin(np.abs(np.asarray(curve["noise_multiplier"]) - settings.noise_multiplier)))
    order = np.argsort(x, kind="stable")
    for left, key, color, marker, ls, label, ylim in (
        (0.10, "accuracy", OKABE_ITO["blue"], "o", "-", "test accuracy", (0.0, 1.0)),
        (0.60, "mia_auc", OKABE_ITO["vermillion"], "s", "--", "membership AUC (0.5: guessing)", (0.45, 0.65)),
    ):
        ax = fig.add_axes((left, 0.17, 0.37, 0.66))
        y = np.asarray(curve[key])
        ax.axvspan(band, edge, color="#dddddd", zorder=0)
        ax.plot(x[order], y[order], color=color, marker=marker, ls=ls, lw=1.5, ms=5)
        ax.plot([x[cur]], [y[cur]], marker="o", ms=13, mfc="none", mec="black", mew=2)
        ax.set_xlim(lo, edge)
        ax.set_xticks([math.log10(t) for t in ticks] + [math.log10(400.0)])
        ax.set_xticklabels([f"{t:g}" for t in ticks] + ["none"])
        ax.set_ylim(*ylim)
        ax.set_xlabel(f"epsilon (delta = {delta:g}, log scale)", fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if key == "mia_auc":
            ax.axhline(0.5, color="grey", lw=1, ls=":")
    fig.suptitle(
        f"S = {settings.clip_norm:g}, q = {settings.sampling_rate:g}, {settings.rounds} rounds; "
        f"one point per noise multiplier, ringed: z = {settings.noise_multiplier:g}",
        fontsize=8,
    )
    return png_bytes(fig, dpi=CHART_DPI)


def _readout(pt: FrontierPoint, num_users: int) -> str:
    s = pt.settings
    rec = pt.reconstruction
    psnr = rec.mean_psnr
    verdict = "recognisable" if psnr >= 20 else ("blurry" if psnr >= 14 else "not recognisable")
    honest = ""
    if psnr < 14 and (math.isinf(pt.epsilon) or pt.epsilon > 10):
        honest = (
            "<br><i>The attack failed, yet &epsilon; promises little or nothing here: "
            "&ldquo;the attack failed&rdquo; is not &ldquo;private&rdquo;.</i>"
        )
    lines = [
        f"<span class='fedlab-dp-epsilon' style='font-size:1.2em'><b>&epsilon; = {describe_epsilon(pt.epsilon)}</b>"
        f"</span> at &delta; = {pt.delta:g} &middot; {s.rounds} rounds, q = {s.sampling_rate:g} "
        f"(about {pt.expected_clients:g} of {num_users} users a round)",
        f"<span class='fedlab-dp-accuracy'><b>accuracy {pt.accuracy:.3f}</b> &plusmn; {pt.accuracy_std:.3f}</span>"
        f" &middot; <span class='fedlab-dp-auc'><b>membership AUC {pt.mia_auc:.3f}</b> &plusmn; "
        f"{pt.mia_auc_std:.3f}</span> (0.5 = guessing; mean &plusmn; sd over seeds)",
        "<span class='fedlab-dp-tpr'>the attack's true-positive rate "
        + ", ".join(f"<b>{100 * t:.1f} % at {100 * f:g} % FPR</b>" for f, t in pt.mia_tpr.items())
        + f" (guessing: TPR = FPR; {num_users:,} members, 1/FPR &ge; {1 / pt.smallest_fpr:,.0f} non-members, "
        f"so the smallest measurable FPR is {100 * pt.smallest_fpr:.3g} %)</span>",
        f"noise on the average update: std z&middot;S/(qN) = {pt.noise_std:.3g}",
        f"<span class='fedlab-dp-psnr'>reconstruction of one client's update (clip S, noise z&middot;S): "
        f"<b>PSNR {psnr:.1f} dB</b>, {verdict}</span>{honest}",
    ]
    return "<div style='line-height:1.6'>" + "<br>".join(lines) + "</div>"


# ----------------------------------------------------------------------------
# the widget
# ----------------------------------------------------------------------------


class FrontierWidget(W.VBox):
    """The frontier widget (an ``ipywidgets.VBox``); see the module docstring.

    Attributes
    ----------
    model
        The :class:`FrontierModel` doing the computation.
    controls
        ``{"noise_multiplier", "clip_norm", "sampling_rate", "rounds"}`` -> ``SelectionSlider``.
    chart, original, reconstruction
        The ``ipywidgets.Image`` panels (explicit sizes).
    readout
        ``ipywidgets.HTML``: epsilon, accuracy, AUC, noise, PSNR in words and numbers.
    point
        The :class:`FrontierPoint` on display.
    last_update_seconds
        Kernel-side time of the last refresh (computation and drawing).
    warm_up_seconds
        Time :meth:`FrontierModel.warm_up` took when the widget was built (0
        if the model was warm already or ``warm_up=False``).

    """

    def __init__(self, *, model: FrontierModel | None = None, seed: int = 0,
                 settings: FrontierSettings | None = None, warm_up: bool = True) -> None:  # fmt: skip
        self.model = model if model is not None else FrontierModel(seed=seed)
        self.warm_up_seconds = self.model.warm_up() if warm_up else 0.0
        start = self.model.check(settings if settings is not None else FrontierSettings())
        g = self.model.grid
        style, layout = {"description_width": "150px"}, W.Layout(width="420px")

        def sel(desc, options, value, fmt):
            return W.SelectionSlider(
                options=[(fmt(o), o) for o in options], value=value, description=desc,
                continuous_update=False, style=style, layout=layout,
            )  # fmt: skip

        self.controls = {
            "noise_multiplier": sel("noise multiplier z", g.noise_multipliers, start.noise_multiplier, "{:g}".format),
            "clip_norm": sel("clipping norm S", g.clip_norms, start.clip_norm, "{:g}".format),
            "sampling_rate": sel("sampling rate q", g.sampling_rates, start.sampling_rate, "{:g}".format),
            "rounds": sel("rounds", g.rounds, start.rounds, str),
        }
        self.chart = W.Image(format="png", width=CHART_W, height=CHART_H)
        self.original = W.Image(format="png", width=PANEL_PX // 2, height=PANEL_PX // 2)
        self.reconstruction = W.Image(format="png", width=PANEL_PX // 2, height=PANEL_PX // 2)
        self.chart.add_class("fedlab-dp-chart")
        self.reconstruction.add_class("fedlab-dp-reconstruction")
        self.readout = W.HTML()
        self.readout.add_class("fedlab-dp-readout")
        self.point: FrontierPoint | None = None
        self.last_update_seconds = 0.0
        self._charts: OrderedDict = OrderedDict()

        def panel(caption, image):
            return W.VBox([W.HTML(f"<small>{html.escape(caption)}</small>"), image], layout=W.Layout(margin="0 8px"))

        images = W.HBox([panel("a client's digit", self.original), panel("rebuilt by the server", self.reconstruction)])
        left = W.VBox([*self.controls.values(), images], layout=W.Layout(width="440px"))
        title = W.HTML("<h4>Privacy, utility and leakage: DP-FedAvg on a small federation of digits</h4>")
        super().__init__([title, W.HBox([left, W.VBox([self.chart])]), self.readout])
        self.add_class("fedlab-dp-frontier")
        for w in self.controls.values():
            w.observe(self._on_change, names="value")
        self.refresh()

    def settings(self) -> FrontierSettings:
        """The :class:`FrontierSettings` the sliders show."""
        return FrontierSettings(**{name: w.value for name, w in self.controls.items()})

    def _on_change(self, _change) -> None:
        self.refresh()

    def _chart(self, s: FrontierSettings) -> bytes:
        if s not in self._charts:
            self._charts[s] = render_chart(self.model.curve(s), s, delta=self.model.delta)
            while len(self._charts) > 256:
                self._charts.popitem(last=False)
        self._charts.move_to_end(s)
        return self._charts[s]

    def refresh(self) -> FrontierPoint:
        """Compute (or fetch) the point of the current settings and show it."""
        t0 = time.perf_counter()
        s = self.settings()
        pt = self.model.point(s)
        rec = pt.reconstruction
        self.original.value = leakage.render_panel(rec.original, size=PANEL_PX // 2)
        self.reconstruction.value = leakage.render_panel(rec.reconstruction, size=PANEL_PX // 2)
        self.chart.value = self._chart(s)
        self.readout.value = _readout(pt, self.model.grid.num_users)
        self.point = pt
        self.last_update_seconds = time.perf_counter() - t0
        return pt


def dp_frontier(
    *,
    seed: int = 0,
    settings: FrontierSettings | None = None,
    model: FrontierModel | None = None,
    warm_up: bool = True,
) -> FrontierWidget:
    """The privacy-utility-leakage frontier: an ``ipywidgets`` container to display in a notebook.

    Parameters
    ----------
    seed
        Seed of the leakage scene (ignored when ``model`` is given).
    settings
        Starting position of the sliders (values on the grid).
    model
        An existing :class:`FrontierModel` to share its caches.
    warm_up
        Precompute every reconstruction and RDP curve first (a few seconds,
        once per model), so that every later move answers quickly.

    """
    return FrontierWidget(model=model, seed=seed, settings=settings, warm_up=warm_up)


__all__ = [
    "GRID_CONFIG",
    "FrontierGrid",
    "FrontierModel",
    "FrontierPoint",
    "FrontierSettings",
    "FrontierWidget",
    "describe_epsilon",
    "dp_frontier",
    "grid_bytes",
    "load_grid",
    "make_grid",
    "render_chart",
    "run_cell",
]

