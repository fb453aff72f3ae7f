"""Random batches for the engine-level Keras parity tests of the mean-wrapper families."""

from __future__ import annotations

import numpy as np
import pytest

from app.errors import ConfigError
from app.metrics import engine
from app.metrics.registry import REGISTRY

F32 = np.float32
SIZES = (6, 9, 4)
ALL_WEIGHTS = (None, "n", "n1", "scalar")


def weight(rng, kind, n):
    """A sample weight of shape (N,), (N, 1) or a scalar."""
    if kind == "n":
        return rng.uniform(0, 2, size=n).astype(F32)
    if kind == "n1":
        return rng.uniform(0, 2, size=(n, 1)).astype(F32)
    return np.asarray(rng.uniform(0.5, 2), dtype=F32)


def make_batches(make, weight_kind, seed, sizes=SIZES):
    """One batch per size: `make(rng, n, step) -> (y_true, y_pred)`, plus the chosen weight."""
    rng = np.random.default_rng(seed)
    batches = []
    for step, n in enumerate(sizes):
        y_true, y_pred = make(rng, n, step)
        batch = {"y_true": np.asarray(y_true, F32), "y_pred": np.asarray(y_pred, F32)}
        if weight_kind is not None:
            batch["sample_weight"] = weight(rng, weight_kind, n)
        batches.append(batch)
    return batches


class ThresholdedBatches:
    """Random batches for the thresholded (confusion-matrix) metrics: labels drawn from
    `labels` (any non-zero label is positive), predictions uniform in [low, high] (also outside
    [0, 1]), weights in multiples of 1/4 so that Keras' float32 sums are exact."""

    def __init__(self, seed, labels):
        self.rng = np.random.default_rng(seed)
        self.labels = labels

    def dyadic(self, shape, low=0.0, high=2.0):
        values = self.rng.integers(int(low * 4), int(high * 4) + 1, size=shape)
        return (values / 4).astype(np.float32)

    def make_batch(self, shape, weight_shape=None, *, low=-0.3, high=1.3, labels=None):
        batch = {
            "y_true": self.rng.choice(labels or self.labels, size=shape).astype(np.float32),
            "y_pred": self.rng.uniform(low, high, size=shape).astype(np.float32),
        }
        if weight_shape is not None:
            batch["sample_weight"] = self.dyadic(weight_shape)
        return batch

    def batches(self, shape, weight_shape=None, n=3, **kwargs):
        return [self.make_batch(shape, weight_shape, **kwargs) for _ in range(n)]


def assert_config_error(name, config, expected):
    """Building the metric fails with a ConfigError whose message names what it received."""
    with pytest.raises(ConfigError, match=expected) as info:
        REGISTRY.build(name, config)
    if "unknown" not in expected:
        assert f"got {next(iter(config.values()))!r}" in str(info.value)


def contribution(name, config, y_true, y_pred, sample_weight=None):
    """One batch's contribution from a freshly built metric."""
    _, metric = REGISTRY.build(name, config)
    return engine.contribution(metric, {"y_true": np.asarray(y_true, F32),
                                        "y_pred": np.asarray(y_pred, F32)}, sample_weight)
