"""The servers under test, each started on 127.0.0.1 high ports with its own
temporary config: the gateway (FTP, SFTP, WebDAV from one process), vsftpd,
OpenSSH sshd + sftp-server, nginx WebDAV, ``rclone serve ftp|sftp|webdav``
over local folders and over the moto S3 bucket, moto itself, and the
gateway's own libraries serving a folder bare (``bare.py``: pyftpdlib,
asyncssh, wsgidav on cheroot), a floor rather than a peer."""

from __future__ import annotations

import base64
import os
import pwd
import re
import secrets
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bare import LIBRARIES
from install import CACHE, NGINX_DAV_MODULE, find_binary
from procs import Procs, free_port, wait_port
from storage import LocalStorage, S3Storage

__all__ = ["Context", "Endpoint", "Server", "start_all", "BENCH_USER", "BUCKET"]

REPO = Path(__file__).resolve().parents[2]
#: The system account vsftpd and sshd sessions run as (made once with useradd).
BENCH_USER = "gwbench"
BUCKET = "bench"
S3_KEY, S3_SECRET = "bench", "bench-secret"


@dataclass
class Context:
    tmp: Path
    procs: Procs
    protocols: set[str]                 # what --only selected: ftp, sftp, webdav, s3
    budget_ms: int
    rclone: str | None
    rclone_note: str
    user: str = "bench"
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    client_key: Path | None = None
    host_key: Path | None = None
    moto_url: str | None = None
    s3: Any = None                      # boto3 client of the moto server
    #: above Linux's default ephemeral range (32768-60999), where the servers' own ports are
    next_port_range: int = field(default_factory=lambda: 61000 + secrets.randbelow(30) * 100)
    #: more [policy] settings of the gateway (scripts/bench/profile.py compares with and without one)
    gateway_policy: dict = field(default_factory=dict)
    bench_password: str = ""            # the system account's (vsftpd); kept across runs

    @property
    def wire(self) -> list[str]:
        """Protocols to serve: those selected, or all three when only the S3
        (remote mount) workloads are."""
        chosen = [p for p in ("ftp", "sftp", "webdav") if p in self.protocols]
        return chosen or ["ftp", "sftp", "webdav"]

    def ports(self, n: int = 100) -> str:
        """A passive port range ``lo-hi`` for FTP data, not shared with
        another server of this run (from a random base above 61000)."""
        lo = self.next_port_range
        self.next_port_range += n
        return f"{lo}-{lo + n - 1}"


@dataclass
class Server:
    name: str
    proc: subprocess.Popen | None
    version: str = ""
    rc_port: int | None = None          # rclone's remote control, to drop its directory cache
    note: str = ""                      # why it is not running
    label: str = ""                     # which instance, e.g. "rclone-sftp-s3"

    def __post_init__(self) -> None:
        self.label = self.label or self.name

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def refresh(self) -> None:
        """Forget cached listings after the harness changed files behind the
        server's back (rclone's VFS caches directories for minutes)."""
        if self.rc_port:
            # Fixtures are always new top-level names: re-reading the root is enough
            # (vfs/forget without paths forgets nothing).
            req = urllib.request.Request(f"http://127.0.0.1:{self.rc_port}/vfs/refresh", data=b"{}",
                                         headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=30).read()


@dataclass
class Endpoint:
    """One protocol of one server, as a client sees it."""

    server: Server
    protocol: str                       # ftp | sftp | webdav
    port: int
    user: str
    password: str
    storage: LocalStorage | S3Storage | None
    base: str = ""                      # folder under the login folder that holds ``storage``
    url_prefix: str = ""                # WebDAV: the path the DAV tree is served at
    note: str = ""                      # non-empty: not available, and why

    @property
    def name(self) -> str:
        return self.server.name

    @property
    def remote(self) -> bool:
        return bool(self.storage and self.storage.remote)

    @property
    def available(self) -> bool:
        return not self.note

    def rel(self, path: str) -> str:
        """A client path for storage path ``path`` (relative to the login folder)."""
        return f"{self.base}/{path}" if self.base else path


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def _version(argv: list[str], pattern: str = r"\S+") -> str:
    try:
        r = _run(argv, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    m = re.search(pattern, (r.stdout + r.stderr))
    return m.group(0) if m else ""


# -- the gateway --------------------------------------------------------------------------


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def gateway_config(ctx: Context, root: Path, ports: dict[str, int]) -> Path:
    """The gateway's TOML: its defaults except the ports, a short sync budget
    (so backgrounded replies show) and the bench mounts and user."""
    from gateway.auth import hash_password

    sections = {
        "server": {"host": "127.0.0.1", "state_dir": str(ctx.tmp / "gateway-var")},
        "ftp": {"port": ports["ftp"], "passive_ports": ctx.ports()},
        "sftp": {"port": ports["sftp"]},
        "http": {"port": ports["webdav"]},
        "policy": {"sync_budget_ms": ctx.budget_ms, **ctx.gateway_policy},
    }
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml(v)}" for k, v in values.items()]
    lines += ["[[mounts]]", 'path = "/"', f"url = {_toml('file://' + str(root))}"]
    if ctx.moto_url:
        lines += ["[[mounts]]", 'path = "/s3"', f"url = {_toml(f's3://{BUCKET}/gw')}",
                  f"options = {_toml({'endpoint_url': ctx.moto_url, 'key': S3_KEY, 'secret': S3_SECRET})}"]
    pub = ctx.client_key.with_suffix(".pub").read_text().strip()
    lines += ["[[users]]", f"name = {_toml(ctx.user)}", f"password_hash = {_toml(hash_password(ctx.password))}",
              f"authorized_keys = {_toml([pub])}"]
    lines += ["[logging]", 'level = "INFO"']
    path = ctx.tmp / "gateway.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _dav_answers(port: int, prefix: str, user: str, password: str) -> str:
    """'' when PROPFIND on the DAV root answers 207, else the reason."""
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{prefix}/", method="PROPFIND",
                                 headers={"Depth": "0", "Authorization": f"Basic {auth}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return "" if r.status == 207 else f"PROPFIND answered {r.status}"
    except Exception as e:  # noqa: BLE001 - any failure means "not available"
        return f"PROPFIND failed: {e}"


def start_gateway(ctx: Context) -> list[Endpoint]:
    root = LocalStorage(ctx.tmp / "srv" / "gateway")
    ports = {"ftp": free_port(), "sftp": free_port(), "webdav": free_port()}
    config = gateway_config(ctx, root.root, ports)
    env = {"AWS_DEFAULT_REGION": "us-east-1", "PYTHONPATH": str(REPO)}
    proc = ctx.procs.spawn("gateway", [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
                           env=env, cwd=REPO)
    from gateway import __version__
    server = Server("gateway", proc, version=__version__)
    log = ctx.procs.log_dir / "gateway.log"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if "gateway ready" in log.read_text(errors="replace"):
            break
        time.sleep(0.1)
    else:
        server.note = "did not start: " + ctx.procs.log_tail("gateway")
    s3 = S3Storage(ctx.s3, BUCKET, "gw") if ctx.moto_url else None
    endpoints = []
    for proto in ctx.wire:
        port = ports[proto]
        note = server.note
        if not note and not wait_port(port, 2, proc):
            note = "not available"
        if not note and proto == "webdav" and _dav_answers(port, "/dav", ctx.user, ctx.password):
            note = "not available"
        prefix = "/dav" if proto == "webdav" else ""
        if proto in ctx.protocols:
            endpoints.append(Endpoint(server, proto, port, ctx.user, ctx.password, root, url_prefix=prefix,
                                      note=note))
        if s3:
            endpoints.append(Endpoint(server, proto, port, ctx.user, ctx.password, s3, base="s3",
                                      url_prefix=prefix, note=note))
    return endpoints


# -- peers ----------------------------------------------------------------------------------


def _bench_password() -> str:
    """The bench account's password: made once and kept (root only) in the
    bench cache, the same for every run, so that two runs side by side (a
    benchmark and the tests' smoke run) do not log each other out of vsftpd."""
    path = CACHE / "bench-user-password"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(12) + "\n")
        return path.read_text().strip()


def ensure_bench_user() -> tuple[int, int, str]:
    """The system account ``gwbench`` (vsftpd and sshd refuse root) with its
    kept password (see _bench_password); returns (uid, gid, password)."""
    password = _bench_password()
    try:
        pw = pwd.getpwnam(BENCH_USER)
    except KeyError:
        # vsftpd and sshd change into the home folder before their own root: "/" exists.
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/",
                        "--shell", "/bin/sh", BENCH_USER], check=True, capture_output=True)
        pw = pwd.getpwnam(BENCH_USER)
    subprocess.run(["chpasswd"], input=f"{BENCH_USER}:{password}", text=True, check=True, capture_output=True)
    return pw.pw_uid, pw.pw_gid, password


def start_vsftpd(ctx: Context, owner: tuple[int, int]) -> Endpoint:
    binary = find_binary("vsftpd")
    root = LocalStorage(ctx.tmp / "srv" / "vsftpd", owner)
    # `vsftpd -v` writes its version to file descriptor 0; ask dpkg instead.
    server = Server("vsftpd", None, version=_version(["dpkg-query", "-W", "-f=${Version}", "vsftpd"]))
    port = free_port()
    if not binary:
        return Endpoint(server, "ftp", port, BENCH_USER, ctx.bench_password, root, note="vsftpd not installed")
    empty = ctx.tmp / "vsftpd-empty"
    empty.mkdir(exist_ok=True)
    lo, hi = ctx.ports().split("-")
    conf = ctx.tmp / "vsftpd.conf"
    conf.write_text("\n".join([
        "listen=YES", "listen_ipv6=NO", "listen_address=127.0.0.1", f"listen_port={port}", "background=NO",
        "anonymous_enable=NO", "local_enable=YES", "write_enable=YES", "local_umask=022",
        f"local_root={root.root}", "chroot_local_user=YES", "allow_writeable_chroot=YES",
        f"secure_chroot_dir={empty}", "pam_service_name=vsftpd", "userlist_enable=NO",
        "pasv_enable=YES", f"pasv_min_port={lo}", f"pasv_max_port={hi}", "pasv_address=127.0.0.1",
        "seccomp_sandbox=NO", "isolate=NO", "isolate_network=NO", "xferlog_enable=NO",
        "utf8_filesystem=YES", "max_clients=0", "max_per_ip=0", "use_sendfile=YES",
    ]) + "\n")
    proc = ctx.procs.spawn("vsftpd", [binary, str(conf)])
    server.proc = proc
    note = "" if wait_port(port, 10, proc) else "did not start: " + ctx.procs.log_tail("vsftpd")
    return Endpoint(server, "ftp", port, BENCH_USER, ctx.bench_password, root, note=note)


def start_sshd(ctx: Context, owner: tuple[int, int]) -> Endpoint:
    binary = find_binary("sshd")
    root = LocalStorage(ctx.tmp / "srv" / "sshd", owner)
    server = Server("openssh", None, version=_version(["ssh", "-V"], r"OpenSSH_[\w.]+"))
    port = free_port()
    sftp_server = next((p for p in ("/usr/lib/openssh/sftp-server", "/usr/libexec/sftp-server",
                                    "/usr/lib/ssh/sftp-server") if os.path.exists(p)), None)
    if not binary or not sftp_server:
        return Endpoint(server, "sftp", port, BENCH_USER, "", root, note="openssh-server not installed")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    keys = ctx.tmp / "sshd_authorized_keys"
    keys.write_text(ctx.client_key.with_suffix(".pub").read_text())
    conf = ctx.tmp / "sshd_config"
    conf.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {ctx.host_key}", f"PidFile {ctx.tmp / 'sshd.pid'}",
        f"AuthorizedKeysFile {keys}", "StrictModes no", "PubkeyAuthentication yes", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "UsePAM no", "PermitRootLogin no", f"AllowUsers {BENCH_USER}",
        "UseDNS no", "LogLevel ERROR", f"Subsystem sftp {sftp_server} -d {root.root}",
    ]) + "\n")
    proc = ctx.procs.spawn("sshd", [binary, "-D", "-e", "-f", str(conf)])
    server.proc = proc
    note = "" if wait_port(port, 10, proc) else "did not start: " + ctx.procs.log_tail("sshd")
    return Endpoint(server, "sftp", port, BENCH_USER, "", root, note=note)


def start_nginx(ctx: Context) -> Endpoint:
    binary = find_binary("nginx")
    root = LocalStorage(ctx.tmp / "srv" / "nginx")
    server = Server("nginx", None, version=_version([binary, "-v"], r"nginx/[\d.]+") if binary else "")
    port = free_port()
    if not binary or not os.path.exists(NGINX_DAV_MODULE):
        return Endpoint(server, "webdav", port, ctx.user, ctx.password, root,
                        note="nginx with the dav_ext module (nginx-extras) not installed")
    work = ctx.tmp / "nginx"
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    (work / "htpasswd").write_text(f"{ctx.user}:{{PLAIN}}{ctx.password}\n")
    conf = work / "nginx.conf"
    conf.write_text(f"""load_module {NGINX_DAV_MODULE};
user root;
worker_processes auto;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root.root};
        client_max_body_size 0;
        create_full_put_path on;
        dav_methods PUT DELETE MKCOL COPY MOVE;
        dav_ext_methods PROPFIND OPTIONS;
        dav_access user:rw group:rw all:r;
        auth_basic "bench";
        auth_basic_user_file {work}/htpasswd;
        location / {{ }}
    }}
}}
""")
    proc = ctx.procs.spawn("nginx", [binary, "-c", str(conf), "-e", str(work / "error.log")])
    server.proc = proc
    note = "" if wait_port(port, 10, proc) else "did not start: " + ctx.procs.log_tail("nginx")
    return Endpoint(server, "webdav", port, ctx.user, ctx.password, root, note=note)


def start_rclone(ctx: Context, protocol: str, s3: bool) -> Endpoint:
    """``rclone serve <protocol>`` over a local folder, or over the bucket
    prefix ``rc/`` when ``s3``."""
    name = f"rclone-{protocol}" + ("-s3" if s3 else "")
    storage: LocalStorage | S3Storage = (S3Storage(ctx.s3, BUCKET, "rc") if s3
                                         else LocalStorage(ctx.tmp / "srv" / name))
    server = Server("rclone", None, version=_version([ctx.rclone, "version"], r"v[\d.]+\S*") if ctx.rclone else "",
                    label=name)
    port, rc_port = free_port(), free_port()
    if not ctx.rclone:
        return Endpoint(server, protocol, port, ctx.user, ctx.password, storage, note="rclone not installed")
    if protocol == "ftp" and ctx.rclone_note:
        return Endpoint(server, protocol, port, ctx.user, ctx.password, storage, note=ctx.rclone_note)
    config = ctx.tmp / "rclone.conf"
    config.touch()
    target = f"moto:{BUCKET}/rc" if s3 else str(storage.root)
    argv = [ctx.rclone, "serve", protocol, target, "--config", str(config), "--addr", f"127.0.0.1:{port}",
            "--user", ctx.user, "--pass", ctx.password,
            "--rc", "--rc-addr", f"127.0.0.1:{rc_port}", "--rc-no-auth"]
    if protocol == "ftp":
        argv += ["--passive-port", ctx.ports(), "--public-ip", "127.0.0.1"]
    if protocol == "sftp":
        keys = ctx.tmp / "rclone_authorized_keys"
        keys.write_text(ctx.client_key.with_suffix(".pub").read_text())
        argv += ["--authorized-keys", str(keys), "--key", str(ctx.host_key)]
    env = {"RCLONE_CONFIG_MOTO_TYPE": "s3", "RCLONE_CONFIG_MOTO_PROVIDER": "Other",
           "RCLONE_CONFIG_MOTO_ENDPOINT": ctx.moto_url or "", "RCLONE_CONFIG_MOTO_ACCESS_KEY_ID": S3_KEY,
           "RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY": S3_SECRET, "RCLONE_CONFIG_MOTO_REGION": "us-east-1",
           # rclone refuses a custom CA bundle on a plain-HTTP endpoint
           "AWS_CA_BUNDLE": None}
    proc = ctx.procs.spawn(name, argv, env=env)
    server.proc = proc
    server.rc_port = rc_port
    note = "" if wait_port(port, 15, proc) and wait_port(rc_port, 5, proc) else \
        "did not start: " + ctx.procs.log_tail(name)
    return Endpoint(server, protocol, port, ctx.user, ctx.password, storage, note=note)


def start_bare(ctx: Context, protocol: str) -> Endpoint:
    """The gateway's library for ``protocol`` serving a local folder on its
    own (see ``bare.py``)."""
    from importlib.metadata import version

    name = LIBRARIES[protocol]
    root = LocalStorage(ctx.tmp / "srv" / name)
    port = free_port()
    argv = [sys.executable, str(Path(__file__).with_name("bare.py")), protocol, "--port", str(port),
            "--root", str(root.root), "--user", ctx.user, "--password", ctx.password]
    if protocol == "ftp":
        argv += ["--passive-ports", ctx.ports()]
    if protocol == "sftp":
        keys = ctx.tmp / "bare_authorized_keys"
        keys.write_text(ctx.client_key.with_suffix(".pub").read_text())
        argv += ["--host-key", str(ctx.host_key), "--authorized-keys", str(keys)]
    proc = ctx.procs.spawn(name, argv)
    server = Server(name, proc, version=version(name))
    note = "" if wait_port(port, 20, proc) else "did not start: " + ctx.procs.log_tail(name)
    return Endpoint(server, protocol, port, ctx.user, ctx.password, root, note=note)


def start_moto(ctx: Context) -> None:
    """The S3 the remote-mount workloads use; sets ``ctx.moto_url``/``ctx.s3``."""
    import boto3

    port = free_port()
    proc = ctx.procs.spawn("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)])
    if not wait_port(port, 30, proc):
        raise RuntimeError("moto did not start: " + ctx.procs.log_tail("moto"))
    ctx.moto_url = f"http://127.0.0.1:{port}"
    ctx.s3 = boto3.client("s3", endpoint_url=ctx.moto_url, aws_access_key_id=S3_KEY,
                          aws_secret_access_key=S3_SECRET, region_name="us-east-1")
    ctx.s3.create_bucket(Bucket=BUCKET)


def start_all(ctx: Context) -> list[Endpoint]:
    """Start every server the selected protocols need; endpoints that could
    not start carry a ``note`` instead of failing the run."""
    for name, bits in (("client_key", ctx.tmp / "client_key"), ("host_key", ctx.tmp / "host_key")):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(bits)], check=True)
        setattr(ctx, name, bits)
    os.chmod(ctx.tmp, 0o755)  # the bench user must reach its folders under it
    if "s3" in ctx.protocols:
        start_moto(ctx)
    endpoints = start_gateway(ctx)
    owner: tuple[int, int] | None = None
    account_note = ""
    if ctx.protocols & {"ftp", "sftp"}:
        try:
            uid, gid, ctx.bench_password = ensure_bench_user()
            owner = (uid, gid)
        except (OSError, subprocess.CalledProcessError) as e:
            account_note = f"cannot set up the system account {BENCH_USER} (needs root): {e}"
    for proto in ctx.wire:
        if proto in ctx.protocols:
            if proto == "webdav":
                endpoints.append(start_nginx(ctx))
            elif owner is None:
                server = Server("vsftpd" if proto == "ftp" else "openssh", None)
                endpoints.append(Endpoint(server, proto, 0, BENCH_USER, "", None, note=account_note))
            else:
                endpoints.append((start_vsftpd if proto == "ftp" else start_sshd)(ctx, owner))
            endpoints.append(start_rclone(ctx, proto, s3=False))
            endpoints.append(start_bare(ctx, proto))
        if ctx.moto_url:
            endpoints.append(start_rclone(ctx, proto, s3=True))
    return endpoints
