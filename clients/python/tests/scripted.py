"""An httpx transport that answers from a script and records what it was sent."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

Step = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def problem(status: int, detail: str = "it went wrong", **extra: Any) -> httpx.Response:
    body = {"type": "about:blank", "title": f"title {status}", "status": status,
            "detail": detail, **extra}
    return httpx.Response(status, content=json.dumps(body).encode(),
                          headers={"Content-Type": "application/problem+json"})


def ok(body: Any = None, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json={"epoch": 0, "samples": 1} if body is None else body)


class Scripted:
    """Answers the i-th request with the i-th step (a response, an exception to raise, or a
    function of the request); after the script, repeats its last step."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        step = self.steps[min(len(self.requests), len(self.steps)) - 1]
        if isinstance(step, Exception):
            if isinstance(step, httpx.RequestError):
                raise type(step)(str(step), request=request)
            raise step
        if isinstance(step, httpx.Response):  # a fresh copy: a response is read once
            return httpx.Response(step.status_code, headers=step.headers, content=step.read())
        return step(request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def keys(self) -> list[str | None]:
        return [r.headers.get("Idempotency-Key") for r in self.requests]
