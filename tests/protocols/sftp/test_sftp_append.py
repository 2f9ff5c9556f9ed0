"""SFTP append (issue #23): a handle opened with FXF_APPEND appends each
write at the end, whatever offset it names; a write below an upload's end
that is not a retransmission of the same bytes is refused, never dropped."""

from __future__ import annotations

import asyncio
import os

import asyncssh
import pytest

from sftp_support import connect, sftp_batch

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_append_mode_appends(gateway_factory, caplog):
    r = gateway_factory(protocols=("sftp",))
    caplog.set_level("INFO", logger="gateway.ops")
    (r.data / "log.txt").write_bytes(b"hello")
    big = os.urandom(3 * (1 << 20) + 17)

    async def go():
        async with connect(r.port("sftp")) as (_, sftp):
            async with sftp.open("/log.txt", "ab") as f:  # asyncssh sends offset 0 on an append handle
                await f.write(b" world")
                await f.write(b"!")
            assert (r.data / "log.txt").read_bytes() == b"hello world!"
            logged = [rec.op for rec in caplog.records if getattr(rec, "op", {}).get("paths") == ["/log.txt"]]
            assert [(op["result"], op["bytes"]) for op in logged] == [("ok", 7)]  # the bytes appended
            async with sftp.open("/log.txt", "ab") as f:  # pipelined 256 KiB writes, all at "offset 0"
                await f.write(big)
            assert (r.data / "log.txt").read_bytes() == b"hello world!" + big
            async with sftp.open("/new.txt", "ab") as f:  # append creates a missing file
                await f.write(b"one ")
                await f.write(b"two")
            assert (r.data / "new.txt").read_bytes() == b"one two"

    asyncio.run(go())


def test_openssh_put_append(gateway_factory, tmp_path):
    r = gateway_factory(protocols=("sftp",))
    payload = os.urandom(700_000)
    (r.data / "f.bin").write_bytes(payload[:250_000])
    (tmp_path / "full.bin").write_bytes(payload)
    sftp_batch(r.port("sftp"), "alice", ["put -a full.bin /f.bin"], tmp_path)
    assert (r.data / "f.bin").read_bytes() == payload


def test_write_below_the_end_is_refused_unless_a_retransmission(gateway_factory):
    r = gateway_factory(protocols=("sftp",))
    (r.data / "keep.txt").write_bytes(b"old content")

    async def go():
        async with connect(r.port("sftp")) as (_, sftp):
            f = await sftp.open("/keep.txt", "wb")
            h = sftp._handler
            await h.write(f._handle, 0, b"abcd")
            await h.write(f._handle, 4, b"efgh")
            await h.write(f._handle, 0, b"abcd")  # the same block again: accepted, changes nothing
            with pytest.raises(asyncssh.SFTPFailure, match="rewrites bytes already written"):
                await h.write(f._handle, 0, b"ABCD")
            with pytest.raises(asyncssh.SFTPFailure, match="rewrites"):  # the upload stays refused
                await h.write(f._handle, 8, b"ijkl")
            with pytest.raises(asyncssh.SFTPFailure, match="rewrites"):
                await f.close()
            assert (r.data / "keep.txt").read_bytes() == b"old content"  # left as it was
            f = await sftp.open("/fresh.txt", "wb")
            await h.write(f._handle, 0, b"abcd")
            await h.write(f._handle, 0, b"abcd")
            await h.write(f._handle, 4, b"efgh")
            await f.close()
            assert (r.data / "fresh.txt").read_bytes() == b"abcdefgh"

    asyncio.run(go())
