"""Secure aggregation (fedlab.secagg): property tests of the whole protocol, known answers, bad inputs.

- the unmasked sum equals the plain fixed-point sum exactly, for random n, t, dimensions, graphs and dropout
  sets at every phase; the protocol refuses exactly when fewer than t clients (or shares) remain;
- one masked vector alone is statistically indistinguishable from uniform;
- a dropped client's masks come back from t shares and not from t - 1;
- known answers: Shamir (the Wikipedia example), Lagrange coefficients, ChaCha20 (RFC 8439), X25519 (RFC 7748);
- bad inputs (t > n, t < 2, mismatched lengths, forged shares, overflow) raise clear errors.
"""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedlab import secagg as S

CHI2_15_1E6 = 56.49  # chi-square, 15 degrees of freedom, upper 1e-6 tail


# ---- helpers ------------------------------------------------------------------------------------


def _protocol(config, x, *, rng=0):
    """Run phases 0-1 for everyone; return what phases 2-3 need."""
    gen = np.random.default_rng(rng)
    keys, adverts = zip(*[S.advertise_keys(u, config=config, rng=gen) for u in range(config.num_clients)])
    roster = S.collect_keys(adverts, config=config)
    secrets, share_msgs = zip(*[S.share_keys(k, roster, config=config, rng=gen) for k in keys])
    inbox = S.route_shares(share_msgs, config=config)
    return dict(keys=keys, roster=roster, secrets=secrets, share_msgs=share_msgs, inbox=inbox)


def _mask(p, config, x, clients):
    return [
        S.mask_input(p["secrets"][u], config.encode(x[u]), roster=p["roster"], inbox=p["inbox"][u], config=config)
        for u in clients
    ]


def _answers(p, config, survivors, clients):
    return [
        S.unmask_shares(p["secrets"][u], inbox=p["inbox"][u], roster=p["roster"], survivors=survivors, config=config)
        for u in clients
    ]


def _unmask(p, config, masked, answers):
    return S.unmask(masked, answers, roster=p["roster"], share_messages=p["share_msgs"], config=config)


def _expected_ok(config, drops):
    """Whether the protocol must succeed: every phase keeps >= t clients and every needed secret >= t holders."""
    n, t = config.num_clients, config.threshold
    phase = {u: S.PHASES.index(drops[u]) if u in drops else len(S.PHASES) for u in range(n)}
    u1, u2, u3, u4 = ({u for u in range(n) if phase[u] > k} for k in range(4))
    holders = [set(config.holders(u)) for u in range(n)]
    return (
        len(u1) >= t
        and all(len(holders[u] & u1) >= t for u in u2)
        and min(len(u2), len(u3), len(u4)) >= t
        and all(len(holders[u] & u4) >= t for u in u2)
    )


def _chi2(values, shift):
    counts = np.bincount(((values.astype(np.uint64) >> np.uint64(shift)) & np.uint64(15)).astype(np.int64),
                         minlength=16)  # fmt: skip
    expected = values.size / 16
    return float(((counts - expected) ** 2 / expected).sum())


# ---- the whole protocol: property tests --------------------------------------------------------


@st.composite
def rounds(draw, *, graph):
    n = draw(st.integers(3, 9))
    d = draw(st.integers(1, 40))
    if graph:
        k = draw(st.sampled_from([k for k in (2, 4, 6) if k < n - 1] or [2]))
        neighbours = S.neighbour_graph(n, k=k, rng=draw(st.integers(0, 1000)))
        t = draw(st.integers(2, min(len(r) for r in neighbours) + 1))
    else:
        neighbours, t = None, draw(st.integers(2, n))
    phases = st.sampled_from([None, *S.PHASES])
    drops = {u: p for u, p in enumerate(draw(st.lists(phases, min_size=n, max_size=n))) if p is not None}
    seed = draw(st.integers(0, 2**32 - 1))
    x = np.random.default_rng(seed).uniform(-1.5, 1.5, size=(n, d))  # some values outside the clip range
    config = S.Config(num_clients=n, threshold=t, dim=d, clip=1.0, neighbours=neighbours)
    return config, x, drops, seed


def _check_round(config, x, drops, seed):
    if not _expected_ok(config, drops):
        with pytest.raises(S.ThresholdError, match="threshold is t = "):
            S.run_round(x, config=config, rng=seed, seeded_keys=True, dropouts=drops)
        refused = S.run_round(x, config=config, rng=seed, seeded_keys=True, dropouts=drops, on_refusal="return")
        assert refused.sum is None and "t = " in refused.refusal
        return
    r = S.run_round(x, config=config, rng=seed, seeded_keys=True, dropouts=drops)
    want_included = tuple(u for u in range(config.num_clients) if drops.get(u) in (None, "unmask"))
    assert r.included == want_included
    assert np.array_equal(r.aggregate.sum, S.plain_sum(x, config=config, clients=r.included))
    clipped = np.clip(x[list(r.included)], -1, 1).sum(axis=0)
    assert np.max(np.abs(r.sum - clipped)) <= len(r.included) * 2.0 ** -(config.frac_bits + 1) + 1e-12
    assert set(r.aggregate.recovered_keys) == {u for u, p in drops.items() if p == "masked_input"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds(graph=False))
def test_full_graph_sum_is_exact_or_refused(case):
    _check_round(*case)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds(graph=True))
def test_neighbour_graph_sum_is_exact_or_refused(case):
    _check_round(*case)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(4, 7), bits=st.sampled_from([8, 16, 24, 32, 48, 64]), seed=st.integers(0, 1000))
def test_other_rings_are_exact_too(n, bits, seed):
    x = np.random.default_rng(seed).uniform(-1, 1, size=(n, 5))
    config = S.Config(num_clients=n, threshold=2, dim=5, bits=bits, clip=1.0)
    r = S.run_round(x, config=config, rng=seed, seeded_keys=True, dropouts={0: "masked_input", 1: "unmask"})
    assert r.aggregate.sum.dtype == S.ring_dtype(bits)
    assert np.array_equal(r.aggregate.sum, S.plain_sum(x, config=config, clients=r.included))


def test_os_urandom_round_is_exact_and_fresh():
    x = np.random.default_rng(0).uniform(-1, 1, size=(6, 30))
    config = S.Config(num_clients=6, threshold=3, dim=30)
    a = S.run_round(x, config=config, rng=None, dropouts={2: "masked_input"})
    b = S.run_round(x, config=config, rng=None, dropouts={2: "masked_input"})
    assert np.array_equal(a.aggregate.sum, b.aggregate.sum)
    assert not np.array_equal(a.masked[0], b.masked[0])  # fresh keys and seeds every round


def test_seeded_round_is_deterministic_per_client():
    x = np.random.default_rng(1).uniform(-1, 1, size=(5, 8))
    config = S.Config(num_clients=5, threshold=3, dim=8)
    a = S.run_round(x, config=config, rng=7, seeded_keys=True)
    b = S.run_round(x, config=config, rng=7, seeded_keys=True, dropouts={4: "unmask"})
    for u in range(5):
        np.testing.assert_array_equal(a.masked[u], b.masked[u])  # a later dropout changes nobody's vector
    c = S.run_round(x, config=config, rng=8, seeded_keys=True)
    assert not np.array_equal(a.masked[0], c.masked[0])


# ---- each masked vector looks uniform ----------------------------------------------------------


@pytest.mark.parametrize("value", [0.0, 1.0, -0.5])
def test_one_masked_vector_is_indistinguishable_from_uniform(value):
    d = 8192
    x = np.full((4, d), value)
    config = S.Config(num_clients=4, threshold=2, dim=d)
    r = S.run_round(x, config=config, rng=11, seeded_keys=True)
    for u, y in r.masked.items():
        for shift in (0, 12, 28):  # low, middle and top bits: 16 equally likely values each
            assert _chi2(y, shift) < CHI2_15_1E6, (u, shift)
        assert abs(float(np.mean(y / 2.0**32)) - 0.5) < 5 * np.sqrt(1 / 12 / d)
    assert not np.array_equal(r.masked[0], r.masked[1])


def test_masks_cancel_and_prg_vectors_are_uniform():
    seeds = {v: bytes([v]) * 32 for v in (1, 2)}
    x = np.zeros(4096, np.uint32)
    assert _chi2(S.prg(seeds[1], 4096), 28) < CHI2_15_1E6
    y0 = S.mask_vector(x, client=0, pair_seeds={1: seeds[1]}, self_seed=None)
    y1 = S.mask_vector(x, client=1, pair_seeds={0: seeds[1]}, self_seed=None)
    np.testing.assert_array_equal(y0 + y1, x)


# ---- dropout recovery needs t shares --------------------------------------------------------------


def test_dropped_clients_masks_come_back_from_t_shares_only():
    n, t, d = 6, 4, 10
    config = S.Config(num_clients=n, threshold=t, dim=d)
    x = np.random.default_rng(2).uniform(-1, 1, size=(n, d))
    p = _protocol(config, x)
    masked = _mask(p, config, x, range(5))  # client 5 dropped before its masked input
    survivors = S.collect_masked(masked, config=config)
    answers = _answers(p, config, survivors, survivors)
    agg = _unmask(p, config, masked, answers)
    assert agg.recovered_keys == (5,)
    assert np.array_equal(agg.sum, S.plain_sum(x, config=config, clients=range(5)))
    # exactly t answers (one survivor gone after sending): still exact
    agg_t = _unmask(p, config, masked, answers[:t])
    assert np.array_equal(agg_t.sum, agg.sum)
    # t answers, but one of them withholds its share of client 5's key: t - 1 shares -> refused
    short = dataclasses.replace(answers[0], key_shares=())
    with pytest.raises(S.ThresholdError, match="only 3 of client 5's share holders .* mask key"):
        _unmask(p, config, masked, [short, *answers[1:t]])
    # and t - 1 answers in all -> refused before any reconstruction
    with pytest.raises(S.ThresholdError, match="only 3 client"):
        _unmask(p, config, masked, answers[: t - 1])


def test_t_minus_one_shares_do_not_determine_the_secret():
    secret = S.random_field_element(rng=3)
    shares = S.shamir_share(secret, threshold=4, xs=[1, 2, 3, 4, 5, 6], rng=4)
    for subset in ([0, 1, 2, 3], [2, 3, 4, 5], [0, 2, 4, 5]):
        assert S.shamir_reconstruct([shares[i] for i in subset], threshold=4) == secret
    with pytest.raises(S.ThresholdError, match="at least threshold=4"):
        S.shamir_reconstruct(shares[:3], threshold=4)
    assert S.shamir_reconstruct(shares[:3], threshold=3) != secret  # interpolating t - 1 shares gives junk
    # every candidate secret is consistent with t - 1 = 2 shares (small field, exhaustive)
    p, two = 101, [(1, 40), (2, 77)]
    lam = S.lagrange_coefficients((0, 1, 2), at=3, prime=p)
    for s in range(p):
        third = (3, (lam[0] * s + lam[1] * 40 + lam[2] * 77) % p)
        assert S.shamir_reconstruct([*two, third], threshold=3, prime=p) == s


@settings(max_examples=25, deadline=None)
@given(
    t=st.integers(2, 8),
    extra=st.integers(0, 4),
    secret=st.integers(0, S.PRIME - 1),
    seed=st.integers(0, 2**32 - 1),
)
def test_shamir_roundtrip_from_any_t_shares(t, extra, secret, seed):
    xs = list(np.random.default_rng(seed).choice(np.arange(1, 200), size=t + extra, replace=False))
    shares = S.shamir_share(secret, threshold=t, xs=[int(v) for v in xs], rng=seed)
    order = np.random.default_rng(seed + 1).permutation(len(shares))
    assert S.shamir_reconstruct([shares[i] for i in order], threshold=t) == secret
    assert S.shamir_reconstruct([shares[i] for i in order[:t]], threshold=t) == secret


# ---- known answers --------------------------------------------------------------------------------


def test_shamir_known_answer():
    wiki = [(1, 1494), (2, 329), (3, 965), (4, 176), (5, 1188), (6, 775)]  # f(x) = 1234 + 166x + 94x^2 mod 1613
    assert S.shamir_reconstruct(wiki[:3], threshold=3, prime=1613) == 1234
    assert S.shamir_reconstruct(wiki[3:], threshold=3, prime=1613) == 1234
    assert S.shamir_reconstruct(wiki, threshold=3, prime=1613) == 1234  # 6 consistent shares
    assert S.lagrange_coefficients((1, 2, 3), at=0, prime=1613) == (3, 1613 - 3, 1)
    assert S.shamir_reconstruct([(1, 10), (2, 17)], threshold=2, prime=101) == 3


def test_chacha20_prg_known_answer():
    # RFC 8439, A.1 test vector 1: key 0, nonce 0, counter 0 -> keystream 76 b8 e0 ad a0 f1 3d 90 ...
    assert S.prg(bytes(32), 2).tolist() == [0xADE0B876, 0x903DF1A0]
    assert S.prg(bytes(32), 1, bits=64).tolist() == [0x903DF1A0ADE0B876]
    assert S.prg(bytes(32), 2, bits=16).tolist() == [0xB876, 0xF1A0]


def test_x25519_known_answer():
    # RFC 7748, section 6.1
    alice = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    bob = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    assert S.public_key(alice).hex() == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    assert S.pairwise_seed(alice, S.public_key(bob), me=0, peer=1) == S.pairwise_seed(
        bob, S.public_key(alice), me=1, peer=0
    )
    assert S.pairwise_seed(alice, S.public_key(bob), me=0, peer=1) != S.pairwise_seed(
        alice, S.public_key(bob), me=0, peer=2
    )  # bound to the pair


def test_fixed_point_known_answers_and_capacity():
    q = S.fixed_point_encode(np.array([0.5, -0.25, 0.7, -0.7, 3.0, -7.0]), clip=1.0, frac_bits=2)
    assert q.dtype == np.uint32
    assert q.tolist() == [2, 2**32 - 1, 3, 2**32 - 3, 4, 2**32 - 4]
    np.testing.assert_array_equal(S.fixed_point_decode(q, frac_bits=2), [0.5, -0.25, 0.75, -0.75, 1.0, -1.0])
    assert S.max_frac_bits(num_clients=100, clip=1.0) == 24  # the benchmark's choice
    assert S.max_frac_bits(num_clients=128, clip=1.0) == 23  # 128 * 2^24 = 2^31 would wrap
    assert S.max_frac_bits(num_clients=10, clip=1.0, bits=64) == 59
    S.check_capacity(num_clients=100, clip=1.0, frac_bits=24)
    with pytest.raises(S.CapacityError, match="100 \\* 1 \\* 2\\^25 .* exceeds 2\\^31 - 1.* frac_bits <= 24"):
        S.check_capacity(num_clients=100, clip=1.0, frac_bits=25)
    with pytest.raises(S.CapacityError, match="frac_bits=0"):
        S.max_frac_bits(num_clients=10, clip=2.0**30)


@settings(max_examples=30, deadline=None)
@given(bits=st.integers(8, 64), seed=st.integers(0, 10_000), n=st.integers(1, 50))
def test_fixed_point_sum_decodes_within_rounding(bits, seed, n):
    f = S.max_frac_bits(num_clients=n, clip=1.0, bits=bits)
    x = np.random.default_rng(seed).uniform(-1, 1, size=(n, 7))
    total = np.zeros(7, S.ring_dtype(bits))
    for row in x:
        total += S.fixed_point_encode(row, clip=1.0, frac_bits=f, bits=bits)
    if bits not in (32, 64):
        total &= total.dtype.type((1 << bits) - 1)
    err = np.abs(S.fixed_point_decode(total, frac_bits=f, bits=bits) - x.sum(axis=0))
    assert err.max() <= n * 2.0 ** -(f + 1) + 1e-9


def test_additive_shares():
    x = np.array([0, 1, 2**32 - 1, 123456789], dtype=np.uint32)
    shares = S.additive_shares(x, n=5, rng=0)
    assert shares.shape == (5, 4) and shares.dtype == np.uint32
    np.testing.assert_array_equal(S.additive_reconstruct(shares), x)
    np.testing.assert_array_equal(S.additive_shares(x, n=1, rng=0)[0], x)
    big = S.additive_shares(np.zeros(4096, np.uint32), n=3, rng=1)
    assert all(_chi2(big[i], 28) < CHI2_15_1E6 for i in range(2))
    np.testing.assert_array_equal(S.additive_shares(np.array([-1, 3]), n=2, rng=2, bits=16).sum(0) & 0xFFFF,
                                  [0xFFFF, 3])  # fmt: skip


def test_neighbour_graph_is_regular_and_symmetric():
    g = S.neighbour_graph(100, k=14, rng=0)
    assert all(len(row) == 14 for row in g)
    assert all(u in g[v] for u in range(100) for v in g[u])
    assert g != S.neighbour_graph(100, k=14, rng=1)
    assert S.neighbour_graph(9, k=8, rng=0) == S.full_graph(9)


def test_communication_is_close_to_raw_float32():
    n, d = 20, 20_000
    x = np.random.default_rng(0).uniform(-1, 1, size=(n, d))
    graph = S.neighbour_graph(n, k=8, rng=0)
    r = S.run_round(x, config=S.Config(num_clients=n, threshold=5, dim=d, neighbours=graph), rng=0, seeded_keys=True)
    per_client = r.bytes_sent[0]
    # 68 (keys) + 36 + 8 * 96 (shares) + 4 + 4d (masked input) + 4 + 9 * 36 (unmasking)
    assert per_client == 68 + 36 + 8 * 96 + 4 + 4 * d + 4 + 9 * 36
    assert S.expansion(r, config=S.Config(num_clients=n, threshold=5, dim=d, neighbours=graph)) < 1.02


# ---- bad inputs ------------------------------------------------------------------------------------


def test_bad_configs_are_refused_with_the_name():
    with pytest.raises(ValueError, match="threshold=7: must be at most num_clients=6"):
        S.Config(num_clients=6, threshold=7, dim=3)
    with pytest.raises(ValueError, match="threshold=1: must be an int >= 2"):
        S.Config(num_clients=6, threshold=1, dim=3)
    with pytest.raises(ValueError, match="threshold=6: must be at most 5, the fewest share holders"):
        S.Config(num_clients=10, threshold=6, dim=3, neighbours=S.neighbour_graph(10, k=4, rng=0))
    with pytest.raises(ValueError, match="k=5: must be even"):
        S.neighbour_graph(10, k=5, rng=0)
    with pytest.raises(ValueError, match="not symmetric"):
        S.Config(num_clients=3, threshold=2, dim=1, neighbours=((1,), (0, 2), (0,)))
    with pytest.raises(ValueError, match="dim=0"):
        S.Config(num_clients=3, threshold=2, dim=0)
    with pytest.raises(S.CapacityError, match="wrap around"):
        S.Config(num_clients=100, threshold=2, dim=1, frac_bits=25)
    with pytest.raises(ValueError, match="bits=4"):
        S.Config(num_clients=3, threshold=2, dim=1, bits=4)


def test_mismatched_lengths_and_types_are_refused():
    config = S.Config(num_clients=4, threshold=2, dim=5)
    with pytest.raises(ValueError, match=r"inputs has shape \(4, 6\): must be \(num_clients, dim\) = \(4, 5\)"):
        S.run_round(np.zeros((4, 6)), config=config, rng=0, seeded_keys=True)
    with pytest.raises(ValueError, match="dropouts\\[1\\]='lunch'"):
        S.run_round(np.zeros((4, 5)), config=config, rng=0, seeded_keys=True, dropouts={1: "lunch"})
    p = _protocol(config, np.zeros((4, 5)))
    with pytest.raises(ValueError, match="client 0's input has 6 entries: config.dim is 5"):
        S.mask_input(p["secrets"][0], np.zeros(6, np.uint32), roster=p["roster"], inbox=p["inbox"][0], config=config)
    with pytest.raises(ValueError, match="encode floats first"):
        S.mask_input(p["secrets"][0], np.zeros(5), roster=p["roster"], inbox=p["inbox"][0], config=config)
    masked = _mask(p, config, np.zeros((4, 5)), range(4))
    bad = dataclasses.replace(masked[1], y=masked[1].y[:4])
    with pytest.raises(ValueError, match=r"client 1's masked input has shape \(4,\)"):
        S.collect_masked([masked[0], bad, *masked[2:]], config=config)
    with pytest.raises(ValueError, match="x has shape"):
        config.encode(np.zeros(3))
    with pytest.raises(ValueError, match="non-finite"):
        S.fixed_point_encode(np.array([0.0, np.nan]), clip=1.0, frac_bits=4)
    with pytest.raises(ValueError, match="seed is 31 bytes"):
        S.prg(bytes(31), 4)


def test_forged_shares_are_caught():
    n, d = 5, 6
    config = S.Config(num_clients=n, threshold=3, dim=d)
    x = np.random.default_rng(5).uniform(-1, 1, size=(n, d))
    p = _protocol(config, x)
    masked = _mask(p, config, x, range(4))  # client 4 dropped before its masked input
    survivors = S.collect_masked(masked, config=config)
    answers = _answers(p, config, survivors, survivors)

    def forge(answer, field):
        shares = getattr(answer, field)
        (owner, value), rest = shares[0], shares[1:]
        return dataclasses.replace(answer, **{field: ((owner, (value + 1) % S.PRIME), *rest)})

    # more than t shares: they do not lie on one polynomial
    with pytest.raises(S.ShareError, match="do not lie on one polynomial"):
        _unmask(p, config, masked, [forge(answers[0], "self_mask_shares"), *answers[1:]])
    # exactly t shares: the commitment to b catches it
    with pytest.raises(S.ShareError, match="does not match its commitment"):
        _unmask(p, config, masked, [forge(answers[0], "self_mask_shares"), *answers[1:3]])
    # a forged share of a dropped client's mask key: its advertised public key catches it
    with pytest.raises(S.ShareError, match="client 4's rebuilt mask key does not match its advertised public key"):
        _unmask(p, config, masked, [forge(answers[0], "key_shares"), *answers[1:3]])
    # any nonzero change to one of exactly t shares is caught, for either secret
    for delta in (1, 2, 3, 5, 8, 16, S.PRIME - 1):
        for i in range(3):
            for field in ("self_mask_shares", "key_shares"):
                shares = getattr(answers[i], field)
                forged = dataclasses.replace(answers[i], **{field: tuple(
                    (o, (v + delta) % S.PRIME if o == shares[0][0] else v) for o, v in shares)})
                trio = [forged if j == i else answers[j] for j in range(3)]
                with pytest.raises(S.ShareError, match="commitment|public key"):
                    _unmask(p, config, masked, trio)
    # a share tampered with in transit fails authentication at the receiver
    inbox = list(p["inbox"][0])
    ct = bytearray(inbox[0].ciphertext)
    ct[10] ^= 1
    inbox[0] = dataclasses.replace(inbox[0], ciphertext=bytes(ct))
    with pytest.raises(S.ShareError, match="failed authentication"):
        S.unmask_shares(p["secrets"][0], inbox=inbox, roster=p["roster"], survivors=survivors, config=config)
    # two different shares at one x
    with pytest.raises(S.ShareError, match="two different shares at x=1"):
        S.shamir_reconstruct([(1, 5), (1, 6), (2, 7)], threshold=2, prime=101)
    # a client never reveals both secrets of the same owner
    both = dataclasses.replace(answers[0], key_shares=((1, 5),))
    with pytest.raises(ValueError, match="revealed both secrets of clients \\[1\\]"):
        _unmask(p, config, masked, [both, *answers[1:]])


def test_math_module_imports_no_widgets():
    code = "import sys, fedlab.secagg; print(any(m.startswith(('ipywidgets', 'matplotlib', 'IPython', 'torch')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- keys from the OS; seeded keys only on request; bad public keys; the lying-server threshold ----------


def test_two_rounds_with_the_same_seed_would_let_the_server_read_a_change_of_input():
    """The attack the default closes: same seed, two inputs -> masked difference = encoded difference."""
    config = S.Config(num_clients=4, threshold=3, dim=5, clip=1.0, frac_bits=10)
    rng = np.random.default_rng(0)
    x1 = rng.uniform(-0.2, 0.2, (4, 5))
    x2 = x1.copy()
    x2[1] += 0.1  # client 1 changed its update
    a = S.run_round(x1, config=config, rng=7, seeded_keys=True)
    with pytest.warns(S.KeyReuseWarning, match="rng=7"):
        b = S.run_round(x2, config=config, rng=7, seeded_keys=True)
    diff = S._reduce(b.masked[1].astype(np.int64) - a.masked[1].astype(np.int64), config.bits)
    assert np.array_equal(diff, S._reduce(config.encode(x2[1]).astype(np.int64) - config.encode(x1[1]).astype(np.int64),
                                          config.bits))
    # by default the keys come from os.urandom: the same difference is noise
    c = S.run_round(x1, config=config)
    d = S.run_round(x2, config=config)
    assert np.array_equal(c.sum, a.sum) and np.array_equal(d.sum, b.sum)  # the sums are exact either way
    diff2 = S._reduce(d.masked[1].astype(np.int64) - c.masked[1].astype(np.int64), config.bits)
    assert not np.array_equal(diff2, diff)


def test_a_seed_needs_the_teaching_flag():
    config = S.Config(num_clients=3, threshold=2, dim=2)
    with pytest.raises(ValueError, match="rng=3: a seed makes every key"):
        S.run_round(np.zeros((3, 2)), config=config, rng=3)
    with pytest.raises(ValueError, match="seeded_keys=True needs rng="):
        S.run_round(np.zeros((3, 2)), config=config, seeded_keys=True)


def test_replaying_the_same_inputs_under_seeded_keys_does_not_warn():
    import warnings

    config = S.Config(num_clients=3, threshold=2, dim=2)
    x = np.full((3, 2), 0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("error", S.KeyReuseWarning)
        S.run_round(x, config=config, rng=12345, seeded_keys=True)
        S.run_round(x, config=config, rng=12345, seeded_keys=True, dropouts={0: "unmask"})


@pytest.mark.parametrize(
    "bad",
    [
        bytes(32),
        (1).to_bytes(32, "little"),
        bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
        bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
        (2**255 - 20).to_bytes(32, "little"),
        (2**255 - 19).to_bytes(32, "little"),  # p itself = 0
        ((1 << 255) | 0).to_bytes(32, "little"),  # 0 with the ignored top bit set
    ],
)
def test_collect_keys_rejects_low_order_public_keys_naming_the_client(bad):
    config = S.Config(num_clients=3, threshold=2, dim=2)
    adverts = [S.advertise_keys(u, config=config, rng=u)[1] for u in range(3)]
    import dataclasses

    adverts[2] = dataclasses.replace(adverts[2], s_pk=bad)
    with pytest.raises(ValueError, match="client 2's s_pk.*low-order"):
        S.collect_keys(adverts, config=config)
    S.collect_keys([S.advertise_keys(u, config=config, rng=u)[1] for u in range(3)], config=config)  # honest: fine


def test_threshold_at_most_half_warns_about_a_lying_server():
    import warnings

    with pytest.warns(S.ThresholdWarning, match="t > n/2"):
        S.Config(num_clients=10, threshold=5, dim=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", S.ThresholdWarning)
        S.Config(num_clients=10, threshold=6, dim=2)


def test_run_round_on_encoded_ring_vectors_sums_them_mod_2_bits():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 2**12, size=(5, 7)).astype(S.ring_dtype(12))
    cfg = S.Config(num_clients=5, threshold=3, dim=7, clip=1.0, frac_bits=0, bits=12)
    res = S.run_round(x, config=cfg, rng=9, seeded_keys=True, dropouts={2: "share"}, encoded=True)
    assert res.included == (0, 1, 3, 4)
    np.testing.assert_array_equal(res.sum, x[[0, 1, 3, 4]].astype(np.int64).sum(0) % 2**12)
    with pytest.raises(ValueError, match=r"inputs\[0\] has dtype float64"):
        S.run_round(x.astype(float), config=cfg, rng=10, seeded_keys=True, encoded=True)
    with pytest.raises(ValueError, match="encoded='yes'"):
        S.run_round(x, config=cfg, rng=10, seeded_keys=True, encoded="yes")
