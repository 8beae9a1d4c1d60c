import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlab import models
from fedlab import params as P

SPECS = [
    models.logreg(64, 10),
    models.mlp(64, (128,), 10),
    models.mlp(64, (32, 16), 10, activation="sigmoid"),
    models.mlp(12, 8, 3, activation="tanh"),
    models.cnn(64, (4, 6), 10, activation="sigmoid"),
    models.cnn(36, (3, 5), 4),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.kind}-{s.activation}-{s.hidden}")
def test_shapes_match_torch_module_and_forward_equals_module(spec):
    params = models.init_params(spec, rng=3)
    module = models.build(spec, params)
    assert [tuple(p.shape) for p in module.parameters()] == models.shapes(spec)
    assert [p.shape for p in params] == models.shapes(spec)
    x = torch.as_tensor(np.random.default_rng(0).random((5, spec.in_features)), dtype=torch.float32)
    with torch.no_grad():
        want = module(x)
        got = models.forward(spec, [torch.as_tensor(p) for p in params], x)
    torch.testing.assert_close(got, want)
    assert P.allclose(models.get_params(module), params, atol=0, rtol=0)


def test_init_is_seeded_and_bounded():
    spec = models.mlp(64, (128,), 10)
    a, b, c = (models.init_params(spec, rng=s) for s in (1, 1, 2))
    assert P.allclose(a, b, atol=0, rtol=0)
    assert not P.allclose(a, c)
    assert np.abs(a[0]).max() <= 1 / np.sqrt(64) and np.abs(a[2]).max() <= 1 / np.sqrt(128)
    assert all(p.dtype == np.float32 for p in a)


def test_evaluate_known_answer():
    spec = models.logreg(2, 2)
    # logits = x W^T + b with W = I: class = argmax of x
    params = [np.eye(2, dtype=np.float32), np.zeros(2, np.float32)]
    x = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0]], np.float32)
    y = np.array([0, 1, 1])
    loss, acc = models.evaluate(spec, params, x, y)
    assert acc == pytest.approx(2 / 3)
    expected = np.mean([np.log1p(np.exp(-2)), np.log1p(np.exp(-2)), np.log1p(np.exp(1))])
    assert loss == pytest.approx(expected, rel=1e-5)
    assert models.predict(spec, params, x).tolist() == [0, 1, 0]


@pytest.mark.parametrize(
    "call, word",
    [
        (lambda: models.ModelSpec("rnn", 64, 10), "kind"),
        (lambda: models.mlp(64, (), 10), "hidden"),
        (lambda: models.mlp(64, (0,), 10), "hidden"),
        (lambda: models.mlp(64, 8, 1), "num_classes"),
        (lambda: models.mlp(64, 8, 10, activation="gelu"), "activation"),
        (lambda: models.cnn(60), "in_features"),
        (lambda: models.init_params(models.logreg(), rng=None), "rng"),
        (lambda: models.check_params(models.logreg(4, 2), [np.zeros((2, 3)), np.zeros(2)]), "params[0]"),
        (lambda: models.check_params(models.logreg(4, 2), [np.zeros((2, 4))]), "params"),
        (
            lambda: models.evaluate(
                models.logreg(4, 2), models.init_params(models.logreg(4, 2), rng=0), np.zeros((3, 5)), np.zeros(3, int)
            ),
            "features",
        ),
        (lambda: models.build("mlp"), "spec"),
    ],
)
def test_bad_input_names_the_argument(call, word):
    with pytest.raises(ValueError, match=word.replace("[", r"\[").replace("]", r"\]")):
        call()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 5)), min_size=1, max_size=4), st.integers(0, 2**31))
def test_flatten_unflatten_roundtrip(shapes, seed):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    vec = P.flatten(params)
    assert vec.shape == (P.num_params(params),)
    assert P.allclose(P.unflatten(vec, params), params, atol=0, rtol=0)
    assert P.num_bytes(params) == 4 * vec.size
    assert P.norm(params) == pytest.approx(float(np.linalg.norm(vec.astype(np.float64))), rel=1e-6)


def test_params_errors():
    with pytest.raises(ValueError, match="vector"):
        P.unflatten(np.zeros(5), [np.zeros((2, 2))])
    with pytest.raises(ValueError, match="list of numpy arrays"):
        P.as_params(np.zeros(3))
    with pytest.raises(ValueError, match=r"b\[0\]"):
        P.add([np.zeros(2)], [np.zeros(3)])
