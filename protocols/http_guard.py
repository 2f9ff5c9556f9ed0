"""What every request on the HTTP port passes before WebDAV, REST or the
portal see it: a URL path that is UTF-8, and a bounded body.

PUT bodies are uploads: streamed to storage, never bounded here. Every other
body is small by nature (JSON or a form for /api and /ui, XML for /dav), so
one whose Content-Length is over ``max_json_bytes`` / ``max_xml_bytes`` gets
413 before a byte of it is read (and the connection closes after the reply,
see protocols.http_request), and a chunked one is read here up to the limit
(a malformed chunk: 400). A chunked upload that breaks the coding half-way
gets 400 in place of whatever error reply the application made of it.
"""

from __future__ import annotations

import io
import json
from http import HTTPStatus
from typing import Any, Callable, Iterable, Iterator

from gateway import metrics
from protocols.http_request import BadChunk, ChunkedBody

__all__ = ["RequestGuard"]


class RequestGuard:
    """WSGI middleware around the whole HTTP port; ``dav_mounts``: the paths
    of WebDAV (XML bodies, plain-text replies; the others are JSON, as the
    REST API's)."""

    def __init__(self, app: Callable, *, max_json_bytes: int, max_xml_bytes: int,
                 dav_mounts: tuple[str, ...]) -> None:
        self.app = app
        self.max_json_bytes = max_json_bytes
        self.max_xml_bytes = max_xml_bytes
        self.dav_mounts = dav_mounts

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        dav = any(path == m or path.startswith(m + "/") for m in self.dav_mounts)
        try:
            path.encode("latin-1").decode("utf-8")  # WSGI hands the path over as latin-1
        except UnicodeError:
            return self._refuse(start_response, dav, 400, "bad_url", "the URL path is not valid UTF-8")
        body = environ.get("wsgi.input")
        if environ.get("REQUEST_METHOD") == "PUT":
            if isinstance(body, ChunkedBody):
                return self._watch_chunks(environ, start_response, body, dav)
            return self.app(environ, start_response)
        limit, kind = (self.max_xml_bytes, "an XML") if dav else (self.max_json_bytes, "a JSON or form")
        length = environ.get("CONTENT_LENGTH", "")
        if length.isdigit() and int(length) > limit:
            return self._refuse(start_response, dav, 413, "body_too_large",
                                f"{kind} request body may have at most {limit} bytes; this one has {length}")
        if isinstance(body, ChunkedBody):
            try:
                data = body.read(limit + 1)
            except BadChunk as exc:
                return self._refuse(start_response, dav, 400, "bad_chunked", exc.message)
            if len(data) > limit:
                return self._refuse(start_response, dav, 413, "body_too_large",
                                    f"{kind} request body may have at most {limit} bytes")
            environ["wsgi.input"] = io.BytesIO(data)
            environ["CONTENT_LENGTH"] = str(len(data))
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            environ["wsgi.input_terminated"] = False
        return self.app(environ, start_response)

    def _refuse(self, start_response: Callable, dav: bool, status: int, limit: str, message: str) -> list[bytes]:
        metrics.refused("http", limit)
        line = f"{status} {HTTPStatus(status).phrase}"
        if dav:
            ctype, body = "text/plain; charset=utf-8", f"{line}: {message}\n".encode()
        else:
            error = {400: "BadRequest", 413: "ContentTooLarge"}[status]
            ctype, body = "application/json", json.dumps({"error": message, "type": error}).encode()
        start_response(line, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
        return [body]

    def _watch_chunks(self, environ: dict, start_response: Callable, body: ChunkedBody, dav: bool) -> Iterator[bytes]:
        """The application's reply, or 400 when the chunked body it read was malformed."""
        held: list[tuple[str, list, Any]] = []

        def start(status: str, headers: list, exc_info: Any = None) -> Callable:
            if body.error:
                held.append((status, headers, exc_info))
                return lambda data: None
            return start_response(status, headers, exc_info)

        reply = self.app(environ, start)
        try:
            for chunk in reply:
                if held:
                    break
                yield chunk
        finally:
            close = getattr(reply, "close", None)
            if close:
                close()
        if held:
            yield from self._refuse(start_response, dav, 400, "bad_chunked", body.error or "")
