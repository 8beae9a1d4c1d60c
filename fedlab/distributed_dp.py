"""Distributed differential privacy inside secure aggregation: the phones add the noise, nobody sees the sum clean.

Lesson 10's server unmasks the exact sum of a round and adds the Gaussian noise itself: it is
trusted with the noise. Here every phone adds a share of *integer* noise before masking, so what the
secure sum reveals is already private (Kairouz, Liu and Steinke 2021, "The Distributed Discrete
Gaussian Mechanism for Federated Learning with Secure Aggregation", ICML, arXiv 2102.06387;
Agarwal, Kairouz and Liu 2021, "The Skellam Mechanism for Differentially Private Federated
Learning", NeurIPS, arXiv 2110.04995). TensorFlow Federated ships the same pipeline
(``tff.aggregators.DistributedDpSumFactory``); the formulas below follow the papers and the
authors' code (``google-research/federated``, ``distributed_dp/accounting_utils.py``), where it
is cited.

The client pipeline (:func:`encode_client`, :func:`encode_cohort` for many phones at once)
-------------------------------------------------------------------------------------------
For one phone's flattened update ``x`` (``[d]``) and the round's public :class:`Plan`:

1. **clip** to L2 norm ``c``: ``x * min(1, c / ||x||)`` (:func:`clip_rows`);
2. **rotate**: pad with zeros to ``d' = 2^ceil(log2 d)`` and apply the randomized Hadamard transform
   ``y = H D x`` (:func:`rotate`), ``D = diag(signs)`` a random +-1 vector *shared by every phone of
   the round* (public randomness, :func:`rotation_signs`) and ``H`` the orthonormal Walsh-Hadamard
   matrix. The rotation keeps the norm and spreads it: every coordinate of ``y`` is sub-Gaussian
   with variance proxy ``||x||^2 / d'`` (Kairouz et al., Lemma 29 with ``rho = 1``), so no coordinate
   dominates and a small ring suffices;
3. **scale** by ``s`` (:attr:`Plan.scale`; Kairouz et al. write ``gamma = 1 / s`` for the grid step);
4. **conditional randomized rounding** (:func:`conditional_round`): each coordinate rounds up with
   probability equal to its fractional part (unbiased), and the whole vector is drawn again until its
   norm is at most the bound of Kairouz et al. (Theorem 1 / Prop. 22, :func:`rounded_l2_bound`), which
   is then the L2 sensitivity the accountant uses;
5. **integer noise**: a Skellam share ``Poisson(mu / 2) - Poisson(mu / 2)`` per coordinate
   (:func:`skellam_noise`, variance ``mu`` = :attr:`Plan.local_variance`);
6. **modular clipping** into ``Z_m``, ``m = 2^bits`` (:func:`modular_clip`): the vector that goes into
   :func:`fedlab.secagg.mask_vector` (same ring and dtype conventions as :mod:`fedlab.secagg`).

The server (:func:`decode`) gets ``sum_k encode(x_k) mod m`` from secure aggregation, maps it to the
centered range ``[-m/2, m/2)``, divides by ``s`` and undoes the rotation (``D H``: both factors are
their own inverse). A coordinate whose true sum left ``[-m/2, m/2)`` *wraps around* and decodes to
garbage; the plan picks ``s`` so that this happens with probability at most ``wrap_prob`` per
coordinate (:func:`wrap_probability`).

Why Skellam and not the discrete Gaussian
-----------------------------------------
A sum of independent Skellam variables is again Skellam (a Poisson sum is Poisson), so the noise
in the secure sum of ``n`` phones is *exactly* ``Sk(n mu)`` and the accountant analyses exactly what
was released. A sum of discrete Gaussians is only close to a discrete Gaussian (Kairouz et al.
Theorem 1 pays for the gap with the ``tau`` term), and an exact discrete Gaussian sampler (Canonne,
Kamath and Steinke 2020) is not in numpy, while a Poisson sampler is. Honest limit: numpy's Poisson
sampler works in floating point (as ``tf.random.poisson``, which the papers' code uses); it is not a
bit-exact, constant-time sampler, which a deployment hardened against floating-point attacks
(Mironov 2012) would need.

The accountant (:func:`rdp`, :func:`epsilon`, :func:`noise_multiplier_for`)
---------------------------------------------------------------------------
One release of ``sum + Sk(V)`` with integer L2 / L1 sensitivities ``D2`` and ``D1`` is
``(alpha, eps(alpha))``-RDP with (Agarwal et al. 2021, the multi-dimensional Skellam bound, Sec. 3;
``_skellam_rdp`` in the authors' code)::

    eps(alpha) = alpha D2^2 / (2 V) + min( ((2 alpha - 1) D2^2 + 6 D1) / (4 V^2),  3 D1 / (2 V) )

(:func:`skellam_rdp`). After rounding ``D2`` = :func:`rounded_l2_bound` and
``D1 = D2 min(sqrt(d'), D2)`` (integers: ``|v_i| <= v_i^2``). The phones of a round are a Poisson
sample of the population (rate ``q``, as :func:`fedlab.dp.run`): amplification by subsampling uses the
*general* upper bound of Zhu and Wang 2019 ("Poisson Subsampled Renyi Differential Privacy", ICML,
the bound with factor 3 for ``l >= 3``; :func:`poisson_subsampled_rdp`), valid for **any** mechanism,
integer orders ``alpha >= 2`` and add/remove-one neighbours. (:func:`fedlab.dp.compute_rdp` is the
exact computation for the *Gaussian* and does not apply to Skellam.) RDP adds up over rounds and is
converted to ``(epsilon, delta)`` by :func:`fedlab.dp.rdp_to_epsilon`, the conversion lesson 08 uses.

How it is checked (``tests/test_distributed_dp.py``): the bound never claims less than the exact
``epsilon`` that ``dp_accounting``'s privacy loss distribution computes from the Skellam pmfs (and is
within 8-9 % of it at variances in the hundreds and above); those exact epsilons equal the Gaussian's
of the same variance within 0.2 %; the bound is the authors' released formula term by term.

Whose noise counts (a decision). ``V`` is the noise of the *other* survivors only: the phone whose
privacy is analysed may know (or leak) its own share, so the plan gives each phone enough noise that
``min_survivors - 1`` shares reach the central standard deviation ``z c s`` (``count_own_share=True``
counts all ``min_survivors`` shares, the papers' convention).

Dropouts eat noise
------------------
A phone that drops before its masked input takes its noise share with it. The plan is made for at
least ``min_survivors`` phones; :func:`epsilon` with ``survivors=`` gives the guarantee when fewer
survive, and :func:`decode` refuses (:class:`NoiseShortfallError`) to release a sum of fewer than
``min_survivors`` phones, whose noise is below what the accountant assumed.

A plan is public and fixed before the round's phones are sampled: make it from the expected cohort
(or a cap the server enforces), never from who was actually sampled, so the mechanism does not depend
on the sample. Rounds with different plans compose by adding their :func:`rdp` arrays (same orders)
and converting once with :func:`fedlab.dp.rdp_to_epsilon`.

Conventions: pure functions, keyword-only hyper-parameters, every random choice takes ``rng`` (an
int seed or a ``numpy.random.Generator``); vectors are float64 or int64 numpy arrays, ring vectors
use :func:`fedlab.secagg.ring_dtype`. This module imports numpy and fedlab's math modules only.
"""

from __future__ import annotations

import functools
import math
import numbers
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedlab import dp, secagg, seeding, validate

DEFAULT_BETA = math.exp(-0.5)
"""The conditional-rounding parameter ``beta`` Kairouz et al. recommend (Sec. 4; TFF's docstring)."""

ORDERS: tuple[int, ...] = tuple(int(a) for a in dp.DEFAULT_ORDERS if a == int(a))
"""The integer orders of :data:`fedlab.dp.DEFAULT_ORDERS` (2 .. 63, 128, 256, 512, 1024).

The subsampling bound of Zhu and Wang 2019 holds for integer orders only."""

MAX_SCALE = 1e6
"""The largest scale :func:`make_plan` picks (TFF's ``MAX_SCALE_FACTOR``: larger ones buy nothing)."""

MAX_BITS = 32
"""The widest ring supported here: values and sums stay exact in int64 and float64."""


class NoiseShortfallError(ValueError):
    """Fewer phones survived than the plan's minimum: the sum carries less noise than the accountant assumed."""


class RoundingError(ValueError):
    """Conditional randomized rounding did not land inside its norm bound within the allowed tries."""


# ----------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------


def _check_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or not 8 <= bits <= MAX_BITS:
        raise ValueError(f"bits={bits!r}: must be an int in [8, {MAX_BITS}] (the ring is Z_m with m = 2^bits)")
    return int(bits)


def _check_beta(beta) -> float:
    ok = isinstance(beta, numbers.Real) and not isinstance(beta, bool) and 0 <= beta < 1
    if not ok:
        raise ValueError(f"beta={beta!r}: must be a number in [0, 1) (0: plain randomized rounding)")
    return float(beta)


def _check_wrap_prob(p) -> float:
    ok = isinstance(p, numbers.Real) and not isinstance(p, bool) and 0 < p < 1
    if not ok:
        raise ValueError(f"wrap_prob={p!r}: must be a number in (0, 1), e.g. 1e-4 per coordinate")
    return float(p)


def _check_noise(noise_multiplier) -> float:
    ok = isinstance(noise_multiplier, numbers.Real) and not isinstance(noise_multiplier, bool)
    if not ok or not math.isfinite(noise_multiplier) or noise_multiplier < 0:
        raise ValueError(
            f"noise_multiplier={noise_multiplier!r}: must be a finite number >= 0 "
            "(central noise std / clip norm; 0 means no noise)"
        )
    return float(noise_multiplier)


def _check_rows(x, dim: int | None = None, *, name: str = "x") -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "fiu" or a.ndim not in (1, 2):
        raise ValueError(f"{name} has shape {a.shape} and dtype {a.dtype}: must be [d] or [n, d] numbers")
    a = np.atleast_2d(a.astype(np.float64))
    if dim is not None and a.shape[1] != dim:
        raise ValueError(f"{name} has {a.shape[1]} coordinates per row: must be {dim} (plan.dim)")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has {int(np.sum(~np.isfinite(a)))} non-finite entries (nan or inf)")
    return a


def _check_survivors(survivors, plan: Plan) -> int:
    if isinstance(survivors, bool) or not isinstance(survivors, numbers.Integral) or not 0 <= survivors <= plan.cohort:
        raise ValueError(
            f"survivors={survivors!r}: must be an int in [0, {plan.cohort}] (the phones whose noised vectors "
            f"are in the sum; plan.cohort={plan.cohort})"
        )
    return int(survivors)


# ----------------------------------------------------------------------------
# clipping and the randomized Hadamard rotation
# ----------------------------------------------------------------------------


def clip_rows(x, *, clip_norm: float) -> np.ndarray:
    """Every row clipped to L2 norm ``clip_norm``: ``x_k * min(1, c / ||x_k||)``.

    Parameters
    ----------
    x
        ``[n, d]`` (or ``[d]``) finite numbers.
    clip_norm
        ``c > 0``.

    Returns
    -------
    np.ndarray
        ``[n, d]`` float64.

    """
    c = validate.positive_float("clip_norm", clip_norm)
    a = _check_rows(x)
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return a * np.minimum(1.0, c / np.maximum(norms, 1e-300))


def padded_dim(dim: int) -> int:
    """``d' = 2^ceil(log2 d)``: the length the Hadamard transform needs (``d`` itself if a power of 2)."""
    d = validate.positive_int("dim", dim)
    return 1 << (d - 1).bit_length()


def rotation_signs(dim: int, *, rng: int | np.random.Generator) -> np.ndarray:
    """The shared random sign vector ``diag(D)``: ``[padded_dim(dim)]`` int8 entries, each +1 or -1.

    Every phone of a round and the server must use the same signs (public randomness, e.g. a seed the
    server announces with the round); a fresh vector each round.
    """
    gen = seeding.as_generator(rng)
    return (2 * gen.integers(0, 2, size=padded_dim(dim)) - 1).astype(np.int8)


def _check_signs(signs, width: int) -> np.ndarray:
    s = np.asarray(signs)
    if s.shape != (width,) or s.dtype.kind not in "iu" or not np.all(np.abs(s.astype(np.int64)) == 1):
        raise ValueError(
            f"signs has shape {s.shape} and dtype {s.dtype}: must be [{width}] integers, each +1 or -1 "
            "(from rotation_signs)"
        )
    return s.astype(np.float64)


@functools.lru_cache(maxsize=32)
def _sylvester(d: int) -> np.ndarray:
    """The unnormalised ``d x d`` Walsh-Hadamard matrix (Sylvester order), float64 +-1, read-only."""
    h = np.ones((1, 1))
    while h.shape[0] < d:
        h = np.block([[h, h], [h, -h]])
    h.setflags(write=False)
    return h


def _fwht(a: np.ndarray) -> np.ndarray:
    """``[n, d] -> [n, d]``: the unnormalised transform ``x H`` of every row (``d`` a power of 2), no checks.

    ``d <= 64``: one product with the cached matrix (too small for BLAS to start threads). Larger: the
    butterflies ``(u, v) -> (u + v, u - v)`` for the pairs ``i, i + h`` of every block of ``2h``, one
    stage per bit of ``d``, two ufunc calls per stage between two buffers (no BLAS: a multi-threaded
    BLAS on a busy 2-core machine is slower than this, and a phone has no BLAS threads to spare).
    """
    n, d = a.shape
    if d <= 64:
        return a @ _sylvester(d)
    # the 4 lowest bits (stages h = 1 .. 8, whose strided views are slow) as one product with H_16, since
    # H_d = H_(d/16) (x) H_16; then the butterflies for the higher bits
    src = (a.reshape(n * d // 16, 16) @ _sylvester(16)).reshape(n, d)
    dst = np.empty_like(src)
    h = 16
    while h < d:
        u = src.reshape(n, d // (2 * h), 2, h)
        v = dst.reshape(n, d // (2 * h), 2, h)
        np.add(u[:, :, 0, :], u[:, :, 1, :], out=v[:, :, 0, :])
        np.subtract(u[:, :, 0, :], u[:, :, 1, :], out=v[:, :, 1, :])
        src, dst = dst, src
        h *= 2
    return src


def hadamard(x) -> np.ndarray:
    """The orthonormal fast Walsh-Hadamard transform ``H x / sqrt(d)`` of every row (Sylvester order).

    ``H`` is symmetric and ``(H / sqrt(d))^2 = I``: the transform is orthogonal and its own inverse.
    ``O(n d log d)``, one butterfly stage per bit of ``d`` (a matrix product for ``d <= 64``);
    ``tests/test_distributed_dp.py`` checks it against ``scipy.linalg.hadamard``.

    Parameters
    ----------
    x
        ``[n, d]`` or ``[d]`` numbers, ``d`` a power of 2.

    Returns
    -------
    np.ndarray
        Float64, the shape of ``x``.

    """
    a = np.asarray(x, dtype=np.float64)
    one = a.ndim == 1
    a = np.atleast_2d(a)
    n, d = a.shape
    if d == 0 or d & (d - 1):
        raise ValueError(f"x has {d} coordinates per row: the Hadamard transform needs a power of 2 (pad first)")
    y = _fwht(a)
    y /= math.sqrt(d)
    return y[0] if one else y


def rotate(x, *, signs) -> np.ndarray:
    """``H D x``: pad every row of ``x`` (``[n, d]`` or ``[d]``) with zeros to ``len(signs)``, flip signs, transform."""
    a = np.asarray(x, dtype=np.float64)
    one = a.ndim == 1
    a = np.atleast_2d(a)
    width = len(np.asarray(signs))
    if a.shape[1] > width:
        raise ValueError(f"x has {a.shape[1]} coordinates: more than the {width} signs (rotation_signs(dim))")
    s = _check_signs(signs, width)
    padded = np.zeros((a.shape[0], width))
    padded[:, : a.shape[1]] = a
    y = hadamard(padded * s)
    return y[0] if one else y


def unrotate(y, *, signs, dim: int) -> np.ndarray:
    """The exact inverse of :func:`rotate`: ``D H y`` (both are involutions), cut back to ``dim`` coordinates."""
    a = np.asarray(y, dtype=np.float64)
    one = a.ndim == 1
    a = np.atleast_2d(a)
    s = _check_signs(signs, a.shape[1])
    d = validate.positive_int("dim", dim)
    if d > a.shape[1]:
        raise ValueError(f"dim={dim!r}: must be at most the rotated length {a.shape[1]}")
    x = (hadamard(a) * s)[:, :d]
    return x[0] if one else x


# ----------------------------------------------------------------------------
# rounding, noise and the ring
# ----------------------------------------------------------------------------


def rounded_l2_bound(*, norm: float, dim: int, beta: float) -> float:
    """The L2 norm a randomized rounding of a vector of norm ``<= norm`` keeps with probability ``>= 1 - beta``.

    Kairouz et al. 2021 (Theorem 1 / Prop. 22; ``rounded_l2_norm_bound`` in the authors' code): with
    ``d`` coordinates each rounded up or down to an integer, ``||round(x)|| <= ||x|| + sqrt(d)`` always,
    and ``||round(x)||^2 <= ||x||^2 + d / 4 + sqrt(2 log(1/beta)) (||x|| + sqrt(d) / 2)`` with
    probability at least ``1 - beta``. Returns the smaller of the two (the first for ``beta = 0``).

    Parameters
    ----------
    norm
        The norm bound ``c s`` of the scaled vector, ``> 0``.
    dim
        ``d'``, the number of coordinates rounded.
    beta
        In ``[0, 1)``.

    """
    c = validate.positive_float("norm", norm)
    d = validate.positive_int("dim", dim)
    b = _check_beta(beta)
    always = c + math.sqrt(d)
    if b == 0:
        return always
    likely = math.sqrt(c * c + 0.25 * d + math.sqrt(2 * math.log(1 / b)) * (c + 0.5 * math.sqrt(d)))
    return min(always, likely)


def rounded_l1_bound(*, l2: float, dim: int) -> float:
    """The L1 sensitivity of an integer vector of L2 norm ``<= l2``: ``l2 * min(sqrt(dim), l2)``.

    ``||v||_1 <= sqrt(d) ||v||_2`` always, and ``||v||_1 <= ||v||_2^2`` for integers (``|v_i| <= v_i^2``).
    """
    v = validate.positive_float("l2", l2)
    d = validate.positive_int("dim", dim)
    return v * min(math.sqrt(d), v)


def conditional_round(y, *, bound: float, rng, max_tries: int = 100) -> np.ndarray:
    """Unbiased randomized rounding of every row, drawn again until its L2 norm is at most ``bound``.

    Coordinate ``y_i`` becomes ``floor(y_i) + 1`` with probability ``y_i - floor(y_i)``, else
    ``floor(y_i)`` (so ``E[round(y)] = y``). A row whose rounded norm exceeds ``bound`` is drawn again
    (Kairouz et al., "conditional randomized rounding"): with ``bound`` from :func:`rounded_l2_bound` a
    draw is accepted with probability at least ``1 - beta``.

    Parameters
    ----------
    y
        ``[n, d]`` (or ``[d]``) floats, already rotated and scaled.
    bound
        The L2 bound every rounded row must meet (the sensitivity the accountant uses).
    rng
        Seed or Generator, or a sequence of ``n`` of them: row ``k`` draws only from ``rng[k]``
        (``random(d)`` per try), so rows can be rounded together or one by one with the same result.
    max_tries
        Draws per row before giving up.

    Returns
    -------
    np.ndarray
        ``[n, d]`` (or ``[d]``) int64.

    Raises
    ------
    RoundingError
        If a row is still above ``bound`` after ``max_tries`` draws (its pre-rounding norm is then
        probably above the clip norm the bound was made for).

    """
    b = validate.positive_float("bound", bound)
    tries = validate.positive_int("max_tries", max_tries)
    a = np.asarray(y, dtype=np.float64)
    one = a.ndim == 1
    a = np.atleast_2d(a)
    gens = _generators(rng, a.shape[0])
    floor = np.floor(a)
    frac = a - floor
    out = np.empty(a.shape, dtype=np.int64)
    todo = np.arange(a.shape[0])
    bound_sq = b * b
    for _ in range(tries):
        u = np.stack([gens[k].random(a.shape[1]) for k in todo]) if len(todo) else np.zeros((0, a.shape[1]))
        cand = (floor[todo] + (u < frac[todo])).astype(np.int64)
        ok = np.sum(cand * cand, axis=1) <= bound_sq  # int64 squares: exact
        out[todo[ok]] = cand[ok]
        todo = todo[~ok]
        if not len(todo):
            return out[0] if one else out
    k = int(todo[0])
    raise _rounding_error(k, a[k], b, tries)


def _rounding_error(k: int, row: np.ndarray, bound: float, tries: int) -> RoundingError:
    return RoundingError(
        f"row {k} (norm {float(np.linalg.norm(row)):.4g} before rounding) was still above bound={bound:.6g} after "
        f"max_tries={tries} randomized roundings: clip the rows to the norm the bound was computed for, or raise "
        "max_tries"
    )


def _generators(rng, n: int) -> list[np.random.Generator]:
    if isinstance(rng, Sequence) and not isinstance(rng, str | bytes):
        if len(rng) != n:
            raise ValueError(f"rng has {len(rng)} generators for {n} rows: pass one per row (or a single one)")
        return [seeding.as_generator(g, name=f"rng[{k}]") for k, g in enumerate(rng)]
    gen = seeding.as_generator(rng)
    return [gen] * n


def skellam_noise(shape, *, variance: float, rng: int | np.random.Generator) -> np.ndarray:
    """Symmetric Skellam noise ``Poisson(variance / 2) - Poisson(variance / 2)``, int64, mean 0, variance ``variance``.

    A sum of independent ``Sk(mu_k)`` is ``Sk(sum_k mu_k)`` (Poisson sums are Poisson): ``n`` phones
    each adding :attr:`Plan.local_variance` put exactly ``Sk(n mu)`` into the secure sum. Draws the
    two Poisson arrays from ``rng`` in this order; ``variance = 0`` draws nothing and returns zeros.
    """
    v = validate.positive_float("variance", variance, allow_zero=True)
    shape = tuple(np.atleast_1d(np.asarray(shape, dtype=np.int64)).tolist())
    if v == 0:
        return np.zeros(shape, dtype=np.int64)
    gen = seeding.as_generator(rng)
    return gen.poisson(v / 2, size=shape).astype(np.int64) - gen.poisson(v / 2, size=shape).astype(np.int64)


def modular_clip(v, *, bits: int) -> np.ndarray:
    """Integers into ``Z_m`` (``m = 2^bits``): ``v mod m`` as :func:`fedlab.secagg.ring_dtype` (two's complement).

    Row by row the same as :func:`fedlab.secagg.as_ring`, for ``[d]`` or ``[n, d]`` int arrays.
    """
    b = _check_bits(bits)
    a = np.asarray(v)
    if a.dtype.kind not in "iu":
        raise ValueError(f"v has dtype {a.dtype}: must be integers (round first)")
    return np.mod(a.astype(np.int64), np.int64(1) << b).astype(secagg.ring_dtype(b))


def centered(total, *, bits: int) -> np.ndarray:
    """A ring vector (``[d]``, mod ``2^bits``) as signed int64 in ``[-2^(bits-1), 2^(bits-1))``."""
    b = _check_bits(bits)
    t = secagg.as_ring(total, bits=b, name="total").astype(np.int64)
    half = np.int64(1) << np.int64(b - 1)
    return np.where(t >= half, t - 2 * half, t)


# ----------------------------------------------------------------------------
# the plan: everything public about a round
# ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Plan:
    """The public parameters of a round of distributed DP (build it with :func:`make_plan`).

    Attributes
    ----------
    dim, padded_dim
        ``d`` (the update's length) and ``d' = 2^ceil(log2 d)``.
    clip_norm, noise_multiplier
        ``c`` and ``z``: the noise of ``min_survivors - 1`` shares (all ``min_survivors`` with
        ``count_own_share``) has standard deviation ``z c`` in the update's units.
    cohort, min_survivors
        The phones asked to take part this round, and the fewest whose noise the guarantee assumes.
    bits
        The ring is ``Z_m``, ``m = 2^bits``.
    scale
        ``s``: updates are multiplied by ``s`` before rounding (``gamma = 1 / s`` in Kairouz et al.).
    beta
        Conditional rounding parameter.
    wrap_prob
        The per-coordinate wrap-around probability the scale was chosen for (an upper bound).
    local_variance
        ``mu``: each phone's Skellam variance, in the scaled integer domain.
    l2_sensitivity, l1_sensitivity
        ``D2`` (:func:`rounded_l2_bound` of ``c s``) and ``D1`` in the scaled integer domain.
    count_own_share
        Whether the analysed phone's own noise share counts (see the module docstring).
    max_tries
        Redraws allowed in :func:`conditional_round`.

    """

    dim: int
    padded_dim: int
    clip_norm: float
    noise_multiplier: float
    cohort: int
    min_survivors: int
    bits: int
    scale: float
    beta: float
    wrap_prob: float
    local_variance: float
    l2_sensitivity: float
    l1_sensitivity: float
    count_own_share: bool = False
    max_tries: int = 100

    @property
    def modulus(self) -> int:
        """``m = 2^bits``."""
        return 1 << self.bits

    def noise_shares(self, survivors: int) -> int:
        """How many noise shares the accountant counts when ``survivors`` phones are in the sum."""
        s = _check_survivors(survivors, self)
        return s if self.count_own_share else max(s - 1, 0)

    @property
    def bytes_per_phone(self) -> int:
        """Bytes of one phone's masked vector: ``ceil(d' * bits / 8)`` (bit-packed, keys and shares not counted)."""
        return math.ceil(self.padded_dim * self.bits / 8)


def _shares_planned(min_survivors: int, count_own_share: bool) -> int:
    return min_survivors if count_own_share else min_survivors - 1


def wrap_probability(
    *, scale: float, dim: int, clip_norm: float, clients: int, local_variance: float, bits: int
) -> float:
    """An upper bound on the probability that one coordinate of the secure sum wraps around ``Z_m``.

    Coordinate ``j`` of the true integer sum of ``n`` phones is ``X = S + R + N``: the rotated, scaled
    signal ``S`` (sub-Gaussian, variance proxy ``(n c s)^2 / d'``: Kairouz et al. Lemma 29, taking every
    phone's update aligned, the worst case), the rounding errors ``R`` (each in an interval of width
    1: sub-Gaussian with proxy ``1/4`` each, Hoeffding) and the Skellam noise ``N ~ Sk(n mu)`` with
    moment generating function ``exp(n mu (cosh t - 1))``. Chernoff's bound on both tails::

        P(|X| >= m/2) <= 2 min_t exp(t^2 sigma^2 / 2 + V (cosh t - 1) - t m / 2),
        sigma^2 = (n c s)^2 / d' + n / 4,  V = n mu

    minimised over ``t > 0`` by bisection on the derivative. This is a bound, not an estimate (the
    Gaussian heuristic of Kairouz et al. Sec. 4.4 and TFF, ``k`` standard deviations inside the ring,
    is about ``P(|N(0,1)| > k)``); ``tests/test_distributed_dp.py`` measures the real rate below it.

    Parameters
    ----------
    scale, dim, clip_norm
        ``s``, ``d`` (padded to ``d'`` here) and ``c``.
    clients
        ``n``, the phones summed (the cohort: the worst case is that all survive).
    local_variance
        ``mu``, each phone's noise variance in the scaled domain.
    bits
        The ring width.

    """
    s = validate.positive_float("scale", scale)
    dp_ = padded_dim(dim)
    c = validate.positive_float("clip_norm", clip_norm)
    n = validate.positive_int("clients", clients)
    mu = validate.positive_float("local_variance", local_variance, allow_zero=True)
    half = (1 << _check_bits(bits)) / 2
    sigma2 = (n * c * s) ** 2 / dp_ + n / 4
    v = n * mu

    def log_f(t):
        return t * t * sigma2 / 2 + (v * (math.cosh(t) - 1) if v > 0 else 0.0) - t * half

    def slope(t):
        return t * sigma2 + (v * math.sinh(t) if v > 0 else 0.0) - half

    hi = half / sigma2
    if v > 0:
        hi = min(hi, math.asinh(half / v))
    lo = 0.0
    for _ in range(200):  # the derivative t sigma^2 + V sinh t - m/2 increases in t
        mid = 0.5 * (lo + hi)
        if slope(mid) > 0:
            hi = mid
        else:
            lo = mid
    return min(1.0, 2 * math.exp(log_f(0.5 * (lo + hi))))


def min_bits(*, clients: int, wrap_prob: float) -> int:
    """The fewest ring bits for which any scale can meet ``wrap_prob``: the rounding errors alone must fit.

    As ``s -> 0`` only the rounding errors remain (proxy ``n / 4``), so :func:`wrap_probability` needs
    ``2 exp(-(m/2)^2 / (n / 2)) <= wrap_prob``, i.e. ``m >= sqrt(2 n log(2 / wrap_prob))``. (The papers'
    heuristic, ``2^(2 bits) >= n k^2`` with ``k`` standard deviations, is the Gaussian version of this.)
    """
    n = validate.positive_int("clients", clients)
    p = _check_wrap_prob(wrap_prob)
    return max(8, math.ceil(math.log2(math.sqrt(2 * n * math.log(2 / p)))))


def make_plan(
    *,
    dim: int,
    clip_norm: float,
    noise_multiplier: float,
    cohort: int,
    min_survivors: int,
    bits: int,
    wrap_prob: float = 1e-4,
    beta: float = DEFAULT_BETA,
    scale: float | None = None,
    count_own_share: bool = False,
    max_tries: int = 100,
) -> Plan:
    """The round's public parameters: the scale, each phone's noise and the sensitivities after rounding.

    The phones' shares are sized so that ``min_survivors - 1`` of them (``min_survivors`` with
    ``count_own_share``) carry central variance ``(z c s)^2``: ``mu = (z c s)^2 / shares``. Without
    ``scale``, the largest ``s <= MAX_SCALE`` is taken (bisection on ``log s``) whose
    :func:`wrap_probability` with the whole ``cohort`` summed is at most ``wrap_prob``.

    Parameters
    ----------
    dim
        ``d``, the length of the flattened update.
    clip_norm, noise_multiplier
        ``c > 0`` and ``z >= 0``.
    cohort
        The phones asked to take part (at most this many are summed).
    min_survivors
        The fewest survivors whose noise the guarantee assumes; ``2 <= min_survivors <= cohort``
        (``1`` is allowed with ``count_own_share``).
    bits
        Ring width, at least :func:`min_bits` for this cohort and ``wrap_prob``.
    wrap_prob
        Allowed per-coordinate wrap-around probability (an upper bound, see :func:`wrap_probability`).
    beta
        Conditional rounding parameter in ``[0, 1)``.
    scale
        Fix ``s`` instead of choosing it; refused if its wrap bound exceeds ``wrap_prob``.
    count_own_share, max_tries
        See :class:`Plan`.

    Raises
    ------
    ValueError
        For a negative noise multiplier, ``min_survivors`` outside ``[2, cohort]``, a ring narrower
        than :func:`min_bits`, or a ``scale`` that wraps too often; each names the argument, its
        value and what is allowed.

    """
    d = validate.positive_int("dim", dim)
    c = validate.positive_float("clip_norm", clip_norm)
    z = _check_noise(noise_multiplier)
    n = validate.positive_int("cohort", cohort)
    lowest = 1 if count_own_share else 2
    if (
        isinstance(min_survivors, bool)
        or not isinstance(min_survivors, numbers.Integral)
        or not (lowest <= min_survivors <= n)
    ):
        raise ValueError(
            f"min_survivors={min_survivors!r}: must be an int in [{lowest}, cohort={n}] "
            "(the fewest phones whose noise the guarantee counts; it cannot exceed the phones asked)"
        )
    b = _check_bits(bits)
    p = _check_wrap_prob(wrap_prob)
    be = _check_beta(beta)
    tries = validate.positive_int("max_tries", max_tries)
    need = min_bits(clients=n, wrap_prob=p)
    if b < need:
        raise ValueError(
            f"bits={b}: too small for cohort={n} at wrap_prob={p:g}: the rounding errors of {n} phones alone "
            f"wrap around Z_(2^{b}) more often than that; use bits >= {need}, a smaller cohort or a larger wrap_prob"
        )
    shares = _shares_planned(int(min_survivors), bool(count_own_share))

    def wrap_at(s):
        mu = (z * c * s) ** 2 / shares
        return wrap_probability(scale=s, dim=d, clip_norm=c, clients=n, local_variance=mu, bits=b)

    if scale is None:
        lo, hi = math.log(1e-9), math.log(MAX_SCALE)
        if wrap_at(math.exp(hi)) <= p:
            s = MAX_SCALE
        else:
            if wrap_at(math.exp(lo)) > p:
                raise ValueError(f"bits={b}: no scale meets wrap_prob={p:g} for cohort={n}; use more bits")
            for _ in range(60):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if wrap_at(math.exp(mid)) <= p else (lo, mid)
            s = math.exp(lo)
    else:
        s = validate.positive_float("scale", scale)
        if wrap_at(s) > p:
            best = make_plan(
                dim=d, clip_norm=c, noise_multiplier=z, cohort=n, min_survivors=min_survivors, bits=b,
                wrap_prob=p, beta=be, count_own_share=count_own_share,
            ).scale  # fmt: skip
            raise ValueError(
                f"scale={scale!r}: its wrap-around bound {wrap_at(s):.3g} per coordinate exceeds wrap_prob={p:g} "
                f"with bits={b} and cohort={n}; allowed: scale <= {best:.6g} (or more bits)"
            )
    dpad = padded_dim(d)
    l2 = rounded_l2_bound(norm=c * s, dim=dpad, beta=be)
    return Plan(
        dim=d, padded_dim=dpad, clip_norm=c, noise_multiplier=z, cohort=n, min_survivors=int(min_survivors),
        bits=b, scale=s, beta=be, wrap_prob=p, local_variance=(z * c * s) ** 2 / shares, l2_sensitivity=l2,
        l1_sensitivity=rounded_l1_bound(l2=l2, dim=dpad), count_own_share=bool(count_own_share), max_tries=tries,
    )  # fmt: skip


# ----------------------------------------------------------------------------
# the phones and the server
# ----------------------------------------------------------------------------


def encode_client(x, *, plan: Plan, signs, rng: int | np.random.Generator) -> np.ndarray:
    """One phone: clip -> rotate -> scale -> conditional rounding -> Skellam share -> mod ``2^bits``.

    Parameters
    ----------
    x
        ``[d]`` the phone's flattened update (``d = plan.dim``).
    plan
        The round's :class:`Plan`.
    signs
        The round's shared :func:`rotation_signs`.
    rng
        The phone's own randomness (seed or Generator): rounding draws first (``random(d')`` per try),
        then the noise (two ``poisson`` arrays).

    Returns
    -------
    np.ndarray
        ``[d']`` ring vector (:func:`fedlab.secagg.ring_dtype`), ready for :func:`fedlab.secagg.mask_vector`.

    """
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"x has shape {a.shape}: encode_client takes one phone's [d] vector (encode_cohort: [n, d])")
    return _encode_rows(_check_rows(a, plan.dim), plan, signs, [seeding.as_generator(rng)], True)[0]


def encode_cohort(x, *, plan: Plan, signs, rngs: Sequence, modular: bool = True) -> np.ndarray:
    """:func:`encode_client` for ``n`` phones at once: ``[n, d] -> [n, d']``, equal to the per-phone loop.

    Clipping, rotation and scaling are vectorised; phone ``k`` draws only from ``rngs[k]``, in the
    order :func:`encode_client` does, so the result is bit-for-bit that of the loop
    (``tests/test_distributed_dp.py`` checks it). ``modular=False`` returns the int64 vectors
    *before* modular clipping (rounded and noised): their plain sum is what the ring must hold, which
    is how wrap-around is measured.
    """
    a = _check_rows(x, plan.dim)
    if a.shape[0] != len(rngs):
        raise ValueError(f"rngs has {len(rngs)} entries for {a.shape[0]} phones: pass one seed or Generator each")
    gens = [seeding.as_generator(g, name=f"rngs[{k}]") for k, g in enumerate(rngs)]
    return _encode_rows(a, plan, signs, gens, modular)


def _encode_rows(a: np.ndarray, plan: Plan, signs, gens: list, modular: bool) -> np.ndarray:
    """The phones' pipeline on checked ``[n, d]`` float64 rows, the arithmetic of :func:`clip_rows`,
    :func:`rotate`, :func:`conditional_round`, :func:`skellam_noise` and :func:`modular_clip` without
    their per-call checks (the plan was checked when made): what a phone runs, kept cheap.
    """
    n, d = a.shape
    width = plan.padded_dim
    sg = _check_signs(signs, width)
    norms = np.sqrt(np.einsum("ij,ij->i", a, a))[:, None]
    padded = np.zeros((n, width))
    np.multiply(a * np.minimum(1.0, plan.clip_norm / np.maximum(norms, 1e-300)), sg[:d], out=padded[:, :d])
    y = _fwht(padded)
    y *= plan.scale / math.sqrt(width)
    floor = np.floor(y)
    frac = y - floor
    base = floor.astype(np.int64)
    out = np.empty((n, width), dtype=np.int64)
    bound_sq = plan.l2_sensitivity**2
    half = plan.local_variance / 2
    for k in range(n):
        g = gens[k]
        for _ in range(plan.max_tries):
            cand = base[k] + (g.random(width) < frac[k])
            if float(cand @ cand) <= bound_sq:  # int64 dot: exact below 2^53
                break
        else:
            raise _rounding_error(k, a[k], plan.l2_sensitivity, plan.max_tries)
        if half > 0:
            cand += g.poisson(half, width)
            cand -= g.poisson(half, width)
        out[k] = cand
    if not modular:
        return out
    np.bitwise_and(out, np.int64((1 << plan.bits) - 1), out=out)  # two's complement: v mod 2^bits
    return out.astype(secagg.ring_dtype(plan.bits))


def modular_sum(encoded, *, bits: int) -> np.ndarray:
    """The sum of the rows of ``encoded`` (``[n, d']`` ring vectors) mod ``2^bits``: what secure aggregation reveals."""
    b = _check_bits(bits)
    a = np.asarray(encoded)
    if a.ndim != 2 or a.dtype.kind not in "iu":
        raise ValueError(f"encoded has shape {a.shape} and dtype {a.dtype}: must be [n, d'] ring vectors")
    return modular_clip(np.mod(a.astype(np.int64), np.int64(1) << b).sum(axis=0), bits=b)


def decode(total, *, plan: Plan, signs, survivors: int) -> np.ndarray:
    """The server: ``sum mod m`` -> centered -> ``/ s`` -> inverse rotation: ``[d']`` ring -> ``[d]`` float64.

    The result estimates the sum of the survivors' clipped updates (plus their noise, ``Sk`` of
    variance ``survivors * mu``, divided by ``s``). Dividing by the expected number of participants
    is the caller's business (:func:`fedlab.dp.dp_aggregate`'s fixed denominator).

    Parameters
    ----------
    total
        ``[d']`` the secure sum mod ``2^bits`` of the survivors' :func:`encode_client` vectors.
    plan, signs
        The round's :class:`Plan` and :func:`rotation_signs`.
    survivors
        How many phones' vectors are in ``total``.

    Raises
    ------
    NoiseShortfallError
        If ``survivors < plan.min_survivors``: the sum's noise is below what the accountant assumed,
        and it is not released.

    """
    s = _check_survivors(survivors, plan)
    if s < plan.min_survivors:
        raise NoiseShortfallError(
            f"survivors={s}: below plan.min_survivors={plan.min_survivors}. Their {plan.noise_shares(s)} noise "
            f"share(s) have variance {plan.noise_shares(s) * plan.local_variance:.4g}, less than the "
            f"{plan.noise_shares(plan.min_survivors) * plan.local_variance:.4g} the accountant assumed: the sum "
            "is not released (measure the weaker guarantee with distributed_dp.epsilon(..., survivors=...))"
        )
    t = np.asarray(total)
    if t.shape != (plan.padded_dim,):
        raise ValueError(f"total has shape {t.shape}: must be ({plan.padded_dim},) (plan.padded_dim)")
    return unrotate(centered(t, bits=plan.bits) / plan.scale, signs=signs, dim=plan.dim)


# ----------------------------------------------------------------------------
# the accountant
# ----------------------------------------------------------------------------


def _check_int_orders(orders) -> np.ndarray:
    a = np.atleast_1d(np.asarray(orders, dtype=np.float64))
    if a.ndim != 1 or a.size == 0 or np.any(a < 2) or np.any(a != np.floor(a)):
        raise ValueError(f"orders={orders!r}: must be integer Renyi orders >= 2 (distributed_dp.ORDERS)")
    return a


def skellam_rdp(*, l1: float, l2: float, variance: float, orders: Sequence[int] = ORDERS) -> np.ndarray:
    """RDP of one release ``f(D) + Sk(V)`` with integer L1 / L2 sensitivities ``l1``, ``l2`` (no subsampling).

    Agarwal, Kairouz and Liu 2021 (the multi-dimensional Skellam bound, Sec. 3)::

        eps(alpha) = alpha l2^2 / (2 V) + min( ((2 alpha - 1) l2^2 + 6 l1) / (4 V^2),  3 l1 / (2 V) )

    As ``V`` grows with ``l2 / sqrt(V)`` fixed the second term vanishes and this is the Gaussian's
    ``alpha l2^2 / (2 V)``. ``variance = 0`` gives ``inf`` (no privacy).

    Returns
    -------
    np.ndarray
        ``[len(orders)]`` float64.

    """
    a = _check_int_orders(orders)
    d1 = validate.positive_float("l1", l1)
    d2 = validate.positive_float("l2", l2)
    v = validate.positive_float("variance", variance, allow_zero=True)
    if v == 0:
        return np.full_like(a, np.inf)
    return a * d2**2 / (2 * v) + np.minimum(((2 * a - 1) * d2**2 + 6 * d1) / (4 * v**2), 3 * d1 / (2 * v))


def _log_comb(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    return dp._gammaln(n + 1) - dp._gammaln(k + 1) - dp._gammaln(n - k + 1)


def _subsampled(q: float, base: np.ndarray, alphas: np.ndarray, factor: float) -> np.ndarray:
    """``log(...) / (alpha - 1)`` of Zhu and Wang's sum; ``base[l - 2]`` is the RDP at order ``l``."""
    top = int(alphas.max())
    ell = np.arange(2, top + 1, dtype=np.float64)[None, :]
    a = alphas[:, None]
    valid = ell <= a
    e = np.where(valid, ell, 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = _log_comb(a, e) + e * math.log(q) + (a - e) * math.log1p(-q) + (e - 1) * base[None, : top - 1]
        terms = terms + np.where(e >= 3, math.log(factor), 0.0)
    terms = np.where(valid, terms, -np.inf)
    first = (alphas - 1) * math.log1p(-q) + np.log1p((alphas - 1) * q)  # (1-q)^(a-1) (a q - q + 1)
    return dp._lse(np.concatenate([first[:, None], terms], axis=1), axis=1) / (alphas - 1)


def poisson_subsampled_rdp(*, q: float, base_rdp, orders: Sequence[int] = ORDERS) -> np.ndarray:
    """RDP of a mechanism run on a Poisson sample (rate ``q``): Zhu and Wang 2019's general upper bound.

    For any mechanism with RDP ``eps(l)`` at every integer ``2 <= l <= alpha``, its Poisson-subsampled
    version (each unit in with probability ``q``, add/remove-one neighbours) satisfies::

        (alpha - 1) eps_q(alpha) <= log[ (1-q)^(alpha-1) (alpha q - q + 1)
                                         + binom(alpha, 2) q^2 (1-q)^(alpha-2) e^{eps(2)}
                                         + 3 sum_{l=3}^{alpha} binom(alpha, l) (1-q)^(alpha-l) q^l e^{(l-1) eps(l)} ]

    (Zhu and Wang 2019, "Poisson Subsampled Renyi Differential Privacy", ICML; ``_compute_rdp_subsampled``
    with ``upper_bound=True`` in the Skellam paper's code). The result is the smaller of this and the
    unsampled ``eps(alpha)``, all in log space. With the factor 3 replaced by 1 the sum is exactly the
    sampled Gaussian's ``A_alpha`` (:func:`fedlab.dp.compute_rdp`), so for the Gaussian this bound is
    at least the exact value: valid, and a little loose.

    Parameters
    ----------
    q
        Sampling rate in (0, 1].
    base_rdp
        ``base_rdp(orders_array) -> rdp_array``: the unsampled mechanism's RDP at integer orders.
    orders
        Integer orders ``>= 2``.

    """
    alphas = _check_int_orders(orders)
    q = dp._check_q(q)
    unsampled = np.asarray(base_rdp(alphas), dtype=np.float64)
    if q == 1.0:
        return unsampled
    base = np.asarray(base_rdp(np.arange(2, int(alphas.max()) + 1, dtype=np.float64)), dtype=np.float64)
    return np.minimum(_subsampled(q, base, alphas, 3.0), unsampled)


def rdp(
    plan: Plan, *, q: float, rounds: int, survivors: int | None = None, orders: Sequence[int] = ORDERS
) -> np.ndarray:
    """RDP of ``rounds`` rounds of the plan's distributed Skellam mechanism, users Poisson-sampled at rate ``q``.

    Each round releases the survivors' sum with the noise of :meth:`Plan.noise_shares` shares
    (``survivors`` defaults to ``plan.min_survivors``, the fewest :func:`decode` releases):
    :func:`skellam_rdp` with the plan's rounded sensitivities, amplified by
    :func:`poisson_subsampled_rdp`, times ``rounds``.
    """
    n = plan.min_survivors if survivors is None else _check_survivors(survivors, plan)
    steps = validate.positive_int("rounds", rounds, minimum=0)
    v = plan.noise_shares(n) * plan.local_variance
    alphas = _check_int_orders(orders)
    if steps == 0:
        return np.zeros_like(alphas)

    def base(a):
        return skellam_rdp(l1=plan.l1_sensitivity, l2=plan.l2_sensitivity, variance=v, orders=a)

    return steps * poisson_subsampled_rdp(q=q, base_rdp=base, orders=alphas)


def epsilon(
    plan: Plan,
    *,
    q: float,
    rounds: int,
    delta: float,
    survivors: int | None = None,
    orders: Sequence[int] = ORDERS,
) -> float:
    """``epsilon`` of :func:`rdp` for ``delta``, by :func:`fedlab.dp.rdp_to_epsilon` (lesson 08's conversion).

    ``survivors`` below ``plan.min_survivors`` measures what the guarantee becomes when more phones
    drop than planned (the sum :func:`decode` would refuse to release).
    """
    return _epsilon(plan, q, rounds, delta, survivors, orders)


def _epsilon(plan, q, rounds, delta, survivors, orders) -> float:
    r = rdp(plan, q=q, rounds=rounds, survivors=survivors, orders=orders)
    return dp.rdp_to_epsilon(rdp=r, orders=orders, delta=delta)[0]


def noise_multiplier_for(
    *,
    epsilon: float,
    delta: float,
    q: float,
    rounds: int,
    rtol: float = 1e-3,
    orders: Sequence[int] = ORDERS,
    **plan_kwargs,
) -> float:
    """The smallest noise multiplier ``z`` (to relative ``rtol``) whose distributed plan reaches ``epsilon``.

    ``plan_kwargs`` are :func:`make_plan`'s (``dim``, ``clip_norm``, ``cohort``, ``min_survivors``,
    ``bits``, ...); the scale is chosen again for each ``z``. Bisection, as
    :func:`fedlab.dp.noise_multiplier_for`; the returned ``z`` satisfies the target.
    """
    target = validate.positive_float("epsilon", epsilon)
    validate.positive_float("rtol", rtol)

    def eps_at(z):
        return _epsilon(make_plan(noise_multiplier=z, **plan_kwargs), q, rounds, delta, None, orders)

    unreachable = f"epsilon={epsilon!r}: not reached by any noise multiplier up to 1e4 with this plan"
    return dp.smallest_noise(eps_at, target, lo=0.0, hi=1.0, grow=2.0, cap=1e4, rtol=rtol, unreachable=unreachable)


def gaussian_k_stddevs(wrap_prob: float) -> float:
    """``k`` with ``P(|N(0, 1)| > k) = wrap_prob``: the papers' heuristic number of standard deviations in the ring."""
    p = _check_wrap_prob(wrap_prob)
    return statistics.NormalDist().inv_cdf(1 - p / 2)


__all__ = [
    "DEFAULT_BETA",
    "MAX_BITS",
    "MAX_SCALE",
    "ORDERS",
    "NoiseShortfallError",
    "Plan",
    "RoundingError",
    "centered",
    "clip_rows",
    "conditional_round",
    "decode",
    "encode_client",
    "encode_cohort",
    "epsilon",
    "gaussian_k_stddevs",
    "hadamard",
    "make_plan",
    "min_bits",
    "modular_clip",
    "modular_sum",
    "noise_multiplier_for",
    "padded_dim",
    "poisson_subsampled_rdp",
    "rdp",
    "rotate",
    "rotation_signs",
    "rounded_l1_bound",
    "rounded_l2_bound",
    "skellam_noise",
    "skellam_rdp",
    "unrotate",
    "wrap_probability",
]
