"""``Expect: 100-continue`` (protocols.http_request): "100 Continue" is sent
when the body is first read, so a PUT refused before that (a bad login, no
permission) is answered while the client still holds its body back, and
nothing of it is sent for nothing. Checked on the wire with a raw socket,
and with curl, which sends the header for any upload over 1 KiB."""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess

import pytest

from conftest import PASSWORDS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

BODY = b"0123456789" * 1000


@pytest.fixture
def gateway(gateway_factory):
    running = gateway_factory(("http",), users={"alice": {"path_permissions": {"/ro": ["list", "download"]}}})
    (running.data / "ro").mkdir()
    return running


def _head(path: str, password: str, length: int = len(BODY)) -> bytes:
    auth = base64.b64encode(f"alice:{password}".encode()).decode()
    return (f"PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nContent-Length: {length}\r\n"
            "Expect: 100-continue\r\n\r\n").encode()


def _read_until(s: socket.socket, end: bytes) -> bytes:
    out = b""
    while end not in out:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    return out


@pytest.mark.parametrize("path,password,status", [
    ("/dav/new.txt", "wrong", b"401"),
    ("/dav/ro/new.txt", PASSWORDS["alice"], b"403"),
], ids=["bad-login", "no-permission"])
def test_a_refused_put_is_answered_before_its_body_is_asked_for(gateway, path, password, status):
    with socket.create_connection(("127.0.0.1", gateway.port("http")), timeout=30) as s:
        s.sendall(_head(path, password))
        reply = _read_until(s, b"\r\n\r\n")  # the body is held back: only the final reply can come
        assert reply.startswith(b"HTTP/1.1 " + status), reply
        assert b"100 Continue" not in reply
        assert b"Connection: close" in reply.split(b"\r\n\r\n")[0], reply  # the body never came: no keep-alive
    assert not (gateway.data / path.removeprefix("/dav/")).exists()


def test_an_accepted_put_gets_100_continue_then_its_reply_on_a_kept_connection(gateway):
    with socket.create_connection(("127.0.0.1", gateway.port("http")), timeout=30) as s:
        s.sendall(_head("/dav/new.txt", PASSWORDS["alice"]))
        assert _read_until(s, b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(BODY)
        reply = _read_until(s, b"\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 201"), reply
        assert b"Connection: close" not in reply
        s.sendall(_head("/dav/second.txt", PASSWORDS["alice"], 3))  # the same connection goes on
        assert _read_until(s, b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"abc")
        assert _read_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 20")
    assert (gateway.data / "new.txt").read_bytes() == BODY
    assert (gateway.data / "second.txt").read_bytes() == b"abc"


def test_curl_uploads_with_expect_and_is_refused_without_sending_the_body(gateway, tmp_path):
    curl = shutil.which("curl")
    assert curl, "curl is needed (scripts/test installs it)"
    src = tmp_path / "up.bin"
    src.write_bytes(BODY * 100)  # 1 MB: curl sends Expect: 100-continue
    base = f"http://127.0.0.1:{gateway.port('http')}/dav"
    ok = subprocess.run([curl, "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_upload}", "-T", str(src),
                         "-u", f"alice:{PASSWORDS['alice']}", f"{base}/up.bin"], capture_output=True, text=True,
                        timeout=60)
    assert ok.stdout == f"201 {len(BODY) * 100}", (ok.stdout, ok.stderr)
    assert (gateway.data / "up.bin").read_bytes() == BODY * 100
    refused = subprocess.run([curl, "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_upload}", "-T", str(src),
                              "-u", f"alice:{PASSWORDS['alice']}", f"{base}/ro/up.bin"], capture_output=True,
                             text=True, timeout=60)
    assert refused.stdout == "403 0", (refused.stdout, refused.stderr)  # no byte of the body was sent
