"""Keras parity for the accuracy family (app/metrics/accuracy.py)."""

import numpy as np
import pytest

from app.errors import InvalidInput
from app.metrics.registry import REGISTRY
from tests.batches import ALL_WEIGHTS, F32, assert_config_error, contribution, make_batches
from tests.oracle import check_parity


def one_hot(rng, shape, num_classes):
    ids = rng.integers(0, num_classes, size=shape)
    return np.eye(num_classes, dtype=F32)[ids]


def distinct_scores(rng, shape):
    """Scores without ties in a row (tie-breaking differs between Keras backends)."""
    flat = rng.permutation(np.prod(shape)).astype(F32) / np.prod(shape)
    return flat.reshape(shape)


# -- Accuracy ------------------------------------------------------------------------------

ACCURACY_SHAPES = [((1,), (1,)), ((3,), (3,)), ((3, 2), (3, 2)), ((), (1,)), ((1,), ())]


@pytest.mark.parametrize("weight_kind", ALL_WEIGHTS)
@pytest.mark.parametrize(("true_tail", "pred_tail"), ACCURACY_SHAPES)
def test_accuracy_parity(true_tail, pred_tail, weight_kind):
    def make(rng, n, _step):
        return (rng.integers(0, 3, size=(n, *true_tail)),
                rng.integers(0, 3, size=(n, *pred_tail)))

    check_parity("Accuracy", None, make_batches(make, weight_kind, seed=1))


# -- BinaryAccuracy ------------------------------------------------------------------------

THRESHOLDS = [None, 0.5, 0.25, 0.7, 0, 1, 0.1, -1.5]


@pytest.mark.parametrize("threshold", THRESHOLDS)
@pytest.mark.parametrize("tail", [(), (1,), (4,), (3, 2)])
@pytest.mark.parametrize("weight_kind", ALL_WEIGHTS)
def test_binary_accuracy_parity(threshold, tail, weight_kind):
    grid = np.array([0, 0.1, 0.25, 0.5, 0.7, 1], F32)  # exactly on the thresholds: strict >

    def make(rng, n, _step):
        y_pred = np.where(rng.random((n, *tail)) < 0.3,
                          rng.choice(grid, size=(n, *tail)), rng.random((n, *tail)))
        return rng.integers(0, 2, size=(n, *tail)), y_pred

    config = None if threshold is None else {"threshold": threshold}
    check_parity("BinaryAccuracy", config, make_batches(make, weight_kind, seed=2))


def test_binary_accuracy_label_and_rank_quirks():
    # Labels other than 0/1 never match; (N,) labels against (N,1) predictions are aligned.
    y_true = np.array([0, 1, 2, 0.3, -1, 1], F32)
    y_pred = np.array([[0.2], [0.9], [0.9], [0.1], [0.0], [0.5]], F32)
    check_parity("BinaryAccuracy", None, [{"y_true": y_true, "y_pred": y_pred}])
    check_parity("BinaryAccuracy", {"threshold": 0.4},
                 [{"y_true": y_true[:, None], "y_pred": y_pred[:, 0],
                   "sample_weight": np.arange(6, dtype=F32)}])


# -- CategoricalAccuracy -------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4,), (3,), (3, 5)])
@pytest.mark.parametrize("weight_kind", ALL_WEIGHTS)
def test_categorical_accuracy_parity(shape, weight_kind):
    def make(rng, n, _step):
        # A coarse grid makes ties common: both sides take the first maximum.
        return one_hot(rng, (n, *shape[:-1]), shape[-1]), rng.integers(0, 3, (n, *shape))

    check_parity("CategoricalAccuracy", None, make_batches(make, weight_kind, seed=3))


@pytest.mark.parametrize("weight_kind", [None, "scalar"])
def test_categorical_accuracy_1d_is_one_sample(weight_kind):
    def make(rng, n, _step):
        return np.eye(n)[rng.integers(0, n)], rng.integers(0, 3, n)

    check_parity("CategoricalAccuracy", None, make_batches(make, weight_kind, seed=9))


def test_categorical_accuracy_negative_zero_and_soft_labels():
    y_true = np.array([[-0.0, 0.0], [0.2, 0.8], [0.5, 0.5]], F32)
    y_pred = np.array([[0.0, -0.0], [0.3, 0.1], [0.1, 0.1]], F32)
    check_parity("CategoricalAccuracy", None, [{"y_true": y_true, "y_pred": y_pred}])


# -- SparseCategoricalAccuracy -------------------------------------------------------------

SPARSE_SHAPES = [((), (4,)), ((1,), (4,)), ((3,), (3, 5)), ((3, 1), (3, 5)), ((), (1,))]


@pytest.mark.parametrize(("label_tail", "pred_tail"), SPARSE_SHAPES)
@pytest.mark.parametrize("weight_kind", ALL_WEIGHTS)
def test_sparse_categorical_accuracy_parity(label_tail, pred_tail, weight_kind):
    def make(rng, n, _step):
        return (rng.integers(0, pred_tail[-1], size=(n, *label_tail)),
                rng.integers(0, 3, size=(n, *pred_tail)))

    check_parity("SparseCategoricalAccuracy", None, make_batches(make, weight_kind, seed=4))


# -- TopKCategoricalAccuracy ---------------------------------------------------------------


@pytest.mark.parametrize("k", [None, 1, 2, 3, 6])
@pytest.mark.parametrize("shape", [(6,), (3, 4)])
@pytest.mark.parametrize("weight_kind", ALL_WEIGHTS)
def test_top_k_categorical_accuracy_parity(k, shape, weight_kind):
    def make(rng, n, _step):
        return one_hot(rng, (n, *shape[:-1]), shape[-1]), distinct_scores(rng, (n, *shape))

    config = None if k is None else {"k": k}
    check_parity("TopKCategoricalAccuracy", config, make_batches(make, weight_kind, seed=5))


# -- SparseTopKCategoricalAccuracy ---------------------------------------------------------


@pytest.mark.parametrize("k", [None, 1, 2, 4, 9])
@pytest.mark.parametrize(("label_tail", "pred_tail"),
                         [((), (7,)), ((1,), (7,)), ((3,), (3, 5))])
@pytest.mark.parametrize("weight_kind", ALL_WEIGHTS)
def test_sparse_top_k_categorical_accuracy_parity(k, label_tail, pred_tail, weight_kind):
    def make(rng, n, _step):
        return (rng.integers(0, pred_tail[-1], size=(n, *label_tail)),
                distinct_scores(rng, (n, *pred_tail)))

    config = None if k is None else {"k": k}
    check_parity("SparseTopKCategoricalAccuracy", config,
                 make_batches(make, weight_kind, seed=6))


@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize(("label_tail", "pred_tail"), [((), (3,)), ((1,), (4,)), ((2,), (2, 3))])
@pytest.mark.parametrize("weight_kind", [None, "n", "scalar"])
def test_sparse_top_k_from_sorted_ids_parity(k, label_tail, pred_tail, weight_kind):
    def make(rng, n, _step):
        # y_pred: the ids of the best `pred_tail[-1]` of 10 classes, best first.
        ids = np.argsort(-rng.random((n, *pred_tail[:-1], 10)), axis=-1)[..., :pred_tail[-1]]
        return rng.integers(0, 10, size=(n, *label_tail)), ids

    check_parity("SparseTopKCategoricalAccuracy", {"k": k, "from_sorted_ids": True},
                 make_batches(make, weight_kind, seed=7))


def test_sparse_top_k_config_omits_false_from_sorted_ids():
    _, metric = REGISTRY.build("SparseTopKCategoricalAccuracy", {"from_sorted_ids": False})
    assert metric.get_config() == {"name": "sparse_top_k_categorical_accuracy",
                                   "dtype": "float32", "k": 5}
    _, metric = REGISTRY.build("SparseTopKCategoricalAccuracy", {"from_sorted_ids": True, "k": 2})
    assert metric.get_config()["from_sorted_ids"] is True


def test_top_k_nan_scores():
    y_pred = np.array([[np.nan, 0.2, 0.1], [0.3, np.nan, 0.2], [0.1, 0.5, 0.4]], F32)
    for k in (1, 2):
        check_parity("SparseTopKCategoricalAccuracy", {"k": k},
                     [{"y_true": np.array([0, 2, 2], F32), "y_pred": y_pred}])
        check_parity("TopKCategoricalAccuracy", {"k": k},
                     [{"y_true": np.eye(3, dtype=F32)[[1, 0, 2]], "y_pred": y_pred}])


# -- dtype, empty batches, names -----------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_metric_dtype(dtype):
    def make(rng, n, _step):
        return rng.integers(0, 2, size=(n, 3)), rng.random((n, 3))

    check_parity("BinaryAccuracy", {"dtype": dtype, "name": "acc"},
                 make_batches(make, "n", seed=8, sizes=(5,)))


def test_empty_batch_is_a_no_op():
    empty = {"y_true": np.zeros((0, 3), F32), "y_pred": np.zeros((0, 3), F32)}
    full = {"y_true": np.eye(3, dtype=F32), "y_pred": np.eye(3, dtype=F32)[[0, 2, 1]]}
    for name in ("CategoricalAccuracy", "TopKCategoricalAccuracy", "BinaryAccuracy"):
        check_parity(name, None, [full, empty, full])
        check_parity(name, {"name": None}, [full])  # None means the default name


@pytest.mark.parametrize("name", ["accuracy", "acc", "binary_accuracy", "categorical_accuracy",
                                  "sparse_categorical_accuracy", "top_k_categorical_accuracy",
                                  "sparse_top_k_categorical_accuracy"])
def test_snake_case_names_resolve(name):
    assert REGISTRY.resolve(name).cls.__module__ == "app.metrics.accuracy"


# -- worked examples (KERAS_METRICS.md section 4 and the Keras docstrings) ----------------


def test_worked_examples():
    check_parity("BinaryAccuracy", None, [{  # section 4, #7
        "y_true": np.array([[1], [1], [0], [0]], F32),
        "y_pred": np.array([[0.98], [1], [0], [0.6]], F32)}])
    cat = {"y_true": np.array([[0, 0, 1], [0, 1, 0]], F32),
           "y_pred": np.array([[0.1, 0.9, 0.8], [0.05, 0.95, 0]], F32)}
    check_parity("CategoricalAccuracy", None,  # #8
                 [{**cat, "sample_weight": np.array([0.7, 0.3], F32)}])
    check_parity("TopKCategoricalAccuracy", {"k": 1}, [cat])
    check_parity("SparseTopKCategoricalAccuracy", {"k": 2}, [{  # #9
        "y_true": np.array([2, 1, 0], F32),
        "y_pred": np.array([[0.1, 0.9, 0.8], [0.05, 0.95, 0], [0.2, 0.5, 0.3]], F32)}])
    check_parity("SparseTopKCategoricalAccuracy", {"k": 1, "from_sorted_ids": True}, [{
        "y_true": np.array([2, 1], F32), "y_pred": np.array([[1, 0, 3], [1, 2, 3]], F32)}])
    check_parity("Accuracy", None, [{
        "y_true": np.array([[1], [2], [3], [4]], F32),
        "y_pred": np.array([[0], [2], [3], [4]], F32),
        "sample_weight": np.array([1, 1, 0, 0], F32)}])
    check_parity("SparseCategoricalAccuracy", None, [{
        "y_true": np.array([[2], [1]], F32),
        "y_pred": np.array([[0.1, 0.6, 0.3], [0.05, 0.95, 0]], F32),
        "sample_weight": np.array([0.7, 0.3], F32)}])


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "config", "expected"), [
    ("BinaryAccuracy", {"threshold": "0.5"}, "threshold must be a finite number"),
    ("BinaryAccuracy", {"threshold": True}, "threshold must be a finite number"),
    ("BinaryAccuracy", {"threshold": float("nan")}, "threshold must be a finite number"),
    ("TopKCategoricalAccuracy", {"k": 0}, "k must be a positive integer"),
    ("TopKCategoricalAccuracy", {"k": 2.5}, "k must be a positive integer"),
    ("SparseTopKCategoricalAccuracy", {"k": -1}, "k must be a positive integer"),
    ("SparseTopKCategoricalAccuracy", {"k": True}, "k must be a positive integer"),
    ("SparseTopKCategoricalAccuracy", {"from_sorted_ids": "yes"}, "from_sorted_ids must be"),
    ("Accuracy", {"dtype": "int8"}, "dtype must be one of"),
    ("Accuracy", {"threshold": 0.5}, "unknown config key"),
])
def test_bad_config(name, config, expected):
    assert_config_error(name, config, expected)


SCORES = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]], F32)


@pytest.mark.parametrize(("name", "config", "y_true"), [
    ("SparseCategoricalAccuracy", None, [1, 3]),
    ("SparseCategoricalAccuracy", None, [-1, 0]),
    ("SparseCategoricalAccuracy", None, [0.5, 1]),
    ("SparseCategoricalAccuracy", None, [np.nan, 1]),
    ("SparseTopKCategoricalAccuracy", {"k": 2}, [[1], [3]]),
    ("SparseTopKCategoricalAccuracy", {"k": 2}, [-1, 0]),
    ("SparseTopKCategoricalAccuracy", {"from_sorted_ids": True}, [1.5, 0]),
])
def test_bad_sparse_labels(name, config, y_true):
    with pytest.raises(InvalidInput, match="expects .*integer"):
        contribution(name, config, y_true, SCORES)


@pytest.mark.parametrize(("name", "y_true", "y_pred", "expected"), [
    ("Accuracy", np.zeros((2, 3)), np.zeros((2, 4)), "broadcast-compatible"),
    ("BinaryAccuracy", np.zeros(3), np.zeros(4), "broadcast-compatible"),
    ("CategoricalAccuracy", np.eye(3), np.zeros((2, 3)), "broadcast-compatible"),
    ("CategoricalAccuracy", np.eye(3), np.zeros((3, 0)), "empty axis"),
    ("TopKCategoricalAccuracy", np.eye(3), np.zeros(3), "rank >= 2"),
    ("TopKCategoricalAccuracy", np.eye(3), np.zeros((2, 3)), "3 label"),
    ("SparseTopKCategoricalAccuracy", np.zeros(3), np.zeros((2, 3)), "3 label"),
])
def test_bad_shapes(name, y_true, y_pred, expected):
    with pytest.raises(InvalidInput, match=expected):
        contribution(name, None, y_true, y_pred)
