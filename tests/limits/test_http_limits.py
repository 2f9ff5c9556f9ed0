"""Hostile load on the HTTP port (issue #24): request bodies refused before
they are read cost no memory; idle, half-sent and slow connections hold no
worker thread; connections, headers and JSON/XML bodies are bounded with a
clear refusal and a metric; bad bytes get a 400 whose Content-Length is its
body, and no traceback. Each attack runs against a real gateway while a
second, well-behaved client keeps being served, and the port is healthy after.

Memory is the process's resident size (VmRSS in /proc/self/status, where
the gateway runs in-process), sampled every few milliseconds by a thread;
the bound is :data:`RSS_MARGIN` over the size before the attack.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import select
import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import httpx
import pytest

from conftest import PASSWORDS

RSS_MARGIN = 64 << 20
MiB = 1 << 20
PROPFIND = (b'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/>'
            b'</D:prop></D:propfind>')
AUTH = "Basic " + base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()


# --------------------------------------------------------------- helpers


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@contextmanager
def peak_rss() -> Iterator[dict]:
    """``{"base": RSS before, "peak": highest RSS seen}`` while the block runs."""
    seen = {"base": _rss(), "peak": 0}
    seen["peak"] = seen["base"]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            seen["peak"] = max(seen["peak"], _rss())
            time.sleep(0.003)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield seen
    finally:
        done.set()
        t.join(5)
        seen["peak"] = max(seen["peak"], _rss())


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one HTTP reply."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete reply head in {raw[:200]!r}"
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def exchange(port: int, data: bytes, timeout: float = 20) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` on a new connection, read until the server closes it,
    and check that Content-Length (if any) is the body's length."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
    status, headers, body = parse(out)
    if "content-length" in headers:
        assert int(headers["content-length"]) == len(body), (status, headers, body[:200])
    return status, headers, body


def big_body(port: int, head: bytes, total: int) -> tuple[int | None, int]:
    """Send ``head`` then up to ``total`` body bytes, stopping as soon as the
    server answers or closes; returns (status or None, bytes sent)."""
    block = b"x" * MiB
    sent = 0
    reply = b""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.sendall(head)
        s.setblocking(False)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r, w, _ = select.select([s], [s] if sent < total else [], [], 5)
            if r:
                break
            if w:
                try:
                    sent += s.send(block[:min(len(block), total - sent)])
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    break  # the server closed: read what it said
        s.settimeout(10)
        try:
            while b"\r\n\r\n" not in reply:
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
        except OSError:
            pass
    finally:
        s.close()
    status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.") else None
    return status, sent


class Bystander:
    """A well-behaved client that keeps doing WebDAV and REST requests in a
    thread; every request must succeed within ``slowest`` seconds."""

    def __init__(self, port: int, slowest: float = 6.0) -> None:
        self.port = port
        self.slowest = slowest
        self.done = threading.Event()
        self.ready = threading.Event()  # a first round of requests is done
        self.times: list[float] = []
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        base = f"http://127.0.0.1:{self.port}"
        auth = ("alice", PASSWORDS["alice"])
        n = 0
        with httpx.Client(base_url=base, auth=auth, timeout=30) as c:
            while not self.done.is_set():
                n += 1
                for method, url, kwargs, ok in (
                        ("PUT", f"/dav/bystander-{n % 3}.txt", {"content": b"hello %d" % n}, (201, 204)),
                        ("PROPFIND", "/dav/", {"headers": {"Depth": "1"}, "content": PROPFIND}, (207,)),
                        ("GET", "/api/v1/fs/list", {"params": {"path": "/"}}, (200,))):
                    t = time.monotonic()
                    try:
                        r = c.request(method, url, **kwargs)
                        status = r.status_code
                    except httpx.HTTPError as exc:
                        status = repr(exc)
                    took = time.monotonic() - t
                    self.times.append(took)
                    if status not in ok or took > self.slowest:
                        self.failures.append(f"{method} {url}: {status} after {took:.1f} s")
                self.ready.set()
                time.sleep(0.05)

    def __enter__(self) -> "Bystander":
        self.thread.start()
        assert self.ready.wait(60), "the bystander's first requests did not finish"
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(60)
        assert not self.thread.is_alive()
        assert self.times, "the bystander made no request"
        assert not self.failures, self.failures


def metric(port: int, limit: str) -> int:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", auth=("admin", PASSWORDS["admin"]), timeout=10).text
    m = re.search(rf'^gateway_refused_total{{protocol="http",limit="{limit}"}} (\d+)', text, re.M)
    return int(m.group(1)) if m else 0


def healthy(port: int) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=("alice", PASSWORDS["alice"]), timeout=10) as c:
        assert c.put("/dav/after.txt", content=b"still here").status_code in (201, 204)
        assert c.get("/dav/after.txt").content == b"still here"
        assert c.get("/api/v1/fs/stat", params={"path": "/after.txt"}).json()["size"] == 10


# --------------------------------------------------------------- bodies


def test_refused_bodies_are_not_read_into_memory(gateway_factory):
    r = gateway_factory(protocols=("http",))
    port = r.port("http")
    head = "{} {} HTTP/1.1\r\nHost: x\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}\r\n"
    attacks = [  # (what, head, body bytes, acceptable statuses)
        ("unauthenticated PROPFIND", head.format("PROPFIND", "/dav/", "text/xml", 300 * MiB, ""), 300 * MiB, {401, 413}),
        ("unauthenticated WebDAV PUT (an upload: not bounded, but refused before its body)",
         head.format("PUT", "/dav/big.bin", "application/octet-stream", 300 * MiB, ""), 300 * MiB, {401}),
        ("unauthenticated REST", head.format("POST", "/api/v1/fs/mkdir", "application/json", 300 * MiB, ""),
         300 * MiB, {401, 413}),
        ("portal login", head.format("POST", "/ui/login", "application/x-www-form-urlencoded", 300 * MiB, ""),
         300 * MiB, {401, 413}),
        ("authenticated REST JSON", head.format("POST", "/api/v1/fs/mkdir", "application/json", 200 * MiB,
                                                f"Authorization: {AUTH}\r\n"), 200 * MiB, {413}),
    ]
    before = metric(port, "body_too_large")
    with Bystander(port):
        for what, h, total, ok in attacks:
            with peak_rss() as rss:
                status, sent = big_body(port, h.encode(), total)
            grew = rss["peak"] - rss["base"]
            assert status in ok, (what, status, sent)
            assert grew < RSS_MARGIN, f"{what}: RSS grew by {grew / MiB:.0f} MiB (sent {sent / MiB:.0f} MiB)"
    assert metric(port, "body_too_large") >= before + 3
    healthy(port)


def test_xml_and_json_bodies_have_a_limit_but_uploads_do_not(gateway_factory):
    r = gateway_factory(protocols=("http",), sections={"http": {"max_json_bytes": 4096, "max_xml_bytes": 4096}})
    port = r.port("http")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=("alice", PASSWORDS["alice"]), timeout=30) as c:
        big_xml = PROPFIND.replace(b"<D:prop>", b"<D:prop>" + b"<D:resourcetype/>" * 400)
        resp = c.request("PROPFIND", "/dav/", headers={"Depth": "0"}, content=big_xml)
        assert resp.status_code == 413 and "at most 4096 bytes" in resp.text
        for method in ("PROPPATCH", "LOCK"):
            assert c.request(method, "/dav/x.txt", content=big_xml).status_code == 413
        resp = c.post("/api/v1/fs/mkdir", json={"path": "/" + "a" * 5000})
        assert resp.status_code == 413 and resp.json()["type"] == "ContentTooLarge"
        # A chunked body (no Content-Length) is held to the same limit.
        resp = c.request("PROPFIND", "/dav/", headers={"Depth": "0"}, content=iter([big_xml[:3000], big_xml[3000:]]))
        assert resp.status_code == 413
        resp = c.post("/api/v1/fs/mkdir", content=iter([b'{"path": ', b'"/small"}']),
                      headers={"Content-Type": "application/json"})
        assert resp.status_code == 201, resp.text
        # Uploads stream, whatever their size.
        payload = b"u" * (3 * MiB)
        assert c.put("/dav/up.bin", content=payload).status_code in (201, 204)
        assert c.put("/api/v1/fs/content", params={"path": "/up2.bin"}, content=payload).status_code in (200, 201)
        assert c.put("/dav/up3.bin", content=iter([payload[:MiB], payload[MiB:]])).status_code in (201, 204)
        assert c.get("/dav/up3.bin").content == payload
        assert c.put("/api/v1/fs/content", params={"path": "/up4.bin"},
                     content=iter([payload[:MiB], payload[MiB:]])).status_code in (200, 201)
        assert c.get("/api/v1/fs/content", params={"path": "/up4.bin"}).content == payload
        assert c.request("PROPFIND", "/dav/", headers={"Depth": "1"}, content=PROPFIND).status_code == 207
    # Chunk extensions and trailer fields are part of the coding.
    status, _, _ = exchange(port, b"PUT /dav/ext.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: "
                            + AUTH.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"5;name=value\r\nhello\r\n1\r\n!\r\n0\r\nX-Trailer: 1\r\n\r\n")
    assert status in (201, 204)
    assert (r.data / "ext.txt").read_bytes() == b"hello!"


def test_a_small_refused_body_keeps_the_connection_for_the_retry(gateway_factory):
    """WebDAV clients send a request without credentials, get 401 and send it
    again on the same connection: a small body is still read after a refusal,
    and requests sent back to back (pipelined) are all answered."""
    r = gateway_factory(protocols=("http",))
    port = r.port("http")
    propfind = (b"PROPFIND /dav/ HTTP/1.1\r\nHost: x\r\nDepth: 0\r\nContent-Type: text/xml\r\n%s"
                b"Content-Length: %d\r\n\r\n%s")
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(propfind % (b"", len(PROPFIND), PROPFIND))
        first = s.recv(65536)
        assert first.startswith(b"HTTP/1.1 401") and b"Connection: close" not in first, first
        auth = f"Authorization: {AUTH}\r\n".encode()
        s.sendall(propfind % (auth, len(PROPFIND), PROPFIND) + propfind % (auth + b"Connection: close\r\n",
                                                                          len(PROPFIND), PROPFIND))
        rest = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
    assert rest.count(b"HTTP/1.1 207") == 2, rest[:500]


# --------------------------------------------------------------- connections


def test_idle_and_slowloris_connections_hold_no_worker(gateway_factory):
    timeout_s = 4.0
    r = gateway_factory(protocols=("http",), sections={"http": {
        "threads": 4, "header_timeout_s": timeout_s, "max_connections_per_ip": 400}})
    port = r.port("http")
    handle = r.handles["http"]
    idle = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(200)]
    half = []
    for _ in range(20):  # request heads that stop half-way
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(b"PROPFIND /dav/ HTTP/1.1\r\nHost: x\r\nDepth: 1\r\n")
        half.append(s)
    slow = socket.create_connection(("127.0.0.1", port), timeout=30)
    slow_closed_after: list[float] = []

    def slowloris() -> None:  # one header byte a second, for at most 20 s
        started = time.monotonic()
        data = b"GET /api/v1/fs/list?path=/ HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        try:
            for i in range(len(data)):
                if time.monotonic() - started > 20:
                    return
                slow.sendall(data[i:i + 1])
                if select.select([slow], [], [], 1.0)[0]:
                    break  # the server answered or closed
            slow_closed_after.append(time.monotonic() - started)
        except OSError:
            slow_closed_after.append(time.monotonic() - started)

    loris = threading.Thread(target=slowloris, daemon=True)
    loris.start()
    try:
        with Bystander(port, slowest=6.0) as b:
            time.sleep(timeout_s + 3)
        assert len(b.times) >= 9
        loris.join(30)
        assert slow_closed_after and slow_closed_after[0] < timeout_s + 4, slow_closed_after
        # Idle and half-sent connections were closed at the header deadline.
        for s in idle[:5] + half[:5]:
            s.settimeout(5)
            try:
                data = s.recv(4096)
            except ConnectionResetError:
                data = b""
            assert data == b"" or data.startswith(b"HTTP/1.1 408"), data
        deadline = time.monotonic() + 10
        while handle.open_connections > 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert handle.open_connections <= 2
        assert metric(port, "header_timeout") >= 200
    finally:
        for s in idle + half + [slow]:
            s.close()
    healthy(port)


def test_slow_bodies_from_one_address_take_at_most_its_share_of_workers(gateway_factory):
    """Complete heads of uploads whose bodies then trickle (one byte every few
    seconds, each read within cheroot's timeout) each hold a worker: one
    address gets at most max_workers_per_ip of them, the rest of its
    requests wait, and other clients keep being served."""
    r = gateway_factory(protocols=("http",), sections={"http": {"threads": 6, "max_workers_per_ip": 2}})
    port = r.port("http")
    auth = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode())
    slow = []
    for i in range(8):
        s = _connect(port, "127.0.0.2")
        s.sendall(b"PUT /dav/slow-%d.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\n"
                  b"Content-Length: 1000\r\n\r\nx" % (i, auth))
        slow.append(s)
    stop = threading.Event()

    def trickle() -> None:  # a byte on each every 2 s, for at most 16 s
        for _ in range(8):
            if stop.wait(2):
                return
            for s in slow:
                try:
                    s.sendall(b"x")
                except OSError:
                    pass

    feeder = threading.Thread(target=trickle, daemon=True)
    feeder.start()
    try:
        with Bystander(port, slowest=6.0) as b:
            time.sleep(6)
        assert len(b.times) >= 9
    finally:
        stop.set()
        feeder.join(20)
        for s in slow:
            s.close()
    healthy(port)


def test_idle_tls_connections_do_not_stall_the_handshakes_of_others(gateway_factory):
    r = gateway_factory(protocols=("http",), sections={"http": {"tls": True, "header_timeout_s": 3.0}})
    port = r.port("http")
    idle = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(30)]
    half = socket.create_connection(("127.0.0.1", port), timeout=30)
    half.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # the start of a ClientHello
    try:
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", auth=("alice", PASSWORDS["alice"]), verify=False,
                          timeout=30) as c:
            for i in range(5):
                t = time.monotonic()
                with httpx.Client(base_url=f"https://127.0.0.1:{port}", auth=("alice", PASSWORDS["alice"]),
                                  verify=False, timeout=30) as fresh:  # a new handshake each time
                    assert fresh.request("PROPFIND", "/dav/", headers={"Depth": "0"}).status_code == 207
                assert c.get("/api/v1/fs/list", params={"path": "/"}).status_code == 200
                assert time.monotonic() - t < 5
        half.settimeout(10)
        try:
            assert half.recv(100) == b""  # closed at the header deadline
        except ConnectionResetError:
            pass
    finally:
        for s in idle + [half]:
            s.close()
    assert metric_tls(port, "header_timeout") >= 30
    with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:  # plain HTTP on the TLS port
        plain.sendall(b"GET /dav/ HTTP/1.1\r\nHost: x\r\n\r\n")
        assert plain.recv(4096).startswith(b"HTTP/1.1 400 Bad Request")


def metric_tls(port: int, limit: str) -> int:
    text = httpx.get(f"https://127.0.0.1:{port}/metrics", auth=("admin", PASSWORDS["admin"]), timeout=10,
                     verify=False).text
    m = re.search(rf'^gateway_refused_total{{protocol="http",limit="{limit}"}} (\d+)', text, re.M)
    return int(m.group(1)) if m else 0


def _connect(port: int, source: str) -> socket.socket:
    s = socket.socket()
    s.settimeout(10)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def _refused(s: socket.socket) -> bytes:
    try:
        data = s.recv(4096)
    except ConnectionResetError:
        data = b""
    return data


def test_connections_in_all_and_per_address_are_bounded(gateway_factory):
    r = gateway_factory(protocols=("http",), sections={"http": {"max_connections": 6, "max_connections_per_ip": 4}})
    port = r.port("http")
    held = [_connect(port, "127.0.0.2") for _ in range(4)]
    try:
        time.sleep(0.3)
        extra = _connect(port, "127.0.0.2")
        data = _refused(extra)
        extra.close()
        assert data.startswith(b"HTTP/1.1 503") and b"from your address" in data, data
        held += [_connect(port, "127.0.0.3") for _ in range(2)]
        time.sleep(0.3)
        extra = _connect(port, "127.0.0.4")
        data = _refused(extra)
        extra.close()
        assert data.startswith(b"HTTP/1.1 503") and b"too many connections open" in data, data
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 10
    while r.handles["http"].open_connections and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric(port, "connections_per_address") >= 1
    assert metric(port, "connections_total") >= 1
    healthy(port)


def test_header_size_and_count_are_bounded(gateway_factory):
    r = gateway_factory(protocols=("http",), sections={"http": {"max_header_bytes": 8192, "max_header_count": 20}})
    port = r.port("http")
    status, _, body = exchange(port, b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 30 + b"\r\n")
    assert status == 431 and b"at most 20 header fields" in body
    status, _, body = exchange(port, b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: x\r\nX-A: " + b"b" * 9000 + b"\r\n\r\n")
    assert status == 431 and b"8192 bytes" in body
    status, _, _ = exchange(port, b"GET /dav/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 414
    assert metric(port, "too_many_headers") == 1 and metric(port, "header_too_large") == 1
    status, _, _ = exchange(port, b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                            + b"X-A: b\r\n" * 15 + b"\r\n")
    assert status == 200
    healthy(port)


# --------------------------------------------------------------- bad bytes


def test_bad_bytes_get_a_400_with_its_body_and_no_traceback(gateway_factory, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    r = gateway_factory(protocols=("http",))
    port = r.port("http")
    auth = f"Authorization: {AUTH}\r\n".encode()
    close = b"Host: x\r\nConnection: close\r\n"
    # Invalid UTF-8 in the path, before and after authentication.
    for url in (b"/dav/%ff%fe.txt", b"/dav/a%c3", b"/api/v1/fs/%ff"):
        for extra in (b"", auth):
            status, _, body = exchange(port, b"GET " + url + b" HTTP/1.1\r\n" + close + extra + b"\r\n")
            assert status == 400 and b"not valid UTF-8" in body, (url, status, body)
    status, _, _ = exchange(port, b"GET /dav/\xff\xfe HTTP/1.1\r\n" + close + auth + b"\r\n")
    assert status == 400
    # A path above the WebDAV root: 400 whose Content-Length is its body (exchange checks).
    for extra in (b"", auth):
        status, headers, body = exchange(port, b"GET /dav/../x HTTP/1.1\r\n" + close + extra + b"\r\n")
        assert status == 400 and body and b"above /dav" in body, (status, headers, body)
    # JSON nested 100,000 deep.
    deep = b"[" * 100_000 + b"]" * 100_000
    for url in (b"/api/v1/fs/mkdir", b"/api/v1/fs/copy"):
        status, _, body = exchange(port, b"POST " + url + b" HTTP/1.1\r\n" + close + auth
                                   + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(deep) + deep)
        assert status == 400 and b"nested deeper" in body, (status, body)
    status, _, body = exchange(port, b"POST /ui/login HTTP/1.1\r\n" + close
                               + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(deep) + deep)
    assert 400 <= status < 500, (status, body)
    # Garbage chunk sizes, in small bodies and in uploads.
    for garbage in (b"zz", b"-5", b"0x10", b"1" * 40, b"\xff\xfe"):
        chunks = b"3\r\nabc\r\n" + garbage + b"\r\nabc\r\n0\r\n\r\n"
        for method, url, ctype in ((b"PROPFIND", b"/dav/", b"text/xml"), (b"PUT", b"/dav/chunked.txt", b"text/plain"),
                                   (b"POST", b"/api/v1/fs/mkdir", b"application/json"),
                                   (b"PUT", b"/api/v1/fs/content?path=/chunked2.txt", b"text/plain")):
            status, _, body = exchange(port, method + b" " + url + b" HTTP/1.1\r\n" + close + auth
                                       + b"Content-Type: " + ctype + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
            assert status == 400 and b"chunk" in body, (garbage, method, url, status, body)
    # A Content-Length that is not a whole number, or that comes with chunks.
    for length in (b"-1", b"+5", b"1e3", b"5, 5"):
        status, _, body = exchange(port, b"PUT /dav/neg.txt HTTP/1.1\r\n" + close + auth
                                   + b"Content-Length: " + length + b"\r\n\r\nhello")
        assert status == 400, (length, status, body)
    status, _, body = exchange(port, b"POST /api/v1/fs/mkdir HTTP/1.1\r\n" + close + auth
                               + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert status == 400 and b"chunked" in body
    assert metric(port, "bad_chunked") >= 10 and metric(port, "bad_url") >= 6
    healthy(port)
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err, (out + err)[-3000:]
    logged = [rec for rec in caplog.records if rec.exc_info or "Traceback" in rec.getMessage()]
    assert not logged, [rec.getMessage() for rec in logged]
