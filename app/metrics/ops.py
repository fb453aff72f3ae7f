"""Numpy helpers shared by the metric families (the Keras `ops` each family relies on)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from app.errors import InvalidInput

EPSILON = 1e-7  # keras.backend.epsilon()


def as_array(x: Any, dtype: str | np.dtype) -> np.ndarray:
    return np.asarray(x, dtype=dtype)


def divide_no_nan(a: Any, b: Any) -> np.ndarray:
    """a / b, with 0 wherever b == 0 (Keras `ops.divide_no_nan`)."""
    a, b = np.asarray(a), np.asarray(b)
    safe = np.where(b == 0, 1, b)
    return np.where(b == 0, np.zeros_like(a / safe), a / safe)


def broadcast(x: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    try:
        return np.broadcast_to(x, shape)
    except ValueError:
        raise InvalidInput(
            f"{what} of shape {list(x.shape)} cannot be broadcast to shape {list(shape)}"
        ) from None


def squeeze_or_expand_to_same_rank(
    x1: np.ndarray, x2: np.ndarray, expand_rank_1: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Squeeze or expand the last axis when the ranks differ by exactly one (Keras rule)."""
    r1, r2 = x1.ndim, x2.ndim
    if r1 == r2:
        return x1, x2
    if r1 == r2 + 1 and x1.shape[-1] == 1:
        if r2 == 1 and expand_rank_1:
            x2 = np.expand_dims(x2, -1)
        else:
            x1 = np.squeeze(x1, -1)
    if r2 == r1 + 1 and x2.shape[-1] == 1:
        if r1 == 1 and expand_rank_1:
            x1 = np.expand_dims(x1, -1)
        else:
            x2 = np.squeeze(x2, -1)
    return x1, x2


Reducer = Callable[..., np.ndarray]


def reduce_to_samplewise_values(
    values: np.ndarray, sample_weight: np.ndarray | None, reduce_fn: Reducer, dtype: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Weight and reduce `values` to one value per sample, as Keras' Mean/Sum do."""
    values = np.asarray(values, dtype=dtype)
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=dtype)
        values, sample_weight = squeeze_or_expand_to_same_rank(values, sample_weight)
        weight_ndim, values_ndim = sample_weight.ndim, values.ndim
        if values_ndim > weight_ndim:
            values = reduce_fn(values, axis=tuple(range(weight_ndim, values_ndim)))
        sample_weight = broadcast(sample_weight, values.shape, "sample_weight")
        values = values * sample_weight
        if weight_ndim > 1:
            sample_weight = reduce_fn(sample_weight, axis=tuple(range(1, weight_ndim)))
    if values.ndim > 1:
        values = reduce_fn(values, axis=tuple(range(1, values.ndim)))
    return values, sample_weight


def mean(x: np.ndarray, axis: Any = None) -> np.ndarray:
    return np.mean(x, axis=axis, dtype=x.dtype)


def total(x: np.ndarray, axis: Any = None) -> np.ndarray:
    return np.sum(x, axis=axis, dtype=x.dtype)
