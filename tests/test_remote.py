"""Lesson 06's hospitals, for real: syft 0.10 / syft-rds in one process, jobs run offline.

One federation of three hospitals (an owner and the scientist each, paired
through syft's in-memory Drive stand-in, in a fresh temporary folder) is made
per module. The oracle test replays a FedAvg round over the hospitals - each
local update an approved job run by its owner - with :mod:`fedlab.fedavg`
locally on the same data and seeds.

The tests marked ``syft`` need syft 0.10 and the jobs' wheel folder that
``make install`` prepares; they take about a minute (each job is a process
that imports torch). ``test_lesson_06_flow_runs_with_no_network`` repeats a
job round trip inside a new network namespace (``unshare -n``, root): nothing
downloads at run time.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fedlab import data, engine, fedavg, models, remote

needs_syft = [
    pytest.mark.syft,
    pytest.mark.skipif(importlib.util.find_spec("syft_rds") is None, reason="syft-rds is not installed"),
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
    with remote.hospitals(["hospital-a", "hospital-b", "hospital-c"]) as sites:
        mocks = []
        for k, (site, (x, y)) in enumerate(zip(sites, hospitals)):
            mock = remote.pack(*remote.make_mock(x, y, rng=k))
            remote.publish(site, remote.pack(x, y), mock)
            mocks.append(mock)
        yield sites, mocks


def _script(tmp_path, name, body):
    p = tmp_path / f"{name}.py"
    p.write_text(textwrap.dedent(body))
    return p


@syft_test
def test_the_scientist_holds_only_the_mock(federation, hospitals):
    sites, mocks = federation
    site = sites[0]
    np.testing.assert_array_equal(np.load(remote.mock_file(site)), mocks[0])
    private = remote.pack(*hospitals[0]).tobytes()
    for p in site.folder.joinpath("scientist").rglob("*.npy"):
        assert private not in p.read_bytes(), f"{p} holds the private records"
    with remote.quiet():
        dataset = site.scientist.datasets.get_all()[0]
    with pytest.raises(FileNotFoundError):
        dataset.private_files  # noqa: B018 - the property raises on the scientist's side


@syft_test
def test_run_sh_names_the_course_interpreter_and_the_constant_is_restored(federation, tmp_path):
    from syft_job import client as job_client

    site = sites_b = federation[0][1]
    remote.submit(site, _script(tmp_path, "hello", "print('hi')\n"), name="hello")
    text = remote.review(site, "hello")
    assert f"uv venv --python {sys.executable}" in text and "--python 3.12" not in text
    assert job_client.RUN_SCRIPT_PYTHON_VERSION == "3.12"
    with pytest.raises(ValueError, match="already has a job named 'hello'"):
        remote.submit(sites_b, tmp_path / "hello.py", name="hello")
    with pytest.raises(ValueError, match="no such file or folder"):
        remote.submit(site, tmp_path / "nope.py", name="nope")


@syft_test
def test_pending_rejected_and_unreleased_jobs_show_nothing(federation, tmp_path):
    sites, _ = federation
    site = sites[1]
    leak = _script(
        tmp_path,
        "leak",
        """\
        import os, shutil, syft as sy
        os.makedirs("outputs", exist_ok=True)
        shutil.copy(sy.resolve_dataset_file_path("health"), "outputs/all_rows.npy")
        """,
    )
    remote.submit(site, leak, name="leak-rows")
    with pytest.raises(remote.Refused, match="waiting for the owner's review"):
        remote.result_files(site, "leak-rows")
    remote.reject(site, "leak-rows", reason="returns raw records")
    assert remote.status(site, "leak-rows") == "rejected"
    remote.run_approved(site)  # a rejected job never runs
    with pytest.raises(remote.Refused, match="rejected 'leak-rows': returns raw records"):
        remote.result_files(site, "leak-rows")
    with pytest.raises(ValueError, match="only a finished job"):
        remote.release(site, "leak-rows")
    assert not list(site.folder.rglob("all_rows.npy")), "a rejected job's output exists somewhere"
    with pytest.raises(ValueError, match="reason=''"):
        remote.reject(site, "leak-rows", reason="")


@syft_test
def test_outputs_stay_with_the_owner_until_released_and_a_print_is_held(federation, tmp_path):
    sites, _ = federation
    site = sites[1]
    chatty = _script(
        tmp_path,
        "chatty",
        """\
        import json, os, numpy as np, syft as sy
        xy = np.load(sy.resolve_dataset_file_path("health"))
        print("first patient:", xy[0].tolist())
        os.makedirs("outputs", exist_ok=True)
        json.dump({"n": len(xy)}, open("outputs/result.json", "w"))
        """,
    )
    remote.submit(site, chatty, name="chatty")
    remote.approve(site, "chatty")
    with pytest.raises(remote.Refused, match="approved but has not run yet"):
        remote.result_files(site, "chatty")
    remote.run_approved(site)
    assert remote.status(site, "chatty") == "done"
    with pytest.raises(remote.Refused, match="has not released"):
        remote.result_files(site, "chatty")
    files, log = remote.outputs(site, "chatty")
    assert set(files) == {"result.json"} and "first patient" in log
    held = remote.release_check(files, log, expected={"result.json"})
    assert held is not None and "a print is a disclosure" in held
    remote.release(site, "chatty")  # had the owner released it anyway, the print travels with it
    (out,) = remote.result_files(site, "chatty")
    assert json.loads(out.read_text())["n"] > 1000
    stdout = out.parent.parent / "stdout.txt"
    assert "first patient" in stdout.read_text()


@syft_test
def test_a_failing_job_shows_the_learner_its_error(federation, tmp_path):
    sites, _ = federation
    site = sites[2]
    remote.submit(site, _script(tmp_path, "bad", "import syft\nraise KeyError('no column bmi')\n"), name="bad")
    remote.approve(site, "bad")
    remote.run_approved(site)
    remote.release(site, "bad")
    with pytest.raises(remote.JobFailed, match=r"(?s)failed at the owner.*KeyError: 'no column bmi'") as err:
        remote.result(site, "bad")
    assert "==" not in str(err.value), "uv's install lines are not part of the error"


@syft_test
def test_a_dataset_folder_that_does_not_exist_is_a_value_error(federation, tmp_path):
    site = federation[0][2]
    (tmp_path / "mock").mkdir()
    (tmp_path / "mock" / "xy.npy").write_bytes(b"")
    with pytest.raises(ValueError, match=r"private_path='.*nowhere'.*no such folder"):
        remote.create_dataset(site, "other", mock_path=tmp_path / "mock", private_path=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="mock has shape"):
        remote.publish(site, np.zeros((3, 2), np.float32), np.zeros((2, 2), np.float32), dataset="other")


def _local_round(hospitals, params, *, round, seed, take=(0, 1, 2)):
    """The same round with lesson 02's functions, no syft."""
    outputs = [
        fedavg.client_update(SPEC, params, x, y, rng=remote.site_seed(seed, round, k), **SETTINGS)
        for k, (x, y) in enumerate(hospitals)
        if k in take
    ]
    return fedavg.server_update(fedavg.ServerState(params, round), fedavg.aggregate(outputs)).params


@syft_test
def test_fedavg_across_owners_equals_the_plain_in_process_loop(federation, hospitals):
    sites, _ = federation
    params = models.init_params(SPEC, rng=0)
    new, records = remote.fedavg_round(sites, SPEC, params, round=0, seed=3, **SETTINGS)
    assert [r["status"] for r in records] == ["done"] * 3
    assert remote.owner_error(sites[0], "update-r0") is None  # it ran cleanly
    assert [r["n"] for r in records] == [len(y) for _, y in hospitals]
    want = _local_round(hospitals, params, round=0, seed=3)
    for a, b in zip(new, want):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-7)


@syft_test
def test_a_rejecting_owner_sits_the_round_out(federation, hospitals):
    sites, _ = federation
    params = models.init_params(SPEC, rng=2)

    def owner_review(name, code):
        assert "remote.hospital_update(" in code and "uv venv --python" in code
        return "not this week" if name == "hospital-b" else None

    new, records = remote.fedavg_round(sites, SPEC, params, round=1, seed=4, owner_review=owner_review, **SETTINGS)
    assert [r["status"] for r in records] == ["done", "rejected", "done"]
    assert records[1]["reason"] == "not this week" and records[1]["delta"] is None
    with pytest.raises(remote.Refused, match="not this week"):
        remote.result(sites[1], "update-r1")
    want = _local_round(hospitals, params, round=1, seed=4, take=(0, 2))
    for a, b in zip(new, want):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-7)


@syft_test
def test_a_round_whose_job_fails_at_an_owner_reports_its_error(federation):
    """A failed update job is reported with its own error, not as a release check's "missing output"."""
    sites, _ = federation
    wrong = models.logreg(5, 2)  # the hospitals' records have 8 features: the job raises at the owner
    params = models.init_params(wrong, rng=0)
    new, records = remote.fedavg_round(sites[:1], wrong, params, round=9, seed=0, **SETTINGS)
    (record,) = records
    assert record["status"] == "failed" and record["delta"] is None
    assert "failed at the owner" in record["reason"]
    assert "ValueError: x has 8 features: the model takes in_features=5" in record["reason"]
    assert "missing output" not in record["reason"] and "==" not in record["reason"]
    assert remote.owner_error(sites[0], "update-r9") in record["reason"]
    for a, b in zip(new, params):  # nobody took part: the model is unchanged
        np.testing.assert_array_equal(a, b)


@syft_test
def test_job_env_is_offline_and_names_the_wheel_folder():
    env = remote.job_env()
    assert env["UV_OFFLINE"] == "1" and env["UV_NO_INDEX"] == "1" and env["UV_PYTHON_DOWNLOADS"] == "never"
    assert list(remote.job_paths()["wheels"].glob("syft-0.10.0-*.whl"))
    assert os.path.dirname(str(remote.uv_binary())) == env["PATH"].split(os.pathsep)[0]


_OFFLINE_FLOW = """
import numpy as np
from fedlab import models, remote
spec = models.logreg(3, 2)
g = np.random.default_rng(0)
x = g.normal(size=(30, 3)).astype(np.float32); y = (x[:, 0] > 0).astype(np.int64)
with remote.hospitals(["hospital-x"]) as sites:
    remote.publish(sites[0], remote.pack(x, y), remote.pack(*remote.make_mock(x, y, rng=0)))
    params, records = remote.fedavg_round(sites, spec, models.init_params(spec, rng=0), round=0, seed=0,
                                          epochs=1, batch_size=8, lr=0.1)
    print("STATUS", records[0]["status"], records[0]["n"])
"""


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


@syft_test
@pytest.mark.slow
def test_lesson_06_flow_runs_with_no_network():
    if not _can_unshare():
        if os.environ.get("CI"):
            pytest.fail("CI must run lesson 06's jobs in a network namespace: `unshare -n` (as root) is missing")
        pytest.skip("unshare -n is not available here (needs root)")
    res = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", _OFFLINE_FLOW], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert "STATUS done 30" in res.stdout
