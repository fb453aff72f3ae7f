"""Issue 6 through the API, on the memory and the Redis store: idempotency keys bound to
their request, state limits at create and at a lazy metric's first batch, paged listings
that cost O(page) and show a prefix-limited token only its own sessions, and history
compaction."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.settings import Settings


@pytest.fixture
def client(api_store):
    settings = Settings(max_state_elements=10_000)
    with TestClient(create_app(settings, store=api_store)) as c:
        yield c


def total(client, name):
    return client.get(f"/v1/sessions/{name}/result").json()["result"]


def test_a_key_is_bound_to_its_request(client):
    client.put("/v1/sessions/k", json={"metric": "Sum"})
    key = {"Idempotency-Key": "batch-1"}
    first = client.post("/v1/sessions/k/update", json={"values": [1, 2]}, headers=key)
    assert first.status_code == 200
    replay = client.post("/v1/sessions/k/update", json={"values": [1, 2]}, headers=key)
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    other = client.post("/v1/sessions/k/update", json={"values": [5, 5]}, headers=key)
    assert other.status_code == 422 and "different request" in other.json()["detail"]
    merged = client.post("/v1/sessions/k/merge", json={"variables": {"total": 7}}, headers=key)
    assert merged.status_code == 422  # another route is another request
    late = client.post("/v1/sessions/k/update", json={"values": [1, 2], "epoch": 0},
                       headers=key)
    assert late.status_code == 422  # a precondition is part of the request
    assert total(client, "k") == 3.0


def test_the_same_batch_as_json_or_npz_is_the_same_request(client):
    client.put("/v1/sessions/k", json={"metric": "Sum"})
    key = {"Idempotency-Key": "batch-2"}
    client.post("/v1/sessions/k/update", json={"values": [1.5, 2.5]}, headers=key)
    buffer = io.BytesIO()
    np.savez(buffer, values=np.array([1.5, 2.5], np.float32))
    again = client.post("/v1/sessions/k/update", content=buffer.getvalue(),
                        headers={**key, "Content-Type": "application/x-npz"})
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert total(client, "k") == 4.0


def test_merge_keys_are_bound_too(client):
    client.put("/v1/sessions/m", json={"metric": "Mean"})
    key = {"Idempotency-Key": "shard-7"}
    body = {"variables": {"total": 10.0, "count": 4.0}}
    assert client.post("/v1/sessions/m/merge", json=body, headers=key).status_code == 200
    assert client.post("/v1/sessions/m/merge", json=body, headers=key).status_code == 200
    changed = {"variables": {"total": 99.0, "count": 4.0}}
    assert client.post("/v1/sessions/m/merge", json=changed, headers=key).status_code == 422
    assert total(client, "m") == 2.5


def test_state_limit_at_create(client):
    r = client.put("/v1/sessions/big", json={"metric": "MeanIoU",
                                             "config": {"num_classes": 101}})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "10,201" in detail and "10,000" in detail and "TALLY_MAX_STATE_ELEMENTS" in detail
    assert client.get("/v1/sessions/big").status_code == 404
    ok = client.put("/v1/sessions/ok", json={"metric": "MeanIoU",
                                             "config": {"num_classes": 100}})
    assert ok.status_code == 201


def test_state_limit_at_a_lazy_metrics_first_batch(client):
    assert client.put("/v1/sessions/f1", json={"metric": "F1Score"}).status_code == 201
    wide = np.zeros((1, 3000), np.float32).tolist()  # 4 variables x 3000 > 10,000
    r = client.post("/v1/sessions/f1/update", json={"y_true": wide, "y_pred": wide})
    assert r.status_code == 422 and "TALLY_MAX_STATE_ELEMENTS" in r.json()["detail"]
    assert client.get("/v1/sessions/f1/variables").json()["variables"] == []
    narrow = np.zeros((1, 2000), np.float32).tolist()
    assert client.post("/v1/sessions/f1/update",
                       json={"y_true": narrow, "y_pred": narrow}).status_code == 200


def list_all(client, prefix, limit, headers=None):
    names, cursor, pages = [], None, 0
    while True:
        params = {"prefix": prefix, "limit": limit, **({"cursor": cursor} if cursor else {})}
        r = client.get("/v1/sessions", params=params, headers=headers or {})
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["sessions"]) <= limit
        names += [s["name"] for s in page["sessions"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return names, pages


def test_listing_pages_through_every_session(client):
    wanted = sorted(f"lst.{i:03d}" for i in range(105))
    for name in wanted + ["lsu.0", "ls"]:
        client.put(f"/v1/sessions/{name}", json={"metric": "Sum"})
    client.post("/v1/sessions/lst.007/update", json={"values": [3]})
    names, pages = list_all(client, "lst.", 10)
    assert names == wanted and pages == 11
    first = client.get("/v1/sessions", params={"prefix": "lst.", "limit": 1000}).json()
    assert [s["name"] for s in first["sessions"]] == wanted and first["next_cursor"] is None
    assert first["sessions"][7]["result"] == 3.0
    default = client.get("/v1/sessions", params={"prefix": "lst."}).json()
    assert len(default["sessions"]) == 100 and default["next_cursor"] is not None


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"cursor": "!!"},
                                    {"cursor": "bm90IGEgbmFtZSE"}])
def test_bad_listing_parameters_are_422(client, params):
    r = client.get("/v1/sessions", params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")


def test_a_prefix_token_lists_only_its_own_sessions(api_store):
    settings = Settings.model_validate({"tokens": {
        "t42": {"scopes": ["read"], "prefix": "run42."}, "op": {"scopes": ["admin"]}}})
    with TestClient(create_app(settings, store=api_store)) as client:
        admin = {"Authorization": "Bearer op"}
        for name in ["run41.a", "run42.a", "run42.b", "run43.a"]:
            client.put(f"/v1/sessions/{name}", json={"metric": "Sum"}, headers=admin)
        mine = {"Authorization": "Bearer t42"}
        assert list_all(client, "", 1, mine)[0] == ["run42.a", "run42.b"]
        assert list_all(client, "run42.b", 5, mine)[0] == ["run42.b"]
        assert list_all(client, "run4", 5, mine)[0] == ["run42.a", "run42.b"]
        assert list_all(client, "run43", 5, mine)[0] == []
        assert list_all(client, "", 2, admin)[0] == ["run41.a", "run42.a", "run42.b",
                                                     "run43.a"]


def test_history_is_compacted_to_results(client, api_store):
    client.put("/v1/sessions/h", json={"metric": "MeanIoU", "config": {"num_classes": 50}})
    for epoch in range(3):
        labels = np.arange(50) % (epoch + 2)
        client.post("/v1/sessions/h/update", json={"y_true": labels.tolist(),
                                                   "y_pred": labels.tolist()})
        closed = client.post("/v1/sessions/h/reset").json()["closed"]
        assert closed["epoch"] == epoch and closed["result"] == 1.0
    history = client.get("/v1/sessions/h/history").json()["epochs"]
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert [h["result"] for h in history] == [1.0, 1.0, 1.0]


def test_history_keeps_results_not_states(api_store):
    """After a reset answered, the history holds the result, not the 2,500-element state."""
    with TestClient(create_app(Settings(), store=api_store)) as client:
        client.put("/v1/sessions/h", json={"metric": "MeanIoU", "config": {"num_classes": 50}})
        client.post("/v1/sessions/h/update", json={"y_true": [1, 2], "y_pred": [1, 3]})
        answered = client.post("/v1/sessions/h/reset").json()["closed"]["result"]
        assert client.portal is not None  # the app's own event loop, where the store lives
        (closed,) = client.portal.call(api_store.history, "h")
    assert closed.compacted and closed.state is None
    assert closed.result == answered


def test_many_classes_cost_the_batch_not_classes_squared(client):
    """Sparse labels with 40,000 classes: one-hot encoding must not build a 40,000² matrix."""
    client.put("/v1/sessions/sce", json={"metric": "SparseCategoricalCrossentropy"})
    y_pred = np.full((1, 40_000), 1 / 40_000, np.float32)
    r = client.post("/v1/sessions/sce/update", json={"y_true": [39_999],
                                                     "y_pred": y_pred.tolist()})
    assert r.status_code == 200, r.text
    assert total(client, "sce") == pytest.approx(np.log(40_000), rel=1e-5)
