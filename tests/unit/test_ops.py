"""Every operation of the core, and every error it promises, on memory://
and file:// mounts."""

from pathlib import Path

import pytest

from gateway import errors as E
from gateway.app import Gateway
from gateway.types import Session
from gateway.users import User

from conftest import unique_memory


@pytest.fixture(params=["memory", "file"])
def gw(request, tmp_path):
    url = f"memory://{unique_memory()}" if request.param == "memory" else f"file://{tmp_path / 'data'}"
    g = Gateway.build({"/": url, "/m2": f"memory://{unique_memory()}"}, tmp_path / "var", budget_s=5).start()
    yield g
    g.close()


@pytest.fixture
def s():
    return Session(User("alice"), "test")


def put(ops, s, path, data=b"x"):
    up = ops.open_write(s, path)
    up.write(data)
    return up.commit()


def names(ops, s, path="/"):
    return sorted(e.name for e in ops.list(s, path))


def read(ops, s, path, offset=0):
    f, _ = ops.open_read(s, path, offset)
    with f:
        return f.read()


def test_upload_stat_list_read(gw, s):
    ops = gw.ops
    ops.mkdir(s, "/d")
    e = put(ops, s, "/d/a.txt", b"hello world")
    assert (e.name, e.size, e.is_dir, e.path) == ("a.txt", 11, False, "/d/a.txt")
    assert names(ops, s) == ["d", "m2"]
    assert names(ops, s, "/d") == ["a.txt"]
    assert read(ops, s, "/d/a.txt") == b"hello world"
    assert read(ops, s, "/d/a.txt", 6) == b"world"
    assert ops.stat(s, "a.txt", cwd="/d").size == 11
    assert ops.stat(s, "/").is_dir


def test_hash(gw, s):
    put(gw.ops, s, "/f", b"abc")
    assert gw.ops.hash(s, "/f", "sha256") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert gw.ops.hash(s, "/f", "MD5") == "900150983cd24fb0d6963f7d28e17f72"
    with pytest.raises(E.BadRequest):
        gw.ops.hash(s, "/f", "crc99")


def test_upload_is_invisible_until_commit_and_abort_leaves_nothing(gw, s):
    ops = gw.ops
    put(ops, s, "/keep", b"old")
    up = ops.open_write(s, "/keep")
    up.write(b"new content")
    assert read(ops, s, "/keep") == b"old"
    up.abort()
    assert read(ops, s, "/keep") == b"old"
    up = ops.open_write(s, "/fresh")
    up.write(b"partial")
    assert "fresh" not in names(ops, s)
    up.abort()
    assert names(ops, s) == ["keep", "m2"]


def test_out_of_order_writes_are_reassembled(gw, s):
    up = gw.ops.open_write(s, "/ooo")
    up.write_at(4, b"5678")
    up.write_at(0, b"1234")
    up.write_at(0, b"1234")  # a retransmission is harmless
    up.write_at(8, b"9")
    up.commit()
    assert read(gw.ops, s, "/ooo") == b"123456789"
    up = gw.ops.open_write(s, "/gap")
    up.write_at(10, b"x")
    with pytest.raises(E.BadRequest):
        up.commit()
    assert not gw.ops.exists(s, "/gap")


def test_resume_continues_a_file(gw, s):
    put(gw.ops, s, "/r", b"abc")
    up = gw.ops.open_write(s, "/r", offset=3)
    up.write(b"def")
    up.commit()
    assert read(gw.ops, s, "/r") == b"abcdef"
    with pytest.raises(E.NotFound):
        gw.ops.open_write(s, "/nope", offset=3)


def test_mkdir_errors(gw, s):
    ops = gw.ops
    ops.mkdir(s, "/d")
    with pytest.raises(E.AlreadyExists):
        ops.mkdir(s, "/d")
    with pytest.raises(E.MissingParent):
        ops.mkdir(s, "/no/such")
    put(ops, s, "/file")
    with pytest.raises(E.NotADirectory):
        ops.mkdir(s, "/file/sub")


def test_read_errors(gw, s):
    ops = gw.ops
    ops.mkdir(s, "/d")
    with pytest.raises(E.NotFound) as ei:
        ops.stat(s, "/missing")
    assert "/missing" in str(ei.value)
    with pytest.raises(E.IsADirectory):
        ops.open_read(s, "/d")
    put(ops, s, "/f")
    with pytest.raises(E.NotADirectory):
        list(ops.list(s, "/f"))
    with pytest.raises(E.BadRequest):
        ops.stat(s, "/a\x00b")
    with pytest.raises(E.IsADirectory):
        ops.open_write(s, "/d")


def test_delete(gw, s):
    ops = gw.ops
    ops.mkdir(s, "/d")
    put(ops, s, "/d/f")
    with pytest.raises(E.DirectoryNotEmpty):
        ops.delete(s, "/d")
    with pytest.raises(E.IsADirectory):
        ops.delete(s, "/d", folder=False)
    with pytest.raises(E.NotADirectory):
        ops.delete(s, "/d/f", folder=True)
    ops.delete(s, "/d/f")
    ops.delete(s, "/d")
    with pytest.raises(E.NotFound):
        ops.delete(s, "/d")
    ops.mkdir(s, "/t")
    ops.mkdir(s, "/t/u")
    put(ops, s, "/t/u/f")
    out = ops.delete(s, "/t", recursive=True)
    assert not out.backgrounded and names(ops, s) == ["m2"]
    with pytest.raises(E.PermissionDenied):
        ops.delete(s, "/m2", recursive=True)  # a mount point
    with pytest.raises(E.PermissionDenied):
        ops.delete(s, "/", recursive=True)


def test_copy_and_move_files_and_trees(gw, s):
    ops = gw.ops
    ops.mkdir(s, "/src")
    ops.mkdir(s, "/src/sub")
    put(ops, s, "/src/a", b"A" * 1000)
    put(ops, s, "/src/sub/b", b"B")
    ops.copy(s, "/src", "/cp")
    assert read(ops, s, "/cp/sub/b") == b"B" and read(ops, s, "/src/a") == b"A" * 1000
    ops.move(s, "/cp", "/mv")
    assert "cp" not in names(ops, s) and read(ops, s, "/mv/a") == b"A" * 1000
    ops.copy(s, "/src/a", "/a2")
    ops.move(s, "/a2", "/a3")
    assert read(ops, s, "/a3") == b"A" * 1000 and not ops.exists(s, "/a2")
    # across mounts: a move is copy + delete
    ops.move(s, "/mv", "/m2/moved")
    assert names(ops, s, "/m2/moved") == ["a", "sub"] and not ops.exists(s, "/mv")
    assert read(ops, s, "/m2/moved/sub/b") == b"B"
    ops.copy(s, "/m2/moved/a", "/back")
    assert read(ops, s, "/back") == b"A" * 1000


def test_copy_move_errors_and_overwrite(gw, s):
    ops = gw.ops
    ops.mkdir(s, "/d")
    put(ops, s, "/d/x", b"1")
    put(ops, s, "/y", b"2")
    with pytest.raises(E.NotFound):
        ops.copy(s, "/nope", "/z")
    with pytest.raises(E.AlreadyExists):
        ops.copy(s, "/d/x", "/y")
    with pytest.raises(E.AlreadyExists):
        ops.move(s, "/d/x", "/y")
    with pytest.raises(E.MissingParent):
        ops.move(s, "/y", "/no/where")
    with pytest.raises(E.BadRequest):
        ops.move(s, "/d", "/d/inside")
    with pytest.raises(E.BadRequest):
        ops.copy(s, "/y", "/y")
    with pytest.raises(E.PermissionDenied):
        ops.move(s, "/m2", "/elsewhere")
    assert ops.move(s, "/y", "/y").entry.name == "y"  # a no-op rename
    ops.copy(s, "/d/x", "/y", overwrite=True)
    assert read(ops, s, "/y") == b"1"
    ops.mkdir(s, "/e")
    put(ops, s, "/e/old", b"old")
    ops.move(s, "/d", "/e", overwrite=True)
    assert names(ops, s, "/e") == ["x"] and not ops.exists(s, "/d")


def test_permissions_and_home(tmp_path):
    g = Gateway.build({"/": f"memory://{unique_memory()}"}, tmp_path / "var").start()
    try:
        root = Session(User("root", admin=True), "test")
        g.ops.mkdir(root, "/home")
        g.ops.mkdir(root, "/home/carol")
        g.ops.mkdir(root, "/home/carol/ro")
        put(g.ops, root, "/home/carol/ro/f", b"r")
        put(g.ops, root, "/secret", b"s")
        carol = Session(User("carol", home="/home/carol", permissions=frozenset({"*"}),
                             path_permissions={"/ro": frozenset({"list", "download"})}), "test")
        assert names(g.ops, carol) == ["ro"]
        assert names(g.ops, carol, "/../..") == ["ro"]
        with pytest.raises(E.NotFound):
            g.ops.stat(carol, "/secret")
        assert read(g.ops, carol, "/ro/f") == b"r"
        for call in (lambda: put(g.ops, carol, "/ro/new"), lambda: g.ops.delete(carol, "/ro/f"),
                     lambda: g.ops.mkdir(carol, "/ro/sub"), lambda: g.ops.move(carol, "/ro/f", "/f2")):
            with pytest.raises(E.PermissionDenied):
                call()
        put(g.ops, carol, "/mine", b"m")
        assert g.ops.stat(root, "/home/carol/mine").size == 1
        nolist = Session(User("dave", permissions=frozenset({"download"})), "test")
        with pytest.raises(E.PermissionDenied):
            list(g.ops.list(nolist, "/"))
    finally:
        g.close()


def test_mount_points_listed_in_virtual_root(tmp_path):
    g = Gateway.build({"/a/b": f"memory://{unique_memory()}", "/c": f"memory://{unique_memory()}"},
                      tmp_path / "var").start()
    try:
        s = Session(User("u"), "test")
        assert names(g.ops, s) == ["a", "c"]
        assert names(g.ops, s, "/a") == ["b"]
        put(g.ops, s, "/a/b/f")
        assert names(g.ops, s, "/a/b") == ["f"]
        with pytest.raises(E.NotFound):
            put(g.ops, s, "/nomount")
    finally:
        g.close()


@pytest.mark.parametrize("follow", [False, True])
def test_symbolic_links_out_of_a_local_mount(tmp_path, s, follow):
    """Anyone who can write to a local mount's folder on the host could link
    to anything the gateway can read: links that lead outside are refused and
    not listed, unless the mount follows links; links inside work as the
    folder they name."""
    data, outside = tmp_path / "data", tmp_path / "outside"
    (data / "in").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    (data / "in" / "f.txt").write_bytes(b"ok")
    (data / "out").symlink_to(outside)
    (data / "secret.txt").symlink_to(outside / "secret.txt")
    (data / "alias").symlink_to("in")
    (data / "box" / "sub").mkdir(parents=True)
    (data / "box" / "sub" / "out").symlink_to(outside)
    g = Gateway.build({"/": (f"file://{data}", {"follow_links": follow})}, tmp_path / "var").start()
    try:
        ops = g.ops
        assert read(ops, s, "/alias/f.txt") == b"ok" and names(ops, s, "/alias") == ["f.txt"]
        if follow:
            assert names(ops, s) == ["alias", "box", "in", "out", "secret.txt"]
            assert read(ops, s, "/out/secret.txt") == b"secret"
            return
        assert names(ops, s) == ["alias", "box", "in"] and names(ops, s, "/box/sub") == []
        refusals = [lambda: ops.stat(s, "/out"), lambda: list(ops.list(s, "/out")),
                    lambda: read(ops, s, "/secret.txt"), lambda: read(ops, s, "/out/secret.txt"),
                    lambda: ops.mkdir(s, "/out/made"), lambda: put(ops, s, "/out/new.txt"),
                    lambda: ops.move(s, "/in/f.txt", "/out/f.txt"), lambda: ops.copy(s, "/in/f.txt", "/out/c.txt"),
                    lambda: ops.set_mtime(s, "/secret.txt", 0),
                    lambda: ops.delete(s, "/secret.txt", folder=False)]
        for refused in refusals:
            with pytest.raises(E.PermissionDenied, match="outside the mount through a symbolic link"):
                refused()
        # a refused destination is the one named
        for dst in ("/out/f.txt", "/secret.txt"):
            with pytest.raises(E.PermissionDenied, match=f"^{dst}: leads outside") as refused:
                ops.move(s, "/in/f.txt", dst, overwrite=True)
            assert refused.value.path == dst
        assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
        assert (outside / "secret.txt").stat().st_mtime > 0 and (data / "in" / "f.txt").exists()
        # a file's delete (FTP DELE, SFTP remove) takes a link inside as what it leads to, and removes the link
        with pytest.raises(E.IsADirectory):
            ops.delete(s, "/alias", folder=False)
        (data / "in" / "link.txt").symlink_to("f.txt")
        assert ops.delete(s, "/in/link.txt", folder=False).entry.size == 2
        assert sorted(p.name for p in (data / "in").iterdir()) == ["f.txt"]
        # a folder holding such a link is deleted whole: the link goes, not what it leads to
        out = ops.delete(s, "/box", recursive=True)
        assert out.job is None or g.dispatcher.wait(out.job.id, 30).state == "completed"
        assert sorted(p.name for p in data.iterdir()) == ["alias", "in", "out", "secret.txt"]
        assert (outside / "secret.txt").read_bytes() == b"secret"
    finally:
        g.close()


@pytest.fixture
def swapping(tmp_path, monkeypatch):
    """A local mount at ``data`` whose link check, once ``armed(path,
    target)``, replaces ``path`` by a link to ``target`` right after checking
    it (the checked object stays as ``<name>.was``). Yields (backend, data,
    outside, armed)."""
    import backends.local

    data, outside = tmp_path / "data", tmp_path / "outside"
    (data / "d").mkdir(parents=True)
    outside.mkdir()
    swaps: dict = {}
    inside = backends.local.LocalBackend._inside

    def swap_after_check(self, real):
        inside(self, real)
        target = swaps.pop(real, None)
        if target is not None:  # checked: now the path becomes a link to outside
            path = Path(real)
            path.rename(path.with_name(path.name + ".was"))
            path.symlink_to(target)

    def armed(path, target):
        if path.is_symlink():
            path.unlink()
            path.with_name(path.name + ".was").rename(path)
        swaps[str(path)] = target
        return path

    g = Gateway.build({"/": f"file://{data}"}, tmp_path / "var").start()
    try:
        monkeypatch.setattr(backends.local.LocalBackend, "_inside", swap_after_check)
        yield g.namespace.resolve("/")[0].backend, data, outside, armed
    finally:
        g.close()


def test_a_link_swapped_in_after_the_check_is_not_followed(swapping):
    """Reads, stats and listings of a local mount go through the descriptor
    the symbolic-link check resolved: a file or folder replaced by a link to
    outside right after its check still answers with what was checked."""
    backend, data, outside, armed = swapping
    (outside / "secret.txt").write_bytes(b"secret, 20 bytes....")
    (data / "d" / "own.txt").write_bytes(b"own")
    (data / "f.txt").write_bytes(b"mine")
    with backend.open_read(str(armed(data / "f.txt", outside / "secret.txt"))) as f:
        assert f.read() == b"mine"
    assert backend.info(str(armed(data / "f.txt", outside / "secret.txt"))).size == 4
    assert [e.name for e in backend.iterdir(str(armed(data / "d", outside)))] == ["own.txt"]


def test_a_folder_swapped_for_a_link_after_its_check_takes_no_change_outside(swapping):
    """Creating, renaming, deleting and setting times go through the checked
    folder's descriptor: a folder replaced by a link to outside right after
    its check gets the change (it is still the folder the user named, moved
    aside). An upload or copy, whose folder is checked again to place the
    file, is refused there. Nothing outside the mount is created, changed or
    deleted."""
    backend, data, outside, armed = swapping
    (outside / "victim.txt").write_bytes(b"keep me")
    (data / "d" / "victim.txt").write_bytes(b"the user's own")
    (data / "src.txt").write_bytes(b"copied")
    before = sorted(p.name for p in outside.iterdir())

    def d(name):
        return str(armed(data / "d", outside) / name)

    up = backend.open_write(d("new.txt"))
    up.write(b"uploaded")
    with pytest.raises(E.PermissionDenied):
        up.commit()  # the folder is checked again to place the file: now a link out
    with pytest.raises(E.PermissionDenied):
        backend.copy_file(str(data / "src.txt"), d("copy.txt"))  # the same
    backend.mkdir(d("sub"))
    backend.remove(d("victim.txt"))
    (data / "d.was" / "moved.txt").write_bytes(b"m")
    backend.rename(d("moved.txt"), str(data / "moved.txt"))
    backend.set_mtime(d("sub"), 1_000_000)
    backend.rm_tree(d("sub"))

    assert sorted(p.name for p in outside.iterdir()) == before
    assert (outside / "victim.txt").read_bytes() == b"keep me"
    assert (data / "moved.txt").read_bytes() == b"m"
    assert sorted(p.name for p in (data / "d.was").iterdir() if not p.name.startswith(".gw")) == []


def test_copy_and_move_between_two_local_disks(tmp_path, s):
    """Two local mounts (say / and /archive on another disk): files and
    folders copy and move between them, each path checked against its own
    mount, so a link out of either is still refused."""
    a, b, outside = tmp_path / "a", tmp_path / "b", tmp_path / "outside"
    for d in (a, b, outside):
        d.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    (a / "out.txt").symlink_to(outside / "secret.txt")
    (b / "out").symlink_to(outside)
    g = Gateway.build({"/": f"file://{a}", "/archive": f"file://{b}"}, tmp_path / "var", budget_s=5).start()
    try:
        put(g.ops, s, "/f.txt", b"hello")
        g.ops.mkdir(s, "/tree")
        put(g.ops, s, "/tree/in.txt", b"inner")
        g.ops.copy(s, "/f.txt", "/archive/f.txt")
        g.ops.move(s, "/tree", "/archive/tree")
        assert (b / "f.txt").read_bytes() == b"hello" and (a / "f.txt").read_bytes() == b"hello"
        assert (b / "tree" / "in.txt").read_bytes() == b"inner" and not (a / "tree").exists()
        with pytest.raises(E.PermissionDenied):
            g.ops.copy(s, "/out.txt", "/archive/leak.txt")
        with pytest.raises(E.PermissionDenied):
            g.ops.copy(s, "/f.txt", "/archive/out/planted.txt")
        assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"] and not (b / "leak.txt").exists()
    finally:
        g.close()


def test_a_local_copy_reports_each_block_and_stops_between_blocks(tmp_path, monkeypatch):
    """A large file copied on local disk shows progress block by block, and a
    job's stop lands between blocks: the destination is left as it was, with
    no temporary behind, and the stop is not mistaken for a storage error. A
    copy whose size is not the source's (it changed meanwhile) is not placed."""
    import backends.local
    from gateway.transfer import copy_file

    class Stop(Exception):
        pass

    monkeypatch.setattr(backends.local, "COPY_BLOCK", 1000)
    a, b = tmp_path / "a", tmp_path / "b"
    g = Gateway.build({"/": f"file://{a}", "/b": f"file://{b}"}, tmp_path / "var").start()
    try:
        src, dst = g.namespace.resolve("/")[0].backend, g.namespace.resolve("/b")[0].backend
        (a / "big").write_bytes(b"x" * 3500)
        seen: list[int] = []
        assert copy_file(src, str(a / "big"), dst, str(b / "big"), on_bytes=seen.append) == 3500
        assert seen == [1000, 1000, 1000, 500] and (b / "big").read_bytes() == b"x" * 3500

        (b / "big").write_bytes(b"old")
        checks: list[int] = []

        def check():
            checks.append(1)
            if len(checks) == 3:
                raise Stop()

        with pytest.raises(Stop):
            copy_file(src, str(a / "big"), dst, str(b / "big"), check=check)
        assert [p.name for p in b.iterdir()] == ["big"] and (b / "big").read_bytes() == b"old"
        with pytest.raises(E.BackendError, match="3500 bytes, source has 4000"):  # it changed since its stat
            copy_file(src, str(a / "big"), dst, str(b / "big"), expected_size=4000)
        assert [p.name for p in b.iterdir()] == ["big"] and (b / "big").read_bytes() == b"old"
    finally:
        g.close()


def test_dead_properties_follow_whatever_protocol_moves_copies_or_deletes(gw, s):
    """A file's WebDAV properties go with a rename made through the core (as
    FTP and SFTP make them), are copied with a copy, and go away with a
    delete, so a new file at the old name never inherits them."""
    dav = gw.ops.davstate
    put(gw.ops, s, "/a.txt")
    gw.ops.mkdir(s, "/d")
    put(gw.ops, s, "/d/in.txt")
    dav.set_prop("/a.txt", "{urn:t}c", "blue")
    dav.set_prop("/d/in.txt", "{urn:t}c", "red")
    gw.ops.move(s, "/a.txt", "/b.txt")
    assert dav.props("/a.txt") == {} and dav.props("/b.txt") == {"{urn:t}c": "blue"}
    gw.ops.copy(s, "/b.txt", "/m2/c.txt")  # across mounts
    assert dav.props("/b.txt") == dav.props("/m2/c.txt") == {"{urn:t}c": "blue"}
    gw.ops.move(s, "/d", "/e")
    assert dav.props("/d/in.txt") == {} and dav.props("/e/in.txt") == {"{urn:t}c": "red"}
    gw.ops.delete(s, "/b.txt")
    gw.ops.delete(s, "/e", recursive=True)
    put(gw.ops, s, "/b.txt")
    assert dav.props("/b.txt") == {} and dav.props("/e/in.txt") == {}


def test_webdav_locks_bar_changes_but_their_owners_with_the_token(gw, s):
    """A depth-0 lock on a folder bars its members coming and going, not
    their content; a lock taken during an upload bars its commit; the
    owner's session with the token may; another user with the token may not."""
    ops = gw.ops
    ops.mkdir(s, "/d")
    put(ops, s, "/d/f", b"old")
    lock = {"token": "opaquelocktoken:t", "principal": "alice", "depth": "0", "scope": "exclusive",
            "expire": 4102444800}
    ops.davstate.put_lock("opaquelocktoken:t", "/d", lock, 4102444800)
    put(ops, s, "/d/f", b"new")  # a member's content: not the folder's
    for change in (lambda: put(ops, s, "/d/g"), lambda: ops.mkdir(s, "/d/sub"), lambda: ops.delete(s, "/d/f"),
                   lambda: ops.move(s, "/d/f", "/f"), lambda: ops.set_mtime(s, "/d", 1e9)):
        with pytest.raises(E.Locked, match=r"locked by WebDAV lock of alice \(exclusive on /d\) until 2100-01-01"):
            change()
    holder = Session(User("alice"), "webdav", lock_tokens=frozenset({"opaquelocktoken:t"}))
    with pytest.raises(E.Locked):
        put(ops, Session(User("bob"), "webdav", lock_tokens=holder.lock_tokens), "/d/g")
    ops.move(holder, "/d/f", "/d/g")
    up = ops.open_write(holder, "/d/g")
    up.write(b"late")
    ops.davstate.put_lock("opaquelocktoken:u", "/d/g", {**lock, "token": "opaquelocktoken:u"}, 4102444800)
    with pytest.raises(E.Locked):
        up.commit()
    assert read(ops, s, "/d/g") == b"new"
