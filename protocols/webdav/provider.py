"""The wsgidav DAV provider: resources whose every action is one call on
``gw.ops``, seen through the asking session.

COPY, MOVE and DELETE take wsgidav's native fast path (``handle_copy``,
``handle_move``, ``handle_delete``): wsgidav has checked syntax, If headers and
locks by then, the core checks the rest (source, permissions, names,
Overwrite, busy paths) before it accepts anything, so a doomed request gets its
4xx and never a 202. The reply is 201/204 (the initiating session's view
already shows the outcome) unless the client asked for asynchronous replies
(``Prefer: respond-async`` or ``OC-LazyOps: true``) and the core backgrounded
the operation: 202 with the job's monitor URL.

While no lock exists anywhere and the request has no conditional header, a
PROPFIND, a PUT, a MOVE or COPY, and a MKCOL or DELETE are answered without
wsgidav's resource lookups (``propfind``, ``put``, ``move`` and ``tree``
modules; on the sync-API mounts only the first three), and a GET or HEAD of
a file without conditional header or Range at any time (``get``: locks do
not bar reads); anything they do not take goes to wsgidav unchanged, and so
does a request the core refuses before anything changed (wsgidav words that
refusal; the core's, kept, is not asked for twice: errors.REFUSED_KEY). Their replies are wsgidav's, byte for byte (tests/protocols/webdav/
test_webdav_fast_paths.py); ``[http] webdav_fast_paths = false`` turns them
off. protocols.webdav.dispatch asks them (:meth:`GatewayProvider.fast_reply`)
before wsgidav's layers when the login cache knows the client.

Locks and dead properties are keyed by *global* path (``get_ref_url``), so
they follow the resource whichever user's home it is reached through. The
core moves, copies and drops dead properties with the resources (a job's at
its commit, see gateway.davstate); only a Depth 0 copy of a folder, which
the core sees as a new folder, copies the folder's own here.
"""

from __future__ import annotations

import threading
import time
from functools import partial
from typing import Any, BinaryIO, Callable, Iterator
from urllib.parse import quote

from wsgidav import util
from wsgidav.dav_error import HTTP_FORBIDDEN, PRECONDITION_CODE_PropfindFiniteDepth, DAVError
from wsgidav.dav_provider import DAVCollection, DAVNonCollection, DAVProvider
from wsgidav.util import etree

from gateway import errors as E
from gateway.chunked import ChunkedUploads
from gateway.davstate import DavState
from gateway.fileids import storage_etag
from gateway.ops import Operations, Outcome, Upload
from gateway.types import Entry, Session
from gateway.webcontent import content_headers
from protocols.webdav.auth import SESSION_KEY
from protocols.webdav.errors import REFUSED_KEY, GatewayDAVError, replayed, translated
from protocols.webdav.props import key_of
from protocols.webdav.get import fast_get
from protocols.webdav.locks import GatewayLockManager
from protocols.webdav.move import fast_move
from protocols.webdav.chunking import handle_upload_request
from protocols.webdav.owncloud import (MOUNT_KEY, OC_KEY, OC_NS, UPLOADS_KEY, USER_KEY, OcProps, oc_checksum,
                                       parse_checksum, upload_headers)
from protocols.webdav.propfind import fast_propfind
from protocols.webdav.put import fast_put
from protocols.webdav.tree import fast_delete, fast_mkcol

__all__ = ["CONDITIONS", "GatewayProvider", "MONITOR_PATH", "STARTED_KEY"]

#: Where the REST API serves a job's monitor (DESIGN.md, REST API).
MONITOR_PATH = "/api/v1/monitor/"

#: environ key: time.monotonic() when the request reached the gateway.
STARTED_KEY = "gateway.started"

#: environ keys: the upload's reply headers are given; whether the
#: X-OC-Mtime time was kept.
_PUT_DONE_KEY = "gateway.put_done"
_MTIME_KEY = "gateway.mtime_kept"

#: Properties whose PROPPATCH sets the modification time.
_TIME_PROPS = ("{DAV:}getlastmodified", "{DAV:}lastmodified")

#: The methods answered without wsgidav while nothing is locked; the ones
#: that also serve the sync-API mounts (whose replies carry more headers).
_FAST = ("PROPFIND", "PUT", "MOVE", "COPY", "MKCOL", "DELETE")
_FAST_OC = ("PROPFIND", "PUT", "MOVE")

#: Conditional request headers (RFC 4918 10.4, RFC 9110 13): wsgidav evaluates them.
CONDITIONS = ("HTTP_IF", "HTTP_IF_MATCH", "HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE",
              "HTTP_IF_UNMODIFIED_SINCE")


def _wants_async(environ: dict) -> bool:
    return ("respond-async" in environ.get("HTTP_PREFER", "").lower()
            or environ.get("HTTP_OC_LAZYOPS", "").strip().lower() in ("true", "1"))


def _member(folder: str, name: str) -> str:
    return folder.rstrip("/") + "/" + name


def _etag(entry: Entry | None) -> str | None:
    """A file's strong ETag without quotes (wsgidav adds them), as the
    storage reports it (gateway.fileids.storage_etag). The sync-API mounts
    serve the one kept across a move instead (:meth:`GatewayProvider.etag_of`)."""
    if entry is None or entry.is_dir:
        return None
    return storage_etag(entry)


class GatewayProvider(DAVProvider):
    """One provider for every user: the session in the request's environ says
    who asks (see ``auth.GatewayDomainController``)."""

    def __init__(self, ops: Operations, state: DavState, uploads: ChunkedUploads, *,
                 propfind_infinity: bool = False, fast_paths: bool = True) -> None:
        self._local = threading.local()
        super().__init__()
        self.ops = ops
        self.state = state
        #: The sync clients' chunked uploads (protocols.webdav.chunking).
        self.uploads = uploads
        self.propfind_infinity = propfind_infinity
        #: ``[http] webdav_fast_paths``: false hands every request to wsgidav.
        self.fast_paths = fast_paths

    # wsgidav reads the mount path (hrefs, Destination headers) from the
    # provider; one provider serves /dav and the sync-API mounts
    # (protocols.webdav.owncloud), so it is this request thread's.
    @property  # type: ignore[override]
    def mount_path(self) -> str:
        return getattr(self._local, "mount_path", None) or self._mount_path

    @mount_path.setter
    def mount_path(self, value: str) -> None:
        self._mount_path = value

    def set_lock_manager(self, lock_manager: Any) -> None:
        """wsgidav gives every provider its LockManager; ours judges locks
        below a changed tree as the core does (see locks.GatewayLockManager)."""
        super().set_lock_manager(lock_manager and GatewayLockManager(lock_manager.storage))

    def begin_request(self, environ: dict) -> None:
        """Called first for every request: which mount it came through."""
        self._local.mount_path = environ.get(MOUNT_KEY)

    def __repr__(self) -> str:
        return "GatewayProvider()"

    def is_readonly(self) -> bool:
        return False

    def get_resource_inst(self, path: str, environ: dict) -> "_Resource | None":
        """The resource at ``path`` as the asking session sees it; None when
        it does not exist."""
        entry = self.entry_of(path, environ)
        return None if entry is None else _resource(self, path, entry, environ)

    def entry_of(self, path: str, environ: dict) -> Entry | None:
        """The core's entry at ``path`` as the asking session sees it (what
        :meth:`get_resource_inst` wraps); None when it does not exist. Raises
        the translated errors of the core's stat."""
        session: Session = environ[SESSION_KEY]
        self._local.session = session
        with translated(environ):
            try:
                return self.ops.stat(session, path)
            except (E.NotFound, E.NotADirectory):
                return None

    def ref_url_to_path(self, ref_url: str) -> str:
        """The asking user's path of a lock root (a global path; see
        ``_Resource.get_ref_url``). wsgidav calls this only after
        ``get_resource_inst`` in the same request thread."""
        session = getattr(self._local, "session", None)
        path = self.state.user_path(session, key_of(ref_url)) if session else None
        return path or "/"

    def custom_request_handler(self, environ: dict, start_response: Any, default_handler: Any) -> Any:
        if (environ["REQUEST_METHOD"] == "PROPFIND" and not self.propfind_infinity
                and environ.get("HTTP_DEPTH", "infinity") == "infinity"):
            raise DAVError(HTTP_FORBIDDEN, "PROPFIND with Depth: infinity is disabled on this server",
                           err_condition=PRECONDITION_CODE_PropfindFiniteDepth)
        method = environ["REQUEST_METHOD"]
        if "HTTP_IF" in environ and SESSION_KEY in environ:
            # The lock tokens it submits: the core's lock check (which binds
            # every protocol) lets their owner through, as wsgidav's does.
            util.parse_if_header_dict(environ)
            environ[SESSION_KEY].lock_tokens = frozenset(environ["wsgidav.ifLockTokenList"])
        if USER_KEY in environ and environ[USER_KEY] != environ[SESSION_KEY].user.name:
            raise GatewayDAVError(403, f"signed in as {environ[SESSION_KEY].user.name!r}, "
                                       f"not {environ[USER_KEY]!r}")
        if environ.get(UPLOADS_KEY):
            with translated(environ):
                return handle_upload_request(self, environ, start_response)
        if method == "PROPPATCH" and SESSION_KEY in environ:
            # A write: on a path a job owns it is refused whole (423), as a
            # PUT is, not answered 207 with each property's refusal.
            with translated(environ):
                self.ops.check_change(environ[SESSION_KEY], environ["PATH_INFO"], properties=True)
        if method == "PUT":
            if environ.get("HTTP_OC_CHUNKED"):
                raise GatewayDAVError(400, "old-style chunked uploads (OC-Chunked) are not supported; "
                                           "use the chunked-upload collection (dav chunking 1.0)")
            start_response = self._put_reply(environ, start_response)
        elif method == "GET" and environ.get(OC_KEY):
            start_response = self._get_reply(environ, start_response)
        # A request whose fast path the core refused (the dispatcher's try) is not tried again.
        reply = self.fast_reply(environ, start_response) if self.fast_paths and REFUSED_KEY not in environ else None
        return default_handler(environ, start_response) if reply is None else reply

    def fast_reply(self, environ: dict, start_response: Callable) -> Iterator[bytes] | None:
        """The gateway's own reply to a plain request (see the module
        docstring), or None when wsgidav must answer. Raises DAVErrors."""
        method = environ["REQUEST_METHOD"]
        if method in ("GET", "HEAD"):
            if any(h in environ for h in CONDITIONS):
                return None
            with translated(environ):
                return fast_get(self, environ, start_response, environ["wsgidav.config"]["block_size"],
                                partial(self.etag_of, environ, environ["PATH_INFO"]))
        if method not in _FAST or not self._plain(environ) or (method not in _FAST_OC and environ.get(OC_KEY)):
            return None
        with translated(environ):
            if method == "PROPFIND":
                return fast_propfind(self, environ, start_response, storage_etag)
            if method == "PUT":
                return fast_put(self, environ, start_response, environ["wsgidav.config"]["block_size"])
            if method == "MKCOL":
                return fast_mkcol(environ, start_response, partial(self.ops.mkdir, environ[SESSION_KEY]))
            if method == "DELETE":
                return fast_delete(environ, start_response, partial(self._delete, environ))
            return fast_move(environ, start_response, self.mount_path + self.share_path,
                             partial(self._move, environ, method))

    def etag_of(self, environ: dict, path: str, entry: Entry | None) -> str | None:
        """The ETag of file ``path`` (``entry``: the storage's report): on
        the sync-API mounts the one kept across its last move while the
        storage still reports that copy (gateway.fileids), else the
        storage's. Raises the core's errors."""
        if entry is None or entry.is_dir:
            return None
        if not environ.get(OC_KEY):
            return storage_etag(entry)
        return self.ops.file_ids(environ[SESSION_KEY], [path])[0].served_etag(entry)

    def _put_reply(self, environ: dict, start_response: Callable) -> Callable:
        """wsgidav's PUT computes the ETag before it sets X-OC-Mtime's
        time: its reply gets the file's final ETag and the sync clients'
        headers (the fast path gives them itself, see :meth:`upload_headers`)."""
        if "HTTP_X_OC_MTIME" not in environ and not environ.get(OC_KEY):
            return start_response

        def start(status: str, headers: list, exc_info: Any = None) -> Any:
            if status[:3] in ("201", "204") and not environ.get(_PUT_DONE_KEY):
                session, path = environ[SESSION_KEY], environ["PATH_INFO"]
                with translated(environ):
                    entry = self.ops.stat(session, path)
                headers = [(k, v) for k, v in headers if k.lower() != "etag"]
                headers += self.upload_headers(environ, path, entry, environ.get(_MTIME_KEY))
            return start_response(status, headers, exc_info)

        return start

    def _get_reply(self, environ: dict, start_response: Callable) -> Callable:
        """A whole download on a sync-API mount carries the file's verified
        checksum (``OC-Checksum``), which the clients check the bytes against."""

        def start(status: str, headers: list, exc_info: Any = None) -> Any:
            if status.startswith("200"):
                length = next((v for k, v in headers if k.lower() == "content-length"), None)
                found = self.ops.file_ids(environ[SESSION_KEY], [environ["PATH_INFO"]])[0]
                if found.checksum is not None and length == str(found.checksum_size):
                    headers = [*headers, ("OC-Checksum", oc_checksum(found.checksum).split()[0])]
            return start_response(status, headers, exc_info)

        return start

    def upload_mtime(self, environ: dict, path: str, mtime: float) -> bool:
        """Apply an upload's X-OC-Mtime; whether the storage kept it (the
        upload stands either way: the reply then lacks ``X-OC-MTime:
        accepted``, which tells the client). Raises the core's other errors."""
        try:
            return self.ops.set_mtime(environ[SESSION_KEY], path, mtime)
        except E.Unsupported:
            return False

    def upload_headers(self, environ: dict, path: str, entry: Entry, mtime_kept: bool | None
                       ) -> list[tuple[str, str]]:
        """The headers of a finished upload's reply: its final ETag,
        ``X-OC-MTime: accepted`` when the client's time was kept, and on the
        sync-API mounts ``OC-FileId`` and ``OC-ETag``."""
        environ[_PUT_DONE_KEY] = True
        etag = _etag(entry)
        headers = [("ETag", f'"{etag}"')] if etag else []
        if mtime_kept:
            headers.append(("X-OC-MTime", "accepted"))
        with translated(environ):
            return headers + upload_headers(self.ops, environ[SESSION_KEY], path, entry, etag, environ)

    def _plain(self, environ: dict) -> bool:
        """No lock anywhere and no conditional header: wsgidav's lock and If
        checks cannot change the answer, so the gateway's fast paths may give it."""
        return (not any(h in environ for h in CONDITIONS)
                and not self.state.locks("/", include_root=True, include_children=True))

    def _delete(self, environ: dict, path: str) -> None:
        """Raises the core's errors, or the 202 of a delete the client lets run on."""
        session = environ[SESSION_KEY]
        outcome = self.ops.delete(session, path, recursive=True, budget_s=_budget(self.ops, session, environ))
        _raise_accepted(self.ops, outcome, environ)

    def _move(self, environ: dict, method: str, src: str, dst: str, overwrite: bool) -> bool:
        """Whether the MOVE or COPY replaced an existing destination; raises
        the core's errors, or the 202 of one the client lets run on."""
        session = environ[SESSION_KEY]
        run = self.ops.move if method == "MOVE" else self.ops.copy
        outcome = run(session, src, dst, overwrite=overwrite, budget_s=_budget(self.ops, session, environ))
        _raise_accepted(self.ops, outcome, environ)
        return outcome.replaced


def _budget(ops: Operations, session: Session, environ: dict) -> float:
    """0 for clients that take a 202; else what is left of the core's webdav
    budget since the request arrived (wsgidav's own lookups of source and
    destination spend it too)."""
    if _wants_async(environ):
        return 0
    waited = time.monotonic() - environ.get(STARTED_KEY, time.monotonic())
    return max(0.0, ops.policy.budget_s(session.protocol) - waited)


def _raise_accepted(ops: Operations, outcome: Outcome, environ: dict) -> None:
    """The 202 (with the job's monitor URL) of an operation still running
    at reply time, for a client that asked for asynchronous replies."""
    if outcome.backgrounded and _wants_async(environ):
        assert outcome.job is not None
        url = MONITOR_PATH + ops.monitor_token(outcome.job)
        raise GatewayDAVError(202, f"accepted; running in background as job {outcome.job_id}",
                              add_headers=[("Location", url), ("OC-JobStatus-Location", url)])


def _resource(provider: GatewayProvider, path: str, entry: Entry, environ: dict) -> "_Resource":
    cls = _Folder if entry.is_dir else _File
    return cls(provider, path, entry, environ)


class _Resource:
    """What files and folders share: identity, times and the fast paths."""

    provider: GatewayProvider
    environ: dict
    path: str
    is_collection: bool
    get_href: Callable[[], str]  # from wsgidav's _DAVResource

    def _init(self, provider: GatewayProvider, entry: Entry | None) -> None:
        self.provider = provider
        self.ops = provider.ops
        self.entry = entry
        self._ref_url: str | None = None

    @property
    def session(self) -> Session:
        return self.environ[SESSION_KEY]

    def _key(self, path: str | None = None) -> str:
        with translated(self.environ):
            return self.provider.state.key(self.session, self.path if path is None else path)

    def get_ref_url(self) -> str:
        """Asked several times per resource in a PROPFIND; worked out once."""
        if self._ref_url is None:
            key = self._key()
            self._ref_url = quote(key + "/" if self.is_collection and key != "/" else key)
        return self._ref_url

    def get_last_modified(self) -> float | None:
        if self.entry is None:
            return None
        if self.entry.mtime is None and self.entry.is_dir and self.environ.get(OC_KEY):
            return self._oc().folder_mtime(self.path)
        return self.entry.mtime

    def set_last_modified(self, dest_path: str, time_stamp: Any, *, dry_run: bool) -> bool:
        """Win32LastModifiedTime (PROPPATCH) and X-OC-Mtime (PUT, MKCOL)."""
        seconds = util.parse_time_string(time_stamp) if isinstance(time_stamp, str) else time_stamp
        if seconds is None:
            raise GatewayDAVError(400, f"not a time: {time_stamp!r}")
        if not dry_run:
            with translated(self.environ):
                if self.environ["REQUEST_METHOD"] in ("PUT", "MKCOL"):  # X-OC-Mtime: the upload stands
                    self.environ[_MTIME_KEY] = self.provider.upload_mtime(self.environ, dest_path, float(seconds))
                else:  # PROPPATCH: refused where the storage keeps no time
                    self.ops.set_mtime(self.session, dest_path, float(seconds))
        return True

    def set_property_value(self, name: str, value: Any, *, dry_run: bool = False) -> Any:
        """PROPPATCH of ``getlastmodified`` (or ``lastmodified``, which
        rclone's owncloud/nextcloud vendors send, in seconds) sets the file's
        time where the storage keeps one; elsewhere it fails (501) rather
        than being kept as a dead property nobody reads."""
        if name in _TIME_PROPS and value is not None:
            text = (value.text or "").strip()
            if dry_run:
                if not self.ops.keeps_mtime(self.session, self.path):
                    with translated(self.environ):
                        raise E.Unsupported(f"{self.path}: this storage does not keep modification times")
                return True
            return self.set_last_modified(self.path, float(text) if text.isdigit() else text, dry_run=False)
        return super().set_property_value(name, value, dry_run=dry_run)  # type: ignore[misc]

    # -- the sync clients' properties (protocols.webdav.owncloud) ---------------------

    def _oc(self) -> OcProps:
        return OcProps(self.ops, self.session, [self.path], None)

    def get_property_names(self, *, is_allprop: bool) -> list[str]:
        names = super().get_property_names(is_allprop=is_allprop)  # type: ignore[misc]
        if self.environ.get(OC_KEY) and not is_allprop:
            names += [f"{{{OC_NS}}}{n}" for n in OcProps.NAMES]
        return names

    def get_property_value(self, name: str) -> Any:
        if self.environ.get(OC_KEY) and name.startswith(f"{{{OC_NS}}}") and self.entry is not None:
            local, oc = name[len(OC_NS) + 2:], self._oc()
            value = oc.value(self.path, self.entry, local)
            if value is not None:
                el = etree.Element(name)
                if local == "checksums":
                    etree.SubElement(el, f"{{{OC_NS}}}checksum").text = oc.checksum(self.path, self.entry)
                else:
                    el.text = value
                return el
        return super().get_property_value(name)  # type: ignore[misc]

    def prevent_locking(self) -> bool:
        """A LOCK is a write intent: refused where this user may not change
        the resource (403) or a job owns it (423). Elsewhere (a PROPFIND
        listing the lock properties) the resource can be locked."""
        if self.environ.get("REQUEST_METHOD") == "LOCK":
            with translated(self.environ):
                self.ops.check_change(self.session, self.path)
        return False

    # -- COPY / MOVE / DELETE -----------------------------------------------------------

    def handle_delete(self) -> bool | list:
        self._check_locks_below()
        with translated(self.environ):
            replayed(self.environ)
            outcome = self.ops.delete(self.session, self.path, recursive=True, budget_s=self._budget())
        self.provider.lock_manager.remove_all_locks_from_url(self.get_ref_url(), recursive=True)
        return self._reply(outcome, replaced=True)

    def handle_move(self, dest_path: str) -> bool | list:
        with translated(self.environ):
            replayed(self.environ)
            outcome = self.ops.move(self.session, self.path, dest_path, overwrite=self._overwrite(),
                                    budget_s=self._budget())
        # RFC 4918 7.5: a moved resource leaves its locks behind.
        self.provider.lock_manager.remove_all_locks_from_url(self.get_ref_url(), recursive=True)
        return self._reply(outcome, outcome.replaced)

    def handle_copy(self, dest_path: str, *, depth_infinity: bool) -> bool | list:
        with translated(self.environ):
            replayed(self.environ)
            if self.is_collection and not depth_infinity:
                # Depth: 0 copies the folder itself, without its members.
                replaced = self._exists(dest_path)
                if replaced:
                    self.ops.delete(self.session, dest_path, recursive=True)
                self.ops.mkdir(self.session, dest_path)
                self.provider.state.copy_props(self._key(), self._key(dest_path), recursive=False)
                outcome = Outcome(replaced=replaced)
            else:
                outcome = self.ops.copy(self.session, self.path, dest_path, overwrite=self._overwrite(),
                                        budget_s=self._budget())
        return self._reply(outcome, outcome.replaced)

    def _overwrite(self) -> bool:
        return self.environ.get("HTTP_OVERWRITE", "T") == "T"

    def _budget(self) -> float:
        return _budget(self.ops, self.session, self.environ)

    def _exists(self, path: str) -> bool:
        with translated(self.environ):
            return self.ops.exists(self.session, path)

    def _reply(self, outcome: Outcome, replaced: bool) -> bool | list:
        """True → 204; a one-item error list on this resource → that status."""
        _raise_accepted(self.ops, outcome, self.environ)
        if replaced:
            return True
        return [(self.get_href(), GatewayDAVError(201, "created"))]

    def _check_locks_below(self) -> None:
        """wsgidav's DELETE checks the parent's locks only; a lock on this
        resource or below it also forbids the delete unless its owner sent
        the token (raises 423)."""
        env = self.environ
        util.parse_if_header_dict(env)
        self.provider.lock_manager.check_write_permission(
            url=self.get_ref_url(), depth="infinity", token_list=env["wsgidav.ifLockTokenList"],
            principal=env["wsgidav.user_name"])


class _File(_Resource, DAVNonCollection):
    """A file; ``entry`` is None for a file a PUT is about to create."""

    def __init__(self, provider: GatewayProvider, path: str, entry: Entry | None, environ: dict) -> None:
        DAVNonCollection.__init__(self, path, environ)
        self._init(provider, entry)
        self._upload: Upload | None = None

    def get_content_length(self) -> int:
        return self.entry.size if self.entry else 0

    def get_content_type(self) -> str:
        return util.guess_mime_type(self.path)

    def get_etag(self) -> str | None:
        with translated(self.environ):
            return self.provider.etag_of(self.environ, self.path, self.entry)

    def support_etag(self) -> bool:
        return True

    def support_ranges(self) -> bool:
        return True

    def get_content(self) -> "_Reader":
        return _Reader(self)

    def finalize_headers(self, environ: dict, response_headers: list) -> None:
        # wsgidav's GET and HEAD (ranges, conditions, locks): the same
        # headers as the fast path's (see fast_get).
        response_headers += content_headers(self.name, self.get_content_type())

    def begin_write(self, *, content_type: str | None = None) -> "_Writer":
        with translated(self.environ):
            replayed(self.environ)
            self._upload = self.ops.open_write(self.session, self.path)
            checksum = parse_checksum(self.environ)
            if checksum is not None:
                self._upload.expect_checksum(*checksum)
        return _Writer(self, self._upload)

    def end_write(self, *, with_errors: bool) -> None:
        if self._upload is not None:  # not committed: the body never arrived whole
            self._upload.abort()
            self._upload = None


class _Folder(_Resource, DAVCollection):
    def __init__(self, provider: GatewayProvider, path: str, entry: Entry, environ: dict) -> None:
        DAVCollection.__init__(self, path, environ)
        self._init(provider, entry)
        self._usage: tuple[int, int] | None | bool = False

    def _entries(self) -> list[Entry]:
        with translated(self.environ):
            return list(self.ops.list(self.session, self.path))

    def _listed(self) -> Iterator[Entry]:
        """The members as the core lists them (a generator, to be closed),
        for a reply that sends them as they come. Raises DAVErrors (the
        folder's: at once; the listing's: on the first ``next``, untranslated)."""
        with translated(self.environ):
            return self.ops.list(self.session, self.path)

    def get_etag(self) -> str | None:
        """Sync clients skip a folder whose ETag they saw last time: on
        their mounts it changes whenever something below changes."""
        if self.environ.get(OC_KEY) and self.entry is not None:
            return self._oc().folder_etag(self.path)
        return None

    def get_member_names(self) -> list[str]:
        return [e.name for e in self._entries()]

    def get_member_list(self) -> list[_Resource]:
        return [_resource(self.provider, _member(self.path, e.name), e, self.environ) for e in self._entries()]

    def get_member(self, name: str) -> _Resource | None:
        return self.provider.get_resource_inst(_member(self.path, name), self.environ)

    def create_empty_resource(self, name: str) -> _File:
        """For PUT, a file that exists once the upload commits; for LOCK on an
        unmapped URL, an empty file now (RFC 4918 7.3)."""
        path = _member(self.path, name)
        if self.environ["REQUEST_METHOD"] == "PUT":
            return _File(self.provider, path, None, self.environ)
        with translated(self.environ):
            entry = self.ops.open_write(self.session, path).commit()
        return _File(self.provider, path, entry, self.environ)

    def create_collection(self, name: str) -> None:
        with translated(self.environ):
            replayed(self.environ)
            self.ops.mkdir(self.session, _member(self.path, name))

    def _disk_usage(self) -> tuple[int, int] | None:
        if self._usage is False:
            with translated(self.environ):
                self._usage = self.ops.disk_usage(self.session, self.path)
        return self._usage  # type: ignore[return-value]

    def get_used_bytes(self) -> int | None:
        du = self._disk_usage()
        return du[0] - du[1] if du else None

    def get_available_bytes(self) -> int | None:
        du = self._disk_usage()
        return du[1] if du else None


class _Writer:
    """The file object wsgidav's PUT writes the body into; ``close`` commits."""

    def __init__(self, res: _File, upload: Upload) -> None:
        self._res = res
        self._upload = upload

    def write(self, data: bytes) -> int:
        with translated(self._res.environ):
            return self._upload.write(data)

    def close(self) -> None:
        self._res._upload = None  # committed or, on failure, aborted by the core
        with translated(self._res.environ):
            self._res.entry = self._upload.commit()


class _Reader:
    """A lazily opened download: wsgidav seeks to the range start first."""

    def __init__(self, res: _File) -> None:
        self._res = res
        self._offset = 0
        self._file: BinaryIO | None = None

    def seek(self, offset: int) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._offset = offset

    def read(self, size: int = -1) -> bytes:
        if self._file is None:
            self._file = self._open()
        return self._file.read(size)

    def _open(self) -> BinaryIO:
        res = self._res
        with translated(res.environ):
            replayed(res.environ)
            try:
                return res.ops.open_read(res.session, res.path, self._offset)[0]
            except E.Unsupported:
                if not self._offset:
                    raise
            f = res.ops.open_read(res.session, res.path)[0]  # storage without ranges: skip ahead
            left = self._offset
            while left > 0:
                chunk = f.read(min(left, 1 << 20))
                if not chunk:
                    break
                left -= len(chunk)
            return f

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
