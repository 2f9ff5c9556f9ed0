"""The backend helpers that need no server: the listing cache, the error
table and ``${NAME}`` expansion."""

from __future__ import annotations

import ftplib
import ssl
import time

import asyncssh
import httpx
import pytest
import webdav4.client

from backends.cache import ListingCache
from backends.errors import translate
from backends.registry import expand_env
from gateway import errors as E


def test_listing_cache_ttl_and_invalidation():
    c: ListingCache[str] = ListingCache(ttl_s=0.2)
    for path in ("/a", "/a/b", "/a/b/c", "/x"):
        c.put(path, [path], c.generation())
    assert c.get("/a/b/") == ["/a/b"]
    c.invalidate("/a/b/new")  # a change inside /a/b: its listing goes, the others stay
    assert c.get("/a/b") is None and c.get("/a") == ["/a"] and c.get("/a/b/c") == ["/a/b/c"]
    c.invalidate("/a/b")  # /a/b itself renamed or removed: its parent and everything below go
    assert c.get("/a") is None and c.get("/a/b/c") is None and c.get("/x") == ["/x"]
    time.sleep(0.25)
    assert c.get("/x") is None  # expired


def test_a_listing_fetched_across_an_invalidation_is_not_kept():
    c: ListingCache[str] = ListingCache(ttl_s=60)
    before = c.generation()
    c.invalidate("/a/new")  # a mutation lands while the slow listing is on its way
    c.put("/a", ["stale"], before)
    assert c.get("/a") is None


def test_listing_cache_is_bounded():
    c: ListingCache[int] = ListingCache(ttl_s=60, max_folders=3, max_entries=5)
    for i in range(5):
        c.put(f"/{i}", [i], c.generation())
    assert c.get("/0") is None and c.get("/4") == [4]
    c.put("/huge", list(range(6)), c.generation())
    assert c.get("/huge") is None


@pytest.mark.parametrize("exc, expected", [
    (ftplib.error_perm("550 No such file or directory."), E.NotFound),
    (ftplib.error_perm("550 Directory not empty."), E.DirectoryNotEmpty),
    (ftplib.error_perm("530 Login incorrect."), E.PermissionDenied),
    (ftplib.error_perm("552 Quota exceeded."), E.QuotaExceeded),
    (ftplib.error_temp("421 Service not available"), E.BackendUnavailable),
    (ftplib.error_temp("452 Insufficient storage"), E.QuotaExceeded),
    (EOFError(), E.BackendUnavailable),
    (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), E.BackendUnavailable),  # FTPS server gone
    (ssl.SSLZeroReturnError(6, "TLS/SSL connection has been closed (EOF)"), E.BackendUnavailable),
    (asyncssh.SFTPNoSuchFile("x"), E.NotFound),
    (asyncssh.SFTPPermissionDenied("x"), E.PermissionDenied),
    (asyncssh.SFTPFailure("x"), E.BackendError),
    (asyncssh.SFTPConnectionLost("x"), E.BackendUnavailable),
    (asyncssh.ConnectionLost("x"), E.BackendUnavailable),
    (httpx.ConnectError("x"), E.BackendUnavailable),
    (httpx.ReadTimeout("x"), E.BackendUnavailable),
    (webdav4.client.ResourceNotFound("/x"), E.NotFound),
    (webdav4.client.ResourceAlreadyExists("/x"), E.AlreadyExists),
    (webdav4.client.ResourceConflict("x"), E.MissingParent),
    (ConnectionRefusedError(111, "refused"), E.BackendUnavailable),
    (TimeoutError(), E.BackendUnavailable),
    (OSError(16, "SlowDown"), E.BackendUnavailable),  # s3fs's EBUSY
    (FileNotFoundError(2, "nope"), E.NotFound),
])
def test_storage_errors_map_to_gateway_errors(exc, expected):
    err = translate(exc)
    assert type(err) is expected
    assert err.retryable == (expected is E.BackendUnavailable)


def test_expand_env(monkeypatch):
    monkeypatch.setenv("GW_T_A", "alpha")
    assert expand_env({"k": "${GW_T_A}-x", "l": ["${GW_T_A}"], "n": 3}) == {"k": "alpha-x", "l": ["alpha"], "n": 3}
    monkeypatch.delenv("GW_T_A")
    with pytest.raises(E.BadRequest, match="GW_T_A is not set"):
        expand_env("${GW_T_A}")
