"""What ``gateway serve`` would refuse, checked without starting anything.

:func:`check` runs after :func:`gateway.config.load_config` (which checks
each key's type and range) and looks at what only the whole config, the
environment and the state folder tell: mount URLs (protocol known, host and
port well-formed, ``${NAME}`` variables set, a local folder one or possible
to make), two front ends on one port or a
front end inside FTP's passive range, TLS files readable, SFTP host keys
readable and holding a private key,
and a job store file that is not an SQLite database. ``gateway check-config`` and ``gateway
serve`` both call it, so a config that checks ``ok`` does not crash at start
for any of these reasons.

Every problem is one :class:`~gateway.config.ConfigError` line naming the
file, the key and what was expected.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from gateway.config import Config, ConfigError
from gateway.errors import GatewayError

__all__ = ["check", "check_bind", "check_store_file", "STORE_MARKER"]

_SQLITE_HEADER = b"SQLite format 3\x00"

#: Written in the state folder when the SQLite job store is first made: a
#: missing ``jobs.db`` next to it means the store existed and is gone.
STORE_MARKER = ".store-created"


def check(cfg: Config, source: str | os.PathLike[str], new_store: bool = False) -> None:
    """Check ``cfg`` (loaded from ``source``, named in messages);
    ``new_store`` accepts a job store that is missing where one existed.

    Raises ConfigError for the first problem found. Reads files, never
    writes or connects; idempotent.
    """
    from backends.registry import check_url

    for i, mount in enumerate(cfg.mounts):
        try:
            check_url(mount.url, mount.options)
        except GatewayError as e:
            raise ConfigError(f"{source}: mounts[{i}].url: {e}") from None
    _check_ports(cfg, source)
    _check_key_files(cfg, source)
    if cfg.jobs.store == "sqlite":
        check_store_file(Path(cfg.server.state_dir) / "jobs.db", new_store)


def check_store_file(path: Path, new_store: bool = False) -> None:
    """Raise ConfigError when ``path`` exists but is no SQLite database, or
    is missing although :data:`STORE_MARKER` beside it says a store was made
    there (unless ``new_store``). Missing on a first start is fine: the store
    creates it."""
    try:
        with open(path, "rb") as f:
            header = f.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        if not new_store and (path.parent / STORE_MARKER).exists():
            raise ConfigError(f"{path}: the job store is missing although {path.parent / STORE_MARKER} says one "
                              "was made here; restore it from a backup, or start with `gateway serve "
                              "--new-store` to make an empty one (every earlier job is forgotten)") from None
        return
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the job store: {e.strerror or e}") from None
    if header and header != _SQLITE_HEADER:
        raise ConfigError(store_error(path, "not an SQLite database"))


def store_error(where: Any, cause: object) -> str:
    """The one line for a job store that cannot be opened."""
    return (f"{where}: cannot open the job store: {cause}; restore it from a backup, or move it "
            f"aside to start with an empty one (every job is then forgotten)")


def _check_ports(cfg: Config, source: Any) -> None:
    taken: dict[int, str] = {}
    for section in ("ftp", "sftp", "http"):
        front = getattr(cfg, section)
        if not front.enabled:
            continue
        if front.port in taken:
            raise ConfigError(f"{source}: {section}.port: expected a port no other front end uses, "
                              f"got {front.port} (also {taken[front.port]}.port)")
        taken[front.port] = section
    if cfg.ftp.enabled:
        passive = cfg.ftp.passive_range
        for port, section in taken.items():
            if port in passive:
                raise ConfigError(f"{source}: ftp.passive_ports: expected a range without the front ends' "
                                  f"ports, got {cfg.ftp.passive_ports!r} (holds {section}.port {port})")


def _check_key_files(cfg: Config, source: Any) -> None:
    """TLS certificates and keys, SFTP host keys: each named one readable
    (none named: the gateway makes its own in state_dir)."""
    files: list[tuple[str, Any, str]] = []
    for section, on in (("ftp", cfg.ftp.tls != "off"), ("http", cfg.http.tls)):
        front = getattr(cfg, section)
        if front.enabled and on:
            files += [(f"{section}.{key}", getattr(front, key), "a readable PEM file")
                      for key in ("certfile", "keyfile") if getattr(front, key) is not None]
    if cfg.sftp.enabled:
        files += [(f"sftp.host_keys[{i}]", path, "a readable private key file")
                  for i, path in enumerate(cfg.sftp.host_keys)]
    for key, path, what in files:
        try:
            with open(path, "rb") as f:
                head = f.read(4096)
        except OSError as e:
            raise ConfigError(f"{source}: {key}: expected {what}, got {str(path)!r} ({e.strerror or e})") from None
        # The SFTP listener parses its keys only when the first client
        # connects (asyncssh is loaded then): a public key named by mistake
        # is caught here. OpenSSH, PEM and PuTTY keys say what they hold;
        # DER starts with a SEQUENCE.
        if key.startswith("sftp.") and not (b"PRIVATE KEY" in head or head.startswith((b"PuTTY-User-Key-File", b"\x30"))):
            raise ConfigError(f"{source}: {key}: expected {what}, got {str(path)!r} (holds no private key)")


def check_bind(cfg: Config) -> None:
    """Bind, and release at once, the port of each enabled front end on
    ``server.host`` (with SO_REUSEADDR, as the front ends do): what
    ``check-config --bind`` adds. Raises ConfigError, one line naming the
    front end, the address and the cause (``http: cannot listen on
    127.0.0.1:8080: address already in use``)."""
    from gateway.server import _cause, _hostport

    host = cfg.server.host
    for section in ("ftp", "sftp", "http"):
        front = getattr(cfg, section)
        if not front.enabled:
            continue
        address = _hostport(host, front.port)
        try:
            family, kind, proto, _, sockaddr = socket.getaddrinfo(
                host or None, front.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
            with socket.socket(family, kind, proto) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(sockaddr)
        except socket.gaierror as e:
            raise ConfigError(f"{section}: cannot listen on {address}: {e.strerror or e}") from None
        except OSError as e:
            raise ConfigError(f"{section}: cannot listen on {address}: {_cause(e)}") from None
