"""Lesson 06 exercises: remote data with PySyft (the checks themselves need no syft).

06.1 ``make_mock``         a mock of a hospital's records: same schema, realistic marginals, nothing real
06.2 ``hospital_update``   the function a datasite runs: one FedAvg client update returning delta, n, loss
06.3 ``aggregate_remote``  FedAvg over the datasites' results (weighted by n), with the weighted loss
06.5 ``release_check``     the owner's look at a finished job's outputs and log before sharing them

(06.4, the execution-count guard that syft 0.9.5 needed, is retired: syft 0.10
runs an approved job once, when the owner runs it.)

The references are in :mod:`fedlab.remote` (its pure half, which never
imports syft), so checking an answer takes milliseconds.
"""

from __future__ import annotations

import numbers

import numpy as np

from fedlab import fedavg, models, remote
from fedlab.checks import (
    CheckFailed,
    Exercise,
    Test,
    expect_close,
    expect_equal,
    expect_params_close,
    register,
    test_rng,
)

# ---- 06.1 make_mock -----------------------------------------------------------------------


def _records(n=600, *, seed=0, dtype=np.float32):
    """Health-like records: columns on different scales, one binary column; labels with 30 % positives."""
    rng = test_rng(seed)
    x = np.column_stack(
        [
            rng.normal(65, 8, n),  # resting heart rate
            rng.lognormal(3.9, 0.4, n),  # HRV
            rng.normal(7, 1, n),  # sleep hours
            rng.normal(8000, 3000, n),  # steps
            rng.integers(0, 2, n),  # weekend
        ]
    ).astype(dtype)
    y = (rng.random(n) < 0.3).astype(np.int64)
    return x, y


def _mock(answer, x, y, *, rng, what):
    x0, y0 = x.copy(), y.copy()
    got = answer(x, y, rng=rng)
    if not isinstance(got, tuple | list) or len(got) != 2:
        raise CheckFailed(f"{what}: expected a pair (x_mock, y_mock), got {type(got).__name__}")
    if not (np.array_equal(x, x0) and np.array_equal(y, y0)):
        raise CheckFailed(f"{what}: your function changed the private arrays it was given")
    xm, ym = np.asarray(got[0]), np.asarray(got[1])
    if xm.shape != x.shape or xm.dtype != x.dtype:
        raise CheckFailed(
            f"{what}: x_mock has shape {xm.shape} and dtype {xm.dtype}; the schema needs {x.shape} and {x.dtype}. "
            "Hint: a scientist's code must run unchanged on the mock and the private data; cast with .astype(x.dtype)"
        )
    if ym.shape != y.shape or ym.dtype.kind not in "iu":
        raise CheckFailed(
            f"{what}: y_mock has shape {ym.shape} and dtype {ym.dtype}; the schema needs {y.shape} integer labels"
        )
    return xm, ym


def _t_mock_schema(answer):
    x, y = _records()
    xm, ym = _mock(answer, x, y, rng=0, what="600 records, 5 columns")
    extra = set(np.unique(ym).tolist()) - set(np.unique(y).tolist())
    if extra:
        raise CheckFailed(f"y_mock has labels {sorted(extra)} that the private data does not have")


def _t_mock_marginals(answer):
    x, y = _records(seed=1)
    xm, ym = _mock(answer, x, y, rng=1, what="600 records")
    mean, std = x.mean(0), x.std(0)
    for j in range(x.shape[1]):
        m, s = float(xm[:, j].mean()), float(xm[:, j].std())
        if abs(m - mean[j]) > 0.25 * std[j] or not 0.7 * std[j] <= s <= 1.4 * std[j]:
            raise CheckFailed(
                f"column {j}: the mock has mean {m:.4g} and std {s:.4g}, the private data {mean[j]:.4g} and "
                f"{std[j]:.4g}. Hint: draw each column from a distribution with the real column's mean and "
                "spread, so code written against the mock sees realistic values"
            )
    want, got = float(y.mean()), float(np.mean(ym == 1))
    if abs(want - got) > 0.07:
        raise CheckFailed(
            f"y_mock has {got:.0%} positives, the private data {want:.0%}. "
            "Hint: draw labels with the real class frequencies"
        )


def _t_mock_no_real_rows(answer):
    x, y = _records(seed=2)
    xm, _ = _mock(answer, x, y, rng=2, what="600 records")
    real = {row.tobytes() for row in x}
    copied = sum(row.tobytes() in real for row in xm)
    if copied:
        raise CheckFailed(
            f"{copied} of the mock's rows are real records. Hint: a mock is published to every scientist; "
            "make every value up (e.g. draw from a normal per column) instead of copying or shuffling rows"
        )


def _t_mock_not_a_noisy_copy(answer):
    x, y = _records(seed=6)
    xm, _ = _mock(answer, x, y, rng=6, what="600 records")
    for j in range(x.shape[1]):
        r = float(np.corrcoef(x[:, j], xm[:, j].astype(np.float64))[0, 1]) if xm[:, j].std() > 0 else 0.0
        if abs(r) > 0.3:
            raise CheckFailed(
                f"column {j}: mock row i follows real row i (correlation {r:.2f}). Hint: a real record plus a little "
                "noise is still that record; draw the mock's rows independently of the real ones"
            )


def _t_mock_no_real_values(answer):
    x, y = _records(seed=3)
    xm, _ = _mock(answer, x, y, rng=3, what="600 records")
    for j in range(x.shape[1]):
        if np.unique(x[:, j]).size < 50:  # a discrete column (weekend): its values are public anyway
            continue
        share = float(np.isin(xm[:, j], x[:, j]).mean())
        if share > 0.01:
            raise CheckFailed(
                f"column {j}: {share:.0%} of the mock's values are exact values of real patients. Hint: shuffling "
                "each column separately still publishes every patient's exact measurement; draw new values"
            )


def _t_mock_seeded(answer):
    x, y = _records(seed=4)
    a = _mock(answer, x, y, rng=7, what="rng=7")
    b = _mock(answer, x, y, rng=7, what="rng=7 again")
    c = _mock(answer, x, y, rng=8, what="rng=8")
    if not (np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])):
        raise CheckFailed("the same rng gave two different mocks. Hint: draw only from rng, never from np.random")
    if np.array_equal(a[0], c[0]):
        raise CheckFailed("rng=7 and rng=8 gave the same mock: use the rng you are given")


def _t_mock_other_schema(answer):
    rng = test_rng(5)
    x = rng.normal([1.0, -200.0], [0.1, 30.0], size=(80, 2))  # float64 this time
    y = rng.choice(np.array([2, 5, 7], dtype=np.int32), size=80)
    xm, ym = _mock(answer, x, y, rng=0, what="80 float64 records with labels {2, 5, 7} (int32)")
    if ym.dtype != y.dtype:
        raise CheckFailed(f"y_mock has dtype {ym.dtype}: the schema says {y.dtype}")
    if not set(np.unique(ym).tolist()) <= {2, 5, 7}:
        raise CheckFailed(f"y_mock has labels {sorted(set(ym.tolist()))}: the private labels are 2, 5 and 7")


# ---- 06.2 hospital_update -----------------------------------------------------------------


def _site(n, *, d=4, classes=2, seed=0):
    rng = test_rng(seed)
    w = rng.standard_normal((d, classes))
    x = rng.standard_normal((n, d)).astype(np.float32)
    y = np.argmax(x @ w + 0.5 * rng.standard_normal((n, classes)), axis=1)
    return remote.pack(x, y)


def _update_case(answer, *, spec, n, epochs, batch_size, lr, seed, what):
    xy = _site(n, d=spec.in_features, classes=spec.num_classes, seed=seed)
    params = models.init_params(spec, rng=seed)
    before = [p.copy() for p in params]
    got = answer(xy, params, spec=spec, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    if not isinstance(got, dict):
        raise CheckFailed(f"{what}: expected a dict with delta, n and loss, got {type(got).__name__}")
    if not all(np.array_equal(a, b) for a, b in zip(params, before)):
        raise CheckFailed(f"{what}: your function changed the global params it was given")
    if set(got) != {"delta", "n", "loss"}:
        raise CheckFailed(
            f"{what}: the result has keys {sorted(got)}; expected exactly ['delta', 'loss', 'n']. Hint: only the "
            "update, the example count and the loss leave the hospital; no rows, no labels, no model copies"
        )
    x, y = remote.unpack(xy)
    want = fedavg.client_update(spec, params, x, y, epochs=epochs, batch_size=batch_size, lr=lr, rng=seed)
    if not isinstance(got["n"], numbers.Integral) or isinstance(got["n"], bool):
        raise CheckFailed(f"{what}: n is {got['n']!r} ({type(got['n']).__name__}): must be an int")
    expect_equal(got["n"], n, what=f"{what}: n", hint="the number of rows (patients' days) in xy")
    expect_params_close(
        got["delta"],
        want.delta,
        what=f"{what}: delta",
        atol=1e-5,
        rtol=1e-4,
        hint="x = xy[:, :-1], y = the last column as int64; then fedavg.client_update(spec, params, x, y, "
        "epochs=..., batch_size=..., lr=..., rng=seed) and return its delta",
    )
    expect_close(got["loss"], want.metrics["loss"], what=f"{what}: loss", rtol=1e-4, hint="out.metrics['loss']")


def _t_update_logreg(answer):
    _update_case(
        answer,
        spec=models.logreg(4, 2),
        n=30,
        epochs=1,
        batch_size=8,
        lr=0.1,
        seed=3,
        what="logreg, 30 rows, E=1, B=8",
    )


def _t_update_mlp(answer):
    _update_case(
        answer,
        spec=models.mlp(4, (6,), 3),
        n=17,
        epochs=2,
        batch_size=None,
        lr=0.5,
        seed=4,
        what="MLP with 3 classes, 17 rows, E=2, full batch",
    )


def _t_update_seeded(answer):
    spec = models.logreg(4, 2)
    xy = _site(25, seed=5)
    params = models.init_params(spec, rng=5)
    a = answer(xy, params, spec=spec, epochs=1, batch_size=4, lr=0.1, seed=11)
    b = answer(xy, params, spec=spec, epochs=1, batch_size=4, lr=0.1, seed=11)
    expect_params_close(
        b["delta"], a["delta"], what="the same seed twice", atol=0, rtol=0, hint="pass rng=seed to client_update"
    )


# ---- 06.3 aggregate_remote ----------------------------------------------------------------


def _results(sizes, *, seed, shapes=((2, 3), (2,))):
    rng = test_rng(seed)
    return [
        {
            "delta": [rng.standard_normal(s).astype(np.float32) for s in shapes],
            "n": int(n),
            "loss": float(rng.uniform(0.2, 1.5)),
        }
        for n in sizes
    ]


def _agg(answer, results, what):
    got = answer(results)
    if not isinstance(got, tuple | list) or len(got) != 2:
        raise CheckFailed(f"{what}: expected a pair (delta, loss), got {type(got).__name__}")
    return got


def _t_agg_known(answer):
    results = [
        {"delta": [np.array([1.0], np.float32)], "n": 1, "loss": 1.0},
        {"delta": [np.array([3.0], np.float32)], "n": 3, "loss": 3.0},
    ]
    delta, loss = _agg(answer, results, "two sites with n = 1 and 3")
    hint = "weight by n: (1*1 + 3*3) / (1 + 3) = 2.5, not the plain mean 2.0"
    expect_params_close(delta, [np.array([2.5])], what="two sites with n = 1 and 3, deltas [1.] and [3.]", hint=hint)
    expect_close(loss, 2.5, what="the loss of two sites with n = 1 and 3, losses 1.0 and 3.0", hint=hint)


def _t_agg_random(answer):
    results = _results([120, 45, 300], seed=1)
    delta, loss = _agg(answer, results, "three sites")
    ref_delta, ref_loss = remote.aggregate_remote(results)
    expect_params_close(delta, ref_delta, what="three sites, two tensors each")
    expect_close(loss, ref_loss, what="three sites: the n-weighted mean loss")


def _t_agg_single(answer):
    results = _results([9], seed=2)
    delta, loss = _agg(answer, results, "one site")
    expect_params_close(delta, results[0]["delta"], what="a single site (its own delta)")
    expect_close(loss, results[0]["loss"], what="a single site's loss")


def _t_agg_order(answer):
    results = _results([5, 80, 13, 2], seed=3, shapes=((3, 4), (3,), (2, 3), (2,)))
    a, b = _agg(answer, results, "four sites"), _agg(answer, results[::-1], "four sites reversed")
    expect_params_close(b[0], a[0], what="the same sites in reverse order", atol=1e-6, hint="order must not matter")
    expect_params_close(a[0], remote.aggregate_remote(results)[0], what="four sites, four tensors")


def _t_agg_dtype(answer):
    delta, _ = _agg(answer, _results([3, 4], seed=4), "two sites")
    if not isinstance(delta, list | tuple) or any(np.asarray(d).dtype != np.float32 for d in delta):
        raise CheckFailed(
            "the averaged delta must be a list of float32 arrays (the course's params representation). "
            "Hint: accumulate in float64 if you like, then .astype(np.float32)"
        )


# ---- 06.5 release_check -------------------------------------------------------------------

_RESULT = b'{"delta": [[0.1, -0.2]], "n": 40, "loss": 0.61}'


def _release(answer, files, log, what, expected=("result.json",)):
    got = answer(dict(files), log, expected=set(expected))
    if got is not None and not isinstance(got, str):
        raise CheckFailed(f"{what}: expected None (release) or a reason (str), got {type(got).__name__}")
    if isinstance(got, str) and not got.strip():
        raise CheckFailed(f"{what}: an empty reason tells the scientist nothing; return None to release")
    return got


def _t_release_clean(answer):
    got = _release(answer, {"result.json": _RESULT}, "", "the approved result.json and an empty log")
    if got is not None:
        raise CheckFailed(
            f"the approved result.json and an empty log: you held it ({got!r}); it is exactly what was approved, "
            "so release it (return None)"
        )


def _t_release_extra_file(answer):
    files = {"result.json": _RESULT, "rows.csv": b"age,bp\n63,141\n"}
    got = _release(answer, files, "", "result.json plus rows.csv")
    if got is None or "unexpected" not in got:
        raise CheckFailed(
            f"result.json plus rows.csv: you returned {got!r}. Hint: a file nobody approved must not leave; "
            "the reason starts 'unexpected output'"
        )


def _t_release_missing(answer):
    got = _release(answer, {}, "", "a job that wrote nothing")
    if got is None or "missing" not in got:
        raise CheckFailed(
            f"a job that wrote nothing (result.json approved): you returned {got!r}. "
            "Hint: the reason says 'missing output'"
        )


def _t_release_log(answer):
    got = _release(answer, {"result.json": _RESULT}, "patient 17: 63 y, bp 141\n", "a result and a printed line")
    if got is None or "log" not in got:
        raise CheckFailed(
            f"a result plus a log with one printed line: you returned {got!r}. Hint: the log travels with the "
            "outputs, so a print is a disclosure: hold it with a reason that mentions the log"
        )


def _t_release_blank_log(answer):
    got = _release(answer, {"result.json": _RESULT}, "\n  \n", "a result and a log of blank lines")
    if got is not None:
        raise CheckFailed(f"a log of blank lines discloses nothing: you held it ({got!r}); count only non-blank lines")


def _t_release_order(answer):
    got = _release(answer, {"dump.bin": b"..."}, "a print\n", "only an unexpected file, and a print")
    if got is None or "unexpected" not in got:
        raise CheckFailed(
            f"only dump.bin (not approved), result.json missing, and a print: you returned {got!r}. Hint: check "
            "unexpected files first, then missing ones, then the log"
        )


def _t_release_expected_set(answer):
    files = {"mean.json": b"{}", "count.json": b"{}"}
    got = _release(answer, files, "", "two approved files", expected=("mean.json", "count.json"))
    if got is not None:
        raise CheckFailed(f"mean.json and count.json, both approved: you held them ({got!r}); use `expected`")


register(
    Exercise(
        "06.1",
        "a mock with the private data's schema",
        "make_mock",
        (
            Test("schema", _t_mock_schema),
            Test("marginals", _t_mock_marginals),
            Test("no_real_rows", _t_mock_no_real_rows),
            Test("not_a_noisy_copy", _t_mock_not_a_noisy_copy),
            Test("no_real_values", _t_mock_no_real_values, in_check=False),
            Test("seeded", _t_mock_seeded),
            Test("other_schema", _t_mock_other_schema, in_check=False),
        ),
        hint="per column: rng.normal(x[:, j].mean(), x[:, j].std(), size=n); labels: rng.choice(classes, size=n, "
        "p=frequencies); cast to the private dtypes",
    ),
    Exercise(
        "06.2",
        "the update a job runs at the hospital",
        "hospital_update",
        (
            Test("logreg", _t_update_logreg),
            Test("mlp_full_batch", _t_update_mlp),
            Test("seeded", _t_update_seeded, in_check=False),
        ),
        hint="split xy into x and an int64 y, call fedavg.client_update(..., rng=seed), return "
        "{'delta': out.delta, 'n': out.num_examples, 'loss': out.metrics['loss']}",
    ),
    Exercise(
        "06.3",
        "aggregating the hospitals' results",
        "aggregate_remote",
        (
            Test("weighted_known_answer", _t_agg_known),
            Test("three_sites", _t_agg_random),
            Test("single_site", _t_agg_single, in_check=False),
            Test("order_independent", _t_agg_order, in_check=False),
            Test("float32", _t_agg_dtype),
        ),
        hint="sum_k n_k delta_k / sum_k n_k tensor by tensor, and sum_k n_k loss_k / sum_k n_k",
    ),
    Exercise(
        "06.5",
        "the owner's release check",
        "release_check",
        (
            Test("clean_result", _t_release_clean),
            Test("unexpected_file", _t_release_extra_file),
            Test("log_is_a_disclosure", _t_release_log),
            Test("missing_file", _t_release_missing),
            Test("blank_log", _t_release_blank_log, in_check=False),
            Test("order", _t_release_order),
            Test("expected_set", _t_release_expected_set, in_check=False),
        ),
        hint="unexpected = set(files) - set(expected); missing = set(expected) - set(files); then the non-blank "
        "lines of log; return the first problem's reason, else None",
    ),
)
