"""The HTTP port: one cheroot server, WebDAV at ``/dav`` (and at the
ownCloud/Nextcloud clients' URLs, protocols.webdav.owncloud), everything else
(REST ``/api/v1``, portal ``/ui``, ``/metrics``) by ``gateway.api``."""

from __future__ import annotations

import select
import threading
from typing import Any

from cheroot import wsgi
from cheroot.server import HTTPConnection


__all__ = ["serve", "make_app", "HttpHandle"]

#: How long a worker thread waits for a kept-alive client's next request
#: before it hands the connection back to cheroot's selector thread.
LINGER_S = 0.002


def make_app(gw: Any, cfg: Any, closing: threading.Event | None = None) -> wsgi.PathInfoDispatcher:
    """The WSGI app of the HTTP port; ``closing``, once set, ends the
    long-lived event streams."""
    from gateway.api import make_wsgi_app
    from protocols.webdav import make_dav_app
    from protocols.webdav.owncloud import PREFIXES, make_owncloud_app

    dav = make_dav_app(gw, cfg)
    # The ownCloud/Nextcloud sync API: the same WebDAV app at their URLs.
    owncloud = make_owncloud_app(dav, gw.logins)
    return wsgi.PathInfoDispatcher({"/dav": dav, **dict.fromkeys(PREFIXES, owncloud),
                                    "/": make_wsgi_app(gw, cfg, closing)})


class HttpHandle:
    def __init__(self, server: wsgi.Server, thread: threading.Thread, gw: Any, closing: threading.Event) -> None:
        self.server = server
        self.thread = thread
        self.address = server.bind_addr[:2]
        self._gw = gw
        self._closing = closing

    def close(self) -> None:
        self._closing.set()  # event streams end, so their threads are free to stop
        with self._gw.store.changed:
            self._gw.store.changed.notify_all()
        self.server.stop()
        self.thread.join(10)


class _LingeringConnection(HTTPConnection):
    """A connection whose worker thread answers the client's next request
    itself when it arrives within :data:`LINGER_S` and no other connection
    waits for a worker. cheroot hands every kept-alive connection back to
    its selector thread after each reply, and the selector then queues it
    for a worker again: two thread hand-offs per request, about a tenth of
    a small PUT's time (clients that upload or list file after file send the
    next request at once)."""

    def communicate(self) -> bool:
        while True:
            keep = super().communicate()
            if not keep or self.rfile.has_data() or self.server.requests.qsize:
                return keep
            pending = getattr(self.socket, "pending", None)  # TLS: bytes already decrypted
            if not (pending and pending()) and not select.select([self.socket], [], [], LINGER_S)[0]:
                return keep


def serve(gw: Any, cfg: Any) -> HttpHandle:
    """Start the HTTP port (``cfg.http``) in a thread; port 0 picks a free one
    (see ``handle.address``)."""
    closing = threading.Event()
    server = wsgi.Server((cfg.server.host, cfg.http.port), make_app(gw, cfg, closing), numthreads=cfg.http.threads,
                         server_name="gateway")
    server.ConnectionClass = _LingeringConnection
    if cfg.http.tls:
        from cheroot.ssl.builtin import BuiltinSSLAdapter

        from gateway.tls import ensure_certificate

        cert, key = ensure_certificate(cfg.server.state_dir, cfg.http.certfile, cfg.http.keyfile)
        server.ssl_adapter = BuiltinSSLAdapter(str(cert), str(key))
    server.prepare()
    thread = threading.Thread(target=server.serve, name="http", daemon=True)
    thread.start()
    return HttpHandle(server, thread, gw, closing)
