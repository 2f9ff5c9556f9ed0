"""File descriptors: the process's limit raised at start and a reserve kept.

At the descriptor limit every front end stops answering at once (an accept,
an upload, a SQLite connection all need one), and an accept loop that
retries at once spins, logging a traceback each time. So:

- :func:`raise_limit` lifts the soft ``RLIMIT_NOFILE`` to the hard limit
  when the gateway starts;
- every front end asks :meth:`DescriptorGuard.admit` for each connection it
  accepts and refuses it cleanly (FTP 421, SSH "too many connections", HTTP
  503) once fewer than ``server.descriptor_reserve`` descriptors would be
  left, so the sessions already open can still open files and data
  connections;
- an ``accept()`` that fails for lack of descriptors anyway (something else
  took them) goes to :meth:`DescriptorGuard.accept_failed`, which refuses the
  waiting connection with a spare descriptor kept for that, pauses the
  accept loop briefly and logs (rate-limited by gateway.logs), instead of
  spinning.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import socket
import threading
import time
from typing import Callable

from gateway import metrics

__all__ = ["DescriptorGuard", "raise_limit", "OUT_OF_DESCRIPTORS"]

log = logging.getLogger("gateway.descriptors")

#: accept() errors that mean "no descriptor or buffer left", not a bad client.
OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

#: The highest soft limit :func:`raise_limit` sets when the hard one is unlimited.
_CEILING = 1 << 20


def raise_limit() -> tuple[int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (at most 2**20);
    returns the (soft, hard) limits in force after. Never raises: where the
    system refuses, the limit stays as it was."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _CEILING if hard == resource.RLIM_INFINITY else min(hard, _CEILING)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit from %d to %d: %s", soft, target, exc)
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _count_open() -> int:
    """Descriptors open in this process now (0 where /proc is missing)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # less the one listing it
    except OSError:
        return 0


class DescriptorGuard:
    """Admission of new connections against the descriptor limit, keeping
    ``reserve`` descriptors free. Thread-safe; one per process is enough,
    and several (tests) agree since they count the same table.

    The count of open descriptors is read from /proc at most every
    ``refresh_s`` seconds; in between each admitted connection adds one,
    so a burst of accepts cannot overshoot the reserve."""

    def __init__(self, reserve: int, refresh_s: float = 0.05, *,
                 count: Callable[[], int] = _count_open, pause_s: float = 0.05) -> None:
        self.reserve = reserve
        self.refresh_s = refresh_s
        self.pause_s = pause_s
        self._count_open = count
        self._lock = threading.Lock()
        self._counted_at = -1e9
        self._in_use = 0
        #: connections refused since start (a metric)
        self.refused = 0
        self._spare: int | None = None
        self._take_spare()

    @staticmethod
    def limit() -> int:
        """The soft limit now."""
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        return _CEILING if soft == resource.RLIM_INFINITY else soft

    def admit(self, fd: int | None = None, protocol: str | None = None) -> bool:
        """Whether a connection just accepted (on descriptor ``fd``, when
        given) may be kept: False, logged and counted (in
        ``gateway_refused_total{protocol, limit="descriptors"}`` when
        ``protocol`` is given), when fewer than ``reserve`` descriptors would
        be left. The caller then refuses it in its protocol's words and
        closes it. Never raises."""
        limit = self.limit()
        allowed = limit - self.reserve
        with self._lock:
            now = time.monotonic()
            if now - self._counted_at >= self.refresh_s:
                self._in_use = self._count_open()
                self._counted_at = now
            else:
                self._in_use += 1
            # Descriptors are handed out lowest first: ``fd`` n means n are open.
            ok = self._in_use <= allowed and (fd is None or fd < allowed)
            if not ok:
                self.refused += 1
        if not ok:
            if protocol:
                metrics.refused(protocol, "descriptors")
            log.warning("refusing new connections: about %d of %d descriptors in use, %d kept in reserve",
                        min(max(self._in_use, (fd or 0) + 1), limit), limit, self.reserve)
        return ok

    def past_reserve(self, fd: int) -> bool:
        """Whether a connection just accepted on descriptor ``fd`` already
        reaches into the reserve (:meth:`admit` will refuse it). An accept
        loop that takes several connections per wake-up stops its round
        there, so a burst cannot hold more than one descriptor of the
        reserve before each is refused. Never raises."""
        return fd >= self.limit() - self.reserve

    def accept_failed(self, exc: OSError, listener: socket.socket, pause: bool = True) -> bool:
        """Handle ``exc`` raised by ``listener.accept()``: when it says the
        process (or system) is out of descriptors, refuse the waiting
        connection through the spare descriptor, pause the calling accept
        loop ``pause_s`` (unless ``pause`` is false: an event loop pauses
        its listener itself) and return True; else return False (not ours:
        the caller re-raises). Never raises."""
        if exc.errno not in OUT_OF_DESCRIPTORS:
            return False
        with self._lock:
            self.refused += 1
            self._counted_at = -1e9  # count again next time
            if self._spare is not None:
                os.close(self._spare)
                self._spare = None
            try:
                conn, _ = listener.accept()
                conn.close()  # the client sees its connection closed, not a hang
            except OSError:
                pass
            self._take_spare()
        log.warning("out of descriptors accepting on port %s (%s); refusing connections for now",
                    _port(listener), os.strerror(exc.errno or 0))
        if pause:
            time.sleep(self.pause_s)
        return True

    def _take_spare(self) -> None:
        try:
            self._spare = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self._spare = None

    def close(self) -> None:
        """Give the spare descriptor back. Idempotent."""
        with self._lock:
            if self._spare is not None:
                os.close(self._spare)
                self._spare = None


def _port(listener: socket.socket) -> object:
    try:
        return listener.getsockname()[1]
    except (OSError, IndexError, TypeError):
        return "?"
