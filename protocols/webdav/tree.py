"""MKCOL and DELETE answered without wsgidav's resource resolution.

wsgidav looks the path and its parent up (a stat each through the core),
checks the body, Depth and locks, and then asks the provider, whose core
call checks the same paths again. When the request is plain (the provider
has found no lock and no conditional header; no body, no Depth but the one
wsgidav takes for any resource, no X-OC-Mtime), the core's checks are the
only ones that matter: these hand the request to the core directly. A
request the core refuses (nothing changed) goes to wsgidav unchanged, which
words the refusal (the core's, kept: see protocols.webdav.errors.REFUSED_KEY);
so does anything else.
"""

from __future__ import annotations

from typing import Callable, Iterator

from gateway import errors as E
from protocols.webdav.errors import refused

__all__ = ["REFUSALS", "fast_delete", "fast_mkcol", "bodiless"]

#: The core's errors that refuse a request before it changes anything (a
#: tree half deleted or copied by a failing storage is no refusal: its
#: error is answered as it is).
REFUSALS = (E.NotFound, E.AlreadyExists, E.NotADirectory, E.IsADirectory, E.DirectoryNotEmpty,
            E.PermissionDenied, E.Conflict, E.ReadOnly, E.Unsupported, E.BadRequest)


def bodiless(environ: dict) -> bool:
    """The request has no body."""
    return environ.get("CONTENT_LENGTH", "") in ("", "0") and "HTTP_TRANSFER_ENCODING" not in environ


def fast_mkcol(environ: dict, start_response: Callable, mkdir: Callable[[str], object]) -> Iterator[bytes] | None:
    """The reply to a plain MKCOL, or None when wsgidav must answer.
    ``mkdir(path)`` makes the folder (raising the core's errors)."""
    path = environ["PATH_INFO"].rstrip("/")
    if (not path or not bodiless(environ) or environ.get("HTTP_DEPTH", "0") != "0"
            or "HTTP_X_OC_MTIME" in environ):
        return None
    try:
        mkdir(path)
    except E.GatewayError as exc:
        refused(environ, exc)
        return None
    start_response("201 Created", [("Content-Length", "0")])
    return iter(())


def fast_delete(environ: dict, start_response: Callable, delete: Callable[[str], object]
                ) -> Iterator[bytes] | None:
    """The reply to a plain DELETE, or None when wsgidav must answer.
    ``delete(path)`` removes the file or tree (raising the core's errors, or
    the 202 of a delete the client lets run on)."""
    path = environ["PATH_INFO"].rstrip("/")
    if not path or not bodiless(environ) or environ.get("HTTP_DEPTH", "infinity") != "infinity":
        return None
    try:
        delete(path)
    except REFUSALS as exc:
        refused(environ, exc)
        return None
    start_response("204 No Content", [("Content-Length", "0")])
    return iter(())
