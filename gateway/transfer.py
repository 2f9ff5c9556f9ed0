"""Moving one file's bytes between two places: server-side where the
storage can, streamed in bounded blocks otherwise, and checked: the size
always, the content too where either side keeps a native checksum (S3's
ETag is the MD5 of a single-part object) — the streamed bytes are hashed on
the way and must match.

The copy carries the source's modification time where the destination
mount keeps times (its ``mtimes`` capability): a copy between folders of
this machine's disk and a server-side copy that keeps it by itself
(``copy_mtimes``: local disk, S3's CopyObject with its metadata) need no
second call; any other copy sets it once the content is in place. Where the
destination keeps no time, the copy's time is the storage's own: the copy
is what was asked for, so that is no error."""

from __future__ import annotations

import hashlib
import logging
from typing import Callable

from backends.base import CHUNK, Backend
from backends.local import LocalBackend
from gateway.errors import BackendError, BackendUnavailable, GatewayError

__all__ = ["copy_file"]

log = logging.getLogger("gateway.transfer")


def copy_file(src: Backend, src_path: str, dst: Backend, dst_path: str, *,
              on_bytes: Callable[[int], None] | None = None,
              check: Callable[[], None] | None = None,
              expected_size: int | None = None, temp_key: str | None = None, mtime: float | None = None) -> int:
    """Copy one file, replacing ``dst_path``, with the source's modification
    time where the destination keeps times (see the module's docstring);
    returns the bytes copied.

    ``on_bytes(n)`` reports progress per block; ``check()`` runs between
    blocks and may raise to abandon the copy (the destination is then left as
    it was); ``temp_key`` names its temporary (see Backend.open_write);
    ``mtime``: the source's time when the caller knows it (saves a stat).
    Raises BackendError when the copy's size differs from the
    source's (a truncated transfer is never committed); a retryable error
    when setting the time fails on the way (the whole copy may be retried).
    """
    if isinstance(dst, LocalBackend) and isinstance(src, LocalBackend):  # each mount checks its own path
        return dst.copy_from(src, src_path, dst_path, temp_key=temp_key, on_bytes=on_bytes, check=check,
                             expected_size=expected_size)  # keeps the time itself
    if src is dst and src.capabilities.server_copy:
        when = None if dst.capabilities.copy_mtimes else _source_time(src, src_path, dst, mtime)
        size = dst.copy_file(src_path, dst_path, expected_size)
        if on_bytes:
            on_bytes(size)
        _carry_time(dst, dst_path, when)
        return size
    when = _source_time(src, src_path, dst, mtime)
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
    _carry_time(dst, dst_path, when)
    return total


def _source_time(src: Backend, src_path: str, dst: Backend, known: float | None) -> float | None:
    """The time the copy should get: None where ``dst`` keeps no times (no
    stat of the source then), else ``known`` or the source's own."""
    if not dst.capabilities.mtimes:
        return None
    return known if known is not None else src.info(src_path).mtime


def _carry_time(dst: Backend, dst_path: str, mtime: float | None) -> None:
    """Give the copy at ``dst_path`` the time ``mtime`` (None: nothing to
    carry). A storage that turns out to keep none (an FTP server without
    MFMT, a WebDAV server refusing the PROPPATCH) leaves its own time: the
    copy stands. A retryable failure is raised, so the copy is tried again."""
    if mtime is None:
        return
    try:
        kept = dst.set_mtime(dst_path, mtime)
    except GatewayError as exc:
        if exc.retryable:
            raise
        kept = False
        log.warning("copy %s: its time was not kept (%s)", dst_path, exc)
    if not kept:
        log.debug("copy %s: the storage keeps its own time", dst_path)


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
