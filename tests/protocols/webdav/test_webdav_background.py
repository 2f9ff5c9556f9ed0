"""Backgrounded COPY/MOVE/DELETE over WebDAV: 202 + monitor URL for clients
that ask for it, 201/204 for the rest, and the consistency view between
sessions."""

from __future__ import annotations

import time

import pytest

from conftest import unique_memory
from webdav_helpers import PROPPATCH, client, colour, exists, listing

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

LAZY = {"OC-LazyOps": "true"}
LOCKINFO = (b'<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
            b'</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>test</D:owner></D:lockinfo>')


@pytest.fixture
def slow_dav(gateway_factory, tmp_path):
    def start(budget_ms: int = 2000, latency_ms: int = 5):
        data = tmp_path / f"data-{time.monotonic_ns()}"
        data.mkdir()
        return gateway_factory(protocols=("http",), budget_ms=budget_ms, mounts={
            "/": f"file://{data}",
            "/slow": (f"slow::memory://{unique_memory()}", {"slow": {"latency_ms": latency_ms}}),
        })
    return start


def _tree(r, folder: str, n: int) -> None:
    s = r.session("alice")
    r.ops.mkdir(s, folder)
    for i in range(n):
        up = r.ops.open_write(s, f"{folder}/f{i:03d}.txt")
        up.write(b"x" * 64)
        up.commit()


def _job(r, location: str):
    assert location.startswith("/api/v1/monitor/")
    job = r.ops.job_for_token(location.rsplit("/", 1)[-1])
    assert job is not None
    return job


def test_lazy_move_of_200_files_is_202_and_other_sessions_see_the_old_tree_until_commit(slow_dav):
    r = slow_dav()
    _tree(r, "/slow/src", 200)
    with client(r, session="mover") as mover, client(r, session="watcher") as watcher:
        assert mover.request("PROPPATCH", "/slow/src/f007.txt", content=PROPPATCH).status_code == 207
        t0 = time.monotonic()
        resp = mover.request("MOVE", "/slow/src", headers={"Destination": "/dav/slow/dst", **LAZY})
        assert resp.status_code == 202, resp.text
        assert time.monotonic() - t0 < 3  # answered without waiting for the job
        location = resp.headers["Location"]
        assert resp.headers["OC-JobStatus-Location"] == location
        job = _job(r, location)
        assert job.operation == "move"

        # The initiating session sees the outcome at once.
        assert "dst" in listing(mover, "/slow") and "src" not in listing(mover, "/slow")
        assert len(listing(mover, "/slow/dst")) == 200
        # Another session sees the old tree while the job has not committed.
        seen_old = False
        while not r.ops.store.get(job.id).committed:
            names = listing(watcher, "/slow")
            if not r.ops.store.get(job.id).committed:  # still before commit after the listing
                assert names == {"src"}, names
                seen_old = True
            time.sleep(0.05)
        assert seen_old, "the job committed before another session could look"

        done = r.gw.dispatcher.wait(job.id, 60)
        assert done.state == "completed", done
        assert listing(watcher, "/slow") == {"dst"}
        assert len(listing(watcher, "/slow/dst")) == 200
        # Its dead properties moved with it when it committed.
        assert colour(watcher, "/slow/dst/f007.txt") == "blue"


def test_plain_client_gets_201_while_the_job_runs_on(slow_dav):
    r = slow_dav(budget_ms=50)
    _tree(r, "/slow/a", 40)
    with client(r, session="plain") as c, client(r, session="other") as other:
        resp = c.request("MOVE", "/slow/a", headers={"Destination": "/dav/slow/b"})
        assert resp.status_code == 201, resp.text
        assert "Location" not in resp.headers
        assert listing(c, "/slow") == {"b"}
        job = r.ops.list_jobs(r.session("alice"))[0]
        assert job.operation == "move"
        if r.ops.store.get(job.id).committed_at is None:
            assert "a" in listing(other, "/slow")
        assert r.gw.dispatcher.wait(job.id, 60).state == "completed"
        assert listing(other, "/slow") == {"b"}


def test_a_move_on_slow_storage_replies_when_the_budget_is_spent(slow_dav):
    """The budget counts from the request's arrival, and a plain MOVE makes
    only the core's lookups (source, destination, its parent): at 150 ms a
    storage call the reply comes at ~0.45 s, not after wsgidav's own three
    lookups as well (~0.9 s). At 300 ms a call the two differ by ~0.9 s, so
    a loaded machine's delays do not blur them."""
    r = slow_dav(budget_ms=400, latency_ms=0)
    _tree(r, "/slow/a", 10)
    r.gw.namespace.resolve("/slow")[0].backend.fs.latency_s = 0.3
    with client(r, session="plain") as c:
        began = time.monotonic()
        resp = c.request("MOVE", "/slow/a", headers={"Destination": "/dav/slow/b", **LAZY})
        took = time.monotonic() - began
        assert resp.status_code == 202, resp.text
        assert took < 1.35, took  # three lookups ~0.9 s; six would be ~1.8 s
        assert r.gw.dispatcher.wait(_job(r, resp.headers["Location"]).id, 60).state == "completed"


def test_a_folder_delete_replies_before_its_trash_is_emptied(gateway_factory, tmp_path):
    """On a disk that renames atomically a DELETE of a folder answers 204 as
    soon as the folder is renamed to the trash: the folder is gone for every
    client and its name can be taken again (litmus: DELETE then MKCOL) while
    a job still empties the trash."""
    disk = tmp_path / "disk"
    disk.mkdir()
    r = gateway_factory(protocols=("http",), budget_ms=10_000,
                        mounts={"/": (f"slow::file://{disk}", {"slow": {"latency_ms": 0}})})
    _tree(r, "/t", 40)
    r.gw.namespace.resolve("/")[0].backend.fs.latency_s = 0.02  # emptying takes ~1 s
    with client(r, session="deleter") as c, client(r, session="other") as other:
        resp = c.delete("/t")
        assert resp.status_code == 204, resp.text
        job = r.ops.list_jobs(r.session("alice"))[0]
        assert job.operation == "delete" and r.ops.store.get(job.id).state == "running"
        assert "t" not in listing(other, "/")
        assert other.request("MKCOL", "/t").status_code == 201
        assert r.gw.dispatcher.wait(job.id, 60).state == "completed"
        assert listing(c, "/t") == set()
    assert sorted(p.name for p in disk.iterdir()) == ["t"]


def test_lazy_copy_and_delete_answer_202_and_a_write_into_the_job_is_423(slow_dav):
    r = slow_dav(latency_ms=10)
    _tree(r, "/slow/t", 60)
    with client(r) as c:
        resp = c.request("COPY", "/slow/t", headers={"Destination": "/dav/slow/t2", "Prefer": "respond-async"})
        assert resp.status_code == 202, resp.text
        job = _job(r, resp.headers["Location"])
        busy = c.put("/slow/t2/new.txt", content=b"no")
        assert busy.status_code == 423, busy.text
        assert busy.headers["Content-Type"].startswith("text/plain")
        assert "busy" in busy.text
        assert r.gw.dispatcher.wait(job.id, 60).state == "completed"
        assert len(listing(c, "/slow/t2")) == 60

        resp = c.request("DELETE", "/slow/t2", headers=LAZY)
        assert resp.status_code == 202, resp.text
        job = _job(r, resp.headers["OC-JobStatus-Location"])
        assert not exists(c, "/slow/t2")
        assert r.gw.dispatcher.wait(job.id, 60).state == "completed"
        assert listing(c, "/slow") == {"t"}


def test_doomed_requests_get_their_4xx_never_a_202(slow_dav, gateway_factory):
    r = slow_dav()
    _tree(r, "/slow/src", 3)
    _tree(r, "/slow/taken", 1)
    with client(r) as c:
        cases = [
            ("MOVE", "/slow/missing", {"Destination": "/dav/slow/x"}, 404),
            ("MOVE", "/slow/src", {"Destination": "/dav/slow/taken", "Overwrite": "F"}, 412),
            ("COPY", "/slow/src", {"Destination": "/dav/slow/nowhere/x"}, 409),
            ("MOVE", "/slow/src", {"Destination": "/dav/slow/src/inside"}, 403),
            ("DELETE", "/slow/missing", {}, 404),
            ("MOVE", "/slow/src", {"Destination": "/dav/slow/.gw-reserved"}, 400),
        ]
        for method, path, headers, status in cases:
            resp = c.request(method, path, headers={**headers, **LAZY})
            assert resp.status_code == status, (method, path, headers, resp.status_code, resp.text)
        lock = c.request("LOCK", "/slow/src", content=LOCKINFO)
        assert lock.status_code == 200, lock.text
        with client(r, session="no-token") as other:
            resp = other.request("MOVE", "/slow/src", headers={"Destination": "/dav/slow/y", **LAZY})
            assert resp.status_code == 423, resp.text
    assert r.ops.list_jobs(r.session("admin")) == []

    ro = gateway_factory(protocols=("http",), users={"alice": {"permissions": ["list", "download"]}})
    (ro.data / "d").mkdir()
    (ro.data / "d" / "f").write_bytes(b"1")
    with client(ro) as c:
        for method in ("MOVE", "COPY"):
            resp = c.request(method, "/d", headers={"Destination": "/dav/e", **LAZY})
            assert resp.status_code == 403, resp.text
        assert c.request("DELETE", "/d", headers=LAZY).status_code == 403


def test_lock_and_proppatch_on_paths_a_job_owns_are_busy(slow_dav):
    """LOCK and PROPPATCH are writes: on a folder a job is moving (source or
    destination) they answer 423 like any other write, and change nothing."""
    r = slow_dav(latency_ms=20)
    _tree(r, "/slow/src", 100)
    with client(r, session="mover") as mover, client(r, session="other") as other:
        resp = mover.request("MOVE", "/slow/src", headers={"Destination": "/dav/slow/dst", **LAZY})
        assert resp.status_code == 202, resp.text
        job = _job(r, resp.headers["Location"])
        for path in ("/slow/src/f001.txt", "/slow/src"):
            assert other.request("LOCK", path, content=LOCKINFO).status_code == 423
            patched = other.request("PROPPATCH", path, content=PROPPATCH)
            assert patched.status_code == 423 and "busy, in use by job" in patched.text, patched.text
        assert r.ops.store.get(job.id).state in ("queued", "running"), "the job ended too soon to tell"
        r.ops.wait_job(r.session("alice"), job.id, 60)
    assert r.ops.davstate.locks("/", include_children=True) == []
    assert colour(client(r), "/slow/dst/f001.txt") is None
