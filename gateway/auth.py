"""Who may log in: argon2id passwords, SSH public keys, and bans.

Users come from two places: ``[[users]]`` in the config file, and the
gateway's own users (``gateway user add``, the first-start ``admin``), kept
by a :class:`gateway.userstore.UserStorage`: ``state_dir/users.toml`` with
the embedded SQLite store, the job store's ``users`` table with PostgreSQL
(every node sees the same users). On a name clash the config file wins.
Stored users are read again when they change (the file's stamp; another
node's notice on the bus), so a user added from the CLI can log in without
a restart.

Failed logins are counted per source address (not per user, so guessing many
names from one address is caught too) in a sliding window; ``max_failures``
within ``window_s`` bans the address for ``ban_s``. A success resets nothing:
an attacker who owns one account cannot use it to clear their count. The
counts live in this process (:class:`gateway.bans.MemoryBans`) unless the
gateway gives the authenticator the job store's (``StoredBans``: shared by
every node, kept across restarts).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import ipaddress
import logging
import math
import secrets
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, NoReturn

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.bans import Bans, MemoryBans
from gateway.config import UserConfig, split_public_key
from gateway.errors import AlreadyExists, AuthenticationFailed, LoginBanned, NotFound, ReadOnly
from gateway.logs import log_login
from gateway.users import User
from gateway.userstore import USERS_FILE, StoredUsers, UsersFile, UsersTransaction, UserStorage

if TYPE_CHECKING:
    import sqlalchemy as sa

    from gateway.config import Auth, Config

__all__ = ["hash_password", "Authenticator", "CachedLogins", "RememberedLogin", "http_session_id", "USERS_FILE"]

log = logging.getLogger("gateway.auth")

#: argon2id with the 7 MiB, 5 passes, 1 lane profile, one of the settings
#: OWASP lists as giving equal defence (with 19 MiB/2 passes and 46 MiB/1):
#: every uncached login (each FTP and SFTP connection) maps the memory cost
#: anew, so 19 MiB lifted the server's peak by 19 MiB per login; 7 MiB takes
#: ~14 ms instead of ~29 ms here. The argon2-cffi default (RFC 9106's 64 MiB,
#: 3 passes, 4 lanes) took ~130 ms. Hashes made with other parameters still
#: verify (they carry their own) and are redone at the next login.
_hasher = PasswordHasher(time_cost=5, memory_cost=7 * 1024, parallelism=1)


def hash_password(password: str) -> str:
    """An argon2id hash (``$argon2id$v=19$...``) of ``password``, salted."""
    return _hasher.hash(password)


class Authenticator:
    """Checks logins and keeps the ban list. Thread-safe.

    ``users`` are the config's users; those of ``storage`` (default:
    ``state_dir/users.toml``, see gateway.userstore) are merged in.
    ``clock`` is a monotonic clock in seconds (tests pass a fake).
    """

    def __init__(
        self,
        users: list[User],
        auth_cfg: "Auth",
        state_dir: Path,
        clock: Callable[[], float] = time.monotonic,
        storage: UserStorage | None = None,
    ) -> None:
        self._config_users = {u.name: u for u in users}
        self._cfg = auth_cfg
        self.storage: UserStorage = storage or UsersFile(Path(state_dir))
        self._lock = threading.RLock()
        self._stored: dict[str, User] = {}
        #: Failed-login counts and bans: this process's memory, or the job
        #: store's tables when the gateway shares them (gateway.bans).
        self.bans: Bans = MemoryBans(auth_cfg, clock)
        self._dummy_hash = hash_password(secrets.token_urlsafe(16))
        #: ``[logging] audit``: a failed login is an operation log line too (successes are
        #: logged with their session by Operations.logged_in).
        self.audit = False
        #: Called with every user whenever the set of users changes.
        self.on_change: Callable[[list[User]], None] | None = None
        self._reload()

    @classmethod
    def from_config(cls, cfg: "Config", clock: Callable[[], float] = time.monotonic,
                    engine: "sa.Engine | None" = None) -> "Authenticator":
        """The authenticator for ``cfg``'s users, ``[auth]`` and state_dir.

        With a PostgreSQL job store the gateway's own users live in it
        (``engine``: the store's, else the store is opened here, which
        migrates its schema), and a ``state_dir/users.toml`` is imported into
        a store that never held users; with SQLite they live in that file.

        Raises ConfigError when the stored users are invalid, or the
        PostgreSQL store cannot be opened.
        """
        storage: UserStorage
        if not cfg.jobs.distributed:
            storage = UsersFile(cfg.server.state_dir)
        else:
            if engine is None:
                engine = _open_store_engine(cfg)
            storage = StoredUsers(engine)
            storage.import_file(Path(cfg.server.state_dir) / USERS_FILE)
        return cls(cfg.user_objects(), cfg.auth, cfg.server.state_dir, clock=clock, storage=storage)

    # ------------------------------------------------------------ lookups

    def get(self, name: str) -> User | None:
        """The user called ``name``, or None."""
        with self._lock:
            self._reload()
            return self._config_users.get(name) or self._stored.get(name)

    def all(self) -> list[User]:
        """Every user, config ones first, each name once."""
        with self._lock:
            self._reload()
            merged = dict(self._config_users)
            for name, user in self._stored.items():
                merged.setdefault(name, user)
            return list(merged.values())

    # ------------------------------------------------------------- logins

    def login_password(self, name: str, password: str, remote: str, *, protocol: str = "-") -> User:
        """The user ``name`` if ``password`` is theirs.

        Raises LoginBanned when ``remote``'s address is banned (checked first,
        the password is not tried), else AuthenticationFailed("login incorrect")
        for an unknown user, a user without a password, or a wrong password.
        ``protocol`` (ftp, sftp, webdav, api) names the front end in a
        failure's audit line.
        """
        addr = _address(remote)
        self._check_ban(addr)
        user = self.get(name)
        stored_hash = user.password_hash if user is not None else None
        try:
            # An unknown user costs the same time as a known one.
            _hasher.verify(stored_hash or self._dummy_hash, password)
            ok = stored_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        if not ok or user is None or stored_hash is None:
            self._failed(name, remote, "password", protocol)
        if _hasher.check_needs_rehash(stored_hash):
            self._rehash(user, password)
        log.info("login ok: user %r from %s (password)", name, addr)
        return user

    def login_key(self, name: str, key: str | bytes, remote: str, *, count_failure: bool = True,
                  protocol: str = "-") -> User:
        """The user ``name`` if ``key`` is one of their authorized keys.

        ``key`` is an OpenSSH public key line, or its bytes, or the raw SSH
        wire-format key blob; keys match by type and blob, comments ignored.
        Raises LoginBanned / AuthenticationFailed as :meth:`login_password`.
        SSH clients offer each key they hold in turn; pass ``count_failure``
        False for such probes and call :meth:`record_failure` once when the
        connection ends without logging in.
        """
        addr = _address(remote)
        self._check_ban(addr)
        user = self.get(name)
        try:
            wanted = split_public_key(key)
        except ValueError:
            wanted = None
        if user is not None and wanted is not None:
            for line in user.authorized_keys:
                try:
                    if split_public_key(line) == wanted:
                        log.info("login ok: user %r from %s (key %s)", name, addr, wanted[0])
                        return user
                except ValueError:
                    continue
        if not count_failure:
            raise AuthenticationFailed("login incorrect")
        self._failed(name, remote, "key", protocol)

    def record_failure(self, name: str, remote: str, method: str, *, protocol: str = "-") -> None:
        """Count one failed login from ``remote`` (e.g. an SSH connection
        that offered only unknown keys); may start a ban. Never raises."""
        try:
            self._failed(name, remote, method, protocol)
        except AuthenticationFailed:
            pass

    def is_banned(self, remote: str) -> bool:
        """Whether ``remote``'s address is banned right now."""
        return self.bans.banned_for(_address(remote)) > 0

    def _check_ban(self, addr: str) -> None:
        left = self.bans.banned_for(addr)
        if left > 0:
            raise LoginBanned(f"too many failed logins from {addr}; try again in {math.ceil(left)} s")

    def _failed(self, name: str, remote: str, method: str, protocol: str) -> NoReturn:
        """Count a failure from ``remote``'s address; always raises."""
        addr = _address(remote)
        count, banned = self.bans.fail(addr)
        log.warning(
            "login failed: user %r from %s (%s; %d/%d in %g s)",
            name, addr, method, count, self._cfg.max_failures, self._cfg.window_s,
        )
        if banned:
            log.warning(
                "banning %s for %g s after %d failed logins (last user %r)",
                addr, self._cfg.ban_s, count, name,
            )
        if self.audit:
            log_login(name, remote or addr, method, "error: login incorrect", protocol)
        raise AuthenticationFailed("login incorrect")

    def _rehash(self, user: User, password: str) -> None:
        old_hash, new_hash = user.password_hash, hash_password(password)
        with self._lock:
            user.password_hash = new_hash
            if user.name not in self._config_users:
                with self._change() as tx:
                    stored = tx.users.get(user.name)
                    if stored is not None and stored.password_hash == old_hash:  # not changed meanwhile
                        tx.put(user.name, dataclasses.replace(stored, password_hash=new_hash,
                                                              authorized_keys=list(stored.authorized_keys)))
        log.info("rehashed the password of user %r with current argon2 parameters", user.name)

    # ------------------------------------------------------- stored users

    @property
    def where(self) -> str:
        """Where :meth:`add_user` keeps users (a file, or the job store)."""
        return self.storage.where

    def add_user(self, user: UserConfig) -> User:
        """Store ``user`` (hashes only, never a plaintext password) and
        return it.

        Raises AlreadyExists when a user of that name exists in the config or
        the storage.
        """
        with self._change() as tx:
            if user.name in self._config_users or user.name in tx.users:
                raise AlreadyExists(f"user {user.name!r} already exists")
            new = user.to_user()
            tx.put(user.name, new)
        log.info("added user %r (admin=%s) to %s", user.name, user.admin, self.where)
        return new

    def is_from_config(self, name: str) -> bool:
        """Whether ``name`` is a ``[[users]]`` entry of the config file."""
        return name in self._config_users

    def update_user(self, name: str, change: Callable[[User], None]) -> User:
        """Apply ``change`` to a copy of the stored user ``name`` and store
        it; return the new user.

        Raises ReadOnly for a user of the config file (edit the file
        instead), NotFound when there is no such user.
        """
        with self._change() as tx:
            self._check_stored(name, tx.users)
            old = tx.users[name]
            new = dataclasses.replace(old, authorized_keys=list(old.authorized_keys))
            change(new)
            tx.put(name, new)
        log.info("changed user %r in %s", name, self.where)
        return new

    def remove_user(self, name: str) -> None:
        """Delete the stored user ``name``.

        Raises ReadOnly for a user of the config file, NotFound when there
        is no such user.
        """
        with self._change() as tx:
            self._check_stored(name, tx.users)
            tx.put(name, None)
        log.info("removed user %r from %s", name, self.where)

    @contextlib.contextmanager
    def _change(self) -> Iterator[UsersTransaction]:
        """A locked change of the stored users (gateway.userstore); once
        written, this process's copy is the new one. On an error nothing
        changed."""
        with self._lock:
            with self.storage.transaction() as tx:
                yield tx
            self._stored = dict(tx.users)
            self._changed()

    def reload(self) -> None:
        """Read the stored users again at the next lookup even if they look
        unchanged (another node said it changed them). Never blocks."""
        self.storage.invalidate()

    def check_stored(self, name: str) -> None:
        """Raises as :meth:`update_user` would for ``name``: ReadOnly for a
        user of the config file, NotFound for no user."""
        with self._lock:
            self._reload()
            self._check_stored(name, self._stored)

    def _check_stored(self, name: str, stored: dict[str, User]) -> None:
        if name in self._config_users:
            raise ReadOnly(f"user {name!r} is defined in the config file; change it there")
        if name not in stored:
            raise NotFound(f"no user {name!r}")

    def ensure_admin(self) -> str | None:
        """First start: when there are no users at all, create ``admin``
        (admin, home "/", every permission) with a random password, store only
        its hash, and return the password for the caller to show once.
        Otherwise return None. Idempotent, and one admin only when several
        nodes start at once on one store (the check and the write are one
        locked change)."""
        if self.all():  # the usual start: no lock, no write
            return None
        with self._change() as tx:
            if tx.users:
                return None
            password = secrets.token_urlsafe(12)
            admin = UserConfig(name="admin", password_hash=hash_password(password), admin=True, home="/",
                               permissions=["*"])
            tx.put("admin", admin.to_user())
        log.info("added user 'admin' (admin=True) to %s", self.where)
        return password

    def _reload(self) -> None:
        """Read the stored users again when they may have changed."""
        with self._lock:
            if not self.storage.stale():
                return
            stored = self.storage.load()
            if stored == self._stored:
                return
            self._stored = stored
            for name in self._stored.keys() & self._config_users.keys():
                log.warning("user %r is in both the config and %s; the config's entry wins", name, self.where)
            self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.all())


def _open_store_engine(cfg: "Config") -> "sa.Engine":
    """The engine of ``cfg``'s (PostgreSQL) job store, for a process that
    has no gateway (the CLI). Raises ConfigError when it cannot be opened."""
    from gateway.app import _open_store

    return _open_store(cfg.jobs.url(cfg.server.state_dir), Path(cfg.server.state_dir)).engine


@functools.lru_cache(maxsize=1024)  # an HTTP login asks it on every request of a connection
def _address(remote: str) -> str:
    """The host part of ``remote`` ("1.2.3.4:5678", "[::1]:22", "::1", "h")."""
    remote = (remote or "").strip()
    if remote.startswith("[") and "]" in remote:
        return remote[1 : remote.index("]")]
    try:
        return str(ipaddress.ip_address(remote))
    except ValueError:
        pass
    host, sep, port = remote.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host
    return remote or "unknown"


@dataclasses.dataclass(frozen=True)
class RememberedLogin:
    """A password login :class:`CachedLogins` remembers: the user's name, the
    stored hash the password was checked against, until when (monotonic
    seconds) and the cache's generation then. Holds no password."""

    name: str
    password_hash: str | None
    until: float
    generation: int


class CachedLogins:
    """Password logins for protocols that send the password on every request
    (HTTP Basic). An argon2 check costs a noticeable fraction of a second, so
    a success is remembered for ``ttl_s`` — keyed by a salted digest of name
    and password, never the password — and dropped as soon as the user's
    stored hash changes. Bans are checked on every call, cached or not.

    A front end may keep a :class:`RememberedLogin` (:meth:`recall`) for a
    client's next requests and ask :meth:`user_of` instead of hashing the
    password again (HTTP: per kept-alive connection, with the header that
    carried it); :meth:`clear` makes every kept one stale too."""

    def __init__(self, auth: Authenticator, ttl_s: float = 60.0, max_entries: int = 4096) -> None:
        self.auth = auth
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._salt = secrets.token_bytes(16)
        self._cache: dict[bytes, RememberedLogin] = {}
        self._generation = 0
        self._lock = threading.Lock()

    def login(self, name: str, password: str, remote: str, *, protocol: str = "-") -> User:
        """As :meth:`Authenticator.login_password` (raises LoginBanned,
        AuthenticationFailed)."""
        user = self.remembered(name, password, remote)
        if user is not None:
            return user
        key, now, generation = self._key(name, password), time.monotonic(), self._generation
        user = self.auth.login_password(name, password, remote, protocol=protocol)
        with self._lock:
            if len(self._cache) >= self.max_entries:
                self._cache = {k: v for k, v in self._cache.items() if v.until >= now}
                if len(self._cache) >= self.max_entries:
                    self._cache.clear()
            self._cache[key] = RememberedLogin(name, user.password_hash, now + self.ttl_s, generation)
        return user

    def remembered(self, name: str, password: str, remote: str) -> User | None:
        """The user of a login remembered for this name and password (raises
        LoginBanned), else None: nothing checked or counted, which is
        :meth:`login`'s to do."""
        login = self.recall(name, password)
        return None if login is None else self.user_of(login, remote)

    def recall(self, name: str, password: str) -> RememberedLogin | None:
        """The login remembered for this name and password, if any (it may
        no longer hold: ask :meth:`user_of`)."""
        with self._lock:
            return self._cache.get(self._key(name, password))

    def user_of(self, login: RememberedLogin, remote: str) -> User | None:
        """The user of ``login`` while it holds: not expired, the cache not
        cleared since, the user's stored hash the same (a changed password or
        a removed user shows at once). Raises LoginBanned when ``remote``'s
        address is banned. None: :meth:`login` must check the password."""
        if login.until < time.monotonic() or login.generation != self._generation:
            return None
        self.auth._check_ban(_address(remote))
        user = self.auth.get(login.name)
        return user if user is not None and user.password_hash == login.password_hash else None

    def _key(self, name: str, password: str) -> bytes:
        return hashlib.sha256(self._salt + name.encode() + b"\0" + password.encode()).digest()

    def clear(self) -> None:
        """Forget every remembered login, kept ones too (users changed on
        another node)."""
        with self._lock:
            self._cache = {}
            self._generation += 1


def http_session_id(user: str, tag: str | None) -> str:
    """The session of an HTTP client (WebDAV, REST, portal): the user plus
    its ``Gateway-Session`` header or cookie; one per user without one."""
    tag = "".join(ch for ch in (tag or "").strip() if ch.isprintable())[:64]
    return f"http:{user}" + (f":{tag}" if tag else "")
