"""Telemetry a federated server may collect, faults to find with it, and a monitored FedAvg (lesson 09).

The server cannot look at a client's data. What it *can* log, per round and
per client, without more than the protocol already tells it:

- ``norm`` - the L2 norm of the client's update (only without secure
  aggregation: under secagg the server never sees an individual update);
- ``loss`` - the client's mean training loss on its *own* data, one number
  the client reports;
- ``participated`` / ``dropped`` - sampled and answered, or sampled and silent;
- ``bytes_up`` - the size of what it sent; ``seconds`` - how long it took;
- ``finite`` - whether the update had only finite numbers (a NaN update is
  recorded and left out of the aggregate, never allowed to crash the server).

:class:`ClientRecord` and :class:`RoundRecord` are frozen records,
:class:`Telemetry` the history with :meth:`Telemetry.matrix` giving one
``[rounds, clients]`` array per metric (the dashboard's rows).

Faults (small frozen dataclasses, active from round ``start``):
:class:`LabelFlip` (mislabelled data: ``y -> C - 1 - y``), :class:`NaNUpdate`
(a broken client sends NaN), :class:`Boosted` (the update scaled by
``scale``: a malicious boost, or an exploding update with a huge scale), and
:class:`Drift` (the client's data changes from round ``start``: ``transform``
maps ``(x, y)`` to the new data). Several faults on one client: a tuple.

:func:`run_monitored` runs FedAvg with these faults and one of the
aggregators of :mod:`fedlab.robust`, training each round's clients with the
batched engine (:mod:`fedlab.engine`), seeded with ``seeding.derive(seed, r)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from fedlab import fedavg, models, robust, seeding, validate
from fedlab import params as P

# ---- faults -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelFlip:
    """The client's labels are wrong: ``y -> num_classes - 1 - y`` from round ``start``."""

    start: int = 1


@dataclass(frozen=True)
class NaNUpdate:
    """The client's update is all NaN from round ``start`` (a broken device or a bug)."""

    start: int = 1


@dataclass(frozen=True)
class Boosted:
    """The client's update is multiplied by ``scale`` from round ``start``.

    ``scale`` 10 is a malicious boost (model replacement, Bagdasaryan et al.
    2020); ``scale`` 1e6 an exploding update; a negative scale flips the sign.
    """

    scale: float = 10.0
    start: int = 1


def negate_features(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The default drift: every feature changes sign (e.g. an inverted sensor or image)."""
    return -x, y


@dataclass(frozen=True)
class Drift:
    """From round ``start`` on, the client's data is ``transform(x, y)`` (its distribution drifted)."""

    start: int = 1
    transform: Callable = negate_features


FAULTS = (LabelFlip, NaNUpdate, Boosted, Drift)


def _fault_tuple(client: int, value) -> tuple:
    faults = value if isinstance(value, tuple) else (value,)
    for f in faults:
        if not isinstance(f, FAULTS):
            raise ValueError(
                f"faults[{client}]={f!r}: must be a LabelFlip, NaNUpdate, Boosted or Drift (or a tuple of them)"
            )
        validate.positive_int(f"faults[{client}].start", f.start)
    return faults


def _active(faults: tuple, kind, r: int) -> list:
    return [f for f in faults if isinstance(f, kind) and r >= f.start]


def faulty_data(x, y, faults: tuple, *, round: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The data a faulty client trains on in ``round`` (label flips and drifts applied)."""
    for f in _active(faults, Drift, round):
        x, y = f.transform(x, y)
    if _active(faults, LabelFlip, round):
        y = num_classes - 1 - np.asarray(y)
    return np.asarray(x, np.float32), np.asarray(y, np.int64)


def faulty_delta(delta: list, faults: tuple, *, round: int) -> list:
    """What a faulty client sends instead of its honest ``delta`` in ``round``."""
    for f in _active(faults, Boosted, round):
        delta = [d * np.float32(f.scale) for d in delta]
    if _active(faults, NaNUpdate, round):
        delta = [np.full_like(d, np.nan) for d in delta]
    return delta


# ---- records ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientRecord:
    """What the server logs about one sampled client in one round (never its data).

    ``norm`` is NaN for a client that dropped, inf or NaN for a non-finite
    update; ``loss`` is the client's own mean training loss (NaN if it
    dropped); ``aggregated`` says whether its update went into the average.
    ``seconds`` is the client's share of the round's training time
    (proportional to its SGD steps, since the engine trains all at once).
    """

    round: int
    client: int
    participated: bool
    dropped: bool
    norm: float
    loss: float
    bytes_up: int
    seconds: float
    finite: bool
    aggregated: bool
    num_examples: int


@dataclass(frozen=True)
class RoundRecord:
    """One round: the aggregate's norm, the test metrics (if a test set was given), the time."""

    round: int
    sampled: int
    aggregated: int
    update_norm: float
    test_loss: float
    test_accuracy: float
    seconds: float


METRICS = ("norm", "loss", "participated", "bytes_up", "seconds")
"""Per-client metrics :meth:`Telemetry.matrix` can return."""


@dataclass(frozen=True)
class Telemetry:
    """All records of a monitored run."""

    num_clients: int
    clients: tuple = ()
    rounds: tuple = ()
    faults: Mapping = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rounds)

    def matrix(self, metric: str) -> np.ndarray:
        """``[rounds, clients]`` float64 array of one metric; NaN where a client was not sampled.

        ``participated`` is 1 (answered), 0 (sampled, dropped) or NaN (not sampled).
        """
        validate.one_of("metric", metric, METRICS)
        out = np.full((len(self.rounds), self.num_clients), np.nan)
        for c in self.clients:
            out[c.round - 1, c.client] = float(getattr(c, metric))
        return out

    def column(self, name: str) -> np.ndarray:
        """One field of the :class:`RoundRecord` s over the rounds."""
        validate.one_of("name", name, RoundRecord.__dataclass_fields__.keys())
        return np.array([getattr(r, name) for r in self.rounds])

    def nonfinite(self) -> list[tuple[int, int]]:
        """``(round, client)`` of every non-finite update received."""
        return [(c.round, c.client) for c in self.clients if c.participated and not c.finite]

    @property
    def final_accuracy(self) -> float:
        return self.rounds[-1].test_accuracy if self.rounds else float("nan")


# ---- analysis -----------------------------------------------------------------------------------


def update_norms(deltas: Sequence) -> np.ndarray:
    """``[n]`` float64: the global L2 norm of each delta (NaN/inf stay NaN/inf)."""
    return np.array([P.norm(d) for d in deltas], dtype=np.float64)


def robust_z(values) -> np.ndarray:
    """Robust z-scores ``0.6745 * (v - median) / MAD`` over the finite values (Iglewicz and Hoaglin 1993).

    MAD is the median absolute deviation from the median. Non-finite values
    get ``inf``; with ``MAD = 0`` a value equal to the median gets 0 and any
    other ``+-inf``.
    """
    v = validate.array("values", values, ndim=1).astype(np.float64)
    z = np.full(v.shape, np.inf)
    ok = np.isfinite(v)
    if not ok.any():
        return z
    med = np.median(v[ok])
    mad = np.median(np.abs(v[ok] - med))
    diff = v[ok] - med
    if mad > 0:
        z[ok] = 0.6745 * diff / mad
    else:
        z[ok] = np.where(diff == 0, 0.0, np.where(diff > 0, np.inf, -np.inf))
    return z


def flag_outliers(norms, *, threshold: float = 3.5) -> np.ndarray:
    """``[n]`` bool: ``|robust_z(norms)| > threshold``; a non-finite norm is always flagged."""
    validate.positive_float("threshold", threshold)
    return np.abs(robust_z(norms)) > threshold


# ---- the monitored run --------------------------------------------------------------------------


def run_monitored(
    spec: models.ModelSpec,
    clients: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    rounds: int,
    seed: int,
    faults: Mapping | None = None,
    aggregator: str = "mean",
    trim: float | int = 0.2,
    max_norm: float | None = None,
    fraction: float = 1.0,
    epochs: int = 1,
    batch_size: int | None = 10,
    lr: float = 0.1,
    dropout_rate: float = 0.0,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    init: list | None = None,
    threads: int | None = 1,
    callback: Callable[[Telemetry], None] | None = None,
) -> tuple[list, Telemetry]:
    """FedAvg with injected faults, a chosen aggregator, and per-client telemetry.

    Parameters
    ----------
    faults
        ``{client_id: fault or tuple of faults}`` (:class:`LabelFlip`,
        :class:`NaNUpdate`, :class:`Boosted`, :class:`Drift`).
    aggregator
        ``"mean"`` (FedAvg's weighted mean), ``"median"``, ``"trimmed"``
        (with ``trim``) or ``"norm_bound"`` (with ``max_norm``); see
        :mod:`fedlab.robust`. Non-finite updates are always left out (and
        recorded); if none is left the model stays as it was.
    dropout_rate
        Probability that a sampled client never answers (seeded).
    callback
        ``callback(telemetry_so_far)`` after every round (live dashboards).

    Randomness: the initial model from ``derive(seed, 0)``; round ``r`` draws
    from ``derive(seed, r)``: the sampled clients, every client's shuffle keys,
    then one uniform per sampled client for dropout.

    Returns
    -------
    (params, telemetry)

    """
    from fedlab import engine as E

    validate.positive_int("rounds", rounds)
    validate.one_of("aggregator", aggregator, robust.AGGREGATORS)
    validate.fraction("fraction", fraction)
    validate.fraction("dropout_rate", dropout_rate, include_zero=True)
    validate.positive_int("epochs", epochs)
    validate.positive_float("lr", lr)
    if aggregator == "norm_bound":
        if max_norm is None:
            raise ValueError("aggregator='norm_bound' needs max_norm (e.g. the median update norm of a clean run)")
        validate.positive_float("max_norm", max_norm)
    if aggregator == "trimmed":
        robust.trim_count(max(fedavg.num_sampled(len(clients), fraction), 1), trim)
    if len(clients) == 0:
        raise ValueError("clients is empty: run_monitored needs at least one (x, y) client")
    clients = [fedavg._check_xy(x, y, spec) for x, y in clients]
    faults = dict(faults or {})
    for k in list(faults):
        if not isinstance(k, int | np.integer) or not 0 <= k < len(clients):
            raise ValueError(f"faults has client {k!r}: must be a client index in [0, {len(clients) - 1}]")
        faults[int(k)] = _fault_tuple(int(k), faults[k])
    sizes = np.array([len(y) for _, y in clients])
    nmax = int(sizes.max())
    params = (
        models.check_params(spec, init, name="init")
        if init is not None
        else models.init_params(spec, rng=seeding.derive(seed, 0))
    )
    model_bytes = P.num_bytes(params)
    client_recs, round_recs = [], []
    with E.torch_threads(threads):
        for r in range(1, rounds + 1):
            t0 = time.perf_counter()
            g = seeding.derive(seed, r)
            chosen = fedavg.sample_clients(len(clients), fraction=fraction, rng=g)
            keys = g.random((len(clients), epochs, nmax))
            answered = g.random(len(chosen)) >= dropout_rate
            reporting = chosen[answered]
            data = [
                faulty_data(*c, faults[k], round=r, num_classes=spec.num_classes) if k in faults else c
                for k, c in enumerate(clients)
            ]
            outs = {}
            if len(reporting):
                cohort = E.train(
                    spec, params, E.pack(data), reporting, keys=keys[reporting], batch_size=batch_size, lr=lr
                )
                for k, o in zip(reporting, cohort.outputs()):
                    delta = faulty_delta(o.delta, faults[int(k)], round=r) if int(k) in faults else o.delta
                    outs[int(k)] = fedavg.ClientOutput(delta, o.num_examples, o.metrics)
            norms = {k: P.norm(o.delta) for k, o in outs.items()}
            good = [k for k in outs if np.isfinite(norms[k])]
            if good:
                delta = robust.aggregate(
                    [outs[k].delta for k in good],
                    aggregator=aggregator,
                    weights=[outs[k].num_examples for k in good],
                    trim=trim,
                    max_norm=max_norm,
                )
                params = P.add(params, delta)
                agg_norm = P.norm(delta)
            else:
                agg_norm = 0.0
            seconds = time.perf_counter() - t0
            total_steps = sum(o.metrics["steps"] for o in outs.values()) or 1.0
            for k, ok in zip(chosen, answered):
                k = int(k)
                o = outs.get(k)
                client_recs.append(
                    ClientRecord(
                        round=r,
                        client=k,
                        participated=bool(ok),
                        dropped=not ok,
                        norm=float(norms[k]) if ok else float("nan"),
                        loss=float(o.metrics["loss"]) if ok else float("nan"),
                        bytes_up=model_bytes if ok else 0,
                        seconds=seconds * o.metrics["steps"] / total_steps if ok else 0.0,
                        finite=bool(np.isfinite(norms[k])) if ok else True,
                        aggregated=k in good,
                        num_examples=int(sizes[k]),
                    )
                )
            test_loss, test_acc = (
                models.evaluate(spec, params, *test) if test is not None else (float("nan"), float("nan"))
            )
            round_recs.append(RoundRecord(r, len(chosen), len(good), agg_norm, test_loss, test_acc, seconds))
            if callback is not None:
                callback(Telemetry(len(clients), tuple(client_recs), tuple(round_recs), faults))
    return params, Telemetry(len(clients), tuple(client_recs), tuple(round_recs), faults)
