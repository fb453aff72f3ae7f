"""Keras parity for Mean and Sum, including every weight shape Keras accepts."""

import numpy as np
import pytest

from tests.oracle import check_parity

rng = np.random.default_rng(7)

WEIGHTINGS = [
    ((6,), None),
    ((6,), (6,)),
    ((6, 3), None),
    ((6, 3), (6,)),
    ((6, 3), (6, 1)),
    ((6, 3), (6, 3)),
    ((6, 3, 2), (6, 3)),
    ((6,), ()),
    ((), None),
]


@pytest.mark.parametrize("metric", ["Mean", "Sum", "mean", "sum"])
@pytest.mark.parametrize(("values_shape", "weight_shape"), WEIGHTINGS)
def test_reduction_parity(metric, values_shape, weight_shape):
    batches = []
    for _ in range(3):
        batch = {"values": rng.normal(size=values_shape).astype(np.float32)}
        if weight_shape is not None:
            batch["sample_weight"] = rng.uniform(0, 2, size=weight_shape).astype(np.float32)
        batches.append(batch)
    check_parity(metric, None, batches)


def test_mean_docs_examples():
    check_parity("Mean", {"name": "m"},
                 [{"values": [1.0, 3, 5, 7], "sample_weight": [1.0, 1, 0, 0]}])
    check_parity("Sum", None, [{"values": [[1.0, 2], [3, 4]], "sample_weight": [1.0, 3]}])


@pytest.mark.parametrize("metric", ["Mean", "Precision", "MeanSquaredError", "Hinge"])
def test_empty_name_means_default_name_as_in_keras(metric):
    check_parity(metric, {"name": ""}, [])
