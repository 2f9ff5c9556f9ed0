"""The REST API's docs page, opened in Debian's headless chromium as
tests/e2e/test_portal_browser.py drives it: it shows every operation of the
OpenAPI document, loads nothing from elsewhere and reports no error."""

from __future__ import annotations

import httpx
import pytest

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
        assert page.locator("#post_api_v1_fs_copy").get_by_text("Prefer", exact=True).is_visible()
        assert all(u.startswith(base) for u in requests), requests  # no CDN
        # The browser's own favicon.ico probe is the only miss (its console line names no URL).
        assert {u.removeprefix(base) for u in failed} <= {"/favicon.ico"}
        assert not [m for m in problems if not m.startswith("Failed to load resource")]
    finally:
        ctx.close()
