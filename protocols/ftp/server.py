"""The FTP listener: one thread per control connection (pyftpdlib's
ThreadedFTPServer), so a slow storage call never blocks other sessions.

Connection slots are the gateway's, not pyftpdlib's: a connection that has
not logged in holds an *unauthenticated* slot (few per address, a bounded
number in all, for ``login_timeout_s`` at most); a login trades it for a
*session* slot (``max_connections``, ``max_connections_per_ip``). So idle
sockets from one address can neither hold the sessions' limit nor keep
other addresses from logging in."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from pyftpdlib.servers import ThreadedFTPServer

from gateway import metrics
from protocols.ftp.handler import make_handler

__all__ = ["serve", "FtpHandle", "Slots"]


@dataclass
class Slot:
    ip: str
    logged_in: bool = False
    released: bool = False


class Slots:
    """Counts of connections by address and in all, before and after login.
    Thread-safe; a refusal is ``(limit name, reply text)``."""

    def __init__(self, max_sessions: int, max_sessions_per_ip: int, max_pending: int, max_pending_per_ip: int) -> None:
        self._limits = (max_sessions, max_sessions_per_ip, max_pending, max_pending_per_ip)
        self._lock = threading.Lock()
        self._pending: Counter[str] = Counter()
        self._sessions: Counter[str] = Counter()

    def admit(self, ip: str) -> Slot | tuple[str, str]:
        """An unauthenticated slot for a new connection from ``ip``, or the refusal."""
        _, _, max_pending, max_per_ip = self._limits
        with self._lock:
            if self._pending[ip] >= max_per_ip:
                return "unauthenticated_per_ip", "Too many connections from your address waiting to log in."
            if self._pending.total() >= max_pending:
                return "unauthenticated", "Too many connections waiting to log in; try again later."
            self._pending[ip] += 1
        return Slot(ip)

    def promote(self, slot: Slot | None) -> tuple[str, str] | None:
        """Trade ``slot`` for a session slot at login; None when done (or
        already logged in), else the refusal (``slot`` is kept as it was)."""
        if slot is None or slot.logged_in or slot.released:
            return None
        max_sessions, max_per_ip, _, _ = self._limits
        with self._lock:
            if self._sessions[slot.ip] >= max_per_ip:
                return "connections_per_ip", "Too many connections from the same IP address."
            if self._sessions.total() >= max_sessions:
                return "connections", "Too many connections. Service temporarily unavailable."
            self._pending[slot.ip] -= 1
            self._sessions[slot.ip] += 1
            slot.logged_in = True
        return None

    def release(self, slot: Slot | None) -> None:
        """Give ``slot`` back; idempotent."""
        if slot is None:
            return
        with self._lock:
            if slot.released:
                return
            slot.released = True
            counts = self._sessions if slot.logged_in else self._pending
            counts[slot.ip] -= 1
            if counts[slot.ip] <= 0:
                del counts[slot.ip]

    def counts(self) -> tuple[int, int]:
        """(connections not logged in, sessions), for tests and metrics."""
        with self._lock:
            return self._pending.total(), self._sessions.total()


class _Server(ThreadedFTPServer):
    """pyftpdlib's threaded server with the gateway's connection slots in
    place of its own limits (which count a connection from its accept on)."""

    def __init__(self, address: Any, handler: type, slots: Slots) -> None:
        super().__init__(address, handler)
        self.slots = slots
        #: The slot taken for the connection being accepted, handed to its
        #: handler (accepts all happen in the acceptor's thread).
        self.next_slot: Slot | None = None
        self.max_cons = 0  # counted by ``slots``
        self.max_cons_per_ip = 0

    #: The gateway's DescriptorGuard (None: no check).
    descriptors: Any = None

    def handle_accept(self) -> None:
        try:
            super().handle_accept()
        except OSError as exc:  # out of descriptors: refuse and pause, never spin
            if self.descriptors is None or not self.descriptors.accept_failed(exc, self.socket):
                raise

    def handle_accepted(self, sock: Any, addr: Any) -> Any:
        if self.descriptors is not None and not self.descriptors.admit(sock.fileno()):
            slot: Any = ("descriptors", "Too many open connections, try again later.")
        else:
            slot = self.slots.admit(addr[0])
        if isinstance(slot, tuple):
            limit, text = slot
            metrics.refused("ftp", limit)
            try:
                sock.setblocking(False)
                sock.send(f"421 {text}\r\n".encode())
            except OSError:
                pass
            sock.close()
            return None
        self.next_slot = slot
        try:
            return super().handle_accepted(sock, addr)
        finally:
            if self.next_slot is not None:  # no handler took it
                self.slots.release(self.next_slot)
                self.next_slot = None


class FtpHandle:
    def __init__(self, server: ThreadedFTPServer, thread: threading.Thread) -> None:
        self.server = server
        self.thread = thread
        self.address = server.address[:2]

    def close(self) -> None:
        self.server.close_all()
        self.thread.join(10)


def serve(gw: Any, cfg: Any) -> FtpHandle:
    """Start the FTP port (``cfg.ftp``) in a thread."""
    c = cfg.ftp
    slots = Slots(c.max_connections, c.max_connections_per_ip, c.max_unauthenticated, c.max_unauthenticated_per_ip)
    server = _Server((cfg.server.host, c.port), make_handler(gw, cfg), slots)
    server.descriptors = getattr(gw, "descriptors", None)
    thread = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.5, "handle_exit": False},
                              name="ftp", daemon=True)
    thread.start()
    return FtpHandle(server, thread)
