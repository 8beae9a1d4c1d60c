"""Lesson 06's exercises without syft: the references pass every test, and plausible wrong answers fail helpfully.

(``tests/test_exercises.py`` runs the solution notebook's own answers and its
blank stubs; this file checks the library references and the hints a learner
gets for the mistakes people actually make.)
"""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlab import checks, fedavg, models, remote

REFERENCES = {
    "06.1": remote.make_mock,
    "06.2": remote.hospital_update,
    "06.3": remote.aggregate_remote,
    "06.5": remote.release_check,
}


def test_lesson_06_has_four_exercises_with_references():
    # 06.4 (syft 0.9.5's unenforced single-use policy) is retired: its concept is gone with syft 0.10
    assert [ex.id for ex in checks.lesson_exercises("06")] == sorted(REFERENCES)


@pytest.mark.parametrize("exercise_id", sorted(REFERENCES))
def test_reference_passes_every_test(exercise_id):
    ex = checks.get(exercise_id)
    for test in ex.tests:
        ok, message = checks.run_test(ex, test, REFERENCES[exercise_id])
        assert ok, message


def _fails(exercise_id, answer, *needles):
    ex = checks.get(exercise_id)
    messages = [checks.run_test(ex, t, answer)[1] for t in ex.tests]
    failed = [m for m in messages if m != "passed"]
    assert failed, f"{exercise_id}: a wrong answer passed every test"
    text = "\n".join(failed)
    for needle in needles:
        assert needle in text, f"{exercise_id}: expected {needle!r} in the feedback:\n{text}"


def test_mock_that_shuffles_rows_is_caught():
    def shuffled_rows(x, y, *, rng):
        idx = np.random.default_rng(rng).permutation(len(y))
        return x[idx], y[idx]

    _fails("06.1", shuffled_rows, "rows are real records")


def test_mock_that_adds_noise_to_real_rows_is_caught():
    def noisy_copy(x, y, *, rng):
        g = np.random.default_rng(rng)
        return (x + g.normal(0, 0.05, x.shape) * x.std(0)).astype(x.dtype), y.copy()

    _fails("06.1", noisy_copy, "follows real row")


def test_mock_that_shuffles_each_column_is_caught():
    def column_shuffle(x, y, *, rng):
        g = np.random.default_rng(rng)
        return np.column_stack([g.permutation(c) for c in x.T]).astype(x.dtype), g.permutation(y)

    _fails("06.1", column_shuffle, "exact values of real patients")


def test_mock_with_wrong_dtype_or_scale_is_caught():
    _fails("06.1", lambda x, y, *, rng: (np.random.default_rng(rng).normal(size=x.shape), y), "dtype")
    _fails(
        "06.1",
        lambda x, y, *, rng: (np.random.default_rng(rng).normal(size=x.shape).astype(x.dtype), y),
        "mean and spread",
    )


def test_update_that_returns_more_than_the_update_is_caught():
    def leaky(xy, params, *, spec, epochs, batch_size, lr, seed):
        out = remote.hospital_update(xy, params, spec=spec, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
        return {**out, "x": xy}

    _fails("06.2", leaky, "only the update, the example count and the loss leave the hospital")


def test_update_that_ignores_the_seed_is_caught():
    def unseeded(xy, params, *, spec, epochs, batch_size, lr, seed):
        return remote.hospital_update(xy, params, spec=spec, epochs=epochs, batch_size=batch_size, lr=lr, seed=0)

    _fails("06.2", unseeded, "rng=seed")


def test_unweighted_aggregate_is_caught():
    def plain_mean(results):
        k = len(results)
        delta = [sum(np.asarray(r["delta"][i]) for r in results) / k for i in range(len(results[0]["delta"]))]
        return delta, sum(r["loss"] for r in results) / k

    _fails("06.3", plain_mean, "weight by n")


def test_release_checks_that_miss_a_disclosure_are_caught():
    def outputs_only(files, log, *, expected):
        return remote.release_check(files, "", expected=expected)  # never looks at the log

    _fails("06.5", outputs_only, "a print is a disclosure")

    def expected_only(files, log, *, expected):
        missing = set(expected) - set(files)
        return f"missing output {sorted(missing)}" if missing else None  # extra files slip through

    _fails("06.5", expected_only, "a file nobody approved must not leave")

    def any_log(files, log, *, expected):
        return remote.release_check(files, "x" if log else "", expected=expected)  # blank lines count

    _fails("06.5", any_log, "count only non-blank lines")


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 60),
    d=st.integers(1, 6),
    classes=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_make_mock_keeps_the_schema_and_copies_no_row(n, d, classes, seed, dtype):
    g = np.random.default_rng(seed)
    x = (g.normal(size=(n, d)) * g.uniform(0.1, 100, d) + g.normal(0, 50, d)).astype(dtype)
    y = g.integers(0, classes, n).astype(np.int64)
    xm, ym = remote.make_mock(x, y, rng=seed)
    assert xm.shape == x.shape and xm.dtype == x.dtype
    assert ym.shape == y.shape and ym.dtype == y.dtype
    assert set(ym.tolist()) <= set(y.tolist())
    assert not ({r.tobytes() for r in xm} & {r.tobytes() for r in x})


def test_aggregate_remote_is_fedavg_aggregate():
    g = np.random.default_rng(0)
    results = [{"delta": [g.normal(size=(2, 3)).astype(np.float32)], "n": n, "loss": 0.5} for n in (3, 10, 7)]
    delta, loss = remote.aggregate_remote(results)
    want = fedavg.aggregate([fedavg.ClientOutput(r["delta"], r["n"]) for r in results])
    np.testing.assert_array_equal(delta[0], want[0])
    assert loss == pytest.approx(0.5)
    with pytest.raises(ValueError, match="results is empty"):
        remote.aggregate_remote([])
    with pytest.raises(ValueError, match="lacks"):
        remote.aggregate_remote([{"delta": [np.zeros(1)], "n": 1}])


def test_release_check_reasons_and_bad_input():
    ok = {"result.json": b"{}"}
    assert remote.release_check(ok, "", expected={"result.json"}) is None
    assert remote.release_check({**ok, "x.csv": b""}, "", expected={"result.json"}).startswith("unexpected output")
    assert remote.release_check({}, "", expected={"result.json"}).startswith("missing output")
    assert "2 line(s)" in remote.release_check(ok, "a\n\nb\n", expected={"result.json"})
    with pytest.raises(ValueError, match="files=list"):
        remote.release_check([], "", expected={"result.json"})
    with pytest.raises(ValueError, match="log=NoneType"):
        remote.release_check(ok, None, expected={"result.json"})


def test_job_files_round_trip_float32_exactly(tmp_path):
    spec = models.mlp(4, (6,), 3)
    params = models.init_params(spec, rng=0)
    folder = remote.write_update_job(tmp_path / "job", spec, params, epochs=2, batch_size=None, lr=0.5, seed=3)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "main.py"]
    config = json.loads((folder / "config.json").read_text())
    assert remote.spec_from_json(config["spec"]) == spec
    back = [np.asarray(p, dtype=np.float32) for p in config["params"]]
    assert all(np.array_equal(a, b) for a, b in zip(params, back))
    res = {"delta": [p * 0.1 for p in params], "n": 17, "loss": 0.25}
    got = remote.load_result(remote.save_result(tmp_path / "out" / "result.json", res))
    assert got["n"] == 17 and got["loss"] == 0.25
    assert all(np.array_equal(a, b) and b.dtype == np.float32 for a, b in zip(res["delta"], got["delta"]))
    with pytest.raises(ValueError, match="not empty"):
        remote.write_update_job(folder, spec, params, epochs=1, batch_size=None, lr=0.1, seed=0)
    with pytest.raises(ValueError, match="lacks"):
        remote.save_result(tmp_path / "r.json", {"delta": []})
