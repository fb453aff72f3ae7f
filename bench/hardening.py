"""The largest state the default limits allow, and liveness while large updates run.

    python -m bench.hardening

Starts Tally (one uvicorn worker) on a private redis-server and measures, with a baseline
from the same run (`GET /healthz` on the same server, idle):

1. A `MeanIoU(num_classes=2048)` session (4,194,304 state elements, the default
   TALLY_MAX_STATE_ELEMENTS) with every cell touched: the time of `GET .../result`,
   `GET .../variables`, `POST .../reset` and `DELETE`, and the Redis bytes of its state.
2. `/healthz` latency (median and max of probes every 20 ms) while clients post 1,000,000-sample
   updates (AUC(200)) back to back, as `.npz` and as JSON, against the idle latency.

Only ratios within one run mean anything on a shared machine.
"""

from __future__ import annotations

import io
import statistics
import threading
import time

import httpx
import numpy as np
import orjson

from bench.update_throughput import start
from tests.redis_servers import RedisProcess


def npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def timed(call) -> tuple[float, httpx.Response]:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    r = call()
    return time.perf_counter() - t0, r


def redis_cpu(redis: RedisProcess) -> float:
    """Seconds of CPU the Redis server has used (user + system)."""
    info = redis.client().info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def healthz_latencies(url: str, seconds: float) -> list[float]:
    out, deadline = [], time.monotonic() + seconds
    with httpx.Client(timeout=30) as c:
        while time.monotonic() < deadline:
            out.append(timed(lambda: c.get(url + "/healthz"))[0])
            time.sleep(0.02)
    return out


def largest_state(url: str, redis: RedisProcess) -> None:
    n = 2048
    with httpx.Client(timeout=120) as c:
        assert c.put(url + "/v1/sessions/big", json={
            "metric": "MeanIoU", "config": {"num_classes": n}}).status_code == 201
        rng = np.random.default_rng(0)
        cells = np.arange(n * n)
        worst = []
        cpu_before = redis_cpu(redis)
        for chunk in np.array_split(rng.permutation(cells), 4):  # every cell, 4 batches
            body = npz(y_true=(chunk // n).astype(np.int32), y_pred=(chunk % n).astype(np.int32))
            seconds, r = timed(lambda b=body: c.post(  # type: ignore[misc]
                url + "/v1/sessions/big/update", content=b,
                headers={"Content-Type": "application/x-npz"}))
            assert r.status_code == 200, r.text
            worst.append(seconds)
        base = statistics.median(timed(lambda: c.get(url + "/healthz"))[0] for _ in range(20))
        stored = redis.client().strlen("tally:{big}:state")
        rows = [("GET result", lambda: c.get(url + "/v1/sessions/big/result")),
                ("GET variables", lambda: c.get(url + "/v1/sessions/big/variables")),
                ("POST reset", lambda: c.post(url + "/v1/sessions/big/reset")),
                ("DELETE", lambda: c.delete(url + "/v1/sessions/big"))]
        print(f"MeanIoU({n}): {n * n} state elements, {stored} bytes of Redis state "
              f"({stored / (n * n * 8):.2f}x the float64 values); baseline GET /healthz "
              f"{base * 1000:.2f} ms")
        redis_seconds = redis_cpu(redis) - cpu_before
        print(f"  update of {n * n // 4:,} scattered cells (the worst batch the limits allow): "
              f"{min(worst) * 1000:.0f}-{max(worst) * 1000:.0f} ms end to end, Redis CPU "
              f"{redis_seconds / len(worst) * 1000:.0f} ms per update")
        for what, call in rows:
            seconds, r = timed(call)
            assert r.status_code in (200, 204), r.text
            print(f"  {what:14s} {seconds * 1000:8.1f} ms  ({seconds / base:7.0f}x healthz)")


def liveness_under_load(url: str, encoding: str) -> None:
    samples = 1_000_000
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
    redis = RedisProcess().start()
    # A timeout long enough for the worst update on a loaded machine: it is what we measure.
    process, url = start("app.main:app", {"TALLY_REDIS_URL": redis.url,
                                          "TALLY_REDIS_TIMEOUT_SECONDS": "30"})
    try:
        largest_state(url, redis)
        liveness_under_load(url, "npz")
        liveness_under_load(url, "json")
    finally:
        process.terminate()
        process.wait()
        redis.stop()


if __name__ == "__main__":
    main()
