"""The `ver` key (keys.version): what a listing asks of a session it knows. It must say what
the meta says after every kind of write, and a session made before it existed (no `ver`, no
meta `x`) must still list right, extremes included."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
import redis

from app.store import keys
from app.store.base import UNREAD, Batch, SessionMeta
from app.store.redis import WHOLE_STATE_ELEMENTS, RedisStore
from app.store.state import Runs

NAME = "run1.val.ver"


class Held(NamedTuple):
    """A `KnownState`: what a listing's caller holds of a session."""

    meta: SessionMeta
    elements: int


def meta(name: str = NAME, ttl: int | None = None) -> SessionMeta:
    return SessionMeta(name=name, metric="Precision", args={}, config={"name": "precision"},
                       created_at=1700000000.5, ttl_seconds=ttl, id=f"id-{name}")


@pytest.fixture(params=["redis", "cluster"])
async def store(request):
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        server.client().flushall()  # our own private server
        instance = RedisStore.from_url(server.url)
        raw = server.client()
    else:
        cluster = request.getfixturevalue("redis_cluster")
        cluster.flush()
        instance = RedisStore.from_url(cluster.url, cluster=True)
        raw = redis.RedisCluster.from_url(cluster.url)
    instance.raw = raw  # a synchronous client of the same Redis, to look at keys
    yield instance
    await instance.close()


def expected_version(store, name: str = NAME) -> str:
    """`ver` as the meta says it should be: "<id> <v> <epoch> <flags>"."""
    fields = {k.decode(): v.decode() for k, v in store.raw.hgetall(keys.meta(name)).items()}
    flags = ("L" if fields.get("layout") else "") + ("X" if fields.get("x") == "1" else "")
    return f"{fields['id']} {fields.get('v', '0')} {fields['epoch']} {flags}"


def version(store, name: str = NAME) -> str | None:
    found = store.raw.get(keys.version(name))
    return None if found is None else found.decode()


async def test_every_write_keeps_ver_equal_to_the_meta(store):
    await store.create(meta())
    assert version(store) == expected_version(store) == f"id-{NAME} 0 0 "
    steps = [
        [Batch(sums=Runs.from_dict({0: 1.0}), samples=1)],
        [Batch(sums=Runs.from_dict({1: 2.0}), samples=1, layout='{"n":2}')],
        [Batch(maxes=Runs.from_dict({0: 5.0}), samples=1)],
        [Batch(sums=Runs.from_dict({0: 1.0}), samples=1, epoch=7)],  # refused: no write
        [Batch(sums=Runs.from_indices(np.arange(WHOLE_STATE_ELEMENTS + 1),
                                      np.ones(WHOLE_STATE_ELEMENTS + 1)), samples=1)],
    ]
    seen = [version(store)]
    for batches in steps:
        await store.apply(NAME, batches)
        assert version(store) == expected_version(store)
        seen.append(version(store))
    await store.reset(NAME)
    assert version(store) == expected_version(store)
    assert seen[1] == f"id-{NAME} 1 0 "
    assert seen[2] == f"id-{NAME} 2 0 L"
    assert seen[3] == f"id-{NAME} 3 0 LX"
    assert seen[4] == seen[3]  # the refused batch wrote nothing
    assert seen[5] == f"id-{NAME} 4 0 LX"  # the whole-state batch
    assert version(store) == f"id-{NAME} 5 1 LX"  # extremes may come back after a reset


async def test_ver_lives_and_dies_with_the_session(store):
    await store.create(meta(ttl=100))
    assert 0 < store.raw.ttl(keys.version(NAME)) <= 100
    await store.apply(NAME, [Batch(sums=Runs.from_dict({0: 1.0}), samples=1)])
    assert 0 < store.raw.ttl(keys.version(NAME)) <= 100
    await store.delete(NAME)
    assert version(store) is None


def forget_version(store, name: str = NAME) -> None:
    """Make the session look as one written before `ver` and meta `x` existed."""
    store.raw.delete(keys.version(name))
    store.raw.hdel(keys.meta(name), "x")


async def test_a_session_from_before_ver_lists_right_and_gets_it_at_its_next_write(store):
    """Its extremes (written before) are listed after a write that brings sums only: the
    first write after asks whether `ext` holds anything."""
    await store.create(meta())
    await store.apply(NAME, [Batch(sums=Runs.from_dict({0: 1.0}),
                                   maxes=Runs.from_dict({0: 4.0}), samples=1)])
    forget_version(store)
    held = Held((await store.read(NAME)).meta, 2)
    listed = (await store.list("run1.", None, known={NAME: held}.get)).sessions
    assert listed[0].state is not UNREAD and listed[0].state.extremes_dict() == {0: 4.0}
    await store.apply(NAME, [Batch(sums=Runs.from_dict({0: 1.0}), samples=1)])
    assert version(store) == expected_version(store) == f"id-{NAME} 2 0 X"
    (again,) = (await store.list("run1.", None, known={NAME: held}.get)).sessions
    assert again.state.extremes_dict() == {0: 4.0}
    assert again.state.sums_dict() == {0: 2.0}
    assert again.meta == (await store.read(NAME)).meta


async def test_a_known_session_without_ver_is_read_from_its_meta(store):
    await store.create(meta())
    await store.apply(NAME, [Batch(sums=Runs.from_dict({0: 1.0}), samples=1)])
    held = Held((await store.read(NAME)).meta, 1)
    await store.apply(NAME, [Batch(sums=Runs.from_dict({0: 1.0}), samples=1)])
    forget_version(store)
    (listed,) = (await store.list("run1.", None, known={NAME: held}.get)).sessions
    assert listed.meta == (await store.read(NAME)).meta
    assert listed.state.sums_dict() == {0: 2.0}
