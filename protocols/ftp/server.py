"""The FTP listener: one thread per control connection (pyftpdlib's
ThreadedFTPServer), so a slow storage call never blocks other sessions."""

from __future__ import annotations

import threading
from typing import Any

from pyftpdlib.servers import ThreadedFTPServer

from protocols.ftp.handler import make_handler

__all__ = ["serve", "FtpHandle"]


class _Server(ThreadedFTPServer):
    """pyftpdlib's threaded server counts the running control connections
    without the one being accepted, so it let ``max_cons + 1`` in. The same
    check guards PASV/PORT, where the count (control connections only) may
    reach the limit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._accepting = threading.local()

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
            try:
                sock.sendall(b"421 Too many open connections, try again later.\r\n")
            except OSError:
                pass
            sock.close()
            return None
        self._accepting.now = True
        try:
            return super().handle_accepted(sock, addr)
        finally:
            self._accepting.now = False

    def _accept_new_cons(self) -> bool:
        if not self.max_cons:
            return True
        count = self._map_len()
        return count < self.max_cons if getattr(self._accepting, "now", False) else count <= self.max_cons


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
    server = _Server((cfg.server.host, cfg.ftp.port), make_handler(gw, cfg))
    server.max_cons = cfg.ftp.max_connections
    server.max_cons_per_ip = cfg.ftp.max_connections_per_ip
    server.descriptors = getattr(gw, "descriptors", None)
    thread = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.5, "handle_exit": False},
                              name="ftp", daemon=True)
    thread.start()
    return FtpHandle(server, thread)
