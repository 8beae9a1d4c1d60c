"""The capstone (lesson 10): every layer on at once, composed from the course's own modules.

One **private round** of the health app is

    clip (``fedlab.dp``) -> fixed-point encode (``bits``, ``frac_bits``) -> secure aggregation
    (``fedlab.secagg``: X25519 key agreement, pairwise and self masks, Shamir recovery of dropouts)
    -> the server unmasks the exact sum -> Gaussian noise -> divide by ``q N`` -> decode into an update

(:func:`private_round`), and :func:`run` repeats it over many rounds with Poisson sampling of users,
dropouts during the protocol and local training on the batched engine (:mod:`fedlab.engine`).

Three design decisions, stated once
-----------------------------------
**Where the noise is added: central DP on the unmasked sum.** The server unmasks
``sum_k clip(Delta_k)`` exactly, then adds ``N(0, (z S)^2)`` to every coordinate before the
sum touches the model. So the *model* (and everyone who sees it: other users, analysts, whoever
gets the phone app) is ``(epsilon, delta)``-DP at the level of one user, but the *server* sees the
exact sum of the clipped updates of a round: secure aggregation hides each user's update from it,
and DP is trusted to the server's noise. The alternative, *distributed* noise (each client adds a
share of discrete noise before masking, Kairouz et al. 2021, "The Distributed Discrete Gaussian
Mechanism"), protects the sum from the server too, at the price of integer noise, more bits and a
privacy loss that grows when clients drop: lesson 13 builds it, ``run(..., noise="distributed")``
(see "Distributed noise" below); ``noise="central"`` (the default) is lesson 10's pipeline, unchanged.

**Compression under secure aggregation: only the fixed-point width.** A masked vector is
uniformly random mod ``2^bits``: top-k sparsification or per-client scaling cannot be applied to it
(the positions and scales would differ between clients and the masks would not cancel). What can
shrink is ``bits``, the width of every value in the ring, for every client alike. The sum of
``n`` clipped values must still fit: ``n * round(S * 2^frac_bits) <= 2^(bits-1) - 1``
(:func:`fedlab.secagg.check_capacity`), so each round takes the finest ``frac_bits`` that fits its
cohort (:func:`fedlab.secagg.max_frac_bits`): fewer bits means a coarser grid (at 8 bits and 20
clients, steps of ``2^-3``), deterministic rounding, and updates that round to zero. Bytes are
counted from the protocol's messages (``nbytes`` of :class:`fedlab.secagg.AdvertiseKeys` ...
:class:`fedlab.secagg.UnmaskingShares`): for a small model the keys and shares, not the update,
are most of them.

**Who attacks what.** The reconstruction attacker is run against what the server actually
sees: the unmasked sum of a round (:attr:`PrivateRound.server_view`), and, for contrast, one user's
plain update (no secure aggregation, no DP), which is what a FedAvg server of lesson 02 sees.

Sampling, dropouts and the accountant: users take part with probability ``q`` each round
(Poisson, as :func:`fedlab.dp.run`), and a sampled user may drop at any phase of the protocol;
a user who drops before its masked input is simply not in the sum. Dropouts independent of the
data only lower the chance of being in the sum. A round the protocol **refuses** (a cohort of
fewer than two, or fewer than ``t`` clients left at the end; :func:`refuses`) releases noise only.

**Refusals and the per-user bound.** Whether a round is refused depends on how many users take
part, so one user can *flip* a round: with ``u`` the cohort of 1 is refused and its noise-only
release becomes a sum of 2 updates (the release moves by ``2 S``, not ``S``); with ``n = 4, t = 3``
and two drops before their masked input, adding a fifth user moves it by ``3 S``. The sampled
Gaussian analysis does not cover that. The accounting here (:func:`epsilon`) is valid anyway:
let ``F`` be the event that the one user in which two neighbouring datasets differ is sampled in
some round and its presence changes that round between refused and released. A mechanism that in
such a round follows the decision made without ``u`` is exactly the sampled Gaussian mechanism
for ``u`` (the decision then depends on the others only), so it is ``(epsilon, delta_sgm)``-DP, and
it differs from the real pipeline only on ``F``; hence the real pipeline is
``(epsilon, delta_sgm + e^epsilon P[F])``-DP. :func:`refusal_flip_probability` computes ``P[F]``
exactly from the cohort and dropout distributions, and :func:`epsilon` reports the epsilon whose
*total* delta (``delta_sgm`` plus that term) is the ``delta`` asked for - ``inf`` when the term
alone exceeds it. It is small only when small cohorts are rare: over 200 rounds of 1,200 users with
10% dropouts the term ``e^2 P[F]`` is 1.1e-3 at 20 users a round (a hundred times ``delta =
1e-5``: no guarantee at that delta), 2.4e-5 at 30, 4.9e-7 at 40 and 9e-9 at 50; with 5% dropouts
it is 1.9e-7 at 30. (Departure, stated: the fixed-point grid (``frac_bits``) is chosen for the
actual cohort size, so one user can also move the others' rounding, by at most ``n 2^-(frac_bits+1)``
per coordinate; at 16 bits that is far below the noise and is not counted.)

Distributed noise (lesson 13, issue 20)
---------------------------------------
``run(..., noise="distributed")`` replaces :func:`private_round` by :func:`distributed_round`: each sampled
phone clips, rotates, rounds, adds its Skellam share and reduces mod ``2^bits``
(:func:`fedlab.distributed_dp.encode_cohort`) *before* masking, so secure aggregation hands the server a
noised modular sum and nothing else; it decodes and divides by ``q N``, and adds nothing. Decisions:

- **one public plan per run** (:func:`distributed_plan`), made before any phone is sampled: the ring is
  sized for :func:`cohort_cap` phones (a Poisson cohort exceeds it with probability ``1e-6`` a round; such
  a round keeps the plan's noise and scale) and every phone's share for ``min_survivors`` survivors
  (:func:`min_survivors_for`: the largest whose refusal term stays within ``delta / 10``);
- **a refused round releases nothing** (secure aggregation's refusals, and fewer than ``min_survivors``
  noised vectors in the sum: :class:`fedlab.distributed_dp.NoiseShortfallError`). No trusted party can add
  noise alone; the model does not move;
- **the accountant** is :mod:`fedlab.distributed_dp`'s (Skellam RDP of the plan at ``min_survivors``, Zhu
  and Wang's Poisson subsampling) plus the same refusal-flip term as above, for the distributed rule
  (:func:`distributed_flip_probability`: one user can move the count of noised vectors across
  ``min_survivors``). :func:`epsilon_vs_survivors` gives the mechanism's epsilon when fewer phones
  survive than planned (dropouts eat noise);
- **wrap-around is measured**, not assumed: every released round compares the centred ring sum with the
  un-wrapped integer sum of the same vectors (:attr:`CapstoneHistory.wrap_rate`).

At lesson 10's setting (30 users a round, 5% dropouts, 200 rounds, epsilon 2 at delta 1e-5) that is
``min_survivors = 7``, ``z = 1.372`` for 6 shares, and a typical round carries about 28 shares: the price
of not trusting the server is about 2.6 times the central noise std on the sum, and ``d' = 32`` values
per phone instead of 18 (``benchmarks/distributed_dp.py`` measures accuracy, bits, bytes, wraps and time).

Everything random takes a seed or ``numpy.random.Generator``; this module imports numpy, torch
and fedlab's math modules only (no widgets).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fedlab import attacks, dp, fedavg, metrics, models, secagg, seeding, validate
from fedlab import distributed_dp as ddp
from fedlab import engine as batched
from fedlab import params as P

DELTA = 1e-5
"""The ``delta`` of every epsilon in lesson 10 (about 1 / (number of users)^2 for 1,200 users is 7e-7;
1e-5 is the course's convention from lesson 08, below 1 / 1,200)."""

SHARE_CIPHERTEXT_BYTES = 2 * secagg.ID_BYTES + 2 * secagg.KEY_BYTES + 16
"""Bytes of one encrypted pair of Shamir shares: the two ids, two 32-byte shares and the 16-byte Poly1305 tag."""


# ----------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------


def _check_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer) or not 8 <= bits <= 64:
        raise ValueError(f"bits={bits!r}: must be an int in [8, 64] (the width of one value in the ring)")
    return int(bits)


def _check_rate(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating) or not 0 <= value < 1:
        raise ValueError(f"{name}={value!r}: must be a number in [0, 1)")
    return float(value)


def threshold_for(num_clients: int) -> int:
    """The Shamir threshold the capstone uses: a strict majority, ``max(2, n // 2 + 1)``.

    Fewer than ``t`` colluding clients learn nothing from the shares; with ``t > n / 2`` two disjoint
    groups can never both rebuild a client's secrets (Bonawitz et al. 2017, Sec. 4).
    """
    n = validate.positive_int("num_clients", num_clients, minimum=2)
    return max(2, n // 2 + 1)


def refuses(num_clients: int, survivors: int) -> bool:
    """Whether the protocol refuses a round: a cohort of fewer than 2, or fewer survivors than the threshold.

    ``survivors`` is the number of the ``num_clients`` sampled clients that never drop (every phase
    needs ``t = threshold_for(n)`` messages, and the last phase has the fewest senders).
    """
    n = validate.positive_int("num_clients", num_clients, minimum=0)
    k = validate.positive_int("survivors", survivors, minimum=0)
    if k > n:
        raise ValueError(f"survivors={survivors!r}: at most num_clients={n}")
    return n < 2 or k < threshold_for(n)


def _log_binom_pmf(n: int, p: float) -> np.ndarray:
    k = np.arange(n + 1, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp, log1mp = (math.log(p) if p > 0 else -np.inf), (math.log1p(-p) if p < 1 else -np.inf)
        out = dp._gammaln(np.float64(n + 1)) - dp._gammaln(k + 1) - dp._gammaln(n - k + 1)
        out = out + np.where(k > 0, k * logp, 0.0) + np.where(k < n, (n - k) * log1mp, 0.0)
    return out


def refusal_flip_probability(*, num_users: int, q: float, dropout_rate: float, rounds: int) -> float:
    """``P[F]``: the chance that one given user is sampled in some round and flips it (refused vs released).

    Per round: the user is sampled (``q``); the other users' cohort ``k ~ Binomial(num_users - 1, q)``
    and its survivors ``j ~ Binomial(k, 1 - dropout_rate)``; the user survives with probability
    ``1 - dropout_rate``; a flip is ``refuses(k, j) != refuses(k + 1, j + survives)``. Over ``rounds``
    independent rounds ``1 - (1 - p)^rounds``. Exact sums (terms below ``1e-30`` skipped); the larger of
    the values for ``num_users`` and ``num_users - 1`` others, so either dataset of a neighbouring pair
    is covered.
    """
    n_users = validate.positive_int("num_users", num_users, minimum=2)
    q = dp._check_q(q)
    rate = _check_rate("dropout_rate", dropout_rate)
    t = validate.positive_int("rounds", rounds, minimum=0)
    worst = _flip_per_round(n_users, q, rate)
    return float(-math.expm1(t * math.log1p(-worst))) if worst < 1 else 1.0


@functools.lru_cache(maxsize=256)
def _flip_per_round(n_users: int, q: float, rate: float) -> float:
    worst = 0.0
    for others in (n_users - 1, n_users):
        pk = np.exp(_log_binom_pmf(others, q))
        p = 0.0
        for k in np.flatnonzero(pk > 1e-30):
            k = int(k)
            pj = np.exp(_log_binom_pmf(k, 1.0 - rate)) if k else np.ones(1)
            for j in np.flatnonzero(pj > 1e-30):
                j = int(j)
                before = refuses(k, j)
                flip = (1 - rate) * (before != refuses(k + 1, j + 1)) + rate * (before != refuses(k + 1, j))
                p += pk[k] * pj[j] * flip
        worst = max(worst, q * p)
    return min(worst, 1.0)


def _solve_total_delta(eps_at: Callable[[float], float], flip: float, d: float) -> float:
    """The epsilon with ``delta_mech(epsilon) + e^epsilon flip = d``: fixed-point iteration that only raises epsilon."""
    eps = eps_at(d)
    for _ in range(100):
        rest = d - math.exp(min(eps, 700.0)) * flip
        if rest <= 0:
            return math.inf
        new = eps_at(rest)
        if new <= eps * (1 + 1e-9):
            return max(eps, new)
        eps = new
    return eps


def epsilon(
    *,
    num_users: int,
    q: float,
    noise_multiplier: float,
    rounds: int,
    dropout_rate: float,
    delta: float = DELTA,
    accountant: dp.Accountant | None = None,
    noise: str = "central",
    plan: ddp.Plan | None = None,
    dim: int | None = None,
    clip_norm: float | None = None,
    bits: int | None = None,
    min_survivors: int | None = None,
) -> float:
    """The capstone's valid user-level epsilon at total ``delta``, refusals included (see the module docstring).

    Finds ``epsilon`` with ``delta_mech + e^epsilon P[F] = delta`` by a fixed-point iteration that only
    raises epsilon; ``math.inf`` when no epsilon reaches ``delta`` (the flip term alone is too large).

    - ``noise="central"`` (lesson 10): ``delta_mech`` is the sampled Gaussian mechanism's delta
      (``accountant``, default ``dp.Accountant().step(q, noise_multiplier, rounds)``) and ``P[F]``
      :func:`refusal_flip_probability`.
    - ``noise="distributed"``: ``delta_mech`` from :func:`fedlab.distributed_dp.epsilon` for the round's
      plan (the Skellam RDP with ``min_survivors``' noise, Poisson-subsampled) and ``P[F]``
      :func:`distributed_flip_probability` (a round is also refused below ``min_survivors``). Give the
      ``plan`` (:func:`distributed_plan`) or ``dim``, ``clip_norm`` and ``bits`` (and optionally
      ``min_survivors``) to build it.
    """
    d = dp._check_delta(delta)
    z = dp._check_noise(noise_multiplier)
    t = validate.positive_int("rounds", rounds, minimum=0)
    validate.one_of("noise", noise, NOISES)
    if noise == "distributed":
        pl = _plan_from(plan, dim=dim, clip_norm=clip_norm, bits=bits, min_survivors=min_survivors,
                        noise_multiplier=z, num_users=num_users, q=q, dropout_rate=dropout_rate, rounds=t,
                        delta=d)  # fmt: skip
        return _distributed_epsilon(pl, num_users=num_users, q=q, rounds=t, dropout_rate=dropout_rate, delta=d)
    _central_only(dim=dim, clip_norm=clip_norm, bits=bits, min_survivors=min_survivors, plan=plan)
    if z == 0:
        return math.inf
    acc = accountant if accountant is not None else dp.Accountant().step(q=q, noise_multiplier=z, steps=t)
    flip = refusal_flip_probability(num_users=num_users, q=q, dropout_rate=dropout_rate, rounds=t)
    return _solve_total_delta(lambda x: acc.epsilon(delta=x), flip, d)


_valid_epsilon = epsilon  # noise_multiplier_for's argument ``epsilon`` shadows the function


def noise_multiplier_for(
    *,
    epsilon: float,
    num_users: int,
    q: float,
    rounds: int,
    dropout_rate: float,
    delta: float = DELTA,
    noise: str = "central",
    dim: int | None = None,
    clip_norm: float | None = None,
    bits: int | None = None,
    min_survivors: int | None = None,
) -> float:
    """The smallest noise multiplier (relative tolerance 1e-4) whose valid :func:`epsilon` is at most ``epsilon``.

    ``noise="distributed"`` calibrates the distributed plan instead (:func:`distributed_plan` with
    ``dim``, ``clip_norm``, ``bits`` and ``min_survivors``, default :func:`min_survivors_for`): ``z``
    is then the noise of the planned ``min_survivors - 1`` shares, in units of the clip norm.

    Raises
    ------
    ValueError
        When the refusal term alone exceeds ``delta`` (no noise helps: more users a round or fewer
        dropouts do), or for a bad argument.

    """
    target = validate.positive_float("epsilon", epsilon)
    validate.one_of("noise", noise, NOISES)
    if noise == "distributed":
        return _distributed_noise_for(target, num_users=num_users, q=q, rounds=rounds, dropout_rate=dropout_rate,
                                      delta=delta, dim=dim, clip_norm=clip_norm, bits=bits,
                                      min_survivors=min_survivors)  # fmt: skip
    _central_only(dim=dim, clip_norm=clip_norm, bits=bits, min_survivors=min_survivors, plan=None)
    flip = refusal_flip_probability(num_users=num_users, q=q, dropout_rate=dropout_rate, rounds=rounds)
    if math.exp(min(target, 700.0)) * flip >= delta:
        raise ValueError(
            f"epsilon={epsilon!r}: unreachable at delta={delta:g} with q={q:g}, dropout_rate={dropout_rate:g}, "
            f"rounds={rounds}: the refusal term e^epsilon P[F] = {math.exp(target) * flip:.2g} alone exceeds delta"
        )
    z = dp.noise_multiplier_for(epsilon=target, q=q, steps=rounds, delta=delta)
    args = dict(num_users=num_users, q=q, rounds=rounds, dropout_rate=dropout_rate, delta=delta)
    return dp.smallest_noise(lambda x: _valid_epsilon(noise_multiplier=x, **args), target, lo=z, hi=z, grow=1.25,
                             rtol=1e-4)  # fmt: skip


# ----------------------------------------------------------------------------
# distributed noise: the plan, its refusal rule and its accountant
# ----------------------------------------------------------------------------

NOISES = ("central", "distributed")
"""Where the noise is added: ``"central"`` (lesson 10: the server, on the unmasked sum) or ``"distributed"``
(lesson 13: every phone adds a Skellam share before masking, :mod:`fedlab.distributed_dp`)."""

COHORT_TAIL = 1e-6
"""The distributed plan sizes the ring for :func:`cohort_cap` phones: a Poisson cohort exceeds it with at most this
probability per round (a round that does is still run with the same plan: the same noise per phone, a ring bound a
little above ``wrap_prob``)."""

FLIP_BUDGET = 0.1
""":func:`min_survivors_for` takes the largest ``min_survivors`` whose refusal term ``P[F]`` is at most
``FLIP_BUDGET * delta``."""


def cohort_cap(*, num_users: int, q: float, tail: float = COHORT_TAIL) -> int:
    """The smallest ``k`` with ``P[Binomial(num_users, q) > k] <= tail``: the cohort the ring is sized for."""
    n = validate.positive_int("num_users", num_users, minimum=2)
    q = dp._check_q(q)
    if isinstance(tail, bool) or not isinstance(tail, int | float) or not 0 < tail < 1:
        raise ValueError(f"tail={tail!r}: must be a number in (0, 1)")
    pmf = np.exp(_log_binom_pmf(n, q))
    above = np.cumsum(pmf[::-1])[::-1]  # above[k] = P[X >= k]
    over = np.append(above[1:], 0.0)  # P[X > k]
    return max(2, int(np.flatnonzero(over <= tail)[0]))


def _released(k: int, j: np.ndarray, i: np.ndarray, m: int) -> np.ndarray:
    """Whether a cohort of ``k`` with ``j`` phones that never drop and ``i`` phones in the sum is released."""
    if k < 2:
        return np.zeros(np.broadcast(j, i).shape, bool)
    return (j >= threshold_for(k)) & (i >= m)


@functools.lru_cache(maxsize=256)
def _flip_per_round_distributed(n_users: int, q: float, rate: float, m: int) -> float:
    # a sampled phone never drops (1 - rate), drops at 'unmask' (rate / 4: its noised vector is in the sum) or
    # earlier (3 rate / 4: not in the sum); draw_dropouts draws the phase uniformly from secagg.PHASES
    probs = (1.0 - rate, rate / len(secagg.PHASES), rate * (len(secagg.PHASES) - 1) / len(secagg.PHASES))
    logs = [math.log(p) if p > 0 else -np.inf for p in probs]
    log_fact = dp._gammaln(np.arange(1, n_users + 3, dtype=np.float64))  # log k! for k = 0 .. n_users + 1
    worst = 0.0
    for others in (n_users - 1, n_users):
        pk = np.exp(_log_binom_pmf(others, q))
        total = 0.0
        for k in np.flatnonzero(pk > 1e-30):
            k = int(k)
            ji = np.arange(k + 1)[:, None]  # never drop
            ai = np.arange(k + 1)[None, :]  # drop at 'unmask'
            ri = k - ji - ai
            valid = ri >= 0
            ri = np.where(valid, ri, 0)
            logw = log_fact[k] - log_fact[ji] - log_fact[ai] - log_fact[ri]
            for cnt, lp in zip((ji, ai, ri), logs):
                logw = logw + np.where(cnt > 0, cnt * lp if lp > -np.inf else -np.inf, 0.0)
            w = np.where(valid, np.exp(logw), 0.0)
            before = _released(k, ji, ji + ai, m)
            flip = (
                probs[0] * (before != _released(k + 1, ji + 1, ji + ai + 1, m))
                + probs[1] * (before != _released(k + 1, ji, ji + ai + 1, m))
                + probs[2] * (before != _released(k + 1, ji, ji + ai, m))
            )
            total += pk[k] * float(np.sum(w * flip))
        worst = max(worst, q * total)
    return min(worst, 1.0)


def distributed_flip_probability(
    *, num_users: int, q: float, dropout_rate: float, rounds: int, min_survivors: int
) -> float:
    """``P[F]`` for distributed noise: the chance that one user is sampled in some round and flips it.

    A distributed round is released only if secure aggregation completes (:func:`refuses`: a cohort of
    at least 2 and at least ``t`` phones that never drop) **and** at least ``min_survivors`` noised
    vectors are in the sum (a phone that drops at ``"unmask"`` is in it; one that drops earlier is not).
    A refused round releases nothing, so a user who moves the count of either kind across its
    threshold flips the round between "nothing" and "a sum", exactly as in :func:`refusal_flip_probability`
    (the same argument, the same worst case over ``num_users`` and ``num_users - 1`` others), with the
    exact trinomial of (never drop, drop at unmask, drop earlier) for the others' cohort.
    """
    n_users = validate.positive_int("num_users", num_users, minimum=2)
    q = dp._check_q(q)
    rate = _check_rate("dropout_rate", dropout_rate)
    t = validate.positive_int("rounds", rounds, minimum=0)
    m = validate.positive_int("min_survivors", min_survivors, minimum=1)
    worst = _flip_per_round_distributed(n_users, q, rate, m)
    return float(-math.expm1(t * math.log1p(-worst))) if worst < 1 else 1.0


def min_survivors_for(
    *, num_users: int, q: float, dropout_rate: float, rounds: int, delta: float = DELTA, budget: float = FLIP_BUDGET
) -> int:
    """The largest ``min_survivors`` (from 2 up) whose refusal term ``P[F]`` stays at most ``budget * delta``.

    The trade-off (a decision, stated): each phone's noise share is sized for ``min_survivors`` phones,
    so a typical round of ``~ q N (1 - 3 rate / 4)`` phones in the sum carries that many over
    ``min_survivors`` times the planned variance (more noise, lower accuracy); but a larger
    ``min_survivors`` sits closer to the typical count, where one user flips refused/released rounds
    more often, and the flip probability is paid in ``delta`` (:func:`distributed_flip_probability`).
    The search stops at the first value over budget (``P[F]`` grows towards the typical count).

    Raises
    ------
    ValueError
        When even ``min_survivors = 2`` exceeds the budget (cohorts too small: more users a round).

    """
    d = dp._check_delta(delta)
    b = validate.positive_float("budget", budget)
    cap = cohort_cap(num_users=num_users, q=q)
    best = None
    for m in range(2, cap + 1):
        flip = distributed_flip_probability(num_users=num_users, q=q, dropout_rate=dropout_rate, rounds=rounds,
                                            min_survivors=m)  # fmt: skip
        if flip > b * d:
            break
        best = m
    if best is None:
        raise ValueError(
            f"q={q!r}: with num_users={num_users}, dropout_rate={dropout_rate}, rounds={rounds} even min_survivors=2 "
            f"has a refusal term above budget * delta = {b * d:.2g}; sample more users a round"
        )
    return best


def distributed_plan(
    *,
    dim: int,
    clip_norm: float,
    noise_multiplier: float,
    num_users: int,
    q: float,
    bits: int,
    min_survivors: int,
    wrap_prob: float = 1e-4,
) -> ddp.Plan:
    """The public plan of every distributed round of a run (fixed before any phone is sampled).

    :func:`fedlab.distributed_dp.make_plan` for ``dim`` parameters, the ring sized for
    :func:`cohort_cap` phones (not the sampled cohort, so the mechanism does not depend on the
    sample), ``min_survivors`` noise shares (``min_survivors - 1`` of them carry the central std
    ``z c``, the module's convention) and per-coordinate wrap-around bound ``wrap_prob``.

    Raises
    ------
    ValueError
        For a ring too small (``bits``), ``min_survivors`` above the cohort cap or below 2, a negative
        ``noise_multiplier``; each names the argument, its value and what is allowed.

    """
    cap = cohort_cap(num_users=num_users, q=q)
    if (
        isinstance(min_survivors, bool)
        or not isinstance(min_survivors, int | np.integer)
        or not 2 <= min_survivors <= cap
    ):
        raise ValueError(
            f"min_survivors={min_survivors!r}: must be an int in [2, {cap}] (the planned cohort: at most {cap} of "
            f"num_users={num_users} are sampled at q={q:g}, except with probability {COHORT_TAIL:g})"
        )
    if isinstance(bits, int | np.integer) and not isinstance(bits, bool) and bits > ddp.MAX_BITS:
        raise ValueError(f"bits={bits!r}: distributed noise supports rings of [8, {ddp.MAX_BITS}] bits")
    return ddp.make_plan(dim=dim, clip_norm=clip_norm, noise_multiplier=noise_multiplier, cohort=cap,
                         min_survivors=int(min_survivors), bits=bits, wrap_prob=wrap_prob)  # fmt: skip


def _central_only(**kw) -> None:
    given = [k for k, v in kw.items() if v is not None]
    if given:
        raise ValueError(f"{given[0]}={kw[given[0]]!r}: only for noise='distributed' (central noise has no plan)")


def _plan_from(plan, *, dim, clip_norm, bits, min_survivors, noise_multiplier, num_users, q, dropout_rate, rounds,
               delta, wrap_prob=1e-4) -> ddp.Plan:  # fmt: skip
    if plan is not None:
        if not isinstance(plan, ddp.Plan):
            raise ValueError(f"plan={plan!r}: must be a distributed_dp.Plan (capstone.distributed_plan)")
        if plan.noise_multiplier != noise_multiplier:
            raise ValueError(
                f"noise_multiplier={noise_multiplier!r}: differs from plan.noise_multiplier={plan.noise_multiplier!r}"
            )
        return plan
    for name, value in (("dim", dim), ("clip_norm", clip_norm), ("bits", bits)):
        if value is None:
            raise ValueError(f"{name}=None: noise='distributed' needs dim, clip_norm and bits (or plan=)")
    m = min_survivors
    if m is None:
        m = min_survivors_for(num_users=num_users, q=q, dropout_rate=dropout_rate, rounds=rounds, delta=delta)
    return distributed_plan(dim=dim, clip_norm=clip_norm, noise_multiplier=noise_multiplier, num_users=num_users, q=q,
                            bits=bits, min_survivors=m, wrap_prob=wrap_prob)  # fmt: skip


def _distributed_epsilon(plan: ddp.Plan, *, num_users, q, rounds, dropout_rate, delta, survivors=None) -> float:
    flip = distributed_flip_probability(num_users=num_users, q=q, dropout_rate=dropout_rate, rounds=rounds,
                                        min_survivors=plan.min_survivors)  # fmt: skip
    r = ddp.rdp(plan, q=q, rounds=rounds, survivors=survivors)
    return _solve_total_delta(lambda x: dp.rdp_to_epsilon(rdp=r, orders=ddp.ORDERS, delta=x)[0], flip, delta)


def _distributed_noise_for(target, *, num_users, q, rounds, dropout_rate, delta, dim, clip_norm, bits,
                           min_survivors) -> float:  # fmt: skip
    d = dp._check_delta(delta)
    t = validate.positive_int("rounds", rounds, minimum=0)
    m = min_survivors
    if m is None:
        m = min_survivors_for(num_users=num_users, q=q, dropout_rate=dropout_rate, rounds=t, delta=d)
    flip = distributed_flip_probability(num_users=num_users, q=q, dropout_rate=dropout_rate, rounds=t, min_survivors=m)
    if math.exp(min(target, 700.0)) * flip >= d:
        raise ValueError(
            f"min_survivors={m}: epsilon={target!r} unreachable at delta={d:g}: the refusal term e^epsilon P[F] = "
            f"{math.exp(target) * flip:.2g} alone exceeds delta; use a smaller min_survivors"
        )

    def eps_at(z):
        plan = _plan_from(None, dim=dim, clip_norm=clip_norm, bits=bits, min_survivors=m, noise_multiplier=z,
                          num_users=num_users, q=q, dropout_rate=dropout_rate, rounds=t, delta=d)  # fmt: skip
        return _distributed_epsilon(plan, num_users=num_users, q=q, rounds=t, dropout_rate=dropout_rate, delta=d)

    unreachable = f"epsilon={target!r}: not reached by any noise multiplier up to 1e4 with this plan"
    z = dp.noise_multiplier_for(epsilon=target, q=q, steps=t, delta=d)
    return dp.smallest_noise(eps_at, target, lo=0.0, hi=z, grow=1.25, cap=1e4, rtol=1e-4, unreachable=unreachable)


def epsilon_vs_survivors(survivors, *, plan: ddp.Plan, q: float, rounds: int, delta: float = DELTA) -> np.ndarray:
    """Dropouts eat noise: the epsilon if every round released the sum of only ``survivors`` phones.

    A phone that drops before its masked input takes its noise share with it. For each ``k`` in
    ``survivors`` this is the distributed mechanism's epsilon (:func:`fedlab.distributed_dp.epsilon`
    with ``survivors=k``: the Skellam noise of ``plan.noise_shares(k)`` shares, Poisson-subsampled at
    ``q``, ``rounds`` rounds) - the guarantee of a protocol that released whatever survived. It equals
    the planned mechanism's epsilon at ``k = plan.min_survivors``, is lower above it (more noise),
    higher below it and ``inf`` at ``k <= 1`` (no other phone's noise).

    Rounds below the plan are exactly the ones this pipeline refuses to release
    (:func:`distributed_round`, :class:`fedlab.distributed_dp.NoiseShortfallError`): the curve left of
    ``min_survivors`` is the guarantee the refusal protects. The run's reported epsilon
    (:meth:`CapstoneHistory.epsilon`) adds the refusal term to the planned value (a decision: the
    refusal rule's flip term belongs to the protocol that refuses, not to the hypothetical one that
    releases everything, so it is not part of this curve).

    Parameters
    ----------
    survivors
        Ints in ``[0, plan.cohort]``.
    plan
        The run's plan (:func:`distributed_plan`, or :attr:`CapstoneHistory.plan`).
    q, rounds, delta
        Sampling rate, rounds and ``delta``.

    Returns
    -------
    np.ndarray
        ``[len(survivors)]`` float64 epsilons.

    """
    if not isinstance(plan, ddp.Plan):
        raise ValueError(f"plan={plan!r}: must be a distributed_dp.Plan (capstone.distributed_plan)")
    ks = np.atleast_1d(np.asarray(survivors))
    if ks.ndim != 1 or ks.dtype.kind not in "iu":
        raise ValueError(f"survivors={survivors!r}: must be ints in [0, {plan.cohort}] (plan.cohort)")
    d = dp._check_delta(delta)
    t = validate.positive_int("rounds", rounds, minimum=0)
    return np.array([ddp.epsilon(plan, q=q, rounds=t, delta=d, survivors=int(k)) for k in ks], dtype=np.float64)


# ----------------------------------------------------------------------------
# bytes of the protocol, from its messages
# ----------------------------------------------------------------------------


def protocol_bytes(
    *, num_clients: int, dim: int, bits: int, dropouts: Mapping[int, str] | None = None, threshold: int | None = None
) -> np.ndarray:
    """Bytes each client sends in one round of the full-graph protocol, from the messages' ``nbytes``.

    With ``U1 .. U4`` the clients that sent each phase's message (a client that drops at a phase sends
    nothing from it on), client ``u`` sends

    - ``advertise`` (:class:`fedlab.secagg.AdvertiseKeys`): ``4 + 2 * 32`` bytes;
    - ``share`` (:class:`fedlab.secagg.ShareKeys`): ``4 + 32`` (id, commitment) plus one encrypted
      pair of shares of ``4 + 4 + 88`` bytes for each other client of ``U1``;
    - ``masked_input`` (:class:`fedlab.secagg.MaskedInput`): ``4 + ceil(dim * bits / 8)``;
    - ``unmask`` (:class:`fedlab.secagg.UnmaskingShares`): ``4 + 36`` for each client of ``U2``
      (one share of ``b_v`` or of ``s_v^SK`` per client that shared, itself included).

    If fewer than ``threshold`` clients send a phase's message the server refuses there, and nobody
    sends anything later. This is what :func:`fedlab.secagg.run_round` counts (``tests/test_capstone.py``
    compares the two, with and without dropouts and refusals).

    Parameters
    ----------
    num_clients, dim, bits
        ``n``, ``d`` and the ring width.
    dropouts
        ``{client: phase}`` as for :func:`fedlab.secagg.run_round`.
    threshold
        The protocol's ``t``; default :func:`threshold_for`.

    Returns
    -------
    np.ndarray
        ``[n]`` int64 bytes per client.

    """
    n = validate.positive_int("num_clients", num_clients, minimum=2)
    d = validate.positive_int("dim", dim)
    b = _check_bits(bits)
    drop = {}
    for u, phase in (dropouts or {}).items():
        if isinstance(u, bool) or not isinstance(u, int | np.integer) or not 0 <= u < n:
            raise ValueError(f"dropouts has key {u!r}: must be a client index in [0, {n})")
        validate.one_of(f"dropouts[{u}]", phase, secagg.PHASES)
        drop[int(u)] = secagg.PHASES.index(phase)
    t = threshold_for(n) if threshold is None else validate.positive_int("threshold", threshold, minimum=2)
    sent = [np.array([drop.get(u, 4) > p for u in range(n)]) for p in range(4)]
    for p in range(4):
        if sent[p].sum() < t:  # the server refuses after this phase's messages
            for later in range(p + 1, 4):
                sent[later][:] = False
            break
    u1, u2 = int(sent[0].sum()), int(sent[1].sum())
    ids, key = secagg.ID_BYTES, secagg.KEY_BYTES
    per_phase = (
        ids + 2 * key,
        ids + key + (u1 - 1) * (2 * ids + SHARE_CIPHERTEXT_BYTES),
        ids + (d * b + 7) // 8,
        ids + (ids + key) * u2,
    )
    return sum(s.astype(np.int64) * c for s, c in zip(sent, per_phase))


# ----------------------------------------------------------------------------
# one private round
# ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PrivateRound:
    """What one :func:`private_round` produced.

    Attributes
    ----------
    average
        The noised average update the model gets (list of float32 arrays, the shapes of the deltas):
        ``(sum of the included clipped updates + N(0, (z S)^2)) / (q N)``.
    server_view
        ``[d]`` float64: the exact sum of the included clients' clipped, fixed-point-encoded updates,
        as the server unmasks it (``None`` if the protocol refused). Secure aggregation shows the
        server this, and nothing about any one update; the noise is added after.
    included
        Indices (into ``deltas``) of the clients whose update is in the sum.
    bytes_sent
        ``[n]`` bytes each client sent (the protocol's messages).
    frac_bits
        The fixed-point resolution used, ``2^-frac_bits`` (``None`` for distributed noise).
    refusal
        Why the protocol refused (too few clients), else ``None``.
    noise
        ``"central"`` (:func:`private_round`) or ``"distributed"`` (:func:`distributed_round`: then
        ``server_view`` is the decoded *noised* sum, the only thing the server ever sees).
    ring_sum
        Distributed noise: the ``[d']`` ring vector secure aggregation revealed (``None`` otherwise).
    wrapped
        Distributed noise: coordinates of the released sum that wrapped around the ring (``None``
        for central noise, whose fixed-point capacity check rules wrap-around out, or a refused round).

    """

    average: list
    server_view: np.ndarray | None
    included: tuple[int, ...]
    bytes_sent: np.ndarray
    frac_bits: int | None
    refusal: str | None
    noise: str = "central"
    ring_sum: np.ndarray | None = None
    wrapped: int | None = None


def _template(deltas: Sequence, *, like: Sequence | None, secure) -> list[np.ndarray]:
    """The shapes of a round's updates (``like`` for an empty round), after checking ``secure``."""
    if not isinstance(secure, bool):
        raise ValueError(f"secure={secure!r}: must be True or False")
    if len(deltas) == 0 and like is None:
        raise ValueError("deltas is empty and like is None: pass like=params to run an empty round")
    return [np.asarray(t) for t in (deltas[0] if len(deltas) else like)]


def private_round(
    deltas: Sequence,
    *,
    clip_norm: float,
    noise_multiplier: float,
    expected_clients: float,
    bits: int,
    rng: int | np.random.Generator,
    protocol_rng: int | np.random.Generator | None = None,
    dropouts: Mapping[int, str] | None = None,
    secure: bool = True,
    like: Sequence | None = None,
) -> PrivateRound:
    """Clip -> encode -> secure aggregation -> unmask -> noise -> decode: one round of the capstone.

    1. every update is clipped to L2 norm ``S`` (:func:`fedlab.dp.clip_update`), so every
       coordinate lies in ``[-S, S]``;
    2. the cohort's :class:`fedlab.secagg.Config` takes ``n = len(deltas)``, the threshold
       :func:`threshold_for`, ``clip = S``, the ring width ``bits`` and the finest ``frac_bits`` that
       lets a sum of ``n`` values fit (:func:`fedlab.secagg.max_frac_bits`);
    3. ``secure=True``: the real protocol, :func:`fedlab.secagg.run_round` (keys, masks, Shamir
       shares, dropout recovery); ``secure=False``: the same fixed-point sum computed in the clear
       (:func:`fedlab.secagg.plain_sum`; equal to the protocol's bit for bit, and much faster, for
       sweeps), with the bytes from :func:`protocol_bytes`;
    4. central DP: ``N(0, (z S)^2)`` is added to the decoded sum, which is divided by the fixed
       denominator ``q N`` (the formula of :func:`fedlab.dp.dp_aggregate`, the noise drawn from
       ``rng`` tensor by tensor in the same order, so the two agree up to the fixed-point error
       ``n * 2^-(frac_bits+1) / (q N)`` per value).

    Parameters
    ----------
    deltas
        The sampled clients' updates (lists of arrays, one per model tensor); may be empty (then
        ``like`` gives the shapes and the round releases noise only).
    clip_norm, noise_multiplier, expected_clients
        ``S``, ``z`` and ``q N``.
    bits
        Ring width in ``[8, 64]``: the compression lever (``bits / 8`` bytes per value sent).
    rng
        Seed or Generator for the noise.
    protocol_rng
        Seed or Generator for the protocol's keys and masks (the result does not depend on it: the
        masks cancel); ``None`` draws them from ``os.urandom``, as a deployment must.
    dropouts
        ``{index into deltas: phase}``: that client sends nothing from that phase on.
    secure
        Run the real protocol (default) or its plain equivalent.
    like
        Shapes for an empty round.

    Raises
    ------
    ValueError
        For a bad argument (naming it), or deltas of different shapes.

    """
    s = dp._check_clip(clip_norm)
    if not math.isfinite(s):
        raise ValueError(f"clip_norm={clip_norm!r}: must be finite (the fixed-point range is [-S, S])")
    z = dp._check_noise(noise_multiplier)
    e = validate.positive_float("expected_clients", expected_clients)
    b = _check_bits(bits)
    template = _template(deltas, like=like, secure=secure)
    n = len(deltas)
    vectors = []
    for k, d in enumerate(deltas):
        c = dp.clip_update(d, max_norm=s)
        P.check_like(c, template, name=f"deltas[{k}]")
        vectors.append(P.flatten(c).astype(np.float64))
    dim = int(sum(t.size for t in template))
    gen = seeding.as_generator(rng)
    total, included, sent, frac_bits, refusal = np.zeros(dim), (), np.zeros(n, np.int64), None, None
    if n < 2:
        refusal = f"a cohort of {n} client(s): secure aggregation needs at least 2"
        sent = np.zeros(n, np.int64)
    else:
        frac_bits = secagg.max_frac_bits(num_clients=n, clip=s, bits=b)
        config = secagg.Config(num_clients=n, threshold=threshold_for(n), dim=dim, clip=s, frac_bits=frac_bits, bits=b)
        x = np.stack(vectors)
        if secure:
            res = secagg.run_round(x, config=config, rng=protocol_rng, seeded_keys=protocol_rng is not None,
                                    dropouts=dropouts, on_refusal="return")  # fmt: skip
            sent, refusal = res.bytes_sent, res.refusal
            if res.sum is not None:
                total, included = res.sum, res.included
        else:
            sent = protocol_bytes(num_clients=n, dim=dim, bits=b, dropouts=dropouts, threshold=config.threshold)
            included, refusal = _plain_protocol(n, dropouts, config.threshold)
            if refusal is None:
                total = config.decode(secagg.plain_sum(x, config=config, clients=included))
    view = None if refusal is not None else total
    std = z * s / e
    avg = [
        (acc / e + std * gen.standard_normal(acc.shape)).astype(np.float32)
        for acc in P.unflatten(total, [np.zeros(t.shape, np.float64) for t in template])
    ]
    return PrivateRound(avg, view, tuple(int(u) for u in included), np.asarray(sent, np.int64), frac_bits, refusal)


def _plain_protocol(n: int, dropouts: Mapping[int, str] | None, threshold: int) -> tuple[tuple[int, ...], str | None]:
    """Who is in the sum, or why the protocol refuses, without running it (dropouts already checked)."""
    drop = {int(u): secagg.PHASES.index(p) for u, p in (dropouts or {}).items()}
    online = [[u for u in range(n) if drop.get(u, 4) > p] for p in range(4)]
    short = [p for p in range(4) if len(online[p]) < threshold]
    if short:
        return (), (
            f"only {len(online[short[0]])} clients sent their '{secagg.PHASES[short[0]]}' message: "
            f"the threshold is t = {threshold}"
        )
    return tuple(online[2]), None


def distributed_round(
    deltas: Sequence,
    *,
    plan: ddp.Plan,
    expected_clients: float,
    rng: int | np.random.Generator,
    protocol_rng: int | np.random.Generator | None = None,
    dropouts: Mapping[int, str] | None = None,
    secure: bool = True,
    like: Sequence | None = None,
) -> PrivateRound:
    """One round with **distributed** noise: the phones add it, the server sees only a noised modular sum.

    1. the round's public randomness: the rotation signs (:func:`fedlab.distributed_dp.rotation_signs`),
       then one seed per phone, both from ``rng``;
    2. every phone ``k`` encodes its flattened update with :func:`fedlab.distributed_dp.encode_cohort`
       (clip to ``c``, randomized Hadamard rotation, scale, conditional randomized rounding, its Skellam
       noise share, mod ``2^bits``), from its own generator ``default_rng([seed_k, k])``;
    3. secure aggregation of the ring vectors (``secure=True``: :func:`fedlab.secagg.run_round` with
       ``encoded=True``; ``False``: the same modular sum in the clear, equal bit for bit, and the
       bytes from :func:`protocol_bytes` for ``d'`` values of ``bits`` bits);
    4. the server decodes (:func:`fedlab.distributed_dp.decode`: centre, divide by the scale, rotate
       back) and divides by the fixed denominator ``q N``; it adds nothing.

    **Refusals release nothing** (a decision): secure aggregation's own refusals (:func:`refuses`),
    and :class:`fedlab.distributed_dp.NoiseShortfallError` when fewer than ``plan.min_survivors``
    noised vectors are in the sum (their noise is below what the accountant assumed). There is no
    trusted party to add noise alone, so the model simply does not move (``average`` is zeros); the
    flip term of :func:`distributed_flip_probability` accounts for the refusal decision.

    The round is run with the plan as given; a cohort larger than ``plan.cohort`` (the ring was sized
    for :func:`cohort_cap` phones) keeps every phone's noise and the scale, only its wrap-around bound
    is above ``plan.wrap_prob``. Wrap-around is measured: ``wrapped`` counts the coordinates of the
    released sum whose un-wrapped integer sum (the same vectors before modular clipping) differs from
    the centred ring sum.

    Parameters
    ----------
    deltas
        The sampled phones' updates (lists of arrays, one per model tensor), ``plan.dim`` values each.
    plan
        The run's :class:`fedlab.distributed_dp.Plan` (:func:`distributed_plan`).
    expected_clients
        ``q N``, the fixed denominator.
    rng
        Seed or Generator for the signs and the phones' seeds.
    protocol_rng, dropouts, secure, like
        As :func:`private_round`.

    Returns
    -------
    PrivateRound
        ``server_view`` is the decoded **noised** sum (``[d]`` float64), ``ring_sum`` the ``[d']`` ring
        vector the server gets from secure aggregation, ``frac_bits`` is ``None``.

    """
    if not isinstance(plan, ddp.Plan):
        raise ValueError(f"plan={plan!r}: must be a distributed_dp.Plan (capstone.distributed_plan)")
    e = validate.positive_float("expected_clients", expected_clients)
    template = _template(deltas, like=like, secure=secure)
    dim = int(sum(t.size for t in template))
    if dim != plan.dim:
        raise ValueError(f"deltas have {dim} values each: plan.dim is {plan.dim} (make the plan for this model)")
    vectors = []
    for k, d in enumerate(deltas):
        P.check_like(d, template, name=f"deltas[{k}]")
        vectors.append(P.flatten(d).astype(np.float64))
    gen = seeding.as_generator(rng)
    signs = ddp.rotation_signs(plan.dim, rng=gen)
    base = int(gen.integers(0, 2**63 - 1))
    n = len(deltas)
    if n > plan.cohort:
        plan = dataclasses.replace(plan, cohort=n)
    view, ring, included, wrapped, refusal = None, None, (), None, None
    sent = np.zeros(n, np.int64)
    if n < 2:
        refusal = f"a cohort of {n} client(s): secure aggregation needs at least 2"
    else:
        raw = ddp.encode_cohort(np.stack(vectors), plan=plan, signs=signs,
                                rngs=[np.random.default_rng([base, k]) for k in range(n)], modular=False)  # fmt: skip
        enc = ddp.modular_clip(raw, bits=plan.bits)
        config = secagg.Config(num_clients=n, threshold=threshold_for(n), dim=plan.padded_dim, clip=1.0, frac_bits=0,
                               bits=plan.bits)  # fmt: skip
        if secure:
            res = secagg.run_round(enc, config=config, rng=protocol_rng, seeded_keys=protocol_rng is not None,
                                    dropouts=dropouts, on_refusal="return", encoded=True)  # fmt: skip
            sent, refusal = res.bytes_sent, res.refusal
            if refusal is None:
                ring, included = res.sum, res.included
        else:
            sent = protocol_bytes(num_clients=n, dim=plan.padded_dim, bits=plan.bits, dropouts=dropouts,
                                  threshold=config.threshold)  # fmt: skip
            included, refusal = _plain_protocol(n, dropouts, config.threshold)
            if refusal is None:
                ring = ddp.modular_sum(enc[list(included)], bits=plan.bits)
        if refusal is None:
            try:
                view = ddp.decode(ring, plan=plan, signs=signs, survivors=len(included))
            except ddp.NoiseShortfallError as err:
                refusal, included, ring = str(err), (), None
            else:
                exact = raw[list(included)].sum(axis=0)
                wrapped = int(np.sum(exact != ddp.centered(ring, bits=plan.bits)))
    zeros = [np.zeros(t.shape, np.float64) for t in template]
    parts = P.unflatten(view, zeros) if view is not None else zeros
    avg = [(acc / e).astype(np.float32) for acc in parts]
    return PrivateRound(avg, view, tuple(int(u) for u in included), np.asarray(sent, np.int64), None, refusal,
                        noise="distributed", ring_sum=ring, wrapped=wrapped)  # fmt: skip


def draw_dropouts(num_clients: int, *, rate: float, rng: int | np.random.Generator) -> dict[int, str]:
    """Each client drops with probability ``rate``, at a phase drawn uniformly from :data:`fedlab.secagg.PHASES`.

    Draws ``num_clients`` uniforms, then ``num_clients`` phase indices (always both, so the stream
    does not depend on the outcome). Returns ``{client: phase}`` for the clients that drop.
    """
    n = validate.positive_int("num_clients", num_clients, minimum=0)
    r = _check_rate("rate", rate)
    gen = seeding.as_generator(rng)
    u = gen.random(n)
    phase = gen.integers(0, len(secagg.PHASES), size=n)
    return {k: secagg.PHASES[int(phase[k])] for k in range(n) if u[k] < r}


# ----------------------------------------------------------------------------
# many rounds
# ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CapstoneHistory:
    """Per-round records of :func:`run` (arrays of length ``rounds``) and per-user totals.

    Attributes
    ----------
    sampled, included
        Users sampled, and users whose update is in the round's sum.
    refused
        True for a round the protocol refused (noise only was released).
    round_bytes
        Bytes all users sent in the round (protocol messages, uplink).
    test_accuracy
        On ``test`` (``nan`` for rounds that were not evaluated).
    user_bytes
        ``[N]`` bytes each user sent over the whole run.
    q, noise_multiplier
        For the accountant.
    seconds
        Wall time per round (training, protocol and noise).
    dropout_rate
        For the accountant's refusal term.
    noise
        ``"central"`` or ``"distributed"``.
    plan
        The distributed plan (``None`` for central noise).
    bits
        Ring width of every value a phone sends.
    coordinates
        Values each phone sends per round (``d``; ``d' = 2^ceil(log2 d)`` with distributed noise).
    wrapped
        ``[rounds]`` coordinates of the released sum that wrapped around the ring (0 for central noise,
        whose capacity check rules it out, and for refused rounds).
    server_views
        ``[rounds, d]`` float64: what the server saw each round (central: the exact sum of the clipped
        updates; distributed: the decoded noised sum); ``nan`` rows for refused or empty rounds.

    """

    sampled: np.ndarray
    included: np.ndarray
    refused: np.ndarray
    round_bytes: np.ndarray
    test_accuracy: np.ndarray
    user_bytes: np.ndarray
    q: float
    noise_multiplier: float
    seconds: np.ndarray
    dropout_rate: float = 0.0
    noise: str = "central"
    plan: ddp.Plan | None = None
    bits: int | None = None
    coordinates: int | None = None
    wrapped: np.ndarray | None = None
    server_views: np.ndarray | None = None

    @property
    def rounds(self) -> int:
        return int(self.sampled.size)

    def epsilon(self, *, delta: float = DELTA, rounds: int | None = None) -> float:
        """Valid ``epsilon`` at total ``delta`` after ``rounds`` (default all), refusals included (:func:`epsilon`)."""
        t = self.rounds if rounds is None else validate.positive_int("rounds", rounds)
        return epsilon(num_users=int(self.user_bytes.size), q=self.q, noise_multiplier=self.noise_multiplier,
                       rounds=t, dropout_rate=self.dropout_rate, delta=delta, noise=self.noise,
                       plan=self.plan)  # fmt: skip

    def epsilon_vs_survivors(self, survivors, *, delta: float = DELTA) -> np.ndarray:
        """:func:`epsilon_vs_survivors` for this distributed run (all its rounds)."""
        if self.plan is None:
            raise ValueError("noise='central': epsilon_vs_survivors is for a run with noise='distributed'")
        return epsilon_vs_survivors(survivors, plan=self.plan, q=self.q, rounds=self.rounds, delta=delta)

    @property
    def wrap_rate(self) -> float:
        """Wrapped coordinates over all coordinates of the released sums (0 with no released round)."""
        if self.wrapped is None or self.coordinates is None:
            return 0.0
        released = int(np.sum(~self.refused & (self.included > 0)))
        return float(self.wrapped.sum() / (released * self.coordinates)) if released else 0.0

    def bytes_per_phone(self) -> float:
        """Mean uplink bytes of one sampled phone in one round (protocol messages; dropped phones count)."""
        return float(self.round_bytes.sum() / max(int(self.sampled.sum()), 1))

    def bytes_per_user(self, rounds: int | None = None) -> float:
        """Mean uplink bytes per user (all ``N`` users, taking part or not) over the first ``rounds`` rounds."""
        t = self.rounds if rounds is None else validate.positive_int("rounds", rounds)
        return float(self.round_bytes[:t].sum() / self.user_bytes.size)


def run(
    spec: models.ModelSpec,
    clients: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    rounds: int,
    seed: int,
    q: float,
    clip_norm: float,
    noise_multiplier: float,
    bits: int = 32,
    dropout_rate: float = 0.0,
    epochs: int = 1,
    batch_size: int | None = 10,
    lr: float = 0.1,
    server_lr: float = 1.0,
    secure: bool = True,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    eval_every: int = 1,
    threads: int | None = 1,
    callback: Callable[[int, list], None] | None = None,
    noise: str = "central",
    min_survivors: int | None = None,
    wrap_prob: float = 1e-4,
) -> tuple[list, CapstoneHistory]:
    """The capstone pipeline for ``rounds`` rounds: DP-FedAvg whose aggregation is :func:`private_round`.

    Round ``r`` draws from ``derive(seed, r)`` exactly what :func:`fedlab.dp.run` draws (shuffle keys
    ``[N, epochs, n_max]``, ``N`` uniforms for Poisson sampling at rate ``q``, then the noise), so
    with ``dropout_rate=0`` and enough ``bits`` the two give the same model up to the fixed-point
    error. The dropouts come from ``derive(seed, r, 1)`` (:func:`draw_dropouts`), the protocol's keys
    and masks from ``derive(seed, r, 2)``. The initial model is ``init_params(spec, derive(seed, 0))``.

    Parameters
    ----------
    spec, clients
        Model and one ``(x, y)`` per user.
    rounds, seed, q, clip_norm, noise_multiplier
        As :func:`fedlab.dp.run`.
    bits
        Ring width of secure aggregation (:func:`private_round`).
    dropout_rate
        Probability in ``[0, 1)`` that a sampled user drops during the round, at a uniform phase.
    epochs, batch_size, lr, server_lr
        Local training and the server step.
    secure
        Real protocol every round (default) or its exact plain equivalent (for sweeps).
    test, eval_every
        Evaluate on ``test`` every ``eval_every`` rounds and after the last.
    threads
        Torch threads for local training.
    callback
        ``callback(round, params)`` after every round.
    noise
        ``"central"`` (default, lesson 10: :func:`private_round`, the server adds ``N(0, (z S)^2)``)
        or ``"distributed"`` (lesson 13: :func:`distributed_round`, every phone adds a Skellam share
        before masking under the run's public :func:`distributed_plan`; the server adds nothing and a
        refused round releases nothing). With ``"distributed"`` the round's generator gives the
        rotation signs and the phones' seeds instead of the Gaussian noise, and the protocol's keys
        come from ``derive(seed, r, 3)`` (not ``2``: the same keys must never mask two different inputs).
    min_survivors
        Distributed noise only: the fewest phones whose noise the accountant counts (default
        :func:`min_survivors_for` this run's ``q``, ``dropout_rate`` and ``rounds``).
    wrap_prob
        Distributed noise only: the per-coordinate wrap-around bound the plan's scale is chosen for.

    Returns
    -------
    (params, history)
        The final model and a :class:`CapstoneHistory`.

    """
    validate.positive_int("rounds", rounds)
    q, s, z = dp._check_q(q), dp._check_clip(clip_norm), dp._check_noise(noise_multiplier)
    b = _check_bits(bits)
    rate = _check_rate("dropout_rate", dropout_rate)
    validate.positive_int("epochs", epochs)
    if batch_size is not None:
        validate.positive_int("batch_size", batch_size)
    validate.positive_float("lr", lr)
    validate.positive_int("eval_every", eval_every)
    validate.one_of("noise", noise, NOISES)
    if noise == "central" and min_survivors is not None:
        raise ValueError(f"min_survivors={min_survivors!r}: only for noise='distributed' (central noise has no plan)")
    if len(clients) == 0:
        raise ValueError("clients is empty: run needs at least one (x, y) client")
    clients = [fedavg._check_xy(x, y, spec) for x, y in clients]
    n = len(clients)
    nmax = max(len(y) for _, y in clients)
    state = fedavg.ServerState(models.init_params(spec, rng=seeding.derive(seed, 0)), 0)
    dim = P.num_params(state.params)
    plan = None
    if noise == "distributed":
        plan = _plan_from(None, dim=dim, clip_norm=s, bits=b, min_survivors=min_survivors, noise_multiplier=z,
                          num_users=n, q=q, dropout_rate=rate, rounds=rounds, delta=DELTA,
                          wrap_prob=wrap_prob)  # fmt: skip
    packed = batched.pack(clients)
    denominator = q * n
    cols = {k: np.zeros(rounds, np.int64) for k in ("sampled", "included", "round_bytes", "wrapped")}
    refused, acc, secs = np.zeros(rounds, bool), np.full(rounds, np.nan), np.zeros(rounds)
    views = np.full((rounds, dim), np.nan)
    user_bytes = np.zeros(n, np.int64)
    with batched.torch_threads(threads):
        for r in range(1, rounds + 1):
            t0 = time.perf_counter()
            g = seeding.derive(seed, r)
            keys = g.random((n, epochs, nmax))
            chosen = np.flatnonzero(g.random(n) < q)
            deltas = []
            if len(chosen):
                cohort = batched.train(spec, state.params, packed, chosen, keys=keys[chosen], batch_size=batch_size,
                                       lr=lr)  # fmt: skip
                stacked = [t.detach().to(torch.float32).numpy() for t in cohort.deltas()]
                deltas = [[t[i] for t in stacked] for i in range(len(chosen))]
            drops = draw_dropouts(len(chosen), rate=rate, rng=seeding.derive(seed, r, 1))
            if plan is None:
                out = private_round(
                    deltas, clip_norm=s, noise_multiplier=z, expected_clients=denominator, bits=b, rng=g,
                    protocol_rng=seeding.derive(seed, r, 2), dropouts=drops, secure=secure, like=state.params,
                )  # fmt: skip
            else:
                out = distributed_round(  # its own key stream: a central run with the same seed masks other inputs
                    deltas, plan=plan, expected_clients=denominator, rng=g, protocol_rng=seeding.derive(seed, r, 3),
                    dropouts=drops, secure=secure, like=state.params,
                )  # fmt: skip
            if out.server_view is not None:
                views[r - 1] = out.server_view
                cols["wrapped"][r - 1] = out.wrapped or 0
            state = fedavg.server_update(state, out.average, server_lr=server_lr)
            secs[r - 1] = time.perf_counter() - t0
            cols["sampled"][r - 1], cols["included"][r - 1] = len(chosen), len(out.included)
            cols["round_bytes"][r - 1] = int(out.bytes_sent.sum())
            refused[r - 1] = out.refusal is not None and len(chosen) > 0
            if len(chosen):
                user_bytes[chosen] += out.bytes_sent
            if test is not None and (r % eval_every == 0 or r == rounds):
                acc[r - 1] = models.evaluate(spec, state.params, *test)[1]
            if callback is not None:
                callback(r, state.params)
    hist = CapstoneHistory(cols["sampled"], cols["included"], refused, cols["round_bytes"], acc, user_bytes, q, z, secs,
                           rate, noise, plan, b if plan is None else plan.bits,
                           dim if plan is None else plan.padded_dim, cols["wrapped"], views)  # fmt: skip
    return state.params, hist


# ----------------------------------------------------------------------------
# what an attacker gets
# ----------------------------------------------------------------------------


def label_share_attack(bias_update, *, lr: float, steps: int, num_examples: int, mean_probs) -> np.ndarray:
    """Lesson 05's label attack on a FedAvg update: the share of each label in the data behind it.

    The update's output-bias part, read as one gradient (:func:`fedlab.attacks.pseudo_gradient`,
    ``-bias_update / (lr * steps)``), is about ``p_bar - counts / B``; :func:`fedlab.attacks.batch_labels`
    turns it into whole label counts for ``num_examples`` examples. For the health app the share of
    label 1 is the share of **poor nights** of the user (or of the cohort, for a sum).

    Parameters
    ----------
    bias_update
        ``[num_classes]`` update of the last layer's bias (one user's, or a sum over a cohort).
    lr, steps
        The local learning rate and number of local steps (summed over the cohort for a sum).
    num_examples
        Examples behind the update (summed over the cohort for a sum).
    mean_probs
        The attacker's estimate of the model's mean prediction (e.g. on public data).

    Returns
    -------
    np.ndarray
        ``[num_classes]`` float64 shares summing to 1.

    """
    pg = attacks.pseudo_gradient([np.asarray(bias_update, dtype=np.float64)], lr=lr, steps=steps)[0]
    n = validate.positive_int("num_examples", num_examples)
    labels = attacks.batch_labels(pg, num_images=n, mean_probs=np.asarray(mean_probs, dtype=np.float64))
    return np.bincount(labels, minlength=pg.size) / n


def mean_probs_outside(spec: models.ModelSpec, params, x, user, *, exclude) -> np.ndarray:
    """The label attacker's estimate of the model's mean prediction, from users outside the attacked cohort.

    :func:`label_share_attack` needs the model's mean prediction on the data behind an update. An attacker
    who knows the population, but not the victims, estimates it on **other users' days**: the rows of ``x``
    whose ``user`` is not in ``exclude`` (the cohort under attack). Using the victims' own days would hand
    the attacker a statistic of the very data it is trying to learn (issue 16.3).

    Parameters
    ----------
    spec, params
        The model the attacker holds.
    x
        ``[n, d]`` days of the population (e.g. the test days).
    user
        ``[n]`` the user id of each row.
    exclude
        User ids whose rows are left out (the cohort under attack).

    Returns
    -------
    np.ndarray
        ``[num_classes]`` float64, the mean softmax over the remaining rows (sums to 1).

    """
    x = validate.array("x", x, ndim=2)
    if x.shape[1] != spec.in_features:
        raise ValueError(f"x has {x.shape[1]} features: the model takes in_features={spec.in_features}")
    user = validate.array("user", user, ndim=1, dtype_kind="iu")
    if user.shape[0] != x.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but user has {user.shape[0]} ids: they must match")
    keep = ~np.isin(user, np.asarray(list(exclude), dtype=np.int64))
    if not keep.any():
        raise ValueError("exclude covers every user in user: no one is left outside the cohort to estimate from")
    params = models.check_params(spec, params)
    with torch.no_grad():
        w = [torch.as_tensor(np.asarray(p), dtype=torch.float64) for p in params]
        logits = models.forward(spec, w, torch.as_tensor(x[keep], dtype=torch.float64))
        return torch.softmax(logits, dim=1).mean(0).numpy()


def _user_mean_loss(spec, params, part, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(user ids, mean loss of each user's days)`` of one ``(x, y, user)`` part."""
    if not isinstance(part, (tuple, list)) or len(part) != 3:
        raise ValueError(f"{name} must be a tuple (x, y, user): the days, their labels and each day's user id")
    x, y, user = part
    user = validate.array(f"{name}'s user", user, ndim=1, dtype_kind="iu")
    if user.size == 0:
        raise ValueError(f"{name} has no days: a membership test needs users on both sides")
    losses = attacks.per_example_loss(spec, params, x, y)
    if user.shape[0] != losses.shape[0]:
        raise ValueError(f"{name} has {losses.shape[0]} days but {user.shape[0]} user ids: they must match")
    ids, inverse = np.unique(user, return_inverse=True)
    return ids, np.bincount(inverse, weights=losses) / np.bincount(inverse)


def user_membership(
    spec: models.ModelSpec, params, members: tuple, nonmembers: tuple, *, low_fprs=metrics.LOW_FPRS
) -> attacks.MembershipResult:
    """User-level membership inference: was this *person* in the federation? (issue 16.3).

    A user-level epsilon (lesson 10) bounds what the model reveals about whether one **user** took part, so the
    attack that stands beside it must ask exactly that. The score of a user is the **mean** of the model's
    cross-entropy over that user's days (lesson 05's loss-threshold attack,
    :func:`fedlab.attacks.loss_threshold_attack`, applied to users instead of days: a low mean loss says "member").
    The mean, not the sum or the minimum, so a user's score does not grow with how many days they recorded; every
    threshold is tried, as in lesson 05.

    Members are the users whose days trained the model; non-members are **other users** of the same population
    who never took part (e.g. :func:`fedlab.data.held_out_health`), never the members' own later days: those
    share the user's baseline with the training days, so a day-level test between them measures whether the
    model remembers *days*, not whether it learnt from a *person*. Give non-members the same kind of days
    members trained on (e.g. the ``split_by_time`` training part of the held-out users), so that only membership
    differs between the two groups.

    Parameters
    ----------
    spec, params
        The model under attack.
    members, nonmembers
        ``(x, y, user)``: days, labels and each day's user id. No user id may be on both sides.
    low_fprs
        The false-positive rates of :attr:`fedlab.attacks.MembershipResult.tpr_at` (default 0.1 % and 1 %). A
        rate below ``1 / (number of non-member users)`` cannot be measured and is reported as ``nan``
        (:func:`fedlab.metrics.low_fpr_report`).

    Returns
    -------
    fedlab.attacks.MembershipResult
        Over users: ``num_members`` and ``num_nonmembers`` count users, not days.

    Raises
    ------
    ValueError
        If a part is not ``(x, y, user)`` with matching lengths, is empty, or a user id is both a member and a
        non-member.

    """
    member_ids, member_scores = _user_mean_loss(spec, params, members, "members")
    other_ids, other_scores = _user_mean_loss(spec, params, nonmembers, "nonmembers")
    shared = np.intersect1d(member_ids, other_ids)
    if shared.size:
        raise ValueError(
            f"nonmembers shares {shared.size} user ids with members (e.g. {shared[:3].tolist()}): a user-level test "
            "needs non-members who are other users, not the members' own held-out days"
        )
    return attacks.loss_threshold_attack(member_scores, other_scores, low_fprs=low_fprs)


def membership_auc(spec: models.ModelSpec, params, members: tuple, nonmembers: tuple) -> float:
    """ROC AUC of lesson 05's loss-threshold attack on **days** (:func:`fedlab.attacks.loss_threshold_attack`).

    Day-level: it does not stand beside a user-level epsilon (lesson 10 uses :func:`user_membership`).
    """
    lm = attacks.per_example_loss(spec, params, *members)
    ln = attacks.per_example_loss(spec, params, *nonmembers)
    return float(attacks.loss_threshold_attack(lm, ln).auc)


__all__ = [
    "DELTA",
    "NOISES",
    "CapstoneHistory",
    "PrivateRound",
    "cohort_cap",
    "distributed_flip_probability",
    "distributed_plan",
    "distributed_round",
    "draw_dropouts",
    "epsilon",
    "epsilon_vs_survivors",
    "min_survivors_for",
    "noise_multiplier_for",
    "label_share_attack",
    "mean_probs_outside",
    "membership_auc",
    "private_round",
    "protocol_bytes",
    "run",
    "threshold_for",
    "user_membership",
]
