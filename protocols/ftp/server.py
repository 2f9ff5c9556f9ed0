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
from typing import Any

from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import ThreadedFTPServer

from gateway import metrics
from gateway.slots import Slot, Slots
from protocols.ftp.handler import make_handler

__all__ = ["serve", "FtpHandle", "Slots"]


class _Server(ThreadedFTPServer):
    """pyftpdlib's threaded server with the gateway's connection slots in
    place of its own limits (which count a connection from its accept on)."""

    def __init__(self, address: Any, handler: type, slots: Slots) -> None:
        # An event loop of its own, not pyftpdlib's process-wide instance:
        # two gateways in one process (tests of several nodes) would run
        # one loop from two threads and close each other's sockets.
        super().__init__(address, handler, ioloop=IOLoop())
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
        """Stop serving and close every session. Done in the server's own
        thread: its poller closed from here while it polls fails there with
        EBADF (a traceback at every shutdown). Returns within a poll's 0.5 s."""
        if self.thread.is_alive():
            self.server.ioloop.call_later(0, self.server.close_all)
            self.thread.join(10)
        if self.thread.is_alive():
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
