"""Cross-node invalidation (gateway.bus over LISTEN/NOTIFY): two gateway
nodes in this process on one PostgreSQL database, each with its own caches
and front ends, mounting the same storage.

The remote mount is an FTP server (pyftpdlib) with a listing cache of an
hour, so without the bus node B would list a folder as it first saw it for
an hour; a file put on that server behind the gateway's back shows that
B's cache really serves (and stays, as it should for such changes)."""

from __future__ import annotations

import ftplib
import io
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import ThreadedFTPServer

from conftest import PASSWORDS, start_gateway, wait_until
from pg import database_unreachable, pg_url  # noqa: F401 - pg_url is a fixture

pytestmark = pytest.mark.e2e

CACHE_S = 3600.0
DELIVERY_S = 10.0  # far below CACHE_S: what "after the notification's delivery" may take here at most


@pytest.fixture
def ftp_storage(tmp_path):
    """((url, options), folder): a plain FTP server both nodes mount."""
    root = tmp_path / "ftp-storage"
    root.mkdir()
    auth = DummyAuthorizer()
    auth.add_user("store", "store-pw", str(root), perm="elradfmwMT")
    handler = type("Handler", (FTPHandler,), {"authorizer": auth, "passive_ports": range(61000, 61100)})
    server = ThreadedFTPServer(("127.0.0.1", 0), handler, ioloop=IOLoop())  # not the gateways' loop
    port = server.socket.getsockname()[1]
    t = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.2, "handle_exit": False}, daemon=True)
    t.start()
    yield (f"ftp://127.0.0.1:{port}/", {"username": "store", "password": "store-pw"}), root
    server.close_all()
    t.join(5)


@pytest.fixture
def nodes(tmp_path, pg_url, ftp_storage):
    """Start nodes ``a``, ``b``... on one database and one shared disk,
    with the FTP storage at /r (listings cached for an hour)."""
    (url, options), _ = ftp_storage
    shared = tmp_path / "shared"
    shared.mkdir()
    started = []

    def start(node: str, protocols=("ftp", "http"), **jobs):
        sub = tmp_path / node
        sub.mkdir()
        mounts = {"/": f"file://{shared}", "/r": (url, options, {"cache_ttl_s": CACHE_S})}
        r = start_gateway(sub, tuple(protocols), mounts=mounts, budget_ms=1000,
                          sections={"jobs": {"store": pg_url, **jobs}, "server": {"node_id": node}})
        started.append(r)
        wait_until(lambda: r.gw.bus.trusted, 10, f"node {node}'s bus to listen")
        return r

    yield start
    for r in started:
        r.close()


def ftp_login(node, user="alice") -> ftplib.FTP:
    f = ftplib.FTP()
    f.connect("127.0.0.1", node.port("ftp"), timeout=10)
    f.login(user, PASSWORDS[user])
    return f


def ftp_names(node, folder: str) -> set[str]:
    f = ftp_login(node)
    try:
        return {name for name, _ in f.mlsd(folder)} - {".", ".."}
    finally:
        f.quit()


def dav_names(node, folder: str, user="alice") -> set[str]:
    r = httpx.request("PROPFIND", f"http://127.0.0.1:{node.port('http')}/dav{folder}/",
                      headers={"Depth": "1"}, auth=(user, PASSWORDS[user]), timeout=10)
    assert r.status_code == 207, r.text
    hrefs = [e.text for e in ET.fromstring(r.content).iter("{DAV:}href")]
    return {h.rstrip("/").rsplit("/", 1)[1] for h in hrefs if h.rstrip("/") != f"/dav{folder}"}


def dav(node, method: str, path: str, user="alice", **kw) -> httpx.Response:
    return httpx.request(method, f"http://127.0.0.1:{node.port('http')}/dav{path}",
                         auth=(user, PASSWORDS[user]), timeout=10, **kw)


def test_an_upload_through_a_is_listed_by_b_over_ftp_and_webdav(nodes, ftp_storage):
    _, storage = ftp_storage
    a, b = nodes("a"), nodes("b")
    (storage / "first.txt").write_bytes(b"1")
    assert ftp_names(b, "/r") == {"first.txt"} == dav_names(b, "/r")  # B has cached /r now

    (storage / "behind-the-back.txt").write_bytes(b"x")  # not through the gateway: B's cache keeps /r
    assert ftp_names(b, "/r") == {"first.txt"} == dav_names(b, "/r")

    f = ftp_login(a)
    f.storbinary("STOR /r/new.txt", io.BytesIO(b"hello"))
    f.quit()
    want = {"first.txt", "behind-the-back.txt", "new.txt"}  # B listed /r afresh
    wait_until(lambda: ftp_names(b, "/r") == want, DELIVERY_S, "B's FTP to list the upload")
    assert dav_names(b, "/r") == want

    # A rename and a delete through A's WebDAV reach B as well.
    assert dav(a, "MOVE", "/r/new.txt",
               headers={"Destination": f"http://127.0.0.1:{a.port('http')}/dav/r/renamed.txt"}).status_code == 201
    assert dav(a, "DELETE", "/r/first.txt").status_code == 204
    want = {"behind-the-back.txt", "renamed.txt"}
    wait_until(lambda: dav_names(b, "/r") == want, DELIVERY_S, "B's WebDAV to list the rename and the delete")
    assert ftp_names(b, "/r") == want


def test_a_webdav_lock_and_a_property_set_on_a_hold_on_b(nodes):
    a, b = nodes("a"), nodes("b")
    assert dav(a, "PUT", "/doc.txt", content=b"v1").status_code == 201
    lock = dav(a, "LOCK", "/doc.txt", headers={"Timeout": "Second-600"}, content=(
        b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
        b'<D:locktype><D:write/></D:locktype><D:owner>a</D:owner></D:lockinfo>'))
    assert lock.status_code == 200, lock.text
    token = lock.headers["Lock-Token"]
    assert dav(b, "PUT", "/doc.txt", content=b"v2").status_code == 423
    assert dav(b, "PUT", "/doc.txt", content=b"v2", headers={"If": f"({token})"}).status_code == 204
    assert dav(a, "UNLOCK", "/doc.txt", headers={"Lock-Token": token}).status_code == 204
    assert dav(b, "PUT", "/doc.txt", content=b"v3").status_code == 204

    patch = (b'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z"><D:set><D:prop>'
             b'<Z:colour>blue</Z:colour></D:prop></D:set></D:propertyupdate>')
    assert dav(a, "PROPPATCH", "/doc.txt", content=patch).status_code == 207
    found = dav(b, "PROPFIND", "/doc.txt", headers={"Depth": "0"}, content=(
        b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:Z="urn:z"><D:prop><Z:colour/></D:prop>'
        b'</D:propfind>'))
    assert found.status_code == 207 and b"blue" in found.content


def test_a_user_changed_on_a_logs_in_with_the_new_password_on_b(tmp_path, pg_url):
    """Users live in the store (gateway.userstore): a password changed on
    A is the only one B accepts, remembered logins included."""
    from gateway.auth import hash_password

    shared = tmp_path / "var"
    started = []
    try:
        for node in ("a", "b"):
            sub = tmp_path / node
            sub.mkdir()
            started.append(start_gateway(sub, ("http",), sections={
                "jobs": {"store": pg_url}, "server": {"node_id": node, "state_dir": str(shared)}}))
        a, b = started
        wait_until(lambda: a.gw.bus.trusted and b.gw.bus.trusted, 10, "both buses to listen")
        from gateway.config import UserConfig

        a.gw.auth.add_user(UserConfig(name="carol", password_hash=hash_password("old-password-1")))

        def rest(node, password):
            return httpx.get(f"http://127.0.0.1:{node.port('http')}/api/v1/jobs", auth=("carol", password),
                             timeout=10).status_code

        wait_until(lambda: rest(b, "old-password-1") == 200, DELIVERY_S, "B to know carol")
        new_hash = hash_password("new-password-2")
        a.gw.auth.update_user("carol", lambda u: setattr(u, "password_hash", new_hash))
        wait_until(lambda: rest(b, "new-password-2") == 200, DELIVERY_S, "B to take carol's new password")
        assert rest(b, "old-password-1") == 401
    finally:
        for r in started:
            r.close()


def test_while_the_bus_is_down_b_serves_nothing_from_its_caches(nodes, pg_url, ftp_storage):
    """Node B's connection to PostgreSQL breaks (its listener is cut and
    the database refuses new connections): B can no longer learn of other
    nodes' changes, so its listing cache has a time to live of 0 until the
    listener is back; then it caches again."""
    _, storage = ftp_storage
    b = nodes("b", protocols=())
    s = b.session()
    names = lambda: {e.name for e in b.ops.list(s, "/r")}  # noqa: E731
    assert names() == set()
    (storage / "one.txt").write_bytes(b"1")
    assert names() == set()  # cached
    with database_unreachable(pg_url):
        wait_until(lambda: not b.gw.bus.trusted, DELIVERY_S, "B to notice the lost connection")
        ready, checks = b.gw.readiness.report()  # what /readyz answers: B is not ready meanwhile
        assert not ready and "caches distrusted" in checks["listener"], checks
        assert names() == {"one.txt"}  # TTL 0: the storage is asked
        (storage / "two.txt").write_bytes(b"2")
        assert names() == {"one.txt", "two.txt"}
    wait_until(lambda: b.gw.bus.trusted, 30, "B's listener to reconnect")
    assert b.gw.readiness.report()[1]["listener"] == "ok"
    assert names() == {"one.txt", "two.txt"}
    (storage / "three.txt").write_bytes(b"3")
    assert names() == {"one.txt", "two.txt"}  # cached again


def test_the_embedded_store_has_a_bus_that_is_always_trusted(tmp_path):
    """SQLite mode: one node, nothing to tell, psycopg never loaded."""
    import subprocess
    import sys

    script = (
        "import sys; from gateway.app import Gateway\n"
        f"g = Gateway.build({{'/': 'memory://bus-{tmp_path.name}'}}, {str(tmp_path / 'var')!r}).start()\n"
        "assert g.bus.trusted and type(g.bus).__name__ == 'LocalBus'\n"
        "g.close()\n"
        "assert 'psycopg' not in sys.modules, 'psycopg imported in SQLite mode'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).resolve().parents[2], timeout=60)
