"""The dispatcher in front of wsgidav (protocols.webdav.dispatch): a refused
request is one operation line however many layers looked at it, and a
kept-alive connection's login is remembered without hiding a change of the
user or a ban from its next request."""

from __future__ import annotations

import base64
import http.client
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.auth import hash_password
from gateway.config import UserConfig
from conftest import PASSWORDS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

USERS = {
    "carol": {"password_hash": hash_password("carol-pw"), "permissions": ["list", "download"]},
    "lister": {"password_hash": hash_password("lister-pw"), "permissions": ["list"]},
    "getter": {"password_hash": hash_password("getter-pw"), "permissions": ["download"]},
}
REPO = Path(__file__).resolve().parents[3]
PASSWORD = {**PASSWORDS, "carol": "carol-pw", "lister": "lister-pw", "getter": "getter-pw"}


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
    ("getter", "PROPFIND", "/dav/d/", {"Depth": "1"}, None, 403),
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


@pytest.fixture
def kept(gateway_factory):
    """A gateway with a stored user ``erin`` (the CLI may change her) and one
    kept-alive connection to it."""
    running = gateway_factory(("http",), users=USERS, sections={"auth": {"max_failures": 2}})
    running.gw.auth.add_user(UserConfig(name="erin", password_hash=hash_password("erin-pw")))
    (running.data / "a.txt").write_bytes(b"a\n")
    conn = http.client.HTTPConnection("127.0.0.1", running.port("http"), timeout=30)
    yield running, conn
    conn.close()


def _logins(caplog) -> int:
    """Password checks (argon2) since the last call."""
    n = sum(1 for r in caplog.records if r.name == "gateway.auth" and r.getMessage().startswith("login ok"))
    caplog.clear()
    return n


def test_a_kept_alive_connection_checks_its_password_once(kept, caplog):
    running, conn = kept
    caplog.set_level(logging.INFO, "gateway.auth")
    assert [_send(conn, "GET", "/dav/a.txt", "erin", "erin-pw") for _ in range(3)] == [200] * 3
    assert _logins(caplog) == 1
    running.gw.logins.max_entries = 1  # bob's login pushes erin's out of the cache: the connection kept it
    other = http.client.HTTPConnection("127.0.0.1", running.port("http"), timeout=30)
    try:
        assert _send(other, "GET", "/dav/a.txt", "bob") == 200
        assert _logins(caplog) == 1
        assert _send(conn, "GET", "/dav/a.txt", "erin", "erin-pw") == 200
        assert _logins(caplog) == 0
        assert _send(other, "GET", "/dav/a.txt", "erin", "erin-pw") == 200  # a new connection checks it
        assert _logins(caplog) == 1
    finally:
        other.close()


def _passwd_by_cli(running, name: str, password: str) -> None:
    """``gateway user passwd`` in its own process, as an administrator runs it."""
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "user", "passwd", name, "--password-stdin",
                          "--config", str(running.tmp / "gateway.toml")], input=password + "\n",
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("how", ["cli", "authenticator"])
def test_a_changed_password_holds_from_the_next_request(kept, how):
    running, conn = kept
    assert [_send(conn, "GET", "/dav/a.txt", "erin", "erin-pw") for _ in range(2)] == [200, 200]
    if how == "cli":
        _passwd_by_cli(running, "erin", "new-pw")
    else:
        running.gw.auth.update_user("erin", lambda u: setattr(u, "password_hash", hash_password("new-pw")))
    assert _send(conn, "GET", "/dav/a.txt", "erin", "erin-pw") == 401
    assert _send(conn, "GET", "/dav/a.txt", "erin", "new-pw") == 200
    assert _send(conn, "GET", "/dav/a.txt", "erin", "new-pw") == 200


def test_a_removed_user_is_refused_from_the_next_request(kept):
    running, conn = kept
    assert [_send(conn, "GET", "/dav/a.txt", "erin", "erin-pw") for _ in range(2)] == [200, 200]
    running.gw.auth.remove_user("erin")
    assert _send(conn, "GET", "/dav/a.txt", "erin", "erin-pw") == 401


def test_a_banned_address_is_refused_from_the_next_request(kept):
    running, conn = kept
    assert [_send(conn, "GET", "/dav/a.txt", "erin", "erin-pw") for _ in range(2)] == [200, 200]
    other = http.client.HTTPConnection("127.0.0.1", running.port("http"), timeout=30)
    try:  # two wrong passwords from this address (max_failures = 2) ban it
        assert [_send(other, "GET", "/dav/a.txt", "erin", "wrong") for _ in range(2)] == [401, 401]
    finally:
        other.close()
    assert _send(conn, "GET", "/dav/a.txt", "erin", "erin-pw") == 429


def test_a_cleared_cache_holds_from_the_next_request(kept, caplog):
    """Another node changed the users (the bus): what the connection kept is
    checked again."""
    running, conn = kept
    caplog.set_level(logging.INFO, "gateway.auth")
    assert [_send(conn, "GET", "/dav/a.txt", "erin", "erin-pw") for _ in range(2)] == [200, 200]
    assert _logins(caplog) == 1
    running.gw.logins.clear()
    assert _send(conn, "GET", "/dav/a.txt", "erin", "erin-pw") == 200
    assert _logins(caplog) == 1
