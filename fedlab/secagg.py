"""Secure aggregation: the server learns the sum of the clients' updates, and nothing else.

The protocol of Bonawitz et al. (2017, "Practical Secure Aggregation for
Privacy-Preserving Machine Learning", the semi-honest version of Fig. 4 without
the consistency round), with the neighbour-graph variant of Bell et al. (2020,
"SecAgg+"). Everything is real cryptography from the ``cryptography`` package:
X25519 key agreement, HKDF-SHA256, the ChaCha20 stream cipher as the PRG and
ChaCha20-Poly1305 to encrypt the shares in transit.

The pieces, in the order lesson 07 builds them
-----------------------------------------------
- :func:`additive_shares` / :func:`additive_reconstruct` - split an integer
  vector into ``n`` uniformly random vectors that sum to it mod ``2^bits``.
- :func:`fixed_point_encode` / :func:`fixed_point_decode` - float updates to
  integers mod ``2^bits``: clip to ``[-clip, clip]``, scale by ``2^frac_bits``,
  round, two's complement. :func:`check_capacity` raises :class:`CapacityError`
  (never a silent wrap-around) unless ``num_clients * round(clip * 2^frac_bits)
  <= 2^(bits-1) - 1``, so any sum of that many clipped updates decodes
  correctly; :func:`max_frac_bits` is the finest resolution that fits.
- :func:`prg` - a seed of 32 bytes expanded into a vector mod ``2^bits`` by
  ChaCha20 (4 bytes per entry for ``bits <= 32``, 8 otherwise).
- :func:`keypair`, :func:`pairwise_seed` - X25519: clients ``u`` and ``v`` each
  combine their own private key with the other's public key and get the same
  32-byte secret (HKDF-SHA256 binds it to the pair).
- :func:`mask_vector` - ``y_u = x_u + PRG(b_u) + sum_{v>u} PRG(s_uv) - sum_{v<u}
  PRG(s_uv)`` mod ``2^bits``: the pairwise masks cancel in the sum, the
  self-mask ``PRG(b_u)`` is removed by the server once it rebuilds ``b_u``.
- :func:`shamir_share` / :func:`shamir_reconstruct` - Shamir secret sharing over
  the prime field ``GF(2^255 - 19)`` (:data:`PRIME`): any ``t`` shares give the
  secret back by Lagrange interpolation at 0, fewer reveal nothing. With more
  than ``t`` shares, :func:`shamir_reconstruct` checks that they all lie on one
  polynomial of degree ``t - 1`` and raises :class:`ShareError` if not.

The protocol (one round, four phases; :data:`PHASES`)
-----------------------------------------------------
0. ``advertise`` - :func:`advertise_keys`: each client makes two X25519 key
   pairs, ``c`` (to encrypt shares) and ``s`` (for its pairwise masks), and
   sends the public halves (:class:`AdvertiseKeys`). The server's
   :func:`collect_keys` gives every client the roster (``U1``).
1. ``share`` - :func:`share_keys`: each client draws its self-mask seed
   ``b_u``, Shamir-shares ``b_u`` and its mask key ``s_u^SK`` among its share
   holders (its neighbours and itself) with threshold ``t``, and sends each
   holder's pair of shares encrypted for it (:class:`ShareKeys`), with a
   SHA-256 commitment to ``b_u``. :func:`route_shares` delivers them (``U2``).
2. ``masked_input`` - :func:`mask_input`: each client sends ``y_u``
   (:class:`MaskedInput`), masked with every neighbour in ``U2``.
   :func:`collect_masked` checks them (``U3``).
3. ``unmask`` - :func:`unmask_shares`: each client still online (``U4``) opens
   the shares it holds and reveals, for every client that sent a masked input,
   its share of ``b_u``, and for every client that dropped after sharing but
   before its masked input, its share of ``s_u^SK`` - never both for the same
   client (:class:`UnmaskingShares`). :func:`unmask` rebuilds the secrets,
   checks them against the commitments (``b_u``) and the advertised public keys
   (``s_u^SK``), removes the self-masks and the dropped clients' pairwise masks
   and returns the exact sum mod ``2^bits`` (:class:`Aggregate`).

A client that drops *before* sending its masked input leaves its neighbours'
pairwise masks with it uncancelled: the server rebuilds its ``s_u^SK`` from
``t`` shares and recomputes them. A client that drops *after* sending its
masked input is in the sum: the server rebuilds its ``b_u``. Every step refuses
(:class:`ThresholdError`) when fewer than ``t`` clients (or, for one client's
secret, fewer than ``t`` of its share holders) remain. :func:`run_round` runs
all of it in one process, with dropouts at any phase, and counts the bytes each
client sends.

Threat model and honest limits
------------------------------
The server is *semi-honest* (honest but curious): it follows the protocol and
studies everything it receives. It then learns the sum of the inputs of at
least ``t`` clients and nothing else, as long as fewer than ``t`` clients
collude with it (Bonawitz et al., Sec. 6; with a neighbour graph, with high
probability over the graph: Bell et al.). An actively malicious server needs
the consistency round and signatures of the paper, which are left out here.
The sum itself is *not* protected: a sum of few clients still leaks (lesson
07 attacks one), and secure aggregation is not differential privacy (lesson 08).

Randomness
----------
Every function that draws takes ``rng``: an int seed or a
``numpy.random.Generator`` makes the whole protocol deterministic (keys, seeds,
polynomials) for teaching and tests; ``rng=None`` draws from ``os.urandom``,
which is what a deployment must do (numpy's generators are not cryptographic).
The neighbour graph is public randomness and always takes a seed or Generator.

Shapes and types: vectors are 1-D numpy arrays of ``uint32`` (``bits <= 32``)
or ``uint64`` (``bits <= 64``); keys and seeds are 32-byte ``bytes``; field
elements are Python ints. This module imports numpy, cryptography and fedlab's
math helpers only.
"""

from __future__ import annotations

import functools
import hashlib
import numbers
import os
import struct
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedlab import seeding, validate

PRIME = 2**255 - 19
"""The field of the Shamir shares: the prime of Curve25519, so a 32-byte key is one field element."""

KEY_BYTES = 32
"""Bytes of a key, a seed, a commitment and a field element."""

PHASES: tuple[str, ...] = ("advertise", "share", "masked_input", "unmask")
"""The protocol's phases, in order. A client that drops at a phase sends nothing from it on."""

ID_BYTES = 4
"""Bytes of a client index in a message."""

_NONCE16 = bytes(16)
_AAD = b"fedlab-secagg v1"
_PAIR_INFO = b"fedlab-secagg pairwise mask"
_SHARE_INFO = b"fedlab-secagg share encryption"


class SecAggError(ValueError):
    """Base class of the protocol's errors (a ``ValueError``: they are about bad inputs or states)."""


class ThresholdError(SecAggError):
    """Fewer than ``t`` clients (or shares) remain: the protocol refuses to go on."""


class ShareError(SecAggError):
    """A share is malformed, forged or corrupted (it fails authentication, consistency or a commitment)."""


class CapacityError(SecAggError):
    """The fixed-point format cannot hold a sum of this many clipped updates without wrapping around."""


# ----------------------------------------------------------------------------
# randomness and small checks
# ----------------------------------------------------------------------------


def random_bytes(size: int, *, rng: int | np.random.Generator | None) -> bytes:
    """``size`` random bytes: from ``rng`` (seed or Generator, for teaching) or ``os.urandom`` if ``None``."""
    validate.positive_int("size", size)
    if rng is None:
        return os.urandom(size)
    return seeding.as_generator(rng).bytes(size)


def random_field_element(*, rng: int | np.random.Generator | None, prime: int = PRIME) -> int:
    """A uniform integer in ``[0, prime)`` by rejection sampling of random bytes."""
    _check_prime(prime)
    nbits = prime.bit_length()
    nbytes = (nbits + 7) // 8
    gen = None if rng is None else seeding.as_generator(rng)
    while True:
        value = int.from_bytes(random_bytes(nbytes, rng=gen), "little") & ((1 << nbits) - 1)
        if value < prime:
            return value


def _check_prime(prime) -> int:
    if isinstance(prime, bool) or not isinstance(prime, numbers.Integral) or prime < 3:
        raise ValueError(f"prime={prime!r}: must be an odd prime int (default secagg.PRIME = 2^255 - 19)")
    return int(prime)


def _check_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or not 8 <= bits <= 64:
        raise ValueError(f"bits={bits!r}: must be an int in [8, 64] (the ring is the integers mod 2^bits)")
    return int(bits)


def ring_dtype(bits: int) -> np.dtype:
    """``uint32`` for ``bits <= 32``, else ``uint64``: numpy wraps both mod ``2^32`` / ``2^64`` for free."""
    return np.dtype(np.uint32) if _check_bits(bits) <= 32 else np.dtype(np.uint64)


def _reduce(a: np.ndarray, bits: int) -> np.ndarray:
    """Reduce mod ``2^bits`` in place (a no-op for 32 and 64 bits, where the dtype wraps by itself)."""
    if bits not in (32, 64):
        a &= a.dtype.type((1 << bits) - 1)
    return a


def as_ring(x, *, bits: int = 32, name: str = "x") -> np.ndarray:
    """An integer vector as elements of ``Z / 2^bits`` (negative ints wrap: two's complement); a new array."""
    bits = _check_bits(bits)
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        hint = " (encode floats first with secagg.fixed_point_encode)" if a.dtype.kind == "f" else ""
        raise ValueError(f"{name} has dtype {a.dtype}: must be integers mod 2^{bits}{hint}")
    if a.ndim != 1:
        raise ValueError(f"{name} has shape {a.shape}: must be a 1-D vector")
    if a.dtype == ring_dtype(bits) and bits in (32, 64):
        return a.copy()
    out = a.astype(np.int64).astype(np.uint64) if a.dtype.kind == "i" else a.astype(np.uint64)
    return _reduce(out.astype(ring_dtype(bits)), bits)


def _check_seed(seed, *, name: str = "seed") -> bytes:
    if not isinstance(seed, bytes | bytearray) or len(seed) != KEY_BYTES:
        got = f"{len(seed)} bytes" if isinstance(seed, bytes | bytearray) else type(seed).__name__
        raise ValueError(f"{name} is {got}: must be {KEY_BYTES} bytes")
    return bytes(seed)


def _check_client(client, num_clients: int, *, name: str = "client") -> int:
    if isinstance(client, bool) or not isinstance(client, numbers.Integral) or not 0 <= client < num_clients:
        raise ValueError(f"{name}={client!r}: must be a client index in [0, {num_clients - 1}]")
    return int(client)


# ----------------------------------------------------------------------------
# additive secret sharing (the warm-up)
# ----------------------------------------------------------------------------


def additive_shares(x, *, n: int, rng: int | np.random.Generator | None, bits: int = 32) -> np.ndarray:
    """Split ``x`` into ``n`` additive shares mod ``2^bits``.

    The first ``n - 1`` shares are uniform on ``[0, 2^bits)``; the last is
    ``x - sum(others)``. Any ``n - 1`` of them are independent of ``x`` (they
    are uniform whatever ``x`` is); all ``n`` sum to ``x``.

    Parameters
    ----------
    x
        ``[d]`` integers (reduced mod ``2^bits``).
    n
        Number of shares (>= 1).
    rng
        Seed or Generator; ``None`` draws from ``os.urandom``.

    Returns
    -------
    ``[n, d]`` array of :func:`ring_dtype` whose rows sum to ``x`` mod ``2^bits``.

    """
    bits = _check_bits(bits)
    x = as_ring(x, bits=bits)
    n = validate.positive_int("n", n)
    dtype = ring_dtype(bits)
    count = (n - 1) * x.size
    raw = random_bytes(count * dtype.itemsize, rng=rng) if count else b""
    words = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype)
    shares = np.empty((n, x.size), dtype=dtype)
    shares[:-1] = _reduce(words, bits).reshape(n - 1, x.size)
    shares[-1] = _reduce(x - shares[:-1].sum(axis=0, dtype=dtype), bits)
    return shares


def additive_reconstruct(shares, *, bits: int = 32) -> np.ndarray:
    """The sum of the rows of ``shares`` (``[n, d]``) mod ``2^bits``."""
    bits = _check_bits(bits)
    a = np.asarray(shares)
    if a.ndim != 2 or a.dtype.kind not in "iu":
        raise ValueError(f"shares has shape {a.shape} and dtype {a.dtype}: must be a 2-D integer array [n, d]")
    return _reduce(np.stack([as_ring(row, bits=bits) for row in a]).sum(axis=0, dtype=ring_dtype(bits)), bits)


# ----------------------------------------------------------------------------
# fixed-point encoding
# ----------------------------------------------------------------------------


def _check_frac_bits(frac_bits) -> int:
    if isinstance(frac_bits, bool) or not isinstance(frac_bits, numbers.Integral) or not 0 <= frac_bits <= 62:
        raise ValueError(f"frac_bits={frac_bits!r}: must be an int in [0, 62]")
    return int(frac_bits)


def check_capacity(*, num_clients: int, clip: float, frac_bits: int, bits: int = 32) -> None:
    """Raise :class:`CapacityError` unless a sum of ``num_clients`` encoded values cannot wrap around.

    Each encoded value lies in ``[-m, m]`` with ``m = round(clip * 2^frac_bits)``;
    the decoded sum is right when ``num_clients * m <= 2^(bits-1) - 1`` (the
    largest signed value mod ``2^bits``).
    """
    n = validate.positive_int("num_clients", num_clients)
    validate.positive_float("clip", clip)
    f = _check_frac_bits(frac_bits)
    bits = _check_bits(bits)
    m = round(clip * 2.0**f)
    limit = 2 ** (bits - 1) - 1
    if n * m > limit:
        try:
            best = f"frac_bits <= {max_frac_bits(num_clients=n, clip=clip, bits=bits)}"
        except CapacityError:
            best = "a smaller clip"
        raise CapacityError(
            f"num_clients * clip * 2^frac_bits = {n} * {clip:g} * 2^{f} = {n * m:.4g} exceeds 2^{bits - 1} - 1 "
            f"= {limit:.4g}: a sum of {n} clipped updates could wrap around mod 2^{bits} and decode to garbage. "
            f"Use {best}, a smaller clip, or more bits."
        )


def max_frac_bits(*, num_clients: int, clip: float, bits: int = 32) -> int:
    """The largest ``frac_bits`` that passes :func:`check_capacity` (the finest resolution that fits).

    For 100 clients, ``clip = 1`` and 32 bits this is 24: ``100 * 2^24 < 2^31``,
    and each value is off by at most ``2^-25`` (about ``3e-8``).
    """
    n = validate.positive_int("num_clients", num_clients)
    validate.positive_float("clip", clip)
    bits = _check_bits(bits)
    limit = 2 ** (bits - 1) - 1
    best = None
    for f in range(0, 63):
        if n * round(clip * 2.0**f) <= limit:
            best = f
        elif best is not None or clip * 2.0**f > limit:
            break
    if best is None:
        raise CapacityError(
            f"num_clients * clip = {n} * {clip:g} does not fit in a signed {bits}-bit sum even with frac_bits=0: "
            "lower clip or use more bits"
        )
    return best


def fixed_point_encode(x, *, clip: float, frac_bits: int, bits: int = 32) -> np.ndarray:
    """Floats to integers mod ``2^bits``: ``round(clip_to(x, [-clip, clip]) * 2^frac_bits)``, two's complement.

    Values outside ``[-clip, clip]`` are clipped (the documented range; clip
    the update's norm beforehand if you care about its direction). The error
    per value is at most ``2^-(frac_bits+1)`` inside the range.

    Parameters
    ----------
    x
        ``[d]`` finite floats.
    clip
        The clipping range ``[-clip, clip]``.
    frac_bits
        ``f``: the resolution is ``2^-f``.
    bits
        The ring is ``Z / 2^bits``.

    Returns
    -------
    ``[d]`` :func:`ring_dtype` array.

    """
    validate.positive_float("clip", clip)
    f = _check_frac_bits(frac_bits)
    bits = _check_bits(bits)
    check_capacity(num_clients=1, clip=clip, frac_bits=f, bits=bits)
    a = np.asarray(x)
    if a.dtype.kind not in "fiu" or a.ndim != 1:
        raise ValueError(f"x has shape {a.shape} and dtype {a.dtype}: must be a 1-D vector of numbers")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"x has {int(np.sum(~np.isfinite(a)))} non-finite entries (nan or inf): cannot encode them")
    q = np.rint(np.clip(a, -clip, clip) * 2.0**f).astype(np.int64)
    return _reduce(q.astype(np.uint64).astype(ring_dtype(bits)), bits)


def fixed_point_decode(q, *, frac_bits: int, bits: int = 32) -> np.ndarray:
    """Integers mod ``2^bits`` (two's complement) back to float64: ``signed(q) / 2^frac_bits``."""
    f = _check_frac_bits(frac_bits)
    bits = _check_bits(bits)
    q = as_ring(q, bits=bits, name="q").astype(np.uint64)
    if bits == 64:
        signed = q.view(np.int64)
    else:
        qi = q.astype(np.int64)  # < 2^bits <= 2^63: exact
        half = np.int64(1) << np.int64(bits - 1)  # 2^bits itself overflows int64 at bits=63 (numpy 2 refuses it)
        signed = np.where(qi >= half, qi - half - half, qi)
    return signed.astype(np.float64) / 2.0**f


# ----------------------------------------------------------------------------
# PRG and key agreement
# ----------------------------------------------------------------------------


def prg(seed: bytes, size: int, *, bits: int = 32) -> np.ndarray:
    """Expand a 32-byte ``seed`` into ``size`` pseudo-random integers mod ``2^bits`` (ChaCha20 keystream).

    The keystream of ChaCha20 (key = ``seed``, nonce and counter 0) read as
    little-endian ``uint32`` (``bits <= 32``) or ``uint64`` words. Each seed is
    used for one vector only (seeds are fresh per pair and per round).
    """
    seed = _check_seed(seed)
    bits = _check_bits(bits)
    size = validate.positive_int("size", size, minimum=0)
    dtype = ring_dtype(bits)
    if size == 0:
        return np.zeros(0, dtype=dtype)
    stream = Cipher(algorithms.ChaCha20(seed, _NONCE16), mode=None).encryptor().update(bytes(size * dtype.itemsize))
    return _reduce(np.frombuffer(stream, dtype=dtype.newbyteorder("<")).astype(dtype), bits)


def public_key(private: bytes) -> bytes:
    """The X25519 public key (32 bytes) of a 32-byte private key."""
    private = _check_seed(private, name="private key")
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def keypair(*, rng: int | np.random.Generator | None) -> tuple[bytes, bytes]:
    """A fresh X25519 key pair ``(private, public)``, 32 bytes each.

    The private key is drawn already *clamped* (RFC 7748: the low 3 bits
    cleared, bit 254 set, bit 255 cleared), the form X25519 would give any 32
    bytes before use, and below ``2^255 - 19``. So it is one element of the
    Shamir field, and the public key pins it down: a clamped key that differs
    from the original has another public key (barring a forger who already
    knows the key), which is how the server checks a rebuilt mask key
    (:func:`is_clamped`). Unclamped bytes would not do: keys that differ in
    their low 3 bits give the same public key.
    """
    gen = None if rng is None else seeding.as_generator(rng)
    while True:
        value = int.from_bytes(random_bytes(KEY_BYTES, rng=gen), "little")
        value = (value & ~7 & ((1 << 255) - 1)) | (1 << 254)
        if value < PRIME:
            break
    private = value.to_bytes(KEY_BYTES, "little")
    return private, public_key(private)


def is_clamped(private: bytes) -> bool:
    """Whether a private key is in the clamped form of :func:`keypair` (multiple of 8, in ``[2^254, 2^255)``)."""
    value = int.from_bytes(_check_seed(private, name="private key"), "little")
    return value % 8 == 0 and value >> 254 == 1


def agree(private: bytes, peer_public: bytes, *, context: bytes) -> bytes:
    """X25519 key agreement followed by HKDF-SHA256: a 32-byte key both sides compute alike.

    ``context`` (the HKDF ``info``) separates the uses of one shared secret.
    Raises :class:`ShareError` for an invalid peer key (e.g. a low-order point).
    """
    private = _check_seed(private, name="private key")
    peer_public = _check_seed(peer_public, name="public key")
    try:
        secret = X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as err:
        raise ShareError(f"key agreement failed ({err}): the peer's public key is invalid") from None
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=context).derive(secret)


def pairwise_seed(private: bytes, peer_public: bytes, *, me: int, peer: int) -> bytes:
    """The seed ``s_uv`` of the pairwise mask between clients ``me`` and ``peer`` (symmetric in the two)."""
    lo, hi = sorted((int(me), int(peer)))
    return agree(private, peer_public, context=_PAIR_INFO + struct.pack(">II", lo, hi))


def mask_vector(
    x, *, client: int, pair_seeds: Mapping[int, bytes], self_seed: bytes | None, bits: int = 32
) -> np.ndarray:
    """The masked input ``y_u = x_u + PRG(b_u) + sum_{v>u} PRG(s_uv) - sum_{v<u} PRG(s_uv)`` mod ``2^bits``.

    Parameters
    ----------
    x
        ``[d]`` the encoded input (integers mod ``2^bits``).
    client
        ``u``, this client's index.
    pair_seeds
        ``{v: s_uv}`` for every partner ``v != u`` (32-byte seeds).
    self_seed
        ``b_u`` (32 bytes), or ``None`` for no self-mask.

    Returns
    -------
    ``[d]`` :func:`ring_dtype` array. Summed over all clients of a complete set
    of pairs, the pairwise masks cancel exactly.

    """
    bits = _check_bits(bits)
    y = as_ring(x, bits=bits)
    u = int(client)
    if self_seed is not None:
        y += prg(self_seed, y.size, bits=bits)
    for v, seed in pair_seeds.items():
        if int(v) == u:
            raise ValueError(f"pair_seeds has a seed for client {u} itself: a client has no mask with itself")
        if int(v) > u:
            y += prg(seed, y.size, bits=bits)
        else:
            y -= prg(seed, y.size, bits=bits)
    return _reduce(y, bits)


# ----------------------------------------------------------------------------
# Shamir secret sharing
# ----------------------------------------------------------------------------


def _check_threshold(threshold) -> int:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Integral) or threshold < 2:
        raise ValueError(
            f"threshold={threshold!r}: must be an int >= 2 (with t = 1 every single share is the secret itself)"
        )
    return int(threshold)


def shamir_share(
    secret: int, *, threshold: int, xs: Sequence[int], rng: int | np.random.Generator | None, prime: int = PRIME
) -> tuple[tuple[int, int], ...]:
    """Shares ``(x, f(x))`` for each ``x`` in ``xs``; ``f`` is random of degree ``t - 1`` with ``f(0) = secret``.

    Any ``threshold`` shares determine ``f`` and so the secret; any fewer are
    uniformly distributed whatever the secret is (Shamir 1979).

    Parameters
    ----------
    secret
        An int in ``[0, prime)``.
    threshold
        ``t >= 2``; at most ``len(xs)``.
    xs
        Distinct nonzero x-coordinates in ``[1, prime)`` (the protocol uses
        ``client + 1``).
    rng
        Seed or Generator for the ``t - 1`` random coefficients; ``None`` for ``os.urandom``.

    """
    prime = _check_prime(prime)
    t = _check_threshold(threshold)
    if isinstance(secret, bool) or not isinstance(secret, numbers.Integral) or not 0 <= secret < prime:
        raise ValueError(f"secret={secret!r}: must be an int in [0, prime)")
    xs = [int(x) for x in xs]
    if len(set(xs)) != len(xs) or any(not 0 < x < prime for x in xs):
        raise ValueError(f"xs={xs}: must be distinct ints in [1, prime)")
    if t > len(xs):
        raise ValueError(f"threshold={t}: must be at most the number of shares len(xs)={len(xs)}")
    gen = None if rng is None else seeding.as_generator(rng)
    coeffs = [int(secret)] + [random_field_element(rng=gen, prime=prime) for _ in range(t - 1)]
    shares = []
    for x in xs:
        acc = 0
        for c in reversed(coeffs):  # Horner
            acc = (acc * x + c) % prime
        shares.append((x, acc))
    return tuple(shares)


@functools.lru_cache(maxsize=4096)
def lagrange_coefficients(xs: tuple[int, ...], *, at: int = 0, prime: int = PRIME) -> tuple[int, ...]:
    """``L_j(at) = prod_{m != j} (at - x_m) / (x_j - x_m)`` mod ``prime``: then ``f(at) = sum_j L_j(at) f(x_j)``.

    Cached: the server reuses the coefficients of one set of share holders for
    every secret they hold.
    """
    out = []
    for j, xj in enumerate(xs):
        num, den = 1, 1
        for m, xm in enumerate(xs):
            if m != j:
                num = num * (at - xm) % prime
                den = den * (xj - xm) % prime
        out.append(num * pow(den, -1, prime) % prime)
    return tuple(out)


def _check_shares(shares, prime: int) -> list[tuple[int, int]]:
    try:
        pairs = [(int(x), int(y)) for x, y in shares]
    except (TypeError, ValueError):
        raise ShareError("shares must be a sequence of (x, y) int pairs") from None
    seen = {}
    for x, y in pairs:
        if not 0 < x < prime:
            raise ShareError(f"a share has x={x}: x-coordinates must lie in [1, prime)")
        if not 0 <= y < prime:
            raise ShareError(f"the share at x={x} has y={y}: must lie in [0, prime)")
        if x in seen and seen[x] != y:
            raise ShareError(f"two different shares at x={x}: one of them is forged or corrupted")
        seen[x] = y
    return sorted(seen.items())


def shamir_reconstruct(shares, *, threshold: int, prime: int = PRIME) -> int:
    """The secret ``f(0)`` from at least ``threshold`` shares ``(x, f(x))``, by Lagrange interpolation.

    The first ``t`` shares (by ``x``) determine ``f``; every further share must
    lie on it too, otherwise :class:`ShareError` (a forged or corrupted share;
    with exactly ``t`` shares a forgery cannot be seen this way, which is why
    the protocol also checks a commitment). Fewer than ``t`` shares raise
    :class:`ThresholdError`.
    """
    prime = _check_prime(prime)
    t = _check_threshold(threshold)
    pairs = _check_shares(shares, prime)
    if len(pairs) < t:
        raise ThresholdError(f"{len(pairs)} distinct share(s) given: at least threshold={t} are needed")
    basis, extra = pairs[:t], pairs[t:]
    xs = tuple(x for x, _ in basis)
    ys = [y for _, y in basis]
    bad = []
    for x, y in extra:
        if sum(c * v for c, v in zip(lagrange_coefficients(xs, at=x, prime=prime), ys)) % prime != y:
            bad.append(x)
    if bad:
        raise ShareError(
            f"the {len(pairs)} shares do not lie on one polynomial of degree t-1 = {t - 1}: the shares at x={bad} "
            f"disagree with the polynomial through x={list(xs)}; at least one share is forged or corrupted"
        )
    return sum(c * v for c, v in zip(lagrange_coefficients(xs, at=0, prime=prime), ys)) % prime


# ----------------------------------------------------------------------------
# configuration and the neighbour graph
# ----------------------------------------------------------------------------


def full_graph(num_clients: int) -> tuple[tuple[int, ...], ...]:
    """Every client is every other client's neighbour (Bonawitz et al.: ``n - 1`` masks per client)."""
    n = validate.positive_int("num_clients", num_clients, minimum=2)
    return tuple(tuple(v for v in range(n) if v != u) for u in range(n))


def neighbour_graph(num_clients: int, *, k: int, rng: int | np.random.Generator) -> tuple[tuple[int, ...], ...]:
    """A random ``k``-regular graph for SecAgg+ (Bell et al. 2020): a Harary graph on shuffled clients.

    The clients are placed on a ring in a random order and each is joined to
    the ``k / 2`` nearest on either side. ``k`` must be even; ``k >= n - 1``
    gives the full graph. Bell et al. take ``k`` of order ``log n`` (here
    ``k >= 2 log2 n`` is a good default).

    Returns
    -------
    ``neighbours[u]``: the sorted neighbours of client ``u``.

    """
    n = validate.positive_int("num_clients", num_clients, minimum=2)
    k = validate.positive_int("k", k, minimum=2)
    if k % 2:
        raise ValueError(f"k={k}: must be even (each client joins k/2 clients on either side of a ring)")
    gen = seeding.as_generator(rng)
    if k >= n - 1:
        return full_graph(n)
    order = gen.permutation(n)
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n)
    out = []
    for u in range(n):
        i = int(pos[u])
        out.append(tuple(sorted(int(order[(i + s) % n]) for s in range(-(k // 2), k // 2 + 1) if s != 0)))
    return tuple(out)


@dataclass(frozen=True, kw_only=True)
class Config:
    """The public parameters of a round of secure aggregation (validated on creation).

    Attributes
    ----------
    num_clients
        ``n``; clients are ``0 .. n-1``.
    threshold
        ``t``: shares needed to rebuild a client's secret, and the fewest
        clients the protocol goes on with. ``2 <= t <= min_u |holders(u)|``
        (``n`` for the full graph, ``k + 1`` for a ``k``-regular graph).
    dim
        ``d``, the length of every input vector.
    clip
        Inputs are clipped to ``[-clip, clip]`` before encoding.
    frac_bits
        Fixed-point fractional bits; ``None`` picks :func:`max_frac_bits`.
    bits
        The ring ``Z / 2^bits`` of the masked vectors (32: one ``uint32`` per parameter).
    neighbours
        ``neighbours[u]`` = the clients ``u`` masks with and shares its secrets
        with (besides itself); ``None`` is the full graph (Bonawitz et al.), a
        :func:`neighbour_graph` gives SecAgg+.

    """

    num_clients: int
    threshold: int
    dim: int
    clip: float = 1.0
    frac_bits: int | None = None
    bits: int = 32
    neighbours: tuple[tuple[int, ...], ...] | None = field(default=None, repr=False)
    _holders: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = validate.positive_int("num_clients", self.num_clients, minimum=2)
        validate.positive_int("dim", self.dim)
        validate.positive_float("clip", self.clip)
        bits = _check_bits(self.bits)
        t = _check_threshold(self.threshold)
        if t <= n // 2 and self.neighbours is None:
            warnings.warn(
                ThresholdWarning(
                    f"threshold={t} with num_clients={n}: t <= n/2. Against a server that lies about who dropped, "
                    f"t > n/2 (here >= {n // 2 + 1}) is needed: otherwise it can ask two disjoint groups for the "
                    "shares of the same client's two secrets and unmask that client's input (Bonawitz et al. 2017)"
                ),
                stacklevel=3,
            )
        if self.neighbours is None:
            object.__setattr__(self, "neighbours", full_graph(n))
        nb = self.neighbours
        if len(nb) != n:
            raise ValueError(f"neighbours has {len(nb)} entries: must have one per client (num_clients={n})")
        sets = []
        for u, row in enumerate(nb):
            s = {_check_client(v, n, name=f"neighbours[{u}] entry") for v in row}
            if u in s:
                raise ValueError(f"neighbours[{u}] contains {u} itself: a client is not its own neighbour")
            sets.append(s)
        for u, s in enumerate(sets):
            for v in s:
                if u not in sets[v]:
                    raise ValueError(f"neighbours is not symmetric: {v} is in neighbours[{u}] but not {u} in [{v}]")
        object.__setattr__(self, "neighbours", tuple(tuple(sorted(s)) for s in sets))
        object.__setattr__(self, "_holders", tuple(tuple(sorted(s | {u})) for u, s in enumerate(sets)))
        smallest = min(len(h) for h in self._holders)
        if t > smallest:
            full = smallest == n
            what = (
                f"num_clients={n} (each client's secrets are shared among all {n} clients, itself included)"
                if full
                else f"{smallest}, the fewest share holders of a client (its neighbours and itself)"
            )
            raise ValueError(f"threshold={t}: must be at most {what}")
        if self.frac_bits is None:
            object.__setattr__(self, "frac_bits", max_frac_bits(num_clients=n, clip=self.clip, bits=bits))
        check_capacity(num_clients=n, clip=self.clip, frac_bits=self.frac_bits, bits=bits)

    def holders(self, client: int) -> tuple[int, ...]:
        """The clients holding shares of ``client``'s secrets: its neighbours and itself, sorted."""
        return self._holders[_check_client(client, self.num_clients)]

    @property
    def degree(self) -> int:
        """The largest number of neighbours of a client (``n - 1`` for the full graph)."""
        return max(len(row) for row in self.neighbours)

    @property
    def dtype(self) -> np.dtype:
        return ring_dtype(self.bits)

    def encode(self, x) -> np.ndarray:
        """:func:`fixed_point_encode` with this configuration's clip, fractional bits and ring."""
        x = np.asarray(x)
        if x.shape != (self.dim,):
            raise ValueError(f"x has shape {x.shape}: must be ({self.dim},) (config.dim)")
        return fixed_point_encode(x, clip=self.clip, frac_bits=self.frac_bits, bits=self.bits)

    def decode(self, q) -> np.ndarray:
        """:func:`fixed_point_decode` with this configuration's fractional bits and ring."""
        return fixed_point_decode(q, frac_bits=self.frac_bits, bits=self.bits)


# ----------------------------------------------------------------------------
# messages, one dataclass per phase
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AdvertiseKeys:
    """Phase 0, client to server: the public halves of the client's two X25519 key pairs."""

    client: int
    c_pk: bytes
    s_pk: bytes

    @property
    def nbytes(self) -> int:
        return ID_BYTES + 2 * KEY_BYTES


@dataclass(frozen=True)
class EncryptedShare:
    """Shares of the sender's ``s^SK`` and ``b`` for one receiver, ChaCha20-Poly1305-encrypted for it."""

    sender: int
    receiver: int
    ciphertext: bytes

    @property
    def nbytes(self) -> int:
        return 2 * ID_BYTES + len(self.ciphertext)


@dataclass(frozen=True)
class ShareKeys:
    """Phase 1, client to server: one :class:`EncryptedShare` per share holder and a commitment to ``b``."""

    client: int
    commitment: bytes
    shares: tuple[EncryptedShare, ...]

    @property
    def nbytes(self) -> int:
        return ID_BYTES + len(self.commitment) + sum(s.nbytes for s in self.shares)


@dataclass(frozen=True, eq=False)
class MaskedInput:
    """Phase 2, client to server: the masked vector ``y_u`` (``[d]``, integers mod ``2^bits``)."""

    client: int
    y: np.ndarray
    bits: int = 32

    @property
    def nbytes(self) -> int:
        return ID_BYTES + (self.y.size * self.bits + 7) // 8


@dataclass(frozen=True)
class UnmaskingShares:
    """Phase 3, client to server: the shares this client reveals, as ``(owner, share)`` pairs.

    ``self_mask_shares`` are shares of ``b_owner`` (the owner sent its masked
    input), ``key_shares`` of ``s_owner^SK`` (the owner dropped before it). A
    share's x-coordinate is ``client + 1``.
    """

    client: int
    self_mask_shares: tuple[tuple[int, int], ...]
    key_shares: tuple[tuple[int, int], ...]

    @property
    def nbytes(self) -> int:
        return ID_BYTES + (ID_BYTES + KEY_BYTES) * (len(self.self_mask_shares) + len(self.key_shares))


@dataclass(frozen=True)
class ClientKeys:
    """A client's private keys (never sent): ``c_sk`` encrypts shares, ``s_sk`` makes pairwise masks."""

    client: int
    c_sk: bytes = field(repr=False)
    s_sk: bytes = field(repr=False)


@dataclass(frozen=True)
class ClientSecrets:
    """A client's state after phase 1: its keys, its self-mask seed ``b`` and its own shares of both secrets."""

    keys: ClientKeys
    self_seed: bytes = field(repr=False)
    own_key_share: int = field(repr=False)
    own_self_mask_share: int = field(repr=False)

    @property
    def client(self) -> int:
        return self.keys.client


@dataclass(frozen=True, eq=False)
class Aggregate:
    """What the server ends with: the exact sum mod ``2^bits`` of the inputs of ``included``.

    Attributes
    ----------
    sum
        ``[d]`` integers mod ``2^bits``: ``sum_{u in included} x_u`` (decode with :meth:`Config.decode`).
    included
        ``U3``: the clients whose masked input is in the sum.
    recovered_self_masks
        Clients whose ``b_u`` was rebuilt (everyone in ``included``).
    recovered_keys
        Clients that dropped after sharing but before their masked input: their
        ``s_u^SK`` was rebuilt to remove their pairwise masks.

    """

    sum: np.ndarray
    included: tuple[int, ...]
    recovered_self_masks: tuple[int, ...]
    recovered_keys: tuple[int, ...]


def _commit(seed: bytes) -> bytes:
    return hashlib.sha256(b"fedlab-secagg commitment" + seed).digest()


# ----------------------------------------------------------------------------
# phase 0: advertise keys
# ----------------------------------------------------------------------------


def advertise_keys(
    client: int, *, config: Config, rng: int | np.random.Generator | None
) -> tuple[ClientKeys, AdvertiseKeys]:
    """Phase 0 (client): two fresh X25519 key pairs; returns ``(private keys, message)``."""
    u = _check_client(client, config.num_clients)
    gen = None if rng is None else seeding.as_generator(rng)
    c_sk, c_pk = keypair(rng=gen)
    s_sk, s_pk = keypair(rng=gen)
    return ClientKeys(u, c_sk, s_sk), AdvertiseKeys(u, c_pk, s_pk)


def _require(count: int, config: Config, what: str) -> None:
    if count < config.threshold:
        raise ThresholdError(
            f"only {count} client(s) {what}: the threshold is t = {config.threshold}, so the protocol refuses to go on"
        )


_P25519 = 2**255 - 19
_LOW_ORDER_X = frozenset(
    {
        0,
        1,
        _P25519 - 1,
        325606250916557431795983626356110631294008115727848805560023387167927233504,
        39382357235489614581723060781553021112529911719440698176882885853963445705823,
    }
)
"""x-coordinates (mod p) of the points of small order on Curve25519: a key agreement with one of them gives a
shared secret that does not depend on the private key (libsodium's and RFC 7748 Sec. 6.1's list)."""


def check_public_key(public: bytes, *, name: str = "public key") -> bytes:
    """``public`` if it is a usable X25519 public key; ``ValueError`` naming it for an all-zero or low-order point.

    Such a key makes the pairwise secret predictable (the all-zero point gives an all-zero secret), so a
    malicious client or server that injects it could learn or fix the masks.
    """
    raw = _check_seed(public, name=name)
    x = (int.from_bytes(raw, "little") & ((1 << 255) - 1)) % _P25519
    if x in _LOW_ORDER_X:
        raise ValueError(
            f"{name} = {raw.hex()[:16]}...: a low-order point of Curve25519 (x = {x if x < 2 else 'small order'}); "
            "key agreement with it gives a secret anyone can predict, so the roster refuses it"
        )
    return raw


def collect_keys(messages: Sequence[AdvertiseKeys], *, config: Config) -> tuple[AdvertiseKeys, ...]:
    """Phase 0 (server): check the adverts and return the roster ``U1`` sorted by client.

    Raises :class:`ThresholdError` when fewer than ``t`` clients advertised, and ``ValueError`` naming the
    client for an all-zero or low-order public key (:func:`check_public_key`).
    """
    seen = {}
    for m in messages:
        if not isinstance(m, AdvertiseKeys):
            raise ValueError(f"messages contains a {type(m).__name__}: expected AdvertiseKeys")
        u = _check_client(m.client, config.num_clients, name="AdvertiseKeys.client")
        if u in seen:
            raise ValueError(f"client {u} advertised keys twice")
        check_public_key(m.c_pk, name=f"client {u}'s c_pk")
        check_public_key(m.s_pk, name=f"client {u}'s s_pk")
        seen[u] = m
    _require(len(seen), config, "advertised keys")
    return tuple(seen[u] for u in sorted(seen))


def _roster_map(roster: Sequence[AdvertiseKeys], config: Config) -> dict[int, AdvertiseKeys]:
    out = {m.client: m for m in roster}
    if len(out) != len(roster):
        raise ValueError("roster lists a client twice")
    for u in out:
        _check_client(u, config.num_clients, name="roster client")
    return out


# ----------------------------------------------------------------------------
# phase 1: share keys
# ----------------------------------------------------------------------------


def _share_nonce(sender: int, receiver: int) -> bytes:
    return struct.pack(">II", sender, receiver) + bytes(4)


def share_keys(
    keys: ClientKeys,
    roster: Sequence[AdvertiseKeys],
    *,
    config: Config,
    rng: int | np.random.Generator | None,
) -> tuple[ClientSecrets, ShareKeys]:
    """Phase 1 (client): draw ``b_u``, Shamir-share ``s_u^SK`` and ``b_u``, encrypt each holder's shares.

    The holders are this client's neighbours in ``roster`` (``U1``) and
    itself; it keeps its own shares. Each pair of shares travels as
    ``ChaCha20-Poly1305(key = agree(c_u^SK, c_v^PK), nonce = (u, v))``.
    Raises :class:`ThresholdError` when fewer than ``t`` holders are online.
    """
    u = keys.client
    peers = _roster_map(roster, config)
    if u not in peers:
        raise ValueError(f"client {u} is not in the roster: it did not advertise keys")
    if public_key(keys.s_sk) != peers[u].s_pk or public_key(keys.c_sk) != peers[u].c_pk:
        raise ValueError(f"client {u}'s keys do not match its entry in the roster")
    _require(len(peers), config, "are in the roster")
    holders = [v for v in config.holders(u) if v in peers]
    if len(holders) < config.threshold:
        raise ThresholdError(
            f"client {u} has only {len(holders)} share holders online (its neighbours in the roster and itself): "
            f"the threshold is t = {config.threshold}, so its masks could not be recovered"
        )
    gen = None if rng is None else seeding.as_generator(rng)
    self_int = random_field_element(rng=gen)
    self_seed = self_int.to_bytes(KEY_BYTES, "little")
    xs = [v + 1 for v in holders]
    key_shares = shamir_share(int.from_bytes(keys.s_sk, "little"), threshold=config.threshold, xs=xs, rng=gen)
    seed_shares = shamir_share(self_int, threshold=config.threshold, xs=xs, rng=gen)
    out, own = [], None
    for v, (_, ks), (_, bs) in zip(holders, key_shares, seed_shares):
        if v == u:
            own = (ks, bs)
            continue
        aead = ChaCha20Poly1305(agree(keys.c_sk, peers[v].c_pk, context=_SHARE_INFO))
        plain = struct.pack(">II", u, v) + ks.to_bytes(KEY_BYTES, "little") + bs.to_bytes(KEY_BYTES, "little")
        out.append(EncryptedShare(u, v, aead.encrypt(_share_nonce(u, v), plain, _AAD)))
    secrets = ClientSecrets(keys, self_seed, own[0], own[1])
    return secrets, ShareKeys(u, _commit(self_seed), tuple(out))


def route_shares(messages: Sequence[ShareKeys], *, config: Config) -> dict[int, tuple[EncryptedShare, ...]]:
    """Phase 1 (server): deliver each encrypted share to its receiver; ``U2`` = the senders.

    Returns ``{v: shares addressed to v}`` for every ``v`` in ``U2`` (shares
    for clients that did not send their own are dropped, as in Bonawitz et al.).
    Raises :class:`ThresholdError` when fewer than ``t`` clients sent shares.
    """
    senders = {}
    for m in messages:
        u = _check_client(m.client, config.num_clients, name="ShareKeys.client")
        if u in senders:
            raise ValueError(f"client {u} sent its shares twice")
        if len(m.commitment) != KEY_BYTES:
            raise ValueError(f"client {u}'s commitment is {len(m.commitment)} bytes: must be {KEY_BYTES}")
        senders[u] = m
    _require(len(senders), config, "sent their shares")
    inbox: dict[int, list[EncryptedShare]] = {u: [] for u in sorted(senders)}
    for u, m in senders.items():
        for e in m.shares:
            if e.sender != u:
                raise ValueError(f"client {u}'s message carries a share claiming to be from client {e.sender}")
            if e.receiver not in config.neighbours[u]:
                raise ValueError(f"client {u} sent a share to client {e.receiver}, which is not its neighbour")
            if e.receiver in inbox:
                inbox[e.receiver].append(e)
    return {v: tuple(sorted(es, key=lambda e: e.sender)) for v, es in inbox.items()}


# ----------------------------------------------------------------------------
# phase 2: masked input
# ----------------------------------------------------------------------------


def mask_input(
    secrets: ClientSecrets,
    x,
    *,
    roster: Sequence[AdvertiseKeys],
    inbox: Sequence[EncryptedShare],
    config: Config,
) -> MaskedInput:
    """Phase 2 (client): mask the encoded input with every partner that shared keys, and with ``b_u``.

    The partners are the senders of the shares this client received (its
    neighbours in ``U2``); for each, ``s_uv = pairwise_seed(s_u^SK, s_v^PK)``.

    Parameters
    ----------
    x
        ``[config.dim]`` the client's input, already encoded (:meth:`Config.encode`).

    """
    u = secrets.client
    x = as_ring(x, bits=config.bits)
    if x.size != config.dim:
        raise ValueError(f"client {u}'s input has {x.size} entries: config.dim is {config.dim}")
    peers = _roster_map(roster, config)
    partners = sorted({e.sender for e in inbox})
    for v in partners:
        if v not in config.neighbours[u] or v not in peers:
            raise ValueError(f"client {u} got a share from client {v}, which is not a neighbour in the roster")
    seeds = {v: pairwise_seed(secrets.keys.s_sk, peers[v].s_pk, me=u, peer=v) for v in partners}
    return MaskedInput(u, mask_vector(x, client=u, pair_seeds=seeds, self_seed=secrets.self_seed, bits=config.bits),
                       config.bits)  # fmt: skip


def collect_masked(masked: Sequence[MaskedInput], *, config: Config) -> tuple[int, ...]:
    """Phase 2 (server): check the masked inputs' sizes and return ``U3`` (sorted).

    Raises ``ValueError`` for a vector of the wrong length or type, and
    :class:`ThresholdError` when fewer than ``t`` arrived.
    """
    seen = set()
    for m in masked:
        u = _check_client(m.client, config.num_clients, name="MaskedInput.client")
        if u in seen:
            raise ValueError(f"client {u} sent two masked inputs")
        y = np.asarray(m.y)
        if y.shape != (config.dim,) or y.dtype != config.dtype:
            raise ValueError(
                f"client {u}'s masked input has shape {y.shape} and dtype {y.dtype}: "
                f"must be ({config.dim},) {config.dtype} (config.dim, {config.bits}-bit ring)"
            )
        seen.add(u)
    _require(len(seen), config, "sent their masked input")
    return tuple(sorted(seen))


# ----------------------------------------------------------------------------
# phase 3: unmasking
# ----------------------------------------------------------------------------


def open_share(keys: ClientKeys, share: EncryptedShare, *, sender_c_pk: bytes) -> tuple[int, int]:
    """Decrypt one received share: ``(share of s_sender^SK, share of b_sender)``.

    Raises :class:`ShareError` if it fails authentication or names other clients.
    """
    aead = ChaCha20Poly1305(agree(keys.c_sk, sender_c_pk, context=_SHARE_INFO))
    try:
        plain = aead.decrypt(_share_nonce(share.sender, share.receiver), share.ciphertext, _AAD)
    except InvalidTag:
        raise ShareError(
            f"the share from client {share.sender} to client {share.receiver} failed authentication: "
            "it was forged or corrupted in transit"
        ) from None
    sender, receiver = struct.unpack(">II", plain[:8])
    if (sender, receiver) != (share.sender, share.receiver) or receiver != keys.client:
        raise ShareError(f"a share claims to be from {share.sender} to {share.receiver} but says {sender}->{receiver}")
    return int.from_bytes(plain[8:40], "little"), int.from_bytes(plain[40:72], "little")


def unmask_shares(
    secrets: ClientSecrets,
    *,
    inbox: Sequence[EncryptedShare],
    roster: Sequence[AdvertiseKeys],
    survivors: Sequence[int],
    config: Config,
) -> UnmaskingShares:
    """Phase 3 (client): reveal, per client ``u`` it holds shares of, the share of ``b_u`` if ``u`` sent
    its masked input (``u`` in ``survivors`` = ``U3``), else the share of ``s_u^SK`` - never both.

    Refuses (:class:`ThresholdError`) when ``survivors`` has fewer than ``t`` clients.
    """
    u = secrets.client
    alive = set(int(v) for v in survivors)
    _require(len(alive), config, "sent their masked input")
    if u not in alive:
        raise ValueError(f"client {u} is not among the survivors: it did not send a masked input, so it takes no part")
    peers = _roster_map(roster, config)
    self_shares, key_shares = [(u, secrets.own_self_mask_share)], []
    for e in inbox:
        if e.receiver != u:
            raise ValueError(f"client {u}'s inbox holds a share addressed to client {e.receiver}")
        key_share, seed_share = open_share(secrets.keys, e, sender_c_pk=peers[e.sender].c_pk)
        if e.sender in alive:
            self_shares.append((e.sender, seed_share))
        else:
            key_shares.append((e.sender, key_share))
    return UnmaskingShares(u, tuple(sorted(self_shares)), tuple(sorted(key_shares)))


def _gather(responses: Sequence[UnmaskingShares], kind: str) -> dict[int, list[tuple[int, int]]]:
    out: dict[int, list[tuple[int, int]]] = {}
    for r in responses:
        for owner, value in getattr(r, kind):
            out.setdefault(int(owner), []).append((r.client + 1, int(value)))
    return out


def _rebuild(shares: list[tuple[int, int]], *, owner: int, what: str, config: Config) -> int:
    if len(shares) < config.threshold:
        raise ThresholdError(
            f"only {len(shares)} of client {owner}'s share holders answered with a share of its {what}: "
            f"the threshold is t = {config.threshold}, so the server refuses to unmask"
        )
    try:
        return shamir_reconstruct(shares, threshold=config.threshold)
    except ShareError as err:
        raise ShareError(f"client {owner}'s {what}: {err}") from None


def unmask(
    masked: Sequence[MaskedInput],
    responses: Sequence[UnmaskingShares],
    *,
    roster: Sequence[AdvertiseKeys],
    share_messages: Sequence[ShareKeys],
    config: Config,
) -> Aggregate:
    """Phase 3 (server): the exact sum of the masked inputs' plain inputs, mod ``2^bits``.

    ``sum_u y_u - sum_{u in U3} PRG(b_u) - (the pairwise masks of the clients in
    U2 - U3 with their neighbours in U3)``. Each ``b_u`` is rebuilt from ``t``
    or more shares and checked against ``u``'s commitment; each ``s_u^SK``
    against ``u``'s advertised public key.

    Raises
    ------
    ThresholdError
        Fewer than ``t`` masked inputs or answers, or fewer than ``t`` shares of a needed secret.
    ShareError
        A rebuilt secret fails its check, or the shares are inconsistent (forged or corrupted).
    ValueError
        Malformed messages (wrong vector length, a client answering twice, ...).

    """
    u3 = collect_masked(masked, config=config)
    peers = _roster_map(roster, config)
    commitments = {m.client: m.commitment for m in share_messages}
    u2 = set(commitments)
    if not set(u3) <= u2:
        raise ValueError(f"clients {sorted(set(u3) - u2)} sent a masked input without sharing their keys first")
    answered = set()
    for r in responses:
        if r.client in answered:
            raise ValueError(f"client {r.client} sent its unmasking shares twice")
        if r.client not in u3:
            raise ValueError(f"client {r.client} answered the unmasking request but sent no masked input")
        answered.add(r.client)
    _require(len(answered), config, "answered the unmasking request")
    for r in responses:
        both = {o for o, _ in r.self_mask_shares} & {o for o, _ in r.key_shares}
        if both:
            raise ValueError(f"client {r.client} revealed both secrets of clients {sorted(both)}: never allowed")
    self_shares, key_shares = _gather(responses, "self_mask_shares"), _gather(responses, "key_shares")
    total = np.zeros(config.dim, dtype=config.dtype)
    for m in masked:
        total += m.y
    for u in u3:
        b = _rebuild(self_shares.get(u, []), owner=u, what="self-mask seed", config=config)
        seed = b.to_bytes(KEY_BYTES, "little")
        if _commit(seed) != commitments[u]:
            raise ShareError(
                f"client {u}'s rebuilt self-mask seed does not match its commitment: a share was forged or corrupted"
            )
        total -= prg(seed, config.dim, bits=config.bits)
    dropped = sorted(u2 - set(u3))
    for u in dropped:
        s = _rebuild(key_shares.get(u, []), owner=u, what="mask key", config=config)
        s_sk = s.to_bytes(KEY_BYTES, "little")
        if not is_clamped(s_sk) or public_key(s_sk) != peers[u].s_pk:
            raise ShareError(
                f"client {u}'s rebuilt mask key does not match its advertised public key: "
                "a share was forged or corrupted"
            )
        for v in config.neighbours[u]:
            if v in u3:  # v added +PRG(s_uv) if u > v, else subtracted it
                mask = prg(pairwise_seed(s_sk, peers[v].s_pk, me=u, peer=v), config.dim, bits=config.bits)
                if u > v:
                    total -= mask
                else:
                    total += mask
    return Aggregate(_reduce(total, config.bits), u3, u3, tuple(dropped))


# ----------------------------------------------------------------------------
# one whole round
# ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class RoundResult:
    """One round of :func:`run_round`.

    Attributes
    ----------
    sum
        ``[d]`` float64: the decoded sum of the included clients' (clipped,
        encoded) inputs; ``None`` if the server refused.
    aggregate
        The server's :class:`Aggregate` (``None`` if it refused).
    refusal
        Why the protocol stopped (the :class:`ThresholdError` message), else ``None``.
    participants
        ``{phase: clients that sent that phase's message}`` (``U1 .. U4``).
    masked
        ``{client: y_u}``: every masked vector the server received.
    bytes_sent
        ``[n]`` bytes each client sent over the round (0 for one that never
        started). The raw float32 update is ``4 * d`` bytes.
    client_mask_seconds
        ``{client: seconds}`` spent in :func:`mask_input` (masking only).
    server_seconds
        Time of the server's :func:`unmask` (sum and mask removal).

    """

    sum: np.ndarray | None
    aggregate: Aggregate | None
    refusal: str | None
    participants: Mapping[str, tuple[int, ...]]
    masked: Mapping[int, np.ndarray]
    bytes_sent: np.ndarray
    client_mask_seconds: Mapping[int, float]
    server_seconds: float

    @property
    def included(self) -> tuple[int, ...]:
        """The clients whose input is in the sum (empty if refused)."""
        return () if self.aggregate is None else self.aggregate.included


def _dropouts(dropouts, n: int, phases: Sequence[str] = PHASES) -> dict[int, int]:
    """``{client: index of the phase it drops before}`` from ``{client: phase name}`` (``phases``: the protocol's)."""
    out = {}
    for u, phase in (dropouts or {}).items():
        u = _check_client(u, n, name="dropouts key")
        validate.one_of(f"dropouts[{u}]", phase, phases)
        out[u] = phases.index(phase)
    return out


def _check_inputs(inputs, config: Config) -> np.ndarray:
    """``inputs`` as an array of shape ``(num_clients, dim)``, or a ValueError saying what it has."""
    x = np.asarray(inputs)
    if x.ndim != 2 or x.shape != (config.num_clients, config.dim):
        raise ValueError(
            f"inputs has shape {x.shape}: must be (num_clients, dim) = ({config.num_clients}, {config.dim})"
        )
    return x


def _key_base(rng, seeded_keys) -> int | None:
    """The seed every client's keys and masks derive from (``None``: os.urandom), with the rule for ``rng``."""
    if not isinstance(seeded_keys, bool):
        raise ValueError(f"seeded_keys={seeded_keys!r}: must be True or False")
    if rng is not None and not seeded_keys:
        raise ValueError(
            f"rng={rng!r}: a seed makes every key and mask a function of it, and two rounds with the same seed let "
            "the server subtract a client's masked inputs; keys come from os.urandom (rng=None) unless you pass "
            "seeded_keys=True (teaching only)"
        )
    if seeded_keys and rng is None:
        raise ValueError("seeded_keys=True needs rng= (a seed or numpy Generator) to seed the keys from")
    return None if rng is None else int(seeding.as_generator(rng).integers(0, 2**63 - 1))


class ThresholdWarning(UserWarning):
    """The Shamir threshold is at most half the clients: safe only against an honest-but-curious server."""


class KeyReuseWarning(UserWarning):
    """Seeded keys were used again on different inputs: every key and mask repeats, and the masks no longer hide."""


_SEEDED_ROUNDS: dict[int, str] = {}  # key stream -> fingerprint of the inputs it masked (reuse detection only)


def _fingerprint(x: np.ndarray, config: Config, *, encoded: bool = False) -> str:
    """What the masks hide: the encoded inputs (a replay of the same inputs under the same keys reveals nothing new)."""
    h = hashlib.sha256(repr((config.num_clients, config.dim, config.bits)).encode())
    for row in x:
        h.update(np.ascontiguousarray(row if encoded else config.encode(row)).tobytes())
    return h.hexdigest()


def run_round(
    inputs,
    *,
    config: Config,
    rng: int | np.random.Generator | None = None,
    seeded_keys: bool = False,
    dropouts: Mapping[int, str] | None = None,
    on_refusal: str = "raise",
    encoded: bool = False,
) -> RoundResult:
    """One round of secure aggregation with every client and the server in this process.

    Parameters
    ----------
    inputs
        ``[n, d]`` floats: client ``u``'s update is ``inputs[u]`` (clipped and
        encoded with the configuration's fixed-point format).
    config
        The round's :class:`Config`.
    rng
        ``None`` (default): every key, self-mask seed and Shamir polynomial
        from ``os.urandom``, what a deployment does. A seed or Generator makes
        them all deterministic, for teaching, and only with ``seeded_keys=True``.
        Client ``u`` draws from its own child stream, whatever the others do.
    seeded_keys
        The teaching flag that allows ``rng``. Two rounds with the same seed
        reuse every key and mask, so the server can subtract their masked
        inputs and learn each client's change of input: using the same key
        stream again on different inputs warns (:class:`KeyReuseWarning`).
    dropouts
        ``{client: phase}``: the client sends nothing from that phase on
        (``"advertise"``, ``"share"``, ``"masked_input"`` or ``"unmask"``; see :data:`PHASES`).
    on_refusal
        ``"raise"`` (default) raises :class:`ThresholdError` when too few
        clients remain; ``"return"`` returns a result with ``sum=None`` and the
        reason in ``refusal`` (for displays).
    encoded
        ``False`` (default): ``inputs`` are floats, encoded here with the
        configuration's fixed-point format. ``True``: ``inputs`` are already
        ring vectors (``[n, d]`` integers mod ``2^bits``, e.g. distributed DP's
        noised, modular-clipped vectors, :func:`fedlab.distributed_dp.encode_cohort`),
        masked as they are; ``sum`` is then the ring sum (``[d]`` in
        :func:`ring_dtype`), not decoded, and fitting the sum in the ring is the
        caller's business (the configuration's ``clip``/``frac_bits`` are unused).

    """
    n = config.num_clients
    validate.one_of("on_refusal", on_refusal, ("raise", "return"))
    x = _check_inputs(inputs, config)
    drop = _dropouts(dropouts, n)
    if not isinstance(encoded, bool):
        raise ValueError(f"encoded={encoded!r}: must be True or False")
    if encoded:
        x = np.stack([as_ring(row, bits=config.bits, name=f"inputs[{u}]") for u, row in enumerate(x)])
    base = _key_base(rng, seeded_keys)
    if base is not None:
        mark = _fingerprint(x, config, encoded=encoded)
        if _SEEDED_ROUNDS.setdefault(base, mark) != mark:
            warnings.warn(
                KeyReuseWarning(
                    f"rng={rng!r}: these seeded keys already masked different inputs in this process; every key and "
                    "mask repeats, so the server can subtract the two rounds' masked inputs and read each client's "
                    "change. Use a new seed per round, or rng=None (os.urandom)."
                ),
                stacklevel=2,
            )

    def child(u: int, phase: int):
        return None if base is None else np.random.default_rng([base, u, phase])

    def online(u: int, phase: int) -> bool:
        return drop.get(u, len(PHASES)) > phase

    sent = np.zeros(n, dtype=np.int64)
    participants: dict[str, tuple[int, ...]] = {}
    masked_vectors: dict[int, np.ndarray] = {}
    times: dict[int, float] = {}
    server_seconds = 0.0
    try:
        keys, adverts = {}, []
        for u in range(n):
            if online(u, 0):
                keys[u], msg = advertise_keys(u, config=config, rng=child(u, 0))
                adverts.append(msg)
                sent[u] += msg.nbytes
        participants["advertise"] = tuple(sorted(keys))
        roster = collect_keys(adverts, config=config)
        secrets, share_msgs = {}, []
        for u in sorted(keys):
            if online(u, 1):
                secrets[u], msg = share_keys(keys[u], roster, config=config, rng=child(u, 1))
                share_msgs.append(msg)
                sent[u] += msg.nbytes
        participants["share"] = tuple(sorted(secrets))
        inboxes = route_shares(share_msgs, config=config)
        masked = []
        for u in sorted(secrets):
            if online(u, 2):
                enc = x[u] if encoded else config.encode(x[u])
                t0 = time.perf_counter()
                m = mask_input(secrets[u], enc, roster=roster, inbox=inboxes[u], config=config)
                times[u] = time.perf_counter() - t0
                masked.append(m)
                masked_vectors[u] = m.y
                sent[u] += m.nbytes
        participants["masked_input"] = tuple(masked_vectors)
        survivors = collect_masked(masked, config=config)
        responses = []
        for u in survivors:
            if online(u, 3):
                r = unmask_shares(secrets[u], inbox=inboxes[u], roster=roster, survivors=survivors, config=config)
                responses.append(r)
                sent[u] += r.nbytes
        participants["unmask"] = tuple(r.client for r in responses)
        t0 = time.perf_counter()
        agg = unmask(masked, responses, roster=roster, share_messages=share_msgs, config=config)
        server_seconds = time.perf_counter() - t0
    except ThresholdError as err:
        if on_refusal == "raise":
            raise
        for phase in PHASES:
            participants.setdefault(phase, ())
        return RoundResult(None, None, str(err), participants, masked_vectors, sent, times, server_seconds)
    total = agg.sum if encoded else config.decode(agg.sum)
    return RoundResult(total, agg, None, participants, masked_vectors, sent, times, server_seconds)


def plain_sum(inputs, *, config: Config, clients: Sequence[int]) -> np.ndarray:
    """The sum mod ``2^bits`` of the encoded inputs of ``clients``, computed in the clear (the oracle)."""
    x = np.asarray(inputs)
    total = np.zeros(config.dim, dtype=config.dtype)
    for u in clients:
        total += config.encode(x[_check_client(u, config.num_clients)])
    return _reduce(total, config.bits)


def expansion(result: RoundResult, *, config: Config) -> float:
    """Mean bytes sent per client that finished the round, over the raw float32 update (``4 * dim`` bytes)."""
    done = result.participants.get("unmask", ())
    if not done:
        raise ValueError("no client finished the round: nothing to compare")
    return float(np.mean(result.bytes_sent[list(done)]) / (4 * config.dim))

