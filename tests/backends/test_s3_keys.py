"""S3 leaves the bucket exactly as a user expects: after every kind of
operation (file and folder move, copy, delete, mkdir/rmdir, done at once or
backgrounded, stopped, killed with SIGKILL and resumed) the test lists the
bucket itself and compares the exact key set; a folder marker stands only
for an empty folder (or for every folder with ``directory_markers =
true``). Deletes go 1,000 keys per DeleteObjects, counted by the gateway's
own storage request metric; a job's server-side copies go
``copy_concurrency`` at once, counted by the server."""

from __future__ import annotations

import ftplib
import hashlib
import os
import time

import pytest
from conftest import PASSWORDS
from servers import mount_spec, servers  # noqa: F401 - servers is a fixture

import backends.s3
from gateway import errors as E
from gateway import metrics

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def _done(r, s, outcome):
    if outcome.job is not None:
        job = r.ops.wait_job(s, outcome.job_id, 60)
        assert job.state == "completed", (job.state, job.error)
    return outcome


def _put(r, s, path, data=b"x"):
    up = r.ops.open_write(s, path)
    up.write(data)
    return up.commit()


@pytest.fixture
def s3(servers, gateway_factory, tmp_path):
    """(running gateway with the area at /m, the S3 server, the area, keys())."""
    def start(budget_ms=2000, protocols=(), **options):
        server = servers("s3")
        area = server.area()
        url, opts, fields = mount_spec(area)
        r = gateway_factory(protocols, budget_ms=budget_ms, mounts={"/": f"file://{tmp_path}",
                                                         "/m": (url, {**opts, **options}, fields)})
        return r, server, area, lambda: set(server.keys(area.name))
    return start


def test_markers_only_ever_stand_for_empty_folders(s3):
    r, server, area, keys = s3()
    ops, s = r.ops, r.session("alice")

    ops.mkdir(s, "/m/empty")
    assert keys() == {"empty/"}
    _put(r, s, "/m/empty/x")  # content: the marker goes
    assert keys() == {"empty/x"}
    # a folder listed without a marker costs an upload no extra request
    assert [e.name for e in ops.list(s, "/m/empty")] == ["x"]
    before = metrics.storage_requests("s3")
    _put(r, s, "/m/empty/x2")
    _put(r, s, "/m/empty/x3")
    after = metrics.storage_requests("s3")
    assert after.get("DeleteObject", 0) == before.get("DeleteObject", 0)
    ops.delete(s, "/m/empty/x2")
    ops.delete(s, "/m/empty/x3")
    assert keys() == {"empty/x"}
    ops.mkdir(s, "/m/empty/deeper")
    assert keys() == {"empty/x", "empty/deeper/"}
    ops.mkdir(s, "/m/e2")
    ops.mkdir(s, "/m/e2/inner")  # a sub-folder is content too
    assert keys() == {"empty/x", "empty/deeper/", "e2/inner/"}
    ops.delete(s, "/m/e2/inner")  # rmdir: its marker goes; e2 stays, now an empty folder
    assert keys() == {"empty/x", "empty/deeper/", "e2/"}
    ops.delete(s, "/m/e2")
    assert keys() == {"empty/x", "empty/deeper/"}

    # a file copy and move into an empty folder the user made
    ops.mkdir(s, "/m/into")
    _done(r, s, ops.copy(s, "/m/empty/x", "/m/into/y"))
    assert keys() == {"empty/x", "empty/deeper/", "into/y"}
    ops.mkdir(s, "/m/into2")
    _done(r, s, ops.move(s, "/m/into/y", "/m/into2/z"))
    assert keys() == {"empty/x", "empty/deeper/", "into/", "into2/z"}  # into stays, empty
    ops.delete(s, "/m/into")
    assert keys() == {"empty/x", "empty/deeper/", "into2/z"}

    # a small folder moved and copied at once; its empty sub-folder keeps its marker
    ops.mkdir(s, "/m/empty/sub")
    _put(r, s, "/m/empty/sub/a.txt")
    out = ops.move(s, "/m/empty", "/m/moved")
    _done(r, s, out)
    assert keys() == {"moved/x", "moved/deeper/", "moved/sub/a.txt", "into2/z"}
    _done(r, s, ops.copy(s, "/m/moved", "/m/copied"))
    assert keys() == {"moved/x", "moved/deeper/", "moved/sub/a.txt", "copied/x", "copied/deeper/",
                      "copied/sub/a.txt", "into2/z"}

    # a copy onto an existing folder (staged under a reserved name, then put in place)
    _done(r, s, ops.copy(s, "/m/moved/sub", "/m/copied", overwrite=True))
    assert keys() == {"moved/x", "moved/deeper/", "moved/sub/a.txt", "copied/a.txt", "into2/z"}

    # deletes: a file (its folder stays, empty), a tree with an empty folder in it
    ops.delete(s, "/m/into2/z")
    _done(r, s, ops.delete(s, "/m/moved", recursive=True))
    assert keys() == {"copied/a.txt", "into2/"}


def test_a_folder_emptied_file_by_file_stays_until_it_is_removed(s3):
    """A client deleting a folder's files one by one (rm -r on a mounted
    drive, an FTP DELE loop) or moving its last file out still finds the
    folder, empty, and removes it itself: its marker is written only when
    nothing else is left; a tree deleted or moved by a job leaves no marker
    inside it, and the folder it was in stays."""
    r, server, area, keys = s3(budget_ms=50, protocols=("ftp",))
    ops, s = r.ops, r.session("alice")
    for k in ("f/a", "f/b", "g/c", "t/sub/deep/d", "t/sub/e", "u/v/w"):
        area.put(k, b"k")

    before = metrics.storage_requests("s3")
    ops.delete(s, "/m/f/a")  # one of two files: no marker, no write
    after = metrics.storage_requests("s3")
    assert keys() == {"f/b", "g/c", "t/sub/deep/d", "t/sub/e", "u/v/w"}
    assert "PutObject" not in {k for k in after if after[k] != before.get(k, 0)}
    ops.delete(s, "/m/f/b")  # the last file: the folder stays as its marker alone
    assert keys() == {"f/", "g/c", "t/sub/deep/d", "t/sub/e", "u/v/w"}
    assert [e.name for e in ops.list(s, "/m/f")] == []
    ops.delete(s, "/m/f")  # rmdir: nothing left
    assert keys() == {"g/c", "t/sub/deep/d", "t/sub/e", "u/v/w"}

    _done(r, s, ops.move(s, "/m/g/c", "/m/c"))  # the last file moved out: its folder stays
    assert keys() == {"g/", "c", "t/sub/deep/d", "t/sub/e", "u/v/w"}
    _done(r, s, ops.move(s, "/m/c", "/m/g/c"))  # content again: the marker goes
    assert keys() == {"g/c", "t/sub/deep/d", "t/sub/e", "u/v/w"}

    # a job deletes a tree: no marker inside it, the folder it was in stays
    _done(r, s, ops.delete(s, "/m/t/sub", recursive=True, budget_s=0))
    assert keys() == {"g/c", "t/", "u/v/w"}
    _done(r, s, ops.move(s, "/m/u/v", "/m/g/v", budget_s=0))
    assert keys() == {"g/c", "g/v/w", "t/", "u/"}

    # FTP: DELE each file, then RMD the folders, deepest first
    for k in ("d/x/1", "d/x/2", "d/3"):
        area.put(k, b"f")
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", r.port("ftp"), timeout=20)
    ftp.login("alice", PASSWORDS["alice"])
    try:
        ftp.delete("/m/d/x/1")
        ftp.delete("/m/d/x/2")
        ftp.delete("/m/d/3")
        assert keys() == {"g/c", "g/v/w", "t/", "u/", "d/x/"}
        ftp.rmd("/m/d/x")
        assert keys() == {"g/c", "g/v/w", "t/", "u/", "d/"}
        ftp.rmd("/m/d")
    finally:
        ftp.quit()
    assert keys() == {"g/c", "g/v/w", "t/", "u/"}


def test_backgrounded_jobs_leave_exact_keys_and_a_stopped_one_changes_nothing(s3, tmp_path):
    r, server, area, keys = s3(budget_ms=50)
    ops, s, admin = r.ops, r.session("alice"), r.session("admin")
    tree = {f"tree/d{i % 3}/f{i:02}.txt" for i in range(60)}
    for k in tree:
        area.put(k, b"t")
    ops.mkdir(s, "/m/tree/hollow")
    ops.mkdir(s, "/m/target")
    before = tree | {"tree/hollow/", "target/"}
    assert keys() == before

    # stopped before commit: the bucket is exactly as it was (target keeps its marker)
    server.latency_s = 0.05
    try:
        out = ops.move(s, "/m/tree", "/m/target/tree", budget_s=0)
        assert out.backgrounded
        while ops.get_job(admin, out.job_id).state == "queued":
            time.sleep(0.02)
        stopped = ops.stop_job(admin, out.job_id)
    finally:
        server.latency_s = 0.0
    assert stopped.state == "stopped", stopped
    assert keys() == before

    # backgrounded move into the empty folder: its marker goes once the move is done
    out = ops.move(s, "/m/tree", "/m/target/tree", budget_s=0)
    assert out.backgrounded
    _done(r, s, out)
    assert keys() == {f"target/{k}" for k in tree} | {"target/tree/hollow/"}

    out = ops.copy(s, "/m/target/tree", "/m/again", budget_s=0)
    _done(r, s, out)
    assert keys() == {f"target/{k}" for k in tree} | {"target/tree/hollow/"} | {
        k.replace("tree/", "again/", 1) for k in tree} | {"again/hollow/"}

    out = ops.delete(s, "/m/target", recursive=True, budget_s=0)
    _done(r, s, out)
    again = {k.replace("tree/", "again/", 1) for k in tree} | {"again/hollow/"}
    assert keys() == again

    # a file too big to copy inline between mounts is a job too: into an empty folder
    # (its marker goes), and out of one (it stays, as its marker)
    (tmp_path / "big.bin").write_bytes(os.urandom(5 << 20))
    ops.mkdir(s, "/m/in")
    out = ops.copy(s, "/big.bin", "/m/in/big.bin", budget_s=0)
    assert out.backgrounded
    _done(r, s, out)
    assert keys() == again | {"in/big.bin"}
    out = ops.move(s, "/m/in/big.bin", "/big2.bin", budget_s=0)
    assert out.backgrounded
    _done(r, s, out)
    assert keys() == again | {"in/"}


@pytest.mark.parametrize("options,most", [({}, 16), ({"copy_concurrency": 4}, 4)], ids=["default", "set-to-4"])
def test_a_job_runs_copy_concurrency_copies_at_once(s3, options, most):
    """Server-side copies of a job go ``copy_concurrency`` at once (16 by
    default), as counted by the server: not fewer (the connection pool
    holds them all) and not more."""
    r, server, area, keys = s3(budget_ms=50, **options)
    ops, s = r.ops, r.session("alice")
    tree = {f"src/f{i:02}" for i in range(64)}
    _put_many(server, area, tree)
    assert _copies_at_once(server, lambda: _done(r, s, ops.copy(s, "/m/src", "/m/dst", budget_s=0))) == most
    assert keys() == tree | {k.replace("src/", "dst/", 1) for k in tree}


def test_a_big_files_parts_are_copied_copy_concurrency_at_once(s3, monkeypatch):
    """A copy past S3's CopyObject limit goes in parts, as many at once as
    the mount's copy_concurrency (counted at the server), not one after the
    other; the copy is the same bytes (limits lowered to test it)."""
    import backends.s3

    monkeypatch.setattr(backends.s3, "COPY_LIMIT", 6 << 20)
    monkeypatch.setattr(backends.s3, "COPY_PART", 5 << 20)  # S3's smallest part (but the last)
    r, server, area, keys = s3(budget_ms=50, copy_concurrency=3)
    ops, s = r.ops, r.session("alice")
    big = os.urandom((20 << 20) + 5)  # 5 parts
    area.put("big.bin", big)
    assert _copies_at_once(server, lambda: _done(r, s, ops.copy(s, "/m/big.bin", "/m/big2.bin", budget_s=0))) == 3
    assert server.etag(f"{area.name}/big2.bin").endswith("-5")
    assert server.read(f"{area.name}/big2.bin") == big


def test_with_directory_markers_every_folder_made_keeps_one(s3):
    r, server, area, keys = s3(budget_ms=50, directory_markers=True)
    ops, s = r.ops, r.session("alice")
    for k in ("src/a.txt", "src/sub/b.txt"):
        area.put(k, b"m")
    ops.mkdir(s, "/m/made")
    _put(r, s, "/m/made/f")
    assert keys() == {"src/a.txt", "src/sub/b.txt", "made/", "made/f"}
    _done(r, s, ops.copy(s, "/m/src", "/m/made/copy", budget_s=0))
    assert keys() == {"src/a.txt", "src/sub/b.txt", "made/", "made/f", "made/copy/", "made/copy/a.txt",
                      "made/copy/sub/", "made/copy/sub/b.txt"}
    _done(r, s, ops.move(s, "/m/made/copy", "/m/moved", budget_s=0))
    assert keys() == {"src/a.txt", "src/sub/b.txt", "made/", "made/f", "moved/", "moved/a.txt", "moved/sub/",
                      "moved/sub/b.txt"}
    _done(r, s, ops.delete(s, "/m/made", recursive=True, budget_s=0))
    assert keys() == {"src/a.txt", "src/sub/b.txt", "moved/", "moved/a.txt", "moved/sub/", "moved/sub/b.txt"}


def _copies_at_once(server, copy) -> int:
    """The most copy requests (CopyObject, UploadPartCopy) the server had in
    flight at once while ``copy()`` ran, each made to take 50 ms: a copy
    then keeps as many in flight as it may."""
    server.latency_s = 0.05
    server.most_copies = 0
    try:
        copy()
    finally:
        server.latency_s = 0.0
    return server.most_copies


def _put_many(server, area, keys):
    from concurrent.futures import ThreadPoolExecutor

    client = server.client()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=server.bucket, Key=f"{server.prefix}/{area.name}/{k}",
                                                  Body=b"" if k.endswith("/") else k.encode()), keys))


def test_a_folder_of_1001_objects_is_renamed_and_deleted_with_few_requests(s3):
    """Counted with the gateway's metric gateway_storage_requests_total (what
    /metrics shows): CopyObject once per object, ListObjectsV2 a page per
    1,000 keys, DeleteObjects per 1,000 keys (1,001 files and 3 folders: 2
    calls) and no DeleteObject at all."""
    r, server, area, keys = s3(budget_ms=50)
    ops, s = r.ops, r.session("alice")
    _put_many(server, area, [f"big/d{i % 2}/f{i:04}" for i in range(1001)])

    def delta(before):
        now = metrics.storage_requests("s3")
        return {k: now[k] - before.get(k, 0) for k in now if now[k] != before.get(k, 0)}

    before = metrics.storage_requests("s3")
    _done(r, s, ops.move(s, "/m/big", "/m/renamed", budget_s=0))
    moved = delta(before)
    assert keys() == {f"renamed/d{i % 2}/f{i:04}" for i in range(1001)}
    assert moved["CopyObject"] == 1001
    assert moved["DeleteObjects"] == 2, moved
    assert moved.get("ListObjectsV2", 0) <= 8 and "DeleteObject" not in moved and "PutObject" not in moved, moved
    assert sum(moved.values()) <= 1001 + 15, moved

    before = metrics.storage_requests("s3")
    _done(r, s, ops.delete(s, "/m/renamed", recursive=True, budget_s=0))
    deleted = delta(before)
    assert keys() == set()
    assert deleted["DeleteObjects"] == 2 and "DeleteObject" not in deleted, deleted
    assert sum(deleted.values()) <= 8, deleted
    assert 'gateway_storage_requests_total{storage="s3",operation="DeleteObjects"}' in metrics.render(
        r.gw.store.engine)  # what /metrics shows


def test_times_and_checksums_come_from_the_object(s3, monkeypatch):
    r, server, area, keys = s3()
    ops, s = r.ops, r.session("alice")
    data = os.urandom(200_000)
    client = server.client()
    key = f"{server.prefix}/{area.name}/sums/a.bin"
    client.put_object(Bucket=server.bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256")

    before = metrics.storage_requests("s3")
    assert ops.hash(s, "/m/sums/a.bin", "sha256") == hashlib.sha256(data).hexdigest()
    assert ops.hash(s, "/m/sums/a.bin", "md5") == hashlib.md5(data).hexdigest()
    after = metrics.storage_requests("s3")
    assert after.get("GetObject", 0) == before.get("GetObject", 0)  # never read the content

    # an upload keeps its time too; a time set is stored as rclone does, read back by stat and
    # listing, carried by copy and move; a folder has none of its own
    started = time.time()
    _put(r, s, "/m/sums/up.txt")
    stored = float(client.head_object(Bucket=server.bucket, Key=f"{server.prefix}/{area.name}/sums/up.txt")
                   ["Metadata"]["mtime"])
    assert started - 1 <= stored <= time.time() and ops.stat(s, "/m/sums/up.txt").mtime == stored
    ops.delete(s, "/m/sums/up.txt")
    with pytest.raises(E.Unsupported, match="does not keep folders. modification times"):
        ops.set_mtime(s, "/m/sums", 1_600_000_000)
    assert ops.set_mtime(s, "/m/sums/a.bin", 1_600_000_000.25)
    head = client.head_object(Bucket=server.bucket, Key=key)
    assert head["Metadata"] == {"mtime": "1600000000.25"}
    assert ops.stat(s, "/m/sums/a.bin").mtime == 1_600_000_000.25
    assert [e.mtime for e in ops.list(s, "/m/sums")] == [1_600_000_000.25]
    assert ops.hash(s, "/m/sums/a.bin", "sha256") == hashlib.sha256(data).hexdigest()  # still the object's
    _done(r, s, ops.copy(s, "/m/sums/a.bin", "/m/sums/b.bin"))
    _done(r, s, ops.move(s, "/m/sums/b.bin", "/m/c.bin"))
    assert ops.stat(s, "/m/c.bin").mtime == 1_600_000_000.25
    assert server.read(f"{area.name}/c.bin") == data

    # past S3's CopyObject limit a copy goes in parts, its time with it (limits lowered to test it)
    monkeypatch.setattr(backends.s3, "COPY_LIMIT", 6 << 20)
    monkeypatch.setattr(backends.s3, "COPY_PART", 5 << 20)
    big = os.urandom((11 << 20) + 7)
    _put(r, s, "/m/big.bin", big)  # in parts (bounded memory: tests/backends/test_streamed_uploads.py)
    assert ops.set_mtime(s, "/m/big.bin", 1_500_000_000)
    _done(r, s, ops.copy(s, "/m/big.bin", "/m/big2.bin"))
    assert server.etag(f"{area.name}/big2.bin").endswith("-3")
    assert server.read(f"{area.name}/big2.bin") == big
    assert ops.stat(s, "/m/big2.bin").mtime == 1_500_000_000
    # a copy in parts that fails leaves no parts behind (AbortMultipartUpload)
    server.refuse_part = 2
    try:
        with pytest.raises(E.GatewayError):
            _done(r, s, ops.copy(s, "/m/big.bin", "/m/big3.bin"))
    finally:
        server.refuse_part = None
    assert client.list_multipart_uploads(Bucket=server.bucket).get("Uploads", []) == []
    assert "big3.bin" not in keys()


def test_times_set_through_sftp_and_webdav_are_the_ones_rclone_reads(servers, gateway_factory, tmp_path):
    """SFTP SETSTAT and WebDAV X-OC-Mtime on an S3 mount store the time where
    rclone keeps it: rclone's own S3 backend, pointed at the bucket, lists
    the same times; the gateway's listings (SFTP, PROPFIND) show them too."""
    import subprocess

    import httpx
    from conformance.drivers import SftpDriver
    from conftest import PASSWORDS

    server = servers("s3")
    area = server.area()
    r = gateway_factory(protocols=("sftp", "http"), mounts={"/": f"file://{tmp_path}", "/m": mount_spec(area)})
    sftp = SftpDriver(r.port("sftp"), "alice", PASSWORDS["alice"])
    try:
        sftp.put("/m/by-sftp.txt", b"sftp")
        sftp._run(sftp.sftp.utime("/m/by-sftp.txt", (1_500_000_000, 1_500_000_000)))
        listed = {n.filename: n.attrs.mtime for n in sftp._run(sftp.sftp.readdir("/m"))}
    finally:
        sftp.close()
    assert listed["by-sftp.txt"] == 1_500_000_000
    base = f"http://127.0.0.1:{r.port('http')}"
    with httpx.Client(base_url=base, auth=("alice", PASSWORDS["alice"]), timeout=30) as c:
        reply = c.put("/dav/m/by-dav.txt", content=b"dav", headers={"X-OC-Mtime": "1400000000"})
        assert reply.status_code == 201 and reply.headers["X-OC-MTime"] == "accepted"
        found = c.request("PROPFIND", "/dav/m/by-dav.txt", headers={"Depth": "0"})
        assert "Tue, 13 May 2014 16:53:20 GMT" in found.text, found.text

    env = {**os.environ, "RCLONE_CONFIG_MOTO_TYPE": "s3", "RCLONE_CONFIG_MOTO_PROVIDER": "Other",
           "RCLONE_CONFIG_MOTO_ACCESS_KEY_ID": server.key, "RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY": server.secret,
           "RCLONE_CONFIG_MOTO_ENDPOINT": server.endpoint, "RCLONE_CONFIG_MOTO_REGION": "us-east-1"}
    out = subprocess.run(["rclone", "lsl", "--config", "/dev/null", f"moto:{server.bucket}/{server.prefix}/{area.name}"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    times = {line.split()[-1]: " ".join(line.split()[1:3]) for line in out.stdout.splitlines()}
    assert times == {"by-sftp.txt": "2017-07-14 02:40:00.000000000",
                     "by-dav.txt": "2014-05-13 16:53:20.000000000"}, out.stdout


@pytest.mark.timeout(240)
@pytest.mark.parametrize("op,latency_s", [("move", 0.05), ("copy", 0.05), ("delete", 0.5)])
def test_a_job_killed_and_resumed_leaves_exact_keys(op, latency_s, servers, tmp_path):
    """SIGKILL the gateway (tests/unit/crash_gateway.py) twice during a
    400-object rename, copy or delete on S3, start it again: the bucket
    ends with exactly the keys the operation leaves, the empty folder's
    marker included, nothing else. (A delete is a few requests, each made
    slower so that the kills land inside it.)"""
    import json
    import random
    import signal
    import subprocess
    import sys
    from pathlib import Path

    server = servers("s3")
    area = server.area()
    tree = {f"tree/d{i % 4}/f{i:03}" for i in range(400)} | {"tree/hollow/"}
    _put_many(server, area, tree)
    script = Path(__file__).parents[1] / "unit" / "crash_gateway.py"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]),
           "CRASH_MOUNTS": json.dumps({"/a": [area.url, area.options]}), "CRASH_MOVE": "/a/tree /a/renamed",
           "CRASH_OP": op}

    def spawn(submit=False):
        args = [sys.executable, str(script), str(tmp_path / "var"), "-", "-"] + (["--submit"] if submit else [])
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)

    server.latency_s = latency_s  # a distant region: the kills land mid-job
    try:
        proc = spawn(submit=True)
        line = proc.stdout.readline()
        assert line.startswith("SUBMITTED"), line
        rng = random.Random(7)
        for _ in range(2):
            time.sleep(rng.uniform(0.5, 1.5))
            if proc.poll() is not None:
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc = spawn()
        out, _ = proc.communicate(timeout=180)
    finally:
        server.latency_s = 0.0
    assert "DONE" in out
    from gateway.jobs.store import JobStore

    store = JobStore(f"sqlite:///{tmp_path / 'var' / 'jobs.db'}")
    job = store.get(line.split()[1])
    store.close()
    assert job.state == "completed" and job.attempts >= 2, (job.state, job.attempts, job.error)
    renamed = {k.replace("tree/", "renamed/", 1) for k in tree}
    assert set(server.keys(area.name)) == {"move": renamed, "copy": tree | renamed, "delete": set()}[op]
    if op != "delete":
        assert server.read(f"{area.name}/renamed/d1/f001") == b"tree/d1/f001"
        assert server.read(f"{area.name}/renamed/hollow/") == b""


@pytest.mark.parametrize("option,value,said", [
    ("directory_markers", "yes", "mount option directory_markers: expected true or false, got 'yes'"),
    ("listing_mtimes", 1, "mount option listing_mtimes: expected true or false, got 1"),
    ("copy_concurrency", 0, "mount option copy_concurrency: expected a whole number from 1 to 1000, got 0"),
])
def test_a_bad_s3_mount_option_is_one_clear_line_at_check_time(option, value, said):
    from backends.registry import check_url, open_backend

    for call in (check_url, open_backend):
        with pytest.raises(E.BadRequest) as bad:
            call("s3://bucket/prefix", {"endpoint_url": "http://127.0.0.1:9", option: value})
        assert str(bad.value) == said
