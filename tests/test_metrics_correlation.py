"""Keras parity for the correlation metrics: PearsonCorrelation and ConcordanceCorrelation."""

import numpy as np
import pytest

from app.errors import ConfigError, InvalidInput
from app.metrics import engine
from app.metrics.registry import REGISTRY
from tests.oracle import check_parity, keras_metric

# Keras' own divisions warn on a constant row (0/0) before the NaN is stored.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

F32 = np.float32
ALL = ["PearsonCorrelation", "ConcordanceCorrelation"]

# (y shape, sample_weight shape or None, axis), all accepted by Keras.
CASES = [
    ((6, 4), None, -1),
    ((6, 4), (6,), -1),
    ((6, 4), (6, 1), -1),
    ((6, 4), (), -1),
    ((6, 4), (6,), 1),
    ((6, 4), None, 0),  # one value per column: the column is the sample
    ((6, 4), (4,), 0),
    ((8,), None, -1),  # 1-D: the whole batch is one sample
    ((8,), (), 0),
    ((5, 3, 4), None, -1),
    ((5, 3, 4), (5,), -1),
    ((5, 3, 4), (5, 3), -1),
    ((5, 3, 4), (5,), 1),
    ((5, 3, 4), (5, 4), -2),
    ((5, 3, 4), (5,), [1, 2]),
    ((5, 3, 4), None, [-1, -2]),
    ((5, 3, 4), (3,), [0, 2]),
    ((0, 4), None, -1),
]


def make_batches(seed, shape, weight_shape=None, count=3):
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(count):
        y_true = rng.normal(size=shape)
        batch = {"y_true": y_true.astype(F32),
                 "y_pred": (0.6 * y_true + rng.normal(size=shape) + 0.3).astype(F32)}
        if weight_shape is not None:
            batch["sample_weight"] = rng.uniform(0.1, 2, size=weight_shape).astype(F32)
        batches.append(batch)
    return batches


@pytest.mark.parametrize("metric", ALL)
@pytest.mark.parametrize(("shape", "weight_shape", "axis"), CASES)
def test_parity(metric, shape, weight_shape, axis):
    check_parity(metric, {"axis": axis}, make_batches(31, shape, weight_shape))


@pytest.mark.parametrize("metric", ALL)
def test_options_and_mixed_batches(metric):
    data = [*make_batches(32, (6, 5), (6,), count=2), *make_batches(33, (7,)),
            *make_batches(34, (3, 5), ())]
    check_parity(metric, None, data)
    check_parity(metric, {"name": "custom", "dtype": "float64"}, data)
    check_parity(metric, {"axis": (-1,)}, data[:2])


@pytest.mark.parametrize("metric", ALL)
def test_rank_alignment_and_broadcasting(metric):
    rng = np.random.default_rng(35)
    data = [{"y_true": rng.normal(size=(6, 1)).astype(F32),
             "y_pred": rng.normal(size=(6,)).astype(F32)},
            {"y_true": rng.normal(size=(1, 5)).astype(F32),
             "y_pred": rng.normal(size=(4, 5)).astype(F32), "sample_weight": np.ones(4, F32)}]
    check_parity(metric, None, data)


# -- the fact sheet's worked example (§4, 22), with Keras computing the expected values ---------

EXAMPLE = {"y_true": [[0.0, 1, 0.5], [1, 1, 0.2]], "y_pred": [[0.1, 0.9, 0.5], [1, 0.9, 0.2]]}


@pytest.mark.parametrize("metric", ALL)
def test_worked_example_22(metric):
    check_parity(metric, None, [EXAMPLE])
    check_parity(metric, None, [{**EXAMPLE, "sample_weight": [0.25, 1.0]}])


# -- NaN poisoning -----------------------------------------------------------------------------


def test_a_constant_row_poisons_pearson_for_good():
    """std 0 gives 0/0 = NaN in that row; the NaN enters `total` and never leaves, in Keras as
    here. The service reports it as JSON null."""
    y_true = np.array([[1.0, 1, 1], [0, 1, 2]], F32)  # row 0 is constant
    y_pred = np.array([[0.2, 0.5, 0.1], [0, 1, 3]], F32)
    later = make_batches(36, (4, 3))
    check_parity("PearsonCorrelation", None, [{"y_true": y_true, "y_pred": y_pred}, *later])

    _, metric = REGISTRY.build("PearsonCorrelation", None)
    state: dict[str, float] = {}
    for batch in [{"y_true": y_true, "y_pred": y_pred}, *later]:
        for key, value in engine.contribution(metric, batch, None).sums.items():
            state[key] = state.get(key, 0.0) + value
    assert np.isnan(state["total:0"])
    assert state["count:0"] == 2 + 3 * 4
    assert engine.result_json(metric, state) is None
    reference = keras_metric("PearsonCorrelation")
    for batch in [{"y_true": y_true, "y_pred": y_pred}, *later]:
        reference.update_state(batch["y_true"], batch["y_pred"])
    assert np.isnan(reference.result())


def test_a_constant_row_does_not_poison_concordance():
    """The concordance denominator carries a 1e-7 epsilon: a constant row is finite."""
    y = np.array([[1.0, 1, 1], [0, 1, 2]], F32)
    check_parity("ConcordanceCorrelation", None, [{"y_true": y, "y_pred": y},
                                                  {"y_true": y, "y_pred": y[::-1].copy()}])
    _, metric = REGISTRY.build("ConcordanceCorrelation", None)
    delta = engine.contribution(metric, {"y_true": y, "y_pred": y}, None)
    assert engine.result_json(metric, delta.sums) == pytest.approx(0.5, abs=1e-6)


# -- config and bad input ----------------------------------------------------------------------


@pytest.mark.parametrize("metric", ALL)
def test_config(metric):
    for config in ({}, {"axis": 1}, {"axis": [1, 2], "name": "c", "dtype": "float64"}):
        _, ours = REGISTRY.build(metric, config)
        theirs = keras_metric(metric, config)
        assert ours.get_config() == {**theirs.get_config(), "name": ours.name}
        assert type(ours).from_config(ours.get_config()).get_config() == ours.get_config()
        assert [(v.name, v.shape, v.dtype) for v in ours.variables] == [
            (v.name, tuple(v.shape), v.dtype) for v in theirs.variables]


@pytest.mark.parametrize("metric", ALL)
@pytest.mark.parametrize("axis", ["last", 1.0, True, [], [1, "a"], None, {"0": 1}])
def test_bad_axis_config(metric, axis):
    with pytest.raises(ConfigError, match=r"axis must be an integer or a non-empty list of "
                                          r"integers; got "):
        REGISTRY.build(metric, {"axis": axis})


BAD_INPUTS = [
    # (config, y_true shape, y_pred shape, weight shape, message)
    ({}, (6, 3), (6, 4), None, r"broadcast-compatible .* y_true \[6, 3\] and y_pred \[6, 4\]"),
    ({"axis": 2}, (6, 3), (6, 3), None, r"axis 2 is out of range for y_true of rank 2"),
    ({"axis": -3}, (6, 3), (6, 3), None, r"axis -3 is out of range"),
    ({}, (), (), None, r"axis -1 is out of range for y_true of rank 0"),
    ({"axis": [1, -1]}, (6, 3), (6, 3), None, r"axis \[1, -1\] names the same axis twice"),
    ({}, (6, 3), (6, 3), (6, 3), r"sample_weight of shape \[6, 3\] cannot be broadcast"),
    ({}, (6, 3), (6, 3), (5,), r"sample_weight of shape \[5\]"),
]


@pytest.mark.parametrize("metric", ALL)
@pytest.mark.parametrize(("config", "true_shape", "pred_shape", "weight_shape", "message"),
                         BAD_INPUTS)
def test_bad_input(metric, config, true_shape, pred_shape, weight_shape, message):
    rng = np.random.default_rng(0)
    y_true = rng.normal(size=true_shape).astype(F32)
    y_pred = rng.normal(size=pred_shape).astype(F32)
    weight = None if weight_shape is None else np.ones(weight_shape, F32)
    _, ours = REGISTRY.build(metric, config)
    with pytest.raises(InvalidInput, match=message):
        engine.contribution(ours, {"y_true": y_true, "y_pred": y_pred}, weight)
    with pytest.raises((ValueError, IndexError)):  # Keras refuses the same batch
        keras_metric(metric, config).update_state(y_true, y_pred, sample_weight=weight)
