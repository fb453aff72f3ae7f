"""What goes on the wire: bodies (JSON or .npz), query parameters, paging."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
from scripted import Scripted, ok

from tally_client import AsyncTallyClient, TallyClient


def client_for(*steps, **options) -> tuple[TallyClient, Scripted]:
    script = Scripted(*steps)
    return TallyClient("http://tally/", transport=script.transport(), **options), script


def npz_fields(request: httpx.Request) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(request.content), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def test_a_small_batch_is_json_with_every_given_field():
    client, script = client_for(ok())
    client.update("run1.auc", np.array([0, 1]), [0.25, 0.75], sample_weight=2.0, epoch=3,
                  slice="eu")
    request = script.requests[0]
    assert request.method == "POST" and request.url.path == "/v1/sessions/run1.auc/update"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {"y_true": [0, 1], "y_pred": [0.25, 0.75],
                                           "sample_weight": 2.0, "epoch": 3, "slice": "eu"}


def test_a_batch_above_the_threshold_is_npz_with_the_epoch_in_the_query():
    client, script = client_for(ok(), npz_threshold=100)
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, (60,))
    y_pred = rng.random((60,), dtype=np.float32)
    client.update("s", y_true, y_pred, epoch=5, slices=np.arange(60) % 3)
    request = script.requests[0]
    assert request.headers["Content-Type"] == "application/x-npz"
    assert request.url.params["epoch"] == "5"
    fields = npz_fields(request)
    assert sorted(fields) == ["slices", "y_pred", "y_true"]
    np.testing.assert_array_equal(fields["y_true"], y_true)
    np.testing.assert_array_equal(fields["y_pred"], y_pred)
    assert fields["y_pred"].dtype == np.float32  # sent as is, 4 bytes a number
    np.testing.assert_array_equal(fields["slices"], np.arange(60) % 3)


def test_the_threshold_counts_every_number_of_the_batch():
    client, script = client_for(ok(), npz_threshold=100)
    client.update("s", values=np.ones((10, 10)))             # 100 numbers: JSON
    client.update("s", values=np.ones((10, 10)), sample_weight=np.ones(10))  # 110: npz
    kinds = [r.headers["Content-Type"] for r in script.requests]
    assert kinds == ["application/json", "application/x-npz"]


class FakeTorchTensor:
    """What matters of a torch tensor: `detach().cpu()` before numpy may read it."""

    def __init__(self, data: list[float]) -> None:
        self.data = data
        self.steps: list[str] = []

    def detach(self) -> FakeTorchTensor:
        self.steps.append("detach")
        return self

    def cpu(self) -> FakeTorchTensor:
        self.steps.append("cpu")
        return self

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.asarray(self.data, dtype=dtype)


def test_tensors_are_detached_and_moved_to_the_cpu_first():
    client, script = client_for(ok())
    tensor = FakeTorchTensor([0.5, 0.25])
    client.update("s", [1, 0], tensor)
    assert tensor.steps == ["detach", "cpu"]
    assert json.loads(script.requests[0].content)["y_pred"] == [0.5, 0.25]


def test_create_passes_collections_windows_and_slices_through():
    client, script = client_for(ok({"name": "s"}, status=201))
    members = [{"metric": "Precision"}, {"metric": "AUC", "config": {"num_thresholds": 50}}]
    client.create("s", metrics=members, window={"bucket_seconds": 60, "buckets": 15},
                  slices={"max": 10}, ttl_seconds=3600)
    request = script.requests[0]
    assert request.method == "PUT" and request.url.path == "/v1/sessions/s"
    assert json.loads(request.content) == {
        "metrics": members, "window": {"bucket_seconds": 60, "buckets": 15},
        "slices": {"max": 10}, "ttl_seconds": 3600}
    client.create("t", "AUC", {"curve": "PR"})
    assert json.loads(script.requests[1].content) == {"metric": "AUC",
                                                      "config": {"curve": "PR"}}


@pytest.mark.parametrize("arguments", [{}, {"metric": "AUC", "metrics": [{"metric": "AUC"}]}])
def test_create_needs_exactly_one_of_metric_and_metrics(arguments):
    client, script = client_for(ok())
    with pytest.raises(ValueError, match="either"):
        client.create("s", **arguments)
    assert script.requests == []


def test_result_window_and_slice_are_query_parameters():
    client, script = client_for(ok({"result": 1.0}))
    client.result("s")
    client.result("s", window=900)
    client.result("s", slice="eu")
    assert [dict(r.url.params) for r in script.requests] == [{}, {"window": "900"},
                                                             {"slice": "eu"}]


def test_merge_and_reset_bodies():
    client, script = client_for(ok({"epoch": 1, "samples": 0}))
    client.merge("s", {"total": np.float32(3.5), "count": np.array(2.0)}, epoch=1)
    client.reset("s")
    client.reset("s", epoch=1)
    merge, reset, reset_at = script.requests
    assert json.loads(merge.content) == {"variables": {"total": 3.5, "count": 2.0}, "epoch": 1}
    assert (reset.url.path, reset.content) == ("/v1/sessions/s/reset", b"")
    assert json.loads(reset_at.content) == {"epoch": 1}


def pages(request: httpx.Request) -> httpx.Response:
    """Sessions a..e in pages of two, the cursor being the last name of the page."""
    names = ["a", "b", "c", "d", "e"]
    start = names.index(request.url.params["cursor"]) + 1 if "cursor" in request.url.params \
        else 0
    limit = int(request.url.params["limit"])
    page = names[start:start + limit]
    more = start + limit < len(names)
    return httpx.Response(200, json={"sessions": [{"name": n} for n in page],
                                     "next_cursor": page[-1] if more else None})


def test_iteration_follows_next_cursor_to_the_end():
    client, script = client_for(pages)
    assert [s["name"] for s in client.iter_sessions("run", page_size=2)] == list("abcde")
    assert [dict(r.url.params) for r in script.requests] == [
        {"prefix": "run", "limit": "2"}, {"prefix": "run", "limit": "2", "cursor": "b"},
        {"prefix": "run", "limit": "2", "cursor": "d"}]


def test_a_listing_without_next_cursor_is_one_page():
    client, script = client_for(ok({"sessions": [{"name": "a"}]}))
    assert [s["name"] for s in client.iter_sessions()] == ["a"]
    assert len(script.requests) == 1 and dict(script.requests[0].url.params) == {}


async def test_the_async_iteration_follows_next_cursor_too():
    script = Scripted(pages)
    async with AsyncTallyClient("http://tally", transport=script.transport()) as client:
        names = [s["name"] async for s in client.iter_sessions(page_size=2)]
    assert names == list("abcde") and len(script.requests) == 3
