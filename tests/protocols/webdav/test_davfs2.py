"""davfs2 (Debian's FUSE WebDAV file system) mounting the gateway's /dav,
as a user mounts a drive: copy a tree in, edit in place (``sed -i``), save
as editors do (write a temporary, rename it over the file), ``mv``,
``rm -r``; after unmount the server holds exactly that tree, and a new
mount shows it again. davfs2 LOCKs a file before it writes it: an edit of a
file a job owns is refused when the file is opened, never parked in the
mount's lost+found to be lost.

davfs2 runs as root (mount.davfs), with ``buf_size 64`` (without it davfs2
1.6 lists nothing on current kernels, see the README), credentials in a
secrets file and a cache in a folder its ``davfs2`` user can write. Its
default ``delay_upload`` (10 s) keeps each new or changed file locked while
the editing goes on, so its renames and deletes carry the lock tokens the
core must honour."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import fsspec
import httpx
import pytest

from conftest import PASSWORDS

MOUNT_DAVFS = shutil.which("mount.davfs") or "/usr/sbin/mount.davfs"


def _fuse_unavailable() -> str | None:
    """Why FUSE cannot be used here, or None."""
    if os.geteuid() != 0:
        return "mounting davfs2 needs root"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as exc:
        return f"FUSE is unavailable: /dev/fuse: {exc.strerror}"
    return None


_NO_FUSE = _fuse_unavailable()
pytestmark = pytest.mark.skipif(_NO_FUSE is not None, reason=str(_NO_FUSE))


class Davfs2:
    """One davfs2 mount of ``url`` at ``tmp/mnt`` as ``user``."""

    def __init__(self, tmp: Path, url: str, user: str) -> None:
        assert os.path.exists(MOUNT_DAVFS), "davfs2 is not installed (scripts/test installs it)"
        self.url = url
        self.dir = tmp / "mnt"
        self.dir.mkdir()
        # davfs2 writes its cache as its own user: a folder in /tmp it may enter.
        self.cache = Path(tempfile.mkdtemp(prefix="davfs2-cache-", dir="/tmp"))
        self.cache.chmod(0o777)
        secrets = tmp / "davfs2.secrets"
        secrets.write_text(f'{url} {user} "{PASSWORDS[user]}"\n')
        secrets.chmod(0o600)
        self.conf = tmp / "davfs2.conf"
        self.conf.write_text("\n".join([
            "use_locks 1",
            "buf_size 64",
            f"cache_dir {self.cache}",
            f"secrets {secrets}",
            "ask_auth 0",
        ]) + "\n")

    def mount(self) -> None:
        done = subprocess.run([MOUNT_DAVFS, self.url, str(self.dir), "-o", f"conf={self.conf}"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and os.path.ismount(self.dir), done.stderr

    def umount(self) -> None:
        """Unmount; umount.davfs waits until every change is uploaded."""
        done = subprocess.run(["umount", str(self.dir)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr

    def lost_and_found(self) -> list[str]:
        return sorted(os.listdir(self.dir / "lost+found"))

    def close(self) -> None:
        if os.path.ismount(self.dir):
            subprocess.run(["umount", "-l", str(self.dir)], capture_output=True, timeout=60)
        shutil.rmtree(self.cache, ignore_errors=True)


def digest(root: Path) -> dict[str, str]:
    """Relative path → sha256 of every file below ``root``."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def stored(fs: fsspec.AbstractFileSystem, root: str) -> dict[str, str]:
    """:func:`digest` of what the storage itself holds below ``root`` (less
    the folder markers object stores keep: empty keys ending in "/")."""
    root = root.rstrip("/")
    found = {path[len(root) + 1:]: path for path in sorted(fs.find(root))}
    return {rel: hashlib.sha256(fs.cat_file(path)).hexdigest() for rel, path in found.items()
            if rel and not rel.endswith("/")}


def run(*args: object) -> None:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (args, done.stderr)


def make_tree(root: Path) -> None:
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "gone" / "inner").mkdir(parents=True)
    (root / "a.txt").write_text("hello\nworld\n")
    (root / "sub" / "b.txt").write_text("before\n")
    (root / "sub" / "deep" / "c.bin").write_bytes(os.urandom(300_000))
    (root / "gone" / "inner" / "x.txt").write_text("x\n")
    (root / "ünïcode name.txt").write_text("ü\n")


def edit(tree: Path) -> None:
    """What a user does in the mounted folder."""
    run("sed", "-i", "s/hello/HELLO/", tree / "a.txt")
    temp = tree / "sub" / ".b.txt.swp"  # an editor's save: write a temporary, rename it over the file
    temp.write_text("after an editor's save\n")
    os.replace(temp, tree / "sub" / "b.txt")
    run("mv", tree / "sub" / "deep", tree / "deeper")
    run("rm", "-r", tree / "gone")


@pytest.fixture(params=["local", "slow", "s3"])
def storage(request, tmp_path):
    """(mount spec at /store, the storage's own file system, its root)."""
    if request.param == "local":
        (tmp_path / "store").mkdir()
        yield f"file://{tmp_path / 'store'}", fsspec.filesystem("file"), str(tmp_path / "store")
    elif request.param == "slow":
        root = f"davfs2-{uuid.uuid4().hex[:10]}"
        yield (f"slow::memory://{root}", {"slow": {"latency_ms": 20}}), fsspec.filesystem("memory"), f"/{root}"
    else:
        url, options, fs = request.getfixturevalue("moto_s3")
        yield (url, options), fs, url.removeprefix("s3://")


def test_a_tree_edited_through_davfs2_is_the_servers_tree(gateway_factory, storage, tmp_path):
    spec, fs, root = storage
    gw = gateway_factory(protocols=("http",), mounts={"/": f"file://{tmp_path / 'data'}", "/store": spec})
    expected = tmp_path / "expected"
    make_tree(tmp_path / "src")
    shutil.copytree(tmp_path / "src", expected)
    edit(expected)
    drive = Davfs2(tmp_path, f"http://127.0.0.1:{gw.port('http')}/dav", "alice")
    try:
        drive.mount()
        run("cp", "-r", tmp_path / "src", drive.dir / "store" / "tree")
        edit(drive.dir / "store" / "tree")
        drive.umount()
        assert stored(fs, f"{root}/tree") == digest(expected)

        drive.mount()
        assert digest(drive.dir / "store" / "tree") == digest(expected)
        assert drive.lost_and_found() == []
        drive.umount()
    finally:
        drive.close()


def test_an_edit_of_a_file_a_job_owns_is_refused_at_open(gateway_factory, tmp_path):
    """A folder on slow storage is being moved in the background (another
    client's REST request); opening one of its files for writing through
    davfs2 fails at once (its LOCK gets 423), the file is moved unchanged,
    and davfs2 keeps nothing to upload later."""
    root = f"davfs2-{uuid.uuid4().hex[:10]}"
    gw = gateway_factory(protocols=("http",), mounts={
        "/": f"file://{tmp_path / 'data'}",
        "/slow": (f"slow::memory://{root}", {"slow": {"latency_ms": 50}}),
    })
    memory = fsspec.filesystem("memory")
    for i in range(25):  # written straight into the storage: many objects make the move slow
        memory.pipe(f"/{root}/job/f{i:02}.txt", f"file {i}\n".encode())
    drive = Davfs2(tmp_path, f"http://127.0.0.1:{gw.port('http')}/dav", "alice")
    base = f"http://127.0.0.1:{gw.port('http')}"
    try:
        drive.mount()
        note = drive.dir / "slow" / "job" / "f00.txt"
        assert note.read_text() == "file 0\n"
        with httpx.Client(base_url=base, auth=("alice", PASSWORDS["alice"]), timeout=30,
                          headers={"Gateway-Session": "mover"}) as rest:
            r = rest.post("/api/v1/fs/move", json={"from": "/slow/job", "to": "/slow/done"},
                          headers={"Prefer": "respond-async"})
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            for mode in ("a", "w"):  # davfs2's LOCK gets 423: "Permission denied"
                with pytest.raises(PermissionError):
                    with open(note, mode) as f:
                        f.write("an edit\n")
            session = gw.session("alice")
            assert gw.ops.get_job(session, job_id).state == "running"  # refused because of the job
            assert gw.ops.wait_job(session, job_id, 120).state == "completed"
        assert drive.lost_and_found() == []
        drive.umount()
        assert memory.cat(f"/{root}/done/f00.txt") == b"file 0\n"
        assert not memory.exists(f"/{root}/job")
    finally:
        drive.close()
