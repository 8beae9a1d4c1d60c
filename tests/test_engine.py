"""Oracle tests: the batched engine equals the plain per-client PyTorch loop."""

import numpy as np
import pytest

from fedlab import engine, fedavg, models
from fedlab import params as P
from tests.test_fedavg import toy_clients

SPECS = [
    models.logreg(16, 4),
    models.mlp(16, (12,), 4),
    models.mlp(16, (10, 7), 4, activation="sigmoid"),
    models.mlp(16, (9,), 4, activation="tanh"),
    models.cnn(16, (3, 4), 4, activation="sigmoid"),
    models.cnn(16, (2, 3), 4),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.kind}-{s.activation}-{len(s.hidden)}")
@pytest.mark.parametrize("batch_size, epochs, mu", [(3, 2, 0.0), (None, 1, 0.0), (4, 2, 0.5), (1, 1, 0.0)])
def test_engine_equals_loop(spec, batch_size, epochs, mu):
    clients = toy_clients([1, 7, 12, 3, 9], d=16, classes=4, seed=2)
    params = models.init_params(spec, rng=4)
    packed = engine.pack(clients)
    chosen = np.array([0, 1, 2, 4])  # client 3 not sampled
    keys = np.random.default_rng(9).random((len(chosen), epochs, 12))
    cohort = engine.train(spec, params, packed, chosen, keys=keys, batch_size=batch_size, lr=0.3, mu=mu)
    loop = [
        fedavg.local_sgd(
            spec,
            params,
            *clients[k],
            orders=fedavg.epoch_orders(keys[i, :, : len(clients[k][1])]),
            batch_size=batch_size,
            lr=0.3,
            mu=mu,
        )
        for i, k in enumerate(chosen)
    ]
    for got, want in zip(cohort.outputs(), loop):
        assert got.num_examples == want.num_examples
        assert got.metrics["steps"] == want.metrics["steps"]
        assert got.metrics["loss"] == pytest.approx(want.metrics["loss"], rel=1e-5, abs=1e-6)
        assert P.allclose(got.delta, want.delta, atol=2e-6, rtol=1e-4)
    assert P.allclose(cohort.aggregate(), fedavg.aggregate(loop), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("spec", [models.mlp(16, (12,), 4), models.cnn(16, (2, 3), 4)], ids=["mlp", "cnn"])
def test_run_batched_equals_run_loop(spec):
    clients = toy_clients([5, 8, 13, 2, 6, 9], d=16, classes=4, seed=3)
    test = toy_clients([50], d=16, classes=4, seed=3)[0]
    kw = dict(rounds=4, seed=7, fraction=0.5, epochs=2, batch_size=4, lr=0.2, test=test)
    pa, ha = fedavg.run(spec, clients, engine="batched", **kw)
    pb, hb = fedavg.run(spec, clients, engine="loop", **kw)
    assert P.allclose(pa, pb, atol=5e-6, rtol=1e-4)
    assert np.allclose(ha.column("test_loss"), hb.column("test_loss"), atol=1e-5)
    assert np.array_equal(ha.column("clients"), hb.column("clients"))


def test_threads_are_restored():
    import torch

    before = torch.get_num_threads()
    with engine.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_train_rejects_wrong_keys_shape():
    spec = models.logreg(16, 4)
    clients = toy_clients([3, 4], d=16, classes=4)
    with pytest.raises(ValueError, match="keys"):
        engine.train(
            spec,
            models.init_params(spec, rng=0),
            engine.pack(clients),
            np.array([0, 1]),
            keys=np.zeros((2, 1, 2)),
            batch_size=2,
            lr=0.1,
        )


@pytest.mark.parametrize("spec", [models.mlp(16, (12,), 4), models.cnn(16, (2, 3), 4)], ids=["mlp", "cnn"])
@pytest.mark.parametrize("mu", [0.0, 0.3])
def test_engine_max_steps_equals_loop(spec, mu):
    clients = toy_clients([1, 7, 12, 3, 9], d=16, classes=4, seed=2)
    params = models.init_params(spec, rng=4)
    chosen = np.array([0, 1, 2, 3, 4])
    keys = np.random.default_rng(9).random((5, 2, 12))
    limits = np.array([1, 3, 2, 5, 1])
    cohort = engine.train(
        spec, params, engine.pack(clients), chosen, keys=keys, batch_size=3, lr=0.3, mu=mu, max_steps=limits
    )
    for i, (got, k) in enumerate(zip(cohort.outputs(), chosen)):
        want = fedavg.local_sgd(
            spec,
            params,
            *clients[k],
            orders=fedavg.epoch_orders(keys[i, :, : len(clients[k][1])]),
            batch_size=3,
            lr=0.3,
            mu=mu,
            max_steps=int(limits[i]),
        )
        assert got.metrics["steps"] == want.metrics["steps"]
        assert P.allclose(got.delta, want.delta, atol=2e-6, rtol=1e-4)


@pytest.mark.parametrize("policy", ["partial", "drop"])
def test_run_with_dropouts_and_stragglers_batched_equals_loop(policy):
    spec = models.mlp(16, (12,), 4)
    clients = toy_clients([5, 8, 13, 2, 6, 9, 4, 7], d=16, classes=4, seed=3)
    test = toy_clients([50], d=16, classes=4, seed=3)[0]
    kw = dict(
        rounds=6,
        seed=7,
        fraction=0.75,
        epochs=2,
        batch_size=3,
        lr=0.2,
        test=test,
        dropout_rate=0.3,
        straggler_rate=0.5,
        stragglers=policy,
    )
    pa, ha = fedavg.run(spec, clients, engine="batched", **kw)
    pb, hb = fedavg.run(spec, clients, engine="loop", **kw)
    assert P.allclose(pa, pb, atol=5e-6, rtol=1e-4)
    assert np.array_equal(ha.column("reported"), hb.column("reported"))
    assert np.all(ha.column("reported") <= ha.column("clients")) and ha.column("reported").min() < 6


def _fedlab_imports(module: str) -> set[str]:
    """The fedlab modules that ``fedlab/<module>.py`` imports (any depth of the file, lazy imports too)."""
    import ast
    from pathlib import Path

    import fedlab

    tree = ast.parse((Path(fedlab.__file__).parent / f"{module}.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "fedlab":
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fedlab."):
            out.add(node.module.split(".")[1])
    return out


def test_no_import_circle_between_fedavg_and_engine():
    """Records and aggregation below (updates), both trainers above, fedavg.run the one place that picks."""
    assert "fedavg" not in _fedlab_imports("engine")
    assert not {"fedavg", "engine"} & _fedlab_imports("updates")
    assert {"engine", "updates"} <= _fedlab_imports("fedavg")
    from fedlab import fedavg, updates

    for name in ("ClientOutput", "ServerState", "aggregate", "server_update", "epoch_orders", "steps_per_epoch"):
        assert getattr(fedavg, name) is getattr(updates, name)


@pytest.mark.parametrize("spec", [models.logreg(16, 4), models.mlp(16, (12,), 4), models.cnn(16, (2, 3), 4)],
                         ids=["logreg", "mlp", "cnn"])  # fmt: skip
@pytest.mark.parametrize("mu, with_anchor", [(0.0, False), (0.4, False), (0.4, True)])
def test_stacked_starts_and_anchor_equal_loop(spec, mu, with_anchor):
    """Personal state (lesson 12): every client its own start, pulled to a shared anchor (Ditto)."""
    clients = toy_clients([1, 7, 12, 3, 9], d=16, classes=4, seed=2)
    chosen = np.array([4, 0, 2])
    starts = [models.init_params(spec, rng=10 + int(k)) for k in chosen]
    stacked = [np.stack([s[i] for s in starts]) for i in range(len(starts[0]))]
    anchor = models.init_params(spec, rng=99) if with_anchor else None
    keys = np.random.default_rng(5).random((len(chosen), 2, 12))
    cohort = engine.train(spec, stacked, engine.pack(clients), chosen, keys=keys, batch_size=3, lr=0.3, mu=mu,
                          stacked=True, anchor=anchor)  # fmt: skip
    assert cohort.stacked
    for i, k in enumerate(chosen):
        want = fedavg.local_sgd(spec, starts[i], *clients[k], orders=fedavg.epoch_orders(keys[i, :, : len(clients[k][1])]),
                                batch_size=3, lr=0.3, mu=mu, anchor=anchor)  # fmt: skip
        got = [f[i].numpy() for f in cohort.final]
        assert P.allclose(got, P.add(starts[i], want.delta), atol=2e-6, rtol=1e-4)
        assert P.allclose([d[i].numpy() for d in cohort.deltas()], want.delta, atol=2e-6, rtol=1e-4)


def test_stacked_params_must_have_one_start_per_client():
    spec = models.mlp(16, (12,), 4)
    clients = toy_clients([4, 5], d=16, classes=4, seed=1)
    one = models.init_params(spec, rng=0)
    keys = np.random.default_rng(0).random((2, 1, 5))
    with pytest.raises(ValueError, match=r"params\[0\] has shape \(12, 16\): stacked params need \(2, 12, 16\)"):
        engine.train(spec, one, engine.pack(clients), np.array([0, 1]), keys=keys, batch_size=2, lr=0.1, stacked=True)
