"""The gateway's configuration: one TOML file in, validated models out.

:func:`load_config` reads ``etc/gateway.toml`` (or any file) with the stdlib
``tomllib`` and validates it into the frozen-shape pydantic models below; every
table forbids unknown keys. Any problem becomes a :class:`ConfigError` whose
message is one line naming the file, the dotted key and what was expected::

    etc/gateway.toml: ftp.port: expected an integer between 1 and 65535, got 'abc'

Relative filesystem paths (``server.state_dir``, TLS cert/key files, SSH host
keys, the folder of a ``file://`` mount URL) are taken from the folder of the
config file (the working directory for a config that is not a file) and
stored absolute, so the gateway behaves the same from any working directory.
Other mount URLs are passed to the backends untouched.

This module never imports a protocol library: public keys get a syntactic
check only (type, base64 blob whose wire header names the same type).
"""

from __future__ import annotations

import base64
import binascii
import difflib
import os
import re
import socket
import struct
import tomllib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from gateway import ssh_algorithms as ssh_algs
from gateway.users import PERMISSIONS, User

__all__ = [
    "DEFAULT_CONFIG",
    "ConfigError",
    "Config",
    "Server",
    "Ftp",
    "Sftp",
    "Http",
    "ProtocolPolicy",
    "Policy",
    "Queue",
    "Jobs",
    "Auth",
    "Mount",
    "UserConfig",
    "Logging",
    "load_config",
    "parse_config",
    "load_users_file",
    "validate_user",
    "split_public_key",
]

#: The config ``gateway`` uses when no ``--config`` is given (relative to the
#: working directory).
DEFAULT_CONFIG = Path("etc/gateway.toml")


class ConfigError(Exception):
    """The configuration cannot be used; ``message`` is one line that names
    the file, the key and what was expected."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --------------------------------------------------------------- field types
#
# Each type checks its input itself (TOML already gives typed values, so no
# silent coercion from strings) and fails with an "expected ..." message, so
# the error line reads the same whatever went wrong.


def _fail(message: str, *, subloc: tuple = (), show_input: bool = True) -> PydanticCustomError:
    """An error for the formatter: ``subloc`` extends the key path when a
    list-level check blames one item; ``show_input`` adds ", got <value>"."""
    return PydanticCustomError("gateway", "{message}", {"message": message, "subloc": subloc, "show_input": show_input})


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else check(v)


def _int_check(lo: int, hi: int | None = None) -> Callable[[Any], int]:
    what = f"an integer between {lo} and {hi}" if hi is not None else f"an integer >= {lo}"

    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
            raise _fail(f"expected {what}")
        return v

    return check


def _number_check(lo: float, *, strict: bool = False) -> Callable[[Any], float]:
    what = f"a number {'>' if strict else '>='} {lo:g}"

    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v < lo or (strict and v == lo):
            raise _fail(f"expected {what}")
        return float(v)

    return check


def _check_bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise _fail("expected true or false")
    return v


def _check_str(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise _fail("expected a non-empty string")
    return v


def _choice_check(*values: str, fold: bool = False) -> Callable[[Any], str]:
    what = ", ".join(repr(v) for v in values)

    def check(v: Any) -> str:
        key = v.upper() if fold and isinstance(v, str) else v
        if key not in values:
            raise _fail(f"expected one of {what}")
        return key

    return check


def _base(info: ValidationInfo) -> str:
    """The folder relative paths are taken from: the config file's, else the working directory."""
    return (info.context or {}).get("base") or os.getcwd()


def _check_fs_path(v: Any, info: ValidationInfo) -> Path:
    if isinstance(v, Path):
        v = str(v)
    if not isinstance(v, str) or not v.strip() or "\x00" in v:
        raise _fail("expected a file or folder path (relative to the config file's folder)")
    return Path(os.path.abspath(os.path.join(_base(info), os.path.expanduser(v))))


def _check_opt_fs_path(v: Any, info: ValidationInfo) -> Path | None:
    return None if v is None else _check_fs_path(v, info)


def _check_virtual_path(v: Any) -> str:
    if not isinstance(v, str) or not v.startswith("/") or "\x00" in v:
        raise _fail("expected an absolute virtual path like '/' or '/s3'")
    parts = [p for p in v.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _fail("expected an absolute virtual path without '..'")
    return "/" + "/".join(parts)


def _check_url(v: Any, info: ValidationInfo) -> str:
    if not isinstance(v, str) or "://" not in v or v.startswith("://"):
        raise _fail("expected an fsspec URL like 'file://./data' or 's3://bucket/prefix'")
    return "::".join(_rebase_local(part, info) for part in v.split("::"))


def _rebase_local(url: str, info: ValidationInfo) -> str:
    """``file://./data`` → ``file:///<config folder>/data``; other URLs unchanged."""
    scheme, sep, rest = url.partition("://")
    if scheme not in ("file", "local") or not sep or not rest or rest.startswith("/"):
        return url
    return f"{scheme}://{os.path.abspath(os.path.join(_base(info), os.path.expanduser(rest)))}"


_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")


def _check_name(v: Any) -> str:
    if not isinstance(v, str) or not _NAME_RE.fullmatch(v):
        raise _fail("expected a name made of letters, digits, '.', '_' and '-'")
    return v


def _check_permission(v: Any) -> str:
    if v != "*" and v not in PERMISSIONS:
        raise _fail(f"expected a permission: one of {', '.join(PERMISSIONS)} or '*'")
    return v


def _check_argon2(v: Any) -> str:
    if not isinstance(v, str) or not v.startswith("$argon2"):
        raise _fail("expected an argon2 hash starting with '$argon2' (see `gateway user add`)", show_input=False)
    return v


def split_public_key(key: str | bytes) -> tuple[str, str]:
    """Split an OpenSSH public key line ``<type> <base64> [comment]`` into
    ``(type, canonical base64 blob)``; bytes may be such a line or the raw
    SSH wire-format key blob.

    The check is syntactic: the base64 must decode and the blob's own header
    must name the same key type. Raises ValueError with the reason.
    """
    if isinstance(key, (bytes, bytearray)):
        raw = bytes(key)
        if not raw.startswith((b"ssh-", b"ecdsa-", b"sk-")) or b" " not in raw:
            return _split_blob(raw)
        try:
            key = raw.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError("public key line is not ASCII") from None
    fields = key.strip().split(None, 2)
    if len(fields) < 2:
        raise ValueError("expected '<type> <base64> [comment]'")
    kind, b64 = fields[0], fields[1]
    try:
        blob = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the key data is not valid base64") from None
    blob_kind, canonical = _split_blob(blob)
    if blob_kind != kind:
        raise ValueError(f"the key data is a {blob_kind!r} key, not {kind!r}")
    return kind, canonical


def _split_blob(blob: bytes) -> tuple[str, str]:
    if len(blob) < 4:
        raise ValueError("the key data is too short")
    (n,) = struct.unpack(">I", blob[:4])
    kind = blob[4 : 4 + n]
    if n == 0 or n > 64 or len(kind) != n or len(blob) == 4 + n or not re.fullmatch(rb"[A-Za-z0-9@._-]+", kind):
        raise ValueError("the key data is not an SSH public key")
    return kind.decode("ascii"), base64.b64encode(blob).decode("ascii")


def _check_public_key(v: Any) -> str:
    if not isinstance(v, str):
        raise _fail("expected an OpenSSH public key line '<type> <base64> [comment]'")
    try:
        split_public_key(v)
    except ValueError as e:
        raise _fail(f"expected an OpenSSH public key line '<type> <base64> [comment]' ({e})", show_input=False) from None
    return v.strip()


def _check_passive_ports(v: Any) -> str:
    m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", v) if isinstance(v, str) else None
    if not m or not (1 <= int(m[1]) <= int(m[2]) <= 65535):
        raise _fail("expected a port range 'A-B' with 1 <= A <= B <= 65535")
    return f"{int(m[1])}-{int(m[2])}"


def _check_store(v: Any) -> str:
    if v == "sqlite":
        return v
    if isinstance(v, str):
        parts = urlsplit(v)
        if parts.scheme in ("postgresql", "postgres", "postgresql+psycopg") and (parts.netloc or parts.path.strip("/")):
            return v
    raise _fail("expected \"sqlite\" or a URL like \"postgresql://user@host/db\"")


_SSH_WHAT = {"ciphers": "cipher", "macs": "MAC", "kex_algorithms": "key exchange"}
_SSH_NAMES = {"ciphers": ssh_algs.CIPHERS, "macs": ssh_algs.MACS, "kex_algorithms": ssh_algs.KEX_ALGORITHMS}


def _ssh_algorithm_check(option: str) -> Callable[[Any], str]:
    """One name of ``[sftp] <option>``: known to asyncssh and not refused
    (see gateway.ssh_algorithms)."""
    what, names = _SSH_WHAT[option], _SSH_NAMES[option]

    def check(v: Any) -> str:
        if not isinstance(v, str):
            raise _fail(f"expected a {what} name")
        reason = ssh_algs.refusal(option, v)
        if reason:
            raise _fail(reason)
        if v not in names:
            raise _fail(f"expected a {what} asyncssh supports: {', '.join(names)}")
        return v

    return check


Port = Annotated[int, BeforeValidator(_int_check(1, 65535))]
Bool = Annotated[bool, BeforeValidator(_check_bool)]
Str = Annotated[str, BeforeValidator(_check_str)]
OptStr = Annotated[str | None, BeforeValidator(_optional(_check_str))]
FsPath = Annotated[Path, BeforeValidator(_check_fs_path)]
OptFsPath = Annotated[Path | None, BeforeValidator(_check_opt_fs_path)]
VirtualPath = Annotated[str, BeforeValidator(_check_virtual_path)]
Name = Annotated[str, BeforeValidator(_check_name)]
Permission = Annotated[str, BeforeValidator(_check_permission)]


PositiveInt = Annotated[int, BeforeValidator(_int_check(1))]
NonNegativeInt = Annotated[int, BeforeValidator(_int_check(0))]
PositiveFloat = Annotated[float, BeforeValidator(_number_check(0, strict=True))]
NonNegativeFloat = Annotated[float, BeforeValidator(_number_check(0))]


def _unique(items: list, key: Callable[[Any], str], what: str, field: str | None, list_name: str) -> list:
    """``items`` when no two have the same ``key``; else the error names the
    second one's ``field`` (the item itself when None)."""
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        k = key(item)
        if k in seen:
            subloc = (i,) if field is None else (i, field)
            raise _fail(f"duplicate {what} {k!r} (also {list_name}[{seen[k]}])", subloc=subloc, show_input=False)
        seen[k] = i
    return items


# -------------------------------------------------------------------- models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class Server(_Model):
    """``[server]``: where to listen and where to keep state."""

    host: Str = "127.0.0.1"
    state_dir: FsPath = Path("var")
    node_id: Str = Field(default_factory=socket.gethostname)
    #: abandoned temporaries (.gw-up-*, .gw-stage-*, .gw-trash-*) are swept
    #: from every mount at start and this often (0: never); see gateway.sweep
    sweep_interval_s: NonNegativeFloat = 3600.0
    #: a temporary unchanged for less than this is never swept
    temp_grace_s: NonNegativeFloat = 3600.0
    #: new connections are refused once fewer descriptors than this would
    #: be left for the sessions already open (see gateway.descriptors)
    descriptor_reserve: NonNegativeInt = 64
    #: Unicode form of every name: client input is normalised to it and
    #: stored names are matched and listed in it (see backends.local)
    unicode_normalization: Annotated[Literal["NFC", "NFD"], BeforeValidator(_choice_check("NFC", "NFD"))] = "NFC"


class Ftp(_Model):
    """``[ftp]``: the FTP/FTPS front end."""

    enabled: Bool = True
    port: Port = 2121
    passive_ports: Annotated[str, BeforeValidator(_check_passive_ports)] = "60000-60100"
    masquerade_address: OptStr = None
    tls: Annotated[Literal["off", "explicit", "implicit"], BeforeValidator(_choice_check("off", "explicit", "implicit"))] = "off"
    certfile: OptFsPath = None
    keyfile: OptFsPath = None
    max_connections: PositiveInt = 512
    max_connections_per_ip: PositiveInt = 32
    idle_timeout_s: PositiveInt = 300
    #: A connection not logged in counts against these, not the two above,
    #: and is closed (421) when it has not logged in after login_timeout_s.
    login_timeout_s: PositiveInt = 10
    max_unauthenticated: PositiveInt = 128
    max_unauthenticated_per_ip: PositiveInt = 16
    max_line_bytes: Annotated[int, BeforeValidator(_int_check(512, 65536))] = 2048

    @property
    def passive_range(self) -> range:
        """The passive data ports, both ends included."""
        lo, hi = self.passive_ports.split("-")
        return range(int(lo), int(hi) + 1)


class Sftp(_Model):
    """``[sftp]``: the SFTP/scp front end. No ``host_keys``: one is generated
    in ``state_dir`` on first start."""

    enabled: Bool = True
    port: Port = 2222
    host_keys: list[FsPath] = Field(default_factory=list)
    keyboard_interactive: Bool = False
    max_connections: PositiveInt = 512
    max_connections_per_ip: PositiveInt = 32
    #: A connection not logged in counts against these, not the two above,
    #: and is closed when it has not logged in after login_timeout_s (as FTP).
    login_timeout_s: PositiveInt = 10
    max_unauthenticated: PositiveInt = 128
    max_unauthenticated_per_ip: PositiveInt = 16
    #: open files and folders of one connection (all its SFTP channels and scp)
    max_handles_per_session: Annotated[int, BeforeValidator(_int_check(1, 65536))] = 256
    #: SSH session channels (sftp, scp, commands) open at once on one connection (OpenSSH's MaxSessions)
    max_channels_per_connection: Annotated[int, BeforeValidator(_int_check(1, 1024))] = 10
    #: bytes of out-of-order writes held in memory, per connection and in all
    max_reorder_bytes_per_session: Annotated[int, BeforeValidator(_int_check(1 << 20))] = 16 << 20
    max_reorder_bytes: Annotated[int, BeforeValidator(_int_check(1 << 20))] = 256 << 20
    #: the SSH algorithms offered (asyncssh's names; see gateway.ssh_algorithms
    #: for the defaults and what is refused). The client's order picks among
    #: them: OpenSSH gets AES-GCM (cheaper on both sides) only when no CTR is offered.
    ciphers: list[Annotated[str, BeforeValidator(_ssh_algorithm_check("ciphers"))]] = Field(
        default_factory=lambda: list(ssh_algs.DEFAULT_CIPHERS))
    macs: list[Annotated[str, BeforeValidator(_ssh_algorithm_check("macs"))]] = Field(
        default_factory=lambda: list(ssh_algs.DEFAULT_MACS))
    kex_algorithms: list[Annotated[str, BeforeValidator(_ssh_algorithm_check("kex_algorithms"))]] = Field(
        default_factory=lambda: list(ssh_algs.DEFAULT_KEX_ALGORITHMS))

    @field_validator("ciphers", "macs", "kex_algorithms")
    @classmethod
    def _algorithms_offered(cls, v: list[str], info: ValidationInfo) -> list[str]:
        what = _SSH_WHAT[info.field_name or ""]
        if not v:
            raise _fail(f"expected at least one {what} (none would refuse every client)", show_input=False)
        return _unique(v, lambda name: name, what, None, f"sftp.{info.field_name}")


class Http(_Model):
    """``[http]``: one cheroot port for WebDAV (/dav), REST (/api/v1), the
    portal (/ui) and /metrics."""

    enabled: Bool = True
    port: Port = 8080
    tls: Bool = False
    certfile: OptFsPath = None
    keyfile: OptFsPath = None
    threads: PositiveInt = 32
    propfind_infinity: Bool = False
    #: WebDAV's plain requests answered by the gateway itself instead of
    #: wsgidav's stack (same replies); false rules them out when a client misbehaves
    webdav_fast_paths: Bool = True
    #: bytes (name and value) of one WebDAV dead property, and of all of one file's or folder's
    max_property_bytes: PositiveInt = 64 << 10
    max_resource_property_bytes: PositiveInt = 1 << 20
    #: seconds one /api/v1/events stream stays open before the client reconnects
    events_window_s: PositiveFloat = 60.0
    #: open connections in all and from one address; more are answered 503 and closed
    max_connections: PositiveInt = 512
    max_connections_per_ip: PositiveInt = 64
    #: worker threads one address may keep busy at once (0: half of ``threads``);
    #: its further requests wait, heads read, until one of them is done
    max_workers_per_ip: NonNegativeInt = 0
    #: seconds a connection has to send a complete request head (counted from
    #: its accept or the end of its previous reply); then it is closed
    header_timeout_s: PositiveFloat = 10.0
    #: request line + header fields (431 or 414 beyond), and header fields (431 beyond)
    max_header_bytes: PositiveInt = 65536
    max_header_count: PositiveInt = 100
    #: request bodies other than uploads (PUT, streamed and unbounded): JSON or
    #: form bodies of /api and /ui, XML bodies of /dav (413 beyond)
    max_json_bytes: PositiveInt = 1 << 20
    max_xml_bytes: PositiveInt = 1 << 20
    #: nesting of a JSON body (400 beyond)
    max_json_depth: PositiveInt = 64
    #: who may read /metrics: anyone, any logged-in user, or nobody (404)
    metrics: Annotated[Literal["public", "authenticated", "off"],
                       BeforeValidator(_choice_check("public", "authenticated", "off"))] = "authenticated"


class ProtocolPolicy(_Model):
    """``[policy.<protocol>]``: per-protocol overrides; unset means the default."""

    sync_budget_ms: Annotated[int | None, BeforeValidator(_optional(_int_check(0)))] = None


_POLICY_ALIASES = {"ftps": "ftp", "scp": "sftp", "dav": "webdav", "http": "api", "rest": "api"}


class Policy(_Model):
    """``[policy]``: how long an operation may run before it is backgrounded."""

    sync_budget_ms: NonNegativeInt = 2000
    #: digests computed of every whole upload as it streams (any protocol),
    #: kept for sync clients, md5sum/sha1sum over SSH and FTP HASH; [] for none
    upload_checksums: list[Annotated[Literal["md5", "sha1", "sha256", "sha512"],
                                     BeforeValidator(_choice_check("md5", "sha1", "sha256", "sha512"))]] = Field(
        default_factory=lambda: ["sha1", "md5"])
    ftp: ProtocolPolicy = Field(default_factory=ProtocolPolicy)
    sftp: ProtocolPolicy = Field(default_factory=ProtocolPolicy)
    webdav: ProtocolPolicy = Field(default_factory=ProtocolPolicy)
    api: ProtocolPolicy = Field(default_factory=ProtocolPolicy)

    def budget_s(self, protocol: str) -> float:
        """The sync budget in seconds for ``protocol`` (``ftp``, ``sftp``,
        ``webdav``, ``api``; ``scp``/``ftps`` count as their family): its
        override when set, else the default. Unknown names get the default."""
        name = _POLICY_ALIASES.get(protocol, protocol)
        override = getattr(self, name, None) if name in ("ftp", "sftp", "webdav", "api") else None
        ms = override.sync_budget_ms if override is not None and override.sync_budget_ms is not None else self.sync_budget_ms
        return ms / 1000.0


class Queue(_Model):
    """One ``[[jobs.queues]]`` entry: a named queue and its worker count."""

    name: Name
    workers: PositiveInt = 1


def _default_queues() -> list[Queue]:
    return [Queue(name="copy", workers=4), Queue(name="move", workers=4), Queue(name="delete", workers=4)]


class Jobs(_Model):
    """``[jobs]``: the job store (journal) and how workers run."""

    store: Annotated[str, BeforeValidator(_check_store)] = "sqlite"
    queues: list[Queue] = Field(default_factory=_default_queues)
    heartbeat_s: PositiveFloat = 1.0
    stall_after_s: PositiveFloat = 30.0
    stalled_after_s: PositiveFloat = 600.0
    max_attempts: PositiveInt = 5
    step_retries: NonNegativeInt = 3
    retry_backoff_ms: NonNegativeInt = 200
    monitor_token_ttl_s: PositiveInt = 3600
    keep_finished_s: NonNegativeInt = 86400
    safety_poll_s: PositiveFloat = 10.0

    @field_validator("queues")
    @classmethod
    def _queues_unique(cls, v: list[Queue]) -> list[Queue]:
        if not v:
            raise _fail("expected at least one queue", show_input=False)
        return _unique(v, lambda q: q.name, "queue name", "name", "jobs.queues")

    @field_validator("stall_after_s", "stalled_after_s")
    @classmethod
    def _stall_after_heartbeat(cls, v: float, info: ValidationInfo) -> float:
        beat = info.data.get("heartbeat_s")
        if beat is not None and v <= beat:
            raise _fail(f"expected a number greater than jobs.heartbeat_s ({beat:g})")
        return v

    @property
    def distributed(self) -> bool:
        """Whether the store is shared by several nodes (PostgreSQL)."""
        return self.store != "sqlite"

    def url(self, state_dir: Path) -> str:
        """The SQLAlchemy URL of the job store: ``sqlite:///<state_dir>/jobs.db``
        for ``"sqlite"``, ``postgresql+psycopg://...`` for PostgreSQL URLs."""
        if self.store == "sqlite":
            return f"sqlite:///{Path(state_dir) / 'jobs.db'}"
        return "postgresql+psycopg://" + self.store.split("://", 1)[1]


class Auth(_Model):
    """``[auth]``: ``max_failures`` failed logins from one address within
    ``window_s`` ban that address for ``ban_s``."""

    max_failures: PositiveInt = 5
    window_s: PositiveFloat = 300.0
    ban_s: NonNegativeFloat = 900.0


class Mount(_Model):
    """One ``[[mounts]]`` entry: an fsspec URL attached at a virtual path."""

    path: VirtualPath
    url: Annotated[str, BeforeValidator(_check_url)]
    options: dict[str, Any] = Field(default_factory=dict)
    timeout_s: PositiveFloat = 30.0
    retries: NonNegativeInt = 3
    cache_ttl_s: NonNegativeFloat = 5.0


def _default_mounts() -> list[dict[str, str]]:
    # Raw, so that validation takes the folder from the config file's.
    return [{"path": "/", "url": "file://./data"}]


class UserConfig(_Model):
    """One ``[[users]]`` entry (also the shape of ``state_dir/users.toml``)."""

    name: Name
    password_hash: Annotated[str | None, BeforeValidator(_optional(_check_argon2))] = None
    authorized_keys: list[Annotated[str, BeforeValidator(_check_public_key)]] = Field(default_factory=list)
    home: VirtualPath = "/"
    permissions: list[Permission] = Field(default_factory=lambda: ["*"])
    path_permissions: dict[VirtualPath, list[Permission]] = Field(default_factory=dict)
    admin: Bool = False
    require_tls: Bool = False

    def to_user(self) -> User:
        """The core's view of this user."""
        return User(
            name=self.name,
            home=self.home,
            permissions=frozenset(self.permissions),
            path_permissions={p: frozenset(v) for p, v in self.path_permissions.items()},
            admin=self.admin,
            password_hash=self.password_hash,
            authorized_keys=list(self.authorized_keys),
            require_tls=self.require_tls,
        )


def _users_unique(v: list[UserConfig]) -> list[UserConfig]:
    return _unique(v, lambda u: u.name, "user name", "name", "users")


class Logging(_Model):
    """``[logging]``: level and ``text`` or ``json`` lines on stderr."""

    level: Annotated[str, BeforeValidator(_choice_check("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", fold=True))] = "INFO"
    format: Annotated[Literal["text", "json"], BeforeValidator(_choice_check("text", "json"))] = "text"
    #: warnings and errors of one kind: ``repeat_burst`` lines per
    #: ``repeat_window_s``, then one summary line with the count
    repeat_window_s: PositiveFloat = 60.0
    repeat_burst: PositiveInt = 5
    #: also log downloads, listings and logins (one operation line each, with the address)
    audit: Bool = False


class Config(_Model):
    """The whole configuration file."""

    server: Server = Field(default_factory=Server)
    ftp: Ftp = Field(default_factory=Ftp)
    sftp: Sftp = Field(default_factory=Sftp)
    http: Http = Field(default_factory=Http)
    policy: Policy = Field(default_factory=Policy)
    jobs: Jobs = Field(default_factory=Jobs)
    auth: Auth = Field(default_factory=Auth)
    mounts: list[Mount] = Field(default_factory=_default_mounts)
    users: list[UserConfig] = Field(default_factory=list)
    logging: Logging = Field(default_factory=Logging)

    @field_validator("mounts")
    @classmethod
    def _mounts_unique(cls, v: list[Mount]) -> list[Mount]:
        if not v:
            raise _fail("expected at least one mount (e.g. path = \"/\", url = \"file://./data\")", show_input=False)
        return _unique(v, lambda m: m.path, "mount path", "path", "mounts")

    @field_validator("users")
    @classmethod
    def _users_unique(cls, v: list[UserConfig]) -> list[UserConfig]:
        return _users_unique(v)

    def user_objects(self) -> list[User]:
        """The configured users as :class:`gateway.users.User` values (the
        ones in ``state_dir/users.toml`` are :mod:`gateway.auth`'s business)."""
        return [u.to_user() for u in self.users]


class _UsersFile(_Model):
    users: list[UserConfig] = Field(default_factory=list)

    @field_validator("users")
    @classmethod
    def _users_unique(cls, v: list[UserConfig]) -> list[UserConfig]:
        return _users_unique(v)


# ------------------------------------------------------------------- loading


def load_config(path: str | os.PathLike[str] = DEFAULT_CONFIG) -> Config:
    """Read and validate the TOML file at ``path``.

    Raises ConfigError (one line: file, key, expectation) when the file cannot
    be read, is not TOML, or does not validate.
    """
    return parse_config(_read_toml(path), source=str(path), base=os.path.dirname(os.path.abspath(path)))


def parse_config(data: dict[str, Any], source: str = "<config>", base: str | None = None) -> Config:
    """Validate an already-parsed TOML document; ``source`` names it in errors,
    relative paths are taken from the folder ``base`` (default: the working
    directory).

    Raises ConfigError.
    """
    return _validate(Config, data, source, base)


def load_users_file(path: str | os.PathLike[str]) -> list[UserConfig]:
    """The users kept in ``state_dir/users.toml``; a missing file means none.

    Raises ConfigError as :func:`load_config` does.
    """
    if not os.path.exists(path):
        return []
    return _validate(_UsersFile, _read_toml(path), str(path)).users


def validate_user(data: dict[str, Any], source: str = "user") -> UserConfig:
    """Validate one user entry (as ``gateway user add`` builds it).

    Raises ConfigError.
    """
    return _validate(UserConfig, data, source)


def _read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    src = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{src}: no such file") from None
    except OSError as e:
        raise ConfigError(f"{src}: cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{src}: byte {e.start}: invalid TOML: not UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", msg, re.S)
        if m:
            where, what = f"line {m[2]}, column {m[3]}", m[1]
        else:
            m = re.fullmatch(r"(.*) \(at end of document\)", msg, re.S)
            where, what = ("end of file", m[1]) if m else ("somewhere", msg)
        what = what[:1].lower() + what[1:]
        raise ConfigError(f"{src}: {where}: invalid TOML: {what}") from None


def _validate(model: type[BaseModel], data: Any, source: str, base: str | None = None) -> Any:
    try:
        return model.model_validate(data, context={"base": base} if base else None)
    except ValidationError as e:
        raise ConfigError(_format(source, model, e)) from None


def _format(source: str, model: type[BaseModel], error: ValidationError) -> str:
    errors = error.errors(include_url=False)
    err = errors[0]
    ctx = err.get("ctx") or {}
    loc = tuple(err["loc"]) + tuple(ctx.get("subloc", ()))
    kind = err["type"]
    show_input = ctx.get("show_input", True)
    if kind == "extra_forbidden":
        key = str(loc[-1])
        known = _known_keys(model, loc[:-1])
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else (f" (known keys: {', '.join(known)})" if known else "")
        text, show_input = f"unknown key {key!r}{hint}", False
    elif kind == "gateway":
        text = ctx["message"]
    elif kind == "missing":
        text, show_input, loc = f"missing required key {str(loc[-1])!r}", False, loc[:-1]
    else:
        text = _EXPECTED.get(kind) or err["msg"][:1].lower() + err["msg"][1:]
    if loc and loc[-1] == "[key]":
        text, show_input, loc = f"key {str(loc[-2])!r}: {text}", False, loc[:-2]
    if show_input:
        text += f", got {_show(err.get('input'))}"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    key = _dotted(loc)
    return f"{source}: {key + ': ' if key else ''}{text}{more}"


_EXPECTED = {
    "model_type": "expected a table",
    "model_attributes_type": "expected a table",
    "dict_type": "expected a table",
    "list_type": "expected a list",
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
}


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", str(part)):
            out += ("." if out else "") + str(part)
        else:
            out += f"[{_show(str(part))}]"
    return out


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    text = repr(value)
    if isinstance(value, list) and len(text) > 60:
        return f"a list of {len(value)} items"
    return text if len(text) <= 60 else text[:57] + "..."


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys the table at ``loc`` accepts (for the unknown-key hint)."""
    t: Any = model
    for part in loc:
        t = _unwrap(t)
        if isinstance(part, int):
            args = typing.get_args(t)
            t = args[0] if args else None
        elif isinstance(t, type) and issubclass(t, BaseModel) and part in t.model_fields:
            t = t.model_fields[part].annotation
        else:
            return []
    t = _unwrap(t)
    return list(t.model_fields) if isinstance(t, type) and issubclass(t, BaseModel) else []


def _unwrap(t: Any) -> Any:
    while True:
        origin = typing.get_origin(t)
        if origin is Annotated:
            t = typing.get_args(t)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(t) if a is not type(None)]
            if len(args) != 1:
                return t
            t = args[0]
        else:
            return t
