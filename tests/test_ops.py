"""app/metrics/ops.py against Keras' own ops (numpy backend) on adversarial values."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from app.metrics.ops import divide_no_nan
from tests.oracle import keras

SPECIALS = [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 1e-45, 3e38, -2.5, 7.0]


def pairs(dtype):
    a, b = np.array(list(itertools.product(SPECIALS, SPECIALS)), dtype).T
    return a, b


def assert_same(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


def test_divide_no_nan_of_variables_like_arrays_is_keras():
    """float32 arrays of one shape (the variables): the masked-divide path; value, sign of
    zero and dtype."""
    a, b = pairs(np.float32)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        assert_same(divide_no_nan(a, b), np.asarray(keras.ops.divide_no_nan(a, b)))


def test_divide_no_nan_keeps_float64():
    """Keras' numpy backend computes float64 input in float32 (floatx); Tally's float64
    states keep their precision: the same rule, `a / b` or +0 where b == 0, in float64."""
    a, b = pairs(np.float64)
    with np.errstate(all="ignore"):
        want = np.array([0.0 if y == 0 else x / y for x, y in zip(a, b, strict=True)])
        assert_same(divide_no_nan(a, b), want)


@pytest.mark.parametrize(("left", "right"), [
    (np.float32, np.float64), (np.int64, np.int64), (np.int32, np.float32)])
def test_divide_no_nan_of_mixed_dtypes_and_shapes_is_keras(left, right):
    """Other dtypes, broadcasting, scalars: the general path."""
    a = np.array([[0, 1, 2], [3, -4, 5]], left)
    b = np.array([0, 2, -1], right)
    with np.errstate(all="ignore"):
        for x, y in [(a, b), (a[0, 0], b), (a, b[1])]:
            want = np.asarray(keras.ops.divide_no_nan(x, y))
            got = divide_no_nan(x, y)
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-7)
