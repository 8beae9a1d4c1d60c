"""Lesson 09's catalogued slips: robust z-scores, the coordinate-wise median, the trimmed mean, norm bounding."""

from tests.mistakes import Mistake

_SCALE = "scale = min(1.0, max_norm / norm) if norm > 0 else 1.0\n"
_SLICE = "s[k : n - k].mean(axis=0).astype"

MISTAKES = [
    # 09.1 flag_outliers
    Mistake(
        "09.1",
        "no_absolute_value",
        ("without the absolute value",),
        edits=(("flags[ok] = np.abs(z) > threshold", "flags[ok] = z > threshold"),),
    ),
    Mistake(
        "09.1",
        "mean_and_std",
        ("mean and the standard deviation",),
        edits=(
            ("med = np.median(norms[ok])\n", "med = norms[ok].mean()\n"),
            ("mad = np.median(np.abs(norms[ok] - med))\n    z", "mad = norms[ok].std()\n    z"),
        ),
    ),
    Mistake(
        "09.1",
        "no_0_6745",
        ("without the factor 0.6745",),
        edits=(("z = 0.6745 * (norms[ok] - med) / mad", "z = (norms[ok] - med) / mad"),),
    ),
    Mistake(
        "09.1",
        "median_with_nan",
        ("NaN included", "finite norms only"),
        code="def flag_outliers(norms, *, threshold):\n"
        "    norms = np.asarray(norms, dtype=np.float64)\n"
        "    med = np.median(norms)\n"
        "    mad = np.median(np.abs(norms - med))\n"
        "    return np.abs(0.6745 * (norms - med) / mad) > threshold\n",
    ),
    # 09.2 coordinate_median
    Mistake(
        "09.2",
        "mean_not_median",
        ("the mean, not the median",),
        edits=(("np.median(stacked, axis=0)", "np.mean(stacked, axis=0)"),),
    ),
    Mistake(
        "09.2",
        "middle_element",
        ("upper middle value", "two middle values"),
        edits=(("np.median(stacked, axis=0)", "np.sort(stacked, axis=0)[len(deltas) // 2]"),),
    ),
    Mistake(
        "09.2",
        "median_norm_client",
        ("whole delta", "coordinate by coordinate"),
        code="def coordinate_median(deltas):\n"
        "    norms = [P.norm(d) for d in deltas]\n"
        "    k = int(np.argsort(norms)[len(deltas) // 2])\n"
        "    return [np.asarray(t, np.float32) for t in deltas[k]]\n",
    ),
    # 09.3 trimmed_mean
    Mistake("09.3", "one_end_only", ("drop k at each end",), edits=((_SLICE, "s[k:].mean(axis=0).astype"),)),
    Mistake("09.3", "minus_k_slice", ("s[0:0]", "s[k : n - k]"), edits=((_SLICE, "s[k:-k].mean(axis=0).astype"),)),
    Mistake("09.3", "rounds_k", ("round down",), edits=(("k = int(np.floor(trim * n))", "k = int(round(trim * n))"),)),
    Mistake(
        "09.3",
        "drops_whole_clients",
        ("whole clients dropped",),
        code="def trimmed_mean(deltas, *, trim):\n"
        "    n = len(deltas)\n"
        "    k = int(np.floor(trim * n))\n"
        "    order = np.argsort([P.norm(d) for d in deltas])\n"
        "    kept = [deltas[i] for i in order[k : n - k]]\n"
        "    return [np.mean([np.asarray(d[i], np.float64) for d in kept], axis=0).astype(np.float32)\n"
        "            for i in range(len(deltas[0]))]\n",
    ),
    # 09.4 norm_bound_mean
    Mistake("09.4", "unweighted_mean", ("the unweighted mean",), edits=(("o.num_examples))", "1))"),)),
    Mistake(
        "09.4",
        "scales_short_deltas_up",
        ("scaled up",),
        edits=((_SCALE, "scale = max_norm / norm if norm > 0 else 1.0\n"),),
    ),
    Mistake(
        "09.4", "divides_by_a_zero_norm", ("max_norm / 0",), edits=((_SCALE, "scale = min(1.0, max_norm / norm)\n"),)
    ),
    Mistake(
        "09.4",
        "norm_per_tensor",
        ("each tensor clipped on its own",),
        code="def norm_bound_mean(outputs, *, max_norm):\n"
        "    clipped = []\n"
        "    for o in outputs:\n"
        "        ts = []\n"
        "        for t in o.delta:\n"
        "            norm = float(np.linalg.norm(t))\n"
        "            ts.append(np.asarray(t, np.float32) * np.float32(min(1.0, max_norm / norm) if norm > 0 else 1.0))\n"
        "        clipped.append(fedavg.ClientOutput(ts, o.num_examples))\n"
        "    return fedavg.aggregate(clipped)\n",
    ),
    Mistake(
        "09.4",
        "clips_the_average",
        ("the average clipped",),
        code="def norm_bound_mean(outputs, *, max_norm):\n"
        "    avg = fedavg.aggregate(list(outputs))\n"
        "    norm = P.norm(avg)\n"
        "    scale = min(1.0, max_norm / norm) if norm > 0 else 1.0\n"
        "    return [np.asarray(t, np.float32) * np.float32(scale) for t in avg]\n",
    ),
]

PATHS = {
    "09.1": {
        "robust z-score 0.6745 (norm - median) / MAD": "one_big_norm",
        "non-finite norms always flagged": "nan_and_inf",
        "median and MAD of the finite norms only": "nan_and_inf",
        "|z|: a suspiciously small norm is flagged too": "small_norm",
        "the threshold argument": "other_threshold",
    },
    "09.2": {
        "per coordinate, across clients": "known_answer",
        "an even count: the mean of the two middle values": "even_count",
    },
    "09.3": {
        "drop k at each end of every coordinate": "known_answer",
        "sort each coordinate on its own": "per_coordinate",
        "k = floor(trim * n)": "rounds_down",
        "trim=0: the plain unweighted mean": "trim_zero",
    },
    "09.4": {
        "scale by min(1, M / norm); a short delta unchanged": "known_answer",
        "the norm over all tensors together": "weighted",
        "the weighted mean by example count": "weighted",
        "an all-zero delta stays zero": "all_zero_delta",
    },
}
