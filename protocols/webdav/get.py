"""GET and HEAD of a file answered without wsgidav's resource resolution.

wsgidav's GET looks the resource up (a stat through the core), evaluates
conditional headers and property support, then opens the file for a second
look: a small GET spent more time there than in the read. A plain GET (no
conditional header, no Range) of a file is answered here from the one core
call that opens it, with the headers wsgidav gives (and the ones every reply
with a user's file carries, see gateway.webcontent). Anything else (a folder's
page, ranges, conditions) goes to wsgidav unchanged. A HEAD is answered the
same from the entry the folder browser found (see protocols.webdav.app).
Locks do not matter to a read, so no lock is looked up.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any, BinaryIO, Callable, Iterator

from wsgidav import util

from gateway import errors as E
from gateway.types import Entry
from gateway.webcontent import content_headers
from protocols.webdav.auth import SESSION_KEY
from protocols.webdav.errors import refused

__all__ = ["ENTRY_KEY", "fast_get"]

#: environ key: the entry the folder browser found at the path (GET, HEAD).
ENTRY_KEY = "gateway.entry"


def fast_get(provider: Any, environ: dict, start_response: Callable, block_size: int,
             etag_of: Callable[[Entry], str | None]) -> Iterator[bytes] | None:
    """The reply to a plain GET or HEAD of a file, or None when wsgidav must
    answer. Raises the core's errors (for the caller to translate) before
    anything is sent."""
    path = environ["PATH_INFO"]
    if path.endswith("/") or "HTTP_RANGE" in environ:
        return None
    head = environ["REQUEST_METHOD"] == "HEAD"
    try:
        if head:
            entry = environ.get(ENTRY_KEY) or provider.ops.stat(environ[SESSION_KEY], path)
            if entry.is_dir:
                return None
        else:
            reader, entry = provider.ops.open_read(environ[SESSION_KEY], path)
    except E.GatewayError as exc:
        refused(environ, exc)
        return None  # wsgidav's folder page, or its wording of the refusal
    headers = [("Content-Length", str(entry.size))]
    if entry.mtime is not None:
        headers.append(("Last-Modified", http_date(math.floor(entry.mtime))))
    content_type = util.guess_mime_type(path)
    headers.append(("Content-Type", content_type))
    headers.append(("Date", http_date(math.floor(time.time()))))
    etag = etag_of(entry)
    if etag:
        headers.append(("ETag", f'"{etag}"'))
    headers.append(("Accept-Ranges", "bytes"))
    headers += content_headers(entry.name, content_type)
    start_response("200 OK", headers)
    return iter(()) if head else _body(reader, entry.size, block_size)


@functools.lru_cache(maxsize=1024)
def http_date(second: int) -> str:
    """wsgidav's RFC 1123 date of ``second`` (whole seconds are all it shows:
    email.utils.formatdate took a twentieth of a small download's time)."""
    return util.get_rfc1123_time(second)


def _body(reader: BinaryIO, size: int, block_size: int) -> Iterator[bytes]:
    """``size`` bytes of ``reader`` (never more than Content-Length said)."""
    with reader:
        left = size
        while left > 0:
            block = reader.read(min(block_size, left))
            if not block:
                return
            left -= len(block)
            yield block
