"""One contract, every store: memory, single Redis, Redis Cluster."""

from __future__ import annotations

import asyncio
import math
from typing import NamedTuple

import numpy as np
import pytest
from redis.asyncio.cluster import RedisCluster

from app.errors import OutcomeUnknown, StoreUnavailable
from app.store.base import (
    UNREAD,
    Applied,
    Batch,
    EpochMismatch,
    Joined,
    KeyBoundElsewhere,
    LayoutMismatch,
    MergedKeySeen,
    SessionMeta,
    SessionNotFound,
    StaleSession,
    Window,
)
from app.store.redis import RedisStore
from app.store.state import Runs


def runs(values: dict[int, float]) -> Runs:
    return Runs.from_dict(values)


async def sums(store, name: str) -> dict[int, float]:
    return (await store.read(name)).state.sums_dict()


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
        Batch(sums=runs({0: 4.0, 1: 1.0}), samples=8)])
    assert out == [Applied(0, 8)]
    await store.apply("run1.val.precision", [
        Batch(sums=runs({1: 3.0, 0: 0.1}), samples=8)])
    snap = await store.read("run1.val.precision")
    assert snap.meta.epoch == 0
    assert snap.state.sums_dict() == {0: pytest.approx(4.1, abs=0, rel=1e-15), 1: 4.0}


async def test_floats_keep_full_precision(store):
    await store.create(meta())
    value = 0.1234567890123456789
    await store.apply("run1.val.precision", [Batch(sums=runs({0: value}), samples=1)])
    snap = await store.read("run1.val.precision")
    assert snap.state.sums_dict()[0] == value


async def test_max_min_and_nan(store):
    await store.create(meta())
    name = "run1.val.precision"
    await store.apply(name, [Batch(maxes=runs({0: 2.0}), mins=runs({1: 2.0}), samples=1)])
    await store.apply(name, [Batch(maxes=runs({0: 1.0}), mins=runs({1: -1.5}), samples=1)])
    await store.apply(name, [Batch(maxes=runs({0: 3.5}), mins=runs({1: 7.0}), samples=1)])
    await store.apply(name, [Batch(sums=runs({0: 1.0, 1: 1.0}), samples=1)])
    await store.apply(name, [Batch(sums=runs({0: math.nan, 1: math.inf}), samples=1)])
    await store.apply(name, [Batch(sums=runs({0: 1.0, 1: 1.0}), samples=1)])
    state = (await store.read(name)).state
    assert state.extremes_dict() == {0: 3.5, 1: -1.5}
    assert math.isnan(state.sums[0]) and state.sums[1] == math.inf


async def test_epoch_precondition_and_replay(store):
    name = "run1.val.precision"
    await store.create(meta())
    ok = Batch(sums=runs({0: 1.0}), samples=2, epoch=0, idempotency_key="k1")
    late = Batch(sums=runs({0: 100.0}), samples=2, epoch=3)
    out = await store.apply(name, [ok, late, ok])
    assert out[0] == Applied(0, 2)
    assert isinstance(out[1], EpochMismatch) and out[1].current == 0
    assert out[2] == Applied(0, 2, replayed=True)
    assert await sums(store, name) == {0: 1.0}
    await store.reset(name)
    # a retry after the reset still answers like the first and adds nothing
    assert await store.apply(name, [ok]) == [Applied(0, 2, replayed=True)]
    assert await sums(store, name) == {}


async def test_a_merged_batch_answers_each_of_its_keys(store):
    """A merged batch (the increments of several requests) lands once; each joined request's
    key is then answered as its own, with its own samples; a batch without keys merges too."""
    name = "run1.val.precision"
    await store.create(meta())
    merged = Batch(sums=runs({0: 3.0, 1: 1.0}), samples=4, idempotency_key="a", fingerprint="fa",
                   joined=[Joined("b", "fb", 5), Joined(None, "", 6), Joined("c", "fc", 7)])
    assert await store.apply(name, [merged]) == [Applied(0, 4)]
    assert await sums(store, name) == {0: 3.0, 1: 1.0}
    replays = [Batch(sums=runs({0: 9.0}), samples=n, idempotency_key=k, fingerprint=f)
               for k, f, n in (("b", "fb", 5), ("c", "fc", 7))]
    assert await store.apply(name, replays) == [Applied(0, 5, replayed=True),
                                                 Applied(0, 7, replayed=True)]
    (other,) = await store.apply(name, [Batch(sums=runs({0: 9.0}), samples=5,
                                              idempotency_key="b", fingerprint="elsewhere")])
    assert isinstance(other, KeyBoundElsewhere)
    keyless = Batch(sums=runs({0: 1.0}), samples=1, joined=[Joined(None, "", 2)])
    assert await store.apply(name, [keyless]) == [Applied(0, 1)]
    assert await sums(store, name) == {0: 4.0, 1: 1.0}


async def test_a_merged_batch_with_an_answered_key_applies_nothing(store):
    """If any key a merged batch carries was answered already (the first request's or a joined
    one's), nothing lands and no key is recorded: the service sends the requests alone."""
    name = "run1.val.precision"
    await store.create(meta())
    await store.apply(name, [Batch(sums=runs({0: 1.0}), samples=1, idempotency_key="seen")])
    for merged in (
            Batch(sums=runs({0: 5.0}), samples=2, idempotency_key="new1",
                  joined=[Joined("seen", "", 1)]),
            Batch(sums=runs({0: 5.0}), samples=1, idempotency_key="seen",
                  joined=[Joined("new2", "", 2)])):
        (answer,) = await store.apply(name, [merged])
        assert isinstance(answer, MergedKeySeen)
    assert await sums(store, name) == {0: 1.0}
    fresh = Batch(sums=runs({0: 2.0}), samples=3, idempotency_key="new2")
    assert await store.apply(name, [fresh]) == [Applied(0, 3)]  # new2 was not recorded
    late = Batch(sums=runs({0: 5.0}), samples=2, epoch=4, joined=[Joined("new3", "", 1)])
    (refused,) = await store.apply(name, [late])
    assert isinstance(refused, EpochMismatch)
    assert await store.apply(name, [Batch(sums=runs({0: 1.0}), samples=1,
                                          idempotency_key="new3")]) == [Applied(0, 1)]
    assert await sums(store, name) == {0: 4.0}


async def test_idempotency_window_expires(store):
    name = "run1.val.precision"
    await store.create(meta())
    batch = Batch(sums=runs({0: 1.0}), samples=1, idempotency_key="k")
    await store.apply(name, [batch])
    await asyncio.sleep(1.2)  # the fixture's window is 1 s
    assert await store.apply(name, [batch]) == [Applied(0, 1)]
    assert await sums(store, name) == {0: 2.0}


async def test_reset_closes_epoch(store):
    name = "run1.val.precision"
    await store.create(meta())
    await store.apply(name, [Batch(sums=runs({0: 5.0}), samples=1)])
    closed, after = await store.reset(name)
    assert closed.epoch == 0 and closed.state.sums_dict() == {0: 5.0} and closed.closed_at > 1e9
    assert after.epoch == 1
    assert await sums(store, name) == {}
    with pytest.raises(EpochMismatch):
        await store.reset(name, expected_epoch=0)
    closed, after = await store.reset(name, expected_epoch=1)
    assert closed.epoch == 1 and closed.state.sums_dict() == {} and after.epoch == 2
    history = await store.history(name)
    assert [h.epoch for h in history] == [0, 1]
    assert history[0].state.sums_dict() == {0: 5.0} and history[1].state.sums_dict() == {}
    await store.compact(name, 0, b"0.5")
    await store.compact(name, 0, b"0.75")  # a compacted epoch stays as it is
    first, second = await store.history(name)
    assert first.compacted and first.result == 0.5 and first.state is None
    assert not second.compacted and second.state.sums_dict() == {}


async def test_missing_session(store):
    assert await store.read("nope") is None
    assert await store.get_meta("nope") is None
    assert await store.history("nope") is None
    out = await store.apply("nope", [Batch(sums=runs({0: 1.0}), samples=1)])
    assert isinstance(out[0], SessionNotFound)
    with pytest.raises(SessionNotFound):
        await store.reset("nope")
    assert await store.delete("nope") is False


async def test_delete_removes_everything(store):
    name = "run1.val.precision"
    await store.create(meta())
    await store.apply(name, [Batch(sums=runs({0: 1.0}), samples=1, idempotency_key="k")])
    await store.reset(name)
    assert await store.delete(name) is True
    assert await store.read(name) is None
    await store.create(meta())
    assert (await store.history(name)) == []
    # the idempotency key went with the session
    assert await store.apply(name, [Batch(sums=runs({0: 1.0}), samples=1,
                                          idempotency_key="k")]) == [Applied(0, 1)]


async def test_list_by_prefix_sorted(store):
    for name in ["b.x", "a.y", "a.x", "ab", "c"]:
        await store.create(meta(name))
    assert await names(store, "a") == ["a.x", "a.y", "ab"]
    assert await names(store, "a.") == ["a.x", "a.y"]
    assert await names(store, "") == ["a.x", "a.y", "ab", "b.x", "c"]
    await store.delete("a.y")
    assert await names(store, "a") == ["a.x", "ab"]


async def names(store, prefix: str) -> list[str]:
    page = await store.list(prefix)
    assert page.last is None
    return [s.meta.name for s in page.sessions]


async def test_list_pages_follow_the_last_name(store):
    all_names = sorted(f"p.{i:03d}" for i in range(23)) + ["q.0"]
    for name in reversed(all_names):
        await store.create(meta(name))
    seen, after = [], None
    while True:
        page = await store.list("p.", after, limit=5)
        seen += [s.meta.name for s in page.sessions]
        assert len(page.sessions) <= 5
        if page.last is None:
            break
        after = page.last
    assert seen == all_names[:-1]
    exact = await store.list("p.", None, limit=23)
    assert len(exact.sessions) == 23 and exact.last is None
    assert (await store.list("p.", "p.022", limit=5)).sessions == []


async def test_list_page_stops_at_the_state_budget(store):
    for i in range(4):
        await store.create(meta(f"big.{i}"))
        await store.apply(f"big.{i}", [Batch(sums=Runs.from_indices(
            np.arange(100), np.ones(100)), samples=1)])
    page = await store.list("big.", None, limit=10, max_elements=250)
    assert [s.meta.name for s in page.sessions] == ["big.0", "big.1"]
    assert page.last == "big.1"
    one = await store.list("big.", None, limit=10, max_elements=10)  # at least one session
    assert [s.meta.name for s in one.sessions] == ["big.0"] and one.last == "big.0"


class Held(NamedTuple):
    """A `KnownState`: what a listing's caller holds of a session."""

    meta: SessionMeta
    elements: int


async def test_list_with_known_states_keeps_the_budget_and_reads_what_changed(store):
    """`known`: sessions at the caller's id and version may come back UNREAD with the
    caller's meta (a single Redis does skip them); a session written since never does."""
    for i in range(4):
        await store.create(meta(f"big.{i}"))
        await store.apply(f"big.{i}", [Batch(sums=Runs.from_indices(
            np.arange(100), np.ones(100)), samples=1)])
    metas = {name: (await store.read(name)).meta for name in ("big.0", "big.1", "big.2")}
    held = {name: Held(m, 100) for name, m in metas.items()}
    await store.apply("big.1", [Batch(sums=runs({0: 5.0}), samples=1)])
    page = await store.list("big.", None, limit=10, max_elements=250, known=held.get)
    assert [s.meta.name for s in page.sessions] == ["big.0", "big.1"]
    assert page.last == "big.1"
    first, second = page.sessions
    if isinstance(store, RedisStore) and not isinstance(store._client, RedisCluster):  # noqa: SLF001
        assert first.state is UNREAD and first.meta is metas["big.0"]
    assert first.state is UNREAD or first.state.sums_dict() == {i: 1.0 for i in range(100)}
    assert second.state is not UNREAD and second.state.sums_dict()[0] == 6.0
    assert second.meta.version == metas["big.1"].version + 1
    whole = await store.list("big.", None, limit=10, known=held.get)
    assert [s.meta.name for s in whole.sessions] == [f"big.{i}" for i in range(4)]


async def test_list_with_known_metas_answers_what_moved_since(store):
    """Sessions the caller knows, then written, reset, given their layout, or deleted and
    created again: each listed meta and state is what a read gives now (a single Redis
    sends only the epoch, version and layout of a known incarnation)."""
    names = ["k.written", "k.reset", "k.layout", "k.again", "k.same"]
    for name in names:
        await store.create(meta(name))
        await store.apply(name, [Batch(sums=runs({0: 1.0}), samples=1)])
    known = {name: Held((await store.read(name)).meta, 1) for name in names}
    await store.apply("k.written", [Batch(sums=runs({1: 2.0}), samples=1)])
    await store.reset("k.reset")
    await store.apply("k.layout", [Batch(sums=runs({3: 1.0}), samples=1,
                                         layout='{"num_classes":4}')])
    await store.delete("k.again")
    again = meta("k.again")
    again.id, again.created_at = "id-second", 1800000000.5
    await store.create(again)
    await store.apply("k.again", [Batch(sums=runs({2: 7.0}), samples=1)])
    page = await store.list("k.", None, limit=10, known=known.get)
    assert sorted(s.meta.name for s in page.sessions) == sorted(names)
    for listed in page.sessions:
        now = await store.read(listed.meta.name)
        assert listed.meta == now.meta, listed.meta.name
        if listed.state is not UNREAD:
            assert listed.state.sums_dict() == now.state.sums_dict(), listed.meta.name
    by_name = {s.meta.name: s for s in page.sessions}
    assert by_name["k.reset"].meta.epoch == 1
    assert by_name["k.layout"].meta.layout == {"num_classes": 4}
    assert by_name["k.again"].meta.id == "id-second"
    assert by_name["k.again"].meta.created_at == 1800000000.5
    if isinstance(store, RedisStore) and not isinstance(store._client, RedisCluster):  # noqa: SLF001
        assert by_name["k.same"].state is UNREAD


async def test_key_is_bound_to_its_request(store):
    name = "run1.val.precision"
    await store.create(meta())
    first = Batch(sums=runs({0: 1.0}), samples=1, idempotency_key="k", fingerprint="f1")
    other = Batch(sums=runs({0: 9.0}), samples=1, idempotency_key="k", fingerprint="f2")
    out = await store.apply(name, [first, other, first])
    assert out[0] == Applied(0, 1) and out[2] == Applied(0, 1, replayed=True)
    assert isinstance(out[1], KeyBoundElsewhere) and out[1].status == 422
    assert await sums(store, name) == {0: 1.0}


async def test_idempotency_keys_per_session_are_bounded(store):
    name = "run1.val.precision"
    await store.create(meta())
    store._idempotency_keys = 3  # noqa: SLF001 - the fixture's stores keep the default
    for key in "abcde":
        await store.apply(name, [Batch(sums=runs({0: 1.0}), samples=1, idempotency_key=key)])
    replays = await store.apply(name, [Batch(sums=runs({0: 1.0}), samples=1,
                                             idempotency_key=key) for key in "cde"])
    assert all(a.replayed for a in replays)
    forgotten = await store.apply(name, [Batch(sums=runs({0: 1.0}), samples=1,
                                               idempotency_key="a")])
    assert forgotten == [Applied(0, 1)]  # the oldest key was dropped to keep three
    assert await sums(store, name) == {0: 6.0}


async def test_runs_add_ranges_and_bridge_gaps(store):
    name = "run1.val.precision"
    await store.create(meta())
    rng = np.random.default_rng(3)
    expected = np.zeros(5000)
    for _ in range(6):
        touched = np.unique(rng.integers(0, 5000, size=300))
        dense = np.zeros(5000)
        dense[touched] = rng.normal(size=touched.size)
        expected += dense
        await store.apply(name, [Batch(sums=Runs.from_indices(touched, dense, gap=8),
                                       samples=1)])
    state = (await store.read(name)).state
    got = np.zeros(5000)
    got[:state.sums.size] = state.sums
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


async def test_history_keeps_the_newest_epochs(store):
    name = "run1.val.precision"
    await store.create(meta())
    store._history_limit = 3  # noqa: SLF001
    for epoch in range(6):
        await store.apply(name, [Batch(sums=runs({0: float(epoch)}), samples=1)])
        await store.reset(name)
    history = await store.history(name)
    assert [h.epoch for h in history] == [3, 4, 5]
    assert [h.state.sums_dict().get(0, 0.0) for h in history] == [3.0, 4.0, 5.0]


async def test_ttl_deletes_idle_sessions(store):
    await store.create(meta("short", ttl=1))
    await store.create(meta("long"))
    await asyncio.sleep(0.6)
    await store.apply("short", [Batch(sums=runs({0: 1.0}), samples=1)])  # a write refreshes
    await asyncio.sleep(0.6)
    assert await store.read("short") is not None
    await asyncio.sleep(1.0)
    assert await store.read("short") is None
    assert await names(store, "") == ["long"]


async def test_concurrent_applies_are_exact(store):
    name = "run1.val.precision"
    await store.create(meta())

    async def worker(i: int) -> None:
        for j in range(20):
            await store.apply(name, [Batch(sums=runs({0: 1.0, 1 + i: 0.5}), samples=1,
                                           idempotency_key=f"{i}-{j}")])
            await store.apply(name, [Batch(sums=runs({0: 1.0, 1 + i: 0.5}), samples=1,
                                           idempotency_key=f"{i}-{j}")])

    await asyncio.gather(*(worker(i) for i in range(8)))
    fields = await sums(store, name)
    assert fields[0] == 160.0
    assert all(fields[1 + i] == 10.0 for i in range(8))


async def test_batch_for_an_earlier_incarnation_is_refused(store):
    name = "run1.val.precision"
    await store.create(meta())
    ok = Batch(sums=runs({0: 1.0}), samples=1, session_id="id-run1.val.precision")
    stale = Batch(sums=runs({0: 50.0}), samples=1, session_id="id-of-a-deleted-session")
    out = await store.apply(name, [ok, stale])
    assert out[0] == Applied(0, 1) and isinstance(out[1], StaleSession)
    assert await sums(store, name) == {0: 1.0}


async def test_first_layout_sticks(store):
    name = "run1.val.precision"
    await store.create(meta())
    four = Batch(sums=runs({3: 1.0}), samples=1, layout='{"num_classes":4}')
    five = Batch(sums=runs({4: 1.0}), samples=1, layout='{"num_classes":5}')
    out = await store.apply(name, [four, five, four])
    assert out[0] == Applied(0, 1) and out[2] == Applied(0, 1)
    assert isinstance(out[1], LayoutMismatch) and out[1].status == 422
    snap = await store.read(name)
    assert snap.meta.layout == {"num_classes": 4} and snap.state.sums_dict() == {3: 2.0}
    await store.reset(name)
    assert (await store.read(name)).meta.layout == {"num_classes": 4}


async def test_concurrent_batches_of_one_session_share_script_calls(store):
    """Group commit (Redis): batches that arrive while a call is in flight go together in the
    next one, each with its own precondition, key and answer."""
    if not hasattr(store, "_apply_now"):
        pytest.skip("the memory store applies in place; nothing to group")
    name = "run1.val.precision"
    await store.create(meta())
    calls = []
    send = store._apply_now  # noqa: SLF001

    async def counted(session, batches, conn=None):
        calls.append(len(batches))
        return await send(session, batches, conn)

    store._apply_now = counted  # noqa: SLF001
    batches = [Batch(sums=runs({0: 1.0}), samples=1, idempotency_key=f"k{i % 30}",
                     epoch=0 if i % 7 else 5) for i in range(60)]
    answers = await asyncio.gather(*(store.apply(name, [b]) for b in batches))
    assert sum(calls) == 60 and len(calls) < 60
    # The documented rule, in arrival order: a key seen before replays its first answer;
    # otherwise a wrong epoch is refused; otherwise the batch applies.
    seen: set[str] = set()
    expected = []
    for b in batches:
        if b.idempotency_key in seen:
            expected.append("replay")
        elif b.epoch != 0:
            expected.append("late")
        else:
            seen.add(b.idempotency_key)
            expected.append("applied")
    got = ["late" if isinstance(a, EpochMismatch) else "replay" if a.replayed else "applied"
           for (a,) in answers]
    assert got == expected
    assert await sums(store, name) == {0: float(expected.count("applied"))}


async def test_a_burst_waits_for_connections_instead_of_failing(redis_server):
    """More concurrent requests than pooled connections queue for one (up to the timeout)."""
    from app.store.redis import RedisStore

    redis_server.client().flushall()
    small = RedisStore.from_url(redis_server.url, max_connections=2, timeout=5)
    try:
        await small.create(meta())
        answers = await asyncio.gather(*(small.apply("run1.val.precision", [Batch(
            sums=runs({0: 1.0}), samples=1)]) for _ in range(50)))
        assert all(isinstance(a, Applied) for (a,) in answers)
        reads = await asyncio.gather(*(small.read("run1.val.precision") for _ in range(50)))
        assert all(r.state.sums_dict() == {0: 50.0} for r in reads)
    finally:
        await small.close()


async def test_group_commit_on_its_own_connection_survives_a_script_flush_and_a_kill(
        redis_server):
    """Group commit sends on a connection it holds for its run (app.store.redis._eval_on):
    after SCRIPT FLUSH (a restarted Redis) the script is loaded again and each batch counts
    once; after every connection is killed, a batch is either applied or answered with a
    store error (503/504), the totals count exactly the applied ones, and the next calls
    reconnect; and the connection goes back to the pool when the run ends."""
    from app.store.redis import RedisStore

    redis_server.client().flushall()
    store = RedisStore.from_url(redis_server.url, max_connections=4, timeout=5)
    name = "run1.val.precision"
    admin = redis_server.client()
    try:
        await store.create(meta())

        async def burst(count: int) -> list[object]:
            answers = await asyncio.gather(*(store.apply(name, [Batch(
                sums=runs({0: 1.0}), samples=1)]) for _ in range(count)),
                return_exceptions=True)
            return [a if isinstance(a, BaseException) else a[0] for a in answers]

        assert all(isinstance(a, Applied) for a in await burst(20))
        admin.script_flush()
        assert all(isinstance(a, Applied) for a in await burst(20))
        assert await sums(store, name) == {0: 40.0}
        own = admin.client_id()
        for client in admin.client_list():
            if int(client["id"]) != own:
                admin.client_kill_filter(_id=client["id"])
        outcomes = await burst(20)  # a call on the killed connection fails as a store error
        assert all(isinstance(a, Applied | StoreUnavailable | OutcomeUnknown)
                   for a in outcomes), outcomes
        applied = sum(isinstance(a, Applied) for a in outcomes)
        assert await sums(store, name) == {0: 40.0 + applied}
        assert all(isinstance(a, Applied) for a in await burst(20))
        assert await sums(store, name) == {0: 60.0 + applied}
        pool = store._client.connection_pool  # noqa: SLF001 - the connections lent out
        assert not pool._in_use_connections  # noqa: SLF001
        # A run cancelled while its call waits (writes paused; as at shutdown) answers the
        # requests waiting on it (outcome unknown: the call was sent) and gives its
        # connection back, disconnected: an answer may still be on its way on that socket.
        admin.execute_command("CLIENT", "PAUSE", 2000, "WRITE")
        waiting = asyncio.ensure_future(burst(3))
        while not store._committers:  # noqa: SLF001
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        (lent,) = pool._in_use_connections  # noqa: SLF001 - the run's, its call waiting
        assert lent.is_connected
        for task in list(store._committers):  # noqa: SLF001
            task.cancel()
        stopped = await waiting
        assert all(isinstance(a, OutcomeUnknown) for a in stopped), stopped
        admin.execute_command("CLIENT", "UNPAUSE")
        assert not pool._in_use_connections  # noqa: SLF001
        assert not lent.is_connected
        assert all(isinstance(a, Applied) for a in await burst(5))
    finally:
        await store.close()


async def test_a_busy_session_gives_its_connection_back_to_others(redis_server):
    """A group-commit run keeps a pooled connection while its session stays busy, but gives
    it back every HOLD_SECONDS: with one connection in the pool, another session's batch is
    applied while the busy one keeps the run going (instead of waiting out the pool
    timeout), and every batch of both counts once."""
    redis_server.client().flushall()
    store = RedisStore.from_url(redis_server.url, max_connections=1, timeout=3)
    stop = asyncio.Event()
    sent: list[asyncio.Future[list[object]]] = []

    async def stream() -> None:  # a batch every turn of the loop: the group never empties
        while not stop.is_set():
            if sum(not f.done() for f in sent[-200:]) < 100:
                sent.append(asyncio.ensure_future(store.apply("busy", [Batch(
                    sums=runs({0: 1.0}), samples=1)])))
            await asyncio.sleep(0)

    try:
        await store.create(meta("busy"))
        await store.create(meta("other"))
        producer = asyncio.ensure_future(stream())
        await asyncio.sleep(0.1)
        (answer,) = await asyncio.wait_for(store.apply("other", [Batch(
            sums=runs({0: 1.0}), samples=1)]), timeout=1.5)
        assert isinstance(answer, Applied)
        assert store._groups.get("busy")  # noqa: SLF001 - the busy session was still busy
        stop.set()
        await producer
        answers = await asyncio.gather(*sent)
        assert all(isinstance(a, Applied) for (a,) in answers)
        assert await sums(store, "busy") == {0: float(len(answers))}
        assert await sums(store, "other") == {0: 1.0}
    finally:
        stop.set()
        await store.close()


async def test_a_large_batch_adds_exactly_with_its_preconditions(store):
    """A batch over the whole-state threshold (Redis adds it in numpy and writes the state back
    when nothing changed in between) behaves like any other: exact sums, epoch, key."""
    name = "run1.val.precision"
    await store.create(meta())
    rng = np.random.default_rng(5)
    size = 300_000
    touched = np.unique(rng.integers(0, size, 200_000))
    dense = np.zeros(size)
    dense[touched] = rng.normal(size=touched.size)
    big = Batch(sums=Runs.from_indices(touched, dense, gap=8), samples=7,
                idempotency_key="big", epoch=0)
    await store.apply(name, [Batch(sums=runs({1: 2.5, size + 5: 1.0}), samples=1)])
    assert await store.apply(name, [big]) == [Applied(0, 7)]
    assert await store.apply(name, [big]) == [Applied(0, 7, replayed=True)]
    late = Batch(sums=big.sums, samples=7, epoch=3)
    (refused,) = await store.apply(name, [late])
    assert isinstance(refused, EpochMismatch)
    expected = np.zeros(size + 6)
    expected[:size] = dense
    expected[1] += 2.5
    expected[size + 5] += 1.0
    state = (await store.read(name)).state
    np.testing.assert_allclose(state.sums, expected, rtol=0, atol=1e-12)


async def test_large_and_small_batches_racing_are_exact(store):
    name = "run1.val.precision"
    await store.create(meta())
    size = 200_000
    ones = Batch(sums=Runs(np.array([0]), np.array([size]), np.ones(size)), samples=1)

    async def small(i: int) -> None:
        for j in range(15):
            await store.apply(name, [Batch(sums=runs({i: 1.0, size - 1: 1.0}), samples=1,
                                           idempotency_key=f"{i}-{j}")])

    await asyncio.gather(*(store.apply(name, [ones]) for _ in range(3)),
                         *(small(i) for i in range(6)))
    state = (await store.read(name)).state
    expected = np.full(size, 3.0)
    expected[:6] += 15
    expected[size - 1] += 6 * 15
    np.testing.assert_array_equal(state.sums, expected)


async def test_concurrent_reads_share_replies_but_see_acknowledged_writes(store):
    """Read coalescing (Redis): reads that arrive while one is in flight share the next
    reply; a read that starts after a write was answered always sees that write."""
    if not hasattr(store, "_read_now"):
        pytest.skip("the memory store reads in place; nothing to coalesce")
    name = "run1.val.precision"
    await store.create(meta())
    calls = []
    send = store._read_now  # noqa: SLF001

    async def counted(session):
        calls.append(session)
        return await send(session)

    store._read_now = counted  # noqa: SLF001

    async def write_then_read(i: int) -> None:
        await store.apply(name, [Batch(sums=runs({i: 1.0}), samples=1)])
        snapshot = await store.read(name)
        assert snapshot.state.sums_dict().get(i) == 1.0  # its own write is visible

    await asyncio.gather(*(write_then_read(i) for i in range(20)),
                         *(store.read(name) for _ in range(40)))
    assert len(calls) < 60
    assert await sums(store, name) == {i: 1.0 for i in range(20)}


# -- time windows ------------------------------------------------------------------------------
class FakeClock:
    """Unix seconds that a test moves by hand (no sleeping)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def windowed(name: str = "w", bucket_seconds: int = 60, buckets: int = 5) -> SessionMeta:
    out = meta(name)
    out.window = Window(bucket_seconds, buckets)
    return out


@pytest.fixture
def clock(store) -> FakeClock:
    fake = FakeClock()
    store.clock = fake
    return fake


async def window_sums(store, name: str, buckets: int) -> dict[int, float]:
    return (await store.read_window(name, buckets)).state.sums_dict()


async def test_window_is_kept_in_the_meta(store, clock):
    created, _ = await store.create(windowed())
    assert created.window == Window(60, 5)
    assert (await store.get_meta("w")).window == Window(60, 5)
    assert (await store.read("w")).meta.window == Window(60, 5)
    assert (await store.get_meta("run1.val.precision")) is None
    await store.create(meta())
    assert (await store.get_meta("run1.val.precision")).window is None


async def test_window_sums_the_last_buckets(store, clock):
    await store.create(windowed())
    clock.now = 60 * 30_000_000 + 59.5  # the end of one bucket
    await store.apply("w", [Batch(sums=runs({0: 1.0}), samples=1)])
    clock.now += 1  # the next bucket
    await store.apply("w", [Batch(sums=runs({0: 2.0, 3: 5.0}), samples=1)])
    clock.now += 60 * 2  # two buckets later
    await store.apply("w", [Batch(sums=runs({1: 4.0}), samples=1),
                            Batch(sums=runs({0: 8.0}), samples=1)])
    assert await window_sums(store, "w", 1) == {0: 8.0, 1: 4.0}
    assert await window_sums(store, "w", 2) == {0: 8.0, 1: 4.0}
    assert await window_sums(store, "w", 3) == {0: 10.0, 1: 4.0, 3: 5.0}
    assert await window_sums(store, "w", 4) == {0: 11.0, 1: 4.0, 3: 5.0}
    assert await window_sums(store, "w", 5) == {0: 11.0, 1: 4.0, 3: 5.0}
    assert await sums(store, "w") == {0: 11.0, 1: 4.0, 3: 5.0}


async def test_old_buckets_leave_the_window(store, clock):
    await store.create(windowed(buckets=3))
    await store.apply("w", [Batch(sums=runs({0: 1.0}), samples=1)])
    clock.now += 60
    await store.apply("w", [Batch(sums=runs({0: 2.0}), samples=1)])
    clock.now += 60
    assert await window_sums(store, "w", 3) == {0: 3.0}
    clock.now += 60  # the first bucket is now 3 buckets back: out of every window
    assert await window_sums(store, "w", 3) == {0: 2.0}
    await store.apply("w", [Batch(sums=runs({1: 1.0}), samples=1)])
    clock.now += 60 * 10
    assert await window_sums(store, "w", 3) == {}
    assert await sums(store, "w") == {0: 3.0, 1: 1.0}  # the epoch keeps everything


async def test_reset_keeps_windows_and_refused_batches_land_nowhere(store, clock):
    await store.create(windowed())
    await store.apply("w", [Batch(sums=runs({0: 1.0}), samples=1, idempotency_key="k")])
    await store.reset("w")
    out = await store.apply("w", [
        Batch(sums=runs({0: 1.0}), samples=1, idempotency_key="k"),  # replayed
        Batch(sums=runs({0: 100.0}), samples=1, epoch=0),  # refused: epoch 1 now
        Batch(sums=runs({0: 1000.0}), samples=1, session_id="another"),  # refused: stale
        Batch(sums=runs({2: 3.0}), samples=1, epoch=1)])
    assert out[0] == Applied(0, 1, replayed=True)
    assert isinstance(out[1], EpochMismatch) and isinstance(out[2], StaleSession)
    assert out[3] == Applied(1, 1)
    assert await window_sums(store, "w", 5) == {0: 1.0, 2: 3.0}
    assert await sums(store, "w") == {2: 3.0}


async def test_a_recreated_session_starts_with_empty_buckets(store, clock):
    await store.create(windowed())
    await store.apply("w", [Batch(sums=runs({0: 1.0}), samples=1)])
    assert await store.delete("w")
    again = windowed()
    again.id = "id-w-2"
    await store.create(again)
    assert await window_sums(store, "w", 5) == {}
    assert await store.read_window("gone", 1) is None


async def test_window_buckets_take_concurrent_batches_exactly(store, clock):
    await store.create(windowed())

    async def send(i: int) -> None:
        await store.apply("w", [Batch(sums=runs({i % 4: 1.0, 7: 0.5}), samples=1)])

    await asyncio.gather(*(send(i) for i in range(200)))
    assert await window_sums(store, "w", 1) == {0: 50.0, 1: 50.0, 2: 50.0, 3: 50.0, 7: 100.0}


async def test_a_large_batch_lands_in_the_window_too(store, clock):
    """Past the whole-state size a Redis store would write the sums back whole: a windowed
    session's batches still travel as runs, so the bucket takes them as well."""
    await store.create(windowed())
    size = 140_000
    batch = Batch(sums=Runs(np.array([0]), np.array([size]), np.arange(size, dtype=float)),
                  samples=1)
    assert await store.apply("w", [batch]) == [Applied(0, 1)]
    window = (await store.read_window("w", 1)).state.sums
    np.testing.assert_array_equal(window, np.arange(size, dtype=float))
    np.testing.assert_array_equal((await store.read("w")).state.sums, window)
