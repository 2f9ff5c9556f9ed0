"""The gateway's own users on a PostgreSQL store (gateway.userstore): two
plain ``gateway serve`` processes, each with its own state folder, on one
database; ``gateway user ...`` run against one node's config changes who
logs in on both at once, without a restart."""

from __future__ import annotations

import ftplib
import io
import logging
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from conftest import free_port, stop_process, wait_until
from pg import pg_url  # noqa: F401 - a fixture

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DELIVERY_S = 10.0  # what "at once" may take here at most: a NOTIFY's delivery


class Serve:
    """One ``gateway serve`` process with FTP and HTTP, its config and log."""

    def __init__(self, tmp: Path, name: str, store: str, shared: Path) -> None:
        self.dir = tmp / name
        self.dir.mkdir()
        self.ftp, self.http = free_port(), free_port()
        lo = random.randrange(61000, 65000)  # above the kernel's ephemeral ports, where the ones above are
        self.config = self.dir / "gateway.toml"
        self.config.write_text(
            f"[server]\nhost = '127.0.0.1'\nstate_dir = '{self.dir / 'var'}'\nnode_id = '{name}'\n"
            f"[ftp]\nport = {self.ftp}\npassive_ports = '{lo}-{lo + 20}'\n"
            f"[sftp]\nenabled = false\n[http]\nport = {self.http}\n"
            f"[jobs]\nstore = '{store}'\nheartbeat_s = 0.25\n"
            "[auth]\nmax_failures = 1000\n"  # the wrong passwords below must not ban 127.0.0.1
            f"[[mounts]]\npath = '/'\nurl = 'file://{shared}'\n")
        self.out = self.dir / "stdout.txt"
        self.log = self.dir / "serve.log"
        self.proc: subprocess.Popen | None = None

    def spawn(self) -> None:
        with open(self.out, "wb") as out, open(self.log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(self.config)],
                                         cwd=self.dir, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                         stdout=out, stderr=log)

    def wait_ready(self, timeout: float = 90.0) -> None:
        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                return httpx.get(f"http://127.0.0.1:{self.http}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(ready, timeout, f"{self.dir.name} to be ready")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.log.read_text()[-3000:]}") from None

    def stop(self) -> None:
        stop_process(self.proc)

    def ftp_login(self, user: str, password: str) -> bool:
        with ftplib.FTP() as ftp:
            ftp.connect("127.0.0.1", self.ftp, timeout=10)
            try:
                ftp.login(user, password)
            except ftplib.error_perm as e:
                assert str(e).startswith("530"), e
                return False
            ftp.nlst()
            return True

    def rest_login(self, user: str, password: str) -> bool:
        status = httpx.get(f"http://127.0.0.1:{self.http}/api/v1/jobs", auth=(user, password), timeout=10).status_code
        assert status in (200, 401), status
        return status == 200


def cli(monkeypatch, capsys, *args: str, stdin: str = "") -> tuple[int, str]:
    """Run ``gateway ARGS`` (this process: the real CLI code) with ``stdin``;
    (exit code, stdout + stderr)."""
    from gateway.cli import main

    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture
def two_nodes(tmp_path, pg_url):
    shared = tmp_path / "shared"
    shared.mkdir()
    nodes = [Serve(tmp_path, name, pg_url, shared) for name in ("a", "b")]
    try:
        for n in nodes:  # together: their first-start admins race
            n.spawn()
        for n in nodes:
            n.wait_ready()
        yield nodes
    finally:
        for n in nodes:
            n.stop()


def test_users_changed_from_the_cli_of_one_node_change_logins_on_both(two_nodes, monkeypatch, capsys):
    a, b = two_nodes
    both = (a, b)

    code, out = cli(monkeypatch, capsys, "user", "add", "carol", "--password-stdin", "--config", str(b.config),
                    stdin="old-password-1\n")
    assert code == 0, out
    assert "to the job store" in out, out
    for n in both:  # no restart: the NOTIFY committed with the row told both nodes
        wait_until(lambda: n.ftp_login("carol", "old-password-1"), DELIVERY_S, f"{n.dir.name} to know carol")
        assert n.rest_login("carol", "old-password-1")  # now remembered by each node's login cache

    code, out = cli(monkeypatch, capsys, "user", "passwd", "carol", "--password-stdin", "--config", str(a.config),
                    stdin="new-password-2\n")
    assert code == 0, out
    for n in both:
        wait_until(lambda: not n.rest_login("carol", "old-password-1"), DELIVERY_S,
                 f"{n.dir.name} to forget carol's old password")
        assert not n.ftp_login("carol", "old-password-1")
        assert n.ftp_login("carol", "new-password-2") and n.rest_login("carol", "new-password-2")

    code, out = cli(monkeypatch, capsys, "user", "list", "--config", str(a.config))
    assert code == 0 and re.search(r"^carol\t.*\tsource=store$", out, re.M), out

    code, out = cli(monkeypatch, capsys, "user", "remove", "carol", "--config", str(b.config))
    assert code == 0, out
    for n in both:
        wait_until(lambda: not n.rest_login("carol", "new-password-2"), DELIVERY_S,
                 f"{n.dir.name} to refuse the removed carol")
        assert not n.ftp_login("carol", "new-password-2")

    for n in both:
        n.stop()
    outputs = [n.out.read_text() for n in both]
    passwords = [m for o in outputs for m in re.findall(r"created user admin with password: (\S+)", o)]
    assert len(passwords) == 1, outputs  # two nodes started together on an empty store: one admin
    assert not any((n.dir / "var" / "users.toml").exists() for n in both)  # the store holds the users


def test_a_key_added_on_one_node_is_the_others_at_once(tmp_path, pg_url, monkeypatch, capsys):
    """``user key add`` through node A's config; node B's authenticator (its
    cache trusted, as behind a live bus) learns it from the notification."""
    from gateway.app import Gateway
    from gateway.config import load_config

    shared = tmp_path / "shared"
    shared.mkdir()
    a, b = (Serve(tmp_path, name, pg_url, shared) for name in ("a", "b"))
    gw = Gateway.from_config(load_config(b.config)).start()
    try:
        wait_until(lambda: gw.bus.trusted, DELIVERY_S, "B's bus to listen")
        assert gw.auth.ensure_admin() is not None  # B, and only B, made the admin
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
        key = (tmp_path / "k.pub").read_text()
        code, out = cli(monkeypatch, capsys, "user", "add", "dave", "--password-stdin", "--config", str(a.config),
                        stdin="dave-password-1\n")
        assert code == 0, out
        wait_until(lambda: gw.auth.get("dave") is not None, DELIVERY_S, "B to know dave")
        with pytest.raises(Exception, match="login incorrect"):
            gw.auth.login_key("dave", key, "127.0.0.1")
        code, out = cli(monkeypatch, capsys, "user", "key", "add", "dave", str(tmp_path / "k.pub"),
                        "--config", str(a.config))
        assert code == 0, out
        wait_until(lambda: gw.auth.get("dave").authorized_keys, DELIVERY_S, "B to know dave's key")
        assert gw.auth.login_key("dave", key, "127.0.0.1").name == "dave"
        code, out = cli(monkeypatch, capsys, "user", "remove", "dave", "--config", str(a.config))
        assert code == 0, out
        wait_until(lambda: gw.auth.get("dave") is None, DELIVERY_S, "B to forget dave")
    finally:
        gw.close()


def users_toml(path: Path, *names: str) -> None:
    from gateway.auth import hash_password

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"[[users]]\nname = '{n}'\npassword_hash = '{hash_password(n + '-pw')}'\n"
                            f"home = '/'\n" for n in names))


def test_a_nodes_users_toml_is_imported_once_into_an_empty_store(tmp_path, pg_url, caplog):
    """Moving an existing node to PostgreSQL: its users.toml is imported
    into a store that never held users (one log line with file and count);
    after that no users.toml is read, not even once every user is gone."""
    from gateway.auth import Authenticator
    from gateway.config import load_config

    shared = tmp_path / "shared"
    shared.mkdir()
    a, b = (Serve(tmp_path, name, pg_url, shared) for name in ("a", "b"))
    file_a, file_b = a.dir / "var" / "users.toml", b.dir / "var" / "users.toml"
    users_toml(file_a, "erin", "frank")
    users_toml(file_b, "grace")
    cfg_a, cfg_b = load_config(a.config), load_config(b.config)

    caplog.set_level(logging.INFO, "gateway.auth")
    auth_a = Authenticator.from_config(cfg_a)
    imported = [r.getMessage() for r in caplog.records if "imported" in r.getMessage()]
    assert imported == [f"users: imported 2 user(s) from {file_a} into the job store, where every node finds "
                        "them; that file is not used from now on"]
    assert auth_a.login_password("erin", "erin-pw", "127.0.0.1").name == "erin"
    assert auth_a.ensure_admin() is None  # the store has users: no first-start admin

    caplog.clear()
    auth_b = Authenticator.from_config(cfg_b)  # the store holds users: B's file is not used
    assert {u.name for u in auth_b.all()} == {"erin", "frank"}
    assert any(f"{file_b} is not used" in r.getMessage() for r in caplog.records)

    auth_b.remove_user("erin")
    auth_b.remove_user("frank")
    again = Authenticator.from_config(cfg_a)
    assert again.all() == []  # the removed users do not come back from A's file
    assert file_a.exists()  # left as it was, for the admin to delete
    engine = sa.create_engine(cfg_a.jobs.url(cfg_a.server.state_dir))
    try:
        with engine.connect() as c:
            assert c.exec_driver_sql("SELECT count(*) FROM users").scalar() == 0
    finally:
        engine.dispose()


def test_nodes_starting_together_on_an_empty_store_make_one_admin(tmp_path, pg_url):
    """Four nodes' first-start checks at the same instant: one makes the
    admin and shows its password, the others find it and show nothing."""
    import threading

    from gateway.auth import Authenticator
    from gateway.config import load_config

    shared = tmp_path / "shared"
    shared.mkdir()
    auths = [Authenticator.from_config(load_config(Serve(tmp_path, n, pg_url, shared).config)) for n in "abcd"]
    barrier = threading.Barrier(len(auths))
    results: list[object] = []

    def start(auth: Authenticator) -> None:
        barrier.wait()
        try:
            results.append(auth.ensure_admin())
        except Exception as e:  # noqa: BLE001 - reported below
            results.append(e)

    threads = [threading.Thread(target=start, args=(a,)) for a in auths]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    passwords = [r for r in results if r is not None]
    assert len(results) == 4 and len(passwords) == 1 and isinstance(passwords[0], str), results
    for auth in auths:
        assert auth.login_password("admin", passwords[0], "127.0.0.1").admin


def test_while_a_nodes_bus_is_not_trusted_it_reads_the_users_at_every_lookup(tmp_path, pg_url):
    """The bus's rule for users: a node keeps its copy only while its bus
    promises delivery; otherwise (listener lost) every lookup asks the store."""
    from gateway.auth import Authenticator, hash_password
    from gateway.config import UserConfig, load_config

    shared = tmp_path / "shared"
    shared.mkdir()
    a, b = (Authenticator.from_config(load_config(Serve(tmp_path, n, pg_url, shared).config)) for n in "ab")
    trusted = True
    b.storage.trusted = lambda: trusted
    assert b.get("heidi") is None
    a.add_user(UserConfig(name="heidi", password_hash=hash_password("heidi-pw")))
    assert b.get("heidi") is None  # B's copy, trusted: the notice (no bus in this test) would drop it
    trusted = False
    assert b.get("heidi") is not None
    a.remove_user("heidi")
    assert b.get("heidi") is None
    trusted = True
    a.add_user(UserConfig(name="ivan", password_hash=hash_password("ivan-pw")))
    assert b.get("ivan") is None  # cached again
    b.reload()  # what another node's notice (or the bus coming back) does
    assert b.get("ivan") is not None
