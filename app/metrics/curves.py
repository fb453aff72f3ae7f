"""Metrics over a whole curve of thresholds: AUC and the `*At*` family
(SensitivityAtSpecificity, SpecificityAtSensitivity, PrecisionAtRecall, RecallAtPrecision),
as in `keras/src/metrics/confusion_metrics.py`.

All five keep TP/FP/TN/FN per threshold (float32, whatever `dtype` says, as in Keras) and
count them with `confusion_utils`. Thresholds ascend along axis 0, so TP and FP are reverse
cumulative sums over it and TN and FN forward ones: the variables are marked `cumulative`,
and a batch whose predictions take k distinct values writes O(k) fields per variable instead
of one per threshold.

Results are computed in float32 from the stored counts, as Keras computes them: the `*At*`
feasibility test (`ratio >= target`) and PRGAIN's hyperbolic transform are sensitive to the
last bit, and float32 arithmetic reproduces Keras' answer there.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from app.errors import ConfigError, InvalidInput
from app.metrics import ops
from app.metrics.base import Metric, Variable, ranks_at_least
from app.metrics.confusion_utils import (
    STATE_DTYPE,
    ConfusionMatrix,
    confusion_counts,
    is_evenly_distributed_thresholds,
    share_counts,
    validate_class_id,
)
from app.metrics.limits import MAX_AUC_LABEL_ELEMENTS, MAX_THRESHOLDS

CURVES = {"ROC": "ROC", "roc": "ROC", "PR": "PR", "pr": "PR", "PRGAIN": "PRGAIN",
          "prgain": "PRGAIN"}
"""The `curve` spellings Keras accepts, and what each means."""

SUMMATION_METHODS = {
    "interpolation": "interpolation", "Interpolation": "interpolation",
    "majoring": "majoring", "Majoring": "majoring",
    "minoring": "minoring", "Minoring": "minoring",
}
"""The `summation_method` spellings Keras accepts, and what each means."""

_F32 = np.float32


# -- constructor arguments -------------------------------------------------------------------


def _is_real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _require_bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise ConfigError(f"{what} must be true or false; got {value!r}")
    return bool(value)


def _num_thresholds(value: Any, minimum: int) -> int:
    """`num_thresholds`: an integer from `minimum` to MAX_THRESHOLDS (Keras' wording for
    the lower bound, which its own tests match)."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) \
            or int(value) < minimum:
        raise ConfigError(f"Argument `num_thresholds` must be an integer > {minimum - 1}. "
                          f"Received: num_thresholds={value!r} (Tally takes integers in "
                          f"[{minimum}, {MAX_THRESHOLDS}])")
    if int(value) > MAX_THRESHOLDS:
        raise ConfigError(f"num_thresholds must be an integer in [{minimum}, {MAX_THRESHOLDS}]; "
                          f"got {value!r} (Tally keeps at most {MAX_THRESHOLDS} thresholds)")
    return int(value)


def _target(value: Any, what: str) -> float:
    """The `*At*` family's target: a number in [0, 1]."""
    if not _is_real(value) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"Argument `{what}` must be in the range [0, 1]. Received: "
                          f"{what}={value!r} (a number from 0 to 1)")
    return value  # echoed in the config exactly as given, like Keras


def _inner_thresholds(num_thresholds: int) -> list[float]:
    """`i / (n-1)` for i = 1..n-2, as Keras computes them (in float64)."""
    return [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]


def _explicit_thresholds(thresholds: Any) -> list[float]:
    """AUC's `thresholds`: a list of finite numbers, sorted. Keras does not check that they
    lie in [0, 1] (its docs ask for it); values outside simply never or always split."""
    if isinstance(thresholds, np.ndarray):
        thresholds = thresholds.tolist()
    if not isinstance(thresholds, list | tuple):
        raise ConfigError(f"thresholds must be a list of numbers (normally in [0, 1]) or "
                          f"null; got {thresholds!r}")
    bad = [t for t in thresholds if not _is_real(t) or not math.isfinite(float(t))]
    if bad:
        raise ConfigError(f"thresholds must be finite numbers (normally in [0, 1]); got "
                          f"{thresholds!r} (invalid: {bad!r})")
    if len(thresholds) + 2 > MAX_THRESHOLDS:
        raise ConfigError(f"thresholds may hold at most {MAX_THRESHOLDS - 2} values (AUC adds "
                          f"two endpoints, and keeps at most {MAX_THRESHOLDS}); got "
                          f"{len(thresholds)}")
    return sorted(float(t) for t in thresholds)


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return [x for item in value for x in _flatten(item)]
    return [value]


def _label_weights(label_weights: Any, dtype: str) -> np.ndarray | None:
    """AUC's `label_weights`: numbers (usually one per label), kept in the metric's dtype as
    Keras keeps them."""
    if label_weights is None:
        return None
    if isinstance(label_weights, np.ndarray):
        label_weights = label_weights.tolist()
    bad = [x for x in _flatten(label_weights) if not _is_real(x) or not math.isfinite(x)]
    if bad:
        raise ConfigError(f"label_weights must be a list of finite numbers (one per label) or "
                          f"null; got {label_weights!r}")
    try:
        return np.asarray(label_weights, dtype=dtype)
    except ValueError:
        raise ConfigError(f"label_weights must be a list of finite numbers (one per label) or "
                          f"null; got a ragged {label_weights!r}") from None


def _check_label_weights_fit(label_weights: np.ndarray | None, num_labels: int,
                             error: type[Exception]) -> None:
    """With multi_label, label_weights weight the per-label AUCs: they must broadcast to them."""
    if label_weights is None:
        return
    try:
        np.broadcast_shapes(label_weights.shape, (num_labels,))
    except ValueError:
        raise error(f"label_weights of shape {list(label_weights.shape)} do not fit "
                    f"{num_labels} labels; expected one weight per label "
                    f"(shape [{num_labels}])") from None


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """`1 / (1 + exp(-x))` in float32, as Keras' numpy backend computes it."""
    x = np.asarray(x, dtype=STATE_DTYPE)
    with np.errstate(over="ignore"):
        return _F32(1) / (_F32(1) + np.exp(-x))


def _counts_f32(*variables: Variable) -> list[np.ndarray]:
    """The stored counts as Keras holds them (float32)."""
    return [np.asarray(v.value, dtype=STATE_DTYPE) for v in variables]


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / (a + b), 0 where the sum is 0."""
    return ops.divide_no_nan(a, a + b)


# -- AUC ---------------------------------------------------------------------------------------


def _riemann_terms(x: np.ndarray, y: np.ndarray, summation_method: str) -> np.ndarray:
    """Per interval between adjacent thresholds: width along x times the height of y."""
    if summation_method == "interpolation":
        heights = (y[:-1] + y[1:]) / _F32(2)
    elif summation_method == "minoring":
        heights = np.minimum(y[:-1], y[1:])
    else:
        heights = np.maximum(y[:-1], y[1:])
    return (x[:-1] - x[1:]) * heights


def _interpolated_pr_terms(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """PR-AUC per interval with TP and P = TP + FP linear between thresholds and precision
    TP/P integrated exactly (the Davis & Goadrich interpolation, in closed form):
    `slope * (dTP + intercept * ln(P_i / P_i+1)) / positives`, where slope = dTP / dP."""
    predicted = tp + fp
    d_tp = tp[:-1] - tp[1:]
    d_predicted = predicted[:-1] - predicted[1:]
    slope = ops.divide_no_nan(d_tp, np.maximum(d_predicted, 0))
    intercept = tp[1:] - slope * predicted[1:]
    both_positive = (predicted[:-1] > 0) & (predicted[1:] > 0)
    ratio = np.where(both_positive,
                     ops.divide_no_nan(predicted[:-1], np.maximum(predicted[1:], 0)), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log(ratio)
    return ops.divide_no_nan(slope * (d_tp + intercept * log_ratio),
                             np.maximum(tp[1:] + fn[1:], 0))


def _gain_curve(tp: np.ndarray, fp: np.ndarray, tn: np.ndarray,
                fn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall gain, precision gain) per threshold. Where TP = 0 they are 0 and 1; recall gain
    is floored at 0, precision gain is not clipped (Keras' choices)."""
    scale = ops.divide_no_nan(tp + fn, tn + fp)
    recall_gain = _F32(1) - scale * ops.divide_no_nan(fn, tp)
    precision_gain = _F32(1) - scale * ops.divide_no_nan(fp, tp)
    no_tp = tp == 0
    recall_gain = np.maximum(np.where(no_tp, _F32(0), recall_gain), _F32(0))
    precision_gain = np.where(no_tp, _F32(1), precision_gain)
    return recall_gain, precision_gain



def _add_confusion_variables(metric: Metric, shape: tuple[int, ...],
                             thresholds: Sequence[float], **counting: Any
                             ) -> tuple[Variable, Variable, Variable, Variable]:
    """TP, FP, TN, FN per threshold (float32 whatever the metric's dtype, as in Keras), stored
    as per-bucket differences (`cumulative`) so an update writes only the buckets it touched.
    `counting`: how `confusion_counts` is called, declared for compute groups."""
    tp, fp, tn, fn = (metric.add_variable(shape, dtype=STATE_DTYPE, name=name)
                      for name in ("true_positives", "false_positives", "true_negatives",
                                   "false_negatives"))
    for variable in (tp, fp, tn, fn):
        variable.cumulative = True
    share_counts({ConfusionMatrix.TRUE_POSITIVES: tp, ConfusionMatrix.FALSE_POSITIVES: fp,
                  ConfusionMatrix.TRUE_NEGATIVES: tn, ConfusionMatrix.FALSE_NEGATIVES: fn},
                 thresholds, **counting)
    return tp, fp, tn, fn

class AUC(Metric):
    """Area under the ROC, PR or PR-gain curve, approximated over a grid of thresholds.

    Options, as in Keras:

    * `num_thresholds` (default 200, at least 2): thresholds `[-1e-7, 1/(n-1), ...,
      (n-2)/(n-1), 1 + 1e-7]`; the epsilon endpoints make a prediction of exactly 0 positive
      at the first threshold and one of exactly 1 negative at the last. Or `thresholds`: a
      list of numbers, sorted and wrapped in the same endpoints (then `num_thresholds` is
      ignored and becomes `len(thresholds) + 2`). Evenly spaced thresholds take Keras' bucket
      path (predictions clipped to [0, 1]), others a strict `p > t` without clipping.
    * **At most 10,000 thresholds** (`MAX_THRESHOLDS`; explicit thresholds count with their two
      endpoints): more is a ConfigError. Keras has no limit.
    * `curve`: "ROC" (x = FPR, y = TPR), "PR" (x = recall, y = precision) or "PRGAIN" (recall
      and precision gain); lower-case spellings are accepted, the config says upper-case.
    * `summation_method`: "interpolation" (trapezoids; for PR, TP and FP are interpolated
      and precision integrated exactly), "minoring" or "majoring" (lower and upper bounds);
      capitalised spellings are accepted.
    * `multi_label`: one curve per column of 2-D input, averaged (or weighted by
      `label_weights`, divide-no-nan). Without `num_labels` the variables' shape (n, labels)
      is fixed by the session's first batch (Keras builds them on the first update) and a
      batch of another width is refused; with it they are built at once, and a batch of
      another width is refused too (Keras would broadcast a single column into every label).
      At most 1,000,000 elements per variable (`MAX_AUC_LABEL_ELEMENTS`).
    * `label_weights`: with `multi_label`, the weights of the per-label AUCs; without it, each
      element's count is multiplied by its column's weight (which needs y_pred with that many
      columns).
    * `from_logits`: apply a sigmoid to y_pred first.

    No data gives 0 for every curve; so does data of one class for ROC, and negatives only
    for PR and PRGAIN (positives only give a non-zero PR/PRGAIN area, as in Keras).
    """

    def __init__(self, num_thresholds: int = 200, curve: str = "ROC",
                 summation_method: str = "interpolation", name: str | None = None,
                 dtype: str | None = None, thresholds: list[float] | None = None,
                 multi_label: bool = False, num_labels: int | None = None,
                 label_weights: list[float] | None = None, from_logits: bool = False) -> None:
        super().__init__(name=name, dtype=dtype)
        if not isinstance(curve, str) or curve not in CURVES:
            raise ConfigError(f'Invalid AUC curve value: "{curve}". Expected values are '
                              '["PR", "ROC", "PRGAIN"] (or "pr", "roc", "prgain")')
        if not isinstance(summation_method, str) or summation_method not in SUMMATION_METHODS:
            raise ConfigError(f'Invalid AUC summation method value: "{summation_method}". '
                              'Expected values are ["interpolation", "majoring", "minoring"] '
                              '(or capitalised)')
        self.curve = CURVES[curve]
        self.summation_method = SUMMATION_METHODS[summation_method]

        self._init_from_thresholds = thresholds is not None
        if thresholds is not None:
            inner = _explicit_thresholds(thresholds)
            self.num_thresholds = len(inner) + 2
            self._thresholds_distributed_evenly = is_evenly_distributed_thresholds(
                [0.0, *inner, 1.0])
        else:
            self.num_thresholds = _num_thresholds(num_thresholds, minimum=2)
            inner = _inner_thresholds(self.num_thresholds)
            self._thresholds_distributed_evenly = True
        self._thresholds = [0.0 - ops.EPSILON, *inner, 1.0 + ops.EPSILON]

        self.multi_label = _require_bool(multi_label, "multi_label")
        if num_labels is not None and (not isinstance(num_labels, numbers.Integral)
                                       or isinstance(num_labels, bool) or num_labels < 0):
            raise ConfigError(f"num_labels must be a non-negative integer or null (0 and null "
                              f"both mean: taken from the first batch); got {num_labels!r}")
        self.num_labels = num_labels
        self.label_weights = _label_weights(label_weights, self.dtype)
        self._from_logits = _require_bool(from_logits, "from_logits")

        self._num_labels: int | None = None
        if self.multi_label:
            if num_labels:  # as in Keras, 0 means "not given"
                self._create_variables(int(num_labels), ConfigError)
            else:
                # Only this case is lazy: the first batch's width fixes the shape.
                self.lazy = True
        else:
            if num_labels:
                raise ConfigError(f"num_labels is only used with multi_label=true; got "
                                  f"num_labels={num_labels!r} with multi_label=false")
            self._create_variables(None, ConfigError)

    @property
    def thresholds(self) -> list[float]:
        """Every threshold, endpoints included (Keras' `AUC.thresholds`)."""
        return list(self._thresholds)

    # -- state ---------------------------------------------------------------------------
    def _check_labels(self, num_labels: int, error: type[Exception]) -> None:
        if num_labels < 1 or self.num_thresholds * num_labels > MAX_AUC_LABEL_ELEMENTS:
            raise error(f"AUC(multi_label=true) keeps num_thresholds x labels counts, at "
                        f"most {MAX_AUC_LABEL_ELEMENTS:,} and at least one label; got "
                        f"{self.num_thresholds} x {num_labels}")
        _check_label_weights_fit(self.label_weights, num_labels, error)

    def _create_variables(self, num_labels: int | None, error: type[Exception]) -> None:
        shape: tuple[int, ...] = (self.num_thresholds,)
        if num_labels is not None:
            self._check_labels(num_labels, error)
            shape = (self.num_thresholds, num_labels)
            self._num_labels = num_labels
        (self.true_positives, self.false_positives, self.true_negatives,
         self.false_negatives) = _add_confusion_variables(
            self, shape, self._thresholds, multi_label=self.multi_label,
            label_weights=None if self.multi_label else self.label_weights,
            thresholds_distributed_evenly=self._thresholds_distributed_evenly,
            from_logits=self._from_logits)

    def lazy_elements(self, **layout: Any) -> int:
        return 4 * self.num_thresholds * int(layout["num_labels"])

    def build_variables(self, **layout: Any) -> None:
        self._create_variables(int(layout["num_labels"]), InvalidInput)

    def _confusion_variables(self) -> tuple[Variable, Variable, Variable, Variable]:
        return self.true_positives, self.false_positives, self.true_negatives, \
            self.false_negatives

    # -- the Keras API ---------------------------------------------------------------------
    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        y_pred = np.asarray(y_pred, dtype=STATE_DTYPE)
        if self.lazy:
            if y_pred.ndim != 2:
                raise InvalidInput(f"AUC(multi_label=true) needs y_pred of shape (num_samples, "
                                   f"num_labels); got shape {list(y_pred.shape)}")
            labels = int(y_pred.shape[1])
            self._check_labels(labels, InvalidInput)  # before the layout sticks
            self.ensure_built(num_labels=labels)
        if self._from_logits:
            y_pred = _sigmoid(y_pred)
        counts = confusion_counts(
            y_true, y_pred, self._thresholds,
            sample_weight=sample_weight,
            multi_label=self.multi_label,
            label_weights=None if self.multi_label else self.label_weights,
            thresholds_distributed_evenly=self._thresholds_distributed_evenly,
        )
        tp = counts[ConfusionMatrix.TRUE_POSITIVES]
        if self.multi_label and tp.shape[1] != self._num_labels:
            raise InvalidInput(f"AUC(multi_label=true) keeps counts for {self._num_labels} "
                               f"label(s); this batch has {tp.shape[1]} (y_pred shape "
                               f"{list(y_pred.shape)})")
        self.true_positives.assign_add(tp)
        self.false_positives.assign_add(counts[ConfusionMatrix.FALSE_POSITIVES])
        self.true_negatives.assign_add(counts[ConfusionMatrix.TRUE_NEGATIVES])
        self.false_negatives.assign_add(counts[ConfusionMatrix.FALSE_NEGATIVES])

    def result(self) -> Any:
        if not self.built:
            raise InvalidInput("AUC(multi_label=true) without num_labels has no state before "
                               "its first update")
        tp, fp, tn, fn = _counts_f32(*self._confusion_variables())
        if self.curve == "PR" and self.summation_method == "interpolation":
            terms = _interpolated_pr_terms(tp, fp, fn)
        else:
            if self.curve == "ROC":
                x, y = _ratio(fp, tn), _ratio(tp, fn)  # FPR, TPR
            elif self.curve == "PR":
                x, y = _ratio(tp, fn), _ratio(tp, fp)  # recall, precision
            else:
                x, y = _gain_curve(tp, fp, tn, fn)
            terms = _riemann_terms(x, y, self.summation_method)
        if not self.multi_label:
            return np.sum(terms)
        by_label = np.sum(terms, axis=0)
        if self.label_weights is None:
            return np.mean(by_label)
        return ops.divide_no_nan(np.sum(by_label * self.label_weights),
                                 np.sum(self.label_weights))

    def merges_along_batch(self, inputs: Mapping[str, np.ndarray]) -> bool:
        return True  # each element (each row, with multi_label) is counted on its own

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            **super().get_config(),
            "num_thresholds": self.num_thresholds,
            "curve": self.curve,
            "summation_method": self.summation_method,
            "multi_label": self.multi_label,
            "num_labels": self.num_labels,
            "label_weights": None if self.label_weights is None
            else self.label_weights.tolist(),
            "from_logits": self._from_logits,
        }
        if self._init_from_thresholds:
            config["thresholds"] = self._thresholds[1:-1]
        return config


# -- the *At* family ---------------------------------------------------------------------------


class _SensitivitySpecificityBase(Metric):
    """What the four `*At*` metrics share: TP/FP/TN/FN over `num_thresholds` evenly spaced
    thresholds `[0, 1/(n-1), ..., 1]` **without** AUC's epsilon endpoints (bucket path:
    predictions clipped to [0, 1], and p = 0 is positive nowhere), or `[0.5]` when
    `num_thresholds` is 1 (a plain `p > 0.5`). `class_id` keeps one column of 2-D input;
    otherwise every element counts (there is no `multi_label` and no `top_k`).

    The result is the largest `dependent` ratio over the thresholds whose `constrained` ratio
    is >= the target (float32, as in Keras), or 0 when none is. At most 10,000 thresholds
    (`MAX_THRESHOLDS`; Keras has no limit).
    """

    _target_name: ClassVar[str]

    def __init__(self, value: float, num_thresholds: int = 200, class_id: int | None = None,
                 name: str | None = None, dtype: str | None = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self.value = _target(value, self._target_name)
        setattr(self, self._target_name, self.value)  # `specificity`, `recall`, ... as in Keras
        self.num_thresholds = _num_thresholds(num_thresholds, minimum=1)
        self.class_id = validate_class_id(class_id)
        if self.num_thresholds == 1:
            self.thresholds = [0.5]
            self._thresholds_distributed_evenly = False
        else:
            self.thresholds = [0.0, *_inner_thresholds(self.num_thresholds), 1.0]
            # Even for n = 2, where `is_evenly_distributed_thresholds` would say no.
            self._thresholds_distributed_evenly = True
        shape = (len(self.thresholds),)
        (self.true_positives, self.false_positives, self.true_negatives,
         self.false_negatives) = _add_confusion_variables(
            self, shape, self.thresholds, class_id=self.class_id,
            thresholds_distributed_evenly=self._thresholds_distributed_evenly)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        counts = confusion_counts(
            y_true, y_pred, self.thresholds,
            class_id=self.class_id,
            sample_weight=sample_weight,
            thresholds_distributed_evenly=self._thresholds_distributed_evenly,
        )
        self.true_positives.assign_add(counts[ConfusionMatrix.TRUE_POSITIVES])
        self.false_positives.assign_add(counts[ConfusionMatrix.FALSE_POSITIVES])
        self.true_negatives.assign_add(counts[ConfusionMatrix.TRUE_NEGATIVES])
        self.false_negatives.assign_add(counts[ConfusionMatrix.FALSE_NEGATIVES])

    def _curves(self, tp: np.ndarray, fp: np.ndarray, tn: np.ndarray,
                fn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(constrained, dependent) ratios per threshold."""
        raise NotImplementedError

    def result(self) -> Any:
        tp, fp, tn, fn = _counts_f32(self.true_positives, self.false_positives,
                                     self.true_negatives, self.false_negatives)
        constrained, dependent = self._curves(tp, fp, tn, fn)
        # A Python float against float32 compares in float32 in Keras (numpy and JAX alike).
        feasible = constrained >= _F32(self.value)
        return np.max(np.where(feasible, dependent, _F32(0)), initial=_F32(0))

    def merges_along_batch(self, inputs: Mapping[str, np.ndarray]) -> bool:
        # class_id picks a column of the last axis: the batch axis only if it is not the last.
        return self.class_id is None or ranks_at_least(inputs, 2)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "class_id": self.class_id,
            "num_thresholds": self.num_thresholds,
            self._target_name: self.value,
        }


class SensitivityAtSpecificity(_SensitivitySpecificityBase):
    """The best sensitivity TP/(TP+FN) over thresholds whose specificity TN/(TN+FP) is at
    least `specificity`."""

    _target_name = "specificity"

    def __init__(self, specificity: float, num_thresholds: int = 200,
                 class_id: int | None = None, name: str | None = None,
                 dtype: str | None = None) -> None:
        super().__init__(specificity, num_thresholds, class_id, name=name, dtype=dtype)

    def _curves(self, tp: np.ndarray, fp: np.ndarray, tn: np.ndarray,
                fn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _ratio(tn, fp), _ratio(tp, fn)


class SpecificityAtSensitivity(_SensitivitySpecificityBase):
    """The best specificity TN/(TN+FP) over thresholds whose sensitivity TP/(TP+FN) is at
    least `sensitivity`."""

    _target_name = "sensitivity"

    def __init__(self, sensitivity: float, num_thresholds: int = 200,
                 class_id: int | None = None, name: str | None = None,
                 dtype: str | None = None) -> None:
        super().__init__(sensitivity, num_thresholds, class_id, name=name, dtype=dtype)

    def _curves(self, tp: np.ndarray, fp: np.ndarray, tn: np.ndarray,
                fn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _ratio(tp, fn), _ratio(tn, fp)


class PrecisionAtRecall(_SensitivitySpecificityBase):
    """The best precision TP/(TP+FP) over thresholds whose recall TP/(TP+FN) is at least
    `recall`."""

    _target_name = "recall"

    def __init__(self, recall: float, num_thresholds: int = 200, class_id: int | None = None,
                 name: str | None = None, dtype: str | None = None) -> None:
        super().__init__(recall, num_thresholds, class_id, name=name, dtype=dtype)

    def _curves(self, tp: np.ndarray, fp: np.ndarray, tn: np.ndarray,
                fn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _ratio(tp, fn), _ratio(tp, fp)


class RecallAtPrecision(_SensitivitySpecificityBase):
    """The best recall TP/(TP+FN) over thresholds whose precision TP/(TP+FP) is at least
    `precision`; 0 when no threshold reaches it."""

    _target_name = "precision"

    def __init__(self, precision: float, num_thresholds: int = 200,
                 class_id: int | None = None, name: str | None = None,
                 dtype: str | None = None) -> None:
        super().__init__(precision, num_thresholds, class_id, name=name, dtype=dtype)

    def _curves(self, tp: np.ndarray, fp: np.ndarray, tn: np.ndarray,
                fn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _ratio(tp, fp), _ratio(tp, fn)


METRICS = [
    AUC, SensitivityAtSpecificity, SpecificityAtSensitivity, PrecisionAtRecall,
    RecallAtPrecision,
]
