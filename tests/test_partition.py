"""Tests for fedlab.partition: known answers, properties (hypothesis), bad inputs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlab import partition

PROPS = settings(max_examples=50, deadline=None)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def assert_partition(parts, num_samples, num_clients):
    """Every sample is assigned exactly once; each part is a sorted int64 array."""
    assert isinstance(parts, list)
    assert len(parts) == num_clients
    for p in parts:
        assert isinstance(p, np.ndarray)
        assert p.dtype == np.int64
        assert p.ndim == 1
        assert np.all(np.diff(p) > 0), "each client's indices must be sorted and unique"
    allidx = np.sort(np.concatenate(parts))
    np.testing.assert_array_equal(allidx, np.arange(num_samples))


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


@st.composite
def label_arrays(draw, min_size=1, max_size=300, max_classes=10):
    n = draw(st.integers(min_size, max_size))
    c = draw(st.integers(1, max_classes))
    seed = draw(seeds)
    return np.random.default_rng(seed).integers(0, c, size=n)


# ---------------------------------------------------------------------------
# iid
# ---------------------------------------------------------------------------


def test_iid_known_answer_sizes():
    parts = partition.iid(10, num_clients=3, rng=0)
    assert [len(p) for p in parts] == [4, 3, 3]
    parts = partition.iid(6, num_clients=3, rng=0, sizes=[1, 2, 3])
    assert [len(p) for p in parts] == [1, 2, 3]
    assert_partition(parts, 6, 3)


def test_iid_one_client_gets_everything():
    (only,) = partition.iid(7, num_clients=1, rng=3)
    np.testing.assert_array_equal(only, np.arange(7))


@PROPS
@given(n=st.integers(1, 500), data=st.data(), seed=seeds)
def test_iid_properties(n, data, seed):
    k = data.draw(st.integers(1, min(n, 50)))
    parts = partition.iid(n, num_clients=k, rng=seed)
    assert_partition(parts, n, k)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert same(parts, partition.iid(n, num_clients=k, rng=seed))


@PROPS
@given(n=st.integers(30, 500), k=st.integers(2, 10), seed=st.integers(0, 2**31))
def test_iid_different_seeds_differ(n, k, seed):
    assert not same(
        partition.iid(n, num_clients=k, rng=seed),
        partition.iid(n, num_clients=k, rng=seed + 1),
    )


@PROPS
@given(n=st.integers(1, 400), data=st.data(), sigma=st.floats(0, 3), seed=seeds)
def test_iid_with_unbalanced_sizes(n, data, sigma, seed):
    k = data.draw(st.integers(1, min(n, 30)))
    sizes = partition.unbalanced_sizes(n, num_clients=k, sigma=sigma, rng=seed)
    parts = partition.iid(n, num_clients=k, rng=seed, sizes=sizes)
    assert_partition(parts, n, k)
    assert [len(p) for p in parts] == sizes.tolist()


# ---------------------------------------------------------------------------
# unbalanced_sizes
# ---------------------------------------------------------------------------


@PROPS
@given(
    n=st.integers(1, 10_000),
    data=st.data(),
    sigma=st.floats(0, 50),
    seed=seeds,
)
def test_unbalanced_sizes_properties(n, data, sigma, seed):
    k = data.draw(st.integers(1, min(n, 100)))
    m = data.draw(st.integers(1, n // k))
    sizes = partition.unbalanced_sizes(n, num_clients=k, sigma=sigma, rng=seed, min_size=m)
    assert sizes.dtype == np.int64 and sizes.shape == (k,)
    assert sizes.sum() == n
    assert sizes.min() >= m
    np.testing.assert_array_equal(
        sizes,
        partition.unbalanced_sizes(n, num_clients=k, sigma=sigma, rng=seed, min_size=m),
    )


def test_unbalanced_sizes_sigma_zero_is_even():
    sizes = partition.unbalanced_sizes(10, num_clients=3, sigma=0.0, rng=0)
    assert sorted(sizes.tolist()) == [3, 3, 4]
    sizes = partition.unbalanced_sizes(12, num_clients=4, sigma=0.0, rng=0, min_size=2)
    assert sizes.tolist() == [3, 3, 3, 3]


def test_unbalanced_sizes_exactly_min_size():
    sizes = partition.unbalanced_sizes(15, num_clients=5, sigma=2.0, rng=0, min_size=3)
    assert sizes.tolist() == [3, 3, 3, 3, 3]


def test_unbalanced_sizes_larger_sigma_is_more_unequal():
    def spread(sigma):
        return np.mean(
            [partition.unbalanced_sizes(10_000, num_clients=50, sigma=sigma, rng=s).std() for s in range(10)]
        )

    assert spread(0.1) < spread(0.5) < spread(2.0)


# ---------------------------------------------------------------------------
# dirichlet
# ---------------------------------------------------------------------------


@PROPS
@given(
    labels=label_arrays(),
    k=st.integers(1, 40),
    alpha=st.floats(1e-3, 1e4),
    seed=seeds,
)
def test_dirichlet_properties(labels, k, alpha, seed):
    parts = partition.dirichlet(labels, num_clients=k, alpha=alpha, rng=seed)
    assert_partition(parts, labels.shape[0], k)
    assert same(parts, partition.dirichlet(labels, num_clients=k, alpha=alpha, rng=seed))


@PROPS
@given(labels=label_arrays(min_size=50), k=st.integers(2, 10), seed=st.integers(0, 2**31))
def test_dirichlet_different_seeds_differ(labels, k, seed):
    a = partition.dirichlet(labels, num_clients=k, alpha=1.0, rng=seed)
    b = partition.dirichlet(labels, num_clients=k, alpha=1.0, rng=seed + 1)
    assert not same(a, b)


# With one class and alpha=1 a draw succeeds with probability (1 - k*m/N)^(k-1):
# N >= 100 keeps that >= 0.6^7 = 0.028 per draw, so 1000 draws fail with
# probability ~1e-12 (N >= 40 failed for k=7, m=4 about half the time).
@PROPS
@given(
    labels=label_arrays(min_size=100),
    k=st.integers(1, 8),
    m=st.integers(1, 5),
    seed=seeds,
)
def test_dirichlet_min_size_respected(labels, k, m, seed):
    parts = partition.dirichlet(labels, num_clients=k, alpha=1.0, rng=seed, min_size=m)
    assert_partition(parts, labels.shape[0], k)
    assert min(len(p) for p in parts) >= m


def test_dirichlet_one_client_gets_everything():
    labels = np.array([2, 0, 1, 1, 0])
    (only,) = partition.dirichlet(labels, num_clients=1, alpha=0.5, rng=0)
    np.testing.assert_array_equal(only, np.arange(5))


def test_dirichlet_allows_empty_clients_and_more_clients_than_samples():
    labels = np.array([0, 1, 0])
    parts = partition.dirichlet(labels, num_clients=10, alpha=0.1, rng=0)
    assert_partition(parts, 3, 10)
    assert any(len(p) == 0 for p in parts)


def balanced_labels(num_classes=10, per_class=200, seed=0):
    labels = np.repeat(np.arange(num_classes), per_class)
    return np.random.default_rng(seed).permutation(labels)


def test_dirichlet_skew_decreases_with_alpha():
    labels = balanced_labels()

    def mean_tv(alpha):
        return np.mean(
            [
                partition.describe(
                    labels,
                    partition.dirichlet(labels, num_clients=10, alpha=alpha, rng=s),
                    num_classes=10,
                )["mean_tv_distance"]
                for s in range(5)
            ]
        )

    tvs = [mean_tv(a) for a in (0.01, 0.1, 1.0, 10.0, 1000.0)]
    assert all(x > y for x, y in itertools.pairwise(tvs)), tvs
    assert tvs[0] > 0.7  # nearly one class per client
    assert tvs[-1] < 0.05  # nearly IID


def test_dirichlet_huge_alpha_approaches_iid():
    labels = balanced_labels()
    parts = partition.dirichlet(labels, num_clients=10, alpha=1e6, rng=0)
    counts = partition.label_counts(labels, parts, num_classes=10)
    # each class is cut into ~equal slices of 200 / 10 = 20
    assert np.abs(counts - 20).max() <= 1
    d = partition.describe(labels, parts, num_classes=10)
    assert d["mean_classes_per_client"] == 10
    assert d["mean_tv_distance"] < 0.01


def test_dirichlet_tiny_alpha_gives_one_class_per_client():
    labels = balanced_labels()
    parts = partition.dirichlet(labels, num_clients=10, alpha=1e-4, rng=0)
    d = partition.describe(labels, parts, num_classes=10)
    assert d["mean_classes_per_client"] <= 1.0 + 1e-9
    assert not np.isnan(d["mean_tv_distance"])


def test_dirichlet_min_size_impossible():
    labels = np.zeros(10, dtype=int)
    with pytest.raises(ValueError, match="min_size"):
        partition.dirichlet(labels, num_clients=4, alpha=1.0, rng=0, min_size=3)
    # feasible in principle but practically never drawn at tiny alpha
    labels = np.repeat([0, 1], 50)
    with pytest.raises(ValueError, match="max_tries"):
        partition.dirichlet(labels, num_clients=10, alpha=1e-3, rng=0, min_size=1, max_tries=20)


# ---------------------------------------------------------------------------
# shards
# ---------------------------------------------------------------------------


def test_shards_known_answer_structure():
    # sorted by label the order is 2,5 | 0,7 | 3,4 | 1,6  (labels 0|1|2|3)
    labels = np.array([1, 3, 0, 2, 2, 0, 3, 1])
    shard_sets = [{2, 5}, {0, 7}, {3, 4}, {1, 6}]
    parts = partition.shards(labels, num_clients=2, shards_per_client=2, rng=0)
    assert_partition(parts, 8, 2)
    used = []
    for p in parts:
        mine = [s for s in shard_sets if s <= set(p.tolist())]
        assert len(mine) == 2 and set().union(*mine) == set(p.tolist())
        used += mine
    assert sorted(map(sorted, used)) == sorted(map(sorted, shard_sets))


def test_shards_remainder_is_assigned():
    # 7 samples, 3 shards -> shard sizes 3, 2, 2
    labels = np.arange(7)
    parts = partition.shards(labels, num_clients=3, shards_per_client=1, rng=1)
    assert_partition(parts, 7, 3)
    assert sorted(len(p) for p in parts) == [2, 2, 3]
    assert {tuple(p.tolist()) for p in parts} == {(0, 1, 2), (3, 4), (5, 6)}


@PROPS
@given(labels=label_arrays(), data=st.data(), seed=seeds)
def test_shards_properties(labels, data, seed):
    n = labels.shape[0]
    k = data.draw(st.integers(1, min(n, 30)))
    spc = data.draw(st.integers(1, max(1, n // k)).filter(lambda s: s * k <= n))
    parts = partition.shards(labels, num_clients=k, shards_per_client=spc, rng=seed)
    assert_partition(parts, n, k)
    shard = n // (k * spc)
    for p in parts:
        assert spc * shard <= len(p) <= spc * (shard + 1)
    assert same(parts, partition.shards(labels, num_clients=k, shards_per_client=spc, rng=seed))


@PROPS
@given(
    k=st.integers(1, 20),
    spc=st.integers(1, 4),
    shard_size=st.integers(1, 10),
    data=st.data(),
    seed=seeds,
)
def test_shards_single_class_shards_limit_labels_per_client(k, spc, shard_size, data, seed):
    num_shards = k * spc
    c = data.draw(st.sampled_from([d for d in range(1, num_shards + 1) if num_shards % d == 0]))
    per_class = (num_shards // c) * shard_size  # every shard lies inside one class
    labels = np.random.default_rng(seed).permutation(np.repeat(np.arange(c), per_class))
    parts = partition.shards(labels, num_clients=k, shards_per_client=spc, rng=seed)
    assert_partition(parts, labels.shape[0], k)
    assert all(len(np.unique(labels[p])) <= spc for p in parts)


def test_shards_mcmahan_mnist_shape():
    labels = balanced_labels(num_classes=10, per_class=600)  # 6000 samples
    parts = partition.shards(labels, num_clients=100, shards_per_client=2, rng=0)
    assert all(len(p) == 60 for p in parts)
    nlab = [len(np.unique(labels[p])) for p in parts]
    assert max(nlab) <= 2
    assert partition.describe(labels, parts, num_classes=10)["mean_classes_per_client"] <= 2


@PROPS
@given(n=st.integers(40, 300), k=st.integers(5, 10), seed=st.integers(0, 2**31))
def test_shards_different_seeds_differ(n, k, seed):
    # >= 10 shards: >= 10! / 2**5 = 113400 equally likely splits
    labels = np.arange(n) % 7
    a = partition.shards(labels, num_clients=k, shards_per_client=2, rng=seed)
    b = partition.shards(labels, num_clients=k, shards_per_client=2, rng=seed + 1)
    assert not same(a, b)


# ---------------------------------------------------------------------------
# by_user
# ---------------------------------------------------------------------------


def test_by_user_known_answer():
    parts = partition.by_user(np.array(["b", "a", "b", "c", "a"]))
    assert [p.tolist() for p in parts] == [[1, 4], [0, 2], [3]]
    parts = partition.by_user([7, 3, 7, 7])
    assert [p.tolist() for p in parts] == [[1], [0, 2, 3]]


@PROPS
@given(users=st.lists(st.integers(-5, 20), min_size=1, max_size=200))
def test_by_user_groups_rows_of_the_same_user(users):
    users = np.array(users)
    parts = partition.by_user(users)
    distinct = np.unique(users)
    assert_partition(parts, users.shape[0], distinct.shape[0])
    for uid, p in zip(distinct, parts):
        assert np.all(users[p] == uid)
        assert len(p) == np.sum(users == uid)


# ---------------------------------------------------------------------------
# label_counts and describe
# ---------------------------------------------------------------------------


def test_label_counts_known_answer():
    labels = np.array([0, 1, 1, 2, 2, 2])
    parts = [np.array([0, 3]), np.array([1, 2, 4, 5]), np.array([], dtype=np.int64)]
    counts = partition.label_counts(labels, parts, num_classes=4)
    np.testing.assert_array_equal(counts, [[1, 0, 1, 0], [0, 2, 2, 0], [0, 0, 0, 0]])
    assert counts.dtype == np.int64


@PROPS
@given(labels=label_arrays(), k=st.integers(1, 20), seed=seeds)
def test_label_counts_sum_to_global_counts(labels, k, seed):
    parts = partition.dirichlet(labels, num_clients=k, alpha=0.5, rng=seed)
    counts = partition.label_counts(labels, parts, num_classes=10)
    assert counts.shape == (k, 10)
    np.testing.assert_array_equal(counts.sum(axis=0), np.bincount(labels, minlength=10))


def test_describe_known_answer():
    labels = np.array([0, 0, 1, 1])
    skewed = partition.describe(labels, [np.array([0, 1]), np.array([2, 3])], num_classes=2)
    assert skewed == {
        "num_clients": 2,
        "num_empty": 0,
        "min_size": 2,
        "median_size": 2.0,
        "max_size": 2,
        "mean_classes_per_client": 1.0,
        "mean_tv_distance": 0.5,
        "max_tv_distance": 0.5,
    }
    mixed = partition.describe(labels, [np.array([0, 2]), np.array([1, 3])], num_classes=2)
    assert mixed["mean_tv_distance"] == 0.0
    assert mixed["mean_classes_per_client"] == 2.0
    lopsided = partition.describe(
        labels,
        [np.array([0, 1, 2]), np.array([3]), np.array([], dtype=int)],
        num_classes=2,
    )
    assert lopsided["num_empty"] == 1
    assert (lopsided["min_size"], lopsided["median_size"], lopsided["max_size"]) == (
        0,
        1.0,
        3,
    )
    # client 0: (2/3, 1/3) vs (1/2, 1/2) -> 1/6; client 1: (0, 1) -> 1/2
    assert lopsided["mean_tv_distance"] == pytest.approx((1 / 6 + 1 / 2) / 2)
    assert lopsided["max_tv_distance"] == pytest.approx(0.5)


# ---------------------------------------------------------------------------
# explicit randomness
# ---------------------------------------------------------------------------

LABELS = balanced_labels(num_classes=5, per_class=20)
CALLS = {
    "iid": lambda rng: partition.iid(100, num_clients=4, rng=rng),
    "dirichlet": lambda rng: partition.dirichlet(LABELS, num_clients=4, alpha=1.0, rng=rng),
    "shards": lambda rng: partition.shards(LABELS, num_clients=4, shards_per_client=2, rng=rng),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_generator_is_advanced_and_seed_equals_fresh_generator(name):
    call = CALLS[name]
    g = np.random.default_rng(123)
    first, second = call(g), call(g)
    assert not same(first, second)
    assert same(first, call(123))
    assert same(first, call(np.random.default_rng(123)))


def test_unbalanced_sizes_generator_is_advanced():
    g = np.random.default_rng(5)
    a = partition.unbalanced_sizes(1000, num_clients=10, sigma=1.0, rng=g)
    b = partition.unbalanced_sizes(1000, num_clients=10, sigma=1.0, rng=g)
    assert not np.array_equal(a, b)


# ---------------------------------------------------------------------------
# bad inputs
# ---------------------------------------------------------------------------

GOOD = np.array([0, 1, 2, 0, 1, 2])

BAD = [
    ("num_samples", lambda: partition.iid(0, num_clients=1, rng=0)),
    ("num_samples", lambda: partition.iid(2.5, num_clients=1, rng=0)),
    ("num_clients", lambda: partition.iid(5, num_clients=0, rng=0)),
    ("num_clients", lambda: partition.iid(5, num_clients=6, rng=0)),
    ("num_clients", lambda: partition.iid(5, num_clients=True, rng=0)),
    ("rng", lambda: partition.iid(5, num_clients=2, rng=None)),
    ("rng", lambda: partition.iid(5, num_clients=2, rng=-1)),
    ("sizes", lambda: partition.iid(5, num_clients=2, rng=0, sizes=[2, 2])),
    ("sizes", lambda: partition.iid(5, num_clients=2, rng=0, sizes=[5, 0])),
    ("sizes", lambda: partition.iid(5, num_clients=2, rng=0, sizes=[1, 2, 2])),
    ("sizes", lambda: partition.iid(5, num_clients=2, rng=0, sizes=[2.5, 2.5])),
    ("sigma", lambda: partition.unbalanced_sizes(10, num_clients=2, sigma=-1.0, rng=0)),
    (
        "sigma",
        lambda: partition.unbalanced_sizes(10, num_clients=2, sigma=float("nan"), rng=0),
    ),
    (
        "min_size",
        lambda: partition.unbalanced_sizes(10, num_clients=3, sigma=1.0, rng=0, min_size=4),
    ),
    (
        "min_size",
        lambda: partition.unbalanced_sizes(10, num_clients=3, sigma=1.0, rng=0, min_size=0),
    ),
    ("alpha", lambda: partition.dirichlet(GOOD, num_clients=2, alpha=0.0, rng=0)),
    ("alpha", lambda: partition.dirichlet(GOOD, num_clients=2, alpha=-1.0, rng=0)),
    (
        "alpha",
        lambda: partition.dirichlet(GOOD, num_clients=2, alpha=float("inf"), rng=0),
    ),
    (
        "labels",
        lambda: partition.dirichlet(GOOD.astype(float), num_clients=2, alpha=1.0, rng=0),
    ),
    (
        "labels",
        lambda: partition.dirichlet(GOOD.reshape(2, 3), num_clients=2, alpha=1.0, rng=0),
    ),
    (
        "labels",
        lambda: partition.dirichlet(np.array([], dtype=int), num_clients=2, alpha=1.0, rng=0),
    ),
    ("num_clients", lambda: partition.dirichlet(GOOD, num_clients=0, alpha=1.0, rng=0)),
    (
        "min_size",
        lambda: partition.dirichlet(GOOD, num_clients=2, alpha=1.0, rng=0, min_size=-1),
    ),
    (
        "max_tries",
        lambda: partition.dirichlet(GOOD, num_clients=2, alpha=1.0, rng=0, max_tries=0),
    ),
    (
        "shards_per_client",
        lambda: partition.shards(GOOD, num_clients=2, shards_per_client=4, rng=0),
    ),
    (
        "shards_per_client",
        lambda: partition.shards(GOOD, num_clients=2, shards_per_client=0, rng=0),
    ),
    (
        "num_clients",
        lambda: partition.shards(GOOD, num_clients=7, shards_per_client=1, rng=0),
    ),
    (
        "labels",
        lambda: partition.shards([True, False], num_clients=1, shards_per_client=1, rng=0),
    ),
    ("user_ids", lambda: partition.by_user(np.zeros((2, 2), dtype=int))),
    ("user_ids", lambda: partition.by_user([])),
    ("user_ids", lambda: partition.by_user([0.5, 1.5])),
    (
        "num_classes",
        lambda: partition.label_counts(GOOD, [np.arange(6)], num_classes=2),
    ),
    (
        "num_classes",
        lambda: partition.label_counts(GOOD, [np.arange(6)], num_classes=0),
    ),
    ("parts", lambda: partition.label_counts(GOOD, [np.array([0, 6])], num_classes=3)),
    ("parts", lambda: partition.label_counts(GOOD, [np.array([-1])], num_classes=3)),
    ("parts", lambda: partition.label_counts(GOOD, [np.array([0.0])], num_classes=3)),
    ("parts", lambda: partition.label_counts(GOOD, [], num_classes=3)),
    ("parts", lambda: partition.describe(GOOD, [np.array([[0, 1]])], num_classes=3)),
]


@pytest.mark.parametrize("name,call", BAD, ids=[f"{i}-{n}" for i, (n, _) in enumerate(BAD)])
def test_bad_inputs_raise_value_error_naming_argument(name, call):
    with pytest.raises(ValueError, match=name):
        call()
