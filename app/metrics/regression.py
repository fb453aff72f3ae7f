"""Regression metrics, as in `keras/src/metrics/regression_metrics.py`.

Every class but `RootMeanSquaredError` is a `MeanMetricWrapper` around a per-sample function
that reduces the **last axis** (Keras' loss functions): `(N, D)` input gives N values, while
1-D input gives a single value for the whole batch (count += 1). The functions compute in
y_pred's dtype (float32); the metric `dtype` only sets the state's.

`R2Score` is not a wrapper: it keeps per-column sums, built on the first batch (see its
docstring).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from app.errors import ConfigError, InvalidInput
from app.metrics import ops
from app.metrics.base import Metric
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


CLASS_AGGREGATIONS = (None, "uniform_average", "variance_weighted_average")


class R2Score(Metric):
    """The coefficient of determination per output column, aggregated over the columns.

    State, all float32 whatever `dtype` (which only sets the update's arithmetic):
    `num_samples` (made up front) then, built on the first batch with C = y_pred.shape[-1],
    `squared_sum` = sum w*y^2, `sum` = sum w*y, `residual` = sum w*(y - p)^2 and
    `count` = sum w, each of shape (C,). `num_samples` adds the batch's element count N*C,
    unweighted; only the adjusted score reads it.

    Inputs are 2-D `(N, C)` after Keras' rank alignment (a trailing axis of 1 added or
    dropped); `sample_weight` may be a scalar, `(N,)` (one weight per row) or anything that
    broadcasts to y_true, such as `(N, C)`.

    Result: `r2_j = 1 - residual_j / (squared_sum_j - sum_j^2 / count_j)`; an infinite r2_j
    becomes 0 but a NaN stays (0/0: a constant column predicted exactly, or no data). Then the
    mean over columns, the SST-weighted mean, or the vector (`class_aggregation=None`). With
    `num_regressors` = p > 0 and p < n - 1 (n = num_samples), the adjusted score
    `1 - (1 - r2)(n - 1)/(n - p - 1)`; otherwise the plain one (Keras warns).
    """

    lazy = True

    def __init__(self, class_aggregation: str | None = "uniform_average",
                 num_regressors: int | float = 0, name: str | None = "r2_score",
                 dtype: str | None = None) -> None:
        super().__init__(name=name, dtype=dtype)
        if not (class_aggregation is None or (isinstance(class_aggregation, str)
                                              and class_aggregation in CLASS_AGGREGATIONS)):
            # Keras' wording (its own tests match it), then the JSON spellings.
            raise ConfigError("Invalid value for argument `class_aggregation`. Expected one of "
                              "(None, 'uniform_average', 'variance_weighted_average'). "
                              f"Received: class_aggregation={class_aggregation!r} (in JSON: "
                              "null, \"uniform_average\" or \"variance_weighted_average\")")
        if (isinstance(num_regressors, bool) or not isinstance(num_regressors, int | float)
                or not np.isfinite(num_regressors) or num_regressors < 0):
            raise ConfigError("Invalid value for argument `num_regressors`. Expected a value "
                              f">= 0 (0: the plain R2 score). Received: "
                              f"num_regressors={num_regressors!r}")
        self.class_aggregation = class_aggregation
        self.num_regressors = num_regressors
        self.num_samples = self.add_variable((), name="num_samples", dtype="float32")

    def lazy_elements(self, **layout: Any) -> int:
        return 4 * int(layout["num_classes"])

    def build_variables(self, **layout: Any) -> None:
        shape = (int(layout["num_classes"]),)
        self.squared_sum = self.add_variable(shape, name="squared_sum", dtype="float32")
        self.sum = self.add_variable(shape, name="sum", dtype="float32")
        self.total_mse = self.add_variable(shape, name="residual", dtype="float32")
        self.count = self.add_variable(shape, name="count", dtype="float32")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        y_true = ops.as_array(y_true, self.dtype)
        y_pred = ops.as_array(y_pred, self.dtype)
        y_true, y_pred = ops.squeeze_or_expand_to_same_rank(y_true, y_pred)
        if y_true.ndim != 2 or y_pred.ndim != 2:
            raise InvalidInput("R2Score expects 2D inputs with shape (batch_size, output_dim). "
                               f"Received input shapes: y_pred {ops.shape_str(y_pred)} and "
                               f"y_true {ops.shape_str(y_true)} (after aligning their ranks)")
        ops.require_broadcastable(y_true, y_pred, "R2Score")
        num_classes = y_pred.shape[-1]
        if y_true.shape[-1] not in (num_classes, 1):
            raise InvalidInput(f"R2Score takes its number of outputs from y_pred "
                               f"({num_classes}); y_true {ops.shape_str(y_true)} has "
                               f"{y_true.shape[-1]} columns")
        weight = ops.as_array(1 if sample_weight is None else sample_weight, self.dtype)
        if weight.ndim == 1:
            weight = weight[:, np.newaxis]  # one weight per row
        try:
            weight = np.broadcast_to(weight, y_true.shape)
        except ValueError:
            raise InvalidInput(
                f"R2Score expects sample_weight of shape (), (N,) or one that broadcasts to "
                f"y_true {ops.shape_str(y_true)}; got {ops.shape_str(sample_weight)}") from None
        self.ensure_built(num_classes=num_classes)
        weighted_y_true = y_true * weight
        self.sum.assign_add(ops.total(weighted_y_true, axis=0))
        self.squared_sum.assign_add(ops.total(y_true * weighted_y_true, axis=0))
        self.total_mse.assign_add(ops.total(np.square(y_true - y_pred) * weight, axis=0))
        self.count.assign_add(ops.total(weight, axis=0))
        self.num_samples.assign_add(y_true.size)

    def result(self) -> Any:
        f32 = np.float32
        squared_sum, total_sum, residual, count = (
            ops.as_array(v.value, "float32")
            for v in (self.squared_sum, self.sum, self.total_mse, self.count))
        mean = total_sum / count
        sst = squared_sum - total_sum * mean
        raw = 1 - residual / sst
        raw = np.where(np.isinf(raw), f32(0), raw)
        if self.class_aggregation == "uniform_average":
            score = ops.mean(raw)
        elif self.class_aggregation == "variance_weighted_average":
            score = ops.total(sst * raw) / ops.total(sst)
        else:
            score = raw
        if self.num_regressors != 0:
            n = ops.as_array(self.num_samples.value, "float32")
            p = f32(self.num_regressors)
            if p < n - 1:  # otherwise Keras warns and falls back to the plain score
                score = 1 - (1 - score) * (n - 1) / (n - p - 1)
        return score

    def merges_along_batch(self, inputs: Mapping[str, np.ndarray]) -> bool:
        return True  # sums over rows, per output

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype,
                "class_aggregation": self.class_aggregation,
                "num_regressors": self.num_regressors}


METRICS = [
    MeanSquaredError, MeanAbsoluteError, MeanAbsolutePercentageError,
    MeanSquaredLogarithmicError, RootMeanSquaredError, CosineSimilarity, LogCoshError,
    R2Score,
]
