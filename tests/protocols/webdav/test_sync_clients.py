"""Debian's Nextcloud and ownCloud command-line sync clients against a
running gateway on local disk, a ``slow::memory`` store and moto's S3,
several rounds each: an initial sync with a big file uploaded in chunks
(the gateway's operation log says it was assembled from them), rounds with
no changes that transfer nothing (neither the client's log nor the
gateway's says so), local edits and edits, new files and renames (of
files, and of a folder: a job where the storage has no rename) made
through FTP and SFTP between rounds, a conflict. After each round both
sides hold the same files (sha256, and modification times where the
storage keeps them), and nothing the user did not delete is gone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conformance.drivers import FtpDriver, SftpDriver
from conftest import PASSWORDS, core_tree, local_tree, storage_at_root

#: The clients and the Debian packages that have them.
PACKAGES = {"nextcloudcmd": "nextcloud-desktop-cmd", "owncloudcmd": "owncloud-client-cmd"}
CLIENTS = tuple(PACKAGES)
#: The storage at the gateway's / in each run (conftest.storage_at_root).
MOUNTS = ("local", "slow", "s3")
#: The chunk size the clients are told to use (they read these variables):
#: the big file goes up in several chunks, a small one in one PUT.
CHUNK = 5_000_000
CHUNK_ENV = {"OWNCLOUD_CHUNK_SIZE": str(CHUNK), "OWNCLOUD_MIN_CHUNK_SIZE": str(CHUNK),
             "OWNCLOUD_MAX_CHUNK_SIZE": str(CHUNK)}
#: The big file: 50 MB on local disk; smaller elsewhere (still chunked), to
#: keep the run short.
BIG = {"local": 50_000_000, "slow": 8_000_000, "s3": 8_000_000}
#: What the clients keep next to the user's files (their journal and logs).
EXCLUDES = [".sync_*", "._sync_*", ".owncloudsync.log*", ".nextcloudsync.log*", ".csync_journal.db*",
            "*.~*", "~$*", ".~lock.*", "*~"]
#: A client log line that says it transferred or changed something.
ACTIVITY = re.compile(r"Starting CSyncEnums::CSYNC_INSTRUCTION_(NEW|SYNC|CONFLICT|REMOVE|RENAME|TYPE_CHANGE)"
                      r"|\bPUT of\b|GETFileJob|OCC::GETFileJob")
#: Operations in the gateway's log that change or transfer something.
TRANSFERS = {"upload", "download", "delete", "move", "copy", "mkdir"}


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


@pytest.mark.parametrize("mount", MOUNTS)
@pytest.mark.parametrize("client", CLIENTS)
def test_sync_rounds(gateway_factory, tmp_path, request, op_log, client, mount):
    assert shutil.which(client), f"{client} is not installed (scripts/test installs Debian's {PACKAGES[client]})"
    # [logging] audit: downloads are in the operation log too.
    r = gateway_factory(protocols=("http", "ftp", "sftp"), mounts=storage_at_root(request, mount),
                        sections={"logging": {"audit": True}})
    ops, session = r.ops, r.session()
    # Where the storage keeps no client times the gateway refuses them
    # (no "X-OC-MTime: accepted"): then only the contents are compared,
    # and the quiet rounds show the clients do not send files again.
    times = r.gw.namespace.resolve("/")[0].backend.capabilities.mtimes
    (tmp_path / "home").mkdir()
    (tmp_path / "exclude.lst").write_text("\n".join(EXCLUDES) + "\n")
    local = tmp_path / "local"
    (local / "sub").mkdir(parents=True)
    (local / "a.txt").write_bytes(b"alpha\n")
    (local / "sub" / "b.txt").write_bytes(b"bravo\n")
    (local / "sub" / "big.bin").write_bytes(os.urandom(BIG[mount]))
    url = f"http://127.0.0.1:{r.port('http')}"

    def check(expected: set[str], ignore: str | None = None) -> None:
        """Both sides hold exactly ``expected`` (nothing the user did not
        delete is gone), with the same content, and the same times where the
        storage keeps them."""
        here = {k: v for k, v in local_tree(local).items() if k != ignore}
        there = {k: v for k, v in core_tree(ops, session).items() if k != ignore}
        assert set(here) == set(there) == expected
        assert {k: v[0] for k, v in here.items()} == {k: v[0] for k, v in there.items()}
        if times:
            assert here == there
        if mount == "local":
            assert not list(r.data.rglob(".*")), "no stray dot files on the server"

    def quiet() -> None:
        """A run with nothing changed transfers nothing: neither the client
        nor the gateway's operation log says so."""
        op_log.take()
        log = _sync(client, local, url, tmp_path)
        assert not ACTIVITY.search(log), ACTIVITY.search(log).group(0)
        assert not [o for o in op_log.take() if o["op"] in TRANSFERS]

    # 1: the initial upload; the big file goes up in chunks, assembled on
    # the server (the gateway's log says from how many).
    log = _sync(client, local, url, tmp_path)
    assert ACTIVITY.search(log)
    uploads = {o["paths"][0]: o for o in op_log.take() if o["op"] == "upload" and o["result"] == "ok"}
    assert uploads["/sub/big.bin"].get("chunks", 0) == -(-BIG[mount] // CHUNK), uploads["/sub/big.bin"]
    assert "chunks" not in uploads["/a.txt"]
    names = {"a.txt", "sub/b.txt", "sub/big.bin"}
    check(names)
    # The clients send a checksum with each upload; the gateway verified and kept it.
    assert all(f.checksum and f.checksum.startswith("sha1:")
               for f in ops.file_ids(session, ["/a.txt", "/sub/big.bin"]))
    # 2: nothing changed: nothing is transferred.
    quiet()
    check(names)
    # 3: a local edit, an edit through FTP, a new file through SFTP.
    (local / "a.txt").write_bytes(b"alpha, edited here\n")
    ftp = FtpDriver(r.port("ftp"), "alice", PASSWORDS["alice"])
    ftp.put("/sub/b.txt", b"bravo, edited over FTP\n")
    sftp = SftpDriver(r.port("sftp"), "alice", PASSWORDS["alice"])
    sftp.put("/sub/n.txt", b"new over SFTP\n")
    _sync(client, local, url, tmp_path)
    names = {"a.txt", "sub/b.txt", "sub/big.bin", "sub/n.txt"}
    check(names)
    assert (local / "sub" / "b.txt").read_bytes() == b"bravo, edited over FTP\n"
    # 4: a folder renamed through FTP: where the storage has no rename
    # (memory, S3) a job moves it by copy; the sync URLs serve the ETags the
    # files had, and no file is fetched again.
    def etags(folder: str) -> dict[str, str]:
        """The ETags the sync URLs serve of the files in ``folder``."""
        return {n: ops.file_ids(session, [f"{folder}/{n}"])[0].served_etag(ops.stat(session, f"{folder}/{n}"))
                for n in ("b.txt", "big.bin", "n.txt")}

    served = etags("/sub")
    ftp.rename("/sub", "/sub2")
    for job in r.gw.store.list(owner="alice"):
        if job.state in ("queued", "running"):
            assert r.gw.dispatcher.wait(job.id, 60).state == "completed"
    assert etags("/sub2") == served
    op_log.take()
    _sync(client, local, url, tmp_path)
    names = {"a.txt", "sub2/b.txt", "sub2/big.bin", "sub2/n.txt"}
    check(names)
    moved = [o for o in op_log.take() if o["op"] in ("upload", "download")]
    assert not moved, moved
    # 5: renames through SFTP and FTP (the big file moves: not sent again)
    # and one made locally.
    sftp.rename("/sub2/b.txt", "/sub2/c.txt")
    ftp.rename("/sub2/big.bin", "/big.bin")
    (local / "a.txt").rename(local / "a2.txt")
    op_log.take()
    _sync(client, local, url, tmp_path)
    names = {"a2.txt", "sub2/c.txt", "big.bin", "sub2/n.txt"}
    check(names)
    # The moved files are neither sent nor fetched again: where the storage
    # moves by copy and delete and keeps no time (memory, S3) the copy has
    # a new storage ETag, and the gateway serves the one the file had.
    moved = [o for o in op_log.take() if o["op"] in ("upload", "download")]
    assert not moved, moved
    # 6: quiet again.
    quiet()
    check(names)
    # 7: a conflict: the same file edited on both sides. The server's
    # version wins the name, the local one is kept beside it as a conflict
    # copy; nothing is lost.
    (local / "a2.txt").write_bytes(b"local side of the conflict\n")
    sftp.put("/a2.txt", b"server side of the conflict, longer\n")
    _sync(client, local, url, tmp_path)
    conflicts = [p for p in local.iterdir() if "conflict" in p.name.lower() and p.name != "a2.txt"]
    assert [p.read_bytes() for p in conflicts] == [b"local side of the conflict\n"], conflicts
    assert (local / "a2.txt").read_bytes() == b"server side of the conflict, longer\n"
    check(names, ignore=conflicts[0].name)
    ftp.ftp.quit()
    sftp.close()


@pytest.mark.parametrize("vendor,path", [("owncloud", "/remote.php/webdav"),
                                         ("nextcloud", "/remote.php/dav/files/alice")])
def test_rclone_vendors_keep_times_and_checksums(gateway_factory, tmp_path, op_log, vendor, path):
    """rclone's owncloud and nextcloud vendors: a second copy transfers
    nothing (times kept), and ``check --checksum`` compares the SHA1 the
    gateway verified at upload. The nextcloud vendor sends a file bigger
    than its chunk size through the chunked-upload collection."""
    assert shutil.which("rclone"), "rclone is not installed (scripts/test installs it)"
    r = gateway_factory(protocols=("http",))
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"alpha\n")
    (src / "d" / "b.bin").write_bytes(os.urandom(300_000))
    obscured = subprocess.run(["rclone", "obscure", PASSWORDS["alice"]], capture_output=True, text=True,
                              check=True).stdout.strip()
    env = {**os.environ, "RCLONE_CONFIG_GW_TYPE": "webdav", "RCLONE_CONFIG_GW_VENDOR": vendor,
           "RCLONE_CONFIG_GW_URL": f"http://127.0.0.1:{r.port('http')}{path}", "RCLONE_CONFIG_GW_USER": "alice",
           "RCLONE_CONFIG_GW_PASS": obscured, "RCLONE_CONFIG_GW_NEXTCLOUD_CHUNK_SIZE": "100Ki"}

    def rclone(*args: str) -> str:
        proc = subprocess.run(["rclone", "--config", str(tmp_path / "none.conf"), "--low-level-retries", "1",
                               "--retries", "1", "-v", *args], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc.stdout + proc.stderr

    assert "Copied" in rclone("copy", str(src), "gw:up")
    chunks = {o["paths"][0]: o.get("chunks") for o in op_log.take() if o["op"] == "upload"}
    assert chunks == {"/up/a.txt": None, "/up/d/b.bin": 3 if vendor == "nextcloud" else None}, chunks
    again = rclone("copy", str(src), "gw:up")
    assert "Copied" not in again and "Updated" not in again, again
    checked = rclone("check", "--checksum", str(src), "gw:up")
    assert "for hash comparisons" in checked and "0 differences found" in checked, checked
    assert "2 matching files" in checked and "hashes could not be checked" not in checked, checked
    assert r.data.joinpath("up", "d", "b.bin").read_bytes() == (src / "d" / "b.bin").read_bytes()
