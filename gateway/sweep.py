"""The sweep: temporaries nobody will finish are removed from every mount.

An upload writes to ``.gw-up-<key>-<name>`` beside its file and renames it
into place; a job writes into ``.gw-stage-<job>-<name>`` when its
destination existed, and a folder delete renames the folder to
``.gw-trash-<job>`` at the mount's root. A process killed mid-way (kill -9,
a power cut) leaves these behind, hidden from every listing, forever. At
start and every ``server.sweep_interval_s`` the sweep walks every mount
(local and remote) and removes each temporary that

- is not owned by a job that may still need it: one queued or running, or
  one whose rollback or cleanup is unfinished (its id is in the name);
- is not being written by this process (the backends keep a registry of
  their open temporaries);
- and was last changed more than ``server.temp_grace_s`` ago (a folder: its
  newest content), which covers uploads in progress in another process or
  node sharing the storage, as long as they keep writing.

Each removal is logged on ``gateway.sweep`` with its path and size.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from gateway.errors import GatewayError
from gateway.jobs.store import JobStore
from gateway.namespace import RESERVED_PREFIX, Namespace
from gateway.types import Entry

__all__ = ["Sweeper", "owner_of"]

log = logging.getLogger("gateway.sweep")

#: Length of a job id (gateway.jobs.model.new_job_id).
_JOB_ID_LEN = 16


def owner_of(name: str) -> str | None:
    """The job id a temporary's ``name`` carries (an upload's random key
    for ``.gw-up-``, which matches no job), or None for a name that is not a
    temporary."""
    for kind in ("up-", "stage-", "trash-"):
        prefix = RESERVED_PREFIX + kind
        if name.startswith(prefix):
            return name[len(prefix):len(prefix) + _JOB_ID_LEN]
    return None


class Sweeper:
    """Removes abandoned temporaries (see the module's docstring); ``start``
    runs :meth:`sweep` at once and then every ``interval_s`` in a thread."""

    def __init__(self, namespace: Namespace, store: JobStore, grace_s: float, interval_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.namespace = namespace
        self.store = store
        self.grace_s = grace_s
        self.interval_s = interval_s
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _owners(self) -> set[str]:
        """Ids of the jobs that may still use their temporaries."""
        jobs = self.store.overlays()
        for state in ("queued", "running"):
            jobs += self.store.list(state=state, limit=1 << 30)
        return {j.id for j in jobs}

    def sweep(self) -> list[tuple[str, int]]:
        """One pass over every mount; returns (virtual path, bytes) of each
        temporary removed. A mount that fails is logged and skipped. Never
        raises GatewayError."""
        removed: list[tuple[str, int]] = []
        for mount in self.namespace.mounts:
            if self._stop.is_set():
                break
            backend = mount.backend
            root = backend.join("").rstrip("/")
            try:
                found: list[Entry] = list(backend.temporaries(self._stop.is_set))
                # Owners are read after the walk: a job created during it is
                # already in the store when its temporaries can have been seen.
                owners = self._owners() if found else set()
                now = self._clock()
                for t in found:
                    if owner_of(t.name) in owners or (t.mtime is not None and now - t.mtime < self.grace_s):
                        continue
                    virtual = mount.path.rstrip("/") + t.path[len(root):]
                    try:
                        backend.rm_tree(t.path)
                    except GatewayError as exc:
                        log.warning("could not remove abandoned temporary %s: %s", virtual, exc)
                        continue
                    age = "" if t.mtime is None else f", unchanged for {now - t.mtime:.0f} s"
                    log.info("removed abandoned temporary %s (%d bytes%s)", virtual, t.size, age)
                    removed.append((virtual, t.size))
            except GatewayError as exc:
                log.warning("sweep of mount %s failed: %s", mount.path, exc)
        return removed

    def start(self) -> "Sweeper":
        """Sweep now and then every ``interval_s``, in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="sweep", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - the next pass tries again
                log.exception("sweep failed")
            if self._stop.wait(self.interval_s):
                return

    def close(self) -> None:
        """Stop the thread (a walk in progress ends at its next folder)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
