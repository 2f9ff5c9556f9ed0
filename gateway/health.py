"""Liveness and readiness of one node, for load balancers and operators.

``/healthz`` answers 200 while the process serves HTTP at all; ``/readyz``
answers 200 only when every registered readiness check passes (the job store
answers, the job workers are alive, the node is not draining, and whatever
other part registered a check, e.g. a store listener), else 503 naming the
checks that fail. Protocol-free: the HTTP front end renders :meth:`Readiness.report`.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

__all__ = ["Readiness", "Check"]

log = logging.getLogger("gateway.health")

#: A readiness check: returns None when ready, else a short reason; an
#: exception counts as not ready, with the exception as the reason.
Check = Callable[[], "str | None"]


class Readiness:
    """Named readiness checks of one node. Thread-safe; parts register
    their own check with :meth:`add` (a later check of the same name
    replaces the earlier one)."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}
        self._lock = threading.Lock()

    def add(self, name: str, check: Check) -> None:
        with self._lock:
            self._checks[name] = check

    def remove(self, name: str) -> None:
        with self._lock:
            self._checks.pop(name, None)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._checks)

    def report(self) -> tuple[bool, dict[str, str]]:
        """(ready, {check name: "ok" or the reason it fails}). Never raises."""
        with self._lock:
            checks = list(self._checks.items())
        out: dict[str, str] = {}
        for name, check in checks:
            try:
                reason = check()
            except Exception as e:  # noqa: BLE001 - a failing check is an answer, not an error
                cause = str(getattr(e, "orig", None) or e).strip().splitlines()
                reason = (cause[0] if cause else "") or type(e).__name__
            out[name] = "ok" if reason is None else reason
        ready = all(v == "ok" for v in out.values())
        if not ready:
            log.debug("not ready: %s", out)
        return ready, out
