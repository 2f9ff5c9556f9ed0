"""The README tells the truth: its install command works on a fresh virtual
environment, it lists every command of the CLI, names the API's addresses
and links only to files in the repository."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from conftest import free_port
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


def _interpreter(version: str) -> str | None:
    """An interpreter of Python ``version`` on this machine (PATH, then pyenv's folders)."""
    found = shutil.which(f"python{version}")
    if found and subprocess.run([found, "--version"], capture_output=True).returncode == 0:
        return found
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for candidate in sorted(pyenv.glob(f"{version}.*/bin/python{version}"), reverse=True):
        return str(candidate)
    return None


def _copy_checkout(to: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, to / name)


def _use_the_gateway(ports: dict[str, int], password: str) -> None:
    """A round a user would make: upload over WebDAV, list and download over
    FTP and SFTP, a move over REST."""
    import asyncio
    import ftplib
    import io

    import asyncssh

    auth = ("admin", password)
    base = f"http://127.0.0.1:{ports['http']}"
    assert httpx.put(f"{base}/dav/hello.txt", content=b"hello", auth=auth, timeout=30).status_code in (200, 201, 204)
    with ftplib.FTP() as ftp:
        ftp.connect("127.0.0.1", ports["ftp"], timeout=30)
        ftp.login(*auth)
        assert "hello.txt" in ftp.nlst("/")
        got = io.BytesIO()
        ftp.retrbinary("RETR /hello.txt", got.write)
        assert got.getvalue() == b"hello"

    async def sftp() -> bytes:
        async with asyncssh.connect("127.0.0.1", ports["sftp"], username="admin", password=password,
                                    known_hosts=None) as conn:
            async with conn.start_sftp_client() as client:
                async with client.open("/hello.txt", "rb") as f:
                    return await f.read()

    assert asyncio.run(sftp()) == b"hello"
    moved = httpx.post(f"{base}/api/v1/fs/move", json={"from": "/hello.txt", "to": "/moved.txt"},
                       auth=auth, timeout=30)
    assert moved.status_code == 201, moved.text
    assert httpx.get(f"{base}/dav/moved.txt", auth=auth, timeout=30).content == b"hello"


PYTHONS = ["python3", "3.12", "3.13"]


def test_the_supported_pythons_are_declared_and_each_tested():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [c.rsplit(" :: ", 1)[1] for c in project["classifiers"]
                if c.startswith("Programming Language :: Python :: 3.")]
    assert project["requires-python"] == ">=3.11" and declared == ["3.11", "3.12", "3.13"]
    assert set(declared) - {"3.11"} <= set(PYTHONS)  # 3.11: Debian 12's python3, the line as written


@dataclass
class _Install:
    """The README's install line running in a fresh checkout copy."""

    python: str
    checkout: Path
    ports: dict[str, int]
    env: dict[str, str]
    proc: subprocess.Popen
    lines: list[str] = field(default_factory=list)

    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        proc = self.proc
        if proc.poll() is None:  # SIGTERM to the gateway (bash's child, unless bash exec'd it)
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
            pids = [int(p) for p in children.read_text().split()] if children.exists() else []
            for pid in pids or [proc.pid]:
                os.kill(pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return proc.returncode


def _start_install(tmp: Path, python: str) -> _Install | str:
    """Start the README's line (``python3`` replaced by Python ``python``
    unless it is "python3") in a copy of the repository; the reason to skip
    when that Python is not on this machine. Only the copy's
    etc/gateway.toml changes: free ports, so it never meets another gateway
    on 2121/2222/8080."""
    line = _install_line()
    if python != "python3":
        interpreter = _interpreter(python)
        if interpreter is None:
            return f"no Python {python} on this machine"
        line = line.replace("python3 -m venv", f"{interpreter} -m venv", 1)
    checkout = tmp / "checkout"
    _copy_checkout(checkout)
    ports = {s: free_port() for s in ("ftp", "sftp", "http")}
    config = (checkout / "etc" / "gateway.toml").read_text()
    for section, default in (("ftp", 2121), ("sftp", 2222), ("http", 8080)):
        config = config.replace(f"port = {default}\n", f"port = {ports[section]}\n", 1)
    # Twenty passive ports (one alone may be held by any other program's
    # connection: 425), above the front ends' ports (free_port stays below 32000).
    lo = random.randrange(40000, 59000)
    config = config.replace('passive_ports = "60000-60100"', f'passive_ports = "{lo}-{lo + 19}"')
    (checkout / "etc" / "gateway.toml").write_text(config)
    # The system interpreter, not this test's environment.
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    base = Path(getattr(sys, "_base_executable", sys.executable)).parent
    env["PATH"] = os.pathsep.join([str(base)] + [p for p in env.get("PATH", "").split(os.pathsep)
                                                  if not p.startswith(str(ROOT))])
    proc = subprocess.Popen(["bash", "-c", line], cwd=checkout, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    install = _Install(python, checkout, ports, env, proc)
    threading.Thread(target=lambda: install.lines.extend(proc.stdout), daemon=True).start()
    return install


@pytest.fixture(scope="module")
def installs(tmp_path_factory):
    """Every supported Python's install, started at once (they overlap:
    most of an install is waiting for downloads and unpacking)."""
    if shutil.which("git") is None:
        pytest.skip("git is needed to list the repository's files")
    started = {python: _start_install(tmp_path_factory.mktemp(f"install-{python}"), python) for python in PYTHONS}
    yield started
    for install in started.values():
        if isinstance(install, _Install):
            install.stop()


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("python", PYTHONS)
def test_the_install_command_verbatim_in_a_fresh_checkout(installs, tmp_path, python):
    """The README's line, run as written in a copy of the repository with
    the system interpreter and no site packages, gives a serving gateway
    that FTP, SFTP, WebDAV and REST clients use; so does the same line with
    ``python3`` replaced by each other supported Python (found on PATH or
    in pyenv's versions; one missing is a warning and a skip, a failure
    with GATEWAY_TEST_ALL_PYTHONS=1)."""
    install = installs[python]
    if isinstance(install, str):  # said aloud: a warning in the summary, or a failure when all are wanted
        message = f"{install}: the README's install line is NOT tested with it (pyenv install {python})"
        if os.environ.get("GATEWAY_TEST_ALL_PYTHONS") == "1":
            pytest.fail(message)
        warnings.warn(pytest.PytestWarning(message))
        pytest.skip(message)
    proc, ports = install.proc, install.ports
    deadline = time.monotonic() + 800
    while True:
        assert proc.poll() is None, install.output()[-3000:]
        try:
            r = httpx.get(f"http://127.0.0.1:{ports['http']}/api/v1/", timeout=5)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the gateway never answered"
            time.sleep(1)
    assert r.status_code == 200 and r.json()["openapi"] == "/api/v1/openapi.json"
    probe = subprocess.run([str(install.checkout / ".venv" / "bin" / "python"), "-c",
                            "import gateway, sys; print(gateway.__file__, sys.prefix != sys.base_prefix, "
                            "'%d.%d' % sys.version_info[:2])"],
                           capture_output=True, text=True, env=install.env, timeout=60, cwd=tmp_path)
    found = probe.stdout.split()
    assert found[:2] == [str(install.checkout / "gateway" / "__init__.py"), "True"]
    assert found[2] == python if python != "python3" else found[2] in ("3.11", "3.12", "3.13")
    # The password is printed once every front end listens.
    marker = "created user admin with password:"
    while not any(marker in x for x in install.lines):
        assert time.monotonic() < deadline and proc.poll() is None, install.output()[-3000:]
        time.sleep(0.2)
    password = next(x for x in install.lines if marker in x).split(":", 1)[1].strip()
    _use_the_gateway(ports, password)
    assert install.stop() == 0, install.output()[-3000:]


def _shell_commands() -> list[str]:
    """Every command line of the README's ``sh`` blocks (comments and line
    continuations folded)."""
    out = []
    for block in _blocks("sh"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #", 1)[0].strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def test_every_shell_command_of_the_readme_runs():
    """The install line and scripts/test are run as written (the install
    test above; CI runs scripts/test); every other command of the README's
    sh blocks is the project's own script, run here with its arguments
    checked (``--help`` after them: argparse parses everything first)."""
    commands = _shell_commands()
    assert _install_line() in commands and "scripts/test" in commands
    scripts = [c for c in commands if c != _install_line() and not c.startswith("scripts/test")]
    assert scripts, commands
    for command in scripts:
        words = command.split()
        if words[0] == "python3":
            words = words[1:]
        assert (ROOT / words[0]).is_file(), command
        out = subprocess.run([sys.executable, str(ROOT / words[0]), *words[1:], "--help"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "usage:" in out.stdout, (command, out.stderr[-2000:])


def test_every_gateway_command_of_the_readme_runs():
    """Each ``gateway`` command the command-line section lists answers
    ``--help`` (what each does is tested in tests/unit/test_cli.py,
    tests/api/test_sdk_cli.py and tests/cluster)."""
    import contextlib
    import io

    from gateway.cli import main

    for command in _commands():
        shown = io.StringIO()
        with contextlib.redirect_stdout(shown):
            code = main([*command.split()[1:], "--help"])
        assert code == 0 and "usage:" in shown.getvalue(), command
