"""Remote data with PySyft 0.10 (syft-rds): datasets with mock and private files, jobs, FedAvg across hospitals.

A data owner (a hospital) publishes a **dataset**: a **private** file that
never leaves the owner's machine and a **mock** with the same schema and
made-up values, which the data scientists it is shared with receive. A
scientist explores the mock, writes a **job** (a Python script, or a folder
with one), and submits it. The owner reads the code and **approves** or
**rejects** it with a reason the scientist sees. Approving does not run it: the
owner runs the approved jobs (``process_approved_jobs``) on the private file,
and only what a job writes to ``outputs/`` - and its logs - can be shared back.

This module is the only one in :mod:`fedlab` that imports syft, and it does so
lazily (:func:`load_syft`), so ``import fedlab.remote`` is as light as the rest
of the package. Only lesson 06 imports it (its notebook, and its exercise
module :mod:`fedlab.exercises.remote` for the references of the pure half),
and its tests. It has two halves:

The math (no syft)
    :func:`make_mock` (a mock with the private data's schema and marginals),
    :func:`pack` / :func:`unpack` (features and label in one array, the form
    a dataset file takes), :func:`hospital_update` (what a job runs for one
    FedAvg client update: the course's :func:`fedlab.fedavg.client_update`
    returning only ``delta``, ``n`` and ``loss``), :func:`aggregate_remote`
    (FedAvg's weighted average over those results), :func:`site_seed`,
    :func:`release_check` (the owner's look at a job's outputs and log before
    sharing them), and the job files (:func:`write_update_job`,
    :func:`save_result`, :func:`load_result`).

The syft plumbing
    :func:`load_syft`; :func:`connect` / :func:`hospitals` (an owner and the
    scientist in this one process, joined by syft's in-memory stand-in for its
    Google Drive transport, each in a fresh folder); the owner's
    :func:`publish`, :func:`review`, :func:`approve`, :func:`reject`,
    :func:`run_approved`, :func:`owner_error` and :func:`release`; the
    scientist's :func:`mock_file`, :func:`submit`, :func:`status` and
    :func:`result`; :func:`fedavg_round`
    (one round of FedAvg over several hospitals, each local update an
    approved job). What syft prints is captured (:func:`quiet`) so notebooks
    stay readable; errors are raised with syft's message or the job's.

Where a job runs (decided here, measured in README "Lesson 06's jobs"): syft-rds
writes every job a ``run.sh`` that makes a fresh environment with
``uv venv --python 3.12`` and ``uv pip install "syft==0.10.0"``, then runs the
script. The course runs on Python 3.11 (its torch wheel), and a job must run
lesson 02's torch ``client_update`` with no download, so :func:`submit` names
the course's own interpreter where syft-rds names 3.12 (the module constant
``syft_job.client.RUN_SCRIPT_PYTHON_VERSION``, read when a job is written), and
:func:`job_environment` gives the owner's job runner an offline uv (the wheel
folder ``make install`` fills, :func:`job_paths`) and the course's packages on
``PYTHONPATH``. So a job builds its environment in well under a second from
the warm uv cache and imports the same torch, numpy and fedlab as the lesson.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import re
import shutil
import site as pysite
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedlab import fedavg, models, seeding, validate

SYFT_VERSION = "0.10.0"
"""The syft release lesson 06 teaches (with syft-rds 0.6.1)."""
DATASET = "health"
FILE = "xy.npy"
"""Each hospital's dataset is one file: ``[n, d + 1]`` float32, features then the label (:func:`pack`)."""
SCIENTIST = "scientist@uni.edu"
RESULT = "result.json"
"""The one file an update job writes to ``outputs/``."""
JOBS_DIR_VAR = "FEDLAB_JOBS_DIR"
"""Environment variable naming the jobs' folder (wheels and uv cache); default ``<sys.prefix>/fedlab-jobs``."""


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


def release_check(files: Mapping[str, bytes], log: str, *, expected: Collection[str]) -> str | None:
    """The owner's look at a finished job before sharing it: ``None`` to release, else the reason to hold it.

    Parameters
    ----------
    files
        What the job wrote to ``outputs/``: ``{file name: its bytes}``.
    log
        What the job printed (its ``stdout.txt``): it travels with the outputs.
    expected
        The output files the owner approved, e.g. ``{"result.json"}``.

    Returns
    -------
    str or None
        The first problem found, in this order: an output file nobody asked
        for (``"unexpected output ..."``), an expected file missing
        (``"missing output ..."``), a non-empty log (``"the log has N
        line(s) ..."``: a print is a disclosure too); ``None`` if none.

    """
    if not isinstance(files, Mapping):
        raise ValueError(f"files={type(files).__name__}: must map output file names to their bytes")
    if not isinstance(log, str):
        raise ValueError(f"log={type(log).__name__}: must be the job's printed text (a str, '' if silent)")
    expected = set(expected)
    unexpected = sorted(set(files) - expected)
    if unexpected:
        return f"unexpected output {unexpected}: only {sorted(expected)} were approved"
    missing = sorted(expected - set(files))
    if missing:
        return f"missing output {missing}: the job did not write what was approved"
    lines = [line for line in log.splitlines() if line.strip()]
    if lines:
        return f"the log has {len(lines)} line(s) the scientist would read with the result: a print is a disclosure"
    return None


# ---- the job's files --------------------------------------------------------------------------------

UPDATE_JOB = '''\
"""FedAvg client update on this hospital's private records (fedlab lesson 06); writes outputs/result.json."""
import json

import numpy as np
import syft as sy

from fedlab import engine, remote

with open("config.json") as f:
    config = json.load(f)
params = [np.asarray(p, dtype=np.float32) for p in config["params"]]  # the global model
xy = np.load(sy.resolve_dataset_file_path(config["dataset"]))  # the private file here, the mock elsewhere
with engine.torch_threads(1):  # a small model: one thread is fastest
    result = remote.hospital_update(
        xy, params, spec=remote.spec_from_json(config["spec"]), epochs=config["epochs"],
        batch_size=config["batch_size"], lr=config["lr"], seed=config["seed"],
    )
remote.save_result("outputs/result.json", result)  # only the delta, n and loss leave
'''
"""The update job's ``main.py``: what the owner reads before approving (``review``)."""


def write_update_job(
    folder: str | os.PathLike,
    spec: models.ModelSpec,
    params: list,
    *,
    epochs: int,
    batch_size: int | None,
    lr: float,
    seed: int,
    dataset: str = DATASET,
) -> Path:
    """Write an update job's folder: ``main.py`` (:data:`UPDATE_JOB`) and ``config.json`` (the model and settings).

    Everything is text: syft 0.10 syncs a job's files as UTF-8 (a binary file
    in a job fails to submit), and a float32 written as JSON reads back exactly.

    The folder is what :func:`submit` sends; returns it. It must not exist yet
    or be empty.
    """
    params = models.check_params(spec, params)
    validate.positive_int("epochs", epochs)
    validate.positive_float("lr", lr)
    validate.positive_int("seed", seed, minimum=0)
    if batch_size is not None:
        validate.positive_int("batch_size", batch_size)
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise ValueError(f"folder={str(folder)!r} is not empty: a job folder holds only the job's files")
    folder.mkdir(parents=True, exist_ok=True)
    spec_dict = dataclasses.asdict(spec)
    spec_dict["hidden"] = list(spec_dict["hidden"])
    config = {"dataset": dataset, "spec": spec_dict, "epochs": epochs, "batch_size": batch_size, "lr": float(lr),
              "seed": int(seed), "params": [p.tolist() for p in params]}
    (folder / "main.py").write_text(UPDATE_JOB)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def spec_from_json(d: Mapping) -> models.ModelSpec:
    """The :class:`fedlab.models.ModelSpec` a job's ``config.json`` describes (``hidden`` as a list there)."""
    return models.ModelSpec(**{**d, "hidden": tuple(d.get("hidden", ()))})


def save_result(path: str | os.PathLike, result: Mapping) -> Path:
    """Write a :func:`hospital_update` result as JSON ``{"delta": [nested lists], "n", "loss"}`` (float32 exact)."""
    missing = {"delta", "n", "loss"} - set(result)
    if missing:
        raise ValueError(f"result lacks {sorted(missing)}: it needs delta, n and loss")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    delta = [np.asarray(d, dtype=np.float32).tolist() for d in result["delta"]]
    p.write_text(json.dumps({"delta": delta, "n": int(result["n"]), "loss": float(result["loss"])}))
    return p


def load_result(path: str | os.PathLike) -> dict:
    """Read :func:`save_result`'s file back: ``{"delta": [float32 arrays], "n": int, "loss": float}``."""
    raw = json.loads(Path(path).read_text())
    return {"delta": [np.asarray(d, dtype=np.float32) for d in raw["delta"]], "n": int(raw["n"]),
            "loss": float(raw["loss"])}


# ================================================================================================
# The syft plumbing
# ================================================================================================


class Refused(RuntimeError):
    """A hospital did not return a result: the job is pending, approved but not run yet, or was rejected.

    A rejection's message carries the owner's reason. A rejected job never runs,
    so it has no outputs to read.
    """


class JobFailed(RuntimeError):
    """An approved job raised at the owner; the message ends with the error it printed (its ``stderr``)."""


def load_syft():
    """Import syft 0.10 and syft-rds (once; about 1-2 s) with their loggers silenced, and return syft.

    A lesson calls ``sy = remote.load_syft()`` instead of ``import syft as sy``.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import syft as sy
        import syft_rds  # noqa: F401 - the datasets-and-jobs client
    if sy.__version__ != SYFT_VERSION:
        raise ImportError(
            f"syft {sy.__version__} is installed: lesson 06 needs syft {SYFT_VERSION} (see README, Install)"
        )
    for name in ("syft", "syft_rds", "syft_job", "syft_dataset", "httpx", "googleapiclient"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return sy


@contextlib.contextmanager
def quiet() -> Iterator[io.StringIO]:
    """Capture what syft prints (progress lines, emoji banners) inside the block; yields the captured text.

    Inside the block syft-rds does not sync on every read (``PRE_SYNC=false``):
    this module syncs both sides itself after every change, once. If the
    block raises, the last lines syft printed are attached to the exception.
    """
    buf = io.StringIO()
    saved = os.environ.get("PRE_SYNC")
    os.environ["PRE_SYNC"] = "false"
    try:
        with contextlib.redirect_stdout(buf), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield buf
    except Exception as err:
        tail = buf.getvalue().strip()[-1500:]
        if tail and not isinstance(err, Refused | JobFailed):
            err.add_note(f"syft printed (last lines):\n{tail}")
        raise
    finally:
        if saved is None:
            os.environ.pop("PRE_SYNC", None)
        else:
            os.environ["PRE_SYNC"] = saved


# ---- where jobs run ------------------------------------------------------------------------------


def job_paths() -> dict[str, Path]:
    """The jobs' folder and its parts: ``{"root", "wheels", "cache"}``.

    ``root`` is ``$FEDLAB_JOBS_DIR`` or ``<sys.prefix>/fedlab-jobs`` (inside the
    course's venv); ``make install`` fills ``wheels`` (syft and its
    dependencies for this Python) and warms ``cache`` (uv's cache).
    """
    root = Path(os.environ.get(JOBS_DIR_VAR) or Path(sys.prefix) / "fedlab-jobs")
    return {"root": root, "wheels": root / "wheels", "cache": root / "uv-cache"}


def uv_binary() -> Path | None:
    """The ``uv`` executable of the course's environment (the ``uv`` package), else the one on PATH."""
    with contextlib.suppress(ImportError, FileNotFoundError):
        import uv

        return Path(uv.find_uv_bin())
    found = shutil.which("uv")
    return Path(found) if found else None


def job_env() -> dict[str, str]:
    """The variables :func:`job_environment` sets for the owner's job runner (a job inherits them).

    uv offline from the wheel folder and the warm cache, never downloading a
    Python; the course's ``uv`` first on ``PATH``; the course's own packages
    (and fedlab's source folder) on ``PYTHONPATH``, so a job imports the
    lesson's torch, numpy and fedlab without installing them.
    """
    paths = job_paths()
    uv = uv_binary()
    if uv is None:
        raise RuntimeError("uv is not installed: lesson 06's jobs need it (make install installs it)")
    if not paths["wheels"].is_dir() or not any(paths["wheels"].glob("syft-*.whl")):
        raise RuntimeError(
            f"no syft wheel in {paths['wheels']}: lesson 06's jobs install syft from there with no network. "
            "Run `make install` (or `python -m fedlab jobs prepare`) once with internet"
        )
    fedlab_root = str(Path(__file__).resolve().parent.parent)
    packages = [p for p in pysite.getsitepackages() if Path(p).is_dir()]
    return {
        "PATH": os.pathsep.join([str(uv.parent), os.environ.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join([fedlab_root, *packages]),
        "UV_OFFLINE": "1",
        "UV_NO_INDEX": "1",
        "UV_FIND_LINKS": str(paths["wheels"]),
        "UV_CACHE_DIR": str(paths["cache"]),
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_NO_PROGRESS": "1",
    }


@contextlib.contextmanager
def job_environment() -> Iterator[dict[str, str]]:
    """Set :func:`job_env` in ``os.environ`` for the block (the job runner copies it), then restore it."""
    env = job_env()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def prepare_jobs(*, lock: str | os.PathLike | None = None, out=print) -> float:
    """Fill the wheel folder (needs the package index once) and warm uv's cache; returns the seconds.

    ``pip download syft==0.10.0`` for this interpreter, constrained to the
    course's ``requirements.lock``, into :func:`job_paths` ``["wheels"]``; then
    one job environment is built *offline* from it exactly as a job's
    ``run.sh`` builds it, which proves the offline path and warms the cache.
    """
    t0 = time.perf_counter()
    paths = job_paths()
    paths["wheels"].mkdir(parents=True, exist_ok=True)
    lock = Path(lock) if lock is not None else Path(__file__).resolve().parent.parent / "requirements.lock"
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q", "--only-binary=:all:",
           "-d", str(paths["wheels"]), f"syft=={SYFT_VERSION}"]
    if lock.is_file():
        cmd[5:5] = ["-c", str(lock)]
    subprocess.run(cmd, check=True)
    seconds = warm_jobs()
    out(f"lesson 06's jobs: {len(list(paths['wheels'].glob('*.whl')))} wheels in {paths['wheels']}; "
        f"an offline job environment builds in {seconds:.2f} s")
    return time.perf_counter() - t0


def warm_jobs() -> float:
    """Build one job environment offline, as ``run.sh`` does; returns the seconds the build took."""
    env = {**os.environ, **job_env()}
    uv = str(uv_binary())
    with tempfile.TemporaryDirectory(prefix="fedlab-job-") as tmp:
        t0 = time.perf_counter()
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, f"{tmp}/.venv"], env=env, check=True)
        subprocess.run(
            [uv, "pip", "install", "-q", "--python", f"{tmp}/.venv/bin/python", f"syft=={SYFT_VERSION}"],
            env=env,
            check=True,
        )
        return time.perf_counter() - t0


# ---- owners and the scientist ---------------------------------------------------------------------


_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,40}")


@dataclass(frozen=True, eq=False)
class Hospital:
    """One data owner and the scientist's connection to it, in this process.

    Attributes
    ----------
    name
        The short name, e.g. ``"hospital-a"``; the owner is ``owner@<name>.org``.
    folder
        This pair's fresh folder: ``owner/`` and ``scientist/`` (their SyftBox
        folders) and ``data/`` (the files the owner publishes from).
    owner, scientist
        syft-rds clients (``SyftRDSClient``): the data owner's and the data scientist's.

    """

    name: str
    folder: Path
    owner: Any = field(repr=False)
    scientist: Any = field(repr=False)

    @property
    def owner_email(self) -> str:
        return f"owner@{self.name}.org"

    def __repr__(self) -> str:
        return f"Hospital({self.name!r}, owner={self.owner_email!r}, scientist={self.scientist.email!r})"


def connect(name: str, *, root: str | os.PathLike, scientist: str = SCIENTIST) -> Hospital:
    """The owner of hospital ``name`` and the scientist, paired through syft's in-memory Drive stand-in.

    ``SyftRDSClient.pair_with_mock_drive_service_connection(..., use_in_memory_cache=False)``:
    the only transport of syft 0.10 is Google Drive, and its stand-in (made for
    syft's own tests) links two clients in one process, with no network. (With
    the default in-memory cache the scientist sees no dataset.)
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"name={name!r}: must be 1-41 lower-case letters, digits or '-' (e.g. 'hospital-a')")
    load_syft()
    from syft_rds import SyftRDSClient

    folder = Path(root) / name
    if folder.exists():
        raise ValueError(f"{folder} exists: each hospital needs a fresh folder (use a new root)")
    with quiet():
        ds, do = SyftRDSClient.pair_with_mock_drive_service_connection(
            email1=f"owner@{name}.org",
            email2=scientist,
            base_path1=str(folder / "owner"),
            base_path2=str(folder / "scientist"),
            use_in_memory_cache=False,
        )
    return Hospital(name, folder, do, ds)


@contextlib.contextmanager
def hospitals(names: Sequence[str], *, root: str | os.PathLike | None = None) -> Iterator[list[Hospital]]:
    """``with remote.hospitals(["hospital-a", "hospital-b"]) as sites:`` pairs each; deletes a temporary root after.

    With ``root=None`` everything lives in a fresh temporary folder, removed on exit.
    """
    tmp = tempfile.mkdtemp(prefix="fedlab-remote-") if root is None else None
    try:
        yield [connect(n, root=tmp or root) for n in names]
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _sync(site: Hospital) -> None:
    with quiet():
        site.owner.sync()
        site.scientist.sync()


def publish(site: Hospital, xy, mock, *, dataset: str = DATASET, summary: str = "") -> None:
    """The owner publishes ``dataset``: ``xy`` private (stays), ``mock`` shared with the scientist.

    Each is saved as ``xy.npy`` under ``site.folder/data/<dataset>/{private,mock}/``
    and handed to ``owner.create_dataset(name, mock_path, private_path, users=[scientist])``.
    ``mock`` must have ``xy``'s shape and dtype (that is what lets a scientist
    write code against it).
    """
    xy, mock = np.asarray(xy), np.asarray(mock)
    if mock.shape != xy.shape or mock.dtype != xy.dtype:
        raise ValueError(
            f"mock has shape {mock.shape} and dtype {mock.dtype}: must match the private data's "
            f"{xy.shape} and {xy.dtype}"
        )
    base = site.folder / "data" / dataset
    for part, arr in (("private", xy), ("mock", mock)):
        (base / part).mkdir(parents=True, exist_ok=True)
        np.save(base / part / FILE, arr)
    create_dataset(site, dataset, mock_path=base / "mock", private_path=base / "private", summary=summary)


def create_dataset(site: Hospital, name: str, *, mock_path, private_path, summary: str = "") -> None:
    """``owner.create_dataset`` with its folders checked first (a missing one is a ValueError naming it)."""
    for what, p in (("mock_path", mock_path), ("private_path", private_path)):
        p = Path(p)
        if not p.is_dir() or not any(p.iterdir()):
            raise ValueError(f"{what}={str(p)!r}: no such folder, or it is empty (it must hold the dataset's files)")
    with quiet():
        site.owner.create_dataset(
            name=name,
            mock_path=Path(mock_path),
            private_path=Path(private_path),
            summary=summary or f"{name} records of {site.name}",
            users=[site.scientist.email],
        )
    _sync(site)


def mock_file(site: Hospital, dataset: str = DATASET) -> Path:
    """The scientist's copy of the mock: ``sy.resolve_dataset_file_path(dataset, client=scientist)``."""
    sy = load_syft()
    with quiet():
        return Path(sy.resolve_dataset_file_path(dataset, client=site.scientist))


def _job(client, name: str):
    with quiet():
        found = [j for j in client.jobs if j.name == name]
    if not found:
        raise ValueError(f"no job named {name!r} at {client.email}")
    return found[-1]


def submit(site: Hospital, code: str | os.PathLike, *, name: str) -> str:
    """The scientist submits a job (a ``.py`` file, or a folder with ``main.py``) to the owner; returns ``name``.

    Written with syft-rds's own ``submit_python_job``; its ``run.sh`` names the
    course's interpreter (see the module docstring) instead of Python 3.12.
    """
    from syft_job import client as job_client

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,60}", name):
        raise ValueError(f"name={name!r}: must be letters, digits, '-' or '_' (e.g. 'update-r0')")
    code = Path(code)
    if not code.exists():
        raise ValueError(f"code={str(code)!r}: no such file or folder")
    if not hasattr(job_client, "RUN_SCRIPT_PYTHON_VERSION"):
        raise RuntimeError("syft_job no longer has RUN_SCRIPT_PYTHON_VERSION: fedlab.remote needs updating")
    saved = job_client.RUN_SCRIPT_PYTHON_VERSION
    job_client.RUN_SCRIPT_PYTHON_VERSION = sys.executable
    try:
        with quiet():
            site.scientist.submit_python_job(
                user=site.owner_email,
                code_path=str(code),
                job_name=name,
                entrypoint="main.py" if code.is_dir() else None,
            )
    except FileExistsError:
        raise ValueError(f"{site.name} already has a job named {name!r}: pick a new name") from None
    finally:
        job_client.RUN_SCRIPT_PYTHON_VERSION = saved
    _sync(site)
    return name


def jobs(site: Hospital) -> list[dict]:
    """The owner's list: ``[{"name", "status", "reason"}]``, oldest first."""
    with quiet():
        return [{"name": j.name, "status": j.status, "reason": j.review_reason} for j in site.owner.jobs]


def review(site: Hospital, name: str) -> str:
    """The owner reads a job: its code files and its ``run.sh``, as one text."""
    job = _job(site.owner, name)
    with quiet():
        return f"{job.code}\n# ---- run.sh ----\n{job.run_script}"


def approve(site: Hospital, name: str, *, reason: str = "approved") -> None:
    """The owner approves a job (it runs at the next :func:`run_approved`)."""
    job = _job(site.owner, name)
    with quiet():
        job.approve(reason=reason)
    _sync(site)


def reject(site: Hospital, name: str, *, reason: str) -> None:
    """The owner rejects a job, telling the scientist ``reason``; it never runs."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError(f"reason={reason!r}: say why, e.g. 'returns raw records'")
    job = _job(site.owner, name)
    with quiet():
        job.reject(reason=reason)
    _sync(site)


def _drop_job_venvs(site: Hospital) -> None:
    """Delete each finished job's ``code/.venv`` at the owner.

    syft-rds leaves a job's environment in the job's folder, inside the owner's
    SyftBox, where every later sync walks its thousands of files (measured: a
    round took 34 s instead of 13 s by the third round).
    """
    with quiet():
        for job in site.owner.jobs:
            venv = Path(job.job_submission_path) / "code" / ".venv"
            if venv.is_dir():
                shutil.rmtree(venv, ignore_errors=True)


def run_approved(sites: Hospital | Sequence[Hospital], *, share: bool = False, timeout: int = 300) -> float:
    """Each owner runs every job it approved on its private data; returns the seconds.

    Several hospitals run at the same time (one thread per owner: each job is
    its own process). Each job's environment is deleted after it ran.
    ``share=False`` (the default here) keeps outputs and logs with the owner
    until :func:`release`; syft-rds's ``share_outputs_with_submitter=True``
    would share them as each job ends.
    """
    sites = [sites] if isinstance(sites, Hospital) else list(sites)
    t0 = time.perf_counter()

    def one(site: Hospital) -> None:
        site.owner.process_approved_jobs(stream_output=False, timeout=timeout, share_outputs_with_submitter=share)

    with job_environment(), quiet():
        if len(sites) == 1:
            one(sites[0])
        else:
            with ThreadPoolExecutor(max_workers=len(sites)) as pool:
                for done in [pool.submit(one, site) for site in sites]:
                    done.result()
    for site in sites:
        _drop_job_venvs(site)
        _sync(site)
    return time.perf_counter() - t0


def outputs(site: Hospital, name: str) -> tuple[dict[str, bytes], str]:
    """The owner's view of a finished job: ``({output file: bytes}, its printed log)``."""
    job = _job(site.owner, name)
    folder = Path(job.job_review_path)
    files = {p.name: p.read_bytes() for p in sorted((folder / "outputs").glob("*")) if p.is_file()
             and not p.name.startswith("syft.") and p.name != "syft.pub.yaml"}
    log = (folder / "stdout.txt").read_text() if (folder / "stdout.txt").is_file() else ""
    return files, log


def release(site: Hospital, name: str) -> None:
    """The owner shares a finished job's outputs (and, as syft-rds does with them, its logs) with the scientist."""
    job = _job(site.owner, name)
    if job.status not in ("done", "failed"):
        raise ValueError(f"job {name!r} is {job.status}: only a finished job's outputs can be released")
    with quiet():
        job.share_outputs([site.scientist.email])
        job.share_logs([site.scientist.email])
    _sync(site)


def status(site: Hospital, name: str) -> str:
    """The job's status as the scientist sees it: received (not reviewed yet), approved, rejected, done or failed."""
    return _job(site.scientist, name).status


def _error_tail(stderr: str, *, lines: int = 8) -> str:
    """The Python error in a job's stderr (from its last ``Traceback``), without uv's set-up lines."""
    text = stderr.strip()
    start = text.rfind("Traceback (most recent call last)")
    if start >= 0:
        text = text[start:]
    kept = [ln for ln in text.splitlines() if ln.strip() and not re.match(r"\s*[+-] \S+==", ln)]
    return "\n".join(kept[-lines:]) if kept else "(no error text)"


def owner_error(site: Hospital, name: str) -> str | None:
    """The owner's view of a failed job: the Python error at the end of its ``stderr.txt``; ``None`` if it did not fail.

    What :func:`fedavg_round` reports for a job that raised, before anything is
    released (the scientist reads the same error through :func:`result` once
    the owner releases the logs).
    """
    job = _job(site.owner, name)
    if job.status != "failed":
        return None
    err = Path(job.job_review_path) / "stderr.txt"
    return _error_tail(err.read_text() if err.is_file() else "")


def result_files(site: Hospital, name: str) -> list[Path]:
    """The scientist's copies of a job's outputs; raises :class:`Refused` or :class:`JobFailed` if there are none.

    Raises
    ------
    Refused
        The job is pending or approved but not run (or not released yet), or
        it was rejected: the message carries the owner's reason.
    JobFailed
        The job raised at the owner: the message ends with its error.

    """
    job = _job(site.scientist, name)
    st = job.status
    if st == "rejected":
        raise Refused(f"{site.name} rejected {name!r}: {job.review_reason}")
    if st == "failed":
        err = Path(job.job_review_path) / "stderr.txt"
        text = err.read_text() if err.is_file() else "(the owner has not shared the error log)"
        tail = _error_tail(text)
        raise JobFailed(f"{site.name}: job {name!r} failed at the owner. Its error:\n{tail}")
    if st in ("pending", "received"):
        raise Refused(f"{site.name}: job {name!r} is waiting for the owner's review: no result yet")
    if st != "done":
        raise Refused(f"{site.name}: job {name!r} is {st} but has not run yet: no result yet")
    with quiet():
        found = [Path(p) for p in job.output_paths if not Path(p).name.startswith("syft.")]
    if not found:
        raise Refused(f"{site.name}: job {name!r} is done, but the owner has not released its outputs")
    return found


def result(site: Hospital, name: str) -> dict:
    """The scientist reads an update job's ``result.json`` (:func:`load_result`); see :func:`result_files`."""
    files = {p.name: p for p in result_files(site, name)}
    if RESULT not in files:
        raise Refused(f"{site.name}: job {name!r} released {sorted(files)}, not {RESULT}")
    return load_result(files[RESULT])


def update_job_name(round: int) -> str:
    """The update job of round ``round``: ``"update-r<round>"``."""
    return f"update-r{validate.positive_int('round', round, minimum=0)}"


def fedavg_round(
    sites: Sequence[Hospital],
    spec: models.ModelSpec,
    params: list,
    *,
    round: int,
    epochs: int,
    batch_size: int | None,
    lr: float,
    seed: int,
    owner_review: Callable[[str, str], str | None] | None = None,
    workdir: str | os.PathLike | None = None,
) -> tuple[list, list[dict]]:
    """One round of FedAvg over hospitals, each local update an approved job.

    The scientist writes the round's job (:func:`write_update_job`, with
    ``seed = site_seed(seed, round, k)`` for hospital ``k``) and submits it to
    every hospital as ``update-r<round>``. Each owner reads it
    (:func:`review`) and approves or rejects it, runs what it approved
    (:func:`run_approved`), checks the outputs and log (:func:`release_check`
    with ``{"result.json"}``) and releases them or holds them. The scientist
    aggregates what came back with :func:`aggregate_remote` and applies
    :func:`fedlab.fedavg.server_update`. With every job approved this equals
    the same round computed locally (``tests/test_remote.py``).

    Parameters
    ----------
    owner_review
        The owners' decision: ``owner_review(site_name, code) -> None`` to approve,
        or a reason (str) to reject. A rejecting hospital sits the round out.
        ``None`` approves every job.
    workdir
        Where the job folders are written (default: a temporary folder).

    Returns
    -------
    (params, records)
        The new global parameters (unchanged if no hospital took part) and one
        record per hospital: ``{"site", "status", "n", "loss", "delta", "reason", "seconds"}``
        (``status``: ``"done"``, ``"rejected"``, ``"held"`` (the release check's
        reason) or ``"failed"`` (the job raised at the owner; ``reason`` ends with
        its error, :func:`owner_error`); ``n``, ``loss``, ``delta`` are ``None``
        unless done). A hospital whose job was not done sits the round out.

    """
    params = models.check_params(spec, params)
    validate.positive_int("seed", seed, minimum=0)
    name = update_job_name(round)
    if len(sites) == 0:
        raise ValueError("sites is empty: a round needs at least one hospital")
    tmp = tempfile.mkdtemp(prefix="fedlab-jobs-") if workdir is None else None
    base = Path(tmp or workdir)
    try:
        t0 = {}
        for k, site in enumerate(sites):  # the scientist submits to every hospital first
            t0[site.name] = time.perf_counter()
            folder = write_update_job(base / f"{name}-{site.name}", spec, params, epochs=epochs,
                                      batch_size=batch_size, lr=lr, seed=site_seed(seed, round, k))
            submit(site, folder, name=name)
        records, results = {}, []
        for site in sites:  # each owner reads the job and decides
            reason = None if owner_review is None else owner_review(site.name, review(site, name))
            records[site.name] = {"site": site.name, "status": "rejected", "n": None, "loss": None, "delta": None,
                                  "reason": reason}
            if reason is not None:
                reject(site, name, reason=reason)
            else:
                approve(site, name, reason="the vetted fedlab update")
        approved = [site for site in sites if records[site.name]["reason"] is None]
        if approved:
            run_approved(approved)
        for site in approved:  # each owner looks at what the job wrote before releasing it
            record = records[site.name]
            failed = owner_error(site, name)
            if failed is not None:  # nothing to release: the owner reports the job's own error
                record.update(status="failed", reason=f"the job failed at the owner. Its error:\n{failed}")
                continue
            held = release_check(*outputs(site, name), expected={RESULT})
            if held is None:
                release(site, name)
                res = result(site, name)
                results.append(res)
                record.update(status="done", n=res["n"], loss=res["loss"], delta=res["delta"])
            else:
                record.update(status="held", reason=held)
        records = [{**records[site.name], "seconds": time.perf_counter() - t0[site.name]} for site in sites]
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if not results:
        return params, records
    delta, _ = aggregate_remote(results)
    return fedavg.server_update(fedavg.ServerState(params, round), delta).params, records
