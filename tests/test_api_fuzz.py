"""Property tests: no body, however odd, makes the update endpoint fail with a 5xx or change
state when it answers with an error."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.api.app import create_app
from app.settings import Settings
from app.store.memory import MemoryStore

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=3))
nested = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4), max_leaves=12)
bodies = st.dictionaries(st.sampled_from(["y_true", "y_pred", "values", "sample_weight",
                                          "epoch", "extra"]), nested, max_size=4)


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings(), store=MemoryStore())) as c:
        c.put("/v1/sessions/p", json={"metric": "Precision", "config": {"thresholds": [0.5]}})
        c.put("/v1/sessions/m", json={"metric": "Mean"})
        c.put("/v1/sessions/c", json={"metric": "SparseCategoricalCrossentropy"})
        yield c


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["p", "m", "c"]), body=bodies)
def test_any_json_body_gets_a_clean_answer(client, name, body):
    before = client.get(f"/v1/sessions/{name}/variables").json()
    r = client.post(f"/v1/sessions/{name}/update", content=json.dumps(body),
                    headers={"Content-Type": "application/json"})
    assert r.status_code in (200, 400, 409, 422), r.text
    if r.status_code != 200:
        assert r.json()["detail"]
        assert client.get(f"/v1/sessions/{name}/variables").json() == before


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=64))
def test_any_bytes_get_a_clean_answer(client, raw):
    r = client.post("/v1/sessions/m/update", content=raw,
                    headers={"Content-Type": "application/json"})
    assert r.status_code in (200, 400, 409, 422), r.text
