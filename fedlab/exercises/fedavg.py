"""Lesson 02 exercises: federated averaging from scratch.

02.1 ``client_update``     local minibatch SGD from the global model, returning a delta
02.2 ``fedavg_aggregate``  the weighted average of the deltas (by example count)
02.3 ``fedavg_round``      one round: sample, train, aggregate, update the server
02.4 ``rounds_to_target``  rounds until a target accuracy (the measure of McMahan et al.'s Table 2)

Each test compares the learner's answer with the reference in
:mod:`fedlab.fedavg` on small seeded problems.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fedlab import fedavg, models, seeding
from fedlab import params as P
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


def _toy(n, *, d=6, classes=3, seed=0):
    rng = test_rng(seed)
    w = rng.standard_normal((d, classes))
    x = rng.standard_normal((n, d)).astype(np.float32)
    y = np.argmax(x @ w + 0.5 * rng.standard_normal((n, classes)), axis=1).astype(np.int64)
    return x, y


def _as_output(out, what):
    if not isinstance(out, fedavg.ClientOutput):
        raise CheckFailed(
            f"{what}: expected a fedavg.ClientOutput(delta, num_examples, metrics), got {type(out).__name__}"
        )
    return out


# ---- 02.1 client_update -------------------------------------------------------------------


def sgd_slip(spec, params, x, y, *, orders, batch_size, lr, mu=0.0, zero_grad=False):
    """Local SGD as a learner may get it wrong: by default without ``zero_grad`` (the most common PyTorch slip:
    each step applies the sum of all gradients so far); any ``mu``, of either sign (the proximal term's sign).
    """
    module = models.build(spec, params)
    anchor = [torch.as_tensor(p) for p in params]
    xt, yt = torch.as_tensor(x), torch.as_tensor(y, dtype=torch.long)
    b = len(y) if batch_size is None else batch_size
    for order in orders:
        for s in range(0, len(y), b):
            idx = torch.as_tensor(order[s : s + b])
            if zero_grad:
                module.zero_grad()
            F.cross_entropy(module(xt[idx]), yt[idx]).backward()
            with torch.no_grad():
                for p, p0 in zip(module.parameters(), anchor):
                    p -= lr * (p.grad + mu * (p - p0))
    return P.subtract(models.get_params(module), params)


def _client_case(answer, *, spec, n, batch_size, epochs, lr, seed, what):
    x, y = _toy(n, d=spec.in_features, classes=spec.num_classes, seed=seed)
    params = models.init_params(spec, rng=seed)
    orders = fedavg.epoch_orders(test_rng(seed + 1).random((epochs, n)))
    want = fedavg.local_sgd(spec, params, x, y, orders=orders, batch_size=batch_size, lr=lr)
    before = [p.copy() for p in params]
    got = _as_output(answer(spec, params, x, y, orders=orders, batch_size=batch_size, lr=lr), what)
    if not P.allclose(params, before, atol=0, rtol=0):
        raise CheckFailed(f"{what}: your function changed the global params it was given; work on a copy")
    expect_equal(got.num_examples, n, what=f"{what}: num_examples", hint="the client's number of training examples")
    like = {
        "the new parameters, not the delta: return new - received": P.add(params, want.delta),
        "the gradients accumulate across steps: call model.zero_grad() before each loss.backward()": (
            sgd_slip(spec, params, x, y, orders=orders, batch_size=batch_size, lr=lr)
        ),
    }
    if batch_size is None:
        key = "batch size 1: batch_size=None means ONE batch of all the client's examples (FedSGD), b = len(y)"
        like[key] = fedavg.local_sgd(spec, params, x, y, orders=orders, batch_size=1, lr=lr).delta
    expect_params_close(
        got.delta,
        want.delta,
        what=f"{what}: delta",
        atol=1e-5,
        rtol=1e-4,
        like=like,
        ratios={
            -1.0: "new - old, not old - new",
            2.0: "gradients accumulate across steps? call zero_grad",
        },
        hint="delta = new params - received params; each step uses the mean loss over the batch "
        "orders[e][s:s + batch_size] and w <- w - lr * grad",
    )


def _t_client_basic(answer):
    _client_case(
        answer,
        spec=models.logreg(6, 3),
        n=10,
        batch_size=4,
        epochs=1,
        lr=0.1,
        seed=0,
        what="logreg, 10 examples, B=4, one epoch",
    )


def _t_client_epochs(answer):
    _client_case(
        answer,
        spec=models.mlp(6, (5,), 3),
        n=9,
        batch_size=3,
        epochs=3,
        lr=0.2,
        seed=1,
        what="MLP, 9 examples, B=3, three epochs",
    )


def _t_client_full_batch(answer):
    _client_case(
        answer,
        spec=models.mlp(6, (4,), 3),
        n=7,
        batch_size=None,
        epochs=2,
        lr=0.5,
        seed=2,
        what="batch_size=None (the full batch, FedSGD)",
    )


def _t_client_uneven(answer):
    _client_case(
        answer,
        spec=models.mlp(6, (8,), 3, activation="tanh"),
        n=11,
        batch_size=5,
        epochs=2,
        lr=0.3,
        seed=3,
        what="11 examples with B=5 (a smaller last batch)",
    )


# ---- 02.2 fedavg_aggregate ----------------------------------------------------------------


def _outputs(weights, *, seed, shapes=((3, 2), (2,))):
    rng = test_rng(seed)
    return [fedavg.ClientOutput([rng.standard_normal(s).astype(np.float32) for s in shapes], w) for w in weights]


def _t_agg_known(answer):
    outs = [
        fedavg.ClientOutput([np.array([1.0], np.float32)], 1),
        fedavg.ClientOutput([np.array([3.0], np.float32)], 3),
    ]
    got = answer(outs)
    expect_params_close(
        got,
        [np.array([2.5])],
        what="two clients with 1 and 3 examples, deltas [1.] and [3.]",
        like={
            "the plain (unweighted) mean of the deltas": [np.array([2.0])],
            "the weighted sum divided by the number of clients: divide by the total number of examples": [
                np.array([5.0])
            ],
            "the weighted sum without dividing: divide by the total number of examples": [np.array([10.0])],
        },
        hint="weight each delta by its client's num_examples: (1*1 + 3*3) / 4 = 2.5, not (1 + 3) / 2",
    )


def _t_agg_random(answer):
    outs = _outputs([5, 1, 12, 7], seed=4)
    expect_params_close(answer(outs), fedavg.aggregate(outs), what="four clients, two tensors each")


def _t_agg_single(answer):
    outs = _outputs([9], seed=5)
    expect_params_close(answer(outs), outs[0].delta, what="a single client (the average is its own delta)")


def _t_agg_order(answer):
    outs = _outputs([3, 8, 1, 20, 4], seed=6, shapes=((4, 3), (3,), (2, 4), (2,)))
    a, b = answer(outs), answer(outs[::-1])
    expect_params_close(
        b,
        a,
        what="the same clients in reverse order",
        atol=1e-6,
        hint="the result must not depend on the order of clients",
    )
    expect_params_close(a, fedavg.aggregate(outs), what="five clients, four tensors")


def _t_agg_scale(answer):
    outs = _outputs([2, 6], seed=7)
    big = [fedavg.ClientOutput(o.delta, o.num_examples * 1000) for o in outs]
    expect_params_close(
        answer(big),
        fedavg.aggregate(outs),
        what="example counts all multiplied by 1000",
        hint="divide by the total number of examples",
    )


# ---- 02.3 fedavg_round --------------------------------------------------------------------


def _round_outputs(spec, params, clients, *, fraction, epochs, batch_size, lr, rng):
    gen = seeding.as_generator(rng)
    chosen = fedavg.sample_clients(len(clients), fraction=fraction, rng=gen)
    return [
        fedavg.client_update(spec, params, *clients[k], epochs=epochs, batch_size=batch_size, lr=lr, rng=gen)
        for k in chosen
    ]


def reference_round(spec, params, clients, *, fraction, epochs, batch_size, lr, rng):
    """The reference for 02.3 (the protocol the exercise describes)."""
    hyper = dict(fraction=fraction, epochs=epochs, batch_size=batch_size, lr=lr, rng=rng)
    outs = _round_outputs(spec, params, clients, **hyper)
    return fedavg.server_update(fedavg.ServerState(params), fedavg.aggregate(outs)).params


def _unweighted_round(spec, params, clients, *, fraction, epochs, batch_size, lr, rng):
    """02.3 with the plain mean of the deltas (every client counts the same)."""
    hyper = dict(fraction=fraction, epochs=epochs, batch_size=batch_size, lr=lr, rng=rng)
    outs = _round_outputs(spec, params, clients, **hyper)
    mean = [np.mean([np.asarray(o.delta[i], np.float64) for o in outs], axis=0) for i in range(len(params))]
    return P.add(params, mean)


def _round_case(answer, *, sizes, fraction, epochs, batch_size, lr, seed, what):
    spec = models.mlp(6, (5,), 3)
    clients = [_toy(n, seed=seed + i) for i, n in enumerate(sizes)]
    params = models.init_params(spec, rng=seed)
    want = reference_round(
        spec,
        params,
        clients,
        fraction=fraction,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        rng=test_rng(seed),
    )
    got = answer(
        spec,
        params,
        clients,
        fraction=fraction,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        rng=test_rng(seed),
    )
    avg = P.subtract(want, params)
    like = {
        "the average delta, not params + delta: return P.add(params, aggregate(outputs))": avg,
        "params - delta: the delta is already new - old, so add it": P.subtract(params, avg),
        "the unweighted mean of the deltas: aggregate by example count (fedavg.aggregate)": _unweighted_round(
            spec, params, clients, fraction=fraction, epochs=epochs, batch_size=batch_size, lr=lr,
            rng=test_rng(seed)
        ),
    }
    expect_params_close(
        got,
        want,
        what=what,
        atol=1e-5,
        rtol=1e-4,
        like=like,
        hint="sample with fedavg.sample_clients(..., rng=rng), then call fedavg.client_update(..., "
        "rng=rng) for each chosen client in order, aggregate by example count, add the average delta",
    )


def _t_round_all(answer):
    _round_case(
        answer,
        sizes=[4, 9, 6],
        fraction=1.0,
        epochs=1,
        batch_size=3,
        lr=0.2,
        seed=10,
        what="3 clients, all sampled, E=1, B=3",
    )


def _t_round_sampled(answer):
    _round_case(
        answer,
        sizes=[5, 3, 8, 6, 7, 2, 9, 4, 6, 5],
        fraction=0.3,
        epochs=2,
        batch_size=4,
        lr=0.1,
        seed=11,
        what="10 clients, C=0.3, E=2, B=4",
    )


def _t_round_fedsgd(answer):
    _round_case(
        answer,
        sizes=[3, 12, 5, 7],
        fraction=0.5,
        epochs=1,
        batch_size=None,
        lr=0.5,
        seed=12,
        what="FedSGD: B=None, E=1, C=0.5",
    )


# ---- 02.4 rounds_to_target ----------------------------------------------------------------


def _t_target_basic(answer):
    acc, target = [0.5, 0.95, 0.8, 0.97, 0.99], 0.95
    got = answer(acc, target)
    slips = {
        1: "rounds are numbered from 1: return i + 1 for the list index i",
        4: "reaching the target exactly counts: compare with >=, not >",
        5: "the FIRST round at or above the target counts; return as soon as you find it, not the last one",
    }
    expect_equal(
        got,
        2,
        what=f"accuracies {acc}, target {target}",
        hint=slips.get(got, "the first round (numbered from 1) whose accuracy is >= the target"),
    )


def _t_target_never(answer):
    expect_equal(answer([0.5, 0.6], 0.9), None, what="a run that never reaches 0.9", hint="return None")


def _t_target_first(answer):
    expect_equal(
        answer(np.array([0.96, 0.2, 0.99]), 0.95),
        1,
        what="reached in round 1, then lost",
        hint="the FIRST round at or above the target counts, even if accuracy drops later",
    )


def _t_target_empty(answer):
    expect_equal(answer([], 0.5), None, what="no rounds at all")


register(
    Exercise(
        "02.1",
        "client update: local SGD returning a delta",
        "client_update",
        (
            Test("logreg_one_epoch", _t_client_basic),
            Test("mlp_three_epochs", _t_client_epochs),
            Test("full_batch", _t_client_full_batch),
            Test("uneven_last_batch", _t_client_uneven),
        ),
        hint="build the model with models.build(spec, params), then for each epoch walk through orders[e] in "
        "slices of batch_size; delta is new minus received parameters",
    ),
    Exercise(
        "02.2",
        "weighted aggregation",
        "fedavg_aggregate",
        (
            Test("weighted_known_answer", _t_agg_known),
            Test("random_clients", _t_agg_random),
            Test("single_client", _t_agg_single, in_check=False),
            Test("order_independent", _t_agg_order, in_check=False),
            Test("scale_invariant", _t_agg_scale, in_check=False),
        ),
        hint="sum_k n_k * delta_k / sum_k n_k, tensor by tensor",
    ),
    Exercise(
        "02.3",
        "one round of federated averaging",
        "fedavg_round",
        (
            Test("all_clients", _t_round_all),
            Test("sampled_clients", _t_round_sampled),
            Test("fedsgd_round", _t_round_fedsgd),
        ),
    ),
    Exercise(
        "02.4",
        "rounds to a target accuracy",
        "rounds_to_target",
        (
            Test("basic", _t_target_basic),
            Test("never", _t_target_never),
            Test("first_crossing", _t_target_first, in_check=False),
            Test("empty", _t_target_empty, in_check=False),
        ),
    ),
)

__all__ = ["reference_round", "sgd_slip", "expect_close"]
