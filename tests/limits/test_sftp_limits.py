"""The SFTP front end under attack (issue #24): every bound holds, is refused
clearly and counted, a second well-behaved client is served meanwhile, and
nothing is left behind (sockets and served files counted in /proc/self/fd:
the gateway runs in this process; no ``.gw-up-*`` temporaries on disk).

Attackers connect from 127.0.0.2 where an address matters, the well-behaved
client from 127.0.0.1 (both loopback)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import AsyncIterator, Callable

import asyncssh
import pytest

from conftest import PASSWORDS
from gateway import metrics

KIB = 1 << 10
MIB = 1 << 20
BLOCK = 256 * KIB


def fds(data: Path) -> list[str]:
    """This process's descriptors an SFTP session may hold: sockets and
    files of the served folder (the job store's, which its pool opens when
    it likes, are left out)."""
    out = []
    for n in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{n}")
            if target.startswith(("socket:", str(data))):
                out.append(target)
    return sorted(out)


def released(data: Path, before: list[str]) -> Callable[[], bool]:
    return lambda: len(fds(data)) <= len(before)


def rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * KIB for line in f if line.startswith("VmRSS:"))


def metric(r, name: str, labels: str) -> float:
    """A sample of the gateway's /metrics page (0 when absent)."""
    text = metrics.render(r.gw.store.engine)
    m = re.search(rf'^{name}{{{re.escape(labels)}}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def refused(r, limit: str) -> float:
    return metric(r, "gateway_refused_total", f'protocol="sftp",limit="{limit}"')


def in_use(r, resource: str) -> float:
    return metric(r, "gateway_resource_in_use", f'resource="{resource}"')


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".gw-up-")]


async def eventually(check: Callable[[], bool], what: str, timeout: float = 20.0,
                     detail: Callable[[], object] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what} {detail()}")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def connect(port: int, user: str = "alice", source: str = "127.0.0.1"
                  ) -> AsyncIterator[tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient]]:
    async with asyncssh.connect("127.0.0.1", port, username=user, password=PASSWORDS[user], known_hosts=None,
                                client_keys=None, agent_path=None, preferred_auth="password",
                                local_addr=(source, 0), login_timeout=30) as conn:
        async with conn.start_sftp_client() as sftp:
            yield conn, sftp


async def well_behaved(port: int, name: str) -> None:
    """A second client's whole session: log in, upload, list, download."""
    data = os.urandom(300 * KIB)
    async with connect(port, "bob") as (_, sftp):
        async with sftp.open(f"/{name}", "wb") as f:
            await f.write(data)
        assert name in await sftp.listdir("/")
        async with sftp.open(f"/{name}", "rb") as f:
            assert await f.read() == data


def test_open_handles_per_session_are_capped(gateway_factory):
    r = gateway_factory(protocols=("sftp",), sections={"sftp": {"max_handles_per_session": 40}})
    (r.data / "f.txt").write_bytes(b"x" * 100)
    port = r.port("sftp")
    refusals = refused(r, "handles_per_session")

    async def go():
        before = fds(r.data)
        async with connect(port) as (_, sftp):
            reply = await sftp._handler._make_request(b"limits@openssh.com")
            assert asyncssh.sftp.SFTPLimits.decode(reply).max_open_handles == 40  # told the client
            connected = len(fds(r.data))
            files = []
            with pytest.raises(asyncssh.SFTPFailure, match="too many open files in this session"):
                for i in range(300):
                    files.append(await sftp.open("/f.txt") if i % 2 else await sftp.open(f"/up{i}", "wb"))
            assert len(files) == 40
            assert len(fds(r.data)) - connected <= 40 + 5
            with pytest.raises(asyncssh.SFTPFailure, match="too many open files"):
                await sftp._handler.opendir(b"/")  # folders count too
            await well_behaved(port, "during.txt")
            await files.pop().close()
            files.append(await sftp.open("/f.txt"))  # a closed handle makes room again
        await eventually(released(r.data, before), "the session's descriptors released",
                         detail=lambda: set(fds(r.data)) - set(before))
        assert temporaries(r.data) == []

    asyncio.run(go())
    assert refused(r, "handles_per_session") == refusals + 2


def test_session_channels_per_connection_are_capped(gateway_factory):
    """Each SSH session channel (an SFTP subsystem) holds buffers of its own:
    one connection opens at most max_channels_per_connection at once."""
    r = gateway_factory(protocols=("sftp",), sections={"sftp": {"max_channels_per_connection": 3}})
    port = r.port("sftp")
    refusals = refused(r, "channels_per_connection")

    async def go():
        async with connect(port) as (conn, first):
            clients = [first]
            with pytest.raises(asyncssh.ChannelOpenError):
                for _ in range(20):
                    clients.append(await conn.start_sftp_client())
            assert len(clients) == 3
            await well_behaved(port, "during-channels.txt")
            clients.pop().exit()
            for _ in range(50):  # the closed channel's place is free again
                try:
                    clients.append(await conn.start_sftp_client())
                    break
                except asyncssh.ChannelOpenError:
                    await asyncio.sleep(0.1)
            assert len(clients) == 3
            assert await clients[-1].listdir("/") is not None

    asyncio.run(go())
    assert refused(r, "channels_per_connection") >= refusals + 1


def test_read_length_is_clamped_to_what_limits_offers(gateway_factory):
    r = gateway_factory(protocols=("sftp",))
    pattern = os.urandom(512 * KIB)
    with open(r.data / "big.bin", "wb") as f:  # 192 MiB, sparse but for its first 512 KiB
        f.write(pattern)
        f.truncate(192 * MIB)
    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.005)

    async def go():
        async with connect(r.port("sftp")) as (_, sftp):
            assert sftp.limits.max_read_len == BLOCK
            files = [await sftp.open("/big.bin", "rb") for _ in range(3)]
            base = rss()
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            try:
                # Three reads asking 200 MiB each, at once: each is answered with 256 KiB.
                replies = await asyncio.gather(*(sftp._handler.read(f._handle, i * 1000, 200 * MIB)
                                                 for i, f in enumerate(files)))
            finally:
                stop.set()
                sampler.join()
            for i, (data, _) in enumerate(replies):
                assert data == pattern[i * 1000:i * 1000 + BLOCK]
            assert peak[0] - base < 48 * MIB, f"peak RSS grew {(peak[0] - base) >> 20} MiB"
            # A client reading on from a short reply gets the whole range.
            f = await sftp.open("/big.bin", "rb")
            assert await f.read(MIB, 0) == pattern + bytes(MIB - len(pattern))
            for f in (*files, f):
                await f.close()

    asyncio.run(go())


def test_out_of_order_bytes_bounded_per_session_and_process(gateway_factory):
    r = gateway_factory(protocols=("sftp",), sections={"sftp": {
        "max_reorder_bytes_per_session": 1 * MIB, "max_reorder_bytes": 1536 * KIB}})
    port = r.port("sftp")
    budget = r.handles["sftp"].reorder
    block = b"b" * BLOCK

    async def go():
        async with connect(port) as (_, a), connect(port, "bob") as (_, b), connect(port) as (_, c):
            fa, fb = await a.open("/a.bin", "wb"), await b.open("/b.bin", "wb")
            # Blocks ahead of a gap are held, and answered only once written.
            held_a = [asyncio.ensure_future(a._handler.write(fa._handle, i * BLOCK, block))
                      for i in range(1, 5)]  # 1 MiB held: the session's bound
            held_b = [asyncio.ensure_future(b._handler.write(fb._handle, i * BLOCK, block))
                      for i in range(1, 3)]  # 512 KiB more: the process's bound
            await eventually(lambda: budget.used == 1536 * KIB, "the blocks held", detail=lambda: budget.used)
            assert not any(t.done() for t in (*held_a, *held_b))
            with pytest.raises(asyncssh.SFTPFailure, match="server holds the most out-of-order"):
                await b._handler.write(fb._handle, 3 * BLOCK, block)
            for t in held_b:  # not written: each told so on its own request
                with pytest.raises(asyncssh.SFTPFailure, match="server holds the most out-of-order"):
                    await t
            with pytest.raises(asyncssh.SFTPFailure, match="upload aborted"):
                await b._handler.write(fb._handle, 0, block)  # aborted for good
            with pytest.raises(asyncssh.SFTPFailure, match="out-of-order"):
                await fb.close()
            assert not any(t.done() for t in held_a)
            with pytest.raises(asyncssh.SFTPFailure, match="this session holds the most out-of-order"):
                await a._handler.write(fa._handle, 5 * BLOCK, block)
            for t in held_a:
                with pytest.raises(asyncssh.SFTPFailure, match="this session holds the most out-of-order"):
                    await t
            with pytest.raises(asyncssh.SFTPFailure):
                await fa.close()
            assert budget.used == 0
            assert temporaries(r.data) == []
            assert not (r.data / "a.bin").exists() and not (r.data / "b.bin").exists()
            # Within the bounds, out-of-order writes are reassembled.
            fc = await c.open("/c.bin", "wb")
            parts = [bytes([65 + i]) * BLOCK for i in range(4)]
            ahead = [asyncio.ensure_future(c._handler.write(fc._handle, i * BLOCK, parts[i])) for i in (3, 1, 2)]
            await eventually(lambda: budget.used == 3 * BLOCK, "the blocks held", detail=lambda: budget.used)
            assert not any(t.done() for t in ahead)
            await c._handler.write(fc._handle, 0, parts[0])
            await asyncio.gather(*ahead)
            await fc.close()
            assert (r.data / "c.bin").read_bytes() == b"".join(parts)
            await well_behaved(port, "during.txt")

    asyncio.run(go())
    for limit in ("reorder_bytes", "reorder_bytes_per_session"):
        assert refused(r, limit) >= 1
    assert in_use(r, "sftp_reorder_bytes") == 0


def test_dropped_session_closes_every_handle_when_one_commit_fails(gateway_factory):
    r = gateway_factory(protocols=("sftp",))
    (r.data / "f.txt").write_bytes(b"x" * 100)
    (r.data / "sub").mkdir()
    port = r.port("sftp")
    handles = in_use(r, "sftp_open_handles")

    async def go():
        before = fds(r.data)
        async with connect(port) as (conn, sftp):
            gap = await sftp.open("/gap.bin", "wb")  # first: asyncssh's clean-up stopped at its failed commit
            held = asyncio.ensure_future(sftp._handler.write(gap._handle, BLOCK, b"g" * BLOCK))
            await eventually(lambda: r.handles["sftp"].reorder.used == BLOCK, "the block held")
            uploads = [await sftp.open(p, "wb") for p in ("/one.bin", "/sub/two.bin", "/three.bin")]
            for f in uploads:
                await f.write(b"u" * 100 * KIB)
            readers = [await sftp.open("/f.txt") for _ in range(3)]
            await readers[0].read(10)
            folders = [await sftp._handler.opendir(b"/") for _ in range(2)]
            assert len(temporaries(r.data)) == 4 and readers and folders
            assert not held.done()  # answered once written: never, the gap stays open
            conn.abort()  # the connection drops
            await asyncio.gather(held, return_exceptions=True)
        await eventually(released(r.data, before), "every descriptor of the session released",
                         detail=lambda: set(fds(r.data)) - set(before))
        await eventually(lambda: not temporaries(r.data), "no .gw-up-* temporary left")
        await eventually(lambda: in_use(r, "sftp_open_handles") == handles,
                         "every handle counted closed")
        # What had no gap was kept, as for any dropped connection; the gapped upload was discarded.
        for p in ("one.bin", "sub/two.bin", "three.bin"):
            assert (r.data / p).read_bytes() == b"u" * 100 * KIB
        assert not (r.data / "gap.bin").exists()
        await well_behaved(port, "after.txt")

    asyncio.run(go())


@pytest.fixture
def tiny_disk(gateway_factory):
    """A gateway whose /small folder is a 1 MiB tmpfs (needs root)."""
    r = gateway_factory(protocols=("sftp",))
    small = r.data / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield r, small
    finally:
        r.handles["sftp"].close()
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_full_storage_is_reported_as_such(tiny_disk):
    r, small = tiny_disk

    async def go():
        async with connect(r.port("sftp")) as (_, sftp):
            f = await sftp.open("/small/big.bin", "wb")
            with pytest.raises(asyncssh.SFTPFailure, match="full") as e:
                await f.write(os.urandom(4 * MIB))  # pipelined 256 KiB writes
            assert e.value.code == asyncssh.FX_FAILURE
            with pytest.raises(asyncssh.SFTPFailure, match="full") as e:
                await f.close()
            assert "gap" not in e.value.reason
            assert temporaries(small) == []
            assert not (small / "big.bin").exists()
            async with sftp.open("/small/fits.bin", "wb") as f:  # the space was given back
                await f.write(b"z" * 512 * KIB)
            assert (small / "fits.bin").stat().st_size == 512 * KIB
            (small / "fits.bin").unlink()
            # Blocks held ahead of a gap and written once it is filled: each is told the disk is full.
            f = await sftp.open("/small/held.bin", "wb")
            held = [asyncio.ensure_future(sftp._handler.write(f._handle, i * BLOCK, b"h" * BLOCK))
                    for i in range(1, 6)]
            await eventually(lambda: r.handles["sftp"].reorder.used == 5 * BLOCK, "the blocks held")
            with pytest.raises(asyncssh.SFTPFailure, match="full"):
                await sftp._handler.write(f._handle, 0, b"h" * BLOCK)
            for t in held:
                with pytest.raises(asyncssh.SFTPFailure, match="full"):
                    await t
            with pytest.raises(asyncssh.SFTPFailure, match="full"):
                await f.close()
            assert r.handles["sftp"].reorder.used == 0 and temporaries(small) == []

    asyncio.run(go())


def _raw_socket(port: int, banner: bool) -> socket.socket:
    s = socket.socket()
    s.settimeout(30)
    s.bind(("127.0.0.2", 0))
    s.connect(("127.0.0.1", port))
    if banner:
        s.sendall(b"SSH-2.0-stalled\r\n")
    return s


def _closed_by_server(s: socket.socket) -> bool:
    """Whether the server closes ``s`` within its 30 s timeout."""
    try:
        while s.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def test_idle_sockets_do_not_lock_logins_out(gateway_factory):
    r = gateway_factory(protocols=("sftp",), sections={"sftp": {
        "max_connections": 4, "max_unauthenticated_per_ip": 6, "login_timeout_s": 3}})
    port = r.port("sftp")
    handle = r.handles["sftp"]
    timeouts = refused(r, "login_timeout")

    async def go():
        before = fds(r.data)
        loop = asyncio.get_running_loop()
        # Six sockets from one address, more than max_connections: three send
        # nothing, three send the SSH banner and stall.
        idle = [_raw_socket(port, banner=i % 2 == 1) for i in range(6)]
        await eventually(lambda: handle.slots.counts() == (6, 0), "the six sockets accepted")
        extra = _raw_socket(port, banner=True)  # the seventh from that address is refused
        started = time.monotonic()
        assert await loop.run_in_executor(None, _closed_by_server, extra)
        assert time.monotonic() - started < 2.5, "the extra socket should be refused at once, not timed out"
        # Meanwhile max_connections logged-in clients are all served.
        async with connect(port) as (_, a), connect(port) as (_, b), connect(port) as (_, c):
            for sftp in (a, b, c):
                assert await sftp.listdir("/") is not None
            await well_behaved(port, "during.txt")
        # After the login grace time the stalled sockets are closed by the server.
        started = time.monotonic()
        for s in idle:
            assert await loop.run_in_executor(None, _closed_by_server, s)
            s.close()
        extra.close()
        assert time.monotonic() - started < 15
        await eventually(lambda: handle.slots.counts() == (0, 0), "the slots given back")
        await eventually(released(r.data, before), "the sockets' descriptors released",
                         detail=lambda: set(fds(r.data)) - set(before))
        await well_behaved(port, "after.txt")

    asyncio.run(go())
    assert refused(r, "login_timeout") >= timeouts + 6
    assert refused(r, "unauthenticated_per_ip") >= 1


def test_oversized_writes_are_taken_a_few_at_a_time(gateway_factory, monkeypatch):
    """asyncssh accepts WRITEs of 4 MiB whatever limits@openssh.com offers:
    the requests running at once are bounded in bytes, not only in count."""
    from protocols.sftp.packets import MAX_IN_FLIGHT_BYTES, PacketHandler

    running: list[int] = []  # bytes of the requests running, at each dispatch
    dispatch = PacketHandler._dispatch

    def observed(self, *args):
        dispatch(self, *args)
        running.append(self._bytes)

    monkeypatch.setattr(PacketHandler, "_dispatch", observed)
    r = gateway_factory(protocols=("sftp",))
    data = os.urandom(4 * MIB)

    async def go():
        async with connect(r.port("sftp")) as (_, sftp):
            f = await sftp.open("/big.bin", "wb")
            await asyncio.gather(*(sftp._handler.write(f._handle, i * len(data), data) for i in range(24)))
            await f.close()
            await well_behaved(r.port("sftp"), "during.txt")

    asyncio.run(go())
    assert (r.data / "big.bin").read_bytes() == data * 24
    assert 0 < max(running) <= MAX_IN_FLIGHT_BYTES
