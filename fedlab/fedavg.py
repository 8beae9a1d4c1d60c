"""Federated averaging from scratch (McMahan et al. 2017, Algorithm 1).

Three small pure functions over the course's one parameter representation
(:mod:`fedlab.params`: a list of float32 arrays), in the shape of TFF's
``simple_fedavg``:

- :func:`client_update` - a client starts from the global parameters and runs
  ``epochs`` passes of minibatch SGD (batch size ``B``, learning rate ``lr``)
  over its own data, then returns a :class:`ClientOutput` holding its *delta*
  (new minus received parameters), its example count and metrics;
- :func:`aggregate` - the server's weighted average of the deltas,
  ``sum_k n_k * delta_k / sum_k n_k`` (weights are example counts, never an
  unweighted mean);
- :func:`server_update` - ``w <- w + server_lr * delta``.

:func:`sample_clients` picks ``m = max(round(C*K), 1)`` clients per round, and
:func:`run` puts the pieces together into rounds, recording a
:class:`History`. FedSGD is the special case ``epochs=1, batch_size=None``
(one full-batch gradient step per client), and FedProx (Li et al. 2020) is the
``mu`` argument: the local objective gains ``mu/2 * ||w - w_global||^2``.

Randomness. A client's only random choice is the order in which it visits its
examples. Each epoch's order is ``argsort`` of a row of uniform *shuffle keys*
(:func:`epoch_orders`), so the same keys give the same training whether
clients are trained one by one (``engine="loop"``) or all at once by the
batched engine in :mod:`fedlab.engine` (``engine="batched"``, the default).
In :func:`run`, round ``r`` draws everything (which clients, and every
client's keys) from ``seeding.derive(seed, r)``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from fedlab import models, seeding, validate
from fedlab import params as P


@dataclass(frozen=True)
class ClientOutput:
    """What a client sends back after local training.

    Attributes
    ----------
    delta
        New parameters minus the ones received (same shapes as the model's).
    num_examples
        ``n_k``, the client's number of training examples: its aggregation weight.
    metrics
        ``{"loss": mean training loss over its steps, "steps": number of SGD steps}``.

    """

    delta: list
    num_examples: int
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ServerState:
    """The global model after ``round`` rounds."""

    params: list
    round: int = 0


def _check_xy(x, y, spec: models.ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    x = validate.array("x", x, ndim=2)
    y = validate.array("y", y, ndim=1, dtype_kind="iu")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]} labels: they must match")
    if x.shape[0] == 0:
        raise ValueError("x has 0 rows: a client needs at least one example")
    if x.shape[1] != spec.in_features:
        raise ValueError(f"x has {x.shape[1]} features: the model takes in_features={spec.in_features}")
    if y.size and (y.min() < 0 or y.max() >= spec.num_classes):
        raise ValueError(f"y has labels in [{y.min()}, {y.max()}]: must lie in [0, {spec.num_classes - 1}]")
    return x, y


def _check_hyper(epochs, batch_size, lr, mu) -> None:
    validate.positive_int("epochs", epochs)
    if batch_size is not None:
        validate.positive_int("batch_size", batch_size)
    validate.positive_float("lr", lr)
    validate.positive_float("mu", mu, allow_zero=True)


def epoch_orders(keys: np.ndarray) -> np.ndarray:
    """Visiting order per epoch: ``argsort`` of each row of shuffle keys.

    Parameters
    ----------
    keys
        ``[epochs, n]`` uniform random numbers.

    Returns
    -------
    ``[epochs, n]`` int64, each row a permutation of ``range(n)``.

    """
    keys = validate.array("keys", keys, ndim=2)
    return np.argsort(keys, axis=1, kind="stable").astype(np.int64)


def steps_per_epoch(num_examples: int, batch_size: int | None) -> int:
    """``ceil(n / B)``; one step when ``batch_size`` is None (full batch)."""
    return 1 if batch_size is None else math.ceil(num_examples / batch_size)


def local_sgd(
    spec: models.ModelSpec,
    params: list,
    x: np.ndarray,
    y: np.ndarray,
    *,
    orders: np.ndarray,
    batch_size: int | None,
    lr: float,
    mu: float = 0.0,
    max_steps: int | None = None,
) -> ClientOutput:
    """Minibatch SGD over ``(x, y)`` visiting examples in ``orders``: the plain PyTorch reference.

    Each step takes the next ``batch_size`` examples of the epoch's order (the
    last batch of an epoch may be smaller), computes the mean cross-entropy
    with autograd and applies ``w <- w - lr * (grad + mu * (w - w_global))``.

    Parameters
    ----------
    orders
        ``[epochs, n]`` permutations, e.g. from :func:`epoch_orders`.
    batch_size
        ``B``; ``None`` means the full local batch (FedSGD's ``B = inf``).
    max_steps
        Stop after this many SGD steps (a *straggler* that finishes only part
        of its work); ``None`` runs every epoch to the end.

    """
    x, y = _check_xy(x, y, spec)
    params = models.check_params(spec, params)
    if max_steps is not None:
        validate.positive_int("max_steps", max_steps)
    orders = validate.array("orders", orders, ndim=2, dtype_kind="iu")
    n = x.shape[0]
    if orders.shape[1] != n:
        raise ValueError(f"orders has shape {orders.shape}: each row must be a permutation of {n} examples")
    _check_hyper(orders.shape[0], batch_size, lr, mu)
    module = models.build(spec, params)
    start = [p.detach().clone() for p in module.parameters()]
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long)
    b = n if batch_size is None else batch_size
    losses = []
    for order in orders:
        for s in range(0, n, b):
            if max_steps is not None and len(losses) >= max_steps:
                break
            idx = torch.as_tensor(order[s : s + b])
            loss = F.cross_entropy(module(xt[idx]), yt[idx])
            module.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():
                for p, p0 in zip(module.parameters(), start):
                    step = p.grad if mu == 0 else p.grad + mu * (p - p0)
                    p.sub_(lr * step)
            losses.append(loss.item())
    new = models.get_params(module)
    delta = [a - b_ for a, b_ in zip(new, params)]
    return ClientOutput(delta, n, {"loss": float(np.mean(losses)), "steps": float(len(losses))})


def client_update(
    spec: models.ModelSpec,
    params: list,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int | None,
    lr: float,
    rng: int | np.random.Generator,
    mu: float = 0.0,
    max_steps: int | None = None,
) -> ClientOutput:
    """ClientUpdate of McMahan et al. 2017: ``epochs`` passes of minibatch SGD from ``params``.

    This is the one client-update signature the whole course uses (PySyft,
    secure aggregation and Flower lessons call it unchanged).

    Parameters
    ----------
    spec
        The model (see :mod:`fedlab.models`).
    params
        The global parameters received from the server.
    x, y
        The client's data: ``[n, in_features]`` floats and ``[n]`` int labels.
    epochs
        ``E``, passes over the local data.
    batch_size
        ``B``; ``None`` for the full batch.
    lr
        Learning rate.
    rng
        Seed or Generator for the shuffle keys (``rng.random((epochs, n))``).
    mu
        FedProx proximal weight; ``0`` is plain FedAvg.
    max_steps
        Stop after this many SGD steps (a straggler); ``None`` for all of them.

    """
    x, y = _check_xy(x, y, spec)
    _check_hyper(epochs, batch_size, lr, mu)
    keys = seeding.as_generator(rng).random((epochs, x.shape[0]))
    return local_sgd(
        spec, params, x, y, orders=epoch_orders(keys), batch_size=batch_size, lr=lr, mu=mu, max_steps=max_steps
    )


def aggregate(outputs: Sequence[ClientOutput]) -> list:
    """Weighted average of the clients' deltas: ``sum_k n_k delta_k / sum_k n_k``.

    Accumulates in float64 so the result does not depend on client order
    beyond float64 rounding.
    """
    if len(outputs) == 0:
        raise ValueError("outputs is empty: aggregate needs at least one ClientOutput")
    weights = np.array([o.num_examples for o in outputs], dtype=np.float64)
    if np.any(weights <= 0):
        raise ValueError(f"num_examples={weights.tolist()}: every client must report a positive count")
    like = outputs[0].delta
    total = weights.sum()
    result = []
    for i in range(len(like)):
        acc = np.zeros(np.shape(like[i]), dtype=np.float64)
        for o, w in zip(outputs, weights):
            if np.shape(o.delta[i]) != np.shape(like[i]):
                raise ValueError(
                    f"a client's delta[{i}] has shape {np.shape(o.delta[i])}: expected {np.shape(like[i])}"
                )
            acc += w * np.asarray(o.delta[i], dtype=np.float64)
        result.append((acc / total).astype(np.float32))
    return result


def server_update(state: ServerState, delta: list, *, server_lr: float = 1.0) -> ServerState:
    """``w <- w + server_lr * delta`` and advance the round counter."""
    validate.positive_float("server_lr", server_lr)
    P.check_like(delta, state.params, name="delta")
    return ServerState(P.add(state.params, delta, scale=server_lr), state.round + 1)


def num_sampled(num_clients: int, fraction: float) -> int:
    """``m = max(round(C * K), 1)``."""
    return max(1, int(round(fraction * num_clients)))


def sample_clients(num_clients: int, *, fraction: float, rng: int | np.random.Generator) -> np.ndarray:
    """Choose ``m = max(round(C*K), 1)`` distinct clients uniformly; returned sorted ascending.

    A **fixed-size** cohort, sampled uniformly without replacement (as Flower 1.42's ``sample_nodes``
    does with ``random.sample``). Its privacy accountant is ``fedlab.dp.epsilon(...,
    sampling="fixed_size")`` (replace-one neighbours), not the Poisson one: see
    :func:`fedlab.dp.epsilon_of_run`, which refuses the mix-up.
    """
    validate.positive_int("num_clients", num_clients)
    validate.fraction("fraction", fraction)
    gen = seeding.as_generator(rng)
    m = num_sampled(num_clients, fraction)
    if m == num_clients:
        return np.arange(num_clients, dtype=np.int64)
    return np.sort(gen.choice(num_clients, size=m, replace=False)).astype(np.int64)


@dataclass(frozen=True)
class RoundRecord:
    """One round of :func:`run`.

    ``clients`` were sampled; ``reported`` of them had their update aggregated
    (the others dropped out, or were stragglers under the ``"drop"`` policy).
    ``seconds`` is the time of the training part of the round (client updates
    and aggregation), not of the evaluation. ``bytes_down`` = model size x
    sampled clients (float32); ``bytes_up`` = what the reporting clients sent
    (float32 deltas, or what the ``uplink`` compressor says it sent).
    ``sampled_ids`` and ``reported_ids`` name the clients (indices into
    ``clients`` of :func:`run`), for debugging who took part; they are empty
    when a producer does not record them.
    """

    round: int
    clients: int
    reported: int
    train_loss: float
    test_loss: float
    test_accuracy: float
    bytes_up: int
    bytes_down: int
    seconds: float
    sampled_ids: tuple[int, ...] = ()
    reported_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class History:
    """The per-round record of a run; ``column("test_accuracy")`` gives one series to plot.

    ``sampling`` says how the run chose its clients, and so which privacy accountant applies to it
    (:func:`fedlab.dp.epsilon_of_run`): ``"fixed_size"`` for :func:`run` (:func:`sample_clients`),
    ``"poisson"`` for :func:`fedlab.dp.run`.
    """

    records: tuple = ()
    sampling: str = "fixed_size"

    def __len__(self) -> int:
        return len(self.records)

    def column(self, name: str) -> np.ndarray:
        """Values of one field over the rounds (``sampled_ids``/``reported_ids``: an object array of tuples)."""
        validate.one_of("name", name, RoundRecord.__dataclass_fields__.keys())
        values = [getattr(r, name) for r in self.records]
        if name.endswith("_ids"):
            out = np.empty(len(values), dtype=object)
            out[:] = values
            return out
        return np.array(values)

    def rounds_to(self, accuracy: float) -> int | None:
        """First round whose test accuracy reaches ``accuracy``, or ``None`` if none does."""
        for r in self.records:
            if r.test_accuracy >= accuracy:
                return r.round
        return None

    @property
    def final_accuracy(self) -> float:
        return self.records[-1].test_accuracy if self.records else float("nan")


def run(
    spec: models.ModelSpec,
    clients: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    rounds: int,
    seed: int,
    fraction: float = 1.0,
    epochs: int = 1,
    batch_size: int | None = 10,
    lr: float = 0.1,
    mu: float = 0.0,
    server_lr: float = 1.0,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    init: list | None = None,
    engine: str = "batched",
    threads: int | None = 1,
    stop_at: float | None = None,
    dropout_rate: float = 0.0,
    straggler_rate: float = 0.0,
    stragglers: str = "partial",
    uplink: Callable | None = None,
    callback: Callable[[RoundRecord], None] | None = None,
) -> tuple[list, History]:
    """Federated averaging for ``rounds`` rounds over ``clients`` (a list of ``(x, y)``).

    Parameters
    ----------
    seed
        Determines the initial model (``derive(seed, 0)``) and each round's
        choices (``derive(seed, r)``).
    fraction
        ``C``: the fraction of clients sampled each round.
    engine
        ``"batched"`` (all sampled clients at once, :mod:`fedlab.engine`) or
        ``"loop"`` (one :func:`local_sgd` per client). Both give the same
        result up to float rounding.
    threads
        Torch threads while training (restored afterwards). One is the default:
        the batched engine's many small matmuls gain nothing from a second
        thread and a busy 2-core laptop can slow down 5x with two (see
        ``benchmarks/fedavg_engine.py``). ``None`` leaves torch's setting.
    test
        ``(x, y)`` evaluated after every round.
    stop_at
        Stop early once the test accuracy reaches this value (needs ``test``);
        used to count rounds to a target accuracy (McMahan et al. 2017, Table 2).
    dropout_rate
        Probability that a sampled client vanishes mid-round (its update never
        arrives). If every client drops, the model stays as it was.
    straggler_rate
        Probability that a (remaining) client is a straggler: it completes
        only ``max(1, floor(u * S_k))`` of its ``S_k`` steps, ``u ~ U(0, 1)``.
    stragglers
        ``"partial"``: aggregate what stragglers finished (as FedProx does);
        ``"drop"``: discard their updates (a deadline, as in FedAvg).
    uplink
        ``uplink(delta, client=k, rng=g) -> (decoded_delta, nbytes)``: what a
        client's delta becomes on the way up (compression, lesson 04) and how
        many bytes it took. ``None`` sends float32 deltas.
    callback
        Called with each :class:`RoundRecord` as it is made (for progress bars).

    Each round draws, from ``derive(seed, r)`` and in this order: the sampled
    clients, every client's shuffle keys, then one uniform per sampled client
    for dropout, for being a straggler, and for the straggler's share of work.

    Returns
    -------
    (params, history)

    """
    from fedlab import engine as E

    validate.positive_int("rounds", rounds)
    validate.fraction("fraction", fraction)
    validate.one_of("engine", engine, ("batched", "loop"))
    _check_hyper(epochs, batch_size, lr, mu)
    if threads is not None:
        validate.positive_int("threads", threads)
    validate.fraction("dropout_rate", dropout_rate, include_zero=True)
    validate.fraction("straggler_rate", straggler_rate, include_zero=True)
    validate.one_of("stragglers", stragglers, ("partial", "drop"))
    if stop_at is not None:
        validate.fraction("stop_at", stop_at)
        if test is None:
            raise ValueError("stop_at is set but test is None: stopping at a target accuracy needs test data")
    if len(clients) == 0:
        raise ValueError("clients is empty: run needs at least one (x, y) client")
    clients = [_check_xy(x, y, spec) for x, y in clients]
    sizes = np.array([len(y) for _, y in clients])
    nmax = int(sizes.max())
    if init is not None:
        params = models.check_params(spec, init, name="init")
    else:
        params = models.init_params(spec, rng=seeding.derive(seed, 0))
    state = ServerState(params, 0)
    model_bytes = P.num_bytes(params)
    packed = E.pack(clients) if engine == "batched" else None
    records = []
    with E.torch_threads(threads):
        for r in range(1, rounds + 1):
            t0 = time.perf_counter()
            g = seeding.derive(seed, r)
            chosen = sample_clients(len(clients), fraction=fraction, rng=g)
            keys = g.random((len(clients), epochs, nmax))
            u_drop, u_slow, u_work = g.random(len(chosen)), g.random(len(chosen)), g.random(len(chosen))
            per_epoch = np.ones(len(chosen), np.int64) if batch_size is None else -(-sizes[chosen] // batch_size)
            total = epochs * per_epoch
            slow = (u_slow < straggler_rate) & (u_drop >= dropout_rate)
            keep = (u_drop >= dropout_rate) & ~(slow & (stragglers == "drop"))
            limit = np.where(slow, np.maximum(1, np.floor(u_work * total)).astype(np.int64), total)
            reporting, limit = chosen[keep], limit[keep]
            if len(reporting) == 0:
                delta, train_loss, up = [np.zeros_like(p) for p in state.params], float("nan"), 0
            else:
                if engine == "batched":
                    cohort = E.train(
                        spec,
                        state.params,
                        packed,
                        reporting,
                        keys=keys[reporting],
                        batch_size=batch_size,
                        lr=lr,
                        mu=mu,
                        max_steps=limit if slow.any() else None,
                    )
                    outs = cohort.outputs() if uplink is not None else None
                else:
                    outs = [
                        local_sgd(
                            spec,
                            state.params,
                            *clients[k],
                            orders=epoch_orders(keys[k, :, : sizes[k]]),
                            batch_size=batch_size,
                            lr=lr,
                            mu=mu,
                            max_steps=int(m),
                        )
                        for k, m in zip(reporting, limit)
                    ]
                up = model_bytes * len(reporting)
                if uplink is not None:
                    sent = [uplink(o.delta, client=int(k), rng=g) for o, k in zip(outs, reporting)]
                    outs = [ClientOutput(d, o.num_examples, o.metrics) for (d, _), o in zip(sent, outs)]
                    up = int(sum(nb for _, nb in sent))
                if outs is None:
                    delta, train_loss = cohort.aggregate(), cohort.mean_loss()
                else:
                    delta = aggregate(outs)
                    w = np.array([o.num_examples for o in outs], dtype=np.float64)
                    train_loss = float(np.dot(w, [o.metrics["loss"] for o in outs]) / w.sum())
            state = server_update(state, delta, server_lr=server_lr)
            seconds = time.perf_counter() - t0
            test_loss, test_acc = (
                models.evaluate(spec, state.params, *test) if test is not None else (float("nan"),) * 2
            )
            rec = RoundRecord(
                r, len(chosen), len(reporting), train_loss, test_loss, test_acc, up, model_bytes * len(chosen), seconds,
                sampled_ids=tuple(int(k) for k in chosen), reported_ids=tuple(int(k) for k in reporting),
            )  # fmt: skip
            records.append(rec)
            if callback is not None:
                callback(rec)
            if stop_at is not None and test_acc >= stop_at:
                break
    return state.params, History(tuple(records))
