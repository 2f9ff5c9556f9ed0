"""Chunked uploads: the parts of one big upload, sent as separate requests,
kept until the client asks for them to be assembled.

The ownCloud/Nextcloud clients (and rclone's nextcloud vendor) upload a big
file as a folder of chunks and then one "assemble" request. The chunks wait
here, on this machine's disk under ``<state_dir>/uploads/<user>/<transfer>/``
(they survive a restart, so an interrupted transfer resumes). Assembling
streams them, in order, into ONE upload through :meth:`Operations.open_write`:
the core's permission, busy and storage rules apply, and the file appears
whole at its commit or not at all. Transfers untouched for ``max_age_s`` are
swept when another one starts.

Protocol-free and thread-safe; each method says what it raises.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from gateway import errors as E
from gateway.ops import Operations, Upload
from gateway.types import Entry, Session

__all__ = ["ChunkedUploads"]

#: Transfer and chunk names: what the clients use (numbers, hex, uuids).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}").fullmatch
_BLOCK = 1 << 20


@contextmanager
def _gone_is_not_found(transfer: str) -> Iterator[None]:
    """A transfer removed meanwhile (abandoned, assembled, swept) is NotFound."""
    try:
        yield
    except FileNotFoundError:
        raise E.NotFound(f"upload {transfer}: no such upload (abandoned, finished or swept)") from None


class ChunkedUploads:
    def __init__(self, root: Path, max_age_s: float = 24 * 3600) -> None:
        self.root = Path(root)
        self.max_age_s = max_age_s
        self._lock = threading.Lock()

    def _dir(self, session: Session, transfer: str) -> Path:
        if not _NAME(transfer):
            raise E.BadRequest(f"{transfer!r}: not a valid upload name")
        return self.root / session.user.name / transfer

    def _existing(self, session: Session, transfer: str) -> Path:
        folder = self._dir(session, transfer)
        if not folder.is_dir():
            raise E.NotFound(f"upload {transfer}: no such upload (never started, finished or swept)")
        return folder

    def create(self, session: Session, transfer: str) -> None:
        """Start a transfer. Raises AlreadyExists, BadRequest."""
        self.sweep()
        folder = self._dir(session, transfer)
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            folder.mkdir()
        except FileExistsError:
            raise E.AlreadyExists(f"upload {transfer}: already started") from None

    def write_chunk(self, session: Session, transfer: str, chunk: str, read: Callable[[int], bytes],
                    length: int) -> None:
        """Store (or replace) one chunk of ``length`` bytes read by ``read``;
        it only counts once whole. Raises NotFound (no such transfer),
        BadRequest (bad name, body shorter than ``length``)."""
        folder = self._existing(session, transfer)
        if not _NAME(chunk):
            raise E.BadRequest(f"{chunk!r}: not a valid chunk name")
        tmp = folder / f".part-{threading.get_ident()}-{chunk}"
        left = length
        try:
            with _gone_is_not_found(transfer), open(tmp, "wb") as f:
                while left:
                    data = read(min(left, _BLOCK))
                    if not data:
                        raise E.BadRequest(f"chunk {chunk}: the body ended after {length - left} of "
                                           f"{length} bytes; not saved")
                    f.write(data)
                    left -= len(data)
            with _gone_is_not_found(transfer):
                os.replace(tmp, folder / chunk)
                os.utime(folder)
        finally:
            tmp.unlink(missing_ok=True)

    def chunks(self, session: Session, transfer: str) -> list[Entry]:
        """The whole chunks received so far, in assembly order. Raises NotFound."""
        folder = self._existing(session, transfer)
        out = []
        for p in folder.iterdir():
            if p.name.startswith("."):
                continue
            st = p.stat()
            out.append(Entry(p.name, f"/{transfer}/{p.name}", False, st.st_size, st.st_mtime))
        return sorted(out, key=lambda e: (int(e.name), e.name) if e.name.isdigit() else (float("inf"), e.name))

    def assemble(self, ops: Operations, session: Session, transfer: str, path: str,
                 total_length: int | None, checksum: tuple[str, str] | None = None) -> tuple[Entry, bool]:
        """Write the chunks, in order, as the content of user path ``path``
        through the core (one upload: the file appears whole or not at
        all); the transfer is gone afterwards. Returns (entry, whether a
        file was replaced). Raises NotFound, BadRequest (the chunks do not
        add up to ``total_length``, or their content does not have
        ``checksum``: (algorithm, hex digest), see Upload.expect_checksum),
        and open_write's errors."""
        parts = self.chunks(session, transfer)
        size = sum(e.size for e in parts)
        if total_length is not None and size != total_length:
            raise E.BadRequest(f"upload {transfer}: the chunks hold {size} bytes, not the {total_length} "
                               "announced; not saved")
        folder = self._existing(session, transfer)
        # Claimed by a rename: a second assemble (a client's retry) or a
        # chunk arriving meanwhile finds no transfer; put back on failure,
        # so that the client may try the assemble again.
        claimed = folder.with_name(f".assembling-{transfer}")
        with _gone_is_not_found(transfer):
            folder.rename(claimed)
        try:
            upload: Upload = ops.open_write(session, path)
            upload.chunks = len(parts)
            try:
                if checksum is not None:
                    upload.expect_checksum(*checksum)
                for e in parts:
                    with open(claimed / e.name, "rb") as f:
                        while data := f.read(_BLOCK):
                            upload.write(data)
            except BaseException:
                upload.abort()
                raise
            entry = upload.commit()
        except BaseException:
            claimed.rename(folder)
            raise
        shutil.rmtree(claimed, ignore_errors=True)
        return entry, upload.replaced

    def discard(self, session: Session, transfer: str) -> None:
        """Forget a transfer and its chunks. Raises NotFound, BadRequest."""
        shutil.rmtree(self._existing(session, transfer), ignore_errors=True)

    def sweep(self, now: float | None = None) -> int:
        """Remove transfers untouched for ``max_age_s``; how many."""
        now = time.time() if now is None else now
        removed = 0
        with self._lock:
            if not self.root.is_dir():
                return 0
            for user in self.root.iterdir():
                for folder in user.iterdir() if user.is_dir() else ():  # claimed ones too
                    try:
                        if now - folder.stat().st_mtime > self.max_age_s:
                            shutil.rmtree(folder, ignore_errors=True)
                            removed += 1
                    except FileNotFoundError:
                        continue
        return removed
