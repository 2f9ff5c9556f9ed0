"""Replies of the HTTP port's server (protocols.http_conn, protocols.http_request):
a reply's head waits for the body's first piece so that a small reply is
one send, and is still always sent: with no body (HEAD, 204), when the
application forces it out with an empty write, when the application fails
after start_response, before a large body and before the end of a chunked
reply. Each case is checked on the wire, against a bare WSGI application."""

from __future__ import annotations

import socket
import threading
from typing import Any, Callable, Iterator

import pytest

from protocols.http_conn import Limits, Server
from protocols.http_request import ReplyWriter

BIG = bytes(range(256)) * 1024  # 256 KiB: written to the socket as it is


class _Socket:
    """What ReplyWriter's SocketIO needs of a socket: each send recorded."""

    def __init__(self) -> None:
        self.sends: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sends.append(bytes(data))
        return len(data)


def test_a_held_head_goes_out_with_the_next_write():
    sock = _Socket()
    w = ReplyWriter(sock, "wb")
    w.holding = True
    w.write(b"HTTP/1.1 200 OK\r\n\r\n")
    w.holding = False
    assert sock.sends == [] and w.bytes_written == 19
    w.write(b"body")
    assert sock.sends == [b"HTTP/1.1 200 OK\r\n\r\nbody"] and w.bytes_written == 23
    w.write(b"more")
    assert sock.sends[1:] == [b"more"]


released = threading.Event()


def _app(environ: dict, start_response: Callable) -> Any:
    path = environ["PATH_INFO"]
    if path == "/small":
        start_response("200 OK", [("Content-Length", "5")])
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [b"hello"]
    if path == "/nothing":
        start_response("204 No Content", [])
        return []
    if path == "/empty-chunks":
        start_response("200 OK", [])
        return [b"", b""]
    if path == "/big":
        start_response("200 OK", [("Content-Length", str(len(BIG)))])
        return [BIG]
    if path == "/stream":  # the head forced out with an empty write, the body later
        write = start_response("200 OK", [("Content-Type", "text/event-stream")])
        write(b"")

        def later() -> Iterator[bytes]:
            assert released.wait(20)
            yield b"data: 1\n\n"
        return later()
    if path == "/fails":
        def failing() -> Iterator[bytes]:
            raise RuntimeError("after start_response")
            yield b""  # noqa: unreachable - makes this a generator
        start_response("200 OK", [("Content-Length", "5")])
        return failing()
    start_response("404 Not Found", [("Content-Length", "0")])
    return []


@pytest.fixture
def port() -> Iterator[int]:
    server = Server(("127.0.0.1", 0), _app, Limits(), numthreads=4)
    server.error_log = lambda *a, **k: None
    server.prepare()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server.bind_addr[1]
    finally:
        server.stop()
        thread.join(10)


def _read_reply(s: socket.socket, head_only: bool = False) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if head_only:
        return head, body
    lines = head.split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
    if b"content-length" in headers:
        while len(body) < int(headers[b"content-length"]):
            chunk = s.recv(65536)
            assert chunk, body[-100:]
            body += chunk
    elif headers.get(b"transfer-encoding") == b"chunked":
        while not body.endswith(b"0\r\n\r\n"):
            chunk = s.recv(65536)
            assert chunk, body[-100:]
            body += chunk
    return head, body


@pytest.mark.parametrize("method, path, status, body", [
    ("GET", "/small", b"200", b"hello"),
    ("HEAD", "/small", b"200", b""),
    ("GET", "/nothing", b"204", b""),
    ("GET", "/empty-chunks", b"200", b"0\r\n\r\n"),
    ("GET", "/big", b"200", BIG),
])
def test_every_reply_is_sent_whole_on_a_kept_connection(port, method, path, status, body):
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        for _ in range(2):
            s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            head, got = _read_reply(s, head_only=method == "HEAD")
            assert head.split(b" ")[1] == status, head
            assert got == body


def test_a_head_forced_out_by_an_empty_write_is_not_held(port):
    released.clear()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        head, body = _read_reply(s, head_only=True)  # before the body exists
        assert head.startswith(b"HTTP/1.1 200 OK") and body == b""
        released.set()
        rest = body
        while not rest.endswith(b"0\r\n\r\n"):
            chunk = s.recv(65536)
            assert chunk
            rest += chunk
        assert rest == b"9\r\ndata: 1\n\n\r\n0\r\n\r\n"


def test_a_failure_after_start_response_still_sends_the_head(port):
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(b"GET /fails HTTP/1.1\r\nHost: x\r\n\r\n")
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"\r\n\r\n"), out
