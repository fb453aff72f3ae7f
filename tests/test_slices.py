"""Slices (shared/API.md, "Slices"): every slice's result and variables against real Keras over
exactly the samples that belong to it, after every batch, on the memory and the Redis store
through the HTTP API; collections, lazily shaped metrics, `.npz` bodies, merges, epochs,
idempotent replays and the history; the limit (a batch past it is a 422 that changes nothing);
every bad slice input a 4xx that changes nothing; concurrent writers with exact totals on two
live servers sharing one Redis; the service on a Redis Cluster."""

from __future__ import annotations

import io
import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.metrics.registry import REGISTRY
from app.service import Sessions
from app.settings import Settings
from app.slicing import MAX_SLICE_CHARS, from_fields
from app.store.redis import RedisStore
from tests.cases import batches
from tests.clock import OFFSETS, START, WINDOW, B, FakeClock, K, inside
from tests.collection_cases import KerasCollection
from tests.oracle import assert_close, json_array, keras_metric, keras_update, keras_variables

METRICS = [("Precision", {}, "binary"), ("AUC", {"num_thresholds": 50}, "binary"),
           ("AUC", {"curve": "PR", "multi_label": True}, "binary"),
           ("MeanSquaredError", {}, "regression"), ("SparseCategoricalAccuracy", {}, "sparse"),
           ("Mean", {}, "values"), ("F1Score", {"average": "macro"}, "binary"),
           ("R2Score", {}, "regression"),
           ("MeanIoU", {"num_classes": 4, "dtype": "float32"}, "exact")]  # float: weighted
VALUES = ["eu", "us", 7, "asia"]  # 7 is the slice "7"


@pytest.fixture
def client(api_store):
    with TestClient(create_app(Settings(), store=api_store)) as c:
        yield c


def big_batches(kind: str, seed: int, count: int) -> list[dict[str, Any]]:
    """`count` batches of 24 samples (four of the catalogue's 6-sample batches each), half of
    them weighted per sample."""
    small = batches(kind, seed, count * 4)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        group = small[4 * i:4 * i + 4]
        joined = {k: [row for b in group for row in b[k]] for k in group[0]
                  if k != "sample_weight"}
        if i % 2:
            joined["sample_weight"] = (rng.integers(0, 9, size=24) / 4).tolist()
        out.append(joined)
    return out


def rows_of(batch: dict[str, Any], index: list[int]) -> dict[str, Any]:
    return {k: [v[i] for i in index] for k, v in batch.items()}


class KerasSlices:
    """The oracle: one Keras metric over every sample, and one per slice value over exactly
    that value's samples."""

    def __init__(self, make: Any) -> None:
        self.make = make
        self.overall = make()
        self.slices: dict[str, Any] = {}

    def update(self, batch: dict[str, Any], labels: list[Any] | None) -> None:
        self.overall.update(batch) if hasattr(self.overall, "compare_result") \
            else keras_update(self.overall, batch)
        for value, index in groups(labels, len(next(iter(batch.values())))).items():
            reference = self.slices.setdefault(value, self.make())
            part = rows_of(batch, index)
            if hasattr(reference, "compare_result"):
                reference.update(part)
            else:
                keras_update(reference, part)


def groups(labels: list[Any] | str | int | None, n: int) -> dict[str, list[int]]:
    """Each slice value's sample positions, computed here (not by Tally)."""
    if labels is None:
        return {}
    if not isinstance(labels, list):
        return {str(labels): list(range(n))}
    out: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        out.setdefault(str(label), []).append(i)
    return out


def update(client, name: str, batch: dict[str, Any], labels: Any, **extra: Any
           ) -> httpx.Response:
    body = dict(batch)
    if isinstance(labels, list):
        body["slices"] = labels
    elif labels is not None:
        body["slice"] = labels
    return client.post(f"/v1/sessions/{name}/update", json={**body, **extra})


def labelling(rng: np.random.Generator, step: int, n: int) -> Any:
    """Per-sample values mostly; a whole-batch value or none now and then."""
    if step % 5 == 3:
        return VALUES[step % len(VALUES)]
    if step % 5 == 4:
        return None
    return [VALUES[i] for i in rng.integers(0, len(VALUES), size=n)]


@pytest.mark.parametrize(("metric", "config", "kind"), METRICS,
                         ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(METRICS)])
def test_every_slice_equals_keras_over_its_samples(client, metric, config, kind):
    assert client.put("/v1/sessions/s", json={"metric": metric, "config": config,
                                              "slices": {"max": 10}}).status_code == 201
    oracle = KerasSlices(lambda: keras_metric(metric, config))
    rng = np.random.default_rng(11)
    for step, batch in enumerate(big_batches(kind, seed=3, count=7)):
        labels = labelling(rng, step, 24)
        answer = update(client, "s", batch, labels)
        assert answer.status_code == 200, answer.text
        oracle.update(batch, labels)
        where = f"{metric} after batch {step}"
        overall = client.get("/v1/sessions/s/result").json()
        assert_close(json_array(overall["result"]), np.asarray(oracle.overall.result()),
                     f"{where}: overall")
        every = client.get("/v1/sessions/s/slices").json()
        assert (every["name"], every["epoch"]) == ("s", 0)
        assert list(every["slices"]) == list(oracle.slices), where  # in order of arrival
        for value, reference in oracle.slices.items():
            expected = np.asarray(reference.result())
            assert_close(json_array(every["slices"][value]), expected, f"{where}: {value}")
            one = client.get("/v1/sessions/s/result", params={"slice": value}).json()
            assert (one["slice"], one["epoch"]) == (value, 0)
            assert_close(json_array(one["result"]), expected, f"{where}: ?slice={value}")
    for value, reference in oracle.slices.items():
        ours = client.get("/v1/sessions/s/variables", params={"slice": value}).json()
        assert ours["slice"] == value
        theirs = keras_variables(reference)
        assert [v["name"] for v in ours["variables"]] == [n for n, _ in theirs]
        for variable, (_, expected) in zip(ours["variables"], theirs, strict=True):
            assert_close(json_array(variable["value"]), expected, f"{value}: {variable['name']}")


def test_a_sliced_collection_answers_every_member_per_slice(client):
    members = [{"metric": "Precision"}, {"metric": "Recall"},
               {"metric": "AUC", "config": {"num_thresholds": 30}}, {"metric": "F1Score"}]
    created = client.put("/v1/sessions/c", json={"metrics": members, "slices": {"max": 4}})
    assert created.status_code == 201 and created.json()["slices"] == {"max": 4}
    oracle = KerasSlices(lambda: KerasCollection(members))
    rng = np.random.default_rng(5)
    for step, batch in enumerate(big_batches("binary", seed=9, count=5)):
        labels = labelling(rng, step, 24)
        assert update(client, "c", batch, labels).status_code == 200
        oracle.update(batch, labels)
    every = client.get("/v1/sessions/c/slices").json()["slices"]
    for value, reference in oracle.slices.items():
        reference.compare_result(every[value], f"slice {value}")
        reference.compare_variables(
            client.get("/v1/sessions/c/variables", params={"slice": value}).json()["variables"],
            f"slice {value}")
    oracle.overall.compare_result(client.get("/v1/sessions/c/result").json()["result"], "all")


def npz(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_npz_slices_as_text_or_integers_equal_json(client):
    batch = big_batches("binary", seed=2, count=1)[0]
    labels = [VALUES[i] for i in np.random.default_rng(1).integers(0, 4, size=24)]
    for name in ("json", "text", "ints"):
        client.put(f"/v1/sessions/{name}", json={"metric": "AUC", "slices": {"max": 8}})
    assert update(client, "json", batch, labels).status_code == 200
    arrays = {k: np.asarray(v, np.float32) for k, v in batch.items()}
    text = npz(**arrays, slices=np.array([str(v) for v in labels]))
    codes = {"eu": 101, "us": 102, "7": 7, "asia": 104}
    ints = npz(**arrays, slices=np.array([codes[str(v)] for v in labels], np.int64))
    headers = {"Content-Type": "application/x-npz"}
    assert client.post("/v1/sessions/text/update", content=text, headers=headers
                       ).status_code == 200
    assert client.post("/v1/sessions/ints/update", content=ints, headers=headers
                       ).status_code == 200
    by_json = client.get("/v1/sessions/json/slices").json()["slices"]
    assert client.get("/v1/sessions/text/slices").json()["slices"] == by_json
    by_code = client.get("/v1/sessions/ints/slices").json()["slices"]
    assert by_code == {str(codes[v]): r for v, r in by_json.items()}
    one = npz(**arrays, slice=np.array("eu"))
    assert client.post("/v1/sessions/text/update", content=one, headers=headers
                       ).status_code == 200
    assert "eu" in client.get("/v1/sessions/text/slices").json()["slices"]


def test_an_idempotency_key_covers_the_slices(client):
    client.put("/v1/sessions/k", json={"metric": "Mean", "slices": {"max": 4}})
    body = {"values": [1.0, 2.0, 3.0], "slices": ["a", "b", "a"]}
    key = {"Idempotency-Key": "once"}
    for _ in range(2):
        assert client.post("/v1/sessions/k/update", json=body, headers=key).status_code == 200
    assert client.get("/v1/sessions/k/slices").json()["slices"] == {"a": 2.0, "b": 2.0}
    # The same arrays under other slices are another request: the key is refused.
    other = client.post("/v1/sessions/k/update", json={**body, "slices": ["a", "a", "b"]},
                        headers=key)
    assert other.status_code == 422 and "Idempotency-Key" in other.json()["detail"]
    # The same batch as .npz is the same request: replayed.
    same = npz(values=np.array([1.0, 2.0, 3.0]), slices=np.array(["a", "b", "a"]))
    replay = client.post("/v1/sessions/k/update", content=same,
                         headers={**key, "Content-Type": "application/x-npz"})
    assert replay.status_code == 200 and replay.headers.get("Idempotent-Replayed") == "true"
    assert client.get("/v1/sessions/k/slices").json()["slices"] == {"a": 2.0, "b": 2.0}


def test_merge_into_a_slice_adds_to_it_and_to_the_overall(client):
    client.put("/v1/sessions/m", json={"metric": "Precision", "slices": {"max": 4}})
    batch = big_batches("binary", seed=4, count=1)[0]
    assert update(client, "m", batch, "us").status_code == 200
    donor = keras_metric("Precision")
    extra = big_batches("binary", seed=6, count=1)[0]
    keras_update(donor, extra)
    variables = {n: v.tolist() for n, v in keras_variables(donor)}
    merged = client.post("/v1/sessions/m/merge", json={"variables": variables, "slice": "us"})
    assert merged.status_code == 200, merged.text
    reference = keras_metric("Precision")
    keras_update(reference, batch)
    keras_update(reference, extra)
    expected = np.asarray(reference.result())
    assert_close(client.get("/v1/sessions/m/result", params={"slice": "us"}).json()["result"],
                 expected, "slice us")
    assert_close(client.get("/v1/sessions/m/result").json()["result"], expected, "overall")
    assert client.post("/v1/sessions/m/merge", json={"variables": variables, "slice": ""}
                       ).status_code == 422


def test_reset_clears_slices_and_the_history_keeps_them(client):
    client.put("/v1/sessions/h", json={"metric": "AUC", "config": {"num_thresholds": 40},
                                       "slices": {"max": 3}})
    epochs = [big_batches("binary", seed=s, count=2) for s in (1, 2)]
    labels = [["a", "b"] * 12, "c"]
    expected_history = []
    for epoch, fed in enumerate(epochs):
        oracle = KerasSlices(lambda: keras_metric("AUC", {"num_thresholds": 40}))
        for batch, label in zip(fed, labels, strict=True):
            assert update(client, "h", batch, label, epoch=epoch).status_code == 200
            oracle.update(batch, label)
        closed = client.post("/v1/sessions/h/reset", json={"epoch": epoch}).json()["closed"]
        assert closed["epoch"] == epoch and list(closed["slices"]) == ["a", "b", "c"]
        for value, reference in oracle.slices.items():
            assert_close(closed["slices"][value], np.asarray(reference.result()), value)
        expected_history.append(closed)
        after = client.get("/v1/sessions/h/slices").json()
        assert after == {"name": "h", "epoch": epoch + 1, "slices": {}}
        missing = client.get("/v1/sessions/h/result", params={"slice": "a"})
        assert missing.status_code == 404 and f"epoch {epoch + 1}" in missing.json()["detail"]
    history = client.get("/v1/sessions/h/history").json()["epochs"]
    assert history == expected_history
    # A late batch of a closed epoch lands nowhere, in no slice.
    late = update(client, "h", epochs[0][0], "a", epoch=0)
    assert late.status_code == 409
    assert client.get("/v1/sessions/h/slices").json()["slices"] == {}


def test_the_slices_are_part_of_the_session(client):
    created = client.put("/v1/sessions/p", json={"metric": "AUC", "slices": {"max": 5}})
    assert created.status_code == 201
    assert client.get("/v1/sessions/p").json()["slices"] == {"max": 5}
    assert client.put("/v1/sessions/p", json={"metric": "AUC", "slices": {"max": 5}}
                      ).status_code == 200
    for other in ({"max": 6}, None):
        answer = client.put("/v1/sessions/p", json={"metric": "AUC", "slices": other})
        assert answer.status_code == 409 and 'slices {"max": 5}' in answer.json()["detail"]
    plain = client.put("/v1/sessions/q", json={"metric": "AUC"})
    assert plain.json()["slices"] is None


def state_of(client, name: str) -> tuple[Any, Any, Any]:
    return (client.get(f"/v1/sessions/{name}/result").json(),
            client.get(f"/v1/sessions/{name}/slices").json(),
            client.get(f"/v1/sessions/{name}/variables").json())


def test_a_batch_past_the_limit_is_a_422_that_changes_nothing(client):
    client.put("/v1/sessions/l", json={"metric": "Mean", "slices": {"max": 3}})
    assert update(client, "l", {"values": [1.0, 2.0]}, ["a", "b"]).status_code == 200
    before = state_of(client, "l")
    for labels in (["c", "d"], ["a", "b", "c", "d", "e"][:4]):
        answer = update(client, "l", {"values": [1.0] * len(labels)}, labels)
        assert answer.status_code == 422, answer.text
        assert "at most 3" in answer.json()["detail"]
        assert "Nothing was applied" in answer.json()["detail"]
        assert state_of(client, "l") == before
    # Four distinct values in one batch are refused before any work (a limit of 3).
    many = update(client, "l", {"values": [1.0] * 4}, ["p", "q", "r", "s"])
    assert many.status_code == 422 and "4 distinct" in many.json()["detail"]
    assert update(client, "l", {"values": [5.0]}, "c").status_code == 200  # the third fits
    assert client.get("/v1/sessions/l/slices").json()["slices"] == {"a": 1.0, "b": 2.0,
                                                                    "c": 5.0}


BAD_CREATES = [
    ({"max": 0}, "from 1 to 1000"), ({"max": 1001}, "1001"), ({"max": True}, "True"),
    ({"max": 2.5}, "2.5"), ({"max": "3"}, "'3'"), ({}, "{}"), ([3], "[3]"), (3, "got 3"),
    ({"max": 3, "min": 1}, "'min'"),
]


@pytest.mark.parametrize(("slices", "fragment"), BAD_CREATES,
                         ids=[str(i) for i in range(len(BAD_CREATES))])
def test_bad_slices_at_create_are_422_and_create_nothing(client, slices, fragment):
    answer = client.put("/v1/sessions/bad", json={"metric": "AUC", "slices": slices})
    assert answer.status_code == 422, answer.text
    assert "'slices' must be" in answer.json()["detail"] and fragment in answer.json()["detail"]
    assert client.get("/v1/sessions/bad").status_code == 404


def test_slices_whose_states_exceed_the_state_limit_are_refused(api_store):
    """(max + 1) x the state's elements must fit TALLY_MAX_STATE_ELEMENTS: at create, and for
    a lazily shaped metric at its first batch (F1Score's classes)."""
    settings = Settings(max_state_elements=1000)
    with TestClient(create_app(settings, store=api_store)) as client:
        # Precision keeps 2 elements: (499 + 1) x 2 fits 1000, (500 + 1) x 2 does not.
        ok = client.put("/v1/sessions/fits", json={"metric": "Precision", "slices": {"max": 499}})
        assert ok.status_code == 201, ok.text
        big = client.put("/v1/sessions/big", json={"metric": "Precision", "slices": {"max": 500}})
        assert big.status_code == 422 and "TALLY_MAX_STATE_ELEMENTS" in big.json()["detail"]
        assert client.get("/v1/sessions/big").status_code == 404
        assert client.put("/v1/sessions/lazy", json={"metric": "F1Score",
                                                     "slices": {"max": 9}}).status_code == 201
        wide = {"y_true": np.eye(200)[:4].tolist(), "y_pred": np.eye(200)[:4].tolist(),
                "slice": "a"}
        refused = client.post("/v1/sessions/lazy/update", json=wide)
        assert refused.status_code == 422, refused.text
        assert "first batch" in refused.json()["detail"]
        assert client.get("/v1/sessions/lazy/result").json()["result"] is None
        narrow = {"y_true": np.eye(4).tolist(), "y_pred": np.eye(4).tolist(), "slice": "a"}
        assert client.post("/v1/sessions/lazy/update", json=narrow).status_code == 200


BAD_UPDATES = [
    ({"slice": "a", "slices": ["a"] * 4}, "not both"),
    ({"slices": ["a"] * 3}, "'slices' has 3 values"),
    ({"slices": ["a"] * 5}, "'slices' has 5 values"),
    ({"slices": "abcd"}, "must be a list"),
    ({"slices": [["a"]] * 4}, "type list"),
    ({"slices": ["a", 1.5, "b", "c"]}, "type float"),
    ({"slices": ["a", True, "b", "c"]}, "type bool"),
    ({"slices": ["a", None, "b", "c"]}, "type NoneType"),
    ({"slices": ["a", "", "b", "c"]}, "got ''"),
    ({"slices": ["a", "x" * (MAX_SLICE_CHARS + 1), "b", "c"]}, "1-128 characters"),
    ({"slices": ["a", "tab\there", "b", "c"]}, "control characters"),
    ({"slice": ""}, "got ''"),
    ({"slice": 1.0}, "got 1.0"),
    ({"slice": False}, "got False"),
    ({"slice": ["a"]}, "got ['a']"),
    ({"slice": {"v": 1}}, "got {'v': 1}"),
    ({"slice": "new\nline"}, "control characters"),
    ({"slices": ["a", "b", "c", "d"], "sample_weight": [1.0, 2.0]}, "'sample_weight'"),
]


@pytest.mark.parametrize(("extra", "fragment"), BAD_UPDATES,
                         ids=[str(i) for i in range(len(BAD_UPDATES))])
def test_bad_slices_in_an_update_are_422_and_change_nothing(client, extra, fragment):
    client.put("/v1/sessions/u", json={"metric": "MeanSquaredError", "slices": {"max": 9}})
    base = {"y_true": [[1.0], [2.0], [3.0], [4.0]], "y_pred": [[1.5], [2.0], [2.0], [4.0]]}
    assert update(client, "u", base, ["a", "b", "a", "b"]).status_code == 200
    before = state_of(client, "u")
    answer = client.post("/v1/sessions/u/update", json={**base, **extra})
    assert answer.status_code == 422, answer.text
    assert fragment in answer.json()["detail"], answer.json()["detail"]
    assert state_of(client, "u") == before


def test_asking_an_unsliced_session_for_slices_is_a_422(client):
    client.put("/v1/sessions/plain", json={"metric": "Mean"})
    body = {"values": [1.0, 2.0]}
    for extra in ({"slice": "a"}, {"slices": ["a", "b"]}):
        answer = client.post("/v1/sessions/plain/update", json={**body, **extra})
        assert answer.status_code == 422 and "without slices" in answer.json()["detail"]
    for path, params in (("slices", {}), ("result", {"slice": "a"}),
                         ("variables", {"slice": "a"})):
        answer = client.get(f"/v1/sessions/plain/{path}", params=params)
        assert answer.status_code == 422 and "without slices" in answer.json()["detail"]
    untouched = client.get("/v1/sessions/plain/variables").json()["variables"]
    assert [v["value"] for v in untouched] == [0.0, 0.0]  # total and count: nothing applied
    assert client.get("/v1/sessions/nobody/slices").status_code == 404
    assert client.get("/v1/sessions/nobody/result", params={"slice": "a"}).status_code == 404


@pytest.mark.parametrize(("query", "status"), [("", 422), ("x" * 129, 422), ("tab\t", 422),
                                               ("unseen", 404), ("7", 200), ("ü ✓", 200)])
def test_the_slice_query(client, query, status):
    client.put("/v1/sessions/q", json={"metric": "Mean", "slices": {"max": 3}})
    update(client, "q", {"values": [1.0, 2.0]}, [7, "ü ✓"])
    answer = client.get("/v1/sessions/q/result", params={"slice": query})
    assert answer.status_code == status, answer.text
    variables = client.get("/v1/sessions/q/variables", params={"slice": query})
    assert variables.status_code == status, variables.text


def test_npz_slices_of_other_dtypes_are_refused(client):
    client.put("/v1/sessions/n", json={"metric": "Mean", "slices": {"max": 3}})
    headers = {"Content-Type": "application/x-npz"}
    cases = [(np.array([b"a", b"b"]), 400, "not a numeric array"),
             (np.array([0.5, 1.5]), 422, "dtype float64"),
             (np.array([["a"], ["b"]]), 422, "1-d array"),
             (np.array(["a", ""]), 422, "got ''")]
    for labels, status, fragment in cases:
        body = npz(values=np.array([1.0, 2.0]), slices=labels)
        answer = client.post("/v1/sessions/n/update", content=body, headers=headers)
        assert answer.status_code == status, (labels, answer.text)
        assert fragment in answer.json()["detail"]
    assert client.get("/v1/sessions/n/slices").json()["slices"] == {}


# -- concurrency ---------------------------------------------------------------------------
def test_concurrent_writers_on_two_servers_give_exact_totals(live_servers):
    """Eight writers on two servers (two workers each) sharing one Redis post Sum batches of
    per-sample slices: every slice's total is exactly what was sent for it; a limit of 6 with
    8 candidate values admits exactly 6, and each refused batch counts nowhere."""
    name = f"conc{np.random.default_rng().integers(1 << 30)}"
    with httpx.Client(timeout=30) as http:
        assert http.put(f"{live_servers[0]}/v1/sessions/{name}", json={
            "metric": "Sum", "slices": {"max": 6}}).status_code == 201

    def writer(worker: int) -> list[tuple[list[str], list[float], int]]:
        rng = np.random.default_rng(worker)
        sent = []
        with httpx.Client(timeout=30) as http:
            for step in range(25):
                n = int(rng.integers(1, 9))
                labels = [f"v{v}" for v in rng.integers(0, 8, size=n)]
                values = rng.integers(1, 100, size=n).astype(float).tolist()
                url = f"{live_servers[(worker + step) % 2]}/v1/sessions/{name}/update"
                answer = http.post(url, json={"values": values, "slices": labels})
                assert answer.status_code in (200, 422), answer.text
                sent.append((labels, values, answer.status_code))
        return sent

    with ThreadPoolExecutor(8) as pool:
        sent = list(itertools.chain.from_iterable(pool.map(writer, range(8))))
    with httpx.Client(timeout=30) as http:
        every = http.get(f"{live_servers[1]}/v1/sessions/{name}/slices").json()["slices"]
        overall = http.get(f"{live_servers[0]}/v1/sessions/{name}/result").json()["result"]
        http.delete(f"{live_servers[0]}/v1/sessions/{name}")
    assert len(every) == 6
    totals: dict[str, float] = {}
    for labels, values, status in sent:
        if status == 200:
            for label, value in zip(labels, values, strict=True):
                totals[label] = totals.get(label, 0.0) + value
        else:  # refused: it named a value outside the six admitted
            assert set(labels) - set(every), labels
    assert every == totals
    assert overall == sum(totals.values())


async def test_the_service_on_a_redis_cluster(redis_cluster):
    """Slices through the service on a 3-master Cluster, against Keras per slice."""
    redis_cluster.flush()
    store = RedisStore.from_url(redis_cluster.url, cluster=True)
    sessions = Sessions(store, REGISTRY)
    try:
        await sessions.create("cl.auc", "AUC", {"num_thresholds": 30}, None, slices=4)
        oracle = KerasSlices(lambda: keras_metric("AUC", {"num_thresholds": 30}))
        rng = np.random.default_rng(2)
        for step, batch in enumerate(big_batches("binary", seed=12, count=4)):
            labels = labelling(rng, step, 24)
            arrays = {k: np.asarray(v, np.float32) for k, v in batch.items()
                      if k != "sample_weight"}
            weight = batch.get("sample_weight")
            slicing = None if labels is None else from_fields(
                {"slices" if isinstance(labels, list) else "slice": labels})
            await sessions.update("cl.auc", arrays, None if weight is None
                                  else np.asarray(weight, np.float32), None, None, slicing)
            oracle.update(batch, labels)
        found = (await sessions.slices("cl.auc"))["slices"]
        assert list(found) == list(oracle.slices)
        for value, reference in oracle.slices.items():
            assert_close(found[value], np.asarray(reference.result()), value)
        closed = (await sessions.reset("cl.auc", 0))["closed"]
        assert closed["slices"] == found
        assert (await sessions.slices("cl.auc"))["slices"] == {}
        assert (await sessions.history("cl.auc"))["epochs"][0]["slices"] == found
    finally:
        await store.close()


def test_an_npz_text_array_too_large_is_refused_before_decompressing(client):
    """200,000 values of 128 characters are 102 MB as numpy text: 413 from the header."""
    client.put("/v1/sessions/t", json={"metric": "Mean", "slices": {"max": 3}})
    buffer = io.BytesIO()
    np.savez_compressed(buffer, values=np.ones(200_000),
                        slices=np.full(200_000, "x" * 128))
    answer = client.post("/v1/sessions/t/update", content=buffer.getvalue(),
                         headers={"Content-Type": "application/x-npz"})
    assert answer.status_code == 413, answer.text
    assert "integer codes" in answer.json()["detail"]
    assert client.get("/v1/sessions/t/slices").json()["slices"] == {}


def test_one_long_value_among_many_short_ones(client):
    """Per-sample values are kept as codes: a long value among 100,000 short ones is fine."""
    client.put("/v1/sessions/w", json={"metric": "Sum", "slices": {"max": 3}})
    labels = ["a"] * 99_999 + ["y" * MAX_SLICE_CHARS]
    answer = client.post("/v1/sessions/w/update",
                         json={"values": [1.0] * 100_000, "slices": labels})
    assert answer.status_code == 200, answer.text
    assert client.get("/v1/sessions/w/slices").json()["slices"] == {"a": 99_999.0,
                                                                    "y" * MAX_SLICE_CHARS: 1.0}


# -- windowed slices -------------------------------------------------------------------------


@pytest.fixture
def clocked(api_store):
    fake = FakeClock()
    api_store.clock = fake
    with TestClient(create_app(Settings(), store=api_store)) as c:
        yield c, fake


@pytest.mark.parametrize(("metric", "config", "kind"), [
    ("AUC", {"num_thresholds": 40}, "binary"), ("Precision", {}, "binary"),
    ("MeanSquaredError", {}, "regression"), ("SparseCategoricalAccuracy", {}, "sparse")])
def test_every_slice_of_every_window_equals_keras(clocked, metric, config, kind):
    """Per-slice results over the last S seconds: Keras over exactly the samples of that
    slice in the batches of the window's buckets (computed here from the clock times)."""
    client, clock = clocked
    assert client.put("/v1/sessions/ws", json={"metric": metric, "config": config,
                                               "slices": {"max": 6}, "window": WINDOW}
                      ).status_code == 201
    fed = big_batches(kind, seed=21, count=len(OFFSETS))
    rng = np.random.default_rng(8)
    labels = [labelling(rng, step, 24) for step in range(len(OFFSETS))]
    times = []
    for offset, batch, label in zip(OFFSETS, fed, labels, strict=True):
        clock.now = START + offset
        times.append(clock.now)
        assert update(client, "ws", batch, label).status_code == 200
    for later in (0.0, 70.0, 130.0):
        clock.now = START + OFFSETS[-1] + later
        for seconds in range(B, B * K + 1, B):
            oracle = KerasSlices(lambda: keras_metric(metric, config))
            for i in inside(times, clock.now, seconds):
                oracle.update(fed[i], labels[i])
            where = f"window {seconds}s at +{later}s"
            every = client.get("/v1/sessions/ws/slices", params={"window": seconds}).json()
            assert every["window_seconds"] == seconds
            assert list(every["slices"]) == list(oracle.slices), where
            for value, reference in oracle.slices.items():
                expected = np.asarray(reference.result())
                assert_close(json_array(every["slices"][value]), expected, f"{where}: {value}")
                one = client.get("/v1/sessions/ws/result",
                                 params={"window": seconds, "slice": value}).json()
                assert (one["slice"], one["window_seconds"]) == (value, seconds)
                assert_close(json_array(one["result"]), expected, f"{where}: ?slice={value}")
            for value in {str(v) for v in VALUES} - set(oracle.slices):
                missing = client.get("/v1/sessions/ws/result",
                                     params={"window": seconds, "slice": value})
                assert missing.status_code == 404, (where, value)


def test_a_window_bucket_keeps_at_most_the_limit_too(clocked):
    """A reset lets other values into the epoch while the current bucket still holds the
    earlier ones: the bucket keeps at most `max` too, so such a batch is a 422 that changes
    nothing until the next bucket begins."""
    client, clock = clocked
    client.put("/v1/sessions/wb", json={"metric": "Sum", "slices": {"max": 2},
                                        "window": WINDOW})
    assert update(client, "wb", {"values": [1.0, 2.0]}, ["a", "b"]).status_code == 200
    assert client.post("/v1/sessions/wb/reset").status_code == 200
    before = (client.get("/v1/sessions/wb/slices").json(),
              client.get("/v1/sessions/wb/slices", params={"window": B}).json(),
              client.get("/v1/sessions/wb/result").json())
    refused = update(client, "wb", {"values": [5.0]}, "c")
    assert refused.status_code == 422, refused.text
    assert "per window bucket" in refused.json()["detail"]
    assert (client.get("/v1/sessions/wb/slices").json(),
            client.get("/v1/sessions/wb/slices", params={"window": B}).json(),
            client.get("/v1/sessions/wb/result").json()) == before
    clock.now += B  # a new bucket: room again
    assert update(client, "wb", {"values": [5.0]}, "c").status_code == 200
    both = client.get("/v1/sessions/wb/slices", params={"window": 2 * B}).json()["slices"]
    assert both == {"a": 1.0, "b": 2.0, "c": 5.0}
    assert client.get("/v1/sessions/wb/slices").json()["slices"] == {"c": 5.0}


def test_window_slices_count_in_the_window_limit(api_store):
    settings = Settings(max_window_elements=4 * 2 * 10)  # 4 buckets x (9 + 1) x Precision's 2
    with TestClient(create_app(settings, store=api_store)) as client:
        fits = client.put("/v1/sessions/f", json={"metric": "Precision", "window": WINDOW,
                                                  "slices": {"max": 9}})
        assert fits.status_code == 201, fits.text
        big = client.put("/v1/sessions/g", json={"metric": "Precision", "window": WINDOW,
                                                 "slices": {"max": 10}})
        assert big.status_code == 422 and "TALLY_MAX_WINDOW_ELEMENTS" in big.json()["detail"]


def test_window_queries_on_the_wrong_session_are_422(clocked):
    client, _ = clocked
    client.put("/v1/sessions/sl", json={"metric": "Mean", "slices": {"max": 3}})
    client.put("/v1/sessions/wn", json={"metric": "Mean", "window": WINDOW})
    update(client, "sl", {"values": [1.0]}, "a")
    for name, params in (("sl", {"window": B}), ("wn", {"window": B}),
                         ("sl", {"window": B, "slice": "a"}), ("sl", {"window": 7})):
        path = "slices" if "slice" not in params else "result"
        answer = client.get(f"/v1/sessions/{name}/{path}", params=params)
        assert answer.status_code == 422, (name, params, answer.text)
