"""Fault tests: the store or the service fails in the middle of a load.

Every test runs the same load: workers POST `Sum` batches to one session, each with its own
Idempotency-Key, retrying on 503, 504, 507 and transport errors as a training job should
(the Python client does the same). While they run, a fault is injected. Afterwards the
session's total must equal the sum of every batch exactly once: nothing lost, nothing
counted twice. The faults: Redis killed and restarted, Redis frozen (SIGSTOP), Redis out of
memory, Tally killed and restarted, a Redis Cluster master killed and its replica promoted.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import httpx
import pytest

from tests.live_server import LiveServer
from tests.redis_servers import RedisClusterProcesses, RedisProcess

RETRIED = (503, 504, 507)
SESSION = "faults.sum"


class Load:
    """Workers that send batches until each is answered 200, counting what they saw."""

    def __init__(self, url: str, workers: int = 8, batches: int = 40, seed: int = 11) -> None:
        self.url = url
        self.workers, self.batches = workers, batches
        self.rng = random.Random(seed)
        self.seen: Counter[str] = Counter()  # "503", "504", "507", "transport" -> count

    async def send(self, client: httpx.AsyncClient, body: dict, key: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                r = await client.post(f"{self.url}/v1/sessions/{SESSION}/update", json=body,
                                      headers={"Idempotency-Key": key})
            except httpx.TransportError:
                self.seen["transport"] += 1
                await asyncio.sleep(0.05)
                continue
            if r.status_code in RETRIED:
                self.seen[str(r.status_code)] += 1
                await asyncio.sleep(0.05)
                continue
            assert r.status_code == 200, r.text
            return
        raise AssertionError(f"batch {key} was never answered")

    async def worker(self, client: httpx.AsyncClient, w: int) -> int:
        total = 0
        for i in range(self.batches):
            values = [self.rng.randint(0, 100) for _ in range(4)]
            await self.send(client, {"values": values}, f"{w}-{i}")
            total += sum(values)
            await asyncio.sleep(0.01)
        return total

    async def run(self, fault: Callable[[httpx.AsyncClient], Awaitable[None]]) -> int:
        """Create the session, run the load with `fault` beside it; the expected total."""
        async with httpx.AsyncClient(timeout=20) as client:
            for _ in range(50):  # create is idempotent: retry it like an update
                r = await client.put(f"{self.url}/v1/sessions/{SESSION}", json={"metric": "Sum"})
                if r.status_code not in RETRIED:
                    break
                await asyncio.sleep(0.1)
            assert r.status_code in (200, 201), r.text
            totals = await asyncio.gather(*(self.worker(client, w)
                                            for w in range(self.workers)), fault(client))
        return sum(totals[:self.workers])

    def result(self) -> float:
        r = httpx.get(f"{self.url}/v1/sessions/{SESSION}/result", timeout=20)
        assert r.status_code == 200, r.text
        return float(r.json()["result"])


async def test_redis_killed_and_restarted():
    # Durable on every write, so a restarted server has everything it acknowledged.
    redis_process = RedisProcess(None, "--appendonly", "yes", "--appendfsync", "always").start()
    server = LiveServer({"TALLY_REDIS_URL": redis_process.url,
                         "TALLY_REDIS_TIMEOUT_SECONDS": "1"}).start()
    statuses: list[int] = []

    async def fault(client: httpx.AsyncClient) -> None:
        await asyncio.sleep(0.3)
        redis_process.stop()  # SIGKILL
        statuses.append((await client.get(f"{server.url}/readyz")).status_code)
        await asyncio.sleep(0.5)
        redis_process.start()

    try:
        load = Load(server.url)
        expected = await load.run(fault)
        assert statuses == [503]
        assert load.seen, "the outage must have hit updates in flight"
        assert load.result() == expected
    finally:
        server.stop()
        redis_process.stop()


async def test_redis_frozen_answers_504_and_retries_count_once():
    """SIGSTOP: connections still open, commands are queued and run when Redis resumes. An
    update whose answer times out is 504 (it may land later), never 503; retries with the key
    are answered from the first application."""
    redis_process = RedisProcess().start()
    server = LiveServer({"TALLY_REDIS_URL": redis_process.url,
                         "TALLY_REDIS_TIMEOUT_SECONDS": "0.5"}).start()

    async def fault(client: httpx.AsyncClient) -> None:
        await asyncio.sleep(0.3)
        redis_process.pause()
        await asyncio.sleep(1.5)
        redis_process.resume()

    try:
        load = Load(server.url)
        expected = await load.run(fault)
        assert load.seen["504"] > 0, load.seen
        assert load.result() == expected
    finally:
        redis_process.resume() if redis_process.process else None
        server.stop()
        redis_process.stop()


async def test_redis_out_of_memory_answers_507_and_applies_nothing():
    redis_process = RedisProcess(None, "--maxmemory-policy", "noeviction").start()
    server = LiveServer({"TALLY_REDIS_URL": redis_process.url}).start()
    ready: list[int] = []

    async def fault(client: httpx.AsyncClient) -> None:
        await asyncio.sleep(0.3)
        admin = redis_process.client()
        admin.config_set("maxmemory", 1)  # every write from now on is refused
        await asyncio.sleep(0.5)
        ready.append((await client.get(f"{server.url}/readyz")).status_code)
        admin.config_set("maxmemory", 0)

    try:
        load = Load(server.url)
        expected = await load.run(fault)
        assert load.seen["507"] > 0, load.seen
        assert ready == [507]
        assert load.result() == expected
    finally:
        server.stop()
        redis_process.stop()


async def test_tally_killed_and_restarted():
    redis_process = RedisProcess().start()
    server = LiveServer({"TALLY_REDIS_URL": redis_process.url}).start()

    async def fault(client: httpx.AsyncClient) -> None:
        await asyncio.sleep(0.3)
        server.kill()
        await asyncio.sleep(0.2)
        await asyncio.to_thread(server.start)

    try:
        load = Load(server.url)
        expected = await load.run(fault)
        assert load.seen["transport"] > 0, load.seen
        assert load.result() == expected
    finally:
        server.stop()
        redis_process.stop()


@pytest.fixture
def replicated_cluster():
    # Two replicas per master: after a failover the promoted master still has one to confirm
    # writes (with a single replica every write would be a 504 until an operator added one).
    cluster = RedisClusterProcesses(size=3, replicas=2, node_timeout_ms=1000).start()
    yield cluster
    cluster.stop()


async def test_cluster_master_killed_replica_promoted(replicated_cluster):
    """With TALLY_REDIS_REPLICA_ACKS=1 every write is confirmed by a replica before it is
    answered, so the promoted replica has everything the clients were told landed; a write
    that could not be confirmed is a 504 and its retry is answered from the first landing."""
    cluster = replicated_cluster
    server = LiveServer({"TALLY_REDIS_URL": cluster.url, "TALLY_REDIS_CLUSTER": "true",
                         "TALLY_REDIS_TIMEOUT_SECONDS": "1",
                         "TALLY_REDIS_REPLICA_ACKS": "1"}).start()
    victim = cluster.master_of(f"tally:{{{SESSION}}}:meta")

    async def fault(client: httpx.AsyncClient) -> None:
        await asyncio.sleep(0.5)
        victim.stop()  # SIGKILL the master of the session's slot
        survivors = [n for n in cluster.nodes if n.process is not None]
        deadline = time.monotonic() + 30
        while not cluster.healthy(survivors):
            assert time.monotonic() < deadline, "the replica was not promoted"
            await asyncio.sleep(0.2)

    try:
        load = Load(server.url, batches=60)
        expected = await load.run(fault)
        assert load.seen, "the failover must have hit updates in flight"
        assert load.result() == expected
    finally:
        server.stop()
