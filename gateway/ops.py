"""The operations core: every read and mutation of every front end.

Synchronous and thread-safe. Paths are user paths as clients send them; each
is normalised once here, checked against the user's permissions and home,
and seen through the consistency view. Mutations are planned from the mount's
capabilities: a native O(1) call or a small single file runs inline; anything
else becomes a job, and the caller waits for it up to the protocol's sync
budget before the reply says "backgrounded".
"""

from __future__ import annotations

import builtins
import hashlib
import io
import itertools
import logging
import threading
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import Any, BinaryIO, Callable, Iterator, NoReturn

from backends.base import Backend, Writer
from gateway import errors as E
from gateway import memory, metrics
from gateway.budget import ByteBudget
from gateway.davstate import DavState
from gateway.digests import StreamHashes
from gateway.fileids import FileId, FileIds
from gateway.jobs.dispatcher import Dispatcher
from gateway.jobs.model import Job, new_job_id, pending_props_root
from gateway.jobs.store import JobStore
from gateway.logs import log_op
from gateway.namespace import (RESERVED_PREFIX, Mount, Namespace, is_under, join, name_of, normalise, overlaps,
                               parent_of, rel_of, to_global, to_user)
from gateway.transfer import copy_file
from gateway.types import Entry, Session
from gateway.view import HIDDEN, View

log = logging.getLogger("gateway.backends")  # not gateway.ops: that logger holds one line per operation

__all__ = ["Operations", "Outcome", "Upload", "Policy", "Limits", "HASH_ALGORITHMS", "hash_algorithm", "new_hasher"]

#: The digests :meth:`Operations.hash` computes, in hashlib's names.
HASH_ALGORITHMS = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")


def hash_algorithm(name: str) -> str:
    """hashlib's name of a digest spelt ``SHA-256``, ``sha256``, ``MD5``...
    Raises BadRequest for one not in :data:`HASH_ALGORITHMS`."""
    algorithm = name.lower().replace("-", "")
    if algorithm not in HASH_ALGORITHMS:
        raise E.BadRequest(f"unsupported hash algorithm {name!r}")
    return algorithm


def new_hasher(name: str) -> Any:
    """A fresh hashlib object for ``name`` (as :func:`hash_algorithm`), for
    digests of data a client streams itself (``md5sum`` reading its input).
    Raises BadRequest for an unknown algorithm."""
    return hashlib.new(hash_algorithm(name))


#: A single file up to this size is copied inline rather than as a job.
INLINE_COPY_BYTES = 4 << 20
#: Checksum types an upload can be verified against.
CHECKSUMS = ("md5", "sha1", "sha256", "sha512")
#: Bytes an upload may hold out of order (pipelined SFTP writes) before refusing,
#: unless given a budget (``Upload.hold_within``: SFTP bounds them per session
#: and per process).
REORDER_LIMIT = 16 << 20
#: Writes an upload remembers (offset, length, CRC-32) to tell a retransmitted
#: block below its end from a rewrite.
_RECENT_WRITES = 128


@dataclass
class Policy:
    """Sync budget per protocol (seconds); ``budget_s(protocol)``; the
    digests computed of every whole upload (``[policy] upload_checksums``)."""

    default_s: float = 2.0
    per_protocol: dict[str, float] | None = None
    upload_checksums: tuple[str, ...] = ("sha1", "md5")

    def budget_s(self, protocol: str) -> float:
        return (self.per_protocol or {}).get(protocol, self.default_s)


@dataclass(frozen=True)
class Limits:
    """What one client may make the core keep: dead properties (bytes of
    name and value) per property and per file or folder."""

    property_bytes: int = 64 << 10
    resource_property_bytes: int = 1 << 20


@dataclass
class Outcome:
    """The result of a mutation. ``job`` is set when it ran as a job;
    ``backgrounded`` when that job was still running at reply time;
    ``replaced`` when a copy or move overwrote an existing destination."""

    entry: Entry | None = None
    job: Job | None = None
    backgrounded: bool = False
    replaced: bool = False

    @property
    def job_id(self) -> str | None:
        return self.job.id if self.job else None


class Upload:
    """A file being written. Nothing shows at the path until :meth:`commit`;
    :meth:`abort` (or a failed commit) leaves the path as it was.

    :meth:`write_at` accepts pipelined writes that arrive out of order;
    :meth:`write` may be given a view of a buffer the caller reuses (it is
    written or copied before the call returns). ``replaced``: whether a
    file was at the path when the upload opened.

    An upload fails as a whole: once a write is refused or the storage fails
    one, the upload is aborted (its temporary removed, its held bytes
    released) and every later write and the commit raise that first error,
    so a client that goes on writing is never told its file was saved. (An
    upload continuing an existing file in place keeps what it wrote before.)"""

    def __init__(self, ops: "Operations", session: Session, user_path: str, writer: Writer, offset: int,
                 replaced: bool = False) -> None:
        self._ops = ops
        self._session = session
        self.path = user_path
        self.replaced = replaced
        self._writer = writer
        self._start = offset
        self._next = offset
        self._held: dict[int, bytes | memoryview] = {}
        self._held_bytes = 0
        self._budget: ByteBudget | None = None
        #: offset → (length, CRC-32) of the last writes made by write_at: what
        #: tells a retransmission from a rewrite below the end.
        self._recent: OrderedDict[int, tuple[int, int]] = OrderedDict()
        self._failed: E.GatewayError | None = None
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._expected: tuple[str, str] | None = None
        #: The digests computed as the content streams through ([policy]
        #: upload_checksums), kept as the file's checksum at commit; none
        #: for an upload that continues a file (they would cover only the new
        #: bytes). A large upload's run beside its writes (gateway.digests).
        self._hashes = StreamHashes(() if offset else ops.policy.upload_checksums)
        #: How many separately sent parts this upload was assembled from
        #: (gateway.chunked), for its operation log line; None: one stream.
        self.chunks: int | None = None

    @property
    def size(self) -> int:
        return self._next

    def hold_within(self, budget: ByteBudget) -> None:
        """Count the bytes :meth:`write_at` holds out of order against
        ``budget`` (a session's, say) instead of :data:`REORDER_LIMIT`."""
        self._budget = budget

    def expect_checksum(self, algorithm: str, hexdigest: str) -> None:
        """Verify the content against ``hexdigest`` at :meth:`commit` and
        keep it as the file's checksum (see :meth:`Operations.file_ids`),
        with its MD5 and SHA1 computed on the way (clients pick one).
        Call before the first write. Raises BadRequest for an algorithm
        other than md5, sha1, sha256, sha512, InvalidState after a write,
        Unsupported for an upload that continues a file (its digest would
        cover only the new bytes)."""
        algorithm = algorithm.lower().replace("-", "")
        if algorithm not in CHECKSUMS:
            raise E.BadRequest(f"{self.path}: unsupported checksum type {algorithm!r}", self.path)
        if self._start:
            raise E.Unsupported(f"{self.path}: cannot verify a checksum of an upload that continues a file",
                                self.path)
        if self._next:
            raise E.InvalidState(f"{self.path}: a checksum must be given before the content", self.path)
        self._expected = (algorithm, hexdigest.lower())
        self._hashes = StreamHashes(dict.fromkeys((algorithm, "sha1", "md5", *self._hashes.algorithms)))

    def write(self, data: bytes | memoryview) -> int:
        """Append ``data``. Raises the storage's error (the upload is then aborted)."""
        with self._lock:
            self._check()
            self._put(data)
        return len(data)

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        """Write ``data`` at ``offset`` (bytes, or a view of bytes: a held block
        is kept as given); blocks ahead of the end are held until the gap
        before them is filled. A block below the end is accepted only
        as an exact retransmission of one of the last writes (same offset,
        length and CRC-32). Raises BadRequest for any other rewrite of bytes
        already written and when held blocks exceed the budget, or the
        storage's error; the upload is then aborted."""
        with self._lock:
            self._check()
            if offset == self._next:
                self._put_at(offset, data)
                while self._next in self._held:
                    block = self._held.pop(self._next)
                    self._release(len(block))
                    self._put_at(self._next, block)
            elif offset > self._next:
                held = self._held.get(offset)
                if held is not None:
                    if held != data:
                        self._refuse(E.BadRequest(f"{self.path}: a write at offset {offset} rewrites a block "
                                                  f"received before with other bytes; not supported", self.path))
                    return  # a retransmitted block still held
                self._hold(offset, data)
            elif self._recent.get(offset) != (len(data), zlib.crc32(data)):
                self._refuse(E.BadRequest(f"{self.path}: a write at offset {offset} rewrites bytes already "
                                          f"written (the upload is at {self._next}); not supported", self.path))
            # else: a retransmission of a block already written

    def lend(self) -> bytearray | None:
        """A buffer to fill with the next bytes and give to :meth:`write_lent`
        (their digests then read it where it is, no copy), or None: use
        :meth:`write`. Only for :meth:`write`'s appends."""
        return self._hashes.lend()

    def write_lent(self, buf: bytearray, n: int) -> int:
        """Append the first ``n`` bytes of ``buf``, which :meth:`lend`
        answered (not to be changed afterwards). As :meth:`write`."""
        with self._lock:
            self._check()
            self._hashes.update_lent(buf, n)
            self._store(memoryview(buf)[:n])
        return n

    def _check(self) -> None:
        if self._failed is not None:
            raise type(self._failed)(self._failed.message, self._failed.path)

    def _put(self, data: bytes | memoryview) -> None:
        # Handed to the digests first: a large upload's are computed by other
        # threads while this one writes (the write failing aborts them).
        self._hashes.update(data)
        self._store(data)

    def _store(self, data: bytes | memoryview) -> None:
        try:
            self._writer.write(data)
        except E.GatewayError as exc:
            self._refuse(self._ops._at(exc, self.path))
        except BaseException:
            self._refuse(E.BackendError(f"{self.path}: the storage failed a write; upload aborted", self.path))
        self._next += len(data)

    def _put_at(self, offset: int, data: bytes | memoryview) -> None:
        self._put(data)
        self._recent[offset] = (len(data), zlib.crc32(data))
        if len(self._recent) > _RECENT_WRITES:
            self._recent.popitem(last=False)

    def _hold(self, offset: int, data: bytes | memoryview) -> None:
        if self._budget is not None:
            try:
                self._budget.take(len(data))
            except E.GatewayError as exc:
                self._refuse(self._ops._at(exc, self.path))
        elif self._held_bytes + len(data) > REORDER_LIMIT:
            self._refuse(E.BadRequest(f"{self.path}: writes too far out of order (over {REORDER_LIMIT >> 20} MiB "
                                      f"held); upload aborted", self.path))
        self._held[offset] = data
        self._held_bytes += len(data)

    def _release(self, n: int) -> None:
        self._held_bytes -= n
        if self._budget is not None:
            self._budget.give(n)

    def _drop(self) -> None:
        """Forget the held blocks and what was written (never raises)."""
        self._held.clear()
        self._release(self._held_bytes)
        self._hashes.stop()
        self._writer.abort()
        memory.transfer_done(self._next - self._start)

    def _refuse(self, exc: E.GatewayError) -> NoReturn:
        """Abort the upload for good with ``exc``, log it once, and raise it."""
        self._failed = exc
        self._drop()
        self._ops._log(self._session, "upload", [self.path], f"error: {exc}", self._started)
        raise exc

    def commit(self) -> Entry:
        """Make the upload the file's content; returns its entry. Raises
        BadRequest when held blocks left a gap, Locked when a WebDAV lock
        the session does not hold was taken on the path meanwhile, the error
        that aborted the upload, or the storage's error; the temporary is
        removed whatever failed."""
        with self._lock:
            self._check()
            checksum = None
            try:
                if self._held:
                    raise E.BadRequest(f"{self.path}: upload has a gap at offset {self._next}; not saved", self.path)
                checksum = self._checksum()
                # A lock taken while the content arrived bars it as well.
                self._ops._unlocked(self._session, to_global(self._session.user.home, self.path),
                                    member=not self.replaced)
                self._writer.commit()
            except E.GatewayError as exc:
                self._refuse(self._ops._at(exc, self.path))
            except BaseException:
                self._failed = E.BackendError(f"{self.path}: the storage failed to save the upload", self.path)
                self._drop()
                self._ops._log(self._session, "upload", [self.path], f"error: {self._failed}", self._started)
                raise
        self._ops._log(self._session, "upload", [self.path], "ok", self._started,
                       bytes=self._next - self._start, chunks=self.chunks)
        self._ops.fileids.content_changed(to_global(self._session.user.home, self.path), checksum, self._next)
        memory.transfer_done(self._next - self._start)
        entry = self._writer.entry
        return entry.renamed(self.path) if entry is not None else self._ops.stat(self._session, self.path)

    def _checksum(self) -> str | None:
        """``"algorithm:hex ..."`` (the expected one first) of the content,
        None when none was computed. Raises BadRequest when it does not
        match the expected checksum."""
        digests = self._hashes.hexdigests()
        if self._expected is not None:
            algorithm, expected = self._expected
            got = digests[algorithm]
            if got != expected:
                raise E.BadRequest(f"{self.path}: checksum mismatch ({algorithm} of the content is {got}, "
                                   f"the client said {expected}); not saved", self.path)
        return " ".join(f"{a}:{h}" for a, h in digests.items()) or None

    def abort(self) -> None:
        """Forget the upload (never raises); later writes and commit raise InvalidState."""
        with self._lock:
            if self._failed is None:
                self._failed = E.InvalidState(f"{self.path}: the upload was abandoned", self.path)
            self._drop()


class _ClosingRead:
    """A download's file that calls ``closed()`` once, when it is closed or
    dropped unclosed; everything else is the file's."""

    def __init__(self, f: BinaryIO, closed: Callable[..., None]) -> None:
        self._f = f
        self._closed: Callable[..., None] | None = closed

    def _end(self, closed: Callable[..., None]) -> None:
        closed()

    def close(self) -> None:
        closed, self._closed = self._closed, None
        try:
            self._f.close()
        finally:
            if closed is not None:
                self._end(closed)

    def __del__(self) -> None:
        closed, self._closed = self._closed, None
        if closed is not None:
            self._end(closed)

    def __enter__(self) -> "_ClosingRead":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._f, attr)


class _AuditedRead(_ClosingRead):
    """A download's file that counts the bytes read and calls ``done(bytes)``
    once, at close. It has no ``fileno``, so nothing bypasses the count
    (FTP's sendfile is not used while auditing)."""

    def __init__(self, f: BinaryIO, done: Callable[[int], None]) -> None:
        super().__init__(f, done)
        self._bytes = 0

    def _end(self, closed: Callable[..., None]) -> None:
        closed(self._bytes)

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self._bytes += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        n = self._f.readinto(buffer) or 0
        self._bytes += n
        return n

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fileno")


def keep_parent(backend: Backend, path: str) -> None:
    """After ``path`` (one file or empty folder, or a tree a job moved or
    deleted) went on its own, its parent stays a folder where the storage
    needs telling (:meth:`Backend.emptied`). The operation is done either
    way: a failure here is logged, the folder may then be gone (S3)."""
    try:
        backend.emptied(path)
    except E.GatewayError as exc:
        log.warning("%s: its folder could not be kept as an empty folder: %s", path, exc)


class Operations:
    def __init__(self, namespace: Namespace, store: JobStore, dispatcher: Dispatcher, view: View,
                 policy: Policy, monitor_ttl_s: float = 3600.0, limits: Limits = Limits()) -> None:
        self.namespace = namespace
        #: WebDAV locks and dead properties; the properties follow every
        #: move, copy and delete made here (a job's at its commit).
        self.davstate = DavState(store.engine)
        #: Stable file ids and change versions (sync clients), following
        #: the same operations.
        self.fileids = FileIds(store.engine)
        store.on_commit = self._committed
        self.store = store
        self.dispatcher = dispatcher
        self.view = view
        self.policy = policy
        self.monitor_ttl_s = monitor_ttl_s
        self.limits = limits
        self._change_counter = itertools.count(1)
        self._changes = 0
        #: ``[logging] audit``: listings and downloads are operation log lines too.
        self.audit = False
        #: Changes whenever another node's change arrived (gateway.bus), and
        #: on every call while such changes may go unannounced.
        self.remote_stamp: Callable[[], int] = lambda: 0

    def _committed(self, c: Any, job: Job) -> None:
        self.davstate.committed(c, job)
        self.fileids.committed(c, job)

    def _follow(self, op: str, src: str, dst: str | None, before: Entry | None = None,
                after: Entry | None = None) -> None:
        """What keys on paths follows an operation done at once (``before``
        and ``after``: a moved file at both places, see FileIds.follow)."""
        self.davstate.follow(op, src, dst)
        self.fileids.follow(op, src, dst, before, after)

    def change_stamp(self) -> tuple[int, int, int]:
        """A value that changes whenever something made through this
        gateway, on this node or another, changed the tree (an operation, a
        job's step): what a front end cached before answers for nothing
        after it changed."""
        return self._changes, self.store.generation, self.remote_stamp()

    # -- helpers ------------------------------------------------------------------

    def _paths(self, session: Session, path: str, cwd: str = "/") -> tuple[str, str]:
        u = normalise(path, cwd)
        return u, to_global(session.user.home, u)

    def _user(self, session: Session, g: str) -> str:
        return to_user(session.user.home, g)

    def _require(self, session: Session, permission: str, u: str) -> None:
        if not session.user.allowed(permission, u):
            raise E.PermissionDenied(f"{u}: permission denied ({permission} not allowed)", u)

    def _require_tree(self, session: Session, permission: str, u: str) -> None:
        """``permission`` on ``u`` and on every path below it that has a rule
        of its own: what an operation on a whole tree needs. Raises
        PermissionDenied naming the path that refuses it."""
        refused = session.user.refused_in_tree(permission, u)
        if refused == u:
            raise E.PermissionDenied(f"{u}: permission denied ({permission} not allowed)", u)
        if refused is not None:
            raise E.PermissionDenied(f"{u}: permission denied ({permission} not allowed on {refused})", u)

    @staticmethod
    def _at(exc: E.GatewayError, u: str) -> E.GatewayError:
        """The same error, naming the user's path when the storage did not."""
        if exc.path is None:
            new = type(exc)(f"{u}: {exc.message}", u)
            new.__cause__ = exc.__cause__
            return new
        return exc

    def _log(self, session: Session, op: str, paths: builtins.list[str], result: str, started: float,
             **extra: Any) -> None:
        """One log line and one metrics sample per operation."""
        seconds = time.monotonic() - started
        if not result.startswith("error"):
            self._changes = next(self._change_counter)
        metrics.record_op(session.protocol, op, not result.startswith("error"), seconds, extra.get("bytes", 0))
        log_op(session, op, paths, result, seconds, **extra)

    def _busy(self, write: builtins.list[str], read: builtins.list[str] | tuple[()] = (),
              session: Session | None = None,
              same: tuple[str, str, str | None, bool] | None = None) -> Job | None:
        """Raises Busy, naming the path that collides and the job, when an
        active job owns a path this operation would change (``write``) or
        needs unchanged (``read``). Returns that job instead when it is this
        very operation (``same``: operation, global source and destination,
        and whether it may overwrite) of this user, not yet ended: a
        client's retry attaches to it. A job replacing its destination is
        not the retry of a request that may not overwrite."""
        job = self.view.conflict(write, read)
        if job is None:
            return None
        if (same is not None and session is not None and job.owner == session.user.name
                and (job.operation, job.src, job.dst) == same[:3] and (same[3] or not job.overwrite)
                and job.phase in ("prepare", "cleanup")):
            return job
        def shown(g: str) -> str:
            return self._user(session, g) if session and is_under(g, session.user.home) else g

        owned = [p for p in (job.src, job.dst) if p]
        hit = shown(next((p for p in [*write, *read] if any(overlaps(p, o) for o in owned)), write[0]))
        what = f"job {job.id} ({job.operation} {' -> '.join(map(shown, owned))})"
        if job.phase == "rollback":
            left = ("the folder waits in the trash until it can be put back" if job.via_trash
                    else "what it wrote stays hidden until it can be removed")
            raise E.Busy(f"{hit}: busy: {what} ended {job.state}, and {left} (retried by itself while the "
                         "storage refuses); try again later", hit)
        raise E.Busy(f"{hit}: busy, in use by {what}; try again when it is done", hit)

    def _unlocked(self, session: Session, g: str, *, tree: bool = False, member: bool = False) -> None:
        """Raises Locked when a WebDAV lock that ``session`` does not hold
        (see gateway.davstate) bars changing global path ``g``: ``tree``, a
        change of everything below it too (delete, move, replace); ``member``,
        a change of its folder's members as well (``g`` created, removed,
        moved in or out). An in-memory lookup while nothing is locked."""
        found = self._barring(session, g, tree=tree, member=member)
        if found is None:
            return
        root, lock = found
        home = session.user.home
        u = self._user(session, g) if is_under(g, home) else g
        on = self._user(session, root) if is_under(root, home) else root
        depth = ", depth infinity" if lock.get("depth") == "infinity" else ""
        until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(lock.get("expire") or 0)))
        raise E.Locked(f"{u}: locked by WebDAV lock of {lock.get('principal') or '?'} "
                       f"({lock.get('scope', 'exclusive')} on {on}{depth}) until {until}; "
                       "only its owner may change it before it is unlocked", u)

    def _barring(self, session: Session, g: str, *, tree: bool = False,
                 member: bool = False) -> tuple[str, dict[str, Any]] | None:
        """(root, lock) of the lock that :meth:`_unlocked` would refuse with, or None."""
        principal, tokens = session.user.name, session.lock_tokens
        found = self.davstate.barring(g, tree=tree, principal=principal, tokens=tokens)
        if found is None and member and g != "/":
            found = self.davstate.barring(parent_of(g), principal=principal, tokens=tokens)
        return found

    def _physical(self, g: str) -> Entry:
        """Stat a global path on its storage (no overlay). Raises NotFound."""
        if self.namespace.is_virtual_dir(g) or (self.namespace.is_mount_point(g)):
            mount, bp = self.namespace.resolve(g) if self.namespace.mount_for(g) else (None, "")
            if mount is not None:
                try:
                    e = mount.backend.info(bp)
                    return Entry(name_of(g) or "/", g, True, 0, e.mtime)
                except E.NotFound:
                    pass
            return Entry(name_of(g) or "/", g, True)
        mount, bp = self.namespace.resolve(g)
        return mount.backend.info(bp).renamed(g)

    def _stat_g(self, session: Session, g: str) -> Entry:
        sources = self.view.sources(session.id, g)
        if sources is HIDDEN:
            raise E.NotFound(f"{g}: no such file or folder", g)
        err: E.GatewayError | None = None
        for s in sources:
            try:
                return self._physical(s).renamed(g)
            except E.NotFound as exc:
                err = exc
        raise err or E.NotFound(f"{g}: no such file or folder", g)

    def _exists(self, session: Session, g: str) -> Entry | None:
        try:
            return self._stat_g(session, g)
        except E.NotFound:
            return None

    def _parent_dir(self, session: Session, g: str, u: str) -> None:
        if g == "/":
            raise E.BadRequest("/: cannot replace the root folder", u)
        try:
            parent = self._stat_g(session, parent_of(g))
        except E.NotFound:
            raise E.MissingParent(f"{u}: parent folder {parent_of(u)} does not exist", u) from None
        except E.GatewayError as exc:  # a refused parent: name the path asked for
            raise self._at(exc, u) from None
        if not parent.is_dir:
            raise E.NotADirectory(f"{u}: {parent_of(u)} is not a folder", u)

    def _protect_mounts(self, g: str, u: str) -> None:
        if self.namespace.contains_mount_point(g):
            raise E.PermissionDenied(f"{u}: is or contains a mount point and cannot be changed", u)

    def _resolve_one(self, session: Session, g: str) -> tuple[Mount, str]:
        sources = self.view.sources(session.id, g)
        if sources is HIDDEN:
            raise E.NotFound(f"{self._user(session, g)}: no such file or folder")
        for s in sources[:-1]:
            m, bp = self.namespace.resolve(s)
            if m.backend.exists(bp):
                return m, bp
        return self.namespace.resolve(sources[-1])

    def _plain(self, session: Session, g: str) -> tuple[Mount, str] | None:
        """(mount, backend path) of global path ``g`` when ``session`` sees
        it where it is stored (no job's overlay applies) and it is neither a
        mount point nor a virtual folder: one storage call may then both
        look at it and act on it. None otherwise."""
        if self.view.sources(session.id, g) != [g] or self.namespace.is_mount_point(g):
            return None
        mount = self.namespace.mount_for(g)
        return None if mount is None else (mount, mount.backend_path(g))

    def _probe_write(self, session: Session, g: str) -> tuple[Entry | None, Entry] | None:
        """(the file's entry, None) or (None, its folder's entry) when ``g``
        and its folder are both stored where this session sees them, on one
        mount: one storage call answers what :meth:`_exists` and
        :meth:`_parent_dir` would. None when that does not apply or the
        storage raised (the caller then asks the long way, for its errors)."""
        if g == "/":
            return None
        here = self._plain(session, g)
        if here is None:
            return None
        up = self._plain(session, parent_of(g))
        if up is None or up[0] is not here[0] or self.namespace.is_virtual_dir(parent_of(g)):
            return None
        try:
            found, folder = here[0].backend.info_or_folder(here[1])
        except E.GatewayError:
            return None
        if found is not None:
            return found.renamed(g), None  # type: ignore[return-value]
        return None, folder  # type: ignore[return-value]

    def _file(self, session: Session, u: str, g: str) -> tuple[Entry, Mount, str]:
        """A file the user may download: (entry, mount, backend path) of where
        this session reads it. Raises PermissionDenied, NotFound, IsADirectory."""
        self._require(session, "download", u)
        entry = self._stat_g(session, g)
        if entry.is_dir:
            raise E.IsADirectory(f"{u}: is a folder", u)
        mount, bp = self._resolve_one(session, g)
        return entry, mount, bp

    def on_local_disk(self, session: Session, path: str) -> bool:
        """Whether ``path`` lies on a mount of this machine's own disk, where
        a stat, open, unlink or mkdir returns in microseconds: a front end on
        an event loop may make such calls there rather than in a worker
        thread. False for what does not resolve to one mount. Never raises."""
        try:
            _, g = self._paths(session, path)
            mount, _ = self.namespace.resolve(g)
        except E.GatewayError:
            return False
        return mount.backend.local

    # -- reads ----------------------------------------------------------------------

    def stat(self, session: Session, path: str, cwd: str = "/") -> Entry:
        """Metadata of a file or folder. Raises BadRequest, PermissionDenied,
        NotFound. Idempotent."""
        u, g = self._paths(session, path, cwd)
        try:
            return self._stat_g(session, g).renamed(u)
        except E.GatewayError as exc:
            raise self._at(exc, u) from None

    def exists(self, session: Session, path: str, cwd: str = "/") -> bool:
        try:
            self.stat(session, path, cwd)
            return True
        except E.NotFound:
            return False

    def list(self, session: Session, path: str, cwd: str = "/") -> Iterator[Entry]:
        """The entries of a folder, streamed. Raises (on first use of the
        iterator's caller: eagerly, before the first entry) BadRequest,
        PermissionDenied, NotFound, NotADirectory."""
        started = time.monotonic()
        u, g = self._paths(session, path, cwd)
        try:
            self._require(session, "list", u)
            try:
                folder = self._stat_g(session, g)
            except E.GatewayError as exc:
                raise self._at(exc, u) from None
            if not folder.is_dir:
                raise E.NotADirectory(f"{u}: not a folder", u)
        except E.GatewayError as exc:
            self._audit(session, "list", u, f"error: {exc}", started)
            raise
        self._audit(session, "list", u, "ok", started)
        return self._list_g(session, g, u)

    def _list_g(self, session: Session, g: str, u: str) -> Iterator[Entry]:
        with self.view.reading():  # a job committing meanwhile removes nothing listed here until it ends
            yield from self._list_entries(session, g, u)

    def _list_entries(self, session: Session, g: str, u: str) -> Iterator[Entry]:
        hide, add = self.view.adjustments(session.id, g)
        mounts = self.namespace.child_mount_names(g)
        seen: set[str] = set()
        sources = self.view.sources(session.id, g)
        if sources is HIDDEN:  # a job committed between the stat and the first entry
            raise E.NotFound(f"{u}: no such file or folder", u)
        many = len(sources) > 1
        for s in sources:
            if self.namespace.mount_for(s) is None:
                continue
            mount, bp = self.namespace.resolve(s)
            try:
                listed = mount.backend.iterdir(bp, shown_as=u)
                if not (many or hide or add or mounts):
                    yield from listed  # nothing to leave out: the loop below costs a twentieth of a listing
                    continue
                for e in listed:
                    if e.name in hide or e.name in add or e.name in mounts:
                        continue
                    if many:
                        if e.name in seen:
                            continue
                        seen.add(e.name)
                    yield e
            except E.NotFound:
                if not many:
                    raise
        for name in mounts:
            if name not in hide:
                yield Entry(name, join(u, name) if u != "/" else "/" + name, True)
        for name, target in add.items():
            try:
                e = self._stat_g(session, target)
            except E.NotFound:
                continue
            yield e.renamed(join(u, name) if u != "/" else "/" + name)

    def open_read(self, session: Session, path: str, offset: int = 0, cwd: str = "/") -> tuple[BinaryIO, Entry]:
        """(binary file positioned at ``offset``, its entry). Raises
        PermissionDenied, NotFound, IsADirectory, Unsupported (offset where the
        storage has no ranges)."""
        started = time.monotonic()
        u, g = self._paths(session, path, cwd)
        # A job committing meanwhile removes nothing this read needs until
        # it is closed: a remote storage reads as it goes (a local file
        # stays readable through its descriptor, so that read ends at once).
        token = self.store.begin_read()
        try:
            plain = self._plain(session, g)
            if plain is not None and (not offset or plain[0].backend.capabilities.ranges):
                # The entry from the look-up that opens the file (one on the local disk).
                mount = plain[0]
                self._require(session, "download", u)
                opened, entry = mount.backend.open_with_entry(plain[1], offset)
                if opened is None:
                    raise E.IsADirectory(f"{u}: is a folder", u)
                f = opened
            else:
                entry, mount, bp = self._file(session, u, g)
                if offset and not mount.backend.capabilities.ranges:
                    raise E.Unsupported(f"{u}: this storage cannot read from an offset", u)
                f = mount.backend.open_read(bp, offset)
        except E.GatewayError as exc:
            self.store.end_read(token)
            exc = self._at(exc, u)
            self._audit(session, "download", u, f"error: {exc}", started)
            raise exc from None
        except BaseException:
            self.store.end_read(token)
            raise
        if mount.backend.local:
            self.store.end_read(token)
        else:
            f = _ClosingRead(f, partial(self.store.end_read, token))  # ends the read at close
        if self.audit:
            f = _AuditedRead(f, lambda n: self._audit(session, "download", u, "ok", started,
                                                      bytes=n, offset=offset or None))
        return f, entry.renamed(u)

    def logged_in(self, session: Session, method: str) -> None:
        """A login made ``session`` (``method``: password, key, token,
        cookie): with ``[logging] audit``, one ``op=login`` line with its
        user, session, protocol and address. Failed logins have no session:
        the authenticator logs them."""
        if self.audit:
            log_op(session, "login", [], "ok", 0.0, address=session.remote or "-", method=method)

    def logged_out(self, session: Session, duration_s: float) -> None:
        """``session`` ended (FTP QUIT or a dropped connection, SSH
        disconnect, portal logout): with ``[logging] audit``, one
        ``op=logout`` line with how long the session lasted."""
        if self.audit:
            log_op(session, "logout", [], "ok", duration_s, address=session.remote or "-")

    def _audit(self, session: Session, op: str, u: str, result: str, started: float, **extra: Any) -> None:
        """An operation log line for a read (``[logging] audit``), with the client's address."""
        if self.audit:
            log_op(session, op, [u], result, time.monotonic() - started, address=session.remote or "-", **extra)

    def hash(self, session: Session, path: str, algorithm: str, cwd: str = "/") -> str:
        """Hex digest (md5, sha1, sha224, sha256, sha384, sha512) of a file the
        user may download: the one verified and kept at its upload through
        the gateway while the size still matches (gateway.fileids), else the
        storage's own checksum where it has one, else computed by streaming
        the content. Raises BadRequest for other algorithms, PermissionDenied,
        NotFound, IsADirectory, BackendError."""
        algorithm = hash_algorithm(algorithm)
        u, g = self._paths(session, path, cwd)
        try:
            entry, mount, bp = self._file(session, u, g)
            return (self.fileids.stored_checksum(g, algorithm, entry.size)
                    or mount.backend.hash(bp, algorithm))
        except E.GatewayError as exc:
            raise self._at(exc, u) from None

    def disk_usage(self, session: Session, path: str = "/") -> tuple[int, int] | None:
        """(total, free) bytes of the storage holding ``path``, when it tells."""
        _, g = self._paths(session, path)
        m = self.namespace.mount_for(g)
        return m.backend.disk_usage() if m else None

    def file_ids(self, session: Session, paths: builtins.list[str], folder: str | None = None
                 ) -> builtins.list[FileId]:
        """The stable id, change version and verified checksum of each path
        (see gateway.fileids); ``folder``: all paths are that folder or its
        members (one query). The id follows the file or folder through moves
        made through the gateway; the version changes when anything at or
        below it does. Raises BadRequest for a bad path."""
        home = session.user.home
        g = [to_global(home, normalise(p)) for p in paths]
        return self.fileids.ids(g, None if folder is None else to_global(home, normalise(folder)))

    def granted(self, session: Session, path: str) -> frozenset[str]:
        """The permissions (gateway.users.PERMISSIONS) ``session``'s user
        holds at ``path``, less those no one has there (the home folder and
        mount points cannot be deleted or renamed). Raises BadRequest for a
        bad path."""
        u, g = self._paths(session, path)
        perms = session.user.granted(u)
        if g == session.user.home or self.namespace.is_mount_point(g) or self.namespace.is_virtual_dir(g):
            perms = perms - {"delete", "rename"}
        return perms

    # -- writes ---------------------------------------------------------------------

    def open_write(self, session: Session, path: str, offset: int = 0, cwd: str = "/", *,
                   checked: Callable[[], None] | None = None) -> Upload:
        """Start an upload (``offset`` > 0 continues the existing file: resume).
        ``checked``, when given, is called once every check has passed,
        before the storage is touched (an HTTP client waiting with its body
        is told to send it: its sending and the storage's work overlap).
        Raises PermissionDenied, MissingParent, NotADirectory, IsADirectory,
        Busy, Locked (a WebDAV lock this session does not hold), Unsupported."""
        started = time.monotonic()
        u, g = self._paths(session, path, cwd)
        try:
            self._require(session, "upload", u)
            self._busy([g], session=session)
            # A file the view shows at g has a folder above it: the parent's
            # stat is needed only when there is none (or a folder, or an
            # error), and is then made first, so its errors come first as ever.
            # Where both are stored as seen on one mount, the storage looks at
            # both in one call; any error there is found again the long way.
            probe = self._probe_write(session, g)
            if probe is not None and (probe[1].is_dir if probe[0] is None else not probe[0].is_dir):
                existing = probe[0]
            else:
                try:
                    existing = self._exists(session, g)
                except E.GatewayError:
                    self._parent_dir(session, g, u)
                    raise
                if existing is None or existing.is_dir:
                    self._parent_dir(session, g, u)
            if existing is not None:
                if existing.is_dir:
                    raise E.IsADirectory(f"{u}: is a folder", u)
                # Resuming, appending or rewriting changes what is there.
                self._require(session, "overwrite", u)
            elif offset:
                raise E.NotFound(f"{u}: cannot resume, no such file", u)
            self._unlocked(session, g, member=existing is None)
            if self.namespace.is_mount_point(g) or self.namespace.is_virtual_dir(g):
                raise E.IsADirectory(f"{u}: is a folder", u)
            mount, bp = self.namespace.resolve(g)
            if checked is not None:
                checked()
            writer = mount.backend.open_write(bp, offset)
        except E.GatewayError as exc:
            self._log(session, "upload", [u], f"error: {exc}", started)
            raise self._at(exc, u) from None
        return Upload(self, session, u, writer, offset, replaced=existing is not None)

    def mkdir(self, session: Session, path: str, cwd: str = "/") -> Entry:
        """Create a folder. Raises AlreadyExists, MissingParent, Busy,
        Locked (its folder is locked), PermissionDenied."""
        started = time.monotonic()
        u, g = self._paths(session, path, cwd)
        try:
            self._require(session, "mkdir", u)
            self._busy([g], session=session)
            self._parent_dir(session, g, u)
            if self._exists(session, g) is not None:
                raise E.AlreadyExists(f"{u}: already exists", u)
            self._unlocked(session, g, member=True)
            mount, bp = self.namespace.resolve(g)
            mount.backend.mkdir(bp)
            entry = self._stat_g(session, g).renamed(u)
            self.fileids.changed(g)
        except E.GatewayError as exc:
            self._log(session, "mkdir", [u], f"error: {exc}", started)
            raise self._at(exc, u) from None
        self._log(session, "mkdir", [u], "ok", started)
        return entry

    def keeps_mtime(self, session: Session, path: str) -> bool:
        """Whether the storage of ``path`` keeps a modification time a
        client sets (its ``mtimes`` capability). Never raises."""
        try:
            _, g = self._paths(session, path)
            mount, _ = self.namespace.resolve(g)
        except E.GatewayError:
            return False
        return mount.backend.capabilities.mtimes

    def set_mtime(self, session: Session, path: str, mtime: float, cwd: str = "/") -> bool:
        """Set a file's or folder's modification time; True. Raises NotFound,
        PermissionDenied, Busy, Locked, and Unsupported where the storage keeps no
        time a client sets (never a silent success: sync clients would
        upload everything again on every run)."""
        u, g = self._paths(session, path, cwd)
        self._require(session, "overwrite", u)
        try:
            self._busy([g], session=session)
            entry = self._stat_g(session, g)
            self._unlocked(session, g)
            mount, bp = self.namespace.resolve(g)
            if not mount.backend.capabilities.mtimes:
                raise E.Unsupported(f"{u}: this storage does not keep modification times", u)
            if not mount.backend.set_mtime(bp, mtime):
                # S3 keeps files' times, not folders' (a prefix has none).
                what = "folders'" if entry.is_dir else "this file's"
                raise E.Unsupported(f"{u}: this storage does not keep {what} modification times", u)
            self._changes = next(self._change_counter)
            self.fileids.changed(g)
            return True
        except E.GatewayError as exc:
            raise self._at(exc, u) from None

    def set_file_mtime(self, session: Session, path: str, mtime: float, cwd: str = "/", *,
                       found: Callable[[Entry], None] | None = None) -> Entry:
        """As :meth:`set_mtime`, for a command that first asks whether the
        path is a file (FTP's MFMT), and answers with the time as stored:
        the path is looked up once, ``found`` (when given) is called with
        what was found, a folder is refused (IsADirectory), then come
        :meth:`set_mtime`'s checks (overwrite, jobs, locks, the storage's
        support) and the time set. Returns the entry as stored after. An
        error raised before ``found`` is called is the look-up's (BadRequest,
        NotFound). On a local mount: one checked open for all of it."""
        u, g = self._paths(session, path, cwd)

        def checks(entry: Entry) -> None:
            entry = entry.renamed(u)
            if found is not None:
                found(entry)
            if entry.is_dir:
                raise E.IsADirectory(f"{u}: is a folder, not a file", u)
            self._require(session, "overwrite", u)
            self._busy([g], session=session)
            self._unlocked(session, g)
            if not mount.backend.capabilities.mtimes:
                raise E.Unsupported(f"{u}: this storage does not keep modification times", u)

        try:
            ns = self.namespace
            direct = (not ns.is_virtual_dir(g) and not ns.is_mount_point(g)
                      and self.view.sources(session.id, g) == [g])
            if direct:  # the path is its storage's: the backend looks it up once, checks run on what it found
                mount, bp = ns.resolve(g)
                after = mount.backend.set_mtime_checked(bp, mtime, checks)
            else:  # a job's overlay or a mount point: as set_mtime, then the time read back
                entry = self._stat_g(session, g)
                mount, bp = ns.resolve(g)
                checks(entry)
                after = self._stat_g(session, g) if mount.backend.set_mtime(bp, mtime) else None
            if after is None:
                raise E.Unsupported(f"{u}: this storage does not keep this file's modification times", u)
            self._changes = next(self._change_counter)
            self.fileids.changed(g)
            return after.renamed(u)
        except E.GatewayError as exc:
            raise self._at(exc, u) from None

    def check_change(self, session: Session, path: str, *, properties: bool = False) -> None:
        """Whether ``session`` may change the existing ``path`` now (what a
        WebDAV LOCK announces), or with ``properties`` its dead properties
        (a PROPPATCH: see :meth:`set_property`): raises PermissionDenied
        without ``overwrite`` there, Busy when a job owns the path."""
        u, g = self._paths(session, path)
        self._require(session, "overwrite", u)
        if properties:
            self._property_key(session, g)
        else:
            self._busy([g], session=session)

    def set_property(self, session: Session, path: str, name: str, value: str | None, *,
                     dry_run: bool = False) -> None:
        """Set (``value`` a serialised XML element) or remove (None) a dead
        property of a file or folder: a change of the resource, allowed as a
        content write is (``overwrite``) and refused on a path a job owns,
        except by the session that started a move or copy, on its projected
        destination: kept aside until the job commits, then set there (lost
        if the job ends without committing). Raises PermissionDenied,
        NotFound, Busy, Locked, and QuotaExceeded when the name or value is over
        ``limits.property_bytes`` or the resource's properties would exceed
        ``limits.resource_property_bytes``."""
        u, g = self._paths(session, path)
        try:
            self._require(session, "overwrite", u)
            key = self._property_key(session, g)
            self._stat_g(session, g)
            self._unlocked(session, g)
            if value is None:
                if not dry_run:
                    if key == g:
                        self.davstate.remove_prop(g, name)
                    else:  # remembered: the property goes at commit
                        self.davstate.set_prop(key, name, "")
                return
            size = len(name.encode()) + len(value.encode())
            if size > self.limits.property_bytes:
                raise E.QuotaExceeded(f"{u}: property {name} is {size} bytes; at most "
                                      f"{self.limits.property_bytes} are kept", u)
            others = sum(len(k.encode()) + len(v.encode()) for k, v in self.davstate.props(key).items() if k != name)
            if others + size > self.limits.resource_property_bytes:
                raise E.QuotaExceeded(f"{u}: its properties would take {others + size} bytes; at most "
                                      f"{self.limits.resource_property_bytes} are kept per file or folder", u)
            if not dry_run:
                self.davstate.set_prop(key, name, value)
        except E.GatewayError as exc:
            raise self._at(exc, u) from None

    def property_keys(self, session: Session, key: str) -> builtins.list[str]:
        """The keys whose dead properties make up what ``session`` sees on
        global path ``key``, later ones overriding earlier ones (an empty
        value removes the name): ``[key]``, or for the initiating session of
        a move or copy not yet committed, on its projected destination, the
        source it is projected from and then what that session set on it
        meanwhile (what the commit will leave there)."""
        job = self._projecting(session, key)
        if job is None:
            return [key]
        rel = rel_of(key, job.dst)
        return [join(job.src, rel) if rel else job.src, _pending_key(job, key)]

    def projects_properties(self, session: Session, folder: str) -> bool:
        """Whether :meth:`property_keys` differs from ``[path]`` for global
        path ``folder`` or one of its members (a listing's fast path must
        then read properties resource by resource)."""
        return any(_projects(job, session) and (is_under(job.dst, folder) or is_under(folder, job.dst))
                   for job in self.view.overlays())

    def _projecting(self, session: Session, g: str) -> Job | None:
        """The move or copy not yet committed that ``session`` started and
        whose destination holds global path ``g``."""
        return next((job for job in self.view.overlays() if _projects(job, session) and is_under(g, job.dst)),
                    None)

    def _property_key(self, session: Session, g: str) -> str:
        """Where a dead property of global path ``g`` is written now: ``g``,
        or, for the initiating session of a move or copy not yet committed,
        on its projected destination, the job's pending place (the commit
        puts it at ``g``). Raises Busy for any other path a job owns (the
        initiator's destination after commit is its own: the properties
        have moved there)."""
        job = self._projecting(session, g)
        if job is not None:
            return _pending_key(job, g)
        job = self.view.conflict([g])
        if (job is not None and job.committed and not job.terminal and job.session_id == session.id
                and job.operation in ("move", "copy") and job.dst and is_under(g, job.dst)):
            return g
        self._busy([g], session=session)
        return g

    def delete(self, session: Session, path: str, *, recursive: bool = False, folder: bool | None = None,
               budget_s: float | None = None, cwd: str = "/") -> Outcome:
        """Delete a file, or a folder (``recursive`` for a non-empty one: a job
        when not trivially cheap). ``folder`` True/False insists on the kind
        (RMD/rmdir vs DELE/remove). Raises NotFound, DirectoryNotEmpty,
        NotADirectory, IsADirectory, Busy, Locked (on it, above it or below
        it), PermissionDenied."""
        started = time.monotonic()
        u, g = self._paths(session, path, cwd)
        try:
            self._require_tree(session, "delete", u)
            if g == "/" or g == session.user.home:
                raise E.PermissionDenied(f"{u}: the home folder cannot be deleted", u)
            self._protect_mounts(g, u)
            attached = self._busy([g], session=session, same=("delete", g, None, True))
            if attached is not None:
                outcome = self._await(session, attached, budget_s, started)
                self._log(session, "delete", [u], self._result(outcome), started, job=outcome.job_id)
                return outcome
            plain = self._plain(session, g) if folder is False else None
            if plain is not None and self._barring(session, g, tree=True, member=True) is None:
                # A file (FTP DELE, SFTP remove) that nothing but the storage
                # can refuse: looked at and removed by one storage call.
                mount, bp = plain
                entry = mount.backend.remove_if_file(bp)
                if entry.is_dir:
                    raise E.IsADirectory(f"{u}: is a folder", u)
            else:
                entry = self._stat_g(session, g)
                if folder is True and not entry.is_dir:
                    raise E.NotADirectory(f"{u}: not a folder", u)
                if folder is False and entry.is_dir:
                    raise E.IsADirectory(f"{u}: is a folder", u)
                self._unlocked(session, g, tree=True, member=True)
                mount, bp = self.namespace.resolve(g)
                if not entry.is_dir:
                    mount.backend.remove(bp)
            if not entry.is_dir:
                keep_parent(mount.backend, bp)
                self._follow("delete", g, None)
                outcome = Outcome(entry.renamed(u))
            else:
                empty = not any(True for _ in self._list_g(session, g, u))
                if empty:
                    mount.backend.rmdir(bp)
                    keep_parent(mount.backend, bp)
                    self._follow("delete", g, None)
                    outcome = Outcome(entry.renamed(u))
                elif not recursive:
                    raise E.DirectoryNotEmpty(f"{u}: folder is not empty", u)
                else:
                    outcome = self._submit(session, "delete", g, None, budget_s=budget_s, started=started)
        except E.GatewayError as exc:
            self._log(session, "delete", [u], f"error: {exc}", started)
            raise self._at(exc, u) from None
        self._log(session, "delete", [u], self._result(outcome), started, job=outcome.job_id)
        return outcome

    def copy(self, session: Session, src: str, dst: str, *, overwrite: bool = False,
             budget_s: float | None = None, cwd: str = "/") -> Outcome:
        """Copy a file or folder tree (server-side where the storage can).
        Raises NotFound, AlreadyExists (``overwrite`` False), MissingParent,
        BadRequest (into itself), Busy, Locked (a WebDAV lock the session
        does not hold on the destination), PermissionDenied."""
        return self._transfer(session, "copy", src, dst, overwrite, budget_s, cwd)

    def move(self, session: Session, src: str, dst: str, *, overwrite: bool = False,
             budget_s: float | None = None, cwd: str = "/") -> Outcome:
        """Move/rename. One native call where the storage renames atomically;
        otherwise copy + delete as a job. Raises like :meth:`copy`, and
        Locked for a lock on the source tree or its folder as well."""
        return self._transfer(session, "move", src, dst, overwrite, budget_s, cwd)

    def _transfer(self, session: Session, op: str, src: str, dst: str, overwrite: bool,
                  budget_s: float | None, cwd: str) -> Outcome:
        started = time.monotonic()
        su, sg = self._paths(session, src, cwd)
        du, dg = self._paths(session, dst, cwd)
        try:
            # A move takes the whole source tree out of its rules and puts
            # it under the destination's: both places must allow it.
            perm = "rename" if op == "move" else "copy"
            if op == "move":
                self._require_tree(session, perm, su)
            else:
                self._require(session, perm, su)
                self._require_tree(session, "download", su)
            self._require_tree(session, perm, du)
            attached = self._busy([sg, dg] if op == "move" else [dg], [sg] if op == "copy" else [],
                                  session=session, same=(op, sg, dg, overwrite))
            if attached is not None:
                outcome = self._await(session, attached, budget_s, started)
                self._log(session, op, [su, du], self._result(outcome), started, job=outcome.job_id)
                return outcome
            entry = self._stat_g(session, sg)
            if sg == dg:
                if op == "move":
                    return Outcome(entry.renamed(du))
                raise E.BadRequest(f"{su}: cannot copy onto itself", su)
            if is_under(dg, sg):
                raise E.BadRequest(f"{du}: cannot {op} a folder into itself", du)
            if op == "move":
                self._protect_mounts(sg, su)
            self._protect_mounts(dg, du)
            if dg == "/" or parent_of(dg) != parent_of(sg):  # else the source's stat showed the parent
                self._parent_dir(session, dg, du)
            try:
                existing = self._exists(session, dg)
            except E.GatewayError as exc:  # the destination is refused, not the source
                raise self._at(exc, du) from None
            if existing is not None:
                if not overwrite:
                    raise E.AlreadyExists(f"{du}: already exists", du)
                self._require_tree(session, "overwrite", du)
                if existing.is_dir:  # the tree it replaces is deleted
                    self._require_tree(session, "delete", du)
            if op == "move":  # RFC 4918 9.9.4: the source's locks bar a move but by their owner
                self._unlocked(session, sg, tree=True, member=True)
            self._unlocked(session, dg, tree=True, member=existing is None)
            smount, sbp = self._resolve_one(session, sg)
            dmount, dbp = self.namespace.resolve(dg)
            outcome = self._plan(session, op, entry, sg, dg, smount, sbp, dmount, dbp, existing, budget_s, started)
            outcome.replaced = existing is not None
        except E.GatewayError as exc:
            self._log(session, op, [su, du], f"error: {exc}", started)
            raise self._at(exc, su) from None
        self._log(session, op, [su, du], self._result(outcome), started, job=outcome.job_id)
        return outcome

    def _plan(self, session: Session, op: str, entry: Entry, sg: str, dg: str, smount: Mount, sbp: str,
              dmount: Mount, dbp: str, existing: Entry | None, budget_s: float | None,
              started: float) -> Outcome:
        """Inline when native and O(1), or a single small file; else a job."""
        sb, db = smount.backend, dmount.backend
        native_rename = op == "move" and smount is dmount and sb.capabilities.atomic_rename
        small_file = not entry.is_dir and (entry.size <= INLINE_COPY_BYTES or
                                           (sb is db and sb.capabilities.server_copy))
        if native_rename or small_file:
            if existing is not None and existing.is_dir:
                db.rm_tree(dbp)
            if native_rename:
                if existing is not None and not existing.is_dir:
                    db.remove(dbp, missing_ok=True)
                sb.rename(sbp, dbp)
                keep_parent(sb, sbp)
            else:
                copy_file(sb, sbp, db, dbp, expected_size=entry.size, mtime=entry.mtime)
                if op == "move":
                    sb.remove(sbp)
                    keep_parent(sb, sbp)
            after = self._stat_g(session, dg)
            self._follow(op, sg, dg, entry, after)
            return Outcome(after.renamed(self._user(session, dg)))
        return self._submit(session, op, sg, dg, dst_existed=existing is not None, budget_s=budget_s,
                            started=started)

    @staticmethod
    def _result(outcome: Outcome) -> str:
        if outcome.backgrounded:
            return f"backgrounded as job {outcome.job_id}"
        return "ok" + (f" (job {outcome.job_id})" if outcome.job_id else "")

    # -- jobs -------------------------------------------------------------------------

    def _submit(self, session: Session, op: str, src: str, dst: str | None, *, dst_existed: bool = False,
                budget_s: float | None, started: float) -> Outcome:
        """Journal a job, hand it to the dispatcher and wait for it until the
        budget is spent, counted from ``started`` (when the operation reached
        the core: its checks on slow storage are part of the client's wait)."""
        job_id = new_job_id()
        stage = dst
        if dst and dst_existed:
            stage = join(parent_of(dst), f"{RESERVED_PREFIX}stage-{job_id}-{name_of(dst)}"[:250])
        elif op == "delete" and (mount := self.namespace.resolve(src)[0]).backend.capabilities.atomic_rename:
            # At the mount's root, never inside a folder someone may delete next.
            stage = join(mount.path, f"{RESERVED_PREFIX}trash-{job_id}")
        job = Job(id=job_id, queue=self.dispatcher.queue_for(op), operation=op, src=src, dst=dst,
                  stage=stage, dst_existed=dst_existed, overwrite=dst_existed, owner=session.user.name,
                  session_id=session.id, protocol=session.protocol)
        self.store.create(job)
        self.dispatcher.enqueue(job)
        return self._await(session, job, budget_s, started)

    def _await(self, session: Session, job: Job, budget_s: float | None, started: float) -> Outcome:
        """``job``'s outcome once it ends within the budget, else a
        backgrounded one. Raises the job's error, or Conflict when it was
        stopped or cancelled."""
        budget = self.policy.budget_s(session.protocol) if budget_s is None else budget_s
        budget -= time.monotonic() - started
        # A delete via the trash is done for every client once committed;
        # emptying the trash is not the client's wait.
        job = self.dispatcher.wait(job.id, budget, committed=job.via_trash) if budget > 0 else job
        if job.state == "completed" or (job.via_trash and job.committed and job.state == "running"):
            return Outcome(self._exists(session, job.dst or job.src), job, False, replaced=job.dst_existed)
        if job.state == "failed":
            raise E.by_name(job.error_type or "BackendError")(job.error or "job failed")
        if job.state in ("stopped", "cancelled"):
            raise E.Conflict(f"job {job.id} was {job.state}")
        return Outcome(None, job, True, replaced=job.dst_existed)

    def _visible_job(self, session: Session, job_id: str) -> Job:
        job = self.store.get(job_id)
        if not session.user.admin and job.owner != session.user.name:
            raise E.NotFound(f"no job {job_id!r}")
        return job

    def get_job(self, session: Session, job_id: str) -> Job:
        """A job the user may see (own, or any for admins). Raises NotFound."""
        return self._visible_job(session, job_id)

    def list_jobs(self, session: Session, *, queue: str | None = None, state: str | None = None,
                  owner: str | None = None, limit: int = 500) -> builtins.list[Job]:
        """Jobs the user may see, newest first."""
        if not session.user.admin:
            owner = session.user.name
        return self.store.list(queue=queue, state=state, owner=owner, limit=limit)

    def cancel_job(self, session: Session, job_id: str) -> Job:
        """Cancel a queued job. Raises NotFound, InvalidState."""
        self._visible_job(session, job_id)
        return self.dispatcher.cancel(job_id)

    def stop_job(self, session: Session, job_id: str) -> Job:
        """Stop a running job before it commits; it removes what it wrote.
        Raises NotFound, InvalidState."""
        self._visible_job(session, job_id)
        return self.dispatcher.stop(job_id)

    def retry_job(self, session: Session, job_id: str) -> Job:
        """An admin's retry of a queued or running (typically stalled) job:
        it runs again now with a full set of attempts. Raises
        PermissionDenied (not an admin), NotFound, InvalidState (ended)."""
        self._admin_only(session, "retry")
        self._visible_job(session, job_id)
        return self.dispatcher.retry(job_id)

    def abandon_job(self, session: Session, job_id: str) -> Job:
        """An admin gives a job up: rolled back when not committed, ended
        ``failed`` with its leftovers described when committed (see
        :meth:`EmbeddedDispatcher.abandon`). Raises PermissionDenied (not an
        admin), NotFound, InvalidState (ended, or committed with its new
        destination not in place yet)."""
        self._admin_only(session, "abandon")
        self._visible_job(session, job_id)
        return self.dispatcher.abandon(job_id)

    @staticmethod
    def _admin_only(session: Session, verb: str) -> None:
        if not session.user.admin:
            raise E.PermissionDenied(f"only an admin may {verb} a job")

    def wait_job(self, session: Session, job_id: str, timeout: float) -> Job:
        self._visible_job(session, job_id)
        return self.dispatcher.wait(job_id, timeout)

    def monitor_token(self, job: Job) -> str:
        """A short-lived unguessable token that shows ``job``'s status without auth."""
        return self.store.create_monitor_token(job.id, self.monitor_ttl_s)

    def job_for_token(self, token: str) -> Job | None:
        return self.store.job_for_token(token)

    def public_job(self, session: Session, job: Job) -> dict:
        """``job.public()`` with paths in the asking user's tree."""
        d = job.public()
        home = session.user.home
        for key in ("from", "to"):
            if d.get(key) and is_under(d[key], home):
                d[key] = to_user(home, d[key])
        if d.get("resourceId") and is_under(d["resourceId"], home):
            d["resourceId"] = to_user(home, d["resourceId"])
        return d


def _projects(job: Job, session: Session) -> bool:
    """Whether ``job`` is a move or copy ``session`` started that has not
    committed yet (its destination is projected for that session)."""
    return (job.session_id == session.id and job.operation in ("move", "copy") and job.dst is not None
            and job.phase == "prepare" and not job.terminal)


def _pending_key(job: Job, g: str) -> str:
    """Where a property of ``g`` (on ``job``'s destination) waits for the commit."""
    rel = rel_of(g, job.dst or g)
    return join(pending_props_root(job.id), rel) if rel else pending_props_root(job.id)
