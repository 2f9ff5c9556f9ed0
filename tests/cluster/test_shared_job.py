"""One big job, many nodes: a job's journaled items are claimed in batches
by idle workers of any node (advisory locks; the attempt number fences
what they journal), the commit stays one step, done once by the job's own
worker."""

from __future__ import annotations

import hashlib
import fsspec
import pytest

from conftest import unique_memory, wait_until
from gateway.app import Gateway
from gateway.jobs.store import BATCH_ITEMS
from gateway.types import Session
from gateway.users import User
from pg import pg_url  # noqa: F401 - pg_url is a fixture

pytestmark = pytest.mark.e2e

FOLDERS, PER_FOLDER = 3, 300  # 904 items: several batches


def _spy_batches(gw) -> list[int]:
    """Count the batches ``gw``'s workers copy for other workers' jobs."""
    helped: list[int] = []
    runner = gw.dispatcher.runner
    real = runner.help

    def help(job):
        done = real(job)
        if done:
            helped.append(1)
        return done

    runner.help = help
    return helped


def test_idle_workers_of_other_nodes_copy_batches_of_one_move(tmp_path, pg_url):
    url = pg_url.replace("postgresql://", "postgresql+psycopg://")
    root = unique_memory()
    slow = (f"slow::memory://{root}", {"slow": {"latency_ms": 2}})
    queues = {"move": 1}
    a = Gateway.build({"/": slow}, tmp_path / "a", store_url=url, node="a", budget_s=0, queues=queues)
    b = Gateway.build({"/": slow}, tmp_path / "b", store_url=url, node="b", budget_s=0, queues=queues)
    c = Gateway.build({"/": slow}, tmp_path / "c", store_url=url, node="c", budget_s=0, queues=queues)
    helped_b, helped_c = _spy_batches(b), _spy_batches(c)
    nodes = [a.start(), b.start(), c.start()]
    try:
        wait_until(lambda: all(g.bus.trusted for g in nodes), 10, "the buses to listen")
        s = Session(User("alice"), "ftp")
        want = {}
        memory = fsspec.filesystem("memory")  # the source is made behind the gateway: quicker
        for d in range(FOLDERS):
            memory.mkdir(f"/{root}/src/d{d}")
            for i in range(PER_FOLDER):
                data = f"{d}/{i}\n".encode() * (i % 7 + 1)
                memory.pipe_file(f"/{root}/src/d{d}/f{i}", data)
                want[f"/dst/d{d}/f{i}"] = hashlib.sha256(data).hexdigest()
        out = a.ops.move(s, "/src", "/dst")
        assert out.backgrounded
        owner = wait_until(lambda: a.store.get(out.job_id).node, 30, "the move to be claimed")
        # A helper that goes away mid-job leaves what it holds to the others.
        wait_until(lambda: helped_b or helped_c or a.store.get(out.job_id).terminal, 60, "a helper to copy a batch")
        leaver = next(g for g in (b, c) if g.dispatcher.node != owner)
        leaver.close()
        nodes.remove(leaver)

        job = a.dispatcher.wait(out.job_id, 120)
        assert job.state == "completed", job
        items = FOLDERS * (PER_FOLDER + 1) + 1
        assert job.items_done == job.items_total == items
        assert job.attempts == 1 and job.node == owner
        assert items > 3 * BATCH_ITEMS - 2 and helped_b + helped_c  # the others did some
        got = {}
        for d in range(FOLDERS):
            for e in a.ops.list(s, f"/dst/d{d}"):
                f, _ = a.ops.open_read(s, f"/dst/d{d}/{e.name}")
                with f:
                    got[f"/dst/d{d}/{e.name}"] = hashlib.sha256(f.read()).hexdigest()
        assert got == want
        assert [e.name for e in a.ops.list(s, "/")] == ["dst"]
    finally:
        for g in reversed(nodes):
            g.close()
