"""A gateway whose mounts are all local folders loads no storage library
(nor the SDK's HTTP client, nor Alembic on a new job store): they cost
resident memory for the life of the process (issue #28). Checked in a fresh
interpreter that builds the gateway from its config and starts every front
end, as ``gateway serve`` does."""

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import write_config

ROOT = Path(__file__).resolve().parents[2]

#: Loaded only when a mount (or command) needs them.
LAZY = ("fsspec", "s3fs", "botocore", "aiobotocore", "boto3", "sshfs", "webdav4", "httpx", "alembic")

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
for h in reversed(handles):
    h.close()
gw.close()
print(json.dumps(loaded))
"""


def test_local_mounts_load_no_storage_library(tmp_path):
    config = write_config(tmp_path, mounts={"/": f"file://{tmp_path / 'data'}"})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(config)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert {"gateway", "protocols", "backends", "sqlalchemy"} <= loaded  # the gateway did start
    assert not loaded & set(LAZY), f"loaded without a mount that needs them: {sorted(loaded & set(LAZY))}"
    assert (tmp_path / "data" / "made").is_dir()  # the local mount works without fsspec
