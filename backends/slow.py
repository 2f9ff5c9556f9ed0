"""``slow::`` — a chained fsspec filesystem that makes any target act like a
distant one: each call waits ``latency_ms`` and file data moves at most at
``bytes_per_s``. Used by tests and demos (``url = "slow::memory://x"``,
``options = {slow = {latency_ms = 50, bytes_per_s = 1e6}}``).

``fail_glob`` injects faults: every call on a path matching that glob pattern
raises ConnectionError (as a storage that went away would), so tests can
prove retries, clean failure and resume against a real module.
"""

from __future__ import annotations

import fnmatch
import time
from typing import Any

import fsspec
from fsspec.implementations.chained import ChainedFileSystem

__all__ = ["SlowFileSystem"]

_PROXIED = (
    "info", "ls", "exists", "isdir", "isfile", "mkdir", "makedirs", "rmdir", "rm_file", "rm",
    "cp_file", "mv", "pipe_file", "cat_file", "checksum", "modified", "created", "size",
    "find", "walk", "touch",
)


class _SlowFile:
    def __init__(self, f, fs: "SlowFileSystem") -> None:
        self._f = f
        self._fs = fs

    def _throttle(self, n: int) -> None:
        if self._fs.bytes_per_s and n:
            time.sleep(n / self._fs.bytes_per_s)

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._throttle(len(data))
        return data

    def write(self, data: bytes) -> int:
        self._throttle(len(data))
        return self._f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()


class SlowFileSystem(ChainedFileSystem):
    protocol = "slow"
    cachable = False

    def __init__(self, target_protocol: str | None = None, target_options: dict | None = None,
                 fs=None, latency_ms: float = 0.0, bytes_per_s: float | None = None,
                 fo: str | None = None, fail_glob: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fs = fs or fsspec.filesystem(target_protocol or "memory", **(target_options or {}))
        self.target_protocol = target_protocol or self.fs.protocol
        if isinstance(self.target_protocol, (tuple, list)):
            self.target_protocol = self.target_protocol[0]
        self.latency_s = float(latency_ms) / 1000.0
        self.bytes_per_s = float(bytes_per_s) if bytes_per_s else None
        self.fail_glob = fail_glob

    def _wait(self, *args: Any) -> None:
        if self.latency_s:
            time.sleep(self.latency_s)
        if self.fail_glob and any(isinstance(a, str) and fnmatch.fnmatch(a, self.fail_glob) for a in args):
            raise ConnectionError(f"injected fault on {args[0]}")

    @classmethod
    def _strip_protocol(cls, path):
        path = str(path)
        return path[len("slow://"):] if path.startswith("slow://") else path

    def _open(self, path, mode="rb", **kwargs):
        self._wait(path)
        return _SlowFile(self.fs.open(path, mode, **kwargs), self)

    def invalidate_cache(self, path=None) -> None:
        self.fs.invalidate_cache(path)

    def __getattribute__(self, name: str):
        if name in _PROXIED:
            target = object.__getattribute__(self, "fs")
            wait = object.__getattribute__(self, "_wait")
            method = getattr(target, name)

            def call(*args, **kwargs):
                wait(*args)
                return method(*args, **kwargs)

            return call
        return object.__getattribute__(self, name)


fsspec.register_implementation("slow", SlowFileSystem, clobber=True)
