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


def test_the_units_install_steps_point_the_shipped_config_at_the_state_folder(tmp_path):
    """The sed in the unit's comments, run on etc/gateway.toml as it ships,
    gives a config whose state and "/" mount are under /var/lib/gateway
    (relative paths would be taken from /etc/gateway)."""
    from gateway.config import load_config

    comment = [line.removeprefix("#").strip() for line in UNIT.read_text().splitlines() if line.startswith("#")]
    start = next(i for i, line in enumerate(comment) if line.startswith("sed -i"))
    command = (comment[start].removesuffix("\\") + " " + comment[start + 1]).replace(
        "/etc/gateway/gateway.toml", str(tmp_path / "gateway.toml"))
    shutil.copy(UNIT.parent / "gateway.toml", tmp_path / "gateway.toml")
    subprocess.run(["bash", "-c", command], check=True, timeout=30)
    cfg = load_config(tmp_path / "gateway.toml")
    assert cfg.server.state_dir == Path("/var/lib/gateway/var")
    assert [m.url for m in cfg.mounts] == ["file:///var/lib/gateway/data"]
