"""Lesson 06's datasites, for real: PySyft 0.9.5 in-process, offline.

One federation of three datasites is launched per module (each under a
unique name, so parallel or repeated runs never share state) and landed at
the end. The oracle test replays a FedAvg round over the datasites with
:mod:`fedlab.fedavg` locally on the same data and seeds.

The tests marked ``syft`` need syft 0.9.5 and take ~20 s (about half of it
importing syft); ``-m "not syft"`` leaves only the import-hygiene test.
"""

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from fedlab import data, engine, fedavg, models, remote

needs_syft = [
    pytest.mark.syft,
    pytest.mark.skipif(importlib.util.find_spec("syft") is None, reason="syft 0.9.5 is not installed"),
]

SPEC = models.logreg(8, 2)
SETTINGS = dict(epochs=1, batch_size=32, lr=0.1)


def syft_test(fn):
    for mark in needs_syft:
        fn = mark(fn)
    return fn


def test_importing_fedlab_never_imports_syft():
    code = (
        "import sys, fedlab, fedlab.fedavg, fedlab.engine, fedlab.data, fedlab.checks, fedlab.remote, "
        "fedlab.exercises.remote; from fedlab import checks; checks.lesson_exercises('06'); "
        "assert 'syft' not in sys.modules, 'syft was imported'"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


@pytest.fixture(scope="module")
def one_thread():
    with engine.torch_threads(1):
        yield


@pytest.fixture(scope="module")
def hospitals():
    """Users 0-89 of the health data, split over three hospitals by user id (about 1,300 rows each)."""
    ds = data.load_health()
    rows = ds.user < 90
    x, y, user = ds.x[rows], ds.y[rows], ds.user[rows]
    return [(np.array(x[user % 3 == k]), np.array(y[user % 3 == k])) for k in range(3)]


@pytest.fixture(scope="module")
def federation(hospitals, one_thread):
    with remote.datasites(["hospital-a", "hospital-b", "hospital-c"]) as sites:
        joined, mocks = [], []
        for k, (site, (x, y)) in enumerate(zip(sites, hospitals)):
            mock = remote.pack(*remote.make_mock(x, y, rng=k))
            remote.upload(site, remote.pack(x, y), mock)
            joined.append(remote.add_scientist(site))
            mocks.append(mock)
        yield joined, mocks


def _config(params, seed):
    return remote.update_config(SPEC, params, seed=seed, **SETTINGS)


@syft_test
def test_mock_visible_private_refused(federation):
    sites, mocks = federation
    xy = remote.asset(sites[0])
    np.testing.assert_array_equal(xy.mock, mocks[0])
    with remote.quiet() as printed:
        private = xy.data
    assert private is None
    assert any("no access to the private data" in m for m in remote.messages(printed))


@syft_test
def test_pending_and_denied_requests_are_refused_with_the_owners_reason(federation):
    sites, _ = federation
    site = sites[1]
    xy = remote.asset(site)

    def peek_rows(xy):
        return xy[:3]

    call = remote.request(site, peek_rows, xy=xy)
    with pytest.raises(remote.Refused, match="waiting for approval"):
        remote.run(site, call)
    remote.deny(site, "peek_rows", reason="returns raw records")
    with pytest.raises(remote.Refused, match="DENIED.*returns raw records"):
        remote.run(site, call)
    assert {"function": "peek_rows", "status": "denied", "runs": 0} in remote.request_history(site)


@syft_test
def test_an_approved_request_returns_the_update(federation, hospitals):
    sites, _ = federation
    site = sites[2]
    params = models.init_params(SPEC, rng=1)
    call = remote.request(
        site,
        remote.update_on_datasite,
        name="one_update",
        xy=remote.asset(site),
        config=remote.send(site, _config(params, 5)),
    )
    assert "remote.hospital_update(" in remote.review(site, "one_update")
    remote.approve(site, "one_update")
    got = remote.run(site, call)
    want = remote.hospital_update(remote.pack(*hospitals[2]), params, spec=SPEC, seed=5, **SETTINGS)
    assert set(got) == {"delta", "n", "loss"}
    assert got["n"] == len(hospitals[2][1])
    for g, w in zip(got["delta"], want["delta"]):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-7)
    assert got["loss"] == pytest.approx(want["loss"], abs=1e-7)


def _local_round(hospitals, params, *, round, seed, take=(0, 1, 2)):
    """The same round with lesson 02's functions, no syft."""
    outputs = [
        fedavg.client_update(SPEC, params, x, y, rng=remote.site_seed(seed, round, k), **SETTINGS)
        for k, (x, y) in enumerate(hospitals)
        if k in take
    ]
    return fedavg.server_update(fedavg.ServerState(params, round), fedavg.aggregate(outputs)).params


@syft_test
def test_fedavg_round_over_three_datasites_matches_the_local_round(federation, hospitals):
    sites, _ = federation
    params = local = models.init_params(SPEC, rng=0)
    for r in (0, 1):
        params, records = remote.fedavg_round(sites, SPEC, params, round=r, seed=7, **SETTINGS)
        local = _local_round(hospitals, local, round=r, seed=7)
        assert [q["status"] for q in records] == ["approved"] * 3
        assert [q["n"] for q in records] == [len(y) for _, y in hospitals]
        for a, b in zip(params, local):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert not all(np.allclose(a, b) for a, b in zip(params, models.init_params(SPEC, rng=0)))


@syft_test
def test_a_denying_owner_sits_the_round_out(federation, hospitals):
    sites, _ = federation
    params = models.init_params(SPEC, rng=2)

    def owner_review(site_name, code):
        return "not this week" if site_name == "hospital-b" else None

    new, records = remote.fedavg_round(sites, SPEC, params, round=10, seed=3, owner_review=owner_review, **SETTINGS)
    assert [q["status"] for q in records] == ["approved", "denied", "approved"]
    for a, b in zip(new, _local_round(hospitals, params, round=10, seed=3, take=(0, 2))):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    with pytest.raises(remote.Refused, match="not this week"):
        remote.run(sites[1], records[1]["call"])


@syft_test
def test_syft_095_does_not_enforce_single_use(federation):
    """Pins a measured limitation that lesson 06 teaches; if this fails, syft changed: update the lesson."""
    sites, _ = federation
    site = sites[0]
    xy = remote.asset(site)

    def poor_sleep_rate(xy):
        return float(xy[:, -1].mean())

    call = remote.request(site, poor_sleep_rate, xy=xy)
    remote.approve(site, "poor_sleep_rate")
    results = [remote.run(site, call) for _ in range(3)]
    assert len(set(results)) == 1
    runs = {h["function"]: h["runs"] for h in remote.request_history(site)}
    assert runs["poor_sleep_rate"] == 3, "syft now stops a second run: revise lesson 06, section 6"
    assert remote.owner_guard(remote.request_history(site))["poor_sleep_rate"] == "alert"
    remote.close(site, "poor_sleep_rate", reason="ran 3 times")
    with pytest.raises(remote.Refused, match="ran 3 times"):
        remote.run(site, call)


@syft_test
def test_the_owner_guard_closes_each_update_after_its_run(federation):
    sites, _ = federation
    params = models.init_params(SPEC, rng=4)
    _, records = remote.fedavg_round(sites, SPEC, params, round=20, seed=1, guard=remote.owner_guard, **SETTINGS)
    for site, q in zip(sites, records):
        with pytest.raises(remote.Refused, match="owner's guard"):
            remote.run(site, q["call"])
        history = {h["function"]: h for h in remote.request_history(site)}
        assert history["fedavg_update_r20"] == {"function": "fedavg_update_r20", "status": "denied", "runs": 1}


@syft_test
def test_names_are_unique_and_land_removes_the_state(one_thread):
    first, second = remote.launch("twin"), remote.launch("twin")
    try:
        assert first.server_name != second.server_name
        folders = [s.server.python_server.get_temp_dir() for s in (first, second)]
        assert folders[0] != folders[1] and all(f.is_dir() for f in folders)
    finally:
        remote.land([first, second])
    assert not any(f.exists() for f in folders)
    assert first.server_name not in remote._RUNNING and second.server_name not in remote._RUNNING
    remote.land(first)  # landing twice is harmless
