"""The consistency contract and the job lifecycle, proved with two sessions
on slow:: mounts (real storage made distant, no mocks)."""

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

from gateway import errors as E
from gateway.app import Gateway
from gateway.jobs.model import Job
from gateway.types import Session
from gateway.users import User

from conftest import unique_memory, wait_until

N = 60


def slow(latency_ms=20, **extra):
    return (f"slow::memory://{unique_memory()}", {"slow": {"latency_ms": latency_ms, **extra}})


def build(tmp_path, mounts=None, **kw):
    kw.setdefault("budget_s", 0.3)
    return Gateway.build(mounts or {"/": slow()}, tmp_path / "var", **kw).start()


@pytest.fixture
def gw(tmp_path):
    g = build(tmp_path)
    yield g
    g.close()


ALICE = User("alice")


def sessions():
    return Session(ALICE, "ftp"), Session(ALICE, "sftp")


def names(ops, s, path="/"):
    return sorted(e.name for e in ops.list(s, path))


def make_tree(ops, s, root="/tree", n=N, size=10):
    ops.mkdir(s, root)
    ops.mkdir(s, root + "/sub")
    for i in range(n - 1):
        up = ops.open_write(s, f"{root}/f{i:03}" if i % 5 else f"{root}/sub/f{i:03}")
        up.write(bytes([65 + i % 26]) * size)
        up.commit()


def count(ops, s, root):
    total = 0
    for e in ops.list(s, root):
        total += 1
        if e.is_dir:
            total += count(ops, s, e.path)
    return total


def wait(gw, job_id, timeout=60):
    job = gw.dispatcher.wait(job_id, timeout)
    assert job.terminal, job
    return job


def test_backgrounded_move_consistency(gw):
    a, b = sessions()
    ops = gw.ops
    make_tree(ops, a)
    before = count(ops, b, "/tree")
    t = time.monotonic()
    out = ops.move(a, "/tree", "/moved")
    assert time.monotonic() - t < 0.3 + 0.5
    assert out.backgrounded and out.job.operation == "move"
    # the initiator sees the outcome at once; reads come from the source
    assert names(ops, a) == ["moved"]
    assert count(ops, a, "/moved") == before
    f, _ = ops.open_read(a, "/moved/f001")
    with f:
        assert f.read() == b"B" * 10
    with pytest.raises(E.NotFound):
        ops.stat(a, "/tree")

    samples = []

    def watch():
        while True:
            top = names(ops, b)
            assert top in (["tree"], ["moved"]), top
            try:
                n = count(ops, b, "/" + top[0])
            except E.NotFound:
                assert top == ["tree"]  # the commit happened between the two listings
                continue
            assert n == before, f"other session saw {n} of {before} entries under /{top[0]}"
            samples.append(top[0])
            job = gw.store.get(out.job_id)
            if job.terminal:
                return
            time.sleep(0.02)

    failures = []

    def watched():
        try:
            watch()
        except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
            failures.append(exc)

    watcher = threading.Thread(target=watched)
    watcher.start()
    job = wait(gw, out.job_id)
    watcher.join(30)
    assert not failures, failures[0]
    assert job.state == "completed" and job.percentage == 100.0
    assert samples.count("tree") >= 3, "the other session should have seen the old tree for a while"
    assert names(ops, b) == ["moved"] and count(ops, b, "/moved") == before
    assert job.items_total == before + 1 and job.items_done == before + 1


def test_a_listing_begun_before_a_commit_keeps_the_source_until_it_ends(gw):
    """Another session's listing that began before a move committed reads
    the old tree whole: the job's cleanup removes nothing of the source
    until that listing has ended (it had removed a file in mid-listing once
    in a full run), then finishes."""
    a, b = sessions()
    ops = gw.ops
    make_tree(ops, a)
    expected = names(ops, b, "/tree/sub")
    listing = ops.list(b, "/tree/sub")
    first = next(listing)  # begun, before the job exists
    out = ops.move(a, "/tree", "/moved")
    assert out.backgrounded
    wait_until(lambda: gw.store.get(out.job_id).committed, what="the move's commit")
    mount, bp = gw.namespace.resolve("/tree/sub")
    time.sleep(0.5)  # the cleanup has had time to remove files, had it started
    assert sorted(e.name for e in mount.backend.iterdir(bp)) == expected
    assert sorted([first.name] + [e.name for e in listing]) == expected
    job = wait(gw, out.job_id)
    assert job.state == "completed"
    assert not mount.backend.exists(bp)



def test_backgrounded_delete_and_copy(gw):
    a, b = sessions()
    ops = gw.ops
    make_tree(ops, a, n=30)
    out = ops.copy(a, "/tree", "/copy")
    assert out.backgrounded
    assert names(ops, a) == ["copy", "tree"] and names(ops, b) == ["tree"]
    with pytest.raises(E.NotFound):
        ops.stat(b, "/copy/f001")
    wait(gw, out.job_id)
    assert names(ops, b) == ["copy", "tree"] and count(ops, b, "/copy") == count(ops, b, "/tree")
    full = count(ops, b, "/copy")
    out = ops.delete(a, "/copy", recursive=True)
    assert out.backgrounded
    assert names(ops, a) == ["tree"]
    while not gw.store.get(out.job_id).terminal:  # others: all of /copy, or none of it
        try:
            assert count(ops, b, "/copy") == full
        except E.NotFound:
            assert gw.store.get(out.job_id).committed
        time.sleep(0.02)
    assert names(ops, b) == ["tree"]


def test_busy_on_paths_a_job_owns(gw):
    a, b = sessions()
    ops = gw.ops
    make_tree(ops, a)
    out = ops.move(a, "/tree", "/moved")
    assert out.backgrounded
    attempts = [
        lambda s: ops.open_write(s, "/tree/new"),
        lambda s: ops.open_write(s, "/moved/new"),
        lambda s: ops.mkdir(s, "/tree/x"),
        lambda s: ops.delete(s, "/tree/f001"),
        lambda s: ops.move(s, "/tree/f001", "/elsewhere"),
        lambda s: ops.copy(s, "/tree", "/c2"),
    ]
    for s in (a, b):
        for call in attempts:
            with pytest.raises(E.Busy) as ei:
                call(s)
            assert out.job_id in str(ei.value)
    ops.mkdir(b, "/unrelated")  # elsewhere is fine
    wait(gw, out.job_id)
    ops.open_write(b, "/moved/new").commit()


def test_progress_totals_grow_and_percentage_rises(gw):
    a, _ = sessions()
    make_tree(gw.ops, a, n=80)
    out = gw.ops.copy(a, "/tree", "/c")
    seen = []
    while True:
        j = gw.store.get(out.job_id)
        seen.append((j.items_total, j.items_done, j.percentage))
        if j.terminal:
            break
        time.sleep(0.05)
    pcts = [p for _, _, p in seen]
    assert pcts == sorted(pcts) and pcts[-1] == 100.0
    assert any(0 < p < 100 for p in pcts)
    assert seen[-1][0] == 81
    public = gw.ops.public_job(a, j)
    assert public["operation"] == "ItemCopy" and public["percentageComplete"] == 100.0


def test_cancel_queued_and_stop_running(tmp_path):
    g = build(tmp_path, queues={"copy": 1, "move": 1, "delete": 1})
    try:
        a, b = sessions()
        ops = g.ops
        make_tree(ops, a)
        running = ops.move(a, "/tree", "/m1")
        ops.mkdir(a, "/other")
        ops.open_write(a, "/other/f").commit()
        ops.mkdir(a, "/other/d")
        queued = ops.move(a, "/other", "/m2")
        assert g.store.get(queued.job_id).state == "queued"
        with pytest.raises(E.InvalidState, match="queued"):
            ops.stop_job(a, queued.job_id)
        ops.cancel_job(a, queued.job_id)
        assert g.store.get(queued.job_id).state == "cancelled"
        assert names(ops, a) == ["m1", "other"] and names(ops, b) == ["other", "tree"]
        with pytest.raises(E.InvalidState, match="running"):
            ops.cancel_job(a, running.job_id)
        t = time.monotonic()
        ops.stop_job(a, running.job_id)
        job = wait(g, running.job_id, 10)
        assert time.monotonic() - t < 2.0
        assert job.state == "stopped"
        with pytest.raises(E.InvalidState):
            ops.stop_job(a, running.job_id)
        with pytest.raises(E.InvalidState):
            ops.cancel_job(a, running.job_id)
        for s in (a, b):  # the tree is exactly as it was, for everyone
            assert names(ops, s) == ["other", "tree"]
            assert count(ops, s, "/tree") == N
        assert not g.namespace.resolve("/m1")[0].backend.exists(g.namespace.resolve("/m1")[1])
    finally:
        g.close()


def test_dead_properties_move_when_the_job_commits_and_stay_when_it_is_stopped(tmp_path):
    g = build(tmp_path, queues={"copy": 1, "move": 1, "delete": 1})
    try:
        a, _ = sessions()
        ops, dav = g.ops, g.ops.davstate
        make_tree(ops, a)
        dav.set_prop("/tree/f001", "{urn:t}c", "blue")
        stopped = ops.move(a, "/tree", "/m1")
        assert stopped.backgrounded
        ops.stop_job(a, stopped.job_id)
        assert wait(g, stopped.job_id, 10).state == "stopped"
        assert dav.props("/tree/f001") == {"{urn:t}c": "blue"} and dav.props("/m1/f001") == {}

        moved = ops.move(a, "/tree", "/m2")
        assert moved.backgrounded
        if not g.store.get(moved.job_id).committed:  # everyone else still sees /tree: so do its properties
            assert dav.props("/tree/f001") == {"{urn:t}c": "blue"}
        assert wait(g, moved.job_id, 60).state == "completed"
        assert dav.props("/tree/f001") == {} and dav.props("/m2/f001") == {"{urn:t}c": "blue"}
    finally:
        g.close()


def test_stop_after_commit_is_refused(tmp_path):
    g = build(tmp_path, mounts={"/": slow(40)})
    try:
        a, _ = sessions()
        make_tree(g.ops, a, n=40)
        out = g.ops.delete(a, "/tree", recursive=True)
        while g.store.get(out.job_id).phase == "prepare":
            time.sleep(0.01)
        with pytest.raises(E.InvalidState, match="committed"):
            g.ops.stop_job(a, out.job_id)
        assert wait(g, out.job_id).state == "completed"
    finally:
        g.close()


def test_users_see_only_their_jobs(gw):
    a, _ = sessions()
    bob = Session(User("bob"), "ftp")
    admin = Session(User("root", admin=True), "ftp")
    make_tree(gw.ops, a, n=10)
    out = gw.ops.copy(a, "/tree", "/c")
    assert [j.id for j in gw.ops.list_jobs(a)] == [out.job_id]
    assert gw.ops.list_jobs(bob) == []
    with pytest.raises(E.NotFound):
        gw.ops.get_job(bob, out.job_id)
    with pytest.raises(E.NotFound):
        gw.ops.stop_job(bob, out.job_id)
    assert gw.ops.get_job(admin, out.job_id).owner == "alice"
    wait(gw, out.job_id)


def test_failing_step_retries_then_fails_cleanly(tmp_path):
    src = slow(1)
    dst = slow(1, fail_glob="*/f007")
    g = build(tmp_path, mounts={"/a": src, "/b": dst}, max_attempts=2, step_retries=1, retry_backoff_s=0.05)
    try:
        a, b = sessions()
        make_tree(g.ops, a, "/a/tree", n=20)
        out = g.ops.move(a, "/a/tree", "/b/tree", budget_s=0)
        job = wait(g, out.job_id)
        assert job.state == "failed" and job.attempts == 2
        assert "f007" in job.error and job.error_type == "BackendUnavailable"
        for s in (a, b):  # the view is back on the committed state: source complete, no destination
            assert count(g.ops, s, "/a/tree") == 20
            assert names(g.ops, s, "/b") == []
    finally:
        g.close()


def test_failure_within_budget_is_a_synchronous_error(tmp_path):
    g = build(tmp_path, mounts={"/a": slow(0), "/b": slow(0, fail_glob="*/f003")}, budget_s=10,
              max_attempts=1, step_retries=0)
    try:
        a, _ = sessions()
        make_tree(g.ops, a, "/a/t", n=6)
        with pytest.raises(E.BackendUnavailable, match="f003"):
            g.ops.copy(a, "/a/t", "/b/t")
        assert names(g.ops, a, "/b") == []
    finally:
        g.close()


def test_watchdog_requeues_a_stalled_job_then_it_completes(tmp_path):
    g = build(tmp_path, stall_after_s=0.5)
    try:
        a, b = sessions()
        make_tree(g.ops, a, n=5)
        job = Job(id="stalled1", queue="copy", operation="copy", src="/tree", dst="/c", stage="/c",
                  owner="alice", session_id=a.id, protocol="ftp", state="running", node="dead-node",
                  attempts=1, heartbeat_at=time.time() - 60, started_at=time.time() - 60)
        g.store.create(job)
        done = wait(g, "stalled1", 30)
        assert done.state == "completed" and done.stuck and done.attempts == 2
        assert count(g.ops, b, "/c") == 5
        # A job had begun writing /c2 before its node died: nobody sees
        # that, and it is removed, so the path is free again.
        m, c2 = g.namespace.resolve("/c2")
        m.backend.mkdir(c2)
        w = m.backend.open_write(m.backend.join("c2/f000"))
        w.write(b"partial")
        w.commit()
        g.store.create(Job(id="stalled2", queue="copy", operation="copy", src="/tree", dst="/c2", stage="/c2",
                           owner="alice", session_id=a.id, protocol="ftp", state="running", node="dead-node",
                           attempts=5, heartbeat_at=time.time() - 60))
        dead = wait(g, "stalled2", 30)
        assert dead.state == "failed" and dead.stuck and "stalled" in dead.error
        deadline = time.monotonic() + 20
        while g.store.get("stalled2").phase == "rollback":
            assert time.monotonic() < deadline, "the watchdog should remove what it wrote"
            time.sleep(0.1)
        assert names(g.ops, b) == ["c", "tree"]
        g.ops.mkdir(b, "/c2")

        # A committed job can only be finished: out of attempts, it is queued
        # again (shown as stuck) and completes.
        committed = Job(id="stalled3", queue="delete", operation="delete", src="/c", dst=None, owner="alice",
                        session_id=a.id, protocol="ftp", state="running", node="dead-node", attempts=5,
                        phase="cleanup", enumerated=True, heartbeat_at=time.time() - 60)
        g.store.create(committed)
        g.store.add_items(committed, [("", True, 0), ("sub", True, 0), ("sub/f000", False, 10),
                                      *[(f"f{i:03}", False, 10) for i in (1, 2, 3)]])
        finished = wait(g, "stalled3", 30)
        assert finished.state == "completed" and finished.stuck
        assert names(g.ops, b) == ["c2", "tree"]
    finally:
        g.close()


def test_overwrite_of_an_existing_folder_is_staged(gw):
    a, b = sessions()
    ops = gw.ops
    make_tree(ops, a, n=20)
    ops.mkdir(a, "/dst")
    ops.open_write(a, "/dst/old").commit()
    out = ops.copy(a, "/tree", "/dst", overwrite=True)
    assert out.backgrounded
    assert names(ops, b, "/dst") == ["old"]  # others keep the old destination
    assert "old" not in names(ops, a, "/dst")  # the initiator sees the copy
    wait(gw, out.job_id)
    assert names(ops, b, "/dst") == names(ops, b, "/tree")
    assert names(ops, b) == ["dst", "tree"]


def test_a_rollback_that_cannot_reach_storage_keeps_the_partial_copy_hidden(tmp_path):
    g = build(tmp_path, mounts={"/a": slow(5), "/b": slow(5)}, max_attempts=1, step_retries=0,
              stall_after_s=1.0)
    try:
        a, b = sessions()
        make_tree(g.ops, a, "/a/tree", n=40)
        out = g.ops.move(a, "/a/tree", "/b/tree", budget_s=0)
        while g.store.get(out.job_id).items_done < 5:
            time.sleep(0.01)
        dst = g.namespace.resolve("/b")[0].backend
        dst.fs.fail_glob = "*"  # the destination storage goes away
        job = wait(g, out.job_id)
        assert job.state == "failed" and job.phase == "rollback"
        with pytest.raises(E.Busy, match="ended failed, and what it wrote stays hidden until it can be removed"):
            g.ops.mkdir(a, "/b/tree")  # the half-copied destination stays reserved by the job
        up = g.ops.open_write(b, "/a/tree/new")  # the source is anyone's again
        up.write(b"new")
        up.commit()
        dst.fs.fail_glob = None  # ... and comes back with the partial copy on it
        for s in (a, b):
            assert names(g.ops, s, "/b") == []
            assert count(g.ops, s, "/a/tree") == 41
        deadline = time.monotonic() + 20
        while g.store.get(out.job_id).phase == "rollback":
            assert time.monotonic() < deadline, "the watchdog should finish the rollback"
            time.sleep(0.1)
        assert not dst.exists(dst.join("tree"))
        g.ops.mkdir(a, "/b/tree")
    finally:
        g.close()


def _schema(url: str) -> dict:
    """Tables → columns (name, type, nullable, primary key), indexes, unique constraints."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    insp = sa.inspect(engine)
    out = {}
    for table in sorted(insp.get_table_names()):
        out[table] = (
            [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)],
            insp.get_pk_constraint(table)["constrained_columns"],
            sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(table)),
            sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)),
        )
    engine.dispose()
    return out


def test_a_new_store_has_the_migrations_schema_without_loading_alembic(tmp_path):
    """A new database gets schema.metadata stamped at SCHEMA_HEAD, which must
    be exactly what the Alembic migrations build; opening a store, new or
    up to date, keeps Alembic (~12 MiB) out of memory."""
    import subprocess
    import sys

    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from gateway.jobs.store import _MIGRATIONS, SCHEMA_HEAD, JobStore

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == SCHEMA_HEAD

    migrated = f"sqlite:///{tmp_path / 'migrated.db'}"
    import sqlalchemy as sa

    engine = sa.create_engine(migrated)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    engine.dispose()

    created = f"sqlite:///{tmp_path / 'created.db'}"
    probe = ("import sys; from gateway.jobs.store import JobStore; "
             f"JobStore({created!r}).close(); JobStore({created!r}).close(); print('alembic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert _schema(created) == _schema(migrated)
    store = JobStore(created)
    assert store.schema_revision() == SCHEMA_HEAD
    store.close()


def test_the_budget_counts_the_checks_on_slow_storage(tmp_path):
    """The sync budget bounds the client's wait from the moment the operation
    reaches the core: lookups on distant storage spend it, they do not add to it."""
    g = build(tmp_path, mounts={"/": slow(0)}, budget_s=0.4)
    try:
        a, _ = sessions()
        make_tree(g.ops, a, "/t", n=8)
        g.namespace.resolve("/")[0].backend.fs.latency_s = 0.15  # each storage call now takes 150 ms
        began = time.monotonic()
        out = g.ops.move(a, "/t", "/u")
        took = time.monotonic() - began
        assert out.backgrounded
        # The checks (the source's stat, the destination's) take ~0.3 s of the
        # 0.4 s budget: the reply comes ~0.1 s after the job is journaled (0.4 s
        # in all), not after another full budget (0.7 s).
        assert took < 0.6, took
        assert wait(g, out.job_id).state == "completed"
    finally:
        g.close()


def local_slow(tmp_path, latency_ms=20):
    root = tmp_path / "data"
    root.mkdir()
    return root, (f"slow::file://{root}", {"slow": {"latency_ms": latency_ms}})


def test_a_folder_delete_on_renaming_storage_goes_to_the_trash(tmp_path):
    """Where storage renames atomically, a folder delete renames the folder to
    a reserved name and commits: the client's reply comes then, the path is
    free at once (a new folder may take it), and the trash is emptied after."""
    root, mount = local_slow(tmp_path)
    g = build(tmp_path, mounts={"/": mount}, budget_s=10)
    try:
        a, b = sessions()
        make_tree(g.ops, a)
        began = time.monotonic()
        out = g.ops.delete(a, "/tree", recursive=True)
        took = time.monotonic() - began
        assert not out.backgrounded and out.entry is None
        assert took < 1.0, took  # emptying 60 items at 20 ms a call takes longer
        job = g.store.get(out.job_id)
        assert job.committed and job.state == "running"
        assert not (root / "tree").exists()
        assert [p.name for p in root.iterdir()] == [f".gw-trash-{job.id}"]
        for s in (a, b):
            assert names(g.ops, s) == []
        g.ops.mkdir(b, "/tree")  # not Busy: the job owns only its trash now
        g.ops.open_write(b, "/tree/new").commit()
        assert names(g.ops, a, "/tree") == ["new"]
        job = wait(g, out.job_id)
        assert job.state == "completed" and job.items_done == N + 1
        assert sorted(p.name for p in root.iterdir()) == ["tree"]
        assert [p.name for p in (root / "tree").iterdir()] == ["new"]
    finally:
        g.close()


def test_a_trash_delete_stopped_before_commit_puts_the_folder_back(tmp_path):
    root, mount = local_slow(tmp_path, latency_ms=0)
    g = build(tmp_path, mounts={"/": mount})
    try:
        a, b = sessions()
        make_tree(g.ops, a, n=10)
        g.namespace.resolve("/")[0].backend.fs.latency_s = 0.15
        out = g.ops.delete(a, "/tree", recursive=True, budget_s=0)
        assert out.backgrounded
        while g.store.get(out.job_id).state == "queued":
            time.sleep(0.005)
        g.ops.stop_job(a, out.job_id)  # while it checks the trash name and renames (150 ms a call)
        job = wait(g, out.job_id)
        assert job.state == "stopped"
        assert sorted(p.name for p in root.iterdir()) == ["tree"]
        g.namespace.resolve("/")[0].backend.fs.latency_s = 0
        for s in (a, b):
            assert count(g.ops, s, "/tree") == 10
    finally:
        g.close()


def test_before_a_trash_delete_commits_others_read_the_folder_in_the_trash(tmp_path):
    """Between the rename and the commit (a moment, unless the process dies
    there) other sessions still see the folder and read its files."""
    root, mount = local_slow(tmp_path, latency_ms=0)
    g = build(tmp_path, mounts={"/": mount})
    try:
        a, b = sessions()
        make_tree(g.ops, a, n=10)
        job = Job(id="j1", queue="delete", operation="delete", src="/tree", dst=None, stage="/.gw-trash-j1",
                  owner=a.user.name, session_id=a.id, protocol=a.protocol, state="running",
                  heartbeat_at=time.time())
        g.store.create(job)
        (root / "tree").rename(root / ".gw-trash-j1")
        assert names(g.ops, a) == [] and names(g.ops, b) == ["tree"]
        assert count(g.ops, b, "/tree") == 10
        f, _ = g.ops.open_read(b, "/tree/f001")
        assert f.read() == b"B" * 10
        f.close()
        with pytest.raises(E.Busy):
            g.ops.mkdir(b, "/tree/x")
    finally:
        g.close()


def test_job_ids_never_look_like_a_command_line_option():
    from gateway.jobs.model import new_job_id

    ids = {new_job_id() for _ in range(3000)}  # a token starts with '-' one time in 64
    assert len(ids) == 3000 and not any(i.startswith("-") for i in ids)


def test_a_folder_whose_subfolder_is_being_emptied_can_be_deleted_and_made_again(tmp_path):
    """litmus' pattern: delete /a/b, then at once delete /a and make /a anew.
    The trash lives at the mount's root, so emptying it never makes /a busy."""
    root, mount = local_slow(tmp_path, latency_ms=0)
    g = build(tmp_path, mounts={"/": mount}, budget_s=10)
    try:
        a, _ = sessions()
        g.ops.mkdir(a, "/a")
        make_tree(g.ops, a, "/a/b")
        make_tree(g.ops, a, "/a/c", n=5)
        g.namespace.resolve("/")[0].backend.fs.latency_s = 0.02
        inner = g.ops.delete(a, "/a/b", recursive=True)
        assert g.store.get(inner.job_id).state == "running"  # still emptying its trash
        outer = g.ops.delete(a, "/a", recursive=True)
        assert not outer.backgrounded
        g.ops.mkdir(a, "/a")
        for out in (inner, outer):
            assert wait(g, out.job_id).state == "completed"
        assert sorted(p.name for p in root.iterdir()) == ["a"] and not any((root / "a").iterdir())
    finally:
        g.close()


def test_a_folder_that_cannot_be_renamed_to_the_trash_is_deleted_in_place(tmp_path):
    """A folder on another disk linked into a local tree (a mount that
    follows links) cannot be renamed to the mount's root (EXDEV): the delete
    then removes it where it is."""
    other = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        root = tmp_path / "data"
        root.mkdir()
        mount = (f"file://{root}", {"follow_links": True})
        assert os.stat(other).st_dev != os.stat(root).st_dev
        (other / "sub").mkdir()
        for i in range(5):
            (other / "sub" / f"f{i}").write_bytes(b"x")
        (root / "linked").symlink_to(other)
        g = build(tmp_path, mounts={"/": mount})
        try:
            a, b = sessions()
            out = g.ops.delete(a, "/linked/sub", recursive=True)
            job = wait(g, out.job_id)
            assert job.state == "completed" and job.stage is None and job.items_done == 6
            assert not (other / "sub").exists() and [p.name for p in root.iterdir()] == ["linked"]
            assert names(g.ops, b, "/linked") == []
        finally:
            g.close()
    finally:
        shutil.rmtree(other, ignore_errors=True)


def test_one_idle_worker_per_queue_polls_the_store(tmp_path):
    """Every idle worker polling once a second cost twelve SQLite writes a
    second on an idle gateway; one per queue looks, the others sleep."""
    g = build(tmp_path, mounts={"/": f"file://{tmp_path}"}, queues={"copy": 4, "move": 4, "delete": 4})
    try:
        g.dispatcher.poll_s = 0.05
        time.sleep(1.2)  # the workers' first one-second sleeps are over
        claims: list[str] = []
        claim = g.store.claim
        g.store.claim = lambda queues, node: claims.extend(queues) or claim(queues, node)
        time.sleep(1.0)
        counts = {q: claims.count(q) for q in ("copy", "move", "delete")}
        assert all(5 <= n <= 30 for n in counts.values()), counts  # ~20 each; 80 if all four polled
    finally:
        g.close()


def test_an_enqueued_job_wakes_one_worker_of_its_queue(tmp_path):
    """Twelve idle workers racing for SQLite's write lock on every enqueue
    doubled a small job's reply time; one worker of the job's queue wakes."""
    g = build(tmp_path, mounts={"/": f"file://{tmp_path}"}, queues={"copy": 4, "move": 4, "delete": 4})
    try:
        a, _ = sessions()
        g.dispatcher.poll_s = 60
        time.sleep(1.5)  # every worker has polled once more and now sleeps for a minute
        claims = []
        claim = g.store.claim
        g.store.claim = lambda queues, node: claims.append(list(queues)) or claim(queues, node)
        (tmp_path / "d").mkdir()
        for i in range(3):
            (tmp_path / "d" / f"f{i}").touch()
        out = g.ops.delete(a, "/d", recursive=True, budget_s=0)
        assert wait(g, out.job_id).state == "completed"
        # the woken worker's claim, and its claim for more once done (made
        # just after the job ends: waited for, then nothing else comes)
        deadline = time.monotonic() + 10
        while len(claims) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        assert claims == [["delete"], ["delete"]], claims
    finally:
        g.close()


def test_cancel_of_a_retrying_job_removes_what_it_wrote(tmp_path):
    """A copy that failed part-way waits for its retry; cancelled then, the
    files it had copied are removed before the cancel returns, for everyone."""
    g = build(tmp_path, mounts={"/a": slow(1), "/b": slow(1)}, max_attempts=5, step_retries=0,
              retry_backoff_s=30.0)
    try:
        a, b = sessions()
        make_tree(g.ops, a, "/a/tree", n=40)
        dst = g.namespace.resolve("/b")[0].backend
        dst.fs.fail_glob = "*/f038"  # the copy fails there, after other files are written
        out = g.ops.copy(a, "/a/tree", "/b/tree", budget_s=0)
        deadline = time.monotonic() + 30
        while (job := g.store.get(out.job_id)).state != "queued" or not job.attempts:
            assert time.monotonic() < deadline, job
            time.sleep(0.02)
        assert job.items_done >= 1 and dst.exists(dst.join("tree"))  # it wrote something
        dst.fs.fail_glob = None
        job = g.ops.cancel_job(a, out.job_id)
        assert job.state == "cancelled" and job.phase == "prepare"
        assert not dst.exists(dst.join("tree"))  # nothing half-copied is left
        for s in (a, b):
            assert names(g.ops, s, "/b") == []
        g.ops.mkdir(b, "/b/tree")  # and the path is free
    finally:
        g.close()


def test_cancel_of_a_committed_job_is_refused_and_it_finishes(tmp_path):
    g = build(tmp_path, mounts={"/a": slow(1), "/b": slow(1)}, max_attempts=5, step_retries=0,
              retry_backoff_s=0.5)
    try:
        a, _ = sessions()
        make_tree(g.ops, a, "/a/tree", n=20)
        src = g.namespace.resolve("/a")[0].backend
        out = g.ops.move(a, "/a/tree", "/b/tree", budget_s=0)
        while not g.store.get(out.job_id).committed:
            time.sleep(0.01)
        with pytest.raises(E.InvalidState, match="committed, finishing cleanup"):
            g.ops.cancel_job(a, out.job_id)
        with pytest.raises(E.InvalidState, match="committed, finishing cleanup"):
            g.ops.stop_job(a, out.job_id)
        job = wait(g, out.job_id)
        assert job.state == "completed" and not src.exists(src.join("tree"))
        g.ops.mkdir(a, "/a/tree")  # no path stays busy
    finally:
        g.close()


def test_a_stop_replies_once_the_job_is_stopped(tmp_path):
    g = build(tmp_path, mounts={"/": slow(20)})
    try:
        a, _ = sessions()
        make_tree(g.ops, a, n=40)
        out = g.ops.copy(a, "/tree", "/c", budget_s=0)
        while g.store.get(out.job_id).state != "running":
            time.sleep(0.01)
        assert g.ops.stop_job(a, out.job_id).state == "stopped"
    finally:
        g.close()


def test_the_same_operation_sent_again_attaches_to_its_job(gw):
    """A client that lost its connection sends the same move again (from a
    new session): one job, and the retry answers with it."""
    a, _ = sessions()
    make_tree(gw.ops, a)
    first = gw.ops.move(a, "/tree", "/moved", budget_s=0)
    again = gw.ops.move(Session(ALICE, "ftp"), "/tree", "/moved", budget_s=0)
    assert again.backgrounded and again.job_id == first.job_id
    done = gw.ops.move(Session(ALICE, "webdav"), "/tree", "/moved", budget_s=60)
    assert done.job_id == first.job_id and not done.backgrounded and done.entry is not None
    assert [j.id for j in gw.ops.list_jobs(a)] == [first.job_id]
    assert names(gw.ops, a) == ["moved"]


def test_a_request_that_may_not_overwrite_does_not_attach_to_a_job_replacing_its_destination(gw):
    a, _ = sessions()
    make_tree(gw.ops, a, n=10)
    gw.ops.mkdir(a, "/old")
    first = gw.ops.move(a, "/tree", "/old", overwrite=True, budget_s=0)
    with pytest.raises(E.Busy, match=first.job_id):
        gw.ops.move(Session(ALICE, "webdav"), "/tree", "/old", budget_s=0)
    assert gw.ops.move(Session(ALICE, "webdav"), "/tree", "/old", overwrite=True, budget_s=0).job_id == first.job_id
    wait(gw, first.job_id)


def test_busy_names_the_path_that_collides_and_the_job(gw):
    a, _ = sessions()
    make_tree(gw.ops, a)
    out = gw.ops.move(a, "/tree", "/moved", budget_s=0)
    with pytest.raises(E.Busy) as err:  # the copy's destination is free: its source is not
        gw.ops.copy(a, "/tree/f001", "/acopy")
    assert err.value.path == "/tree/f001"
    assert out.job_id in err.value.message and "move /tree -> /moved" in err.value.message
    with pytest.raises(E.Busy):  # another user's same request does not attach
        gw.ops.move(Session(User("bob"), "ftp"), "/tree", "/moved")
    wait(gw, out.job_id)


def test_locks_below_a_moved_folder_go_when_the_job_commits(gw):
    """The lock's owner moves the folder (a non-owner is refused: locks bind
    every protocol); the lock goes with the commit, not before."""
    a, _ = sessions()
    make_tree(gw.ops, a)
    dav = gw.ops.davstate
    dav.put_lock("tok-1", "/tree/f001", {"root": "/tree/f001", "token": "tok-1", "principal": a.user.name},
                 time.time() + 600)
    with pytest.raises(E.Locked):  # only the lock's owner, sending its token, may move it
        gw.ops.move(a, "/tree", "/moved", budget_s=0)
    a.lock_tokens = frozenset({"tok-1"})
    out = gw.ops.move(a, "/tree", "/moved", budget_s=0)
    assert out.backgrounded and dav.locks("/tree", include_children=True)  # not yet for everyone
    assert wait(gw, out.job_id).state == "completed"
    assert dav.locks("/", include_children=True) == []


def test_progress_never_goes_back_and_ends_exact_across_failed_attempts(tmp_path):
    """A copy whose storage fails part-way is retried (in its attempt, then
    as a new attempt): the percentage a monitor polls never decreases, says
    nothing while the source is being listed, and the bytes end equal."""
    g = build(tmp_path, mounts={"/a": slow(2), "/b": slow(2)}, max_attempts=5, step_retries=1,
              retry_backoff_s=0.05)
    try:
        a, _ = sessions()
        make_tree(g.ops, a, "/a/tree", n=40, size=20_000)
        dst = g.namespace.resolve("/b")[0].backend
        dst.fs.fail_glob = "*/f021"
        out = g.ops.copy(a, "/a/tree", "/b/tree", budget_s=0)
        seen, healed = [], False
        deadline = time.monotonic() + 60
        while True:
            j = g.store.get(out.job_id)
            public = g.ops.public_job(a, j)
            seen.append(public["percentageComplete"])
            if not public["sizeKnown"]:
                assert public["percentageComplete"] == 0.0
            assert j.bytes_done <= j.bytes_total or not j.enumerated
            if j.attempts >= 2 and not healed:
                dst.fs.fail_glob = None
                healed = True
            if j.terminal:
                break
            assert time.monotonic() < deadline
            time.sleep(0.005)
        assert j.state == "completed" and j.attempts >= 2
        assert seen == sorted(seen) and seen[-1] == 100.0
        assert j.bytes_done == j.bytes_total == 39 * 20_000
    finally:
        g.close()


ADMIN = User("root", admin=True)


def test_a_job_without_progress_is_flagged_stalled_and_an_admin_retries_it(tmp_path):
    """Its storage keeps failing: the job keeps its attempts (re-queued with a
    backoff) but makes no progress, so it is flagged stalled in the listing
    and the metric; an admin's retry runs it again at once with fresh attempts."""
    from gateway import metrics

    g = build(tmp_path, mounts={"/a": slow(1), "/b": slow(1)}, max_attempts=50, step_retries=0,
              retry_backoff_s=0.05, stall_after_s=0.6, stalled_after_s=0.8)
    try:
        a, _ = sessions()
        make_tree(g.ops, a, "/a/tree", n=10)
        dst = g.namespace.resolve("/b")[0].backend
        dst.fs.fail_glob = "*/f007"
        out = g.ops.copy(a, "/a/tree", "/b/tree", budget_s=0)
        job = wait_until(lambda: (j := g.store.get(out.job_id)).stalled and j, what="stalled")
        assert not job.terminal and g.ops.public_job(a, job)["stalled"] is True
        assert "\ngateway_jobs_stalled 1\n" in metrics.render(g.store.engine)
        with pytest.raises(E.PermissionDenied):
            g.ops.retry_job(a, out.job_id)
        dst.fs.fail_glob = None
        again = g.ops.retry_job(Session(ADMIN, "api"), out.job_id)
        assert again.state == "queued" and not again.stalled and again.retries_from == again.attempts
        done = wait(g, out.job_id)
        assert done.state == "completed" and not done.stalled
        assert count(g.ops, a, "/b/tree") == 10
    finally:
        g.close()


def test_an_admin_abandons_a_job_before_commit_and_it_is_rolled_back(tmp_path):
    g = build(tmp_path, mounts={"/a": slow(1), "/b": slow(1)}, max_attempts=50, step_retries=0,
              retry_backoff_s=0.05)
    try:
        a, b = sessions()
        make_tree(g.ops, a, "/a/tree", n=20)
        dst = g.namespace.resolve("/b")[0].backend
        dst.fs.fail_glob = "*/f018"
        out = g.ops.move(a, "/a/tree", "/b/tree", budget_s=0)
        wait_until(lambda: g.store.get(out.job_id).attempts >= 2, what="a retried attempt")
        dst.fs.fail_glob = None
        with pytest.raises(E.PermissionDenied):
            g.ops.abandon_job(a, out.job_id)
        job = g.ops.abandon_job(Session(ADMIN, "api"), out.job_id)
        assert job.state in ("cancelled", "stopped")
        # Rolled back before the reply, or, when its worker did not answer
        # within 5 s (a loaded machine), by the watchdog once it lets go.
        job = wait_until(lambda: (j := g.store.get(out.job_id)).phase == "prepare" and j, what="the rollback")
        assert job.leftovers is None
        assert not dst.exists(dst.join("tree"))
        for s in (a, b):
            assert names(g.ops, s, "/b") == [] and count(g.ops, s, "/a/tree") == 20
        g.ops.mkdir(b, "/b/tree")  # every path is free
        with pytest.raises(E.InvalidState):
            g.ops.abandon_job(Session(ADMIN, "api"), out.job_id)
    finally:
        g.close()


def test_a_committed_job_abandoned_ends_failed_with_its_leftovers_described(tmp_path):
    g = build(tmp_path, mounts={"/a": slow(5), "/b": slow(1)}, max_attempts=50, step_retries=0,
              retry_backoff_s=0.05)
    try:
        a, b = sessions()
        make_tree(g.ops, a, "/a/tree", n=30)
        src = g.namespace.resolve("/a")[0].backend
        out = g.ops.move(a, "/a/tree", "/b/tree", budget_s=0)
        wait_until(lambda: g.store.get(out.job_id).committed, what="the commit")
        src.fs.fail_glob = "*"  # the source's storage fails every removal
        wait_until(lambda: g.store.get(out.job_id).attempts >= 2, what="a retried cleanup")
        with pytest.raises(E.InvalidState, match="committed"):
            g.ops.cancel_job(a, out.job_id)
        job = g.ops.abandon_job(Session(ADMIN, "api"), out.job_id)
        src.fs.fail_glob = None
        assert job.state == "failed" and job.phase == "done"
        assert job.leftovers and "show again under /a/tree" in job.leftovers
        assert g.ops.public_job(a, g.store.get(out.job_id))["leftovers"] == job.leftovers
        assert count(g.ops, b, "/b/tree") == 30  # the move happened
        g.ops.mkdir(b, "/a/tree/new")  # and no path stays busy
        g.ops.mkdir(b, "/b/tree/new")
    finally:
        g.close()


def test_the_initiators_property_on_the_projected_destination_is_kept_at_commit(gw):
    a, b = sessions()
    make_tree(gw.ops, a)
    gw.ops.set_property(a, "/tree/f001", "{urn:x}old", "<x:old xmlns:x='urn:x'>1</x:old>")
    out = gw.ops.move(a, "/tree", "/moved", budget_s=0)
    assert out.backgrounded
    gw.ops.set_property(a, "/moved/f001", "{urn:x}new", "<x:new xmlns:x='urn:x'>2</x:new>")
    gw.ops.set_property(a, "/moved", "{urn:x}root", "<x:root xmlns:x='urn:x'>3</x:root>")
    gw.ops.set_property(a, "/moved/f001", "{urn:x}old", None)  # removed at commit
    with pytest.raises(E.Busy):  # another session still may not
        gw.ops.set_property(b, "/moved/f001", "{urn:x}new", "<x/>")
    with pytest.raises(E.Busy):  # nor the initiator on the source
        gw.ops.set_property(a, "/tree/f002", "{urn:x}new", "<x/>")
    assert wait(gw, out.job_id).state == "completed"
    dav = gw.ops.davstate
    assert dav.props("/moved/f001") == {"{urn:x}new": "<x:new xmlns:x='urn:x'>2</x:new>"}
    assert dav.props("/moved") == {"{urn:x}root": "<x:root xmlns:x='urn:x'>3</x:root>"}
    assert dav.props("/tree/f001") == {}


def test_a_job_has_one_monitor_token(gw):
    a, _ = sessions()
    make_tree(gw.ops, a)
    out = gw.ops.move(a, "/tree", "/moved", budget_s=0)
    token = gw.ops.monitor_token(out.job)
    assert len(token) >= 43 and gw.ops.monitor_token(gw.store.get(out.job_id)) == token
    assert gw.ops.job_for_token(token).id == out.job_id
    assert gw.ops.job_for_token(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    wait(gw, out.job_id)


def test_an_abandoned_attempt_stuck_in_a_storage_call_is_rolled_back_once_it_lets_go(tmp_path):
    """The attempt hangs in a storage call and does not answer the stop: it
    is taken from its worker (cancelled at once), and what it wrote is
    removed only after the worker let go, so a late write leaves nothing."""
    g = build(tmp_path, mounts={"/a": slow(1), "/b": slow(1)}, stall_after_s=0.6)
    try:
        a, b = sessions()
        make_tree(g.ops, a, "/a/tree", n=30)
        g.namespace.resolve("/a")[0].backend.fs.latency_s = 0.03
        dst = g.namespace.resolve("/b")[0].backend
        out = g.ops.copy(a, "/a/tree", "/b/tree", budget_s=0)
        wait_until(lambda: g.store.get(out.job_id).items_done >= 3, what="copied files")
        dst.fs.latency_s = 1.5  # every call hangs
        job = g.dispatcher.abandon(out.job_id, timeout=0.2)
        assert (job.state, job.phase) == ("cancelled", "rollback") and "hidden" in job.leftovers
        dst.fs.latency_s = 0.001
        for s in (a, b):
            assert names(g.ops, s, "/b") == []
        wait_until(lambda: g.store.get(out.job_id).phase == "prepare", what="the watchdog's rollback")
        assert g.store.get(out.job_id).leftovers is None
        assert out.job_id not in g.dispatcher.running and not dst.exists(dst.join("tree"))
        g.ops.mkdir(b, "/b/tree")
    finally:
        g.close()


def test_a_remote_download_begun_before_a_commit_keeps_its_source_until_closed(gw):
    """A download from remote storage (here slow::memory) reads as it goes:
    opened before a move of its folder committed, its file stays on the
    storage until the download is closed; then the cleanup finishes."""
    a, b = sessions()
    ops = gw.ops
    make_tree(ops, a)
    before = count(ops, b, "/tree")
    f, _ = ops.open_read(b, "/tree/f001")
    out = ops.move(a, "/tree", "/moved")
    assert out.backgrounded
    wait_until(lambda: gw.store.get(out.job_id).committed, what="the move's commit")
    mount, bp = gw.namespace.resolve("/tree")

    def stored(path):
        return sum(1 + (stored(e.path) if e.is_dir else 0) for e in mount.backend.iterdir(path))

    time.sleep(0.5)  # the cleanup has had time to remove files, had it started
    assert stored(bp) == before
    with f:
        assert f.read() == b"B" * 10
    assert wait(gw, out.job_id).state == "completed"
    assert not mount.backend.exists(bp)


def test_a_failed_cleanup_counts_what_is_still_there_not_what_the_journal_says(tmp_path):
    """A move's journal still names as 'copied' files that a killed attempt
    removed without noting it: the leftovers a failed cleanup reports are
    the items still on the source's storage, looked at one by one."""
    root, mount = local_slow(tmp_path, latency_ms=0)
    g = build(tmp_path, mounts={"/": mount})
    try:
        a, _ = sessions()
        make_tree(g.ops, a, n=10)  # /tree: 7 files and sub/ with 2: 10 items
        job = g.store.create(Job(id="left1", queue="move", operation="move", src="/tree", dst="/moved",
                                 owner=a.user.name, session_id=a.id, protocol=a.protocol, state="running",
                                 heartbeat_at=time.time()))
        rels = sorted(str(p.relative_to(root / "tree")) for p in (root / "tree").rglob("*"))
        g.store.add_items(job, [(rel, (root / "tree" / rel).is_dir(), 10 * (root / "tree" / rel).is_file())
                                for rel in rels])
        ids = [item_id for item_id, *_ in g.store.items(job.id, "pending", limit=100)]
        assert g.store.mark_items(job, ids, "copied") is not None
        for gone in ("f001", "f002", "sub/f005"):  # removed, not journaled
            (root / "tree" / gone).unlink()
        assert g.dispatcher.runner.cleanup_leftovers(job) == (
            "7 item(s), 60 bytes, of the source were not removed and show again under /tree: remove them by hand")
    finally:
        g.close()
