"""Tables of the job store (SQLAlchemy Core). Changes go through a new
Alembic migration in ``migrations/versions``, never by editing an old one."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import (Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text,
                        UniqueConstraint, BigInteger)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.visitors import InternalTraversal

metadata = MetaData()

jobs = Table(
    "jobs", metadata,
    Column("id", String(32), primary_key=True),
    Column("queue", String(64), nullable=False),
    Column("operation", String(16), nullable=False),       # copy | move | delete
    Column("src", Text, nullable=False),                   # global virtual paths
    Column("dst", Text),
    Column("stage", Text),                                 # where dst content is written
    Column("dst_existed", Boolean, nullable=False, default=False),
    Column("overwrite", Boolean, nullable=False, default=False),
    Column("owner", String(128), nullable=False),
    Column("session_id", String(128), nullable=False),
    Column("protocol", String(16), nullable=False),
    Column("state", String(16), nullable=False),           # queued running completed failed stopped cancelled
    Column("phase", String(16), nullable=False),           # prepare cleanup done
    Column("enumerated", Boolean, nullable=False, default=False),
    Column("old_dst_purged", Boolean, nullable=False, default=False),
    Column("stop_requested", Boolean, nullable=False, default=False),
    Column("items_total", BigInteger, nullable=False, default=0),
    Column("items_done", BigInteger, nullable=False, default=0),
    Column("bytes_total", BigInteger, nullable=False, default=0),
    Column("bytes_done", BigInteger, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("committed_at", Float),
    Column("finished_at", Float),
    Column("heartbeat_at", Float),
    Column("not_before", Float, nullable=False, default=0.0),
    Column("attempts", Integer, nullable=False, default=0),
    Column("stuck", Boolean, nullable=False, default=False),
    Column("node", String(128)),
    Column("error", Text),
    Column("error_type", String(64)),
    Column("resource_id", Text),
    Column("progress_at", Float),                          # when items or bytes last grew
    Column("stalled", Boolean, nullable=False, default=False),  # no progress for jobs.stalled_after_s
    # Attempts not counted against max_attempts: those before an admin's
    # retry, and those handed over on purpose (a node draining or stopping).
    Column("retries_from", Integer, nullable=False, default=0),
    Column("leftovers", Text),                             # what an ended job left on storage
)
Index("ix_jobs_state_queue", jobs.c.state, jobs.c.queue, jobs.c.created_at)
Index("ix_jobs_phase", jobs.c.phase)

job_items = Table(
    "job_items", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(32), nullable=False),
    Column("rel", Text, nullable=False),                   # '' is the job's root itself
    Column("is_dir", Boolean, nullable=False),
    Column("size", BigInteger, nullable=False, default=0),
    Column("state", String(16), nullable=False),           # pending copied removed
    Column("src_stamp", Text),                             # a moved file as enumerated (gateway.fileids.stamp)
    Column("dst_stamp", Text),                             # its copy, when the file has an id
    # Bytes of this item in its job's bytes_done (<= size; size once copied):
    # a step copying it again adds only what goes past them.
    Column("counted", BigInteger, nullable=False, default=0, server_default="0"),
    UniqueConstraint("job_id", "rel", name="uq_job_items_rel"),
)
Index("ix_job_items_job", job_items.c.job_id, job_items.c.state, job_items.c.id)

#: Random keys the store's users share (every node): ``monitor`` derives
#: each job's one monitor token (gateway.jobs.store.JobStore.monitor_token).
store_secrets = Table(
    "store_secrets", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(128), nullable=False),
)

monitor_tokens = Table(
    "monitor_tokens", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("job_id", String(32), nullable=False),
    Column("expires_at", Float, nullable=False),
)

api_tokens = Table(
    "api_tokens", metadata,
    Column("id", String(32), primary_key=True),
    Column("user", String(128), nullable=False),
    Column("name", String(128), nullable=False, default=""),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("last_used_at", Float),
    Column("revoked", Boolean, nullable=False, default=False),
)

dav_locks = Table(
    "dav_locks", metadata,
    Column("token", String(128), primary_key=True),
    Column("root", Text, nullable=False),
    Column("data", Text, nullable=False),                  # JSON of wsgidav's lock dict
    Column("expires_at", Float, nullable=False),
)
Index("ix_dav_locks_root", dav_locks.c.root)
Index("ix_dav_locks_root_bytes", dav_locks.c.root.collate("C")).ddl_if(dialect="postgresql")

dav_props = Table(
    "dav_props", metadata,
    Column("path", Text, primary_key=True),
    Column("name", Text, primary_key=True),
    Column("value", Text, nullable=False),
)
Index("ix_dav_props_path_bytes", dav_props.c.path.collate("C")).ddl_if(dialect="postgresql")

#: A stable id per file or folder (global path), following moves made
#: through the gateway; ``version`` changes whenever something at or below
#: the path changes (gateway.fileids).
file_ids = Table(
    "file_ids", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("path", Text, nullable=False, unique=True),
    Column("version", BigInteger, nullable=False),
    Column("checksum", Text),                              # "sha1:<hex> md5:<hex>", verified at upload
    Column("checksum_size", BigInteger),                   # the size it is the checksum of
    Column("etag", Text),                                  # the file's ETag before a move by copy
    Column("etag_stamp", Text),                            # what the storage reported of the copy
    sqlite_autoincrement=True,
)
Index("ix_file_ids_path_bytes", file_ids.c.path.collate("C")).ddl_if(dialect="postgresql")

#: Replies to REST requests sent with an Idempotency-Key, kept a day: the same
#: key from the same user gets the first reply again (status NULL: still running).
idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("owner", String(128), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("status", Integer),
    Column("body", Text),
    Column("location", Text),
    Column("created_at", Float, nullable=False),
)

#: The nodes sharing this store: each beats every few seconds (gateway.nodes);
#: ``draining`` asks that node to claim no more jobs and hand its running ones back.
nodes = Table(
    "nodes", metadata,
    Column("node", String(128), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("version", String(32), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("draining", Boolean, nullable=False, default=False),
)

#: Failed logins per source address (a sliding window, gateway.bans) and the
#: addresses banned until a time: shared by every node of the store.
login_failures = Table(
    "login_failures", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("address", String(64), nullable=False),
    Column("at", Float, nullable=False),
)
Index("ix_login_failures_address", login_failures.c.address, login_failures.c.at)

login_bans = Table(
    "login_bans", metadata,
    Column("address", String(64), primary_key=True),
    Column("until", Float, nullable=False),
)

#: Portal (browser) sessions, keyed by a digest of the cookie's token, so
#: they work on every node and survive a restart (gateway.api.portal).
portal_sessions = Table(
    "portal_sessions", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user", String(128), nullable=False),
    Column("password_hash", Text),
    Column("csrf", String(64), nullable=False),
    Column("session_id", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("seen_at", Float, nullable=False),
)
Index("ix_portal_sessions_seen", portal_sessions.c.seen_at)

#: The users the gateway manages itself (``gateway user add``...) when the
#: store is PostgreSQL, so every node sees the same ones (gateway.userstore);
#: the embedded SQLite mode keeps them in ``state_dir/users.toml`` and leaves
#: this table empty. Lists are JSON; passwords are argon2 hashes only.
#: ``store_secrets`` row ``users_seeded`` marks a store that has held users
#: (no users.toml is imported into it any more).
users = Table(
    "users", metadata,
    Column("name", String(128), primary_key=True),
    Column("password_hash", Text),
    Column("authorized_keys", Text, nullable=False),       # JSON list of OpenSSH public key lines
    Column("home", Text, nullable=False),
    Column("permissions", Text, nullable=False),           # JSON list, ["*"] for all
    Column("path_permissions", Text, nullable=False),      # JSON {path: [permission...]}
    Column("admin", Boolean, nullable=False),
    Column("require_tls", Boolean, nullable=False),
    Column("changed_at", Float, nullable=False),
)


# -- conditions on stored paths ------------------------------------------------
#
# A subtree is a range of paths in byte order: those below ``/a`` run from
# ``/a/`` up to ``/a0`` (``0`` follows ``/``), so an index on the path serves
# it. SQLite compares text by its bytes (BINARY) and its plain indexes on the
# paths serve the range; PostgreSQL compares text by the database's locale
# collation, where ``/a/x`` need not sort between ``/a/`` and ``/a0`` at all,
# so there the comparison is made under ``COLLATE "C"`` (byte order) and
# served by the ``..._bytes`` expression indexes above (migration 0010).


class _InByteOrder(sa.sql.expression.ColumnElement[str]):
    """A text column compared by its bytes: ``column COLLATE "C"`` on
    PostgreSQL, the column itself elsewhere (SQLite's BINARY default)."""

    inherit_cache = True
    type = Text()
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement)]

    def __init__(self, column: sa.ColumnElement[str]) -> None:
        self.column = column


@compiles(_InByteOrder)
def _in_byte_order(element: _InByteOrder, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.column, **kw)


@compiles(_InByteOrder, "postgresql")
def _in_byte_order_pg(element: _InByteOrder, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.column.collate("C"), **kw)


def path_below(column: sa.ColumnElement[str], path: str) -> sa.ColumnElement[bool]:
    """``column`` lies strictly below global path ``path`` (a trailing ``/``
    ignored): a byte-order range an index on the column serves; below ``/``
    is every other path."""
    prefix = path.rstrip("/") + "/"
    if prefix == "/":
        return column != "/"
    ordered = _InByteOrder(column)
    return sa.and_(ordered >= prefix, ordered < prefix[:-1] + "0")


def path_subtree(column: sa.ColumnElement[str], path: str) -> sa.ColumnElement[bool]:
    """``column`` is ``path`` or lies below it; ``/``: every path."""
    if path.rstrip("/") == "":
        return sa.true()
    return sa.or_(column == path, path_below(column, path))


def path_children(column: sa.ColumnElement[str], path: str) -> sa.ColumnElement[bool]:
    """``column`` names a direct member of folder ``path``: below it (the
    range) with no further ``/`` in the rest (replace() and substr() mean
    the same on SQLite and PostgreSQL)."""
    prefix = path.rstrip("/") + "/"
    rest = sa.func.substr(column, len(prefix) + 1)
    return sa.and_(path_below(column, path), sa.func.replace(rest, "/", "") == rest)
