"""The same job store schema and job lifecycle on PostgreSQL (the store of
the distributed mode), against the server this machine kind runs on
127.0.0.1:5432."""

import time

import pytest
import sqlalchemy as sa

from gateway.app import Gateway
from gateway.fileids import storage_etag
from gateway.jobs.store import SCHEMA_HEAD
from gateway.types import Session
from gateway.users import User

from conftest import pg_database, unique_memory

@pytest.fixture
def pg_url():
    with pg_database() as url:
        yield url


def test_backgrounded_move_on_postgresql_store(tmp_path, pg_url):
    slow = (f"slow::memory://{unique_memory()}", {"slow": {"latency_ms": 10}})
    g = Gateway.build({"/": slow}, tmp_path / "var", store_url=pg_url, budget_s=0.2).start()
    try:
        a, b = Session(User("alice"), "ftp"), Session(User("alice"), "sftp")
        g.ops.mkdir(a, "/t")
        for i in range(30):
            g.ops.open_write(a, f"/t/f{i}").commit()
        out = g.ops.move(a, "/t", "/u")
        assert out.backgrounded
        assert [e.name for e in g.ops.list(a, "/")] == ["u"]
        assert [e.name for e in g.ops.list(b, "/")] == ["t"]
        job = g.dispatcher.wait(out.job_id, 60)
        assert job.state == "completed" and job.items_done == job.items_total == 31
        assert [e.name for e in g.ops.list(b, "/")] == ["u"]
        with sa.create_engine(pg_url).connect() as c:
            assert c.exec_driver_sql("select version_num from alembic_version").scalar() == SCHEMA_HEAD
    finally:
        g.close()


def test_a_move_job_keeps_etags_on_postgresql(tmp_path, pg_url):
    """A folder moved as a job by copy into a mount that keeps no times
    (each copy a new storage ETag), its batches claimed by the store's
    workers: the copies' stamps journaled with each batch, each file keeps
    the ETag the sync URLs served before."""
    mounts = {"/": (f"slow::memory://{unique_memory()}", {"slow": {"latency_ms": 2}}),
              "/b": (f"slow::memory://{unique_memory()}", {"slow": {"latency_ms": 2}})}
    g = Gateway.build(mounts, tmp_path / "var", store_url=pg_url, budget_s=0).start()
    try:
        s = Session(User("alice"), "ftp")
        g.ops.mkdir(s, "/t")
        names = [f"/t/f{i}" for i in range(30)]
        for n in names:
            w = g.ops.open_write(s, n)
            w.write(n.encode())
            w.commit()

        def etag(path):
            return g.ops.file_ids(s, [path])[0].served_etag(g.ops.stat(s, path))

        before = {n: etag(n) for n in names}
        time.sleep(0.002)  # the copies' times differ from the originals'
        out = g.ops.move(s, "/t", "/b/u")
        assert g.dispatcher.wait(out.job_id, 60).state == "completed"
        after = {n: etag("/b/u" + n[2:]) for n in names}
        assert after == before
        assert all(storage_etag(g.ops.stat(s, "/b/u" + n[2:])) != before[n] for n in names)
    finally:
        g.close()


def test_jobs_queued_by_another_node_run_side_by_side(tmp_path, pg_url):
    """Node b queues four moves and runs no workers; node a's polling worker
    finds the first and wakes another to look for more, so all four run at
    once rather than one after another."""
    slow = (f"slow::memory://{unique_memory()}", {"slow": {"latency_ms": 10}})
    a = Gateway.build({"/": slow}, tmp_path / "a", store_url=pg_url, node="a", budget_s=0)
    a.dispatcher.poll_s = 0.2
    a.start()
    b = Gateway.build({"/": slow}, tmp_path / "b", store_url=pg_url, node="b", budget_s=0)
    try:
        s = Session(User("alice"), "ftp")
        for d in range(4):
            b.ops.mkdir(s, f"/d{d}")
            for i in range(15):
                b.ops.open_write(s, f"/d{d}/f{i}").commit()
        ids = [b.ops.move(s, f"/d{d}", f"/e{d}").job_id for d in range(4)]  # a's workers are all idle by now
        jobs = [a.dispatcher.wait(job_id, 60) for job_id in ids]
        assert [(j.state, j.node) for j in jobs] == [("completed", "a")] * 4
        assert max(j.started_at for j in jobs) < min(j.finished_at for j in jobs), jobs
    finally:
        a.close()
        b.close()


def test_journaled_items_count_once_each_on_postgresql(pg_url):
    """psycopg gives no row count for a many-row insert: the totals must
    still grow by exactly what was new (a job's progress depends on them)."""
    from gateway.jobs.model import Job
    from gateway.jobs.store import JobStore

    store = JobStore(pg_url)
    try:
        job = store.create(Job(id="j1", queue="copy", operation="copy", src="/a", dst="/b", owner="alice",
                               session_id="s", protocol="ftp", state="queued", phase="prepare"))
        assert store.add_items(job, [("", True, 0), ("f1", False, 10), ("f2", False, 5)]) == (3, 15)
        assert store.add_items(job, [("f2", False, 5), ("f3", False, 1)]) == (1, 1)
        got = store.get("j1")
        assert (got.items_total, got.bytes_total) == (4, 16) == store.count_items("j1")
    finally:
        store.close()


def test_stores_opened_at_once_migrate_one_database_once(pg_url):
    """Nodes starting together: each opens the store, one creates the
    schema under the advisory lock, the others wait and find it made."""
    import threading

    from gateway.jobs.store import JobStore

    engine = sa.create_engine(pg_url)
    with engine.begin() as c:  # an older schema, so the migrations themselves run
        from alembic import command
        from alembic.config import Config

        from gateway.jobs.store import _MIGRATIONS

        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        cfg.attributes["connection"] = c
        command.upgrade(cfg, "0003")
    opened, failed = [], []

    def open_store():
        try:
            opened.append(JobStore(pg_url))
        except Exception as e:  # noqa: BLE001
            failed.append(e)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert failed == [] and len(opened) == 4
        assert {s.schema_revision() for s in opened} == {SCHEMA_HEAD}
        with engine.connect() as c:
            assert c.exec_driver_sql("select count(*) from alembic_version").scalar() == 1
            # 0010: the subtree conditions' indexes, on the paths in byte order
            defs = c.exec_driver_sql("select indexdef from pg_indexes where right(indexname, 6) = '_bytes'")
            assert set(defs.scalars()) == {
                'CREATE INDEX ix_file_ids_path_bytes ON public.file_ids USING btree (path COLLATE "C")',
                'CREATE INDEX ix_dav_props_path_bytes ON public.dav_props USING btree (path COLLATE "C")',
                'CREATE INDEX ix_dav_locks_root_bytes ON public.dav_locks USING btree (root COLLATE "C")'}
    finally:
        for s in opened:
            s.close()
        engine.dispose()


def test_a_second_live_node_with_the_same_id_is_refused(tmp_path, pg_url, monkeypatch):
    """Two nodes given one node_id would each take the other's running jobs
    for their own: the second refuses to start while the first beats."""
    import threading
    import time

    from gateway.config import ConfigError
    from gateway.jobs.schema import nodes
    from gateway.jobs.store import JobStore
    from gateway.nodes import NodeRegistry

    monkeypatch.setattr(NodeRegistry, "_late_s", lambda self: 0.5)
    store = JobStore(pg_url)
    beating = threading.Event()

    def other_process_beats():  # a row another host's process keeps fresh
        with store.engine.begin() as c:
            c.execute(nodes.insert().values(node="n1", host="elsewhere", pid=1, version="x", started_at=time.time(),
                                            heartbeat_at=time.time(), draining=False))
        while not beating.wait(0.1):
            with store.engine.begin() as c:
                c.execute(nodes.update().where(nodes.c.node == "n1").values(heartbeat_at=time.time()))

    t = threading.Thread(target=other_process_beats)
    t.start()
    try:
        time.sleep(0.3)
        with pytest.raises(ConfigError, match="node id 'n1' is in use by a running node \\(elsewhere, pid 1\\)"):
            Gateway.build({"/": f"memory://{unique_memory()}"}, tmp_path / "a", store_url=pg_url, node="n1")
    finally:
        beating.set()
        t.join()
    # Once it stopped beating (a node killed a moment ago), the id is free.
    g = Gateway.build({"/": f"memory://{unique_memory()}"}, tmp_path / "b", store_url=pg_url, node="n1").start()
    g.close()
    store.close()
