"""Time windows (shared/API.md, "Time windows"): `GET .../result?window=S` against real Keras
over exactly the batches applied in the last S/B buckets, on the memory and the Redis store
through the HTTP API and on the Cluster store through the service; a clock the tests move by
hand (nothing sleeps). Expiry of old buckets, reset, idempotency, merge and epochs, the window
as part of the session's identity, every bad window or `?window=` a 4xx that changes nothing,
and concurrent batches with exact totals."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.service import MAX_WINDOW_SECONDS, Sessions
from app.settings import Settings
from app.store import keys
from tests.cases import batches
from tests.clock import OFFSETS, START, WINDOW, B, FakeClock, K, inside
from tests.collection_cases import KerasCollection
from tests.oracle import assert_close, json_array, keras_metric, keras_update, tally_inputs

METRICS = [("Precision", {}, "binary"), ("AUC", {"num_thresholds": 50}, "binary"),
           ("AUC", {"curve": "PR", "multi_label": True}, "binary"),
           ("MeanSquaredError", {}, "regression"), ("SparseCategoricalAccuracy", {}, "sparse"),
           ("Mean", {}, "values"), ("F1Score", {"average": "macro"}, "binary"),
           ("R2Score", {}, "regression")]


def keras_over(name: str, config: dict[str, Any], chosen: list[dict[str, Any]],
               shaped_by: dict[str, Any] | None = None) -> Any:
    """Real Keras' result over exactly `chosen` (the expected value). `shaped_by`: a batch
    that builds a lazily shaped metric first (then `reset_state`), as the session's first
    batch built it, so that an empty window reads as Keras' reset metric."""
    reference = keras_metric(name, config)
    if shaped_by is not None:
        keras_update(reference, shaped_by)
        reference.reset_state()
    for batch in chosen:
        keras_update(reference, batch)
    return np.asarray(reference.result())


@pytest.fixture
def clock(api_store) -> FakeClock:
    fake = FakeClock()
    api_store.clock = fake
    return fake


@pytest.fixture
def client(api_store, clock):
    with TestClient(create_app(Settings(), store=api_store)) as c:
        yield c


def put(client, name: str, **body: Any) -> httpx.Response:
    return client.put(f"/v1/sessions/{name}", json=body)


def result(client, name: str, seconds: int | None = None) -> Any:
    params = {} if seconds is None else {"window": seconds}
    answer = client.get(f"/v1/sessions/{name}/result", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.parametrize(("metric", "config", "kind"), METRICS,
                         ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(METRICS)])
def test_every_window_equals_keras_over_its_batches(client, clock, metric, config, kind):
    fed = batches(kind, seed=5, count=len(OFFSETS))
    assert put(client, "w", metric=metric, config=config, window=WINDOW).status_code == 201
    times: list[float] = []
    for offset, batch in zip(OFFSETS, fed, strict=True):
        clock.now = START + offset
        times.append(clock.now)
        assert client.post("/v1/sessions/w/update", json=batch).status_code == 200
    for later in (0.0, 60.0, 130.0, 300.0):  # the clock moves on: old buckets leave
        clock.now = START + OFFSETS[-1] + later
        for seconds in range(B, B * K + 1, B):
            chosen = [fed[i] for i in inside(times, clock.now, seconds)]
            answer = result(client, "w", seconds)
            assert (answer["name"], answer["epoch"], answer["window_seconds"]) == (
                "w", 0, seconds)
            expected = keras_over(metric, config, chosen, shaped_by=fed[0])
            assert_close(json_array(answer["result"]), expected,
                         f"window {seconds}s at +{later}s ({len(chosen)} batches)")
        epoch = result(client, "w")
        assert "window_seconds" not in epoch
        assert_close(json_array(epoch["result"]), keras_over(metric, config, fed), "epoch")


def test_a_windowed_collection_answers_every_member(client, clock):
    members = [{"metric": "Precision"}, {"metric": "Recall"},
               {"metric": "AUC", "config": {"num_thresholds": 30}}, {"metric": "F1Score"}]
    assert put(client, "c", metrics=members, window=WINDOW).status_code == 201
    fed = batches("binary", seed=8, count=len(OFFSETS))
    times = []
    for offset, batch in zip(OFFSETS, fed, strict=True):
        clock.now = START + offset
        times.append(clock.now)
        client.post("/v1/sessions/c/update", json=batch)
    for seconds in (B, 2 * B, B * K):
        reference = KerasCollection(members)
        for i in inside(times, clock.now, seconds):
            reference.update(fed[i])
        reference.compare_result(result(client, "c", seconds)["result"], f"{seconds}s")


def test_the_window_is_part_of_the_session(client):
    created = put(client, "w", metric="AUC", window=WINDOW)
    assert created.status_code == 201
    assert created.json()["window"] == WINDOW
    assert client.get("/v1/sessions/w").json()["window"] == WINDOW
    assert put(client, "w", metric="AUC", window=dict(WINDOW)).status_code == 200
    for other in ({"bucket_seconds": B, "buckets": K + 1}, {"bucket_seconds": 2 * B,
                                                           "buckets": K}, None):
        answer = put(client, "w", metric="AUC", window=other)
        assert answer.status_code == 409, other
        assert '"bucket_seconds":60,"buckets":4' in answer.json()["detail"]
    plain = put(client, "p", metric="AUC")
    assert plain.json()["window"] is None
    answer = put(client, "p", metric="AUC", window=WINDOW)
    assert answer.status_code == 409 and "window none" in answer.json()["detail"]


def test_reset_does_not_clear_windows(client, clock):
    fed = batches("binary", seed=3, count=3)
    put(client, "w", metric="Precision", window=WINDOW)
    client.post("/v1/sessions/w/update", json=fed[0])
    clock.now += B
    client.post("/v1/sessions/w/update", json=fed[1])
    assert client.post("/v1/sessions/w/reset").json()["epoch"] == 1
    client.post("/v1/sessions/w/update", json=fed[2])
    answer = result(client, "w", B)
    assert answer["epoch"] == 1
    assert_close(answer["result"], keras_over("Precision", {}, fed[1:]), "after reset, 1 bucket")
    assert_close(result(client, "w", 2 * B)["result"], keras_over("Precision", {}, fed),
                 "after reset, 2 buckets")
    assert_close(result(client, "w")["result"], keras_over("Precision", {}, fed[2:]), "epoch")


def test_replays_merges_and_refused_batches_in_the_window(client, clock):
    fed = batches("binary", seed=4, count=3)
    put(client, "w", metric="Precision", window=WINDOW)
    key = {"Idempotency-Key": "batch-0"}
    for _ in range(2):  # the replay is answered, not applied again
        assert client.post("/v1/sessions/w/update", json=fed[0], headers=key).status_code == 200
    # Merged variables count in the current bucket: Keras' own variables after fed[1].
    donor = keras_metric("Precision")
    keras_update(donor, fed[1])
    variables = {v.name: np.asarray(v).tolist() for v in donor.variables}
    assert client.post("/v1/sessions/w/merge", json={"variables": variables}).status_code == 200
    client.post("/v1/sessions/w/reset")
    late = client.post("/v1/sessions/w/update", json={**fed[2], "epoch": 0})
    assert late.status_code == 409  # the late batch of epoch 0 lands nowhere
    assert_close(result(client, "w", B)["result"], keras_over("Precision", {}, fed[:2]),
                 "replayed once, merged, late refused")


BAD_WINDOWS = [
    ([60, 4], "got [60, 4]"),
    ({"bucket_seconds": 60}, "got {'bucket_seconds': 60}"),
    ({"bucket_seconds": 60, "buckets": 4, "start": 0}, "'start'"),
    ({"bucket_seconds": 0, "buckets": 4}, "'bucket_seconds': 0"),
    ({"bucket_seconds": 60, "buckets": 0}, "'buckets': 0"),
    ({"bucket_seconds": -60, "buckets": 4}, "-60"),
    ({"bucket_seconds": 1.5, "buckets": 4}, "1.5"),
    ({"bucket_seconds": "60", "buckets": 4}, "'60'"),
    ({"bucket_seconds": True, "buckets": 4}, "True"),
    ({"bucket_seconds": 60, "buckets": 1441}, "1441"),
    ({"bucket_seconds": MAX_WINDOW_SECONDS, "buckets": 2}, str(MAX_WINDOW_SECONDS)),
]


@pytest.mark.parametrize(("window", "says"), BAD_WINDOWS)
def test_bad_windows_are_422_and_create_nothing(client, window, says):
    answer = put(client, "bad", metric="AUC", window=window)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    detail = answer.json()["detail"]
    assert "'window' must be {\"bucket_seconds\"" in detail and says in detail, detail
    assert client.get("/v1/sessions/bad").status_code == 404


def test_windows_bigger_than_the_limit_are_422(api_store, clock):
    settings = Settings(max_window_elements=1000, plugins="tests.plugin_samples")
    with TestClient(create_app(settings, store=api_store)) as client:
        # AUC of 200 thresholds keeps 4 x 200 numbers: 5 buckets are 4000 > 1000.
        answer = put(client, "big", metric="AUC", window={"bucket_seconds": 60, "buckets": 5})
        assert answer.status_code == 422
        assert "5 x 800 state elements" in answer.json()["detail"]
        assert "TALLY_MAX_WINDOW_ELEMENTS" in answer.json()["detail"]
        assert client.get("/v1/sessions/big").status_code == 404
        answer = put(client, "ext", metric="MaxAbsoluteError", window=WINDOW)
        assert answer.status_code == 422 and "max/min" in answer.json()["detail"]
        assert client.get("/v1/sessions/ext").status_code == 404
        # A lazily shaped metric is checked at its first batch, which is then not applied.
        lazy = {"bucket_seconds": 60, "buckets": 100}
        assert put(client, "lazy", metric="F1Score", window=lazy).status_code == 201
        wide = {"y_true": np.eye(20)[[0, 1]].tolist(), "y_pred": np.eye(20)[[0, 2]].tolist()}
        answer = client.post("/v1/sessions/lazy/update", json=wide)
        assert answer.status_code == 422, answer.text
        assert "100 x 80 state elements" in answer.json()["detail"]
        assert client.get("/v1/sessions/lazy/variables").json()["variables"] == []  # unbuilt
        assert client.get("/v1/sessions/lazy/result").json()["result"] is None
        narrow = {"y_true": np.eye(2)[[0, 1]].tolist(), "y_pred": np.eye(2)[[0, 1]].tolist()}
        assert client.post("/v1/sessions/lazy/update", json=narrow).status_code == 200
        assert_close(json_array(result(client, "lazy", 60)["result"]),
                     keras_over("F1Score", {}, [narrow]), "the narrow batch alone")


@pytest.mark.parametrize(("value", "says"), [
    ("abc", "whole number of seconds"), ("-60", "whole number of seconds"),
    ("1.5", "whole number of seconds"), ("", "whole number of seconds"),
    ("0", "from 60 to 240; got 0"), ("90", "multiple of the session's bucket_seconds (60)"),
    ("300", "from 60 to 240; got 300"), ("99999999999999", "whole number of seconds")])
def test_bad_window_queries_are_422(client, clock, value, says):
    put(client, "w", metric="Mean", window=WINDOW)
    client.post("/v1/sessions/w/update", json={"values": [1.0, 2.0]})
    answer = client.get(f"/v1/sessions/w/result?window={value}")
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert says in answer.json()["detail"]
    assert result(client, "w", B)["result"] == 1.5


def test_window_of_a_session_without_one_or_of_none(client):
    put(client, "plain", metric="Mean")
    answer = client.get("/v1/sessions/plain/result?window=60")
    assert answer.status_code == 422
    assert "session 'plain' has no window" in answer.json()["detail"]
    assert client.get("/v1/sessions/gone/result?window=60").status_code == 404


def test_redis_buckets_expire_by_themselves_and_plain_sessions_have_none(redis_server, clock):
    from app.store.redis import RedisStore

    server = redis_server.client()
    server.flushall()
    store = RedisStore.from_url(redis_server.url, clock=clock)
    with TestClient(create_app(Settings(), store=store)) as client:
        put(client, "w", metric="Mean", window=WINDOW)
        put(client, "plain", metric="Mean")
        clock.now = START + 30  # half a bucket in: the bucket is needed for 3.5 more minutes
        for name in ("w", "plain"):
            client.post(f"/v1/sessions/{name}/update", json={"values": [1.0]})
        session_id = server.hget(keys.meta("w"), "id").decode()
        bucket = keys.window_bucket("w", session_id, math.floor((START + 30) / B))
        assert server.keys(keys.window_prefix("w") + "*") == [bucket.encode()]
        assert 0 < server.ttl(bucket) <= B * K - 30
        assert server.keys(keys.window_prefix("plain") + "*") == []
        plain = {k.decode() for k in server.keys("tally:{plain}:*")}
        assert plain == {keys.meta("plain"), keys.state("plain"), keys.version("plain")}
        assert client.delete("/v1/sessions/w").status_code == 204
        assert server.keys(keys.window_prefix("w") + "*") == []


async def test_concurrent_batches_give_exact_window_totals(api_store, clock):
    """Batches sent together (the Redis store commits them in groups) and across buckets:
    every window holds exactly the sum of its batches."""
    app = create_app(Settings(), store=api_store)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=transport, base_url="http://tally") as client:
        await client.put("/v1/sessions/sum", json={"metric": "Sum", "window": WINDOW})
        rng = np.random.default_rng(2)
        sent = [rng.integers(0, 1000, size=8) / 4 for _ in range(90)]
        for part in range(3):
            clock.now = START + part * B
            answers = await asyncio.gather(*(
                client.post("/v1/sessions/sum/update", json={"values": values.tolist()})
                for values in sent[part * 30:(part + 1) * 30]))
            assert all(a.status_code == 200 for a in answers)
        for seconds, first in ((B, 60), (2 * B, 30), (3 * B, 0)):
            answer = (await client.get(f"/v1/sessions/sum/result?window={seconds}")).json()
            assert answer["result"] == float(np.concatenate(sent[first:]).sum())


async def test_windows_on_every_store_through_the_service(store):
    """The service on the memory, Redis and Redis Cluster stores: AUC per window."""
    clock = FakeClock()
    store.clock = clock
    sessions = Sessions(store)
    config = {"num_thresholds": 40}
    await sessions.create("cl.w", "AUC", config, None, window=Sessions(store).window_from(WINDOW))
    fed = batches("binary", seed=9, count=len(OFFSETS))
    times = []
    for offset, batch in zip(OFFSETS, fed, strict=True):
        clock.now = START + offset
        times.append(clock.now)
        arrays, weight = tally_inputs(batch)
        await sessions.update("cl.w", arrays, weight, None, None)
    await sessions.reset("cl.w", 0)
    for seconds in range(B, B * K + 1, B):
        chosen = [fed[i] for i in inside(times, clock.now, seconds)]
        answer = await sessions.result("cl.w", seconds)
        assert_close(json_array(answer["result"]), keras_over("AUC", config, chosen),
                     f"{seconds}s")


def test_the_readme_example_with_the_python_client(live_servers):
    """The report's README example, as a user writes it with tally_client, on real servers
    and the real clock: batches sent within a second all lie in the last 15 minutes."""
    import random

    from tally_client import TallyClient

    name = f"model7.live.auc.{random.randrange(10**9)}"
    rng = np.random.default_rng(7)
    data = [(rng.integers(0, 2, (64,)).astype(np.float32),
             rng.uniform(size=(64,)).astype(np.float32)) for _ in range(4)]
    with TallyClient(live_servers[0]) as tally:
        document = tally.create(name, "AUC", {"num_thresholds": 200},
                                window={"bucket_seconds": 60, "buckets": 15})
        assert document["window"] == {"bucket_seconds": 60, "buckets": 15}
        for y_true, y_pred in data:
            tally.update(name, y_true, y_pred)
        tally.reset(name)  # windows outlive epochs
        last_15_minutes = tally.result(name, window=900)
        assert last_15_minutes["window_seconds"] == 900
        batches_seen = [{"y_true": t, "y_pred": p} for t, p in data]
        assert_close(json_array(last_15_minutes["result"]),
                     keras_over("AUC", {"num_thresholds": 200}, batches_seen), "15 minutes")
        assert_close(json_array(tally.result(name)["result"]),  # the new epoch: no batch yet
                     keras_over("AUC", {"num_thresholds": 200}, []), "new epoch")
        tally.delete(name)
