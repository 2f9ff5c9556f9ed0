"""pyftpdlib's filesystem interface over the operations core.

Each method makes one core call. Gateway errors leave as pyftpdlib's
FilesystemError (which it answers with 550) after noting the right reply
code on the handler, which rewrites the code in :meth:`respond`."""

from __future__ import annotations

import posixpath
import stat as _stat
import time
from typing import Any, Callable, Iterator

from pyftpdlib.filesystems import AbstractedFS, FilesystemError

from gateway import errors as E
from gateway.types import Entry
from protocols.ftp.errors import reply_code

__all__ = ["GatewayFS"]


#: How long a listing's entries answer stat, SIZE and MDTM for its members
#: (clients send those right after a LIST); any change made through the
#: gateway, by any session, drops them at once.
_LISTED_TTL_S = 2.0

#: As pyftpdlib's format_list: older entries show the year instead of the time.
_SIX_MONTHS = 180 * 24 * 60 * 60
_MONTHS = {1: "Jan", 2: "Feb", 3: "Mar", 4: "Apr", 5: "May", 6: "Jun", 7: "Jul", 8: "Aug", 9: "Sep",
           10: "Oct", 11: "Nov", 12: "Dec"}


def _date(timefunc: Any, mtime: int, old: bool) -> str:
    try:
        t = timefunc(mtime)
        return f"{_MONTHS[t.tm_mon]} {time.strftime('%d  %Y' if old else '%d %H:%M', t)}"
    except ValueError:  # before 1900: pyftpdlib shows the current time
        t = timefunc()
        return f"{_MONTHS[t.tm_mon]} {time.strftime('%d %H:%M', t)}"


def _stat_of(e: Entry) -> Any:
    import os

    mode = (_stat.S_IFDIR | 0o755) if e.is_dir else (_stat.S_IFREG | 0o644)
    mtime = int(e.mtime or 0)
    return os.stat_result((mode, 0, 0, 1, 0, 0, e.size, mtime, mtime, mtime))


class _ReadFile:
    """A download: the core's file under the client's path name."""

    def __init__(self, f: Any, name: str) -> None:
        self._f = f
        self.name = name

    @property
    def closed(self) -> bool:
        return getattr(self._f, "closed", False)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._f, attr)


class _UploadFile:
    """An upload: committed when the data connection ends a complete
    transfer, aborted otherwise (nothing half-written becomes visible).
    With REST, the first ``seek`` names the offset to continue at."""

    def __init__(self, fs: "GatewayFS", path: str, offset: int | None) -> None:
        self._fs = fs
        self.name = path
        self.closed = False
        self._upload = None if offset is None else fs._changed(fs.ops.open_write, fs.session, path, offset)

    def seek(self, offset: int, whence: int = 0) -> int:
        if self._upload is None:
            self._upload = self._fs._changed(self._fs.ops.open_write, self._fs.session, self.name, offset)
        return offset

    def write(self, data: bytes) -> int:
        if self._upload is None:
            self._upload = self._fs._changed(self._fs.ops.open_write, self._fs.session, self.name, 0)
        return self._upload.write(data)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        handler = self._fs.cmd_channel
        dc = getattr(handler, "data_channel", None)
        if self._upload is None:
            return
        if dc is None or not dc.transfer_finished:  # no data connection (any more): nothing came
            self._upload.abort()
            return
        try:
            self._upload.commit()
        except E.GatewayError as exc:
            if dc is not None and dc._resp:
                dc._resp = (f"{reply_code(exc)} {exc}.", dc._resp[1])


class GatewayFS(AbstractedFS):
    """The client's view: virtual paths from ``/``; the core normalises them
    again and applies the user's home and permissions."""

    def __init__(self, root: str, cmd_channel: Any) -> None:
        super().__init__("/", cmd_channel)
        self.ops = cmd_channel.gw.ops
        self.session = cmd_channel.session
        self._listed: dict[str, Entry] = {}
        self._listed_at = 0.0
        self._listed_stamp: tuple[int, int, int] | None = None

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except E.GatewayError as exc:
            self.cmd_channel.pending_code = reply_code(exc)
            raise FilesystemError(str(exc)) from None

    # -- paths: virtual, checked by the core ------------------------------
    def ftp2fs(self, ftppath: str) -> str:
        return posixpath.normpath(posixpath.join(self.cwd, ftppath)) if ftppath else self.cwd

    def fs2ftp(self, fspath: str) -> str:
        return fspath

    def validpath(self, path: str) -> bool:
        return True

    def realpath(self, path: str) -> str:
        return path

    # -- reads ----------------------------------------------------------------
    def _entry(self, path: str) -> Entry:
        cached = self._listed.get(path)
        if (cached is not None and time.monotonic() - self._listed_at < _LISTED_TTL_S
                and self.ops.change_stamp() == self._listed_stamp):
            return cached
        return self._call(self.ops.stat, self.session, path)

    def _changed(self, fn, *args, **kwargs):
        """A core call that changes the tree: the last listing's entries
        no longer answer for it."""
        self._listed = {}
        return self._call(fn, *args, **kwargs)

    def stat(self, path: str) -> Any:
        return _stat_of(self._entry(path))

    lstat = stat

    def isdir(self, path: str) -> bool:
        try:
            return self._entry(path).is_dir
        except FilesystemError:
            return False

    def isfile(self, path: str) -> bool:
        try:
            return not self._entry(path).is_dir
        except FilesystemError:
            return False

    def lexists(self, path: str) -> bool:
        # pyftpdlib's RNFR asks this outside its error handling: a path the
        # core refuses is "there", and RNTO answers with the refusal.
        try:
            return self.ops.exists(self.session, path)
        except E.GatewayError:
            return True

    def islink(self, path: str) -> bool:
        return False

    def getsize(self, path: str) -> int:
        return self._entry(path).size

    def getmtime(self, path: str) -> float:
        return self._entry(path).mtime or time.time()

    def listdir(self, path: str) -> list[str]:
        stamp = self.ops.change_stamp()
        entries = list(self._call(lambda: list(self.ops.list(self.session, path))))
        base = path.rstrip("/")
        self._listed_stamp = stamp
        self._listed = {f"{base}/{e.name}": e for e in entries}
        self._listed_at = time.monotonic()
        return [e.name for e in entries]

    def listdirinfo(self, path: str) -> list[str]:
        return self.listdir(path)

    def format_list(self, basedir: str, listing: list[str], ignore_err: bool = True) -> Iterator[bytes]:
        """pyftpdlib's LIST lines, byte for byte, written from the entries
        the listing just returned: pyftpdlib builds a stat result, a mode
        string and a strftime per entry, which cost LIST of 20,000 entries
        as much as the listing itself."""
        timefunc = time.gmtime if self.cmd_channel.use_gmt_times else time.localtime
        now = time.time()
        encoding, errors = self.cmd_channel.encoding, self.cmd_channel.unicode_errors
        base = basedir.rstrip("/")
        dates: dict[tuple[int, bool], str] = {}
        lines: list[str] = []
        for name in listing:
            try:
                e = self._listed.get(f"{base}/{name}") or self._entry(posixpath.join(basedir, name))
            except FilesystemError:
                if ignore_err:
                    continue
                raise
            mtime = int(e.mtime or 0)
            old = now - mtime > _SIX_MONTHS
            date = dates.get((mtime // 60, old))
            if date is None:
                date = dates[(mtime // 60, old)] = _date(timefunc, mtime, old)
            mode, size = ("drwxr-xr-x", 0) if e.is_dir else ("-rw-r--r--", e.size)
            lines.append(f"{mode}   1 owner    group    {size:>8} {date} {name}\r\n")
            if len(lines) >= 512:
                yield "".join(lines).encode(encoding, errors)
                lines = []
        if lines:
            yield "".join(lines).encode(encoding, errors)

    def chdir(self, path: str) -> None:
        if not self._call(self.ops.stat, self.session, path).is_dir:
            self.cmd_channel.pending_code = 550
            raise FilesystemError(f"{path}: not a folder")
        self.cwd = path

    def get_user_by_uid(self, uid: int) -> str:
        return "owner"

    def get_group_by_gid(self, gid: int) -> str:
        return "group"

    def open(self, filename: str, mode: str) -> Any:
        if "r" in mode and "+" not in mode:
            f, _ = self._call(self.ops.open_read, self.session, filename)
            return _ReadFile(f, filename)
        if "a" in mode:  # APPE continues the file as it is now, never as last listed
            size = self._call(self.ops.stat, self.session, filename).size if self.lexists(filename) else 0
            return _UploadFile(self, filename, size)
        return _UploadFile(self, filename, None if "+" in mode else 0)

    def mkstemp(self, suffix: str = "", prefix: str = "", dir: str | None = None, mode: str = "wb") -> Any:
        import secrets

        name = posixpath.join(dir or self.cwd, f"{prefix or 'stou'}-{secrets.token_hex(4)}{suffix}")
        return _UploadFile(self, name, 0)

    # -- writes ----------------------------------------------------------------
    def mkdir(self, path: str) -> None:
        self._changed(self.ops.mkdir, self.session, path)

    def utime(self, path: str, timeval: float) -> None:
        self._changed(self.ops.set_mtime, self.session, path, timeval)

    def set_file_mtime(self, path: str, timeval: float, found: Callable[[Entry], None]) -> Entry:
        """MFMT's one core call (see ``GatewayHandler.ftp_MFMT``)."""
        return self._changed(self.ops.set_file_mtime, self.session, path, timeval, found=found)

    def chmod(self, path: str, mode: int) -> None:
        self.cmd_channel.pending_code = 504
        raise FilesystemError("permissions are not kept by this server")

    def rename(self, src: str, dst: str) -> Any:
        return self._changed(self.ops.move, self.session, src, dst)

    def remove(self, path: str) -> Any:
        return self._changed(self.ops.delete, self.session, path, folder=False)

    def rmdir(self, path: str) -> Any:
        return self._changed(self.ops.delete, self.session, path, recursive=True, folder=True)

    def copy(self, src: str, dst: str) -> Any:
        return self._changed(self.ops.copy, self.session, src, dst)
