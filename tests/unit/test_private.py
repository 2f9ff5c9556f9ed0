"""Everything the gateway keeps in state_dir is private from the start:
files 0600 and folders 0700 (issue #23), including SQLite's -wal/-shm."""

from __future__ import annotations

import os
import stat

from gateway.config import UserConfig
from gateway.private import create_private, private_dir, write_private


def _modes(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, root)] = stat.S_IMODE(os.lstat(p).st_mode)
    return out


def test_helpers_create_with_private_modes(tmp_path):
    old = os.umask(0)  # even with no umask at all
    try:
        d = private_dir(tmp_path / "a" / "b")
        assert create_private(d / "f") and not create_private(d / "f")
        write_private(d / "g", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE((d / "f").stat().st_mode) == 0o600
    assert stat.S_IMODE((d / "g").stat().st_mode) == 0o600


def test_state_dir_is_private_after_a_start_with_every_front_end(gateway_factory):
    old = os.umask(0o022)
    try:
        r = gateway_factory(protocols=("ftp", "sftp", "http"),
                            sections={"ftp": {"tls": "explicit"}, "http": {"tls": True}})
        r.gw.auth.add_user(UserConfig(name="carol", password_hash=r.cfg.users[0].password_hash))
        ses = r.session()
        r.ops.mkdir(ses, "/d")  # a write: SQLite has its -wal and -shm now
        state = r.cfg.server.state_dir
        modes = _modes(state)
    finally:
        os.umask(old)
    for name in ("jobs.db", "jobs.db-wal", "jobs.db-shm", "users.toml", "users.toml.lock", "ssh_host_ed25519_key",
                 "tls/selfsigned.key", "tls/selfsigned.crt"):
        assert name in modes, (name, sorted(modes))
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    loose = {name: oct(mode) for name, mode in modes.items()
             if mode != (0o700 if os.path.isdir(os.path.join(state, name)) else 0o600)}
    assert not loose, loose


def test_a_loose_state_dir_made_before_is_reported(tmp_path, caplog):
    from gateway.app import Gateway

    state = tmp_path / "var"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    gw = Gateway.build({"/": f"file://{tmp_path / 'data'}"}, state)
    gw.close()
    assert "may be read by other local users (mode 755)" in caplog.text
