"""The SFTP front end through asyncssh as a client: extensions, concurrent
(pipelined, out-of-order) transfers, attributes and the error statuses."""

from __future__ import annotations

import asyncio
import hashlib
import os

import asyncssh
import pytest
from asyncssh.constants import FXP_EXTENDED_REPLY
from asyncssh.packet import String, UInt32, UInt64

from gateway import errors as E
from protocols.sftp.errors import STATUS, to_sftp_error
from sftp_support import connect

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_every_gateway_error_has_a_status_and_keeps_its_message():
    for cls in E.ALL_ERRORS:
        assert cls in STATUS, f"{cls.__name__} has no row in the SFTP status table"
        exc = to_sftp_error(cls("what happened", "/p"))
        assert isinstance(exc, asyncssh.SFTPError) and exc.reason == "what happened"
    assert to_sftp_error(E.NotFound("x")).code == asyncssh.FX_NO_SUCH_FILE
    assert to_sftp_error(E.MissingParent("x")).code == asyncssh.FX_NO_SUCH_FILE
    assert to_sftp_error(E.PermissionDenied("x")).code == asyncssh.FX_PERMISSION_DENIED
    assert to_sftp_error(E.AlreadyExists("x")).code == asyncssh.FX_FILE_ALREADY_EXISTS
    for cls in (E.Busy, E.QuotaExceeded, E.BackendUnavailable, E.BackendError, E.BadRequest, E.Conflict):
        # v3 clients see anything past FX_OP_UNSUPPORTED as FX_FAILURE
        assert to_sftp_error(cls("x")).encode(3)[:4] == UInt32(asyncssh.FX_FAILURE)


@pytest.fixture
def gw(gateway_factory):
    return gateway_factory(protocols=("sftp",), users={"bob": {"permissions": ["list", "download"]}})


async def _check_file(sftp: asyncssh.SFTPClient, request: bytes, target: bytes, algorithms: bytes) -> tuple:
    """A raw check-file request (asyncssh's client has no API for it)."""
    waiter = asyncio.get_running_loop().create_future()
    sftp._handler._send_request(request, [String(target), String(algorithms), UInt64(0), UInt64(0), UInt32(0)],
                                waiter)
    resptype, packet = await waiter
    if resptype != FXP_EXTENDED_REPLY:
        sftp._handler._process_status(packet)  # raises the error it carries
    return packet.get_string(), packet.get_string(), packet.get_remaining_payload()


def test_extensions(gw, tmp_path):
    data = os.urandom(700_000)
    (gw.data / "f.bin").write_bytes(data)
    (gw.data / "g.txt").write_bytes(b"old")

    async def go():
        async with connect(gw.port("sftp")) as (_, sftp):
            # copy-data: OpenSSH's cp and asyncssh's remote-only copy
            await sftp.copy("/f.bin", "/copy.bin", remote_only=True)
            assert (gw.data / "copy.bin").read_bytes() == data
            # posix-rename replaces the target; plain rename refuses to
            await sftp.posix_rename("/copy.bin", "/g.txt")
            assert (gw.data / "g.txt").read_bytes() == data and not (gw.data / "copy.bin").exists()
            vfs = await sftp.statvfs("/")
            assert vfs.blocks > 0 and vfs.bsize > 0 and vfs.bavail <= vfs.blocks
            assert sftp.limits.max_read_len > 0
            # check-file by name and by handle, whole-file hashes
            kind, algo, digest = await _check_file(sftp, b"check-file-name", b"/f.bin", b"foo,sha256,md5")
            assert (kind, algo, digest) == (b"check-file", b"sha256", hashlib.sha256(data).digest())
            async with sftp.open("/f.bin", "rb") as f:
                kind, algo, digest = await _check_file(sftp, b"check-file-handle", f.handle, b"md5")
            assert (algo, digest) == (b"md5", hashlib.md5(data).digest())
            with pytest.raises(asyncssh.SFTPOpUnsupported):
                await _check_file(sftp, b"check-file-name", b"/f.bin", b"crc32")
            # fsync is accepted; the upload is committed on close
            async with sftp.open("/synced", "wb") as f:
                await f.write(b"abc")
                await f.fsync()
            assert (gw.data / "synced").read_bytes() == b"abc"
            # times through setstat; permissions are accepted and not kept
            await sftp.utime("/synced", (1_600_000_000, 1_600_000_000))
            await sftp.chmod("/synced", 0o600)
            attrs = await sftp.stat("/synced")
            assert attrs.mtime == 1_600_000_000 and attrs.size == 3 and attrs.type == asyncssh.FILEXFER_TYPE_REGULAR
            assert (await sftp.stat("/")).type == asyncssh.FILEXFER_TYPE_DIRECTORY
            assert await sftp.realpath("/a/../b/./c") == "/b/c"
            assert await sftp.realpath(".") == "/"

    asyncio.run(go())


def test_pipelined_and_out_of_order_transfers(gw, tmp_path):
    data = os.urandom(5_000_000)
    (tmp_path / "src.bin").write_bytes(data)

    async def go():
        async with connect(gw.port("sftp")) as (_, sftp):
            # many small requests in flight each way
            await sftp.put(str(tmp_path / "src.bin"), "/p.bin", block_size=16384, max_requests=128)
            assert (gw.data / "p.bin").read_bytes() == data
            await sftp.get("/p.bin", str(tmp_path / "back.bin"), block_size=16384, max_requests=128)
            assert (tmp_path / "back.bin").read_bytes() == data
            # writes sent out of order land in place
            async with sftp.open("/ooo.bin", "wb") as f:
                await asyncio.gather(f.write(b"CCCC", 8), f.write(b"BBBB", 4), f.write(b"AAAA", 0))
            assert (gw.data / "ooo.bin").read_bytes() == b"AAAABBBBCCCC"
            # random-offset reads
            async with sftp.open("/p.bin", "rb") as f:
                parts = await asyncio.gather(*(f.read(1000, off) for off in (4_000_000, 10, 2_500_000)))
            assert parts == [data[4_000_000:4_001_000], data[10:1010], data[2_500_000:2_501_000]]

    asyncio.run(go())


def test_error_statuses(gw):
    (gw.data / "exists.txt").write_bytes(b"x")
    (gw.data / "dir").mkdir()

    async def go():
        async with connect(gw.port("sftp")) as (_, sftp):
            with pytest.raises(asyncssh.SFTPNoSuchFile, match="no such file"):
                await sftp.stat("/nope")
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await sftp.open("/nope", "rb")
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await sftp.listdir("/nope")
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await sftp.open("/missing/parent.txt", "wb")
            # AlreadyExists: FX_FAILURE for a v3 client, with the message
            with pytest.raises(asyncssh.SFTPFailure, match="already exists"):
                await sftp.mkdir("/dir")
            with pytest.raises(asyncssh.SFTPFailure, match="already exists"):
                await sftp.rename("/exists.txt", "/dir")
            with pytest.raises(asyncssh.SFTPFailure, match="is a folder"):  # never replaces a folder tree
                await sftp.posix_rename("/exists.txt", "/dir")
            with pytest.raises(asyncssh.SFTPFailure, match="already exists"):
                await sftp.open("/exists.txt", asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_EXCL)
            with pytest.raises(asyncssh.SFTPFailure, match="is a folder"):
                await sftp.open("/dir", "rb")
            with pytest.raises(asyncssh.SFTPOpUnsupported):
                await sftp.symlink("/exists.txt", "/link")
        async with connect(gw.port("sftp"), "bob") as (_, sftp):
            assert "exists.txt" in await sftp.listdir("/")
            async with sftp.open("/exists.txt", "rb") as f:
                assert await f.read() == b"x"
            for attempt in (sftp.open("/new.txt", "wb"), sftp.remove("/exists.txt"), sftp.mkdir("/bobdir"),
                            sftp.rename("/exists.txt", "/moved.txt"), sftp.rmdir("/dir")):
                with pytest.raises(asyncssh.SFTPPermissionDenied, match="permission denied"):
                    await attempt
        with pytest.raises(asyncssh.PermissionDenied):
            async with connect(gw.port("sftp"), "alice", password="wrong"):
                pass

    asyncio.run(go())


def test_listed_names_are_the_bytes_asyncssh_would_send():
    """wire_name writes each listed name (its ``ls -l`` line with cached mode
    and date parts, and its attributes) itself; every name must be the bytes
    asyncssh encodes with its own long name (recent and old dates, folders,
    a file without a time, times past 2106 and before 1970, non-ASCII names)."""
    import stat as st
    import time

    from asyncssh import SFTPName

    from gateway.types import Entry, Session
    from gateway.users import User
    from protocols.sftp.handler import GatewaySFTPServer, attrs_of

    server = object.__new__(GatewaySFTPServer)  # only its formatting is used: no channel needed
    server.session, server._dates = Session(User("alice"), "sftp"), {}
    now = int(time.time())
    entries = [Entry(f"n{i} ü", f"/n{i}", is_dir, i * 1000, now - age, None, mode)
               for i, (is_dir, mode, age) in enumerate([(False, 0o644, 0), (True, 0o755, 60), (False, 0o600, 86400 * 200),
                                                        (False, 0o644, -3600), (False, None, 86400 * 181),
                                                        (False, 0o644, -86400 * 365 * 90), (False, 0o644, now + 1)])]
    entries.append(Entry("bare", "/bare", False))
    for entry in entries * 2:  # the second round answers from the caches
        theirs = SFTPName(entry.name.encode(), attrs=attrs_of(entry))
        asyncssh.SFTPServer.format_longname(server, theirs)
        assert server.wire_name(entry) == theirs.encode(3), entry


KIB, MIB = 1 << 10, 1 << 20


async def eventually(check, budget) -> None:
    """Wait until ``check()`` holds: a server thread's work, seen here."""
    for _ in range(600):
        if check():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"not within 30 s (the budget holds {budget.used} bytes)")


def test_writes_ahead_of_a_gap_are_answered_once_written(gw):
    """A client's window of requests in flight bounds what the server holds:
    blocks ahead of a gap are answered only once the gap is filled, so a
    client with 256 writes of 32 KiB in flight (8 MiB) whose first block
    keeps coming last uploads byte-exact within the default 16 MiB budget."""
    block, window = 32 * KIB, 256
    data = os.urandom(32 * MIB)
    budget = gw.handles["sftp"].reorder

    async def go():
        async with connect(gw.port("sftp")) as (_, sftp):
            h = sftp._handler
            f = await sftp.open("/window.bin", "wb")
            for start in range(0, len(data), window * block):
                def write(i: int) -> asyncio.Future:
                    return asyncio.ensure_future(h.write(f._handle, start + i * block,
                                                         data[start + i * block:start + (i + 1) * block]))
                ahead = [write(i) for i in range(1, window)]
                await eventually(lambda: budget.used == (window - 1) * block, budget)
                assert not any(t.done() for t in ahead)  # held, not answered: the window stays full
                assert await sftp.stat("/") is not None  # other requests are answered meanwhile
                await write(0)
                await asyncio.gather(*ahead)
                assert budget.used == 0
            await f.close()
            assert hashlib.sha256((gw.data / "window.bin").read_bytes()).digest() == hashlib.sha256(data).digest()

            # Closed with the gap still open: each held write is told it was not saved.
            f = await sftp.open("/gap.bin", "wb")
            held = [asyncio.ensure_future(h.write(f._handle, i * block, b"x" * block)) for i in (1, 2)]
            await eventually(lambda: budget.used == 2 * block, budget)
            with pytest.raises(asyncssh.SFTPFailure, match="gap"):
                await f.close()
            for t in held:
                with pytest.raises(asyncssh.SFTPFailure, match="gap"):
                    await t
            assert budget.used == 0 and not (gw.data / "gap.bin").exists()

    asyncio.run(go())


def test_a_client_whose_first_block_is_late_is_slowed_not_failed(gw):
    """What a loaded machine does to OpenSSH's sftp (the write of the gap's
    block waits for a CPU while the client goes on sending), made
    deterministic: the client sends its first block only when its window of
    256 requests of 32 KiB is full. Were the blocks ahead answered at once,
    the window would never fill and the client would send the whole 48 MiB
    ahead of the gap, past the 16 MiB budget: the upload would be aborted."""
    block, window = 32 * KIB, 256
    data = os.urandom(48 * MIB)
    blocks = len(data) // block

    async def go():
        async with connect(gw.port("sftp")) as (_, sftp):
            h = sftp._handler
            f = await sftp.open("/late.bin", "wb")
            room = asyncio.Semaphore(window)
            sent: list[asyncio.Future] = []

            async def write(i: int) -> None:
                try:
                    await h.write(f._handle, i * block, data[i * block:(i + 1) * block])
                finally:
                    if i:
                        room.release()

            first_sent = False
            for i in range(1, blocks):
                if not first_sent and room.locked():
                    first_sent = True
                    sent.append(asyncio.ensure_future(write(0)))  # its slot was the client's last
                await room.acquire()
                sent.append(asyncio.ensure_future(write(i)))
                await asyncio.sleep(0)  # let the replies come in
            if not first_sent:
                sent.append(asyncio.ensure_future(write(0)))
            await asyncio.gather(*sent)
            await f.close()
            assert hashlib.sha256((gw.data / "late.bin").read_bytes()).digest() == hashlib.sha256(data).digest()

    asyncio.run(go())
