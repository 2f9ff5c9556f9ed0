"""The README tells the truth: its install command works on a fresh virtual
environment, it lists every command of the CLI, names the API's addresses
and links only to files in the repository."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gateway.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(lang: str = "") -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _command_line_section() -> str:
    return README.split("## Command line", 1)[1].split("\n## ", 1)[0]


def _commands() -> list[str]:
    """Every ``gateway ...`` command the parser knows, with its actions."""
    out = []
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, parser in sub.choices.items():
        nested = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        choices = [a.choices for a in parser._actions if a.dest == "action" and a.choices]
        if nested:
            out += [f"gateway {name} {action}" for action in nested[0].choices]
        elif choices:
            out += [f"gateway {name} {action}" for action in choices[0]]
        else:
            out.append(f"gateway {name}")
    return out


def test_the_command_line_section_lists_every_command():
    section = _command_line_section()
    listed = set()
    for line in section.splitlines():
        m = re.match(r"gateway (\S+)(?: ([a-z|]+))?", line.strip())
        if m:
            listed.add(f"gateway {m[1]}")
            listed |= {f"gateway {m[1]} {a}" for a in (m[2] or "").split("|") if a}
    missing = [c for c in _commands() if c not in listed]
    assert not missing, f"README's command line section lacks {missing}"
    assert {"gateway cp", "gateway mv", "gateway rm", "gateway jobs list", "gateway token create"} <= listed


def test_every_link_is_a_file_of_the_repository():
    links = re.findall(r"\]\(([^)#]+)\)", README)
    assert "docs/DESIGN.md" in links
    for link in links:
        assert not re.match(r"[a-z]+:", link), link
        assert (ROOT / link).is_file(), link
    assert "shared notes" not in README


def test_the_api_addresses_are_named():
    for address in ("/api/v1/openapi.json", "/api/v1/docs", "/api/v1/"):
        assert f"`{address}`" in README or f"{address}`" in README, address


def _install_line() -> str:
    lines = [line for block in _blocks("sh") for line in block.splitlines() if "venv" in line]
    assert len(lines) == 1, lines
    return lines[0]


def test_the_install_command_uses_a_project_venv():
    line = _install_line()
    assert line == "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/gateway serve"
    assert "/.venv/" in (ROOT / ".gitignore").read_text()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_install_command_verbatim_in_a_fresh_checkout(tmp_path):
    """The README's line, run as written in a copy of the repository with
    the system interpreter and no site packages, gives a serving gateway.
    Only the copy's etc/gateway.toml changes: free ports, so the test never
    meets another gateway on 2121/2222/8080."""
    if shutil.which("git") is None:
        pytest.skip("git is needed to list the repository's files")
    checkout = tmp_path / "checkout"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, checkout / name)
    ports = {s: _free_port() for s in ("ftp", "sftp", "http")}
    config = (checkout / "etc" / "gateway.toml").read_text()
    for section, default in (("ftp", 2121), ("sftp", 2222), ("http", 8080)):
        config = config.replace(f"port = {default}\n", f"port = {ports[section]}\n", 1)
    config = config.replace('passive_ports = "60000-60100"', f'passive_ports = "{ports["ftp"] + 1}-{ports["ftp"] + 1}"')
    (checkout / "etc" / "gateway.toml").write_text(config)
    # The system interpreter, not this test's environment.
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    base = Path(getattr(sys, "_base_executable", sys.executable)).parent
    env["PATH"] = os.pathsep.join([str(base)] + [p for p in env.get("PATH", "").split(os.pathsep)
                                                  if not p.startswith(str(ROOT))])
    proc = subprocess.Popen(["bash", "-c", _install_line()], cwd=checkout, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 800
        while True:
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            try:
                r = httpx.get(f"http://127.0.0.1:{ports['http']}/api/v1/", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the gateway never answered"
                time.sleep(1)
        assert r.status_code == 200 and r.json()["openapi"] == "/api/v1/openapi.json"
        probe = subprocess.run([str(checkout / ".venv" / "bin" / "python"), "-c",
                                "import gateway, sys; print(gateway.__file__, sys.prefix != sys.base_prefix)"],
                               capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
        assert probe.stdout.split() == [str(checkout / "gateway" / "__init__.py"), "True"]
    finally:
        if proc.poll() is None:  # SIGTERM to the gateway (bash's child, unless bash exec'd it)
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
            pids = [int(p) for p in children.read_text().split()] if children.exists() else []
            for pid in pids or [proc.pid]:
                os.kill(pid, signal.SIGTERM)
        try:
            out = proc.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out = proc.communicate()[0]
    assert proc.returncode == 0, out[-3000:]
    assert "created user admin with password:" in out
