"""Merged updates: concurrent small updates of one session computed as one batch.

First the metrics' declarations (`Metric.merges_along_batch`) are checked against what they
claim, on every case of the catalogue in several ranks: where a metric says batches merge,
one `update_state` on the concatenated batches must leave the variables that two separate
updates leave. Then the service's merging (app/merging.py) through HTTP: Keras parity under
concurrent writers, idempotency per request inside a merged batch, a bad batch among good
ones failing alone.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import numpy as np
import pytest

from app.api.app import create_app
from app.merging import PendingUpdate, UpdateMerger
from app.metrics.collection import build_metric
from app.metrics.registry import builtin_registry
from app.settings import Settings
from app.store.base import Applied
from tests.cases import CASES, batches
from tests.oracle import assert_close, json_array, keras_metric, keras_update, keras_variables

os.environ.setdefault("KERAS_BACKEND", "numpy")
REGISTRY = builtin_registry()


def _arrays(batch: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=np.float32) for k, v in batch.items()}


def _rank_variants(batch: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The batch as the cases shape it, and where y_true and y_pred are both (N, C) also
    flattened to 1-D (unweighted) and split to (N, 2, C/2): ranks where metrics that reduce
    the last axis would reduce the batch axis, or keep it."""
    variants = [batch]
    y_true, y_pred = batch.get("y_true"), batch.get("y_pred")
    if y_true is not None and y_pred is not None and y_true.shape == y_pred.shape \
            and y_true.ndim == 2:
        variants.append({"y_true": y_true.ravel(), "y_pred": y_pred.ravel()})
        n, c = y_true.shape
        if c % 2 == 0:
            variants.append({"y_true": y_true.reshape(n, 2, c // 2),
                             "y_pred": y_pred.reshape(n, 2, c // 2)})
    values = batch.get("values")
    if values is not None:
        variants.append({"values": np.stack([values, values * 2], axis=1)})
    return variants


def _variables_after(metric_name: str, config: dict[str, Any],
                     updates: list[dict[str, np.ndarray]]) -> list[np.ndarray] | None:
    _, metric = build_metric(REGISTRY, metric_name, dict(config))
    for update in updates:
        inputs = {k: v for k, v in update.items() if k != "sample_weight"}
        try:
            metric.update_state(**inputs, sample_weight=update.get("sample_weight"))
        except Exception:  # noqa: BLE001 - a rank this metric refuses: nothing to compare
            return None
    return [np.array(v.value, dtype=np.float64) for v in metric.variables]


def _concatenated(first: dict[str, np.ndarray], second: dict[str, np.ndarray]
                  ) -> dict[str, np.ndarray]:
    return {k: np.concatenate([first[k], second[k]]) for k in first}


@pytest.mark.parametrize(("metric", "config", "kind"), CASES,
                         ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(CASES)])
def test_declared_merges_equal_separate_updates(metric, config, kind):
    """Where `merges_along_batch` says yes, one update of a + b equals updates of a then b.
    Where it says no, nothing is claimed (the service computes the batches one by one)."""
    _, probe = build_metric(REGISTRY, metric, dict(config))
    data = [_arrays(b) for b in batches(kind, seed=3, count=4)]
    # The service merges batches with the same fields only: unweighted with unweighted (0, 2),
    # weighted with weighted (1, 3).
    for first, second in ((data[0], data[2]), (data[1], data[3])):
        for a, b in zip(_rank_variants(first), _rank_variants(second), strict=True):
            inputs = {k: v for k, v in a.items() if k != "sample_weight"}
            if not probe.merges_along_batch(inputs):
                continue
            separate = _variables_after(metric, config, [a, b])
            if separate is None:
                continue
            merged = _variables_after(metric, config, [_concatenated(a, b)])
            assert merged is not None, "the merged batch was refused, the separate ones not"
            for got, want in zip(merged, separate, strict=True):
                np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-5, equal_nan=True,
                                           err_msg=f"{metric} {config} ranks "
                                                   f"{[v.ndim for v in a.values()]}")


def test_declarations_cover_the_hot_families():
    """The families a training job updates most say yes where they can (else the check above
    would pass vacuously), and a metric that reduces the last axis says no for 1-D input."""
    one_d = {"y_true": np.zeros(4, np.float32), "y_pred": np.zeros(4, np.float32)}
    two_d = {"y_true": np.zeros((4, 3), np.float32), "y_pred": np.zeros((4, 3), np.float32)}
    says = {name: build_metric(REGISTRY, name, {})[1].merges_along_batch
            for name in ("Precision", "Recall", "AUC", "BinaryIoU", "TruePositives",
                         "MeanSquaredError", "PearsonCorrelation", "CategoricalAccuracy")}
    for name in ("Precision", "Recall", "AUC", "BinaryIoU", "TruePositives"):
        assert says[name](one_d) and says[name](two_d), name
    for name in ("MeanSquaredError", "PearsonCorrelation", "CategoricalAccuracy"):
        assert not says[name](one_d), name
    assert build_metric(REGISTRY, "Mean", {})[1].merges_along_batch({"values": np.zeros(3)})
    top_k = build_metric(REGISTRY, "Precision", {"top_k": 2})[1]
    assert not top_k.merges_along_batch(one_d) and top_k.merges_along_batch(two_d)


# -- the service: merged updates through HTTP ---------------------------------------------------
@asynccontextmanager
async def served(store, **settings: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """An HTTP client of the app (in process, so concurrent requests share its event loop as
    they share a worker's) and the app's `Sessions`."""
    app = create_app(Settings(**settings), store=store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tally") as client:
            yield client, app.state.sessions


def _random_batches(metric: str, rng: np.random.Generator, count: int
                    ) -> list[dict[str, Any]]:
    """`count` batches of 1-9 samples; the odd-numbered half weighted."""
    out = []
    for i in range(count):
        n = int(rng.integers(1, 10))
        if metric in ("Mean", "Sum"):
            batch: dict[str, Any] = {"values": rng.normal(size=n)}
        elif metric == "MeanIoU":
            batch = {"y_true": rng.integers(0, 3, n), "y_pred": rng.integers(0, 3, n)}
        elif metric in ("Recall", "MeanSquaredError"):
            batch = {"y_true": rng.integers(0, 2, (n, 4)), "y_pred": rng.random((n, 4))}
        else:
            batch = {"y_true": rng.integers(0, 2, n), "y_pred": rng.random(n)}
        if i % 2:
            batch["sample_weight"] = rng.integers(0, 5, n) / 4
        out.append({k: np.asarray(v, np.float32).tolist() for k, v in batch.items()})
    return out


METRICS = [("Precision", {}), ("AUC", {"num_thresholds": 50}), ("Mean", {}),
           ("Recall", {"top_k": 2}), ("MeanIoU", {"num_classes": 3, "dtype": "float32"}),
           ("MeanSquaredError", {})]


@pytest.mark.parametrize(("metric", "config"), METRICS, ids=[m for m, _ in METRICS])
async def test_concurrent_updates_equal_keras(api_store, metric, config):
    """48 updates at once, each with its key: every answer is its own (samples), and the
    session's result and variables equal Keras fed every batch. The metrics that declare
    merging were merged (else the test would prove nothing about merging)."""
    rng = np.random.default_rng(len(metric))
    data = _random_batches(metric, rng, 48)
    async with served(api_store) as (client, sessions):
        created = await client.put("/v1/sessions/m", json={"metric": metric, "config": config})
        assert created.status_code == 201, created.text
        answers = await asyncio.gather(*(
            client.post("/v1/sessions/m/update", json=batch, headers={"Idempotency-Key": str(i)})
            for i, batch in enumerate(data)))
        for batch, answer in zip(data, answers, strict=True):
            assert answer.status_code == 200, answer.text
            samples = len(next(iter(batch.values())))
            assert answer.json() == {"epoch": 0, "samples": samples}
        result = (await client.get("/v1/sessions/m/result")).json()["result"]
        variables = (await client.get("/v1/sessions/m/variables")).json()["variables"]
        merged = sessions.merger.merged_updates
    reference = keras_metric(metric, config)
    for batch in data:
        keras_update(reference, batch)
    assert_close(json_array(result), np.asarray(reference.result()), f"{metric} result")
    theirs = keras_variables(reference)
    assert [v["name"] for v in variables] == [n for n, _ in theirs]
    for ours, (name, value) in zip(variables, theirs, strict=True):
        assert_close(json_array(ours["value"]), value, name)
    if metric == "MeanSquaredError":  # a wrapped function: never merged (see reduction.py)
        assert merged == 0
    else:
        assert merged >= 24, f"only {merged} of 48 updates were merged"


async def post_all(client: httpx.AsyncClient, posts: list[tuple[dict[str, Any], str | None]],
                   query: str = "") -> list[httpx.Response]:
    """The updates (body, key) to session `m`, all at once."""
    return list(await asyncio.gather(*(
        client.post(f"/v1/sessions/m/update{query}", json=body,
                    headers={} if key is None else {"Idempotency-Key": key})
        for body, key in posts)))


async def test_retries_inside_merged_batches_count_once(api_store):
    """Updates merged with their own retries and with retries of updates applied before:
    every retry is answered as its first answer, every batch counts once."""
    rng = np.random.default_rng(7)
    bodies = [{"values": rng.integers(1, 100, 4).astype(float).tolist()} for _ in range(40)]
    async with served(api_store) as (client, sessions):
        await client.put("/v1/sessions/m", json={"metric": "Sum"})
        first = await post_all(client, [(b, f"k{i}") for i, b in enumerate(bodies[:20])])
        # The first 20 again (some twice in one go), interleaved with 20 new ones.
        again = [(bodies[i], f"k{i}") for i in range(20)] + [(bodies[3], "k3")]
        new = [(b, f"k{20 + i}") for i, b in enumerate(bodies[20:])]
        mixed = [p for pair in zip(again, new, strict=False) for p in pair] + again[len(new):]
        second = await post_all(client, mixed)
        total = (await client.get("/v1/sessions/m/result")).json()["result"]
        merged = sessions.merger.merged_updates
    assert all(r.status_code == 200 for r in first + second)
    by_key = {f"k{i}": r.json() for i, r in enumerate(first)}
    for (_, key), answer in zip(mixed, second, strict=True):
        if key in by_key:
            assert answer.json() == by_key[key]
    assert total == sum(sum(b["values"]) for b in bodies)
    assert merged >= 20


async def test_a_bad_batch_fails_alone(api_store):
    """A batch the metric refuses (a class id past num_classes) among good ones of the same
    shape: it alone is a 422; the others land."""
    rng = np.random.default_rng(11)
    good = [{"y_true": rng.integers(0, 3, 5).tolist(), "y_pred": rng.integers(0, 3, 5).tolist()}
            for _ in range(15)]
    bad = {"y_true": [0, 1, 2, 7, 1], "y_pred": [0, 1, 2, 1, 1]}
    posts: list[tuple[dict[str, Any], str | None]] = [(b, None) for b in good]
    posts.insert(6, (bad, "bad"))
    async with served(api_store) as (client, _):
        await client.put("/v1/sessions/m", json={"metric": "MeanIoU", "config": {
            "num_classes": 3, "dtype": "float32"}})
        answers = await post_all(client, posts)
        variables = (await client.get("/v1/sessions/m/variables")).json()["variables"]
        retry = await client.post("/v1/sessions/m/update", json=good[0],
                                  headers={"Idempotency-Key": "bad"})
    assert [r.status_code for r in answers] == [200] * 6 + [422] + [200] * 9
    assert "num_classes" in answers[6].json()["detail"] or "7" in answers[6].json()["detail"]
    reference = keras_metric("MeanIoU", {"num_classes": 3, "dtype": "float32"})
    for batch in good:
        keras_update(reference, batch)
    assert_close(json_array(variables[0]["value"]), keras_variables(reference)[0][1], "cm")
    assert retry.status_code == 200  # the refused request's key was never recorded


async def test_epoch_preconditions_hold_for_merged_updates(api_store):
    body = {"y_true": [1, 0, 1], "y_pred": [0.9, 0.2, 0.4]}
    async with served(api_store) as (client, sessions):
        await client.put("/v1/sessions/m", json={"metric": "Precision"})
        await client.post("/v1/sessions/m/reset")
        stale = await post_all(client, [(body, None)] * 10, "?epoch=0")
        current = await post_all(client, [(body, None)] * 10, "?epoch=1")
        variables = (await client.get("/v1/sessions/m/variables")).json()["variables"]
        merged = sessions.merger.merged_updates
    assert {r.status_code for r in stale} == {409}
    assert [r.json() for r in current] == [{"epoch": 1, "samples": 3}] * 10
    # Per batch only 0.9 is above the 0.5 threshold, and its label is 1: TP 1, FP 0.
    assert [v["value"] for v in variables] == [[10.0], [0.0]]
    assert merged == 10


async def test_merging_can_be_turned_off(api_store):
    body = {"values": [1.0, 2.0]}
    async with served(api_store, merge_updates=1) as (client, sessions):
        await client.put("/v1/sessions/m", json={"metric": "Sum"})
        answers = await post_all(client, [(body, None)] * 10)
        total = (await client.get("/v1/sessions/m/result")).json()["result"]
        assert sessions.merger.merged_updates == 0
    assert all(r.status_code == 200 for r in answers) and total == 30.0


# -- the merger's own mechanics ------------------------------------------------------------------
def _pending(samples: int, key: str | None = None) -> PendingUpdate:
    inputs = {"values": np.zeros(samples, np.float32)}
    return PendingUpdate(inputs, None, None, key, "", samples, samples)


def _recording_merger() -> tuple[UpdateMerger, list[list[int]]]:
    """A merger whose store records the sample counts of what it applies, call by call."""
    calls: list[list[int]] = []

    async def alone(name: str, update: PendingUpdate) -> Applied:
        calls.append([update.samples])
        return Applied(0, update.samples)

    async def merged(name: str, part: list[PendingUpdate]) -> Applied:
        calls.append([u.samples for u in part])
        return Applied(0, part[0].samples)

    return UpdateMerger(alone, merged, max_updates=3), calls


async def test_updates_of_one_turn_merge_and_a_lone_one_goes_alone():
    merger, calls = _recording_merger()
    answers = await asyncio.gather(*(merger.submit("s", _pending(n)) for n in (1, 2, 3, 4)))
    assert [a.samples for a in answers] == [1, 2, 3, 4]
    assert calls == [[1, 2, 3], [4]]  # at most max_updates per batch, in order of arrival
    calls.clear()
    assert await merger.submit("s", _pending(5)) == Applied(0, 5)
    assert calls == [[5]]
    assert merger.merged_updates == 3


async def test_repeated_keys_and_other_shapes_go_in_other_batches():
    merger, calls = _recording_merger()
    updates = [_pending(2, "a"), _pending(2, "a"), _pending(2, "b"), _pending(3, "c")]
    updates[3].inputs = {"values": np.zeros((3, 2), np.float32)}  # another trailing shape
    await asyncio.gather(*(merger.submit("s", u) for u in updates))
    assert sorted(calls) == [[2], [2, 2], [3]]


async def test_a_cancelled_leader_strands_nobody():
    """The first update of a turn leads the group; if its request is cancelled while it
    waits for the others, they are still answered and it is not applied."""
    merger, calls = _recording_merger()
    leader = asyncio.ensure_future(merger.submit("s", _pending(1)))
    follower = asyncio.ensure_future(merger.submit("s", _pending(2)))
    await asyncio.sleep(0)  # the leader yielded its turn, the follower joined it
    leader.cancel()
    assert await follower == Applied(0, 2)
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert calls == [[2]]
