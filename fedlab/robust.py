"""Robust aggregation from scratch: the server's average when some clients lie (lesson 09).

FedAvg's weighted mean lets a single client move the model anywhere: one
update scaled by 1000 (or full of NaN) dominates the sum. Three classic
replacements, each a pure function over the clients' deltas:

- :func:`coordinate_median` - per coordinate, the median of the clients'
  values (Yin et al. 2018, "Byzantine-Robust Distributed Learning: Towards
  Optimal Statistical Rates"). Breakdown point 1/2: with ``f < n/2`` bad
  clients every coordinate stays within the range of the honest values.
- :func:`trimmed_mean` - per coordinate, drop the ``k`` largest and ``k``
  smallest values and average the rest (Yin et al. 2018); resists ``k`` bad
  clients and keeps more information than the median.
- :func:`norm_bound` - scale every delta down to L2 norm at most
  ``max_norm``, then take the usual weighted mean (Sun et al. 2019, "Can You
  Really Backdoor Federated Learning?"). A boosted update loses its boost;
  it cannot be removed, only bounded.

Input: either a list of deltas in the course's representation (each a list
of arrays, :mod:`fedlab.params`; the result is a list of arrays of the same
shapes) or a stacked ``[n, d]`` array of flat vectors (the result is ``[d]``).
Everything is computed in float64 and returned as float32. The median and
trimmed mean are unweighted: a weight would let a bad client claim a huge
example count.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

from fedlab import params as P
from fedlab import validate


def _stack(deltas, *, name: str = "deltas") -> tuple[np.ndarray, list | None]:
    """``([n, d] float64, like)``: ``like`` is the first delta (list of arrays) or ``None`` for a stacked array."""
    if isinstance(deltas, np.ndarray) or (hasattr(deltas, "shape") and hasattr(deltas, "dtype")):
        m = np.asarray(deltas)
        if m.ndim != 2:
            raise ValueError(f"{name} has shape {m.shape}: a stacked array must be [n_clients, n_params]")
        if m.dtype.kind not in "fiu":
            raise ValueError(f"{name} has dtype {m.dtype}: must be numeric")
        like = None
        m = m.astype(np.float64)
    else:
        if not isinstance(deltas, Sequence):
            raise ValueError(
                f"{name} is a {type(deltas).__name__}: must be a list of deltas (each a list of arrays) "
                "or a stacked [n_clients, n_params] array"
            )
        if len(deltas) == 0:
            raise ValueError(f"{name} is empty: need at least one client's delta")
        like = P.as_params(deltas[0], name=f"{name}[0]")
        rows = []
        for i, d in enumerate(deltas):
            d = P.as_params(d, name=f"{name}[{i}]")
            P.check_like(d, like, name=f"{name}[{i}]")
            rows.append(np.concatenate([np.asarray(t, np.float64).ravel() for t in d]) if d else np.zeros(0))
        m = np.stack(rows)
    if m.shape[0] == 0:
        raise ValueError(f"{name} is empty: need at least one client's delta")
    bad = ~np.isfinite(m).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{name}[{int(np.flatnonzero(bad)[0])}] has non-finite values (NaN or inf): drop non-finite "
            "updates before aggregating (fedlab.telemetry.run_monitored does)"
        )
    return m, like


def _unstack(vector: np.ndarray, like: list | None):
    vector = vector.astype(np.float32)
    return vector if like is None else P.unflatten(vector, like)


def coordinate_median(deltas):
    """Coordinate-wise median of the clients' deltas (Yin et al. 2018).

    Parameters
    ----------
    deltas
        ``n`` deltas (each a list of arrays of the model's shapes) or an
        ``[n, d]`` array.

    Returns
    -------
    The median, a list of float32 arrays (or a ``[d]`` float32 vector). For an
    even ``n`` it is the mean of the two middle values, as ``numpy.median``.

    """
    m, like = _stack(deltas)
    return _unstack(np.median(m, axis=0), like)


def trim_count(n: int, trim) -> int:
    """How many values :func:`trimmed_mean` drops at *each* end for ``n`` clients.

    ``trim`` is a fraction in ``[0, 0.5)`` (``floor(trim * n)`` values) or an
    int count ``k >= 0``; ``2k < n`` must hold so that something is left.
    """
    validate.positive_int("n", n)
    if isinstance(trim, bool) or not isinstance(trim, numbers.Real):
        raise ValueError(f"trim={trim!r}: must be a fraction in [0, 0.5) or an int count")
    if isinstance(trim, numbers.Integral):
        k = int(trim)
        if k < 0:
            raise ValueError(f"trim={trim!r}: a count must be >= 0")
    else:
        if not (math.isfinite(trim) and 0 <= trim < 0.5):
            raise ValueError(f"trim={trim!r}: a fraction must lie in [0, 0.5)")
        k = int(math.floor(trim * n + 1e-9))
    if 2 * k >= n:
        raise ValueError(f"trim={trim!r} drops {k} values at each end of {n}: 2 * {k} must be < {n}")
    return k


def trimmed_mean(deltas, *, trim):
    """Coordinate-wise trimmed mean (Yin et al. 2018).

    Per coordinate, sort the ``n`` clients' values, drop the ``k`` smallest and
    the ``k`` largest, and average the ``n - 2k`` left.

    Parameters
    ----------
    deltas
        ``n`` deltas (lists of arrays) or an ``[n, d]`` array.
    trim
        A fraction ``beta`` in ``[0, 0.5)`` (``k = floor(beta * n)``) or an int
        count ``k`` with ``2k < n``. ``trim=0`` is the plain (unweighted) mean.

    """
    m, like = _stack(deltas)
    k = trim_count(m.shape[0], trim)
    s = np.sort(m, axis=0)
    return _unstack(s[k : m.shape[0] - k].mean(axis=0), like)


def clip_scale(norms, *, max_norm: float) -> np.ndarray:
    """``min(1, max_norm / norm)`` per client (1 for a zero norm)."""
    validate.positive_float("max_norm", max_norm)
    norms = np.asarray(norms, dtype=np.float64)
    return np.minimum(1.0, max_norm / np.maximum(norms, np.finfo(np.float64).tiny))


def norm_bound(deltas, *, max_norm: float, weights=None):
    """Clip every delta to L2 norm ``max_norm``, then take the weighted mean (Sun et al. 2019).

    ``delta_k <- delta_k * min(1, max_norm / ||delta_k||)`` (the norm over all
    tensors together), then ``sum_k w_k delta_k / sum_k w_k``.

    Parameters
    ----------
    deltas
        ``n`` deltas (lists of arrays) or an ``[n, d]`` array.
    max_norm
        The bound ``M > 0``; the result's norm is at most ``M``.
    weights
        ``[n]`` positive weights (example counts); ``None`` for equal weights.

    """
    m, like = _stack(deltas)
    scale = clip_scale(np.linalg.norm(m, axis=1), max_norm=max_norm)
    if weights is None:
        w = np.ones(m.shape[0])
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (m.shape[0],) or not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise ValueError(f"weights={np.asarray(weights).tolist()!r}: must be {m.shape[0]} positive numbers")
    return _unstack((w * scale) @ m / w.sum(), like)


AGGREGATORS = ("mean", "median", "trimmed", "norm_bound")
"""The names :func:`fedlab.telemetry.run_monitored` accepts."""


def aggregate(deltas, *, aggregator: str, weights=None, trim=0.2, max_norm: float | None = None):
    """Aggregate by name: ``"mean"`` (weighted), ``"median"``, ``"trimmed"`` (``trim``), ``"norm_bound"``.

    ``"norm_bound"`` needs ``max_norm``; ``weights`` (example counts) apply to
    ``"mean"`` and ``"norm_bound"`` only.
    """
    validate.one_of("aggregator", aggregator, AGGREGATORS)
    if aggregator == "median":
        return coordinate_median(deltas)
    if aggregator == "trimmed":
        return trimmed_mean(deltas, trim=trim)
    if aggregator == "norm_bound":
        if max_norm is None:
            raise ValueError("aggregator='norm_bound' needs max_norm (e.g. the median update norm of a clean round)")
        return norm_bound(deltas, max_norm=max_norm, weights=weights)
    m, like = _stack(deltas)
    w = np.ones(m.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (m.shape[0],) or np.any(w <= 0):
        raise ValueError(f"weights={np.asarray(weights).tolist()!r}: must be {m.shape[0]} positive numbers")
    return _unstack(w @ m / w.sum(), like)
