"""The FTP front end driven by real clients: lftp and Python's ftplib."""

import filecmp
import hashlib
import ftplib
import io
import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

import pytest

from conftest import PASSWORDS, unique_memory
from gateway.errors import ALL_ERRORS
from protocols.ftp.errors import REPLY, reply_code

pytestmark = pytest.mark.timeout(180)
PW = PASSWORDS["alice"]


def connect(r, user="alice", password=None, cls=ftplib.FTP):
    ftp = cls()
    ftp.encoding = "utf-8"
    ftp.connect("127.0.0.1", r.port("ftp"), timeout=30)
    ftp.login(user, password or PASSWORDS[user])
    return ftp


def lftp(r, script, extra=""):
    cmd = ["lftp", "-u", f"alice,{PW}", "-p", str(r.port("ftp")), "-e",
           f"set net:max-retries 1; set net:timeout 20; {extra} {script}; quit", "127.0.0.1"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=150)


@pytest.fixture
def ftp_gw(gateway_factory):
    return gateway_factory(protocols=("ftp",))


def test_lftp_mirror_500_files_up_and_down(ftp_gw, tmp_path):
    src = tmp_path / "src"
    for i in range(500):
        p = src / f"d{i % 10}" / f"f{i:03}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(i * 37 % 9000))
    p = lftp(ftp_gw, f"mirror -R --parallel=4 {src} /tree")
    assert p.returncode == 0, p.stderr
    back = tmp_path / "back"
    p = lftp(ftp_gw, f"mirror --parallel=4 /tree {back}")
    assert p.returncode == 0, p.stderr
    cmp = filecmp.dircmp(src, back)
    assert not cmp.left_only and not cmp.right_only
    for sub in cmp.subdirs.values():
        assert not sub.left_only and not sub.right_only and not sub.diff_files
        _, mismatch, errors = filecmp.cmpfiles(sub.left, sub.right, sub.common_files, shallow=False)
        assert not mismatch and not errors


def test_every_command(ftp_gw):
    ftp = connect(ftp_gw)
    assert "UTF8" in ftp.sendcmd("FEAT") and "HASH SHA-256*" in ftp.sendcmd("FEAT")
    assert ftp.sendcmd("OPTS UTF8 ON").startswith("200")
    assert ftp.mkd("d").endswith("d")
    ftp.cwd("d")
    assert ftp.pwd() == "/d"
    ftp.storbinary("STOR a.txt", io.BytesIO(b"hello"))
    ftp.storbinary("APPE a.txt", io.BytesIO(b" world"))
    assert ftp.size("a.txt") == 11
    assert ftp.sendcmd("MDTM a.txt").startswith("213 ")
    out = io.BytesIO()
    ftp.retrbinary("RETR a.txt", out.write, rest=6)
    assert out.getvalue() == b"world"
    resp = ftp.storbinary("STOU", io.BytesIO(b"u"))
    assert resp.startswith("226")
    assert len(ftp.nlst()) == 2
    lines = []
    ftp.retrlines("LIST", lines.append)
    assert any(line.endswith(" a.txt") and " 11 " in line for line in lines)
    facts = dict(ftp.mlsd())
    assert facts["a.txt"]["type"] == "file" and facts["a.txt"]["size"] == "11"
    assert "type=file" in ftp.sendcmd("MLST a.txt")
    ftp.cwd("..")
    ftp.sendcmd("CDUP")
    ftp.rename("/d/a.txt", "/d/b.txt")
    assert ftp.sendcmd("SITE CPFR /d/b.txt").startswith("350")
    assert ftp.sendcmd("SITE CPTO /d/c.txt").startswith("250")
    assert ftp.sendcmd("XMD5 /d/c.txt") == "250 5eb63bbbe01eeed093cb22bb8f5acdc3"
    assert ftp.sendcmd("XSHA1 /d/c.txt") == "250 2aae6c35c94fcfb415dbe95f408b9ce91ee846ed"
    sha = hashlib.sha256(b"hello world").hexdigest()
    assert ftp.sendcmd("HASH /d/c.txt") == f"213 SHA-256 0-11 {sha} /d/c.txt"
    assert ftp.sendcmd("OPTS HASH MD5") == "200 MD5"
    assert ftp.sendcmd("HASH /d/c.txt").startswith("213 MD5 0-11 5eb63bbbe01eeed0")
    ftp.delete("/d/b.txt")
    ftp.rmd("/d")  # non-empty: recursive through the core
    assert ftp.nlst("/") == ["slow"]  # only the mount point is left
    ftp.sendcmd("TYPE I")
    ftp.voidcmd("NOOP")
    ftp.quit()


def test_resume_an_interrupted_upload(ftp_gw, tmp_path):
    data = os.urandom(3_000_000)
    ftp = connect(ftp_gw)
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("STOR big.bin")
    conn.sendall(data[:1_000_000])
    conn.close()
    ftp.voidresp()
    assert ftp.size("big.bin") == 1_000_000
    ftp.storbinary("STOR big.bin", io.BytesIO(data[1_000_000:]), rest=1_000_000)
    assert ftp.size("big.bin") == 3_000_000
    local = tmp_path / "big.bin"
    local.write_bytes(data)
    # lftp's own resume: a cut short copy, then put -c
    ftp.storbinary("STOR l.bin", io.BytesIO(data[:500_000]))
    p = lftp(ftp_gw, f"put -c {local} -o /l.bin")
    assert p.returncode == 0, p.stderr
    out = io.BytesIO()
    ftp.retrbinary("RETR l.bin", out.write)
    assert out.getvalue() == data
    tail = io.BytesIO()  # a resumed download, several data blocks from an offset
    ftp.retrbinary("RETR big.bin", tail.write, rest=500_001)
    assert tail.getvalue() == data[500_001:]
    ftp.quit()
    assert (ftp_gw.data / "big.bin").read_bytes() == data


def test_an_aborted_upload_leaves_nothing(ftp_gw):
    ftp = connect(ftp_gw)
    ftp.storbinary("STOR keep.txt", io.BytesIO(b"old"))
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("STOR keep.txt")
    conn.sendall(b"new partial")
    ftp.abort()
    conn.close()
    try:
        ftp.voidresp()
    except ftplib.Error:
        pass
    out = io.BytesIO()
    ftp.retrbinary("RETR keep.txt", out.write)
    assert out.getvalue() in (b"old", b"new partial")  # whole old or whole new, never mixed
    ftp.quit()


def test_error_codes(ftp_gw):
    ftp = connect(ftp_gw)
    for cmd, code in (("RETR /missing", "550"), ("SIZE /missing", "550"), ("CWD /missing", "550"),
                      ("DELE /missing", "550"), ("MKD /no/parent/x", "550"), ("MKD /.gw-x", "553")):
        with pytest.raises(ftplib.Error) as ei:
            ftp.sendcmd(cmd) if not cmd.startswith("RETR") else ftp.retrbinary(cmd, lambda b: None)
        assert str(ei.value).startswith(code), (cmd, ei.value)
    with pytest.raises(ftplib.error_perm) as ei:
        ftp.sendcmd("SITE JOB nope")
    assert "no job" in str(ei.value)
    ftp.quit()


def test_error_table_covers_every_gateway_error():
    for cls in ALL_ERRORS:
        code = reply_code(cls("x"))
        assert 400 <= code < 600
    assert REPLY[type(ALL_ERRORS[0]("x"))] == 451


def test_bad_password_then_ban(gateway_factory):
    r = gateway_factory(protocols=("ftp",), sections={"auth": {"max_failures": 3}})
    for _ in range(3):
        with pytest.raises(ftplib.error_perm) as ei:
            connect(r, password="wrong")
        assert str(ei.value).startswith("530")
    with pytest.raises(ftplib.error_perm) as ei:
        connect(r)  # even the right password, from this address
    assert "too many failed logins" in str(ei.value).lower()


def _slow_gateway(gateway_factory, n=200):
    r = gateway_factory(protocols=("ftp",), budget_ms=300,
                        mounts={"/slow": (f"slow::memory://{unique_memory()}", {"slow": {"latency_ms": 5}})})
    s = r.session("alice")
    for name in ("tree", "other"):
        r.ops.mkdir(s, f"/slow/{name}")
        for i in range(n):
            r.ops.open_write(s, f"/slow/{name}/f{i:03}").commit()
    return r


def test_backgrounded_rename_and_site_stop(gateway_factory):
    r = _slow_gateway(gateway_factory)
    me, other = connect(r), connect(r)
    t = time.monotonic()
    reply = me.sendcmd("RNFR /slow/tree") and me.sendcmd("RNTO /slow/moved")
    assert time.monotonic() - t < 0.3 + 1.0
    assert reply.startswith("250") and "running in background as job" in reply
    job_id = reply.rsplit(" ", 1)[1]
    assert sorted(n.rsplit("/", 1)[-1] for n in me.nlst("/slow")) == ["moved", "other"]
    seen_old = 0
    while r.gw.store.get(job_id).state != "completed":
        names = [n.rsplit("/", 1)[-1] for n in other.nlst("/slow")]
        assert sorted(names) in (["other", "tree"], ["moved", "other"])
        seen_old += names.count("tree")
        time.sleep(0.05)
    assert seen_old >= 2
    assert sorted(n.rsplit("/", 1)[-1] for n in other.nlst("/slow")) == ["moved", "other"]
    assert len(other.nlst("/slow/moved")) == 200
    assert job_id in me.sendcmd("SITE JOB " + job_id) and "completed" in me.sendcmd("SITE JOB " + job_id)
    # a second job, stopped: the source stays whole, no destination
    reply = me.sendcmd("RNFR /slow/other") and me.sendcmd("RNTO /slow/gone")
    job_id = reply.rsplit(" ", 1)[1]
    listing = me.sendcmd("SITE JOBS")
    assert job_id in listing and "ItemMove /slow/other -> /slow/gone" in listing
    with pytest.raises(ftplib.error_temp) as ei:
        other.storbinary("STOR /slow/other/new", io.BytesIO(b"x"))
    assert str(ei.value).startswith("450") and job_id in str(ei.value)
    reply = me.sendcmd(f"SITE STOP {job_id}")  # once stopped and rolled back (or 5 s), with its state
    assert reply.startswith(f"200 {job_id} ItemMove /slow/other -> /slow/gone stopped "), reply
    assert r.gw.dispatcher.wait(job_id, 30).state == "stopped"
    assert sorted(n.rsplit("/", 1)[-1] for n in other.nlst("/slow")) == ["moved", "other"]
    assert len(other.nlst("/slow/other")) == 200


def test_ftps_explicit_with_lftp_and_ftplib_and_implicit(gateway_factory, tmp_path):
    r = gateway_factory(protocols=("ftp",), sections={"ftp": {"tls": "explicit"}})
    local = tmp_path / "x.bin"
    local.write_bytes(os.urandom(3_000_000))  # several data blocks
    p = lftp(r, f"put {local} -o /x.bin; get /x.bin -o {tmp_path}/y.bin",
             extra="set ssl:verify-certificate no; set ftp:ssl-force yes; set ftp:ssl-protect-data yes;")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "y.bin").read_bytes() == local.read_bytes()
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ftps = ftplib.FTP_TLS(context=ctx)
    ftps.connect("127.0.0.1", r.port("ftp"), timeout=30)
    ftps.login("alice", PW)
    ftps.prot_p()
    out = io.BytesIO()
    ftps.retrbinary("RETR /x.bin", out.write)
    assert out.getvalue() == local.read_bytes()
    ftps.quit()

    implicit = gateway_factory(protocols=("ftp",), sections={"ftp": {"tls": "implicit"}})

    class ImplicitFTPS(ftplib.FTP_TLS):
        def connect(self, host, port, timeout):
            self.host, self.port, self.timeout = host, port, timeout
            self.sock = self.context.wrap_socket(socket.create_connection((host, port), timeout))
            self.af = self.sock.family
            self.file = self.sock.makefile("r", encoding=self.encoding)
            self.welcome = self.getresp()
            return self.welcome

    c = ImplicitFTPS(context=ctx)
    c.connect("127.0.0.1", implicit.port("ftp"), 30)
    c.login("alice", PW)
    c.prot_p()
    c.storbinary("STOR /i.txt", io.BytesIO(b"implicit"))
    assert c.size("/i.txt") == 8
    c.quit()


def test_ftps_uploads_by_lftp_arrive_whole_while_the_server_is_slow(gateway_factory, tmp_path):
    """lftp writes a file into its socket, sends close_notify and closes
    without reading. A TLS 1.3 session ticket the server sent after that
    close (the server busy) made lftp's kernel reset the connection and
    drop the file's undelivered rest, and the server answered 226 to the
    reset: lftp exited 0, a file of 114,688 of 3,000,000 bytes was kept.
    The server is slowed here by a thread that holds the GIL (the gateway
    runs in this process)."""
    r = gateway_factory(protocols=("ftp",), sections={"ftp": {"tls": "explicit"}})
    files = []
    for i in range(10):
        f = tmp_path / f"u{i}.bin"
        f.write_bytes(os.urandom(1_000_000 + i))
        files.append(f)
    stop = threading.Event()

    def hog() -> None:
        while not stop.is_set():
            sum(range(1000))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.02)
    hogger = threading.Thread(target=hog, daemon=True)
    hogger.start()
    try:
        p = lftp(r, "; ".join(f"put {f} -o /{f.name}" for f in files),
                 extra="set ssl:verify-certificate no; set ftp:ssl-force yes; set ftp:ssl-protect-data yes;")
    finally:
        stop.set()
        hogger.join()
        sys.setswitchinterval(interval)
    sizes = {f.name: (r.data / f.name).stat().st_size if (r.data / f.name).exists() else None for f in files}
    assert p.returncode == 0 and "rror" not in p.stderr, (p.stderr, sizes)
    for f in files:
        assert hashlib.sha256((r.data / f.name).read_bytes()).digest() == hashlib.sha256(f.read_bytes()).digest()


def test_an_upload_the_client_did_not_end_is_never_complete(gateway_factory):
    """A data connection reset by the client (FTP) or closed without TLS
    close_notify (FTPS) is a cut-short upload: 426, nothing stored (pyftpdlib
    answered 226 and kept what had arrived). The same upload ended properly
    is stored whole."""
    r = gateway_factory(protocols=("ftp",), sections={"ftp": {"tls": "explicit"}})
    data = os.urandom(2_000_000)
    plain = connect(r)
    plain.voidcmd("TYPE I")
    conn = plain.transfercmd("STOR reset.bin")
    conn.sendall(data)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
    conn.close()
    with pytest.raises(ftplib.error_temp, match="^42[56] "):  # 425 when reset before the server accepted it
        plain.voidresp()
    assert not (r.data / "reset.bin").exists()
    plain.quit()

    ftps = ftplib.FTP_TLS(context=_tls_context())
    ftps.connect("127.0.0.1", r.port("ftp"), timeout=30)
    ftps.login("alice", PW)
    ftps.prot_p()
    ftps.voidcmd("TYPE I")
    conn = ftps.transfercmd("STOR cut.bin")
    conn.sendall(data)
    conn.close()  # no unwrap: a FIN without close_notify
    with pytest.raises(ftplib.error_temp, match="^426 .*close_notify"):
        ftps.voidresp()
    assert not (r.data / "cut.bin").exists()
    ftps.storbinary("STOR whole.bin", io.BytesIO(data))  # ends with close_notify
    assert (r.data / "whole.bin").read_bytes() == data
    ftps.quit()


def _tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx


def _login_reply(r, password: str) -> str:
    with pytest.raises(ftplib.error_perm) as ei:
        connect(r, password=password)
    return str(ei.value)


def test_user_required_to_use_tls_gets_no_password_oracle_in_clear(gateway_factory):
    """On a plain channel a right and a wrong password of a user who must
    use TLS get the same reply, both counted as failures; the reply tells
    how to log in."""
    r = gateway_factory(protocols=("ftp",), sections={"ftp": {"tls": "explicit"}, "auth": {"max_failures": 3}},
                        users={"alice": {"require_tls": True}})
    right, wrong = _login_reply(r, PW), _login_reply(r, "wrong")
    assert right == wrong
    assert right.startswith("530 ") and "send AUTH TLS first" in right
    assert _login_reply(r, PW) == wrong  # the third failure: the address is banned now
    with pytest.raises(ftplib.error_perm, match="(?i)too many failed logins"):
        connect(r, password="wrong")


def test_user_required_to_use_tls_must_protect_data(gateway_factory):
    """``require_tls`` covers data too: without PROT P no data connection is
    opened and no transfer runs (522); with it, all work. Other users keep
    PROT C."""
    r = gateway_factory(protocols=("ftp",), sections={"ftp": {"tls": "explicit"}},
                        users={"alice": {"require_tls": True}})
    (r.data / "a.txt").write_bytes(b"secret")
    ftps = ftplib.FTP_TLS(context=_tls_context())
    ftps.connect("127.0.0.1", r.port("ftp"), timeout=30)
    ftps.login("alice", PW)  # AUTH TLS first
    for attempt in (lambda: ftps.nlst(), lambda: ftps.retrbinary("RETR a.txt", lambda b: None),
                    lambda: ftps.storbinary("STOR b.txt", io.BytesIO(b"x")), lambda: ftps.sendcmd("PASV"),
                    lambda: ftps.sendcmd("EPSV")):
        with pytest.raises(ftplib.error_perm, match="^522 Data connection must be protected"):
            attempt()
    assert not (r.data / "b.txt").exists()
    ftps.prot_p()
    out = io.BytesIO()
    ftps.retrbinary("RETR a.txt", out.write)
    assert out.getvalue() == b"secret"
    ftps.storbinary("STOR b.txt", io.BytesIO(b"x"))
    assert sorted(ftps.nlst()) == ["a.txt", "b.txt", "slow"]
    # PROT C again, or a data connection opened while PROT C: refused
    ftps.prot_c()
    with pytest.raises(ftplib.error_perm, match="^522"):
        ftps.nlst()
    ftps.prot_p()
    ftps.quit()
    # bob need not use TLS: clear data on a TLS control channel still works
    bob = ftplib.FTP_TLS(context=_tls_context())
    bob.connect("127.0.0.1", r.port("ftp"), timeout=30)
    bob.login("bob", PASSWORDS["bob"])
    assert "a.txt" in bob.nlst()
    bob.quit()


def test_a_clear_data_connection_is_refused_even_after_prot_p(gateway_factory):
    """PROT P, PASV, then PROT C before connecting: the clear data
    connection is refused when it arrives."""
    r = gateway_factory(protocols=("ftp",), sections={"ftp": {"tls": "explicit"}},
                        users={"alice": {"require_tls": True}})
    ftps = ftplib.FTP_TLS(context=_tls_context())
    ftps.connect("127.0.0.1", r.port("ftp"), timeout=30)
    ftps.login("alice", PW)
    ftps.prot_p()
    host, port = ftplib.parse227(ftps.sendcmd("PASV"))
    ftps.sendcmd("PROT C")
    data = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        assert ftps.getresp().startswith("522")
    except ftplib.error_perm as exc:
        assert str(exc).startswith("522")
    data.close()
    ftps.prot_p()
    assert "slow" in ftps.nlst()
    ftps.quit()


def test_sizes_after_a_listing_follow_later_changes(ftp_gw):
    """A LIST's entries answer the SIZE/MDTM that clients send right after
    it, but not once any session changed the file through the gateway (over
    FTP or any other protocol): APPE must continue the file as it is now."""
    ftp, other = connect(ftp_gw), connect(ftp_gw)
    ftp.storbinary("STOR a.txt", io.BytesIO(b"hello"))
    ftp.retrlines("LIST", lambda line: None)
    ftp.voidcmd("TYPE I")  # retrlines left ASCII mode, where SIZE is refused
    assert ftp.size("a.txt") == 5
    ftp.storbinary("STOR a.txt", io.BytesIO(b"hello world!"))
    assert ftp.size("a.txt") == 12
    ftp.storbinary("APPE a.txt", io.BytesIO(b"++"))
    assert (ftp_gw.data / "a.txt").read_bytes() == b"hello world!++"
    ftp.retrlines("LIST", lambda line: None)
    ftp.voidcmd("TYPE I")
    other.storbinary("STOR a.txt", io.BytesIO(b"x"))
    assert ftp.size("a.txt") == 1  # at once, not after the listing's time
    ftp.storbinary("APPE a.txt", io.BytesIO(b"y"))
    assert (ftp_gw.data / "a.txt").read_bytes() == b"xy"
    ftp.retrlines("LIST", lambda line: None)
    ftp.voidcmd("TYPE I")
    web = ftp_gw.session("alice", "http")  # the core, as a WebDAV or REST session calls it
    up = ftp_gw.ops.open_write(web, "/a.txt")
    up.write(b"z" * 100_000)
    up.commit()
    assert ftp.size("a.txt") == 100_000
    ftp.retrlines("LIST", lambda line: None)
    ftp.voidcmd("TYPE I")
    ftp_gw.ops.set_mtime(web, "/a.txt", 1_500_000_000)
    assert ftp.sendcmd("MDTM a.txt") == "213 20170714024000"
    ftp.retrlines("LIST", lambda line: None)
    ftp.voidcmd("TYPE I")
    other.delete("a.txt")
    with pytest.raises(ftplib.error_perm, match="550"):
        ftp.size("a.txt")
    ftp.quit()
    other.quit()


def test_list_lines_are_pyftpdlibs_own(ftp_gw):
    """LIST is written from the listing's entries; every line must be the
    bytes pyftpdlib's format_list makes (dates recent and old, folders,
    sizes, spaces and non-ASCII names)."""
    from types import SimpleNamespace

    from pyftpdlib.filesystems import AbstractedFS

    from protocols.ftp.fs import GatewayFS

    r, s = ftp_gw, ftp_gw.session("alice")
    r.ops.mkdir(s, "/lst")
    r.ops.mkdir(s, "/lst/sub dir")
    now = time.time()
    for i, (name, age) in enumerate([("a.txt", 0), ("b b.bin", 3600), ("ünï.txt", 86400 * 400),
                                     ("big", 86400 * 179), ("old", 86400 * 181)]):
        up = r.ops.open_write(s, f"/lst/{name}")
        up.write(b"x" * (i * 123457))
        up.commit()
        r.ops.set_mtime(s, f"/lst/{name}", now - age)
    channel = SimpleNamespace(gw=r.gw, session=s, use_gmt_times=True, encoding="utf-8", unicode_errors="replace")
    fs = GatewayFS("/", channel)
    names = fs.listdir("/lst")
    ours = b"".join(fs.format_list("/lst", names))
    assert ours == b"".join(AbstractedFS.format_list(fs, "/lst", names))
    assert len(ours.splitlines()) == 6
    with ftplib.FTP() as f:
        f.encoding = "utf-8"
        f.connect("127.0.0.1", r.port("ftp"))
        f.login("alice", PW)
        wire: list[str] = []
        f.retrlines("LIST /lst", wire.append)
    assert sorted(wire) == sorted(ours.decode().splitlines())


def test_connection_limits_idle_timeout_and_masquerade_address(gateway_factory):
    r = gateway_factory(protocols=("ftp",), sections={"ftp": {
        "max_connections": 3, "max_connections_per_ip": 2, "idle_timeout_s": 1,
        "masquerade_address": "203.0.113.7"}})

    def connect(source: str = "127.0.0.1") -> ftplib.FTP:
        f = ftplib.FTP()
        f.connect("127.0.0.1", r.port("ftp"), timeout=10, source_address=(source, 0))
        return f

    first, second = connect(), connect()
    other = connect("127.0.0.2")
    try:
        first.login("alice", PW)
        second.login("alice", PW)
        # a third session from the same address is refused at login ...
        with pytest.raises(ftplib.error_temp, match="421"):
            connect().login("alice", PW)
        # ... and a fourth from anywhere once three are logged in
        other.login("alice", PW)
        with pytest.raises(ftplib.error_temp, match="421"):
            connect("127.0.0.3").login("alice", PW)
        # passive replies name the public address, not the one connected to
        assert "(203,0,113,7," in first.sendcmd("PASV")
        # a control connection idle for longer than idle_timeout_s is closed
        second.voidcmd("NOOP")
        time.sleep(2.5)
        with pytest.raises((ftplib.error_temp, EOFError, ConnectionError)):
            second.voidcmd("NOOP")
    finally:
        for f in (first, second, other):
            f.close()


def _reply(ftp, cmd: str) -> str:
    try:
        return ftp.sendcmd(cmd)
    except ftplib.all_errors as exc:
        return str(exc)


def test_mfmt_replies_pinned(gateway_factory):
    """MFMT's replies, in the order they are decided: time string length,
    the file looked up (missing, a folder: "not retrievable"), the time
    string parsed, then permission, a job, and the time set and read back."""
    r = _slow_gateway(gateway_factory)
    r2 = gateway_factory(protocols=("ftp",), users={"alice": {"path_permissions": {"/ro": ["list", "download"]}}})
    s = r2.session("alice")
    r2.ops.mkdir(s, "/d")
    (r2.data / "ro").mkdir()
    r2.ops.open_write(s, "/a.txt").commit()
    slow, ftp = connect(r), connect(r2)
    ok = _reply(ftp, "MFMT 20170714024000 /a.txt")
    assert ok == "213 Modify=20170714024000; /a.txt.", ok
    assert _reply(ftp, "MDTM /a.txt") == "213 20170714024000"
    assert _reply(ftp, "MFMT 2017 /a.txt") == "550 Invalid time format; expected: YYYYMMDDHHMMSS."
    assert _reply(ftp, "MFMT 2017 /missing") == "550 Invalid time format; expected: YYYYMMDDHHMMSS."
    missing = _reply(ftp, "MFMT 20170714024000 /missing")
    assert missing == "550 /missing is not retrievable", missing
    assert _reply(ftp, "MFMT 2017071402400x /missing") == missing
    assert _reply(ftp, "MFMT 20170714024000 /d") == "550 /d is not retrievable"
    assert _reply(ftp, "MFMT 2017071402400x /a.txt") == "550 Invalid time format; expected: YYYYMMDDHHMMSS."
    assert _reply(ftp, "MFMT 20171314024000 /a.txt") == "550 Invalid time format; expected: YYYYMMDDHHMMSS."
    # no overwrite permission: refused after the look-up, before the time is set
    (r2.data / "ro" / "f.txt").write_bytes(b"f")
    denied = _reply(ftp, "MFMT 20170714024000 /ro/f.txt")
    assert denied.startswith("550 /ro/f.txt: permission denied (overwrite not allowed)"), denied
    assert _reply(ftp, "MFMT 2017071402400x /ro/f.txt") == "550 Invalid time format; expected: YYYYMMDDHHMMSS."
    assert _reply(ftp, "MFMT 20170714024000 /ro") == "550 /ro is not retrievable"
    denied_missing = _reply(ftp, "MFMT 20170714024000 /ro/nothing")
    assert denied_missing == "550 /ro/nothing is not retrievable", denied_missing
    # a busy path under a job (a background rename of a slow tree)
    ftp = slow
    reply = ftp.sendcmd("RNFR /slow/tree") and ftp.sendcmd("RNTO /slow/moved")
    assert "running in background as job" in reply, reply
    job_id = reply.rsplit(" ", 1)[1]
    busy = _reply(ftp, "MFMT 20170714024000 /slow/moved/f001")
    assert busy.startswith("450 /slow/moved/f001: busy, in use by job " + job_id), busy
    busy_missing = _reply(ftp, "MFMT 20170714024000 /slow/moved/nothing")
    assert busy_missing == "550 /slow/moved/nothing is not retrievable", busy_missing
    r.gw.dispatcher.wait(job_id, 60)


def test_mfmt_time_parses_as_strptime():
    from datetime import datetime

    from protocols.ftp.handler import _mfmt_time

    def outcome(parse, t):
        try:
            return parse(t)
        except ValueError:
            return "ValueError"

    cases = ["20170714024000", "00000101000000", "20170230000000", "20160229000000", "20171301000000",
             "20170100000000", "20170101240000", "20170101006000", "20170101000060", "20170101000061",
             "201707 1024000", "２０17071402400０", "99991231235959", "1970010100000a", "+0170714024000"]
    cases += [f"{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}" for y in (1, 2024) for mo in (0, 2, 12, 13)
              for d in (0, 29, 31, 32) for h in (0, 23, 24) for mi in (0, 59, 60) for s in (0, 59, 60, 61)]
    for t in cases:
        assert outcome(_mfmt_time, t) == outcome(lambda v: datetime.strptime(v, "%Y%m%d%H%M%S"), t), t
