"""Small, pure transforms of a client update, for measuring what they do to leakage.

Lesson 05 asks how much a model update reveals and how much each of these
changes it; the leakage explorer (:mod:`fedlab.widgets.leakage`) applies them
to an update before attacking it:

- :func:`clip_update` - scale the update down to L2 norm at most ``max_norm``
  (the clipping step of DP-SGD, Abadi et al. 2016, and DP-FedAvg, McMahan et
  al. 2018). On its own it only changes the scale, which a cosine-loss
  attacker ignores.
- :func:`add_gaussian_noise` - add i.i.d. ``N(0, std^2)`` noise to every entry
  (the Gaussian mechanism, with ``std = noise_multiplier * max_norm``).
- :func:`topk_mask` - keep only the largest-magnitude fraction of the entries
  (top-k sparsification, the compression of lesson 04). A naive attacker is
  confused by the zeros; one who skips them (mask-aware) is much less so.

These are the *bare* transforms, deliberately free of any protocol or privacy
accounting. The real protocols live elsewhere: secure aggregation (lesson 07)
and differential privacy with its accountant (lesson 08) build on the same
update representation (:mod:`fedlab.params`). Every function returns new
float32 arrays and leaves its input untouched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fedlab import params as P
from fedlab import seeding, validate


def _update(delta, *, name: str = "delta") -> list[np.ndarray]:
    if isinstance(delta, np.ndarray) or not isinstance(delta, Sequence):
        raise ValueError(f"{name} is a {type(delta).__name__}: must be a list of numpy arrays (one per model tensor)")
    out = P.as_params(delta, name=name)
    if not all(np.isfinite(d).all() for d in out):
        raise ValueError(f"{name} contains nan or inf")
    return out


def clip_update(delta, *, max_norm: float) -> list[np.ndarray]:
    """``delta * min(1, max_norm / ||delta||)``: the update with global L2 norm at most ``max_norm``.

    Parameters
    ----------
    delta
        The update: a list of arrays (:mod:`fedlab.params`).
    max_norm
        The clipping bound ``C > 0``; ``math.inf`` leaves the update as it is.

    Returns
    -------
    list[np.ndarray]
        float32 arrays of the same shapes.

    """
    d = _update(delta)
    if not (isinstance(max_norm, int | float) and not isinstance(max_norm, bool) and max_norm > 0):
        raise ValueError(f"max_norm={max_norm!r}: must be a number > 0 (math.inf for no clipping)")
    norm = P.norm(d)
    scale = 1.0 if math.isinf(max_norm) or norm <= max_norm else max_norm / norm
    return [(a.astype(np.float64) * scale).astype(np.float32) for a in d]


def add_gaussian_noise(delta, *, std: float, rng: int | np.random.Generator) -> list[np.ndarray]:
    """``delta + N(0, std^2)`` entry by entry, drawn from ``rng``.

    Parameters
    ----------
    delta
        The update.
    std
        Noise standard deviation, >= 0 (0 returns a copy).
    rng
        ``int`` seed or ``numpy.random.Generator`` (advanced in place).

    """
    d = _update(delta)
    s = validate.positive_float("std", std, allow_zero=True)
    gen = seeding.as_generator(rng)
    return [(a.astype(np.float64) + s * gen.standard_normal(a.shape)).astype(np.float32) for a in d]


def topk_mask(delta, *, fraction: float) -> list[np.ndarray]:
    """Keep the ``ceil(fraction * n)`` entries of largest magnitude over the whole update; zero the rest.

    Ties at the cut are broken by position (stable sort), so exactly
    ``ceil(fraction * n)`` entries survive. ``fraction = 1`` returns a copy.

    Parameters
    ----------
    delta
        The update.
    fraction
        Share of entries kept, in (0, 1].

    Returns
    -------
    list[np.ndarray]
        float32 arrays; the kept entries are unchanged. (``[d != 0 for d in
        result]`` is the mask a mask-aware attacker uses.)

    """
    d = _update(delta)
    f = validate.fraction("fraction", fraction)
    flat = P.flatten(d)
    k = max(1, math.ceil(f * flat.size))
    if k >= flat.size:
        return [a.copy() for a in d]
    keep = np.argsort(-np.abs(flat), kind="stable")[:k]
    out = np.zeros_like(flat)
    out[keep] = flat[keep]
    return P.unflatten(out, d)
