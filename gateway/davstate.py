"""Durable WebDAV state: locks and dead properties, keyed by global path.

Protocol-free: the WebDAV adapter turns its lock records and property values
into plain JSON-able dicts and strings and keeps them here, in the job store's
database (tables ``dav_locks`` and ``dav_props``), so they survive restarts and
are shared by every node. Paths are *global* virtual paths (a user's path
under their home, see :meth:`DavState.key`), so two users whose homes differ
never see each other's ``/x`` as the same resource, and one resource reached
through two homes is one resource.

Every method is thread-safe and idempotent unless it says otherwise.

Within :meth:`DavState.request` reads come from a snapshot taken by the
first lookup of the request (all unexpired locks; the dead properties of a
folder's members at once), so a PROPFIND of 20,000 members makes two queries,
not 40,000. A write through this object drops the snapshot, so the request
reads its own writes; another request's write becomes visible at the next
request, as it would in a transaction. On SQLite, the embedded store that
only this process writes, the lock list is kept between requests too and
dropped by every lock write; it also answers the lock check of an FTP or
SFTP delete or rename, made outside any request.

Dead properties follow the resource whoever changes the tree: the core calls
:meth:`DavState.follow` after a move, copy or delete it made at once, and the
job store calls :meth:`DavState.committed` inside the transaction that
commits a job, so a backgrounded move takes them along when it happens for
everyone, and a job that fails or is stopped leaves them where they were.
What the initiating session set on the job's projected destination while
it ran waits under the job's reserved root (``pending_props_root``) and is
put on the destination by the same commit.
Locks do not move (RFC 4918 7.5): a move or delete, through any protocol,
drops those on and below its source, so none is left on a path that now
holds something else.

Locks bind every protocol: :meth:`DavState.barring` names the lock that
forbids a change the core is about to make, unless the asking session holds
it (its owner, sending the token: ``Session.lock_tokens``), with the same
rules as wsgidav's own check. It reads a list of every lock kept in memory
(on SQLite until a lock write; on a shared store for at most
``LOCKS_TTL_S``), so that while nothing is locked a change costs no query.
"""

from __future__ import annotations

import json
import logging
import posixpath
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Collection, Iterator

import sqlalchemy as sa

from gateway.jobs.model import Job, pending_props_root
from gateway.jobs.schema import dav_locks, dav_props, path_below, path_children, path_subtree
from gateway.jobs.store import write_transaction
from gateway.namespace import is_under, normalise, to_global, to_user
from gateway.types import Session

__all__ = ["DavState", "LOCKS_TTL_S"]

log = logging.getLogger(__name__)

#: On a store other nodes write (PostgreSQL), how long the list of locks the
#: core checks changes against is kept: a lock taken on another node binds
#: this one's FTP, SFTP and REST changes within this many seconds.
LOCKS_TTL_S = 0.5


def _subtree(column: sa.Column, path: str, *, include_root: bool = True,
             include_children: bool = True) -> sa.ColumnElement[bool]:
    """``column`` is ``path`` and/or lies below it (a range in byte order an
    index serves, see gateway.jobs.schema.path_below)."""
    if include_root and include_children:
        return path_subtree(column, path)
    return column == path if include_root else path_below(column, path)


class _Snapshot:
    """What one request has read: every unexpired lock (None until asked)
    and the properties of whole folders' members."""

    def __init__(self) -> None:
        self.locks: list[tuple[str, str]] | None = None  # (root, data json), ordered by root
        self.props: dict[str, dict[str, str]] = {}
        self.folders: set[str] = set()


def _moved(path: str, src: str, dst: str) -> str:
    return dst if path == src else (dst.rstrip("/") + path[len(src.rstrip("/")):])


class DavState:
    """Locks and dead properties over the job store's engine."""

    def __init__(self, engine: sa.Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock
        self._local = threading.local()
        #: (root, data json, expires_at) of every lock, and when they were
        #: read (time.monotonic()); kept across requests where this process
        #: is the only writer (SQLite), else for at most what the reader
        #: allows; None = read again.
        self._all_locks: tuple[list[tuple[str, str, float]], float] | None = None
        self._shared = engine.dialect.name == "sqlite"
        self._writes = 0  # bumped after each commit, so a read that overlapped one is not kept
        self._cache_lock = threading.Lock()
        #: Whether the props table may hold a row (None: not asked yet); only
        #: kept where this process is the only writer, so that a PROPFIND, a
        #: delete or a move on a server nobody PROPPATCHes costs no query.
        self._props_seen: bool | None = None

    @contextmanager
    def request(self) -> Iterator[None]:
        """Serve this thread's reads from a per-request snapshot (see the
        module docstring) until the block ends."""
        self._local.snapshot = _Snapshot()
        try:
            yield
        finally:
            self._local.snapshot = None

    def _snapshot(self) -> _Snapshot | None:
        return getattr(self._local, "snapshot", None)

    @contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        if self._snapshot() is not None:
            self._local.snapshot = _Snapshot()
        try:
            with write_transaction(self.engine) as c:
                yield c
        finally:
            with self._cache_lock:
                self._writes += 1
                self._all_locks = None

    # -- paths ----------------------------------------------------------------------

    @staticmethod
    def key(session: Session, path: str) -> str:
        """The global path that keys ``path`` (a client path of ``session``'s
        user). Raises BadRequest for a path the core would refuse."""
        return to_global(session.user.home, normalise(path))

    @staticmethod
    def user_path(session: Session, key: str) -> str | None:
        """Inverse of :meth:`key`; None when ``key`` lies outside the user's home."""
        home = session.user.home
        return to_user(home, key) if is_under(key, home) else None

    # -- locks ----------------------------------------------------------------------

    def put_lock(self, token: str, root: str, data: dict[str, Any], expires_at: float) -> None:
        """Store (or replace) the lock ``token`` on global path ``root``."""
        row = {"root": root, "data": json.dumps(data), "expires_at": expires_at}
        with self._tx() as c:
            if c.execute(dav_locks.update().where(dav_locks.c.token == token).values(**row)).rowcount == 0:
                c.execute(dav_locks.insert().values(token=token, **row))

    def get_lock(self, token: str) -> dict[str, Any] | None:
        """The data of an unexpired lock, else None (an expired one is purged)."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(dav_locks.c.data, dav_locks.c.expires_at)
                            .where(dav_locks.c.token == token)).first()
        if row is None:
            return None
        if row.expires_at < self.clock():
            self.delete_lock(token)
            return None
        return json.loads(row.data)

    def delete_lock(self, token: str) -> bool:
        """Remove a lock; whether it existed."""
        with self._tx() as c:
            return c.execute(dav_locks.delete().where(dav_locks.c.token == token)).rowcount > 0

    def _kept_locks(self) -> list[tuple[str, str]] | None:
        """(root, data json) of the unexpired locks as :meth:`locks` reads
        them without a query of its own (the request's snapshot, or the
        kept list on SQLite); None where it would query."""
        snap = self._snapshot()
        if snap is None and not self._shared:
            return None
        if snap is not None and snap.locks is not None:
            return snap.locks
        now = self.clock()
        every = [(key, data) for key, data, expires_at in self._every_lock() if expires_at >= now]
        if snap is not None:
            snap.locks = every
        return every

    def lock_free(self) -> bool:
        """Whether :meth:`locks` would find no lock anywhere, known without
        a query (False where that would take one): a write's check of
        every folder above it can then be skipped."""
        return self._kept_locks() == []

    def locks(self, root: str, *, include_root: bool = True, include_children: bool = False) -> list[dict[str, Any]]:
        """Data of the unexpired locks whose root is ``root`` and/or below it."""
        every = self._kept_locks()  # outside a request (a delete by FTP or SFTP): the kept list
        if every is not None:
            prefix = root.rstrip("/") + "/"
            return [json.loads(data) for key, data in every
                    if (include_root and key == root)
                    or (include_children and key != root and key.startswith(prefix))]
        with self.engine.connect() as c:
            rows = c.execute(sa.select(dav_locks.c.data).where(
                _subtree(dav_locks.c.root, root, include_root=include_root, include_children=include_children),
                dav_locks.c.expires_at >= self.clock()).order_by(dav_locks.c.root)).all()
        return [json.loads(r.data) for r in rows]

    def _every_lock(self, max_age: float = 0.0) -> list[tuple[str, str, float]]:
        """Every lock, ordered by root; from memory where this process is
        the only writer, or when read at most ``max_age`` seconds ago."""
        with self._cache_lock:
            cached, seen = self._all_locks, self._writes
        now = time.monotonic()
        if cached is not None and (self._shared or now - cached[1] <= max_age):
            return cached[0]
        with self.engine.connect() as c:
            rows = [(r.root, r.data, r.expires_at) for r in c.execute(
                sa.select(dav_locks.c.root, dav_locks.c.data, dav_locks.c.expires_at).order_by(dav_locks.c.root))]
        with self._cache_lock:
            if self._writes == seen:
                self._all_locks = (rows, now)
        return rows

    def barring(self, path: str, *, tree: bool = False, principal: str = "",
                tokens: Collection[str] = ()) -> tuple[str, dict[str, Any]] | None:
        """(global root, data) of an unexpired lock that forbids changing global path
        ``path`` (its content, name, times or properties, or, for a folder,
        its members), or None. Such a lock is on ``path`` itself (any
        depth), on a folder above it with depth infinity, or, with ``tree``
        (a change of the whole tree: delete, move), anywhere below it; a
        lock of ``principal`` whose token is in ``tokens`` does not bar
        (RFC 4918 7, as wsgidav's ``check_write_permission``). Never a
        query while the lock list is in memory (see the module docstring)."""
        every = self._every_lock(LOCKS_TTL_S)
        if not every:
            return None
        now = self.clock()
        prefix = path.rstrip("/") + "/"
        for root, data, expires_at in every:
            above = root != path and is_under(path, root)
            if expires_at < now or not (root == path or above or (tree and root.startswith(prefix))):
                continue
            lock = json.loads(data)
            if above and lock.get("depth") != "infinity":
                continue
            if lock.get("principal") == principal and lock.get("token") in tokens:
                continue
            return root, lock
        return None

    def purge_expired_locks(self) -> int:
        with self._tx() as c:
            return c.execute(dav_locks.delete().where(dav_locks.c.expires_at < self.clock())).rowcount

    def clear_locks(self) -> None:
        with self._tx() as c:
            c.execute(dav_locks.delete())

    # -- dead properties ------------------------------------------------------------

    def props(self, path: str) -> dict[str, str]:
        """{name: value} of the properties of global path ``path``."""
        snap = self._snapshot()
        if snap is not None:
            return dict(self._snapshot_props(snap, path))
        return self._read_props(dav_props.c.path == path).get(path, {})

    def any_props(self, folder: str) -> bool:
        """Whether global path ``folder`` or one of its direct members has a
        dead property (one query per request with a snapshot)."""
        if not self._may_have_props():
            return False
        snap = self._snapshot()
        if snap is None:
            with self.engine.connect() as c:
                where = sa.or_(dav_props.c.path == folder, path_children(dav_props.c.path, folder))
                return c.execute(sa.select(dav_props.c.path).where(where).limit(1)).first() is not None
        prefix = folder.rstrip("/") + "/"
        if self._snapshot_props(snap, folder):
            return True
        self._snapshot_props(snap, prefix + "x")  # loads the members' properties
        return any(path.startswith(prefix) and "/" not in path[len(prefix):] for path in snap.props)

    def _snapshot_props(self, snap: _Snapshot, path: str) -> dict[str, str]:
        """From the snapshot; the first lookup in a folder reads all its
        members' properties (a PROPFIND asks for each member next)."""
        folder = posixpath.dirname(path) if path != "/" else ""
        if folder not in snap.folders:
            if self._may_have_props():  # else not even the query's expression (a PROPFIND's largest cost)
                snap.props.update(self._read_props(path_children(dav_props.c.path, folder) if folder
                                                   else dav_props.c.path == "/"))
            snap.folders.add(folder)
        return snap.props.get(path, {})

    def _read_props(self, where: sa.ColumnElement[bool]) -> dict[str, dict[str, str]]:
        if not self._may_have_props():  # no query per PROPFIND on a server nobody PROPPATCHes
            return {}
        with self.engine.connect() as c:
            rows = c.execute(sa.select(dav_props.c.path, dav_props.c.name, dav_props.c.value)
                             .where(where).order_by(dav_props.c.name)).all()
        found: dict[str, dict[str, str]] = {}
        for r in rows:
            found.setdefault(r.path, {})[r.name] = r.value
        return found

    def prop(self, path: str, name: str) -> str | None:
        snap = self._snapshot()
        if snap is not None:
            return self._snapshot_props(snap, path).get(name)
        if not self._may_have_props():
            return None
        with self.engine.connect() as c:
            return c.execute(sa.select(dav_props.c.value)
                             .where(dav_props.c.path == path, dav_props.c.name == name)).scalar()

    def set_prop(self, path: str, name: str, value: str) -> None:
        with self._cache_lock:
            self._props_seen = True
        with self._tx() as c:
            where = (dav_props.c.path == path, dav_props.c.name == name)
            if c.execute(dav_props.update().where(*where).values(value=value)).rowcount == 0:
                c.execute(dav_props.insert().values(path=path, name=name, value=value))

    def remove_prop(self, path: str, name: str) -> None:
        with self._tx() as c:
            c.execute(dav_props.delete().where(dav_props.c.path == path, dav_props.c.name == name))

    def remove_props(self, path: str, *, recursive: bool = True) -> None:
        """Forget the properties of ``path`` (and everything below it)."""
        with self._tx() as c:
            c.execute(dav_props.delete().where(_subtree(dav_props.c.path, path, include_children=recursive)))

    def copy_props(self, src: str, dst: str, *, recursive: bool = True) -> None:
        """Give ``dst`` (and below) the properties ``src`` (and below) has;
        whatever ``dst`` had is dropped first."""
        if src != dst:
            with self._tx() as c:
                _transfer(c, src, dst, recursive, move=False)

    def move_props(self, src: str, dst: str, *, recursive: bool = True) -> None:
        """As :meth:`copy_props`, and ``src`` keeps none."""
        if src != dst:
            with self._tx() as c:
                _transfer(c, src, dst, recursive, move=True)

    def follow(self, operation: str, src: str, dst: str | None) -> None:
        """After the core moved, copied or deleted global path ``src`` (to
        ``dst``): the properties go along, are copied, or are dropped. The
        operation is done whatever happens here: a database error is logged,
        not raised."""
        if src == dst or operation not in _FOLLOWS:
            return
        try:
            if self._may_have_props() and self._props_under(src, dst):
                with self._tx() as c:
                    _follow(c, operation, src, dst)
            if operation != "copy" and self.locks(src, include_children=True):
                with self._tx() as c:
                    _unlock(c, src)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("dead properties or locks of %s not updated after %s: %s", src, operation, exc)

    def committed(self, c: sa.Connection, job: Job) -> None:
        """The job store's commit hook: as :meth:`follow`, for ``job``,
        within the commit's own transaction ``c``."""
        if job.src != job.dst and job.operation in _FOLLOWS:
            _follow(c, job.operation, job.src, job.dst)
            if job.dst is not None:
                _apply_pending(c, pending_props_root(job.id), job.dst)
            if job.operation != "copy" and _unlock(c, job.src):
                with self._cache_lock:
                    self._writes += 1
                    self._all_locks = None

    def _props_under(self, *paths: str | None) -> bool:
        """Whether a property lies on or below one of ``paths`` (a read, so
        that an operation on a path without any takes no write lock)."""
        where = sa.or_(*(_subtree(dav_props.c.path, p) for p in paths if p))
        with self.engine.connect() as c:
            return c.execute(sa.select(dav_props.c.path).where(where).limit(1)).first() is not None

    def _may_have_props(self) -> bool:
        if not self._shared:
            return True
        with self._cache_lock:
            if self._props_seen is None:
                with self.engine.connect() as c:
                    self._props_seen = c.execute(sa.select(dav_props.c.path).limit(1)).first() is not None
            return self._props_seen


_FOLLOWS = ("move", "copy", "delete")


def _follow(c: sa.Connection, operation: str, src: str, dst: str | None) -> None:
    if operation == "delete" or dst is None:
        c.execute(dav_props.delete().where(_subtree(dav_props.c.path, src)))
    else:
        _transfer(c, src, dst, True, move=operation == "move")


def _apply_pending(c: sa.Connection, root: str, dst: str) -> None:
    """Put the properties waiting under ``root`` on ``dst`` (an empty value
    removes the property there) and forget them."""
    where = _subtree(dav_props.c.path, root)
    rows = c.execute(sa.select(dav_props.c.path, dav_props.c.name, dav_props.c.value).where(where)).all()
    if not rows:
        return
    c.execute(dav_props.delete().where(where))
    for r in rows:
        path = _moved(r.path, root, dst)
        c.execute(dav_props.delete().where(dav_props.c.path == path, dav_props.c.name == r.name))
        if r.value:
            c.execute(dav_props.insert().values(path=path, name=r.name, value=r.value))


def _unlock(c: sa.Connection, path: str) -> int:
    """Drop the locks on and below ``path``; how many there were."""
    return c.execute(dav_locks.delete().where(_subtree(dav_locks.c.root, path))).rowcount


def _transfer(c: sa.Connection, src: str, dst: str, recursive: bool, move: bool) -> None:
    where = _subtree(dav_props.c.path, src, include_children=recursive)
    rows = c.execute(sa.select(dav_props.c.path, dav_props.c.name, dav_props.c.value).where(where)).all()
    c.execute(dav_props.delete().where(_subtree(dav_props.c.path, dst, include_children=recursive)))
    if move:
        c.execute(dav_props.delete().where(where))
    if rows:
        c.execute(dav_props.insert(), [{"path": _moved(r.path, src, dst), "name": r.name, "value": r.value}
                                       for r in rows])
