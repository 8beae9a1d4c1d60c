"""Remote data with PySyft 0.9.5: datasites, mock and private assets, code requests, FedAvg across hospitals.

A *datasite* is a server that holds a data owner's (a hospital's) datasets.
Each asset has two versions: the **private** data, which never leaves the
datasite, and a **mock** with the same schema and shape but made-up values,
which any registered data scientist may read. A scientist explores the mock,
writes a function, and submits it as a **code request**; the owner reviews the
code and approves or denies it (with a reason). Only after approval may the
function run on the private data, and only its *result* leaves the datasite.

This module is the only one in :mod:`fedlab` that imports syft, and it does so
lazily (:func:`load_syft`), so ``import fedlab.remote`` is as light as the rest
of the package. Only lesson 06 imports it (its notebook, and its exercise
module :mod:`fedlab.exercises.remote` for the references of the pure half),
and its tests. It has two halves:

The math (no syft)
    :func:`make_mock` (a mock with the private data's schema and marginals),
    :func:`pack` / :func:`unpack` (features and label in one array, the form
    an asset takes), :func:`hospital_update` (what a datasite runs for one
    FedAvg client update: the course's :func:`fedlab.fedavg.client_update`
    returning only ``delta``, ``n`` and ``loss``), :func:`aggregate_remote`
    (FedAvg's weighted average over those results), :func:`site_seed` and
    :func:`owner_guard` (an owner's execution-count check).

The syft plumbing
    :func:`load_syft`; :func:`launch` / :func:`land` / :func:`datasites`
    (in-process datasites with unique names, so runs never share state, landed
    and deleted on exit); the owner's :func:`upload`, :func:`add_scientist`,
    :func:`review`, :func:`approve`, :func:`deny` / :func:`close` and
    :func:`request_history`; the scientist's :func:`asset`, :func:`send`,
    :func:`request` and :func:`run`; :func:`update_config` and
    :func:`update_on_datasite` (the training request); and
    :func:`fedavg_round` (one round of FedAvg over several datasites, every
    update approved by its owner). Everything syft prints, logs or displays
    during these calls is captured (:func:`quiet`, :func:`messages`) so
    notebooks stay readable; errors are raised with syft's own message.

What syft 0.9.5 does **not** do (measured; see ``tests/test_remote.py``): it
does not enforce its single-use output policy. ``OutputPolicyExecuteOnce``
counts the runs, but ``UserCodeService.is_execution_allowed`` ignores the
``False`` its ``is_valid`` returns, so an approved "single-use" function can
run again and again on the private data. Nor does syft keep a privacy budget.
An owner who wants one run per approval has to check the execution count
(:func:`request_history`, :func:`owner_guard`) and revoke the approval
(:func:`close`) themselves.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import logging
import re
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedlab import fedavg, models, seeding, validate

ADMIN_EMAIL = "info@openmined.org"
ADMIN_PASSWORD = "changethis"  # noqa: S105 - syft 0.9.5's default for a fresh in-process datasite
DATASET = "health"
ASSET = "xy"
STATUSES = ("pending", "approved", "denied")
ACTIONS = ("keep", "close", "alert")


# ================================================================================================
# The math: no syft below this line until the plumbing section
# ================================================================================================


def make_mock(x, y, *, rng: int | np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A mock of ``(x, y)``: same schema, shape and dtypes, realistic marginals, no real row or value.

    Each feature column is drawn independently from a normal distribution with
    that column's mean and standard deviation; labels are drawn independently
    with the real class frequencies. So the mock has the right shape, types,
    ranges and class balance for a data scientist to write and test code
    against, while every row is made up and the link between features and
    label is gone (a model trained on the mock learns nothing about the
    patients). It does reveal the column means, standard deviations and class
    frequencies, which the owner publishes on purpose.

    Parameters
    ----------
    x
        Private features, ``[n, d]`` floats.
    y
        Private labels, ``[n]`` ints.
    rng
        Seed or Generator.

    Returns
    -------
    (x_mock, y_mock)
        ``[n, d]`` with ``x``'s dtype and ``[n]`` with ``y``'s dtype.

    """
    x = validate.array("x", x, ndim=2, dtype_kind="f")
    y = validate.array("y", y, ndim=1, dtype_kind="iu")
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"x has {x.shape[0]} rows and y has {y.shape[0]}: need the same, positive number")
    gen = seeding.as_generator(rng)
    x64 = x.astype(np.float64)
    x_mock = gen.normal(x64.mean(axis=0), x64.std(axis=0), size=x.shape).astype(x.dtype)
    classes, counts = np.unique(y, return_counts=True)
    y_mock = gen.choice(classes, size=y.shape[0], p=counts / counts.sum()).astype(y.dtype)
    return x_mock, y_mock


def pack(x, y) -> np.ndarray:
    """Features and label in one float32 array ``[n, d + 1]`` (label last): the form a datasite's asset takes."""
    x = validate.array("x", x, ndim=2, dtype_kind="fiu")
    y = validate.array("y", y, ndim=1, dtype_kind="iu")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]} labels: they must match")
    return np.column_stack([x, y]).astype(np.float32)


def unpack(xy) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pack`: ``x`` float32 ``[n, d]`` and ``y`` int64 ``[n]``."""
    xy = validate.array("xy", xy, ndim=2, dtype_kind="fiu")
    if xy.shape[1] < 2:
        raise ValueError(f"xy has shape {xy.shape}: needs at least one feature column and the label column")
    return np.asarray(xy[:, :-1], dtype=np.float32), np.rint(xy[:, -1]).astype(np.int64)


def hospital_update(
    xy, params, *, spec: models.ModelSpec, epochs: int, batch_size: int | None, lr: float, seed: int
) -> dict:
    """One FedAvg client update, as a datasite runs it on its private asset.

    Parameters
    ----------
    xy
        The private asset, ``[n, d + 1]``: features then the label (:func:`pack`).
    params
        The global model (the course's list of float32 arrays).
    spec, epochs, batch_size, lr
        As for :func:`fedlab.fedavg.client_update`.
    seed
        The int seed of the client's shuffle (``rng=seed`` in ``client_update``).

    Returns
    -------
    dict
        Exactly ``{"delta": list of arrays, "n": int, "loss": float}``: the
        update, the example count FedAvg weighs it by, and the mean training
        loss. Nothing else leaves the hospital.

    """
    x, y = unpack(xy)
    out = fedavg.client_update(spec, params, x, y, epochs=epochs, batch_size=batch_size, lr=lr, rng=seed)
    return {"delta": out.delta, "n": int(out.num_examples), "loss": float(out.metrics["loss"])}


def aggregate_remote(results: Sequence[Mapping]) -> tuple[list, float]:
    """FedAvg over the datasites' results: ``(sum_k n_k delta_k / sum_k n_k, the n-weighted mean loss)``.

    ``results`` are dicts as :func:`hospital_update` returns them. The delta
    is :func:`fedlab.fedavg.aggregate` of the same updates (float64
    accumulation, float32 result).
    """
    if len(results) == 0:
        raise ValueError("results is empty: aggregate_remote needs at least one datasite's result")
    for i, r in enumerate(results):
        missing = {"delta", "n", "loss"} - set(r)
        if missing:
            raise ValueError(f"results[{i}] lacks {sorted(missing)}: each result needs delta, n and loss")
    outputs = [fedavg.ClientOutput(list(r["delta"]), int(r["n"]), {"loss": float(r["loss"])}) for r in results]
    weights = np.array([o.num_examples for o in outputs], dtype=np.float64)
    delta = fedavg.aggregate(outputs)
    loss = float(np.dot(weights, [o.metrics["loss"] for o in outputs]) / weights.sum())
    return delta, loss


def site_seed(seed: int, round: int, site: int) -> int:
    """The int seed datasite ``site`` uses in round ``round`` (from :func:`fedlab.seeding.derive`)."""
    return int(seeding.derive(seed, round, site).integers(0, 2**31 - 1))


def owner_guard(history: Sequence[Mapping], *, limit: int = 1) -> dict[str, str]:
    """What an owner should do about each code request, given how often each has run.

    Parameters
    ----------
    history
        One record per request, e.g. from :func:`request_history`:
        ``{"function": name, "status": "pending" | "approved" | "denied", "runs": int}``.
    limit
        Runs the owner allows per approval (1 for single use).

    Returns
    -------
    dict
        ``function -> action``:

        - ``"alert"`` if it ran more than ``limit`` times (whatever its status
          now): more results left than the owner agreed to; close it and find out why;
        - ``"close"`` if it is approved and has used up its ``limit`` runs:
          revoke the approval before it runs again;
        - ``"keep"`` otherwise (pending, denied, or runs left).

    """
    validate.positive_int("limit", limit)
    actions = {}
    for i, rec in enumerate(history):
        status, runs = rec["status"], rec["runs"]
        validate.one_of(f"history[{i}]['status']", status, STATUSES)
        validate.positive_int(f"history[{i}]['runs']", runs, minimum=0)
        if runs > limit:
            actions[rec["function"]] = "alert"
        elif status == "approved" and runs >= limit:
            actions[rec["function"]] = "close"
        else:
            actions[rec["function"]] = "keep"
    return actions


# ================================================================================================
# The syft plumbing
# ================================================================================================


class Refused(RuntimeError):
    """A datasite did not return a result; the message is syft's.

    The request is pending, was denied or revoked (the owner's reason is in the
    message), or its code raised on the datasite (syft does not show the
    scientist that traceback: it could contain private data).
    """


def load_syft():
    """Import syft 0.9.5 (once; ~5-20 s) with its loggers silenced, and return the module.

    A lesson calls ``sy = remote.load_syft()`` instead of ``import syft as sy``.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import syft as sy
    if not sy.__version__.startswith("0.9."):
        raise ImportError(f"syft {sy.__version__} is installed: lesson 06 needs syft 0.9.5 (see README, Install)")
    logging.getLogger("syft").setLevel(logging.CRITICAL + 1)
    return sy


@contextlib.contextmanager
def quiet() -> Iterator[Any]:
    """Capture what syft prints, logs to stderr, warns or displays (HTML) inside the block.

    Yields IPython's capture object (``.stdout``, ``.stderr``, ``.outputs``) for
    whoever wants to look. If the block raises, the last lines syft printed are
    attached to the exception as a note. The root logger's level (which a
    datasite's start-up changes) is restored afterwards.
    """
    from IPython.utils.capture import capture_output

    root = logging.getLogger()
    level = root.level
    try:
        with capture_output() as cap, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                yield cap
            except BaseException as err:
                tail = (cap.stdout + cap.stderr).strip()[-1500:]
                if tail and isinstance(err, Exception) and not isinstance(err, Refused):
                    err.add_note(f"syft printed (last lines):\n{tail}")
                raise
    finally:
        root.setLevel(level)


def messages(capture) -> list[str]:
    """The one-line messages syft printed or displayed inside a :func:`quiet` block (``"SyftError: ..."``).

    In a notebook syft *displays* them (rich output); in a script it prints them.
    """
    found = [o.data["text/plain"] for o in capture.outputs if "text/plain" in getattr(o, "data", {})]
    found += [
        line for line in capture.stdout.splitlines() if re.match(r"Syft(Error|Warning|Info|Success|Notice):", line)
    ]
    return [m.strip() for m in found if m.strip().startswith("Syft")]


def _syft_message(err: BaseException) -> str:
    """Return syft's public message without its ``<class '...'>`` prefix."""
    text = getattr(err, "public_message", None) or str(err)
    return re.sub(r"^<class '[\w.]+'>\s*", "", str(text)).strip()


def _raise_if_error(result, what: str):
    """Raise the ``SyftError`` that syft 0.9.5 sometimes returns instead of raising."""
    if type(result).__name__ == "SyftError":
        raise RuntimeError(f"{what}: {getattr(result, 'message', result)}")
    return result


@dataclass(frozen=True, eq=False)
class Datasite:
    """An in-process datasite and the two people who use it in the lesson.

    Attributes
    ----------
    name
        The short name, e.g. ``"hospital-a"``.
    server_name
        The unique name syft knows it by (``name`` plus a random suffix), which
        also decides its state folder; so repeated or parallel runs never share state.
    server
        syft's server handle (``sy.orchestra.launch``).
    owner
        The data owner's client (logged in as the datasite's admin).
    scientist
        A data scientist's client, after :func:`add_scientist`; else ``None``.

    """

    name: str
    server_name: str
    server: Any = field(repr=False)
    owner: Any = field(repr=False)
    scientist: Any = field(default=None, repr=False)

    def __repr__(self) -> str:
        who = "owner + scientist" if self.scientist is not None else "owner"
        return f"Datasite({self.name!r}, server_name={self.server_name!r}, logged in: {who})"


_RUNNING: dict[str, Any] = {}  # server_name -> server handle, landed at exit if still up


def _new_server_name(name: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,40}", name):
        raise ValueError(f"name={name!r}: must be 1-41 letters, digits, '-' or '_' (e.g. 'hospital-a')")
    return f"{name}-{uuid.uuid4().hex[:10]}"


def launch(name: str) -> Datasite:
    """Start an in-process datasite (no network) with a fresh state folder, and log its owner in.

    The server is named ``name`` plus a random suffix; syft keeps its state in
    ``<temp>/syft/<hash of the name>/``, which :func:`land` deletes.
    """
    sy = load_syft()
    server_name = _new_server_name(name)
    with quiet():
        server = sy.orchestra.launch(name=server_name, reset=True)
        _RUNNING[server_name] = server
        owner = server.login(email=ADMIN_EMAIL, password=ADMIN_PASSWORD)
    return Datasite(name, server_name, server, owner)


def land(sites: Datasite | Sequence[Datasite]) -> None:
    """Shut datasites down and delete their state folders (safe to call twice)."""
    for site in [sites] if isinstance(sites, Datasite) else list(sites):
        _land_server(site.server_name, site.server)


def _land_server(server_name: str, server) -> None:
    _RUNNING.pop(server_name, None)
    with quiet():
        with contextlib.suppress(Exception):
            server.land()
        inner = getattr(server, "python_server", None)
        if inner is not None:
            with contextlib.suppress(Exception):
                inner.remove_temp_dir()


@atexit.register
def _land_all() -> None:  # a kernel that shuts down leaves no datasite behind
    for server_name, server in list(_RUNNING.items()):
        _land_server(server_name, server)


@contextlib.contextmanager
def datasites(names: Sequence[str]) -> Iterator[list[Datasite]]:
    """``with remote.datasites(["hospital-a", "hospital-b"]) as sites:`` launches them and lands all on exit."""
    sites: list[Datasite] = []
    try:
        for name in names:
            sites.append(launch(name))
        yield sites
    finally:
        land(sites)


def upload(site: Datasite, xy: np.ndarray, mock: np.ndarray, *, description: str = "", dataset: str = DATASET) -> None:
    """The owner uploads one dataset with one asset ``"xy"``: ``xy`` private, ``mock`` public.

    ``mock`` must have ``xy``'s shape and dtype (that is what lets a scientist
    write code against it).
    """
    sy = load_syft()
    xy, mock = np.asarray(xy), np.asarray(mock)
    if mock.shape != xy.shape or mock.dtype != xy.dtype:
        raise ValueError(
            f"mock has shape {mock.shape} and dtype {mock.dtype}: must match the private data's "
            f"{xy.shape} and {xy.dtype}"
        )
    with quiet():
        ds = sy.Dataset(name=dataset, description=description or f"{dataset} records of {site.name}")
        ds.add_asset(sy.Asset(name=ASSET, data=xy, mock=mock))
        _raise_if_error(site.owner.upload_dataset(ds), f"uploading {dataset!r} to {site.name}")


def add_scientist(
    site: Datasite, *, email: str = "scientist@uni.edu", password: str = "correct-horse-42", name: str = "Jane"
) -> Datasite:
    """The owner registers a data scientist's account; returns ``site`` with the scientist logged in."""
    with quiet():
        _raise_if_error(
            site.owner.register(name=name, email=email, password=password, password_verify=password),
            f"registering {email} on {site.name}",
        )
        client = _raise_if_error(site.server.login(email=email, password=password), f"logging {email} in")
    return dataclasses.replace(site, scientist=client)


def _scientist(site: Datasite):
    if site.scientist is None:
        raise ValueError(f"site {site.name!r} has no scientist logged in: call remote.add_scientist(site) first")
    return site.scientist


def asset(site: Datasite, *, dataset: str = DATASET, name: str = ASSET):
    """The scientist's handle to an asset: ``.mock`` is readable, ``.data`` is not."""
    with quiet():
        return _scientist(site).datasets[dataset].assets[name]


def send(site: Datasite, obj) -> Any:
    """The scientist uploads ``obj`` (e.g. the global model) to the datasite; returns the pointer to pass as input."""
    sy = load_syft()
    with quiet():
        return sy.ActionObject.from_obj(obj).send(_scientist(site))


@dataclass(frozen=True, eq=False)
class Call:
    """A code request as the scientist holds it: the function's name on the datasite and its inputs."""

    site: str
    function: str
    inputs: dict = field(repr=False)


def request(site: Datasite, fn: Callable, *, name: str | None = None, **inputs) -> Call:
    """The scientist asks to run ``fn`` once on ``inputs`` (assets or pointers from :func:`send`).

    ``fn`` is submitted as source code under ``name`` (default: its own name)
    with syft's input policy ``ExactMatch(**inputs)`` (only these inputs) and
    output policy ``SingleExecutionExactOutput`` (one run; **not enforced** by
    syft 0.9.5, see the module docstring). The function must be
    self-contained: it runs on the datasite, so it imports what it needs
    inside its body.
    """
    sy = load_syft()
    name = name or fn.__name__
    if not name.isidentifier():
        raise ValueError(f"name={name!r}: must be a Python identifier, e.g. 'update_r0'")
    with quiet():
        code = sy.syft_function(
            input_policy=sy.ExactMatch(**inputs),
            output_policy=sy.SingleExecutionExactOutput(),
            name=name,
        )(fn)
        try:
            result = _scientist(site).code.request_code_execution(code)
        except sy.SyftException as err:
            raise RuntimeError(
                f"{site.name} did not accept the request {name!r}: {_syft_message(err)} "
                "(a name can be requested once per datasite; pick a new one)"
            ) from None
        _raise_if_error(result, f"requesting {name!r} on {site.name}")
    return Call(site.name, name, dict(inputs))


def run(site: Datasite, call: Call):
    """The scientist runs an approved request on the private data and fetches its result.

    Raises
    ------
    Refused
        With syft's message, while the request is pending, after it was
        denied (the owner's reason is in the message) or revoked.

    """
    sy = load_syft()
    if call.site != site.name:
        raise ValueError(f"call is for {call.site!r}: run it on that datasite, not {site.name!r}")
    with quiet():
        try:
            pointer = getattr(_scientist(site).code, call.function)(**call.inputs)
        except sy.SyftException as err:
            raise Refused(f"{site.name}: {_syft_message(err)}") from None
        _raise_if_error(pointer, f"running {call.function!r} on {site.name}")
        result = pointer.get()
    if type(result).__name__ in ("SyftError", "ActionDataEmpty"):
        raise Refused(f"{site.name}: no result for {call.function!r} ({result})")
    return result


def _owner_view(site: Datasite) -> list[tuple[Any, Any]]:
    """The owner's ``(Request, UserCode)`` pairs, oldest first (two API calls, however many requests)."""
    with quiet():
        codes = {code.id: code for code in site.owner.code.get_all()}
        found = sorted(site.owner.requests.get_all(), key=lambda r: r.request_time.utc_timestamp)
    return [(r, codes[r.code_id]) for r in found if r.code_id in codes]


def _requests(site: Datasite, function: str):
    found = [r for r, code in _owner_view(site) if code.service_func_name == function]
    if not found:
        raise ValueError(f"{site.name} has no request named {function!r}")
    return found[-1]


def review(site: Datasite, function: str) -> str:
    """The owner reads the code of a request (plain text)."""
    req = _requests(site, function)
    with quiet():
        return req.code.raw_code


def approve(site: Datasite, function: str) -> None:
    """The owner approves a request."""
    req = _requests(site, function)
    with quiet():
        _raise_if_error(req.approve(), f"approving {function!r} on {site.name}")


def deny(site: Datasite, function: str, *, reason: str) -> None:
    """The owner denies a request (or revokes an approval), telling the scientist ``reason``."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError(f"reason={reason!r}: say why, e.g. 'returns raw records'")
    req = _requests(site, function)
    with quiet():
        _raise_if_error(req.deny(reason=reason), f"denying {function!r} on {site.name}")


close = deny
"""Revoking an approval is a denial after the fact: ``close(site, function, reason=...)``."""


_STATUS = {"PENDING": "pending", "APPROVED": "approved", "REJECTED": "denied"}


def request_history(site: Datasite) -> list[dict]:
    """The owner's view of every code request: ``[{"function", "status", "runs"}]``, oldest first.

    ``runs`` is how many times the code has run on this datasite (the length
    of syft's output history), which is what the owner checks because syft
    0.9.5 does not stop a "single-use" function from running again.
    """
    view = _owner_view(site)
    with quiet():
        outputs = site.owner.api.services.output.get_all()
        runs: dict = {}
        for output in outputs:
            runs[output.user_code_id] = runs.get(output.user_code_id, 0) + 1
        return [
            {"function": code.service_func_name, "status": _STATUS[req.status.name], "runs": runs.get(code.id, 0)}
            for req, code in view
        ]


def update_on_datasite(xy, config):
    """FedAvg client update on this datasite's private data; returns only delta, n and loss.

    The function a scientist submits for review: ``xy`` is the datasite's
    asset, ``config`` what :func:`update_config` makes (sent with :func:`send`).
    It runs on the datasite, so it imports what it needs in its body.
    """
    from fedlab import engine, models, remote

    spec = models.ModelSpec(**config["spec"])
    with engine.torch_threads(1):  # a small model: one thread is fastest (README, Threads)
        return remote.hospital_update(
            xy,
            config["params"],
            spec=spec,
            epochs=config["epochs"],
            batch_size=config["batch_size"],
            lr=config["lr"],
            seed=config["seed"],
        )


def update_config(
    spec: models.ModelSpec, params: list, *, epochs: int, batch_size: int | None, lr: float, seed: int
) -> dict:
    """The inputs of :func:`update_on_datasite` besides the data, as plain values syft can send.

    ``{"params", "spec" (a dict), "epochs", "batch_size", "lr", "seed"}``.
    """
    params = models.check_params(spec, params)
    validate.positive_int("epochs", epochs)
    validate.positive_float("lr", lr)
    validate.positive_int("seed", seed, minimum=0)
    if batch_size is not None:
        validate.positive_int("batch_size", batch_size)
    spec_dict = dataclasses.asdict(spec)
    spec_dict["hidden"] = tuple(spec_dict["hidden"])
    return {
        "params": params,
        "spec": spec_dict,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": float(lr),
        "seed": seed,
    }


def fedavg_round(
    sites: Sequence[Datasite],
    spec: models.ModelSpec,
    params: list,
    *,
    round: int,
    epochs: int,
    batch_size: int | None,
    lr: float,
    seed: int,
    owner_review: Callable[[str, str], str | None] | None = None,
    guard: Callable[..., dict] | None = None,
    limit: int = 1,
) -> tuple[list, list[dict]]:
    """One round of FedAvg over datasites, each update approved by its owner.

    For each datasite ``k`` in order, the scientist sends the global model and
    the round's settings (:func:`send`) and requests ``fedavg_update_r<round>``
    (:func:`update_on_datasite`, which calls :func:`hospital_update` with
    ``seed = site_seed(seed, round, k)``);
    the owner reviews it and approves or denies; the scientist runs it and
    fetches the result. The scientist then aggregates with
    :func:`aggregate_remote` and applies :func:`fedlab.fedavg.server_update`.
    This equals the same round computed locally with :mod:`fedlab.fedavg` on
    the same data and seeds (``tests/test_remote.py``).

    Parameters
    ----------
    owner_review
        The owners' decision: ``owner_review(site_name, code) -> None`` to approve,
        or a reason (str) to deny. A denying site sits the round out.
        ``None`` approves every request.
    guard
        An owner guard such as :func:`owner_guard`. If given, each owner
        applies it to their :func:`request_history` after the run (with
        ``limit``) and closes every request it flags, so an approved update
        cannot run again. ``None``: no guard (syft 0.9.5 would let the
        scientist re-run the update).

    Returns
    -------
    (params, records)
        The new global parameters (unchanged if no site took part) and one
        record per site: ``{"site", "status", "n", "loss", "delta", "call", "seconds"}``
        (``n``, ``loss``, ``delta`` are ``None`` for a site that denied; ``call``
        is the scientist's :class:`Call`, to try running it again).

    """
    params = models.check_params(spec, params)
    validate.positive_int("round", round, minimum=0)
    validate.positive_int("seed", seed, minimum=0)
    update_config(spec, params, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)  # check before any request
    function = f"fedavg_update_r{round}"
    records, results = [], []
    for k, site in enumerate(sites):
        t0 = time.perf_counter()
        config = update_config(
            spec, params, epochs=epochs, batch_size=batch_size, lr=lr, seed=site_seed(seed, round, k)
        )
        call = request(site, update_on_datasite, name=function, xy=asset(site), config=send(site, config))
        reason = None if owner_review is None else owner_review(site.name, review(site, function))
        record = {"site": site.name, "status": "denied", "n": None, "loss": None, "delta": None, "call": call}
        if reason is not None:
            deny(site, function, reason=reason)
        else:
            approve(site, function)
            result = run(site, call)
            if guard is not None:
                history = request_history(site)
                actions = guard(history, limit=limit)
                for rec in history:
                    if rec["status"] == "approved" and actions.get(rec["function"], "keep") != "keep":
                        close(site, rec["function"], reason=f"closed by the owner's guard after {rec['runs']} run(s)")
            results.append(result)
            record.update(status="approved", n=result["n"], loss=result["loss"], delta=result["delta"])
        records.append({**record, "seconds": time.perf_counter() - t0})
    if not results:
        return params, records
    delta, _ = aggregate_remote(results)
    return fedavg.server_update(fedavg.ServerState(params, round), delta).params, records
