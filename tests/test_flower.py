"""The Flower app deployed on loopback: same numbers as the simulation, clean shutdown, data files, dropouts.

Needs flwr, which the course environment has (``make test`` runs these with
the rest); in a Python without it these tests FAIL (they never skip).
Each test starts its own SuperLink and SuperNodes on 127.0.0.1 (free ports);
one federation at a time (``--dist loadfile`` keeps this module on one worker).
No timing asserts: pytest-timeout only guards against hangs.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from fedlab import fedavg, seeding
from fedlab.flower import APP_DIR, core, local

pytestmark = [pytest.mark.flower, pytest.mark.timeout(300)]


@pytest.fixture(scope="module", autouse=True)
def _flower_installed():
    try:
        import flwr  # noqa: F401
    except ImportError:
        pytest.fail("flwr is not installed in this Python: run these tests in the course environment (make test)")
    local.flower_bin()  # fails with a message saying how to get the executables


def _alive(pids):
    return [p for p in pids if local.alive(p)]


def _wait_dead(pids, seconds=10.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end and _alive(pids):
        time.sleep(0.1)
    return _alive(pids)


def _load(path):
    with np.load(path) as z:
        return core.record_to_params({k: z[k] for k in z.files})


def test_deployed_rounds_equal_the_simulation_and_close_leaves_nothing(tmp_path):
    run = {
        "num-server-rounds": 2,
        "min-nodes": 3,
        "round-timeout": 120.0,
        "seed": 11,
        "model": "mlp",
        "local-epochs": 1,
        "batch-size": 16,
        "lr": 0.3,
        "output-file": str(tmp_path / "final.npz"),
    }
    seen = set()
    with local.Federation(num_nodes=3, workdir=tmp_path / "fed") as fed:
        assert 0 < fed.timings["superlink_healthy"] <= fed.startup_seconds
        result = fed.run(APP_DIR, run, on_event=lambda kind, _: seen.update(fed.pids()), timeout=240)
        seen.update(fed.pids())
        log = fed.log("run1")
    assert _wait_dead(seen) == [], "processes left after the with block"
    assert local.processes_with_home(tmp_path / "fed" / "flwr-home") == []
    assert fed.closed and fed.close() == []  # idempotent

    assert result.ok and result.returncode == 0, log[-2000:]
    assert result.start["nodes"] == 3 and result.start["config"]["model"] == "mlp"
    assert [r["round"] for r in result.rounds] == [1, 2]
    assert all(
        r["status"] == "aggregated" and r["replies"] == 3 and r["client_keys"] == [0, 1, 2] for r in result.rounds
    )

    settings = core.parse_run_config(run)
    shards = [core.partition_data(i, 3) for i in range(3)]
    sim_params, sim_rows = core.simulate(shards, settings)
    deployed = _load(tmp_path / "final.npz")
    assert max(float(np.abs(a - b).max()) for a, b in zip(deployed, sim_params)) <= 1e-6
    for d, s in zip(result.rounds, sim_rows):
        assert d["accuracy"] == pytest.approx(s["accuracy"], abs=1e-6)
        assert d["train_loss"] == pytest.approx(s["train_loss"], abs=1e-6)
        assert d["num_examples"] == s["num_examples"]
    assert result.done["params_sha256"] == core.params_sha256(deployed)

    # and lesson 02's functions written out by hand
    w = core.initial_params(settings)
    for r in (1, 2):
        outs = [
            fedavg.client_update(settings.spec, w, x, y, epochs=1, batch_size=16, lr=0.3, rng=seeding.derive(11, r, k))
            for k, (x, y) in enumerate(shards)
        ]
        w = fedavg.server_update(fedavg.ServerState(w, r - 1), fedavg.aggregate(outs)).params
    assert max(float(np.abs(a - b).max()) for a, b in zip(deployed, w)) <= 1e-6


def test_keyboard_interrupt_during_a_run_leaves_no_orphans(tmp_path):
    seen, rows = set(), []

    def interrupt(row):
        rows.append(row)
        seen.update(fed.pids())
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with local.Federation(num_nodes=3, workdir=tmp_path / "fed") as fed:
            seen.update(fed.pids())
            fed.run(
                APP_DIR,
                {"num-server-rounds": 20, "min-nodes": 3, "fraction-evaluate": 1.0},
                on_round=interrupt,
                timeout=240,
            )
    assert len(seen) >= 5  # SuperLink, 3 SuperNodes, flwr run, and their children
    (row,) = rows  # round 1 came, with client-side evaluation on all three nodes, then the interrupt
    assert row["eval"]["replies"] == 3 and row["eval"]["num_examples"] == row["num_examples"]
    assert 0 < row["eval"]["accuracy"] <= 1
    assert _wait_dead(seen) == []
    assert local.processes_with_home(tmp_path / "fed" / "flwr-home") == []


def test_a_killed_kernel_leaves_no_orphans(tmp_path):
    """The watchdog: the Python that started the federation dies by SIGKILL (no atexit, no finalizer)."""
    code = textwrap.dedent(
        f"""
        import os, sys, time
        from fedlab.flower import local
        fed = local.Federation(num_nodes=2, workdir={str(tmp_path / "fed")!r})
        print(" ".join(map(str, fed.pids())), flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) >= 3
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert _wait_dead(pids, seconds=20) == []
        assert local.processes_with_home(tmp_path / "fed" / "flwr-home") == []
    finally:
        if proc.poll() is None:
            proc.kill()


def test_data_file_nodes_and_a_vanished_node_does_not_stall_the_round(tmp_path):
    sizes = [120, 200, 260]
    rng = np.random.default_rng(0)
    x, y = core.partition_data(0, 1)
    files, data = [], {}
    for i, n in enumerate(sizes):
        idx = rng.choice(len(y), size=n, replace=False)
        files.append(core.save_data_file(tmp_path / f"participant{i}.npz", x[idx], y[idx]))
        data[n] = (x[idx], y[idx])
    run = {"num-server-rounds": 1, "min-nodes": 2, "round-timeout": 40.0, "seed": 4}
    events = []

    def on_event(kind, payload):
        events.append(kind)
        if kind == "START":
            fed.stop_node(2)  # the participant with 260 examples closes the lid mid-round

    with local.Federation(
        num_nodes=3, node_configs=[{"data-file": str(f)} for f in files], workdir=tmp_path / "fed"
    ) as fed:
        result = fed.run(APP_DIR, run, on_event=on_event, timeout=240)
    assert result.ok, "\n".join(result.lines[-20:])
    (row,) = result.rounds
    # generous timeout: a ClientApp process takes 3-4 s to start on an idle 2-core machine, 15+ s on a busy one
    assert row["status"] == "aggregated" and row["sent"] == 3 and row["replies"] == 2, row
    assert sorted(row["node_examples"]) == [120, 200]
    assert row["client_keys"] == row["node_ids"]  # a data-file node's key is its Flower node id

    # the same round in one process, with the same client keys and files
    settings = core.parse_run_config(run)
    clients = [data[n] for n in row["node_examples"]]
    _, (sim,) = core.simulate(clients, settings, client_keys=row["client_keys"])
    assert row["accuracy"] == pytest.approx(sim["accuracy"], abs=1e-6)
    assert row["train_loss"] == pytest.approx(sim["train_loss"], abs=1e-6)
