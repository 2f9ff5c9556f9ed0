"""Wake-ups across nodes: an enqueue on one node wakes an idle worker of
another through LISTEN/NOTIFY, so nobody polls the store for work."""

from __future__ import annotations

import pytest

from conftest import unique_memory, wait_until
from gateway.app import Gateway
from gateway.types import Session
from gateway.users import User
from pg import pg_url  # noqa: F401 - pg_url is a fixture

pytestmark = pytest.mark.e2e

NEVER_S = 3600.0  # a poll interval no test outlives


def test_an_enqueue_on_b_wakes_an_idle_worker_on_a(tmp_path, pg_url):
    """A's workers would look in the store on their own only after an hour;
    B runs no workers. B's move is taken and finished by A all the same."""
    url = pg_url.replace("postgresql://", "postgresql+psycopg://")
    slow = (f"slow::memory://{unique_memory()}", {"slow": {"latency_ms": 5}})
    a = Gateway.build({"/": slow}, tmp_path / "a", store_url=url, node="a", budget_s=0,
                      queues={"move": 2}, safety_poll_s=NEVER_S)
    a.dispatcher.poll_s = NEVER_S  # the poll while the bus is down, too
    b = Gateway.build({"/": slow}, tmp_path / "b", store_url=url, node="b", budget_s=0, queues={"move": 1})
    a.start()
    b.bus.start()  # B's workers are not started: only A can run the job
    try:
        wait_until(lambda: a.bus.trusted and b.bus.trusted, 10, "both buses to listen")
        wait_until(lambda: a.dispatcher._polling["move"] and a.dispatcher.busy == 0, 10, "A's workers to be idle")
        s = Session(User("alice"), "ftp")
        b.ops.mkdir(s, "/d")
        for i in range(5):
            b.ops.open_write(s, f"/d/f{i}").commit()
        out = b.ops.move(s, "/d", "/e")
        assert out.backgrounded
        job = a.dispatcher.wait(out.job_id, 60)  # far below A's polls
        assert (job.state, job.node, job.items_done) == ("completed", "a", 6)
        assert [e.name for e in b.ops.list(s, "/")] == ["e"]
    finally:
        b.close()
        a.close()
