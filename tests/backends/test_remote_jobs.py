"""What remote storage changes about the plan: a folder rename is one native
call on SFTP, FTP and WebDAV but a backgrounded job of server-side copies and
deletes on S3; a move between two mounts streams object by object and checks
sizes and checksums."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time

import pytest

from conftest import PASSWORDS
from servers import mount_spec, servers  # noqa: F401 - servers is a fixture

from gateway import errors as E
from gateway import metrics

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SSH_OPTS = ["-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "IdentityAgent=none", "-o", "BatchMode=no",
            "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no"]


def sftp_client(port: int, user: str, commands: list[str]) -> None:
    """OpenSSH's sftp client, logged in to the gateway, running ``commands``."""
    cmd = ["sshpass", "-p", PASSWORDS[user], "sftp", *SSH_OPTS, "-P", str(port), "-b", "-", f"{user}@127.0.0.1"]
    p = subprocess.run(cmd, input="\n".join(commands) + "\n", capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def _names(ops, session, path):
    return sorted(e.name for e in ops.list(session, path))


@pytest.mark.parametrize("kind", ["s3", "sftp", "ftp", "ftps", "vsftpd", "vsftpds", "webdav", "webdavs"])
def test_folder_of_300_renamed_through_the_sftp_front_end(kind, servers, gateway_factory, tmp_path):
    server = servers(kind)
    area = server.area()
    for i in range(300):
        area.put(f"src/f{i:03}.txt", b"%03d" % i)
    r = gateway_factory(protocols=("sftp",), budget_ms=100,
                        mounts={"/": f"file://{tmp_path}", "/m": mount_spec(area)})
    admin, other = r.session("admin"), r.session("bob")
    assert len(_names(r.ops, other, "/m/src")) == 300
    if kind == "s3":
        server.latency_s = 0.02  # a distant region: each copy takes a while, so the job is seen running
    try:
        sftp_client(r.port("sftp"), "alice", ["rename /m/src /m/dst"])
        jobs = r.ops.list_jobs(admin)
        if kind != "s3":
            # one native, atomic rename: done before the reply, no job at all
            assert jobs == []
            assert _names(r.ops, other, "/m") == ["dst"]
        else:
            # N server-side copies + N deletes: backgrounded; the other session
            # keeps seeing the committed tree until the job commits
            [job] = jobs
            assert job.operation == "move"
            seen_running = 0
            while True:
                before = r.ops.get_job(admin, job.id)
                if before.committed or before.state not in ("queued", "running"):
                    break
                try:
                    seen = (_names(r.ops, other, "/m"), len(_names(r.ops, other, "/m/src")),
                            r.ops.exists(other, "/m/dst"))
                except E.NotFound:
                    seen = None
                if not r.ops.get_job(admin, job.id).committed:  # what was seen predates the commit
                    assert seen == (["src"], 300, False)
                    seen_running += 1
                time.sleep(0.1)
            assert seen_running >= 1
            done = r.ops.wait_job(admin, job.id, 60)
            assert done.state == "completed", done.error
            assert done.items_done == 301
            assert _names(r.ops, other, "/m") == ["dst"]
    finally:
        server.latency_s = 0.0
    # ...and on the server itself, with no folder marker added
    assert area.files() == {f"dst/f{i:03}.txt": 3 for i in range(300)}
    if kind == "s3":
        assert set(server.keys(area.name)) == {f"dst/f{i:03}.txt" for i in range(300)}
    assert area.read("dst/f123.txt") == b"123"


def test_move_s3_tree_to_sftp_streams_and_checks_checksums(servers, gateway_factory, tmp_path):
    s3, sftp = servers("s3").area(), servers("sftp").area()
    contents = {f"tree/d{i % 3}/f{i:02}.bin": os.urandom(10_000 + i) for i in range(24)}
    contents["tree/big.bin"] = os.urandom(6 << 20)  # several streamed blocks
    for rel, data in contents.items():
        s3.put(rel, data)
    etags = {rel: s3.server.etag(f"{s3.name}/{rel}") for rel in contents}
    assert all(etags[rel] == hashlib.md5(d).hexdigest() for rel, d in contents.items())
    r = gateway_factory(budget_ms=100, mounts={"/": f"file://{tmp_path}", "/s3": mount_spec(s3),
                                               "/sftp": mount_spec(sftp)})
    s = r.session("alice")

    out = r.ops.move(s, "/s3/tree", "/sftp/tree")
    assert out.job is not None
    job = r.ops.wait_job(s, out.job_id, 60)
    assert job.state == "completed", job.error
    assert job.bytes_done == sum(len(d) for d in contents.values())

    assert sftp.files() == {rel: len(d) for rel, d in contents.items()}
    for rel, data in contents.items():
        assert hashlib.md5(sftp.read(rel)).hexdigest() == etags[rel]
    assert s3.files() == {} and s3.dirs() == set()
    assert r.ops.hash(s, "/sftp/tree/big.bin", "md5") == etags["tree/big.bin"]
    assert not any(".gw-" in p for p in sftp.files())


@pytest.mark.parametrize("src_kind,dst_kind", [("vsftpds", "webdavs"), ("webdavs", "ftps"), ("vsftpd", "webdav")])
def test_move_between_ftp_and_webdav_servers_streams_every_byte(src_kind, dst_kind, servers, gateway_factory,
                                                                 tmp_path):
    """A tree moved between two remote servers (over TLS or not) is read
    from one and streamed into the other, then removed from the first."""
    src, dst = servers(src_kind).area(), servers(dst_kind).area()
    contents = {f"tree/d{i % 2}/f{i:02}.bin": os.urandom(5_000 + i) for i in range(10)}
    contents["tree/big.bin"] = os.urandom(5 << 20)  # more than the WebDAV upload queue holds
    for rel, data in contents.items():
        src.put(rel, data)
    r = gateway_factory(budget_ms=100, mounts={"/": f"file://{tmp_path}", "/a": mount_spec(src),
                                               "/b": mount_spec(dst)})
    s = r.session("alice")
    out = r.ops.move(s, "/a/tree", "/b/tree")
    if out.job is not None:
        job = r.ops.wait_job(s, out.job_id, 60)
        assert job.state == "completed", job.error
    assert dst.files() == {rel: len(d) for rel, d in contents.items()}
    assert all(dst.read(rel) == data for rel, data in contents.items())
    assert src.files() == {} and _names(r.ops, s, "/a") == []


def test_a_copy_that_fails_its_checksum_is_never_kept(servers, gateway_factory, tmp_path):
    s3, sftp = servers("s3").area(), servers("sftp").area()
    s3.put("rot/ok.txt", b"fine")
    s3.put("rot/bad.txt", b"rotten bytes")
    s3.server.corrupt(f"{s3.name}/rot/bad.txt")  # S3 still reports the old ETag
    r = gateway_factory(budget_ms=100, sections={"jobs": {"step_retries": 1, "max_attempts": 1}},
                        mounts={"/": f"file://{tmp_path}", "/s3": mount_spec(s3), "/sftp": mount_spec(sftp)})
    s = r.session("alice")

    out = r.ops.move(s, "/s3/rot", "/sftp/rot")
    job = r.ops.wait_job(s, out.job_id, 60)
    assert job.state == "failed"
    assert "md5 check" in job.error
    # the view stays on the committed state: nothing moved, nothing half there
    assert _names(r.ops, s, "/s3/rot") == ["bad.txt", "ok.txt"]
    with pytest.raises(E.NotFound):
        r.ops.stat(s, "/sftp/rot")
    assert sftp.files() == {}
    assert s3.files() == {"rot/ok.txt": 4, "rot/bad.txt": 12}


def test_a_single_object_moves_inline_server_side_on_s3(servers, gateway_factory, tmp_path):
    area = servers("s3").area()
    area.put("a/big.bin", os.urandom(6 << 20))
    r = gateway_factory(mounts={"/": f"file://{tmp_path}", "/m": mount_spec(area)})
    s = r.session("alice")
    before = metrics.storage_requests("s3")
    out = r.ops.move(s, "/m/a/big.bin", "/m/b.bin")
    assert out.job is None and not out.backgrounded
    sent = {k: n - before.get(k, 0) for k, n in metrics.storage_requests("s3").items() if n != before.get(k, 0)}
    # server-side: CopyObject, no bytes through the gateway (no GetObject or multipart upload; the one
    # PutObject is the zero-byte marker that keeps the emptied folder a/)
    assert sent.get("CopyObject") == 1 and sent.get("PutObject") == 1, sent
    assert not {"GetObject", "UploadPart", "CreateMultipartUpload"} & set(sent), sent
    assert {k: o["Size"] for k, o in area.server.keys(area.name).items()} == {"b.bin": 6 << 20, "a/": 0}


def test_a_large_upload_to_s3_goes_multipart(servers, gateway_factory, tmp_path):
    area = servers("s3").area()
    r = gateway_factory(mounts={"/": f"file://{tmp_path}", "/m": mount_spec(area)})
    s = r.session("alice")
    data = os.urandom((10 << 20) + 4096)
    up = r.ops.open_write(s, "/m/large.bin")
    for i in range(0, len(data), 1 << 20):
        up.write(data[i:i + (1 << 20)])
    assert up.commit().size == len(data)
    assert area.server.etag(f"{area.name}/large.bin").endswith("-3")  # parts of 5 MiB at most
    assert area.read("large.bin") == data
    # no native MD5 for a multipart object: the hash is streamed, and right
    assert r.ops.hash(s, "/m/large.bin", "md5") == hashlib.md5(data).hexdigest()


def test_an_s3_folder_is_deleted_in_batches_and_a_refusal_says_which_object(servers, gateway_factory, tmp_path):
    """DeleteObjects removes up to 1,000 objects per request (folder
    markers in the same call) instead of one DELETE each; a batch S3 refuses fails the delete naming a
    refused object, and nothing is lost."""
    server = servers("s3")
    area = server.area()
    for i in range(600):
        area.put(f"big/d{i % 2}/f{i:03}.txt", b"x")
    area.put("kept/a.txt", b"a")
    area.put("kept/b.txt", b"b")
    r = gateway_factory(budget_ms=100, mounts={"/": f"file://{tmp_path}", "/m": mount_spec(area)})
    admin, s = r.session("admin"), r.session("alice")
    server.requests.clear()
    out = r.ops.delete(s, "/m/big", recursive=True)
    job = r.ops.wait_job(admin, out.job_id, 60) if out.job else None
    assert job is None or job.state == "completed", job
    assert set(area.files()) == {"kept/a.txt", "kept/b.txt"}
    deletes = [q for m, q in server.requests if m == "DELETE"]
    batches = [q for m, q in server.requests if m == "POST" and q.startswith("delete")]
    assert len(batches) == 1 and deletes == [], (len(batches), deletes)  # 600 files and 3 folders: one call

    server.refuse_deletes = True
    try:
        with pytest.raises(E.PermissionDenied) as refused:  # within a budget a busy machine keeps too
            r.ops.delete(s, "/m/kept", recursive=True, budget_s=30)
    finally:
        server.refuse_deletes = False
    assert str(refused.value) == ("/m/kept: 2 of 2 objects not deleted (first kept/b.txt: "
                                  "AccessDenied Access Denied)"), refused.value
    assert area.files() == {"kept/a.txt": 1, "kept/b.txt": 1}
    assert _names(r.ops, s, "/m/kept") == ["a.txt", "b.txt"]  # shown again, and not Busy:
    r.ops.open_write(s, "/m/kept/c.txt").commit()
