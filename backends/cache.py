"""A per-mount cache of folder listings with a time to live.

Remote listings are slow (one LIST or PROPFIND per folder), so a mount keeps
the last listing of each folder for ``ttl_s`` seconds. The gateway's own
mutations call :meth:`ListingCache.invalidate` with the path they changed, so
a listing is never stale for changes made through the gateway; changes made
behind its back show up after at most ``ttl_s``.
"""

from __future__ import annotations

import posixpath
import threading
import time
from collections import OrderedDict
from typing import Generic, TypeVar

__all__ = ["ListingCache"]

T = TypeVar("T")


class ListingCache(Generic[T]):
    """{folder path: listing, and the folder's own entry fetched with it},
    LRU-bounded to ``max_folders``; thread-safe.

    A listing fetched while an invalidation happened is not stored (it may
    predate the change), so a slow listing racing a mutation cannot bring a
    stale result back."""

    def __init__(self, ttl_s: float, max_folders: int = 1024, max_entries: int = 50_000) -> None:
        self.ttl_s = ttl_s
        self.max_folders = max_folders
        self.max_entries = max_entries
        self._data: OrderedDict[str, tuple[float, list[T], T | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._generation = 0
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _key(path: str) -> str:
        return path.rstrip("/") or "/"

    def generation(self) -> int:
        """Take before fetching a listing; hand back to :meth:`put`."""
        return self._generation

    def get(self, path: str) -> list[T] | None:
        """The fresh listing of folder ``path``, or None."""
        hit = self._fresh(path)
        return None if hit is None else hit[1]

    def own(self, path: str) -> T | None:
        """The entry of folder ``path`` itself, kept with its fresh listing, or None."""
        hit = self._fresh(path)
        return None if hit is None else hit[2]

    def _fresh(self, path: str) -> tuple[float, list[T], T | None] | None:
        key = self._key(path)
        with self._lock:
            hit = self._data.get(key)
            if hit is None or hit[0] < time.monotonic():
                if hit is not None:
                    del self._data[key]
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return hit

    def put(self, path: str, listing: list[T], generation: int, own: T | None = None) -> None:
        """Keep ``listing`` of folder ``path`` (and ``own``, the folder's
        entry) unless an invalidation happened since ``generation``."""
        if len(listing) > self.max_entries:
            return
        with self._lock:
            if generation != self._generation:
                return
            self._data[self._key(path)] = (time.monotonic() + self.ttl_s, listing, own)
            self._data.move_to_end(self._key(path))
            while len(self._data) > self.max_folders:
                self._data.popitem(last=False)

    def invalidate(self, path: str | None = None) -> None:
        """Forget the listings that may show ``path``: its parent's, its own
        and (for a folder that was renamed or removed) everything below it.
        ``None`` forgets everything."""
        with self._lock:
            self._generation += 1
            if path is None:
                self._data.clear()
                return
            key = self._key(path)
            parent = posixpath.dirname(key) or "/"
            prefix = key.rstrip("/") + "/"
            for k in [k for k in self._data if k in (key, parent) or k.startswith(prefix)]:
                del self._data[k]
