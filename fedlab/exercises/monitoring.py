"""Lesson 09 exercises: monitor and debug a federation, and aggregate robustly.

09.1 ``flag_outliers``      robust z-scores (median / MAD) of update norms; non-finite norms always flagged
09.2 ``coordinate_median``  the coordinate-wise median of the clients' deltas
09.3 ``trimmed_mean``       the coordinate-wise trimmed mean (drop k = floor(trim * n) at each end)
09.4 ``norm_bound_mean``    clip every delta to a global L2 norm, then the weighted mean by example count

Each test compares the learner's answer with the reference in
:mod:`fedlab.telemetry` or :mod:`fedlab.robust` on small seeded problems.
"""

from __future__ import annotations

import numpy as np

from fedlab import fedavg, robust, telemetry
from fedlab.checks import CheckFailed, Exercise, Test, expect_equal, expect_params_close, register, test_rng


def _deltas(n, *, seed, shapes=((3, 2), (2,))):
    rng = test_rng(seed)
    return [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(n)]


def _as_list(got, what, n_tensors):
    if not isinstance(got, list | tuple) or len(got) != n_tensors:
        raise CheckFailed(
            f"{what}: expected a list of {n_tensors} arrays (one per model tensor), got {type(got).__name__}"
            + (f" of length {len(got)}" if isinstance(got, list | tuple) else "")
        )
    return got


# ---- 09.1 flag_outliers -------------------------------------------------------------------------

_Z_HINT = (
    "keep the finite norms; med = median of them, mad = median(|norm - med|); z = 0.6745 * (norm - med) / mad; "
    "flag |z| > threshold, and flag every non-finite norm"
)


def _flags(answer, norms, threshold, what):
    got = np.asarray(answer(np.asarray(norms, dtype=np.float64), threshold=threshold))
    want = telemetry.flag_outliers(np.asarray(norms, dtype=np.float64), threshold=threshold)
    if got.shape != want.shape:
        raise CheckFailed(f"{what}: expected {want.shape[0]} True/False flags, got shape {got.shape}")
    expect_equal(got.astype(bool), want, what=what, hint=_Z_HINT)


def _t_flag_one_big(answer):
    _flags(answer, [1.0, 1.1, 0.9, 1.05, 0.95, 12.0], 3.5, "norms [1, 1.1, 0.9, 1.05, 0.95, 12], threshold 3.5")


def _t_flag_nan(answer):
    _flags(
        answer,
        [0.5, np.nan, 0.55, 0.45, np.inf, 0.5, 0.52],
        3.5,
        "norms with a NaN and an inf",
    )


def _t_flag_threshold(answer):
    rng = test_rng(3)
    norms = np.abs(rng.normal(1.0, 0.1, 30))
    norms[[4, 17]] = [1.6, 0.2]
    for t in (2.0, 3.5, 6.0):
        _flags(answer, norms, t, f"30 seeded norms with two odd ones, threshold {t}")


def _t_flag_small_is_flagged(answer):
    _flags(answer, [1.0, 1.02, 0.98, 1.01, 0.99, 0.001], 3.5, "a client whose norm is suspiciously SMALL (|z| counts)")


# ---- 09.2 coordinate_median ---------------------------------------------------------------------


def _t_median_known(answer):
    deltas = [[np.array([1.0, 10.0], np.float32)], [np.array([2.0, -5.0], np.float32)],
              [np.array([100.0, 0.0], np.float32)]]
    got = _as_list(answer(deltas), "three clients, one tensor", 1)
    expect_params_close(got, [np.array([2.0, 0.0])], what="deltas [1, 10], [2, -5], [100, 0]",
                        hint="per coordinate: median(1, 2, 100) = 2 and median(10, -5, 0) = 0")


def _t_median_even(answer):
    deltas = [[np.array([1.0], np.float32)], [np.array([3.0], np.float32)], [np.array([4.0], np.float32)],
              [np.array([10.0], np.float32)]]
    got = _as_list(answer(deltas), "four clients", 1)
    expect_params_close(got, [np.array([3.5])], what="deltas [1], [3], [4], [10] (even count)",
                        hint="with an even count the median is the mean of the two middle values, as np.median")


def _t_median_random(answer):
    deltas = _deltas(7, seed=5, shapes=((4, 3), (3,), (2, 4)))
    got = _as_list(answer(deltas), "seven clients, three tensors", 3)
    expect_params_close(got, robust.coordinate_median(deltas), what="seven seeded clients, three tensors")


def _t_median_resists(answer):
    deltas = _deltas(9, seed=6)
    for k in (0, 3, 8, 5):  # four of nine clients send huge values
        deltas[k] = [np.full_like(t, 1e6 * (-1) ** k) for t in deltas[k]]
    expect_params_close(_as_list(answer(deltas), "nine clients", 2), robust.coordinate_median(deltas),
                        what="nine clients, four of them sending +-1e6")


# ---- 09.3 trimmed_mean --------------------------------------------------------------------------


def _t_trim_known(answer):
    deltas = [[np.array([v], np.float32)] for v in (1.0, 2.0, 3.0, 4.0, 100.0)]
    got = _as_list(answer(deltas, trim=0.2), "five clients", 1)
    expect_params_close(got, [np.array([3.0])], what="deltas 1, 2, 3, 4, 100 with trim=0.2",
                        hint="k = floor(0.2 * 5) = 1: drop the 1 smallest (1) and the 1 largest (100), mean of 2, 3, 4")


def _t_trim_zero(answer):
    deltas = _deltas(4, seed=7)
    expect_params_close(_as_list(answer(deltas, trim=0.0), "four clients", 2), robust.trimmed_mean(deltas, trim=0),
                        what="trim=0 (the plain unweighted mean)")


def _t_trim_random(answer):
    deltas = _deltas(10, seed=8, shapes=((5, 2), (2,)))
    for trim in (0.1, 0.25, 0.45):
        expect_params_close(_as_list(answer(deltas, trim=trim), "ten clients", 2),
                            robust.trimmed_mean(deltas, trim=trim), what=f"ten seeded clients, trim={trim}",
                            hint="k = floor(trim * n) per end, coordinate by coordinate (np.sort(axis=0))")


def _t_trim_per_coordinate(answer):
    deltas = [[np.array([1.0, 50.0], np.float32)], [np.array([50.0, 1.0], np.float32)],
              [np.array([2.0, 2.0], np.float32)], [np.array([3.0, 3.0], np.float32)]]
    expect_params_close(_as_list(answer(deltas, trim=0.25), "four clients", 1), [np.array([2.5, 2.5])],
                        what="each coordinate trimmed on its own (different clients are extreme in each)",
                        hint="sort each coordinate separately; do not drop whole clients")


# ---- 09.4 norm_bound_mean -----------------------------------------------------------------------


def _outs(deltas, counts):
    return [fedavg.ClientOutput(d, n) for d, n in zip(deltas, counts)]


def _t_bound_known(answer):
    outs = _outs([[np.array([3.0, 4.0], np.float32)], [np.array([0.6, 0.8], np.float32)]], [1, 1])
    got = _as_list(answer(outs, max_norm=1.0), "two clients", 1)
    expect_params_close(got, [np.array([0.6, 0.8])], what="deltas [3, 4] (norm 5) and [0.6, 0.8] (norm 1), max_norm=1",
                        hint="[3, 4] is scaled by 1/5 to [0.6, 0.8]; a delta already within the bound is unchanged")


def _t_bound_weighted(answer):
    deltas = _deltas(5, seed=9, shapes=((3, 2), (2,)))
    counts = [3, 10, 1, 7, 4]
    expect_params_close(_as_list(answer(_outs(deltas, counts), max_norm=1.5), "five clients", 2),
                        robust.norm_bound(deltas, max_norm=1.5, weights=counts),
                        what="five seeded clients with 3, 10, 1, 7, 4 examples, max_norm=1.5",
                        hint="the norm is over ALL tensors of a delta together; then weight by num_examples")


def _t_bound_boost(answer):
    deltas = _deltas(4, seed=10)
    deltas[2] = [t * 1000 for t in deltas[2]]
    counts = [5, 5, 5, 5]
    got = _as_list(answer(_outs(deltas, counts), max_norm=2.0), "four clients", 2)
    expect_params_close(got, robust.norm_bound(deltas, max_norm=2.0, weights=counts),
                        what="a client boosted 1000x, max_norm=2", atol=1e-5)


def _t_bound_zero(answer):
    deltas = [[np.zeros(3, np.float32)], [np.array([0.0, 0.0, 2.0], np.float32)]]
    got = _as_list(answer(_outs(deltas, [1, 3]), max_norm=1.0), "two clients", 1)
    expect_params_close(got, [np.array([0.0, 0.0, 0.75])], what="an all-zero delta and [0, 0, 2], max_norm=1",
                        hint="an all-zero delta must stay zero (no division by zero): scale = min(1, M / norm)")


register(
    Exercise(
        "09.1",
        "flag outlying update norms with robust z-scores",
        "flag_outliers",
        (
            Test("one_big_norm", _t_flag_one_big),
            Test("nan_and_inf", _t_flag_nan),
            Test("thresholds", _t_flag_threshold, in_check=False),
            Test("small_norm", _t_flag_small_is_flagged, in_check=False),
        ),
        hint=_Z_HINT,
    ),
    Exercise(
        "09.2",
        "coordinate-wise median",
        "coordinate_median",
        (
            Test("known_answer", _t_median_known),
            Test("even_count", _t_median_even),
            Test("random_clients", _t_median_random, in_check=False),
            Test("resists_outliers", _t_median_resists, in_check=False),
        ),
        hint="flatten each delta, np.stack them to [n, d], np.median(axis=0), and split back into the shapes",
    ),
    Exercise(
        "09.3",
        "coordinate-wise trimmed mean",
        "trimmed_mean",
        (
            Test("known_answer", _t_trim_known),
            Test("per_coordinate", _t_trim_per_coordinate),
            Test("trim_zero", _t_trim_zero, in_check=False),
            Test("random_clients", _t_trim_random, in_check=False),
        ),
        hint="k = int(np.floor(trim * n)); s = np.sort(stacked, axis=0); mean of s[k : n - k]",
    ),
    Exercise(
        "09.4",
        "norm bounding, then the weighted mean",
        "norm_bound_mean",
        (
            Test("known_answer", _t_bound_known),
            Test("all_zero_delta", _t_bound_zero),
            Test("weighted", _t_bound_weighted, in_check=False),
            Test("boosted_client", _t_bound_boost, in_check=False),
        ),
        hint="scale each delta by min(1, max_norm / global_norm), then sum_k n_k * delta_k / sum_k n_k",
    ),
)
