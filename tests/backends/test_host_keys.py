"""SFTP mounts check the server's host key: against the mount's
``known_hosts`` when it gives one, else the key seen first is recorded in
state_dir and a different one later is refused, with one line naming the
host, port and the new key's fingerprint; the mount is then unavailable in
every protocol, and the gateway still starts."""

from __future__ import annotations

import asyncio
import ftplib
import io
import logging
import stat
import subprocess

import asyncssh
import httpx
import pytest
from conftest import PASSWORDS
from servers import fresh_server, mount_spec  # noqa: F401 - fresh_server is a fixture

from backends import open_backend
from backends.registry import check_url
from conformance.drivers import SftpDriver
from gateway import errors as E

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def _new_host_key(server) -> str:
    """Give the (stopped) sshd a new host key; its SHA256 fingerprint."""
    for suffix in ("", ".pub"):
        server.host_key.with_name(server.host_key.name + suffix).unlink()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(server.host_key)], check=True)
    return _fingerprint(server)


def _fingerprint(server) -> str:
    return asyncssh.read_public_key(f"{server.host_key}.pub").get_fingerprint("sha256")


def _upload(r, s, path, data):
    up = r.ops.open_write(s, path)
    up.write(data)
    return up.commit()


def test_first_key_is_recorded_and_a_changed_key_refused_in_every_protocol(fresh_server, gateway_factory,
                                                                           tmp_path, caplog):
    server = fresh_server("sftp")
    area = server.area()
    area.put("a.txt", b"hello")
    r = gateway_factory(protocols=("ftp", "sftp", "http"),
                        mounts={"/": f"file://{tmp_path}", "/m": mount_spec(area, cache_ttl_s=0.0, retries=1)})
    s = r.session("alice")
    assert [e.name for e in r.ops.list(s, "/m")] == ["a.txt"]

    record = r.tmp / "var" / "known_hosts"
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    [line] = record.read_text().splitlines()
    host_pub = server.host_key.with_name(server.host_key.name + ".pub").read_text().split()[:2]
    assert line.split() == [f"[127.0.0.1]:{server.port}", *host_pub]

    server.stop()  # the server comes back with another key (or someone else answers in its place)
    fingerprint = _new_host_key(server)
    server.start()
    said = (f"SFTP server 127.0.0.1 port {server.port} now shows host key {fingerprint}, not the one recorded in "
            f"state_dir/known_hosts on first use: connection refused (if the server's key really changed, remove "
            f"the line for [127.0.0.1]:{server.port} from that file)")
    with pytest.raises(E.BackendUnavailable) as refused:
        r.ops.list(s, "/m")  # the connection broke: the retry connects again, and meets the new key
    assert str(refused.value) == f"/m: {said}"
    assert record.read_text().splitlines() == [line]  # not replaced by the new key

    # each front end answers "storage unavailable" in its own terms, and the gateway keeps serving
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", r.port("ftp"), timeout=30)
    ftp.login("alice", PASSWORDS["alice"])
    with pytest.raises(ftplib.error_temp, match="^451"):
        ftp.retrbinary("RETR /m/a.txt", lambda b: None)
    ftp.storbinary("STOR /local.txt", io.BytesIO(b"ok"))
    ftp.quit()
    sftp = SftpDriver(r.port("sftp"), "alice", PASSWORDS["alice"])
    try:
        with pytest.raises(asyncssh.SFTPFailure, match="now shows host key"):
            asyncio.run_coroutine_threadsafe(sftp.sftp.stat("/m/a.txt"), sftp.loop).result(60)
        assert sftp._run(sftp.sftp.stat("/local.txt")).size == 2
    finally:
        sftp.close()
    with httpx.Client(base_url=f"http://127.0.0.1:{r.port('http')}", auth=("alice", PASSWORDS["alice"]),
                      timeout=30) as c:
        assert c.get("/dav/m/a.txt").status_code == 503
        assert c.get("/dav/local.txt").content == b"ok"

    # a gateway started while the key is wrong starts, says why in its log, and refuses the mount
    caplog.set_level(logging.WARNING)
    again = gateway_factory(mounts={"/": f"file://{tmp_path}", "/m": mount_spec(area, retries=0)},
                            sections={"server": {"state_dir": str(r.tmp / "var")}})
    assert said in caplog.text
    with pytest.raises(E.BackendUnavailable, match="now shows host key"):
        again.ops.stat(again.session("alice"), "/m/a.txt")


def test_known_hosts_file_is_the_only_trust_and_skipping_the_check_is_explicit(fresh_server, tmp_path):
    server = fresh_server("sftp")
    area = server.area()
    area.put("a.txt", b"hello")
    pub = server.host_key.with_name(server.host_key.name + ".pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{server.port} {' '.join(pub)}\n")
    b = open_backend(area.url, {**area.options, "known_hosts": str(known)}, retries=0)
    assert [e.name for e in b.listing(b.join(""))] == ["a.txt"]
    b.close()

    other = tmp_path / "other_known_hosts"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    other.write_text(f"[127.0.0.1]:{server.port} " + " ".join((tmp_path / "k.pub").read_text().split()[:2]) + "\n")
    refused = open_backend(area.url, {**area.options, "known_hosts": str(other)}, retries=0)  # starts anyway
    with pytest.raises(E.BackendUnavailable) as exc:
        refused.listing(refused.join(""))
    assert str(exc.value) == (f"SFTP server 127.0.0.1 port {server.port} shows host key {_fingerprint(server)}, "
                              f"which is not in the mount's known_hosts file: connection refused")
    assert not (tmp_path / "state" / "known_hosts").exists()

    for refuse in (open_backend, check_url):  # check-config says it before serve would
        with pytest.raises(E.BadRequest, match=r"known_hosts .*missing: cannot be read"):
            refuse(area.url, {**area.options, "known_hosts": str(tmp_path / "missing")})
    with pytest.raises(E.BadRequest, match="needs known_hosts"):
        open_backend(area.url, area.options)  # no file, nowhere to record: no silent trust

    with pytest.raises(E.BadRequest, match="insecure_skip_host_key_check: expected true or false, got 'yes'"):
        open_backend(area.url, {**area.options, "insecure_skip_host_key_check": "yes"}, state_dir=tmp_path / "state")
    skipped = open_backend(area.url, {**area.options, "known_hosts": str(other),
                                      "insecure_skip_host_key_check": "true"}, state_dir=tmp_path / "state")
    assert [e.name for e in skipped.listing(skipped.join(""))] == ["a.txt"]
    skipped.close()
    assert not (tmp_path / "state" / "known_hosts").exists()  # nothing recorded either
