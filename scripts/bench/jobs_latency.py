#!/usr/bin/env python3
"""The job engine's two scale claims (issue #4), measured in-process:

1. **Reply latency of a backgrounded move** does not grow with the folder:
   ``ops.move`` of a folder of 1k, 10k and 100k objects on a ``memory://``
   mount (no atomic rename there, so every move is a job), with a zero sync
   budget so the reply is pure planning + journaling + hand-off. The job is
   stopped right after the reply (it would otherwise copy in the background
   and skew the next sample). ``backend info`` columns show what of the
   reply is the storage's own lookups: fsspec's memory store answers a stat
   of a missing path by scanning every key it holds, so that part grows with
   the store, not with the gateway.

2. **Peak memory of enumerating a 1,000,000-object tree** stays flat: the
   prepare phase of a delete job (enumeration streamed into the journal,
   nothing deleted) over trees of 10k, 100k and 1M empty files on local
   disk, created once under a cache folder (``--tree-dir``) and reused — a
   million entries in ``memory://`` would themselves weigh about a gigabyte
   and swamp the measurement. Peak RSS comes from VmHWM (reset through
   /proc/self/clear_refs before each size); ``--tracemalloc`` adds the peak
   of Python allocations during the enumeration (about 2x slower).

    scripts/bench/jobs_latency.py [--sizes 1000,10000,100000] [--repeat 5]
        [--enumerate 10000,100000,1000000] [--tree-dir DIR] [--tracemalloc] [--json out.json]

Prints Markdown tables on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.app import Gateway  # noqa: E402
from gateway.jobs.model import Job  # noqa: E402
from gateway.jobs.runner import JobRunner, RunnerSettings, _Run  # noqa: E402
from gateway.types import Session  # noqa: E402
from gateway.users import User  # noqa: E402

PER_FOLDER = 1000


def _session() -> Session:
    return Session(User("bench", admin=True), "bench")


def _rss() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line[:5]] = int(line.split()[1]) * 1024
    return out["VmRSS"], out["VmHWM"]


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# -- 1. reply latency -------------------------------------------------------------------


def _halt(gw: Gateway, session: Session, job_id: str, src: str, dst: str) -> None:
    """Cancel (queued) or stop (running) the job and wait until it has
    rolled back — or, when it was quicker, move the folder back — so the
    source is whole again for the next sample."""
    from gateway.errors import InvalidState

    for _ in range(1000):
        job = gw.ops.get_job(session, job_id)
        try:
            if job.state == "queued":
                gw.ops.cancel_job(session, job_id)
            elif job.state == "running":
                gw.ops.stop_job(session, job_id)
            break
        except InvalidState:  # it changed state under us: look again
            time.sleep(0.001)
    job = gw.ops.wait_job(session, job_id, 600)
    if job.state == "completed":
        gw.ops.move(session, dst, src, budget_s=600)
    elif job.state not in ("stopped", "cancelled"):
        raise RuntimeError(f"job {job_id} ended {job.state}: {job.error}")


def reply_latency(sizes: list[int], repeat: int, state: Path) -> list[dict]:
    from fsspec.implementations.memory import MemoryFileSystem

    rows = []
    for n in sizes:
        MemoryFileSystem.store.clear()
        MemoryFileSystem.pseudo_dirs[:] = [""]
        root = f"/jl-{uuid.uuid4().hex[:8]}"
        fs = MemoryFileSystem()
        for d in range(0, n, PER_FOLDER):
            fs.mkdir(f"{root}/src/d{d // PER_FOLDER:04d}")
        body = b"x" * 16
        for i in range(n):
            fs.pipe_file(f"{root}/src/d{i // PER_FOLDER:04d}/f{i:07d}", body)
        gw = Gateway.build({"/": f"memory://{root}"}, state / f"reply-{n}").start()
        backend = gw.namespace.resolve("/")[0].backend
        session = _session()
        replies, info_src, info_dst = [], [], []
        try:
            for rep in range(repeat):
                t0 = time.perf_counter()
                backend.info(f"{root}/src")
                t1 = time.perf_counter()
                backend.exists(f"{root}/dst{rep}")
                t2 = time.perf_counter()
                outcome = gw.ops.move(session, "/src", f"/dst{rep}", budget_s=0)
                replies.append(time.perf_counter() - t2)
                info_src.append(t1 - t0)
                info_dst.append(t2 - t1)
                if not outcome.backgrounded:
                    raise RuntimeError(f"move of {n} objects was not backgrounded: {outcome}")
                _halt(gw, session, outcome.job_id, "/src", f"/dst{rep}")
        finally:
            gw.close()
        row = {"objects": n, "reply_s": statistics.median(replies), "reply_min_s": min(replies),
               "reply_max_s": max(replies), "info_src_s": statistics.median(info_src),
               "info_missing_dst_s": statistics.median(info_dst), "runs": replies}
        print(f"jobs_latency: move of {n:,} objects: reply {row['reply_s'] * 1000:.1f} ms", file=sys.stderr)
        rows.append(row)
    MemoryFileSystem.store.clear()
    return rows


# -- 2. enumeration memory --------------------------------------------------------------


def make_tree(base: Path, n: int) -> Path:
    """``base/t<n>``: n empty files in folders of 1,000, made once (a marker
    file says it is complete)."""
    tree = base / f"t{n}"
    done = base / f"t{n}.complete"
    if done.exists():
        return tree
    print(f"jobs_latency: creating {n:,} empty files under {tree} (once)", file=sys.stderr)
    for d in range(0, n, PER_FOLDER):
        folder = tree / f"d{d // PER_FOLDER:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(d, min(n, d + PER_FOLDER)):
            os.close(os.open(folder / f"f{i:07d}", os.O_CREAT | os.O_WRONLY, 0o644))
    done.touch()
    return tree


def _enumerate(tree: Path, state: Path, trace: bool) -> dict:
    """Run a delete job's prepare phase over ``tree`` (journal only)."""
    gw = Gateway.build({"/": f"file://{tree.parent}"}, state)  # not started: no worker takes the job
    runner = JobRunner(gw.store, gw.namespace, RunnerSettings())
    job = Job(id=uuid.uuid4().hex[:16], queue="delete", operation="delete", src=f"/{tree.name}", dst=None,
              stage=None, owner="bench", session_id="bench", protocol="bench")
    gw.store.create(job)
    job = gw.store.claim(["delete"], "bench")  # as a worker would: running, owned by us
    try:
        rss_before, _ = _rss()
        exact = _reset_hwm()
        if trace:
            tracemalloc.start()
        t0 = time.perf_counter()
        _Run(runner, job).prepare()
        elapsed = time.perf_counter() - t0
        traced = tracemalloc.get_traced_memory()[1] if trace else None
        if trace:
            tracemalloc.stop()
        rss_after, hwm = _rss()
        journaled = gw.store.count_items(job.id)[0]
    finally:
        gw.close()
    return {"journaled_items": journaled, "seconds": elapsed, "rss_before": rss_before,
            "peak_rss": hwm if exact else rss_after, "peak_exact": exact, "tracemalloc_peak": traced}


def enumeration_memory(counts: list[int], tree_dir: Path, state: Path, trace: bool) -> list[dict]:
    """Peak RSS per tree size; with ``trace`` a second, traced pass adds the
    peak of Python allocations (tracemalloc's own tables would inflate RSS)."""
    rows = []
    for n in counts:
        tree = make_tree(tree_dir, n)
        row = {"objects": n, **_enumerate(tree, state / f"enum-{n}", False)}
        if row["journaled_items"] < n:  # files, plus one item per folder
            raise RuntimeError(f"journaled {row['journaled_items']} items for {n} files")
        if trace:
            row["tracemalloc_peak"] = _enumerate(tree, state / f"enum-{n}-traced", True)["tracemalloc_peak"]
        print(f"jobs_latency: enumerated {n:,} files in {row['seconds']:.1f} s, "
              f"peak RSS {row['peak_rss'] / 2**20:.0f} MiB", file=sys.stderr)
        rows.append(row)
    return rows


def markdown(reply: list[dict], enum: list[dict]) -> str:
    out = []
    if reply:
        out += ["| folder size | reply median ms | min–max ms | of which backend info(src) ms | "
                "info(missing dst) ms |", "| --- | --- | --- | --- | --- |"]
        for r in reply:
            out.append(f"| {r['objects']:,} objects | {r['reply_s'] * 1e3:.1f} | {r['reply_min_s'] * 1e3:.1f}–"
                       f"{r['reply_max_s'] * 1e3:.1f} | {r['info_src_s'] * 1e3:.1f} | "
                       f"{r['info_missing_dst_s'] * 1e3:.1f} |")
    if enum:
        out += ["", "| tree | items journaled | enumeration s | RSS before MiB | peak RSS MiB | "
                "peak Python allocations MiB |", "| --- | --- | --- | --- | --- | --- |"]
        for r in enum:
            traced = f"{r['tracemalloc_peak'] / 2**20:.1f}" if r["tracemalloc_peak"] is not None else "—"
            out.append(f"| {r['objects']:,} files | {r['journaled_items']:,} | {r['seconds']:.1f} | "
                       f"{r['rss_before'] / 2**20:.0f} | {r['peak_rss'] / 2**20:.0f} | {traced} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000,100000", help="objects per moved folder")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--enumerate", default="10000,100000,1000000", help="files per enumerated tree ('' skips)")
    p.add_argument("--tree-dir", type=Path, default=Path("/var/tmp/gateway-bench-trees"))
    p.add_argument("--tracemalloc", action="store_true")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    ints = lambda s: [int(x) for x in s.split(",") if x.strip()]  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="jobs-latency-") as tmp:
        reply = reply_latency(ints(args.sizes), args.repeat, Path(tmp))
        enum = enumeration_memory(ints(args.enumerate), args.tree_dir, Path(tmp), args.tracemalloc)
    print(markdown(reply, enum))
    if args.json:
        args.json.write_text(json.dumps({"reply": reply, "enumeration": enum}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
