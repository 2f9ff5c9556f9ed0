"""Files users upload never run in the portal's origin (issue #23), in
Debian's headless chromium as tests/e2e/test_portal_browser.py drives it.

Alice uploads over WebDAV an HTML page and an SVG whose script tries what a
stored-XSS page would: read the portal's CSRF token (``/ui/session``, the
page ``/ui/``) and delete a file of bob's with the cookies and Basic
credentials of whoever opens it. An admin, logged in to the portal and to
WebDAV in the same browser, opens them: they are downloads; shown inline
anyway they are sandboxed and their script never runs; and even a page that
did run in the origin (a hole somewhere else, simulated) finds no token.
Bob's file stays byte for byte, and the portal still works.
"""

from __future__ import annotations

import io
import struct
import time
import wave
import zlib
from pathlib import Path

import httpx
import pytest

from conftest import PASSWORDS
from test_portal_browser import browser  # noqa: F401 - the shared chromium fixture

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

VICTIM = b"bob's data, not alice's to delete\n"
# What a page of alice's would do with the admin's browser. It reports into
# an attribute of its root element (HTML and SVG alike), and makes a file
# when it gets as far as changing anything.
ATTACK = """
(async () => {
  const out = [], root = document.documentElement;
  root.setAttribute("data-ran", "yes");
  let csrf = "";
  try {
    const s = await (await fetch("/ui/session", {credentials: "include"})).json();
    csrf = s.csrf || ""; out.push("session:" + (s.user || "") + ":" + csrf);
  } catch (e) { out.push("session:failed"); }
  try {
    const page = await (await fetch("/ui/", {credentials: "include"})).text();
    const m = page.match(/name="csrf-token" content="([^"]*)"/);
    if (m && m[1]) csrf = m[1];
    out.push("page:" + (m ? m[1] : "none"));
  } catch (e) { out.push("page:failed"); }
  const changes = [["/api/v1/fs/delete", {path: "/bob/secret.txt"}], ["/api/v1/fs/mkdir", {path: "/pwned"}]];
  for (const [path, body] of changes) {
    try {
      const r = await fetch(path, {method: "POST", credentials: "include", body: JSON.stringify(body),
                                   headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}});
      out.push(path + ":" + r.status);
    } catch (e) { out.push(path + ":failed"); }
  }
  root.setAttribute("data-report", out.join("|"));
})();
"""
EVIL_HTML = f"<!doctype html><html><body><p>hello</p><script>{ATTACK}</script></body></html>".encode()
EVIL_SVG = (f'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script><![CDATA[{ATTACK}]]>'
            "</script></svg>").encode()


PDF = (b"%PDF-1.1\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj "
       b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 100 100]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")


def _png() -> bytes:
    """A valid 2x2 red PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\0" + b"\xff\0\0" * 2 for _ in range(2))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _wav() -> bytes:
    """Half a second of silence."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 4000)
    return out.getvalue()


@pytest.fixture
def site(gateway_factory, browser, tmp_path):  # noqa: F811 - the imported fixture
    """A gateway whose "/" is ``r.files``; alice's uploads (over WebDAV) and
    bob's file are in place; ``r.admin()`` → a page of a browser where the
    admin is logged in to the portal and has given WebDAV its password."""
    files = tmp_path / "files"
    (files / "bob").mkdir(parents=True)
    (files / "bob" / "secret.txt").write_bytes(VICTIM)
    r = gateway_factory(protocols=("http",), mounts={"/": f"file://{files}"})
    r.files = files
    r.base = f"http://127.0.0.1:{r.port('http')}"
    with httpx.Client(base_url=r.base, auth=("alice", PASSWORDS["alice"]), timeout=30) as alice:
        assert alice.request("MKCOL", "/dav/alice").status_code == 201
        for name, content in (("evil.html", EVIL_HTML), ("evil.svg", EVIL_SVG), ("evil.txt", EVIL_HTML),
                              ("pic.png", _png()), ("sound.wav", _wav()), ("doc.pdf", PDF)):
            assert alice.put(f"/dav/alice/{name}", content=content).status_code == 201
    contexts = []

    def admin(basic: bool = True):
        ctx = browser.new_context(accept_downloads=True, http_credentials=(
            {"username": "admin", "password": PASSWORDS["admin"]} if basic else None))
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(15000)
        page.goto(r.base + "/ui/")
        page.fill("#login-user", "admin")
        page.fill("#login-password", PASSWORDS["admin"])
        page.keyboard.press("Enter")
        page.wait_for_selector("#files-view:not([hidden])")
        return page

    r.admin = admin
    yield r
    for ctx in contexts:
        ctx.close()


def untouched(site) -> None:
    assert (site.files / "bob" / "secret.txt").read_bytes() == VICTIM
    assert not (site.files / "pwned").exists()


def test_active_files_are_downloads_and_never_run(site):
    page = site.admin()
    for name, content in (("evil.html", EVIL_HTML), ("evil.svg", EVIL_SVG)):
        with page.expect_download() as download:
            try:
                page.goto(f"{site.base}/dav/alice/{name}")
            except Exception as exc:  # noqa: BLE001 - chromium aborts a navigation that became a download
                assert "Download is starting" in str(exc) or "ERR_ABORTED" in str(exc), exc
        assert Path(download.value.path()).read_bytes() == content
        assert download.value.suggested_filename == name
    # Through the REST API (the portal's download links) alike.
    with page.expect_download() as download:
        try:
            page.goto(f"{site.base}/api/v1/fs/content?path=/alice/evil.html")
        except Exception as exc:  # noqa: BLE001
            assert "Download is starting" in str(exc) or "ERR_ABORTED" in str(exc), exc
    assert Path(download.value.path()).read_bytes() == EVIL_HTML
    # HTML in a .txt is shown, as text.
    page.goto(f"{site.base}/dav/alice/evil.txt")
    assert page.evaluate("document.body.innerText") == EVIL_HTML.decode()
    assert page.evaluate("document.documentElement.getAttribute('data-ran')") is None
    # Passive types still show in the tab: a picture is drawn.
    page.goto(f"{site.base}/dav/alice/pic.png")
    assert page.evaluate("document.querySelector('img').naturalWidth") == 2
    page.goto(f"{site.base}/dav/alice/doc.pdf")  # in the browser's own viewer
    deadline = time.monotonic() + 15
    while not any(f.url.startswith("chrome-extension://") for f in page.frames):  # the viewer's frame
        assert time.monotonic() < deadline, [f.url for f in page.frames]
        page.wait_for_timeout(100)
    # Sound and video are downloads (a sandboxed page cannot play them in chromium).
    with page.expect_download() as download:
        try:
            page.goto(f"{site.base}/dav/alice/sound.wav")
        except Exception as exc:  # noqa: BLE001
            assert "Download is starting" in str(exc) or "ERR_ABORTED" in str(exc), exc
    assert Path(download.value.path()).read_bytes() == _wav()
    page.wait_for_timeout(1000)  # what a script would have had time to do
    untouched(site)


@pytest.mark.parametrize("name", ["evil.html", "evil.svg"])
def test_shown_inline_anyway_the_sandbox_stops_the_script(site, name):
    """A browser that ignored Content-Disposition (simulated: the header is
    taken off on the way) renders the file: its script does not run."""
    page = site.admin()

    def without_disposition(route):
        reply = route.fetch()
        headers = {k: v for k, v in reply.headers.items() if k.lower() != "content-disposition"}
        assert "sandbox" in headers["content-security-policy"]
        route.fulfill(response=reply, headers=headers)

    page.route(f"**/dav/alice/{name}", without_disposition)
    page.goto(f"{site.base}/dav/alice/{name}")
    page.wait_for_timeout(1500)
    assert page.evaluate("document.documentElement.getAttribute('data-ran')") is None
    assert page.evaluate("window.origin") == "null"  # a sandboxed, opaque origin
    untouched(site)


def test_a_page_that_does_run_in_the_origin_finds_no_csrf_token(site):
    """Should some other hole let a page run in the origin (simulated: the
    browser is handed the attack with no protective headers), it has the
    admin's portal cookie but not the token, and changes nothing."""
    page = site.admin(basic=False)  # the cookie only: Basic needs no token
    page.route("**/dav/alice/unprotected.html",
               lambda route: route.fulfill(status=200, content_type="text/html", body=EVIL_HTML))
    page.goto(f"{site.base}/dav/alice/unprotected.html")
    page.wait_for_function("() => document.documentElement.hasAttribute('data-report')")
    report = page.evaluate("document.documentElement.getAttribute('data-report')").split("|")
    assert report[0] == "session:admin:" and report[1] == "page:"  # logged in, but no token anywhere
    assert report[2:] == ["/api/v1/fs/delete:403", "/api/v1/fs/mkdir:403"]
    untouched(site)
    # The portal itself still works in the same browser, styled by its nonce'd sheet.
    page.goto(f"{site.base}/ui/#/bob")
    page.wait_for_selector("#file-rows tr[data-name='secret.txt']")
    assert page.evaluate("getComputedStyle(document.querySelector('header.bar')).display") == "flex"
    page.get_by_role("button", name="New folder").click()
    page.fill("#dialog-input", "made-by-admin")
    page.keyboard.press("Enter")
    page.wait_for_selector("#file-rows tr[data-name='made-by-admin']")
    assert (site.files / "bob" / "made-by-admin").is_dir()


def test_arriving_from_another_site_keeps_the_portal_session(site):
    """A strict cookie does not come with a navigation from another site:
    the page gets no token and loads itself once more, which brings it."""
    page = site.admin(basic=False)
    other = site.base.replace("127.0.0.1", "localhost")  # another site for the browser
    page.route(f"{other}/start", lambda route: route.fulfill(
        status=200, content_type="text/html", body=f'<a id="go" href="{site.base}/ui/#/bob">portal</a>'))
    page.goto(f"{other}/start")
    loads = []
    page.on("response", lambda resp: loads.append('<meta name="csrf-token" content="">' not in resp.text())
            if resp.request.resource_type == "document" else None)
    page.click("#go")
    page.wait_for_selector("#file-rows tr[data-name='secret.txt']")
    assert loads == [False, True]  # first without the token, then with it
    page.get_by_role("button", name="New folder").click()
    page.fill("#dialog-input", "after-arrival")
    page.keyboard.press("Enter")
    page.wait_for_selector("#file-rows tr[data-name='after-arrival']")
