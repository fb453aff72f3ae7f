"""`Metric.state_elements()` / `layout_elements()`: a metric's state size is known before any
batch (or, for a lazily shaped metric, from a first batch's layout before anything is built),
so the service can refuse a config or first batch past its state limit with a 422."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from app.errors import ConfigError, InvalidInput
from app.metrics import Metric, engine
from app.metrics.registry import REGISTRY
from tests.oracle import keras_metric, keras_update

REQUIRED = {
    "IoU": {"num_classes": 3, "target_class_ids": [0, 2]},
    "MeanIoU": {"num_classes": 5},
    "OneHotIoU": {"num_classes": 3, "target_class_ids": [1]},
    "OneHotMeanIoU": {"num_classes": 4},
    "SensitivityAtSpecificity": {"specificity": 0.5},
    "SpecificityAtSensitivity": {"sensitivity": 0.5},
    "PrecisionAtRecall": {"recall": 0.5, "num_thresholds": 17},
    "RecallAtPrecision": {"precision": 0.5},
    "MeanMetricWrapper": {"fn": "mean_squared_error"},
}
EXTRA = [
    ("Precision", {"thresholds": [0.1, 0.4, 0.9]}),
    ("TruePositives", {"thresholds": [0.2, 0.8]}),
    ("AUC", {"num_thresholds": 33, "multi_label": True, "num_labels": 3}),
    ("AUC", {"thresholds": [0.3, 0.6]}),
]
EAGER = [(spec.name, REQUIRED.get(spec.name, {})) for spec in REGISTRY.specs()
         if spec.builtin and not REGISTRY.build(spec.name, REQUIRED.get(spec.name, {}))[1].lazy]
#: Lazily shaped configs and a first batch: (metric, config, y_true, y_pred).
LAZY = [
    ("F1Score", {}, np.eye(4)[[0, 1, 3]], np.full((3, 4), 0.3)),
    ("FBetaScore", {"average": "micro", "beta": 2.0}, np.eye(4)[[0, 1, 3]], np.full((3, 4), 0.3)),
    ("R2Score", {}, np.ones((5, 3)), np.zeros((5, 3))),
    ("R2Score", {}, np.ones((4, 1)), np.zeros((4, 1))),
    ("AUC", {"multi_label": True, "num_thresholds": 20}, np.eye(6)[[0, 5]], np.full((2, 6), .4)),
]


def _keras_elements(metric: Any) -> int:
    return sum(math.prod(v.shape) for v in metric.variables)


@pytest.mark.parametrize(("name", "config"), EAGER + EXTRA)
def test_state_elements_before_any_batch_equals_keras_variables(name, config):
    _, metric = REGISTRY.build(name, config)
    assert metric.state_elements() == _keras_elements(keras_metric(name, config))
    described = engine.describe_variables(metric)
    assert metric.state_elements() == sum(math.prod(v["shape"]) for v in described)


@pytest.mark.parametrize(("name", "config", "y_true", "y_pred"), LAZY)
def test_lazy_metric_knows_its_size_from_the_layout_before_building(name, config, y_true,
                                                                     y_pred):
    _, metric = REGISTRY.build(name, config)
    assert metric.state_elements() is None
    batch = {"y_true": np.asarray(y_true, np.float32), "y_pred": np.asarray(y_pred, np.float32)}
    layout = engine.contribution(metric, batch, None).layout
    engine.prepare(metric, None)  # back to unbuilt, as a fresh session
    predicted = metric.layout_elements(layout)
    assert not metric.built  # predicting built nothing
    # The cheap override agrees with the generic fallback that builds a throwaway copy.
    assert predicted == Metric.lazy_elements(metric, **layout) + metric.eager_elements()
    engine.prepare(metric, layout)
    assert metric.state_elements() == predicted
    reference = keras_metric(name, config)
    keras_update(reference, batch)
    assert predicted == _keras_elements(reference)


def test_a_config_past_the_limit_is_a_config_error_naming_both_sizes():
    _, metric = REGISTRY.build("AUC", {"num_thresholds": 200})
    metric.limit_state(800)  # exactly its 4 x 200
    with pytest.raises(ConfigError, match=r"would keep 800 state elements with this config; "
                                          r"the limit is 799 per session"):
        metric.limit_state(799)


@pytest.mark.parametrize(("name", "config", "y_true", "y_pred"), LAZY)
def test_a_first_batch_past_the_limit_is_refused_before_anything_is_built(name, config, y_true,
                                                                         y_pred):
    _, metric = REGISTRY.build(name, config)
    batch = {"y_true": np.asarray(y_true, np.float32), "y_pred": np.asarray(y_pred, np.float32)}
    layout = engine.contribution(metric, batch, None).layout
    engine.prepare(metric, None)
    needed = metric.layout_elements(layout)
    metric.limit_state(needed - 1)
    with pytest.raises(InvalidInput, match=f"would keep {needed:,} state elements with the "
                                           f"layout"):
        engine.contribution(metric, batch, None)
    assert not metric.built
    metric.limit_state(needed)
    assert engine.contribution(metric, batch, None).layout == layout


class _Outer(Metric):
    """A plugin-style lazy metric without a `lazy_elements` override: (rows, columns) state
    from the first batch's shape."""

    lazy = True

    def __init__(self, name: str | None = None, dtype: str | None = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self.count = self.add_variable((), name="count")

    def build_variables(self, **layout: Any) -> None:
        self.outer = self.add_variable((layout["columns"], layout["columns"]), name="outer")

    def update_state(self, values: Any, sample_weight: Any = None) -> None:
        values = np.asarray(values, dtype=self.dtype)
        self.ensure_built(columns=int(values.shape[1]))
        self.outer.assign_add(values.T @ values)
        self.count.assign_add(values.shape[0])

    def result(self) -> Any:
        return self.outer.value / max(float(self.count.value), 1.0)


def test_the_generic_fallback_sizes_a_plugin_without_touching_it():
    metric = _Outer()
    assert metric.state_elements() is None
    assert metric.layout_elements({"columns": 7}) == 1 + 49
    assert not metric.built and [v.name for v in metric.variables] == ["count"]
    metric.limit_state(20)
    with pytest.raises(InvalidInput, match="would keep 50 state elements"):
        engine.contribution(metric, {"values": np.ones((2, 7), np.float32)}, None)
    delta = engine.contribution(metric, {"values": np.ones((2, 4), np.float32)}, None)
    assert delta.layout == {"columns": 4} and metric.state_elements() == 17
