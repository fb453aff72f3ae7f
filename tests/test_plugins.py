"""Custom metrics: the Keras guide's examples installed as a package (entry points), a
TALLY_PLUGINS module with max/min aggregations and a stateless function, MeanMetricWrapper with
a named function, and the refusal of metrics Tally cannot serve."""

from __future__ import annotations

import asyncio
import os

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.errors import ConfigError
from app.metrics.plugins import load_plugins
from app.metrics.registry import builtin_registry
from app.settings import Settings
from app.store.memory import MemoryStore
from tests.oracle import keras_update

os.environ.setdefault("KERAS_BACKEND", "numpy")
import keras  # noqa: E402


@pytest.fixture
def client():
    settings = Settings(plugins="tests.plugin_samples")
    with TestClient(create_app(settings, store=MemoryStore())) as c:
        yield c


def post(client, name, **body):
    r = client.post(f"/v1/sessions/{name}/update", json=body)
    assert r.status_code == 200, r.text
    return r


def result(client, name):
    return client.get(f"/v1/sessions/{name}/result").json()["result"]


def test_entry_point_plugins_are_registered():
    registry = builtin_registry()
    loaded = load_plugins(registry)
    assert any("huber" in origin for origin in loaded)
    assert registry.resolve("HuberMetric").builtin is False
    assert registry.resolve("binary_true_positives").name == "BinaryTruePositives"


def test_catalogue_lists_plugins_like_builtins(client):
    metrics = {m["name"]: m for m in client.get("/v1/metrics").json()["metrics"]}
    assert metrics["HuberMetric"]["config"] == {"name": "huber_metric", "dtype": "float32",
                                                "threshold": 1.0}
    assert metrics["HuberMetric"]["inputs"] == ["y_true", "y_pred"]
    assert metrics["BinaryTruePositives"]["config"]["name"] == "binary_true_positives"
    assert metrics["MaxAbsoluteError"]["inputs"] == ["y_true", "y_pred"]
    assert metrics["smape"]["config"] == {"name": "smape", "dtype": "float32", "epsilon": 1e-7}


def huber_by_hand(y_true, y_pred, threshold):
    """Independent of the plugin: the textbook Huber loss, element by element."""
    out = []
    for t, p in zip(np.ravel(y_true), np.ravel(y_pred), strict=True):
        e = abs(t - p)
        out.append(0.5 * e * e if e < threshold else threshold * e - 0.5 * threshold**2)
    return out


def test_huber_example_through_the_api(client):
    assert client.put("/v1/sessions/h", json={"metric": "HuberMetric",
                                              "config": {"threshold": 2.0}}).status_code == 201
    assert client.get("/v1/sessions/h/config").json() == {"name": "huber_metric",
                                                          "dtype": "float32", "threshold": 2.0}
    rng = np.random.default_rng(3)
    losses = []
    for n in (5, 9):
        y_true, y_pred = rng.normal(0, 3, (n, 2)), rng.normal(0, 3, (n, 2))
        post(client, "h", y_true=y_true.tolist(), y_pred=y_pred.tolist())
        losses += huber_by_hand(y_true, y_pred, 2.0)
        assert result(client, "h") == pytest.approx(sum(losses) / len(losses), rel=1e-5)
    variables = client.get("/v1/sessions/h/variables").json()["variables"]
    assert [(v["name"], v["value"]) for v in variables][1] == ("count", 28.0)


def test_binary_true_positives_example_matches_keras_true_positives(client):
    client.put("/v1/sessions/btp", json={"metric": "BinaryTruePositives"})
    reference = keras.metrics.TruePositives(thresholds=0.0)
    rng = np.random.default_rng(4)
    for _ in range(3):
        batch = {"y_true": rng.integers(0, 2, 8).tolist(),
                 "y_pred": (rng.integers(0, 2, 8) * rng.uniform(0.1, 1, 8)).tolist(),
                 "sample_weight": rng.uniform(0, 2, 8).tolist()}
        post(client, "btp", **batch)
        keras_update(reference, batch)
        assert result(client, "btp") == pytest.approx(float(reference.result()), rel=1e-5)


def test_max_and_min_aggregations(client):
    client.put("/v1/sessions/mx", json={"metric": "MaxAbsoluteError"})
    post(client, "mx", y_true=[1.0, 2.0], y_pred=[1.5, 0.0])
    post(client, "mx", y_true=[1.0], y_pred=[0.75])
    post(client, "mx", y_true=[10.0, 3.0], y_pred=[7.0, 3.125])
    variables = {v["name"]: v["value"] for v in
                 client.get("/v1/sessions/mx/variables").json()["variables"]}
    assert variables == {"largest": 3.0, "smallest": 0.125}
    client.post("/v1/sessions/mx/reset")
    variables = {v["name"]: v["value"] for v in
                 client.get("/v1/sessions/mx/variables").json()["variables"]}
    assert variables == {"largest": None, "smallest": None}  # back to -inf / inf (not JSON)


def test_stateless_function_is_a_mean_over_all_samples(client):
    client.put("/v1/sessions/s", json={"metric": "smape"})
    first = ([[1.0, 2.0]] * 1, [[1.5, 2.0]] * 1)
    second = ([[4.0, 4.0]] * 3, [[2.0, 4.0]] * 3)
    post(client, "s", y_true=first[0], y_pred=first[1])
    post(client, "s", y_true=second[0], y_pred=second[1])
    per_sample = [200 * np.mean([0.5 / 2.5, 0.0])] + [200 * np.mean([2 / 6, 0.0])] * 3
    assert result(client, "s") == pytest.approx(np.mean(per_sample), rel=1e-5)
    batch_means = np.mean([per_sample[0], np.mean(per_sample[1:])])
    assert result(client, "s") != pytest.approx(batch_means, rel=1e-3)


def test_mean_metric_wrapper_with_a_keras_function(client):
    config = {"fn": "binary_accuracy", "threshold": 0.3}
    doc = client.put("/v1/sessions/w", json={"metric": "MeanMetricWrapper", "config": config})
    assert doc.status_code == 201, doc.text
    assert doc.json()["config"] == {"name": "mean_metric_wrapper", "dtype": "float32",
                                    "fn": "binary_accuracy", "threshold": 0.3}
    reference = keras.metrics.MeanMetricWrapper(fn=keras.metrics.binary_accuracy, threshold=0.3)
    rng = np.random.default_rng(5)
    for _ in range(3):
        batch = {"y_true": rng.integers(0, 2, (6, 3)).tolist(),
                 "y_pred": rng.uniform(size=(6, 3)).tolist()}
        post(client, "w", **batch)
        keras_update(reference, batch)
        assert result(client, "w") == pytest.approx(float(reference.result()), rel=1e-5)
    rebuilt = keras.metrics.MeanMetricWrapper.from_config(
        client.get("/v1/sessions/w/config").json())
    assert rebuilt.get_config()["threshold"] == 0.3
    assert client.put("/v1/sessions/w2", json={"metric": "MeanMetricWrapper",
                                               "config": {"fn": "smape"}}).status_code == 201


@pytest.mark.parametrize(("config", "fragment"), [
    ({}, "fn"),
    ({"fn": "no_such_function"}, "no_such_function"),
    ({"fn": "binary_accuracy", "k": 3}, "'k'"),
])
def test_mean_metric_wrapper_bad_config(client, config, fragment):
    r = client.put("/v1/sessions/bad", json={"metric": "MeanMetricWrapper", "config": config})
    assert r.status_code == 422 and fragment in r.json()["detail"]


def test_update_that_is_not_an_increment_is_refused_at_first_use(client):
    client.put("/v1/sessions/ema", json={"metric": "ExponentialAverage"})
    r = client.post("/v1/sessions/ema/update", json={"values": [1.0, 3.0]})
    assert r.status_code == 422
    assert "not a 'sum' aggregation" in r.json()["detail"]
    assert client.get("/v1/sessions/ema/variables").json()["variables"][0]["value"] == 0.0


def test_unsupported_aggregation_is_refused_when_loaded():
    with pytest.raises(ConfigError, match="median"):
        load_plugins(builtin_registry(), ["tests.plugin_bad"], entry_points=False)
    with pytest.raises(ConfigError, match="no_such_module"):
        load_plugins(builtin_registry(), ["no_such_module"], entry_points=False)


def test_plugin_name_cannot_shadow_a_builtin():
    from app.metrics.reduction import Mean
    with pytest.raises(ConfigError, match="taken"):
        builtin_registry().register(type("Precision", (Mean,), {}), builtin=False)


async def test_examples_split_across_concurrent_clients(live_servers):
    """The live servers find the example plugins through their entry points."""
    rng = np.random.default_rng(6)
    batches = [(rng.normal(0, 2, (4, 3)), rng.normal(0, 2, (4, 3))) for _ in range(12)]
    name = f"plugins.huber.{rng.integers(10**9)}"
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.put(f"{live_servers[0]}/v1/sessions/{name}",
                             json={"metric": "HuberMetric", "config": {"threshold": 1.5}})
        assert r.status_code == 201, r.text

        async def send(i, y_true, y_pred):
            r = await client.post(f"{live_servers[i % 2]}/v1/sessions/{name}/update",
                                  json={"y_true": y_true.tolist(), "y_pred": y_pred.tolist()})
            assert r.status_code == 200, r.text

        await asyncio.gather(*(send(i, t, p) for i, (t, p) in enumerate(batches)))
        got = (await client.get(f"{live_servers[1]}/v1/sessions/{name}/result")).json()
    losses = [x for t, p in batches for x in huber_by_hand(t, p, 1.5)]
    assert got["result"] == pytest.approx(sum(losses) / len(losses), rel=1e-5)


def test_plugin_shape_error_on_a_checked_batch_is_a_422(client):
    """The first batches of a plugin are checked for additivity; numpy's shape errors during
    that check are still the caller's bad input, not a server error."""
    client.put("/v1/sessions/mx2", json={"metric": "MaxAbsoluteError"})
    r = client.post("/v1/sessions/mx2/update", json={"y_true": [1.0, 2.0, 3.0],
                                                     "y_pred": [1.0, 2.0]})
    assert r.status_code == 422 and "MaxAbsoluteError cannot take this batch" in r.json()["detail"]
    variables = client.get("/v1/sessions/mx2/variables").json()["variables"]
    assert [v["value"] for v in variables] == [None, None]
