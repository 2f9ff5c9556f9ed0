"""Durable WebDAV state: locks and dead properties, keyed by global path.

Protocol-free: the WebDAV adapter turns its lock records and property values
into plain JSON-able dicts and strings and keeps them here, in the job store's
database (tables ``dav_locks`` and ``dav_props``), so they survive restarts and
are shared by every node. Paths are *global* virtual paths (a user's path
under their home, see :meth:`DavState.key`), so two users whose homes differ
never see each other's ``/x`` as the same resource, and one resource reached
through two homes is one resource.

Every method is thread-safe and idempotent unless it says otherwise.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import sqlalchemy as sa

from gateway.jobs.schema import dav_locks, dav_props
from gateway.jobs.store import write_transaction
from gateway.namespace import is_under, normalise, to_global, to_user
from gateway.types import Session

__all__ = ["DavState"]


def _subtree(column: sa.Column, path: str, *, include_root: bool = True,
             include_children: bool = True) -> sa.ColumnElement[bool]:
    """``column`` is ``path`` and/or lies below it. A prefix test by substr:
    LIKE would need escaping and is case-blind on SQLite, and a range test
    would follow PostgreSQL's locale collation."""
    prefix = path.rstrip("/") + "/"
    below = sa.and_(column != path, sa.func.substr(column, 1, len(prefix)) == prefix)
    if include_root and include_children:
        return sa.or_(column == path, below)
    return column == path if include_root else below


def _moved(path: str, src: str, dst: str) -> str:
    return dst if path == src else (dst.rstrip("/") + path[len(src.rstrip("/")):])


class DavState:
    """Locks and dead properties over the job store's engine."""

    def __init__(self, engine: sa.Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    def _tx(self):
        return write_transaction(self.engine)

    # -- paths ----------------------------------------------------------------------

    @staticmethod
    def key(session: Session, path: str) -> str:
        """The global path that keys ``path`` (a client path of ``session``'s
        user). Raises BadRequest for a path the core would refuse."""
        return to_global(session.user.home, normalise(path))

    @staticmethod
    def user_path(session: Session, key: str) -> str | None:
        """Inverse of :meth:`key`; None when ``key`` lies outside the user's home."""
        home = session.user.home
        return to_user(home, key) if is_under(key, home) else None

    # -- locks ----------------------------------------------------------------------

    def put_lock(self, token: str, root: str, data: dict[str, Any], expires_at: float) -> None:
        """Store (or replace) the lock ``token`` on global path ``root``."""
        row = {"root": root, "data": json.dumps(data), "expires_at": expires_at}
        with self._tx() as c:
            if c.execute(dav_locks.update().where(dav_locks.c.token == token).values(**row)).rowcount == 0:
                c.execute(dav_locks.insert().values(token=token, **row))

    def get_lock(self, token: str) -> dict[str, Any] | None:
        """The data of an unexpired lock, else None (an expired one is purged)."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(dav_locks.c.data, dav_locks.c.expires_at)
                            .where(dav_locks.c.token == token)).first()
        if row is None:
            return None
        if row.expires_at < self.clock():
            self.delete_lock(token)
            return None
        return json.loads(row.data)

    def delete_lock(self, token: str) -> bool:
        """Remove a lock; whether it existed."""
        with self._tx() as c:
            return c.execute(dav_locks.delete().where(dav_locks.c.token == token)).rowcount > 0

    def locks(self, root: str, *, include_root: bool = True, include_children: bool = False) -> list[dict[str, Any]]:
        """Data of the unexpired locks whose root is ``root`` and/or below it."""
        with self.engine.connect() as c:
            rows = c.execute(sa.select(dav_locks.c.data).where(
                _subtree(dav_locks.c.root, root, include_root=include_root, include_children=include_children),
                dav_locks.c.expires_at >= self.clock()).order_by(dav_locks.c.root)).all()
        return [json.loads(r.data) for r in rows]

    def purge_expired_locks(self) -> int:
        with self._tx() as c:
            return c.execute(dav_locks.delete().where(dav_locks.c.expires_at < self.clock())).rowcount

    def clear_locks(self) -> None:
        with self._tx() as c:
            c.execute(dav_locks.delete())

    # -- dead properties ------------------------------------------------------------

    def props(self, path: str) -> dict[str, str]:
        """{name: value} of the properties of global path ``path``."""
        with self.engine.connect() as c:
            rows = c.execute(sa.select(dav_props.c.name, dav_props.c.value)
                             .where(dav_props.c.path == path).order_by(dav_props.c.name)).all()
        return {r.name: r.value for r in rows}

    def prop(self, path: str, name: str) -> str | None:
        with self.engine.connect() as c:
            return c.execute(sa.select(dav_props.c.value)
                             .where(dav_props.c.path == path, dav_props.c.name == name)).scalar()

    def set_prop(self, path: str, name: str, value: str) -> None:
        with self._tx() as c:
            where = (dav_props.c.path == path, dav_props.c.name == name)
            if c.execute(dav_props.update().where(*where).values(value=value)).rowcount == 0:
                c.execute(dav_props.insert().values(path=path, name=name, value=value))

    def remove_prop(self, path: str, name: str) -> None:
        with self._tx() as c:
            c.execute(dav_props.delete().where(dav_props.c.path == path, dav_props.c.name == name))

    def remove_props(self, path: str, *, recursive: bool = True) -> None:
        """Forget the properties of ``path`` (and everything below it)."""
        with self._tx() as c:
            c.execute(dav_props.delete().where(_subtree(dav_props.c.path, path, include_children=recursive)))

    def copy_props(self, src: str, dst: str, *, recursive: bool = True) -> None:
        """Give ``dst`` (and below) the properties ``src`` (and below) has;
        whatever ``dst`` had is dropped first."""
        self._transfer(src, dst, recursive, move=False)

    def move_props(self, src: str, dst: str, *, recursive: bool = True) -> None:
        """As :meth:`copy_props`, and ``src`` keeps none."""
        self._transfer(src, dst, recursive, move=True)

    def _transfer(self, src: str, dst: str, recursive: bool, move: bool) -> None:
        if src == dst:
            return
        with self._tx() as c:
            where = _subtree(dav_props.c.path, src, include_children=recursive)
            rows = c.execute(sa.select(dav_props.c.path, dav_props.c.name, dav_props.c.value).where(where)).all()
            c.execute(dav_props.delete().where(_subtree(dav_props.c.path, dst, include_children=recursive)))
            if move:
                c.execute(dav_props.delete().where(where))
            if rows:
                c.execute(dav_props.insert(), [{"path": _moved(r.path, src, dst), "name": r.name, "value": r.value}
                                               for r in rows])
