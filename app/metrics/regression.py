"""Regression metrics, as in `keras/src/metrics/regression_metrics.py`.

Every class but `RootMeanSquaredError` is a `MeanMetricWrapper` around a per-sample function
that reduces the **last axis** (Keras' loss functions): `(N, D)` input gives N values, while
1-D input gives a single value for the whole batch (count += 1). The functions compute in
y_pred's dtype (float32); the metric `dtype` only sets the state's.

`R2Score` is not here yet.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.errors import ConfigError, InvalidInput
from app.metrics import ops
from app.metrics.reduction import Mean, MeanMetricWrapper

# -- per-sample functions (Keras' losses) ----------------------------------------------------


def _loss_inputs(y_true: Any, y_pred: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """The prologue of every Keras loss: y_true in y_pred's float dtype, ranks aligned (a
    trailing axis of size 1 added or dropped), then shapes that broadcast together."""
    y_true, y_pred = ops.float_pair(y_true, y_pred)
    y_true, y_pred = ops.squeeze_or_expand_to_same_rank(y_true, y_pred)
    ops.require_broadcastable(y_true, y_pred, what)
    if y_true.ndim == 0 and y_pred.ndim == 0:
        raise InvalidInput(f"{what} expects y_true and y_pred with at least one axis "
                           "(it reduces the last one); got scalars")
    return y_true, y_pred


def mean_squared_error(y_true: Any, y_pred: Any) -> np.ndarray:
    y_true, y_pred = _loss_inputs(y_true, y_pred, "mean_squared_error")
    return ops.mean(np.square(y_true - y_pred), axis=-1)


def mean_absolute_error(y_true: Any, y_pred: Any) -> np.ndarray:
    y_true, y_pred = _loss_inputs(y_true, y_pred, "mean_absolute_error")
    return ops.mean(np.abs(y_true - y_pred), axis=-1)


def mean_absolute_percentage_error(y_true: Any, y_pred: Any) -> np.ndarray:
    """100 * mean(|y - p| / max(|y|, 1e-7)): a zero label divides by 1e-7, not by zero."""
    y_true, y_pred = _loss_inputs(y_true, y_pred, "mean_absolute_percentage_error")
    epsilon = np.asarray(ops.EPSILON, dtype=y_pred.dtype)
    diff = np.abs((y_true - y_pred) / np.maximum(np.abs(y_true), epsilon))
    return 100.0 * ops.mean(diff, axis=-1)


def mean_squared_logarithmic_error(y_true: Any, y_pred: Any) -> np.ndarray:
    """mean((log(max(p, 1e-7) + 1) - log(max(y, 1e-7) + 1))^2): negatives count as 1e-7."""
    y_true, y_pred = _loss_inputs(y_true, y_pred, "mean_squared_logarithmic_error")
    epsilon = np.asarray(ops.EPSILON, dtype=y_pred.dtype)
    first_log = np.log(np.maximum(y_pred, epsilon) + 1.0)
    second_log = np.log(np.maximum(y_true, epsilon) + 1.0)
    return ops.mean(np.square(first_log - second_log), axis=-1)


def log_cosh(y_true: Any, y_pred: Any) -> np.ndarray:
    """mean(log(cosh(p - y))), written as `x + softplus(-2x) - log(2)` so that large errors
    do not overflow `cosh`."""
    y_true, y_pred = _loss_inputs(y_true, y_pred, "log_cosh")
    log2 = np.log(np.asarray(2.0, dtype=np.float32)).astype(y_pred.dtype)
    error = y_pred - y_true
    return ops.mean(error + ops.softplus(error * -2.0) - log2, axis=-1)


def cosine_similarity(y_true: Any, y_pred: Any, axis: int = -1) -> np.ndarray:
    """sum(l2_normalize(y) * l2_normalize(p)) along `axis`; a zero vector gives 0.

    The metric's sign: +1 for parallel vectors (the loss of the same name is its negative)."""
    y_true, y_pred = _loss_inputs(y_true, y_pred, "cosine_similarity")
    ops.canonical_axis(axis, y_true.ndim, "y_true", "CosineSimilarity")
    ops.canonical_axis(axis, y_pred.ndim, "y_pred", "CosineSimilarity")
    product = ops.l2_normalize(y_true, axis) * ops.l2_normalize(y_pred, axis)
    return np.sum(product, axis=axis, dtype=product.dtype)


# -- metrics ---------------------------------------------------------------------------------


class MeanSquaredError(MeanMetricWrapper):
    """mean((y_true - y_pred)^2) over the last axis, averaged over samples."""

    def __init__(self, name: str = "mean_squared_error", dtype: str | None = None) -> None:
        super().__init__(mean_squared_error, name=name, dtype=dtype)


class MeanAbsoluteError(MeanMetricWrapper):
    """mean(|y_true - y_pred|) over the last axis, averaged over samples."""

    def __init__(self, name: str = "mean_absolute_error", dtype: str | None = None) -> None:
        super().__init__(mean_absolute_error, name=name, dtype=dtype)


class MeanAbsolutePercentageError(MeanMetricWrapper):
    """100 * mean(|y_true - y_pred| / max(|y_true|, 1e-7)), averaged over samples."""

    def __init__(self, name: str = "mean_absolute_percentage_error",
                 dtype: str | None = None) -> None:
        super().__init__(mean_absolute_percentage_error, name=name, dtype=dtype)


class MeanSquaredLogarithmicError(MeanMetricWrapper):
    """mean((log1p(y_pred) - log1p(y_true))^2), inputs floored at 1e-7, averaged over
    samples."""

    def __init__(self, name: str = "mean_squared_logarithmic_error",
                 dtype: str | None = None) -> None:
        super().__init__(mean_squared_logarithmic_error, name=name, dtype=dtype)


class RootMeanSquaredError(Mean):
    """sqrt(total / count) of the squared errors.

    A `Mean` of the element-wise squared errors rather than a wrapper: 1-D input counts one
    sample per element (so it does not depend on how data is cut into batches), 2-D input
    one per row (the row mean of its squared errors). The inputs are cast to the metric dtype
    first, unlike the wrappers.
    """

    def __init__(self, name: str = "root_mean_squared_error", dtype: str | None = None) -> None:
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true: Any, y_pred: Any,  # type: ignore[override]
                     sample_weight: Any = None) -> None:
        y_true = np.asarray(y_true, dtype=self.dtype)
        y_pred = np.asarray(y_pred, dtype=self.dtype)
        y_true, y_pred = ops.squeeze_or_expand_to_same_rank(y_true, y_pred)
        ops.require_broadcastable(y_true, y_pred, "RootMeanSquaredError")
        super().update_state(np.square(y_pred - y_true), sample_weight=sample_weight)

    def result(self) -> Any:
        return np.sqrt(super().result())


class CosineSimilarity(MeanMetricWrapper):
    """The cosine similarity of y_true and y_pred along `axis`, averaged over samples."""

    def __init__(self, name: str = "cosine_similarity", dtype: str | None = None,
                 axis: int = -1) -> None:
        if not isinstance(axis, int) or isinstance(axis, bool):
            raise ConfigError(f"axis must be an integer; got {axis!r}")
        super().__init__(cosine_similarity, name=name, dtype=dtype, axis=axis)

    def get_config(self) -> dict[str, Any]:
        # Keras leaves `axis` out, so a config round trip resets it to -1; reproduced.
        return {"name": self.name, "dtype": self.dtype}


class LogCoshError(MeanMetricWrapper):
    """mean(log(cosh(y_pred - y_true))) over the last axis, averaged over samples."""

    def __init__(self, name: str = "logcosh", dtype: str | None = None) -> None:
        super().__init__(log_cosh, name=name, dtype=dtype)


METRICS = [
    MeanSquaredError, MeanAbsoluteError, MeanAbsolutePercentageError,
    MeanSquaredLogarithmicError, RootMeanSquaredError, CosineSimilarity, LogCoshError,
]
