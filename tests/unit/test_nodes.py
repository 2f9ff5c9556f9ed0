"""One node's side of the distributed mode, in the embedded SQLite mode
(the cluster tests run the same over PostgreSQL with several processes):
readiness, the nodes table and drain, bans and portal sessions kept in the
store across a restart, the schema guard, the node id in log lines."""

from __future__ import annotations

import io
import json
import logging
import time

import fsspec
import httpx
import pytest
import sqlalchemy as sa

from gateway.app import Gateway
from gateway.config import ConfigError, Logging
from gateway.jobs.store import JobStore, SchemaTooNew
from gateway.logs import setup_logging
from gateway.nodes import list_nodes, set_draining
from gateway.types import Session
from gateway.users import User

from conftest import PASSWORDS, start_gateway, unique_memory, wait_until


def test_healthz_and_readyz_follow_the_workers_and_the_drain_flag(gateway_factory):
    r = gateway_factory(protocols=("http",))
    base = f"http://127.0.0.1:{r.port('http')}"
    node = r.cfg.server.node_id
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok", "node": node}
    ready = httpx.get(f"{base}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert set(ready.json()["checks"]) == {"store", "workers", "draining", "heartbeat"}
    assert httpx.head(f"{base}/readyz").status_code == 200

    # The flag in the store, as `gateway drain` sets it: within a heartbeat
    # the node drains and says so.
    set_draining(r.gw.store.engine, node)
    wait_until(lambda: r.gw.dispatcher.draining, what="the drain flag")
    ready = httpx.get(f"{base}/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["draining"].startswith("draining")
    assert [(n.node, n.draining) for n in list_nodes(r.gw.store.engine)] == [(node, True)]
    set_draining(r.gw.store.engine, node, False)
    wait_until(lambda: httpx.get(f"{base}/readyz").status_code == 200, what="ready again")

    # A check another part registers counts too.
    r.gw.readiness.add("listener", lambda: "not listening")
    assert httpx.get(f"{base}/readyz").json()["checks"]["listener"] == "not listening"


def test_a_drained_node_hands_its_running_job_back(tmp_path):
    root = unique_memory()
    memory = fsspec.filesystem("memory")  # the source is made behind the gateway: quicker
    for i in range(80):
        memory.pipe_file(f"/{root}/t/f{i}", b"x")
    slow = (f"slow::memory://{root}", {"slow": {"latency_ms": 30}})
    g = Gateway.build({"/": slow}, tmp_path / "var", node="n1", budget_s=0, max_attempts=2, step_retries=0,
                      retry_backoff_s=2.0).start()
    try:
        s = Session(User("alice"), "ftp")
        job_id = g.ops.copy(s, "/t", "/u").job_id
        wait_until(lambda: g.store.get(job_id).items_done > 0)
        # Handed back more often than max_attempts: a planned handover is no failure.
        for attempt in (1, 2, 3):
            wait_until(lambda: (j := g.store.get(job_id)).state == "running" and j.attempts == attempt)
            set_draining(g.store.engine, "n1")  # as `gateway drain n1` does
            queued = wait_until(lambda: (j := g.store.get(job_id)).state != "running" and j)
            assert queued.attempts == attempt, queued
            assert queued.state == "queued", queued
            if attempt == 1:
                time.sleep(0.3)
                assert g.store.get(job_id).state == "queued"  # a draining node claims nothing
            if attempt == 3:  # the next attempt's storage fails
                g.namespace.resolve("/")[0].backend.fs.fail_glob = "*/u/*"
            set_draining(g.store.engine, "n1", False)
        # Its first failure after them is retried, not "too many attempts".
        retried = wait_until(lambda: (j := g.store.get(job_id)).attempts == 4 and j.state != "running" and j)
        assert retried.state == "queued" and "injected fault" in retried.error
        g.namespace.resolve("/")[0].backend.fs.fail_glob = None
        done = g.dispatcher.wait(job_id, 60)
        assert done.state == "completed" and done.attempts == 5 and done.items_done == done.items_total == 81
    finally:
        g.close()
    store = JobStore(f"sqlite:///{tmp_path / 'var' / 'jobs.db'}")
    assert list_nodes(store.engine) == []  # a clean stop leaves the nodes table
    store.close()


def test_bans_and_portal_sessions_survive_a_restart(tmp_path):
    from gateway.api.portal import Portal

    r = start_gateway(tmp_path, sections={"auth": {"max_failures": 2, "ban_s": 600}})
    try:
        token = Portal(r.gw).login("alice", PASSWORDS["alice"], "127.0.0.1", tls=False)[0]
        for _ in range(2):
            r.gw.auth.record_failure("alice", "192.0.2.7:4000", "password")
        assert r.gw.auth.is_banned("192.0.2.7")
    finally:
        r.close()
    r = start_gateway(tmp_path, sections={"auth": {"max_failures": 2, "ban_s": 600}})
    try:
        assert r.gw.auth.is_banned("192.0.2.7:1234") and not r.gw.auth.is_banned("192.0.2.8")
        user, login = Portal(r.gw).lookup(token)
        assert user.name == "alice" and login.session_id.startswith("http:alice:ui-")
        Portal(r.gw).logout(token)
        assert Portal(r.gw).lookup(token) is None
    finally:
        r.close()


def test_a_store_newer_than_this_version_is_refused_in_one_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    JobStore(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    engine.dispose()
    with pytest.raises(SchemaTooNew, match="revision 9999, newer than this gateway knows"):
        JobStore(url)
    with pytest.raises(ConfigError) as e:
        Gateway.build({"/": f"memory://{unique_memory()}"}, tmp_path, store_url=url)
    assert "\n" not in str(e.value) and "upgrade the gateway" in str(e.value)


def test_every_log_line_names_the_node():
    stream = io.StringIO()
    try:
        setup_logging(Logging(), stream, node="node-7")
        logging.getLogger("gateway.x").warning("hello")
        setup_logging(Logging(format="json"), stream, node="node-7")
        logging.getLogger("gateway.x").warning("again")
    finally:
        for h in list(logging.getLogger().handlers):
            if getattr(h, "_gateway_handler", False):
                logging.getLogger().removeHandler(h)
    text, js = stream.getvalue().splitlines()
    assert text.endswith("Z node-7 WARNING gateway.x: hello")
    assert json.loads(js)["node"] == "node-7"


def test_a_superseded_attempt_that_fails_leaves_the_destination_to_the_new_one(tmp_path):
    """A node that froze while another took its job over, and then hits a
    storage error, must not roll back: the destination is the new attempt's."""
    import shutil

    from gateway.jobs.schema import jobs

    src = tmp_path / "src"
    (src / "t").mkdir(parents=True)
    for i in range(40):
        (src / "t" / f"f{i:02}").write_bytes(b"x" * 100)
    (tmp_path / "dst").mkdir()
    opts = {"slow": {"latency_ms": 30}}
    g = Gateway.build({"/a": (f"slow::file://{src}", opts), "/b": (f"slow::file://{tmp_path / 'dst'}", opts)},
                      tmp_path / "var", node="n1", budget_s=0, heartbeat_s=30.0).start()
    try:
        s = Session(User("alice"), "ftp")
        job_id = g.ops.copy(s, "/a/t", "/b/t").job_id
        wait_until(lambda: len(list((tmp_path / "dst").rglob("f*"))) >= 3, what="three copied files")
        with g.store.engine.begin() as c:  # another node took it over (a new attempt)
            c.execute(jobs.update().where(jobs.c.id == job_id).values(attempts=jobs.c.attempts + 1, node="n2"))
        shutil.rmtree(src / "t")  # the old attempt's next step fails
        wait_until(lambda: g.dispatcher.busy == 0, what="idle workers")
        job = g.store.get(job_id)
        assert (job.state, job.node, job.attempts) == ("running", "n2", 2)
        assert list((tmp_path / "dst").rglob("f*")), "the superseded attempt removed the destination"
    finally:
        g.close()


def test_bans_fall_back_to_this_node_while_the_store_is_away(tmp_path):
    from gateway.bans import StoredBans
    from gateway.config import Auth

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    JobStore(url).close()
    engine = sa.create_engine(url)
    bans = StoredBans(engine, Auth(max_failures=2, ban_s=60))
    assert bans.fail("192.0.2.1") == (1, False)
    with engine.begin() as c:  # the store loses its tables: every query fails
        c.exec_driver_sql("DROP TABLE login_bans")
        c.exec_driver_sql("DROP TABLE login_failures")
    assert bans.banned_for("192.0.2.1") == 0.0
    assert bans.fail("192.0.2.1") == (1, False) and bans.fail("192.0.2.1") == (2, True)
    assert bans.banned_for("192.0.2.1") > 59
    engine.dispose()
