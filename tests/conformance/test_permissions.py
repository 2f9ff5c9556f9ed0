"""The permission matrix: every way found to change what a user may not
change, tried through FTP, SFTP, WebDAV and REST alike. Each attempt must be
refused with the protocol's own "permission denied" and leave the whole
tree byte for byte as it was; what the same users may do still works."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

from conftest import start_gateway
from conformance.drivers import ProtoError, driver_pool
from gateway.auth import hash_password

PROTOCOLS = ["ftp", "sftp", "webdav", "rest"]
EVERYTHING = ["list", "download", "upload", "overwrite", "rename", "delete", "mkdir", "copy"]
#: The read-only subtree of every protocol's scenario root.
KEEP = {f"/m-{p}/proj/keep": ["list", "download"] for p in PROTOCOLS}
USERS = {
    "nodel": {"permissions": [p for p in EVERYTHING if p != "delete"]},
    "noover": {"permissions": [p for p in EVERYTHING if p != "overwrite"]},
    "rosub": {"permissions": ["*"], "path_permissions": KEEP},
    "alice2": {"home": "/homes/alice"},
    "bob2": {"home": "/homes/bob"},
}
pytestmark = pytest.mark.timeout(180)


def _password(name: str) -> str:
    return f"{name}-matrix-pw"


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("permissions")
    for home in ("alice", "bob"):
        (tmp / "data" / "homes" / home).mkdir(parents=True)
    users = {name: {**extra, "password_hash": hash_password(_password(name))} for name, extra in USERS.items()}
    r = start_gateway(tmp, ("ftp", "sftp", "http"), users=users)
    yield r
    r.close()


@pytest.fixture(params=PROTOCOLS)
def proto(request):
    return request.param


@pytest.fixture
def connect(gw, proto):
    with driver_pool(gw, _password) as open_:
        yield lambda user: open_(proto, user)


@pytest.fixture
def root(gw, proto) -> str:
    """``/m-<protocol>``, laid out afresh on disk:
    f.txt, dir/d.txt, proj/a.txt and proj/keep/k.txt (read-only for rosub)."""
    top = gw.data / f"m-{proto}"
    shutil.rmtree(top, ignore_errors=True)
    for rel, data in {"f.txt": b"file", "dir/d.txt": b"d", "proj/a.txt": b"a", "proj/keep/k.txt": b"keep"}.items():
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        (top / rel).write_bytes(data)
    return f"/m-{proto}"


def snapshot(folder: Path) -> dict[str, object]:
    """Every folder, file (with its bytes) and link (with its target) below ``folder``."""
    seen: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(folder))
            if p.is_symlink():
                seen[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                seen[rel] = "dir"
            else:
                seen[rel] = p.read_bytes()
    return seen


#: (scenario, user, protocols that have the operation, attempt(driver, root))
REFUSED: list[tuple[str, str, tuple[str, ...], Callable]] = [
    ("without delete, a move replaces a folder tree by a file", "nodel", ("webdav", "rest"),
     lambda d, r: d.move_over(f"{r}/f.txt", f"{r}/dir")),
    ("without delete, a copy replaces a folder tree by a file", "nodel", ("webdav", "rest"),
     lambda d, r: d.copy_over(f"{r}/f.txt", f"{r}/dir")),
    ("without delete, a folder tree is deleted", "nodel", tuple(PROTOCOLS),
     lambda d, r: d.rmtree(f"{r}/dir")),
    ("without delete, a file is deleted", "nodel", tuple(PROTOCOLS),
     lambda d, r: d.delete(f"{r}/f.txt")),
    ("a read-only subtree is deleted with its parent", "rosub", tuple(PROTOCOLS),
     lambda d, r: d.rmtree(f"{r}/proj")),
    ("a read-only subtree is replaced with its parent by a file", "rosub", ("webdav", "rest"),
     lambda d, r: d.move_over(f"{r}/f.txt", f"{r}/proj")),
    ("a read-only subtree is replaced with its parent by a copy", "rosub", ("webdav", "rest"),
     lambda d, r: d.copy_over(f"{r}/dir", f"{r}/proj")),
    ("a read-only subtree is carried out of its rule by a move of its parent", "rosub", tuple(PROTOCOLS),
     lambda d, r: d.rename(f"{r}/proj", f"{r}/proj2")),
    ("a file is moved into a read-only subtree", "rosub", tuple(PROTOCOLS),
     lambda d, r: d.rename(f"{r}/f.txt", f"{r}/proj/keep/f.txt")),
    ("a file is copied into a read-only subtree", "rosub", ("ftp", "webdav", "rest"),
     lambda d, r: d.copy(f"{r}/f.txt", f"{r}/proj/keep/f2.txt")),
    ("without overwrite, a file is rewritten at an offset", "noover", ("ftp", "sftp"),
     lambda d, r: d.write_at(f"{r}/f.txt", 2, b"XX")),
    ("without overwrite, a file is appended to", "noover", ("ftp", "sftp"),
     lambda d, r: d.append(f"{r}/f.txt", b"more")),
    ("without overwrite, a file is replaced by an upload", "noover", tuple(PROTOCOLS),
     lambda d, r: d.put(f"{r}/f.txt", b"new")),
    ("without overwrite, a file is replaced by a move", "noover", ("sftp", "webdav", "rest"),
     lambda d, r: d.move_over(f"{r}/dir/d.txt", f"{r}/f.txt")),
    ("a dead property is written on a read-only path", "rosub", ("webdav",),
     lambda d, r: d.proppatch(f"{r}/proj/keep/k.txt", "note", "x")),
    ("a file on a read-only path is locked against its writers", "rosub", ("webdav",),
     lambda d, r: d.lock(f"{r}/proj/keep/k.txt")),
]


def _cases(table: list[tuple]) -> list:
    """One case per scenario and protocol that has its operation."""
    return [pytest.param(p, *row[1:], id=f"{p}: {row[0]}") for row in table for p in row[2]]


@pytest.mark.parametrize("proto,user,protocols,attempt", _cases(REFUSED))
def test_refused_and_nothing_changes(gw, proto, connect, root, user, protocols, attempt):
    d = connect(user)
    before = snapshot(gw.data)
    with pytest.raises(ProtoError) as err:
        attempt(d, root)
    assert err.value.kind == "denied", err.value
    assert snapshot(gw.data) == before
    assert gw.ops.davstate.props(f"{root}/proj/keep/k.txt") == {}
    assert gw.ops.davstate.locks(root, include_children=True) == []


#: What the same users may still do: rules below other paths do not get in the way.
ALLOWED: list[tuple[str, str, tuple[str, ...], Callable, Callable]] = [
    ("a folder tree without rules below it is deleted", "rosub", tuple(PROTOCOLS),
     lambda d, r: d.rmtree(f"{r}/dir"), lambda data, r: not (data / r[1:] / "dir").exists()),
    ("a file beside a read-only subtree is renamed", "rosub", tuple(PROTOCOLS),
     lambda d, r: d.rename(f"{r}/proj/a.txt", f"{r}/proj/b.txt"),
     lambda data, r: (data / r[1:] / "proj/b.txt").read_bytes() == b"a"),
    ("without delete, a file replaces a file", "nodel", ("sftp", "webdav", "rest"),
     lambda d, r: d.move_over(f"{r}/dir/d.txt", f"{r}/f.txt"),
     lambda data, r: (data / r[1:] / "f.txt").read_bytes() == b"d"),
]


@pytest.mark.parametrize("proto,user,protocols,attempt,check", _cases(ALLOWED))
def test_allowed_still_works(gw, proto, connect, root, user, protocols, attempt, check):
    attempt(connect(user), root)
    assert check(gw.data, root)


@pytest.fixture
def planted(gw):
    """bob2's secret, and a link in alice2's home that leads to bob2's."""
    homes = gw.data / "homes"
    (homes / "bob" / "secret.txt").write_bytes(b"bob's")
    link = homes / "alice" / "tobob"
    if not link.is_symlink():
        link.symlink_to("../bob")
    return "/tobob"


CONFINED: list[tuple[str, Callable]] = [
    ("read", lambda d, link: d.get(f"{link}/secret.txt")),
    ("write", lambda d, link: d.put(f"{link}/new.txt", b"from alice")),
    ("list", lambda d, link: d.ls(link)),
    ("delete", lambda d, link: d.delete(f"{link}/secret.txt")),
    ("rename", lambda d, link: d.rename(f"{link}/secret.txt", "/stolen.txt")),
]


@pytest.mark.parametrize("what,attempt", CONFINED, ids=[c[0] for c in CONFINED])
def test_a_link_does_not_lead_out_of_the_home(gw, proto, connect, planted, what, attempt):
    d = connect("alice2")
    before = snapshot(gw.data)
    with pytest.raises(ProtoError) as err:
        attempt(d, planted)
    assert err.value.kind in ("denied", "not_found"), err.value
    assert snapshot(gw.data) == before
    assert "tobob" not in d.ls("/")
    assert connect("bob2").get("/secret.txt") == b"bob's"


@pytest.mark.parametrize("proto", ["webdav"])
def test_property_size_is_bounded(gw, connect, proto, root):
    """Dead properties (WebDAV's) are bounded per property and per file."""
    d = connect("rosub")
    path = f"{root}/f.txt"
    d.proppatch(path, "small", "fine")
    with pytest.raises(ProtoError) as err:
        d.proppatch(path, "big", "x" * (65 << 10))
    assert err.value.kind == "too_large"
    for i in range(16):  # 16 x 63 KiB: each within its bound, all within the file's
        d.proppatch(path, f"p{i}", "y" * (63 << 10))
    with pytest.raises(ProtoError) as err:
        d.proppatch(path, "p16", "y" * (63 << 10))
    assert err.value.kind == "too_large"
    kept = d.props(path)
    assert kept["{urn:t:}small"] == "fine" and "{urn:t:}big" not in kept and "{urn:t:}p16" not in kept
    assert len(kept) == 17
