"""etc/gateway.service: the example systemd unit parses and keeps its hardening."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "etc" / "gateway.service"


def _keys() -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            current[key] = value
    return sections


def test_the_unit_runs_the_gateway_unprivileged_and_hardened():
    service = _keys()["Service"]
    assert service["User"] == "gateway" and service["StateDirectory"] == "gateway"
    assert service["WorkingDirectory"] == "/var/lib/gateway"
    assert service["ExecStart"].endswith("gateway serve --config /etc/gateway/gateway.toml")
    assert service["Restart"] == "on-failure" and service["RestartPreventExitStatus"] == "2"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert service[key] == "yes", key
    assert service["ProtectSystem"] == "strict"
    assert _keys()["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    # verify wants ExecStart's program to exist: point it at this Python.
    unit = tmp_path / "gateway.service"
    unit.write_text(UNIT.read_text().replace("/opt/gateway/.venv/bin/gateway", sys.executable))
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "gateway.service" not in out.stderr, out.stderr  # an unknown key or a bad value is only a warning
