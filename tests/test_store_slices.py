"""The store contract for slices, on memory, a single Redis and a Redis Cluster: each slice
value's increments land with the batch's own, atomically; values are admitted up to the
session's limit (a batch past it lands nowhere); reset moves the slices to the history and
clears them; a replayed batch is not applied again; delete leaves no key behind."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from app.store import redis as redis_store
from app.store.base import (
    Applied,
    Batch,
    SessionMeta,
    SliceRuns,
    TooManySlices,
    Window,
)
from app.store.redis import RedisStore
from app.store.state import Runs

STRIDE = (4, 0)  # a state of 4 sums (TP, FP at two thresholds, say)


def meta(name: str = "sliced", slices: int | None = 3, ttl: int | None = None) -> SessionMeta:
    return SessionMeta(name=name, metric="Precision", args={}, config={"name": "precision"},
                       created_at=1700000000.0, id=f"id-{name}", slices=slices,
                       ttl_seconds=ttl)


def batch(overall: dict[int, float], **parts: dict[int, float]) -> Batch:
    """A batch: its overall sums, and the sums of each slice named by keyword."""
    return Batch(sums=Runs.from_dict(overall), samples=1,
                 slices=[SliceRuns(value, Runs.from_dict(sums)) for value, sums in parts.items()],
                 stride=STRIDE)


async def slice_sums(store, name: str, value: str | None = None) -> dict[str, dict[int, float]]:
    found = await store.read_slices(name, value)
    return {v: state.sums_dict() for v, state in found.states.items()}


async def test_slices_are_kept_apart_and_read_alone_or_together(store):
    await store.create(meta())
    out = await store.apply("sliced", [
        batch({0: 3.0, 3: 1.0}, us={0: 2.0}, fr={0: 1.0, 3: 1.0}),
        batch({1: 5.0}, fr={1: 5.0}),
    ])
    assert out == [Applied(0, 1), Applied(0, 1)]
    assert (await store.read("sliced")).state.sums_dict() == {0: 3.0, 1: 5.0, 3: 1.0}
    every = await slice_sums(store, "sliced")
    assert every == {"us": {0: 2.0}, "fr": {0: 1.0, 1: 5.0, 3: 1.0}}
    assert list(every) == ["us", "fr"]  # in order of arrival
    assert await slice_sums(store, "sliced", "fr") == {"fr": {0: 1.0, 1: 5.0, 3: 1.0}}
    assert await slice_sums(store, "sliced", "de") == {}
    assert (await store.read_slices("sliced")).meta.slices == 3
    assert await store.read_slices("missing") is None


async def test_a_batch_past_the_limit_lands_nowhere(store):
    await store.create(meta(slices=2))
    await store.apply("sliced", [batch({0: 1.0}, a={0: 1.0})])
    out = await store.apply("sliced", [
        batch({0: 1.0}, b={0: 1.0}, c={0: 1.0}),  # two new: three in all, refused
        batch({1: 1.0}, a={1: 1.0}, b={1: 1.0}),  # one new: admitted
        batch({2: 1.0}, c={2: 1.0}),  # now the third: refused
        batch({3: 1.0}, b={3: 1.0}),  # known: applied
    ])
    assert isinstance(out[0], TooManySlices) and isinstance(out[2], TooManySlices)
    assert "['b', 'c']" in out[0].detail and "has 1" in out[0].detail
    assert "['c']" in out[2].detail and "has 2" in out[2].detail
    assert out[1] == Applied(0, 1) and out[3] == Applied(0, 1)
    assert (await store.read("sliced")).state.sums_dict() == {0: 1.0, 1: 1.0, 3: 1.0}
    assert await slice_sums(store, "sliced") == {"a": {0: 1.0, 1: 1.0}, "b": {1: 1.0, 3: 1.0}}


async def test_concurrent_batches_admit_exactly_the_limit(store):
    """Twelve writers race with twelve distinct values on a limit of five: exactly five land,
    each counted in its slice and in the overall state."""
    await store.create(meta(slices=5))
    outs = await asyncio.gather(*(store.apply("sliced", [batch({0: 1.0}, **{f"v{i}": {0: 1.0}})])
                                  for i in range(12)))
    landed = [f"v{i}" for i, (out,) in enumerate(outs) if isinstance(out, Applied)]
    assert len(landed) == 5
    assert all(isinstance(out, TooManySlices) for (out,) in outs if not isinstance(out, Applied))
    assert (await store.read("sliced")).state.sums_dict() == {0: 5.0}
    assert await slice_sums(store, "sliced") == {v: {0: 1.0} for v in landed}


async def test_reset_closes_the_slices_into_the_history(store):
    await store.create(meta())
    await store.apply("sliced", [batch({0: 2.0, 2: 1.0}, a={0: 2.0}, b={2: 1.0})])
    closed, after = await store.reset("sliced")
    assert after.epoch == 1 and closed.epoch == 0
    assert closed.state.sums_dict() == {0: 2.0, 2: 1.0}
    assert {v: s.sums_dict() for v, s in closed.slices.items()} == {"a": {0: 2.0},
                                                                    "b": {2: 1.0}}
    assert await slice_sums(store, "sliced") == {}
    # The next epoch admits values afresh (the limit counts per epoch).
    await store.apply("sliced", [batch({1: 1.0}, c={1: 1.0}, d={1: 1.0}, e={1: 1.0})])
    assert set(await slice_sums(store, "sliced")) == {"c", "d", "e"}
    (raw,) = await store.history("sliced")
    assert {v: s.sums_dict() for v, s in raw.slices.items()} == {"a": {0: 2.0}, "b": {2: 1.0}}
    await store.compact("sliced", 0, b"0.5", b'{"a": 1.0, "b": 0.0}')
    (done,) = await store.history("sliced")
    assert done.compacted and done.result == 0.5 and done.slice_results == {"a": 1.0, "b": 0.0}
    assert done.slices is None


async def test_a_replayed_sliced_batch_is_not_applied_twice(store):
    await store.create(meta())
    first = batch({0: 1.0}, a={0: 1.0})
    first.idempotency_key, first.fingerprint = "k1", "f1"
    again = batch({0: 1.0}, a={0: 1.0})
    again.idempotency_key, again.fingerprint = "k1", "f1"
    assert (await store.apply("sliced", [first]))[0] == Applied(0, 1)
    assert (await store.apply("sliced", [again]))[0] == Applied(0, 1, replayed=True)
    assert await slice_sums(store, "sliced") == {"a": {0: 1.0}}


async def test_an_unsliced_session_takes_no_slices(store):
    await store.create(meta(slices=None))
    (out,) = await store.apply("sliced", [batch({0: 1.0}, a={0: 1.0})])
    assert isinstance(out, TooManySlices)
    assert (await store.read("sliced")).state.sums_dict() == {}
    assert (await store.read_slices("sliced")).meta.slices is None


async def test_delete_leaves_no_slice_key(store):
    await store.create(meta(ttl=100))
    await store.apply("sliced", [batch({0: 1.0}, a={0: 1.0})])
    if isinstance(store, RedisStore):
        client = store._client
        found = [k async for k in client.scan_iter(match="tally:{sliced}:*")]
        assert {k.decode().rsplit(":", 1)[1] for k in found} >= {"slices", "slsum"}
        for key in found:  # every key of a session with a TTL expires with it
            assert 0 < await client.ttl(key) <= 100
    assert await store.delete("sliced")
    assert await store.read_slices("sliced") is None
    if isinstance(store, RedisStore):
        assert [k async for k in store._client.scan_iter(match="tally:{sliced}:*")] == []


@pytest.mark.parametrize("value", ["ünïcode ✓", "with space", "3", "a" * 128, "{sliced}"])
async def test_any_valid_value_is_a_hash_field(store, value):
    await store.create(meta())
    await store.apply("sliced", [batch({0: 1.0}, **{value: {0: 1.0}})])
    assert await slice_sums(store, "sliced", value) == {value: {0: 1.0}}


def dense_batch(rng: np.random.Generator, size: int, values: list[str]) -> Batch:
    """A batch touching `size` sums overall and in each slice (large: above
    WHOLE_STATE_ELEMENTS together, Redis adds it in numpy and writes it back whole)."""
    def runs() -> Runs:
        return Runs(np.array([0]), np.array([size]), rng.integers(0, 5, size).astype(float))
    return Batch(sums=runs(), samples=size,
                 slices=[SliceRuns(value, runs()) for value in values], stride=(size, 0))


async def test_large_sliced_batches_are_written_whole_with_the_same_outcome(store,
                                                                           monkeypatch):
    """The whole-state path (Redis, above 131,072 elements) slots new values as the script
    would, refuses past the limit, and races small batches without losing one."""
    wholes = []
    original = redis_store._added_slices
    monkeypatch.setattr(redis_store, "_added_slices",
                        lambda *args: wholes.append(1) or original(*args))
    size = 50_000
    await store.create(meta(slices=3))
    rng = np.random.default_rng(4)
    first, second = dense_batch(rng, size, ["a", "b"]), dense_batch(rng, size, ["b", "c"])
    small = Batch(sums=Runs.from_dict({7: 1.0}), samples=1, stride=(size, 0),
                  slices=[SliceRuns("a", Runs.from_dict({7: 1.0}))])
    outs = await asyncio.gather(store.apply("sliced", [first]), store.apply("sliced", [small]),
                                store.apply("sliced", [second]))
    assert [out for (out,) in outs] == [Applied(0, size), Applied(0, 1), Applied(0, size)]
    expected_overall = first.sums.values + second.sums.values
    expected_overall[7] += 1.0
    state = (await store.read("sliced")).state
    np.testing.assert_array_equal(state.sums, expected_overall)
    found = (await store.read_slices("sliced")).states
    assert list(found) == ["a", "b", "c"]
    a = first.slices[0].sums.values.copy()
    a[7] += 1.0
    np.testing.assert_array_equal(found["a"].sums, a)
    np.testing.assert_array_equal(found["b"].sums,
                                  first.slices[1].sums.values + second.slices[0].sums.values)
    np.testing.assert_array_equal(found["c"].sums, second.slices[1].sums.values)
    (refused,) = await store.apply("sliced", [dense_batch(rng, size, ["d", "a"])])
    assert isinstance(refused, TooManySlices) and "['d']" in refused.detail
    np.testing.assert_array_equal((await store.read("sliced")).state.sums, expected_overall)
    if isinstance(store, RedisStore):  # both large batches went whole
        assert len(wholes) >= 2


async def test_window_buckets_keep_slices_and_expire_with_them(store):
    """A sliced windowed session's bucket keeps each slice's sums (read summed over the
    buckets asked for); on Redis the bucket's slice keys expire with it, and delete removes
    them."""
    now = [1_800_000_000.0]
    store.clock = lambda: now[0]
    windowed = meta(slices=2)
    windowed.window = Window(60, 3)
    await store.create(windowed)
    await store.apply("sliced", [batch({0: 1.0}, a={0: 1.0})])
    now[0] += 60
    await store.apply("sliced", [batch({1: 2.0}, a={1: 2.0}, b={1: 2.0})])
    two = await store.read_window_slices("sliced", 2)
    assert {v: s.sums_dict() for v, s in two.states.items()} == {"a": {0: 1.0, 1: 2.0},
                                                                 "b": {1: 2.0}}
    one = await store.read_window_slices("sliced", 1, "a")
    assert {v: s.sums_dict() for v, s in one.states.items()} == {"a": {1: 2.0}}
    assert (await store.read_window_slices("sliced", 1, "zz")).states == {}
    if isinstance(store, RedisStore):
        client = store._client
        found = [k.decode() async for k in client.scan_iter(match="tally:{sliced}:win:*")]
        assert any(k.endswith(":slots") for k in found) and any(k.endswith(":slsum")
                                                                for k in found)
        for key in found:  # a bucket's keys last as long as some window can reach it
            assert 0 < await client.ttl(key) <= 3 * 60
    assert await store.delete("sliced")
    if isinstance(store, RedisStore):
        assert [k async for k in store._client.scan_iter(match="tally:{sliced}:*")] == []
