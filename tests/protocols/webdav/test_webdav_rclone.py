"""rclone's webdav backend against /dav: a tree up and down byte-for-byte,
and ``rclone check``."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess

import pytest

from conftest import PASSWORDS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180),
              pytest.mark.skipif(shutil.which("rclone") is None, reason="rclone is not installed")]


def _tree(root) -> None:
    (root / "docs" / "deep" / "er").mkdir(parents=True)
    (root / "empty dir").mkdir()
    (root / "a.txt").write_text("alpha\n")
    (root / "empty.bin").write_bytes(b"")
    (root / "docs" / "café & co.txt").write_text("unicode name\n")
    (root / "docs" / "deep" / "er" / "random.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    for i in range(20):
        (root / "docs" / f"n{i:02d}.dat").write_bytes(os.urandom(i * 1000))


def _same_tree(a, b) -> None:
    cmp = filecmp.dircmp(a, b)
    stack = [cmp]
    while stack:
        c = stack.pop()
        assert not c.left_only and not c.right_only, (c.left, c.left_only, c.right_only)
        _, mismatch, errors = filecmp.cmpfiles(c.left, c.right, c.common_files, shallow=False)
        assert not mismatch and not errors, (c.left, mismatch, errors)
        stack.extend(c.subdirs.values())


def test_rclone_copies_a_tree_up_and_down_and_checks_it(gateway_factory, tmp_path):
    r = gateway_factory(protocols=("http",))
    src, down = tmp_path / "src", tmp_path / "down"
    src.mkdir()
    _tree(src)
    config = tmp_path / "rclone.conf"
    config.write_text("")
    obscured = subprocess.run(["rclone", "obscure", PASSWORDS["alice"]], capture_output=True, text=True,
                              check=True).stdout.strip()
    env = {**os.environ, "RCLONE_CONFIG_GW_TYPE": "webdav", "RCLONE_CONFIG_GW_VENDOR": "other",
           "RCLONE_CONFIG_GW_URL": f"http://127.0.0.1:{r.port('http')}/dav", "RCLONE_CONFIG_GW_USER": "alice",
           "RCLONE_CONFIG_GW_PASS": obscured}

    def rclone(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(["rclone", "--config", str(config), "--low-level-retries", "1", "--retries", "1",
                               *args], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    rclone("copy", "--create-empty-src-dirs", str(src), "gw:up")
    _same_tree(src, r.data / "up")
    rclone("check", str(src), "gw:up")
    rclone("check", "--download", str(src), "gw:up")
    rclone("copy", "--create-empty-src-dirs", "gw:up", str(down))
    _same_tree(src, down)
    listed = rclone("lsf", "-R", "gw:up").stdout.splitlines()
    assert "docs/deep/er/random.bin" in listed
