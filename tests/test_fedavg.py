"""Known answers, oracle tests and properties of federated averaging."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlab import fedavg, models, seeding
from fedlab import params as P


def toy_clients(sizes, *, d=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((d, classes))
    out = []
    for n in sizes:
        x = rng.standard_normal((n, d)).astype(np.float32)
        y = np.argmax(x @ w + 0.5 * rng.standard_normal((n, classes)), axis=1).astype(np.int64)
        out.append((x, y))
    return out


def test_server_update_known_answer_tff():
    # TFF simple_fedavg's hand check: zero weights + all-ones delta at lr 0.1 gives 0.2 after two rounds
    state = fedavg.ServerState([np.zeros((2, 3), np.float32), np.zeros(3, np.float32)])
    ones = [np.ones((2, 3), np.float32), np.ones(3, np.float32)]
    for _ in range(2):
        state = fedavg.server_update(state, ones, server_lr=0.1)
    assert state.round == 2
    assert all(np.allclose(p, 0.2) for p in state.params)


def test_aggregate_is_weighted_by_examples_known_answer():
    outs = [
        fedavg.ClientOutput([np.array([1.0], np.float32)], 1),
        fedavg.ClientOutput([np.array([3.0], np.float32)], 3),
    ]
    assert fedavg.aggregate(outs)[0][0] == pytest.approx(2.5)  # (1*1 + 3*3) / 4, not the unweighted 2.0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=8), st.integers(0, 10_000), st.randoms(use_true_random=False))
def test_aggregate_order_independent_and_convex(weights, seed, shuffler):
    rng = np.random.default_rng(seed)
    outs = [
        fedavg.ClientOutput(
            [rng.standard_normal((3, 2)).astype(np.float32), rng.standard_normal(2).astype(np.float32)], w
        )
        for w in weights
    ]
    shuffled = list(outs)
    shuffler.shuffle(shuffled)
    a, b = fedavg.aggregate(outs), fedavg.aggregate(shuffled)
    assert P.allclose(a, b, atol=1e-6, rtol=1e-6)
    stacked = np.stack([o.delta[0] for o in outs])
    assert np.all(a[0] <= stacked.max(0) + 1e-6) and np.all(a[0] >= stacked.min(0) - 1e-6)
    # scaling every weight by the same factor changes nothing
    scaled = [fedavg.ClientOutput(o.delta, o.num_examples * 7) for o in outs]
    assert P.allclose(fedavg.aggregate(scaled), a, atol=1e-6)


def plain_sgd(spec, params, x, y, orders, batch_size, lr):
    """An independent, hand-written SGD loop: the oracle for one client."""
    tensors = [torch.tensor(p, requires_grad=True) for p in params]
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    b = len(y) if batch_size is None else batch_size
    for order in orders:
        for s in range(0, len(y), b):
            idx = torch.as_tensor(order[s : s + b])
            loss = F.cross_entropy(models.forward(spec, tensors, xt[idx]), yt[idx])
            grads = torch.autograd.grad(loss, tensors)
            with torch.no_grad():
                for t, g in zip(tensors, grads):
                    t -= lr * g
    return [t.detach().numpy() for t in tensors]


@pytest.mark.parametrize("batch_size", [1, 4, None])
def test_one_client_equals_local_sgd(batch_size):
    spec = models.mlp(6, (5,), 3)
    ((x, y),) = toy_clients([11])
    params, hist = fedavg.run(spec, [(x, y)], rounds=2, seed=5, epochs=3, batch_size=batch_size, lr=0.2)
    # replay: the same init and the same shuffle keys, trained by a plain loop
    from fedlab import seeding

    p = models.init_params(spec, rng=seeding.derive(5, 0))
    for r in (1, 2):
        g = seeding.derive(5, r)
        fedavg.sample_clients(1, fraction=1.0, rng=g)
        orders = fedavg.epoch_orders(g.random((1, 3, 11))[0])
        p = plain_sgd(spec, p, x, y, orders, batch_size, 0.2)
    assert P.allclose(params, p, atol=2e-6, rtol=1e-5)
    assert len(hist) == 2


def test_full_batch_fedsgd_equals_centralized_gradient_descent():
    spec = models.mlp(6, (7,), 3, activation="tanh")
    clients = toy_clients([3, 8, 5, 13])
    x = np.concatenate([c[0] for c in clients])
    y = np.concatenate([c[1] for c in clients])
    init = models.init_params(spec, rng=11)
    params, _ = fedavg.run(spec, clients, rounds=4, seed=0, epochs=1, batch_size=None, lr=0.5, init=init)
    central = init
    for _ in range(4):
        central = plain_sgd(spec, central, x, y, [np.arange(len(y))], None, 0.5)
    assert P.allclose(params, central, atol=1e-6, rtol=1e-5)


def test_client_update_reproducible_and_returns_delta():
    spec = models.logreg(6, 3)
    ((x, y),) = toy_clients([20])
    p0 = models.init_params(spec, rng=0)
    a = fedavg.client_update(spec, p0, x, y, epochs=2, batch_size=5, lr=0.1, rng=7)
    b = fedavg.client_update(spec, p0, x, y, epochs=2, batch_size=5, lr=0.1, rng=7)
    c = fedavg.client_update(spec, p0, x, y, epochs=2, batch_size=5, lr=0.1, rng=8)
    assert P.allclose(a.delta, b.delta, atol=0, rtol=0) and not P.allclose(a.delta, c.delta, atol=1e-9, rtol=0)
    assert a.num_examples == 20 and a.metrics["steps"] == 8
    keys = np.random.default_rng(7).random((2, 20))
    want = plain_sgd(spec, p0, x, y, fedavg.epoch_orders(keys), 5, 0.1)
    assert P.allclose(P.add(p0, a.delta), want, atol=1e-6)


def test_fedprox_mu_zero_is_fedavg_and_mu_pulls_towards_global():
    spec = models.mlp(6, (5,), 3)
    ((x, y),) = toy_clients([30])
    p0 = models.init_params(spec, rng=1)
    kw = dict(epochs=5, batch_size=5, lr=0.3, rng=3)
    plain = fedavg.client_update(spec, p0, x, y, **kw)
    zero = fedavg.client_update(spec, p0, x, y, mu=0.0, **kw)
    prox = fedavg.client_update(spec, p0, x, y, mu=1.0, **kw)
    assert P.allclose(plain.delta, zero.delta, atol=0, rtol=0)
    assert P.norm(prox.delta) < P.norm(plain.delta)


@pytest.mark.parametrize("fraction, m", [(1.0, 10), (0.1, 1), (0.01, 1), (0.25, 2), (0.5, 5)])
def test_sample_clients_counts(fraction, m):
    chosen = fedavg.sample_clients(10, fraction=fraction, rng=0)
    assert len(chosen) == m and len(set(chosen.tolist())) == m and np.all(np.diff(chosen) > 0)
    assert np.array_equal(chosen, fedavg.sample_clients(10, fraction=fraction, rng=0))


def test_loss_falls_smoke():
    spec = models.mlp(6, (16,), 3)
    clients = toy_clients([30] * 10)
    test = toy_clients([200], seed=0)[0]
    _, hist = fedavg.run(spec, clients, rounds=15, seed=1, fraction=0.5, epochs=2, batch_size=5, lr=0.2, test=test)
    loss = hist.column("test_loss")
    assert loss[-1] < loss[0] * 0.8
    assert hist.column("clients").tolist() == [5] * 15
    assert hist.records[0].bytes_up == 5 * P.num_bytes(models.init_params(spec, rng=0))
    assert hist.rounds_to(0.0) == 1 and hist.rounds_to(1.01) is None


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(rounds=0), "rounds"),
        (dict(fraction=0.0), "fraction"),
        (dict(fraction=1.5), "fraction"),
        (dict(epochs=0), "epochs"),
        (dict(batch_size=0), "batch_size"),
        (dict(lr=-1.0), "lr"),
        (dict(mu=-0.1), "mu"),
        (dict(engine="gpu"), "engine"),
        (dict(seed=None), "seed"),
    ],
)
def test_run_bad_arguments(kwargs, word):
    spec = models.logreg(6, 3)
    base = dict(rounds=1, seed=0)
    base.update(kwargs)
    with pytest.raises(ValueError, match=word):
        fedavg.run(spec, toy_clients([5, 5]), **base)


def test_bad_client_data():
    spec = models.logreg(6, 3)
    p = models.init_params(spec, rng=0)
    x, y = toy_clients([5])[0]
    with pytest.raises(ValueError, match="y has 4"):
        fedavg.client_update(spec, p, x, y[:4], epochs=1, batch_size=2, lr=0.1, rng=0)
    with pytest.raises(ValueError, match="labels"):
        fedavg.client_update(spec, p, x, y + 5, epochs=1, batch_size=2, lr=0.1, rng=0)
    with pytest.raises(ValueError, match="features"):
        fedavg.client_update(spec, p, x[:, :4], y, epochs=1, batch_size=2, lr=0.1, rng=0)
    with pytest.raises(ValueError, match="0 rows"):
        fedavg.client_update(spec, p, x[:0], y[:0], epochs=1, batch_size=2, lr=0.1, rng=0)
    with pytest.raises(ValueError, match="num_examples"):
        fedavg.aggregate([fedavg.ClientOutput(p, 0)])
    with pytest.raises(ValueError, match="empty"):
        fedavg.aggregate([])
    with pytest.raises(ValueError, match="clients is empty"):
        fedavg.run(spec, [], rounds=1, seed=0)


def test_stop_at_stops_early_and_needs_test_data():
    spec = models.mlp(6, (16,), 3)
    clients = toy_clients([30] * 10)
    test = toy_clients([200], seed=0)[0]
    _, full = fedavg.run(spec, clients, rounds=15, seed=1, epochs=2, batch_size=5, lr=0.2, test=test)
    target = float(full.column("test_accuracy")[5])
    _, hist = fedavg.run(spec, clients, rounds=15, seed=1, epochs=2, batch_size=5, lr=0.2, test=test, stop_at=target)
    assert len(hist) == full.rounds_to(target) and hist.final_accuracy >= target
    with pytest.raises(ValueError, match="stop_at"):
        fedavg.run(spec, clients, rounds=2, seed=1, stop_at=0.5)


def test_everyone_drops_out_keeps_the_model():
    spec = models.logreg(6, 3)
    init = models.init_params(spec, rng=0)
    params, hist = fedavg.run(spec, toy_clients([5, 5]), rounds=3, seed=0, dropout_rate=1.0, init=init)
    assert P.allclose(params, init, atol=0, rtol=0)
    assert hist.column("reported").tolist() == [0, 0, 0] and hist.column("bytes_up").tolist() == [0, 0, 0]


def test_max_steps_limits_work():
    spec = models.logreg(6, 3)
    ((x, y),) = toy_clients([20])
    p0 = models.init_params(spec, rng=0)
    out = fedavg.client_update(spec, p0, x, y, epochs=3, batch_size=4, lr=0.1, rng=1, max_steps=7)
    assert out.metrics["steps"] == 7
    full = fedavg.client_update(spec, p0, x, y, epochs=3, batch_size=4, lr=0.1, rng=1)
    assert full.metrics["steps"] == 15
    with pytest.raises(ValueError, match="max_steps"):
        fedavg.client_update(spec, p0, x, y, epochs=1, batch_size=4, lr=0.1, rng=1, max_steps=0)


def test_stragglers_drop_policy_reports_fewer():
    spec = models.logreg(6, 3)
    clients = toy_clients([6] * 10)
    _, partial = fedavg.run(spec, clients, rounds=5, seed=2, straggler_rate=0.5, stragglers="partial")
    _, dropped = fedavg.run(spec, clients, rounds=5, seed=2, straggler_rate=0.5, stragglers="drop")
    assert partial.column("reported").tolist() == [10] * 5
    assert dropped.column("reported").sum() < 50


def test_uplink_hook_changes_what_is_aggregated_and_counted():
    spec = models.logreg(6, 3)
    clients = toy_clients([6, 9, 4])
    init = models.init_params(spec, rng=0)
    seen = []

    def zero_uplink(delta, *, client, rng):
        seen.append(client)
        return [np.zeros_like(d) for d in delta], 10

    params, hist = fedavg.run(spec, clients, rounds=2, seed=0, init=init, uplink=zero_uplink)
    assert P.allclose(params, init, atol=0, rtol=0)
    assert hist.column("bytes_up").tolist() == [30, 30] and sorted(seen) == [0, 0, 1, 1, 2, 2]
    ident = lambda d, *, client, rng: (d, P.num_bytes(d))  # noqa: E731
    a, _ = fedavg.run(spec, clients, rounds=2, seed=0, uplink=ident)
    b, _ = fedavg.run(spec, clients, rounds=2, seed=0)
    assert P.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(dropout_rate=1.5), "dropout_rate"),
        (dict(straggler_rate=-0.1), "straggler_rate"),
        (dict(stragglers="wait"), "stragglers"),
    ],
)
def test_hetero_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        fedavg.run(models.logreg(6, 3), toy_clients([5, 5]), rounds=1, seed=0, **kwargs)


def test_history_names_the_sampled_and_reporting_clients():
    spec = models.logreg(6, 3)
    clients = toy_clients([6] * 10)
    _, hist = fedavg.run(spec, clients, rounds=4, seed=3, fraction=0.5, dropout_rate=0.4)
    for g_round, rec in enumerate(hist.records, start=1):
        want = fedavg.sample_clients(10, fraction=0.5, rng=seeding.derive(3, g_round))  # run's round stream
        assert rec.sampled_ids == tuple(int(k) for k in want)
        assert set(rec.reported_ids) <= set(rec.sampled_ids) and len(rec.reported_ids) == rec.reported
    assert sum(r.reported for r in hist.records) < sum(r.clients for r in hist.records)  # someone dropped
    ids = hist.column("reported_ids")
    assert ids.dtype == object and ids[0] == hist.records[0].reported_ids
