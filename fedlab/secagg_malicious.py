"""When the server lies: the malicious-server secure aggregation of Bonawitz et al. (2017), attacks and defence.

Lesson 07's protocol (:mod:`fedlab.secagg`) assumes a *semi-honest* server: it studies what it gets
but follows the protocol. Bonawitz et al. (2017, "Practical Secure Aggregation for Privacy-Preserving
Machine Learning", CCS; Fig. 4 with its active-adversary parts) also protect against a server
that *lies*. This module runs the lies and the defence, with the same cryptography and messages as
:mod:`fedlab.secagg` (whose API it leaves unchanged).

The lie (:func:`lying_server_attack`)
-------------------------------------
Every phone ``v`` holds a Shamir share of two secrets of phone ``u``: its mask key ``s_u^SK`` (revealed
when the server says ``u`` dropped before sending its masked input, to cancel ``u``'s pairwise masks) and
its self-mask seed ``b_u`` (revealed when the server says ``u`` survived, to remove ``PRG(b_u)``). With
``t`` shares of *both* the server strips every mask from ``y_u`` and reads ``x_u``. The lying server
tells a group of phones "``u`` dropped" and another "``u`` survived". Lesson 07's ``unmask_shares`` is a
pure function of the survivor list it is given, so a phone built on it answers every request; when the
two groups cannot be disjoint (``t > n/2``), the server simply asks some phones again with the other
list (a "resend"). The attack then works for every ``2 <= t <= n - 1``.

The defence (``defended=True``: :class:`Phone`, :func:`run_round`)
------------------------------------------------------------------
As in the paper, every phone has a long-term **Ed25519 device key** whose public half the phones know
from a trusted directory (the paper's PKI; here :func:`device_keys`). Then:

1. **Signed keys.** Each phone signs its advertised X25519 keys; a phone refuses a roster with a missing
   or bad signature (:class:`SignatureError` naming the phone whose keys were forged). Without this the
   server could hand out keys of its own and read every share (a man in the middle).
2. **A big enough view.** A phone refuses to mask when it received shares from fewer than ``t - 1``
   others (the paper's ``|U2| >= t`` check): otherwise the server could hide the other phones from
   ``u``, so that ``y_u`` carries only the self-mask, which an honest unmasking reveals
   (:func:`isolation_attack`: against lesson 07's phones this works at every threshold, ``t = n`` too).
3. **The consistency round** (new phase ``"consistency"``, between ``"masked_input"`` and ``"unmask"``).
   The server sends every survivor the survivor list ``U3``; each phone checks that it is in it, that it
   has at least ``t`` phones and that all of them shared keys with it, and signs it - **once**: asked to
   sign a different list, it refuses (:class:`ConsistencyError`). To unmask, the server must show each
   phone at least ``t`` valid signatures of phones in ``U3`` on *the list that phone signed*; a bad
   signature raises :class:`SignatureError` naming the signer and the phone that caught it.
4. **Once only.** A phone answers one unmasking request: it never reveals an ``s^SK`` share and a ``b``
   share of the same phone.

Dropouts still work: a phone that drops at ``"consistency"`` is in the sum (its masked input arrived)
but neither signs nor reveals.

What is true about the threshold (tested in ``tests/test_secagg_malicious.py``)
------------------------------------------------------------------------------
Each honest phone signs one list and needs ``t`` signatures on it, so two different lists can both be
accepted only if two *disjoint* groups of phones reach ``t`` each: ``2 t <= n`` (with ``c`` phones that
collude with the server and sign anything, ``2 t <= n + c``; a threshold of about ``2n/3`` with fewer
than ``n/3`` colluders, the setting of the paper's active-adversary analysis, meets it). So:

- ``t > n/2``: the lie ends with a :class:`ProtocolError` raised by the phone that detected it;
- ``t <= n/2``: two disjoint groups each reach ``t``, every check passes, and the attack **succeeds even
  with the consistency check** (:func:`lying_server_attack` with ``defended=True`` shows it). For the same
  reason :func:`run_round` refuses ``defended=True`` with ``t <= n/2`` (a ``ValueError``: asking for a
  defence that cannot hold is a configuration mistake), while :class:`fedlab.secagg.Config` only warns
  (:class:`fedlab.secagg.ThresholdWarning`), as lesson 07 does for a semi-honest server.

Note the converse honestly: with ``t > n/2`` *and* phones that answer once, the two-group split already
fails without signatures (the server just cannot collect ``t`` shares of both secrets, and nobody
notices). The consistency round makes the phones *detect* the lie and stop, and guarantees that all the
phones that unmask agreed on one survivor list, which is what the paper's proof needs.

What cryptography cannot fix: sybils (:func:`sybil_attack`, :func:`sybil_guarantee`)
----------------------------------------------------------------------------------
A server that fills a round of ``n`` with ``n - 1`` phones it controls runs the *defended* protocol
perfectly and learns the one real phone's update: the sum minus its own inputs. Signatures cannot tell
a sybil from a phone. What defends in practice is outside the protocol: **authenticated devices**
(the directory of device keys admits only attested, genuine devices - e.g. hardware-backed key
attestation - one per person, and rate-limits enrolment), and **a minimum number of real
participants** per round that the phones themselves can check (the cohort drawn by a party the server
cannot steer, or counted by an independent auditor of the directory). What differential privacy still
guarantees: with distributed DP (:mod:`fedlab.distributed_dp`) the real phone's update carries its own
noise share, of variance ``mu`` = :attr:`fedlab.distributed_dp.Plan.local_variance`, ``1 / (min_survivors
- 1)`` of the planned total (``1 / min_survivors`` with ``count_own_share``): the effective noise
multiplier drops from ``z`` to ``z / sqrt(min_survivors - 1)``, and since the server chose the cohort,
there is no amplification by sampling. (Measured in the tests: 4,096 coordinates, a 20-phone plan.)

Conventions: as :mod:`fedlab.secagg` (ring vectors of :func:`fedlab.secagg.ring_dtype`, every random
choice from ``rng``: a seed or Generator only with ``seeded_keys=True``, else ``os.urandom``). This
module imports numpy, cryptography and fedlab's math modules only.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fedlab import distributed_dp, dp, secagg, seeding, validate

PHASES: tuple[str, ...] = ("advertise", "share", "masked_input", "consistency", "unmask")
"""The defended protocol's phases (lesson 07's four and the consistency round). A phone that drops at a
phase sends nothing from it on."""

SIGNATURE_BYTES = 64
"""Bytes of an Ed25519 signature."""

_ADVERT_TAG = b"fedlab-secagg-malicious advert v1"
_SURVIVORS_TAG = b"fedlab-secagg-malicious survivors v1"


class ProtocolError(secagg.SecAggError):
    """A phone caught the server lying (or a forged message) and stops: ``phone`` is the one that detected it."""

    def __init__(self, message: str, *, phone: int) -> None:
        super().__init__(message)
        self.phone = int(phone)


class SignatureError(ProtocolError):
    """A message's signature is missing or does not verify: ``signer`` is the phone it claims to come from."""

    def __init__(self, message: str, *, phone: int, signer: int) -> None:
        super().__init__(message, phone=phone)
        self.signer = int(signer)


class ConsistencyError(ProtocolError):
    """The server told this phone a story that contradicts what it knows or signed (survivor lists, counts)."""


# ----------------------------------------------------------------------------
# device keys (the paper's PKI) and the signed messages
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Devices:
    """Long-term Ed25519 device keys: ``signing[u]`` stays on phone ``u``; ``directory[u]`` is public.

    The directory is what the phones trust without the server (the paper's trusted PKI): a phone checks
    every signature against it, never against a key the server sends.
    """

    signing: tuple[bytes, ...] = field(repr=False)
    directory: tuple[bytes, ...]


def device_keys(num_clients: int, *, rng: int | np.random.Generator | None) -> Devices:
    """Ed25519 key pairs for phones ``0 .. num_clients - 1`` (32-byte seeds; ``rng=None``: ``os.urandom``)."""
    n = validate.positive_int("num_clients", num_clients)
    gen = None if rng is None else seeding.as_generator(rng)
    seeds = tuple(secagg.random_bytes(secagg.KEY_BYTES, rng=gen) for _ in range(n))
    pubs = tuple(Ed25519PrivateKey.from_private_bytes(s).public_key().public_bytes_raw() for s in seeds)
    return Devices(seeds, pubs)


def _sign(signing_key: bytes, message: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(signing_key).sign(message)


def _verifies(public: bytes, signature: bytes, message: bytes) -> bool:
    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except InvalidSignature:
        return False
    return True


def advert_message(advert: secagg.AdvertiseKeys, *, round_id: int) -> bytes:
    """The bytes a phone signs for its advertised keys: a tag, the round, the phone and both public keys."""
    return _ADVERT_TAG + struct.pack(">QI", round_id, advert.client) + advert.c_pk + advert.s_pk


def survivors_message(survivors: Sequence[int], *, round_id: int) -> bytes:
    """The bytes a phone signs in the consistency round: a tag, the round and the sorted survivor list ``U3``."""
    u3 = sorted(int(v) for v in survivors)
    return _SURVIVORS_TAG + struct.pack(">QI", round_id, len(u3)) + b"".join(struct.pack(">I", v) for v in u3)


@dataclass(frozen=True)
class SignedAdvert:
    """Phase 0, phone to server: lesson 07's :class:`fedlab.secagg.AdvertiseKeys` and its signature (``b""``: none)."""

    advert: secagg.AdvertiseKeys
    signature: bytes

    @property
    def client(self) -> int:
        return self.advert.client

    @property
    def nbytes(self) -> int:
        return self.advert.nbytes + len(self.signature)


@dataclass(frozen=True)
class ConsistencySignature:
    """Consistency round, phone to server: the phone's signature on the survivor list it was sent."""

    client: int
    signature: bytes

    @property
    def nbytes(self) -> int:
        return secagg.ID_BYTES + len(self.signature)


def consistency_download_bytes(*, survivors: int, signers: int) -> int:
    """Bytes a phone *receives* in the consistency round: the list ``U3`` and then ``signers`` signatures."""
    return survivors * secagg.ID_BYTES + signers * (secagg.ID_BYTES + SIGNATURE_BYTES)


# ----------------------------------------------------------------------------
# a phone
# ----------------------------------------------------------------------------


class Phone:
    """One phone of a round, honest, with or without the defence: the party the server talks to.

    The only stateful piece of fedlab's secure aggregation, on purpose: the defence *is* memory (which
    list this phone signed, whether it already revealed shares). Without the defence it behaves like
    lesson 07's functions: ``unmask`` answers every request with the survivor list it is given.

    Parameters
    ----------
    client
        This phone's index.
    config
        The round's :class:`fedlab.secagg.Config`.
    devices
        The device keys (this phone uses ``devices.signing[client]`` and the public ``directory``).
    defended
        Whether the phone signs, checks signatures, runs the consistency round and answers once.
    round_id
        A number every signed message carries, so a signature from one round is no good in another.
    rng
        Seed or Generator for this phone's keys, seeds and Shamir polynomials; ``None``: ``os.urandom``.

    """

    def __init__(
        self,
        client: int,
        *,
        config: secagg.Config,
        devices: Devices,
        defended: bool,
        round_id: int = 0,
        rng: int | np.random.Generator | None = None,
    ) -> None:
        self.client = secagg._check_client(client, config.num_clients)
        if len(devices.directory) != config.num_clients:
            raise ValueError(
                f"devices has {len(devices.directory)} keys: must have one per phone (num_clients={config.num_clients})"
            )
        self.config = config
        self.defended = _check_flag("defended", defended)
        self.round_id = validate.positive_int("round_id", round_id, minimum=0)
        self._devices = devices
        self._gen = None if rng is None else seeding.as_generator(rng)
        self._keys: secagg.ClientKeys | None = None
        self._secrets: secagg.ClientSecrets | None = None
        self._roster: tuple[secagg.AdvertiseKeys, ...] = ()
        self._inbox: tuple[secagg.EncryptedShare, ...] = ()
        self._view: frozenset[int] = frozenset()
        self.signed: tuple[int, ...] | None = None
        """The survivor list this phone signed (``None`` until it signs)."""
        self.answered: list[tuple[int, ...]] = []
        """Every survivor list this phone revealed shares for (at most one when defended)."""

    # phase 0 ---------------------------------------------------------------
    def advertise(self) -> SignedAdvert:
        """Two fresh X25519 key pairs; their public halves, signed with the device key when defended."""
        self._keys, advert = secagg.advertise_keys(self.client, config=self.config, rng=self._gen)
        signature = b""
        if self.defended:
            signature = _sign(self._devices.signing[self.client], advert_message(advert, round_id=self.round_id))
        return SignedAdvert(advert, signature)

    # phase 1 ---------------------------------------------------------------
    def share(self, roster: Sequence[SignedAdvert]) -> secagg.ShareKeys:
        """Check the roster's signatures (defended), then lesson 07's :func:`fedlab.secagg.share_keys`."""
        if self._keys is None:
            raise ValueError(f"phone {self.client} has not advertised keys yet: call advertise() first")
        if self.defended:
            for entry in roster:
                v = secagg._check_client(entry.client, self.config.num_clients, name="roster client")
                message = advert_message(entry.advert, round_id=self.round_id)
                if not _verifies(self._devices.directory[v], entry.signature, message):
                    what = "carry no signature" if not entry.signature else "carry a signature that does not verify"
                    raise SignatureError(
                        f"phone {self.client} rejects the roster: phone {v}'s advertised keys {what} with phone "
                        f"{v}'s device key (forged or substituted by the server); phone {self.client} stops",
                        phone=self.client,
                        signer=v,
                    )
        self._roster = tuple(entry.advert for entry in roster)
        self._secrets, message = secagg.share_keys(self._keys, self._roster, config=self.config, rng=self._gen)
        return message

    # phase 2 ---------------------------------------------------------------
    def mask(self, x, *, inbox: Sequence[secagg.EncryptedShare]) -> secagg.MaskedInput:
        """Mask the encoded input ``x`` (``[dim]`` ring vector) with every phone whose shares arrived.

        Defended: refuses (:class:`ConsistencyError`) when shares arrived from fewer than ``t - 1`` others.
        """
        if self._secrets is None:
            raise ValueError(f"phone {self.client} has not shared its keys yet: call share() first")
        self._inbox = tuple(inbox)
        self._view = frozenset({e.sender for e in self._inbox} | {self.client})
        if self.defended and len(self._view) < self.config.threshold:
            raise ConsistencyError(
                f"phone {self.client} received shares from only {len(self._view) - 1} other phone(s): with itself "
                f"{len(self._view)} < t = {self.config.threshold}. The server may be hiding phones from it so that "
                f"its masked input carries too few masks; phone {self.client} refuses to send it",
                phone=self.client,
            )
        return secagg.mask_input(self._secrets, x, roster=self._roster, inbox=self._inbox, config=self.config)

    # consistency round -------------------------------------------------------
    def sign_survivors(self, survivors: Sequence[int]) -> ConsistencySignature:
        """Check the survivor list ``U3`` the server sent and sign it - one list per round, ever."""
        if not self.defended:
            raise ValueError(f"phone {self.client} runs without the defence: it has no consistency round")
        u3 = _as_list(survivors, self.config)
        if self.signed is not None and self.signed != u3:
            raise ConsistencyError(
                f"phone {self.client} already signed the survivor list {list(self.signed)} and is now asked to sign "
                f"{list(u3)}: the server is telling phones different stories about who dropped; phone "
                f"{self.client} refuses",
                phone=self.client,
            )
        self._check_list(u3)
        self.signed = u3
        message = survivors_message(u3, round_id=self.round_id)
        return ConsistencySignature(self.client, _sign(self._devices.signing[self.client], message))

    def _check_list(self, u3: tuple[int, ...]) -> None:
        u, t = self.client, self.config.threshold
        if u not in u3:
            raise ConsistencyError(
                f"phone {u} is sent the survivor list {list(u3)}, which leaves it out although it sent its masked "
                "input",
                phone=u,
            )
        if len(u3) < t:
            raise ConsistencyError(f"phone {u} is sent a survivor list of {len(u3)} < t = {t} phones", phone=u)
        strangers = sorted(set(u3) - self._view)
        if strangers:
            raise ConsistencyError(
                f"phone {u} is sent the survivor list {list(u3)}, but phones {strangers} never shared keys with it: "
                "the server showed it a different set of phones before",
                phone=u,
            )

    # phase 3 ---------------------------------------------------------------
    def unmask(
        self, survivors: Sequence[int], *, signatures: Mapping[int, bytes] | None = None
    ) -> secagg.UnmaskingShares:
        """Reveal, per phone, the share of ``b`` (in ``survivors``) or of ``s^SK`` (not in it).

        Defended: only for the list this phone signed, only with ``t`` or more valid signatures on it from
        phones in it, and only once. Undefended: lesson 07's :func:`fedlab.secagg.unmask_shares`, every time.
        """
        if self._secrets is None:
            raise ValueError(f"phone {self.client} has no shares to reveal: it did not take part in the round")
        u3 = _as_list(survivors, self.config)
        if self.defended:
            self._check_unmask(u3, signatures or {})
        answer = secagg.unmask_shares(
            self._secrets, inbox=self._inbox, roster=self._roster, survivors=u3, config=self.config
        )
        self.answered.append(u3)
        return answer

    def _check_unmask(self, u3: tuple[int, ...], signatures: Mapping[int, bytes]) -> None:
        u, t = self.client, self.config.threshold
        if self.answered:
            raise ConsistencyError(
                f"phone {u} already revealed its shares for the survivor list {list(self.answered[0])} and is asked "
                f"again with {list(u3)}: a second answer could reveal the other secret of a phone; phone {u} refuses",
                phone=u,
            )
        if self.signed is None or self.signed != u3:
            said = "signed no survivor list" if self.signed is None else f"signed {list(self.signed)}"
            raise ConsistencyError(
                f"phone {u} is asked to unmask for the survivor list {list(u3)} but {said}: the server is telling "
                "phones different stories about who dropped",
                phone=u,
            )
        message = survivors_message(u3, round_id=self.round_id)
        valid = 0
        for v, signature in signatures.items():
            v = secagg._check_client(v, self.config.num_clients, name="signatures key")
            if v not in u3:
                raise ConsistencyError(
                    f"phone {u} got a consistency signature from phone {v}, which is not in the survivor list "
                    f"{list(u3)}",
                    phone=u,
                )
            if not _verifies(self._devices.directory[v], signature, message):
                raise SignatureError(
                    f"phone {u} checked phone {v}'s signature on the survivor list {list(u3)}: it does not verify "
                    f"(forged, or a signature on another list); phone {u} refuses to unmask",
                    phone=u,
                    signer=v,
                )
            valid += 1
        if valid < t:
            raise ConsistencyError(
                f"phone {u} received only {valid} valid signature(s) on the survivor list {list(u3)}: it needs t = "
                f"{t} phones to have agreed on the same list before it reveals any share",
                phone=u,
            )


def _check_flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r}: must be True or False")
    return value


def _as_list(survivors, config: secagg.Config) -> tuple[int, ...]:
    out = tuple(sorted({secagg._check_client(v, config.num_clients, name="survivors entry") for v in survivors}))
    return out


# ----------------------------------------------------------------------------
# the round with an honest server
# ----------------------------------------------------------------------------


def check_defence_threshold(config: secagg.Config) -> None:
    """``ValueError`` unless ``2 t > `` the share holders of every phone (``n`` for the full graph).

    At ``t <= n/2`` two disjoint groups each reach ``t``, so the consistency round cannot stop a lying
    server (see the module docstring and :func:`lying_server_attack`).
    """
    holders = max(len(config.holders(u)) for u in range(config.num_clients))
    if 2 * config.threshold <= holders:
        need = holders // 2 + 1
        raise ValueError(
            f"threshold={config.threshold} with {holders} share holders per phone (num_clients={config.num_clients}"
            f"): the defence against a lying server needs t > {holders}/2, i.e. threshold >= {need}; at t <= "
            f"{holders}/2 two disjoint groups of phones each reach t and the consistency check cannot tell. Use "
            f"threshold >= {need}, or defended=False (a semi-honest server)"
        )


@dataclass(frozen=True, eq=False)
class Round:
    """One round of :func:`run_round`.

    Attributes
    ----------
    sum
        ``[d]`` float64: the decoded sum of the included phones' inputs.
    aggregate
        The server's :class:`fedlab.secagg.Aggregate` (``sum`` mod ``2^bits`` and who is in it).
    participants
        ``{phase: phones that sent that phase's message}`` over :data:`PHASES` (``"consistency"`` empty
        without the defence).
    bytes_sent
        ``[n]`` bytes each phone sent over the round (as :func:`fedlab.secagg.run_round` counts them).
    consistency_bytes
        ``[n]`` bytes each phone sent in the consistency round (its signature and id; 0 without the defence).
    signature_bytes
        ``[n]`` bytes of signatures each phone sent over the round (advert and consistency signatures).
    seconds
        Wall time of the whole round, every phone and the server in this process.

    """

    sum: np.ndarray
    aggregate: secagg.Aggregate
    participants: Mapping[str, tuple[int, ...]]
    bytes_sent: np.ndarray
    consistency_bytes: np.ndarray
    signature_bytes: np.ndarray
    seconds: float

    @property
    def included(self) -> tuple[int, ...]:
        """The phones whose input is in the sum."""
        return self.aggregate.included


def _phones(config, devices, base, *, defended: bool, round_id: int) -> list[Phone]:
    return [
        Phone(u, config=config, devices=devices, defended=defended, round_id=round_id,
              rng=None if base is None else np.random.default_rng([base, u]))
        for u in range(config.num_clients)
    ]  # fmt: skip


def _devices_for(config, devices, base) -> Devices:
    if devices is not None:
        return devices
    return device_keys(config.num_clients, rng=None if base is None else np.random.default_rng([base, 2**32]))


def run_round(
    inputs,
    *,
    config: secagg.Config,
    defended: bool = True,
    rng: int | np.random.Generator | None = None,
    seeded_keys: bool = False,
    dropouts: Mapping[int, str] | None = None,
    devices: Devices | None = None,
    round_id: int = 0,
) -> Round:
    """One round with an honest server, defended (signatures, consistency round) or as in lesson 07.

    Parameters
    ----------
    inputs
        ``[n, d]`` floats (clipped and encoded with ``config``'s fixed-point format).
    config
        The round's :class:`fedlab.secagg.Config`; with ``defended=True`` it must have ``t > n/2``
        (:func:`check_defence_threshold`).
    defended
        Run the paper's active-adversary version (default) or lesson 07's semi-honest one.
    rng, seeded_keys
        As :func:`fedlab.secagg.run_round`: keys from ``os.urandom`` unless ``seeded_keys=True``.
    dropouts
        ``{phone: phase}`` over :data:`PHASES`: the phone sends nothing from that phase on.
    devices
        The phones' :class:`Devices`; ``None`` makes them from ``rng`` (or ``os.urandom``).
    round_id
        Carried by every signature.

    Raises
    ------
    fedlab.secagg.ThresholdError
        Fewer than ``t`` phones remain at some phase (or for some phone's secret).
    ProtocolError
        A phone detected a forged message or an inconsistency (never with an honest server).

    """
    n = config.num_clients
    defended = _check_flag("defended", defended)
    if defended:
        check_defence_threshold(config)
    x = secagg._check_inputs(inputs, config)
    drop = secagg._dropouts(dropouts, n, PHASES)
    base = secagg._key_base(rng, seeded_keys)
    devices = _devices_for(config, devices, base)
    phones = _phones(config, devices, base, defended=defended, round_id=round_id)

    def online(u: int, phase: str) -> bool:
        return drop.get(u, len(PHASES)) > PHASES.index(phase)

    sent, consistency, signed_bytes = (np.zeros(n, dtype=np.int64) for _ in range(3))
    t0 = time.perf_counter()
    adverts = [phones[u].advertise() for u in range(n) if online(u, "advertise")]
    for a in adverts:
        sent[a.client] += a.nbytes
        signed_bytes[a.client] += len(a.signature)
    secagg.collect_keys([a.advert for a in adverts], config=config)  # the server's checks (U1 >= t, keys)
    roster = tuple(sorted(adverts, key=lambda a: a.client))
    share_msgs = [phones[a.client].share(roster) for a in roster if online(a.client, "share")]
    for m in share_msgs:
        sent[m.client] += m.nbytes
    inboxes = secagg.route_shares(share_msgs, config=config)
    masked = [phones[u].mask(config.encode(x[u]), inbox=inboxes[u]) for u in inboxes if online(u, "masked_input")]
    for m in masked:
        sent[m.client] += m.nbytes
    u3 = secagg.collect_masked(masked, config=config)
    signatures: dict[int, bytes] = {}
    if defended:
        for u in u3:
            if online(u, "consistency"):
                s = phones[u].sign_survivors(u3)
                signatures[u] = s.signature
                sent[u] += s.nbytes
                consistency[u] += s.nbytes
                signed_bytes[u] += len(s.signature)
        secagg._require(len(signatures), config, "signed the survivor list")
    responders = [u for u in (signatures if defended else u3) if online(u, "unmask")]
    responses = [phones[u].unmask(u3, signatures=signatures) for u in responders]
    for r in responses:
        sent[r.client] += r.nbytes
    agg = secagg.unmask(masked, responses, roster=[a.advert for a in roster], share_messages=share_msgs, config=config)
    seconds = time.perf_counter() - t0
    participants = {
        "advertise": tuple(a.client for a in roster),
        "share": tuple(m.client for m in share_msgs),
        "masked_input": tuple(m.client for m in masked),
        "consistency": tuple(sorted(signatures)),
        "unmask": tuple(responders),
    }
    return Round(config.decode(agg.sum), agg, participants, sent, consistency, signed_bytes, seconds)


# ----------------------------------------------------------------------------
# the lying server
# ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Attack:
    """What :func:`lying_server_attack` got.

    Attributes
    ----------
    target
        The phone whose input the server unmasked.
    recovered
        ``[d]`` ring vector: the target's encoded input, as the server rebuilt it (compare with
        :meth:`fedlab.secagg.Config.encode` of its true input).
    told_dropped
        The phones told "the target dropped" (they revealed shares of its mask key ``s^SK``).
    told_survived
        The phones told "the target survived" (they revealed shares of its self-mask seed ``b``).
    asked_twice
        Phones in both groups (the server "re-sent" the request with the other list); empty when ``2t <= n``.

    """

    target: int
    recovered: np.ndarray
    told_dropped: tuple[int, ...]
    told_survived: tuple[int, ...]
    asked_twice: tuple[int, ...]


def _honest_start(config, devices, base, defended: bool, round_id: int):
    """Phases 0 and 1 with every phone online and the server honest: phones, signed roster, shares, inboxes."""
    phones = _phones(config, _devices_for(config, devices, base), base, defended=defended, round_id=round_id)
    roster = tuple(p.advertise() for p in phones)
    share_msgs = [p.share(roster) for p in phones]
    return phones, roster, share_msgs, secagg.route_shares(share_msgs, config=config)


def split_groups(num_clients: int, threshold: int, target: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The lying server's two groups: ``t`` phones other than ``target`` told it dropped; ``target`` and the
    rest told it survived, topped up to ``t`` with phones of the first group (asked twice) when ``2t > n``.
    """
    others = [v for v in range(num_clients) if v != target]
    dropped = tuple(others[:threshold])
    survived = [target] + others[threshold:]
    survived += list(dropped[len(dropped) - max(0, threshold - len(survived)) :])
    return dropped, tuple(sorted(survived))


def lying_server_attack(
    inputs,
    *,
    config: secagg.Config,
    target: int,
    defended: bool,
    rng: int | np.random.Generator | None = None,
    seeded_keys: bool = False,
    devices: Devices | None = None,
    round_id: int = 0,
) -> Attack:
    """Run a round in which the server lies about who dropped, to unmask phone ``target``'s input.

    The first three phases are honest (every phone advertises, shares and masks). Then the server tells
    the group ``told_dropped`` of :func:`split_groups` that ``target`` dropped (survivor list: everyone
    but it), and ``told_survived`` that it survived (everyone). With the defence, each phone is first
    asked to sign the list it is told, then shown the signatures the server collected on that list. The
    server rebuilds ``s_target^SK`` and ``b_target`` (checking them against the advertised key and the
    commitment) and strips every mask: ``x = y - PRG(b) - sum_{v > u} PRG(s_uv) + sum_{v < u} PRG(s_uv)``.

    Outcomes (``tests/test_secagg_malicious.py``): without the defence it succeeds for every
    ``2 <= t <= n - 1``; with it, at ``t > n/2`` a phone raises :class:`ConsistencyError` (a phone of both
    groups refuses to sign a second list), and at ``t <= n/2`` it succeeds anyway - the reason
    :func:`run_round` refuses ``defended=True`` there.

    Raises
    ------
    ValueError
        ``target`` not a phone, or ``t = n`` (the target's own mask-key share would be needed, and it
        never reveals it while it is online).
    ProtocolError
        A defended phone detected the lie.

    """
    n, t = config.num_clients, config.threshold
    u = secagg._check_client(target, n, name="target")
    defended = _check_flag("defended", defended)
    if t >= n:
        raise ValueError(
            f"threshold={t} with num_clients={n}: this attack needs t <= n - 1 (the t shares of the target's mask "
            "key must come from the other phones)"
        )
    if config.neighbours != secagg.full_graph(n):
        raise ValueError("config.neighbours: lying_server_attack runs on the full graph only (neighbours=None)")
    x = secagg._check_inputs(inputs, config)
    base = secagg._key_base(rng, seeded_keys)
    phones, roster, share_msgs, inboxes = _honest_start(config, devices, base, defended, round_id)
    masked = {v: phones[v].mask(config.encode(x[v]), inbox=inboxes[v]) for v in range(n)}
    dropped, survived = split_groups(n, t, u)
    lists = {"dropped": tuple(v for v in range(n) if v != u), "survived": tuple(range(n))}
    groups = {"dropped": dropped, "survived": survived}
    signatures: dict[str, dict[int, bytes]] = {"dropped": {}, "survived": {}}
    if defended:
        for story in ("dropped", "survived"):
            for v in groups[story]:
                signatures[story][v] = phones[v].sign_survivors(lists[story]).signature
    answers = {
        story: [phones[v].unmask(lists[story], signatures=signatures[story]) for v in groups[story]]
        for story in ("dropped", "survived")
    }
    key_shares = [(r.client + 1, s) for r in answers["dropped"] for o, s in r.key_shares if o == u]
    seed_shares = [(r.client + 1, s) for r in answers["survived"] for o, s in r.self_mask_shares if o == u]
    s_sk = secagg.shamir_reconstruct(key_shares, threshold=t).to_bytes(secagg.KEY_BYTES, "little")
    seed = secagg.shamir_reconstruct(seed_shares, threshold=t).to_bytes(secagg.KEY_BYTES, "little")
    commitment = next(m.commitment for m in share_msgs if m.client == u)
    if secagg.public_key(s_sk) != roster[u].advert.s_pk or secagg._commit(seed) != commitment:
        raise secagg.ShareError(f"the rebuilt secrets of phone {u} fail their checks")  # cannot happen: honest shares
    pair_seeds = {e.sender: secagg.pairwise_seed(s_sk, roster[e.sender].advert.s_pk, me=u, peer=e.sender)
                  for e in inboxes[u]}  # fmt: skip
    zero = np.zeros(config.dim, secagg.ring_dtype(config.bits))
    mask = secagg.mask_vector(zero, client=u, pair_seeds=pair_seeds, self_seed=seed, bits=config.bits)
    recovered = masked[u].y - mask  # lesson 07's masks, rebuilt from the two secrets and taken off
    twice = tuple(sorted(set(dropped) & set(survived)))
    return Attack(u, secagg._reduce(recovered, config.bits), dropped, survived, twice)


def isolation_attack(
    inputs,
    *,
    config: secagg.Config,
    target: int,
    defended: bool,
    rng: int | np.random.Generator | None = None,
    seeded_keys: bool = False,
    devices: Devices | None = None,
) -> np.ndarray:
    """The other lie about dropouts: tell ``target`` that nobody else shared keys; returns its encoded input.

    The server delivers ``target`` an empty inbox, so a lesson-07 phone masks with its self-mask only
    (``y = x + PRG(b)``: it has no partner), then runs an honest-looking unmasking - one survivor list for
    everyone, the target in it - and every phone reveals its share of ``b_target``. No split, so it works
    at *every* threshold, ``t = n`` included. The defended phone refuses to mask
    (:class:`ConsistencyError`: shares from fewer than ``t - 1`` others; the paper's ``|U2| >= t`` check),
    and the consistency round's ``U3 within U2`` check stops the milder versions (showing it ``t - 1``
    partners and then claiming they dropped).
    """
    n = config.num_clients
    u = secagg._check_client(target, n, name="target")
    defended = _check_flag("defended", defended)
    x = secagg._check_inputs(inputs, config)
    base = secagg._key_base(rng, seeded_keys)
    phones, _, _, inboxes = _honest_start(config, devices, base, defended, 0)
    inboxes[u] = ()  # the lie: "you are the only phone that shared its keys"
    masked = {v: phones[v].mask(config.encode(x[v]), inbox=inboxes[v]) for v in range(n)}
    everyone = tuple(range(n))
    signatures = {v: phones[v].sign_survivors(everyone).signature for v in everyone} if defended else {}
    answers = [phones[v].unmask(everyone, signatures=signatures) for v in everyone]
    shares = [(r.client + 1, s) for r in answers for o, s in r.self_mask_shares if o == u]
    seed = secagg.shamir_reconstruct(shares, threshold=config.threshold).to_bytes(secagg.KEY_BYTES, "little")
    return secagg._reduce(masked[u].y - secagg.prg(seed, config.dim, bits=config.bits), config.bits)


# ----------------------------------------------------------------------------
# sybils
# ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Sybil:
    """What :func:`sybil_attack` got: the real phone's encoded input, read off a correctly defended round.

    Attributes
    ----------
    real_phone
        The one phone the server does not control.
    recovered
        ``[d]`` ring vector: ``sum - sum of the sybils' encoded inputs`` mod ``2^bits``.
    round
        The defended :class:`Round` it came from (every signature and consistency check passed).

    """

    real_phone: int
    recovered: np.ndarray
    round: Round


def sybil_attack(
    inputs,
    *,
    config: secagg.Config,
    real_phone: int,
    rng: int | np.random.Generator | None = None,
    seeded_keys: bool = False,
    devices: Devices | None = None,
) -> Sybil:
    """A server that fills the round with its own phones learns the one real phone's input, defence on.

    ``inputs[v]`` for ``v != real_phone`` are the sybils' inputs, chosen (so known) by the server; all
    phones run the defended protocol honestly (:func:`run_round` with ``defended=True``: the sybils
    hold genuine device keys, as a server that enrols its own devices would). The server subtracts what
    it put in. No check fails: cryptography cannot tell a sybil from a phone. Defences in practice (the
    module docstring): authenticated, attested devices and a minimum number of real participants; and
    with distributed DP the real phone's own noise share (:func:`sybil_guarantee`).
    """
    x = secagg._check_inputs(inputs, config)
    real = secagg._check_client(real_phone, config.num_clients, name="real_phone")
    result = run_round(x, config=config, defended=True, rng=rng, seeded_keys=seeded_keys, devices=devices)
    sybils = [v for v in result.included if v != real]
    known = secagg.plain_sum(x, config=config, clients=sybils)
    return Sybil(real, secagg._reduce(result.aggregate.sum - known, config.bits), result)


@dataclass(frozen=True)
class SybilGuarantee:
    """What distributed DP still promises the one real phone among sybils (:func:`sybil_guarantee`).

    Attributes
    ----------
    planned_variance
        Noise variance the accountant counts for a release (``noise_shares(min_survivors) * mu``).
    real_variance
        Noise variance left once the server subtracts its sybils' inputs *and noise*: the real
        phone's own share ``mu``.
    variance_fraction
        ``real_variance / planned_variance``.
    planned_noise_multiplier, noise_multiplier
        ``z`` of the plan and the effective ``z`` of the real phone's share alone (``z * sqrt(fraction)``).
    planned_epsilon
        The plan's ``epsilon`` with its sampling rate ``q`` (honest server).
    epsilon
        ``epsilon`` from the real phone's own share with no amplification by sampling (``q = 1``: the server
        chose the cohort). Finite only because the phone's share stays secret: the plan's own convention
        (``count_own_share=False``) counts no share at all then, i.e. no guarantee.

    """

    planned_variance: float
    real_variance: float
    variance_fraction: float
    planned_noise_multiplier: float
    noise_multiplier: float
    planned_epsilon: float
    epsilon: float


def sybil_guarantee(plan: distributed_dp.Plan, *, q: float, rounds: int, delta: float) -> SybilGuarantee:
    """The real phone's guarantee when every other phone of the round is a sybil, against the plan's.

    Parameters
    ----------
    plan
        The round's :class:`fedlab.distributed_dp.Plan`.
    q, rounds, delta
        The plan's sampling rate, the number of rounds (the phone in every one, worst case) and ``delta``.

    """
    planned = plan.noise_shares(plan.min_survivors) * plan.local_variance
    if planned <= 0:
        raise ValueError(f"plan has noise_multiplier={plan.noise_multiplier}: no noise to compare (use z > 0)")
    steps = validate.positive_int("rounds", rounds)
    fraction = plan.local_variance / planned
    own = distributed_dp.skellam_rdp(
        l1=plan.l1_sensitivity, l2=plan.l2_sensitivity, variance=plan.local_variance, orders=distributed_dp.ORDERS
    )
    eps = dp.rdp_to_epsilon(rdp=steps * own, orders=distributed_dp.ORDERS, delta=delta)[0]
    return SybilGuarantee(
        planned_variance=float(planned),
        real_variance=float(plan.local_variance),
        variance_fraction=float(fraction),
        planned_noise_multiplier=plan.noise_multiplier,
        noise_multiplier=float(plan.noise_multiplier * np.sqrt(fraction)),
        planned_epsilon=float(distributed_dp.epsilon(plan, q=q, rounds=steps, delta=delta)),
        epsilon=float(eps),
    )


__all__ = [
    "PHASES",
    "SIGNATURE_BYTES",
    "Attack",
    "ConsistencyError",
    "ConsistencySignature",
    "Devices",
    "Phone",
    "ProtocolError",
    "Round",
    "SignatureError",
    "SignedAdvert",
    "Sybil",
    "SybilGuarantee",
    "advert_message",
    "check_defence_threshold",
    "consistency_download_bytes",
    "device_keys",
    "isolation_attack",
    "lying_server_attack",
    "run_round",
    "split_groups",
    "survivors_message",
    "sybil_attack",
    "sybil_guarantee",
]
