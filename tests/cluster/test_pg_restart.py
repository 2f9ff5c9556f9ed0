"""PostgreSQL restarted while a job runs: the node's workers, its bus and
the job itself wait for the server and carry on; the job completes once,
nothing lost, nothing twice.

RESTARTS THIS MACHINE'S POSTGRESQL once (``pg_ctlcluster 15 main
restart``, a second or two): every other test using the server at that
moment sees its connections dropped. Marked ``restarts_postgresql``."""

from __future__ import annotations

import hashlib

import pytest

from conftest import unique_memory, wait_until
from gateway.app import Gateway
from gateway.types import Session
from gateway.users import User
from pg import pg_url, restart_postgresql  # noqa: F401 - pg_url is a fixture

pytestmark = [pytest.mark.e2e, pytest.mark.restarts_postgresql]

FILES = 60


def test_a_job_completes_across_a_postgresql_restart(tmp_path, pg_url):
    url = pg_url.replace("postgresql://", "postgresql+psycopg://")
    slow = (f"slow::memory://{unique_memory()}", {"slow": {"latency_ms": 40}})
    a = Gateway.build({"/": slow}, tmp_path / "a", store_url=url, node="a", budget_s=0, queues={"copy": 1},
                      stall_after_s=60).start()
    b = Gateway.build({"/": slow}, tmp_path / "b", store_url=url, node="b", budget_s=0,
                      queues={"copy": 1}).start()
    try:
        wait_until(lambda: a.bus.trusted and b.bus.trusted, 10, "both buses to listen")
        s = Session(User("alice"), "ftp")
        a.ops.mkdir(s, "/src")
        want = {}
        for i in range(FILES):
            data = f"file {i}\n".encode() * (i + 1)
            w = a.ops.open_write(s, f"/src/f{i:03}")
            w.write(data)
            w.commit()
            want[f"f{i:03}"] = hashlib.sha256(data).hexdigest()
        out = a.ops.copy(s, "/src", "/dst")
        assert out.backgrounded
        wait_until(lambda: a.store.get(out.job_id).items_done >= 5, 60, "the copy to be under way")

        restart_postgresql()
        job = wait_until(lambda: _ended(a, out.job_id), 120, "the copy to end after the restart")
        assert job.state == "completed", job
        assert job.items_done == job.items_total == FILES + 1
        assert job.attempts == 1  # the same attempt carried on
        got = {}
        for e in a.ops.list(s, "/dst"):
            f, _ = a.ops.open_read(s, f"/dst/{e.name}")
            with f:
                got[e.name] = hashlib.sha256(f.read()).hexdigest()
        assert got == want
        # Both buses are back: B learns of A's changes again.
        wait_until(lambda: a.bus.trusted and b.bus.trusted, 30, "both buses to reconnect")
        a.ops.mkdir(s, "/after")
        wait_until(lambda: "after" in {e.name for e in b.ops.list(s, "/")}, 10, "B to list A's new folder")
    finally:
        b.close()
        a.close()


def _ended(gw, job_id):
    try:
        job = gw.store.get(job_id)
    except Exception:  # noqa: BLE001 - the server may still be coming back
        return None
    return job if job.terminal else None
