"""FTP mounts (fsspec's ftp over ftplib): ``ftp://[user@]host[:port]/path``.

ftplib connections are not thread-safe, so the mount's metadata calls (MLST,
MLSD, DELE, MKD, RMD, RNFR/RNTO) take turns on one control connection, and
every open file gets a connection of its own that streams one RETR/STOR/APPE
data transfer in bounded blocks (fsspec's own FTP files issue one STOR per
64 KiB block). An idle control connection is probed with NOOP and a broken
one is rebuilt (Backend ``connect``). Servers without MLSD/MLST (vsftpd)
are listed with ``LIST -a`` (plain LIST hides names starting with a dot)
and stat'ed with MDTM/SIZE (a file) or CWD (a folder).

Options: ``username``, ``password``, ``acct``, ``tls`` (True: explicit FTPS),
``tls_ca_file`` (PEM certificates to trust besides the system's, e.g. a
server's self-signed one), ``tls_verify`` (default True: the server's
certificate must be valid for its host name; ftplib's own default checks
nothing), ``encoding``; the mount's ``timeout_s`` is the socket timeout.
"""

from __future__ import annotations

import datetime
import ssl
import threading
import time
from dataclasses import replace
from ftplib import FTP, FTP_TLS, error_perm
from typing import Any

from fsspec.implementations.ftp import FTPFileSystem, ImplicitFTPTLS

from backends.base import Backend, Writer
from gateway import errors as E

__all__ = ["FTPBackend", "GatewayFTPFileSystem", "settable_times"]

#: Probe the control connection with NOOP after this long unused.
_IDLE_S = 20.0


def _locked(method):
    def call(self, *args, **kwargs):
        with self.lock:
            if time.monotonic() - self._last_used > _IDLE_S:
                self._revive()
            try:
                return method(self, *args, **kwargs)
            finally:
                self._last_used = time.monotonic()

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


class GatewayFTPFileSystem(FTPFileSystem):
    """fsspec's FTP filesystem, safe to share between threads."""

    protocol = "ftp"
    ftp: FTP

    def __init__(self, *args: Any, tls_ca_file: str | None = None, tls_verify: bool = True, **kwargs: Any) -> None:
        self.lock = threading.RLock()
        self._last_used = time.monotonic()
        self._context = ssl.create_default_context(cafile=tls_ca_file)
        if not tls_verify:
            self._context.check_hostname = False
            self._context.verify_mode = ssl.CERT_NONE
        kwargs["use_listings_cache"] = False
        super().__init__(*args, **kwargs)

    def _connect(self) -> None:
        """fsspec's, with FTPS checking the server's certificate (ftplib's
        default context verifies nothing: anyone in the middle would get the
        mount's password)."""
        if not self.tls:
            super()._connect()
            return
        cls = ImplicitFTPTLS if isinstance(self.tls, str) else FTP_TLS
        self.ftp = cls(timeout=self.timeout, encoding=self.encoding, context=self._context)
        self.ftp.connect(self.host, self.port)
        self.ftp.login(*self.cred)

    def _revive(self) -> None:
        try:
            self.ftp.voidcmd("NOOP")
        except Exception:  # noqa: BLE001 - the server closed an idle connection: open another
            self.ftp.close()
            self._connect()

    def new_connection(self) -> FTP:
        """A fresh logged-in control connection, for one file transfer."""
        with self.lock:
            shared = self.ftp
            try:
                self._connect()
                conn = self.ftp
            finally:
                self.ftp = shared
        if self.tls is True:
            conn.prot_p()  # type: ignore[attr-defined]
        conn.voidcmd("TYPE I")
        return conn

    @_locked
    def info(self, path, **kwargs):
        path = self._strip_protocol(path)
        if path == "/":
            return {"name": "/", "size": 0, "type": "directory"}
        try:
            reply = self.ftp.sendcmd(f"MLST {path}")
        except error_perm as exc:
            code = str(exc)[:3]
            if code in ("500", "501", "502", "504"):
                return self._info_without_mlst(path)
            if code == "550":
                raise FileNotFoundError(path) from exc
            raise
        facts_line = next((ln for ln in reply.splitlines()[1:] if ln.startswith(" ")), "")
        facts = dict(f.split("=", 1) for f in facts_line.strip().split(" ", 1)[0].split(";") if "=" in f)
        kind = facts.get("type", "file").lower()
        return {"name": path, "type": "directory" if kind in ("dir", "cdir", "pdir") else "file",
                "size": int(facts.get("size", 0)) if kind == "file" else 0, "modify": facts.get("modify")}

    def _info_without_mlst(self, path: str) -> dict[str, Any]:
        """A file by MDTM and SIZE, a folder by CWD, on servers without MLST
        (vsftpd). fsspec would list the parent instead: slow for a large
        folder, and wrong for a name starting with a dot, which vsftpd's
        LIST leaves out (the gateway's own .gw- names among them)."""
        try:
            modify = self.ftp.sendcmd(f"MDTM {path}")[4:].strip()
            size = self.ftp.size(path)
        except error_perm:
            pass
        else:
            return {"name": path, "type": "file", "size": size or 0, "modify": modify}
        try:
            self.ftp.cwd(path)
        except error_perm as exc:
            raise FileNotFoundError(path) from exc
        self.ftp.cwd("/")
        return {"name": path, "type": "directory", "size": 0}

    @_locked
    def ls(self, path, detail=True, **kwargs):
        """fsspec's, except that a server without MLSD (vsftpd) is listed with
        ``LIST -a``: a plain LIST leaves out names starting with a dot, so a
        user's ``.env`` would never show. Dates come from the LIST lines."""
        path = self._strip_protocol(path)
        try:
            rows = [(name, facts) for name, facts in self.ftp.mlsd(path)
                    if name not in (".", "..") and facts["type"] not in ("pdir", "cdir")]
        except error_perm as exc:
            if str(exc)[:3] not in ("500", "501", "502", "504"):
                raise FileNotFoundError(path) from exc
            rows = _listed(self.ftp, path)
        out = []
        for name, facts in rows:
            kind = "directory" if facts["type"] == "dir" else facts["type"]
            out.append({**facts, "name": ("" if path == "/" else path) + "/" + name.lstrip("/"), "type": kind,
                        "size": int(facts.get("size") or 0) if kind == "file" else 0})
        return out if detail else sorted(e["name"] for e in out)

    def _open(self, path, mode="rb", block_size=None, **kwargs):
        return _FTPTransfer(self, self._strip_protocol(path), mode)

    def __del__(self) -> None:
        try:
            self.ftp.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


for _name in ("_rm", "rm", "mkdir", "makedirs", "rmdir", "mv", "cat_file", "get_file"):
    setattr(GatewayFTPFileSystem, _name, _locked(getattr(FTPFileSystem, _name)))


def _listed(ftp: FTP, path: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, facts) of folder ``path`` from ``ls -l`` style LIST lines, dot
    names included (``LIST -a``; plain LIST where the server refuses the
    option or answers nothing, as for an option it took for a path)."""
    lines: list[str] = []
    try:
        ftp.dir("-a", path, lines.append)
    except error_perm:
        lines.clear()
    if not lines:
        ftp.dir(path, lines.append)
    now = time.time()
    rows = []
    for line in lines:
        parts = line.split(maxsplit=8)
        if len(parts) < 9:
            continue
        mode, name = parts[0], parts[8]
        if mode.startswith("l") and " -> " in name:
            name = name.split(" -> ", 1)[0]
        if name in (".", ".."):
            continue
        rows.append((name, {"type": "dir" if mode.startswith("d") else "file", "size": parts[4],
                            "mtime": _listed_time(parts[5], parts[6], parts[7], now), "unix.mode": mode}))
    return rows


def _listed_time(month: str, day: str, time_or_year: str, now: float) -> float | None:
    """The UTC time of an ``ls -l`` date: ``Dec 01 06:27`` (within the last
    half year: this year, or last year when that would be in the future) or
    ``Dec 01 2025``. None when it does not parse."""
    try:
        if ":" in time_or_year:
            year = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).year
            when = datetime.datetime.strptime(f"{year} {month} {day} {time_or_year}", "%Y %b %d %H:%M")
            when = when.replace(tzinfo=datetime.timezone.utc)
            if when.timestamp() > now + 86400:
                when = when.replace(year=year - 1)
        else:
            when = datetime.datetime.strptime(f"{month} {day} {time_or_year}", "%b %d %Y").replace(
                tzinfo=datetime.timezone.utc)
    except ValueError:
        return None
    return when.timestamp()


class _FTPTransfer:
    """One streamed transfer on its own connection: reading (RETR, from any
    offset with REST) or writing (STOR; APPE with ``mode`` "ab")."""

    def __init__(self, fs: GatewayFTPFileSystem, path: str, mode: str, offset: int = 0) -> None:
        self.fs = fs
        self.path = path
        self.mode = mode
        self.pos = offset
        self.conn = fs.new_connection()
        self.sock: Any = None
        self.eof = False
        self.closed = False
        if "r" not in mode:
            try:
                self.sock = self.conn.transfercmd(f"{'APPE' if 'a' in mode else 'STOR'} {path}")
            except BaseException:
                self.conn.close()
                raise

    # -- reading -----------------------------------------------------------------

    def _start(self) -> None:
        self.sock = self.conn.transfercmd(f"RETR {self.path}", rest=self.pos or None)

    def read(self, n: int = -1) -> bytes:
        if self.eof:
            return b""
        if self.sock is None:
            self._start()
        parts, got = [], 0
        while n < 0 or got < n:
            block = self.sock.recv(1 << 16 if n < 0 else min(1 << 16, n - got))
            if not block:
                self._finish()  # a transfer cut short raises here, not as a short file
                break
            parts.append(block)
            got += len(block)
        self.pos += got
        return b"".join(parts)

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence != 0:
            raise ValueError("FTP transfers seek from the start only")
        if offset != self.pos or self.sock is None:
            self._drop_data()
            self.eof = False
            self.pos = offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    # -- writing -----------------------------------------------------------------

    def write(self, data: bytes) -> int:
        self.sock.sendall(data)
        self.pos += len(data)
        return len(data)

    # -- the end -----------------------------------------------------------------

    def _finish(self) -> None:
        """The data connection ended: the server's reply says whether that
        was the whole file (226) or a failure (426, a lost connection...)."""
        self.eof = True
        if isinstance(self.sock, ssl.SSLSocket):
            self.sock.unwrap()
        self.sock.close()
        self.sock = None
        self.conn.voidresp()

    def _drop_data(self) -> None:
        """Abandon a data transfer half way: rather than untangle ABOR's
        replies, both its connections are closed and a fresh one is opened."""
        if self.sock is None:
            return
        self.sock.close()
        self.sock = None
        self.conn.close()
        self.conn = self.fs.new_connection()

    def close(self) -> None:
        """Finish the transfer; for a write this is when the server says
        whether it kept the file (raises its refusal)."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.sock is not None and "r" not in self.mode:
                self._finish()
        finally:
            if self.sock is not None:
                self.sock.close()
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001 - only the socket is left to drop
                pass

    def discard(self) -> None:
        self.closed = True
        for thing in (self.sock, self.conn):
            try:
                if thing is not None:
                    thing.close()
            except Exception:  # noqa: BLE001 - discarding is best effort
                pass

    def __enter__(self) -> "_FTPTransfer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def settable_times(fs: GatewayFTPFileSystem) -> bool:
    """Whether the server announces a command that sets a file's time
    (FEAT: MFMT, or MDTM, which vsftpd also takes with a time)."""
    with fs.lock:
        try:
            reply = fs.ftp.sendcmd("FEAT")
        except error_perm:
            return False
    features = {line.strip().split(" ", 1)[0].upper() for line in reply.splitlines()[1:]}
    return bool(features & {"MFMT", "MDTM"})


class FTPBackend(Backend):
    def set_mtime(self, path: str, mtime: float) -> bool:
        """MFMT where the server has it (pyftpdlib, ProFTPD), else MDTM with
        a time (vsftpd); False where the server keeps no settable time (a
        server that does not understand either is then known to keep none:
        the mount's ``mtimes`` capability turns false)."""
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(mtime))
        unknown = 0
        try:
            for command in (f"MFMT {stamp} {path}", f"MDTM {stamp} {path}"):
                try:
                    with self._io():
                        with self.fs.lock:
                            self.fs.ftp.sendcmd(command)
                    return True
                except E.BackendError as exc:
                    if exc.retryable:
                        raise
                    if isinstance(exc.__cause__, error_perm) and str(exc.__cause__)[:3] in ("500", "502", "504"):
                        unknown += 1
            if unknown == 2:
                self.capabilities = replace(self.capabilities, mtimes=False)
            return False
        finally:
            self.invalidate(path)

    def _open_continue(self, path: str, offset: int) -> Writer:
        size = self.info(path).size
        if offset != size:
            return super()._open_continue(path, offset)  # refuses with the reason
        with self._io():
            f = self.fs.open(path, "ab")

        def commit(fh: Any) -> None:
            fh.close()
            self.invalidate(path)

        return Writer(f, commit, lambda fh: fh.close(), self._io)
