"""The FTP listener: one thread per control connection (pyftpdlib's
ThreadedFTPServer), so a slow storage call never blocks other sessions."""

from __future__ import annotations

import threading
from typing import Any

from pyftpdlib.servers import ThreadedFTPServer

from protocols.ftp.handler import make_handler

__all__ = ["serve", "FtpHandle"]


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
    server = ThreadedFTPServer((cfg.server.host, cfg.ftp.port), make_handler(gw, cfg))
    server.max_cons = cfg.ftp.max_connections
    server.max_cons_per_ip = cfg.ftp.max_connections_per_ip
    thread = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.5, "handle_exit": False},
                              name="ftp", daemon=True)
    thread.start()
    return FtpHandle(server, thread)
