"""The same scenarios through FTP, SFTP and WebDAV clients against one
running gateway, so the three front ends cannot drift apart."""

from __future__ import annotations

import time
import uuid

import pytest

from conftest import PASSWORDS, start_gateway, unique_memory, wait_until
from conformance.drivers import ProtoError, driver_pool

PROTOCOLS = ["ftp", "sftp", "webdav"]
BUDGET_S = 0.3
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("conformance")
    r = start_gateway(tmp, ("ftp", "sftp", "http"), budget_ms=int(BUDGET_S * 1000),
                      users={"bob": {"permissions": ["list", "download"]}},
                      mounts={"/": f"file://{tmp / 'data'}", "/disk2": f"file://{tmp / 'disk2'}",
                              "/slow": (f"slow::memory://{unique_memory()}", {"slow": {"latency_ms": 5}})})
    yield r
    r.close()


@pytest.fixture(params=PROTOCOLS)
def proto(request):
    return request.param


@pytest.fixture
def connect(gw, proto):
    with driver_pool(gw, PASSWORDS.__getitem__) as open_:
        yield lambda user="alice": open_(proto, user)


@pytest.fixture
def base(gw, proto):
    """A fresh folder for this scenario on the local mount."""
    path = f"/{proto}-{uuid.uuid4().hex[:6]}"
    gw.ops.mkdir(gw.session("alice"), path)
    return path


def test_upload_list_download_byte_for_byte(connect, base):
    c = connect()
    payloads = {"small.txt": b"hello\n", "empty": b"", "big.bin": bytes(range(256)) * 4096, "héllo wörld.txt": b"u"}
    for name, data in payloads.items():
        c.put(f"{base}/{name}", data)
    assert c.ls(base) == sorted(payloads)
    for name, data in payloads.items():
        assert c.get(f"{base}/{name}") == data


def test_moves_between_two_local_disks(connect, base):
    """A file and a folder moved from one local-disk mount to another (each
    checks its own paths) arrive byte for byte and leave the source."""
    c = connect()
    c.put(f"{base}/f.txt", b"one")
    c.mkdir(f"{base}/d")
    c.put(f"{base}/d/g.txt", b"two")
    dst = f"/disk2{base}"
    c.mkdir(dst)
    c.rename(f"{base}/f.txt", f"{dst}/f.txt")
    c.rename(f"{base}/d", f"{dst}/d")
    assert c.ls(base) == [] and c.ls(dst) == ["d", "f.txt"]
    assert c.get(f"{dst}/f.txt") == b"one" and c.get(f"{dst}/d/g.txt") == b"two"


def test_folders_rename_delete(connect, base):
    c = connect()
    c.mkdir(f"{base}/d")
    c.put(f"{base}/d/f", b"1")
    c.rename(f"{base}/d/f", f"{base}/d/g")
    assert c.ls(f"{base}/d") == ["g"]
    c.rename(f"{base}/d", f"{base}/e")
    assert c.ls(base) == ["e"]
    c.delete(f"{base}/e/g")
    assert c.ls(f"{base}/e") == []
    c.mkdir(f"{base}/t")
    c.mkdir(f"{base}/t/u")
    c.put(f"{base}/t/u/x", b"x")
    c.rmtree(f"{base}/t")
    assert c.ls(base) == ["e"]


@pytest.mark.parametrize("action,kind", [
    (lambda c, b: c.get(f"{b}/missing"), "not_found"),
    (lambda c, b: c.ls(f"{b}/missing"), "not_found"),
    (lambda c, b: c.delete(f"{b}/missing"), "not_found"),
    (lambda c, b: c.mkdir(f"{b}/no/such/parent"), {"not_found", "conflict"}),
    (lambda c, b: c.mkdir(f"{b}/exists"), "exists"),
    (lambda c, b: c.rename(f"{b}/exists", f"{b}/other"), "exists"),
    (lambda c, b: c.put(f"{b}/.gw-reserved", b"x"), {"bad", "denied"}),
])
def test_errors_say_what_failed(connect, base, action, kind):
    c = connect()
    c.mkdir(f"{base}/exists")
    c.mkdir(f"{base}/other")
    with pytest.raises(ProtoError) as ei:
        action(c, base)
    assert ei.value.kind in ({kind} if isinstance(kind, str) else kind), ei.value


def test_read_only_user_is_denied(connect, base):
    c = connect("bob")
    assert c.ls(base) == []
    for action in (lambda: c.put(f"{base}/x", b"x"), lambda: c.mkdir(f"{base}/d")):
        with pytest.raises(ProtoError) as ei:
            action()
        assert ei.value.kind == "denied", ei.value


def _wait_done(gw, timeout=60):
    wait_until(lambda: not (gw.gw.store.list(state="queued") or gw.gw.store.list(state="running")), timeout,
               "every job to end")


def test_backgrounded_rename_consistency_and_busy(gw, connect, proto):
    ops, s = gw.ops, gw.session("alice")
    root = f"/slow/{proto}-{uuid.uuid4().hex[:6]}"
    ops.mkdir(s, root)
    ops.mkdir(s, f"{root}/src")
    for i in range(100):
        ops.open_write(s, f"{root}/src/f{i:03}").commit()
    me, other = connect(), connect()
    t = time.monotonic()
    reply = me.rename(f"{root}/src", f"{root}/dst")
    elapsed = time.monotonic() - t
    assert elapsed < BUDGET_S + 1.0, elapsed
    jobs = [j for j in gw.gw.store.list(owner="alice") if j.src == f"{root}/src"]
    assert jobs and not jobs[0].terminal, "the rename should still be running in the background"
    if proto == "ftp":
        assert jobs[0].id in reply
    assert me.ls(root) == ["dst"]
    assert len(me.ls(f"{root}/dst")) == 100
    assert other.ls(root) == ["src"]
    assert len(other.ls(f"{root}/src")) == 100
    with pytest.raises(ProtoError) as ei:
        other.put(f"{root}/src/new", b"x")
    assert ei.value.kind == "busy", ei.value
    _wait_done(gw)
    assert other.ls(root) == ["dst"] and len(other.ls(f"{root}/dst")) == 100
