"""Fault test: Redis is killed (SIGKILL) and restarted in the middle of a load. Clients retry
every failed update with its Idempotency-Key until it is answered; afterwards every batch has
been counted exactly once."""

from __future__ import annotations

import asyncio
import random

import httpx

from tests.live_server import LiveServer
from tests.redis_servers import RedisProcess


async def send_until_answered(client: httpx.AsyncClient, url: str, body: dict, key: str,
                              failures: list[str]) -> int:
    """Retry on 503, 504 and transport errors, as a training job should; return the epoch."""
    for _ in range(400):
        try:
            r = await client.post(url, json=body, headers={"Idempotency-Key": key})
        except httpx.TransportError:
            failures.append(key)
            await asyncio.sleep(0.05)
            continue
        if r.status_code in (503, 504):
            failures.append(key)
            await asyncio.sleep(0.05)
            continue
        assert r.status_code == 200, r.text
        return int(r.json()["epoch"])
    raise AssertionError(f"batch {key} never answered")


async def test_kill_and_restart_redis_under_load_counts_every_batch_once():
    # Durable on every write, so a restarted server has everything it acknowledged.
    redis_process = RedisProcess(None, "--appendonly", "yes", "--appendfsync", "always").start()
    server = LiveServer({"TALLY_REDIS_URL": redis_process.url,
                         "TALLY_REDIS_TIMEOUT_SECONDS": "1"}).start()
    rng = random.Random(11)
    url = f"{server.url}/v1/sessions/faults.sum/update"
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.put(f"{server.url}/v1/sessions/faults.sum", json={"metric": "Sum"})
            assert r.status_code == 201
            statuses: list[int] = []
            failures: list[str] = []

            async def worker(w: int) -> int:
                total = 0
                for b in range(30):
                    values = [rng.randrange(1, 100) for _ in range(4)]
                    await send_until_answered(client, url, {"values": values}, f"{w}-{b}",
                                              failures)
                    total += sum(values)
                    await asyncio.sleep(0.01)
                return total

            async def chaos() -> None:
                await asyncio.sleep(0.3)
                redis_process.stop()  # SIGKILL
                r = await client.get(f"{server.url}/readyz")
                statuses.append(r.status_code)
                await asyncio.sleep(0.5)
                redis_process.start()

            results = await asyncio.gather(*(worker(w) for w in range(8)), chaos())
            expected = sum(results[:8])
            assert statuses == [503]
            assert failures, "the outage must have hit updates in flight"
            answer = (await client.get(f"{server.url}/v1/sessions/faults.sum/result")).json()
            assert answer["result"] == expected
    finally:
        server.stop()
        redis_process.stop()
