"""Partitioning a dataset's sample indices over federated clients.

Federated learning is hard (or easy) mostly because of *how* the data is
spread over clients. This module builds the standard splits used in the
literature, all as pure functions over index arrays:

* :func:`iid` -- shuffle and deal out evenly (or into given sizes);
* :func:`unbalanced_sizes` -- lognormal client sizes (quantity skew), to be
  fed to ``iid(..., sizes=...)``;
* :func:`dirichlet` -- label skew with a Dirichlet(alpha) prior per class
  (Hsu et al. 2019);
* :func:`shards` -- the "pathological non-IID" split of McMahan et al. 2017;
* :func:`by_user` -- the natural split, one client per user (LEAF-style);
* :func:`label_counts` and :func:`describe` -- what a split looks like.

Every partitioner returns ``list[np.ndarray]``: one ``int64`` array of sample
indices per client, sorted ascending. Together the arrays cover
``range(num_samples)`` exactly once. Stochastic functions take an explicit
``rng`` (an ``int`` seed or a ``numpy.random.Generator``); a Generator is
advanced, so calling twice with the same Generator gives two different splits.
"""

from __future__ import annotations

import numpy as np

from fedlab import seeding, validate

__all__ = [
    "by_user",
    "describe",
    "dirichlet",
    "iid",
    "label_counts",
    "shards",
    "unbalanced_sizes",
]


# ----------------------------------------------------------------------------
# helpers (private)
# ----------------------------------------------------------------------------


def _labels(labels, *, name: str = "labels") -> np.ndarray:
    """Validate a 1-D, non-empty integer label array and return it as int64."""
    arr = validate.array(name, labels, ndim=1, dtype_kind="iu")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: must contain at least one sample")
    return arr.astype(np.int64, copy=False)


def _finish(parts) -> list[np.ndarray]:
    """Each client's indices as a sorted int64 array."""
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def _split_sizes(total: int, weights: np.ndarray) -> np.ndarray:
    """Integers >= 0 proportional to ``weights`` that sum exactly to ``total``.

    Largest-remainder (Hamilton) rounding: floor every quota, then give the
    leftover units to the largest fractional parts (ties to the lower index).
    """
    quota = total * (weights / weights.sum())
    base = np.floor(quota).astype(np.int64)
    leftover = int(total - base.sum())
    order = np.argsort(-(quota - base), kind="stable")
    base[order[:leftover]] += 1
    return base


def _dirichlet(alpha: float, k: int, gen: np.random.Generator) -> np.ndarray:
    """One draw of ``Dir(alpha, ..., alpha)`` over ``k`` categories, shape ``[k]``.

    Sampled as normalised Gamma(alpha) variables, computed in log space with
    ``log Gamma(a) = log Gamma(a + 1) + log(U) / a`` so that a tiny ``alpha``
    (say 1e-3) does not underflow every component to zero. Unlike
    ``Generator.dirichlet``, whose algorithm for small alpha changed between
    numpy releases, this gives the same numbers on numpy 1.x and 2.x.
    """
    u = 1.0 - gen.random(k)  # in (0, 1], so log(u) is finite
    log_g = np.log(gen.gamma(alpha + 1.0, size=k)) + np.log(u) / alpha
    p = np.exp(log_g - log_g.max())
    return p / p.sum()


# ----------------------------------------------------------------------------
# partitioners
# ----------------------------------------------------------------------------


def iid(
    num_samples: int,
    *,
    num_clients: int,
    rng: int | np.random.Generator,
    sizes=None,
) -> list[np.ndarray]:
    """Shuffle ``range(num_samples)`` and deal it out to clients (IID split).

    The baseline of McMahan et al. (2017), "Communication-Efficient Learning
    of Deep Networks from Decentralized Data": every client's data is a
    uniform random sample of the whole dataset.

    Parameters
    ----------
    num_samples
        Number of samples ``N`` in the dataset.
    num_clients
        Number of clients ``K``, with ``1 <= K <= N``: every client gets at
        least one sample.
    rng
        ``int`` seed or ``numpy.random.Generator`` (advanced in place).
    sizes
        Optional integer array of shape ``[K]`` with the number of samples of
        each client; each entry >= 1 and the entries sum to ``N`` (see
        :func:`unbalanced_sizes`). By default the split is as even as
        possible: the first ``N % K`` clients get one extra sample.

    Returns
    -------
    list[np.ndarray]
        ``K`` sorted ``int64`` index arrays covering ``range(N)`` exactly once.

    Raises
    ------
    ValueError
        If ``num_samples`` or ``num_clients`` is not a positive int, if
        ``num_clients > num_samples``, if ``sizes`` is malformed, or if ``rng``
        is not a seed or Generator.

    """
    n = validate.positive_int("num_samples", num_samples)
    k = validate.positive_int("num_clients", num_clients)
    gen = seeding.as_generator(rng, name="rng")
    if k > n:
        raise ValueError(f"num_clients={k}: must be <= num_samples={n} so that every client gets a sample")
    if sizes is None:
        counts = np.full(k, n // k, dtype=np.int64)
        counts[: n % k] += 1
    else:
        counts = validate.array("sizes", sizes, ndim=1, dtype_kind="iu").astype(np.int64)
        if counts.shape[0] != k:
            raise ValueError(f"sizes has {counts.shape[0]} entries: must have num_clients={k}")
        if counts.min() < 1:
            raise ValueError(f"sizes={counts.tolist()}: every entry must be >= 1")
        if counts.sum() != n:
            raise ValueError(f"sizes sums to {int(counts.sum())}: must sum to num_samples={n}")
    perm = gen.permutation(n)
    return _finish(np.split(perm, np.cumsum(counts)[:-1]))


def unbalanced_sizes(
    num_samples: int,
    *,
    num_clients: int,
    sigma: float,
    rng: int | np.random.Generator,
    min_size: int = 1,
) -> np.ndarray:
    """Lognormal client sizes that sum exactly to ``num_samples`` (quantity skew).

    Client ``k`` gets weight ``w_k = exp(sigma * z_k)`` with ``z_k ~ N(0, 1)``
    (a lognormal, as for the unbalanced device sizes of FedProx, Li et al.
    2020, "Federated Optimization in Heterogeneous Networks", and LEAF,
    Caldas et al. 2018). Each client first receives ``min_size`` samples; the
    remaining ``N - K * min_size`` are split in proportion to ``w`` with
    largest-remainder rounding, so the total is exact. ``sigma = 0`` gives an
    even split; larger ``sigma`` gives a heavier tail of big clients.

    Parameters
    ----------
    num_samples
        Total number of samples ``N``.
    num_clients
        Number of clients ``K``.
    sigma
        Standard deviation of ``log w``; a finite number >= 0.
    rng
        ``int`` seed or ``numpy.random.Generator`` (advanced in place).
    min_size
        Smallest allowed client size, a positive int with
        ``K * min_size <= N``.

    Returns
    -------
    np.ndarray
        ``int64`` array of shape ``[K]``, every entry >= ``min_size``, summing
        to ``N``. Pass it to ``iid(N, num_clients=K, sizes=..., rng=...)``.

    Raises
    ------
    ValueError
        On a bad argument, or if ``num_clients * min_size > num_samples``.

    """
    n = validate.positive_int("num_samples", num_samples)
    k = validate.positive_int("num_clients", num_clients)
    s = validate.positive_float("sigma", sigma, allow_zero=True)
    m = validate.positive_int("min_size", min_size)
    gen = seeding.as_generator(rng, name="rng")
    if k * m > n:
        raise ValueError(
            f"min_size={m}: num_clients={k} clients of at least {m} samples need "
            f"{k * m} > num_samples={n}; lower min_size or num_clients"
        )
    log_w = s * gen.standard_normal(k)
    # normalise in log space, so a big sigma cannot overflow exp()
    w = np.exp(log_w - log_w.max())
    return m + _split_sizes(n - k * m, w)


def dirichlet(
    labels,
    *,
    num_clients: int,
    alpha: float,
    rng: int | np.random.Generator,
    min_size: int = 0,
    max_tries: int = 1000,
) -> list[np.ndarray]:
    """Label-skewed split: each class is spread over clients by a Dirichlet draw.

    Hsu, Qi & Brown (2019), "Measuring the Effects of Non-Identical Data
    Distribution for Federated Visual Classification". For every class ``c``
    with ``n_c`` samples, draw ``p_c ~ Dir(alpha * 1_K)`` and give client
    ``k`` the next ``floor``-rounded ``p_c[k] * n_c`` of the (shuffled) class
    samples, i.e. the class is cut at ``floor(cumsum(p_c) * n_c)``. Small
    ``alpha`` (e.g. 0.1) gives each client only a few classes; large
    ``alpha`` (e.g. 1000) approaches an IID split.

    If ``min_size > 0`` the whole split is redrawn until every client has at
    least ``min_size`` samples, as in the reference implementation of
    Wang et al. (2020, FedMA), giving up after ``max_tries`` attempts.

    Parameters
    ----------
    labels
        Integer class labels, shape ``[N]``.
    num_clients
        Number of clients ``K``. With ``min_size=0`` clients may end up
        empty (and ``K > N`` is allowed); with ``min_size >= 1`` every client
        is guaranteed ``min_size`` samples.
    alpha
        Dirichlet concentration, a finite number > 0.
    rng
        ``int`` seed or ``numpy.random.Generator`` (advanced in place).
    min_size
        Minimum number of samples per client, an int >= 0 with
        ``K * min_size <= N``.
    max_tries
        How many splits to draw before giving up, a positive int.

    Returns
    -------
    list[np.ndarray]
        ``K`` sorted ``int64`` index arrays covering ``range(N)`` exactly
        once; some may be empty if ``min_size == 0``.

    Raises
    ------
    ValueError
        On a bad argument; if ``num_clients * min_size > N``; or if no split
        with ``min_size`` samples per client was found in ``max_tries``
        draws (raise ``alpha`` or lower ``min_size``).

    """
    y = _labels(labels)
    k = validate.positive_int("num_clients", num_clients)
    a = validate.positive_float("alpha", alpha)
    m = validate.positive_int("min_size", min_size, minimum=0)
    tries = validate.positive_int("max_tries", max_tries)
    gen = seeding.as_generator(rng, name="rng")
    n = y.shape[0]
    if k * m > n:
        raise ValueError(
            f"min_size={m}: num_clients={k} clients of at least {m} samples need "
            f"{k * m} > {n} samples in labels; lower min_size or num_clients"
        )
    by_class = [np.flatnonzero(y == c) for c in np.unique(y)]
    for _ in range(tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(k)]
        for idx in by_class:
            idx = gen.permutation(idx)
            p = _dirichlet(a, k, gen)
            cuts = np.floor(np.cumsum(p) * idx.shape[0]).astype(np.int64)[:-1]
            for client, chunk in enumerate(np.split(idx, cuts)):
                parts[client].append(chunk)
        out = _finish(np.concatenate(chunks) for chunks in parts)
        if min(p.shape[0] for p in out) >= m:
            return out
    raise ValueError(
        f"min_size={m}: no split with at least {m} samples per client found in "
        f"max_tries={tries} draws with alpha={a}, num_clients={k}; "
        "raise alpha, lower min_size or num_clients, or raise max_tries"
    )


def shards(
    labels,
    *,
    num_clients: int,
    shards_per_client: int,
    rng: int | np.random.Generator,
) -> list[np.ndarray]:
    """Pathological non-IID split by label-sorted shards (McMahan et al. 2017).

    McMahan et al. (2017), "Communication-Efficient Learning of Deep Networks
    from Decentralized Data", Sec. 3: sort the data by label, cut it into
    ``S = num_clients * shards_per_client`` contiguous shards, and give each
    client ``shards_per_client`` shards chosen at random (the paper: MNIST,
    200 shards of 300 images, 2 per client). Shard sizes differ by at most
    one: when ``S`` does not divide ``N`` the first ``N % S`` shards get one
    extra sample, so every sample is assigned. Samples of equal label keep
    their original order (stable sort), so the only randomness is which
    client gets which shard.

    Parameters
    ----------
    labels
        Integer class labels, shape ``[N]``.
    num_clients
        Number of clients ``K``.
    shards_per_client
        Shards per client; ``K * shards_per_client <= N``.
    rng
        ``int`` seed or ``numpy.random.Generator`` (advanced in place).

    Returns
    -------
    list[np.ndarray]
        ``K`` non-empty sorted ``int64`` index arrays covering ``range(N)``
        exactly once.

    Raises
    ------
    ValueError
        On a bad argument, or if there are more shards than samples.

    """
    y = _labels(labels)
    k = validate.positive_int("num_clients", num_clients)
    spc = validate.positive_int("shards_per_client", shards_per_client)
    gen = seeding.as_generator(rng, name="rng")
    n = y.shape[0]
    num_shards = k * spc
    if num_shards > n:
        raise ValueError(
            f"num_clients={k} * shards_per_client={spc} = {num_shards} shards: "
            f"must be <= the {n} samples in labels (each shard needs a sample)"
        )
    order = np.argsort(y, kind="stable")
    pieces = np.array_split(order, num_shards)
    owner = gen.permutation(num_shards).reshape(k, spc)
    return _finish(np.concatenate([pieces[s] for s in row]) for row in owner)


def by_user(user_ids) -> list[np.ndarray]:
    """Natural split: one client per distinct user, in ascending user-id order.

    Datasets such as LEAF's FEMNIST or Shakespeare (Caldas et al. 2018) come
    with the writer or speaker of every sample; using them as clients gives a
    realistic non-IID split. Deterministic: no randomness is involved.

    Parameters
    ----------
    user_ids
        User id of every sample, shape ``[N]``; integers or strings.

    Returns
    -------
    list[np.ndarray]
        One sorted ``int64`` index array per distinct user; client ``i``
        belongs to user ``np.unique(user_ids)[i]``.

    Raises
    ------
    ValueError
        If ``user_ids`` is not a non-empty 1-D array of ints or strings.

    """
    ids = validate.array("user_ids", user_ids, ndim=1, dtype_kind="iuUS")
    if ids.size == 0:
        raise ValueError("user_ids is empty: must contain at least one sample")
    _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    order = np.argsort(inverse.reshape(-1), kind="stable")
    return _finish(np.split(order, np.cumsum(counts)[:-1]))


# ----------------------------------------------------------------------------
# inspecting a split
# ----------------------------------------------------------------------------


def _parts(parts, n: int) -> list[np.ndarray]:
    """Validate a list of 1-D integer index arrays into ``range(n)``."""
    if isinstance(parts, np.ndarray) and parts.dtype != object:
        parts = list(parts)
    out = []
    for i, p in enumerate(parts):
        arr = validate.array(f"parts[{i}]", p, ndim=1)
        if arr.size == 0:
            arr = arr.astype(np.int64)
        if arr.dtype.kind not in "iu":
            raise ValueError(f"parts[{i}] has dtype {arr.dtype}: must be an integer index array")
        if arr.size and (arr.min() < 0 or arr.max() >= n):
            raise ValueError(
                f"parts[{i}] has indices in [{int(arr.min())}, {int(arr.max())}]: "
                f"must lie in [0, {n}) for the {n} labels"
            )
        out.append(arr.astype(np.int64, copy=False))
    if not out:
        raise ValueError("parts is empty: must hold one index array per client")
    return out


def label_counts(labels, parts, *, num_classes: int) -> np.ndarray:
    """Number of samples of each class held by each client.

    Parameters
    ----------
    labels
        Integer class labels in ``[0, num_classes)``, shape ``[N]``.
    parts
        One index array per client (as returned by the partitioners).
    num_classes
        Number of classes ``C``.

    Returns
    -------
    np.ndarray
        ``int64`` array of shape ``[K, C]``; entry ``[k, c]`` counts the
        samples of class ``c`` on client ``k``. Handy for a stacked bar plot.

    Raises
    ------
    ValueError
        On a bad argument, a label outside ``[0, num_classes)``, or an index
        outside ``[0, N)``.

    """
    y = _labels(labels)
    c = validate.positive_int("num_classes", num_classes)
    if y.min() < 0 or y.max() >= c:
        raise ValueError(f"labels lie in [{int(y.min())}, {int(y.max())}]: must lie in [0, num_classes={c})")
    ps = _parts(parts, y.shape[0])
    return np.stack([np.bincount(y[p], minlength=c) for p in ps]).astype(np.int64)


def describe(labels, parts, *, num_classes: int) -> dict:
    """Summary statistics of a split: client sizes and how skewed the labels are.

    The label skew of client ``k`` is the total variation distance
    ``TV_k = 1/2 * sum_c |q_k[c] - q[c]|`` between its label distribution
    ``q_k`` and the global one ``q`` (over all ``labels``); it equals the
    earth mover's distance between the two under the 0/1 ground metric
    between classes. (Zhao et al. 2018, "Federated Learning with Non-IID
    Data", report ``sum_c |q_k[c] - q[c]|``, which is ``2 * TV_k``.) It is 0
    for a perfectly stratified split and ``1 - q[c]`` for a client holding
    only class ``c``.

    Parameters
    ----------
    labels
        Integer class labels in ``[0, num_classes)``, shape ``[N]``.
    parts
        One index array per client.
    num_classes
        Number of classes ``C``.

    Returns
    -------
    dict
        ``num_clients``; ``num_empty`` (clients without samples);
        ``min_size``, ``median_size``, ``max_size`` of the clients;
        ``mean_classes_per_client`` (classes with at least one sample,
        averaged over all clients); ``mean_tv_distance`` and
        ``max_tv_distance`` (over non-empty clients; ``nan`` if all are
        empty).

    """
    y = _labels(labels)
    counts = label_counts(y, parts, num_classes=num_classes)
    sizes = counts.sum(axis=1)
    global_q = np.bincount(y, minlength=counts.shape[1]) / y.shape[0]
    full = sizes > 0
    q = counts[full] / sizes[full, None]
    tv = 0.5 * np.abs(q - global_q).sum(axis=1)
    return {
        "num_clients": int(counts.shape[0]),
        "num_empty": int((~full).sum()),
        "min_size": int(sizes.min()),
        "median_size": float(np.median(sizes)),
        "max_size": int(sizes.max()),
        "mean_classes_per_client": float((counts > 0).sum(axis=1).mean()),
        "mean_tv_distance": float(tv.mean()) if tv.size else float("nan"),
        "max_tv_distance": float(tv.max()) if tv.size else float("nan"),
    }
