"""Failed-login counts and bans per source address (gateway.auth decides
when to count; this module keeps the counts).

``max_failures`` failures from one address within ``window_s`` (a sliding
window) ban it for ``ban_s``. :class:`MemoryBans` keeps them in this process
(a fake clock in tests); :class:`StoredBans` in the job store's tables
``login_failures`` and ``login_bans``, with wall-clock times, so a ban earned
on one node holds on every node sharing the store, and across restarts.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import TYPE_CHECKING, Callable, Protocol

import sqlalchemy as sa

from gateway.jobs.schema import login_bans, login_failures
from gateway.jobs.store import write_transaction

if TYPE_CHECKING:
    from gateway.config import Auth

__all__ = ["Bans", "MemoryBans", "StoredBans"]

log = logging.getLogger("gateway.auth")


class Bans(Protocol):
    def banned_for(self, addr: str) -> float:
        """Seconds ``addr`` stays banned (0: not banned)."""
        ...

    def fail(self, addr: str) -> tuple[int, bool]:
        """Count one failure of ``addr``: (failures in the window, now banned)."""
        ...


class MemoryBans:
    """Counts and bans in this process. Thread-safe. ``clock`` is a
    monotonic clock in seconds."""

    def __init__(self, cfg: "Auth", clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, collections.deque[float]] = {}
        self._banned_until: dict[str, float] = {}

    def banned_for(self, addr: str) -> float:
        with self._lock:
            until = self._banned_until.get(addr)
            if until is None:
                return 0.0
            left = until - self.clock()
            if left <= 0:
                del self._banned_until[addr]
                return 0.0
            return left

    def fail(self, addr: str) -> tuple[int, bool]:
        now = self.clock()
        with self._lock:
            window = self._failures.setdefault(addr, collections.deque())
            window.append(now)
            while window and window[0] <= now - self.cfg.window_s:
                window.popleft()
            count = len(window)
            banned = count >= self.cfg.max_failures
            if banned:
                self._banned_until[addr] = now + self.cfg.ban_s
                del self._failures[addr]
        return count, banned


class StoredBans:
    """Counts and bans in the job store, shared by every node using it.
    ``clock`` is the wall clock (every node must agree on it).

    Every HTTP request with Basic credentials asks whether its address is
    banned, so an address found not banned is not asked about again for
    ``recheck_s``: a ban earned on another node holds here within that
    time, one earned here at once. While the store cannot be reached, this
    node counts and bans in its own memory (a warning says so), so logins
    neither fail for that reason nor go uncounted."""

    def __init__(self, engine: sa.Engine, cfg: "Auth", clock: Callable[[], float] = time.time,
                 recheck_s: float = 1.0, max_cached: int = 4096) -> None:
        self.engine = engine
        self.cfg = cfg
        self.clock = clock
        self.recheck_s = recheck_s
        self.max_cached = max_cached
        self._clear_until: dict[str, float] = {}  # address -> until when it is known not banned
        self._lock = threading.Lock()
        self._local = MemoryBans(cfg, clock)

    def banned_for(self, addr: str) -> float:
        now = self.clock()
        local = self._local.banned_for(addr)
        if local:
            return local
        with self._lock:
            if self._clear_until.get(addr, 0.0) > now:
                return 0.0
        try:
            with self.engine.connect() as c:
                until = c.execute(sa.select(login_bans.c.until).where(login_bans.c.address == addr)).scalar()
        except sa.exc.SQLAlchemyError as e:
            log.warning("login bans: the job store cannot be reached (%s); using this node's own counts",
                        type(e).__name__)
            return 0.0
        left = max(0.0, until - now) if until is not None else 0.0
        if not left:
            with self._lock:
                if len(self._clear_until) >= self.max_cached:
                    self._clear_until.clear()
                self._clear_until[addr] = now + self.recheck_s
        return left

    def fail(self, addr: str) -> tuple[int, bool]:
        try:
            return self._fail(addr)
        except sa.exc.SQLAlchemyError as e:
            log.warning("login bans: the job store cannot be reached (%s); counting on this node only",
                        type(e).__name__)
            return self._local.fail(addr)

    def _fail(self, addr: str) -> tuple[int, bool]:
        now = self.clock()
        with write_transaction(self.engine) as c:
            # Every address's failures older than the window go (a few rows: each failure cost an argon2 check).
            c.execute(login_failures.delete().where(login_failures.c.at <= now - self.cfg.window_s))
            c.execute(login_failures.insert().values(address=addr, at=now))
            count = c.execute(sa.select(sa.func.count()).where(login_failures.c.address == addr)).scalar() or 0
            banned = count >= self.cfg.max_failures
            if banned:
                c.execute(login_failures.delete().where(login_failures.c.address == addr))
                c.execute(login_bans.delete().where(sa.or_(login_bans.c.address == addr, login_bans.c.until < now)))
                c.execute(login_bans.insert().values(address=addr, until=now + self.cfg.ban_s))
        if banned:
            with self._lock:
                self._clear_until.pop(addr, None)
        return int(count), banned
