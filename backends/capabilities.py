"""What each storage protocol can do cheaply; the planner reads this table
instead of probing backends with hasattr()."""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["Capabilities", "for_protocol"]


@dataclass(frozen=True)
class Capabilities:
    """``atomic_rename``: renaming a folder is one atomic O(1) call.
    ``server_copy``: a file copy within the mount moves no bytes through us.
    ``cheap_list``: listing a folder costs about as much as a local readdir.
    ``ranges``: reads can start at an offset. ``append``: writes can continue
    an existing file in place. ``random_write``: writes at any offset.
    ``checksums``: hash algorithms the backend answers without reading data.
    ``directories``: empty folders exist natively (object stores have only
    prefixes; the S3 mount keeps a zero-byte ``folder/`` marker instead).
    ``fan_out``: how many per-object calls a job may run at once on it (1:
    one after another; remote stores hide their latency behind parallel calls).
    ``copy_fan_out``: how many server-side copies a job runs at once inside
    the mount (0: as ``fan_out``); they move no bytes through the gateway.
    ``batch_remove``: how many files one call can delete (S3's DeleteObjects
    takes 1,000; 1: one call per file).
    ``mtimes``: the storage keeps a modification time a client sets (where
    it does not, setting one is refused rather than silently dropped).
    ``copy_mtimes``: a copy inside the mount (``server_copy``) keeps the
    source's modification time by itself, so a copy or move that carries
    the time (gateway.transfer) needs no second call to set it.
    """

    atomic_rename: bool = False
    server_copy: bool = False
    cheap_list: bool = True
    ranges: bool = True
    append: bool = False
    random_write: bool = False
    checksums: tuple[str, ...] = ()
    directories: bool = True
    fan_out: int = 1
    copy_fan_out: int = 0
    batch_remove: int = 1
    mtimes: bool = False
    copy_mtimes: bool = False


_TABLE: dict[str, Capabilities] = {
    "file": Capabilities(atomic_rename=True, server_copy=True, append=True, random_write=True, mtimes=True,
                         copy_mtimes=True),
    "memory": Capabilities(server_copy=True),
    # CopyObject server-side (multipart UploadPartCopy past 5 GiB); no rename: a
    # folder "rename" is N copies + N/1000 DeleteObjects.
    # ETag is the MD5 of a single-part object; SHA-256 where the object was
    # stored with it (ChecksumSHA256). Times in the ``mtime`` user metadata,
    # as rclone keeps them. Server-side copies: the mount option
    # ``copy_concurrency`` (default 16).
    "s3": Capabilities(server_copy=True, cheap_list=False, checksums=("md5", "sha256"), directories=False,
                       fan_out=8, copy_fan_out=16, batch_remove=1000, mtimes=True, copy_mtimes=True),
    # posix-rename@openssh.com; server_copy only where the server offers
    # copy-data (found out when the mount connects; OpenSSH >= 9.0 does).
    "sftp": Capabilities(atomic_rename=True, cheap_list=False, append=True, random_write=True, fan_out=8,
                         mtimes=True),
    # RNFR/RNTO, APPE, REST for ranges; no copy, no checksum. Metadata calls
    # share one control connection; each open file has its own. Times by
    # MFMT or MDTM where the server has them (else refused when set).
    "ftp": Capabilities(atomic_rename=True, cheap_list=False, append=True, fan_out=4, mtimes=True),
    # MOVE and COPY are server-side; no append (PUT replaces the whole file).
    "webdav": Capabilities(atomic_rename=True, server_copy=True, cheap_list=False, fan_out=8),
}
_ALIASES = {"local": "file", "ssh": "sftp", "s3a": "s3", "webdavs": "webdav", "dav": "webdav", "davs": "webdav"}


def for_protocol(protocol: str, *, slow: bool = False) -> Capabilities:
    """The capability entry of ``protocol``; a ``slow::`` wrapper keeps the
    target's powers but its listings are no longer cheap."""
    caps = _TABLE.get(_ALIASES.get(protocol, protocol), Capabilities(cheap_list=False))
    return replace(caps, cheap_list=False) if slow else caps
