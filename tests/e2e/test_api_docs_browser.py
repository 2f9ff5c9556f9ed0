"""The REST API's docs page, opened in Debian's headless chromium as
tests/e2e/test_portal_browser.py drives it: it shows every operation of the
OpenAPI document, its "Try it" forms send requests and show the replies,
it loads nothing from elsewhere and reports no error."""

from __future__ import annotations

import httpx
import pytest

from conftest import PASSWORDS
from test_portal_browser import browser  # noqa: F401 - the shared chromium fixture

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_api_docs_page_lists_the_operations(gateway_factory, browser):  # noqa: F811
    r = gateway_factory(protocols=("http",))
    base = f"http://127.0.0.1:{r.port('http')}"
    doc = httpx.get(base + "/api/v1/openapi.json").json()
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        page.set_default_timeout(15000)
        problems, requests, failed = [], [], []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("request", lambda req: requests.append(req.url))
        page.on("response", lambda resp: failed.append(resp.url) if resp.status >= 400 else None)
        page.goto(base + "/api/v1")  # the index, as a browser shows JSON, points to the docs
        assert "/api/v1/docs" in page.content()
        page.goto(base + "/api/v1/docs")
        assert page.title().startswith("gateway REST API")
        operations = [(m.upper(), p) for p, ms in doc["paths"].items() for m in ms]
        headings = page.locator("section h3").all_inner_texts()
        assert len(headings) == len(operations)
        for method, path in operations:
            assert any(h.startswith(method) and path in h for h in headings), (method, path)
        page.get_by_role("link", name="/api/v1/fs/copy").first.click()
        assert page.url.endswith("#post_api_v1_fs_copy")
        assert page.locator("#post_api_v1_fs_copy table").get_by_text("Prefer", exact=True).is_visible()
        # Try it: credentials once, then a listing and a mkdir sent from the page.
        (r.data / "here.txt").write_text("x")
        page.fill("#cred-user", "alice")
        page.fill("#cred-password", PASSWORDS["alice"])
        listing = page.locator("#get_api_v1_fs_list")
        listing.get_by_text("Try it").click()
        listing.locator("input[name=path]").fill("/")
        listing.get_by_role("button", name="Send").click()
        reply = listing.locator("pre")
        reply.get_by_text("200 OK").wait_for()
        assert "GET /api/v1/fs/list?path=%2F" in reply.inner_text() and '"here.txt"' in reply.inner_text()
        mkdir = page.locator("#post_api_v1_fs_mkdir")
        mkdir.get_by_text("Try it").click()
        assert mkdir.locator("textarea").input_value() == '{"path": ""}'
        mkdir.locator("textarea").fill('{"path": "/made"}')
        mkdir.get_by_role("button", name="Send").click()
        mkdir.locator("pre").get_by_text("201 Created").wait_for()
        assert (r.data / "made").is_dir()
        page.fill("#cred-password", "wrong")
        listing.get_by_role("button", name="Send").click()
        reply.get_by_text("401 Unauthorized").wait_for()  # shown on the page: no password dialog
        assert all(u.startswith(base) for u in requests), requests  # no CDN
        # The browser's own favicon.ico probe and the wrong password are the only misses
        # (their console lines name no URL).
        assert {u.removeprefix(base) for u in failed} <= {"/favicon.ico", "/api/v1/fs/list?path=%2F"}
        assert not [m for m in problems if not m.startswith("Failed to load resource")], problems
    finally:
        ctx.close()
