"""One exception hierarchy for the whole service.

Every error a request can meet is a `TallyError` carrying its HTTP status; the API layer turns
it into an RFC 9457 problem document in one handler. The metric engine and the stores raise
these too, so nothing below the API needs to know about HTTP, only about what went wrong.
"""

from __future__ import annotations


class TallyError(Exception):
    status: int = 500
    title: str = "Internal Server Error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(TallyError):
    status = 400
    title = "Bad Request"


class Unauthorized(TallyError):
    status = 401
    title = "Unauthorized"


class Forbidden(TallyError):
    status = 403
    title = "Forbidden"


class NotFound(TallyError):
    status = 404
    title = "Not Found"


class Conflict(TallyError):
    status = 409
    title = "Conflict"


class PayloadTooLarge(TallyError):
    status = 413
    title = "Content Too Large"


class UnsupportedMediaType(TallyError):
    status = 415
    title = "Unsupported Media Type"


class Invalid(TallyError, ValueError):
    """Well-formed but invalid: bad config, bad shapes, bad values (422)."""

    status = 422
    title = "Unprocessable Content"


class ConfigError(Invalid):
    """A metric constructor argument is unknown, of the wrong type or out of range."""


class InvalidInput(Invalid):
    """A batch does not fit the metric: shapes, values, labels."""


class KeyReused(Invalid):
    """An Idempotency-Key already answered a different request (route or body)."""


class StoreUnavailable(TallyError):
    """The store could not be reached, or refused the request: nothing was applied."""

    status = 503
    title = "Service Unavailable"


class OutcomeUnknown(TallyError):
    """The request reached the store but its answer did not come back in time: it may or may
    not have been applied. Retrying with the same Idempotency-Key is always safe."""

    status = 504
    title = "Gateway Timeout"


class StoreFull(TallyError):
    """The store is out of memory: nothing was applied."""

    status = 507
    title = "Insufficient Storage"
