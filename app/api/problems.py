"""Every error answer is an RFC 9457 problem document, produced here and nowhere else."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.api.responses import JSON
from app.errors import TallyError

log = logging.getLogger("tally")
PROBLEM = "application/problem+json"
STATUSES = {s.value for s in HTTPStatus}
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
SESSIONS_PATH = "/v1/sessions/"
NAME_RULE = ("a session name is 1-200 characters of letters, digits and . _ : - starting with "
             "a letter or digit, so it cannot hold '/'; use dots for hierarchy")


#: When each error status is answered (the OpenAPI description of the status).
WHEN = {
    400: "The body is not JSON, or a field cannot be decoded into a numeric array at all.",
    401: "Tokens are configured and the request has no valid `Authorization: Bearer` token.",
    403: "The token lacks the scope this route needs, or the session-name prefix.",
    404: "No such session, or no such metric class.",
    409: "The session exists with another config, or the epoch precondition does not match "
         "(`current_epoch` says the session's epoch).",
    413: "The body, or the batch, is larger than the configured limit.",
    415: "The Content-Type is not one this route reads.",
    422: "Well-formed but invalid: fields, config, shapes, values, `Idempotency-Key`.",
    503: "The store is unreachable: nothing was applied. Retry.",
    504: "The store did not answer in time after the request was sent: it may or may not have "
         "been applied. Retry with the same `Idempotency-Key`.",
    507: "The store is out of memory: nothing was applied.",
}
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
HEADER_DOCS = {
    401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route that answers these error statuses, as problem documents."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        documented[status] = {"description": WHEN[status],
                              "content": {PROBLEM: {"schema": PROBLEM_REF}}}
        if status in HEADER_DOCS:
            documented[status]["headers"] = HEADER_DOCS[status]
    return documented


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None,
            **extra: Any) -> JSON:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return JSON(body, status_code=status, media_type=PROBLEM, headers=headers)


async def tally_error(_: Request, exc: Exception) -> JSON:
    assert isinstance(exc, TallyError)
    if exc.status >= 500:
        log.warning("%s: %s", exc.title, exc.detail)
    extra = {"current_epoch": exc.current} if hasattr(exc, "current") else {}
    return problem(exc.status, exc.title, exc.detail, **extra)


async def validation_error(_: Request, exc: Exception) -> JSON:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg')} (got {error.get('input')!r:.100})")
    return problem(422, "Unprocessable Content", "; ".join(parts))


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers on this path. Starlette's 405 names only the methods
    of the first route whose path matched, and FastAPI makes one route per method; so each
    method is tried against the router."""
    return [method for method in HTTP_METHODS
            if any(route.matches({**request.scope, "method": method})[0] == Match.FULL
                   for route in request.app.router.routes)]


def session_subpaths(app: FastAPI) -> list[str]:
    """What follows `/v1/sessions/{name}/` in the app's documented paths (`result`, ...)."""
    prefix = SESSIONS_PATH + "{name}/"
    return sorted(path[len(prefix):] for path in app.openapi().get("paths", {})
                  if path.startswith(prefix))


def no_route_detail(request: Request) -> str:
    """Why a path matches no route. Under /v1/sessions/ the usual cause is a name with '/' in
    it (a TensorBoard-style `run1/val`), so the detail says what a name may hold, with the
    dotted form of the path, and which routes a session has."""
    path = request.url.path
    shown = path if len(path) <= 240 else path[:237] + "..."
    if not path.startswith(SESSIONS_PATH):
        return f"no route matches {shown}; GET /docs lists every route"
    subpaths = session_subpaths(request.app)
    segments = [s for s in path[len(SESSIONS_PATH):].split("/") if s]
    action = segments.pop() if len(segments) > 1 and segments[-1] in subpaths else None
    detail = f"no route matches {shown}: {NAME_RULE}"
    if len(segments) > 1:
        dotted = SESSIONS_PATH + ".".join(segments) + (f"/{action}" if action else "")
        detail += f" ({dotted[:240]})"
    return (f"{detail}. A session's routes are {SESSIONS_PATH}{{name}} and "
            f"{SESSIONS_PATH}{{name}}/{{{', '.join(subpaths)}}}")


async def http_error(request: Request, exc: Exception) -> JSON:
    """Starlette's own errors (no route, wrong method), keeping their headers; a 405's `Allow`
    lists every method the path answers, a 404 for a path no route matches says why."""
    assert isinstance(exc, StarletteHTTPException)
    title = HTTPStatus(exc.status_code).phrase if exc.status_code in STATUSES else "Error"
    detail = str(exc.detail)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request)) or headers.get("Allow", "")
        detail = f"this path answers {headers['Allow']}; got {request.method}"
    elif exc.status_code == 404 and not allowed_methods(request):
        detail = no_route_detail(request)
    return problem(exc.status_code, title, detail, headers=headers)


async def unexpected_error(_: Request, exc: Exception) -> JSON:
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "Internal Server Error", f"an unexpected error occurred: "
                   f"{type(exc).__name__}")


def install(app: FastAPI) -> None:
    app.add_exception_handler(TallyError, tally_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)
