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
    """a / b, with 0 wherever b == 0 (Keras `ops.divide_no_nan`).

    Results' hot path (a listing computes a thousand): two float arrays of one dtype and
    shape, as the metrics' variables are, take one masked divide, 6.4 -> 2.6 us."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype == b.dtype and a.dtype.kind == "f" and a.shape == b.shape:
        out = np.zeros(a.shape, a.dtype)
        np.divide(a, b, out=out, where=b != 0)
        return out
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
        values = multiply(values, sample_weight)
        if weight_ndim > 1:
            sample_weight = reduce_fn(sample_weight, axis=tuple(range(1, weight_ndim)))
    if values.ndim > 1:
        values = reduce_fn(values, axis=tuple(range(1, values.ndim)))
    return values, sample_weight


def mean(x: np.ndarray, axis: Any = None) -> np.ndarray:
    """Keras `ops.mean`: in x's float dtype; integers and booleans give float32 (not a
    truncated integer mean: `Mean(dtype="int32")` truncates only when it adds to its state)."""
    if not np.issubdtype(x.dtype, np.floating):
        return np.asarray(np.mean(x, axis=axis), dtype=np.float32)
    return np.mean(x, axis=axis, dtype=x.dtype)


def multiply(x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """Keras `ops.multiply` type promotion: a float times an integer keeps the float's dtype
    (numpy would widen float32 x int32 to float64)."""
    float1, float2 = np.issubdtype(x1.dtype, np.floating), np.issubdtype(x2.dtype, np.floating)
    if float1 and not float2:
        x2 = x2.astype(x1.dtype)
    elif float2 and not float1:
        x1 = x1.astype(x2.dtype)
    return x1 * x2


def total(x: np.ndarray, axis: Any = None) -> np.ndarray:
    return np.sum(x, axis=axis, dtype=x.dtype)


# -- helpers for the loss-style wrappers (accuracy, probabilistic, hinge) ------------------


def float_pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """`y_pred` as a float array (float32 unless it already is float) and `y_true` cast to its
    dtype: Keras computes a wrapped metric function in y_pred's dtype, not the metric dtype,
    which only sets the dtype of the accumulated state."""
    y_pred = np.asarray(y_pred)
    if not np.issubdtype(y_pred.dtype, np.floating):
        y_pred = y_pred.astype(np.float32)
    return np.asarray(y_true, dtype=y_pred.dtype), y_pred


def shape_str(x: np.ndarray) -> str:
    return str(list(np.shape(x)))


def require_rank(x: np.ndarray, min_rank: int, what: str, metric: str) -> None:
    if x.ndim < min_rank:
        raise InvalidInput(f"{metric} expects {what} of rank >= {min_rank}; "
                           f"got shape {shape_str(x)}")


def require_same_shape(y_true: np.ndarray, y_pred: np.ndarray, metric: str) -> None:
    if y_true.shape != y_pred.shape:
        raise InvalidInput(f"{metric} expects y_true and y_pred of the same shape; got "
                           f"y_true {shape_str(y_true)} and y_pred {shape_str(y_pred)}")


def require_broadcastable(y_true: np.ndarray, y_pred: np.ndarray, metric: str) -> None:
    try:
        np.broadcast_shapes(y_true.shape, y_pred.shape)
    except ValueError:
        raise InvalidInput(f"{metric} expects y_true and y_pred of broadcast-compatible "
                           f"shapes; got y_true {shape_str(y_true)} and y_pred "
                           f"{shape_str(y_pred)}") from None


def canonical_axis(axis: int, ndim: int, what: str, metric: str) -> int:
    """`axis` as a non-negative index into an array of rank `ndim`."""
    if not -ndim <= axis < ndim:
        raise InvalidInput(f"{metric}: axis {axis} is out of range for {what} of rank {ndim}; "
                           f"expected an axis in [{-ndim}, {ndim - 1}]")
    return axis % ndim


def argmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Keras `ops.argmax`: the first maximum, with -0.0 ranked below +0.0 (Keras replaces a
    negative zero by the smallest negative float before comparing)."""
    x = np.asarray(x)
    if x.shape[axis] == 0:
        raise InvalidInput(f"cannot take the argmax of an empty axis (shape {shape_str(x)})")
    if np.issubdtype(x.dtype, np.floating):
        x = np.where((x == 0) & np.signbit(x), -np.finfo(x.dtype).tiny, x)
    return np.argmax(x, axis=axis)


def check_class_ids(labels: np.ndarray, num_classes: int, metric: str,
                    ignore_class: int | None = None) -> None:
    """Sparse labels must be integers in [0, num_classes), except `ignore_class` if given.

    Keras does not check: an id >= num_classes raises deep inside numpy, a negative id
    silently wraps around (numpy indexing) or counts as an all-zero one-hot row."""
    labels = np.asarray(labels)
    if ignore_class is not None:
        labels = labels[labels != ignore_class]
    bad = ~np.isfinite(labels) | (labels != np.round(labels)) | (labels < 0) | (
        labels >= num_classes)
    if np.any(bad):
        example = labels[bad].ravel()[:5].tolist()
        also = f" or the ignore_class {ignore_class}" if ignore_class is not None else ""
        raise InvalidInput(
            f"{metric} expects sparse labels that are integer class ids in "
            f"[0, {num_classes}) (num_classes = y_pred's class axis){also}; "
            f"got {int(np.count_nonzero(bad))} other value(s), e.g. {example}"
        )


# -- helpers for the regression family -------------------------------------------------------


def softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + exp(x)) without overflow, in x's dtype (Keras `ops.softplus`)."""
    x = np.asarray(x)
    return np.logaddexp(x, np.zeros((), dtype=x.dtype))


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """x / ||x|| along `axis`, as Keras `ops.normalize`: `x * min(rsqrt(sum(x^2)), 1/eps)`, so a
    zero vector stays zero and a norm below 1e-7 is treated as 1e-7.

    (Keras' numpy backend takes a different, numpy-only branch of `utils.normalize` that
    divides by the raw norm and mishandles axis 0; this follows the JAX/TF/torch backends.)"""
    x = np.asarray(x)
    square_sum = np.sum(np.square(x), axis=axis, keepdims=True, dtype=x.dtype)
    with np.errstate(divide="ignore"):
        inv_norm = 1.0 / np.sqrt(square_sum)
    return x * np.minimum(inv_norm, np.asarray(1.0 / EPSILON, dtype=x.dtype))

