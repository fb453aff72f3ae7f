"""Every error answer is an RFC 9457 problem document, produced here and nowhere else."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.responses import JSON
from app.errors import TallyError

log = logging.getLogger("tally")
PROBLEM = "application/problem+json"


def problem(status: int, title: str, detail: str, **extra: Any) -> JSON:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
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


async def http_error(_: Request, exc: Exception) -> JSON:
    assert isinstance(exc, StarletteHTTPException)
    titles = {404: "Not Found", 405: "Method Not Allowed"}
    return problem(exc.status_code, titles.get(exc.status_code, "Error"), str(exc.detail))


async def unexpected_error(_: Request, exc: Exception) -> JSON:
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "Internal Server Error", f"an unexpected error occurred: "
                   f"{type(exc).__name__}")


def install(app: FastAPI) -> None:
    app.add_exception_handler(TallyError, tally_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)
