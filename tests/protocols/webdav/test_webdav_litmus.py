"""litmus (the WebDAV conformance suite) against /dav: every test of basic,
copymove, props, locks and http passes, and any warning must also show on a
peer (wsgidav's own FilesystemProvider served by cheroot)."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading

import pytest

from conftest import PASSWORDS, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240),
              pytest.mark.skipif(shutil.which("litmus") is None, reason="litmus is not installed")]

SUITES = ("basic", "copymove", "props", "locks", "http")


def _litmus(url: str, cwd) -> tuple[str, dict[str, list[str]]]:
    """Run the suites from ``cwd`` (litmus writes debug.log there):
    (output, {"pass"|"FAIL"|"SKIPPED": ["suite:test", ...], "WARNING": ["suite: text", ...]})."""
    proc = subprocess.run(["litmus", "-k", url, "alice", PASSWORDS["alice"]], cwd=cwd, capture_output=True,
                          text=True, timeout=200, env={"TESTS": " ".join(SUITES), "PATH": "/usr/bin:/bin"})
    out = proc.stdout + proc.stderr
    results: dict[str, list[str]] = {"pass": [], "FAIL": [], "SKIPPED": [], "WARNING": []}
    suite = "?"
    for line in out.splitlines():
        header = re.match(r"-> running `(\w+)'", line)
        if header:
            suite = header.group(1)
        if "WARNING:" in line:
            results["WARNING"].append(f"{suite}: {line.split('WARNING:', 1)[1].strip()}")
        # Without a terminal litmus prints "N. name...." before and again with the verdict.
        verdicts = re.findall(r"\b\d+\.\s+(\w+)\.*\s+(pass|FAIL|SKIPPED)\b", line)
        if verdicts:
            name, verdict = verdicts[-1]
            results[verdict].append(f"{suite}:{name}")
    return out, results


def _peer(tmp_path):
    """wsgidav's FilesystemProvider on cheroot at /dav/, same credentials."""
    from cheroot import wsgi
    from wsgidav.wsgidav_app import WsgiDAVApp

    root = tmp_path / "peer-root"
    root.mkdir()
    app = WsgiDAVApp({
        "provider_mapping": {"/": str(root)}, "mount_path": "/dav",
        "http_authenticator": {"accept_basic": True, "accept_digest": False, "default_to_digest": False},
        "simple_dc": {"user_mapping": {"*": {"alice": {"password": PASSWORDS["alice"]}}}},
        "property_manager": True, "lock_storage": True, "verbose": 0, "logging": {"enable": False},
    })
    server = wsgi.Server(("127.0.0.1", free_port()), wsgi.PathInfoDispatcher({"/dav": app}))
    server.prepare()
    threading.Thread(target=server.serve, daemon=True).start()
    return server


def test_litmus_passes_every_suite(gateway_factory, tmp_path):
    r = gateway_factory(protocols=("http",))
    ours = tmp_path / "ours"
    ours.mkdir()
    out, results = _litmus(f"http://127.0.0.1:{r.port('http')}/dav/", ours)
    for suite in SUITES:
        assert re.search(rf"<- summary for `{suite}': of \d+ tests run: \d+ passed, 0 failed", out), out
    assert not results["FAIL"], out
    assert len(results["pass"]) >= 100, out  # 104 tests in litmus 0.13's five suites
    if results["WARNING"]:
        server = _peer(tmp_path)
        try:
            peer_dir = tmp_path / "peer"
            peer_dir.mkdir()
            _, peer = _litmus(f"http://127.0.0.1:{server.bind_addr[1]}/dav/", peer_dir)
        finally:
            server.stop()
        extra = set(results["WARNING"]) - set(peer["WARNING"])
        assert not extra, f"warnings the peer does not show: {sorted(extra)}\n{out}"
