"""The FTP command handler: pyftpdlib's, with the gateway's login, reply
codes, backgrounded-operation replies, SITE job commands and HASH, and the
bounds a public server needs: command lines, login grace time, connection
slots counted after login (see server.py), UTF-8 only, and data channels
protected with TLS for users who must use it."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from pyftpdlib.authorizers import AuthenticationFailed
from pyftpdlib.filesystems import FilesystemError
from pyftpdlib.handlers.ftp.control import FTPHandler
from pyftpdlib.handlers.ftp.data import DTPHandler

from gateway import errors as E
from gateway import metrics
from gateway.ops import Outcome
from gateway.types import Session
from protocols.ftp.data import (DataErrorsMixin, GatewayPassiveDTP, NoPassivePort, UploadEndMixin, data_tls_context,
                                tls_data_mixin)
from protocols.ftp.errors import reply_code
from protocols.ftp.fs import GatewayFS

__all__ = ["make_handler"]

_EPOCH = datetime(1970, 1, 1)  # as pyftpdlib: the time string is UTC
log = logging.getLogger("gateway.ftp")


def _mfmt_time(timeval: str) -> datetime:
    """``datetime.strptime(timeval, "%Y%m%d%H%M%S")`` of a 14-character
    string, the same result or ValueError; plain ASCII digits in range are
    read directly (strptime costs ~20 µs; every lftp upload sends one)."""
    if timeval.isascii() and timeval.isdigit():
        y, mo, d, h, mi, sec = (int(timeval[:4]), int(timeval[4:6]), int(timeval[6:8]),
                                int(timeval[8:10]), int(timeval[10:12]), int(timeval[12:14]))
        if 1 <= mo <= 12 and 1 <= d <= 31 and h <= 23 and mi <= 59 and sec <= 59:
            try:
                return datetime(y, mo, d, h, mi, sec)
            except ValueError:
                pass
    return datetime.strptime(timeval, "%Y%m%d%H%M%S")

_HASHES = {"SHA-256": "sha256", "SHA-1": "sha1", "MD5": "md5", "SHA-512": "sha512"}
_SITE = {
    "SITE JOBS": dict(perm=None, auth=True, arg=None, help="Syntax: SITE JOBS (your background jobs)."),
    "SITE JOB": dict(perm=None, auth=True, arg=True, help="Syntax: SITE JOB <id> (one job)."),
    "SITE CANCEL": dict(perm=None, auth=True, arg=True, help="Syntax: SITE CANCEL <id> (a queued job)."),
    "SITE STOP": dict(perm=None, auth=True, arg=True, help="Syntax: SITE STOP <id> (a running job)."),
    "SITE RETRY": dict(perm=None, auth=True, arg=True, help="Syntax: SITE RETRY <id> (admins: run a job again now)."),
    "SITE ABANDON": dict(perm=None, auth=True, arg=True,
                         help="Syntax: SITE ABANDON <id> (admins: give a job up; rolled back before commit)."),
    "SITE CPFR": dict(perm=None, auth=True, arg=True, help="Syntax: SITE CPFR <path> (copy from)."),
    "SITE CPTO": dict(perm=None, auth=True, arg=True, help="Syntax: SITE CPTO <path> (copy to, server-side)."),
    "HASH": dict(perm="r", auth=True, arg=True, help="Syntax: HASH <path> (checksum, see OPTS HASH)."),
    "XSHA256": dict(perm="r", auth=True, arg=True, help="Syntax: XSHA256 <path>."),
    "XSHA1": dict(perm="r", auth=True, arg=True, help="Syntax: XSHA1 <path>."),
    "XMD5": dict(perm="r", auth=True, arg=True, help="Syntax: XMD5 <path>."),
}


#: Commands that open or use a data connection.
_DATA_COMMANDS = frozenset({"PASV", "EPSV", "PORT", "EPRT", "LIST", "NLST", "MLSD", "RETR", "STOR", "STOU", "APPE"})
_PROTECT_DATA = "522 Data connection must be protected: send PBSZ 0 and PROT P first."


class _Verbatim(str):
    """A reply text pyftpdlib sends as it is (it capitalises a login
    failure's text, which lowercases every letter but the first)."""

    def capitalize(self) -> "_Verbatim":
        return self


class _Authorizer:
    """pyftpdlib's authorizer interface over the gateway's Authenticator;
    permissions are the core's business, so every pyftpdlib check passes."""

    def __init__(self, gw: Any) -> None:
        self.gw = gw

    def validate_authentication(self, username: str, password: str, handler: Any) -> None:
        """Log in, or raise pyftpdlib's AuthenticationFailed. On a channel
        without TLS where TLS is offered, a user who must use TLS gets the
        reply a wrong password gets, whether the password is right or not:
        the password is checked and a failure counted either way, so
        neither the reply, its delay nor a later ban tells them apart.
        (Where the server offers no TLS such a user cannot log in.)"""
        remote = f"{handler.remote_ip}:{handler.remote_port}"
        plain = not handler.secure
        try:
            known = self.gw.auth.get(username)
            if plain and known is not None and known.require_tls:
                self.gw.auth.login_password(username, password, remote, protocol="ftp")
                log.warning("FTP login refused: user %r must use TLS (from %s)", username, remote)
                self.gw.auth.record_failure(username, remote, "password without TLS", protocol="ftp")
                raise E.AuthenticationFailed("login incorrect")
            user = self.gw.logins.login(username, password, remote, protocol="ftp")
        except E.LoginBanned as exc:
            raise AuthenticationFailed(str(exc)) from None
        except E.AuthenticationFailed as exc:
            hint = " Accounts that must use TLS: send AUTH TLS first." if plain and handler.offers_tls else ""
            raise AuthenticationFailed(f"{str(exc).capitalize()}.{hint}") from None
        handler.session = Session(user, "ftp", remote)

    def get_home_dir(self, username: str) -> str:
        return "/"

    def has_user(self, username: str) -> bool:
        return True

    def has_perm(self, username: str, perm: str, path: str | None = None) -> bool:
        return True

    def get_perms(self, username: str) -> str:
        return "elradfmwMT"

    def get_msg_login(self, username: str) -> str:
        return "Welcome."

    def get_msg_quit(self, username: str) -> str:
        return "Goodbye."

    def impersonate_user(self, username: str, password: str) -> None:
        pass

    def terminate_impersonation(self, username: str) -> None:
        pass


def _job_line(job: dict) -> str:
    to = f" -> {job['to']}" if job.get("to") else ""
    error = f" ({job['error']})" if job.get("error") and job["state"] != "completed" else ""
    stalled = " STALLED" if job.get("stalled") else ""
    leftovers = f" [left: {job['leftovers']}]" if job.get("leftovers") else ""
    return (f"{job['id']} {job['operation']} {job['from']}{to} {job['state']}{stalled} "
            f"{job['percentageComplete']:.1f}% {job['itemsDone']}/{job['itemsTotal']} items{error}{leftovers}")


class _GatewayMixin:
    """What the gateway adds to pyftpdlib's handler (plain or TLS)."""

    gw: Any = None
    implicit_tls = False
    offers_tls = False
    abstracted_fs = GatewayFS
    passive_dtp = GatewayPassiveDTP
    auth_failed_timeout = 0.5
    banner = "gateway FTP server ready."
    login_timeout = 10
    max_line_bytes = 2048

    def __init__(self, conn: Any, server: Any, ioloop: Any = None) -> None:
        self.session: Session | None = None
        self.since = 0.0  # when the session logged in (monotonic)
        self.pending_code: int | None = None
        self._hash_algo = "SHA-256"
        self._cpfr: str | None = None
        self._discarding = False
        self._login_timer: Any = None
        # The slot the server took for this connection (server.py); set
        # first, as pyftpdlib may close() from its own __init__.
        self._slots = server.slots
        self._slot, server.next_slot = server.next_slot, None
        super().__init__(conn, server, ioloop)  # type: ignore[call-arg]
        self._extra_feats = list(getattr(self, "_extra_feats", [])) + ["XSHA256", "XSHA1", "XMD5"]

    @property
    def secure(self) -> bool:
        return type(self.socket).__name__ == "Connection" and hasattr(self.socket, "get_cipher_name")

    def handle(self) -> None:
        """Greet the client; with implicit TLS only once the handshake is done."""
        if self.implicit_tls:
            self.secure_connection(self.ssl_context)  # type: ignore[attr-defined]
        else:
            super().handle()  # type: ignore[misc]

    def handle_ssl_established(self) -> None:
        super().handle_ssl_established()  # type: ignore[misc]
        if self.implicit_tls and not getattr(self, "_greeted", False):
            self._greeted = True
            super().handle()  # type: ignore[misc]

    # -- timers, in the connection's own thread ------------------------------------
    def add_channel(self, map: Any = None, events: Any = None) -> None:
        """pyftpdlib's threaded server registers the connection with the
        acceptor's loop, then again with its own thread's loop: that is when
        the login deadline starts, and the idle timer moves there too (a
        timer left on the acceptor's loop would fire in the wrong thread)."""
        super().add_channel(map, events)  # type: ignore[misc]
        if self.ioloop is self.server.ioloop or self._login_timer is not None:  # type: ignore[attr-defined]
            return
        if not self.authenticated:  # type: ignore[attr-defined]
            self._login_timer = self.ioloop.call_later(  # type: ignore[attr-defined]
                self.login_timeout, self._login_expired, _errback=self.handle_error)  # type: ignore[attr-defined]
        if self._idler is not None and not self._idler.cancelled:  # type: ignore[has-type]
            self._idler.cancel()  # type: ignore[has-type]
            self._idler = self.ioloop.call_later(  # type: ignore[attr-defined]
                self.timeout, self.handle_timeout, _errback=self.handle_error)  # type: ignore[attr-defined]

    def _login_expired(self) -> None:
        if self.authenticated or self._closed:  # type: ignore[attr-defined]
            return
        metrics.refused("ftp", "login_timeout")
        if getattr(self, "_ssl_accepting", False):  # mid-handshake: no reply can be sent
            self.close()
            return
        self.respond(f"421 Not logged in within {self.login_timeout} s; closing connection.", logfun=log.info)
        self.close_when_done()  # type: ignore[attr-defined]

    # -- logins and connection slots -------------------------------------------------
    def handle_auth_success(self, home: str, password: str, msg_login: str) -> None:
        """A login takes a logged-in slot (server.py); when none is left
        the connection is refused with 421 and closed."""
        refusal = self._slots.promote(self._slot)
        if refusal is not None:
            limit, text = refusal
            metrics.refused("ftp", limit)
            self.session = None
            self.respond(f"421 {text}", logfun=log.info)
            self.close_when_done()  # type: ignore[attr-defined]
            return
        self.since = time.monotonic()
        self.gw.ops.logged_in(self.session, "password")
        if self._login_timer is not None and not self._login_timer.cancelled:
            self._login_timer.cancel()
        super().handle_auth_success(home, password, msg_login)  # type: ignore[misc]
        metrics.session_opened("ftp")

    def handle_auth_failed(self, msg: str, password: str) -> None:
        super().handle_auth_failed(_Verbatim(msg[:1].upper() + msg[1:]), password)  # type: ignore[misc]

    def on_logout(self, username: str) -> None:
        if self.session is not None:
            metrics.session_closed("ftp")
            self.gw.ops.logged_out(self.session, time.monotonic() - self.since)
            self.session = None

    def close(self) -> None:
        super().close()  # type: ignore[misc]
        self._slots.release(self._slot)
        if self._login_timer is not None and not self._login_timer.cancelled:
            self._login_timer.cancel()
        self.on_logout("")  # a client that just drops the connection never sends QUIT

    # -- command lines: bounded, UTF-8 only -------------------------------------------------
    def readable(self) -> bool:
        return not self._discarding and super().readable()  # type: ignore[misc]

    def collect_incoming_data(self, data: bytes) -> None:
        """Buffer a command line; one longer than ``max_line_bytes`` is
        refused whole and the connection closed, so that nothing after it
        (even in the same packet) is taken for a command."""
        if self._discarding:
            return
        self._in_buffer.append(data)  # type: ignore[attr-defined]
        self._in_buffer_len += len(data)  # type: ignore[attr-defined]
        if self._in_buffer_len > self.max_line_bytes:  # type: ignore[attr-defined]
            self._discarding = True
            self._in_buffer, self._in_buffer_len = [], 0
            metrics.refused("ftp", "line_too_long")
            self.respond(f"500 Command line longer than {self.max_line_bytes} bytes; closing connection.",
                         logfun=log.info)
            self.close_when_done()  # type: ignore[attr-defined]

    def found_terminator(self) -> None:
        """A command line that is not UTF-8 is refused (501), as SFTP does,
        rather than read with U+FFFD in place of the bad bytes."""
        if self._discarding:
            return
        try:
            b"".join(self._in_buffer).decode("utf-8")  # type: ignore[attr-defined]
        except UnicodeDecodeError:
            self._in_buffer, self._in_buffer_len = [], 0
            if self._idler is not None and not self._idler.cancelled:
                self._idler.reset()
            metrics.refused("ftp", "invalid_utf8")
            self.respond("501 Command is not valid UTF-8: names must be sent as UTF-8 (RFC 2640).")
            return
        super().found_terminator()  # type: ignore[misc]

    # -- data connections ------------------------------------------------------------------
    def data_must_be_protected(self) -> bool:
        """Whether this session's user must use TLS, so on data too."""
        return self.session is not None and self.session.user.require_tls

    def process_command(self, cmd: str, *args: Any, **kwargs: Any) -> None:
        if cmd in _DATA_COMMANDS and self.data_must_be_protected():
            dc = self.data_channel  # type: ignore[attr-defined]
            if not getattr(self, "_prot", False) or (dc is not None and not getattr(dc, "_ssl_requested", False)):
                metrics.refused("ftp", "prot_p_required")
                self.respond(_PROTECT_DATA)
                return
        super().process_command(cmd, *args, **kwargs)  # type: ignore[misc]

    def _make_epasv(self, extmode: bool = False) -> None:
        try:
            super()._make_epasv(extmode)  # type: ignore[misc]
        except NoPassivePort:
            metrics.refused("ftp", "passive_ports")
            self.respond("425 No passive data port is free; try again in a moment.", logfun=log.info)

    def respond(self, resp: str, logfun: Any = log.debug) -> None:
        """Every error reply passes here: the code noted by the filesystem
        (from the one error table) replaces pyftpdlib's generic 550."""
        if self.pending_code and resp[:3] in ("550", "553", "450", "451"):
            resp = f"{self.pending_code}{resp[3:]}"
        self.pending_code = None
        super().respond(resp, logfun)  # type: ignore[misc]

    def _core(self, fn, *args, **kwargs) -> Any:
        """A core call from a command handler; errors become replies."""
        try:
            return fn(*args, **kwargs)
        except E.GatewayError as exc:
            self.respond(f"{reply_code(exc)} {exc}")
            return None

    @staticmethod
    def _text(outcome: Outcome | None, done: str, verb: str) -> str:
        if outcome is not None and outcome.backgrounded:
            return f"250 {verb} accepted; running in background as job {outcome.job_id}"
        return f"250 {done}"

    def _fs_change(self, call, done: str, verb: str) -> Any:
        try:
            outcome = call()
        except FilesystemError as err:
            self.respond(f"550 {err}.")
            return None
        self.respond(self._text(outcome, done, verb))
        return outcome

    def ftp_MFMT(self, path: str, timeval: str) -> Any:
        """pyftpdlib's MFMT, its replies in the same order (time string's
        length, "not retrievable" for what is missing or a folder, the time
        string parsed, then the change's own refusals), with one core call
        where pyftpdlib asks isfile, utime and getmtime (three look-ups of
        the path, and the core's own)."""
        line = self.fs.fs2ftp(path)
        invalid = "550 Invalid time format; expected: YYYYMMDDHHMMSS."
        if len(timeval) != len("YYYYMMDDHHMMSS"):
            self.respond(invalid)
            return None
        try:
            secs = (_mfmt_time(timeval) - _EPOCH).total_seconds()
        except ValueError:
            self.respond(invalid if self.fs.isfile(path) else f"550 {line} is not retrievable")
            return None
        found: list[Any] = []
        try:
            entry = self.fs.set_file_mtime(path, secs, found.append)
        except FilesystemError as err:
            if not found or found[0].is_dir:
                if found:
                    self.pending_code = None
                self.respond(f"550 {line} is not retrievable")
            else:
                self.respond(f"550 {err}.")
            return None
        timefunc = time.gmtime if self.use_gmt_times else time.localtime
        try:
            lmt = time.strftime("%Y%m%d%H%M%S", timefunc(entry.mtime or time.time()))
        except ValueError:
            self.respond("550 Can't determine file's last modification time.")
            return None
        self.respond(f"213 Modify={lmt}; {line}.")
        return (lmt, path)

    # -- backgroundable commands -------------------------------------------------
    def ftp_RNTO(self, path: str) -> Any:
        if not self._rnfr:
            self.respond("503 Bad sequence of commands: use RNFR first.")
            return None
        src, self._rnfr = self._rnfr, None
        if self._fs_change(lambda: self.fs.rename(src, path), "Renaming ok.", "RNTO") is not None:
            return (src, path)
        return None

    def ftp_DELE(self, path: str) -> Any:
        return self._fs_change(lambda: self.fs.remove(path), "File removed.", "DELE") and path

    def ftp_RMD(self, path: str) -> Any:
        if path == "/":
            self.respond("550 Can't remove root directory.")
            return None
        return self._fs_change(lambda: self.fs.rmdir(path), "Directory removed.", "RMD") and path

    def ftp_SITE_CPFR(self, arg: str) -> None:
        path = self.fs.ftp2fs(arg)
        if self._core(self.gw.ops.stat, self.session, path) is not None:
            self._cpfr = path
            self.respond("350 File or directory exists, ready for destination name.")

    def ftp_SITE_CPTO(self, arg: str) -> None:
        if not self._cpfr:
            self.respond("503 Bad sequence of commands: use SITE CPFR first.")
            return
        src, self._cpfr = self._cpfr, None
        self._fs_change(lambda: self.fs.copy(src, self.fs.ftp2fs(arg)), "Copy successful.", "CPTO")

    # -- jobs ------------------------------------------------------------------------
    def _multiline(self, code: int, title: str, lines: list[str]) -> None:
        self.push(f"{code}-{title}\r\n" + "".join(f" {line}\r\n" for line in lines))
        self.respond(f"{code} End.")

    def ftp_SITE_JOBS(self, arg: str) -> None:
        ops, s = self.gw.ops, self.session
        jobs = [_job_line(ops.public_job(s, j)) for j in ops.list_jobs(s, limit=100)]
        self._multiline(200, f"{len(jobs)} job(s):", jobs or ["(none)"])

    def ftp_SITE_JOB(self, arg: str) -> None:
        job = self._core(self.gw.ops.get_job, self.session, arg.strip())
        if job is not None:
            self.respond(f"200 {_job_line(self.gw.ops.public_job(self.session, job))}")

    def _job_action(self, call, arg: str) -> None:
        """The job's line as the action left it (a stop or cancel replies
        once what the job wrote is removed, or says what is left)."""
        job = self._core(call, self.session, arg.strip())
        if job is not None:
            self.respond(f"200 {_job_line(self.gw.ops.public_job(self.session, job))}")

    def ftp_SITE_CANCEL(self, arg: str) -> None:
        self._job_action(self.gw.ops.cancel_job, arg)

    def ftp_SITE_STOP(self, arg: str) -> None:
        self._job_action(self.gw.ops.stop_job, arg)

    def ftp_SITE_RETRY(self, arg: str) -> None:
        self._job_action(self.gw.ops.retry_job, arg)

    def ftp_SITE_ABANDON(self, arg: str) -> None:
        self._job_action(self.gw.ops.abandon_job, arg)

    # -- checksums ---------------------------------------------------------------------
    def _hash(self, path: str, algo: str) -> str | None:
        return self._core(self.gw.ops.hash, self.session, path, _HASHES[algo])

    def ftp_HASH(self, path: str) -> None:
        digest = self._hash(path, self._hash_algo)
        if digest is not None:
            size = self.gw.ops.stat(self.session, path).size
            self.respond(f"213 {self._hash_algo} 0-{size} {digest} {path}")

    def ftp_XSHA256(self, path: str) -> None:
        self._x_hash(path, "SHA-256")

    def ftp_XSHA1(self, path: str) -> None:
        self._x_hash(path, "SHA-1")

    def ftp_XMD5(self, path: str) -> None:
        self._x_hash(path, "MD5")

    def _x_hash(self, path: str, algo: str) -> None:
        digest = self._hash(path, algo)
        if digest is not None:
            self.respond(f"250 {digest}")

    def ftp_OPTS(self, line: str) -> None:
        cmd, _, arg = line.strip().partition(" ")
        if cmd.upper() != "HASH":
            super().ftp_OPTS(line)  # type: ignore[misc]
            return
        if not arg:
            self.respond(f"200 {self._hash_algo}")
        elif arg.upper() in _HASHES:
            self._hash_algo = arg.upper()
            self.respond(f"200 {self._hash_algo}")
        else:
            self.respond(f"501 Unknown algorithm; use one of {', '.join(_HASHES)}.")

    def ftp_FEAT(self, line: str) -> None:
        algos = ";".join(a + ("*" if a == self._hash_algo else "") for a in _HASHES)
        self._extra_feats = [f for f in self._extra_feats if not f.startswith("HASH ")] + [f"HASH {algos}"]
        super().ftp_FEAT(line)  # type: ignore[misc]


class _DataChannel(DataErrorsMixin):
    """A data connection: failures answered on the control channel, and
    none in clear for a user who must use TLS (whatever PROT said when the
    transfer was asked for, the connection is what counts)."""

    def __init__(self, sock: Any, cmd_channel: Any) -> None:
        super().__init__(sock, cmd_channel)  # type: ignore[call-arg]
        if not self.connected:  # gone (reset) before it was accepted: pyftpdlib sent no reply
            self._no_connection(cmd_channel)
            return
        if cmd_channel.data_must_be_protected() and not getattr(self, "_ssl_requested", False):
            metrics.refused("ftp", "prot_p_required")
            self._resp = (_PROTECT_DATA, log.info)
            self.close()  # type: ignore[attr-defined]

    @staticmethod
    def _no_connection(cmd_channel: Any) -> None:
        """The transfer waiting for this connection, if any, fails with 425
        (its upload is aborted) rather than waiting for a reply forever."""
        queued = cmd_channel._in_dtp_queue or cmd_channel._out_dtp_queue
        if queued is None:
            return
        file = queued[0] if cmd_channel._in_dtp_queue else queued[2]
        cmd_channel._in_dtp_queue = cmd_channel._out_dtp_queue = None
        if file is not None:
            file.close()
        cmd_channel.respond("425 Data connection was closed before the transfer began; transfer aborted.",
                            logfun=log.info)


#: Bytes per send (per sendfile call for a local-disk download) on a data
#: connection: pyftpdlib's 64 KiB took one event-loop round per 64 KiB.
DATA_BLOCK = 1 << 20


def _tls_classes() -> tuple[type, type, type, Any]:
    """pyftpdlib's FTPS control and data handlers, the gateway's mixin for
    protected data connections, and pyOpenSSL's module. pyOpenSSL is
    imported only here, for a TLS listener (see ``protocols.ftp``), and
    handed to ``pyftpdlib.utils``, which tells TLS sockets apart by it."""
    from OpenSSL import SSL
    from pyftpdlib import utils
    from pyftpdlib.handlers.ftps.control import TLS_FTPHandler
    from pyftpdlib.handlers.ftps.data import TLS_DTPHandler

    utils.SSL = SSL
    return TLS_FTPHandler, TLS_DTPHandler, tls_data_mixin(SSL), SSL


def make_handler(gw: Any, cfg: Any) -> type:
    """The handler class for ``cfg.ftp`` (TLS when explicit or implicit)."""
    c = cfg.ftp
    tls = c.tls != "off"
    base, data, upload_end, SSL = (_tls_classes() if tls else (FTPHandler, DTPHandler, UploadEndMixin, None))
    attrs: dict[str, Any] = {
        "gw": gw,
        "authorizer": _Authorizer(gw),
        "proto_cmds": {**base.proto_cmds, **_SITE},
        "passive_ports": list(c.passive_range),
        "masquerade_address": c.masquerade_address,
        "timeout": c.idle_timeout_s,
        "use_sendfile": True,  # only taken for real OS files (local-disk downloads)
        "implicit_tls": c.tls == "implicit",
        "encoding": "utf-8",
        "dtp_handler": type("GatewayDTPHandler", (upload_end, _DataChannel, data),
                            {"ac_out_buffer_size": DATA_BLOCK}),
        "offers_tls": tls,
        "login_timeout": c.login_timeout_s,
        "max_line_bytes": c.max_line_bytes,
    }
    if tls:
        from gateway.tls import ensure_certificate

        cert, key = ensure_certificate(cfg.server.state_dir, c.certfile, c.keyfile)
        attrs.update(certfile=str(cert), keyfile=str(key), ssl_context=None,
                     data_ssl_context=data_tls_context(SSL, str(cert), str(key)))
    return type("GatewayFTPHandler", (_GatewayMixin, base), attrs)
