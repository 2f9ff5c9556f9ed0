"""Stable file ids and change versions, keyed by global path.

Sync clients (ownCloud/Nextcloud) recognise a file by an id that survives
renames and moves, and skip a folder whose ETag has not changed since their
last run. Both live here, in the job store's database (table ``file_ids``),
so they survive restarts and every node sees the same:

- a file or folder gets an id the first time one is asked for it; a move
  made through the gateway (any protocol, inline or as a job at its commit)
  takes the ids along; a delete drops them; a copy's destination gets new
  ones when first asked;
- ``version`` is set to a new, larger value on the changed path and every
  ancestor that has an id whenever something changes there through the
  gateway (upload, mkdir, delete, move, copy, time set), so a folder's
  version changes when anything below it changes. A job changes versions
  once, in the transaction that commits it;
- ``checksum``: the digests computed of a whole upload as it streamed
  through the core (``[policy] upload_checksums``, any protocol), with the
  one an uploader sent and the core verified first
  (``"sha1:<hex> md5:<hex>"``), and the size they cover; a new content
  without one (an upload that continued a file) drops it, a move takes it
  along, a copy copies it. Changes behind the gateway's back are not seen:
  a reader trusts it only while the size is still the same;
- ``etag``: the ETag a file had before a move made through the gateway
  that the storage did by copy and that changed what the storage reports
  (a new time where it keeps none, a new object ETag), with
  ``etag_stamp``, what the storage reported of the copy (:func:`stamp`).
  :meth:`FileId.served_etag` answers the kept ETag only while the storage
  still reports exactly that stamp: any change of content or time, through
  the gateway or behind it, changes the stamp (a new upload also drops the
  kept ETag), and the file's ETag is the storage's again. A move of a
  renamed-in-place file keeps nothing (its ETag did not change). A job's
  move (folders, large files across mounts) keeps them the same way, at its
  commit: its journal has what the storage reported of each file when the
  source was walked (``job_items.src_stamp``) and, for the files with an id
  when copied, of the copy (``dst_stamp``, one stat each).

Changes made directly on the storage, behind the gateway's back, change no
version. Until somebody asks for an id or an upload keeps a checksum the
table is empty and a change costs no write (on SQLite, where this process
is the only writer, that is known without a query). There, too, a folder
the table is found not to touch (no row at or below it, none at any folder
above it: files never uploaded or listed by a sync client through the
gateway) is remembered as *clean*, so deleting its files (FTP ``DELE``,
SFTP ``remove`` loops), making folders or setting times in it, or moving
between such folders costs no transaction. A folder is found clean by the
transaction of a change made in it, under the database's write lock; every
transaction that may add a row (an id given, an upload's checksum kept, a
move or copy, a job's commit) forgets, before it commits, each clean folder
the new rows lie in or above, so what was remembered holds at every instant
whoever made the change (any protocol, session or thread of the process).

Thread-safe. Database errors after an operation are logged, not raised: the
operation is done whatever happens here.
"""

from __future__ import annotations

import bisect
import logging
import sqlite3
import threading
import time
from typing import Any, Callable, Iterable, NamedTuple, Sequence

import sqlalchemy as sa

from gateway.jobs.model import Job
from gateway.jobs.schema import file_ids, job_items, path_children, path_subtree
from gateway.jobs.store import _insert_ignore, write_transaction
from gateway.namespace import join, parent_of
from gateway.types import Entry

__all__ = ["FileIds", "FileId", "storage_etag", "stamp"]

log = logging.getLogger(__name__)


def _members(column: sa.Column, folder: str) -> sa.ColumnElement[bool]:
    """``column`` is ``folder`` or one of its direct members."""
    return sa.or_(column == folder, path_children(column, folder))


#: content_changed's statements on SQLite (see FileIds._content_changed_sqlite).
_SET_CONTENT = ("UPDATE file_ids SET version = ?, checksum = ?, checksum_size = ?, etag = NULL, etag_stamp = NULL "
                "WHERE path = ?")
_INSERT_CONTENT = ("INSERT INTO file_ids (path, version, checksum, checksum_size) VALUES (?, ?, ?, ?) "
                   "ON CONFLICT (path) DO NOTHING")
_BUMP = "UPDATE file_ids SET version = ? WHERE path IN (%s)"
#: follow's statements on SQLite (see FileIds._follow_sqlite).
_SELECT_ETAG = "SELECT etag, etag_stamp FROM file_ids WHERE path = ?"
_SET_ETAG = "UPDATE file_ids SET etag = ?, etag_stamp = ? WHERE path = ?"


def _sql_subtree(path: str) -> tuple[str, tuple[str, ...]]:
    """SQLite: a condition (and its arguments) that ``path`` is the given
    path or lies below it, as :func:`~gateway.jobs.schema.path_subtree`, by a range on the index:
    the paths below ``/a`` are those from ``/a/`` up to ``/a0`` (``0``
    follows ``/``; SQLite compares text by its UTF-8 bytes, in code point
    order)."""
    if path == "/":
        return "1", ()
    return "(path = ? OR (path >= ? AND path < ?))", (path, path + "/", path + "0")


#: At most this many clean folders are remembered (a few hundred KiB); past it, the list starts again.
_CLEAN_FOLDERS = 4096
#: An id given to more paths at once than this forgets every clean folder (no walk per path).
_DIRTY_ONE_BY_ONE = 64


def _sql_delete_subtree(cur: sqlite3.Cursor, path: str) -> None:
    where, args = _sql_subtree(path)
    cur.execute(f"DELETE FROM file_ids WHERE {where}", args)


def _lineage(path: str) -> list[str]:
    """``path`` and its ancestors up to ``/``."""
    out = [path]
    while path != "/":
        path = parent_of(path)
        out.append(path)
    return out


def storage_etag(entry: Entry) -> str:
    """A file's ETag (without quotes) from what the storage reports: its
    own version tag when it has one, else one derived from modification
    time and size."""
    if entry.etag:
        tag = entry.etag.removeprefix("W/").replace('"', "").strip()
        if tag:
            return tag
    return "%x-%x" % (int((entry.mtime or 0) * 1_000_000), entry.size)  # a fifth faster than an f-string


def stamp(entry: Entry) -> str:
    """What the storage reports of a file's version: its ETag (or time)
    and size. A kept ETag stands for the file only while this is the same."""
    return f"{storage_etag(entry)}/{entry.size:x}"


def _tag_of(stamp_: str) -> str:
    """The storage ETag a :func:`stamp` was made of."""
    return stamp_.rsplit("/", 1)[0]


class FileId(NamedTuple):
    """What the table knows of one path."""

    id: int
    version: int
    checksum: str | None = None  # "sha1:<hex> md5:<hex>"
    checksum_size: int | None = None
    etag: str | None = None  # kept across a move by copy, see the module's doc
    etag_stamp: str | None = None

    def served_etag(self, entry: Entry) -> str:
        """The ETag of the file ``entry`` (the storage's report of this
        path now): the one kept across its last move while the storage
        still reports the copy that move made, else :func:`storage_etag`."""
        return self.etag_at(stamp(entry))

    def etag_at(self, stamp_: str) -> str:
        """As :meth:`served_etag`, for a file the storage reported as
        ``stamp_`` (:func:`stamp`)."""
        if self.etag is not None and self.etag_stamp == stamp_:
            return self.etag
        return _tag_of(stamp_)


class FileIds:
    """Ids, versions and checksums over the job store's engine."""

    def __init__(self, engine: sa.Engine, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.engine = engine
        self._clock_ns = clock_ns
        self._last = 0
        self._lock = threading.Lock()
        #: SQLite: this process is the table's only writer, so what it knows
        #: of the table holds, and the driver is used straight on the hot path.
        self._sole_writer = engine.dialect.name == "sqlite"
        #: Whether the table may hold a row (None: not asked yet); kept only
        #: for a sole writer.
        self._seen: bool | None = None
        #: Sole writer: the clean folders (see the module's doc), sorted,
        #: and how many times a transaction may have added rows (a folder
        #: found clean before that is not remembered). Under ``_lock``.
        self._clean: list[str] = []
        self._rows_added = 0
        #: Sole writer: one pooled connection kept for the transactions made
        #: through the driver (a checkout and check-in cost half of one),
        #: used under ``_raw_lock`` (SQLite runs one writer at a time anyway)
        #: and given back when the engine is disposed.
        self._raw: Any = None
        self._raw_lock = threading.Lock()
        if self._sole_writer:
            sa.event.listen(engine, "engine_disposed", self._give_back)

    def _version(self) -> int:
        """A new version, larger than any given before by this process."""
        with self._lock:
            self._last = max(self._last + 1, self._clock_ns())
            return self._last

    def _may_have_rows(self) -> bool:
        if not self._sole_writer:
            return True
        with self._lock:
            if self._seen is None:
                with self.engine.connect() as c:
                    self._seen = c.execute(sa.select(file_ids.c.id).limit(1)).first() is not None
            return self._seen

    # -- clean folders (sole writer) -----------------------------------------------

    def _is_clean(self, folder: str) -> bool:
        """Whether no row lies at or below global path ``folder`` nor at any
        folder above it (known without a query, see the module's doc)."""
        if not self._sole_writer:
            return False
        with self._lock:
            clean = self._clean
            i = bisect.bisect_left(clean, folder)
            return i < len(clean) and clean[i] == folder

    def _adding_rows(self, *paths: str) -> None:
        """Rows may be added at or below each of ``paths`` by the write
        transaction the caller holds: no folder they lie in or above is
        clean any more. Call before the transaction commits."""
        with self._lock:
            self._rows_added += 1
            clean = self._clean
            if not clean:
                return
            if len(paths) > _DIRTY_ONE_BY_ONE or "/" in paths:
                clean.clear()
                return
            for path in paths:
                for folder in _lineage(path):
                    i = bisect.bisect_left(clean, folder)
                    if i < len(clean) and clean[i] == folder:
                        del clean[i]
                del clean[bisect.bisect_left(clean, path + "/"):bisect.bisect_left(clean, path + "0")]

    def _found_clean(self, cur: sqlite3.Cursor, folders: Sequence[str]) -> tuple[list[str], int]:
        """Those of ``folders`` that are clean now, read inside the write
        transaction ``cur`` holds (after its own changes), and the count of
        row-adding transactions they were read at: pass both to
        :meth:`_remember_clean` once that transaction has committed."""
        if not folders:
            return [], 0
        with self._lock:
            added = self._rows_added
        found = []
        for folder in dict.fromkeys(folders):
            if folder == "/":
                below: tuple[str, tuple[str, ...]] = ("SELECT 1 FROM file_ids LIMIT 1", ())
            else:
                below = ("SELECT 1 FROM file_ids WHERE path >= ? AND path < ? LIMIT 1", (folder + "/", folder + "0"))
            lineage = _lineage(folder)
            if (cur.execute(*below).fetchone() is None and cur.execute(
                    f"SELECT 1 FROM file_ids WHERE path IN ({', '.join('?' * len(lineage))}) LIMIT 1",
                    lineage).fetchone() is None):
                found.append(folder)
        return found, added

    def _remember_clean(self, found: tuple[list[str], int]) -> None:
        """Keep the folders :meth:`_found_clean` answered, unless a
        transaction may have added rows since it read them."""
        folders, added = found
        if not folders:
            return
        with self._lock:
            if added != self._rows_added:
                return
            clean = self._clean
            for folder in folders:
                if len(clean) >= _CLEAN_FOLDERS:
                    clean.clear()
                i = bisect.bisect_left(clean, folder)
                if i == len(clean) or clean[i] != folder:
                    clean.insert(i, folder)

    # -- reads ---------------------------------------------------------------------

    def ids(self, paths: Sequence[str], folder: str | None = None) -> list[FileId]:
        """The :class:`FileId` of each global path, given an id now if it had
        none. ``folder``: every path is that folder or one of its members
        (a listing): one query reads them all. Raises the database's error."""
        if not paths:
            return []
        found = self._read(paths, folder)
        missing = [p for p in dict.fromkeys(paths) if p not in found]
        if missing:
            with self._lock:
                self._seen = True
            version = self._version()
            with write_transaction(self.engine) as c:
                self._adding_rows(*missing)
                _insert_ignore(c, file_ids, [{"path": p, "version": version} for p in missing])
            found.update(self._read(missing, None))
        return [found[p] for p in paths]

    def _read(self, paths: Sequence[str], folder: str | None) -> dict[str, FileId]:
        cols = (file_ids.c.path, file_ids.c.id, file_ids.c.version, file_ids.c.checksum, file_ids.c.checksum_size,
                file_ids.c.etag, file_ids.c.etag_stamp)
        with self.engine.connect() as c:
            if folder is not None:
                rows = c.execute(sa.select(*cols).where(_members(file_ids.c.path, folder))).all()
            else:
                rows = []
                unique = list(dict.fromkeys(paths))
                for i in range(0, len(unique), 500):
                    rows += c.execute(sa.select(*cols).where(file_ids.c.path.in_(unique[i:i + 500]))).all()
        return {r.path: FileId(r.id, r.version, r.checksum, r.checksum_size, r.etag, r.etag_stamp) for r in rows}

    def having_ids(self, paths: Sequence[str]) -> set[str]:
        """Those of the global ``paths`` that have an id (a sync client was
        told of them). Reads only; on SQLite with an empty table, no query.
        Raises the database's error."""
        if not paths or not self._may_have_rows():
            return set()
        return set(self._read(paths, None))

    def stored_checksum(self, path: str, algorithm: str, size: int) -> str | None:
        """The hex digest by ``algorithm`` (``sha1``, ``md5``...) kept for
        global path ``path`` at its last upload, when one was kept and covers
        ``size`` bytes (the file's size now); else None. Reads only: no id is
        given. A database error is logged and answers None (the caller
        then computes the digest)."""
        if not self._may_have_rows():
            return None
        try:
            found = self._read([path], None).get(path)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("stored checksum of %s not read: %s", path, exc)
            return None
        if found is None or found.checksum is None or found.checksum_size != size:
            return None
        digests = dict(part.split(":", 1) for part in found.checksum.split() if ":" in part)
        return digests.get(algorithm)

    # -- changes -------------------------------------------------------------------

    def changed(self, *paths: str) -> None:
        """Something at each global path changed (content, time, a new
        file or folder): those paths and their ancestors get a new version."""
        if not self._may_have_rows() or all(self._is_clean(parent_of(p)) for p in paths):
            return
        try:
            if self._sole_writer:
                self._sqlite_transaction(lambda cur: self._bump_sqlite(cur, paths), [parent_of(p) for p in paths])
                return
            with write_transaction(self.engine) as c:
                self._bump(c, paths)
        except (sa.exc.SQLAlchemyError, sqlite3.Error) as exc:
            log.warning("file versions of %s not updated: %s", ", ".join(paths), exc)

    def content_changed(self, path: str, checksum: str | None = None, size: int | None = None) -> None:
        """Global path ``path`` has a new content (an upload committed):
        as :meth:`changed`, and its checksum is now ``checksum`` (of
        ``size`` bytes), or none."""
        if checksum is None and (not self._may_have_rows() or self._is_clean(parent_of(path))):
            return
        try:
            if checksum is not None:
                with self._lock:
                    self._seen = True
            if self._sole_writer:
                self._content_changed_sqlite(path, checksum, size)
                return
            with write_transaction(self.engine) as c:
                if checksum is not None:
                    _insert_ignore(c, file_ids, [{"path": path, "version": self._version()}])
                c.execute(file_ids.update().where(file_ids.c.path == path).values(
                    checksum=checksum, checksum_size=size if checksum is not None else None,
                    etag=None, etag_stamp=None))
                self._bump(c, [path])
        except (sa.exc.SQLAlchemyError, sqlite3.Error) as exc:
            log.warning("file version or checksum of %s not updated: %s", path, exc)

    def _content_changed_sqlite(self, path: str, checksum: str | None, size: int | None) -> None:
        """:meth:`content_changed` on SQLite, through the driver: the same
        rows written as the portable statements would (no id taken from the
        sequence unless a row is inserted), in one BEGIN IMMEDIATE
        transaction, without SQLAlchemy's statement building and execution
        (700 of 800 µs of CPU per upload; 60 through the driver). Raises
        sqlite3.Error (the transaction is rolled back, see
        :meth:`_sqlite_transaction`)."""
        version = self._version()
        ancestors = _lineage(path)[1:]

        def write(cur: sqlite3.Cursor) -> None:
            cur.execute(_SET_CONTENT, (version, checksum, size if checksum is not None else None, path))
            if cur.rowcount == 0 and checksum is not None:
                self._adding_rows(path)
                cur.execute(_INSERT_CONTENT, (path, version, checksum, size))
            if ancestors:
                cur.execute(_BUMP % ", ".join("?" * len(ancestors)), (version, *ancestors))

        self._sqlite_transaction(write, [parent_of(path)] if checksum is None else [])

    def _sqlite_transaction(self, write: Callable[[sqlite3.Cursor], None], folders: Sequence[str]) -> None:
        """``write`` in one BEGIN IMMEDIATE transaction through the driver
        (sole writer); then those of ``folders`` found clean in it are
        remembered (see the module's doc). Raises sqlite3.Error (the
        transaction is rolled back: its connection is closed)."""
        with self._raw_lock:
            if self._raw is None:
                self._raw = self.engine.raw_connection()
            cur = self._raw.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                write(cur)
                found = self._found_clean(cur, folders)
                cur.execute("COMMIT")
            except BaseException:
                raw, self._raw = self._raw, None
                raw.invalidate()  # closed, rolling back whatever it held; the next transaction takes another
                raise
        self._remember_clean(found)

    def _give_back(self, engine: sa.Engine) -> None:
        with self._raw_lock:
            raw, self._raw = self._raw, None
        if raw is not None:
            raw.close()

    def follow(self, operation: str, src: str, dst: str | None, before: Entry | None = None,
               after: Entry | None = None) -> None:
        """After the core moved, copied or deleted global path ``src`` (to
        ``dst``) itself: the ids go along (move), are dropped (delete, and
        whatever ``dst`` held before), and both places get new versions.
        ``before``/``after``: the moved file as the storage reported it at
        ``src`` before and at ``dst`` after; when its ETag changed on the
        way (a move by copy) the one it had is kept for the copy."""
        if not self._may_have_rows():
            return
        # Nothing is written where no row lies at, below or above either place.
        if self._is_clean(parent_of(src)) and (dst is None or self._is_clean(parent_of(dst))) and src != "/":
            return
        try:
            if self._sole_writer:
                self._follow_sqlite(operation, src, dst, before, after)
                return
            with write_transaction(self.engine) as c:
                kept = None
                if operation == "move" and before is not None and after is not None and not before.is_dir:
                    kept = self._kept_across(c, src, before, after)
                self._follow(c, operation, src, dst)
                if kept is not None:
                    c.execute(file_ids.update().where(file_ids.c.path == dst).values(
                        etag=kept, etag_stamp=stamp(after)))
        except (sa.exc.SQLAlchemyError, sqlite3.Error) as exc:
            log.warning("file ids of %s not updated after %s: %s", src, operation, exc)

    def _follow_sqlite(self, operation: str, src: str, dst: str | None, before: Entry | None,
                       after: Entry | None) -> None:
        """:meth:`follow` on SQLite, through the driver: the same rows
        deleted, moved, copied and bumped as :meth:`_follow` and
        :meth:`_kept_across` would, in one BEGIN IMMEDIATE transaction,
        without SQLAlchemy's statement building (1.2 ms of CPU per file
        deleted by FTP or SFTP). A subtree is found by a range on the path's
        index, as the portable statements find it. Raises
        sqlite3.Error (the transaction is rolled back, see
        :meth:`_sqlite_transaction`)."""
        if operation == "delete" or dst is None:
            def write(cur: sqlite3.Cursor) -> None:
                _sql_delete_subtree(cur, src)
                self._bump_sqlite(cur, [parent_of(src)] if src != "/" else ["/"])

            self._sqlite_transaction(write, [parent_of(src)] if src != "/" else [])
            return
        if src == dst:
            return

        def transfer(cur: sqlite3.Cursor) -> None:
            assert dst is not None
            kept = None
            if operation == "move" and before is not None and after is not None and not before.is_dir:
                row = cur.execute(_SELECT_ETAG, (src,)).fetchone()
                if row is not None:
                    served = FileId(0, 0, etag=row[0], etag_stamp=row[1]).served_etag(before)
                    kept = None if served == storage_etag(after) else served
            self._adding_rows(dst)
            _sql_delete_subtree(cur, dst)
            where, args = _sql_subtree(src)
            if operation == "move":
                cur.execute(f"UPDATE file_ids SET path = ? || substr(path, ?) WHERE {where}",
                            (dst, len(src) + 1, *args))
                self._bump_sqlite(cur, [parent_of(src), dst])
            else:
                cur.execute("INSERT INTO file_ids (path, version, checksum, checksum_size) "
                            f"SELECT ? || substr(path, ?), ?, checksum, checksum_size FROM file_ids "
                            f"WHERE ({where}) AND checksum IS NOT NULL ORDER BY id",  # ids as a scan gives them
                            (dst, len(src) + 1, self._version(), *args))
                self._bump_sqlite(cur, [dst])
            if kept is not None:
                assert after is not None
                cur.execute(_SET_ETAG, (kept, stamp(after), dst))

        self._sqlite_transaction(transfer, [])

    def _bump_sqlite(self, cur: sqlite3.Cursor, paths: Iterable[str]) -> None:
        """:meth:`_bump` through the driver."""
        lineage = sorted({p for path in paths for p in _lineage(path)})
        cur.execute(_BUMP % ", ".join("?" * len(lineage)), (self._version(), *lineage))

    def _kept_across(self, c: sa.Connection, src: str, before: Entry, after: Entry) -> str | None:
        """The ETag to keep for the copy a move made of ``src``: the one it
        was served with (``before``), when the copy's differs; None when
        nothing is to be kept, or nobody was given an id for ``src`` (no
        sync client has seen it)."""
        row = c.execute(sa.select(file_ids.c.etag, file_ids.c.etag_stamp)
                        .where(file_ids.c.path == src)).first()
        if row is None:
            return None
        served = FileId(0, 0, etag=row.etag, etag_stamp=row.etag_stamp).served_etag(before)
        return None if served == storage_etag(after) else served

    def committed(self, c: sa.Connection, job: Job) -> None:
        """The job store's commit hook: as :meth:`follow`, for ``job``,
        within the commit's own transaction ``c``; a move keeps the ETag of
        each file whose copy the runner stamped (see the module's doc)."""
        if not self._may_have_rows():
            return
        kept = self._kept_by_job(c, job) if job.operation == "move" and job.dst else {}
        self._follow(c, job.operation, job.src, job.dst)
        if kept:
            c.execute(file_ids.update().where(file_ids.c.path == sa.bindparam("dst"))
                      .values(etag=sa.bindparam("etag"), etag_stamp=sa.bindparam("stamp")),
                      [{"dst": p, "etag": e, "stamp": st} for p, (e, st) in kept.items()])

    def _kept_by_job(self, c: sa.Connection, job: Job) -> dict[str, tuple[str, str]]:
        """Destination path → (ETag to keep, the copy's stamp) for the files
        of move ``job`` whose copy was stamped: the ETag each was served
        with when the source was walked, where the copy's storage ETag
        differs."""
        assert job.dst is not None
        items = c.execute(sa.select(job_items.c.rel, job_items.c.src_stamp, job_items.c.dst_stamp).where(
            job_items.c.job_id == job.id, job_items.c.dst_stamp.is_not(None),
            job_items.c.src_stamp.is_not(None))).all()
        if not items:
            return {}
        rows: dict[str, sa.Row] = {}
        srcs = [join(job.src, i.rel) for i in items]
        cols = (file_ids.c.path, file_ids.c.etag, file_ids.c.etag_stamp)
        for k in range(0, len(srcs), 500):
            rows.update((r.path, r) for r in c.execute(sa.select(*cols).where(file_ids.c.path.in_(srcs[k:k + 500]))))
        kept = {}
        for src, i in zip(srcs, items):
            row = rows.get(src)
            if row is None:
                continue
            served = FileId(0, 0, etag=row.etag, etag_stamp=row.etag_stamp).etag_at(i.src_stamp)
            if served != _tag_of(i.dst_stamp):
                kept[join(job.dst, i.rel)] = (served, i.dst_stamp)
        return kept

    def _follow(self, c: sa.Connection, operation: str, src: str, dst: str | None) -> None:
        if operation == "delete" or dst is None:
            c.execute(file_ids.delete().where(path_subtree(file_ids.c.path, src)))
            self._bump(c, [parent_of(src)] if src != "/" else ["/"])
            return
        if src == dst:
            return
        self._adding_rows(dst)
        c.execute(file_ids.delete().where(path_subtree(file_ids.c.path, dst)))
        if operation == "move":
            c.execute(file_ids.update().where(path_subtree(file_ids.c.path, src)).values(
                path=sa.literal(dst) + sa.func.substr(file_ids.c.path, len(src) + 1)))
            self._bump(c, [parent_of(src), dst])
        else:  # the copies get new ids when asked, and the checksums now
            moved = sa.literal(dst) + sa.func.substr(file_ids.c.path, len(src) + 1)
            c.execute(file_ids.insert().from_select(
                ["path", "version", "checksum", "checksum_size"],
                sa.select(moved, sa.literal(self._version()), file_ids.c.checksum, file_ids.c.checksum_size)
                .where(path_subtree(file_ids.c.path, src), file_ids.c.checksum.is_not(None))
                .order_by(file_ids.c.id)))  # new ids in the sources' order, whichever index found them
            self._bump(c, [dst])

    def _bump(self, c: sa.Connection, paths: Iterable[str]) -> None:
        lineage = sorted({p for path in paths for p in _lineage(path)})
        c.execute(file_ids.update().where(file_ids.c.path.in_(lineage)).values(version=self._version()))
