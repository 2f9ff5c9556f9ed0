"""The job store: system of record for jobs, their journaled items, overlays
(active jobs are the overlays) and monitor tokens. SQLite (WAL) embedded,
PostgreSQL for several nodes; same schema, migrated by Alembic at open."""

from __future__ import annotations

import base64
import builtins
import hashlib
import hmac
import logging
import secrets
import threading
import time
import zlib
from pathlib import Path
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

import sqlalchemy as sa
from sqlalchemy import event

from gateway.bus import Change
from gateway.errors import InvalidState, NotFound
from gateway.jobs.model import Job, pending_props_root
from gateway.jobs.schema import (dav_props, job_items, jobs, metadata, monitor_tokens, path_subtree,
                                 store_secrets)

__all__ = ["JobStore", "SchemaTooNew", "hash_token", "known_revisions", "rollback_leftovers", "write_transaction",
           "BATCH_ITEMS"]

log = logging.getLogger("gateway.jobs")

#: The newest migration under migrations/versions (a test keeps them in step).
SCHEMA_HEAD = "0010"
#: The PostgreSQL advisory lock key held while the schema is migrated
#: (any constant: "gw-migr" in ASCII).
MIGRATION_LOCK = 0x67772D6D69677220
_MIGRATIONS = Path(__file__).with_name("migrations")


#: PostgreSQL ends a session idle this long inside a transaction (every
#: transaction of the store is a few statements run back to back).
IDLE_IN_TRANSACTION_MS = 10000

_JOBS_CHANGED = Change(jobs=True)

#: The longest wait between two attempts of a job that keeps failing.
MAX_BACKOFF_S = 300.0


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@contextmanager
def write_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A write transaction on a store engine (SQLite: BEGIN IMMEDIATE, so two
    writers wait for each other instead of failing to upgrade a read lock)."""
    with engine.connect() as c:
        c.info["immediate"] = True
        try:
            with c.begin():
                yield c
        finally:
            c.info["immediate"] = False


def _insert_ignore(conn, table, rows):
    """INSERT ... ON CONFLICT DO NOTHING on SQLite and PostgreSQL; returns the
    number of rows really inserted. (psycopg reports no row count for a
    many-row insert, so on PostgreSQL the inserted keys are returned and
    counted.)"""
    if not rows:
        return 0
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert

        # psycopg reports no row count for a many-row insert (-1): count
        # the rows it returns instead.
        key = next(iter(table.primary_key.columns))
        return len(conn.execute(insert(table).on_conflict_do_nothing().returning(key), rows).all())
    from sqlalchemy.dialects.sqlite import insert

    result = conn.execute(insert(table).on_conflict_do_nothing(), rows)
    return max(0, result.rowcount or 0)


class JobStore:
    """Thread-safe. ``generation`` grows on every change that can alter the
    view (create, commit, finish, cancel); ``changed`` is notified then."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = url.startswith("sqlite")
        kwargs: dict = {}
        if self.sqlite:
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
            if ":memory:" in url or url in ("sqlite://", "sqlite:///"):
                from sqlalchemy.pool import StaticPool

                kwargs["poolclass"] = StaticPool
            else:
                _create_database_file(url)
                # Every job worker, front-end thread and the WebDAV state read
                # at once; past the pool size SQLAlchemy opens and closes a
                # connection (and its PRAGMAs) per use.
                kwargs["pool_size"], kwargs["max_overflow"] = 32, 32
        else:
            kwargs["pool_size"] = 10
            kwargs["pool_pre_ping"] = True
            # An unreachable server is an answer within seconds (readiness, start), not a hang;
            # a node frozen inside a transaction (SIGSTOP, a VM pause) loses it and its row locks
            # after IDLE_IN_TRANSACTION_MS, so the others can take its jobs over.
            kwargs["connect_args"] = {"connect_timeout": 5, "options": (
                f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}")}
        self.engine = sa.create_engine(url, future=True, **kwargs)
        if self.sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        self._write_lock = threading.Lock() if self.sqlite else None
        #: Called inside the transaction that commits a job, with its
        #: connection: what must change in the same instant (dead properties).
        self.on_commit: Callable[[sa.Connection, Job], None] | None = None
        self.generation = 0
        self.changed = threading.Condition()
        #: Reads of the view under way on this node, counted by the
        #: generation they began at (begin_read, wait_for_reads).
        self._reads: dict[int, int] = {}
        self._reads_ended = threading.Condition()
        self._monitor_key: bytes | None = None
        #: Tells the other nodes of every change of the view (gateway.bus);
        #: the gateway sets it for a shared store.
        self.publish: Callable[[Change], None] | None = None
        self._migrate()

    def _migrate(self) -> None:
        """Bring the schema to ``SCHEMA_HEAD``. A new database gets the
        tables of ``schema.metadata`` stamped with the head revision; only an
        older one runs Alembic's migrations. On PostgreSQL the work holds a
        transaction-level advisory lock, so of several nodes starting at once
        one migrates and the others wait, then find the head. Alembic and
        Mako cost ~12 MiB of resident memory for the life of the process, so
        they are imported only when a migration runs.

        Raises SchemaTooNew when the database is at a revision this version
        does not know (a newer gateway migrated it)."""
        revision = self.schema_revision()
        if revision == SCHEMA_HEAD:
            return
        _check_known(revision, self.url)
        with self.engine.begin() as conn:
            if not self.sqlite:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            revision = _revision(conn)  # again: another node may have migrated while we waited
            if revision == SCHEMA_HEAD:
                return
            _check_known(revision, self.url)
            if revision is None and not sa.inspect(conn).get_table_names():
                metadata.create_all(conn)
                version = sa.Table("alembic_version", sa.MetaData(),
                                   sa.Column("version_num", sa.String(32), primary_key=True))
                version.create(conn)
                conn.execute(version.insert().values(version_num=SCHEMA_HEAD))
                return
            from alembic import command
            from alembic.config import Config as AlembicConfig

            cfg = AlembicConfig()
            cfg.set_main_option("script_location", str(_MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            log.info("job store migrated from revision %s to %s", revision, SCHEMA_HEAD)

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at (None: not created yet)."""
        with self.engine.connect() as conn:
            return _revision(conn)

    def ping(self) -> None:
        """One round trip to the database; raises what the driver raises."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()

    def lost_connection(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the shared database cannot be reached now (a
        PostgreSQL restart or a broken connection), so the same call may
        work once it is back. Never for SQLite, whose file does not go away."""
        if self.sqlite:
            return False
        return isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)) or bool(
            getattr(exc, "connection_invalidated", False))

    # -- plumbing ------------------------------------------------------------

    def _tx(self):
        return write_transaction(self.engine)

    def _bump(self) -> None:
        """A change here that alters the view: this node's waiters wake
        now, the other nodes' once the bus delivered it."""
        self.touch()
        if self.publish is not None:
            self.publish(_JOBS_CHANGED)

    def touch(self) -> None:
        """Something may have changed (another node's change arrived):
        ``generation`` grows and waiters wake, nothing is published."""
        with self.changed:
            self.generation += 1
            self.changed.notify_all()

    # -- reads in progress ---------------------------------------------------

    def begin_read(self) -> int:
        """A read that spans time starts on this node (a listing streamed to a
        client, a download from remote storage); returns the token for
        :meth:`end_read`. Taken before the read looks at the view."""
        with self._reads_ended:
            gen = self.generation
            self._reads[gen] = self._reads.get(gen, 0) + 1
        return gen

    def end_read(self, token: int) -> None:
        with self._reads_ended:
            left = self._reads[token] - 1
            if left:
                self._reads[token] = left
            else:
                del self._reads[token]
                self._reads_ended.notify_all()

    def wait_for_reads(self, before: int, timeout: float) -> bool:
        """Until every read this node began before generation ``before`` has
        ended (True), or ``timeout`` seconds (False): a job that has just
        committed removes no source a listing or download begun before the
        commit is still reading, so that read shows the old tree whole."""
        with self._reads_ended:
            return self._reads_ended.wait_for(lambda: not self._reads or min(self._reads) >= before, timeout)

    # -- jobs ----------------------------------------------------------------

    def create(self, job: Job) -> Job:
        job.created_at = job.created_at or time.time()
        with self._tx() as c:
            c.execute(jobs.insert().values(**job.row()))
        self._bump()
        return job

    def get(self, job_id: str) -> Job:
        """Raises NotFound."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
        if row is None:
            raise NotFound(f"no job {job_id!r}")
        return Job.from_row(row)

    def list(self, queue: str | None = None, state: str | None = None, owner: str | None = None,
             limit: int = 500, offset: int = 0) -> builtins.list[Job]:
        """Jobs, newest first; ``state`` "stalled" means queued or running
        and flagged stalled."""
        q = sa.select(jobs)
        if queue:
            q = q.where(sa.func.lower(jobs.c.queue) == queue.lower())
        if state == "stalled":
            q = q.where(jobs.c.stalled == sa.true(), jobs.c.state.in_(("queued", "running")))
        elif state:
            q = q.where(jobs.c.state == state)
        if owner:
            q = q.where(jobs.c.owner == owner)
        q = q.order_by(jobs.c.created_at.desc(), jobs.c.id).limit(limit).offset(offset)
        with self.engine.connect() as c:
            return [Job.from_row(r) for r in c.execute(q)]

    def overlays(self) -> builtins.list[Job]:
        """Jobs whose view overlay applies: not yet committed and still queued
        or running, committed and not yet cleaned up, or ended before commit
        with a partial destination still to remove (whatever their state)."""
        q = sa.select(jobs).where(
            sa.or_(
                sa.and_(jobs.c.phase == "prepare", jobs.c.state.in_(("queued", "running"))),
                jobs.c.phase.in_(("cleanup", "rollback")),
            )
        )
        with self.engine.connect() as c:
            return [Job.from_row(r) for r in c.execute(q)]

    def claim(self, queues: Iterable[str], node: str) -> Job | None:
        """Take the oldest runnable queued job of ``queues``: it becomes
        running, owned by ``node``, with a new attempt number."""
        now = time.time()
        runnable = sa.select(jobs.c.id).where(
            jobs.c.state == "queued", jobs.c.queue.in_(list(queues)), jobs.c.not_before <= now
        ).order_by(jobs.c.created_at, jobs.c.id).limit(1)
        with self.engine.connect() as c:  # idle workers ask often: a read, no write lock
            if c.execute(runnable).first() is None:
                return None
        with self._tx() as c:
            row = c.execute(runnable if self.sqlite else runnable.with_for_update(skip_locked=True)).first()
            if row is None:
                return None
            res = c.execute(
                jobs.update().where(jobs.c.id == row.id, jobs.c.state == "queued").values(
                    state="running", node=node, attempts=jobs.c.attempts + 1, heartbeat_at=now,
                    started_at=sa.func.coalesce(jobs.c.started_at, now),
                )
            )
            if res.rowcount != 1:
                return None
            job = Job.from_row(c.execute(sa.select(jobs).where(jobs.c.id == row.id)).first())
        self._bump()
        return job

    def update(self, job: Job, **values) -> bool:
        """Write ``values`` for a running attempt; False when the job was taken
        from this attempt (stalled and given to another worker) — the caller
        must stop working on it."""
        values["heartbeat_at"] = time.time()
        with self._tx() as c:
            res = c.execute(
                jobs.update().where(jobs.c.id == job.id, jobs.c.attempts == job.attempts,
                                    jobs.c.state == "running").values(**values)
            )
        for k, v in values.items():
            setattr(job, k, v)
        return res.rowcount == 1

    def refresh_control(self, job: Job) -> tuple[bool, bool]:
        """(still ours, stop requested) for a running attempt."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(jobs.c.attempts, jobs.c.state, jobs.c.stop_requested)
                            .where(jobs.c.id == job.id)).first()
        if row is None:
            return False, False
        return (row.attempts == job.attempts and row.state == "running"), bool(row.stop_requested)

    def commit(self, job: Job) -> bool:
        """The moment the operation happens for everyone: one atomic update
        flips the view. False when a stop came first (or the attempt is stale)."""
        now = time.time()
        with self._tx() as c:
            res = c.execute(
                jobs.update().where(
                    jobs.c.id == job.id, jobs.c.attempts == job.attempts, jobs.c.state == "running",
                    jobs.c.phase == "prepare", jobs.c.stop_requested == sa.false(),
                ).values(phase="cleanup", committed_at=now, heartbeat_at=now, progress_at=now, stalled=False)
            )
            ok = res.rowcount == 1
            if ok and self.on_commit is not None:
                self.on_commit(c, job)
        if ok:
            job.phase, job.committed_at = "cleanup", now
            self._bump()
        return ok

    def finish(self, job: Job, state: str, *, error: str | None = None, error_type: str | None = None,
               resource_id: str | None = None, phase: str | None = None, leftovers: str | None = None) -> bool:
        now = time.time()
        values = dict(state=state, finished_at=now, heartbeat_at=now, error=error, error_type=error_type,
                      resource_id=resource_id, leftovers=leftovers, stalled=False)
        if phase:
            values["phase"] = phase
        with self._tx() as c:
            res = c.execute(jobs.update().where(jobs.c.id == job.id, jobs.c.attempts == job.attempts,
                                                jobs.c.state == "running").values(**values))
        for k, v in values.items():
            setattr(job, k, v)
        self._bump()
        return res.rowcount == 1

    def end_rollback(self, job: Job) -> bool:
        """A job's late rollback succeeded: its overlay can go."""
        with self._tx() as c:
            res = c.execute(jobs.update().where(jobs.c.id == job.id, jobs.c.phase == "rollback")
                            .values(phase="prepare", leftovers=None))
        self._bump()
        return res.rowcount == 1

    def cancel(self, job_id: str) -> Job:
        """queued → cancelled, before commit only. A job that already ran (it
        waits for a retry) is cancelled in phase ``rollback``: its overlay
        keeps what it wrote hidden until the rollback removed it. Raises
        NotFound, InvalidState (running, committed, or ended)."""
        now = time.time()
        with self._tx() as c:
            res = c.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.state == "queued",
                                                jobs.c.phase == "prepare")
                            .values(state="cancelled", finished_at=now,
                                    phase=sa.case((jobs.c.attempts > 0, "rollback"), else_="prepare")))
        job = self.get(job_id)
        if res.rowcount != 1:
            raise InvalidState(_refusal(job, "cancelled"))
        self._bump()
        return job

    def request_stop(self, job_id: str) -> Job:
        """Ask a running job to stop before it commits. Raises NotFound,
        InvalidState (not running, or committed and finishing cleanup)."""
        with self._tx() as c:
            res = c.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.state == "running",
                                                jobs.c.phase == "prepare").values(stop_requested=True))
        job = self.get(job_id)
        if res.rowcount != 1:
            raise InvalidState(_refusal(job, "stopped"))
        self._bump()
        return job

    def release(self, job: Job) -> bool:
        """Give a running attempt back to the queue at once (its node is
        draining or stopping): any node resumes it from its journal. A
        planned handover is no failure: the attempt is not counted against
        ``max_attempts`` (``retries_from`` grows with it; the attempt number
        itself, the fencing token, still grows at the next claim). False
        when the attempt was no longer ours."""
        with self._tx() as c:
            res = c.execute(jobs.update().where(jobs.c.id == job.id, jobs.c.attempts == job.attempts,
                                                jobs.c.state == "running")
                            .values(state="queued", not_before=0.0, heartbeat_at=time.time(),
                                    retries_from=jobs.c.retries_from + 1))
        if res.rowcount != 1:
            return False
        job.state = "queued"
        job.retries_from += 1
        self._bump()
        return True

    def requeue_stalled(self, stalled_before: float, max_attempts: int, backoff_s: float,
                        node: str | None = None) -> builtins.list[tuple[Job, str]]:
        """Running jobs whose heartbeat is older than ``stalled_before`` (or, with
        ``node``, every running job of that node: it restarted) go back to the
        queue with a backoff, or fail once they used ``max_attempts``. Returns
        (job, new state) pairs."""
        q = sa.select(jobs).where(jobs.c.state == "running")
        if node is not None:
            q = q.where(sa.or_(jobs.c.node == node, jobs.c.heartbeat_at < stalled_before))
        else:
            q = q.where(jobs.c.heartbeat_at < stalled_before)
        out: builtins.list[tuple[Job, str]] = []
        with self._tx() as c:
            for row in c.execute(q).fetchall():
                job = Job.from_row(row)
                guard = (jobs.c.id == job.id, jobs.c.attempts == job.attempts, jobs.c.state == "running")
                values: dict[str, object]
                delay = min(MAX_BACKOFF_S, backoff_s * (2 ** max(0, job.attempts_used - 1)))
                if job.attempts_used >= max_attempts and not job.committed:
                    # What it wrote stays hidden until the watchdog's rollback removed it.
                    values = dict(state="failed", stuck=True, finished_at=time.time(), error_type="BackendError",
                                  phase="rollback",
                                  error=f"job stalled {job.attempts_used} times (no heartbeat); gave up",
                                  leftovers=rollback_leftovers(job))
                else:  # a committed job can only be finished: it stays queued, shown as stuck
                    values = dict(state="queued", stuck=node is None or job.attempts_used >= max_attempts,
                                  not_before=time.time() + delay)
                if c.execute(jobs.update().where(*guard).values(**values)).rowcount:
                    out.append((job, str(values["state"])))
        if out:
            self._bump()
        return out

    def mark_stalled(self, no_progress_since: float) -> builtins.list[Job]:
        """Flag ``stalled`` the queued or running jobs that ran before and
        made no progress (items or bytes) since ``no_progress_since``; a job
        only waiting for its first worker is not stalled. Returns the jobs
        newly flagged. Progress clears the flag."""
        last = sa.func.coalesce(jobs.c.progress_at, jobs.c.started_at)
        where = (jobs.c.state.in_(("queued", "running")), jobs.c.stalled == sa.false(),
                 jobs.c.started_at.isnot(None), last < no_progress_since)
        with self.engine.connect() as c:  # a read first: most passes find nothing
            if c.execute(sa.select(jobs.c.id).where(*where).limit(1)).first() is None:
                return []
        with self._tx() as c:
            found = [Job.from_row(r) for r in c.execute(sa.select(jobs).where(*where)).fetchall()]
            if found:
                c.execute(jobs.update().where(jobs.c.id.in_([j.id for j in found]), *where).values(stalled=True))
        for job in found:
            job.stalled = True
        if found:
            self._bump()
        return found

    def retry(self, job_id: str) -> Job:
        """An admin's retry of a queued or running job: it is queued to run
        now with a full set of attempts (a running attempt is taken from its
        worker, whose later writes are refused); it stays committed if it
        was. Raises NotFound, InvalidState (ended)."""
        now = time.time()
        with self._tx() as c:
            res = c.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.state.in_(("queued", "running")))
                            .values(state="queued", not_before=0.0, retries_from=jobs.c.attempts, stalled=False,
                                    stuck=False, progress_at=now, stop_requested=False))
        job = self.get(job_id)
        if res.rowcount != 1:
            raise InvalidState(f"job {job_id} is {job.state}; only a queued or running job can be retried")
        self._bump()
        return job

    def take(self, job: Job, state: str, *, phase: str, error: str, error_type: str,
             leftovers: str | None = None) -> bool:
        """End ``job`` (as read, queued or running, its attempt and phase
        unchanged since) from outside its worker: an admin's abandon. A
        running attempt's later writes are refused (its state is no longer
        running). False when the job changed meanwhile."""
        now = time.time()
        with self._tx() as c:
            res = c.execute(jobs.update().where(
                jobs.c.id == job.id, jobs.c.attempts == job.attempts, jobs.c.state == job.state,
                jobs.c.phase == job.phase).values(
                state=state, phase=phase, error=error, error_type=error_type, leftovers=leftovers,
                finished_at=now, heartbeat_at=now, stalled=False))
        if res.rowcount == 1:
            job.state, job.phase, job.error, job.error_type, job.leftovers = state, phase, error, error_type, leftovers
            job.finished_at = now
            self._bump()
        return res.rowcount == 1

    def set_leftovers(self, job_id: str, leftovers: str | None) -> None:
        """Describe (or, None, clear) what an ended job left on storage."""
        with self._tx() as c:
            c.execute(jobs.update().where(jobs.c.id == job_id).values(leftovers=leftovers))
        self._bump()

    def purge_finished(self, older_than: float) -> int:
        """Forget terminal jobs (and their journals) finished before ``older_than``."""
        with self._tx() as c:
            ids = [r.id for r in c.execute(sa.select(jobs.c.id).where(
                jobs.c.finished_at < older_than, jobs.c.phase.notin_(("cleanup", "rollback")),
                jobs.c.state.in_(("completed", "failed", "stopped", "cancelled"))))]
            if ids:
                c.execute(job_items.delete().where(job_items.c.job_id.in_(ids)))
                c.execute(monitor_tokens.delete().where(monitor_tokens.c.job_id.in_(ids)))
                for job_id in ids:  # what an initiator set on a destination that never came
                    root = pending_props_root(job_id)
                    c.execute(dav_props.delete().where(path_subtree(dav_props.c.path, root)))
                c.execute(jobs.delete().where(jobs.c.id.in_(ids)))
        return len(ids)

    # -- journaled items -------------------------------------------------------

    def add_items(self, job: Job, items: builtins.list[tuple]) -> tuple[int, int]:
        """Journal enumerated (rel, is_dir, size[, src_stamp]) items once
        each (``src_stamp``: what the storage reported of a file a move
        copies, see gateway.fileids.stamp); bump the job's totals by what
        was new. Returns (items added, bytes added)."""
        if not items:
            return 0, 0
        added = bytes_added = 0
        with self._tx() as c:
            existing: set[str] = set()
            rels = [i[0] for i in items]
            for chunk in range(0, len(rels), 500):
                existing.update(r.rel for r in c.execute(sa.select(job_items.c.rel).where(
                    job_items.c.job_id == job.id, job_items.c.rel.in_(rels[chunk:chunk + 500]))))
            new = [i for i in items if i[0] not in existing]
            rows = [dict(job_id=job.id, rel=r, is_dir=d, size=s, state="pending", src_stamp=(st or [None])[0])
                    for r, d, s, *st in new]
            if self.sqlite:  # writers take turns (BEGIN IMMEDIATE): every new row goes in
                added = _insert_ignore(c, job_items, rows)
                bytes_added = sum(i[2] for i in new)
            else:  # another attempt may insert the same rels meanwhile: count what went in
                from sqlalchemy.dialects.postgresql import insert

                sizes = c.execute(insert(job_items).on_conflict_do_nothing().returning(job_items.c.size),
                                  rows).scalars().all() if rows else []
                added, bytes_added = len(sizes), sum(sizes)
            now = time.time()
            progress = dict(progress_at=now, stalled=False) if added else {}
            c.execute(jobs.update().where(jobs.c.id == job.id).values(
                items_total=jobs.c.items_total + added, bytes_total=jobs.c.bytes_total + bytes_added,
                heartbeat_at=now, **progress))
        job.items_total += added
        job.bytes_total += bytes_added
        return added, bytes_added

    def items(self, job_id: str, state: str, after_id: int = 0, limit: int = 256,
              descending: bool = False) -> builtins.list[tuple[int, str, bool, int]]:
        """Journaled items in ``state`` as (id, rel, is_dir, size), in
        enumeration order (or reverse: children before their folders)."""
        q = sa.select(job_items.c.id, job_items.c.rel, job_items.c.is_dir, job_items.c.size).where(
            job_items.c.job_id == job_id, job_items.c.state == state)
        if descending:
            if after_id:
                q = q.where(job_items.c.id < after_id)
            q = q.order_by(job_items.c.id.desc())
        else:
            q = q.where(job_items.c.id > after_id).order_by(job_items.c.id)
        with self.engine.connect() as c:
            return [tuple(r) for r in c.execute(q.limit(limit))]

    def mark_items(self, job: Job, ids: builtins.list[int], state: str, items_each: int = 1, *,
                   partial: dict[int, int] | None = None, helper: bool = False,
                   stamps: dict[int, str] | None = None) -> tuple[int, int] | None:
        """Journal a batch of finished steps of the attempt ``job`` together
        with the progress they made, in one transaction; returns the job's
        (items_done, bytes_done) after it, or None when the attempt is no
        longer ours (for a ``helper``, also once the job was asked to stop or
        committed): then nothing is written.

        Progress is credited per item, never added blindly (helpers on other
        nodes, and after a takeover a new attempt, may step through the same
        items): an item of ``ids`` not yet in ``state`` moves to it and adds
        ``items_each`` to items_done; moving to ``copied`` it adds the bytes
        of its size not counted yet (``job_items.counted``). ``partial``:
        item id → bytes copied so far of an item still pending (a file in
        flight); only what goes past the item's counted bytes is added. So
        bytes_done is always the sum of the items' counted bytes, never more
        than bytes_total, and equal to it once everything is copied.
        ``stamps``: item id → what the storage reported of the copy the step
        made (its ``dst_stamp``)."""
        now = time.time()
        guard = [jobs.c.id == job.id, jobs.c.attempts == job.attempts, jobs.c.state == "running"]
        if helper:
            guard += [jobs.c.phase == "prepare", jobs.c.stop_requested == sa.false()]
        mine = (job_items.c.job_id == job.id,)
        items_added = bytes_added = moved = 0
        with self._tx() as c:
            # The attempt's fence, and (PostgreSQL) the job's row locked until
            # the commit: the flushes of one job take turns, so the counted
            # bytes read below are the ones updated.
            if c.execute(sa.select(jobs.c.id).where(*guard).with_for_update()).first() is None:
                return None
            if ids:
                rows = c.execute(sa.select(job_items.c.id, job_items.c.size, job_items.c.counted).where(
                    *mine, job_items.c.id.in_(ids), job_items.c.state != state)).all()
                if rows:
                    values: dict = dict(state=state)
                    if state == "copied":
                        values["counted"] = job_items.c.size
                        bytes_added += sum(max(0, r.size - r.counted) for r in rows)
                    c.execute(job_items.update().where(job_items.c.id.in_([r.id for r in rows])).values(**values))
                    moved = len(rows)
                    items_added = moved * items_each
            if partial:
                grown = []
                for r in c.execute(sa.select(job_items.c.id, job_items.c.size, job_items.c.counted).where(
                        *mine, job_items.c.id.in_(list(partial)), job_items.c.state == "pending")):
                    counted = min(r.size, partial[r.id])
                    if counted > r.counted:
                        bytes_added += counted - r.counted
                        grown.append({"item": r.id, "counted": counted})
                if grown:
                    c.execute(job_items.update().where(job_items.c.id == sa.bindparam("item"))
                              .values(counted=sa.bindparam("counted")), grown)
            if stamps:
                c.execute(job_items.update().where(job_items.c.id == sa.bindparam("item"))
                          .values(dst_stamp=sa.bindparam("stamp")),
                          [{"item": i, "stamp": st} for i, st in stamps.items()])
            values = dict(items_done=jobs.c.items_done + items_added, bytes_done=jobs.c.bytes_done + bytes_added)
            if not helper:
                values["heartbeat_at"] = now
            if moved or bytes_added:  # progress: stamped, and no longer stalled
                values.update(progress_at=now, stalled=False)
            c.execute(jobs.update().where(jobs.c.id == job.id).values(**values))
            done = c.execute(sa.select(jobs.c.items_done, jobs.c.bytes_done).where(jobs.c.id == job.id)).one()
        if not helper:
            job.heartbeat_at = now
        return int(done[0]), int(done[1])

    # -- one job, many nodes (PostgreSQL) ----------------------------------------

    @property
    def shares_jobs(self) -> bool:
        """Whether idle workers (of any node) may help a running job with
        batches of its journaled items: PostgreSQL only, where a batch is
        claimed with an advisory lock that its holder's death releases."""
        return not self.sqlite

    def helpable(self, queues: Iterable[str]) -> Job | None:
        """A running copy or move of ``queues`` still copying, not asked to
        stop, with journaled items no one has copied yet (oldest first)."""
        pending = sa.select(job_items.c.id).where(job_items.c.job_id == jobs.c.id,
                                                  job_items.c.state == "pending").exists()
        q = sa.select(jobs).where(jobs.c.state == "running", jobs.c.phase == "prepare",
                                  jobs.c.stop_requested == sa.false(),
                                  jobs.c.operation.in_(("copy", "move")), jobs.c.queue.in_(list(queues)),
                                  pending).order_by(jobs.c.started_at, jobs.c.id).limit(1)
        with self.engine.connect() as c:
            row = c.execute(q).first()
        return Job.from_row(row) if row is not None else None

    @contextmanager
    def claim_batch(self, job: Job) -> Iterator[builtins.list[tuple[int, str, bool, int]] | None]:
        """Yield the pending items of one batch of ``job`` (items whose id
        // BATCH_ITEMS is the same) that nobody else holds, held (advisory
        lock on its own connection) until the block ends; None when every
        batch with pending items is held by someone else or none is left.
        The holder dying releases the lock: its items are still pending and
        the next claimer copies them."""
        key = _job_key(job.id)
        batch = (job_items.c.id // BATCH_ITEMS).label("batch")
        pending = (job_items.c.job_id == job.id, job_items.c.state == "pending")
        with self.engine.connect() as c:
            batches = [r.batch for r in c.execute(sa.select(batch).where(*pending).distinct().order_by(batch))]
            # A file is copied into its folder: no batch past a folder still
            # to make is handed out (a walk lists a folder before its content).
            first_folder = c.execute(sa.select(sa.func.min(job_items.c.id)).where(
                *pending, job_items.c.is_dir == sa.true())).scalar()
            if first_folder is not None:
                batches = [b for b in batches if b <= first_folder // BATCH_ITEMS]
            c.commit()
            for b in batches:
                if not c.execute(_TRY_LOCK, {"key": key, "batch": b}).scalar():
                    c.commit()
                    continue
                try:
                    items = [tuple(r) for r in c.execute(
                        sa.select(job_items.c.id, job_items.c.rel, job_items.c.is_dir, job_items.c.size).where(
                            job_items.c.job_id == job.id, job_items.c.state == "pending",
                            job_items.c.id >= b * BATCH_ITEMS, job_items.c.id < (b + 1) * BATCH_ITEMS)
                        .order_by(job_items.c.id))]
                    c.commit()  # no transaction stays open while the batch is worked
                    if items:
                        yield items
                        return
                finally:
                    try:
                        c.execute(_UNLOCK, {"key": key, "batch": b})
                        c.commit()
                    except sa.exc.DBAPIError:  # never back to the pool still holding it
                        c.invalidate()
            yield None

    def batches_held(self, job: Job) -> int:
        """How many batches of ``job`` someone holds now (helpers at work)."""
        q = sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND classid = :key AND objsubid = 2")
        with self.engine.connect() as c:
            return int(c.execute(q, {"key": _job_key(job.id)}).scalar() or 0)

    def count_items(self, job_id: str, state: str | None = None) -> tuple[int, int]:
        q = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(job_items.c.size), 0)).where(
            job_items.c.job_id == job_id)
        if state:
            q = q.where(job_items.c.state == state)
        with self.engine.connect() as c:
            n, b = c.execute(q).one()
        return int(n), int(b)

    # -- monitor tokens ----------------------------------------------------------

    def create_monitor_token(self, job_id: str, ttl_s: float) -> str:
        """The unguessable (256-bit) token of ``job_id``, live for ``ttl_s``
        from now. A job has one: every request that is answered with it (a
        retry attaching to the job) gets the same URL, and makes it live
        ``ttl_s`` again. Derived from the store's secret key (HMAC of the
        job id), so every node derives the same; only its hash is kept."""
        token = base64.urlsafe_b64encode(hmac.new(self._secret_key(), job_id.encode(), "sha256").digest())
        token_s = token.rstrip(b"=").decode()
        expires = time.time() + ttl_s
        with self._tx() as c:
            where = monitor_tokens.c.token_hash == hash_token(token_s)
            if c.execute(monitor_tokens.update().where(where).values(expires_at=expires)).rowcount == 0:
                c.execute(monitor_tokens.insert().values(token_hash=hash_token(token_s), job_id=job_id,
                                                         expires_at=expires))
        return token_s

    def _secret_key(self) -> bytes:
        """The store's ``monitor`` key, made at first use (a race between
        nodes keeps the first one written)."""
        if self._monitor_key is None:
            query = sa.select(store_secrets.c.value).where(store_secrets.c.name == "monitor")
            with self.engine.connect() as c:
                value = c.execute(query).scalar()
            if value is None:
                with self._tx() as c:
                    _insert_ignore(c, store_secrets, [{"name": "monitor", "value": secrets.token_hex(32)}])
                    value = c.execute(query).scalar()
            self._monitor_key = bytes.fromhex(value)
        return self._monitor_key

    def job_for_token(self, token: str) -> Job | None:
        """The job of a live monitor token; None when unknown or expired."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(monitor_tokens).where(
                monitor_tokens.c.token_hash == hash_token(token))).first()
        if row is None or row.expires_at < time.time():
            return None
        try:
            return self.get(row.job_id)
        except NotFound:
            return None


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer gateway than this one."""


def known_revisions() -> set[str]:
    """The revisions of migrations/versions (files are named ``<revision>_<what>.py``)."""
    return {p.name.split("_", 1)[0] for p in (_MIGRATIONS / "versions").glob("*_*.py")}


def _check_known(revision: str | None, url: str) -> None:
    if revision is not None and revision not in known_revisions():
        from sqlalchemy.engine import make_url

        where = make_url(url).render_as_string(hide_password=True)
        raise SchemaTooNew(f"{where}: the job store's schema is at revision {revision}, newer than this "
                           f"gateway knows (up to {SCHEMA_HEAD}); upgrade the gateway on this node")


def _revision(conn: sa.Connection) -> str | None:
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


#: Journaled items are claimed by several nodes' workers in batches of
#: consecutive ids this wide.
BATCH_ITEMS = 256
_TRY_LOCK = sa.text("SELECT pg_try_advisory_lock(CAST(:key AS integer), CAST(:batch AS integer))")
_UNLOCK = sa.text("SELECT pg_advisory_unlock(CAST(:key AS integer), CAST(:batch AS integer))")


def _job_key(job_id: str) -> int:
    """A job's first advisory-lock key: a positive int4 (pg_locks shows it
    as the lock's classid)."""
    return zlib.crc32(job_id.encode()) & 0x7FFFFFFF


def _create_database_file(url: str) -> None:
    """Create the SQLite file of ``url`` empty and 0600 (an empty file is an
    empty database) before SQLite makes it with the umask's mode: SQLite
    gives its ``-wal`` and ``-shm`` files the database's mode, so none of
    the three is ever readable by other local users."""
    from sqlalchemy.engine import make_url

    from gateway.private import create_private

    database = make_url(url).database
    if database and not database.startswith("file:"):
        try:
            create_private(database)
        except FileNotFoundError:  # no folder: SQLite says so in its own words
            pass


def rollback_leftovers(job: Job) -> str | None:
    """What a job ending before commit leaves until its rollback succeeds."""
    if job.via_trash:
        return f"{job.src} waits in the trash ({job.stage}) to be put back; retried until the storage allows"
    if job.dst and job.stage and (job.stage != job.dst or not job.dst_existed):
        return (f"the partial destination {job.stage} is hidden and reserved until it is removed; "
                "retried until the storage allows")
    return None


def _refusal(job: Job, verb: str) -> str:
    """Why ``job`` cannot be cancelled or stopped, and what can be done instead."""
    if job.committed and not job.terminal:
        return f"job {job.id} is committed, finishing cleanup; it can no longer be {verb}"
    if job.terminal:
        return f"job {job.id} is {job.state}; it can no longer be {verb}"
    if verb == "cancelled":  # running, before commit
        return f"job {job.id} is running; only a queued job can be cancelled; stop it instead"
    return f"job {job.id} is queued; only a running job can be stopped; cancel it instead"


def _sqlite_begin(conn) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("immediate") else "BEGIN")


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" event issue BEGIN IMMEDIATE
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
