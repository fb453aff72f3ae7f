"""The result cache (app/result_cache.py) never serves a stale result, and does serve cached ones.

Two `Sessions` objects on one store stand for two Tally processes (on Redis, each with its own
client): one reads (and caches), the other writes; every read after a write must see it. The
expected values are computed by hand from the batches (Precision = tp / (tp + fp)).
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from app.metrics import engine
from app.result_cache import MISS, ResultCache
from app.service import Sessions
from app.store.base import Batch, SessionMeta
from app.store.memory import MemoryStore
from app.store.redis import RedisStore
from app.store.state import Runs, State


@pytest.fixture(params=["memory", "redis"])
async def two_processes(request):
    """(reader, writer): two services on one store, as two processes would be."""
    if request.param == "memory":
        store = MemoryStore()
        yield Sessions(store), Sessions(store)
        return
    server = request.getfixturevalue("redis_server")
    server.client().flushall()  # our own private server (tests/redis_servers.py)
    stores = [RedisStore.from_url(server.url), RedisStore.from_url(server.url)]
    yield Sessions(stores[0]), Sessions(stores[1])
    for store in stores:
        await store.close()


def batch(tp: int, fp: int) -> dict[str, np.ndarray]:
    """A Precision batch (threshold 0.5) with `tp` true and `fp` false positives."""
    return {"y_true": np.array([1.0] * tp + [0.0] * fp, np.float32),
            "y_pred": np.full(tp + fp, 0.9, np.float32)}


async def update(sessions: Sessions, name: str, tp: int, fp: int) -> None:
    await sessions.update(name, batch(tp, fp), None, None, None)


async def listed(sessions: Sessions, prefix: str) -> dict[str, object]:
    page = await sessions.listing(prefix, None, 1000)
    # A listing stores the results it computed once its answer is out, one event-loop turn
    # later (the next request to a server always comes after one).
    await asyncio.sleep(0)
    return {s["name"]: s["result"] for s in page["sessions"]}


async def test_every_write_of_another_process_is_seen(two_processes):
    reader, writer = two_processes
    await writer.create("c.p", "Precision", None, None)
    await update(writer, "c.p", 1, 3)
    assert (await reader.result("c.p"))["result"] == 0.25
    assert await listed(reader, "c.") == {"c.p": 0.25}
    await update(writer, "c.p", 3, 1)  # now tp 4, fp 4
    assert (await reader.result("c.p"))["result"] == 0.5
    assert (await reader.get("c.p"))["result"] == 0.5
    await writer.merge("c.p", {"true_positives": [4.0], "false_positives": [0.0]}, None, None)
    assert await listed(reader, "c.") == {"c.p": pytest.approx(8 / 12)}
    await writer.reset("c.p", None)
    assert (await reader.result("c.p")) == {"name": "c.p", "epoch": 1, "result": 0.0}
    assert await listed(reader, "c.") == {"c.p": 0.0}


async def test_a_recreated_session_with_the_same_state_is_not_served_the_old_result(
        two_processes):
    """Same name, epoch, version and state bytes ([1, 3]); only the incarnation differs: a
    Precision of tp 1, fp 3 (0.25), then an Accuracy of total 1, count 3 (1/3)."""
    reader, writer = two_processes
    await writer.create("c.x", "Precision", None, None)
    await update(writer, "c.x", 1, 3)
    assert await listed(reader, "c.") == {"c.x": 0.25}
    await writer.delete("c.x")
    await writer.create("c.x", "Accuracy", None, None)
    await writer.update("c.x", {"y_true": np.array([1.0, 0.0, 0.0], np.float32),
                                "y_pred": np.array([1.0, 1.0, 1.0], np.float32)},
                        None, None, None)
    again = await reader.store.read("c.x")
    assert again is not None and again.state.sums.tolist() == [1.0, 3.0]
    assert await listed(reader, "c.") == {"c.x": pytest.approx(1 / 3)}
    assert (await reader.result("c.x"))["result"] == pytest.approx(1 / 3)


async def test_unchanged_sessions_are_not_computed_again(two_processes, monkeypatch):
    reader, writer = two_processes
    for i in range(5):
        await writer.create(f"u.{i}", "Precision", None, None)
        await update(writer, f"u.{i}", 1, i)
    computed: list[object] = []
    real, real_stacked = engine.result_json, engine.stacked_results

    def counting(*args, **kwargs):
        computed.append(args[0])
        return real(*args, **kwargs)

    def counting_stacked(metric, states, layout=None):  # a listing's sessions of one metric
        results = real_stacked(metric, states, layout)
        computed.extend([metric] * (0 if results is None else len(states)))
        return results

    monkeypatch.setattr(engine, "result_json", counting)
    monkeypatch.setattr(engine, "stacked_results", counting_stacked)
    first = await listed(reader, "u.")
    assert len(computed) == 5
    assert await listed(reader, "u.") == first
    assert (await reader.result("u.2"))["result"] == first["u.2"] == pytest.approx(1 / 3)
    assert len(computed) == 5  # all from the cache
    await update(writer, "u.2", 1, 0)
    assert (await listed(reader, "u."))["u.2"] == pytest.approx(0.5)
    assert len(computed) == 6  # only the session that changed


async def test_versions_count_every_write(two_processes):
    """What the cache's key relies on: each applied batch and each reset bumps the version;
    a refused batch (wrong epoch) or a replayed one does not."""
    _, writer = two_processes
    store = writer.store
    await writer.create("v.p", "Precision", None, None)

    async def version() -> int:
        snap = await store.read("v.p")
        assert snap is not None
        return snap.meta.version

    start = await version()
    await update(writer, "v.p", 1, 0)
    assert await version() == start + 1
    await writer.update("v.p", batch(1, 0), None, None, "key-1")
    await writer.update("v.p", batch(1, 0), None, None, "key-1")  # replayed
    assert await version() == start + 2
    with pytest.raises(Exception, match="epoch"):
        await writer.update("v.p", batch(1, 0), None, 5, None)
    assert await version() == start + 2
    await writer.reset("v.p", None)
    assert await version() == start + 3
    assert (await store.get_meta("v.p")).version == start + 3


def meta(version: int = 1, id: str = "a", epoch: int = 0) -> SessionMeta:
    return SessionMeta(name="s", metric="Precision", args={}, config={}, epoch=epoch, id=id,
                       version=version)


def test_a_hit_needs_the_same_state_content_too():
    """Even with the same id, epoch and version (a write path that forgot to bump it, a
    failover that lost writes), another state's content is a miss."""
    cache = ResultCache()
    cache.put(meta(), State(np.array([1.0, 3.0])), 0.25)
    assert cache.get(meta(), State(np.array([1.0, 3.0]))) == 0.25
    assert cache.get(meta(), State(np.array([2.0, 3.0]))) is MISS
    assert cache.get(meta(version=2), State(np.array([1.0, 3.0]))) is MISS
    assert cache.get(meta(id="b"), State(np.array([1.0, 3.0]))) is MISS
    assert cache.get(meta(epoch=1), State(np.array([1.0, 3.0]))) is MISS
    with_layout = meta()
    with_layout.layout = {"classes": 3}
    assert cache.get(with_layout, State(np.array([1.0, 3.0]))) is MISS


def test_the_cache_is_bounded():
    cache = ResultCache(max_entries=3, max_bytes=10**9, max_state_elements=4)
    for i in range(5):
        m = meta()
        m.name = f"s{i}"
        cache.put(m, State(np.array([float(i)])), i)
    assert len(cache) == 3
    cache.put(meta(), State(np.zeros(5)), "too large")
    assert cache.get(meta(), State(np.zeros(5))) is MISS
    by_bytes = ResultCache(max_entries=100, max_bytes=2000)
    for i in range(10):
        m = meta()
        m.name = f"s{i}"
        by_bytes.put(m, State(np.zeros(10)), i)  # 256 + 5 x 80 bytes each
    assert len(by_bytes) == 3


def test_memory_store_batch_does_not_share_version_with_a_copy():
    """Readers get copies: a later write bumps the store's version, not the copy's."""
    store = MemoryStore()

    async def run() -> tuple[int, int]:
        await store.create(meta(version=0))
        before = await store.read("s")
        await store.apply("s", [Batch(Runs.from_dict({0: 1.0}), samples=1)])
        after = await store.read("s")
        assert before is not None and after is not None
        return before.meta.version, after.meta.version

    assert asyncio.run(run()) == (0, 1)


@pytest.fixture
async def redis_pair(redis_server):
    server = redis_server
    server.client().flushall()
    stores = [RedisStore.from_url(server.url), RedisStore.from_url(server.url)]
    yield Sessions(stores[0]), Sessions(stores[1])
    for store in stores:
        await store.close()


async def test_redis_listing_does_not_send_unchanged_states(redis_pair, monkeypatch):
    """The read script answers 1 for a session whose id and version the cache holds: its
    state is neither sent nor parsed; a session written since is read in full."""
    import app.store.redis as redis_store

    reader, writer = redis_pair
    for i in range(3):
        await writer.create(f"k.{i}", "Precision", None, None)
        await update(writer, f"k.{i}", 1, i)
    parsed: list[bytes] = []
    real = redis_store.state_from

    def counting(sums, extremes):
        parsed.append(sums)
        return real(sums, extremes)

    monkeypatch.setattr(redis_store, "state_from", counting)
    first = await listed(reader, "k.")
    assert len(parsed) == 3
    assert await listed(reader, "k.") == first
    assert len(parsed) == 3
    await update(writer, "k.1", 2, 0)  # tp 3, fp 1
    assert await listed(reader, "k.") == {**first, "k.1": 0.75}
    assert len(parsed) == 4


async def test_a_listed_session_whose_cache_entry_went_meanwhile_is_read_again(redis_pair):
    """Between the store's version check and the use of the cached result, the entry may be
    evicted (or the session deleted): the listing reads it again (or leaves it out)."""
    reader, writer = redis_pair
    for name in ("m.a", "m.b"):
        await writer.create(name, "Precision", None, None)
        await update(writer, name, 1, 1)
    assert await listed(reader, "m.") == {"m.a": 0.5, "m.b": 0.5}
    real_list = reader.store.list

    async def list_then_lose(*args, **kwargs):
        page = await real_list(*args, **kwargs)
        for name in ("m.a", "m.b"):
            reader.results.forget(name)  # evicted after the store skipped them
        await update(writer, "m.a", 2, 0)  # and written: the read must see this
        await writer.delete("m.b")  # and deleted: nothing to list
        return page

    reader.store.list = list_then_lose  # type: ignore[method-assign]
    assert await listed(reader, "m.") == {"m.a": 0.75}
