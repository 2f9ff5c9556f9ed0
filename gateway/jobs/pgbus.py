"""The invalidation bus on PostgreSQL: LISTEN/NOTIFY on the job store's
database (see gateway.bus for what travels and the rule every cache follows).

Two connections of their own, outside the store's pool: a listener thread
that waits for notifications (and is what ``trusted`` reports on), and a
sender thread that sends what :meth:`PgBus.publish` coalesced, so a front
end never waits for PostgreSQL to tell the others, and changes made while
PostgreSQL is away are sent once it is back. Both reconnect with backoff.
Imported only for a PostgreSQL store: SQLite mode never loads psycopg.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time

import psycopg
from sqlalchemy.engine import make_url

from gateway.bus import Change, Listeners, Stamp, decode, encode

__all__ = ["PgBus", "CHANNEL"]

log = logging.getLogger("gateway.bus")

#: The NOTIFY channel every node listens on.
CHANNEL = "gateway_bus"

#: First and longest pause between two connection attempts.
BACKOFF_S = (0.1, 5.0)

#: How long the listener waits for a notification before checking that its
#: connection is still alive (a silent network loss shows up within this).
LIVENESS_S = 1.0


def conninfo(url: str) -> str:
    """libpq's URI for a SQLAlchemy PostgreSQL URL (``postgresql+psycopg://``)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class PgBus:
    """LISTEN/NOTIFY between the nodes of one PostgreSQL store. Thread-safe."""

    def __init__(self, url: str, *, connect_timeout_s: float = 5.0) -> None:
        self._conninfo = conninfo(url)
        self._timeout = connect_timeout_s
        self.origin = secrets.token_hex(8)  # this process, whatever its node id
        self.listeners = Listeners()
        self._trusted = False
        self._stamp = Stamp()
        self._pending = Change()
        self._cond = threading.Condition()
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        #: Notifications received (for tests and the benchmark).
        self.received = 0

    # -- the Bus interface -----------------------------------------------------

    @property
    def trusted(self) -> bool:
        return self._trusted

    def stamp(self) -> int:
        return self._stamp.value if self._trusted else self._stamp.bump()

    def publish(self, change: Change) -> None:
        if not change:
            return
        with self._cond:
            self._pending.merge(change)
            self._cond.notify()

    def start(self) -> None:
        for target, name in ((self._listen, "bus-listen"), (self._send, "bus-send")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def close(self, timeout: float = 5.0) -> None:
        """Send what is pending (within ``timeout``), then stop both threads."""
        self._closing.set()
        with self._cond:
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    # -- threads ------------------------------------------------------------------

    def _connect(self, role: str) -> psycopg.Connection:
        return psycopg.connect(self._conninfo, autocommit=True, connect_timeout=max(1, int(self._timeout)),
                               application_name=f"gateway-bus-{role}")

    def _listen(self) -> None:
        delay = BACKOFF_S[0]
        while not self._closing.is_set():
            try:
                with self._connect("listen") as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    # Listening before trusting: nothing sent from now on is
                    # missed, and what was sent during the gap is covered by
                    # dropping every cache once.
                    self._trusted = True
                    self._stamp.bump()
                    self.listeners.reset()
                    log.info("bus: listening for other nodes' changes")
                    delay = BACKOFF_S[0]
                    while not self._closing.is_set():
                        for note in conn.notifies(timeout=LIVENESS_S):
                            self._deliver(note.payload)
                            if self._closing.is_set():
                                break
                        else:
                            conn.execute("SELECT 1")
            except Exception as exc:  # noqa: BLE001 - the database went away: distrust, retry
                if self._closing.is_set():
                    break
                if self._trusted:
                    log.warning("bus: lost the connection to PostgreSQL (%s); caches are off until it is back",
                                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            finally:
                self._trusted = False
                self._stamp.bump()
            if self._closing.wait(delay):
                break
            delay = min(BACKOFF_S[1], delay * 2)

    def _deliver(self, payload: str) -> None:
        try:
            origin, change = decode(payload)
        except (ValueError, TypeError, AttributeError):
            log.warning("bus: ignored a malformed notification")
            return
        self.received += 1
        if origin == self.origin:
            return
        self._stamp.bump()
        self.listeners.change(change)

    def _send(self) -> None:
        conn: psycopg.Connection | None = None
        delay = BACKOFF_S[0]
        while True:
            with self._cond:
                while not self._pending and not self._closing.is_set():
                    self._cond.wait()
                if not self._pending:  # closing: wake our own listener so it sees it at once
                    try:
                        if conn is None or conn.closed:
                            conn = self._connect("send")
                        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, encode(self.origin, Change())[0]))
                    except Exception:  # noqa: BLE001 - it stops within LIVENESS_S anyway
                        pass
                    break
                change, self._pending = self._pending, Change()
            try:
                if conn is None or conn.closed:
                    conn = self._connect("send")
                with conn.transaction():  # one commit: the others get them together
                    for payload in encode(self.origin, change):
                        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
                delay = BACKOFF_S[0]
            except Exception as exc:  # noqa: BLE001 - keep the change, try again after a pause
                log.warning("bus: could not notify the other nodes (%s); retrying", type(exc).__name__)
                with self._cond:
                    change.merge(self._pending)
                    self._pending = change
                if conn is not None:
                    conn.close()
                    conn = None
                if self._closing.wait(delay):
                    break
                delay = min(BACKOFF_S[1], delay * 2)
        if conn is not None:
            conn.close()
