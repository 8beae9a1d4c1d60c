"""Monitored FedAvg (fedlab.telemetry): faults are visible in telemetry, NaN is recorded and not aggregated."""

import numpy as np
import pytest

from fedlab import data, models, partition, telemetry
from fedlab import params as P


@pytest.fixture(scope="module")
def setup():
    d = data.load_digits()
    tr, te = data.train_test_split(d, test_fraction=0.2, seed=0)
    parts = partition.iid(len(tr.y), num_clients=10, rng=1)
    clients = [(2 * tr.x[p] - 1, tr.y[p]) for p in parts]
    return models.mlp(64, (16,), 10), clients, (2 * te.x - 1, te.y)


RUN = dict(rounds=6, seed=3, epochs=1, batch_size=10, lr=0.1)


def test_boosted_client_has_the_largest_norm_and_is_flagged(setup):
    spec, clients, test = setup
    _, tel = telemetry.run_monitored(spec, clients, faults={4: telemetry.Boosted(10.0)}, **RUN)
    norms = tel.matrix("norm")
    assert norms.shape == (6, 10)
    assert np.all(np.argmax(norms, axis=1) == 4)
    assert all(telemetry.flag_outliers(row, threshold=3.5)[4] for row in norms)


def test_nan_update_is_recorded_and_not_aggregated(setup):
    spec, clients, test = setup
    params, tel = telemetry.run_monitored(spec, clients, faults={2: telemetry.NaNUpdate(start=3)}, test=test, **RUN)
    assert all(np.all(np.isfinite(p)) for p in params)
    assert tel.nonfinite() == [(r, 2) for r in range(3, 7)]
    recs = [c for c in tel.clients if c.client == 2]
    assert [c.finite for c in recs] == [True, True, False, False, False, False]
    assert not any(c.aggregated for c in recs[2:]) and all(c.aggregated for c in recs[:2])
    assert list(tel.column("aggregated")) == [10, 10, 9, 9, 9, 9]
    assert tel.final_accuracy > 0.5


def test_nan_from_every_client_leaves_the_model_unchanged(setup):
    spec, clients, _ = setup
    init = models.init_params(spec, rng=0)
    faults = {k: telemetry.NaNUpdate() for k in range(len(clients))}
    params, tel = telemetry.run_monitored(spec, clients, faults=faults, init=init, **RUN)
    assert P.allclose(params, init, rtol=0, atol=0)
    assert list(tel.column("aggregated")) == [0] * 6


def test_label_flip_shows_in_the_clients_own_loss(setup):
    spec, clients, _ = setup
    _, tel = telemetry.run_monitored(spec, clients, faults={7: telemetry.LabelFlip()}, **{**RUN, "rounds": 8})
    loss = tel.matrix("loss")
    assert np.all(np.argmax(loss[3:], axis=1) == 7)


def test_drift_shows_after_its_start(setup):
    spec, clients, _ = setup
    _, tel = telemetry.run_monitored(spec, clients, faults={5: telemetry.Drift(start=5)}, **{**RUN, "rounds": 8})
    loss = tel.matrix("loss")
    assert np.argmax(loss[3]) != 5
    assert loss[4, 5] > 1.5 * np.median(loss[4])


def test_deterministic_and_seeded(setup):
    spec, clients, _ = setup
    kw = dict(faults={1: telemetry.Boosted(3.0)}, dropout_rate=0.2, fraction=0.6, aggregator="trimmed", trim=0.2)
    p1, t1 = telemetry.run_monitored(spec, clients, **kw, **RUN)
    p2, t2 = telemetry.run_monitored(spec, clients, **kw, **RUN)
    assert P.allclose(p1, p2, rtol=0, atol=0)
    for m in ("norm", "loss", "participated", "bytes_up"):
        np.testing.assert_array_equal(t1.matrix(m), t2.matrix(m))
    part = t1.matrix("participated")
    assert np.all(np.sum(np.isfinite(part), axis=1) == 6) and np.nansum(part == 0) > 0  # sampled 6; some dropped
    p3, _ = telemetry.run_monitored(spec, clients, **kw, **{**RUN, "seed": 4})
    assert not P.allclose(p1, p3)


def test_clean_run_matches_fedavg_run(setup):
    """With no faults and the mean, run_monitored is plain FedAvg (fedavg.run with the same seed)."""
    from fedlab import fedavg

    spec, clients, _ = setup
    p1, tel = telemetry.run_monitored(spec, clients, **RUN)
    p2, hist = fedavg.run(spec, clients, **RUN)
    assert P.allclose(p1, p2, rtol=1e-4, atol=1e-5)
    bytes_up = np.nansum(tel.matrix("bytes_up"), axis=1)
    np.testing.assert_array_equal(bytes_up, hist.column("bytes_up"))


@pytest.mark.parametrize("agg", ["median", "trimmed", "norm_bound"])
def test_robust_aggregators_resist_boosting(setup, agg):
    spec, clients, test = setup
    faults = {0: (telemetry.LabelFlip(), telemetry.Boosted(20.0))}
    _, bad = telemetry.run_monitored(spec, clients, faults=faults, test=test, **RUN)
    _, robust = telemetry.run_monitored(spec, clients, faults=faults, test=test, aggregator=agg, trim=0.2,
                                        max_norm=0.5, **RUN)
    assert robust.final_accuracy > bad.final_accuracy + 0.1


def test_robust_z_and_flags():
    z = telemetry.robust_z([1.0, 2.0, 3.0, np.nan])
    np.testing.assert_allclose(z[:3], [-0.6745, 0, 0.6745])
    assert z[3] == np.inf
    assert list(telemetry.flag_outliers([1, 1, 1, 5.0], threshold=3)) == [False, False, False, True]


def test_bad_arguments(setup):
    spec, clients, _ = setup
    with pytest.raises(ValueError, match="needs max_norm"):
        telemetry.run_monitored(spec, clients, aggregator="norm_bound", **RUN)
    with pytest.raises(ValueError, match="faults has client 99"):
        telemetry.run_monitored(spec, clients, faults={99: telemetry.LabelFlip()}, **RUN)
    with pytest.raises(ValueError, match=r"faults\[1\]="):
        telemetry.run_monitored(spec, clients, faults={1: "flip"}, **RUN)
    with pytest.raises(ValueError, match="aggregator='max'"):
        telemetry.run_monitored(spec, clients, aggregator="max", **RUN)
    with pytest.raises(ValueError, match="trim=0.5"):
        telemetry.run_monitored(spec, clients, aggregator="trimmed", trim=0.5, **RUN)
    with pytest.raises(ValueError, match="metric='x'"):
        telemetry.Telemetry(3).matrix("x")
