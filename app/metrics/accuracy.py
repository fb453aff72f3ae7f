"""Accuracy metrics: the mean of a per-sample 0/1 match, as in `keras.metrics` (Keras 3).

Each metric is a `MeanMetricWrapper` around a module-level function returning one float32
match value per sample (the last axis reduced where Keras reduces it); `Mean` then averages
those values, weighted by `sample_weight`.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from app.errors import ConfigError, InvalidInput
from app.metrics import ops
from app.metrics.reduction import MeanMetricWrapper

FLOATX = np.float32  # Keras casts every match to floatx, whatever the metric dtype


# -- config validation ---------------------------------------------------------------------


def validate_threshold(threshold: Any) -> Any:
    if (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real)
            or not np.isfinite(float(threshold))):
        raise ConfigError(f"threshold must be a finite number; got {threshold!r}")
    return threshold


def validate_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ConfigError(f"k must be a positive integer; got {k!r}")
    return int(k)


def validate_flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise ConfigError(f"{key} must be true or false; got {value!r}")
    return bool(value)


# -- per-sample functions ------------------------------------------------------------------


def accuracy(y_true: Any, y_pred: Any) -> np.ndarray:
    """1 where `y_true == y_pred` exactly (y_true cast to y_pred's dtype), per element."""
    y_true, y_pred = ops.float_pair(y_true, y_pred)
    y_true, y_pred = ops.squeeze_or_expand_to_same_rank(y_true, y_pred)
    ops.require_broadcastable(y_true, y_pred, "Accuracy")
    return np.equal(y_true, y_pred).astype(FLOATX)


def _threshold_array(threshold: Any) -> np.ndarray:
    # Keras converts a Python float threshold to a float32 tensor, so y_pred is compared
    # with float32(threshold): p = float32(0.1) is not > threshold 0.1.
    if isinstance(threshold, numbers.Integral):
        return np.asarray(threshold, dtype=np.int64)
    return np.asarray(threshold, dtype=np.float32)


def binary_accuracy(y_true: Any, y_pred: Any, threshold: Any = 0.5) -> np.ndarray:
    """1 where `(y_pred > threshold)` (strict) equals the label exactly, per element.

    A label other than 0 or 1 (2, 0.3, -1) never matches."""
    y_pred = np.asarray(y_pred)
    y_true = np.asarray(y_true)
    y_true, y_pred = ops.squeeze_or_expand_to_same_rank(y_true, y_pred)
    ops.require_broadcastable(y_true, y_pred, "BinaryAccuracy")
    predicted = np.greater(y_pred, _threshold_array(threshold)).astype(y_true.dtype)
    return np.equal(y_true, predicted).astype(FLOATX)


def _matches_like(matches: np.ndarray, shape: tuple[int, ...], metric: str) -> np.ndarray:
    if matches.size != int(np.prod(shape)):
        raise InvalidInput(f"{metric}: y_true and y_pred describe different numbers of "
                           f"samples ({int(np.prod(shape))} labels, {matches.size} matches)")
    return matches.reshape(shape)


def categorical_accuracy(y_true: Any, y_pred: Any) -> np.ndarray:
    """1 where the argmax of the one-hot label equals the argmax of y_pred (first maximum on
    ties, -0.0 below +0.0), per row."""
    y_pred = np.asarray(y_pred)
    ops.require_rank(y_pred, 1, "y_pred", "CategoricalAccuracy")
    ops.require_rank(np.asarray(y_true), 1, "y_true", "CategoricalAccuracy")
    true_ids = ops.argmax(np.asarray(y_true), axis=-1)
    labels_shape = true_ids.shape
    reshape = true_ids.ndim == y_pred.ndim
    if reshape:  # y_true had one more axis than y_pred; Keras squeezes it from the ids
        if true_ids.shape[-1] != 1:
            raise InvalidInput(f"CategoricalAccuracy expects one-hot y_true of the same rank "
                               f"as y_pred; got y_true {ops.shape_str(y_true)} and y_pred "
                               f"{ops.shape_str(y_pred)}")
        true_ids = np.squeeze(true_ids, -1)
    pred_ids = ops.argmax(y_pred, axis=-1)
    ops.require_broadcastable(true_ids, pred_ids, "CategoricalAccuracy")
    matches = np.equal(true_ids, pred_ids).astype(FLOATX)
    return _matches_like(matches, labels_shape, "CategoricalAccuracy") if reshape else matches


def sparse_categorical_accuracy(y_true: Any, y_pred: Any) -> np.ndarray:
    """1 where the integer label equals the argmax of y_pred; labels `(N,)` or `(N, 1)`."""
    y_true, y_pred = ops.float_pair(y_true, y_pred)
    ops.require_rank(y_pred, 1, "y_pred", "SparseCategoricalAccuracy")
    ops.check_class_ids(y_true, y_pred.shape[-1], "SparseCategoricalAccuracy")
    labels_shape = y_true.shape
    reshape = y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1
    if reshape:
        y_true = np.squeeze(y_true, -1)
    pred_ids = ops.argmax(y_pred, axis=-1).astype(y_true.dtype)
    ops.require_broadcastable(y_true, pred_ids, "SparseCategoricalAccuracy")
    matches = np.equal(y_true, pred_ids).astype(FLOATX)
    if reshape:
        matches = _matches_like(matches, labels_shape, "SparseCategoricalAccuracy")
    if matches.ndim > 1 and matches.shape[-1] == 1:
        matches = np.squeeze(matches, -1)
    return matches


def _rows(y_pred: np.ndarray, metric: str) -> np.ndarray:
    """y_pred as `(rows, last axis)`: Keras flattens every leading axis into rows."""
    if y_pred.ndim < 2:
        raise InvalidInput(f"{metric} expects y_pred of rank >= 2 (samples, classes); "
                           f"got shape {ops.shape_str(y_pred)}")
    return y_pred.reshape(-1, y_pred.shape[-1])


def _per_label(targets: np.ndarray, rows: np.ndarray, metric: str) -> np.ndarray:
    """The labels flattened to one per row of `rows`."""
    flat = targets.reshape(-1)
    if flat.shape[0] != rows.shape[0]:
        raise InvalidInput(f"{metric}: y_true has {flat.shape[0]} label(s) but y_pred has "
                           f"{rows.shape[0]} row(s) of scores")
    return flat


def in_top_k(targets: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Whether each row's target score is among the row's `k` largest scores.

    The rank counts only strictly greater scores, so a tie with the k-th score is a hit; a
    NaN target score is never a hit and NaN scores rank above every number (Keras' numpy
    backend sorts them last, then reverses the order)."""
    top = np.sort(scores, axis=-1)[:, ::-1][:, :k]
    target_scores = np.take_along_axis(scores, targets[:, None], axis=-1)
    return np.any(target_scores >= top, axis=-1)


def top_k_categorical_accuracy(y_true: Any, y_pred: Any, k: int = 5) -> np.ndarray:
    """1 where the argmax of the one-hot label is among the `k` highest scores of y_pred."""
    y_true, y_pred = ops.float_pair(y_true, y_pred)
    ops.require_rank(y_true, 1, "y_true", "TopKCategoricalAccuracy")
    true_ids = ops.argmax(y_true, axis=-1)
    rows = _rows(y_pred, "TopKCategoricalAccuracy")
    targets = _per_label(true_ids, rows, "TopKCategoricalAccuracy")
    return in_top_k(targets, rows, k).astype(FLOATX).reshape(true_ids.shape)


def _check_integer_ids(y_true: np.ndarray, metric: str) -> None:
    bad = ~np.isfinite(y_true) | (y_true != np.round(y_true))
    if np.any(bad):
        raise InvalidInput(f"{metric} with from_sorted_ids expects integer ids in y_true; "
                           f"got {int(np.count_nonzero(bad))} other value(s), e.g. "
                           f"{y_true[bad].ravel()[:5].tolist()}")


def sparse_top_k_categorical_accuracy(y_true: Any, y_pred: Any, k: int = 5,
                                      from_sorted_ids: bool = False) -> np.ndarray:
    """1 where the integer label is among the `k` highest scores of y_pred or, with
    `from_sorted_ids`, among the first `k` ids of y_pred (ids sorted by score)."""
    y_true, y_pred = ops.float_pair(y_true, y_pred)
    metric = "SparseTopKCategoricalAccuracy"
    rows = _rows(y_pred, metric)
    targets = _per_label(y_true, rows, metric)
    if from_sorted_ids:
        _check_integer_ids(y_true, metric)
        hits = np.any(targets[:, None] == rows[:, :k], axis=-1)
    else:
        ops.check_class_ids(y_true, y_pred.shape[-1], metric)
        hits = in_top_k(targets.astype(np.int64), rows, k)
    return hits.astype(FLOATX).reshape(y_true.shape)


# -- metrics -------------------------------------------------------------------------------


class Accuracy(MeanMetricWrapper):
    """How often predictions equal labels exactly."""

    def __init__(self, name: str | None = "accuracy", dtype: str | None = None) -> None:
        super().__init__(fn=accuracy, name=name, dtype=dtype)


class BinaryAccuracy(MeanMetricWrapper):
    """How often `y_pred > threshold` matches a 0/1 label."""

    def __init__(self, name: str | None = "binary_accuracy", dtype: str | None = None,
                 threshold: float = 0.5) -> None:
        super().__init__(fn=binary_accuracy, name=name,
                         dtype=dtype, threshold=validate_threshold(threshold))


class CategoricalAccuracy(MeanMetricWrapper):
    """How often the argmax of y_pred matches the one-hot label."""

    def __init__(self, name: str | None = "categorical_accuracy",
                 dtype: str | None = None) -> None:
        super().__init__(fn=categorical_accuracy, name=name,
                         dtype=dtype)


class SparseCategoricalAccuracy(MeanMetricWrapper):
    """How often the argmax of y_pred matches the integer label."""

    def __init__(self, name: str | None = "sparse_categorical_accuracy",
                 dtype: str | None = None) -> None:
        super().__init__(fn=sparse_categorical_accuracy,
                         name=name, dtype=dtype)


class TopKCategoricalAccuracy(MeanMetricWrapper):
    """How often the one-hot label is among the top `k` predictions."""

    def __init__(self, k: int = 5, name: str | None = "top_k_categorical_accuracy",
                 dtype: str | None = None) -> None:
        super().__init__(fn=top_k_categorical_accuracy,
                         name=name, dtype=dtype,
                         k=validate_k(k))


class SparseTopKCategoricalAccuracy(MeanMetricWrapper):
    """How often the integer label is among the top `k` predictions."""

    def __init__(self, k: int = 5, name: str | None = "sparse_top_k_categorical_accuracy",
                 dtype: str | None = None, from_sorted_ids: bool = False) -> None:
        super().__init__(fn=sparse_top_k_categorical_accuracy,
                         name=name, dtype=dtype,
                         k=validate_k(k),
                         from_sorted_ids=validate_flag(from_sorted_ids, "from_sorted_ids"))

    def get_config(self) -> dict[str, Any]:
        # Keras writes `from_sorted_ids` only when it is True.
        config = super().get_config()
        if not config["from_sorted_ids"]:
            del config["from_sorted_ids"]
        return config


METRICS = [
    Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy,
    TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy,
]
