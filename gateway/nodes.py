"""The nodes sharing one job store: each running gateway keeps a row in
``nodes`` with a heartbeat, and reads its ``draining`` flag there.

``gateway nodes`` lists them with their running jobs; ``gateway drain NODE``
sets the flag, and within a heartbeat that node claims no more jobs and hands
the ones it runs back to the queue, where any node resumes them from their
journal (gateway.jobs.dispatcher). A node that starts clears its own flag;
one that stops cleanly removes its row. Protocol-free.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from gateway import __version__
from gateway.errors import NotFound
from gateway.jobs.schema import jobs, nodes
from gateway.jobs.store import JobStore, write_transaction

__all__ = ["NodeRegistry", "NodeInfo", "NodeIdInUse", "list_nodes", "set_draining", "running_jobs"]

log = logging.getLogger("gateway.nodes")


class NodeIdInUse(RuntimeError):
    """Another running node has this node's id."""


@dataclass
class NodeInfo:
    node: str
    host: str
    pid: int
    version: str
    started_at: float
    heartbeat_at: float
    draining: bool
    #: ids of the jobs this node runs now
    jobs: list[str] = field(default_factory=list)

    def state(self, now: float, gone_after_s: float) -> str:
        """``live``, ``draining`` or ``gone`` (no heartbeat for ``gone_after_s``)."""
        if now - self.heartbeat_at > gone_after_s:
            return "gone"
        return "draining" if self.draining else "live"


class NodeRegistry:
    """This node's row: written at :meth:`start`, beaten every
    ``interval_s`` by a thread that also applies the row's ``draining``
    flag to ``dispatcher``, removed at :meth:`close`."""

    def __init__(self, store: JobStore, node: str, dispatcher: Any, interval_s: float = 1.0) -> None:
        self.store = store
        self.node = node
        self.dispatcher = dispatcher
        self.interval_s = interval_s
        #: Wall-clock time of the last heartbeat written (0: none yet).
        self.last_beat = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check_unique(self) -> None:
        """Raise NodeIdInUse when another live process beats this node's row
        (two nodes given one ``node_id``: each would take the other's jobs
        for its own). A row beaten lately by another process may be a
        previous run killed a moment ago: it is watched for a few heartbeats
        first, and taken over when it stays still."""
        me = (socket.gethostname(), os.getpid())
        first = self._row()
        if first is None or (first.host, first.pid) == me or time.time() - first.heartbeat_at > self._late_s():
            return
        time.sleep(self._late_s())
        again = self._row()
        if again is not None and again.heartbeat_at > first.heartbeat_at:
            raise NodeIdInUse(f"node id {self.node!r} is in use by a running node ({again.host}, pid {again.pid}); "
                              "give every node its own [server] node_id")

    def _row(self) -> Any:
        with self.store.engine.connect() as c:
            return c.execute(sa.select(nodes).where(nodes.c.node == self.node)).first()

    def _late_s(self) -> float:
        """How long without a heartbeat a node is taken for stopped."""
        return max(3 * self.interval_s, 5.0)

    def start(self) -> None:
        now = time.time()
        row = dict(host=socket.gethostname(), pid=os.getpid(), version=__version__, started_at=now,
                   heartbeat_at=now, draining=False)
        with write_transaction(self.store.engine) as c:
            if not c.execute(nodes.update().where(nodes.c.node == self.node).values(**row)).rowcount:
                c.execute(nodes.insert().values(node=self.node, **row))
        self.last_beat = now
        self._thread = threading.Thread(target=self._run, name="node-heartbeat", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            with write_transaction(self.store.engine) as c:
                c.execute(nodes.delete().where(nodes.c.node == self.node))
        except Exception:  # noqa: BLE001 - the row goes stale and shows as gone
            log.exception("removing node %s from the store failed", self.node)

    def health(self) -> str | None:
        """None while heartbeats are written, else since when they are not."""
        late = time.time() - self.last_beat
        if late > self._late_s():
            return f"no node heartbeat written for {late:.0f} s"
        return None

    def beat(self) -> None:
        """Write the heartbeat and apply the ``draining`` flag."""
        now = time.time()
        with write_transaction(self.store.engine) as c:
            row = c.execute(sa.select(nodes.c.draining).where(nodes.c.node == self.node)).first()
            if row is None:  # removed by hand: back in the list
                c.execute(nodes.insert().values(node=self.node, host=socket.gethostname(), pid=os.getpid(),
                                                version=__version__, started_at=now, heartbeat_at=now,
                                                draining=False))
            else:
                c.execute(nodes.update().where(nodes.c.node == self.node).values(heartbeat_at=now))
        self.last_beat = now
        self.dispatcher.drain(bool(row is not None and row.draining))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - the store may be away for a while
                log.exception("node %s: heartbeat failed", self.node)


def running_jobs(engine: sa.Engine) -> dict[str, list[str]]:
    """{node: ids of the jobs it runs now}."""
    out: dict[str, list[str]] = {}
    with engine.connect() as c:
        for row in c.execute(sa.select(jobs.c.node, jobs.c.id).where(jobs.c.state == "running")
                             .order_by(jobs.c.started_at, jobs.c.id)):
            out.setdefault(row.node or "-", []).append(row.id)
    return out


def list_nodes(engine: sa.Engine) -> list[NodeInfo]:
    """Every node with a row, with the jobs it runs; nodes that run jobs
    without a row (stopped without removing it, or older versions) too."""
    with engine.connect() as c:
        rows = c.execute(sa.select(nodes).order_by(nodes.c.node)).all()
    running = running_jobs(engine)
    out = [NodeInfo(r.node, r.host, r.pid, r.version, r.started_at, r.heartbeat_at, bool(r.draining),
                    running.pop(r.node, [])) for r in rows]
    for node, ids in sorted(running.items()):
        out.append(NodeInfo(node, "?", 0, "?", 0.0, 0.0, False, ids))
    return out


def set_draining(engine: sa.Engine, node: str, on: bool = True) -> None:
    """Ask ``node`` to drain (or to claim jobs again). Raises NotFound for a
    node without a row (not running, or unknown)."""
    with write_transaction(engine) as c:
        res = c.execute(nodes.update().where(nodes.c.node == node).values(draining=on))
    if res.rowcount != 1:
        raise NotFound(f"no node {node!r} in the job store (see `gateway nodes`)")
