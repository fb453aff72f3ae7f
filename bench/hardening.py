"""The largest state the default limits allow, and liveness while large updates run.

    python -m bench.hardening

Starts Tally (one uvicorn worker, uvloop + httptools) on a private redis-server and measures,
with a baseline from the same run (`GET /healthz` on the same server, idle):

1. The largest state the default TALLY_MAX_STATE_ELEMENTS allows (`MeanIoU(1024)`,
   1,048,576 elements) filled by the largest scattered batches TALLY_MAX_BATCH_ELEMENTS allows:
   each update's time end to end and Redis' CPU for it (Redis runs one script at a time, so
   that is what every other client waits for); then the time of `GET .../result`,
   `GET .../variables`, `POST .../reset` and `DELETE`, and the Redis bytes of the state
   (MEMORY USAGE of every key of the session). `python -m bench.run_all --only largest`
   reports the same measurement in its table.
2. `/healthz` latency (median and max of probes every 20 ms) while two clients post the
   largest AUC batch the defaults allow back to back, as `.npz` and as JSON, against the idle
   latency.

Only ratios within one run mean anything on a shared machine.
"""

from __future__ import annotations

import io
import math
import statistics
import threading
import time
from dataclasses import dataclass

import httpx
import numpy as np
import orjson

from app.settings import Settings
from bench.servers import private_redis, serving
from tests.redis_servers import RedisProcess


def npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def timed(call) -> tuple[float, httpx.Response]:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    r = call()
    return time.perf_counter() - t0, r


def healthz_latencies(url: str, seconds: float) -> list[float]:
    out, deadline = [], time.monotonic() + seconds
    with httpx.Client(timeout=30) as c:
        while time.monotonic() < deadline:
            out.append(timed(lambda: c.get(url + "/healthz"))[0])
            time.sleep(0.02)
    return out


def redis_cpu(redis: RedisProcess) -> float:
    """Seconds of CPU the Redis server has used (user + system)."""
    info = redis.client().info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


@dataclass
class LargestState:
    """What filling, reading, resetting and deleting the largest allowed state costs."""

    classes: int
    elements: int
    redis_bytes: int
    healthz_seconds: float  # the baseline: median idle GET /healthz on the same server
    update_seconds: list[float]  # each filling update, end to end
    redis_cpu_per_update: float  # seconds of Redis CPU per filling update
    seconds: dict[str, float]  # "GET result", "GET variables", "POST reset", "DELETE"


def default_classes() -> int:
    """The most `MeanIoU` classes the default state limit allows."""
    return math.isqrt(Settings().max_state_elements)


def fill_largest_state(c: httpx.Client, redis: RedisProcess, n: int
                       ) -> tuple[list[float], float]:
    """A `MeanIoU(num_classes=n)` session named `big` with every confusion cell touched, by
    scattered batches as large as the default batch limit allows; each update's time and the
    Redis CPU per update."""
    assert c.put("/v1/sessions/big", json={
        "metric": "MeanIoU", "config": {"num_classes": n}}).status_code == 201
    rng = np.random.default_rng(0)
    cells = rng.permutation(n * n)
    pairs = Settings().max_batch_elements // 2
    times, cpu_before = [], redis_cpu(redis)
    for chunk in np.array_split(cells, math.ceil(cells.size / pairs)):
        body = npz(y_true=(chunk // n).astype(np.int32), y_pred=(chunk % n).astype(np.int32))
        seconds, r = timed(lambda b=body: c.post(  # type: ignore[misc]
            "/v1/sessions/big/update", content=b, headers={"Content-Type": "application/x-npz"}))
        assert r.status_code == 200, r.text
        times.append(seconds)
    return times, (redis_cpu(redis) - cpu_before) / len(times)


def measure_largest_state(url: str, redis: RedisProcess, n: int | None = None) -> LargestState:
    n = n or default_classes()
    with httpx.Client(base_url=url, timeout=120) as c:
        update_seconds, redis_per_update = fill_largest_state(c, redis, n)
        base = statistics.median(timed(lambda: c.get("/healthz"))[0] for _ in range(20))
        stored = sum(int(redis.client().memory_usage(key, samples=0) or 0)
                     for key in redis.client().scan_iter(match="tally:{big}:*"))
        calls = {"GET result": lambda: c.get("/v1/sessions/big/result"),
                 "GET variables": lambda: c.get("/v1/sessions/big/variables"),
                 "POST reset": lambda: c.post("/v1/sessions/big/reset"),
                 "DELETE": lambda: c.delete("/v1/sessions/big")}
        seconds = {}
        for what, call in calls.items():
            seconds[what], r = timed(call)
            assert r.status_code in (200, 204), r.text
    return LargestState(n, n * n, stored, base, update_seconds, redis_per_update, seconds)


def largest_state(url: str, redis: RedisProcess) -> None:
    state = measure_largest_state(url, redis)
    print(f"MeanIoU({state.classes}): {state.elements:,} state elements, {state.redis_bytes:,} "
          f"bytes in Redis ({state.redis_bytes / (state.elements * 8):.2f}x the float64 "
          f"values); baseline GET /healthz {state.healthz_seconds * 1000:.2f} ms")
    print(f"  each scattered update of {Settings().max_batch_elements // 2:,} pairs: "
          f"{min(state.update_seconds) * 1000:.0f}-{max(state.update_seconds) * 1000:.0f} ms "
          f"end to end, Redis CPU {state.redis_cpu_per_update * 1000:.0f} ms")
    for what, seconds in state.seconds.items():
        print(f"  {what:14s} {seconds * 1000:8.1f} ms  "
              f"({seconds / state.healthz_seconds:7.0f}x healthz)")


def liveness_under_load(url: str, encoding: str) -> None:
    samples = Settings().max_batch_elements // 2
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 2, samples).astype(np.float32)
    y_pred = rng.random(samples).astype(np.float32)
    if encoding == "npz":
        body, kind = npz(y_true=y_true, y_pred=y_pred), "application/x-npz"
    else:
        body = orjson.dumps({"y_true": y_true.tolist(), "y_pred": y_pred.round(5).tolist()})
        kind = "application/json"
    with httpx.Client(timeout=120) as c:
        c.put(url + "/v1/sessions/auc", json={"metric": "AUC"})
    idle = healthz_latencies(url, 2.0)
    stop, done = threading.Event(), []

    def post_updates() -> None:
        with httpx.Client(timeout=120) as c:
            while not stop.is_set():
                r = c.post(url + "/v1/sessions/auc/update", content=body,
                           headers={"Content-Type": kind})
                assert r.status_code == 200, r.text
                done.append(1)

    workers = [threading.Thread(target=post_updates) for _ in range(2)]
    for w in workers:
        w.start()
    time.sleep(0.5)
    busy = healthz_latencies(url, 6.0)
    stop.set()
    for w in workers:
        w.join()
    print(f"/healthz while 2 clients post {samples:,}-sample AUC {encoding} updates "
          f"({len(body) / 1e6:.1f} MB each; {len(done)} updates in ~6.5 s):")
    for what, xs in (("idle", idle), ("busy", busy)):
        print(f"  {what}: median {statistics.median(xs) * 1000:6.2f} ms, "
              f"max {max(xs) * 1000:7.2f} ms over {len(xs)} probes")


def main() -> None:
    # A store timeout long enough for the largest updates on a loaded machine: their cost is
    # what we measure, not a 504.
    env = {"TALLY_REDIS_TIMEOUT_SECONDS": "30"}
    with private_redis() as redis, serving("tally", "app.main:app",
                                           {"TALLY_REDIS_URL": redis.url, **env}) as server:
        largest_state(server.url, redis)
        liveness_under_load(server.url, "npz")
        liveness_under_load(server.url, "json")


if __name__ == "__main__":
    main()
