"""Merged updates: concurrent small updates of one session computed as one batch.

First the metrics' declarations (`Metric.merges_along_batch`) are checked against what they
claim, on every case of the catalogue in several ranks: where a metric says batches merge,
one `update_state` on the concatenated batches must leave the variables that two separate
updates leave. Then the service's merging (app/merging.py) through HTTP: Keras parity under
concurrent writers, idempotency per request inside a merged batch, a bad batch among good
ones failing alone.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from app.metrics.collection import build_metric
from app.metrics.registry import builtin_registry
from tests.cases import CASES, batches

os.environ.setdefault("KERAS_BACKEND", "numpy")
REGISTRY = builtin_registry()


def _arrays(batch: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=np.float32) for k, v in batch.items()}


def _rank_variants(batch: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The batch as the cases shape it, and where y_true and y_pred are both (N, C) also
    flattened to 1-D (unweighted) and split to (N, 2, C/2): ranks where metrics that reduce
    the last axis would reduce the batch axis, or keep it."""
    variants = [batch]
    y_true, y_pred = batch.get("y_true"), batch.get("y_pred")
    if y_true is not None and y_pred is not None and y_true.shape == y_pred.shape \
            and y_true.ndim == 2:
        variants.append({"y_true": y_true.ravel(), "y_pred": y_pred.ravel()})
        n, c = y_true.shape
        if c % 2 == 0:
            variants.append({"y_true": y_true.reshape(n, 2, c // 2),
                             "y_pred": y_pred.reshape(n, 2, c // 2)})
    values = batch.get("values")
    if values is not None:
        variants.append({"values": np.stack([values, values * 2], axis=1)})
    return variants


def _variables_after(metric_name: str, config: dict[str, Any],
                     updates: list[dict[str, np.ndarray]]) -> list[np.ndarray] | None:
    _, metric = build_metric(REGISTRY, metric_name, dict(config))
    for update in updates:
        inputs = {k: v for k, v in update.items() if k != "sample_weight"}
        try:
            metric.update_state(**inputs, sample_weight=update.get("sample_weight"))
        except Exception:  # noqa: BLE001 - a rank this metric refuses: nothing to compare
            return None
    return [np.array(v.value, dtype=np.float64) for v in metric.variables]


def _concatenated(first: dict[str, np.ndarray], second: dict[str, np.ndarray]
                  ) -> dict[str, np.ndarray]:
    return {k: np.concatenate([first[k], second[k]]) for k in first}


@pytest.mark.parametrize(("metric", "config", "kind"), CASES,
                         ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(CASES)])
def test_declared_merges_equal_separate_updates(metric, config, kind):
    """Where `merges_along_batch` says yes, one update of a + b equals updates of a then b.
    Where it says no, nothing is claimed (the service computes the batches one by one)."""
    _, probe = build_metric(REGISTRY, metric, dict(config))
    data = [_arrays(b) for b in batches(kind, seed=3, count=4)]
    # The service merges batches with the same fields only: unweighted with unweighted (0, 2),
    # weighted with weighted (1, 3).
    for first, second in ((data[0], data[2]), (data[1], data[3])):
        for a, b in zip(_rank_variants(first), _rank_variants(second), strict=True):
            inputs = {k: v for k, v in a.items() if k != "sample_weight"}
            if not probe.merges_along_batch(inputs):
                continue
            separate = _variables_after(metric, config, [a, b])
            if separate is None:
                continue
            merged = _variables_after(metric, config, [_concatenated(a, b)])
            assert merged is not None, "the merged batch was refused, the separate ones not"
            for got, want in zip(merged, separate, strict=True):
                np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-5, equal_nan=True,
                                           err_msg=f"{metric} {config} ranks "
                                                   f"{[v.ndim for v in a.values()]}")


def test_declarations_cover_the_hot_families():
    """The families a training job updates most say yes where they can (else the check above
    would pass vacuously), and a metric that reduces the last axis says no for 1-D input."""
    one_d = {"y_true": np.zeros(4, np.float32), "y_pred": np.zeros(4, np.float32)}
    two_d = {"y_true": np.zeros((4, 3), np.float32), "y_pred": np.zeros((4, 3), np.float32)}
    says = {name: build_metric(REGISTRY, name, {})[1].merges_along_batch
            for name in ("Precision", "Recall", "AUC", "BinaryIoU", "TruePositives",
                         "MeanSquaredError", "PearsonCorrelation", "CategoricalAccuracy")}
    for name in ("Precision", "Recall", "AUC", "BinaryIoU", "TruePositives"):
        assert says[name](one_d) and says[name](two_d), name
    for name in ("MeanSquaredError", "PearsonCorrelation", "CategoricalAccuracy"):
        assert not says[name](one_d), name
    assert build_metric(REGISTRY, "Mean", {})[1].merges_along_batch({"values": np.zeros(3)})
    top_k = build_metric(REGISTRY, "Precision", {"top_k": 2})[1]
    assert not top_k.merges_along_batch(one_d) and top_k.merges_along_batch(two_d)
