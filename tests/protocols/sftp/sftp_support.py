"""Clients for the SFTP front end's tests: OpenSSH's sftp/scp/ssh (password
through sshpass, or a key) and asyncssh."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import AsyncIterator

import asyncssh

from conftest import PASSWORDS

# No user config, no known_hosts, no agent: only what each call asks for.
SSH_OPTS = ["-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", "-o", "IdentityAgent=none"]


def _auth(user: str, key: Path | None) -> tuple[list[str], list[str]]:
    if key is not None:
        return [], ["-o", "BatchMode=yes", "-o", "PreferredAuthentications=publickey", "-o", "IdentitiesOnly=yes",
                    "-i", str(key)]
    # BatchMode=no must come before sftp's -b, which turns it on (and password auth off).
    return ["sshpass", "-p", PASSWORDS[user]], ["-o", "BatchMode=no", "-o", "PreferredAuthentications=password",
                                                "-o", "PubkeyAuthentication=no"]


def _run(cmd: list[str], cwd: Path, stdin: str | None, check: bool) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, input=stdin, cwd=cwd, capture_output=True, text=True, timeout=60)
    if check:
        assert p.returncode == 0, f"{cmd[:3]} exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def sftp_batch(port: int, user: str, commands: list[str], cwd: Path, *, key: Path | None = None,
               check: bool = True, verbose: bool = False, options: tuple[str, ...] = ()
               ) -> subprocess.CompletedProcess:
    """OpenSSH ``sftp -b -`` running ``commands`` (it stops at the first
    failure); ``options`` go before the destination (``-R 256``, say)."""
    prefix, opts = _auth(user, key)
    cmd = [*prefix, "sftp", *SSH_OPTS, *opts, *(["-v"] if verbose else []), *options, "-P", str(port), "-b", "-",
           f"{user}@127.0.0.1"]
    return _run(cmd, cwd, "\n".join(commands) + "\n", check)


def scp(port: int, user: str, *args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """OpenSSH ``scp``; remote paths are written ``@:/path``."""
    prefix, opts = _auth(user, None)
    args = tuple(a.replace("@:", f"{user}@127.0.0.1:", 1) if a.startswith("@:") else a for a in args)
    return _run([*prefix, "scp", *SSH_OPTS, *opts, "-P", str(port), *args], cwd, None, check)


def ssh(port: int, user: str, command: str, cwd: Path, *, check: bool = False) -> subprocess.CompletedProcess:
    prefix, opts = _auth(user, None)
    return _run([*prefix, "ssh", *SSH_OPTS, *opts, "-p", str(port), f"{user}@127.0.0.1", command], cwd, None, check)


@contextlib.asynccontextmanager
async def connect(port: int, user: str = "alice", password: str | None = None
                  ) -> AsyncIterator[tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient]]:
    """An asyncssh connection and its SFTP client, password auth only."""
    async with asyncssh.connect("127.0.0.1", port, username=user, password=password or PASSWORDS[user],
                                known_hosts=None, client_keys=None, agent_path=None,
                                preferred_auth="password") as conn:
        async with conn.start_sftp_client() as sftp:
            yield conn, sftp
