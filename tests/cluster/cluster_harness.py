"""Several real ``gateway serve`` processes on one PostgreSQL database.

``cluster`` (a fixture; ``module_cluster`` shares one per module) gives a
:class:`Cluster`: ``cluster.start(3)`` writes one config per node (own
ports, own state folder, node id ``a``, ``b``, ``c``...; one shared host
key; the same local folders mounted at ``/`` and, 20 ms a call and 200 kB/s,
at ``/slow``; with ``start_s3()`` first, moto's S3 at ``/s3``), starts the
nodes at once (so their schema migration races) and waits for each node's
``/readyz``. A node can be SIGKILLed, paused (SIGSTOP), stopped and started
again; ``cluster.gateway(...)`` runs the CLI on a node's config;
``cluster.haproxy()`` puts Debian's HAProxy in front, configured from
``etc/haproxy.cfg.example`` with the ports in its environment. Each cluster
has its own database, dropped afterwards.

(Not a ``conftest.py``: conftest modules outside packages are all imported
as ``conftest``, and a second one would shadow ``tests/conftest.py`` for
every test module that imports from it.)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import PASSWORDS, free_port, write_config  # noqa: E402
from pg import create_database, drop_database  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HAPROXY_EXAMPLE = ROOT / "etc" / "haproxy.cfg.example"
NAMES = "abcdefgh"
#: HAProxy binds here: another loopback address than the nodes', so it can
#: take the nodes' FTP passive port ranges too.
LB_ADDR = "127.0.0.2"

__all__ = ["Cluster", "Node", "cluster", "module_cluster", "pg_database", "create_database", "drop_database",
           "PASSWORDS", "LB_ADDR"]


@pytest.fixture
def pg_database():
    """A fresh database (see :func:`create_database`), dropped after the test."""
    db = create_database()
    yield db
    drop_database(db[0])


@dataclass
class Node:
    """One ``gateway serve`` process; its config, ports and log file."""

    name: str
    dir: Path
    config: Path
    ftp_port: int
    sftp_port: int
    http_port: int
    passive: tuple[int, int]
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log(self) -> Path:
        return self.dir / "serve.log"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def spawn(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(self.config)],
                                         cwd=self.dir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc is None or self.proc.poll() is not None:
                raise AssertionError(f"node {self.name} exited ({self.proc and self.proc.returncode}):\n"
                                     + self.log_text()[-3000:])
            if time.monotonic() > deadline:
                raise AssertionError(f"node {self.name} not ready after {timeout} s:\n" + self.log_text()[-3000:])
            time.sleep(0.1)

    def start(self, timeout: float = 30.0) -> "Node":
        self.spawn()
        self.wait_ready(timeout)
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, no hand-over; its jobs stall."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def terminate(self) -> None:
        """SIGTERM (a clean stop), without waiting."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def client(self, user: str = "alice", **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=(user, PASSWORDS[user]), timeout=30, **kw)


class Cluster:
    def __init__(self, tmp: Path, db: tuple[str, str]) -> None:
        self.tmp = tmp
        self.db_url, self.store_url = db
        self.nodes: list[Node] = []
        self.data = tmp / "data"
        self.slow = tmp / "slowdata"
        self.data.mkdir()
        self.slow.mkdir()
        self.host_key = tmp / "ssh_host_ed25519_key"
        self._haproxy: subprocess.Popen | None = None
        self.lb: dict[str, int] = {}
        self.s3: Any = None

    def start_s3(self) -> Any:
        """moto's S3 in this process (tests/backends/servers.py), mounted at
        ``/s3`` (no listing cache) by every node added from now on."""
        sys.path.insert(0, str(ROOT / "tests" / "backends"))
        from servers import S3

        self.s3 = S3(self.tmp / "s3").start()
        return self.s3

    def mounts(self, latency_ms: int = 20, bytes_per_s: int = 200_000) -> dict[str, Any]:
        """``/``: the shared local folder; ``/slow``: another one, each call
        ``latency_ms`` late and file data at ``bytes_per_s`` (one stream at
        a time between local folders), so jobs last long enough to watch."""
        out: dict[str, Any] = {
            "/": f"file://{self.data}",
            "/slow": (f"slow::file://{self.slow}", {"slow": {"latency_ms": latency_ms, "bytes_per_s": bytes_per_s}})}
        if self.s3 is not None:
            out["/s3"] = (self.s3.url_for("cluster"), self.s3.options, {"cache_ttl_s": 0})
        return out

    def add(self, *, mounts: dict[str, Any] | None = None, sections: dict[str, dict] | None = None,
            stall_after_s: float = 3.0) -> Node:
        """Write the config of one more node (not started)."""
        name = NAMES[len(self.nodes)]
        if not self.host_key.exists():  # one host key for all: clients behind a balancer see one server
            import asyncssh

            asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(self.host_key))
        nd = self.tmp / f"node-{name}"
        nd.mkdir()
        merged: dict[str, dict] = {
            "server": {"node_id": name, "state_dir": str(nd / "var")},
            "sftp": {"host_keys": [str(self.host_key)]},
            "http": {"metrics": "public"},
            "jobs": {"store": self.store_url, "heartbeat_s": 0.25, "stall_after_s": stall_after_s,
                     "retry_backoff_ms": 50},
            "logging": {"level": "INFO"},
        }
        for section, values in (sections or {}).items():
            merged.setdefault(section, {}).update(values)
        path = write_config(nd, mounts=mounts or self.mounts(), sections=merged)
        from gateway.config import load_config

        cfg = load_config(path)
        node = Node(name, nd, path, cfg.ftp.port, cfg.sftp.port, cfg.http.port,
                    (cfg.ftp.passive_range.start, cfg.ftp.passive_range.stop - 1))
        self.nodes.append(node)
        return node

    def start(self, n: int = 3, **kw: Any) -> list[Node]:
        """Write ``n`` more nodes' configs, start them all at once, wait until each is ready."""
        new = [self.add(**kw) for _ in range(n)]
        for node in new:
            node.spawn()
        for node in new:
            node.wait_ready()
        return new

    def __getitem__(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def gateway(self, *args: str, node: Node | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run ``gateway ARGS --config <node's config>`` (default: the first node's)."""
        node = node or self.nodes[0]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.run([sys.executable, "-m", "gateway.cli", *args, "--config", str(node.config)],
                              cwd=node.dir, env=env, capture_output=True, text=True, timeout=timeout)

    # ---------------------------------------------------------------- haproxy

    def haproxy(self) -> dict[str, int]:
        """Start HAProxy from etc/haproxy.cfg.example in front of the first
        three nodes; returns its ports {"http": ..., "sftp": ..., "ftp": ...}."""
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        a, b, c = self.nodes[:3]
        self.lb = {"http": free_port(), "sftp": free_port(), "ftp": free_port()}
        env = {**os.environ, "LB_ADDR": LB_ADDR, "LB_HTTP_PORT": str(self.lb["http"]),
               "LB_SFTP_PORT": str(self.lb["sftp"]), "LB_FTP_PORT": str(self.lb["ftp"]),
               "LB_PIDFILE": str(self.tmp / "haproxy.pid")}
        for node, tag in ((a, "A"), (b, "B"), (c, "C")):
            env.update({f"NODE_{tag}_ADDR": "127.0.0.1", f"NODE_{tag}_HTTP": str(node.http_port),
                        f"NODE_{tag}_SFTP": str(node.sftp_port), f"NODE_{tag}_FTP": str(node.ftp_port),
                        f"NODE_{tag}_PASV": f"{node.passive[0]}-{node.passive[1]}"})
        check = subprocess.run([binary, "-c", "-f", str(HAPROXY_EXAMPLE)], env=env, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self._haproxy = subprocess.Popen([binary, "-db", "-f", str(HAPROXY_EXAMPLE)], env=env,
                                         stdout=open(self.tmp / "haproxy.log", "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((LB_ADDR, self.lb["http"]), 1).close()
                break
            except OSError:
                assert self._haproxy.poll() is None, (self.tmp / "haproxy.log").read_text()
                assert time.monotonic() < deadline, "haproxy does not listen"
                time.sleep(0.05)
        return self.lb

    def close(self) -> None:
        for node in self.nodes:  # tests stop nodes cleanly where that matters; teardown need not wait
            node.kill()
        if self.s3 is not None:
            self.s3.stop()
        if self._haproxy is not None:
            self._haproxy.terminate()
            try:
                self._haproxy.wait(5)
            except subprocess.TimeoutExpired:
                self._haproxy.kill()


@pytest.fixture
def cluster(tmp_path, pg_database):
    """A :class:`Cluster` on a fresh database; every node and HAProxy are
    stopped after the test."""
    c = Cluster(tmp_path, pg_database)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def module_cluster(tmp_path_factory):
    """One :class:`Cluster` (not started) for every test of a module, on
    its own database: starting nodes is the slow part. Tests that share it
    use their own paths and leave every node running (or start it again)."""
    db = create_database()
    c = Cluster(tmp_path_factory.mktemp("cluster"), db)
    try:
        yield c
    finally:
        c.close()
        drop_database(db[0])
