"""Offline data loaders that check what they load.

The lessons use two small datasets shipped in the repository's ``datasets/``
folder, each with a datasheet next to it:

* ``digits.csv``: the UCI 8x8 handwritten digits (1797 images, 10 classes),
  exported from scikit-learn's bundled copy (``datasets/digits.md``).
* ``health.csv``: the synthetic wearable-health data of the course story, made
  by :mod:`fedlab.health` (``datasets/health.md``).

Every load reads the file, checks its sha256 against the constant below and
refuses a file that differs, so a corrupted or half-copied file fails loudly
instead of quietly changing a lesson's numbers. Nothing here touches the
network, and only :func:`save_digits_file` writes a file (a participant's
own digits, lesson 11; :func:`load_digits_file` reads them back, checked).
Parsed arrays are cached in-process and handed out read-only, so no caller
can change what the next caller gets; the split functions return fresh copies.

The folder is :data:`DATASETS_DIR` unless the environment variable
``FEDLAB_DATASETS`` names another one.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedlab import health, seeding, validate

DATASETS_DIR: Path = Path(__file__).resolve().parent.parent / "datasets"
"""The repository's ``datasets/`` folder (overridden by ``$FEDLAB_DATASETS``)."""

ENV_VAR = "FEDLAB_DATASETS"

DIGITS_FILE = "digits.csv"
DIGITS_SHA256 = "7a93e51f73dadeb4429b4fc0718b334d12864332b906bdf44f9da7599a7e0e01"
DIGITS_SIZE = 265_358

DIGITS_FEATURES, DIGITS_CLASSES = 64, 10
"""An 8x8 digit is 64 features in [0, 1]; labels are 0..9."""

HEALTH_FILE = "health.csv"
HEALTH_SHA256 = "57ed17eb11745b7997774a15c3210602eb66f44393cc481ea2d2d99c36d2bda3"
HEALTH_SIZE = 2_394_044

HEALTH_FEATURES: tuple[str, ...] = (*health.FEATURES, "weekend", "age_group")
"""Columns of ``load_health().x``: the daily measurements, then ``weekend``
(1 on Saturday and Sunday) and ``age_group`` (0: 18-34, 1: 35-54, 2: 55+)."""

HEALTH_CENTER: tuple[float, ...] = (65.0, 50.0, 7.0, 0.88, 8000.0, 40.0, 0.5, 1.0)
HEALTH_SCALE: tuple[float, ...] = (8.0, 25.0, 1.0, 0.05, 5000.0, 40.0, 0.5, 1.0)
"""``load_health(standardize=True)`` returns ``(raw - HEALTH_CENTER) / HEALTH_SCALE``.

Fixed reference values for adults (resting heart rate 65 +- 8 bpm, HRV 50 +- 25
ms, sleep 7 +- 1 h, efficiency 0.88 +- 0.05, 8000 +- 5000 steps, 40 +- 40 active
minutes; weekend and age group mapped to about -1..1). They are *not* computed
from the data, so in a federation no client has to share statistics to
standardize the same way. The result has roughly mean 0 and standard deviation
1 on the shipped file.
"""

_FILES = {
    "digits": (DIGITS_FILE, DIGITS_SHA256, DIGITS_SIZE, "python datasets/make_digits.py"),
    "health": (HEALTH_FILE, HEALTH_SHA256, HEALTH_SIZE, "python -m fedlab.health --out datasets/health.csv"),
}


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A labelled dataset: ``n`` rows of ``d`` features.

    Attributes
    ----------
    name
        Short name, e.g. ``"digits"``.
    x
        Features, ``[n, d]`` float32.
    y
        Class labels, ``[n]`` int64 in ``0 .. num_classes - 1``.
    feature_names
        ``d`` names, one per column of ``x``.
    num_classes
        Number of classes.
    user
        User (device) id of each row, ``[n]`` int64, or ``None`` when the data
        has no natural owner (digits).
    group
        A per-row group index, ``[n]`` int64, e.g. the activity group of the
        row's user, or ``None``.
    group_names
        Names of the group indices (``group_names[group[i]]``), or ``()``.
    day
        Day index of each row within its user, ``[n]`` int64, or ``None``.

    Arrays from the loaders are read-only; use :func:`subset` (or ``.copy()``)
    to get arrays you may change.

    """

    name: str
    x: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    num_classes: int
    user: np.ndarray | None = None
    group: np.ndarray | None = None
    group_names: tuple[str, ...] = ()
    day: np.ndarray | None = None

    def __post_init__(self) -> None:
        x = validate.array("x", self.x, ndim=2)
        y = validate.array("y", self.y, ndim=1, dtype_kind="iub")
        object.__setattr__(self, "x", np.asarray(x, dtype=np.float32))
        object.__setattr__(self, "y", np.asarray(y, dtype=np.int64))
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        object.__setattr__(self, "group_names", tuple(self.group_names))
        n, d = self.x.shape
        if self.y.shape[0] != n:
            raise ValueError(f"y has {self.y.shape[0]} rows: must match x's {n} rows")
        if len(self.feature_names) != d:
            raise ValueError(f"feature_names has {len(self.feature_names)} names: must match x's {d} columns")
        num_classes = validate.positive_int("num_classes", self.num_classes)
        object.__setattr__(self, "num_classes", num_classes)
        for field in ("user", "group", "day"):
            value = getattr(self, field)
            if value is None:
                continue
            arr = np.asarray(validate.array(field, value, ndim=1, dtype_kind="iu"), dtype=np.int64)
            if arr.shape[0] != n:
                raise ValueError(f"{field} has {arr.shape[0]} rows: must match x's {n} rows")
            object.__setattr__(self, field, arr)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_features(self) -> int:
        return int(self.x.shape[1])

    def __repr__(self) -> str:
        users = "None" if self.user is None else str(np.unique(self.user).size)
        return (
            f"Dataset(name={self.name!r}, rows={len(self)}, features={self.num_features}, "
            f"num_classes={self.num_classes}, users={users})"
        )


# ----------------------------------------------------------------------------
# Finding and checking files
# ----------------------------------------------------------------------------


def datasets_dir() -> Path:
    """The folder the loaders read: ``$FEDLAB_DATASETS`` if set, else :data:`DATASETS_DIR`.

    Raises
    ------
    FileNotFoundError
        If that folder does not exist, saying where it looked and how to fix it.

    """
    override = os.environ.get(ENV_VAR)
    if override:
        folder = Path(override).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{ENV_VAR}={override!r}: no such folder. Point it at a folder holding "
                f"{DIGITS_FILE} and {HEALTH_FILE} (the repository's datasets/), or unset it."
            )
        return folder
    if not DATASETS_DIR.is_dir():
        raise FileNotFoundError(
            f"datasets folder not found at {DATASETS_DIR}. fedlab reads its data from the "
            f"repository's datasets/ folder: work from a clone of the repository (an install "
            f"without the repository has no data), or set {ENV_VAR} to a folder holding "
            f"{DIGITS_FILE} and {HEALTH_FILE}."
        )
    return DATASETS_DIR


def _restore_hint(name: str) -> str:
    filename, _, _, remake = _FILES[name]
    return f"restore it with `git checkout -- datasets/{filename}` (or regenerate: `{remake}`)"


def _read_verified(name: str) -> tuple[Path, bytes]:
    """Read a dataset file and check its sha256; return ``(path, contents)``."""
    filename, expected, expected_size, _ = _FILES[name]
    path = datasets_dir() / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file missing (expected sha256 {expected}); {_restore_hint(name)}")
    raw = path.read_bytes()
    actual = hashlib.sha256(raw).hexdigest()
    if actual != expected:
        raise ValueError(
            f"{path}: checksum mismatch, the file is corrupted, truncated or edited "
            f"({len(raw)} bytes, expected {expected_size}).\n"
            f"  expected sha256 {expected}\n"
            f"  actual   sha256 {actual}\n"
            f"Do not edit shipped data; {_restore_hint(name)}"
        )
    return path, raw


GRID_REPRODUCE_ATOL = 0.01
"""How closely a shipped grid's accuracy and membership AUC reproduce on another machine (absolute).

The grids are made by float32 training (the batched engine) and float32 matrix products are not
bit-identical across CPUs: the BLAS and oneDNN kernels are chosen by the processor's instruction set
and sum in different orders. Accuracy and AUC count examples on either side of a threshold, so a
change of ~1e-7 in the weights flips a few of ~1,600 test digits: on a fresh clone of this machine
kind lesson 08's quickest frontier cell gave 0.2054 / 0.4058 where the shipped grid (made on another
machine) holds 0.2085 / 0.4064, 5 digits apart. Runs on one machine are exactly repeatable (same seeds,
one thread); across machines a shipped figure holds to 0.01, so the lessons and widgets read grid
figures to two decimals of meaning (the third is machine noise) and the reproduction tests use this
tolerance. Integer figures (bytes, refused rounds) reproduce exactly.
"""


def read_grid(filename: str, path=None, *, sha256: str, remake: str, what: str, check_sha256: bool = True) -> bytes:
    """The bytes of a shipped precomputed grid (``datasets/<filename>``, or ``path``), checksum-checked.

    Used by the widgets that read a grid of precomputed runs (lesson 08's
    frontier, lesson 10's planner). ``remake`` is the command that regenerates
    the file, ``what`` names it in messages. The checksum is checked only for
    the shipped file (``path=None``) and ``check_sha256=True``.

    Raises
    ------
    FileNotFoundError
        If the file is missing (with the command that regenerates it).
    ValueError
        If the shipped file does not match ``sha256``.

    """
    p = Path(path) if path is not None else datasets_dir() / filename
    if not p.is_file():
        raise FileNotFoundError(f"{p}: the {what} is missing; restore it with git or regenerate: `{remake}`")
    raw = p.read_bytes()
    if check_sha256 and path is None:
        actual = hashlib.sha256(raw).hexdigest()
        if actual != sha256:
            raise ValueError(
                f"{p}: checksum mismatch (sha256 {actual}, expected {sha256}). Do not edit shipped "
                f"data; restore it with `git checkout -- datasets/{filename}` (or regenerate: `{remake}`, "
                "then update the module's GRID_SHA256 and the datasheet)"
            )
    return raw


def verify_all() -> list[tuple[str, bool, str]]:
    """Check every shipped dataset; never raises.

    Returns
    -------
    list of (name, ok, message)
        One entry per dataset (``"digits"``, ``"health"``): whether its file
        exists and matches its checksum, and a message for people (the path
        when fine, the problem and the fix when not).

    """
    report = []
    for name in _FILES:
        try:
            path, raw = _read_verified(name)
        except (FileNotFoundError, ValueError) as err:
            report.append((name, False, str(err)))
        else:
            report.append((name, True, f"{path}: {len(raw)} bytes, sha256 ok"))
    return report


def _read_only(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


# ----------------------------------------------------------------------------
# Loaders
# ----------------------------------------------------------------------------


# Parsed arrays, keyed by (dataset, sha256 of the verified file, options). Only
# files that matched their checksum are parsed, so the cache holds at most a few
# entries; the arrays in it are read-only.
_CACHE: dict[tuple, object] = {}


def _cached(key: tuple, parse):
    if key not in _CACHE:
        _CACHE[key] = parse()
    return _CACHE[key]


def _parse_digits(raw: bytes) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    text = raw.decode("ascii")
    header = text.split("\n", 1)[0].split(",")
    table = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1, dtype=np.int64)
    x = _read_only((table[:, :-1] / 16.0).astype(np.float32))
    y = _read_only(table[:, -1].copy())
    return x, y, tuple(header[:-1])


def load_digits() -> Dataset:
    """The UCI 8x8 handwritten digits, checked against :data:`DIGITS_SHA256`.

    Returns
    -------
    Dataset
        ``x`` of shape ``[1797, 64]`` (pixel intensity / 16, in [0, 1], row-major
        8x8 image), ``y`` of shape ``[1797]`` in 0..9, no users.

    Raises
    ------
    FileNotFoundError
        If the datasets folder or ``digits.csv`` is missing.
    ValueError
        If ``digits.csv`` does not match its checksum.

    """
    _, raw = _read_verified("digits")
    x, y, names = _cached(("digits", DIGITS_SHA256), lambda: _parse_digits(raw))
    return Dataset(name="digits", x=x, y=y, feature_names=names, num_classes=10)


# ---- a participant's own digits (the .npz a workshop node reads; the digit pad writes it) ------------


def check_digits_xy(x, y, *, where: str = "data") -> tuple[np.ndarray, np.ndarray]:
    """``x`` ``[n, 64]`` finite floats and ``y`` ``[n]`` ints in 0..9, n >= 1; returns float32 / int64."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or x.shape[1] != DIGITS_FEATURES or x.dtype.kind not in "fiu":
        raise ValueError(f"{where}: x has shape {x.shape} and dtype {x.dtype}: expected [n, {DIGITS_FEATURES}] floats")
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError(f"{where}: y has shape {y.shape} and dtype {y.dtype}: expected [n] int labels")
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"{where}: x has {x.shape[0]} rows and y {y.shape[0]}: expected the same n >= 1")
    if y.min() < 0 or y.max() >= DIGITS_CLASSES:
        raise ValueError(f"{where}: y has labels in [{y.min()}, {y.max()}]: expected 0..{DIGITS_CLASSES - 1}")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{where}: x has NaN or infinite values: expected finite numbers")
    return x, y.astype(np.int64)


def load_digits_file(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A participant's own digits (lesson 11): an ``.npz`` with ``x`` ``[n, 64]`` and ``y`` ``[n]``."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"data-file={str(path)!r}: no such file (an .npz with arrays x [n, 64] and y [n])")
    try:
        z = np.load(p, allow_pickle=False)
        files = list(z.files) if isinstance(z, np.lib.npyio.NpzFile) else None
        arrays = {k: z[k] for k in ("x", "y") if files is not None and k in files}
        if files is not None:
            z.close()
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"data-file={str(path)!r}: not a readable .npz file ({err})") from None
    if files is None:
        raise ValueError(f"data-file={str(path)!r}: holds one array, not an .npz with arrays x and y")
    missing = sorted({"x", "y"} - set(files))
    if missing:
        raise ValueError(f"data-file={str(path)!r} has arrays {sorted(files)}: missing {missing}")
    x, y = arrays["x"], arrays["y"]
    return check_digits_xy(x, y, where=f"data-file={str(path)!r}")


def save_digits_file(path: str | os.PathLike, x, y) -> Path:
    """Write ``x`` (float32 ``[n, 64]``) and ``y`` (int64 ``[n]``) as the ``.npz`` a ``data-file`` node reads."""
    x, y = check_digits_xy(x, y, where="save_digits_file")
    p = Path(path)
    with open(p, "wb") as f:  # a file object, so numpy does not append ".npz" to the name
        np.savez(f, x=x, y=y)
    return p


def _health_arrays(features, weekday, age_group, y, user, group, day, standardize: bool) -> dict[str, np.ndarray]:
    """The arrays of a health :class:`Dataset` from the generator's columns (``features``: ``[n, 6]`` raw)."""
    weekend = (np.asarray(weekday) >= 5).astype(np.float64)
    x = np.column_stack([np.asarray(features, dtype=np.float64), weekend, np.asarray(age_group, dtype=np.float64)])
    if standardize:
        x = (x - np.asarray(HEALTH_CENTER)) / np.asarray(HEALTH_SCALE)
    out = {"x": x.astype(np.float32), "y": y, "user": user, "group": group, "day": day}
    out.update({k: np.asarray(out[k]).astype(np.int64) for k in ("y", "user", "group", "day")})
    return {k: _read_only(v) for k, v in out.items()}


def _parse_health(raw: bytes, standardize: bool) -> dict[str, np.ndarray]:
    table = np.loadtxt(io.StringIO(raw.decode("ascii")), delimiter=",", skiprows=1, dtype=np.float64)
    col = {name: table[:, i] for i, name in enumerate(health.COLUMNS)}
    features = np.column_stack([col[f] for f in health.FEATURES])
    return _health_arrays(features, col["weekday"], col["age_group"], col[health.TARGET], col["user"],
                          col["activity_group"], col["day"], standardize)  # fmt: skip


def load_health(*, standardize: bool = True) -> Dataset:
    """The synthetic wearable-health data, checked against :data:`HEALTH_SHA256`.

    Parameters
    ----------
    standardize
        If true (default), features are ``(raw - HEALTH_CENTER) / HEALTH_SCALE``
        with the fixed reference constants of this module; if false, raw units
        (see ``datasets/health.md``).

    Returns
    -------
    Dataset
        ``x`` of shape ``[54147, 8]`` with columns :data:`HEALTH_FEATURES`;
        ``y`` = ``poor_sleep_next_night`` in {0, 1}; ``user`` in 0..1199 with a
        user's rows together and in day order; ``day``; ``group`` = activity
        group (``group_names`` low, medium, high).

    Raises
    ------
    FileNotFoundError
        If the datasets folder or ``health.csv`` is missing.
    ValueError
        If ``health.csv`` does not match its checksum, or ``standardize`` is not a bool.

    """
    if not isinstance(standardize, (bool, np.bool_)):
        raise ValueError(f"standardize={standardize!r}: must be True or False")
    _, raw = _read_verified("health")
    standardize = bool(standardize)
    arrays = _cached(("health", HEALTH_SHA256, standardize), lambda: _parse_health(raw, standardize))
    return Dataset(
        name="health",
        feature_names=HEALTH_FEATURES,
        num_classes=2,
        group_names=health.ACTIVITY_GROUPS,
        **arrays,
    )


# ----------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------


HEALTH_NUM_USERS = 1200
"""Users in the shipped ``health.csv`` (ids ``0 .. 1199``)."""

HELD_OUT_SEED = 2025
"""The generator seed of :func:`held_out_health` (the shipped file uses 2024)."""


def held_out_health(num_users: int = 10_000, *, seed: int = HELD_OUT_SEED, standardize: bool = True) -> Dataset:
    """Fresh users of the health app's population who are in no training set: whole-user non-members.

    A user-level membership test (lesson 10, issue 16.3) needs non-members who are *other people* from the same
    population, not the members' own later days. ``health.csv`` holds 1,200 users, and a federation trains on all
    of them, so the non-members are drawn here from the same generative model (:func:`fedlab.health.generate`)
    with another seed: every user is an independent draw of that model, so these users and the shipped ones are
    one population, and none of them is in ``health.csv``. Their ids start at :data:`HEALTH_NUM_USERS` (1200),
    so they never collide with a shipped user's id. Nothing is read from or written to disk; 10,000 users (about
    465,000 days) take about 2 s.

    Parameters
    ----------
    num_users
        How many held-out users (positive int). 10,000 makes a false-positive rate of 0.1 % measurable
        (10 users), as Carlini et al. (2022) ask.
    seed
        The generator's int seed; must not be the shipped file's 2024 (those are the members).
    standardize
        As in :func:`load_health`: the fixed :data:`HEALTH_CENTER` / :data:`HEALTH_SCALE` if true, raw units if false.

    Returns
    -------
    Dataset
        As :func:`load_health`: columns :data:`HEALTH_FEATURES`, ``user`` in
        ``1200 .. 1200 + num_users - 1``, ``day``, ``group``; a user's rows together and in day order.

    Raises
    ------
    ValueError
        If ``num_users`` is not a positive int, ``seed`` is not an int or is 2024, or ``standardize`` is not a bool.

    """
    num_users = validate.positive_int("num_users", num_users)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed={seed!r}: must be an int (the generator's seed)")
    if int(seed) == 2024:
        raise ValueError("seed=2024 is the shipped health.csv's seed: those users are the members; use another seed")
    if not isinstance(standardize, (bool, np.bool_)):
        raise ValueError(f"standardize={standardize!r}: must be True or False")
    gen = health.generate(num_users=num_users, seed=int(seed))
    arrays = _health_arrays(gen.x, gen.weekday, gen.age_group, gen.y, gen.user + HEALTH_NUM_USERS,
                            gen.activity_group, gen.day, bool(standardize))  # fmt: skip
    return Dataset(
        name="health-held-out",
        feature_names=HEALTH_FEATURES,
        num_classes=2,
        group_names=health.ACTIVITY_GROUPS,
        **arrays,
    )


def subset(ds: Dataset, index: np.ndarray) -> Dataset:
    """The rows ``index`` of ``ds`` (int indices or a boolean mask), as fresh writable copies.

    Parameters
    ----------
    ds
        Any :class:`Dataset`.
    index
        ``[k]`` int indices into ``0 .. len(ds) - 1``, or an ``[len(ds)]`` bool mask.

    """
    index = validate.array("index", index, ndim=1, dtype_kind="iub")
    if index.dtype.kind == "b" and index.shape[0] != len(ds):
        raise ValueError(f"index is a bool mask of length {index.shape[0]}: must have length {len(ds)}")

    def take(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.array(a[index])

    return Dataset(
        name=ds.name,
        x=take(ds.x),
        y=take(ds.y),
        feature_names=ds.feature_names,
        num_classes=ds.num_classes,
        user=take(ds.user),
        group=take(ds.group),
        group_names=ds.group_names,
        day=take(ds.day),
    )


def _check_split_fraction(test_fraction) -> float:
    try:
        value = validate.fraction("test_fraction", test_fraction)
    except ValueError:
        value = 1.0
    if value >= 1.0:
        raise ValueError(f"test_fraction={test_fraction!r}: must be a number in (0, 1), e.g. 0.2")
    return value


def _round_half_up(v: np.ndarray) -> np.ndarray:
    return np.floor(v + 0.5).astype(np.int64)


def train_test_split(
    ds: Dataset, *, test_fraction: float = 0.2, seed: int | np.random.Generator, stratify: bool = True
) -> tuple[Dataset, Dataset]:
    """Split rows at random into (train, test), stratified by label by default.

    With ``stratify``, each class ``c`` with ``n_c`` rows puts
    ``round(test_fraction * n_c)`` random rows into test, so both parts keep the
    class proportions; otherwise ``round(test_fraction * n)`` rows overall. Rows
    keep their original order within each part (so a user's rows stay together).

    Parameters
    ----------
    ds
        The dataset, ``n`` rows.
    test_fraction
        Share of rows for the test part, in (0, 1).
    seed
        An int seed or ``numpy.random.Generator``; required.
    stratify
        Whether to keep class proportions.

    Returns
    -------
    (Dataset, Dataset)
        Train and test, disjoint, together all ``n`` rows.

    Raises
    ------
    ValueError
        If ``test_fraction`` is outside (0, 1), ``seed`` is not a seed, or a part
        would be empty.

    """
    frac = _check_split_fraction(test_fraction)
    gen = seeding.as_generator(seed, name="seed")
    n = len(ds)
    is_test = np.zeros(n, dtype=bool)
    strata = [np.flatnonzero(ds.y == c) for c in np.unique(ds.y)] if stratify else [np.arange(n)]
    for rows in strata:
        k = int(_round_half_up(np.asarray(frac * rows.size)))
        is_test[gen.permutation(rows)[:k]] = True
    num_test = int(is_test.sum())
    if num_test == 0 or num_test == n:
        raise ValueError(
            f"test_fraction={test_fraction!r} on {n} rows gives {num_test} test rows: "
            "both parts must be non-empty (use a larger dataset or another fraction)"
        )
    return subset(ds, ~is_test), subset(ds, is_test)


def split_by_time(ds: Dataset, *, test_fraction: float = 0.2) -> tuple[Dataset, Dataset]:
    """Per user, put the last ``test_fraction`` of their days in test (no randomness).

    A user with ``n_u`` rows gives ``clip(round(test_fraction * n_u), 1, n_u - 1)``
    of their latest days to test and keeps the rest for training, so every user
    appears in both parts (a user with a single row stays in train only). This
    is how a deployed app is evaluated: learn from the past, predict the future.

    Parameters
    ----------
    ds
        A dataset with ``user`` and ``day`` (e.g. :func:`load_health`).
    test_fraction
        Share of each user's days for the test part, in (0, 1).

    Returns
    -------
    (Dataset, Dataset)
        Train and test, disjoint, together all rows, each in the original row order.

    Raises
    ------
    ValueError
        If ``test_fraction`` is outside (0, 1) or ``ds`` has no ``user`` or ``day``.

    """
    frac = _check_split_fraction(test_fraction)
    if ds.user is None or ds.day is None:
        raise ValueError(f"ds={ds!r}: split_by_time needs per-row user and day (e.g. load_health())")
    order = np.lexsort((ds.day, ds.user))
    user_sorted = ds.user[order]
    _, first, counts = np.unique(user_sorted, return_index=True, return_counts=True)
    position = np.arange(len(ds)) - np.repeat(first, counts)
    num_test = np.minimum(np.maximum(_round_half_up(frac * counts), 1), counts - 1)
    is_test = np.zeros(len(ds), dtype=bool)
    is_test[order] = position >= np.repeat(counts - num_test, counts)
    return subset(ds, ~is_test), subset(ds, is_test)
