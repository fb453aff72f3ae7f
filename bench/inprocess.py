"""CPU time per request of the two hot routes, in process: the ASGI app called directly (no
HTTP server, no client), so the figure is Tally's own work per request.

    python -m bench.inprocess                  # memory and Redis, update and GET result
    python -m bench.inprocess --profile redis  # also cProfile the concurrent Redis updates

The bare endpoints (bench/bare_app.py) are measured first, the same way, and each figure is
also given as a ratio to them (more CPU per request: higher).

Each figure: a 32-sample JSON `Precision` update (or a GET of its result), 32 requests in
flight at once (as wrk -c32 sends them, so Redis group commit and read coalescing work), the
best of 3 timings of 32 x 150 requests; CPU time of this process (`time.process_time`), which
on Redis excludes the Redis server's own. Not a rate: ratios to the bare endpoints are
bench.run_all's job.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "numpy")

from app.api.app import create_app  # noqa: E402
from app.settings import Settings  # noqa: E402
from bench.bare_app import app as bare_app  # noqa: E402
from bench.bodies import json_body  # noqa: E402
from tests.redis_servers import RedisProcess  # noqa: E402

CONCURRENT = 32
PER_WORKER = 150
BODY = json_body(32)
Call = Callable[[], Awaitable[None]]


async def asgi_call(app: Any, method: str, path: str, body: bytes = b"") -> None:
    """One request through the app's ASGI interface; raises on a status >= 300."""
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:  # the app asks again only to notice a disconnect: never comes
            await asyncio.Event().wait()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80), "state": {},
             "headers": [(b"host", b"bench"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())]}
    await app(scope, receive, send)
    if sent[0]["status"] >= 300:
        raise RuntimeError(f"{method} {path}: {sent[0]['status']} {sent[1]['body'][:300]!r}")


@asynccontextmanager
async def tally(store: str) -> AsyncIterator[Any]:
    """The app with a Precision session `p` (memory store, or a private redis-server)."""
    redis = RedisProcess().start() if store == "redis" else None
    try:
        settings = Settings(redis_url=redis.url) if redis else Settings()
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            await asgi_call(app, "PUT", "/v1/sessions/p", b'{"metric": "Precision"}')
            yield app
    finally:
        if redis is not None:
            redis.stop()


async def concurrently(call: Call, per_worker: int) -> None:
    async def worker() -> None:
        for _ in range(per_worker):
            await call()

    await asyncio.gather(*(worker() for _ in range(CONCURRENT)))


async def cpu_per_request(call: Call) -> float:
    """Microseconds of this process' CPU per request, best of 3, after a warm-up."""
    await concurrently(call, 20)
    best = float("inf")
    for _ in range(3):
        began = time.process_time()
        await concurrently(call, PER_WORKER)
        best = min(best, (time.process_time() - began) / (CONCURRENT * PER_WORKER))
    return best * 1e6


def hot_routes(app: Any) -> dict[str, Call]:
    return {"POST update": lambda: asgi_call(app, "POST", "/v1/sessions/p/update", BODY),
            "GET result": lambda: asgi_call(app, "GET", "/v1/sessions/p/result")}


async def measure_bare() -> dict[str, float]:
    """The bare endpoints (bench/bare_app.py) the same way: the baseline of this run."""
    figures = {}
    for label, call in hot_routes(bare_app).items():
        figures[label] = await cpu_per_request(call)
        print(f"{label:12} {'bare':6} {figures[label]:6.0f} us CPU/request", flush=True)
    return figures


async def measure(store: str, profile: bool, bare: dict[str, float]) -> None:
    async with tally(store) as app:
        routes = hot_routes(app)
        for label, call in routes.items():
            cpu = await cpu_per_request(call)
            print(f"{label:12} {store:6} {cpu:6.0f} us CPU/request, {cpu / bare[label]:.2f}x "
                  "the bare endpoint's", flush=True)
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            await concurrently(routes["POST update"], 50)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(40)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stores", nargs="*", help="memory and/or redis (default: both)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the concurrent updates (sorted by own time)")
    args = parser.parse_args()
    unknown = set(args.stores) - {"memory", "redis"}
    if unknown:
        parser.error(f"unknown stores {sorted(unknown)}: memory, redis")
    bare = asyncio.run(measure_bare())
    for store in args.stores or ["memory", "redis"]:
        asyncio.run(measure(store, args.profile, bare))


if __name__ == "__main__":
    main()
