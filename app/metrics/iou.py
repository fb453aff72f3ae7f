"""Image-segmentation metrics: IoU, MeanIoU, BinaryIoU, OneHotIoU and OneHotMeanIoU, as in
`keras/src/metrics/iou_metrics.py`.

State: one `total_confusion_matrix` of shape (num_classes, num_classes), rows the true class
and columns the predicted class, holding the (weighted) number of pixels of each pair.

The update, as in Keras: take the argmax over `axis` where the input is not sparse (one-hot or
scores), flatten y_true, y_pred and the weights, drop every pair whose true or predicted id is
outside [0, num_classes) and every pair whose *true* id is `ignore_class` (a pair predicted as
the ignored class is kept), then add the weights into the matrix. (Tally refuses a batch with
ids outside [0, num_classes) other than a true `ignore_class` instead of dropping them; see
below.) BinaryIoU first turns y_pred
into class 1 where `y_pred >= threshold` (compared in float32; `>=`, unlike every other
thresholded Keras metric) and 0 elsewhere.

The result, as in Keras: per target class c, TP = cm[c, c] and
denominator = row sum + column sum - TP. A class counts only when its denominator is > 1e-9;
its IoU is TP / (denominator + 1e-7). The result is the sum of the counted IoUs divided by
(their number + 1e-7), in float32, so a perfect score is 0.9999998 and no data gives 0.

Where Tally deliberately differs from Keras 3.15.1 (each difference is tested):

* **Sample weights are accumulated exactly, whatever `dtype` says.** Keras stores the matrix in
  `dtype`, by default int32, and casts the weights to it first, so a weight of 0.3 counts 0,
  1.7 counts 1, and its own documented weighted examples give 0.0 with the default dtype.
  Tally keeps the float weights (each batch's counts are summed in float64 and stored per cell
  as float32, then the stores add them as doubles): every result equals Keras' result with
  `dtype="float32"`.
  `dtype` is still validated and echoed in the config exactly as Keras does ("int32" by
  default, "int64" or a float dtype), but the variable is float32 (float64 for
  `dtype="float64"`), and `/variables` says so: it reports what the state really holds. With
  integer weights, or none, the counts are the same as Keras' int32 counts. (A float16 dtype
  also gets a float32 matrix: a float16 count stops moving at 2048.)
* **Sparse class ids must be integers.** Keras converts ids to `dtype` before anything else:
  with int32 a label of 1.99 becomes class 1 and -0.5 becomes class 0 (counted), while with
  `dtype="float32"` the same -0.5 is out of range (dropped). A fractional, NaN or infinite id
  is a malformed label, so Tally rejects the batch with InvalidInput instead of guessing.
  Ids that come from an argmax (one-hot y_true, score y_pred) and BinaryIoU's thresholded
  y_pred are always integers.
* **Ids outside [0, num_classes) are refused (422), not dropped.** Keras silently drops every
  pair with such an id; the HTTP contract makes "labels outside what the metric accepts" a
  422, which also catches a session configured with too few classes. A "void" label
  (255 or -1 in segmentation maps) is declared as `ignore_class`: a pair whose *true* id is
  `ignore_class` is dropped whatever its prediction, as in Keras. An argmax over a class axis
  wider than `num_classes` can give such ids too, and is refused the same way.
* **`axis` only chooses the argmax axis.** Keras also uses it to sum the per-class IoU vector
  in `result()`, so any axis other than -1 or 0 (e.g. `axis=1` for channels-first maps) makes
  its `result()` raise. Tally sums the vector whatever `axis` is.
* **y_true and y_pred must hold as many ids.** Keras broadcasts a single id against a batch
  (y_true [0, 1, 2] with y_pred [1] counts three pairs); Tally treats that as a shape mismatch.
* **`target_class_ids` must lie in [0, num_classes).** Keras checks only the maximum, so a
  negative id silently wraps around to the last classes.
* **`num_classes` is at most `MAX_NUM_CLASSES`**, so that a config cannot make every request
  allocate a huge dense matrix.

Sample weights: a scalar (or any single-element array), or exactly one weight per class id
(the ids after the argmax). Per-image weights for 2-D maps are refused, as Keras refuses them.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from app.errors import ConfigError, InvalidInput
from app.metrics import ops
from app.metrics.accuracy import validate_flag, validate_threshold
from app.metrics.base import (
    FLOAT_DTYPES,
    INT_DTYPES,
    Metric,
    ranks_at_least,
    validate_dtype,
)
from app.metrics.limits import MAX_IOU_CLASSES
from app.metrics.probabilistic import validate_axis, validate_ignore_class

#: Largest `num_classes` a session may ask for (see limits.py).
MAX_NUM_CLASSES = MAX_IOU_CLASSES

#: Keras' default IoU dtype ("int" in its constructor, reported as "int32").
DEFAULT_DTYPE = "int32"


def validate_num_classes(num_classes: Any) -> int:
    if (isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral)
            or not 1 <= int(num_classes) <= MAX_NUM_CLASSES):
        raise ConfigError(f"num_classes must be an integer in [1, {MAX_NUM_CLASSES}]; "
                          f"got {num_classes!r}")
    return int(num_classes)


def validate_target_class_ids(target_class_ids: Any, num_classes: int) -> list[int]:
    expected = (f"target_class_ids must be a non-empty list of integer class ids in "
                f"[0, {num_classes})")
    if not isinstance(target_class_ids, list | tuple) or not target_class_ids:
        raise ConfigError(f"{expected}; got {target_class_ids!r}")
    bad = [i for i in target_class_ids
           if isinstance(i, bool) or not isinstance(i, numbers.Integral)
           or not 0 <= int(i) < num_classes]
    if bad:
        raise ConfigError(f"{expected}; got {list(target_class_ids)!r}, of which {bad!r} "
                          "are not")
    return [int(i) for i in target_class_ids]


def state_dtype(dtype: str) -> str:
    """The matrix's real dtype: float64 if asked for, float32 otherwise (see the docstring)."""
    return "float64" if dtype == "float64" else "float32"


def _numeric(x: Any, what: str, metric: str) -> np.ndarray:
    array = np.asarray(x)
    if array.dtype.kind not in "biuf":
        raise InvalidInput(f"{metric} expects numeric {what}; got an array of {array.dtype}")
    return array


class _IoUBase(Metric):
    """The confusion-matrix update every IoU metric shares."""

    def __init__(self, num_classes: int, name: str | None = None, dtype: str | None = None,
                 ignore_class: int | None = None, sparse_y_true: bool = True,
                 sparse_y_pred: bool = True, axis: int = -1) -> None:
        super().__init__(name=name)
        self.dtype = DEFAULT_DTYPE if dtype is None else validate_dtype(
            dtype, INT_DTYPES + FLOAT_DTYPES)
        self.num_classes = validate_num_classes(num_classes)
        self.ignore_class = validate_ignore_class(ignore_class)
        self.sparse_y_true = validate_flag(sparse_y_true, "sparse_y_true")
        self.sparse_y_pred = validate_flag(sparse_y_pred, "sparse_y_pred")
        self.axis = validate_axis(axis)
        self.total_cm = self.add_variable(
            shape=(self.num_classes, self.num_classes), dtype=state_dtype(self.dtype),
            name="total_confusion_matrix",
        )

    def _config(self, *keys: str) -> dict[str, Any]:
        """Keras' config for these keys, in this order (each IoU class lists its own)."""
        return {key: getattr(self, key) for key in keys}

    def _class_ids(self, values: Any, sparse: bool, what: str) -> np.ndarray:
        """`values` as float64 class ids (integers, possibly out of range), not yet flat."""
        metric = type(self).__name__
        array = _numeric(values, what, metric)
        if not sparse:
            if array.ndim == 0:
                raise InvalidInput(f"{metric} expects {what} with a class axis to take the "
                                   "argmax over; got a scalar")
            axis = ops.canonical_axis(self.axis, array.ndim, what, metric)
            ids = ops.argmax(array, axis=axis).astype(np.float64)
            if ids.ndim == 0:
                raise InvalidInput(
                    f"{metric} expects {what} with a batch axis besides the class axis "
                    f"{self.axis}; got shape {ops.shape_str(array)}, a single one-hot vector")
            return ids
        if array.ndim == 0:
            raise InvalidInput(f"{metric} expects {what} with a batch axis (an array of class "
                               "ids); got a scalar")
        ids = array.astype(np.float64)
        bad = ~np.isfinite(ids) | (ids != np.round(ids))
        if np.any(bad):
            raise InvalidInput(
                f"{metric} expects {what} to be integer class ids in "
                f"[0, {self.num_classes}); got {int(np.count_nonzero(bad))} "
                f"non-integer value(s), e.g. {ids[bad][:5].tolist()}")
        return ids

    def _check_in_range(self, ids: np.ndarray, what: str) -> None:
        """Class ids must lie in [0, num_classes) (a y_true id equal to `ignore_class` was
        already set aside, with its pair). Keras drops other pairs silently; the contract
        makes labels outside what the metric accepts a 422."""
        bad = (ids < 0) | (ids >= self.num_classes)
        if not np.any(bad):
            return
        values = np.unique(ids[bad])
        ignore = ("" if self.ignore_class is None
                  else f" (or ignore_class={self.ignore_class} in y_true)")
        shown = ", ".join(str(int(v)) for v in values[:5]) + (", ..." if values.size > 5 else "")
        raise InvalidInput(
            f"{type(self).__name__} expects {what} class ids in [0, {self.num_classes})"
            f"{ignore}; got {int(np.count_nonzero(bad))} id(s) outside it: {shown}")

    def _weights(self, sample_weight: Any, n: int, true_shape: tuple[int, ...]) -> np.ndarray:
        metric = type(self).__name__
        if sample_weight is None:
            return np.ones(n)
        weights = _numeric(sample_weight, "sample_weight", metric).astype(np.float64)
        if weights.size == 1:
            return np.full(n, weights.ravel()[0])
        if weights.size != n:
            raise InvalidInput(
                f"sample_weight of shape {ops.shape_str(weights)} does not fit: {metric} "
                f"takes a scalar or one weight per class id of y_true ({n} ids, shape "
                f"{list(true_shape)}); per-sample weights for maps are not supported")
        return weights.ravel()

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        true_ids = self._class_ids(y_true, self.sparse_y_true, "y_true")
        pred_ids = self._class_ids(y_pred, self.sparse_y_pred, "y_pred")
        true_shape = true_ids.shape
        true_ids, pred_ids = true_ids.ravel(), pred_ids.ravel()
        if true_ids.size != pred_ids.size:
            raise InvalidInput(
                f"{type(self).__name__} expects as many class ids in y_true as in y_pred; "
                f"got {true_ids.size} (y_true shape {ops.shape_str(y_true)}) and "
                f"{pred_ids.size} (y_pred shape {ops.shape_str(y_pred)})")
        weights = self._weights(sample_weight, true_ids.size, true_shape)
        k = self.num_classes
        keep = np.ones(true_ids.shape, dtype=bool)
        if self.ignore_class is not None:
            keep = true_ids != self.ignore_class
        self._check_in_range(true_ids[keep], "y_true")
        self._check_in_range(pred_ids[keep], "y_pred")
        cells = true_ids[keep].astype(np.int64) * k + pred_ids[keep].astype(np.int64)
        counts = np.bincount(cells, weights=weights[keep], minlength=k * k)
        self.total_cm.assign_add(counts.reshape(k, k))


class IoU(_IoUBase):
    """The mean Intersection-over-Union of the classes in `target_class_ids`."""

    def __init__(self, num_classes: int, target_class_ids: Sequence[int],
                 name: str | None = None, dtype: str | None = None,
                 ignore_class: int | None = None, sparse_y_true: bool = True,
                 sparse_y_pred: bool = True, axis: int = -1) -> None:
        super().__init__(num_classes, name=name, dtype=dtype, ignore_class=ignore_class,
                         sparse_y_true=sparse_y_true, sparse_y_pred=sparse_y_pred, axis=axis)
        self.target_class_ids = validate_target_class_ids(target_class_ids, self.num_classes)

    def result(self) -> Any:
        cm = np.asarray(self.total_cm.value, dtype=np.float64)
        true_positives = np.diagonal(cm)
        denominator = cm.sum(axis=0) + cm.sum(axis=1) - true_positives
        targets = self.target_class_ids
        tp = true_positives[targets].astype(np.float32)
        denominator = denominator[targets].astype(np.float32)
        valid = denominator > np.float32(1e-9)  # NaN counts as absent, as in Keras
        eps = np.float32(ops.EPSILON)
        iou = np.where(valid, tp / (denominator + eps), np.float32(0))
        return np.sum(iou, dtype=np.float32) / (np.float32(np.count_nonzero(valid)) + eps)

    def merges_along_batch(self, inputs: Mapping[str, np.ndarray]) -> bool:
        # Sparse input is counted element by element; one-hot input takes an argmax along
        # `axis`, which must not be the batch axis.
        return (self.sparse_y_true and self.sparse_y_pred) or (
            ranks_at_least(inputs, 2) and self.axis == -1)

    def get_config(self) -> dict[str, Any]:
        return self._config(
            "name", "dtype", "num_classes", "target_class_ids",
            "ignore_class", "sparse_y_true", "sparse_y_pred", "axis",
        )


class BinaryIoU(IoU):
    """IoU of classes 0 and/or 1, the predicted class being `y_pred >= threshold`."""

    def __init__(self, target_class_ids: Sequence[int] = (0, 1), threshold: float = 0.5,
                 name: str | None = None, dtype: str | None = None) -> None:
        super().__init__(num_classes=2, target_class_ids=target_class_ids, name=name,
                         dtype=dtype)
        self.threshold = validate_threshold(threshold)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        # Keras compares in float32, the threshold a weak Python scalar (so float32 as well).
        scores = _numeric(y_pred, "y_pred", "BinaryIoU").astype(np.float32)
        predicted = (scores >= np.float32(self.threshold)).astype(np.float32)
        super().update_state(y_true, predicted, sample_weight)

    def get_config(self) -> dict[str, Any]:
        return self._config("target_class_ids", "threshold", "name", "dtype")


class MeanIoU(IoU):
    """The mean IoU over all `num_classes` classes (absent classes excluded)."""

    def __init__(self, num_classes: int, name: str | None = None, dtype: str | None = None,
                 ignore_class: int | None = None, sparse_y_true: bool = True,
                 sparse_y_pred: bool = True, axis: int = -1) -> None:
        n = validate_num_classes(num_classes)
        super().__init__(n, list(range(n)), name=name, dtype=dtype, ignore_class=ignore_class,
                         sparse_y_true=sparse_y_true, sparse_y_pred=sparse_y_pred, axis=axis)

    def get_config(self) -> dict[str, Any]:
        return self._config(
            "num_classes", "name", "dtype",
            "ignore_class", "sparse_y_true", "sparse_y_pred", "axis",
        )


class OneHotIoU(IoU):
    """IoU for one-hot y_true (argmax over `axis`); y_pred scores unless `sparse_y_pred`."""

    def __init__(self, num_classes: int, target_class_ids: Sequence[int],
                 name: str | None = None, dtype: str | None = None,
                 ignore_class: int | None = None, sparse_y_pred: bool = False,
                 axis: int = -1) -> None:
        super().__init__(num_classes, target_class_ids, name=name, dtype=dtype,
                         ignore_class=ignore_class, sparse_y_true=False,
                         sparse_y_pred=sparse_y_pred, axis=axis)

    def get_config(self) -> dict[str, Any]:
        return self._config(
            "num_classes", "target_class_ids", "name",
            "dtype", "ignore_class", "sparse_y_pred", "axis",
        )


class OneHotMeanIoU(MeanIoU):
    """MeanIoU for one-hot y_true (argmax over `axis`); y_pred scores unless `sparse_y_pred`."""

    def __init__(self, num_classes: int, name: str | None = None, dtype: str | None = None,
                 ignore_class: int | None = None, sparse_y_pred: bool = False,
                 axis: int = -1) -> None:
        super().__init__(num_classes, name=name, dtype=dtype, ignore_class=ignore_class,
                         sparse_y_true=False, sparse_y_pred=sparse_y_pred, axis=axis)

    def get_config(self) -> dict[str, Any]:
        return self._config("num_classes", "name", "dtype", "ignore_class", "sparse_y_pred", "axis")


METRICS = [IoU, MeanIoU, BinaryIoU, OneHotIoU, OneHotMeanIoU]
