"""Personal models (lesson 12): oracle tests (batched engine == per-client loop), known answers, bad input."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from fedlab import fedavg, models, personal
from fedlab import params as P
from tests.test_fedavg import toy_clients

MLP = models.mlp(6, (5,), 3)
LOGREG = models.logreg(6, 3)


def _clients():
    return toy_clients([3, 11, 7, 1, 9, 5], d=6, classes=3, seed=4)


def _close(a, b, atol=3e-6):
    assert all(np.allclose(x, y, atol=atol, rtol=1e-4) for x, y in zip(a, b))


# ---- oracle: the batched engine equals the per-client loop ------------------------------


@pytest.mark.parametrize("spec", [LOGREG, MLP], ids=["logreg", "mlp"])
@pytest.mark.parametrize("steps, batch_size", [(1, 4), (7, 3), (5, None)])
def test_fine_tune_batched_equals_loop(spec, steps, batch_size):
    clients, g = _clients(), models.init_params(spec, rng=1)
    a = personal.fine_tune(spec, g, clients, steps=steps, batch_size=batch_size, lr=0.3, rng=2)
    b = personal.fine_tune(spec, g, clients, steps=steps, batch_size=batch_size, lr=0.3, rng=2, engine="loop")
    _close(a, b)


def test_fine_tune_is_k_steps_of_local_sgd():
    """Known answer: user u's model is local_sgd with max_steps=k from the global model (the reference loop)."""
    clients, g = _clients(), models.init_params(MLP, rng=1)
    got = personal.fine_tune(MLP, g, clients, steps=4, batch_size=3, lr=0.2, rng=5)
    epochs = 4  # the 1-example user needs 4 epochs of one step
    keys = np.random.default_rng(5).random((len(clients), epochs, 11))
    for u, (x, y) in enumerate(clients):
        out = fedavg.local_sgd(MLP, g, x, y, orders=fedavg.epoch_orders(keys[u, :, : len(y)]), batch_size=3, lr=0.2,
                               max_steps=4)  # fmt: skip
        assert out.metrics["steps"] == 4
        _close(personal.take(got, u), P.add(g, out.delta))


def test_fine_tune_zero_steps_is_the_global_model_and_users_subset():
    clients, g = _clients(), models.init_params(MLP, rng=1)
    _close(personal.take(personal.fine_tune(MLP, g, clients, steps=0), 3), g, atol=0)
    some = personal.fine_tune(MLP, g, clients, steps=3, rng=0, users=[4, 1])
    assert some[0].shape[0] == 2


@pytest.mark.parametrize("spec", [LOGREG, MLP], ids=["logreg", "mlp"])
def test_local_only_batched_equals_loop(spec):
    a = personal.local_only(spec, _clients(), epochs=3, batch_size=2, lr=0.2, seed=3)
    b = personal.local_only(spec, _clients(), epochs=3, batch_size=2, lr=0.2, seed=3, engine="loop")
    _close(a, b)


@pytest.mark.parametrize("spec, head", [(MLP, 1), (models.mlp(6, (5, 4), 3), 2), (models.mlp(6, (5, 4), 3), 1)])
def test_fedper_batched_equals_loop(spec, head):
    kw = dict(head=head, rounds=4, seed=2, fraction=0.5, epochs=2, batch_size=3, lr=0.2)
    a = personal.run_fedper(spec, _clients(), **kw)
    b = personal.run_fedper(spec, _clients(), engine="loop", **kw)
    _close(a.global_params, b.global_params)
    _close(a.personal, b.personal)
    assert np.array_equal(a.trained, b.trained)


def test_fedper_head_never_travels():
    """The server's model keeps the initial head; each phone's head is its own; bodies are all the global one."""
    spec = MLP
    run = personal.run_fedper(spec, _clients(), head=1, rounds=3, seed=1, fraction=1.0, lr=0.2)
    init = models.init_params(spec, rng=fedavg.seeding.derive(1, 0))
    _close(run.global_params[2:], init[2:], atol=0)
    assert run.uplink_tensors == (0, 1)
    for u in range(6):
        _close(run.model_of(u)[:2], run.global_params[:2], atol=0)
    assert not np.allclose(run.personal[2][0], run.personal[2][1])


def _fedrep_by_hand(spec, clients, *, head, head_epochs, rounds, seed, fraction, epochs, batch_size, lr):
    """FedRep written out per client with autograd: head epochs (body frozen), then body epochs (head frozen)."""
    n_body = len(models.shapes(spec)) - 2 * head
    w = models.init_params(spec, rng=fedavg.seeding.derive(seed, 0))
    heads = [[np.array(p) for p in w[n_body:]] for _ in clients]
    nmax = max(len(y) for _, y in clients)
    for r in range(1, rounds + 1):
        g = fedavg.seeding.derive(seed, r)
        chosen = fedavg.sample_clients(len(clients), fraction=fraction, rng=g)
        keys = g.random((len(clients), head_epochs + epochs, nmax))
        bodies, counts = [], []
        for k in chosen:
            x, y = clients[k]
            t = [torch.tensor(p, requires_grad=True) for p in w[:n_body] + heads[k]]
            for e, order in enumerate(np.argsort(keys[k, :, : len(y)], axis=1, kind="stable")):
                train = range(n_body, len(t)) if e < head_epochs else range(n_body)
                b = len(y) if batch_size is None else batch_size
                for s in range(0, len(y), b):
                    idx = order[s : s + b]
                    loss = F.cross_entropy(models.forward(spec, t, torch.tensor(x[idx])), torch.tensor(y[idx]))
                    grads = torch.autograd.grad(loss, [t[j] for j in train])
                    with torch.no_grad():
                        for j, gr in zip(train, grads):
                            t[j] -= lr * gr
            heads[k] = [p.detach().numpy().copy() for p in t[n_body:]]
            bodies.append([p.detach().numpy().copy() for p in t[:n_body]])
            counts.append(len(y))
        wts = np.array(counts, np.float64) / sum(counts)
        w = [sum(c * b[i] for c, b in zip(wts, bodies)).astype(np.float32) for i in range(n_body)] + w[n_body:]
    return w, heads


@pytest.mark.parametrize("spec, head", [(MLP, 1), (models.mlp(6, (5, 4), 3), 2), (models.mlp(6, (5, 4), 3), 1)])
@pytest.mark.parametrize("engine", ["batched", "loop"])
def test_fedrep_equals_the_per_client_loop_by_hand(spec, head, engine):
    """Oracle: FedRep's alternating training (batched engine, and local_sgd with frozen tensors) == autograd by hand."""
    kw = dict(head=head, rounds=3, seed=2, fraction=0.5, epochs=2, batch_size=3, lr=0.2)
    run = personal.run_fedrep(spec, _clients(), head_epochs=3, engine=engine, **kw)
    w, heads = _fedrep_by_hand(spec, _clients(), head_epochs=3, **kw)
    _close(run.global_params, w, atol=1e-5)
    n_body = len(w) - 2 * head
    for u in range(len(heads)):
        _close(run.model_of(u), w[:n_body] + heads[u], atol=1e-5)
    assert run.uplink_tensors == tuple(range(n_body))


def test_fedrep_is_not_fedper_and_its_head_never_travels():
    kw = dict(head=1, rounds=3, seed=1, fraction=1.0, lr=0.2)
    rep = personal.run_fedrep(MLP, _clients(), head_epochs=2, **kw)
    per = personal.run_fedper(MLP, _clients(), **kw)
    init = models.init_params(MLP, rng=fedavg.seeding.derive(1, 0))
    _close(rep.global_params[2:], init[2:], atol=0)
    assert not np.allclose(rep.global_params[0], per.global_params[0], atol=1e-4)
    with pytest.raises(ValueError, match="head_epochs"):
        personal.run_fedrep(MLP, _clients(), head_epochs=0, **kw)


@pytest.mark.parametrize("spec", [LOGREG, MLP, models.mlp(6, (5, 4), 3)], ids=["logreg", "mlp", "mlp2"])
@pytest.mark.parametrize("frozen", [(0,), (1, 2), (0, 1)])
@pytest.mark.parametrize("mu", [0.0, 0.4])
def test_engine_frozen_tensors_equal_local_sgd_and_stay_put(spec, frozen, mu):
    """engine.train(frozen=...) == local_sgd(frozen=...) client by client; frozen tensors do not move."""
    frozen = tuple(j for j in frozen if j < len(models.shapes(spec)))
    clients, g = _clients(), models.init_params(spec, rng=3)
    keys = np.random.default_rng(0).random((len(clients), 2, 11))
    cohort = personal.batched.train(spec, g, personal.batched.pack(clients), np.arange(len(clients)), keys=keys,
                                    batch_size=4, lr=0.3, mu=mu, frozen=frozen)  # fmt: skip
    for k, (x, y) in enumerate(clients):
        out = fedavg.local_sgd(spec, g, x, y, orders=fedavg.epoch_orders(keys[k, :, : len(y)]), batch_size=4, lr=0.3,
                               mu=mu, frozen=frozen)  # fmt: skip
        _close([f[k].numpy() for f in cohort.final], P.add(g, out.delta))
        for j in frozen:
            assert np.array_equal(out.delta[j], np.zeros_like(g[j]))
            assert np.array_equal(cohort.final[j][k].numpy(), g[j])


@pytest.mark.parametrize("frozen", [(7,), (-1,), ("0",), (True,), "01", 3])
def test_frozen_must_be_tensor_indices(frozen):
    x, y = _clients()[1]
    with pytest.raises(ValueError, match="frozen="):
        fedavg.local_sgd(MLP, models.init_params(MLP, rng=0), x, y, orders=np.arange(len(y))[None], batch_size=3,
                         lr=0.1, frozen=frozen)  # fmt: skip


@pytest.mark.parametrize("lam", [0.0, 0.5, 3.0])
def test_ditto_batched_equals_loop(lam):
    kw = dict(lam=lam, rounds=4, seed=2, fraction=0.5, epochs=2, batch_size=3, lr=0.2)
    a = personal.run_ditto(MLP, _clients(), **kw)
    b = personal.run_ditto(MLP, _clients(), engine="loop", **kw)
    _close(a.global_params, b.global_params)
    _close(a.personal, b.personal)


def test_ditto_global_model_is_fedavg():
    clients = _clients()
    run = personal.run_ditto(MLP, clients, lam=0.5, rounds=5, seed=3, fraction=0.5, epochs=1, batch_size=4, lr=0.2)
    want, _ = fedavg.run(MLP, clients, rounds=5, seed=3, fraction=0.5, epochs=1, batch_size=4, lr=0.2)
    _close(run.global_params, want, atol=2e-6)


def test_ditto_personal_update_is_the_proximal_sgd_of_the_paper():
    """One round, one client, full batch: v <- v - lr (grad F(v) + lam (v - w)), by hand with autograd."""
    x, y = toy_clients([6], d=6, classes=3, seed=9)[0]
    lam, lr = 0.7, 0.3
    run = personal.run_ditto(LOGREG, [(x, y)], lam=lam, rounds=2, seed=0, fraction=1.0, batch_size=None, lr=lr)
    w = models.init_params(LOGREG, rng=fedavg.seeding.derive(0, 0))
    v = [torch.tensor(p, requires_grad=True) for p in w]  # v starts as the first global model received
    for _ in range(2):
        anchor = [torch.tensor(p) for p in w]
        loss = F.cross_entropy(models.forward(LOGREG, v, torch.tensor(x)), torch.tensor(y))
        grads = torch.autograd.grad(loss, v)
        v = [(p - lr * (gr + lam * (p - a))).detach().requires_grad_() for p, gr, a in zip(v, grads, anchor)]
        w = P.add(w, fedavg.local_sgd(LOGREG, w, x, y, orders=np.arange(6)[None], batch_size=None, lr=lr).delta)
    _close(run.model_of(0), [p.detach().numpy() for p in v], atol=1e-5)


def test_ditto_large_lambda_stays_near_global_and_unsampled_users_get_the_global_model():
    clients = _clients()
    run = personal.run_ditto(MLP, clients, lam=1e3, rounds=3, seed=0, fraction=1.0, lr=1e-3)
    assert max(np.abs(a - b).max() for a, b in zip(run.model_of(2), run.global_params)) < 0.05
    few = personal.run_ditto(MLP, clients, lam=0.1, rounds=1, seed=0, fraction=0.2)
    never = int(np.flatnonzero(~few.trained)[0])
    _close(few.model_of(never), few.global_params, atol=0)


# ---- per-user evaluation ----------------------------------------------------------------


def test_per_user_scores_known_answer():
    spec = models.logreg(1, 2)
    params = [np.array([[-1.0], [1.0]], np.float32), np.zeros(2, np.float32)]  # predicts 1 iff x > 0
    x = np.array([[1.0], [-1.0], [2.0], [3.0], [-2.0]], np.float32)
    y = np.array([1, 1, 1, 0, 0])
    user = np.array([0, 0, 2, 2, 2])
    s = personal.per_user_scores(spec, params, x, y, user, num_users=3, group=np.array([1, 1, 0, 0, 0]))
    assert s.accuracy[0] == 0.5 and s.accuracy[2] == pytest.approx(2 / 3) and np.isnan(s.accuracy[1])
    assert list(s.num_days) == [2, 0, 3] and list(s.group) == [1, -1, 0]
    assert s.mean() == pytest.approx((0.5 + 2 / 3) / 2)  # each user once, the user without days skipped
    assert s.by_group(2, min_days=1) == pytest.approx([2 / 3, 0.5])
    assert s.percentile(0, min_days=3) == pytest.approx(2 / 3)
    p = torch.softmax(torch.tensor([[-1.0, 1.0], [1.0, -1.0]]), 1)[:, 1]
    assert s.log_loss[0] == pytest.approx(float(-torch.log(p).mean()), rel=1e-5)


@given(st.integers(0, 10_000))
def test_stacked_copies_score_like_one_model(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((30, 6)).astype(np.float32), rng.integers(0, 3, 30)
    user = rng.integers(0, 4, 30)
    g = models.init_params(MLP, rng=seed)
    a = personal.per_user_scores(MLP, g, x, y, user, num_users=4)
    b = personal.per_user_scores(MLP, personal.repeat(g, 4), x, y, user, num_users=4, stacked=True)
    assert np.allclose(a.accuracy, b.accuracy, equal_nan=True) and np.allclose(a.log_loss, b.log_loss, equal_nan=True)


def test_worst_fraction_and_percentile():
    s = personal.UserScores(np.array([0.1, 0.9, 0.5, 0.7, 0.3]), np.zeros(5), np.full(5, 10), np.zeros(5, int))
    assert s.worst(0.2) == pytest.approx(0.1) and s.worst(0.4) == pytest.approx(0.2)
    assert s.percentile(50) == pytest.approx(0.5)


def test_loss_recovered():
    got = personal.loss_recovered(global_accuracy=[0.70, 0.70, 0.70, 0.70], dp_accuracy=[0.60, 0.60, 0.70, 0.60],
                                  personal_dp_accuracy=[0.65, 0.80, 0.75, 0.55])  # fmt: skip
    assert got[0] == pytest.approx(0.5) and got[1] == 1.0 and np.isnan(got[2]) and got[3] == 0.0


# ---- bad input: the argument, the value, what is allowed ---------------------------------


@pytest.mark.parametrize("lam", [-0.1, float("nan"), "1", True])
def test_negative_or_non_numeric_lambda(lam):
    with pytest.raises(ValueError, match=r"lam=.*lambda must be a finite number >= 0"):
        personal.run_ditto(MLP, _clients(), lam=lam, rounds=1, seed=0)


@pytest.mark.parametrize("steps", [2.5, "3", -1, True, None])
def test_steps_must_be_an_int(steps):
    with pytest.raises(ValueError, match=r"steps=.*k must be an int >= 0"):
        personal.fine_tune(MLP, models.init_params(MLP, rng=0), _clients(), steps=steps)


@pytest.mark.parametrize("spec, head, allowed", [(MLP, 2, "from 1 to 1"), (MLP, 0, "from 1 to 1"),
                                                 (models.mlp(6, (4, 4), 3), 3, "from 1 to 2"),
                                                 (LOGREG, 1, "no layer left for a body"), (MLP, 1.0, "from 1 to 1")])  # fmt: skip
def test_head_larger_than_the_model(spec, head, allowed):
    with pytest.raises(ValueError, match=rf"head={head!r}: this .* has \d layer\(s\).*{allowed}"):
        personal.run_fedper(spec, _clients(), head=head, rounds=1, seed=0)


@pytest.mark.parametrize("user", [6, -1, 2.0])
def test_unknown_user_id(user):
    g = models.init_params(MLP, rng=0)
    run = personal.run_ditto(MLP, _clients(), lam=0.1, rounds=1, seed=0)
    with pytest.raises(ValueError, match=r"user=.*no such user; user ids are the ints 0 .. 5"):
        run.model_of(user)
    with pytest.raises(ValueError, match=r"users=.*no such user"):
        personal.fine_tune(MLP, g, _clients(), steps=1, users=[0, user])


def test_scores_reject_a_user_id_beyond_num_users():
    g = models.init_params(MLP, rng=0)
    x, y = toy_clients([4], d=6, classes=3)[0]
    with pytest.raises(ValueError, match=r"user=7: no such user; user ids are the ints 0 .. 2"):
        personal.per_user_scores(MLP, g, x, y, np.array([0, 1, 7, 2]), num_users=3)
