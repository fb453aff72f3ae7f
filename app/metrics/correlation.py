"""Correlation metrics, as in `keras/src/metrics/correlation_metrics.py`:
`PearsonCorrelation` and `ConcordanceCorrelation`.

Both are `MeanMetricWrapper`s: the correlation is computed **within each sample** along
`axis` (default: the last), and the metric is the mean of those per-sample values, not a
streaming correlation over every sample seen. 1-D input is therefore one sample (the
correlation over the whole batch). Moments are population ones (ddof 0).

A constant row makes Pearson's r 0/0 = NaN, and as in Keras the NaN stays in `total` for good
(the service then reports null).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.errors import ConfigError, InvalidInput
from app.metrics import ops
from app.metrics.reduction import MeanMetricWrapper

Axis = int | list[int] | tuple[int, ...]


def _check_axis(axis: Any) -> None:
    def is_int(a: Any) -> bool:
        return isinstance(a, int) and not isinstance(a, bool)

    if is_int(axis):
        return
    if isinstance(axis, list | tuple) and axis and all(is_int(a) for a in axis):
        return
    raise ConfigError(f"axis must be an integer or a non-empty list of integers; got {axis!r}")


def _axes(axis: Axis, y_true: np.ndarray, y_pred: np.ndarray, metric: str) -> tuple[int, ...]:
    """`axis` as distinct non-negative axes, valid for both inputs."""
    wanted = [axis] if isinstance(axis, int) else list(axis)
    axes = []
    for a in wanted:
        ops.canonical_axis(a, y_true.ndim, "y_true", metric)
        axes.append(ops.canonical_axis(a, y_pred.ndim, "y_pred", metric))
    if len(set(axes)) != len(axes):
        raise InvalidInput(f"{metric}: axis {axis} names the same axis twice for inputs of "
                           f"rank {y_pred.ndim}")
    return tuple(axes)


def _inputs(y_true: Any, y_pred: Any, axis: Axis,
            metric: str) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    y_true, y_pred = ops.float_pair(y_true, y_pred)
    y_true, y_pred = ops.squeeze_or_expand_to_same_rank(y_true, y_pred)
    ops.require_broadcastable(y_true, y_pred, metric)
    return y_true, y_pred, _axes(axis, y_true, y_pred, metric)


# Keras' numpy-backend reductions: numpy's defaults (float16 averaged via float32), the result
# in the input's dtype.

def _mean(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return np.mean(x, axis=axes, keepdims=True).astype(x.dtype)


def _std(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return np.std(x, axis=axes, keepdims=True)


def _var(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    compute = np.promote_types(x.dtype, np.float32)
    return np.var(x, axis=axes, keepdims=True, dtype=compute).astype(x.dtype)


def pearson_correlation(y_true: Any, y_pred: Any, axis: Axis = -1) -> np.ndarray:
    """mean(z(y) * z(p)) along `axis`, with z the population z-score: NaN for a constant
    vector."""
    y_true, y_pred, axes = _inputs(y_true, y_pred, axis, "PearsonCorrelation")
    with np.errstate(divide="ignore", invalid="ignore"):
        true_centred = y_true - _mean(y_true, axes)
        pred_centred = y_pred - _mean(y_pred, axes)
        true_z = true_centred / _std(true_centred, axes)
        pred_z = pred_centred / _std(pred_centred, axes)
        product = true_z * pred_z
        return np.mean(product, axis=axes).astype(product.dtype)


def concordance_correlation(y_true: Any, y_pred: Any, axis: Axis = -1) -> np.ndarray:
    """Lin's concordance: mean(2 (y - mean p)(p - mean p)) / (var y + var p + (mean y -
    mean p)^2 + 1e-7) along `axis` (Keras centres y by p's mean in the covariance term; the
    mean over the axis is the same)."""
    y_true, y_pred, axes = _inputs(y_true, y_pred, axis, "ConcordanceCorrelation")
    with np.errstate(divide="ignore", invalid="ignore"):
        true_mean = _mean(y_true, axes)
        pred_mean = _mean(y_pred, axes)
        true_var = _var(y_true - true_mean, axes)
        pred_var = _var(y_pred - pred_mean, axes)
        covariance = (y_true - pred_mean) * (y_pred - pred_mean)
        norm = true_var + pred_var + np.square(true_mean - pred_mean)
        ratio = 2 * covariance / (norm + ops.EPSILON)
        return np.mean(ratio, axis=axes).astype(ratio.dtype)


class PearsonCorrelation(MeanMetricWrapper):
    """Pearson's r within each sample along `axis`, averaged over samples."""

    def __init__(self, name: str | None = "pearson_correlation", dtype: str | None = None,
                 axis: Axis = -1) -> None:
        _check_axis(axis)
        super().__init__(pearson_correlation, name=name, dtype=dtype, axis=axis)
        self.axis = axis


class ConcordanceCorrelation(MeanMetricWrapper):
    """Lin's concordance correlation within each sample along `axis`, averaged over
    samples."""

    def __init__(self, name: str | None = "concordance_correlation", dtype: str | None = None,
                 axis: Axis = -1) -> None:
        _check_axis(axis)
        super().__init__(concordance_correlation, name=name, dtype=dtype, axis=axis)
        self.axis = axis


METRICS = [PearsonCorrelation, ConcordanceCorrelation]
