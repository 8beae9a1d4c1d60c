"""Tests of the checked, offline data loaders (fedlab.data)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlab import data, health

REPO_DATASETS = Path(__file__).resolve().parent.parent / "datasets"


@pytest.fixture(autouse=True)
def _default_datasets_dir(monkeypatch):
    """Every test reads the repository's datasets/ unless it sets FEDLAB_DATASETS itself."""
    monkeypatch.delenv(data.ENV_VAR, raising=False)


@pytest.fixture
def copied_datasets(tmp_path, monkeypatch) -> Path:
    """A copy of datasets/ in a temporary folder, with FEDLAB_DATASETS pointing at it."""
    folder = tmp_path / "datasets"
    shutil.copytree(REPO_DATASETS, folder)
    monkeypatch.setenv(data.ENV_VAR, str(folder))
    return folder


# ----------------------------------------------------------------------------
# Files and checksums
# ----------------------------------------------------------------------------


def test_datasets_dir_is_the_repository_folder():
    assert data.DATASETS_DIR == REPO_DATASETS
    assert data.datasets_dir() == REPO_DATASETS


@pytest.mark.parametrize(
    "filename, sha256, size",
    [
        (data.DIGITS_FILE, data.DIGITS_SHA256, data.DIGITS_SIZE),
        (data.HEALTH_FILE, data.HEALTH_SHA256, data.HEALTH_SIZE),
    ],
)
def test_shipped_files_match_their_checksums_and_datasheets(filename, sha256, size):
    raw = (REPO_DATASETS / filename).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == sha256
    assert len(raw) == size
    assert len(raw) < 5_000_000
    sheet = (REPO_DATASETS / filename.replace(".csv", ".md")).read_text(encoding="utf-8")
    assert sha256 in sheet
    assert f"{size:,}" in sheet or str(size) in sheet


def test_verify_all_reports_every_dataset_ok():
    report = data.verify_all()
    assert [name for name, _, _ in report] == ["digits", "health"]
    assert all(ok for _, ok, _ in report), report


# ----------------------------------------------------------------------------
# Digits
# ----------------------------------------------------------------------------


def test_digits_shape_dtype_range():
    ds = data.load_digits()
    assert ds.name == "digits"
    assert ds.x.shape == (1797, 64) and ds.x.dtype == np.float32
    assert ds.y.shape == (1797,) and ds.y.dtype == np.int64
    assert ds.x.min() == 0.0 and ds.x.max() == 1.0
    assert set(np.unique(ds.y)) == set(range(10)) and ds.num_classes == 10
    assert len(ds.feature_names) == 64 and ds.feature_names[9] == "pixel_1_1"
    assert ds.user is None and ds.group is None and ds.day is None


def test_digits_equal_scikit_learn():
    load_digits = pytest.importorskip("sklearn.datasets").load_digits

    ours, theirs = data.load_digits(), load_digits()
    np.testing.assert_array_equal(ours.x * 16, theirs.data)
    np.testing.assert_array_equal(ours.y, theirs.target)
    assert list(ours.feature_names) == list(theirs.feature_names)


def test_digits_script_reproduces_the_file():
    import runpy

    pytest.importorskip("sklearn")
    script = runpy.run_path(str(REPO_DATASETS / "make_digits.py"))  # defines digits_csv, writes nothing
    assert script["digits_csv"]().encode("ascii") == (REPO_DATASETS / data.DIGITS_FILE).read_bytes()


# ----------------------------------------------------------------------------
# Health
# ----------------------------------------------------------------------------


def test_health_shape_dtype_and_users():
    ds = data.load_health()
    n = 54147
    assert ds.x.shape == (n, len(data.HEALTH_FEATURES)) and ds.x.dtype == np.float32
    assert ds.feature_names == data.HEALTH_FEATURES
    assert ds.y.dtype == np.int64 and set(np.unique(ds.y)) == {0, 1} and ds.num_classes == 2
    assert ds.user.dtype == np.int64 and np.unique(ds.user).size == 1200
    assert np.all(np.diff(ds.user) >= 0), "a user's rows stay together"
    same_user = np.diff(ds.user) == 0
    assert np.all(np.diff(ds.day)[same_user] == 1), "rows in day order"
    assert ds.group_names == ("low", "medium", "high") and set(np.unique(ds.group)) == {0, 1, 2}
    assert 0.2 <= ds.y.mean() <= 0.4
    assert np.all(np.isfinite(ds.x))
    # standardized features are roughly centred and scaled
    assert np.all(np.abs(ds.x.mean(axis=0)) < 0.6)
    assert np.all((ds.x.std(axis=0) > 0.5) & (ds.x.std(axis=0) < 1.5))


def test_health_equals_the_generator_value_for_value():
    raw = data.load_health(standardize=False)
    gen = health.generate()
    np.testing.assert_array_equal(raw.x[:, :6], gen.x.astype(np.float32))
    np.testing.assert_array_equal(raw.x[:, 6], gen.weekday >= 5)
    np.testing.assert_array_equal(raw.x[:, 7], gen.age_group)
    np.testing.assert_array_equal(raw.y, gen.y)
    np.testing.assert_array_equal(raw.user, gen.user)
    np.testing.assert_array_equal(raw.day, gen.day)
    np.testing.assert_array_equal(raw.group, gen.activity_group)


def test_health_standardization_uses_the_documented_constants():
    raw = data.load_health(standardize=False).x.astype(np.float64)
    std = data.load_health(standardize=True).x
    expected = (raw - np.asarray(data.HEALTH_CENTER)) / np.asarray(data.HEALTH_SCALE)
    np.testing.assert_allclose(std, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("standardize", ["yes", 1, None])
def test_health_bad_standardize(standardize):
    with pytest.raises(ValueError, match="standardize"):
        data.load_health(standardize=standardize)


# ----------------------------------------------------------------------------
# Caching, speed, nothing written
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("load", [data.load_digits, data.load_health])
def test_loading_parses_once_then_serves_the_cache(load, monkeypatch):
    data._CACHE.clear()
    calls = []
    for name in ("_parse_digits", "_parse_health"):
        real = getattr(data, name)
        monkeypatch.setattr(data, name, lambda *a, _real=real, **k: calls.append(1) or _real(*a, **k))
    first, again = load(), load()
    assert len(calls) == 1  # the second load is served from the cache (the checksum is still verified)
    np.testing.assert_array_equal(first.x, again.x)


@pytest.mark.parametrize("load", [data.load_digits, data.load_health])
def test_callers_cannot_corrupt_the_cache(load):
    ds = load()
    with pytest.raises(ValueError):
        ds.x[0, 0] = 99.0
    with pytest.raises(ValueError):
        ds.y[0] = 7
    with pytest.raises(AttributeError):
        ds.x = np.zeros((1, 1))  # frozen
    assert load().x[0, 0] != 99.0


def _snapshot(folder: Path) -> dict:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_nothing_is_written_into_datasets():
    before = _snapshot(REPO_DATASETS)
    data._CACHE.clear()
    data.load_digits()
    data.load_health()
    data.load_health(standardize=False)
    data.verify_all()
    data.split_by_time(data.load_health())
    assert _snapshot(REPO_DATASETS) == before


# ----------------------------------------------------------------------------
# Broken or missing files
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name, load", [("digits", data.load_digits), ("health", data.load_health)])
def test_flipped_byte_gives_a_clear_error(copied_datasets, name, load):
    path = copied_datasets / f"{name}.csv"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    actual = hashlib.sha256(bytes(raw)).hexdigest()
    expected = data.DIGITS_SHA256 if name == "digits" else data.HEALTH_SHA256
    with pytest.raises(ValueError) as err:
        load()
    message = str(err.value)
    assert str(path) in message and expected in message and actual in message
    assert f"git checkout -- datasets/{name}.csv" in message
    ok = dict((n, ok) for n, ok, _ in data.verify_all())
    assert ok == {"digits": name != "digits", "health": name != "health"}


def test_truncated_file_gives_a_clear_error(copied_datasets):
    path = copied_datasets / data.HEALTH_FILE
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="checksum mismatch.*1000 bytes"):
        data.load_health()


def test_missing_file_gives_a_clear_error(copied_datasets):
    (copied_datasets / data.DIGITS_FILE).unlink()
    with pytest.raises(FileNotFoundError) as err:
        data.load_digits()
    message = str(err.value)
    assert "digits.csv" in message and data.DIGITS_SHA256 in message and "git checkout" in message
    name, ok, message = data.verify_all()[0]
    assert name == "digits" and not ok and "missing" in message


def test_missing_folder_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="FEDLAB_DATASETS"):
        data.load_digits()
    assert [ok for _, ok, _ in data.verify_all()] == [False, False]


def test_env_var_redirects_loading(copied_datasets):
    assert data.datasets_dir() == copied_datasets
    assert len(data.load_digits()) == 1797


# ----------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------


def _toy(n: int, *, num_classes: int = 3, seed: int = 0) -> data.Dataset:
    """Rows whose single feature is their own index, so a split can be traced."""
    y = np.random.default_rng(seed).integers(0, num_classes, size=n)
    return data.Dataset(name="toy", x=np.arange(n)[:, None], y=y, feature_names=("row",), num_classes=num_classes)


def test_train_test_split_is_stratified_and_deterministic():
    ds = data.load_digits()
    train, test = data.train_test_split(ds, test_fraction=0.2, seed=0)
    assert len(train) + len(test) == 1797
    assert abs(len(test) - 0.2 * 1797) <= 10
    for c in range(10):
        share = np.mean(test.y == c) / np.mean(ds.y == c)
        assert 0.9 < share < 1.1
    again = data.train_test_split(ds, test_fraction=0.2, seed=0)[1]
    np.testing.assert_array_equal(test.x, again.x)
    other = data.train_test_split(ds, test_fraction=0.2, seed=1)[1]
    assert not np.array_equal(test.x, other.x)
    assert test.x.flags.writeable  # splits are fresh copies


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(5, 300),
    test_fraction=st.floats(0.1, 0.9),
    seed=st.integers(0, 2**31),
    stratify=st.booleans(),
)
def test_train_test_split_partitions_the_rows(n, test_fraction, seed, stratify):
    ds = _toy(n, seed=seed)
    try:
        train, test = data.train_test_split(ds, test_fraction=test_fraction, seed=seed, stratify=stratify)
    except ValueError as err:  # only when a part would be empty
        assert "non-empty" in str(err)
        return
    rows = np.concatenate([train.x[:, 0], test.x[:, 0]])
    np.testing.assert_array_equal(np.sort(rows), np.arange(n))
    assert np.all(np.diff(train.x[:, 0]) > 0) and np.all(np.diff(test.x[:, 0]) > 0)
    assert abs(len(test) - test_fraction * n) <= (3 if stratify else 1)


def test_split_by_time_puts_each_users_last_days_in_test():
    ds = data.load_health()
    train, test = data.split_by_time(ds, test_fraction=0.2)
    assert len(train) + len(test) == len(ds)
    assert 0.18 < len(test) / len(ds) < 0.23
    assert set(np.unique(test.user)) == set(np.unique(ds.user)) == set(np.unique(train.user))
    last_train = np.full(1200, -1)
    np.maximum.at(last_train, train.user, train.day)
    first_test = np.full(1200, 10**6)
    np.minimum.at(first_test, test.user, test.day)
    assert np.all(last_train < first_test)
    assert test.group_names == ds.group_names and test.feature_names == ds.feature_names


def test_split_by_time_small_users():
    user = np.array([0, 1, 1, 2, 2, 2, 2, 2])
    day = np.array([0, 1, 0, 0, 1, 2, 3, 4])  # user 1's rows out of day order
    ds = data.Dataset(
        name="toy",
        x=np.arange(8)[:, None],
        y=np.zeros(8, int),
        feature_names=("row",),
        num_classes=2,
        user=user,
        day=day,
    )
    train, test = data.split_by_time(ds, test_fraction=0.2)
    np.testing.assert_array_equal(test.x[:, 0], [1, 7])  # user 1's day 1, user 2's day 4
    np.testing.assert_array_equal(train.x[:, 0], [0, 2, 3, 4, 5, 6])


@pytest.mark.parametrize("test_fraction", [1.5, 0, 1.0, -0.2, float("nan"), "0.2"])
def test_bad_test_fraction(test_fraction):
    ds = _toy(20)
    with pytest.raises(ValueError, match="test_fraction"):
        data.train_test_split(ds, test_fraction=test_fraction, seed=0)
    with pytest.raises(ValueError, match="test_fraction"):
        data.split_by_time(data.load_health(), test_fraction=test_fraction)


def test_split_needs_a_seed_and_users():
    with pytest.raises(ValueError, match="seed"):
        data.train_test_split(_toy(20), seed=None)
    with pytest.raises(ValueError, match="user and day"):
        data.split_by_time(data.load_digits())


def test_dataset_checks_its_fields():
    with pytest.raises(ValueError, match="y has 3 rows"):
        data.Dataset(name="bad", x=np.zeros((4, 2)), y=np.zeros(3, int), feature_names=("a", "b"), num_classes=2)
    with pytest.raises(ValueError, match="feature_names"):
        data.Dataset(name="bad", x=np.zeros((4, 2)), y=np.zeros(4, int), feature_names=("a",), num_classes=2)
    with pytest.raises(ValueError, match="user has 2 rows"):
        data.Dataset(
            name="bad",
            x=np.zeros((4, 2)),
            y=np.zeros(4, int),
            feature_names=("a", "b"),
            num_classes=2,
            user=np.zeros(2, int),
        )
    with pytest.raises(ValueError, match="num_classes"):
        data.Dataset(name="bad", x=np.zeros((4, 2)), y=np.zeros(4, int), feature_names=("a", "b"), num_classes=0)


def test_subset_copies_rows():
    ds = data.load_health()
    part = data.subset(ds, ds.group == 0)
    assert np.all(part.group == 0) and len(part) == int(np.sum(ds.group == 0))
    part.x[0, 0] = 123.0
    assert data.load_health().x[0, 0] != 123.0
    with pytest.raises(ValueError, match="bool mask"):
        data.subset(ds, np.ones(3, dtype=bool))


def test_read_grid_checks_the_shipped_file_and_says_how_to_restore_it(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    kw = dict(sha256=hashlib.sha256(b"[1, 2]").hexdigest(), remake="python datasets/make_x.py", what="x grid")
    with pytest.raises(FileNotFoundError, match=r"x grid is missing.*python datasets/make_x\.py"):
        data.read_grid("x.json", **kw)
    (tmp_path / "x.json").write_bytes(b"[1, 2]")
    assert data.read_grid("x.json", **kw) == b"[1, 2]"
    (tmp_path / "x.json").write_bytes(b"[1, 3]")
    with pytest.raises(ValueError, match=r"checksum mismatch.*git checkout -- datasets/x\.json"):
        data.read_grid("x.json", **kw)
    assert data.read_grid("x.json", **kw, check_sha256=False) == b"[1, 3]"
    assert data.read_grid("x.json", tmp_path / "x.json", **kw) == b"[1, 3]"  # an explicit path is not the shipped file


# ---- held-out users (issue 16.3) --------------------------------------------------------------------


def test_held_out_health_is_seeded_disjoint_and_from_the_same_population():
    a, b = data.held_out_health(2000), data.held_out_health(2000)
    np.testing.assert_array_equal(a.x, b.x)
    shipped = data.load_health()
    assert not np.isin(a.user, shipped.user).any() and a.user.min() == data.HEALTH_NUM_USERS
    assert a.feature_names == shipped.feature_names and a.x.dtype == np.float32
    # the generator's other seed is the same population: base rate and feature means within sampling error
    assert abs(a.y.mean() - shipped.y.mean()) < 0.02
    np.testing.assert_allclose(a.x.mean(0), shipped.x.mean(0), atol=0.08)
    # the weekend column is 0/1 and the age group 0..2, in raw units
    raw = data.held_out_health(1200, seed=2025, standardize=False)
    assert raw.x[:, 6].max() == 1.0 and set(np.unique(raw.x[:, 7])) <= {0.0, 1.0, 2.0}


def test_held_out_health_matches_the_loaders_columns():
    gen = health.generate(num_users=1200, seed=2024)
    arrays = data._health_arrays(gen.x, gen.weekday, gen.age_group, gen.y, gen.user, gen.activity_group, gen.day, True)
    shipped = data.load_health()
    np.testing.assert_allclose(arrays["x"], shipped.x, atol=1e-6)
    for k in ("y", "user", "group", "day"):
        np.testing.assert_array_equal(arrays[k], getattr(shipped, k))


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(num_users=0), "num_users=0"),
        (dict(seed=2024), "seed=2024"),
        (dict(seed=1.5), "seed=1.5"),
        (dict(standardize="yes"), "standardize='yes'"),
    ],
)
def test_held_out_health_errors_name_the_argument(kw, match):
    with pytest.raises(ValueError, match=match):
        data.held_out_health(**kw)
