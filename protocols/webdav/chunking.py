"""The chunked-upload collection of the ownCloud/Nextcloud clients,
``/remote.php/dav/uploads/<user>/<transfer>/<chunk>`` (their "chunking
1.0"), over :class:`gateway.chunked.ChunkedUploads`:

- ``MKCOL <transfer>`` starts a transfer, ``PUT <transfer>/<chunk>`` stores
  a chunk, ``PROPFIND <transfer>`` lists the chunks received (a resuming
  client skips those), ``DELETE <transfer>`` abandons it;
- ``MOVE <transfer>/.file`` with ``Destination`` (a file URL on
  ``/remote.php/dav/files/<user>/``) and ``OC-Total-Length`` assembles the
  chunks into one upload through the core; the reply carries the file's
  headers as a PUT's would (ETag after X-OC-Mtime is applied, OC-FileId).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator
from urllib.parse import quote, unquote, urlsplit
from xml.sax.saxutils import escape

from wsgidav import util

from gateway import errors as E
from protocols.webdav.auth import SESSION_KEY
from protocols.webdav.errors import GatewayDAVError
from protocols.webdav.owncloud import parse_checksum

__all__ = ["handle_upload_request"]


def handle_upload_request(provider: Any, environ: dict, start_response: Callable) -> Iterator[bytes]:
    """Answer one request to the upload collection. Raises the core's
    errors (for the caller to translate) or a GatewayDAVError."""
    uploads = provider.uploads
    session = environ[SESSION_KEY]
    method = environ["REQUEST_METHOD"]
    if method != "PUT":
        _drain(environ)
    parts = [p for p in environ["PATH_INFO"].split("/") if p]
    if not parts:
        if method == "PROPFIND":
            return _multistatus(environ, start_response, [], "")
        raise GatewayDAVError(405, "the upload collection holds one folder per transfer")
    transfer, rest = parts[0], parts[1:]
    if len(rest) > 1:
        raise E.NotFound(f"{environ['PATH_INFO']}: no such chunk")
    if method == "MKCOL" and not rest:
        uploads.create(session, transfer)
        return _empty(start_response, "201 Created")
    if method == "PUT" and rest:
        length = environ.get("CONTENT_LENGTH", "")
        if not length.isdigit():
            raise GatewayDAVError(411, "a chunk needs a Content-Length")
        uploads.write_chunk(session, transfer, rest[0], environ["wsgi.input"].read, int(length))
        return _empty(start_response, "201 Created")
    if method == "PROPFIND" and not rest:
        chunks = uploads.chunks(session, transfer)
        return _multistatus(environ, start_response, chunks, transfer)
    if method == "DELETE" and not rest:
        uploads.discard(session, transfer)
        return _empty(start_response, "204 No Content")
    if method == "MOVE" and rest == [".file"]:
        return _assemble(provider, environ, start_response, transfer)
    raise GatewayDAVError(405, f"{method} is not allowed on {environ['PATH_INFO']} in the upload collection")


def _assemble(provider: Any, environ: dict, start_response: Callable, transfer: str) -> Iterator[bytes]:
    session = environ[SESSION_KEY]
    path = _destination(environ, session.user.name)
    total = environ.get("HTTP_OC_TOTAL_LENGTH")
    if total is not None and not total.isdigit():
        raise GatewayDAVError(400, f"OC-Total-Length: not a length: {total!r}")
    mtime = environ.get("HTTP_X_OC_MTIME")
    if mtime is not None and not mtime.isdigit():
        raise GatewayDAVError(400, f"X-OC-Mtime: not a time: {mtime!r}")
    ops = provider.ops
    # As a PUT: no LOCK on the file is granted while it is written.
    with provider.lock_manager.write_transaction(url=quote(provider.state.key(session, path)), token_list=[],
                                                 principal=environ["wsgidav.user_name"]):
        entry, replaced = provider.uploads.assemble(ops, session, transfer, path,
                                                    None if total is None else int(total),
                                                    parse_checksum(environ))
    kept = None
    if mtime is not None:
        kept = provider.upload_mtime(environ, path, float(mtime))
        entry = ops.stat(session, path)
    headers = [("Content-Length", "0"), *provider.upload_headers(environ, path, entry, kept)]
    start_response("204 No Content" if replaced else "201 Created", headers)
    return iter(())


def _destination(environ: dict, user: str) -> str:
    """The user path a MOVE's Destination names on the Nextcloud files URL."""
    header = environ.get("HTTP_DESTINATION", "")
    base = f"/remote.php/dav/files/{user}/"
    path = unquote(urlsplit(header).path) if header else ""
    if not path.startswith(base):
        raise GatewayDAVError(400, f"Destination must be a file under {base}, not {header!r}")
    return "/" + path[len(base):].strip("/")


def _drain(environ: dict) -> None:
    """Read a request body nobody needs (a PROPFIND's), so the connection
    can carry the next request."""
    length = environ.get("CONTENT_LENGTH", "")
    if length.isdigit() and int(length) <= 1 << 20:
        environ["wsgi.input"].read(int(length))


def _empty(start_response: Callable, status: str) -> Iterator[bytes]:
    start_response(status, [("Content-Length", "0")])
    return iter(())


def _multistatus(environ: dict, start_response: Callable, chunks: list, transfer: str) -> Iterator[bytes]:
    base = environ.get("gateway.dav_mount", "") + "/" + (quote(transfer) + "/" if transfer else "")
    out = ['<?xml version="1.0" encoding="utf-8" ?>\n<D:multistatus xmlns:D="DAV:">',
           f"<D:response><D:href>{escape(base)}</D:href><D:propstat><D:prop><D:resourcetype><D:collection/>"
           "</D:resourcetype></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"]
    if environ.get("HTTP_DEPTH", "1") != "0":
        for e in chunks:
            out.append(f"<D:response><D:href>{escape(base + quote(e.name))}</D:href><D:propstat><D:prop>"
                       f"<D:resourcetype/><D:getcontentlength>{e.size}</D:getcontentlength>"
                       f"<D:getlastmodified>{util.get_rfc1123_time(e.mtime)}</D:getlastmodified>"
                       "</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>")
    out.append("</D:multistatus>")
    body = "".join(out).encode()
    start_response("207 Multi-Status", [("Content-Type", "application/xml; charset=utf-8"),
                                        ("Content-Length", str(len(body)))])
    return iter([body])
