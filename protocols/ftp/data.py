"""Data connections: passive ports taken without a race, and every failure
of a transfer answered on the control channel.

pyftpdlib binds a passive port with SO_REUSEADDR and listens afterwards, so
two sessions (one thread each) could bind the same port and the second
``listen`` failed with EADDRINUSE, which closed that client's control
connection; when the range was used up it listened on a port outside it.
Here bind and listen happen together under one process-wide lock, a port
another process holds is skipped, and a range that is used up is a 425."""

from __future__ import annotations

import errno
import logging
import os
import random
import socket
import sys
import threading
from typing import Any

from pyftpdlib.exceptions import _FileReadWriteError, _RetryError
from pyftpdlib.handlers.ftp.dispatchers import PassiveDTP
from pyftpdlib.ioloop import _ERRNOS_RETRY, Acceptor

from gateway import errors as E
from protocols.ftp.errors import reply_code

__all__ = ["NoPassivePort", "GatewayPassiveDTP", "DataErrorsMixin", "transfer_reply", "UploadEndMixin",
           "tls_data_mixin", "data_tls_context"]

log = logging.getLogger("gateway.ftp")

#: One lock for every FTP server in the process: between a bind and its
#: listen no other session may take the same port.
_PORTS_LOCK = threading.Lock()
_SKIP = (errno.EADDRINUSE, errno.EACCES, errno.EPERM, errno.EADDRNOTAVAIL)


class NoPassivePort(Exception):
    """Every port of the passive range is in use."""


def _listen_in(family: int, host: str, ports: list[int] | None, backlog: int) -> socket.socket:
    """A listening socket on ``host`` at one of ``ports`` (any port when
    None). Raises NoPassivePort when every port is taken."""
    if not ports:
        candidates = [0]
    else:  # from a random one on, in order (a shuffle of the range cost 25 us of a small upload's CPU)
        start = random.randrange(len(ports))
        candidates = ports[start:] + ports[:start]
    with _PORTS_LOCK:
        for port in candidates:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((host, port))
                sock.listen(backlog)
            except OSError as err:
                sock.close()
                if err.errno in _SKIP:
                    continue
                raise
            sock.setblocking(False)
            return sock
    raise NoPassivePort(f"all {len(candidates)} passive ports are in use")


class GatewayPassiveDTP(PassiveDTP):
    """pyftpdlib's passive acceptor with the port taken by :func:`_listen_in`.
    Raises NoPassivePort (the caller answers 425)."""

    def __init__(self, cmd_channel: Any, extmode: bool = False) -> None:
        self.cmd_channel = cmd_channel
        self.log = cmd_channel.log
        self.log_exception = cmd_channel.log_exception
        Acceptor.__init__(self, ioloop=cmd_channel.ioloop)
        local_ip = cmd_channel.socket.getsockname()[0]
        masquerade = cmd_channel.masquerade_address_map.get(local_ip) or cmd_channel.masquerade_address
        sock = _listen_in(cmd_channel.socket.family, local_ip, cmd_channel.passive_ports,
                          self.backlog or cmd_channel.server.backlog)
        self.set_socket(sock)
        self.accepting = True  # what asyncore's listen() would have set
        port = sock.getsockname()[1]
        if extmode:
            cmd_channel.respond(f"229 Entering extended passive mode (|||{port}|).")
        else:
            ip = masquerade or local_ip
            if ip.startswith("::ffff:"):  # an IPv4 client on a dual-stack socket
                ip = ip[7:]
            cmd_channel.respond(f"227 Entering passive mode ({ip.replace('.', ',')},{port // 256},{port % 256}).")
        if self.timeout:
            self.call_later(self.timeout, self.handle_timeout)


def transfer_reply(exc: BaseException) -> str:
    """The control-channel reply for a transfer that failed with ``exc``:
    the storage's refusal in the error table's terms (452 when full), a
    local file error as 451, a broken data connection as 426."""
    if isinstance(exc, _FileReadWriteError) and isinstance(exc.__cause__, BaseException):
        exc = exc.__cause__
        if isinstance(exc, E.GatewayError):
            return f"{reply_code(exc)} {exc}; transfer aborted."
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return "452 Storage is full or over quota; transfer aborted."
        return f"451 Storage error ({getattr(exc, 'strerror', None) or exc}); transfer aborted."
    if isinstance(exc, E.GatewayError):
        return f"{reply_code(exc)} {exc}; transfer aborted."
    if isinstance(exc, OSError):
        return f"426 Data connection failed ({exc.strerror or exc}); transfer aborted."
    return "451 Internal error; transfer aborted."


class DataErrorsMixin:
    """For pyftpdlib's DTPHandler: whatever a transfer fails with, the
    control channel gets one reply and keeps going; only an error nobody
    foresaw is logged with its traceback."""

    def handle_error(self) -> None:
        exc = sys.exc_info()[1]
        if exc is None or not isinstance(exc, (E.GatewayError, OSError)):
            log.exception("FTP transfer failed unexpectedly")
        try:
            self._resp = (transfer_reply(exc) if exc is not None else "451 Internal error; transfer aborted.",
                          log.info)
            self.close()  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - the reply must not be lost to a second failure
            log.exception("closing a failed FTP transfer")


class UploadEndMixin:
    """For pyftpdlib's DTPHandler: an upload is complete only when the
    client ends it. pyftpdlib took a reset connection (ECONNRESET, EPIPE...)
    for the end of the file too, answered 226 and kept what had arrived;
    here the error goes to ``handle_read``'s OSError branch: 426, nothing
    committed. Only a clean EOF (FIN) ends an upload in clear."""

    #: Bytes asked of the socket per read (pyftpdlib's: 64 KiB): a read of a
    #: whole 1 MiB block is one write to the storage and, once it is full,
    #: handed to the digests without a copy (gateway.digests); 16 reads,
    #: writes and copies per MiB cost ~10% of a large upload's CPU.
    ac_in_buffer_size = 1 << 20

    def recv(self, buffer_size: int) -> bytes:
        try:
            data = self.socket.recv(buffer_size)  # type: ignore[attr-defined]
        except OSError as err:
            if err.errno in _ERRNOS_RETRY:
                raise _RetryError from err
            raise
        if not data:
            self.handle_close()  # type: ignore[attr-defined]
        return data


def tls_data_mixin(SSL: Any) -> type:
    """:class:`UploadEndMixin` for a data connection that may be protected
    (pyOpenSSL's module as ``SSL``, imported only for a TLS listener).

    Over TLS only the client's close_notify ends an upload: a TCP end
    without it (FIN or reset) is a truncated upload, e.g. a client killed
    mid-file. pyftpdlib answered 226 to both and kept what had arrived.

    And the connection speaks TLS 1.2 (:func:`data_tls_context`): a TLS 1.3
    server sends its session ticket after the handshake, which a client
    that only writes never reads. lftp writes a whole file into its socket
    buffer, sends close_notify and closes without waiting; a ticket that
    arrives after that close (our side busy) makes the client's kernel
    reset the connection and throw away the part of the file not yet
    delivered. TLS 1.2 sends its ticket inside the handshake, which the
    client reads before it sends any data."""

    class TLSDataConnection(UploadEndMixin):
        #: pyOpenSSL allocates the whole size asked for each read (of one
        #: 16 KiB record at most): pyftpdlib's size, not the clear one's.
        ac_in_buffer_size = 1 << 16

        def secure_connection(self, ssl_context: Any) -> None:
            super().secure_connection(self.cmd_channel.data_ssl_context)  # type: ignore[misc,attr-defined]

        def recv(self, buffer_size: int) -> bytes:
            if not self._ssl_requested:  # type: ignore[attr-defined]
                return super().recv(buffer_size)
            try:
                return self.socket.recv(buffer_size)  # type: ignore[attr-defined]
            except SSL.WantReadError as err:
                self._ssl_want_read = True
                raise _RetryError from err
            except SSL.WantWriteError as err:
                self._ssl_want_write = True
                raise _RetryError from err
            except SSL.ZeroReturnError:  # close_notify: the whole file is here
                self.handle_close()  # type: ignore[attr-defined]
                return b""
            except SSL.SysCallError as err:  # reset, or (older OpenSSL) EOF
                self._error = True  # no TLS shutdown on a broken connection
                code = err.args[0] if err.args else -1
                if isinstance(code, int) and code > 0:
                    raise OSError(code, os.strerror(code)) from None
                raise _no_close_notify() from None
            except SSL.Error as err:  # OpenSSL 3: "unexpected eof while reading"
                if "unexpected eof" not in str(err).lower():
                    raise
                self._error = True
                raise _no_close_notify() from None

    return TLSDataConnection


def _no_close_notify() -> OSError:
    """How a protected upload that ended without the client's close_notify
    fails (426, see :func:`transfer_reply`)."""
    return ConnectionAbortedError(errno.ECONNABORTED, "closed without TLS close_notify")


def data_tls_context(SSL: Any, certfile: str, keyfile: str) -> Any:
    """The pyOpenSSL context of protected data connections: TLS 1.2 with
    forward-secret AEAD ciphers (why not 1.3: :func:`tls_data_mixin`)."""
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.use_certificate_chain_file(certfile)
    ctx.use_privatekey_file(keyfile)
    ctx.set_options(SSL.OP_NO_COMPRESSION)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_cipher_list(b"ECDHE+AESGCM:ECDHE+CHACHA20")
    return ctx
