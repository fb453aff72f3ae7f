"""Metric collections through the HTTP API (shared/API.md, "Metric collections"): every member
against Keras after every batch on the memory and the Redis store, the documents, PUT's
idempotency, merge by prefixed names, reset and history, epochs and idempotency keys, the state
limit, and every bad collection answered with a 4xx that creates nothing; on the Cluster store
through the service; and batches split across concurrent clients on two server processes."""

from __future__ import annotations

import asyncio
import random

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.metrics.collection import MAX_MEMBERS
from app.service import Sessions
from app.settings import Settings
from tests.cases import batches
from tests.collection_cases import COLLECTIONS, IDS, KerasCollection
from tests.oracle import assert_close, json_array, tally_inputs

PAIR = [{"metric": "Precision"}, {"metric": "Recall"}, {"metric": "AUC",
                                                       "config": {"num_thresholds": 20}}]


def client_for(store, **settings):
    return TestClient(create_app(Settings(max_body_bytes=200_000, **settings), store=store))


@pytest.fixture
def client(api_store):
    with client_for(api_store) as c:
        yield c


def put(client, name, members, **body):
    return client.put(f"/v1/sessions/{name}", json={"metrics": members, **body})


def update(client, name, batch, **kwargs):
    return client.post(f"/v1/sessions/{name}/update", json=batch, **kwargs)


def variables(client, name):
    return client.get(f"/v1/sessions/{name}/variables").json()["variables"]


@pytest.mark.parametrize(("members", "kind"), [COLLECTIONS[i] for i in (0, 1, 3, 4)],
                         ids=[IDS[i] for i in (0, 1, 3, 4)])
def test_every_member_equals_keras_after_every_batch(client, members, kind):
    reference = KerasCollection(members)
    assert put(client, "c", members).status_code == 201
    reference.compare_config(client.get("/v1/sessions/c/config").json(), "config")
    for step, batch in enumerate(batches(kind, seed=11, count=4)):
        reference.update(batch)
        answer = update(client, "c", batch)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"epoch": 0, "samples": len(next(iter(batch.values())))}
        result = client.get("/v1/sessions/c/result").json()
        assert (result["name"], result["epoch"]) == ("c", 0)
        reference.compare_result(result["result"], f"batch {step}")
        reference.compare_variables(variables(client, "c"), f"batch {step}")
    closed = client.post("/v1/sessions/c/reset").json()
    assert closed["epoch"] == 1
    reference.compare_result(closed["closed"]["result"], "closed epoch")
    history = client.get("/v1/sessions/c/history").json()["epochs"]
    assert [e["epoch"] for e in history] == [0]
    reference.compare_result(history[0]["result"], "history")
    reference.reset()
    reference.compare_result(client.get("/v1/sessions/c/result").json()["result"], "reset")
    reference.compare_variables(variables(client, "c"), "after reset")


def test_the_documents_name_the_members(client):
    created = put(client, "run1.val", PAIR, ttl_seconds=3600)
    assert created.status_code == 201
    document = created.json()
    assert "metric" not in document
    assert document["metrics"] == ["Precision", "Recall", "AUC"]
    assert [m["class_name"] for m in document["config"]["metrics"]] == document["metrics"]
    assert document["epoch"] == 0 and document["ttl_seconds"] == 3600
    assert [v["name"] for v in document["variables"]] == [
        "precision/true_positives", "precision/false_positives", "recall/true_positives",
        "recall/false_negatives", "auc/true_positives", "auc/false_positives",
        "auc/true_negatives", "auc/false_negatives"]
    update(client, "run1.val", {"y_true": [1, 0, 1], "y_pred": [0.9, 0.8, 0.1]})
    got = client.get("/v1/sessions/run1.val").json()
    assert got["metrics"] == document["metrics"]
    assert set(got["result"]) == {"precision", "recall", "auc"}
    assert got["result"]["precision"] == pytest.approx(0.5)
    listed = client.get("/v1/sessions", params={"prefix": "run1."}).json()["sessions"]
    assert listed == [{"name": "run1.val", "metrics": ["Precision", "Recall", "AUC"],
                       "epoch": 0, "result": got["result"]}]


def test_put_is_idempotent_for_equal_members_and_conflicts_otherwise(client):
    assert put(client, "c", PAIR).status_code == 201
    # Equal members, spelled with aliases and explicit defaults: the same full config.
    same = [{"metric": "precision"}, {"metric": "Recall", "config": {"thresholds": None}},
            {"metric": "auc", "config": {"num_thresholds": 20, "curve": "ROC"}}]
    assert put(client, "c", same).status_code == 200
    for other in (PAIR[:2], [PAIR[1], PAIR[0], PAIR[2]],
                  [PAIR[0], PAIR[1], {"metric": "AUC", "config": {"num_thresholds": 21}}]):
        answer = put(client, "c", other)
        assert answer.status_code == 409, other
        assert "a collection of ['Precision', 'Recall', 'AUC']" in answer.json()["detail"]
    answer = client.put("/v1/sessions/c", json={"metric": "Precision"})
    assert answer.status_code == 409
    assert client.put("/v1/sessions/one", json={"metric": "Precision"}).status_code == 201
    assert put(client, "one", [{"metric": "Precision"}]).status_code == 409


@pytest.mark.parametrize(("body", "status", "says"), [
    ({"metrics": []}, 422, "non-empty list"),
    ({"metrics": {"metric": "Precision"}}, 422, "non-empty list"),
    ({"metrics": [{"metric": "Precision"}, {"metric": "Precision"}]}, 422,
     "both named 'precision'"),
    ({"metrics": [{"metric": "Precision"}, {"metric": "Mean"}]}, 422, "take the same inputs"),
    ({"metrics": [{"metric": "Precision"}, {"metric": "Precisoin"}]}, 404, "Precisoin"),
    ({"metrics": [{"metric": "Mean", "config": {"name": f"m{i}"}}
                  for i in range(MAX_MEMBERS + 1)]}, 422, f"at most {MAX_MEMBERS} members"),
    ({"metric": "Precision", "metrics": [{"metric": "Recall"}]}, 422, "either 'metric'"),
    ({"config": {}, "metrics": [{"metric": "Recall"}]}, 422, "either 'metric'"),
    ({"metrics": [{"metric": "AUC", "config": {"num_thresholds": 1}}]}, 422, "num_thresholds"),
    ({"metrics": [{"metric": "AUC", "curve": "PR"}]}, 422, "unknown field"),
    ({"metrics": ["AUC"]}, 422, "must be an object"),
    # The name a collection is stored under is no metric class.
    ({"metric": "[collection]", "config": {"metrics": [{"metric": "Recall"}]}}, 404,
     "'[collection]'"),
])
def test_bad_collections_are_4xx_and_create_nothing(client, body, status, says):
    answer = client.put("/v1/sessions/bad", json=body)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert says in answer.json()["detail"]
    assert client.get("/v1/sessions/bad").status_code == 404
    assert client.get("/v1/sessions").json()["sessions"] == []


def test_an_update_that_does_not_fit_every_member_changes_nothing(client):
    members = [{"metric": "Precision"}, {"metric": "F1Score"}]
    put(client, "c", members)
    update(client, "c", {"y_true": [[1, 0], [0, 1]], "y_pred": [[0.9, 0.2], [0.3, 0.8]]})
    before = variables(client, "c")
    # Precision takes 1-D labels; F1Score wants the 2 columns of the first batch.
    answer = update(client, "c", {"y_true": [1, 0, 1], "y_pred": [0.9, 0.2, 0.4]})
    assert answer.status_code == 422
    assert "member 'f1_score' (F1Score)" in answer.json()["detail"]
    answer = update(client, "c", {"values": [1.0, 2.0]})
    assert answer.status_code == 422
    assert "a collection of ['Precision', 'F1Score'] takes ['y_true', 'y_pred']" in \
        answer.json()["detail"]
    assert variables(client, "c") == before


def test_merge_takes_prefixed_names_and_refuses_half_a_group(client):
    put(client, "c", PAIR)
    merged = {"precision/true_positives": [3.0], "recall/true_positives": [3.0],
              "precision/false_positives": [1.0], "recall/false_negatives": [2.0]}
    answer = client.post("/v1/sessions/c/merge", json={"variables": merged})
    assert answer.status_code == 200 and answer.json() == {"epoch": 0, "samples": 0}
    shown = {v["name"]: v["value"] for v in variables(client, "c")}
    assert {k: shown[k] for k in merged} == merged
    result = client.get("/v1/sessions/c/result").json()["result"]
    assert result["precision"] == pytest.approx(3 / 4) and result["recall"] == pytest.approx(0.6)
    for bad in ({"recall/true_positives": [1.0]},
                {"precision/true_positives": [1.0], "recall/true_positives": [2.0]},
                {"true_positives": [1.0]}, {"auc/true_positives": [1.0]}):
        answer = client.post("/v1/sessions/c/merge", json={"variables": bad})
        assert answer.status_code == 422, bad
    assert {v["name"]: v["value"] for v in variables(client, "c")} == shown


def test_epochs_and_idempotency_keys_work_as_for_one_metric(client):
    put(client, "c", [{"metric": "Sum"}, {"metric": "Mean"}])
    key = {"Idempotency-Key": "batch-1"}
    first = update(client, "c", {"values": [1.0, 2.0, 6.0]}, headers=key)
    again = update(client, "c", {"values": [1.0, 2.0, 6.0]}, headers=key)
    assert first.json() == again.json() and again.headers["Idempotent-Replayed"] == "true"
    assert update(client, "c", {"values": [5.0]}, headers=key).status_code == 422
    stale = update(client, "c", {"values": [100.0], "epoch": 1})
    assert stale.status_code == 409
    assert client.get("/v1/sessions/c/result").json()["result"] == {"sum": 9.0, "mean": 3.0}
    client.post("/v1/sessions/c/reset", json={"epoch": 0})
    assert update(client, "c", {"values": [4.0], "epoch": 1}).json()["epoch"] == 1
    assert client.get("/v1/sessions/c/result").json() == {
        "name": "c", "epoch": 1, "result": {"sum": 4.0, "mean": 4.0}}


def test_an_npz_update_reaches_every_member(client):
    import io
    put(client, "c", [{"metric": "Sum"}, {"metric": "Mean"}])
    buffer = io.BytesIO()
    np.savez(buffer, values=np.arange(10, dtype=np.float32))
    answer = client.post("/v1/sessions/c/update", content=buffer.getvalue(),
                         headers={"Content-Type": "application/x-npz"})
    assert answer.status_code == 200, answer.text
    assert client.get("/v1/sessions/c/result").json()["result"] == {"sum": 45.0, "mean": 4.5}


def test_the_state_limit_counts_the_whole_collection(api_store):
    members = [{"metric": "AUC", "config": {"num_thresholds": 100}},
               {"metric": "AUC", "config": {"num_thresholds": 60, "name": "coarse"}},
               {"metric": "F1Score"}]
    with client_for(api_store, max_state_elements=4 * 160 + 4 * 3) as client:
        too_big = put(client, "c", [*members, {"metric": "AUC", "config": {
            "num_thresholds": 4, "name": "tiny"}}])
        assert too_big.status_code == 422
        assert f"would keep {4 * 100 + 4 * 60 + 4 * 4} state elements" in \
            too_big.json()["detail"]
        assert client.get("/v1/sessions/c").status_code == 404
        assert put(client, "c", members).status_code == 201
        wide = {"y_true": np.eye(4)[[0, 1, 2]].tolist(), "y_pred": np.eye(4)[[0, 2, 1]].tolist()}
        answer = update(client, "c", wide)  # F1Score's 4 classes: 16 elements, 4 too many
        assert answer.status_code == 422, answer.text
        assert "F1Score would keep 16 state elements" in answer.json()["detail"]
        assert "12 left by the collection's other members" in answer.json()["detail"]
        assert client.get("/v1/sessions/c/result").json()["result"]["f1_score"] is None
        narrow = {"y_true": np.eye(3)[[0, 1]].tolist(), "y_pred": np.eye(3)[[0, 2]].tolist()}
        assert update(client, "c", narrow).status_code == 200


async def test_collections_on_every_store_through_the_service(store):
    """The service on the memory, Redis and Redis Cluster stores: updates, merge by prefixed
    names, reset and history, against Keras."""
    members, kind = COLLECTIONS[0]
    sessions = Sessions(store)
    reference = KerasCollection(members)
    document, created = await sessions.create("cl.c", None, None, None, members=members)
    assert created and document["metrics"] == ["Precision", "Recall", "AUC", "F1Score"]
    for batch in batches(kind, seed=21, count=3):
        reference.update(batch)
        arrays, weight = tally_inputs(batch)
        await sessions.update("cl.c", arrays, weight, 0, None)
    reference.compare_result((await sessions.result("cl.c"))["result"], "after updates")
    shown = (await sessions.variables("cl.c"))["variables"]
    reference.compare_variables(shown, "after updates")
    # Merging the session's own variables doubles every count: each member's state doubles.
    doubled = {v["name"]: np.asarray(v["value"], np.float64) for v in shown}
    await sessions.merge("cl.c", doubled, 0, "merge-1")
    await sessions.merge("cl.c", doubled, 0, "merge-1")  # replayed, not applied twice
    for batch in batches(kind, seed=21, count=3):
        reference.update(batch)
    reference.compare_variables((await sessions.variables("cl.c"))["variables"], "merged")
    closed = await sessions.reset("cl.c", 0)
    reference.compare_result(closed["closed"]["result"], "closed")
    history = await sessions.history("cl.c")
    reference.compare_result(history["epochs"][0]["result"], "history")
    again, created = await sessions.create("cl.c", None, None, None, members=members)
    assert not created and again["epoch"] == 1


async def test_batches_split_across_concurrent_clients_give_keras_totals(live_servers):
    """Every batch posted once by one of 4 clients on two server processes (two workers each)
    sharing Redis, some twice with the same Idempotency-Key: each member ends as Keras ends
    over all the batches."""
    for index in (0, 1, 4):
        members, kind = COLLECTIONS[index]
        name = f"coll.concurrent.{index}.{random.randrange(10**9)}"
        data = batches(kind, seed=31 + index, count=12)
        reference = KerasCollection(members)
        for batch in data:
            reference.update(batch)
        async with httpx.AsyncClient(timeout=30) as admin:
            created = await admin.put(f"{live_servers[0]}/v1/sessions/{name}",
                                      json={"metrics": members})
            assert created.status_code == 201, created.text
        shuffled = list(enumerate(data))
        random.Random(index).shuffle(shuffled)

        async def worker(part, name=name):
            async with httpx.AsyncClient(timeout=30) as own:
                for i, batch in part:
                    url = f"{live_servers[i % 2]}/v1/sessions/{name}/update"
                    headers = {"Idempotency-Key": f"b{i}"}
                    for _ in range(1 + i % 3 // 2):  # every third batch is retried
                        r = await own.post(url, json=batch, headers=headers)
                        assert r.status_code == 200, r.text

        await asyncio.gather(*(worker(shuffled[w::4]) for w in range(4)))
        async with httpx.AsyncClient(timeout=30) as client:
            result = (await client.get(f"{live_servers[1]}/v1/sessions/{name}/result")).json()
            shown = (await client.get(f"{live_servers[0]}/v1/sessions/{name}/variables")).json()
        reference.compare_result(result["result"], f"collection {index} concurrent")
        reference.compare_variables(shown["variables"], f"collection {index} concurrent")


async def test_exact_totals_with_resets_under_load(live_servers):
    """Sum and Mean together under concurrent updates and resets: per epoch, both members saw
    exactly the batches that landed in it (no batch in one member and not the other)."""
    rng = random.Random(5)
    name = f"coll.epochs.{rng.randrange(10**9)}"
    async with httpx.AsyncClient(timeout=30) as admin:
        await admin.put(f"{live_servers[0]}/v1/sessions/{name}",
                        json={"metrics": [{"metric": "Sum"}, {"metric": "Mean"}]})
    landed: dict[int, list[float]] = {}
    done = asyncio.Event()

    async def worker(w: int) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            for b in range(25):
                values = [float(rng.randrange(1, 1000)) for _ in range(3)]
                r = await client.post(f"{live_servers[b % 2]}/v1/sessions/{name}/update",
                                      json={"values": values})
                assert r.status_code == 200, r.text
                landed.setdefault(r.json()["epoch"], []).extend(values)

    async def resetter() -> list[dict]:
        closed = []
        async with httpx.AsyncClient(timeout=30) as client:
            while not done.is_set():
                await asyncio.sleep(0.05)
                r = await client.post(f"{live_servers[len(closed) % 2]}/v1/sessions/"
                                      f"{name}/reset")
                assert r.status_code == 200, r.text
                closed.append(r.json()["closed"])
        return closed

    reset_task = asyncio.create_task(resetter())
    await asyncio.gather(*(worker(w) for w in range(8)))
    done.set()
    closed = await reset_task
    async with httpx.AsyncClient(timeout=30) as client:
        current = (await client.get(f"{live_servers[0]}/v1/sessions/{name}/result")).json()
    results = {c["epoch"]: c["result"] for c in closed} | {current["epoch"]: current["result"]}
    for epoch, result in results.items():
        values = landed.get(epoch, [])
        assert_close(json_array(result["sum"]), np.float32(sum(values)), f"epoch {epoch} sum")
        expected_mean = np.mean(values) if values else 0.0
        assert_close(json_array(result["mean"]), expected_mean, f"epoch {epoch} mean")


def test_the_readme_example_with_the_python_client(live_servers):
    """README's worked example, as a user writes it with tally_client, against Keras."""
    from tally_client import TallyClient

    name = f"run42.val.{random.randrange(10**9)}"
    members = [
        {"metric": "Precision"}, {"metric": "Recall"},
        {"metric": "AUC", "config": {"num_thresholds": 200}},
        {"metric": "AUC", "config": {"curve": "PR", "name": "pr_auc"}},
        {"metric": "F1Score", "config": {"threshold": 0.5}},
    ]
    rng = np.random.default_rng(42)
    data = [(rng.integers(0, 2, (32, 1)).astype(np.float32),
             rng.uniform(size=(32, 1)).astype(np.float32)) for _ in range(5)]
    reference = KerasCollection(members)
    with TallyClient(live_servers[0]) as tally:
        document = tally.create(name, metrics=members)
        assert document["metrics"] == ["Precision", "Recall", "AUC", "AUC", "F1Score"]
        for y_true, y_pred in data:
            tally.update(name, y_true, y_pred)
            reference.update({"y_true": y_true, "y_pred": y_pred})
        reference.compare_result(tally.result(name)["result"], "client result")
        closed = tally.reset(name)["closed"]
        reference.compare_result(closed["result"], "client reset")
        tally.delete(name)


@pytest.fixture
def plugin_client():
    from app.store.memory import MemoryStore
    with TestClient(create_app(Settings(plugins="tests.plugin_samples"),
                               store=MemoryStore())) as c:
        yield c


def test_plugin_members_with_max_and_min_aggregations(plugin_client):
    """A plugin's max/min variables beside a built-in's sums, in one collection."""
    client = plugin_client
    assert put(client, "p", [{"metric": "MaxAbsoluteError"}, {"metric": "mae"}]).status_code \
        == 201
    rng = np.random.default_rng(8)
    y_true, y_pred = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    for t, p in zip(y_true, y_pred, strict=True):
        assert update(client, "p", {"y_true": t.tolist(), "y_pred": p.tolist()}).status_code \
            == 200
    errors = np.abs(y_true.astype(np.float32) - y_pred.astype(np.float32))
    shown = {v["name"]: v["value"] for v in variables(client, "p")}
    assert shown["max_absolute_error/largest"] == pytest.approx(float(errors.max()), rel=1e-6)
    assert shown["max_absolute_error/smallest"] == pytest.approx(float(errors.min()), rel=1e-6)
    result = client.get("/v1/sessions/p/result").json()["result"]
    assert result["mean_absolute_error"] == pytest.approx(float(errors.mean()), rel=1e-5)


def test_a_plugin_member_that_is_not_an_increment_is_refused_and_changes_nothing(
        plugin_client):
    client = plugin_client
    put(client, "e", [{"metric": "Mean"}, {"metric": "ExponentialAverage"}])
    answer = update(client, "e", {"values": [1.0, 3.0]})
    assert answer.status_code == 422
    assert "not a 'sum' aggregation" in answer.json()["detail"]
    assert client.get("/v1/sessions/e/result").json()["result"]["mean"] == 0.0
