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
from fedlab import params as P
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

_ONE_BIG = [1.0, 1.1, 0.9, 1.05, 0.95, 12.0]

_Z_HINT = (
    "keep the finite norms; med = median of them, mad = median(|norm - med|); z = 0.6745 * (norm - med) / mad; "
    "flag |z| > threshold, and flag every non-finite norm"
)


def _flag_slips(norms, threshold) -> dict:
    """Known wrong flags for these norms: ``{what the slip is: the flags it gives}``, most specific first."""
    norms = np.asarray(norms, dtype=np.float64)
    ok = np.isfinite(norms)

    def flags(z, *, absolute=True, t=threshold, nonfinite=True):
        out = ~ok if nonfinite else np.zeros(len(norms), bool)
        out[ok] = (np.abs(z) if absolute else z) > t
        return out

    z = telemetry.robust_z(norms)[ok]
    with np.errstate(divide="ignore", invalid="ignore"):
        plain = (norms[ok] - norms[ok].mean()) / norms[ok].std()
    slips = {
        "z > threshold without the absolute value: a suspiciously SMALL norm is an outlier too, "
        "compare |z| with the threshold": flags(z, absolute=False),
        "no NaN or inf flagged: a non-finite norm must always be flagged (~np.isfinite(norms))": flags(
            z, nonfinite=False
        ),
        "z without the factor 0.6745: z = 0.6745 * (norm - median) / MAD": flags(z / 0.6745),
        "a z-score from the mean and the standard deviation: one huge norm inflates both and hides itself; "
        "use the median and the MAD": flags(plain),
        "a z-score from the mean and the standard deviation (times 0.6745): one huge norm inflates both and "
        "hides itself; use the median and the MAD": flags(0.6745 * plain),
    }
    if not ok.all():
        slips[
            "the median of all norms, NaN included: np.median of an array with a NaN is NaN, so nothing is "
            "flagged; take the median and MAD of the finite norms only"
        ] = np.zeros(len(norms), bool)
    if threshold != 3.5:
        slips["the threshold 3.5 whatever threshold= says: use the threshold argument"] = flags(z, t=3.5)
    return slips


def _flags(answer, norms, threshold, what):
    got = np.asarray(answer(np.asarray(norms, dtype=np.float64), threshold=threshold))
    want = telemetry.flag_outliers(np.asarray(norms, dtype=np.float64), threshold=threshold)
    if got.shape != want.shape:
        raise CheckFailed(f"{what}: expected {want.shape[0]} True/False flags, got shape {got.shape}")
    got = got.astype(bool)
    slips = _flag_slips(norms, threshold) if not np.array_equal(got, want) else {}
    named = [d for d, f in slips.items() if np.array_equal(f, got)]
    expect_equal(got, want, what=what, hint=f"yours looks like {named[0]}." if named else _Z_HINT)


def _t_flag_one_big(answer):
    _flags(answer, _ONE_BIG, 3.5, "norms [1, 1.1, 0.9, 1.05, 0.95, 12], threshold 3.5")


def _t_flag_other_threshold(answer):
    _flags(answer, _ONE_BIG, 0.8, "norms [1, 1.1, 0.9, 1.05, 0.95, 12], threshold 0.8")


def _t_flag_nan(answer):
    _flags(
        answer,
        [0.5, np.nan, 0.55, 0.45, np.inf, 0.5, 0.52, 5.0],
        3.5,
        "norms [0.5, nan, 0.55, 0.45, inf, 0.5, 0.52, 5] (a NaN, an inf and one big finite norm)",
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


def _whole_clients(deltas) -> dict:
    """``{"client k's whole delta ...": deltas[k]}``: the answer that picks one client instead of a statistic."""
    return {
        f"client {k}'s whole delta: the median (or trimmed mean) is taken coordinate by coordinate, across clients, "
        "not by picking one client": [np.asarray(t, np.float64) for t in d]
        for k, d in enumerate(deltas)
    }


def _median_slips(deltas) -> dict:
    stacked = np.stack([P.flatten(d) for d in deltas]).astype(np.float64)
    s, n = np.sort(stacked, axis=0), len(deltas)
    slips = {"the mean, not the median (np.median(stacked, axis=0))": P.unflatten(stacked.mean(axis=0), deltas[0])}
    if n % 2 == 0:
        middle = "with an even count the median is the mean of the two middle values (np.median does that)"
        slips[f"the upper middle value, s[n // 2]: {middle}"] = P.unflatten(s[n // 2], deltas[0])
        slips[f"the lower middle value, s[n // 2 - 1]: {middle}"] = P.unflatten(s[n // 2 - 1], deltas[0])
    return slips | _whole_clients(deltas)


def _t_median_known(answer):
    deltas = [[np.array([1.0, 10.0], np.float32)], [np.array([2.0, -5.0], np.float32)],
              [np.array([100.0, 0.0], np.float32)]]
    got = _as_list(answer(deltas), "three clients, one tensor", 1)
    expect_params_close(got, [np.array([2.0, 0.0])], what="deltas [1, 10], [2, -5], [100, 0]",
                        hint="per coordinate: median(1, 2, 100) = 2 and median(10, -5, 0) = 0",
                        like=_median_slips(deltas))


def _t_median_even(answer):
    deltas = [[np.array([1.0], np.float32)], [np.array([3.0], np.float32)], [np.array([4.0], np.float32)],
              [np.array([10.0], np.float32)]]
    got = _as_list(answer(deltas), "four clients", 1)
    expect_params_close(got, [np.array([3.5])], what="deltas [1], [3], [4], [10] (even count)",
                        hint="with an even count the median is the mean of the two middle values, as np.median",
                        like=_median_slips(deltas))


def _t_median_random(answer):
    deltas = _deltas(7, seed=5, shapes=((4, 3), (3,), (2, 4)))
    got = _as_list(answer(deltas), "seven clients, three tensors", 3)
    expect_params_close(got, robust.coordinate_median(deltas), what="seven seeded clients, three tensors",
                        like=_median_slips(deltas))


def _t_median_resists(answer):
    deltas = _deltas(9, seed=6)
    for k in (0, 3, 8, 5):  # four of nine clients send huge values
        deltas[k] = [np.full_like(t, 1e6 * (-1) ** k) for t in deltas[k]]
    expect_params_close(_as_list(answer(deltas), "nine clients", 2), robust.coordinate_median(deltas),
                        what="nine clients, four of them sending +-1e6")


# ---- 09.3 trimmed_mean --------------------------------------------------------------------------


def _trim_slips(deltas, trim) -> dict:
    """Known wrong trimmed means: one end only, k off by one, whole clients dropped."""
    stacked = np.stack([P.flatten(d) for d in deltas]).astype(np.float64)
    n = stacked.shape[0]
    k = robust.trim_count(n, trim)
    s = np.sort(stacked, axis=0)

    def back(v):
        return P.unflatten(v, deltas[0])

    slips = {}
    if k > 0:
        slips["the k smallest dropped but not the k largest (s[k:]): drop k at EACH end, s[k : n - k]"] = back(
            s[k:].mean(axis=0)
        )
        slips["the k largest dropped but not the k smallest (s[: n - k]): drop k at EACH end, s[k : n - k]"] = back(
            s[: n - k].mean(axis=0)
        )
        slips["no value dropped (the plain mean): k = floor(trim * n) values go at each end"] = back(
            stacked.mean(axis=0)
        )
    if n - 2 * (k + 1) > 0:
        slips[f"{k + 1} values dropped per end, not k = floor(trim * n) = floor({trim * n:g}) = {k}: round down "
              "(int(np.floor(trim * n)), not round or ceil)"] = back(s[k + 1 : n - k - 1].mean(axis=0))  # fmt: skip
    if k > 0 and n <= 8:
        from itertools import combinations

        for keep in combinations(range(n), n - 2 * k):
            slips[
                f"whole clients dropped (you kept clients {list(keep)}): sort each coordinate on its own "
                "(np.sort(stacked, axis=0)); a client can be extreme in one coordinate and not another"
            ] = back(stacked[list(keep)].mean(axis=0))
    return slips


def _no_nan(got, what):
    if any(np.isnan(np.asarray(g, np.float64)).any() for g in got):
        raise CheckFailed(
            f"{what}: your result is NaN. With k = 0, s[k:-k] is s[0:0], an empty slice whose mean is NaN: "
            "slice s[k : n - k] instead"
        )


def _t_trim_known(answer):
    deltas = [[np.array([v], np.float32)] for v in (1.0, 2.0, 3.0, 4.0, 100.0)]
    got = _as_list(answer(deltas, trim=0.2), "five clients", 1)
    expect_params_close(got, [np.array([3.0])], what="deltas 1, 2, 3, 4, 100 with trim=0.2",
                        hint="k = floor(0.2 * 5) = 1: drop the 1 smallest (1) and the 1 largest (100), mean of 2, 3, 4",
                        like=_trim_slips(deltas, 0.2))


def _t_trim_rounds_down(answer):
    deltas = [[np.array([v, -v], np.float32)] for v in (1.0, 2.0, 4.0, 8.0, 16.0)]
    got = _as_list(answer(deltas, trim=0.3), "five clients", 1)
    expect_params_close(got, [np.array([14 / 3, -14 / 3])], what="deltas [1, -1], [2, -2], [4, -4], [8, -8], "
                        "[16, -16] with trim=0.3", hint="k = floor(0.3 * 5) = floor(1.5) = 1 per end: mean of 2, 4, 8",
                        like=_trim_slips(deltas, 0.3))  # fmt: skip


def _t_trim_zero(answer):
    deltas = _deltas(4, seed=7)
    got = _as_list(answer(deltas, trim=0.0), "four clients", 2)
    _no_nan(got, "trim=0 (k = 0)")
    expect_params_close(got, robust.trimmed_mean(deltas, trim=0), what="trim=0 (the plain unweighted mean)")


def _t_trim_random(answer):
    deltas = _deltas(10, seed=8, shapes=((5, 2), (2,)))
    for trim in (0.1, 0.25, 0.45):
        expect_params_close(_as_list(answer(deltas, trim=trim), "ten clients", 2),
                            robust.trimmed_mean(deltas, trim=trim), what=f"ten seeded clients, trim={trim}",
                            hint="k = floor(trim * n) per end, coordinate by coordinate (np.sort(axis=0))",
                            like=_trim_slips(deltas, trim))


def _t_trim_per_coordinate(answer):
    deltas = [[np.array([1.0, 50.0], np.float32)], [np.array([50.0, 1.0], np.float32)],
              [np.array([2.0, 2.0], np.float32)], [np.array([3.0, 3.0], np.float32)]]
    expect_params_close(_as_list(answer(deltas, trim=0.25), "four clients", 1), [np.array([2.5, 2.5])],
                        what="each coordinate trimmed on its own (different clients are extreme in each)",
                        hint="sort each coordinate separately; do not drop whole clients",
                        like=_trim_slips(deltas, 0.25))


# ---- 09.4 norm_bound_mean -----------------------------------------------------------------------


def _outs(deltas, counts):
    return [fedavg.ClientOutput(d, n) for d, n in zip(deltas, counts)]


def _bound_slips(deltas, counts, max_norm) -> dict:
    """Known wrong answers of norm bounding: unweighted, per-tensor norms, scaling up, clipping the average."""
    w = np.asarray(counts, np.float64)

    def mean(ds, weights):
        return [sum(wk * np.asarray(d[i], np.float64) for wk, d in zip(weights, ds)) / sum(weights)
                for i in range(len(ds[0]))]  # fmt: skip

    def clip(d, *, up=False):
        norm = P.norm(d)
        scale = (max_norm / norm if up else min(1.0, max_norm / norm)) if norm > 0 else 1.0
        return [np.asarray(t, np.float64) * scale for t in d]

    def clip_tensors(d):
        return [t * min(1.0, max_norm / n) if (n := float(np.linalg.norm(t))) > 0 else t
                for t in (np.asarray(t, np.float64) for t in d)]  # fmt: skip

    clipped = [clip(d) for d in deltas]
    return {
        "the unweighted mean: weight each clipped delta by its client's num_examples": mean(clipped, np.ones(len(w))),
        "each tensor clipped on its own norm: the norm is over ALL tensors of a delta together (P.norm)": mean(
            [clip_tensors(d) for d in deltas], w
        ),
        "short deltas scaled UP to max_norm: scale = min(1, max_norm / norm) only ever scales down": mean(
            [clip(d, up=True) for d in deltas], w
        ),
        "the average clipped, not each delta: clip every client's delta BEFORE averaging (that is what bounds "
        "one client's influence)": clip(mean([[np.asarray(t, np.float64) for t in d] for d in deltas], w)),
        "the deltas averaged without clipping (max_norm ignored)": mean(deltas, w),
    }


def _bound(answer, deltas, counts, max_norm, what, **kw):
    try:
        got = answer(_outs(deltas, counts), max_norm=max_norm)
    except ZeroDivisionError:
        raise CheckFailed(
            f"{what}: ZeroDivisionError: an all-zero delta has norm 0, and max_norm / 0 fails. "
            "Hint: a delta of norm 0 is within the bound: keep it as it is (scale 1)"
        ) from None
    got = _as_list(got, what, len(deltas[0]))
    if any(np.isnan(np.asarray(g, np.float64)).any() for g in got):
        raise CheckFailed(
            f"{what}: your result is NaN: an all-zero delta has norm 0, and 0 * (max_norm / 0) is NaN. "
            "Hint: a delta of norm 0 is within the bound: keep it as it is (scale 1)"
        )
    expect_params_close(got, robust.norm_bound(deltas, max_norm=max_norm, weights=counts), what=what,
                        like=_bound_slips(deltas, counts, max_norm), **kw)  # fmt: skip


def _t_bound_known(answer):
    deltas = [[np.array([3.0, 4.0], np.float32)], [np.array([0.4, -0.3], np.float32)]]
    _bound(answer, deltas, [1, 1], 1.0, "deltas [3, 4] (norm 5) and [0.4, -0.3] (norm 0.5), max_norm=1",
           hint="[3, 4] is scaled by 1/5 to [0.6, 0.8]; [0.4, -0.3], already within the bound, is unchanged")


def _t_bound_weighted(answer):
    deltas = _deltas(5, seed=9, shapes=((3, 2), (2,)))
    counts = [3, 10, 1, 7, 4]
    _bound(answer, deltas, counts, 1.5, "five seeded clients with 3, 10, 1, 7, 4 examples, max_norm=1.5",
           hint="the norm is over ALL tensors of a delta together; then weight by num_examples")


def _t_bound_boost(answer):
    deltas = _deltas(4, seed=10)
    deltas[2] = [t * 1000 for t in deltas[2]]
    counts = [5, 5, 5, 5]
    _bound(answer, deltas, counts, 2.0, "a client boosted 1000x, max_norm=2", atol=1e-5)


def _t_bound_zero(answer):
    deltas = [[np.zeros(3, np.float32)], [np.array([0.0, 0.0, 2.0], np.float32)]]
    _bound(answer, deltas, [1, 3], 1.0, "an all-zero delta (1 example) and [0, 0, 2] (3 examples), max_norm=1",
           hint="an all-zero delta must stay zero (no division by zero): scale = min(1, M / norm); "
           "then (1 * [0, 0, 0] + 3 * [0, 0, 1]) / 4 = [0, 0, 0.75]")


register(
    Exercise(
        "09.1",
        "flag outlying update norms with robust z-scores",
        "flag_outliers",
        (
            Test("one_big_norm", _t_flag_one_big),
            Test("nan_and_inf", _t_flag_nan),
            Test("small_norm", _t_flag_small_is_flagged),
            Test("other_threshold", _t_flag_other_threshold),
            Test("thresholds", _t_flag_threshold, in_check=False),
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
            Test("trim_zero", _t_trim_zero),
            Test("rounds_down", _t_trim_rounds_down),
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
            Test("weighted", _t_bound_weighted),
            Test("boosted_client", _t_bound_boost, in_check=False),
        ),
        hint="scale each delta by min(1, max_norm / global_norm), then sum_k n_k * delta_k / sum_k n_k",
    ),
)
