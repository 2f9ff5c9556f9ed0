"""The HTTP port's connections: a worker thread only for a complete request.

cheroot 11 hands every new connection to a worker thread at once, and the
worker then blocks reading the request head (``server.timeout`` per read, so a
client that sends a byte now and then holds it for ever): 32 idle sockets took
every worker. Here cheroot's selector thread (:class:`Gate`, its
ConnectionManager) accepts, does the TLS handshake and reads each request head
without blocking into the connection's buffer; only once the head is complete
(or over ``max_header_bytes``, for the worker to refuse) does a worker get the
connection, with the head already buffered. A connection that has not sent a
complete head within ``header_timeout_s`` of its accept or of its previous
reply is closed, so idle and slow clients cost a socket, never a thread.

Connections are bounded in all and per address (503 and closed beyond).
After a reply that left a request body unread (see protocols.http_request),
what the client still sends is dropped for a moment before the close, so
that it reads the reply rather than a reset.
"""

from __future__ import annotations

import collections
import errno
import io
import logging
import re
import select
from selectors import EVENT_READ
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

from cheroot import wsgi
from cheroot.connections import ConnectionManager, prevent_socket_inheritance
from cheroot.makefile import MakeFile, StreamReader
from cheroot.server import HTTPConnection

from gateway import metrics
from protocols.http_request import ReplyWriter, Request

__all__ = ["CONNECTION_KEY", "CONTINUE_KEY", "Limits", "Server", "Gate", "Connection"]

#: environ key: a dict the application may keep things in for the
#: connection's later requests (gone with the connection).
CONNECTION_KEY = "gateway.connection"
#: environ key of a callable that sends "100 Continue" now to a client that
#: waits for it (Request.continue_now); else it is sent at the body's first read
CONTINUE_KEY = "gateway.continue"

log = logging.getLogger("gateway.http")

#: How long a worker thread waits for a kept-alive client's next request
#: before it hands the connection back to the selector thread.
LINGER_S = 0.002
#: After such a close, what the client still sends is read and dropped for
#: this long (or this many bytes) so that it sees the reply, not a reset.
DISCARD_S = 2.0
DISCARD_BYTES = 16 << 20
_RECV = 16 << 10
#: Connections accepted at most per wake-up of the selector thread, and the
#: listen backlog (cheroot's 5 dropped a burst of connections for a second).
_ACCEPTS_PER_WAKE = 64
_BACKLOG = 1024
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_EVENTS = b"GET /api/v1/events"
_WAIT, _READY, _GONE = "wait", "ready", "gone"
_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
_TIMEOUT_TEXT = b"408 Request Timeout: the request head did not arrive in time\n"
_TIMEOUT_REPLY = (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(_TIMEOUT_TEXT), _TIMEOUT_TEXT))
_PLAIN_TEXT = b"400 Bad Request: this port speaks HTTPS only; use https://\n"
_PLAIN_HTTP_REPLY = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(_PLAIN_TEXT), _PLAIN_TEXT))
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class _Reader(StreamReader):
    """cheroot's socket reader (``_pyio``'s BufferedReader, in Python), with a
    ``readline`` that takes a line already in the buffer in one slice: the
    generic one peeks and reads each line in two more calls, and every
    request head is read line by line (a twentieth of a small PUT). Anything
    else, and a line that is not all buffered, is the base class's."""

    def readline(self, size: int | None = -1) -> bytes:
        with self._read_lock:
            buf, pos = self._read_buf, self._read_pos
            end = buf.find(b"\n", pos) + 1
            if size is None or size < 0:
                size = len(buf) - pos if end else -1
            if 0 < end - pos <= size:
                line = buf[pos:end]
            elif size >= 0 and len(buf) - pos >= size:
                line = buf[pos:pos + size]
            else:
                line = None
            if line is not None:
                self._read_pos = pos + len(line)
                self.bytes_read += len(line)
                return line
        return super().readline(size)


def _makefile(sock: Any, mode: str = "r", bufsize: int = io.DEFAULT_BUFFER_SIZE) -> Any:
    """cheroot's MakeFile, the reader being :class:`_Reader`, the writer
    protocols.http_request's ReplyWriter."""
    if "r" in mode:
        return _Reader(sock, mode, bufsize)
    return ReplyWriter(sock, mode, bufsize)


def _tls_makefile(sock: Any, mode: str = "r", bufsize: int = io.DEFAULT_BUFFER_SIZE) -> Any:
    """The TLS adapter's reader (cheroot's) and a ReplyWriter."""
    if "r" in mode:
        return MakeFile(sock, mode, bufsize)
    return ReplyWriter(sock, mode, bufsize)


@dataclass(frozen=True)
class Limits:
    """The bounds of the HTTP port (``[http]`` keys of the same names)."""

    max_connections: int = 512
    max_connections_per_ip: int = 64
    header_timeout_s: float = 10.0
    max_header_bytes: int = 65536
    max_header_count: int = 100
    max_workers_per_ip: int = 16

    @classmethod
    def from_config(cls, http: Any) -> "Limits":
        return cls(http.max_connections, http.max_connections_per_ip, http.header_timeout_s,
                   http.max_header_bytes, http.max_header_count,
                   http.max_workers_per_ip or max(1, http.threads // 2))


class Connection(HTTPConnection):
    """A connection of the :class:`Gate`: it holds its unfinished request head
    (``head``) while in the selector, and answers the client's next request
    in the same worker thread when its head arrives within :data:`LINGER_S`
    and no other connection waits for a worker (cheroot's round trip through
    the selector costs two thread hand-offs, a tenth of a small PUT)."""

    RequestHandlerClass = Request

    def __init__(self, server: Any, sock: Any, makefile: Any = MakeFile) -> None:
        super().__init__(server, sock, makefile)
        self.gate: Gate = server.gate
        self.head = bytearray()
        self.scanned = 0  # where the search for the head's end resumes
        self.deadline = 0.0
        self.handshaking = False
        self.discarding = False
        self.discard_on_close = False
        self.discarded = 0
        self.requests = 0  # requests answered
        self.address: str | None = None  # counted in the gate's limits until closed
        self.working = False  # a worker thread has it (counted in the gate's share of its address)
        self.kept: dict = {}  # the application's, for this connection's later requests (CONNECTION_KEY)

    def communicate(self) -> bool:
        while True:
            keep = super().communicate()
            self.requests += 1
            if not keep or self.server.requests.qsize:
                return keep
            state = self.gate.take_head(self)
            if state == _WAIT and not self.head and not self._pending():
                poll = select.poll()  # not select(): descriptors may be over FD_SETSIZE
                poll.register(self.socket, select.POLLIN)
                if poll.poll(LINGER_S * 1000):
                    state = self.gate.take_head(self)
            if state == _GONE:
                return False
            if state == _WAIT:
                return keep  # the worker puts it back to the selector (Gate.put)
            self.gate.hand_over(self)

    def _pending(self) -> bool:
        pending = getattr(self.socket, "pending", None)  # TLS: bytes already decrypted
        return bool(pending and pending())

    def close(self) -> None:
        """Close; after a reply that left the request body unread, first
        drop what the client still sends (for at most DISCARD_S) in the
        selector thread, so that it reads the reply rather than a reset."""
        self.gate.worker_done(self)
        if self.discard_on_close and not self.discarding and self.gate.serving:
            self.discard_on_close = False
            try:
                self.wfile.flush()
                self.socket.shutdown(socket.SHUT_WR)
                self.socket.setblocking(False)
            except OSError:
                pass
            else:
                self.gate.discard(self)
                return
        try:
            super().close()
        except OSError:
            pass
        self.gate.release(self)


class Gate(ConnectionManager):
    """cheroot's ConnectionManager that gives a connection to a worker only
    once a complete request head has arrived (see the module docstring), and
    bounds connections in all and per address (503 and closed beyond)."""

    def __init__(self, server: Any, limits: Limits) -> None:
        server.gate = self
        self.limits = limits
        self._lock = threading.Lock()
        self._per_address: dict[str, int] = {}
        self._open = 0
        #: per address: connections a worker has, and those whose complete
        #: head waits for that number to drop below max_workers_per_ip
        self._working: dict[str, int] = {}
        self._parked: dict[str, collections.deque[Connection]] = {}
        self._descriptor_log = 0.0
        super().__init__(server)

    # cheroot asks this before keeping a connection open after a reply; the
    # gate's own bounds apply instead of its keep_alive_conn_limit (10).
    can_add_keepalive_connection = True

    @property
    def serving(self) -> bool:
        return self._serving and not self._stop_requested

    @property
    def open_connections(self) -> int:
        return self._open

    # ------------------------------------------------------------ accounting

    def _admit(self, address: str) -> str | None:
        """None, or the bound that the new connection would exceed."""
        with self._lock:
            if self._open >= self.limits.max_connections:
                return "connections_total"
            if self._per_address.get(address, 0) >= self.limits.max_connections_per_ip:
                return "connections_per_address"
            self._open += 1
            self._per_address[address] = self._per_address.get(address, 0) + 1
        return None

    def release(self, conn: Connection) -> None:
        """Called once a connection is closed: its slot is free again."""
        self.worker_done(conn)
        address, conn.address = conn.address, None
        if address is not None:
            self._release(address)

    def dispatch(self, conn: Connection) -> None:
        """Give a connection whose head is complete to a worker, unless its
        address has ``max_workers_per_ip`` busy already: then it waits, its
        head read, for one of them (slow request bodies from one address
        never take every worker). Event streams, bounded on their own (half
        the workers, see gateway.api.jobs), do not count: a user's open
        portal tabs must not hold up the rest of their requests."""
        address = conn.address or "local"
        if conn.head.startswith(_EVENTS):
            self.hand_over(conn)
            self.server.process_conn(conn)
            return
        with self._lock:
            if self._working.get(address, 0) >= self.limits.max_workers_per_ip:
                self._parked.setdefault(address, collections.deque()).append(conn)
                return
            self._working[address] = self._working.get(address, 0) + 1
            conn.working = True
        self.hand_over(conn)
        self.server.process_conn(conn)

    def worker_done(self, conn: Connection) -> None:
        """A worker let go of ``conn``: the next waiting connection of its address gets a worker."""
        if not conn.working:
            return
        conn.working = False
        address = conn.address or "local"
        with self._lock:
            left = self._working.get(address, 1) - 1
            if left:
                self._working[address] = left
            else:
                self._working.pop(address, None)
            waiting = self._parked.get(address)
            following = waiting.popleft() if waiting else None
            if waiting is not None and not waiting:
                del self._parked[address]
        if following is not None:
            self.dispatch(following)

    def _release(self, address: str) -> None:
        with self._lock:
            self._open -= 1
            left = self._per_address.get(address, 1) - 1
            if left:
                self._per_address[address] = left
            else:
                self._per_address.pop(address, None)

    # ------------------------------------------------------------ the loop

    def put(self, conn: Connection) -> None:
        """A worker is done with a kept-alive connection: wait in the
        selector for its next request head (a worker gets it once complete)."""
        self.worker_done(conn)
        conn.last_used = time.time()
        conn.deadline = time.monotonic() + self.limits.header_timeout_s
        state = self.take_head(conn)
        if state == _READY:
            self.dispatch(conn)
        elif state == _GONE:
            conn.close()
        else:
            try:
                self._selector.register(conn.socket.fileno(), EVENT_READ, data=conn)
            except (OSError, ValueError, KeyError, RuntimeError):  # the server stops: its selector is closed
                conn.close()

    def _run(self, expiration_interval: float) -> None:
        last_check = time.monotonic()
        while not self._stop_requested:
            try:
                ready = list(self._selector.select(timeout=expiration_interval))
            except OSError:
                self._remove_invalid_sockets()
                continue
            for fd, conn in ready:
                if conn is self.server:
                    for _ in range(_ACCEPTS_PER_WAKE):
                        if not self._accept():
                            break
                elif conn.discarding:
                    self._discard_some(fd, conn)
                else:
                    self._readable(fd, conn)
            now = time.monotonic()
            if now - last_check >= expiration_interval:
                self._expire(now)
                last_check = now

    def _accept(self) -> bool:
        """Accept one connection; False when none was waiting."""
        try:
            sock, addr = self.server.socket.accept()
        except (socket.timeout, BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            guard = self.server.descriptors
            if guard is not None and guard.accept_failed(exc, self.server.socket):
                metrics.refused("http", "descriptors")
            elif exc.errno in _OUT_OF_DESCRIPTORS:
                # The listening socket stays readable: wait a little, log seldom.
                metrics.refused("http", "descriptors")
                now = time.monotonic()
                if now - self._descriptor_log > 10:
                    self._descriptor_log = now
                    log.warning("HTTP: cannot accept a connection: %s", exc.strerror)
                time.sleep(0.05)
            return False
        guard = self.server.descriptors
        if guard is not None and not guard.admit(sock.fileno(), "http"):
            self._refuse(sock, "descriptors")
            return True
        address = str(addr[0]) if isinstance(addr, tuple) else "local"
        refusal = self._admit(address)
        if refusal:
            metrics.refused("http", refusal)
            self._refuse(sock, refusal)
            return True
        try:
            prevent_socket_inheritance(sock)
            sock.setblocking(False)
            makefile = _makefile
            adapter = self.server.ssl_adapter
            if adapter is not None:
                sock = adapter.context.wrap_socket(sock, do_handshake_on_connect=False, server_side=True)
                makefile = _tls_makefile
            conn = self.server.ConnectionClass(self.server, sock, makefile)
        except OSError:
            sock.close()
            self._release(address)
            return True
        conn.address = address
        if isinstance(addr, tuple):
            conn.remote_addr, conn.remote_port = addr[0], addr[1]
        conn.ssl_env = {}
        conn.handshaking = adapter is not None
        conn.deadline = time.monotonic() + self.limits.header_timeout_s
        self._selector.register(sock.fileno(), EVENT_READ, data=conn)
        return True

    def _refuse(self, sock: socket.socket, limit: str) -> None:
        """503 (on a plain-HTTP port) and close."""
        text = (f"503 Service Unavailable: too many connections "
                f"{'from your address' if limit == 'connections_per_address' else 'open'}; retry later\n").encode()
        try:
            if self.server.ssl_adapter is None:
                sock.setblocking(False)
                sock.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
                          b"Retry-After: 5\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(text), text))
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            sock.close()

    def _readable(self, fd: int, conn: Connection) -> None:
        if conn.handshaking and not self._handshake(conn):
            if conn.handshaking:
                return  # more of the handshake to come
            self._selector.unregister(fd)
            conn.close()
            return
        state = self.take_head(conn)
        if state == _WAIT:
            return
        self._selector.unregister(fd)
        if state == _READY:
            self.dispatch(conn)
        else:
            conn.close()

    def _handshake(self, conn: Connection) -> bool:
        """Advance a TLS handshake; True once done (False with
        ``conn.handshaking`` still set: wait; cleared: failed)."""
        try:
            conn.socket.do_handshake()
        except _WOULD_BLOCK:
            return False
        except (ssl.SSLError, OSError) as exc:
            log.debug("HTTP: TLS handshake with %s failed: %s", conn.remote_addr, exc)
            metrics.refused("http", "tls_handshake")
            conn.handshaking = False
            if "http request" in str(exc).lower():  # plain HTTP: say so in plain HTTP
                try:
                    socket.socket.send(conn.socket, _PLAIN_HTTP_REPLY)
                except OSError:
                    pass
            return False
        conn.handshaking = False
        conn.ssl_env = self.server.ssl_adapter.get_environ(conn.socket)
        return True

    def take_head(self, conn: Connection) -> str:
        """Read what has arrived of the connection's next request head,
        without blocking: _READY (complete, or too long for the worker to
        refuse), _WAIT or _GONE (closed or broken)."""
        rfile = conn.rfile
        if rfile.has_data():  # read ahead by the worker: the head starts there
            conn.head += rfile._read_buf[rfile._read_pos:]
            rfile._read_buf, rfile._read_pos = b"", 0
        if _HEAD_END.search(conn.head, max(0, conn.scanned - 3)):
            return _READY
        conn.scanned = len(conn.head)
        try:
            conn.socket.setblocking(False)
            while len(conn.head) <= self.limits.max_header_bytes:
                data = conn.socket.recv(_RECV)
                if not data:
                    return _GONE
                conn.head += data
                if _HEAD_END.search(conn.head, max(0, conn.scanned - 3)):
                    return _READY
                conn.scanned = len(conn.head)
            return _READY  # too long: the worker answers 431/414 from what is here
        except _WOULD_BLOCK:
            return _WAIT
        except OSError:
            return _GONE

    def hand_over(self, conn: Connection) -> None:
        """Give the buffered head to the connection's reader, blocking reads
        again (with cheroot's timeout) for the worker."""
        rfile = conn.rfile
        rfile._read_buf, rfile._read_pos = bytes(conn.head), 0
        conn.head.clear()
        conn.scanned = 0
        conn.socket.settimeout(self.server.timeout)

    def discard(self, conn: Connection) -> None:
        """Drop what the client still sends for a moment, then close (Connection.close)."""
        conn.discarding = True
        conn.deadline = time.monotonic() + DISCARD_S
        try:
            self._selector.register(conn.socket.fileno(), EVENT_READ, data=conn)
        except (OSError, ValueError, KeyError, RuntimeError):  # the server stops: close at once
            conn.close()

    def _discard_some(self, fd: int, conn: Connection) -> None:
        try:
            while conn.discarded < DISCARD_BYTES:
                data = conn.socket.recv(1 << 16)
                if not data:
                    break
                conn.discarded += len(data)
        except _WOULD_BLOCK:
            return
        except OSError:
            pass
        self._finish(fd, conn)

    def _finish(self, fd: int, conn: Connection) -> None:
        try:
            self._selector.unregister(fd)
        except (KeyError, ValueError):
            return  # finished already
        conn.close()

    def _expire(self, now: float) -> None:
        """Close connections whose head has not arrived in time (a 408 when
        part of it has), and discarding connections whose moment is over."""
        for fd, conn in list(self._selector.connections):
            if conn is self.server or conn.deadline > now:
                continue
            if not conn.discarding and (conn.head or conn.handshaking or not conn.requests):
                metrics.refused("http", "header_timeout")
                if conn.head:
                    try:
                        conn.socket.send(_TIMEOUT_REPLY)
                    except OSError:
                        pass
            self._finish(fd, conn)


class _Gateway(wsgi.Gateway_10):
    """cheroot's WSGI 1.0 environ, with the connection's :data:`CONNECTION_KEY`
    and the request's :data:`CONTINUE_KEY`."""

    def get_environ(self) -> dict:
        environ = super().get_environ()
        environ[CONNECTION_KEY] = self.req.conn.kept
        environ[CONTINUE_KEY] = self.req.continue_now
        return environ


class Server(wsgi.Server):
    """cheroot's WSGI server with a :class:`Gate` for its connections."""

    ConnectionClass = Connection

    def __init__(self, bind_addr: tuple[str, int], app: Any, limits: Limits, descriptors: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(bind_addr, app, **kwargs)
        self.gateway = _Gateway
        self.request_queue_size = _BACKLOG
        self.limits = limits
        #: gateway.descriptors.Descriptors: the process's descriptor reserve
        self.descriptors = descriptors
        self.max_request_header_size = limits.max_header_bytes

    def prepare(self) -> None:
        super().prepare()
        self._connections._selector.close()  # cheroot's own manager: replaced before it runs
        self._connections = Gate(self, self.limits)
        self.socket.setblocking(False)  # accepted until none waits
