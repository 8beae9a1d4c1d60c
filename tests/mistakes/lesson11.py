"""Lesson 11's catalogued slips: records' names and copies, the order back, the weighted aggregation, the round rule."""

from tests.mistakes import Mistake

_REC = "return {str(i): np.array(p, dtype=np.float32) for i, p in enumerate(params)}"
_BACK = "return [np.asarray(record[k], dtype=np.float32) for k in expected]"
_CHECK = (
    "    if sorted(record, key=lambda k: (len(k), k)) != expected:\n"
    "        raise ValueError(f\"record has keys {sorted(record)}: expected exactly '0' .. '{len(record) - 1}'\")\n"
)
_WAIT = "if answered < sent and elapsed < timeout and usable + (sent - answered) >= min_nodes:"

MISTAKES = [
    # 11.1 params_to_record
    Mistake(
        "11.1",
        "int_keys",
        ("keys are the ints", "str(i)"),
        edits=((_REC, "return {i: np.array(p, dtype=np.float32) for i, p in enumerate(params)}"),),
    ),
    Mistake(
        "11.1",
        "asarray_shares_memory",
        ("shares memory",),
        edits=((_REC, "return {str(i): np.asarray(p, dtype=np.float32) for i, p in enumerate(params)}"),),
    ),
    Mistake(
        "11.1",
        "dtype_kept",
        ("the course sends float32",),
        edits=((_REC, "return {str(i): np.array(p) for i, p in enumerate(params)}"),),
    ),
    # 11.2 record_to_params
    Mistake(
        "11.2",
        "string_order",
        ("not by the string",),
        edits=((_CHECK, ""), (_BACK, "return [np.asarray(record[k], dtype=np.float32) for k in sorted(record)]")),
    ),
    Mistake(
        "11.2",
        "insertion_order",
        ("not by the string",),
        edits=((_CHECK, ""), (_BACK, "return [np.asarray(v, dtype=np.float32) for v in record.values()]")),
    ),
    Mistake("11.2", "keys_not_checked", ("raised KeyError", "ValueError naming the keys"), edits=((_CHECK, ""),)),
    Mistake(
        "11.2",
        "dtype_kept",
        ("return float32 arrays",),
        edits=((_BACK, "return [np.asarray(record[k]) for k in expected]"),),
    ),
    # 11.3 aggregate_replies
    Mistake(
        "11.3",
        "unweighted_delta",
        ("plain (unweighted) mean of the deltas",),
        edits=(
            (
                "fedavg.ClientOutput(r.delta, r.num_examples, r.metrics) for r in ordered",
                "fedavg.ClientOutput(r.delta, 1, r.metrics) for r in ordered",
            ),
        ),
    ),
    Mistake(
        "11.3",
        "unweighted_loss",
        ("plain (unweighted) mean of the losses",),
        edits=(
            (
                'loss = float(np.dot(n, [r.metrics["loss"] for r in ordered]) / n.sum())',
                'loss = float(np.mean([r.metrics["loss"] for r in ordered]))',
            ),
        ),
    ),
    Mistake(
        "11.3",
        "float64_delta",
        ("the course's parameters are float32",),
        code="def aggregate_replies(replies):\n"
        "    ordered = sorted(replies, key=lambda r: r.client_key)\n"
        "    n = np.array([r.num_examples for r in ordered], dtype=np.float64)\n"
        "    delta = [sum(nk * np.asarray(r.delta[i], np.float64) for nk, r in zip(n, ordered)) / n.sum()\n"
        "             for i in range(len(ordered[0].delta))]\n"
        "    return delta, float(np.dot(n, [r.metrics['loss'] for r in ordered]) / n.sum())\n",
        thorough=True,
    ),
    # 11.4 round_decision
    Mistake(
        "11.4",
        "waits_at_the_timeout",
        ("the time is up",),
        edits=((_WAIT, _WAIT.replace("elapsed < timeout", "elapsed <= timeout")),),
    ),
    Mistake(
        "11.4",
        "waits_when_hopeless",
        ("waiting cannot help",),
        edits=((_WAIT, "if answered < sent and elapsed < timeout:"),),
    ),
    Mistake(
        "11.4",
        "counts_errors",
        ("replies were errors",),
        edits=(('return "aggregate" if usable >= min_nodes', 'return "aggregate" if answered >= min_nodes'),),
    ),
    Mistake(
        "11.4",
        "aggregates_as_soon_as_enough",
        ("may come before the timeout",),
        code="def round_decision(*, sent, answered, usable, min_nodes, elapsed, timeout):\n"
        "    if usable >= min_nodes:\n"
        "        return 'aggregate'\n"
        "    if answered < sent and elapsed < timeout and usable + (sent - answered) >= min_nodes:\n"
        "        return 'wait'\n"
        "    return 'skip'\n",
    ),
]

PATHS = {
    "11.1": {
        "one entry per tensor, named str(i)": "keys_and_shapes",
        "shapes kept": "keys_and_shapes",
        "float32 values": "float32",
        "copies (changing the record leaves the model)": "a_copy",
    },
    "11.2": {
        "ordered by the number in the key ('10' after '9')": "numeric_order",
        "float32 arrays": "float32",
        "a ValueError naming the keys unless they are '0' .. str(len - 1)": "bad_keys",
    },
    "11.3": {
        "fedavg.aggregate: weighted by num_examples": "weighted_known_answer",
        "the n_k-weighted training loss": "weighted_known_answer",
        "replies in any (arrival) order": "arrival_order",
    },
    "11.4": {
        "wait while nodes are out, there is time and min_nodes is reachable": "known_answers",
        "aggregate at the timeout with min_nodes usable replies": "known_answers",
        "skip with fewer than min_nodes usable replies (errors do not count)": "known_answers",
        "stop waiting when min_nodes can no longer be reached": "known_answers",
        "elapsed == timeout: the time is up": "more_answers",
    },
}
