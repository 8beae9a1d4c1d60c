"""The lying server and its defence (fedlab.secagg_malicious), run for real.

- the split attack (one group told "u dropped", one told "u survived") unmasks phone u's encoded input exactly
  without the defence, for every 2 <= t <= n - 1 (hypothesis);
- with the defence and t > n/2 it ends with a ConsistencyError raised by a named phone; at t <= n/2 two disjoint
  groups each reach t and it succeeds anyway (why run_round refuses defended=True there);
- honest defended rounds with dropouts at every phase decode exactly, and refuse exactly when < t remain;
- forged, unsigned or substituted messages, too few signatures, hidden phones and second requests: clear errors;
- sybils: a server with n - 1 phones of its own reads the real one's input through a fully defended round; with
  distributed DP the real phone keeps only its own noise share (measured, and against the accountant).
"""

import dataclasses
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedlab import distributed_dp as D
from fedlab import secagg as S
from fedlab import secagg_malicious as M


def _config(n, t, dim=8):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", S.ThresholdWarning)
        return S.Config(num_clients=n, threshold=t, dim=dim)


def _inputs(n, dim=8, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, dim))


def _setup(config, *, defended=True, seed=0):
    """Phones through phases 0-2 with an honest server; returns what a test needs to play the server."""
    n = config.num_clients
    devices = M.device_keys(n, rng=seed)
    phones = [
        M.Phone(u, config=config, devices=devices, defended=defended, rng=np.random.default_rng([seed, u]))
        for u in range(n)
    ]
    roster = tuple(p.advertise() for p in phones)
    inbox = S.route_shares([p.share(roster) for p in phones], config=config)
    x = _inputs(n, config.dim, seed)
    masked = [phones[u].mask(config.encode(x[u]), inbox=inbox[u]) for u in range(n)]
    return dict(devices=devices, phones=phones, roster=roster, inbox=inbox, x=x, masked=masked)


# ---- the attack --------------------------------------------------------------------------------


@st.composite
def _attack_case(draw):
    n = draw(st.integers(3, 7))
    t = draw(st.integers(2, n - 1))
    return n, t, draw(st.integers(0, n - 1)), draw(st.integers(0, 2**31))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_attack_case())
def test_lying_server_unmasks_one_phone_without_the_defence(case):
    n, t, target, seed = case
    config = _config(n, t)
    x = _inputs(n, seed=seed % 1000)
    attack = M.lying_server_attack(x, config=config, target=target, defended=False, rng=seed, seeded_keys=True)
    assert np.array_equal(attack.recovered, config.encode(x[target]))
    assert np.allclose(config.decode(attack.recovered), x[target], atol=2.0**-config.frac_bits)
    assert target not in attack.told_dropped and target in attack.told_survived
    assert len(attack.told_dropped) >= t and len(attack.told_survived) >= t
    assert bool(attack.asked_twice) == (2 * t > n)


def test_the_recovered_vector_is_the_input_not_the_masked_vector():
    config = _config(5, 3, dim=64)
    x = _inputs(5, 64)
    attack = M.lying_server_attack(x, config=config, target=1, defended=False, rng=3, seeded_keys=True)
    r = M.run_round(x, config=config, defended=False, rng=3, seeded_keys=True)
    assert np.array_equal(attack.recovered, config.encode(x[1]))
    assert not np.array_equal(attack.recovered, r.aggregate.sum)  # not the sum: one phone's own update


@pytest.mark.parametrize("n,t", [(3, 2), (5, 3), (6, 4), (7, 4), (8, 6)])
def test_the_defence_stops_the_lie_with_a_protocol_error(n, t):
    config = _config(n, t)
    x = _inputs(n)
    with pytest.raises(M.ConsistencyError) as err:
        M.lying_server_attack(x, config=config, target=0, defended=True, rng=1, seeded_keys=True)
    _, survived = M.split_groups(n, t, 0)
    dropped, _ = M.split_groups(n, t, 0)
    twice = set(dropped) & set(survived)
    assert err.value.phone in twice
    message = str(err.value)
    assert f"phone {err.value.phone} already signed the survivor list" in message
    assert "different stories about who dropped" in message


@pytest.mark.parametrize("n,t", [(4, 2), (6, 3), (8, 4), (9, 3)])
def test_at_t_at_most_half_the_lie_succeeds_even_with_the_consistency_check(n, t):
    """Per Bonawitz et al.: each honest phone signs one list, so two lists both get t signatures only from two
    disjoint groups, 2t <= n. Then every signature and consistency check passes and the phone is unmasked."""
    with pytest.warns(S.ThresholdWarning, match="t > n/2"):
        config = S.Config(num_clients=n, threshold=t, dim=8)
    x = _inputs(n, seed=2)
    attack = M.lying_server_attack(x, config=config, target=n - 1, defended=True, rng=4, seeded_keys=True)
    assert attack.asked_twice == ()
    assert not set(attack.told_dropped) & set(attack.told_survived)
    assert np.array_equal(attack.recovered, config.encode(x[n - 1]))
    with pytest.raises(ValueError, match=rf"threshold={t} .*needs t > {n}/2, i.e. threshold >= {n // 2 + 1}"):
        M.run_round(x, config=config, defended=True, rng=4, seeded_keys=True)


def test_split_groups_are_disjoint_exactly_when_2t_le_n():
    for n in range(3, 12):
        for t in range(2, n):
            for target in (0, n // 2, n - 1):
                dropped, survived = M.split_groups(n, t, target)
                assert len(dropped) == t and len(survived) >= t and target in survived and target not in dropped
                assert set(dropped) | set(survived) == set(range(n))
                assert (not set(dropped) & set(survived)) == (2 * t <= n)


# ---- honest rounds with the defence ---------------------------------------------------------------


@st.composite
def _honest_case(draw):
    n = draw(st.integers(3, 8))
    t = draw(st.integers(n // 2 + 1, n))
    drops = draw(st.dictionaries(st.integers(0, n - 1), st.sampled_from(M.PHASES), max_size=n))
    return n, t, drops, draw(st.integers(0, 2**31)), draw(st.integers(1, 12))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_honest_case())
def test_defended_rounds_with_dropouts_decode_exactly(case):
    n, t, drops, seed, dim = case
    config = S.Config(num_clients=n, threshold=t, dim=dim)
    x = _inputs(n, dim, seed % 1000)
    stage = {u: M.PHASES.index(drops[u]) if u in drops else len(M.PHASES) for u in range(n)}
    sizes = [sum(stage[u] > k for u in range(n)) for k in range(len(M.PHASES))]
    if min(sizes) < t:
        with pytest.raises(S.ThresholdError):
            M.run_round(x, config=config, rng=seed, seeded_keys=True, dropouts=drops)
        return
    r = M.run_round(x, config=config, rng=seed, seeded_keys=True, dropouts=drops)
    u3 = tuple(u for u in range(n) if stage[u] > 2)
    assert r.included == u3
    assert np.array_equal(r.aggregate.sum, S.plain_sum(x, config=config, clients=u3))
    assert r.participants["consistency"] == tuple(u for u in range(n) if stage[u] > 3)
    signers = list(r.participants["consistency"])
    assert np.all(r.consistency_bytes[signers] == S.ID_BYTES + M.SIGNATURE_BYTES)
    assert np.all(np.delete(r.consistency_bytes, signers) == 0)


def test_the_defence_costs_the_same_sum_and_a_signature_per_message():
    config = S.Config(num_clients=6, threshold=4, dim=32)
    x = _inputs(6, 32)
    plain = M.run_round(x, config=config, defended=False, rng=5, seeded_keys=True, dropouts={2: "masked_input"})
    signed = M.run_round(x, config=config, defended=True, rng=5, seeded_keys=True, dropouts={2: "masked_input"})
    lesson07 = S.run_round(x, config=config, rng=5, seeded_keys=True, dropouts={2: "masked_input"})
    assert np.array_equal(plain.aggregate.sum, signed.aggregate.sum)
    assert np.array_equal(plain.aggregate.sum, lesson07.aggregate.sum)
    assert np.array_equal(plain.bytes_sent, lesson07.bytes_sent)  # same messages, same count as lesson 07
    finished = list(signed.participants["unmask"])
    extra = signed.bytes_sent[finished] - plain.bytes_sent[finished]
    assert np.all(extra == 2 * M.SIGNATURE_BYTES + S.ID_BYTES)  # advert signature + consistency message
    assert np.all(signed.consistency_bytes[finished] == S.ID_BYTES + M.SIGNATURE_BYTES)
    assert M.consistency_download_bytes(survivors=5, signers=5) == 5 * S.ID_BYTES + 5 * (S.ID_BYTES + 64)


# ---- forged, unsigned, inconsistent ------------------------------------------------------------------


def _fresh_phones(config, *, seed=0):
    devices = M.device_keys(config.num_clients, rng=seed)
    phones = [
        M.Phone(u, config=config, devices=devices, defended=True, rng=np.random.default_rng([seed, u]))
        for u in range(config.num_clients)
    ]
    return devices, phones, [p.advertise() for p in phones]


def test_an_unsigned_advert_is_rejected_naming_the_phone():
    config = S.Config(num_clients=4, threshold=3, dim=4)
    _, phones, roster = _fresh_phones(config)
    roster[2] = M.SignedAdvert(roster[2].advert, b"")
    with pytest.raises(
        M.SignatureError, match="phone 0 rejects the roster: phone 2's advertised keys carry no signature"
    ) as err:
        phones[0].share(roster)
    assert (err.value.phone, err.value.signer) == (0, 2)


def test_a_key_substituted_by_the_server_is_rejected_naming_the_phone():
    config = S.Config(num_clients=4, threshold=3, dim=4)
    _, phones, roster = _fresh_phones(config)
    _, server_pk = S.keypair(rng=9)  # the server's own key in place of phone 3's: it could read 3's shares
    roster[3] = M.SignedAdvert(dataclasses.replace(roster[3].advert, c_pk=server_pk), roster[3].signature)
    with pytest.raises(
        M.SignatureError, match="phone 3's advertised keys carry a signature that does not verify"
    ) as err:
        phones[1].share(roster)
    assert (err.value.phone, err.value.signer) == (1, 3)


def test_a_signature_from_another_round_is_rejected():
    config = S.Config(num_clients=3, threshold=2, dim=4)
    devices = M.device_keys(3, rng=0)
    old = M.Phone(1, config=config, devices=devices, defended=True, round_id=6, rng=1).advertise()
    phones = [M.Phone(u, config=config, devices=devices, defended=True, round_id=7, rng=u) for u in range(3)]
    roster = [phones[0].advertise(), old, phones[2].advertise()]
    with pytest.raises(M.SignatureError, match="phone 1's advertised keys"):
        phones[0].share(roster)


def _to_consistency(config, seed=0):
    p = _setup(config, seed=seed)
    u3 = tuple(range(config.num_clients))
    sigs = {u: p["phones"][u].sign_survivors(u3).signature for u in u3}
    return p, u3, sigs


def test_a_forged_consistency_signature_is_rejected_naming_signer_and_checker():
    config = S.Config(num_clients=5, threshold=3, dim=4)
    p, u3, sigs = _to_consistency(config)
    forged = dict(sigs)
    forged[4] = sigs[3]  # phone 3's signature passed off as phone 4's
    with pytest.raises(
        M.SignatureError,
        match=r"phone 0 checked phone 4's signature on the survivor list \[0, 1, 2, 3, 4\]: it does not verify",
    ) as err:
        p["phones"][0].unmask(u3, signatures=forged)
    assert (err.value.phone, err.value.signer) == (0, 4)
    assert p["phones"][0].answered == []  # nothing revealed
    r = p["phones"][0].unmask(u3, signatures=sigs)  # the honest bundle still works
    assert len(r.self_mask_shares) == 5


def test_too_few_signatures_on_the_list_are_refused():
    config = S.Config(num_clients=5, threshold=4, dim=4)
    p, u3, sigs = _to_consistency(config)
    few = {u: sigs[u] for u in (0, 1, 2)}
    with pytest.raises(M.ConsistencyError, match=r"phone 1 received only 3 valid signature\(s\) .* needs t = 4") as err:
        p["phones"][1].unmask(u3, signatures=few)
    assert err.value.phone == 1


def test_a_phone_answers_once_and_only_for_the_list_it_signed():
    config = S.Config(num_clients=5, threshold=3, dim=4)
    p, u3, sigs = _to_consistency(config)
    phone = p["phones"][2]
    with pytest.raises(
        M.ConsistencyError,
        match=r"phone 2 is asked to unmask for the survivor list \[0, 1, 2, 3\] but signed \[0, 1, 2, 3, 4\]",
    ):
        phone.unmask((0, 1, 2, 3), signatures=sigs)
    phone.unmask(u3, signatures=sigs)
    with pytest.raises(M.ConsistencyError, match="phone 2 already revealed its shares"):
        phone.unmask(u3, signatures=sigs)


def test_the_undefended_phone_answers_every_request_like_lesson_07():
    config = S.Config(num_clients=4, threshold=3, dim=4)
    p = _setup(config, defended=False)
    phone = p["phones"][1]
    a = phone.unmask((0, 1, 2, 3))
    b = phone.unmask((0, 1, 2))  # "phone 3 dropped": now its mask-key share too
    assert [o for o, _ in a.self_mask_shares] == [0, 1, 2, 3] and a.key_shares == ()
    assert [o for o, _ in b.key_shares] == [3]  # together: both secrets of phone 3
    with pytest.raises(ValueError, match="no consistency round"):
        phone.sign_survivors((0, 1, 2, 3))


def test_a_phone_shown_too_few_peers_refuses_to_mask():
    """The server hides the other phones from phone 0 so its masked input would carry only its self-mask."""
    config = S.Config(num_clients=5, threshold=3, dim=4)
    _, phones, roster = _fresh_phones(config)
    inbox = S.route_shares([p.share(roster) for p in phones], config=config)
    with pytest.raises(
        M.ConsistencyError, match=r"phone 0 received shares from only 1 other phone\(s\): with itself 2 < t = 3"
    ) as err:
        phones[0].mask(config.encode(np.zeros(4)), inbox=inbox[0][:1])
    assert err.value.phone == 0


def test_a_survivor_list_with_phones_it_never_saw_is_refused():
    config = S.Config(num_clients=5, threshold=3, dim=4)
    _, phones, roster = _fresh_phones(config)
    inbox = S.route_shares([p.share(roster) for p in phones], config=config)
    phones[0].mask(config.encode(np.zeros(4)), inbox=[e for e in inbox[0] if e.sender in (1, 2)])
    with pytest.raises(M.ConsistencyError, match=r"phones \[3, 4\] never shared keys with it"):
        phones[0].sign_survivors(range(5))
    with pytest.raises(M.ConsistencyError, match="leaves it out"):
        phones[1].sign_survivors((0, 2, 3))
    with pytest.raises(M.ConsistencyError, match="survivor list of 2 < t = 3"):
        phones[0].sign_survivors((0, 1))


# ---- bad input -------------------------------------------------------------------------------------


def test_bad_inputs_get_clear_errors():
    x = _inputs(5)
    with pytest.raises(ValueError, match="threshold=6: must be at most num_clients=5"):
        S.Config(num_clients=5, threshold=6, dim=8)
    config = S.Config(num_clients=5, threshold=3, dim=8)
    with pytest.raises(ValueError, match="threshold=5 with num_clients=5: this attack needs t <= n - 1"):
        M.lying_server_attack(x, config=S.Config(num_clients=5, threshold=5, dim=8), target=0, defended=False)
    with pytest.raises(ValueError, match=r"target=5: must be a client index in \[0, 4\]"):
        M.lying_server_attack(x, config=config, target=5, defended=False)
    with pytest.raises(ValueError, match="defended='yes': must be True or False"):
        M.run_round(x, config=config, defended="yes")
    with pytest.raises(ValueError, match=r"dropouts\[1\]"):
        M.run_round(x, config=config, dropouts={1: "later"})
    with pytest.raises(ValueError, match=r"inputs has shape \(4, 8\)"):
        M.run_round(x[:4], config=config)
    with pytest.raises(ValueError, match="seeded_keys=True"):
        M.run_round(x, config=config, rng=0)
    with pytest.raises(ValueError, match="devices has 3 keys"):
        M.Phone(0, config=config, devices=M.device_keys(3, rng=0), defended=True)


def test_keys_from_the_os_by_default():
    config = S.Config(num_clients=4, threshold=3, dim=8)
    x = _inputs(4)
    r = M.run_round(x, config=config)
    assert np.array_equal(r.aggregate.sum, S.plain_sum(x, config=config, clients=range(4)))


# ---- sybils ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,real", [(3, 0), (6, 4), (9, 8)])
def test_sybils_read_the_real_phone_through_a_defended_round(n, real):
    config = S.Config(num_clients=n, threshold=n // 2 + 1, dim=16)
    x = _inputs(n, 16, seed=n)
    x[[v for v in range(n) if v != real]] = np.random.default_rng(99).uniform(-1, 1, (n - 1, 16))  # server's choice
    s = M.sybil_attack(x, config=config, real_phone=real, rng=n, seeded_keys=True)
    assert np.array_equal(s.recovered, config.encode(x[real]))
    assert s.round.participants["consistency"] == tuple(range(n))  # every check passed


@pytest.mark.parametrize("min_survivors,own", [(10, False), (50, False), (10, True)])
def test_sybil_guarantee_is_the_real_phones_own_share(min_survivors, own):
    plan = D.make_plan(dim=256, clip_norm=1.0, noise_multiplier=1.2, cohort=60, min_survivors=min_survivors, bits=20,
                       count_own_share=own)  # fmt: skip
    g = M.sybil_guarantee(plan, q=0.05, rounds=50, delta=1e-5)
    shares = min_survivors if own else min_survivors - 1
    assert g.variance_fraction == pytest.approx(1 / shares)
    assert g.noise_multiplier == pytest.approx(1.2 / np.sqrt(shares))
    assert g.real_variance == pytest.approx(plan.local_variance)
    # oracle: the accountant itself, counting exactly one share (the real phone's) and no sampling
    one = dataclasses.replace(plan, count_own_share=True)
    assert g.epsilon == pytest.approx(D.epsilon(one, q=1.0, rounds=50, delta=1e-5, survivors=1), rel=1e-12)
    assert g.planned_epsilon == pytest.approx(D.epsilon(plan, q=0.05, rounds=50, delta=1e-5))
    assert g.epsilon > 10 * g.planned_epsilon


def test_sybils_see_the_real_phones_noise_share_alone_measured():
    """End to end with distributed DP: the sybils' vectors (noise included) are the server's, so subtracting them
    leaves the real phone's encoded vector; with a zero update that is its Skellam share, of variance mu."""
    plan = D.make_plan(dim=4096, clip_norm=1.0, noise_multiplier=1.0, cohort=20, min_survivors=16, bits=24)
    signs = D.rotation_signs(plan.dim, rng=0)
    updates = np.random.default_rng(1).normal(size=(20, plan.dim)) * 0.01
    updates[7] = 0.0  # the real phone (a zero update rounds to exactly 0, so what is left is noise)
    encoded = D.encode_cohort(updates, plan=plan, signs=signs, rngs=list(range(100, 120)))
    total = D.modular_sum(encoded, bits=plan.bits)  # what secure aggregation reveals
    sybils = np.delete(encoded, 7, axis=0)
    left = D.centered(S._reduce((total - D.modular_sum(sybils, bits=plan.bits)).astype(np.uint32), plan.bits),
                      bits=plan.bits)  # fmt: skip
    g = M.sybil_guarantee(plan, q=1.0, rounds=1, delta=1e-5)
    measured = float(np.var(left))
    assert measured == pytest.approx(g.real_variance, rel=0.1)  # 4096 coordinates: ~2% standard error
    assert measured / g.planned_variance == pytest.approx(1 / 15, rel=0.1)


# ---- the other lie: hiding the other phones from the target ------------------------------------------------


@pytest.mark.parametrize("n,t", [(3, 3), (5, 3), (5, 5), (7, 6)])
def test_isolation_unmasks_the_target_at_any_threshold_without_the_defence(n, t):
    config = S.Config(num_clients=n, threshold=t, dim=8)
    x = _inputs(n, seed=t)
    recovered = M.isolation_attack(x, config=config, target=1, defended=False, rng=t, seeded_keys=True)
    assert np.array_equal(recovered, config.encode(x[1]))
    with pytest.raises(M.ConsistencyError, match=r"phone 1 received shares from only 0 other phone\(s\)") as err:
        M.isolation_attack(x, config=config, target=1, defended=True, rng=t, seeded_keys=True)
    assert err.value.phone == 1
