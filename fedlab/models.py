"""The course's models, described by a small frozen spec.

Three families, all classifiers over a flat feature vector ``x`` of shape
``[n, in_features]``:

- ``logreg``: multinomial logistic regression, ``z = x W^T + b``;
- ``mlp``: dense layers with an activation between them, e.g. 64-128-10;
- ``cnn``: for square images stored flat (8x8 digits): two 3x3 convolutions
  (the second with stride 2) and a dense output layer, in the spirit of the
  small CNNs used in gradient-inversion papers (Zhu et al. 2019).

A :class:`ModelSpec` is plain data. :func:`build` turns it into a
``torch.nn.Module`` (for the reference training loop and the attacks);
:func:`init_params` gives seeded initial parameters in the course's one
representation (:mod:`fedlab.params`); :func:`forward` is the same network as a
pure function of a list of tensors, which the batched engine and the attacks
use. Initialisation follows PyTorch's default (uniform in +-1/sqrt(fan_in)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fedlab import seeding, validate

ACTIVATIONS = ("relu", "sigmoid", "tanh")
KINDS = ("logreg", "mlp", "cnn")


@dataclass(frozen=True)
class ModelSpec:
    """What model to build.

    Attributes
    ----------
    kind
        ``"logreg"``, ``"mlp"`` or ``"cnn"``.
    in_features
        Length of the flat input vector (64 for 8x8 digits).
    num_classes
        Number of output classes.
    hidden
        Hidden layer widths (mlp) or convolution channels (cnn).
    activation
        ``"relu"``, ``"sigmoid"`` or ``"tanh"``.

    """

    kind: str
    in_features: int
    num_classes: int
    hidden: tuple[int, ...] = ()
    activation: str = "relu"

    def __post_init__(self):
        validate.one_of("kind", self.kind, KINDS)
        validate.positive_int("in_features", self.in_features)
        validate.positive_int("num_classes", self.num_classes, minimum=2)
        validate.one_of("activation", self.activation, ACTIVATIONS)
        for h in self.hidden:
            validate.positive_int("hidden width", h)
        if self.kind == "logreg" and self.hidden:
            raise ValueError(f"hidden={self.hidden!r}: logreg has no hidden layers")
        if self.kind == "mlp" and not self.hidden:
            raise ValueError("hidden=(): an mlp needs at least one hidden width, e.g. (128,)")
        if self.kind == "cnn":
            side = math.isqrt(self.in_features)
            if side * side != self.in_features:
                raise ValueError(f"in_features={self.in_features}: a cnn needs a square image (e.g. 64 for 8x8)")
            if len(self.hidden) != 2:
                raise ValueError(f"hidden={self.hidden!r}: a cnn takes two channel counts, e.g. (8, 16)")

    @property
    def image_side(self) -> int:
        """Side of the square image (cnn)."""
        return math.isqrt(self.in_features)


def logreg(in_features: int = 64, num_classes: int = 10) -> ModelSpec:
    """Multinomial logistic regression."""
    return ModelSpec("logreg", in_features, num_classes)


def mlp(
    in_features: int = 64, hidden: tuple[int, ...] | int = (128,), num_classes: int = 10, *, activation: str = "relu"
) -> ModelSpec:
    """A multilayer perceptron, e.g. ``mlp(64, (128,), 10)`` is McMahan et al.'s 2NN in miniature."""
    if isinstance(hidden, int):
        hidden = (hidden,)
    return ModelSpec("mlp", in_features, num_classes, tuple(hidden), activation)


def cnn(
    in_features: int = 64, channels: tuple[int, int] = (8, 16), num_classes: int = 10, *, activation: str = "relu"
) -> ModelSpec:
    """A small CNN for square images stored flat (see the module docstring)."""
    return ModelSpec("cnn", in_features, num_classes, tuple(channels), activation)


def _act_module(name: str) -> torch.nn.Module:
    return {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh}[name]()


def _cnn_out_side(side: int) -> int:
    return (side + 2 - 3) // 2 + 1  # second conv: kernel 3, padding 1, stride 2


def build(spec: ModelSpec, params: list[np.ndarray] | None = None, *, dtype=torch.float32) -> torch.nn.Module:
    """A ``torch.nn.Module`` for ``spec``; its ``parameters()`` order is the course's params order.

    If ``params`` is given it is loaded into the module, otherwise the module
    keeps torch's own initialisation (use :func:`init_params` for seeded ones).
    """
    if not isinstance(spec, ModelSpec):
        raise ValueError(f"spec={spec!r}: must be a fedlab.models.ModelSpec (e.g. models.mlp())")
    layers: list[torch.nn.Module] = []
    if spec.kind == "cnn":
        c1, c2 = spec.hidden
        side = spec.image_side
        out = _cnn_out_side(side)
        layers = [
            torch.nn.Unflatten(1, (1, side, side)),
            torch.nn.Conv2d(1, c1, 3, padding=1),
            _act_module(spec.activation),
            torch.nn.Conv2d(c1, c2, 3, padding=1, stride=2),
            _act_module(spec.activation),
            torch.nn.Flatten(),
            torch.nn.Linear(c2 * out * out, spec.num_classes),
        ]
    else:
        widths = (spec.in_features, *spec.hidden, spec.num_classes)
        for i in range(len(widths) - 1):
            layers.append(torch.nn.Linear(widths[i], widths[i + 1]))
            if i < len(widths) - 2:
                layers.append(_act_module(spec.activation))
    module = torch.nn.Sequential(*layers).to(dtype)
    if params is not None:
        set_params(module, params)
    return module


def shapes(spec: ModelSpec) -> list[tuple[int, ...]]:
    """Shapes of the parameter tensors, in order."""
    if spec.kind == "cnn":
        c1, c2 = spec.hidden
        out = _cnn_out_side(spec.image_side)
        return [(c1, 1, 3, 3), (c1,), (c2, c1, 3, 3), (c2,), (spec.num_classes, c2 * out * out), (spec.num_classes,)]
    widths = (spec.in_features, *spec.hidden, spec.num_classes)
    out: list[tuple[int, ...]] = []
    for i in range(len(widths) - 1):
        out += [(widths[i + 1], widths[i]), (widths[i + 1],)]
    return out


def check_params(spec: ModelSpec, params, *, name: str = "params") -> list[np.ndarray]:
    """Return ``params`` as float32 arrays, or raise if they do not fit ``spec``'s shapes."""
    from fedlab import params as P

    params = P.as_params(params, name=name)
    expected = shapes(spec)
    if len(params) != len(expected):
        raise ValueError(f"{name} has {len(params)} tensors: a {spec.kind} with this spec has {len(expected)}")
    for i, (p, e) in enumerate(zip(params, expected)):
        if tuple(p.shape) != e:
            raise ValueError(f"{name}[{i}] has shape {tuple(p.shape)}: this model needs {e}")
    return params


def init_params(spec: ModelSpec, *, rng: int | np.random.Generator) -> list[np.ndarray]:
    """Seeded initial parameters: each weight and bias uniform in +-1/sqrt(fan_in) (PyTorch's default)."""
    gen = seeding.as_generator(rng)
    out = []
    shp = shapes(spec)
    for i in range(0, len(shp), 2):
        w_shape, b_shape = shp[i], shp[i + 1]
        fan_in = int(np.prod(w_shape[1:]))
        bound = 1.0 / math.sqrt(fan_in)
        out.append(gen.uniform(-bound, bound, size=w_shape).astype(np.float32))
        out.append(gen.uniform(-bound, bound, size=b_shape).astype(np.float32))
    return out


def get_params(module: torch.nn.Module) -> list[np.ndarray]:
    """The module's parameters as a list of float32 numpy arrays (copies)."""
    return [p.detach().cpu().numpy().astype(np.float32, copy=True) for p in module.parameters()]


def set_params(module: torch.nn.Module, params: list[np.ndarray]) -> None:
    """Load ``params`` (the course's representation) into ``module`` in place."""
    current = list(module.parameters())
    if len(params) != len(current):
        raise ValueError(f"params has {len(params)} tensors: this model needs {len(current)}")
    with torch.no_grad():
        for i, (p, new) in enumerate(zip(current, params)):
            new = np.asarray(new)
            if tuple(new.shape) != tuple(p.shape):
                raise ValueError(f"params[{i}] has shape {new.shape}: this model needs {tuple(p.shape)}")
            p.copy_(torch.as_tensor(new, dtype=p.dtype))


def _act(name: str, z: torch.Tensor) -> torch.Tensor:
    if name == "relu":
        return torch.relu(z)
    if name == "sigmoid":
        return torch.sigmoid(z)
    return torch.tanh(z)


def forward(spec: ModelSpec, tensors: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Logits ``[n, num_classes]`` of the network with parameter tensors ``tensors`` on ``x`` ``[n, in_features]``.

    The same function as ``build(spec)``, written without a module so that it
    can be batched with ``torch.func.vmap`` and differentiated by the attacks.
    """
    if spec.kind == "cnn":
        side = spec.image_side
        h = x.reshape(x.shape[0], 1, side, side)
        h = _act(spec.activation, F.conv2d(h, tensors[0], tensors[1], padding=1))
        h = _act(spec.activation, F.conv2d(h, tensors[2], tensors[3], padding=1, stride=2))
        return F.linear(h.flatten(1), tensors[4], tensors[5])
    h = x
    n_layers = len(tensors) // 2
    for i in range(n_layers):
        h = F.linear(h, tensors[2 * i], tensors[2 * i + 1])
        if i < n_layers - 1:
            h = _act(spec.activation, h)
    return h


def evaluate(spec: ModelSpec, params: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of ``params`` on ``(x, y)``."""
    x = validate.array("x", x, ndim=2)
    y = validate.array("y", y, ndim=1, dtype_kind="iu")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]}: they must match")
    if x.shape[1] != spec.in_features:
        raise ValueError(f"x has {x.shape[1]} features: the model takes {spec.in_features}")
    with torch.no_grad():
        tensors = [torch.as_tensor(np.asarray(p, np.float32)) for p in params]
        logits = forward(spec, tensors, torch.as_tensor(x, dtype=torch.float32))
        yt = torch.as_tensor(y, dtype=torch.long)
        loss = F.cross_entropy(logits, yt).item()
        acc = (logits.argmax(1) == yt).float().mean().item()
    return float(loss), float(acc)


def predict(spec: ModelSpec, params: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """Predicted class per row of ``x``."""
    with torch.no_grad():
        tensors = [torch.as_tensor(np.asarray(p, np.float32)) for p in params]
        return forward(spec, tensors, torch.as_tensor(np.asarray(x), dtype=torch.float32)).argmax(1).numpy()
