"""The one path normaliser: no input escapes a user's home or reaches a
backend un-normalised."""

import posixpath
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import BadRequest
from gateway.namespace import Mount, Namespace, is_under, normalise, to_global, to_user

_parts = st.one_of(
    st.sampled_from(["..", ".", "", "a", "b", "..%2f", "\\..", "~", "é", "e\u0301", "…", "/"]),
    st.text(min_size=0, max_size=12),
)
paths = st.lists(_parts, max_size=12).map("/".join)
homes = st.sampled_from(["/", "/home/alice", "/u/bob", "/s3/x"])


@settings(max_examples=1500, deadline=None)
@given(path=paths, cwd=paths, home=homes)
def test_no_input_escapes_the_home(path, cwd, home):
    try:
        c = normalise(cwd)
        u = normalise(path, c)
    except BadRequest:
        return
    g = to_global(home, u)
    assert is_under(g, home)
    assert to_user(home, g) == u
    # normalised: absolute, no empty/dot components, idempotent, NFC, no NUL
    assert u.startswith("/")
    assert u == "/" or not u.endswith("/")
    assert all(p not in ("", ".", "..") for p in u.split("/")[1:]) or u == "/"
    assert normalise(u) == u
    assert "\x00" not in u
    assert unicodedata.normalize("NFC", u) == u
    assert posixpath.normpath(u) == u


@pytest.mark.parametrize("bad", ["a\x00b", "/x/" + "n" * 256, "/.gw-up-1", "/a/.gw-stage-x/b",
                                 b"/\xff\xfe", "/" + "a/" * 2100, "/\udcff"])
def test_bad_paths_are_bad_requests(bad):
    with pytest.raises(BadRequest):
        normalise(bad)


@pytest.mark.parametrize("raw,cwd,expected", [
    ("../../etc/passwd", "/", "/etc/passwd"),
    ("//a///b/./c/..", "/", "/a/b"),
    ("x", "/d", "/d/x"),
    ("..", "/d/e", "/d"),
    ("/", "/d", "/"),
    ("e\u0301", "/", "/\u00e9"),
    (b"/caf\xc3\xa9", "/", "/caf\u00e9"),
])
def test_normalise_examples(raw, cwd, expected):
    assert normalise(raw, cwd) == expected


class _FakeBackend:
    """Just enough of a Backend for the mount table (join only)."""

    def __init__(self, root):
        self.root = root

    def join(self, rel):
        return self.root + ("/" + rel if rel else "")


def test_longest_prefix_wins_and_mount_points_are_folders():
    ns = Namespace([Mount("/", _FakeBackend("/r")), Mount("/s3", _FakeBackend("b/p")),
                    Mount("/s3/deep/x", _FakeBackend("d"))])
    assert ns.resolve("/s3/a")[1] == "b/p/a"
    assert ns.resolve("/s3/deep/x/y")[1] == "d/y"
    assert ns.resolve("/s3deep")[1] == "/r/s3deep"
    assert ns.child_mount_names("/") == ["s3"]
    assert ns.child_mount_names("/s3") == ["deep"]
    assert ns.contains_mount_point("/s3/deep")
    assert not ns.contains_mount_point("/s3/other")


def test_virtual_folders_without_root_mount():
    ns = Namespace([Mount("/a/b", _FakeBackend("x"))])
    assert ns.is_virtual_dir("/") and ns.is_virtual_dir("/a")
    assert not ns.is_virtual_dir("/a/b")
    assert ns.child_mount_names("/") == ["a"]


def _outcome(path, cwd="/"):
    try:
        return normalise(path, cwd)
    except BadRequest as exc:
        return ("refused", str(exc))


@settings(max_examples=1500, deadline=None)
@given(path=st.one_of(paths, st.text(alphabet="/.ag-w\x00é", max_size=300)), cwd=paths)
def test_a_path_already_normal_is_answered_as_the_long_way(path, cwd):
    # A leading "//" takes normalise's long way (a short cut only takes paths
    # that need no change): both must agree, refusals included.
    if not path.startswith("/"):
        path = "/" + path
    assert _outcome(path, cwd) == _outcome("/" + path, cwd)


@pytest.mark.parametrize("path", ["/a" * 127 + "/", "/" + "n" * 254, "/" + "n" * 255, "/" + "n" * 256,
                                  "/.hidden", "/a/.gw-x", "/a\x00", "/a/./b", "/a/../b", "/a//b"])
def test_normalise_near_the_short_cut_edges(path):
    assert _outcome(path) == _outcome("/" + path)


@settings(max_examples=1000, deadline=None)
@given(path=st.one_of(paths, st.text(alphabet="/a.", max_size=12)))
def test_parent_of_is_posix_dirname(path):
    from gateway.namespace import parent_of

    assert parent_of(path) == (posixpath.dirname(path) or "/")
