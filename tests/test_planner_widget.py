"""The privacy budget planner in-process (no browser): the shipped grid is what its code makes, both controls
refresh the display, epsilon is the accountant's, "nothing fits" is said, and moves are quick."""

import hashlib
import io
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fedlab import capstone, data, dp
from fedlab.widgets import planner as F


@pytest.fixture(scope="module")
def model():
    return F.PlannerModel()


@pytest.fixture
def widget(model):
    return F.budget_planner(model=model)


def test_shipped_grid_matches_its_checksum_datasheet_and_config():
    raw = F.grid_path().read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    assert sha == F.GRID_SHA256
    sheet = (data.datasets_dir() / "capstone_planner.md").read_text()
    assert sha in sheet and f"{len(raw):,}" in sheet
    grid = F.load_grid()
    assert grid.config == json.loads(json.dumps(F.GRID_CONFIG))
    assert grid.accuracy.shape == (2, 3, 6, 4, 6) and grid.bytes_per_user.shape == grid.accuracy.shape
    assert np.all((grid.accuracy > 0) & (grid.accuracy <= 1)) and np.all(grid.bytes_per_user > 0)
    assert F.grid_bytes(json.loads(raw)) == raw  # canonical form


def test_a_slice_of_the_grid_is_reproduced_by_its_code():
    grid = F.load_grid()
    c, i, b = 0, 2, 1  # 10 users a round, z = 0.8, 12 bits: the quickest kind of cell
    cell = F.run_cell(grid.config, seed=1, clients_per_round=grid.clients_per_round[c],
                      noise_multiplier=grid.noise_multipliers[i], bits=grid.bits[b])  # fmt: skip
    # float32 training is not bit-identical across CPUs: accuracy to data.GRID_REPRODUCE_ATOL, integers exactly
    np.testing.assert_allclose(cell["accuracy"], grid.accuracy[1, c, i, b], atol=data.GRID_REPRODUCE_ATOL)
    assert cell["bytes_per_user"] == grid.bytes_per_user[1, c, i, b].tolist()
    assert cell["refused"] == grid.refused[1, c, i, b]


def test_bytes_grow_with_rounds_users_and_bits():
    g = F.load_grid()
    nb = g.bytes_per_user.mean(0)
    assert np.all(np.diff(nb, axis=-1) > 0)  # more rounds
    assert np.all(np.diff(nb, axis=0) > 0)  # more users a round: more shares each
    assert np.all(np.diff(nb, axis=2) >= 0)  # more bits


def test_bad_grid_file_is_refused(tmp_path):
    bad = tmp_path / "grid.json"
    obj = json.loads(F.grid_path().read_bytes())
    obj["accuracy"] = obj["accuracy"][:1]
    bad.write_bytes(F.grid_bytes(obj))
    with pytest.raises(ValueError, match="accuracy has shape"):
        F.load_grid(bad)
    with pytest.raises(FileNotFoundError, match="make_capstone_planner"):
        F.load_grid(tmp_path / "missing.json")


def test_initial_view(widget):
    import ipywidgets

    assert isinstance(widget, ipywidgets.VBox)
    assert list(widget.controls) == ["target_epsilon", "budget_bytes"]
    assert all(isinstance(w, ipywidgets.SelectionSlider) for w in widget.controls.values())
    assert Image.open(io.BytesIO(widget.chart.value)).size == (F.CHART_W, F.CHART_H)
    assert widget.plan.fits and "best accuracy" in widget.readout.value and "&delta; = 1e-05" in widget.readout.value


def test_plan_is_the_best_fitting_configuration(model):
    p = model.plan(2.0, 20_000)
    g = model.grid
    c, i, b, r = (g.clients_per_round.index(p.clients_per_round), g.noise_multipliers.index(p.noise_multiplier),
                  g.bits.index(p.bits), g.rounds.index(p.rounds))  # fmt: skip
    want_eps = capstone.epsilon(num_users=1200, q=p.clients_per_round / 1200, noise_multiplier=p.noise_multiplier,
                                rounds=p.rounds, dropout_rate=0.1)  # fmt: skip
    assert p.epsilon == pytest.approx(want_eps) and p.epsilon <= 2.0
    # the refusal term counts: never below the plain accountant
    assert p.epsilon >= dp.epsilon(q=p.clients_per_round / 1200, noise_multiplier=p.noise_multiplier,
                                   steps=p.rounds, delta=1e-5)  # fmt: skip
    assert p.bytes_per_user == pytest.approx(g.bytes_per_user[:, c, i, b, r].mean()) and p.bytes_per_user <= 20_000
    assert p.accuracy == pytest.approx(g.accuracy[:, c, i, b, r].mean())
    # brute force over every configuration
    best = -1.0
    for idx in np.ndindex(*g.accuracy.shape[1:]):
        cc, ii, _, rr = idx
        z = g.noise_multipliers[ii]
        eps = capstone.epsilon(num_users=1200, q=g.clients_per_round[cc] / 1200, noise_multiplier=z,
                               rounds=g.rounds[rr], dropout_rate=0.1)  # fmt: skip
        if eps <= 2.0 and g.bytes_per_user[(slice(None), *idx)].mean() <= 20_000:
            best = max(best, g.accuracy[(slice(None), *idx)].mean())
    assert p.accuracy == pytest.approx(best)
    assert model.plan(math.inf, math.inf).accuracy >= p.accuracy  # looser never worse


def test_nothing_fits_is_said(widget):
    widget.controls["budget_bytes"].value = 100  # below every run's bytes
    widget.controls["target_epsilon"].value = 0.25
    assert not widget.plan.fits
    assert "No configuration fits" in widget.readout.value


def test_each_control_refreshes_the_display(widget):
    for name, value in (("target_epsilon", 0.5), ("budget_bytes", 200_000), ("target_epsilon", math.inf)):
        before = (widget.readout.value, bytes(widget.chart.value))
        widget.controls[name].value = value
        assert widget.readout.value != before[0], f"moving {name} left the readout unchanged"
        if name == "budget_bytes":
            assert bytes(widget.chart.value) != before[1]


def test_bad_arguments_are_refused_with_the_name(model):
    with pytest.raises(ValueError, match="target_epsilon=-1"):
        model.plan(-1, 1000)
    with pytest.raises(ValueError, match="budget_bytes=nan"):
        model.plan(1.0, float("nan"))
    with pytest.raises(ValueError, match="target_epsilon=3.0"):
        F.budget_planner(model=model, target_epsilon=3.0)
    with pytest.raises(ValueError, match="budget_bytes=123"):
        F.budget_planner(model=model, budget_bytes=123)


def test_capstone_math_stays_widget_free():
    code = "import sys, fedlab.capstone, fedlab.exercises.capstone; print('ipywidgets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cells_whose_refusal_term_exceeds_delta_never_fit(model):
    g = model.grid
    c10 = g.clients_per_round.index(10)
    assert np.all(np.isinf(model.epsilon[c10]))  # 10 users a round: a flipped round is likely; no guarantee
    p = model.plan(math.inf, math.inf)
    assert p.clients_per_round != 10
    for eps in (0.5, 1.0, 2.0, 4.0, 8.0):
        plan = model.plan(eps, math.inf)
        if plan.fits:
            assert plan.clients_per_round != 10
