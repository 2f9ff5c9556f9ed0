"""Moving one file's bytes between two places: server-side where the
storage can, streamed in bounded blocks otherwise, and checked: the size
always, the content too where either side keeps a native checksum (S3's
ETag is the MD5 of a single-part object) — the streamed bytes are hashed on
the way and must match."""

from __future__ import annotations

import hashlib
from typing import Callable

from backends.base import CHUNK, Backend
from backends.local import LocalBackend
from gateway.errors import BackendError, BackendUnavailable

__all__ = ["copy_file"]


def copy_file(src: Backend, src_path: str, dst: Backend, dst_path: str, *,
              on_bytes: Callable[[int], None] | None = None,
              check: Callable[[], None] | None = None,
              expected_size: int | None = None, temp_key: str | None = None) -> int:
    """Copy one file, replacing ``dst_path``; returns the bytes copied.

    ``on_bytes(n)`` reports progress per block; ``check()`` runs between
    blocks and may raise to abandon the copy (the destination is then left as
    it was); ``temp_key`` names its temporary (see Backend.open_write).
    Raises BackendError when the copy's size differs from the
    source's (a truncated transfer is never committed).
    """
    if isinstance(dst, LocalBackend) and isinstance(src, LocalBackend):  # each mount checks its own path
        return dst.copy_from(src, src_path, dst_path, temp_key=temp_key, on_bytes=on_bytes, check=check,
                             expected_size=expected_size)
    if src is dst and src.capabilities.server_copy:
        size = dst.copy_file(src_path, dst_path, expected_size)
        if on_bytes:
            on_bytes(size)
        return size
    algorithm = _shared_checksum(src, dst)
    digest = hashlib.new(algorithm) if algorithm else None
    expected = src.checksum(src_path, algorithm) if algorithm else None
    writer = dst.open_write(dst_path, temp_key=temp_key)
    total = 0
    try:
        with src.open_read(src_path) as f:
            while True:
                if check:
                    check()
                block = f.read(CHUNK)
                if not block:
                    break
                writer.write(block)
                if digest:
                    digest.update(block)
                total += len(block)
                if on_bytes:
                    on_bytes(len(block))
        if expected_size is not None and total != expected_size:
            raise BackendError(f"copy of {src_path} is {total} bytes, source has {expected_size}; not committed")
        if digest and algorithm and expected and digest.hexdigest() != expected:
            raise _mismatch(src_path, algorithm, expected, digest.hexdigest())
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    if digest and algorithm:
        stored = dst.checksum(dst_path, algorithm)
        if stored and stored != digest.hexdigest():
            dst.remove(dst_path, missing_ok=True)
            raise _mismatch(dst_path, algorithm, digest.hexdigest(), stored)
    return total


def _shared_checksum(src: Backend, dst: Backend) -> str | None:
    """An algorithm one side answers natively (the other is then hashed in
    transit), or None when neither keeps a checksum."""
    for algorithm in (*src.capabilities.checksums, *dst.capabilities.checksums):
        if algorithm in hashlib.algorithms_guaranteed:
            return algorithm
    return None


def _mismatch(path: str, algorithm: str, expected: str, got: str) -> BackendUnavailable:
    # Retryable: a transfer corrupted on the way may well succeed again.
    return BackendUnavailable(f"copy of {path} failed its {algorithm} check (expected {expected}, got {got}); "
                              "not kept")
