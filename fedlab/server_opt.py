"""Server-side momentum for federated averaging: FedAvgM (Hsu, Qi & Brown 2019).

Plain FedAvg moves the global model by the clients' average delta,
``w <- w + server_lr * delta`` (:func:`fedlab.fedavg.server_update`). FedAvgM
treats the average delta as a (negative) gradient and keeps a momentum
buffer ``v`` on the server::

    v <- beta * v + delta
    w <- w + server_lr * v

(Hsu et al. write it with the pseudo-gradient ``-delta``: ``v <- beta v +
Delta w``, ``w <- w - eta v``; it is the same update.) With ``beta = 0`` it is
FedAvg. Momentum smooths the round-to-round swings that non-IID client
sampling causes, at the price of one more hyper-parameter; ``server_lr / (1 -
beta)`` is the effective step size once ``v`` has settled.

:func:`fedlab.fedavg.run` has no server optimiser, so a lesson writes the
round loop itself with :func:`fedlab.fedavg.sample_clients`,
:func:`fedlab.fedavg.client_update` and :func:`fedlab.fedavg.aggregate`, then
calls :func:`momentum_update` (lesson 03 does this).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedlab import params as P
from fedlab import validate


@dataclass(frozen=True)
class MomentumState:
    """The global model, the server's momentum buffer (same shapes) and the round counter."""

    params: list
    velocity: list
    round: int = 0


def check_beta(beta) -> float:
    """Return ``beta`` as a float, or raise ``ValueError`` unless it is a number in ``[0, 1)``."""
    validate.positive_float("beta", beta, allow_zero=True)
    if beta >= 1:
        raise ValueError(f"beta={beta!r}: must be a number in [0, 1)")
    return float(beta)


def init_momentum(params) -> MomentumState:
    """A :class:`MomentumState` at round 0 with ``params`` and a zero momentum buffer."""
    params = P.as_params(params)
    return MomentumState([p.copy() for p in params], [np.zeros_like(p) for p in params], 0)


def momentum_update(state: MomentumState, delta, *, server_lr: float = 1.0, beta: float = 0.9) -> MomentumState:
    """One FedAvgM server step: ``v <- beta * v + delta``, ``w <- w + server_lr * v``.

    Parameters
    ----------
    state
        The current :class:`MomentumState` (not modified).
    delta
        The clients' weighted average delta (:func:`fedlab.fedavg.aggregate`), shaped like ``state.params``.
    server_lr
        Server learning rate, > 0.
    beta
        Momentum, in ``[0, 1)``; ``0`` gives :func:`fedlab.fedavg.server_update`.

    Returns
    -------
    MomentumState
        New parameters and buffer, ``round + 1``.

    """
    if not isinstance(state, MomentumState):
        raise ValueError(f"state is a {type(state).__name__}: must be a MomentumState (see init_momentum)")
    validate.positive_float("server_lr", server_lr)
    beta = check_beta(beta)
    delta = P.as_params(delta, name="delta")
    P.check_like(delta, state.params, name="delta")
    velocity = P.add(delta, state.velocity, scale=beta)
    return MomentumState(P.add(state.params, velocity, scale=server_lr), velocity, state.round + 1)
