"""A job as every layer sees it."""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, fields

from gateway.types import RESERVED_PREFIX

__all__ = ["Job", "new_job_id", "pending_props_root", "TERMINAL", "ACTIVE", "OPERATION_NAMES"]

#: States after which nothing changes any more.
TERMINAL = frozenset({"completed", "failed", "stopped", "cancelled"})
ACTIVE = frozenset({"queued", "running"})
#: The REST/QueueInfo name of each operation.
OPERATION_NAMES = {"copy": "ItemCopy", "move": "ItemMove", "delete": "ItemDelete"}


def new_job_id() -> str:
    """16 URL-safe random characters, never starting with '-' (a CLI would
    take ``jobs show -abc`` for an option)."""
    while True:
        job_id = secrets.token_urlsafe(12)
        if not job_id.startswith("-"):
            return job_id


def pending_props_root(job_id: str) -> str:
    """Where the WebDAV dead properties the initiating session sets on a
    job's projected destination wait for its commit (a reserved global
    path: no client can name it)."""
    return f"/{RESERVED_PREFIX}job-{job_id}"


@dataclass
class Job:
    """One background operation. Paths are global virtual paths; ``stage`` is
    where the destination's content is written (== dst unless dst existed),
    or for a delete the reserved name its folder is renamed to (see
    :attr:`via_trash`)."""

    id: str
    queue: str
    operation: str
    src: str
    dst: str | None
    owner: str
    session_id: str
    protocol: str
    state: str = "queued"
    phase: str = "prepare"
    stage: str | None = None
    dst_existed: bool = False
    overwrite: bool = False
    enumerated: bool = False
    old_dst_purged: bool = False
    stop_requested: bool = False
    items_total: int = 0
    items_done: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    created_at: float = 0.0
    started_at: float | None = None
    committed_at: float | None = None
    finished_at: float | None = None
    heartbeat_at: float | None = None
    not_before: float = 0.0
    attempts: int = 0
    stuck: bool = False
    progress_at: float | None = None
    stalled: bool = False
    retries_from: int = 0
    leftovers: str | None = None
    node: str | None = None
    error: str | None = None
    error_type: str | None = None
    resource_id: str | None = None

    @classmethod
    def from_row(cls, row) -> "Job":
        m = row._mapping
        return cls(**{f.name: m[f.name] for f in fields(cls)})

    def row(self) -> dict:
        return asdict(self)

    @property
    def committed(self) -> bool:
        return self.phase in ("cleanup", "done")

    @property
    def via_trash(self) -> bool:
        """A delete on storage that renames atomically: the folder is renamed
        to ``stage`` (a reserved name at the mount's root, never listed) just
        before commit and removed there during cleanup, so its path is free
        once committed. Where that rename fails, ``stage`` is cleared and the
        delete enumerates and removes in place."""
        return self.operation == "delete" and self.stage is not None

    @property
    def staged(self) -> bool:
        """The destination existed, so the content goes to ``stage`` and is
        put in its place during cleanup."""
        return self.dst is not None and self.stage is not None and self.stage != self.dst

    @property
    def attempts_used(self) -> int:
        """Attempts counted against ``max_attempts``: those since the last
        admin's retry, which gives the job a full set again, less those its
        node handed back on purpose (draining or stopping: no failure)."""
        return self.attempts - self.retries_from

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def percentage(self) -> float:
        """Share of the work done, 0–100; 100 only once completed, 0 while
        the source is still being listed (the total is not known)."""
        if self.state == "completed":
            return 100.0
        if not self.enumerated:
            return 0.0
        if self.operation == "delete":
            done, total = self.items_done, self.items_total
        elif self.bytes_total:
            done, total = self.bytes_done, self.bytes_total
        else:
            done, total = self.items_done, self.items_total
        if not total:
            return 0.0
        return round(min(99.9, 100.0 * done / total), 1)

    def rates(self, now: float | None = None) -> tuple[float | None, float | None]:
        """(bytes or items per second, seconds left) while running."""
        if not self.started_at or self.terminal:
            return None, None
        elapsed = max(1e-3, (now or time.time()) - self.started_at)
        use_bytes = self.operation != "delete" and self.bytes_total
        done = self.bytes_done if use_bytes else self.items_done
        total = self.bytes_total if use_bytes else self.items_total
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 and self.enumerated else None
        return round(rate, 1), (round(eta, 1) if eta is not None else None)

    def public(self) -> dict:
        """The job as the API, CLI and portal show it."""
        rate, eta = self.rates()
        return {
            "id": self.id,
            "queue": self.queue,
            "operation": OPERATION_NAMES.get(self.operation, self.operation),
            "state": self.state,
            "phase": self.phase,
            "from": self.src,
            "to": self.dst,
            "owner": self.owner,
            "protocol": self.protocol,
            "itemsDone": self.items_done,
            "itemsTotal": self.items_total,
            "bytesDone": self.bytes_done,
            "bytesTotal": self.bytes_total,
            "enumerated": self.enumerated,
            "sizeKnown": self.enumerated or self.state == "completed",
            "percentageComplete": self.percentage,
            "rate": rate,
            "etaSeconds": eta,
            "createdAt": self.created_at,
            "startedAt": self.started_at,
            "committedAt": self.committed_at,
            "finishedAt": self.finished_at,
            "attempts": self.attempts,
            "node": self.node,
            "stuck": self.stuck,
            "stalled": self.stalled,
            "progressAt": self.progress_at,
            "error": self.error,
            "leftovers": self.leftovers,
            "resourceId": self.resource_id,
        }
