"""Byte budgets: a bound on memory a client may make the process hold.

A :class:`ByteBudget` counts bytes held against a limit; one may have a
parent (a session's budget inside the process's), and a take succeeds only
when every level has room. A refusal raises the budget's error and counts in
``gateway_refused_total``; what is held shows in
``gateway_resource_in_use``.
"""

from __future__ import annotations

import threading
from typing import Callable

from gateway import errors as E
from gateway import metrics

__all__ = ["ByteBudget"]


class ByteBudget:
    """Up to ``limit`` bytes held at once (and the ``parent``'s room).

    ``protocol`` and ``name`` label its refusals in metrics (e.g. ``sftp``,
    ``reorder_bytes_per_session``);
    ``refusal(n)`` makes the error raised when ``n`` more bytes do not fit;
    ``gauge`` names the resource whose use is published (the process level
    only: one gauge per session would be unbounded)."""

    def __init__(self, limit: int, protocol: str, name: str, refusal: Callable[[int], E.GatewayError],
                 parent: "ByteBudget | None" = None, gauge: str | None = None) -> None:
        self.limit = limit
        self.protocol = protocol
        self.name = name
        self._refusal = refusal
        self._parent = parent
        self._gauge = gauge
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    def take(self, n: int) -> None:
        """Hold ``n`` more bytes. Raises the refusal (nothing is taken) when
        this level or a parent has no room."""
        with self._lock:
            if self._used + n > self.limit:
                metrics.refused(self.protocol, self.name)
                raise self._refusal(n)
            if self._parent is not None:
                self._parent.take(n)
            self._used += n
            self._publish(n)

    def give(self, n: int) -> None:
        """Release ``n`` bytes taken before."""
        with self._lock:
            self._used -= n
            self._publish(-n)
        if self._parent is not None:
            self._parent.give(n)

    def _publish(self, delta: int) -> None:
        if self._gauge is not None and delta:
            metrics.in_use(self._gauge, delta)
