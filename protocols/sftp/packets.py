"""The SFTP packet loop: asyncssh's server handler with three changes.

1. **Requests run concurrently.** asyncssh awaits each request before it
   reads the next, so one slow storage call would stall a pipelined transfer.
   Here READ and WRITE requests run side by side (out-of-order writes land in
   ``Upload.write_at``); every other request waits for all requests received
   before it, and READ/WRITE wait for the other requests before them. So a
   client observes its requests in the order it sent them, as with a
   sequential server (a request that finds nothing running is answered in
   the receive loop itself, as asyncssh does). At most ``MAX_IN_FLIGHT``
   requests, of ``MAX_IN_FLIGHT_BYTES`` in all, run per session; beyond that
   the loop stops reading and SSH flow control holds the client (asyncssh
   takes WRITEs of up to 4 MiB whatever limits@openssh.com offers: 64 of
   them would hold 256 MiB; OpenSSH's client sends the 256 KiB offered, 64
   at a time, of which 16 run). A WRITE's data is a view of its packet, not
   a copy. **A WRITE whose block is held ahead of a gap
   is answered once the gap is filled and the block written**, so the
   client's own window bounds what is held (OpenSSH: 64 of 256 KiB); it no
   longer delays the requests after it, and keeps its slot unless only held
   writes fill the slots (the gap's block is then still unread: reading goes
   on, and the reorder budget refuses a client that sends too much ahead).
   Answered at once, held writes let a client on a busy machine send on
   while the gap's write waited for a CPU, past the budget: uploads aborted.
2. **opendir lists at once**, so "no such folder" answers the opendir rather
   than the first readdir; **a readdir answers up to 1,000 names** written
   straight to their wire form (asyncssh sends 128, one awaited step and
   three record objects each), within what OpenSSH's client accepts in one
   message (256 KiB).
3. **Extensions**: ``check-file-name`` / ``check-file-handle`` (and the
   handle form under paramiko's name ``check-file``) answer whole-file hashes;
   ``copy-data`` goes to :meth:`GatewaySFTPServer.copy_data` (a server-side
   copy for whole files); ``limits@openssh.com`` offers 256 KiB reads and
   writes (a longer read is answered short) and the session's handle limit;
   ``hardlink@openssh.com`` and ``ranges@asyncssh.com`` are not offered.
4. **Handles are counted** against ``[sftp] max_handles_per_session`` and
   **session clean-up closes every handle** whatever the others do (asyncssh
   stops at the first close that fails, leaving the rest open).
5. **Writes on an append handle are placed in arrival order**, and bytes
   after a write's data are ignored as OpenSSH's server does (see
   :meth:`PacketHandler._prepare_write`).

This subclasses ``asyncssh.sftp.SFTPServerHandler``, which asyncssh does not
export; checked against asyncssh 2.24.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncssh
from asyncssh.constants import FXP_CLOSE, FXP_EXTENDED_REPLY, FXP_OPENDIR, FXP_READ, FXP_READDIR, FXP_WRITE
from asyncssh.packet import PacketDecodeError, SSHPacket, String, UInt64
from asyncssh.sftp import SFTPServerHandler

from protocols.sftp.handler import HASH_ALGORITHMS, MAX_IO_LEN, GatewaySFTPServer, Names

__all__ = ["PacketHandler", "MAX_IN_FLIGHT"]

log = logging.getLogger("gateway.sftp")

#: Requests running at once per SFTP channel: with MAX_IO_LEN, what the
#: replies of one channel may hold in memory.
MAX_IN_FLIGHT = 64
#: Bytes of the requests running at once per SFTP channel: 16 writes of the
#: size limits@openssh.com offers (a client sending bigger writes gets fewer
#: at once). The writes of one file reach the storage one after the other,
#: so more at once would only hold more memory: with 64 (16 MiB), a 1 GiB
#: upload with OpenSSH peaked ~11 MiB higher, no faster.
MAX_IN_FLIGHT_BYTES = 16 * (MAX_IO_LEN + 1024)

#: Names per readdir reply, and about how many bytes they may take (OpenSSH's
#: client refuses messages over 256 KiB).
READDIR_NAMES = 1000
READDIR_BYTES = 192 << 10

_NOT_OFFERED = {b"hardlink@openssh.com", b"ranges@asyncssh.com"}
_CHECK_FILE = (b"check-file-name", b"check-file-handle", b"check-file")


class _CheckFileReply:
    """The check-file extended reply: "check-file", the algorithm used, the
    raw digest (draft-ietf-secsh-filexfer-09 §9.1.2, as paramiko and
    ProFTPD read it)."""

    def __init__(self, algorithm: str, digest: bytes) -> None:
        self.algorithm, self.digest = algorithm, digest

    def encode(self, version: int) -> bytes:
        return String(b"check-file") + String(self.algorithm.encode("ascii")) + self.digest

    def __str__(self) -> str:
        return f"check-file {self.algorithm} {self.digest.hex()}"


class PacketHandler(SFTPServerHandler):
    """One SFTP session over a :class:`GatewaySFTPServer`, SFTP v3."""

    _extensions = [(name, data) for name, data in SFTPServerHandler._extensions if name not in _NOT_OFFERED] + [
        (b"check-file-name", ",".join(HASH_ALGORITHMS).encode()),
        (b"check-file-handle", ",".join(HASH_ALGORITHMS).encode()),
    ]
    _return_types = {**SFTPServerHandler._return_types, **{name: FXP_EXTENDED_REPLY for name in _CHECK_FILE}}

    _server: GatewaySFTPServer

    def __init__(self, server: GatewaySFTPServer, reader: Any, writer: Any) -> None:
        super().__init__(server, reader, writer, 3)
        self._last_other: asyncio.Future | None = None
        self._io: set[asyncio.Future] = set()
        #: dispatched task → its size, while it holds one of the MAX_IN_FLIGHT slots
        self._sizes: dict[asyncio.Future, int] = {}
        self._bytes = 0  # of the tasks in _sizes
        self._held: set[asyncio.Future] = set()  # WRITE tasks whose block waits for a gap before it
        self._changed = asyncio.Event()  # a task freed its slot or became held

    # -- the loop -------------------------------------------------------------------

    async def recv_packets(self) -> None:
        exc: Exception | None = None
        try:
            while self._reader:
                packet = await self.recv_packet()
                pkttype = packet.get_byte()
                pktid = packet.get_uint32()
                self.log_received_packet(pkttype, pktid, packet)
                if pkttype == FXP_WRITE:
                    packet = self._prepare_write(packet)
                if pkttype in (FXP_READ, FXP_WRITE) or self._pending():
                    size = len(packet.get_full_payload())
                    while not self._room(size):
                        self._changed.clear()
                        await self._changed.wait()
                    self._dispatch(pkttype, pktid, packet, size)
                else:  # nothing runs: answered here, as a sequential server would (no task to schedule)
                    self._io, self._last_other = set(), None
                    await self._process_packet(pkttype, pktid, packet)
        except PacketDecodeError as e:
            exc = asyncssh.SFTPBadMessage(str(e))
        except EOFError:
            pass
        except (OSError, asyncssh.Error) as e:
            exc = e
        # Finish what was received (a sequential server would have), so
        # cleanup's closes see every write.
        pending = self._pending()
        if pending:
            await asyncio.wait(pending)
        await self._cleanup(exc)

    def _prepare_write(self, packet: SSHPacket) -> SSHPacket:
        """A WRITE on a handle opened with FXF_APPEND, with its offset replaced
        by the end of the writes received before it on that handle (as
        O_APPEND does; asyncssh sends offset 0). Done here, in the order the
        requests arrived, because the writes then run concurrently.

        Bytes after the data are dropped, as OpenSSH's sftp-server ignores
        them: the Go client (github.com/pkg/sftp, in rclone 1.60) sends the
        last short block of a file in a packet as long as a full one, which
        asyncssh refuses as a bad message. Any other WRITE is returned as it
        is, its data not copied."""
        raw = packet.get_full_payload()
        at = len(packet.get_consumed_payload())  # the handle's length field
        end = at + 4 + int.from_bytes(raw[at:at + 4], "big")  # the offset field
        if len(raw) < end + 12:
            return packet  # a malformed one is answered as such by the write itself
        length = int.from_bytes(raw[end + 8:end + 12], "big")
        f = self._file_handles.get(raw[at + 4:end])
        trailing = len(raw) > end + 12 + length
        if f is None or not f.append:
            return SSHPacket(raw[at:end + 12 + length]) if trailing else packet
        offset = self._server.append_offset(f, length)
        return SSHPacket(raw[at:end] + UInt64(offset) + raw[end + 8:end + 12 + length])

    def _pending(self) -> list[asyncio.Future]:
        return [t for t in (self._last_other, *self._io) if t is not None and not t.done()]

    def _room(self, size: int) -> bool:
        """Whether a request of ``size`` bytes may run now. When only held
        writes fill the slots, the block that fills their gap has not been
        read yet (the client sent it later): they give their slots back, so
        reading goes on and the reorder budget bounds what is held."""
        if len(self._sizes) < MAX_IN_FLIGHT and (not self._bytes or self._bytes + size <= MAX_IN_FLIGHT_BYTES):
            return True
        if self._held.issuperset(self._sizes):
            for task in list(self._sizes):
                self._free(task)
            return True
        return False

    def _dispatch(self, pkttype: int, pktid: int, packet: SSHPacket, size: int) -> None:
        if pkttype in (FXP_READ, FXP_WRITE):
            before = [self._last_other] if self._last_other is not None else []
            task = asyncio.ensure_future(self._run_after(before, pkttype, pktid, packet))
            self._io.add(task)
            task.add_done_callback(self._io.discard)
        else:
            before = self._pending()
            self._io = set()
            task = self._last_other = asyncio.ensure_future(self._run_after(before, pkttype, pktid, packet))
        self._sizes[task] = size
        self._bytes += size

    async def _run_after(self, before: list[asyncio.Future], pkttype: int, pktid: int, packet: SSHPacket) -> None:
        try:
            pending = [t for t in before if not t.done()]
            if pending:
                await asyncio.wait(pending)
            await self._process_packet(pkttype, pktid, packet)
        finally:
            task = asyncio.current_task()
            assert task is not None
            self._free(task)
            self._held.discard(task)

    def _free(self, task: asyncio.Future) -> None:
        """Give back the slot and bytes of ``task`` (once)."""
        size = self._sizes.pop(task, None)
        if size is not None:
            self._bytes -= size
            self._changed.set()

    def _hold(self) -> None:
        """The running WRITE's block is held ahead of a gap: its reply waits
        until the gap is filled (so the client's window bounds what is held),
        but its work is done: the requests after it no longer wait for it. It
        keeps its slot, so a client with a large window is slowed by SSH flow
        control rather than refused by the reorder budget (see _room)."""
        task = asyncio.current_task()
        if task is None or task not in self._sizes:
            return
        self._io.discard(task)
        self._held.add(task)
        self._changed.set()

    async def _cleanup(self, exc: Exception | None) -> None:
        """Close every handle, each whatever the others do: an upload that
        cannot be saved (a gap, full storage) is discarded and the next one
        is still closed."""
        files, self._file_handles = list(self._file_handles.values()), {}
        for f in files:
            try:
                await self._server.close(f)
            except asyncssh.SFTPError as e:
                log.info("sftp: %s not saved when the session ended: %s", f.path, e.reason)
            except Exception:  # noqa: BLE001 - a bug: logged by the handler; the next handle is closed still
                pass
        self._server.limits.close_handle(len(self._dir_handles))
        self._dir_handles = {}
        if self._held:  # answered by now (the closes failed what was still held): let them send it
            await asyncio.wait(list(self._held))
        await super()._cleanup(exc)

    # -- requests handled differently --------------------------------------------------

    async def _process_write(self, packet: SSHPacket) -> int:
        handle = packet.get_string()
        offset = packet.get_uint64()
        length = packet.get_uint32()
        # The data as a view of the packet, not a copy: the packet lives until
        # the write is answered anyway, and a copy doubled what the writes in
        # flight hold (up to MAX_IN_FLIGHT_BYTES more).
        raw = packet.get_full_payload()
        at = len(packet.get_consumed_payload())
        if at + length > len(raw):
            raise PacketDecodeError("Incomplete packet")
        if at + length < len(raw):
            raise PacketDecodeError("Unexpected data at end of packet")
        data = memoryview(raw)[at:]
        f = self._file_handles.get(handle)
        if f is None:
            raise asyncssh.SFTPInvalidHandle("Invalid file handle")
        held = await self._server.start_write(f, offset, data)
        if held is not None:
            self._hold()
            await held
        return len(data)

    async def _process_opendir(self, packet: SSHPacket) -> bytes:
        path = packet.get_string()
        packet.check_end()
        limits = self._server.limits
        limits.open_handle()
        try:
            listing = self._server.scandir(path)
            await listing.open()
        except BaseException:
            limits.close_handle()
            raise
        handle = self._get_next_handle()
        self._dir_handles[handle] = listing
        return handle

    async def _process_close(self, packet: SSHPacket) -> None:
        handle = packet.get_string()
        packet.check_end()
        if self._dir_handles.pop(handle, None) is not None:
            self._server.limits.close_handle()
            return
        f = self._file_handles.pop(handle, None)
        if f is None:
            raise asyncssh.SFTPInvalidHandle("Invalid file handle")
        await self._server.close(f)

    async def _process_readdir(self, packet: SSHPacket) -> tuple[Names, bool]:
        handle = packet.get_string()
        packet.check_end()
        listing = self._dir_handles.get(handle)
        if listing is None:
            raise asyncssh.SFTPInvalidHandle("Invalid file handle")
        names = await listing.names(READDIR_NAMES, READDIR_BYTES)
        if not names:
            raise asyncssh.SFTPEOFError
        return names, False

    async def _process_limits(self, packet: SSHPacket) -> asyncssh.SFTPLimits:
        packet.check_end()
        return asyncssh.SFTPLimits(MAX_IO_LEN + 1024, MAX_IO_LEN, MAX_IO_LEN, self._server.limits.max_handles)

    async def _process_copy_data(self, packet: SSHPacket) -> None:
        src_handle = packet.get_string()
        src_offset = packet.get_uint64()
        length = packet.get_uint64()
        dst_handle = packet.get_string()
        dst_offset = packet.get_uint64()
        packet.check_end()
        src, dst = self._file_handles.get(src_handle), self._file_handles.get(dst_handle)
        if src is None or dst is None:
            raise asyncssh.SFTPInvalidHandle("Invalid file handle")
        await self._server.copy_data(src, src_offset, length, dst, dst_offset)

    async def _process_check_file_name(self, packet: SSHPacket) -> _CheckFileReply:
        return await self._check_file(packet.get_string(), packet)

    async def _process_check_file_handle(self, packet: SSHPacket) -> _CheckFileReply:
        f = self._file_handles.get(packet.get_string())
        if f is None:
            raise asyncssh.SFTPInvalidHandle("Invalid file handle")
        return await self._check_file(f, packet)

    async def _check_file(self, target: Any, packet: SSHPacket) -> _CheckFileReply:
        algorithms = packet.get_string().decode("ascii", "replace").lower().split(",")
        offset = packet.get_uint64()
        length = packet.get_uint64()
        block_size = packet.get_uint32()
        packet.check_end()
        return _CheckFileReply(*await self._server.hash(target, algorithms, offset, length, block_size))

    _packet_handlers = {
        **{k: v for k, v in SFTPServerHandler._packet_handlers.items() if k not in _NOT_OFFERED},
        FXP_WRITE: _process_write,
        FXP_OPENDIR: _process_opendir,
        FXP_READDIR: _process_readdir,
        FXP_CLOSE: _process_close,
        b"limits@openssh.com": _process_limits,
        b"copy-data": _process_copy_data,
        b"check-file-name": _process_check_file_name,
        b"check-file-handle": _process_check_file_handle,
        b"check-file": _process_check_file_handle,
    }
