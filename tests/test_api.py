"""The HTTP contract (shared/API.md) through the API, on the memory and the Redis store."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.settings import Settings


@pytest.fixture
def client(api_store):
    with TestClient(create_app(Settings(max_body_bytes=100_000), store=api_store)) as c:
        yield c


def put(client, name="s1", metric="Mean", **body):
    return client.put(f"/v1/sessions/{name}", json={"metric": metric, **body})


def variables(client, name="s1"):
    return {v["name"]: v["value"] for v in client.get(f"/v1/sessions/{name}/variables")
            .json()["variables"]}


def test_create_is_idempotent_and_conflicts_on_other_config(client):
    first = put(client, config={"name": "loss"})
    assert first.status_code == 201
    doc = first.json()
    assert doc["name"] == "s1" and doc["metric"] == "Mean" and doc["epoch"] == 0
    assert doc["config"] == {"name": "loss", "dtype": "float32"}
    assert doc["variables"] == [{"name": "total", "shape": [], "dtype": "float32"},
                                {"name": "count", "shape": [], "dtype": "float32"}]
    assert doc["created_at"].endswith("Z")
    again = put(client, config={"name": "loss"})
    assert again.status_code == 200 and again.json() == doc
    conflict = put(client, config={"name": "other"})
    assert conflict.status_code == 409
    assert "loss" in conflict.json()["detail"] and "other" in conflict.json()["detail"]
    assert put(client, metric="Sum").status_code == 409


def test_aliases_resolve_to_canonical_class(client):
    assert put(client, "a", metric="mean").json()["metric"] == "Mean"
    assert put(client, "b", metric="sum").json()["metric"] == "Sum"


def test_lifecycle_update_result_reset_history(client):
    put(client)
    r = client.post("/v1/sessions/s1/update", json={"values": [1, 3, 5, 7],
                                                    "sample_weight": [1, 1, 0, 0]})
    assert r.status_code == 200 and r.json() == {"epoch": 0, "samples": 4}
    assert client.get("/v1/sessions/s1/result").json() == {"name": "s1", "epoch": 0,
                                                           "result": 2.0}
    assert variables(client) == {"total": 4.0, "count": 2.0}
    assert client.get("/v1/sessions/s1").json()["result"] == 2.0
    reset = client.post("/v1/sessions/s1/reset")
    assert reset.status_code == 200
    assert reset.json()["epoch"] == 1
    assert reset.json()["closed"]["epoch"] == 0 and reset.json()["closed"]["result"] == 2.0
    assert variables(client) == {"total": 0.0, "count": 0.0}
    client.post("/v1/sessions/s1/update", json={"values": [10.0]})
    client.post("/v1/sessions/s1/reset", json={"epoch": 1})
    history = client.get("/v1/sessions/s1/history").json()
    assert history["name"] == "s1"
    assert [(e["epoch"], e["result"]) for e in history["epochs"]] == [(0, 2.0), (1, 10.0)]
    assert all(e["closed_at"].endswith("Z") for e in history["epochs"])


def test_reset_epoch_precondition(client):
    put(client)
    assert client.post("/v1/sessions/s1/reset", json={"epoch": 0}).status_code == 200
    late = client.post("/v1/sessions/s1/reset", json={"epoch": 0})
    assert late.status_code == 409 and late.json()["current_epoch"] == 1
    assert client.get("/v1/sessions/s1").json()["epoch"] == 1


def test_epoch_precondition_on_update(client):
    put(client)
    client.post("/v1/sessions/s1/reset")
    stale = client.post("/v1/sessions/s1/update", json={"values": [5.0], "epoch": 0})
    assert stale.status_code == 409
    assert variables(client) == {"total": 0.0, "count": 0.0}
    ok = client.post("/v1/sessions/s1/update", json={"values": [5.0], "epoch": 1})
    assert ok.json() == {"epoch": 1, "samples": 1}


def test_idempotency_key_applies_once(client):
    put(client)
    headers = {"Idempotency-Key": "batch-17"}
    first = client.post("/v1/sessions/s1/update", json={"values": [2.0, 4.0]}, headers=headers)
    second = client.post("/v1/sessions/s1/update", json={"values": [2.0, 4.0]}, headers=headers)
    assert first.json() == second.json() == {"epoch": 0, "samples": 2}
    assert second.headers["Idempotent-Replayed"] == "true"
    assert variables(client) == {"total": 6.0, "count": 2.0}
    client.post("/v1/sessions/s1/merge", json={"variables": {"total": 1.0}}, headers=headers)
    assert variables(client) == {"total": 6.0, "count": 2.0}


def test_merge_adds_preaggregated_state(client):
    put(client)
    r = client.post("/v1/sessions/s1/merge", json={"variables": {"total": 10.0, "count": 4}})
    assert r.status_code == 200 and r.json() == {"epoch": 0, "samples": 0}
    client.post("/v1/sessions/s1/update", json={"values": [5.0]})
    assert client.get("/v1/sessions/s1/result").json()["result"] == 3.0


def test_npz_update(client):
    put(client)
    buffer = io.BytesIO()
    np.savez(buffer, values=np.array([1.0, 2.0, 6.0]), sample_weight=np.array([1.0, 1.0, 2.0]))
    r = client.post("/v1/sessions/s1/update?epoch=0", content=buffer.getvalue(),
                    headers={"Content-Type": "application/x-npz"})
    assert r.status_code == 200 and r.json() == {"epoch": 0, "samples": 3}
    assert client.get("/v1/sessions/s1/result").json()["result"] == 15.0 / 4
    late = client.post("/v1/sessions/s1/update?epoch=3", content=buffer.getvalue(),
                       headers={"Content-Type": "application/x-npz"})
    assert late.status_code == 409


def test_list_sorted_by_name_with_prefix(client):
    for name in ["run2.loss", "run1.val.loss", "run1.train.loss", "other"]:
        put(client, name)
    client.post("/v1/sessions/run1.val.loss/update", json={"values": [3.0]})
    listed = client.get("/v1/sessions", params={"prefix": "run1."}).json()["sessions"]
    assert [s["name"] for s in listed] == ["run1.train.loss", "run1.val.loss"]
    assert listed[1] == {"name": "run1.val.loss", "metric": "Mean", "epoch": 0, "result": 3.0}
    assert len(client.get("/v1/sessions").json()["sessions"]) == 4


def test_delete(client):
    put(client)
    client.post("/v1/sessions/s1/update", json={"values": [3.0]})
    assert client.delete("/v1/sessions/s1").status_code == 204
    for path in ["", "/result", "/variables", "/config", "/history"]:
        assert client.get(f"/v1/sessions/s1{path}").status_code == 404
    assert client.delete("/v1/sessions/s1").status_code == 404
    assert put(client, metric="Sum").status_code == 201
    assert variables(client) == {"total": 0.0}


def test_catalogue_lists_every_metric_with_inputs(client):
    metrics = {m["name"]: m for m in client.get("/v1/metrics").json()["metrics"]}
    assert metrics["Mean"]["inputs"] == ["values"]
    assert metrics["Mean"]["config"] == {"name": "mean", "dtype": "float32"}
    assert "mean" in metrics["Mean"]["aliases"]


def test_health_and_readiness(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_keras_docs_precision_example(client):
    """The Keras docs' example: 0.8 after the first batch, then 0.5 (not the 0.4 that
    averaging batch precisions would give); cross-checked with Keras itself."""
    from tests.oracle import keras_metric

    reference = keras_metric("Precision")
    put(client, "docs", metric="Precision")
    steps = [([0, 1, 1, 1, 0, 1, 0, 1], [1, 1, 0, 1, 0, 1, 0, 1], 0.8),
             ([0, 1, 0, 0, 1, 0, 1, 1], [1, 0, 1, 1, 0, 0, 0, 0], 0.5)]
    for y_true, y_pred, documented in steps:
        assert client.post("/v1/sessions/docs/update",
                           json={"y_true": y_true, "y_pred": y_pred}).status_code == 200
        reference.update_state(y_true, y_pred)
        result = client.get("/v1/sessions/docs/result").json()["result"]
        assert result == pytest.approx(documented, rel=1e-6)
        assert result == pytest.approx(float(reference.result()), rel=1e-6)
    assert variables(client, "docs") == {"true_positives": [4.0], "false_positives": [4.0]}


def test_ttl_deletes_an_idle_session(client):
    import time

    doc = put(client, "short", ttl_seconds=1).json()
    assert doc["ttl_seconds"] == 1
    put(client, "long")
    time.sleep(0.6)
    client.post("/v1/sessions/short/update", json={"values": [1.0]})  # a write refreshes
    time.sleep(0.6)
    assert client.get("/v1/sessions/short").status_code == 200
    time.sleep(1.0)
    assert client.get("/v1/sessions/short").status_code == 404
    assert [s["name"] for s in client.get("/v1/sessions").json()["sessions"]] == ["long"]


def test_recreated_session_with_another_shape_is_not_judged_by_the_old_one(client):
    """Another process deletes and re-creates a session; this process's cached view of the old
    one (built for 3 classes) must not turn the new session's valid 4-class batch into a 422."""
    from app.service import Sessions

    put(client, "f1", metric="F1Score")
    ok = client.post("/v1/sessions/f1/update", json={"y_true": [[1, 0, 0]],
                                                     "y_pred": [[0.9, 0.1, 0.0]]})
    assert ok.status_code == 200
    here = client.app.state.sessions
    other_process = Sessions(here.store, here.registry)

    async def recreate():
        await other_process.delete("f1")
        await other_process.create("f1", "F1Score", None, None)

    client.portal.call(recreate)
    wider = client.post("/v1/sessions/f1/update", json={"y_true": [[1, 0, 0, 0]],
                                                        "y_pred": [[0.9, 0.1, 0.0, 0.0]]})
    assert wider.status_code == 200, wider.text
    shapes = [v["shape"] for v in client.get("/v1/sessions/f1/variables").json()["variables"]]
    assert shapes == [[4]] * 4
