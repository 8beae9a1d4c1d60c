"""Who takes part and whom the model serves: opt-out and per-group accuracy (lesson 03).

In a real federation people choose whether to take part, and the choice is
rarely independent of their data: the least active users of a fitness app
are also the likeliest to switch data sharing off. The global model is then
trained on a biased sample, yet served to everyone. An average accuracy hides
this; accuracy *per group* shows it.

- :func:`opt_out` draws who stays in the federation when each group has its
  own opt-out rate;
- :func:`per_group_accuracy` measures a model's accuracy separately for each
  group (e.g. the health data's activity groups low / medium / high).

This module imports only numpy.
"""

from __future__ import annotations

import numpy as np

from fedlab import seeding, validate


def _groups(name: str, groups, num_groups: int) -> np.ndarray:
    g = validate.array(name, groups, ndim=1, dtype_kind="iu").astype(np.int64)
    if g.size and (g.min() < 0 or g.max() >= num_groups):
        raise ValueError(f"{name} has values in [{int(g.min())}, {int(g.max())}]: must lie in [0, {num_groups})")
    return g


def per_group_accuracy(y_true, y_pred, groups, *, num_groups: int) -> np.ndarray:
    """Accuracy of ``y_pred`` within each group: ``acc[g] = mean(y_pred == y_true over rows of group g)``.

    Parameters
    ----------
    y_true, y_pred
        ``[n]`` labels and predictions.
    groups
        ``[n]`` group index of every row, in ``0 .. num_groups - 1``.
    num_groups
        Number of groups ``G``.

    Returns
    -------
    np.ndarray
        ``[G]`` float64; ``nan`` for a group with no rows. The mean of the
        entries weighted by the group sizes is the overall accuracy.

    """
    g_count = validate.positive_int("num_groups", num_groups)
    yt = validate.array("y_true", y_true, ndim=1)
    yp = validate.array("y_pred", y_pred, ndim=1)
    g = _groups("groups", groups, g_count)
    if not (yt.shape == yp.shape == g.shape):
        raise ValueError(
            f"y_true, y_pred and groups have shapes {yt.shape}, {yp.shape}, {g.shape}: they must match"
        )
    correct = np.bincount(g, weights=(yt == yp).astype(np.float64), minlength=g_count)
    total = np.bincount(g, minlength=g_count).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, correct / np.maximum(total, 1), np.nan)


def opt_out(groups, *, rates, rng: int | np.random.Generator) -> np.ndarray:
    """Who stays in the federation: client ``k`` opts out with probability ``rates[groups[k]]``.

    Parameters
    ----------
    groups
        ``[K]`` group index of every client.
    rates
        ``[G]`` opt-out probability of each group, each in ``[0, 1]``.
    rng
        Seed or Generator; one uniform per client (``rng.random(K)``).

    Returns
    -------
    np.ndarray
        ``[K]`` bool, ``True`` for the clients that take part.

    """
    r = np.asarray(rates, dtype=np.float64)
    if r.ndim != 1 or r.size == 0:
        raise ValueError(f"rates has shape {r.shape}: must be a 1-D list with one probability per group")
    for i, v in enumerate(r):
        validate.fraction(f"rates[{i}]", float(v), include_zero=True)
    g = _groups("groups", groups, r.size)
    gen = seeding.as_generator(rng)
    return gen.random(g.size) >= r[g]
