"""Slices on the wire (shared/API.md "Slices"), against a scripted transport: the create body,
`slice`/`slices` in JSON and in `.npz` (ints or unicode members, never objects), the query
parameters of result and variables, merge's `slice`, the errors, retries that resend the very
same body, the async twins, and RemoteMetric's slice API."""

from __future__ import annotations

import io
import json
import threading
import zipfile

import httpx
import numpy as np
import pytest
from scripted import Scripted, ok, problem

from tally_client import (
    AsyncTallyClient,
    InvalidInput,
    NotFound,
    RemoteMetric,
    RetryPolicy,
    TallyClient,
)

FAST = RetryPolicy(attempts=3, backoff=0.0)


def client_for(*steps, **options) -> tuple[TallyClient, Scripted]:
    script = Scripted(*steps)
    return TallyClient("http://tally", transport=script.transport(), **options), script


def npz_members(request: httpx.Request) -> dict[str, np.ndarray]:
    """The archive's members, read as the service reads them: no pickles."""
    with np.load(io.BytesIO(request.content), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def body(request: httpx.Request) -> dict:
    assert request.headers["Content-Type"] == "application/json"
    return json.loads(request.content)


# ---- create --------------------------------------------------------------------------------

@pytest.mark.parametrize(("given", "sent"), [
    (1000, {"max": 1000}), (np.int64(5), {"max": 5}), ({"max": 7}, {"max": 7}),
])
def test_create_sends_the_most_distinct_values_as_slices_max(given, sent):
    client, script = client_for(ok({"name": "s"}, status=201))
    client.create("s", "AUC", {"num_thresholds": 20}, slices=given)
    assert body(script.requests[0]) == {"metric": "AUC", "config": {"num_thresholds": 20},
                                        "slices": sent}


@pytest.mark.parametrize("given", [True, "1000", 2.5, [10]])
def test_create_refuses_a_slices_that_is_neither_a_count_nor_a_mapping(given):
    client, script = client_for(ok())
    with pytest.raises(TypeError, match="slices"):
        client.create("s", "AUC", slices=given)
    assert script.requests == []


def test_create_without_slices_sends_no_slices_field():
    client, script = client_for(ok({"name": "s"}, status=201))
    client.create("s", "AUC")
    assert "slices" not in body(script.requests[0])


# ---- update, JSON ----------------------------------------------------------------------------

@pytest.mark.parametrize(("given", "sent"), [
    ("fr", "fr"), (3, 3), (np.int64(3), 3), (np.str_("de"), "de"),
    ("pays de Galles", "pays de Galles"),
])
def test_one_slice_for_the_whole_batch_in_json(given, sent):
    client, script = client_for(ok())
    client.update("s", [0, 1], [0.25, 0.75], slice=given)
    sent_body = body(script.requests[0])
    assert sent_body == {"y_true": [0, 1], "y_pred": [0.25, 0.75], "slice": sent}
    assert type(sent_body["slice"]) is type(sent)


@pytest.mark.parametrize(("given", "sent"), [
    (["fr", "de", "fr"], ["fr", "de", "fr"]),
    ([1, 2, 1], [1, 2, 1]),
    (np.array([10, 20, 10], dtype=np.uint16), [10, 20, 10]),
    (np.array(["fr", "de", "fr"]), ["fr", "de", "fr"]),
    # a pandas object column: strings stay strings, integers become their decimal strings
    # (the same slice as the integer, API.md)
    (np.array(["fr", 7, np.int64(8)], dtype=object), ["fr", "7", "8"]),
    (np.array([1, np.int32(2), 3], dtype=object), [1, 2, 3]),
    (np.array([b"fr", b"d\xc3\xa9"]), ["fr", "dé"]),
])
def test_a_slice_per_sample_in_json(given, sent):
    client, script = client_for(ok())
    client.update("s", values=[1.0, 2.0, 3.0], slices=given)
    assert body(script.requests[0]) == {"values": [1.0, 2.0, 3.0], "slices": sent}


def test_slice_and_slices_together_are_refused_before_anything_is_sent():
    client, script = client_for(ok())
    with pytest.raises(ValueError, match="not both"):
        client.update("s", [0, 1], [0.5, 0.5], slice="fr", slices=["fr", "de"])
    assert script.requests == []


@pytest.mark.parametrize("odd", [None, 2.5, True, {"a": 1}])
def test_per_sample_values_that_are_neither_strings_nor_integers_are_refused(odd):
    client, script = client_for(ok())
    with pytest.raises(TypeError, match="strings or integers"):
        client.update("s", values=[1.0, 2.0], slices=np.array(["fr", odd], dtype=object))
    assert script.requests == []


def test_what_only_the_service_can_judge_is_sent_as_given():
    """Length, characters and counts are the service's to check (it answers a 422)."""
    client, script = client_for(ok())
    client.update("s", values=[1.0, 2.0], slices=["fr", "de", "it"])
    client.update("s", values=[1.0], slice="x" * 500)
    assert body(script.requests[0])["slices"] == ["fr", "de", "it"]
    assert body(script.requests[1])["slice"] == "x" * 500


# ---- update, npz -----------------------------------------------------------------------------

@pytest.mark.parametrize(("given", "kind", "values"), [
    (["fr", "de"] * 30, "U", ["fr", "de"] * 30),
    (np.arange(60) % 4, "i", list(np.arange(60) % 4)),
    (np.arange(60, dtype=np.uint8) % 4, "u", list(np.arange(60) % 4)),
    (np.array(["fr", 3] * 30, dtype=object), "U", ["fr", "3"] * 30),
    (np.array([np.int64(5), 6] * 30, dtype=object), "i", [5, 6] * 30),
])
def test_a_slice_per_sample_in_npz_is_an_int_or_unicode_member(given, kind, values):
    client, script = client_for(ok(), npz_threshold=100)
    y_true = np.tile([0, 1], 30)
    y_pred = np.linspace(0, 1, 60, dtype=np.float32)
    client.update("s", y_true, y_pred, slices=given)
    request = script.requests[0]
    assert request.headers["Content-Type"] == "application/x-npz"
    members = npz_members(request)
    assert sorted(members) == ["slices", "y_pred", "y_true"]
    assert members["slices"].dtype.kind == kind and members["slices"].shape == (60,)
    assert members["slices"].tolist() == values
    np.testing.assert_array_equal(members["y_pred"], y_pred)


@pytest.mark.parametrize(("given", "kind", "value"), [
    ("fr", "U", "fr"), (42, "i", 42), (np.int16(42), "i", 42), (np.str_("é"), "U", "é"),
])
def test_one_slice_in_npz_is_a_0d_member(given, kind, value):
    client, script = client_for(ok(), npz_threshold=10)
    client.update("s", values=np.ones(20, dtype=np.float32), slice=given)
    members = npz_members(script.requests[0])
    assert sorted(members) == ["slice", "values"]
    assert members["slice"].shape == () and members["slice"].dtype.kind == kind
    assert members["slice"].item() == value


def test_no_npz_member_is_a_pickled_object():
    """Every member of a sliced archive loads without pickles and is no object array."""
    client, script = client_for(ok(), npz_threshold=10)
    client.update("s", values=np.ones(20), slices=np.array(["a", 1] * 10, dtype=object))
    with zipfile.ZipFile(io.BytesIO(script.requests[0].content)) as archive:
        assert sorted(archive.namelist()) == ["slices.npy", "values.npy"]
    assert all(a.dtype.kind != "O" for a in npz_members(script.requests[0]).values())


# ---- reads and merge -------------------------------------------------------------------------

def test_result_variables_and_slices_address_a_slice_by_query_parameter():
    client, script = client_for(ok({"name": "s", "epoch": 0, "result": 0.5}))
    client.result("s", slice="fr")
    client.result("s", slice=3)
    client.result("s", slice="a&b=c/é ?")
    client.result("s", slice=np.int64(4))
    client.variables("s", slice="fr")
    client.variables("s")
    client.slices("s")
    client.slices("s", window=900)
    client.result("s", slice="fr", window=900)
    sent = [(r.url.path, dict(r.url.params)) for r in script.requests]
    assert sent == [
        ("/v1/sessions/s/result", {"slice": "fr"}), ("/v1/sessions/s/result", {"slice": "3"}),
        ("/v1/sessions/s/result", {"slice": "a&b=c/é ?"}),
        ("/v1/sessions/s/result", {"slice": "4"}),
        ("/v1/sessions/s/variables", {"slice": "fr"}), ("/v1/sessions/s/variables", {}),
        ("/v1/sessions/s/slices", {}), ("/v1/sessions/s/slices", {"window": "900"}),
        ("/v1/sessions/s/result", {"window": "900", "slice": "fr"}),
    ]
    assert all(r.method == "GET" for r in script.requests)


def test_merge_into_a_slice():
    client, script = client_for(ok({"epoch": 0, "samples": 0}))
    client.merge("s", {"total": np.float32(2.5), "count": 1.0}, slice="fr", epoch=0)
    client.merge("s", {"total": 1.0}, slice=np.int64(7))
    assert body(script.requests[0]) == {"variables": {"total": 2.5, "count": 1.0},
                                        "epoch": 0, "slice": "fr"}
    assert body(script.requests[1]) == {"variables": {"total": 1.0}, "slice": 7}


def test_an_unknown_slice_is_not_found_and_a_refused_slice_is_invalid_input():
    client, script = client_for(problem(404, "no slice 'xx' in epoch 0"), retries=FAST)
    with pytest.raises(NotFound) as unknown:
        client.result("s", slice="xx")
    assert unknown.value.detail == "no slice 'xx' in epoch 0"
    client, script = client_for(problem(422, "more than 3 distinct slices"), retries=FAST)
    with pytest.raises(InvalidInput) as refused:
        client.update("s", values=[1.0, 2.0], slices=["a", "b"])
    assert "distinct slices" in refused.value.detail
    assert len(script.requests) == 1  # a 422 is never retried


# ---- retries ---------------------------------------------------------------------------------

@pytest.mark.parametrize("threshold", [10_000, 10])  # JSON, then npz
def test_a_retried_sliced_update_resends_the_same_body_with_the_same_key(threshold):
    client, script = client_for(problem(503), httpx.ReadTimeout("lost"), ok(),
                                retries=FAST, npz_threshold=threshold)
    client.update("s", values=np.arange(20, dtype=np.float32), slices=["fr", "de"] * 10)
    assert len(script.requests) == 3
    assert len(set(script.keys())) == 1
    assert len({r.content for r in script.requests}) == 1
    assert len({str(r.url) for r in script.requests}) == 1
    first = script.requests[0]
    if threshold == 10:
        assert npz_members(first)["slices"].tolist() == ["fr", "de"] * 10
    else:
        assert body(first)["slices"] == ["fr", "de"] * 10


def test_a_retried_merge_into_a_slice_keeps_its_slice_and_key():
    client, script = client_for(problem(504), ok({"epoch": 0, "samples": 0}), retries=FAST)
    client.merge("s", {"total": 1.0}, slice="fr")
    assert len(set(script.keys())) == 1 and len({r.content for r in script.requests}) == 1
    assert body(script.requests[1])["slice"] == "fr"


# ---- async twins -----------------------------------------------------------------------------

async def test_the_async_client_sends_exactly_what_the_sync_one_does():
    sync_script, async_script = Scripted(ok()), Scripted(ok())
    calls = [
        ("create", ("s", "AUC"), {"slices": 50}),
        ("update", ("s", [0, 1], [0.2, 0.9]), {"slices": ["fr", 2], "idempotency_key": "k"}),
        ("update", ("s", np.ones(30), np.ones(30)), {"slice": "de", "idempotency_key": "k2"}),
        ("merge", ("s", {"tp": [1.0]}), {"slice": 2, "idempotency_key": "k3"}),
        ("result", ("s",), {"slice": "fr"}),
        ("variables", ("s",), {"slice": 2}),
        ("slices", ("s",), {}),
    ]
    with TallyClient("http://tally", transport=sync_script.transport(),
                     npz_threshold=40) as client:
        for method, args, kwargs in calls:
            getattr(client, method)(*args, **kwargs)
    async with AsyncTallyClient("http://tally", transport=async_script.transport(),
                                npz_threshold=40) as aclient:
        for method, args, kwargs in calls:
            await getattr(aclient, method)(*args, **kwargs)

    def seen(script: Scripted) -> list:
        return [(r.method, str(r.url), r.headers.get("Content-Type"),
                 r.headers.get("Idempotency-Key"), r.content) for r in script.requests]

    assert seen(async_script) == seen(sync_script)
    assert len(sync_script.requests) == len(calls)
    assert npz_members(sync_script.requests[2])["slice"].item() == "de"


async def test_the_async_client_refuses_slice_and_slices_together():
    script = Scripted(ok())
    async with AsyncTallyClient("http://tally", transport=script.transport()) as client:
        with pytest.raises(ValueError, match="not both"):
            await client.update("s", values=[1.0], slice="a", slices=["a"])
    assert script.requests == []


# ---- RemoteMetric ----------------------------------------------------------------------------

class SlicedService:
    """A fake sliced AUC session: records bodies and queries, answers fixed documents."""

    def __init__(self) -> None:
        self.created: list[dict] = []
        self.updates: list[dict] = []
        self.merges: list[dict] = []
        self.reads: list[tuple[str, dict]] = []
        self.hold = threading.Event()
        self.hold.set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "PUT":
            self.created.append(json.loads(request.content))
            return httpx.Response(201, json={"name": "s", "metric": "AUC", "epoch": 2,
                                             "slices": {"max": 10}})
        if path == "/v1/metrics":
            return httpx.Response(200, json={"metrics": [{"name": "AUC",
                                                          "inputs": ["y_true", "y_pred"]}]})
        if path.endswith("/update"):
            assert self.hold.wait(30)
            self.updates.append(json.loads(request.content))
            return httpx.Response(200, json={"epoch": 2, "samples": 2})
        if path.endswith("/merge"):
            self.merges.append(json.loads(request.content))
            return httpx.Response(200, json={"epoch": 2, "samples": 0})
        self.reads.append((path.rsplit("/", 1)[-1], dict(request.url.params)))
        if path.endswith("/slices"):
            return httpx.Response(200, json={"name": "s", "epoch": 3, "slices": {
                "fr": 0.75, "7": None, "de": [0.5, 1.0]}})
        if path.endswith("/variables"):
            return httpx.Response(200, json={"name": "s", "epoch": 3, "slice": "fr",
                                             "variables": [{"name": "true_positives",
                                                            "shape": [2], "dtype": "float32",
                                                            "value": [3, 1]}]})
        slice_ = request.url.params.get("slice")
        return httpx.Response(200, json={"name": "s", "epoch": 3, "result": 0.25,
                                         **({"slice": slice_} if slice_ else {})})


def sliced_metric(service: SlicedService, **options) -> RemoteMetric:
    return RemoteMetric("s", "AUC", {"num_thresholds": 10}, url="http://tally",
                        transport=httpx.MockTransport(service), slices=10, **options)


def test_remote_metric_creates_a_sliced_session_and_sends_slices():
    service = SlicedService()
    metric = sliced_metric(service)
    metric.update_state([0, 1], [0.25, 0.75], slices=["fr", 7])
    metric.update_state([1, 1], [0.5, 0.5], slice="de", sample_weight=[1.0, 2.0])
    metric.update_state(y_true=[0], y_pred=[0.5])
    assert service.created == [{"metric": "AUC", "config": {"num_thresholds": 10},
                                "slices": {"max": 10}}]
    assert service.updates == [
        {"y_true": [0, 1], "y_pred": [0.25, 0.75], "slices": ["fr", "7"]},
        {"y_true": [1, 1], "y_pred": [0.5, 0.5], "sample_weight": [1.0, 2.0], "slice": "de"},
        {"y_true": [0], "y_pred": [0.5]},
    ]


def test_remote_metric_reads_a_slice_every_slice_and_a_slices_variables():
    service = SlicedService()
    metric = sliced_metric(service)
    assert metric.result(slice="fr") == 0.25 and metric.epoch == 3
    assert metric.result() == 0.25
    results = metric.slice_results()
    assert set(results) == {"fr", "7", "de"}
    assert results["fr"] == 0.75 and np.isnan(results["7"])
    assert results["de"].dtype == np.float32 and results["de"].tolist() == [0.5, 1.0]
    (variable,) = metric.slice_variables("fr")
    assert variable.name == "true_positives" and variable.numpy().tolist() == [3.0, 1.0]
    assert service.reads == [("result", {"slice": "fr"}), ("result", {}), ("slices", {}),
                             ("variables", {"slice": "fr"})]


def test_remote_metric_merges_into_a_slice():
    service = SlicedService()
    sliced_metric(service).merge_state({"true_positives": [1.0, 0.0]}, slice="fr")
    assert service.merges == [{"variables": {"true_positives": [1.0, 0.0]}, "slice": "fr"}]


def test_remote_metric_refuses_slice_and_slices_together():
    service = SlicedService()
    with pytest.raises(ValueError, match="not both"):
        sliced_metric(service).update_state([0], [0.5], slice="a", slices=["a"])
    assert service.updates == []


def test_background_updates_keep_their_own_copy_of_the_slices():
    """The caller may reuse its slice buffer as soon as update_state returns."""
    service = SlicedService()
    errors: list = []
    metric = sliced_metric(service, background=True, on_error=lambda e, w: errors.append(e))
    metric.document  # noqa: B018 - created before the service holds updates
    service.hold.clear()
    metric.update_state([1], [0.5], slice="first")  # the sender waits on this one...
    labels = np.array(["fr", "de"])
    metric.update_state([0, 1], [0.25, 0.75], slices=labels)  # ...so this one is queued
    labels[:] = ["xx", "yy"]
    metric.update_state([0], [0.5], slice="a", slices=["a"])  # refused, reported, not raised
    service.hold.set()
    assert metric.flush(30)
    metric.close()
    assert service.updates == [{"y_true": [1], "y_pred": [0.5], "slice": "first"},
                               {"y_true": [0, 1], "y_pred": [0.25, 0.75],
                                "slices": ["fr", "de"]}]
    assert len(errors) == 1 and isinstance(errors[0], ValueError)
