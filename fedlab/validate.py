"""Argument checks that give people clear errors.

Every public function validates its inputs with these helpers, so a bad
argument raises ``ValueError`` naming the argument, the value it got and what
is allowed, e.g. ``num_clients=0: must be a positive int``.
"""

from __future__ import annotations

import math
import numbers

import numpy as np


def positive_int(name: str, value, *, minimum: int = 1) -> int:
    """Return ``value`` as an int, or raise if it is not an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        allowed = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name}={value!r}: must be {allowed}")
    return int(value)


def positive_float(name: str, value, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float, or raise unless it is finite and > 0 (>= 0 if ``allow_zero``)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        allowed = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ValueError(f"{name}={value!r}: must be {allowed}")
    return float(value)


def fraction(name: str, value, *, include_zero: bool = False) -> float:
    """Return ``value`` if it lies in (0, 1] (or [0, 1] with ``include_zero``)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    low_ok = ok and (value >= 0 if include_zero else value > 0)
    if not (low_ok and value <= 1):
        interval = "[0, 1]" if include_zero else "(0, 1]"
        raise ValueError(f"{name}={value!r}: must be a number in {interval}")
    return float(value)


def one_of(name: str, value, allowed) -> object:
    """Return ``value`` if it is in ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: must be one of {sorted(map(repr, allowed))}")
    return value


def array(name: str, value, *, ndim: int | None = None, dtype_kind: str | None = None) -> np.ndarray:
    """Return ``value`` as an ndarray, checking its number of dimensions and dtype kind.

    ``dtype_kind`` is a string of allowed numpy kinds, e.g. ``"iu"`` for integers
    or ``"f"`` for floats.
    """
    arr = np.asarray(value)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} has shape {arr.shape}: must have {ndim} dimension(s)")
    if dtype_kind is not None and arr.dtype.kind not in dtype_kind:
        raise ValueError(f"{name} has dtype {arr.dtype}: must be of kind {dtype_kind!r}")
    return arr
