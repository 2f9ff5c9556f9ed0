"""Shared bits of the WebDAV tests: an httpx client on a running gateway's
/dav, a PROPFIND that returns what a folder lists, and one dead property to
set and read."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import unquote

import httpx

from conftest import PASSWORDS

PROPFIND_NAMES = (b'<?xml version="1.0" encoding="utf-8"?>'
                  b'<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/>'
                  b'<D:getetag/></D:prop></D:propfind>')
PROPPATCH = (b'<?xml version="1.0" encoding="utf-8"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:test">'
             b'<D:set><D:prop><Z:colour>blue</Z:colour></D:prop></D:set></D:propertyupdate>')
PROPGET = (b'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:" xmlns:Z="urn:test">'
           b'<D:prop><Z:colour/></D:prop></D:propfind>')


def dav_base(running) -> str:
    return f"http://127.0.0.1:{running.port('http')}/dav"


def client(running, user: str = "alice", *, session: str | None = None, password: str | None = None,
           **kwargs) -> httpx.Client:
    """A client for ``user``; ``session`` sets the Gateway-Session header."""
    headers = {"Gateway-Session": session} if session else {}
    return httpx.Client(base_url=dav_base(running), auth=(user, password or PASSWORDS[user]), headers=headers,
                        timeout=60, **kwargs)


def listing(c: httpx.Client, path: str) -> set[str]:
    """Names a Depth: 1 PROPFIND of folder ``path`` shows (the folder itself
    left out); raises for any status but 207."""
    r = c.request("PROPFIND", path, headers={"Depth": "1"}, content=PROPFIND_NAMES)
    assert r.status_code == 207, (r.status_code, r.text)
    root = unquote(c.base_url.path).rstrip("/") + "/" + path.strip("/")
    root = root.rstrip("/")
    names = set()
    for href in ET.fromstring(r.content).iter("{DAV:}href"):
        p = unquote(href.text).rstrip("/")
        if p != root:
            names.add(p.rsplit("/", 1)[-1])
    return names


def exists(c: httpx.Client, path: str) -> bool:
    r = c.request("PROPFIND", path, headers={"Depth": "0"}, content=PROPFIND_NAMES)
    assert r.status_code in (207, 404), (r.status_code, r.text)
    return r.status_code == 207


def colour(c: httpx.Client, path: str) -> str | None:
    """The dead property PROPPATCH sets on ``path`` (None when unset)."""
    r = c.request("PROPFIND", path, headers={"Depth": "0"}, content=PROPGET)
    assert r.status_code == 207, r.text
    el = ET.fromstring(r.content).find(".//{urn:test}colour")
    return None if el is None else el.text
