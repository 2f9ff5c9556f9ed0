"""A WebDAV lock binds every protocol: while one is held, FTP, SFTP, REST
and WebDAV requests without its token cannot write, rename, delete, move
into or out of, or set the time of what it covers, each refused with the
"locked" error in its own terms and the tree left as it was; reads go on.
Its owner sending the token may; after UNLOCK everyone may again."""

from __future__ import annotations

import httpx
import pytest

from conformance.drivers import FtpDriver, ProtoError, RestDriver, SftpDriver
from conftest import PASSWORDS

LOCKED = "locked by WebDAV lock of alice"
LOCKINFO = ('<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:{scope}/>'
            '</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>editor</D:owner></D:lockinfo>')


@pytest.fixture
def gw(gateway_factory):
    return gateway_factory(protocols=("ftp", "sftp", "http"))


@pytest.fixture
def dav(gw):
    with httpx.Client(base_url=f"http://127.0.0.1:{gw.port('http')}/dav", auth=("alice", PASSWORDS["alice"]),
                      timeout=30, headers={"Gateway-Session": "editor"}) as c:
        yield c


def lock(dav: httpx.Client, path: str, *, depth: str = "0", scope: str = "exclusive") -> str:
    r = dav.request("LOCK", path, content=LOCKINFO.format(scope=scope).encode(),
                    headers={"Depth": depth, "Timeout": "Second-600"})
    assert r.status_code == 200, r.text
    return r.headers["Lock-Token"]


def snapshot(gw) -> dict[str, bytes]:
    return {str(p.relative_to(gw.data)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(gw.data.rglob("*"))}


def drivers(gw) -> list:
    """alice herself over the other protocols: the lock's owner without its
    token is refused as anyone else is."""
    return [cls(gw.port(proto), "alice", PASSWORDS["alice"])
            for cls, proto in ((FtpDriver, "ftp"), (SftpDriver, "sftp"), (RestDriver, "http"))]


def set_time(driver, path: str) -> None:
    """MFMT (FTP), SETSTAT (SFTP); REST has no time call."""
    if isinstance(driver, FtpDriver):
        driver._call(driver.ftp.sendcmd, f"MFMT 20200101000000 {path}")
    elif isinstance(driver, SftpDriver):
        driver._run(driver.sftp.utime(path, (1577836800, 1577836800)))


def refused(driver, action, *args) -> str:
    """Run ``action``; the protocol's locked error text (asserted to be one)."""
    with pytest.raises(ProtoError) as caught:
        action(*args)
    detail = caught.value.detail
    assert LOCKED in detail and " until " in detail, (driver.name, action.__name__, detail)
    if isinstance(driver, FtpDriver):
        assert detail.startswith("450"), detail
    elif isinstance(driver, RestDriver):
        assert detail.startswith("423"), detail
    return detail


def test_a_webdav_lock_refuses_other_protocols_until_unlocked(gw, dav):
    assert dav.put("/doc.txt", content=b"original").status_code == 201
    assert dav.request("MKCOL", "/tree").status_code == 201
    assert dav.put("/tree/a.txt", content=b"a").status_code == 201
    assert dav.put("/free.txt", content=b"free").status_code == 201
    assert dav.put("/shared.txt", content=b"shared").status_code == 201
    assert dav.request("MKCOL", "/box").status_code == 201
    assert dav.put("/box/c.txt", content=b"c").status_code == 201
    doc = lock(dav, "/doc.txt")
    member = lock(dav, "/box/c.txt")  # a file's lock bars moving or deleting its folder
    tree = lock(dav, "/tree/", depth="infinity")
    shared = lock(dav, "/shared.txt", scope="shared")
    before = snapshot(gw)

    clients = drivers(gw)
    try:
        for d in clients:
            refused(d, d.put, "/doc.txt", b"overwritten")
            refused(d, d.put, "/shared.txt", b"overwritten")
            refused(d, d.rename, "/doc.txt", "/renamed.txt")
            refused(d, d.delete, "/doc.txt")
            refused(d, d.put, "/tree/new.txt", b"new")           # depth infinity: below the folder
            refused(d, d.mkdir, "/tree/sub")
            refused(d, d.rename, "/free.txt", "/tree/free.txt")  # a move into it
            refused(d, d.rename, "/tree/a.txt", "/a.txt")        # a move out of it
            refused(d, d.rename, "/tree", "/tree2")
            refused(d, d.delete, "/tree/a.txt")
            refused(d, d.rmtree, "/tree")
            refused(d, d.rename, "/box", "/box2")
            refused(d, d.rmtree, "/box")
            if not isinstance(d, RestDriver):
                refused(d, set_time, d, "/doc.txt")
            assert d.get("/doc.txt") == b"original"  # a lock bars changes, not reads
            assert d.ls("/tree") == ["a.txt"]
        # WebDAV without the token: the same answer (wsgidav's and the core's checks agree)
        assert dav.put("/doc.txt", content=b"no token").status_code == 423
        assert dav.put("/tree/b.txt", content=b"no token").status_code == 423
        assert snapshot(gw) == before

        # The owner with the token may.
        r = dav.put("/doc.txt", content=b"edited", headers={"If": f"({doc})"})
        assert r.status_code == 204, r.text
        r = dav.put("/tree/b.txt", content=b"b", headers={"If": f"({tree})"})
        assert r.status_code == 201, r.text
        assert gw.data.joinpath("doc.txt").read_bytes() == b"edited"

        for token, path in ((doc, "/doc.txt"), (tree, "/tree/"), (shared, "/shared.txt"),
                            (member, "/box/c.txt")):
            assert dav.request("UNLOCK", path, headers={"Lock-Token": token}).status_code == 204
        for i, d in enumerate(clients):
            d.put("/doc.txt", f"by {d.name}".encode())
            d.put(f"/tree/{d.name}.txt", b"x")
            d.rename(f"/tree/{d.name}.txt", f"/{d.name}.txt")
            d.delete(f"/{d.name}.txt")
            d.put("/shared.txt", b"unlocked")
            set_time(d, "/doc.txt")
        assert gw.data.joinpath("doc.txt").read_bytes() == b"by rest"
    finally:
        for d in clients:
            d.close()


def test_the_owners_move_takes_the_file_and_leaves_the_lock_behind(gw, dav):
    """RFC 4918 7.5 and 9.9.4: a MOVE by anyone else is refused; the
    owner's (with the token) moves the file, and no lock is left on either
    name."""
    assert dav.put("/m.txt", content=b"m").status_code == 201
    token = lock(dav, "/m.txt")
    r = dav.request("MOVE", "/m.txt", headers={"Destination": "/dav/moved.txt"})
    assert r.status_code == 423
    r = dav.request("MOVE", "/m.txt", headers={"Destination": "/dav/moved.txt", "If": f"({token})"})
    assert r.status_code == 201, r.text
    ftp = FtpDriver(gw.port("ftp"), "alice", PASSWORDS["alice"])
    try:
        ftp.put("/moved.txt", b"free")
        ftp.put("/m.txt", b"new file")
    finally:
        ftp.close()



def test_the_owner_moves_and_deletes_a_folder_holding_files_it_locked(gw, dav):
    """RFC 4918 9.9.2: with the tokens of the locks below it, their owner
    may move or delete a folder (davfs2 renames folders holding files it has
    just written and still holds locked); without them, nobody may."""
    assert dav.request("MKCOL", "/f").status_code == 201
    assert dav.put("/f/new.txt", content=b"n").status_code == 201
    token = lock(dav, "/f/new.txt")
    assert dav.request("MOVE", "/f/", headers={"Destination": "/dav/g/"}).status_code == 423
    r = dav.request("MOVE", "/f/", headers={"Destination": "/dav/g/", "If": f"</dav/f/new.txt> ({token})"})
    assert r.status_code == 201, r.text
    token = lock(dav, "/g/new.txt")
    assert dav.delete("/g/").status_code == 423
    assert dav.delete("/g/", headers={"If": f"</dav/g/new.txt> ({token})"}).status_code == 204
    assert not gw.data.joinpath("g").exists() and gw.ops.davstate.locks("/", include_children=True) == []
