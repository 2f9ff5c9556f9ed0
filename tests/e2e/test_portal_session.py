"""The portal's browser session over plain HTTP (httpx): login, bans, the
cookie's flags, CSRF on state-changing requests, logout, and the static
files' safety (no outside URLs, no HTML-parsing DOM calls)."""

from __future__ import annotations

import importlib.resources
import re

import httpx
import pytest

from conftest import PASSWORDS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

COOKIE = "gw_portal"


@pytest.fixture
def portal(gateway_factory):
    r = gateway_factory(protocols=("http",), sections={"auth": {"max_failures": 3, "window_s": 60, "ban_s": 60}})
    r.base = f"http://127.0.0.1:{r.port('http')}"
    return r


@pytest.fixture
def login():
    """``login(base, user, **client_kw)`` → (client holding the cookie, login reply)."""
    clients: list[httpx.Client] = []

    def log_in(base: str, user: str = "alice", **kw) -> tuple[httpx.Client, httpx.Response]:
        c = httpx.Client(base_url=base, timeout=30, **kw)
        clients.append(c)
        return c, c.post("/ui/login", json={"user": user, "password": PASSWORDS[user]})

    yield log_in
    for c in clients:
        c.close()


def test_login_sets_a_strict_httponly_cookie_and_returns_a_csrf_token(portal, login):
    c, resp = login(portal.base)
    assert resp.status_code == 200
    body = resp.json()
    assert body["user"] == "alice" and body["admin"] is False and len(body["csrf"]) >= 32
    assert "/slow" in body["mounts"]
    cookie = resp.headers["set-cookie"]
    attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "path"} <= attrs
    assert re.search(r"(?i)samesite=strict", cookie) and re.search(r"(?i)path=/(;|$)", cookie)
    assert "secure" not in attrs  # plain HTTP: a Secure cookie would never come back
    assert body["csrf"] not in cookie
    assert "no-store" in resp.headers["cache-control"]
    # The session answers /ui/session (which never tells the token) and the REST API.
    session = c.get("/ui/session").json()
    assert session["user"] == "alice" and "csrf" not in session and body["csrf"] not in str(session)
    assert c.get("/api/v1/fs/list", params={"path": "/"}).status_code == 200


def test_cookie_is_secure_over_tls(gateway_factory, login):
    r = gateway_factory(protocols=("http",), sections={"http": {"tls": True}})
    c, resp = login(f"https://127.0.0.1:{r.port('http')}", verify=False)
    assert resp.status_code == 200
    assert re.search(r"(?i);\s*secure(;|$)", resp.headers["set-cookie"])


def test_bad_password_then_ban(portal):
    with httpx.Client(base_url=portal.base, timeout=30) as c:
        bad = c.post("/ui/login", json={"user": "alice", "password": "wrong"})
        assert bad.status_code == 401 and bad.json()["error"] == "login incorrect"
        assert "set-cookie" not in bad.headers
        assert c.post("/ui/login", json={"user": "nobody", "password": "x"}).status_code == 401
        assert c.post("/ui/login", json={"user": "alice"}).status_code == 400
        assert c.post("/ui/login", json={"user": "bob", "password": "wrong"}).status_code == 401  # third: banned
        banned = c.post("/ui/login", json={"user": "alice", "password": PASSWORDS["alice"]})
        assert banned.status_code == 429 and "too many failed logins" in banned.json()["error"]
        assert "set-cookie" not in banned.headers


def test_form_login_redirects_to_the_page_but_not_from_another_site(portal):
    form = {"user": "bob", "password": PASSWORDS["bob"]}
    with httpx.Client(base_url=portal.base, timeout=30) as c:
        foreign = c.post("/ui/login", data=form, headers={"Origin": "http://evil.example"})
        assert foreign.status_code == 403 and "set-cookie" not in foreign.headers
        resp = c.post("/ui/login", data=form, headers={"Origin": portal.base})
        assert resp.status_code == 303 and resp.headers["location"] == "/ui/"
        assert c.get("/ui/session").json()["user"] == "bob"


def test_csrf_is_required_on_state_changing_cookie_requests(portal, login):
    c, resp = login(portal.base)
    csrf = resp.json()["csrf"]
    for headers in ({}, {"X-CSRF-Token": "forged"}, {"X-CSRF-Token": ""}):
        denied = c.post("/api/v1/fs/mkdir", json={"path": "/d"}, headers=headers)
        assert denied.status_code == 403 and "CSRF" in denied.json()["error"]
    up = c.put("/api/v1/fs/content", params={"path": "/f.txt"}, content=b"hi")
    assert up.status_code == 403
    assert not (portal.data / "d").exists() and not (portal.data / "f.txt").exists()
    assert c.post("/api/v1/fs/mkdir", json={"path": "/d"}, headers={"X-CSRF-Token": csrf}).status_code == 201
    assert c.get("/api/v1/fs/stat", params={"path": "/d"}).status_code == 200  # reads need no token
    # Another login's token does not fit this session.
    _, other = login(portal.base)
    wrong = c.post("/api/v1/fs/mkdir", json={"path": "/e"}, headers={"X-CSRF-Token": other.json()["csrf"]})
    assert wrong.status_code == 403
    # Basic auth carries no ambient credential: exempt, even with a stray cookie.
    with httpx.Client(base_url=portal.base, auth=("alice", PASSWORDS["alice"]), timeout=30,
                      cookies={COOKIE: c.cookies[COOKIE]}) as basic:
        assert basic.post("/api/v1/fs/mkdir", json={"path": "/e"}).status_code == 201


def test_logout_needs_csrf_and_ends_the_session(portal, login):
    c, resp = login(portal.base)
    csrf = resp.json()["csrf"]
    token = c.cookies[COOKIE]
    assert c.post("/ui/logout").status_code == 403
    assert c.get("/ui/session").status_code == 200
    out = c.post("/ui/logout", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 204 and COOKIE in out.headers["set-cookie"]
    with httpx.Client(base_url=portal.base, cookies={COOKIE: token}, timeout=30) as stale:
        assert stale.get("/ui/session").status_code == 401
        gone = stale.get("/api/v1/fs/list", params={"path": "/"})
        # No Basic challenge for a browser with a portal cookie: no password pop-up.
        assert gone.status_code == 401 and "www-authenticate" not in gone.headers
    assert httpx.get(f"{portal.base}/api/v1/fs/list", params={"path": "/"}).headers["www-authenticate"]


def test_page_and_files_are_served_with_a_strict_policy(portal):
    with httpx.Client(base_url=portal.base, timeout=30) as c:
        assert c.get("/ui").status_code == 301
        page = c.get("/ui/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        nonce = re.search(r"script-src 'nonce-([\w-]+)'", csp).group(1)
        assert f'<script src="app.js" defer nonce="{nonce}">' in page.text and "'self'" not in csp.split(";")[1]
        assert "frame-ancestors 'none'" in csp and page.headers["cross-origin-opener-policy"] == "same-origin"
        assert page.headers["x-content-type-options"] == "nosniff" and "no-store" in page.headers["cache-control"]
        assert nonce not in c.get("/ui/").text  # a fresh nonce on every reply
        assert c.get("/ui/app.js").headers["content-type"].startswith("text/javascript")
        assert c.get("/ui/app.css").headers["content-type"].startswith("text/css")
        for bad in ("/ui/nope.js", "/ui/..%2Fportal.py", "/ui/portal.py", "/ui/.hidden.js"):
            assert c.get(bad).status_code == 404, bad
        assert c.get("/ui/session").status_code == 401


def test_static_files_fetch_nothing_from_outside_and_never_parse_html():
    root = importlib.resources.files("gateway.api") / "static" / "ui"
    for name in ("index.html", "app.js", "app.css"):
        text = (root / name).read_text()
        assert not re.search(r"(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text), name
        assert not re.search(r"\binnerHTML\b|outerHTML|insertAdjacentHTML|document\.write|\beval\(", text), name


def test_sessions_expire_and_end_with_a_password_change(gateway_factory):
    from gateway.api.portal import IDLE_S, MAX_AGE_S, Portal

    r = gateway_factory()
    now = [1000.0]
    portal = Portal(r.gw, clock=lambda: now[0])

    def login(user: str = "alice") -> str:
        return portal.login(user, PASSWORDS[user], "127.0.0.1", tls=False)[0]

    idle, busy, bob = login(), login(), login("bob")
    assert portal.lookup(idle)[0].name == "alice"
    now[0] += IDLE_S - 1
    assert portal.lookup(busy) is not None
    now[0] += 2
    assert portal.lookup(idle) is None  # idle too long
    while now[0] < 1000.0 + MAX_AGE_S - IDLE_S / 2:
        now[0] += IDLE_S / 2
        assert portal.lookup(busy) is not None
    now[0] += IDLE_S / 2 + 1
    assert portal.lookup(busy) is None  # used all along, but too old
    fresh = login()
    r.gw.auth.get("alice").password_hash = "changed elsewhere"
    assert portal.lookup(fresh) is None
    assert portal.lookup(bob) is None and portal.lookup("no such token") is None


def test_portal_login_and_logout_are_audit_lines_of_one_session(gateway_factory, login, caplog):
    r = gateway_factory(protocols=("http",), sections={"logging": {"audit": True}})
    base = f"http://127.0.0.1:{r.port('http')}"
    with caplog.at_level("INFO", logger="gateway.ops"):
        c, resp = login(base)
        assert c.get("/api/v1/fs/list", params={"path": "/"}).status_code == 200
        assert c.post("/ui/logout", headers={"X-CSRF-Token": resp.json()["csrf"]}).status_code == 204
    lines = [rec.op for rec in caplog.records if rec.name == "gateway.ops" and hasattr(rec, "op")]
    kinds = [(o["op"], o.get("method")) for o in lines]
    assert kinds == [("login", "password"), ("login", "cookie"), ("list", None), ("logout", None)]
    assert len({o["session"] for o in lines}) == 1 and all(o["user"] == "alice" for o in lines)
