"""Which SSH host keys an SFTP mount trusts.

- ``known_hosts`` given (a file in OpenSSH's format): the server's key must
  be in it; nothing is ever added to it.
- otherwise **trust on first use**: the first key a server (host and port)
  shows is recorded in ``<state_dir>/known_hosts`` (same format, created
  0600 like every state file) and every later connection must show that
  key.
- ``insecure_skip_host_key_check = true``: no check (anyone in the middle
  gets the mount's credentials; for tests and throw-away setups only).

A key that is not trusted refuses the connection with one line naming the
host, the port and the key's SHA256 fingerprint (and the file by its role,
not its path: clients of the gateway see the line too); the mount is then
unavailable (BackendUnavailable), as for a server that cannot be reached,
and stays so until the key is trusted (edit or remove the line for
``[host]:port`` in the file named by the error).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import asyncssh

from gateway import errors as E
from gateway.private import FILE_MODE, create_private, private_dir

__all__ = ["HostKeyCheck", "RECORD_NAME", "read_known_hosts"]

log = logging.getLogger("gateway.backends")

#: The trust-on-first-use record, in the gateway's state_dir.
RECORD_NAME = "known_hosts"

# One process may open several mounts of one server at once: reading the
# record and adding to it is one step.
_RECORD_LOCK = threading.Lock()


def read_known_hosts(path: Path | str) -> None:
    """Check that ``path`` is a readable known_hosts file; raises
    BadRequest naming it and what is wrong."""
    try:
        asyncssh.read_known_hosts(str(path))
    except (OSError, ValueError) as exc:
        raise E.BadRequest(f"known_hosts {path}: cannot be read ({exc})") from None


def _pattern(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


class HostKeyCheck:
    """The host key policy of one SFTP mount of ``host``:``port``.

    :meth:`connect_options` are the asyncssh ``connect()`` keywords that
    apply it; after a refused connection :attr:`refusal` says why (one
    line, for the operator)."""

    def __init__(self, host: str, port: int, *, known_hosts: str | None = None,
                 state_dir: Path | str | None = None, skip: bool = False) -> None:
        """Raises BadRequest when ``known_hosts`` cannot be read, or when
        there is neither a file, a state_dir to record in, nor ``skip``."""
        self.host, self.port = host, port
        self.skip = skip
        self.file = Path(known_hosts) if known_hosts else None
        self.record = Path(state_dir) / RECORD_NAME if state_dir is not None and not self.file else None
        self.refusal: str | None = None
        if skip:
            return
        if self.file is not None:
            read_known_hosts(self.file)
        elif self.record is None:
            raise E.BadRequest("an SFTP mount needs known_hosts, a state_dir to record the server's key in, "
                               "or insecure_skip_host_key_check = true")

    def connect_options(self) -> dict[str, Any]:
        """asyncssh ``connect()`` keywords for one new connection (the
        trusted keys are read afresh each time)."""
        self.refusal = None
        if self.skip:
            return {"known_hosts": None}
        check = self

        class Client(asyncssh.SSHClient):
            def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
                return check._unlisted_key(key)

        # an SSHKnownHosts object (never empty, unlike b"", which would mean
        # the user's ~/.ssh/known_hosts)
        return {"known_hosts": asyncssh.import_known_hosts(self._text()), "client_factory": Client}

    def _text(self) -> str:
        path = self.file or self.record
        try:
            return path.read_text()
        except FileNotFoundError:
            return ""

    def _unlisted_key(self, key: asyncssh.SSHKey) -> bool:
        """A key the trusted list does not hold: recorded and accepted on
        first use; otherwise refused (raises ValueError, which asyncssh
        turns into HostKeyNotVerifiable; :attr:`refusal` keeps the line)."""
        fingerprint = key.get_fingerprint("sha256")
        where = f"{self.host} port {self.port}"
        if self.file is not None:
            self.refusal = (f"SFTP server {where} shows host key {fingerprint}, which is not in the mount's "
                            f"known_hosts file: connection refused")
            raise ValueError(self.refusal)
        with _RECORD_LOCK:
            known = asyncssh.import_known_hosts(self._text()).match(self.host, self.host, self.port)
            if not any(known[:2]):  # first use: no key (nor CA) recorded for this server
                line = f"{_pattern(self.host, self.port)} {key.export_public_key().decode().strip()}\n"
                try:
                    private_dir(self.record.parent)
                    create_private(self.record)
                    fd = os.open(self.record, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
                    with os.fdopen(fd, "a") as f:
                        f.write(line)
                    return True
                except OSError as exc:
                    log.error("cannot record the host key of %s in %s: %s", where, self.record, exc)
                    self.refusal = (f"SFTP server {where} shows host key {fingerprint} for the first time, and it "
                                    f"cannot be recorded in state_dir/{RECORD_NAME}: connection refused")
                    raise ValueError(self.refusal) from None
        self.refusal = (f"SFTP server {where} now shows host key {fingerprint}, not the one recorded in "
                        f"state_dir/{RECORD_NAME} on first use: connection refused (if the server's key really "
                        f"changed, remove the line for {_pattern(self.host, self.port)} from that file)")
        raise ValueError(self.refusal)

    def refused(self) -> E.BackendUnavailable | None:
        """The error of a connection this check refused, if it did."""
        return E.BackendUnavailable(self.refusal) if self.refusal else None
