"""Each WebDAV method and the statuses it answers, driven with httpx against a
running gateway."""

from __future__ import annotations

import asyncio
import base64
import ftplib
import http.client
import logging
import os
import re
import socket
import time
import xml.etree.ElementTree as ET
from email.utils import formatdate

import asyncssh
import httpx
import pytest

from gateway import errors as E
from gateway.auth import hash_password
from protocols.webdav.errors import STATUS, reason, status_for
from conftest import PASSWORDS
from webdav_helpers import PROPGET, PROPPATCH, client, colour, listing

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

LOCKINFO = (b'<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
            b'</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>tests</D:owner></D:lockinfo>')


@pytest.fixture
def dav(gateway_factory):
    return gateway_factory(protocols=("http",), users={
        "carol": {"password_hash": hash_password("carol-pw"), "permissions": ["list", "download"]},
        "dave": {"password_hash": hash_password("dave-pw"), "home": "/homes/dave"},
    })


def test_error_table_maps_every_gateway_error():
    for cls in E.ALL_ERRORS:
        status = status_for(cls("x"))
        assert 400 <= status < 600, cls
        assert not reason(status).endswith("Status"), status
    assert set(STATUS) <= set(E.ALL_ERRORS)
    expected = {E.NotFound: 404, E.MissingParent: 409, E.PermissionDenied: 403, E.AlreadyExists: 412,
                E.DirectoryNotEmpty: 409, E.Busy: 423, E.QuotaExceeded: 507, E.BackendUnavailable: 503,
                E.BackendError: 502, E.BadRequest: 400, E.Unsupported: 501, E.LoginBanned: 429}
    for cls, status in expected.items():
        assert status_for(cls("x")) == status, cls
    assert status_for(E.AlreadyExists("x"), "MKCOL") == 405


def test_options_put_get_head_delete(dav):
    with client(dav) as c:
        r = c.options("/")
        assert r.status_code == 200 and r.headers["DAV"] == "1,2"
        r = c.put("/a.txt", content=b"hello world")
        assert r.status_code == 201, r.text
        etag = r.headers["ETag"]
        assert (dav.data / "a.txt").read_bytes() == b"hello world"
        r = c.put("/a.txt", content=b"HELLO WORLD!")
        assert r.status_code == 204
        assert r.headers["ETag"] != etag
        etag = r.headers["ETag"]

        r = c.get("/a.txt")
        assert r.status_code == 200 and r.content == b"HELLO WORLD!"
        assert r.headers["ETag"] == etag and r.headers["Last-Modified"]
        assert r.headers["Content-Type"] == "text/plain"
        r = c.head("/a.txt")
        assert r.status_code == 200 and r.headers["Content-Length"] == "12" and r.content == b""
        r = c.get("/a.txt", headers={"Range": "bytes=6-10"})
        assert r.status_code == 206 and r.content == b"WORLD"
        assert r.headers["Content-Range"] == "bytes 6-10/12"
        r = c.get("/a.txt", headers={"Range": "bytes=-3"})
        assert r.status_code == 206 and r.content == b"LD!"

        r = c.get("/missing.txt")
        assert r.status_code == 404 and r.headers["Content-Type"].startswith("text/plain")
        assert r.text == "404 Not Found: /missing.txt\n"
        assert c.put("/no/such/dir.txt", content=b"x").status_code == 409
        assert c.delete("/a.txt").status_code == 204
        assert c.delete("/a.txt").status_code == 404
        assert not (dav.data / "a.txt").exists()


def test_plain_get_answers_what_wsgidav_answers(dav):
    """A GET without conditions or Range is answered by the gateway: the
    same status, headers and body as wsgidav's own GET (asked for with a
    condition that holds), whether or not the file is locked."""
    body = os.urandom(300_000)
    (dav.data / "data.bin").write_bytes(body)
    (dav.data / "d").mkdir()
    since = formatdate(0, usegmt=True)
    with client(dav) as c, client(dav, "bob") as other:
        fast, slow = c.get("/data.bin"), c.get("/data.bin", headers={"If-Modified-Since": since})
        assert fast.status_code == slow.status_code == 200
        assert fast.content == slow.content == body
        shown = ("Content-Length", "Content-Type", "Last-Modified", "ETag", "Accept-Ranges")
        assert {h: fast.headers.get(h) for h in shown} == {h: slow.headers.get(h) for h in shown}
        assert c.request("LOCK", "/data.bin", content=LOCKINFO).status_code == 200
        assert other.get("/data.bin").content == body  # a lock bars writes, not reads
        folder = c.get("/d/")  # wsgidav's page
        assert folder.status_code == 200 and "text/html" in folder.headers["Content-Type"]
    with client(dav, "carol", password="carol-pw") as c:
        assert c.get("/data.bin").content == body  # list + download
    (dav.data / "homes" / "dave").mkdir(parents=True)
    with client(dav, "dave", password="dave-pw") as c:
        assert c.get("/data.bin").status_code == 404  # outside dave's home


def test_chunked_put_streams_the_body(dav):
    blob = bytes(range(256)) * 4096  # 1 MiB

    def body():
        for i in range(0, len(blob), 65536):
            yield blob[i:i + 65536]

    with client(dav) as c:
        r = c.put("/big.bin", content=body())
        assert r.status_code == 201, r.text
        assert (dav.data / "big.bin").read_bytes() == blob
        assert c.get("/big.bin").content == blob


def _raw_put(dav, path: str, length: int, user: str = "alice", extra: str = "") -> socket.socket:
    """A connection that has sent a PUT's headers declaring ``length`` bytes."""
    auth = base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()
    sock = socket.create_connection(("127.0.0.1", dav.port("http")), timeout=30)
    sock.sendall((f"PUT /dav{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n"
                  f"Content-Length: {length}\r\n{extra}\r\n").encode())
    return sock


def _replies(sock: socket.socket, count: int) -> list[bytes]:
    """The status lines of the next ``count`` replies (bodies are empty)."""
    data = b""
    while data.count(b"\r\n\r\n") < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return [head.split(b"\r\n", 1)[0] for head in data.split(b"\r\n\r\n")[:count]]


def test_an_upload_cut_short_leaves_the_file_as_it_was(dav):
    with client(dav) as c:
        c.put("/keep.txt", content=b"original")
        for path in ("/keep.txt", "/new.txt"):
            sock = _raw_put(dav, path, 1 << 20)
            sock.sendall(b"x" * 1000)
            sock.close()
            time.sleep(0.3)
        assert c.get("/keep.txt").content == b"original"
        assert c.get("/new.txt").status_code == 404
        assert sorted(p.name for p in dav.data.iterdir()) == ["keep.txt"]  # no temporary left behind


def test_uploads_arrive_whole_however_the_body_is_sent(dav):
    """Bodies that come with their headers, after a 100 Continue, and pipelined
    with the next request on one connection; large ones over TLS too."""
    blob = os.urandom(3 << 20) + b"end"
    with client(dav) as c:
        r = c.put("/big.bin", content=blob, headers={"Expect": "100-continue"})
        assert r.status_code == 201 and r.headers["ETag"] == c.head("/big.bin").headers["ETag"]
        assert (dav.data / "big.bin").read_bytes() == blob
    sock = _raw_put(dav, "/one.txt", 3)
    auth = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
    sock.sendall(b"one" + (f"PUT /dav/two.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n"
                           f"Content-Length: 3\r\n\r\ntwo").encode())
    assert _replies(sock, 2) == [b"HTTP/1.1 201 Created"] * 2
    sock.close()
    assert (dav.data / "one.txt").read_bytes() == b"one" and (dav.data / "two.txt").read_bytes() == b"two"


def test_kept_alive_connections_share_one_worker(gateway_factory):
    """A worker answers a kept-alive client's next request itself when it
    comes at once, but never holds on to an idle connection: with a single
    worker, two clients on open connections take turns, and one that pauses
    is still answered."""
    running = gateway_factory(protocols=("http",), sections={"http": {"threads": 1}})
    with client(running) as a, client(running) as b:
        for i in range(20):
            assert a.put(f"/a{i}.txt", content=b"a").status_code == 201
            assert b.put(f"/b{i}.txt", content=b"b").status_code == 201
        time.sleep(0.2)
        assert a.get("/a0.txt").content == b"a"
        assert b.get("/b19.txt").content == b"b"
        assert len({n for n in listing(a, "/") if n.endswith(".txt")}) == 40


def test_a_file_being_uploaded_cannot_be_locked_until_its_body_is_in(dav):
    sock = _raw_put(dav, "/up.txt", 6)
    sock.sendall(b"abc")
    with client(dav, "bob") as other:
        deadline = time.monotonic() + 10
        while (dav.data / "up.txt").exists() or not any(p.name.startswith(".") for p in dav.data.iterdir()):
            assert time.monotonic() < deadline, "the upload never opened"
            time.sleep(0.02)
        assert other.request("LOCK", "/up.txt", content=LOCKINFO).status_code == 423
        sock.sendall(b"def")
        assert _replies(sock, 1) == [b"HTTP/1.1 201 Created"]
        sock.close()
        assert other.get("/up.txt").content == b"abcdef"
        assert other.request("LOCK", "/up.txt", content=LOCKINFO).status_code == 200


def test_conditional_requests(dav):
    with client(dav) as c:
        etag = c.put("/c.txt", content=b"v1").headers["ETag"]
        assert c.get("/c.txt", headers={"If-None-Match": etag}).status_code == 304
        assert c.get("/c.txt", headers={"If-None-Match": '"other"'}).status_code == 200
        assert c.get("/c.txt", headers={"If-Match": '"other"'}).status_code == 412
        later = formatdate(2_000_000_000, usegmt=True)
        assert c.get("/c.txt", headers={"If-Modified-Since": later}).status_code == 304
        assert c.get("/c.txt", headers={"If-Modified-Since": formatdate(0, usegmt=True)}).status_code == 200
        assert c.put("/c.txt", content=b"v2", headers={"If-Match": '"stale"'}).status_code == 412
        assert c.put("/c.txt", content=b"v2", headers={"If-Match": etag}).status_code == 204
        assert c.put("/c.txt", content=b"v3", headers={"If-None-Match": "*"}).status_code == 412
        assert c.put("/new.txt", content=b"n", headers={"If-None-Match": "*"}).status_code == 201
        # The WebDAV If header: an ETag that no longer matches fails the request.
        assert c.put("/c.txt", content=b"v4", headers={"If": f"([{etag}])"}).status_code == 412
        assert (dav.data / "c.txt").read_bytes() == b"v2"


def test_mkcol_copy_move(dav):
    with client(dav) as c:
        assert c.request("MKCOL", "/d").status_code == 201
        assert c.request("MKCOL", "/d").status_code == 405
        assert c.request("MKCOL", "/x/y").status_code == 409
        c.put("/d/f.txt", content=b"f")
        c.request("MKCOL", "/d/sub")
        c.put("/d/sub/g.txt", content=b"g")

        r = c.request("COPY", "/d", headers={"Destination": "/dav/d2"})
        assert r.status_code == 201, r.text
        assert (dav.data / "d2" / "sub" / "g.txt").read_bytes() == b"g"
        r = c.request("COPY", "/d/f.txt", headers={"Destination": "/dav/d2/f.txt", "Overwrite": "F"})
        assert r.status_code == 412
        r = c.request("COPY", "/d/f.txt", headers={"Destination": "/dav/d2/f.txt"})
        assert r.status_code == 204
        r = c.request("COPY", "/d", headers={"Destination": "/dav/shallow", "Depth": "0"})
        assert r.status_code == 201
        assert listing(c, "/shallow") == set()
        assert c.request("COPY", "/d", headers={"Destination": "/dav/no/where"}).status_code == 409
        assert c.request("COPY", "/nothing", headers={"Destination": "/dav/x"}).status_code == 404

        r = c.request("MOVE", "/d2", headers={"Destination": "/dav/d3"})
        assert r.status_code == 201
        assert listing(c, "/") >= {"d", "d3", "shallow"} and "d2" not in listing(c, "/")
        r = c.request("MOVE", "/d3", headers={"Destination": "/dav/d", "Overwrite": "F"})
        assert r.status_code == 412
        r = c.request("MOVE", "/d3", headers={"Destination": "/dav/d"})
        assert r.status_code == 204
        assert listing(c, "/d") == {"f.txt", "sub"}
        assert c.request("MOVE", "/d", headers={"Destination": "/dav/d/inner"}).status_code == 403


def test_propfind_depths(dav, gateway_factory):
    with client(dav) as c:
        c.request("MKCOL", "/p")
        c.put("/p/one.txt", content=b"1")
        r = c.request("PROPFIND", "/p", headers={"Depth": "0"})
        assert r.status_code == 207
        assert len(ET.fromstring(r.content).findall("{DAV:}response")) == 1
        assert listing(c, "/p") == {"one.txt"}
        assert c.request("PROPFIND", "/p", headers={"Depth": "infinity"}).status_code == 403
        assert c.request("PROPFIND", "/p").status_code == 403  # no Depth means infinity
        assert c.request("PROPFIND", "/nope", headers={"Depth": "0"}).status_code == 404

    deep = gateway_factory(protocols=("http",), sections={"http": {"propfind_infinity": True}})
    with client(deep) as c:
        c.request("MKCOL", "/p")
        c.request("MKCOL", "/p/q")
        c.put("/p/q/two.txt", content=b"2")
        r = c.request("PROPFIND", "/p", headers={"Depth": "infinity"})
        assert r.status_code == 207
        assert len(ET.fromstring(r.content).findall("{DAV:}response")) == 3


def test_dead_properties_follow_the_resource_and_survive_a_restart(dav):
    from conftest import start_gateway

    with client(dav) as c:
        c.put("/p.txt", content=b"p")
        r = c.request("PROPPATCH", "/p.txt", content=PROPPATCH)
        assert r.status_code == 207 and "200 OK" in r.text
        assert colour(c, "/p.txt") == "blue"
        assert c.request("COPY", "/p.txt", headers={"Destination": "/dav/q.txt"}).status_code == 201
        assert c.request("MOVE", "/p.txt", headers={"Destination": "/dav/r.txt"}).status_code == 201
        assert colour(c, "/q.txt") == "blue" and colour(c, "/r.txt") == "blue"
        c.put("/p.txt", content=b"again")
        assert colour(c, "/p.txt") is None
        c.request("MKCOL", "/tree")
        c.put("/tree/leaf.txt", content=b"l")
        c.request("PROPPATCH", "/tree/leaf.txt", content=PROPPATCH)
        c.request("MOVE", "/tree", headers={"Destination": "/dav/tree2"})
        assert colour(c, "/tree2/leaf.txt") == "blue"
        c.delete("/q.txt")
        c.put("/q.txt", content=b"new")
        assert colour(c, "/q.txt") is None

    tmp = dav.tmp
    dav.close()
    again = start_gateway(tmp, ("http",))
    try:
        with client(again) as c:
            assert colour(c, "/r.txt") == "blue"
            assert colour(c, "/tree2/leaf.txt") == "blue"
    finally:
        again.close()


def test_locks_refuse_other_writers_and_survive_a_restart(dav):
    from conftest import start_gateway

    with client(dav) as c:
        c.put("/l.txt", content=b"l")
        r = c.request("LOCK", "/l.txt", content=LOCKINFO, headers={"Timeout": "Second-600"})
        assert r.status_code == 200, r.text
        token = r.headers["Lock-Token"].strip("<>")
        assert c.put("/l.txt", content=b"x").status_code == 423
        assert c.delete("/l.txt").status_code == 423
        assert c.request("MOVE", "/l.txt", headers={"Destination": "/dav/m.txt"}).status_code == 423
        assert c.put("/l.txt", content=b"mine", headers={"If": f"(<{token}>)"}).status_code == 204
        # Locking an unmapped URL creates an empty file (RFC 4918 7.3).
        r = c.request("LOCK", "/fresh.txt", content=LOCKINFO)
        assert r.status_code == 201 and (dav.data / "fresh.txt").read_bytes() == b""
        # A lock on a folder's member forbids deleting the folder.
        c.request("MKCOL", "/f")
        c.put("/f/in.txt", content=b"i")
        inner = c.request("LOCK", "/f/in.txt", content=LOCKINFO).headers["Lock-Token"]
        assert c.delete("/f").status_code == 423
        assert (dav.data / "f" / "in.txt").exists()
        assert c.request("UNLOCK", "/f/in.txt", headers={"Lock-Token": inner}).status_code == 204
        assert c.delete("/f").status_code == 204

    tmp = dav.tmp
    dav.close()
    again = start_gateway(tmp, ("http",))
    try:
        with client(again) as c:
            assert c.put("/l.txt", content=b"x").status_code == 423
            r = c.request("PROPFIND", "/l.txt", headers={"Depth": "0"})
            assert token in r.text
            assert c.request("UNLOCK", "/l.txt", headers={"Lock-Token": f"<{token}>"}).status_code == 204
            assert c.put("/l.txt", content=b"free").status_code == 204
    finally:
        again.close()


def test_dead_properties_follow_an_ftp_rename_and_go_with_an_ftp_delete(gateway_factory):
    """Properties set over WebDAV move with a rename an FTP client makes, and
    a file an FTP client deletes leaves none for the next file of its name."""
    r = gateway_factory(protocols=("http", "ftp"))
    with client(r) as c:
        c.put("/a.txt", content=b"a")
        assert c.request("PROPPATCH", "/a.txt", content=PROPPATCH).status_code == 207
        with ftplib.FTP() as f:
            f.connect("127.0.0.1", r.port("ftp"), timeout=30)
            f.login("alice", PASSWORDS["alice"])
            f.rename("a.txt", "b.txt")
            assert colour(c, "/b.txt") == "blue"
            f.delete("b.txt")
        c.put("/b.txt", content=b"new")
        assert colour(c, "/b.txt") is None


def test_locks_bar_ftp_and_sftp_and_stay_behind_when_their_owner_renames_or_deletes(gateway_factory):
    """A lock binds the other protocols too (tests/conformance/test_locks.py
    has every change); it does not move with its resource (RFC 4918 7.5):
    renamed or deleted by its owner, nothing stays locked at either path."""
    r = gateway_factory(protocols=("http", "ftp", "sftp"))
    with client(r) as c:
        c.put("/a.txt", content=b"a")
        c.put("/d.txt", content=b"d")
        tokens = {path: c.request("LOCK", path, content=LOCKINFO).headers["Lock-Token"]
                  for path in ("/a.txt", "/d.txt")}
        with ftplib.FTP() as f:
            f.connect("127.0.0.1", r.port("ftp"), timeout=30)
            f.login("alice", PASSWORDS["alice"])
            with pytest.raises(ftplib.error_temp, match="^450 /a.txt: locked by WebDAV lock of alice"):
                f.rename("a.txt", "b.txt")

        async def remove():
            async with asyncssh.connect("127.0.0.1", r.port("sftp"), username="alice",
                                        password=PASSWORDS["alice"], known_hosts=None) as conn:
                async with conn.start_sftp_client() as sftp:
                    await sftp.remove("/d.txt")

        with pytest.raises(asyncssh.SFTPFailure, match="locked by WebDAV lock"):
            asyncio.run(remove())
        assert c.request("MOVE", "/a.txt", headers={"Destination": "/dav/b.txt",
                                                    "If": f"({tokens['/a.txt']})"}).status_code == 201
        assert c.delete("/d.txt", headers={"If": f"({tokens['/d.txt']})"}).status_code == 204
        with client(r, "bob") as other:  # no lock token: only a lock would refuse these
            for path in ("/a.txt", "/b.txt", "/d.txt"):
                assert other.put(path, content=b"new").status_code in (201, 204), path
        assert r.ops.davstate.locks("/", include_children=True) == []


def test_locks_and_properties_are_keyed_by_the_resource_not_the_users_path(dav):
    (dav.data / "homes" / "dave").mkdir(parents=True)
    with client(dav) as alice, client(dav, "dave", password="dave-pw") as dave:
        assert dave.put("/x.txt", content=b"dave's").status_code == 201
        assert (dav.data / "homes" / "dave" / "x.txt").read_bytes() == b"dave's"
        alice.put("/x.txt", content=b"alice's")
        alice.request("PROPPATCH", "/homes/dave/x.txt", content=PROPPATCH)
        assert colour(dave, "/x.txt") == "blue"
        assert colour(alice, "/x.txt") is None
        assert alice.request("LOCK", "/x.txt", content=LOCKINFO).status_code == 200
        assert dave.put("/x.txt", content=b"still mine").status_code == 204
        assert dave.request("LOCK", "/x.txt", content=LOCKINFO).status_code == 200
        assert alice.put("/homes/dave/x.txt", content=b"no").status_code == 423


def test_auth_permissions_and_bans(dav, gateway_factory):
    base = f"http://127.0.0.1:{dav.port('http')}/dav"
    assert httpx.request("PROPFIND", base + "/", headers={"Depth": "0"}).status_code == 401
    with client(dav, password="wrong") as c:
        assert c.request("PROPFIND", "/", headers={"Depth": "0"}).status_code == 401
    with client(dav, "carol", password="carol-pw") as carol:
        assert carol.request("PROPFIND", "/", headers={"Depth": "0"}).status_code == 207
        r = carol.put("/nope.txt", content=b"x")
        assert r.status_code == 403 and "permission denied" in r.text
        assert carol.request("MKCOL", "/nope").status_code == 403

    banned = gateway_factory(protocols=("http",), sections={"auth": {"max_failures": 2, "ban_s": 60}})
    with client(banned, password="wrong") as bad, client(banned) as good:
        assert good.request("PROPFIND", "/", headers={"Depth": "0"}).status_code == 207
        assert bad.request("PROPFIND", "/", headers={"Depth": "0"}).status_code == 401
        assert bad.request("PROPFIND", "/", headers={"Depth": "0"}).status_code == 401
        r = bad.request("PROPFIND", "/", headers={"Depth": "0"})
        assert r.status_code == 429 and "too many failed logins" in r.text
        # A cached good login does not get round the ban either.
        assert good.request("PROPFIND", "/", headers={"Depth": "0"}).status_code == 429


def test_sessions_follow_the_gateway_session_header_or_cookie():
    from protocols.webdav.auth import session_id

    assert session_id("alice", {}) == "http:alice"
    assert session_id("alice", {"HTTP_GATEWAY_SESSION": "tab-1"}) == "http:alice:tab-1"
    assert session_id("alice", {"HTTP_COOKIE": "a=b; Gateway-Session=c7"}) == "http:alice:c7"
    assert session_id("alice", {"HTTP_GATEWAY_SESSION": "x" * 500}) == "http:alice:" + "x" * 64


def test_clients_can_set_modification_times(dav):
    win32 = (b'<?xml version="1.0" encoding="utf-8"?><D:propertyupdate xmlns:D="DAV:" '
             b'xmlns:Z="urn:schemas-microsoft-com:"><D:set><D:prop>'
             b'<Z:Win32LastModifiedTime>Wed, 01 Jan 2020 00:00:00 GMT</Z:Win32LastModifiedTime>'
             b'<Z:Win32FileAttributes>00000020</Z:Win32FileAttributes>'
             b'</D:prop></D:set></D:propertyupdate>')
    with client(dav) as c:
        r = c.put("/oc.txt", content=b"o", headers={"X-OC-Mtime": "1500000000"})
        assert r.status_code == 201 and r.headers["X-OC-Mtime"] == "accepted"
        assert (dav.data / "oc.txt").stat().st_mtime == 1500000000
        assert r.headers["ETag"] == c.head("/oc.txt").headers["ETag"]
        assert c.put("/oc.txt", content=b"o", headers={"X-OC-Mtime": "yesterday"}).status_code == 400
        c.put("/win.txt", content=b"w")
        r = c.request("PROPPATCH", "/win.txt", content=win32,
                      headers={"User-Agent": "Microsoft-WebDAV-MiniRedir/10.0.19045"})
        assert r.status_code == 207 and "200 OK" in r.text and "403" not in r.text, r.text
        assert (dav.data / "win.txt").stat().st_mtime == 1577836800
        assert c.head("/win.txt").headers["Last-Modified"] == "Wed, 01 Jan 2020 00:00:00 GMT"


def test_tls_and_users_that_require_it(gateway_factory):
    r = gateway_factory(protocols=("http",), sections={"http": {"tls": True}},
                        users={"erin": {"password_hash": hash_password("erin-pw"), "require_tls": True}})
    base = f"https://127.0.0.1:{r.port('http')}/dav"
    with httpx.Client(base_url=base, auth=("erin", "erin-pw"), verify=False, timeout=30) as c:
        assert c.put("/t.txt", content=b"tls").status_code == 201
        r2 = c.request("MOVE", "/t.txt", headers={"Destination": f"{base}/u.txt"})
        assert r2.status_code == 201, r2.text
        assert c.get("/u.txt").content == b"tls"

    plain = gateway_factory(protocols=("http",),
                            users={"erin": {"password_hash": hash_password("erin-pw"), "require_tls": True}})
    with client(plain, "erin", password="erin-pw") as c:
        r3 = c.request("PROPFIND", "/", headers={"Depth": "0"})
        assert r3.status_code == 403 and "TLS" in r3.text


def test_browsers_get_a_folder_listing(dav):
    with client(dav) as c:
        c.request("MKCOL", "/dav")  # a folder named like the mount point must not confuse redirects
        c.put("/dav/page.txt", content=b"p")
        r = c.get("/dav")
        assert r.status_code == 301 and r.headers["Location"] == "/dav/dav/"
        r = c.get("/dav/")
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
        assert "page.txt" in r.text
        assert c.head("/dav/").status_code == 200


def _propstats(body: bytes) -> dict[str, dict[str, dict[str, str | None]]]:
    """{href: {status: {property: text}}}; quota values (free space moves
    while the test runs) reduced to their presence."""
    out: dict[str, dict[str, dict[str, str | None]]] = {}
    for response in ET.fromstring(body).iter("{DAV:}response"):
        statuses = out.setdefault(response.findtext("{DAV:}href"), {})
        for propstat in response.iter("{DAV:}propstat"):
            props = statuses.setdefault(propstat.findtext("{DAV:}status"), {})
            for prop in propstat.find("{DAV:}prop"):
                value = ET.tostring(prop, encoding="unicode") if len(prop) else (prop.text or None)
                props[prop.tag] = "n" if "quota" in prop.tag and value else value
    return out


def test_a_streamed_listing_logs_no_error(dav, caplog):
    """A listing sent chunked is no error: wsgidav's "Missing required
    Content-Length header in 207-response" is dropped, its other records are
    not. (A listing of up to 256 members is sent whole, with its length, as
    wsgidav sends it.)"""
    for i in range(300):
        (dav.data / f"{i}.txt").write_bytes(b"1")
    with caplog.at_level(logging.INFO):
        with client(dav) as c:
            r = c.request("PROPFIND", "/", headers={"Depth": "1"})
            assert r.status_code == 207 and r.headers["transfer-encoding"] == "chunked"
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR], caplog.text
    wsgidav = logging.getLogger("wsgidav.wsgidav_app")
    with caplog.at_level(logging.INFO):
        wsgidav.error("Missing required Content-Length header in 200-response: closing connection")
        wsgidav.error("Invalid Content-Length header in response ('x'): closing connection")
    assert len([rec for rec in caplog.records if rec.levelno >= logging.ERROR]) == 2, caplog.text


def test_a_large_listing_arrives_whole_and_keeps_the_connection(dav):
    """A listing is sent as it is written (chunked, never held whole), and
    the client's connection stays open for its next request."""
    folder = dav.data / "many"
    folder.mkdir()
    for i in range(2500):
        (folder / f"file-{i:04d}.txt").write_bytes(b"x" * i)
    with client(dav) as c:
        r = c.request("PROPFIND", "/many/", headers={"Depth": "1"})
        assert r.status_code == 207 and len(r.content) > 1 << 20
        assert r.headers["transfer-encoding"] == "chunked" and "connection" not in r.headers
        props = _propstats(r.content)
        assert len(props) == 2501
        assert props["/dav/many/file-2499.txt"]["HTTP/1.1 200 OK"]["{DAV:}getcontentlength"] == "2499"
    auth = "Basic " + base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", dav.port("http"), timeout=30)
    try:
        for _ in range(2):
            conn.request("PROPFIND", "/dav/many/", headers={"Depth": "1", "Authorization": auth})
            reply = conn.getresponse()
            assert reply.status == 207 and len(_propstats(reply.read())) == 2501
            assert not reply.will_close
        first = conn.sock
        conn.request("PROPFIND", "/dav/many/", headers={"Depth": "0", "Authorization": auth})
        assert conn.getresponse().status == 207 and conn.sock is first
    finally:
        conn.close()


@pytest.mark.parametrize("body", [
    b"",
    b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>',
    # davfs2, rclone and Windows ask for a list, some names of other namespaces
    b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:oc="http://owncloud.org/ns"><D:prop>'
    b'<D:displayname/><D:getlastmodified/><D:getcontentlength/><D:resourcetype/><D:getcontenttype/>'
    b'<D:getetag/><D:quota-used-bytes/><D:lockdiscovery/><D:creationdate/><oc:checksums/>'
    b'<oc:permissions/></D:prop></D:propfind>',
], ids=["empty", "allprop", "prop"])
def test_folder_listings_answer_as_wsgidav_would(dav, body):
    """Folder listings are written by the gateway, not wsgidav's property
    machinery; while a lock exists anywhere, wsgidav answers. Both write the
    same bytes (but for the disk's use, which changes)."""
    names = ["plain.txt", "a b & c.pdf", "ünï (1).tar.gz", "NOEXT", "it's~v2.txt"]
    dav.data.joinpath("docs", "sub").mkdir(parents=True)
    for i, name in enumerate(names):
        dav.data.joinpath("docs", name).write_bytes(b"x" * i)
    dav.data.joinpath("elsewhere.txt").write_bytes(b"")

    def answers(c: httpx.Client) -> list:
        seen = []
        for path, depth in (("/docs/", "1"), ("/docs/", "0"), ("/docs/plain.txt", "0")):
            r = c.request("PROPFIND", path, headers={"Depth": depth}, content=body)
            assert r.status_code == 207, r.text
            framed = "content-length" in r.headers or r.headers.get("transfer-encoding") == "chunked"
            assert r.headers.get("connection", "").lower() != "close" and framed
            seen.append((_propstats(r.content), re.sub(rb"(?<=-bytes>)[0-9]+", b"n", r.content)))
        return seen

    with client(dav) as c:
        written = answers(c)
        assert set(written[0][0]) == {"/dav/docs/", "/dav/docs/sub/", "/dav/docs/plain.txt",
                                   "/dav/docs/a%20b%20%26%20c.pdf", "/dav/docs/%C3%BCn%C3%AF%20(1).tar.gz",
                                   "/dav/docs/NOEXT", "/dav/docs/it's~v2.txt"}
        lock = c.request("LOCK", "/elsewhere.txt", content=LOCKINFO, headers={"Timeout": "Second-60"})
        assert lock.status_code == 200, lock.text
        assert answers(c) == written
        assert c.request("UNLOCK", "/elsewhere.txt",
                         headers={"Lock-Token": lock.headers["Lock-Token"]}).status_code == 204
        # A dead property on a member also hands the listing to wsgidav, which shows it.
        assert c.request("PROPPATCH", "/docs/NOEXT", content=PROPPATCH).status_code == 207
        r = c.request("PROPFIND", "/docs/", headers={"Depth": "1"}, content=PROPGET)
        assert _propstats(r.content)["/dav/docs/NOEXT"]["HTTP/1.1 200 OK"] == {"{urn:test}colour": "blue"}
        if not body:
            assert _propstats(c.request("PROPFIND", "/docs/", headers={"Depth": "1"}).content) != written[0][0]
