"""Modification times are kept or refused, never dropped: on a mount that
keeps none (memory, S3), setting one is "not supported" in each protocol's
own terms, while an upload that carries one (X-OC-Mtime) still stands and
its reply says the time was not kept."""

from __future__ import annotations

import asyncio
import ftplib
import io

import asyncssh
import httpx
import pytest

from conformance.drivers import SftpDriver
from conftest import PASSWORDS

STAMP = 1500000000


@pytest.fixture
def gw(gateway_factory):
    return gateway_factory(protocols=("ftp", "sftp", "http"))


def test_times_are_kept_on_disk_and_refused_where_the_storage_keeps_none(gw):
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", gw.port("ftp"), timeout=30)
    ftp.login("alice", PASSWORDS["alice"])
    for path in ("/a.txt", "/slow/a.txt"):
        ftp.storbinary(f"STOR {path}", io.BytesIO(b"a"))
    assert ftp.sendcmd("MFMT 20170714024000 /a.txt").startswith("213")
    with pytest.raises(ftplib.error_perm, match="^504.*modification times"):
        ftp.sendcmd("MFMT 20170714024000 /slow/a.txt")
    ftp.quit()
    assert gw.data.joinpath("a.txt").stat().st_mtime == STAMP

    sftp = SftpDriver(gw.port("sftp"), "alice", PASSWORDS["alice"])
    try:
        sftp._run(sftp.sftp.utime("/a.txt", (STAMP + 1, STAMP + 1)))
        with pytest.raises(asyncssh.SFTPOpUnsupported, match="modification times"):
            asyncio.run_coroutine_threadsafe(sftp.sftp.utime("/slow/a.txt", (STAMP, STAMP)), sftp.loop).result(60)
    finally:
        sftp.close()
    assert gw.data.joinpath("a.txt").stat().st_mtime == STAMP + 1

    base = f"http://127.0.0.1:{gw.port('http')}"
    with httpx.Client(base_url=base, auth=("alice", PASSWORDS["alice"]), timeout=30) as c:
        r = c.put("/dav/slow/b.txt", content=b"b", headers={"X-OC-Mtime": str(STAMP)})
        assert r.status_code == 201 and "X-OC-MTime" not in r.headers
        r = c.put("/remote.php/webdav/slow/c.txt", content=b"c", headers={"X-OC-Mtime": str(STAMP)})
        assert r.status_code == 201 and "X-OC-MTime" not in r.headers
        r = c.put("/dav/b.txt", content=b"b", headers={"X-OC-Mtime": str(STAMP)})
        assert r.status_code == 201 and r.headers["X-OC-MTime"] == "accepted"
        win32 = (b'<?xml version="1.0" encoding="utf-8"?><D:propertyupdate xmlns:D="DAV:" '
                 b'xmlns:Z="urn:schemas-microsoft-com:"><D:set><D:prop>'
                 b'<Z:Win32LastModifiedTime>Wed, 01 Jan 2020 00:00:00 GMT</Z:Win32LastModifiedTime>'
                 b'</D:prop></D:set></D:propertyupdate>')
        r = c.request("PROPPATCH", "/dav/slow/b.txt", content=win32)
        assert r.status_code == 207 and "200 OK" not in r.text, r.text


@pytest.mark.parametrize("prop,value", [("lastmodified", str(STAMP)),
                                        ("getlastmodified", "Fri, 14 Jul 2017 02:40:00 GMT")])
def test_proppatch_sets_the_time_or_fails(gw, prop, value):
    """rclone's owncloud/nextcloud vendors set a time by PROPPATCH of
    lastmodified: kept on disk, refused where the storage keeps none, never
    stored as a dead property that changes nothing."""
    body = (f'<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><d:{prop}>{value}</d:{prop}>'
            '</d:prop></d:set></d:propertyupdate>').encode()
    base = f"http://127.0.0.1:{gw.port('http')}"
    with httpx.Client(base_url=base, auth=("alice", PASSWORDS["alice"]), timeout=30) as c:
        for path in ("/dav/t.txt", "/dav/slow/t.txt"):
            assert c.put(path, content=b"t").status_code == 201
        r = c.request("PROPPATCH", "/remote.php/webdav/t.txt", content=body)
        assert r.status_code == 207 and "200 OK" in r.text, r.text
        r = c.request("PROPPATCH", "/dav/slow/t.txt", content=body)
        assert r.status_code == 207 and "200 OK" not in r.text and "501" in r.text, r.text
        listed = c.request("PROPFIND", "/dav/slow/t.txt", headers={"Depth": "0"},
                           content=f'<d:propfind xmlns:d="DAV:"><d:prop><d:{prop}/></d:prop></d:propfind>')
        assert str(value) not in listed.text
    assert gw.data.joinpath("t.txt").stat().st_mtime == STAMP
