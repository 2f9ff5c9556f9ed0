"""MOVE and COPY answered without wsgidav's resource resolution.

wsgidav resolves the source, the destination and its parent before it calls
the provider, and the core then checks the same paths again: on distant
storage (S3) those lookups alone spent the client's sync budget. When the
request is plain (the provider has found no lock and no conditional header;
no body, a Destination on this server, Depth infinity), the core's checks
are the only ones that matter; this module hands the request to it directly.
A request the core refuses (nothing changed) goes to wsgidav unchanged,
which words the refusal (the core's, kept: see protocols.webdav.errors.REFUSED_KEY);
so does anything else.
"""

from __future__ import annotations

from typing import Callable, Iterator
from urllib.parse import unquote, urlsplit

from protocols.webdav.errors import refused
from protocols.webdav.tree import REFUSALS, bodiless

__all__ = ["fast_move"]


def fast_move(environ: dict, start_response: Callable, mount_path: str,
              move: Callable[[str, str, bool], bool]) -> Iterator[bytes] | None:
    """The reply to a plain MOVE or COPY, or None when wsgidav must answer.
    ``move(src, dst, overwrite)`` runs it (raising the core's errors, or the
    202 of an operation the client lets run on) and says whether it replaced
    an existing destination."""
    dst = _destination(environ, mount_path)
    overwrite = environ.get("HTTP_OVERWRITE", "T")
    src = environ["PATH_INFO"].rstrip("/") or "/"
    if (dst is None or overwrite not in ("T", "F") or environ.get("HTTP_DEPTH", "infinity") != "infinity"
            or not bodiless(environ) or src == "/" or dst == "/"
            or dst == src or dst.startswith(src + "/")):
        return None
    try:
        replaced = move(src, dst, overwrite == "T")
    except REFUSALS as exc:
        refused(environ, exc)
        return None  # nothing changed: wsgidav's own checks word the refusal
    start_response("204 No Content" if replaced else "201 Created", [("Content-Length", "0")])
    return iter(())


def _destination(environ: dict, mount_path: str) -> str | None:
    """The user path the Destination header names, or None when it is
    missing, elsewhere, or not plain ASCII (wsgidav judges those)."""
    header = environ.get("HTTP_DESTINATION", "")
    if not header or not header.isascii():
        return None
    parts = urlsplit(header)
    if parts.scheme and parts.scheme.lower() != environ.get("wsgi.url_scheme", "http"):
        return None
    if parts.netloc and parts.netloc.lower() != environ.get("HTTP_HOST", "").lower():
        return None
    path = unquote(parts.path)
    if parts.query or parts.fragment or not path.startswith(mount_path + "/"):
        return None
    return path[len(mount_path):].rstrip("/") or "/"
