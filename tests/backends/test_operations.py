"""The scenarios every mount passes: memory, local disk, S3 (moto), SFTP
(OpenSSH sshd), FTP and FTPS (pyftpdlib and vsftpd) and WebDAV over HTTP and
HTTPS (wsgidav), each a real server on 127.0.0.1. Every core operation goes through ``gw.ops`` and its effect is
checked on the server itself."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
from servers import ALL_KINDS, REMOTE_KINDS, mount_spec, servers  # noqa: F401 - servers is a fixture

from gateway import errors as E

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture(params=ALL_KINDS)
def mounted(request, servers, gateway_factory, tmp_path):
    """(running gateway, the mounted area at /m) for each kind of mount."""
    area = servers(request.param).area()
    (tmp_path / "local").mkdir()
    r = gateway_factory(mounts={"/": f"file://{tmp_path / 'local'}", "/m": mount_spec(area)})
    return r, area, request.param


def _done(r, s, outcome):
    """Wait for an outcome's job, if any; it must complete. (A synchronous
    reply may leave a job emptying a delete's trash on the storage.)"""
    if outcome.job is not None:
        job = r.ops.wait_job(s, outcome.job_id, 60)
        assert job.state == "completed", (job.state, job.error)
    return outcome


def _upload(r, s, path, data, offset=0):
    up = r.ops.open_write(s, path, offset)
    for i in range(0, len(data), 100_000):
        up.write(data[i:i + 100_000])
    return up.commit()


def _names(r, s, path):
    return sorted(e.name for e in r.ops.list(s, path))


def test_every_core_operation(mounted):
    r, area, kind = mounted
    ops, s = r.ops, r.session("alice")
    data = os.urandom(300_000)

    # mkdir, and the empty folder lists at once (on S3 too)
    ops.mkdir(s, "/m/docs")
    assert _names(r, s, "/m") == ["docs"]
    assert ops.stat(s, "/m/docs").is_dir
    assert "docs" in area.dirs()

    # upload, stat, list
    entry = _upload(r, s, "/m/docs/a.bin", data)
    assert (entry.name, entry.size, entry.is_dir) == ("a.bin", len(data), False)
    assert area.read("docs/a.bin") == data
    assert [(e.name, e.size) for e in ops.list(s, "/m/docs")] == [("a.bin", len(data))]

    # read, whole and from an offset
    f, e = ops.open_read(s, "/m/docs/a.bin")
    with f:
        assert f.read() == data
    f, e = ops.open_read(s, "/m/docs/a.bin", offset=123_456)
    with f:
        assert f.read(1000) == data[123_456:124_456]
        assert f.read() == data[124_456:]

    # hashes: native where the storage keeps one (S3 md5), streamed otherwise
    assert ops.hash(s, "/m/docs/a.bin", "md5") == hashlib.md5(data).hexdigest()
    assert ops.hash(s, "/m/docs/a.bin", "sha256") == hashlib.sha256(data).hexdigest()

    # replace an existing file, and continue one (resume at its end)
    _upload(r, s, "/m/docs/a.bin", data[:1000])
    assert area.read("docs/a.bin") == data[:1000]
    _upload(r, s, "/m/docs/a.bin", data[1000:2000], offset=1000)
    assert area.read("docs/a.bin") == data[:2000]
    _upload(r, s, "/m/docs/a.bin", data)

    # modification times are kept where the mount says it keeps them, else refused
    keeps = r.gw.namespace.mount_for("/m").backend.capabilities.mtimes
    assert keeps == (kind in ("file", "sftp", "ftp", "ftps", "vsftpd", "vsftpds", "webdav", "s3")), kind
    if keeps:
        assert ops.set_mtime(s, "/m/docs/a.bin", 1_600_000_000)
        assert ops.stat(s, "/m/docs/a.bin").mtime == 1_600_000_000
        if area.server.root is not None:  # the time on the server itself, not a cache
            assert (area.server.root / area.name / "docs/a.bin").stat().st_mtime == 1_600_000_000
        # FTP's MFMT: looked up once, a folder refused, the time as stored returned
        seen = []
        after = ops.set_file_mtime(s, "/m/docs/a.bin", 1_600_000_100, found=seen.append)
        assert after.path == "/m/docs/a.bin" and after.mtime == 1_600_000_100 and not after.is_dir
        assert [e.path for e in seen] == ["/m/docs/a.bin"]
        assert ops.stat(s, "/m/docs/a.bin").mtime == 1_600_000_100
        with pytest.raises(E.IsADirectory):
            ops.set_file_mtime(s, "/m/docs", 1_600_000_000)
        assert ops.set_mtime(s, "/m/docs/a.bin", 1_600_000_000)
    else:
        with pytest.raises(E.Unsupported, match="does not keep modification times"):
            ops.set_mtime(s, "/m/docs/a.bin", 1_600_000_000)
        with pytest.raises(E.Unsupported, match="does not keep modification times"):
            ops.set_file_mtime(s, "/m/docs/a.bin", 1_600_000_000)
    # free space, where the storage tells
    if kind in ("file", "sftp"):
        total, free = ops.disk_usage(s, "/m")
        assert total >= free > 0

    # copy and move a file (server-side on S3 and WebDAV, and on SFTP with
    # OpenSSH's copy-data)
    if kind in ("s3", "sftp", "webdav", "webdavs"):
        assert r.gw.namespace.mount_for("/m").backend.capabilities.server_copy
    _done(r, s, ops.copy(s, "/m/docs/a.bin", "/m/docs/b.bin"))
    _done(r, s, ops.move(s, "/m/docs/b.bin", "/m/c.bin"))
    assert area.files() == {"docs/a.bin": len(data), "c.bin": len(data)}
    assert area.read("c.bin") == data

    # the copies carry the file's time where the mount keeps times, within
    # it and to and from local disk (which always keeps the source's)
    if keeps:
        assert ops.stat(s, "/m/c.bin").mtime == 1_600_000_000
    _done(r, s, ops.copy(s, "/m/c.bin", "/c.bin"))
    assert abs(ops.stat(s, "/c.bin").mtime - ops.stat(s, "/m/c.bin").mtime) < 0.01
    ops.set_mtime(s, "/c.bin", 1_500_000_000)
    _done(r, s, ops.move(s, "/c.bin", "/m/c.bin", overwrite=True))
    assert (ops.stat(s, "/m/c.bin").mtime == 1_500_000_000) == keeps

    # copy and move a tree
    ops.mkdir(s, "/m/docs/sub")
    _upload(r, s, "/m/docs/sub/d.txt", b"deep")
    _done(r, s, ops.copy(s, "/m/docs", "/m/docs2"))
    _done(r, s, ops.move(s, "/m/docs2", "/m/moved"))
    assert _names(r, s, "/m") == ["c.bin", "docs", "moved"]
    assert _names(r, s, "/m/moved/sub") == ["d.txt"]
    assert area.files() == {"docs/a.bin": len(data), "docs/sub/d.txt": 4, "c.bin": len(data),
                            "moved/a.bin": len(data), "moved/sub/d.txt": 4}
    if keeps:  # a job's copies too (vsftpd lists a file older than half a year with its day only)
        shown = ops.stat(s, "/m/moved/a.bin").mtime
        assert shown == 1_600_000_000 or (kind.startswith("vsftpd") and shown == 1_600_000_000 // 86400 * 86400)

    # delete a file, an empty folder and a tree; a file as FTP DELE and SFTP remove ask (it must be one)
    ops.delete(s, "/m/c.bin")
    _upload(r, s, "/m/e.bin", b"e")
    assert ops.delete(s, "/m/e.bin", folder=False).entry.size == 1
    with pytest.raises(E.IsADirectory):
        ops.delete(s, "/m/docs", folder=False)
    with pytest.raises(E.NotFound):
        ops.delete(s, "/m/e.bin", folder=False)
    ops.mkdir(s, "/m/empty")
    ops.delete(s, "/m/empty", folder=True)
    _done(r, s, ops.delete(s, "/m/moved", recursive=True))
    assert _names(r, s, "/m") == ["docs"]
    assert area.files() == {"docs/a.bin": len(data), "docs/sub/d.txt": 4}
    assert not {"empty", "moved"} & area.dirs()

    # the errors every storage reports alike
    with pytest.raises(E.NotFound):
        ops.stat(s, "/m/nothing")
    with pytest.raises(E.NotFound):
        ops.open_read(s, "/m/nothing")
    with pytest.raises(E.NotADirectory):
        list(ops.list(s, "/m/docs/a.bin"))
    with pytest.raises(E.IsADirectory):
        ops.open_read(s, "/m/docs")
    with pytest.raises(E.AlreadyExists):
        ops.mkdir(s, "/m/docs")
    with pytest.raises(E.DirectoryNotEmpty):
        ops.delete(s, "/m/docs")
    with pytest.raises(E.MissingParent):
        ops.mkdir(s, "/m/no/such")


@pytest.mark.parametrize("kind", REMOTE_KINDS)
def test_listings_are_cached_and_never_stale_for_the_gateways_changes(kind, servers, gateway_factory, tmp_path,
                                                                      monkeypatch):
    area = servers(kind).area()
    for i in range(20):
        area.put(f"big/f{i:02}", b"x")
    r = gateway_factory(mounts={"/": f"file://{tmp_path}", "/m": mount_spec(area, cache_ttl_s=1.5)})
    ops, s = r.ops, r.session("alice")
    backend = r.gw.namespace.mount_for("/m").backend
    asked = []
    storage_call = backend._idempotent
    monkeypatch.setattr(backend, "_idempotent", lambda call: asked.append(call) or storage_call(call))

    assert len(_names(r, s, "/m/big")) == 20
    hits, calls = backend.cache.hits, len(asked)
    for _ in range(20):
        assert len(_names(r, s, "/m/big")) == 20
    assert backend.cache.hits >= hits + 20  # served from the cache, the folder's own stat included:
    assert len(asked) == calls  # the storage is not asked again

    # a change behind the gateway's back shows after the TTL, not before
    area.put("big/outside", b"o")
    assert "outside" not in _names(r, s, "/m/big")
    # a change through the gateway shows at once, whatever the TTL
    _upload(r, s, "/m/big/inside", b"i")
    assert {"inside", "outside"} <= set(_names(r, s, "/m/big"))
    ops.delete(s, "/m/big/inside")
    assert "inside" not in _names(r, s, "/m/big")
    _done(r, s, ops.move(s, "/m/big/f00", "/m/f00"))
    assert "f00" not in _names(r, s, "/m/big") and "f00" in _names(r, s, "/m")
    ops.mkdir(s, "/m/big/new")
    assert ops.stat(s, "/m/big/new").is_dir

    area.put("big/later", b"l")
    time.sleep(1.6)
    assert "later" in _names(r, s, "/m/big")


def test_an_ftp_server_without_mlsd_shows_dot_names_and_dates(servers, gateway_factory, tmp_path):
    """vsftpd has no MLSD/MLST and its plain LIST leaves out names starting
    with a dot: a user's .env must still be listed and statted (the gateway's
    own trash of a folder delete is such a name), and entries carry the
    dates LIST shows (exact ones from MDTM when one path is asked for)."""
    vs = servers("vsftpd")
    area = vs.area()
    area.put("old.txt", b"old")
    old = 1577934245  # 2020-01-02T03:04:05Z
    os.utime(vs.root / area.name / "old.txt", (old, old))
    (tmp_path / "local").mkdir()
    r = gateway_factory(mounts={"/": f"file://{tmp_path / 'local'}", "/v": mount_spec(area, cache_ttl_s=0.0)})
    s = r.session("alice")
    _upload(r, s, "/v/.env", b"SECRET=1")
    listed = {e.name: e for e in r.ops.list(s, "/v")}
    assert sorted(listed) == [".env", "old.txt"]
    assert abs(listed[".env"].mtime - time.time()) < 120 and listed[".env"].size == 8
    assert listed["old.txt"].mtime == 1577923200  # LIST shows "Jan 02 2020": the day
    assert r.ops.stat(s, "/v/old.txt").mtime == old and r.ops.stat(s, "/v/.env").size == 8
    assert r.ops.stat(s, "/v").is_dir
    with pytest.raises(E.NotFound):
        r.ops.stat(s, "/v/missing")
    assert r.ops.set_mtime(s, "/v/.env", old) and r.ops.stat(s, "/v/.env").mtime == old  # MDTM with a time


def test_an_ftp_server_that_sets_no_times_is_known_to_keep_none(tmp_path, gateway_factory):
    """Whether an FTP mount keeps times is what its server announces (FEAT:
    MFMT, or MDTM, which vsftpd also takes with a time): a server with
    neither is refused at once, in the capability and in set_mtime."""
    from pyftpdlib.handlers import FTPHandler
    from servers import FTP

    class NoTimes(FTP):
        def _handler_class(self):
            cmds = {k: v for k, v in FTPHandler.proto_cmds.items() if k not in ("MFMT", "MDTM")}
            return type("NoTimesHandler", (FTPHandler,), {"proto_cmds": cmds})

    server = NoTimes(tmp_path / "srv").start()
    try:
        area = server.area()
        area.put("a.txt", b"a")
        r = gateway_factory(mounts={"/": f"file://{tmp_path}", "/m": mount_spec(area)})
        assert not r.gw.namespace.mount_for("/m").backend.capabilities.mtimes
        with pytest.raises(E.Unsupported, match="does not keep modification times"):
            r.ops.set_mtime(r.session("alice"), "/m/a.txt", 1_600_000_000)
    finally:
        server.stop()
