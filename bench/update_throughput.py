"""Update throughput of Tally against a bare HTTP endpoint measured in the same run.

    python -m bench.update_throughput [--requests 3000] [--concurrency 32] [--batch 64]

Starts, on free local ports: the bare baseline app, Tally on the in-memory store, and Tally on
a private redis-server; posts the same batches to each with a bounded number of requests, and
prints requests/s and the ratio to the baseline. Machines are shared and noisy: only the
ratios measured in one run are meaningful. Each server gets one uvicorn worker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

import httpx
import numpy as np

from tests.redis_servers import RedisProcess, free_port


def start(module: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", module, "--port", str(port), "--log-level", "warning",
         "--no-access-log"],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(url + "/healthz", timeout=1)
            return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{module} did not start")


async def hammer(url: str, bodies: list[bytes], concurrency: int) -> float:
    """Post every body once with `concurrency` clients; return requests per second."""
    queue = list(reversed(bodies))
    headers = {"Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        await client.put("/v1/sessions/bench", json={"metric": "Precision",
                                                     "config": {"thresholds": [0.3, 0.5, 0.7]}})

        async def worker() -> None:
            while queue:
                body = queue.pop()
                r = await client.post("/v1/sessions/bench/update", content=body,
                                      headers=headers)
                assert r.status_code == 200, r.text

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(bodies) / (time.perf_counter() - began)


def make_bodies(count: int, batch: int) -> list[bytes]:
    import orjson
    rng = np.random.default_rng(0)
    return [orjson.dumps({"y_true": rng.integers(0, 2, batch).tolist(),
                          "y_pred": rng.uniform(size=batch).round(4).tolist()})
            for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    bodies = make_bodies(args.requests, args.batch)
    redis_server = RedisProcess().start()
    targets = {
        "bare endpoint (baseline)": ("bench.bare_app:app", {}),
        "tally, memory store": ("app.main:app", {}),
        "tally, redis store": ("app.main:app", {"TALLY_REDIS_URL": redis_server.url}),
    }
    results: dict[str, float] = {}
    try:
        for label, (module, env) in targets.items():
            process, url = start(module, env)
            try:
                asyncio.run(hammer(url, bodies[:200], args.concurrency))  # warm-up
                results[label] = asyncio.run(hammer(url, bodies, args.concurrency))
            finally:
                process.terminate()
                process.wait()
    finally:
        redis_server.stop()
    baseline = results["bare endpoint (baseline)"]
    print(f"{args.requests} updates of {args.batch} samples, {args.concurrency} concurrent "
          "clients, 1 uvicorn worker each")
    for label, rate in results.items():
        print(f"{label:28s} {rate:9.0f} req/s   ratio {rate / baseline:5.2f}")


if __name__ == "__main__":
    main()
