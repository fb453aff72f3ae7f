"""Probabilistic metrics: cross-entropies, KL divergence and Poisson, as in `keras.metrics`.

Each is a `MeanMetricWrapper` around a module-level loss function returning one value per
sample (the class axis reduced). The arithmetic follows Keras' numpy backend step by step in
y_pred's dtype (float32), so clipping at `epsilon` rounds exactly as it does in Keras.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from app.errors import ConfigError, InvalidInput
from app.metrics import ops
from app.metrics.reduction import Masked, MeanMetricWrapper

# -- config validation ---------------------------------------------------------------------


def validate_from_logits(value: Any) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise ConfigError(f"from_logits must be true or false; got {value!r}")
    return bool(value)


def validate_label_smoothing(value: Any) -> Any:
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not 0 <= float(value) <= 1):
        raise ConfigError(f"label_smoothing must be a number in [0, 1]; got {value!r}")
    return value


def validate_axis(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"axis must be an integer; got {value!r}")
    return int(value)


def validate_ignore_class(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"ignore_class must be an integer or null; got {value!r}")
    return int(value)


# -- shared numerics -----------------------------------------------------------------------


def _clip_probabilities(p: np.ndarray) -> np.ndarray:
    """Clip to [eps, 1 - eps] in p's dtype: in float32 1 - 1e-7 rounds to 1 - 1.19e-7, which
    is why ln(eps) and ln(1 - (1 - eps)) differ."""
    return np.clip(p, ops.EPSILON, 1.0 - ops.EPSILON)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    one = np.asarray(1.0, dtype=x.dtype)
    return one / (one + np.exp(-x))


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _log_probabilities(y_pred: np.ndarray, from_logits: bool, axis: int) -> np.ndarray:
    """ln of the class probabilities along `axis`: log-softmax of logits, or the log of y_pred
    renormalised to sum 1 and clipped to [eps, 1 - eps]."""
    if from_logits:
        return _log_softmax(y_pred, axis)
    probabilities = y_pred / np.sum(y_pred, axis=axis, keepdims=True)
    return np.log(_clip_probabilities(probabilities))


# -- per-sample functions ------------------------------------------------------------------


def binary_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                        label_smoothing: float = 0.0) -> np.ndarray:
    """Mean over the last axis of -[y ln p + (1 - y) ln(1 - p)], p clipped to [eps, 1 - eps].

    With `from_logits`, p is sigmoid(y_pred) and is clipped too: that is Keras' numpy
    backend (the JAX backend uses an unclipped log-sigmoid, which differs for |logit| > ~16).
    Smoothing moves each label towards 0.5."""
    y_true, y_pred = ops.float_pair(y_true, y_pred)
    ops.require_same_shape(y_true, y_pred, "BinaryCrossentropy")
    ops.require_rank(y_pred, 1, "y_pred", "BinaryCrossentropy")
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    p = _clip_probabilities(_sigmoid(y_pred) if from_logits else y_pred)
    log_likelihood = y_true * np.log(p) + (1.0 - y_true) * np.log(1.0 - p)
    return ops.mean(-log_likelihood, axis=-1)


def categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                             label_smoothing: float = 0.0, axis: int = -1) -> np.ndarray:
    """-Σ y ln p along `axis`; smoothing mixes each label with the uniform 1/C.

    Keras takes C for smoothing from y_true's *last* axis even when `axis` is another one."""
    y_true, y_pred = ops.float_pair(y_true, y_pred)
    ops.require_same_shape(y_true, y_pred, "CategoricalCrossentropy")
    ops.require_rank(y_pred, 1, "y_pred", "CategoricalCrossentropy")
    axis = ops.canonical_axis(axis, y_pred.ndim, "y_pred", "CategoricalCrossentropy")
    if label_smoothing:
        num_classes = np.asarray(y_true.shape[-1], dtype=y_pred.dtype)
        y_true = y_true * (1.0 - label_smoothing) + label_smoothing / num_classes
    log_prob = _log_probabilities(y_pred, from_logits, axis)
    return -np.sum(y_true * log_prob, axis=axis)


def _one_hot(labels: np.ndarray, num_classes: int, axis: int, dtype: Any) -> np.ndarray:
    """One-hot encode integer `labels`, the class axis inserted at `axis` of the result."""
    # A comparison, not `np.eye(num_classes)[labels]`: the identity matrix would cost
    # num_classes² memory (12.8 GB for one 40,000-class row); this costs the output's size.
    encoded = (np.asarray(labels)[..., None] == np.arange(num_classes)).astype(dtype)
    return np.moveaxis(encoded, -1, axis)


def sparse_categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                                    ignore_class: int | None = None,
                                    axis: int = -1) -> np.ndarray | Masked:
    """Categorical cross-entropy against integer labels (class ids along y_pred's `axis`).

    Positions labelled `ignore_class` get the value 0 and a mask; the mask only removes them
    from the count when a `sample_weight` is given (Keras applies a values mask to weights
    only), so without weights they still count as samples with loss 0."""
    metric = "SparseCategoricalCrossentropy"
    y_true, y_pred = ops.float_pair(y_true, y_pred)
    ops.require_rank(y_pred, 1, "y_pred", metric)
    class_axis = ops.canonical_axis(axis, y_pred.ndim, "y_pred", metric)
    num_classes = y_pred.shape[class_axis]
    ops.check_class_ids(y_true, num_classes, metric, ignore_class)
    if y_true.ndim == y_pred.ndim and y_true.shape[class_axis] == 1:
        y_true = np.squeeze(y_true, class_axis)
    valid = None
    if ignore_class is not None:
        valid = y_true != np.asarray(ignore_class, dtype=y_pred.dtype)
        y_true = np.where(valid, y_true, 0)
        y_pred = np.where(np.expand_dims(valid, class_axis), y_pred, 0).astype(y_pred.dtype)
    labels = y_true.astype(np.int64)
    if labels.ndim == y_pred.ndim and labels.shape[-1] == 1:
        labels = np.squeeze(labels, -1)
    if labels.shape != y_pred.shape[:-1]:
        raise InvalidInput(f"{metric} expects y_true of shape y_pred.shape[:-1] (or with a "
                           f"trailing 1); got y_true {ops.shape_str(y_true)} and y_pred "
                           f"{ops.shape_str(y_pred)}")
    target = _one_hot(labels, num_classes, class_axis, y_pred.dtype)
    try:  # only fails for a class axis other than the last
        np.broadcast_shapes(target.shape, y_pred.shape)
    except ValueError:
        raise InvalidInput(f"{metric}: labels of shape {ops.shape_str(labels)} one-hot "
                           f"encoded along axis {axis} do not match y_pred "
                           f"{ops.shape_str(y_pred)}") from None
    log_prob = _log_probabilities(y_pred, from_logits, class_axis)
    values = -np.sum(target * log_prob, axis=class_axis)
    if valid is None:
        return values
    sample_shape = tuple(d for i, d in enumerate(y_pred.shape) if i != class_axis)
    if valid.size != int(np.prod(sample_shape)):
        raise InvalidInput(f"{metric} with ignore_class: y_true {ops.shape_str(y_true)} does "
                           f"not give one label per position of y_pred {ops.shape_str(y_pred)} "
                           f"outside axis {axis}")
    mask = valid.reshape(sample_shape)
    return Masked(np.where(mask, values, 0.0).astype(values.dtype), mask)


def kl_divergence(y_true: Any, y_pred: Any) -> np.ndarray:
    """Σ y ln(y / p) over the last axis, both clipped to [eps, 1]."""
    y_true, y_pred = ops.float_pair(y_true, y_pred)
    ops.require_rank(y_pred, 1, "y_pred", "KLDivergence")
    ops.require_broadcastable(y_true, y_pred, "KLDivergence")
    y_true = np.clip(y_true, ops.EPSILON, 1)
    y_pred = np.clip(y_pred, ops.EPSILON, 1)
    return np.sum(y_true * np.log(y_true / y_pred), axis=-1)


def poisson(y_true: Any, y_pred: Any) -> np.ndarray:
    """Mean over the last axis of p - y ln(p + eps)."""
    y_true, y_pred = ops.float_pair(y_true, y_pred)
    ops.require_rank(y_pred, 1, "y_pred", "Poisson")
    ops.require_broadcastable(y_true, y_pred, "Poisson")
    epsilon = np.asarray(ops.EPSILON, dtype=y_pred.dtype)
    return ops.mean(y_pred - y_true * np.log(y_pred + epsilon), axis=-1)


# -- metrics -------------------------------------------------------------------------------


class BinaryCrossentropy(MeanMetricWrapper):
    """Cross-entropy between binary (or soft) labels and predicted probabilities."""

    def __init__(self, name: str | None = "binary_crossentropy", dtype: str | None = None,
                 from_logits: bool = False, label_smoothing: float = 0) -> None:
        super().__init__(fn=binary_crossentropy, name=name,
                         dtype=dtype, from_logits=validate_from_logits(from_logits),
                         label_smoothing=validate_label_smoothing(label_smoothing))


class CategoricalCrossentropy(MeanMetricWrapper):
    """Cross-entropy between one-hot (or soft) labels and predicted class probabilities."""

    def __init__(self, name: str | None = "categorical_crossentropy",
                 dtype: str | None = None, from_logits: bool = False,
                 label_smoothing: float = 0, axis: int = -1) -> None:
        super().__init__(fn=categorical_crossentropy, name=name,
                         dtype=dtype, from_logits=validate_from_logits(from_logits),
                         label_smoothing=validate_label_smoothing(label_smoothing),
                         axis=validate_axis(axis))


class SparseCategoricalCrossentropy(MeanMetricWrapper):
    """Cross-entropy between integer labels and predicted class probabilities."""

    def __init__(self, name: str | None = "sparse_categorical_crossentropy",
                 dtype: str | None = None, from_logits: bool = False,
                 ignore_class: int | None = None, axis: int = -1) -> None:
        super().__init__(fn=sparse_categorical_crossentropy,
                         name=name, dtype=dtype,
                         from_logits=validate_from_logits(from_logits),
                         ignore_class=validate_ignore_class(ignore_class),
                         axis=validate_axis(axis))


class KLDivergence(MeanMetricWrapper):
    """Kullback-Leibler divergence between label and predicted distributions."""

    def __init__(self, name: str | None = "kl_divergence", dtype: str | None = None) -> None:
        super().__init__(fn=kl_divergence, name=name, dtype=dtype)


class Poisson(MeanMetricWrapper):
    """Poisson deviance-style loss `p - y ln p`."""

    def __init__(self, name: str | None = "poisson", dtype: str | None = None) -> None:
        super().__init__(fn=poisson, name=name, dtype=dtype)


METRICS = [
    BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy,
    KLDivergence, Poisson,
]
