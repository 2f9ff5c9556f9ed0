"""Real storage servers on 127.0.0.1 free ports, for the backend suite.

Each server can be stopped and started again on the same port (the fault
tests), tells the gateway how to mount it (``url``, ``options``) and lets a
test look at what the server itself holds (``files()``, ``read()``), not
through the gateway. ``S3`` is moto's server, ``SFTP`` a private OpenSSH
``sshd`` with its own config, host key, PidFile and authorized_keys in a temp
folder, ``FTP`` pyftpdlib, ``VSFTPD`` Debian's vsftpd and ``WebDAV``
wsgidav's FilesystemProvider on cheroot; ``FTPS``, ``VSFTPDS`` and
``WebDAVS`` are the same over TLS with a certificate of a test CA
(:func:`make_test_ca`).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from conftest import free_port

__all__ = ["Server", "Area", "Local", "Memory", "S3", "SFTP", "FTP", "FTPS", "VSFTPD", "VSFTPDS", "WebDAV", "WebDAVS", "KINDS", "ALL_KINDS", "REMOTE_KINDS",
           "servers", "fresh_server", "mount_spec", "free_port", "wait_port"]

USER = "gwtest"
PASSWORD = "srv-pw-4c1f7d2a9e"


def wait_port(port: int, up: bool = True, timeout: float = 10.0) -> None:
    """Wait until 127.0.0.1:``port`` accepts connections (or refuses, ``up`` False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not go {'up' if up else 'down'}")


class Server:
    """A storage server the gateway mounts. ``root`` is the folder it serves
    (None for S3, which keeps objects in moto's memory). Tests mount an
    :class:`Area` of it (a sub-folder of their own), so one server serves
    many tests."""

    kind = ""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.root: Path | None = tmp / "served"
        self.root.mkdir(parents=True, exist_ok=True)

    def start(self) -> "Server":
        return self

    def stop(self) -> None:
        pass

    def restart(self) -> None:
        self.stop()
        self.start()

    def url_for(self, sub: str) -> str:
        raise NotImplementedError

    @property
    def options(self) -> dict[str, Any]:
        return {}

    def area(self, name: str | None = None) -> "Area":
        """A fresh sub-folder ``name`` for one test to mount."""
        name = name or f"t{uuid.uuid4().hex[:8]}"
        self._make_area(name)
        return Area(self, name)

    def _make_area(self, name: str) -> None:
        (self.root / name).mkdir()

    # -- the server's own view (paths relative to its root) ------------------------

    def files(self, under: str = "") -> dict[str, int]:
        """{path below ``under``: size} of every file the server holds there."""
        base = self.root / under
        return {p.relative_to(base).as_posix(): p.stat().st_size for p in base.rglob("*") if p.is_file()}

    def dirs(self, under: str = "") -> set[str]:
        base = self.root / under
        return {p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_dir()}

    def read(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def put(self, rel: str, data: bytes) -> None:
        """Write a file on the server behind the gateway's back."""
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


class Area:
    """One test's sub-folder ``name`` of a server: the URL and options that
    mount it, and the server's own view of it."""

    def __init__(self, server: Server, name: str) -> None:
        self.server = server
        self.name = name

    @property
    def url(self) -> str:
        return self.server.url_for(self.name)

    @property
    def options(self) -> dict[str, Any]:
        return self.server.options

    def files(self, under: str = "") -> dict[str, int]:
        return self.server.files(f"{self.name}/{under}".rstrip("/"))

    def dirs(self, under: str = "") -> set[str]:
        return self.server.dirs(f"{self.name}/{under}".rstrip("/"))

    def read(self, rel: str) -> bytes:
        return self.server.read(f"{self.name}/{rel}")

    def put(self, rel: str, data: bytes) -> None:
        self.server.put(f"{self.name}/{rel}", data)


class Local(Server):
    """A local folder (``file://``): no server, the same checks."""

    kind = "file"

    def url_for(self, sub: str) -> str:
        return f"file://{self.root / sub}"


class Memory(Server):
    """fsspec's in-process memory store (``memory://``)."""

    kind = "memory"

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.root = None
        self.base = f"/srv-{uuid.uuid4().hex[:8]}"

    @property
    def fs(self):
        import fsspec

        return fsspec.filesystem("memory")

    def url_for(self, sub: str) -> str:
        return f"memory://{self.base}/{sub}"

    def _make_area(self, name: str) -> None:
        self.fs.mkdir(f"{self.base}/{name}")

    def files(self, under: str = "") -> dict[str, int]:
        base = f"{self.base}/{under}".rstrip("/")
        return {p[len(base) + 1:]: i["size"] for p, i in self.fs.find(base, detail=True).items()}

    def dirs(self, under: str = "") -> set[str]:
        base = f"{self.base}/{under}".rstrip("/")
        found = self.fs.find(base, withdirs=True, detail=True)
        return {p[len(base) + 1:] for p, i in found.items() if i["type"] == "directory" and p != base}

    def read(self, rel: str) -> bytes:
        return self.fs.cat_file(f"{self.base}/{rel}")

    def put(self, rel: str, data: bytes) -> None:
        self.fs.pipe_file(f"{self.base}/{rel}", data)


def _refused_delete(environ: dict, start_response) -> list[bytes]:
    """A DeleteObjects reply refusing every key of the request."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    keys = re.findall(rb"<Key>(.*?)</Key>", body)
    errors = b"".join(b"<Error><Key>%s</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>" % k
                      for k in keys)
    reply = (b'<?xml version="1.0" encoding="UTF-8"?><DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
             + errors + b"</DeleteResult>")
    start_response("200 OK", [("Content-Type", "application/xml"), ("Content-Length", str(len(reply)))])
    return [reply]


class S3(Server):
    """moto's S3 in this process (objects under ``bucket/mnt/``). ``stop()``
    also cuts open keep-alive connections, so the gateway really loses the
    server; ``latency_s`` delays every request, as a distant region would;
    ``requests`` records (method, query) of each; with ``refuse_deletes`` a
    DeleteObjects answers AccessDenied for every key and deletes none; while
    ``deletes_wait`` (a threading.Event) is not set, deletes wait for it."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.root = None
        self.bucket = f"b-{uuid.uuid4().hex[:8]}"
        self.prefix = "mnt"
        self.key, self.secret = "AKIDGATEWAYTEST", "s3-secret-9b8a7c6d5e"
        self._client = None
        self._server = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        #: the most CopyObject requests (UploadPartCopy too) held at once;
        #: an UploadPartCopy of part ``refuse_part`` answers 500
        self.most_copies = 0
        self.refuse_part: int | None = None
        self._copies = 0
        self._copies_lock = threading.Lock()
        self.latency_s = 0.0
        self.requests: list[tuple[str, str]] = []
        self.refuse_deletes = False
        self.deletes_wait: threading.Event | None = None
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    kind = "s3"

    def url_for(self, sub: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}/{sub}"

    def _make_area(self, name: str) -> None:
        pass  # a prefix exists once something is under it

    @property
    def options(self) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint, "key": self.key, "secret": self.secret}

    def start(self) -> "S3":
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import WSGIRequestHandler, make_server

        conns = self._conns

        class Handler(WSGIRequestHandler):
            def setup(self):
                super().setup()
                conns.add(self.connection)

            def finish(self):
                conns.discard(self.connection)
                super().finish()

            def log_request(self, *args, **kwargs):
                pass

        moto_app = DomainDispatcherApplication(create_backend_app)

        def app(environ, start_response):
            if self.latency_s:
                time.sleep(self.latency_s)
            method, query = environ["REQUEST_METHOD"], environ.get("QUERY_STRING", "")
            self.requests.append((method, query))
            deleting = method == "DELETE" or (method == "POST" and query.split("&")[0] in ("delete", "delete="))
            if deleting and self.deletes_wait is not None:
                self.deletes_wait.wait(30)
            if self.refuse_deletes and deleting and method == "POST":
                return _refused_delete(environ, start_response)
            return moto_app(environ, start_response)

        def copies_counted(environ, start_response):
            if "HTTP_X_AMZ_COPY_SOURCE" not in environ:
                return app(environ, start_response)
            if self.refuse_part is not None and \
                    f"partNumber={self.refuse_part}" in environ.get("QUERY_STRING", "").split("&"):
                reply = b"<Error><Code>InternalError</Code><Message>refused by the test</Message></Error>"
                start_response("500 Internal Server Error", [("Content-Type", "application/xml"),
                                                             ("Content-Length", str(len(reply)))])
                return [reply]
            with self._copies_lock:
                self._copies += 1
                self.most_copies = max(self.most_copies, self._copies)
            try:
                return app(environ, start_response)
            finally:
                with self._copies_lock:
                    self._copies -= 1

        self._server = make_server("127.0.0.1", self.port, copies_counted, threaded=True, request_handler=Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        wait_port(self.port)
        if self._client_ok():
            return self
        self.client().create_bucket(Bucket=self.bucket)
        return self

    def _client_ok(self) -> bool:
        try:
            self.client().head_bucket(Bucket=self.bucket)
            return True
        except Exception:  # noqa: BLE001 - the bucket is made on first start
            return False

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._thread.join(10)
        for c in list(self._conns):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server = None
        wait_port(self.port, up=False)

    def client(self):
        if self._client is None:
            import boto3

            from botocore.config import Config

            # Objects without the CRC32 newer SDKs add: the gateway's own MD5
            # check is then the one that sees corruption (see corrupt()).
            self._client = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.key,
                                        aws_secret_access_key=self.secret, region_name="us-east-1",
                                        config=Config(request_checksum_calculation="when_required",
                                                      response_checksum_validation="when_required"))
        return self._client

    def keys(self, under: str = "") -> dict[str, dict]:
        """{key below ``under`` (markers end in /): object} as S3 lists them."""
        base = f"{self.prefix}/{under}".rstrip("/") + "/"
        out = {}
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base):
            for o in page.get("Contents", []):
                out[o["Key"][len(base):]] = o
        return out

    def files(self, under: str = "") -> dict[str, int]:
        return {k: o["Size"] for k, o in self.keys(under).items() if not k.endswith("/")}

    def dirs(self, under: str = "") -> set[str]:
        out = set()
        for k in self.keys(under):
            parts = k.rstrip("/").split("/")
            for i in range(1, len(parts) + (1 if k.endswith("/") else 0)):
                out.add("/".join(parts[:i]))
        return out - {""}

    def etag(self, rel: str) -> str:
        return self.client().head_object(Bucket=self.bucket, Key=f"{self.prefix}/{rel}")["ETag"].strip('"')

    def corrupt(self, rel: str) -> None:
        """Flip the first byte the server keeps for ``rel`` while it still
        reports the old ETag (bit rot behind S3's back)."""
        from moto.backends import get_backend

        key = get_backend("s3")["123456789012"]["global"].buckets[self.bucket].keys[f"{self.prefix}/{rel}"]
        buf = key._value_buffer
        buf.seek(0)
        first = buf.read(1)
        buf.seek(0)
        buf.write(bytes([first[0] ^ 0xFF]))

    def read(self, rel: str) -> bytes:
        return self.client().get_object(Bucket=self.bucket, Key=f"{self.prefix}/{rel}")["Body"].read()

    def put(self, rel: str, data: bytes) -> None:
        self.client().put_object(Bucket=self.bucket, Key=f"{self.prefix}/{rel}", Body=data)


class SFTP(Server):
    """A private OpenSSH sshd (run by the current user, key login, the
    internal-sftp subsystem) serving ``root`` by absolute path."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.conf_dir = tmp / "sshd"
        self.conf_dir.mkdir(exist_ok=True)
        self.host_key = self.conf_dir / "host_ed25519"
        self.client_key = self.conf_dir / "client_ed25519"
        for key in (self.host_key, self.client_key):
            if not key.exists():
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        shutil.copy(f"{self.client_key}.pub", self.conf_dir / "authorized_keys")
        self.user = os.environ.get("USER") or __import__("pwd").getpwuid(os.getuid()).pw_name
        self.config = self.conf_dir / "sshd_config"
        self.config.write_text("\n".join([
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key}",
            f"PidFile {self.conf_dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.conf_dir / 'authorized_keys'}",
            "UsePAM no",
            "StrictModes no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            "Subsystem sftp internal-sftp",
            "MaxSessions 32",
            "MaxStartups 64",
            "LogLevel ERROR",
        ]) + "\n")
        self._proc: subprocess.Popen | None = None

    kind = "sftp"

    def url_for(self, sub: str) -> str:
        return f"sftp://{self.user}@127.0.0.1:{self.port}{self.root}/{sub}"

    @property
    def options(self) -> dict[str, Any]:
        return {"client_keys": [str(self.client_key)]}

    def start(self) -> "SFTP":
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
        self._proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(self.config)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      start_new_session=True)
        try:
            wait_port(self.port)
        except TimeoutError:
            err = self._proc.stderr.read1().decode(errors="replace") if self._proc.poll() is not None else ""
            raise RuntimeError(f"sshd did not start: {err}") from None
        return self

    def stop(self) -> None:
        """Stop sshd and every session process it forked (the server is gone,
        not just its listener)."""
        if self._proc is None:
            return
        for pid in [*_descendants(self._proc.pid), self._proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._proc.wait(10)
        self._proc.stderr.close()
        self._proc = None
        wait_port(self.port, up=False)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


class FTP(Server):
    """pyftpdlib, one user with a password, serving ``root``."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self._server = None
        self._thread: threading.Thread | None = None

    kind = "ftp"

    def url_for(self, sub: str) -> str:
        return f"ftp://127.0.0.1:{self.port}/{sub}"

    @property
    def options(self) -> dict[str, Any]:
        return {"username": USER, "password": PASSWORD}

    def start(self) -> "FTP":
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.servers import ThreadedFTPServer

        auth = DummyAuthorizer()
        auth.add_user(USER, PASSWORD, str(self.root), perm="elradfmwMT")
        handler = type("Handler", (self._handler_class(),), {"authorizer": auth, "banner": "test ftpd",
                                                             "permit_foreign_addresses": False,
                                                             "auth_failed_timeout": 0.1})
        self._server = ThreadedFTPServer(("127.0.0.1", self.port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                         kwargs={"handle_exit": False}, daemon=True)
        self._thread.start()
        wait_port(self.port)
        return self

    def _handler_class(self) -> type:
        from pyftpdlib.handlers import FTPHandler

        return FTPHandler

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.close_all()
        self._thread.join(10)
        self._server = None
        wait_port(self.port, up=False)


def make_test_ca(folder: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) in ``folder``, made
    once: a throw-away CA and a certificate it signed for 127.0.0.1 and
    localhost. Mounts trust the CA (``tls_ca_file``), as they would a
    company's own."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    if key_file.exists():
        return ca_file, cert_file, key_file
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)

    def build(subject: str, issuer: str, public_key, signing_key, ca: bool):
        b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])).public_key(public_key)
             .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
             .not_valid_after(now + dt.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                              content_commitment=False, key_encipherment=False,
                                              data_encipherment=False, key_agreement=False, encipher_only=False,
                                              decipher_only=False), critical=True)
            b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        else:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                             x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                critical=False)
            b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()),
                                critical=False)
        return b.sign(signing_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = build("gateway test CA", "gateway test CA", ca_key.public_key(), ca_key, True)
    server = build("127.0.0.1", "gateway test CA", server_key.public_key(), ca_key, False)
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return ca_file, cert_file, key_file


class _TestCA:
    """A server whose certificate the test CA signed (``ca_file``, which
    the mount is told to trust via tls_ca_file)."""

    tmp: Path

    @property
    def ca_file(self) -> Path:
        return make_test_ca(self.tmp / "tls")[0]

    def _tls(self) -> tuple[Path, Path]:
        return make_test_ca(self.tmp / "tls")[1:]


class FTPS(_TestCA, FTP):
    """pyftpdlib with explicit TLS required (AUTH TLS, PROT P), on a
    certificate of the test CA."""

    kind = "ftps"

    @property
    def options(self) -> dict[str, Any]:
        return {**super().options, "tls": True, "tls_ca_file": str(self.ca_file)}

    def _handler_class(self) -> type:
        # From its own module, as the gateway takes it: ``pyftpdlib.handlers``
        # has no TLS_FTPHandler once imported without pyOpenSSL, as the
        # gateway's plain FTP front end imports it (protocols/ftp/__init__.py)
        # in this process when a test started one first.
        from OpenSSL import SSL
        from pyftpdlib import utils
        from pyftpdlib.handlers.ftps.control import TLS_FTPHandler

        utils.SSL = SSL

        cert, key = self._tls()
        return type("TLSHandler", (TLS_FTPHandler,), {"certfile": str(cert), "keyfile": str(key),
                                                       "tls_control_required": True, "tls_data_required": True})


class VSFTPD(Server):
    """vsftpd (the FTP server Debian ships): anonymous sessions may read and
    write the ``served`` folder, so no system account is needed. It has no
    MLSD/MLST, so the mount lists with LIST and stats with MDTM/SIZE."""

    kind = "vsftpd"

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        # vsftpd chroots anonymous sessions into anon_root, which must not be
        # writable by them; they write below it, as the system user "ftp".
        self.anon_root = tmp / "anon"
        self.anon_root.mkdir(mode=0o755)
        self.root.rename(self.anon_root / "served")
        self.root = self.anon_root / "served"
        shutil.chown(self.root, "ftp", "ftp")
        self._proc: subprocess.Popen | None = None

    def url_for(self, sub: str) -> str:
        return f"ftp://127.0.0.1:{self.port}/served/{sub}"

    @property
    def options(self) -> dict[str, Any]:
        return {"username": "anonymous", "password": "guest"}

    def _make_area(self, name: str) -> None:
        super()._make_area(name)
        shutil.chown(self.root / name, "ftp", "ftp")

    def put(self, rel: str, data: bytes) -> None:
        super().put(rel, data)
        for part in [*Path(rel).parents][:-1] + [Path(rel)]:  # what the anonymous user must be able to change
            shutil.chown(self.root / part, "ftp", "ftp")

    def start(self) -> "VSFTPD":
        lo = random.randrange(40000, 58900)  # above every free_port(), which servers bind later
        conf = self.tmp / "vsftpd.conf"
        empty = self.tmp / "vsftpd-empty"
        empty.mkdir(exist_ok=True)
        conf.write_text("\n".join([
            "listen=YES", "listen_ipv6=NO", "listen_address=127.0.0.1", f"listen_port={self.port}",
            "background=NO", "anonymous_enable=YES", "local_enable=NO", "write_enable=YES",
            f"anon_root={self.anon_root}", "no_anon_password=YES", "anon_upload_enable=YES",
            "anon_mkdir_write_enable=YES", "anon_other_write_enable=YES", "anon_world_readable_only=NO",
            "anon_umask=022", f"secure_chroot_dir={empty}", "pasv_enable=YES", f"pasv_min_port={lo}",
            f"pasv_max_port={lo + 100}", "pasv_address=127.0.0.1", "seccomp_sandbox=NO", "isolate=NO",
            "isolate_network=NO", "xferlog_enable=NO", "utf8_filesystem=YES", *self._extra_config(),
        ]) + "\n")
        self._proc = subprocess.Popen([shutil.which("vsftpd") or "/usr/sbin/vsftpd", str(conf)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        return self

    def _extra_config(self) -> list[str]:
        return []

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        self._proc.wait(10)
        self._proc = None
        wait_port(self.port, up=False)


class VSFTPDS(_TestCA, VSFTPD):
    """vsftpd with explicit TLS required for logins and data, on a
    certificate of the test CA (TLS sessions need not be reused on data
    connections: ftplib does not reuse them)."""

    kind = "vsftpds"

    @property
    def options(self) -> dict[str, Any]:
        return {**super().options, "tls": True, "tls_ca_file": str(self.ca_file)}

    def _extra_config(self) -> list[str]:
        cert, key = self._tls()
        return ["ssl_enable=YES", "allow_anon_ssl=YES", "force_anon_logins_ssl=YES", "force_anon_data_ssl=YES",
                f"rsa_cert_file={cert}", f"rsa_private_key_file={key}", "require_ssl_reuse=NO"]


class WebDAV(Server):
    """wsgidav's FilesystemProvider on cheroot, basic auth; with
    ``mutable_times`` it sets a file's time on PROPPATCH of getlastmodified."""

    mutable_times = True

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self._server = None
        self._thread: threading.Thread | None = None

    kind = "webdav"

    def url_for(self, sub: str) -> str:
        return f"webdav://127.0.0.1:{self.port}/dav/{sub}"

    @property
    def options(self) -> dict[str, Any]:
        return {"auth": [USER, PASSWORD]}

    def start(self) -> "WebDAV":
        import logging

        from cheroot import wsgi
        from wsgidav.wsgidav_app import WsgiDAVApp

        app = WsgiDAVApp({
            "provider_mapping": {"/dav": str(self.root)},
            "simple_dc": {"user_mapping": {"*": {USER: {"password": PASSWORD}}}},
            "http_authenticator": {"accept_basic": True, "accept_digest": False, "default_to_digest": False},
            "verbose": 0,
            "logging": {"enable": False, "enable_loggers": []},
            "lock_storage": True,
            "property_manager": True,
            "mutable_live_props": ["{DAV:}getlastmodified"] if self.mutable_times else [],
        })
        logging.getLogger("wsgidav").setLevel(logging.ERROR)
        self._server = wsgi.Server(("127.0.0.1", self.port), app, numthreads=16)
        self._server.ssl_adapter = self._ssl_adapter()
        self._server.prepare()
        self._thread = threading.Thread(target=self._server.serve, daemon=True)
        self._thread.start()
        wait_port(self.port)
        return self

    def _ssl_adapter(self) -> Any:
        """None: plain HTTP."""
        return None

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.stop()
        self._thread.join(10)
        self._server = None
        wait_port(self.port, up=False)


class WebDAVS(_TestCA, WebDAV):
    """The WebDAV server over HTTPS (cheroot's ssl adapter), on a
    certificate of the test CA; like most servers, it refuses to set
    modification times."""

    kind = "webdavs"
    mutable_times = False

    def url_for(self, sub: str) -> str:
        return f"webdavs://127.0.0.1:{self.port}/dav/{sub}"

    @property
    def options(self) -> dict[str, Any]:
        return {**super().options, "tls_ca_file": str(self.ca_file)}

    def _ssl_adapter(self) -> Any:
        from cheroot.ssl.builtin import BuiltinSSLAdapter

        cert, key = self._tls()
        return BuiltinSSLAdapter(str(cert), str(key))


#: Every kind of mount the suite runs against, by name.
KINDS: dict[str, type[Server]] = {c.kind: c for c in (Memory, Local, S3, SFTP, FTP, FTPS, VSFTPD, VSFTPDS, WebDAV,
                                                     WebDAVS)}
ALL_KINDS = list(KINDS)
REMOTE_KINDS = [k for k in KINDS if k not in ("memory", "file")]


# Fixtures: a test module imports the ones it uses (a conftest.py here would
# shadow the top-level one that other test folders import as ``conftest``).

@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """kind → a started server, started on first use, stopped after the
    module; each test mounts a fresh :class:`Area` of it."""
    started: dict[str, Server] = {}

    def get(kind: str) -> Server:
        if kind not in started:
            started[kind] = KINDS[kind](tmp_path_factory.mktemp(kind)).start()
        return started[kind]

    yield get
    for server in started.values():
        server.stop()


@pytest.fixture
def fresh_server(tmp_path):
    """kind → a server of this test alone (it may stop and restart it)."""
    started: list[Server] = []

    def make(kind: str) -> Server:
        server = KINDS[kind](tmp_path / f"srv-{kind}-{len(started)}").start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def mount_spec(area: Area, **fields: Any) -> tuple:
    """The gateway_factory mount entry for ``area``: (url, options, mount fields)."""
    return (area.url, area.options, {"cache_ttl_s": 30.0, "timeout_s": 5.0, "retries": 2, **fields})
