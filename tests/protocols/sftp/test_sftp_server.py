"""The SFTP listener itself: host keys, login methods, connection limits, a
dropped connection's upload, and shutdown with clients connected."""

from __future__ import annotations

import asyncio
import logging
import stat
import subprocess
import threading
import time

import asyncssh
import pytest

from conftest import PASSWORDS
from protocols.sftp.server import HOST_KEY_FILE, host_keys
from sftp_support import connect

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


async def _server_key(port: int) -> asyncssh.SSHKey:
    async with connect(port) as (conn, _):
        return conn.get_server_host_key()


def test_generated_host_key_is_made_once_and_served(gateway_factory):
    r = gateway_factory(protocols=("sftp",))
    path = r.cfg.server.state_dir / HOST_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = host_keys(r.cfg)[0]
    assert path.with_name(HOST_KEY_FILE + ".pub").read_bytes() == key.export_public_key()
    assert host_keys(r.cfg)[0].public_data == key.public_data  # not regenerated
    assert asyncio.run(_server_key(r.port("sftp"))).public_data == key.public_data


def test_host_key_is_generated_without_ssh_keygen(gateway_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))  # the gateway makes it with asyncssh then
    r = gateway_factory(protocols=("sftp",))
    path = r.cfg.server.state_dir / HOST_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = host_keys(r.cfg)[0]
    assert path.with_name(HOST_KEY_FILE + ".pub").read_bytes() == key.export_public_key()
    assert asyncio.run(_server_key(r.port("sftp"))).public_data == key.public_data


def test_configured_host_key_is_served(gateway_factory, tmp_path):
    path = tmp_path / "my_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", str(path)], check=True)
    r = gateway_factory(protocols=("sftp",), sections={"sftp": {"host_keys": [str(path)]}})
    assert asyncio.run(_server_key(r.port("sftp"))).public_data == asyncssh.read_private_key(path).public_data
    assert not (r.cfg.server.state_dir / HOST_KEY_FILE).exists()


async def _kbdint_login(port: int) -> None:
    async with asyncssh.connect("127.0.0.1", port, username="alice", password=PASSWORDS["alice"], known_hosts=None,
                                client_keys=None, agent_path=None, preferred_auth="keyboard-interactive"):
        pass


@pytest.mark.parametrize("enabled", [False, True])
def test_keyboard_interactive_only_when_configured(gateway_factory, enabled):
    r = gateway_factory(protocols=("sftp",), sections={"sftp": {"keyboard_interactive": enabled}})
    if enabled:
        asyncio.run(_kbdint_login(r.port("sftp")))
    else:
        with pytest.raises(asyncssh.PermissionDenied):
            asyncio.run(_kbdint_login(r.port("sftp")))


def test_connection_limit(gateway_factory):
    r = gateway_factory(protocols=("sftp",), sections={"sftp": {"max_connections": 2}})

    async def go():
        async with connect(r.port("sftp")), connect(r.port("sftp")):
            with pytest.raises((asyncssh.Error, OSError)):
                async with connect(r.port("sftp")):
                    pass
        for _ in range(50):  # the server notices the others are gone a moment later
            try:
                async with connect(r.port("sftp")) as (_, sftp):
                    assert await sftp.listdir("/") is not None
                return
            except (asyncssh.Error, OSError):
                await asyncio.sleep(0.1)
        pytest.fail("no room again after the other connections closed")

    asyncio.run(go())


def test_dropped_connection_keeps_the_partial_upload_for_resume(gateway_factory):
    r = gateway_factory(protocols=("sftp",))

    async def go():
        async with connect(r.port("sftp")) as (conn, sftp):
            f = await sftp.open("/partial.bin", "wb")
            await f.write(b"a" * 100_000)
            conn.abort()
        deadline = time.monotonic() + 10
        while not (r.data / "partial.bin").exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert (r.data / "partial.bin").read_bytes() == b"a" * 100_000

    asyncio.run(go())


def test_close_with_connected_clients_is_prompt(gateway_factory):
    r = gateway_factory(protocols=("sftp",))

    async def go():
        async with connect(r.port("sftp")) as (_, sftp):
            f = await sftp.open("/open.bin", "wb")
            await f.write(b"z" * 10)
            t0 = time.monotonic()
            await asyncio.get_running_loop().run_in_executor(None, r.handles["sftp"].close)
            assert time.monotonic() - t0 < 5
        with pytest.raises(OSError):
            async with connect(r.port("sftp")):
                pass

    asyncio.run(go())
    assert (r.data / "open.bin").read_bytes() == b"z" * 10
    r.handles["sftp"].close()  # idempotent


def test_local_disk_calls_skip_the_thread_hop_until_the_disk_stalls(gateway_factory, monkeypatch, caplog):
    """Metadata calls on the local disk run on the listener's event loop (a
    hop to a worker thread costs more than the call); on another storage they
    go to the worker pool. One local call that stalls sends every call to the
    pool, so a stalled disk holds up no other session."""
    r = gateway_factory(protocols=("sftp",))
    (r.data / "a.txt").write_bytes(b"a")
    (r.data / "stalled.txt").write_bytes(b"s")
    ops, real_stat = r.gw.ops, r.gw.ops.stat
    threads: list[tuple[str, str]] = []

    def stat(session, path, *args, **kwargs):
        threads.append((path, threading.current_thread().name))
        if path == "/stalled.txt":
            time.sleep(0.5)  # the disk does not answer for half a second
        return real_stat(session, path, *args, **kwargs)

    monkeypatch.setattr(ops, "stat", stat)

    async def timed(sftp: asyncssh.SFTPClient, path: str) -> float:
        started = time.monotonic()
        await sftp.stat(path)
        return time.monotonic() - started

    async def go():
        async with connect(r.port("sftp")) as (_, sftp), connect(r.port("sftp"), "bob") as (_, other):
            await sftp.mkdir("/slow/d")
            await sftp.stat("/a.txt")
            await sftp.stat("/slow/d")
            assert threads == [("/a.txt", "sftp"), ("/slow/d", threads[1][1])]
            assert threads[1][1].startswith("sftp-core")
            with caplog.at_level("WARNING", logger="gateway.sftp"):
                await sftp.stat("/stalled.txt")  # on the event loop: the one stall the gateway waits out
            assert "stalled.txt took" in caplog.text
            stalled = asyncio.ensure_future(timed(sftp, "/stalled.txt"))
            await asyncio.sleep(0.05)
            assert await timed(other, "/a.txt") < 0.3  # not behind the stalled call
            assert await stalled >= 0.5
            assert threads[-1][1].startswith("sftp-core")
            caplog.clear()
            r.handles["sftp"].ctx.pool_only_until = 0  # the pause is over; the disk is still slow
            with caplog.at_level("INFO", logger="gateway.sftp"):
                await sftp.stat("/stalled.txt")
            assert [rec.levelname for rec in caplog.records if "took" in rec.getMessage()] == ["INFO"]

    asyncio.run(go())


def test_a_disk_that_stalls_once_pauses_the_loop_calls_briefly_one_that_stays_slow_longer():
    """The pause after a stall: short after a quiet spell (a busy disk's
    journal commit costs seconds of worker hops, not a minute), doubled by
    each stall soon after the last pause, up to SLOW_DISK_PAUSE_S."""
    from protocols.sftp.handler import SLOW_DISK_FIRST_PAUSE_S, SLOW_DISK_PAUSE_S, Context

    ctx = Context(gw=None, pool=None, budget_s=1.0)  # type: ignore[arg-type]
    now, pauses = 1000.0, []
    for _ in range(8):  # stalls again as soon as each pause is over
        pauses.append(ctx.disk_stalled(now))
        now = ctx.pool_only_until + 0.1
    assert pauses[:3] == [SLOW_DISK_FIRST_PAUSE_S, 2 * SLOW_DISK_FIRST_PAUSE_S, 4 * SLOW_DISK_FIRST_PAUSE_S]
    assert pauses[-1] == SLOW_DISK_PAUSE_S and pauses == sorted(pauses)
    assert ctx.disk_stalled(ctx.pool_only_until + SLOW_DISK_PAUSE_S) == SLOW_DISK_FIRST_PAUSE_S  # quiet since


def test_asyncssh_debug_lines_are_written_only_when_asked_for(gateway_factory, caplog):
    """With debug logging off, asyncssh's per-request debug lines cost no
    formatting; with it on, an SFTP request is logged as asyncssh writes it."""
    from asyncssh.logging import SSHLogger

    class Arg:
        shown = 0

        def __str__(self) -> str:
            Arg.shown += 1
            return "arg"

    logger = SSHLogger(context="test")
    caplog.set_level(logging.INFO, logger="asyncssh")
    logger.debug1("quiet %s", [Arg()])
    assert Arg.shown == 0 and "quiet" not in caplog.text
    caplog.set_level(logging.DEBUG, logger="asyncssh")
    logger.debug1("loud %s", [Arg()])
    assert Arg.shown == 1 and "[test] loud arg" in caplog.text

    r = gateway_factory(protocols=("sftp",))
    (r.data / "gone.txt").write_text("x")

    async def remove() -> None:
        async with connect(r.port("sftp")) as (_, sftp):
            await sftp.remove("/gone.txt")

    asyncio.run(remove())
    assert "Received remove for /gone.txt" in caplog.text and not (r.data / "gone.txt").exists()
