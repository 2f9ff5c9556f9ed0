"""gateway.cli: --version, user add, exit codes."""

from __future__ import annotations

import io
from pathlib import Path

import asyncssh
import pytest

import gateway
from gateway.auth import Authenticator
from gateway.cli import main
from gateway.config import load_config
from gateway.errors import AuthenticationFailed


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(f"[server]\nstate_dir = '{tmp_path / 'var'}'\n")
    return path


def add_user(config: Path, monkeypatch, stdin: str, *args: str) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(["user", "add", *args, "--password-stdin", "--config", str(config)])


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"gateway {gateway.__version__}"
    assert gateway.__version__ == "0.1.0"


def test_no_command_is_a_usage_error(capsys):
    assert main([]) == 2
    assert main(["no-such-command"]) == 2


def test_user_add_then_login(config, monkeypatch, capsys):
    assert add_user(config, monkeypatch, "s3cret pass\n", "bob", "--home", "/bob", "--permissions", "list,download") == 0
    assert "added user bob" in capsys.readouterr().out
    assert "s3cret" not in (config.parent / "var" / "users.toml").read_text()

    auth = Authenticator.from_config(load_config(config))
    bob = auth.login_password("bob", "s3cret pass", "127.0.0.1")
    assert bob.home == "/bob" and bob.permissions == {"list", "download"} and not bob.admin
    with pytest.raises(AuthenticationFailed):
        auth.login_password("bob", "s3cret pass\n", "127.0.0.1")


def test_user_add_refuses_a_duplicate(config, monkeypatch, capsys):
    assert add_user(config, monkeypatch, "one\n", "bob") == 0
    assert add_user(config, monkeypatch, "two\n", "bob", "--admin") == 1
    assert "user 'bob' already exists" in capsys.readouterr().err
    auth = Authenticator.from_config(load_config(config))
    assert not auth.login_password("bob", "one", "127.0.0.1").admin


def test_user_add_refuses_a_name_from_the_config(tmp_path, monkeypatch):
    from gateway.auth import hash_password

    path = tmp_path / "gateway.toml"
    path.write_text(
        f"[server]\nstate_dir = '{tmp_path / 'var'}'\n"
        f"[[users]]\nname = 'carol'\npassword_hash = '{hash_password('x')}'\n"
    )
    assert add_user(path, monkeypatch, "pw\n", "carol") == 1


def test_user_add_with_key_only(config, monkeypatch, tmp_path):
    key = asyncssh.generate_private_key("ssh-ed25519")
    keyfile = tmp_path / "id.pub"
    keyfile.write_text("# my key\n\n" + key.export_public_key().decode())
    assert add_user(config, monkeypatch, "", "dave", "--key", str(keyfile), "--admin") == 0
    auth = Authenticator.from_config(load_config(config))
    assert auth.login_key("dave", key.public_data, "127.0.0.1").admin
    with pytest.raises(AuthenticationFailed):
        auth.login_password("dave", "", "127.0.0.1")


@pytest.mark.parametrize(
    "args, message",
    [
        (["bad name"], "gateway user add: name: expected a name made of letters"),
        (["eve", "--permissions", "list,write"], "gateway user add: permissions[1]: expected a permission"),
        (["eve", "--home", "rel"], "gateway user add: home: expected an absolute virtual path"),
        (["eve"], "gateway: give a password or at least one --key"),
    ],
)
def test_user_add_rejects_bad_input(config, monkeypatch, capsys, args, message):
    assert add_user(config, monkeypatch, "", *args) == 2
    assert capsys.readouterr().err.startswith(message)
    assert not (config.parent / "var" / "users.toml").exists()


def test_user_add_rejects_a_bad_key_file(config, monkeypatch, capsys, tmp_path):
    keyfile = tmp_path / "id.pub"
    keyfile.write_text("ssh-ed25519 notbase64!\n")
    assert add_user(config, monkeypatch, "pw\n", "eve", "--key", str(keyfile)) == 2
    assert capsys.readouterr().err.startswith(f"{keyfile}: line 1: expected an OpenSSH public key")


def test_commands_exit_2_on_a_bad_config(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[http]\nport = 'x'\n")
    assert main(["serve", "--config", str(bad)]) == 2
    assert add_user(bad, monkeypatch, "pw\n", "bob") == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"{bad}: http.port: expected an integer between 1 and 65535, got 'x'"] * 2
