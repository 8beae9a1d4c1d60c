"""Lesson 11 exercises: the course's FedAvg on Flower (the checks themselves need no flwr).

11.1 ``params_to_record``   the course's parameters as a flat record {"0": w0, "1": w1, ...} (an ArrayRecord's content)
11.2 ``record_to_params``   and back, in the right order ("10" comes after "9")
11.3 ``aggregate_replies``  the ServerApp's weighted aggregation of the nodes' replies (fedavg.aggregate, unchanged)
11.4 ``round_decision``     wait, aggregate or skip: the rule that stops one vanished laptop from stalling the room

The references are in :mod:`fedlab.flower.core`, which never imports flwr,
so checking an answer takes milliseconds in either environment.
"""

from __future__ import annotations

import numpy as np

from fedlab import models
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
from fedlab.flower import core

# ---- 11.1 params_to_record -------------------------------------------------------------------------


def _params(n_tensors=2, *, seed=0, dtype=np.float32):
    rng = test_rng(seed)
    shapes = [(3, 4), (3,), (2, 2, 2), (5,), (1,)]
    return [rng.standard_normal(shapes[i % len(shapes)]).astype(dtype) for i in range(n_tensors)]


def _record(answer, params, what):
    before = [p.copy() for p in params]
    got = answer(params)
    if not isinstance(got, dict):
        raise CheckFailed(f"{what}: expected a dict of name -> array, got {type(got).__name__}")
    if not all(np.array_equal(a, b) for a, b in zip(params, before)):
        raise CheckFailed(f"{what}: your function changed the parameters it was given")
    return got


def _t_rec_keys(answer):
    params = _params(3)
    got = _record(answer, params, "3 tensors")
    if got and all(isinstance(k, int | np.integer) for k in got):
        raise CheckFailed(
            f"3 tensors: your keys are the ints {sorted(got)}: a record's names are strings. "
            "Hint: name tensor i by str(i), '0', '1', '2'"
        )
    expect_equal(
        sorted(got),
        ["0", "1", "2"],
        what="3 tensors: the keys",
        hint="one entry per tensor, named by its position as a string: str(i)",
    )
    for i, p in enumerate(params):
        a = np.asarray(got[str(i)])
        if a.shape != p.shape:
            raise CheckFailed(f"record['{i}'] has shape {a.shape}: tensor {i} has shape {p.shape}; keep the shapes")
        expect_close(a, p, what=f"record['{i}']")


def _t_rec_float32(answer):
    params = _params(2, seed=1, dtype=np.float64)
    got = _record(answer, params, "float64 tensors")
    for k, a in got.items():
        if np.asarray(a).dtype != np.float32:
            raise CheckFailed(
                f"record['{k}'] has dtype {np.asarray(a).dtype}: the course sends float32. Hint: .astype(np.float32)"
            )


def _t_rec_copy(answer):
    params = _params(2, seed=2)
    got = _record(answer, params, "2 tensors")
    got["0"][...] = 0  # the record is serialized and sent; changing it must not change the model
    if np.all(params[0] == 0):
        raise CheckFailed(
            "changing record['0'] changed params[0]: the record shares memory with the model. "
            "Hint: np.array(p, dtype=np.float32) (a copy), not a view"
        )


def _t_rec_round_trip(answer):
    spec = models.mlp(64, (16,), 10)
    params = models.init_params(spec, rng=3)
    got = _record(answer, params, "an MLP's parameters")
    expect_params_close(core.record_to_params(got), params, what="record_to_params(your record)", atol=0, rtol=0)


# ---- 11.2 record_to_params -------------------------------------------------------------------------


def _t_back_small(answer):
    params = _params(3, seed=4)
    got = answer(core.params_to_record(params))
    expect_params_close(
        got, params, what="3 tensors", atol=0, rtol=0, hint="[record[str(i)] for i in range(len(record))]"
    )


def _t_back_order(answer):
    params = _params(12, seed=5)
    record = core.params_to_record(params)
    shuffled = {k: record[k] for k in sorted(record)}  # "0", "1", "10", "11", "2", ...: string order
    got = answer(shuffled)
    if not isinstance(got, list | tuple) or len(got) != 12:
        raise CheckFailed(f"12 tensors: expected a list of 12 arrays, got {type(got).__name__}")
    for i, (g, p) in enumerate(zip(got, params)):
        if np.shape(g) != p.shape or not np.array_equal(g, p):
            raise CheckFailed(
                f"12 tensors, keys given in string order ('0', '1', '10', '11', '2', ...): position {i} holds the "
                f"wrong tensor. Hint: order by the number in the key, int(k), not by the string"
            )


def _t_back_float32(answer):
    record = {"0": np.arange(6, dtype=np.float64).reshape(2, 3), "1": np.ones(2, dtype=np.float64)}
    got = answer(record)
    for i, g in enumerate(got):
        if np.asarray(g).dtype != np.float32:
            raise CheckFailed(f"tensor {i} has dtype {np.asarray(g).dtype}: return float32 arrays")


def _t_back_bad_keys(answer):
    record = {"0": np.ones(2, np.float32), "2": np.ones(2, np.float32)}
    try:
        answer(record)
    except KeyError as err:
        raise CheckFailed(
            f"keys '0' and '2' (tensor '1' missing): your function raised KeyError {err}, which names the key it "
            "looked up, not what is wrong with the record. Hint: check the keys yourself first and raise a "
            "ValueError naming the keys that came and the ones expected"
        ) from None
    except ValueError as err:
        if "'1'" not in str(err) and "1" not in str(err):
            raise CheckFailed(
                f"keys '0' and '2': the error should say what is wrong with the keys, got: {err}"
            ) from None
        return
    except NotImplementedError:
        raise  # the stub: "not attempted", not a wrong answer
    except Exception as err:  # noqa: BLE001
        raise CheckFailed(
            f"keys '0' and '2': expected a ValueError naming the keys, got {type(err).__name__}"
        ) from None
    raise CheckFailed(
        "keys '0' and '2' (tensor '1' missing): expected a ValueError. Hint: check that the keys are exactly "
        "'0' .. str(len(record) - 1), and say which keys came"
    )


# ---- 11.3 aggregate_replies -------------------------------------------------------------------------


def _replies(sizes, *, seed, node_ids=None, keys=None):
    rng = test_rng(seed)
    out = []
    for i, n in enumerate(sizes):
        delta = [rng.standard_normal((3, 2)).astype(np.float32), rng.standard_normal(3).astype(np.float32)]
        out.append(
            core.Reply(
                node_id=int(node_ids[i]) if node_ids else 1000 + i,
                client_key=int(keys[i]) if keys else i,
                delta=delta,
                num_examples=int(n),
                metrics={"loss": float(rng.uniform(0.5, 2.0)), "steps": 3.0},
            )
        )
    return out


def _agg_slips(replies) -> tuple[dict, dict]:
    """Known wrong answers: ``({slip: delta}, {slip: loss})``, the plain (unweighted) means."""
    n = len(replies)
    plain = [sum(np.asarray(r.delta[i], np.float64) for r in replies) / n for i in range(len(replies[0].delta))]
    losses = [float(r.metrics["loss"]) for r in replies]
    return (
        {"the plain (unweighted) mean of the deltas: weight each reply by its num_examples, as fedavg.aggregate "
         "does": plain},  # fmt: skip
        {"the plain (unweighted) mean of the losses: weight each loss by its reply's num_examples": float(
            np.mean(losses)
        )},  # fmt: skip
    )


def _agg(answer, replies, what):
    got = answer(replies)
    if not isinstance(got, tuple | list) or len(got) != 2:
        raise CheckFailed(f"{what}: expected a pair (delta, train_loss), got {type(got).__name__}")
    want_delta, want_loss = core.aggregate_replies(replies)
    like_delta, like_loss = _agg_slips(replies)
    expect_params_close(
        got[0],
        want_delta,
        what=f"{what}: delta",
        hint="fedavg.aggregate([fedavg.ClientOutput(r.delta, r.num_examples, r.metrics) for r in replies]): "
        "weighted by num_examples",
        like=like_delta,
    )
    expect_close(got[1], want_loss, what=f"{what}: train loss", hint="sum_k n_k loss_k / sum_k n_k", like=like_loss)


def _t_agg_known(answer):
    reps = [
        core.Reply(7, 0, [np.array([1.0, 0.0], np.float32)], 1, {"loss": 1.0}),
        core.Reply(9, 1, [np.array([4.0, 3.0], np.float32)], 2, {"loss": 4.0}),
    ]
    got = answer(reps)
    like_delta, like_loss = _agg_slips(reps)
    expect_params_close(
        got[0],
        [np.array([3.0, 2.0])],
        what="n=1 sends [1, 0], n=2 sends [4, 3]: delta",
        hint="(1*[1, 0] + 2*[4, 3]) / 3 = [3, 2]",
        like=like_delta,
    )
    expect_close(
        got[1], 3.0, what="losses 1 (n=1) and 4 (n=2): train loss", hint="(1*1 + 2*4) / 3 = 3", like=like_loss
    )


def _t_agg_three(answer):
    _agg(answer, _replies([480, 479, 479], seed=1), "three nodes")


def _t_agg_order(answer):
    reps = _replies([10, 200, 35, 7], seed=2, node_ids=[44, 12, 90, 3], keys=[3, 0, 2, 1])
    _agg(answer, reps[::-1], "four nodes, replies in arrival order")


def _t_agg_float32(answer):
    delta, _ = answer(_replies([5, 6], seed=3))
    for i, d in enumerate(delta):
        if np.asarray(d).dtype != np.float32:
            raise CheckFailed(f"delta tensor {i} has dtype {np.asarray(d).dtype}: the course's parameters are float32")


# ---- 11.4 round_decision -------------------------------------------------------------------------------

DECISION_CASES = [
    # sent, answered, usable, min_nodes, elapsed, timeout -> decision, why
    (3, 3, 3, 2, 5.0, 60.0, "aggregate", "everyone answered"),
    (3, 1, 1, 2, 5.0, 60.0, "wait", "two nodes are still training and there is time"),
    (3, 2, 2, 2, 61.0, 60.0, "aggregate", "the timeout passed and 2 >= min_nodes answered: go on without the third"),
    (3, 1, 1, 2, 61.0, 60.0, "skip", "the timeout passed with 1 < min_nodes replies"),
    (3, 3, 1, 2, 5.0, 60.0, "skip", "everyone answered but two replies were errors: 1 usable < min_nodes"),
    (4, 2, 0, 3, 5.0, 60.0, "skip", "0 usable + 2 still out < min_nodes=3: waiting cannot help"),
    (4, 2, 1, 3, 5.0, 60.0, "wait", "1 usable + 2 still out can still reach min_nodes=3"),
    (5, 4, 4, 2, 59.9, 60.0, "wait", "enough replies already, but the fifth may come before the timeout"),
    (2, 2, 2, 3, 1.0, 60.0, "skip", "only 2 nodes were asked and min_nodes=3"),
    (3, 2, 2, 2, 60.0, 60.0, "aggregate", "elapsed == timeout: the time is up"),
]


def _t_decision_table(answer, cases=DECISION_CASES[:6]):
    for sent, answered, usable, m, elapsed, timeout, want, why in cases:
        got = answer(sent=sent, answered=answered, usable=usable, min_nodes=m, elapsed=elapsed, timeout=timeout)
        if got != want:
            raise CheckFailed(
                f"sent={sent}, answered={answered}, usable={usable}, min_nodes={m}, elapsed={elapsed}, "
                f"timeout={timeout}: expected {want!r}, got {got!r} ({why})"
            )


def _t_decision_more(answer):
    _t_decision_table(answer, DECISION_CASES[6:])


def _t_decision_exhaustive(answer):
    for sent in range(0, 5):
        for answered in range(sent + 1):
            for usable in range(answered + 1):
                for m in (1, 2, 3):
                    for elapsed in (0.0, 30.0, 60.0):
                        kw = dict(
                            sent=sent, answered=answered, usable=usable, min_nodes=m, elapsed=elapsed, timeout=60.0
                        )
                        want, got = core.round_decision(**kw), answer(**kw)
                        if got != want:
                            raise CheckFailed(f"{kw}: expected {want!r}, got {got!r}")


register(
    Exercise(
        "11.1",
        "parameters as a flat record",
        "params_to_record",
        (
            Test("keys_and_shapes", _t_rec_keys),
            Test("float32", _t_rec_float32),
            Test("a_copy", _t_rec_copy),
            Test("round_trip", _t_rec_round_trip, in_check=False),
        ),
        hint="{str(i): np.array(p, dtype=np.float32) for i, p in enumerate(params)}",
    ),
    Exercise(
        "11.2",
        "and back to the list",
        "record_to_params",
        (
            Test("three_tensors", _t_back_small),
            Test("numeric_order", _t_back_order),
            Test("float32", _t_back_float32),
            Test("bad_keys", _t_back_bad_keys),
        ),
        hint="check sorted keys == [str(i) for i in range(len(record))] (else ValueError naming the keys); "
        "then [np.asarray(record[str(i)], dtype=np.float32) for i in range(len(record))]",
    ),
    Exercise(
        "11.3",
        "the ServerApp's weighted aggregation",
        "aggregate_replies",
        (
            Test("weighted_known_answer", _t_agg_known),
            Test("three_nodes", _t_agg_three),
            Test("arrival_order", _t_agg_order),
            Test("float32", _t_agg_float32, in_check=False),
        ),
        hint="sort by client_key; fedavg.aggregate of ClientOutput(r.delta, r.num_examples, r.metrics); "
        "loss = sum n_k loss_k / sum n_k",
    ),
    Exercise(
        "11.4",
        "wait, aggregate or skip",
        "round_decision",
        (
            Test("known_answers", _t_decision_table),
            Test("more_answers", _t_decision_more),
            Test("every_case", _t_decision_exhaustive, in_check=False),
        ),
        hint="'wait' if answered < sent and elapsed < timeout and usable + (sent - answered) >= min_nodes; "
        "else 'aggregate' if usable >= min_nodes else 'skip'",
    ),
)
