"""Every error answer is an RFC 9457 problem document, produced here and nowhere else."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.responses import JSON
from app.errors import TallyError

log = logging.getLogger("tally")
PROBLEM = "application/problem+json"
STATUSES = {s.value for s in HTTPStatus}


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


async def http_error(request: Request, exc: Exception) -> JSON:
    """Starlette's own errors (no route, wrong method), keeping their headers: a 405 carries
    `Allow`, the methods the path answers."""
    assert isinstance(exc, StarletteHTTPException)
    title = HTTPStatus(exc.status_code).phrase if exc.status_code in STATUSES else "Error"
    detail = str(exc.detail)
    allowed = (exc.headers or {}).get("Allow")
    if exc.status_code == 405 and allowed:
        detail = f"this path answers {allowed}; got {request.method}"
    return problem(exc.status_code, title, detail, headers=dict(exc.headers or {}))


async def unexpected_error(_: Request, exc: Exception) -> JSON:
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "Internal Server Error", f"an unexpected error occurred: "
                   f"{type(exc).__name__}")


def install(app: FastAPI) -> None:
    app.add_exception_handler(TallyError, tally_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)
