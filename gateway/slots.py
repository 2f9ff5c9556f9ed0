"""Connection slots of a front end, before and after login (FTP, SFTP).

A connection that has not logged in holds an *unauthenticated* slot (few per
address, a bounded number in all); a login trades it for a *session* slot
(``max_connections``, ``max_connections_per_ip``). So idle sockets from one
address can neither hold the sessions' limit nor keep other addresses from
logging in. A refusal is ``(limit name, text)``: the name is the ``limit``
label of ``gateway_refused_total``.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

__all__ = ["Slot", "Slots"]


@dataclass
class Slot:
    ip: str
    logged_in: bool = False
    released: bool = False


class Slots:
    """Counts of connections by address and in all, before and after login.
    Thread-safe; a refusal is ``(limit name, reply text)``."""

    def __init__(self, max_sessions: int, max_sessions_per_ip: int, max_pending: int, max_pending_per_ip: int) -> None:
        self._limits = (max_sessions, max_sessions_per_ip, max_pending, max_pending_per_ip)
        self._lock = threading.Lock()
        self._pending: Counter[str] = Counter()
        self._sessions: Counter[str] = Counter()

    def admit(self, ip: str) -> Slot | tuple[str, str]:
        """An unauthenticated slot for a new connection from ``ip``, or the refusal."""
        _, _, max_pending, max_per_ip = self._limits
        with self._lock:
            if self._pending[ip] >= max_per_ip:
                return "unauthenticated_per_ip", "Too many connections from your address waiting to log in."
            if self._pending.total() >= max_pending:
                return "unauthenticated", "Too many connections waiting to log in; try again later."
            self._pending[ip] += 1
        return Slot(ip)

    def promote(self, slot: Slot | None) -> tuple[str, str] | None:
        """Trade ``slot`` for a session slot at login; None when done (or
        already logged in), else the refusal (``slot`` is kept as it was)."""
        if slot is None or slot.logged_in or slot.released:
            return None
        max_sessions, max_per_ip, _, _ = self._limits
        with self._lock:
            if self._sessions[slot.ip] >= max_per_ip:
                return "connections_per_ip", "Too many connections from the same IP address."
            if self._sessions.total() >= max_sessions:
                return "connections", "Too many connections. Service temporarily unavailable."
            self._pending[slot.ip] -= 1
            self._sessions[slot.ip] += 1
            slot.logged_in = True
        return None

    def release(self, slot: Slot | None) -> None:
        """Give ``slot`` back; idempotent."""
        if slot is None:
            return
        with self._lock:
            if slot.released:
                return
            slot.released = True
            counts = self._sessions if slot.logged_in else self._pending
            counts[slot.ip] -= 1
            if counts[slot.ip] <= 0:
                del counts[slot.ip]

    def counts(self) -> tuple[int, int]:
        """(connections not logged in, sessions), for tests and metrics."""
        with self._lock:
            return self._pending.total(), self._sessions.total()
