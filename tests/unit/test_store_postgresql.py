"""The same job store schema and job lifecycle on PostgreSQL (the store of
the distributed mode), against the server this machine kind runs on
127.0.0.1:5432."""

import uuid

import pytest
import sqlalchemy as sa

from gateway.app import Gateway
from gateway.jobs.store import SCHEMA_HEAD
from gateway.types import Session
from gateway.users import User

from conftest import unique_memory

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def pg_url():
    name = f"gw_test_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with admin.connect() as c:
        c.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.dispose()


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
