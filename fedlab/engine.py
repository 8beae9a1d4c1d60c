"""The fast simulation engine: every sampled client of a round trained at once.

:func:`fedlab.fedavg.local_sgd` trains one client with a PyTorch module and
autograd: clear, and the reference. A round of 100 clients then costs 100
Python loops of tiny matmuls. Here the clients become a *batch dimension*:
client ``k``'s weights are slice ``k`` of a stacked tensor ``[S, in, out]``,
step ``t`` of every client runs as one batched matmul (``torch.bmm``), and the
backward pass of the dense models is written out by hand::

    z_l = h_{l-1} W_l + b_l,  h_l = act(z_l),  p = softmax(z_L)
    g_L = (p - onehot(y)) * w          # w = 1 / batch size, 0 for padding
    dW_l = h_{l-1}^T g_l,  db_l = sum g_l,  g_{l-1} = (g_l W_l^T) * act'(z_{l-1})

Clients hold different numbers of examples: every client's epoch is cut into
the same number of steps, and the examples a smaller client does not have get
weight 0 (a step where a client has no example leaves it unchanged, also under
FedProx). The CNN takes the generic path, ``torch.func.vmap`` over
``torch.func.grad`` of :func:`fedlab.models.forward`.

The result equals :func:`fedlab.fedavg.local_sgd` run per client with the same
shuffle keys, up to float32 rounding (``tests/test_engine.py`` is the oracle
test; ``benchmarks/fedavg_engine.py`` measures the speed-up).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fedlab import models, updates, validate


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run the block with ``torch.set_num_threads(threads)`` and restore the old setting."""
    if threads is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@dataclass(frozen=True)
class Packed:
    """All clients' data padded into one block, built once per run by :func:`pack`.

    ``x``: ``[K, n_max, d]`` float32, ``y``: ``[K, n_max]`` int64 (padding rows
    are zeros and never used), ``sizes``: ``[K]`` examples per client.
    """

    x: torch.Tensor
    y: torch.Tensor
    sizes: np.ndarray


def pack(clients: Sequence[tuple[np.ndarray, np.ndarray]]) -> Packed:
    """Pad every client's ``(x, y)`` to the largest client and stack them."""
    if len(clients) == 0:
        raise ValueError("clients is empty: pack needs at least one (x, y)")
    sizes = np.array([len(y) for _, y in clients], dtype=np.int64)
    d = np.asarray(clients[0][0]).shape[1]
    x = np.zeros((len(clients), int(sizes.max()), d), dtype=np.float32)
    y = np.zeros((len(clients), int(sizes.max())), dtype=np.int64)
    for k, (xk, yk) in enumerate(clients):
        x[k, : sizes[k]] = xk
        y[k, : sizes[k]] = yk
    return Packed(torch.from_numpy(x), torch.from_numpy(y), sizes)


@dataclass(frozen=True)
class Cohort:
    """The outputs of one round's clients, stacked.

    ``final[i]`` is ``[S, *shape_i]``: every client's parameters after local
    training; ``start`` the parameters they all received. A client's delta is
    ``final[i][k] - start[i]``, formed only when asked for (:meth:`deltas`).
    """

    final: list
    start: list
    num_examples: np.ndarray
    losses: np.ndarray
    steps: np.ndarray

    def aggregate(self) -> list:
        """Weighted average of the deltas by example count, as :func:`fedlab.fedavg.aggregate`.

        Uses ``sum_k w_k (final_k - start) = (sum_k w_k final_k) - start`` with
        ``w_k = n_k / sum n`` (one matrix-vector product per tensor, float32).
        """
        w = torch.as_tensor(self.num_examples / self.num_examples.sum(), dtype=torch.float32)
        return [torch.tensordot(w, d, dims=1).numpy() for d in self.deltas()] if self.stacked else [
            (torch.tensordot(w, f, dims=1) - s).numpy() for f, s in zip(self.final, self.start)]  # fmt: skip

    def deltas(self) -> list:
        """Stacked deltas, ``[S, *shape_i]`` per tensor."""
        return [f - (s if self.stacked else s.unsqueeze(0)) for f, s in zip(self.final, self.start)]

    @property
    def stacked(self) -> bool:
        """True when every client started from its own parameters (``start[i]`` is ``[S, *shape_i]``)."""
        return self.start[0].dim() == self.final[0].dim()

    def mean_loss(self) -> float:
        """Training loss averaged over clients, weighted by example count."""
        w = self.num_examples.astype(np.float64)
        return float(np.dot(w, self.losses) / w.sum())

    def outputs(self) -> list:
        """One :class:`fedlab.fedavg.ClientOutput` per client (for code that wants them singly)."""
        deltas = [d.numpy() for d in self.deltas()]
        return [
            updates.ClientOutput(
                [d[k].copy() for d in deltas],
                int(self.num_examples[k]),
                {"loss": float(self.losses[k]), "steps": float(self.steps[k])},
            )
            for k in range(len(self.num_examples))
        ]


def _plan(sizes: np.ndarray, keys: np.ndarray, batch_size: int | None):
    """Which examples each client uses at each step.

    Returns ``orders [S, E, T * b]`` (each client's epoch order, padding
    last), ``b`` (the batch width), ``T`` (steps per epoch of the largest
    client), ``counts [S, T]`` (real examples of each client at step ``t``)
    and ``steps [S]`` (SGD steps per client).
    """
    S, E, nmax = keys.shape
    pos = np.arange(nmax)
    keys = np.where(pos[None, None, :] < sizes[:, None, None], keys, 2.0)  # padding sorts last
    orders = np.argsort(keys, axis=2, kind="stable")
    b = nmax if batch_size is None else batch_size
    T = math.ceil(nmax / b)
    if T * b > nmax:
        orders = np.concatenate([orders, np.zeros((S, E, T * b - nmax), dtype=orders.dtype)], axis=2)
    counts = np.clip(sizes[:, None] - b * np.arange(T)[None, :], 0, b)
    steps = E * (counts > 0).sum(axis=1)
    return orders, b, T, counts, steps


def train(
    spec: models.ModelSpec,
    params: list,
    packed: Packed,
    chosen: np.ndarray,
    *,
    keys: np.ndarray,
    batch_size: int | None,
    lr: float,
    mu: float = 0.0,
    max_steps: np.ndarray | None = None,
    stacked: bool = False,
    anchor: list | None = None,
    frozen: Sequence[int] = (),
) -> Cohort:
    """Train the clients ``chosen`` (indices into ``packed``) from ``params``, all at once.

    Parameters
    ----------
    params
        The parameters every client starts from (``stacked=False``), or one
        start per client, ``[S, *shape_i]`` per tensor (``stacked=True``: the
        personal state of lesson 12, e.g. a personal head on a shared body, or
        Ditto's personal models).
    mu, anchor
        Proximal pull ``mu/2 ||w - anchor||^2`` (FedProx; Ditto's ``lambda``).
        ``anchor`` defaults to the start (FedProx); Ditto passes the global
        model while the clients start from their own personal models.
    keys
        ``[S, epochs, n_max]`` shuffle keys; client ``k`` uses
        ``keys[k, :, :n_k]`` exactly as :func:`fedlab.fedavg.epoch_orders` does.
    max_steps
        ``[S]`` step limits (stragglers), or ``None`` for all steps.
    frozen
        Indices of parameter tensors that are not updated (their gradient is
        computed where a layer below needs it, never applied). FedRep (lesson 12)
        trains the head with the body frozen, then the body with the head frozen.

    Returns
    -------
    A :class:`Cohort` equal to ``[local_sgd(...) for k in chosen]``.

    """
    chosen = np.asarray(chosen, dtype=np.int64)
    keys = validate.array("keys", keys, ndim=3)
    sizes = packed.sizes[chosen]
    S, E, nmax = keys.shape
    if S != len(chosen) or nmax < sizes.max():
        raise ValueError(f"keys has shape {keys.shape}: must be [{len(chosen)}, epochs, >= {sizes.max()}]")
    keys = keys[:, :, : int(sizes.max())]
    if stacked:
        params = _check_stacked(spec, params, S)
    else:
        params = models.check_params(spec, params)
    if anchor is not None:
        anchor = [torch.from_numpy(p) for p in models.check_params(spec, anchor, name="anchor")]
    frozen = updates.check_frozen(frozen, len(params))
    orders, b, T, counts, steps = _plan(sizes, keys, batch_size)
    if max_steps is not None:
        max_steps = np.asarray(max_steps, dtype=np.int64)
        if max_steps.shape != (S,) or np.any(max_steps < 1):
            raise ValueError(f"max_steps={max_steps!r}: must be {S} positive ints, one per client")
    # counts[s, e, t]: real examples of client s at step t of epoch e (0 once a straggler has stopped)
    per_epoch = (counts > 0).sum(axis=1)  # steps per epoch of each client
    ordinal = np.arange(E)[None, :, None] * per_epoch[:, None, None] + np.arange(T)[None, None, :]
    counts = np.repeat(counts[:, None, :], E, axis=1)
    if max_steps is not None:
        counts = np.where(ordinal < max_steps[:, None, None], counts, 0)
        steps = np.minimum(steps, max_steps)
    rows = torch.as_tensor(chosen)[:, None]
    orders = torch.as_tensor(orders)
    weights = torch.as_tensor((1.0 / np.maximum(counts, 1)).astype(np.float32))  # [S, E, T]
    batches = []
    for e in range(E):
        for t in range(T):
            w = int(counts[:, e, t].max())  # the widest client at this step: narrower batches are padded to it
            if w == 0:
                continue
            idx = orders[:, e, t * b : t * b + w]
            valid = torch.as_tensor(np.arange(w)[None, :] < counts[:, e, t : t + 1])
            wt = weights[:, e, t : t + 1] * valid  # [S, w]: 1/count on real examples, 0 on padding
            active = torch.as_tensor(counts[:, e, t] > 0) if mu else None
            batches.append((packed.x[rows, idx], packed.y[rows, idx], wt, active))
    start = [torch.from_numpy(p) for p in params]
    pull = start if anchor is None else anchor
    trainer = _train_generic if spec.kind == "cnn" else _train_dense
    final, loss_sum = trainer(spec, start, batches, lr=lr, mu=mu, anchor=pull, stacked=stacked, frozen=frozen)
    return Cohort(final, start, sizes.copy(), loss_sum.numpy().astype(np.float64) / np.maximum(steps, 1), steps)


def _act_grad(name: str, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    if name == "relu":
        return z > 0
    if name == "sigmoid":
        return h * (1 - h)
    return 1 - h * h


def _check_stacked(spec: models.ModelSpec, params, num: int) -> list:
    """Per-client starts: ``[num, *shape_i]`` float32 per tensor of ``spec``."""
    like = models.shapes(spec)
    if not isinstance(params, (list, tuple)) or len(params) != len(like):
        raise ValueError(f"params is a {type(params).__name__} of length {len(params)}: stacked params need "
                         f"{len(like)} tensors of shape [{num}, *shape]")  # fmt: skip
    out = []
    for i, (p, shape) in enumerate(zip(params, like)):
        p = np.asarray(p.detach() if isinstance(p, torch.Tensor) else p)
        if p.shape != (num, *shape):
            raise ValueError(f"params[{i}] has shape {p.shape}: stacked params need {(num, *shape)}")
        out.append(np.ascontiguousarray(p, dtype=np.float32))
    return out


def _train_dense(spec, start, batches, *, lr, mu, anchor, stacked=False, frozen=frozenset()):
    """Logistic regression and MLPs with the backward pass written out (see module docstring).

    Weights keep torch's layout ``[S, out, in]``. Before the first step all
    clients share the received weights, so they stay one unexpanded tensor
    and the first update creates the stacked copies (no ``repeat``).
    """
    S = batches[0][0].shape[0]
    n_layers = len(start) // 2
    if stacked:  # every client its own start (personal state): clone, the updates below are in place
        Ws = [start[2 * i].clone() for i in range(n_layers)]  # [S, out, in]
        bs = [start[2 * i + 1].clone() for i in range(n_layers)]  # [S, out]
    else:
        Ws = [start[2 * i].unsqueeze(0) for i in range(n_layers)]  # [1 or S, out, in]
        bs = [start[2 * i + 1].unsqueeze(0) for i in range(n_layers)]  # [1 or S, out]
    loss_sum = torch.zeros(S)
    act = spec.activation
    # the lowest layer with a trainable tensor: the backward pass stops there (nothing below is updated)
    lowest = min((j // 2 for j in range(2 * n_layers) if j not in frozen), default=n_layers)
    for x, y, w, active in batches:
        hs, zs = [x], []
        for i in range(n_layers):
            W = Ws[i]
            if W.shape[0] == 1 and bs[i].shape[0] == 1:  # still shared: one plain matmul for all clients
                z = torch.addmm(bs[i][0], hs[-1].reshape(-1, W.shape[2]), W[0].t()).view(S, -1, W.shape[1])
            else:  # (a frozen tensor stays shared, [1, ...], while the other one of its layer is per client)
                z = torch.baddbmm(bs[i].unsqueeze(1), hs[-1], W.expand(S, -1, -1).transpose(1, 2))
            zs.append(z)
            if i < n_layers - 1:
                hs.append(torch.relu(z) if act == "relu" else torch.sigmoid(z) if act == "sigmoid" else torch.tanh(z))
        logp = torch.log_softmax(zs[-1], dim=-1)
        logp_y = logp.gather(2, y.unsqueeze(-1)).squeeze(-1)  # [S, b]
        loss_sum -= (w * logp_y).sum(1)
        g = logp.exp()
        g.scatter_add_(2, y.unsqueeze(-1), torch.full_like(logp_y, -1.0).unsqueeze(-1))
        g.mul_(w.unsqueeze(-1))  # d(mean CE)/dz = (p - onehot) / count
        for i in reversed(range(lowest, n_layers)):
            W, shared = Ws[i], Ws[i].shape[0] == 1
            gb = g.sum(1)
            g_in = None
            if i > lowest:  # gradient for the layer below, with the weights before this step's update
                g_in = (torch.matmul(g, W[0]) if shared else torch.bmm(g, W)) * _act_grad(act, hs[i], zs[i - 1])
            m = active.to(g.dtype) if mu else None
            if 2 * i in frozen:
                pass
            elif mu:
                gW = (torch.bmm(g.transpose(1, 2), hs[i]) + mu * (W - anchor[2 * i])) * m[:, None, None]
                Ws[i] = W - lr * gW if shared else W.sub_(gW, alpha=lr)
            elif shared:  # W - lr * g^T h, fused; creates the per-client copies
                Ws[i] = torch.baddbmm(W, g.transpose(1, 2), hs[i], alpha=-lr)
            else:
                W.baddbmm_(g.transpose(1, 2), hs[i], alpha=-lr)
            if 2 * i + 1 not in frozen:
                if mu:
                    gb = (gb + mu * (bs[i] - anchor[2 * i + 1])) * m[:, None]
                bs[i] = bs[i] - lr * gb if bs[i].shape[0] == 1 else bs[i].sub_(gb, alpha=lr)
            if g_in is not None:
                g = g_in
    final = []
    for i in range(n_layers):
        final += [Ws[i].expand(S, -1, -1), bs[i].expand(S, -1)]
    return final, loss_sum


def _train_generic(spec, start, batches, *, lr, mu, anchor, stacked=False, frozen=frozenset()):
    """Any model: vmap over clients of the autograd gradient of the weighted loss."""
    from torch.func import grad_and_value, vmap

    S = batches[0][0].shape[0]

    def loss_fn(tensors, x, y, w):
        logits = models.forward(spec, list(tensors), x)
        return (F.cross_entropy(logits, y, reduction="none") * w).sum()

    step = vmap(grad_and_value(loss_fn))
    tensors = [p.clone() if stacked else p.unsqueeze(0).repeat(S, *([1] * p.ndim)) for p in start]
    loss_sum = torch.zeros(S)
    for x, y, w, active in batches:
        grads, loss = step(tuple(tensors), x, y, w)
        loss_sum += loss
        with torch.no_grad():
            for j, (p, gr, p0) in enumerate(zip(tensors, grads, anchor)):
                if j in frozen:
                    continue
                if mu:
                    gr = (gr + mu * (p - p0)) * active.to(gr.dtype).view(-1, *([1] * (p.ndim - 1)))
                p.sub_(lr * gr)
    return tensors, loss_sum
