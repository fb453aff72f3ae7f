"""Keras parity for the F-scores: FBetaScore and F1Score (lazily built per-class state)."""

import numpy as np
import pytest

from app.errors import ConfigError, InvalidInput
from app.metrics import engine
from app.metrics.registry import REGISTRY
from tests.oracle import check_parity, keras_metric

F32 = np.float32
AVERAGES = [None, "micro", "macro", "weighted"]
THRESHOLDS = [None, 0.5, 0.3, 1.0]
# (metric, extra config): F1Score and FBetaScore with a few betas.
SCORES = [("F1Score", {}), ("FBetaScore", {"beta": 2.0}), ("FBetaScore", {"beta": 0.5})]
WEIGHTS = [None, "n", "one"]  # rank 1 only: one weight per row, or one for every row


def make_batches(seed, sizes=(7, 5, 9), num_classes=4, weight=None, soft=False):
    """Multi-label y_true and scores rounded to one decimal (so rows have tied maxima and
    entries equal to the thresholds), with some all-zero and all-negative rows."""
    rng = np.random.default_rng(seed)
    batches = []
    for n in sizes:
        y_true = (rng.uniform(size=(n, num_classes)) if soft
                  else rng.integers(0, 2, size=(n, num_classes)))
        y_pred = np.round(rng.uniform(size=(n, num_classes)), 1)
        if n > 3:
            y_pred[0] = 0.0
            y_pred[1] = -np.abs(y_pred[1]) - 0.1
            y_pred[2, :2] = y_pred[2].max()
        batch = {"y_true": y_true.astype(F32), "y_pred": y_pred.astype(F32)}
        if weight == "n":
            batch["sample_weight"] = rng.uniform(0, 2, size=n).astype(F32)
        elif weight == "one":
            batch["sample_weight"] = np.array([rng.uniform(0.5, 2)], F32)
        batches.append(batch)
    return batches


@pytest.mark.parametrize(("metric", "extra"), SCORES)
@pytest.mark.parametrize("average", AVERAGES)
@pytest.mark.parametrize("threshold", THRESHOLDS)
@pytest.mark.parametrize("weight", WEIGHTS)
def test_parity(metric, extra, average, threshold, weight):
    config = {"average": average, "threshold": threshold, **extra}
    check_parity(metric, config, make_batches(11, weight=weight))


@pytest.mark.parametrize("average", AVERAGES)
def test_soft_labels_one_hot_and_single_class(average):
    check_parity("F1Score", {"average": average}, make_batches(3, weight="n", soft=True))
    rng = np.random.default_rng(4)
    one_hot = [{"y_true": np.eye(3, dtype=F32)[rng.integers(0, 3, size=n)],
                "y_pred": rng.uniform(size=(n, 3)).astype(F32)} for n in (6, 8)]
    check_parity("F1Score", {"average": average}, one_hot)
    check_parity("FBetaScore", {"average": average, "beta": 3.0, "threshold": 0.6},
                 make_batches(5, num_classes=1, weight="n"))


@pytest.mark.parametrize("average", AVERAGES)
def test_dtypes_names_and_negative_weights(average):
    data = make_batches(8, weight="n")
    data[1]["sample_weight"][:2] *= -1
    check_parity("FBetaScore", {"average": average, "beta": 1.5, "dtype": "float64",
                                "name": "custom"}, data)
    # float16 arithmetic in both; one batch, so the state is exactly Keras' own.
    check_parity("F1Score", {"average": average, "dtype": "float16"}, data[:1])


@pytest.mark.parametrize("average", AVERAGES)
def test_broadcasting_and_empty_batches(average):
    """A (N, 1) y_true broadcasts over the classes, a (1,) weight over the rows, and an empty
    first batch builds zero state (result 0 or a zero vector), as in Keras."""
    rng = np.random.default_rng(6)
    data = [
        {"y_true": np.zeros((0, 3), F32), "y_pred": np.zeros((0, 3), F32)},
        {"y_true": rng.integers(0, 2, size=(5, 1)).astype(F32),
         "y_pred": rng.uniform(size=(5, 3)).astype(F32), "sample_weight": np.array([2.0], F32)},
        {"y_true": np.zeros((0, 3), F32), "y_pred": np.zeros((0, 3), F32),
         "sample_weight": np.zeros((0,), F32)},
    ]
    check_parity("F1Score", {"average": average, "threshold": 0.5}, data)


# -- the fact sheet's worked examples (§4, 18-20), with Keras computing the expected values -----

EXAMPLE = {"y_true": [[1.0, 1, 1], [1, 0, 0], [1, 1, 0]],
           "y_pred": [[0.2, 0.6, 0.7], [0.2, 0.6, 0.6], [0.6, 0.8, 0.0]]}


@pytest.mark.parametrize("average", AVERAGES)
def test_worked_example_18_f1_threshold(average):
    check_parity("F1Score", {"average": average, "threshold": 0.5}, [EXAMPLE])


@pytest.mark.parametrize("average", [None, "macro"])
def test_worked_example_19_f1_argmax(average):
    check_parity("F1Score", {"average": average}, [EXAMPLE])


def test_worked_example_20_fbeta():
    check_parity("FBetaScore", {"beta": 2.0, "threshold": 0.5}, [EXAMPLE])


def test_worked_example_18_state():
    _, metric = REGISTRY.build("F1Score", {"average": "macro", "threshold": 0.5})
    delta = engine.contribution(metric, {k: np.asarray(v, F32) for k, v in EXAMPLE.items()},
                                None)
    assert delta.layout == {"num_classes": 3}
    state = {v["name"]: v["value"] for v in engine.variables_json(metric, delta.sums,
                                                                  delta.layout)}
    reference = keras_metric("F1Score", {"average": "macro", "threshold": 0.5})
    reference.update_state(np.asarray(EXAMPLE["y_true"]), np.asarray(EXAMPLE["y_pred"]))
    assert state == {v.name: np.asarray(v).tolist() for v in reference.variables}


def test_argmax_marks_ties_and_skips_zero_rows():
    _, metric = REGISTRY.build("F1Score", None)
    metric.ensure_built(num_classes=3)  # as the engine would on a first batch
    metric.update_state(np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]], F32),
                        np.array([[0.4, 0.4, 0.2], [0, 0, 0], [-0.5, -0.2, -0.9]], F32))
    # Row 0: both tied maxima; row 1: nothing; row 2: its (negative) maximum, class 1.
    assert metric.true_positives.value.tolist() == [1, 0, 0]
    assert metric.false_positives.value.tolist() == [0, 2, 0]
    assert metric.false_negatives.value.tolist() == [1, 1, 0]


# -- lazily built state ------------------------------------------------------------------------


def run(metric, batches):
    """Feed batches through the engine as a session would; return the final layout."""
    layout = None
    for batch in batches:
        arrays = {k: np.asarray(v, F32) for k, v in batch.items() if k != "sample_weight"}
        weight = batch.get("sample_weight")
        layout = engine.contribution(metric, arrays, None if weight is None
                                     else np.asarray(weight, F32), layout).layout
    return layout


@pytest.mark.parametrize("average", [None, "macro", "weighted"])
def test_a_later_batch_of_another_width_is_refused(average):
    first, = make_batches(1, sizes=(5,), num_classes=3)
    other, = make_batches(2, sizes=(5,), num_classes=4)
    _, metric = REGISTRY.build("F1Score", {"average": average})
    layout = run(metric, [first])
    assert layout == {"num_classes": 3}
    assert [v["shape"] for v in engine.describe_variables(metric, layout)] == [[3]] * 4
    arrays = {k: np.asarray(v) for k, v in other.items()}
    with pytest.raises(InvalidInput, match=r"built for \{'num_classes': 3\}.*"
                                           r"\{'num_classes': 4\}"):
        engine.contribution(metric, arrays, None, layout)
    reference = keras_metric("F1Score", {"average": average})
    reference.update_state(first["y_true"], first["y_pred"])
    with pytest.raises(ValueError):  # Keras refuses it too
        reference.update_state(other["y_true"], other["y_pred"])


def test_micro_state_is_scalar_so_widths_may_change():
    """With average='micro' Keras keeps scalar counts and accepts any width later on."""
    data = [*make_batches(1, sizes=(5,), num_classes=3),
            *make_batches(2, sizes=(6,), num_classes=5, weight="n")]
    check_parity("F1Score", {"average": "micro", "threshold": 0.4}, data)
    _, metric = REGISTRY.build("F1Score", {"average": "micro"})
    layout = run(metric, data)
    assert layout == {}
    assert [v["shape"] for v in engine.describe_variables(metric, layout)] == [[]] * 4


def test_result_before_the_first_update_is_null():
    _, metric = REGISTRY.build("FBetaScore", {"beta": 2.0})
    assert engine.result_json(metric, {}, None) is None
    assert engine.describe_variables(metric, None) == []
    with pytest.raises(AttributeError):  # Keras has no variables to read yet
        keras_metric("FBetaScore", {"beta": 2.0}).result()


# -- config and bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(("metric", "config", "message"), [
    ("F1Score", {"average": "samples"}, r"Expected one of: .* Received: average=samples "),
    ("F1Score", {"average": ["macro"]}, "Invalid `average` argument value"),
    ("FBetaScore", {"beta": 2}, r"It should be a Python float. Received: beta=2 of "
                                r"type '<class 'int'>' \(write 2.0, not 2\)"),
    ("FBetaScore", {"beta": 0.0}, "It should be > 0. Received: beta=0.0"),
    ("FBetaScore", {"beta": -1.5}, "It should be > 0. Received: beta=-1.5"),
    ("FBetaScore", {"beta": True}, "Invalid `beta` argument value. It should be a Python float"),
    ("FBetaScore", {"beta": "2.0"}, "Received: beta=2.0 of type '<class 'str'>'"),
    ("F1Score", {"threshold": 1}, r"It should be a Python float. Received: threshold=1 of type"),
    ("F1Score", {"threshold": 0.0}, r"verify 0 < threshold <= 1. Received: threshold=0.0"),
    ("FBetaScore", {"threshold": 1.5}, r"Received: threshold=1.5"),
    ("F1Score", {"beta": 2.0}, "unknown config key"),
    ("F1Score", {"dtype": "int8"}, "dtype must be one of"),
])
def test_bad_config(metric, config, message):
    with pytest.raises(ConfigError, match=message):
        REGISTRY.build(metric, config)
    if "unknown config key" not in message and "dtype" not in config:
        with pytest.raises((ValueError, TypeError)):  # Keras refuses the same config
            keras_metric(metric, config)


def test_nan_settings_are_refused_though_keras_takes_them():
    for config in ({"beta": float("nan")}, {"threshold": float("nan")}):
        with pytest.raises(ConfigError):
            REGISTRY.build("FBetaScore", config)


def test_config_round_trip():
    _, metric = REGISTRY.build("FBetaScore", {"average": "weighted", "beta": 0.5,
                                              "threshold": 0.25})
    restored = type(metric).from_config(metric.get_config())
    assert restored.get_config() == metric.get_config()
    _, f1 = REGISTRY.build("F1Score", {"average": "micro"})
    assert f1.get_config() == {"name": "f1_score", "dtype": "float32", "average": "micro",
                               "threshold": None}


BAD_INPUTS = [
    # (config, y_true shape, y_pred shape, weight shape, message, keras raises)
    ({}, (6,), (6,), None, r"expects 2D inputs with shape .* y_true \[6\]", True),
    ({}, (2, 3, 4), (2, 3, 4), None, "expects 2D inputs with shape", True),
    ({}, (6, 1), (6,), None, "expects 2D inputs with shape", True),
    ({}, (6, 3), (6, 3), (), r"rank-1 sample_weight .* got shape \[\]", True),
    ({}, (6, 3), (6, 3), (6, 1), r"rank-1 sample_weight .* got shape \[6, 1\]", True),
    ({}, (6, 3), (6, 3), (6, 3), r"rank-1 sample_weight", True),
    ({}, (6, 3), (6, 3), (5,), r"sample_weight \[5\] does not match the batch's 6 rows", True),
    ({}, (6, 3), (5, 3), None, "broadcast-compatible", True),
    ({}, (6, 4), (6, 3), None, "broadcast-compatible", True),
    ({}, (6, 3), (6, 1), None, r"classes from y_pred \(1\); y_true \[6, 3\] has 3 columns",
     True),
    ({}, (6, 0), (6, 0), None, "threshold=null takes each row's maximum", True),
]


@pytest.mark.parametrize(("config", "true_shape", "pred_shape", "weight_shape", "message",
                          "keras_raises"), BAD_INPUTS)
def test_bad_input(config, true_shape, pred_shape, weight_shape, message, keras_raises):
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, size=true_shape).astype(F32)
    y_pred = rng.uniform(size=pred_shape).astype(F32)
    weight = None if weight_shape is None else np.ones(weight_shape, F32)
    _, metric = REGISTRY.build("F1Score", config)
    with pytest.raises(InvalidInput, match=message):
        engine.contribution(metric, {"y_true": y_true, "y_pred": y_pred}, weight)
    assert not metric.built
    if keras_raises:
        with pytest.raises((ValueError, IndexError)):
            keras_metric("F1Score", config).update_state(y_true, y_pred, sample_weight=weight)


def test_micro_refuses_what_keras_only_takes_by_accident():
    """Keras checks the rank on the first batch only, and micro sums everything, so a later
    1-D batch or an (N, 1) weight (an N x N outer product) slips through there. We refuse."""
    first, = make_batches(1, sizes=(5,), num_classes=3)
    _, metric = REGISTRY.build("F1Score", {"average": "micro"})
    layout = run(metric, [first])
    with pytest.raises(InvalidInput, match="expects 2D inputs with shape"):
        engine.contribution(metric, {"y_true": np.ones(4, F32), "y_pred": np.ones(4, F32)},
                            None, layout)
    with pytest.raises(InvalidInput, match="rank-1 sample_weight"):
        engine.contribution(metric, {"y_true": first["y_true"], "y_pred": first["y_pred"]},
                            np.ones((5, 1), F32), layout)
