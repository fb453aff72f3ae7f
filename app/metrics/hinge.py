"""Hinge ("maximum-margin") metrics, as in `keras.metrics`: `MeanMetricWrapper`s around
per-sample hinge losses computed in y_pred's dtype."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.errors import InvalidInput
from app.metrics import ops
from app.metrics.reduction import MeanMetricWrapper


def to_signed_labels(y_true: np.ndarray) -> np.ndarray:
    """Map {0, 1} labels to {-1, +1}, but only when *every* label of the batch is 0 or 1.

    The decision is batch-wide (as in Keras): a batch holding any other value, say -1, keeps
    all its labels as they are, so a 0 in that batch stays 0. Keras' results for these two
    metrics therefore depend on how mixed-convention data is cut into batches."""
    if np.all((y_true == 0) | (y_true == 1)):
        return 2.0 * y_true - 1.0
    return y_true


def _margins(y_true: Any, y_pred: Any, metric: str) -> np.ndarray:
    """max(1 - y * p, 0) per element, labels converted with `to_signed_labels`."""
    y_true, y_pred = ops.float_pair(y_true, y_pred)
    ops.require_rank(y_pred, 1, "y_pred", metric)
    ops.require_broadcastable(y_true, y_pred, metric)
    return np.maximum(1.0 - to_signed_labels(y_true) * y_pred, 0.0)


def hinge(y_true: Any, y_pred: Any) -> np.ndarray:
    """Mean over the last axis of max(1 - y * p, 0)."""
    return ops.mean(_margins(y_true, y_pred, "Hinge"), axis=-1)


def squared_hinge(y_true: Any, y_pred: Any) -> np.ndarray:
    """Mean over the last axis of max(1 - y * p, 0)^2."""
    return ops.mean(np.square(_margins(y_true, y_pred, "SquaredHinge")), axis=-1)


def categorical_hinge(y_true: Any, y_pred: Any) -> np.ndarray:
    """max(max_j (1 - y_j) p_j - Σ_j y_j p_j + 1, 0) per row: the best wrong class's score
    against the true class's score, with margin 1. Labels are used as given."""
    y_true, y_pred = ops.float_pair(y_true, y_pred)
    ops.require_rank(y_pred, 1, "y_pred", "CategoricalHinge")
    ops.require_broadcastable(y_true, y_pred, "CategoricalHinge")
    if np.broadcast_shapes(y_true.shape, y_pred.shape)[-1] == 0:
        raise InvalidInput("CategoricalHinge expects at least one class on the last axis; "
                           f"got y_pred of shape {ops.shape_str(y_pred)}")
    positive = np.sum(y_true * y_pred, axis=-1)
    negative = np.max((1.0 - y_true) * y_pred, axis=-1)
    return np.maximum(negative - positive + 1.0, np.asarray(0.0, dtype=y_pred.dtype))


class Hinge(MeanMetricWrapper):
    """Hinge loss for labels in {-1, +1} (or {0, 1}, converted batch-wide)."""

    def __init__(self, name: str | None = "hinge", dtype: str | None = None) -> None:
        super().__init__(fn=hinge, name=name, dtype=dtype)


class SquaredHinge(MeanMetricWrapper):
    """Squared hinge loss for labels in {-1, +1} (or {0, 1}, converted batch-wide)."""

    def __init__(self, name: str | None = "squared_hinge", dtype: str | None = None) -> None:
        super().__init__(fn=squared_hinge, name=name, dtype=dtype)


class CategoricalHinge(MeanMetricWrapper):
    """Categorical hinge loss for one-hot labels."""

    def __init__(self, name: str | None = "categorical_hinge", dtype: str | None = None) -> None:
        super().__init__(fn=categorical_hinge, name=name, dtype=dtype)


METRICS = [Hinge, SquaredHinge, CategoricalHinge]
