"""fedlab.flower.core without flwr (needs only numpy and torch): records, aggregation, the round rule, configs."""

import json
import sys
import tomllib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlab import data, fedavg, models, seeding
from fedlab.flower import APP_DIR, core, local


def test_import_fedlab_stays_free_of_flower():
    import subprocess

    code = "import sys, fedlab, fedlab.flower.core, fedlab.flower.local; print(sorted(m for m in sys.modules if m.split('.')[0] == 'flwr'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    out = subprocess.run(
        [sys.executable, "-c", "import sys, fedlab; print('fedlab.flower' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "False"


def test_the_drawing_pad_depends_on_no_deployment_code(tmp_path):
    """Issue 15.4: the pad saves its digits with fedlab.data; it never imports fedlab.flower, the workshop or flwr."""
    import subprocess

    code = (
        "import sys\nfrom fedlab.widgets.digit_pad import DigitPad\n"
        "pad = DigitPad()\npad._down(120, 40); pad._move(120, 200); pad._up(120, 200); pad.add(1)\n"
        f"pad.save({str(tmp_path / 'd.npz')!r})\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'flwr' or m.startswith(('fedlab.flower', "
        "'fedlab.workshop', 'fedlab.remote'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
    x, y = data.load_digits_file(tmp_path / "d.npz")
    assert x.shape == (1, 64) and y.tolist() == [1]


# ---- records ---------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 3)), min_size=1, max_size=13), st.integers(0, 99))
def test_record_round_trip(shapes, seed):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    rec = core.params_to_record(params)
    assert list(rec) == [str(i) for i in range(len(params))]
    shuffled = {k: rec[k] for k in sorted(rec)}  # string order: "10" before "2"
    back = core.record_to_params(shuffled)
    assert all(a.dtype == np.float32 and np.array_equal(a, b) for a, b in zip(back, params))


def test_record_is_a_float32_copy():
    params = [np.arange(6, dtype=np.float64).reshape(2, 3)]
    rec = core.params_to_record(params)
    assert rec["0"].dtype == np.float32 and rec["0"].shape == (2, 3)
    rec["0"][:] = -1
    assert params[0][0, 0] == 0


@pytest.mark.parametrize(
    "record, match",
    [
        ({"0": np.ones(1), "2": np.ones(1)}, "keys"),
        ({"a": np.ones(1)}, "keys"),
        ({"00": np.ones(1)}, "keys"),
        ([np.ones(1)], "mapping"),
    ],
)
def test_record_to_params_refuses_bad_records(record, match):
    with pytest.raises(ValueError, match=match):
        core.record_to_params(record)


def test_params_to_record_refuses_non_lists():
    with pytest.raises(ValueError, match="params is a dict"):
        core.params_to_record({"0": np.ones(1)})
    with pytest.raises(ValueError, match=r"params\[0\] has dtype"):
        core.params_to_record([np.array(["a"])])


# ---- client and server --------------------------------------------------------------------------------


def _replies(sizes, seed=0, keys=None):
    rng = np.random.default_rng(seed)
    keys = keys or list(range(len(sizes)))
    return [
        core.Reply(100 + k, k, [rng.standard_normal((2, 3)).astype(np.float32)], n, {"loss": float(rng.random())})
        for k, n in zip(keys, sizes)
    ]


def test_aggregate_replies_equals_fedavg_aggregate():
    reps = _replies([5, 50, 17], seed=1)
    delta, loss = core.aggregate_replies(reps[::-1])
    want = fedavg.aggregate([fedavg.ClientOutput(r.delta, r.num_examples, r.metrics) for r in reps])
    assert all(np.array_equal(a, b) for a, b in zip(delta, want))
    n = np.array([5, 50, 17.0])
    assert loss == pytest.approx(float(n @ [r.metrics["loss"] for r in reps] / n.sum()))


def test_aggregate_known_answer_is_weighted():
    reps = [
        core.Reply(1, 0, [np.array([1.0, 0.0], np.float32)], 1, {"loss": 1.0}),
        core.Reply(2, 1, [np.array([4.0, 3.0], np.float32)], 2, {"loss": 4.0}),
    ]
    delta, loss = core.aggregate_replies(reps)
    np.testing.assert_allclose(delta[0], [3.0, 2.0])
    assert loss == pytest.approx(3.0)
    params, _ = core.apply_round([np.zeros(2, np.float32)], reps, round=1)
    np.testing.assert_allclose(params[0], [3.0, 2.0])


def test_aggregate_replies_refuses_empty():
    with pytest.raises(ValueError, match="replies is empty"):
        core.aggregate_replies([])


def test_train_reply_calls_client_update_with_the_derived_seed():
    s = core.parse_run_config({"local-epochs": 2, "batch-size": 8, "lr": 0.3, "seed": 5})
    x, y = core.partition_data(1, 4)
    params = core.initial_params(s)
    delta, n, metrics = core.train_reply(params, x, y, core.train_config(s, 3), client_key=1)
    out = fedavg.client_update(s.spec, params, x, y, epochs=2, batch_size=8, lr=0.3, rng=seeding.derive(5, 3, 1))
    assert n == len(y) == out.num_examples
    assert all(np.array_equal(a, b) for a, b in zip(delta, out.delta))
    assert metrics["loss"] == pytest.approx(out.metrics["loss"])


def test_train_reply_full_batch_and_missing_config():
    s = core.parse_run_config({"batch-size": 0, "local-epochs": 1})
    x, y = core.partition_data(0, 3)
    _, _, metrics = core.train_reply(core.initial_params(s), x, y, core.train_config(s, 1), client_key=0)
    assert metrics["steps"] == 1.0
    with pytest.raises(ValueError, match="missing"):
        core.train_reply(core.initial_params(s), x, y, {"round": 1}, client_key=0)


def test_initial_params_match_fedavg_run():
    s = core.parse_run_config({"seed": 7})
    want = models.init_params(s.spec, rng=seeding.derive(7, 0))
    assert all(np.array_equal(a, b) for a, b in zip(core.initial_params(s), want))


def test_simulate_equals_the_lesson_02_loop():
    s = core.parse_run_config({"num-server-rounds": 2, "min-nodes": 3, "seed": 3, "model": "mlp"})
    shards = [core.partition_data(i, 3) for i in range(3)]
    params, rows = core.simulate(shards, s)
    w = core.initial_params(s)
    for r in (1, 2):
        outs = [
            fedavg.client_update(
                s.spec, w, x, y, epochs=s.local_epochs, batch_size=s.batch_size, lr=s.lr, rng=seeding.derive(3, r, k)
            )
            for k, (x, y) in enumerate(shards)
        ]
        w = fedavg.server_update(fedavg.ServerState(w, r - 1), fedavg.aggregate(outs)).params
    assert max(float(np.abs(a - b).max()) for a, b in zip(params, w)) <= 1e-6
    assert [r["round"] for r in rows] == [1, 2] and all(r["status"] == "aggregated" for r in rows)
    assert rows[-1]["accuracy"] > 0.7 and rows[-1]["num_examples"] == sum(len(y) for _, y in shards)


def test_simulate_skips_rounds_below_min_nodes():
    s = core.parse_run_config({"num-server-rounds": 1, "min-nodes": 3})
    params, rows = core.simulate([core.partition_data(i, 3) for i in range(2)], s)
    assert rows[0]["status"] == "skipped"
    assert all(np.array_equal(a, b) for a, b in zip(params, core.initial_params(s)))


# ---- the round rule --------------------------------------------------------------------------------

DECISIONS = [
    (dict(sent=3, answered=3, usable=3, min_nodes=2, elapsed=1.0, timeout=60.0), "aggregate"),
    (dict(sent=3, answered=2, usable=2, min_nodes=2, elapsed=1.0, timeout=60.0), "wait"),
    (dict(sent=3, answered=2, usable=2, min_nodes=2, elapsed=60.0, timeout=60.0), "aggregate"),
    (dict(sent=3, answered=1, usable=1, min_nodes=2, elapsed=61.0, timeout=60.0), "skip"),
    (dict(sent=3, answered=3, usable=1, min_nodes=2, elapsed=1.0, timeout=60.0), "skip"),
    (dict(sent=4, answered=2, usable=0, min_nodes=3, elapsed=1.0, timeout=60.0), "skip"),
    (dict(sent=2, answered=0, usable=0, min_nodes=3, elapsed=0.0, timeout=60.0), "skip"),
    (dict(sent=0, answered=0, usable=0, min_nodes=1, elapsed=0.0, timeout=60.0), "skip"),
]


@pytest.mark.parametrize("kwargs, want", DECISIONS)
def test_round_decision_known_answers(kwargs, want):
    assert core.round_decision(**kwargs) == want


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sent=2, answered=3, usable=0, min_nodes=1, elapsed=0.0, timeout=1.0), "usable <= answered <= sent"),
        (dict(sent=2, answered=1, usable=0, min_nodes=0, elapsed=0.0, timeout=1.0), "min_nodes=0"),
        (dict(sent=2, answered=1, usable=0, min_nodes=1, elapsed=0.0, timeout=0.0), "timeout=0.0"),
        (dict(sent=-1, answered=0, usable=0, min_nodes=1, elapsed=0.0, timeout=1.0), "sent=-1"),
    ],
)
def test_round_decision_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        core.round_decision(**kwargs)


# ---- configs -------------------------------------------------------------------------------------


def test_run_config_defaults_match_the_app_pyproject():
    with open(APP_DIR / "pyproject.toml", "rb") as f:
        app = tomllib.load(f)["tool"]["flwr"]["app"]
    assert app["config"] == {k: default for k, (default, _) in core.RUN_CONFIG.items()}
    assert core.parse_run_config(app["config"]) == core.RunSettings()
    assert core.RunSettings().run_config() == app["config"]
    assert app["components"] == {
        "serverapp": "fedlab_app.server_app:app",
        "clientapp": "fedlab_app.client_app:app",
    }


@pytest.mark.parametrize(
    "config, match",
    [
        ({"num-server-rounds": 0}, r"num-server-rounds=0: must be an int >= 1"),
        ({"lr": -1.0}, r"lr=-1.0: must be a number > 0"),
        ({"lr": True}, r"lr=True"),
        ({"fraction-evaluate": 1.5}, r"fraction-evaluate=1.5: must be a number >= 0.0 and <= 1.0"),
        ({"model": "cnn"}, r"model='cnn': must be one of \['logreg', 'mlp'\]"),
        ({"round-timeout": 0}, r"round-timeout=0"),
        ({"min-nodes": 2.0}, r"min-nodes=2.0"),
        ({"rounds": 3}, r"run config keys \['rounds'\]: not known; allowed"),
        ({"output-file": 3}, r"output-file=3"),
    ],
)
def test_run_config_errors_name_key_value_allowed(config, match):
    with pytest.raises(ValueError, match=match):
        core.parse_run_config(config)


def test_node_config_forms():
    assert core.parse_node_config({"partition-id": 1, "num-partitions": 3, "name": "x"}) == core.NodeData(1, 3)
    node = core.parse_node_config({"data-file": "me.npz"})
    assert node.kind == "file" and node.data_file == "me.npz"
    assert core.client_key(node, 12345678901234567890) == 12345678901234567890
    assert core.client_key(core.NodeData(2, 3), 99) == 2


@pytest.mark.parametrize(
    "config, match",
    [
        ({"partition-id": 3, "num-partitions": 3}, r"partition-id=3: must be an int in \[0, 2\]"),
        ({"partition-id": 0}, "no num-partitions"),
        ({"num-partitions": 0, "partition-id": 0}, "num-partitions=0"),
        ({"data-file": ""}, "data-file=''"),
        ({"data-file": "a.npz", "partition-id": 0}, "not both"),
        ({}, "needs partition-id and num-partitions"),
    ],
)
def test_node_config_errors(config, match):
    with pytest.raises(ValueError, match=match):
        core.parse_node_config(config)


def test_partitions_cover_the_training_split_once():
    train, test = core.digits_split()
    shards = [core.partition_data(i, 3) for i in range(3)]
    assert sum(len(y) for _, y in shards) == len(train)
    assert len(test.y) == len(core.test_data()[1])
    assert len(train) + len(test) == 1797


def test_data_file_round_trip_and_errors(tmp_path):
    assert core.save_data_file is data.save_digits_file and core.load_data_file is data.load_digits_file
    x, y = core.partition_data(0, 5)
    p = data.save_digits_file(tmp_path / "me.npz", x, y)
    assert p.name == "me.npz"
    x2, y2 = core.load_node_data(core.parse_node_config({"data-file": str(p)}))
    assert np.array_equal(x, x2) and np.array_equal(y, y2) and x2.dtype == np.float32 and y2.dtype == np.int64
    with pytest.raises(ValueError, match="no such file"):
        data.load_digits_file(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", x=x[:, :10], y=y)
    with pytest.raises(ValueError, match=r"x has shape \(\d+, 10\)"):
        data.load_digits_file(tmp_path / "bad.npz")
    np.savez(tmp_path / "nolabels.npz", x=x)
    with pytest.raises(ValueError, match=r"missing \['y'\]"):
        data.load_digits_file(tmp_path / "nolabels.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="not a readable"):
        data.load_digits_file(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="labels in"):
        data.save_digits_file(tmp_path / "l.npz", x, y + 10)


# ---- progress lines ------------------------------------------------------------------------------------


def test_lines_round_trip_and_nan_is_null():
    line = core.format_line("ROUND", {"round": 1, "accuracy": float("nan"), "node_ids": [2**63 + 5]})
    assert line.startswith("FEDLAB_ROUND {") and "\n" not in line
    kind, payload = core.parse_line("\x1b[92mINFO\x1b[0m: " + line + "\n")
    assert kind == "ROUND" and payload == {"round": 1, "accuracy": None, "node_ids": [2**63 + 5]}
    assert core.parse_line("FEDLAB_ROUND {broken") is None
    assert core.parse_line("something else") is None
    json.loads(line.split(" ", 1)[1])  # strict JSON
    with pytest.raises(ValueError, match="kind='END'"):
        core.format_line("END", {})


def test_sample_evaluators():
    assert core.sample_evaluators([5, 3, 9], fraction=0.0, seed=0, round=1) == []
    assert core.sample_evaluators([5, 3, 9], fraction=1.0, seed=0, round=1) == [3, 5, 9]
    one = core.sample_evaluators([5, 3, 9, 11], fraction=0.25, seed=0, round=2)
    assert len(one) == 1 and one == core.sample_evaluators([11, 9, 5, 3], fraction=0.25, seed=0, round=2)


# ---- launch helpers (no process started) ----------------------------------------------------------------


def test_argv_builders():
    assert local.superlink_argv(port=9100) == [
        "flower-superlink",
        "--insecure",
        "--port",
        "9100",
        "--disable-runtime-dependency-installation",
    ]
    tls = local.superlink_argv(
        port=9100,
        host="0.0.0.0",
        ssl_ca_certfile="ca.crt",
        ssl_certfile="s.crt",
        ssl_keyfile="s.key",
        enable_supernode_auth=True,
    )
    assert "--insecure" not in tls and "--enable-supernode-auth" in tls and tls[tls.index("--host") + 1] == "0.0.0.0"
    node = local.supernode_argv(
        superlink="10.0.0.2:9100",
        port=9201,
        node_config={"data-file": "a b.npz"},
        root_certificates="ca.crt",
        auth_private_key="k",
        max_wait_time=30,
    )
    assert node[node.index("--node-config") + 1] == 'data-file="a b.npz"'
    assert node[node.index("--root-certificates") + 1] == "ca.crt" and "--insecure" not in node
    assert node[node.index("--auth-supernode-private-key") + 1] == "k"
    assert local.node_config_string({"partition-id": 0, "num-partitions": 3}) == "partition-id=0 num-partitions=3"


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: local.superlink_argv(port=0), r"port=0: must be an int port"),
        (lambda: local.superlink_argv(port=9100, ssl_certfile="c"), "TLS needs all three"),
        (lambda: local.superlink_argv(port=9100, enable_supernode_auth=True), "needs TLS"),
        (lambda: local.supernode_argv(superlink="http://x:1", port=9200), r"superlink='http://x:1'"),
        (lambda: local.node_config_string({"a b": 1}), "node config key 'a b'"),
        (lambda: local.node_config_string({"k": [1]}), r"k=\[1\]: config values"),
        (lambda: local.Federation(num_nodes=0), r"num_nodes=0: must be an int in \[1, 16\]"),
        (lambda: local.Federation(num_nodes=2, node_configs=[{}]), "node_configs has 1 entries"),
        (
            lambda: local.Federation(num_nodes=1, node_configs=[{"partition-id": 1, "num-partitions": 1}]),
            r"node_configs\[0\]: partition-id=1",
        ),
    ],
)
def test_launch_helper_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_connection_and_run_config_files(tmp_path):
    p = local.write_connection(tmp_path, address="127.0.0.1:9100")
    cfg = tomllib.loads(p.read_text())
    assert cfg["superlink"]["default"] == local.CONNECTION
    assert cfg["superlink"][local.CONNECTION] == {"address": "127.0.0.1:9100", "insecure": True}
    p = local.write_connection(
        tmp_path, address="10.0.0.2:9100", name="workshop", insecure=False, root_certificates=tmp_path / "ca.crt"
    )
    assert tomllib.loads(p.read_text())["superlink"]["workshop"]["root-certificates"].endswith("ca.crt")
    rc = local.write_run_config(tmp_path / "rc.toml", {"model": "mlp", "lr": 0.25, "num-server-rounds": 2})
    assert tomllib.loads(rc.read_text()) == {"model": "mlp", "lr": 0.25, "num-server-rounds": 2}
    with pytest.raises(ValueError, match=r"run_config keys \['epochs'\]"):
        local.write_run_config(tmp_path / "x.toml", {"epochs": 2})
    with pytest.raises(ValueError, match="lr=0"):
        local.write_run_config(tmp_path / "x.toml", {"lr": 0})


def test_env_has_the_offline_switches(tmp_path):
    env = local.flower_env(tmp_path, bin_dir="/opt/flower/bin", base={"PATH": "/usr/bin"})
    assert env["FLWR_TELEMETRY_ENABLED"] == "0" and env["FLWR_DISABLE_UPDATE_CHECK"] == "1"
    assert env["PATH"].split(":")[0] == "/opt/flower/bin" and env["FLWR_HOME"] == str(tmp_path)


def test_close_round_aggregates_with_enough_replies_and_keeps_the_model_otherwise():
    params = [np.array([1.0, 1.0], np.float32)]
    replies = [
        core.Reply(1, 0, [np.array([1.0, 0.0], np.float32)], 1, {"loss": 1.0}),
        core.Reply(2, 1, [np.array([4.0, 3.0], np.float32)], 2, {"loss": 4.0}),
    ]
    new, loss, status = core.close_round(params, replies, min_nodes=2, round=1)
    assert status == "aggregated" and loss == pytest.approx(3.0)
    np.testing.assert_allclose(new[0], [4.0, 3.0])  # 1 + (1*[1,0] + 2*[4,3]) / 3
    same, loss, status = core.close_round(params, replies, min_nodes=3, round=1)
    assert status == "skipped" and np.isnan(loss) and same is params
    assert core.close_round(params, [], min_nodes=1, round=1)[2] == "skipped"
