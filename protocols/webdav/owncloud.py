"""The ownCloud/Nextcloud sync API subset their desktop and command-line
clients use against a plain server, over the same WebDAV app as ``/dav``.

- ``/status.php``, ``/ocs/v{1,2}.php/cloud/capabilities`` and
  ``/ocs/v{1,2}.php/cloud/user``: answered here (always JSON: the clients ask
  ``?format=json``).
- ``/remote.php/webdav/…`` (ownCloud) and ``/remote.php/dav/files/<user>/…``
  (Nextcloud): the very WSGI app mounted at ``/dav``, told its mount path for
  this request (hrefs and Destination headers use it), so sessions, locks,
  properties, permissions and the core are the same. ``<user>`` must be the
  signed-in user.
- ``/remote.php/dav/uploads/<user>/<transfer>/…``: the chunked-upload
  collection (``chunking``), also behind the WebDAV app's authentication.

On those mounts every entry also has the clients' live properties
(``oc:id``, ``oc:fileid``, ``oc:permissions``, ``oc:size``,
``oc:checksums``, a folder ``getetag``; see :class:`OcProps`), and upload
replies carry ``OC-FileId`` and ``OC-ETag``. An upload's ``OC-Checksum``
(any WebDAV URL) is verified by the core and kept, with the digests the
core computes of every upload. A file's ETag here survives moves made
through the gateway (gateway.fileids).
"""

from __future__ import annotations

import base64
import json
from typing import Any, Callable, Iterable

from gateway import errors as E
from gateway.fileids import FileId
from gateway.ops import CHECKSUMS
from gateway.types import Entry, Session

__all__ = ["make_owncloud_app", "OcProps", "MOUNT_KEY", "OC_KEY", "USER_KEY", "UPLOADS_KEY", "OC_NS",
           "PREFIXES", "upload_headers", "folder_etag", "oc_id", "oc_checksum", "parse_checksum"]

#: environ keys set for a request to the WebDAV app through one of the
#: mounts here: its mount path, that it is a sync-API request, the user the
#: URL names, and whether it addresses the chunked-upload collection.
MOUNT_KEY = "gateway.dav_mount"
OC_KEY = "gateway.owncloud"
USER_KEY = "gateway.owncloud_user"
UPLOADS_KEY = "gateway.owncloud_uploads"

OC_NS = "http://owncloud.org/ns"

#: Where protocols.http mounts this app.
PREFIXES = ("/status.php", "/ocs", "/remote.php")

#: Appended to the numeric id in ``oc:id`` (as a server's instance id).
_INSTANCE = "ocgateway"

#: What the clients read from status.php (``version`` gates their features;
#: this one has chunking NG and no bulk upload). ownCloud 2.x chunks only
#: with ``dav.chunking`` >= 1.0 AND ``files.bigfilechunking`` true (its
#: Capabilities::chunkingNg); a file up to one chunk then goes in one plain
#: PUT, never as old-style ``OC-Chunked`` parts (which are refused).
_VERSION = "25.0.0.0"
_STATUS = {"installed": True, "maintenance": False, "needsDbUpgrade": False, "version": _VERSION,
           "versionstring": "25.0.0", "edition": "", "productname": "gateway", "extendedSupport": False}

_CAPABILITIES = {
    "version": {"major": 25, "minor": 0, "micro": 0, "string": "25.0.0", "edition": "", "extendedSupport": False},
    "capabilities": {
        "core": {"pollinterval": 60, "webdav-root": "remote.php/webdav"},
        "dav": {"chunking": "1.0"},
        "checksums": {"supportedTypes": ["SHA1", "MD5", "SHA256"], "preferredUploadType": "SHA1"},
        "files": {"bigfilechunking": True, "undelete": False, "versioning": False,
                  "blacklisted_files": [".htaccess"]},
    },
}


def oc_id(file_id: int) -> str:
    """``oc:id`` / ``OC-FileId`` of a numeric file id."""
    return f"{file_id:08d}{_INSTANCE}"


def oc_checksum(checksum: str) -> str:
    """The clients' spelling ("SHA1:<hex> MD5:<hex>") of core checksums
    ("sha1:<hex> md5:<hex>")."""
    out = []
    for one in checksum.split():
        algorithm, _, digest = one.partition(":")
        out.append(f"{algorithm.upper()}:{digest}")
    return " ".join(out)


def parse_checksum(environ: dict) -> tuple[str, str] | None:
    """(algorithm, hex digest) of an upload's ``OC-Checksum`` header, when
    it names one the core verifies (others, e.g. Adler32, are ignored, as
    a server that does not know them would)."""
    header = environ.get("HTTP_OC_CHECKSUM", "")
    algorithm, _, digest = header.strip().partition(":")
    algorithm = algorithm.lower().replace("-", "")
    if algorithm in CHECKSUMS and digest and all(c in "0123456789abcdefABCDEF" for c in digest):
        return algorithm, digest
    return None


def folder_etag(file_id: int, version: int) -> str:
    """A folder's ETag: changes whenever something below it changes."""
    return f"{file_id:x}-{version:x}"


def _permissions(granted: frozenset[str], is_dir: bool) -> str:
    """ownCloud's permission letters: D delete, N rename, V move, W write
    (file), C create file, K create folder (folder)."""
    out = ""
    if "delete" in granted:
        out += "D"
    if "rename" in granted:
        out += "NV"
    if is_dir:
        if "upload" in granted:
            out += "C"
        if "mkdir" in granted:
            out += "K"
    elif "overwrite" in granted and "upload" in granted:
        out += "W"
    return out or "G"  # readable only: the clients read an empty value as "not reported"


class OcProps:
    """The ownCloud live properties of one PROPFIND's resources: their ids
    read at once (``paths`` within ``folder`` when it is a listing)."""

    #: Properties answered with an empty value (the clients ask for them
    #: on every PROPFIND; the gateway has no shares or data fingerprint).
    _EMPTY = ("share-types", "data-fingerprint")
    NAMES = ("id", "fileid", "permissions", "size", "checksums") + _EMPTY

    def __init__(self, ops: Any, session: Session, paths: list[str], folder: str | None) -> None:
        self.ops = ops
        self.session = session
        self._ids = dict(zip(paths, ops.file_ids(session, paths, folder)))

    def _id(self, path: str) -> FileId:
        found = self._ids.get(path)
        if found is None:
            found = self._ids[path] = self.ops.file_ids(self.session, [path])[0]
        return found

    def folder_etag(self, path: str) -> str:
        found = self._id(path)
        return folder_etag(found.id, found.version)

    def file_etag(self, path: str, entry: Entry) -> str:
        """A file's ETag: the one kept across its last move while the
        storage still reports that copy, else the storage's (gateway.fileids)."""
        return self._id(path).served_etag(entry)

    def folder_mtime(self, path: str) -> float:
        """A time for a folder whose storage keeps none (a mount point on
        an object store): when something below it last changed through the
        gateway. The clients refuse to sync an item without one."""
        return self._id(path).version / 1e9

    def checksum(self, path: str, entry: Entry) -> str | None:
        """The checksums ("SHA1:<hex> MD5:<hex>") kept at the file's last
        upload (computed, and verified when the client sent one), while its
        size still says it is that content."""
        found = self._id(path)
        if entry.is_dir or found.checksum is None or found.checksum_size != entry.size:
            return None
        return oc_checksum(found.checksum)

    def value(self, path: str, entry: Entry, local: str) -> str | None:
        """The XML text of ``oc:<local>`` (escaped), or None when it has none (404)."""
        if local == "id":
            return oc_id(self._id(path).id)
        if local == "fileid":
            return str(self._id(path).id)
        if local == "checksums":
            checksum = self.checksum(path, entry)
            return None if checksum is None else f'<checksum xmlns="{OC_NS}">{checksum}</checksum>'
        if local == "permissions":
            return _permissions(self.ops.granted(self.session, path), entry.is_dir)
        if local == "size":
            return "0" if entry.is_dir else str(entry.size)
        if local in self._EMPTY:
            return ""
        return None


def upload_headers(ops: Any, session: Session, path: str, entry: Entry, etag: str | None,
                   environ: dict) -> list[tuple[str, str]]:
    """``OC-FileId`` and ``OC-ETag`` for a finished upload on a sync-API mount."""
    if not environ.get(OC_KEY):
        return []
    headers = [("OC-FileId", oc_id(ops.file_ids(session, [path])[0].id))]
    if etag:
        headers.append(("OC-ETag", f'"{etag}"'))
    return headers


def make_owncloud_app(dav_app: Callable, logins: Any) -> Callable:
    """The WSGI app protocols.http mounts at :data:`PREFIXES`: the OCS and
    status answers, and the WebDAV mounts routed to ``dav_app``."""

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        full = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        if full == "/status.php":
            return _json(start_response, 200, _STATUS)
        if full.startswith(("/ocs/v1.php/", "/ocs/v2.php/")):
            return _ocs(environ, start_response, full, logins)
        route = _dav_route(full)
        if route is None:
            return _json(start_response, 404, {"message": f"{full}: not found"})
        mount, user, uploads = route
        environ = dict(environ)
        environ["SCRIPT_NAME"] = ""
        environ["PATH_INFO"] = full[len(mount):] or "/"
        environ[MOUNT_KEY] = mount
        environ[OC_KEY] = True
        if user is not None:
            environ[USER_KEY] = user
        if uploads:
            environ[UPLOADS_KEY] = True
        return dav_app(environ, start_response)

    return app


def _dav_route(full: str) -> tuple[str, str | None, bool] | None:
    """(mount path, user named in the URL, uploads?) of a WebDAV URL here."""
    if full == "/remote.php/webdav" or full.startswith("/remote.php/webdav/"):
        return "/remote.php/webdav", None, False
    for kind in ("files", "uploads"):
        base = f"/remote.php/dav/{kind}/"
        if full.startswith(base):
            user = full[len(base):].split("/", 1)[0]
            try:  # WSGI hands the path over as latin-1; clients send UTF-8
                user = user.encode("latin-1").decode("utf-8")
            except UnicodeError:
                pass
            if user:
                return base + user, user, kind == "uploads"
    return None


def _json(start_response: Callable, status: int, body: Any, headers: list | None = None) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(_STATUS_LINES.get(status, f"{status} Error"),
                   [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(data)))]
                   + (headers or []))
    return [data]


_STATUS_LINES = {200: "200 OK", 401: "401 Unauthorized", 404: "404 Not Found", 429: "429 Too Many Requests"}


def _ocs(environ: dict, start_response: Callable, full: str, logins: Any) -> list[bytes]:
    """An OCS call: ``{"ocs": {"meta": …, "data": …}}`` (v1: status code
    100 in the body, v2: 200)."""
    v2 = full.startswith("/ocs/v2.php/")
    what = full.split(".php", 1)[1].rstrip("/")
    ok = {"status": "ok", "statuscode": 200 if v2 else 100, "message": "OK"}
    if what == "/cloud/capabilities":
        return _json(start_response, 200, {"ocs": {"meta": ok, "data": _CAPABILITIES}})
    if what == "/cloud/user":
        try:
            user = _basic_login(environ, logins)
        except E.LoginBanned as exc:
            return _json(start_response, 429, {"message": exc.message})
        if user is None:
            return _json(start_response, 401, {"ocs": {"meta": {"status": "failure", "statuscode": 997,
                                                                 "message": "Unauthorised"}, "data": []}},
                         [("WWW-Authenticate", 'Basic realm="gateway"')])
        data = {"id": user.name, "display-name": user.name, "displayname": user.name, "email": None,
                "enabled": True}
        return _json(start_response, 200, {"ocs": {"meta": ok, "data": data}})
    return _json(start_response, 404, {"ocs": {"meta": {"status": "failure", "statuscode": 998,
                                                        "message": f"{what}: not supported here"}, "data": []}})


def _basic_login(environ: dict, logins: Any) -> Any:
    """The user of good Basic credentials, else None. Raises LoginBanned."""
    header = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        name, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
    except ValueError:
        return None
    try:
        user = logins.login(name, password, environ.get("REMOTE_ADDR", ""), protocol="webdav")
    except E.AuthenticationFailed:
        return None
    if user.require_tls and environ.get("wsgi.url_scheme") != "https":
        return None
    return user
