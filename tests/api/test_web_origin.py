"""User content cannot run on the portal's origin, the portal's CSRF token
reaches only the portal's own page, and nothing changes state on a GET a
browser could be tricked into sending (issue #23), over real HTTP (httpx).

Every reply with a user's file (WebDAV's fast GET, wsgidav's own GET and
HEAD for conditional, ranged and locked requests, REST downloads) carries
nosniff and a sandboxing CSP, and active types are downloads. The browser
side of the same attack is tests/e2e/test_portal_browser.py."""

from __future__ import annotations

import re
import time
from urllib.parse import quote

import httpx
import pytest

from conftest import PASSWORDS
from gateway.webcontent import attachment

pytestmark = pytest.mark.timeout(120)

LOCKINFO = (b'<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
            b'</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>tests</D:owner></D:lockinfo>')
HTML = b"<!doctype html><script>document.title='ran'</script>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
# name -> (content, is an active type that must be downloaded)
FILES = {
    "evil.html": (HTML, True), "evil.svg": (SVG, True), "evil.xhtml": (HTML, True), "evil.xml": (SVG, True),
    "evil.js": (b"alert(1)", True), "data.json": (b"{}", True), "blob.unknownext": (b"\0\1", True),
    "note.txt": (b"<script>alert(1)</script>", False), "pic.png": (b"\x89PNG\r\n\x1a\n", False),
    "doc.pdf": (b"%PDF-1.4\n", False), "clip.mp4": (b"\0\0\0\x18ftypmp42", True),
}


@pytest.fixture
def web(gateway_factory):
    r = gateway_factory(protocols=("http",), budget_ms=300)
    r.base = f"http://127.0.0.1:{r.port('http')}"
    clients: list[httpx.Client] = []

    def client(user: str | None = "alice", **kw) -> httpx.Client:
        c = httpx.Client(base_url=r.base, auth=(user, PASSWORDS[user]) if user else None, timeout=30, **kw)
        clients.append(c)
        return c

    def portal(user: str = "admin") -> tuple[httpx.Client, str]:
        """A client holding ``user``'s portal cookie, and the login's CSRF token."""
        c = client(None)
        resp = c.post("/ui/login", json={"user": user, "password": PASSWORDS[user]})
        assert resp.status_code == 200
        return c, resp.json()["csrf"]

    r.client, r.portal = client, portal
    for name, (content, _) in FILES.items():
        (r.data / name).write_bytes(content)
    yield r
    for c in clients:
        c.close()


def assert_served_safely(resp: httpx.Response, name: str, active: bool) -> None:
    assert resp.headers["x-content-type-options"] == "nosniff", name
    csp = resp.headers["content-security-policy"]
    assert re.match(r"sandbox(;|$)", csp) and "default-src 'none'" in csp, (name, csp)
    assert "allow-" not in csp, csp  # no sandbox exception at all
    disposition = resp.headers.get("content-disposition")
    if active:
        assert disposition == attachment(name), (name, disposition)
    else:
        assert disposition is None, (name, disposition)


def test_webdav_fast_get_serves_files_sandboxed_and_active_ones_as_downloads(web):
    c = web.client()
    for name, (content, active) in FILES.items():
        r = c.get(f"/dav/{name}")
        assert r.status_code == 200 and r.content == content, name
        assert_served_safely(r, name, active)
    assert c.get("/dav/evil.html").headers["content-type"].startswith("text/html")  # the type itself stays


def test_webdav_fallback_get_and_head_carry_the_same_headers(web):
    """Conditional, ranged and HEAD requests are answered by wsgidav itself,
    not by the fast path; and a locked file's GET is just as safe."""
    c = web.client()
    for name, (content, active) in FILES.items():
        head = c.head(f"/dav/{name}")
        ranged = c.get(f"/dav/{name}", headers={"Range": "bytes=0-3"})
        conditional = c.get(f"/dav/{name}", headers={"If-None-Match": '"not-the-etag"'})
        assert (head.status_code, ranged.status_code, conditional.status_code) == (200, 206, 200), name
        assert ranged.content == content[:4] and conditional.content == content
        for r in (head, ranged, conditional):
            assert_served_safely(r, name, active)
    assert c.request("LOCK", "/dav/evil.svg", content=LOCKINFO).status_code == 200
    locked = c.get("/dav/evil.svg")
    assert locked.content == SVG
    assert_served_safely(locked, "evil.svg", True)


def test_rest_downloads_are_attachments_with_the_exact_name(web):
    name = 'résumé "draft" 100%.html'
    (web.data / name).write_bytes(HTML)
    c = web.client()
    r = c.get("/api/v1/fs/content", params={"path": f"/{name}"})
    assert r.status_code == 200 and r.content == HTML
    assert_served_safely(r, name, True)
    disposition = r.headers["content-disposition"]
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9%20%22draft%22%20100%25.html" in disposition
    assert 'filename="r_sum_ _draft_ 100_.html"' in disposition
    ranged = c.get("/api/v1/fs/content", params={"path": "/pic.png"}, headers={"Range": "bytes=1-3"})
    assert ranged.status_code == 206 and ranged.content == b"PNG"
    # The REST API names no type of its own (octet-stream), so even a picture is a download there.
    assert_served_safely(ranged, "pic.png", True)
    # The same file through WebDAV: the same name.
    assert c.get(f"/dav/{quote(name)}").headers["content-disposition"] == disposition


# ------------------------------------------------------------- the CSRF token


def test_the_csrf_token_reaches_only_the_portal_page(web):
    c, csrf = web.portal()
    session = c.get("/ui/session")
    assert session.status_code == 200 and csrf not in session.text and "csrf" not in session.json()
    # A script's fetch of the page (what a page of this origin could do) gets no token...
    for fetched in ({"Sec-Fetch-Dest": "empty", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin"},
                    {"Sec-Fetch-Dest": "iframe", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "same-origin"},
                    {"Sec-Fetch-Dest": "document", "Sec-Fetch-Mode": "no-cors"}):
        page = c.get("/ui/", headers=fetched)
        assert page.status_code == 200 and csrf not in page.text
        assert '<meta name="csrf-token" content="">' in page.text, fetched
    # ...nor does a browser without the session's cookie.
    assert '<meta name="csrf-token" content="">' in web.client(None).get("/ui/").text
    # The browser's navigation to the page gets it, and it works.
    navigation = {"Sec-Fetch-Dest": "document", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "none"}
    for path in ("/ui/", "/ui/index.html"):
        page = c.get(path, headers=navigation)
        assert f'<meta name="csrf-token" content="{csrf}">' in page.text
        assert "no-store" in page.headers["cache-control"]
    assert c.post("/api/v1/fs/mkdir", json={"path": "/made"}, headers={"X-CSRF-Token": csrf}).status_code == 201


def test_state_changes_from_another_site_are_refused_whatever_the_credentials(web):
    c, csrf = web.portal()
    basic = web.client("admin")
    for headers in ({"Origin": "null"}, {"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Site": "same-site"}):
        for client, extra in ((c, {"X-CSRF-Token": csrf}), (basic, {})):
            r = client.post("/api/v1/fs/delete", json={"path": "/note.txt"}, headers={**headers, **extra})
            assert r.status_code == 403 and "another site" in r.json()["error"], headers
    assert (web.data / "note.txt").exists()
    same = {"Origin": web.base, "Sec-Fetch-Site": "same-origin", "X-CSRF-Token": csrf}
    assert c.post("/api/v1/fs/delete", json={"path": "/note.txt"}, headers=same).status_code == 200
    assert not (web.data / "note.txt").exists()
    # Reads from anywhere are answered as before (a link to a file works).
    assert basic.get("/api/v1/fs/stat", params={"path": "/pic.png"}, headers={"Origin": "null"}).status_code == 200


# ------------------------------------------------------------------ QueueInfo


def _running_copy(web, c: httpx.Client, name: str) -> str:
    s = web.session("admin")
    web.ops.mkdir(s, f"/slow/{name}")
    for i in range(40):
        web.ops.open_write(s, f"/slow/{name}/f{i:03}").commit()
    job_id = c.post("/api/v1/fs/copy", json={"from": f"/slow/{name}", "to": f"/slow/{name}-copy"},
                    headers={"Prefer": "respond-async"}).json()["id"]
    deadline = time.monotonic() + 30
    while web.gw.store.get(job_id).state == "queued":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return job_id


def test_queueinfo_changes_nothing_on_a_get_a_browser_could_send(web):
    from gateway.tokens import TokenStore

    basic = web.client("admin")
    job_id = _running_copy(web, basic, "q")
    cookie, csrf = web.portal("admin")
    query = {"QueueName": "copy", "QueueAction": "Stop", "Token": job_id}
    # GetStatus stays a GET for every kind of credentials.
    status = cookie.get("/api/v1/queueinfo", params={**query, "QueueAction": "GetStatus"})
    assert status.status_code == 200 and [j["id"] for j in status.json()["jobs"]] == [job_id]
    # Stop and Cancel on GET: refused with the cookie (even with its token) and with Basic.
    for client, headers in ((cookie, {}), (cookie, {"X-CSRF-Token": csrf}), (basic, {})):
        for action in ("Stop", "Cancel"):
            r = client.get("/api/v1/queueinfo", params={**query, "QueueAction": action}, headers=headers)
            assert r.status_code == 403 and "POST" in r.json()["error"], (action, r.text)
    assert cookie.post("/api/v1/queueinfo", params=query).status_code == 403  # POST with the cookie: CSRF token
    assert web.gw.store.get(job_id).state == "running"
    stopped = cookie.post("/api/v1/queueinfo", params=query, headers={"X-CSRF-Token": csrf})
    assert stopped.status_code == 200 and stopped.json()["jobs"][0]["id"] == job_id
    assert web.gw.dispatcher.wait(job_id, 30).state == "stopped"
    # A bearer token (never sent by a browser on its own) may still stop on GET.
    other = _running_copy(web, basic, "q2")
    _, token = TokenStore(web.gw.store).create("admin", "tests")
    with httpx.Client(base_url=web.base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as bearer:
        assert bearer.get("/api/v1/queueinfo", params={**query, "Token": other}).status_code == 200
    assert web.gw.dispatcher.wait(other, 30).state == "stopped"


def test_openapi_documents_queueinfo_post(web):
    doc = web.client(None).get("/api/v1/openapi.json").json()
    ops = doc["paths"]["/api/v1/queueinfo"]
    assert set(ops) == {"get", "post"}
    assert "bearer" in ops["get"]["description"] and "403" in ops["get"]["description"]
