"""The personal-model explorer in-process (no browser): controls redraw, numbers match fedlab.personal, bad input."""

import io

import numpy as np
import pytest
from PIL import Image

from fedlab import data, fedavg, models, partition, personal
from fedlab.widgets import personal as PW


@pytest.fixture(scope="module")
def model():
    health = data.load_health()
    train, test = data.split_by_time(health, test_fraction=0.2)
    clients = [(train.x[p], train.y[p]) for p in partition.by_user(train.user)]
    spec = models.mlp(8, (16,), 2)
    g, _ = fedavg.run(spec, clients, rounds=10, seed=0, fraction=0.1)
    return PW.PersonalModel(spec, g, train, test, steps=(0, 5, 30))


def test_scores_are_fine_tune_scores(model):
    tuned = personal.fine_tune(model.spec, model.global_params, model.clients, steps=5, rng=0)
    want = model._score(tuned, stacked=True)
    assert np.allclose(model.scores(5).accuracy, want.accuracy, equal_nan=True)
    assert np.allclose(model.scores(0).accuracy, model.global_scores.accuracy, equal_nan=True)  # k=0: global


def test_user_view_matches_the_data(model):
    v = model.user_view(17, 30)
    assert len(v.train_days) == np.sum(model.train.user == 17) and len(v.test_days) == np.sum(model.test.user == 17)
    assert len(v.p_global) == len(v.p_personal) == len(v.test_days)
    assert np.all((v.p_global >= 0) & (v.p_global <= 1))
    pred = (v.p_personal > 0.5).astype(int)
    assert np.mean(pred == model.test.y[model.test.user == 17]) == pytest.approx(v.accuracy_personal)
    raw = data.load_health(standardize=False)
    assert np.allclose(v.active_minutes[: len(v.train_days)], raw.x[raw.user == 17, PW.ACTIVE][: len(v.train_days)],
                       atol=1e-3)  # fmt: skip


def test_controls_redraw_and_readout_names_the_user(model):
    w = PW.personal_explorer(model=model, k=5, user=3)
    s0, u0, r0 = w.scatter.value, w.user_chart.value, w.readout.value
    assert "user 3" in r0 and "k = 5" in r0
    assert Image.open(io.BytesIO(s0)).size == (PW.SCATTER_W, PW.SCATTER_H)
    w.controls["k"].value = 30
    assert w.scatter.value != s0 and "k = 30" in w.readout.value and w.view.steps == 30
    w.controls["user"].value = 42
    assert "user 42" in w.readout.value and w.user_chart.value != u0 and w.view.user == 42
    w.worst.click()
    assert w.view.user == model.extreme_user(30, best=False)
    gain = model.scores(30).accuracy - model.global_scores.accuracy
    ok = model.scores(30).num_days >= personal.MIN_DAYS
    assert gain[w.view.user] == np.nanmin(np.where(ok, gain, np.nan))
    assert w.last_update_seconds > 0


def test_bad_input(model):
    with pytest.raises(ValueError, match=r"k=7: this explorer offers k in \[0, 5, 30\]"):
        model.scores(7)
    with pytest.raises(ValueError, match=r"user=5000: no such user; user ids are the ints 0 .. 1199"):
        model.user_view(5000, 5)
    with pytest.raises(ValueError, match=r"steps=1.5: k must be an int"):
        PW.PersonalModel(model.spec, model.global_params, model.train, model.test, steps=(0, 1.5))
