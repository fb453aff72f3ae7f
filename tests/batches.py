"""Random batches for the engine-level Keras parity tests of the mean-wrapper families."""

from __future__ import annotations

import numpy as np

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
