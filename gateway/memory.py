"""Giving memory freed by a large transfer back to the system at once.

glibc keeps freed heap memory in the process until ``malloc_trim``; the main
thread trims every few seconds (``gateway.server.TRIM_EVERY_S``). A large
upload frees its buffers when it ends, and a transfer that starts right
after it would otherwise begin with them still resident: in the benchmark,
the WebDAV 1 GiB upload that follows the SFTP one started 5-12 MiB higher.
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["libc", "trim", "transfer_done", "RELEASE_AFTER_BYTES"]

#: A transfer of this many bytes or more trims the heap when it ends (a
#: trim takes about a millisecond).
RELEASE_AFTER_BYTES = 64 << 20


@functools.lru_cache(maxsize=1)
def libc() -> Any:
    """glibc, or None where the C library is something else."""
    try:
        import ctypes

        lib = ctypes.CDLL("libc.so.6")
        return lib if hasattr(lib, "mallopt") and hasattr(lib, "malloc_trim") else None
    except OSError:
        return None


def trim() -> None:
    """glibc's ``malloc_trim(0)``; nothing where the C library is not glibc."""
    lib = libc()
    if lib is not None:
        lib.malloc_trim(0)


def transfer_done(nbytes: int) -> None:
    """A transfer of ``nbytes`` ended: trim when it was a large one."""
    if nbytes >= RELEASE_AFTER_BYTES:
        trim()
