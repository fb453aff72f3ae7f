"""F-scores, as in `keras/src/metrics/f_score_metrics.py`: `FBetaScore` and `F1Score`.

State (built on the first batch, in the metric dtype): `true_positives`, `false_positives`,
`false_negatives` and `intermediate_weights` (the weighted support), each of shape (C,) with
C = y_pred.shape[-1], or scalars when `average="micro"`.

Behaviour worth knowing (all as in Keras):

* y_true and y_pred must be 2-D `(N, C)` (Keras checks this on the first batch only; we check
  every batch). They are cast to the metric dtype and broadcast together.
* Binarisation: `threshold=None` marks every entry equal to its row's maximum, unless it is
  (almost) zero, so tied maxima are all positive and an all-zero row has no positive; a float
  threshold marks `y_pred > threshold` (strict).
* `sample_weight` is rank 1: one weight per row (length N, or 1 to apply to every row). A
  scalar or an `(N, 1)` weight is refused, as Keras refuses it (except that Keras' micro
  averaging silently sums an N x N outer product for `(N, 1)`; we refuse that too).
* The result divides with a 1e-7 epsilon everywhere (never by zero), so a perfect score is
  0.9999998 rather than 1.
* Micro averaging keeps scalar counts, so (as in Keras) its state does not depend on C and
  batches of different widths may be mixed; every other average fixes C with the first batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from app.errors import ConfigError, InvalidInput
from app.metrics import ops
from app.metrics.base import Metric, ranks_at_least

AVERAGES = (None, "micro", "macro", "weighted")


# The messages are Keras' (its own tests match them), with what JSON callers need to know.


def _check_average(average: Any) -> None:
    if not (average is None or (isinstance(average, str) and average in AVERAGES)):
        raise ConfigError("Invalid `average` argument value. Expected one of: "
                          "{None, 'micro', 'macro', 'weighted'}. "
                          f"Received: average={average} (in JSON: null, \"micro\", \"macro\" "
                          "or \"weighted\")")


def _check_beta(beta: Any) -> None:
    # Keras insists on a Python float: `beta=2` is refused, `beta=2.0` accepted.
    if not isinstance(beta, float):
        raise ConfigError("Invalid `beta` argument value. It should be a Python float. "
                          f"Received: beta={beta} of type '{type(beta)}' (write 2.0, not 2)")
    if not math.isfinite(beta):
        raise ConfigError(f"Invalid `beta` argument value. It should be a finite float > 0. "
                          f"Received: beta={beta}")
    if beta <= 0.0:
        raise ConfigError(f"Invalid `beta` argument value. It should be > 0. Received: "
                          f"beta={beta}")


def _check_threshold(threshold: Any) -> None:
    if threshold is None:
        return
    if not isinstance(threshold, float):
        raise ConfigError("Invalid `threshold` argument value. It should be a Python float. "
                          f"Received: threshold={threshold} of type '{type(threshold)}' "
                          "(null for the argmax, or a float such as 1.0, not 1)")
    if not 0.0 < threshold <= 1.0:  # also refuses NaN
        raise ConfigError("Invalid `threshold` argument value. It should verify "
                          f"0 < threshold <= 1. Received: threshold={threshold}")


def binarize(y_pred: np.ndarray, threshold: float | None) -> np.ndarray:
    """y_pred as 0/1 in its own dtype: `> threshold`, or the row's maxima (ties included) when
    `threshold` is None, leaving out entries within 1e-9 of zero."""
    if threshold is None:
        row_max = np.max(y_pred, axis=-1, keepdims=True)
        positive = (y_pred >= row_max) & (np.abs(y_pred) > 1e-9)
    else:
        positive = y_pred > threshold
    return positive.astype(y_pred.dtype)


class FBetaScore(Metric):
    """The F-beta score per class, or micro / macro / support-weighted averaged."""

    lazy = True

    def __init__(self, average: str | None = None, beta: float = 1.0,
                 threshold: float | None = None, name: str | None = "fbeta_score",
                 dtype: str | None = None) -> None:
        super().__init__(name=name, dtype=dtype)
        _check_average(average)
        _check_beta(beta)
        _check_threshold(threshold)
        self.average = average
        self.beta = beta
        self.threshold = threshold
        # Per-class sums (axis 0), or one grand total for micro averaging.
        self.axis: int | None = None if average == "micro" else 0

    def build_variables(self, **layout: Any) -> None:
        # {"num_classes": C}, or {} for micro averaging (scalar counts).
        shape = (int(layout["num_classes"]),) if "num_classes" in layout else ()
        self.true_positives = self.add_variable(shape, name="true_positives")
        self.false_positives = self.add_variable(shape, name="false_positives")
        self.false_negatives = self.add_variable(shape, name="false_negatives")
        self.intermediate_weights = self.add_variable(shape, name="intermediate_weights")

    def lazy_elements(self, **layout: Any) -> int:
        return 4 * int(layout.get("num_classes", 1))

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        what = type(self).__name__
        y_true = ops.as_array(y_true, self.dtype)
        y_pred = ops.as_array(y_pred, self.dtype)
        if y_true.ndim != 2 or y_pred.ndim != 2:
            raise InvalidInput(f"{what} expects 2D inputs with shape (batch_size, output_dim). "
                               f"Received input shapes: y_pred {ops.shape_str(y_pred)} and "
                               f"y_true {ops.shape_str(y_true)}")
        ops.require_broadcastable(y_true, y_pred, what)
        num_classes = y_pred.shape[-1]
        width = np.broadcast_shapes(y_true.shape, y_pred.shape)[-1]
        if self.average != "micro" and width != num_classes:
            raise InvalidInput(f"{what} takes its number of classes from y_pred "
                               f"({num_classes}); y_true {ops.shape_str(y_true)} has "
                               f"{width} columns")
        if self.threshold is None and num_classes == 0:
            raise InvalidInput(f"{what} with threshold=null takes each row's maximum; got "
                               f"y_pred {ops.shape_str(y_pred)} with no classes")
        weight = None
        if sample_weight is not None:
            weight = ops.as_array(sample_weight, self.dtype)
            if weight.ndim != 1:
                raise InvalidInput(f"{what} expects a rank-1 sample_weight with one weight per "
                                   f"row of y_true; got shape {ops.shape_str(weight)}")
            weight = weight[:, np.newaxis]
            try:
                np.broadcast_shapes(weight.shape, y_true.shape, y_pred.shape)
            except ValueError:
                raise InvalidInput(f"{what}: sample_weight {ops.shape_str(sample_weight)} "
                                   f"does not match the batch's {y_pred.shape[0]} rows") from None
        # Micro averaging keeps scalars, so (as in Keras) any width is fine after the first.
        if self.average == "micro":
            self.ensure_built()
        else:
            self.ensure_built(num_classes=num_classes)
        y_pred = binarize(y_pred, self.threshold)

        def weighted_sum(values: np.ndarray) -> np.ndarray:
            if weight is not None:
                values = values * weight
            return ops.total(values, axis=self.axis)

        self.true_positives.assign_add(weighted_sum(y_pred * y_true))
        self.false_positives.assign_add(weighted_sum(y_pred * (1 - y_true)))
        self.false_negatives.assign_add(weighted_sum((1 - y_pred) * y_true))
        self.intermediate_weights.assign_add(weighted_sum(y_true))

    def result(self) -> Any:
        tp, fp, fn, support = (
            ops.as_array(v.value, self.dtype) for v in (
                self.true_positives, self.false_positives, self.false_negatives,
                self.intermediate_weights))
        eps = ops.EPSILON
        precision = tp / (tp + fp + eps)
        recall = tp / (tp + fn + eps)
        beta2 = self.beta ** 2
        score = (precision * recall) / (beta2 * precision + recall + eps) * (1 + beta2)
        if self.average == "weighted":
            weights = support / (ops.total(support) + eps)
            return ops.total(score * weights)
        if self.average is not None:  # micro (a scalar already) or macro
            return ops.mean(score)
        return score

    def merges_along_batch(self, inputs: Mapping[str, np.ndarray]) -> bool:
        return ranks_at_least(inputs, 2)  # per-class sums over rows

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "average": self.average,
                "beta": self.beta, "threshold": self.threshold}


class F1Score(FBetaScore):
    """The F-beta score with beta = 1: the harmonic mean of precision and recall."""

    def __init__(self, average: str | None = None, threshold: float | None = None,
                 name: str | None = "f1_score", dtype: str | None = None) -> None:
        super().__init__(average=average, beta=1.0, threshold=threshold, name=name,
                         dtype=dtype)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["beta"]  # as in Keras
        return config


METRICS = [FBetaScore, F1Score]
