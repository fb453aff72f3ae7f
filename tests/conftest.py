from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "numpy")

import pytest  # noqa: E402

from app.store.memory import MemoryStore  # noqa: E402
from app.store.redis import RedisStore  # noqa: E402
from tests.live_server import LiveServer  # noqa: E402
from tests.redis_servers import RedisClusterProcesses, RedisProcess  # noqa: E402


@pytest.fixture(scope="session")
def redis_server():
    server = RedisProcess().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster():
    cluster = RedisClusterProcesses().start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def live_servers():
    """Two uvicorn processes, each with two workers, on one private Redis (not flushed by
    other tests): their URLs."""
    redis_process = RedisProcess().start()
    env = {"TALLY_REDIS_URL": redis_process.url}
    started = [LiveServer(env, workers=2).start(), LiveServer(env, workers=2).start()]
    yield [s.url for s in started]
    for s in started:
        s.stop()
    redis_process.stop()


@pytest.fixture(params=["memory", "redis", "cluster"])
async def store(request):
    """Every store implementation, each fresh: the contract suite runs on all of them."""
    kind = request.param
    if kind == "memory":
        instance = MemoryStore(idempotency_ttl=1.0)
    elif kind == "redis":
        server = request.getfixturevalue("redis_server")
        server.client().flushall()  # our own private server
        instance = RedisStore.from_url(server.url, idempotency_ttl=1.0)
    else:
        cluster = request.getfixturevalue("redis_cluster")
        cluster.flush()
        instance = RedisStore.from_url(cluster.url, cluster=True, idempotency_ttl=1.0)
    yield instance
    await instance.close()


@pytest.fixture(params=["memory", "redis"])
def api_store(request):
    """A fresh store for an API test: in memory, or on the private Redis (flushed)."""
    if request.param == "memory":
        return MemoryStore()
    server = request.getfixturevalue("redis_server")
    server.client().flushall()
    return RedisStore.from_url(server.url)
