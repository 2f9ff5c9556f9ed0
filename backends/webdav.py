"""WebDAV mounts (webdav4 over httpx): ``webdav://host[:port]/path`` (HTTP)
and ``webdavs://...`` (HTTPS).

Renames are one MOVE and copies one COPY, both server-side and sent with
``Overwrite: T`` where the contract replaces the target (webdav4's own ``mv``
of a file is COPY + DELETE). Uploads stream: one PUT with a chunked body,
fed while the client sends (webdav4 would spool the whole file first); at
most :data:`QUEUED_BLOCKS` blocks of up to :data:`BLOCK` bytes wait in
memory, and a writer faster than the server waits for it.

Modification times are set with PROPPATCH of ``DAV:getlastmodified``
(RFC 1123 date; wsgidav with ``mutable_live_props``) or, where that is
refused, ``DAV:lastmodified`` (Unix seconds; ownCloud and Nextcloud). Most
servers refuse both: when the mount opens, its root folder's own time is
set to itself to find out, and the mount's ``mtimes`` capability says what
was found (a server unreachable then counts as refusing until a later call
reaches it, which asks again).

Options: ``auth`` ([user, password]) or ``username``/``password``;
``stream_uploads`` (default True; False for a server that refuses request
bodies of unknown length with 411: uploads are then spooled and sent whole);
``tls_ca_file`` (PEM certificates to trust besides httpx's usual ones, e.g.
a server's self-signed one) and ``tls_verify`` (default True; False turns
the certificate check off), as for FTPS mounts; any other key goes to httpx
(``headers``, ``cert``...). Credentials in the URL
(``webdavs://user:pw@host/``) are moved into ``auth``.
"""

from __future__ import annotations

import email.utils
import logging
import queue
import re
import ssl
import threading
from dataclasses import replace
from typing import Any, Iterator
from urllib.parse import urlsplit

import certifi

from backends.base import Backend
from backends.errors import translate
from gateway import errors as E
from gateway.types import Entry

__all__ = ["WebDAVBackend", "webdav_target", "BLOCK", "QUEUED_BLOCKS"]

log = logging.getLogger("gateway.backends")

#: Largest block an upload queues at once (bigger writes are split).
BLOCK = 1 << 20
#: How many blocks may wait for the server: an upload holds at most
#: BLOCK * QUEUED_BLOCKS bytes, whatever the file's size.
QUEUED_BLOCKS = 4
_END, _ABORT = object(), object()
_TIME_PROPS = (("getlastmodified", lambda t: email.utils.formatdate(t, usegmt=True)),
               ("lastmodified", lambda t: str(int(t))))


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


class _Aborted(Exception):
    """The upload was dropped: the PUT's body ends with an error."""


class StreamingUpload:
    """One PUT whose body is what :meth:`write` gets, sent as it arrives
    (chunked transfer encoding) by a thread of its own. ``close()`` ends
    the body and raises the server's refusal; ``discard()`` cuts the
    request short, so the server keeps no complete file."""

    def __init__(self, client: Any, path: str) -> None:
        self._client = client
        self._path = path
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUED_BLOCKS)
        self._error: BaseException | None = None
        self.closed = False
        self._thread = threading.Thread(target=self._send, name="webdav-put", daemon=True)
        self._thread.start()

    def _body(self) -> Iterator[bytes]:
        while True:
            block = self._queue.get()
            if block is _END:
                return
            if block is _ABORT:
                raise _Aborted()
            yield block

    def _send(self) -> None:
        try:
            self._client.request("PUT", self._path, content=self._body())
        except BaseException as exc:  # noqa: BLE001 - handed to the writer, who raises it translated
            self._error = exc

    def _put(self, item: Any) -> None:
        while True:
            if not self._thread.is_alive():
                raise self._error or E.BackendUnavailable("the upload ended early")
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        for start in range(0, len(view), BLOCK):
            self._put(bytes(view[start:start + BLOCK]))  # the caller may reuse its buffer
        return len(view)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._put(_END)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def discard(self) -> None:
        if self.closed:
            return
        self.closed = True
        while True:  # what waits is dropped, so the end marker always has room
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put_nowait(_ABORT)
        self._thread.join(30)


class WebDAVBackend(Backend):
    #: False for servers that refuse a request body of unknown length (411):
    #: uploads are then spooled by webdav4 and sent whole (mount option
    #: ``stream_uploads = false``).
    stream_uploads = True

    def _open_upload(self, path: str) -> Any:
        if not self.stream_uploads:
            return super()._open_upload(path)
        return StreamingUpload(self.fs.client, path)

    #: The server could not be asked whether it sets times: ask again after
    #: the next call that reached it.
    _probe_due = False

    def probe_mtimes(self) -> None:
        """Find out whether the server sets times (see the module's
        docstring) and make the ``mtimes`` capability say so. Never raises;
        a server that cannot be reached counts as keeping no times until a
        later call reaches it."""
        root = self.join("")
        self._probe_due = False
        try:
            with self._io(root):  # once, without the retries of reads: this runs while the gateway starts
                stamp = self._entry(self.fs.info(root), root).mtime
            found = stamp is not None and self.set_mtime(root, stamp)
        except E.GatewayError as exc:
            log.warning("mount %s: cannot tell whether it keeps modification times (%s); taken as not for now",
                        self.url, exc)
            self._probe_due = exc.retryable
            found = False
        self.capabilities = replace(self.capabilities, mtimes=found)

    def _info(self, path: str) -> Entry:
        entry = super()._info(path)
        if self._probe_due:
            self.probe_mtimes()
        return entry

    def _list(self, path: str) -> tuple[Entry, list[Entry]]:
        listed = super()._list(path)
        if self._probe_due:
            self.probe_mtimes()
        return listed

    def set_mtime(self, path: str, mtime: float) -> bool:
        """PROPPATCH of ``getlastmodified``, else of ``lastmodified``;
        whether the server took one. Raises NotFound, BackendUnavailable."""
        try:
            for name, render in _TIME_PROPS:
                body = (f'<?xml version="1.0" encoding="utf-8"?><d:propertyupdate xmlns:d="DAV:"><d:set><d:prop>'
                        f'<d:{name}>{render(mtime)}</d:{name}></d:prop></d:set></d:propertyupdate>')
                with self._io(path):
                    try:
                        reply = self.fs.client._request("PROPPATCH", path, content=body.encode(),
                                                        headers={"Content-Type": "application/xml"})
                    except Exception as exc:  # noqa: BLE001 - a refusal is an answer, not a failure
                        err = translate(exc)
                        if err.retryable or isinstance(err, E.NotFound):
                            raise
                        continue
                statuses = re.findall(rb"<(?:\w+:)?status>\s*HTTP/[\d.]+\s+(\d{3})", reply.content)
                if reply.status_code in (200, 207) and statuses and all(s.startswith(b"2") for s in statuses):
                    return True
            return False
        finally:
            self.invalidate(path)

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
