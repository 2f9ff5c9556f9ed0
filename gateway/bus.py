"""The invalidation bus: what one node changed, told to the others.

Every cache of the gateway (mount listing caches, the view's overlays, a
front end's last listing, logins) follows ONE rule: a change made through
the gateway is seen by every session of every node on its next request —
at once on the node that made it (it drops its own entries directly), on
the other nodes once the bus delivered the change. While the bus cannot
promise delivery (``trusted`` is False: the PostgreSQL listener lost its
connection and has not yet reconnected) nothing is served from a cache
(time to live 0); when it is back every cache is dropped once, since
changes may have been missed meanwhile.

A :class:`Change` is coalesced: which mounts' paths changed (``paths``:
{mount path: backend paths, or None for "anything under that mount"}),
whether jobs changed (the job store's generation), which queues got work
(``wake``), whether users changed. Embedded (SQLite) mode has one node, so
:class:`LocalBus` delivers nothing and is always trusted; the PostgreSQL
implementation (``gateway.jobs.pgbus``) uses LISTEN/NOTIFY.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Callable, Protocol

__all__ = ["Bus", "Change", "LocalBus", "Listeners", "Stamp", "encode", "decode", "MAX_PAYLOAD", "MAX_PATHS_PER_MOUNT"]

log = logging.getLogger("gateway.bus")

#: PostgreSQL refuses a NOTIFY payload of 8000 bytes or more; room is left
#: for the envelope.
MAX_PAYLOAD = 7900

#: More changed paths than this in one mount are sent as "anything under
#: the mount": dropping a mount's listings costs a few refetches, a long
#: list of paths costs every node time to apply.
MAX_PATHS_PER_MOUNT = 64


@dataclass
class Change:
    """What changed, coalesced; empty when nothing did."""

    paths: dict[str, set[str] | None] = field(default_factory=dict)
    jobs: bool = False
    wake: set[str] = field(default_factory=set)
    users: bool = False

    def __bool__(self) -> bool:
        return bool(self.paths or self.jobs or self.wake or self.users)

    def merge(self, other: "Change") -> None:
        for mount, paths in other.paths.items():
            self.add_path(mount, None) if paths is None else [self.add_path(mount, p) for p in paths]
        self.jobs |= other.jobs
        self.wake |= other.wake
        self.users |= other.users

    def add_path(self, mount: str, path: str | None) -> None:
        """``path`` (a backend path; None: anything) of ``mount`` changed."""
        known = self.paths.get(mount, set())
        if known is None:
            return
        if path is None or len(known) >= MAX_PATHS_PER_MOUNT:
            self.paths[mount] = None
            return
        known.add(path)
        self.paths[mount] = known


def encode(origin: str, change: Change) -> list[str]:
    """``change`` as NOTIFY payloads of at most :data:`MAX_PAYLOAD` bytes
    each: mounts whose paths do not fit are sent as "anything under the
    mount"; a payload that still does not fit is split by mount."""
    def one(paths: dict[str, list[str] | None], first: bool) -> str:
        body: dict = {"o": origin, "p": paths}
        if first:
            body.update(j=int(change.jobs), w=sorted(change.wake), u=int(change.users))
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False)

    paths = {m: (sorted(p) if p is not None else None) for m, p in change.paths.items()}
    text = one(paths, True)
    while len(text.encode()) > MAX_PAYLOAD:
        longest = max((m for m, p in paths.items() if p), key=lambda m: len(json.dumps(paths[m])), default=None)
        if longest is None:
            break
        paths[longest] = None
        text = one(paths, True)
    if len(text.encode()) <= MAX_PAYLOAD:
        return [text]
    # Many mounts (or very long mount paths): one payload per mount.
    out = [one({}, True)]
    out += [one({m: None}, False) for m in paths]
    return out


def decode(payload: str) -> tuple[str, Change]:
    """(origin, change) of a payload made by :func:`encode`. Raises
    ValueError for anything else."""
    body = json.loads(payload)
    if not isinstance(body, dict) or "o" not in body:
        raise ValueError("not a bus message")
    change = Change(jobs=bool(body.get("j")), wake=set(body.get("w") or ()), users=bool(body.get("u")))
    for mount, paths in (body.get("p") or {}).items():
        change.paths[mount] = None if paths is None else set(paths)
    return str(body["o"]), change


class Listeners:
    """Who applies what the bus delivers: ``on_change(change)`` for another
    node's change, ``on_reset()`` when the bus is trusted again after a gap
    (drop everything). Callbacks run on the bus's thread and must not block."""

    def __init__(self) -> None:
        self.on_change: list[Callable[[Change], None]] = []
        self.on_reset: list[Callable[[], None]] = []

    def change(self, change: Change) -> None:
        for fn in self.on_change:
            try:
                fn(change)
            except Exception:  # noqa: BLE001 - one cache's failure must not keep the others stale
                log.exception("applying a change from another node failed")

    def reset(self) -> None:
        for fn in self.on_reset:
            try:
                fn()
            except Exception:  # noqa: BLE001
                log.exception("dropping caches after the bus came back failed")


class Bus(Protocol):
    """Tells other nodes what this one changed and applies theirs."""

    listeners: Listeners

    @property
    def trusted(self) -> bool:
        """Whether every other node's change since the last reset has been
        (or will be, before anything else this node reads) delivered:
        caches may be used only while True."""

    def publish(self, change: Change) -> None:
        """Tell the other nodes; never blocks on the network, never raises."""

    def stamp(self) -> int:
        """A number that changes whenever another node's change arrived, and
        on every call while the bus is not trusted: what a cache keyed on it
        holds is never older than the last delivery."""

    def start(self) -> None: ...

    def close(self) -> None: ...


class LocalBus:
    """One node (the embedded SQLite store): nobody to tell, nothing missed."""

    trusted = True

    def __init__(self) -> None:
        self.listeners = Listeners()

    def publish(self, change: Change) -> None:
        pass

    def stamp(self) -> int:
        return 0

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


class Stamp:
    """The counter behind :meth:`Bus.stamp` for buses that receive."""

    def __init__(self) -> None:
        self._count = itertools.count(1)
        self.value = 0
        self._lock = threading.Lock()

    def bump(self) -> int:
        with self._lock:
            self.value = next(self._count)
            return self.value
