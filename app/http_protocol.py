"""uvicorn's httptools protocol, with a response's head and body sent in one write.

uvicorn writes a response as two `transport.write` calls, the status line and headers at
`http.response.start` and the body at `http.response.body`, and uvloop sends each at once: an
answer with a body costs two `write` syscalls and two TCP segments (one without, like a bare
204, costs one). `HttpToolsProtocol` is uvicorn's own protocol over a transport that holds a
response's head until its first body part (or until the response completes), then sends both
with one `writev`; nothing else about the protocol changes. Under wrk, a small update on
Redis gained ~5 % throughput (BENCHMARKS.md).

`tally serve` uses it; with uvicorn's command line, `uvicorn app.main:app --http
app.http_protocol:HttpToolsProtocol` (plain `uvicorn app.main:app` serves the same answers,
one syscall more each).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _UvicornHttpTools

#: How every interim (1xx) answer starts.
INTERIM = b"HTTP/1.1 1"


class CoalescingTransport:
    """The transport of one connection, sending a response's head with its first body part.

    The first write of a response (`head_pending`: set when the connection opens and by the
    protocol after each response) is its status line and headers: it is held, and the next
    write sends both at once (`writelines`: one `writev` on uvloop). The protocol flushes what
    is still held when the response completes (a HEAD answer has no body write); closing,
    `write_eof` and handing the connection to another protocol flush first, aborting drops
    it. An interim answer (`100 Continue`, which the client waits for before it sends the
    body) is never held. Every other attribute is the real transport's."""

    __slots__ = ("_transport", "_held", "head_pending")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None
        self.head_pending = True

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.writelines((held, data))
        elif self.head_pending and not data.startswith(INTERIM):
            self.head_pending = False
            self._held = data
        else:
            self._transport.write(data)

    def writelines(self, chunks: Iterable[bytes]) -> None:
        self.flush()
        self._transport.writelines(chunks)

    def flush(self) -> None:
        """Send what is held, if anything."""
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def get_write_buffer_size(self) -> int:
        held = len(self._held) if self._held is not None else 0
        return held + self._transport.get_write_buffer_size()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()
        self._transport.set_protocol(protocol)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpToolsProtocol(_UvicornHttpTools):
    """uvicorn's httptools protocol over a `CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.coalescing = CoalescingTransport(transport)
        super().connection_made(self.coalescing)  # type: ignore[arg-type]

    def on_response_complete(self) -> None:
        self.coalescing.flush()
        self.coalescing.head_pending = True
        super().on_response_complete()
