"""Records and aggregation: what the trainers above produce and how the server combines it.

Both trainers - the per-client loop (:func:`fedlab.fedavg.local_sgd`) and the batched engine
(:func:`fedlab.engine.train`) - build on this module, and :func:`fedlab.fedavg.run` (the one place
that picks between them) imports both. Nothing here imports either trainer, so the import graph
has no circle: ``updates <- engine <- fedavg`` and ``updates <- fedavg``; :mod:`fedlab.personal`
(lesson 12) sits above all three.

Every public name stays importable from :mod:`fedlab.fedavg` as before (``fedavg.ClientOutput``,
``fedavg.aggregate``, ``fedavg.server_update``, ``fedavg.epoch_orders`` ...).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from fedlab import models, validate
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


def check_xy(x, y, spec: models.ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    """One client's data as arrays, or a ValueError naming what is wrong (shapes, features, labels)."""
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


def check_hyper(epochs, batch_size, lr, mu) -> None:
    """Local-training settings: positive ``epochs``, ``batch_size`` (or None) and ``lr``; ``mu >= 0``."""
    validate.positive_int("epochs", epochs)
    if batch_size is not None:
        validate.positive_int("batch_size", batch_size)
    validate.positive_float("lr", lr)
    validate.positive_float("mu", mu, allow_zero=True)


def check_frozen(frozen, num_tensors: int) -> frozenset:
    """Indices of parameter tensors kept fixed during local training: distinct ints in ``0 .. num_tensors - 1``."""
    if isinstance(frozen, (str, bytes)) or not isinstance(frozen, (Sequence, set, frozenset, np.ndarray)):
        raise ValueError(f"frozen={frozen!r}: must be a sequence of tensor indices (ints 0 .. {num_tensors - 1})")
    out = []
    for j in frozen:
        if isinstance(j, (bool, np.bool_)) or not isinstance(j, (int, np.integer)) or not 0 <= j < num_tensors:
            raise ValueError(
                f"frozen={frozen!r}: {j!r} is not a tensor index; allowed are the ints 0 .. {num_tensors - 1}"
            )
        out.append(int(j))
    return frozenset(out)


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
