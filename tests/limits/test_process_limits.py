"""Process-wide bounds (issue #24): abandoned temporaries are swept, repeated
errors do not flood the log, the descriptor limit is kept with a reserve, and
names are matched in one Unicode normalisation form. Each runs against a real
gateway (in this process, or a `gateway serve` subprocess where the test kills
it or limits its descriptors)."""

from __future__ import annotations

import datetime
import ftplib
import io
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import pytest

from gateway.config import load_config
from gateway.jobs.model import Job, new_job_id
from gateway.sweep import Sweeper
from conftest import PASSWORDS, stop_process, unique_memory, wait_for_port, wait_until, write_config

REPO = Path(__file__).resolve().parents[2]
OLD = time.time() - 7200


def _ftp(port: int, user: str = "alice") -> ftplib.FTP:
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", port, timeout=20)
    ftp.login(user, PASSWORDS[user])
    return ftp


def _plant(path: Path, size: int, mtime: float = OLD) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (mtime, mtime))


def _serve(config: Path, log: Path, preexec=None) -> subprocess.Popen:
    with open(log, "ab") as err:
        return subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
                                cwd=config.parent, stdout=subprocess.DEVNULL, stderr=err, preexec_fn=preexec,
                                env={**os.environ, "PYTHONPATH": str(REPO)})


# ------------------------------------------------------------------ the sweep


@pytest.mark.timeout(120)
def test_upload_killed_by_sigkill_is_swept_by_the_restart(tmp_path):
    config = write_config(tmp_path, mounts={"/": f"file://{tmp_path / 'data'}"},
                          sections={"server": {"temp_grace_s": 1.0}, "sftp": {"enabled": False},
                                    "http": {"enabled": False}})
    port = load_config(config).ftp.port
    log = tmp_path / "gateway.log"
    (tmp_path / "data" / "in").mkdir(parents=True)
    proc = _serve(config, log)
    try:
        wait_for_port(port, proc)
        ftp = _ftp(port)
        data = ftp.transfercmd("STOR in/big.bin")
        data.sendall(b"y" * 300_000)
        temps = wait_until(lambda: [p for p in (tmp_path / "data" / "in").glob(".gw-up-*")
                                    if p.stat().st_size == 300_000], what="the upload's temporary")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        data.close()
        ftp.close()
    finally:
        stop_process(proc)
    (temp,) = temps
    assert temp.exists()  # kill -9: nothing removed it
    time.sleep(1.2)  # older than the grace time
    proc = _serve(config, log)
    try:
        wait_until(lambda: not temp.exists(), what="the sweep")
        wait_for_port(port, proc)
        ftp = _ftp(port)  # and it serves
        ftp.storbinary("STOR in/ok.bin", io.BytesIO(b"ok"))
        assert [n.rsplit("/", 1)[-1] for n in ftp.nlst("in")] == ["ok.bin"]
        ftp.quit()
    finally:
        stop_process(proc)
    text = log.read_text()
    assert f"removed abandoned temporary /in/{temp.name} (300000 bytes" in text, text[-3000:]


@pytest.mark.timeout(120)
def test_sweep_spares_live_jobs_open_uploads_and_fresh_temporaries(gateway_factory):
    r = gateway_factory(protocols=("ftp",), sections={"server": {"sweep_interval_s": 0}})
    data = r.data
    # abandoned: removed
    _plant(data / "a" / ".gw-up-0123456789ab-f.bin", 1000)
    trash = data / f".gw-trash-{new_job_id()}"
    _plant(trash / "x" / "y.txt", 700)
    os.utime(trash / "x", (OLD, OLD))
    os.utime(trash, (OLD, OLD))
    failed = Job(id=new_job_id(), queue="copy", operation="copy", src="/s", dst="/b/x", owner="alice",
                 session_id="s", protocol="test", state="failed", phase="done", stage=None)
    r.gw.store.create(failed)
    _plant(data / "b" / f".gw-stage-{failed.id}-x" / "f", 50)
    os.utime(data / "b" / f".gw-stage-{failed.id}-x", (OLD, OLD))
    # kept: a live job's stage, a fresh temporary, an upload this process is writing
    live = Job(id=new_job_id(), queue="parked", operation="copy", src="/s", dst="/b/y", owner="alice",
               session_id="s", protocol="test", stage=None)
    r.gw.store.create(live)
    _plant(data / "b" / f".gw-stage-{live.id}-y" / "f", 60)
    os.utime(data / "b" / f".gw-stage-{live.id}-y", (OLD, OLD))
    _plant(data / "a" / ".gw-up-aaaaaaaaaaaa-fresh", 10, time.time())
    ftp = _ftp(r.port("ftp"))
    conn = ftp.transfercmd("STOR a/open.bin")
    conn.sendall(b"z" * 5000)
    open_temp = wait_until(lambda: [p for p in (data / "a").glob(".gw-up-*-open.bin")], what="open upload")[0]
    os.utime(open_temp, (OLD, OLD))  # however old it looks

    sweeper = Sweeper(r.gw.namespace, r.gw.store, grace_s=600, interval_s=3600)
    removed = dict(sweeper.sweep())
    assert removed == {"/a/.gw-up-0123456789ab-f.bin": 1000, f"/{trash.name}": 700,
                       f"/b/.gw-stage-{failed.id}-x": 50}, removed
    assert (data / "b" / f".gw-stage-{live.id}-y" / "f").exists()
    assert (data / "a" / ".gw-up-aaaaaaaaaaaa-fresh").exists()
    assert open_temp.exists()
    conn.sendall(b"z" * 5000)
    conn.close()
    assert ftp.voidresp().startswith("226")
    assert (data / "a" / "open.bin").stat().st_size == 10_000
    ftp.quit()


def test_sweep_of_a_remote_like_mount(gateway_factory, caplog):
    root = unique_memory("sweep")
    r = gateway_factory(mounts={"/slow": (f"slow::memory://{root}", {"slow": {"latency_ms": 2}})},
                        sections={"server": {"sweep_interval_s": 0}})
    fs = fsspec.filesystem("memory")
    fs.pipe_file(f"/{root}/d/.gw-up-0123456789ab-f", b"q" * 123)
    fs.pipe_file(f"/{root}/d/keep.txt", b"keep")
    fs.pipe_file(f"/{root}/d/.gw-up-bbbbbbbbbbbb-new", b"n")
    fs.store[f"/{root}/d/.gw-up-0123456789ab-f"].created = datetime.datetime.fromtimestamp(OLD, datetime.timezone.utc)
    with caplog.at_level(logging.INFO, logger="gateway.sweep"):
        removed = Sweeper(r.gw.namespace, r.gw.store, grace_s=600, interval_s=3600).sweep()
    assert removed == [("/slow/d/.gw-up-0123456789ab-f", 123)]
    assert fs.exists(f"/{root}/d/keep.txt") and fs.exists(f"/{root}/d/.gw-up-bbbbbbbbbbbb-new")
    assert "removed abandoned temporary /slow/d/.gw-up-0123456789ab-f (123 bytes" in caplog.text


# ------------------------------------------------------------------ descriptors

FD_LIMIT = 200


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _fd_kinds(pid: int) -> dict[str, int]:
    """What a process's descriptors are (socket, pipe, anon_inode:[eventpoll],
    a file's folder...), counted: why a test's count is not what it expected."""
    kinds: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        kind = target.split(":", 1)[0] if target[:1] != "/" else os.path.dirname(target)
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def _http_status(port: int) -> str:
    """The status line of an unauthenticated REST request on a new
    connection, or "" when the connection is closed without one."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /api/v1/fs/list?path=/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(200).split(b"\r\n", 1)[0].decode()
    except OSError:
        return ""


def _ftp_greeting(port: int) -> str:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            return s.recv(200).decode(errors="replace")
    except OSError:
        return ""


def _fill(proc: subprocess.Popen, ports: tuple[int, ...], clients: list[socket.socket], full: int,
          most: int, probe, deadline: float) -> None:
    """Open idle connections to ``ports`` in turn until the gateway holds
    ``full`` descriptors (read from /proc, not from how many connects
    succeeded: on a loaded machine some time out in a full backlog) and
    ``probe()`` is true, never more than ``most``. Fails at ``deadline``.

    Topped up in small steps and re-counted each time: the gateway refuses
    a connection that would eat into the reserve and keeps the one before,
    so the last free descriptor is taken by whoever comes next, a probe as
    well as an attacker."""
    in_use = _open_fds(proc.pid)
    attempts = failed = 0
    while True:
        assert proc.poll() is None, "the gateway exited"
        assert in_use <= most, in_use
        if in_use >= full and probe():
            return
        assert time.monotonic() < deadline, (
            f"the gateway holds {in_use} descriptors (wanted {full} and the probe) after {len(clients)} "
            f"connections, {failed} of {attempts} connects failed")
        for _ in range(max(1, full - in_use)):
            # Each attempt goes to the next port, connected or not: a port
            # whose backlog is full must not take every later attempt.
            port = ports[attempts % len(ports)]
            attempts += 1
            try:
                clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError:
                failed += 1  # counted below by what the gateway holds
        time.sleep(0.2)  # past the guard's 50 ms recount, and the accept loops caught up
        in_use = _open_fds(proc.pid)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("reserve", [32, 0])
def test_descriptor_exhaustion_is_refused_cleanly_without_a_log_flood(tmp_path, reserve):
    """With RLIMIT_NOFILE at 200, idle connections to every port until the
    gateway holds all the descriptors it may: with a reserve, new ones are
    then refused (503, 421, SSH disconnect); with none, accept() hits EMFILE
    and pauses instead of spinning. Either way the log stays a few lines, a
    session opened before keeps working (reserve), and once the clients
    leave the gateway serves again."""
    import resource

    # No login or request-head timeout during the test (10 s by default): a
    # loaded machine may take longer than that to open the connections, and
    # the first ones closed meanwhile kept the gateway below its reserve.
    idle = {"login_timeout_s": 3600}
    config = write_config(tmp_path, mounts={"/": f"file://{tmp_path / 'data'}"},
                          sections={"server": {"descriptor_reserve": reserve},
                                    "http": {"max_connections_per_ip": 500, "max_connections": 500,
                                             "header_timeout_s": 3600.0},
                                    **{proto: {"max_connections_per_ip": 500, "max_connections": 500,
                                               "max_unauthenticated": 500, "max_unauthenticated_per_ip": 500,
                                               **idle}
                                       for proto in ("ftp", "sftp")}})
    cfg = load_config(config)
    ports = (cfg.http.port, cfg.ftp.port, cfg.sftp.port)
    log = tmp_path / "gateway.log"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))

    proc = _serve(config, log, preexec=limit)
    clients: list[socket.socket] = []
    try:
        for port in ports:
            wait_for_port(port, proc)
        before = log.stat().st_size
        ftp = _ftp(cfg.ftp.port)  # the well-behaved client, connected before the attack
        refused: set[str] = set()

        def probes_refused() -> bool:
            """A new HTTP and FTP connection each refused, at some time
            while the gateway is full (a probe that found a descriptor
            freed meanwhile is served, and the filling goes on)."""
            if _http_status(cfg.http.port) == "HTTP/1.1 503 Service Unavailable":
                refused.add("http")
            if _ftp_greeting(cfg.ftp.port).startswith("421 "):
                refused.add("ftp")
            return refused == {"http", "ftp"}

        def accept_failed() -> bool:
            return b"out of descriptors" in log.read_bytes()[before:]

        try:
            if reserve:  # every descriptor but the reserve, and then new connections are refused
                _fill(proc, ports, clients, FD_LIMIT - reserve, FD_LIMIT - reserve + 8, probes_refused,
                      time.monotonic() + 60)
            else:  # the limit itself (less the spare the guard keeps for refusing), and accept() fails
                _fill(proc, ports, clients, FD_LIMIT - 2, FD_LIMIT, accept_failed, time.monotonic() + 60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the gateway's descriptors: {_fd_kinds(proc.pid)}; its log's end:\n"
                                 + log.read_bytes()[before:][-3000:].decode(errors="replace")) from None
        if reserve:
            # the session opened before goes on: the reserve is for it
            ftp.storbinary("STOR during.txt", io.BytesIO(b"during the attack"))
            assert "during.txt" in ftp.nlst()
        time.sleep(2)  # a spinning accept loop would write thousands of lines meanwhile
        attack_log = log.read_bytes()[before:]
        # A few lines per kind of failure (each kind's tracebacks capped at
        # [logging] repeat_burst), where a spinning accept loop wrote 369 MB
        # a minute.
        assert len(attack_log) < 150_000, attack_log[-3000:]
        assert attack_log.count(b"Traceback") <= 40, attack_log[-3000:]
        if not reserve:
            assert b"out of descriptors" in attack_log, attack_log[-3000:]
        if reserve:
            assert b"Traceback" not in attack_log, attack_log[-3000:]
    finally:
        for c in clients:
            c.close()
    try:
        # released: everything serves again
        wait_until(lambda: _http_status(cfg.http.port).startswith("HTTP/1.1 401"), what="HTTP serving again")
        again = wait_until(lambda: _try_ftp(cfg.ftp.port), what="FTP serving again")
        again.storbinary("STOR after.txt", io.BytesIO(b"after"))
        again.quit()
        assert _open_fds(proc.pid) < FD_LIMIT // 2
    finally:
        stop_process(proc)
    assert proc.returncode == 0


def _try_ftp(port: int) -> ftplib.FTP | None:
    try:
        return _ftp(port)
    except (OSError, EOFError, ftplib.Error):
        return None


# ------------------------------------------------------------------ Unicode names

NFC = "caf\u00e9"
NFD = "cafe\u0301"


def _ftp_utf8(port: int) -> ftplib.FTP:
    ftp = _ftp(port)
    ftp.encoding = "utf-8"
    return ftp


def test_a_name_stored_nfd_is_listed_and_used_through_its_nfc_name(gateway_factory):
    import httpx
    from urllib.parse import quote

    r = gateway_factory(protocols=("ftp", "http"))
    (r.data / NFD).mkdir()
    (r.data / NFD / f"{NFD}.txt").write_bytes(b"stored NFD")
    for name in (NFC, NFD):  # WebDAV: either spelling of the URL reaches the file
        got = httpx.get(f"http://127.0.0.1:{r.port('http')}/dav/{quote(name)}/{quote(name)}.txt",
                        auth=("alice", PASSWORDS["alice"]), timeout=20)
        assert (got.status_code, got.content) == (200, b"stored NFD")
    ftp = _ftp_utf8(r.port("ftp"))
    assert NFC in ftp.nlst()
    assert [n.rsplit("/", 1)[-1] for n in ftp.nlst(NFC)] == [f"{NFC}.txt"]
    out = io.BytesIO()
    ftp.retrbinary(f"RETR {NFC}/{NFC}.txt", out.write)
    assert out.getvalue() == b"stored NFD"
    ftp.storbinary(f"STOR {NFC}/{NFC}.txt", io.BytesIO(b"replaced"))  # overwrites the NFD file, no twin
    assert os.listdir(r.data / NFD) == [f"{NFD}.txt"]
    assert (r.data / NFD / f"{NFD}.txt").read_bytes() == b"replaced"
    ftp.rename(f"{NFC}/{NFC}.txt", f"{NFC}/renamed.txt")
    assert os.listdir(r.data / NFD) == ["renamed.txt"]
    ftp.delete(f"{NFC}/renamed.txt")
    ftp.rmd(NFC)
    assert os.listdir(r.data) == []
    ftp.quit()


def test_nfc_and_nfd_twins_show_once_and_are_refused_not_mixed_up(gateway_factory):
    r = gateway_factory(protocols=("ftp",))
    (r.data / f"{NFC}.txt").write_bytes(b"nfc")
    (r.data / f"{NFD}.txt").write_bytes(b"nfd")
    ftp = _ftp_utf8(r.port("ftp"))
    assert [n for n in ftp.nlst() if n != "slow"] == [f"{NFC}.txt"]  # /slow: the test's second mount
    for name in (f"{NFC}.txt", f"{NFD}.txt"):
        with pytest.raises(ftplib.error_temp, match="two Unicode forms"):
            ftp.retrbinary(f"RETR {name}", io.BytesIO().write)
        with pytest.raises(ftplib.error_temp, match="two Unicode forms"):
            ftp.delete(name)
    assert (r.data / f"{NFC}.txt").read_bytes() == b"nfc" and (r.data / f"{NFD}.txt").read_bytes() == b"nfd"
    ftp.storbinary("STOR plain.txt", io.BytesIO(b"ascii names are untouched"))
    ftp.quit()


def test_the_form_is_configurable(tmp_path):
    from backends import open_backend
    from gateway.namespace import normalise, set_name_form

    (tmp_path / f"{NFC}.txt").write_bytes(b"stored NFC")
    set_name_form("NFD")
    try:
        assert normalise(f"/{NFC}.txt") == f"/{NFD}.txt"
        b = open_backend(f"file://{tmp_path}")
        assert [e.name for e in b.listing(b.join(""))] == [f"{NFD}.txt"]
        with b.open_read(b.join(f"{NFD}.txt")) as f:
            assert f.read() == b"stored NFC"
    finally:
        set_name_form("NFC")
