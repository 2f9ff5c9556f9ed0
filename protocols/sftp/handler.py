"""The SFTP hooks (asyncssh ``SFTPServer``) over the operations core.

Each hook reads its arguments, makes one core call in the server's bounded
worker pool (never on the event loop) and renders the result; gateway errors
become SFTP statuses through :mod:`protocols.sftp.errors`. scp (both the SFTP
based and the legacy protocol) runs through these same hooks.

Opening for writing, as SFTP v3 clients do it:

- ``TRUNC`` / ``EXCL`` / a new file: an upload from offset 0 (nothing shows at
  the path until close commits it).
- ``APPEND`` (OpenSSH ``reput``, asyncssh mode ``"a"``): an upload continuing
  the file at its size; as with O_APPEND, each write goes to the end whatever
  offset it names (asyncssh sends 0), in the order the writes arrived.
- ``WRITE`` alone on an existing file (lftp ``put -c``, sshfs): the first write
  decides: offset 0 replaces the file, offset == size continues it (resume).
  Closed without a write, the file is left as it was.

Writes run concurrently, so blocks may reach an upload out of order: one
ahead of a gap is held in memory and answered only once the gap is filled
and it is written (see :meth:`GatewaySFTPServer.start_write`); a failure
then answers each such write with the error.

A connection that drops mid-upload commits what arrived when it has no gap,
as OpenSSH's sftp-server leaves a partial file behind: that is what ``reput``
resumes from. A write below an upload's end that is not an exact
retransmission is refused (``Upload.write_at``), never dropped.

Bounds (``[sftp]`` config): open handles per connection
(``max_handles_per_session``), out-of-order write bytes per connection and in
all (``max_reorder_bytes_per_session``, ``max_reorder_bytes``), and the length
of one read (``MAX_IO_LEN``, what ``limits@openssh.com`` offers).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import logging
import os
import stat as st
import struct
import threading
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, BinaryIO, Callable, Iterator

import asyncssh
from asyncssh import FXF_APPEND, FXF_CREAT, FXF_EXCL, FXF_TRUNC, FXF_WRITE, SFTPAttrs, SFTPName
from asyncssh.constants import FILEXFER_ATTR_ACMODTIME, FILEXFER_ATTR_PERMISSIONS, FILEXFER_ATTR_SIZE

from gateway import errors as E
from gateway import metrics
from gateway.budget import ByteBudget
from gateway.namespace import normalise
from gateway.ops import Upload
from gateway.types import Entry, Session
from protocols.sftp.errors import to_sftp_error

__all__ = ["Context", "GatewaySFTPServer", "HASH_ALGORITHMS", "MAX_IO_LEN", "SessionLimits"]

log = logging.getLogger("gateway.sftp")

#: check-file algorithms, in the names the SFTP extension drafts use.
HASH_ALGORITHMS = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")
#: The longest read answered and the write size offered by limits@openssh.com
#: (OpenSSH's sftp-server offers the same): a longer read returns this much,
#: which SFTP allows and every client handles, so a read's reply is bounded.
MAX_IO_LEN = 256 << 10
#: Block size of a copy-data range copied through read and write.
_COPY_BLOCK = MAX_IO_LEN


#: A call made on the event loop (see GatewaySFTPServer._quick) that takes
#: longer than this means the disk is struggling: every call of the listener
#: then goes to the worker pool for a pause (:meth:`Context.disk_stalled`).
#: The time the thread spent waiting for a CPU (other processes' load, see
#: :class:`RunQueueWait`) is not counted: the pool would not be faster then,
#: only cost more CPU.
SLOW_INLINE_S = 0.01
#: The pause after a stall that follows a quiet spell: a disk that stalls
#: now and then (a journal commit on a busy disk) costs seconds of worker
#: hops (each 0.1-0.3 ms of CPU, a small download's four calls 0.3 ms),
#: not a minute of them. Each stall within SLOW_DISK_PAUSE_S of the end of
#: the last pause doubles it, up to SLOW_DISK_PAUSE_S: a disk that stays
#: slow keeps the calls off the loop.
SLOW_DISK_FIRST_PAUSE_S = 2.0
SLOW_DISK_PAUSE_S = 60.0


class RunQueueWait:
    """How long the calling thread has waited for a CPU (the second field of
    Linux's ``/proc/thread-self/schedstat``), in seconds; 0.0 where the file
    is missing. One descriptor per thread, re-read with ``pread`` (~2 µs),
    closed when the thread ends."""

    _local = threading.local()

    class _File:
        def __init__(self) -> None:
            try:
                self.fd: int | None = os.open("/proc/thread-self/schedstat", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self.fd = None

        def __del__(self) -> None:
            if self.fd is not None:
                os.close(self.fd)

    @classmethod
    def seconds(cls) -> float:
        f = getattr(cls._local, "file", None)
        if f is None:
            f = cls._local.file = cls._File()
        if f.fd is None:
            return 0.0
        try:
            return int(os.pread(f.fd, 64, 0).split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            return 0.0
#: Writes below this offset are quick calls. Reads always are: the page cache
#: and readahead answer a file being streamed in microseconds (1 GiB download
#: 5% faster than through the pool), while a large upload can be held up by
#: the kernel's writeback throttling, which the pool keeps off the loop.
QUICK_WRITE_BYTES = 1 << 20


@dataclass
class Context:
    """What every connection of one listener shares."""

    gw: Any
    pool: Executor
    budget_s: float
    #: Until then (time.monotonic()), no core call is made on the event loop.
    pool_only_until: float = 0.0
    disk_was_slow: bool = False
    #: The last pause (seconds).
    pause_s: float = 0.0

    def disk_stalled(self, now: float) -> float:
        """A call on the event loop stalled at ``now`` (time.monotonic()):
        calls go to the worker pool for the pause this returns (see
        SLOW_DISK_FIRST_PAUSE_S)."""
        recurring = self.pool_only_until and now - self.pool_only_until < SLOW_DISK_PAUSE_S
        self.pause_s = min(SLOW_DISK_PAUSE_S, self.pause_s * 2) if recurring else SLOW_DISK_FIRST_PAUSE_S
        self.pool_only_until = now + self.pause_s
        return self.pause_s


@dataclass
class SessionLimits:
    """What one SSH connection may hold, over all its SFTP channels and scp:
    open handles (files and folders) and out-of-order write bytes. Used on
    the event loop only."""

    max_handles: int
    reorder: ByteBudget
    handles: int = 0

    def open_handle(self) -> None:
        """Count one more open handle. Raises SFTPFailure ("too many open
        files in this session") at the limit."""
        if self.handles >= self.max_handles:
            metrics.refused("sftp", "handles_per_session")
            raise asyncssh.SFTPFailure(f"too many open files in this session (at most {self.max_handles}); "
                                       f"close some first")
        self.handles += 1
        metrics.in_use("sftp_open_handles", 1)

    def close_handle(self, n: int = 1) -> None:
        self.handles -= n
        metrics.in_use("sftp_open_handles", -n)


@contextlib.contextmanager
def translated(fn: Callable) -> Iterator[None]:
    """Gateway errors raised inside become SFTP errors."""
    try:
        yield
    except E.GatewayError as exc:
        raise to_sftp_error(exc) from None
    except Exception:
        # Not a gateway error: a bug or an untranslated storage failure. The
        # client gets asyncssh's generic failure; the log gets the traceback.
        log.warning("sftp: %s failed unexpectedly", getattr(fn, "__qualname__", fn), exc_info=True)
        raise


async def call(ctx: Context, fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Run a core call in the worker pool; gateway errors become SFTP errors."""
    with translated(fn):
        return await asyncio.get_running_loop().run_in_executor(ctx.pool, functools.partial(fn, *args, **kwargs))


def attrs_of(entry: Entry) -> SFTPAttrs:
    """The SFTP attributes of a core entry (type bits included: OpenSSH's
    ``cp`` refuses a source whose permissions do not say "regular file")."""
    mtime = _seconds(entry)
    return SFTPAttrs(type=asyncssh.FILEXFER_TYPE_DIRECTORY if entry.is_dir else asyncssh.FILEXFER_TYPE_REGULAR,
                     size=entry.size, permissions=_permissions(entry), atime=mtime, mtime=mtime, nlink=1)


def _permissions(entry: Entry) -> int:
    kind = st.S_IFDIR if entry.is_dir else st.S_IFREG
    return kind | (st.S_IMODE(entry.mode) if entry.mode is not None else (0o755 if entry.is_dir else 0o644))


def _seconds(entry: Entry) -> int | None:
    """The entry's time as SFTP v3 carries it, unsigned 32-bit: a file from
    before 1970 or after 2106 shows the nearest time rather than failing."""
    return min(max(int(entry.mtime), 0), 0xFFFFFFFF) if entry.mtime is not None else None


#: filemode() of each permission value seen (see wire_name).
_MODES: dict[int, str] = {}
_HALF_YEAR = 365 * 24 * 60 * 60 / 2
#: SFTP v3 wire parts of a name: string lengths, and attributes (flags,
#: size, permissions; then atime and mtime when the entry has a time).
_LEN = struct.Struct(">I")
_ATTRS = struct.Struct(">IQI")
_ATTRS_TIMES = struct.Struct(">IQIII")


def _modtime(mtime: float, recent: bool) -> str:
    """The date column of asyncssh's format_longname (see wire_name)."""
    t = time.localtime(mtime)
    try:
        day = time.strftime("%e", t)
    except ValueError:
        day = time.strftime("%d", t)
    return time.strftime("%b ", t) + day + time.strftime(" %H:%M" if recent else "  %Y", t)


def _mtime(attrs: SFTPAttrs) -> float:
    return attrs.mtime + (attrs.mtime_ns or 0) / 1e9


@dataclass(eq=False)
class _File:
    """One open file handle."""

    path: str
    writable: bool
    entry: Entry | None = None          # at open time (fstat of a handle not written)
    reader: BinaryIO | None = None
    pos: int = 0
    upload: Upload | None = None
    opening: asyncio.Future | None = None  # the upload a non-truncating open starts on its first write
    mtime: float | None = None          # set through the handle; applied once the upload is committed
    append: bool = False                # FXF_APPEND: every write goes to the end
    end: int = 0                        # where the next write of an append handle goes
    copied: bool = False                # content replaced by a server-side copy (copy-data)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: held writes not yet answered: (end offset, sequence, future), a heap
    waiting: list[tuple[int, int, asyncio.Future]] = field(default_factory=list)


class Names:
    """Names already in their SFTP v3 wire form, as asyncssh's FXP_NAME reply
    takes them: its length is the name count, and it iterates as one item
    whose ``encode`` gives every name's bytes."""

    def __init__(self, count: int, wire: bytes) -> None:
        self._count, self._wire = count, wire

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator["Names"]:
        yield self

    def encode(self, sftp_version: int) -> bytes:
        return self._wire

    def __str__(self) -> str:
        return f"{self._count} names, {len(self._wire)} bytes"


class _Listing:
    """A folder listing streamed from the core, a reply's worth of names per
    worker call, so a huge folder is never held in memory."""

    def __init__(self, ctx: Context, session: Session, path: str, wire: Callable[[Entry], bytes]) -> None:
        self._ctx, self._session, self._path = ctx, session, path
        self._wire = wire
        self._entries: Iterator[Entry] | None = None

    async def open(self) -> None:
        """List the folder; raises its error (no such folder...) now."""
        if self._entries is None:
            self._entries = await call(self._ctx, self._ctx.gw.ops.list, self._session, self._path)

    async def names(self, count: int, max_bytes: int) -> Names:
        """The next names: at most ``count``, and ``max_bytes`` give or take
        one name; none at the end."""
        await self.open()
        return await call(self._ctx, self._next_names, count, max_bytes)

    async def __aiter__(self) -> AsyncIterator[SFTPName]:
        """Name by name, with attributes (asyncssh's scp walks folders so)."""
        await self.open()
        while True:
            batch = await call(self._ctx, self._take, 256)
            if not batch:
                return
            for entry in batch:
                yield SFTPName(entry.name.encode("utf-8"), attrs=attrs_of(entry))

    def _take(self, count: int) -> list[Entry]:
        assert self._entries is not None
        return list(itertools.islice(self._entries, count))

    def _next_names(self, count: int, max_bytes: int) -> Names:
        assert self._entries is not None
        out: list[bytes] = []
        size = 0
        for entry in self._entries:
            out.append(self._wire(entry))
            size += len(out[-1])
            if len(out) >= count or size >= max_bytes:
                break
        return Names(len(out), b"".join(out))


class GatewaySFTPServer(asyncssh.SFTPServer):
    """The SFTP server of one SSH connection's session."""

    def __init__(self, chan: asyncssh.SSHServerChannel, ctx: Context, session: Session,
                 limits: SessionLimits) -> None:
        super().__init__(chan)
        self.ctx = ctx
        self.session = session
        self.limits = limits
        self.ops = ctx.gw.ops
        self._dates: dict[tuple[int, bool], str] = {}  # see wire_name

    async def _run(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        return await call(self.ctx, fn, *args, **kwargs)

    async def _quick(self, path: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """A call about ``path`` that takes microseconds on this machine's disk
        and never waits for a job: metadata (stat, open, close, unlink, mkdir,
        set a time), reads, and an upload's first MiB. On the local disk it
        is made on the event loop: the hop to a worker thread and back costs
        0.1-0.3 ms, the largest part of a small request. Elsewhere, or while
        the disk is slow (one such call took over SLOW_INLINE_S, not counting
        the time it waited for a CPU: for a pause, see
        :meth:`Context.disk_stalled`), it goes to the worker pool like any
        call."""
        ctx = self.ctx
        if time.monotonic() < ctx.pool_only_until or not self.ops.on_local_disk(self.session, path):
            return await call(ctx, fn, *args, **kwargs)
        started = time.monotonic()
        waited = RunQueueWait.seconds()
        try:
            with translated(fn):
                return fn(*args, **kwargs)
        finally:
            took = time.monotonic() - started
            if took > SLOW_INLINE_S and took - (RunQueueWait.seconds() - waited) > SLOW_INLINE_S:
                pause = ctx.disk_stalled(time.monotonic())
                # A warning the first time; a disk that stays slow says so at INFO, once a pause.
                log.log(logging.INFO if ctx.disk_was_slow else logging.WARNING,
                        "sftp: %s on %s took %.0f ms on the local disk (a slow disk, or a process too busy to "
                        "run it); core calls go to worker threads for the next %.0f s",
                        getattr(fn, "__name__", fn), path, took * 1000, pause)
                ctx.disk_was_slow = True

    @staticmethod
    def _path(raw: bytes) -> str:
        try:
            return normalise(raw)
        except E.GatewayError as exc:
            raise to_sftp_error(exc) from None

    # asyncssh's defaults map paths onto the local disk; nothing here may.
    def map_path(self, path: bytes) -> bytes:
        raise asyncssh.SFTPOpUnsupported("not available on this server")

    def format_user(self, uid: int | None) -> str:
        return self.session.user.name

    def format_group(self, gid: int | None) -> str:
        return self.session.user.name

    def wire_name(self, entry: Entry) -> bytes:
        """``entry`` as an SFTP v3 name: the bytes asyncssh encodes for
        ``SFTPName(name, longname, attrs_of(entry))`` with the ``ls -l`` line
        its ``format_longname`` makes (a test compares). Written directly,
        with mode and date parts cached: asyncssh spends a filemode, four
        strftime calls and two record objects on every entry."""
        name = entry.name.encode("utf-8")
        perms, mtime, size = _permissions(entry), _seconds(entry), entry.size
        mode = _MODES.get(perms) or _MODES.setdefault(perms, st.filemode(perms))
        modtime = ""
        if mtime is not None:
            now = time.time()
            recent = now - _HALF_YEAR < mtime <= now
            key = (mtime // 60, recent)
            modtime = self._dates.get(key, "")
            if not modtime:
                if len(self._dates) > 10_000:
                    self._dates.clear()
                modtime = self._dates[key] = _modtime(mtime, recent)
        user = self.session.user.name
        longname = f"{mode:10s}    1 {user:8s} {user:8s} {size:>8d} {modtime:12s} ".encode() + name
        if mtime is None:
            attrs = _ATTRS.pack(FILEXFER_ATTR_SIZE | FILEXFER_ATTR_PERMISSIONS, size, perms)
        else:
            attrs = _ATTRS_TIMES.pack(FILEXFER_ATTR_SIZE | FILEXFER_ATTR_PERMISSIONS | FILEXFER_ATTR_ACMODTIME,
                                      size, perms, mtime, mtime)
        return _LEN.pack(len(name)) + name + _LEN.pack(len(longname)) + longname + attrs

    # -- files ----------------------------------------------------------------

    async def open(self, path: bytes, pflags: int, attrs: SFTPAttrs) -> _File:
        """Open a file; counts against ``max_handles_per_session`` until closed."""
        self.limits.open_handle()
        try:
            return await self._open(self._path(path), pflags)
        except BaseException:
            self.limits.close_handle()
            raise

    async def _open(self, p: str, pflags: int) -> _File:
        s = self.session
        append = bool(pflags & FXF_APPEND)
        if not pflags & FXF_WRITE:
            reader, entry = await self._quick(p, self.ops.open_read, s, p, 0)
            return _File(p, False, entry=entry, reader=reader)
        if pflags & (FXF_TRUNC | FXF_EXCL):
            if pflags & FXF_EXCL and await self._quick(p, self.ops.exists, s, p):
                raise to_sftp_error(E.AlreadyExists(f"{p}: already exists", p))
            return _File(p, True, upload=await self._quick(p, self._start_upload, p, 0), append=append)
        try:
            entry = await self._quick(p, self.ops.stat, s, p)
        except asyncssh.SFTPNoSuchFile:
            if not pflags & FXF_CREAT:
                raise
            return _File(p, True, upload=await self._quick(p, self._start_upload, p, 0), append=append)
        if append:
            upload = await self._quick(p, self._start_upload, p, entry.size)
            return _File(p, True, entry=entry, upload=upload, append=True, end=entry.size)
        return _File(p, True, entry=entry)

    def _start_upload(self, p: str, offset: int) -> Upload:
        upload = self.ops.open_write(self.session, p, offset)
        upload.hold_within(self.limits.reorder)
        return upload

    def append_offset(self, f: _File, length: int) -> int:
        """Where a write of ``length`` bytes on append handle ``f`` goes: the
        end of what the writes before it wrote. Called in the order the
        writes arrived (they may then run concurrently)."""
        offset, f.end = f.end, f.end + length
        return offset

    def _read(self, f: _File, offset: int, size: int) -> bytes:
        with f.lock:
            if f.upload is not None or f.opening is not None:
                raise E.Unsupported(f"{f.path}: cannot read a file through a handle that is writing it", f.path)
            if f.reader is None or offset != f.pos:
                if f.reader is not None and f.reader.seekable():
                    f.reader.seek(offset)
                else:
                    if f.reader is not None:
                        f.reader.close()
                    f.reader, _ = self.ops.open_read(self.session, f.path, offset)
                f.pos = offset
            data = f.reader.read(size)
            f.pos += len(data)
            return data

    async def read(self, f: _File, offset: int, size: int) -> bytes:
        """At most MAX_IO_LEN bytes from ``offset`` (SFTP allows a short read:
        clients ask again for the rest)."""
        return await self._quick(f.path, self._read, f, offset, min(size, MAX_IO_LEN))

    async def _upload(self, f: _File, offset: int) -> Upload:
        if f.copied:
            raise to_sftp_error(E.Unsupported(f"{f.path}: already written by a server-side copy", f.path))
        if f.upload is None:
            if f.opening is None:
                # Requests start in the order they arrived, so this is the
                # first write the client sent: it says where the upload starts.
                f.opening = asyncio.ensure_future(self._run(self._start_upload, f.path, offset))
            f.upload = await asyncio.shield(f.opening)
        return f.upload

    async def write(self, f: _File, offset: int, data: bytes | memoryview) -> int:
        """Write ``data`` at ``offset``; returns once it is written (a block
        ahead of a gap: once the gap is filled). Raises the write's SFTP error."""
        held = await self.start_write(f, offset, data)
        if held is not None:
            await held
        return len(data)

    async def start_write(self, f: _File, offset: int,
                          data: bytes | memoryview) -> "asyncio.Future[None] | None":
        """Write ``data`` at ``offset``: None once it is written, or, for a
        block the upload holds ahead of a gap, a future that is done when the
        gap is filled and the block written. Answering such a write only then
        lets the client's window of requests in flight (OpenSSH: 64 of 256 KiB)
        bound what is held, not the reorder budget (which still refuses a
        client that sends more out of order). Raises the write's SFTP error;
        the future raises the error of the write that failed the upload, or
        of the close that found the gap still open."""
        if not f.writable:
            raise to_sftp_error(E.BadRequest(f"{f.path}: not opened for writing", f.path))
        upload = await self._upload(f, offset)
        try:
            if offset < QUICK_WRITE_BYTES:
                await self._quick(f.path, upload.write_at, offset, data)
            else:
                await self._run(upload.write_at, offset, data)
        except Exception as exc:
            self._fail_waiting(f, exc)  # the upload is aborted: its held writes were not written
            raise
        # Held blocks written by this write (or by one that returned first) are answered now.
        self._wake(f, upload.size)
        end = offset + len(data)
        if end <= upload.size:
            return None
        held: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(f.waiting, (end, id(held), held))
        return held

    @staticmethod
    def _wake(f: _File, size: int) -> None:
        """Answer the held writes of ``f`` that end at or below ``size``."""
        while f.waiting and f.waiting[0][0] <= size:
            held = heapq.heappop(f.waiting)[2]
            if not held.done():
                held.set_result(None)

    @staticmethod
    def _fail_waiting(f: _File, exc: BaseException) -> None:
        """Fail every held write of ``f`` with ``exc`` (an SFTP error) or, for
        any other exception, a generic failure: none is left unanswered."""
        if not f.waiting:
            return
        if isinstance(exc, asyncssh.SFTPError):
            code, reason = exc.code, exc.reason
        else:
            code, reason = asyncssh.FX_FAILURE, f"{f.path}: the upload failed; this write was not saved"
        waiting, f.waiting = f.waiting, []
        for _, _, held in waiting:
            if not held.done():
                held.set_exception(asyncssh.SFTPError(code, reason))  # one each: raised in its own task

    async def close(self, f: _File) -> None:
        """Close a handle: commit its upload (raises why it was not saved:
        a gap, a refused write, the storage's error; the upload is then
        discarded). The handle is released whatever fails, and writes still
        held ahead of a gap are answered with the failure."""
        try:
            if f.reader is not None:
                await self._quick(f.path, f.reader.close)
            if f.opening is not None and f.upload is None:
                try:
                    f.upload = await f.opening
                except asyncssh.SFTPError:
                    return  # the writes already reported why
            if f.upload is not None and not f.copied:
                try:
                    await self._quick(f.path, f.upload.commit)
                except BaseException as exc:
                    self._fail_waiting(f, exc)  # the gap, say: each held write is told
                    raise
            if f.mtime is not None:
                await self._quick(f.path, self.ops.set_mtime, self.session, f.path, f.mtime)
        finally:
            self._fail_waiting(f, asyncssh.SFTPFailure(f"{f.path}: closed before this write was placed; not saved"))
            self.limits.close_handle()

    async def fstat(self, f: _File) -> SFTPAttrs:
        if f.upload is not None and not f.copied:
            return attrs_of(Entry(f.path.rsplit("/", 1)[-1], f.path, False, f.upload.size, time.time()))
        if f.entry is None or f.copied:
            f.entry = await self._quick(f.path, self.ops.stat, self.session, f.path)
        return attrs_of(f.entry)

    async def fsetstat(self, f: _File, attrs: SFTPAttrs) -> None:
        if attrs.size is not None:
            size = f.upload.size if f.upload is not None else (await self.fstat(f)).size
            if attrs.size != size:
                raise to_sftp_error(E.Unsupported(f"{f.path}: cannot change a file's size; upload it again", f.path))
        if attrs.mtime is not None:
            if f.writable:
                if not self.ops.keeps_mtime(self.session, f.path):  # refused now, not at close
                    raise to_sftp_error(E.Unsupported(f"{f.path}: this storage does not keep modification times",
                                                      f.path))
                f.mtime = _mtime(attrs)  # set after close, or the commit would replace it
            else:
                await self._quick(f.path, self.ops.set_mtime, self.session, f.path, _mtime(attrs))

    async def fsync(self, f: _File) -> None:
        """Uploads become durable when closed (the commit); nothing to do."""

    async def fstatvfs(self, f: _File) -> asyncssh.SFTPVFSAttrs:
        return await self._statvfs(f.path)

    # -- paths ------------------------------------------------------------------

    async def stat(self, path: bytes) -> SFTPAttrs:
        p = self._path(path)
        return attrs_of(await self._quick(p, self.ops.stat, self.session, p))

    lstat = stat

    async def setstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        p = self._path(path)
        if attrs.size is not None and attrs.size != (await self._quick(p, self.ops.stat, self.session, p)).size:
            raise to_sftp_error(E.Unsupported(f"{p}: cannot change a file's size; upload it again", p))
        if attrs.mtime is not None:
            await self._quick(p, self.ops.set_mtime, self.session, p, _mtime(attrs))
        else:  # permissions and owners are not kept: accept them for an existing path
            await self._quick(p, self.ops.stat, self.session, p)

    lsetstat = setstat

    def scandir(self, path: bytes) -> _Listing:
        return _Listing(self.ctx, self.session, self._path(path), self.wire_name)

    async def remove(self, path: bytes) -> None:
        p = self._path(path)  # a file: never a job
        await self._quick(p, self.ops.delete, self.session, p, folder=False, budget_s=self.ctx.budget_s)

    async def mkdir(self, path: bytes, attrs: SFTPAttrs) -> None:
        p = self._path(path)
        await self._quick(p, self.ops.mkdir, self.session, p)

    async def rmdir(self, path: bytes) -> None:
        await self._run(self.ops.delete, self.session, self._path(path), recursive=True, folder=True,
                        budget_s=self.ctx.budget_s)

    async def rename(self, oldpath: bytes, newpath: bytes) -> None:
        await self._run(self.ops.move, self.session, self._path(oldpath), self._path(newpath), overwrite=False,
                        budget_s=self.ctx.budget_s)

    async def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        # rename(2) replaces a file, never a folder tree: refuse rather than
        # let the overwrite delete a whole folder.
        old, new = self._path(oldpath), self._path(newpath)
        try:
            target = await self._run(self.ops.stat, self.session, new)
        except asyncssh.SFTPNoSuchFile:
            target = None
        if target is not None and target.is_dir and new != old:
            raise to_sftp_error(E.IsADirectory(f"{new}: is a folder; remove it first", new))
        await self._run(self.ops.move, self.session, old, new, overwrite=True, budget_s=self.ctx.budget_s)

    def realpath(self, path: bytes) -> bytes:
        return self._path(path or b".").encode("utf-8")

    async def statvfs(self, path: bytes) -> asyncssh.SFTPVFSAttrs:
        return await self._statvfs(self._path(path))

    async def _statvfs(self, p: str) -> asyncssh.SFTPVFSAttrs:
        usage = await self._run(self.ops.disk_usage, self.session, p)
        if usage is None:
            raise asyncssh.SFTPOpUnsupported(f"{p}: this storage does not report its size")
        total, free = usage
        block = 4096
        return asyncssh.SFTPVFSAttrs(bsize=block, frsize=block, blocks=total // block, bfree=free // block,
                                     bavail=free // block, namemax=255)

    def exit(self) -> None:
        # The session's files are closed: report success, as OpenSSH's
        # sftp-server does; scp in SFTP mode fails without an exit status.
        # (Legacy scp has sent its own by now; this is then a no-op.)
        self.channel.exit(0)

    def readlink(self, path: bytes) -> bytes:
        raise asyncssh.SFTPOpUnsupported("symbolic links are not supported")

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPOpUnsupported("symbolic links are not supported")

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPOpUnsupported("hard links are not supported")

    # -- extensions (called by protocols.sftp.packets) ----------------------------

    async def hash(self, f_or_path: _File | bytes, algorithms: list[str], offset: int, length: int,
                   block_size: int) -> tuple[str, bytes]:
        """(algorithm used, digest) of a whole file for check-file. Raises
        OpUnsupported for ranges and per-block hashes."""
        p = f_or_path.path if isinstance(f_or_path, _File) else self._path(f_or_path)
        algorithm = next((a for a in algorithms if a in HASH_ALGORITHMS), None)
        if algorithm is None:
            raise asyncssh.SFTPOpUnsupported(f"no supported hash among {','.join(algorithms)}; "
                                             f"this server has {','.join(HASH_ALGORITHMS)}")
        if offset or length or block_size:
            size = (await self._run(self.ops.stat, self.session, p)).size
            if offset or 0 < length < size or 0 < block_size < size:
                raise asyncssh.SFTPOpUnsupported("only whole-file hashes are supported "
                                                 "(offset 0, length 0, block size 0)")
        digest = await self._run(self.ops.hash, self.session, p, algorithm)
        return algorithm, bytes.fromhex(digest)

    async def copy_data(self, src: _File, src_offset: int, length: int, dst: _File, dst_offset: int) -> None:
        """copy-data: a whole-file copy into a freshly truncated file is the
        core's server-side copy (a job when large; OK once accepted); any
        other range is copied through read and write."""
        whole = (src_offset == 0 and dst_offset == 0 and not src.writable and dst.upload is not None
                 and dst.upload.size == 0 and dst.entry is None
                 and (length == 0 or length >= (await self.fstat(src)).size))
        if whole:
            upload, dst.upload, dst.copied = dst.upload, None, True
            await self._run(upload.abort)
            self._fail_waiting(dst, asyncssh.SFTPFailure(f"{dst.path}: replaced by a server-side copy; not saved"))
            await self._run(self.ops.copy, self.session, src.path, dst.path, overwrite=True,
                            budget_s=self.ctx.budget_s)
            return
        to_end = length == 0
        while to_end or length > 0:
            size = _COPY_BLOCK if to_end else min(_COPY_BLOCK, length)
            data = await self.read(src, src_offset, size)
            if data:
                await self.write(dst, self.append_offset(dst, len(data)) if dst.append else dst_offset, data)
            if len(data) < size:
                return
            src_offset += size
            dst_offset += size
            length -= size

