"""A job's progress is exact on both stores (SQLite and PostgreSQL) when
attempts overlap: a superseded attempt (a node frozen, then thawed after
another took its job over) adds nothing, and an item copied again counts
once; a planned handover (drain, SIGTERM) uses none of the job's attempts.
Store and runner level, no timing: the takeover is made by hand."""

from __future__ import annotations

import time

import pytest

from conftest import pg_database, unique_memory
from gateway.app import Gateway
from gateway.jobs.model import Job, new_job_id
from gateway.jobs.runner import _Lost, _Run
from gateway.jobs.store import JobStore
from gateway.types import Session
from gateway.users import User

@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    with pg_database() as url:
        yield url


def _job(store: JobStore) -> Job:
    return store.create(Job(id=new_job_id(), queue="copy", operation="copy", src="/a/t", dst="/b/t", stage="/b/t",
                            owner="alice", session_id="s", protocol="ftp"))


def _take_over(store: JobStore, job: Job, node: str = "b") -> Job:
    """What the stall watchdog and another node's worker do to a job whose
    node stopped beating: re-queued, claimed again with the next attempt."""
    assert [(j.id, state) for j, state in store.requeue_stalled(time.time() + 1, max_attempts=50, backoff_s=0.0)] \
        == [(job.id, "queued")]
    taken = store.claim(["copy"], node)
    assert taken is not None and taken.id == job.id and taken.attempts == job.attempts + 1
    return taken


def test_a_superseded_attempt_adds_no_progress_and_items_count_once(store_url):
    store = JobStore(store_url)
    try:
        job = _job(store)
        first = store.claim(["copy"], "a")
        store.add_items(first, [("", True, 0), ("f0", False, 1000), ("f1", False, 1000), ("f2", False, 1000)])
        ids = {rel: i for i, rel, _, _ in store.items(job.id, "pending")}
        # Attempt 1 copies the folder and f0, and is half-way through f1.
        assert store.mark_items(first, [ids[""], ids["f0"]], "copied", partial={ids["f1"]: 600}) == (2, 1600)
        second = _take_over(store, first)

        # Thawed, attempt 1 journals f1 and the start of f2: refused, nothing added.
        assert store.mark_items(first, [ids["f1"]], "copied", partial={ids["f2"]: 500}) is None
        assert store.mark_items(first, [ids["f1"]], "copied", helper=True) is None
        assert (store.get(job.id).items_done, store.get(job.id).bytes_done) == (2, 1600)

        # Attempt 2 copies f1 again from its start: the 600 bytes counted
        # already are not counted twice, and progress never goes back.
        assert store.mark_items(second, [], "pending", partial={ids["f1"]: 300}) == (2, 1600)
        assert store.mark_items(second, [], "pending", partial={ids["f1"]: 800}) == (2, 1800)
        # Its helper (another node) and itself journal the same item: once.
        assert store.mark_items(second, [ids["f1"]], "copied", helper=True) == (3, 2000)
        assert store.mark_items(second, [ids["f1"], ids["f0"]], "copied") == (3, 2000)
        # A partial count past an item's size is capped at it.
        assert store.mark_items(second, [], "pending", partial={ids["f2"]: 5000}) == (3, 3000)
        assert store.mark_items(second, [ids["f2"]], "copied") == (4, 3000)
        done = store.get(job.id)
        assert done.items_done == done.items_total == 4 and done.bytes_done == done.bytes_total == 3000

        # A move's removal of its sources counts no item and no byte again.
        assert store.mark_items(second, list(ids.values()), "removed", 0) == (4, 3000)
    finally:
        store.close()


def test_a_takeover_after_a_flushed_copy_ends_with_exact_bytes(store_url, tmp_path):
    """Runner level: attempt 1 copied a whole file and journaled its bytes
    (not yet the item) when its node froze; attempt 2 (and, on PostgreSQL,
    a helper of it) copies the job; the thawed attempt 1 then finishes its
    step: refused, and the job's bytes are exactly the source's."""
    g = Gateway.build({"/a": f"memory://{unique_memory()}", "/b": f"memory://{unique_memory()}"},
                      tmp_path / "var", store_url=store_url, budget_s=0, node="a")
    try:
        s = Session(User("alice"), "ftp")
        g.ops.mkdir(s, "/a/t")
        sizes = {f"f{i}": 1000 + 100 * i for i in range(6)}
        for name, size in sizes.items():
            w = g.ops.open_write(s, f"/a/t/{name}")
            w.write(b"x" * size)
            w.commit()
        out = g.ops.copy(s, "/a/t", "/b/t")
        assert out.backgrounded
        runner, store = g.dispatcher.runner, g.store
        first = store.claim(["copy"], "a")
        assert first is not None and first.id == out.job_id

        frozen = _Run(runner, first)
        frozen.transfer_pending = lambda finish=False: None  # only journal the walk
        frozen._enumerate()
        item = next(i for i in store.items(first.id, "pending") if i[1] == "f3")
        src_b, dst_b = frozen.src_mount.backend, frozen.dst_mount.backend
        # A flush between blocks: after the last one, the whole file is journaled as bytes in flight.
        frozen._copy_item(src_b, dst_b, set(), *item, check=frozen.flush)
        assert store.get(first.id).bytes_done == sizes["f3"]

        second = _take_over(store, first)
        if store.shares_jobs:  # another node's idle worker copies a batch as attempt 2
            assert runner.help(store.get(second.id))
        frozen.done(item[0], "copied")
        with pytest.raises(_Lost):
            frozen.flush()
        runner.run(second)

        done = store.get(first.id)
        assert done.state == "completed" and done.attempts == 2
        assert done.items_done == done.items_total == len(sizes) + 1
        assert done.bytes_done == done.bytes_total == sum(sizes.values())
        assert sorted(e.name for e in g.ops.list(s, "/b/t")) == sorted(sizes)
    finally:
        g.close()


def test_a_job_handed_over_again_and_again_keeps_its_attempts(store_url):
    """Drained (or stopped) nodes hand a running job back many times: no
    attempt is used up by it, the attempt number still fences the node that
    handed it over, and a real stall still counts."""
    store = JobStore(store_url)
    try:
        job = _job(store)
        store.add_items(job, [("", False, 10)])
        item = store.items(job.id, "pending")[0][0]
        for n in range(1, 8):  # more handovers than max_attempts
            attempt = store.claim(["copy"], f"node{n}")
            assert attempt.attempts == n and attempt.attempts_used == 1
            assert store.release(attempt)
            assert store.mark_items(attempt, [item], "copied") is None  # fenced once handed over
        # A stall counts: with max_attempts=2, two of them fail the job.
        attempt = store.claim(["copy"], "x")
        assert store.requeue_stalled(time.time() + 1, max_attempts=2, backoff_s=0.0)[0][1] == "queued"
        attempt = store.claim(["copy"], "y")
        assert attempt.attempts_used == 2
        assert store.requeue_stalled(time.time() + 1, max_attempts=2, backoff_s=0.0)[0][1] == "failed"
        assert store.get(job.id).items_done == 0
    finally:
        store.close()
