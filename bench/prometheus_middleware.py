"""What the request-counting middleware of `GET /metrics` adds to each request.

    python -m bench.prometheus_middleware [--requests 100000]
    PROMETHEUS_MULTIPROC_DIR=$(mktemp -d) python -m bench.prometheus_middleware

Calls a trivial ASGI endpoint directly (no server, no network, no FastAPI), with and without
`HttpMetricsMiddleware`, and prints the best of 5 runs of each: the difference is the
middleware's own cost per request. The first form measures the one-process mode (in-memory
values), the second the multi-process mode of several uvicorn workers (memory-mapped files).
Machines are shared and noisy: compare numbers of one run only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

from app.api.prometheus import HttpMetricsMiddleware, request_metrics


class UpdateRoute:
    path_format = "/v1/sessions/{name}/update"


async def endpoint(scope: dict[str, Any], receive: Any, send: Any) -> None:
    scope["route"] = UpdateRoute  # what the router does
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: dict[str, Any]) -> None:
    return None


async def seconds_per_request(app: Any, requests: int) -> float:
    scope = {"type": "http", "method": "POST", "path": "/v1/sessions/run1.auc/update"}
    start = time.perf_counter()
    for _ in range(requests):
        await app(dict(scope), receive, send)
    return (time.perf_counter() - start) / requests


async def measure(requests: int) -> tuple[float, float]:
    counted = HttpMetricsMiddleware(endpoint, request_metrics())
    await seconds_per_request(counted, 1000)  # label children made, files mapped
    bare, with_middleware = [], []
    for _ in range(5):
        bare.append(await seconds_per_request(endpoint, requests))
        with_middleware.append(await seconds_per_request(counted, requests))
    return min(bare), min(with_middleware)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    args = parser.parse_args()
    bare, counted = asyncio.run(measure(args.requests))
    mode = "multi-process" if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else "one-process"
    print(f"{mode} mode: bare {bare * 1e6:.2f} us, with the middleware {counted * 1e6:.2f} us: "
          f"{(counted - bare) * 1e6:.2f} us per request (best of 5 x {args.requests})")


if __name__ == "__main__":
    main()
