"""The one representation of model parameters used at every boundary.

A model's parameters are a ``list`` of float32 ``numpy.ndarray`` in the order
of ``torch.nn.Module.parameters()`` for the model built by
:func:`fedlab.models.build` (for a dense layer: weight ``[out, in]``, then bias
``[out]``). Clients receive this list, send back a list of the same shapes (a
*delta*), and every later lesson (compression, secure aggregation, DP, PySyft,
Flower) works on it. :func:`flatten` and :func:`unflatten` convert to and from a
single vector for the code that wants one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Params = list  # list[np.ndarray]; a plain alias so numpy 1.24 typing stays simple


def as_params(params: Sequence, *, name: str = "params") -> list[np.ndarray]:
    """Return ``params`` as a list of float32 arrays, checking it is a sequence of arrays."""
    if isinstance(params, np.ndarray) or not isinstance(params, Sequence):
        raise ValueError(
            f"{name} is a {type(params).__name__}: must be a list of numpy arrays "
            "(one per model tensor; see fedlab.params)"
        )
    out = []
    for i, p in enumerate(params):
        a = np.asarray(p)
        if a.dtype.kind not in "fiu":
            raise ValueError(f"{name}[{i}] has dtype {a.dtype}: must be numeric")
        out.append(a.astype(np.float32, copy=False))
    return out


def check_like(params: Sequence[np.ndarray], like: Sequence[np.ndarray], *, name: str = "params") -> None:
    """Raise ``ValueError`` unless ``params`` has the same number and shapes of tensors as ``like``."""
    if len(params) != len(like):
        raise ValueError(f"{name} has {len(params)} tensors: must have {len(like)} like the model")
    for i, (p, q) in enumerate(zip(params, like)):
        if np.shape(p) != np.shape(q):
            raise ValueError(f"{name}[{i}] has shape {np.shape(p)}: must be {np.shape(q)}")


def flatten(params: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate all tensors into one float32 vector of length ``num_params(params)``."""
    if len(params) == 0:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([np.asarray(p, dtype=np.float32).ravel() for p in params])


def unflatten(vector: np.ndarray, like: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Split ``vector`` into tensors with the shapes of ``like`` (inverse of :func:`flatten`)."""
    vector = np.asarray(vector)
    n = num_params(like)
    if vector.ndim != 1 or vector.size != n:
        raise ValueError(f"vector has shape {vector.shape}: must be ({n},) to match like")
    out, start = [], 0
    for p in like:
        size = int(np.prod(np.shape(p), dtype=np.int64))
        out.append(vector[start : start + size].reshape(np.shape(p)).astype(np.float32, copy=True))
        start += size
    return out


def num_params(params: Sequence[np.ndarray]) -> int:
    """Total number of scalars."""
    return int(sum(int(np.prod(np.shape(p), dtype=np.int64)) for p in params))


def num_bytes(params: Sequence[np.ndarray], *, bits: int = 32) -> int:
    """Bytes to send ``params`` uncompressed at ``bits`` per scalar (float32: 4 bytes each)."""
    return (num_params(params) * bits + 7) // 8


def add(a: Sequence[np.ndarray], b: Sequence[np.ndarray], *, scale: float = 1.0) -> list[np.ndarray]:
    """``a + scale * b``, tensor by tensor."""
    check_like(b, a, name="b")
    return [(np.asarray(x, np.float32) + np.float32(scale) * np.asarray(y, np.float32)) for x, y in zip(a, b)]


def subtract(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``a - b``, tensor by tensor."""
    return add(a, b, scale=-1.0)


def norm(params: Sequence[np.ndarray]) -> float:
    """Global L2 norm over all tensors (float64 accumulation)."""
    return float(np.sqrt(sum(float(np.sum(np.asarray(p, np.float64) ** 2)) for p in params)))


def allclose(a: Sequence[np.ndarray], b: Sequence[np.ndarray], *, rtol: float = 1e-5, atol: float = 1e-6) -> bool:
    """True when both have the same shapes and every tensor is close."""
    return len(a) == len(b) and all(
        np.shape(x) == np.shape(y) and np.allclose(x, y, rtol=rtol, atol=atol) for x, y in zip(a, b)
    )
