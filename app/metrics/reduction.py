"""Reduction metrics: `Sum`, `Mean`, and `MeanMetricWrapper`, the base of every metric whose
state is a weighted total and a count (accuracy, regression, probabilistic, hinge, ...)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from app.metrics import ops
from app.metrics.base import Metric


class Sum(Metric):
    """The (weighted) sum of `values`."""

    def __init__(self, name: str | None = "sum", dtype: str | None = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(shape=(), name="total")

    def update_state(self, values: Any, sample_weight: Any = None) -> None:
        values, _ = ops.reduce_to_samplewise_values(values, sample_weight, ops.total, self.dtype)
        self.total.assign_add(ops.total(values))

    def merges_along_batch(self, inputs: Mapping[str, np.ndarray]) -> bool:
        return True

    def result(self) -> Any:
        return np.asarray(self.total.value, dtype=self.dtype)

    def results_stack(self) -> bool:
        return True


class Mean(Metric):
    """The (weighted) mean of `values`: `total / count`, 0 when count is 0."""

    def __init__(self, name: str | None = "mean", dtype: str | None = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(shape=(), name="total")
        self.count = self.add_variable(shape=(), name="count")

    def update_state(self, values: Any, sample_weight: Any = None) -> None:
        values, sample_weight = ops.reduce_to_samplewise_values(
            values, sample_weight, ops.mean, self.dtype
        )
        self.total.assign_add(ops.total(values))
        if sample_weight is not None:
            num_samples: Any = ops.total(sample_weight)
        elif values.ndim >= 1:
            num_samples = values.shape[0]
        else:
            num_samples = 1
        self.count.assign_add(num_samples)

    def merges_along_batch(self, inputs: Mapping[str, np.ndarray]) -> bool:
        return True  # per-sample values, counted by samples (or their weights)

    def result(self) -> Any:
        return ops.divide_no_nan(self.total.value, self.count.value)

    def results_stack(self) -> bool:
        return True  # elementwise; subclasses that compute otherwise say so


class Masked:
    """What a wrapped function returns when some per-sample values must not count (Keras
    attaches a mask to the tensor; numpy arrays cannot carry one)."""

    def __init__(self, values: np.ndarray, mask: np.ndarray) -> None:
        self.values = values
        self.mask = mask


class MeanMetricWrapper(Mean):
    """The mean of a per-sample function `fn(y_true, y_pred, **kwargs)` over every sample seen.

    Built-in subclasses only override `__init__` (to bind their `fn` and arguments) and
    `get_config`.
    """

    def __init__(self, fn: Callable[..., Any], name: str | None = None,
                 dtype: str | None = None, **kwargs: Any) -> None:
        super().__init__(name=name, dtype=dtype)
        self._fn = fn
        self._fn_kwargs = kwargs

    def update_state(  # type: ignore[override]
        self, y_true: Any, y_pred: Any, sample_weight: Any = None
    ) -> None:
        values = self._fn(y_true, y_pred, **self._fn_kwargs)
        if isinstance(values, Masked):
            if sample_weight is not None:
                mask = values.mask.astype(self.dtype)
                weight = np.asarray(sample_weight, dtype=self.dtype)
                mask, weight = ops.squeeze_or_expand_to_same_rank(mask, weight)
                sample_weight = weight * mask
            values = values.values
        super().update_state(values, sample_weight=sample_weight)

    def merges_along_batch(self, inputs: Mapping[str, np.ndarray]) -> bool:
        return False  # `fn` may reduce the batch axis (the last axis of 1-D input)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, **self._fn_kwargs}


METRICS = [Sum, Mean]
