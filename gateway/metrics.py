"""Process metrics in Prometheus text form: operation latencies and bytes
(recorded by the core), sessions per protocol (recorded by front ends), and
job counts/durations read from the job store at scrape time."""

from __future__ import annotations

import threading
from collections import defaultdict

import sqlalchemy as sa

from gateway.jobs.schema import jobs

__all__ = ["record_op", "session_opened", "session_closed", "refused", "in_use", "storage_request",
           "storage_requests", "render"]

_lock = threading.Lock()
_op_count: dict[tuple[str, str], int] = defaultdict(int)
_op_seconds: dict[str, float] = defaultdict(float)
_bytes: dict[str, int] = defaultdict(int)
_sessions: dict[str, int] = defaultdict(int)
_sessions_total: dict[str, int] = defaultdict(int)
_refused: dict[tuple[str, str], int] = defaultdict(int)
_in_use: dict[str, int] = defaultdict(int)
_storage: dict[tuple[str, str], int] = defaultdict(int)


def record_op(protocol: str, op: str, ok: bool, seconds: float, nbytes: int = 0) -> None:
    with _lock:
        _op_count[(op, "ok" if ok else "error")] += 1
        _op_seconds[op] += seconds
        if nbytes:
            _bytes[protocol] += nbytes


def session_opened(protocol: str) -> None:
    with _lock:
        _sessions[protocol] += 1
        _sessions_total[protocol] += 1


def session_closed(protocol: str) -> None:
    with _lock:
        _sessions[protocol] = max(0, _sessions[protocol] - 1)


def refused(protocol: str, limit: str) -> None:
    """Count one request or connection refused by a bound (``limit`` names
    it, e.g. ``line_too_long``, ``unauthenticated_per_ip``)."""
    with _lock:
        _refused[(protocol, limit)] += 1


def in_use(resource: str, delta: int) -> None:
    """Add ``delta`` to what is held of a bounded ``resource`` (bytes, handles, connections)."""
    with _lock:
        _in_use[resource] += delta


def storage_request(storage: str, operation: str) -> None:
    """Count one request a mount sent to its storage (``operation`` as the
    storage's API names it, e.g. S3's ``CopyObject``, ``DeleteObjects``)."""
    with _lock:
        _storage[(storage, operation)] += 1


def storage_requests(storage: str) -> dict[str, int]:
    """{operation: requests sent so far} to ``storage`` (e.g. "s3") by this process."""
    with _lock:
        return {op: n for (s, op), n in _storage.items() if s == storage}


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(engine: sa.Engine, node: str | None = None) -> str:
    """The metrics page (text/plain; version=0.0.4); with ``node`` (several
    nodes share the store), every sample carries a ``node`` label last (the
    job counts read from the store are those of every node sharing it, as
    this node sees them)."""
    out: list[str] = []

    def family(name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], float]]) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            if node:
                labels = {**labels, "node": node}
            lab = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
            out.append(f"{name}{{{lab}}} {value}" if lab else f"{name} {value}")

    with engine.connect() as c:
        by_state = c.execute(sa.select(jobs.c.queue, jobs.c.state, sa.func.count()).group_by(jobs.c.queue, jobs.c.state)).all()
        done = c.execute(sa.select(jobs.c.operation, sa.func.count(), sa.func.sum(jobs.c.finished_at - jobs.c.started_at),
                                   sa.func.sum(jobs.c.bytes_done))
                         .where(jobs.c.state == "completed", jobs.c.started_at.isnot(None))
                         .group_by(jobs.c.operation)).all()
        stuck = c.execute(sa.select(sa.func.count()).where(jobs.c.stuck == sa.true())).scalar() or 0
        stalled = c.execute(sa.select(sa.func.count()).where(
            jobs.c.stalled == sa.true(), jobs.c.state.in_(("queued", "running")))).scalar() or 0
    family("gateway_jobs", "gauge", "Jobs in the store by queue and state.",
           [({"queue": q, "state": s}, n) for q, s, n in by_state])
    family("gateway_jobs_stuck", "gauge", "Jobs the watchdog found without a heartbeat.", [({}, stuck)])
    family("gateway_jobs_stalled", "gauge", "Active jobs without progress for jobs.stalled_after_s.",
           [({}, stalled)])
    family("gateway_job_duration_seconds_sum", "counter", "Run time of completed jobs.",
           [({"operation": o}, round(float(t or 0), 3)) for o, _, t, _ in done])
    family("gateway_job_duration_seconds_count", "counter", "Completed jobs.",
           [({"operation": o}, n) for o, n, _, _ in done])
    family("gateway_job_bytes_total", "counter", "Bytes moved by completed jobs.",
           [({"operation": o}, int(b or 0)) for o, _, _, b in done])
    with _lock:
        family("gateway_operations_total", "counter", "Operations through the core.",
               [({"op": o, "result": r}, n) for (o, r), n in sorted(_op_count.items())])
        family("gateway_operation_seconds_sum", "counter", "Time spent in core operations.",
               [({"op": o}, round(t, 6)) for o, t in sorted(_op_seconds.items())])
        family("gateway_uploaded_bytes_total", "counter", "Bytes uploaded, by protocol.",
               [({"protocol": p}, n) for p, n in sorted(_bytes.items())])
        family("gateway_sessions", "gauge", "Open sessions, by protocol.",
               [({"protocol": p}, n) for p, n in sorted(_sessions.items())])
        family("gateway_sessions_total", "counter", "Sessions opened, by protocol.",
               [({"protocol": p}, n) for p, n in sorted(_sessions_total.items())])
        family("gateway_refused_total", "counter", "Requests and connections refused by a limit.",
               [({"protocol": p, "limit": k}, n) for (p, k), n in sorted(_refused.items())])
        family("gateway_resource_in_use", "gauge", "What is held of a bounded resource.",
               [({"resource": k}, n) for k, n in sorted(_in_use.items())])
        family("gateway_storage_requests_total", "counter", "Requests sent to remote storage, by API operation.",
               [({"storage": s, "operation": o}, n) for (s, o), n in sorted(_storage.items())])
    return "\n".join(out) + "\n"
