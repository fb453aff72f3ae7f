"""Keras parity for AUC and the `*At*` family (SensitivityAtSpecificity,
SpecificityAtSensitivity, PrecisionAtRecall, RecallAtPrecision), plus the lazily shaped
multi-label AUC, the sparse (cumulative) storage of their counts, and config validation.

Sample weights are multiples of 1/4: their float32 sums are exact in any order, so Keras'
float32 state and ours agree to the bit and the `*At*` feasibility tests (`ratio >= target`)
cannot flip on rounding noise. Predictions are random floats (almost surely off the threshold
grid) unless a test puts them on it on purpose; `confusion_utils` reproduces Keras' float32
bucket rounding there anyway.
"""

import json
import math

import numpy as np
import pytest

from app.errors import ConfigError, InvalidInput
from app.metrics import curves, engine
from app.metrics.registry import REGISTRY
from tests.batches import ThresholdedBatches
from tests.oracle import check_parity, keras, keras_metric, keras_variables, normalise_config

# Keras' own divide_no_nan warns on 0/0 before masking it.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


AT_METRICS = {
    "SensitivityAtSpecificity": "specificity",
    "SpecificityAtSensitivity": "sensitivity",
    "PrecisionAtRecall": "recall",
    "RecallAtPrecision": "precision",
}
LABELS = (0.0, 1.0, 0.0, 2.0, -1.0, 0.3, 0.0)  # any non-zero label is positive

# (y shape, sample_weight shape or None): the weight shapes Keras accepts.
WEIGHTINGS_1D = [((9,), None), ((9,), (9,)), ((9,), ())]
WEIGHTINGS_2D = [((6, 3), None), ((6, 3), (6,)), ((6, 3), (6, 3)), ((6, 3), (6, 1))]


_random = ThresholdedBatches(20240611, LABELS)
rng = _random.rng
dyadic, make_batch, batches = _random.dyadic, _random.make_batch, _random.batches


def tally(name, config):
    return REGISTRY.build(name, config)[1]


def run(name, config, data):
    """Our result after the batches, through the engine as the service computes it."""
    metric = tally(name, config)
    state: dict[str, float] = {}
    layout = None
    for batch in data:
        inputs = {k: np.asarray(v, np.float32) for k, v in batch.items() if k != "sample_weight"}
        weight = batch.get("sample_weight")
        delta = engine.contribution(metric, inputs, weight, layout)
        layout = delta.layout
        for key, value in delta.sums.items():
            state[key] = state.get(key, 0.0) + value
    return engine.result_json(metric, state, layout)


# The fact sheet's 7-point binary example.
Y7 = np.array([0, 0, 1, 1, 1, 0, 1], np.float32)
P7 = np.array([0.1, 0.4, 0.35, 0.8, 0.9, 0.65, 0.2], np.float32)
EXAMPLE7 = [{"y_true": Y7, "y_pred": P7}]
# The fact sheet's multi-label example.
Y5 = np.array([[0, 1], [1, 0], [1, 1], [0, 0]], np.float32)
P5 = np.array([[0.2, 0.9], [0.6, 0.3], [0.7, 0.6], [0.1, 0.8]], np.float32)


# -- AUC parity on random data -----------------------------------------------------------------

AUC_CONFIGS = [
    {},
    {"num_thresholds": 2},
    {"num_thresholds": 3},
    {"num_thresholds": 11, "curve": "PR"},
    *({"num_thresholds": 7, "curve": c, "summation_method": s}
      for c in ("ROC", "PR", "PRGAIN") for s in ("interpolation", "majoring", "minoring")),
    {"curve": "pr"},
    {"curve": "roc", "summation_method": "Minoring"},
    {"curve": "prgain", "summation_method": "Majoring"},
    {"curve": "PRGAIN", "summation_method": "Interpolation"},
    # Explicit thresholds: evenly spaced once wrapped in [0, 1] (bucket path) ...
    {"thresholds": [0.5]},
    {"thresholds": [2 / 3, 1 / 3]},
    {"thresholds": np.linspace(0, 1, 12)[1:-1].tolist(), "curve": "PR"},
    # ... and not (generic path: strict `p > t`, no clipping).
    {"thresholds": [0.1, 0.35, 0.8, 0.9]},
    {"thresholds": [0.9, 0.1, 0.35], "curve": "PR"},
    {"thresholds": [0.2, 0.6], "curve": "PRGAIN", "summation_method": "minoring"},
    {"thresholds": [0.3, 0.3, 0.7], "summation_method": "majoring"},
    {"thresholds": [0.0, 1.0]},
    {"thresholds": []},
    {"from_logits": True},
    {"from_logits": True, "thresholds": [0.4, 0.5, 0.65], "curve": "PR"},
    {"dtype": "float64", "name": "my_auc"},
]


@pytest.mark.parametrize("config", AUC_CONFIGS)
@pytest.mark.parametrize(("shape", "weight_shape"), WEIGHTINGS_1D[:2] + WEIGHTINGS_2D[:3])
def test_auc_parity(config, shape, weight_shape):
    check_parity("AUC", config, batches(shape, weight_shape))


@pytest.mark.parametrize("config", [{}, {"curve": "PR"}, {"curve": "PRGAIN"},
                                    {"thresholds": [0.3, 0.55]}])
def test_auc_logits_parity(config):
    config = {**config, "from_logits": True}
    check_parity("AUC", config, batches((6, 3), (6,), low=-5, high=5))
    check_parity("AUC", config, batches((9,), None, low=-40, high=40))  # saturated sigmoid


def test_auc_from_logits_equals_probabilities():
    """Fact sheet 3.9: logit(p) with from_logits=True gives the value of p without it."""
    logits = np.log(P7 / (1 - P7)).astype(np.float32)
    with_logits = run("AUC", {"from_logits": True}, [{"y_true": Y7, "y_pred": logits}])
    assert with_logits == pytest.approx(run("AUC", {}, EXAMPLE7), abs=1e-7)
    assert with_logits == pytest.approx(0.6666667, abs=1e-6)


def test_auc_negative_weights_and_rank_alignment():
    data = batches((6, 3), (6, 3))
    data[1]["sample_weight"] = dyadic((6, 3), low=-1)
    check_parity("AUC", {"num_thresholds": 9}, data)
    check_parity("AUC", {"thresholds": [0.2, 0.9], "curve": "PR"}, data)
    aligned = [{"y_true": rng.choice(LABELS, size=(7, 1)).astype(np.float32),
                "y_pred": rng.uniform(size=(7,)).astype(np.float32),
                "sample_weight": dyadic((7,))} for _ in range(2)]
    check_parity("AUC", {}, aligned)


@pytest.mark.parametrize("thresholds", [None, [0.25, 0.5, 0.75], [0.1, 0.35, 0.8]])
def test_auc_empty_batches(thresholds):
    empty = {"y_true": np.zeros((0, 3), np.float32), "y_pred": np.zeros((0, 3), np.float32)}
    data = [empty, make_batch((6, 3)), empty]
    config = {} if thresholds is None else {"thresholds": thresholds}
    check_parity("AUC", config, data)
    check_parity("AUC", {**config, "multi_label": True}, data)  # built by the empty batch


@pytest.mark.parametrize(("curve", "summation", "positives_only"), [
    ("ROC", "interpolation", 0.0), ("ROC", "majoring", 0.0), ("ROC", "minoring", 0.0),
    ("PR", "interpolation", 1.0), ("PR", "majoring", 1.0), ("PR", "minoring", 0.75),
    ("PRGAIN", "interpolation", 1.0), ("PRGAIN", "majoring", 1.0), ("PRGAIN", "minoring", 1.0),
])
def test_auc_no_data_and_one_class(curve, summation, positives_only):
    """No data gives 0; one class gives 0 for ROC, but positives only do not for PR/PRGAIN."""
    config = {"curve": curve, "summation_method": summation, "num_thresholds": 5}
    assert run("AUC", config, []) == 0.0
    p = np.array([0.1, 0.4, 0.6, 0.9], np.float32)
    ones = [{"y_true": np.ones(4, np.float32), "y_pred": p}]
    check_parity("AUC", config, ones)
    assert run("AUC", config, ones) == pytest.approx(positives_only, abs=1e-7)
    zeros = [{"y_true": np.zeros(4, np.float32), "y_pred": p}]
    check_parity("AUC", config, zeros)
    assert run("AUC", config, zeros) == 0.0


# -- label_weights and multi_label -----------------------------------------------------------------

LABEL_WEIGHT_CONFIGS = [
    {"label_weights": [3, 1, 0.5]},
    {"label_weights": [0, 2, 1], "curve": "PR"},
    {"label_weights": [1.5, 0.25, 2], "thresholds": [0.2, 0.7], "curve": "PRGAIN"},
    {"label_weights": [0.1, 1, 3], "dtype": "float16", "summation_method": "minoring"},
    {"label_weights": 2.0},
]


@pytest.mark.parametrize("config", LABEL_WEIGHT_CONFIGS)
@pytest.mark.parametrize("weight_shape", [None, (6,), (6, 3)])
def test_auc_label_weights_parity(config, weight_shape):
    check_parity("AUC", config, batches((6, 3), weight_shape))


MULTI_LABEL_CONFIGS = [
    {"multi_label": True},
    {"multi_label": True, "num_labels": 3},
    {"multi_label": True, "num_labels": 0},  # 0 means "not given", as in Keras: lazy
    {"multi_label": True, "label_weights": [3, 1, 0.5]},
    {"multi_label": True, "num_labels": 3, "label_weights": [3, 1, 0.5], "curve": "PR"},
    {"multi_label": True, "label_weights": [0, 0, 0]},  # divide-no-nan: 0
    {"multi_label": True, "label_weights": 2.0},  # Keras: the *sum* of the label AUCs
    {"multi_label": True, "curve": "PRGAIN", "summation_method": "majoring"},
    {"multi_label": True, "curve": "PR", "summation_method": "minoring", "num_thresholds": 11},
    {"multi_label": True, "thresholds": [0.1, 0.35, 0.8], "curve": "PR"},
    {"multi_label": True, "thresholds": [0.25, 0.5, 0.75], "label_weights": [1, 2, 3]},
    {"multi_label": True, "from_logits": True, "num_labels": 3},
]


@pytest.mark.parametrize("config", MULTI_LABEL_CONFIGS)
@pytest.mark.parametrize("weight_shape", [None, (6,), (6, 3), ()])
def test_auc_multi_label_parity(config, weight_shape):
    low, high = (-3, 3) if config.get("from_logits") else (-0.3, 1.3)
    check_parity("AUC", config, batches((6, 3), weight_shape, low=low, high=high))


def test_multi_label_single_column():
    """y_pred (N, 1) with y_true (N,): one label, as in Keras."""
    data = [{"y_true": rng.choice(LABELS, size=(5,)).astype(np.float32),
             "y_pred": rng.uniform(size=(5, 1)).astype(np.float32)} for _ in range(2)]
    check_parity("AUC", {"multi_label": True}, data)


# -- the fact sheet's worked examples (§4, examples 4a-6), values from the Keras oracle ---------


@pytest.mark.parametrize(("config", "expected"), [
    ({}, 0.6666667),  # 4a
    ({"curve": "PR"}, 0.7972674),  # 4b
    ({"num_thresholds": 5, "curve": "PR"}, 0.8029561),  # 4c
    ({"num_thresholds": 5}, 0.6666667),  # 4d
    ({"num_thresholds": 5, "summation_method": "majoring"}, 0.75),
    ({"num_thresholds": 5, "summation_method": "minoring"}, 0.5833333),
    ({"num_thresholds": 5, "curve": "PR", "summation_method": "majoring"}, 0.8166667),
    ({"num_thresholds": 5, "curve": "PR", "summation_method": "minoring"}, 0.2928572),
    ({"num_thresholds": 5, "curve": "PRGAIN"}, 0.1481481),
    ({"num_thresholds": 5, "curve": "PRGAIN", "summation_method": "majoring"}, 0.2345679),
    ({"num_thresholds": 5, "curve": "PRGAIN", "summation_method": "minoring"}, 0.06172835),
])
def test_fact_sheet_auc_examples(config, expected):
    check_parity("AUC", config, EXAMPLE7)
    assert run("AUC", config, EXAMPLE7) == pytest.approx(expected, abs=1e-6)


def test_fact_sheet_example_4c_state():
    metric = tally("AUC", {"num_thresholds": 5, "curve": "PR"})
    metric.update_state(Y7, P7)
    assert metric.true_positives.value.tolist() == [4, 3, 2, 2, 0]
    assert metric.false_positives.value.tolist() == [3, 2, 1, 0, 0]
    assert metric.true_negatives.value.tolist() == [0, 1, 2, 3, 3]
    assert metric.false_negatives.value.tolist() == [0, 1, 2, 2, 4]
    assert metric.thresholds == pytest.approx([-1e-7, 0.25, 0.5, 0.75, 1 + 1e-7], abs=0)


@pytest.mark.parametrize(("config", "expected"), [
    ({"num_thresholds": 5, "multi_label": True, "label_weights": [3, 1]}, 0.90625),  # 5
    ({"num_thresholds": 5, "multi_label": True}, 0.8125),
    ({"num_thresholds": 5, "multi_label": True, "num_labels": 2}, 0.8125),
    ({"num_thresholds": 5, "label_weights": [3, 1]}, 0.8828125),  # fact sheet 3.8
    ({"num_thresholds": 5}, 0.78125),
])
def test_fact_sheet_multi_label_examples(config, expected):
    data = [{"y_true": Y5, "y_pred": P5}]
    check_parity("AUC", config, data)
    assert run("AUC", config, data) == pytest.approx(expected, abs=1e-6)


def test_fact_sheet_label_weighted_counts():
    metric = tally("AUC", {"num_thresholds": 5, "label_weights": [3, 1]})
    metric.update_state(Y5, P5)
    assert metric.true_positives.value.tolist() == [8, 8, 8, 1, 0]


@pytest.mark.parametrize(("name", "target", "expected"), [
    ("SensitivityAtSpecificity", 0.5, 0.5),  # 6
    ("SpecificityAtSensitivity", 0.8, 0.3333333),
    ("PrecisionAtRecall", 0.8, 0.6666667),
    ("RecallAtPrecision", 0.8, 0.5),
])
def test_fact_sheet_at_examples(name, target, expected):
    config = {AT_METRICS[name]: target}
    check_parity(name, config, EXAMPLE7)
    assert run(name, config, EXAMPLE7) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(("name", "target", "y", "p", "weights", "expected"), [
    ("SensitivityAtSpecificity", 0.5, [0, 0, 0, 1, 1], [0, 0.3, 0.8, 0.3, 0.8], None, 0.5),
    ("SensitivityAtSpecificity", 0.5, [0, 0, 0, 1, 1], [0, 0.3, 0.8, 0.3, 0.8],
     [1, 1, 2, 2, 1], 1 / 3),
    ("SpecificityAtSensitivity", 0.5, [0, 0, 0, 1, 1], [0, 0.3, 0.8, 0.3, 0.8], None, 2 / 3),
    ("SpecificityAtSensitivity", 0.5, [0, 0, 0, 1, 1], [0, 0.3, 0.8, 0.3, 0.8],
     [1, 1, 2, 2, 2], 0.5),
    ("PrecisionAtRecall", 0.5, [0, 0, 0, 1, 1], [0, 0.3, 0.8, 0.3, 0.8], None, 0.5),
    ("PrecisionAtRecall", 0.5, [0, 0, 0, 1, 1], [0, 0.3, 0.8, 0.3, 0.8],
     [2, 2, 2, 1, 1], 1 / 3),
    ("RecallAtPrecision", 0.8, [0, 0, 1, 1], [0, 0.5, 0.3, 0.9], None, 0.5),
    ("RecallAtPrecision", 0.8, [0, 0, 1, 1], [0, 0.5, 0.3, 0.9], [1, 0, 0, 1], 1.0),
])
def test_keras_docstring_examples(name, target, y, p, weights, expected):
    batch = {"y_true": np.asarray(y, np.float32), "y_pred": np.asarray(p, np.float32)}
    if weights is not None:
        batch["sample_weight"] = np.asarray(weights, np.float32)
    check_parity(name, {AT_METRICS[name]: target}, [batch])
    assert run(name, {AT_METRICS[name]: target}, [batch]) == pytest.approx(expected, abs=1e-6)


# -- the *At* family on random data --------------------------------------------------------------

AT_CONFIGS = [
    {"target": 0.5},
    {"target": 0.8, "num_thresholds": 1},  # thresholds [0.5], generic path
    {"target": 0.3, "num_thresholds": 2},  # [0, 1], yet Keras' bucket path (clipping)
    {"target": 0.6, "num_thresholds": 3},
    {"target": 0.0},
    {"target": 1.0, "num_thresholds": 21},
    {"target": 0.75, "num_thresholds": 17, "dtype": "float64"},
]
AT_CLASS_ID_CONFIGS = [
    {"target": 0.7, "class_id": 1},
    {"target": 0.4, "class_id": 2, "num_thresholds": 1},
    {"target": 0.5, "class_id": 0, "num_thresholds": 2},
]


def at_config(name, config):
    config = dict(config)
    config[AT_METRICS[name]] = config.pop("target")
    return config


@pytest.mark.parametrize("name", AT_METRICS)
@pytest.mark.parametrize("config", AT_CONFIGS)
@pytest.mark.parametrize(("shape", "weight_shape"), WEIGHTINGS_1D + WEIGHTINGS_2D)
def test_at_parity(name, config, shape, weight_shape):
    check_parity(name, at_config(name, config), batches(shape, weight_shape))


@pytest.mark.parametrize("name", AT_METRICS)
@pytest.mark.parametrize("config", AT_CLASS_ID_CONFIGS)
@pytest.mark.parametrize(("shape", "weight_shape"), [
    ((6, 3), None), ((6, 3), (6,)), ((6, 3), (6, 1)), ((6, 3), ()),
    ((3, 2, 3), (3, 2)), ((3, 2, 3), None),
])
def test_at_class_id_parity(name, config, shape, weight_shape):
    check_parity(name, at_config(name, config), batches(shape, weight_shape))


def test_class_id_refuses_element_weights():
    """Keras does not slice per-element weights with `class_id`; it fails, and so do we."""
    batch = make_batch((6, 3), (6, 3))
    config = {"recall": 0.5, "class_id": 1}
    with pytest.raises(ValueError):
        keras_metric("PrecisionAtRecall", config).update_state(**batch)
    with pytest.raises(InvalidInput, match="sample_weight of shape"):
        engine.contribution(tally("PrecisionAtRecall", config),
                            {"y_true": batch["y_true"], "y_pred": batch["y_pred"]},
                            batch["sample_weight"])


@pytest.mark.parametrize("name", AT_METRICS)
def test_at_coarse_labels_hit_targets_exactly(name):
    """With 0/1 labels and few samples the ratios often equal the target exactly, where the
    feasibility test is `>=`; a target a hair above a reachable ratio is still reached in
    float32 (Keras compares the Python float in float32)."""
    y = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1], np.float32)
    p = np.array([0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.85, 0.3, 0.6, 0.9], np.float32)
    data = [{"y_true": y, "y_pred": p}, {"y_true": y[::-1].copy(), "y_pred": p}]
    for target in (0.5, 2 / 3, 0.7, 0.7 + 1e-10, 0.7 + 1e-7, 0.75, 0.8, 6 / 7):
        check_parity(name, {AT_METRICS[name]: target, "num_thresholds": 11}, data)


def test_at_float32_target_comparison():
    """Specificity 7/10 meets a target of 0.7 + 1e-10 in float32 (Keras), not in float64."""
    y = np.array([0] * 10 + [1, 1], np.float32)
    p = np.array([0.05] * 7 + [0.95] * 3 + [0.9, 0.98], np.float32)
    config = {"specificity": 0.7 + 1e-10, "num_thresholds": 11}
    check_parity("SensitivityAtSpecificity", config, [{"y_true": y, "y_pred": p}])
    assert run("SensitivityAtSpecificity", config, [{"y_true": y, "y_pred": p}]) == 1.0


def test_at_thresholds():
    assert tally("PrecisionAtRecall", {"recall": 0.5, "num_thresholds": 1}).thresholds == [0.5]
    assert tally("PrecisionAtRecall", {"recall": 0.5, "num_thresholds": 2}).thresholds == [0, 1]
    for n in (3, 7, 200):
        ours = tally("RecallAtPrecision", {"precision": 0.5, "num_thresholds": n}).thresholds
        theirs = keras_metric("RecallAtPrecision", {"precision": 0.5, "num_thresholds": n})
        assert ours == theirs.thresholds


# -- predictions on the threshold grid ---------------------------------------------------------


def grid_predictions(n):
    t = np.linspace(0, 1, n).astype(np.float32)
    up, down = np.nextafter(t, np.float32(2)), np.nextafter(t, np.float32(-1))
    return np.concatenate([t, up, down, [-0.5, 1.5, -1e-45, 1e-30]]).astype(np.float32)


@pytest.mark.parametrize(("name", "config"), [
    ("AUC", {}),
    ("AUC", {"num_thresholds": 11, "curve": "PR"}),
    ("AUC", {"thresholds": [0.2, 0.4, 0.6, 0.8]}),
    ("AUC", {"thresholds": [0.2, 0.4, 0.6, 0.85]}),
    ("SensitivityAtSpecificity", {"specificity": 0.5}),
    ("PrecisionAtRecall", {"recall": 0.4, "num_thresholds": 11}),
    ("RecallAtPrecision", {"precision": 0.6, "num_thresholds": 2}),
])
def test_grid_point_rounding(name, config):
    n = config.get("num_thresholds", 200 if "thresholds" not in config else 6)
    p = grid_predictions(n)
    data = [
        {"y_true": (np.arange(p.size) % 3 == 0).astype(np.float32), "y_pred": p},
        {"y_true": (np.arange(p.size) % 2 == 0).astype(np.float32), "y_pred": p[::-1].copy(),
         "sample_weight": dyadic(p.shape)},
    ]
    check_parity(name, config, data)


# -- storage: cumulative counts travel as per-bucket differences ----------------------------------


@pytest.mark.parametrize("config", [{"num_thresholds": 1000}, {"num_thresholds": 1000,
                                                                "curve": "PR"}])
def test_few_distinct_predictions_write_few_fields(config):
    values = np.array([0.1234, 0.377, 0.5012, 0.8888, 0.9601], np.float32)
    data = [{"y_true": rng.choice(LABELS, size=60).astype(np.float32),
             "y_pred": rng.choice(values, size=60),
             "sample_weight": dyadic(60)} for _ in range(3)]
    metric = tally("AUC", config)
    for batch in data:
        delta = engine.contribution(metric, {"y_true": batch["y_true"],
                                             "y_pred": batch["y_pred"]},
                                    batch["sample_weight"])
        assert len(delta.sums) <= 4 * (len(values) + 1)  # not 4 x 1000
        assert not delta.maxes and not delta.mins
    check_parity("AUC", config, data)


def test_multi_label_and_at_fields_are_sparse_too():
    values = np.array([0.21, 0.43, 0.77], np.float32)
    batch = {"y_true": rng.choice(LABELS, size=(30, 2)).astype(np.float32),
             "y_pred": rng.choice(values, size=(30, 2))}
    delta = engine.contribution(tally("AUC", {"multi_label": True}), batch, None)
    assert delta.layout == {"num_labels": 2}
    assert len(delta.sums) <= 4 * 2 * (len(values) + 1)
    check_parity("AUC", {"multi_label": True}, [batch])
    at = tally("SensitivityAtSpecificity", {"specificity": 0.5, "num_thresholds": 500})
    assert len(engine.contribution(at, batch, None).sums) <= 4 * (len(values) + 1)
    check_parity("SensitivityAtSpecificity", {"specificity": 0.5, "num_thresholds": 500},
                 [batch])


@pytest.mark.parametrize(("name", "config", "shape"), [
    ("AUC", {"num_thresholds": 13}, (6, 3)),
    ("AUC", {"multi_label": True, "curve": "PR"}, (6, 3)),
    ("AUC", {"thresholds": [0.3, 0.1, 0.75]}, (6, 3)),
    ("RecallAtPrecision", {"precision": 0.6, "num_thresholds": 9}, (8,)),
])
def test_merge_keras_variables(name, config, shape):
    """Variables merged from Keras (as `merge_state` takes them) give Keras' result."""
    reference = keras_metric(name, config)
    for batch in batches(shape, shape[:1]):
        reference.update_state(**batch)
    metric = tally(name, config)
    layout = {"num_labels": shape[1]} if config.get("multi_label") else None
    delta = engine.merge_contribution(metric, dict(keras_variables(reference)), layout)
    result = engine.result_json(metric, delta.sums, layout)
    expected = float(keras.ops.convert_to_numpy(reference.result()))
    assert result == pytest.approx(expected, rel=1e-6, abs=1e-7)


# -- lazily shaped multi-label AUC ---------------------------------------------------------------


def test_lazy_only_for_multi_label_without_num_labels():
    assert curves.AUC.lazy is False
    assert tally("AUC", {}).lazy is False and tally("AUC", {}).built
    eager = tally("AUC", {"multi_label": True, "num_labels": 4})
    assert eager.lazy is False and eager.built
    assert [v.shape for v in eager.variables] == [(200, 4)] * 4
    lazy = tally("AUC", {"multi_label": True})
    assert lazy.lazy is True and not lazy.built and lazy.variables == []
    assert tally("AUC", {"multi_label": True, "num_labels": 0}).lazy is True
    assert all(v.cumulative for v in eager.variables)


def test_lazy_multi_label_layout_and_shape_mismatch():
    metric = tally("AUC", {"multi_label": True, "num_thresholds": 7})
    assert engine.result_json(metric, {}, None) is None  # Keras raises before the first update
    assert engine.variables_json(metric, {}, None) == []
    assert engine.describe_variables(metric, None) == []

    first = make_batch((5, 3))
    delta = engine.contribution(metric, first, None, None)
    assert delta.layout == {"num_labels": 3}
    assert [v["shape"] for v in engine.describe_variables(metric, delta.layout)] == [[7, 3]] * 4
    assert [v["name"] for v in engine.describe_variables(metric, delta.layout)] == [
        "true_positives", "false_positives", "true_negatives", "false_negatives"]

    engine.contribution(metric, make_batch((4, 3)), None, delta.layout)  # same width: fine
    for other in (make_batch((5, 2)), make_batch((5, 4)), make_batch((5,)),
                  make_batch((5, 3, 1))):
        with pytest.raises(InvalidInput):
            engine.contribution(metric, other, None, delta.layout)
    with pytest.raises(InvalidInput, match=r"built for \{'num_labels': 3\}"):
        engine.contribution(metric, make_batch((5, 2)), None, delta.layout)

    # A fresh session's first batch must be (num_samples, num_labels).
    fresh = tally("AUC", {"multi_label": True})
    with pytest.raises(InvalidInput, match="shape"):
        engine.contribution(fresh, make_batch((5,)), None, None)
    with pytest.raises(InvalidInput, match="shape"):
        engine.contribution(fresh, make_batch((2, 5, 3)), None, None)
    with pytest.raises(InvalidInput, match="at least one label"):
        engine.contribution(fresh, make_batch((5, 0)), None, None)
    assert not fresh.built


def test_eager_multi_label_refuses_another_width():
    """Keras would broadcast a one-column batch into every label's counts; we refuse."""
    metric = tally("AUC", {"multi_label": True, "num_labels": 3})
    engine.contribution(metric, make_batch((4, 3)), None)
    for other in ((4, 1), (4, 2), (4,)):
        with pytest.raises(InvalidInput):
            engine.contribution(metric, make_batch(other), None)


def test_lazy_label_weights_must_fit_the_first_batch():
    metric = tally("AUC", {"multi_label": True, "label_weights": [1, 2]})
    with pytest.raises(InvalidInput, match="label_weights"):
        engine.contribution(metric, make_batch((5, 3)), None)
    assert engine.contribution(metric, make_batch((5, 2)), None).layout == {"num_labels": 2}


# -- inputs a batch cannot have ---------------------------------------------------------------


@pytest.mark.parametrize(("name", "config", "batch", "match"), [
    ("AUC", {"label_weights": [1, 2, 3]}, make_batch((5,)), "label_weights"),
    ("AUC", {"label_weights": [1, 2, 3]}, make_batch((5, 2)), "label_weights"),
    ("AUC", {"multi_label": True, "num_labels": 2}, make_batch((3, 2, 2)), "multi_label"),
    ("AUC", {}, make_batch((5,), (5, 1)), "sample_weight"),
    ("AUC", {}, {"y_true": np.ones(4, np.float32), "y_pred": np.ones(5, np.float32)},
     "same shape"),
    ("SensitivityAtSpecificity", {"specificity": 0.5, "class_id": 3}, make_batch((4, 3)),
     "class_id=3"),
    ("PrecisionAtRecall", {"recall": 0.5, "class_id": 0}, make_batch((4,)), "class_id=0"),
])
def test_bad_input(name, config, batch, match):
    weight = batch.get("sample_weight")
    inputs = {k: v for k, v in batch.items() if k != "sample_weight"}
    with pytest.raises(InvalidInput, match=match):
        engine.contribution(tally(name, config), inputs, weight)


# -- config ---------------------------------------------------------------------------------------


def test_auc_config():
    default = tally("AUC", {}).get_config()
    assert "thresholds" not in default
    assert default == {"name": "auc", "dtype": "float32", "num_thresholds": 200, "curve": "ROC",
                       "summation_method": "interpolation", "multi_label": False,
                       "num_labels": None, "label_weights": None, "from_logits": False}
    config = {"thresholds": [0.7, 0.2, 1, 0], "curve": "prgain", "summation_method": "Majoring",
              "label_weights": [3, 1, 0.1], "from_logits": True}
    ours = tally("AUC", config)
    theirs = keras_metric("AUC", config)
    assert normalise_config(ours.get_config()) == normalise_config(theirs.get_config())
    assert ours.get_config()["thresholds"] == [0.0, 0.2, 0.7, 1.0]
    assert ours.get_config()["num_thresholds"] == 6
    assert ours.get_config()["label_weights"] == np.float32([3, 1, 0.1]).tolist()
    assert ours.thresholds == pytest.approx(theirs.thresholds, abs=0)
    json.dumps(ours.get_config())  # JSON as it is
    again = curves.AUC.from_config(ours.get_config())
    assert again.get_config() == ours.get_config()


@pytest.mark.parametrize("name", AT_METRICS)
def test_at_config(name):
    config = {AT_METRICS[name]: 0.25, "num_thresholds": 7, "class_id": 2, "name": "x"}
    ours = tally(name, config).get_config()
    assert ours == {"name": "x", "dtype": "float32", "class_id": 2, "num_thresholds": 7,
                    AT_METRICS[name]: 0.25}
    assert ours == normalise_config(keras_metric(name, config).get_config())
    assert type(REGISTRY.resolve(name).cls.from_config(ours)).__name__ == name


def keras_rejects(name, config):
    try:
        keras_metric(name, config)
    except (ValueError, TypeError):
        return True
    return False


# (metric, config, message pattern, whether Keras also rejects it)
BAD_CONFIGS = [
    ("AUC", {"num_thresholds": 1},
     r"Argument `num_thresholds` must be an integer > 1. Received: num_thresholds=1", True),
    ("AUC", {"num_thresholds": 10001}, r"\[2, 10000\]; got 10001", False),
    ("AUC", {"num_thresholds": 20.0}, "num_thresholds", True),
    ("AUC", {"num_thresholds": True}, "num_thresholds", False),
    ("AUC", {"thresholds": [0.5] * 9999}, "at most 9998 values", False),
    ("AUC", {"thresholds": 0.5}, "thresholds must be a list", True),
    ("AUC", {"thresholds": [0.5, "a"]}, r"invalid: \['a'\]", True),
    ("AUC", {"thresholds": [math.nan]}, "finite", False),
    ("AUC", {"curve": "Roc"}, "Invalid AUC curve value", True),
    ("AUC", {"curve": None}, "Invalid AUC curve value", True),
    ("AUC", {"summation_method": "INTERPOLATION"}, "Invalid AUC summation method value", True),
    ("AUC", {"summation_method": "trapezoid"}, '"trapezoid"', True),
    ("AUC", {"num_labels": 3}, "only used with multi_label", True),
    ("AUC", {"multi_label": True, "num_labels": -1}, "num_labels must be", True),
    ("AUC", {"multi_label": True, "num_labels": 2.5}, "num_labels must be", True),
    ("AUC", {"multi_label": True, "num_labels": 10_000}, "at most 1,000,000", False),
    ("AUC", {"multi_label": "yes"}, "multi_label must be true or false", False),
    ("AUC", {"from_logits": 1}, "from_logits must be true or false", False),
    ("AUC", {"label_weights": ["a"]}, "label_weights must be", True),
    ("AUC", {"label_weights": [1, [2, 3]]}, "ragged", True),
    ("AUC", {"label_weights": [math.inf]}, "finite", False),
    ("AUC", {"multi_label": True, "num_labels": 3, "label_weights": [1, 2]},
     r"label_weights of shape \[2\] do not fit 3 labels", False),
    ("AUC", {"dtype": "int8"}, "dtype", False),
    ("SensitivityAtSpecificity", {"specificity": -0.1},
     r"Argument `specificity` must be in the range \[0, 1\]. Received: specificity=-0.1", True),
    ("SpecificityAtSensitivity", {"sensitivity": 1.5}, "`sensitivity` must be", True),
    ("PrecisionAtRecall", {"recall": "0.5"}, "Received: recall='0.5'", True),
    ("RecallAtPrecision", {"precision": math.nan}, "`precision` must be", False),
    ("RecallAtPrecision", {"precision": 0.5, "num_thresholds": 0},
     r"Argument `num_thresholds` must be an integer > 0. Received: num_thresholds=0", True),
    ("RecallAtPrecision", {"precision": 0.5, "num_thresholds": 10_001}, "10000", False),
    ("RecallAtPrecision", {"precision": 0.5, "num_thresholds": 3.0}, "num_thresholds", True),
    ("PrecisionAtRecall", {"recall": 0.5, "class_id": -1}, "class_id", False),
    ("PrecisionAtRecall", {"recall": 0.5, "class_id": "1"}, "class_id", False),
    ("PrecisionAtRecall", {}, r"needs config key\(s\) \['recall'\]", True),
    ("AUC", {"top_k": 2}, "unknown config key", True),
]


@pytest.mark.parametrize(("name", "config", "match", "keras_too"), BAD_CONFIGS)
def test_config_errors(name, config, match, keras_too):
    with pytest.raises(ConfigError, match=match):
        REGISTRY.build(name, config)
    if keras_too:
        assert keras_rejects(name, config)


def test_cap_allows_the_limit():
    assert tally("AUC", {"num_thresholds": 10_000}).num_thresholds == 10_000
    assert tally("AUC", {"thresholds": [0.5] * 9998}).num_thresholds == 10_000
    assert tally("RecallAtPrecision", {"precision": 1, "num_thresholds": 10_000}).variables[
        0].shape == (10_000,)
    # An ignored num_thresholds is not validated, as in Keras.
    assert tally("AUC", {"thresholds": [0.5], "num_thresholds": 0}).num_thresholds == 3
    # Keras does not check that explicit thresholds lie in [0, 1]; neither do we.
    check_parity("AUC", {"thresholds": [-0.5, 1.5, 0.5]}, batches((8,), (8,)))


# -- through the HTTP API ----------------------------------------------------------------------


def test_lazy_multi_label_auc_over_http():
    from fastapi.testclient import TestClient

    from app.api.app import create_app
    from app.settings import Settings
    from app.store.memory import MemoryStore

    data = batches((5, 3), (5,), n=2)
    reference = keras_metric("AUC", {"multi_label": True, "curve": "PR"})
    for batch in data:
        reference.update_state(**batch)
    expected = float(keras.ops.convert_to_numpy(reference.result()))
    with TestClient(create_app(Settings(), store=MemoryStore())) as client:
        created = client.put("/v1/sessions/ml", json={
            "metric": "AUC", "config": {"multi_label": True, "curve": "PR"}})
        assert created.status_code == 201, created.text
        assert created.json()["variables"] == []  # shaped by the first batch
        for batch in data:
            body = {k: np.asarray(v).tolist() for k, v in batch.items()}
            assert client.post("/v1/sessions/ml/update", json=body).status_code == 200
        narrow = {k: np.asarray(v)[:, :2].tolist() for k, v in make_batch((4, 3)).items()}
        refused = client.post("/v1/sessions/ml/update", json=narrow)
        assert refused.status_code == 422, refused.text
        assert "num_labels" in refused.json()["detail"]
        result = client.get("/v1/sessions/ml/result").json()["result"]
        assert result == pytest.approx(expected, rel=1e-6, abs=1e-7)
        shapes = [v["shape"] for v in client.get("/v1/sessions/ml/variables").json()[
            "variables"]]
        assert shapes == [[200, 3]] * 4
