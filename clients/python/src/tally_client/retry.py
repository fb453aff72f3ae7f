"""When to send a request again, shared by the sync and async clients (they only differ in
how they sleep).

A retry repeats the very same request, headers included, so an update or merge retried after
a 504 or a timeout carries the Idempotency-Key of its first attempt and the service applies
it at most once. Only what the service says is transient is retried: 503 (nothing applied),
504 (outcome unknown) and connection failures; 4xx answers and 507 (store full: needs an
operator, not a retry) are raised at once.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tally_client._core import Call, Replay
from tally_client.errors import (
    ConnectionFailed,
    OutcomeUnknown,
    TallyError,
    Unavailable,
    error_from_transport,
)

log = logging.getLogger("tally_client")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded, jittered exponential backoff.

    `attempts` counts the first try (1 = never retry). Before retry n (1, 2, ...) the client
    sleeps a uniformly random time in [0, min(max_backoff, backoff * 2**(n-1))] ("full
    jitter": workers that failed together do not retry together), at least the answer's
    `Retry-After` when it gives one (capped at `max_backoff`). No retry starts once
    `total_seconds` would be exceeded since the first attempt.
    """

    attempts: int = 5
    backoff: float = 0.1
    max_backoff: float = 5.0
    total_seconds: float = 30.0
    random: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1; got {self.attempts}")
        if min(self.backoff, self.max_backoff, self.total_seconds) < 0:
            raise ValueError("backoff, max_backoff and total_seconds must not be negative")

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to sleep before retry number `retry` (1-based)."""
        ceiling = min(self.max_backoff, self.backoff * 2 ** (retry - 1))
        jittered = self.random() * ceiling
        if retry_after is not None:
            jittered = max(jittered, min(retry_after, self.max_backoff))
        return jittered


NO_RETRIES = RetryPolicy(attempts=1)


def as_policy(retries: RetryPolicy | int | None) -> RetryPolicy:
    """`retries` as given to a client: a policy, a number of retries (0: none), or None for
    the default policy."""
    if retries is None:
        return RetryPolicy()
    if isinstance(retries, RetryPolicy):
        return retries
    return RetryPolicy(attempts=retries + 1)


def may_retry(replay: Replay, error: TallyError) -> bool:
    """Whether a request of this replay class may be sent again after `error`."""
    if replay is Replay.NEVER:
        return False
    certainly_not_applied = isinstance(error, Unavailable) or (
        isinstance(error, ConnectionFailed) and not error.sent)
    if certainly_not_applied:
        return True
    maybe_applied = isinstance(error, (OutcomeUnknown, ConnectionFailed))
    return maybe_applied and replay is Replay.SAFE


class Attempts:
    """The retry state of one call: `failed(exc)` answers how long to sleep before the next
    attempt, or raises the typed error when the call must not or may no longer be retried."""

    def __init__(self, policy: RetryPolicy, call: Call[Any]) -> None:
        self.policy = policy
        self.call = call
        self.made = 0
        self.started = time.monotonic()

    def attempt(self) -> None:
        self.made += 1

    def failed(self, exc: TallyError | httpx.TransportError) -> float:
        error = error_from_transport(exc) if isinstance(exc, httpx.TransportError) else exc
        if not may_retry(self.call.replay, error) or self.made >= self.policy.attempts:
            raise error
        delay = self.policy.delay(self.made, error.retry_after)
        if time.monotonic() - self.started + delay > self.policy.total_seconds:
            raise error
        log.info("%s %s failed (%s); retry %d in %.2f s", self.call.method, self.call.path,
                 error, self.made, delay)
        return delay

