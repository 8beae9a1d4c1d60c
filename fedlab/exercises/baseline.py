"""Lesson 01 exercises: the centralized baseline, and what pooling the data costs.

01.1 ``fit_standardizer``   per-feature mean and standard deviation of the pooled training rows
01.2 ``train_centralized``  logistic regression trained by minibatch SGD on the pooled data, from scratch
01.3 ``accuracy_by_group``  accuracy per activity group: the average hides the worse-served group
01.4 ``unique_fraction``    share of users singled out by a few coarse quasi-identifiers (re-identification)

Each test calls the learner's function on small seeded inputs and compares
with the ``reference_*`` function of the same name below. Later cells of the
lesson call these references (``from fedlab.exercises import baseline as
ref``), never the learner's answer, so a wrong answer never breaks them.
:func:`reference_train_centralized` is :func:`fedlab.fedavg.local_sgd` run by
one "client" that holds everyone's data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from fedlab import fedavg, models
from fedlab import params as P
from fedlab.checks import CheckFailed, Exercise, Test, expect_close, expect_params_close, register, test_rng
from fedlab.engine import torch_threads

STD_FLOOR = 1e-8
"""A column whose standard deviation is below this gets scale 1 (it is constant)."""

# ---- references ---------------------------------------------------------------------------


def reference_fit_standardizer(x) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature ``center`` (mean) and ``scale`` (population standard deviation) of ``x``.

    Parameters
    ----------
    x
        Rows ``[n, d]``.

    Returns
    -------
    (center, scale)
        Two float64 arrays of shape ``[d]``: ``center = mean(x, axis=0)`` and
        ``scale = std(x, axis=0)`` (``ddof=0``), with ``scale = 1`` where the
        standard deviation is below :data:`STD_FLOOR`, so that
        ``(x - center) / scale`` never divides by zero.

    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"x has shape {x.shape}: must be [n, d] with n >= 1")
    center = x.mean(axis=0)
    std = x.std(axis=0)
    return center, np.where(std < STD_FLOOR, 1.0, std)


def reference_train_centralized(x, y, *, epochs: int, lr: float, batch_size: int, seed: int) -> list[np.ndarray]:
    """Binary logistic regression (two-class softmax) trained by minibatch SGD.

    The protocol the exercise fixes, so that every correct answer gives the
    same numbers: ``gen = np.random.default_rng(seed)``; initial parameters
    ``models.init_params(models.logreg(d, 2), rng=gen)``; then for each epoch
    ``order = gen.permutation(n)`` and one step per batch
    ``order[s : s + batch_size]`` (the last may be smaller) of
    ``w <- w - lr * grad`` of the batch's mean cross-entropy.

    Parameters
    ----------
    x, y
        Features ``[n, d]`` and labels ``[n]`` in {0, 1}.

    Returns
    -------
    list of np.ndarray
        ``[W (2, d), b (2,)]`` float32, the course's parameter list.

    """
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    n, d = x.shape
    spec = models.logreg(d, 2)
    gen = np.random.default_rng(seed)
    params = models.init_params(spec, rng=gen)
    orders = np.stack([gen.permutation(n) for _ in range(epochs)])
    with torch_threads(1):
        out = fedavg.local_sgd(spec, params, x, y, orders=orders, batch_size=batch_size, lr=lr)
    return P.add(params, out.delta)


def reference_accuracy_by_group(y_true, y_pred, group) -> dict:
    """Accuracy within each group: ``{g: mean(y_pred[group == g] == y_true[group == g])}``.

    Parameters
    ----------
    y_true, y_pred, group
        Arrays of shape ``[n]``; ``group`` holds any labels (ints or strings).

    Returns
    -------
    dict
        One entry per distinct value of ``group`` (sorted), as plain Python
        keys and float values.

    """
    y_true, y_pred, group = np.asarray(y_true), np.asarray(y_pred), np.asarray(group)
    return {g.item(): float(np.mean(y_pred[group == g] == y_true[group == g])) for g in np.unique(group)}


def reference_unique_fraction(table: Mapping[str, Sequence], columns: Sequence[str]) -> float:
    """Share of rows whose combination of values in ``columns`` occurs in no other row.

    Such a row is *singled out* (k-anonymity with k = 1, Sweeney 2002): anyone
    who knows those few values about a person, and that the person is in the
    table, finds exactly their row.

    Parameters
    ----------
    table
        ``{column name: values of shape [n]}``, one row per person.
    columns
        The quasi-identifiers to combine (at least one name).

    """
    rows = list(zip(*(np.asarray(table[c]).tolist() for c in columns)))
    counts = Counter(rows)
    return float(np.mean([counts[r] == 1 for r in rows]))


# ---- 01.1 fit_standardizer ----------------------------------------------------------------


def _stats(answer, x, what):
    got = answer(np.array(x, copy=True))
    if not isinstance(got, tuple | list) or len(got) != 2:
        raise CheckFailed(
            f"{what}: expected a pair (center, scale), got {type(got).__name__}. Hint: end with `return center, scale`."
        )
    return got


def _t_std_known(answer):
    x = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 10.0]])
    what = "fit_standardizer([[1, 2], [3, 6], [5, 10]])"
    center, scale = _stats(answer, x, what)
    expect_close(
        center, [3.0, 6.0], what=f"{what}: center", hint="the mean of each column (axis=0), one value per feature."
    )
    expect_close(
        scale,
        [np.sqrt(8 / 3), np.sqrt(32 / 3)],
        what=f"{what}: scale",
        hint="the population standard deviation of each column: np.std(x, axis=0) (ddof=0, dividing by n, not n - 1).",
    )


def _t_std_constant(answer):
    x = np.array([[0.1, 1.0], [0.1, 2.0], [0.1, 6.0]])
    what = "a constant first column [0.1, 0.1, 0.1] (its float std is ~1e-17, not exactly 0)"
    center, scale = _stats(answer, x, what)
    expect_close(
        scale[0] if np.ndim(scale) == 1 else scale,
        1.0,
        what=f"{what}: its scale",
        hint=f"a column with standard deviation below {STD_FLOOR:g} gets scale 1, "
        f"so that (x - center) / scale never divides by zero; compare with {STD_FLOOR:g}, not with exactly 0.",
    )
    expect_close(center, [0.1, 3.0], what=f"{what}: center")


def _t_std_standardizes(answer):
    rng = test_rng(11)
    x = rng.normal([65.0, 7.0, 8000.0], [8.0, 1.0, 5000.0], size=(40, 3)).astype(np.float32)
    center, scale = _stats(answer, x, "40 random rows of 3 features")
    z = (x - np.asarray(center, dtype=np.float64)) / np.asarray(scale, dtype=np.float64)
    expect_close(z.mean(axis=0), np.zeros(3), atol=1e-4, what="mean of (x - center) / scale, per feature")
    expect_close(z.std(axis=0), np.ones(3), atol=1e-4, what="standard deviation of (x - center) / scale, per feature")


def _t_std_random(answer):
    rng = test_rng(12)
    for n, d in ((1, 4), (7, 1), (200, 8)):
        x = rng.standard_normal((n, d)) * rng.uniform(0.1, 100.0, size=d) + rng.uniform(-50, 50, size=d)
        x[:, 0] = 0.1  # a constant column whose float std is ~1e-17, not exactly 0
        center, scale = _stats(answer, x, f"random x of shape {x.shape}")
        want_c, want_s = reference_fit_standardizer(x)
        expect_close(center, want_c, what=f"random x of shape {x.shape}: center")
        expect_close(
            scale,
            want_s,
            what=f"random x of shape {x.shape}: scale",
            hint=f"compare the standard deviation with {STD_FLOOR:g}, not with exactly 0.",
        )


# ---- 01.2 train_centralized ---------------------------------------------------------------


def _toy(n, d, *, seed, noise=0.5):
    rng = test_rng(seed)
    w = rng.standard_normal(d)
    x = rng.standard_normal((n, d)).astype(np.float32)
    y = (x @ w + noise * rng.standard_normal(n) > 0).astype(np.int64)
    return x, y


def _train(answer, x, y, *, what, **hyper):
    with torch_threads(1):
        got = answer(np.array(x, copy=True), np.array(y, copy=True), **hyper)
    d = x.shape[1]
    if not isinstance(got, list | tuple) or len(got) != 2:
        raise CheckFailed(
            f"{what}: expected the parameter list [w, b] (w of shape (2, {d}), b of shape (2,)), "
            f"got {type(got).__name__}. Hint: end with `return [w, b]`."
        )
    for i, shape in enumerate(((2, d), (2,))):
        if np.shape(got[i]) != shape:
            raise CheckFailed(
                f"{what}: params[{i}] should have shape {shape}, got {np.shape(got[i])}. "
                "Hint: keep the shapes of models.init_params: w is [classes, features], b is [classes]."
            )
    return [np.asarray(p, dtype=np.float64) for p in got]


def _train_variant(x, y, *, epochs, lr, batch_size, seed, mean=True, shuffle="each_epoch"):
    """01.2's known wrong loops: the gradient summed over the batch, one shuffle for all epochs, or none."""
    n, d = x.shape
    gen = np.random.default_rng(seed)
    w, b = models.init_params(models.logreg(d, 2), rng=gen)
    w, b = w.astype(np.float64), b.astype(np.float64)
    once = gen.permutation(n) if shuffle == "once" else None
    for _ in range(epochs):
        order = {"each_epoch": None, "once": once, "none": np.arange(n)}[shuffle]
        order = gen.permutation(n) if order is None else order
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            z = x[idx] @ w.T + b
            p = np.exp(z - z.max(axis=1, keepdims=True))
            g = p / p.sum(axis=1, keepdims=True)
            g[np.arange(len(idx)), y[idx]] -= 1.0
            g = g / len(idx) if mean else g
            w, b = w - lr * (g.T @ x[idx]), b - lr * g.sum(axis=0)
    return [w, b]


def _train_case(answer, *, n, d, data_seed, what, hint, **hyper):
    x, y = _toy(n, d, seed=data_seed)
    got = _train(answer, x, y, what=what, **hyper)
    want = reference_train_centralized(x, y, **hyper)
    xs, ys = x.astype(np.float64), y
    like = {
        "the gradient SUMMED over the batch: divide (p - onehot) by the batch size len(B)": _train_variant(
            xs, ys, mean=False, **hyper
        ),
        "one shuffle for all epochs: draw order = gen.permutation(n) at the start of EVERY epoch": _train_variant(
            xs, ys, shuffle="once", **hyper
        ),
        "batches in the rows' own order: shuffle with order = gen.permutation(n) each epoch": _train_variant(
            xs, ys, shuffle="none", **hyper
        ),
    }
    if hyper["batch_size"] >= n:  # one batch: shuffling does not change the step
        like = dict(list(like.items())[:1])
    expect_params_close(got, want, what=what, hint=hint, rtol=1e-4, atol=1e-5, like=like)
    return x, y, got


_STEP_HINT = (
    "for a batch B: p = softmax(x_B w^T + b) row by row; g = (p - onehot(y_B)) / len(B); "
    "w <- w - lr * g^T x_B and b <- b - lr * g.sum(axis=0)."
)
_ORDER_HINT = (
    "at the start of every epoch draw order = gen.permutation(n) (after init_params, from the same gen), "
    "then take batches order[0:B], order[B:2B], ... (the last one may be smaller)."
)


def _t_train_full_batch(answer):
    _train_case(
        answer,
        n=6,
        d=3,
        data_seed=0,
        seed=20,
        epochs=1,
        lr=0.5,
        batch_size=6,
        what="one full-batch step (n=6, batch_size=6, lr=0.5, seed=20)",
        hint=_STEP_HINT,
    )


def _t_train_steps(answer):
    _train_case(
        answer,
        n=6,
        d=3,
        data_seed=1,
        seed=21,
        epochs=4,
        lr=0.3,
        batch_size=6,
        what="four full-batch steps (epochs=4, batch_size=6)",
        hint="each step starts from the parameters the previous step produced; " + _STEP_HINT,
    )


def _t_train_minibatches(answer):
    _train_case(
        answer,
        n=20,
        d=3,
        data_seed=2,
        seed=22,
        epochs=2,
        lr=0.2,
        batch_size=8,
        what="two epochs of minibatches (n=20, batch_size=8, so batches of 8, 8 and 4)",
        hint=_ORDER_HINT,
    )


def _t_train_learns(answer):
    x, y = _toy(300, 2, seed=3, noise=0.0)
    hyper = dict(epochs=20, lr=0.5, batch_size=16, seed=4)
    got = _train(answer, x, y, what="a separable 2-D problem", **hyper)
    _, acc = models.evaluate(models.logreg(2, 2), [p.astype(np.float32) for p in got], x, y)
    if acc < 0.95:
        raise CheckFailed(
            f"on a separable 2-D problem (300 rows, 20 epochs) your model reaches training accuracy {acc:.3f}; "
            f"the reference reaches over 0.95. Hint: check the sign of the update (w <- w - lr * grad)."
        )
    want = reference_train_centralized(x, y, **hyper)
    expect_params_close(got, want, what="a separable 2-D problem", rtol=1e-3, atol=1e-4, hint=_ORDER_HINT)


def _t_train_other_shape(answer):
    x, y, _ = _train_case(
        answer,
        n=37,
        d=5,
        data_seed=5,
        seed=25,
        epochs=3,
        lr=0.1,
        batch_size=5,
        what="n=37, d=5, batch_size=5, three epochs, seed=25",
        hint=_ORDER_HINT,
    )
    x2, y2 = _toy(37, 5, seed=5)
    if not (np.array_equal(x, x2) and np.array_equal(y, y2)):
        raise CheckFailed("train_centralized changed the x or y it was given; work on copies.")


# ---- 01.3 accuracy_by_group ---------------------------------------------------------------


def _plain(key):
    return key.item() if isinstance(key, np.generic) else key


def _fmt_dict(d: Mapping) -> str:
    items = ", ".join(f"{_plain(k)!r}: {float(v):.4g}" for k, v in d.items())
    return "{" + items + "}"


def _expect_groups(got, want: dict, *, what: str, hint: str = "") -> None:
    hint = f" Hint: {hint}" if hint else ""
    if not isinstance(got, Mapping):
        raise CheckFailed(f"{what}: expected a dict {{group: accuracy}}, got {type(got).__name__} {got!r}.{hint}")
    got = {_plain(k): v for k, v in got.items()}
    if set(got) != set(want):
        raise CheckFailed(
            f"{what}: expected one entry per group that occurs, keys {sorted(want)}, got keys {sorted(got, key=str)}. "
            "Hint: loop over np.unique(group) and key the dict by the group value itself."
        )
    for k, v in want.items():
        try:
            ok = np.isclose(float(got[k]), v, rtol=1e-6, atol=1e-9)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise CheckFailed(f"{what}: expected {_fmt_dict(want)}, got {_fmt_dict(got)}.{hint}")


def _t_group_known(answer):
    y_true = np.array([1, 0, 1, 1, 0, 0, 1, 0])
    y_pred = np.array([1, 0, 0, 1, 1, 0, 1, 1])
    group = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    got = answer(y_true, y_pred, group)
    overall = float(np.mean(y_true == y_pred))
    if isinstance(got, Mapping) and got and all(np.isclose(float(v), overall) for v in got.values()):
        raise CheckFailed(
            f"8 rows in groups [0, 0, 0, 1, 1, 2, 2, 2]: every group got the overall accuracy {overall:g}. "
            "Hint: compute each group's accuracy on its own rows only: "
            "mean(y_pred[m] == y_true[m]) with m = group == g."
        )
    _expect_groups(
        got,
        reference_accuracy_by_group(y_true, y_pred, group),
        what="8 rows in groups [0, 0, 0, 1, 1, 2, 2, 2]",
        hint="group 0 has 3 rows of which 2 are right: 2/3. Divide by the size of the group, not by all rows.",
    )


def _t_group_hidden(answer):
    y_true = np.array([0] * 9 + [1])
    y_pred = np.array([0] * 9 + [0])
    group = np.array(["big"] * 9 + ["small"])
    _expect_groups(
        answer(y_true, y_pred, group),
        {"big": 1.0, "small": 0.0},
        what="a group of 9 all right and a group of 1 all wrong (overall accuracy 0.9)",
        hint="compute each group's accuracy on its own rows only: mean(y_pred[m] == y_true[m]) with m = group == g.",
    )


def _t_group_missing(answer):
    y_true = np.array([1, 1, 0, 0, 1])
    y_pred = np.array([1, 0, 0, 1, 1])
    group = np.array([2, 2, 0, 0, 2])
    _expect_groups(
        answer(y_true, y_pred, group),
        {0: 0.5, 2: 2 / 3},
        what="groups [2, 2, 0, 0, 2] (no group 1)",
        hint="only groups that occur get an entry (np.unique(group)); a missing group has no accuracy.",
    )


def _t_group_random(answer):
    rng = test_rng(13)
    for n, k in ((500, 3), (57, 5), (1, 1)):
        y_true = rng.integers(0, 2, size=n)
        y_pred = np.where(rng.random(n) < 0.7, y_true, 1 - y_true)
        group = rng.choice(np.array([3, 7, 11, 20, 42])[:k], size=n)
        _expect_groups(
            answer(y_true, y_pred, group),
            reference_accuracy_by_group(y_true, y_pred, group),
            what=f"{n} random rows in {k} group(s) with labels like 3, 7, 11",
        )


def _t_group_single(answer):
    rng = test_rng(14)
    y_true, y_pred = rng.integers(0, 2, size=50), rng.integers(0, 2, size=50)
    group = np.full(50, "all")
    _expect_groups(
        answer(y_true, y_pred, group),
        {"all": float(np.mean(y_true == y_pred))},
        what="one group holding every row (its accuracy is the overall accuracy)",
    )


# ---- 01.4 unique_fraction -----------------------------------------------------------------

_TABLE = {
    "age_group": np.array([0, 0, 1, 1, 2, 2, 2]),
    "activity": np.array([0, 1, 0, 0, 2, 2, 1]),
    "resting_hr": np.array([60, 60, 65, 70, 70, 75, 70]),
}


def _unique(answer, table, columns, what):
    got = answer({k: np.array(v, copy=True) for k, v in table.items()}, list(columns))
    if isinstance(got, np.ndarray) and got.shape == ():
        got = got.item()
    try:
        return float(got)
    except (TypeError, ValueError):
        raise CheckFailed(f"{what}: expected one number between 0 and 1, got {type(got).__name__} {got!r}.") from None


def _t_unique_known(answer):
    cols = ["age_group", "activity"]
    what = f"unique_fraction(table, {cols}) on 7 people with combinations (0,0) (0,1) (1,0) (1,0) (2,2) (2,2) (2,1)"
    expect_close(
        _unique(answer, _TABLE, cols, what),
        3 / 7,
        what=what,
        like={
            "the share computed on ALL the table's columns: use only the columns named in `columns`": (
                reference_unique_fraction(_TABLE, list(_TABLE))
            ),
        },
        hint="combine only the given columns, then count the PEOPLE whose combination occurs exactly once "
        "(here 3 of 7: (0,0), (0,1) and (2,1)), not the number of distinct combinations (5); "
        "divide by the number of people.",
    )


def _t_unique_columns(answer):
    for cols, want in ((["age_group"], 0.0), (["resting_hr"], 2 / 7), (["age_group", "activity", "resting_hr"], 1.0)):
        what = f"unique_fraction(table, {cols})"
        expect_close(
            _unique(answer, _TABLE, cols, what),
            want,
            what=what,
            hint="combine only the columns named in `columns`; a person is unique when no one else shares "
            "ALL of those values.",
        )


def _t_unique_extremes(answer):
    table = {"a": np.array([1, 1, 1, 1]), "b": np.array([5, 6, 7, 8])}
    expect_close(_unique(answer, table, ["a"], "everyone shares one value"), 0.0, what="everyone shares one value")
    expect_close(_unique(answer, table, ["b"], "everyone differs"), 1.0, what="everyone has a different value")


def _t_unique_random(answer):
    rng = test_rng(15)
    n = 300
    table = {
        "age_group": rng.integers(0, 3, size=n),
        "activity_group": rng.integers(0, 3, size=n),
        "resting_hr": np.round(rng.normal(64.0, 6.0, size=n) / 5) * 5,
        "sleep_hours": np.round(rng.normal(7.2, 0.5, size=n) * 2) / 2,
        "steps": np.round(rng.lognormal(8.9, 0.45, size=n) / 1000) * 1000,
    }
    names = list(table)
    for k in range(1, len(names) + 1):
        cols = names[:k]
        what = f"300 random people, columns {cols}"
        expect_close(_unique(answer, table, cols, what), reference_unique_fraction(table, cols), what=what)
    what = "the same columns in another order"
    expect_close(
        _unique(answer, table, names[::-1], what),
        reference_unique_fraction(table, names),
        what=what,
        hint="the order of the columns must not matter.",
    )


register(
    Exercise(
        id="01.1",
        title="pooled standardization statistics",
        answer="fit_standardizer",
        tests=(
            Test("known_answer", _t_std_known),
            Test("constant_column", _t_std_constant),
            Test("standardizes", _t_std_standardizes),
            Test("random_shapes", _t_std_random, in_check=False),
        ),
        hint="center = x.mean(axis=0); scale = x.std(axis=0), replaced by 1 where it is below 1e-8.",
    ),
    Exercise(
        id="01.2",
        title="centralized training loop",
        answer="train_centralized",
        tests=(
            Test("full_batch_step", _t_train_full_batch),
            Test("several_steps", _t_train_steps),
            Test("minibatches", _t_train_minibatches),
            Test("learns_separable", _t_train_learns, in_check=False),
            Test("other_shape_inputs_unchanged", _t_train_other_shape, in_check=False),
        ),
        hint="per epoch: order = gen.permutation(n); per batch: softmax, gradient (p - onehot) / batch size, step.",
    ),
    Exercise(
        id="01.3",
        title="accuracy per group",
        answer="accuracy_by_group",
        tests=(
            Test("known_answer", _t_group_known),
            Test("average_hides_a_group", _t_group_hidden),
            Test("only_groups_present", _t_group_missing),
            Test("random_groups", _t_group_random, in_check=False),
            Test("single_group", _t_group_single, in_check=False),
        ),
        hint="for g in np.unique(group): m = group == g; result[g] = mean(y_pred[m] == y_true[m]).",
    ),
    Exercise(
        id="01.4",
        title="share of people singled out",
        answer="unique_fraction",
        tests=(
            Test("known_answer", _t_unique_known),
            Test("uses_given_columns", _t_unique_columns),
            Test("nobody_or_everybody", _t_unique_extremes, in_check=False),
            Test("random_table", _t_unique_random, in_check=False),
        ),
        hint="make one tuple of values per person, count each tuple (collections.Counter), "
        "and take the share of people whose tuple has count 1.",
    ),
)
