"""The catalogue covers `keras.metrics`: every metric class Keras exports is in /v1/metrics,
with Keras' default config, and every alias Keras' `metrics.get` accepts resolves to the class
Keras resolves it to."""

from __future__ import annotations

import inspect

import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.settings import Settings
from app.store.memory import MemoryStore
from tests.oracle import keras, normalise_config

KERAS_CLASSES = sorted(
    name for name, obj in inspect.getmembers(keras.metrics, inspect.isclass)
    if issubclass(obj, keras.metrics.Metric) and obj is not keras.metrics.Metric
)
#: Smallest constructor arguments for classes that have required ones.
REQUIRED = {
    "IoU": {"num_classes": 3, "target_class_ids": [0, 2]},
    "MeanIoU": {"num_classes": 3},
    "OneHotIoU": {"num_classes": 3, "target_class_ids": [1]},
    "OneHotMeanIoU": {"num_classes": 3},
    "SensitivityAtSpecificity": {"specificity": 0.5},
    "SpecificityAtSensitivity": {"sensitivity": 0.5},
    "PrecisionAtRecall": {"recall": 0.5},
    "RecallAtPrecision": {"precision": 0.5},
    "MeanMetricWrapper": {"fn": "mean_squared_error"},
}


@pytest.fixture(scope="module")
def catalogue():
    with TestClient(create_app(Settings(), store=MemoryStore())) as client:
        yield client, {m["name"]: m for m in client.get("/v1/metrics").json()["metrics"]}


def test_every_keras_metric_class_is_served(catalogue):
    _, metrics = catalogue
    assert len(KERAS_CLASSES) >= 45
    missing = [name for name in KERAS_CLASSES if name not in metrics]
    assert missing == []


@pytest.mark.parametrize("name", KERAS_CLASSES)
def test_config_equals_keras(catalogue, name):
    client, _ = catalogue
    args = REQUIRED.get(name, {})
    r = client.put(f"/v1/sessions/cfg.{name}", json={"metric": name, "config": args})
    assert r.status_code in (200, 201), r.text
    keras_args = dict(args)
    if "fn" in keras_args:
        keras_args["fn"] = getattr(keras.metrics, keras_args["fn"])
    expected = getattr(keras.metrics, name)(**keras_args).get_config()
    if "fn" in args:
        expected["fn"] = args["fn"]
    assert normalise_config(r.json()["config"]) == normalise_config(expected)
    assert r.json()["metric"] == name


@pytest.mark.parametrize("alias", ["mse", "MSE", "mae", "MAE", "mape", "MAPE", "msle", "MSLE",
                                   "bce", "BCE", "accuracy", "auc", "f1_score", "mean_io_u",
                                   "precision", "r2_score", "acc"])
def test_keras_aliases(catalogue, alias):
    client, _ = catalogue
    r = client.put(f"/v1/sessions/alias.{alias}", json={"metric": alias,
                                                        "config": REQUIRED.get(alias, {})})
    if alias == "mean_io_u":
        r = client.put(f"/v1/sessions/alias.{alias}", json={"metric": alias,
                                                            "config": {"num_classes": 2}})
    assert r.status_code == 201, r.text
    expected = type(keras.metrics.get("accuracy" if alias == "acc" else alias)).__name__ \
        if alias != "mean_io_u" else "MeanIoU"
    assert r.json()["metric"] == expected
