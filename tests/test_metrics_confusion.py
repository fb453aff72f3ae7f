"""Keras parity for TruePositives, FalsePositives, TrueNegatives, FalseNegatives, Precision
and Recall, and for the shared confusion-matrix update in `confusion_utils`.

Sample weights are multiples of 1/4 unless a test says otherwise: their float32 sums are then
exact in any order. Keras' bucket path derives TN/FN as `total - FP/TP` in float32, which can
leave -1e-6 where the exact count is 0; that is Keras' rounding noise, not a semantic, so the
tests do not chase it.
"""

import re

import numpy as np
import pytest
from keras.src.metrics import metrics_utils

from app.errors import ConfigError, InvalidInput
from app.metrics import confusion_utils, engine
from app.metrics.confusion_utils import ConfusionMatrix
from app.metrics.registry import REGISTRY
from tests.batches import ThresholdedBatches
from tests.oracle import check_parity, keras_metric

# Keras' own divide_no_nan warns on 0/0 before masking it.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning:keras.*")


COUNTS = ["TruePositives", "FalsePositives", "TrueNegatives", "FalseNegatives"]
RATIOS = ["Precision", "Recall"]
LABELS = (0.0, 1.0, 0.0, 2.0, -1.0, 0.3)  # any non-zero label is positive

GENERIC_THRESHOLDS = [None, 0.3, 0.0, 1.0, [0.1, 0.7], [0.8, 0.2, 0.5], [0.25, 0.5, 0.75]]
BUCKET_THRESHOLDS = [[0.0, 0.5, 1.0], np.linspace(0, 1, 11).tolist(), [0, 0.25, 0.5, 0.75, 1]]

# (y shape, sample_weight shape or None): every weight shape Keras accepts.
WEIGHTINGS = [
    ((8,), None),
    ((8,), (8,)),
    ((8,), ()),
    ((6, 3), None),
    ((6, 3), (6,)),
    ((6, 3), (6, 1)),
    ((6, 3), (6, 3)),
    ((6, 3), ()),
    ((4, 3, 2), (4, 3)),
    ((4, 3, 2), (4, 3, 2)),
]


_random = ThresholdedBatches(1234, LABELS)
rng = _random.rng
dyadic, make_batch, batches = _random.dyadic, _random.make_batch, _random.batches


# -- parity on random data ---------------------------------------------------------------------


@pytest.mark.parametrize("metric", COUNTS + RATIOS)
@pytest.mark.parametrize("thresholds", GENERIC_THRESHOLDS + BUCKET_THRESHOLDS)
@pytest.mark.parametrize(("shape", "weight_shape"), WEIGHTINGS)
def test_thresholds_parity(metric, thresholds, shape, weight_shape):
    check_parity(metric, {"thresholds": thresholds}, batches(shape, weight_shape))


@pytest.mark.parametrize("metric", COUNTS + RATIOS)
@pytest.mark.parametrize("thresholds", [None, [0.2, 0.9], [0.0, 0.5, 1.0]])
def test_continuous_and_negative_weights(metric, thresholds):
    data = batches((6, 3), (6, 3))
    for b in data[:2]:
        b["sample_weight"] = rng.uniform(-1, 2, size=(6, 3)).astype(np.float32)
    if thresholds is not None and len(thresholds) > 2:  # bucket path: keep sums exact
        for b in data:
            b["sample_weight"] = dyadic((6, 3), low=-1)
    check_parity(metric, {"thresholds": thresholds}, data)


@pytest.mark.parametrize("metric", COUNTS + RATIOS)
@pytest.mark.parametrize(("y_true_shape", "y_pred_shape", "weight_shape"), [
    ((6, 1), (6,), None),
    ((6,), (6, 1), (6,)),
    ((6, 1), (6, 1), (6,)),
    ((6, 1), (6, 1), (6, 1)),
])
def test_rank_alignment(metric, y_true_shape, y_pred_shape, weight_shape):
    data = []
    for _ in range(2):
        b = make_batch(y_pred_shape, weight_shape)
        b["y_true"] = rng.choice(LABELS, size=y_true_shape).astype(np.float32)
        data.append(b)
    check_parity(metric, {"thresholds": [0.4, 0.6]}, data)


@pytest.mark.parametrize("metric", COUNTS + RATIOS)
def test_empty_batches(metric):
    empty = {"y_true": np.zeros((0, 3), np.float32), "y_pred": np.zeros((0, 3), np.float32)}
    empty_1d = {"y_true": np.zeros(0, np.float32), "y_pred": np.zeros(0, np.float32)}
    check_parity(metric, {"thresholds": [0.5, 0.9]}, [empty, make_batch((5,)), empty_1d])


# -- predictions on and next to thresholds -----------------------------------------------------


def grid_predictions(thresholds):
    """Every threshold in float32, its float32 neighbours, and values outside [0, 1]."""
    t = np.asarray(thresholds, dtype=np.float32)
    up, down = np.nextafter(t, np.float32(2)), np.nextafter(t, np.float32(-1))
    return np.concatenate([t, up, down, [-0.5, 1.5, 2.0, -1e-45, 1e-30]]).astype(np.float32)


@pytest.mark.parametrize("thresholds", [
    [0.5], [0.1, 0.7, 0.3], [0.0, 1.0],  # generic: strict float32 `>`, no clipping
    [0.0, 0.5, 1.0], np.linspace(0, 1, 11).tolist(), np.linspace(0, 1, 101).tolist(),
])
@pytest.mark.parametrize("metric", ["TruePositives", "FalseNegatives", "Precision"])
def test_grid_point_rounding(metric, thresholds):
    p = grid_predictions(thresholds)
    data = [
        {"y_true": np.ones_like(p), "y_pred": p},
        {"y_true": np.zeros_like(p), "y_pred": p[::-1].copy(), "sample_weight": dyadic(p.shape)},
    ]
    check_parity(metric, {"thresholds": thresholds}, data)


def test_bucket_formula_is_not_a_comparison():
    """The grid test above is meaningful: for 11 and 101 thresholds the float32 bucket formula
    puts some grid predictions on the other side of a threshold than `p > t` would."""
    for n in (11, 101):
        t = np.linspace(0, 1, n).astype(np.float32)
        p = np.clip(grid_predictions(t), 0, 1)
        naive = (p[:, None] > t[None, :]).sum(axis=1)
        bucket = np.ceil(p * np.float32(n - 1))
        assert np.any(naive != bucket)


def test_fact_sheet_clipping_example():
    p = np.array([0, 0.5, 1, 1.5], np.float32)
    data = [{"y_true": np.ones(4, np.float32), "y_pred": p}]
    check_parity("TruePositives", {"thresholds": [0, 0.5, 1]}, data)  # [3, 2, 0]
    check_parity("TruePositives", {"thresholds": [0, 0.5, 0.99]}, data)  # [3, 2, 2]


# -- top_k and class_id --------------------------------------------------------------------------


@pytest.mark.parametrize("metric", RATIOS)
@pytest.mark.parametrize("config", [
    {"top_k": 1},
    {"top_k": 2},
    {"top_k": 4},
    {"top_k": 2, "class_id": 1},
    {"top_k": 1, "class_id": 0},
    {"top_k": 3, "class_id": 3},
    {"class_id": 2},
    {"class_id": 0, "thresholds": [0.2, 0.6]},
    {"top_k": 2, "thresholds": 0.35},
    {"top_k": 2, "thresholds": [0.1, 0.5, 0.9, 0.2]},
    {"top_k": 2, "thresholds": [0.0, 0.5, 1.0]},
    {"top_k": 1, "class_id": 1, "thresholds": np.linspace(0, 1, 11).tolist()},
])
@pytest.mark.parametrize("weight_shape", [None, (6,), (6, 1), ()])
def test_top_k_class_id_parity(metric, config, weight_shape):
    # Continuous random predictions: no ties, whose order is backend-dependent in Keras.
    check_parity(metric, config, batches((6, 4), weight_shape, low=-0.5, high=1.5))


@pytest.mark.parametrize("metric", RATIOS)
@pytest.mark.parametrize("config", [{"top_k": 2}, {"top_k": 2, "thresholds": [0.3, 0.6]}])
def test_top_k_with_element_weights_and_3d(metric, config):
    check_parity(metric, config, batches((6, 4), (6, 4)))
    check_parity(metric, config, batches((3, 2, 4), (3, 2)))
    check_parity(metric, {**config, "class_id": 3}, batches((3, 2, 4), (3, 2)))


@pytest.mark.parametrize("metric", RATIOS)
def test_top_k_on_1d_input_ranks_the_whole_batch(metric):
    check_parity(metric, {"top_k": 3}, batches((7,), (7,)))


def test_top_k_ties_keep_the_lowest_index():
    """Keras with JAX keeps index 0 of [0.5, 0.5, 0.1] (fact sheet §3.5: TP=0, FP=1); its
    numpy backend keeps index 1 instead, so this is not a parity test."""
    _, metric = REGISTRY.build("Precision", {"top_k": 1})
    engine.contribution(metric, {"y_true": np.array([[0, 1, 0]], np.float32),
                                 "y_pred": np.array([[0.5, 0.5, 0.1]], np.float32)}, None)
    assert metric.true_positives.value.tolist() == [0.0]
    assert metric.false_positives.value.tolist() == [1.0]


# -- the fact sheet's worked examples (§4), with Keras computing the expected values ------------


def test_worked_example_precision_docs():
    check_parity("Precision", None, [
        {"y_true": [0.0, 1, 1, 1, 0, 1, 0, 1], "y_pred": [1.0, 1, 0, 1, 0, 1, 0, 1]},  # 0.8
        {"y_true": [0.0, 1, 0, 0, 1, 0, 1, 1], "y_pred": [1.0, 0, 1, 1, 0, 0, 0, 0]},  # 0.5
    ])


def test_worked_example_recall_two_thresholds():
    check_parity("Recall", {"thresholds": [0.3, 0.6]},
                 [{"y_true": [0.0, 1, 1, 1], "y_pred": [0.5, 0.2, 0.65, 0.9]}])


def test_worked_example_precision_top_k_class_id():
    check_parity("Precision", {"top_k": 2, "class_id": 1}, [{
        "y_true": [[0.0, 1, 0, 1], [0, 1, 0, 0]],
        "y_pred": [[0.1, 0.6, 0.2, 0.9], [0.5, 0.4, 0.45, 0]],
    }])


@pytest.mark.parametrize("metric", RATIOS)
@pytest.mark.parametrize("config", [
    {"class_id": 1, "top_k": 2}, {"class_id": 0, "top_k": 1}, {"top_k": 1}, {"thresholds": 0.5},
])
def test_fact_sheet_top_k_then_class_id(metric, config):
    check_parity(metric, config, [{
        "y_true": [[0.0, 0, 1, 1], [1, 0, 0, 0]],
        "y_pred": [[0.1, 0.9, 0.6, 0.3], [0.4, 0.45, 0.2, 0.3]],
    }])


def test_docstring_examples():
    check_parity("FalsePositives", None, [{"y_true": [0.0, 1, 0, 0], "y_pred": [0.0, 0, 1, 1]}])
    check_parity("FalsePositives", None, [{"y_true": [0.0, 1, 0, 0], "y_pred": [0.0, 0, 1, 1],
                                           "sample_weight": [0.0, 0, 1, 0]}])
    check_parity("TruePositives", None, [{"y_true": [2.0, -1, 0.3], "y_pred": [0.9, 0.9, 0.9]}])
    check_parity("Recall", None, [{"y_true": [1.0, 1], "y_pred": [0.5, 0.50001]}])


# -- config -----------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", COUNTS + RATIOS)
def test_config_and_state_layout(metric):
    for config in ({}, {"name": "m", "dtype": "float64", "thresholds": [0.2, 0.4]}):
        _, ours = REGISTRY.build(metric, config)
        theirs = keras_metric(metric, config)
        assert [(v.name, v.shape, v.dtype) for v in ours.variables] == [
            (v.name, tuple(v.shape), v.dtype) for v in theirs.variables
        ]
    check_parity(metric, {"name": "m", "dtype": "float64", "thresholds": 0.25},
                 batches((5, 2), (5,)))


def test_registry_names():
    assert REGISTRY.resolve("precision").cls.__name__ == "Precision"
    assert REGISTRY.resolve("true_negatives").cls.__name__ == "TrueNegatives"
    assert REGISTRY.resolve("Recall").inputs == ["y_true", "y_pred"]


BAD_CONFIGS = [
    ({"thresholds": 1.5}, "[0, 1]"),
    ({"thresholds": -0.1}, "[0, 1]"),
    ({"thresholds": [0.2, 2]}, "Threshold values must be in [0, 1]. Received: [2]"),
    ({"thresholds": "0.5"}, "numbers in [0, 1]"),
    ({"thresholds": [0.5, None]}, "numbers in [0, 1]"),
    ({"thresholds": [True]}, "numbers in [0, 1]"),
    ({"thresholds": [float("nan")]}, "numbers in [0, 1]"),
    ({"thresholds": []}, "non-empty"),
]
RATIO_BAD_CONFIGS = [
    ({"top_k": 0}, "top_k must be a positive integer"),
    ({"top_k": -2}, "top_k must be a positive integer"),
    ({"top_k": 1.5}, "got 1.5"),
    ({"top_k": True}, "got True"),
    ({"top_k": "2"}, "got '2'"),
    ({"class_id": -1}, "class_id must be a non-negative integer"),
    ({"class_id": 0.5}, "got 0.5"),
    ({"class_id": False}, "got False"),
    ({"dtype": "int8"}, "dtype must be one of"),
    ({"name": 5}, "name must be a string or null; got 5"),
    ({"k": 2}, "unknown config key"),
]


@pytest.mark.parametrize("metric", COUNTS + RATIOS)
@pytest.mark.parametrize(("config", "message"), BAD_CONFIGS)
def test_bad_thresholds(metric, config, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        REGISTRY.build(metric, config)


@pytest.mark.parametrize("metric", RATIOS)
@pytest.mark.parametrize(("config", "message"), RATIO_BAD_CONFIGS)
def test_bad_top_k_class_id(metric, config, message):
    with pytest.raises(ConfigError, match=message):
        REGISTRY.build(metric, config)


# -- bad input --------------------------------------------------------------------------------

BAD_INPUTS = [
    # (config, y_true shape, y_pred shape, weight shape, message, Keras also raises)
    ({"class_id": 0}, (6,), (6,), None,
     r"y_pred must be a 2D array with shape \(num_samples, num_classes\), found shape: \[6\]",
     True),
    ({"class_id": 3}, (6, 3), (6, 3), None, "class_id=3 is out of range .* 3 classes", True),
    ({"class_id": 1}, (6, 3), (6, 3), (6, 3), r"sample_weight of shape \[6, 3\]", True),
    ({}, (6,), (6,), (6, 1), r"sample_weight of shape \[6, 1\] does not fit", True),
    ({}, (6,), (6,), (5,), r"sample_weight of shape \[5\]", True),
    ({}, (6, 3), (6, 3), (6, 2), r"sample_weight of shape \[6, 2\]", True),
    ({}, (4, 3, 2), (4, 3, 2), (4,), r"sample_weight of shape \[4\]", True),
    ({}, (6, 3), (6, 4), None, r"same shape .* y_true \[6, 3\] and y_pred \[6, 4\]", True),
    ({}, (6,), (5,), None, "same shape", True),
    ({"top_k": 4}, (6, 3), (6, 3), None, "top_k=4 exceeds the 3 prediction", False),
    ({}, (), (), None, "need a batch axis", True),
    ({"top_k": 1}, (), (), None, "need a batch axis", True),
]


@pytest.mark.parametrize("metric", RATIOS)
@pytest.mark.parametrize(("config", "true_shape", "pred_shape", "weight_shape", "message",
                          "keras_raises"), BAD_INPUTS)
def test_bad_input(metric, config, true_shape, pred_shape, weight_shape, message,
                   keras_raises):
    y_true = rng.choice([0.0, 1.0], size=true_shape).astype(np.float32)
    y_pred = rng.uniform(size=pred_shape).astype(np.float32)
    weight = None if weight_shape is None else np.ones(weight_shape, np.float32)
    _, metric_obj = REGISTRY.build(metric, config)
    with pytest.raises(InvalidInput, match=message):
        metric_obj.update_state(y_true, y_pred, sample_weight=weight)
    with pytest.raises(InvalidInput, match=message):
        engine.contribution(metric_obj, {"y_true": y_true, "y_pred": y_pred}, weight)
    if keras_raises:  # top_k > columns raises on JAX only; the numpy backend keeps them all
        reference = keras_metric(metric, config)
        with pytest.raises((ValueError, IndexError)):
            reference.update_state(y_true, y_pred, sample_weight=weight)


def test_bad_input_counts():
    _, metric = REGISTRY.build("TruePositives", {"thresholds": [0.0, 0.5, 1.0]})
    with pytest.raises(InvalidInput, match=r"sample_weight of shape \[3, 1\]"):
        metric.update_state(np.ones(3, np.float32), np.ones(3, np.float32),
                            sample_weight=np.ones((3, 1), np.float32))
    with pytest.raises(InvalidInput, match="same shape"):
        metric.update_state(np.ones((2, 3), np.float32), np.ones((3, 2), np.float32))


# -- confusion_utils directly, against Keras' update_confusion_matrix_variables -----------------


def keras_counts(y_true, y_pred, thresholds, **kwargs):
    import keras

    shape = (len(thresholds),) if not kwargs.get("multi_label") else (
        len(thresholds), y_pred.shape[1])
    variables = {cond: keras.Variable(np.zeros(shape, np.float32)) for cond in
                 metrics_utils.ConfusionMatrix}
    metrics_utils.update_confusion_matrix_variables(variables, y_true, y_pred, thresholds,
                                                    **kwargs)
    return {cond.value: keras.ops.convert_to_numpy(v) for cond, v in variables.items()}


AUC_THRESHOLDS = [-1e-7, 0.25, 0.5, 0.75, 1 + 1e-7]  # AUC's epsilon endpoints, bucket path
UNEVEN_AUC_THRESHOLDS = [-1e-7, 0.1, 0.35, 0.8, 1 + 1e-7]


@pytest.mark.parametrize("thresholds", [AUC_THRESHOLDS, UNEVEN_AUC_THRESHOLDS,
                                        [0.0, 0.5, 1.0], [0.3, 0.6]])
@pytest.mark.parametrize("options", [
    {},
    {"multi_label": True},
    {"label_weights": [3.0, 1.0, 0.5]},
    {"sample_weight": "rows"},
    {"sample_weight": "elements", "multi_label": True},
    {"sample_weight": "elements", "label_weights": [0.0, 2.0, 1.0]},
])
def test_confusion_counts_match_keras(thresholds, options):
    y_true = rng.choice(LABELS, size=(7, 3)).astype(np.float32)
    y_pred = rng.uniform(-0.2, 1.2, size=(7, 3)).astype(np.float32)
    y_pred[0] = [0.0, 1.0, 0.5]  # endpoints and a grid point
    kwargs = dict(options)
    if kwargs.get("sample_weight") == "rows":
        kwargs["sample_weight"] = dyadic((7,))
    elif kwargs.get("sample_weight") == "elements":
        kwargs["sample_weight"] = dyadic((7, 3))
    if "label_weights" in kwargs:
        kwargs["label_weights"] = np.asarray(kwargs["label_weights"], np.float32)
    evenly = confusion_utils.is_evenly_distributed_thresholds(thresholds)
    ours = confusion_utils.confusion_counts(y_true, y_pred, thresholds,
                                            thresholds_distributed_evenly=evenly, **kwargs)
    theirs = keras_counts(y_true, y_pred, thresholds, thresholds_distributed_evenly=evenly,
                          **kwargs)
    for cond in ConfusionMatrix:
        assert ours[cond].dtype == np.float32
        np.testing.assert_allclose(ours[cond], theirs[cond.value], rtol=1e-6, atol=1e-6,
                                   err_msg=f"{cond} {thresholds} {options}")


def test_many_thresholds_are_fast_and_exact():
    """The bucket and generic paths never build an N x T matrix; both agree with Keras."""
    n = 2001
    thresholds = np.linspace(0, 1, n).tolist()
    y_true = rng.integers(0, 2, size=20_000).astype(np.float32)
    y_pred = rng.uniform(-0.1, 1.1, size=20_000).astype(np.float32)
    y_pred[:n] = np.asarray(thresholds, np.float32)  # every grid point
    ours = confusion_utils.confusion_counts(y_true, y_pred, thresholds,
                                            thresholds_distributed_evenly=True)
    theirs = keras_counts(y_true, y_pred, thresholds, thresholds_distributed_evenly=True)
    for cond in ConfusionMatrix:
        np.testing.assert_array_equal(ours[cond], theirs[cond.value])
    uneven = sorted(rng.uniform(0, 1, size=500).tolist())
    ours = confusion_utils.confusion_counts(y_true, y_pred, uneven)
    direct_tp = ((y_pred[None, :] > np.asarray(uneven, np.float32)[:, None]) & (y_true > 0))
    np.testing.assert_array_equal(ours[ConfusionMatrix.TRUE_POSITIVES], direct_tp.sum(axis=1))


@pytest.mark.parametrize("thresholds", [
    [0.0, 0.5, 1.0], [0, 0.5000004, 1], [0, 0.51, 1], [0.0, 1.0], [0.5], [0.25, 0.5, 0.75],
    np.linspace(0, 1, 200).tolist(), AUC_THRESHOLDS, [1.0, 0.5, 0.0],
])
def test_evenly_distributed_detection_matches_keras(thresholds):
    assert confusion_utils.is_evenly_distributed_thresholds(thresholds) == \
        metrics_utils.is_evenly_distributed_thresholds(thresholds)


def test_multi_label_needs_2d_and_excludes_label_weights():
    y = np.ones((2, 2, 2), np.float32)
    with pytest.raises(InvalidInput, match="multi_label needs"):
        confusion_utils.confusion_counts(y, y, [0.5], multi_label=True)
    with pytest.raises(ConfigError, match="label_weights"):
        confusion_utils.confusion_counts(y[0], y[0], [0.5], multi_label=True,
                                         label_weights=[1.0, 1.0])
    with pytest.raises(InvalidInput, match="label_weights"):
        confusion_utils.confusion_counts(y[0, 0], y[0, 0], [0.5], label_weights=[1.0, 1.0, 1.0])
