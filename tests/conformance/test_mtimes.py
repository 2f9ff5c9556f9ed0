"""Modification times are kept or refused, never dropped: on a mount that
keeps none (memory, S3), setting one is "not supported" in each protocol's
own terms, while an upload that carries one (X-OC-Mtime) still stands and
its reply says the time was not kept. Copies and moves carry the source's
time wherever the destination keeps times, done at once or as a job."""

from __future__ import annotations

import asyncio
import datetime
import ftplib
import io
import sys
from email.utils import parsedate_to_datetime
from pathlib import Path

import asyncssh
import httpx
import pytest

from conformance.drivers import SftpDriver
from conftest import PASSWORDS, unique_memory

STAMP = 1500000000
#: 2001-02-03 00:00:00 UTC: the time a copied file's source has.
SOURCE_TIME = 981158400
ROOT = Path(__file__).resolve().parents[2]


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


class _Times:
    """A file's modification time as each protocol shows it, in whole
    seconds: FTP MDTM, SFTP stat and WebDAV getlastmodified."""

    def __init__(self, gw) -> None:
        self.ftp = ftplib.FTP()
        self.ftp.connect("127.0.0.1", gw.port("ftp"), timeout=30)
        self.ftp.login("alice", PASSWORDS["alice"])
        self.sftp = SftpDriver(gw.port("sftp"), "alice", PASSWORDS["alice"])
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{gw.port('http')}", auth=("alice", PASSWORDS["alice"]),
                                 timeout=60)

    def of(self, path: str) -> list[int]:
        mdtm = self.ftp.sendcmd(f"MDTM {path}").split()[1]
        ftp = int(datetime.datetime.strptime(mdtm[:14], "%Y%m%d%H%M%S").replace(
            tzinfo=datetime.timezone.utc).timestamp())
        sftp = int(self.sftp._run(self.sftp.sftp.stat(path)).mtime)
        r = self.http.request("PROPFIND", f"/dav{path}", headers={"Depth": "0"},
                              content=b'<d:propfind xmlns:d="DAV:"><d:prop><d:getlastmodified/></d:prop></d:propfind>')
        assert r.status_code == 207, r.text
        shown = r.text.split("getlastmodified>")[1].rsplit("<", 1)[0]
        return [ftp, sftp, int(parsedate_to_datetime(shown).timestamp())]

    def close(self) -> None:
        self.http.close()
        self.sftp.close()
        self.ftp.quit()


def _s3_server(tmp):
    sys.path.insert(0, str(ROOT / "tests" / "backends"))
    from servers import S3

    return S3(tmp).start()


@pytest.mark.timeout(120)
def test_copies_and_moves_carry_the_source_time_where_the_destination_keeps_times(gateway_factory, tmp_path):
    """A file dated 2001-02-03 copied and moved within local disk, between
    local disk and a slow memory mount (which keeps no times) and between
    local disk and S3 (moto), once at once (a WebDAV COPY/MOVE of the file)
    and once as a background job (a REST copy/move of its folder with
    ``Prefer: respond-async``): wherever the destination mount keeps times
    its copy shows the source's time through FTP, SFTP and WebDAV alike;
    where it keeps none the copy stands with the storage's own time."""
    s3 = _s3_server(tmp_path / "s3")
    try:
        gw = gateway_factory(protocols=("ftp", "sftp", "http"), mounts={
            "/": f"file://{tmp_path / 'data'}",
            "/slow": (f"slow::memory://{unique_memory()}", {"slow": {"latency_ms": 5}}),
            "/s3": (s3.area().url, s3.options, {"timeout_s": 10.0}),
        })
        s = gw.session()
        times = _Times(gw)
        try:
            n = 0
            for src, dst in (("", ""), ("", "/slow"), ("/slow", ""), ("", "/s3"), ("/s3", ""), ("/s3", "/s3")):
                for op in ("copy", "move"):
                    for background in (False, True):
                        n += 1
                        folder = f"{src}/src{n}"
                        times.http.request("MKCOL", f"/dav{folder}")
                        assert times.http.put(f"/dav{folder}/f.txt", content=b"dated").status_code == 201
                        if gw.ops.keeps_mtime(s, src or "/"):
                            gw.ops.set_mtime(s, f"{folder}/f.txt", SOURCE_TIME)
                        source_time = int(gw.ops.stat(s, f"{folder}/f.txt").mtime)
                        target = f"{dst}/dst{n}"
                        if background:
                            r = times.http.post(f"/api/v1/fs/{op}", json={"from": folder, "to": target},
                                                headers={"Prefer": "respond-async"})
                            if r.status_code == 202:
                                job = gw.ops.wait_job(s, r.json()["id"], 60)
                                assert job.state == "completed", (job.state, job.error)
                            else:  # a folder renamed natively is done at once
                                assert (op, src, dst) == ("move", "", "") and r.status_code in (200, 201), r.text
                        else:
                            times.http.request("MKCOL", f"/dav{target}")
                            r = times.http.request(op.upper(), f"/dav{folder}/f.txt",
                                                   headers={"Destination": f"/dav{target}/f.txt"})
                            assert r.status_code == 201, r.text
                        case = (op, src or "/", dst or "/", "job" if background else "at once")
                        shown = times.of(f"{target}/f.txt")
                        if gw.ops.keeps_mtime(s, dst or "/"):
                            assert shown == [source_time] * 3, case
                        else:  # the storage's own time: not the one set on local disk
                            assert SOURCE_TIME not in shown, case
                        assert gw.ops.exists(s, f"{folder}/f.txt") == (op == "copy"), case
        finally:
            times.close()
    finally:
        s3.stop()
