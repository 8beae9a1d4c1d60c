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

Speed (issue 5: every control move answered in under 0.3 s after the warm-up;
``python benchmarks/leakage_explorer.py`` measures it). The attack is nearly
all of a move's cost, and every move that lands on a new setting runs it live
(the controls reach ~86 million settings: nothing is precomputed
speculatively). What makes it fast:

- ``backend="numpy"`` (the default): the attack's loss and its gradient in the
  pixels are written out by hand for the explorer's two MLPs
  (:class:`_MLPMatch`), and L-BFGS is a line-by-line numpy port of the
  ``torch.optim.LBFGS`` that :mod:`fedlab.attacks` uses (:func:`_lbfgs`, same
  settings and stopping rules). Same loss, labels, starting point, budget and
  float64 arithmetic as :func:`fedlab.attacks.invert_gradients` /
  :func:`fedlab.attacks.invert_update`, which ``backend="torch"`` calls; the
  two agree to rounding (tests compare them). On models this small, torch's
  per-operation overhead was most of the time: a new setting now takes about
  10-100 ms instead of 0.1-0.5 s.
- One torch thread for everything, the clients' local training included (on a
  busy 2-core machine a second thread made each local update 10-100x slower).

What is cached, per :class:`LeakageScene` (shared by the explorers built on it):

- the :class:`Outcome` of every setting computed (least recently used dropped
  beyond ``cache_size``): going back to a setting costs only the drawing;
- every client's raw update, per (model, client, sample, batch size, local
  steps) (up to ``4 * cache_size``): moving a defence, the number of clients
  summed or the attacker does not retrain any client;
- after :meth:`LeakageScene.warm_up` (run once per scene by the explorer, a
  fraction of a second): the image-pairing tables of
  :func:`fedlab.attacks.reconstruction_quality` for every batch size, and
  torch's first calls.

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


BACKENDS: tuple[str, ...] = ("numpy", "torch")
"""How :class:`LeakageScene` evaluates the attack's loss: by hand in numpy (fast) or with torch autograd."""


def _sigmoid(a: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp(-a) = inf for a << 0 gives 0, as torch.sigmoid does
        return 1.0 / (1.0 + np.exp(-a))


class _MLPMatch:
    """The gradient-matching loss of :mod:`fedlab.attacks` for an MLP, and its gradient in ``x``, by hand.

    The same function as the ``make_loss`` closures of
    :func:`fedlab.attacks.invert_gradients` (``steps=0``: the gradient of the
    mean cross-entropy at ``params``) and :func:`fedlab.attacks.invert_update`
    (``steps=K``: the update after ``K`` replayed gradient steps), compared to
    ``target`` with the cosine or squared distance, optionally on the entries
    of ``mask`` only. The derivative in ``x`` (a second derivative of the
    model's loss) is written out as reverse-mode steps in float64 numpy
    instead of torch's double backward: the explorer's models are tiny, so
    torch's per-operation overhead, not arithmetic, was most of an
    evaluation's cost. Agrees with autograd to float64 rounding (``~1e-15``
    relative; tests/test_leakage_widget.py checks it).
    """

    @staticmethod
    def supports(spec) -> bool:
        """Whether ``spec`` is a model this class differentiates: an MLP with sigmoid or ReLU activations."""
        return spec.kind == "mlp" and spec.activation in ("sigmoid", "relu")

    def __init__(self, spec, params, labels, target, *, kind: str, steps: int, lr: float, mask) -> None:
        if not self.supports(spec):
            raise ValueError(f"model {spec!r}: the numpy backend handles sigmoid and ReLU MLPs only")
        self.w0 = [np.asarray(w, dtype=np.float64) for w in params]
        self.sigmoid = spec.activation == "sigmoid"
        self.n = len(labels)
        self.onehot = np.eye(spec.num_classes)[np.asarray(labels)]
        self.shapes = [w.shape for w in self.w0]
        self.cuts = np.cumsum([w.size for w in self.w0])[:-1]
        t = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in target])
        self.mask = None if mask is None else np.concatenate([np.asarray(m, dtype=bool).ravel() for m in mask])
        self.t = t if self.mask is None else t[self.mask]
        self.tt = float(self.t @ self.t)
        self.kind, self.steps, self.lr = kind, steps, lr

    def _act_slope(self, h: np.ndarray) -> np.ndarray:
        return h * (1.0 - h) if self.sigmoid else (h > 0).astype(np.float64)

    def _grads(self, w: list, x: np.ndarray):
        """Gradient of the mean cross-entropy at ``w`` on ``(x, labels)``, and what its derivative needs."""
        layers = len(w) // 2
        hs = [x]
        for i in range(layers - 1):
            a = hs[-1] @ w[2 * i].T + w[2 * i + 1]
            hs.append(_sigmoid(a) if self.sigmoid else np.maximum(a, 0.0))
        z = hs[-1] @ w[-2].T + w[-1]
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        e = (p - self.onehot) / self.n
        es, ds, slopes, g = [None] * layers, [None] * layers, [None] * layers, [None] * (2 * layers)
        for i in range(layers - 1, -1, -1):
            es[i] = e
            g[2 * i] = e.T @ hs[i]
            g[2 * i + 1] = e.sum(axis=0)
            if i > 0:
                ds[i] = e @ w[2 * i]
                slopes[i] = self._act_slope(hs[i])
                e = ds[i] * slopes[i]
        return g, (hs, p, es, ds, slopes)

    def _grads_vjp(self, w: list, cache, gbar: list):
        """``(d/dw, d/dx)`` of ``<gbar, grads(w, x)>``: reverse mode through :meth:`_grads`."""
        hs, p, es, ds, slopes = cache
        layers = len(w) // 2
        wbar = [np.zeros_like(a) for a in w]
        hbar = [None] * layers
        ebar = None  # adjoint of the error that fed the layer below
        for i in range(layers):
            e = es[i]
            eb = hs[i] @ gbar[2 * i].T + gbar[2 * i + 1]
            hbar[i] = e @ gbar[2 * i]
            if i > 0:
                if self.sigmoid:
                    hbar[i] += ebar * ds[i] * (1.0 - 2.0 * hs[i])
                dbar = ebar * slopes[i]
                eb += dbar @ w[2 * i].T
                wbar[2 * i] += e.T @ dbar
            ebar = eb
        pbar = ebar / self.n
        zbar = p * (pbar - (pbar * p).sum(axis=1, keepdims=True))
        wbar[-2] += zbar.T @ hs[-1]
        wbar[-1] += zbar.sum(axis=0)
        hb = hbar[-1] + zbar @ w[-2]
        for i in range(layers - 1, 0, -1):
            ab = hb * slopes[i]
            wbar[2 * i - 2] += ab.T @ hs[i - 1]
            wbar[2 * i - 1] += ab.sum(axis=0)
            hb = hbar[i - 1] + ab @ w[2 * i - 2]
        return wbar, hb

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """``(loss, d loss / d x)`` at candidate inputs ``x`` ``[n, in_features]`` (float64)."""
        caches = []
        if self.steps == 0:
            g, cache = self._grads(self.w0, x)
            caches.append((self.w0, cache))
            pred = np.concatenate([a.ravel() for a in g])
        else:
            w = self.w0
            for _ in range(self.steps):
                g, cache = self._grads(w, x)
                caches.append((w, cache))
                w = [a - self.lr * b for a, b in zip(w, g)]
            pred = np.concatenate([(a - b).ravel() for a, b in zip(w, self.w0)])
        q = pred if self.mask is None else pred[self.mask]
        if self.kind == "l2":
            r = q - self.t
            loss, qbar = float(r @ r), 2.0 * r
        else:
            dot, qq = float(q @ self.t), float(q @ q)
            norm = math.sqrt(qq * self.tt)
            den = norm + 1e-300
            loss = 1.0 - dot / den
            qbar = -self.t / den
            if norm > 0:
                qbar += (dot * self.tt / (norm * den * den)) * q
        if self.mask is None:
            predbar = qbar
        else:
            predbar = np.zeros_like(pred)
            predbar[self.mask] = qbar
        bar = [v.reshape(shape) for v, shape in zip(np.split(predbar, self.cuts), self.shapes)]
        if self.steps == 0:
            return loss, self._grads_vjp(self.w0, caches[0][1], bar)[1]
        xbar = np.zeros_like(x)
        for w, cache in reversed(caches):  # w_{k+1} = w_k - lr g(w_k, x)
            wb, xb = self._grads_vjp(w, cache, [-self.lr * a for a in bar])
            bar = [a + b for a, b in zip(bar, wb)]
            xbar += xb
        return loss, xbar


# The optimiser of fedlab.attacks (torch.optim.LBFGS with a strong-Wolfe line search, as configured in
# attacks._lbfgs), ported line by line to numpy floats: on 64-512 unknowns torch's per-call overhead was
# most of the cost. Port of torch/optim/lbfgs.py (PyTorch, BSD-3-Clause licence; in turn ported from
# minFunc and torch7's optim). Same steps, same stopping rules, same evaluation count.
_LBFGS = {"lr": 1.0, "history_size": 100, "tolerance_grad": 1e-12, "tolerance_change": 1e-15}


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:
        d2 = math.sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, xmin_bound), xmax_bound)
    return (xmin_bound + xmax_bound) / 2.0


def _strong_wolfe(obj_func, x, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    d_norm = float(np.abs(d).max())
    f_new, g_new = obj_func(x, t, d)
    ls_func_evals = 1
    gtd_new = float(g_new @ d)
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    ls_iter = 0
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f, bracket_g = [t_prev, t], [f_prev, f_new], [g_prev, g_new]
            bracket_gtd = [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f, bracket_g = [t_prev, t], [f_prev, f_new], [g_prev, g_new]
            bracket_gtd = [gtd_prev, gtd_new]
            break
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step))
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new, gtd_new
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1
    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]
    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                t = max(bracket) - eps if abs(t - max(bracket)) < abs(t - min(bracket)) else min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            bracket[high_pos], bracket_f[high_pos], bracket_g[high_pos] = t, f_new, g_new
            bracket_gtd[high_pos] = gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos], bracket_gtd[high_pos] = bracket_g[low_pos], bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos], bracket_g[low_pos] = t, f_new, g_new
            bracket_gtd[low_pos] = gtd_new
    return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], ls_func_evals


def _lbfgs(fn, x0: np.ndarray, *, max_evals: int) -> tuple[np.ndarray, float, int]:
    """``attacks._lbfgs`` in numpy: minimise ``fn(x) -> (loss, grad)`` from ``x0``; ``(x, loss, evaluations)``."""
    shape, count = x0.shape, 0
    lr, history_size = _LBFGS["lr"], _LBFGS["history_size"]
    tolerance_grad, tolerance_change = _LBFGS["tolerance_grad"], _LBFGS["tolerance_change"]

    def evaluate(x):
        nonlocal count
        count += 1
        loss, grad = fn(x.reshape(shape))
        return float(loss), grad.reshape(-1)

    x = np.array(x0, dtype=np.float64).reshape(-1)
    loss, flat_grad = evaluate(x)
    current_evals = 1
    if np.abs(flat_grad).max() > tolerance_grad:
        n_iter = 0
        old_dirs, old_stps, ro, al = [], [], [], [None] * history_size
        d = prev_flat_grad = None
        t = h_diag = 1.0
        while n_iter < max_evals:
            n_iter += 1
            if n_iter == 1:
                d = -flat_grad
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = float(y @ s)
                if ys > 1e-10:
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    h_diag = ys / float(y @ y)
                q = -flat_grad
                for i in range(len(old_dirs) - 1, -1, -1):
                    al[i] = float(old_stps[i] @ q) * ro[i]
                    q -= al[i] * old_dirs[i]
                d = r = q * h_diag
                for i in range(len(old_dirs)):
                    be_i = float(old_dirs[i] @ r) * ro[i]
                    r += (al[i] - be_i) * old_stps[i]
            prev_flat_grad = flat_grad
            prev_loss = loss
            t = min(1.0, 1.0 / float(np.abs(flat_grad).sum())) * lr if n_iter == 1 else lr
            gtd = float(flat_grad @ d)
            if gtd > -tolerance_change:
                break
            x_init = x
            loss, flat_grad, t, ls_func_evals = _strong_wolfe(
                lambda x, t, d: evaluate(x + t * d), x_init, t, d, loss, flat_grad, gtd,
                max_ls=max_evals - current_evals,
            )  # fmt: skip
            x = x_init + t * d
            opt_cond = np.abs(flat_grad).max() <= tolerance_grad
            current_evals += ls_func_evals
            if n_iter == max_evals or current_evals >= max_evals or opt_cond:
                break
            if np.abs(d * t).max() <= tolerance_change or abs(loss - prev_loss) < tolerance_change:
                break
    x = x.reshape(shape)
    return x, float(fn(x)[0]), count


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
    backend
        ``"numpy"`` (default): the attack's loss, its gradient and L-BFGS
        written out in numpy for the explorer's MLPs (:class:`_MLPMatch`,
        :func:`_lbfgs`), 5-10x faster; ``"torch"``:
        :func:`fedlab.attacks.invert_gradients` and
        :func:`fedlab.attacks.invert_update` themselves (torch autograd and
        ``torch.optim.LBFGS``; also used for any model in :data:`MODELS` that
        is not a sigmoid or ReLU MLP). Both run the same L-BFGS from the same
        starting points on the same loss, and agree to float64 rounding.

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
        backend: str = "numpy",
    ) -> None:
        self.seed = validate.positive_int("seed", seed, minimum=0)
        self.num_clients = validate.positive_int("num_clients", num_clients, minimum=MAX_SUMMED)
        self.samples_per_client = validate.positive_int("samples_per_client", samples_per_client)
        self.lr = validate.positive_float("lr", lr)
        self.max_evals = validate.positive_int("max_evals", max_evals)
        self.min_evals = validate.positive_int("min_evals", min_evals)
        self.cache_size = validate.positive_int("cache_size", cache_size)
        self.backend = validate.one_of("backend", backend, BACKENDS)
        digits = data.load_digits()
        self.x = np.array(digits.x, dtype=np.float32)
        self.y = np.array(digits.y, dtype=np.int64)
        self.parts = partition.iid(len(self.y), num_clients=self.num_clients, rng=seeding.derive(self.seed, 0))
        self.params = {
            name: models.init_params(spec, rng=seeding.derive(self.seed, 1)) for name, spec in MODELS.items()
        }
        self._updates: OrderedDict = OrderedDict()
        self._outcomes: OrderedDict = OrderedDict()
        self.warm_up_seconds: float | None = None

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

    def warm_up(self) -> float:
        """Pay the one-off costs of a first move now (once per scene); returns the seconds it took.

        Builds the image-pairing tables of :func:`fedlab.attacks.reconstruction_quality`
        for every batch size (all 40,320 orders of a batch of 8: ~0.3 s, which
        the first move to batch size 8 used to pay) and makes torch's first
        calls (the label counting's forward pass). Outcomes are not precomputed:
        the controls reach ~86 million settings, and each one takes tens of
        milliseconds to compute.
        """
        if self.warm_up_seconds is None:
            t0 = time.perf_counter()
            for n in range(1, MAX_BATCH + 1):
                blank = np.zeros((n, self.x.shape[1]))
                attacks.reconstruction_quality(blank, blank)
            with engine.torch_threads(1):
                for name, spec in MODELS.items():
                    attacks.mean_probs(spec, self.params[name], rng=0)
            self.warm_up_seconds = time.perf_counter() - t0
        return self.warm_up_seconds

    # -- the whole computation ------------------------------------------------------------------

    def is_cached(self, settings: Settings) -> bool:
        """Whether :meth:`compute` would answer ``settings`` from the cache."""
        return settings in self._outcomes

    def attack(self, settings: Settings, observed: list) -> attacks.Reconstruction:
        """The attacker of ``settings`` against the ``observed`` update (see the module docstring)."""
        s = settings
        spec, params = MODELS[s.model], self.params[s.model]
        rng = seeding.derive(self.seed, 3, s.client, s.sample)
        budget = self.budget(s)
        mask = None
        if s.attacker == "informed" and s.topk_fraction < 1.0 and s.noise_multiplier == 0:
            mask = [o != 0 for o in observed]
        if self.backend == "torch" or not _MLPMatch.supports(spec):
            if s.attacker == "naive":
                target = attacks.pseudo_gradient(observed, lr=self.lr, steps=s.local_steps)
                return attacks.invert_gradients(
                    spec, params, target, num_images=s.batch_size, loss="l2", max_evals=budget, rng=rng
                )
            return attacks.invert_update(
                spec, params, observed, lr=self.lr, steps=s.local_steps, method="unrolled",
                num_images=s.batch_size, loss="cosine", max_evals=budget, mask=mask, rng=rng,
            )  # fmt: skip
        # The same attack as above, step for step: labels from the update's last layer (drawing the
        # probes of attacks.mean_probs from rng first), then L-BFGS from rng's uniform starting point.
        t0 = time.perf_counter()
        gen = seeding.as_generator(rng)
        pseudo = attacks.pseudo_gradient(observed, lr=self.lr, steps=s.local_steps)
        n = s.batch_size
        if n == 1:
            labels = np.array([attacks.idlg_label(pseudo[-2], last_bias_grad=pseudo[-1])], dtype=np.int64)
        else:
            probs = attacks.mean_probs(spec, params, rng=gen)
            labels = attacks.batch_labels(pseudo[-1], num_images=n, mean_probs=probs)
        if s.attacker == "naive":  # squared distance to the update read as one gradient
            fn = _MLPMatch(spec, params, labels, pseudo, kind="l2", steps=0, lr=self.lr, mask=None)
        elif s.local_steps == 1:  # invert_update hands one step to invert_gradients
            fn = _MLPMatch(spec, params, labels, pseudo, kind="cosine", steps=0, lr=self.lr, mask=mask)
        else:  # the unrolled attack: replay the K steps, compare updates
            fn = _MLPMatch(spec, params, labels, observed, kind="cosine", steps=s.local_steps, lr=self.lr, mask=mask)
        x, loss, evals = _lbfgs(fn, gen.random((n, spec.in_features)), max_evals=budget)
        return attacks.Reconstruction(x, labels, loss, evals, time.perf_counter() - t0)

    def compute(self, settings: Settings) -> Outcome:
        """Attack the observed update for ``settings``; cached, and the same every time for a seed."""
        s = self.check(settings)
        if s in self._outcomes:
            self._outcomes.move_to_end(s)
            return dataclasses.replace(self._outcomes[s], seconds=0.0)
        t0 = time.perf_counter()
        # One thread: these are many tiny operations, and on a busy 2-core machine a second torch
        # thread made a client's local update 10-100x slower (waiting for the other core).
        with engine.torch_threads(1):
            observed, own_norm, clipped = self.observed_update(s)
            rec = self.attack(s, observed)
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
            budget=self.budget(s),
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
        self.scene.warm_up()
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
