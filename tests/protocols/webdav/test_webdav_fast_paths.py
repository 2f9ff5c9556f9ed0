"""The gateway's own answers to plain WebDAV requests (``[http]
webdav_fast_paths``) against wsgidav's: two gateways from the same config
and the same files, one with the fast paths and one without, are sent the
same corpus of requests, one by one, and must give the same status, headers
(but Date) and body. What legitimately differs between two servers (ETags
and times of files written during the run, lock tokens, job ids) is named
by its order of first appearance on each server, so a value still has to
come back where the other server gives back its own."""

from __future__ import annotations

import base64
import http.client
import os
import re

import pytest

from gateway.auth import hash_password
from conftest import PASSWORDS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

LOCKINFO = (b'<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
            b'</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>tests</D:owner></D:lockinfo>')
ALLPROP = b'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>'
PROPS = (b'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:" xmlns:Z="urn:z"><D:prop>'
         b'<D:resourcetype/><D:getcontentlength/><D:getetag/><D:getlastmodified/><D:displayname/>'
         b'<D:quota-used-bytes/><Z:colour/></D:prop></D:propfind>')
PROPNAME = b'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:propname/></D:propfind>'
PROPPATCH = (b'<?xml version="1.0" encoding="utf-8"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z">'
             b'<D:set><D:prop><Z:colour>blue</Z:colour></D:prop></D:set></D:propertyupdate>')

USERS = {
    "carol": {"password_hash": hash_password("carol-pw"), "permissions": ["list", "download"]},
    "dave": {"password_hash": hash_password("dave-pw"), "home": "/homes/dave"},
}
PASSWORD = {**PASSWORDS, "carol": "carol-pw", "dave": "dave-pw"}
SEEDED = 1_700_000_000  # every seeded file's time: the same ETags on both servers

#: Values two correct servers give differently, each named by its order of appearance.
_VARYING = [
    re.compile(r"opaquelocktoken:[0-9a-fx-]+"),
    re.compile(r"(?<=<ns0:timeout>)Second-[0-9]+"),  # a lock's time left (5000 or 4999: the same length)
    re.compile(r"(?<=job )[A-Za-z0-9_-]{16}"),
    re.compile(r"(?<=/monitor/)[A-Za-z0-9_.-]+"),
    re.compile(r"(?<=<ns0:getetag>)[^<]*"),
]
#: A time (getlastmodified, Last-Modified): checked for its form and masked.
#: Named by order like the values above, two times of the same second on one
#: server and a second apart on the other (the trees are made one after the
#: other) named the rest of a listing differently.
_HTTP_DATE = r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT"
_TIME = re.compile(r"(?<=<ns0:getlastmodified>)[^<]*")
#: The disk's use, which other programs change.
_QUOTA = re.compile(r"(?<=-bytes>)[0-9]+(?=</ns0:quota-)")
_VARYING_HEADERS = ("etag", "last-modified", "location", "lock-token", "oc-jobstatus-location")


class Server:
    """One gateway and the names it gave its varying values (a multistatus
    is compared as written, byte for byte but for those values)."""

    def __init__(self, running) -> None:
        self.running = running
        self.port = running.port("http")
        self.names: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        #: One kept-alive connection for every request, else one each.
        self.conn: http.client.HTTPConnection | None = None

    def name(self, value: str) -> str:
        return self.names.setdefault(value, f"~v{len(self.names)}~")

    @staticmethod
    def time(value: str) -> str:
        return "~time~" if re.fullmatch(_HTTP_DATE, value) else value

    def normal(self, text: str) -> str:
        text = _QUOTA.sub("n", text)
        text = _TIME.sub(lambda m: self.time(m.group(0)), text)
        for pattern in _VARYING:
            text = pattern.sub(lambda m: self.name(m.group(0)), text)
        return text

    def send(self, method: str, path: str, *, user: str | None = "alice", password: str | None = None,
             headers: dict | None = None, body: bytes | list[bytes] | None = None) -> tuple:
        headers = {k: v.format(**self.tokens) for k, v in (headers or {}).items()}
        if user is not None:
            secret = f"{user}:{password or PASSWORD[user]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(secret).decode()
        conn = self.conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            if isinstance(body, list):  # sent chunked
                headers["Transfer-Encoding"] = "chunked"
            elif body is not None:
                headers["Content-Length"] = str(len(body))
            for k, v in headers.items():
                conn.putheader(k, v)
            conn.endheaders(None if isinstance(body, list) else body)
            for chunk in body if isinstance(body, list) else ():
                conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            if isinstance(body, list):
                conn.send(b"0\r\n\r\n")
            r = conn.getresponse()
            data = r.read()
        finally:
            if conn is not self.conn:
                conn.close()
        kept = []
        for k, v in r.getheaders():
            k = k.lower()
            if k == "date":
                continue
            if k in _VARYING_HEADERS:
                v = self.name(v) if k == "etag" else self.time(v) if k == "last-modified" else self.normal(v)
            elif k == "content-length" and method != "HEAD":  # right; the bodies are compared (a lock
                assert int(v) == len(data), (method, path, v, len(data))  # token's length varies)
                v = "right"
            kept.append((k, v))
        text = self.normal(data.decode("utf-8", "replace"))
        return r.status, r.reason, kept, text

    def lock(self, key: str, path: str, user: str) -> None:
        """A LOCK by ``user``; its token kept as ``{key}`` for headers."""
        auth = base64.b64encode(f"{user}:{PASSWORD[user]}".encode()).decode()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request("LOCK", path, body=LOCKINFO, headers={"Authorization": "Basic " + auth, "Timeout": "Second-5000"})
        r = conn.getresponse()
        r.read()
        conn.close()
        assert r.status == 200, r.status
        self.tokens[key] = r.getheader("Lock-Token").strip("<>")


def _seed(running) -> None:
    data = running.data
    files = {"a.txt": b"hello world\n", "b.bin": bytes(range(256)) * 12, "d/f.txt": b"in d\n",
             "d/sub/g.txt": b"deep\n", "sp ace.txt": b"spaced\n", "\u00fcn\u00ef.txt": b"utf-8\n",
             "pct%41.txt": b"percent\n", "homes/dave/x.txt": b"dave's\n", "locked.txt": b"locked\n",
             "lk/in.txt": b"in a locked folder\n", "empty.txt": b""}
    for name, body in files.items():
        p = data / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(body)
    (data / "emptydir").mkdir()
    for p in sorted(data.rglob("*"), reverse=True):
        os.utime(p, (SEEDED, SEEDED))
    os.utime(data, (SEEDED, SEEDED))


@pytest.fixture
def servers(gateway_factory, tmp_path):
    def mounts(n: int) -> dict:  # a mount whose files are read at 100 kB/s
        slow = tmp_path / f"slow{n}"
        (slow / "src").mkdir(parents=True)
        (slow / "src" / "big.bin").write_bytes(bytes(1 << 20))
        for i in range(3):
            (slow / "src" / f"f{i}.txt").write_bytes(b"small\n")
        return {"/": f"file://{tmp_path / f'gw{n}' / 'data'}",
                "/slow": (f"slow::file://{slow}", {"slow": {"bytes_per_s": 100_000}})}

    fast = gateway_factory(("http",), users=USERS, mounts=mounts(0))
    plain = gateway_factory(("http",), users=USERS, mounts=mounts(1), sections={"http": {"webdav_fast_paths": False}})
    assert fast.cfg.http.webdav_fast_paths and not plain.cfg.http.webdav_fast_paths
    for running in (fast, plain):
        _seed(running)
    return Server(fast), Server(plain)


def _outside(port: int) -> str:
    return f"http://127.0.0.1:{port}"


#: (method, path, keyword arguments of Server.send); Destination headers
#: name "{host}", filled in per server.
CORPUS: list[tuple[str, str, dict]] = [
    # GET and HEAD
    ("GET", "/dav/a.txt", {}),
    ("GET", "/dav/b.bin", {}),
    ("GET", "/dav/empty.txt", {}),
    ("GET", "/dav/missing.txt", {}),
    ("GET", "/dav/a.txt/", {}),
    ("GET", "/dav/d", {}),
    ("GET", "/dav/d/", {}),
    ("GET", "/dav/sp%20ace.txt", {}),
    ("GET", "/dav/%C3%BCn%C3%AF.txt", {}),
    ("GET", "/dav/pct%2541.txt", {}),
    ("GET", "/dav/a.txt", {"user": None}),
    ("GET", "/dav/a.txt", {"password": "wrong"}),
    ("GET", "/dav/a.txt", {"user": "nobody", "password": "x"}),
    ("GET", "/dav/a.txt", {"user": "carol"}),
    ("GET", "/dav/x.txt", {"user": "dave"}),
    ("GET", "/dav/a.txt", {"user": "dave"}),
    ("GET", "/dav/a.txt", {"headers": {"If-Match": '"nope"'}}),
    ("GET", "/dav/a.txt", {"headers": {"If-None-Match": "*"}}),
    ("GET", "/dav/a.txt", {"headers": {"Range": "bytes=2-4"}}),
    ("GET", "/dav/../a.txt", {}),
    ("HEAD", "/dav/a.txt", {}),
    ("HEAD", "/dav/empty.txt", {}),
    ("HEAD", "/dav/missing.txt", {}),
    ("HEAD", "/dav/d", {}),
    ("HEAD", "/dav/d/", {}),
    ("HEAD", "/dav/a.txt/", {}),
    ("HEAD", "/dav/a.txt", {"user": None}),
    ("HEAD", "/dav/a.txt", {"user": "carol"}),
    ("HEAD", "/dav/%C3%BCn%C3%AF.txt", {}),
    # PROPFIND
    ("PROPFIND", "/dav/d/", {"headers": {"Depth": "0"}}),
    ("PROPFIND", "/dav/d/", {"headers": {"Depth": "1"}}),
    ("PROPFIND", "/dav/d", {"headers": {"Depth": "1"}}),
    ("PROPFIND", "/dav/d/", {"headers": {"Depth": "infinity"}}),
    ("PROPFIND", "/dav/d/", {}),
    ("PROPFIND", "/dav/", {"headers": {"Depth": "1"}, "body": ALLPROP}),
    ("PROPFIND", "/dav/d/", {"headers": {"Depth": "1"}, "body": PROPS}),
    ("PROPFIND", "/dav/d/", {"headers": {"Depth": "1"}, "body": PROPNAME}),
    ("PROPFIND", "/dav/d/", {"headers": {"Depth": "1"}, "body": b"<not xml"}),
    ("PROPFIND", "/dav/a.txt", {"headers": {"Depth": "0"}}),
    ("PROPFIND", "/dav/a.txt", {"headers": {"Depth": "1"}, "body": PROPS}),
    ("PROPFIND", "/dav/a.txt/", {"headers": {"Depth": "0"}}),
    ("PROPFIND", "/dav/missing/", {"headers": {"Depth": "1"}}),
    ("PROPFIND", "/dav/sp%20ace.txt", {"headers": {"Depth": "0"}}),
    ("PROPFIND", "/dav/emptydir", {"headers": {"Depth": "1"}}),
    ("PROPFIND", "/dav/d/", {"headers": {"Depth": "1"}, "user": None}),
    ("PROPFIND", "/dav/", {"headers": {"Depth": "1"}, "user": "dave"}),
    ("PROPFIND", "/dav/d/", {"headers": {"Depth": "1"}, "user": "carol"}),
    ("PROPFIND", "/dav/a.txt", {"headers": {"Depth": "0", "If-Match": '"nope"'}}),
    # PUT
    ("PUT", "/dav/new.txt", {"body": b"new file\n"}),
    ("GET", "/dav/new.txt", {}),
    ("PUT", "/dav/new.txt", {"body": b"replaced\n"}),
    ("PUT", "/dav/zero.txt", {"body": b""}),
    ("PUT", "/dav/chunked.txt", {"body": [b"abc", b"defgh", b"i" * 5000]}),
    ("GET", "/dav/chunked.txt", {}),
    ("PUT", "/dav/d", {"body": b"onto a folder"}),
    ("PUT", "/dav/d/", {"body": b"onto a folder"}),
    ("PUT", "/dav/newdir/", {"body": b"slash"}),
    ("PUT", "/dav/no/such.txt", {"body": b"x"}),
    ("PUT", "/dav/a.txt/x", {"body": b"x"}),
    ("PUT", "/dav/carol.txt", {"body": b"x", "user": "carol"}),
    ("PUT", "/dav/anon.txt", {"body": b"x", "user": None}),
    ("PUT", "/dav/bad.txt", {"body": b"x", "password": "wrong"}),
    ("PUT", "/dav/new%20sp%20ace.txt", {"body": b"spaced\n"}),
    ("PUT", "/dav/%E2%82%AC%C3%BC.txt", {"body": b"euro\n"}),
    ("PUT", "/dav/new%2525.txt", {"body": b"percent\n"}),
    ("PUT", "/dav/a.txt", {"body": b"if\n", "headers": {"If-Match": '"nope"'}}),
    ("PUT", "/dav/a.txt", {"body": b"if\n", "headers": {"If-None-Match": "*"}}),
    ("PUT", "/dav/mtime.txt", {"body": b"mtime\n", "headers": {"X-OC-Mtime": "1600000000"}}),
    ("PUT", "/dav/mtime2.txt", {"body": b"mtime\n", "headers": {"X-OC-Mtime": "soon"}}),
    ("PUT", "/dav/x2.txt", {"body": b"dave's\n", "user": "dave"}),
    # MKCOL
    ("MKCOL", "/dav/m", {}),
    ("MKCOL", "/dav/m", {}),
    ("MKCOL", "/dav/m2/", {}),
    ("MKCOL", "/dav/a.txt", {}),
    ("MKCOL", "/dav/no/m", {}),
    ("MKCOL", "/dav/mb", {"body": b"<x/>"}),
    ("MKCOL", "/dav/mc", {"user": "carol"}),
    ("MKCOL", "/dav/ma", {"user": None}),
    ("MKCOL", "/dav/m%20sp%C3%BC", {}),
    ("MKCOL", "/dav/", {}),
    # COPY
    ("COPY", "/dav/a.txt", {"headers": {"Destination": "{host}/dav/a2.txt"}}),
    ("COPY", "/dav/a.txt", {"headers": {"Destination": "{host}/dav/a2.txt", "Overwrite": "F"}}),
    ("COPY", "/dav/a.txt", {"headers": {"Destination": "{host}/dav/a2.txt", "Overwrite": "T"}}),
    ("COPY", "/dav/a.txt", {"headers": {"Destination": "/dav/a3.txt"}}),
    ("COPY", "/dav/a.txt", {"headers": {"Destination": "{host}/elsewhere/a.txt"}}),
    ("COPY", "/dav/a.txt", {"headers": {"Destination": "http://example.org/dav/a.txt"}}),
    ("COPY", "/dav/a.txt", {}),
    ("COPY", "/dav/a.txt", {"headers": {"Destination": "{host}/dav/a.txt"}}),
    ("COPY", "/dav/missing.txt", {"headers": {"Destination": "{host}/dav/m.txt"}}),
    ("COPY", "/dav/a.txt", {"headers": {"Destination": "{host}/dav/no/a.txt"}}),
    ("COPY", "/dav/d", {"headers": {"Destination": "{host}/dav/d2"}}),
    ("COPY", "/dav/d/", {"headers": {"Destination": "{host}/dav/d3/", "Depth": "0"}}),
    ("COPY", "/dav/d/", {"headers": {"Destination": "{host}/dav/d/sub/d", "Depth": "infinity"}}),
    ("COPY", "/dav/a.txt", {"headers": {"Destination": "{host}/dav/sp%20c.txt"}}),
    ("COPY", "/dav/a.txt", {"headers": {"Destination": "{host}/dav/carol.txt"}, "user": "carol"}),
    ("COPY", "/dav/a.txt", {"headers": {"Destination": "{host}/dav/anon.txt"}, "user": None}),
    ("PROPFIND", "/dav/d3/", {"headers": {"Depth": "1"}}),
    # MOVE
    ("MOVE", "/dav/a2.txt", {"headers": {"Destination": "{host}/dav/a4.txt"}}),
    ("MOVE", "/dav/a3.txt", {"headers": {"Destination": "{host}/dav/a4.txt", "Overwrite": "F"}}),
    ("MOVE", "/dav/a3.txt", {"headers": {"Destination": "{host}/dav/a4.txt", "Overwrite": "T"}}),
    ("MOVE", "/dav/a4.txt", {"headers": {"Destination": "/dav/a5.txt"}}),
    ("MOVE", "/dav/a5.txt", {"headers": {"Destination": "{host}/elsewhere/a.txt"}}),
    ("MOVE", "/dav/a5.txt", {}),
    ("MOVE", "/dav/missing.txt", {"headers": {"Destination": "{host}/dav/m.txt"}}),
    ("MOVE", "/dav/a5.txt", {"headers": {"Destination": "{host}/dav/no/a.txt"}}),
    ("MOVE", "/dav/d2", {"headers": {"Destination": "{host}/dav/d4"}}),
    ("MOVE", "/dav/d4/", {"headers": {"Destination": "{host}/dav/d4/in"}}),
    ("MOVE", "/dav/d4/", {"headers": {"Destination": "{host}/dav/d5/", "Depth": "0"}}),
    ("MOVE", "/dav/sp%20c.txt", {"headers": {"Destination": "{host}/dav/%C3%BC%20c.txt"}}),
    ("MOVE", "/dav/a.txt", {"headers": {"Destination": "{host}/dav/carol.txt"}, "user": "carol"}),
    ("MOVE", "/dav/a5.txt", {"headers": {"Destination": "{host}/dav/a6.txt", "If-Match": '"nope"'}}),
    # DELETE
    ("DELETE", "/dav/a5.txt", {}),
    ("DELETE", "/dav/a5.txt", {}),
    ("DELETE", "/dav/d4/", {}),
    ("DELETE", "/dav/d4", {}),
    ("DELETE", "/dav/m2", {}),
    ("DELETE", "/dav/new.txt/", {}),
    ("DELETE", "/dav/%C3%BC%20c.txt", {}),
    ("DELETE", "/dav/b.bin", {"user": "carol"}),
    ("DELETE", "/dav/b.bin", {"user": None}),
    ("DELETE", "/dav/b.bin", {"headers": {"If-Match": '"nope"'}}),
    ("DELETE", "/dav/b.bin", {"headers": {"Depth": "0"}}),
    ("DELETE", "/dav/", {}),
    ("PROPFIND", "/dav/", {"headers": {"Depth": "1"}}),
]

#: Sent while a job copies /slow/src to /dst: its paths are busy.
BUSY: list[tuple[str, str, dict]] = [
    ("PUT", "/dav/dst/x.txt", {"body": b"x"}),
    ("PUT", "/dav/slow/src/f0.txt", {"body": b"x"}),
    ("GET", "/dav/slow/src/f0.txt", {}),
    ("HEAD", "/dav/slow/src/f0.txt", {}),
    ("PROPFIND", "/dav/slow/src/", {"headers": {"Depth": "1"}}),
    ("DELETE", "/dav/slow/src/f1.txt", {}),
    ("DELETE", "/dav/dst", {}),
    ("MKCOL", "/dav/dst", {}),
    ("MKCOL", "/dav/dst/m", {}),
    ("MOVE", "/dav/slow/src/f2.txt", {"headers": {"Destination": "{host}/dav/slow/f2.txt"}}),
    ("MOVE", "/dav/a.txt", {"headers": {"Destination": "{host}/dav/dst/a.txt"}}),
    ("COPY", "/dav/slow/src/f2.txt", {"headers": {"Destination": "{host}/dav/dst/f2.txt"}}),
    ("COPY", "/dav/slow/src/f2.txt", {"headers": {"Destination": "{host}/dav/slow/f2.txt"}}),
]

#: Sent while bob holds locks on /locked.txt and /lk (Depth infinity).
LOCKED: list[tuple[str, str, dict]] = [
    ("GET", "/dav/locked.txt", {}),
    ("HEAD", "/dav/locked.txt", {}),
    ("PROPFIND", "/dav/locked.txt", {"headers": {"Depth": "0"}}),
    ("PROPFIND", "/dav/lk/", {"headers": {"Depth": "1"}}),
    ("PROPFIND", "/dav/d/", {"headers": {"Depth": "1"}}),
    ("PUT", "/dav/locked.txt", {"body": b"x"}),
    ("PUT", "/dav/lk/new.txt", {"body": b"x"}),
    ("PUT", "/dav/free.txt", {"body": b"free"}),
    ("PUT", "/dav/locked.txt", {"body": b"mine", "user": "bob", "headers": {"If": "(<{file}>)"}}),
    ("PUT", "/dav/locked.txt", {"body": b"theirs", "headers": {"If": "(<{file}>)"}}),
    ("DELETE", "/dav/locked.txt", {}),
    ("DELETE", "/dav/lk/in.txt", {}),
    ("DELETE", "/dav/free.txt", {}),
    ("MKCOL", "/dav/lk/m", {}),
    ("MKCOL", "/dav/free", {}),
    ("MOVE", "/dav/locked.txt", {"headers": {"Destination": "{host}/dav/l2.txt"}}),
    ("MOVE", "/dav/free", {"headers": {"Destination": "{host}/dav/lk/free"}}),
    ("COPY", "/dav/d/f.txt", {"headers": {"Destination": "{host}/dav/lk/f.txt"}}),
    ("COPY", "/dav/d/f.txt", {"headers": {"Destination": "{host}/dav/free/f.txt"}}),
    ("COPY", "/dav/locked.txt", {"headers": {"Destination": "{host}/dav/free/l.txt"}}),
    ("PROPPATCH", "/dav/free/f.txt", {"body": PROPPATCH}),
    ("UNLOCK", "/dav/locked.txt", {"user": "bob", "headers": {"Lock-Token": "<{file}>"}}),
    ("PUT", "/dav/locked.txt", {"body": b"unlocked"}),
    ("PROPFIND", "/dav/free/", {"headers": {"Depth": "1"}, "body": PROPS}),
    ("OPTIONS", "/dav/", {}),
]


def _compare(fast: Server, plain: Server, corpus: list[tuple[str, str, dict]]) -> list[int]:
    """The statuses of ``corpus``, each the same from both servers."""
    differences, statuses = [], []
    for method, path, kwargs in corpus:
        replies = []
        for server in (fast, plain):
            headers = {k: v.replace("{host}", _outside(server.port)) for k, v in kwargs.get("headers", {}).items()}
            replies.append(server.send(method, path, **{**kwargs, "headers": headers}))
        if replies[0] != replies[1]:
            differences.append((method, path, kwargs, *replies))
        statuses.append(replies[0][0])
    assert not differences, "\n\n".join(map(repr, differences))
    return statuses


def test_plain_requests_answer_as_wsgidav(servers):
    fast, plain = servers
    _compare(fast, plain, CORPUS)
    assert _tree(fast.running.data) == _tree(plain.running.data)


def test_a_kept_alive_connection_is_answered_as_by_wsgidav(servers):
    """The same requests one after another on one connection per server:
    neither closes it where the other keeps it (a Connection header would
    differ, and a closed connection fails the next request)."""
    fast, plain = servers
    for server in servers:
        server.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    kept = [(m, p, k) for m, p, k in CORPUS if k.get("user", "alice") == "alice" and "password" not in k]
    try:
        statuses = _compare(fast, plain, kept)
    finally:
        for server in servers:
            server.conn.close()
    assert 201 in statuses and 207 in statuses and 404 in statuses


def test_busy_paths_answer_as_wsgidav(servers):
    fast, plain = servers
    for server in servers:  # the job reads /slow/src/big.bin for ten seconds
        session = server.running.session("alice", "webdav")
        outcome = server.running.ops.copy(session, "/slow/src", "/dst", budget_s=0)
        assert outcome.backgrounded
    statuses = _compare(fast, plain, BUSY)
    assert statuses[1] == 423  # the job still ran


def test_locked_paths_answer_as_wsgidav(servers):
    fast, plain = servers
    for server in servers:
        server.lock("file", "/dav/locked.txt", "bob")
        server.lock("folder", "/dav/lk", "bob")
    _compare(fast, plain, LOCKED)
    assert _tree(fast.running.data) == _tree(plain.running.data)


def _tree(root) -> dict:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))
            if ".gateway" not in p.parts}


def test_a_big_listing_is_written_as_by_wsgidav(servers):
    """A folder of more than one chunk of members (sent chunked by the fast
    path, whole by wsgidav), allprop asked with no body and with one: the
    same multistatus, ETags and times included (the same files, made with
    the same times on both servers): the fast path writes most of these
    members from fragments of its own."""
    names = [f"f{i:03d}{ext}" for i, ext in zip(range(300), [".txt", "", ".tar.gz", ".JPG", ".md", ".bin"] * 50)]
    names += ["x&y.txt", "sp ace.txt", "\u00fcn\u00ef.txt", "pct%41.txt", "it's (1).pdf", "dir0", "dir1"]
    # Content types that depend on more than the lowered suffix (mimetypes: no suffix for a name
    # that starts with a dot; an encoding suffix is case-sensitive and looks at the suffix before).
    names += [".txt", "arc.tar.gz", "arc.TAR.GZ", "one.gz", "up.TXT", "c:d.txt"]
    for server in servers:
        big = server.running.data / "big"
        big.mkdir()
        for i, name in enumerate(names):
            p = big / name
            if name.startswith("dir"):
                p.mkdir()
            else:
                p.write_bytes(b"x" * (i % 7))
            os.utime(p, (SEEDED, SEEDED + i * 0.37))
        os.utime(big, (SEEDED, SEEDED))
    for body in (None, ALLPROP):
        replies = []
        for server in servers:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            auth = base64.b64encode(f"alice:{PASSWORD['alice']}".encode()).decode()
            conn.request("PROPFIND", "/dav/big/", body=body, headers={"Depth": "1", "Authorization": "Basic " + auth})
            r = conn.getresponse()
            replies.append((r.status, _QUOTA.sub("n", r.read().decode())))
            conn.close()
        assert replies[0] == replies[1]
        assert replies[0][0] == 207 and replies[0][1].count("<ns0:response>") == len(names) + 1
