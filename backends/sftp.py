"""SFTP mounts (sshfs on asyncssh): ``sftp://user@host:port/path``.

Rename is ``posix-rename@openssh.com`` (atomic, replaces the target). sshfs's
``cp_file`` runs a remote shell ``cp`` and its ``checksum`` runs ``md5sum``,
which SFTP-only servers refuse, so neither is used: a copy inside the mount
is the ``copy-data`` extension when the server offers it (OpenSSH >= 9.0;
probed when the mount connects), otherwise it is streamed through the
gateway. The connection is rebuilt after it breaks (Backend ``connect``).

Options are asyncssh's ``connect()`` keywords: ``password``,
``client_keys`` (key files), ``passphrase``; and the host key check
(backends.hostkeys): ``known_hosts`` (a file: only its keys are trusted),
else trust on first use recorded in state_dir, or
``insecure_skip_host_key_check = true``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fsspec.asyn import sync

from backends.base import Backend, Writer
from gateway import errors as E

__all__ = ["SFTPBackend", "sftp_options", "supports_copy_data"]


def sftp_options(options: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """sshfs options with the mount's timeout: the connection attempt is
    bounded by it and keepalives notice a server that stopped answering
    within about the same time."""
    opts = dict(options)
    opts.setdefault("timeout", timeout_s)
    opts.setdefault("connect_timeout", timeout_s)
    opts.setdefault("keepalive_interval", max(1.0, timeout_s / 3))
    opts.setdefault("keepalive_count_max", 3)
    opts["skip_instance_cache"] = True
    return opts


def _run(fs: Any, coro_fn, *args: Any) -> Any:
    """Run ``coro_fn(channel, *args)`` on one of sshfs's SFTP channels."""
    async def call():
        async with fs._pool.get() as channel:
            return await coro_fn(channel, *args)

    return sync(fs.loop, call)


def supports_copy_data(fs: Any) -> bool:
    """Whether the server copies file data itself (``copy-data``)."""
    async def probe(channel):
        return channel.supports_remote_copy

    return bool(_run(fs, probe))


async def _copy_data(channel, src: str, dst: str) -> None:
    async with channel.open(src, "rb", block_size=0) as s, channel.open(dst, "wb", block_size=0) as d:
        await channel.remote_copy(s, d)


async def _rmdir(channel, path: str) -> None:
    await channel.rmdir(path)


async def _utime(channel, path: str, mtime: float) -> None:
    await channel.utime(path, (mtime, mtime))


async def _statvfs(channel, path: str):
    return await channel.statvfs(path)


class SFTPBackend(Backend):
    def _replace(self, tmp: str, path: str) -> None:
        self.fs.mv(tmp, path)  # posix-rename replaces atomically: no window without the file

    def _rename(self, src: str, dst: str) -> None:
        self.fs.mv(src, dst)

    def _rmdir(self, path: str) -> None:
        # sshfs has no sync rmdir (fsspec's default does nothing), and
        # OpenSSH answers a non-empty folder with a bare FX_FAILURE.
        try:
            with self._io():
                _run(self.fs, _rmdir, path)
        except E.BackendError as exc:
            if not exc.retryable and self.listing(path):
                raise E.DirectoryNotEmpty("folder is not empty") from exc
            raise

    def _server_copy(self, src: str, dst: str) -> None:
        _run(self.fs, _copy_data, src, dst)

    def _open_continue(self, path: str, offset: int) -> Writer:
        size = self.info(path).size
        if offset > size:
            return super()._open_continue(path, offset)  # refuses with the reason
        with self._io():
            f = self.fs.open(path, "r+b")
            f.seek(offset)

        def commit(fh: Any) -> None:
            fh.close()
            self.invalidate(path)

        return Writer(f, commit, lambda fh: fh.close(), self._io)

    def set_mtime(self, path: str, mtime: float) -> bool:
        with self._io():
            _run(self.fs, _utime, path, mtime)
        self.invalidate(path)
        return True

    def disk_usage(self) -> tuple[int, int] | None:
        try:
            with self._io():
                st = _run(self.fs, _statvfs, self.root or "/")
        except Exception:  # noqa: BLE001 - statvfs@openssh.com is optional
            return None
        return st.blocks * st.frsize, st.bavail * st.frsize

    def close(self) -> None:
        fs = self._broken = self._fs  # a later call connects again
        try:
            sync(fs.loop, _close, fs, timeout=2)
        except Exception:  # noqa: BLE001 - the server may be gone already
            pass


async def _close(fs: Any) -> None:
    fs.client.close()
    await asyncio.wait_for(fs.client.wait_closed(), 2)
