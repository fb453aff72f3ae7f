"""Hot routes without FastAPI's generic parameter solver.

FastAPI resolves an endpoint's parameters (path, query, headers, dependencies) through a
general solver that costs more per request than the rest of a small-batch update. A
`DirectRoute` is still a FastAPI route, routed, documented in OpenAPI from the endpoint's
signature and answered through the same exception handlers; only the binding differs: a
small function written for that endpoint (`@bind(...)`) reads what the endpoint needs from
the request, with the same validation and errors, and calls it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

Binder = Callable[[Request], Awaitable[dict[str, Any]]]
F = TypeVar("F", bound=Callable[..., Any])


def bind(binder: Binder) -> Callable[[F], F]:
    """Attach the function that binds this endpoint's arguments from a request."""

    def attach(endpoint: F) -> F:
        endpoint.direct_binder = binder  # type: ignore[attr-defined]
        return endpoint

    return attach


class DirectRoute(APIRoute):
    """Calls endpoints that carry a binder directly; others as FastAPI does."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        binder: Binder | None = getattr(self.endpoint, "direct_binder", None)
        if binder is None:
            return super().get_route_handler()
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            response: Response = await endpoint(**await binder(request))
            return response

        return handler
