"""The ownCloud/Nextcloud sync API over the gateway's WebDAV app: status and
OCS answers, the clients' properties on both WebDAV URLs, upload reply
headers, stable ids and folder ETags, and the chunked-upload collection."""

from __future__ import annotations

import base64
import ftplib
import hashlib
import socket
import xml.etree.ElementTree as ET
from urllib.parse import unquote

import httpx
import pytest

from conftest import PASSWORDS, wait_until
from gateway.auth import hash_password

OC = "{http://owncloud.org/ns}"
PROPS = (b'<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns" '
         b'xmlns:nc="http://nextcloud.org/ns"><d:prop><d:resourcetype/><d:getlastmodified/>'
         b'<d:getcontentlength/><d:getetag/><oc:size/><oc:id/><oc:fileid/><oc:downloadURL/><oc:dDC/>'
         b'<oc:permissions/><oc:checksums/><oc:share-types/><oc:data-fingerprint/><nc:is-encrypted/>'
         b'</d:prop></d:propfind>')
LOCKINFO = (b'<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
            b'</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>t</D:owner></D:lockinfo>')
FILES = "/remote.php/dav/files/alice"


@pytest.fixture
def gw(gateway_factory):
    return gateway_factory(protocols=("http", "ftp"), users={
        "carol": {"password_hash": hash_password("carol-pw"), "permissions": ["list", "download"]}})


def _client(gw, user: str = "alice", password: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{gw.port('http')}", auth=(user, password or PASSWORDS[user]),
                        timeout=60)


def _props(c: httpx.Client, path: str, depth: str = "1") -> dict[str, dict[str, str | None]]:
    """{unquoted href: {property: text}} of the properties found (200)."""
    r = c.request("PROPFIND", path, headers={"Depth": depth}, content=PROPS)
    assert r.status_code == 207, r.text
    out = {}
    for resp in ET.fromstring(r.content).iter("{DAV:}response"):
        found = {}
        for ps in resp.iter("{DAV:}propstat"):
            if "200" in ps.findtext("{DAV:}status"):
                for p in ps.find("{DAV:}prop"):
                    found[p.tag] = p.text
        out[unquote(resp.findtext("{DAV:}href"))] = found
    return out


def test_status_capabilities_and_user(gw):
    with _client(gw) as c:
        status = c.get("/status.php").json()
        assert status["installed"] is True and status["maintenance"] is False and status["version"]
        for v, code in (("v1", 100), ("v2", 200)):
            caps = c.get(f"/ocs/{v}.php/cloud/capabilities?format=json", headers={"OCS-APIREQUEST": "true"})
            assert caps.status_code == 200 and caps.json()["ocs"]["meta"]["statuscode"] == code
            assert caps.json()["ocs"]["data"]["capabilities"]["dav"]["chunking"] == "1.0"
            user = c.get(f"/ocs/{v}.php/cloud/user?format=json").json()["ocs"]["data"]
            assert user["id"] == "alice"
        assert c.get("/ocs/v1.php/cloud/nothing").status_code == 404
        assert c.get("/remote.php/nothing").status_code == 404
    with _client(gw, password="wrong") as c:
        assert c.get("/ocs/v1.php/cloud/user?format=json").status_code == 401
        assert c.request("PROPFIND", FILES + "/").status_code == 401


@pytest.mark.parametrize("base", [FILES, "/remote.php/webdav"])
def test_every_entry_has_the_clients_properties_on_both_urls(gw, base):
    with _client(gw) as c:
        assert c.request("MKCOL", base + "/d").status_code == 201
        assert c.put(base + "/d/f.txt", content=b"abc").status_code == 201
        fast = _props(c, base + "/d")
        # While a lock exists, wsgidav answers: the same properties.
        lock = c.request("LOCK", base + "/other.txt", content=LOCKINFO, headers={"Timeout": "Second-60"})
        assert lock.status_code in (200, 201), lock.text
        slow = _props(c, base + "/d")
        assert c.request("UNLOCK", base + "/other.txt",
                         headers={"Lock-Token": lock.headers["Lock-Token"]}).status_code == 204
    folder, file = fast[base + "/d/"], fast[base + "/d/f.txt"]
    for entry in (folder, file):
        assert entry["{DAV:}getetag"] and entry[OC + "id"].endswith("ocgateway")
        assert entry[OC + "fileid"] == str(int(entry[OC + "id"][:8]))
    assert folder[OC + "permissions"] == "DNVCK" and file[OC + "permissions"] == "DNVW"
    with _client(gw) as c:
        root = _props(c, base + "/", "1")
    assert root[base + "/"][OC + "permissions"] == "CK"
    assert root[base + "/slow/"][OC + "permissions"] == "CK"  # a mount point stays where it is
    # A plain PUT sent no checksum: the core computed the file's as it streamed.
    assert file[OC + "size"] == "3" and OC + "checksums" in file
    for href in fast:
        assert {k: v for k, v in slow[href].items() if "lock" not in k} == \
               {k: v for k, v in fast[href].items() if "lock" not in k}, href


def test_permissions_follow_the_users_rights(gw):
    gw.data.joinpath("r.txt").write_bytes(b"r")
    with _client(gw, "carol", "carol-pw") as c:
        props = _props(c, "/remote.php/dav/files/carol/")
    assert props["/remote.php/dav/files/carol/r.txt"][OC + "permissions"] == "G"
    with _client(gw) as c:
        r = c.request("PROPFIND", "/remote.php/dav/files/carol/", content=PROPS, headers={"Depth": "0"})
        assert r.status_code == 403  # another user's URL


def test_upload_replies_carry_the_final_etag_and_the_file_id(gw):
    with _client(gw) as c:
        r = c.put(FILES + "/t.txt", content=b"hello", headers={"X-OC-Mtime": "1500000000"})
        assert r.status_code == 201 and r.headers["X-OC-MTime"] == "accepted"
        props = _props(c, FILES + "/t.txt", "0")[FILES + "/t.txt"]
        assert r.headers["ETag"] == r.headers["OC-ETag"] == f'"{props["{DAV:}getetag"]}"'
        assert r.headers["OC-FileId"] == props[OC + "id"]
        assert c.get(FILES + "/t.txt", headers={"If-Match": r.headers["ETag"]}).status_code == 200
        # The same through wsgidav's PUT (a lock exists elsewhere).
        lock = c.request("LOCK", FILES + "/other.txt", content=LOCKINFO, headers={"Timeout": "Second-60"})
        r = c.put(FILES + "/t.txt", content=b"again", headers={"X-OC-Mtime": "1600000000"})
        assert r.status_code == 204 and r.headers["X-OC-MTime"] == "accepted"
        props = _props(c, FILES + "/t.txt", "0")[FILES + "/t.txt"]
        assert r.headers["ETag"] == f'"{props["{DAV:}getetag"]}"' and r.headers["OC-FileId"] == props[OC + "id"]
        c.request("UNLOCK", FILES + "/other.txt", headers={"Lock-Token": lock.headers["Lock-Token"]})
    assert gw.data.joinpath("t.txt").stat().st_mtime == 1600000000


def test_ids_survive_moves_and_folder_etags_change_below(gw):
    with _client(gw) as c:
        c.request("MKCOL", FILES + "/a")
        c.request("MKCOL", FILES + "/a/b")
        c.put(FILES + "/a/b/f.txt", content=b"1")
        before = _props(c, FILES + "/", "1")
        inner = _props(c, FILES + "/a/b/f.txt", "0")[FILES + "/a/b/f.txt"]
        # Unchanged: the same ETags.
        assert _props(c, FILES + "/", "1") == before
        # A rename through WebDAV keeps the id.
        r = c.request("MOVE", FILES + "/a/b/f.txt",
                      headers={"Destination": f"http://127.0.0.1:{gw.port('http')}{FILES}/a/b/g.txt"})
        assert r.status_code == 201
        moved = _props(c, FILES + "/a/b/g.txt", "0")[FILES + "/a/b/g.txt"]
        assert moved[OC + "id"] == inner[OC + "id"]
        after = _props(c, FILES + "/", "1")
        assert after[FILES + "/a/"]["{DAV:}getetag"] != before[FILES + "/a/"]["{DAV:}getetag"]
        assert after[FILES + "/"]["{DAV:}getetag"] != before[FILES + "/"]["{DAV:}getetag"]
        # A rename through FTP too.
        ftp = ftplib.FTP()
        ftp.connect("127.0.0.1", gw.port("ftp"), timeout=30)
        ftp.login("alice", PASSWORDS["alice"])
        ftp.rename("/a", "/z")
        ftp.quit()
        renamed = _props(c, FILES + "/z/b/g.txt", "0")[FILES + "/z/b/g.txt"]
        assert renamed[OC + "id"] == inner[OC + "id"]
        assert _props(c, FILES + "/", "1")[FILES + "/z/"][OC + "id"] == before[FILES + "/a/"][OC + "id"]


def test_old_style_chunks_are_refused_not_stored(gw):
    with _client(gw) as c:
        r = c.put(FILES + "/big.bin-chunking-42-2-0", content=b"x" * 10, headers={"OC-Chunked": "1"})
        assert r.status_code == 400 and "OC-Chunked" in r.text
    assert list(gw.data.iterdir()) == []


def test_chunked_upload_appears_whole_through_the_core(gw):
    up = "/remote.php/dav/uploads/alice"
    dest = f"http://127.0.0.1:{gw.port('http')}{FILES}/big.bin"
    chunks = [bytes([i]) * 1000 for i in range(3)]
    with _client(gw) as c:
        assert c.request("MKCOL", up + "/t1").status_code == 201
        assert c.request("MKCOL", up + "/t1").status_code == 405
        # A chunk whose connection drops midway is not kept: the client
        # lists the chunks it finds and sends that one again.
        auth = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
        kept = gw.tmp / "var" / "uploads" / "alice" / "t1"
        with socket.create_connection(("127.0.0.1", gw.port("http"))) as raw:
            raw.sendall(f"PUT {up}/t1/{1:016d} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n"
                        f"Content-Length: 1000\r\n\r\n".encode() + chunks[1][:400])
            wait_until(lambda: list(kept.iterdir()), what="the chunk being received")
        wait_until(lambda: not list(kept.iterdir()), what="the dropped chunk's part removed")
        listed = c.request("PROPFIND", up + "/t1", headers={"Depth": "1"})
        assert listed.status_code == 207 and "getcontentlength" not in listed.text, listed.text
        for i in (2, 0, 1):  # any order; assembled by name
            assert c.put(f"{up}/t1/{i:016d}", content=chunks[i]).status_code == 201
        listed = c.request("PROPFIND", up + "/t1", headers={"Depth": "1"})
        assert listed.status_code == 207 and listed.text.count("<D:getcontentlength>1000<") == 3
        assert list(gw.data.iterdir()) == []  # nothing shows before the MOVE
        bad = c.request("MOVE", up + "/t1/.file", headers={"Destination": dest, "OC-Total-Length": "5"})
        assert bad.status_code == 400 and not gw.data.joinpath("big.bin").exists()
        r = c.request("MOVE", up + "/t1/.file", headers={"Destination": dest, "OC-Total-Length": "3000",
                                                         "X-OC-Mtime": "1500000000"})
        assert r.status_code == 201, r.text
        assert r.headers["X-OC-MTime"] == "accepted" and r.headers["OC-FileId"]
        props = _props(c, FILES + "/big.bin", "0")[FILES + "/big.bin"]
        assert r.headers["ETag"] == f'"{props["{DAV:}getetag"]}"'
        assert c.request("PROPFIND", up + "/t1", headers={"Depth": "1"}).status_code == 404
        # An abandoned transfer is dropped.
        c.request("MKCOL", up + "/t2")
        c.put(f"{up}/t2/1", content=b"x")
        assert c.request("DELETE", up + "/t2").status_code == 204
        assert c.request("PUT", f"{up}/t2/2", content=b"x").status_code == 404
        # Someone else's upload collection is not reachable.
        assert c.request("MKCOL", "/remote.php/dav/uploads/bob/t3").status_code == 403
        assert c.request("MKCOL", up + "/..").status_code in (400, 403, 404, 405)
    assert gw.data.joinpath("big.bin").read_bytes() == b"".join(chunks)
    assert gw.data.joinpath("big.bin").stat().st_mtime == 1500000000


def test_abandoned_transfers_are_swept(tmp_path):
    import time

    from gateway.chunked import ChunkedUploads
    from gateway.types import Session
    from gateway.users import User

    uploads = ChunkedUploads(tmp_path, max_age_s=60)
    s = Session(User("alice"), "test")
    uploads.create(s, "old")
    uploads.create(s, "new")
    assert uploads.sweep(now=time.time() + 30) == 0
    assert uploads.sweep(now=time.time() + 120) == 2


@pytest.mark.parametrize("chunked", [False, True])
def test_upload_checksums_are_verified_kept_and_listed(gw, chunked):
    data = b"some content" * 100
    sha1 = hashlib.sha1(data).hexdigest()
    up = "/remote.php/dav/uploads/alice/t"

    def upload(c: httpx.Client, name: str, checksum: str) -> httpx.Response:
        headers = {"OC-Checksum": checksum}
        if not chunked:
            return c.put(f"{FILES}/{name}", content=data, headers=headers)
        c.request("MKCOL", up)
        c.put(up + "/1", content=data[:500])
        c.put(up + "/2", content=data[500:])
        dest = f"http://127.0.0.1:{gw.port('http')}{FILES}/{name}"
        r = c.request("MOVE", up + "/.file", headers={**headers, "Destination": dest, "OC-Total-Length": "1200"})
        if r.status_code >= 400:  # the chunks stay for another try, until abandoned
            assert c.request("PROPFIND", up, headers={"Depth": "1"}).text.count("<D:getcontentlength>") == 2
            assert c.request("DELETE", up).status_code == 204
        return r

    with _client(gw) as c:
        caps = c.get("/ocs/v1.php/cloud/capabilities?format=json").json()["ocs"]["data"]["capabilities"]
        assert "SHA1" in caps["checksums"]["supportedTypes"]
        bad = upload(c, "bad.txt", "SHA1:" + "0" * 40)
        assert bad.status_code == 400 and "checksum mismatch" in bad.text
        assert not gw.data.joinpath("bad.txt").exists()
        assert upload(c, "good.txt", f"SHA1:{sha1}").status_code == 201
        assert upload(c, "other.txt", "ADLER32:0a0b0c0d").status_code == 201  # not one it checks: ignored
        props = _props(c, FILES + "/", "1")
        lock = c.request("LOCK", FILES + "/x.txt", content=LOCKINFO, headers={"Timeout": "Second-60"})
        slow = _props(c, FILES + "/", "1")
        c.request("UNLOCK", FILES + "/x.txt", headers={"Lock-Token": lock.headers["Lock-Token"]})
    assert props[FILES + "/good.txt"][OC + "checksums"] is None  # the text is in the child element
    for listing in (props, slow):
        assert OC + "checksums" in listing[FILES + "/good.txt"]
        assert OC + "checksums" in listing[FILES + "/other.txt"]  # computed as it streamed
    with _client(gw) as c:
        r = c.request("PROPFIND", FILES + "/good.txt", headers={"Depth": "0"}, content=PROPS)
        md5 = hashlib.md5(data).hexdigest()
        assert f"<checksum xmlns=\"http://owncloud.org/ns\">SHA1:{sha1} MD5:{md5}</checksum>" in r.text
        assert c.get(FILES + "/good.txt").headers["OC-Checksum"] == f"SHA1:{sha1}"
        assert c.get(FILES + "/other.txt").headers["OC-Checksum"] == f"SHA1:{sha1}"
