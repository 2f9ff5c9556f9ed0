"""A big PROPFIND listing is sent as the storage lists it
(protocols.webdav.propfind): what a client sees when the storage fails
before the 207's head went out (an error status) and after it (a cut
connection: an incomplete reply, never a 207 that looks complete), and that
the listing's read of the view ends with the reply, however it ends."""

from __future__ import annotations

import base64
import http.client
import logging
import shutil
import socket
import subprocess

import pytest

from gateway import errors as E
from conftest import PASSWORDS, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

FILES = 700  # more than two chunks of 256


@pytest.fixture
def gateway(gateway_factory):
    running = gateway_factory(("http",))
    big = running.data / "big"
    big.mkdir()
    for i in range(FILES):
        (big / f"f{i:04d}.txt").write_bytes(b"x" * (i % 5))
    return running


def _failing_after(running, monkeypatch, n: int) -> None:
    """The root mount's listings yield ``n`` members, then the storage goes away."""
    mount, _ = running.gw.ops.namespace.resolve("/")
    backend = mount.backend
    listed = backend.iterdir

    def iterdir(path, shown_as=None):
        for i, e in enumerate(listed(path, shown_as=shown_as)):
            if i == n:
                raise E.BackendUnavailable("the storage went away")
            yield e

    monkeypatch.setattr(backend, "iterdir", iterdir)


def _request(path: str = "/dav/big/") -> bytes:
    auth = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
    return (f"PROPFIND {path} HTTP/1.1\r\nHost: x\r\nDepth: 1\r\nAuthorization: Basic {auth}\r\n"
            "Content-Length: 0\r\n\r\n").encode()


def _raw_reply(port: int) -> bytes:
    """All the server sends to one PROPFIND until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(_request())
        out = bytearray()
        while data := s.recv(1 << 16):
            out += data
    return bytes(out)


def test_a_failure_after_the_head_cuts_the_connection(gateway, monkeypatch, caplog):
    """The storage fails after 300 members (the head and the first chunk
    are sent): the connection is closed without the last chunk, the body
    has no closing tag, and http.client reports an incomplete read."""
    _failing_after(gateway, monkeypatch, 300)
    port = gateway.port("http")
    caplog.set_level(logging.WARNING, logger="gateway.webdav")
    raw = _raw_reply(port)  # returns: the server closed the connection
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 207 Multi-Status\r\n")
    assert b"Transfer-Encoding: chunked" in head and b"Content-Length" not in head
    assert body.count(b"<ns0:response>") == 1 + 256  # the folder and the first chunk arrived
    assert not body.endswith(b"0\r\n\r\n")  # no last chunk ...
    assert b"</ns0:multistatus>" not in body  # ... and no end of the document
    assert any("the listing failed after 256 members" in r.getMessage() for r in caplog.records)

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("PROPFIND", "/dav/big/", skip_accept_encoding=True)
    conn.putheader("Depth", "1")
    conn.putheader("Authorization", "Basic " + base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode())
    conn.putheader("Content-Length", "0")
    conn.endheaders()
    r = conn.getresponse()
    assert r.status == 207
    with pytest.raises(http.client.IncompleteRead):
        r.read()
    conn.close()
    if shutil.which("curl"):  # exit 18: "transfer closed with outstanding read data remaining"
        done = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-X", "PROPFIND", "-H", "Depth: 1", "-u",
                               f"alice:{PASSWORDS['alice']}", f"http://127.0.0.1:{port}/dav/big/"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 18, (done.returncode, done.stderr)
    # The listing's read of the view ended with the cut.
    wait_until(lambda: not gateway.gw.store._reads, 10, "the listing's read to end")


def test_a_failure_before_the_head_is_an_error_status(gateway, monkeypatch):
    """Within the first 257 members nothing is sent yet: a 503 with its
    length, and the connection stays usable."""
    _failing_after(gateway, monkeypatch, 100)
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port("http"), timeout=30)
    auth = "Basic " + base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
    conn.request("PROPFIND", "/dav/big/", headers={"Depth": "1", "Authorization": auth})
    r = conn.getresponse()
    assert r.status == 503 and int(r.getheader("Content-Length")) == len(r.read())
    monkeypatch.undo()
    conn.request("PROPFIND", "/dav/big/", headers={"Depth": "1", "Authorization": auth})
    r = conn.getresponse()
    body = r.read()
    assert r.status == 207 and body.count(b"<ns0:response>") == FILES + 1
    assert body.endswith(b"</ns0:multistatus>")
    conn.close()
    assert not gateway.gw.store._reads


def test_a_client_that_leaves_mid_listing_ends_its_read(gateway):
    """A client that reads the head and goes: the listing's read of the
    view (which holds back a committed job's cleanup) ends."""
    with socket.create_connection(("127.0.0.1", gateway.port("http")), timeout=30) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(_request())
        assert s.recv(64).startswith(b"HTTP/1.1 207")
    wait_until(lambda: not gateway.gw.store._reads, 30, "the listing's read to end")
