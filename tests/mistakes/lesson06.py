"""Lesson 06: likely wrong answers to the mock, the hospital's update, the aggregation and the release check."""

from tests.mistakes import Mistake

MISTAKES = [
    # 06.1 make_mock
    Mistake(
        "06.1",
        "shuffled_real_rows",
        ("rows are real records",),
        edits=(
            (
                "x_mock = rng.normal(x.mean(axis=0), x.std(axis=0), size=x.shape).astype(x.dtype)",
                "x_mock = x[rng.permutation(len(x))]",
            ),
        ),
    ),
    Mistake(
        "06.1",
        "no_dtype_cast",
        ("dtype", ".astype(x.dtype)"),
        edits=(("size=x.shape).astype(x.dtype)", "size=x.shape)"),),
    ),
    Mistake(
        "06.1",
        "uniform_labels",
        ("positives", "real class frequencies"),
        edits=(("rng.choice(classes, size=len(y), p=counts / counts.sum())", "rng.choice(classes, size=len(y))"),),
    ),
    # 06.2 hospital_update
    Mistake(
        "06.2",
        "returns_the_model_too",
        ("only the update, the example count and the loss leave the hospital",),
        edits=(('"loss": out.metrics["loss"]}', '"loss": out.metrics["loss"], "params": params}'),),
    ),
    Mistake(
        "06.2",
        "ignores_the_seed",
        ("delta", "rng=seed"),
        edits=(("lr=lr, rng=seed)", "lr=lr, rng=0)"),),
    ),
    Mistake(
        "06.2",
        "n_is_the_batch_size",
        ("n", "number of rows"),
        edits=(('"n": out.num_examples', '"n": batch_size or 1'),),
    ),
    # 06.3 aggregate_remote
    Mistake(
        "06.3",
        "plain_mean_of_deltas",
        ("weight by n",),
        code='''
def aggregate_remote(results):
    k = len(results)
    delta = [
        (sum(np.asarray(r["delta"][i], dtype=np.float64) for r in results) / k).astype(np.float32)
        for i in range(len(results[0]["delta"]))
    ]
    loss = sum(r["n"] * r["loss"] for r in results) / sum(r["n"] for r in results)
    return delta, loss
''',
    ),
    Mistake(
        "06.3",
        "plain_mean_of_losses",
        ("loss", "weight by n"),
        edits=(('loss = sum(r["n"] * r["loss"] for r in results) / total', 'loss = sum(r["loss"] for r in results) / len(results)'),),
    ),
    # 06.5 release_check
    Mistake(
        "06.5",
        "never_reads_the_log",
        ("a print is a disclosure",),
        edits=(("    if lines:\n", "    if False:\n"),),
    ),
    Mistake(
        "06.5",
        "lets_extra_files_out",
        ("unexpected output", "a file nobody approved must not leave"),
        edits=(("    if unexpected:\n", "    if False:\n"),),
    ),
    Mistake(
        "06.5",
        "holds_everything",
        ("release it",),
        code='''
def release_check(files, log, *, expected):
    return "held for review"
''',
    ),
]

PATHS = {
    "06.1": {
        "the shape and dtype of x and of y": "schema",
        "each column normal with the real column's mean and std; labels with the class frequencies": "marginals",
        "no real row": "no_real_rows",
        "not a real row plus a little noise": "not_a_noisy_copy",
        "draw only from rng": "seeded",
    },
    "06.2": {
        "x float32 and y int64 from xy's columns": "logreg",
        "fedavg.client_update with rng=seed": "logreg",
        "{'delta', 'n', 'loss'}: exactly these three keys": "logreg",
        "batch_size=None: the full batch": "mlp_full_batch",
    },
    "06.3": {
        "the n-weighted mean delta and the n-weighted mean loss": "weighted_known_answer",
        "float32 arrays": "float32",
    },
    "06.5": {
        "None to release a clean result": "clean_result",
        "an output file not in expected: 'unexpected output'": "unexpected_file",
        "an expected file missing: 'missing output'": "missing_file",
        "a log with a non-blank line: mentions 'log'": "log_is_a_disclosure",
        "checked in this order": "order",
    },
}
