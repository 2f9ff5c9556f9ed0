"""The SFTP front end driven by OpenSSH's own clients: sftp in batch mode
(password and key auth), scp both ways (SFTP and legacy protocol), and the
ssh job commands."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

from sftp_support import scp, sftp_batch, ssh

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def payload() -> bytes:
    return os.urandom(3_000_000 + 123)


def test_batch_put_get_rename_rm_mkdir_rmdir_ls_cp(gateway_factory, tmp_path, payload):
    r = gateway_factory(protocols=("sftp",))
    (tmp_path / "big.bin").write_bytes(payload)
    (tmp_path / "small.txt").write_bytes(b"hello\n")
    p = sftp_batch(r.port("sftp"), "alice", [
        "mkdir /d",
        "put big.bin /d/big.bin",
        "put small.txt /d/small.txt",
        "ls -l /d",
        "cp /d/big.bin /d/copy.bin",
        "rename /d/small.txt /d/renamed.txt",
        "get /d/copy.bin copy.bin",
        "get /d/renamed.txt renamed.txt",
        "mkdir /d/sub",
        "put small.txt /d/sub/x",
        "rm /d/big.bin",
        "mkdir /empty",
        "rmdir /empty",
        "df /",
        "ls /d",
    ], tmp_path)
    assert "big.bin" in p.stdout and "3000123" in p.stdout  # ls -l before the rm
    assert (tmp_path / "copy.bin").read_bytes() == payload
    assert (tmp_path / "renamed.txt").read_bytes() == b"hello\n"
    d = r.data / "d"
    assert sorted(x.name for x in d.iterdir()) == ["copy.bin", "renamed.txt", "sub"]
    assert (d / "copy.bin").read_bytes() == payload
    assert not (r.data / "empty").exists()
    # rmdir of a folder with content removes the tree (the gateway's recursive delete).
    sftp_batch(r.port("sftp"), "alice", ["rmdir /d/sub", "ls /d"], tmp_path)
    assert not (d / "sub").exists()


def test_put_with_a_large_window_is_byte_exact(gateway_factory, tmp_path):
    """OpenSSH's sftp with 256 requests of 128 KiB in flight (32 MiB, twice
    the reorder budget per session; 256 KiB writes are past its own message
    limit): writes held ahead of a gap are answered once written, and the
    server reads no further than its own window while the gap's write runs,
    so the upload is slowed, never refused."""
    r = gateway_factory(protocols=("sftp",))
    data = os.urandom(64 << 20)
    (tmp_path / "big.bin").write_bytes(data)
    sftp_batch(r.port("sftp"), "alice", ["put big.bin /big.bin"], tmp_path, options=("-R", "256", "-B", "131072"))
    assert hashlib.sha256((r.data / "big.bin").read_bytes()).digest() == hashlib.sha256(data).digest()


def test_a_folder_larger_than_one_reply_lists_whole(gateway_factory, tmp_path):
    """A readdir reply holds up to 1,000 names within the 256 KiB OpenSSH's
    client accepts: 2,500 long names take several replies, none lost."""
    r = gateway_factory(protocols=("sftp",))
    big = r.data / "big"
    big.mkdir()
    names = {f"{i:04d}-" + "n" * 240 for i in range(2500)} | {f"short{i}" for i in range(10)}
    for name in names:
        (big / name).write_bytes(b"x")
    p = sftp_batch(r.port("sftp"), "alice", ["ls -l /big"], tmp_path)
    lines = [line for line in p.stdout.splitlines() if line.startswith("-rw")]
    assert {line.rsplit(" ", 1)[-1].rsplit("/", 1)[-1] for line in lines} == names
    assert all(" alice " in line and "   1 " in line for line in lines)


def test_reput_and_reget_resume(gateway_factory, tmp_path, payload):
    r = gateway_factory(protocols=("sftp",))
    (tmp_path / "full.bin").write_bytes(payload)
    (tmp_path / "part.bin").write_bytes(payload[:1_000_000])
    sftp_batch(r.port("sftp"), "alice", ["put part.bin /f.bin"], tmp_path)
    assert (r.data / "f.bin").stat().st_size == 1_000_000
    sftp_batch(r.port("sftp"), "alice", ["reput full.bin /f.bin"], tmp_path)
    assert (r.data / "f.bin").read_bytes() == payload
    (tmp_path / "got.bin").write_bytes(payload[:777_777])
    sftp_batch(r.port("sftp"), "alice", ["reget /f.bin got.bin"], tmp_path)
    assert (tmp_path / "got.bin").read_bytes() == payload


def test_key_auth(gateway_factory, tmp_path):
    key = tmp_path / "id_carol"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    other = tmp_path / "id_other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    pub = (tmp_path / "id_carol.pub").read_text().strip()
    r = gateway_factory(protocols=("sftp",), users={"carol": {"authorized_keys": [pub]}})
    (tmp_path / "k.txt").write_bytes(b"by key\n")
    sftp_batch(r.port("sftp"), "carol", ["put k.txt /k.txt", "get /k.txt back.txt"], tmp_path, key=key)
    assert (r.data / "k.txt").read_bytes() == b"by key\n"
    assert (tmp_path / "back.txt").read_bytes() == b"by key\n"
    refused = sftp_batch(r.port("sftp"), "carol", ["ls /"], tmp_path, key=other, check=False)
    assert refused.returncode != 0 and "Permission denied" in refused.stderr


def _tree(root):
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"a" * 1000)
    (root / "sub" / "b.bin").write_bytes(os.urandom(200_000))
    (root / "sub" / "deeper" / "c").write_bytes(b"")
    os.utime(root / "a.txt", (1_500_000_000, 1_500_000_000))
    return {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("legacy", [False, True], ids=["scp-sftp", "scp-legacy"])
def test_scp_both_ways_recursive_with_times(gateway_factory, tmp_path, legacy):
    r = gateway_factory(protocols=("sftp",))
    mode = ["-O"] if legacy else []
    want = _tree(tmp_path / "tree")
    scp(r.port("sftp"), "alice", *mode, "-r", "-p", "tree", "@:/up", cwd=tmp_path)
    assert _files(r.data / "up") == want
    assert int((r.data / "up" / "a.txt").stat().st_mtime) == 1_500_000_000
    scp(r.port("sftp"), "alice", *mode, "-r", "-p", "@:/up", "down", cwd=tmp_path)
    assert _files(tmp_path / "down") == want
    assert int((tmp_path / "down" / "a.txt").stat().st_mtime) == 1_500_000_000
    scp(r.port("sftp"), "alice", *mode, "tree/a.txt", "@:/single.txt", cwd=tmp_path)
    assert (r.data / "single.txt").read_bytes() == want[Path("a.txt")]
    missing = scp(r.port("sftp"), "alice", *mode, "@:/nope.txt", "x", cwd=tmp_path, check=False)
    # asyncssh's legacy scp server globs the source: "No matches found".
    assert missing.returncode != 0 and ("no such file" in missing.stderr.lower() or "No matches" in missing.stderr)


def test_exec_job_commands_and_refusal(gateway_factory, tmp_path):
    r = gateway_factory(protocols=("sftp",))
    port = r.port("sftp")
    assert ssh(port, "alice", "jobs", tmp_path).stdout == "no jobs\n"
    refused = ssh(port, "alice", "ls -la /", tmp_path)
    assert refused.returncode == 1
    assert ("only SFTP/scp and the commands jobs, job <id>, cancel <id>, stop <id>, retry <id> and abandon <id> "
            "(admins), md5sum") in refused.stderr
    unknown = ssh(port, "alice", "job nope", tmp_path)
    assert unknown.returncode == 1 and "no job 'nope'" in unknown.stderr


def test_openssh_negotiates_aes(gateway_factory, tmp_path):
    """The server leaves chacha20-poly1305 (slow in asyncssh) out, so
    OpenSSH's default preference lands on an AES cipher."""
    r = gateway_factory(protocols=("sftp",))
    p = sftp_batch(r.port("sftp"), "alice", ["ls /"], tmp_path, verbose=True)
    negotiated = re.findall(r"kex: \S+ cipher: (\S+)", p.stderr)
    assert len(negotiated) == 2 and all(c.startswith("aes") for c in negotiated), negotiated


def test_the_algorithms_offered_and_what_each_client_gets(gateway_factory, tmp_path):
    """What the gateway offers by default ([sftp] ciphers) and what clients
    negotiate from it (the client's order wins): OpenSSH's defaults give
    aes128-ctr with umac-64-etm (the benchmark's client); a client of the
    paramiko era (CTR, HMAC-SHA2) and one asking for GCM (rclone's Go
    library, asyncssh) get theirs; chacha20-poly1305 and CBC are refused."""
    from gateway.ssh_algorithms import DEFAULT_CIPHERS as CIPHERS

    assert CIPHERS == ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr"]
    port = gateway_factory(protocols=("sftp",)).port("sftp")

    def negotiated(*options: str) -> set[tuple[str, str]]:
        p = sftp_batch(port, "alice", ["ls /"], tmp_path, verbose=True, options=options)
        return set(re.findall(r"kex: \S+ cipher: (\S+) MAC: (\S+)", p.stderr))

    assert negotiated() == {("aes128-ctr", "umac-64-etm@openssh.com")}
    assert negotiated("-c", "aes256-ctr", "-o", "MACs=hmac-sha2-256") == {("aes256-ctr", "hmac-sha2-256")}
    assert negotiated("-c", "aes128-gcm@openssh.com") == {("aes128-gcm@openssh.com", "<implicit>")}
    for refused in ("chacha20-poly1305@openssh.com", "aes128-cbc"):
        p = sftp_batch(port, "alice", ["ls /"], tmp_path, check=False, verbose=True, options=("-c", refused))
        assert p.returncode != 0 and f"no matching cipher found. Their offer: {','.join(CIPHERS)}" in p.stderr, p.stderr


def test_an_admin_offering_only_gcm_gets_it_from_openssh(gateway_factory, tmp_path, payload):
    """[sftp] ciphers = ["aes128-gcm@openssh.com"]: OpenSSH's client, whose
    own order puts CTR first, negotiates GCM both ways and transfers; a
    client offering only CTR is refused by SSH's negotiation."""
    r = gateway_factory(protocols=("sftp",), sections={"sftp": {"ciphers": ["aes128-gcm@openssh.com"],
                                                                 "macs": ["hmac-sha2-256-etm@openssh.com"]}})
    (tmp_path / "up.bin").write_bytes(payload)
    p = sftp_batch(r.port("sftp"), "alice", ["put up.bin /up.bin", "get /up.bin down.bin"], tmp_path, verbose=True)
    assert re.findall(r"kex: (\S+) cipher: (\S+) MAC: (\S+)", p.stderr) == [
        ("server->client", "aes128-gcm@openssh.com", "<implicit>"),
        ("client->server", "aes128-gcm@openssh.com", "<implicit>")]
    assert (r.data / "up.bin").read_bytes() == payload and (tmp_path / "down.bin").read_bytes() == payload

    p = sftp_batch(r.port("sftp"), "alice", ["ls /"], tmp_path, check=False, verbose=True,
                   options=("-o", "Ciphers=aes128-ctr"))
    assert p.returncode != 0 and "no matching cipher found. Their offer: aes128-gcm@openssh.com" in p.stderr, p.stderr
    # MACs and key exchanges are chosen the same way (a MAC matters only without GCM).
    r2 = gateway_factory(protocols=("sftp",), sections={"sftp": {
        "ciphers": ["aes256-ctr"], "macs": ["hmac-sha2-512-etm@openssh.com"],
        "kex_algorithms": ["ecdh-sha2-nistp256"]}})
    p = sftp_batch(r2.port("sftp"), "alice", ["ls /"], tmp_path, verbose=True)
    negotiated = set(re.findall(r"kex: \S+ cipher: (\S+) MAC: (\S+)", p.stderr))
    assert negotiated == {("aes256-ctr", "hmac-sha2-512-etm@openssh.com")}
    assert "kex: algorithm: ecdh-sha2-nistp256" in p.stderr
    p = sftp_batch(r2.port("sftp"), "alice", ["ls /"], tmp_path, check=False, verbose=True,
                   options=("-o", "MACs=umac-64-etm@openssh.com"))
    assert p.returncode != 0 and "no matching MAC found" in p.stderr, p.stderr
