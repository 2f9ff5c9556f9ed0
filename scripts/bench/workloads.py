"""The workloads: each prepares its fixture directly on the server's storage
(untimed), runs one client action (timed, with the server's peak memory
sampled), then waits until the storage shows the result — the gateway may
reply before a backgrounded job has finished, so "done" is measured on the
storage, not taken from the reply — and checks it."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from clients import ClientError, Unsupported, client_for, rename_reply
from peers import Endpoint
from procs import RssSampler

__all__ = ["Sizes", "SIZES", "Fixtures", "Workload", "WORKLOADS", "run_once"]


@dataclass(frozen=True)
class Sizes:
    big: int            # bytes of the big file
    dirs: int           # folders of the small-file tree
    per_dir: int        # files per folder (4 KiB each)
    listing: int        # entries of the folder to list
    folder: int         # files of the folder to rename and delete
    s3_folder: int      # objects of the S3 folder to rename

    @property
    def small(self) -> int:
        return self.dirs * self.per_dir

    def words(self) -> dict[str, str]:
        """The sizes as a title shows them (``{big}`` -> "1 GiB")."""
        big = f"{self.big >> 30} GiB" if self.big >= 1 << 30 else f"{self.big >> 20} MiB"
        return {"big": big, "small": f"{self.small:,}", "dirs": str(self.dirs), "listing": f"{self.listing:,}",
                "folder": f"{self.folder:,}", "s3_folder": f"{self.s3_folder:,}"}


SIZES = {
    "full": Sizes(big=1 << 30, dirs=20, per_dir=100, listing=20000, folder=2000, s3_folder=2000),
    "quick": Sizes(big=64 << 20, dirs=20, per_dir=10, listing=2000, folder=200, s3_folder=100),
    "smoke": Sizes(big=4 << 20, dirs=4, per_dir=5, listing=200, folder=50, s3_folder=20),
}
SMALL = 4096


class Fixtures:
    """Local source files, made once per run: the big file, the small-file
    tree, and a flat folder whose files are hard-linked into servers' folders."""

    def __init__(self, root: Path, sizes: Sizes) -> None:
        self.root = root
        self.sizes = sizes
        root.mkdir(parents=True, exist_ok=True)
        self.big = root / "big.bin"
        block = os.urandom(4 << 20)
        with open(self.big, "wb") as f:
            left = sizes.big
            while left > 0:
                left -= f.write(block[:left])
        self.small = root / "small"
        for d in range(sizes.dirs):
            folder = self.small / f"d{d:02d}"
            folder.mkdir(parents=True)
            for i in range(sizes.per_dir):
                (folder / f"f{i:04d}.dat").write_bytes(os.urandom(SMALL))
        self.flat = root / "flat"
        self.flat.mkdir()
        for i in range(sizes.folder):
            (self.flat / f"f{i:05d}.dat").write_bytes(os.urandom(SMALL))
        self.scratch = root / "scratch"
        self.scratch.mkdir()


@dataclass
class Run:
    """What one timed run needs."""

    ep: Endpoint
    fx: Fixtures
    key: Path
    i: int                  # repetition number, to keep names fresh
    timeout: float

    @property
    def client(self):
        return client_for(self.ep, self.key, self.timeout)

    @property
    def st(self):
        return self.ep.storage

    @property
    def local(self) -> Path:
        return self.fx.scratch / f"{self.ep.name}-{self.ep.protocol}-{self.i}"


@dataclass(frozen=True)
class Workload:
    """``title`` is formatted with :meth:`Sizes.words`. ``prepare`` and ``cleanup`` are untimed; ``act`` is timed and may
    return the reply time itself (else the call's duration counts);
    ``done`` polls the storage until the result is there; ``check`` returns
    an error text or ''. ``remote``: runs on the S3 endpoints, else on the
    local-disk ones. ``target``: the ratio to the fastest peer the issue
    asks for (None: judged otherwise)."""

    key: str
    title: str
    act: Callable[[Run], float | None]
    prepare: Callable[[Run], None] = lambda r: None
    done: Callable[[Run], bool] = lambda r: True
    check: Callable[[Run], str] = lambda r: ""
    cleanup: Callable[[Run], None] = lambda r: None
    remote: bool = False
    target: float | None = None
    kind: str = "bulk"
    #: what one operation is, for the server's CPU per operation, and how many a run makes
    unit: str = "MiB"
    ops: Callable[[Sizes], int] = lambda s: max(1, s.big >> 20)


def _mismatch(what: str, got: int, want: int) -> str:
    return "" if got == want else f"{what}: got {got}, expected {want}"


def _local_count(path: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(path))


def _rm_local(r: Run) -> None:
    shutil.rmtree(r.local, ignore_errors=True)
    try:
        r.local.with_suffix(".bin").unlink()
    except OSError:
        pass


WORKLOADS = [
    Workload(
        "download_big", "download 1 file of {big}",
        prepare=lambda r: r.st.link_file(r.fx.big, "big.bin"),
        act=lambda r: r.client.get("big.bin", r.local.with_suffix(".bin")),
        check=lambda r: _mismatch("bytes", os.path.getsize(r.local.with_suffix(".bin")), r.fx.sizes.big),
        cleanup=_rm_local, target=1.0),  # #28: 1 GiB transfers at or below the fastest peer
    Workload(
        "upload_big", "upload 1 file of {big}",
        act=lambda r: r.client.put(r.fx.big, f"up{r.i}.bin"),
        done=lambda r: r.st.size(f"up{r.i}.bin") == r.fx.sizes.big,
        cleanup=lambda r: r.st.remove(f"up{r.i}.bin"), target=1.0),
    Workload(
        "upload_small", "upload {small} × 4 KiB in {dirs} folders",
        act=lambda r: r.client.put_tree(r.fx.small, f"tree{r.i}"),
        check=lambda r: _mismatch("files", r.st.count(f"tree{r.i}"), r.fx.sizes.small),
        cleanup=lambda r: r.st.remove(f"tree{r.i}"), target=1.5, kind="small",
        unit="file", ops=lambda s: s.small),
    Workload(
        "download_small", "download {small} × 4 KiB in {dirs} folders",
        prepare=lambda r: r.st.exists("treesrc") or r.st.link_tree(r.fx.small, "treesrc"),
        act=lambda r: r.client.get_tree("treesrc", r.local),
        check=lambda r: _mismatch("files", _local_count(r.local), r.fx.sizes.small),
        cleanup=_rm_local, target=1.5, kind="small", unit="file", ops=lambda s: s.small),
    Workload(
        "list", "list a folder of {listing} entries",
        prepare=lambda r: r.st.empty_files("listing", r.fx.sizes.listing),
        # Timed: the client's listing. Counting what it printed is the harness's work.
        act=lambda r: setattr(r, "listed", r.client.list("listing")),
        check=lambda r: _mismatch("entries", r.client.entries(getattr(r, "listed", "")), r.fx.sizes.listing),
        target=1.5, kind="small", unit="entry", ops=lambda s: s.listing),
    Workload(
        "rename_folder", "rename a folder of {folder} files",
        prepare=lambda r: r.st.link_tree(r.fx.flat, f"ren{r.i}"),
        act=lambda r: r.client.rename(f"ren{r.i}", f"ren{r.i}x"),
        done=lambda r: not r.st.exists(f"ren{r.i}") and r.st.count(f"ren{r.i}x") == r.fx.sizes.folder,
        cleanup=lambda r: (r.st.remove(f"ren{r.i}"), r.st.remove(f"ren{r.i}x")), target=1.5, kind="small",
        unit="file", ops=lambda s: s.folder),
    Workload(
        "delete_folder", "delete a folder of {folder} files",
        prepare=lambda r: r.st.link_tree(r.fx.flat, f"del{r.i}"),
        act=lambda r: r.client.delete_tree(f"del{r.i}"),
        done=lambda r: not r.st.exists(f"del{r.i}"),
        cleanup=lambda r: r.st.remove(f"del{r.i}"), target=1.5, kind="small",
        unit="file", ops=lambda s: s.folder),
    Workload(
        "copy_big", "server-side copy of {big}",
        prepare=lambda r: r.st.link_file(r.fx.big, "big.bin"),
        act=lambda r: r.client.copy("big.bin", f"copy{r.i}.bin"),
        done=lambda r: r.st.size(f"copy{r.i}.bin") == r.fx.sizes.big,
        cleanup=lambda r: r.st.remove(f"copy{r.i}.bin"), target=1.3),
    Workload(
        "s3_rename", "S3 mount: rename a folder of {s3_folder} objects",
        prepare=lambda r: r.st.put_objects(f"{r.ep.protocol}{r.i}/src", r.fx.sizes.s3_folder, b"x" * SMALL),
        act=lambda r: rename_reply(r.ep, r.key, r.ep.rel(f"{r.ep.protocol}{r.i}/src"),
                                   r.ep.rel(f"{r.ep.protocol}{r.i}/dst"), r.timeout),
        done=lambda r: (not r.st.exists(f"{r.ep.protocol}{r.i}/src")
                        and r.st.count(f"{r.ep.protocol}{r.i}/dst") == r.fx.sizes.s3_folder),
        cleanup=lambda r: (r.st.remove(f"{r.ep.protocol}{r.i}/src"), r.st.remove(f"{r.ep.protocol}{r.i}/dst")),
        remote=True, target=1.2, kind="remote", unit="object", ops=lambda s: s.s3_folder),
]


def run_once(w: Workload, r: Run) -> dict:
    """One timed run: {reply_s, done_s, rss, cpu_s, ops} or {error} /
    {unsupported}. ``cpu_s``: user + system seconds the server's process
    tree spent from the start of the action until the result was done (see
    RssSampler)."""
    try:
        w.prepare(r)
        r.ep.server.refresh()
    except Exception as e:  # noqa: BLE001 - a broken fixture is that run's error
        return {"error": f"prepare: {e}"}
    sampler = RssSampler(lambda: [pid for pid in (r.ep.server.pid,) if pid]).start()
    try:
        t0 = time.perf_counter()
        reply = w.act(r)
        t1 = time.perf_counter()
        # act() may time the reply itself (after login); the wait after it counts towards done.
        reply_s = reply if isinstance(reply, float) else t1 - t0
        while not w.done(r):
            if time.perf_counter() - t1 > r.timeout:
                raise ClientError(f"not done {r.timeout:.0f} s after the reply")
            time.sleep(0.01)
        done_s = time.perf_counter() - t1 + reply_s
        cpu_s = sampler.cpu_seconds()
        error = w.check(r)
    except Unsupported as e:
        return {"unsupported": str(e)}
    except ClientError as e:
        return {"error": str(e)}
    except Exception as e:  # noqa: BLE001 - one broken run must not lose the others
        return {"error": f"{type(e).__name__}: {e}"}
    finally:
        peak = sampler.stop()
        try:
            w.cleanup(r)
        except Exception:  # noqa: BLE001 - leftovers only cost disk in the temp folder
            pass
    if error:
        return {"error": error}
    return {"reply_s": reply_s, "done_s": done_s, "rss": peak, "cpu_s": cpu_s, "ops": w.ops(r.fx.sizes)}
