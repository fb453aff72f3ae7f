"""Confusion-matrix metrics: TruePositives, FalsePositives, TrueNegatives, FalseNegatives,
Precision and Recall, as in `keras/src/metrics/confusion_metrics.py`.

The counting itself (thresholds, top_k, class_id, weights) is `confusion_utils`. Whatever
`dtype` says, the state is float32, as in Keras; `dtype` is only echoed in the config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from app.metrics import ops
from app.metrics.base import Metric, ranks_at_least
from app.metrics.confusion_utils import (
    NEG_INF,
    STATE_DTYPE,
    ConfusionMatrix,
    is_evenly_distributed_thresholds,
    parse_init_thresholds,
    share_counts,
    update_confusion_matrix_variables,
    validate_class_id,
    validate_top_k,
)


def _per_threshold(values: np.ndarray, num_thresholds: int) -> np.ndarray:
    """Keras returns a scalar for a single threshold and the (T,) vector otherwise. Indexed
    from the last axis, so that stacked states (`results_stack`) keep their rows."""
    return values[..., 0] if num_thresholds == 1 else values


class _ConfusionMatrixConditionCount(Metric):
    """The weighted count of one confusion-matrix condition, per threshold."""

    def __init__(self, confusion_matrix_cond: ConfusionMatrix, thresholds: Any = None,
                 name: str | None = None, dtype: str | None = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self._confusion_matrix_cond = confusion_matrix_cond
        self.init_thresholds = thresholds
        self.thresholds = parse_init_thresholds(thresholds, default_threshold=0.5)
        self._thresholds_distributed_evenly = is_evenly_distributed_thresholds(self.thresholds)
        self.accumulator = self.add_variable(
            shape=(len(self.thresholds),), dtype=STATE_DTYPE, name="accumulator"
        )
        share_counts({confusion_matrix_cond: self.accumulator}, self.thresholds,
                     thresholds_distributed_evenly=self._thresholds_distributed_evenly)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        update_confusion_matrix_variables(
            {self._confusion_matrix_cond: self.accumulator},
            y_true,
            y_pred,
            thresholds=self.thresholds,
            thresholds_distributed_evenly=self._thresholds_distributed_evenly,
            sample_weight=sample_weight,
        )

    def result(self) -> Any:
        return _per_threshold(self.accumulator.value, len(self.thresholds))

    def results_stack(self) -> bool:
        return True

    def merges_along_batch(self, inputs: Mapping[str, np.ndarray]) -> bool:
        return True  # each element is compared with the thresholds on its own

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "thresholds": self.init_thresholds}


class FalsePositives(_ConfusionMatrixConditionCount):
    """The (weighted) number of negative labels predicted positive."""

    def __init__(self, thresholds: Any = None, name: str | None = None,
                 dtype: str | None = None) -> None:
        super().__init__(ConfusionMatrix.FALSE_POSITIVES, thresholds, name=name, dtype=dtype)


class FalseNegatives(_ConfusionMatrixConditionCount):
    """The (weighted) number of positive labels predicted negative."""

    def __init__(self, thresholds: Any = None, name: str | None = None,
                 dtype: str | None = None) -> None:
        super().__init__(ConfusionMatrix.FALSE_NEGATIVES, thresholds, name=name, dtype=dtype)


class TrueNegatives(_ConfusionMatrixConditionCount):
    """The (weighted) number of negative labels predicted negative."""

    def __init__(self, thresholds: Any = None, name: str | None = None,
                 dtype: str | None = None) -> None:
        super().__init__(ConfusionMatrix.TRUE_NEGATIVES, thresholds, name=name, dtype=dtype)


class TruePositives(_ConfusionMatrixConditionCount):
    """The (weighted) number of positive labels predicted positive."""

    def __init__(self, thresholds: Any = None, name: str | None = None,
                 dtype: str | None = None) -> None:
        super().__init__(ConfusionMatrix.TRUE_POSITIVES, thresholds, name=name, dtype=dtype)


class _TopKRatio(Metric):
    """What Precision and Recall share: thresholds, `top_k`, `class_id`, and the ratio
    `true_positives / (true_positives + other)` per threshold.

    With `top_k` and no thresholds the threshold is -1e10, so every top-k prediction counts
    as positive whatever its score.
    """

    _other: ConfusionMatrix  # false positives (precision) or false negatives (recall)

    def __init__(self, thresholds: Any = None, top_k: int | None = None,
                 class_id: int | None = None, name: str | None = None,
                 dtype: str | None = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self.init_thresholds = thresholds
        self.top_k = validate_top_k(top_k)
        self.class_id = validate_class_id(class_id)
        default_threshold = 0.5 if top_k is None else NEG_INF
        self.thresholds = parse_init_thresholds(thresholds, default_threshold=default_threshold)
        self._thresholds_distributed_evenly = is_evenly_distributed_thresholds(self.thresholds)
        shape = (len(self.thresholds),)
        self.true_positives = self.add_variable(shape=shape, dtype=STATE_DTYPE,
                                                name="true_positives")
        self._other_variable = self.add_variable(shape=shape, dtype=STATE_DTYPE,
                                                 name=self._other.name.lower())
        share_counts({ConfusionMatrix.TRUE_POSITIVES: self.true_positives,
                      self._other: self._other_variable}, self.thresholds,
                     top_k=self.top_k, class_id=self.class_id,
                     thresholds_distributed_evenly=self._thresholds_distributed_evenly)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        update_confusion_matrix_variables(
            {
                ConfusionMatrix.TRUE_POSITIVES: self.true_positives,
                self._other: self._other_variable,
            },
            y_true,
            y_pred,
            thresholds=self.thresholds,
            thresholds_distributed_evenly=self._thresholds_distributed_evenly,
            top_k=self.top_k,
            class_id=self.class_id,
            sample_weight=sample_weight,
        )

    def result(self) -> Any:
        tp = self.true_positives.value
        ratio = ops.divide_no_nan(tp, tp + self._other_variable.value)
        return _per_threshold(ratio, len(self.thresholds))

    def results_stack(self) -> bool:
        return True

    def merges_along_batch(self, inputs: Mapping[str, np.ndarray]) -> bool:
        # top_k and class_id pick along the last axis: the batch axis only if it is the last.
        return (self.top_k is None and self.class_id is None) or ranks_at_least(inputs, 2)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "thresholds": self.init_thresholds,
            "top_k": self.top_k,
            "class_id": self.class_id,
        }


class Precision(_TopKRatio):
    """TP / (TP + FP) per threshold; 0 when nothing was predicted positive."""

    _other = ConfusionMatrix.FALSE_POSITIVES

    @property
    def false_positives(self) -> Any:
        return self._other_variable


class Recall(_TopKRatio):
    """TP / (TP + FN) per threshold; 0 when no label was positive."""

    _other = ConfusionMatrix.FALSE_NEGATIVES

    @property
    def false_negatives(self) -> Any:
        return self._other_variable


METRICS = [
    TruePositives, FalsePositives, TrueNegatives, FalseNegatives, Precision, Recall,
]
