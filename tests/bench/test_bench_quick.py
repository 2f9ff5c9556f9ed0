"""Keeps scripts/bench/run working: a --smoke run over FTP (gateway, vsftpd,
rclone serve ftp) with tiny sizes, checked through its JSON and table."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "scripts" / "bench" / "run"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(180),
    pytest.mark.skipif(os.geteuid() != 0, reason="the peers need root (vsftpd's system account)"),
    pytest.mark.skipif(not (shutil.which("lftp") and shutil.which("vsftpd") or os.path.exists("/usr/sbin/vsftpd")),
                       reason="lftp and vsftpd are installed by scripts/test"),
]

WORKLOADS = {"download_big", "upload_big", "upload_small", "download_small", "list", "rename_folder",
             "delete_folder", "copy_big"}


def test_smoke_run_over_ftp(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, str(RUN), "--smoke", "--only", "ftp", "--json", str(out)],
                       capture_output=True, text=True, timeout=170)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "| workload | protocol | server |" in r.stdout
    doc = json.loads(out.read_text())
    assert doc["mode"] == "smoke" and doc["machine"]["nproc"] >= 1
    cells = {(c["workload"], c["server"]): c for c in doc["results"]}
    assert {w for w, _ in cells} == WORKLOADS
    for (workload, server), cell in cells.items():
        assert cell["protocol"] == "ftp"
        if cell["status"] == "ok":
            assert 0 < cell["done_s"]["min"] <= cell["done_s"]["median"] <= cell["done_s"]["max"]
            assert cell["reply_s"]["median"] <= cell["done_s"]["median"] + 1e-6
            assert cell["peak_rss_bytes"] > 1 << 20
        else:
            # A peer without server-side copy, or a front end not built yet: said, never silently empty.
            assert cell["status"].startswith(("not supported", "not available", "this rclone")), cell
    # The reference peer, and pyftpdlib serving a folder bare, run every
    # workload but the copy FTP has no command for.
    for server in ("vsftpd", "pyftpdlib"):
        for workload in WORKLOADS - {"copy_big"}:
            assert cells[(workload, server)]["status"] == "ok", cells[(workload, server)]
        assert cells[("copy_big", server)]["status"].startswith("not supported")
    assert any("| pyftpdlib |" in line and "× library |" in line for line in r.stdout.splitlines())
    # Nothing it started is left running (its own folder: a benchmark may run beside the tests).
    tmp = re.search(r"run in (\S+gateway-bench-\w+)", r.stderr).group(1)
    left = subprocess.run(["pgrep", "-f", f"{tmp}/.*(vsftpd|gateway.toml|pyftpdlib)"], capture_output=True, text=True)
    assert left.stdout.strip() == ""
