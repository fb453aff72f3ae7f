"""Keras parity for the regression metrics: MeanSquaredError, MeanAbsoluteError,
MeanAbsolutePercentageError, MeanSquaredLogarithmicError, RootMeanSquaredError,
CosineSimilarity and LogCoshError."""

import keras
import numpy as np
import pytest

from app.errors import ConfigError, InvalidInput
from app.metrics import engine
from app.metrics.registry import REGISTRY
from tests.oracle import check_parity, keras_metric

# Keras' own divide_no_nan and rsqrt warn on 0/0 and 1/0 before masking them.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning:keras.*")

rng = np.random.default_rng(99)

WRAPPERS = [
    "MeanSquaredError", "MeanAbsoluteError", "MeanAbsolutePercentageError",
    "MeanSquaredLogarithmicError", "CosineSimilarity", "LogCoshError",
]
ALL = [*WRAPPERS, "RootMeanSquaredError"]

# (y shape, sample_weight shape or None), accepted by every metric here.
WEIGHTINGS = [
    ((8,), None),  # one sample per batch for the wrappers; 8 for RMSE
    ((8,), ()),
    ((1,), (1,)),
    ((6, 3), None),
    ((6, 3), (6,)),
    ((6, 3), (6, 1)),
    ((6, 3), ()),
    ((6, 1), (6,)),
    ((5, 3, 2), None),
    ((5, 3, 2), (5,)),
    ((5, 3, 2), (5, 3)),
    ((0, 3), None),
]


def make_batch(shape, weight_shape=None, scale=2.0):
    batch = {
        "y_true": (rng.normal(size=shape) * scale).astype(np.float32),
        "y_pred": (rng.normal(size=shape) * scale).astype(np.float32),
    }
    if weight_shape is not None:
        batch["sample_weight"] = rng.uniform(0, 2, size=weight_shape).astype(np.float32)
    return batch


def batches(shape, weight_shape=None, n=3, **kwargs):
    return [make_batch(shape, weight_shape, **kwargs) for _ in range(n)]


@pytest.mark.parametrize("metric", ALL)
@pytest.mark.parametrize(("shape", "weight_shape"), WEIGHTINGS)
def test_parity(metric, shape, weight_shape):
    check_parity(metric, None, batches(shape, weight_shape))


@pytest.mark.parametrize("metric", ALL)
def test_mixed_batch_shapes_and_options(metric):
    """1-D and 2-D batches into one state, a non-default name and dtype."""
    data = [make_batch((7,)), make_batch((4, 5), (4,)), make_batch((3, 5), ()),
            make_batch((6,), scale=50.0)]
    check_parity(metric, None, data)
    check_parity(metric, {"name": "custom", "dtype": "float64"}, data)


@pytest.mark.parametrize("metric", ALL)
@pytest.mark.parametrize(("y_true_shape", "y_pred_shape"), [((6, 1), (6,)), ((6,), (6, 1)),
                                                            ((6, 1), (6, 3))])
def test_rank_alignment_and_broadcasting(metric, y_true_shape, y_pred_shape):
    data = []
    for _ in range(2):
        b = make_batch(y_pred_shape, (6,))
        b["y_true"] = rng.normal(size=y_true_shape).astype(np.float32)
        data.append(b)
    check_parity(metric, None, data)


def test_rmse_counts_elements_of_1d_input_and_takes_element_weights():
    check_parity("RootMeanSquaredError", None, batches((6,), (6,)))
    check_parity("RootMeanSquaredError", None, batches((6, 3), (6, 3)))
    check_parity("RootMeanSquaredError", {"dtype": "float64"}, batches((6, 3), (6,)))


def test_special_values():
    """Zero labels (MAPE divides by 1e-7), negatives (MSLE floors at 1e-7), large errors
    (log-cosh must not overflow), zero vectors (cosine gives 0 and still counts)."""
    y = np.array([[0, 1, -2], [0, 0, 0], [3, -4, 5]], np.float32)
    p = np.array([[1, 1, 2], [0, 0, 0], [-300, 400, 1e4]], np.float32)
    for metric in ALL:
        check_parity(metric, None, [{"y_true": y, "y_pred": p},
                                    {"y_true": p, "y_pred": y, "sample_weight": [1, 2, 0.5]}])


def test_weight_signs_and_zero_count():
    data = [{"y_true": [[0.0, 1], [2, 3]], "y_pred": [[1.0, 1], [0, 3]],
             "sample_weight": [1.0, -1.0]}]  # count 0: result 0 by divide_no_nan
    for metric in ALL:
        check_parity(metric, None, data)


# -- the fact sheet's worked examples (§4), with Keras computing the expected values ------------

EXAMPLE_Y = [[0.0, 1], [0, 0]]
EXAMPLE_P = [[1.0, 1], [1, 0]]


def test_worked_example_mse_two_batches():
    check_parity("MeanSquaredError", None, [
        {"y_true": EXAMPLE_Y, "y_pred": EXAMPLE_P},  # 0.5
        {"y_true": [[1.0, 1]], "y_pred": [[0.5, 2]], "sample_weight": [2.0]},  # 0.5625
    ])


@pytest.mark.parametrize("metric", ["RootMeanSquaredError", "MeanAbsoluteError",
                                    "MeanAbsolutePercentageError", "MeanSquaredLogarithmicError"])
def test_worked_examples_on_the_mse_data(metric):
    check_parity(metric, None, [{"y_true": EXAMPLE_Y, "y_pred": EXAMPLE_P}])


def test_worked_examples_logcosh_and_cosine():
    check_parity("LogCoshError", None, [{"y_true": EXAMPLE_Y, "y_pred": [[1.0, 1], [0, 0]]}])
    check_parity("LogCoshError", None, [{"y_true": EXAMPLE_Y, "y_pred": [[1.0, 1], [0, 0]],
                                         "sample_weight": [1.0, 0]}])
    check_parity("CosineSimilarity", None, [{"y_true": [[0.0, 1], [1, 1]],
                                             "y_pred": [[1.0, 0], [1, 1]]}])
    check_parity("CosineSimilarity", None, [{"y_true": [[0.0, 1], [1, 1]],
                                             "y_pred": [[1.0, 0], [1, 1]],
                                             "sample_weight": [0.3, 0.7]}])


def test_1d_batches_are_one_sample_each():
    """MSE over [0] vs [1] then three zeros: 0.5 as two batches (0.25 as one)."""
    check_parity("MeanSquaredError", None, [{"y_true": [0.0], "y_pred": [1.0]},
                                            {"y_true": [0.0, 0, 0], "y_pred": [0.0, 0, 0]}])
    check_parity("MeanSquaredError", None, [{"y_true": [0.0, 0, 0, 0], "y_pred": [1.0, 0, 0, 0]}])


# -- CosineSimilarity's axis ------------------------------------------------------------------


@pytest.mark.parametrize("axis", [1, -2, -1, 2])
def test_cosine_axis_parity(axis):
    check_parity("CosineSimilarity", {"axis": axis}, batches((4, 3, 5), (4,)))


def test_cosine_config_drops_axis():
    _, metric = REGISTRY.build("CosineSimilarity", {"axis": 1})
    assert metric.get_config() == {"name": "cosine_similarity", "dtype": "float32"}
    assert keras_metric("CosineSimilarity", {"axis": 1}).get_config()["name"].startswith(
        "cosine_similarity")
    restored = type(metric).from_config(metric.get_config())
    assert restored._fn_kwargs == {"axis": -1}  # as in Keras, the round trip loses the axis


def keras_cosine(y_true, y_pred, axis):
    """Keras' backend-independent `ops.normalize` (what the JAX, TF and torch backends run)."""
    y_true = keras.ops.convert_to_numpy(keras.ops.normalize(y_true, axis=axis))
    y_pred = keras.ops.convert_to_numpy(keras.ops.normalize(y_pred, axis=axis))
    return np.sum(y_true * y_pred, axis=axis)


def test_cosine_axis_0_and_tiny_norms_follow_ops_normalize():
    """Keras' numpy backend normalises with a numpy-only branch that breaks for axis=0
    (`axis or -1`) and divides tiny norms exactly; every other backend uses `ops.normalize`
    (norm floored at 1e-7). We follow the latter and compare against it directly."""
    y = rng.normal(size=(4, 3)).astype(np.float32)
    p = rng.normal(size=(4, 3)).astype(np.float32)
    y[:, 1] = 0.0
    p[:, 2] = [1e-9, 0, 2e-8, -1e-9]
    for axis, (yy, pp) in [(0, (y, p)), (-1, (y.T.copy(), p.T.copy()))]:
        _, metric = REGISTRY.build("CosineSimilarity", {"axis": axis})
        metric.update_state(yy, pp)
        values = keras_cosine(yy, pp, axis)
        np.testing.assert_allclose(metric.total.value, values.sum(), rtol=1e-5, atol=1e-6)
        assert metric.count.value == values.shape[0]
        np.testing.assert_allclose(metric.result(), values.mean(), rtol=1e-5, atol=1e-6)


# -- config and bad input ---------------------------------------------------------------------


@pytest.mark.parametrize("metric", ALL)
def test_config_and_state_layout(metric):
    for config in ({}, {"name": "n", "dtype": "float64"}):
        _, ours = REGISTRY.build(metric, config)
        theirs = keras_metric(metric, config)
        assert [(v.name, v.shape, v.dtype) for v in ours.variables] == [
            (v.name, tuple(v.shape), v.dtype) for v in theirs.variables
        ]


def test_registry_aliases():
    assert REGISTRY.resolve("mse").cls.__name__ == "MeanSquaredError"
    assert REGISTRY.resolve("MAPE").cls.__name__ == "MeanAbsolutePercentageError"
    assert REGISTRY.resolve("log_cosh_error").cls.__name__ == "LogCoshError"
    assert REGISTRY.resolve("root_mean_squared_error").inputs == ["y_true", "y_pred"]


@pytest.mark.parametrize(("metric", "config", "message"), [
    ("CosineSimilarity", {"axis": "last"}, "axis must be an integer; got 'last'"),
    ("CosineSimilarity", {"axis": 1.0}, "axis must be an integer"),
    ("CosineSimilarity", {"axis": True}, "axis must be an integer"),
    ("MeanSquaredError", {"dtype": "int8"}, "dtype must be one of"),
    ("RootMeanSquaredError", {"name": 5}, "name must be a string or null; got 5"),
    ("LogCoshError", {"axis": 1}, "unknown config key"),
])
def test_bad_config(metric, config, message):
    with pytest.raises(ConfigError, match=message):
        REGISTRY.build(metric, config)


BAD_INPUTS = [
    # (metrics, y_true shape, y_pred shape, weight shape, message)
    (ALL, (6, 3), (6, 4), None, r"broadcast-compatible .* y_true \[6, 3\] and y_pred \[6, 4\]"),
    (ALL, (6,), (5,), None, "broadcast-compatible"),
    (WRAPPERS, (6, 3), (6, 3), (6, 3), r"sample_weight of shape \[6, 3\]"),
    (WRAPPERS, (6,), (6,), (6,), r"sample_weight of shape \[6\] cannot be broadcast to shape \[\]"),
    (ALL, (6, 3), (6, 3), (5,), r"sample_weight of shape \[5\]"),
    (WRAPPERS, (), (), None, "at least one axis"),
]


@pytest.mark.parametrize(("metrics", "true_shape", "pred_shape", "weight_shape", "message"),
                         BAD_INPUTS)
def test_bad_input(metrics, true_shape, pred_shape, weight_shape, message):
    y_true = rng.normal(size=true_shape).astype(np.float32)
    y_pred = rng.normal(size=pred_shape).astype(np.float32)
    weight = None if weight_shape is None else np.ones(weight_shape, np.float32)
    for name in metrics:
        _, metric = REGISTRY.build(name, None)
        with pytest.raises(InvalidInput, match=message):
            engine.contribution(metric, {"y_true": y_true, "y_pred": y_pred}, weight)
        reference = keras_metric(name)
        with pytest.raises((ValueError, IndexError)):  # Keras rejects the same batch
            reference.update_state(y_true, y_pred, sample_weight=weight)


def test_cosine_axis_out_of_range():
    _, metric = REGISTRY.build("CosineSimilarity", {"axis": 2})
    with pytest.raises(InvalidInput, match=r"axis 2 is out of range for y_true of rank 2"):
        metric.update_state(np.ones((2, 3), np.float32), np.ones((2, 3), np.float32))
