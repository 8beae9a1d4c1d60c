"""Differential privacy for federated learning: clipping, the Gaussian mechanism, DP-FedAvg, DP-SGD and an accountant.

A randomised algorithm ``M`` is ``(epsilon, delta)``-differentially private if
for any two datasets ``D, D'`` that differ in one *unit* (one example, or one
user's whole data) and any set of outcomes ``S``:
``P[M(D) in S] <= exp(epsilon) P[M(D') in S] + delta``.

The mechanism
-------------
- :func:`clip_update` bounds one update's global L2 norm by ``C``
  (``delta * min(1, C / ||delta||)``); :func:`clip_per_example` does the same
  for every row of a stacked ``[B, ...]`` batch (examples in DP-SGD, clients
  in DP-FedAvg). Clipping never increases a norm.
- :func:`gaussian_mechanism` adds ``N(0, (z * sensitivity)^2)`` to every entry,
  ``z`` being the *noise multiplier*.
- **DP-FedAvg** with user-level privacy (McMahan et al. 2018, "Learning
  Differentially Private Recurrent Language Models", Algorithm 1 with the
  fixed-denominator estimator): each round every one of the ``N`` clients
  takes part independently with probability ``q`` (Poisson sampling,
  :func:`poisson_sample`); each participant's delta is clipped to ``S``; the
  server sums them, divides by the *expected* number of participants ``q N``
  (never the actual count, which would itself leak), and adds Gaussian noise
  of standard deviation ``z S / (q N)`` (:func:`dp_aggregate`,
  :func:`dp_fedavg_round`, and :func:`run` for many rounds on the batched
  engine).
- **DP-SGD** (Abadi et al. 2016) for the centralised comparison: per-example
  gradients with ``torch.func.vmap(grad(...))`` (:func:`per_example_grads`),
  each clipped to ``C``, summed, noised with ``N(0, (z C)^2)`` and divided by
  the expected batch size ``q n`` (:func:`dp_sgd_step`, :func:`dp_sgd`).

The accountant (built from scratch)
-----------------------------------
Both algorithms are the *sampled Gaussian mechanism* repeated ``steps``
times, sampling rate ``q``, noise multiplier ``z``. Its Renyi differential
privacy at order ``alpha`` is ``log(A_alpha) / (alpha - 1)`` per step, with
(Mironov, Talwar and Zhang 2019, "Renyi Differential Privacy of the Sampled
Gaussian Mechanism", Sec. 3.3)::

    A_alpha = sum_{i=0}^{alpha} binom(alpha, i) (1-q)^(alpha-i) q^i exp((i^2 - i) / (2 z^2))   (integer alpha)

and a convergent series with ``erfc`` terms for fractional ``alpha``; RDP adds
up over steps (:func:`compute_rdp`, all in log space). It is turned into
``(epsilon, delta)`` with the conversion of Balle et al. 2020 (Theorem 21 of
"Hypothesis Testing Interpretations and Renyi Differential Privacy"; also
Canonne, Kamath and Steinke 2020)::

    epsilon = min_alpha  rdp(alpha) + log((alpha - 1) / alpha) - (log(delta) + log(alpha)) / (alpha - 1)

(:func:`rdp_to_epsilon`). :func:`epsilon` chains the two; :func:`noise_multiplier_for`
inverts it by bisection.

**Which sampling, which accountant.** The bound above is for **Poisson** sampling (every unit
takes part independently with probability ``q``; :func:`poisson_sample`, :func:`run`,
:func:`fedlab.capstone.run`) and add/remove-one neighbours. A **fixed-size** cohort (exactly ``m``
of ``N`` units, uniformly without replacement: :func:`fedlab.fedavg.sample_clients`, Flower's
``sample_nodes``) needs its own bound: :func:`compute_rdp_fixed_size`, Wang, Balle and
Kasiviswanathan 2019 ("Subsampled Renyi Differential Privacy and Analytical Moments Accountant",
Theorem 27 for the Gaussian), the bound ``dp_accounting`` uses for
``SampledWithoutReplacementDpEvent``. It holds for **replace-one** neighbours (``N`` is public), so
its ``noise_multiplier`` is the noise std over the *replace-one* sensitivity: replacing one user's
update clipped to ``S`` by another moves a sum by up to ``2 S``, so DP-FedAvg that adds
``N(0, (z S)^2)`` to a fixed-size cohort's sum has ``noise_multiplier = z / 2`` here
(:func:`replace_one_noise_multiplier`). :func:`epsilon`, :func:`noise_multiplier_for` and
:class:`Accountant` take ``sampling="poisson"`` (default) or ``"fixed_size"``; records of a run say
which sampling they used (``fedavg.History.sampling``), and :func:`epsilon_of_run` refuses to
account a run with the other scheme's bound (for 1,200 users, 20 a round, ``z = 0.982``, 200
rounds: Poisson 2.00, fixed size 2.93 at the same ``noise_multiplier`` - a silent mix-up would
under-report by a third). Opacus (``opacus.accountants.analysis.rdp``) and
Google's ``dp_accounting`` compute the same quantities; ``tests/test_dp.py``
checks this module against both.

Conventions: hyper-parameters are keyword-only; every random choice takes
``rng`` (an int seed or a ``numpy.random.Generator``); updates are the course's
parameter lists (:mod:`fedlab.params`). This module imports numpy, torch
and fedlab's math modules only.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fedlab import defences, fedavg, models, seeding, validate
from fedlab import engine as batched
from fedlab import params as P

DEFAULT_ORDERS: tuple[float, ...] = tuple(
    [1 + x / 10.0 for x in range(1, 100)] + list(range(11, 64)) + [128, 256, 512, 1024]
)
"""Renyi orders tried by default: 1.1 to 10.9 in steps of 0.1, every integer 11 to 63, and 128 to 1024.

The union of the grids of Opacus (``RDPAccountant.DEFAULT_ALPHAS``) and
``dp_accounting`` (``DEFAULT_RDP_ORDERS``), so that :func:`epsilon` never
reports more than either library. Any order gives a valid bound; a finer grid
between 64 and 1024 would give slightly smaller (still valid) epsilons for
very small ``q``, but then the numbers could no longer be checked against the
two references.
"""

_MAX_SERIES_TERMS = 200_000  # fractional orders: give up (return inf, i.e. skip the order) after this many terms
_SERIES_BLOCK = 256


# ----------------------------------------------------------------------------
# argument checks (errors for people)
# ----------------------------------------------------------------------------


def _real(name: str, value, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise ValueError(f"{name}={value!r}: {allowed}")
    return float(value)


def _check_q(q) -> float:
    allowed = "the sampling rate must be a number in (0, 1] (e.g. 0.01 for 1% of the clients per round)"
    v = _real("q", q, allowed)
    if not 0 < v <= 1:
        raise ValueError(f"q={q!r}: {allowed}")
    return v


def _check_delta(delta) -> float:
    allowed = "must be a number in (0, 1), typically below 1 / (number of users), e.g. 1e-5"
    v = _real("delta", delta, allowed)
    if not 0 < v < 1:
        raise ValueError(f"delta={delta!r}: {allowed}")
    return v


def _check_noise(noise_multiplier) -> float:
    allowed = "must be a finite number >= 0 (0 means no noise)"
    v = _real("noise_multiplier", noise_multiplier, allowed)
    if v < 0 or math.isinf(v):
        raise ValueError(f"noise_multiplier={noise_multiplier!r}: {allowed}")
    return v


def _check_clip(clip_norm, name: str = "clip_norm") -> float:
    allowed = "must be a number > 0 (math.inf for no clipping)"
    v = _real(name, clip_norm, allowed)
    if not v > 0:
        raise ValueError(f"{name}={clip_norm!r}: {allowed}")
    return v


def _check_steps(steps) -> int:
    return validate.positive_int("steps", steps, minimum=0)


def _check_orders(orders) -> np.ndarray:
    a = np.atleast_1d(np.asarray(orders, dtype=np.float64))
    if a.ndim != 1 or a.size == 0 or not np.all(a > 1) or np.any(np.isnan(a)):
        raise ValueError(f"orders={orders!r}: must be one or more Renyi orders, each > 1")
    return a


# ----------------------------------------------------------------------------
# Renyi DP of the sampled Gaussian mechanism
# ----------------------------------------------------------------------------


def _gammaln(x: np.ndarray) -> np.ndarray:
    """``log |Gamma(x)|`` elementwise, float64 (``torch.lgamma``; keeps fedlab free of scipy)."""
    return torch.lgamma(torch.as_tensor(x, dtype=torch.float64)).numpy()


def _log_ndtr(x: np.ndarray) -> np.ndarray:
    """``log Phi(x)``, the log of the standard normal CDF, accurate far into the left tail (float64)."""
    return torch.special.log_ndtr(torch.as_tensor(x, dtype=torch.float64)).numpy()


def _lse(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """``log(sum(exp(a)))`` along ``axis``, stable (``-inf`` for an all ``-inf`` slice)."""
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def _log_a_int(q: float, sigma: float, alphas: np.ndarray) -> np.ndarray:
    """``log A_alpha`` for integer orders: a log-sum-exp over ``i = 0..alpha`` (all orders at once)."""
    top = int(alphas.max())
    i = np.arange(top + 1, dtype=np.float64)[None, :]
    a = alphas[:, None]
    valid = i <= a
    i_ok = np.where(valid, i, 0.0)
    log_binom = _gammaln(a + 1) - _gammaln(i_ok + 1) - _gammaln(a - i_ok + 1)
    terms = log_binom + i_ok * math.log(q) + (a - i_ok) * math.log1p(-q) + (i_ok * i_ok - i_ok) / (2 * sigma**2)
    return _lse(np.where(valid, terms, -np.inf), axis=1)


def _log_a_frac(q: float, sigma: float, alphas: np.ndarray) -> np.ndarray:
    """``log A_alpha`` for fractional orders: the two-sided series of Mironov et al. 2019, Sec. 3.3.

    ``A_alpha = sum_i binom(alpha, i) [q^i (1-q)^(alpha-i) e^{(i^2-i)/(2 s^2)} Phi((z0 - i)/s)
    + q^(alpha-i) (1-q)^i e^{((alpha-i)^2-(alpha-i))/(2 s^2)} Phi((alpha - i - z0)/s)]`` with
    ``z0 = s^2 log(1/q - 1) + 1/2``. ``binom(alpha, i)`` changes sign for ``i > alpha``, so positive
    and negative terms are summed separately in log space and subtracted once (Opacus does the same;
    dp_accounting adds the magnitudes, a slightly larger bound). The series is summed in blocks of
    terms, all orders at once, until every order's terms are decreasing and ``e^30`` times smaller
    than its total; an order that has not converged after ``_MAX_SERIES_TERMS`` terms gets ``inf``
    (no bound from it).
    """
    z0 = sigma**2 * math.log(1.0 / q - 1.0) + 0.5
    lq, l1q = math.log(q), math.log1p(-q)
    a = alphas[:, None]
    pos = np.full(len(alphas), -np.inf)
    neg = np.full(len(alphas), -np.inf)
    done = np.zeros(len(alphas), dtype=bool)
    for start in range(0, _MAX_SERIES_TERMS, _SERIES_BLOCK):
        i = np.arange(start, start + _SERIES_BLOCK, dtype=np.float64)[None, :]
        j = a - i
        log_binom = _gammaln(a + 1) - _gammaln(i + 1) - _gammaln(j + 1)  # log |binom|
        s0 = log_binom + i * lq + j * l1q + (i * i - i) / (2 * sigma**2) + _log_ndtr((z0 - i) / sigma)
        s1 = log_binom + j * lq + i * l1q + (j * j - j) / (2 * sigma**2) + _log_ndtr((j - z0) / sigma)
        negative = (i > a) & (np.floor(i - a) % 2 == 1)
        both = np.concatenate([s0, s1], axis=1)
        sign = np.concatenate([negative, negative], axis=1)
        live = ~done
        pos[live] = np.logaddexp(pos[live], _lse(np.where(sign, -np.inf, both)[live], axis=1))
        neg[live] = np.logaddexp(neg[live], _lse(np.where(sign, both, -np.inf)[live], axis=1))
        total = np.logaddexp(pos, neg)
        small = (s0[:, -1] < s0[:, -2]) & (s1[:, -1] < s1[:, -2]) & (np.maximum(s0[:, -1], s1[:, -1]) < total - 30)
        done |= small
        if done.all():
            break
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(neg < pos, pos + np.log1p(-np.exp(neg - pos)), np.logaddexp(pos, neg))
    return np.where(done, out, np.inf)


def _rdp_prelude(q, noise_multiplier, steps, orders):
    """Checked ``(q, sigma, steps, alphas)`` and the RDP where no subsampling bound is needed, else ``None``.

    No steps: 0. No noise: ``inf``. ``q = 1``: the plain Gaussian, ``steps * alpha / (2 sigma^2)``.
    """
    q, sigma, steps = _check_q(q), _check_noise(noise_multiplier), _check_steps(steps)
    alphas = _check_orders(orders)
    if steps == 0:
        return q, sigma, steps, alphas, np.zeros_like(alphas)
    if sigma == 0:
        return q, sigma, steps, alphas, np.full_like(alphas, np.inf)
    if q == 1.0:
        return q, sigma, steps, alphas, steps * alphas / (2 * sigma**2)
    return q, sigma, steps, alphas, None


def compute_rdp(
    *, q: float, noise_multiplier: float, steps: int, orders: Sequence[float] = DEFAULT_ORDERS
) -> np.ndarray:
    """Renyi DP of the sampled Gaussian mechanism run ``steps`` times, at each order.

    Parameters
    ----------
    q
        Sampling rate in (0, 1]: each unit (example or client) takes part in a
        step independently with probability ``q`` (Poisson sampling).
    noise_multiplier
        ``z``: noise standard deviation divided by the L2 sensitivity (the
        clipping norm). ``0`` gives no privacy (``inf``).
    steps
        Number of steps (rounds), ``>= 0``; RDP adds up over steps.
    orders
        Renyi orders ``alpha > 1`` (integer and fractional both fine).

    Returns
    -------
    np.ndarray
        ``[len(orders)]`` float64 RDP values (``inf`` where there is no bound).

    Notes
    -----
    ``q = 1`` is the plain Gaussian mechanism, ``alpha / (2 z^2)`` per step.
    Otherwise ``log(A_alpha) / (alpha - 1)`` per step, computed in log space
    (see :func:`_log_a_int` and :func:`_log_a_frac`; Mironov et al. 2019).

    """
    q, sigma, steps, alphas, plain = _rdp_prelude(q, noise_multiplier, steps, orders)
    if plain is not None:
        return plain
    rdp = np.empty_like(alphas)
    is_int = alphas == np.floor(alphas)
    if is_int.any():
        rdp[is_int] = _log_a_int(q, sigma, alphas[is_int]) / (alphas[is_int] - 1)
    if (~is_int).any():
        rdp[~is_int] = _log_a_frac(q, sigma, alphas[~is_int]) / (alphas[~is_int] - 1)
    return steps * np.maximum(rdp, 0.0)  # A_alpha >= 1 in exact arithmetic; clear float dust below 0


SAMPLING = ("poisson", "fixed_size")
"""The two sampling schemes the accountant knows (see the module docstring)."""


def _check_sampling(sampling) -> str:
    if sampling not in SAMPLING:
        raise ValueError(
            f"sampling={sampling!r}: must be 'poisson' (each unit joins independently with probability q) or "
            "'fixed_size' (exactly q N units, uniformly without replacement)"
        )
    return sampling


def _log_sub(a: float, b: float) -> tuple[bool, float]:
    """``(sign, log|e^a - e^b|)``."""
    if a > b:
        return True, a + math.log1p(-math.exp(b - a))
    if a < b:
        return False, b + math.log1p(-math.exp(a - b))
    return True, -math.inf


def _log_add(a: float, b: float) -> float:
    lo, hi = min(a, b), max(a, b)
    return hi if lo == -math.inf else hi + math.log1p(math.exp(lo - hi))


def _wor_log_forward_diffs(sigma: float, n: int) -> np.ndarray:
    """``log |Delta^j f(-1)|`` for ``j = 1 .. n + 2``, ``f(x) = exp(x (x + 1) / (2 sigma^2))``, in log space with signs.

    ``f(l - 1) = exp((l - 1) eps(l))`` with ``eps(l) = l / (2 sigma^2)``, the Gaussian's RDP: the forward
    differences Theorem 27 of Wang et al. 2019 needs (index ``j - 1`` holds the ``j``-th difference).
    """
    vec = [(k - 1) * k / (2.0 * sigma**2) for k in range(n + 3)]  # f(-1), f(0), ..., f(n + 1)
    signs = [True] * (n + 3)
    out = np.zeros(n + 2)
    for i in range(n + 2):
        for j in range(n + 2 - i):
            if signs[j] == signs[j + 1]:
                sg, vec[j] = _log_sub(vec[j + 1], vec[j])
                signs[j] = sg if signs[j + 1] else not sg
            else:
                vec[j] = _log_add(vec[j], vec[j + 1])
                signs[j] = signs[j + 1]
        out[i] = vec[0]
    return out


def _wor_log_a_int(q: float, sigma: float, alpha: int, diffs: np.ndarray | None) -> float:
    """``log A_alpha`` of Theorem 27 (Wang et al. 2019) for an integer order, Gaussian base mechanism.

    ``A_alpha = 1 + sum_{i=2}^{alpha} binom(alpha, i) q^i B_i`` with ``B_2 = min(4 (e^{eps(2)} - 1),
    2 e^{eps(2)})`` and, for ``i >= 3``, ``B_i = min(4 sqrt(Delta^{2 floor(i/2)} Delta^{2 ceil(i/2)}),
    2 e^{(i - 1) eps(i)})`` (the forward differences ``Delta``; above order 256 only the second term, as
    ``dp_accounting`` does, to keep the work linear).
    """
    def cgf(x):
        return x * (x + 1) / (2.0 * sigma**2)

    eps2 = 2.0 / (2.0 * sigma**2)
    log_f2m1 = eps2 + math.log1p(-math.exp(-eps2))
    log_q = math.log(q)
    log_a = 0.0
    for i in range(2, alpha + 1):
        log_comb = math.lgamma(alpha + 1) - math.lgamma(i + 1) - math.lgamma(alpha - i + 1)
        if i == 2:
            s = min(math.log(4) + log_f2m1, eps2 + math.log(2))
        elif diffs is not None:
            lo, hi = diffs[2 * (i // 2) - 1], diffs[2 * ((i + 1) // 2) - 1]
            s = min(math.log(4) + 0.5 * (lo + hi), math.log(2) + cgf(i - 1))
        else:
            s = math.log(2) + cgf(i - 1)
        log_a = _log_add(log_a, s + i * log_q + log_comb)
    return log_a


_WOR_EXACT_UP_TO = 256


def compute_rdp_fixed_size(
    *, q: float, noise_multiplier: float, steps: int, orders: Sequence[float] = DEFAULT_ORDERS
) -> np.ndarray:
    """Renyi DP of the Gaussian mechanism on a fixed-size cohort (sampling without replacement), ``steps`` times.

    Each step picks exactly ``m = q N`` of the ``N`` units uniformly without replacement and releases
    their sum plus ``N(0, (noise_multiplier * Delta)^2)``, ``Delta`` the **replace-one** L2 sensitivity
    (``2 S`` for a sum of updates clipped to ``S``: see :func:`replace_one_noise_multiplier`).
    Bound: Wang, Balle and Kasiviswanathan 2019, Theorem 27 (integer orders); fractional orders
    interpolate ``log A`` linearly between the neighbouring integers (their Corollary 10), as
    ``dp_accounting``'s ``SampledWithoutReplacementDpEvent`` does; ``tests/test_dp.py`` checks the two agree.

    Parameters
    ----------
    q
        ``m / N`` in (0, 1].
    noise_multiplier
        Noise std over the replace-one sensitivity; ``0`` gives ``inf``.
    steps
        Rounds, ``>= 0``.
    orders
        Renyi orders ``> 1``.

    Returns
    -------
    np.ndarray
        ``[len(orders)]`` RDP values.

    """
    q, sigma, steps, alphas, plain = _rdp_prelude(q, noise_multiplier, steps, orders)
    if plain is not None:
        return plain
    top = int(min(math.ceil(alphas.max()), _WOR_EXACT_UP_TO))
    diffs = _wor_log_forward_diffs(sigma, top)
    cache: dict[int, float] = {}

    def log_a(a: int) -> float:
        if a not in cache:
            cache[a] = 0.0 if a == 1 else _wor_log_a_int(q, sigma, a, diffs if a <= _WOR_EXACT_UP_TO else None)
        return cache[a]

    rdp = np.empty_like(alphas)
    for k, alpha in enumerate(alphas):
        lo, hi = math.floor(alpha), math.ceil(alpha)
        t = alpha - lo
        la = log_a(int(lo)) if lo == hi else (1 - t) * log_a(int(lo)) + t * log_a(int(hi))
        rdp[k] = la / (alpha - 1)
    return steps * np.maximum(rdp, 0.0)


def replace_one_noise_multiplier(noise_multiplier: float) -> float:
    """DP-FedAvg's ``z`` (noise ``N(0, (z S)^2)``) against the replace-one sensitivity ``2 S``: ``z / 2``.

    Use it with ``sampling="fixed_size"``: swapping one user's clipped update ``u`` (``||u|| <= S``) for
    another ``v`` moves the cohort's sum by ``||u - v|| <= 2 S``.
    """
    return _check_noise(noise_multiplier) / 2.0


def compute_rdp_for(
    *, sampling: str, q: float, noise_multiplier: float, steps: int, orders: Sequence[float] = DEFAULT_ORDERS
) -> np.ndarray:
    """:func:`compute_rdp` (``sampling="poisson"``) or :func:`compute_rdp_fixed_size` (``"fixed_size"``)."""
    fn = compute_rdp if _check_sampling(sampling) == "poisson" else compute_rdp_fixed_size
    return fn(q=q, noise_multiplier=noise_multiplier, steps=steps, orders=orders)


def rdp_to_epsilon(*, rdp: Sequence[float], orders: Sequence[float], delta: float) -> tuple[float, float]:
    """The smallest ``epsilon`` over the orders for this ``delta``, and the order that gives it.

    Uses the conversion of Balle et al. 2020 (Theorem 21; Canonne, Kamath and
    Steinke 2020), tighter than Mironov's ``rdp - log(delta) / (alpha - 1)``::

        epsilon(alpha) = rdp(alpha) + log((alpha - 1) / alpha) - (log(delta) + log(alpha)) / (alpha - 1)

    and ``epsilon = 0`` for an order whose ``rdp`` is below about ``delta^2``
    (then ``delta`` alone covers it, as in ``dp_accounting``).

    Parameters
    ----------
    rdp
        ``[k]`` RDP values (e.g. from :func:`compute_rdp`), ``>= 0``.
    orders
        ``[k]`` the orders they belong to, each ``> 1``.
    delta
        Target ``delta`` in (0, 1).

    Returns
    -------
    (epsilon, order)
        ``epsilon >= 0``; ``(inf, nan)`` when no order gives a bound.

    """
    delta = _check_delta(delta)
    alphas = _check_orders(orders)
    r = np.atleast_1d(np.asarray(rdp, dtype=np.float64))
    if r.shape != alphas.shape:
        raise ValueError(f"rdp has {r.size} values and orders {alphas.size}: they must match one to one")
    if np.any(r < 0) or np.any(np.isnan(r)):
        raise ValueError("rdp has negative or nan values: Renyi divergences are >= 0")
    with np.errstate(invalid="ignore", over="ignore"):
        eps = r + np.log1p(-1.0 / alphas) - (math.log(delta) + np.log(alphas)) / (alphas - 1)
        # A divergence this small gives (0, delta)-DP outright: delta >= sqrt(1 - exp(-KL)) and KL <= rdp
        eps = np.where(delta**2 + np.expm1(-r) > 0, 0.0, eps)
    if not np.any(np.isfinite(eps)):
        return math.inf, math.nan
    best = int(np.nanargmin(np.where(np.isfinite(eps), eps, np.inf)))
    return max(0.0, float(eps[best])), float(alphas[best])


def epsilon(
    *,
    q: float,
    noise_multiplier: float,
    steps: int,
    delta: float,
    orders: Sequence[float] = DEFAULT_ORDERS,
    sampling: str = "poisson",
) -> float:
    """``epsilon`` of the sampled Gaussian mechanism after ``steps`` steps, for a target ``delta``.

    ``rdp_to_epsilon(rdp=compute_rdp_for(sampling=sampling, ...), orders=orders, delta=delta)[0]``.
    ``math.inf`` when ``noise_multiplier == 0``. ``sampling="fixed_size"`` is the bound for a cohort of
    exactly ``q N`` (replace-one neighbours; ``noise_multiplier`` against the replace-one sensitivity,
    see :func:`replace_one_noise_multiplier`).

    Examples
    --------
    >>> round(epsilon(q=0.1, noise_multiplier=1.0, steps=100, delta=1e-5), 2)
    7.9

    """
    return _epsilon(q, noise_multiplier, steps, delta, orders, sampling)


def tpr_bound(fpr, *, epsilon: float, delta: float):
    """The highest true-positive rate a membership test can have at false-positive rate ``fpr`` under (eps, delta)-DP.

    A DP guarantee is a limit on hypothesis tests (Kairouz, Oh and Viswanath 2015; Wasserman and Zhou 2010):
    for a test that tells "this user's data was in" from "it was not", at the level the guarantee protects,
    ``TPR <= e^epsilon FPR + delta`` and, from the other side, ``TPR <= 1 - e^-epsilon (1 - delta - FPR)``; the
    bound is the smaller of the two, and at most 1. At the low false-positive rates membership attacks are
    judged at (Carlini et al. 2022) the first one binds: at epsilon 2 and delta 1e-5 no attack can reach more
    than 7.4 % TPR at 1 % FPR, or 0.74 % at 0.1 %. An attack measured above it means the guarantee (or its
    accounting) does not hold; measured below it, it proves nothing by itself.

    Parameters
    ----------
    fpr
        A false-positive rate in [0, 1], or an array of them.
    epsilon
        The guarantee's epsilon, >= 0 (``inf`` gives 1).
    delta
        The guarantee's delta, in [0, 1).

    Returns
    -------
    float or np.ndarray
        The bound, with the shape of ``fpr``.

    Examples
    --------
    >>> round(tpr_bound(0.01, epsilon=2.0, delta=1e-5), 4)
    0.0739

    """
    eps = _real("epsilon", epsilon, "must be a number >= 0 (inf: no guarantee)")
    if not eps >= 0:
        raise ValueError(f"epsilon={epsilon!r}: must be a number >= 0 (inf: no guarantee)")
    d = _real("delta", delta, "must be a number in [0, 1)")
    if not 0 <= d < 1:
        raise ValueError(f"delta={delta!r}: must be a number in [0, 1)")
    f = np.asarray(fpr, dtype=np.float64)
    if f.size == 0 or not np.all((f >= 0) & (f <= 1)):
        raise ValueError(f"fpr={fpr!r}: must be false-positive rates in [0, 1]")
    if math.isinf(eps):
        out = np.ones_like(f)
    else:
        out = np.minimum.reduce([math.exp(eps) * f + d, 1.0 - math.exp(-eps) * (1.0 - d - f), np.ones_like(f)])
    return float(out) if out.ndim == 0 else out


def _epsilon(q, noise_multiplier, steps, delta, orders, sampling="poisson") -> float:
    delta = _check_delta(delta)
    rdp = compute_rdp_for(sampling=sampling, q=q, noise_multiplier=noise_multiplier, steps=steps, orders=orders)
    return rdp_to_epsilon(rdp=rdp, orders=orders, delta=delta)[0]


def noise_multiplier_for(
    *,
    epsilon: float,
    q: float,
    steps: int,
    delta: float,
    orders: Sequence[float] = DEFAULT_ORDERS,
    rtol: float = 1e-4,
    sampling: str = "poisson",
) -> float:
    """The smallest noise multiplier (to relative tolerance ``rtol``) whose epsilon is at most ``epsilon``.

    ``sampling`` as in :func:`epsilon`.

    Bisection on ``z``: :func:`epsilon` falls as ``z`` grows. The value
    returned is the upper end of the final bracket, so
    ``epsilon(q=q, noise_multiplier=z, steps=steps, delta=delta) <= epsilon``
    always holds.

    Raises
    ------
    ValueError
        For an ``epsilon`` that is not a positive number, or one no noise
        multiplier up to ``1e6`` reaches.

    """
    allowed = "must be a number > 0 (math.inf needs no noise at all)"
    target = _real("epsilon", epsilon, allowed)
    if not target > 0:
        raise ValueError(f"epsilon={epsilon!r}: {allowed}")
    q, delta, steps = _check_q(q), _check_delta(delta), validate.positive_int("steps", steps)
    _check_sampling(sampling)
    if math.isinf(target):
        return 0.0
    validate.positive_float("rtol", rtol)

    def eps_at(z):
        return _epsilon(q, z, steps, delta, orders, sampling)

    unreachable = f"epsilon={epsilon!r}: not reached by any noise multiplier up to 1e6 (q={q}, steps={steps})"
    return smallest_noise(eps_at, target, lo=0.0, hi=1.0, grow=2.0, cap=1e6, rtol=rtol, unreachable=unreachable)


def smallest_noise(
    eps_at: Callable[[float], float],
    target: float,
    *,
    lo: float,
    hi: float,
    grow: float,
    rtol: float,
    cap: float = math.inf,
    unreachable: str = "no noise multiplier reaches the target epsilon",
) -> float:
    """The smallest noise multiplier ``z`` (to relative ``rtol``) with ``eps_at(z) <= target``.

    ``eps_at`` falls as ``z`` grows. ``hi`` is multiplied by ``grow`` until it reaches the target (a
    ValueError saying ``unreachable`` once it passes ``cap``), then ``[lo, hi]`` is bisected; the
    returned ``z`` satisfies the target.
    Every noise calibration of the course uses it (:func:`noise_multiplier_for`,
    :func:`fedlab.capstone.noise_multiplier_for`, :func:`fedlab.distributed_dp.noise_multiplier_for`).
    """
    while eps_at(hi) > target:
        lo, hi = hi, hi * grow
        if hi > cap:
            raise ValueError(unreachable)
    while hi - lo > rtol * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if eps_at(mid) > target else (lo, mid)
    return hi


def epsilon_of_run(
    history,
    *,
    num_clients: int,
    noise_multiplier: float,
    delta: float,
    q: float | None = None,
    sampling: str | None = None,
    clip_norm_units: str = "clip",
) -> float:
    """``epsilon`` of a finished DP run from its records, with the accountant its sampling needs.

    Parameters
    ----------
    history
        A :class:`fedlab.fedavg.History` (its ``sampling`` and per-round ``clients``).
    num_clients
        ``N``, the number of clients the run sampled from.
    noise_multiplier
        ``z`` of the noise ``N(0, (z S)^2)`` added to the cohort's sum of updates clipped to ``S``.
    delta
        Target ``delta``.
    q
        The sampling rate of a Poisson run (its records only show the realized cohort sizes); not
        used for a fixed-size run (``q = m / N`` from the records).
    sampling
        What the caller believes the run used; ``None`` takes the history's. A value that differs from
        the history's raises (a Poisson epsilon for a fixed-size run under-reports it).
    clip_norm_units
        ``"clip"``: ``noise_multiplier`` is relative to ``S``, as in DP-FedAvg and Flower's DP
        wrappers (for a fixed-size cohort it is halved: the replace-one sensitivity is ``2 S``).
        ``"replace_one"``: it is already relative to the replace-one sensitivity.

    Raises
    ------
    ValueError
        For a sampling mismatch, or a fixed-size run whose cohort size changed between rounds.

    """
    hist_sampling = _check_sampling(getattr(history, "sampling", None))
    if sampling is not None and _check_sampling(sampling) != hist_sampling:
        raise ValueError(
            f"sampling={sampling!r}, but this run sampled {hist_sampling!r} cohorts: its epsilon needs the "
            f"{hist_sampling!r} accountant (dp.epsilon(..., sampling={hist_sampling!r}))"
        )
    validate.one_of("clip_norm_units", clip_norm_units, ("clip", "replace_one"))
    n = validate.positive_int("num_clients", num_clients)
    rounds = len(history.records)
    if rounds == 0:
        return 0.0
    if hist_sampling == "poisson":
        if q is None:
            raise ValueError("q=None: a Poisson run's records do not show its sampling rate; pass q=")
        return epsilon(q=q, noise_multiplier=noise_multiplier, steps=rounds, delta=delta)
    sizes = {int(r.clients) for r in history.records}
    if len(sizes) != 1:
        raise ValueError(
            f"the run's cohort size changed between rounds ({sorted(sizes)}): account each phase separately"
        )
    (m,) = sizes
    z = noise_multiplier if clip_norm_units == "replace_one" else replace_one_noise_multiplier(noise_multiplier)
    return epsilon(q=m / n, noise_multiplier=z, steps=rounds, delta=delta, sampling="fixed_size")


@dataclass(frozen=True)
class Accountant:
    """A thin record of the mechanisms run so far; the analysis is in the pure functions above.

    ``history`` holds ``(q, noise_multiplier, steps)`` triples, or
    ``(q, noise_multiplier, steps, sampling)`` for a phase with ``sampling="fixed_size"``. :meth:`step`
    returns a new accountant (the object is frozen), :meth:`epsilon` adds up
    the RDP of every entry and converts it (RDP composes across both schemes).

    Examples
    --------
    >>> acc = Accountant().step(q=0.1, noise_multiplier=1.0, steps=60).step(q=0.1, noise_multiplier=1.0, steps=40)
    >>> round(acc.epsilon(delta=1e-5), 2)
    7.9

    """

    history: tuple = ()
    orders: tuple = DEFAULT_ORDERS

    def step(self, *, q: float, noise_multiplier: float, steps: int = 1, sampling: str = "poisson") -> Accountant:
        """A new accountant: this one's history plus ``steps`` steps of the sampled Gaussian mechanism."""
        entry = (_check_q(q), _check_noise(noise_multiplier), _check_steps(steps))
        extra = () if _check_sampling(sampling) == "poisson" else (sampling,)
        h = list(self.history)
        if h and h[-1][:2] == entry[:2] and tuple(h[-1][3:]) == extra:
            h[-1] = (*entry[:2], h[-1][2] + entry[2], *extra)
        else:
            h.append((*entry, *extra))
        return Accountant(tuple(h), self.orders)

    def rdp(self) -> np.ndarray:
        """Total RDP at :attr:`orders`."""
        total = np.zeros(len(self.orders))
        for q, z, n, *rest in self.history:
            sampling = rest[0] if rest else "poisson"
            total = total + compute_rdp_for(sampling=sampling, q=q, noise_multiplier=z, steps=n, orders=self.orders)
        return total

    def epsilon(self, *, delta: float) -> float:
        """``epsilon`` spent so far for this ``delta``."""
        return rdp_to_epsilon(rdp=self.rdp(), orders=self.orders, delta=delta)[0]


# ----------------------------------------------------------------------------
# clipping and the Gaussian mechanism
# ----------------------------------------------------------------------------


def clip_update(delta, *, max_norm: float) -> list[np.ndarray]:
    """``delta * min(1, max_norm / ||delta||)``: one update clipped to global L2 norm ``max_norm``.

    The same function as :func:`fedlab.defences.clip_update` (one source); the
    norm runs over all tensors of the update together. ``math.inf`` leaves it
    unchanged.
    """
    _check_clip(max_norm, "max_norm")
    return defences.clip_update(delta, max_norm=max_norm)


def clip_per_example(rows: Sequence, *, max_norm: float) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Clip every row of a stacked batch to L2 norm ``max_norm``, the norm taken over all tensors of the row.

    Parameters
    ----------
    rows
        A list of tensors (or arrays) ``[B, *shape_i]``: row ``b`` of every
        tensor together is one example's gradient (DP-SGD) or one client's
        delta (DP-FedAvg).
    max_norm
        ``C > 0``.

    Returns
    -------
    (clipped, norms)
        The clipped tensors (same shapes, float of the input, or float32
        from numpy) and the ``[B]`` norms before clipping.

    """
    c = _check_clip(max_norm, "max_norm")
    ts = [r if isinstance(r, torch.Tensor) else torch.as_tensor(np.asarray(r, dtype=np.float32)) for r in rows]
    if not ts or any(t.ndim == 0 or t.shape[0] != ts[0].shape[0] for t in ts):
        raise ValueError("rows must be a non-empty list of tensors with the same leading (batch) dimension")
    norms = torch.sqrt(sum(t.reshape(t.shape[0], -1).to(torch.float64).pow(2).sum(1) for t in ts))
    scale = torch.clamp(c / torch.clamp(norms, min=1e-300), max=1.0) if math.isfinite(c) else torch.ones_like(norms)
    return [t * scale.to(t.dtype).view(-1, *([1] * (t.ndim - 1))) for t in ts], norms


def gaussian_mechanism(values, *, sensitivity: float, noise_multiplier: float, rng: int | np.random.Generator):
    """``values + N(0, (noise_multiplier * sensitivity)^2)``, entry by entry.

    Parameters
    ----------
    values
        A numpy array, or a list of arrays (an update, :mod:`fedlab.params`).
    sensitivity
        The L2 sensitivity of ``values`` (its clipping bound), ``> 0``.
    noise_multiplier
        ``z >= 0``.
    rng
        Seed or Generator; draws ``standard_normal`` tensor by tensor, in order.

    Returns
    -------
    The noised values, float64 array for an array input, float32 list for a list.

    """
    s = _check_clip(sensitivity, "sensitivity")
    z = _check_noise(noise_multiplier)
    std = z * s
    if isinstance(values, np.ndarray) or isinstance(values, numbers.Real):
        gen = seeding.as_generator(rng)
        a = np.asarray(values, dtype=np.float64)
        return a + std * gen.standard_normal(a.shape)
    return defences.add_gaussian_noise(values, std=std, rng=rng)


def noise_std(*, noise_multiplier: float, clip_norm: float, expected_clients: float) -> float:
    """Standard deviation of the noise on DP-FedAvg's average update: ``z S / (q N)``."""
    z, s = _check_noise(noise_multiplier), _check_clip(clip_norm)
    e = validate.positive_float("expected_clients", expected_clients)
    return z * s / e


# ----------------------------------------------------------------------------
# DP-FedAvg (user-level DP, McMahan et al. 2018)
# ----------------------------------------------------------------------------


def poisson_sample(num_clients: int, *, q: float, rng: int | np.random.Generator) -> np.ndarray:
    """Each client independently with probability ``q``; sorted indices (may be empty).

    Poisson sampling is what the accountant assumes: the number of
    participants varies from round to round (mean ``q N``).
    """
    validate.positive_int("num_clients", num_clients)
    q = _check_q(q)
    return np.flatnonzero(seeding.as_generator(rng).random(num_clients) < q).astype(np.int64)


def dp_aggregate(
    deltas: Sequence,
    *,
    clip_norm: float,
    noise_multiplier: float,
    expected_clients: float,
    rng: int | np.random.Generator,
    like: Sequence | None = None,
) -> list[np.ndarray]:
    """The DP-FedAvg server step: clip each delta to ``S``, sum, divide by ``q N``, add ``N(0, (z S / (q N))^2)``.

    Parameters
    ----------
    deltas
        The participating clients' updates (lists of arrays); may be empty.
    clip_norm
        ``S``, the per-client clipping bound (the user-level sensitivity of the sum).
    noise_multiplier
        ``z``.
    expected_clients
        The fixed denominator ``q N``, the *expected* number of participants.
    rng
        Seed or Generator for the noise (``standard_normal`` tensor by tensor).
    like
        Shapes to use when ``deltas`` is empty (the round still releases noise).

    Returns
    -------
    list[np.ndarray]
        float32, the noised average update.

    """
    s, z = _check_clip(clip_norm), _check_noise(noise_multiplier)
    e = validate.positive_float("expected_clients", expected_clients)
    if len(deltas) == 0 and like is None:
        raise ValueError("deltas is empty and like is None: pass like=params to aggregate an empty round")
    shapes = [np.shape(t) for t in (deltas[0] if len(deltas) else like)]
    total = [np.zeros(sh, dtype=np.float64) for sh in shapes]
    for k, d in enumerate(deltas):
        d = clip_update(d, max_norm=s)
        P.check_like(d, total, name=f"deltas[{k}]")
        for acc, t in zip(total, d):
            acc += t
    gen = seeding.as_generator(rng)
    std = z * s / e
    return [(acc / e + std * gen.standard_normal(acc.shape)).astype(np.float32) for acc in total]


def dp_fedavg_round(
    spec: models.ModelSpec,
    params: list,
    clients: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    q: float,
    clip_norm: float,
    noise_multiplier: float,
    epochs: int,
    batch_size: int | None,
    lr: float,
    rng: int | np.random.Generator,
    server_lr: float = 1.0,
) -> tuple[list, np.ndarray]:
    """One round of DP-FedAvg with the plain per-client loop (the reference; :func:`run` is the fast version).

    From ``rng``, in this order: the participants (:func:`poisson_sample`),
    each participant's :func:`fedavg.client_update` (its shuffle), then the
    noise (:func:`dp_aggregate`). Returns ``(new params, participants)``.
    """
    gen = seeding.as_generator(rng)
    chosen = poisson_sample(len(clients), q=q, rng=gen)
    outs = [
        fedavg.client_update(spec, params, *clients[k], epochs=epochs, batch_size=batch_size, lr=lr, rng=gen)
        for k in chosen
    ]
    avg = dp_aggregate(
        [o.delta for o in outs], clip_norm=clip_norm, noise_multiplier=noise_multiplier,
        expected_clients=q * len(clients), rng=gen, like=params,
    )  # fmt: skip
    return fedavg.server_update(fedavg.ServerState(params), avg, server_lr=server_lr).params, chosen


def run(
    spec: models.ModelSpec,
    clients: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    rounds: int,
    seed: int,
    q: float,
    clip_norm: float,
    noise_multiplier: float,
    epochs: int = 1,
    batch_size: int | None = 10,
    lr: float = 0.1,
    server_lr: float = 1.0,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    eval_every: int = 1,
    init: list | None = None,
    engine: str = "batched",
    threads: int | None = 1,
    callback: Callable[[int, list], None] | None = None,
) -> tuple[list, fedavg.History]:
    """DP-FedAvg for ``rounds`` rounds: Poisson sampling, per-client clipping, fixed denominator, Gaussian noise.

    Parameters
    ----------
    seed
        Initial model from ``derive(seed, 0)`` (as :func:`fedlab.fedavg.run`);
        round ``r`` draws from ``derive(seed, r)``, in this order: every
        client's shuffle keys ``[N, epochs, n_max]``, ``N`` uniforms for
        sampling (client ``k`` takes part if ``u_k < q``), then the noise.
        With ``q = 1``, ``noise_multiplier = 0``, a huge ``clip_norm`` and
        clients of equal size this is exactly :func:`fedlab.fedavg.run` with
        ``fraction = 1``.
    q, clip_norm, noise_multiplier
        Sampling rate, per-client clipping bound ``S`` and noise multiplier
        ``z``: the average update gets noise of std ``z S / (q N)``. Its
        privacy is ``epsilon(q=q, noise_multiplier=z, steps=rounds, delta=...)``.
    test, eval_every
        Evaluate on ``test`` every ``eval_every`` rounds and after the last
        (other rounds record ``nan``).
    engine
        ``"batched"`` (:mod:`fedlab.engine`, all participants at once) or
        ``"loop"`` (one :func:`fedlab.fedavg.local_sgd` per participant).
    callback
        ``callback(round, params)`` after every round (e.g. to measure a
        membership attack along the way).

    Returns
    -------
    (params, history)
        A :class:`fedlab.fedavg.History`; ``clients`` and ``reported`` are
        the round's participants, ``train_loss`` their mean loss.

    """
    validate.positive_int("rounds", rounds)
    q, s, z = _check_q(q), _check_clip(clip_norm), _check_noise(noise_multiplier)
    validate.one_of("engine", engine, ("batched", "loop"))
    validate.positive_int("epochs", epochs)
    if batch_size is not None:
        validate.positive_int("batch_size", batch_size)
    validate.positive_float("lr", lr)
    validate.positive_int("eval_every", eval_every)
    if len(clients) == 0:
        raise ValueError("clients is empty: run needs at least one (x, y) client")
    clients = [fedavg._check_xy(x, y, spec) for x, y in clients]
    n = len(clients)
    sizes = np.array([len(y) for _, y in clients])
    nmax = int(sizes.max())
    params = (
        models.check_params(spec, init, name="init") if init is not None
        else models.init_params(spec, rng=seeding.derive(seed, 0))
    )  # fmt: skip
    state = fedavg.ServerState(params, 0)
    denominator = q * n
    std = z * s / denominator
    packed = batched.pack(clients) if engine == "batched" else None
    model_bytes = P.num_bytes(params)
    records = []
    with batched.torch_threads(threads):
        for r in range(1, rounds + 1):
            t0 = time.perf_counter()
            g = seeding.derive(seed, r)
            keys = g.random((n, epochs, nmax))
            chosen = np.flatnonzero(g.random(n) < q)
            total = [np.zeros(p.shape, np.float64) for p in state.params]
            train_loss = float("nan")
            if len(chosen):
                if engine == "batched":
                    cohort = batched.train(
                        spec, state.params, packed, chosen, keys=keys[chosen], batch_size=batch_size, lr=lr
                    )
                    clipped, _ = clip_per_example(cohort.deltas(), max_norm=s)
                    total = [c.to(torch.float64).sum(0).numpy() for c in clipped]
                    train_loss = cohort.mean_loss()
                else:
                    losses = []
                    for k in chosen:
                        out = fedavg.local_sgd(
                            spec, state.params, *clients[k], orders=fedavg.epoch_orders(keys[k, :, : sizes[k]]),
                            batch_size=batch_size, lr=lr,
                        )  # fmt: skip
                        for acc, t in zip(total, clip_update(out.delta, max_norm=s)):
                            acc += t
                        losses.append((out.metrics["loss"], out.num_examples))
                    w = np.array([m for _, m in losses], dtype=np.float64)
                    train_loss = float(np.dot(w, [v for v, _ in losses]) / w.sum())
            avg = [(acc / denominator + std * g.standard_normal(acc.shape)).astype(np.float32) for acc in total]
            state = fedavg.server_update(state, avg, server_lr=server_lr)
            seconds = time.perf_counter() - t0
            if test is not None and (r % eval_every == 0 or r == rounds):
                test_loss, test_acc = models.evaluate(spec, state.params, *test)
            else:
                test_loss, test_acc = float("nan"), float("nan")
            records.append(
                fedavg.RoundRecord(
                    r, len(chosen), len(chosen), train_loss, test_loss, test_acc,
                    model_bytes * len(chosen), model_bytes * len(chosen), seconds,
                    sampled_ids=tuple(int(k) for k in chosen), reported_ids=tuple(int(k) for k in chosen),
                )
            )  # fmt: skip
            if callback is not None:
                callback(r, state.params)
    return state.params, fedavg.History(tuple(records), sampling="poisson")


# ----------------------------------------------------------------------------
# DP-SGD (example-level DP, Abadi et al. 2016) for the centralised comparison
# ----------------------------------------------------------------------------


def per_example_grads(spec: models.ModelSpec, params, x, y) -> list[torch.Tensor]:
    """Gradients of each example's cross-entropy: one ``[B, *shape_i]`` float32 tensor per parameter tensor.

    ``torch.func.vmap`` over ``torch.func.grad`` of :func:`fedlab.models.forward`
    on a batch of one: every example's gradient in one vectorised pass.
    """
    from torch.func import grad, vmap

    params = models.check_params(spec, params)
    x = validate.array("x", x, ndim=2)
    y = validate.array("y", y, ndim=1, dtype_kind="iu")
    if x.shape[0] != y.shape[0] or x.shape[1] != spec.in_features:
        raise ValueError(f"x has shape {x.shape} and y {y.shape}: need [n, {spec.in_features}] and [n]")
    tensors = tuple(torch.as_tensor(p) for p in params)

    def loss_one(ts, xi, yi):
        return F.cross_entropy(models.forward(spec, list(ts), xi.unsqueeze(0)), yi.unsqueeze(0))

    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    yt = torch.as_tensor(np.asarray(y, dtype=np.int64))
    return list(vmap(grad(loss_one), in_dims=(None, 0, 0))(tensors, xt, yt))


def dp_sgd_step(
    spec: models.ModelSpec,
    params,
    x,
    y,
    *,
    clip_norm: float,
    noise_multiplier: float,
    expected_batch_size: float,
    lr: float,
    rng: int | np.random.Generator,
) -> list[np.ndarray]:
    """One DP-SGD step on the batch ``(x, y)``: ``w - lr (sum_i clip_C(g_i) + N(0, (z C)^2)) / L``.

    ``L`` is the expected batch size ``q n`` (the fixed denominator, as Opacus
    does with Poisson sampling). An empty batch still adds the noise.
    Returns the new parameters (float32 list).
    """
    c, z = _check_clip(clip_norm), _check_noise(noise_multiplier)
    e = validate.positive_float("expected_batch_size", expected_batch_size)
    validate.positive_float("lr", lr)
    params = models.check_params(spec, params)
    if len(y):
        clipped, _ = clip_per_example(per_example_grads(spec, params, x, y), max_norm=c)
        sums = [t.sum(0).to(torch.float64).numpy() for t in clipped]
    else:
        sums = [np.zeros(p.shape) for p in params]
    gen = seeding.as_generator(rng)
    return [
        (p - lr * (s_ + z * c * gen.standard_normal(p.shape)) / e).astype(np.float32) for p, s_ in zip(params, sums)
    ]


def dp_sgd(
    spec: models.ModelSpec,
    x,
    y,
    *,
    q: float,
    steps: int,
    clip_norm: float,
    noise_multiplier: float,
    lr: float,
    seed: int,
    init: list | None = None,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    eval_every: int = 0,
) -> tuple[list, list[tuple[int, float]]]:
    """DP-SGD for ``steps`` steps with Poisson sampling of examples at rate ``q``.

    Step ``t`` draws its batch and its noise from ``derive(seed, t)``; the
    initial model is ``derive(seed, 0)``. Privacy:
    ``epsilon(q=q, noise_multiplier=noise_multiplier, steps=steps, delta=...)``
    at the level of one example.

    Returns
    -------
    (params, curve)
        ``curve`` lists ``(step, test accuracy)`` every ``eval_every`` steps
        and after the last (empty without ``test``).

    """
    x = validate.array("x", x, ndim=2)
    validate.positive_int("steps", steps)
    q = _check_q(q)
    n = x.shape[0]
    if init is not None:
        params = models.check_params(spec, init, name="init")
    else:
        params = models.init_params(spec, rng=seeding.derive(seed, 0))
    curve = []
    with batched.torch_threads(1):
        for t in range(1, steps + 1):
            g = seeding.derive(seed, t)
            idx = np.flatnonzero(g.random(n) < q)
            params = dp_sgd_step(
                spec, params, x[idx], np.asarray(y)[idx], clip_norm=clip_norm, noise_multiplier=noise_multiplier,
                expected_batch_size=q * n, lr=lr, rng=g,
            )  # fmt: skip
            if test is not None and ((eval_every and t % eval_every == 0) or t == steps):
                curve.append((t, models.evaluate(spec, params, *test)[1]))
    return params, curve


__all__ = [
    "DEFAULT_ORDERS",
    "Accountant",
    "clip_per_example",
    "clip_update",
    "compute_rdp",
    "dp_aggregate",
    "dp_fedavg_round",
    "dp_sgd",
    "dp_sgd_step",
    "epsilon",
    "gaussian_mechanism",
    "noise_multiplier_for",
    "noise_std",
    "per_example_grads",
    "poisson_sample",
    "rdp_to_epsilon",
    "run",
    "tpr_bound",
]
