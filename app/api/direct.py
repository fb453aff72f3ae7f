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
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.problems import tally_error, unexpected_error
from app.errors import TallyError

if TYPE_CHECKING:
    from app.api.prometheus import RequestMetrics

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


class _Hot(NamedTuple):
    """A route answered by `DirectDispatch`: its path is `prefix` + a name + `suffix`."""

    method: str
    prefix: str
    suffix: str
    route: APIRoute
    binder: Binder


def _hot_routes(routes: list[BaseRoute]) -> list[_Hot]:
    """The routes whose endpoints carry a binder and whose path has one `{name}` segment."""
    hot: list[_Hot] = []
    for route in routes:
        binder = getattr(getattr(route, "endpoint", None), "direct_binder", None)
        if not isinstance(route, APIRoute) or binder is None or route.path.count("{") != 1:
            continue
        prefix, _, suffix = route.path.partition("{name}")
        hot.extend(_Hot(method, prefix, suffix, route, binder) for method in route.methods or ())
    return hot


class DirectDispatch:
    """Answers the hot routes straight from the ASGI call, in front of FastAPI's middleware
    stack and router: in process, that machinery costs a small update more than the bare
    endpoint's whole work. A matched request gets what the router would have given it
    (`route` and `path_params` in the scope), its endpoint is called through its binder,
    and it is counted in the request metrics (`RequestMetrics`, by route template) just before
    its answer is handed to the server, as `HttpMetricsMiddleware` counts the others.

    Errors are answered as the stack would answer them: a `TallyError` becomes its problem
    document; any other exception the same 500 problem document as the server error
    middleware sends, counted as a 500, and then raised on to the server, which logs it.
    Everything else goes on to the stack. A deployment under a `root_path` takes the routed
    path (the routes' own `DirectRoute` handler does the same binding there)."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute], metrics: RequestMetrics) -> None:
        self.app = app
        self._routes = routes
        self._metrics = metrics
        self._hot: list[_Hot] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = self._match(scope) if scope["type"] == "http" else None
        if hot is None:
            await self.app(scope, receive, send)
            return
        route, name = hot
        scope["route"] = route.route
        scope["path_params"] = {"name": name}
        request = Request(scope, receive, send)
        status = 500  # what a request that never gets an answer (cancelled) is counted as
        started = self._metrics.started()
        try:
            response, failure = await self._answer(route, request)
            status = response.status_code
        finally:
            self._metrics.finished(scope, status, started)
        await response(scope, receive, send)
        if failure is not None:
            raise failure

    @staticmethod
    async def _answer(route: _Hot, request: Request) -> tuple[Response, Exception | None]:
        """The endpoint's response, or the problem document of its error (and the error, when
        it is unexpected: the server must still see it)."""
        try:
            response: Response = await route.route.endpoint(**await route.binder(request))
        except TallyError as exc:
            return await tally_error(request, exc), None
        except Exception as exc:  # noqa: BLE001 - answered like the server error middleware
            return await unexpected_error(request, exc), exc
        return response, None

    def _match(self, scope: Scope) -> tuple[_Hot, str] | None:
        if self._hot is None:  # the routes are all included by the first request
            self._hot = _hot_routes(self._routes)
        if scope.get("root_path"):
            return None
        method, path = scope["method"], scope["path"]
        for hot in self._hot:
            if method == hot.method and path.startswith(hot.prefix) \
                    and path.endswith(hot.suffix):
                name = path[len(hot.prefix):len(path) - len(hot.suffix)]
                if name and "/" not in name:
                    return hot, name
        return None
