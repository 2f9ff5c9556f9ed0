"""The consistency view: what each session sees while jobs run.

Active jobs are the overlays (rows in the job store, so every node sees the
same). Before a job commits, other sessions see the committed tree and the
initiating session sees the projected outcome; after commit everyone sees the
outcome while cleanup finishes. Prefix rules, so a million-object job is one
overlay, not a million.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator

from gateway.jobs.model import Job
from gateway.jobs.store import JobStore
from gateway.namespace import is_under, join, name_of, overlaps, parent_of, rel_of

__all__ = ["View", "HIDDEN"]

#: ``sources()`` answer for a path that does not exist for the asking session.
HIDDEN = None


class View:
    """Reads overlays from the store; caches them until the store's
    generation changes. Another node's job change grows the generation when
    the bus delivers it; while the bus is not trusted (``trusted()`` False)
    nothing is cached (gateway.bus)."""

    def __init__(self, store: JobStore, trusted: Callable[[], bool] = lambda: True) -> None:
        self.store = store
        self.trusted = trusted
        self._cache: tuple[int, list[Job]] | None = None
        self._lock = threading.Lock()

    def overlays(self) -> list[Job]:
        gen = self.store.generation
        trusted = self.trusted()
        with self._lock:
            c = self._cache
            if c and c[0] == gen and trusted:
                return c[1]
        jobs = self.store.overlays()
        if trusted:
            with self._lock:
                self._cache = (gen, jobs)
        return jobs

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Around a read that spans time (see JobStore.wait_for_reads):
        entered before the read asks :meth:`sources`."""
        token = self.store.begin_read()
        try:
            yield
        finally:
            self.store.end_read(token)

    @staticmethod
    def _roles(job: Job, session_id: str) -> tuple[bool, bool]:
        """(is this the initiating session, is the job committed). A job
        rolling back has no outcome to project: everyone sees the old tree."""
        if job.phase == "rollback":
            return False, False
        return job.session_id == session_id, job.committed

    def sources(self, session_id: str, path: str) -> list[str] | None:
        """Physical global paths that hold what ``session_id`` sees at
        ``path``, in order of preference; HIDDEN when the path does not exist
        for this session."""
        for j in self.overlays():
            mine, committed = self._roles(j, session_id)
            trash = j.stage if j.via_trash else None
            if trash and is_under(path, j.src):
                if committed:  # the path is free again: whatever is there now is new
                    continue
                if not mine:  # the folder may already be in the trash: read it there
                    return [join(trash, rel_of(path, j.src)), path]
            if j.operation in ("move", "delete") and is_under(path, j.src) and (committed or mine):
                return HIDDEN
            if j.operation in ("move", "copy") and j.dst and is_under(path, j.dst):
                rel = rel_of(path, j.dst)
                if not committed:
                    if mine:
                        return [join(j.src, rel)]
                    return [path] if j.dst_existed else HIDDEN
                if j.stage and j.stage != j.dst:
                    return [join(j.stage, rel)] + ([path] if j.old_dst_purged else [])
        return [path]

    def adjustments(self, session_id: str, folder: str) -> tuple[set[str], dict[str, str]]:
        """For a listing of ``folder``: names to hide, and names to show
        (name → global path to stat through :meth:`sources`)."""
        hide: set[str] = set()
        add: dict[str, str] = {}
        for j in self.overlays():
            mine, committed = self._roles(j, session_id)
            if j.operation in ("move", "delete") and parent_of(j.src) == folder and j.src != "/":
                if j.via_trash and not committed and not mine:
                    add[name_of(j.src)] = j.src
                elif (committed or mine) and not (j.via_trash and committed):
                    hide.add(name_of(j.src))
            if j.operation in ("move", "copy") and j.dst and parent_of(j.dst) == folder:
                if mine or committed:
                    add[name_of(j.dst)] = j.dst
                elif not j.dst_existed:
                    hide.add(name_of(j.dst))
        for name in add:
            hide.discard(name)
        return hide, add

    def conflict(self, write: list[str], read: list[str] | tuple[()] = ()) -> Job | None:
        """The active job owning a path this operation would change
        (``write``) or needs unchanged (``read``), if any. A job that ended
        before commit with its rollback pending owns only what the rollback
        has yet to remove (the partial destination) or put back (a folder in
        the trash)."""
        for j in self.overlays():
            owned_r: list[str] = []
            if j.phase == "rollback":
                owned_w = [j.src] if j.via_trash else [p for p in (j.stage,) if p]
            else:
                owned_w = [p for p in (j.dst, j.stage) if p]
                if j.operation == "copy":
                    owned_r.append(j.src)
                elif not (j.via_trash and j.committed):  # a committed trash delete owns only its trash
                    owned_w.append(j.src)
            if any(overlaps(p, o) for p in write for o in owned_w + owned_r):
                return j
            if any(overlaps(p, o) for p in read for o in owned_w):
                return j
        return None
