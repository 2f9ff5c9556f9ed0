"""PUT answered without wsgidav's resource resolution, its body read from the
socket into one reused buffer.

wsgidav's PUT looks the file and its parent up before the core checks both
again when the upload opens, and it reads the body through cheroot's reader,
a pure-Python BufferedReader that joins and slices every block: a small PUT
spent more time in those lookups than in creating the file, and a 1 GiB
upload was bound by the copies. When the request is plain (the provider has
found no lock and no conditional header; a Content-Length or chunked body
with no Content-Encoding or Content-Range, a valid X-OC-Mtime if any), the core's
checks are the only ones that matter: this module opens the upload in the
core and fills it with ``readinto``. Anything else goes to wsgidav unchanged.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator
from urllib.parse import quote

from cheroot.makefile import StreamReader
from cheroot.server import KnownLengthRFile

from gateway import errors as E
from gateway.ops import Upload
from protocols.http_conn import CONTINUE_KEY
from protocols.webdav.auth import SESSION_KEY
from protocols.webdav.errors import refused
from protocols.webdav.owncloud import parse_checksum

__all__ = ["fast_put"]


def fast_put(provider: Any, environ: dict, start_response: Callable, block_size: int) -> Iterator[bytes] | None:
    """The reply to a plain PUT, or None when wsgidav must answer. Raises the
    core's errors (for the caller to translate); the file is then as it was."""
    length = environ.get("CONTENT_LENGTH", "")
    mtime = environ.get("HTTP_X_OC_MTIME")
    path = environ["PATH_INFO"]
    encoding = environ.get("HTTP_TRANSFER_ENCODING")
    chunked = not length and encoding is not None and encoding.strip().lower() == "chunked"
    if (not (length.isdigit() or chunked) or (mtime is not None and not mtime.isdigit()) or path.endswith("/")
            or (encoding is not None and not chunked)
            or any(h in environ for h in ("HTTP_CONTENT_ENCODING", "HTTP_CONTENT_RANGE"))):
        return None
    ops, session = provider.ops, environ[SESSION_KEY]
    # As wsgidav's own PUT: no LOCK on the file is granted while its body arrives.
    with provider.lock_manager.write_transaction(url=quote(provider.state.key(session, path)), token_list=[],
                                                 principal=environ["wsgidav.user_name"]):
        try:
            # Told to continue (Expect: 100-continue) once the core's checks pass.
            upload = ops.open_write(session, path, checked=environ.get(CONTINUE_KEY))
        except E.GatewayError as exc:
            refused(environ, exc)
            return None  # wsgidav's own checks word the refusal
        try:
            checksum = parse_checksum(environ)
            if checksum is not None:
                upload.expect_checksum(*checksum)
            if chunked:  # the HTTP layer checks the chunks: garbage is a BadRequest
                while data := environ["wsgi.input"].read(block_size):
                    upload.write(data)
            else:
                _receive(environ["wsgi.input"], int(length), upload, block_size)
        except BaseException:
            upload.abort()
            raise
        entry = upload.commit()
    kept = None
    if mtime is not None:  # the reply's ETag is the file's after its time is set
        kept = provider.upload_mtime(environ, path, float(mtime))
        entry = ops.stat(session, path)
    headers = [("Content-Length", "0"), *provider.upload_headers(environ, path, entry, kept)]
    start_response("204 No Content" if upload.replaced else "201 Created", headers)
    return iter(())


def _receive(body: Any, length: int, upload: Upload, block_size: int) -> None:
    """Write the ``length`` bytes of the request body to ``upload``. Raises
    BadRequest when the client stops sending before the end."""
    left = length
    rfile = getattr(body, "rfile", None)
    if not (isinstance(body, KnownLengthRFile) and isinstance(rfile, StreamReader)):
        while left:  # another WSGI server: its own reads
            data = body.read(min(left, block_size))
            if not data:
                break
            upload.write(data)
            left -= len(data)
    else:
        while left and rfile.has_data():  # what cheroot read ahead with the headers
            data = rfile.read1(left)
            upload.write(data)
            left -= len(data)
        # Each block filled whole before it is written: one write and one
        # hand-off to the digests per block, not one per segment the socket
        # gives; into a buffer the digests lend where they can (no copy).
        own: memoryview | None = None
        readinto = rfile.raw.readinto
        while left:
            lent = upload.lend()
            buf = memoryview(lent) if lent is not None else own or memoryview(bytearray(min(left, block_size)))
            want = min(left, len(buf))
            got = 0
            while got < want and (n := readinto(buf[got:want])):
                got += n
            if lent is not None:
                upload.write_lent(lent, got)
            else:
                own = buf
                if got:
                    upload.write(buf[:got])
            left -= got
            if got < want:
                break
        rfile.bytes_read += length - left
        body.remaining = left
    if left:
        raise E.BadRequest(f"{upload.path}: the body ended after {length - left} of {length} bytes; not saved")
