"""Lesson 03 exercises: real-world clients.

03.1 ``dirichlet_split``      Dirichlet label skew (Hsu et al. 2019), checked by its properties
03.2 ``per_group_accuracy``   accuracy per activity group, so opt-out bias shows
03.3 ``prox_client_update``   the FedProx client update (Li et al. 2020): local SGD with a proximal term
03.4 ``server_momentum``      the FedAvgM server step (Hsu et al. 2019)

A Dirichlet split is random, so 03.1 is checked by what every correct split
must satisfy (every sample exactly once, the right number of clients,
reproducible from the seed, skew that falls as ``alpha`` grows), not by
equality with the reference :func:`fedlab.partition.dirichlet`. The others
are compared with :func:`fedlab.fairness.per_group_accuracy`,
:func:`fedlab.fedavg.local_sgd` (``mu``) and
:func:`fedlab.server_opt.momentum_update`.
"""

from __future__ import annotations

import numpy as np

from fedlab import fairness, fedavg, models, partition, server_opt
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
from fedlab.exercises.fedavg import sgd_slip

# ---- 03.1 dirichlet_split -----------------------------------------------------------------


def _labels(per_class=60, classes=10):
    return np.repeat(np.arange(classes, dtype=np.int64), per_class)


def _parts_of(answer, labels, *, num_clients, alpha, rng, what):
    parts = answer(labels, num_clients=num_clients, alpha=alpha, rng=rng)
    if not isinstance(parts, list | tuple):
        raise CheckFailed(f"{what}: expected a list of {num_clients} index arrays, got {type(parts).__name__}")
    if len(parts) != num_clients:
        raise CheckFailed(
            f"{what}: expected {num_clients} index arrays (one per client, empty ones included), got {len(parts)}"
        )
    out = []
    for k, p in enumerate(parts):
        a = np.asarray(p)
        if a.size and a.dtype.kind not in "iu":
            raise CheckFailed(f"{what}: client {k}'s indices have dtype {a.dtype}; expected integers")
        out.append(a.astype(np.int64).ravel())
    return out


def _mean_tv(labels, parts, classes=10):
    return partition.describe(labels, parts, num_classes=classes)["mean_tv_distance"]


def _t_dir_cover(answer):
    y = _labels()
    for alpha in (0.1, 1.0, 100.0):
        parts = _parts_of(answer, y, num_clients=10, alpha=alpha, rng=0, what=f"alpha={alpha}, 10 clients")
        unsorted = [k for k, part in enumerate(parts) if np.any(np.diff(np.asarray(part)) < 0)]
        if unsorted:
            raise CheckFailed(
                f"alpha={alpha}: client {unsorted[0]}'s indices are not sorted ({len(unsorted)} of {len(parts)} "
                "clients). Hint: return np.sort(np.concatenate(pieces)) for each client, as the docstring says"
            )
        got = np.sort(np.concatenate(parts))
        if got.size != y.size or not np.array_equal(got, np.arange(y.size)):
            dup = got.size - np.unique(got).size
            raise CheckFailed(
                f"alpha={alpha}: expected every one of the {y.size} samples exactly once over the clients, got "
                f"{got.size} indices ({dup} repeated, {y.size - np.unique(got).size} missing). Hint: shuffle each "
                "class's indices and cut them at floor(cumsum(p) * n_c) with np.split, so the pieces cover the class"
            )


def _t_dir_skew(answer):
    y = _labels()
    low = np.mean([_mean_tv(y, _parts_of(answer, y, num_clients=10, alpha=0.05, rng=s, what="alpha=0.05"))
                   for s in range(3)])
    high = np.mean([_mean_tv(y, _parts_of(answer, y, num_clients=10, alpha=1000.0, rng=s, what="alpha=1000"))
                    for s in range(3)])
    if not low > 0.5:
        raise CheckFailed(
            f"alpha=0.05 should leave most clients with one or two classes: expected a mean label distance "
            f"(TV, partition.describe) above 0.5, got {low:.3f}. Hint: draw p_c ~ Dirichlet(alpha, ..., alpha) over "
            "the CLIENTS separately for every class c, and give client k the share p_c[k] of class c"
        )
    if not high < 0.1:
        raise CheckFailed(
            f"alpha=1000 should be close to IID: expected a mean label distance below 0.1, got {high:.3f}. "
            "Hint: the Dirichlet's concentration is alpha for every client (rng.dirichlet(np.full(K, alpha)))"
        )


def _t_dir_seeded(answer):
    y = _labels(per_class=30)
    a = _parts_of(answer, y, num_clients=8, alpha=0.5, rng=7, what="seed 7")
    b = _parts_of(answer, y, num_clients=8, alpha=0.5, rng=7, what="seed 7 again")
    if not all(np.array_equal(np.sort(p), np.sort(q)) for p, q in zip(a, b)):
        raise CheckFailed(
            "the same seed gave two different splits. Hint: take all randomness from "
            "g = np.random.default_rng(rng) (or rng itself if it is a Generator), never from np.random.*"
        )
    g = test_rng(3)
    c = _parts_of(answer, y, num_clients=8, alpha=0.5, rng=g, what="a Generator, first call")
    d = _parts_of(answer, y, num_clients=8, alpha=0.5, rng=g, what="the same Generator, second call")
    if all(np.array_equal(np.sort(p), np.sort(q)) for p, q in zip(c, d)):
        raise CheckFailed(
            "two calls with the same Generator gave the same split: a Generator passed in must be used "
            "(and so advanced), not re-seeded"
        )


def _t_dir_monotone(answer):
    y = _labels()
    tv = {a: np.mean([_mean_tv(y, _parts_of(answer, y, num_clients=10, alpha=a, rng=s, what=f"alpha={a}"))
                      for s in range(5)]) for a in (0.1, 1.0, 100.0)}
    if not tv[0.1] > tv[1.0] > tv[100.0]:
        raise CheckFailed(
            "the skew should fall as alpha grows: expected mean label distance at alpha 0.1 > 1 > 100, got "
            + ", ".join(f"{a:g}: {v:.3f}" for a, v in tv.items())
        )


def _t_dir_many_clients(answer):
    y = _labels(per_class=5, classes=4)
    parts = _parts_of(answer, y, num_clients=30, alpha=0.1, rng=1, what="30 clients, 20 samples, alpha=0.1")
    got = np.sort(np.concatenate(parts))
    expect_equal(got, np.arange(y.size), what="30 clients for 20 samples (some clients must be empty)",
                 hint="empty clients are allowed; return an empty index array for them")


# ---- 03.2 per_group_accuracy --------------------------------------------------------------


def _t_group_known(answer):
    got = answer(np.array([1, 0, 1, 1, 0, 0]), np.array([1, 0, 0, 1, 1, 0]), np.array([0, 0, 1, 1, 2, 2]),
                 num_groups=3)
    expect_close(got, [1.0, 0.5, 0.5], what="6 rows in groups [0, 0, 1, 1, 2, 2]",
                 like={"each group's right answers divided by ALL rows, not by the group's own number of rows":
                       [2 / 6, 1 / 6, 1 / 6]},
                 hint="for each group g: mean of (y_pred == y_true) over the rows with groups == g")


def _t_group_empty(answer):
    got = answer(np.array([1, 0, 1]), np.array([1, 1, 1]), np.array([0, 0, 2]), num_groups=4)
    expect_close(got, [0.5, np.nan, 1.0, np.nan], what="groups 1 and 3 have no rows",
                 hint="return an array of length num_groups, with np.nan for a group without rows")


def _t_group_random(answer):
    rng = test_rng(5)
    yt, yp, g = rng.integers(0, 3, 500), rng.integers(0, 3, 500), rng.integers(0, 4, 500)
    want = fairness.per_group_accuracy(yt, yp, g, num_groups=4)
    expect_close(answer(yt, yp, g, num_groups=4), want, what="500 random rows, 4 groups")


def _t_group_weighted_mean(answer):
    rng = test_rng(6)
    yt, yp = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    g = np.minimum(rng.geometric(0.4, 300) - 1, 2)  # unequal group sizes
    acc = np.asarray(answer(yt, yp, g, num_groups=3), dtype=float)
    sizes = np.bincount(g, minlength=3)
    expect_close(float(np.dot(acc, sizes) / sizes.sum()), float(np.mean(yt == yp)),
                 what="group accuracies weighted by group size vs the overall accuracy",
                 hint="each group's accuracy divides by that group's own number of rows")


# ---- 03.3 prox_client_update --------------------------------------------------------------


def _toy(n, *, d=6, classes=3, seed=0):
    rng = test_rng(seed)
    w = rng.standard_normal((d, classes))
    x = rng.standard_normal((n, d)).astype(np.float32)
    y = np.argmax(x @ w + 0.5 * rng.standard_normal((n, classes)), axis=1).astype(np.int64)
    return x, y


def _prox_case(answer, *, spec, n, batch_size, epochs, lr, mu, seed, what):
    x, y = _toy(n, d=spec.in_features, classes=spec.num_classes, seed=seed)
    params = models.init_params(spec, rng=seed)
    orders = fedavg.epoch_orders(test_rng(seed + 1).random((epochs, n)))
    want = fedavg.local_sgd(spec, params, x, y, orders=orders, batch_size=batch_size, lr=lr, mu=mu)
    before = [p.copy() for p in params]
    got = answer(spec, params, x, y, orders=orders, batch_size=batch_size, lr=lr, mu=mu)
    if not isinstance(got, fedavg.ClientOutput):
        raise CheckFailed(f"{what}: expected a fedavg.ClientOutput(delta, num_examples, metrics), "
                          f"got {type(got).__name__}")
    if not P.allclose(params, before, atol=0, rtol=0):
        raise CheckFailed(f"{what}: your function changed the global params it was given; work on a copy")
    expect_equal(got.num_examples, n, what=f"{what}: num_examples")
    slips = {
        "the gradients accumulate across steps: call model.zero_grad() before each loss.backward()": (
            sgd_slip(spec, params, x, y, orders=orders, batch_size=batch_size, lr=lr, mu=mu)
        ),
        "the proximal term with the wrong sign: add + mu * (w - w_global) to the gradient": sgd_slip(
            spec, params, x, y, orders=orders, batch_size=batch_size, lr=lr, mu=-mu, zero_grad=True
        ),
        "plain FedAvg: the proximal term mu * (w - w_global) is missing": fedavg.local_sgd(
            spec, params, x, y, orders=orders, batch_size=batch_size, lr=lr
        ).delta,
    }
    expect_params_close(
        got.delta, want.delta, what=f"{what}: delta", atol=1e-5, rtol=1e-4, like=slips,
        hint="each step: w <- w - lr * (grad + mu * (w - w_global)), where w_global are the params received "
        "(kept fixed for the whole client update), and grad is of the mean loss over the batch",
    )
    return got


def _t_prox_logreg(answer):
    _prox_case(answer, spec=models.logreg(6, 3), n=12, batch_size=4, epochs=2, lr=0.2, mu=0.5, seed=0,
               what="logreg, mu=0.5, 12 examples, B=4, two epochs")


def _t_prox_mlp(answer):
    _prox_case(answer, spec=models.mlp(6, (5,), 3), n=9, batch_size=3, epochs=3, lr=0.3, mu=1.0, seed=1,
               what="MLP, mu=1, 9 examples, B=3, three epochs")


def _t_prox_mu0(answer):
    _prox_case(answer, spec=models.mlp(6, (4,), 3), n=10, batch_size=5, epochs=2, lr=0.2, mu=0.0, seed=2,
               what="mu=0 (must equal plain FedAvg)")


def _t_prox_full_batch(answer):
    _prox_case(answer, spec=models.logreg(6, 3), n=7, batch_size=None, epochs=4, lr=0.5, mu=2.0, seed=3,
               what="batch_size=None (full batch), mu=2")


def _t_prox_shrinks(answer):
    spec = models.mlp(6, (8,), 3)
    x, y = _toy(20, seed=4)
    params = models.init_params(spec, rng=4)
    orders = fedavg.epoch_orders(test_rng(5).random((5, 20)))
    norms = [P.norm(answer(spec, params, x, y, orders=orders, batch_size=4, lr=0.2, mu=mu).delta)
             for mu in (0.0, 0.5, 2.0)]
    if not norms[0] > norms[1] > norms[2]:
        raise CheckFailed(
            "a larger mu should keep the client closer to the global model: expected the delta's norm to "
            f"shrink for mu = 0, 0.5, 2, got {[round(v, 4) for v in norms]}"
        )


# ---- 03.4 server_momentum -----------------------------------------------------------------


def _pair(out, what, n):
    if not isinstance(out, tuple | list) or len(out) != 2:
        raise CheckFailed(f"{what}: expected a pair (new_params, new_velocity), got {type(out).__name__}")
    for name, v in zip(("new_params", "new_velocity"), out):
        if not isinstance(v, list | tuple) or len(v) != n:
            raise CheckFailed(f"{what}: expected {name} as a list of {n} arrays, got {type(v).__name__}")
    return out


def _t_mom_known(answer):
    w = [np.zeros((2, 3), np.float32), np.zeros(3, np.float32)]
    v = [np.zeros_like(p) for p in w]
    ones = [np.ones_like(p) for p in w]
    for _ in range(2):
        w, v = _pair(answer(w, v, ones, server_lr=1.0, beta=0.5), "all-ones delta", 2)
    expect_params_close(v, [np.full((2, 3), 1.5), np.full(3, 1.5)], what="velocity after two all-ones deltas, beta=0.5",
                        hint="v <- beta * v + delta: 1, then 0.5 * 1 + 1 = 1.5")
    expect_params_close(w, [np.full((2, 3), 2.5), np.full(3, 2.5)], what="params after two all-ones deltas, beta=0.5",
                        hint="w <- w + server_lr * v (the NEW v): 0 + 1 = 1, then 1 + 1.5 = 2.5")


def _random_params(seed, shapes=((4, 3), (3,))):
    rng = test_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


def _t_mom_random(answer):
    state = server_opt.MomentumState(_random_params(1), _random_params(2))
    w, v = state.params, state.velocity
    for r in range(3):
        delta = _random_params(10 + r)
        state = server_opt.momentum_update(state, delta, server_lr=0.7, beta=0.9)
        w, v = _pair(answer(w, v, delta, server_lr=0.7, beta=0.9), f"round {r + 1}", 2)
        expect_params_close(w, state.params, what=f"params after round {r + 1} (server_lr=0.7, beta=0.9)")
        expect_params_close(v, state.velocity, what=f"velocity after round {r + 1}")


def _t_mom_beta0(answer):
    w0, delta = _random_params(3), _random_params(4)
    w, _ = _pair(answer(w0, [np.zeros_like(p) for p in w0], delta, server_lr=0.5, beta=0.0), "beta=0", 2)
    expect_params_close(w, fedavg.server_update(fedavg.ServerState(w0), delta, server_lr=0.5).params,
                        what="beta=0 (must equal fedavg.server_update)")


def _t_mom_pure(answer):
    w0, v0, delta = _random_params(5), _random_params(6), _random_params(7)
    copies = [[p.copy() for p in t] for t in (w0, v0, delta)]
    answer(w0, v0, delta, server_lr=1.0, beta=0.9)
    for name, orig, cp in zip(("params", "velocity", "delta"), (w0, v0, delta), copies):
        if not P.allclose(orig, cp, atol=0, rtol=0):
            raise CheckFailed(f"your function changed the {name} it was given; return new arrays instead")


register(
    Exercise(
        "03.1",
        "a Dirichlet label-skew split",
        "dirichlet_split",
        (
            Test("covers_every_sample_once", _t_dir_cover),
            Test("skew_follows_alpha", _t_dir_skew),
            Test("seeded", _t_dir_seeded),
            Test("skew_monotone_in_alpha", _t_dir_monotone, in_check=False),
            Test("more_clients_than_samples", _t_dir_many_clients, in_check=False),
        ),
        hint="for every class: shuffle its indices, draw p ~ Dirichlet(alpha * ones(K)), cut at "
        "floor(cumsum(p) * n_c)[:-1] and give piece k to client k",
    ),
    Exercise(
        "03.2",
        "accuracy per group",
        "per_group_accuracy",
        (
            Test("known_answer", _t_group_known),
            Test("empty_group_is_nan", _t_group_empty),
            Test("random_rows", _t_group_random, in_check=False),
            Test("weighted_mean_is_overall", _t_group_weighted_mean, in_check=False),
        ),
    ),
    Exercise(
        "03.3",
        "the FedProx client update",
        "prox_client_update",
        (
            Test("logreg_mu_half", _t_prox_logreg),
            Test("mlp_mu_one", _t_prox_mlp),
            Test("mu_zero_is_fedavg", _t_prox_mu0, in_check=False),
            Test("full_batch", _t_prox_full_batch),
            Test("larger_mu_smaller_delta", _t_prox_shrinks, in_check=False),
        ),
        hint="your client_update of exercise 02.1 with one change in the step: add mu * (w - w_global) to the gradient",
    ),
    Exercise(
        "03.4",
        "server momentum (FedAvgM)",
        "server_momentum",
        (
            Test("known_answer", _t_mom_known),
            Test("matches_reference", _t_mom_random),
            Test("beta_zero_is_fedavg", _t_mom_beta0, in_check=False),
            Test("inputs_unchanged", _t_mom_pure, in_check=False),
        ),
        hint="v_new = beta * v + delta; w_new = w + server_lr * v_new, tensor by tensor",
    ),
)
