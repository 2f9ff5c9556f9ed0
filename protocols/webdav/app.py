"""``make_dav_app(gw, cfg)``: the WSGI app ``protocols.http`` mounts at /dav."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterable

from wsgidav.dav_error import DAVError
from wsgidav.dir_browser import WsgiDavDirBrowser
from wsgidav.error_printer import ErrorPrinter
from wsgidav.http_authenticator import HTTPAuthenticator
from wsgidav.request_resolver import RequestResolver
from wsgidav.util import normalize_path
from wsgidav.wsgidav_app import WsgiDAVApp

from gateway.chunked import ChunkedUploads
from gateway.davstate import DavState
from protocols.webdav.auth import GatewayDomainController
from protocols.webdav.dispatch import Dispatcher
from protocols.webdav import logfilter
from protocols.webdav.errors import GatewayDAVError, TextErrors, reason
from protocols.webdav.get import ENTRY_KEY
from protocols.webdav.locks import LockStorage
from protocols.webdav.owncloud import MOUNT_KEY
from protocols.webdav.propfind import CHUNKED_KEY
from protocols.webdav.props import PropertyManager
from protocols.webdav.provider import STARTED_KEY, GatewayProvider

__all__ = ["make_dav_app", "MOUNT_PATH"]

#: Bytes per read/write of a GET or PUT body (memory per transfer).
BLOCK_SIZE = 1 << 20

#: Where protocols.http mounts this app (hrefs and Destination headers carry it).
MOUNT_PATH = "/dav"


def make_dav_app(gw: Any, cfg: Any) -> Callable:
    """WebDAV class 1 and 2 over ``gw.ops``; locks and dead properties live
    in the job store's database (see gateway.davstate)."""
    logfilter.install()  # listings are sent chunked on purpose: not an error
    state = gw.ops.davstate
    uploads = ChunkedUploads(Path(cfg.server.state_dir) / "uploads")
    provider = GatewayProvider(gw.ops, state, uploads, propfind_infinity=cfg.http.propfind_infinity,
                               fast_paths=cfg.http.webdav_fast_paths)
    app = WsgiDAVApp({
        "provider_mapping": {"/": provider},
        "mount_path": MOUNT_PATH,
        "lock_storage": LockStorage(state),
        "property_manager": PropertyManager(gw.ops),
        "gateway_logins": gw.logins,
        "gateway_ops": gw.ops,
        "middleware_stack": [ErrorPrinter, TextErrors, HTTPAuthenticator, _FolderBrowser, RequestResolver],
        "http_authenticator": {
            "domain_controller": GatewayDomainController,
            "accept_basic": True,
            "accept_digest": False,
            "default_to_digest": False,
        },
        # ownCloud/Nextcloud clients and rclone (vendor owncloud/nextcloud)
        # send the file's time in X-OC-Mtime.
        "honor_mtime_header": True,
        "hotfixes": {
            # Windows Explorer sets times with PROPPATCH Win32LastModifiedTime.
            "emulate_win32_lastmod": True,
            # Clients send UTF-8 paths; WSGI hands them over as latin-1.
            "re_encode_path_info": True,
        },
        "dir_browser": {
            "enable": True,
            "ms_sharepoint_support": False,
            "libre_office_support": False,
            "response_trailer": False,
            "davmount": True,
        },
        # wsgidav reads and writes bodies in 8 KiB blocks by default: a
        # Python round per 8 KiB capped a 1 GiB GET or PUT well below the disk.
        "block_size": BLOCK_SIZE,
        "suppress_version_info": True,
        "verbose": 1,
        "logging": {"enable": False},
    })
    front = Dispatcher(app, provider, gw.logins, gw.ops) if cfg.http.webdav_fast_paths else app
    return _fix_status_lines(front, state, provider)


class _FolderBrowser(WsgiDavDirBrowser):
    """wsgidav's HTML folder listing, asked only for GET and HEAD of a
    folder: it looks the path up first, which would cost every other request
    one more stat, and a file's GET the building of a wsgidav resource (a
    tenth of a small download's time); the core's stat tells a folder, and
    is kept for a file's HEAD (protocols.webdav.get)."""

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            return self.next_app(environ, start_response)
        provider = environ["wsgidav.provider"]
        if isinstance(provider, GatewayProvider):
            entry = environ[ENTRY_KEY] = provider.entry_of(environ["PATH_INFO"], environ)
            if entry is None or not entry.is_dir:
                return self.next_app(environ, start_response)
        return super().__call__(environ, start_response)


#: Methods whose 201 has no body: wsgidav gives its HTML status page (with
#: a time in it), the gateway's own replies give none.
_EMPTY_CREATED = ("PUT", "MKCOL", "COPY", "MOVE")
_NO_BODY_KEY = "gateway.no_body"


def _fix_status_lines(app: Callable, state: DavState, provider: GatewayProvider) -> Callable:
    """Four slips of wsgidav's replies: statuses it has no text for read
    '202 Status' (give them their standard reason phrase), the folder
    browser's trailing-slash redirect forgets the mount path, a 201 carries
    an HTML page (sent without it, as the fast paths do), and an error's
    text went out after the head of a reply to HEAD; and it would
    close the connection after a reply sent chunked. Each request
    reads locks and properties from one snapshot (DavState.request) and
    notes when it arrived (its sync budget counts from then) and through
    which mount (``/dav`` or a sync-API one, see protocols.webdav.owncloud)."""

    def wrapped(environ: dict, start_response: Callable) -> Iterable[bytes]:
        environ[STARTED_KEY] = time.monotonic()
        provider.begin_request(environ)
        mount = environ.get(MOUNT_KEY) or MOUNT_PATH
        try:
            normalize_path(environ["PATH_INFO"])
        except DAVError:  # wsgidav's own reply to it keeps its Content-Length but loses its body
            content_type, body = GatewayDAVError(400, f"the path leads above {mount}").get_response_page()
            start_response(reason(400), [("Content-Type", content_type), ("Content-Length", str(len(body)))])
            yield body
            return

        def start(status: str, headers: list, exc_info: Any = None) -> Any:
            code, _, text = status.partition(" ")
            if text == "Status" and code.isdigit():
                status = reason(int(code))
            if code == "201" and environ["REQUEST_METHOD"] in _EMPTY_CREATED:
                headers = [(k, "0" if k.lower() == "content-length" else v) for k, v in headers
                           if k.lower() != "content-type"]
                environ[_NO_BODY_KEY] = True
            elif environ["REQUEST_METHOD"] == "HEAD":  # an error's text too: the server sends what it is given,
                environ[_NO_BODY_KEY] = True  # and the next reply on the connection would start with it
            if code == "301":  # only the folder browser redirects, to a path below the mount
                headers = [(k, mount + v if k.lower() == "location" and v.startswith("/") else v)
                           for k, v in headers]
            if environ.get(CHUNKED_KEY):
                headers = [(k, v) for k, v in headers if k.lower() != "connection"]
            return start_response(status, headers, exc_info)

        with state.request():  # wsgidav does its work while its reply is iterated
            for chunk in app(environ, start):
                if not environ.get(_NO_BODY_KEY):
                    yield chunk

    return wrapped
