"""Jobs at their edges, through real clients of every front end (issue 25):
cancel of a retrying job, cancel after commit, stalled jobs an admin
retries or abandons, a kill -9 in cleanup with storage failing after the
restart, the initiator's PROPPATCH during a move, a retried request that
attaches to its job, and a monitor polled through a 2 GiB move and a
restart.

Faults are injected with the ``slow::`` wrapper's ``fail_glob`` and, for S3,
by stopping moto's server (or holding its deletes, to keep a move in cleanup). What the tests already cover elsewhere is not
repeated here: FTP SIZE/MDTM freshness (tests/protocols/ftp), locks and
FTP and SFTP renames and deletes (tests/conformance/test_locks.py,
tests/protocols/webdav), the
Idempotency-Key replay (tests/api/test_rest.py)."""

from __future__ import annotations

import ftplib
import hashlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from conftest import PASSWORDS, start_gateway, unique_memory, wait_for_port, wait_until, write_config
from conformance.drivers import ProtoError, driver_pool, open_driver

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]
BUDGET_S = 0.3
LAZY = {"OC-LazyOps": "true"}
ASYNC = {"Prefer": "respond-async"}


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    """FTP, SFTP and HTTP over two slow memory mounts; a failed attempt
    waits 20 s for its retry (so a test sees it queued), and a job without
    progress for 1 s is stalled."""
    tmp = tmp_path_factory.mktemp("edges")
    slow = {"slow": {"latency_ms": 2}}
    r = start_gateway(tmp, ("ftp", "sftp", "http"), budget_ms=int(BUDGET_S * 1000),
                      mounts={"/": f"file://{tmp / 'data'}",
                              "/a": (f"slow::memory://{unique_memory()}", slow),
                              "/b": (f"slow::memory://{unique_memory()}", slow)},
                      sections={"jobs": {"max_attempts": 50, "step_retries": 0, "retry_backoff_ms": 20000,
                                         "stall_after_s": 5.0, "stalled_after_s": 1.0}})
    yield r
    r.close()


@pytest.fixture
def connect(gw):
    with driver_pool(gw, PASSWORDS.__getitem__) as open_:
        yield open_


def _fs(gw, mount: str):
    """The storage (the slow wrapper's fsspec filesystem) of ``mount``."""
    return gw.gw.namespace.resolve(mount)[0].backend.fs


def manifest(gw, path: str) -> dict[str, str]:
    """sha256 of every file below global ``path`` on the storage itself, and
    every folder (value "dir"), reserved temporaries included."""
    mount, root = gw.gw.namespace.resolve(path)
    fs = mount.backend.fs
    out = {}
    if not fs.exists(root):
        return out
    for p, info in fs.find(root, withdirs=True, detail=True).items():
        rel = p[len(root.rstrip("/")):] or "/"
        out[rel] = "dir" if info["type"] == "directory" else hashlib.sha256(fs.cat_file(p)).hexdigest()
    return out


def on_storage(gw, path: str) -> bool:
    mount, bp = gw.gw.namespace.resolve(path)
    return mount.backend.fs.exists(bp)


def tree(gw, root: str, n: int = 30, size: int = 1000) -> None:
    s = gw.session("alice")
    gw.ops.mkdir(s, root)
    gw.ops.mkdir(s, f"{root}/sub")
    for i in range(n):
        up = gw.ops.open_write(s, f"{root}/sub/x{i:03}" if i % 7 == 0 else f"{root}/x{i:03}")
        up.write(hashlib.sha256(b"%d" % i).digest() * (size // 32))
        up.commit()


def job_of(gw, src: str):
    jobs = [j for j in gw.gw.store.list() if j.src == src]
    assert len(jobs) == 1, jobs
    return jobs[0]


def http(gw, user: str = "alice", session: str | None = None) -> httpx.Client:
    headers = {"Gateway-Session": session} if session else {}
    return httpx.Client(base_url=f"http://127.0.0.1:{gw.port('http')}", auth=(user, PASSWORDS[user]),
                        timeout=60, headers=headers)


def ssh(driver, command: str):
    """``ssh gateway <command>`` on an SFTP driver's connection: (exit status, stdout, stderr)."""
    done = driver._run(driver.conn.run(command))
    return done.exit_status, done.stdout, done.stderr


def job_command(gw, connect, proto: str, verb: str, job_id: str, user: str = "alice") -> str:
    """``verb`` (cancel, retry, abandon) of a job through ``proto``'s own job
    commands (WebDAV clients use the REST API's). Raises ProtoError with
    the refusal."""
    if proto == "ftp":
        ftp = connect("ftp", user).ftp
        try:
            return ftp.sendcmd(f"SITE {verb.upper()} {job_id}")
        except ftplib.Error as exc:
            raise ProtoError("refused", str(exc)) from None
    if proto == "sftp":
        status, out, err = ssh(connect("sftp", user), f"{verb} {job_id}")
        if status:
            raise ProtoError("refused", err)
        return out
    with http(gw, user) as c:
        r = c.post(f"/api/v1/jobs/{job_id}/{verb}")
        if r.status_code != 200:
            raise ProtoError("refused", f"{r.status_code} {r.text}")
        return r.text


def start_move(gw, connect, proto: str, src: str, dst: str) -> str:
    """The move sent through ``proto``'s own client; returns its job id."""
    if proto in ("webdav", "rest"):  # the clients that take a 202 with a monitor URL
        with http(gw) as c:
            if proto == "webdav":
                r = c.request("MOVE", f"/dav{src}", headers={"Destination": f"/dav{dst}", **LAZY})
            else:
                r = c.post("/api/v1/fs/move", json={"from": src, "to": dst}, headers=ASYNC)
            assert r.status_code == 202, r.text
    else:
        connect(proto).rename(src, dst)
    return job_of(gw, src).id


# -- cancel ----------------------------------------------------------------------------------


@pytest.mark.parametrize("proto", ["ftp", "sftp", "webdav", "rest"])
def test_cancel_of_a_retrying_job_with_progress_leaves_the_tree_as_it_was(gw, connect, proto):
    """The move fails part-way on the destination's storage and waits for
    its retry with files written; a cancel through the protocol's job
    command removes them before it answers: both storages hold exactly
    what they held before (sha256 manifest), and every path is free."""
    base = uuid.uuid4().hex[:6]
    src, dst = f"/a/{base}/tree", f"/b/{base}/tree"
    gw.ops.mkdir(gw.session("alice"), f"/a/{base}")
    gw.ops.mkdir(gw.session("alice"), f"/b/{base}")
    tree(gw, src)
    fb = _fs(gw, "/b")
    before = (manifest(gw, "/a"), manifest(gw, "/b"))
    fb.fail_glob = f"*{base}/tree/x027"
    try:
        job_id = start_move(gw, connect, proto, src, dst)
        job = wait_until(lambda: (j := gw.gw.store.get(job_id)).state == "queued" and j.attempts and j,
                         what="the failed attempt")
        assert job.items_done >= 5 and on_storage(gw, f"{dst}/x001")  # it wrote part of the tree
    finally:
        fb.fail_glob = None
    assert "cancelled" in job_command(gw, connect, proto, "cancel", job_id)  # the state it left
    job = gw.gw.store.get(job_id)
    assert (job.state, job.phase) == ("cancelled", "prepare")
    assert (manifest(gw, "/a"), manifest(gw, "/b")) == before
    c = connect(proto)
    assert c.ls(f"/b/{base}") == [] and len(c.ls(src)) == 26
    c.mkdir(dst)  # not busy


def _s3():
    sys.path.append(str(ROOT / "tests" / "backends"))
    from servers import S3

    return S3


def test_on_s3_a_cancel_undoes_a_retrying_copy_and_a_move_attaches_its_retry_and_cannot_be_cancelled(tmp_path):
    """The same on S3 (moto): the server goes away part-way, the copy waits
    for its retry, the server comes back, a REST cancel removes every object
    the copy wrote. Then a move, sent again on a new connection, attaches
    (the same job and monitor URL); a cancel after its commit is refused, and
    it completes, its monitor never going back, with exactly the keys moved."""
    server = _s3()(tmp_path / "s3").start()
    r = None
    try:
        area = server.area()
        for i in range(60):
            area.put(f"src/f{i:03}", b"%03d" % i * 100)
        for i in range(3):
            area.put(f"few/g{i}", b"g%d" % i * 1000)
        before = {k: hashlib.sha256(area.read(k)).hexdigest() for k in area.files()}
        r = start_gateway(tmp_path, ("http",), budget_ms=100,
                          mounts={"/": f"file://{tmp_path / 'data'}",
                                  "/s3": (area.url, area.options, {"timeout_s": 2.0, "retries": 0})},
                          sections={"jobs": {"step_retries": 0, "retry_backoff_ms": 30000}})
        server.latency_s = 0.08
        with http(r) as c:
            resp = c.post("/api/v1/fs/copy", json={"from": "/s3/src", "to": "/s3/dst"}, headers=ASYNC)
            assert resp.status_code == 202, resp.text
            job_id = resp.json()["id"]
            wait_until(lambda: r.gw.store.get(job_id).items_done >= 10, what="copied objects")
            server.stop()
            job = wait_until(lambda: (j := r.gw.store.get(job_id)).state == "queued" and j.attempts and j,
                             what="the failed attempt")
            server.latency_s = 0.0
            server.start()
            assert any(k.startswith("dst/") for k in area.files())  # it had written part of the copy
            resp = c.post(f"/api/v1/jobs/{job_id}/cancel")
            assert resp.status_code == 200 and resp.json()["state"] == "cancelled", resp.text
            assert {k: hashlib.sha256(area.read(k)).hexdigest() for k in area.files()} == before
            assert c.post("/api/v1/fs/mkdir", json={"path": "/s3/dst"}).status_code == 201  # free

            server.deletes_wait = threading.Event()  # the move's cleanup waits for the test
            move = {"from": "/s3/few", "to": "/s3/moved"}
            first = c.post("/api/v1/fs/move", json=move, headers=ASYNC)
            with http(r, session="reconnected") as again:
                second = again.post("/api/v1/fs/move", json=move, headers=ASYNC)
            assert first.status_code == second.status_code == 202, (first.text, second.text)
            assert second.json()["id"] == first.json()["id"] and second.headers["location"] == first.headers["location"]
            job_id, seen = first.json()["id"], []

            def committed():
                seen.append(c.get(first.headers["location"]).json()["percentageComplete"])
                return r.gw.store.get(job_id).committed

            wait_until(committed, what="the commit", step=0.01)
            resp = c.post(f"/api/v1/jobs/{job_id}/cancel")
            assert resp.status_code == 409 and "committed, finishing" in resp.json()["error"], resp.text
            server.deletes_wait.set()
            assert r.ops.wait_job(r.session("admin"), job_id, 60).state == "completed"
            seen.append(c.get(first.headers["location"]).json()["percentageComplete"])
            assert seen == sorted(seen) and seen[-1] == 100.0, seen
            job = c.get(f"/api/v1/jobs/{job_id}").json()
            assert job["bytesDone"] == job["bytesTotal"] == 6000 and job["attempts"] == 1
            moved = {k.replace("few/", "moved/"): v for k, v in before.items() if k.startswith("few/")}
            assert {k: hashlib.sha256(area.read(k)).hexdigest() for k in area.files()} == {
                **{k: v for k, v in before.items() if not k.startswith("few/")}, **moved}
    finally:
        if server.deletes_wait is not None:
            server.deletes_wait.set()
        if r is not None:
            r.close()
        server.stop()


@pytest.mark.parametrize("proto", ["ftp", "sftp", "webdav", "rest"])
def test_cancel_after_commit_is_refused_and_the_job_completes(gw, connect, proto):
    """A cancel that comes after the commit is refused (FTP 450, REST 409,
    ssh's exit status) saying the job is finishing, and the move completes."""
    base = uuid.uuid4().hex[:6]
    src, dst = f"/a/{base}", f"/b/{base}"
    tree(gw, src, n=30)
    want = manifest(gw, src)
    fa = _fs(gw, "/a")
    fa.latency_s = 0.02  # cleanup (removing the sources) takes a while
    try:
        job_id = start_move(gw, connect, proto, src, dst)
        wait_until(lambda: gw.gw.store.get(job_id).committed, what="the commit")
        with pytest.raises(ProtoError, match="committed, finishing") as refused:
            job_command(gw, connect, proto, "cancel", job_id)
        assert refused.value.detail.startswith({"ftp": "450", "sftp": "cancel: "}.get(proto, "409")), refused.value
    finally:
        fa.latency_s = 0.002
    done = gw.ops.wait_job(gw.session("admin"), job_id, 60)
    assert done.state == "completed"
    assert manifest(gw, dst) == want and not on_storage(gw, src)
    connect(proto).mkdir(src)  # no path stays busy


# -- stalled jobs ----------------------------------------------------------------------------


def _stalled(gw, job_id: str):
    return wait_until(lambda: (j := gw.gw.store.get(job_id)).stalled and j, what="the stalled flag")


def test_a_stalled_job_shows_everywhere_and_an_admin_retries_then_abandons_it(gw, connect, monkeypatch, capsys):
    """No progress for jobs.stalled_after_s: every listing says so (SITE
    JOBS, ssh jobs, REST, SSE, /metrics); an admin retries it from FTP and
    the CLI, and abandons it over ssh: rolled back, nothing changed."""
    from gateway.cli import main

    base = uuid.uuid4().hex[:6]
    src, dst = f"/a/{base}", f"/b/{base}"
    tree(gw, src, n=20)
    fb = _fs(gw, "/b")
    before = (manifest(gw, "/a"), manifest(gw, "/b"))
    fb.fail_glob = f"*{base}/x019"
    events: list[str] = []
    try:
        with http(gw, "admin") as admin:
            with admin.stream("GET", "/api/v1/events") as stream:
                job_id = start_move(gw, connect, "rest", src, dst)
                _stalled(gw, job_id)
                for line in stream.iter_lines():
                    events.append(line)
                    if line == "event: stalled":
                        break
            assert admin.get(f"/api/v1/jobs/{job_id}").json()["stalled"] is True
            assert [j["id"] for j in admin.get("/api/v1/jobs", params={"state": "stalled"}).json()["jobs"]] == [
                job_id]
            assert "\ngateway_jobs_stalled 1\n" in admin.get("/metrics").text
        listing = connect("ftp", "admin").ftp.sendcmd("SITE JOBS")
        assert re.search(rf"{job_id} ItemMove \S+ -> \S+ queued STALLED", listing), listing
        status, out, _ = ssh(connect("sftp", "admin"), "jobs")
        assert status == 0 and re.search(rf"{job_id}\s+queued,stalled", out), out
        with pytest.raises(ProtoError, match="only an admin"):  # the owner may not
            job_command(gw, connect, "ftp", "retry", job_id)

        assert job_command(gw, connect, "ftp", "retry", job_id, "admin").startswith("200")
        assert not gw.gw.store.get(job_id).stalled
        _stalled(gw, job_id)  # the storage still fails
        monkeypatch.setenv("GATEWAY_URL", f"http://127.0.0.1:{gw.port('http')}")
        monkeypatch.setenv("GATEWAY_USER", "admin")
        monkeypatch.setenv("GATEWAY_PASSWORD", PASSWORDS["admin"])
        assert main(["jobs", "retry", job_id]) == 0
        assert job_id in capsys.readouterr().out
        _stalled(gw, job_id)
        assert "cancelled" in job_command(gw, connect, "sftp", "abandon", job_id, "admin")
    finally:
        fb.fail_glob = None
    assert any(line == "event: stalled" for line in events)
    job = gw.gw.store.get(job_id)
    assert job.state == "cancelled" and "abandoned" in job.error and job.attempts >= 3
    assert (manifest(gw, "/a"), manifest(gw, "/b")) == before
    connect("ftp").mkdir(dst)


# -- the initiator's properties, retries that attach ---------------------------------------


def test_the_initiators_proppatch_during_a_move_survives_the_commit(gw):
    base = uuid.uuid4().hex[:6]
    src, dst = f"/a/{base}", f"/b/{base}"
    tree(gw, src, n=40)
    prop = ('<?xml version="1.0" encoding="utf-8"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:t:">'
            '<D:set><D:prop><Z:colour>{}</Z:colour></D:prop></D:set></D:propertyupdate>')
    with http(gw, session="mover") as mover, http(gw, session="other") as other:
        r = mover.request("PROPPATCH", f"/dav{src}/x001", content=prop.replace("colour", "shade").format("old").encode())
        assert r.status_code == 207 and "200 OK" in r.text, r.text
        r = mover.request("MOVE", f"/dav{src}", headers={"Destination": f"/dav{dst}", **LAZY})
        assert r.status_code == 202, r.text
        job_id = job_of(gw, src).id
        for path, colour in ((f"{dst}/x001", "red"), (dst, "blue")):
            r = mover.request("PROPPATCH", f"/dav{path}", content=prop.format(colour).encode())
            assert r.status_code == 207 and "200 OK" in r.text, r.text
        r = other.request("PROPPATCH", f"/dav{src}/x001", content=prop.format("green").encode())
        assert r.status_code == 423 and "busy, in use by job" in r.text, r.text
        body = b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>'
        # The initiator reads what it set (and what the source had) on the projected destination.
        r = mover.request("PROPFIND", f"/dav{dst}/x001", content=body, headers={"Depth": "0"})
        assert ">red</" in r.text and ">old</" in r.text, r.text
        r = mover.request("PROPFIND", f"/dav{dst}/", content=body, headers={"Depth": "1"})
        assert ">blue</" in r.text and ">red</" in r.text, r.text
        assert not gw.gw.store.get(job_id).terminal, "the job ended too soon to tell"
        assert gw.ops.wait_job(gw.session("admin"), job_id, 60).state == "completed"
        for path, colour in ((f"{dst}/x001", "red"), (dst, "blue"), (f"{dst}/x001", "old")):
            r = other.request("PROPFIND", f"/dav{path}", content=body, headers={"Depth": "0"})
            assert f">{colour}</" in r.text, (path, r.text)


@pytest.mark.parametrize("proto", ["ftp", "sftp", "webdav", "rest"])
def test_a_move_sent_again_after_a_dropped_connection_attaches_to_its_job(gw, connect, proto):
    """The client loses its connection during a backgrounded move and sends
    it again on a new one: one job, one completion, and the same reply
    (FTP names the same job, WebDAV and REST give the same monitor URL)."""
    base = uuid.uuid4().hex[:6]
    src, dst = f"/a/{base}", f"/b/{base}"
    tree(gw, src, n=40)
    _fs(gw, "/a").latency_s = 0.01
    try:
        replies = []
        for attempt in range(2):
            if proto in ("webdav", "rest"):
                with http(gw, session=f"conn-{attempt}") as c:
                    if proto == "webdav":
                        r = c.request("MOVE", f"/dav{src}", headers={"Destination": f"/dav{dst}", **LAZY})
                    else:
                        r = c.post("/api/v1/fs/move", json={"from": src, "to": dst}, headers=ASYNC)
                    assert r.status_code == 202, r.text
                    replies.append(r.headers["location"])
            else:
                d = open_driver(gw, proto, "alice", PASSWORDS["alice"])
                try:
                    replies.append(d.rename(src, dst))
                finally:
                    d.close()  # the connection drops
            job = job_of(gw, src)
            assert attempt == 1 or not job.terminal, "the job ended too soon to tell"
    finally:
        _fs(gw, "/a").latency_s = 0.002
    if proto == "ftp":
        assert all(job.id in reply for reply in replies), replies
    elif proto != "sftp":
        assert replies[0] == replies[1], replies
    assert gw.ops.wait_job(gw.session("admin"), job.id, 60).state == "completed"
    assert job_of(gw, src).id == job.id and connect(proto).ls(f"/b/{base}") == ["sub"] + [
        f"x{i:03}" for i in range(40) if i % 7]


# -- kill -9 in cleanup, a monitor through a restart (a `gateway serve` process) -------------


class Served:
    """``gateway serve`` in its own process, killed and started again by the
    test; only the front end ``front`` ("ftp" or "http") is enabled."""

    def __init__(self, tmp: Path, front: str, **config) -> None:
        self.tmp = tmp
        self.front = front
        off = {name: {"enabled": False} for name in ("ftp", "sftp", "http") if name != front}
        config["sections"] = {**config.get("sections", {}), **off}
        self.config = config
        self.proc: subprocess.Popen | None = None
        self.path = write_config(tmp, **config)
        from gateway.config import load_config

        self.cfg = load_config(self.path)

    def start(self, **config) -> "Served":
        if config:  # the same ports and state, other settings
            text = self.path.read_text()
            self.path = write_config(self.tmp, **{**self.config, **config})
            self.path.write_text(_keep_ports(text, self.path.read_text()))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(self.path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=self.tmp)
        wait_for_port(getattr(self.cfg, self.front).port, self.proc)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(30)

    def store(self):
        from gateway.jobs.store import JobStore

        return JobStore(f"sqlite:///{self.tmp / 'var' / 'jobs.db'}")

    def ftp(self, user: str = "alice") -> ftplib.FTP:
        f = ftplib.FTP()
        f.connect("127.0.0.1", self.cfg.ftp.port, timeout=30)
        f.login(user, PASSWORDS[user])
        return f


def _keep_ports(old: str, new: str) -> str:
    """``new`` config text with the ports of ``old`` (write_config picks new ones)."""
    ports = iter(re.findall(r"^(?:port|passive_ports) = .*$", old, flags=re.M))
    return re.sub(r"^(?:port|passive_ports) = .*$", lambda _: next(ports), new, flags=re.M)


def _disk_mounts(tmp: Path, fail_a: str | None = None, **slow) -> dict:
    (tmp / "A").mkdir(exist_ok=True)
    (tmp / "B").mkdir(exist_ok=True)
    opts_a = {"slow": {**slow, **({"fail_glob": fail_a} if fail_a else {})}}
    return {"/": f"file://{tmp / 'data'}", "/a": (f"slow::file://{tmp / 'A'}", opts_a),
            "/b": (f"slow::file://{tmp / 'B'}", {"slow": slow})}


def test_kill_9_in_cleanup_then_storage_failing_releases_every_path_and_says_what_is_left(tmp_path):
    """A move is killed (SIGKILL) during cleanup; after the restart the
    source's storage refuses every removal, so the job cannot finish: it
    ends failed, its paths free, and its listing says what was left."""
    for i in range(80):
        p = tmp_path / "A" / "tree" / f"x{i:03}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"%03d" % i * 50)
    jobs = {"max_attempts": 2, "step_retries": 0, "retry_backoff_ms": 50, "heartbeat_s": 0.1}
    gw = Served(tmp_path, "ftp", mounts=_disk_mounts(tmp_path, latency_ms=4), budget_ms=100,
                sections={"jobs": jobs}).start()
    try:
        ftp = gw.ftp()
        reply = ftp.rename("/a/tree", "/b/tree")
        job_id = re.search(r"job (\S+)", reply)[1]
        store = gw.store()
        wait_until(lambda: store.get(job_id).committed, what="the commit")
        gw.kill()  # kill -9 in cleanup
        assert len(list((tmp_path / "A" / "tree").iterdir())) > 20  # cleanup had not finished
        gw.start(mounts=_disk_mounts(tmp_path, fail_a="*/tree/x*", latency_ms=1))
        job = wait_until(lambda: (j := store.get(job_id)).terminal and j, what="the job's end")
        store.close()
        assert (job.state, job.phase) == ("failed", "done"), job
        # The storage refuses even to be looked at there, so the journal's
        # count is a bound: it may include files the killed attempt removed
        # without journaling it.
        left = len(list((tmp_path / "A" / "tree").iterdir()))
        counted = re.search(r"at most (\d+) item\(s\), \d+ bytes, of the source were not removed and show "
                            r"again under /a/tree", job.leftovers or "")
        assert counted and left < int(counted[1]) <= 81, job.leftovers
        ftp = gw.ftp("admin")
        line = ftp.sendcmd(f"SITE JOB {job_id}")
        assert "failed" in line and f"[left: {job.leftovers}]" in line, line
        ftp.quit()
        ftp = gw.ftp()
        ftp.mkd("/b/tree/new")  # neither path is busy any more
        ftp.storbinary("STOR /a/tree/new.txt", io.BytesIO(b"new"))
        assert len(ftp.nlst("/b/tree")) == 81
        ftp.quit()
    finally:
        gw.kill(signal.SIGTERM)


def test_on_s3_kill_9_in_cleanup_then_deletes_refused_releases_every_path_and_says_what_is_left(tmp_path):
    """The same on S3 (moto): the move's cleanup is held at its first
    delete and the gateway killed there; after the restart the server
    refuses every delete: the job ends failed, its paths free, and its
    listing says what was left."""
    server = _s3()(tmp_path / "s3").start()
    gw = None
    try:
        area = server.area()
        for i in range(30):
            area.put(f"tree/x{i:03}", b"%03d" % i * 50)
        mounts = {"/": f"file://{tmp_path / 'data'}", "/s3": (area.url, area.options, {"retries": 0})}
        jobs = {"max_attempts": 2, "step_retries": 0, "retry_backoff_ms": 50, "heartbeat_s": 0.1}
        gw = Served(tmp_path, "ftp", mounts=mounts, budget_ms=100, sections={"jobs": jobs})
        server.deletes_wait = threading.Event()
        gw.start()
        reply = gw.ftp().rename("/s3/tree", "/s3/moved")
        job_id = re.search(r"job (\S+)", reply)[1]
        store = gw.store()
        wait_until(lambda: any(m == "POST" and q.startswith("delete") for m, q in server.requests),
                   what="the cleanup's first delete")
        assert store.get(job_id).committed
        gw.kill()  # kill -9 in cleanup
        server.refuse_deletes = True  # the held delete too
        server.deletes_wait.set()
        gw.start()
        job = wait_until(lambda: (j := store.get(job_id)).terminal and j, what="the job's end")
        store.close()
        assert (job.state, job.phase) == ("failed", "done"), job
        assert re.fullmatch(r"31 item\(s\), 4500 bytes, of the source were not removed and show again under "
                            r"/s3/tree: remove them by hand", job.leftovers or ""), job.leftovers
        ftp = gw.ftp("admin")
        line = ftp.sendcmd(f"SITE JOB {job_id}")
        assert "failed" in line and f"[left: {job.leftovers}]" in line, line
        ftp.quit()
        ftp = gw.ftp()
        ftp.storbinary("STOR /s3/moved/new.txt", io.BytesIO(b"new"))  # neither path is busy any more
        ftp.storbinary("STOR /s3/tree/new.txt", io.BytesIO(b"new"))
        assert len(ftp.nlst("/s3/moved")) == len(ftp.nlst("/s3/tree")) == 31
        ftp.quit()
    finally:
        if server.deletes_wait is not None:
            server.deletes_wait.set()
        if gw is not None and gw.proc is not None:
            gw.kill(signal.SIGTERM)
        server.stop()


def _scratch(tmp: Path, size: int) -> Path:
    """A folder for ``size`` bytes of copies: in memory (/dev/shm) when it
    has room to spare (writing them costs no disk time), else on ``tmp``'s
    disk."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 3 * size:
        return Path(tempfile.mkdtemp(prefix="edges-", dir=shm))
    return Path(tempfile.mkdtemp(prefix="edges-", dir=tmp))


def test_a_monitor_polled_through_a_2_gib_move_and_a_restart_never_goes_back_and_ends_exact(tmp_path):
    """A REST client polls the monitor URL (and the job) every 50 ms while a
    2 GiB move runs in a ``gateway serve`` process that is stopped (SIGTERM)
    and started again mid-copy: the percentage never decreases, bytesDone
    never passes bytesTotal, and the move ends at exactly 100 with bytesDone
    equal to bytesTotal (the copy the restart cut short is not counted
    twice). The sources are sparse files, so only the copies take room."""
    files, size = 8, 256 << 20
    scratch = _scratch(tmp_path, files * size)
    try:
        (scratch / "A" / "big").mkdir(parents=True)
        for i in range(files):
            with open(scratch / "A" / "big" / f"f{i}", "wb") as f:
                f.truncate(size)
        (scratch / "B").mkdir()
        # /b writes at most 500 MB/s (about 4 s for the move), so the restart comes well before its end
        mounts = {"/": f"file://{tmp_path / 'data'}", "/a": f"file://{scratch / 'A'}",
                  "/b": (f"slow::file://{scratch / 'B'}", {"slow": {"bytes_per_s": 5e8}})}
        gw = Served(tmp_path, "http", mounts=mounts, budget_ms=100, sections={"jobs": {"heartbeat_s": 0.1}}).start()
        try:
            _poll_through_a_restart(gw, files * size)
        finally:
            gw.kill(signal.SIGTERM)
        assert sorted(p.stat().st_size for p in (scratch / "B" / "big").iterdir()) == [size] * files
        assert not (scratch / "A" / "big").exists()
    finally:
        shutil.rmtree(scratch)


def _poll_through_a_restart(gw: Served, total: int) -> None:
    base = f"http://127.0.0.1:{gw.cfg.http.port}"
    with httpx.Client(base_url=base, auth=("alice", PASSWORDS["alice"]), timeout=10) as c:
        r = c.post("/api/v1/fs/move", json={"from": "/a/big", "to": "/b/big"}, headers=ASYNC)
        assert r.status_code == 202, r.text
        monitor, job_id = r.headers["location"], r.json()["id"]
        seen: list[float] = []
        restarted = False
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                m = httpx.get(base + monitor, timeout=5)
                job = c.get(f"/api/v1/jobs/{job_id}").json()
            except httpx.TransportError:  # down for the restart
                time.sleep(0.05)
                continue
            seen.append(m.json()["percentageComplete"])
            assert job["bytesDone"] <= job["bytesTotal"] and job["itemsDone"] <= job["itemsTotal"], job
            if m.status_code == 303:
                break
            assert m.status_code == 202, m.text
            assert m.json()["sizeKnown"] or seen[-1] == 0, m.text  # no percentage made up before the total
            if not restarted and seen[-1] >= 20:
                gw.kill(signal.SIGTERM)
                gw.start()
                restarted = True
            time.sleep(0.05)
        assert restarted and m.status_code == 303, seen
        assert seen == sorted(seen) and seen[-1] == 100.0, seen
        job = c.get(f"/api/v1/jobs/{job_id}").json()
        assert job["state"] == "completed" and job["attempts"] >= 2, job
        assert job["bytesDone"] == job["bytesTotal"] == total
