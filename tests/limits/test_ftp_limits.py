"""The FTP front end under attack and under load (issue #24): each test
makes the attack against a running gateway over 127.0.0.1, asserts the
bound holds with a clear refusal, that a well-behaved client is served
meanwhile, and that the server is healthy afterwards."""

from __future__ import annotations

import ftplib
import io
import logging
import os
import random
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import PASSWORDS, wait_until
from gateway import metrics

pytestmark = pytest.mark.timeout(120)


# ---------------------------------------------------------------- helpers


class Raw:
    """A control connection driven byte by byte."""

    def __init__(self, port: int, source: str = "127.0.0.1", timeout: float = 20) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""

    def line(self) -> str:
        """The next reply line; '' once the server closed the connection."""
        while b"\r\n" not in self._buf:
            try:
                chunk = self.sock.recv(4096)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                rest, self._buf = self._buf, b""
                return rest.decode("utf-8", "replace")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def reply(self) -> str:
        """The next complete reply (its last line)."""
        line = self.line()
        while len(line) > 3 and line[3] == "-":
            line = self.line()
            while line and not (line[:3].isdigit() and line[3:4] == " "):
                line = self.line()
        return line

    def cmd(self, text: bytes | str) -> str:
        self.sock.sendall((text.encode() if isinstance(text, str) else text) + b"\r\n")
        return self.reply()

    def login(self, user: str = "alice") -> None:
        assert self.reply().startswith("220")
        assert self.cmd(f"USER {user}").startswith("331")
        assert self.cmd(f"PASS {PASSWORDS[user]}").startswith("230")

    def closed_by_server(self) -> bool:
        """Whether the server closed the connection (reads until EOF)."""
        while True:
            try:
                if not self.sock.recv(4096):
                    return True
            except ConnectionResetError:
                return True
            except socket.timeout:
                return False

    def close(self) -> None:
        self.sock.close()


def client(r, source: str = "127.0.0.1", user: str = "alice") -> ftplib.FTP:
    f = ftplib.FTP()
    f.encoding = "utf-8"
    f.connect("127.0.0.1", r.port("ftp"), timeout=30, source_address=(source, 0))
    f.login(user, PASSWORDS[user])
    return f


def works(r, source: str = "127.0.0.2") -> None:
    """A well-behaved client logs in, uploads, lists and reads back."""
    name = f"ok-{random.randrange(10**9)}.txt"
    with client(r, source) as f:
        f.storbinary(f"STOR {name}", io.BytesIO(b"fine"))
        assert name in f.nlst()
        out = io.BytesIO()
        f.retrbinary(f"RETR {name}", out.write)
        assert out.getvalue() == b"fine"
        f.delete(name)


def refused(r, limit: str) -> float:
    """How often the metrics page counts a refusal by ``limit``."""
    key = f'gateway_refused_total{{protocol="ftp",limit="{limit}"}} '
    for line in metrics.render(r.gw.store.engine).splitlines():
        if line.startswith(key):
            return float(line.split()[-1])
    return 0.0


def slots(r) -> tuple[int, int]:
    return r.handles["ftp"].server.slots.counts()


@pytest.fixture
def ftp_gw(gateway_factory):
    return gateway_factory(protocols=("ftp",))


# ------------------------------------------------------------ command lines


@pytest.mark.parametrize("segments", [2, 1])
def test_a_line_too_long_is_refused_whole_and_closes_the_connection(ftp_gw, segments):
    before = refused(ftp_gw, "line_too_long")
    raw = Raw(ftp_gw.port("ftp"))
    raw.login()
    head = b"NOOP " + b"A" * 3000
    tail = b"AAA\r\nMKD smuggled\r\n"
    if segments == 2:  # the tail arrives as a packet of its own
        raw.sock.sendall(head)
        time.sleep(0.3)
        raw.sock.sendall(tail)
    else:
        raw.sock.sendall(head + tail)
    replies = []
    while (line := raw.line()):
        replies.append(line)
    assert replies and replies[0].startswith("500 ") and "2048 bytes" in replies[0], replies
    assert len(replies) == 1, replies  # nothing answered for the tail
    assert raw.closed_by_server()
    raw.close()
    assert not (ftp_gw.data / "smuggled").exists()
    assert refused(ftp_gw, "line_too_long") == before + 1
    works(ftp_gw)
    wait_until(lambda: slots(ftp_gw) == (0, 0), 20, "the slots freed")


def test_a_line_at_the_limit_is_a_command(ftp_gw):
    raw = Raw(ftp_gw.port("ftp"))
    raw.login()
    name = "n" * (2048 - len("MKD /"))
    assert raw.cmd(f"MKD /{name}").startswith(("257", "553", "550"))  # the core decides, not the line limit
    assert raw.cmd("NOOP").startswith("200")
    raw.close()


def test_invalid_utf8_is_refused_not_replaced(ftp_gw):
    before = refused(ftp_gw, "invalid_utf8")
    raw = Raw(ftp_gw.port("ftp"))
    raw.login()
    reply = raw.cmd(b"MKD bad-\xff\xfe-name")
    assert reply.startswith("501 ") and "UTF-8" in reply
    assert raw.cmd(b"STOR x\xc3(").startswith("501 ")
    assert os.listdir(ftp_gw.data) == []  # no folder named with U+FFFD
    assert raw.cmd("MKD ünï").startswith("257")  # real UTF-8 still works
    assert raw.cmd("NOOP").startswith("200")
    raw.close()
    assert os.listdir(ftp_gw.data) == ["ünï"]
    assert refused(ftp_gw, "invalid_utf8") == before + 2


# ----------------------------------------------------------- passive ports


def test_passive_ports_under_concurrent_load_never_drop_a_connection(gateway_factory):
    """40 clients × 6 PASV+LIST over 8 passive ports: every listing works
    or gets a clean 425, no control connection is dropped, and no data
    port is taken outside the range."""
    lo = random.randrange(61000, 65000)  # above the kernel's ephemeral ports, which client sockets take
    r = gateway_factory(protocols=("ftp",), sections={"ftp": {
        "passive_ports": f"{lo}-{lo + 7}", "max_connections_per_ip": 64, "max_unauthenticated_per_ip": 64}})
    (r.data / "a.txt").write_bytes(b"x")
    ok, busy, errors = [], [], []

    def run() -> None:
        try:
            f = client(r)
            for _ in range(6):
                try:
                    assert f.nlst() == ["a.txt", "slow"]
                    ok.append(1)
                except ftplib.error_temp as exc:
                    assert str(exc).startswith("425 "), exc
                    busy.append(1)
            f.quit()
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(repr(exc))

    threads = [threading.Thread(target=run) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(100)
    assert not errors, errors[:5]
    assert len(ok) + len(busy) == 240 and len(ok) > 0
    if busy:
        assert refused(r, "passive_ports") >= len(busy)
    works(r)
    wait_until(lambda: slots(r) == (0, 0), 20, "the slots freed")


def test_a_used_up_passive_range_answers_425(gateway_factory):
    lo = random.randrange(61000, 65000)  # above the kernel's ephemeral ports, which client sockets take
    r = gateway_factory(protocols=("ftp",), sections={"ftp": {"passive_ports": f"{lo}-{lo}"}})
    first, second = client(r), client(r)
    try:
        assert first.sendcmd("PASV").startswith("227")  # holds the only port
        with pytest.raises(ftplib.error_temp, match="^425 No passive data port"):
            second.sendcmd("PASV")
        assert second.sendcmd("NOOP").startswith("200")  # the session goes on
    finally:
        first.close()
        second.close()


# ----------------------------------------------------------- storage errors


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs, so that writing to it fails with a real ENOSPC."""
    where = tmp_path / "tiny"
    where.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root (for a real ENOSPC)")
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _upload_expecting_failure(f: ftplib.FTP, cmd: str, data: bytes) -> str:
    f.voidcmd("TYPE I")
    conn = f.transfercmd(cmd)
    try:
        conn.sendall(data)
    except OSError:
        pass  # the server closed the data connection when the disk was full
    finally:
        conn.close()
    with pytest.raises(ftplib.Error) as ei:
        f.voidresp()
    return str(ei.value)


def test_a_full_disk_gets_a_reply_on_the_control_channel(gateway_factory, tiny_disk, caplog):
    r = gateway_factory(protocols=("ftp",), mounts={"/": f"file://{tiny_disk}"})
    caplog.set_level(logging.INFO)
    f = client(r)
    big = os.urandom(3 << 20)
    reply = _upload_expecting_failure(f, "STOR big.bin", big)
    assert reply.startswith("452 ") and "full" in reply, reply
    assert f.sendcmd("NOOP").startswith("200")  # the control connection goes on
    assert os.listdir(tiny_disk) == []  # nothing half-written, no temporary left
    f.storbinary("STOR small.bin", io.BytesIO(b"s" * 100_000))
    reply = _upload_expecting_failure(f, "APPE small.bin", big)
    assert reply.startswith("452 "), reply
    # the local disk continues a file in place (so a broken APPE can be
    # resumed): what was there before is intact, what fitted stays
    kept = (tiny_disk / "small.bin").read_bytes()
    assert kept[:100_000] == b"s" * 100_000 and kept[100_000:] == big[:len(kept) - 100_000]
    assert sorted(os.listdir(tiny_disk)) == ["small.bin"]
    f.delete("small.bin")  # room again: the same session uploads and reads back
    f.storbinary("STOR again.bin", io.BytesIO(b"a" * 200_000))
    out = io.BytesIO()
    f.retrbinary("RETR again.bin", out.write)
    assert out.getvalue() == b"a" * 200_000
    f.quit()
    tracebacks = [rec for rec in caplog.records if rec.exc_info]
    assert not tracebacks, [rec.getMessage() for rec in tracebacks]


# --------------------------------------------------------- connection slots


def test_idle_unauthenticated_sockets_neither_lock_out_nor_stay(gateway_factory):
    """70 idle sockets from 127.0.0.1: at most max_unauthenticated_per_ip
    are let in, the rest are refused at once; none of them holds a session
    slot (max_connections is 4 here), a client from another address logs in
    and works, and the idle ones are closed after login_timeout_s."""
    r = gateway_factory(protocols=("ftp",), sections={"ftp": {
        "login_timeout_s": 5, "max_connections": 4, "max_unauthenticated_per_ip": 16}})
    before = refused(r, "unauthenticated_per_ip")
    idle = [Raw(r.port("ftp"), timeout=15) for _ in range(70)]
    greetings = [s.line() for s in idle]
    admitted = [s for s, g in zip(idle, greetings) if g.startswith("220")]
    turned_away = [g for g in greetings if not g.startswith("220")]
    assert len(admitted) == 16, greetings
    assert all(g.startswith("421 ") and "waiting to log in" in g for g in turned_away), set(turned_away)
    assert refused(r, "unauthenticated_per_ip") == before + 54
    t = time.monotonic()
    works(r, "127.0.0.2")
    works(r, "127.0.0.3")
    assert slots(r)[0] == 16
    # the idle ones are closed once their grace time is over
    for s in admitted:
        assert s.line().startswith("421 Not logged in within 5 s")
        assert s.closed_by_server()
        s.close()
    assert time.monotonic() - t < 20
    for s in idle:
        s.close()
    wait_until(lambda: slots(r) == (0, 0), 20, "the slots freed")
    wait_until(lambda: not any(th.is_alive() for th in r.handles["ftp"].server._active_tasks), 20,
               "no session thread left")
    assert refused(r, "login_timeout") >= 16
    works(r, "127.0.0.1")  # the address that attacked may log in again
