"""Who runs jobs. The operations core talks to a :class:`Dispatcher` only:
enqueue, wait, cancel, stop. The embedded one runs bounded worker threads per
named queue in this process, picking jobs from the store in order. With
several nodes on one PostgreSQL store the same dispatcher runs on each: an
enqueue wakes an idle worker of this node directly and one of every other
node through the bus (LISTEN/NOTIFY), so nobody polls; a slow safety poll
(``safety_poll_s``) only covers a wake-up the bus could not deliver, and
while the bus is down the poll is every ``poll_s``."""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from gateway.bus import Bus, Change, LocalBus
from gateway.errors import InvalidState
from gateway.jobs.model import Job
from gateway.jobs.runner import JobRunner
from gateway.jobs.store import JobStore, rollback_leftovers

__all__ = ["Dispatcher", "EmbeddedDispatcher"]

log = logging.getLogger("gateway.jobs")


class Dispatcher(Protocol):
    def start(self) -> None: ...
    def close(self) -> None: ...
    def queue_for(self, operation: str) -> str: ...
    @property
    def draining(self) -> bool: ...
    def drain(self, on: bool = True) -> None: ...
    def health(self) -> str | None: ...
    def enqueue(self, job: Job) -> None: ...
    def wait(self, job_id: str, timeout: float, *, committed: bool = False) -> Job: ...
    def cancel(self, job_id: str) -> Job: ...
    def stop(self, job_id: str) -> Job: ...
    def retry(self, job_id: str) -> Job: ...
    def abandon(self, job_id: str) -> Job: ...


class EmbeddedDispatcher:
    """Worker threads per queue + a watchdog thread, all in this process.

    On start, jobs this node left running (a crash or a restart) go back to
    the queue and resume from their journal. The watchdog re-queues jobs
    whose heartbeat stalls (``stall_after_s``) and flags ``stalled`` those
    that made no progress for ``stalled_after_s`` (an admin may then retry
    or abandon them).
    """

    def __init__(self, store: JobStore, runner: JobRunner, queues: dict[str, int], node: str, *,
                 stall_after_s: float = 30.0, max_attempts: int = 5, retry_backoff_s: float = 0.2,
                 keep_finished_s: float = 86400.0, poll_s: float = 1.0, stalled_after_s: float = 600.0,
                 safety_poll_s: float = 10.0, bus: Bus | None = None) -> None:
        self.store = store
        self.runner = runner
        self.queues = queues
        self.node = node
        self.stall_after_s = stall_after_s
        self.stalled_after_s = stalled_after_s
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
        self.keep_finished_s = keep_finished_s
        self.poll_s = poll_s
        self.safety_poll_s = safety_poll_s
        self.bus: Bus = bus or LocalBus()
        self.bus.listeners.on_change.append(self._woken)
        self.bus.listeners.on_reset.append(self._wake_all)
        # One condition per queue: an enqueue wakes one of that queue's idle
        # workers (waking all twelve made them race for SQLite's write lock).
        self._wake = {name: threading.Condition() for name in queues}
        self._enqueued = dict.fromkeys(queues, 0)  # bumped under _wake so a worker never sleeps through an enqueue
        # One idle worker per queue polls the store (for what no enqueue here
        # announced: another node's jobs); the others sleep until woken.
        self._polling = dict.fromkeys(queues, False)
        self._shared = not store.sqlite
        self._closing = threading.Event()
        #: Set by :meth:`drain`: claim nothing more, hand running jobs back.
        self._draining = threading.Event()
        self._threads: list[threading.Thread] = []
        self.busy = 0
        #: Ids of the jobs this node's workers are running now (an attempt
        #: taken from its worker may still be inside a storage call).
        self.running: set[str] = set()
        runner.closing = lambda: self._closing.is_set() or self._draining.is_set()
        runner.want_help = self._want_help

    def queue_for(self, operation: str) -> str:
        return operation if operation in self.queues else next(iter(self.queues))

    def start(self) -> None:
        resumed = self.store.requeue_stalled(time.time() + 1e9, max_attempts=10**9, backoff_s=0.0, node=self.node)
        for job, _ in resumed:
            log.warning("job %s was interrupted (restart); resuming from its journal", job.id)
        for name, workers in self.queues.items():
            for i in range(workers):
                t = threading.Thread(target=self._worker, args=(name,), name=f"job-{name}-{i}", daemon=True)
                t.start()
                self._threads.append(t)
        t = threading.Thread(target=self._watchdog, name="job-watchdog", daemon=True)
        t.start()
        self._threads.append(t)

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking jobs; running ones pause at their next step and go
        back to the queue, to resume from their journal on the next start
        or at once on another node."""
        self._closing.set()
        for name in self.queues:
            self._notify(name, everyone=True)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    def drain(self, on: bool = True) -> None:
        """Stop claiming jobs (``on``) or claim again. While draining, the
        jobs running here pause at their next step and go back to the
        queue, where any node resumes them from their journal."""
        if on == self._draining.is_set():
            return
        if on:
            self._draining.set()
            log.warning("node %s draining: claiming no new jobs, handing running ones over", self.node)
        else:
            self._draining.clear()
            log.warning("node %s claims jobs again", self.node)
            for name in self.queues:
                self._notify(name, everyone=True)

    def health(self) -> str | None:
        """None while every worker and the watchdog run, else why not."""
        if self._closing.is_set():
            return "stopping"
        if not self._threads:
            return "workers not started"
        dead = [t.name for t in self._threads if not t.is_alive()]
        return f"threads ended: {', '.join(dead)}" if dead else None

    def enqueue(self, job: Job) -> None:
        self._notify(job.queue)
        self.bus.publish(Change(wake={job.queue}))

    def _woken(self, change: Change) -> None:
        """Another node queued work (the bus's thread)."""
        for queue in change.wake:
            self._notify(queue)

    def _wake_all(self) -> None:
        """The bus is back after a gap: a wake-up may have been missed."""
        for queue in self.queues:
            self._notify(queue)

    def wait(self, job_id: str, timeout: float, *, committed: bool = False) -> Job:
        """The job once terminal (or, with ``committed``, once committed), or
        as it is when ``timeout`` runs out."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.store.generation
            job = self.store.get(job_id)
            left = deadline - time.monotonic()
            if job.terminal or (committed and job.committed) or left <= 0:
                return job
            with self.store.changed:
                if self.store.generation == seen:  # a change after the read must not be slept through
                    self.store.changed.wait(min(left, 0.25))

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job; one that already wrote (it waits for a retry)
        has what it wrote removed before this returns, or, when its storage
        refuses, by the watchdog later (hidden until then). Raises
        NotFound, InvalidState."""
        job = self.store.cancel(job_id)
        if job.phase == "rollback":
            if not self.runner.rollback(job):
                self.store.set_leftovers(job_id, rollback_leftovers(job))
            job = self.store.get(job_id)
        return job

    def stop(self, job_id: str, timeout: float = 5.0) -> Job:
        """Ask a running job to stop; returns it once stopped (what it wrote
        removed), or as it is after ``timeout``. Raises NotFound, InvalidState."""
        self.store.request_stop(job_id)
        return self.wait(job_id, timeout)

    def retry(self, job_id: str) -> Job:
        """Run a queued or running job again now, with a full set of
        attempts (an admin's answer to a stalled job). Raises NotFound,
        InvalidState (ended)."""
        job = self.store.retry(job_id)
        self._notify(job.queue)
        return job

    def abandon(self, job_id: str, timeout: float = 5.0) -> Job:
        """End an active job for good (an admin's answer to a stalled job):
        before commit it is rolled back (stopped, or cancelled when it does
        not answer within ``timeout``) and ends having changed nothing;
        after commit it ends ``failed`` with its cleanup unfinished, what it
        left described in ``leftovers``. Its paths are free once this
        returns (or, when the storage refuses the rollback, once the
        watchdog's rollback succeeds). Raises NotFound, InvalidState (ended,
        or committed with its new destination not in place yet: only a
        retry can finish that)."""
        for _ in range(5):
            job = self.store.get(job_id)
            if job.terminal:
                raise InvalidState(f"job {job_id} is {job.state}; there is nothing to abandon")
            if job.committed:
                if job.staged:
                    raise InvalidState(f"job {job_id} is committed and its new destination is not in place yet; "
                                       "retry it (abandoning would lose it)")
                if self.store.take(job, "failed", phase="done", error_type="BackendError",
                                   error="abandoned by an admin after commit; its cleanup did not finish",
                                   leftovers=self.runner.cleanup_leftovers(job)):
                    return job
                continue
            if job.state == "running" and not job.stop_requested:
                try:
                    self.store.request_stop(job_id)
                except InvalidState:
                    continue  # it committed or ended meanwhile
                job = self.wait(job_id, timeout, committed=True)
                if job.terminal:
                    return job
                if job.committed:
                    continue
            # queued, or a running attempt that does not answer: taken from its worker
            phase = "rollback" if job.attempts else "prepare"
            if self.store.take(job, "cancelled", phase=phase, error_type="InvalidState",
                               error="abandoned by an admin; nothing was changed"):
                # A worker still inside a storage call may write once more:
                # the watchdog rolls back after it let go.
                if phase == "rollback" and (job_id in self.running or not self.runner.rollback(job)):
                    self.store.set_leftovers(job_id, rollback_leftovers(job))
                return self.store.get(job_id)
        raise InvalidState(f"job {job_id} keeps changing; try again")

    def _worker(self, queue: str) -> None:
        wake = self._wake[queue]
        while not self._closing.is_set():
            with wake:
                seen = self._enqueued[queue]
                if self._draining.is_set():
                    wake.wait(self.poll_s)
                    continue
            try:
                job = self.store.claim([queue], self.node)
            except Exception as exc:  # noqa: BLE001 - a store hiccup must not kill the worker
                if self.store.lost_connection(exc):
                    log.warning("claiming a job from queue %s failed: the job store is unreachable", queue)
                    self._closing.wait(1.0)
                else:
                    log.exception("claiming a job from queue %s failed", queue)
                job = None
            if job is None:
                if self._help(queue):
                    continue
                with wake:
                    if self._enqueued[queue] == seen:
                        self._idle(queue)
                continue
            if self._shared:  # other nodes may have queued more: the next idle worker looks too
                self._notify(queue)
            self.busy += 1
            self.running.add(job.id)
            try:
                self.runner.run(job)
            except Exception:  # noqa: BLE001
                log.exception("job %s: runner crashed", job.id)
            finally:
                self.running.discard(job.id)
                self.busy -= 1
            if job.state == "running" and job.phase != "done" and self.runner.closing():
                self._hand_back(job)
            if job.state == "queued":  # to be retried after a backoff: wake a worker then
                timer = threading.Timer(max(0.0, job.not_before - time.time()), self._notify, args=(queue,))
                timer.daemon = True
                timer.start()

    def _hand_back(self, job: Job) -> None:
        """A job this node paused (draining or closing) goes back to the
        queue at once, so any node resumes it from its journal instead of
        waiting ``stall_after_s`` for its heartbeat to go stale."""
        try:
            if self.store.release(job):
                log.info("job %s handed back to the queue (node %s %s)", job.id, self.node,
                         "draining" if self._draining.is_set() else "stopping")
        except Exception:  # noqa: BLE001 - the watchdog of another node takes it over later
            log.exception("handing job %s back failed", job.id)

    def _help(self, queue: str) -> bool:
        """Nothing queued: copy a batch of a running job of ``queue`` (any
        node's) instead, where the store shares jobs. Whether it did."""
        if not self.store.shares_jobs or self._closing.is_set():
            return False
        try:
            job = self.store.helpable([queue])
            if job is None:
                return False
            self.busy += 1
            try:
                return self.runner.help(job)
            finally:
                self.busy -= 1
        except Exception as exc:  # noqa: BLE001 - a store hiccup must not kill the worker
            if not self.store.lost_connection(exc):
                log.exception("helping with a job of queue %s failed", queue)
            return False

    def _want_help(self, queue: str) -> None:
        """A running job has batches to hand out: wake an idle worker here
        and on every other node."""
        self._notify(queue)
        self.bus.publish(Change(wake={queue}))

    def _idle(self, queue: str) -> None:
        """Sleep until woken (under ``_wake[queue]``); the first idle worker
        of the queue also wakes every ``poll_s`` to look in the store, or,
        on a shared store whose bus delivers other nodes' wake-ups, every
        ``safety_poll_s``."""
        poller = not self._polling[queue]
        if poller:
            self._polling[queue] = True
        timeout = self.safety_poll_s if self._shared and self.bus.trusted else self.poll_s
        try:
            self._wake[queue].wait(timeout if poller else None)
        finally:
            if poller:
                self._polling[queue] = False

    def _notify(self, queue: str, everyone: bool = False) -> None:
        wake = self._wake.get(queue)
        if wake is None:  # a queue this node does not serve
            return
        with wake:
            self._enqueued[queue] += 1
            if everyone:
                wake.notify_all()
            else:
                wake.notify()

    def _watchdog(self) -> None:
        while not self._closing.wait(max(0.5, min(self.stall_after_s, self.stalled_after_s) / 4)):
            try:
                now = time.time()
                requeued = self.store.requeue_stalled(now - self.stall_after_s, self.max_attempts,
                                                      self.retry_backoff_s)
                for job, state in requeued:
                    log.error("job %s stuck (no heartbeat for %.0fs): %s", job.id, self.stall_after_s,
                              "retrying" if state == "queued" else "failed")
                for job in self.store.mark_stalled(now - self.stalled_after_s):
                    log.error("job %s stalled: no progress for %.0fs (%s %s); an admin may retry or abandon it",
                              job.id, self.stalled_after_s, job.operation, job.src)
                self.runner.retry_rollbacks(skip=self.running)
                self.store.purge_finished(now - self.keep_finished_s)
                for job, state in requeued:
                    if state == "queued":
                        self._notify(job.queue)
                        self.bus.publish(Change(wake={job.queue}))
            except Exception:  # noqa: BLE001
                log.exception("watchdog pass failed")
