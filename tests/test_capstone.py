"""The capstone's composition (fedlab.capstone): known answers, oracles against dp and secagg, properties."""

import dataclasses
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


# ---- noise="distributed" (issue 20, lesson 13) ------------------------------------------------------------

from fedlab import distributed_dp as D  # noqa: E402

# recorded from main at 6160f3a (before noise= existed): capstone.run(spec, clients, rounds=3, seed=11, q=30/N,
# clip_norm=0.5, noise_multiplier=1.1, bits=16, dropout_rate=0.05), the final parameters as float32 bit patterns
_CENTRAL_BEFORE = [3194833194, 1033732667, 1041564522, 3195665078, 3192904489, 1052066091, 3198075507, 3191371948,
                   1050708184, 3157193868, 3193031836, 3189294812, 1040475006, 3189115388, 3194884008, 1041756513,
                   1050505370, 3181296208]  # fmt: skip


@pytest.mark.parametrize("secure", [True, False])
def test_central_path_is_unchanged_bit_for_bit(health_clients, secure):
    clients, _ = health_clients
    kw = dict(rounds=3, seed=11, q=30 / len(clients), clip_norm=0.5, noise_multiplier=1.1, bits=16, dropout_rate=0.05,
              secure=secure)  # fmt: skip
    for extra in ({}, {"noise": "central"}):
        w, h = capstone.run(models.logreg(8, 2), clients, **kw, **extra)
        assert np.concatenate([t.ravel() for t in w]).astype(np.float32).view(np.uint32).tolist() == _CENTRAL_BEFORE
        assert h.round_bytes.tolist() == [211836, 181296, 82856] and h.included.tolist() == [40, 37, 24]
        assert h.epsilon() == 1.069898192008173 and h.noise == "central" and h.plan is None
        assert h.bits == 16 and h.coordinates == 18 and h.wrap_rate == 0.0
    assert capstone.noise_multiplier_for(epsilon=2.0, num_users=1200, q=30 / 1200, rounds=200,
                                         dropout_rate=0.05) == 1.152323428541422  # fmt: skip
    assert capstone.epsilon(num_users=1200, q=30 / 1200, noise_multiplier=1.1, rounds=200,
                            dropout_rate=0.05) == 2.2069351562934063  # fmt: skip


def _plan(*, dim=11, z=1.0, m=3, bits=16, num_users=200, q=0.05, clip=1.0):
    return capstone.distributed_plan(dim=dim, clip_norm=clip, noise_multiplier=z, num_users=num_users, q=q, bits=bits,
                                     min_survivors=m)  # fmt: skip


def _rounding_bound(plan, n):
    # each phone's rounding moves its scaled rotated vector by < 1 per coordinate: L2 < sqrt(d'); / s back in units
    return n * math.sqrt(plan.padded_dim) / plan.scale


def test_distributed_round_without_noise_equals_the_central_round_up_to_rounding():
    deltas = _deltas(9, seed=21, scale=0.6, shapes=((3, 3), (2,)))
    plan = _plan(z=0.0)
    cen = capstone.private_round(deltas, clip_norm=1.0, noise_multiplier=0.0, expected_clients=9.0, bits=32, rng=0,
                                 secure=False)  # fmt: skip
    dis = capstone.distributed_round(deltas, plan=plan, expected_clients=9.0, rng=3, secure=False)
    assert dis.refusal is None and dis.included == cen.included and dis.noise == "distributed"
    gap = np.linalg.norm(dis.server_view - cen.server_view)
    assert gap <= _rounding_bound(plan, 9) + 9 * math.sqrt(11) * 2.0 ** -(cen.frac_bits + 1)
    assert gap > 0  # the two really differ by the integer rounding
    np.testing.assert_allclose(P.flatten(dis.average), dis.server_view / 9.0, rtol=1e-6, atol=1e-7)


def test_distributed_run_without_noise_or_dropouts_tracks_the_central_run(health_clients):
    clients, _ = health_clients
    spec = models.logreg(8, 2)
    kw = dict(rounds=3, seed=5, q=20 / len(clients), clip_norm=0.5, noise_multiplier=0.0, bits=16, secure=False)
    wc, hc = capstone.run(spec, clients, **kw)
    wd, hd = capstone.run(spec, clients, noise="distributed", min_survivors=2, **kw)
    np.testing.assert_array_equal(hc.sampled, hd.sampled)
    np.testing.assert_array_equal(hc.included, hd.included)
    diff = np.abs(P.flatten(wc) - P.flatten(wd)).max()
    assert diff < 5e-3 and diff > 0  # the rounding grid of the plan, compounded over 3 rounds of training
    np.testing.assert_allclose(hd.server_views, hc.server_views, atol=20 * math.sqrt(32) / hd.plan.scale)
    assert hd.plan.min_survivors == 2 and hd.coordinates == 32 and hd.bits == 16 and hd.wrap_rate == 0.0


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 9), dim=st.integers(1, 40), bits=st.sampled_from([12, 16, 24]), seed=st.integers(0, 10_000),
       clip=st.sampled_from([0.5, 2.0]))  # fmt: skip
def test_property_decoded_sum_is_the_clipped_sum_within_the_rounding_bound(n, dim, bits, seed, clip):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)) * rng.uniform(0.1, 3.0)
    plan = _plan(dim=dim, z=0.0, m=2, bits=bits, clip=clip)
    out = capstone.distributed_round([[row] for row in x], plan=plan, expected_clients=1.0, rng=seed, secure=False)
    want = D.clip_rows(x, clip_norm=clip).sum(axis=0)
    assert out.refusal is None and out.wrapped == 0
    assert np.linalg.norm(out.server_view - want) <= _rounding_bound(plan, n) + 1e-9


def test_distributed_secure_and_plain_paths_agree_bit_for_bit():
    deltas = _deltas(8, seed=8, scale=1.0)
    plan = _plan(dim=8, z=1.0, m=3)
    kw = dict(plan=plan, expected_clients=8.0, rng=4, dropouts={1: "share", 6: "unmask"})
    a = capstone.distributed_round(deltas, protocol_rng=2, secure=True, **kw)
    b = capstone.distributed_round(deltas, secure=False, **kw)
    assert a.included == b.included == (0, 2, 3, 4, 5, 6, 7)  # 1 dropped before its input, 6 after it
    np.testing.assert_array_equal(a.ring_sum, b.ring_sum)
    np.testing.assert_array_equal(a.server_view, b.server_view)
    np.testing.assert_array_equal(a.bytes_sent, b.bytes_sent)
    assert a.wrapped == b.wrapped == 0 and a.frac_bits is None
    # the phones send d' = 8 values of 16 bits, the masked vector is all the server gets of any one phone
    assert b.bytes_sent[0] == capstone.protocol_bytes(num_clients=8, dim=8, bits=16, dropouts=kw["dropouts"])[0]


def test_what_the_server_sees_is_noised():
    deltas = _deltas(12, seed=9, scale=1.0)
    plan = _plan(dim=8, z=2.0, m=4)
    out = capstone.distributed_round(deltas, plan=plan, expected_clients=12.0, rng=1, secure=False)
    exact = D.clip_rows(np.stack([P.flatten(d) for d in deltas]), clip_norm=1.0).sum(axis=0)
    err = out.server_view - exact
    # 11 other phones' shares, each of std z c / sqrt(m - 1): per coordinate std ~ z c sqrt(11 / 3) ~ 3.8
    assert 2.0 < np.std(err) < 7.0
    assert np.all(out.ring_sum < 2**16)


def test_distributed_round_refuses_below_the_planned_survivors_and_releases_nothing():
    deltas = _deltas(6, seed=2)
    plan = _plan(dim=8, z=1.0, m=5)
    kw = dict(plan=plan, expected_clients=6.0, rng=0, secure=False)
    ok = capstone.distributed_round(deltas, dropouts={0: "masked_input"}, **kw)  # 5 in the sum: released
    assert ok.refusal is None and len(ok.included) == 5
    short = capstone.distributed_round(deltas, dropouts={0: "masked_input", 3: "share"}, **kw)  # 4 < 5
    assert "min_survivors=5" in short.refusal and short.server_view is None and short.included == ()
    assert short.ring_sum is None and short.wrapped is None and all(np.all(t == 0) for t in short.average)
    late = capstone.distributed_round(deltas, dropouts={0: "unmask", 3: "unmask"}, **kw)  # inputs in: released
    assert late.refusal is None and len(late.included) == 6
    single = capstone.distributed_round(deltas[:1], **kw)
    assert "at least 2" in single.refusal and all(np.all(t == 0) for t in single.average)


def test_wrap_around_is_measured_against_the_unwrapped_sum():
    deltas = [[np.full(8, 0.35, np.float32)] for _ in range(10)]  # aligned: the worst case for the ring
    plan = _plan(dim=8, z=0.0, m=2, bits=12)
    fine = capstone.distributed_round(deltas, plan=plan, expected_clients=10.0, rng=0, secure=False)
    assert fine.wrapped == 0
    narrow = dataclasses.replace(plan, bits=8)  # the ring shrunk under the plan's scale: the sum wraps
    bad = capstone.distributed_round(deltas, plan=narrow, expected_clients=10.0, rng=0, secure=False)
    assert bad.wrapped > 0
    exact = D.clip_rows(np.full((10, 8), 0.35), clip_norm=1.0).sum(axis=0)
    assert np.abs(bad.server_view - exact).max() > 1.0  # a wrapped coordinate decodes to garbage


def test_flip_probability_distributed_equals_brute_force_enumeration():
    import itertools

    num_users, q, rate, m = 7, 0.45, 0.3, 3
    others = num_users - 1
    cats = ((1, 1, 1 - rate), (0, 1, rate / 4), (0, 0, 3 * rate / 4))  # (never drops, in the sum, probability)

    def released(k, j, i):
        return not capstone.refuses(k, j) and i >= m if k >= 2 else False

    p = 0.0
    for sampled in itertools.product([0, 1], repeat=others):
        k = sum(sampled)
        ps = q**k * (1 - q) ** (others - k)
        for fate in itertools.product(range(3), repeat=k):
            pf = math.prod(cats[f][2] for f in fate)
            j, i = sum(cats[f][0] for f in fate), sum(cats[f][1] for f in fate)
            for dj, di, pm in cats:
                p += ps * pf * pm * (released(k, j, i) != released(k + 1, j + dj, i + di))
    got = capstone.distributed_flip_probability(num_users=num_users, q=q, dropout_rate=rate, rounds=1, min_survivors=m)
    assert got >= q * p - 1e-15
    other = capstone.distributed_flip_probability(num_users=num_users + 1, q=q, dropout_rate=rate, rounds=1,
                                                  min_survivors=m)  # fmt: skip
    assert got == pytest.approx(q * p, rel=1e-9) or got <= other + 1e-15
    # min_survivors = 1 adds no refusal: the distributed rule is then lesson 10's
    lesson10 = capstone.refusal_flip_probability(num_users=40, q=0.2, dropout_rate=0.1, rounds=5)
    one = capstone.distributed_flip_probability(num_users=40, q=0.2, dropout_rate=0.1, rounds=5, min_survivors=1)
    assert one == pytest.approx(lesson10, rel=1e-9)


def test_epsilon_vs_survivors_dropouts_eat_noise():
    plan = capstone.distributed_plan(dim=18, clip_norm=0.5, noise_multiplier=1.4, num_users=1200, q=30 / 1200, bits=16,
                                     min_survivors=7)  # fmt: skip
    ks = np.arange(0, 30)
    eps = capstone.epsilon_vs_survivors(ks, plan=plan, q=30 / 1200, rounds=200)
    planned = D.epsilon(plan, q=30 / 1200, rounds=200, delta=1e-5)
    assert eps[7] == planned and math.isfinite(planned)
    assert np.all(np.diff(eps[1:]) < 0) and np.all(np.isinf(eps[:2]))  # more survivors, more noise, lower epsilon
    assert eps[4] > 1.3 * planned and eps[20] < planned
    # the run's epsilon adds the refusal term to the planned one
    acct = dict(num_users=1200, q=30 / 1200, rounds=200, dropout_rate=0.05)
    assert capstone.epsilon(noise_multiplier=1.4, noise="distributed", plan=plan, **acct) >= planned
    # below the plan the protocol refuses rather than release that weaker guarantee
    deltas = _deltas(6, seed=1, shapes=((8, 2), (2,)))
    out = capstone.distributed_round(deltas, plan=plan, expected_clients=30.0, rng=0, secure=False)
    assert out.refusal is not None and "min_survivors=7" in out.refusal


def test_distributed_noise_multiplier_for_reaches_the_target():
    acct = dict(num_users=1200, q=30 / 1200, rounds=200, dropout_rate=0.05)
    shape = dict(dim=18, clip_norm=0.5, bits=16)
    m = capstone.min_survivors_for(**acct)
    assert m == 7  # the largest whose refusal term is at most delta / 10 at lesson 10's setting
    z = capstone.noise_multiplier_for(epsilon=2.0, noise="distributed", **acct, **shape)
    assert capstone.epsilon(noise_multiplier=z, noise="distributed", **acct, **shape) <= 2.0
    assert capstone.epsilon(noise_multiplier=z * 0.999, noise="distributed", **acct, **shape) > 2.0
    assert z > capstone.noise_multiplier_for(epsilon=2.0, **acct)  # Skellam, its rounding and the refusal term cost


def test_distributed_run_records_bits_bytes_wraps_and_views(health_clients):
    clients, test = health_clients
    spec = models.logreg(8, 2)
    w, h = capstone.run(spec, clients, rounds=6, seed=2, q=30 / len(clients), clip_norm=0.5, noise_multiplier=1.4,
                        bits=16, dropout_rate=0.1, noise="distributed", test=test, eval_every=6)  # fmt: skip
    m = capstone.min_survivors_for(num_users=len(clients), q=30 / len(clients), dropout_rate=0.1, rounds=6)
    assert h.noise == "distributed" and h.plan.min_survivors == m
    assert h.bits == 16 and h.coordinates == 32 and h.wrapped.shape == (6,) and h.wrap_rate == 0.0
    assert h.server_views.shape == (6, 18) and np.all(np.isfinite(h.server_views[~h.refused]))
    assert h.bytes_per_phone() == h.round_bytes.sum() / h.sampled.sum()
    assert math.isfinite(h.epsilon()) and h.epsilon() == capstone.epsilon(
        num_users=len(clients), q=30 / len(clients), noise_multiplier=1.4, rounds=6, dropout_rate=0.1,
        noise="distributed", plan=h.plan)  # fmt: skip
    planned = D.epsilon(h.plan, q=30 / len(clients), rounds=6, delta=1e-5)
    np.testing.assert_array_equal(h.epsilon_vs_survivors([h.plan.min_survivors]), [planned])
    assert h.epsilon() >= planned
    assert 0.5 < h.test_accuracy[-1] <= 1.0


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(bits=40), "bits=40"),
        (dict(bits=8, num_users=100_000, q=0.5), "bits=8"),  # a ring too small for the cohort
        (dict(min_survivors=80), "min_survivors=80"),  # above the planned cohort
        (dict(min_survivors=1), "min_survivors=1"),
        (dict(noise_multiplier=-1.0), "noise_multiplier=-1.0"),
        (dict(clip_norm=0.0), "clip_norm"),
    ],
)
def test_distributed_plan_errors_name_the_argument(kw, match):
    args = dict(dim=18, clip_norm=0.5, noise_multiplier=1.0, num_users=1200, q=30 / 1200, bits=16, min_survivors=7)
    with pytest.raises(ValueError, match=match):
        capstone.distributed_plan(**{**args, **kw})


def test_distributed_errors_name_the_argument(health_clients):
    clients = health_clients[0][:40]
    base = dict(rounds=1, seed=0, q=0.5, clip_norm=1.0, noise_multiplier=1.0)
    spec = models.logreg(8, 2)
    with pytest.raises(ValueError, match="noise='gaussian'"):
        capstone.run(spec, clients, noise="gaussian", **base)
    with pytest.raises(ValueError, match="min_survivors=3: only for noise='distributed'"):
        capstone.run(spec, clients, min_survivors=3, **base)
    with pytest.raises(ValueError, match="noise_multiplier=-1"):
        capstone.run(spec, clients, noise="distributed", **{**base, "noise_multiplier": -1.0})
    with pytest.raises(ValueError, match="min_survivors=99"):
        capstone.run(spec, clients, noise="distributed", min_survivors=99, **base)
    with pytest.raises(ValueError, match="dim=None"):
        capstone.epsilon(num_users=100, q=0.1, noise_multiplier=1.0, rounds=3, dropout_rate=0.0, noise="distributed")
    with pytest.raises(ValueError, match="dim=18: only for noise='distributed'"):
        capstone.noise_multiplier_for(epsilon=2.0, num_users=100, q=0.1, rounds=3, dropout_rate=0.0, dim=18)
    plan = _plan(dim=9)
    with pytest.raises(ValueError, match="plan.dim is 9"):
        capstone.distributed_round(_deltas(3, seed=0), plan=plan, expected_clients=3.0, rng=0)
    with pytest.raises(ValueError, match="noise_multiplier=2.0: differs from plan.noise_multiplier"):
        capstone.epsilon(num_users=200, q=0.05, noise_multiplier=2.0, rounds=3, dropout_rate=0.0, noise="distributed",
                         plan=plan)  # fmt: skip
    with pytest.raises(ValueError, match="survivors="):
        capstone.epsilon_vs_survivors([0.5], plan=plan, q=0.05, rounds=3)
    with pytest.raises(ValueError, match="epsilon_vs_survivors is for a run with noise='distributed'"):
        z = np.zeros(2, np.int64)
        capstone.CapstoneHistory(z, z, z.astype(bool), z, z * 1.0, z, 0.1, 1.0, z * 1.0).epsilon_vs_survivors([3])


def test_central_and_distributed_runs_with_one_seed_never_share_protocol_keys(health_clients):
    import warnings

    clients, _ = health_clients
    kw = dict(rounds=2, seed=4, q=20 / len(clients), clip_norm=0.5, noise_multiplier=1.0, bits=16, dropout_rate=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", secagg.KeyReuseWarning)
        capstone.run(models.logreg(8, 2), clients, **kw)
        capstone.run(models.logreg(8, 2), clients, noise="distributed", min_survivors=3, **kw)


# ---- user-level membership (issue 16.3) ------------------------------------------------------------


def _memorising_model(num_users, members, *, days=6, seed=0):
    """A logistic regression on one-hot user ids that has memorised each member's label (weight +-6 on its column).

    Every user's days all carry that user's label, so the model has learnt *people*, not days: its loss is low on
    every day of a member (trained or later) and log 2 on a user it never saw.
    """
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, num_users)
    spec = models.logreg(num_users, 2)
    w = np.zeros((2, num_users), np.float32)
    w[label[members], members] = 6.0
    user = np.repeat(np.arange(num_users), days)
    x = np.eye(num_users, dtype=np.float32)[user]
    return spec, [w, np.zeros(2, np.float32)], x, label[user].astype(np.int64), user


def test_user_membership_known_answer_a_model_that_memorises_its_members():
    members = np.arange(200)
    spec, params, x, y, user = _memorising_model(1200, members)
    inside = np.isin(user, members)
    res = capstone.user_membership(spec, params, (x[inside], y[inside], user[inside]),
                                   (x[~inside], y[~inside], user[~inside]))  # fmt: skip
    assert (res.num_members, res.num_nonmembers) == (200, 1000)  # users, not days
    assert res.auc == 1.0 and res.tpr_at == {0.001: 1.0, 0.01: 1.0}
    # and a model that learnt nothing gives guessing
    flat = [np.zeros_like(p) for p in params]
    res0 = capstone.user_membership(
        spec, flat, (x[inside], y[inside], user[inside]), (x[~inside], y[~inside], user[~inside])
    )
    assert res0.auc == 0.5 and res0.tpr_at[0.01] == 0.0


def test_user_score_is_the_mean_loss_of_the_users_days():
    spec = models.logreg(1, 2)
    params = [np.array([[0.0], [1.0]], np.float32), np.zeros(2, np.float32)]
    x = np.array([[0.0], [2.0], [-1.0], [1.0], [3.0]], np.float32)
    y = np.ones(5, np.int64)
    # losses softplus(-x): user 7 has days 0 and 2.0 -> mean; users 8 and 9 one day each
    loss = np.log1p(np.exp(-x[:, 0].astype(np.float64)))
    res = capstone.user_membership(spec, params, (x[:2], y[:2], np.array([7, 7])), (x[2:], y[2:], np.array([8, 9, 9])))
    member, others = loss[:2].mean(), [loss[2], loss[3:].mean()]
    assert res.auc == pytest.approx(np.mean([member < o for o in others]))  # a lower mean loss says "member"
    assert (res.num_members, res.num_nonmembers) == (1, 2)


def test_the_day_level_test_misses_a_model_that_memorised_people():
    """The old lesson-10 test (a user's training days against the same user's later days) sees nothing here,
    and the user-level test refuses that split: the later days of members are not non-members."""
    members = np.arange(600)
    spec, params, x, y, user = _memorising_model(1200, members, days=10)
    day = np.tile(np.arange(10), 1200)
    trained, later = np.isin(user, members) & (day < 8), np.isin(user, members) & (day >= 8)
    day_level = capstone.membership_auc(spec, params, (x[trained], y[trained]), (x[later], y[later]))
    assert day_level == 0.5  # the model memorised people, so their later days look just like their trained ones
    others = ~np.isin(user, members) & (day < 8)
    assert capstone.user_membership(spec, params, (x[trained], y[trained], user[trained]),
                                    (x[others], y[others], user[others])).auc == 1.0  # fmt: skip
    with pytest.raises(ValueError, match="shares 600 user ids with members"):
        capstone.user_membership(
            spec, params, (x[trained], y[trained], user[trained]), (x[later], y[later], user[later])
        )


def test_held_out_users_are_other_people_than_the_federations():
    shipped = data.load_health()
    held = data.held_out_health(500)
    assert np.intersect1d(np.unique(shipped.user), np.unique(held.user)).size == 0
    assert held.user.min() == data.HEALTH_NUM_USERS == shipped.user.max() + 1


@pytest.mark.parametrize(
    "members,nonmembers,match",
    [
        ((np.zeros((2, 8), np.float32), np.zeros(2, np.int64)), None, r"members must be a tuple \(x, y, user\)"),
        ((np.zeros((2, 8), np.float32), np.zeros(2, np.int64), np.zeros(3, np.int64)), None, "2 days but 3 user ids"),
        ((np.zeros((0, 8), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)), None, "members has no days"),
    ],
)
def test_user_membership_errors_name_the_argument(members, nonmembers, match):
    ok = (np.zeros((2, 8), np.float32), np.zeros(2, np.int64), np.array([5, 6]))
    with pytest.raises(ValueError, match=match):
        capstone.user_membership(models.logreg(8, 2), models.init_params(models.logreg(8, 2), rng=0), members,
                                 ok if nonmembers is None else nonmembers)  # fmt: skip


def test_user_membership_on_a_dp_run_respects_the_dp_bound(health_clients):
    """Lesson 10's DP run (epsilon 2, 200 rounds, 30 a round) against 10,000 held-out users: the measured TPR at
    0.1 % and 1 % FPR is below e^eps FPR + delta; the memorising model above breaks the same bound."""
    clients, _ = health_clients
    spec, n = models.logreg(8, 2), len(clients)
    q = 30 / n
    z = capstone.noise_multiplier_for(epsilon=2.0, num_users=n, q=q, rounds=200, dropout_rate=0.05)
    w, hist = capstone.run(spec, clients, rounds=200, seed=0, q=q, clip_norm=0.5, noise_multiplier=z, bits=16,
                           dropout_rate=0.05, secure=False)  # fmt: skip
    eps = hist.epsilon(delta=capstone.DELTA)
    assert eps == pytest.approx(2.0, abs=1e-3)
    tr, _ = data.split_by_time(data.load_health(), test_fraction=0.2)
    held, _ = data.split_by_time(data.held_out_health(), test_fraction=0.2)
    res = capstone.user_membership(spec, w, (tr.x, tr.y, tr.user), (held.x, held.y, held.user))
    assert (res.num_members, res.num_nonmembers) == (1200, 10_000) and res.smallest_fpr == 1e-4
    for fpr, tpr in res.tpr_at.items():
        assert np.isfinite(tpr) and tpr <= dp.tpr_bound(fpr, epsilon=eps, delta=capstone.DELTA)
    members = np.arange(200)
    mspec, params, x, y, user = _memorising_model(1200, members)
    inside = np.isin(user, members)
    leak = capstone.user_membership(
        mspec, params, (x[inside], y[inside], user[inside]), (x[~inside], y[~inside], user[~inside])
    )
    assert leak.tpr_at[0.001] > dp.tpr_bound(0.001, epsilon=eps, delta=capstone.DELTA)  # the check can fail
