"""The noise-share widget (lesson 13) in-process (no browser): numbers match fedlab.distributed_dp, controls
redraw, the refusal shows below the plan, bad input gets a clear error."""

import io
import math

import numpy as np
import pytest
from PIL import Image

from fedlab import distributed_dp as D
from fedlab.widgets import noise_shares as NW

KW = dict(cohort=12, dim=18, clip_norm=0.5, noise_multiplier=1.3, bits=16, q=0.025, rounds=50, delta=1e-5)


@pytest.fixture(scope="module")
def model():
    return NW.NoiseShareModel(**KW)


def test_view_is_the_plan_and_the_accountant(model):
    v = model.view(min_survivors=8, dropped=3)
    plan = D.make_plan(dim=18, clip_norm=0.5, noise_multiplier=1.3, cohort=12, min_survivors=8, bits=16)
    assert v.survivors == 9 and v.released
    assert v.share_std == pytest.approx(math.sqrt(plan.local_variance) / plan.scale)
    assert v.sum_std == pytest.approx(3 * v.share_std)  # sqrt(9) shares
    assert v.counted_std == pytest.approx(math.sqrt(8) * v.share_std)  # the other 8
    assert v.planned_std == pytest.approx(1.3 * 0.5)
    # the plan gives min_survivors - 1 other shares exactly the central noise z c
    assert math.sqrt(7) * v.share_std == pytest.approx(v.planned_std)
    assert v.epsilon == pytest.approx(D.epsilon(plan, q=0.025, rounds=50, delta=1e-5, survivors=9))
    assert v.bytes_per_phone == plan.bytes_per_phone == 64


def test_measured_noise_in_the_sum_matches_the_view(model):
    v = model.view(min_survivors=6, dropped=2)
    plan = model.plan(6)
    gen = np.random.default_rng(0)
    shares = np.stack([D.skellam_noise(20_000, variance=plan.local_variance, rng=gen) for _ in range(v.survivors)])
    assert np.std(shares.sum(0)) / plan.scale == pytest.approx(v.sum_std, rel=0.03)


def test_epsilon_grows_as_phones_drop_and_refusal_below_the_plan(model):
    eps = model.epsilon_curve(8)
    assert np.all(np.diff(eps[2:]) < 0)  # more survivors, more noise, smaller epsilon
    assert math.isinf(eps[0]) and math.isinf(eps[1])
    assert not model.view(min_survivors=8, dropped=5).released  # 7 < 8
    assert model.view(min_survivors=8, dropped=4).released


def test_controls_redraw_and_readout(model):
    w = NW.noise_shares(model=model, min_survivors=8, dropped=0)
    b0, e0, r0 = w.bars.value, w.epsilon_chart.value, w.readout.value
    assert Image.open(io.BytesIO(b0)).size == (NW.BARS_W, NW.BARS_H)
    assert Image.open(io.BytesIO(e0)).size == (NW.EPS_W, NW.EPS_H)
    assert "released" in r0 and "sum of 12" in r0
    w.controls["dropped"].value = 6
    assert w.view.survivors == 6 and not w.view.released
    assert "refused" in w.readout.value and "sum of 6" in w.readout.value
    assert w.bars.value != b0 and w.epsilon_chart.value != e0
    before = model.cached()
    w.controls["min_survivors"].value = 5
    assert w.view.released and w.view.min_survivors == 5 and model.cached() == before + 1
    assert f"{w.view.epsilon:,.2f}" in w.readout.value
    assert w.last_update_seconds > 0


def test_bad_input(model):
    with pytest.raises(ValueError, match=r"min_survivors=1: must be an int in \[2, cohort=12\]"):
        model.view(min_survivors=1, dropped=0)
    with pytest.raises(ValueError, match=r"min_survivors=13: must be an int in \[2, cohort=12\]"):
        model.plan(13)
    with pytest.raises(ValueError, match=r"dropped=12: must be an int in \[0, cohort - 1 = 11\]"):
        model.view(min_survivors=4, dropped=12)
    with pytest.raises(ValueError, match=r"noise_multiplier=0: must be a number > 0"):
        NW.NoiseShareModel(**{**KW, "noise_multiplier": 0})
    with pytest.raises(ValueError, match=r"cohort=2: must be an int >= 3"):
        NW.NoiseShareModel(**{**KW, "cohort": 2})
    with pytest.raises(ValueError, match=r"bits=4"):
        NW.NoiseShareModel(**{**KW, "bits": 4})
