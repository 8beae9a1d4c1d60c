"""The codec between a learner's kernel and the grader (fedlab/wire.py): what crosses, and what never does."""

import base64
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedlab import fedavg, models, wire


def roundtrip(value):
    return wire.decode(wire.loads(wire.dumps(value)))


def test_plain_values_and_containers_cross_unchanged():
    value = {
        "a": [1, 2.5, None, True, "x"],
        (1, "k"): (float("nan"), float("inf"), -0.0),
        3: {1, 2},
        "f": frozenset({"z"}),
        "b": b"\x00\xff",
    }
    back = roundtrip(value)
    assert back["a"] == value["a"] and back[3] == {1, 2} and back["f"] == frozenset({"z"}) and back["b"] == b"\x00\xff"
    nan, inf, zero = back[(1, "k")]
    assert np.isnan(nan) and inf == float("inf") and zero == 0.0 and type(back[(1, "k")]) is tuple


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64, np.int64, np.uint32, np.bool_, np.complex128, np.int8]),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
    )
)
def test_arrays_cross_with_dtype_shape_and_bits(a):
    b = roundtrip(a)
    assert b.dtype == a.dtype and b.shape == a.shape
    assert a.tobytes() == b.tobytes()


def test_numpy_scalars_tensors_generators_and_fedlab_records_cross():
    assert type(roundtrip(np.float32(1.5))) is np.float32
    t = roundtrip(torch.arange(6, dtype=torch.float32).reshape(2, 3).requires_grad_())
    assert isinstance(t, torch.Tensor) and t.shape == (2, 3) and t.requires_grad and t[1, 2].item() == 5.0
    gen = np.random.default_rng(4)
    gen.random(3)
    back = roundtrip(gen)
    assert back.random() == gen.random()
    out = roundtrip(fedavg.ClientOutput([np.ones((2, 2), np.float32)], 7))
    assert isinstance(out, fedavg.ClientOutput) and out.num_examples == 7 and out.delta[0].dtype == np.float32
    spec = roundtrip(models.mlp(6, (5,), 3))
    assert spec == models.mlp(6, (5,), 3)


class Arbitrary:
    def __eq__(self, other):
        return True


@pytest.mark.parametrize(
    "value, words",
    [
        (Arbitrary(), "Arbitrary"),
        (np.array([object()], dtype=object), "dtype object"),
        (lambda: 1, "function"),
        ([[[[1]]]], None),  # fine: shallow
    ],
)
def test_anything_else_is_refused_by_name(value, words):
    if words is None:
        assert roundtrip(value) == value
        return
    with pytest.raises(wire.Unsupported, match=words):
        roundtrip(value)


def _tagged(**obj):
    return json.dumps(obj)


@pytest.mark.parametrize(
    "text, words",
    [
        (_tagged(**{"$": "record", "type": "os:system", "fields": {}}), "os.system"),
        (_tagged(**{"$": "record", "type": "fedlab.grader:Limits", "fields": {}}), "fedlab.grader.Limits"),
        (_tagged(**{"$": "record", "type": "fedlab.checks:Exercise", "fields": {}}), "fedlab.checks"),
        (_tagged(**{"$": "record", "type": "fedlab.models:build", "fields": {}}), "not a fedlab record"),
        (_tagged(**{"$": "ndarray", "dtype": "|O", "shape": [1], "b64": ""}), "dtype object"),
        (_tagged(**{"$": "ndarray", "dtype": "<f8", "shape": [4], "b64": base64.b64encode(b"x").decode()}), "bytes"),
        (_tagged(**{"$": "pickle", "data": "gASVAAAAAAAAAAA="}), "tagged 'pickle'"),
        (_tagged(**{"$": "float", "repr": "__import__('os')"}), "garbled float"),
        ("[" * 5000 + "]" * 5000, "nested deeper|not JSON"),
        ('{"a": NaN}', "not JSON"),
    ],
)
def test_hostile_replies_are_refused_never_executed(text, words):
    with pytest.raises(wire.Unsupported, match=words):
        wire.decode(wire.loads(text))


def test_oversized_replies_are_refused_before_parsing(monkeypatch):
    monkeypatch.setattr(wire, "MAX_REPLY_CHARS", 100)
    with pytest.raises(wire.Unsupported, match="over 100 characters"):
        wire.loads(wire.dumps(list(range(100))))


def test_serve_reports_return_value_argument_state_and_exceptions():
    def answer(xs, *, scale):
        xs[0] *= scale
        return xs.sum()

    def broken(xs, *, scale):
        raise ValueError("scale must be positive")

    request = wire.encode_request((np.array([1.0, 2.0]),), {"scale": 3.0})
    reply = json.loads(wire.serve({"f": answer, "g": broken}, "f", request, "n1").text)
    assert reply["nonce"] == "n1" and wire.decode(reply["value"]) == 5.0
    assert wire.decode(reply["args"][0]).tolist() == [3.0, 2.0]
    raised = json.loads(wire.serve({"g": broken}, "g", request, "n2").text)["raised"]
    assert raised["type"] == "ValueError" and "positive" in raised["message"] and "raise ValueError" in raised["where"]
    assert json.loads(wire.serve({}, "f", request, "n3").text) == {"nonce": "n3", "missing": True}


def test_subclasses_of_plain_containers_cross_as_the_plain_ones():
    import collections
    import enum

    class Level(enum.IntEnum):
        HIGH = 3

    pair = collections.namedtuple("pair", "a b")(1, 2)
    back = roundtrip([collections.defaultdict(float, {"x": 1.0}), collections.OrderedDict(y=2), pair, Level.HIGH])
    assert back == [{"x": 1.0}, {"y": 2}, (1, 2), 3]
    assert [type(v) for v in back] == [dict, dict, tuple, int]

    class Sub(np.ndarray):
        pass

    assert type(roundtrip(np.zeros(3).view(Sub))) is np.ndarray
    assert roundtrip(torch.Size([2, 3])) == (2, 3)
