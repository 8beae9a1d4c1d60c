"""fedlab.dp: known answers, oracle tests against Opacus and dp_accounting, noise statistics, DP-FedAvg
against FedAvg, clipping properties (hypothesis), DP-SGD against Opacus, and errors for bad input."""

import logging
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlab import dp, fedavg, models, seeding
from fedlab import params as P

# ---- references ---------------------------------------------------------------------------------


def opacus_epsilon(q, z, steps, delta):
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis import rdp as opacus_rdp

    orders = RDPAccountant.DEFAULT_ALPHAS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "optimal order is the largest alpha": that is the point of the test
        rdp = opacus_rdp.compute_rdp(q=q, noise_multiplier=z, steps=steps, orders=orders)
        return float(opacus_rdp.get_privacy_spent(orders=orders, rdp=rdp, delta=delta)[0])


def dpacc_epsilon(q, z, steps, delta):
    import dp_accounting
    from dp_accounting.rdp import rdp_privacy_accountant

    logging.getLogger("absl").setLevel(logging.ERROR)
    acc = rdp_privacy_accountant.RdpAccountant()
    acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), steps)
    return float(acc.get_epsilon(delta))


def oracle_grid(n=80, seed=2024):
    """q log-uniform in [0.001, 1] (and q = 1 itself), sigma in [0.6, 4], 1-1000 steps, delta 1e-5 or 1e-6."""
    rng = np.random.default_rng(seed)
    pts = [(0.1, 1.0, 100, 1e-5), (0.001, 3.3, 1000, 1e-5), (1.0, 0.6, 1, 1e-6), (1.0, 4.0, 1000, 1e-5),
           (0.001, 0.6, 1, 1e-5), (0.001, 4.0, 1, 1e-6), (1.0, 1.0, 1000, 1e-6)]  # fmt: skip
    while len(pts) < n:
        q = 1.0 if rng.random() < 0.08 else float(10 ** rng.uniform(-3, 0))
        pts.append((q, float(rng.uniform(0.6, 4.0)), int(round(10 ** rng.uniform(0, 3))), float(rng.choice([1e-5, 1e-6]))))
    return pts


# ---- known answers ------------------------------------------------------------------------------


def test_known_answer_q01_sigma1_100_steps():
    eps = dp.epsilon(q=0.1, noise_multiplier=1.0, steps=100, delta=1e-5)
    assert eps == pytest.approx(7.90, abs=0.01)


def test_known_answer_small_q_where_the_references_differ():
    # Opacus's orders stop at 63; the best order is above it here, so Opacus says 0.106 and dp_accounting 0.051
    eps = dp.epsilon(q=0.001, noise_multiplier=3.3, steps=1000, delta=1e-5)
    assert eps == pytest.approx(0.0508, abs=0.0005)


def test_rdp_by_hand():
    # q = 1: the Gaussian mechanism, alpha / (2 sigma^2) per step
    np.testing.assert_allclose(dp.compute_rdp(q=1.0, noise_multiplier=2.0, steps=3, orders=[2, 5.5]), [0.75, 2.0625])
    # alpha = 2: A = 1 + q^2 (exp(1 / sigma^2) - 1)
    got = dp.compute_rdp(q=0.1, noise_multiplier=1.0, steps=1, orders=[2])[0]
    assert got == pytest.approx(math.log1p(0.01 * math.expm1(1.0)), rel=1e-12)
    assert np.all(dp.compute_rdp(q=0.3, noise_multiplier=0.0, steps=1, orders=[2, 3.5]) == np.inf)
    assert np.all(dp.compute_rdp(q=0.3, noise_multiplier=1.0, steps=0) == 0)


def test_conversion_by_hand():
    eps, order = dp.rdp_to_epsilon(rdp=[1.0], orders=[10.0], delta=1e-5)
    assert eps == pytest.approx(1.0 + math.log(0.9) - (math.log(1e-5) + math.log(10.0)) / 9, rel=1e-12)
    assert order == 10.0
    eps, order = dp.rdp_to_epsilon(rdp=[0.1 * a for a in (2, 4, 8, 16, 32)], orders=[2, 4, 8, 16, 32], delta=1e-5)
    by_order = {a: 0.1 * a + math.log1p(-1 / a) - (math.log(1e-5) + math.log(a)) / (a - 1) for a in (2, 4, 8, 16, 32)}
    assert order == min(by_order, key=by_order.get) and eps == pytest.approx(min(by_order.values()))
    assert dp.epsilon(q=0.5, noise_multiplier=1.0, steps=0, delta=1e-5) == 0.0
    assert dp.epsilon(q=0.5, noise_multiplier=0.0, steps=10, delta=1e-5) == math.inf


def test_noise_multiplier_for_inverts_epsilon():
    for target, q, steps in [(1.0, 0.05, 200), (3.0, 0.1, 100), (8.0, 0.01, 1000), (0.5, 1.0, 1)]:
        z = dp.noise_multiplier_for(epsilon=target, q=q, steps=steps, delta=1e-5)
        assert dp.epsilon(q=q, noise_multiplier=z, steps=steps, delta=1e-5) <= target
        assert dp.epsilon(q=q, noise_multiplier=z * 0.999, steps=steps, delta=1e-5) > target * 0.99
    assert dp.noise_multiplier_for(epsilon=math.inf, q=0.1, steps=10, delta=1e-5) == 0.0


def test_more_noise_fewer_steps_smaller_epsilon():
    eps = [dp.epsilon(q=0.05, noise_multiplier=z, steps=300, delta=1e-5) for z in (0.7, 1.0, 1.5, 3.0)]
    assert all(a > b for a, b in zip(eps, eps[1:]))
    eps = [dp.epsilon(q=0.05, noise_multiplier=1.0, steps=n, delta=1e-5) for n in (10, 100, 1000)]
    assert all(a < b for a, b in zip(eps, eps[1:]))


def test_accountant_composes_like_one_call():
    acc = dp.Accountant().step(q=0.1, noise_multiplier=1.0, steps=60).step(q=0.1, noise_multiplier=1.0, steps=40)
    assert len(acc.history) == 1
    assert acc.epsilon(delta=1e-5) == pytest.approx(dp.epsilon(q=0.1, noise_multiplier=1.0, steps=100, delta=1e-5))
    mixed = acc.step(q=0.02, noise_multiplier=2.0, steps=50)
    want = dp.rdp_to_epsilon(
        rdp=dp.compute_rdp(q=0.1, noise_multiplier=1.0, steps=100) + dp.compute_rdp(q=0.02, noise_multiplier=2.0, steps=50),
        orders=dp.DEFAULT_ORDERS, delta=1e-5,
    )[0]  # fmt: skip
    assert mixed.epsilon(delta=1e-5) == pytest.approx(want)


# ---- oracle tests -------------------------------------------------------------------------------


@pytest.mark.course_env
def test_rdp_per_order_matches_opacus_and_dp_accounting():
    from dp_accounting.rdp import rdp_privacy_accountant as dr
    from opacus.accountants.analysis import rdp as opacus_rdp

    orders = [1.1, 1.5, 2, 2.5, 3, 5.7, 10.9, 11, 32, 63, 128, 1024]
    for q, z in [(0.001, 0.6), (0.01, 1.1), (0.1, 1.0), (0.5, 2.0), (0.99, 0.8), (1.0, 1.3)]:
        ours = dp.compute_rdp(q=q, noise_multiplier=z, steps=1, orders=orders)
        theirs = np.array(opacus_rdp.compute_rdp(q=q, noise_multiplier=z, steps=1, orders=orders))
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-11, err_msg=f"q={q}, z={z} vs Opacus")
        ints = [a for a in orders if float(a).is_integer()]
        google = dr._compute_rdp_poisson_subsampled_gaussian(q, z, ints)
        np.testing.assert_allclose(dp.compute_rdp(q=q, noise_multiplier=z, steps=1, orders=ints), google, rtol=1e-9)


@pytest.mark.course_env
def test_epsilon_oracle_grid_against_both_rdp_accountants():
    """Within [0.99 x min, 1.01 x max] of Opacus and dp_accounting everywhere (below both would be unsafe)."""
    worst_low, worst_high, rows = math.inf, 0.0, []
    for q, z, steps, delta in oracle_grid():
        ours = dp.epsilon(q=q, noise_multiplier=z, steps=steps, delta=delta)
        a, b = opacus_epsilon(q, z, steps, delta), dpacc_epsilon(q, z, steps, delta)
        lo, hi = min(a, b), max(a, b)
        worst_low, worst_high = min(worst_low, ours / lo), max(worst_high, ours / hi)
        if not 0.99 * lo <= ours <= 1.01 * hi:
            rows.append((q, z, steps, delta, ours, a, b))
    print(f"\n[oracle] {len(oracle_grid())} points: min ours/min(refs) {worst_low:.6f}, "
          f"max ours/max(refs) {worst_high:.6f}")  # fmt: skip
    assert not rows, f"outside [0.99 min, 1.01 max] of (Opacus, dp_accounting): {rows}"


@pytest.mark.course_env
def test_rdp_is_looser_than_pld_and_prv():
    """The tighter accountants (dp_accounting's PLD, Opacus's PRV) give about 7.05 where RDP gives 7.90."""
    import dp_accounting
    from dp_accounting.pld import pld_privacy_accountant
    from opacus.accountants import PRVAccountant

    pld = pld_privacy_accountant.PLDAccountant()
    pld.compose(dp_accounting.PoissonSampledDpEvent(0.1, dp_accounting.GaussianDpEvent(1.0)), 100)
    prv = PRVAccountant()
    for _ in range(100):
        prv.step(noise_multiplier=1.0, sample_rate=0.1)
    ours = dp.epsilon(q=0.1, noise_multiplier=1.0, steps=100, delta=1e-5)
    for tight in (pld.get_epsilon(1e-5), prv.get_epsilon(delta=1e-5)):
        assert tight == pytest.approx(7.05, abs=0.1) and tight < ours


# ---- noise ----------------------------------------------------------------------------------------


def test_gaussian_mechanism_noise_has_the_calibrated_std():
    out = dp.gaussian_mechanism(np.zeros(200_000), sensitivity=0.4, noise_multiplier=1.5, rng=0)
    assert out.std() == pytest.approx(0.6, rel=0.01)
    assert abs(out.mean()) < 5 * 0.6 / math.sqrt(out.size)
    lst = dp.gaussian_mechanism([np.zeros((300, 200)), np.ones(500)], sensitivity=2.0, noise_multiplier=0.25, rng=1)
    assert lst[0].dtype == np.float32 and lst[0].std() == pytest.approx(0.5, rel=0.02)
    assert lst[1].mean() == pytest.approx(1.0, abs=0.1)


def test_dp_aggregate_noise_std_over_many_draws():
    """Many rounds of the server step on fixed updates: the noise has std z S / (q N) and mean 0."""
    rng = np.random.default_rng(0)
    deltas = [[rng.standard_normal(5) * c] for c in (0.1, 2.0, 0.7)]
    clean = dp.dp_aggregate(deltas, clip_norm=0.5, noise_multiplier=0.0, expected_clients=4.0, rng=0)[0]
    draws = np.stack([
        dp.dp_aggregate(deltas, clip_norm=0.5, noise_multiplier=1.3, expected_clients=4.0, rng=seed)[0] - clean
        for seed in range(4000)
    ])  # fmt: skip
    want = 1.3 * 0.5 / 4.0
    assert draws.std() == pytest.approx(want, rel=0.02)
    np.testing.assert_allclose(draws.std(axis=0), want, rtol=0.06)  # every coordinate
    assert abs(draws.mean()) < 5 * want / math.sqrt(draws.size)
    assert dp.noise_std(noise_multiplier=1.3, clip_norm=0.5, expected_clients=4.0) == pytest.approx(want)


def test_dp_run_noise_on_the_model_has_the_calibrated_std():
    spec = models.logreg(64, 10)
    rng = np.random.default_rng(1)
    clients = [(rng.random((4, 64)).astype(np.float32), rng.integers(0, 10, 4)) for _ in range(20)]
    kw = dict(rounds=1, seed=3, q=0.5, clip_norm=0.2, epochs=1, batch_size=2, lr=0.1)
    clean, _ = dp.run(spec, clients, noise_multiplier=0.0, **kw)
    noisy, _ = dp.run(spec, clients, noise_multiplier=2.0, **kw)
    diff = P.flatten(noisy) - P.flatten(clean)
    assert diff.std() == pytest.approx(2.0 * 0.2 / (0.5 * 20), rel=0.08)


# ---- DP-FedAvg against FedAvg ----------------------------------------------------------------------


def _clients(sizes, *, d=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((n, d)).astype(np.float32), rng.integers(0, classes, n)) for n in sizes]


def test_zero_noise_huge_clip_full_participation_equal_clients_is_fedavg():
    spec = models.mlp(6, (5,), 3)
    clients = _clients([8] * 6)
    a, ha = dp.run(spec, clients, rounds=3, seed=1, q=1.0, clip_norm=1e9, noise_multiplier=0.0, epochs=2,
                   batch_size=3, lr=0.1)  # fmt: skip
    b, _ = fedavg.run(spec, clients, rounds=3, seed=1, fraction=1.0, epochs=2, batch_size=3, lr=0.1)
    assert P.allclose(a, b, rtol=1e-5, atol=1e-6)
    assert list(ha.column("clients")) == [6, 6, 6]


def test_zero_noise_huge_clip_is_fedavg_with_the_fixed_denominator():
    """Unequal clients, Poisson sampling: the average is sum of the FedAvg client deltas / (q N)."""
    spec = models.mlp(6, (5,), 3)
    clients = _clients([3, 9, 5, 7, 4, 6, 8, 2, 5, 6], seed=2)
    params = models.init_params(spec, rng=0)
    got, chosen = dp.dp_fedavg_round(spec, params, clients, q=0.4, clip_norm=1e9, noise_multiplier=0.0, epochs=2,
                                     batch_size=3, lr=0.2, rng=np.random.default_rng(5))  # fmt: skip
    gen = np.random.default_rng(5)
    again = dp.poisson_sample(len(clients), q=0.4, rng=gen)
    np.testing.assert_array_equal(chosen, again)
    assert 0 < len(chosen) < len(clients)
    outs = [fedavg.client_update(spec, params, *clients[k], epochs=2, batch_size=3, lr=0.2, rng=gen) for k in chosen]
    total = [sum(o.delta[i].astype(np.float64) for o in outs) for i in range(len(params))]
    want = [p + t / (0.4 * len(clients)) for p, t in zip(params, total)]
    assert P.allclose(got, want, rtol=1e-5, atol=1e-6)
    weighted = P.add(params, fedavg.aggregate(outs))  # what plain FedAvg would do: not the same thing
    assert not P.allclose(got, weighted, rtol=1e-3, atol=1e-4)


def test_batched_engine_equals_the_loop_with_clipping_and_noise():
    spec = models.mlp(6, (5,), 3)
    clients = _clients([3, 9, 5, 7, 4, 6, 8, 2], seed=4)
    kw = dict(rounds=3, seed=1, q=0.5, clip_norm=0.3, noise_multiplier=0.7, epochs=2, batch_size=3, lr=0.1)
    a, ha = dp.run(spec, clients, **kw)
    b, hb = dp.run(spec, clients, engine="loop", **kw)
    assert P.allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ha.column("clients"), hb.column("clients"))


def test_dp_aggregate_clips_each_client_and_divides_by_the_expected_count():
    deltas = [[np.array([3.0, 4.0])], [np.array([0.3, 0.4])], [np.array([0.0, 2.0])]]
    got = dp.dp_aggregate(deltas, clip_norm=1.0, noise_multiplier=0.0, expected_clients=6.0, rng=0)
    np.testing.assert_allclose(got[0], (np.array([0.6, 0.8]) + [0.3, 0.4] + [0.0, 1.0]) / 6.0, rtol=1e-6)
    empty = dp.dp_aggregate([], clip_norm=1.0, noise_multiplier=1.0, expected_clients=6.0, rng=0, like=[np.zeros(3)])
    assert empty[0].shape == (3,) and np.all(empty[0] != 0)  # an empty round still releases noise


def test_poisson_sampling_rate():
    counts = [len(dp.poisson_sample(1000, q=0.05, rng=s)) for s in range(200)]
    assert np.mean(counts) == pytest.approx(50, rel=0.03)
    assert np.std(counts) == pytest.approx(math.sqrt(1000 * 0.05 * 0.95), rel=0.2)


def test_dp_fedavg_learns_on_an_easy_problem():
    spec = models.logreg(6, 3)
    clients = _clients([20] * 100, seed=9)
    w = np.random.default_rng(0).standard_normal((6, 3))
    clients = [(x, np.argmax(x @ w, axis=1)) for x, _ in clients]
    test = (np.concatenate([x for x, _ in clients[:10]]), np.concatenate([y for _, y in clients[:10]]))
    _, h = dp.run(spec, clients, rounds=30, seed=0, q=0.2, clip_norm=0.5, noise_multiplier=1.0, lr=0.5, test=test,
                  eval_every=10)  # fmt: skip
    acc = h.column("test_accuracy")
    assert np.isnan(acc[0]) and acc[-1] > 0.8


# ---- clipping (properties) -------------------------------------------------------------------------

shapes = st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4)), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None)
@given(shapes=shapes, scale=st.floats(1e-6, 1e3), max_norm=st.floats(1e-4, 1e3), seed=st.integers(0, 2**31))
def test_clipping_never_increases_a_norm(shapes, scale, max_norm, seed):
    rng = np.random.default_rng(seed)
    delta = [(rng.standard_normal(s) * scale).astype(np.float32) for s in shapes]
    out = dp.clip_update(delta, max_norm=max_norm)
    before, after = P.norm(delta), P.norm(out)
    assert after <= before * (1 + 1e-6) + 1e-12
    assert after <= max_norm * (1 + 1e-6)
    if before <= max_norm:
        assert P.allclose(out, delta, rtol=0, atol=0)
    else:  # same direction, scaled down
        assert after == pytest.approx(max_norm, rel=1e-5)
        np.testing.assert_allclose(P.flatten(out) * before / after, P.flatten(delta), rtol=1e-4, atol=1e-6 * scale)


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 6), max_norm=st.floats(1e-3, 10.0), seed=st.integers(0, 2**31))
def test_per_example_clipping_bounds_every_row(batch, max_norm, seed):
    rng = np.random.default_rng(seed)
    rows = [torch.as_tensor(rng.standard_normal((batch, 3, 2)) * rng.uniform(0, 5, (batch, 1, 1))),
            torch.as_tensor(rng.standard_normal((batch, 4)))]  # fmt: skip
    clipped, norms = dp.clip_per_example(rows, max_norm=max_norm)
    after = torch.sqrt(sum(c.reshape(batch, -1).pow(2).sum(1) for c in clipped))
    assert torch.all(after <= torch.minimum(norms, torch.tensor(max_norm, dtype=torch.float64)) * (1 + 1e-9) + 1e-12)
    for b in range(batch):  # each row is the same as clip_update applied to that row alone
        one = dp.clip_update([r[b].numpy() for r in rows], max_norm=max_norm)
        np.testing.assert_allclose(P.flatten(one), np.concatenate([c[b].numpy().ravel() for c in clipped]), rtol=1e-5,
                                   atol=1e-7)  # fmt: skip


# ---- DP-SGD against Opacus --------------------------------------------------------------------------


def _opacus_step(spec, params, x, y, *, clip_norm, noise_multiplier, lr, seed=0):
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    torch.manual_seed(seed)  # Opacus draws its noise from torch's global generator (test-only)
    module = GradSampleModule(models.build(spec, params))
    opt = DPOptimizer(torch.optim.SGD(module.parameters(), lr=lr), noise_multiplier=noise_multiplier,
                      max_grad_norm=clip_norm, expected_batch_size=len(y))  # fmt: skip
    loss = torch.nn.functional.cross_entropy(module(torch.as_tensor(x)), torch.as_tensor(y))
    loss.backward()
    grad_samples = [p.grad_sample.detach().clone() for p in module.parameters()]
    opt.step()
    return [p.detach().numpy().copy() for p in module.parameters()], grad_samples


@pytest.mark.course_env
def test_per_example_grads_match_opacus_and_a_plain_loop():
    spec = models.mlp(6, (5,), 3, activation="tanh")
    params = models.init_params(spec, rng=0)
    x, y = _clients([8], seed=1)[0]
    ours = dp.per_example_grads(spec, params, x, y)
    _, theirs = _opacus_step(spec, params, x, y, clip_norm=1.0, noise_multiplier=0.0, lr=0.1)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    module = models.build(spec, params)
    for i in range(len(y)):  # naive: one backward per example
        module.zero_grad()
        torch.nn.functional.cross_entropy(module(torch.as_tensor(x[i : i + 1])), torch.as_tensor(y[i : i + 1])).backward()
        for a, p in zip(ours, module.parameters()):
            torch.testing.assert_close(a[i], p.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.course_env
def test_dp_sgd_step_without_noise_matches_opacus():
    spec = models.mlp(6, (5,), 3)
    params = models.init_params(spec, rng=2)
    x, y = _clients([8], seed=3)[0]
    norms = dp.clip_per_example(dp.per_example_grads(spec, params, x, y), max_norm=1.0)[1]
    clip = float(norms.median())  # about half the examples get clipped
    ours = dp.dp_sgd_step(spec, params, x, y, clip_norm=clip, noise_multiplier=0.0, expected_batch_size=len(y),
                          lr=0.5, rng=0)  # fmt: skip
    theirs, _ = _opacus_step(spec, params, x, y, clip_norm=clip, noise_multiplier=0.0, lr=0.5)
    assert P.allclose(ours, theirs, rtol=1e-4, atol=1e-6)
    unclipped = dp.dp_sgd_step(spec, params, x, y, clip_norm=1e9, noise_multiplier=0.0, expected_batch_size=len(y),
                               lr=0.5, rng=0)  # fmt: skip
    assert not P.allclose(ours, unclipped, rtol=1e-4, atol=1e-6)


@pytest.mark.course_env
def test_dp_sgd_noise_std_matches_opacus_and_theory():
    spec = models.mlp(64, (32,), 10)
    params = models.init_params(spec, rng=0)
    x, y = _clients([16], d=64, classes=10, seed=4)[0]
    kw = dict(clip_norm=0.5, lr=1.0)
    clean = P.flatten(dp.dp_sgd_step(spec, params, x, y, noise_multiplier=0.0, expected_batch_size=16, rng=0, **kw))
    noisy = P.flatten(dp.dp_sgd_step(spec, params, x, y, noise_multiplier=2.0, expected_batch_size=16, rng=0, **kw))
    o_clean = P.flatten(_opacus_step(spec, params, x, y, noise_multiplier=0.0, **kw)[0])
    o_noisy = P.flatten(_opacus_step(spec, params, x, y, noise_multiplier=2.0, **kw)[0])
    want = 2.0 * 0.5 / 16
    np.testing.assert_allclose(clean, o_clean, rtol=1e-4, atol=1e-6)
    assert (noisy - clean).std() == pytest.approx(want, rel=0.05)
    assert (o_noisy - o_clean).std() == pytest.approx(want, rel=0.05)


def test_dp_sgd_learns_and_is_reproducible():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 3))
    x = rng.standard_normal((400, 6)).astype(np.float32)
    y = np.argmax(x @ w, axis=1)
    spec = models.logreg(6, 3)
    a, curve = dp.dp_sgd(spec, x, y, q=0.1, steps=60, clip_norm=1.0, noise_multiplier=1.0, lr=0.5, seed=1,
                         test=(x, y), eval_every=30)  # fmt: skip
    b, _ = dp.dp_sgd(spec, x, y, q=0.1, steps=60, clip_norm=1.0, noise_multiplier=1.0, lr=0.5, seed=1)
    assert P.allclose(a, b, rtol=0, atol=0)
    assert [t for t, _ in curve] == [30, 60] and curve[-1][1] > 0.85


# ---- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("delta", [0, 1, -1e-5, 1.5, float("nan")])
def test_bad_delta(delta):
    with pytest.raises(ValueError, match="delta="):
        dp.epsilon(q=0.1, noise_multiplier=1.0, steps=10, delta=delta)
    with pytest.raises(ValueError, match="delta="):
        dp.noise_multiplier_for(epsilon=1.0, q=0.1, steps=10, delta=delta)


@pytest.mark.parametrize("q", [0, -0.1, 1.5, float("nan"), "0.1"])
def test_bad_sampling_rate(q):
    with pytest.raises(ValueError, match=r"q=.*\(0, 1\]"):
        dp.epsilon(q=q, noise_multiplier=1.0, steps=10, delta=1e-5)
    with pytest.raises(ValueError, match="q="):
        dp.poisson_sample(10, q=q, rng=0)
    with pytest.raises(ValueError, match="q="):
        dp.run(models.logreg(6, 3), _clients([4, 4]), rounds=1, seed=0, q=q, clip_norm=1.0, noise_multiplier=1.0)


def test_bad_noise_and_clip():
    with pytest.raises(ValueError, match="noise_multiplier=-1"):
        dp.epsilon(q=0.1, noise_multiplier=-1, steps=10, delta=1e-5)
    with pytest.raises(ValueError, match="noise_multiplier=-0.5"):
        dp.gaussian_mechanism(np.zeros(3), sensitivity=1.0, noise_multiplier=-0.5, rng=0)
    with pytest.raises(ValueError, match="max_norm=-1"):
        dp.clip_update([np.ones(3)], max_norm=-1)
    with pytest.raises(ValueError, match="max_norm=0"):
        dp.clip_per_example([torch.ones(2, 3)], max_norm=0)
    with pytest.raises(ValueError, match="clip_norm=-2"):
        dp.dp_aggregate([[np.ones(2)]], clip_norm=-2, noise_multiplier=1.0, expected_clients=1.0, rng=0)
    with pytest.raises(ValueError, match="clip_norm=0"):
        dp.run(models.logreg(6, 3), _clients([4, 4]), rounds=1, seed=0, q=0.5, clip_norm=0, noise_multiplier=1.0)
    with pytest.raises(ValueError, match="noise_multiplier=-1"):
        dp.run(models.logreg(6, 3), _clients([4, 4]), rounds=1, seed=0, q=0.5, clip_norm=1.0, noise_multiplier=-1)
    with pytest.raises(ValueError, match="sensitivity=-1"):
        dp.gaussian_mechanism(np.zeros(3), sensitivity=-1, noise_multiplier=1.0, rng=0)


def test_other_bad_input():
    with pytest.raises(ValueError, match="epsilon=0"):
        dp.noise_multiplier_for(epsilon=0, q=0.1, steps=10, delta=1e-5)
    with pytest.raises(ValueError, match="steps=-1"):
        dp.epsilon(q=0.1, noise_multiplier=1.0, steps=-1, delta=1e-5)
    with pytest.raises(ValueError, match="orders="):
        dp.compute_rdp(q=0.1, noise_multiplier=1.0, steps=1, orders=[0.5, 2])
    with pytest.raises(ValueError, match="rdp has 2 values and orders 3"):
        dp.rdp_to_epsilon(rdp=[1, 2], orders=[2, 3, 4], delta=1e-5)
    with pytest.raises(ValueError, match="like=params"):
        dp.dp_aggregate([], clip_norm=1.0, noise_multiplier=1.0, expected_clients=1.0, rng=0)
    with pytest.raises(ValueError, match="rng="):
        dp.gaussian_mechanism(np.zeros(3), sensitivity=1.0, noise_multiplier=1.0, rng=None)


def test_library_uses_no_global_randomness():
    np.random.seed(0)
    torch.manual_seed(0)
    state_np, state_torch = np.random.get_state()[1].copy(), torch.get_rng_state().clone()
    spec = models.logreg(6, 3)
    dp.run(spec, _clients([5] * 4), rounds=2, seed=0, q=0.5, clip_norm=1.0, noise_multiplier=1.0)
    dp.dp_sgd(spec, *_clients([30])[0], q=0.2, steps=3, clip_norm=1.0, noise_multiplier=1.0, lr=0.1, seed=0)
    assert np.array_equal(np.random.get_state()[1], state_np) and torch.equal(torch.get_rng_state(), state_torch)
    assert seeding.derive(0, 1).random() == seeding.derive(0, 1).random()


# ---- fixed-size cohorts (sampling without replacement) -----------------------------------------


def dpacc_fixed_size_epsilon(num, m, z, steps, delta):
    import dp_accounting
    from dp_accounting.rdp import rdp_privacy_accountant as dr

    acc = dr.RdpAccountant(orders=list(dp.DEFAULT_ORDERS), neighboring_relation=dr.NeighborRel.REPLACE_ONE)
    acc.compose(dp_accounting.SampledWithoutReplacementDpEvent(num, m, dp_accounting.GaussianDpEvent(z)), steps)
    return acc.get_epsilon(delta)


@pytest.mark.course_env
@pytest.mark.parametrize(
    "num, m, z, steps, want, poisson",
    [(1200, 20, 0.982, 200, 2.93, 2.00), (1000, 100, 1.0, 100, 14.05, 7.90)],
)
def test_fixed_size_accountant_known_answers_and_dp_accounting(num, m, z, steps, want, poisson):
    ours = dp.epsilon(q=m / num, noise_multiplier=z, steps=steps, delta=1e-5, sampling="fixed_size")
    assert ours == pytest.approx(dpacc_fixed_size_epsilon(num, m, z, steps, 1e-5), rel=1e-9)
    assert round(ours, 2) == want
    assert round(dp.epsilon(q=m / num, noise_multiplier=z, steps=steps, delta=1e-5), 2) == poisson


@pytest.mark.course_env
def test_fixed_size_rdp_per_order_matches_dp_accounting():
    from dp_accounting.rdp import rdp_privacy_accountant as dr

    orders = [1.5, 2, 2.5, 3, 7.3, 20, 63, 128, 256, 512]
    for q, z in ((0.01, 0.8), (0.1, 1.0), (0.3, 2.5), (0.05, 5.0)):
        theirs = dr._compute_rdp_sample_wor_gaussian(q, z, orders)
        ours = dp.compute_rdp_fixed_size(q=q, noise_multiplier=z, steps=1, orders=orders)
        np.testing.assert_allclose(ours, theirs, rtol=1e-8)


def test_fixed_size_is_never_below_the_gaussian_and_equals_it_at_q_1():
    orders = [2, 5, 10]
    full = dp.compute_rdp_fixed_size(q=1.0, noise_multiplier=1.3, steps=3, orders=orders)
    np.testing.assert_allclose(full, 3 * np.array(orders) / (2 * 1.3**2))
    part = dp.compute_rdp_fixed_size(q=0.2, noise_multiplier=1.3, steps=3, orders=orders)
    assert np.all(part <= full + 1e-12) and np.all(part > 0)


def test_sampling_argument_is_checked():
    with pytest.raises(ValueError, match="sampling='uniform'"):
        dp.epsilon(q=0.1, noise_multiplier=1.0, steps=10, delta=1e-5, sampling="uniform")
    z = dp.noise_multiplier_for(epsilon=3.0, q=20 / 1200, steps=200, delta=1e-5, sampling="fixed_size")
    assert dp.epsilon(q=20 / 1200, noise_multiplier=z, steps=200, delta=1e-5, sampling="fixed_size") <= 3.0
    acc = dp.Accountant().step(q=0.1, noise_multiplier=1.0, steps=50, sampling="fixed_size")
    acc = acc.step(q=0.1, noise_multiplier=1.0, steps=50, sampling="fixed_size")
    assert acc.epsilon(delta=1e-5) == pytest.approx(14.05, abs=0.01)
    mixed = dp.Accountant().step(q=0.1, noise_multiplier=1.0, steps=50).step(
        q=0.1, noise_multiplier=1.0, steps=50, sampling="fixed_size"
    )
    assert 7.9 < mixed.epsilon(delta=1e-5) < 14.05


def test_epsilon_of_run_uses_the_runs_own_sampling_and_refuses_a_mismatch():
    from fedlab import fedavg

    rec = fedavg.RoundRecord(1, 20, 20, 0.0, 0.0, 0.0, 0, 0, 0.0)
    fixed = fedavg.History((rec,) * 200)  # fedavg.run: sample_clients, a fixed-size cohort
    assert fixed.sampling == "fixed_size"
    got = dp.epsilon_of_run(fixed, num_clients=1200, noise_multiplier=0.982, delta=1e-5)
    assert got == pytest.approx(
        dp.epsilon(q=20 / 1200, noise_multiplier=0.491, steps=200, delta=1e-5, sampling="fixed_size")
    )
    # the Poisson figure for the same run would under-report it
    assert got > dp.epsilon(q=20 / 1200, noise_multiplier=0.982, steps=200, delta=1e-5)
    with pytest.raises(ValueError, match="sampled 'fixed_size' cohorts"):
        dp.epsilon_of_run(fixed, num_clients=1200, noise_multiplier=0.982, delta=1e-5, sampling="poisson")
    poisson = fedavg.History((rec,) * 10, sampling="poisson")
    with pytest.raises(ValueError, match="q=None"):
        dp.epsilon_of_run(poisson, num_clients=1200, noise_multiplier=1.0, delta=1e-5)
    assert dp.epsilon_of_run(poisson, num_clients=1200, noise_multiplier=1.0, delta=1e-5, q=0.1) == pytest.approx(
        dp.epsilon(q=0.1, noise_multiplier=1.0, steps=10, delta=1e-5)
    )
    with pytest.raises(ValueError, match="sampled 'poisson' cohorts"):
        dp.epsilon_of_run(poisson, num_clients=1200, noise_multiplier=1.0, delta=1e-5, sampling="fixed_size")


# ---- what a guarantee allows a membership test (issue 16.3) ----------------------------------------


def test_tpr_bound_known_answers():
    assert dp.tpr_bound(0.01, epsilon=2.0, delta=1e-5) == pytest.approx(math.exp(2) * 0.01 + 1e-5)
    assert dp.tpr_bound(0.001, epsilon=2.0, delta=1e-5) == pytest.approx(0.0073991, abs=1e-7)
    assert dp.tpr_bound(0.3, epsilon=0.0, delta=0.0) == pytest.approx(0.3)  # epsilon 0: no test beats guessing
    # the other side binds at large FPR: 1 - e^-1 (1 - 0.5) = 0.816 < e * 0.5
    assert dp.tpr_bound(0.5, epsilon=1.0, delta=0.0) == pytest.approx(1 - math.exp(-1) * 0.5)
    assert dp.tpr_bound(0.2, epsilon=math.inf, delta=1e-5) == 1.0
    np.testing.assert_allclose(dp.tpr_bound(np.array([0.0, 1.0]), epsilon=2.0, delta=1e-5), [1e-5, 1.0])


@settings(max_examples=60, deadline=None)
@given(st.floats(0, 1), st.floats(0, 1), st.floats(0, 10), st.floats(0, 0.1))
def test_tpr_bound_property_monotone_and_between_fpr_and_one(f1, f2, eps, delta):
    lo, hi = sorted((f1, f2))
    a, b = dp.tpr_bound(lo, epsilon=eps, delta=delta), dp.tpr_bound(hi, epsilon=eps, delta=delta)
    assert lo - 1e-12 <= a <= b + 1e-12 and b <= 1.0
    assert dp.tpr_bound(lo, epsilon=eps + 0.5, delta=delta) >= a - 1e-12


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(fpr=1.5, epsilon=1.0, delta=0.0), "fpr=1.5"),
        (dict(fpr=0.1, epsilon=-1.0, delta=0.0), "epsilon=-1.0"),
        (dict(fpr=0.1, epsilon=1.0, delta=1.0), "delta=1.0"),
        (dict(fpr=0.1, epsilon="2", delta=0.0), "epsilon='2'"),
    ],
)
def test_tpr_bound_errors_name_the_argument(kw, match):
    with pytest.raises(ValueError, match=match):
        dp.tpr_bound(kw.pop("fpr"), **kw)
