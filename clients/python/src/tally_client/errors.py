"""The client's exceptions, mapped from the service's problem+json answers in one place.

Every error a call can meet is a `TallyError`. HTTP answers carry `status`, `title`, `detail`
and the whole problem document as `body`; failures to talk to the service at all are
`ConnectionFailed` (status `None`), wrapping the httpx exception as `__cause__`.
"""

from __future__ import annotations

from typing import Any

import httpx


class TallyError(Exception):
    """Base of every error the client raises."""

    def __init__(self, detail: str, *, status: int | None = None, title: str = "",
                 body: dict[str, Any] | None = None, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {title}: {detail}" if status else detail)
        self.status = status
        self.retry_after = retry_after
        """Seconds the service asked to wait before a retry (its `Retry-After` header)."""
        self.title = title
        self.detail = detail
        self.body: dict[str, Any] = body or {}


class BadRequest(TallyError, ValueError):
    """400: the body is not JSON, or a field is not a numeric array at all."""


class Unauthorized(TallyError):
    """401: tokens are configured and this request has no valid one."""


class Forbidden(TallyError):
    """403: the token lacks the scope or the session-name prefix."""


class NotFound(TallyError, LookupError):
    """404: unknown session, metric class or slice."""


class Conflict(TallyError):
    """409: the session exists with another config, or an epoch precondition failed.
    `current_epoch` is the session's epoch when the service says it (epoch preconditions)."""

    @property
    def current_epoch(self) -> int | None:
        value = self.body.get("current_epoch")
        return value if isinstance(value, int) else None


class PayloadTooLarge(TallyError):
    """413: the body or the batch is larger than the service accepts."""


class UnsupportedMediaType(TallyError):
    """415: the service does not read this Content-Type."""


class InvalidInput(TallyError, ValueError):
    """422: well-formed but invalid (config, shapes, NaN, labels, a reused Idempotency-Key);
    `detail` says what was expected and what was received."""


class Unavailable(TallyError):
    """503: the store is unreachable; nothing was applied, retrying is safe."""


class OutcomeUnknown(TallyError):
    """504: the store did not answer in time; the request may or may not have been applied.
    Retrying with the same Idempotency-Key is safe."""


class StoreFull(TallyError):
    """507: the store is out of memory; nothing was applied."""


class ConnectionFailed(TallyError):
    """The service could not be reached or did not answer (connect error, timeout, broken
    connection). `sent` is False when the request certainly never reached the service."""

    def __init__(self, detail: str, *, sent: bool) -> None:
        super().__init__(detail)
        self.sent = sent


class QueueFull(TallyError):
    """A background `RemoteMetric` dropped a batch because its queue stayed full."""


BY_STATUS: dict[int, type[TallyError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
    413: PayloadTooLarge, 415: UnsupportedMediaType, 422: InvalidInput, 503: Unavailable,
    504: OutcomeUnknown, 507: StoreFull,
}

# Transport errors raised before any byte of the request left this process.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def problem_document(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object, or a document built from its text when it is not JSON
    (a proxy's HTML error page, say)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    return {"status": response.status_code, "title": response.reason_phrase,
            "detail": response.text[:500]}


def error_from_response(response: httpx.Response) -> TallyError:
    """The typed exception for an error answer (4xx/5xx)."""
    body = problem_document(response)
    kind = BY_STATUS.get(response.status_code, TallyError)
    detail = body.get("detail")
    return kind(detail if isinstance(detail, str) else str(body)[:500],
                status=response.status_code,
                title=str(body.get("title") or response.reason_phrase), body=body,
                retry_after=_seconds(response.headers.get("retry-after")))


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: not worth parsing for a backoff hint


def error_from_transport(exc: httpx.TransportError) -> ConnectionFailed:
    sent = not isinstance(exc, _NOT_SENT)
    what = type(exc).__name__
    error = ConnectionFailed(f"{what} talking to {exc.request.url}: {exc}"
                             if _has_request(exc) else f"{what}: {exc}", sent=sent)
    error.__cause__ = exc
    return error


def _has_request(exc: httpx.TransportError) -> bool:
    try:
        exc.request  # noqa: B018 - raises RuntimeError when the exception has no request
    except RuntimeError:
        return False
    return True
