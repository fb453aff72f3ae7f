"""RemoteMetric behaves as the Keras metric it replaces (Keras is the oracle, numpy backend):
results after every batch, variables, get_config, merge_state, reset_state."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tally_client import RemoteMetric

RTOL = 1e-5
ATOL = 1e-5  # float32 sums: Keras leaves ~1e-6 residues where exact arithmetic gives 0


@pytest.fixture(autouse=True)
def fresh_keras_names():
    """Keras numbers the default names of a class's later instances (`auc_1`): start afresh
    so that the local metric has the default name the session has."""
    keras.backend.clear_session()


def binary(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    return rng.integers(0, 2, n), rng.random(n).astype(np.float32), rng.random(n)


def sparse(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    return rng.integers(0, 4, n), rng.random((n, 4)).astype(np.float32), rng.random(n)


def one_hot(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    return np.eye(3)[rng.integers(0, 3, n)], rng.random((n, 3)).astype(np.float32), None


def regression(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    return rng.normal(size=(n, 2)), rng.normal(size=(n, 2)), rng.random(n)


CASES = [
    ("AUC", {"num_thresholds": 50}, binary),
    ("AUC", {"num_thresholds": 20, "curve": "PR"}, binary),
    ("Precision", {"thresholds": [0.3, 0.7]}, binary),  # a tensor result
    ("SparseTopKCategoricalAccuracy", {"k": 2}, sparse),
    ("F1Score", {"average": None, "threshold": 0.5}, one_hot),  # a tensor result
    ("MeanSquaredError", {}, regression),
]


def assert_like_keras(remote: RemoteMetric, local: keras.metrics.Metric) -> None:
    expected = np.asarray(local.result())
    got = remote.result()
    if expected.ndim == 0:
        assert isinstance(got, float)
        assert got == pytest.approx(float(expected), rel=RTOL, abs=ATOL)
    else:
        assert isinstance(got, np.ndarray) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(("metric", "config", "batches"), CASES,
                         ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(CASES)])
def test_results_variables_and_config_match_keras(server_url, session_name, metric, config,
                                                 batches):
    rng = np.random.default_rng(7)
    local = getattr(keras.metrics, metric)(**config)
    with RemoteMetric(session_name, metric, config, url=server_url) as remote:
        for size in (16, 1, 40):
            y_true, y_pred, weight = batches(rng, size)
            local.update_state(y_true, y_pred, sample_weight=weight)
            remote.update_state(y_true, y_pred, sample_weight=weight)
            assert_like_keras(remote, local)
        assert remote.get_config() == local.get_config()
        remote_variables = remote.variables
        assert [v.name for v in remote_variables] == [v.name for v in local.variables]
        for mine, theirs in zip(remote_variables, local.variables, strict=True):
            assert mine.shape == tuple(theirs.shape) and mine.dtype == theirs.dtype
            np.testing.assert_allclose(mine.numpy(), np.asarray(theirs), rtol=RTOL, atol=ATOL)


def test_mean_takes_values_and_sample_weight_positionally(server_url, session_name):
    local = keras.metrics.Mean()
    remote = RemoteMetric(session_name, "Mean", url=server_url)
    for values, weight in (([1.0, 3.0, 5.0, 7.0], [1, 1, 0, 0]), ([2.0], None)):
        local.update_state(values, weight)
        remote.update_state(values, weight)
    assert remote.inputs == ("values",)
    assert_like_keras(remote, local)


def test_a_keras_instance_can_be_given_instead_of_a_class_name(server_url, session_name):
    local = keras.metrics.AUC(num_thresholds=30, name="val_auc")
    remote = RemoteMetric(session_name, local, url=server_url)
    y_true, y_pred, _ = binary(np.random.default_rng(3), 50)
    local.update_state(y_true, y_pred)
    assert remote(y_true, y_pred) == pytest.approx(float(local.result()), rel=RTOL)
    assert remote.get_config() == local.get_config()


def test_merge_state_from_keras_metrics_remote_metrics_and_dicts(server_url, session_name):
    rng = np.random.default_rng(11)
    shards = [binary(rng, 30) for _ in range(4)]
    whole = keras.metrics.AUC(num_thresholds=40)
    for y_true, y_pred, weight in shards:
        whole.update_state(y_true, y_pred, sample_weight=weight)

    remote = RemoteMetric(session_name, "AUC", {"num_thresholds": 40}, url=server_url)
    remote.update_state(*shards[0][:2], sample_weight=shards[0][2])
    local = keras.metrics.AUC(num_thresholds=40)
    local.update_state(*shards[1][:2], sample_weight=shards[1][2])
    other = RemoteMetric(session_name + ".other", "AUC", {"num_thresholds": 40},
                         url=server_url)
    other.update_state(*shards[2][:2], sample_weight=shards[2][2])
    as_dict = keras.metrics.AUC(num_thresholds=40)
    as_dict.update_state(*shards[3][:2], sample_weight=shards[3][2])
    remote.merge_state([local, other, {v.name: np.asarray(v) for v in as_dict.variables}])
    assert_like_keras(remote, whole)


def test_reset_state_closes_the_epoch_like_keras_resets(server_url, session_name):
    local = keras.metrics.Precision()
    remote = RemoteMetric(session_name, "Precision", url=server_url)
    remote.update_state([0, 1, 1, 1, 0, 1, 0, 1], [1, 1, 0, 1, 0, 1, 0, 1])
    local.update_state([0, 1, 1, 1, 0, 1, 0, 1], [1, 1, 0, 1, 0, 1, 0, 1])
    first = float(local.result())
    answer = remote.reset_state()
    assert answer["closed"]["result"] == pytest.approx(first, rel=RTOL)
    assert remote.epoch == 1
    local.reset_state()
    remote.update_state([0, 1, 0, 0, 1, 0, 1, 1], [1, 0, 1, 1, 0, 0, 0, 0])
    local.update_state([0, 1, 0, 0, 1, 0, 1, 1], [1, 0, 1, 1, 0, 0, 0, 0])
    assert_like_keras(remote, local)
    assert [h["epoch"] for h in remote.history()] == [0]


def test_background_mode_matches_keras_after_flush(server_url, session_name):
    rng = np.random.default_rng(5)
    local = keras.metrics.AUC(num_thresholds=60)
    errors: list[BaseException] = []
    with RemoteMetric(session_name, "AUC", {"num_thresholds": 60}, url=server_url,
                      background=True, on_error=lambda e, _: errors.append(e)) as remote:
        for _ in range(20):
            y_true, y_pred, weight = binary(rng, 25)
            local.update_state(y_true, y_pred, sample_weight=weight)
            remote.update_state(y_true, y_pred, sample_weight=weight)
        assert_like_keras(remote, local)
    assert errors == []
