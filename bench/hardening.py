"""The largest state the default limits allow, and liveness while large updates run.

    python -m bench.hardening

Starts Tally (one uvicorn worker, uvloop + httptools) on a private redis-server and measures,
with a baseline from the same run (`GET /healthz` on the same server, idle):

1. A `MeanIoU(num_classes=2048)` session (4,194,304 state elements, the default
   TALLY_MAX_STATE_ELEMENTS) with every cell touched: the time of `GET .../result`,
   `GET .../variables`, `POST .../reset` and `DELETE`, and the Redis bytes of its state
   (MEMORY USAGE of every key of the session). `python -m bench.run_all --only largest`
   reports the same measurement in its table.
2. `/healthz` latency (median and max of probes every 20 ms) while clients post 1,000,000-sample
   `.npz` updates (AUC(200)) back to back, against the idle latency.

Only ratios within one run mean anything on a shared machine.
"""

from __future__ import annotations

import io
import statistics
import threading
import time
from dataclasses import dataclass

import httpx
import numpy as np

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


@dataclass
class LargestState:
    """What reading, resetting and deleting the largest allowed state costs."""

    elements: int
    redis_bytes: int
    healthz_seconds: float  # the baseline: median idle GET /healthz on the same server
    seconds: dict[str, float]  # "GET result", "GET variables", "POST reset", "DELETE"


def fill_largest_state(c: httpx.Client, n: int) -> None:
    """A `MeanIoU(num_classes=n)` session named `big` with every confusion cell touched."""
    assert c.put("/v1/sessions/big", json={
        "metric": "MeanIoU", "config": {"num_classes": n}}).status_code == 201
    rng = np.random.default_rng(0)
    cells = np.arange(n * n)
    for chunk in np.array_split(rng.permutation(cells), 4):  # every cell, 4 batches
        body = npz(y_true=(chunk // n).astype(np.int32), y_pred=(chunk % n).astype(np.int32))
        r = c.post("/v1/sessions/big/update", content=body,
                   headers={"Content-Type": "application/x-npz"})
        assert r.status_code == 200, r.text


def measure_largest_state(url: str, redis: RedisProcess, n: int = 2048) -> LargestState:
    with httpx.Client(base_url=url, timeout=120) as c:
        fill_largest_state(c, n)
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
    return LargestState(n * n, stored, base, seconds)


def largest_state(url: str, redis: RedisProcess) -> None:
    state = measure_largest_state(url, redis)
    print(f"MeanIoU(2048): {state.elements} state elements, {state.redis_bytes} bytes of Redis "
          f"state ({state.redis_bytes / (state.elements * 8):.2f}x the float64 values); "
          f"baseline GET /healthz {state.healthz_seconds * 1000:.2f} ms")
    for what, seconds in state.seconds.items():
        print(f"  {what:14s} {seconds * 1000:8.1f} ms  "
              f"({seconds / state.healthz_seconds:7.0f}x healthz)")


def liveness_under_load(url: str) -> None:
    samples = 1_000_000
    rng = np.random.default_rng(1)
    body = npz(y_true=rng.integers(0, 2, samples).astype(np.float32),
               y_pred=rng.random(samples).astype(np.float32))
    with httpx.Client(timeout=120) as c:
        c.put(url + "/v1/sessions/auc", json={"metric": "AUC"})
    idle = healthz_latencies(url, 2.0)
    stop, done = threading.Event(), []

    def post_updates() -> None:
        with httpx.Client(timeout=120) as c:
            while not stop.is_set():
                r = c.post(url + "/v1/sessions/auc/update", content=body,
                           headers={"Content-Type": "application/x-npz"})
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
    print(f"/healthz while 2 clients post {samples:,}-sample AUC .npz updates "
          f"({len(done)} updates in ~6.5 s):")
    for what, xs in (("idle", idle), ("busy", busy)):
        print(f"  {what}: median {statistics.median(xs) * 1000:6.2f} ms, "
              f"max {max(xs) * 1000:7.2f} ms over {len(xs)} probes")


def main() -> None:
    with private_redis() as redis, serving("tally", "app.main:app",
                                           {"TALLY_REDIS_URL": redis.url}) as server:
        largest_state(server.url, redis)
        liveness_under_load(server.url)


if __name__ == "__main__":
    main()
