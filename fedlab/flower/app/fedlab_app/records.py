"""Flower records <-> the plain values of :mod:`fedlab.flower.core` (the only place the two meet)."""

from __future__ import annotations

from flwr.app import Array, ArrayRecord, ConfigRecord

from fedlab.flower import core


def to_array_record(params) -> ArrayRecord:
    """The course's parameters (list of float32 arrays) as an ``ArrayRecord`` with keys "0", "1", ..."""
    return ArrayRecord({k: Array(v) for k, v in core.params_to_record(params).items()})


def from_array_record(record: ArrayRecord) -> list:
    """An ``ArrayRecord`` with keys "0", "1", ... back to the list of float32 arrays."""
    return core.record_to_params({k: v.numpy() for k, v in record.items()})


def to_config_record(values: dict) -> ConfigRecord:
    """A plain dict of str/int/float values as a ``ConfigRecord``."""
    return ConfigRecord(dict(values))


def from_config_record(record: ConfigRecord) -> dict:
    """A ``ConfigRecord`` as a plain dict."""
    return dict(record)
