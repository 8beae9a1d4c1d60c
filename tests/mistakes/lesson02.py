"""Lesson 02's catalogued slips: local SGD, weighted aggregation, one round, rounds to a target."""

from tests.mistakes import Mistake

MISTAKES = [
    Mistake(
        "02.1",
        "no_zero_grad",
        ("gradients accumulate", "zero_grad"),
        edits=(("            model.zero_grad()\n", ""),),
    ),
    Mistake(
        "02.1",
        "returns_new_params",
        ("the new parameters, not the delta",),
        edits=(("return fedavg.ClientOutput(delta,", "return fedavg.ClientOutput(new,"),),
    ),
    Mistake(
        "02.1",
        "none_as_batch_size_1",
        ("batch size 1", "batch_size=None"),
        edits=(("b = len(y) if batch_size is None else batch_size", "b = 1 if batch_size is None else batch_size"),),
    ),
    Mistake(
        "02.1",
        "old_minus_new",
        ("-1x", "new - old, not old - new"),
        edits=(("delta = [a - b_ for a, b_ in zip(new, params)]", "delta = [b_ - a for a, b_ in zip(new, params)]"),),
    ),
    Mistake(
        "02.2",
        "plain_mean",
        ("unweighted", "weight each delta", "num_examples"),
        edits=(
            ("sum(o.num_examples * np.asarray(o.delta[i], dtype=np.float64) for o in outputs) / total",
             "sum(np.asarray(o.delta[i], dtype=np.float64) for o in outputs) / len(outputs)"),
        ),
    ),
    Mistake(
        "02.2",
        "divides_by_client_count",
        ("divided by the number of clients", "total number of examples"),
        edits=(("for o in outputs) / total", "for o in outputs) / len(outputs)"),),
    ),
    Mistake(
        "02.3",
        "returns_average_delta",
        ("the average delta, not params + delta",),
        edits=(("return P.add(params, fedavg.aggregate(outs))", "return fedavg.aggregate(outs)"),),
    ),
    Mistake(
        "02.3",
        "subtracts_delta",
        ("params - delta",),
        edits=(("return P.add(params, fedavg.aggregate(outs))", "return P.subtract(params, fedavg.aggregate(outs))"),),
    ),
    Mistake(
        "02.3",
        "unweighted_mean",
        ("unweighted mean",),
        edits=(
            ("return P.add(params, fedavg.aggregate(outs))",
             "return P.add(params, [np.mean([o.delta[i] for o in outs], axis=0) for i in range(len(params))])"),
        ),
    ),
    Mistake(
        "02.4",
        "zero_based_round",
        ("numbered from 1",),
        edits=(("            return i + 1\n", "            return i\n"),),
    ),
    Mistake(
        "02.4",
        "strictly_above_target",
        ("reaching the target exactly counts",),
        edits=(("if acc >= target:", "if acc > target:"),),
    ),
    Mistake(
        "02.4",
        "last_crossing",
        ("first round",),
        thorough=True,
        code="def rounds_to_target(accuracies, target):\n"
        "    hits = [i + 1 for i, a in enumerate(accuracies) if a >= target]\n"
        "    return hits[-1] if hits else None\n",
    ),
]

PATHS = {
    "02.1": {
        "minibatches of batch_size": "logreg_one_epoch",
        "several epochs (orders[e])": "mlp_three_epochs",
        "batch_size=None: the full batch (FedSGD)": "full_batch",
        "a smaller last batch": "uneven_last_batch",
    },
    "02.2": {"weighted by num_examples": "weighted_known_answer", "several tensors per client": "random_clients"},
    "02.3": {
        "every client sampled (fraction=1)": "all_clients",
        "a sampled fraction of the clients": "sampled_clients",
        "FedSGD (batch_size=None)": "fedsgd_round",
    },
    "02.4": {"the first round at or above the target, numbered from 1": "basic", "never reached: None": "never"},
}
