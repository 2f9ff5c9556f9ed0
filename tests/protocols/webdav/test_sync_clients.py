"""Debian's Nextcloud and ownCloud command-line sync clients against a
running gateway, several rounds each: an initial sync with a file big
enough to be chunked, a round with no changes that transfers nothing, a
local edit and an edit made through FTP, renames on both sides, a conflict. After each
round both sides hold the same files (sha256 and modification time), and
nothing the user did not delete is gone."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conformance.drivers import FtpDriver, SftpDriver
from conftest import PASSWORDS

CLIENTS = ("nextcloudcmd", "owncloudcmd")
#: Small chunks, so that a 3 MB file is uploaded in several (the clients
#: read these variables).
CHUNK_ENV = {"OWNCLOUD_CHUNK_SIZE": "1000000", "OWNCLOUD_MIN_CHUNK_SIZE": "1000000",
             "OWNCLOUD_MAX_CHUNK_SIZE": "1000000"}
#: What the clients keep next to the user's files (their journal and logs).
EXCLUDES = [".sync_*", "._sync_*", ".owncloudsync.log*", ".nextcloudsync.log*", ".csync_journal.db*",
            "*.~*", "~$*", ".~lock.*", "*~"]
#: A client log line that says it transferred or changed something.
ACTIVITY = re.compile(r"Starting CSyncEnums::CSYNC_INSTRUCTION_(NEW|SYNC|CONFLICT|REMOVE|RENAME|TYPE_CHANGE)"
                      r"|\bPUT of\b|GETFileJob|OCC::GETFileJob")


def _tree(root: Path) -> dict[str, tuple[str, int]]:
    """{relative path: (sha256, mtime second)} of the user's files (dot
    names are the clients' or the gateway's own)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        out[str(rel)] = (hashlib.sha256(p.read_bytes()).hexdigest(), int(p.stat().st_mtime))
    return out


def _sync(client: str, local: Path, url: str, tmp: Path) -> str:
    """One run of ``client``; its log. Fails the test on a non-zero exit."""
    args = [client, "-u", "alice", "-p", PASSWORDS["alice"], "--non-interactive", "--exclude",
            str(tmp / "exclude.lst")]
    env = {**os.environ, **CHUNK_ENV, "HOME": str(tmp / "home"), "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([*args, str(local), url], capture_output=True, text=True, timeout=120, env=env,
                          cwd=tmp)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    return log


@pytest.mark.parametrize("client", CLIENTS)
def test_sync_rounds(gateway_factory, tmp_path, client):
    if shutil.which(client) is None:
        pytest.skip(f"{client} is not installed (Debian: nextcloud-desktop-cmd / owncloud-client-cmd)")
    # Local disk at /, and an (empty) memory mount at /slow: a folder whose
    # storage keeps no time.
    r = gateway_factory(protocols=("http", "ftp", "sftp"))
    (tmp_path / "home").mkdir()
    (tmp_path / "exclude.lst").write_text("\n".join(EXCLUDES) + "\n")
    server = r.data
    local = tmp_path / "local"
    (local / "sub").mkdir(parents=True)
    (local / "a.txt").write_bytes(b"alpha\n")
    (local / "sub" / "b.txt").write_bytes(b"bravo\n")
    (local / "sub" / "big.bin").write_bytes(os.urandom(3_000_000))
    url = f"http://127.0.0.1:{r.port('http')}"

    def check(expected: set[str]) -> None:
        here, there = _tree(local), _tree(server)
        assert here == there
        assert set(here) == expected
        assert not [p for p in server.rglob(".*")], "no stray dot files on the server"

    # 1: the initial upload; the big file goes in chunks.
    log = _sync(client, local, url, tmp_path)
    assert ACTIVITY.search(log)
    names = {"a.txt", "sub/b.txt", "sub/big.bin"}
    check(names)
    assert (local / "slow").is_dir()
    # The clients send a checksum with each upload; the gateway verified and kept it.
    assert all(f.checksum and f.checksum.startswith("sha1:")
               for f in r.ops.file_ids(r.session(), ["/a.txt", "/sub/big.bin"]))
    chunked = "uploads/alice" in log
    # 2: nothing changed: nothing is transferred.
    log = _sync(client, local, url, tmp_path)
    assert not ACTIVITY.search(log), ACTIVITY.search(log).group(0)
    check(names)
    # 3: a local edit, and an edit through FTP.
    (local / "a.txt").write_bytes(b"alpha, edited here\n")
    ftp = FtpDriver(r.port("ftp"), "alice", PASSWORDS["alice"])
    ftp.put("/sub/b.txt", b"bravo, edited over FTP\n")
    ftp.ftp.quit()
    _sync(client, local, url, tmp_path)
    check(names)
    assert (server / "a.txt").read_bytes() == b"alpha, edited here\n"
    assert (local / "sub" / "b.txt").read_bytes() == b"bravo, edited over FTP\n"
    # 4: a rename through SFTP and one made locally.
    sftp = SftpDriver(r.port("sftp"), "alice", PASSWORDS["alice"])
    sftp.rename("/sub/b.txt", "/sub/c.txt")
    sftp.close()
    (local / "a.txt").rename(local / "a2.txt")
    _sync(client, local, url, tmp_path)
    names = {"a2.txt", "sub/c.txt", "sub/big.bin"}
    check(names)
    # 5: quiet again.
    log = _sync(client, local, url, tmp_path)
    assert not ACTIVITY.search(log), ACTIVITY.search(log).group(0)
    check(names)
    # 6: a conflict: the same file edited on both sides. The server's
    # version wins the name, the local one is kept beside it as a conflict
    # copy; nothing is lost.
    (local / "a2.txt").write_bytes(b"local side of the conflict\n")
    ftp = FtpDriver(r.port("ftp"), "alice", PASSWORDS["alice"])
    ftp.put("/a2.txt", b"server side of the conflict, longer\n")
    ftp.ftp.quit()
    _sync(client, local, url, tmp_path)
    conflicts = [p for p in local.iterdir() if "conflict" in p.name.lower() and p.name != "a2.txt"]
    assert [p.read_bytes() for p in conflicts] == [b"local side of the conflict\n"], conflicts
    assert (local / "a2.txt").read_bytes() == (server / "a2.txt").read_bytes() \
        == b"server side of the conflict, longer\n"
    here, there = _tree(local), _tree(server)
    assert {k: v for k, v in here.items() if k != conflicts[0].name} == {k: v for k, v in there.items()
                                                                         if k != conflicts[0].name}
    # ownCloud 2.11 has only old-style chunking (refused here; the
    # capabilities say bigfilechunking: false) and TUS: it sends one PUT.
    assert chunked or client == "owncloudcmd", "the 3 MB file was not uploaded in chunks"


@pytest.mark.parametrize("vendor,path", [("owncloud", "/remote.php/webdav"),
                                         ("nextcloud", "/remote.php/dav/files/alice")])
def test_rclone_vendors_keep_times_and_checksums(gateway_factory, tmp_path, vendor, path):
    """rclone's owncloud and nextcloud vendors: a second copy transfers
    nothing (times kept), and ``check --checksum`` compares the SHA1 the
    gateway verified at upload."""
    if shutil.which("rclone") is None:
        pytest.skip("rclone is not installed")
    r = gateway_factory(protocols=("http",))
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"alpha\n")
    (src / "d" / "b.bin").write_bytes(os.urandom(300_000))
    obscured = subprocess.run(["rclone", "obscure", PASSWORDS["alice"]], capture_output=True, text=True,
                              check=True).stdout.strip()
    env = {**os.environ, "RCLONE_CONFIG_GW_TYPE": "webdav", "RCLONE_CONFIG_GW_VENDOR": vendor,
           "RCLONE_CONFIG_GW_URL": f"http://127.0.0.1:{r.port('http')}{path}", "RCLONE_CONFIG_GW_USER": "alice",
           "RCLONE_CONFIG_GW_PASS": obscured}

    def rclone(*args: str) -> str:
        proc = subprocess.run(["rclone", "--config", str(tmp_path / "none.conf"), "--low-level-retries", "1",
                               "--retries", "1", "-v", *args], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc.stdout + proc.stderr

    assert "Copied" in rclone("copy", str(src), "gw:up")
    again = rclone("copy", str(src), "gw:up")
    assert "Copied" not in again and "Updated" not in again, again
    checked = rclone("check", "--checksum", str(src), "gw:up")
    assert "for hash comparisons" in checked and "0 differences found" in checked, checked
    assert "2 matching files" in checked and "hashes could not be checked" not in checked, checked
    assert r.data.joinpath("up", "d", "b.bin").read_bytes() == (src / "d" / "b.bin").read_bytes()
