"""Runs one claimed job through prepare → commit → cleanup as idempotent,
journaled steps, so a restart continues where the last attempt stopped."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from typing import Callable

from gateway import errors as E
from gateway.fileids import stamp
from gateway.jobs.model import Job
from gateway.jobs.store import MAX_BACKOFF_S, JobStore, rollback_leftovers
from gateway.namespace import Namespace, join
from gateway.transfer import copy_file

__all__ = ["JobRunner", "RunnerSettings"]

log = logging.getLogger("gateway.jobs")
_BATCH = 256
#: How long a committed job's cleanup waits for the reads this node began
#: before the commit (a client's listing, a remote download) to end.
READS_GRACE_S = 10.0
#: Up to how many leftovers of a failed cleanup are looked at one by one
#: (more are reported as "at most").
_LEFTOVERS_CHECKED = 1000


class _Stopped(Exception):
    """A user asked the job to stop before commit."""


class _Lost(Exception):
    """The attempt is no longer ours (stalled and re-queued, or shutting down)."""


class _Abandoned(Exception):
    """A parallel step gave up because its batch is being abandoned."""


@dataclass
class RunnerSettings:
    heartbeat_s: float = 1.0
    step_retries: int = 3
    retry_backoff_s: float = 0.2
    max_attempts: int = 5


class JobRunner:
    def __init__(self, store: JobStore, namespace: Namespace, settings: RunnerSettings,
                 closing: Callable[[], bool] = lambda: False) -> None:
        self.store = store
        self.namespace = namespace
        self.settings = settings
        self.closing = closing
        #: Called with a queue when a job of it has batches idle workers may
        #: help with (the dispatcher wakes them, on every node).
        self.want_help: Callable[[str], None] | None = None
        #: Which of some global paths have a file id (sync clients saw
        #: them: gateway.fileids.FileIds.having_ids); a move records what
        #: the storage reports of those files' copies, so they keep their
        #: ETags at its commit. None: nothing is recorded.
        self.having_ids: Callable[[list[str]], set[str]] | None = None

    def help(self, job: Job) -> bool:
        """Copy one batch of the journaled items of ``job``, a running copy
        or move of another worker (any node), as that attempt (fenced by its
        attempt number: a batch of a superseded attempt is not journaled).
        False when no batch could be claimed or the batch failed (its items
        stay for the job's own worker, which retries or fails the job)."""
        r = _Run(self, job, helper=True)
        src_b, dst_b = r.src_mount.backend, r.dst_mount.backend
        with self.store.claim_batch(job) as items:
            if not items:
                return False
            try:
                r.copy_batch(items, src_b, dst_b, _width(src_b, dst_b))
            except (_Lost, _Abandoned):
                return False
            except Exception as exc:  # noqa: BLE001 - the job's own worker meets it again and decides
                log.warning("job %s: helping with a batch failed: %s", job.id, exc)
                return False
        return True

    def _wait_for_helpers(self, job: Job, timeout: float = 60.0) -> None:
        """Before removing what a job wrote: until no helper holds a batch
        (they stop at their next step once the job is stopping or ended)."""
        if not self.store.shares_jobs:
            return
        deadline = time.monotonic() + timeout
        while self.store.batches_held(job) and time.monotonic() < deadline:
            time.sleep(0.05)

    def run(self, job: Job) -> None:
        """Drive ``job`` (already claimed, state running) to a terminal state,
        or leave it running for the next attempt when the process closes."""
        r = _Run(self, job)
        try:
            if job.phase == "prepare":
                r.prepare()
                if not self.store.commit(job):
                    ours, stop = self.store.refresh_control(job)
                    if ours and stop:
                        raise _Stopped()
                    raise _Lost()
                log.info("job %s committed (%s %s -> %s)", job.id, job.operation, job.src, job.dst)
                if not self.store.wait_for_reads(self.store.generation, READS_GRACE_S):
                    log.warning("job %s: cleanup starts while a read begun before its commit is still open "
                                "(after %.0f s); that read may miss what the cleanup removes", job.id, READS_GRACE_S)
            r.cleanup()
            self.store.finish(job, "completed", phase="done", resource_id=job.dst or job.src)
            log.info("job %s completed: %d items, %d bytes", job.id, job.items_done, job.bytes_done)
        except _Lost:
            log.info("job %s left for a later attempt", job.id)
        except _Stopped:
            self._wait_for_helpers(job)
            phase = None if r.rollback() else "rollback"
            self.store.finish(job, "stopped", error="stopped on request; nothing was changed",
                              error_type="InvalidState", phase=phase,
                              leftovers=rollback_leftovers(job) if phase else None)
            log.info("job %s stopped; destination removed", job.id)
        except Exception as exc:  # noqa: BLE001 - any failure must end in a journaled state
            if self.store.lost_connection(exc):
                self._outlast(job, exc)
                return
            err = exc if isinstance(exc, E.GatewayError) else E.BackendError(f"{type(exc).__name__}: {exc}")
            try:  # the steps that succeeded are not redone, and the progress shows them
                r.flush()
            except Exception:  # noqa: BLE001 - taken from this attempt, or the store failed too
                log.info("job %s: progress of the failed attempt not journaled", job.id)
            self._fail_or_retry(job, r, err)

    def _outlast(self, job: Job, exc: Exception) -> None:
        """The job store went away mid-job (a PostgreSQL restart): wait for
        it with backoff, then go on with the same attempt from its journal,
        unless another node took the job over meanwhile (its heartbeat
        stalled) or this process is closing (the next start resumes it)."""
        log.warning("job %s: the job store is unreachable (%s); waiting for it", job.id,
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        delay = 0.1
        while not self.closing():
            time.sleep(delay)
            delay = min(5.0, delay * 2)
            try:
                fresh = self.store.get(job.id)
            except Exception as again:  # noqa: BLE001
                if self.store.lost_connection(again):
                    continue
                raise
            if fresh.attempts != job.attempts or fresh.state != "running":
                log.info("job %s was taken over while the store was away", job.id)
                return
            log.info("job %s: the job store is back; continuing from the journal", job.id)
            self.run(fresh)
            return

    def _fail_or_retry(self, job: Job, r: "_Run", err: E.GatewayError) -> None:
        # An attempt that was superseded (this node froze or lost the store
        # while another node took the job over) must neither retry nor roll
        # back: the new attempt is writing the same destination.
        try:
            ours, _ = self.store.refresh_control(job)
        except Exception:  # noqa: BLE001 - the store is away: leave the job to the watchdogs
            log.warning("job %s attempt %d failed (%s) and the store cannot be asked whether it is still "
                        "ours; left for a later attempt", job.id, job.attempts, err)
            return
        if not ours:
            log.info("job %s left for a later attempt (attempt %d superseded; it failed with: %s)",
                     job.id, job.attempts, err)
            return
        # A committed job whose staged destination is not in place yet can
        # only be finished: while its storage fails it stays queued, and
        # shown as stuck once it used its attempts.
        finish_only = job.phase == "cleanup" and job.staged
        used = job.attempts_used
        if err.retryable and (used < self.settings.max_attempts or finish_only):
            delay = min(MAX_BACKOFF_S, self.settings.retry_backoff_s * (2 ** used))
            if self.store.update(job, state="queued", not_before=time.time() + delay, error=str(err),
                                 error_type=type(err).__name__, stuck=used >= self.settings.max_attempts):
                self.store._bump()
            log.warning("job %s attempt %d failed (%s); retrying in %.1fs", job.id, job.attempts, err, delay)
            return
        phase, leftovers = None, None
        if job.phase == "prepare" and self.store.shares_jobs:
            try:  # helpers stop at their next step
                self.store.request_stop(job.id)
            except E.GatewayError:
                pass
            self._wait_for_helpers(job)
        if job.phase == "prepare" and not r.rollback():
            phase, leftovers = "rollback", rollback_leftovers(job)
        elif job.phase == "cleanup" and not job.staged:
            # Committed, but what cleanup could not remove is still there: it
            # shows again and its paths take writes (a failed job's overlay
            # would hide them, and keep them Busy, for good). A staged
            # destination not yet in place keeps the overlay that points at it.
            phase, leftovers = "done", self.cleanup_leftovers(job)
        self.store.finish(job, "failed", error=str(err), error_type=type(err).__name__, phase=phase,
                          leftovers=leftovers)
        log.error("job %s failed: %s", job.id, err)

    def cleanup_leftovers(self, job: Job) -> str | None:
        """What a committed job's unfinished cleanup leaves where it was
        (to be removed by hand): the sources a move or delete did not
        remove. None when nothing is left."""
        if job.operation not in ("move", "delete"):
            return None
        state = "copied" if job.operation == "move" else "pending"
        n, size = self.store.count_items(job.id, state)
        if job.via_trash:
            if not n and not job.enumerated:
                return f"the deleted folder stays in the trash ({job.stage}); the sweep removes it"
            return (f"{n} item(s), {size} bytes, of the deleted folder stay in the trash ({job.stage}); "
                    "the sweep removes them") if n else None
        if not n:
            return None
        exact = False
        if n <= _LEFTOVERS_CHECKED:  # the journal may name what a killed attempt removed without noting it
            n, size, exact = self._still_there(job, state, n)
            if not n:
                return None
        return (f"{'' if exact else 'at most '}{n} item(s), {size} bytes, of the source were not removed "
                f"and show again under {job.src}: remove them by hand")

    def _still_there(self, job: Job, state: str, n: int) -> tuple[int, int, bool]:
        """How many of the ``n`` items in ``state`` are still on the
        source's storage, their bytes, and whether each could be looked at
        (one that could not counts as there)."""
        mount, root = self.namespace.resolve(job.src)
        left = size = 0
        exact = True
        for _, rel, _, item_size in self.store.items(job.id, state, limit=n):
            try:
                there = mount.backend.exists(join(root, rel))
            except E.GatewayError:
                there, exact = True, False
            if there:
                left, size = left + 1, size + item_size
        return left, size, exact

    def retry_rollbacks(self, skip: set[str] | frozenset[str] = frozenset()) -> None:
        """Finish the rollbacks that could not reach their storage (or
        waited for a worker, ``skip``: ids still being run here): until one
        succeeds, the job's overlay keeps its partial destination hidden."""
        for job in self.store.overlays():
            if job.phase == "rollback" and job.id not in skip:
                self.rollback(job)

    def rollback(self, job: Job) -> bool:
        """Remove what ``job`` (ended before commit, phase ``rollback``)
        wrote, and release its paths; False when the storage refused."""
        self._wait_for_helpers(job)
        try:
            done = _Run(self, job).rollback()
        except E.GatewayError:
            done = False
        if done and self.store.end_rollback(job):
            log.info("job %s: what it wrote is removed", job.id)
        return done


class _Run:
    """The state of one attempt at one job."""

    def __init__(self, runner: JobRunner, job: Job, helper: bool = False) -> None:
        self.runner = runner
        self.store = runner.store
        self.job = job
        #: Helping another worker's attempt with a batch of its items (see
        #: JobRunner.help): progress is added to the job's, control stays
        #: with the attempt's own worker.
        self.helper = helper
        self._wanted_at = 0.0
        self.src_mount, self.src_root = runner.namespace.resolve(job.src)
        if job.dst:
            self.dst_mount, self.dst_root = runner.namespace.resolve(job.stage or job.dst)
        self._last_flush = time.monotonic()
        self._pending_ids: list[int] = []
        self._pending_state = ""
        self._pending_each = 1  # items each pending id counts (0: a moved source's removal)
        self._pending_stamps: dict[int, str] = {}  # item id → its copy's stamp (see _copy_item)
        self._cursor = 0  # last journaled item handed to transfer in this attempt
        #: Names the temporaries of this job's copies on this node: the same
        #: after a restart (a resumed copy reuses its temporary), another on
        #: another node, so an attempt that was taken over and still writes
        #: (a frozen node thawed) never writes or removes the new attempt's.
        #: Starts with the job id, which the sweep reads as the owner.
        self.temp_key = f"{job.id}-{hashlib.sha256((job.node or '').encode()).hexdigest()[:6]}"
        self._bytes_lock = threading.Lock()
        #: Item id → bytes copied so far of a file in flight (its step's
        #: latest try). The store credits an item's bytes once, whoever
        #: copies it how often (JobStore.mark_items), so progress neither
        #: goes back nor past the total.
        self._partial: dict[int, int] = {}

    # -- control -------------------------------------------------------------

    def check(self) -> None:
        """Between steps: raise _Stopped/_Lost when asked; flush progress."""
        if self.runner.closing():
            self.flush()
            raise _Lost()
        if time.monotonic() - self._last_flush >= self.runner.settings.heartbeat_s:
            self.flush()
            ours, stop = self.store.refresh_control(self.job)
            if not ours:
                raise _Lost()
            if stop and self.job.phase == "prepare":
                raise _Lost() if self.helper else _Stopped()

    def flush(self) -> None:
        """Journal the steps done since the last flush and the bytes of the
        files in flight. Raises _Lost when the attempt is no longer ours
        (nothing of it is journaled then)."""
        j = self.job
        with self._bytes_lock:  # parallel steps report bytes meanwhile
            partial = {i: n for i, n in self._partial.items() if n}
        done = self.store.mark_items(j, self._pending_ids, self._pending_state or "pending", self._pending_each,
                                     partial=partial, helper=self.helper, stamps=self._pending_stamps)
        if done is None:
            raise _Lost()
        j.items_done, j.bytes_done = done  # with what helpers on other nodes journaled
        self._pending_ids = []
        self._pending_stamps = {}
        self._last_flush = time.monotonic()

    def done(self, item_id: int, state: str, items: int = 1, copy_stamp: str | None = None) -> None:
        if self._pending_ids and (self._pending_state, self._pending_each) != (state, items):
            self.flush()
        self._pending_state, self._pending_each = state, items
        self._pending_ids.append(item_id)
        with self._bytes_lock:  # its bytes are credited with its state now
            self._partial.pop(item_id, None)
        if copy_stamp is not None:
            self._pending_stamps[item_id] = copy_stamp
        if len(self._pending_ids) >= _BATCH:
            self.flush()

    def retry(self, step: Callable[[], object], what: str, check: Callable[[], None] | None = None):
        """Run one step, retrying retryable failures with backoff; ``check``
        (default :meth:`check`) runs before each retry."""
        s = self.runner.settings
        for attempt in range(s.step_retries + 1):
            try:
                return step()
            except E.GatewayError as exc:
                if not exc.retryable or attempt == s.step_retries:
                    raise
                log.warning("job %s: %s failed (%s); retry %d", self.job.id, what, exc, attempt + 1)
                time.sleep(s.retry_backoff_s * (2 ** attempt))
                (check or self.check)()
        return None

    def each(self, items: list, run: Callable[[int, str, bool, int, Callable[[], None]], str | None], state: str,
             items_each: int, width: int, folders_wait: bool) -> None:
        """Run ``run(item_id, rel, is_dir, size, check)`` for each journaled item and
        mark it ``state`` once it succeeded (with what ``run`` returned as
        its ``dst_stamp``, unless None). Folders run here, in journal
        order; files run ``width`` at a time on a small pool (remote stores
        hide their latency that way), and with ``folders_wait`` a folder
        waits for every running step first (it is removed after its content).
        Journal, progress and control stay on this thread; a failure, stop or
        loss abandons the batch and leaves unfinished items pending for the
        next attempt."""
        if width <= 1:
            for item_id, rel, is_dir, size in items:
                self.check()
                self.done(item_id, state, items_each, run(item_id, rel, is_dir, size, self.check))
            return
        abandon = threading.Event()

        def abandoned() -> None:
            if abandon.is_set():
                raise _Abandoned()

        running: dict[Future, int] = {}
        failures: list[BaseException] = []

        def settle(everything: bool) -> None:
            while running and not failures:
                finished, _ = wait(running, timeout=self.runner.settings.heartbeat_s, return_when=FIRST_COMPLETED)
                for fut in finished:
                    item_id = running.pop(fut)
                    exc = fut.exception()
                    if exc is None:
                        self.done(item_id, state, items_each, fut.result())
                    else:
                        failures.append(exc)
                self.check()
                if finished and not everything:
                    return

        with ThreadPoolExecutor(width, thread_name_prefix=f"job-{self.job.id[:6]}") as pool:
            try:
                for item_id, rel, is_dir, size in items:
                    self.check()
                    if is_dir:
                        if folders_wait:
                            settle(True)
                        if failures:
                            break
                        run(item_id, rel, True, size, self.check)
                        self.done(item_id, state, items_each)
                        continue
                    while len(running) >= width and not failures:
                        settle(False)
                    if failures:
                        break
                    running[pool.submit(run, item_id, rel, False, size, abandoned)] = item_id
                settle(True)
            finally:
                if failures or running:
                    abandon.set()
        if failures:
            raise failures[0]

    # -- prepare -------------------------------------------------------------

    def prepare(self) -> None:
        """Enumerate the source (streamed into the journal) and, for copy and
        move, copy each journaled item to the stage; totals grow as the walk
        goes on, memory stays flat. A delete via the trash only renames its
        folder away here; the walk happens in the trash after commit."""
        if self.job.via_trash:
            self._to_trash()
            return
        self._enumerate()
        self.transfer_pending(finish=True)
        self.flush()

    def _enumerate(self) -> None:
        """Journal the source tree once (a resumed attempt skips what is
        journaled already)."""
        j, b = self.job, self.src_mount.backend
        if not j.enumerated:
            root = self.retry(lambda: b.info(self.src_root), "stat source")
            # A move journals what the storage reports of each file (kept
            # ETags follow it at commit, see gateway.fileids): no extra call.
            stamps = j.operation == "move" and self.runner.having_ids is not None
            self.store.add_items(j, [("", root.is_dir, root.size, stamp(root) if stamps and not root.is_dir else None)])
            self.transfer_pending()
            if root.is_dir:
                batch: list[tuple[str, bool, int, str | None]] = []
                for rel, e in b.walk(self.src_root):
                    batch.append((rel, e.is_dir, e.size, stamp(e) if stamps and not e.is_dir else None))
                    if len(batch) >= _BATCH:
                        self.store.add_items(j, batch)
                        batch = []
                        self.transfer_pending()
                self.store.add_items(j, batch)
            self.flush()
            self.store.update(j, enumerated=True)

    def _to_trash(self) -> None:
        """Rename the folder to its trash name (one atomic call; skipped when
        an earlier attempt did it). Where the storage refuses (a folder on
        another disk linked into a local tree cannot be renamed across),
        the job becomes a delete in place."""
        j, b, trash = self.job, self.src_mount.backend, self._trash_root()
        try:
            if not b.exists(trash):
                self.retry(lambda: b.rename(self.src_root, trash), "move the folder to the trash")
        except E.GatewayError as exc:
            if exc.retryable:
                raise
            log.info("job %s: %s cannot go to the trash (%s); deleting it in place", j.id, j.src, exc)
            self.store.update(j, stage=None)
            self.store._bump()
            self.prepare()

    def _trash_root(self) -> str:
        assert self.job.stage is not None  # via_trash
        return self.runner.namespace.resolve(self.job.stage)[1]

    def transfer_pending(self, finish: bool = False) -> None:
        """Copy what is journaled and not copied yet. On a store that
        shares jobs, idle workers of any node (woken for it) copy batches
        while the source is walked; with ``finish`` (the walk is done) this
        worker claims batches too, until no item is left, waiting for those
        helpers hold (a helper that dies releases its batch, which is then
        claimed here)."""
        j = self.job
        if j.operation == "delete":
            self.check()
            return
        src_b, dst_b = self.src_mount.backend, self.dst_mount.backend
        width = _width(src_b, dst_b)
        if self.store.shares_jobs:
            if finish:
                self._transfer_batches(src_b, dst_b, width)
            else:  # still walking the source: helpers copy meanwhile
                self._ask_for_help()
                self.check()
            return
        while True:
            items = self.store.items(j.id, "pending", after_id=self._cursor, limit=_BATCH)
            if not items:
                return
            self._cursor = items[-1][0]
            self.each(items, partial(self._copy_item, src_b, dst_b, self._with_ids(items)), "copied", 1, width,
                      folders_wait=False)

    def _transfer_batches(self, src_b, dst_b, width: int) -> None:
        j = self.job
        while True:
            self._ask_for_help()
            with self.store.claim_batch(j) as items:
                if items:
                    self.copy_batch(items, src_b, dst_b, width)
                    continue
            if not self.store.count_items(j.id, "pending")[0]:
                return
            self.check()  # helpers hold the rest
            time.sleep(min(0.2, self.runner.settings.heartbeat_s))

    def copy_batch(self, items: list, src_b, dst_b, width: int) -> None:
        """Copy a claimed batch and journal it before its claim is let go."""
        self.each(items, partial(self._copy_item, src_b, dst_b, self._with_ids(items)), "copied", 1, width,
                  folders_wait=False)
        self.flush()

    def _ask_for_help(self) -> None:
        """Wake idle workers (of every node) to help with this job's
        batches; at most once a second."""
        now = time.monotonic()
        if self.runner.want_help is not None and now - self._wanted_at >= 1.0:
            self._wanted_at = now
            self.runner.want_help(self.job.queue)

    def _with_ids(self, items: list) -> set[str]:
        """The rels of the files of a move's batch that have a file id (one
        query; none on a store whose table is empty)."""
        j = self.job
        if j.operation != "move" or self.runner.having_ids is None:
            return set()
        files = {join(j.src, rel): rel for _, rel, is_dir, _ in items if not is_dir}
        return {files[p] for p in self.runner.having_ids(list(files))} if files else set()

    def _copy_item(self, src_b, dst_b, with_id: set[str], item_id: int, rel: str, is_dir: bool, size: int,
                   check: Callable[[], None]) -> str | None:
        """Copy one item; for a file in ``with_id``, return what the storage
        reports of the copy (one stat: the copy calls return no entry), for
        the item's ``dst_stamp``; None when it cannot be told (the file then
        gets the storage's ETag)."""
        j = self.job
        sp, dp = join(self.src_root, rel), join(self.dst_root, rel)
        if is_dir:
            self.retry(partial(dst_b.make_folder, dp, partial(src_b.is_empty, sp)), f"mkdir {rel}", check)
            return None

        def step() -> None:
            with self._bytes_lock:  # a retry copies from the start
                self._partial[item_id] = 0

            def on_bytes(n: int) -> None:
                with self._bytes_lock:
                    if item_id in self._partial:
                        self._partial[item_id] += n

            copy_file(src_b, sp, dst_b, dp, on_bytes=on_bytes, check=check, expected_size=size,
                      temp_key=self.temp_key)

        self.retry(step, f"copy {rel or j.src}", check)
        if rel not in with_id:
            return None
        try:
            return stamp(dst_b.info(dp))
        except E.GatewayError as exc:
            log.info("job %s: the copy of %s not stat'ed (%s); it gets a new ETag", j.id, rel or j.src, exc)
            return None

    # -- cleanup -------------------------------------------------------------

    def cleanup(self) -> None:
        """After commit: remove moved/deleted sources deepest first, then swap a
        staged destination into place. Every step is idempotent."""
        j = self.job
        if j.via_trash:
            self.src_root = self._trash_root()
            self._enumerate()
        if j.operation in ("move", "delete"):
            state = "copied" if j.operation == "move" else "pending"
            b = self.src_mount.backend
            batched = b.capabilities.batch_remove > 1
            while True:
                # One storage call per journal batch where the storage deletes many at once.
                limit = max(_BATCH, b.capabilities.batch_remove) if batched else _BATCH
                items = self.store.items(j.id, state, limit=limit, descending=True)
                if not items:
                    break
                counts = 1 if j.operation == "delete" else 0
                if batched:
                    self._remove_batched(b, items, counts)
                else:
                    self.each(items, partial(self._remove_item, b), "removed", counts, b.capabilities.fan_out,
                              folders_wait=True)
                self.flush()
            if j.via_trash:  # what listings do not show (links out of the mount, reserved names) goes too
                self.retry(lambda: b.rm_tree(self.src_root), "empty the trash")
            # The tree is gone on its own: the folder it was in stays (S3 keeps it as a marker).
            src_mount, src_path = self.runner.namespace.resolve(j.src)
            self.retry(partial(src_mount.backend.emptied, src_path), "keep the source's folder")
        if j.staged:
            self._swap_stage()
        if j.dst and j.operation in ("copy", "move"):
            # The destination shows now: its parent may drop an empty-folder marker.
            dst_mount, dst_path = self.runner.namespace.resolve(j.dst)
            self.retry(partial(dst_mount.backend.filled, dst_path), "settle the destination's parent")
        self.flush()

    def _remove_batched(self, b, items: list, counts: int) -> None:
        """Remove a journal batch with one call: its files, then its folders
        in journal order (deepest first: a folder's content sorts before
        it, so it is gone by then)."""
        files = [join(self.src_root, rel) for _, rel, is_dir, _ in items if not is_dir]
        folders = [join(self.src_root, rel) for _, rel, is_dir, _ in items if is_dir]
        self.check()
        self.retry(partial(b.remove_many, files, folders), f"remove {len(files)} files, {len(folders)} folders",
                   self.check)
        for item_id, *_ in items:
            self.done(item_id, "removed", counts)

    def _remove_item(self, b, _item_id: int, rel: str, is_dir: bool, _size: int, check: Callable[[], None]) -> None:
        p = join(self.src_root, rel)
        if is_dir:
            self.retry(partial(_rmdir_quiet, b, p), f"remove folder {rel}", check)
        else:
            self.retry(partial(b.remove, p, missing_ok=True), f"remove {rel}", check)

    def _swap_stage(self) -> None:
        j = self.job
        assert j.dst is not None
        dst_mount, dst_path = self.runner.namespace.resolve(j.dst)
        b = dst_mount.backend
        if not j.old_dst_purged:
            self.retry(lambda: b.rm_tree(dst_path), "remove the replaced destination")
            self.store.update(j, old_dst_purged=True)
            self.store._bump()
        if b.exists(self.dst_root):
            if b.capabilities.atomic_rename:
                self.retry(lambda: b.rename(self.dst_root, dst_path), "rename staged destination")
            else:
                for rel, e in list(b.walk(self.dst_root)) if b.info(self.dst_root).is_dir else [("", None)]:
                    self.check()
                    sp, dp = join(self.dst_root, rel), join(dst_path, rel)
                    if e is not None and e.is_dir:
                        b.make_folder(dp, partial(b.is_empty, sp))
                    else:
                        self.retry(partial(copy_file, b, sp, b, dp), f"place {rel}")
                b.rm_tree(self.dst_root)

    # -- rollback --------------------------------------------------------------

    def rollback(self) -> bool:
        """Before commit: remove everything this job wrote (the stage is
        entirely ours: a reserved name, or a destination that did not exist).
        False when the storage refused; the caller keeps the job in phase
        ``rollback`` (its overlay still hides the stage) and retries later."""
        j = self.job
        if j.via_trash:
            b, trash = self.src_mount.backend, self._trash_root()
            try:
                if b.exists(trash):
                    b.rename(trash, self.src_root)
            except E.GatewayError as exc:
                log.error("job %s: could not put %s back from the trash yet: %s", j.id, j.src, exc)
                return False
            return True
        if j.operation == "delete" or not j.dst:
            return True
        if j.stage and (j.stage != j.dst or not j.dst_existed):
            try:
                self.dst_mount.backend.rm_tree(self.dst_root)
            except E.GatewayError as exc:
                log.error("job %s: could not remove partial destination %s yet: %s", j.id, j.stage, exc)
                return False
        return True


def _width(a, b) -> int:
    """How many per-object steps run at once between two mounts: inside
    one mount that copies server-side, its ``copy_fan_out``; else the
    smallest fan-out of the remote side(s) (1 between local ones)."""
    if a is b and a.capabilities.server_copy and a.capabilities.copy_fan_out > 1:
        return a.capabilities.copy_fan_out
    return min((w for w in (a.capabilities.fan_out, b.capabilities.fan_out) if w > 1), default=1)


def _rmdir_quiet(b, path: str) -> None:
    try:
        b.rmdir(path, missing_ok=True)
    except E.DirectoryNotEmpty:
        log.warning("folder %s got new content during the job; kept", path)
