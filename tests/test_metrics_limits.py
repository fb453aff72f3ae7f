"""The caps of app/metrics/limits.py: every metric that takes thresholds refuses more than
MAX_THRESHOLDS with a 422 that names the cap, and one update's memory never grows like
samples x thresholds (on every counting path)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.metrics import engine
from app.metrics.limits import MAX_IOU_CLASSES, MAX_THRESHOLDS
from app.metrics.registry import REGISTRY
from app.settings import Settings
from app.store.memory import MemoryStore

TOO_MANY = MAX_THRESHOLDS + 1
#: Every class with a thresholds argument, and the config that asks for TOO_MANY of them.
OVER_THE_CAP = [
    ("TruePositives", {"thresholds": [0.5] * TOO_MANY}),
    ("FalsePositives", {"thresholds": [0.5] * TOO_MANY}),
    ("TrueNegatives", {"thresholds": [0.5] * TOO_MANY}),
    ("FalseNegatives", {"thresholds": [0.5] * TOO_MANY}),
    ("Precision", {"thresholds": [0.5] * TOO_MANY}),
    ("Recall", {"thresholds": [0.5] * TOO_MANY, "top_k": 1}),
    ("AUC", {"num_thresholds": TOO_MANY}),
    ("AUC", {"thresholds": [0.5] * (MAX_THRESHOLDS - 1)}),  # + 2 endpoints
    ("SensitivityAtSpecificity", {"specificity": 0.5, "num_thresholds": TOO_MANY}),
    ("SpecificityAtSensitivity", {"sensitivity": 0.5, "num_thresholds": TOO_MANY}),
    ("PrecisionAtRecall", {"recall": 0.5, "num_thresholds": TOO_MANY}),
    ("RecallAtPrecision", {"precision": 0.5, "num_thresholds": TOO_MANY}),
]


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings(), store=MemoryStore())) as c:
        yield c


@pytest.mark.parametrize(("metric", "config"), OVER_THE_CAP)
def test_more_thresholds_than_the_cap_is_422_naming_the_cap(client, metric, config):
    r = client.put(f"/v1/sessions/cap.{metric}", json={"metric": metric, "config": config})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert str(MAX_THRESHOLDS) in r.json()["detail"].replace(",", "")
    assert client.get(f"/v1/sessions/cap.{metric}").status_code == 404


@pytest.mark.parametrize("metric", ["Precision", "TruePositives"])
def test_exactly_the_cap_is_served_and_readable(client, metric):
    thresholds = np.linspace(0, 1, MAX_THRESHOLDS).round(6).tolist()[::-1]  # unsorted
    r = client.put(f"/v1/sessions/full.{metric}",
                   json={"metric": metric, "config": {"thresholds": thresholds}})
    assert r.status_code == 201, r.text
    r = client.post(f"/v1/sessions/full.{metric}/update",
                    json={"y_true": [0, 1, 1, 0], "y_pred": [0.1, 0.6, 0.9, 0.95]})
    assert r.status_code == 200, r.text
    result = client.get(f"/v1/sessions/full.{metric}/result").json()["result"]
    assert len(result) == MAX_THRESHOLDS


def test_iou_classes_cap_is_the_shared_constant(client):
    r = client.put("/v1/sessions/cap.iou", json={"metric": "MeanIoU",
                                                  "config": {"num_classes": MAX_IOU_CLASSES + 1}})
    assert r.status_code == 422
    assert str(MAX_IOU_CLASSES) in r.json()["detail"]


# -- one update's memory: O(samples + thresholds), never O(samples x thresholds) -------------

SAMPLES = 20_000
ROWS, COLUMNS = 2_000, 10  # the same number of elements as a (rows, columns) batch
SAMPLES_X_THRESHOLDS = SAMPLES * MAX_THRESHOLDS * 4  # bytes of one float32 comparison matrix
UNEVEN = np.sort(np.random.default_rng(0).uniform(0, 1, MAX_THRESHOLDS)).round(7).tolist()
PATHS = [
    ("evenly spaced (buckets)", "Precision", {"thresholds": np.linspace(0, 1, MAX_THRESHOLDS)
                                              .tolist()}, 1),
    ("sorted", "Precision", {"thresholds": UNEVEN}, 1),
    ("unsorted", "Recall", {"thresholds": UNEVEN[::-1]}, 1),
    ("top_k", "Precision", {"thresholds": UNEVEN, "top_k": 3}, 2),
    ("class_id", "Recall", {"thresholds": UNEVEN, "class_id": 4}, 2),
    ("top_k and class_id", "Precision", {"thresholds": UNEVEN, "top_k": 2, "class_id": 1}, 2),
    ("condition count", "FalseNegatives", {"thresholds": UNEVEN}, 2),
    ("AUC buckets", "AUC", {"num_thresholds": MAX_THRESHOLDS}, 1),
    ("AUC explicit", "AUC", {"thresholds": UNEVEN[1:-1]}, 1),
    ("AUC multi-label", "AUC", {"num_thresholds": MAX_THRESHOLDS, "multi_label": True}, 2),
    ("*At* family", "RecallAtPrecision", {"precision": 0.6, "num_thresholds": MAX_THRESHOLDS},
     1),
    ("*At* class_id", "PrecisionAtRecall", {"recall": 0.6, "num_thresholds": MAX_THRESHOLDS,
                                            "class_id": 3}, 2),
]


def _batch(rank: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(1)
    shape = (SAMPLES,) if rank == 1 else (ROWS, COLUMNS)
    inputs = {"y_true": rng.integers(0, 2, size=shape).astype(np.float32),
              "y_pred": rng.uniform(0, 1, size=shape).astype(np.float32)}
    return inputs, rng.uniform(0, 2, size=shape[0]).astype(np.float32)


@pytest.mark.parametrize(("path", "metric", "config", "rank"), PATHS, ids=[p[0] for p in PATHS])
def test_one_update_does_not_allocate_samples_x_thresholds(path, metric, config, rank):
    """The peak allocation of one contribution stays far below one samples x thresholds
    float32 matrix (800 MB here): tens of MB at most, whatever the path."""
    _, instance = REGISTRY.build(metric, config)
    inputs, weight = _batch(rank)
    engine.contribution(instance, inputs, weight)  # build lazy state, warm caches
    tracemalloc.start()
    try:
        engine.contribution(instance, inputs, weight)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < SAMPLES_X_THRESHOLDS / 20, f"{path}: peak {peak / 1e6:.1f} MB"
