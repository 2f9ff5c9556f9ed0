"""The FTP command handler: pyftpdlib's, with the gateway's login, reply
codes, backgrounded-operation replies, SITE job commands and HASH."""

from __future__ import annotations

import logging
from typing import Any

from pyftpdlib.authorizers import AuthenticationFailed
from pyftpdlib.filesystems import FilesystemError
from pyftpdlib.handlers import DTPHandler, FTPHandler, TLS_DTPHandler, TLS_FTPHandler

from gateway import errors as E
from gateway import metrics
from gateway.ops import Outcome
from gateway.types import Session
from protocols.ftp.errors import reply_code
from protocols.ftp.fs import GatewayFS

__all__ = ["make_handler"]

log = logging.getLogger("gateway.ftp")

_HASHES = {"SHA-256": "sha256", "SHA-1": "sha1", "MD5": "md5", "SHA-512": "sha512"}
_SITE = {
    "SITE JOBS": dict(perm=None, auth=True, arg=None, help="Syntax: SITE JOBS (your background jobs)."),
    "SITE JOB": dict(perm=None, auth=True, arg=True, help="Syntax: SITE JOB <id> (one job)."),
    "SITE CANCEL": dict(perm=None, auth=True, arg=True, help="Syntax: SITE CANCEL <id> (a queued job)."),
    "SITE STOP": dict(perm=None, auth=True, arg=True, help="Syntax: SITE STOP <id> (a running job)."),
    "SITE CPFR": dict(perm=None, auth=True, arg=True, help="Syntax: SITE CPFR <path> (copy from)."),
    "SITE CPTO": dict(perm=None, auth=True, arg=True, help="Syntax: SITE CPTO <path> (copy to, server-side)."),
    "HASH": dict(perm="r", auth=True, arg=True, help="Syntax: HASH <path> (checksum, see OPTS HASH)."),
    "XSHA256": dict(perm="r", auth=True, arg=True, help="Syntax: XSHA256 <path>."),
    "XSHA1": dict(perm="r", auth=True, arg=True, help="Syntax: XSHA1 <path>."),
    "XMD5": dict(perm="r", auth=True, arg=True, help="Syntax: XMD5 <path>."),
}


class _Authorizer:
    """pyftpdlib's authorizer interface over the gateway's Authenticator;
    permissions are the core's business, so every pyftpdlib check passes."""

    def __init__(self, gw: Any) -> None:
        self.gw = gw

    def validate_authentication(self, username: str, password: str, handler: Any) -> None:
        remote = f"{handler.remote_ip}:{handler.remote_port}"
        try:
            user = self.gw.logins.login(username, password, remote)
        except E.AuthenticationFailed as exc:
            raise AuthenticationFailed(str(exc)) from None
        if user.require_tls and not handler.secure:
            raise AuthenticationFailed(f"user {username!r} must use TLS: send AUTH TLS first")
        handler.session = Session(user, "ftp", remote)
        metrics.session_opened("ftp")

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
    return (f"{job['id']} {job['operation']} {job['from']}{to} {job['state']} "
            f"{job['percentageComplete']:.1f}% {job['itemsDone']}/{job['itemsTotal']} items{error}")


class _GatewayMixin:
    """What the gateway adds to pyftpdlib's handler (plain or TLS)."""

    gw: Any = None
    implicit_tls = False
    abstracted_fs = GatewayFS
    auth_failed_timeout = 0.5
    banner = "gateway FTP server ready."

    def __init__(self, conn: Any, server: Any, ioloop: Any = None) -> None:
        self.session: Session | None = None
        self.pending_code: int | None = None
        self._hash_algo = "SHA-256"
        self._cpfr: str | None = None
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

    def on_logout(self, username: str) -> None:
        if self.session is not None:
            metrics.session_closed("ftp")
            self.session = None

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

    def _job_action(self, call, arg: str, verb: str) -> None:
        job = self._core(call, self.session, arg.strip())
        if job is not None:
            self.respond(f"200 Job {job.id} {verb}.")

    def ftp_SITE_CANCEL(self, arg: str) -> None:
        self._job_action(self.gw.ops.cancel_job, arg, "cancelled")

    def ftp_SITE_STOP(self, arg: str) -> None:
        self._job_action(self.gw.ops.stop_job, arg, "is stopping; what it wrote is being removed")

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


#: Bytes per send (per sendfile call for a local-disk download) on a data
#: connection: pyftpdlib's 64 KiB took one event-loop round per 64 KiB.
DATA_BLOCK = 1 << 20


def make_handler(gw: Any, cfg: Any) -> type:
    """The handler class for ``cfg.ftp`` (TLS when explicit or implicit)."""
    c = cfg.ftp
    tls = c.tls != "off"
    base = TLS_FTPHandler if tls else FTPHandler
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
        "dtp_handler": type("GatewayDTPHandler", (TLS_DTPHandler if tls else DTPHandler,),
                            {"ac_out_buffer_size": DATA_BLOCK}),
    }
    if tls:
        from gateway.tls import ensure_certificate

        cert, key = ensure_certificate(cfg.server.state_dir, c.certfile, c.keyfile)
        attrs.update(certfile=str(cert), keyfile=str(key), ssl_context=None)
    return type("GatewayFTPHandler", (_GatewayMixin, base), attrs)
