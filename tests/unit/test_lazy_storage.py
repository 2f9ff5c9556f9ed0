"""A gateway whose mounts are all local folders loads no storage library
(nor the SDK's HTTP client, nor Alembic on a new job store), no pyOpenSSL
for plain FTP, and until an SSH client connects neither asyncssh nor
cryptography: they cost resident memory for the life of the process (issue
#28). Checked in a fresh interpreter that builds the gateway from its config
and starts every front end, as ``gateway serve`` does; the first SFTP client
is then served as any other."""

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import PASSWORDS, write_config

ROOT = Path(__file__).resolve().parents[2]

#: Loaded only when a mount (or command, or an SSH client, or FTPS) needs them.
LAZY = ("fsspec", "s3fs", "botocore", "aiobotocore", "boto3", "sshfs", "webdav4", "httpx", "alembic",
        "asyncssh", "cryptography", "OpenSSL")

SCRIPT = """
import json, sys
import gateway.cli  # what `gateway serve` imports first (its parser registers every command)
from gateway.app import Gateway
from gateway.config import load_config
import protocols.ftp, protocols.sftp, protocols.http

cfg = load_config(sys.argv[1])
gw = Gateway.from_config(cfg).start()
handles = [m.serve(gw, cfg) for m in (protocols.ftp, protocols.sftp, protocols.http)]
from gateway.types import Session
gw.ops.mkdir(Session(gw.auth.get("alice"), "test"), "/made")
loaded = sorted({name.split(".")[0] for name in sys.modules})

import asyncio, asyncssh  # the first SSH client: the listener starts asyncssh for it


async def first_sftp_client():
    async with asyncssh.connect("127.0.0.1", handles[1].address[1], username="alice", password=sys.argv[2],
                                known_hosts=None, client_keys=None, agent_path=None) as conn:
        async with conn.start_sftp_client() as sftp:
            return sorted(await sftp.listdir("/"))
listed = asyncio.run(first_sftp_client())
for h in reversed(handles):
    h.close()
gw.close()
print(json.dumps([loaded, listed]))
"""


def test_local_mounts_load_no_storage_library(tmp_path):
    config = write_config(tmp_path, mounts={"/": f"file://{tmp_path / 'data'}"})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(config), PASSWORDS["alice"]], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded_list, listed = json.loads(out.stdout.strip().splitlines()[-1])
    loaded = set(loaded_list)
    assert {"gateway", "protocols", "backends", "sqlalchemy"} <= loaded  # the gateway did start
    assert not loaded & set(LAZY), f"loaded without a mount that needs them: {sorted(loaded & set(LAZY))}"
    assert (tmp_path / "data" / "made").is_dir()  # the local mount works without fsspec
    assert "made" in listed  # the first SSH client was served once asyncssh was loaded for it
    assert (tmp_path / "var" / "ssh_host_ed25519_key").exists()  # a first start: its host key made without asyncssh
