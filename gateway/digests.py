"""The digests of an upload's content, computed beside its writes.

An upload's checksums (``[policy] upload_checksums``, sha1 and md5 by
default, plus a client's expected one) cost ~3 ms of CPU per MiB; computed in
the request's thread they are serialised with the storage writes and double
the time of a large upload. hashlib releases the GIL while it digests a
buffer of 2 KiB or more, so :class:`StreamHashes` hands the bytes, batched,
to a small process-wide pool where each digest runs in order on its own
worker, overlapping with the request thread's writes and with each other.

Memory is bounded per upload: at most :data:`QUEUED_BYTES` wait to be hashed
(the writer blocks for room) plus the batch being gathered. The first
:data:`INLINE_BYTES` of an upload are hashed inline: for a small file the
hand-off would cost more CPU than it saves.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable

__all__ = ["StreamHashes", "INLINE_BYTES", "QUEUED_BYTES", "BATCH_BYTES", "THREAD_PREFIX"]

#: An upload's first bytes up to this many are hashed in the writing thread.
INLINE_BYTES = 256 << 10
#: Bytes gathered before they are handed to the workers (one hand-off per batch).
BATCH_BYTES = 1 << 20
#: Bytes of one upload handed off and not yet hashed by every digest; past it
#: the writer waits. With BATCH_BYTES, the stream's buffers take 3 MiB (with
#: 2 and 4 MiB, 6 MiB: the difference showed in a 1 GiB upload's peak RSS,
#: not in its time or CPU).
QUEUED_BYTES = 2 << 20
#: The name prefix of the pool's threads.
THREAD_PREFIX = "gateway-hash"
_WORKERS = max(2, min(4, os.cpu_count() or 2))
#: Batch buffers one stream may have: the queued ones and the one being gathered.
_BUFFERS = QUEUED_BYTES // BATCH_BYTES + 1

_NO_COND = threading.Condition()
_pool: ThreadPoolExecutor | None = None
_pool_pid = 0
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """The shared pool (made again in a forked child, where the parent's
    threads do not exist)."""
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix=THREAD_PREFIX)
            _pool_pid = os.getpid()
        return _pool


def _immutable(data: bytes | memoryview) -> bool:
    """Whether ``data`` cannot change after the call (bytes, or a view of bytes)."""
    return type(data) is bytes or (isinstance(data, memoryview) and data.readonly and type(data.obj) is bytes)


class _Lane:
    """One digest: its batches waiting and whether a worker runs it."""

    __slots__ = ("hasher", "queue", "queued", "running")

    def __init__(self, hasher: Any) -> None:
        self.hasher = hasher
        self.queue: deque[tuple[bytes | memoryview, int, bytearray | None]] = deque()
        self.queued = 0
        self.running = False


#: An empty hasher per algorithm, copied for each stream: a copy costs a
#: third of ``hashlib.new``, which looks the algorithm up in OpenSSL each time.
_EMPTY: dict[str, Any] = {}


def _fresh(algorithm: str) -> Any:
    """A new hashlib object of ``algorithm`` (as ``hashlib.new``)."""
    empty = _EMPTY.get(algorithm)
    if empty is None:
        empty = _EMPTY.setdefault(algorithm, hashlib.new(algorithm))
    return empty.copy()


class StreamHashes:
    """Digests of one stream of bytes fed in order by one writer at a time
    (the upload's lock). :meth:`update` before each write, :meth:`hexdigests`
    at commit (waits for the workers), :meth:`stop` at abort."""

    def __init__(self, algorithms: Iterable[str]) -> None:
        self._hashers = {a: _fresh(a) for a in algorithms}
        #: Bytes hashed inline so far; None once the stream is handed off.
        self._inline: int | None = 0
        #: The batch being gathered, its bytes; the stream's buffers not in use
        #: and how many it made (at most _BUFFERS); per buffer handed off, the
        #: digests still to hash it.
        self._buf: bytearray | None = None
        self._fill = 0
        self._free: list[bytearray] = []
        self._made = 0
        self._users: dict[int, int] = {}
        self._lanes: list[_Lane] | None = None
        self._cond: threading.Condition = _NO_COND  # made at the hand-off: a small upload never needs it
        self._stopped = False
        self._error: BaseException | None = None

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The digests computed, in the order given."""
        return tuple(self._hashers)

    def update(self, data: bytes | memoryview) -> None:
        """Add ``data`` (a view of a buffer the caller reuses is copied; it
        may be reused once this returns). Blocks while the upload's queued
        bytes are at :data:`QUEUED_BYTES`."""
        if not self._hashers or self._stopped:
            return
        if self._inline is not None:
            if self._inline + len(data) <= INLINE_BYTES:
                for hasher in self._hashers.values():
                    hasher.update(data)
                self._inline += len(data)
                return
            self._inline = None  # from here on every byte goes through the batches, in order
            self._cond = threading.Condition(threading.Lock())
            self._lanes = [_Lane(h) for h in self._hashers.values()]
        if len(data) >= BATCH_BYTES and _immutable(data):  # queued as it is
            self._flush()
            self._queue(data, None)
            return
        # Copied into one of the stream's few batch buffers (reused: a fresh
        # buffer every batch would cost its page faults): the caller may reuse
        # its own, and a batch is one hand-off and one update per digest.
        view = data if isinstance(data, memoryview) else memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        pos = 0
        while pos < len(view):
            if self._buf is None:
                self._buf = self._take_buffer()
                if self._buf is None:  # stopped
                    return
            n = min(len(view) - pos, BATCH_BYTES - self._fill)
            self._buf[self._fill:self._fill + n] = view[pos:pos + n]
            self._fill += n
            pos += n
            if self._fill == BATCH_BYTES:
                self._flush()

    def lend(self) -> bytearray | None:
        """One of the stream's batch buffers (:data:`BATCH_BYTES`) for the
        caller to fill and give back with :meth:`update_lent`: the bytes are
        then hashed from it, not copied. None while the stream hashes inline
        (or computes nothing, or is stopped): use :meth:`update`. Blocks
        while all the stream's buffers are queued."""
        if self._inline is not None or not self._hashers or self._stopped:
            return None
        self._flush()
        return self._take_buffer()

    def update_lent(self, buf: bytearray, n: int) -> None:
        """Add the first ``n`` bytes of ``buf``, a buffer :meth:`lend`
        answered; the caller must not change it afterwards."""
        if n:
            self._queue(memoryview(buf)[:n], buf)
        else:
            with self._cond:
                self._free.append(buf)
                self._cond.notify_all()

    def hexdigests(self) -> dict[str, str]:
        """Algorithm → hex digest of everything given to :meth:`update`, once
        the workers are done with it. Raises what a digest raised (never for
        bytes)."""
        self._flush()
        if self._lanes is not None:
            with self._cond:
                self._cond.wait_for(lambda: not any(lane.running for lane in self._lanes or ()))
            if self._error is not None:
                raise self._error
        return {a: h.hexdigest() for a, h in self._hashers.items()}

    def stop(self) -> None:
        """Drop what waits to be hashed and wait for the batches being hashed
        (at most one per digest); nothing of this stream runs afterwards.
        Never raises."""
        self._buf, self._fill = None, 0
        if self._lanes is None:
            self._stopped = True
            return
        with self._cond:
            self._stopped = True
            for lane in self._lanes or ():
                lane.queue.clear()
            self._cond.notify_all()
            self._cond.wait_for(lambda: not any(lane.running for lane in self._lanes or ()))

    def _take_buffer(self) -> bytearray | None:
        """A free batch buffer, waiting for one while all are queued; None
        once stopped."""
        with self._cond:
            self._cond.wait_for(lambda: self._stopped or self._free or self._made < _BUFFERS)
            if self._stopped:
                return None
            if self._free:
                return self._free.pop()
            self._made += 1
        return bytearray(BATCH_BYTES)

    def _flush(self) -> None:
        if self._buf is not None and self._fill:
            buf, fill = self._buf, self._fill
            self._buf, self._fill = None, 0
            self._queue(memoryview(buf)[:fill], buf)

    def _queue(self, batch: bytes | memoryview, buf: bytearray | None) -> None:
        """Hand ``batch`` to every digest; ``buf``: the stream's buffer it
        views, free again once all have hashed it."""
        size = len(batch)
        lanes = self._lanes or []
        start = []
        with self._cond:
            self._cond.wait_for(lambda: self._stopped or all(
                not lane.queued or lane.queued + size <= QUEUED_BYTES for lane in lanes))
            if self._stopped:
                return
            if buf is not None:
                self._users[id(buf)] = len(lanes)
            for lane in lanes:
                lane.queue.append((batch, size, buf))
                lane.queued += size
                if not lane.running:
                    lane.running = True
                    start.append(lane)
        for lane in start:
            try:
                _executor().submit(self._run, lane)
            except RuntimeError:  # the interpreter is shutting down: hash here
                self._run(lane)

    def _run(self, lane: _Lane) -> None:
        """A worker's turn on ``lane``: hash its next batch, then put the lane
        back at the end of the pool's queue while more batches wait. One
        batch per turn: the pool has a few workers for every upload, and a
        long upload whose writer keeps its lanes fed would otherwise hold
        them and stall every other upload at its queued-bytes bound."""
        with self._cond:
            if self._stopped or self._error is not None or not lane.queue:
                lane.running = False
                self._cond.notify_all()
                return
            batch, size, buf = lane.queue.popleft()
        try:
            lane.hasher.update(batch)
        except BaseException as exc:  # never for bytes; the waiters must not hang
            self._error = exc
        with self._cond:
            lane.queued -= size
            if buf is not None:
                self._users[id(buf)] -= 1
                if not self._users[id(buf)]:
                    del self._users[id(buf)]
                    self._free.append(buf)
            self._cond.notify_all()
        try:
            _executor().submit(self._run, lane)
        except RuntimeError:  # the interpreter is shutting down: the rest here (a few batches)
            self._run(lane)
