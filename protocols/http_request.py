"""One request on the HTTP port, at the level of cheroot's HTTPRequest:
header size and count (431, 414), a Content-Length that is a whole number
and not next to chunks (400), a chunked body read by :class:`ChunkedBody`
(bounded reads; a malformed chunk is a 400, never a 500), and a reply that
does not first read a large unread request body (cheroot read all of it into
memory before a 401 or 413): the connection closes after it instead
(protocols.http_conn drops what the client still sends for a moment, so that
it reads the reply rather than a reset)."""

from __future__ import annotations

import email.utils
import functools
import logging
import re
import time
from typing import Any

from cheroot import errors as cheroot_errors
from cheroot.makefile import StreamWriter
from cheroot.server import HeaderReader, HTTPRequest, KnownLengthRFile, SizeCheckWrapper

from gateway import errors as E
from gateway import metrics

log = logging.getLogger("gateway.http")

__all__ = ["Request", "ReplyWriter", "ChunkedBody", "BadChunk", "ReplyCut"]

#: A reply leaves at most this much of an unread request body to be read and
#: dropped before the next request; more, and the connection is closed.
DRAIN_MAX = 64 << 10
#: The most one read of a chunked body asks of the socket's reader.
_READ_MAX = 1 << 20
#: Reply pieces from this size up go to the socket as they are (see Request.write).
_DIRECT_MIN = 64 << 10


class ReplyCut(BaseException):
    """Raised by an application while its reply's body is being sent (its
    status and headers already gone) when the rest cannot be produced: the
    connection is closed there, without the reply's end (a chunked reply's
    last chunk, or the rest of a Content-Length), so the client sees an
    incomplete reply and never one that looks complete. The application logs
    why; the server only notes the cut. Not an Exception: wsgidav's
    ErrorPrinter turns any Exception into an error reply, whose second
    start_response fails once the head is out (the same cut, with a
    traceback logged as a server error)."""


class ReplyWriter(StreamWriter):
    """cheroot's socket writer, which sends each write at once. A reply's
    head written while ``holding`` waits in the buffer and goes out with the
    next write (the body's first piece, or the reply's end in
    :meth:`Request.respond`): a small reply is one send, so one segment and
    one wake-up of the client instead of two (curl read the head, went back
    to poll, then was woken again for the body)."""

    holding = False

    def write(self, val: Any, *args: Any, **kwargs: Any) -> int:
        if not self.holding:
            return super().write(val, *args, **kwargs)
        with self._write_lock:
            self._checkClosed()
            self._write_buf.extend(val)
        self.bytes_written += len(val)
        return len(val)


@functools.lru_cache(maxsize=4)
def _date(second: int) -> bytes:
    """cheroot's Date header value for ``second``."""
    return email.utils.formatdate(second, usegmt=True).encode("ISO-8859-1")


class BadChunk(E.BadRequest):
    """A chunked request body that breaks the chunked coding."""


class ChunkedBody:
    """``wsgi.input`` of a request sent with ``Transfer-Encoding: chunked``.

    cheroot's own reader turns a bad chunk size into a ValueError (a 500 from
    the application) and reads a whole announced chunk into memory (a chunk
    of 0xffffffffff bytes grows the process with every byte sent). This one
    reads at most ``size`` bytes at a time and raises :class:`BadChunk` (kept
    in ``error``) for anything but ``HEX[;ext] CRLF data CRLF``."""

    _SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")
    _MAX_LINE = 4096
    _MAX_TRAILERS = 64

    def __init__(self, rfile: Any) -> None:
        self.rfile = rfile
        self.left = 0  # bytes of the current chunk not read yet
        self.closed = False  # the last chunk and the trailers are read
        self.error: str | None = None

    def _bad(self, message: str) -> BadChunk:
        self.error = f"malformed chunked request body: {message}"
        return BadChunk(self.error)

    def _line(self) -> bytes:
        line = self.rfile.readline(self._MAX_LINE)
        if not line.endswith(b"\n"):
            raise self._bad("a line too long" if line else "the body ended early")
        return line

    def _next_chunk(self) -> None:
        size = self._line().split(b";", 1)[0].strip()
        if not self._SIZE.fullmatch(size):
            raise self._bad(f"chunk size {size[:32]!r} is not a hexadecimal number")
        self.left = int(size, 16)
        if self.left == 0:
            for _ in range(self._MAX_TRAILERS):
                if self._line().strip() == b"":
                    self.closed = True
                    return
            raise self._bad("too many trailer fields")

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all when None or negative). Raises BadChunk."""
        if self.error:
            raise BadChunk(self.error)
        out: list[bytes] = []
        want = -1 if size is None or size < 0 else size
        while want and not self.closed:
            if not self.left:
                self._next_chunk()
                continue
            data = self.rfile.read(min(self.left if want < 0 else min(self.left, want), _READ_MAX))
            if not data:
                raise self._bad("the body ended inside a chunk")
            out.append(data)
            self.left -= len(data)
            want -= len(data) if want > 0 else 0
            if not self.left and self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise self._bad("a chunk is longer than its size")
        return b"".join(out)

    def readline(self, size: int | None = -1) -> bytes:
        out = bytearray()
        while size is None or size < 0 or len(out) < size:
            byte = self.read(1)
            out += byte
            if not byte or byte == b"\n":
                break
        return bytes(out)

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Any:
        return iter(self.readline, b"")

    def close(self) -> None:
        """Nothing to release (the connection's reader stays open)."""


class _TooManyHeaders(cheroot_errors.MaxSizeExceeded):
    pass


class _LineCounter:
    """The head reader that counts header lines."""

    def __init__(self, rfile: Any, most: int) -> None:
        self.rfile, self.left = rfile, most + 1  # + the empty line that ends the head

    def readline(self, size: int | None = None) -> bytes:
        self.left -= 1
        if self.left < 0:
            raise _TooManyHeaders()
        return self.rfile.readline(size)


class _CountingHeaderReader(HeaderReader):
    """cheroot's head reader, counting lines; it takes ``Expect:
    100-continue`` out of the head cheroot looks at (cheroot answers it at
    once) and notes it in ``expect_continue``: :class:`Request` answers it
    when the body is first read."""

    expect_continue = False

    def __init__(self, most: int) -> None:
        self.most = most

    def __call__(self, rfile: Any, hdict: dict | None = None) -> dict:
        head = super().__call__(_LineCounter(rfile, self.most), hdict)
        if head.get(b"Expect", b"").lower() == b"100-continue":
            del head[b"Expect"]
            self.expect_continue = True
        return head


class _ContinueFirst:
    """The connection's reader as a request body reads it: "100 Continue"
    goes out before the first read (RFC 9110 §10.1.1). Until then the client
    waits with its body, so a request refused before the body is read (a
    login, a permission, a lock, a quota) is answered without the body being
    sent (cheroot sent "100 Continue" as soon as the head was read)."""

    def __init__(self, rfile: Any, request: "Request") -> None:
        self._rfile, self._request = rfile, request

    def _go(self) -> None:
        request, self._request = self._request, None
        if request is not None:
            request.continue_now()

    def read(self, *args: Any) -> bytes:
        self._go()
        return self._rfile.read(*args)

    def readline(self, *args: Any) -> bytes:
        self._go()
        return self._rfile.readline(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rfile, name)


class Request(HTTPRequest):
    """cheroot's request with the head bounds of :class:`Limits`, chunked
    bodies through :class:`ChunkedBody`, and no reading of a large unread body
    before a reply (the connection closes after it instead)."""

    def __init__(self, server: Any, conn: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(server, conn, *args, **kwargs)
        self.header_reader = _CountingHeaderReader(server.limits.max_header_count)

    def parse_request(self) -> None:
        limits = self.server.limits
        self.rfile = SizeCheckWrapper(self.conn.rfile, limits.max_header_bytes)
        try:
            if not self.read_request_line():
                return
        except cheroot_errors.MaxSizeExceeded:
            metrics.refused("http", "uri_too_long")
            self.simple_response("414 URI Too Long", f"the request line is longer than {limits.max_header_bytes} bytes")
            return
        try:
            if not self.read_request_headers():
                return
        except _TooManyHeaders:
            metrics.refused("http", "too_many_headers")
            self.simple_response("431 Request Header Fields Too Large",
                                 f"a request may have at most {limits.max_header_count} header fields")
            return
        except cheroot_errors.MaxSizeExceeded:
            metrics.refused("http", "header_too_large")
            self.simple_response("431 Request Header Fields Too Large",
                                 f"the request head is longer than {limits.max_header_bytes} bytes")
            return
        self.ready = True

    #: Expect: 100-continue not answered yet (see _ContinueFirst)
    continue_pending = False

    def read_request_headers(self) -> bool:
        """cheroot's, and a Content-Length that is not a whole number (cheroot
        took ``-1`` as "read to the end", into memory) or that comes with a
        chunked body (a request smuggling pattern) is a 400. ``Expect:
        100-continue`` is answered when the body is first read (the
        application still sees the header)."""
        if not super().read_request_headers():
            return False
        if self.header_reader.expect_continue:
            self.inheaders[b"Expect"] = b"100-continue"
            self.continue_pending = True
        length = self.inheaders.get(b"Content-Length")
        if length is not None and not (length.isdigit() and not self.chunked_read):
            metrics.refused("http", "bad_content_length")
            self.simple_response("400 Bad Request", "Content-Length must be a whole number of bytes, "
                                 "and not come with Transfer-Encoding: chunked")
            return False
        return True

    def respond(self) -> None:
        try:
            self._respond()
        except ReplyCut as exc:  # no last chunk: the connection closes mid-reply (see ReplyCut)
            self.close_connection = True
            log.info("reply cut after its head: %s", exc)
        finally:
            wfile = self.conn.wfile
            if wfile._write_buf:  # a head held for a body that did not come (HEAD, 204, an error)
                wfile.flush()

    def _respond(self) -> None:
        source = _ContinueFirst(self.conn.rfile, self) if self.continue_pending else self.conn.rfile
        if self.chunked_read:
            self.rfile = ChunkedBody(source)
        else:  # as cheroot's respond(), with the body read from source
            length = int(self.inheaders.get(b"Content-Length", 0))
            most = self.server.max_request_body_size
            if most and most < length:
                self.simple_response("413 Request Entity Too Large",
                                     "The entity sent with the request exceeds the maximum allowed bytes.")
                return
            self.rfile = KnownLengthRFile(source, length)
        self.server.gateway(self).respond()
        if self.ready:
            self.ensure_headers_sent()
        if self.chunked_write:
            self.conn.wfile.write(b"0\r\n\r\n")

    def write(self, chunk: bytes) -> None:
        """A piece of the reply body. cheroot joins a chunk to its frame,
        copies that into its writer's buffer and copies what is left of the
        buffer again for each send; a large piece goes to the socket as it
        is instead (the buffer is empty between writes: each one flushes)."""
        if len(chunk) < _DIRECT_MIN:
            super().write(chunk)
            return
        wfile = self.conn.wfile
        wfile.flush()
        pieces = (b"%x\r\n" % len(chunk), chunk, b"\r\n") if self.chunked_write else (chunk,)
        for piece in pieces:
            # send(), not sendall(): the socket's timeout bounds each send, as
            # in cheroot's writer, not the whole piece (a slow reader).
            view = memoryview(piece)
            while view:
                view = view[self.conn.socket.send(view):]
            wfile.bytes_written += len(piece)

    def continue_now(self) -> None:
        """Send "100 Continue" where the client waits for it (before the
        body's first read, and only before the reply's head)."""
        if self.continue_pending and not self.sent_headers:
            self.conn.wfile.write(b"%s 100 Continue\r\n\r\n" % self.server.protocol.encode("ascii"))
        self.continue_pending = False

    def _body_unread(self) -> bool:
        if self.continue_pending:  # the client waits to send its body: none of it may be read
            return self.chunked_read or int(self.inheaders.get(b"Content-Length", 0) or 0) > 0
        rfile = getattr(self, "rfile", None)
        if isinstance(rfile, ChunkedBody):
            return not rfile.closed
        return getattr(rfile, "remaining", 0) > DRAIN_MAX

    def send_headers(self) -> None:
        dated = False
        for k, v in self.outheaders:
            low = k.lower()
            if low == b"connection" and v.lower() == b"close":
                self.close_connection = True
            elif low == b"date":
                dated = True
        if not dated:  # what cheroot would add, made once a second (email.utils.formatdate: 4 µs)
            self.outheaders.append((b"Date", _date(int(time.time()))))
        if self._body_unread():  # cheroot would read all of it into memory first
            self.close_connection = True
            self.conn.discard_on_close = True
        wfile = self.conn.wfile
        wfile.holding = True  # sent with the body's first piece (ReplyWriter)
        try:
            super().send_headers()
        finally:
            wfile.holding = False

    def simple_response(self, status: Any, msg: Any = "") -> None:
        """cheroot's one-line replies (400, 408, 413, 414, 431, ...), always
        with ``Connection: close``: the rest of what the client sends is
        dropped after it (see Connection.close)."""
        self.conn.discard_on_close = True
        self.close_connection = True
        body = msg.encode("utf-8") if isinstance(msg, str) else bytes(msg)
        head = (f"{self.server.protocol} {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
        try:
            self.conn.wfile.write(head.encode("latin-1") + body)
        except OSError as exc:
            if exc.args[0] not in cheroot_errors.socket_errors_to_ignore:
                raise
