"""Stable file ids and folder versions (gateway.fileids) through the core:
ids follow moves (inline and as jobs, at the commit), deletes drop them,
and a folder's version changes when anything below it changes."""

from __future__ import annotations

import hashlib
import os
import time

import httpx
import pytest

from conformance.drivers import DavDriver, FtpDriver, SftpDriver
from conftest import PASSWORDS, pg_job_store, unique_memory
from gateway import errors as E
from gateway.fileids import storage_etag


def _ids(ops, s, *paths):
    return dict(zip(paths, ops.file_ids(s, list(paths))))


def test_ids_are_stable_and_follow_inline_moves(gateway_factory):
    r = gateway_factory()
    ops, s = r.ops, r.session()
    ops.mkdir(s, "/a")
    ops.mkdir(s, "/a/b")
    ops.open_write(s, "/a/b/f.txt").commit()
    before = _ids(ops, s, "/", "/a", "/a/b", "/a/b/f.txt")
    assert len({f.id for f in before.values()}) == 4
    assert _ids(ops, s, "/a/b/f.txt") == {"/a/b/f.txt": before["/a/b/f.txt"]}  # stable, unchanged
    # One query for a listing gives the same answer.
    assert ops.file_ids(s, ["/a/b", "/a/b/f.txt"], folder="/a/b") == [before["/a/b"], before["/a/b/f.txt"]]

    ops.move(s, "/a/b", "/a/c")
    after = _ids(ops, s, "/", "/a", "/a/c", "/a/c/f.txt")
    assert after["/a/c"][0] == before["/a/b"][0]
    assert after["/a/c/f.txt"] == before["/a/b/f.txt"]  # a moved file keeps its id and version
    assert after["/a"][1] > before["/a"][1] and after["/"][1] > before["/"][1]

    w = ops.open_write(s, "/a/c/f.txt")
    w.write(b"new")
    w.commit()
    edited = _ids(ops, s, "/", "/a", "/a/c", "/a/c/f.txt")
    assert edited["/a/c/f.txt"][0] == before["/a/b/f.txt"][0]
    for p in ("/", "/a", "/a/c", "/a/c/f.txt"):
        assert edited[p][1] > after[p][1], p

    ops.copy(s, "/a/c/f.txt", "/a/g.txt")
    copied = _ids(ops, s, "/a/g.txt", "/a/c/f.txt")
    assert copied["/a/g.txt"][0] != copied["/a/c/f.txt"][0]

    ops.delete(s, "/a/c", recursive=True)
    ops.mkdir(s, "/a/c")
    ops.open_write(s, "/a/c/f.txt").commit()
    assert _ids(ops, s, "/a/c/f.txt")["/a/c/f.txt"][0] not in (before["/a/b/f.txt"][0],)


def test_ids_follow_a_move_made_as_a_job_at_its_commit(gateway_factory):
    """The ids move at the commit, and the folders' versions (their ETags)
    change then, once: not while the job copies, which a sync client would
    take for changes to fetch."""
    r = gateway_factory(mounts={"/": (f"slow::memory://{unique_memory()}", {"slow": {"latency_ms": 20}})},
                        budget_ms=0)
    ops, s = r.ops, r.session()
    ops.mkdir(s, "/t")
    for i in range(5):
        w = ops.open_write(s, f"/t/f{i}")
        w.write(b"x" * 10)
        w.commit()
    before = _ids(ops, s, "/", "/t", "/t/f3")
    outcome = ops.move(s, "/t", "/u", budget_s=0)
    assert outcome.job is not None
    seen = []
    while True:  # the version read before the job: the commit is one transaction
        version = _ids(ops, s, "/")["/"][1]
        if ops.get_job(s, outcome.job_id).committed_at is not None:
            break
        seen.append(version)
        time.sleep(0.01)
    assert seen and set(seen) == {before["/"][1]}
    committed = _ids(ops, s, "/")["/"][1]
    assert r.gw.dispatcher.wait(outcome.job_id, 30).state == "completed"
    after = _ids(ops, s, "/", "/u", "/u/f3")
    assert after["/u"][0] == before["/t"][0] and after["/u/f3"][0] == before["/t/f3"][0]
    assert after["/"][1] == committed > before["/"][1]  # the cleanup after the commit changes nothing


def test_verified_checksums_are_kept_and_follow_the_file(gateway_factory):
    r = gateway_factory()
    ops, s = r.ops, r.session()
    data = b"checked content"
    sha1 = hashlib.sha1(data).hexdigest()

    w = ops.open_write(s, "/bad.txt")
    w.expect_checksum("SHA1", "0" * 40)
    w.write(data)
    with pytest.raises(E.BadRequest, match="checksum mismatch"):
        w.commit()
    assert not ops.exists(s, "/bad.txt")

    w = ops.open_write(s, "/c.txt")
    w.expect_checksum("SHA1", sha1.upper())
    w.write(data)
    w.commit()
    md5 = hashlib.md5(data).hexdigest()
    assert ops.file_ids(s, ["/c.txt"])[0].checksum == f"sha1:{sha1} md5:{md5}"
    ops.move(s, "/c.txt", "/d.txt")
    ops.copy(s, "/d.txt", "/e.txt")
    found = ops.file_ids(s, ["/d.txt", "/e.txt"])
    assert [f.checksum for f in found] == [f"sha1:{sha1} md5:{md5}"] * 2 and found[0].id != found[1].id
    assert found[0].checksum_size == len(data)
    w = ops.open_write(s, "/d.txt")  # a new content has its own, computed as it streamed
    w.write(b"other")
    w.commit()
    assert ops.file_ids(s, ["/d.txt"])[0].checksum == (f"sha1:{hashlib.sha1(b'other').hexdigest()} "
                                                       f"md5:{hashlib.md5(b'other').hexdigest()}")
    w = ops.open_write(s, "/d.txt", offset=5)  # one continuing the file has none: it is dropped
    w.write(b" more")
    w.commit()
    assert ops.file_ids(s, ["/d.txt"])[0].checksum is None
    w = ops.open_write(s, "/f.txt")
    with pytest.raises(E.BadRequest):
        w.expect_checksum("crc32", "00")
    w.abort()


def test_hash_answers_from_the_kept_checksum_while_the_size_matches(gateway_factory):
    """``Operations.hash`` (md5sum over ssh, FTP HASH, check-file) reads the
    file only when no checksum was kept for its current size."""
    r = gateway_factory()
    ops, s = r.ops, r.session()
    data = b"kept content"
    w = ops.open_write(s, "/k.txt")
    w.expect_checksum("SHA256", hashlib.sha256(data).hexdigest())
    w.write(data)
    w.commit()
    # Changed behind the gateway's back, same size: the kept digests answer
    # (trusted while the size is the same, as for oc:checksums)...
    (r.data / "k.txt").write_bytes(b"KEPT CONTENT")
    for algorithm in ("sha256", "SHA-1", "md5"):
        assert ops.hash(s, "/k.txt", algorithm) == hashlib.new(algorithm.replace("-", ""), data).hexdigest()
    # ...one that was not kept is computed from the content...
    assert ops.hash(s, "/k.txt", "sha512") == hashlib.sha512(b"KEPT CONTENT").hexdigest()
    # ...and another size means another content.
    (r.data / "k.txt").write_bytes(b"longer content")
    assert ops.hash(s, "/k.txt", "md5") == hashlib.md5(b"longer content").hexdigest()
    with pytest.raises(E.BadRequest):
        ops.hash(s, "/k.txt", "crc32")


def test_a_moved_file_keeps_its_etag_while_the_storage_reports_the_copy(gateway_factory):
    """Moved by copy into storage that keeps no client times (a memory
    mount: inside one, a copy keeps the source's time; across mounts it
    has a new one) the copy has a new storage ETag: the file's kept one is
    served while the storage reports that copy, across further moves; any
    change of the content, through the gateway or behind it, gives the
    storage's ETag again."""
    r = gateway_factory(mounts={"/": f"memory://{unique_memory()}", "/b": f"memory://{unique_memory()}"})
    ops, s = r.ops, r.session()
    backend = r.gw.namespace.resolve("/")[0].backend
    w = ops.open_write(s, "/f.txt")
    w.write(b"content")
    w.commit()

    def etag(path):
        return ops.file_ids(s, [path])[0].served_etag(ops.stat(s, path))

    first = etag("/f.txt")  # a sync client saw it: the file has an id
    time.sleep(0.002)  # the copy's time differs from the original's
    ops.move(s, "/f.txt", "/b/g.txt")
    assert storage_etag(ops.stat(s, "/b/g.txt")) != first
    assert etag("/b/g.txt") == first
    time.sleep(0.002)
    ops.mkdir(s, "/d")
    ops.move(s, "/b/g.txt", "/d/h.txt")
    assert etag("/d/h.txt") == first
    ops.copy(s, "/d/h.txt", "/b/c.txt")  # a copy is another file
    assert etag("/b/c.txt") == storage_etag(ops.stat(s, "/b/c.txt"))
    # Rewritten behind the gateway's back (same size): the storage's new ETag.
    time.sleep(0.002)
    backend.fs.pipe_file(backend.join("d/h.txt"), b"CONTENT")
    assert etag("/d/h.txt") == storage_etag(ops.stat(s, "/d/h.txt")) != first
    # Moved again and rewritten through the gateway: the same.
    time.sleep(0.002)
    ops.move(s, "/d/h.txt", "/b/h.txt")
    assert etag("/b/h.txt") != storage_etag(ops.stat(s, "/b/h.txt"))
    w = ops.open_write(s, "/b/h.txt")
    w.write(b"content")
    w.commit()
    assert etag("/b/h.txt") == storage_etag(ops.stat(s, "/b/h.txt"))
    # A file the table does not know (written behind the gateway's back,
    # no id asked yet) keeps nothing: no client was served its ETag.
    backend.fs.pipe_file(backend.join("n.txt"), b"n")
    time.sleep(0.002)
    ops.move(s, "/n.txt", "/b/m.txt")
    assert etag("/b/m.txt") == storage_etag(ops.stat(s, "/b/m.txt"))


def test_a_folder_moved_as_a_job_keeps_its_files_etags(gateway_factory):
    """A folder moved as a background job by copy into storage that keeps
    no client times (a memory mount: each copy has a new time, so a new
    storage ETag): each file a sync client saw keeps its ETag (also one
    kept by an earlier inline move) while the storage reports the job's
    copy; a file changed after the move gets the storage's new ETag."""
    slow = {"slow": {"latency_ms": 0}}
    r = gateway_factory(mounts={"/": (f"slow::memory://{unique_memory()}", slow),
                                "/b": (f"slow::memory://{unique_memory()}", slow)}, budget_ms=0)
    ops, s = r.ops, r.session()
    ops.mkdir(s, "/t")
    ops.mkdir(s, "/t/sub")
    names = ["/t/a.txt", "/t/sub/b.txt", "/b/c.txt"]
    for name in names:
        w = ops.open_write(s, name)
        w.write(name.encode())
        w.commit()
    root = r.gw.namespace.resolve("/")[0].backend
    root.fs.pipe_file(root.join("t/unseen.txt"), b"unseen")  # no row: no client was served its ETag

    def etag(path):
        return ops.file_ids(s, [path])[0].served_etag(ops.stat(s, path))

    etag("/b/c.txt")  # seen by a sync client before it moves inline, keeping its ETag
    time.sleep(0.002)
    ops.move(s, "/b/c.txt", "/t/c.txt")
    names[2] = "/t/c.txt"
    before = {n: etag(n) for n in names}
    assert before["/t/c.txt"] != storage_etag(ops.stat(s, "/t/c.txt"))
    time.sleep(0.002)  # the copies' times differ from the originals'
    outcome = ops.move(s, "/t", "/b/u", budget_s=0)
    assert outcome.job is not None
    assert r.gw.dispatcher.wait(outcome.job_id, 30).state == "completed"
    for n in names:
        moved = "/b/u" + n[2:]
        assert storage_etag(ops.stat(s, moved)) != before[n]
        assert etag(moved) == before[n], moved
    # A file the table did not know gets the storage's ETag.
    assert etag("/b/u/unseen.txt") == storage_etag(ops.stat(s, "/b/u/unseen.txt"))
    # Changed after the move, through the gateway or behind it: a new ETag.
    time.sleep(0.002)
    w = ops.open_write(s, "/b/u/a.txt")
    w.write(b"/t/a.txt")
    w.commit()
    assert etag("/b/u/a.txt") == storage_etag(ops.stat(s, "/b/u/a.txt")) != before["/t/a.txt"]
    backend = r.gw.namespace.resolve("/b")[0].backend
    time.sleep(0.002)
    backend.fs.pipe_file(backend.join("u/sub/b.txt"), b"/T/sub/b.txt")
    assert etag("/b/u/sub/b.txt") == storage_etag(ops.stat(s, "/b/u/sub/b.txt")) != before["/t/sub/b.txt"]


@pytest.mark.parametrize("protocol", ["ftp", "sftp"])
def test_every_upload_has_checksums_unless_switched_off(gateway_factory, protocol):
    """``[policy] upload_checksums``: the digests of every whole upload, on
    any protocol, computed as it streams and kept; ``[]``: none."""
    data = os.urandom(200_000)
    want = f"sha1:{hashlib.sha1(data).hexdigest()} md5:{hashlib.md5(data).hexdigest()}"
    for checksums, expected in ((None, want), ([], None)):
        sections = {} if checksums is None else {"policy": {"upload_checksums": checksums}}
        r = gateway_factory(protocols=(protocol,), sections=sections)
        driver = (FtpDriver if protocol == "ftp" else SftpDriver)(r.port(protocol), "alice", PASSWORDS["alice"])
        driver.put("/up.bin", data)
        found = r.ops.file_ids(r.session(), ["/up.bin"])[0]
        assert (found.checksum, found.checksum_size) == (expected, len(data) if expected else None)
        if expected:  # md5sum over SSH, FTP HASH answer from it
            assert r.ops.hash(r.session(), "/up.bin", "md5") == hashlib.md5(data).hexdigest()
        driver.close()


def test_follow_on_sqlite_writes_the_rows_the_portable_statements_write(tmp_path):
    """FileIds.follow goes through the sqlite3 driver where this process is
    the only writer: every delete, move and copy (subtrees, neighbours whose
    names share a prefix, a kept ETag) leaves the table as SQLAlchemy's
    portable statements leave it, row for row (ids and versions too)."""
    import sqlalchemy as sa

    from gateway.fileids import FileIds, stamp
    from gateway.jobs.schema import file_ids
    from gateway.jobs.store import JobStore
    from gateway.types import Entry

    def entry(path, etag, size=3):
        return Entry(path=path, name=path.rsplit("/", 1)[-1], is_dir=False, size=size, mtime=1.0, etag=etag)

    steps = [
        ("move", "/a/f", "/a/g", entry("/a/f", "e1"), entry("/a/g", "e2")),  # by copy: ETag kept
        ("move", "/a/g", "/b/g", entry("/b/g", "e2"), entry("/b/g", "e3")),  # kept again, then the new one
        ("copy", "/a", "/c", None, None),
        ("move", "/a", "/ab2", None, None),       # /ab and /a-x share the name's start, stay put
        ("delete", "/c", None, None, None),
        ("copy", "/b/g", "/ab/g", None, None),    # replaces a row with a checksum
        ("move", "/ab", "/a-x", None, None),      # replaces a subtree
        ("delete", "/ab2/d/é.txt", None, None, None),
        ("move", "/b/g", "/b/g", None, None),     # onto itself: nothing
        ("delete", "/", None, None, None),
    ]
    tables = []
    for sole in (True, False):
        store = JobStore(f"sqlite:///{tmp_path / f'{sole}.db'}")
        try:
            clock = iter(range(1000, 10**9, 1000))
            ids = FileIds(store.engine, clock_ns=lambda: next(clock))
            ids.ids(["/", "/a", "/a/d", "/ab", "/ab/g", "/a-x", "/a-x/y", "/b", "/a/d/é.txt"])
            for p, i in (("/a/f", 1), ("/a/d/é.txt", 2), ("/ab/g", 3), ("/a/d/e", 4)):
                ids.content_changed(p, f"sha1:{i:040x}", i)
            ids._sole_writer = sole
            seen = []
            for op, src, dst, before, after in steps:
                ids.follow(op, src, dst, before, after)
                with store.engine.connect() as c:
                    seen.append(c.execute(sa.select(file_ids).order_by(file_ids.c.path)).all())
            tables.append(seen)
        finally:
            store.close()
    fast, portable = tables
    for step, a, b in zip(steps, fast, portable):
        assert a == b, step
    kept = {r.path: (r.etag, r.etag_stamp) for r in fast[0]}
    assert kept["/a/g"] == ("e1", stamp(entry("/a/g", "e2")))  # the case is exercised
    assert {r.path for r in fast[3]} >= {"/ab", "/ab/g", "/a-x", "/a-x/y", "/ab2", "/ab2/d/é.txt"}
    assert fast[-1] == []


@pytest.mark.parametrize("protocol", ["ftp", "http", "sftp"])
def test_a_large_upload_keeps_the_digests_of_its_bytes(gateway_factory, protocol):
    """A large upload's digests are computed beside its writes (other
    threads, gateway.digests); what is kept covers exactly the bytes saved,
    sent in many writes (WebDAV's reuse one buffer)."""
    data = os.urandom(8 << 20)
    r = gateway_factory(protocols=(protocol,))
    driver = {"ftp": FtpDriver, "http": DavDriver, "sftp": SftpDriver}[protocol](
        r.port(protocol), "alice", PASSWORDS["alice"])
    driver.put("/big.bin", data)
    found = r.ops.file_ids(r.session(), ["/big.bin"])[0]
    assert found.checksum == f"sha1:{hashlib.sha1(data).hexdigest()} md5:{hashlib.md5(data).hexdigest()}"
    assert found.checksum_size == len(data)
    driver.close()


@pytest.fixture
def pg_store():
    """A JobStore on a new PostgreSQL database of its own, dropped after."""
    with pg_job_store() as store:
        yield store


#: Names whose subtrees a prefix test or a range in the wrong order confuses:
#: siblings sharing the name's start, '%', '_', '\\' (LIKE's specials), case,
#: non-ASCII.
TRICKY = ["/", "/a", "/a/x", "/a/B", "/a/é", "/a/d", "/a/d/f", "/a/%_\\", "/ab", "/ab/x", "/a-b", "/a-b/x",
          "/a.b", "/a.b/x", "/A", "/A/x", "/a0", "/a%", "/a%/x", "/a_", "/a\\", "/a\\/x", "/é", "/é/ß", "/Z"]


def _under(path, root):
    return root == "/" or path == root or path.startswith(root + "/")


@pytest.mark.parametrize("kind", ["sqlite-driver", "sqlite-portable", "postgresql"])
def test_subtrees_take_exactly_their_paths_whatever_the_names(tmp_path, request, kind):
    """A delete, move or copy takes exactly the ids at and below its path,
    and a listing reads exactly the folder and its members, on SQLite
    (through the driver and through SQLAlchemy) and on PostgreSQL under a
    locale collation."""
    import sqlalchemy as sa

    from gateway.fileids import FileIds
    from gateway.jobs.schema import file_ids
    from gateway.jobs.store import JobStore

    if kind == "postgresql":
        store = request.getfixturevalue("pg_store")
    else:
        store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
        request.addfinalizer(store.close)

    def stored():
        with store.engine.connect() as c:
            return dict(c.execute(sa.select(file_ids.c.path, file_ids.c.checksum)).all())

    for root in ("/a", "/a-b", "/A", "/a%", "/a\\", "/é", "/a/d", "/"):
        for op in ("list", "delete", "move", "copy"):
            with store.engine.begin() as c:
                c.execute(file_ids.delete())
            ids = FileIds(store.engine)
            ids._sole_writer = kind == "sqlite-driver"
            for p in TRICKY:
                ids.content_changed(p, f"sha1:{p}", 1)
            original = {p: f"sha1:{p}" for p in TRICKY}
            moved = {"/moved" + p[len(root):]: f"sha1:{p}" for p in TRICKY if _under(p, root) and root != "/"}
            assert stored() == original
            if op == "list":
                members = {p for p in TRICKY if p == root or (p != "/" and p.rsplit("/", 1)[0] == root.rstrip("/"))}
                assert set(ids._read((), root)) == members, root
            elif op == "delete":
                ids.follow("delete", root, None)
                assert stored() == {p: c for p, c in original.items() if not _under(p, root)}, root
            elif op == "move" and root != "/":
                ids.follow("move", root, "/moved")
                assert stored() == {p: c for p, c in original.items() if not _under(p, root)} | moved, root
            elif op == "copy" and root != "/":
                ids.follow("copy", root, "/moved")
                assert stored() == original | moved, root


def test_subtree_statements_use_the_byte_order_indexes_on_postgresql(pg_store):
    """With many rows kept, the statements of a delete's follow-up (ids and
    dead properties) and a listing's read find their rows through an index
    on the path in byte order, not by reading the whole table."""
    import sqlalchemy as sa

    from gateway.davstate import _subtree
    from gateway.fileids import _members
    from gateway.jobs.schema import dav_props, file_ids, path_subtree

    paths = [f"/d{i}/f{j}" for i in range(100) for j in range(200)]
    with pg_store.engine.begin() as c:
        c.execute(file_ids.insert(), [{"path": p, "version": 1} for p in paths])
        c.execute(dav_props.insert(), [{"path": p, "name": "{urn:x}p", "value": "v"} for p in paths])
        c.exec_driver_sql("ANALYZE file_ids")
        c.exec_driver_sql("ANALYZE dav_props")
    statements = {
        "ix_file_ids_path_bytes": [file_ids.delete().where(path_subtree(file_ids.c.path, "/d7")),
                                   sa.select(file_ids.c.id).where(_members(file_ids.c.path, "/d7"))],
        "ix_dav_props_path_bytes": [dav_props.delete().where(_subtree(dav_props.c.path, "/d7"))],
    }
    with pg_store.engine.connect() as c:
        for index, stmts in statements.items():
            for stmt in stmts:
                compiled = stmt.compile(dialect=c.dialect)
                plan = "\n".join(r[0] for r in c.exec_driver_sql("EXPLAIN " + str(compiled), compiled.params))
                assert index in plan and "Seq Scan" not in plan, plan
        c.rollback()


def _on_disk(r, folder, *names):
    """Files made on the storage directly: the gateway gave them no id."""
    (r.data / folder.strip("/")).mkdir(parents=True, exist_ok=True)
    for name in names:
        (r.data / folder.strip("/") / name).write_bytes(b"x")


def test_deletes_where_no_id_lies_write_nothing_until_any_session_adds_one(gateway_factory):
    """Where no file or folder at, below or above a folder has an id or a
    kept checksum, an FTP DELE or SFTP remove there changes no row and is
    remembered so (no transaction per file: gateway.fileids). Any row added
    there afterwards, by another protocol or session (a sync client's
    PROPFIND, an upload keeping its checksum, a move or copy in, a job's
    commit), is seen by the very next delete: its id goes, the folder's
    version changes."""
    r = gateway_factory(protocols=("ftp", "sftp", "http"))  # local disk at /, slow memory at /slow
    ops, s = r.ops, r.session()
    fids = ops.fileids
    ops.open_write(s, "/elsewhere.txt").commit()  # the table has a row (its checksum), not near /d*
    ftp = FtpDriver(r.port("ftp"), "alice", PASSWORDS["alice"])
    sftp = SftpDriver(r.port("sftp"), "alice", PASSWORDS["alice"])
    dav = DavDriver(r.port("http"), "alice", PASSWORDS["alice"])
    try:
        # A sync client's PROPFIND gives ids to the folder and its members.
        _on_disk(r, "/d1", "a", "b", "c")
        ftp.delete("/d1/a")
        assert fids._is_clean("/d1")
        with httpx.Client(auth=("alice", PASSWORDS["alice"]), timeout=60) as c:
            res = c.request("PROPFIND", f"http://127.0.0.1:{r.port('http')}/remote.php/dav/files/alice/d1/",
                            headers={"Depth": "1"})
            assert res.status_code == 207
        version = fids.ids(["/d1"])[0].version
        assert fids.having_ids(["/d1/b", "/d1/c"]) == {"/d1/b", "/d1/c"}
        sftp.delete("/d1/b")
        assert fids.having_ids(["/d1/b", "/d1/c"]) == {"/d1/c"}
        assert fids.ids(["/d1"])[0].version > version

        # An upload through WebDAV keeps its checksum in a folder found clean by SFTP.
        _on_disk(r, "/d2", "a")
        sftp.delete("/d2/a")
        assert fids._is_clean("/d2")
        dav.put("/d2/new.txt", b"new")
        assert fids.having_ids(["/d2/new.txt"]) == {"/d2/new.txt"}
        ftp.delete("/d2/new.txt")
        assert fids.having_ids(["/d2/new.txt"]) == set()

        # A file with a row moved and copied in (inline), and a folder of them moved in as a job.
        _on_disk(r, "/d3", "a", "b")
        ftp.delete("/d3/a")
        sftp.delete("/d3/b")
        assert fids._is_clean("/d3")
        dav.put("/m.txt", b"m")
        ftp.rename("/m.txt", "/d3/m.txt")
        dav.copy("/elsewhere.txt", "/d3/e.txt")
        assert fids.having_ids(["/d3/m.txt", "/d3/e.txt"]) == {"/d3/m.txt", "/d3/e.txt"}
        sftp.delete("/d3/m.txt")
        ftp.delete("/d3/e.txt")
        assert fids.having_ids(["/d3/m.txt", "/d3/e.txt"]) == set()

        _on_disk(r, "/d4/t", "a")
        ftp.delete("/d4/t/a")
        assert fids._is_clean("/d4/t")
        ops.mkdir(s, "/slow/t")
        ops.open_write(s, "/slow/t/f.txt").commit()
        outcome = ops.move(s, "/slow/t", "/d4/t", overwrite=True, budget_s=0)
        assert outcome.job is not None and r.gw.dispatcher.wait(outcome.job_id, 60).state == "completed"
        assert fids.having_ids(["/d4/t/f.txt"]) == {"/d4/t/f.txt"}
        print("CLEAN", fids._clean, ops.view.overlays())
        sftp.delete("/d4/t/f.txt")
        assert fids.having_ids(["/d4/t/f.txt"]) == set()

        # Above the folder: an id given to an ancestor later makes its version move again.
        _on_disk(r, "/d5/sub", "a", "b")
        ftp.delete("/d5/sub/a")
        assert fids._is_clean("/d5/sub")
        top = fids.ids(["/d5"])[0].version
        ftp.delete("/d5/sub/b")
        assert fids.ids(["/d5"])[0].version > top
    finally:
        for d in (ftp, sftp, dav):
            d.close()
