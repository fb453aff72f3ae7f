"""Every class of bad input: the right status, a problem document whose detail says what was
expected and what was received, and nothing changed in the store."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.settings import Settings
from app.store.memory import MemoryStore
from app.store.redis import RedisStore
from tests.api_state import observable, seeded_client
from tests.redis_servers import RedisProcess

LIMIT = 20_000


@pytest.fixture
def client(api_store):
    yield from seeded_client(Settings(max_body_bytes=LIMIT), api_store)


def state(client):
    return observable(client)


def assert_problem(response, status, *fragments):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and body["type"]
    for fragment in fragments:
        assert fragment in body["detail"], body["detail"]


def raw(client, path, content, content_type="application/json", **kw):
    return client.post(path, content=content, headers={"Content-Type": content_type}, **kw)


@pytest.mark.parametrize(("body", "fragment"), [
    (b'{"values": [1, 2', "not valid JSON"),
    (b"not json", "not valid JSON"),
    (b"", "not valid JSON"),
])
def test_400_body_not_json(client, body, fragment):
    before = state(client)
    assert_problem(raw(client, "/v1/sessions/m/update", body), 400, fragment)
    assert state(client) == before


def test_400_body_not_npz(client):
    before = state(client)
    r = raw(client, "/v1/sessions/m/update", b"PK\x03\x04garbage", "application/x-npz")
    assert_problem(r, 400, ".npz")
    assert state(client) == before


def test_404_unknown_session_and_metric(client):
    assert_problem(client.get("/v1/sessions/nope/result"), 404, "nope")
    assert_problem(client.post("/v1/sessions/nope/update", json={"values": [1]}), 404, "nope")
    assert_problem(client.post("/v1/sessions/nope/reset"), 404, "nope")
    assert_problem(client.put("/v1/sessions/x", json={"metric": "Precisionn"}), 404,
                   "Precisionn", "/v1/metrics")
    assert client.get("/v1/sessions/x").status_code == 404


def test_409_conflicting_config_and_epoch(client):
    before = state(client)
    assert_problem(client.put("/v1/sessions/p", json={"metric": "Precision",
                                                      "config": {"thresholds": 0.7}}),
                   409, "0.7")
    assert_problem(client.post("/v1/sessions/m/update", json={"values": [9.0], "epoch": 4}),
                   409, "epoch 0", "epoch 4")
    assert state(client) == before


def test_413_body_too_large(client):
    before = state(client)
    big = {"values": [0.5] * (LIMIT // 4)}
    assert_problem(client.post("/v1/sessions/m/update", json=big), 413, str(LIMIT))
    assert state(client) == before


def test_413_batch_elements(api_store):
    with TestClient(create_app(Settings(max_batch_elements=10), store=api_store)) as c:
        c.put("/v1/sessions/m", json={"metric": "Mean"})
        before = c.get("/v1/sessions/m/variables").json()
        assert_problem(c.post("/v1/sessions/m/update", json={"values": [0.5] * 11}), 413,
                       "11", "10", "max_batch_elements")
        buffer = io.BytesIO()
        np.savez_compressed(buffer, values=np.zeros(10**6))
        assert_problem(raw(c, "/v1/sessions/m/update", buffer.getvalue(), "application/x-npz"),
                       413, str(10**6), "10", "max_batch_elements")
        assert c.get("/v1/sessions/m/variables").json() == before


def test_415_content_type(client):
    before = state(client)
    r = raw(client, "/v1/sessions/m/update", b"values=1", "application/x-www-form-urlencoded")
    assert_problem(r, 415, "application/json", "x-www-form-urlencoded")
    r = client.put("/v1/sessions/q", content=b"metric: Mean", headers={"Content-Type":
                                                                       "text/yaml"})
    assert_problem(r, 415, "text/yaml")
    assert state(client) == before


@pytest.mark.parametrize(("config", "fragments"), [
    ({"thresholds": 0.5, "bogus": 1}, ["bogus", "accepted keys"]),
    ({"thresholds": 1.5}, ["thresholds", "1.5"]),
    ({"thresholds": "high"}, ["thresholds", "high"]),
    ({"top_k": 0}, ["top_k", "0"]),
    ({"class_id": -1}, ["class_id", "-1"]),
    ({"dtype": "complex64"}, ["dtype", "complex64"]),
])
def test_422_bad_config(client, config, fragments):
    before = state(client)
    assert_problem(client.put("/v1/sessions/new", json={"metric": "Precision",
                                                        "config": config}), 422, *fragments)
    assert client.get("/v1/sessions/new").status_code == 404
    assert state(client) == before


@pytest.mark.parametrize(("body", "fragments"), [
    ({"config": {}}, ["metric"]),
    ({"metric": 3}, ["metric", "3"]),
    ({"metric": "Mean", "config": [1]}, ["config"]),
    ({"metric": "Mean", "ttl_seconds": 0}, ["ttl_seconds", "0"]),
    ({"metric": "Mean", "ttl_seconds": "1h"}, ["ttl_seconds", "1h"]),
    ({"metric": "Mean", "colour": "red"}, ["colour"]),
])
def test_422_bad_create_body(client, body, fragments):
    assert_problem(client.put("/v1/sessions/new", json=body), 422, *fragments)
    assert client.get("/v1/sessions/new").status_code == 404


@pytest.mark.parametrize("name", ["-starts-with-dash", "has space", "x" * 201, "br{ace}",
                                  "semi;colon"])
def test_422_bad_session_name(client, name):
    assert_problem(client.put(f"/v1/sessions/{name}", json={"metric": "Mean"}), 422,
                   "1-200 characters")


@pytest.mark.parametrize(("path", "body", "fragments"), [
    ("p", {"y_pred": [0.1, 0.2]}, ["y_true", "missing"]),
    ("p", {"y_true": [1, 0]}, ["y_pred", "missing"]),
    ("m", {}, ["values"]),
    ("m", {"y_true": [1], "y_pred": [1]}, ["values"]),
    ("p", {"values": [1.0]}, ["y_true", "y_pred"]),
    ("p", {"y_true": [1, 0], "y_pred": [0.1, 0.2], "weights": [1, 1]}, ["weights"]),
    ("p", {"y_true": [1, 0, 1], "y_pred": [0.1, 0.2]}, ["shape", "[3]", "[2]"]),
    ("p", {"y_true": [1, 0], "y_pred": [0.1, 0.2], "sample_weight": [1, 2, 3]},
     ["sample_weight", "[3]"]),
    ("m", {"values": [1.0], "epoch": -1}, ["epoch", "-1"]),
    ("m", {"values": [1.0], "epoch": "first"}, ["epoch", "first"]),
    ("m", {"values": [1e39]}, ["values", "finite"]),
    ("m", {"values": [1.0], "epoch": 2**53}, ["epoch", str(2**53 - 1)]),
])
def test_422_bad_update(client, path, body, fragments):
    before = state(client)
    assert_problem(client.post(f"/v1/sessions/{path}/update", json=body), 422, *fragments)
    assert state(client) == before


@pytest.mark.parametrize(("path", "body", "fragments"), [
    ("m", {"values": [[1, 2], [3]]}, ["values", "rectangular"]),
    ("m", {"values": ["a", "b"]}, ["values"]),
    ("m", {"values": ["1", "2"]}, ["values", "text"]),  # numpy would convert them
    ("m", {"values": "abc"}, ["values", "str"]),
    ("m", {"values": {"a": 1}}, ["values", "dict"]),
    ("p", {"y_true": [1, 0], "y_pred": [0.1, 0.2], "sample_weight": "heavy"},
     ["sample_weight"]),
])
def test_400_not_a_decodable_array(client, path, body, fragments):
    before = state(client)
    assert_problem(client.post(f"/v1/sessions/{path}/update", json=body), 400, *fragments)
    assert state(client) == before


@pytest.mark.parametrize("body", [
    b'{"values": [1.0, NaN]}', b'{"values": [Infinity]}', b'{"values": [-Infinity]}',
    b'{"values": [1.0], "sample_weight": [NaN]}',
    b'{"values": [1.0, null]}',  # how orjson and others write NaN
])
def test_422_nan_and_inf(client, body):
    before = state(client)
    assert_problem(raw(client, "/v1/sessions/m/update", body), 422, "NaN or infinity")
    assert state(client) == before


def test_422_nan_in_npz(client):
    before = state(client)
    buffer = io.BytesIO()
    np.savez(buffer, values=np.array([1.0, np.nan]))
    r = raw(client, "/v1/sessions/m/update", buffer.getvalue(), "application/x-npz")
    assert_problem(r, 422, "NaN")
    assert state(client) == before


@pytest.mark.parametrize(("body", "fragments"), [
    ({"variables": {"totl": 1.0}}, ["totl", "total"]),
    ({"variables": {"total": [1.0, 2.0]}}, ["total", "shape", "[2]"]),
    ({"variables": {}}, ["variables"]),
    ({"variables": {"total": 1.0}, "epoch": 7}, ["epoch 7"]),
])
def test_bad_merge(client, body, fragments):
    before = state(client)
    status = 409 if "epoch" in body else 422
    assert_problem(client.post("/v1/sessions/m/merge", json=body), status, *fragments)
    assert state(client) == before


@pytest.mark.parametrize("value", ["x", [[1], [2, 3]], {"a": 1}])
def test_400_merge_value_not_decodable(client, value):
    before = state(client)
    assert_problem(client.post("/v1/sessions/m/merge", json={"variables": {"total": value}}),
                   400, "total")
    assert state(client) == before


def test_422_idempotency_key_too_long(client):
    before = state(client)
    r = client.post("/v1/sessions/m/update", json={"values": [1.0]},
                    headers={"Idempotency-Key": "k" * 129})
    assert_problem(r, 422, "Idempotency-Key", "129")
    assert state(client) == before


def test_422_reset_bad_body(client):
    before = state(client)
    assert_problem(client.post("/v1/sessions/m/reset", json={"epoch": "x"}), 422, "epoch")
    assert_problem(client.post("/v1/sessions/m/reset", json={"force": True}), 422, "force")
    assert state(client) == before


# -- auth ----------------------------------------------------------------------------------
TOKENS = {
    "reader": {"scopes": ["read"]},
    "writer": {"scopes": ["write"]},
    "admin": {"scopes": ["admin"]},
    "run42": {"scopes": ["admin"], "prefix": "run42."},
}


@pytest.fixture
def secured():
    settings = Settings.model_validate({"tokens": TOKENS})
    with TestClient(create_app(settings, store=MemoryStore())) as c:
        yield c


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_401_without_valid_token(secured):
    assert_problem(secured.get("/v1/sessions"), 401, "Bearer")
    assert_problem(secured.get("/v1/metrics", headers=bearer("wrong")), 401, "not valid")
    assert_problem(secured.put("/v1/sessions/a", json={"metric": "Mean"},
                               headers={"Authorization": "Basic abc"}), 401)
    assert secured.get("/healthz").status_code == 200


def test_403_scope_and_prefix(secured):
    assert secured.put("/v1/sessions/a", json={"metric": "Mean"},
                       headers=bearer("admin")).status_code == 201
    assert secured.put("/v1/sessions/b", json={"metric": "Mean"},
                       headers=bearer("writer")).status_code == 201  # API 1.1: write creates
    assert_problem(secured.post("/v1/sessions/a/update", json={"values": [1]},
                                headers=bearer("reader")), 403, "write")
    assert secured.post("/v1/sessions/a/update", json={"values": [1]},
                        headers=bearer("writer")).status_code == 200
    assert_problem(secured.post("/v1/sessions/a/reset", headers=bearer("reader")), 403, "write")
    assert_problem(secured.delete("/v1/sessions/a", headers=bearer("writer")), 403)
    assert secured.get("/v1/sessions/a/result", headers=bearer("reader")).json()["result"] == 1
    # prefix-limited token
    assert_problem(secured.get("/v1/sessions/a", headers=bearer("run42")), 403, "run42.")
    assert secured.put("/v1/sessions/run42.loss", json={"metric": "Mean"},
                       headers=bearer("run42")).status_code == 201
    names = [s["name"] for s in secured.get("/v1/sessions", headers=bearer("run42"))
             .json()["sessions"]]
    assert names == ["run42.loss"]
    assert secured.get("/v1/sessions/a/result", headers=bearer("reader")).json()["result"] == 1


# -- store down ----------------------------------------------------------------------------
def test_503_when_redis_is_down_then_recovers():
    server = RedisProcess().start()
    try:
        store = RedisStore.from_url(server.url, timeout=1.0)
        with TestClient(create_app(Settings(), store=store)) as c:
            assert c.put("/v1/sessions/m", json={"metric": "Mean"}).status_code == 201
            port = server.port
            server.stop()
            for request in [lambda: c.get("/v1/sessions/m/result"),
                            lambda: c.post("/v1/sessions/m/update", json={"values": [1.0]}),
                            lambda: c.put("/v1/sessions/n", json={"metric": "Mean"}),
                            lambda: c.get("/readyz")]:
                assert_problem(request(), 503, "unreachable")
            assert c.get("/healthz").status_code == 200
            server.port = port
            server.start()  # an empty server: the state was not persisted
            assert c.get("/readyz").status_code == 200
            assert c.put("/v1/sessions/m", json={"metric": "Mean"}).status_code == 201
    finally:
        server.stop()
