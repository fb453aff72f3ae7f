"""A bounded outbox served by one sender thread: the training loop hands work over and goes on.

Policy when the outbox is full: the caller waits up to `block_seconds` for room (a short
network hiccup then costs a short stall, not data), and if there is still no room the NEW
batch is dropped, counted in `dropped` and reported to `on_error` as `QueueFull`. The new one
rather than the oldest: the queued batches are older data of the same epoch and may already
be in flight; dropping the newest keeps the applied batches a prefix of what was submitted.
`block_seconds=0` never waits at all. Work that fails after the client's retries is counted
in `failed`, logged, and reported to `on_error`; nothing is raised into the caller.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from tally_client.errors import QueueFull

log = logging.getLogger("tally_client")
ErrorCallback = Callable[[BaseException, str], None]


class BackgroundSender:
    """Runs submitted callables one at a time, in order, on a daemon thread."""

    def __init__(self, label: str, *, capacity: int = 1000, block_seconds: float = 1.0,
                 on_error: ErrorCallback | None = None, exit_timeout: float = 30.0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1; got {capacity}")
        self.label = label
        self.capacity = capacity
        self.block_seconds = block_seconds
        self.on_error = on_error
        self.exit_timeout = exit_timeout
        self.sent = self.failed = self.dropped = 0
        self._items: deque[tuple[str, Callable[[], object]]] = deque()
        self._unfinished = 0
        self._closing = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._serve, name=f"tally-sender-{label}",
                                        daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)

    @property
    def pending(self) -> int:
        """Work submitted and not yet finished (queued or being sent)."""
        with self._cond:
            return self._unfinished

    def submit(self, what: str, work: Callable[[], object]) -> bool:
        """Queue `work`; False when it was dropped (outbox full past `block_seconds`, or the
        sender closed). Never raises."""
        with self._cond:
            accepted = not self._closing and self._wait_for_room()
            if accepted:
                self._items.append((what, work))
                self._unfinished += 1
                self._cond.notify_all()
            else:
                self.dropped += 1
        if not accepted:
            reason = "closed" if self._closing else f"full ({self.capacity} batches)"
            self._report(QueueFull(f"{self.label}: dropped {what}: the outbox is {reason}"),
                         what)
        return accepted

    def reject(self, what: str, error: BaseException) -> None:
        """Count and report work that failed before it could be queued (e.g. its inputs)."""
        with self._cond:
            self.failed += 1
        self._report(error, what)

    def _wait_for_room(self) -> bool:
        deadline = time.monotonic() + self.block_seconds
        while len(self._items) >= self.capacity:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._cond.wait(remaining)
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is sent (or has failed). False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._unfinished == 0, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush, then stop the thread. False if the flush timed out (what was left is
        dropped when the process exits)."""
        flushed = self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if flushed:
            self._thread.join(timeout)
        atexit.unregister(self._at_exit)
        return flushed

    def _at_exit(self) -> None:
        if not self.flush(self.exit_timeout):
            log.warning("%s: %d batch(es) not sent at exit", self.label, self.pending)

    def _serve(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._items or self._closing)
                if not self._items:
                    return
                what, work = self._items.popleft()
                self._cond.notify_all()  # room for a waiting submitter
            error: Exception | None = None
            try:
                work()
            except Exception as exc:  # noqa: BLE001 - every failure goes to on_error
                error = exc
                self._report(exc, what)
            finally:
                with self._cond:
                    if error is None:
                        self.sent += 1
                    else:
                        self.failed += 1
                    self._unfinished -= 1
                    self._cond.notify_all()

    def _report(self, error: BaseException, what: str) -> None:
        log.warning("%s: %s failed: %s", self.label, what, error)
        if self.on_error is None:
            return
        try:
            self.on_error(error, what)
        except Exception:  # noqa: BLE001 - a broken callback must not kill the sender
            log.exception("%s: the on_error callback raised", self.label)
