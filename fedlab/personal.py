"""Personal models (lesson 12): is the global model good for *me*, and what a phone can do about it.

Lessons 02-11 train one global model for everyone. On the health data each user has their own
baselines, their own response ``b_u`` to a more active day and their own tendency ``c_u``
(:mod:`fedlab.health`), which one shared model can only average over. This module measures the
global model user by user and builds four ways for a phone to keep a model of its own:

- :func:`local_only` - each phone trains alone from the same initial model (nothing is shared);
- :func:`fine_tune` - FedAvg's global model, then ``k`` SGD steps on the phone's own training days;
- :func:`run_fedper` - a **personal head** (FedPer, Arivazhagan et al. 2019): the body (first layers) is
  federated, the last ``head`` layers are trained with it on the phone and never leave it;
  :func:`run_fedrep` is the same split trained as FedRep (Collins et al. 2021): each round the head alone
  first (body frozen), then the body alone (head frozen);
- :func:`run_ditto` - **Ditto** (Li et al. 2021): the global model is trained by plain FedAvg and every
  sampled phone also trains a personal model ``v_k`` on ``F_k(v) + lambda/2 ||v - w||^2``, pulled towards
  the global model ``w`` it received.

Personal state (heads, Ditto's ``v_k``) lives per client across rounds as *stacked* arrays, one row per
user (``[num_users, *shape]`` per tensor). The batched engine (:func:`fedlab.engine.train` with
``stacked=True``) trains it for all sampled clients at once; ``engine="loop"`` runs the plain per-client
:func:`fedlab.fedavg.local_sgd` instead, and the two agree up to float32 rounding (``tests/test_personal.py``,
oracle tests). :func:`_train` is the one place that picks between them.

Randomness follows :func:`fedlab.fedavg.run`: the initial model is ``init_params(spec, derive(seed, 0))``
and round ``r`` draws the sampled clients, then every client's shuffle keys, from ``derive(seed, r)``. So
the global model of :func:`run_ditto` *is* ``fedavg.run``'s model with the same arguments (tested), and
the personal models use the same minibatches as the global update, as in the paper's code.

Where this departs from the papers (decisions)
----------------------------------------------
- **Ditto** (Li et al. 2021, Algorithm 1; official code ``litian96/ditto``, ``trainers_MTL/ditto.py``):
  fixed ``lambda`` (no per-client choice of lambda on validation data), personal updates with the same
  number of local epochs and the same batches as the global update, and ``v_k`` starts as the global model
  the user receives the *first* time it is sampled (the official code starts every ``v_k`` at the initial
  model). A user never sampled has no personal model and is served the global one (:attr:`PersonalRun.trained`).
- **Personal head**: :func:`run_fedper` is FedPer's joint training (body and head take the same SGD steps;
  the body's delta is averaged by example count, the head stays). :func:`run_fedrep` is FedRep's alternating
  training (Collins et al. 2021, Algorithm 1; the official code, ``lgcollins/FedRep``, ``models/Update.py``
  ``LocalUpdate.train``, was read in forks that carry it: ``local_ep = 11`` epochs of which the first
  ``local_ep - local_rep_ep = 10`` train the head with the body's ``requires_grad`` off, the last
  ``local_rep_ep = 1`` the body with the head off). Departures: plain SGD (the official code uses momentum
  0.5 and weight decay 1e-4; every trainer in this course is plain SGD, so the methods stay comparable);
  the body is averaged by example count, as FedAvg and FedPer here; no final head-only pass for every user
  after the last round (the official code's ``last=True`` evaluation step): a user's head is what it
  trained while sampled, and a user never sampled keeps the initial head (:attr:`PersonalRun.trained`).
  Frozen tensors are the ``frozen=`` argument of :func:`fedlab.engine.train` and
  :func:`fedlab.fedavg.local_sgd` (their gradient is never applied).
- **k steps** of fine-tuning are minibatch SGD steps (not epochs), walking through the user's own days in
  seeded random order for as many epochs as ``k`` needs.

Evaluation (:func:`per_user_scores`) is per user, not per day: every user counts once, whatever the number
of their days. The "10th-percentile user" (:meth:`UserScores.percentile`) is taken over users with at least
``min_days`` test days (default 5: a user with one test day has accuracy 0 or 1, which says nothing).

This module imports numpy, torch and fedlab's math only (no widgets, no notebooks).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fedlab import engine as batched
from fedlab import fedavg, models, seeding, updates, validate
from fedlab import params as P

MIN_DAYS = 5
"""Users with fewer test days than this are left out of percentiles (their accuracy is 0, 0.5 or 1)."""


# ----------------------------------------------------------------------------
# argument checks (clear errors: argument, value, what is allowed)
# ----------------------------------------------------------------------------


def check_steps(steps) -> int:
    """``k``, the number of fine-tuning SGD steps: an int >= 0 (0 keeps the global model)."""
    if isinstance(steps, (bool, np.bool_)) or not isinstance(steps, numbers.Integral):
        raise ValueError(f"steps={steps!r}: k must be an int >= 0 (SGD steps on the phone), not {type(steps).__name__}")
    if steps < 0:
        raise ValueError(f"steps={steps!r}: k must be an int >= 0 (SGD steps on the phone)")
    return int(steps)


def check_lam(lam) -> float:
    """Ditto's ``lambda``: a finite float >= 0 (0 trains the personal model without a pull)."""
    if isinstance(lam, (bool, np.bool_)) or not isinstance(lam, numbers.Real) or not math.isfinite(lam) or lam < 0:
        raise ValueError(
            f"lam={lam!r}: Ditto's lambda must be a finite number >= 0 (0: no pull towards the global model; "
            "large: the personal model stays the global one)"
        )
    return float(lam)


def num_layers(spec: models.ModelSpec) -> int:
    """Dense layers of a logistic regression or MLP (each is a weight and a bias tensor)."""
    if spec.kind not in ("logreg", "mlp"):
        raise ValueError(f"spec.kind={spec.kind!r}: a personal head is defined for 'logreg' and 'mlp' models")
    return len(models.shapes(spec)) // 2


def check_head(spec: models.ModelSpec, head) -> int:
    """Layers in the personal head: an int from 1 to ``num_layers(spec) - 1`` (the rest is the shared body)."""
    layers = num_layers(spec)
    if isinstance(head, (bool, np.bool_)) or not isinstance(head, numbers.Integral) or not 1 <= head <= layers - 1:
        allowed = f"an int from 1 to {layers - 1}" if layers > 1 else "impossible: it has no layer left for a body"
        raise ValueError(
            f"head={head!r}: this {spec.kind} has {layers} layer(s), so a personal head (trailing layers that stay "
            f"on the phone, the rest federated) is {allowed}"
        )
    return int(head)


def check_user(user, num_users: int, *, name: str = "user") -> int:
    """A user id that exists: an int in ``0 .. num_users - 1``."""
    if isinstance(user, (bool, np.bool_)) or not isinstance(user, numbers.Integral) or not 0 <= user < num_users:
        raise ValueError(f"{name}={user!r}: no such user; user ids are the ints 0 .. {num_users - 1}")
    return int(user)


def check_users(users, num_users: int) -> np.ndarray:
    """Distinct existing user ids as a sorted int64 array (``None``: all of them)."""
    if users is None:
        return np.arange(num_users, dtype=np.int64)
    ids = [check_user(u, num_users, name="users") for u in np.atleast_1d(np.asarray(users, dtype=object))]
    if len(set(ids)) != len(ids):
        raise ValueError(f"users={list(users)!r}: every user id may appear once")
    return np.array(sorted(ids), dtype=np.int64)


# ----------------------------------------------------------------------------
# stacked parameters: one model per user
# ----------------------------------------------------------------------------


def stack(params_list: Sequence[list]) -> list:
    """``[U]`` models (lists of arrays) -> one ``[U, *shape_i]`` array per tensor."""
    if len(params_list) == 0:
        raise ValueError("params_list is empty: stack needs at least one model")
    return [np.stack([np.asarray(p[i], np.float32) for p in params_list]) for i in range(len(params_list[0]))]


def repeat(params: list, num: int) -> list:
    """``num`` copies of one model, stacked (every user starts from the same model)."""
    validate.positive_int("num", num)
    return [np.repeat(np.asarray(p, np.float32)[None], num, axis=0) for p in params]


def take(stacked: list, user: int) -> list:
    """User ``user``'s model out of stacked parameters."""
    user = check_user(user, len(stacked[0]))
    return [np.array(t[user]) for t in stacked]


# ----------------------------------------------------------------------------
# per-user evaluation
# ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class UserScores:
    """Each user's accuracy and log-loss on their own test days (one entry per user id, ``[U]`` arrays).

    Users without test days have ``num_days == 0`` and ``nan`` scores; every summary skips them.
    """

    accuracy: np.ndarray
    log_loss: np.ndarray
    num_days: np.ndarray
    group: np.ndarray

    def _mask(self, min_days: int) -> np.ndarray:
        validate.positive_int("min_days", min_days)
        return self.num_days >= min_days

    def mean(self, *, min_days: int = 1) -> float:
        """Accuracy of the mean user (each user counts once)."""
        return float(np.mean(self.accuracy[self._mask(min_days)]))

    def percentile(self, q: float = 10.0, *, min_days: int = MIN_DAYS) -> float:
        """Accuracy of the ``q``-th percentile user (default the 10th: 90 % of users do at least this well)."""
        if not 0 <= q <= 100:
            raise ValueError(f"q={q!r}: a percentile is a number in [0, 100]")
        return float(np.percentile(self.accuracy[self._mask(min_days)], q))

    def worst(self, fraction: float = 0.1, *, min_days: int = MIN_DAYS) -> float:
        """Mean accuracy of the worst ``fraction`` of users (default the worst 10 %)."""
        validate.fraction("fraction", fraction)
        acc = np.sort(self.accuracy[self._mask(min_days)])
        return float(acc[: max(1, int(round(fraction * acc.size)))].mean())

    def by_group(self, num_groups: int, *, min_days: int = 1) -> np.ndarray:
        """Mean-user accuracy per group (``nan`` for a group without users)."""
        validate.positive_int("num_groups", num_groups)
        m = self._mask(min_days)
        return np.array([np.mean(self.accuracy[m & (self.group == g)]) if np.any(m & (self.group == g)) else np.nan
                         for g in range(num_groups)])  # fmt: skip


def user_groups(user: np.ndarray, group: np.ndarray, num_users: int) -> np.ndarray:
    """Each user's group from per-row ``user`` and ``group`` arrays (-1 for a user without rows)."""
    out = np.full(num_users, -1, dtype=np.int64)
    out[np.asarray(user, np.int64)] = np.asarray(group, np.int64)
    return out


def _logits_per_user(spec, params, x, user, num_users, stacked):
    """Logits of each row with its user's model (stacked) or the one shared model."""
    xt = torch.as_tensor(np.asarray(x, np.float32))
    with torch.no_grad():
        if not stacked:
            return models.forward(spec, [torch.as_tensor(np.asarray(p, np.float32)) for p in params], xt)
        out = torch.empty(len(x), spec.num_classes)
        order = np.argsort(user, kind="stable")
        ids, first, counts = np.unique(user[order], return_index=True, return_counts=True)
        tensors = [torch.as_tensor(np.asarray(p, np.float32)) for p in params]
        for u, s, c in zip(ids, first, counts):
            rows = torch.as_tensor(order[s : s + c])
            out[rows] = models.forward(spec, [t[u] for t in tensors], xt[rows])
        return out


def per_user_scores(
    spec: models.ModelSpec,
    params: list,
    x: np.ndarray,
    y: np.ndarray,
    user: np.ndarray,
    *,
    num_users: int,
    group: np.ndarray | None = None,
    stacked: bool = False,
) -> UserScores:
    """Accuracy and log-loss of every user on their own rows.

    Parameters
    ----------
    params
        One model for everyone, or (``stacked=True``) one per user: ``[num_users, *shape_i]`` per tensor,
        user ``u`` scored with row ``u``.
    x, y, user
        Test rows, their labels and user ids (``0 .. num_users - 1``).
    group
        Per-row group (e.g. the activity group); each user takes the group of their rows.

    """
    x = validate.array("x", x, ndim=2)
    y = validate.array("y", y, ndim=1, dtype_kind="iu")
    user = validate.array("user", user, ndim=1, dtype_kind="iu").astype(np.int64)
    validate.positive_int("num_users", num_users)
    if not (len(x) == len(y) == len(user)):
        raise ValueError(f"x, y and user have {len(x)}, {len(y)} and {len(user)} rows: they must match")
    if len(user) and (user.min() < 0 or user.max() >= num_users):
        bad = int(user.min() if user.min() < 0 else user.max())
        check_user(bad, num_users)
    if stacked:
        batched._check_stacked(spec, params, num_users)
    else:
        models.check_params(spec, params)
    logits = _logits_per_user(spec, params, x, user, num_users, stacked)
    loss = F.cross_entropy(logits, torch.as_tensor(y), reduction="none").numpy().astype(np.float64)
    right = (logits.argmax(1).numpy() == y).astype(np.float64)
    days = np.bincount(user, minlength=num_users)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(user, right, minlength=num_users) / days
        ll = np.bincount(user, loss, minlength=num_users) / days
    groups = user_groups(user, group, num_users) if group is not None else np.zeros(num_users, np.int64)
    return UserScores(acc, ll, days, groups)


# ----------------------------------------------------------------------------
# training personal models
# ----------------------------------------------------------------------------


def _train(spec, starts, clients, packed, chosen, keys, *, batch_size, lr, mu=0.0, anchor=None, max_steps=None,
           engine_name="batched", frozen=()):  # fmt: skip
    """Train ``chosen`` clients from their own starts (stacked ``[S, ...]``): the one place that picks a trainer.

    Returns the stacked final parameters (numpy, ``[S, *shape_i]``).
    """
    if engine_name == "batched":
        cohort = batched.train(spec, starts, packed, chosen, keys=keys, batch_size=batch_size, lr=lr, mu=mu,
                              max_steps=max_steps, stacked=True, anchor=anchor, frozen=frozen)  # fmt: skip
        return [f.numpy().copy() for f in cohort.final]
    finals = []
    for i, k in enumerate(chosen):
        x, y = clients[k]
        start = [s[i] for s in starts]
        out = fedavg.local_sgd(spec, start, x, y, orders=fedavg.epoch_orders(keys[i, :, : len(y)]),
                               batch_size=batch_size, lr=lr, mu=mu, anchor=anchor,
                               max_steps=None if max_steps is None else int(max_steps[i]), frozen=frozen)  # fmt: skip
        finals.append(P.add(start, out.delta))
    return stack(finals)


def _check_clients(spec, clients):
    if len(clients) == 0:
        raise ValueError("clients is empty: one (x, y) per user is needed")
    return [updates.check_xy(x, y, spec) for x, y in clients]


def fine_tune(
    spec: models.ModelSpec,
    params: list,
    clients: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    steps: int,
    batch_size: int | None = 10,
    lr: float = 0.1,
    rng: int | np.random.Generator = 0,
    users=None,
    engine: str = "batched",
    threads: int | None = 1,
) -> list:
    """Every user's personal model: ``steps`` (``k``) SGD steps from ``params`` on their own data.

    User ``u`` walks through its examples in the order ``argsort`` of ``keys[u, e]``, epoch after epoch,
    until ``k`` steps are done (``keys = rng.random((len(users), E, n_max))``, ``E`` = epochs the smallest
    user needs). Fine-tuning reads only the phone's own data and the released global model: after DP
    training it is post-processing (no one else's epsilon is spent).

    Returns
    -------
    Stacked parameters, one row per user in ``users`` (default all, in id order).

    """
    steps = check_steps(steps)
    validate.one_of("engine", engine, ("batched", "loop"))
    clients = _check_clients(spec, clients)
    params = models.check_params(spec, params)
    ids = check_users(users, len(clients))
    updates.check_hyper(1, batch_size, lr, 0.0)
    if steps == 0:
        return repeat(params, len(ids))
    sizes = np.array([len(clients[k][1]) for k in ids])
    per_epoch = np.ones_like(sizes) if batch_size is None else -(-sizes // batch_size)
    epochs = int(math.ceil(steps / per_epoch.min()))
    keys = seeding.as_generator(rng).random((len(ids), epochs, int(sizes.max())))
    packed = batched.pack([clients[k] for k in ids]) if engine == "batched" else None
    local = [clients[k] for k in ids]
    with batched.torch_threads(threads):
        return _train(spec, repeat(params, len(ids)), local, packed, np.arange(len(ids)), keys, batch_size=batch_size,
                      lr=lr, max_steps=np.full(len(ids), steps), engine_name=engine)  # fmt: skip


def local_only(
    spec: models.ModelSpec,
    clients: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    epochs: int,
    batch_size: int | None = 10,
    lr: float = 0.1,
    seed: int = 0,
    engine: str = "batched",
    threads: int | None = 1,
) -> list:
    """Each phone alone: ``epochs`` passes of SGD on its own data from ``init_params(spec, derive(seed, 0))``.

    Keys ``derive(seed, 1).random((U, epochs, n_max))``. Returns stacked parameters, one row per user.
    """
    validate.one_of("engine", engine, ("batched", "loop"))
    clients = _check_clients(spec, clients)
    updates.check_hyper(epochs, batch_size, lr, 0.0)
    init = models.init_params(spec, rng=seeding.derive(seed, 0))
    nmax = max(len(y) for _, y in clients)
    keys = seeding.derive(seed, 1).random((len(clients), epochs, nmax))
    packed = batched.pack(clients) if engine == "batched" else None
    with batched.torch_threads(threads):
        return _train(spec, repeat(init, len(clients)), clients, packed, np.arange(len(clients)), keys,
                      batch_size=batch_size, lr=lr, engine_name=engine)  # fmt: skip


@dataclass(frozen=True, eq=False)
class PersonalRun:
    """The result of :func:`run_fedper` or :func:`run_ditto`.

    Attributes
    ----------
    global_params
        What the server holds at the end (FedPer: the body, with the initial head as a placeholder).
    personal
        Stacked per-user models ``[U, *shape_i]``: the phone's model (FedPer: global body + own head;
        Ditto: ``v_k``, or the global model for a user never sampled).
    trained
        ``[U]`` bool: the user was sampled at least once (has personal state of its own).
    history
        :class:`fedlab.fedavg.History` of the global model (``test`` evaluated on the global model).
    uplink_tensors
        Indices of the parameter tensors a phone sends up each round (FedPer: the body only).

    """

    global_params: list
    personal: list
    trained: np.ndarray
    history: fedavg.History
    uplink_tensors: tuple[int, ...]

    def model_of(self, user: int) -> list:
        """User ``user``'s personal model (a plain list of arrays)."""
        return take(self.personal, user)


def _rounds(spec, clients, *, rounds, seed, fraction, epochs, batch_size, lr, test, engine_name, threads, client_step):
    """The round loop shared by FedPer and Ditto; ``client_step(state, chosen, keys, packed) -> new global params``."""
    validate.positive_int("rounds", rounds)
    validate.fraction("fraction", fraction)
    validate.one_of("engine", engine_name, ("batched", "loop"))
    if threads is not None:
        validate.positive_int("threads", threads)
    updates.check_hyper(epochs, batch_size, lr, 0.0)
    sizes = np.array([len(y) for _, y in clients])
    packed = batched.pack(clients) if engine_name == "batched" else None
    params = models.init_params(spec, rng=seeding.derive(seed, 0))
    model_bytes, records = P.num_bytes(params), []
    with batched.torch_threads(threads):
        for r in range(1, rounds + 1):
            g = seeding.derive(seed, r)
            chosen = fedavg.sample_clients(len(clients), fraction=fraction, rng=g)
            keys = g.random((len(clients), epochs, int(sizes.max())))[chosen]
            params, up, loss = client_step(params, chosen, keys, packed)
            tl, ta = models.evaluate(spec, params, *test) if test is not None else (float("nan"),) * 2
            records.append(fedavg.RoundRecord(r, len(chosen), len(chosen), loss, tl, ta, up * len(chosen),
                                              model_bytes * len(chosen), float("nan"),
                                              sampled_ids=tuple(int(k) for k in chosen),
                                              reported_ids=tuple(int(k) for k in chosen)))  # fmt: skip
    return params, fedavg.History(tuple(records))


def _weighted_mean(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    w = weights.astype(np.float64) / weights.sum()
    return np.tensordot(w, rows.astype(np.float64), axes=1).astype(np.float32)


def run_fedper(
    spec: models.ModelSpec,
    clients: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    head: int = 1,
    rounds: int,
    seed: int,
    fraction: float = 0.1,
    epochs: int = 1,
    batch_size: int | None = 10,
    lr: float = 0.1,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    engine: str = "batched",
    threads: int | None = 1,
) -> PersonalRun:
    """A personal head (FedPer): the first layers are federated, the last ``head`` layers never leave the phone.

    Each round the sampled users start from the global body and their own head (initially the initial
    model's head), train both jointly for ``epochs``, send the body's delta (weighted by example count, as
    FedAvg) and keep the head. Needs an MLP (a logistic regression has no body). :func:`run_fedrep` is the
    same protocol with FedRep's alternating training.
    """
    return _run_head(spec, clients, head=head, head_epochs=None, rounds=rounds, seed=seed, fraction=fraction,
                     epochs=epochs, batch_size=batch_size, lr=lr, test=test, engine=engine,
                     threads=threads)  # fmt: skip


def run_fedrep(
    spec: models.ModelSpec,
    clients: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    head: int = 1,
    head_epochs: int = 10,
    rounds: int,
    seed: int,
    fraction: float = 0.1,
    epochs: int = 1,
    batch_size: int | None = 10,
    lr: float = 0.1,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    engine: str = "batched",
    threads: int | None = 1,
) -> PersonalRun:
    """A personal head trained as FedRep (Collins et al. 2021): head first, body frozen; then body, head frozen.

    Each round a sampled user takes the global body and its own head, runs ``head_epochs`` epochs of SGD on
    the head alone (the body frozen), then ``epochs`` epochs on the body alone (the head frozen), sends the
    body's delta (averaged by example count) and keeps the head. The defaults (10 head epochs, 1 body epoch)
    are the paper's. Round ``r``'s shuffle keys are one ``[K, head_epochs + epochs, n_max]`` draw from
    ``derive(seed, r)``: the first ``head_epochs`` epochs' keys for the head, the rest for the body.
    """
    validate.positive_int("head_epochs", head_epochs)
    return _run_head(spec, clients, head=head, head_epochs=int(head_epochs), rounds=rounds, seed=seed,
                     fraction=fraction, epochs=epochs, batch_size=batch_size, lr=lr, test=test, engine=engine,
                     threads=threads)  # fmt: skip


def _run_head(spec, clients, *, head, head_epochs, rounds, seed, fraction, epochs, batch_size, lr, test, engine,
              threads):  # fmt: skip
    """FedPer (``head_epochs=None``: joint training) or FedRep (``head_epochs`` epochs of head, then the body)."""
    head = check_head(spec, head)
    clients = _check_clients(spec, clients)
    updates.check_hyper(epochs, batch_size, lr, 0.0)
    n_body = len(models.shapes(spec)) - 2 * head
    body_ids, head_ids = tuple(range(n_body)), tuple(range(n_body, len(models.shapes(spec))))
    sizes = np.array([len(y) for _, y in clients])
    init = models.init_params(spec, rng=seeding.derive(seed, 0))
    heads = [np.repeat(init[i][None], len(clients), axis=0) for i in head_ids]
    trained = np.zeros(len(clients), bool)
    body_bytes = P.num_bytes(init[:n_body])
    kw = dict(batch_size=batch_size, lr=lr, engine_name=engine)

    def step(params, chosen, keys, packed):
        starts = [np.repeat(params[i][None], len(chosen), axis=0) for i in body_ids] + [h[chosen] for h in heads]
        if head_epochs is None:  # FedPer: body and head take the same steps
            final = _train(spec, starts, clients, packed, chosen, keys, **kw)
        else:  # FedRep: the head with the body frozen, then the body with the head frozen
            mid = _train(spec, starts, clients, packed, chosen, keys[:, :head_epochs], frozen=body_ids, **kw)
            final = _train(spec, mid, clients, packed, chosen, keys[:, head_epochs:], frozen=head_ids, **kw)
        for h, f in zip(heads, final[n_body:]):
            h[chosen] = f
        trained[chosen] = True
        body = [params[i] + _weighted_mean(final[i] - params[i][None], sizes[chosen]) for i in body_ids]
        return body + params[n_body:], body_bytes, float("nan")

    key_epochs = epochs if head_epochs is None else head_epochs + epochs
    params, hist = _rounds(spec, clients, rounds=rounds, seed=seed, fraction=fraction, epochs=key_epochs,
                           batch_size=batch_size, lr=lr, test=test, engine_name=engine, threads=threads,
                           client_step=step)  # fmt: skip
    personal = repeat(params[:n_body], len(clients)) + heads
    return PersonalRun(params, personal, trained, hist, body_ids)


def run_ditto(
    spec: models.ModelSpec,
    clients: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    lam: float,
    rounds: int,
    seed: int,
    fraction: float = 0.1,
    epochs: int = 1,
    batch_size: int | None = 10,
    lr: float = 0.1,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    engine: str = "batched",
    threads: int | None = 1,
) -> PersonalRun:
    """Ditto: FedAvg for the global model ``w``, and a personal ``v_k`` per phone pulled towards ``w``.

    Each round every sampled user (1) runs FedAvg's local update from ``w`` and sends its delta, and (2)
    updates its own ``v_k`` (the received ``w`` the first time) with the same minibatches on
    ``F_k(v) + lam/2 ||v - w||^2``; ``v_k`` never leaves the phone. ``lam = 0`` is local training started
    from the global model; a large ``lam`` keeps ``v_k`` near ``w``. The global model equals
    :func:`fedlab.fedavg.run` with the same arguments (``fraction``, ``seed`` ...).
    """
    lam = check_lam(lam)
    clients = _check_clients(spec, clients)
    sizes = np.array([len(y) for _, y in clients])
    shapes = models.shapes(spec)
    personal = [np.zeros((len(clients), *s), np.float32) for s in shapes]
    trained = np.zeros(len(clients), bool)

    def step(params, chosen, keys, packed):
        shared = repeat(params, len(chosen))
        fresh = ~trained[chosen]
        for v, p in zip(personal, params):  # v_k starts as the first global model the user receives
            v[chosen[fresh]] = p
        final = _train(spec, shared, clients, packed, chosen, keys, batch_size=batch_size, lr=lr, engine_name=engine)
        own = _train(spec, [v[chosen] for v in personal], clients, packed, chosen, keys, batch_size=batch_size, lr=lr,
                     mu=lam, anchor=params, engine_name=engine)  # fmt: skip
        for v, o in zip(personal, own):
            v[chosen] = o
        trained[chosen] = True
        new = [p + _weighted_mean(f - p[None], sizes[chosen]) for p, f in zip(params, final)]
        return new, P.num_bytes(params), float("nan")

    params, hist = _rounds(spec, clients, rounds=rounds, seed=seed, fraction=fraction, epochs=epochs,
                           batch_size=batch_size, lr=lr, test=test, engine_name=engine, threads=threads,
                           client_step=step)  # fmt: skip
    for v, p in zip(personal, params):  # never sampled: no personal model, the phone uses the global one
        v[~trained] = p
    return PersonalRun(params, personal, trained, hist, tuple(range(len(shapes))))


def loss_recovered(*, global_accuracy, dp_accuracy, personal_dp_accuracy) -> np.ndarray:
    """Share of DP's accuracy loss that personalizing the DP model wins back, clipped to ``[0, 1]``.

    ``(personal_dp - dp) / (global - dp)``: 1 when fine-tuning the DP model reaches (or passes) the
    non-private global model, 0 when it gains nothing; ``nan`` where DP lost nothing. Works elementwise
    (e.g. per activity group).
    """
    g, d, p = (np.asarray(v, np.float64) for v in (global_accuracy, dp_accuracy, personal_dp_accuracy))
    lost = g - d
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(lost > 0, np.clip((p - d) / np.where(lost > 0, lost, 1.0), 0.0, 1.0), np.nan)


def first_days(clients: Sequence[tuple[np.ndarray, np.ndarray]], days: int) -> list:
    """Each user's first ``days`` rows (a new user after ``days`` days with the app); users keep at least 1 row."""
    validate.positive_int("days", days)
    return [(x[:days], y[:days]) for x, y in clients]
