"""The confusion-matrix machinery shared by the thresholded metrics, as Keras'
`metrics_utils.update_confusion_matrix_variables` defines it.

TP/FP/TN/FN, Precision and Recall use it now; AUC and the `*AtRecall`/`*AtPrecision` family
build on `label_weights`, `multi_label` and the evenly spaced ("bucket") path.

Semantics, in Keras' order:

1. y_true and y_pred are cast to float32 (the state dtype) and their ranks aligned; any
   non-zero label is positive.
2. `sample_weight` is aligned against y_true (a scalar, `(N,)` per row, or per element).
3. `top_k` keeps the k largest predictions of each row (last axis); the rest become -1e10.
4. `class_id` then keeps only that column.
5. An element is predicted positive at threshold t when `y_pred > t` (strict, float32).
   Evenly spaced thresholds (`[0, 1/(n-1), ..., 1]`, n >= 3) take Keras' bucket path instead:
   y_pred is clipped to [0, 1] and the element is positive at the first
   `ceil(p * (n-1))` thresholds, computed in float32; this differs from `p > t` only within an
   ulp of a threshold, which is why it is reproduced rather than replaced by the comparison.

Both paths reduce every element to a *rank*: the number of leading thresholds (in ascending
order) at which it is positive. One weighted histogram of ranks and a cumulative sum then give
the counts for every threshold, in O(N log T + T) instead of Keras' N x T comparison matrix.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping, Sequence
from enum import Enum
from functools import partial
from typing import Any

import numpy as np

from app.errors import ConfigError, InvalidInput
from app.metrics import ops
from app.metrics.base import Variable
from app.metrics.limits import MAX_THRESHOLDS
from app.parallel import run_split

NEG_INF = -1e10
"""What `top_k` puts in place of the predictions it drops, and the default threshold of
Precision/Recall with `top_k`: every kept prediction is above it."""

STATE_DTYPE = "float32"
"""Keras keeps confusion counts in floatx whatever the metric's `dtype` says."""


class ConfusionMatrix(Enum):
    TRUE_POSITIVES = "tp"
    FALSE_POSITIVES = "fp"
    TRUE_NEGATIVES = "tn"
    FALSE_NEGATIVES = "fn"


# -- constructor arguments -------------------------------------------------------------------


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def parse_init_thresholds(thresholds: Any, default_threshold: float = 0.5) -> list[float]:
    """The threshold list a metric works with: `thresholds` (a number or a non-empty list of at
    most MAX_THRESHOLDS numbers in [0, 1]) or `[default_threshold]` when it is None."""
    if thresholds is None:
        return [float(default_threshold)]
    values = list(thresholds) if isinstance(thresholds, list | tuple) else [thresholds]
    if not values:
        raise ConfigError("thresholds must be a number in [0, 1] or a non-empty list of them; "
                          "got an empty list")
    if len(values) > MAX_THRESHOLDS:
        raise ConfigError(f"thresholds may hold at most {MAX_THRESHOLDS} values (the state keeps "
                          f"one count per threshold); got {len(values)}")
    bad = [t for t in values if not _is_number(t) or not 0.0 <= float(t) <= 1.0]
    if bad:
        # Keras' wording first (its own tests match it), then what was given.
        raise ConfigError(f"Threshold values must be in [0, 1]. Received: {bad[:10]!r} "
                          f"(thresholds must be numbers in [0, 1]; got {thresholds!r})")
    return [float(t) for t in values]


def validate_top_k(top_k: Any) -> int | None:
    if top_k is not None and (not isinstance(top_k, numbers.Integral) or isinstance(top_k, bool)
                              or top_k < 1):
        raise ConfigError(f"top_k must be a positive integer or null; got {top_k!r}")
    return None if top_k is None else int(top_k)


def validate_class_id(class_id: Any) -> int | None:
    if class_id is not None and (not isinstance(class_id, numbers.Integral)
                                 or isinstance(class_id, bool) or class_id < 0):
        raise ConfigError(f"class_id must be a non-negative integer or null; got {class_id!r}")
    return None if class_id is None else int(class_id)


def is_evenly_distributed_thresholds(thresholds: Sequence[float]) -> bool:
    """Whether Keras takes the bucket path: at least 3 thresholds close to `i / (n-1)`.

    The closeness test is numpy's `allclose` with Keras' atol of 1e-7 *and* numpy's default
    rtol of 1e-5, exactly as Keras calls it."""
    n = len(thresholds)
    if n < 3:
        return False
    even = np.arange(n, dtype=np.float32) / (n - 1)
    return bool(np.allclose(thresholds, even, atol=ops.EPSILON))


# -- input preparation -----------------------------------------------------------------------


def _align_sample_weight(sample_weight: Any, y_true: np.ndarray) -> np.ndarray:
    """Keras appends an axis to the weights and then squeezes it again when that makes the
    ranks match y_true's: `(N,)` becomes a per-row `(N, 1)` for 2-D y, `(N, C)` stays
    per-element, and `(N, 1)` for 1-D y is left at rank 3, which cannot broadcast."""
    weight = np.expand_dims(np.asarray(sample_weight, dtype=STATE_DTYPE), -1)
    _, weight = ops.squeeze_or_expand_to_same_rank(y_true, weight, expand_rank_1=False)
    return weight


def _broadcast_weight(weight: np.ndarray, shape: tuple[int, ...],
                      given: tuple[int, ...]) -> np.ndarray:
    try:
        return np.broadcast_to(weight, shape)
    except ValueError:
        accepted = ["a scalar"]
        if len(shape) > 1:
            accepted.append(f"shape {list(shape[:-1])} (one per row)")
        accepted.append(f"shape {list(shape)} (one per element)")
        raise InvalidInput(
            f"sample_weight of shape {list(given)} does not fit predictions of shape "
            f"{list(shape)}; expected {', '.join(accepted[:-1])} or {accepted[-1]}"
        ) from None


def filter_top_k(y_pred: np.ndarray, k: int) -> np.ndarray:
    """Keep the k largest values of each row (last axis), replacing the others by -1e10.

    Ties keep the lowest index, as `jax.lax.top_k` does (Keras' numpy backend keeps the
    highest). Written as `x * mask + NEG_INF * (1 - mask)` like Keras, so a dropped
    infinite prediction becomes NaN there too."""
    columns = y_pred.shape[-1]
    if k > columns:
        raise InvalidInput(f"top_k={k} exceeds the {columns} prediction(s) along the last "
                           f"axis of y_pred (shape {list(y_pred.shape)}); expected top_k <= "
                           f"{columns}")
    order = np.argsort(-y_pred, axis=-1, kind="stable")[..., :k]
    mask = np.zeros_like(y_pred)
    np.put_along_axis(mask, order, 1, axis=-1)
    return y_pred * mask + np.float32(NEG_INF) * (1 - mask)


def _select_class(y_true: np.ndarray, y_pred: np.ndarray,
                  class_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Column `class_id` of both, keeping the axis so per-row weights still line up."""
    if y_pred.ndim < 2:
        raise InvalidInput(f"When class_id is provided, y_pred must be a 2D array with shape "
                           f"(num_samples, num_classes), found shape: {list(y_pred.shape)} "
                           f"(class_id={class_id})")
    columns = y_pred.shape[-1]
    if class_id >= columns:
        raise InvalidInput(f"class_id={class_id} is out of range for y_pred with {columns} "
                           f"classes (shape {list(y_pred.shape)}); expected class_id < "
                           f"{columns}")
    return y_true[..., class_id, None], y_pred[..., class_id, None]


def _prepare(y_true: Any, y_pred: Any, sample_weight: Any, top_k: int | None,
             class_id: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Cast, align, filter and slice as Keras does; the weights come back with y_pred's shape."""
    y_true = np.asarray(y_true, dtype=STATE_DTYPE)
    y_pred = np.asarray(y_pred, dtype=STATE_DTYPE)
    y_pred, y_true = ops.squeeze_or_expand_to_same_rank(y_pred, y_true)
    if y_pred.ndim == 0:
        # Keras' generic path fails on them (its bucket path happens to accept them).
        raise InvalidInput("y_true and y_pred need a batch axis, e.g. shape (num_samples,); "
                           "got scalars")
    if y_true.shape != y_pred.shape:
        raise InvalidInput(f"y_true and y_pred must have the same shape (a trailing axis of "
                           f"size 1 may differ); got y_true {list(np.shape(y_true))} and "
                           f"y_pred {list(np.shape(y_pred))}")
    given = np.shape(sample_weight)
    weight = None if sample_weight is None else _align_sample_weight(sample_weight, y_true)
    if top_k is not None:
        y_pred = filter_top_k(y_pred, top_k)
    if class_id is not None:
        y_true, y_pred = _select_class(y_true, y_pred, class_id)
    if weight is not None:
        weight = _broadcast_weight(weight, y_pred.shape, given)
    return y_true, y_pred, weight


def _label_weights(label_weights: Any, shape: tuple[int, ...]) -> np.ndarray:
    """AUC's per-class weights, one per column of y_pred."""
    weights = np.expand_dims(np.asarray(label_weights, dtype=STATE_DTYPE), 0)
    try:
        return np.broadcast_to(weights, shape)
    except ValueError:
        raise InvalidInput(f"label_weights of shape {list(weights.shape[1:])} need y_pred of "
                           f"shape (num_samples, {weights.shape[-1]}); got shape "
                           f"{list(shape)}") from None


# -- ranks: how many leading thresholds each element is positive at -------------------------


def _generic_ranks(y_pred: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranks against the *sorted* thresholds (`y_pred > t`, float32, strict), and the sort
    order. NaN is above nothing."""
    order = np.argsort(thresholds, kind="stable")
    ranks = np.searchsorted(thresholds[order], y_pred, side="left")
    ranks[np.isnan(y_pred)] = 0
    return ranks, order


def _bucket_ranks(y_pred: np.ndarray, num_thresholds: int, with_epsilon: bool) -> np.ndarray:
    """Keras' bucket index `ceil(clip(p, 0, 1) * (n-1)) - 1` plus one, in float32, as a new
    float32 array of whole numbers (the caller may write into it; `_label_histograms` does).

    With epsilon endpoints (AUC's -1e-7 and 1+1e-7) every prediction is above the first
    threshold, so the rank is at least 1. NaN is above nothing: rank 0.

    Hot path (one pass per step over every prediction of a batch), so the steps work in place
    on the one new array: `p * (n-1)` clipped to [lowest rank, n-1] and rounded up equals
    Keras' clip-multiply-ceil for every float32 p, because rounding is monotonic and the
    bounds are whole numbers (p > 1 gives at least n-1, p < 0 at most -0.0, +-inf a bound);
    numpy's `clip` is fast on a float32 array with float32 bounds.
    `np.clip` keeps NaN, which one `isnan(...).any()` then finds."""
    top = np.float32(num_thresholds - 1)
    with np.errstate(over="ignore"):  # p * (n-1) beyond float32 is inf, clipped to n-1
        ranks = np.multiply(y_pred, top)
    np.clip(ranks, np.float32(1 if with_epsilon else 0), top, out=ranks)
    np.ceil(ranks, out=ranks)
    nan = np.isnan(ranks)
    if nan.any():
        ranks[nan] = 0
    return ranks


def _rank_histogram(ranks: np.ndarray, weights: np.ndarray, num_thresholds: int,
                    multi_label: bool) -> np.ndarray:
    """Weighted count of each rank 0..T, shape (groups, T+1): one group, or one per column
    of 2-D multi-label input. Float64, so the per-batch sums are as exact as possible."""
    width = num_thresholds + 1
    if multi_label:
        groups = ranks.shape[1]
        keys = ranks + width * np.arange(groups)
    else:
        groups = 1
        keys = ranks
    hist = np.bincount(keys.ravel(), weights=np.asarray(weights, np.float64).ravel(),
                       minlength=groups * width)
    return hist.reshape(groups, width)


def _label_histograms(ranks: np.ndarray, is_positive: np.ndarray, num_thresholds: int,
                      multi_label: bool) -> tuple[np.ndarray, np.ndarray]:
    """`_rank_histogram` of the positives and of the negatives when every weight is 1: one
    unweighted count of (rank, label) pairs instead of two weighted ones (half the passes
    over a large batch; integer counts, so the same float64 numbers).

    `ranks` are `_bucket_ranks`' float32 whole numbers, overwritten here: the key
    `rank * 2 + label` is built in place in float32 (exact: ranks are at most MAX_THRESHOLDS,
    so keys stay far under 2**24) and converted to integers once, not three int64 temporaries."""
    width = num_thresholds + 1
    groups = ranks.shape[1] if multi_label else 1
    ranks *= 2
    ranks += is_positive
    keys = ranks.astype(np.intp)
    if multi_label:  # in integers: groups x width may exceed float32's exact range
        keys += 2 * width * np.arange(groups)
    hist = np.bincount(keys.ravel(), minlength=groups * width * 2).astype(np.float64)
    pairs = hist.reshape(groups, width, 2)
    return pairs[:, :, 1], pairs[:, :, 0]


def _above(hist: np.ndarray) -> np.ndarray:
    """Per threshold position j: the weight of ranks > j (elements positive at j)."""
    return np.cumsum(hist[:, ::-1], axis=1)[:, ::-1][:, 1:]


def _at_or_below(hist: np.ndarray) -> np.ndarray:
    """Per threshold position j: the weight of ranks <= j (elements negative at j)."""
    return np.cumsum(hist, axis=1)[:, :-1]


#: Below this many sample x threshold pairs, comparing every prediction with every threshold
#: costs fewer numpy calls than ranks and histograms (small batches are the hot path); above
#: it, the rank path keeps memory at O(samples + thresholds).
DIRECT_ELEMENTS = 4096


def _direct_counts(y_pred: np.ndarray, is_positive: np.ndarray, weight: np.ndarray,
                   thresholds: np.ndarray, conditions: Sequence[ConfusionMatrix]
                   ) -> dict[ConfusionMatrix, np.ndarray]:
    """The counts the rank path gives, by direct comparison (`y_pred > t`; NaN is above
    nothing), for the requested conditions only; shape (1, T) like the rank path's."""
    above = y_pred[:, None] > thresholds[None, :]
    w = np.asarray(weight, np.float64)
    on_true = np.where(is_positive, w, 0.0)[:, None]
    on_false = np.where(is_positive, 0.0, w)[:, None]
    pick = {
        ConfusionMatrix.TRUE_POSITIVES: (above, on_true),
        ConfusionMatrix.FALSE_POSITIVES: (above, on_false),
        ConfusionMatrix.TRUE_NEGATIVES: (~above, on_false),
        ConfusionMatrix.FALSE_NEGATIVES: (~above, on_true),
    }
    return {cond: np.where(pick[cond][0], pick[cond][1], 0.0).sum(axis=0)[None, :]
            for cond in conditions}


#: Unweighted batches of this many elements or more are counted in two halves at once
#: (app/parallel.py). The counts are whole numbers, so the halves add up exactly.
SPLIT_ELEMENTS = 1 << 18


def _unweighted_histograms(y_pred: np.ndarray, is_positive: np.ndarray, num_thresholds: int,
                           with_epsilon: bool, multi_label: bool
                           ) -> tuple[np.ndarray, np.ndarray]:
    """`_label_histograms` of the bucket ranks, by halves of the rows for a large batch."""
    def count(rows: slice) -> tuple[np.ndarray, np.ndarray]:
        ranks = _bucket_ranks(y_pred[rows], num_thresholds, with_epsilon)
        return _label_histograms(ranks, is_positive[rows], num_thresholds, multi_label)

    if y_pred.size < SPLIT_ELEMENTS or len(y_pred) < 2:
        return count(slice(None))
    half = len(y_pred) // 2
    (true_a, false_a), (true_b, false_b) = run_split(
        [partial(count, slice(0, half)), partial(count, slice(half, None))])
    return true_a + true_b, false_a + false_b


def _bucket_counts(y_pred: np.ndarray, is_positive: np.ndarray, weight: np.ndarray | None,
                   num_thresholds: int, with_epsilon: bool, multi_label: bool
                   ) -> dict[ConfusionMatrix, np.ndarray]:
    """Keras' evenly spaced path: all four counts, shape (groups, T). Unweighted batches (the
    common large case) never build a weight array."""
    if weight is None:
        hist_true, hist_false = _unweighted_histograms(y_pred, is_positive, num_thresholds,
                                                       with_epsilon, multi_label)
    else:
        ranks = _bucket_ranks(y_pred, num_thresholds, with_epsilon)
        # Keras weighs labels by multiplication here, so a NaN weight reaches both sides.
        label = is_positive.astype(STATE_DTYPE)
        true_w, false_w = label * weight, (1 - label) * weight
        keys = ranks.astype(np.intp)
        hist_true = _rank_histogram(keys, true_w, num_thresholds, multi_label)
        hist_false = _rank_histogram(keys, false_w, num_thresholds, multi_label)
    tp, fp = _above(hist_true), _above(hist_false)
    # ... and derives the negatives by subtraction from the label totals.
    return {
        ConfusionMatrix.TRUE_POSITIVES: tp,
        ConfusionMatrix.FALSE_POSITIVES: fp,
        ConfusionMatrix.TRUE_NEGATIVES: hist_false.sum(axis=1, keepdims=True) - fp,
        ConfusionMatrix.FALSE_NEGATIVES: hist_true.sum(axis=1, keepdims=True) - tp,
    }


# -- the update ------------------------------------------------------------------------------


def confusion_counts(
    y_true: Any,
    y_pred: Any,
    thresholds: Sequence[float],
    conditions: Sequence[ConfusionMatrix] = tuple(ConfusionMatrix),
    *,
    top_k: int | None = None,
    class_id: int | None = None,
    sample_weight: Any = None,
    multi_label: bool = False,
    label_weights: Any = None,
    thresholds_distributed_evenly: bool = False,
) -> dict[ConfusionMatrix, np.ndarray]:
    """One batch's weighted TP/FP/TN/FN per threshold, as float32 arrays of shape (T,), or
    (T, num_labels) with `multi_label` (which needs 2-D y).

    `label_weights` (AUC only, not with `multi_label`) multiply each element by its column's
    weight. `thresholds` are not validated here: AUC passes endpoints just outside [0, 1].
    """
    if multi_label and label_weights is not None:
        raise ConfigError("label_weights with multi_label=True weight the per-label results; "
                          "they are not applied to the confusion counts")
    y_true, y_pred, weight = _prepare(y_true, y_pred, sample_weight, top_k, class_id)
    if multi_label and y_pred.ndim != 2:
        raise InvalidInput(f"multi_label needs y_true and y_pred of shape (num_samples, "
                           f"num_labels); got shape {list(y_pred.shape)}")
    if label_weights is not None:
        lw = _label_weights(label_weights, y_pred.shape)
        weight = lw if weight is None else weight * lw
    if not multi_label:
        y_true, y_pred = y_true.ravel(), y_pred.ravel()
        weight = None if weight is None else weight.ravel()
    num_thresholds = len(thresholds)
    is_positive = y_true != 0

    if thresholds_distributed_evenly:
        with_epsilon = thresholds[0] < 0.0 or thresholds[-1] > 1.0
        counts = _bucket_counts(y_pred, is_positive, weight, num_thresholds, with_epsilon,
                                multi_label)
        return _as_state(counts, conditions, multi_label)
    if weight is None:  # the paths below weigh every element
        weight = np.ones_like(y_pred)
    if not multi_label and y_pred.size * num_thresholds <= DIRECT_ELEMENTS:
        counts = _direct_counts(y_pred, is_positive, weight,
                                np.asarray(thresholds, dtype=STATE_DTYPE), conditions)
    else:
        ranks, order = _generic_ranks(y_pred, np.asarray(thresholds, dtype=STATE_DTYPE))
        true_w = np.where(is_positive, weight, 0)
        false_w = np.where(is_positive, 0, weight)
        hist_true = _rank_histogram(ranks, true_w, num_thresholds, multi_label)
        hist_false = _rank_histogram(ranks, false_w, num_thresholds, multi_label)
        unsort = np.argsort(order)
        counts = {
            ConfusionMatrix.TRUE_POSITIVES: _above(hist_true)[:, unsort],
            ConfusionMatrix.FALSE_POSITIVES: _above(hist_false)[:, unsort],
            ConfusionMatrix.TRUE_NEGATIVES: _at_or_below(hist_false)[:, unsort],
            ConfusionMatrix.FALSE_NEGATIVES: _at_or_below(hist_true)[:, unsort],
        }
    return _as_state(counts, conditions, multi_label)


def _as_state(counts: Mapping[ConfusionMatrix, np.ndarray], conditions: Sequence[ConfusionMatrix],
              multi_label: bool) -> dict[ConfusionMatrix, np.ndarray]:
    """The requested counts, shaped (T,) or (T, num_labels), in the state dtype."""
    return {
        cond: (counts[cond].T if multi_label else counts[cond][0]).astype(STATE_DTYPE)
        for cond in conditions
    }


def update_confusion_matrix_variables(
    variables_to_update: Mapping[ConfusionMatrix, Variable],
    y_true: Any,
    y_pred: Any,
    thresholds: Sequence[float],
    top_k: int | None = None,
    class_id: int | None = None,
    sample_weight: Any = None,
    multi_label: bool = False,
    label_weights: Any = None,
    thresholds_distributed_evenly: bool = False,
) -> None:
    """Add one batch's counts to the given variables (Keras' signature)."""
    counts = confusion_counts(
        y_true, y_pred, thresholds, tuple(variables_to_update), top_k=top_k,
        class_id=class_id, sample_weight=sample_weight, multi_label=multi_label,
        label_weights=label_weights,
        thresholds_distributed_evenly=thresholds_distributed_evenly,
    )
    for cond, variable in variables_to_update.items():
        variable.assign_add(counts[cond])


def share_counts(variables: Mapping[ConfusionMatrix, Variable], thresholds: Sequence[float],
                 *, top_k: int | None = None, class_id: int | None = None,
                 multi_label: bool = False, label_weights: Any = None,
                 thresholds_distributed_evenly: bool = False, from_logits: bool = False) -> None:
    """Declare what each count's per-batch value depends on (`Variable.share_key`): the
    arguments of `confusion_counts`, and whether y_pred went through a sigmoid first. Counts
    with equal keys (and shapes) are equal for every batch, so a collection whose members
    keep them (Precision and Recall: true positives; AUC ROC and PR: all four) stores them
    once."""
    weights = None if label_weights is None else np.asarray(label_weights, np.float64).tolist()
    for condition, variable in variables.items():
        variable.share_key = json.dumps([
            "confusion_counts", condition.name, [float(t) for t in thresholds],
            {"top_k": top_k, "class_id": class_id, "multi_label": multi_label,
             "label_weights": weights, "evenly": bool(thresholds_distributed_evenly),
             "from_logits": from_logits}], sort_keys=True)
