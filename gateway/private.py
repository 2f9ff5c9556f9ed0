"""Files only the gateway's own user may read: everything in ``state_dir``
(the job store and its SQLite ``-wal``/``-shm``, users.toml, host keys, the
self-signed TLS key) is created 0600 and its folders 0700.

The mode is given to the call that creates the file (``os.open``,
``os.mkdir``), so there is no moment in which another local user could open
it; nothing is chmod'ed afterwards. The process umask is left alone: it is
shared by every thread, and uploads into the mounts keep theirs.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["FILE_MODE", "DIR_MODE", "private_dir", "create_private", "write_private"]

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path | str) -> Path:
    """Make folder ``path`` (0700) and its missing parents (with the usual
    mode: they are not ours). An existing folder is left as it is."""
    path = Path(path)
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(path, DIR_MODE)
        except FileExistsError:
            pass
    return path


def create_private(path: Path | str) -> bool:
    """Create the empty file ``path`` (0600) unless it exists; returns
    whether it did. Raises OSError when its folder is missing or unwritable."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def write_private(path: Path | str, data: bytes) -> None:
    """Write ``data`` as the whole content of ``path``, a file created 0600
    (an existing file keeps its mode). Raises OSError."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
