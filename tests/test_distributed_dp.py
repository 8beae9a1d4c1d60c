"""fedlab.distributed_dp: rotation (hypothesis, scipy's Hadamard), rounding, Skellam noise (scipy's pmf), the
vectorized encode against the per-phone loop, decode within the rounding bound, secagg masks cancelling, the
wrap rate measured against its bound, the accountant (exact Renyi divergence of Skellam from scipy, the sampled
Gaussian of fedlab.dp in the limit), dropouts and the refusal to release, and errors for bad input."""

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlab import distributed_dp as D
from fedlab import dp, secagg

DELTA = 1e-5


def small_plan(**kw):
    args = dict(dim=9, clip_norm=1.0, noise_multiplier=1.0, cohort=20, min_survivors=15, bits=16)
    args.update(kw)
    return D.make_plan(**args)


# ---- rotation -------------------------------------------------------------------------------------


def test_padded_dim_known_answers():
    assert [D.padded_dim(d) for d in (1, 2, 3, 8, 9, 1000, 1024, 1025)] == [1, 2, 4, 8, 16, 1024, 1024, 2048]


@pytest.mark.parametrize("d", [1, 2, 8, 64])
def test_hadamard_matches_scipy(d):
    from scipy.linalg import hadamard

    x = np.random.default_rng(d).normal(size=(3, d))
    np.testing.assert_allclose(D.hadamard(x), x @ hadamard(d).T / math.sqrt(d), atol=1e-12)


@settings(max_examples=40)
@given(dim=st.integers(1, 300), n=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_rotation_is_orthogonal_and_exactly_inverted(dim, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)) * rng.uniform(0.01, 100)
    signs = D.rotation_signs(dim, rng=seed)
    y = D.rotate(x, signs=signs)
    assert y.shape == (n, D.padded_dim(dim))
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), np.linalg.norm(x, axis=1), rtol=1e-12)
    np.testing.assert_allclose(y @ y.T, x @ x.T, rtol=1e-10, atol=1e-9)  # inner products kept
    np.testing.assert_allclose(D.unrotate(y, signs=signs, dim=dim), x, rtol=1e-12, atol=1e-12)


def test_rotation_spreads_a_spike():
    x = np.zeros(1024)
    x[3] = 1.0
    y = D.rotate(x, signs=D.rotation_signs(1024, rng=0))
    np.testing.assert_allclose(np.abs(y), 1 / 32)  # one coordinate's mass spread over all 1024


# ---- rounding, noise and the ring -----------------------------------------------------------------


def test_rounded_l2_bound_known_answers():
    assert D.rounded_l2_bound(norm=10.0, dim=16, beta=0.0) == pytest.approx(14.0)
    expected = math.sqrt(100 + 4 + math.sqrt(2 * 0.5) * (10 + 2))  # beta = e^-0.5: log(1/beta) = 1/2
    assert D.rounded_l2_bound(norm=10.0, dim=16, beta=math.exp(-0.5)) == pytest.approx(expected)
    assert D.rounded_l1_bound(l2=3.0, dim=100) == 9.0 and D.rounded_l1_bound(l2=30.0, dim=100) == 300.0


def test_randomized_rounding_is_unbiased_and_within_its_bound():
    y = np.random.default_rng(1).normal(size=64) * 4
    bound = D.rounded_l2_bound(norm=float(np.linalg.norm(y)), dim=64, beta=D.DEFAULT_BETA)
    gen = np.random.default_rng(2)
    draws = np.stack([D.conditional_round(y, bound=bound, rng=gen) for _ in range(4000)])
    assert draws.dtype == np.int64
    assert np.all(np.linalg.norm(draws, axis=1) <= bound)
    assert np.all((draws == np.floor(y)) | (draws == np.floor(y) + 1))
    # conditioning on the norm biases it slightly; the mean stays within a few hundredths of y
    np.testing.assert_allclose(draws.mean(0), y, atol=0.06)


def test_plain_randomized_rounding_is_unbiased():
    y = np.array([0.25, -1.5, 2.9, 7.0])
    draws = np.stack([D.conditional_round(y, bound=1e9, rng=k) for k in range(20000)])
    np.testing.assert_allclose(draws.mean(0), y, atol=0.02)


def test_rounding_gives_up_with_a_clear_error():
    with pytest.raises(D.RoundingError, match=r"row 0 .*max_tries=5"):
        D.conditional_round(np.full(16, 0.5), bound=1.0, rng=0, max_tries=5)


def test_skellam_shares_sum_to_skellam():
    from scipy.stats import skellam

    mu, n = 3.0, 8
    shares = np.stack([D.skellam_noise(200_000, variance=mu, rng=k) for k in range(n)])
    assert shares.dtype == np.int64
    total = shares.sum(0)
    assert total.mean() == pytest.approx(0, abs=0.05) and total.var() == pytest.approx(n * mu, rel=0.02)
    ks = np.arange(-30, 31)
    empirical = np.array([(total == k).mean() for k in ks])
    tv = 0.5 * np.abs(empirical - skellam.pmf(ks, n * mu / 2, n * mu / 2)).sum()
    assert tv < 0.01


def test_modular_clip_agrees_with_secagg_ring():
    v = np.array([[-3, 0, 5, 2**16 + 7], [70000, -70000, 1, -1]])
    out = D.modular_clip(v, bits=16)
    assert out.dtype == secagg.ring_dtype(16)
    for row, got in zip(v, out):
        np.testing.assert_array_equal(got, secagg.as_ring(row, bits=16))
    np.testing.assert_array_equal(D.centered(out[0], bits=16), [-3, 0, 5, 7])


# ---- the phones and the server --------------------------------------------------------------------


@settings(max_examples=25)
@given(n=st.integers(1, 6), dim=st.integers(1, 40), seed=st.integers(0, 2**16), z=st.sampled_from([0.0, 0.7]))
def test_vectorized_encode_equals_the_per_phone_loop(n, dim, seed, z):
    plan = D.make_plan(dim=dim, clip_norm=1.0, noise_multiplier=z, cohort=max(n, 2), min_survivors=2, bits=16)
    x = np.random.default_rng(seed).normal(size=(n, dim)) * 3
    signs = D.rotation_signs(dim, rng=seed)
    seeds = [seed + k for k in range(n)]
    loop = np.stack([D.encode_client(x[k], plan=plan, signs=signs, rng=seeds[k]) for k in range(n)])
    np.testing.assert_array_equal(D.encode_cohort(x, plan=plan, signs=signs, rngs=seeds), loop)


@settings(max_examples=25)
@given(n=st.integers(1, 6), dim=st.integers(1, 300), seed=st.integers(0, 2**16), z=st.sampled_from([0.0, 0.7]))
def test_fast_encode_is_the_public_pieces_composed(n, dim, seed, z):
    """The phones' fast path (``_encode_rows``, behind encode_client and encode_cohort) is exactly the public
    pieces the lesson grades learners against: clip_rows -> rotate -> scale -> conditional_round -> skellam_noise."""
    plan = D.make_plan(dim=dim, clip_norm=1.0, noise_multiplier=z, cohort=max(n, 2), min_survivors=2, bits=16)
    x = np.random.default_rng(seed).normal(size=(n, dim)) * 3
    signs = D.rotation_signs(dim, rng=seed)
    gens = [np.random.default_rng(seed + k) for k in range(n)]
    y = D.rotate(D.clip_rows(x, clip_norm=plan.clip_norm), signs=signs) * plan.scale
    rounded = D.conditional_round(y, bound=plan.l2_sensitivity, rng=gens, max_tries=plan.max_tries)
    noised = rounded + np.stack([D.skellam_noise(plan.padded_dim, variance=plan.local_variance, rng=g) for g in gens])
    seeds = [seed + k for k in range(n)]
    np.testing.assert_array_equal(D.encode_cohort(x, plan=plan, signs=signs, rngs=seeds, modular=False), noised)
    np.testing.assert_array_equal(
        D.encode_cohort(x, plan=plan, signs=signs, rngs=seeds), D.modular_clip(noised, bits=16)
    )


@settings(max_examples=30)
@given(n=st.integers(2, 12), dim=st.integers(1, 200), seed=st.integers(0, 2**16), bits=st.sampled_from([12, 16, 24]))
def test_decode_of_the_sum_is_the_sum_of_clipped_inputs_within_the_rounding_bound(n, dim, seed, bits):
    plan = D.make_plan(dim=dim, clip_norm=1.0, noise_multiplier=0.0, cohort=n, min_survivors=2, bits=bits)
    x = np.random.default_rng(seed).normal(size=(n, dim))
    signs = D.rotation_signs(dim, rng=seed + 1)
    enc = D.encode_cohort(x, plan=plan, signs=signs, rngs=[seed + k for k in range(n)])
    got = D.decode(D.modular_sum(enc, bits=bits), plan=plan, signs=signs, survivors=n)
    err = np.linalg.norm(got - D.clip_rows(x, clip_norm=1.0).sum(0))
    # every rounded coordinate moves by < 1 in the scaled rotated domain; the rotation keeps norms
    assert err <= n * math.sqrt(plan.padded_dim) / plan.scale


def test_secagg_masks_cancel_on_the_encoded_vectors():
    plan = small_plan(min_survivors=5)
    n, signs = 5, D.rotation_signs(9, rng=4)
    x = np.random.default_rng(5).normal(size=(n, 9))
    enc = D.encode_cohort(x, plan=plan, signs=signs, rngs=list(range(n)))
    rng = np.random.default_rng(6)
    seeds = {(u, v): rng.bytes(32) for u in range(n) for v in range(u + 1, n)}
    masked = [
        secagg.mask_vector(
            enc[u], client=u, self_seed=None, bits=plan.bits,
            pair_seeds={v: seeds[min(u, v), max(u, v)] for v in range(n) if v != u},
        )
        for u in range(n)
    ]  # fmt: skip
    total = D.modular_sum(np.stack(masked), bits=plan.bits)
    np.testing.assert_array_equal(total, D.modular_sum(enc, bits=plan.bits))
    assert not np.array_equal(masked[0], enc[0])  # the server never sees a phone's noised vector itself
    np.testing.assert_allclose(
        D.decode(total, plan=plan, signs=signs, survivors=n),
        D.decode(D.modular_sum(enc, bits=plan.bits), plan=plan, signs=signs, survivors=n),
    )


def test_decoded_noise_has_the_planned_variance():
    plan = D.make_plan(dim=1000, clip_norm=1.0, noise_multiplier=1.0, cohort=20, min_survivors=11, bits=20)
    signs = D.rotation_signs(1000, rng=0)
    enc = D.encode_cohort(np.zeros((11, 1000)), plan=plan, signs=signs, rngs=list(range(11)))
    noise = D.decode(D.modular_sum(enc, bits=plan.bits), plan=plan, signs=signs, survivors=11)
    # 11 shares of (z c)^2 / 10 each (the own share is not counted): std z c sqrt(11 / 10), plus rounding
    assert noise.std() == pytest.approx(math.sqrt(11 / 10), rel=0.06)


def _wrap_rate(plan, trials, seed=0):
    """Fraction of the secure sum's coordinates that wrapped: aligned updates (the worst case), all phones in."""
    n, rates = plan.cohort, []
    x = np.ones((n, plan.dim))
    for t in range(trials):
        signs = D.rotation_signs(plan.dim, rng=seed + t)
        rngs = [np.random.default_rng([seed, t, k]) for k in range(n)]
        raw = D.encode_cohort(x, plan=plan, signs=signs, rngs=rngs, modular=False).sum(0)
        rngs = [np.random.default_rng([seed, t, k]) for k in range(n)]
        ring = D.centered(
            D.modular_sum(D.encode_cohort(x, plan=plan, signs=signs, rngs=rngs), bits=plan.bits), bits=plan.bits
        )
        rates.append(np.mean(raw != ring))
    return float(np.mean(rates))


def test_wrap_rate_measured_below_its_bound():
    plan = D.make_plan(
        dim=1000, clip_norm=1.0, noise_multiplier=0.5, cohort=50, min_survivors=40, bits=10, wrap_prob=0.05
    )
    bound = D.wrap_probability(
        scale=plan.scale, dim=plan.dim, clip_norm=1.0, clients=50, local_variance=plan.local_variance, bits=10
    )
    assert bound == pytest.approx(0.05, rel=1e-3)
    measured = _wrap_rate(plan, trials=10)
    assert 0 < measured <= bound  # wraps do happen at 10 bits, and less often than the bound
    # four times the scale the plan allows: the bound was not slack enough to hide that
    # (make_plan refuses such a scale; built by hand here to show the wraps the refusal prevents)
    l2 = D.rounded_l2_bound(norm=4 * plan.scale, dim=plan.padded_dim, beta=plan.beta)
    loose = dataclasses.replace(plan, scale=4 * plan.scale, local_variance=16 * plan.local_variance, l2_sensitivity=l2)
    assert _wrap_rate(loose, trials=5) > 0.05


def test_wrap_rate_at_the_default_target_is_below_1e_4():
    plan = D.make_plan(dim=4096, clip_norm=1.0, noise_multiplier=1.0, cohort=30, min_survivors=25, bits=14)
    assert _wrap_rate(plan, trials=8) <= 1e-4


def test_scale_is_close_to_the_papers_heuristic():
    """Kairouz et al. Sec. 4.4 / TFF's _heuristic_scale_factor puts k Gaussian std devs inside the ring; our
    Chernoff bound is a true bound, so it allows a somewhat smaller scale, never a larger one here."""
    for dim, n, ms, bits, z, p in [(9, 20, 15, 16, 1.0, 1e-4), (10000, 100, 80, 18, 1.0, 1e-4),
                                   (1000, 50, 40, 12, 0.5, 0.05)]:  # fmt: skip
        plan = D.make_plan(
            dim=dim, clip_norm=1.0, noise_multiplier=z, cohort=n, min_survivors=ms, bits=bits, wrap_prob=p
        )
        k, local_std = D.gaussian_k_stddevs(p), z / math.sqrt(ms - 1)
        heuristic = math.sqrt(2 ** (2 * bits) - n * k * k) / (
            2 * k * math.sqrt(n * n / plan.padded_dim + n * local_std**2)
        )
        assert 0.6 * heuristic <= plan.scale <= heuristic


# ---- the accountant -------------------------------------------------------------------------------


def _exact_skellam_renyi(alpha, mu, shift):
    """D_alpha(Sk(mu) + shift || Sk(mu)) in one dimension, summed over the support.

    The pmf of Poisson(mu/2) - Poisson(mu/2) at k is e^-mu I_|k|(mu) = scipy.special.ive(|k|, mu)."""
    from scipy.special import ive, logsumexp

    k = np.arange(-int(60 * math.sqrt(mu)) - 60 - shift, int(60 * math.sqrt(mu)) + 60 + shift)
    with np.errstate(divide="ignore"):
        lp, lq = np.log(ive(np.abs(k - shift), mu)), np.log(ive(np.abs(k), mu))
    ok = np.isfinite(lp) & np.isfinite(lq)
    return float(logsumexp(alpha * lp[ok] + (1 - alpha) * lq[ok]) / (alpha - 1))


def test_exact_skellam_pmf_is_scipys():
    from scipy.stats import skellam

    k = np.arange(-20, 21)
    from scipy.special import ive

    np.testing.assert_allclose(ive(np.abs(k), 6.0), skellam.pmf(k, 3.0, 3.0), rtol=1e-10)


@pytest.mark.parametrize("mu,shift,slack", [(4.0, 1, 2.3), (20.0, 2, 1.4), (200.0, 5, 1.05), (1000.0, 30, 1.06)])
def test_skellam_bound_holds_against_the_exact_divergence(mu, shift, slack):
    orders = [2, 3, 5, 8, 16]
    bound = D.skellam_rdp(l1=shift, l2=shift, variance=mu, orders=orders)
    for a, b in zip(orders, bound):
        exact = _exact_skellam_renyi(a, mu, shift)
        assert exact <= b * (1 + 1e-9)
        assert b <= slack * exact  # and it gets sharp as the variance grows


def test_skellam_rdp_tends_to_the_gaussian():
    orders = np.array(D.ORDERS, dtype=float)
    gauss = orders / (2 * 1.3**2)
    prev = np.inf
    for l2 in (10.0, 100.0, 1000.0, 10000.0):
        r = D.skellam_rdp(l1=l2 * 30, l2=l2, variance=(1.3 * l2) ** 2, orders=orders)
        assert np.all(r >= gauss)
        gap = float(np.max(r / gauss - 1))
        assert gap < prev
        prev = gap
    assert prev < 1e-3


def _authors_skellam_rdp(*, l1_sens, l2_sens, central_var, scale, order):
    """The per-order Skellam RDP as the authors released it (google-research/federated,
    distributed_dp/accounting_utils.py, ``_skellam_rdp``), restated: sensitivities and variance in the
    *unscaled* units of the clipped updates, ``scale`` the factor ``s`` applied before rounding."""
    a, s, mu = order, scale, central_var
    return a * l2_sens**2 / (2 * mu) + min(
        ((2 * a - 1) * s * l2_sens**2 + 6 * l1_sens) / (4 * s**3 * mu**2), 3 * l1_sens / (2 * s * mu)
    )


@pytest.mark.parametrize(
    "l1,l2,mu,s,order,known",
    [
        (2.0, 1.0, 8.0, 2.0, 3, 203 / 1024),  # 3/16 + 22/2048: the first branch of the min
        (2.0, 1.0, 0.25, 2.0, 2, 10.0),  # 4 + min(9, 6): the second branch of the min
    ],
)
def test_skellam_rdp_is_the_authors_released_formula_term_by_term(l1, l2, mu, s, order, known):
    """Pins the bound to the authors' own released formula (no number from the paper's text could be read
    here: the stored copies of arXiv 2110.04995 stop at the introduction; see the PLD oracle tests below
    for the check of the final epsilon).

    The authors' accountant works in unscaled units (sensitivities ``l1, l2`` of the clipped update,
    central variance ``mu``, scale ``s``); ours works on the scaled integers: ``L2 = s l2``,
    ``L1 = s l1``, ``V = s^2 mu``. Both give the same number term by term, at hand-computed dyadic
    known answers (exact in float64), on both branches of the ``min``. Tolerance: relative 1e-12."""
    ours = D.skellam_rdp(l1=s * l1, l2=s * l2, variance=s * s * mu, orders=[order])[0]
    theirs = _authors_skellam_rdp(l1_sens=l1, l2_sens=l2, central_var=mu, scale=s, order=order)
    assert theirs == pytest.approx(known, rel=1e-12)
    assert ours == pytest.approx(known, rel=1e-12)
    # term by term: the Gaussian part, then each branch of the min, in our units
    a, L1, L2, V = order, s * l1, s * l2, s * s * mu
    assert a * L2**2 / (2 * V) == pytest.approx(a * l2**2 / (2 * mu), rel=1e-12)
    assert ((2 * a - 1) * L2**2 + 6 * L1) / (4 * V**2) == pytest.approx(
        ((2 * a - 1) * s * l2**2 + 6 * l1) / (4 * s**3 * mu**2), rel=1e-12
    )
    assert 3 * L1 / (2 * V) == pytest.approx(3 * l1 / (2 * s * mu), rel=1e-12)
    # and across every order the accountant uses, at a realistic plan's numbers
    plan = small_plan(noise_multiplier=1.0, bits=16)
    v = plan.noise_shares(plan.min_survivors) * plan.local_variance
    sc = plan.scale
    got = D.skellam_rdp(l1=plan.l1_sensitivity, l2=plan.l2_sensitivity, variance=v)
    ref = [
        _authors_skellam_rdp(
            l1_sens=plan.l1_sensitivity / sc, l2_sens=plan.l2_sensitivity / sc, central_var=v / sc**2, scale=sc, order=o
        )
        for o in D.ORDERS
    ]
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def _pld_epsilon(*, variance: float, shift: int, rounds: int, delta: float = DELTA) -> float:
    """dp_accounting's privacy loss distribution (PLD) of ``rounds`` releases of ``x + Sk(variance)`` for
    neighbours ``x`` and ``x + shift`` (one coordinate), built from scipy's exact Skellam pmfs: the tight
    ``epsilon`` of the mechanism, computed by an independent library (pessimistic discretization, so an
    upper estimate of the truth by about its 1e-4 grid). This is the numerical PLD evaluation Agarwal et
    al. 2021 use to compare Skellam with the Gaussian."""
    from dp_accounting.pld import privacy_loss_distribution as pld_lib
    from scipy.stats import skellam

    k = np.arange(-int(12 * math.sqrt(variance) + 40), int(12 * math.sqrt(variance) + 41))
    log_pmf = skellam.logpmf(k, variance / 2, variance / 2).tolist()
    # the neighbour's output: the same noise, moved by ``shift``
    pld = pld_lib.from_two_probability_mass_functions(
        dict(zip(k.tolist(), log_pmf)), dict(zip((k + shift).tolist(), log_pmf))
    )
    return pld.self_compose(rounds).get_epsilon_for_delta(delta)


def _pld_gaussian_epsilon(*, variance: float, shift: int, rounds: int, delta: float = DELTA) -> float:
    from dp_accounting.pld import privacy_loss_distribution as pld_lib

    pld = pld_lib.from_gaussian_mechanism(math.sqrt(variance), sensitivity=shift)
    return pld.self_compose(rounds).get_epsilon_for_delta(delta)


@pytest.mark.parametrize(
    "variance,shift,rounds,max_ratio",
    [
        (4.0, 1, 1, 1.7),  # very little noise: the bound's 1/V^2 term costs 66 %
        (25.0, 1, 1, 1.25),
        (100.0, 2, 1, 1.15),
        (400.0, 3, 10, 1.12),
        (1e4, 20, 10, 1.12),
        (100.0, 1, 50, 1.12),
        (2.5e5, 100, 100, 1.12),  # epsilon ~ 10
    ],
)
def test_skellam_epsilon_is_sound_and_close_against_dp_accountings_exact_pld(variance, shift, rounds, max_ratio):
    """Oracle: our accountant (RDP bound + lesson 08's conversion) never claims less than the exact epsilon
    dp_accounting computes from the Skellam pmfs, and is within ``max_ratio`` of it (8-9 % above once the
    variance is in the hundreds, as RDP accounting usually is). Measured ratios: 1.66, 1.19, 1.12, 1.09,
    1.09, 1.09, 1.08."""
    orders = list(D.ORDERS)
    rdp = rounds * D.skellam_rdp(l1=shift, l2=shift, variance=variance, orders=orders)
    ours = dp.rdp_to_epsilon(rdp=rdp, orders=orders, delta=DELTA)[0]
    exact = _pld_epsilon(variance=variance, shift=shift, rounds=rounds)
    assert exact <= ours
    assert ours <= max_ratio * exact


@pytest.mark.parametrize("variance,shift,rounds", [(400.0, 3, 10), (1e4, 20, 10), (100.0, 1, 50), (2.5e5, 100, 100)])
def test_exact_skellam_privacy_is_the_gaussians_at_equal_variance(variance, shift, rounds):
    """Agarwal et al.'s headline (abstract and their PLD evaluation): Skellam noise gives the privacy of
    Gaussian noise of the same variance. Both epsilons from dp_accounting's PLDs agree within 0.2 %
    (measured: 1.8789 vs 1.8793, 2.5950 vs 2.5944, 2.9445 vs 2.9432, 10.0032 vs 9.9973)."""
    sk = _pld_epsilon(variance=variance, shift=shift, rounds=rounds)
    gauss = _pld_gaussian_epsilon(variance=variance, shift=shift, rounds=rounds)
    assert sk == pytest.approx(gauss, rel=2e-3)


def test_a_real_plans_epsilon_is_sound_against_the_pld_of_a_one_coordinate_neighbour():
    """The plan's accountant (rounded sensitivities, survivors' shares, q = 1) bounds the exact epsilon of a
    neighbour that moves one rotated, scaled coordinate by the whole integer L2 sensitivity (a valid
    neighbour after rounding), and is not vacuous (within 1.25x of it, where L1 > L2 costs a little)."""
    plan = small_plan(noise_multiplier=1.0, bits=16)
    v = plan.noise_shares(plan.min_survivors) * plan.local_variance
    shift = int(math.floor(plan.l2_sensitivity))
    ours = D.epsilon(plan, q=1.0, rounds=5, delta=DELTA)
    exact = _pld_epsilon(variance=v, shift=shift, rounds=5)
    assert exact <= ours <= 1.25 * exact


def test_subsampling_sum_with_factor_one_is_the_sampled_gaussian_of_fedlab_dp():
    """The combinatorics oracle: with 3 -> 1 Zhu and Wang's sum is the sampled Gaussian's A_alpha exactly."""
    alphas = np.array(D.ORDERS, dtype=float)
    for q, z in [(0.01, 1.1), (0.1, 0.8), (0.3, 2.0)]:
        base = np.arange(2, int(alphas.max()) + 1) / (2 * z * z)
        got = D._subsampled(q, base, alphas, 1.0)
        np.testing.assert_allclose(got, dp.compute_rdp(q=q, noise_multiplier=z, steps=1, orders=alphas), rtol=1e-9)


def test_general_subsampling_bound_is_above_the_exact_gaussian():
    alphas = np.array(D.ORDERS, dtype=float)
    for q, z in [(0.01, 1.1), (0.1, 0.8)]:
        general = D.poisson_subsampled_rdp(q=q, base_rdp=lambda a, z=z: a / (2 * z * z), orders=alphas)
        exact = dp.compute_rdp(q=q, noise_multiplier=z, steps=1, orders=alphas)
        assert np.all(general >= exact * (1 - 1e-12))
    full = D.poisson_subsampled_rdp(q=1.0, base_rdp=lambda a: a / 2, orders=alphas)
    np.testing.assert_allclose(full, alphas / 2)


def test_distributed_epsilon_approaches_the_central_gaussian_from_above_q1():
    """q = 1: as the ring widens the scale grows, rounding stops mattering and Skellam becomes Gaussian."""
    central = dp.epsilon(q=1.0, noise_multiplier=2.0, steps=50, delta=DELTA, orders=D.ORDERS)
    eps = [D.epsilon(small_plan(noise_multiplier=2.0, bits=b), q=1.0, rounds=50, delta=DELTA) for b in (10, 14, 20, 28)]
    assert all(e >= central for e in eps)
    assert all(a > b for a, b in zip(eps, eps[1:]))  # more bits, larger scale, closer
    assert eps[-1] == pytest.approx(central, rel=1e-3)
    assert eps[0] > 1.02 * central  # at 10 bits the rounding costs something visible


def test_distributed_epsilon_approaches_the_general_sampled_bound_q_below_1():
    q, z, rounds = 0.05, 1.0, 200
    central = dp.epsilon(q=q, noise_multiplier=z, steps=rounds, delta=DELTA)
    general = dp.rdp_to_epsilon(
        rdp=rounds * D.poisson_subsampled_rdp(q=q, base_rdp=lambda a: a / (2 * z * z)), orders=D.ORDERS, delta=DELTA
    )[0]
    wide = D.epsilon(small_plan(noise_multiplier=z, bits=28), q=q, rounds=rounds, delta=DELTA)
    narrow = D.epsilon(small_plan(noise_multiplier=z, bits=12), q=q, rounds=rounds, delta=DELTA)
    assert central < general <= wide < narrow
    assert wide == pytest.approx(general, rel=1e-3)
    assert general < 1.35 * central  # what the general subsampling bound costs over the exact Gaussian one


def test_dropouts_eat_noise():
    plan = small_plan(noise_multiplier=1.0, bits=28, cohort=40, min_survivors=31)
    eps = [D.epsilon(plan, q=1.0, rounds=10, delta=DELTA, survivors=s) for s in (40, 31, 21, 11)]
    assert all(a < b for a, b in zip(eps, eps[1:]))
    # with rounding negligible, s survivors leave s - 1 shares: the noise multiplier z sqrt((s - 1) / 30)
    for s, e in zip((40, 31, 21, 11), eps):
        ref = dp.epsilon(q=1.0, noise_multiplier=math.sqrt((s - 1) / 30), steps=10, delta=DELTA, orders=D.ORDERS)
        assert e == pytest.approx(ref, rel=1e-3)
    assert D.epsilon(plan, q=1.0, rounds=10, delta=DELTA, survivors=1) == math.inf  # no other phone's noise


def test_counting_the_own_share_is_the_papers_convention():
    own = small_plan(count_own_share=True, bits=28)
    other = small_plan(bits=28)
    assert own.local_variance < other.local_variance  # 15 shares instead of 14 carry the same central noise
    assert own.noise_shares(15) == 15 and other.noise_shares(15) == 14
    e_own = D.epsilon(own, q=1.0, rounds=10, delta=DELTA)
    e_other = D.epsilon(other, q=1.0, rounds=10, delta=DELTA)
    assert e_own == pytest.approx(e_other, rel=1e-3)


def test_noise_multiplier_for_reaches_the_target():
    kw = dict(dim=9, clip_norm=1.0, cohort=20, min_survivors=15, bits=16)
    z = D.noise_multiplier_for(epsilon=2.0, delta=DELTA, q=0.05, rounds=100, **kw)
    assert D.epsilon(D.make_plan(noise_multiplier=z, **kw), q=0.05, rounds=100, delta=DELTA) <= 2.0
    assert D.epsilon(D.make_plan(noise_multiplier=z * 0.99, **kw), q=0.05, rounds=100, delta=DELTA) > 2.0
    assert z > dp.noise_multiplier_for(epsilon=2.0, q=0.05, steps=100, delta=DELTA)  # distributed costs noise


# ---- refusal and bad input ------------------------------------------------------------------------


def test_decode_refuses_a_sum_with_too_little_noise():
    plan = small_plan()
    signs = D.rotation_signs(9, rng=0)
    enc = D.encode_cohort(np.zeros((14, 9)), plan=plan, signs=signs, rngs=list(range(14)))
    total = D.modular_sum(enc, bits=plan.bits)
    with pytest.raises(D.NoiseShortfallError, match=r"survivors=14: below plan.min_survivors=15"):
        D.decode(total, plan=plan, signs=signs, survivors=14)
    assert issubclass(D.NoiseShortfallError, ValueError)
    enc = D.encode_cohort(np.zeros((15, 9)), plan=plan, signs=signs, rngs=list(range(15)))
    assert D.decode(D.modular_sum(enc, bits=plan.bits), plan=plan, signs=signs, survivors=15).shape == (9,)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(bits=8, cohort=20000, min_survivors=100), r"bits=8: too small for cohort=20000 .*use bits >= 10"),
        (dict(min_survivors=21), r"min_survivors=21: must be an int in \[2, cohort=20\]"),
        (dict(min_survivors=1), r"min_survivors=1: must be an int in \[2, cohort=20\]"),
        (dict(noise_multiplier=-0.5), r"noise_multiplier=-0.5: must be a finite number >= 0"),
        (dict(bits=40), r"bits=40: must be an int in \[8, 32\]"),
        (dict(beta=1.0), r"beta=1.0: must be a number in \[0, 1\)"),
        (dict(wrap_prob=0.0), r"wrap_prob=0.0: must be a number in \(0, 1\)"),
        (dict(scale=1e9), r"scale=1000000000.0: its wrap-around bound .* allowed: scale <= "),
    ],
)
def test_bad_plans_get_clear_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        small_plan(**kw)


def test_other_bad_input_gets_clear_errors():
    plan = small_plan()
    signs = D.rotation_signs(9, rng=0)
    total = np.zeros(16, dtype=np.uint32)
    with pytest.raises(ValueError, match=r"survivors=21: must be an int in \[0, 20\]"):
        D.decode(total, plan=plan, signs=signs, survivors=21)
    with pytest.raises(ValueError, match=r"variance=-1.0: must be a finite number >= 0"):
        D.skellam_noise(4, variance=-1.0, rng=0)
    with pytest.raises(ValueError, match=r"signs has shape \(8,\)"):
        D.rotate(np.ones(8), signs=np.ones(8) * 2)
    with pytest.raises(ValueError, match=r"x has 10 coordinates per row: must be 9"):
        D.encode_client(np.ones(10), plan=plan, signs=signs, rng=0)
    with pytest.raises(ValueError, match=r"rngs has 2 entries for 3 phones"):
        D.encode_cohort(np.ones((3, 9)), plan=plan, signs=signs, rngs=[0, 1])
    with pytest.raises(ValueError, match=r"x has 1 non-finite"):
        D.encode_client(np.array([np.nan] + [0.0] * 8), plan=plan, signs=signs, rng=0)
    with pytest.raises(ValueError, match=r"orders=.*integer Renyi orders >= 2"):
        D.skellam_rdp(l1=1.0, l2=1.0, variance=1.0, orders=[1.5])


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 12), dim=st.integers(1, 300), bits=st.sampled_from([16, 20, 32]), seed=st.integers(0, 10_000))
def test_property_decode_of_the_sum_is_within_the_rounding_bound_of_the_clipped_sum(n, dim, bits, seed):
    # no noise: the only error is the phones' rounding, < 1 per rotated, scaled coordinate (L2 < sqrt(d') each)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)) * rng.uniform(0.01, 5.0)
    plan = D.make_plan(dim=dim, clip_norm=1.0, noise_multiplier=0.0, cohort=n, min_survivors=2, bits=bits)
    signs = D.rotation_signs(dim, rng=seed)
    enc = D.encode_cohort(x, plan=plan, signs=signs, rngs=[seed + k for k in range(n)])
    got = D.decode(D.modular_sum(enc, bits=bits), plan=plan, signs=signs, survivors=n)
    want = D.clip_rows(x, clip_norm=1.0).sum(axis=0)
    assert np.linalg.norm(got - want) <= n * math.sqrt(plan.padded_dim) / plan.scale + 1e-9


def test_fast_hadamard_paths_agree_with_the_matrix():
    from scipy.linalg import hadamard

    for d in (64, 128, 2048):  # the matrix product, then H_16 plus butterflies
        x = np.random.default_rng(d).standard_normal((3, d))
        np.testing.assert_allclose(D.hadamard(x), x @ hadamard(d) / math.sqrt(d), atol=1e-10)
