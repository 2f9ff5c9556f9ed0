"""The HTTP port: one cheroot server, WebDAV at ``/dav`` (and at the
ownCloud/Nextcloud clients' URLs, protocols.webdav.owncloud), everything else
(REST ``/api/v1``, portal ``/ui``, ``/metrics``) by ``gateway.api``.

Connections go through protocols.http_conn (a worker thread only for a
complete request head; connections bounded), each request through
protocols.http_request (header bounds, chunked bodies, no reading of a
refused body) and protocols.http_guard (UTF-8 path, bounded JSON/XML bodies)."""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from cheroot import wsgi

from protocols.http_conn import Limits, Server
from protocols.http_guard import RequestGuard


__all__ = ["serve", "make_app", "HttpHandle"]

_cheroot_log = logging.getLogger("cheroot")


def _error_log(msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
    """cheroot's error_log, through logging (rate-limited, not raw stderr)."""
    _cheroot_log.log(level, "%s", msg, exc_info=traceback)


def make_app(gw: Any, cfg: Any, closing: threading.Event | None = None) -> Callable:
    """The WSGI app of the HTTP port; ``closing``, once set, ends the
    long-lived event streams."""
    from gateway.api import make_wsgi_app
    from protocols.webdav.app import MOUNT_PATH, make_dav_app
    from protocols.webdav.owncloud import PREFIXES, make_owncloud_app

    dav = make_dav_app(gw, cfg)
    # The ownCloud/Nextcloud sync API: the same WebDAV app at their URLs.
    owncloud = make_owncloud_app(dav, gw.logins)
    dispatch = wsgi.PathInfoDispatcher({MOUNT_PATH: dav, **dict.fromkeys(PREFIXES, owncloud),
                                        "/": make_wsgi_app(gw, cfg, closing)})
    return RequestGuard(dispatch, max_json_bytes=cfg.http.max_json_bytes, max_xml_bytes=cfg.http.max_xml_bytes,
                        dav_mounts=(MOUNT_PATH, "/remote.php"))


class HttpHandle:
    def __init__(self, server: Server, thread: threading.Thread, gw: Any, closing: threading.Event) -> None:
        self.server = server
        self.thread = thread
        self.address = server.bind_addr[:2]
        self._gw = gw
        self._closing = closing

    @property
    def open_connections(self) -> int:
        """Connections open now (idle, half-sent or being answered)."""
        return self.server.gate.open_connections

    def close(self) -> None:
        self._closing.set()  # event streams end, so their threads are free to stop
        with self._gw.store.changed:
            self._gw.store.changed.notify_all()
        self.server.stop()
        self.thread.join(10)


def serve(gw: Any, cfg: Any) -> HttpHandle:
    """Start the HTTP port (``cfg.http``) in a thread; port 0 picks a free one
    (see ``handle.address``)."""
    closing = threading.Event()
    server = Server((cfg.server.host, cfg.http.port), make_app(gw, cfg, closing), Limits.from_config(cfg.http),
                    numthreads=cfg.http.threads, server_name="gateway",
                    descriptors=getattr(gw, "descriptors", None))
    if cfg.http.tls:
        from cheroot.ssl.builtin import BuiltinSSLAdapter

        from gateway.tls import ensure_certificate

        cert, key = ensure_certificate(cfg.server.state_dir, cfg.http.certfile, cfg.http.keyfile)
        server.ssl_adapter = BuiltinSSLAdapter(str(cert), str(key))
    server.error_log = _error_log
    server.prepare()
    thread = threading.Thread(target=server.serve, name="http", daemon=True)
    thread.start()
    return HttpHandle(server, thread, gw, closing)
