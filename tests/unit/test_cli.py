"""gateway.cli: --version, user add, exit codes."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from pathlib import Path

import asyncssh
import pytest

import gateway
from conftest import free_port
from gateway.auth import Authenticator
from gateway.cli import main
from gateway.config import load_config
from gateway.errors import AuthenticationFailed


@pytest.fixture
def config(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)  # the default mount is the config folder's data
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


def test_user_list_passwd_key_add_remove(config, monkeypatch, capsys, tmp_path):
    assert add_user(config, monkeypatch, "one\n", "bob", "--home", "/bob", "--permissions", "list,download") == 0
    capsys.readouterr()
    assert main(["user", "list", "--config", str(config)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "bob\thome=/bob\tpermissions=list,download\tadmin=no\tpassword=yes\tkeys=0\tsource=users.toml"]

    monkeypatch.setattr("sys.stdin", io.StringIO("two\n"))
    assert main(["user", "passwd", "bob", "--password-stdin", "--config", str(config)]) == 0
    auth = Authenticator.from_config(load_config(config))
    assert auth.login_password("bob", "two", "127.0.0.1").home == "/bob"
    with pytest.raises(AuthenticationFailed):
        auth.login_password("bob", "one", "127.0.0.1")

    key = asyncssh.generate_private_key("ssh-ed25519")
    keyfile = tmp_path / "id.pub"
    keyfile.write_text(key.export_public_key().decode())
    for _ in range(2):  # a key already there is not added twice
        assert main(["user", "key", "add", "bob", str(keyfile), "--config", str(config)]) == 0
    auth = Authenticator.from_config(load_config(config))
    assert auth.login_key("bob", key.public_data, "127.0.0.1").name == "bob"
    assert len(auth.get("bob").authorized_keys) == 1

    assert main(["user", "remove", "bob", "--config", str(config)]) == 0
    assert "removed user bob" in capsys.readouterr().out
    assert Authenticator.from_config(load_config(config)).get("bob") is None
    assert main(["user", "remove", "bob", "--config", str(config)]) == 1
    assert capsys.readouterr().err.strip() == "gateway: no user 'bob'"


def test_user_changes_refuse_a_config_user(tmp_path, monkeypatch, capsys):
    from gateway.auth import hash_password

    path = tmp_path / "gateway.toml"
    path.write_text(
        f"[server]\nstate_dir = '{tmp_path / 'var'}'\n"
        f"[[users]]\nname = 'carol'\npassword_hash = '{hash_password('x')}'\n"
    )
    keyfile = tmp_path / "id.pub"
    keyfile.write_text(asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode())
    monkeypatch.setattr("sys.stdin", io.StringIO("new\n"))
    for argv in (["passwd", "carol", "--password-stdin"], ["remove", "carol"], ["key", "add", "carol", str(keyfile)]):
        assert main(["user", *argv, "--config", str(path)]) == 1
        assert capsys.readouterr().err.splitlines() == [
            "gateway: user 'carol' is defined in the config file; change it there"]
    assert Authenticator.from_config(load_config(path)).login_password("carol", "x", "127.0.0.1").name == "carol"
    assert main(["user", "list", "--config", str(path)]) == 0
    assert capsys.readouterr().out.endswith("\tsource=config\n")


def test_user_passwd_without_a_terminal_says_so(config, monkeypatch):
    assert add_user(config, monkeypatch, "one\n", "bob") == 0
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "user", "passwd", "bob", "--config", str(config)],
                         cwd=config.parent, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         start_new_session=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 2
    assert out.stderr.startswith("gateway user passwd: no terminal to ask the password on")


def test_the_config_is_found_by_flag_then_environment_then_etc(tmp_path, monkeypatch, capsys):
    from gateway.cli_common import CONFIG_SEARCH

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    if CONFIG_SEARCH[-1].exists():
        pytest.skip(f"{CONFIG_SEARCH[-1]} exists on this machine")
    assert main(["check-config"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "no config file: give --config FILE or set $GATEWAY_CONFIG, or create etc/gateway.toml or "
        "/etc/gateway/gateway.toml (the first relative to the working directory)"]
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "gateway.toml").write_text(f"[server]\nstate_dir = '{tmp_path / 'var'}'\n")
    assert main(["check-config"]) == 0
    assert capsys.readouterr().out.strip() == "ok: etc/gateway.toml"
    env = _write(tmp_path, "")
    monkeypatch.setenv("GATEWAY_CONFIG", str(env))
    assert main(["check-config"]) == 0
    assert capsys.readouterr().out.strip() == f"ok: {env}"
    flag = tmp_path / "flag.toml"
    flag.write_text("[ftp]\nport = 'x'\n")
    assert main(["check-config", "--config", str(flag)]) == 2
    assert capsys.readouterr().err.startswith(f"{flag}: ftp.port:")


def test_commands_exit_2_on_a_bad_config(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[http]\nport = 'x'\n")
    assert main(["serve", "--config", str(bad)]) == 2
    assert add_user(bad, monkeypatch, "pw\n", "bob") == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"{bad}: http.port: expected an integer between 1 and 65535, got 'x'"] * 2


# ------------------------------------------------- user add: terminal, --home

REPO = Path(__file__).resolve().parents[2]


def test_user_add_without_a_terminal_says_so(config):
    # A new session has no controlling terminal, and stdin is not one.
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "user", "add", "bob", "--config", str(config)],
                         cwd=config.parent, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         start_new_session=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "gateway user add: no terminal to ask the password on; pipe it in with --password-stdin "
        "(printf '%s\\n' \"$PW\" | gateway user add NAME --password-stdin)"]
    assert not (config.parent / "var" / "users.toml").exists()


def test_user_add_creates_the_home_folder_on_its_mount(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "gateway.toml"
    config.write_text(f"[server]\nstate_dir = '{tmp_path / 'var'}'\n"
                      f"[[mounts]]\npath = '/'\nurl = 'file://{tmp_path / 'root'}'\n"
                      f"[[mounts]]\npath = '/team'\nurl = 'file://{tmp_path / 'team'}'\n")
    assert add_user(config, monkeypatch, "pw\n", "bob", "--home", "/team/bob/files") == 0
    assert (tmp_path / "team" / "bob" / "files").is_dir()
    assert not (tmp_path / "root" / "team").exists()
    assert add_user(config, monkeypatch, "pw\n", "carl", "--home", "/team/bob/files") == 0  # already there


def test_user_add_no_create_home_refuses_a_missing_folder(config, monkeypatch, capsys):
    assert add_user(config, monkeypatch, "pw\n", "bob", "--home", "/nope", "--no-create-home") == 1
    assert capsys.readouterr().err.splitlines() == [
        "gateway user add: --home /nope: no such folder (create it, or leave out --no-create-home)"]
    assert not (config.parent / "var" / "users.toml").exists()
    (config.parent / "data" / "yes").mkdir(parents=True)
    assert add_user(config, monkeypatch, "pw\n", "bob", "--home", "/yes", "--no-create-home") == 0


def test_user_add_refuses_a_home_that_is_a_file(config, monkeypatch, capsys):
    (config.parent / "data").mkdir()
    (config.parent / "data" / "f").write_text("x")
    assert add_user(config, monkeypatch, "pw\n", "bob", "--home", "/f") == 1
    assert capsys.readouterr().err.splitlines() == ["gateway user add: --home /f: not a folder"]


# ---------------------------------------------------------------- check-config


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(f"[server]\nstate_dir = '{tmp_path / 'var'}'\n" + body)
    return path


@pytest.mark.parametrize("body, message", [
    ("[[mounts]]\npath = '/'\nurl = 'gopher://nowhere/x'\n",
     "mounts[0].url: unknown storage protocol 'gopher' (expected one of dav, davs, file, ftp, memory, s3, s3a, "
     "sftp, ssh, webdav, webdavs)"),
    ("[[mounts]]\npath = '/'\nurl = 'memory://m'\n[[mounts]]\npath = '/r'\nurl = 'sftp://user@host:notaport/path'\n",
     "mounts[1].url: expected a port between 1 and 65535 after the host, got 'notaport'"),
    ("[[mounts]]\npath = '/'\nurl = 'sftp://u@h/x'\noptions = { password = '${GW_TEST_UNSET_VAR}' }\n",
     "mounts[0].url: mount option refers to ${GW_TEST_UNSET_VAR}, but the environment variable "
     "GW_TEST_UNSET_VAR is not set"),
    ("[[mounts]]\npath = '/'\nurl = 'file:///etc/passwd'\n",
     "mounts[0].url: expected a folder, got '/etc/passwd' (not a folder)"),
    ("[[mounts]]\npath = '/'\nurl = 'file:///etc/passwd/data'\n",
     "mounts[0].url: expected a folder, got '/etc/passwd/data' (under '/etc/passwd', not a folder)"),
    ("[ftp]\nport = 2300\n[sftp]\nport = 2300\n",
     "sftp.port: expected a port no other front end uses, got 2300 (also ftp.port)"),
    ("[ftp]\nenabled = false\n[http]\nport = 2222\n",
     "http.port: expected a port no other front end uses, got 2222 (also sftp.port)"),
    ("[ftp]\npassive_ports = '8000-8100'\n",
     "ftp.passive_ports: expected a range without the front ends' ports, got '8000-8100' (holds http.port 8080)"),
    ("[http]\ntls = true\ncertfile = '/nonexistent/cert.pem'\n",
     "http.certfile: expected a readable PEM file, got '/nonexistent/cert.pem' (No such file or directory)"),
    ("[sftp]\nhost_keys = ['/nonexistent/key']\n",
     "sftp.host_keys[0]: expected a readable private key file, got '/nonexistent/key' (No such file or directory)"),
    ("[sftp]\nhost_keys = ['/etc/passwd']\n",  # e.g. the .pub named: SFTP parses keys only for its first client
     "sftp.host_keys[0]: expected a readable private key file, got '/etc/passwd' (holds no private key)"),
])
def test_check_config_catches_what_serve_would_crash_on(tmp_path, monkeypatch, capsys, body, message):
    monkeypatch.delenv("GW_TEST_UNSET_VAR", raising=False)
    path = _write(tmp_path, body)
    assert main(["check-config", "--config", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"{path}: {message}"]
    assert main(["serve", "--config", str(path)]) == 2  # refused before anything starts
    assert capsys.readouterr().err.splitlines() == [f"{path}: {message}"]


def test_check_config_ok_for_two_front_ends_when_one_is_off(tmp_path, capsys):
    path = _write(tmp_path, "[ftp]\nenabled = false\nport = 2222\n")
    assert main(["check-config", "--config", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"ok: {path}"


@pytest.mark.parametrize("front_end", ["ftp", "sftp", "http"])
def test_check_config_bind_names_a_taken_port(tmp_path, capsys, front_end):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {s: port if s == front_end else free_port() for s in ("ftp", "sftp", "http")}
        path = _write(tmp_path, "".join(f"[{s}]\nport = {p}\n" for s, p in ports.items())
                      .replace("[sftp]", "passive_ports = '20000-20010'\n[sftp]"))  # no ephemeral port in it
        assert main(["check-config", "--config", str(path)]) == 0  # without --bind, ports are not tried
        assert main(["check-config", "--bind", "--config", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{front_end}: cannot listen on 127.0.0.1:{port}: address already in use"]
    assert main(["check-config", "--bind", "--config", str(path)]) == 0  # released, and free again


def test_check_config_names_a_corrupt_job_store(tmp_path, capsys):
    path = _write(tmp_path, "")
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "jobs.db").write_bytes(b"this is not a database" * 100)
    assert main(["check-config", "--config", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{tmp_path / 'var' / 'jobs.db'}: cannot open the job store: not an SQLite database; restore it from a "
        "backup, or move it aside to start with an empty one (every job is then forgotten)"]


# ----------------------------------------------------------- serve: start-up


def _serve_proc(config: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
                          cwd=config.parent, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("front_end", ["ftp", "sftp", "http"])
def test_serve_names_a_taken_port_in_one_line(tmp_path, front_end):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        others = "".join(f"[{s}]\nenabled = false\n" for s in ("ftp", "sftp", "http") if s != front_end)
        path = _write(tmp_path, f"{others}[{front_end}]\nport = {port}\n"
                                f"[[mounts]]\npath = '/'\nurl = 'memory://serve-taken'\n")
        out = _serve_proc(path)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1
    assert errors[0].endswith(f"{front_end}: cannot listen on 127.0.0.1:{port}: address already in use")
    assert "password" not in out.stdout  # the first-start admin is made only once every front end listens


def test_serve_names_a_corrupt_job_store_in_one_line(tmp_path, monkeypatch):
    # Past check-config's header test: an SQLite header on a damaged file.
    path = _write(tmp_path, f"[ftp]\nenabled = false\n[sftp]\nenabled = false\n[http]\nport = {free_port()}\n")
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "jobs.db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    out = _serve_proc(path)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and f"{tmp_path / 'var' / 'jobs.db'}: cannot open the job store: " in errors[0]
    assert errors[0].endswith("restore it from a backup, or move it aside to start with an empty one "
                              "(every job is then forgotten)")


def test_a_deleted_job_store_is_an_error_unless_new_store(tmp_path, caplog, capsys):
    from gateway.app import Gateway
    from gateway.config import ConfigError

    state = tmp_path / "var"
    Gateway.build({"/": "memory://deleted-store"}, state).close()
    assert not [r for r in caplog.records if r.levelname == "WARNING"]  # the first start says nothing
    assert (state / ".store-created").exists()
    (state / "jobs.db").unlink()
    message = (f"{state / 'jobs.db'}: the job store is missing although {state / '.store-created'} says one was "
               "made here; restore it from a backup, or start with `gateway serve --new-store` to make an empty "
               "one (every earlier job is forgotten)")
    with pytest.raises(ConfigError) as e:
        Gateway.build({"/": "memory://deleted-store"}, state)
    assert e.value.message == message
    assert not (state / "jobs.db").exists()
    path = _write(tmp_path, "")
    assert main(["check-config", "--config", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [message]
    with caplog.at_level("WARNING", logger="gateway.server"):
        Gateway.build({"/": "memory://deleted-store"}, state, new_store=True).close()
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"{state / 'jobs.db'}: the job store is missing; starting an empty one as --new-store asks: every "
        "earlier job is forgotten"]
    assert (state / "jobs.db").exists()
    assert main(["check-config", "--config", str(path)]) == 0


def test_serve_with_the_shipped_config_works_from_any_directory(tmp_path):
    """`gateway serve` started elsewhere ($GATEWAY_CONFIG names the shipped
    etc/gateway.toml of a checkout) keeps its state in the checkout's var/
    and serves the checkout's data/, as it does from the checkout's root."""
    import httpx

    checkout, elsewhere = tmp_path / "checkout", tmp_path / "elsewhere"
    (checkout / "etc").mkdir(parents=True)
    elsewhere.mkdir()
    port = free_port()
    shipped = (REPO / "etc" / "gateway.toml").read_text()
    assert 'state_dir = "../var"' in shipped and 'url = "file://../data"' in shipped
    (checkout / "etc" / "gateway.toml").write_text(
        shipped.replace("port = 8080\n", f"port = {port}\n").replace("[ftp]\nenabled = true", "[ftp]\nenabled = false")
        .replace("[sftp]\nenabled = true", "[sftp]\nenabled = false"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "GATEWAY_CONFIG": str(checkout / "etc" / "gateway.toml")}
    log = tmp_path / "serve.log"
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve"], cwd=elsewhere, env=env,
                                stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        line = proc.stdout.readline()  # printed once every front end listens
        assert line.startswith("created user admin with password: "), (line, log.read_text()[-3000:])
        password = line.split(":", 1)[1].strip()
        (checkout / "data" / "here.txt").write_text("x")
        listing = httpx.get(f"http://127.0.0.1:{port}/api/v1/fs/list", params={"path": "/"},
                            auth=("admin", password), timeout=30)
        assert listing.status_code == 200 and "here.txt" in listing.text
        assert (checkout / "var" / "jobs.db").is_file() and (checkout / "var" / "users.toml").is_file()
        assert not list(elsewhere.iterdir())
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert proc.returncode == 0


def test_a_local_mount_folder_that_cannot_be_made_is_one_line(tmp_path):
    """Past check-config (as root every folder is writable): the build names the mount."""
    from gateway.app import Gateway
    from gateway.config import ConfigError

    with pytest.raises(ConfigError) as e:
        Gateway.build({"/": "file:///proc/no-such/data"}, tmp_path / "var")
    assert e.value.message.startswith("mount / (file:///proc/no-such/data): cannot open it: ")
    assert "\n" not in e.value.message
