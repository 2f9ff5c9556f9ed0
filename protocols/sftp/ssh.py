"""The SFTP/scp listener's asyncssh side: the SSH connection (logins,
connection slots, the gateway session), its channels, host key files.

Imported by :mod:`protocols.sftp.server` when the first client connects (or
when a host key must be generated without ssh-keygen): asyncssh and cryptography cost ~17 MiB
of resident memory that a gateway nobody reaches over SFTP does without.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import asyncssh
from asyncssh.logging import SSHLogger
from asyncssh.mac import _UMAC, get_mac_algs
from asyncssh.constants import MSG_IGNORE
from asyncssh.encryption import get_encryption_algs
from asyncssh.kex import get_kex_algs
from asyncssh.packet import SSHPacketLogger, String, UInt64
from asyncssh.stream import SSHServerStreamSession

from gateway import errors as E
from gateway import metrics
from gateway.budget import ByteBudget
from gateway.slots import Slot
from gateway.ssh_algorithms import DEFAULT_CIPHERS, DEFAULT_KEX_ALGORITHMS, DEFAULT_MACS
from gateway.types import Session
from protocols.sftp.commands import execute
from protocols.sftp.handler import Context, GatewaySFTPServer, SessionLimits
from protocols.sftp.packets import PacketHandler

if TYPE_CHECKING:
    from protocols.sftp.server import SftpHandle

__all__ = ["listen", "read_host_keys", "write_new_key"]

log = logging.getLogger("gateway.sftp")


def _log_when_enabled(log_text: Callable[..., None]) -> Callable[..., None]:
    """asyncssh's ``SSHLogger.log`` turns every argument into text before the
    logging module looks at the level: its two debug lines per SFTP request
    cost ~5% of the event loop with debug logging off. The level is checked
    first; with it on, the same lines are written."""

    def log(self: SSHLogger, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            log_text(self, level, msg, *args, **kwargs)

    return log


SSHLogger.log = _log_when_enabled(SSHLogger.log)  # type: ignore[method-assign]


def _log_packet_when_enabled(log_packet: Callable[..., None]) -> Callable[..., None]:
    """asyncssh's ``SSHPacketLogger._log_packet`` formats the message of every
    packet sent and received (its name, ``plural()`` of its length, f-strings)
    before ``SSHLogger.packet`` looks at the packet debug level (3, set by
    ``asyncssh.set_debug_level``): ~0.6 µs for each SSH and each SFTP packet,
    four to six a small SFTP request. The level is checked first; at level 3
    the same lines are written."""

    def _log_packet(self: SSHPacketLogger, *args: Any) -> None:
        if SSHLogger._debug_level >= 3:
            log_packet(self, *args)

    return _log_packet


SSHPacketLogger._log_packet = _log_packet_when_enabled(SSHPacketLogger._log_packet)  # type: ignore[method-assign]


def _keyed_umac(mac: type) -> None:
    """asyncssh's UMAC (``umac-64-etm@openssh.com``, what OpenSSH's client
    picks against our offer, and the other umac MACs) builds a new nettle
    context and runs its key setup for every packet signed or checked
    (``umac64(key, packet, nonce)``): ~2.7 of the 4.8 µs a small packet's MAC
    took, 4 of the 8 µs of a 32 KiB one. Here each MAC object keys one context
    once and gives it each packet's nonce (the sequence number, as asyncssh
    does); nettle resets the message state after each digest, so the MAC is
    the same bytes (tested against asyncssh's own)."""
    init = mac.__init__

    def __init__(self: Any, key: bytes, hash_size: int, umac_alg: Callable) -> None:
        init(self, key, hash_size, umac_alg)
        self._keyed = umac_alg(key)

    def sign(self: Any, seq: int, packet: bytes) -> bytes:
        keyed = self._keyed
        keyed.set_nonce(UInt64(seq))
        keyed.update(packet)
        return keyed.digest()

    mac.__init__ = __init__
    mac.sign = sign


_keyed_umac(_UMAC)

_EMPTY = (String(b""),)


def _without_cbc_ignores(conn: asyncssh.SSHServerConnection) -> None:
    """asyncssh sends an empty SSH_MSG_IGNORE before every packet of the
    connection protocol once encryption is on (``send_packet``): RFC 4251
    §9.3.1's countermeasure for CBC, whose next IV an attacker knows. It
    doubles the packets the server encrypts, MACs, logs and writes (a second
    ``send`` each: a small SFTP download's five replies are ten). The
    ciphers offered (``[sftp] ciphers``, which refuses CBC) have no CBC: with
    CTR, GCM or chacha20-poly1305 the IGNORE protects nothing, so it is
    skipped (the client ignores it by definition: nothing else changes on
    the wire). Should a CBC cipher ever be negotiated (``seed-cbc@ssh.com``
    too), it is sent as before."""
    send = conn.send_packet

    def send_packet(pkttype: int, *args: bytes, handler: Any = None) -> None:
        if pkttype == MSG_IGNORE and args == _EMPTY and "-cbc" not in conn.get_extra_info("send_cipher", ""):
            return
        send(pkttype, *args, handler=handler)

    conn.send_packet = send_packet  # type: ignore[method-assign]


def read_host_keys(paths: Sequence[Path]) -> list[asyncssh.SSHKey]:
    """The private keys in ``paths``. Raises ValueError naming an unreadable key."""
    keys = []
    for path in paths:
        try:
            keys.append(asyncssh.read_private_key(path))
        except (OSError, asyncssh.KeyImportError) as exc:
            raise ValueError(f"sftp.host_keys: cannot read {path}: {exc}") from None
    return keys


def write_new_key(path: Path) -> None:
    """Write a new ed25519 private key to ``path`` (made 0600) and its public
    key to ``path.pub``."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key())
    path.with_name(path.name + ".pub").write_bytes(key.export_public_key())


async def listen(handle: "SftpHandle", sock: socket.socket, key_paths: Sequence[Path]) -> asyncssh.SSHAcceptor:
    """asyncssh serving ``handle``'s connections on the listening ``sock``
    with the host keys in ``key_paths`` and the algorithms of ``[sftp]``.
    Raises ValueError naming an unreadable key, or an algorithm option none
    of whose names this installation can run."""
    keys = read_host_keys(key_paths)
    s = handle.cfg.sftp
    algs = {"encryption_algs": _offer("ciphers", s.ciphers, get_encryption_algs(), DEFAULT_CIPHERS),
            "mac_algs": _offer("macs", s.macs, get_mac_algs(), DEFAULT_MACS),
            "kex_algs": _offer("kex_algorithms", s.kex_algorithms, get_kex_algs(), DEFAULT_KEX_ALGORITHMS)}
    handle.ctx = Context(handle.gw, handle.pool, handle.cfg.policy.budget_s("sftp"))
    return await asyncssh.listen(sock=sock, server_factory=lambda: _Connection(handle), server_host_keys=keys,
                                 encoding=None, login_timeout=s.login_timeout_s, **algs)


def _offer(option: str, names: list[str], available: Sequence[bytes], default: list[str]) -> list[str]:
    """The ``names`` of ``[sftp] <option>`` this installation's asyncssh can
    run (``available``), in their order. The config accepts every name
    asyncssh has; some need a library that may be missing (UMAC libnettle,
    ML-KEM and sntrup761 theirs): those are left out, as asyncssh leaves
    them out of its own defaults, with a warning when the admin chose the
    list. Raises ValueError when none is left."""
    have = {a.decode("ascii") for a in available}
    offer = [n for n in names if n in have]
    if not offer:
        raise ValueError(f"sftp.{option}: none of {', '.join(names)} is available in this installation")
    if len(offer) < len(names) and names != default:
        log.warning("sftp.%s: not available in this installation, not offered: %s", option,
                    ", ".join(n for n in names if n not in have))
    return offer


class _Connection(asyncssh.SSHServer):
    """One SSH connection: its logins and its gateway session."""

    def __init__(self, handle: "SftpHandle") -> None:
        self._handle = handle
        self._conn: asyncssh.SSHServerConnection | None = None
        self.remote = ""
        self._slot: Slot | None = None
        self._logged_in = False
        self.session: Session | None = None
        self.limits: SessionLimits | None = None
        self.channels = 0  # session channels open
        self._users: dict[str, Any] = {}
        self._keys: dict[tuple[str, bytes], bool] = {}
        self._method = "password"  # of the login that succeeded
        self._since = 0.0  # when the session began (monotonic)

    def _refuse(self, limit: str, reason: str) -> None:
        assert self._conn is not None
        metrics.refused("sftp", limit)
        log.info("sftp: refusing %s: %s", self.remote, reason)
        self._conn.disconnect(asyncssh.DISC_TOO_MANY_CONNECTIONS, reason)

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        h = self._handle
        self._conn = conn
        _without_cbc_ignores(conn)
        host, port = conn.get_extra_info("peername")[:2]
        self.remote = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        h.connections.add(conn)
        guard = getattr(h.gw, "descriptors", None)
        slot = (("descriptors", "too many connections; try again later")
                if guard is not None and not guard.admit(None) else h.slots.admit(host))
        if isinstance(slot, tuple):
            self._refuse(*slot)
        else:
            self._slot = slot

    def connection_lost(self, exc: Exception | None) -> None:
        h = self._handle
        h.connections.discard(self._conn)
        if not self._logged_in and isinstance(exc, asyncssh.ConnectionLost) and "timeout" in str(exc).lower():
            metrics.refused("sftp", "login_timeout")
            log.info("sftp: %s did not log in within %d s: closed", self.remote, h.cfg.sftp.login_timeout_s)
        h.slots.release(self._slot)
        if self.session is not None:
            metrics.session_closed("sftp")
            h.gw.ops.logged_out(self.session, time.monotonic() - self._since)
        rejected = [name for (name, _), ok in self._keys.items() if not ok]
        if not self._logged_in and rejected:
            self._handle.gw.auth.record_failure(rejected[-1], self.remote, "key", protocol="sftp")

    def begin_auth(self, username: str) -> bool:
        return True

    async def _login(self, login: Callable, username: str, secret: Any, method: str) -> bool:
        try:
            user = await self._handle.run(login, username, secret, self.remote)
        except E.AuthenticationFailed:
            return False
        self._users[username] = user
        self._method = method
        return True

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        return await self._login(partial(self._handle.gw.logins.login, protocol="sftp"), username, password,
                                 "password")

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        # asyncssh asks once when the client offers a key and again to check
        # its signature: count one login (or failure) per key.
        k = (username, key.public_data)
        if k not in self._keys:
            login = partial(self._handle.gw.auth.login_key, count_failure=False, protocol="sftp")
            self._keys[k] = await self._login(login, username, key.public_data, "key")
        return self._keys[k]

    def kbdint_auth_supported(self) -> bool:
        return self._handle.cfg.sftp.keyboard_interactive

    def get_kbdint_challenge(self, username: str, lang: str, submethods: str) -> tuple:
        return "", "", "", [("Password: ", False)]

    async def validate_kbdint_response(self, username: str, responses: Sequence[str]) -> bool:
        return len(responses) == 1 and await self.validate_password(username, responses[0])

    def auth_completed(self) -> None:
        assert self._conn is not None
        h = self._handle
        self._logged_in = True
        refusal = h.slots.promote(self._slot)
        if refusal is not None:
            self._refuse(*refusal)
            return
        user = self._users[self._conn.get_extra_info("username")]
        self.session = Session(user, "sftp", self.remote)
        self._since = time.monotonic()
        h.gw.ops.logged_in(self.session, self._method)
        self.limits = SessionLimits(h.cfg.sftp.max_handles_per_session, ByteBudget(
            h.cfg.sftp.max_reorder_bytes_per_session, "sftp", "reorder_bytes_per_session", _session_refusal,
            parent=h.reorder))
        metrics.session_opened("sftp")

    def session_requested(self) -> "_Channel | bool":
        """A new session channel, or False (the client is told the channel
        was refused) when the connection has its most open: each holds
        its own buffers of requests in flight."""
        if self.channels >= self._handle.cfg.sftp.max_channels_per_connection:
            metrics.refused("sftp", "channels_per_connection")
            log.info("sftp: %s: refusing one more session channel (%d open)", self.remote, self.channels)
            return False
        self.channels += 1
        return _Channel(self._handle, self)


def _session_refusal(n: int) -> E.GatewayError:
    return E.BadRequest("writes too far out of order: this session holds the most out-of-order data it may "
                        "(sftp.max_reorder_bytes_per_session); upload aborted")


class _Channel(SSHServerStreamSession):
    """A session channel: the SFTP subsystem, scp, or a job command."""

    def __init__(self, handle: "SftpHandle", owner: _Connection) -> None:
        super().__init__(self._command, sftp_factory=self._sftp_server, allow_scp=True)
        self._handle = handle
        self._owner = owner

    def _sftp_server(self, chan: asyncssh.SSHServerChannel) -> GatewaySFTPServer:
        assert self._owner.session is not None and self._owner.limits is not None
        return GatewaySFTPServer(chan, self._handle.ctx, self._owner.session, self._owner.limits)

    def subsystem_requested(self, subsystem: str) -> bool:
        return subsystem == "sftp"

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner.channels -= 1
        super().connection_lost(exc)

    def session_started(self) -> None:
        if self._chan.get_subsystem() != "sftp":
            super().session_started()  # scp (asyncssh's server over our SFTP hooks) or _command
            return
        reader = asyncssh.SSHReader(self, self._chan)
        writer = asyncssh.SSHWriter(self, self._chan)
        handler = PacketHandler(self._sftp_server(self._chan), reader, writer)
        self._conn.create_task(handler.run(), reader.logger)

    async def _command(self, stdin: Any, stdout: Any, stderr: Any) -> None:
        status, out, err = await execute(self._handle.gw.ops, self._owner.session, self._chan.get_command(),
                                         stdin, self._handle.run)
        stdout.write(out)
        stderr.write(err)
        self._chan.exit(status)
