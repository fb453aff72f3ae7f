"""What slices cost: an update and a read of a sliced session against an unsliced one, on a
private redis-server, in the same run.

    python -m bench.slices [--updates 300] [--repeat 3]

* small updates (256 samples, `AUC(200)`): in-process CPU per update through the service, with
  per-sample slices over 8 values and with one `slice` for the whole batch, as ratios to the
  same batches on an unsliced session (alternating, best of `--repeat`);
* the largest sliced batch the defaults allow: `AUC(200)` with 1000 slices (1001 x 800 state
  elements, under TALLY_MAX_STATE_ELEMENTS) and a 262,144-sample batch that touches every
  slice: end-to-end time, and Redis' own time for the apply script (INFO commandstats), against
  the same batch unsliced;
* `GET .../slices` of those 1000 slices, `?slice=` of one, and reset, against one result read.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import redis

from app.metrics.registry import REGISTRY
from app.service import Sessions
from app.slicing import Slicing, per_sample
from app.store.redis import RedisStore
from tests.redis_servers import RedisProcess

CONFIG = {"num_thresholds": 200}


def batch(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {"y_true": rng.integers(0, 2, n).astype(np.float32),
            "y_pred": rng.random(n).astype(np.float32)}


async def cpu_of(work: Callable[[], Awaitable[Any]], times: int) -> float:
    """Process CPU seconds per call (the service and the store client; Redis runs apart)."""
    start = time.process_time()
    for _ in range(times):
        await work()
    return (time.process_time() - start) / times


def script_ms(client: redis.Redis) -> float:
    stats = client.info("commandstats")
    return sum(v["usec"] for k, v in stats.items() if k.startswith("cmdstat_eval")) / 1000


async def small_updates(sessions: Sessions, updates: int, repeat: int) -> list[str]:
    rng = np.random.default_rng(0)
    data = batch(rng, 256)
    eight = per_sample(rng.integers(0, 8, 256))
    whole = Slicing(whole="3")  # one of the eight
    await sessions.create("plain", "AUC", CONFIG, None)
    await sessions.create("sliced", "AUC", CONFIG, None, slices=8)
    best: dict[str, float] = {}
    for _ in range(repeat):
        for label, name, slicing in (("unsliced", "plain", None),
                                     ("per-sample, 8 values", "sliced", eight),
                                     ("whole batch", "sliced", whole)):
            cost = await cpu_of(lambda n=name, s=slicing: sessions.update(
                n, data, None, None, None, s), updates)
            best[label] = min(best.get(label, cost), cost)
    base = best["unsliced"]
    return [f"  {label:<22} {cost * 1e6:8.0f} µs CPU/update  {cost / base:5.2f}x"
            for label, cost in best.items()]


async def largest(sessions: Sessions, client: redis.Redis) -> list[str]:
    rng = np.random.default_rng(1)
    data = batch(rng, 262_144)
    labels = per_sample(rng.integers(0, 1000, 262_144))
    await sessions.create("big.plain", "AUC", CONFIG, None)
    await sessions.create("big.sliced", "AUC", CONFIG, None, slices=1000)
    out = []
    timings = {}
    for label, name, slicing in (("unsliced", "big.plain", None),
                                 ("1000 slices", "big.sliced", labels)):
        client.config_resetstat()
        start = time.perf_counter()
        await sessions.update(name, data, None, None, None, slicing)
        timings[label] = (time.perf_counter() - start, script_ms(client))
    base = timings["unsliced"][0]
    for label, (seconds, redis_ms) in timings.items():
        out.append(f"  {label:<22} {seconds * 1000:8.0f} ms end to end ({seconds / base:5.2f}x),"
                   f" Redis scripts {redis_ms:6.1f} ms")
    reads = {
        "GET result (unsliced)": lambda: sessions.result("big.plain"),
        "GET ?slice=one": lambda: sessions.result("big.sliced", None, "7"),
        "GET /slices (1000)": lambda: sessions.slices("big.sliced"),
    }
    best = {}
    for label, read in reads.items():
        start = time.perf_counter()
        for _ in range(5):
            await read()
        best[label] = (time.perf_counter() - start) / 5
    one = best["GET result (unsliced)"]
    out += [f"  {label:<22} {seconds * 1000:8.1f} ms ({seconds / one:6.1f}x one result)"
            for label, seconds in best.items()]
    start = time.perf_counter()
    await sessions.reset("big.sliced", None)
    out.append(f"  reset of 1000 slices   {(time.perf_counter() - start) * 1000:8.0f} ms "
               "(the closed epoch's 1000 results computed and kept in the history)")
    return out


async def main(updates: int, repeat: int) -> None:
    server = RedisProcess().start()
    try:
        store = RedisStore.from_url(server.url)
        sessions = Sessions(store, REGISTRY)
        print("Small updates, AUC(200), 256 samples, Redis:")
        print("\n".join(await small_updates(sessions, updates, repeat)))
        print("The largest sliced batch (AUC(200), 1000 slices, 262,144 samples):")
        print("\n".join(await largest(sessions, redis.Redis.from_url(server.url))))
        await store.close()
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    asyncio.run(main(options.updates, options.repeat))
