"""A mounted storage: the narrow contract the core relies on, over one fsspec
filesystem.

Every method takes backend paths (made by :meth:`Backend.join`), raises only
``gateway.errors`` (translated in ``backends.errors``) and documents whether it
is idempotent. Optional powers are announced in ``capabilities``; callers
read them instead of probing.

Remote mounts add three things here, the same for every protocol: listings
come from a :class:`~backends.cache.ListingCache` that every mutating method
invalidates; an idempotent read that fails with BackendUnavailable is tried
again ``retries`` times; and a connection that broke (``connect`` given) is
rebuilt on the next call instead of failing forever. Protocol quirks live in
small subclasses (``backends.s3``, ``backends.sftp``, ``backends.ftp``,
``backends.webdav``); a folder of this machine's disk is ``backends.local``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import logging
import os
import posixpath
import secrets
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, BinaryIO, Callable, Iterable, Iterator, TypeVar

from backends.cache import ListingCache
from backends.capabilities import Capabilities
from backends.errors import translated
from gateway import errors as E
from gateway.types import RESERVED_PREFIX, Entry

__all__ = ["Backend", "Writer", "CHUNK", "TEMPORARY_KINDS"]

#: The gateway's own names on storage (see :meth:`Backend.temporaries`):
#: uploads in progress, staged destinations and folders being deleted.
TEMPORARY_KINDS = (f"{RESERVED_PREFIX}up-", f"{RESERVED_PREFIX}stage-", f"{RESERVED_PREFIX}trash-")

log = logging.getLogger("gateway.backends")

#: Block size for streamed copies and hashing.
CHUNK = 1 << 20

T = TypeVar("T")


def _mtime(info: dict[str, Any]) -> float | None:
    for key in ("mtime", "LastModified", "modified", "last_modified", "created", "modify"):
        v = info.get(key)
        if v is None:
            continue
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, _dt.datetime):
            if v.tzinfo is None:
                v = v.replace(tzinfo=_dt.timezone.utc)
            return v.timestamp()
        if isinstance(v, str):
            if len(v) >= 14 and v[:14].isdigit():  # FTP MLSD "modify": YYYYMMDDHHMMSS[.sss], UTC
                return _dt.datetime.strptime(v[:14], "%Y%m%d%H%M%S").replace(
                    tzinfo=_dt.timezone.utc).timestamp()
            try:
                return _dt.datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
            except ValueError:
                try:
                    from email.utils import parsedate_to_datetime

                    return parsedate_to_datetime(v).timestamp()
                except (TypeError, ValueError):
                    continue
    return None


IO = Callable[[], Any]  # a context-manager factory: translated(), or a backend's _io


class Writer:
    """A file being uploaded. Nothing is visible at the path until
    :meth:`commit`; :meth:`abort` leaves the path as it was."""

    def __init__(self, f: BinaryIO, on_commit=None, on_abort=None, io: IO = translated) -> None:
        self._f = f
        self._on_commit = on_commit
        self._on_abort = on_abort
        self._io = io
        self.bytes_written = 0
        self.closed = False
        #: The file's entry once committed, where the storage knew it without
        #: another call (``on_commit`` returned it); else None.
        self.entry: Entry | None = None

    def write(self, data: bytes | memoryview) -> int:
        with self._io():
            n = self._f.write(data)
        self.bytes_written += len(data)
        return n if n is not None else len(data)

    def commit(self) -> None:
        """Make the written bytes the content of the path. Raises the
        storage's error (translated) if it refuses; the path is then unchanged
        and what was written is discarded as by :meth:`abort` (a temporary
        is not left behind)."""
        if self.closed:
            return
        try:
            with self._io():
                if self._on_commit:
                    self.entry = self._on_commit(self._f)
                else:
                    self._f.close()
        except BaseException:
            self.abort()
            raise
        finally:
            self.closed = True

    def abort(self) -> None:
        """Forget what was written. Never raises."""
        if self.closed:
            return
        self.closed = True
        try:
            if self._on_abort:
                self._on_abort(self._f)
            elif hasattr(self._f, "discard"):
                self._f.discard()
            else:
                self._f.close()
        except Exception:  # noqa: BLE001 - abort is best effort by contract
            pass


class _Reader:
    """A remote file whose failures arrive as gateway errors (and mark a
    broken connection), like every other call on the backend."""

    def __init__(self, f: Any, io: IO) -> None:
        self._f = f
        self._io = io

    def read(self, n: int = -1) -> bytes:
        with self._io():
            return self._f.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        with self._io():
            return self._f.seek(offset, whence)

    def close(self) -> None:
        try:
            self._f.close()
        except Exception:  # noqa: BLE001 - closing a read handle cannot lose data
            pass

    def __enter__(self) -> "_Reader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


class Backend:
    """One fsspec filesystem rooted at ``root``.

    ``connect`` rebuilds the filesystem after its connection broke (SFTP,
    FTP); ``retries`` is how often an idempotent read is tried again when the
    storage is unavailable, ``retry_backoff_s`` the first pause between
    tries; ``cache_ttl_s`` > 0 keeps folder listings that long."""

    #: Whether this is a folder of this machine's disk (backends.local), where
    #: metadata calls return in microseconds.
    local = False

    def __init__(self, fs, root: str, protocol: str, capabilities: Capabilities, url: str = "",
                 cache_ttl_s: float = 0.0, *, connect: Callable[[], Any] | None = None, retries: int = 0,
                 retry_backoff_s: float = 0.2) -> None:
        self._fs = fs
        self._connect = connect
        self._broken: Any = None
        self.root = root.rstrip("/") if root not in ("", "/") else root
        self.protocol = protocol
        self.capabilities = capabilities
        self.url = url
        self.cache_ttl_s = cache_ttl_s
        self.retries = retries
        self.retry_backoff_s = retry_backoff_s
        self.cache: ListingCache[Entry] | None = (
            ListingCache(cache_ttl_s) if cache_ttl_s > 0 else None)
        #: Told the backend path of every change made through this mount
        #: (None: anything may have changed); see :meth:`invalidate`.
        self.on_change: Callable[[str | None], None] | None = None
        #: Whether cached listings may be served now (False while other
        #: nodes' changes may go unannounced: the cache then has a time to
        #: live of 0).
        self.cache_trusted: Callable[[], bool] = lambda: True
        self._lock = threading.Lock()
        #: Backend paths of temporaries this process is writing now: never swept.
        self._writing: set[str] = set()

    # -- the connection ------------------------------------------------------

    @property
    def fs(self) -> Any:
        """The fsspec filesystem; connected here on first use (when the mount
        was unreachable at start) and again when its connection broke."""
        if (self._fs is None or self._fs is self._broken) and self._connect is not None:
            with self._lock:
                if self._fs is None or self._fs is self._broken:
                    with translated():
                        self._fs = self._connect()
                    self._broken = None
        return self._fs

    @property
    def inner(self) -> Any:
        """The filesystem under any ``slow::`` wrapper, to pick write strategies."""
        fs = self._fs
        return getattr(fs, "fs", fs) if getattr(fs, "protocol", None) == "slow" else fs

    @property
    def in_memory(self) -> bool:
        """Whether the filesystem under any ``slow::`` wrapper is fsspec's
        MemoryFileSystem (never true before fsspec's memory module is loaded,
        so asking does not import it)."""
        memory = sys.modules.get("fsspec.implementations.memory")
        return memory is not None and isinstance(self.inner, memory.MemoryFileSystem)

    @contextmanager
    def _io(self, path: str | None = None) -> Iterator[None]:
        """Run storage calls: failures become gateway errors, and an
        unavailable storage marks the connection for a rebuild."""
        try:
            with translated(path):
                yield
        except E.BackendUnavailable:
            self._broken = self._fs
            raise

    def _idempotent(self, call: Callable[[], T]) -> T:
        """``call()`` (which must only read), tried again with backoff while
        the storage is unavailable, up to ``retries`` more times."""
        attempt = 0
        while True:
            try:
                with self._io():
                    return call()
            except E.BackendUnavailable:
                if attempt >= self.retries:
                    raise
                time.sleep(self.retry_backoff_s * (2 ** attempt))
                attempt += 1

    # -- paths -------------------------------------------------------------

    def join(self, rel: str) -> str:
        """The backend path of a path relative to this mount's root."""
        if not rel:
            return self.root or "/"
        if self.root in ("", "/"):
            return ("/" if self.root == "/" else "") + rel
        return self.root + "/" + rel

    def _entry(self, info: dict[str, Any], path: str | None = None) -> Entry:
        name = posixpath.basename((path or info["name"]).rstrip("/"))
        is_dir = info.get("type") == "directory"
        etag = info.get("ETag") or info.get("etag")
        if isinstance(etag, str):
            etag = etag.strip('"')
        return Entry(
            name=name,
            path=path or info["name"],
            is_dir=is_dir,
            size=0 if is_dir else int(info.get("size") or 0),
            mtime=_mtime(info),
            etag=etag,
            mode=info.get("mode"),
        )

    # -- reads -------------------------------------------------------------

    def info(self, path: str) -> Entry:
        """Metadata of ``path``. Raises NotFound. Idempotent."""
        cached = self._cached_entry(path)
        if cached is not None:
            return cached
        return self._idempotent(lambda: self._info(path))

    def _info(self, path: str) -> Entry:
        """Uncached metadata (inside ``_io``); subclasses adjust."""
        return self._entry(self.fs.info(path), path)

    def _cached_entry(self, path: str) -> Entry | None:
        """``path``'s entry as fetched with its own cached listing (a folder
        is stat'ed before it is listed), else from its parent's; raises
        NotFound when the parent's listing lacks it; None when neither is cached."""
        if self.cache is None or not self.cache_trusted():
            return None
        own = self.cache.own(path)
        if own is not None or path.rstrip("/") == self.root.rstrip("/"):
            return own
        parent, name = posixpath.split(path.rstrip("/"))
        if name.startswith(RESERVED_PREFIX):  # never listed, so never answered from a listing
            return None
        listing = self.cache.get(parent or "/")
        if listing is None:
            return None
        for e in listing:
            if e.name == name:
                return e
        raise E.NotFound("no such file or folder")

    def info_or_folder(self, path: str) -> tuple[Entry | None, Entry | None]:
        """``(entry, None)`` when ``path`` exists, else ``(None, its folder's
        entry)``: what an upload looks at before it creates a file. Raises
        what :meth:`info` of either raises (NotFound: neither exists)."""
        try:
            return self.info(path), None
        except E.NotFound:
            return None, self.info(posixpath.dirname(path.rstrip("/")) or "/")

    def exists(self, path: str) -> bool:
        try:
            self.info(path)
            return True
        except E.NotFound:
            return False

    def iterdir(self, path: str, shown_as: str | None = None) -> Iterator[Entry]:
        """Entries of folder ``path``, without the gateway's reserved names;
        their paths lie under ``shown_as`` (the caller's name for the folder)
        when given. Raises NotFound, NotADirectory."""
        if shown_as is None:
            yield from self.listing(path)
        else:
            prefix = shown_as.rstrip("/") + "/"
            for e in self.listing(path):
                yield e.renamed(prefix + e.name, e.name)

    def listing(self, path: str) -> list[Entry]:
        """The entries of folder ``path`` as one list (from the cache when
        fresh). Raises NotFound, NotADirectory. Idempotent."""
        cache = self.cache if self.cache is not None and self.cache_trusted() else None
        if cache is not None:
            hit = cache.get(path)
            if hit is not None:
                return hit
            generation = cache.generation()
        own, entries = self._idempotent(lambda: self._list(path))
        if cache is not None:
            cache.put(path, entries, generation, own)
        return entries

    def _list(self, path: str) -> tuple[Entry, list[Entry]]:
        """Uncached: the folder's own entry and its listing, reserved names
        left out (inside ``_io``)."""
        info = self.fs.info(path)
        if info.get("type") != "directory":
            raise E.NotADirectory("not a folder")
        return self._entry(info, path), self._entries(path, self.fs.ls(path, detail=True))

    def _entries(self, path: str, listing: list[dict[str, Any]]) -> list[Entry]:
        base = path.rstrip("/")
        out = []
        for item in listing:
            name = posixpath.basename(item["name"].rstrip("/"))
            if not name or name.startswith(RESERVED_PREFIX) or item["name"].rstrip("/") == base:
                continue
            out.append(self._entry(item, f"{base}/{name}"))
        return out

    def walk(self, path: str) -> Iterator[tuple[str, Entry]]:
        """(relative path, entry) for everything below folder ``path``, each
        folder before its contents; memory grows with depth, not tree size."""
        stack = [""]
        while stack:
            rel = stack.pop()
            for e in self.iterdir(path.rstrip("/") + ("/" + rel if rel else "") or "/"):
                child = f"{rel}/{e.name}" if rel else e.name
                yield child, e
                if e.is_dir:
                    stack.append(child)

    def open_read(self, path: str, offset: int = 0) -> BinaryIO:
        """A binary file positioned at ``offset``. Raises NotFound, IsADirectory."""
        if self.info(path).is_dir:
            raise E.IsADirectory("is a folder")

        def call() -> Any:
            f = self.fs.open(path, "rb", block_size=CHUNK)
            if offset:
                f.seek(offset)
            return f

        return _Reader(self._idempotent(call), self._io)  # type: ignore[return-value]

    def open_with_entry(self, path: str, offset: int = 0) -> tuple[BinaryIO | None, Entry]:
        """(the file ``path`` opened as :meth:`open_read` opens it, its
        entry as :meth:`info` gives it), or (None, the entry) for a folder,
        with as few storage calls as the storage allows (a download needs
        both). Raises NotFound."""
        entry = self.info(path)
        if entry.is_dir:
            return None, entry
        return self.open_read(path, offset), entry

    def checksum(self, path: str, algorithm: str) -> str | None:
        """The storage's own hash of the file, or None when it keeps none for
        ``algorithm`` (the caller then hashes the content)."""
        if algorithm not in self.capabilities.checksums:
            return None
        e = self.info(path)
        if algorithm == "md5" and e.etag and "-" not in e.etag and len(e.etag) == 32:
            return e.etag.lower()
        return None

    def hash(self, path: str, algorithm: str) -> str:
        """Hex digest of the file: the storage's own when it has one, else
        computed by streaming the content."""
        native = self.checksum(path, algorithm)
        if native:
            return native
        h = hashlib.new(algorithm)
        with self.open_read(path) as f:
            while True:
                with translated():
                    block = f.read(CHUNK)
                if not block:
                    break
                h.update(block)
        return h.hexdigest()

    # -- writes ------------------------------------------------------------

    def _temp_name(self, path: str, key: str | None) -> str:
        d, n = posixpath.split(path)
        return f"{d}/{RESERVED_PREFIX}up-{key or secrets.token_hex(6)}-{n}"[:4000]

    def open_write(self, path: str, offset: int = 0, temp_key: str | None = None) -> Writer:
        """A :class:`Writer` for ``path``: a new content from ``offset`` 0, or
        continuing the existing file at ``offset`` (its current size, or any
        offset where ``random_write``). Raises Unsupported for an offset the
        storage cannot honour.

        Where the content goes to a temporary name first, ``temp_key`` makes
        that name deterministic, so a retried write (a resumed job) reuses the
        same temporary instead of leaving one behind per attempt."""
        if offset:
            return self._open_continue(path, offset)
        if self.capabilities.atomic_rename and not self.in_memory:
            tmp = self._temp_name(path, temp_key)
            with self._io():
                f = self._open_upload(tmp)
            self._writing.add(tmp)

            def commit(fh, tmp=tmp):
                try:
                    fh.close()
                    self._replace(tmp, path)
                    self.invalidate(path)
                finally:
                    self._writing.discard(tmp)

            def abort(fh, tmp=tmp):
                try:
                    getattr(fh, "discard", fh.close)()  # a close would finish the upload
                finally:
                    self._writing.discard(tmp)
                    self.fs.rm_file(tmp)

            return Writer(f, commit, abort, self._io)
        if self.in_memory:
            buf = io.BytesIO()

            def commit_mem(fh):
                self.fs.pipe_file(path, fh.getvalue())
                self.invalidate(path)

            return Writer(buf, commit_mem, lambda fh: None)
        with self._io():
            f = self.fs.open(path, "wb", block_size=5 * CHUNK)

        def commit_obj(fh):
            fh.close()
            self.invalidate(path)

        return Writer(f, commit_obj, None, self._io)

    def _open_upload(self, path: str) -> Any:
        """A writable file for the new content of ``path`` (inside ``_io``):
        ``close()`` finishes it, ``discard()`` (where it has one) drops it."""
        return self.fs.open(path, "wb")

    def _replace(self, tmp: str, path: str) -> None:
        """Put the finished temporary ``tmp`` at ``path`` (inside ``_io``)."""
        if self.fs.exists(path):
            self.fs.rm_file(path)
        self.fs.mv(tmp, path)

    def _open_continue(self, path: str, offset: int) -> Writer:
        size = self.info(path).size
        if offset != size:
            raise E.Unsupported(f"this storage can only continue a file at its end ({size} bytes), not at {offset}")
        # No in-place append: rewrite the existing bytes, then continue.
        w = self.open_write(path)
        with self.open_read(path) as src:
            while True:
                block = src.read(CHUNK)
                if not block:
                    break
                w.write(block)
        return w

    def mkdir(self, path: str, exist_ok: bool = False) -> None:
        """Create folder ``path`` (its parent must exist). Raises AlreadyExists
        unless ``exist_ok``."""
        try:
            existing = self.info(path)
        except E.NotFound:
            existing = None
        if existing is not None:
            if exist_ok and existing.is_dir:
                return
            raise E.AlreadyExists("already exists")
        with self._io():
            self._mkdir(path)
        self.invalidate(path)

    def _mkdir(self, path: str) -> None:
        """Make the (absent) folder ``path`` (inside ``_io``)."""
        if self.capabilities.directories:
            self.fs.mkdir(path, create_parents=False)
        else:
            self.fs.mkdir(path, create_parents=True)

    def remove(self, path: str, missing_ok: bool = False) -> None:
        """Delete file ``path``. Raises NotFound unless ``missing_ok``, IsADirectory."""
        try:
            with self._io():
                self.fs.rm_file(path)
        except E.NotFound:
            if not missing_ok:
                raise
        finally:
            self.invalidate(path)

    def remove_if_file(self, path: str) -> Entry:
        """The entry of ``path`` as :meth:`info` gives it, and, when it is a
        file, the file removed as :meth:`remove` removes it (a folder is
        left as it is), with as few storage calls as the storage allows.
        Raises NotFound, or the storage's error."""
        entry = self.info(path)
        if not entry.is_dir:
            self.remove(path)
        return entry

    def remove_many(self, paths: list[str], folders: Iterable[str] = ()) -> None:
        """Delete the files ``paths`` (ones already gone are fine), in calls of
        up to ``capabilities.batch_remove``, then the emptied ``folders`` in
        the order given (deepest first; one that got new content meanwhile is
        kept, with a warning in the log). Raises the storage's error; what was
        removed before it stays removed."""
        for path in paths:
            self.remove(path, missing_ok=True)
        for folder in folders:
            try:
                self.rmdir(folder, missing_ok=True)
            except E.DirectoryNotEmpty:
                log.warning("folder %s got new content meanwhile; kept", folder)

    def is_empty(self, path: str) -> bool:
        """Whether folder ``path`` has nothing in it. Raises NotFound."""
        return not self.listing(path)

    def make_folder(self, path: str, empty: Callable[[], bool]) -> None:
        """Make folder ``path`` as part of a copy or move's destination (its
        parent exists or is being made by the same job); ``empty()`` says
        whether the folder copied stays empty. Where folders exist natively
        this is ``mkdir`` (existing is fine); an object store writes a marker
        only where its ``directory_markers`` setting asks (backends.s3).
        Idempotent."""
        self.mkdir(path, exist_ok=True)

    def filled(self, path: str) -> None:
        """``path`` now shows to every client: where an empty folder exists
        only as a marker object, its parent no longer needs one (S3 removes
        it). A no-op where folders exist natively. Idempotent."""

    def emptied(self, path: str) -> None:
        """``path`` (one file, or one empty folder, or the root of a tree a
        job moved or deleted) is gone on its own: its parent stays as a
        folder, as on a file system, although nothing may be left in it.
        Where a folder exists only while something lies under it, S3 writes
        the parent's empty-folder marker then. A no-op where folders exist
        natively. Idempotent."""

    def rmdir(self, path: str, missing_ok: bool = False) -> None:
        """Delete empty folder ``path``. Raises DirectoryNotEmpty, NotFound."""
        try:
            self._rmdir(path)
        except E.NotFound:
            if not missing_ok:
                raise
        finally:
            self.invalidate(path)

    def _rmdir(self, path: str) -> None:
        if self.capabilities.directories:
            with self._io():
                self.fs.rmdir(path)
            return
        if self.listing(path):
            raise E.DirectoryNotEmpty("folder is not empty")
        try:
            with self._io():
                self.fs.rmdir(path)
        except (E.NotFound, E.BackendError):
            pass

    def rm_tree(self, path: str) -> None:
        """Delete ``path`` and everything below it; missing is fine. Idempotent."""
        try:
            if self.exists(path):
                with self._io():
                    self.fs.rm(path, recursive=True)
        finally:
            self.invalidate(path)

    def rename(self, src: str, dst: str) -> None:
        """Native rename; only meaningful where ``atomic_rename`` (else it is
        copy + delete inside the storage library). ``dst`` must not exist."""
        try:
            with self._io():
                self._rename(src, dst)
        finally:
            self.invalidate(src)
            self.invalidate(dst)

    def _rename(self, src: str, dst: str) -> None:
        self.fs.mv(src, dst, recursive=True)

    def copy_file(self, src: str, dst: str, size: int | None = None) -> int:
        """Copy one file inside this storage (server-side where
        ``server_copy``); returns its size. Overwrites ``dst``. ``size``:
        the source's, when the caller knows it (saves a stat)."""
        try:
            with self._io():
                if not self.capabilities.server_copy:
                    raise E.Unsupported("no server-side copy")
                copied = self._server_copy(src, dst)
        finally:
            self.invalidate(dst)
        if copied is not None:
            return copied
        return size if size is not None else self.info(dst).size

    def _server_copy(self, src: str, dst: str) -> int | None:
        """Copy inside the storage (inside ``_io``); the size when known.
        In memory the copy keeps the source's time, as copies do elsewhere:
        a file moved by copy keeps its ETag (davfs2 uploads with If-Match)."""
        self.fs.cp_file(src, dst)
        if self.in_memory:
            store, strip = self.inner.store, self.inner._strip_protocol
            store[strip(dst)].created = store[strip(src)].created
        return None

    def set_mtime(self, path: str, mtime: float) -> bool:
        """Set the modification time where the storage keeps one; returns
        whether it did. Subclasses say how their storage does it; here only
        a folder of this machine's disk under a ``slow::`` wrapper (whose
        latency and injected faults still apply) keeps one."""
        local = sys.modules.get("fsspec.implementations.local")  # loaded whenever such a mount exists
        if local is None or not isinstance(self.inner, local.LocalFileSystem):
            return False
        with self._io(path):
            self.fs.info(path)
            os.utime(path, (mtime, mtime))
        self.invalidate(path)
        return True

    def set_mtime_checked(self, path: str, mtime: float, checks: Callable[[Entry], None]) -> Entry | None:
        """Look ``path`` up, call ``checks`` with what was found (it may
        raise: nothing is changed then), set its modification time and
        return its entry as stored after; None where the storage keeps no
        such time (:meth:`set_mtime` is false). Here: :meth:`info`,
        :meth:`set_mtime`, :meth:`info`; a subclass may do it in one look-up."""
        checks(self.info(path))
        if not self.set_mtime(path, mtime):
            return None
        return self.info(path)

    # -- the gateway's own names -----------------------------------------------

    def temporaries(self, stop: Callable[[], bool] = lambda: False) -> Iterator[Entry]:
        """Every temporary of the gateway on this mount (a name starting with
        one of :data:`TEMPORARY_KINDS`), found by walking the whole mount,
        except the ones this process is writing now. A temporary folder is
        not searched further: its ``size`` is the total of its files, its
        ``mtime`` the newest of its own and its content's (None where the
        storage keeps none). ``path`` is the backend path. The walk ends
        early once ``stop()`` is true. Raises the storage's errors (NotFound
        of a folder removed meanwhile is skipped). Not cached."""
        stack = [self.join("")]
        while stack and not stop():
            folder = stack.pop()
            try:
                with self._io():
                    items = self.fs.ls(folder, detail=True)
            except (E.NotFound, E.NotADirectory):
                continue
            for item in items:
                path = item["name"].rstrip("/")
                name = posixpath.basename(path)
                if not name or path == folder.rstrip("/"):
                    continue
                is_dir = item.get("type") == "directory"
                if name.startswith(TEMPORARY_KINDS):
                    if path not in self._writing:
                        yield self._temporary(item, path, name, is_dir)
                elif is_dir:
                    stack.append(path)

    def _temporary(self, item: dict[str, Any], path: str, name: str, is_dir: bool) -> Entry:
        size, mtime = (0 if is_dir else int(item.get("size") or 0)), _mtime(item)
        if is_dir:
            with self._io():
                found = self.fs.find(path, withdirs=True, detail=True)
            for info in found.values():
                t = _mtime(info)
                mtime = t if mtime is None or (t is not None and t > mtime) else mtime
                if info.get("type") != "directory":
                    size += int(info.get("size") or 0)
        return Entry(name, path, is_dir, size, mtime)

    def invalidate(self, path: str | None = None) -> None:
        """``path`` (everything when None) changed through this mount: drop
        the cached listings that may hold it (:meth:`forget`) and tell
        ``on_change`` (the gateway passes it on to the other nodes). Every
        mutating method calls it."""
        self.forget(path)
        if self.on_change is not None:
            self.on_change(path)

    def forget(self, path: str | None = None) -> None:
        """Drop cached listings that may hold ``path`` (all when None): its
        parent's, its own, and those below it."""
        if self.cache is not None:
            self.cache.invalidate(path)
        try:
            fs = self._fs
            fs.invalidate_cache(path)
            if path:
                fs.invalidate_cache(posixpath.dirname(path))
        except Exception:  # noqa: BLE001 - a cache miss is harmless
            pass

    def disk_usage(self) -> tuple[int, int] | None:
        """(total, free) bytes where the storage tells, else None."""
        return None

    def fence(self, homes: Iterable[str]) -> None:
        """Declare the users' home folders inside this storage (backend
        paths): a path inside one may not lead out of it through a link.
        Storage whose links this gateway cannot see resolved ignores it."""

    def close(self) -> None:
        """Let go of connections. Idempotent."""

    def __repr__(self) -> str:
        return f"<Backend {self.protocol} {self.root!r}>"

