"""Random batches for every metric in the catalogue, shaped the way each metric expects.

A case is (metric, config, kind); `batches(kind, seed)` makes the data. Used by the HTTP
parity tests, so every class is checked through the API against Keras.
"""

from __future__ import annotations

from typing import Any

import numpy as np

N, C = 6, 4


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _batch(kind: str, rng: np.random.Generator, weighted: bool) -> dict[str, Any]:
    if kind == "values":
        batch: dict[str, Any] = {"values": rng.normal(size=(N,))}
    elif kind == "binary":
        batch = {"y_true": rng.integers(0, 2, size=(N, C)), "y_pred": rng.uniform(size=(N, C))}
    elif kind == "binary1d":
        batch = {"y_true": rng.integers(0, 2, size=(N,)), "y_pred": rng.uniform(size=(N,))}
    elif kind == "exact":
        batch = {"y_true": rng.integers(0, 3, size=(N, 1)), "y_pred": rng.integers(0, 3,
                                                                              size=(N, 1))}
    elif kind == "categorical":
        batch = {"y_true": np.eye(C)[rng.integers(0, C, size=N)],
                 "y_pred": _softmax(rng.normal(size=(N, C)))}
    elif kind == "sparse":
        batch = {"y_true": rng.integers(0, C, size=(N,)),
                 "y_pred": _softmax(rng.normal(size=(N, C)))}
    elif kind == "regression":
        batch = {"y_true": rng.normal(size=(N, C)), "y_pred": rng.normal(size=(N, C))}
    elif kind == "positive":
        batch = {"y_true": rng.uniform(0.1, 2, size=(N, C)),
                 "y_pred": rng.uniform(0.1, 2, size=(N, C))}
    elif kind == "signs":
        batch = {"y_true": rng.choice([-1.0, 1.0], size=(N, C)),
                 "y_pred": rng.normal(size=(N, C))}
    else:
        raise ValueError(kind)
    if weighted:
        # Multiples of 1/4: Keras' float32 `total - TP` for TN/FN then has no rounding noise
        # around exact zeros, which an absolute tolerance would otherwise have to absorb.
        batch["sample_weight"] = rng.integers(0, 9, size=(N,)) / 4
    return {k: np.asarray(v, dtype=np.float32).tolist() for k, v in batch.items()}


def batches(kind: str, seed: int, count: int = 8) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [_batch(kind, rng, weighted=i % 2 == 1) for i in range(count)]


CASES: list[tuple[str, dict[str, Any], str]] = [
    ("Mean", {}, "values"),
    ("Sum", {}, "values"),
    ("Accuracy", {}, "exact"),
    ("BinaryAccuracy", {"threshold": 0.3}, "binary"),
    ("CategoricalAccuracy", {}, "categorical"),
    ("SparseCategoricalAccuracy", {}, "sparse"),
    ("TopKCategoricalAccuracy", {"k": 2}, "categorical"),
    ("SparseTopKCategoricalAccuracy", {"k": 2}, "sparse"),
    ("AUC", {}, "binary"),
    ("AUC", {"curve": "PR", "multi_label": True}, "binary"),
    ("AUC", {"num_thresholds": 50, "curve": "PRGAIN", "summation_method": "majoring",
             "from_logits": True}, "regression"),
    ("SensitivityAtSpecificity", {"specificity": 0.5}, "binary"),
    ("SpecificityAtSensitivity", {"sensitivity": 0.6, "num_thresholds": 30}, "binary1d"),
    ("PrecisionAtRecall", {"recall": 0.7, "class_id": 2}, "binary"),
    ("RecallAtPrecision", {"precision": 0.6}, "binary"),
    ("TruePositives", {"thresholds": [0.2, 0.5, 0.8]}, "binary"),
    ("FalsePositives", {}, "binary1d"),
    ("TrueNegatives", {"thresholds": 0.4}, "binary"),
    ("FalseNegatives", {"thresholds": [0.0, 0.5, 1.0]}, "binary"),
    ("Precision", {}, "binary1d"),
    ("Precision", {"top_k": 2, "class_id": 1}, "binary"),
    ("Recall", {"thresholds": [0.3, 0.6]}, "binary"),
    ("Recall", {"top_k": 1}, "binary"),
    ("MeanSquaredError", {}, "regression"),
    ("MeanAbsoluteError", {}, "regression"),
    ("MeanAbsolutePercentageError", {}, "positive"),
    ("MeanSquaredLogarithmicError", {}, "positive"),
    ("RootMeanSquaredError", {}, "regression"),
    ("LogCoshError", {}, "regression"),
    ("CosineSimilarity", {}, "regression"),
    ("BinaryCrossentropy", {"label_smoothing": 0.1}, "binary"),
    ("BinaryCrossentropy", {"from_logits": True}, "regression"),
    ("CategoricalCrossentropy", {}, "categorical"),
    ("SparseCategoricalCrossentropy", {"from_logits": True}, "sparse"),
    ("KLDivergence", {}, "positive"),
    ("Poisson", {}, "positive"),
    ("Hinge", {}, "signs"),
    ("SquaredHinge", {}, "binary"),
    ("CategoricalHinge", {}, "categorical"),
    ("MeanMetricWrapper", {"fn": "mean_squared_error"}, "regression"),
    ("F1Score", {"average": "macro", "threshold": 0.5}, "binary"),
    ("F1Score", {}, "categorical"),
    ("FBetaScore", {"beta": 2.0, "average": "weighted"}, "binary"),
    ("FBetaScore", {"average": "micro", "threshold": 0.4}, "binary"),
    ("R2Score", {}, "regression"),
    ("R2Score", {"class_aggregation": None, "num_regressors": 1}, "regression"),
    ("PearsonCorrelation", {}, "regression"),
    ("ConcordanceCorrelation", {}, "regression"),
    # IoU: the cases' fractional weights need Keras' float dtype (its int32 default truncates
    # them; Tally never does, see README "Differences from Keras").
    ("IoU", {"num_classes": C, "target_class_ids": [0, 2], "sparse_y_pred": False,
             "dtype": "float32"}, "sparse"),
    ("MeanIoU", {"num_classes": C, "sparse_y_pred": False, "ignore_class": 1,
                 "dtype": "float32"}, "sparse"),
    ("BinaryIoU", {"threshold": 0.4, "dtype": "float32"}, "binary1d"),
    ("OneHotIoU", {"num_classes": C, "target_class_ids": [1, 3], "dtype": "float32"},
     "categorical"),
    ("OneHotMeanIoU", {"num_classes": C, "dtype": "float32"}, "categorical"),
]
