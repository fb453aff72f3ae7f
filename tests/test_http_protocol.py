"""app/http_protocol.py: uvicorn's httptools protocol with a response's head and body sent in
one write, and nothing held back that a client waits for.

The protocol runs here for real (uvicorn's own parser and request cycle) over a transport that
records each send; the live-server suites (parity, faults, the dashboard) serve through it too.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as UvicornHttpTools
from uvicorn.server import ServerState

from app.cli import http_protocol
from app.http_protocol import CoalescingTransport, HttpToolsProtocol

BODY = b'{"epoch":0,"samples":32}'


class RecordingTransport(asyncio.Transport):
    """A transport that records what each call would send (one entry per syscall)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.protocol: Any = None

    def write(self, data: Any) -> None:
        self.sent.append(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        self.sent.append(b"".join(bytes(d) for d in list_of_data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def write_eof(self) -> None:
        self.sent.append(b"<eof>")

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 7


async def json_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:  # read the whole body, as an update does
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def connect(app: Any, protocol_class: type[UvicornHttpTools] = HttpToolsProtocol
            ) -> tuple[UvicornHttpTools, RecordingTransport]:
    config = Config(app=app, http=protocol_class, lifespan="off", log_level="critical")
    config.load()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={},
                              _loop=asyncio.get_running_loop())
    transport = RecordingTransport()
    protocol.connection_made(transport)
    return protocol, transport


def head_and_body(sent: bytes) -> tuple[bytes, bytes]:
    head, _, body = sent.partition(b"\r\n\r\n")
    return head, body


async def test_an_answer_with_a_body_is_one_send():
    protocol, transport = connect(json_app)
    protocol.data_received(b"POST /u HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}")
    await settle()
    assert len(transport.sent) == 1
    head, body = head_and_body(transport.sent[0])
    assert head.startswith(b"HTTP/1.1 200 OK") and body == BODY


async def test_uvicorns_own_protocol_sends_the_same_bytes_in_two():
    """What the coalescing saves, and proof that the test above can fail."""
    protocol, transport = connect(json_app, UvicornHttpTools)
    protocol.data_received(b"POST /u HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}")
    await settle()
    assert len(transport.sent) == 2
    ours, ours_transport = connect(json_app)
    ours.data_received(b"POST /u HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}")
    await settle()
    without_date = [line for line in b"".join(transport.sent).split(b"\r\n")
                    if not line.startswith(b"date:")]
    assert without_date == [line for line in ours_transport.sent[0].split(b"\r\n")
                            if not line.startswith(b"date:")]


async def test_keep_alive_and_pipelined_requests_each_answer_in_one_send_in_order():
    protocol, transport = connect(json_app)
    one = b"POST /u HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}"
    protocol.data_received(one + one + one)  # pipelined: three requests in one segment
    await settle()
    protocol.data_received(one)  # then a fourth on the same connection
    await settle()
    assert len(transport.sent) == 4
    assert all(head_and_body(s)[1] == BODY for s in transport.sent)


async def test_a_head_answer_without_a_body_write_is_sent_when_it_completes():
    async def head_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"24")]})
        await send({"type": "http.response.body", "body": b""})

    protocol, transport = connect(head_app)
    protocol.data_received(b"HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n")
    await settle()
    assert len(transport.sent) == 1
    assert transport.sent[0].startswith(b"HTTP/1.1 200 OK") and transport.sent[0].endswith(
        b"\r\n\r\n")


async def test_100_continue_is_sent_at_once_not_held():
    """The client waits for `100 Continue` before it sends the body: holding it would hang."""
    protocol, transport = connect(json_app)
    protocol.data_received(b"POST /u HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
                           b"Expect: 100-continue\r\n\r\n")
    await settle()
    assert transport.sent == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    protocol.data_received(b"{}")
    await settle()
    assert len(transport.sent) == 2
    assert head_and_body(transport.sent[1])[1] == BODY


async def test_a_streamed_answer_is_sent_part_by_part_while_the_app_waits():
    later = asyncio.Event()

    async def streaming(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await later.wait()
        await send({"type": "http.response.body", "body": b"last", "more_body": False})

    protocol, transport = connect(streaming)
    protocol.data_received(b"GET /s HTTP/1.1\r\nHost: t\r\n\r\n")
    await settle()
    assert len(transport.sent) == 1  # the head with the first part, not held for the rest
    head, body = head_and_body(transport.sent[0])
    assert b"transfer-encoding: chunked" in head and body == b"5\r\nfirst\r\n"
    later.set()
    await settle()
    assert transport.sent[1:] == [b"4\r\nlast\r\n0\r\n\r\n"]


async def test_an_app_that_fails_after_starting_its_answer_sends_the_head_then_closes():
    async def failing(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"10")]})
        raise RuntimeError("boom")

    protocol, transport = connect(failing)
    protocol.data_received(b"GET /f HTTP/1.1\r\nHost: t\r\n\r\n")
    await settle()
    assert transport.closed
    assert len(transport.sent) == 1 and transport.sent[0].startswith(b"HTTP/1.1 200 OK")


async def test_a_malformed_request_gets_its_400_before_the_connection_closes():
    protocol, transport = connect(json_app)
    protocol.data_received(b"NOT HTTP AT ALL\r\n\r\n")
    await settle()
    assert transport.closed
    assert len(transport.sent) == 1 and transport.sent[0].startswith(b"HTTP/1.1 400")


def test_the_transport_flushes_before_closing_ending_or_handing_over_and_drops_on_abort():
    for finish in ("close", "write_eof", "set_protocol", "writelines", "abort"):
        inner = RecordingTransport()
        transport = CoalescingTransport(inner)
        transport.write(b"head")
        assert inner.sent == []
        assert transport.get_write_buffer_size() == 4 + 7
        if finish == "set_protocol":
            transport.set_protocol(asyncio.Protocol())
        elif finish == "writelines":
            transport.writelines([b"a", b"b"])
        else:
            getattr(transport, finish)()
        expected = {"close": [b"head"], "write_eof": [b"head", b"<eof>"],
                    "set_protocol": [b"head"], "writelines": [b"head", b"ab"],
                    "abort": []}[finish]
        assert inner.sent == expected, finish
        assert transport.get_extra_info("peername") == ("127.0.0.1", 50000)  # the real one's


def test_tally_serve_uses_it_when_httptools_is_installed(monkeypatch):
    assert http_protocol() == "app.http_protocol:HttpToolsProtocol"
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert http_protocol() == "auto"


def test_a_live_server_answers_through_it():
    """A real uvicorn with `--http app.http_protocol:HttpToolsProtocol` (as the live-server
    suites run it): keep-alive requests, a HEAD, and a body sent after `100 Continue`."""
    import socket

    from tests.live_server import LiveServer

    server = LiveServer({"TALLY_REDIS_URL": ""}).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            for method, path in (("GET", "/v1/sessions"), ("GET", "/healthz"),
                                 ("HEAD", "/healthz"), ("GET", "/v1/sessions")):
                sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                head = read_head(sock)
                assert head.startswith(b"HTTP/1.1 200"), head
                length = int(header(head, b"content-length"))
                if method == "GET":
                    assert len(read_exactly(sock, length)) == length
            body = b'{"metric": "Mean"}'
            sock.sendall(b"PUT /v1/sessions/continue HTTP/1.1\r\nHost: t\r\n"
                         b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
            assert read_head(sock).startswith(b"HTTP/1.1 100 Continue")  # not held back
            sock.sendall(body)
            created = read_head(sock)
            assert created.startswith(b"HTTP/1.1 201"), created
    finally:
        server.stop()


def read_head(sock: Any) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def read_exactly(sock: Any, length: int) -> bytes:
    data = b""
    while len(data) < length:
        chunk = sock.recv(length - len(data))
        assert chunk
        data += chunk
    return data


def header(head: bytes, name: bytes) -> bytes:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    raise AssertionError(f"no {name!r} in {head!r}")
