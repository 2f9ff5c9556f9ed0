#!/usr/bin/env python3
"""Several nodes on one PostgreSQL (issue #27), measured in-process against
this machine's server (127.0.0.1:5432, trust; a database of its own,
dropped at the end):

1. **Cross-node visibility delay**: node A uploads a file through its core
   into a remote mount (a local pyftpdlib server) whose listings every node
   caches for an hour; node B lists that folder (so it holds it cached)
   before each upload. Timed from the end of A's upload (what its client
   waits for) to the file showing in B's listing, polled every 0.2 ms (the
   NOTIFY's delivery and one fresh FTP LIST by B). p50/p90/p99/max over
   ``--samples`` uploads.

2. **Small-job throughput, 1 vs 3 nodes**: node A queues ``--jobs`` moves of
   folders of ``--files`` files each on a latency-bound ``slow::memory``
   mount (``--latency-ms`` per call); with 1 node only A's workers run them,
   with 3 nodes B's and C's are woken through LISTEN/NOTIFY too. Wall time
   from the first enqueue to the last job's completion, and the ratio.

3. **One big job, 1 vs 3 nodes**: one move of ``--big-objects`` small
   objects (``--big-folders`` folders) on a ``slow::memory`` mount of
   ``--big-latency-ms`` per call; the idle workers of every node copy
   batches of its journal. Wall time from the move's reply to its
   completion, and the ratio. All nodes run in this one process (one GIL,
   the machine's cores shared), so the ratio is a floor of what separate
   machines would get.

    scripts/bench/cluster.py [--samples 200] [--jobs 36] [--files 10]
        [--latency-ms 10] [--workers 2] [--big-objects 20000] [--big-folders 20]
        [--big-latency-ms 1] [--json out.json]

Prints Markdown tables on stdout. Not a test: numbers depend on the
machine's load.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import sqlalchemy as sa  # noqa: E402

from gateway.app import Gateway  # noqa: E402
from gateway.types import Session  # noqa: E402
from gateway.users import User  # noqa: E402

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _database() -> tuple[str, callable]:
    name = f"gw_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", drop


def _ftp_server(root: Path):
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.ioloop import IOLoop
    from pyftpdlib.servers import ThreadedFTPServer

    auth = DummyAuthorizer()
    auth.add_user("bench", "bench-pw", str(root), perm="elradfmwMT")
    handler = type("Handler", (FTPHandler,), {"authorizer": auth})
    server = ThreadedFTPServer(("127.0.0.1", 0), handler, ioloop=IOLoop())
    t = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.2, "handle_exit": False}, daemon=True)
    t.start()
    return server, server.socket.getsockname()[1]


def _wait(cond, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.01)


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def visibility(samples: int, tmp: Path) -> dict:
    url, drop = _database()
    root = tmp / "ftp"
    root.mkdir()
    server, port = _ftp_server(root)
    mount = (f"ftp://127.0.0.1:{port}/", {"username": "bench", "password": "bench-pw"}, {"cache_ttl_s": 3600})
    a = Gateway.build({"/": "memory://bench-vis", "/r": mount}, tmp / "a", store_url=url, node="a").start()
    b = Gateway.build({"/": "memory://bench-vis", "/r": mount}, tmp / "b", store_url=url, node="b").start()
    s = Session(User("bench", admin=True), "bench")
    visible = []
    try:
        _wait(lambda: a.bus.trusted and b.bus.trusted)
        for i in range(samples):
            b.ops.list(s, "/r")  # B holds /r cached
            w = a.ops.open_write(s, f"/r/f{i:05}")
            w.write(b"x")
            w.commit()
            t0 = time.perf_counter()
            name = f"f{i:05}"
            while name not in {e.name for e in b.ops.list(s, "/r")}:
                time.sleep(0.0002)
            visible.append(time.perf_counter() - t0)
    finally:
        b.close()
        a.close()
        server.close_all()
        drop()

    ms = [v * 1000 for v in visible]
    return {"samples": samples, "p50_ms": _pct(ms, 50), "p90_ms": _pct(ms, 90), "p99_ms": _pct(ms, 99),
            "max_ms": max(ms), "mean_ms": statistics.fmean(ms)}


def throughput(jobs: int, files: int, latency_ms: float, workers: int, nodes: int, tmp: Path) -> float:
    url, drop = _database()
    slow = (f"slow::memory://bench-{uuid.uuid4().hex[:8]}", {"slow": {"latency_ms": latency_ms}})
    queues = {"move": workers}
    started = []
    try:
        a = Gateway.build({"/": slow}, tmp / f"n{nodes}-a", store_url=url, node="a", budget_s=0, queues=queues)
        started.append(a.start())
        for name in "bc"[: nodes - 1]:
            g = Gateway.build({"/": slow}, tmp / f"n{nodes}-{name}", store_url=url, node=name, budget_s=0,
                              queues=queues)
            started.append(g.start())
        _wait(lambda: all(g.bus.trusted for g in started))
        s = Session(User("bench", admin=True), "bench")
        for j in range(jobs):
            a.ops.mkdir(s, f"/s{j}")
            for i in range(files):
                w = a.ops.open_write(s, f"/s{j}/f{i}")
                w.write(b"x" * 100)
                w.commit()
        t0 = time.perf_counter()
        ids = [a.ops.move(s, f"/s{j}", f"/d{j}").job_id for j in range(jobs)]
        for job_id in ids:
            job = a.dispatcher.wait(job_id, 600)
            assert job.state == "completed", job
        took = time.perf_counter() - t0
        by_node: dict[str, int] = {}
        for job_id in ids:
            node = a.store.get(job_id).node
            by_node[node] = by_node.get(node, 0) + 1
        print(f"  {nodes} node(s): {took:.2f} s, jobs per node {by_node}", file=sys.stderr)
        return took
    finally:
        for g in reversed(started):
            g.close()
        drop()


def big_job(objects: int, folders: int, latency_ms: float, workers: int, nodes: int, tmp: Path) -> float:
    import fsspec

    url, drop = _database()
    root = f"bench-big-{uuid.uuid4().hex[:8]}"
    memory = fsspec.filesystem("memory")
    for i in range(objects):  # made behind the gateway: only the job is timed
        memory.pipe_file(f"/{root}/src/d{i % folders}/f{i}", b"x" * 100)
    slow = (f"slow::memory://{root}", {"slow": {"latency_ms": latency_ms}})
    queues = {"move": workers}
    started = []
    try:
        for name in "abc"[:nodes]:
            g = Gateway.build({"/": slow}, tmp / f"big{nodes}-{name}", store_url=url, node=name, budget_s=0,
                              queues=queues)
            started.append(g.start())
        _wait(lambda: all(g.bus.trusted for g in started))
        a = started[0]
        s = Session(User("bench", admin=True), "bench")
        t0 = time.perf_counter()
        job_id = a.ops.move(s, "/src", "/dst").job_id
        job = a.dispatcher.wait(job_id, 3600)
        took = time.perf_counter() - t0
        assert job.state == "completed" and job.items_done == objects + folders + 1, job
        print(f"  big job, {nodes} node(s): {took:.2f} s", file=sys.stderr)
        return took
    finally:
        for g in reversed(started):
            g.close()
        for key in [k for k in memory.store if k.startswith(f"/{root}/")]:  # rm(recursive) is quadratic here
            del memory.store[key]
        memory.pseudo_dirs[:] = [d for d in memory.pseudo_dirs if not d.startswith(f"/{root}")]
        drop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--jobs", type=int, default=36)
    p.add_argument("--files", type=int, default=10)
    p.add_argument("--latency-ms", type=float, default=10.0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--big-objects", type=int, default=20000)
    p.add_argument("--big-folders", type=int, default=20)
    p.add_argument("--big-latency-ms", type=float, default=1.0)
    p.add_argument("--big-nodes", default="1,3", help="node counts for the big job, e.g. 1,3 or 3")
    p.add_argument("--json")
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="gw-bench-cluster-") as d:
        tmp = Path(d)
        vis = visibility(args.samples, tmp) if args.samples else None
        if vis:
            print(f"### Cross-node visibility ({vis['samples']} uploads on A, B lists a cached remote folder)\n")
            print("| end of A's upload → B lists it | p50 ms | p90 ms | p99 ms | max ms | mean ms |")
            print("|---|---:|---:|---:|---:|---:|")
            print(f"| | {vis['p50_ms']:.2f} | {vis['p90_ms']:.2f} | {vis['p99_ms']:.2f} | {vis['max_ms']:.2f} "
                  f"| {vis['mean_ms']:.2f} |", flush=True)
        one = three = None
        if args.jobs:
            one = throughput(args.jobs, args.files, args.latency_ms, args.workers, 1, tmp)
            three = throughput(args.jobs, args.files, args.latency_ms, args.workers, 3, tmp)
            print(f"\n### Small jobs: {args.jobs} moves of {args.files} files, slow::memory {args.latency_ms:g} "
                  f"ms/call, {args.workers} workers per node\n")
            print("| nodes | wall s | jobs/s |")
            print("|---:|---:|---:|")
            for n, took in ((1, one), (3, three)):
                print(f"| {n} | {took:.2f} | {args.jobs / took:.1f} |")
            print(f"\n3 nodes took {three / one:.2f}× the time of 1 node ({one / three:.2f}× the throughput).",
                  flush=True)
        big = {}
        if args.big_objects:
            print(f"\n### One move of {args.big_objects:,} objects in {args.big_folders} folders, slow::memory "
                  f"{args.big_latency_ms:g} ms/call, {args.workers} workers per node\n")
            print("| nodes | wall s | objects/s |")
            print("|---:|---:|---:|", flush=True)
            for n in (int(x) for x in args.big_nodes.split(",")):
                big[n] = big_job(args.big_objects, args.big_folders, args.big_latency_ms, args.workers, n, tmp)
                print(f"| {n} | {big[n]:.2f} | {args.big_objects / big[n]:.0f} |", flush=True)
            if 1 in big and 3 in big:
                print(f"\n3 nodes took {big[3] / big[1]:.2f}× the time of 1 node.")
    if args.json:
        Path(args.json).write_text(json.dumps({"visibility": vis, "small_jobs": {
            "jobs": args.jobs, "files": args.files, "latency_ms": args.latency_ms, "workers": args.workers,
            "one_node_s": one, "three_nodes_s": three}, "big_job": {
            "objects": args.big_objects, "folders": args.big_folders, "latency_ms": args.big_latency_ms,
            "workers": args.workers, "seconds_by_nodes": big}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
