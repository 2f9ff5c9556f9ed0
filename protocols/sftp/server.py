"""The SFTP/scp listener: asyncssh on an event loop of its own thread.

One gateway :class:`Session` per SSH connection (protocol ``sftp``): every
channel of the connection (the SFTP subsystem, scp, the job commands) shares
it, so the initiator of a backgrounded rename sees its outcome on any of them.
Core calls (logins included: argon2 takes tens of milliseconds) run in one
bounded worker pool per listener, never on the event loop.

Connection slots are those of :mod:`gateway.slots`, as for FTP: a connection
not logged in holds an unauthenticated slot (``max_unauthenticated_per_ip``,
``max_unauthenticated``) and is closed after ``login_timeout_s``; a login
trades it for a session slot (``max_connections``, ``max_connections_per_ip``).
So idle or stalled sockets cannot lock logins out.

The port is bound at start, but asyncssh (and cryptography under it: ~17 MiB
of resident memory, a fifth of an idle gateway's) is imported, and
the host keys parsed, only when the first client connects: :mod:`protocols.sftp.ssh`
then takes the listening socket over, and the client waiting in its backlog
is served by it. A host key the gateway must generate is made at start (the
first start only; by ssh-keygen where installed), so its fingerprint is
logged then.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from gateway import errors as E
from gateway.budget import ByteBudget
from gateway.private import private_dir, write_private
from gateway.slots import Slots
from protocols.sftp.loop import AcceptLoop

__all__ = ["serve", "SftpHandle", "host_keys", "host_key_paths", "WORKERS", "HOST_KEY_FILE"]

log = logging.getLogger("gateway.sftp")

#: Worker threads running core calls for all connections of one listener.
WORKERS = 32
#: The host key made in ``state_dir`` when ``sftp.host_keys`` is empty.
HOST_KEY_FILE = "ssh_host_ed25519_key"

_key_lock = threading.Lock()
#: Connections waiting to be accepted (asyncio's default, as before).
BACKLOG = 100


def host_key_paths(cfg: Any) -> list[Path]:
    """The configured host key files, or the one kept in ``state_dir`` (an
    ed25519 key generated now when missing). They are parsed when the first
    client connects (``gateway serve``'s preflight has checked that each
    holds a private key)."""
    if cfg.sftp.host_keys:
        return [Path(p) for p in cfg.sftp.host_keys]
    return [_ensure_host_key(Path(cfg.server.state_dir) / HOST_KEY_FILE)]


def _ensure_host_key(path: Path) -> Path:
    """Make an ed25519 host key at ``path`` (0600, its ``.pub`` beside it)
    unless one is there; returns ``path``. Made by OpenSSH's ssh-keygen
    where it is installed, so that the first start too goes without
    asyncssh; else by asyncssh."""
    state_dir = path.parent
    with _key_lock:
        if path.exists():
            return path
        private_dir(state_dir)
        work = Path(tempfile.mkdtemp(prefix=".hostkey-", dir=state_dir))  # mode 0700
        try:
            tmp = work / "key"
            try:
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(tmp)],
                               check=True, capture_output=True, timeout=60)
            except (OSError, subprocess.SubprocessError):
                from protocols.sftp.ssh import write_new_key

                write_new_key(tmp)
            kind, blob = tmp.with_name("key.pub").read_text().split()[:2]
            try:
                os.link(tmp, path)  # another process may have made one first: keep that
            except FileExistsError:
                return path
        finally:
            shutil.rmtree(work, ignore_errors=True)
        write_private(path.with_name(path.name + ".pub"), f"{kind} {blob}\n".encode())
        digest = base64.b64encode(hashlib.sha256(base64.b64decode(blob)).digest()).decode().rstrip("=")
        log.info("generated SSH host key %s (SHA256:%s)", path, digest)
    return path


def host_keys(cfg: Any) -> list[Any]:
    """The host keys as asyncssh keys (imports asyncssh). Raises ValueError
    naming an unreadable key."""
    from protocols.sftp.ssh import read_host_keys

    return read_host_keys(host_key_paths(cfg))


def _process_refusal(n: int) -> E.GatewayError:
    return E.Busy("the server holds the most out-of-order write data it may (sftp.max_reorder_bytes); "
                  "upload aborted, try again later")


def _listening_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``'s first address, as the other front
    ends bind (SO_REUSEADDR, IPv6 only on an IPv6 address). Raises OSError."""
    family, kind, proto, _, addr = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                      flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(addr)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class SftpHandle:
    """A running listener; :meth:`close` stops it and its connections."""

    def __init__(self, gw: Any, cfg: Any) -> None:
        self.gw = gw
        self.cfg = cfg
        #: every connection, logged in or not (closed by close())
        self.connections: set[Any] = set()
        s = cfg.sftp
        self.slots = Slots(s.max_connections, s.max_connections_per_ip, s.max_unauthenticated,
                           s.max_unauthenticated_per_ip)
        self.reorder = ByteBudget(s.max_reorder_bytes, "sftp", "reorder_bytes", _process_refusal, gauge="sftp_reorder_bytes")
        self.pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="sftp-core")
        self.ctx: Any = None  # protocols.sftp.handler.Context, made with the SSH side
        self._key_paths = host_key_paths(cfg)
        self._sock = _listening_socket(cfg.server.host, s.port)
        self.address = (cfg.server.host, self._sock.getsockname()[1])
        self._acceptor: Any = None
        self._starting: asyncio.Task | None = None
        self._loop = AcceptLoop(getattr(gw, "descriptors", None))
        self._thread = threading.Thread(target=self._loop.run_forever, name="sftp", daemon=True)
        self._closed = False
        self._loop.call_soon(self._loop.add_reader, self._sock.fileno(), self._first_client)
        self._thread.start()

    def _first_client(self) -> None:
        """A client waits in the backlog: start the SSH side, which accepts it."""
        self._loop.remove_reader(self._sock.fileno())
        self._starting = self._loop.create_task(self._start_ssh())

    async def _start_ssh(self) -> None:
        try:
            from protocols.sftp import ssh

            self._acceptor = await ssh.listen(self, self._sock, self._key_paths)
        except Exception as exc:
            log.error("sftp: cannot serve on %s:%d: %s", *self.address, exc)
            self._sock.close()  # clients are refused rather than left waiting

    async def run(self, fn: Callable, *args: Any) -> Any:
        """``fn(*args)`` in the worker pool."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def close(self) -> None:
        """Stop listening, close every connection (open uploads are settled
        as on a dropped connection) and stop the loop. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=30)
        finally:
            self._stop_loop()

    async def _shutdown(self) -> None:
        if self._starting is not None:
            await asyncio.wait([self._starting])
        if self._acceptor is None:
            if self._sock.fileno() >= 0:
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            return
        self._acceptor.close()
        conns = list(self.connections)
        for conn in conns:
            conn.close()
        if conns:
            await asyncio.wait([asyncio.ensure_future(c.wait_closed()) for c in conns], timeout=10)
        await self._acceptor.wait_closed()
        # Sessions finish their last requests and closes after the transport has gone.
        others = asyncio.all_tasks() - {asyncio.current_task()}
        if others:
            await asyncio.wait(others, timeout=10)

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()
        self.pool.shutdown(wait=True, cancel_futures=True)


def serve(gw: Any, cfg: Any) -> SftpHandle:
    """Start the SFTP/scp listener (``cfg.sftp``) and return once it listens;
    port 0 picks a free one (see ``handle.address``). Raises OSError when the
    port cannot be bound."""
    return SftpHandle(gw, cfg)
