"""A storage server that goes away in the middle of a job: the job retries
with backoff and completes once the server is back, or, when it stays away
past the retries, fails cleanly with the storage's error while every
session keeps seeing the committed tree."""

from __future__ import annotations

import os
import time

import fsspec
import pytest
from conftest import unique_memory
from servers import fresh_server, mount_spec  # noqa: F401 - fresh_server is a fixture

from gateway import errors as E

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

# Fast retries: each step 3 times (0.2 s, 0.4 s, 0.8 s apart), then the job
# is queued again with backoff, 5 attempts in all.
RETRYING = {"jobs": {"step_retries": 3, "retry_backoff_ms": 200, "max_attempts": 5, "heartbeat_s": 0.25}}


def _slow_source(files: dict[str, bytes]) -> tuple[str, dict]:
    """A ``slow::memory`` mount holding ``files`` whose reads run at
    200 kB/s each, so a job over it lasts long enough to pull the plug."""
    root = unique_memory("fault")
    mem = fsspec.filesystem("memory")
    for rel, data in files.items():
        mem.pipe_file(f"/{root}/{rel}", data)
    return f"slow::memory://{root}", {"slow": {"bytes_per_s": 200_000}}


def _wait_items(r, s, job_id, n, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = r.ops.get_job(s, job_id)
        if job.items_done >= n or job.state not in ("queued", "running"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach {n} items")


def _names(r, s, path):
    return sorted(e.name for e in r.ops.list(s, path))


def test_sftp_server_restarted_mid_job_the_job_completes(fresh_server, gateway_factory, tmp_path):
    server = fresh_server("sftp")
    area = server.area()
    files = {f"tree/f{i:02}.bin": os.urandom(50_000) for i in range(40)}
    src_url, src_options = _slow_source(files)
    r = gateway_factory(budget_ms=50, sections=RETRYING, mounts={
        "/": f"file://{tmp_path}", "/src": (src_url, src_options), "/m": mount_spec(area)})
    s, other = r.session("alice"), r.session("bob")

    out = r.ops.move(s, "/src/tree", "/m/tree")
    assert out.backgrounded
    _wait_items(r, s, out.job_id, 8)
    server.stop()
    time.sleep(1.0)
    assert r.ops.get_job(s, out.job_id).state in ("queued", "running")
    assert _names(r, other, "/src/tree") == sorted(n.split("/")[1] for n in files)  # still the committed tree
    server.start()

    job = r.ops.wait_job(s, out.job_id, 60)
    assert job.state == "completed", job.error
    assert area.files() == {rel: len(d) for rel, d in files.items()}
    assert all(area.read(rel) == d for rel, d in files.items())
    assert _names(r, other, "/m/tree") == sorted(n.split("/")[1] for n in files)
    with pytest.raises(E.NotFound):
        r.ops.stat(other, "/src/tree")


def test_s3_server_restarted_mid_rename_the_job_completes(fresh_server, gateway_factory, tmp_path):
    server = fresh_server("s3")
    area = server.area()
    for i in range(120):
        area.put(f"old/f{i:03}", b"%03d" % i)
    r = gateway_factory(budget_ms=50, sections=RETRYING,
                        mounts={"/": f"file://{tmp_path}", "/m": mount_spec(area)})
    s, other = r.session("alice"), r.session("bob")
    server.latency_s = 0.02

    out = r.ops.move(s, "/m/old", "/m/new")
    assert out.backgrounded
    _wait_items(r, s, out.job_id, 20)
    server.stop()
    time.sleep(1.0)
    assert not r.ops.get_job(s, out.job_id).committed
    server.start()

    job = r.ops.wait_job(s, out.job_id, 60)
    assert job.state == "completed", job.error
    assert area.files() == {f"new/f{i:03}": 3 for i in range(120)}
    assert _names(r, other, "/m") == ["new"]


@pytest.mark.parametrize("kind", ["ftp", "vsftpds", "webdav"])
def test_server_gone_for_good_the_job_fails_cleanly(kind, fresh_server, gateway_factory, tmp_path):
    server = fresh_server(kind)
    area = server.area()
    files = {f"tree/f{i:02}.bin": os.urandom(50_000) for i in range(40)}
    src_url, src_options = _slow_source(files)
    quick = {"jobs": {"step_retries": 1, "retry_backoff_ms": 50, "max_attempts": 2, "heartbeat_s": 0.25}}
    r = gateway_factory(budget_ms=50, sections=quick, mounts={
        "/": f"file://{tmp_path}", "/src": (src_url, src_options), "/m": mount_spec(area, retries=1)})
    s, other = r.session("alice"), r.session("bob")

    out = r.ops.move(s, "/src/tree", "/m/tree")
    _wait_items(r, s, out.job_id, 8)
    server.stop()

    job = r.ops.wait_job(s, out.job_id, 60)
    assert job.state == "failed"
    assert job.error_type == "BackendUnavailable"
    assert "refused" in job.error.lower()  # the storage's own words
    assert job.attempts == 2
    # nothing was moved: both sessions see the source whole, nothing is lost
    for session in (s, other):
        assert _names(r, session, "/src/tree") == sorted(n.split("/")[1] for n in files)
        with pytest.raises(E.NotFound):  # the partial copy stays hidden until its rollback succeeds
            r.ops.stat(session, "/m/tree")
    f, _ = r.ops.open_read(other, "/src/tree/f07.bin")
    with f:
        assert f.read() == files["tree/f07.bin"]


def test_what_a_failed_job_copied_stays_hidden_after_the_server_returns(fresh_server, gateway_factory, tmp_path):
    server = fresh_server("ftp")
    area = server.area()
    files = {f"tree/f{i:02}.bin": os.urandom(50_000) for i in range(40)}
    src_url, src_options = _slow_source(files)
    quick = {"jobs": {"step_retries": 0, "retry_backoff_ms": 50, "max_attempts": 1, "heartbeat_s": 0.25}}
    r = gateway_factory(budget_ms=50, sections=quick, mounts={
        "/": f"file://{tmp_path}", "/src": (src_url, src_options), "/m": mount_spec(area, retries=0)})
    s = r.session("alice")
    out = r.ops.move(s, "/src/tree", "/m/tree")
    _wait_items(r, s, out.job_id, 8)
    server.stop()
    assert r.ops.wait_job(s, out.job_id, 60).state == "failed"
    server.start()
    assert _names(r, s, "/m") == []


def test_a_webdav_server_unreachable_at_start_is_asked_about_times_once_it_answers(fresh_server, gateway_factory,
                                                                                    tmp_path):
    server = fresh_server("webdav")
    area = server.area()
    area.put("a.txt", b"a")
    server.stop()
    r = gateway_factory(mounts={"/": f"file://{tmp_path}", "/m": mount_spec(area, retries=0, cache_ttl_s=0.0)})
    s = r.session("alice")
    backend = r.gw.namespace.mount_for("/m").backend
    assert not backend.capabilities.mtimes  # not known yet: taken as not kept, never as kept
    with pytest.raises(E.BackendUnavailable):
        r.ops.set_mtime(s, "/m/a.txt", 1_600_000_000)
    server.start()
    assert _names(r, s, "/m") == ["a.txt"]
    assert backend.capabilities.mtimes
    assert r.ops.set_mtime(s, "/m/a.txt", 1_600_000_000) and r.ops.stat(s, "/m/a.txt").mtime == 1_600_000_000
