"""The Flower app's logic without Flower: conversion, the client's reply, the server's round, the rules.

Everything here is plain numpy/torch and :mod:`fedlab` (numpy 1.24 and 2 both
work), so the lesson's exercises, the tests and the main course environment
use it without ``flwr``. The Flower app in ``fedlab/flower/app/`` is a thin
wrapper: it turns Flower's records into the values below and back.

The same code, unchanged
------------------------
- A SuperNode's ``ClientApp`` calls :func:`train_reply`, which calls lesson
  02's :func:`fedlab.fedavg.client_update` and returns its *delta*, its example
  count and metrics.
- The ``ServerApp`` calls :func:`apply_round`, which calls
  :func:`fedlab.fedavg.aggregate` (the ``n_k``-weighted mean of the deltas)
  and :func:`fedlab.fedavg.server_update`. We do *not* use Flower's built-in
  ``FedAvg`` strategy: the point of lesson 11 is that the learner's own
  aggregation runs in the deployment. The ServerApp's main loop pushes one
  ``train`` message per node and pulls the replies itself (``grid.push_messages``
  / ``grid.pull_messages`` polled every 0.1 s; ``grid.send_and_receive`` sleeps
  3 s between polls in flwr 1.42), deciding when to stop waiting with
  :func:`round_decision`.

Seeds. Round ``r``'s client with key ``k`` shuffles with
``seeding.derive(seed, r, k)`` (:func:`client_rng`); the initial model is
``init_params(spec, rng=derive(seed, 0))`` as in :func:`fedlab.fedavg.run`;
replies are aggregated in client-key order. So a deployed run and
:func:`simulate` (or the explicit lesson 02 loop) give the same parameters up
to float32 rounding (equal to 1e-6 in the tests, usually bit for bit). The
client key is the node's ``partition-id``, or its Flower ``node_id`` when it
brings its own ``data-file``.

Node config (``flower-supernode --node-config``; :func:`parse_node_config`)
----------------------------------------------------------------------------
``partition-id=<i> num-partitions=<K>``: an IID shard (``fedlab.partition.iid``,
seed :data:`PARTITION_SEED`) of the shipped digits' training split; or
``data-file="<path>.npz"``: the participant's own file with ``x`` ``[n, 64]``
float32 in [0, 1] and ``y`` ``[n]`` int labels in 0..9 (:func:`fedlab.data.save_digits_file`
writes one). Other keys are ignored (a workshop may add a ``name``).

Run config (``[tool.flwr.app.config]``; :func:`parse_run_config`)
-----------------------------------------------------------------
See :data:`RUN_CONFIG` (key: default, meaning).

Progress lines (stable: the lesson and the workshop dashboard parse them)
-------------------------------------------------------------------------
The ServerApp prints, one JSON object per line, flushed::

    FEDLAB_START {"nodes": 3, "node_ids": [...], "num_params": 650, "config": {<run config>}}
    FEDLAB_ROUND {"round": 1, "status": "aggregated", "accuracy": 0.84, "loss": 0.61,
                  "train_loss": 1.2, "replies": 3, "sent": 3, "node_ids": [...],
                  "client_keys": [...], "num_examples": 1437, "node_examples": [...], "failed": [],
                  "eval": null, "seconds": 5.1}
    FEDLAB_DONE {"status": "ok", "rounds": 3, "accuracy": 0.9, "loss": 0.4,
                 "params_sha256": "...", "seconds": 17.2, "error": null}

``status`` of a round is ``"aggregated"`` or ``"skipped"`` (fewer than
``min-nodes`` usable replies when the round ended: the model is unchanged);
``accuracy``/``loss`` are the global model's on the digits test split after
the round; ``node_ids`` are the nodes whose update was aggregated (in
client-key order; ``client_keys`` and ``node_examples``, their example counts,
in the same order), ``failed``
lists ``{"node_id", "error"}`` of nodes that replied with an error (nodes that
never answered are ``sent - replies - len(failed)``); ``eval`` is ``null`` or
the client-side evaluation ``{"replies", "loss", "accuracy", "num_examples"}``.
``FEDLAB_DONE``'s ``status`` is ``"ok"`` or ``"error"`` (then ``error`` says
why). Non-finite numbers are written as ``null``. :func:`parse_line` reads any
of them back.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import numbers
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from fedlab import data, fedavg, models, partition, seeding, validate

IN_FEATURES, NUM_CLASSES = data.DIGITS_FEATURES, data.DIGITS_CLASSES
MODELS = ("logreg", "mlp")
TEST_FRACTION = 0.2
SPLIT_SEED = 0
"""The digits' train/test split (stratified, 20 % test) uses this seed on every node and on the server."""
PARTITION_SEED = 0
"""``partition-id``/``num-partitions`` shards are ``partition.iid(..., rng=PARTITION_SEED)`` of the training split."""

RUN_CONFIG: dict[str, tuple[object, str]] = {
    "num-server-rounds": (3, "rounds of federated training (int >= 1)"),
    "local-epochs": (2, "E, passes over a node's data per round (int >= 1)"),
    "batch-size": (32, "B, minibatch size (int >= 1; 0 = the node's full batch, FedSGD)"),
    "lr": (0.5, "client learning rate (float > 0)"),
    "seed": (0, "the run's seed: initial model and every round's shuffles (int >= 0)"),
    "fraction-evaluate": (0.0, "share of nodes asked for client-side evaluation each round (0 = none)"),
    "min-nodes": (2, "fewest usable replies for a round to count; also the nodes awaited before round 1 (int >= 1)"),
    "round-timeout": (120.0, "seconds a round waits for replies before going on with those who answered (> 0)"),
    "model": ("logreg", "'logreg' (650 parameters) or 'mlp' (64-128-10, 9,610 parameters)"),
    "output-file": ("", "if not empty, the ServerApp saves the final parameters there (.npz, keys '0', '1', ...)"),
}
"""The app's run config: key -> (default, meaning). ``fedlab/flower/app/pyproject.toml`` holds the same defaults."""

NODE_CONFIG_KEYS = ("partition-id", "num-partitions", "data-file")
LINE_KINDS = ("START", "ROUND", "DONE")
DECISIONS = ("wait", "aggregate", "skip")


# ---- parameters <-> array records ----------------------------------------------------------------


def params_to_record(params: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """The course's parameters (a list of float32 arrays) as a flat record ``{"0": w0, "1": w1, ...}``.

    A Flower ``ArrayRecord`` is a dict from names to arrays; the app builds one
    from this dict (one ``flwr.app.Array`` per entry). Keys are the list
    positions as strings, values float32 C-contiguous copies (shapes kept).
    """
    if isinstance(params, Mapping) or isinstance(params, np.ndarray) or not isinstance(params, Sequence):
        raise ValueError(f"params is a {type(params).__name__}: expected a list of numpy arrays")
    out = {}
    for i, p in enumerate(params):
        arr = np.asarray(p)
        if arr.dtype.kind not in "fiu":
            raise ValueError(f"params[{i}] has dtype {arr.dtype}: expected numbers (float32)")
        out[str(i)] = np.ascontiguousarray(arr, dtype=np.float32).copy()
    return out


def record_to_params(record: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Back from ``{"0": w0, "1": w1, ...}`` to the list, ordered by the *number* in the key.

    Keys sort as numbers, not strings: ``"10"`` comes after ``"9"``. The keys
    must be exactly ``"0" .. "k-1"``.
    """
    if not isinstance(record, Mapping):
        raise ValueError(f"record is a {type(record).__name__}: expected a mapping of '0', '1', ... to arrays")
    keys = list(record.keys())
    if sorted(keys, key=lambda k: (len(str(k)), str(k))) != [str(i) for i in range(len(keys))]:
        raise ValueError(f"record has keys {sorted(map(str, keys))}: expected exactly '0' .. '{len(keys) - 1}'")
    return [np.ascontiguousarray(np.asarray(record[str(i)]), dtype=np.float32) for i in range(len(keys))]


def params_sha256(params: Sequence[np.ndarray]) -> str:
    """SHA-256 of the parameters' float32 bytes in order (to compare runs in a log line)."""
    h = hashlib.sha256()
    for p in params:
        h.update(np.ascontiguousarray(p, dtype=np.float32).tobytes())
    return h.hexdigest()


# ---- configs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSettings:
    """The run config, parsed (:func:`parse_run_config`); field names are the keys with ``_``."""

    num_server_rounds: int = 3
    local_epochs: int = 2
    batch_size: int = 32
    lr: float = 0.5
    seed: int = 0
    fraction_evaluate: float = 0.0
    min_nodes: int = 2
    round_timeout: float = 120.0
    model: str = "logreg"
    output_file: str = ""

    def run_config(self) -> dict:
        """Back to Flower's run config keys (for ``flwr run --run-config``)."""
        return {k.replace("_", "-"): v for k, v in self.__dict__.items()}

    @property
    def spec(self) -> models.ModelSpec:
        return model_spec(self.model)

    @property
    def fedavg_batch_size(self) -> int | None:
        """``batch_size`` as :func:`fedlab.fedavg.client_update` takes it (``None`` = full batch)."""
        return None if self.batch_size == 0 else self.batch_size


def _int(key, value, *, minimum):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{key}={value!r}: must be an int >= {minimum}")
    return int(value)


def _float(key, value, *, low, high=math.inf, low_open=True):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        lo = f"> {low}" if low_open else f">= {low}"
        allowed = f"a number {lo}" + (f" and <= {high}" if high != math.inf else "")
        raise ValueError(f"{key}={value!r}: must be {allowed}")
    return float(value)


def parse_run_config(run_config: Mapping[str, object]) -> RunSettings:
    """Validate Flower's run config (missing keys take :data:`RUN_CONFIG`'s defaults).

    Raises ``ValueError`` naming the key, the value and what is allowed; an
    unknown key is refused with the list of known ones.
    """
    if not isinstance(run_config, Mapping):
        raise ValueError(f"run_config is a {type(run_config).__name__}: expected a mapping of config keys")
    unknown = sorted(set(run_config) - set(RUN_CONFIG))
    if unknown:
        raise ValueError(f"run config keys {unknown}: not known; allowed: {sorted(RUN_CONFIG)}")
    c = {k: run_config.get(k, default) for k, (default, _) in RUN_CONFIG.items()}
    model = c["model"]
    if model not in MODELS:
        raise ValueError(f"model={model!r}: must be one of {list(MODELS)}")
    if not isinstance(c["output-file"], str):
        raise ValueError(f"output-file={c['output-file']!r}: must be a path string ('' = do not save)")
    return RunSettings(
        num_server_rounds=_int("num-server-rounds", c["num-server-rounds"], minimum=1),
        local_epochs=_int("local-epochs", c["local-epochs"], minimum=1),
        batch_size=_int("batch-size", c["batch-size"], minimum=0),
        lr=_float("lr", c["lr"], low=0.0),
        seed=_int("seed", c["seed"], minimum=0),
        fraction_evaluate=_float("fraction-evaluate", c["fraction-evaluate"], low=0.0, high=1.0, low_open=False),
        min_nodes=_int("min-nodes", c["min-nodes"], minimum=1),
        round_timeout=_float("round-timeout", c["round-timeout"], low=0.0),
        model=model,
        output_file=c["output-file"],
    )


@dataclass(frozen=True)
class NodeData:
    """Where a SuperNode's data comes from: a digits shard, or the participant's own ``.npz``."""

    partition_id: int | None = None
    num_partitions: int | None = None
    data_file: str | None = None

    @property
    def kind(self) -> str:
        return "file" if self.data_file is not None else "partition"


def parse_node_config(node_config: Mapping[str, object]) -> NodeData:
    """Read a SuperNode's ``--node-config``: either ``partition-id`` + ``num-partitions``, or ``data-file``.

    Exactly one of the two forms; ``0 <= partition-id < num-partitions``;
    ``data-file`` a non-empty string. Other keys are ignored. Errors name the
    key, the value and what is allowed.
    """
    if not isinstance(node_config, Mapping):
        raise ValueError(f"node_config is a {type(node_config).__name__}: expected a mapping")
    has_file = "data-file" in node_config
    has_part = "partition-id" in node_config or "num-partitions" in node_config
    if has_file and has_part:
        raise ValueError(
            f"node config has data-file={node_config['data-file']!r} and partition keys: "
            "give either data-file or partition-id with num-partitions, not both"
        )
    if has_file:
        path = node_config["data-file"]
        if not isinstance(path, str) or not path.strip():
            raise ValueError(f"data-file={path!r}: must be a non-empty path to an .npz file with x and y")
        return NodeData(data_file=path)
    if not has_part:
        raise ValueError(
            f"node config has keys {sorted(node_config)}: needs partition-id and num-partitions "
            "(e.g. 'partition-id=0 num-partitions=3') or data-file (e.g. 'data-file=\"me.npz\"')"
        )
    for key in ("partition-id", "num-partitions"):
        if key not in node_config:
            raise ValueError(f"node config has no {key}: partition-id and num-partitions go together")
    k = _int("num-partitions", node_config["num-partitions"], minimum=1)
    i = node_config["partition-id"]
    if not isinstance(i, numbers.Integral) or isinstance(i, bool) or not 0 <= i < k:
        raise ValueError(f"partition-id={i!r}: must be an int in [0, {k - 1}] (num-partitions={k})")
    return NodeData(partition_id=int(i), num_partitions=k)


def client_key(node: NodeData, node_id: int) -> int:
    """The key a client's seeds and the aggregation order use: its partition id, else its Flower node id."""
    return int(node.partition_id) if node.partition_id is not None else int(node_id)


# ---- data ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def digits_split() -> tuple[data.Dataset, data.Dataset]:
    """The shipped digits as (train, test): stratified, 20 % test, seed :data:`SPLIT_SEED`."""
    return data.train_test_split(data.load_digits(), test_fraction=TEST_FRACTION, seed=SPLIT_SEED)


def partition_data(partition_id: int, num_partitions: int) -> tuple[np.ndarray, np.ndarray]:
    """Shard ``partition_id`` of ``num_partitions`` IID shards of the digits' training split."""
    train, _ = digits_split()
    parts = partition.iid(len(train), num_clients=num_partitions, rng=PARTITION_SEED)
    validate.one_of("partition_id", partition_id, range(num_partitions))
    idx = parts[partition_id]
    return train.x[idx].copy(), train.y[idx].copy()


def test_data() -> tuple[np.ndarray, np.ndarray]:
    """The digits' test split ``(x, y)``: what the ServerApp evaluates the global model on."""
    _, test = digits_split()
    return test.x, test.y


test_data.__test__ = False  # not a pytest test


# The digits data files (check, load, save) live with the data: fedlab.data.check_digits_xy,
# load_digits_file, save_digits_file. The node code keeps calling them by these names.
check_xy = data.check_digits_xy
load_data_file = data.load_digits_file
save_data_file = data.save_digits_file


def load_node_data(node: NodeData) -> tuple[np.ndarray, np.ndarray]:
    """The node's ``(x, y)``: its digits shard or its own file."""
    if node.data_file is not None:
        return load_data_file(node.data_file)
    return partition_data(node.partition_id, node.num_partitions)


# ---- the model and the client -------------------------------------------------------------------------


def model_spec(name: str) -> models.ModelSpec:
    """``"logreg"``: 64 -> 10; ``"mlp"``: 64-128-10 with ReLU."""
    validate.one_of("model", name, MODELS)
    return models.logreg(IN_FEATURES, NUM_CLASSES) if name == "logreg" else models.mlp(IN_FEATURES, (128,), NUM_CLASSES)


def initial_params(settings: RunSettings) -> list[np.ndarray]:
    """``init_params(spec, rng=derive(seed, 0))``, as :func:`fedlab.fedavg.run` starts."""
    return models.init_params(settings.spec, rng=seeding.derive(settings.seed, 0))


def client_rng(seed: int, round: int, key: int) -> np.random.Generator:
    """The shuffle stream of client ``key`` in round ``round``: ``seeding.derive(seed, round, key)``."""
    return seeding.derive(seed, round, key)


def train_config(settings: RunSettings, round: int) -> dict:
    """What the server sends with the parameters (a Flower ``ConfigRecord``)."""
    validate.positive_int("round", round)
    return {
        "round": int(round),
        "seed": settings.seed,
        "local-epochs": settings.local_epochs,
        "batch-size": settings.batch_size,
        "lr": settings.lr,
        "model": settings.model,
    }


def _settings_from_train_config(config: Mapping) -> tuple[RunSettings, int]:
    missing = sorted({"round", "seed", "local-epochs", "batch-size", "lr", "model"} - set(config))
    if missing:
        raise ValueError(f"config has keys {sorted(config)}: missing {missing} (see train_config)")
    keys = ("seed", "local-epochs", "batch-size", "lr", "model")
    settings = parse_run_config({k: config[k] for k in keys})
    return settings, _int("round", config["round"], minimum=1)


def train_reply(params, x, y, config: Mapping, *, client_key: int) -> tuple[list, int, dict]:
    """The ClientApp's work: lesson 02's ``client_update``, unchanged, on this node's data.

    Parameters
    ----------
    params
        The global parameters received (list of float32 arrays).
    x, y
        The node's data, ``[n, 64]`` and ``[n]``.
    config
        :func:`train_config` of the round (round, seed, local-epochs, batch-size, lr, model).
    client_key
        :func:`client_key`: seeds this client's shuffles, ``derive(seed, round, client_key)``.

    Returns
    -------
    (delta, num_examples, metrics)
        ``metrics`` = ``{"loss", "steps"}`` of the client update.

    """
    settings, rnd = _settings_from_train_config(config)
    out = fedavg.client_update(
        settings.spec,
        params,
        x,
        y,
        epochs=settings.local_epochs,
        batch_size=settings.fedavg_batch_size,
        lr=settings.lr,
        rng=client_rng(settings.seed, rnd, client_key),
    )
    return out.delta, out.num_examples, {"loss": float(out.metrics["loss"]), "steps": float(out.metrics["steps"])}


def evaluate_reply(params, x, y, config: Mapping) -> tuple[int, dict]:
    """Client-side evaluation: ``(num_examples, {"loss", "accuracy"})`` of ``params`` on the node's data."""
    spec = model_spec(config.get("model", "logreg"))
    loss, acc = models.evaluate(spec, params, x, y)
    return int(len(y)), {"loss": loss, "accuracy": acc}


# ---- the server ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One node's train reply as the server sees it."""

    node_id: int
    client_key: int
    delta: list
    num_examples: int
    metrics: Mapping[str, float] = field(default_factory=dict)


def aggregate_replies(replies: Sequence[Reply]) -> tuple[list, float]:
    """``fedavg.aggregate`` over the replies, in client-key order, and the ``n_k``-weighted training loss."""
    if len(replies) == 0:
        raise ValueError("replies is empty: a round needs at least one reply to aggregate")
    ordered = sorted(replies, key=lambda r: (r.client_key, r.node_id))
    outputs = [fedavg.ClientOutput(r.delta, int(r.num_examples), dict(r.metrics)) for r in ordered]
    delta = fedavg.aggregate(outputs)
    w = np.array([o.num_examples for o in outputs], dtype=np.float64)
    losses = np.array([float(o.metrics.get("loss", float("nan"))) for o in outputs])
    return delta, float(np.dot(w, losses) / w.sum())


def apply_round(params: list, replies: Sequence[Reply], *, round: int) -> tuple[list, float]:
    """One server step, ``server_update(ServerState(params, round - 1), aggregate(replies))``: (params, train loss)."""
    delta, loss = aggregate_replies(replies)
    state = fedavg.server_update(fedavg.ServerState(params, round - 1), delta)
    return state.params, loss


def close_round(params: list, replies: Sequence[Reply], *, min_nodes: int, round: int) -> tuple[list, float, str]:
    """End a round: :func:`apply_round` with at least ``min_nodes`` replies, else keep the model.

    Returns ``(params, train loss, status)``, status ``"aggregated"`` or ``"skipped"`` (loss NaN).
    The deployed ServerApp and :func:`simulate` both end their rounds here.
    """
    if replies and len(replies) >= min_nodes:
        params, loss = apply_round(params, replies, round=round)
        return params, loss, "aggregated"
    return params, float("nan"), "skipped"


def round_decision(*, sent: int, answered: int, usable: int, min_nodes: int, elapsed: float, timeout: float) -> str:
    """Decide whether the server keeps waiting for this round's replies, aggregates them, or skips the round.

    - ``"wait"`` while some node has not answered and ``elapsed < timeout``,
      unless even all the missing answers could not reach ``min_nodes``;
    - once everyone answered, or at the timeout: ``"aggregate"`` if ``usable``
      replies (answers without an error) are at least ``min_nodes``, else
      ``"skip"`` (the model stays as it was).

    One vanished participant costs at most ``timeout`` seconds, never the room.
    """
    for name, v in (("sent", sent), ("answered", answered), ("usable", usable)):
        _int(name, v, minimum=0)
    _int("min_nodes", min_nodes, minimum=1)
    _float("timeout", timeout, low=0.0)
    _float("elapsed", elapsed, low=0.0, low_open=False)
    if answered > sent or usable > answered:
        raise ValueError(f"usable={usable}, answered={answered}, sent={sent}: must satisfy usable <= answered <= sent")
    if answered < sent and elapsed < timeout and usable + (sent - answered) >= min_nodes:
        return "wait"
    return "aggregate" if usable >= min_nodes else "skip"


def evaluate_global(settings: RunSettings, params) -> tuple[float, float]:
    """``(loss, accuracy)`` of the global model on the digits test split."""
    return models.evaluate(settings.spec, params, *test_data())


def sample_evaluators(node_ids: Sequence[int], *, fraction: float, seed: int, round: int) -> list[int]:
    """The nodes asked for client-side evaluation in ``round``: none if ``fraction == 0``, else a seeded sample."""
    _float("fraction", fraction, low=0.0, high=1.0, low_open=False)
    ids = sorted(int(n) for n in node_ids)
    if fraction == 0 or not ids:
        return []
    chosen = fedavg.sample_clients(len(ids), fraction=fraction, rng=seeding.derive(seed, round, 2**32))
    return [ids[i] for i in chosen]


# ---- progress lines -----------------------------------------------------------------------------------

_LINE = re.compile(r"FEDLAB_(START|ROUND|DONE) (\{.*\})\s*$")


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        return _finite(value.item())
    return value


def format_line(kind: str, payload: Mapping) -> str:
    """``FEDLAB_<KIND> <json>`` on one line (non-finite floats as ``null``)."""
    validate.one_of("kind", kind, LINE_KINDS)
    return f"FEDLAB_{kind} " + json.dumps(_finite(dict(payload)), sort_keys=True, allow_nan=False)


def parse_line(line: str) -> tuple[str, dict] | None:
    """``("ROUND", {...})`` for a progress line (anywhere in ``line``, e.g. after a log prefix), else ``None``."""
    m = _LINE.search(line)
    if not m:
        return None
    try:
        return m.group(1), json.loads(m.group(2))
    except json.JSONDecodeError:
        return None


# ---- the same rounds, in one process ------------------------------------------------------------------


def round_payload(
    settings: RunSettings,
    params,
    *,
    round: int,
    status: str,
    replies: Sequence[Reply],
    sent: int,
    train_loss: float,
    seconds: float,
    failed: Sequence[Mapping] = (),
    evaluation: Mapping | None = None,
) -> dict:
    """The ``FEDLAB_ROUND`` payload (see the module docstring)."""
    loss, acc = evaluate_global(settings, params)
    ordered = sorted(replies, key=lambda r: (r.client_key, r.node_id))
    return {
        "round": int(round),
        "status": status,
        "accuracy": acc,
        "loss": loss,
        "train_loss": train_loss,
        "replies": len(replies),
        "sent": int(sent),
        "node_ids": [int(r.node_id) for r in ordered],
        "client_keys": [int(r.client_key) for r in ordered],
        "num_examples": int(sum(r.num_examples for r in replies)),
        "node_examples": [int(r.num_examples) for r in ordered],
        "failed": [dict(f) for f in failed],
        "eval": None if evaluation is None else dict(evaluation),
        "seconds": round_seconds(seconds),
    }


def round_seconds(seconds: float) -> float:
    """Seconds rounded to milliseconds, for the progress lines."""
    return float(f"{seconds:.3f}")


def simulate(
    clients: Sequence[tuple[np.ndarray, np.ndarray]],
    settings: RunSettings,
    *,
    client_keys: Sequence[int] | None = None,
    on_round: Callable[[dict], None] | None = None,
) -> tuple[list, list[dict]]:
    """The deployed rounds in one process: the same :func:`train_reply` and :func:`apply_round` calls.

    ``clients[i]`` has key ``client_keys[i]`` (default ``i``, i.e. partition
    ``i``). Every client answers every round (no timeouts here). Returns the
    final parameters and one ``FEDLAB_ROUND``-shaped dict per round (its
    ``node_ids`` are the client keys). Trains with one torch thread, as each
    ClientApp does, so the numbers match a deployed run bit for bit.
    """
    from fedlab.engine import torch_threads

    keys = list(range(len(clients))) if client_keys is None else [int(k) for k in client_keys]
    if len(keys) != len(clients) or len(clients) == 0:
        raise ValueError(f"client_keys has {len(keys)} keys for {len(clients)} clients: need one per client, >= 1")
    params = initial_params(settings)
    rows = []
    with torch_threads(1):
        return _simulate_rounds(clients, keys, settings, params, rows, on_round)


def _simulate_rounds(clients, keys, settings, params, rows, on_round):
    for r in range(1, settings.num_server_rounds + 1):
        t0 = time.perf_counter()
        config = train_config(settings, r)
        replies = []
        for k, (x, y) in zip(keys, clients):
            delta, n, metrics = train_reply(params, x, y, config, client_key=k)
            replies.append(Reply(k, k, delta, n, metrics))
        params, train_loss, status = close_round(params, replies, min_nodes=settings.min_nodes, round=r)
        row = round_payload(
            settings,
            params,
            round=r,
            status=status,
            replies=replies,
            sent=len(keys),
            train_loss=train_loss,
            seconds=time.perf_counter() - t0,
        )
        rows.append(row)
        if on_round is not None:
            on_round(row)
    return params, rows
