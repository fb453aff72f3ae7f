"""`dtype="int32"` / `"int64"`, which Keras accepts for every metric class: Tally must give
Keras' variable dtypes, values and results (Keras is the oracle, numpy backend).

What Keras does: metrics built on `Mean`/`Sum` (every `MeanMetricWrapper` class) keep int
variables and cast each batch's per-sample values and weights to the int dtype (truncation
toward zero) before summing; `Mean`-style results are float, `Sum`'s is an int. Confusion,
curve and R2 metrics keep float32 state whatever `dtype` says. F1/FBeta cast y_true and y_pred
to the int dtype first (a score of 0.7 becomes 0). The batches here have non-negative
contributions: Keras truncates its running total while Tally truncates each batch's
contribution, which agree exactly unless a batch moves the total across zero (see README).
"""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.metrics.registry import REGISTRY
from app.settings import Settings
from app.store.memory import MemoryStore
from tests.oracle import check_parity, keras_metric, keras_variables

F32 = np.float32

REQUIRED = {
    "SensitivityAtSpecificity": {"specificity": 0.5},
    "SpecificityAtSensitivity": {"sensitivity": 0.5},
    "PrecisionAtRecall": {"recall": 0.5},
    "RecallAtPrecision": {"precision": 0.5},
    "MeanMetricWrapper": {"fn": "mean_squared_error"},
}
SPARSE = ("SparseCategoricalAccuracy", "SparseCategoricalCrossentropy",
          "SparseTopKCategoricalAccuracy")
IOU = ("IoU", "MeanIoU", "BinaryIoU", "OneHotIoU", "OneHotMeanIoU")  # test_metrics_iou.py
CLASSES = sorted(spec.name for spec in REGISTRY.specs() if spec.builtin and spec.name not in IOU)


def _batches(name: str, seed: int) -> list[dict[str, np.ndarray]]:
    """Three batches that suit the class: values for Mean/Sum, sparse labels for the sparse
    classes, one-hot labels with scores in [0, 1] otherwise; weights
    in [0, 3) (fractional, so that truncation shows)."""
    rng = np.random.default_rng(seed)
    batches = []
    for n in (6, 5, 7):
        weight = (rng.integers(0, 12, size=n) / 4).astype(F32)  # exact in float32 sums
        if name in ("Mean", "Sum"):
            batches.append({"values": rng.uniform(0, 5, size=(n, 2)).astype(F32),
                            "sample_weight": weight})
            continue
        scores = rng.uniform(0.01, 1, size=(n, 3)).astype(F32)
        labels = rng.integers(0, 3, size=n)
        y_true = labels.astype(F32) if name in SPARSE else np.eye(3, dtype=F32)[labels]
        if name == "MeanAbsolutePercentageError":
            # Labels of 0 give errors of ~1e9 per sample, and integer totals past 2^31 wrap
            # around differently in Keras (see README); keep the totals in range.
            y_true = y_true + 1
        batches.append({"y_true": y_true, "y_pred": scores, "sample_weight": weight})
    return batches


@pytest.mark.parametrize("dtype", ["int32", "int64"])
@pytest.mark.parametrize("name", CLASSES)
def test_int_dtype_matches_keras(name, dtype):
    config = {**REQUIRED.get(name, {}), "dtype": dtype}
    check_parity(name, config, _batches(name, seed=len(name)))


@pytest.mark.parametrize("name", CLASSES)
def test_int_dtype_variable_dtypes_match_keras(name):
    config = {**REQUIRED.get(name, {}), "dtype": "int32"}
    _, metric = REGISTRY.build(name, config)
    reference = keras_metric(name, config)
    for batch in _batches(name, seed=1)[:1]:  # lazily built metrics need a batch
        metric.update_state(**batch)
        reference.update_state(**batch)
    ours = [(v.name, v.dtype) for v in metric.variables]
    theirs = [(n, str(v.dtype)) for n, v in keras_variables(reference)]
    assert ours == theirs


@pytest.mark.parametrize("values", [[1.7, 2.9, 3.5], [[0.4, 2.6], [1.9, 0.2], [3.3, 3.3]]])
def test_sum_result_is_an_int_like_keras(values):
    _, metric = REGISTRY.build("Sum", {"dtype": "int32"})
    reference = keras_metric("Sum", {"dtype": "int32"})
    metric.update_state(np.asarray(values, F32))
    reference.update_state(np.asarray(values, F32))
    expected = np.asarray(reference.result())
    ours = np.asarray(metric.result())
    assert ours.dtype == expected.dtype
    assert ours.tolist() == expected.tolist()


def test_int_dtype_over_http_reports_keras_dtypes_and_values():
    batches = [{"values": [[1.7, 2.9], [0.4, 3.3]], "sample_weight": [1.5, 2.25]},
               {"values": [[5.5, 0.2], [2.0, 2.0], [9.9, 1.1]], "sample_weight": [0.5, 3.0, 1.0]}]
    for name in ("Mean", "Sum"):
        reference = keras_metric(name, {"dtype": "int32"})
        with TestClient(create_app(Settings(), store=MemoryStore())) as client:
            r = client.put("/v1/sessions/ints", json={"metric": name, "config": {"dtype": "int32"}})
            assert r.status_code == 201, r.text
            assert {v["dtype"] for v in r.json()["variables"]} == {"int32"}
            for batch in batches:
                assert client.post("/v1/sessions/ints/update", json=batch).status_code == 200
                reference.update_state(**{k: np.asarray(v, F32) for k, v in batch.items()})
                result = client.get("/v1/sessions/ints/result").json()["result"]
                assert result == pytest.approx(float(np.asarray(reference.result())), rel=1e-6)
            variables = client.get("/v1/sessions/ints/variables").json()["variables"]
            assert [(v["name"], v["dtype"], v["value"]) for v in variables] == [
                (n, str(value.dtype), float(value)) for n, value in keras_variables(reference)]
