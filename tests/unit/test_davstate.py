"""gateway.davstate: WebDAV locks and dead properties in the job store's database."""

import pytest
import sqlalchemy as sa

from conftest import pg_job_store
from gateway import errors as E
from gateway.davstate import DavState
from gateway.jobs.schema import dav_props
from gateway.jobs.store import JobStore
from gateway.types import Session
from gateway.users import User


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
        yield s
        s.close()
        return
    with pg_job_store() as s:
        yield s


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture(params=["direct", "per-request"])
def state(request, store, clock):
    """Every behaviour holds the same inside DavState.request(): reads come
    from the snapshot and every write drops it."""
    s = DavState(store.engine, clock)
    if request.param == "direct":
        yield s
        return
    with s.request():
        yield s


def test_keys_are_global_paths():
    alice, dave = Session(User("alice"), "t"), Session(User("dave", home="/homes/dave"), "t")
    assert DavState.key(alice, "/x/../y/") == "/y"
    assert DavState.key(dave, "/x") == "/homes/dave/x"
    assert DavState.key(dave, "/") == "/homes/dave"
    assert DavState.user_path(dave, "/homes/dave/x") == "/x"
    assert DavState.user_path(dave, "/homes/dave") == "/"
    assert DavState.user_path(dave, "/elsewhere") is None
    with pytest.raises(E.BadRequest):
        DavState.key(alice, "/.gw-stage")


def test_locks_expire_and_list_by_subtree(state, clock):
    state.put_lock("t1", "/a", {"token": "t1", "n": 1}, clock.now + 10)
    state.put_lock("t2", "/a/b/c", {"token": "t2"}, clock.now + 100)
    state.put_lock("t3", "/ab", {"token": "t3"}, clock.now + 100)
    state.put_lock("t4", "/a%_", {"token": "t4"}, clock.now + 100)
    state.put_lock("t6", "/A/b", {"token": "t6"}, clock.now + 100)
    assert state.get_lock("t1") == {"token": "t1", "n": 1}
    assert [d["token"] for d in state.locks("/a")] == ["t1"]
    assert [d["token"] for d in state.locks("/a", include_root=False, include_children=True)] == ["t2"]
    assert [d["token"] for d in state.locks("/a", include_children=True)] == ["t1", "t2"]
    assert {d["token"] for d in state.locks("/", include_children=True)} == {"t1", "t2", "t3", "t4", "t6"}
    state.put_lock("t1", "/a", {"token": "t1", "n": 2}, clock.now + 10)
    assert state.get_lock("t1")["n"] == 2
    clock.now += 50
    assert state.locks("/a") == []
    assert state.get_lock("t1") is None
    assert state.delete_lock("t1") is False  # purged by the get above
    assert state.purge_expired_locks() == 0
    clock.now += 100
    assert state.purge_expired_locks() == 4
    state.put_lock("t5", "/z", {}, clock.now + 1)
    state.clear_locks()
    assert state.get_lock("t5") is None


def test_properties_copy_move_and_remove_by_subtree(state):
    state.set_prop("/a", "{urn:x}p", "<p>1</p>")
    state.set_prop("/a", "{urn:x}p", "<p>2</p>")
    state.set_prop("/a/f", "{urn:x}q", "<q/>")
    state.set_prop("/ab", "{urn:x}r", "<r/>")
    assert state.props("/a") == {"{urn:x}p": "<p>2</p>"}
    assert state.prop("/a/f", "{urn:x}q") == "<q/>"
    assert state.prop("/a/f", "{urn:x}nope") is None

    state.set_prop("/b/old", "{urn:x}gone", "<g/>")
    state.copy_props("/a", "/b")
    assert state.props("/b") == {"{urn:x}p": "<p>2</p>"}
    assert state.props("/b/f") == {"{urn:x}q": "<q/>"}
    assert state.props("/b/old") == {}  # the destination's own properties went with it
    assert state.props("/a/f") == {"{urn:x}q": "<q/>"}

    state.move_props("/b", "/c")
    assert state.props("/b") == {} and state.props("/b/f") == {}
    assert state.props("/c/f") == {"{urn:x}q": "<q/>"}

    state.copy_props("/a", "/d", recursive=False)
    assert state.props("/d") == {"{urn:x}p": "<p>2</p>"} and state.props("/d/f") == {}

    state.remove_prop("/a", "{urn:x}p")
    assert state.props("/a") == {}
    state.remove_props("/a")
    assert state.props("/a/f") == {}
    assert state.props("/ab") == {"{urn:x}r": "<r/>"}


#: Names whose subtrees a prefix test or a range in the wrong order confuses:
#: siblings sharing the name's start, '%', '_', '\\' (LIKE's specials), case,
#: non-ASCII.
TRICKY = ["/a", "/a/x", "/a/B", "/a/é", "/a/d", "/a/d/f", "/a/%_\\", "/ab", "/ab/x", "/a-b", "/a-b/x",
          "/a.b", "/a.b/x", "/A", "/A/x", "/a0", "/a%", "/a%/x", "/a_", "/a\\", "/a\\/x", "/é", "/é/ß", "/Z"]


def _under(path, root):
    return root == "/" or path == root or path.startswith(root + "/")


@pytest.mark.parametrize("root", ["/a", "/a-b", "/A", "/a%", "/a\\", "/é", "/a/d", "/"])
def test_subtrees_take_exactly_their_paths_whatever_the_names(state, root):
    """Removing, moving, copying and listing a subtree touch exactly the
    paths at and below it (and a folder's listing exactly its members),
    on PostgreSQL under a locale collation too."""
    def stored():
        with state.engine.connect() as c:
            return dict(c.execute(sa.select(dav_props.c.path, dav_props.c.value)).all())

    def moved(to):
        return {to + p[len(root.rstrip("/")):]: p for p in TRICKY if _under(p, root)}

    for step in ("members", "remove", "move", "copy"):
        for p in TRICKY:
            state.set_prop(p, "{urn:x}p", p)
        if step == "members":  # a request reads each folder's members at once
            if state._snapshot() is None:
                with state.request():
                    assert {p for p in TRICKY if state.props(p) == {"{urn:x}p": p}} == set(TRICKY)
            if root != "/":
                state.remove_prop(root, "{urn:x}p")
                assert state.any_props(root) == any(p.rsplit("/", 1)[0] == root for p in TRICKY)
                assert not state.any_props(root + "x")
        elif step == "remove":
            state.remove_props(root)
            assert stored() == {p: p for p in TRICKY if not _under(p, root)}
        elif step == "move" and root != "/":
            state.move_props(root, "/moved")
            assert stored() == {p: p for p in TRICKY if not _under(p, root)} | moved("/moved")
        elif step == "copy" and root != "/":
            state.copy_props(root, "/copied")
            assert stored() == {p: p for p in TRICKY} | moved("/copied")
        state.remove_props("/")
        assert stored() == {}


def test_a_request_reads_a_folder_listing_in_two_queries(store, clock):
    state = DavState(store.engine, clock)
    for i in range(50):
        state.set_prop(f"/big/f{i}", "{urn:x}p", f"<p>{i}</p>")
    state.set_prop("/big/f1/deeper", "{urn:x}p", "<deep/>")
    state.put_lock("t1", "/big/f7", {"token": "t1"}, clock.now + 10)
    queries = []
    sa.event.listen(store.engine, "before_cursor_execute", lambda *a: a[2].startswith("SELECT") and queries.append(a[2]))
    with state.request():
        for i in range(50):  # what a Depth 1 PROPFIND asks per member
            assert state.props(f"/big/f{i}") == {"{urn:x}p": f"<p>{i}</p>"}
            assert [d["token"] for d in state.locks(f"/big/f{i}")] == (["t1"] if i == 7 else [])
        assert state.props("/big/none") == {}
        assert len(queries) == 2
        state.set_prop("/big/f3", "{urn:x}p", "<new/>")  # a write in the request is read back
        assert state.prop("/big/f3", "{urn:x}p") == "<new/>"
        assert state.props("/big/f1/deeper") == {"{urn:x}p": "<deep/>"}
        assert state.props("/") == {}
    state.set_prop("/big/f4", "{urn:x}p", "<later/>")  # the next request sees other writes
    with state.request():
        assert state.prop("/big/f4", "{urn:x}p") == "<later/>"


def test_locks_are_read_once_across_requests_on_sqlite_until_one_is_written(store, clock):
    state = DavState(store.engine, clock)
    state.put_lock("t1", "/a", {"token": "t1"}, clock.now + 10)
    queries = []
    sa.event.listen(store.engine, "before_cursor_execute",
                    lambda *a: "dav_locks" in a[2] and a[2].startswith("SELECT") and queries.append(a[2]))
    for _ in range(3):
        with state.request():
            assert [d["token"] for d in state.locks("/a")] == ["t1"]
    assert len(queries) == (1 if store.sqlite else 3)  # PostgreSQL may have other writers
    state.put_lock("t2", "/a/b", {"token": "t2"}, clock.now + 10)
    with state.request():
        assert [d["token"] for d in state.locks("/a", include_children=True)] == ["t1", "t2"]
    clock.now += 20  # expiry holds without a write
    with state.request():
        assert state.locks("/a", include_children=True) == []


def test_a_lock_bars_changes_as_wsgidav_judges_them(state, clock):
    """On the path any lock; from above only depth infinity; below only for
    a change of the whole tree; never its owner sending its token."""
    state.put_lock("t0", "/doc/f", {"token": "t0", "principal": "alice", "depth": "0"}, clock.now + 10)
    state.put_lock("ti", "/tree", {"token": "ti", "principal": "alice", "depth": "infinity"}, clock.now + 10)
    state.put_lock("td", "/flat", {"token": "td", "principal": "bob", "depth": "0"}, clock.now + 10)

    def bar(path: str, **kw) -> str | None:
        found = state.barring(path, **kw)
        return None if found is None else found[1]["token"]

    assert bar("/doc/f") == "t0" and bar("/doc/f", principal="alice", tokens={"t0"}) is None
    assert bar("/doc/f", principal="bob", tokens={"t0"}) == "t0"  # a token without its owner
    assert bar("/doc") is None and bar("/doc", tree=True) == "t0" and bar("/", tree=True) is not None
    assert bar("/doc/f2") is None and bar("/doc/fx", tree=True) is None
    assert bar("/tree/a/b") == "ti" and bar("/tree") == "ti" and bar("/treetop") is None
    assert bar("/flat/member") is None and bar("/flat") == "td"  # depth 0: the folder, not its members' content
    clock.now += 20
    assert bar("/doc/f") is None and bar("/", tree=True) is None


def test_no_lock_no_query(store, clock):
    """While nothing is locked (or the list is fresh), a change is checked in memory."""
    state = DavState(store.engine, clock)
    state.barring("/x")
    queries = []
    sa.event.listen(store.engine, "before_cursor_execute",
                    lambda *a: "dav_locks" in a[2] and queries.append(a[2]))
    for _ in range(100):
        assert state.barring("/x", tree=True) is None
    assert len(queries) == 0 if store.sqlite else len(queries) < 100  # PostgreSQL: read again after LOCKS_TTL_S


def test_properties_cost_no_query_on_sqlite_until_one_is_set(store, clock):
    state = DavState(store.engine, clock)
    queries = []
    sa.event.listen(store.engine, "before_cursor_execute",
                    lambda *a: "dav_props" in a[2] and a[2].startswith("SELECT") and queries.append(a[2]))
    for _ in range(3):  # what each PROPFIND of a folder asks
        with state.request():
            assert not state.any_props("/f") and state.props("/f/x") == {}
        assert state.prop("/f/x", "{urn:x}p") is None
    assert len(queries) == (1 if store.sqlite else 9)  # PostgreSQL may have other writers
    state.set_prop("/f/x", "{urn:x}p", "<p/>")
    with state.request():
        assert state.any_props("/f") and state.props("/f/x") == {"{urn:x}p": "<p/>"}
    assert state.prop("/f/x", "{urn:x}p") == "<p/>"


def test_lock_checks_outside_a_request_read_the_kept_list_on_sqlite(store, clock):
    state = DavState(store.engine, clock)
    state.put_lock("t1", "/a/b", {"token": "t1"}, clock.now + 10)
    queries = []
    sa.event.listen(store.engine, "before_cursor_execute",
                    lambda *a: "dav_locks" in a[2] and a[2].startswith("SELECT") and queries.append(a[2]))
    for i in range(3):  # what each file delete of an FTP or SFTP client asks
        assert state.locks(f"/x/f{i}", include_children=True) == []
        assert [d["token"] for d in state.locks("/a", include_children=True)] == ["t1"]
    assert len(queries) == (1 if store.sqlite else 6)
    state.delete_lock("t1")  # a write is seen at once
    assert state.locks("/a", include_children=True) == []
    state.put_lock("t2", "/a", {"token": "t2"}, clock.now + 10)
    assert [d["token"] for d in state.locks("/a")] == ["t2"]
    clock.now += 20  # expiry holds without a write
    assert state.locks("/a") == []
