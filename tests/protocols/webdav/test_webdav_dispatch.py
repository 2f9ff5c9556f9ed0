"""The dispatcher in front of wsgidav (protocols.webdav.dispatch): a refused
request is one operation line however many layers looked at it, and a
kept-alive connection's login is remembered without hiding a change of the
user or a ban from its next request."""

from __future__ import annotations

import base64
import http.client

import pytest

from gateway.auth import hash_password
from conftest import PASSWORDS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

USERS = {
    "carol": {"password_hash": hash_password("carol-pw"), "permissions": ["list", "download"]},
    "lister": {"password_hash": hash_password("lister-pw"), "permissions": ["list"]},
}
PASSWORD = {**PASSWORDS, "carol": "carol-pw", "lister": "lister-pw"}


def _send(conn: http.client.HTTPConnection, method: str, path: str, user: str, password: str | None = None,
          headers: dict | None = None, body: bytes | None = None) -> int:
    secret = base64.b64encode(f"{user}:{password or PASSWORD[user]}".encode()).decode()
    conn.request(method, path, body=body, headers={"Authorization": "Basic " + secret, **(headers or {})})
    r = conn.getresponse()
    r.read()
    return r.status


#: Refused requests, each before anything changed: (user, method, path, headers, body, status).
#: Some the core refuses (wsgidav, asked again, would ask the core again),
#: some wsgidav refuses itself before asking the core.
REFUSED = [
    ("lister", "GET", "/dav/a.txt", {}, None, 403),
    ("alice", "GET", "/dav/missing.txt", {}, None, 404),
    ("carol", "PUT", "/dav/new.txt", {}, b"x", 403),
    ("alice", "PUT", "/dav/no/such.txt", {}, b"x", 409),
    ("carol", "MKCOL", "/dav/m", {}, None, 403),
    ("alice", "MKCOL", "/dav/d", {}, None, 405),
    ("carol", "DELETE", "/dav/a.txt", {}, None, 403),
    ("alice", "DELETE", "/dav/missing.txt", {}, None, 404),
    ("carol", "MOVE", "/dav/a.txt", {"Destination": "/dav/b.txt"}, None, 403),
    ("alice", "MOVE", "/dav/missing.txt", {"Destination": "/dav/b.txt"}, None, 404),
    ("alice", "MOVE", "/dav/a.txt", {"Destination": "/dav/d/f.txt", "Overwrite": "F"}, None, 412),
    ("carol", "COPY", "/dav/a.txt", {"Destination": "/dav/b.txt"}, None, 403),
    ("alice", "COPY", "/dav/missing.txt", {"Destination": "/dav/b.txt"}, None, 404),
    ("alice", "COPY", "/dav/a.txt", {"Destination": "/dav/d/f.txt", "Overwrite": "F"}, None, 412),
]


def test_a_refused_request_is_one_operation_line(gateway_factory, op_log):
    """With ``[logging] audit`` (downloads are lines too): the login and the
    refusal, once each, though the dispatcher's fast path asked the core and
    wsgidav answered (in its words when its own checks refuse)."""
    running = gateway_factory(("http",), users=USERS, sections={"logging": {"audit": True}})
    (running.data / "d").mkdir()
    (running.data / "d" / "f.txt").write_bytes(b"f\n")
    (running.data / "a.txt").write_bytes(b"a\n")
    conn = http.client.HTTPConnection("127.0.0.1", running.port("http"), timeout=30)
    wrong = []
    try:
        for user, method, path, headers, body, status in REFUSED:
            op_log.take()
            got = _send(conn, method, path, user, headers=headers, body=body)
            lines = [(op["op"], op["result"].split(":")[0]) for op in op_log.take()]
            if got != status or lines[:1] != [("login", "ok")] or len(lines) != 2 or lines[1][1] != "error":
                wrong.append((user, method, path, got, lines))
    finally:
        conn.close()
    assert not wrong, "\n".join(map(repr, wrong))
