"""Keras parity for the hinge family (app/metrics/hinge.py)."""

import numpy as np
import pytest

from app.errors import ConfigError, InvalidInput
from app.metrics import engine
from app.metrics.registry import REGISTRY
from tests.batches import ALL_WEIGHTS, F32, make_batches
from tests.oracle import check_parity


def weights_for(tail):
    """1-D inputs are one sample per batch, so only a scalar weight fits them."""
    return (None, "scalar") if tail == () else ALL_WEIGHTS


# Label conventions per batch: {0,1} is converted to {-1,+1} only when the whole batch is
# binary, so the batches alternate conventions.
LABELINGS = {
    "signed": lambda rng, shape, step: rng.choice([-1, 1], shape),
    "binary": lambda rng, shape, step: rng.integers(0, 2, shape),
    "alternating": lambda rng, shape, step: (rng.integers(0, 2, shape) if step % 2 == 0
                                             else rng.choice([-1, 0, 1], shape)),
    "soft": lambda rng, shape, step: rng.uniform(-1, 1, shape),
}


@pytest.mark.parametrize("name", ["Hinge", "SquaredHinge"])
@pytest.mark.parametrize("labeling", sorted(LABELINGS))
@pytest.mark.parametrize(("tail", "weight_kind"),
                         [(t, w) for t in [(), (1,), (4,), (3, 2)] for w in weights_for(t)])
def test_hinge_parity(name, labeling, tail, weight_kind):
    def make(rng, n, step):
        shape = (n, *tail)
        return LABELINGS[labeling](rng, shape, step), rng.normal(0, 1.5, shape)

    check_parity(name, None, make_batches(make, weight_kind, seed=21))


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize(("tail", "weight_kind"),
                         [(t, w) for t in [(), (4,), (3, 5)] for w in weights_for(t)])
def test_categorical_hinge_parity(soft, tail, weight_kind):
    def make(rng, n, step):
        shape = (n, *tail) if tail else (n,)
        labels = np.eye(shape[-1])[rng.integers(0, shape[-1], shape[:-1])]
        if soft:
            labels = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
        return labels, rng.normal(0, 1.5, shape)

    check_parity("CategoricalHinge", None, make_batches(make, weight_kind, seed=22))


@pytest.mark.parametrize("name", ["Hinge", "SquaredHinge", "CategoricalHinge"])
def test_dtype_name_and_empty_batch(name):
    full = {"y_true": np.array([[0, 1], [1, 0]], F32), "y_pred": np.array([[0.3, 0.7]] * 2, F32)}
    empty = {"y_true": np.zeros((0, 2), F32), "y_pred": np.zeros((0, 2), F32)}
    check_parity(name, {"dtype": "float64", "name": "margin"}, [full, empty, full])
    check_parity(name, {"name": None}, [full])  # None means the default name, as in Keras


# -- worked examples (KERAS_METRICS.md sections 2.7 and 4) --------------------------------

FIRST = {"y_true": np.array([[0, 1]], F32), "y_pred": np.array([[0.6, 0.4]], F32)}
SECOND = {"y_true": np.array([[-1, 0]], F32), "y_pred": np.array([[0.4, 0.6]], F32)}
BOTH = {k: np.concatenate([FIRST[k], SECOND[k]]) for k in FIRST}


@pytest.mark.parametrize("name", ["Hinge", "SquaredHinge", "CategoricalHinge"])
def test_worked_example_split_vs_one_batch(name):
    check_parity(name, None, [FIRST, SECOND])  # Hinge: 1.15
    check_parity(name, None, [BOTH])  # Hinge: 1.0, the labels of one batch convert together


def test_split_dependence_is_kept():
    """The per-batch label conversion makes Hinge depend on how data is cut into batches."""
    def result(batches):
        _, metric = REGISTRY.build("Hinge", None)
        state: dict[str, float] = {}
        for batch in batches:
            for key, value in engine.contribution(metric, batch, None).sums.items():
                state[key] = state.get(key, 0.0) + value
        return engine.result_json(metric, state)

    assert result([FIRST, SECOND]) != pytest.approx(result([BOTH]))


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "config", "expected"), [
    ("Hinge", {"dtype": "int8"}, "dtype must be one of"),
    ("SquaredHinge", {"name": 5}, "name must be a string or null; got 5"),
    ("CategoricalHinge", {"from_logits": True}, "unknown config key"),
])
def test_bad_config(name, config, expected):
    with pytest.raises(ConfigError, match=expected):
        REGISTRY.build(name, config)


@pytest.mark.parametrize(("name", "y_true", "y_pred", "weight", "expected"), [
    ("Hinge", np.zeros((2, 3)), np.zeros((2, 4)), None, "broadcast-compatible"),
    ("SquaredHinge", 1.0, 0.5, None, "rank >= 1"),
    ("Hinge", np.zeros((3, 2)), np.zeros((3, 2)), np.ones((3, 2)), "cannot be broadcast"),
    ("CategoricalHinge", np.zeros((2, 0)), np.zeros((2, 0)), None, "at least one class"),
    ("CategoricalHinge", np.zeros((2, 3)), np.zeros((3, 3)), None, "broadcast-compatible"),
])
def test_bad_shapes(name, y_true, y_pred, weight, expected):
    _, metric = REGISTRY.build(name, None)
    inputs = {"y_true": np.asarray(y_true, F32), "y_pred": np.asarray(y_pred, F32)}
    with pytest.raises(InvalidInput, match=expected):
        engine.contribution(metric, inputs, None if weight is None else np.asarray(weight, F32))
