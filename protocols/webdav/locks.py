"""wsgidav lock storage over :class:`gateway.davstate.DavState`, and the
lock manager that judges a write as the core does.

wsgidav hands us lock roots as resource ref URLs, which our provider makes
quoted *global* paths (see ``provider._Resource.get_ref_url``); the store keeps
them unquoted. The lock dicts are wsgidav's own, stored as JSON (the owner
XML, bytes in wsgidav, travels as text).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import unquote

from wsgidav.dav_error import PRECONDITION_CODE_LockConflict, DAVErrorCondition
from wsgidav.lock_man.lock_manager import LockManager, generate_lock_token, normalize_lock_root, validate_lock

from gateway.davstate import DavState

__all__ = ["LockStorage", "GatewayLockManager"]

LOCK_TIME_OUT_DEFAULT = 604800  # one week, as wsgidav's storages
LOCK_TIME_OUT_MAX = 4 * 604800


def _key(url: str) -> str:
    return unquote(normalize_lock_root(url))


def _dump(lock: dict[str, Any]) -> dict[str, Any]:
    data = dict(lock)
    if isinstance(data.get("owner"), bytes):
        data["owner"] = data["owner"].decode("utf-8")
    return data


def _load(data: dict[str, Any]) -> dict[str, Any]:
    data["owner"] = (data.get("owner") or "").encode("utf-8")
    return data


def _clamp(timeout: float | None) -> float:
    if timeout is None:
        return LOCK_TIME_OUT_DEFAULT
    if timeout < 0 or timeout > LOCK_TIME_OUT_MAX:
        return LOCK_TIME_OUT_MAX
    return timeout


class LockStorage:
    """The interface of ``wsgidav.lock_man.lock_storage.LockStorageDict``."""

    def __init__(self, state: DavState) -> None:
        self.state = state

    def __repr__(self) -> str:
        return "LockStorage(gateway.davstate)"

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def cleanup(self) -> None:
        self.state.purge_expired_locks()

    def clear(self) -> None:
        self.state.clear_locks()

    def get(self, token: str) -> dict[str, Any] | None:
        data = self.state.get_lock(token)
        return None if data is None else _load(data)

    def create(self, path: str, lock: dict[str, Any]) -> dict[str, Any]:
        """Store a new lock on ``path``; fills in root, timeout, expire and token."""
        assert lock.get("token") is None and lock.get("expire") is None
        lock["root"] = normalize_lock_root(path)
        timeout = lock.get("timeout")
        lock["timeout"] = _clamp(None if timeout is None else float(timeout))
        lock["expire"] = time.time() + lock["timeout"]
        validate_lock(lock)
        lock["token"] = generate_lock_token()
        self.state.put_lock(lock["token"], _key(lock["root"]), _dump(lock), lock["expire"])
        return lock

    def refresh(self, token: str, *, timeout: float) -> dict[str, Any]:
        lock = self.get(token)
        if lock is None:
            raise ValueError(f"no lock {token!r}")
        lock["timeout"] = _clamp(timeout)
        lock["expire"] = time.time() + lock["timeout"]
        self.state.put_lock(token, _key(lock["root"]), _dump(lock), lock["expire"])
        return lock

    def delete(self, token: str) -> bool:
        return self.state.delete_lock(token)

    def get_lock_list(self, path: str, *, include_root: bool, include_children: bool,
                      token_only: bool) -> list:
        locks = [_load(d) for d in self.state.locks(_key(path), include_root=include_root,
                                                   include_children=include_children)]
        return [lock["token"] for lock in locks] if token_only else locks


class GatewayLockManager(LockManager):
    """wsgidav's, except that a lock below a tree a request changes (MOVE or
    DELETE of a folder) does not bar it when its owner sends its token
    (RFC 4918 9.9.2): wsgidav counts every such lock, so davfs2 could not
    rename a folder holding a file it had just written and still held
    locked. The core judges the same way (gateway.davstate.DavState.barring),
    so both checks agree on every request."""

    def _get_write_conflicts(self, url: str, depth: str, token_list: list, principal: str) -> DAVErrorCondition:
        state = getattr(self.storage, "state", None)
        if state is not None and state.lock_free():  # what the walk over every folder above url would find
            return DAVErrorCondition(PRECONDITION_CODE_LockConflict)
        conflicts = super()._get_write_conflicts(url, "0", token_list, principal)
        if depth == "infinity":
            for lock in self.storage.get_lock_list(url, include_root=False, include_children=True,
                                                   token_only=False):
                if not (lock["principal"] == principal and lock["token"] in token_list):
                    conflicts.add_href(lock["root"])
        return conflicts
