"""TallyCallback: several workers closing the same epoch close it once and log one value."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tally_client import RemoteMetric, TallyClient
from tally_client.keras import TallyCallback


def worker(server_url: str, session: str) -> tuple[RemoteMetric, TallyCallback]:
    metric = RemoteMetric(session, "Precision", url=server_url)
    callback = TallyCallback([metric])
    callback.on_train_begin()
    return metric, callback


def test_two_workers_close_each_epoch_once_and_log_the_same_result(server_url, session_name):
    rng = np.random.default_rng(2)
    (metric_a, callback_a), (metric_b, callback_b) = (worker(server_url, session_name),
                                                      worker(server_url, session_name))
    for epoch in range(2):
        oracle = keras.metrics.Precision()
        for metric in (metric_a, metric_b):
            y_true, y_pred = rng.integers(0, 2, 30), rng.random(30)
            metric.update_state(y_true, y_pred)
            oracle.update_state(y_true, y_pred)
        logs_a: dict = {}
        logs_b: dict = {}
        callback_a.on_epoch_end(epoch, logs_a)
        callback_b.on_epoch_end(epoch, logs_b)  # second: a 409, read from the history
        expected = float(oracle.result())
        assert logs_a[session_name] == pytest.approx(expected, rel=1e-5)
        assert logs_b[session_name] == logs_a[session_name]
    with TallyClient(server_url) as client:
        assert [e["epoch"] for e in client.history(session_name)["epochs"]] == [0, 1]
        assert client.get(session_name)["epoch"] == 2


def test_a_mapping_names_the_log_keys(server_url, session_name):
    metric = RemoteMetric(session_name, "Mean", url=server_url)
    callback = TallyCallback({"shared_loss": metric})
    callback.on_train_begin()
    metric.update_state([2.0, 4.0])
    oracle = keras.metrics.Mean()
    oracle.update_state([2.0, 4.0])
    logs: dict = {}
    callback.on_epoch_end(0, logs)
    assert logs == {"shared_loss": pytest.approx(float(oracle.result()))}


def test_the_package_exposes_the_callback_lazily():
    import tally_client

    assert tally_client.TallyCallback is TallyCallback
