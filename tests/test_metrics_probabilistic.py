"""Keras parity for the probabilistic family (app/metrics/probabilistic.py)."""

import os

import numpy as np
import pytest

from app.errors import InvalidInput
from app.metrics import engine
from app.metrics.registry import REGISTRY
from tests.batches import (
    ALL_WEIGHTS,
    F32,
    SIZES,
    assert_config_error,
    contribution,
    make_batches,
)
from tests.oracle import check_parity, keras_metric

# Keras divides by a zero row sum at ignored positions (masked out afterwards).
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")



def weights_for(tail):
    """1-D inputs are ONE sample per batch for these loss wrappers, so only a scalar weight
    fits them (Keras raises on an (N,) weight there too; see test_bad_shapes)."""
    return (None, "scalar") if tail == () else ALL_WEIGHTS


def probabilities(rng, shape):
    """Probabilities including exact 0 and 1, so clipping at epsilon matters."""
    p = rng.random(shape)
    edge = rng.random(shape)
    return np.where(edge < 0.1, 0.0, np.where(edge > 0.9, 1.0, p))


def logits(rng, shape):
    """Mostly moderate logits, some beyond +-17 where float32 sigmoid saturates."""
    return np.where(rng.random(shape) < 0.15, rng.choice([-30, -18, 18, 30], shape),
                    rng.normal(0, 3, shape))


def cases(tails, configs):
    return [(tail, config, w) for tail in tails for config in configs for w in weights_for(tail)]


# -- BinaryCrossentropy --------------------------------------------------------------------

BCE_CONFIGS = [None, {"from_logits": True}, {"label_smoothing": 0.1},
               {"from_logits": True, "label_smoothing": 0.3}, {"label_smoothing": 1},
               {"label_smoothing": 0}, {"label_smoothing": 0.5, "name": "bce", "dtype": "float64"}]


@pytest.mark.parametrize(("tail", "config", "weight_kind"),
                         cases([(), (1,), (4,), (3, 2)], BCE_CONFIGS))
def test_binary_crossentropy_parity(tail, config, weight_kind):
    from_logits = bool(config and config.get("from_logits"))

    def make(rng, n, _step):
        shape = (n, *tail)
        y_true = np.where(rng.random(shape) < 0.7, rng.integers(0, 2, shape), rng.random(shape))
        return y_true, logits(rng, shape) if from_logits else probabilities(rng, shape)

    check_parity("BinaryCrossentropy", config, make_batches(make, weight_kind, seed=11))


# -- CategoricalCrossentropy ---------------------------------------------------------------

CCE_CONFIGS = [None, {"from_logits": True}, {"label_smoothing": 0.2},
               {"from_logits": True, "label_smoothing": 0.05}, {"label_smoothing": 1}]


def class_scores(rng, shape, from_logits):
    if from_logits:
        return logits(rng, shape)
    # Unnormalised scores with some zeros: Keras renormalises along the class axis first.
    return np.where(rng.random(shape) < 0.15, 0.0, rng.uniform(0.01, 3, shape))


def soft_labels(rng, shape, axis=-1):
    """One-hot labels along `axis`; about a third of the label vectors are soft."""
    classes_last = np.moveaxis(np.empty(shape), axis, -1).shape
    num_classes, positions = classes_last[-1], classes_last[:-1]
    hard = np.eye(num_classes)[rng.integers(0, num_classes, positions)]
    soft = rng.dirichlet(np.ones(num_classes), size=positions)
    labels = np.where(rng.random((*positions, 1)) < 0.3, soft, hard)
    return np.moveaxis(labels, -1, axis)


@pytest.mark.parametrize(("tail", "config", "weight_kind"),
                         cases([(), (4,), (3, 5)], CCE_CONFIGS))
def test_categorical_crossentropy_parity(tail, config, weight_kind):
    from_logits = bool(config and config.get("from_logits"))

    def make(rng, n, _step):
        shape = (n, *tail) if tail else (n,)
        return soft_labels(rng, shape), class_scores(rng, shape, from_logits)

    check_parity("CategoricalCrossentropy", config, make_batches(make, weight_kind, seed=12))


@pytest.mark.parametrize("config", [{"axis": 1}, {"axis": -2, "from_logits": True},
                                    {"axis": 1, "label_smoothing": 0.1},
                                    {"axis": 2, "label_smoothing": 0.1}])
@pytest.mark.parametrize("weight_kind", ALL_WEIGHTS)
def test_categorical_crossentropy_axis(config, weight_kind):
    axis = config["axis"]

    def make(rng, n, _step):
        shape = (n, 4, 3)  # classes on axis 1 (or 2): smoothing still uses the last axis' size
        return (soft_labels(rng, shape, axis),
                class_scores(rng, shape, config.get("from_logits", False)))

    check_parity("CategoricalCrossentropy", config, make_batches(make, weight_kind, seed=13))


def test_categorical_crossentropy_axis_0():
    # Keras reduces whatever axis it is given: axis 0 of (N, C) yields C "samples".
    rng = np.random.default_rng(14)
    batches = [{"y_true": np.eye(4, dtype=F32)[rng.integers(0, 4, 3)].T.copy(),
                "y_pred": rng.uniform(0.1, 1, (4, 3)).astype(F32)} for _ in range(3)]
    check_parity("CategoricalCrossentropy", {"axis": 0}, batches)


# -- SparseCategoricalCrossentropy ---------------------------------------------------------

SCCE_CONFIGS = [None, {"from_logits": True}, {"ignore_class": -1}, {"ignore_class": 0},
                {"ignore_class": 2, "from_logits": True}, {"axis": 1}]


SCCE_CASES = [
    (config, label_tail, pred_tail, weight_kind)
    for config in SCCE_CONFIGS
    for label_tail, pred_tail in [((), (5,)), ((1,), (5,)), ((3,), (3, 4))]
    for weight_kind in ALL_WEIGHTS
    # Keras' numpy backend cannot weight a masked sequence or apply a scalar weight to a mask:
    # see test_sparse_categorical_crossentropy_weighted_mask_broadcast.
    if not (config and "ignore_class" in config and weight_kind is not None
            and (len(label_tail) == 1 or weight_kind == "scalar"))
]


@pytest.mark.parametrize(("config", "label_tail", "pred_tail", "weight_kind"), SCCE_CASES)
def test_sparse_categorical_crossentropy_parity(config, label_tail, pred_tail, weight_kind):
    if config == {"axis": 1} and len(pred_tail) > 1:
        config = {"axis": 2}  # the class axis is the last one in both cases
    config = config or {}
    ignore = config.get("ignore_class")

    def make(rng, n, _step):
        labels = rng.integers(0, pred_tail[-1], size=(n, *label_tail))
        if ignore is not None:
            labels = np.where(rng.random(labels.shape) < 0.3, ignore, labels)
        return labels, class_scores(rng, (n, *pred_tail), config.get("from_logits", False))

    check_parity("SparseCategoricalCrossentropy", config,
                 make_batches(make, weight_kind, seed=15))


def test_sparse_categorical_crossentropy_all_ignored_and_mixed_weights():
    y_pred = np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]], F32)
    check_parity("SparseCategoricalCrossentropy", {"ignore_class": 1}, [
        {"y_true": np.array([1, 1], F32), "y_pred": y_pred},
        {"y_true": np.array([1, 1], F32), "y_pred": y_pred,
         "sample_weight": np.array([1, 2], F32)},
        {"y_true": np.array([[0], [1]], F32), "y_pred": y_pred,
         "sample_weight": np.array([[3], [2]], F32)},
    ])


def test_sparse_categorical_crossentropy_non_last_axis():
    # Keras needs y_true.shape == y_pred.shape[:-1] even for another class axis, so a
    # non-last axis only runs when the shapes happen to line up (here 3 x 3); we follow it.
    rng = np.random.default_rng(16)
    batches = [{"y_true": rng.integers(0, 3, (4, 3)).astype(F32),
                "y_pred": rng.uniform(0.1, 1, (4, 3, 3)).astype(F32)} for _ in range(2)]
    check_parity("SparseCategoricalCrossentropy", {"axis": 1}, batches)
    check_parity("SparseCategoricalCrossentropy", {"axis": -2, "from_logits": True}, batches)


@pytest.mark.parametrize(("label_tail", "weight_shape"),
                         [((), ()), ((1,), ()), ((4,), ()), ((4,), (1,))])
def test_sparse_categorical_crossentropy_weighted_mask_broadcast(label_tail, weight_shape):
    """With ignore_class, Keras multiplies the mask into the weight in place (`w *= mask`):
    the numpy backend raises when the weight is smaller than the mask (a scalar weight, or
    an (N, 1) weight for (N, T) sequence labels), where JAX/TF broadcast the weight over the
    mask. We broadcast too, and check it against Keras given the already broadcast weight."""
    rng = np.random.default_rng(17)
    config = {"ignore_class": -1}
    reference = keras_metric("SparseCategoricalCrossentropy", config)
    _, metric = REGISTRY.build("SparseCategoricalCrossentropy", config)
    state: dict[str, float] = {}
    for n in SIZES:
        labels = rng.integers(0, 3, (n, *label_tail))
        y_true = np.where(rng.random(labels.shape) < 0.3, -1, labels).astype(F32)
        y_pred = rng.uniform(0.1, 1, (*y_true.shape[:2], 3)).astype(F32)
        w = rng.uniform(0.5, 2, (n, *weight_shape) if weight_shape else ()).astype(F32)
        full = np.broadcast_to(w, y_true.shape[:2] if label_tail != (1,) else (n,)).copy()
        reference.update_state(y_true, y_pred, sample_weight=full)
        delta = engine.contribution(metric, {"y_true": y_true, "y_pred": y_pred}, w)
        for key, value in delta.sums.items():
            state[key] = state.get(key, 0.0) + value
        ours = engine.variables_json(metric, state)
        for variable, theirs in zip(ours, reference.variables, strict=True):
            np.testing.assert_allclose(variable["value"], np.asarray(theirs), rtol=1e-5)
        np.testing.assert_allclose(engine.result_json(metric, state), reference.result(),
                                   rtol=1e-5)


def test_sparse_categorical_crossentropy_masked_sequence_rejects_per_row_weight():
    # (N, T) labels with an (N,) weight: Keras cannot align the mask and the weight either.
    with pytest.raises(InvalidInput):
        contribution("SparseCategoricalCrossentropy", {"ignore_class": -1},
                     np.zeros((2, 3)), np.ones((2, 3, 4)), np.ones(2, F32))


# -- KLDivergence and Poisson --------------------------------------------------------------


@pytest.mark.parametrize(("tail", "weight_kind"),
                         [(t, w) for t in [(), (1,), (4,), (3, 2)] for w in weights_for(t)])
def test_kl_divergence_parity(tail, weight_kind):
    def make(rng, n, _step):
        shape = (n, *tail)
        # Values outside [0, 1] are clipped to [eps, 1] on both sides.
        return probabilities(rng, shape), rng.uniform(-0.2, 1.3, shape)

    check_parity("KLDivergence", None, make_batches(make, weight_kind, seed=18))


@pytest.mark.parametrize(("tail", "weight_kind"),
                         [(t, w) for t in [(), (1,), (4,), (3, 2)] for w in weights_for(t)])
def test_poisson_parity(tail, weight_kind):
    def make(rng, n, _step):
        shape = (n, *tail)
        rates = np.where(rng.random(shape) < 0.1, 0.0, rng.uniform(0.05, 5, shape))
        return rng.poisson(2, shape), rates

    check_parity("Poisson", None, make_batches(make, weight_kind, seed=19))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_metric_dtype(dtype):
    def make(rng, n, _step):
        return rng.integers(0, 3, n), rng.uniform(0.1, 1, (n, 3))

    check_parity("SparseCategoricalCrossentropy", {"dtype": dtype},
                 make_batches(make, "n", seed=20))


def test_empty_batches():
    full = {"y_true": np.array([[0, 1], [1, 0]], F32), "y_pred": np.array([[0.3, 0.7]] * 2, F32)}
    empty = {"y_true": np.zeros((0, 2), F32), "y_pred": np.zeros((0, 2), F32)}
    for name in ("BinaryCrossentropy", "CategoricalCrossentropy", "KLDivergence", "Poisson"):
        check_parity(name, None, [full, empty, full])
        check_parity(name, {"name": None}, [full])  # None means the default name


@pytest.mark.parametrize("name", ["binary_crossentropy", "bce", "BCE", "categorical_crossentropy",
                                  "sparse_categorical_crossentropy", "kl_divergence", "poisson"])
def test_names_resolve(name):
    assert REGISTRY.resolve(name).cls.__module__ == "app.metrics.probabilistic"


# -- worked examples (KERAS_METRICS.md sections 2.2 and 4) --------------------------------


def test_worked_examples():
    bce = {"y_true": np.array([[0, 1], [0, 0]], F32),
           "y_pred": np.array([[0.6, 0.4], [0.4, 0.6]], F32)}
    for config in (None, {"from_logits": True}, {"label_smoothing": 0.1}):  # #13
        check_parity("BinaryCrossentropy", config, [bce])
    check_parity("BinaryCrossentropy", None, [{  # float32-asymmetric clipping: 16.03024
        "y_true": np.array([[1, 0]], F32), "y_pred": np.array([[0, 1]], F32)}])
    cce = {"y_true": np.array([[0, 1, 0], [0, 0, 1]], F32),
           "y_pred": np.array([[0.05, 0.95, 0], [0.1, 0.8, 0.1]], F32)}
    for config in ({"label_smoothing": 0.1}, None, {"from_logits": True}):  # #14
        check_parity("CategoricalCrossentropy", config, [cce])
    scce = {"y_true": np.array([1, 2], F32),
            "y_pred": np.array([[0.05, 0.95, 0], [0.1, 0.8, 0.1]], F32)}
    check_parity("SparseCategoricalCrossentropy", {"ignore_class": 2}, [scce])  # count 2
    check_parity("SparseCategoricalCrossentropy", {"ignore_class": 2},  # count 1
                 [{**scce, "sample_weight": np.array([1, 1], F32)}])
    check_parity("KLDivergence", None, [bce])
    check_parity("Poisson", None, [{"y_true": np.array([[0, 1], [0, 0]], F32),
                                    "y_pred": np.array([[1, 1], [0, 0]], F32)}])


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "config", "expected"), [
    ("BinaryCrossentropy", {"from_logits": "true"}, "from_logits must be true or false"),
    ("BinaryCrossentropy", {"from_logits": 1}, "from_logits must be true or false"),
    ("BinaryCrossentropy", {"label_smoothing": -0.1}, r"label_smoothing must be .* \[0, 1\]"),
    ("BinaryCrossentropy", {"label_smoothing": 1.5}, r"label_smoothing must be .* \[0, 1\]"),
    ("CategoricalCrossentropy", {"label_smoothing": "0.1"}, "label_smoothing must be"),
    ("CategoricalCrossentropy", {"label_smoothing": True}, "label_smoothing must be"),
    ("CategoricalCrossentropy", {"axis": 1.0}, "axis must be an integer"),
    ("CategoricalCrossentropy", {"axis": True}, "axis must be an integer"),
    ("SparseCategoricalCrossentropy", {"axis": "last"}, "axis must be an integer"),
    ("SparseCategoricalCrossentropy", {"ignore_class": 1.5}, "ignore_class must be an integer"),
    ("SparseCategoricalCrossentropy", {"ignore_class": False}, "ignore_class must be"),
    ("SparseCategoricalCrossentropy", {"ignore_class": "0"}, "ignore_class must be"),
    ("KLDivergence", {"dtype": "int8"}, "dtype must be one of"),
    ("Poisson", {"from_logits": True}, "unknown config key"),
])
def test_bad_config(name, config, expected):
    assert_config_error(name, config, expected)


SCORES = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]], F32)


@pytest.mark.parametrize(("config", "y_true", "expected"), [
    (None, [1, 3], r"\[0, 3\)"),
    (None, [-1, 0], r"\[0, 3\)"),
    (None, [[0.5], [1]], "integer class ids"),
    (None, [np.nan, 1], "integer class ids"),
    ({"ignore_class": -1}, [-2, -1], "or the ignore_class -1"),
    ({"ignore_class": 5}, [5, 3], "or the ignore_class 5"),
])
def test_bad_sparse_labels(config, y_true, expected):
    with pytest.raises(InvalidInput, match=expected):
        contribution("SparseCategoricalCrossentropy", config, y_true, SCORES)


def test_ignore_class_labels_may_be_out_of_range():
    contribution("SparseCategoricalCrossentropy", {"ignore_class": -1}, [-1, 2], SCORES)
    contribution("SparseCategoricalCrossentropy", {"ignore_class": 7}, [7, 0], SCORES)


@pytest.mark.parametrize(("name", "config", "y_true", "y_pred", "weight", "expected"), [
    ("BinaryCrossentropy", None, np.zeros(3), np.zeros((3, 1)), None, "same shape"),
    ("BinaryCrossentropy", None, np.zeros(3), np.zeros(3), np.ones(3), "cannot be broadcast"),
    ("CategoricalCrossentropy", None, np.zeros((2, 3)), np.zeros((2, 4)), None, "same shape"),
    ("CategoricalCrossentropy", {"axis": 2}, np.zeros((2, 3)), np.zeros((2, 3)), None,
     "axis 2 is out of range"),
    ("CategoricalCrossentropy", None, np.eye(2), np.eye(2), np.ones((2, 2)),
     "cannot be broadcast"),
    ("SparseCategoricalCrossentropy", None, np.zeros((2, 2)), np.ones((2, 3)), None,
     r"y_pred.shape\[:-1\]"),
    ("SparseCategoricalCrossentropy", {"axis": 1}, np.zeros((2, 4)), np.ones((2, 3, 4)), None,
     r"y_pred.shape\[:-1\]"),
    ("SparseCategoricalCrossentropy", {"axis": -3}, np.zeros(2), np.ones((2, 3)), None,
     "out of range"),
    ("KLDivergence", None, np.zeros((2, 3)), np.zeros((2, 4)), None, "broadcast-compatible"),
    ("Poisson", None, 0.5, 0.5, None, "rank >= 1"),
])
def test_bad_shapes(name, config, y_true, y_pred, weight, expected):
    weight = None if weight is None else np.asarray(weight, F32)
    with pytest.raises(InvalidInput, match=expected):
        contribution(name, config, y_true, y_pred, weight)


def test_oracle_backend_is_numpy():
    # The expectations above are the numpy backend's (see the from_logits clipping note).
    assert os.environ["KERAS_BACKEND"] == "numpy"
