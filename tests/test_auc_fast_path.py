"""The evenly spaced ("bucket") path of the confusion counts against references written
independently of it: Keras' formula element by element with float32 scalars, and real Keras
(`keras.metrics.AUC`, `keras.metrics.SensitivityAtSpecificity`) on the same data.

The inputs are adversarial for the in-place clip/ceil/key arithmetic of `_bucket_ranks` and
`_label_histograms`: values exactly on a threshold and one ulp either side, 0, 1, -0.0,
negatives, values above 1, float32's largest values, infinities and NaN (which the API refuses,
but `from_logits` or a plugin may produce).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.metrics import confusion_utils as cu
from app.metrics.confusion_utils import ConfusionMatrix
from tests.oracle import keras

F32 = np.float32
BIG = float(np.finfo(np.float32).max)
SPECIALS = [0.0, -0.0, 1.0, -1.0, -1e-30, 1e-45, 1e-38, 2.0, 1.0000001, 0.9999999, BIG, -BIG,
            0.5, 0.25, 1 / 3, 2 / 3]


def adversarial_predictions(num_thresholds: int, rng: np.random.Generator, *,
                            non_finite: bool) -> np.ndarray:
    """Every float32 threshold `i / (n-1)` (as Keras computes it) and its neighbours, the
    specials above, and uniform noise over [-0.5, 1.5], shuffled."""
    steps = min(num_thresholds, 2000)
    on = (np.arange(steps, dtype=F32) * F32(1.0 / max(num_thresholds - 1, 1))).astype(F32)
    values = [on, np.nextafter(on, F32(2)), np.nextafter(on, F32(-1)),
              np.array(SPECIALS, dtype=F32), rng.uniform(-0.5, 1.5, 500).astype(F32)]
    if non_finite:
        values.append(np.array([np.inf, -np.inf, np.nan, np.nan], dtype=F32))
    joined = np.concatenate(values)
    return joined[rng.permutation(joined.size)]


def keras_rank(p: float, num_thresholds: int, with_epsilon: bool) -> int:
    """Keras' `ceil(clip(p, 0, 1) * (n-1)) - 1` (then relu with epsilon endpoints) in float32,
    plus one; NaN is above no threshold (rank 0), as Tally has always counted it."""
    if math.isnan(p):
        return 0
    clipped = F32(min(max(p, 0.0), 1.0))
    bucket = math.ceil(F32(clipped * F32(num_thresholds - 1))) - 1
    if with_epsilon:
        bucket = max(bucket, 0)
    return bucket + 1


def reference_ranks(y_pred: np.ndarray, num_thresholds: int, with_epsilon: bool) -> np.ndarray:
    flat = [keras_rank(float(p), num_thresholds, with_epsilon) for p in y_pred.ravel()]
    return np.array(flat, dtype=np.int64).reshape(y_pred.shape)


def reference_label_histograms(ranks: np.ndarray, is_positive: np.ndarray,
                               num_thresholds: int) -> tuple[np.ndarray, np.ndarray]:
    """Per column (groups) and rank 0..n: how many positives and how many negatives."""
    ranks2d = ranks.reshape(ranks.shape[0], -1)
    positive2d = is_positive.reshape(ranks2d.shape)
    groups = ranks2d.shape[1]
    hist_true = np.zeros((groups, num_thresholds + 1))
    hist_false = np.zeros((groups, num_thresholds + 1))
    for (row, column), rank in np.ndenumerate(ranks2d):
        target = hist_true if positive2d[row, column] else hist_false
        target[column, rank] += 1
    return hist_true, hist_false


def reference_counts(y_true: np.ndarray, y_pred: np.ndarray, weight: np.ndarray,
                     num_thresholds: int, with_epsilon: bool) -> dict[ConfusionMatrix, np.ndarray]:
    """Flattened: an element is predicted positive at threshold position j when its rank > j."""
    ranks = reference_ranks(y_pred, num_thresholds, with_epsilon).ravel()
    positive = y_true.ravel() != 0
    w = np.broadcast_to(weight, y_pred.shape).ravel().astype(np.float64)
    above = ranks[:, None] > np.arange(num_thresholds)[None, :]
    return {
        ConfusionMatrix.TRUE_POSITIVES: (w[:, None] * (above & positive[:, None])).sum(0),
        ConfusionMatrix.FALSE_POSITIVES: (w[:, None] * (above & ~positive[:, None])).sum(0),
        ConfusionMatrix.TRUE_NEGATIVES: (w[:, None] * (~above & ~positive[:, None])).sum(0),
        ConfusionMatrix.FALSE_NEGATIVES: (w[:, None] * (~above & positive[:, None])).sum(0),
    }


@pytest.mark.parametrize("num_thresholds", [3, 4, 200, 10000])
@pytest.mark.parametrize("with_epsilon", [False, True])
@pytest.mark.parametrize("columns", [None, 3])
def test_bucket_ranks_match_keras_formula(num_thresholds, with_epsilon, columns):
    rng = np.random.default_rng(num_thresholds)
    y_pred = adversarial_predictions(num_thresholds, rng, non_finite=True)
    if columns:
        y_pred = y_pred[: y_pred.size // columns * columns].reshape(-1, columns)
    before = y_pred.copy()
    ranks = cu._bucket_ranks(y_pred, num_thresholds, with_epsilon)
    np.testing.assert_array_equal(y_pred, before)  # the input is left alone
    assert ranks.shape == y_pred.shape
    expected = reference_ranks(y_pred, num_thresholds, with_epsilon)
    mismatch = np.flatnonzero(ranks.ravel() != expected.ravel())
    assert mismatch.size == 0, (
        f"ranks differ for p={y_pred.ravel()[mismatch[:5]].tolist()}: "
        f"{ranks.ravel()[mismatch[:5]].tolist()} != {expected.ravel()[mismatch[:5]].tolist()}")


@pytest.mark.parametrize("num_thresholds", [3, 200, 10000])
@pytest.mark.parametrize("multi_label", [False, True])
def test_label_histograms_count_rank_label_pairs(num_thresholds, multi_label):
    rng = np.random.default_rng(7)
    y_pred = adversarial_predictions(num_thresholds, rng, non_finite=True)
    y_pred = y_pred[: y_pred.size // 4 * 4].reshape(-1, 4)
    is_positive = rng.integers(0, 2, y_pred.shape).astype(bool)
    ranks = cu._bucket_ranks(y_pred, num_thresholds, True)
    if not multi_label:
        ranks, is_positive = ranks.ravel(), is_positive.ravel()
    hist_true, hist_false = cu._label_histograms(ranks, is_positive, num_thresholds,
                                                 multi_label)
    expected_ranks = reference_ranks(y_pred, num_thresholds, True)
    if not multi_label:
        expected_ranks = expected_ranks.reshape(-1, 1)
    want_true, want_false = reference_label_histograms(
        expected_ranks, is_positive.reshape(expected_ranks.shape), num_thresholds)
    assert hist_true.dtype == hist_false.dtype == np.float64
    np.testing.assert_array_equal(hist_true, want_true)
    np.testing.assert_array_equal(hist_false, want_false)


def keras_counts(metric, y_true, y_pred, weight) -> dict[ConfusionMatrix, np.ndarray]:
    metric.update_state(y_true, y_pred, sample_weight=weight)
    return {
        ConfusionMatrix.TRUE_POSITIVES: np.asarray(metric.true_positives),
        ConfusionMatrix.FALSE_POSITIVES: np.asarray(metric.false_positives),
        ConfusionMatrix.TRUE_NEGATIVES: np.asarray(metric.true_negatives),
        ConfusionMatrix.FALSE_NEGATIVES: np.asarray(metric.false_negatives),
    }


def labelled(num_thresholds: int, columns: int, weighted: bool):
    rng = np.random.default_rng(num_thresholds * 10 + columns)
    y_pred = adversarial_predictions(num_thresholds, rng, non_finite=False)
    y_pred = y_pred[: y_pred.size // columns * columns].reshape(-1, columns)
    y_true = rng.integers(0, 2, y_pred.shape).astype(F32)
    weight = rng.uniform(0, 3, y_pred.shape[0]).astype(F32) if weighted else None
    return y_true, y_pred, weight


def total_weight(weight: np.ndarray | None, shape: tuple[int, ...]) -> float | None:
    return None if weight is None else float(np.broadcast_to(weight[:, None], shape).sum())


def assert_counts_equal(actual, expected, weight_sum: float | None) -> None:
    """Exactly equal counts when unweighted; weighted, within float32 rounding of the total
    weight (Keras sums float32 weights in another order, and subtracts from totals)."""
    for condition, want in expected.items():
        got = actual[condition]
        assert got.dtype == np.float32 and got.shape == want.shape, condition
        if weight_sum is not None:
            np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6 * weight_sum,
                                       err_msg=condition.name)
        else:
            np.testing.assert_array_equal(got, want, err_msg=condition.name)


@pytest.mark.parametrize("num_thresholds", [2, 3, 200, 10000])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("multi_label", [False, True])
def test_auc_counts_match_keras(num_thresholds, weighted, multi_label):
    y_true, y_pred, weight = labelled(num_thresholds, 3, weighted)
    metric = keras.metrics.AUC(num_thresholds=num_thresholds, multi_label=multi_label)
    expected = keras_counts(metric, y_true, y_pred, weight)
    actual = cu.confusion_counts(
        y_true, y_pred, list(metric.thresholds), sample_weight=weight, multi_label=multi_label,
        thresholds_distributed_evenly=metric._thresholds_distributed_evenly)
    assert_counts_equal(actual, expected, total_weight(weight, y_pred.shape))


@pytest.mark.parametrize("num_thresholds", [3, 200])
@pytest.mark.parametrize("weighted", [False, True])
def test_thresholds_without_epsilon_match_keras(num_thresholds, weighted):
    """SensitivityAtSpecificity's thresholds are exactly [0, ..., 1]: no epsilon endpoints,
    so predictions <= 0 are above no threshold."""
    y_true, y_pred, weight = labelled(num_thresholds, 1, weighted)
    metric = keras.metrics.SensitivityAtSpecificity(0.5, num_thresholds=num_thresholds)
    assert metric._thresholds_distributed_evenly
    expected = keras_counts(metric, y_true, y_pred, weight)
    actual = cu.confusion_counts(y_true, y_pred, list(metric.thresholds), sample_weight=weight,
                                 thresholds_distributed_evenly=True)
    assert_counts_equal(actual, expected, total_weight(weight, y_pred.shape))


@pytest.mark.parametrize("num_thresholds", [3, 200, 10000])
@pytest.mark.parametrize("with_epsilon", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_counts_with_nan_and_infinity(num_thresholds, with_epsilon, weighted):
    """NaN predictions count as negative at every threshold; +-inf clip like any value."""
    rng = np.random.default_rng(3)
    y_pred = adversarial_predictions(num_thresholds, rng, non_finite=True)
    y_true = rng.integers(0, 2, y_pred.shape).astype(F32)
    weight = rng.uniform(0, 3, y_pred.shape).astype(F32) if weighted else F32(1)
    step = 1 / (num_thresholds - 1)
    thresholds = [i * step for i in range(num_thresholds)]
    if with_epsilon:
        thresholds[0], thresholds[-1] = -1e-7, 1 + 1e-7
    actual = cu.confusion_counts(y_true, y_pred, thresholds,
                                 sample_weight=weight if weighted else None,
                                 thresholds_distributed_evenly=True)
    expected = reference_counts(y_true, y_pred, weight, num_thresholds, with_epsilon)
    for condition, want in expected.items():
        np.testing.assert_allclose(actual[condition], want.astype(F32), rtol=1e-6,
                                   err_msg=condition.name)


@pytest.mark.parametrize("num_thresholds", [3, 200, 10000])
@pytest.mark.parametrize("columns", [1, 3])
@pytest.mark.parametrize("multi_label", [False, True])
def test_counts_split_in_halves_match_keras(monkeypatch, num_thresholds, columns, multi_label):
    """A large unweighted batch is counted in two halves on two threads (app/parallel.py):
    here every batch is, and the counts are still exactly Keras' (odd row counts included)."""
    monkeypatch.setattr(cu, "SPLIT_ELEMENTS", 1)
    splits = []
    original = cu.run_split
    monkeypatch.setattr(cu, "run_split", lambda calls: splits.append(len(calls)) or
                        original(calls))
    y_true, y_pred, _ = labelled(num_thresholds, columns, False)
    y_true, y_pred = y_true[1:], y_pred[1:]  # another row count than the other tests'
    metric = keras.metrics.AUC(num_thresholds=num_thresholds,
                               multi_label=multi_label and columns > 1)
    expected = keras_counts(metric, y_true, y_pred, None)
    actual = cu.confusion_counts(y_true, y_pred, list(metric.thresholds),
                                 multi_label=metric.multi_label,
                                 thresholds_distributed_evenly=True)
    assert splits == [2]
    assert_counts_equal(actual, expected, None)


def test_a_batch_below_the_split_size_is_counted_in_one_piece(monkeypatch):
    monkeypatch.setattr(cu, "run_split", lambda calls: pytest.fail("split a small batch"))
    y_pred = np.linspace(0, 1, cu.SPLIT_ELEMENTS - 1, dtype=F32)
    counts = cu.confusion_counts(y_pred > 0.5, y_pred, [0.0, 0.5, 1.0],
                                 thresholds_distributed_evenly=True)
    assert counts[ConfusionMatrix.TRUE_POSITIVES].sum() > 0
