"""WebDAV mounts (webdav4 over httpx): ``webdav://host[:port]/path`` (HTTP)
and ``webdavs://...`` (HTTPS).

Renames are one MOVE and copies one COPY, both server-side and sent with
``Overwrite: T`` where the contract replaces the target (webdav4's own ``mv``
of a file is COPY + DELETE). Uploads are spooled by webdav4 (memory, then a
temporary file) and sent as one PUT when the file is committed.

Options: ``auth`` ([user, password]) or ``username``/``password``; any other
key goes to httpx (``verify``, ``headers``, ``cert``...). Credentials in
the URL (``webdavs://user:pw@host/``) are moved into ``auth``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

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
