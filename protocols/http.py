"""The HTTP port: one cheroot server, WebDAV at ``/dav``, everything else
(REST ``/api/v1``, portal ``/ui``, ``/metrics``) by ``gateway.api``."""

from __future__ import annotations

import logging
import threading
from typing import Any

from cheroot import wsgi

log = logging.getLogger("gateway.http")

__all__ = ["serve", "make_app", "HttpHandle"]


def _not_found(environ, start_response):
    body = b"not found\n"
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def make_app(gw: Any, cfg: Any):
    """The WSGI app of the HTTP port; parts not built yet answer 404."""
    routes: dict[str, Any] = {}
    try:
        from protocols.webdav import make_dav_app
    except ImportError:
        log.warning("WebDAV front end not available")
    else:
        routes["/dav"] = make_dav_app(gw, cfg)
    try:
        from gateway.api import make_wsgi_app
    except ImportError:
        log.warning("REST API not available")
        routes["/"] = _not_found
    else:
        routes["/"] = make_wsgi_app(gw, cfg)
    return wsgi.PathInfoDispatcher(routes)


class HttpHandle:
    def __init__(self, server: wsgi.Server, thread: threading.Thread) -> None:
        self.server = server
        self.thread = thread
        self.address = server.bind_addr[:2]

    def close(self) -> None:
        self.server.stop()
        self.thread.join(10)


def serve(gw: Any, cfg: Any) -> HttpHandle:
    """Start the HTTP port (``cfg.http``) in a thread; port 0 picks a free one
    (see ``handle.address``)."""
    server = wsgi.Server((cfg.server.host, cfg.http.port), make_app(gw, cfg), numthreads=cfg.http.threads,
                         server_name="gateway")
    if cfg.http.tls:
        from cheroot.ssl.builtin import BuiltinSSLAdapter

        from gateway.tls import ensure_certificate

        cert, key = ensure_certificate(cfg.server.state_dir, cfg.http.certfile, cfg.http.keyfile)
        server.ssl_adapter = BuiltinSSLAdapter(str(cert), str(key))
    server.prepare()
    thread = threading.Thread(target=server.serve, name="http", daemon=True)
    thread.start()
    return HttpHandle(server, thread)
