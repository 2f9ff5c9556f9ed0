"""The standard clients, driven the same way against every server: lftp for
FTP, OpenSSH ``sftp`` for SFTP, curl for WebDAV (one process per workload,
one connection where the client allows). Paths are relative to the login
folder, so every server's root looks the same.

``rename_reply`` times one rename round trip with a protocol library client
(ftplib, asyncssh, http.client) after login, for the "time to the client's
reply" rows where a CLI's start-up and login would swamp the number."""

from __future__ import annotations

import asyncio
import base64
import http.client
import re
import subprocess
import tempfile
import time
from ftplib import FTP
from pathlib import Path
from typing import Callable

from peers import Endpoint

__all__ = ["ClientError", "Unsupported", "client_for", "rename_reply"]


class ClientError(RuntimeError):
    pass


class Unsupported(ClientError):
    """The server does not offer this operation (a table cell says n/a)."""


def _check(argv: list[str], timeout: float, stdin: str | None = None) -> str:
    try:
        r = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ClientError(f"{Path(argv[0]).name} timed out after {timeout:.0f} s") from None
    if r.returncode != 0:
        tail = " | ".join((r.stderr or r.stdout).strip().splitlines()[-3:])
        if re.search(r"not support|unsupported|not implemented|not understood|unknown (site )?command|"
                     r"405 Method", tail, re.I):
            raise Unsupported(tail)
        raise ClientError(f"{Path(argv[0]).name} exit {r.returncode}: {tail}")
    return r.stdout


class _Client:
    def __init__(self, ep: Endpoint, key: Path | None, timeout: float) -> None:
        self.ep = ep
        self.key = key
        self.timeout = timeout


class Lftp(_Client):
    def _run(self, commands: list[str]) -> str:
        ep = self.ep
        script = ["set cmd:fail-exit yes", "set net:max-retries 1", "set net:timeout 60",
                  "set ftp:ssl-allow no", "set ftp:passive-mode yes", "set xfer:clobber yes",
                  f"open -u {ep.user},{ep.password} -p {ep.port} 127.0.0.1", *commands, "bye"]
        with tempfile.NamedTemporaryFile("w", suffix=".lftp") as f:
            f.write("\n".join(script) + "\n")
            f.flush()
            return _check(["lftp", "-f", f.name], self.timeout)

    def put(self, local: Path, remote: str) -> None:
        self._run([f"put {local} -o {remote}"])

    def get(self, remote: str, local: Path) -> None:
        self._run([f"get {remote} -o {local}"])

    def put_tree(self, local: Path, remote: str) -> None:
        cmds = [f"mkdir {remote}"]
        for d in sorted(p.name for p in local.iterdir()):
            cmds += [f"mkdir {remote}/{d}", f"mput -O {remote}/{d} {local}/{d}/*"]
        self._run(cmds)

    def get_tree(self, remote: str, local: Path) -> None:
        self._run([f"mirror --no-perms --no-umask {remote} {local}"])

    def list(self, remote: str) -> str:
        return self._run([f"ls {remote}"])

    @staticmethod
    def entries(listed: str) -> int:
        return sum(1 for line in listed.splitlines() if line.strip() and not line.startswith("total "))

    def rename(self, src: str, dst: str) -> None:
        self._run([f"mv {src} {dst}"])

    def delete_tree(self, remote: str) -> None:
        self._run([f"rm -r {remote}"])

    def copy(self, src: str, dst: str) -> None:
        # `quote` succeeds whatever the reply; lftp prints it on stdout.
        out = self._run([f"quote SITE CPFR {src}", f"quote SITE CPTO {dst}"])
        bad = re.search(r"^[45]\d\d .*", out, re.M)
        if bad:
            raise (Unsupported if bad.group(0).startswith("50") else ClientError)(bad.group(0))


class Sftp(_Client):
    def _run(self, commands: list[str]) -> str:
        ep = self.ep
        argv = ["sftp", "-q", "-b", "-", "-i", str(self.key), "-P", str(ep.port),
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", f"{ep.user}@127.0.0.1"]
        return _check(argv, self.timeout, stdin="\n".join(commands) + "\n")

    def put(self, local: Path, remote: str) -> None:
        self._run([f"put {local} {remote}"])

    def get(self, remote: str, local: Path) -> None:
        self._run([f"get {remote} {local}"])

    def put_tree(self, local: Path, remote: str) -> None:
        cmds = [f"mkdir {remote}"]
        for d in sorted(p.name for p in local.iterdir()):
            cmds += [f"mkdir {remote}/{d}", f"put {local}/{d}/* {remote}/{d}/"]
        self._run(cmds)

    def get_tree(self, remote: str, local: Path) -> None:
        self._run([f"get -r {remote} {local}"])

    def list(self, remote: str) -> str:
        return self._run([f"ls -l {remote}"])

    @staticmethod
    def entries(listed: str) -> int:
        return sum(1 for line in listed.splitlines() if line.strip() and not line.startswith("sftp>"))

    def rename(self, src: str, dst: str) -> None:
        self._run([f"rename {src} {dst}"])

    def delete_tree(self, remote: str) -> None:
        self._run([f"rm {remote}/*", f"rmdir {remote}"])

    def copy(self, src: str, dst: str) -> None:
        self._run([f"cp {src} {dst}"])


_RESPONSE = re.compile(r"<(?:[\w-]+:)?response\b.*?</(?:[\w-]+:)?response>", re.S | re.I)
_HREF = re.compile(r"<(?:[\w-]+:)?href>\s*([^<]+?)\s*</", re.I)
_COLLECTION = re.compile(r"<(?:[\w-]+:)?collection\b[^>]*/>", re.I)


class CurlDav(_Client):
    def url(self, path: str, folder: bool = False) -> str:
        return f"http://127.0.0.1:{self.ep.port}{self.ep.url_prefix}/{path.strip('/')}" + ("/" if folder else "")

    def _curl(self, args: list[str], config: list[str] | None = None) -> str:
        argv = ["curl", "-sS", "--fail", "--globoff", "-u", f"{self.ep.user}:{self.ep.password}"] + args
        if config is None:
            return _check(argv, self.timeout)
        with tempfile.NamedTemporaryFile("w", suffix=".curl") as f:
            f.write("\n".join(config) + "\n")
            f.flush()
            return _check(argv + ["--fail-early", "-K", f.name], self.timeout)

    def put(self, local: Path, remote: str) -> None:
        self._curl(["-T", str(local), self.url(remote)])

    def get(self, remote: str, local: Path) -> None:
        self._curl(["-o", str(local), self.url(remote)])

    def put_tree(self, local: Path, remote: str) -> None:
        dirs = sorted(p.name for p in local.iterdir())
        self._curl(["-X", "MKCOL"], [f'url = "{self.url(remote, True)}"'] +
                   [f'url = "{self.url(f"{remote}/{d}", True)}"' for d in dirs])
        config = []
        for d in dirs:
            for f in sorted((local / d).iterdir()):
                config += [f'upload-file = "{f}"', f'url = "{self.url(f"{remote}/{d}/{f.name}")}"']
        self._curl([], config)

    def _propfind(self, folders: list[str]) -> list[tuple[str, bool]]:
        """(href, is folder) of every member of ``folders`` (Depth: 1)."""
        return self._members(self._propfind_reply(folders))

    def _propfind_reply(self, folders: list[str]) -> str:
        return self._curl(["-X", "PROPFIND", "-H", "Depth: 1", "-H", "Content-Type: application/xml"],
                          [f'url = "{self.url(f, True)}"' for f in folders])

    @staticmethod
    def _members(out: str) -> list[tuple[str, bool]]:
        members = []
        for block in _RESPONSE.findall(out):
            href = _HREF.search(block)
            if href:
                members.append((href.group(1), bool(_COLLECTION.search(block))))
        return members

    def get_tree(self, remote: str, local: Path) -> None:
        prefix = f"{self.ep.url_prefix}/{remote.strip('/')}/"
        tops = [h for h, is_dir in self._propfind([remote]) if is_dir and _path(h).rstrip("/") + "/" != prefix]
        subdirs = [_path(h).rstrip("/")[len(self.ep.url_prefix) + 1:] for h in tops]
        files = [_path(h) for h, is_dir in self._propfind(subdirs) if not is_dir]
        config = ["create-dirs"]
        for href in files:
            rel = href[len(prefix):]
            config += [f'url = "http://127.0.0.1:{self.ep.port}{href}"', f'output = "{local / rel}"']
        self._curl([], config)

    def list(self, remote: str) -> str:
        return self._propfind_reply([remote])

    @classmethod
    def entries(cls, listed: str) -> int:
        return len(cls._members(listed)) - 1  # the folder itself is the first response

    def rename(self, src: str, dst: str) -> None:
        self._curl(["-X", "MOVE", "-H", f"Destination: {self.url(dst, True)}", self.url(src, True)])

    def delete_tree(self, remote: str) -> None:
        self._curl(["-X", "DELETE", self.url(remote, True)])

    def copy(self, src: str, dst: str) -> None:
        self._curl(["-X", "COPY", "-H", f"Destination: {self.url(dst)}", self.url(src)])


def _path(href: str) -> str:
    """The path part of an href (absolute URL or path)."""
    return re.sub(r"^https?://[^/]+", "", href)


def client_for(ep: Endpoint, key: Path, timeout: float) -> Lftp | Sftp | CurlDav:
    return {"ftp": Lftp, "sftp": Sftp, "webdav": CurlDav}[ep.protocol](ep, key, timeout)


# -- one timed rename round trip ------------------------------------------------------------


def rename_reply(ep: Endpoint, key: Path, src: str, dst: str, timeout: float) -> float:
    """Seconds from sending a folder rename to its reply, after login.
    Raises ClientError."""
    try:
        return {"ftp": _ftp_rename, "sftp": _sftp_rename, "webdav": _dav_rename}[ep.protocol](
            ep, key, src, dst, timeout)
    except ClientError:
        raise
    except Exception as e:  # noqa: BLE001 - ftplib, asyncssh and http.client each raise their own
        raise ClientError(f"{type(e).__name__}: {e}") from None


def _timed(call: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def _ftp_rename(ep: Endpoint, key: Path, src: str, dst: str, timeout: float) -> float:
    with FTP() as ftp:
        ftp.connect("127.0.0.1", ep.port, timeout=timeout)
        ftp.login(ep.user, ep.password)
        return _timed(lambda: ftp.rename(src, dst))


def _sftp_rename(ep: Endpoint, key: Path, src: str, dst: str, timeout: float) -> float:
    import asyncssh

    async def go() -> float:
        async with asyncssh.connect("127.0.0.1", ep.port, username=ep.user, client_keys=[str(key)],
                                    known_hosts=None) as conn:
            async with conn.start_sftp_client() as sftp:
                t0 = time.perf_counter()
                await asyncio.wait_for(sftp.rename(src, dst), timeout)
                return time.perf_counter() - t0

    return asyncio.run(go())


def _dav_rename(ep: Endpoint, key: Path, src: str, dst: str, timeout: float) -> float:
    auth = base64.b64encode(f"{ep.user}:{ep.password}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", ep.port, timeout=timeout)
    headers = {"Authorization": f"Basic {auth}"}
    try:
        conn.request("OPTIONS", f"{ep.url_prefix}/", headers=headers)  # connect and authenticate first
        conn.getresponse().read()
        dest = f"http://127.0.0.1:{ep.port}{ep.url_prefix}/{dst}/"
        t0 = time.perf_counter()
        conn.request("MOVE", f"{ep.url_prefix}/{src}/", headers={**headers, "Destination": dest})
        resp = conn.getresponse()
        resp.read()
        elapsed = time.perf_counter() - t0
    finally:
        conn.close()
    if resp.status not in (201, 202, 204):
        raise ClientError(f"MOVE answered {resp.status}")
    return elapsed
