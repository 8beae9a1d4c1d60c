"""The capstone's composition (fedlab.capstone): known answers, oracles against dp and secagg, properties."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlab import capstone, data, dp, models, partition, secagg
from fedlab import params as P


def _deltas(n, *, seed, scale=0.3, shapes=((2, 3), (2,))):
    rng = np.random.default_rng(seed)
    return [[(scale * rng.standard_normal(s)).astype(np.float32) for s in shapes] for _ in range(n)]


@pytest.fixture(scope="module")
def health_clients():
    h = data.load_health()
    tr, te = data.split_by_time(h, test_fraction=0.2)
    return [(tr.x[p], tr.y[p]) for p in partition.by_user(tr.user)], (te.x, te.y)


# ---- known answers --------------------------------------------------------------------------------


def test_threshold_is_a_strict_majority():
    assert [capstone.threshold_for(n) for n in (2, 3, 4, 5, 20)] == [2, 2, 3, 3, 11]
    with pytest.raises(ValueError, match="num_clients=1"):
        capstone.threshold_for(1)


def test_protocol_bytes_known_answer():
    # 5 clients, 11 values of 12 bits: 68 + (36 + 4 * 96) + (4 + 17) + (4 + 5 * 36) = 693
    assert capstone.protocol_bytes(num_clients=5, dim=11, bits=12).tolist() == [693] * 5


@pytest.mark.parametrize(
    "n,dim,bits,drops",
    [
        (5, 11, 12, {}),
        (7, 4, 32, {1: "share", 3: "unmask", 4: "masked_input", 0: "advertise"}),
        (6, 30, 8, {2: "masked_input"}),
        (4, 3, 16, {0: "share", 1: "share"}),  # refused: too few left
    ],
)
def test_protocol_bytes_equal_what_the_real_protocol_counts(n, dim, bits, drops):
    cfg = secagg.Config(num_clients=n, threshold=capstone.threshold_for(n), dim=dim, clip=1.0, bits=bits)
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (n, dim))
    res = secagg.run_round(x, config=cfg, rng=1, seeded_keys=True, dropouts=drops, on_refusal="return")
    np.testing.assert_array_equal(res.bytes_sent, capstone.protocol_bytes(num_clients=n, dim=dim, bits=bits, dropouts=drops))


def test_private_round_by_hand():
    # two clients, S = 1: [3, 4] is clipped to [0.6, 0.8]; [0.1, 0] stays; sum [0.7, 0.8]; qN = 2; no noise
    deltas = [[np.array([3.0, 4.0], np.float32)], [np.array([0.1, 0.0], np.float32)]]
    out = capstone.private_round(deltas, clip_norm=1.0, noise_multiplier=0.0, expected_clients=2.0, bits=32, rng=0,
                                 protocol_rng=0)  # fmt: skip
    np.testing.assert_allclose(out.average[0], [0.35, 0.4], atol=1e-6)
    np.testing.assert_allclose(out.server_view, [0.7, 0.8], atol=1e-6)
    assert out.included == (0, 1) and out.refusal is None and out.frac_bits == secagg.max_frac_bits(
        num_clients=2, clip=1.0, bits=32)


# ---- oracles --------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [16, 32])
def test_secure_private_round_equals_the_plain_clipped_noisy_sum(bits):
    deltas = _deltas(8, seed=3)
    drops = {2: "share", 5: "unmask"}
    out = capstone.private_round(deltas, clip_norm=0.5, noise_multiplier=1.1, expected_clients=6.0, bits=bits, rng=9,
                                 protocol_rng=4, dropouts=drops)  # fmt: skip
    assert out.included == (0, 1, 3, 4, 5, 6, 7)  # 2 dropped before its input, 5 after (its input counts)
    want = dp.dp_aggregate([deltas[k] for k in out.included], clip_norm=0.5, noise_multiplier=1.1, expected_clients=6.0,
                           rng=9)  # fmt: skip
    tol = len(out.included) * 2.0 ** -(out.frac_bits + 1) / 6.0 + 1e-6  # the fixed-point error, over qN, + float32
    for a, b in zip(out.average, want):
        np.testing.assert_allclose(a, b, rtol=0, atol=tol)


def test_secure_and_plain_paths_agree_bit_for_bit():
    deltas = _deltas(9, seed=4, scale=1.0)
    kw = dict(clip_norm=1.0, noise_multiplier=0.7, expected_clients=9.0, bits=12, dropouts={0: "masked_input"})
    a = capstone.private_round(deltas, rng=1, protocol_rng=2, secure=True, **kw)
    b = capstone.private_round(deltas, rng=1, secure=False, **kw)
    np.testing.assert_array_equal(a.server_view, b.server_view)
    np.testing.assert_array_equal(a.bytes_sent, b.bytes_sent)
    assert a.included == b.included
    for x, y in zip(a.average, b.average):
        np.testing.assert_array_equal(x, y)


def test_result_does_not_depend_on_the_protocol_keys():
    deltas = _deltas(5, seed=6)
    kw = dict(clip_norm=1.0, noise_multiplier=0.0, expected_clients=5.0, bits=16, rng=0)
    a = capstone.private_round(deltas, protocol_rng=1, **kw)
    b = capstone.private_round(deltas, protocol_rng=2, **kw)
    np.testing.assert_array_equal(a.server_view, b.server_view)


def test_refused_round_releases_noise_only():
    deltas = _deltas(4, seed=7)
    out = capstone.private_round(deltas, clip_norm=1.0, noise_multiplier=1.0, expected_clients=4.0, bits=32, rng=3,
                                 protocol_rng=0, dropouts={0: "share", 1: "share"})  # fmt: skip
    assert out.refusal is not None and out.server_view is None and out.included == ()
    noise = dp.dp_aggregate([], clip_norm=1.0, noise_multiplier=1.0, expected_clients=4.0, rng=3, like=deltas[0])
    for a, b in zip(out.average, noise):
        np.testing.assert_array_equal(a, b)
    single = capstone.private_round(deltas[:1], clip_norm=1.0, noise_multiplier=0.0, expected_clients=1.0, bits=32,
                                    rng=0)  # fmt: skip
    assert "at least 2" in single.refusal and all(np.all(t == 0) for t in single.average)


def test_run_equals_dp_run_without_dropouts(health_clients):
    clients, _ = health_clients
    spec = models.logreg(8, 2)
    kw = dict(rounds=4, seed=3, q=15 / len(clients), clip_norm=0.5, noise_multiplier=1.0)
    w1, h1 = capstone.run(spec, clients, bits=32, secure=True, **kw)
    w2, h2 = capstone.run(spec, clients, bits=32, secure=False, **kw)
    w3, h3 = dp.run(spec, clients, **kw)
    for a, b, c in zip(w1, w2, w3):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, atol=1e-6)
    np.testing.assert_array_equal(h1.sampled, h3.column("clients"))
    np.testing.assert_array_equal(h1.round_bytes, h2.round_bytes)
    assert h1.user_bytes.sum() == h1.round_bytes.sum() and h1.bytes_per_user() == h1.round_bytes.sum() / len(clients)
    plain = dp.epsilon(q=kw["q"], noise_multiplier=1.0, steps=4, delta=1e-5)
    valid = capstone.epsilon(num_users=len(clients), q=kw["q"], noise_multiplier=1.0, rounds=4, dropout_rate=0.0)
    assert h1.epsilon(delta=1e-5) == valid >= plain  # the refusal term (a cohort of 1 vs 2) only adds


def test_run_with_dropouts_and_coarse_bits_learns(health_clients):
    clients, test = health_clients
    spec = models.logreg(8, 2)
    w, h = capstone.run(spec, clients, rounds=30, seed=0, q=20 / len(clients), clip_norm=0.5, noise_multiplier=0.5,
                        bits=12, dropout_rate=0.2, secure=False, test=test, eval_every=30)  # fmt: skip
    assert np.all(h.included <= h.sampled) and h.included.sum() < h.sampled.sum()
    assert h.test_accuracy[-1] > 0.66 and np.isnan(h.test_accuracy[0])


def test_label_share_attack_on_one_update():
    # one local step on a batch with 3 of 10 poor nights at a model that predicts 0.5 everywhere: exact
    spec = models.logreg(2, 2)
    params = [np.zeros((2, 2), np.float32), np.zeros(2, np.float32)]
    x = np.random.default_rng(0).standard_normal((10, 2)).astype(np.float32)
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    from fedlab import attacks

    grad = attacks.model_gradient(spec, params, x, y)
    share = capstone.label_share_attack(-0.1 * grad[1], lr=0.1, steps=1, num_examples=10, mean_probs=[0.5, 0.5])
    np.testing.assert_allclose(share, [0.7, 0.3])


def test_label_attackers_mean_prediction_comes_from_users_outside_the_cohort():
    """Issue 16.3: the victims' own days never enter the attacker's estimate of the mean prediction."""
    spec = models.logreg(3, 2)
    g = np.random.default_rng(1)
    params = [g.standard_normal((2, 3)).astype(np.float32), g.standard_normal(2).astype(np.float32)]
    x = g.standard_normal((40, 3)).astype(np.float32)
    user = np.repeat(np.arange(8), 5)
    cohort = [2, 5]
    got = capstone.mean_probs_outside(spec, params, x, user, exclude=cohort)
    outside = ~np.isin(user, cohort)
    logits = x[outside].astype(np.float64) @ params[0].T.astype(np.float64) + params[1]
    p = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(got, (p / p.sum(1, keepdims=True)).mean(0), rtol=1e-12)  # known answer
    x2 = x.copy()
    x2[~outside] = 100.0  # the victims' days change completely: the estimate does not move
    np.testing.assert_array_equal(capstone.mean_probs_outside(spec, params, x2, user, exclude=cohort), got)
    everyone = capstone.mean_probs_outside(spec, params, x, user, exclude=[])  # what lesson 10 used to do
    assert not np.allclose(capstone.mean_probs_outside(spec, params, x2, user, exclude=[]), everyone)
    with pytest.raises(ValueError, match="no one is left outside the cohort"):
        capstone.mean_probs_outside(spec, params, x, user, exclude=range(8))
    with pytest.raises(ValueError, match="x has 40 rows but user has 39 ids"):
        capstone.mean_probs_outside(spec, params, x, user[:-1], exclude=cohort)
    with pytest.raises(ValueError, match="in_features=3"):
        capstone.mean_probs_outside(spec, params, x[:, :2], user, exclude=cohort)


# ---- properties -----------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 7),
    bits=st.sampled_from([12, 16, 24, 32]),
    seed=st.integers(0, 10_000),
    clip=st.sampled_from([0.25, 1.0, 4.0]),
)
def test_property_plain_path_is_the_clipped_sum_within_fixed_point_error(n, bits, seed, clip):
    deltas = _deltas(n, seed=seed, scale=1.0)
    out = capstone.private_round(deltas, clip_norm=clip, noise_multiplier=0.0, expected_clients=1.0, bits=bits, rng=0,
                                 secure=False)  # fmt: skip
    want = np.sum([P.flatten(dp.clip_update(d, max_norm=clip)) for d in deltas], axis=0)
    np.testing.assert_allclose(out.server_view, want, rtol=0, atol=n * 2.0 ** -(out.frac_bits + 1) + 1e-6)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 12), dim=st.integers(1, 50), bits=st.integers(8, 64), seed=st.integers(0, 1000))
def test_property_bytes_grow_with_bits_and_shrink_with_dropouts(n, dim, bits, seed):
    full = capstone.protocol_bytes(num_clients=n, dim=dim, bits=bits)
    assert np.all(full == full[0]) and full[0] >= capstone.protocol_bytes(num_clients=n, dim=dim, bits=8)[0]
    drops = capstone.draw_dropouts(n, rate=0.5, rng=seed)
    assert np.all(capstone.protocol_bytes(num_clients=n, dim=dim, bits=bits, dropouts=drops) <= full)


def test_draw_dropouts_is_seeded_and_uses_every_phase():
    a = capstone.draw_dropouts(2000, rate=0.3, rng=1)
    assert a == capstone.draw_dropouts(2000, rate=0.3, rng=1)
    assert 500 < len(a) < 700 and set(a.values()) == set(secagg.PHASES)
    assert capstone.draw_dropouts(10, rate=0.0, rng=0) == {}


# ---- errors for people ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(bits=7), "bits=7"),
        (dict(bits=32.0), "bits=32.0"),
        (dict(clip_norm=math.inf), "clip_norm=inf"),
        (dict(clip_norm=-1.0), "clip_norm"),
        (dict(noise_multiplier=-0.5), "noise_multiplier"),
        (dict(expected_clients=0), "expected_clients"),
        (dict(secure="yes"), "secure='yes'"),
        (dict(rng=None), "rng=None"),
    ],
)
def test_private_round_errors_name_the_argument(kw, match):
    args = dict(clip_norm=1.0, noise_multiplier=1.0, expected_clients=2.0, bits=32, rng=0)
    with pytest.raises(ValueError, match=match):
        capstone.private_round(_deltas(3, seed=0), **{**args, **kw})


def test_other_errors_name_the_argument(health_clients):
    with pytest.raises(ValueError, match="like is None"):
        capstone.private_round([], clip_norm=1.0, noise_multiplier=1.0, expected_clients=2.0, bits=32, rng=0)
    with pytest.raises(ValueError, match=r"deltas\[1\]"):
        capstone.private_round([[np.zeros(3)], [np.zeros(4)]], clip_norm=1.0, noise_multiplier=0.0,
                               expected_clients=2.0, bits=32, rng=0)  # fmt: skip
    with pytest.raises(ValueError, match="rate=1.5"):
        capstone.draw_dropouts(3, rate=1.5, rng=0)
    with pytest.raises(ValueError, match="dropouts has key 9"):
        capstone.protocol_bytes(num_clients=3, dim=2, bits=16, dropouts={9: "share"})
    with pytest.raises(ValueError, match="dropout_rate=1"):
        capstone.run(models.logreg(8, 2), health_clients[0][:5], rounds=1, seed=0, q=0.5, clip_norm=1.0,
                     noise_multiplier=1.0, dropout_rate=1)  # fmt: skip


def test_capstone_math_does_not_import_widgets():
    import subprocess
    import sys

    code = "import sys, fedlab.capstone; print(any(m.startswith(('ipywidgets', 'matplotlib', 'IPython')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- refusals and the per-user bound (a round one user can flip) -----------------------------------------


def _two_updates(s=0.5):
    a = [np.array([[s, 0.0]], np.float32), np.zeros(1, np.float32)]
    b = [np.array([[0.0, s]], np.float32), np.zeros(1, np.float32)]
    return a, b


def test_one_user_flips_a_refused_round_and_moves_the_release_by_2S():
    a, b = _two_updates()
    kw = dict(clip_norm=0.5, noise_multiplier=0.0, expected_clients=1.0, bits=16, rng=0, protocol_rng=0, secure=False)
    alone = capstone.private_round([a], like=a, **kw)  # a cohort of 1: refused, noise only
    both = capstone.private_round([a, b], like=a, **kw)  # add one user: released
    assert alone.refusal is not None and both.refusal is None
    moved = np.linalg.norm(P.flatten(both.average) - P.flatten(alone.average))
    assert moved == pytest.approx(np.sqrt(2) * 0.5, rel=1e-3)  # both updates appear, not just the new user's
    assert moved > 0.5  # more than S: the sampled Gaussian analysis alone does not cover it


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_refuses_is_the_protocols_rule(n):
    d = [[np.full((1, 2), 0.1 * (k + 1), np.float32), np.zeros(1, np.float32)] for k in range(n)]
    phases = list(secagg.PHASES)
    for drops in range(n + 1):
        for phase in phases:
            dropouts = {k: phase for k in range(drops)}
            out = capstone.private_round(d, clip_norm=0.5, noise_multiplier=0.0, expected_clients=n, bits=16, rng=0,
                                         dropouts=dropouts, secure=False)  # fmt: skip
            assert (out.refusal is not None) == capstone.refuses(n, n - drops), (n, drops, phase)
    assert capstone.refuses(1, 1) and capstone.refuses(0, 0)
    with pytest.raises(ValueError, match="survivors=5"):
        capstone.refuses(4, 5)


def test_flip_probability_equals_brute_force_enumeration():
    import itertools

    num_users, q, rate = 6, 0.4, 0.3
    others = num_users - 1
    p = 0.0
    # every subset of the others sampled, every survival pattern, the user's own survival
    for sampled in itertools.product([0, 1], repeat=others):
        k = sum(sampled)
        ps = q**k * (1 - q) ** (others - k)
        for alive in itertools.product([0, 1], repeat=k):
            j = sum(alive)
            pa = (1 - rate) ** j * rate ** (k - j)
            for mine, pm in ((1, 1 - rate), (0, rate)):
                p += ps * pa * pm * (capstone.refuses(k, j) != capstone.refuses(k + 1, j + mine))
    brute_round = q * p
    got = capstone.refusal_flip_probability(num_users=num_users, q=q, dropout_rate=rate, rounds=1)
    assert got >= brute_round - 1e-15  # the function takes the worse of num_users and num_users - 1 others
    assert got == pytest.approx(max(brute_round, capstone.refusal_flip_probability(
        num_users=num_users + 1, q=q, dropout_rate=rate, rounds=1)), rel=1e-12) or got == pytest.approx(brute_round)
    three = capstone.refusal_flip_probability(num_users=num_users, q=q, dropout_rate=rate, rounds=3)
    assert three == pytest.approx(1 - (1 - got) ** 3)


def test_capstone_epsilon_counts_the_refusal_term():
    # 10 users a round, 10% dropouts, 200 rounds: P[F] ~ 0.6%, far above delta = 1e-5: no guarantee
    assert capstone.refusal_flip_probability(num_users=1200, q=10 / 1200, dropout_rate=0.1, rounds=200) > 1e-3
    assert capstone.epsilon(num_users=1200, q=10 / 1200, noise_multiplier=1.2, rounds=200, dropout_rate=0.1) == math.inf
    assert math.isfinite(dp.epsilon(q=10 / 1200, noise_multiplier=1.2, steps=200, delta=1e-5))  # what was reported
    # 50 users a round: the term is ~1e-8, the epsilon barely moves, and never goes below the plain accountant
    plain = dp.epsilon(q=50 / 1200, noise_multiplier=1.2, steps=200, delta=1e-5)
    valid = capstone.epsilon(num_users=1200, q=50 / 1200, noise_multiplier=1.2, rounds=200, dropout_rate=0.1)
    assert plain <= valid < plain * 1.01
    # no dropouts: only the cohort of 1 vs 2 can flip
    none = capstone.refusal_flip_probability(num_users=1200, q=20 / 1200, dropout_rate=0.0, rounds=200)
    assert 0 < none < 1e-6


def test_capstone_history_epsilon_is_the_valid_one():
    z = np.zeros(200, np.int64)
    hist = capstone.CapstoneHistory(z, z, z.astype(bool), z, np.full(200, np.nan), np.zeros(1200, np.int64),
                                    20 / 1200, 0.982, np.zeros(200), 0.1)  # fmt: skip
    assert hist.epsilon() == math.inf  # lesson 10's old setting: 20 a round, 10% dropouts
    assert hist.epsilon(rounds=1) >= dp.epsilon(q=20 / 1200, noise_multiplier=0.982, steps=1, delta=1e-5)


def test_capstone_noise_multiplier_for():
    z = capstone.noise_multiplier_for(epsilon=2.0, num_users=1200, q=30 / 1200, rounds=200, dropout_rate=0.05)
    assert capstone.epsilon(num_users=1200, q=30 / 1200, noise_multiplier=z, rounds=200, dropout_rate=0.05) <= 2.0
    assert z >= dp.noise_multiplier_for(epsilon=2.0, q=30 / 1200, steps=200, delta=1e-5)
    with pytest.raises(ValueError, match="refusal term"):
        capstone.noise_multiplier_for(epsilon=2.0, num_users=1200, q=20 / 1200, rounds=200, dropout_rate=0.1)
