"""Smaller updates on the way up: k-bit quantization and top-k sparsification (lesson 04).

A phone's upload is the expensive part of a round. Two standard ways to shrink
a client's delta, each a pair of pure functions and a small frozen message:

- **Uniform k-bit quantization** (:func:`quantize` -> :class:`Quantized` ->
  :func:`dequantize`). Per tensor, ``lo = min(x)`` and
  ``step = (max(x) - lo) / (2**bits - 1)``; every entry becomes an integer
  code in ``0 .. 2**bits - 1`` and is decoded as ``lo + code * step``.
  *Stochastic rounding* rounds ``t = (x - lo) / step`` up with probability
  ``t - floor(t)``, so the decoded value is **unbiased**,
  ``E[lo + code * step] = x``, with error at most one ``step`` (QSGD, Alistarh
  et al. 2017; Suresh et al. 2017). *Nearest* rounding has error at most
  ``step / 2`` but is biased, and the bias does not average out over clients.
- **Top-k sparsification** (:func:`topk` -> :class:`Sparse` -> :func:`densify`):
  keep the ``k = num_kept(n, fraction)`` entries of largest magnitude. It is
  biased; **error feedback** (:func:`topk_with_feedback`; Seide et al. 2014,
  Stich et al. 2018, Karimireddy et al. 2019) keeps what was not sent as a
  *residual* on the device and adds it to the next round's delta, so that
  ``sum of everything sent + final residual = sum of all deltas``.

Byte accounting (:func:`message_bytes`), exact and documented:

- a :class:`Quantized` tensor of ``n`` entries costs ``ceil(n * bits / 8)``
  bytes of bit-packed codes plus 8 bytes for ``lo`` and ``step`` (two float32);
- a :class:`Sparse` vector of size ``n`` with ``k`` kept entries costs ``4 k``
  bytes of float32 values plus the positions, either as ``k`` int32 indices
  (``4 k`` bytes) or as a bitmap of ``n`` bits (``ceil(n / 8)`` bytes),
  whichever is smaller.

Tensor shapes are not counted: server and clients both know the model.

For :func:`fedlab.fedavg.run`'s ``uplink`` hook, :func:`quantized_uplink` and
:func:`topk_uplink` return callables ``uplink(delta, *, client, rng) ->
(decoded_delta, nbytes)``; the top-k one keeps each client's residual in an
explicit :class:`Residuals` object. Every random choice uses the ``rng``
argument (an int seed or ``numpy.random.Generator``).

This module imports only numpy and fedlab's math.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fedlab import params as P
from fedlab import seeding, validate

MAX_BITS = 32
"""Largest supported bit width (codes are stored as unsigned ints of up to 32 bits)."""

ROUNDINGS = ("stochastic", "nearest")

__all__ = [
    "MAX_BITS",
    "Quantized",
    "QuantizedUplink",
    "Residuals",
    "Sparse",
    "TopKUplink",
    "dequantize",
    "densify",
    "message_bytes",
    "num_kept",
    "quantize",
    "quantized_uplink",
    "topk",
    "topk_uplink",
    "topk_with_feedback",
]


# ----------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------


def check_bits(bits) -> int:
    """Return ``bits`` as an int, or raise ``ValueError`` unless it is an int in ``1..32``."""
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bits={bits!r}: must be an int in 1..{MAX_BITS}")
    return int(bits)


def _finite(name: str, x) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} has dtype {arr.dtype}: must be numeric")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinity: only finite values can be compressed")
    return arr


def _code_dtype(bits: int):
    return np.uint8 if bits <= 8 else np.uint16 if bits <= 16 else np.uint32


# ----------------------------------------------------------------------------
# quantization
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Quantized:
    """One tensor quantized to ``bits`` bits per entry.

    Attributes
    ----------
    codes
        Unsigned ints in ``0 .. 2**bits - 1``, the shape of the original tensor.
    lo
        The tensor's minimum (a float32 value).
    step
        Grid spacing (a float32 value, rounded up so the grid covers the maximum);
        ``0`` for a constant tensor.
    bits
        Bits per code, ``1..32``.

    The decoded tensor is ``lo + codes * step`` (:func:`dequantize`).
    """

    codes: np.ndarray
    lo: float
    step: float
    bits: int

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.codes.shape)


def _step(lo: np.float32, hi: np.float32, bits: int) -> float:
    """``(hi - lo) / (2**bits - 1)`` as a float32 value, rounded up so that ``lo + L * step >= hi``."""
    levels = (1 << bits) - 1
    exact = (float(hi) - float(lo)) / levels  # float32 operands: the difference is exact in float64
    if exact == 0.0:
        return 0.0
    s = np.float32(exact)
    if float(s) < exact:
        s = np.nextafter(s, np.float32(np.inf))
    return float(s)


def quantize(
    x,
    *,
    bits: int,
    rng: int | np.random.Generator | None = None,
    rounding: str = "stochastic",
) -> Quantized:
    """Uniform ``bits``-bit quantization of one tensor over its own range ``[min, max]``.

    With ``L = 2**bits - 1``, ``lo = min(x)`` and ``step = (max(x) - lo) / L``
    (stored as float32, rounded up), each entry's position on the grid is
    ``t = (x - lo) / step`` in ``[0, L]``. Stochastic rounding draws one uniform
    ``u`` per entry (``rng.random(x.shape)``, C order) and sends
    ``code = floor(t) + [u < t - floor(t)]``; nearest rounding sends
    ``round(t)``.

    Guarantees (exact arithmetic; the decoded float32 adds float32 rounding):
    ``|x - dequantize(q)| <= step`` (``step / 2`` for nearest), and for
    stochastic rounding ``E[dequantize(q)] = x`` (unbiased). The minimum and
    any entry already on the grid are decoded exactly.

    Parameters
    ----------
    x
        Any-shaped array of finite numbers (cast to float32).
    bits
        Bits per entry, an int in ``1..32``.
    rng
        Seed or Generator for stochastic rounding (required for it; unused for nearest).
    rounding
        ``"stochastic"`` (unbiased, the default) or ``"nearest"`` (deterministic).

    Returns
    -------
    Quantized

    Raises
    ------
    ValueError
        If ``bits`` is outside ``1..32``, ``rounding`` is unknown, ``rng`` is
        missing for stochastic rounding, or ``x`` is not finite.

    """
    bits = check_bits(bits)
    validate.one_of("rounding", rounding, ROUNDINGS)
    if rounding == "stochastic":
        if rng is None:
            raise ValueError("rng=None: stochastic rounding needs an int seed or a numpy.random.Generator")
        gen = seeding.as_generator(rng)
    arr = _finite("x", x)
    levels = (1 << bits) - 1
    if arr.size == 0:
        return Quantized(np.zeros(arr.shape, _code_dtype(bits)), 0.0, 0.0, bits)
    lo, hi = arr.min(), arr.max()
    step = _step(lo, hi, bits)
    if step == 0.0:
        t = np.zeros(arr.shape, dtype=np.float64)
    else:
        t = (arr.astype(np.float64) - float(lo)) / step
    if rounding == "stochastic":
        low = np.floor(t)
        codes = low + (gen.random(arr.shape) < (t - low))
    else:
        codes = np.rint(t)
    codes = np.clip(codes, 0, levels).astype(_code_dtype(bits))
    return Quantized(codes, float(lo), step, bits)


def dequantize(q: Quantized) -> np.ndarray:
    """The decoded tensor ``lo + codes * step`` as float32, the shape of the original."""
    if not isinstance(q, Quantized):
        raise ValueError(f"q is a {type(q).__name__}: must be a fedlab.compress.Quantized (from quantize)")
    return (q.lo + q.codes.astype(np.float64) * q.step).astype(np.float32)


# ----------------------------------------------------------------------------
# top-k sparsification and error feedback
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sparse:
    """The ``k`` kept entries of a tensor: positions in its flattened (C-order) view and their values.

    Attributes
    ----------
    indices
        ``[k]`` int64 positions into ``x.ravel()``, ascending.
    values
        ``[k]`` float32 values ``x.ravel()[indices]``.
    shape
        Shape of the original tensor; :func:`densify` restores it.
    """

    indices: np.ndarray
    values: np.ndarray
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        """Number of entries of the original tensor."""
        return int(np.prod(self.shape, dtype=np.int64))


def num_kept(size: int, fraction: float) -> int:
    """``k = max(1, floor(fraction * size + 1/2))`` entries kept of ``size`` (0 for an empty tensor)."""
    validate.positive_int("size", size, minimum=0)
    validate.fraction("fraction", fraction)
    if size == 0:
        return 0
    return int(min(size, max(1, math.floor(fraction * size + 0.5))))


def topk(x, *, fraction: float) -> Sparse:
    """Keep the ``k = num_kept(x.size, fraction)`` entries of ``x`` with the largest ``|x|``.

    Ties in magnitude go to the lower flat index (a stable sort), so the
    result is deterministic.

    Parameters
    ----------
    x
        Any-shaped array of finite numbers (cast to float32).
    fraction
        Share of entries to keep, in ``(0, 1]``.

    Returns
    -------
    Sparse
        Indices ascending; ``densify`` gives ``x`` with every other entry zeroed.

    """
    validate.fraction("fraction", fraction)
    arr = _finite("x", x)
    flat = arr.ravel()
    k = num_kept(flat.size, fraction)
    idx = np.sort(np.argsort(-np.abs(flat), kind="stable")[:k]).astype(np.int64)
    return Sparse(idx, flat[idx].astype(np.float32), tuple(arr.shape))


def densify(s: Sparse) -> np.ndarray:
    """The dense float32 tensor of ``s``: its values at its indices, zeros elsewhere, in its shape."""
    if not isinstance(s, Sparse):
        raise ValueError(f"s is a {type(s).__name__}: must be a fedlab.compress.Sparse (from topk)")
    out = np.zeros(s.size, dtype=np.float32)
    out[s.indices] = s.values
    return out.reshape(s.shape)


def topk_with_feedback(delta, residual, *, fraction: float) -> tuple[Sparse, np.ndarray]:
    """One step of top-k with error feedback: send the top-k of ``delta + residual``, keep the rest.

    ``corrected = delta + residual``; ``message = topk(corrected)``;
    ``new_residual = corrected - densify(message)`` (zero where an entry was
    sent, ``corrected`` elsewhere). Summed over rounds, what was sent plus the
    final residual equals the sum of the deltas: nothing is lost, only delayed.

    Parameters
    ----------
    delta
        This round's update, any shape.
    residual
        What earlier rounds did not send, the same shape (or ``None`` for zeros).
    fraction
        Share of entries to send, in ``(0, 1]``.

    Returns
    -------
    (Sparse, np.ndarray)
        The message and the new float32 residual (the shape of ``delta``).

    """
    validate.fraction("fraction", fraction)
    d = _finite("delta", delta)
    if residual is None:
        r = np.zeros_like(d)
    else:
        r = _finite("residual", residual)
        if r.shape != d.shape:
            raise ValueError(f"residual has shape {r.shape}: must match delta's shape {d.shape}")
    corrected = d + r
    msg = topk(corrected, fraction=fraction)
    return msg, corrected - densify(msg)


# ----------------------------------------------------------------------------
# bytes
# ----------------------------------------------------------------------------


def message_bytes(message) -> int:
    """Exact bytes on the wire of a :class:`Quantized` or :class:`Sparse` message, or a sequence of them.

    - ``Quantized``: ``ceil(n * bits / 8)`` bytes of bit-packed codes + 8 bytes
      (``lo`` and ``step`` as float32), for a tensor of ``n`` entries;
    - ``Sparse`` with ``k`` of ``n`` entries: ``4 k`` bytes of float32 values +
      ``min(4 k, ceil(n / 8))`` bytes of positions (int32 indices or an
      ``n``-bit bitmap, whichever is smaller).

    Examples
    --------
    A 10x10 tensor at 4 bits: ``50 + 8 = 58`` bytes. Keeping 5 of 100
    entries: ``20 + min(20, 13) = 33`` bytes.

    """
    if isinstance(message, Quantized):
        n = int(message.codes.size)
        return (n * message.bits + 7) // 8 + 8
    if isinstance(message, Sparse):
        k = int(message.indices.size)
        return 4 * k + min(4 * k, (message.size + 7) // 8)
    if isinstance(message, Sequence) and not isinstance(message, str | bytes):
        return int(sum(message_bytes(m) for m in message))
    raise ValueError(
        f"message is a {type(message).__name__}: must be a Quantized, a Sparse, or a list of them"
    )


# ----------------------------------------------------------------------------
# uplinks for fedavg.run
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantizedUplink:
    """``uplink(delta, *, client, rng) -> (decoded, nbytes)``: every tensor quantized to ``bits`` bits.

    Each tensor gets its own ``lo`` and ``step``; stochastic rounding draws
    from the ``rng`` that :func:`fedlab.fedavg.run` passes (the round's
    generator), so runs are reproducible.
    """

    bits: int = 8
    rounding: str = "stochastic"

    def __post_init__(self):
        check_bits(self.bits)
        validate.one_of("rounding", self.rounding, ROUNDINGS)

    def __call__(self, delta, *, client: int, rng: int | np.random.Generator) -> tuple[list, int]:
        delta = P.as_params(delta, name="delta")
        gen = seeding.as_generator(rng)
        msgs = [quantize(d, bits=self.bits, rng=gen, rounding=self.rounding) for d in delta]
        return [dequantize(m) for m in msgs], message_bytes(msgs)


@dataclass
class Residuals:
    """Error-feedback memory: ``by_client[client id]`` is that client's residual (a flat float32 vector).

    A client that has not been sampled yet has no entry (a zero residual).
    The one mutable object in this module: it is the state a phone keeps
    between the rounds it takes part in. Use a fresh one for every run.
    """

    by_client: dict = field(default_factory=dict)

    def get(self, client: int, size: int) -> np.ndarray:
        """The residual of ``client`` (zeros of length ``size`` if it has none yet)."""
        r = self.by_client.get(client)
        return np.zeros(size, dtype=np.float32) if r is None else r

    def norm(self) -> float:
        """L2 norm of all residuals together (how much is still waiting to be sent)."""
        return float(np.sqrt(sum(float(np.sum(np.asarray(r, np.float64) ** 2)) for r in self.by_client.values())))


@dataclass(frozen=True)
class TopKUplink:
    """``uplink(delta, *, client, rng) -> (decoded, nbytes)``: global top-k over the flattened delta.

    With ``error_feedback`` the client's residual (kept in ``residuals``, by
    client id) is added before selecting and what is not sent is kept for its
    next round. ``rng`` is unused (top-k is deterministic); it is accepted so
    the signature matches :func:`fedlab.fedavg.run`'s hook.
    """

    fraction: float = 0.1
    error_feedback: bool = True
    residuals: Residuals = field(default_factory=Residuals)

    def __post_init__(self):
        validate.fraction("fraction", self.fraction)
        if not isinstance(self.error_feedback, bool):
            raise ValueError(f"error_feedback={self.error_feedback!r}: must be True or False")

    def __call__(self, delta, *, client: int, rng=None) -> tuple[list, int]:
        delta = P.as_params(delta, name="delta")
        v = P.flatten(delta)
        if self.error_feedback:
            msg, self.residuals.by_client[int(client)] = topk_with_feedback(
                v, self.residuals.get(int(client), v.size), fraction=self.fraction
            )
        else:
            msg = topk(v, fraction=self.fraction)
        return P.unflatten(densify(msg), delta), message_bytes(msg)


def quantized_uplink(bits: int = 8, *, rounding: str = "stochastic") -> QuantizedUplink:
    """An uplink for :func:`fedlab.fedavg.run` that sends every tensor at ``bits`` bits (see :class:`QuantizedUplink`).

    ``bits=32`` is (up to float32 rounding) lossless and costs 8 bytes per
    tensor more than plain float32.
    """
    return QuantizedUplink(bits, rounding)


def topk_uplink(fraction: float = 0.1, *, error_feedback: bool = True) -> TopKUplink:
    """An uplink for :func:`fedlab.fedavg.run` that sends the top ``fraction`` of each delta (see :class:`TopKUplink`).

    With ``error_feedback`` (default) it keeps a residual per client id in
    ``uplink.residuals``; make a new uplink for every run.
    """
    return TopKUplink(fraction, error_feedback)
