"""Issue 3's storage rules through the API on real Redis: AUC updates write only the buckets a
batch touched, and a lazily shaped metric's first batch fixes its shapes atomically even when
several first batches race."""

from __future__ import annotations

import asyncio
import random

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.settings import Settings
from app.store import keys
from app.store.redis import RedisStore
from tests.oracle import assert_close, json_array, keras_metric, keras_update


@pytest.fixture
def redis_client(redis_server):
    redis_server.client().flushall()
    with TestClient(create_app(Settings(), store=RedisStore.from_url(redis_server.url))) as c:
        yield c, redis_server.client()


def test_auc_update_writes_only_touched_buckets(redis_client):
    client, redis = redis_client
    client.put("/v1/sessions/auc", json={"metric": "AUC", "config": {"num_thresholds": 1000}})
    rng = np.random.default_rng(9)
    y_pred = rng.choice([0.1234, 0.4321, 0.5555, 0.7777, 0.9012], size=500)
    y_true = rng.integers(0, 2, size=500)
    client.post("/v1/sessions/auc/update", json={"y_true": y_true.tolist(),
                                                 "y_pred": y_pred.tolist()})
    # Four cumulative variables of 1000 buckets, stored as per-bucket differences: 5 distinct
    # predictions touch at most 6 buckets of each, so a few short ranges are written.
    stored = np.frombuffer(redis.get(keys.state("auc")), "<f8")
    written = np.count_nonzero(stored)
    assert 0 < written <= 4 * 6, f"{written} elements for 5 distinct predictions"
    assert stored.size <= 4 * 1000
    reference = keras_metric("AUC", {"num_thresholds": 1000})
    keras_update(reference, {"y_true": y_true.astype(np.float32),
                             "y_pred": y_pred.astype(np.float32)})
    got = client.get("/v1/sessions/auc/variables").json()["variables"]
    assert [v["shape"] for v in got] == [[1000]] * 4
    for ours, theirs in zip(got, reference.variables, strict=True):
        assert_close(json_array(ours["value"]), np.asarray(theirs), ours["name"])
    assert_close(client.get("/v1/sessions/auc/result").json()["result"],
                 np.asarray(reference.result()), "result")


async def test_racing_first_batches_fix_one_layout(live_servers):
    name = f"lazy.f1.{random.randrange(10**9)}"
    rng = np.random.default_rng(10)
    batches = []
    for i in range(16):
        width = 3 if i % 2 == 0 else 4
        batches.append({"y_true": rng.integers(0, 2, (5, width)).astype(float).tolist(),
                        "y_pred": rng.uniform(size=(5, width)).tolist()})
    async with httpx.AsyncClient(timeout=30) as client:
        await client.put(f"{live_servers[0]}/v1/sessions/{name}",
                         json={"metric": "F1Score", "config": {"average": "macro"}})
        empty = (await client.get(f"{live_servers[0]}/v1/sessions/{name}")).json()
        assert empty["variables"] == [] and empty["result"] is None
        answers = await asyncio.gather(*(
            client.post(f"{live_servers[i % 2]}/v1/sessions/{name}/update", json=b)
            for i, b in enumerate(batches)))
        variables = (await client.get(f"{live_servers[1]}/v1/sessions/{name}/variables")).json()
        result = (await client.get(f"{live_servers[0]}/v1/sessions/{name}/result")).json()
    assert {a.status_code for a in answers} <= {200, 422}
    accepted = [b for b, a in zip(batches, answers, strict=True) if a.status_code == 200]
    widths = {len(b["y_true"][0]) for b in accepted}
    assert len(widths) == 1, "one layout wins"
    width = widths.pop()
    rejected = [a for a in answers if a.status_code == 422]
    assert len(accepted) == 8 and len(rejected) == 8
    assert all("built for" in a.json()["detail"] for a in rejected)
    assert [v["shape"] for v in variables["variables"]] == [[width]] * 4
    reference = keras_metric("F1Score", {"average": "macro"})
    for batch in accepted:
        keras_update(reference, batch)
    assert_close(json_array(result["result"]), np.asarray(reference.result()), "F1 result")
