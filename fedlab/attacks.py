"""What a model update reveals: reconstruction and membership attacks.

The server in federated learning never sees a client's data, only its update.
This module measures how much of the data the update still gives away. Every
attack here is a *passive, honest-but-curious* server: it follows the protocol,
knows the model it sent (``spec``, ``params``) and looks hard at what comes back.

Reconstruction from one update
------------------------------
- :func:`analytic_reconstruction` - a dense layer with bias ``z = W x + b`` has
  gradients ``dL/dW = g x^T`` and ``dL/db = g`` for a single input, so every
  row with ``g_i != 0`` gives the input exactly: ``x = dW_i / db_i``
  (Phong et al. 2017; Geiping et al. 2020, Prop. 3.1). :func:`analytic_candidates`
  applies the same division row by row to a batch, where a row is a mix of the
  inputs that activated that neuron.
- :func:`idlg_label` - the label of a single input from the last layer's
  gradient (iDLG, Zhao et al. 2020): with softmax cross-entropy the output-layer
  error is ``p - onehot(y)``, negative only at the true class.
  :func:`batch_labels` counts the labels of a batch from the bias gradient.
- :func:`invert_gradients` - optimisation-based inversion ("Deep Leakage from
  Gradients", Zhu et al. 2019): find inputs whose gradient matches the observed
  one. The loss is the squared distance of DLG or the cosine distance of
  Geiping et al. (2020, "Inverting Gradients"), minimised with L-BFGS in
  float64 (float32 stalls long before the match is exact). Works for a batch
  of 1..8 on the course's MLPs and CNNs.
- :func:`invert_update` - the same against a FedAvg update after ``K`` local
  gradient steps: either treat the update as one gradient
  (``method="pseudo_gradient"``: ``-delta / (lr K)``), or replay the ``K``
  steps on the candidate inputs and match the simulated update to the observed
  one (``method="unrolled"``, the FedAvg attack of Geiping et al. 2020, Sec. 6,
  and Dimitrov et al. 2022).
- :func:`reconstruction_quality` - PSNR and SSIM of the reconstruction against
  the truth, after pairing up images (a batch attack returns them in any order).

Membership inference
--------------------
- :func:`per_example_loss` and :func:`loss_threshold_attack` - the attack of
  Yeom et al. (2018): "member if the model's loss on it is below a threshold".
  Reported as ROC AUC, membership advantage and TPR at a low FPR
  (:mod:`fedlab.metrics`); :func:`summarize` averages runs over seeds.

Conventions: gradients are of the *mean* cross-entropy over the batch (what
:func:`fedlab.fedavg.local_sgd` differentiates); attack hyper-parameters are
keyword-only; every random choice takes ``rng`` (an int seed or a
``numpy.random.Generator``). This module imports numpy, torch and fedlab's
math modules only.
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from fedlab import metrics, models, seeding, validate
from fedlab import params as P

LOSSES = ("cosine", "l2")
METHODS = ("pseudo_gradient", "unrolled")


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------


def _tensors(arrays, dtype, *, requires_grad: bool = False) -> list[torch.Tensor]:
    return [torch.tensor(np.asarray(a), dtype=dtype, requires_grad=requires_grad) for a in arrays]


def _check_x(spec: models.ModelSpec, x) -> np.ndarray:
    x = validate.array("x", x, ndim=2, dtype_kind="fiu")
    if x.shape[1] != spec.in_features or x.shape[0] == 0:
        raise ValueError(f"x has shape {x.shape}: must be [n >= 1, in_features={spec.in_features}]")
    return x


def _check_labels(spec: models.ModelSpec, y, n: int, *, name: str = "y") -> np.ndarray:
    y = validate.array(name, y, ndim=1, dtype_kind="iu")
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} labels: must have one per input ({n})")
    if y.size and (y.min() < 0 or y.max() >= spec.num_classes):
        raise ValueError(f"{name} has labels in [{y.min()}, {y.max()}]: must lie in [0, {spec.num_classes - 1}]")
    return y.astype(np.int64)


def _check_update(spec: models.ModelSpec, update, *, name: str) -> list[np.ndarray]:
    if isinstance(update, np.ndarray) or not isinstance(update, Sequence):
        raise ValueError(f"{name} is a {type(update).__name__}: must be a list of arrays shaped like the model's")
    update = [np.asarray(u, dtype=np.float64) for u in update]
    expected = models.shapes(spec)
    if len(update) != len(expected):
        raise ValueError(f"{name} has {len(update)} tensors: a {spec.kind} with this spec has {len(expected)}")
    for i, (u, e) in enumerate(zip(update, expected)):
        if tuple(u.shape) != e:
            raise ValueError(f"{name}[{i}] has shape {tuple(u.shape)}: this model needs {e}")
    if not all(np.isfinite(u).all() for u in update):
        raise ValueError(f"{name} contains nan or inf")
    return update


def _check_mask(mask, like: list[np.ndarray]) -> list[np.ndarray] | None:
    if mask is None:
        return None
    if isinstance(mask, np.ndarray) or not isinstance(mask, Sequence):
        raise ValueError(f"mask is a {type(mask).__name__}: must be None or a list of boolean arrays like the update")
    mask = [np.asarray(m, dtype=bool) for m in mask]
    P.check_like(mask, like, name="mask")
    if not any(m.any() for m in mask):
        raise ValueError("mask selects no entry: at least one entry of the update must be compared")
    return mask


# ----------------------------------------------------------------------------
# gradients and client updates (what the attacker observes)
# ----------------------------------------------------------------------------


def model_gradient(spec: models.ModelSpec, params, x, y, *, dtype=torch.float64) -> list[np.ndarray]:
    """Gradient of the mean cross-entropy on ``(x, y)`` at ``params``: what a FedSGD client computes.

    A FedSGD client sends ``-lr`` times this; the attacks below do not need
    ``lr`` (the cosine loss ignores scale).

    Parameters
    ----------
    spec, params
        The model and its parameters (the course's list of arrays).
    x
        ``[n, in_features]`` inputs.
    y
        ``[n]`` integer labels.
    dtype
        Torch dtype of the computation (float64 by default, for attacks).

    Returns
    -------
    list[np.ndarray]
        One array per parameter tensor, in ``dtype``'s numpy type.

    """
    x = _check_x(spec, x)
    y = _check_labels(spec, y, x.shape[0])
    params = models.check_params(spec, params)
    w = _tensors(params, dtype, requires_grad=True)
    loss = F.cross_entropy(models.forward(spec, w, torch.as_tensor(x, dtype=dtype)), torch.as_tensor(y))
    return [g.detach().numpy() for g in torch.autograd.grad(loss, w)]


def _local_gd(spec, w: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor, *, lr: float, steps: int, create_graph):
    for _ in range(steps):
        loss = F.cross_entropy(models.forward(spec, w, x), y)
        grads = torch.autograd.grad(loss, w, create_graph=create_graph)
        w = [p - lr * g for p, g in zip(w, grads)]
    return w


def local_update(spec: models.ModelSpec, params, x, y, *, lr: float, steps: int, dtype=torch.float64) -> list:
    """The delta after ``steps`` full-batch gradient steps on ``(x, y)``: FedAvg with ``B = inf, E = steps``.

    Equals :func:`fedlab.fedavg.local_sgd` with ``batch_size=None`` (up to float
    rounding), computed in ``dtype``. It is what :func:`invert_update` replays.
    """
    x = _check_x(spec, x)
    y = _check_labels(spec, y, x.shape[0])
    params = models.check_params(spec, params)
    validate.positive_float("lr", lr)
    validate.positive_int("steps", steps)
    w0 = _tensors(params, dtype, requires_grad=True)
    w = _local_gd(spec, w0, torch.as_tensor(x, dtype=dtype), torch.as_tensor(y), lr=lr, steps=steps, create_graph=False)
    return [(a - b).detach().numpy() for a, b in zip(w, w0)]


def pseudo_gradient(delta, *, lr: float, steps: int) -> list[np.ndarray]:
    """``-delta / (lr * steps)``: a FedAvg update read as if it were one gradient.

    Exact for ``steps = 1`` (FedSGD); for more local steps it is the average of
    the gradients along the client's path, which drifts from the gradient at
    the starting point the attacker differentiates.
    """
    validate.positive_float("lr", lr)
    validate.positive_int("steps", steps)
    if isinstance(delta, np.ndarray) or not isinstance(delta, Sequence):
        raise ValueError(f"delta is a {type(delta).__name__}: must be a list of arrays (one per model tensor)")
    return [-np.asarray(d, dtype=np.float64) / (lr * steps) for d in delta]


# ----------------------------------------------------------------------------
# analytic attacks
# ----------------------------------------------------------------------------


def _dense_grads(dW, db, *, tol: float) -> tuple[np.ndarray, np.ndarray]:
    dW = validate.array("dW", dW, ndim=2, dtype_kind="fiu").astype(np.float64)
    db = validate.array("db", db, ndim=1, dtype_kind="fiu").astype(np.float64)
    if db.shape[0] != dW.shape[0]:
        raise ValueError(f"db has {db.shape[0]} entries: must have one per row of dW ({dW.shape[0]})")
    validate.positive_float("tol", tol, allow_zero=True)
    return dW, db


def analytic_reconstruction(dW, db, *, tol: float = 1e-12) -> np.ndarray:
    """The input of a dense layer with bias, from its gradient for a batch of one.

    For ``z = W x + b`` and one input, ``dL/dW = g x^T`` and ``dL/db = g``, so
    ``x = dW_i / db_i`` for every row ``i`` with ``g_i != 0``. Combining all
    rows by least squares, ``x = sum_i db_i dW_i / sum_i db_i^2``, uses the
    large (well-conditioned) rows most. Any common scale cancels, so a FedSGD
    update (``-lr`` times the gradient) works as well as the gradient.

    Parameters
    ----------
    dW
        ``[out, in]`` gradient (or update) of the layer's weight.
    db
        ``[out]`` gradient (or update) of its bias.
    tol
        Rows with ``|db_i| <= tol`` carry no information and are ignored.

    Returns
    -------
    np.ndarray
        ``[in]`` float64: exactly the input for a batch of one; a mix of the
        inputs for a batch (see :func:`analytic_candidates`).

    Raises
    ------
    ValueError
        If the shapes do not fit, or every ``|db_i| <= tol``.

    """
    dW, db = _dense_grads(dW, db, tol=tol)
    keep = np.abs(db) > tol
    if not keep.any():
        raise ValueError(f"db: every entry is within tol={tol} of 0: the layer's bias gradient carries no input")
    return (db[keep] @ dW[keep]) / np.dot(db[keep], db[keep])


def analytic_candidates(dW, db, *, tol: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """``dW_i / db_i`` for every row with ``|db_i| > tol``: one candidate input per neuron.

    For a batch, row ``i`` is ``sum_j g_ij x_j / sum_j g_ij``, a weighted mix
    of the inputs that reached neuron ``i``. Behind a ReLU a neuron that only
    one input activated gives that input exactly (Fowl et al. 2022, "Robbing
    the Fed", build a layer to make this happen on purpose).

    Returns
    -------
    (candidates, rows)
        ``[k, in]`` float64 candidates and the ``[k]`` row indices they come from.

    """
    dW, db = _dense_grads(dW, db, tol=tol)
    rows = np.flatnonzero(np.abs(db) > tol)
    return dW[rows] / db[rows, None], rows


def idlg_label(last_weight_grad, *, last_bias_grad=None) -> int:
    """The label of a single input from the gradient of the output layer (iDLG, Zhao et al. 2020).

    With softmax cross-entropy the output layer's error is ``g = p - onehot(y)``:
    ``g_y = p_y - 1 < 0`` and ``g_c = p_c > 0`` for every other class. So

    - from the bias gradient (``= g``): the label is its only negative entry;
    - from the weight gradient (row ``c`` is ``g_c h``, ``h`` the last hidden
      activations): after a sigmoid or ReLU ``h >= 0``, and the label is the
      row with a negative sum (the rule of the iDLG paper). For any ``h``,
      the true row is the one whose dot product with every other row is
      negative; this function uses that sign pattern (then the row sum to
      break ties), so it also works after tanh.

    Parameters
    ----------
    last_weight_grad
        ``[num_classes, hidden]`` gradient (or a FedSGD update) of the last
        layer's weight, for a batch of one.
    last_bias_grad
        ``[num_classes]`` gradient of the last layer's bias, if available
        (then it alone decides).

    Returns
    -------
    int
        The recovered class.

    """
    dW = validate.array("last_weight_grad", last_weight_grad, ndim=2, dtype_kind="fiu").astype(np.float64)
    if dW.shape[0] < 2:
        raise ValueError(f"last_weight_grad has shape {dW.shape}: needs one row per class (at least 2)")
    if last_bias_grad is not None:
        db = validate.array("last_bias_grad", last_bias_grad, ndim=1, dtype_kind="fiu").astype(np.float64)
        if db.shape[0] != dW.shape[0]:
            raise ValueError(f"last_bias_grad has {db.shape[0]} entries: must have one per class ({dW.shape[0]})")
        return int(np.argmin(db))
    sign = np.sign(dW @ dW.T)
    np.fill_diagonal(sign, 0.0)
    score = sign.sum(axis=1)
    row_sum = dW.sum(axis=1)
    candidates = np.flatnonzero(score == score.min())
    return int(candidates[np.argmin(row_sum[candidates])])


def mean_probs(spec: models.ModelSpec, params, *, rng: int | np.random.Generator, num_probes: int = 64) -> np.ndarray:
    """The attacker's estimate of the model's average softmax output: its mean over random inputs.

    ``num_probes`` inputs uniform in [0, 1] (the pixel range). Near
    initialisation a model's output depends little on its input, so this is a
    good stand-in for the average prediction on the client's batch, which
    :func:`batch_labels` needs.

    Returns
    -------
    np.ndarray
        ``[num_classes]`` float64, summing to 1.

    """
    params = models.check_params(spec, params)
    validate.positive_int("num_probes", num_probes)
    gen = seeding.as_generator(rng)
    probe = torch.as_tensor(gen.random((num_probes, spec.in_features)))
    with torch.no_grad():
        logits = models.forward(spec, _tensors(params, torch.float64), probe)
        return torch.softmax(logits, dim=1).mean(0).numpy()


def batch_labels(last_bias_grad, *, num_images: int, mean_probs) -> np.ndarray:
    """The labels of a batch, repeats included, from the output layer's bias gradient.

    For the mean cross-entropy over ``B`` examples the bias gradient is
    ``db = mean_j p_j - counts / B``, where ``counts[c]`` is how many examples
    have label ``c``. So ``counts ~ B (p_bar - db)`` with ``p_bar`` an
    estimate of the mean prediction (:func:`mean_probs`); the estimate is
    rounded to whole counts summing to ``B`` (largest remainders). This is the
    idea behind the label attacks of Wainakh et al. (2022, "LLG") and Geng et
    al. (2021); for ``B = 1`` it agrees with :func:`idlg_label`. It is reliable
    near initialisation and degrades as the model's predictions come to
    depend on the input.

    Parameters
    ----------
    last_bias_grad
        ``[num_classes]`` gradient of the last layer's bias (or minus a FedSGD update).
    num_images
        The batch size ``B``.
    mean_probs
        ``[num_classes]`` estimated mean softmax output.

    Returns
    -------
    np.ndarray
        ``[num_images]`` int64 labels, sorted.

    """
    db = validate.array("last_bias_grad", last_bias_grad, ndim=1, dtype_kind="fiu").astype(np.float64)
    n = validate.positive_int("num_images", num_images)
    pbar = validate.array("mean_probs", mean_probs, ndim=1, dtype_kind="f").astype(np.float64)
    if pbar.shape != db.shape:
        raise ValueError(f"mean_probs has shape {pbar.shape}: must match last_bias_grad's {db.shape}")
    est = np.clip(n * (pbar - db), 0.0, None)
    counts = np.floor(est).astype(np.int64)
    extra = n - int(counts.sum())
    if extra > 0:
        counts[np.argsort(-(est - counts), kind="stable")[:extra]] += 1
    while extra < 0:  # too many: remove from the most over-counted class
        i = int(np.argmax(np.where(counts > 0, counts - est, -np.inf)))
        counts[i] -= 1
        extra += 1
    return np.repeat(np.arange(db.size), counts).astype(np.int64)


# ----------------------------------------------------------------------------
# optimisation-based inversion
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reconstruction:
    """The result of an optimisation attack.

    Attributes
    ----------
    x
        ``[num_images, in_features]`` float64 reconstructed inputs (not
        clipped; pixels of the true data lie in [0, 1]).
    labels
        ``[num_images]`` the labels the attack used (recovered or given).
    loss
        The final gradient-matching loss (lowest over restarts).
    evaluations
        Loss-and-gradient evaluations made by L-BFGS, over all restarts.
    seconds
        Wall time of the attack.

    """

    x: np.ndarray
    labels: np.ndarray
    loss: float
    evaluations: int
    seconds: float


def _match_loss(pred: list[torch.Tensor], target: list[torch.Tensor], mask, kind: str) -> torch.Tensor:
    if mask is not None:
        pred = [p[m] for p, m in zip(pred, mask)]
        target = [t[m] for t, m in zip(target, mask)]
    if kind == "l2":
        return sum(((p - t) ** 2).sum() for p, t in zip(pred, target))
    dot = sum((p * t).sum() for p, t in zip(pred, target))
    pn = sum((p * p).sum() for p in pred)
    tn = sum((t * t).sum() for t in target)
    return 1.0 - dot / (torch.sqrt(pn * tn) + 1e-300)


def _recover_labels(spec, params, grad: list[np.ndarray], num_images: int, gen) -> np.ndarray:
    """Labels from a gradient-scaled update's last layer (the batch count needs the gradient's scale)."""
    dw, db = grad[-2], grad[-1]
    if num_images == 1:
        return np.array([idlg_label(dw, last_bias_grad=db)], dtype=np.int64)
    return batch_labels(db, num_images=num_images, mean_probs=mean_probs(spec, params, rng=gen))


def _lbfgs(make_loss, x0: torch.Tensor, *, max_evals: int) -> tuple[torch.Tensor, float, int]:
    x = x0.clone().requires_grad_(True)
    count = [0]
    opt = torch.optim.LBFGS(
        [x],
        lr=1.0,
        max_iter=max_evals,
        max_eval=max_evals,
        history_size=100,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
    )

    def closure():
        count[0] += 1
        loss = make_loss(x)
        (grad,) = torch.autograd.grad(loss, [x])
        x.grad = grad
        return loss.detach()

    with torch.enable_grad():  # the loss differentiates w.r.t. the parameters, even under no_grad
        opt.step(closure)
        final = float(make_loss(x.detach()).detach())
    return x.detach(), final, count[0]


def _common(spec, params, update, *, name, num_images, labels, loss, max_evals, restarts, mask, dtype):
    params = models.check_params(spec, params)
    update = _check_update(spec, update, name=name)
    n = validate.positive_int("num_images", num_images)
    validate.one_of("loss", loss, LOSSES)
    validate.positive_int("max_evals", max_evals)
    validate.positive_int("restarts", restarts)
    validate.one_of("dtype", dtype, (torch.float32, torch.float64))
    mask = _check_mask(mask, update)
    if labels is not None:
        labels = _check_labels(spec, labels, n, name="labels")
    return params, update, n, mask, labels


def _run_restarts(make_loss, *, shape, dtype, gen, restarts, max_evals):
    best, best_loss, evals = None, math.inf, 0
    for _ in range(restarts):
        x0 = torch.as_tensor(gen.random(shape), dtype=dtype)
        x, loss, count = _lbfgs(make_loss, x0, max_evals=max_evals)
        evals += count
        if best is None or loss < best_loss:
            best, best_loss = x, loss
    return best.numpy().astype(np.float64), float(best_loss), evals


def invert_gradients(
    spec: models.ModelSpec,
    params,
    target,
    *,
    num_images: int = 1,
    labels=None,
    loss: str = "cosine",
    max_evals: int = 200,
    restarts: int = 1,
    mask=None,
    rng: int | np.random.Generator = 0,
    dtype=torch.float64,
) -> Reconstruction:
    """Inputs whose gradient matches ``target`` (DLG, Zhu et al. 2019; cosine loss of Geiping et al. 2020).

    Minimises over candidate inputs ``x'`` (``[num_images, in_features]``,
    started uniform in [0, 1])::

        cosine: 1 - <grad(x'), target> / (|grad(x')| |target|)
        l2:     |grad(x') - target|^2                      (the original DLG)

    where ``grad(x')`` is the gradient of the mean cross-entropy of
    ``(x', labels)`` at ``params``, with L-BFGS (strong-Wolfe line search).
    The cosine loss ignores the update's scale, so it needs neither the
    learning rate nor the clipping factor; the squared loss is the "naive"
    attacker that a rescaled update fools.

    Parameters
    ----------
    spec, params
        The model the server sent.
    target
        The observed gradient (or ``-update``): a list of arrays shaped like ``params``.
    num_images
        How many inputs the attacker assumes the batch holds (1..8 in the lessons).
    labels
        ``[num_images]`` labels; by default recovered from ``target``'s last
        layer (:func:`idlg_label` for one image; :func:`batch_labels` with
        :func:`mean_probs` for more).
    loss
        ``"cosine"`` or ``"l2"``.
    max_evals
        Budget of loss-and-gradient evaluations per restart.
    restarts
        Independent starting points; the lowest final loss wins.
    mask
        Optional list of boolean arrays like ``target``: compare only these
        entries (the *mask-aware* attacker against a sparsified update).
    rng
        Seed or Generator for the starting points.
    dtype
        ``torch.float64`` (default) or ``torch.float32``.

    Returns
    -------
    Reconstruction

    """
    params, target, n, mask, labels = _common(
        spec, params, target, name="target", num_images=num_images, labels=labels, loss=loss,
        max_evals=max_evals, restarts=restarts, mask=mask, dtype=dtype,
    )  # fmt: skip
    t0 = time.perf_counter()
    gen = seeding.as_generator(rng)
    if labels is None:
        labels = _recover_labels(spec, params, target, n, gen)
    w = _tensors(params, dtype, requires_grad=True)
    tg = _tensors(target, dtype)
    mk = None if mask is None else [torch.as_tensor(m) for m in mask]
    yt = torch.as_tensor(labels)

    def make_loss(x):
        g = torch.autograd.grad(F.cross_entropy(models.forward(spec, w, x), yt), w, create_graph=True)
        return _match_loss(list(g), tg, mk, loss)

    x, final, evals = _run_restarts(
        make_loss, shape=(n, spec.in_features), dtype=dtype, gen=gen, restarts=restarts, max_evals=max_evals
    )
    return Reconstruction(x, labels, final, evals, time.perf_counter() - t0)


def invert_update(
    spec: models.ModelSpec,
    params,
    delta,
    *,
    lr: float,
    steps: int,
    method: str = "unrolled",
    num_images: int = 1,
    labels=None,
    loss: str = "cosine",
    max_evals: int = 200,
    restarts: int = 1,
    mask=None,
    rng: int | np.random.Generator = 0,
    dtype=torch.float64,
) -> Reconstruction:
    """Reconstruct a client's inputs from its FedAvg update after ``steps`` local gradient steps.

    The client started from ``params`` and took ``steps`` full-batch gradient
    steps with learning rate ``lr`` on its ``num_images`` examples (FedAvg
    with ``B = inf``, ``E = steps``), then sent ``delta`` = new - old.

    - ``method="pseudo_gradient"``: attack ``-delta / (lr steps)`` as if it
      were one gradient (:func:`pseudo_gradient`, :func:`invert_gradients`).
      Exact for one step; the more the client moved, the worse the match.
    - ``method="unrolled"``: replay the ``steps`` updates on the candidate
      inputs, differentiating through all of them, and match the simulated
      delta to the observed one (Geiping et al. 2020, Sec. 6). It needs
      ``lr`` and ``steps`` (public protocol settings) and costs about
      ``steps`` times more per evaluation.

    Labels, loss, budget, mask and rng are as in :func:`invert_gradients`
    (labels are recovered from the update's last layer, as from a gradient).
    """
    validate.positive_float("lr", lr)
    validate.positive_int("steps", steps)
    validate.one_of("method", method, METHODS)
    params, delta, n, mask, labels = _common(
        spec, params, delta, name="delta", num_images=num_images, labels=labels, loss=loss,
        max_evals=max_evals, restarts=restarts, mask=mask, dtype=dtype,
    )  # fmt: skip
    if method == "pseudo_gradient" or steps == 1:
        return invert_gradients(
            spec, params, pseudo_gradient(delta, lr=lr, steps=steps), num_images=n, labels=labels, loss=loss,
            max_evals=max_evals, restarts=restarts, mask=mask, rng=rng, dtype=dtype,
        )  # fmt: skip
    t0 = time.perf_counter()
    gen = seeding.as_generator(rng)
    if labels is None:
        labels = _recover_labels(spec, params, pseudo_gradient(delta, lr=lr, steps=steps), n, gen)
    tg = _tensors(delta, dtype)
    mk = None if mask is None else [torch.as_tensor(m) for m in mask]
    yt = torch.as_tensor(labels)

    def make_loss(x):
        w0 = _tensors(params, dtype, requires_grad=True)
        w = _local_gd(spec, w0, x, yt, lr=lr, steps=steps, create_graph=True)
        return _match_loss([a - b for a, b in zip(w, w0)], tg, mk, loss)

    x, final, evals = _run_restarts(
        make_loss, shape=(n, spec.in_features), dtype=dtype, gen=gen, restarts=restarts, max_evals=max_evals
    )
    return Reconstruction(x, labels, final, evals, time.perf_counter() - t0)


# ----------------------------------------------------------------------------
# how good is a reconstruction
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Quality:
    """Reconstruction quality per true image.

    Attributes
    ----------
    order
        ``[n]``: ``x_hat[order[i]]`` is the reconstruction paired with ``x[i]``.
    psnr
        ``[n]`` PSNR in dB of each pair (reconstruction clipped to the pixel range).
    ssim
        ``[n]`` SSIM of each pair (``nan`` when the images are not square).

    """

    order: np.ndarray
    psnr: np.ndarray
    ssim: np.ndarray

    @property
    def mean_psnr(self) -> float:
        return float(np.mean(self.psnr))

    @property
    def mean_ssim(self) -> float:
        return float(np.mean(self.ssim))


@functools.lru_cache(maxsize=8)
def _permutations(n: int) -> np.ndarray:
    return np.array(list(itertools.permutations(range(n))), dtype=np.int64)


def _best_assignment(cost: np.ndarray) -> np.ndarray:
    """Permutation ``p`` minimising ``sum_i cost[i, p[i]]``: exhaustive up to 8, greedy above."""
    n = cost.shape[0]
    if n <= 8:
        perms = _permutations(n)
        totals = cost[np.arange(n), perms].sum(axis=1)
        return perms[int(np.argmin(totals))]
    order = np.full(n, -1, dtype=np.int64)
    c = cost.astype(np.float64).copy()
    for _ in range(n):
        i, j = np.unravel_index(np.argmin(c), c.shape)
        order[i] = j
        c[i, :], c[:, j] = np.inf, np.inf
    return order


def reconstruction_quality(x, x_hat, *, data_range: float = 1.0) -> Quality:
    """PSNR and SSIM of each true image against its best-matching reconstruction.

    A batch attack returns images in no particular order, so images are paired
    to minimise the total squared error (exhaustively for up to 8 images).
    Reconstructions are clipped to ``[0, data_range]`` first (the attacker knows
    the pixel range). SSIM uses a 3x3 window for images smaller than 7x7 and
    is ``nan`` for non-square inputs.

    Parameters
    ----------
    x
        ``[n, d]`` true inputs.
    x_hat
        ``[n, d]`` reconstructions.

    Returns
    -------
    Quality

    """
    x = validate.array("x", x, ndim=2, dtype_kind="fiu").astype(np.float64)
    x_hat = validate.array("x_hat", x_hat, ndim=2, dtype_kind="fiu").astype(np.float64)
    if x.shape != x_hat.shape:
        raise ValueError(f"x_hat has shape {x_hat.shape}: must match x's shape {x.shape}")
    r = validate.positive_float("data_range", data_range)
    x_hat = np.clip(x_hat, 0.0, r)
    cost = ((x[:, None, :] - x_hat[None, :, :]) ** 2).mean(axis=2)
    order = _best_assignment(cost)
    side = math.isqrt(x.shape[1])
    square = side * side == x.shape[1] and side >= 3
    win = 7 if side >= 7 else 3
    psnrs = np.array([metrics.psnr(x[i], x_hat[order[i]], data_range=r) for i in range(len(x))])
    ssims = np.array(
        [metrics.ssim(x[i], x_hat[order[i]], data_range=r, win_size=win) if square else np.nan for i in range(len(x))]
    )
    return Quality(order, psnrs, ssims)


# ----------------------------------------------------------------------------
# membership inference
# ----------------------------------------------------------------------------


def per_example_loss(spec: models.ModelSpec, params, x, y) -> np.ndarray:
    """Cross-entropy of ``params`` on each example: ``[n]`` float64."""
    x = _check_x(spec, x)
    y = _check_labels(spec, y, x.shape[0])
    params = models.check_params(spec, params)
    with torch.no_grad():
        w = _tensors(params, torch.float64)
        logits = models.forward(spec, w, torch.as_tensor(x, dtype=torch.float64))
        return F.cross_entropy(logits, torch.as_tensor(y), reduction="none").numpy()


@dataclass(frozen=True)
class MembershipResult:
    """How well a membership-inference attack separates members from non-members.

    Attributes
    ----------
    auc
        ROC AUC (0.5 = guessing).
    advantage
        ``max (TPR - FPR)`` over thresholds (Yeom et al. 2018).
    tpr_at_fpr
        TPR at false-positive rate ``fpr``.
    fpr
        The false-positive rate ``tpr_at_fpr`` is measured at.
    num_members, num_nonmembers
        Sizes of the two groups.
    tpr_at
        ``{fpr: tpr}`` at the low false-positive rates of Carlini et al.
        (2022), :data:`fedlab.metrics.LOW_FPRS` (0.1 % and 1 %) by default;
        ``nan`` where the FPR is below :attr:`smallest_fpr` (too few
        non-members to measure it, see :func:`fedlab.metrics.low_fpr_report`).

    """

    auc: float
    advantage: float
    tpr_at_fpr: float
    fpr: float
    num_members: int
    num_nonmembers: int
    tpr_at: dict = field(default_factory=dict, hash=False, compare=True)

    @property
    def smallest_fpr(self) -> float:
        """``1 / num_nonmembers``: the lowest non-zero false-positive rate these non-members can measure."""
        return metrics.smallest_fpr(self.num_nonmembers)

    def describe(self) -> str:
        """One line as the field reports it: AUC, TPR at each low FPR, and the smallest measurable FPR."""
        parts = [
            f"TPR {'not measurable' if math.isnan(t) else f'{100 * t:.1f} %'} at {100 * f:g} % FPR"
            for f, t in self.tpr_at.items()
        ]
        return (
            f"AUC {self.auc:.3f}; " + "; ".join(parts)
            + f" ({self.num_members:,} members, {self.num_nonmembers:,} non-members: "
            f"smallest measurable FPR {100 * self.smallest_fpr:.3g} %)"
        )


def loss_threshold_attack(
    member_losses, nonmember_losses, *, fpr: float = 0.01, low_fprs=metrics.LOW_FPRS
) -> MembershipResult:
    """The loss-threshold membership attack of Yeom et al. (2018).

    "An example is a member when the model's loss on it is low": the score is
    ``-loss``, and every threshold is tried (so the AUC and the advantage are
    those of the best threshold an attacker could pick, an upper bound for
    one who must choose it in advance).

    Parameters
    ----------
    member_losses
        ``[m]`` per-example losses on training examples.
    nonmember_losses
        ``[k]`` per-example losses on examples the model never saw.
    fpr
        The low false-positive rate at which to report the TPR.
    low_fprs
        The false-positive rates of :attr:`MembershipResult.tpr_at` (default
        0.1 % and 1 %, as Carlini et al. 2022 report).

    Returns
    -------
    MembershipResult

    """
    a = validate.array("member_losses", member_losses, ndim=1, dtype_kind="fiu").astype(np.float64)
    b = validate.array("nonmember_losses", nonmember_losses, ndim=1, dtype_kind="fiu").astype(np.float64)
    if a.size == 0 or b.size == 0:
        raise ValueError(f"member_losses has {a.size} and nonmember_losses {b.size} values: both must be non-empty")
    validate.fraction("fpr", fpr)
    labels = np.r_[np.ones(a.size, np.int64), np.zeros(b.size, np.int64)]
    scores = -np.r_[a, b]
    return MembershipResult(
        auc=metrics.roc_auc(labels, scores),
        advantage=metrics.advantage(labels, scores),
        tpr_at_fpr=metrics.tpr_at_fpr(labels, scores, fpr=fpr),
        fpr=float(fpr),
        num_members=int(a.size),
        num_nonmembers=int(b.size),
        tpr_at=metrics.low_fpr_report(labels, scores, fprs=low_fprs)["tpr_at"],
    )


def summarize(results: Sequence[MembershipResult]) -> dict[str, tuple[float, float]]:
    """Mean and standard deviation (``ddof=1``) of each figure over runs (e.g. seeds).

    Returns
    -------
    dict
        ``{"auc": (mean, std), "advantage": ..., "tpr_at_fpr": ...}``, and
        ``"tpr_at_<fpr>"`` (e.g. ``"tpr_at_0.001"``) for each low FPR the
        first run's :attr:`MembershipResult.tpr_at` has; the std is 0 for a
        single run, and a figure is ``nan`` if any run could not measure it.

    """
    if len(results) == 0:
        raise ValueError("results is empty: summarize needs at least one MembershipResult")
    columns = {name: [getattr(r, name) for r in results] for name in ("auc", "advantage", "tpr_at_fpr")}
    for f in results[0].tpr_at:
        columns[f"tpr_at_{f:g}"] = [r.tpr_at.get(f, math.nan) for r in results]
    out = {}
    for name, vals in columns.items():
        v = np.array(vals, dtype=np.float64)
        out[name] = (float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0)
    return out
