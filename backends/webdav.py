"""WebDAV mounts (webdav4 over httpx): ``webdav://host[:port]/path`` (HTTP)
and ``webdavs://...`` (HTTPS).

Renames are one MOVE and copies one COPY, both server-side and sent with
``Overwrite: T`` where the contract replaces the target (webdav4's own ``mv``
of a file is COPY + DELETE). Uploads are spooled by webdav4 (memory, then a
temporary file) and sent as one PUT when the file is committed.

Options: ``auth`` ([user, password]) or ``username``/``password``;
``tls_ca_file`` (PEM certificates to trust besides httpx's usual ones, e.g.
a server's self-signed one) and ``tls_verify`` (default True; False turns
the certificate check off), as for FTPS mounts; any other key goes to httpx
(``headers``, ``cert``...). Credentials in the URL
(``webdavs://user:pw@host/``) are moved into ``auth``.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

import certifi

from backends.base import Backend

__all__ = ["WebDAVBackend", "webdav_target"]


def webdav_target(url: str, options: dict[str, Any], timeout_s: float) -> tuple[dict[str, Any], str]:
    """(webdav4 filesystem options, root path) for a ``webdav(s)://`` URL."""
    parts = urlsplit(url)
    scheme = "https" if parts.scheme in ("webdavs", "davs") else "http"
    netloc = parts.hostname or "localhost"
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    opts = dict(options)
    user, password = opts.pop("username", None), opts.pop("password", None)
    if parts.username and user is None:
        user, password = parts.username, parts.password
    if user is not None and "auth" not in opts:
        opts["auth"] = (user, password or "")
    if isinstance(opts.get("auth"), list):
        opts["auth"] = tuple(opts["auth"])
    ca_file, verify = opts.pop("tls_ca_file", None), opts.pop("tls_verify", True)
    if ca_file is not None or not verify:
        opts["verify"] = _tls_context(ca_file, bool(verify))
    opts.setdefault("timeout", timeout_s)
    opts.setdefault("retry", False)  # retries belong to the mount (Backend.retries)
    opts["base_url"] = f"{scheme}://{netloc}"
    opts["skip_instance_cache"] = True
    return opts, parts.path.rstrip("/") or "/"


class WebDAVBackend(Backend):
    def _rename(self, src: str, dst: str) -> None:
        self.fs.client.move(src, dst, overwrite=False)

    def _replace(self, tmp: str, path: str) -> None:
        self.fs.client.move(tmp, path, overwrite=True)

    def _server_copy(self, src: str, dst: str) -> None:
        self.fs.client.copy(src, dst, overwrite=True)


def _tls_context(ca_file: str | None, verify: bool) -> ssl.SSLContext:
    """What httpx trusts by default (certifi's roots), plus ``ca_file``; no
    check at all when not ``verify``."""
    context = ssl.create_default_context(cafile=certifi.where())
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
