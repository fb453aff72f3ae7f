"""Keras parity for R2Score: per-column sums built on the first batch, plain and adjusted R2."""

import numpy as np
import pytest

from app.errors import ConfigError, InvalidInput
from app.metrics import engine
from app.metrics.registry import REGISTRY
from tests.oracle import check_parity, keras_metric

# Keras warns when it falls back from the adjusted score; its divisions warn on 0/0.
pytestmark = [pytest.mark.filterwarnings("ignore:.*adjusted R2 score:UserWarning"),
              pytest.mark.filterwarnings("ignore::RuntimeWarning:keras.*")]

F32 = np.float32
AGGREGATIONS = [None, "uniform_average", "variance_weighted_average"]
# sample_weight shapes Keras accepts for (N, C) input; "n" and "c" stand for N and C.
WEIGHT_SHAPES = [None, (), ("n",), ("n", 1), ("n", "c"), (1,), (1, "c")]


def make_batches(seed, weight_shape=None, sizes=(7, 5, 9), num_outputs=3):
    rng = np.random.default_rng(seed)
    batches = []
    for n in sizes:
        y_true = rng.normal(size=(n, num_outputs)) * [1.0, 3.0, 0.5][:num_outputs] + 1.0
        batch = {"y_true": y_true.astype(F32),
                 "y_pred": (y_true + rng.normal(size=y_true.shape)).astype(F32)}
        if weight_shape is not None:
            shape = tuple(n if d == "n" else num_outputs if d == "c" else d
                          for d in weight_shape)
            batch["sample_weight"] = rng.uniform(0.1, 2, size=shape).astype(F32)
        batches.append(batch)
    return batches


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("weight_shape", WEIGHT_SHAPES)
def test_parity(aggregation, weight_shape):
    check_parity("R2Score", {"class_aggregation": aggregation},
                 make_batches(21, weight_shape))


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("num_regressors", [1, 4, 6, 2.5, 100])
def test_adjusted_r2(aggregation, num_regressors):
    """num_samples counts elements (N*C), unweighted: 7 after one batch of 7 x 1, 12 after two.
    p=6 is n-1 after the first batch (Keras falls back to the plain score), p=100 always
    exceeds it; the others adjust."""
    data = make_batches(22, ("n",), sizes=(7, 5, 4), num_outputs=1)
    check_parity("R2Score", {"class_aggregation": aggregation,
                             "num_regressors": num_regressors}, data)
    check_parity("R2Score", {"class_aggregation": aggregation,
                             "num_regressors": num_regressors}, make_batches(23, ("n", "c")))


@pytest.mark.parametrize("dtype", ["float64", "float16"])
def test_dtype_sets_the_arithmetic_not_the_state(dtype):
    data = make_batches(24, ("n",))
    check_parity("R2Score", {"dtype": dtype, "name": "r2"}, data)
    _, metric = REGISTRY.build("R2Score", {"dtype": dtype})
    layout = engine.contribution(metric, {"y_true": data[0]["y_true"],
                                          "y_pred": data[0]["y_pred"]}, None).layout
    assert {v["dtype"] for v in engine.describe_variables(metric, layout)} == {"float32"}


def test_rank_alignment_and_broadcasting():
    """(N,) y_true with (N, 1) y_pred gains an axis; a one-column y_true broadcasts over y_pred's
    columns (Keras' sums broadcast into the per-column state)."""
    rng = np.random.default_rng(25)
    data = [{"y_true": rng.normal(size=n).astype(F32),
             "y_pred": rng.normal(size=(n, 1)).astype(F32),
             "sample_weight": rng.uniform(size=n).astype(F32)} for n in (6, 4)]
    check_parity("R2Score", None, data)
    data = [{"y_true": rng.normal(size=(n, 1)).astype(F32),
             "y_pred": rng.normal(size=(n, 3)).astype(F32)} for n in (6, 4)]
    check_parity("R2Score", {"class_aggregation": None}, data)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_constant_columns_inf_becomes_zero_nan_stays(aggregation):
    """A constant column predicted exactly gives 0/0 = NaN (kept); predicted wrongly, x/0 = inf
    (replaced by 0). A zero-weight batch leaves count 0 and everything NaN."""
    y_true = np.array([[1.0, 2, 0], [1, 2, 1], [1, 2, 2]], F32)
    y_pred = np.array([[1.0, 3, 0], [1, 2, 1], [1, 1, 3]], F32)
    check_parity("R2Score", {"class_aggregation": aggregation},
                 [{"y_true": y_true, "y_pred": y_pred}])
    check_parity("R2Score", {"class_aggregation": aggregation},
                 [{"y_true": y_true[:, 1:], "y_pred": y_pred[:, 1:]}])
    check_parity("R2Score", {"class_aggregation": aggregation},
                 [{"y_true": y_true, "y_pred": y_pred, "sample_weight": np.zeros(3, F32)}])


def test_nan_result_is_json_null():
    _, metric = REGISTRY.build("R2Score", None)
    y = np.ones((3, 2), F32)
    delta = engine.contribution(metric, {"y_true": y, "y_pred": y}, None)
    assert engine.result_json(metric, delta.sums, delta.layout) is None
    reference = keras_metric("R2Score")
    reference.update_state(y, y)
    assert np.isnan(reference.result())


def test_empty_first_batch_builds_the_state():
    data = [{"y_true": np.zeros((0, 2), F32), "y_pred": np.zeros((0, 2), F32)},
            *make_batches(26, ("n",), num_outputs=2)]
    check_parity("R2Score", {"class_aggregation": None}, data)


# -- the fact sheet's worked example (§4, 21), with Keras computing the expected values ---------

EXAMPLE = {"y_true": [[1.0, 2], [4, 1], [3, 5], [2, 2]],
           "y_pred": [[2.0, 2], [4, 0], [4, 4], [1, 3]]}


@pytest.mark.parametrize("config", [
    {}, {"class_aggregation": "variance_weighted_average"}, {"class_aggregation": None},
    {"num_regressors": 1},
])
def test_worked_example_21(config):
    check_parity("R2Score", config, [EXAMPLE])


def test_worked_example_21_state_and_split():
    _, metric = REGISTRY.build("R2Score", None)
    arrays = {k: np.asarray(v, F32) for k, v in EXAMPLE.items()}
    delta = engine.contribution(metric, arrays, None)
    assert delta.layout == {"num_classes": 2}
    ours = {v["name"]: v["value"] for v in engine.variables_json(metric, delta.sums,
                                                                 delta.layout)}
    reference = keras_metric("R2Score")
    reference.update_state(arrays["y_true"], arrays["y_pred"])
    assert ours == {v.name: np.asarray(v).tolist() for v in reference.variables}
    # The same rows in two batches give the same state (pure sums).
    split = [{k: v[:1] for k, v in arrays.items()}, {k: v[1:] for k, v in arrays.items()}]
    check_parity("R2Score", {"num_regressors": 1}, split)


# -- lazily built state ------------------------------------------------------------------------


def test_variables_num_samples_first_then_the_built_ones():
    _, metric = REGISTRY.build("R2Score", None)
    assert engine.describe_variables(metric, None) == [
        {"name": "num_samples", "shape": [], "dtype": "float32"}]
    assert engine.result_json(metric, {}, None) is None
    with pytest.raises(AttributeError):  # Keras has no per-column variables yet
        keras_metric("R2Score").result()
    assert [(v["name"], v["shape"]) for v in engine.describe_variables(
        metric, {"num_classes": 4})] == [("num_samples", []), ("squared_sum", [4]),
                                         ("sum", [4]), ("residual", [4]), ("count", [4])]


def test_a_later_batch_of_another_width_is_refused():
    first, = make_batches(27, sizes=(5,), num_outputs=3)
    other, = make_batches(28, sizes=(5,), num_outputs=2)
    _, metric = REGISTRY.build("R2Score", None)
    layout = engine.contribution(metric, first, None).layout
    assert layout == {"num_classes": 3}
    with pytest.raises(InvalidInput, match=r"built for \{'num_classes': 3\}.*"
                                           r"\{'num_classes': 2\}"):
        engine.contribution(metric, other, None, layout)
    reference = keras_metric("R2Score")
    reference.update_state(first["y_true"], first["y_pred"])
    with pytest.raises(ValueError):  # Keras refuses it too
        reference.update_state(other["y_true"], other["y_pred"])


# -- config and bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(("config", "message", "keras_raises"), [
    ({"class_aggregation": "mean"}, r"Expected one of .* Received: class_aggregation='mean'",
     True),
    ({"class_aggregation": "raw_values"}, "Invalid value for argument `class_aggregation`", True),
    ({"num_regressors": -1}, r"Expected a value >= 0 .* Received: num_regressors=-1", True),
    ({"num_regressors": "2"}, r"Expected a value >= 0 .* Received: num_regressors='2'", True),
    ({"num_regressors": None}, "Invalid value for argument `num_regressors`", True),
    ({"num_regressors": float("nan")}, "Invalid value for argument `num_regressors`", False),
    ({"num_regressors": True}, "Invalid value for argument `num_regressors`", False),
    ({"dtype": "int8"}, "dtype must be one of", False),
    ({"multioutput": None}, "unknown config key", False),
])
def test_bad_config(config, message, keras_raises):
    with pytest.raises(ConfigError, match=message):
        REGISTRY.build("R2Score", config)
    if keras_raises:
        with pytest.raises((ValueError, TypeError)):
            keras_metric("R2Score", config)


def test_config_round_trip():
    _, metric = REGISTRY.build("R2Score", {"class_aggregation": None, "num_regressors": 3})
    assert metric.get_config() == {"name": "r2_score", "dtype": "float32",
                                   "class_aggregation": None, "num_regressors": 3}
    assert type(metric).from_config(metric.get_config()).get_config() == metric.get_config()


BAD_INPUTS = [
    # (y_true shape, y_pred shape, weight shape, message)
    ((6,), (6,), None, r"expects 2D inputs with shape .* y_pred \[6\] and y_true \[6\]"),
    ((6, 2, 2), (6, 2, 2), None, "expects 2D inputs with shape"),
    ((6, 3), (6,), None, "expects 2D inputs with shape"),
    ((6, 3), (5, 3), None, "broadcast-compatible"),
    ((6, 3), (6, 1), None, r"outputs from y_pred \(1\); y_true \[6, 3\] has 3 columns"),
    ((6, 3), (6, 3), (5,), r"sample_weight of shape .* y_true \[6, 3\]; got \[5\]"),
    ((6, 3), (6, 3), (6, 2), r"got \[6, 2\]"),
    ((6, 3), (6, 3), (1, 6, 3), r"got \[1, 6, 3\]"),
]


@pytest.mark.parametrize(("true_shape", "pred_shape", "weight_shape", "message"), BAD_INPUTS)
def test_bad_input(true_shape, pred_shape, weight_shape, message):
    rng = np.random.default_rng(0)
    y_true = rng.normal(size=true_shape).astype(F32)
    y_pred = rng.normal(size=pred_shape).astype(F32)
    weight = None if weight_shape is None else np.ones(weight_shape, F32)
    _, metric = REGISTRY.build("R2Score", None)
    with pytest.raises(InvalidInput, match=message):
        engine.contribution(metric, {"y_true": y_true, "y_pred": y_pred}, weight)
    assert not metric.built
    with pytest.raises(ValueError):  # Keras refuses the same first batch
        keras_metric("R2Score").update_state(y_true, y_pred, sample_weight=weight)


def test_later_1d_batches_are_refused_though_keras_broadcasts_them():
    """Keras checks the rank on the first batch only; a later 1-D batch then adds its
    scalar sums to every column. We refuse it."""
    first, = make_batches(29, sizes=(5,), num_outputs=3)
    _, metric = REGISTRY.build("R2Score", None)
    layout = engine.contribution(metric, first, None).layout
    with pytest.raises(InvalidInput, match="expects 2D inputs with shape"):
        engine.contribution(metric, {"y_true": np.ones(4, F32), "y_pred": np.ones(4, F32)},
                            None, layout)
