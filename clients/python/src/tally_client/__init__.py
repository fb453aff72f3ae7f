"""Python client for Tally: Keras metrics shared by every worker of a training job.

- `TallyClient` / `AsyncTallyClient`: every endpoint of the HTTP API, typed errors, retries.
- `RemoteMetric`: the Keras metric API on a shared session (optionally non-blocking).
- `TallyCallback` (needs keras): resets sessions at epoch ends and logs their results.
"""

from __future__ import annotations

from typing import Any

from tally_client.client import AsyncTallyClient, TallyClient
from tally_client.errors import (
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    InvalidInput,
    NotFound,
    OutcomeUnknown,
    PayloadTooLarge,
    QueueFull,
    StoreFull,
    TallyError,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from tally_client.remote import RemoteMetric, RemoteVariable
from tally_client.retry import RetryPolicy

__all__ = [
    "AsyncTallyClient", "BadRequest", "Conflict", "ConnectionFailed", "Forbidden",
    "InvalidInput", "NotFound", "OutcomeUnknown", "PayloadTooLarge", "QueueFull",
    "RemoteMetric", "RemoteVariable", "RetryPolicy", "StoreFull", "TallyCallback",
    "TallyClient", "TallyError", "Unauthorized", "Unavailable", "UnsupportedMediaType",
]


def __getattr__(name: str) -> Any:
    # The callback imports keras, which is not a dependency: only load it when asked for.
    if name == "TallyCallback":
        from tally_client.keras import TallyCallback

        return TallyCallback
    raise AttributeError(f"module 'tally_client' has no attribute {name!r}")
