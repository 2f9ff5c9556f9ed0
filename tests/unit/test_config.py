"""gateway.config: defaults, path resolution, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import asyncssh
import pytest

from gateway.cli import main
from gateway.config import DEFAULT_CONFIG, ConfigError, Config, load_config, parse_config, split_public_key

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "gateway.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message[len(f"{path}: "):]


# ------------------------------------------------------------------ defaults


def test_shipped_default_config_loads_with_the_documented_values(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # any working directory: paths come from etc/
    cfg = load_config(REPO / DEFAULT_CONFIG)
    assert DEFAULT_CONFIG == Path("etc/gateway.toml")
    assert cfg.server.host == "127.0.0.1"
    assert cfg.server.state_dir == REPO / "var"
    assert (cfg.ftp.port, cfg.sftp.port, cfg.http.port) == (2121, 2222, 8080)
    assert cfg.jobs.store == "sqlite"
    assert [(q.name, q.workers) for q in cfg.jobs.queues] == [("copy", 4), ("move", 4), ("delete", 4)]
    assert [(m.path, m.url) for m in cfg.mounts] == [("/", f"file://{REPO / 'data'}")]
    assert cfg.users == []


def test_an_empty_file_gives_every_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(write(tmp_path, ""))
    assert cfg == parse_config({})
    assert cfg.server.state_dir == tmp_path / "var"
    assert cfg.server.node_id
    assert cfg.ftp.enabled and cfg.ftp.tls == "off" and cfg.ftp.passive_range == range(60000, 60101)
    assert (cfg.ftp.max_connections, cfg.ftp.max_connections_per_ip, cfg.ftp.idle_timeout_s) == (512, 32, 300)
    assert cfg.sftp.host_keys == [] and not cfg.sftp.keyboard_interactive
    assert cfg.http.threads == 32 and not cfg.http.propfind_infinity
    assert cfg.policy.sync_budget_ms == 2000 and cfg.policy.upload_checksums == ["sha1", "md5"]
    assert (cfg.auth.max_failures, cfg.auth.window_s, cfg.auth.ban_s) == (5, 300, 900)
    assert (cfg.jobs.heartbeat_s, cfg.jobs.stall_after_s, cfg.jobs.max_attempts) == (1.0, 30.0, 5)
    assert (cfg.logging.level, cfg.logging.format) == ("INFO", "text")
    assert [(m.path, m.url, m.timeout_s, m.retries, m.cache_ttl_s) for m in cfg.mounts] == [
        ("/", f"file://{tmp_path / 'data'}", 30.0, 3, 5.0)
    ]


def test_relative_paths_are_resolved_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = parse_config({
        "server": {"state_dir": "state/../st"},
        "ftp": {"tls": "explicit", "certfile": "tls/cert.pem", "keyfile": "/etc/k.pem"},
        "sftp": {"host_keys": ["keys/host_ed25519"]},
    })
    assert cfg.server.state_dir == tmp_path / "st"
    assert cfg.ftp.certfile == tmp_path / "tls" / "cert.pem"
    assert cfg.ftp.keyfile == Path("/etc/k.pem")
    assert cfg.sftp.host_keys == [tmp_path / "keys" / "host_ed25519"]


def test_relative_paths_in_a_file_are_taken_from_its_folder(tmp_path, monkeypatch):
    monkeypatch.chdir("/")
    folder = tmp_path / "conf"
    folder.mkdir()
    cfg = load_config(write(folder, """
        [server]
        state_dir = "../state"
        [http]
        certfile = "tls/cert.pem"
        keyfile = "tls/key.pem"
        [sftp]
        host_keys = ["keys/host_ed25519"]
        [[mounts]]
        path = "/"
        url = "file://../data"
        [[mounts]]
        path = "/slow"
        url = "slow::file://cache"
        [[mounts]]
        path = "/abs"
        url = "file:///srv/abs"
        [[mounts]]
        path = "/mem"
        url = "memory://x"
    """))
    assert cfg.server.state_dir == tmp_path / "state"
    assert (cfg.http.certfile, cfg.http.keyfile) == (folder / "tls" / "cert.pem", folder / "tls" / "key.pem")
    assert cfg.sftp.host_keys == [folder / "keys" / "host_ed25519"]
    assert [m.url for m in cfg.mounts] == [f"file://{tmp_path / 'data'}", f"slow::file://{folder / 'cache'}",
                                           "file:///srv/abs", "memory://x"]
    # Without mounts, the default "/" is the file's folder's data too.
    assert load_config(write(folder, "")).mounts[0].url == f"file://{folder / 'data'}"


def test_policy_budget_per_protocol():
    cfg = parse_config({"policy": {"sync_budget_ms": 1500, "ftp": {"sync_budget_ms": 0}, "webdav": {"sync_budget_ms": 250}}})
    assert cfg.policy.budget_s("ftp") == 0.0
    assert cfg.policy.budget_s("webdav") == 0.25
    assert cfg.policy.budget_s("sftp") == 1.5
    assert cfg.policy.budget_s("scp") == 1.5
    assert cfg.policy.budget_s("api") == 1.5


def test_job_store_urls(tmp_path):
    cfg = parse_config({})
    assert cfg.jobs.url(tmp_path) == f"sqlite:///{tmp_path}/jobs.db"
    assert not cfg.jobs.distributed
    pg = parse_config({"jobs": {"store": "postgresql://gw:pw@db.example:5432/gateway"}})
    assert pg.jobs.url(tmp_path) == "postgresql+psycopg://gw:pw@db.example:5432/gateway"
    assert pg.jobs.distributed


def test_mount_paths_are_normalised():
    cfg = parse_config({"mounts": [{"path": "/", "url": "memory://"}, {"path": "//s3/./x/", "url": "s3://b/p"}]})
    assert [m.path for m in cfg.mounts] == ["/", "/s3/x"]


def test_users_become_core_users():
    key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    cfg = parse_config({"users": [{
        "name": "demo", "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA", "home": "/home/demo/",
        "permissions": ["list", "download"], "path_permissions": {"/pub/": ["*"]}, "authorized_keys": [key],
    }]})
    (user,) = cfg.user_objects()
    assert user.name == "demo" and user.home == "/home/demo" and not user.admin
    assert user.allowed("download", "/a") and not user.allowed("upload", "/a")
    assert user.allowed("upload", "/pub/x")
    assert user.authorized_keys == [key.strip()]


def test_the_light_key_check_accepts_what_asyncssh_accepts():
    for kind in ("ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"):
        key = asyncssh.generate_private_key(kind, **({"key_size": 2048} if kind == "ssh-rsa" else {}))
        line = key.export_public_key().decode().strip() + " someone@host"
        parsed = asyncssh.import_public_key(line)
        assert split_public_key(line) == split_public_key(parsed.public_data) == (kind, line.split()[1])
    rsa_blob = line.split()[1]
    with pytest.raises(ValueError, match="is a 'ssh-rsa' key, not 'ssh-ed25519'"):
        split_public_key("ssh-ed25519 " + rsa_blob)
    for bad in ("ssh-ed25519", "ssh-ed25519 !!!", "ssh-ed25519 AAAA", b"\x00\x00"):
        with pytest.raises(ValueError):
            split_public_key(bad)


# -------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "text, expected",
    [
        ("foo = 1", "foo: unknown key 'foo' (known keys: server, ftp, sftp, http, policy, jobs, auth, mounts, users, logging)"),
        ("[ftp]\nprot = 21", "ftp.prot: unknown key 'prot' (did you mean 'port'?)"),
        ("[ftp]\nport = 'abc'", "ftp.port: expected an integer between 1 and 65535, got 'abc'"),
        ("[ftp]\nport = 70000", "ftp.port: expected an integer between 1 and 65535, got 70000"),
        ("[http]\nport = 0", "http.port: expected an integer between 1 and 65535, got 0"),
        ("[ftp]\nenabled = 'yes'", "ftp.enabled: expected true or false, got 'yes'"),
        ("ftp = 3", "ftp: expected a table, got 3"),
        ("[ftp]\ntls = 'on'", "ftp.tls: expected one of 'off', 'explicit', 'implicit', got 'on'"),
        ("[ftp]\npassive_ports = '60100-60000'",
         "ftp.passive_ports: expected a port range 'A-B' with 1 <= A <= B <= 65535, got '60100-60000'"),
        ("[ftp]\npassive_ports = '6000'",
         "ftp.passive_ports: expected a port range 'A-B' with 1 <= A <= B <= 65535, got '6000'"),
        ("[sftp]\nhost_keys = 'k'", "sftp.host_keys: expected a list, got 'k'"),
        ("[policy]\nsync_budget_ms = -1", "policy.sync_budget_ms: expected an integer >= 0, got -1"),
        ("[policy.ftp]\nsync_budget_ms = 1.5", "policy.ftp.sync_budget_ms: expected an integer >= 0, got 1.5"),
        ("[policy]\nupload_checksums = ['crc32']",
         "policy.upload_checksums[0]: expected one of 'md5', 'sha1', 'sha256', 'sha512', got 'crc32'"),
        ("[jobs]\nstore = 'mysql://db'",
         "jobs.store: expected \"sqlite\" or a URL like \"postgresql://user@host/db\", got 'mysql://db'"),
        ("[[jobs.queues]]\nname = 'copy'\nworkers = 0", "jobs.queues[0].workers: expected an integer >= 1, got 0"),
        ("[[jobs.queues]]\nname = 'copy'\n[[jobs.queues]]\nname = 'copy'",
         "jobs.queues[1].name: duplicate queue name 'copy' (also jobs.queues[0])"),
        ("[jobs]\nheartbeat_s = 5\nstall_after_s = 5",
         "jobs.stall_after_s: expected a number greater than jobs.heartbeat_s (5), got 5"),
        ("[auth]\nwindow_s = 0", "auth.window_s: expected a number > 0, got 0"),
        ("[[mounts]]\npath = 's3'\nurl = 's3://b'",
         "mounts[0].path: expected an absolute virtual path like '/' or '/s3', got 's3'"),
        ("[[mounts]]\npath = '/a/../b'\nurl = 's3://b'",
         "mounts[0].path: expected an absolute virtual path without '..', got '/a/../b'"),
        ("[[mounts]]\npath = '/'\nurl = 'file://./data'\n[[mounts]]\npath = '/x'\nurl = 'data'",
         "mounts[1].url: expected an fsspec URL like 'file://./data' or 's3://bucket/prefix', got 'data'"),
        ("[[mounts]]\npath = '/'\nurl = 'memory://'\n[[mounts]]\npath = '/s3/'\nurl = 's3://a'\n"
         "[[mounts]]\npath = '/s3'\nurl = 's3://b'",
         "mounts[2].path: duplicate mount path '/s3' (also mounts[1])"),
        ("[[mounts]]\nurl = 'memory://'", "mounts[0]: missing required key 'path'"),
        ("mounts = []", "mounts: expected at least one mount (e.g. path = \"/\", url = \"file://./data\")"),
        ("[[users]]\nname = 'a b'", "users[0].name: expected a name made of letters, digits, '.', '_' and '-', got 'a b'"),
        ("[[users]]\nname = 'a'\npermissions = ['list', 'write']",
         "users[0].permissions[1]: expected a permission: one of list, download, upload, overwrite, rename, "
         "delete, mkdir, copy or '*', got 'write'"),
        ("[[users]]\nname = 'a'\npath_permissions = { pub = ['list'] }",
         "users[0].path_permissions: key 'pub': expected an absolute virtual path like '/' or '/s3'"),
        ("[[users]]\nname = 'a'\npassword_hash = 'plaintext'",
         "users[0].password_hash: expected an argon2 hash starting with '$argon2' (see `gateway user add`)"),
        ("[[users]]\nname = 'a'\nauthorized_keys = ['ssh-ed25519 !!!']",
         "users[0].authorized_keys[0]: expected an OpenSSH public key line '<type> <base64> [comment]' "
         "(the key data is not valid base64)"),
        ("[[users]]\nname = 'a'\n[[users]]\nname = 'a'", "users[1].name: duplicate user name 'a' (also users[0])"),
        ("[logging]\nformat = 'xml'", "logging.format: expected one of 'text', 'json', got 'xml'"),
        ("[http]\nmetrics = 'open'", "http.metrics: expected one of 'public', 'authenticated', 'off', got 'open'"),
        ("[sftp]\nciphers = ['aes128-gcm@openssh.com', 'aes128-cbc']",
         "sftp.ciphers[1]: expected AES-GCM or AES-CTR, not a CBC cipher (the gateway skips asyncssh's "
         "countermeasure for CBC, an SSH_MSG_IGNORE before every packet), got 'aes128-cbc'"),
        ("[sftp]\nciphers = ['3des-cbc']", "sftp.ciphers[0]: expected AES-GCM or AES-CTR, not a CBC cipher (the "
         "gateway skips asyncssh's countermeasure for CBC, an SSH_MSG_IGNORE before every packet), got '3des-cbc'"),
        ("[sftp]\nciphers = ['none']", "sftp.ciphers[0]: expected a cipher, not none (no encryption), got 'none'"),
        ("[sftp]\nciphers = ['arcfour256']",
         "sftp.ciphers[0]: expected AES-GCM or AES-CTR, not RC4 (arcfour: broken), got 'arcfour256'"),
        ("[sftp]\nciphers = ['aes128-gcm']",
         "sftp.ciphers[0]: expected a cipher asyncssh supports: chacha20-poly1305@openssh.com, "
         "aes256-gcm@openssh.com, aes128-gcm@openssh.com, aes256-ctr, aes192-ctr, aes128-ctr, got 'aes128-gcm'"),
        ("[sftp]\nciphers = []", "sftp.ciphers: expected at least one cipher (none would refuse every client)"),
        ("[sftp]\nciphers = 'aes128-ctr'", "sftp.ciphers: expected a list, got 'aes128-ctr'"),
        ("[sftp]\nciphers = ['aes128-ctr', 'aes256-ctr', 'aes128-ctr']",
         "sftp.ciphers[2]: duplicate cipher 'aes128-ctr' (also sftp.ciphers[0])"),
        ("[sftp]\nmacs = ['hmac-md5-etm@openssh.com']", "sftp.macs[0]: expected a MAC without MD5 or a tag cut to "
         "96 bits (weak), e.g. hmac-sha2-256-etm@openssh.com, got 'hmac-md5-etm@openssh.com'"),
        ("[sftp]\nmacs = ['none']", "sftp.macs[0]: expected a MAC, not none (no integrity check), got 'none'"),
        ("[sftp]\nmacs = []", "sftp.macs: expected at least one MAC (none would refuse every client)"),
        ("[sftp]\nkex_algorithms = ['diffie-hellman-group1-sha1']",
         "sftp.kex_algorithms[0]: expected a key exchange RFC 9142 allows (not SHA-1 with 1024 bits or a "
         "negotiated group), got 'diffie-hellman-group1-sha1'"),
        ("[sftp]\nkex_algorithms = ['gss-curve25519-sha256']",
         "sftp.kex_algorithms[0]: expected a key exchange without GSS-API (it needs Kerberos, which the gateway "
         "does not set up), got 'gss-curve25519-sha256'"),
        ("[ftp]\nport = 0\ntls = 'on'",
         "ftp.port: expected an integer between 1 and 65535, got 0 (and 1 more problem)"),
    ],
)
def test_each_error_is_one_line_naming_file_key_and_expectation(tmp_path, text, expected):
    assert error_of(tmp_path, text) == expected


def test_a_password_hash_is_never_echoed_in_an_error(tmp_path):
    assert "hunter2" not in error_of(tmp_path, "[[users]]\nname = 'a'\npassword_hash = 'hunter2'")


def test_toml_syntax_error_names_line_and_column(tmp_path):
    message = error_of(tmp_path, "[server]\nhost = \"127.0.0.1\"\n\n[ftp]\nport = \n")
    assert message.startswith("line 5, column 8: invalid TOML: ")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.toml: no such file$"):
        load_config(tmp_path / "nope.toml")


def test_log_level_is_case_insensitive():
    assert parse_config({"logging": {"level": "debug"}}).logging.level == "DEBUG"


# ------------------------------------------------------------- check-config


def test_check_config_exit_codes(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = write(tmp_path, f"[server]\nstate_dir = '{tmp_path / 'var'}'\n")
    assert main(["check-config", "--config", str(good)]) == 0
    assert capsys.readouterr().out.strip() == f"ok: {good}"

    bad = write(tmp_path, "[ftp]\nport = 'abc'\n", "bad.toml")
    assert main(["check-config", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == f"{bad}: ftp.port: expected an integer between 1 and 65535, got 'abc'\n"

    assert main(["check-config", "--config", str(tmp_path / "missing.toml")]) == 2


def test_check_config_names_a_refused_ssh_algorithm(tmp_path, capsys):
    bad = write(tmp_path, f"[server]\nstate_dir = '{tmp_path / 'var'}'\n[sftp]\nmacs = ['hmac-sha2-256', 'umac-32']\n")
    assert main(["check-config", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{bad}: sftp.macs[1]: expected a MAC asyncssh supports: umac-64-etm@openssh.com, ")
    assert err.endswith(", got 'umac-32'\n")
    good = write(tmp_path, f"[server]\nstate_dir = '{tmp_path / 'var'}'\n[sftp]\nciphers = ['aes128-gcm@openssh.com']\n"
                           "macs = ['hmac-sha2-256-etm@openssh.com']\nkex_algorithms = ['curve25519-sha256']\n", "good.toml")
    assert main(["check-config", "--config", str(good)]) == 0


def test_the_ssh_algorithm_names_are_asyncssh_s():
    """gateway.ssh_algorithms writes asyncssh's names out (the config never
    imports asyncssh): each is one asyncssh registers, each default list is
    what the gateway offered before the options (ciphers: AES only; MACs and
    key exchanges: asyncssh's defaults, less GSS-API, where this
    installation has them), and what is refused is refused for a reason."""
    from asyncssh.encryption import get_default_encryption_algs, get_encryption_algs
    from asyncssh.kex import get_default_kex_algs, get_kex_algs
    from asyncssh.mac import get_default_mac_algs, get_mac_algs

    from gateway import ssh_algorithms as algs

    names = lambda algs_: [a.decode() for a in algs_]  # noqa: E731
    supported = {"ciphers": names(get_encryption_algs()), "macs": names(get_mac_algs()),
                 "kex_algorithms": names(get_kex_algs())}
    accepted = {"ciphers": algs.CIPHERS, "macs": algs.MACS, "kex_algorithms": algs.KEX_ALGORITHMS}
    # Not registered here: these need liboqs.
    optional = {"sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com"}
    for option, known in supported.items():
        assert set(accepted[option]) - optional <= set(known), option
        for name in accepted[option]:
            assert algs.refusal(option, name) is None, name
        # Everything asyncssh has here is either accepted or refused with a reason.
        assert all(n in accepted[option] or algs.refusal(option, n) for n in known), option
    assert algs.DEFAULT_CIPHERS == ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes192-ctr",
                                    "aes256-ctr"]
    assert set(algs.DEFAULT_CIPHERS) < set(names(get_default_encryption_algs()))
    assert algs.DEFAULT_MACS == names(get_default_mac_algs())
    assert [a for a in algs.DEFAULT_KEX_ALGORITHMS if a in supported["kex_algorithms"]] == [
        a for a in names(get_default_kex_algs()) if not a.startswith("gss-") and a != "diffie-hellman-group14-sha1"]
    assert algs.refusal("kex_algorithms", "diffie-hellman-group14-sha1") is None  # not offered, but allowed
    for refused in ("aes128-cbc", "aes192-cbc", "aes256-cbc", "3des-cbc", "blowfish-cbc", "cast128-cbc",
                    "seed-cbc@ssh.com", "arcfour", "arcfour128", "arcfour256"):
        assert refused in supported["ciphers"] and algs.refusal("ciphers", refused), refused
    cfg = parse_config({})
    assert (cfg.sftp.ciphers, cfg.sftp.macs, cfg.sftp.kex_algorithms) == (
        algs.DEFAULT_CIPHERS, algs.DEFAULT_MACS, algs.DEFAULT_KEX_ALGORITHMS)


def test_check_config_also_checks_the_users_file(tmp_path, capsys):
    state = tmp_path / "var"
    state.mkdir()
    (state / "users.toml").write_text("[[users]]\nname = 'x'\nbogus = 1\n")
    cfg = write(tmp_path, f"[server]\nstate_dir = '{state}'\n")
    assert main(["check-config", "--config", str(cfg)]) == 2
    assert capsys.readouterr().err.startswith(f"{state / 'users.toml'}: users[0].bogus: unknown key 'bogus'")


def test_every_table_forbids_unknown_keys():
    import gateway.config as config
    from pydantic import BaseModel

    models = [v for v in vars(config).values() if isinstance(v, type) and issubclass(v, BaseModel) and v is not BaseModel]
    assert Config in models and len(models) > 10
    for model in models:
        assert model.model_config.get("extra") == "forbid", model


def test_ftp_limits_have_safe_defaults_and_are_checked(tmp_path):
    ftp = parse_config({}).ftp
    assert (ftp.login_timeout_s, ftp.max_unauthenticated, ftp.max_unauthenticated_per_ip, ftp.max_line_bytes) == (
        10, 128, 16, 2048)
    assert error_of(tmp_path, "[ftp]\nmax_line_bytes = 100\n").endswith(
        "ftp.max_line_bytes: expected an integer between 512 and 65536, got 100")
    assert "ftp.login_timeout_s: expected an integer >= 1" in error_of(tmp_path, "[ftp]\nlogin_timeout_s = 0\n")
