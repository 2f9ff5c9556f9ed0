"""Where the users the gateway manages itself are kept (``gateway user add``,
``passwd``, ``key add``, ``remove``, the first-start admin, a rehash).

:class:`gateway.auth.Authenticator` holds the users logic once; a storage
only reads and writes them:

- :class:`UsersFile`: ``state_dir/users.toml``, for the embedded SQLite
  store (one node, nothing to install, a file an admin can read).
- :class:`StoredUsers`: the job store's ``users`` table, for a PostgreSQL
  store shared by several nodes. A change commits together with a NOTIFY on
  the bus's channel, so every node (the CLI changing it has no bus of its
  own) drops its copy at once; a node whose bus is not trusted reads the
  table at every lookup. At the first open, a node whose store never held
  users imports its ``state_dir/users.toml`` (:meth:`StoredUsers.import_file`);
  after that the file is not read in this mode.

Both serialise their read-modify-write across processes (a file lock; a
PostgreSQL advisory lock), so two nodes starting at once on an empty store
make one first-start admin between them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Protocol

import sqlalchemy as sa

from gateway.config import ConfigError, load_users_file, validate_user
from gateway.private import FILE_MODE, private_dir
from gateway.users import PERMISSIONS, User

__all__ = ["UserStorage", "UsersTransaction", "UsersFile", "StoredUsers", "USERS_FILE", "USERS_LOCK", "permission_list",
           "users_toml"]

log = logging.getLogger("gateway.auth")

#: Name of the users file inside ``server.state_dir``.
USERS_FILE = "users.toml"

#: The PostgreSQL advisory lock key held while users change ("gw-users" in ASCII).
USERS_LOCK = 0x67772D7573657273

#: The ``store_secrets`` row saying the store holds the users (set with the
#: first user it got): no users.toml is imported after that, even once every
#: user was removed.
_SEEDED = "users_seeded"


class UsersTransaction:
    """The users as they are inside one locked change: ``users`` to read,
    :meth:`put` to change one (None removes it)."""

    def __init__(self, users: dict[str, User], put: Callable[[str, User | None], None]) -> None:
        self.users = users
        self._put = put
        #: Whether :meth:`put` was called.
        self.changed = False

    def put(self, name: str, user: User | None) -> None:
        """Make ``user`` the user ``name`` (None: remove it)."""
        self._put(name, user)
        self.changed = True
        if user is None:
            self.users.pop(name, None)
        else:
            self.users[name] = user


class UserStorage(Protocol):
    """Keeps the gateway's own users. Implementations raise ConfigError from
    :meth:`load` for a stored user that does not validate."""

    #: Where the users are, for messages ("/var/gw/users.toml", "the job store").
    where: str
    #: What ``gateway user list`` shows as their source.
    source: str

    def stale(self) -> bool:
        """Whether :meth:`load` may give something else than last time."""
        ...

    def invalidate(self) -> None:
        """Make :meth:`stale` true (another node changed the users)."""
        ...

    def load(self) -> dict[str, User]:
        """Every stored user by name."""
        ...

    def transaction(self) -> contextlib.AbstractContextManager[UsersTransaction]:
        """A change, exclusive across processes and nodes, with the users
        read fresh inside it; written when the block ends without an error,
        left as it was otherwise."""
        ...


class UsersFile:
    """``state_dir/users.toml``, written by the gateway (hashes only), read
    again when its size or mtime changes."""

    source = USERS_FILE

    def __init__(self, state_dir: Path) -> None:
        self._state_dir = Path(state_dir)
        self.path = self._state_dir / USERS_FILE
        self.where = str(self.path)
        self._stamp: tuple[int, int] | None = (-1, -1)  # no file has this stamp

    def _current(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
            return (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            return None

    def stale(self) -> bool:
        return self._current() != self._stamp

    def invalidate(self) -> None:
        self._stamp = (-1, -1)

    def load(self) -> dict[str, User]:
        stamp = self._current()
        users = {u.name: u.to_user() for u in load_users_file(self.path)} if stamp else {}
        self._stamp = stamp
        return users

    @contextlib.contextmanager
    def transaction(self) -> Iterator[UsersTransaction]:
        with self._file_lock():
            tx = UsersTransaction(self.load(), lambda name, user: None)
            yield tx
            if tx.changed:
                self._write(list(tx.users.values()))

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Serialise read-modify-write of the users file across processes
        (the server rehashing while `gateway user add` runs)."""
        private_dir(self._state_dir)
        fd = os.open(self._state_dir / (USERS_FILE + ".lock"), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        with os.fdopen(fd, "a") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _write(self, users: list[User]) -> None:
        private_dir(self._state_dir)
        text = users_toml(users)
        fd, tmp = tempfile.mkstemp(prefix=".users-", suffix=".toml", dir=self._state_dir)  # made 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        self._stamp = self._current()


class StoredUsers:
    """The job store's ``users`` table (shared by every node of a PostgreSQL
    store). Thread-safe.

    Cached by the authenticator until :meth:`invalidate` (a change announced
    on the bus), and not at all while ``trusted()`` is false (the bus cannot
    promise to deliver other nodes' changes; a process without a bus, such
    as the CLI, reads every time). ``origin`` is put in the notifications
    this storage sends: the node's bus origin, so a node skips its own."""

    source = "store"

    def __init__(self, engine: sa.Engine, *, where: str = "the job store",
                 trusted: Callable[[], bool] = lambda: False, origin: str = "users") -> None:
        self.engine = engine
        self.where = where
        self.trusted = trusted
        self.origin = origin
        self._dirty = True
        self._unreachable = False
        self._last: dict[str, User] = {}
        self._lock = threading.Lock()

    def stale(self) -> bool:
        return self._dirty or not self.trusted()

    def invalidate(self) -> None:
        self._dirty = True

    def load(self) -> dict[str, User]:
        """Every stored user; while the store cannot be reached, the users
        as last read (a warning says so once), so a database restart does
        not refuse every login meanwhile."""
        self._dirty = False  # before reading: a change announced meanwhile marks it again
        try:
            with self.engine.connect() as c:
                users = self._read(c)
        except sa.exc.SQLAlchemyError as e:
            self._dirty = True
            if not self._unreachable:
                log.warning("users: the job store cannot be reached (%s); using the users as last read",
                            type(e).__name__)
            self._unreachable = True
            return dict(self._last)
        self._unreachable = False
        self._last = users
        return dict(users)

    def _read(self, conn: sa.Connection) -> dict[str, User]:
        from gateway.jobs.schema import users as table

        out = {}
        for row in conn.execute(sa.select(table).order_by(table.c.name)):
            out[row.name] = _from_row(row, self.where).to_user()
        return out

    @contextlib.contextmanager
    def transaction(self) -> Iterator[UsersTransaction]:
        from gateway.jobs.schema import users as table
        from gateway.jobs.store import write_transaction

        with self._lock, write_transaction(self.engine) as c:
            _lock_users(c)
            changed: dict[str, User | None] = {}
            tx = UsersTransaction(self._read(c), changed.__setitem__)
            yield tx
            if not changed:
                return
            for name, user in changed.items():
                c.execute(table.delete().where(table.c.name == name))
                if user is not None:
                    c.execute(table.insert().values(_to_row(user)))
            if any(u is not None for u in changed.values()):
                _mark_seeded(c)
            self._notify(c)
        self._last = dict(tx.users)  # what the caller takes as the users now

    def import_file(self, path: Path) -> int:
        """Import the users of ``path`` (a users.toml) when this store never
        held users; return how many (0 when it held some: then a ``path``
        with users is reported as not used). Logs one line either way.

        Raises ConfigError when ``path`` does not validate (and would be imported)."""
        from gateway.jobs.schema import store_secrets
        from gateway.jobs.schema import users as table
        from gateway.jobs.store import write_transaction

        if not path.exists():
            return 0
        with self._lock, write_transaction(self.engine) as c:
            _lock_users(c)
            seeded = c.execute(sa.select(store_secrets.c.value).where(store_secrets.c.name == _SEEDED)).scalar()
            held = c.execute(sa.select(sa.func.count()).select_from(table)).scalar()
            if seeded is None and not held:
                users = [u.to_user() for u in load_users_file(path)]
                if users:
                    c.execute(table.insert(), [_to_row(u) for u in users])
                    _mark_seeded(c)
                    self._notify(c)
                    log.warning("users: imported %d user(s) from %s into the job store, where every node "
                                "finds them; that file is not used from now on", len(users), path)
                    self._dirty = True
                    return len(users)
        log.info("users: %s is not used: with a PostgreSQL job store the users live in the store "
                 "(`gateway user list` shows them)", path)
        return 0

    def _notify(self, conn: sa.Connection) -> None:
        """Tell every node, at this transaction's commit, that users changed."""
        if conn.dialect.name != "postgresql":
            return
        from gateway.bus import Change, encode
        from gateway.jobs.pgbus import CHANNEL

        for payload in encode(self.origin, Change(users=True)):
            conn.execute(sa.text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload})


def _lock_users(conn: sa.Connection) -> None:
    """Serialise changes of the users between nodes (PostgreSQL; SQLite's
    write transaction already is exclusive)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": USERS_LOCK})


def _mark_seeded(conn: sa.Connection) -> None:
    from gateway.jobs.schema import store_secrets
    from gateway.jobs.store import _insert_ignore

    _insert_ignore(conn, store_secrets, [{"name": _SEEDED, "value": f"{time.time():.0f}"}])


def _to_row(user: User) -> dict:
    return {
        "name": user.name,
        "password_hash": user.password_hash,
        "authorized_keys": json.dumps(list(user.authorized_keys)),
        "home": user.home,
        "permissions": json.dumps(permission_list(user.permissions)),
        "path_permissions": json.dumps({p: permission_list(v) for p, v in user.path_permissions.items()}),
        "admin": bool(user.admin),
        "require_tls": bool(user.require_tls),
        "changed_at": time.time(),
    }


def _from_row(row: sa.Row, where: str):
    """The row as a validated UserConfig (argon2 hashes, OpenSSH keys...).
    Raises ConfigError naming the user when it does not validate."""
    try:
        data = {
            "name": row.name,
            "authorized_keys": json.loads(row.authorized_keys),
            "home": row.home,
            "permissions": json.loads(row.permissions),
            "path_permissions": json.loads(row.path_permissions),
            "admin": bool(row.admin),
            "require_tls": bool(row.require_tls),
        }
    except ValueError as e:
        raise ConfigError(f"{where}: user {row.name!r}: unreadable ({e})") from None
    if row.password_hash is not None:
        data["password_hash"] = row.password_hash
    return validate_user(data, source=f"{where}: user {row.name!r}")


def permission_list(perms: frozenset[str]) -> list[str]:
    """``perms`` as a config lists them: ["*"] for all."""
    return ["*"] if perms >= set(PERMISSIONS) else [p for p in PERMISSIONS if p in perms]


def _toml_str(value: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes; DEL is the one
    # control character JSON leaves raw and TOML forbids.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(_toml_str(v) for v in values) + "]"


def users_toml(users: list[User]) -> str:
    """The text of a users.toml holding ``users``."""
    out = ["# Users added by `gateway user add` and the first start. Written by the",
           "# gateway; passwords are stored as argon2id hashes only.", ""]
    for u in users:
        out.append("[[users]]")
        out.append(f"name = {_toml_str(u.name)}")
        if u.password_hash is not None:
            out.append(f"password_hash = {_toml_str(u.password_hash)}")
        out.append(f"authorized_keys = {_toml_list(u.authorized_keys)}")
        out.append(f"home = {_toml_str(u.home)}")
        out.append(f"permissions = {_toml_list(permission_list(u.permissions))}")
        pp = ", ".join(f"{_toml_str(k)} = {_toml_list(permission_list(v))}" for k, v in u.path_permissions.items())
        out.append(f"path_permissions = {{{(' ' + pp + ' ') if pp else ''}}}")
        out.append(f"admin = {'true' if u.admin else 'false'}")
        out.append(f"require_tls = {'true' if u.require_tls else 'false'}")
        out.append("")
    return "\n".join(out)
