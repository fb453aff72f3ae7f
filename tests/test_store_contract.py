"""One contract, every store: memory, single Redis, Redis Cluster."""

from __future__ import annotations

import asyncio
import math

import pytest

from app.store.base import (
    Applied,
    Batch,
    EpochMismatch,
    LayoutMismatch,
    SessionMeta,
    SessionNotFound,
    StaleSession,
)


def meta(name: str = "run1.val.precision", ttl: int | None = None) -> SessionMeta:
    return SessionMeta(name=name, metric="Precision", args={"thresholds": 0.5},
                       config={"name": "precision", "thresholds": 0.5}, epoch=0,
                       created_at=1700000000.25, ttl_seconds=ttl, id=f"id-{name}")


async def test_create_is_idempotent(store):
    created, is_new = await store.create(meta())
    assert is_new and created.epoch == 0
    again, is_new = await store.create(meta())
    assert not is_new
    assert again == meta()


async def test_apply_adds_and_read_sees_it(store):
    await store.create(meta())
    out = await store.apply("run1.val.precision", [
        Batch(sums={"true_positives:0": 4.0, "false_positives:0": 1.0}, samples=8)])
    assert out == [Applied(0, 8)]
    await store.apply("run1.val.precision", [
        Batch(sums={"false_positives:0": 3.0, "true_positives:0": 0.1}, samples=8)])
    snap = await store.read("run1.val.precision")
    assert snap.meta.epoch == 0
    assert snap.fields == {"true_positives:0": pytest.approx(4.1, abs=0, rel=1e-15),
                           "false_positives:0": 4.0}


async def test_floats_keep_full_precision(store):
    await store.create(meta())
    value = 0.1234567890123456789
    await store.apply("run1.val.precision", [Batch(sums={"a:0": value}, samples=1)])
    snap = await store.read("run1.val.precision")
    assert snap.fields["a:0"] == value


async def test_max_min_and_nan(store):
    await store.create(meta())
    name = "run1.val.precision"
    await store.apply(name, [Batch(maxes={"hi:0": 2.0}, mins={"lo:0": 2.0}, samples=1)])
    await store.apply(name, [Batch(maxes={"hi:0": 1.0}, mins={"lo:0": -1.5}, samples=1)])
    await store.apply(name, [Batch(maxes={"hi:0": 3.5}, mins={"lo:0": 7.0}, samples=1)])
    await store.apply(name, [Batch(sums={"s:0": 1.0, "t:0": 1.0}, samples=1)])
    await store.apply(name, [Batch(sums={"s:0": math.nan, "t:0": math.inf}, samples=1)])
    await store.apply(name, [Batch(sums={"s:0": 1.0, "t:0": 1.0}, samples=1)])
    fields = (await store.read(name)).fields
    assert fields["hi:0"] == 3.5 and fields["lo:0"] == -1.5
    assert math.isnan(fields["s:0"]) and fields["t:0"] == math.inf


async def test_epoch_precondition_and_replay(store):
    name = "run1.val.precision"
    await store.create(meta())
    ok = Batch(sums={"x:0": 1.0}, samples=2, epoch=0, idempotency_key="k1")
    late = Batch(sums={"x:0": 100.0}, samples=2, epoch=3)
    out = await store.apply(name, [ok, late, ok])
    assert out[0] == Applied(0, 2)
    assert isinstance(out[1], EpochMismatch) and out[1].current == 0
    assert out[2] == Applied(0, 2, replayed=True)
    assert (await store.read(name)).fields == {"x:0": 1.0}
    await store.reset(name)
    # a retry after the reset still answers like the first and adds nothing
    assert await store.apply(name, [ok]) == [Applied(0, 2, replayed=True)]
    assert (await store.read(name)).fields == {}


async def test_idempotency_window_expires(store):
    name = "run1.val.precision"
    await store.create(meta())
    batch = Batch(sums={"x:0": 1.0}, samples=1, idempotency_key="k")
    await store.apply(name, [batch])
    await asyncio.sleep(1.2)  # the fixture's window is 1 s
    assert await store.apply(name, [batch]) == [Applied(0, 1)]
    assert (await store.read(name)).fields == {"x:0": 2.0}


async def test_reset_closes_epoch(store):
    name = "run1.val.precision"
    await store.create(meta())
    await store.apply(name, [Batch(sums={"x:0": 5.0}, samples=1)])
    closed, after = await store.reset(name)
    assert closed.epoch == 0 and closed.fields == {"x:0": 5.0} and closed.closed_at > 1e9
    assert after.epoch == 1
    assert (await store.read(name)).fields == {}
    with pytest.raises(EpochMismatch):
        await store.reset(name, expected_epoch=0)
    closed, after = await store.reset(name, expected_epoch=1)
    assert closed.epoch == 1 and closed.fields == {} and after.epoch == 2
    history = await store.history(name)
    assert [h.epoch for h in history] == [0, 1]
    assert history[0].fields == {"x:0": 5.0} and history[1].fields == {}


async def test_missing_session(store):
    assert await store.read("nope") is None
    assert await store.get_meta("nope") is None
    assert await store.history("nope") is None
    out = await store.apply("nope", [Batch(sums={"x:0": 1.0}, samples=1)])
    assert isinstance(out[0], SessionNotFound)
    with pytest.raises(SessionNotFound):
        await store.reset("nope")
    assert await store.delete("nope") is False


async def test_delete_removes_everything(store):
    name = "run1.val.precision"
    await store.create(meta())
    await store.apply(name, [Batch(sums={"x:0": 1.0}, samples=1, idempotency_key="k")])
    await store.reset(name)
    assert await store.delete(name) is True
    assert await store.read(name) is None
    await store.create(meta())
    assert (await store.history(name)) == []
    # the idempotency key went with the session
    assert await store.apply(name, [Batch(sums={"x:0": 1.0}, samples=1,
                                          idempotency_key="k")]) == [Applied(0, 1)]


async def test_list_by_prefix_sorted(store):
    for name in ["b.x", "a.y", "a.x", "ab", "c"]:
        await store.create(meta(name))
    assert [s.meta.name for s in await store.list("a")] == ["a.x", "a.y", "ab"]
    assert [s.meta.name for s in await store.list("a.")] == ["a.x", "a.y"]
    assert [s.meta.name for s in await store.list("")] == ["a.x", "a.y", "ab", "b.x", "c"]
    await store.delete("a.y")
    assert [s.meta.name for s in await store.list("a")] == ["a.x", "ab"]


async def test_ttl_deletes_idle_sessions(store):
    await store.create(meta("short", ttl=1))
    await store.create(meta("long"))
    await asyncio.sleep(0.6)
    await store.apply("short", [Batch(sums={"x:0": 1.0}, samples=1)])  # a write refreshes
    await asyncio.sleep(0.6)
    assert await store.read("short") is not None
    await asyncio.sleep(1.0)
    assert await store.read("short") is None
    assert [s.meta.name for s in await store.list("")] == ["long"]


async def test_concurrent_applies_are_exact(store):
    name = "run1.val.precision"
    await store.create(meta())

    async def worker(i: int) -> None:
        for j in range(20):
            await store.apply(name, [Batch(sums={"x:0": 1.0, f"w:{i}": 0.5}, samples=1,
                                           idempotency_key=f"{i}-{j}")])
            await store.apply(name, [Batch(sums={"x:0": 1.0, f"w:{i}": 0.5}, samples=1,
                                           idempotency_key=f"{i}-{j}")])

    await asyncio.gather(*(worker(i) for i in range(8)))
    fields = (await store.read(name)).fields
    assert fields["x:0"] == 160.0
    assert all(fields[f"w:{i}"] == 10.0 for i in range(8))


async def test_batch_for_an_earlier_incarnation_is_refused(store):
    name = "run1.val.precision"
    await store.create(meta())
    ok = Batch(sums={"x:0": 1.0}, samples=1, session_id="id-run1.val.precision")
    stale = Batch(sums={"x:0": 50.0}, samples=1, session_id="id-of-a-deleted-session")
    out = await store.apply(name, [ok, stale])
    assert out[0] == Applied(0, 1) and isinstance(out[1], StaleSession)
    assert (await store.read(name)).fields == {"x:0": 1.0}


async def test_first_layout_sticks(store):
    name = "run1.val.precision"
    await store.create(meta())
    four = Batch(sums={"tp:3": 1.0}, samples=1, layout='{"num_classes":4}')
    five = Batch(sums={"tp:4": 1.0}, samples=1, layout='{"num_classes":5}')
    out = await store.apply(name, [four, five, four])
    assert out[0] == Applied(0, 1) and out[2] == Applied(0, 1)
    assert isinstance(out[1], LayoutMismatch) and out[1].status == 422
    snap = await store.read(name)
    assert snap.meta.layout == {"num_classes": 4} and snap.fields == {"tp:3": 2.0}
    await store.reset(name)
    assert (await store.read(name)).meta.layout == {"num_classes": 4}
