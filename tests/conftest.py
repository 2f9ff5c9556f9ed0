"""Shared harness: a real gateway built from a real config file, with the
front ends a test asks for listening on free 127.0.0.1 ports."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import pytest

from gateway.auth import hash_password
from gateway.types import Session

PASSWORDS = {"alice": "alice-secret-pw", "bob": "bob-secret-pw", "admin": "admin-secret-pw"}
_HASHES: dict[str, str] = {}


#: Where test servers listen: below the kernel's ephemeral ports (32768 and
#: up, /proc/sys/net/ipv4/ip_local_port_range), which every outgoing
#: connection takes from. A port the kernel picked (bind to 0) is in that
#: range, so between the pick and the server's bind any client socket of any
#: test (the descriptor test opens 200) could take it: "address already in
#: use" at start, seen in full runs. 20000-20010 is a passive range a CLI test
#: names; RabbitMQ's 25672 is in use on this machine kind.
_PORTS = range(21000, 32000)
_HANDED: set[int] = set()


def free_port() -> int:
    """A 127.0.0.1 port nothing listens on now, not handed out before by this
    process, and each xdist worker's from its own residue class, so two
    workers never pick the same one."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    for _ in range(1000):
        port = random.choice(_PORTS)
        if port % count != index % count or port in _HANDED or port == 25672:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED.add(port)
        return port
    raise RuntimeError(f"no free port in {_PORTS}")


def _hash(name: str) -> str:
    if name not in _HASHES:
        _HASHES[name] = hash_password(PASSWORDS[name])
    return _HASHES[name]


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, what: str = "the condition", *,
               step: float = 0.05) -> T:
    """Call ``predicate`` every ``step`` seconds until it returns something
    truthy, and return that. Raises AssertionError naming ``what`` once
    ``timeout`` seconds have passed (the predicate is asked once more at
    the deadline, so a slow check still gets its last chance)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(step)


def stop_process(proc: subprocess.Popen | None) -> None:
    """SIGTERM a server process still running and wait for it (30 s, then
    SIGKILL)."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    """Wait until 127.0.0.1:``port`` accepts a connection. Raises
    AssertionError when ``proc`` (the server's process) exits first, or
    after ``timeout`` seconds."""

    def up() -> bool:
        assert proc is None or proc.poll() is None, f"the server exited ({proc.returncode})"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    wait_until(up, timeout, f"port {port}")


PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
#: A locale collation that ignores punctuation first (ICU "shifted", as
#: glibc's en_US does): '/a/x' sorts after '/a0' there, so a subtree range
#: not made in byte order would miss rows.
PG_LOCALE = "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'und-u-ka-shifted' LOCALE 'C.UTF-8'"


@contextlib.contextmanager
def pg_database(options: str = "") -> Iterator[str]:
    """The SQLAlchemy URL of a new database on this machine's PostgreSQL
    (127.0.0.1:5432, trust), made with CREATE DATABASE ``options``, dropped
    afterwards with its connections forced out."""
    import sqlalchemy as sa

    name = f"gw_test_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{name}" {options}')
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            with admin.connect() as c:
                c.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@contextlib.contextmanager
def pg_job_store() -> Iterator[Any]:
    """A JobStore on a new PostgreSQL database (:func:`pg_database`) with the
    collation above, dropped afterwards."""
    from gateway.jobs.store import JobStore

    with pg_database(PG_LOCALE) as url:
        store = JobStore(url)
        try:
            yield store
        finally:
            store.close()


def unique_memory(prefix: str = "t") -> str:
    """A memory:// root no other test shares (fsspec's memory store is global)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def moto_s3():
    """A fresh bucket on a moto S3 server of its own: (mount url, s3fs
    options, the bucket's fsspec file system). The mount's root is
    ``root`` inside the bucket."""
    import fsspec
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {"endpoint_url": f"http://{host}:{port}", "key": "AKIDTEST", "secret": "test-secret"}
    bucket = f"t-{uuid.uuid4().hex[:8]}"  # moto's servers in one process share their buckets
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
    fs.mkdir(bucket)
    try:
        yield f"s3://{bucket}/root", options, fs
    finally:
        server.stop()


def storage_at_root(request: Any, kind: str) -> dict[str, Any] | None:
    """The ``mounts`` of a gateway whose / is ``kind``: "local" (disk, keeps
    times), "slow" (a memory store behind the ``slow`` wrapper: keeps no
    times, the gateway refuses them) or "s3" (a bucket of :func:`moto_s3`)."""
    if kind == "local":
        return None
    if kind == "slow":
        return {"/": (f"slow::memory://{unique_memory()}", {"slow": {"latency_ms": 5}})}
    return {"/": request.getfixturevalue("moto_s3")[:2]}


def local_tree(root: Path) -> dict[str, tuple[str, int]]:
    """{relative path: (sha256, mtime second)} of the files below ``root``;
    dot names (sync clients' journals, logs and lock files) left out."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            out[rel.as_posix()] = (hashlib.sha256(p.read_bytes()).hexdigest(), int(p.stat().st_mtime))
    return out


def core_tree(ops: Any, session: Session, folder: str = "/") -> dict[str, tuple[str, int | None]]:
    """The same of the gateway's ``folder``, read through the core whatever
    the storage (the time None where it shows none)."""
    out: dict[str, tuple[str, int | None]] = {}
    top = folder.rstrip("/")

    def walk(path: str) -> None:
        for e in ops.list(session, path or "/"):
            child = f"{path}/{e.name}"
            if e.name.startswith("."):
                continue
            if e.is_dir:
                walk(child)
                continue
            f, _ = ops.open_read(session, child)
            with f:
                h = hashlib.sha256()
                while block := f.read(1 << 20):
                    h.update(block)
            out[child[len(top) + 1:]] = (h.hexdigest(), None if e.mtime is None else int(e.mtime))

    walk(top)
    return out


@dataclass
class Running:
    gw: Any
    cfg: Any
    tmp: Path
    handles: dict[str, Any] = field(default_factory=dict)

    @property
    def ops(self):
        return self.gw.ops

    def port(self, protocol: str) -> int:
        return getattr(self.cfg, protocol).port

    def session(self, user: str = "alice", protocol: str = "test") -> Session:
        return Session(self.gw.auth.get(user), protocol)

    @property
    def data(self) -> Path:
        """The local folder mounted at /."""
        return self.tmp / "data"

    def close(self) -> None:
        for h in reversed(list(self.handles.values())):
            try:
                h.close()
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass
        self.gw.close()


def write_config(tmp: Path, *, mounts: dict[str, Any] | None = None, budget_ms: int = 2000,
                 sections: dict[str, dict] | None = None, users: dict[str, dict] | None = None) -> Path:
    """Write a complete gateway.toml for a test and return its path.

    ``mounts``: {virtual path: url, (url, options) or (url, options, mount
    fields such as cache_ttl_s)}; default: local disk at
    ``/`` and a 20 ms ``slow::memory`` mount at ``/slow``. ``users``: name →
    extra user fields (alice, bob and admin always exist)."""
    ports = {proto: free_port() for proto in ("ftp", "sftp", "http")}
    lo = random.randrange(40000, 59000)  # above every free_port(): the config refuses a range holding one
    base: dict[str, dict] = {
        "server": {"host": "127.0.0.1", "state_dir": str(tmp / "var")},
        "ftp": {"port": ports["ftp"], "passive_ports": f"{lo}-{lo + 60}"},
        "sftp": {"port": ports["sftp"]},
        "http": {"port": ports["http"]},
        "policy": {"sync_budget_ms": budget_ms},
        "jobs": {"heartbeat_s": 0.25, "retry_backoff_ms": 50},
    }
    for name, values in (sections or {}).items():
        base.setdefault(name, {}).update(values)
    if mounts is None:
        mounts = {"/": f"file://{tmp / 'data'}",
                  "/slow": (f"slow::memory://{unique_memory()}", {"slow": {"latency_ms": 20}})}
    lines = []
    for name, values in base.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml(v)}" for k, v in values.items() if not isinstance(v, dict)]
        for k, v in values.items():
            if isinstance(v, dict):
                lines.append(f"[{name}.{k}]")
                lines += [f"{kk} = {_toml(vv)}" for kk, vv in v.items()]
    for path, spec in mounts.items():
        # url, (url, options) or (url, options, {timeout_s, retries, cache_ttl_s})
        url, options, fields = (spec, {}, {}) if isinstance(spec, str) else (*spec, {})[:3]
        lines += ["[[mounts]]", f"path = {_toml(path)}", f"url = {_toml(url)}"]
        lines += [f"{k} = {_toml(v)}" for k, v in fields.items()]
        if options:
            lines.append(f"options = {_toml(options)}")
    all_users = {"alice": {}, "bob": {}, "admin": {"admin": True}}
    for name, extra in (users or {}).items():
        all_users.setdefault(name, {}).update(extra)
    for name, extra in all_users.items():
        lines += ["[[users]]", f"name = {_toml(name)}"]
        if name in PASSWORDS and "password_hash" not in extra:
            lines.append(f"password_hash = {_toml(_hash(name))}")
        lines += [f"{k} = {_toml(v)}" for k, v in extra.items()]
    (tmp / "data").mkdir(exist_ok=True)
    path = tmp / "gateway.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def start_gateway(tmp: Path, protocols: tuple[str, ...] = (), **config) -> Running:
    """Build the gateway from a written config and start ``protocols``
    (any of "ftp", "sftp", "http")."""
    from gateway.app import Gateway
    from gateway.config import load_config

    cfg = load_config(write_config(tmp, **config))
    gw = Gateway.from_config(cfg).start()
    running = Running(gw, cfg, tmp)
    try:
        for name in protocols:
            module = __import__(f"protocols.{name}", fromlist=["serve"])
            running.handles[name] = module.serve(gw, cfg)
    except BaseException:
        running.close()
        raise
    return running


@pytest.fixture
def gateway_factory(tmp_path):
    """``start(protocols=(...), mounts=..., budget_ms=..., sections=..., users=...)``
    → :class:`Running`; everything started is stopped after the test."""
    started: list[Running] = []

    def start(protocols: tuple[str, ...] = (), **config) -> Running:
        sub = tmp_path / f"gw{len(started)}"
        sub.mkdir()
        r = start_gateway(sub, tuple(protocols), **config)
        started.append(r)
        return r

    yield start
    for r in started:
        r.close()


class OpLog(logging.Handler):
    """The gateway's operation log lines (``gateway.ops``, their ``op``
    fields) of ``protocols`` since the last :meth:`take`."""

    def __init__(self, protocols: tuple[str, ...]) -> None:
        super().__init__(logging.INFO)
        self.protocols = protocols
        self.ops: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "op", {}).get("protocol") in self.protocols:
            self.ops.append(record.op)

    def take(self) -> list[dict]:
        taken, self.ops = self.ops, []
        return taken


@pytest.fixture
def op_log():
    """An :class:`OpLog` of what clients did over WebDAV, SFTP and FTP (not
    the test's own calls to the core)."""
    handler = OpLog(("webdav", "sftp", "ftp"))
    logger = logging.getLogger("gateway.ops")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)
