"""Exact totals with many concurrent clients on several server processes sharing one Redis:
retried updates (same Idempotency-Key) and resets under load; nothing lost, nothing counted
twice, no update split across epochs."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

import httpx
import pytest


@pytest.fixture
def servers(live_servers):
    return live_servers


async def post_with_retries(client, url, body, key, rng):
    """Post like a flaky network would: sometimes twice, always with the same key."""
    headers = {"Idempotency-Key": key}
    first = await client.post(url, json=body, headers=headers)
    if rng.random() < 0.3:
        again = await client.post(url, json=body, headers=headers)
        assert again.status_code == first.status_code
        if first.status_code == 200:
            assert again.json() == first.json()
    return first


async def test_exact_totals_with_retries(servers):
    rng = random.Random(1)
    name = f"conc.sum.{rng.randrange(10**9)}"
    async with httpx.AsyncClient(timeout=30) as admin:
        assert (await admin.put(f"{servers[0]}/v1/sessions/{name}",
                                json={"metric": "Sum"})).status_code == 201
    expected = 0

    async def worker(w: int) -> int:
        sent = 0
        async with httpx.AsyncClient(timeout=30) as client:
            for b in range(40):
                values = [rng.randrange(1, 100) for _ in range(5)]
                url = f"{servers[(w + b) % 2]}/v1/sessions/{name}/update"
                r = await post_with_retries(client, url, {"values": values}, f"{w}-{b}", rng)
                assert r.status_code == 200, r.text
                sent += sum(values)
        return sent

    expected = sum(await asyncio.gather(*(worker(w) for w in range(16))))
    async with httpx.AsyncClient(timeout=30) as client:
        for url in servers:
            result = (await client.get(f"{url}/v1/sessions/{name}/result")).json()
            assert result["result"] == expected


async def test_resets_under_load_never_split_or_lose_batches(servers):
    rng = random.Random(2)
    name = f"conc.epochs.{rng.randrange(10**9)}"
    async with httpx.AsyncClient(timeout=30) as admin:
        await admin.put(f"{servers[0]}/v1/sessions/{name}", json={"metric": "Sum"})
    landed: dict[int, int] = defaultdict(int)
    done = asyncio.Event()

    async def worker(w: int) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            for b in range(50):
                values = [rng.randrange(1, 1000) for _ in range(3)]
                url = f"{servers[b % 2]}/v1/sessions/{name}/update"
                r = await post_with_retries(client, url, {"values": values}, f"{w}-{b}", rng)
                assert r.status_code == 200, r.text
                landed[r.json()["epoch"]] += sum(values)

    async def resetter() -> int:
        resets = 0
        async with httpx.AsyncClient(timeout=30) as client:
            while not done.is_set():
                await asyncio.sleep(0.05)
                r = await client.post(f"{servers[resets % 2]}/v1/sessions/{name}/reset")
                assert r.status_code == 200
                resets += 1
        return resets

    reset_task = asyncio.create_task(resetter())
    await asyncio.gather(*(worker(w) for w in range(12)))
    done.set()
    resets = await reset_task
    assert resets >= 3
    async with httpx.AsyncClient(timeout=30) as client:
        history = (await client.get(f"{servers[1]}/v1/sessions/{name}/history")).json()
        current = (await client.get(f"{servers[0]}/v1/sessions/{name}/result")).json()
    per_epoch = {e["epoch"]: e["result"] for e in history["epochs"]}
    per_epoch[current["epoch"]] = current["result"]
    assert sorted(per_epoch) == list(range(resets + 1))
    for epoch, total in per_epoch.items():
        assert total == landed.get(epoch, 0), f"epoch {epoch}"


async def test_late_batches_are_refused_not_leaked(servers):
    name = "conc.late"
    async with httpx.AsyncClient(timeout=30) as client:
        await client.put(f"{servers[0]}/v1/sessions/{name}", json={"metric": "Sum"})
        await client.post(f"{servers[0]}/v1/sessions/{name}/update",
                          json={"values": [1.0], "epoch": 0})
        await client.post(f"{servers[1]}/v1/sessions/{name}/reset", json={"epoch": 0})

        async def late(i):
            return await client.post(f"{servers[i % 2]}/v1/sessions/{name}/update",
                                     json={"values": [100.0], "epoch": 0})

        answers = await asyncio.gather(*(late(i) for i in range(20)))
        assert {a.status_code for a in answers} == {409}
        assert (await client.get(f"{servers[0]}/v1/sessions/{name}/result")).json() == {
            "name": name, "epoch": 1, "result": 0.0}
