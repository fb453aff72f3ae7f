"""Keras parity for IoU, MeanIoU, BinaryIoU, OneHotIoU and OneHotMeanIoU (`app/metrics/iou.py`).

Unweighted batches and integer-valued weights are compared with Keras as configured (int32
state by default), where Keras counts exactly. Fractional weights are compared with Keras
built with `dtype="float32"`: Tally accumulates the exact weights whatever `dtype` says, while
Keras' default int32 state truncates them (the tests below show both, computed by Keras).

The other deliberate differences from Keras (see the module docstring) have a test each, which
also runs Keras to show what it does instead: non-integer class ids, ids outside
[0, num_classes) (refused with a 422 where Keras drops them), `axis` in `result()`, a single id
broadcast against a batch, negative `target_class_ids`.
"""

import re

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.errors import ConfigError, InvalidInput
from app.metrics import engine
from app.metrics.iou import MAX_NUM_CLASSES
from app.metrics.registry import REGISTRY
from app.settings import Settings
from app.store.memory import MemoryStore
from tests.oracle import (
    assert_close,
    check_parity,
    json_array,
    keras_metric,
    keras_update,
    keras_variables,
    normalise_config,
    tally_inputs,
)

pytestmark = [
    # Keras warns about float weights with an int dtype, and divides 0/0 in some paths.
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
]

rng = np.random.default_rng(20240611)



# -- data ---------------------------------------------------------------------------------------


def sparse_ids(shape, k, void=None, share=0.15):
    """Class ids in [0, k), with some `void` ids (an out-of-range ignore_class) mixed in."""
    ids = rng.integers(0, k, size=shape)
    if void is not None:
        ids[rng.uniform(size=shape) < share] = void
    return ids.astype(np.float32)


def scores(shape):
    return rng.uniform(-1, 1, size=shape).astype(np.float32)


def one_hot(shape, k, zero_rows=0.1):
    """One-hot rows along the last axis; a few all-zero rows (their argmax is class 0)."""
    out = np.eye(k, dtype=np.float32)[rng.integers(0, k, size=shape)]
    out[rng.uniform(size=shape) < zero_rows] = 0
    return out


def int_weights(shape):
    return rng.integers(-1, 4, size=shape).astype(np.float32)


def frac_weights(shape):
    return rng.uniform(0, 2, size=shape).astype(np.float32)


def with_weights(batch, kind, shape):
    if kind == "elements":
        batch["sample_weight"] = int_weights(shape)
    elif kind == "scalar":
        batch["sample_weight"] = np.float32(rng.integers(0, 4))
    elif kind == "single":
        batch["sample_weight"] = np.full((1,), rng.integers(0, 4), np.float32)
    elif kind == "fractional":
        batch["sample_weight"] = frac_weights(shape)
    return batch


def sparse_batches(shape, k, weights=None, n=3, ignore=None):
    """Sparse ids in [0, k); y_true also holds `ignore` (the config's ignore_class) if given."""
    return [with_weights({"y_true": sparse_ids(shape, k, ignore),
                          "y_pred": sparse_ids(shape, k)}, weights, shape) for _ in range(n)]


def dense_batches(shape, k, *, sparse_true=False, sparse_pred=False, weights=None, n=3,
                  ignore=None):
    """Batches of `shape` ids: one-hot/score arrays with an extra class axis last where not
    sparse."""
    def make():
        y_true = sparse_ids(shape, k, ignore) if sparse_true else one_hot(shape, k)
        y_pred = sparse_ids(shape, k) if sparse_pred else scores((*shape, k))
        return with_weights({"y_true": y_true, "y_pred": y_pred}, weights, shape)
    return [make() for _ in range(n)]


def compare(name, config, batches, *, keras_config=None, keras_batches=None):
    """Tally `name(config)` on `batches` against Keras `name(keras_config)` on `keras_batches`
    (defaults: the same), result and variables after every batch, state summed from per-batch
    contributions as the stores do. Unlike `check_parity`, configs are not compared."""
    reference = keras_metric(name, config if keras_config is None else keras_config)
    _, metric = REGISTRY.build(name, config)
    state: dict[str, float] = {}
    keras_batches = batches if keras_batches is None else keras_batches
    for step, (batch, keras_batch) in enumerate(zip(batches, keras_batches, strict=True)):
        keras_update(reference, keras_batch)
        arrays, weight = tally_inputs(batch)
        for key, value in engine.contribution(metric, arrays, weight).sums.items():
            state[key] = state.get(key, 0.0) + value
        where = f"{name}({config}) vs Keras({keras_config}) after batch {step}"
        assert_close(json_array(engine.result_json(metric, state)),
                     np.asarray(reference.result()), f"{where}: result")
        for ours, (_, theirs) in zip(engine.variables_json(metric, state),
                                     keras_variables(reference), strict=True):
            assert_close(json_array(ours["value"]), theirs, f"{where}: {ours['name']}")


def tally_result(name, config, batches):
    _, metric = REGISTRY.build(name, config)
    state: dict[str, float] = {}
    for batch in batches:
        arrays, weight = tally_inputs(batch)
        for key, value in engine.contribution(metric, arrays, weight).sums.items():
            state[key] = state.get(key, 0.0) + value
    return engine.result_json(metric, state), engine.variables_json(metric, state)[0]


def keras_result(name, config, batches):
    reference = keras_metric(name, config)
    for batch in batches:
        keras_update(reference, batch)
    return float(np.asarray(reference.result())), keras_variables(reference)[0][1]


# -- parity on random data: sparse ids ------------------------------------------------------------

SPARSE_CONFIGS = [
    ("MeanIoU", {"num_classes": 1}),
    ("MeanIoU", {"num_classes": 4}),
    ("MeanIoU", {"num_classes": 4, "ignore_class": 0}),
    ("MeanIoU", {"num_classes": 4, "ignore_class": 2}),
    ("MeanIoU", {"num_classes": 4, "ignore_class": 255}),
    ("MeanIoU", {"num_classes": 4, "ignore_class": -1}),
    ("IoU", {"num_classes": 4, "target_class_ids": [0]}),
    ("IoU", {"num_classes": 4, "target_class_ids": [3, 1]}),
    ("IoU", {"num_classes": 5, "target_class_ids": [0, 2, 2], "ignore_class": 1}),
    ("IoU", {"num_classes": 3, "target_class_ids": (2,), "name": "road"}),
]


@pytest.mark.parametrize(("metric", "config"), SPARSE_CONFIGS)
@pytest.mark.parametrize("shape", [(12,), (5, 1), (3, 5), (2, 4, 3)])
@pytest.mark.parametrize("weights", [None, "elements", "scalar", "single"])
def test_sparse_parity(metric, config, shape, weights):
    k = config["num_classes"]
    check_parity(metric, config,
                 sparse_batches(shape, k, weights, ignore=config.get("ignore_class")))


def test_sparse_ids_of_different_shapes_with_as_many_elements():
    """Keras flattens y_true and y_pred separately: (6, 1) against (6,) or (2, 3) against
    (3, 2) pair up element by element."""
    for true_shape, pred_shape in [((6, 1), (6,)), ((6,), (6, 1)), ((2, 3), (3, 2))]:
        batches = [{"y_true": sparse_ids(true_shape, 3), "y_pred": sparse_ids(pred_shape, 3),
                    "sample_weight": int_weights(true_shape)} for _ in range(2)]
        check_parity("MeanIoU", {"num_classes": 3}, batches)


# -- parity on random data: one-hot labels, score predictions, segmentation maps ------------------

DENSE_CASES = [
    # (metric, config, sparse y_true?, sparse y_pred?)
    ("OneHotMeanIoU", {"num_classes": 3}, False, False),
    ("OneHotMeanIoU", {"num_classes": 4, "ignore_class": 1}, False, False),
    ("OneHotMeanIoU", {"num_classes": 4, "sparse_y_pred": True}, False, True),
    ("OneHotIoU", {"num_classes": 3, "target_class_ids": [0, 2]}, False, False),
    ("OneHotIoU", {"num_classes": 4, "target_class_ids": [1], "ignore_class": 0}, False, False),
    ("OneHotIoU", {"num_classes": 4, "target_class_ids": [3, 0], "sparse_y_pred": True},
     False, True),
    ("MeanIoU", {"num_classes": 4, "sparse_y_pred": False}, True, False),
    ("MeanIoU", {"num_classes": 4, "sparse_y_pred": False, "ignore_class": 3}, True, False),
    ("MeanIoU", {"num_classes": 3, "sparse_y_true": False, "sparse_y_pred": False}, False, False),
    ("IoU", {"num_classes": 4, "target_class_ids": [1, 2], "sparse_y_true": False}, False, True),
    ("IoU", {"num_classes": 3, "target_class_ids": [0], "sparse_y_pred": False,
             "ignore_class": 255}, True, False),
]


@pytest.mark.parametrize(("metric", "config", "sparse_true", "sparse_pred"), DENSE_CASES)
@pytest.mark.parametrize(("shape", "weights"), [
    ((10,), None),
    ((10,), "elements"),
    ((2, 3, 4), None),          # segmentation maps: (batch, height, width) ids
    ((2, 3, 4), "elements"),    # per-pixel weights
    ((2, 3, 4), "scalar"),
])
def test_dense_parity(metric, config, sparse_true, sparse_pred, shape, weights):
    k = config["num_classes"]
    check_parity(metric, config, dense_batches(shape, k, sparse_true=sparse_true,
                                               sparse_pred=sparse_pred, weights=weights))


def test_one_hot_ties_and_negative_zero_follow_keras_argmax():
    """The first maximum wins, and -0.0 ranks below +0.0 (Keras' argmax on every backend)."""
    y_true = np.array([[0, 1, 1], [0, 0, 0], [1, 0, 1], [0, 0, 0]], np.float32)
    y_pred = np.array([[0.5, 0.5, 0.1], [-0.0, 0.0, -1], [0, -0.0, 0.0], [2, 2, 2]], np.float32)
    check_parity("OneHotMeanIoU", {"num_classes": 3}, [{"y_true": y_true, "y_pred": y_pred}])


@pytest.mark.parametrize("metric", ["OneHotMeanIoU", "MeanIoU"])
def test_axis_zero_is_a_parity_case(metric):
    """`axis=0` works in Keras too: the argmax runs over the first axis (here the classes of a
    (C, pixels) map), and summing the 1-D IoU vector over axis 0 is fine."""
    config = {"num_classes": 3, "axis": 0}
    if metric == "MeanIoU":
        config.update(sparse_y_true=False, sparse_y_pred=False)
    batches = [{"y_true": one_hot((7,), 3).T.copy(), "y_pred": scores((3, 7)),
                "sample_weight": int_weights((7,))} for _ in range(2)]
    check_parity(metric, config, batches)


@pytest.mark.parametrize(("metric", "config"), [
    ("OneHotMeanIoU", {"num_classes": 3}),
    ("OneHotIoU", {"num_classes": 4, "target_class_ids": [1, 3], "ignore_class": 2}),
    ("MeanIoU", {"num_classes": 3, "sparse_y_pred": False}),
])
@pytest.mark.parametrize("axis", [1, -3])
def test_channels_first_axis(metric, config, axis):
    """(batch, classes, height, width) maps with `axis=1`: Keras' `result()` raises for any
    axis but -1 and 0 (it sums the per-class IoU vector over `axis`), so the oracle is Keras
    with `axis=-1` on the same maps moved to channels-last. Configs still match Keras'."""
    k = config["num_classes"]
    sparse_true = config.get("sparse_y_true", metric == "MeanIoU")
    batches, keras_batches = [], []
    for _ in range(3):
        ids_true = sparse_ids((2, 3, 4), k) if sparse_true else None
        true_last = ids_true if sparse_true else one_hot((2, 3, 4), k)
        pred_last = scores((2, 3, 4, k))
        weight = int_weights((2, 3, 4))
        keras_batches.append({"y_true": true_last, "y_pred": pred_last, "sample_weight": weight})
        batches.append({
            "y_true": true_last if sparse_true else np.moveaxis(true_last, -1, 1).copy(),
            "y_pred": np.moveaxis(pred_last, -1, 1).copy(),
            "sample_weight": weight,
        })
    compare(metric, {**config, "axis": axis}, batches, keras_config=config,
            keras_batches=keras_batches)
    _, ours = REGISTRY.build(metric, {**config, "axis": axis})
    assert normalise_config(ours.get_config()) == normalise_config(
        keras_metric(metric, {**config, "axis": axis}).get_config())


def test_empty_batches_and_no_data():
    check_parity("MeanIoU", {"num_classes": 3}, [
        {"y_true": np.zeros(0, np.float32), "y_pred": np.zeros(0, np.float32)},
        {"y_true": [0.0, 1, 2], "y_pred": [0.0, 2, 2]},
        {"y_true": np.zeros((0, 4), np.float32), "y_pred": np.zeros((0, 4), np.float32),
         "sample_weight": 2.0},
    ])
    check_parity("OneHotIoU", {"num_classes": 3, "target_class_ids": [1]}, [
        {"y_true": np.zeros((0, 3), np.float32), "y_pred": np.zeros((0, 3), np.float32)},
    ])
    _, metric = REGISTRY.build("MeanIoU", {"num_classes": 3})
    assert engine.result_json(metric, {}) == 0.0 == float(
        keras_metric("MeanIoU", {"num_classes": 3}).result())


# -- BinaryIoU ------------------------------------------------------------------------------------


def binary_batch(shape, threshold, weights=None):
    y_pred = rng.uniform(-0.5, 1.5, size=shape).astype(np.float32)
    t = np.float32(threshold)
    edge = np.array([t, np.nextafter(t, np.float32(-2)), np.nextafter(t, np.float32(2))])
    flat = y_pred.reshape(-1)
    flat[: min(3, flat.size)] = edge[: min(3, flat.size)]  # on and next to the threshold
    y_true = rng.choice([0.0, 1.0], size=shape).astype(np.float32)
    return with_weights({"y_true": y_true, "y_pred": y_pred}, weights, shape)


@pytest.mark.parametrize("config", [
    {},
    {"target_class_ids": [0]},
    {"target_class_ids": [1], "threshold": 0.3},
    {"target_class_ids": (1, 0), "threshold": 0},
    {"threshold": 1},
    {"threshold": -0.25, "name": "mask"},
    {"threshold": 0.1},  # not a float32 number: compared as float32(0.1), as in Keras
])
@pytest.mark.parametrize(("shape", "weights"), [
    ((9,), None), ((9,), "elements"), ((3, 4), "elements"), ((2, 2, 3), "scalar"),
])
def test_binary_iou_parity(config, shape, weights):
    threshold = config.get("threshold", 0.5)
    check_parity("BinaryIoU", config, [binary_batch(shape, threshold, weights)
                                       for _ in range(3)])


def test_binary_iou_uses_greater_or_equal():
    check_parity("BinaryIoU", None, [{"y_true": [1.0], "y_pred": [0.5]}])  # cm [[0,0],[0,1]]
    _, metric = REGISTRY.build("BinaryIoU", None)
    engine.contribution(metric, {"y_true": np.ones(1), "y_pred": np.full(1, 0.5)}, None)
    assert metric.total_cm.value.tolist() == [[0, 0], [0, 1]]


# -- dtype: exact weights instead of Keras' int32 truncation --------------------------------------

WEIGHTED_CASES = [
    ("MeanIoU", {"num_classes": 4}, lambda w: sparse_batches((3, 5), 4, w)),
    ("MeanIoU", {"num_classes": 4, "ignore_class": 0}, lambda w: sparse_batches((12,), 4, w)),
    ("IoU", {"num_classes": 4, "target_class_ids": [1, 2]},
     lambda w: sparse_batches((2, 3, 2), 4, w)),
    ("OneHotIoU", {"num_classes": 3, "target_class_ids": [0, 2]},
     lambda w: dense_batches((2, 5), 3, weights=w)),
    ("OneHotMeanIoU", {"num_classes": 3, "sparse_y_pred": True},
     lambda w: dense_batches((8,), 3, sparse_pred=True, weights=w)),
    ("BinaryIoU", {"threshold": 0.4}, lambda w: [binary_batch((3, 3), 0.4, w) for _ in range(3)]),
]


@pytest.mark.parametrize(("metric", "config", "make"), WEIGHTED_CASES)
def test_fractional_weights_match_keras_float32(metric, config, make):
    """With the default dtype ("int32") Tally accumulates fractional weights exactly: it agrees
    with Keras built with `dtype="float32"`, whose config differs in `dtype` only."""
    batches = make("fractional")
    float_config = {**config, "dtype": "float32"}
    compare(metric, config, batches, keras_config=float_config)
    _, ours = REGISTRY.build(metric, config)
    theirs = normalise_config(keras_metric(metric, float_config).get_config())
    assert normalise_config(ours.get_config()) == {**theirs, "dtype": "int32"}
    assert normalise_config(keras_metric(metric, config).get_config())["dtype"] == "int32"
    # ... whereas Keras' own default truncates every weight in [0, 1) to 0.
    truncated = [{**b, "sample_weight": np.trunc(b["sample_weight"])} for b in batches]
    compare(metric, {**config, "dtype": "float32"}, truncated, keras_config=config,
            keras_batches=batches)


def test_worked_example_17_documents_the_difference():
    """MeanIoU(2) with weights [0.3, 0.3, 0.3, 0.1]: Keras gives 0.0 by default (every weight
    truncated to 0) and 0.2380952 with dtype="float32"; Tally gives the latter by default."""
    batch = [{"y_true": [0.0, 0, 1, 1], "y_pred": [0.0, 1, 0, 1],
              "sample_weight": [0.3, 0.3, 0.3, 0.1]}]
    keras_default, keras_default_cm = keras_result("MeanIoU", {"num_classes": 2}, batch)
    keras_float, keras_float_cm = keras_result("MeanIoU", {"num_classes": 2, "dtype": "float32"},
                                               batch)
    assert keras_default == 0.0 and not keras_default_cm.any()
    assert keras_float == pytest.approx(0.2380952, abs=1e-6)
    ours, state = tally_result("MeanIoU", {"num_classes": 2}, batch)
    assert ours == pytest.approx(keras_float, rel=1e-6)
    assert state["name"] == "total_confusion_matrix" and state["dtype"] == "float32"
    np.testing.assert_allclose(state["value"], keras_float_cm, rtol=1e-6)


@pytest.mark.parametrize(("metric", "config", "batch"), [
    # Keras docstring examples whose documented value needs float state.
    ("IoU", {"num_classes": 2, "target_class_ids": [0]},
     {"y_true": [0.0, 0, 1, 1], "y_pred": [0.0, 1, 0, 1], "sample_weight": [0.3, 0.3, 0.3, 0.1]}),
    ("BinaryIoU", {"target_class_ids": [0, 1], "threshold": 0.3},
     {"y_true": [0.0, 1, 0, 1], "y_pred": [0.1, 0.2, 0.4, 0.7],
      "sample_weight": [0.2, 0.3, 0.4, 0.1]}),
    ("OneHotIoU", {"num_classes": 3, "target_class_ids": [0, 2]},
     {"y_true": [[0.0, 0, 1], [1, 0, 0], [0, 1, 0], [1, 0, 0]],
      "y_pred": [[0.2, 0.3, 0.5], [0.1, 0.2, 0.7], [0.5, 0.3, 0.1], [0.1, 0.4, 0.5]],
      "sample_weight": [0.1, 0.2, 0.3, 0.4]}),
    ("OneHotMeanIoU", {"num_classes": 3},
     {"y_true": [[0.0, 0, 1], [1, 0, 0], [0, 1, 0], [1, 0, 0]],
      "y_pred": [[0.2, 0.3, 0.5], [0.1, 0.2, 0.7], [0.5, 0.3, 0.1], [0.1, 0.4, 0.5]],
      "sample_weight": [0.1, 0.2, 0.3, 0.4]}),
])
def test_weighted_docstring_examples(metric, config, batch):
    keras_default, _ = keras_result(metric, config, [batch])
    keras_float, _ = keras_result(metric, {**config, "dtype": "float32"}, [batch])
    assert keras_default == 0.0 < keras_float
    ours, _ = tally_result(metric, config, [batch])
    assert ours == pytest.approx(keras_float, rel=1e-6)


def test_nan_and_negative_weights_follow_keras_float32():
    """A NaN weight makes its classes' denominators NaN, which Keras counts as absent."""
    batches = [{"y_true": [0.0, 0, 1, 1, 2], "y_pred": [0.0, 1, 0, 1, 2],
                "sample_weight": [np.nan, 0.3, 0.3, 0.1, 1]},
               {"y_true": [2.0, 1, 1], "y_pred": [2.0, 1, 0], "sample_weight": [-0.5, 2, 1.5]}]
    compare("MeanIoU", {"num_classes": 3}, batches,
            keras_config={"num_classes": 3, "dtype": "float32"})


@pytest.mark.parametrize("dtype", ["int32", "int64", "float16", "float32", "float64"])
def test_explicit_dtypes(dtype):
    """Every dtype Keras takes: echoed in the config; integer weights count the same."""
    config = {"num_classes": 3, "target_class_ids": [0, 2], "dtype": dtype}
    check_parity("IoU", config, sparse_batches((4, 3), 3, "elements"))
    if dtype in ("float32", "float64"):  # float16 Keras rounds fractional sums
        check_parity("OneHotIoU", config, dense_batches((6,), 3, weights="fractional"))
    check_parity("BinaryIoU", {"dtype": dtype}, [binary_batch((7,), 0.5, "elements")])


def test_variable_layout():
    """Name and shape as in Keras; the dtype is what Tally really holds: float32 (float64 for
    dtype="float64") where Keras holds int32 (or int64, float16)."""
    for dtype, expected in [(None, "float32"), ("int32", "float32"), ("int64", "float32"),
                            ("float16", "float32"), ("float32", "float32"),
                            ("float64", "float64")]:
        config = {"num_classes": 5, "dtype": dtype}
        _, ours = REGISTRY.build("MeanIoU", config)
        theirs = keras_metric("MeanIoU", config)
        assert [(v.name, v.shape) for v in ours.variables] == [
            (v.name, tuple(v.shape)) for v in theirs.variables]
        assert [v.dtype for v in ours.variables] == [expected]
        assert engine.describe_variables(ours) == [
            {"name": "total_confusion_matrix", "shape": [5, 5], "dtype": expected}]
    _, binary = REGISTRY.build("BinaryIoU", None)
    assert binary.variables[0].shape == (2, 2)


# -- the fact sheet's worked examples, with Keras computing the expected values -------------------


def test_worked_example_16_ignore_class():
    """Pairs whose true class is ignored are dropped; a prediction of the ignored class is
    kept: cm [[0,0,0],[0,1,0],[1,0,1]], result 0.5 (with the epsilons, 0.49999997)."""
    batch = [{"y_true": [0.0, 1, 2, 2], "y_pred": [1.0, 1, 2, 0]}]
    check_parity("MeanIoU", {"num_classes": 3, "ignore_class": 0}, batch)
    result, state = tally_result("MeanIoU", {"num_classes": 3, "ignore_class": 0}, batch)
    assert state["value"] == [[0, 0, 0], [0, 1, 0], [1, 0, 1]]
    assert result == pytest.approx(0.5, abs=1e-6)


def test_worked_example_17_parity_unweighted_and_integer_weights():
    batch = {"y_true": [0.0, 0, 1, 1], "y_pred": [0.0, 1, 0, 1]}
    check_parity("MeanIoU", {"num_classes": 2}, [batch])  # 0.3333333
    check_parity("MeanIoU", {"num_classes": 2}, [{**batch, "sample_weight": [3.0, 3, 3, 1]}])


def test_fact_sheet_one_liners():
    y_true = [[0.0, 0, 1], [1, 0, 0], [0, 1, 0], [1, 0, 0]]
    y_pred = [[0.2, 0.3, 0.5], [0.1, 0.2, 0.7], [0.5, 0.3, 0.1], [0.1, 0.4, 0.5]]
    check_parity("OneHotIoU", {"num_classes": 3, "target_class_ids": [0, 2]},
                 [{"y_true": y_true, "y_pred": y_pred}])  # 0.1666667
    check_parity("OneHotMeanIoU", {"num_classes": 3},
                 [{"y_true": y_true, "y_pred": y_pred}])  # 0.1111111
    check_parity("IoU", {"num_classes": 2, "target_class_ids": [0]},
                 [{"y_true": [0.0, 0, 1, 1], "y_pred": [0.0, 1, 0, 1]}])  # 0.3333333
    check_parity("BinaryIoU", {"target_class_ids": [0, 1], "threshold": 0.3},
                 [{"y_true": [0.0, 1, 0, 1], "y_pred": [0.1, 0.2, 0.4, 0.7]}])  # 0.3333333
    # One correct pixel: the epsilons keep a perfect score below 1 (0.9999998).
    check_parity("MeanIoU", {"num_classes": 3}, [{"y_true": [1.0], "y_pred": [1.0]}])


@pytest.mark.parametrize(("y_true", "y_pred"), [
    ([1.0], [1.0]),                        # 0.9999998
    ([1.0, 1], [1.0, 1]),                  # 0.9999999
    ([0.0, 1, 2], [0.0, 1, 2]),
    ([0.0, 0, 1, 1], [0.0, 1, 0, 1]),      # 0.3333333
    ([2.0] * 9 + [0], [2.0] * 10),
])
def test_epsilons_bit_for_bit(y_true, y_pred):
    """The float32 result equals Keras' exactly, so both 1e-7 epsilons are where Keras puts
    them (a relative tolerance could not tell)."""
    batch = [{"y_true": y_true, "y_pred": y_pred}]
    ours, _ = tally_result("MeanIoU", {"num_classes": 3}, batch)
    theirs, _ = keras_result("MeanIoU", {"num_classes": 3}, batch)
    assert ours == theirs


# -- the other deliberate differences from Keras --------------------------------------------------


@pytest.mark.parametrize(("labels", "where"), [
    ([0.0, 1.99, 2], "y_true"),
    ([0.0, -0.5, 2], "y_true"),
    ([0.0, np.nan, 2], "y_true"),
    ([0.0, np.inf, 2], "y_true"),
    ([0.0, 2.5, 1], "y_pred"),
])
def test_non_integer_class_ids_are_rejected(labels, where):
    other = [0.0, 1, 2]
    y_true, y_pred = (labels, other) if where == "y_true" else (other, labels)
    _, metric = REGISTRY.build("MeanIoU", {"num_classes": 3})
    inputs = {"y_true": np.asarray(y_true, np.float32), "y_pred": np.asarray(y_pred, np.float32)}
    with pytest.raises(InvalidInput, match=f"{where} to be integer class ids"):
        engine.contribution(metric, inputs, None)


def test_keras_truncation_of_fractional_ids_depends_on_dtype():
    """Why Tally rejects fractional ids: Keras counts -0.5 as class 0 with its default int32
    dtype (truncation toward zero) but drops it as out of range with dtype="float32"."""
    batch = [{"y_true": [-0.5, 1, 2], "y_pred": [0.0, 1, 2]}]
    _, int_cm = keras_result("MeanIoU", {"num_classes": 3}, batch)
    _, float_cm = keras_result("MeanIoU", {"num_classes": 3, "dtype": "float32"}, batch)
    assert int_cm[0, 0] == 1 and float_cm[0, 0] == 0


OUT_OF_RANGE = [
    # (metric, config, y_true, y_pred, what, offending ids as the detail lists them)
    ("MeanIoU", {"num_classes": 3}, [0.0, 3, 1], [0.0, 1, 1], "y_true", "3"),
    ("MeanIoU", {"num_classes": 3}, [0.0, -1, 255, 1], [0.0, 1, 2, 1], "y_true", "-1, 255"),
    ("MeanIoU", {"num_classes": 3}, [0.0, 1, 2], [0.0, 7, -3], "y_pred", "-3, 7"),
    ("IoU", {"num_classes": 4, "target_class_ids": [1], "ignore_class": 255},
     [0.0, 255, -1], [0.0, 1, 1], "y_true", "-1"),
    ("MeanIoU", {"num_classes": 3, "ignore_class": 0}, [0.0, 1], [5.0, 9], "y_pred", "9"),
    # An argmax over a class axis wider than num_classes.
    ("OneHotMeanIoU", {"num_classes": 2}, [[0.0, 0, 1]], [[0.2, 0.7, 0.1]], "y_true", "2"),
    ("MeanIoU", {"num_classes": 2, "sparse_y_pred": False}, [1.0], [[0.0, 0.1, 0.9]],
     "y_pred", "2"),
]


@pytest.mark.parametrize(("metric", "config", "y_true", "y_pred", "what", "ids"), OUT_OF_RANGE)
def test_ids_outside_the_classes_are_refused_naming_them_and_the_range(
        metric, config, y_true, y_pred, what, ids):
    """Keras silently drops such pairs; the contract makes labels outside what the metric
    accepts a 422 (InvalidInput), whose detail names the input, the range and the ids."""
    _, instance = REGISTRY.build(metric, config)
    inputs = {"y_true": np.asarray(y_true, np.float32), "y_pred": np.asarray(y_pred, np.float32)}
    k = config["num_classes"]
    with pytest.raises(InvalidInput, match=rf"{what} class ids in \[0, {k}\).*: {ids}$"):
        engine.contribution(instance, inputs, None)


def test_a_true_ignore_class_drops_its_pair_whatever_the_prediction():
    """A void label declared as ignore_class is the way to send segmentation maps with
    255/-1 pixels: their pairs are dropped even when the prediction is out of range too."""
    batch = [{"y_true": [0.0, 255, 255, 1], "y_pred": [0.0, 2, 300, 1]}]
    check_parity("MeanIoU", {"num_classes": 3, "ignore_class": 255}, batch)
    _, state = tally_result("MeanIoU", {"num_classes": 3, "ignore_class": 255}, batch)
    assert state["value"] == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]


def test_out_of_range_ids_over_http_are_422_and_change_nothing():
    with TestClient(create_app(Settings(), store=MemoryStore())) as client:
        client.put("/v1/sessions/seg", json={"metric": "MeanIoU", "config": {"num_classes": 3}})
        client.post("/v1/sessions/seg/update", json={"y_true": [0, 1], "y_pred": [0, 1]})
        before = client.get("/v1/sessions/seg/variables").json()
        r = client.post("/v1/sessions/seg/update", json={"y_true": [0, 255], "y_pred": [0, 1]})
        assert r.status_code == 422
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["detail"] == ("MeanIoU expects y_true class ids in [0, 3); got 1 id(s) "
                                      "outside it: 255")
        assert client.get("/v1/sessions/seg/variables").json() == before


@pytest.mark.parametrize("axis", [1, -2, 5])
def test_result_ignores_axis(axis):
    """Keras sums the 1-D per-class IoU vector over `axis`, so its `result()` raises for any
    axis but -1 and 0, even with sparse inputs where `axis` plays no part; Tally returns the
    axis=-1 result."""
    batches = sparse_batches((10,), 3, "elements")
    compare("MeanIoU", {"num_classes": 3, "axis": axis}, batches,
            keras_config={"num_classes": 3})
    reference = keras_metric("MeanIoU", {"num_classes": 3, "axis": axis})
    keras_update(reference, batches[0])
    with pytest.raises(ValueError, match="out of bounds"):
        reference.result()


def test_single_id_is_not_broadcast_against_a_batch():
    """Keras broadcasts one predicted id against all labels; Tally calls it a shape mismatch."""
    reference = keras_metric("MeanIoU", {"num_classes": 3})
    keras_update(reference, {"y_true": np.array([0.0, 1, 2]), "y_pred": np.array([1.0])})
    assert np.asarray(reference.variables[0].numpy())[:, 1].tolist() == [1, 1, 1]
    _, metric = REGISTRY.build("MeanIoU", {"num_classes": 3})
    with pytest.raises(InvalidInput, match="as many class ids in y_true as in y_pred"):
        engine.contribution(metric, {"y_true": np.array([0.0, 1, 2]),
                                     "y_pred": np.array([1.0])}, None)


def test_negative_target_class_ids_are_rejected():
    """Keras checks only max(target_class_ids), and a negative id wraps around."""
    data = [{"y_true": [0.0, 1, 2, 2], "y_pred": [0.0, 1, 1, 2]}]
    wrapped, _ = keras_result("IoU", {"num_classes": 3, "target_class_ids": [-1]}, data)
    last, _ = keras_result("IoU", {"num_classes": 3, "target_class_ids": [2]}, data)
    assert wrapped == last
    with pytest.raises(ConfigError, match=r"target_class_ids .* \[0, 3\); got \[-1\]"):
        REGISTRY.build("IoU", {"num_classes": 3, "target_class_ids": [-1]})


# -- config ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("metric", "config"), [
    ("IoU", {"num_classes": 3, "target_class_ids": [0, 2]}),
    ("IoU", {"num_classes": 3, "target_class_ids": (1,), "name": "x", "dtype": "float64",
             "ignore_class": 255, "sparse_y_true": False, "sparse_y_pred": False, "axis": 1}),
    ("MeanIoU", {"num_classes": 2}),
    ("MeanIoU", {"num_classes": 7, "ignore_class": 0, "sparse_y_pred": False, "axis": -2}),
    ("BinaryIoU", {}),
    ("BinaryIoU", {"target_class_ids": (1,), "threshold": 0, "dtype": "int64"}),
    ("OneHotIoU", {"num_classes": 3, "target_class_ids": [2]}),
    ("OneHotIoU", {"num_classes": 3, "target_class_ids": [2], "sparse_y_pred": True}),
    ("OneHotMeanIoU", {"num_classes": 3}),
    ("OneHotMeanIoU", {"num_classes": 4, "ignore_class": -1, "dtype": "float16", "name": ""}),
])
def test_config_matches_keras(metric, config):
    """Same keys and values as Keras, fixed arguments omitted where Keras omits them."""
    _, ours = REGISTRY.build(metric, config)
    theirs = keras_metric(metric, config).get_config()
    assert normalise_config(ours.get_config()) == normalise_config(theirs)
    assert list(ours.get_config()) == list(theirs)  # the same key order, too
    rebuilt = type(ours).from_config(ours.get_config())
    assert rebuilt.get_config() == ours.get_config()


def test_registry_names():
    for name, cls in [("io_u", "IoU"), ("mean_io_u", "MeanIoU"), ("binary_io_u", "BinaryIoU"),
                      ("one_hot_io_u", "OneHotIoU"), ("one_hot_mean_io_u", "OneHotMeanIoU")]:
        assert REGISTRY.resolve(name).cls.__name__ == cls
        assert REGISTRY.resolve(cls).inputs == ["y_true", "y_pred"]
    assert REGISTRY.resolve("IoU").required() == ["num_classes", "target_class_ids"]
    assert REGISTRY.resolve("BinaryIoU").required() == []


BAD_CONFIGS = [
    ("MeanIoU", {"num_classes": 0}, r"num_classes must be an integer in \[1, 2048\]; got 0"),
    ("MeanIoU", {"num_classes": -3}, "got -3"),
    ("MeanIoU", {"num_classes": 2.5}, "got 2.5"),
    ("MeanIoU", {"num_classes": True}, "got True"),
    ("MeanIoU", {"num_classes": "3"}, "got '3'"),
    ("MeanIoU", {"num_classes": None}, "got None"),
    ("MeanIoU", {"num_classes": MAX_NUM_CLASSES + 1}, f"got {MAX_NUM_CLASSES + 1}"),
    ("MeanIoU", {}, r"needs config key\(s\) \['num_classes'\]"),
    ("IoU", {"num_classes": 3}, r"needs config key\(s\) \['target_class_ids'\]"),
    ("IoU", {"num_classes": 3, "target_class_ids": []}, r"non-empty list .*; got \[\]"),
    ("IoU", {"num_classes": 3, "target_class_ids": [3]},
     r"in \[0, 3\); got \[3\], of which \[3\] are not"),
    ("IoU", {"num_classes": 3, "target_class_ids": [0, 5, -1]}, r"of which \[5, -1\] are not"),
    ("IoU", {"num_classes": 3, "target_class_ids": [0.0]}, r"of which \[0.0\] are not"),
    ("IoU", {"num_classes": 3, "target_class_ids": [True]}, r"of which \[True\] are not"),
    ("IoU", {"num_classes": 3, "target_class_ids": 1}, "non-empty list .*; got 1"),
    ("IoU", {"num_classes": 3, "target_class_ids": "0"}, "non-empty list .*; got '0'"),
    ("IoU", {"num_classes": 3, "target_class_ids": None}, "non-empty list .*; got None"),
    ("BinaryIoU", {"target_class_ids": [2]}, r"in \[0, 2\); got \[2\]"),
    ("BinaryIoU", {"threshold": "0.5"}, "threshold must be a finite number; got '0.5'"),
    ("BinaryIoU", {"threshold": float("nan")}, "threshold must be a finite number; got nan"),
    ("BinaryIoU", {"threshold": True}, "threshold must be a finite number; got True"),
    ("BinaryIoU", {"threshold": None}, "threshold must be a finite number; got None"),
    ("BinaryIoU", {"num_classes": 2}, r"unknown config key\(s\) \['num_classes'\]"),
    ("BinaryIoU", {"ignore_class": 0}, r"unknown config key\(s\) \['ignore_class'\]"),
    ("MeanIoU", {"num_classes": 3, "ignore_class": 1.5}, "ignore_class must be an integer"),
    ("MeanIoU", {"num_classes": 3, "ignore_class": "void"}, "ignore_class must be an integer"),
    ("MeanIoU", {"num_classes": 3, "sparse_y_true": 1}, "sparse_y_true must be true or false"),
    ("MeanIoU", {"num_classes": 3, "sparse_y_pred": "no"}, "sparse_y_pred must be true or"),
    ("MeanIoU", {"num_classes": 3, "axis": 1.0}, "axis must be an integer; got 1.0"),
    ("MeanIoU", {"num_classes": 3, "axis": None}, "axis must be an integer; got None"),
    ("MeanIoU", {"num_classes": 3, "dtype": "int8"}, "dtype must be one of int32, int64, float16"),
    ("MeanIoU", {"num_classes": 3, "dtype": "int"}, "got 'int'"),
    ("MeanIoU", {"num_classes": 3, "name": 5}, "name must be a string or null; got 5"),
    ("OneHotIoU", {"num_classes": 3, "target_class_ids": [0], "sparse_y_true": True},
     r"unknown config key\(s\) \['sparse_y_true'\]"),
    ("OneHotMeanIoU", {"num_classes": 3, "target_class_ids": [0]},
     r"unknown config key\(s\) \['target_class_ids'\]"),
]


@pytest.mark.parametrize(("metric", "config", "message"), BAD_CONFIGS)
def test_bad_config(metric, config, message):
    with pytest.raises(ConfigError, match=message):
        REGISTRY.build(metric, config)


# -- bad input -------------------------------------------------------------------------------------

BAD_INPUTS = [
    # (metric, config, y_true, y_pred, sample_weight, message, Keras also raises)
    ("MeanIoU", {}, np.zeros((2, 3)), np.zeros((2, 2)), None,
     r"as many class ids .* got 6 \(y_true shape \[2, 3\]\) and 4", True),
    ("MeanIoU", {}, np.zeros(4), np.zeros(3), None, "as many class ids", True),
    ("MeanIoU", {}, np.zeros((2, 3)), np.zeros((2, 3)), np.ones(2),
     r"sample_weight of shape \[2\] does not fit: MeanIoU takes a scalar or one weight per "
     r"class id of y_true \(6 ids, shape \[2, 3\]\)", True),
    ("MeanIoU", {}, np.zeros((2, 3)), np.zeros((2, 3)), np.ones((2, 1)),
     r"sample_weight of shape \[2, 1\]", True),
    ("MeanIoU", {}, np.zeros(4), np.zeros(4), np.ones(3), r"sample_weight of shape \[3\]", True),
    ("OneHotMeanIoU", {}, np.eye(3)[[0, 1, 2, 0]].reshape(2, 2, 3), np.ones((2, 2, 3)),
     np.ones(2), r"\(4 ids, shape \[2, 2\]\)", True),
    ("MeanIoU", {}, np.float32(1), np.float32(1), None, "y_true with a batch axis", True),
    ("OneHotMeanIoU", {}, np.eye(3)[0], np.ones(3), None,
     r"batch axis besides the class axis -1; got shape \[3\]", True),
    ("OneHotMeanIoU", {}, np.float32(1), np.ones(3), None, "got a scalar", True),
    ("OneHotMeanIoU", {"axis": 2}, np.eye(3), np.eye(3), None,
     r"axis 2 is out of range for y_true of rank 2", True),
    ("MeanIoU", {"sparse_y_pred": False}, np.zeros(2), np.zeros((2, 0)), None,
     "empty axis", True),
    ("MeanIoU", {}, np.array([0, 1.5]), np.zeros(2), None,
     r"y_true to be integer class ids .* got 1 non-integer value\(s\), e.g. \[1.5\]", False),
    ("MeanIoU", {}, np.zeros(2), np.array([np.nan, 1]), None, "y_pred to be integer", False),
    ("BinaryIoU", None, np.array([0, 0.7]), np.zeros(2), None, "y_true to be integer", False),
    ("MeanIoU", {}, np.array(["a", "b"]), np.zeros(2), None, "numeric y_true", True),
]


@pytest.mark.parametrize(("metric", "config", "y_true", "y_pred", "weight", "message",
                          "keras_raises"), BAD_INPUTS)
def test_bad_input(metric, config, y_true, y_pred, weight, message, keras_raises):
    if config is not None:
        config = {"num_classes": 3, **config}
    _, ours = REGISTRY.build(metric, config)
    with pytest.raises(InvalidInput, match=message):
        ours.update_state(y_true, y_pred, sample_weight=weight)
    if y_true.dtype.kind == "f":  # the engine's path (numeric inputs only)
        with pytest.raises(InvalidInput, match=message):
            engine.contribution(ours, {"y_true": y_true, "y_pred": y_pred}, weight)
    if keras_raises:
        reference = keras_metric(metric, config)
        with pytest.raises((ValueError, IndexError, TypeError)):
            reference.update_state(y_true, y_pred, sample_weight=weight)


def test_state_is_untouched_by_a_rejected_batch():
    _, metric = REGISTRY.build("MeanIoU", {"num_classes": 2})
    metric.update_state(np.array([0.0, 1]), np.array([0.0, 1]))
    with pytest.raises(InvalidInput):
        metric.update_state(np.array([0.0, 0.5]), np.array([0.0, 1]))
    assert metric.total_cm.value.tolist() == [[1, 0], [0, 1]]


def test_error_messages_name_the_expected_form():
    with pytest.raises(ConfigError, match=re.escape(
            "target_class_ids must be a non-empty list of integer class ids in [0, 4)")):
        REGISTRY.build("IoU", {"num_classes": 4, "target_class_ids": [4]})
