#!/usr/bin/env python3
"""Where the gateway's CPU goes in one benchmark workload: py-spy on the gateway.

    scripts/bench/profile.py --gil --protocol webdav --workload upload_small [--repeat 3] [--rate 250]
                             [--sizes full|quick|smoke] [--before WORKLOAD] [--no-upload-checksums]
                             [--out DIR]
    scripts/bench/profile.py --analyse DIR/webdav-upload_small-gil.raw
    scripts/bench/profile.py --table DIR/*-gil.raw
    scripts/bench/profile.py --strace --protocol webdav --workload upload_small --repeat 1

Starts the gateway alone, configured as ``scripts/bench/run`` configures it
(same config, same standard client: lftp, OpenSSH sftp, curl), runs
``--before`` workloads and the workload once, unprofiled, then ``--repeat``
times under ``py-spy record``, and prints, as Markdown:

- the gateway's CPU over the profiled runs from /proc (user and system) and
  per operation;
- each layer's share of that CPU and its µs per operation: a sample is given
  to the innermost frame that belongs to a named layer (the gateway's
  adapters, core, backend, log line, login; a library by its package name);
  standard-library frames go to their caller;
- the functions with the most self time, and the libraries by the gateway
  function that called them.

``--gil`` (the mode RESULTS.md uses) samples only the thread holding the GIL:
the samples split the user time, and the kernel's share is the process's
system time. C code that releases the GIL (SQLite's engine, hashlib, a
cipher) is in the user time but not in the samples, so it is spread over the
layers pro rata.

Without ``--gil`` every thread is sampled (``--idle``) and a sample is idle
when its innermost Python line is a blocking wait (a ``poll``, ``select``,
``wait``, ``accept``, lock ``acquire``, queue ``get``, ``sleep``, socket
``recv_into``/``readinto``; py-spy's own idle test misses Python 3.11's
qualified names such as ``Condition.wait``). Any other system call counts as
busy for the frame that made it, so that mode sees C code outside the GIL,
but on a loaded machine it also counts a thread waiting on the disk or
preempted after a send.

``--table`` puts several GIL profiles side by side: one column per profile,
one row per layer, each cell the layer's share of that profile's CPU and its
µs per operation (the form RESULTS.md uses).

``--strace`` counts the gateway's system calls per operation instead.
The raw py-spy file and its ``.json`` (CPU, operations) stay in ``--out``.
Needs py-spy (``pip install py-spy``) and root or ptrace rights.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import linecache
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

from peers import Context, start_gateway  # noqa: E402
from procs import Procs, install_signal_handlers  # noqa: E402
from workloads import SIZES, WORKLOADS, Fixtures, Run, run_once  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK")
REPO = str(HERE.parents[1])
_STDLIB = sorted({sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}, key=len, reverse=True)
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
#: an innermost source line that blocks: the thread is waiting, not running
_WAIT = re.compile(r"(\.|\b)(poll|select|wait|accept|acquire|recv_into|readinto|sleep|epoll_wait|join)\(|"
                   r"\w*queue\.get\(|\.get\(block=True|^\s*waiter\.acquire")

#: files of helpers whose caller names a library call better (a transaction helper)
_HELPERS = ("gateway/jobs/store.py",)
#: gateway source files by path prefix (relative to the repository) -> layer
_OWN = [
    ("gateway/logs.py", "operation log line (gateway/logs.py)"),
    ("gateway/metrics.py", "operation log line (gateway/logs.py)"),
    ("gateway/auth.py", "login (auth, users, bans)"),
    ("gateway/users.py", "login (auth, users, bans)"),
    ("gateway/bans.py", "login (auth, users, bans)"),
    ("gateway/davstate.py", "DAV state (locks, dead properties)"),
    ("gateway/jobs/", "job store (gateway/jobs)"),
    ("gateway/", "core (gateway/: ops, namespace, checks)"),
    ("protocols/ftp/", "FTP adapter (protocols/ftp)"),
    ("protocols/sftp/", "SFTP adapter (protocols/sftp)"),
    ("protocols/webdav/", "WebDAV adapter (protocols/webdav)"),
    ("protocols/", "HTTP front (protocols/http*.py)"),
    ("backends/", "backend (backends/)"),
]


def _cpu_ticks(pid: int) -> tuple[int, int]:
    """(utime, stime) of process ``pid``, all threads, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def _short(path: str) -> str:
    """A frame's file relative to the repository, site-packages or the standard library."""
    if path.startswith(REPO + "/"):
        return path[len(REPO) + 1:]
    if "-packages/" in path:
        return path.rsplit("-packages/", 1)[1]
    return next((path[len(p) + 1:] for p in _STDLIB if path.startswith(p + "/")), path)


def _layer(path: str) -> str | None:
    """The layer of a frame's file (full path), or None for the standard
    library (the caller's frame decides)."""
    if path.startswith(REPO + "/"):
        rel = path[len(REPO) + 1:]
        return next((layer for prefix, layer in _OWN if rel.startswith(prefix)), "gateway (other)")
    if "-packages/" in path:
        return path.rsplit("-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if any(path.startswith(p + "/") for p in _STDLIB) or not path.startswith("/"):
        return None
    return path


def _frames(stack: str) -> list[tuple[str, str, int]]:
    """(function, file, line) from outermost to innermost; py-spy's raw
    format may start with the process and thread names."""
    out = []
    for part in stack.split(";"):
        m = _FRAME.match(part.strip())
        if m and m.group("file").endswith(".py"):
            out.append((m.group("func"), m.group("file"), int(m.group("line") or 0)))
    return out


def is_wait(func: str, path: str, line: int) -> bool:
    """Whether a sample's innermost frame is blocked waiting (see the module doc)."""
    return bool(_WAIT.search(linecache.getline(path, line))) if line else False


def analyse(raw: Path) -> tuple[int, int, Counter, Counter, Counter]:
    """(all samples, busy samples, busy samples per layer, per innermost
    function, per library and the innermost gateway function that called it)."""
    layers: Counter = Counter()
    selfs: Counter = Counter()
    callers: Counter = Counter()
    total = busy = 0
    for text in raw.read_text(errors="replace").splitlines():
        stack, _, count = text.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = _frames(stack)
        if not frames or is_wait(*frames[-1]):
            continue
        busy += n
        layer = next((lay for _, f, _ in reversed(frames) if (lay := _layer(f))), None)
        layers[layer or "standard library only (thread start-up, loops)"] += n
        func, f, _ = frames[-1]
        selfs[f"`{func}` ({_short(f)})"] += n
        if layer and not f.startswith(REPO + "/"):
            own = next(((fn, fl) for fn, fl, _ in reversed(frames)
                        if fl.startswith(REPO + "/") and not fl.endswith(_HELPERS)), None)
            if own:
                callers[f"{layer} ← `{own[0]}` ({_short(own[1])})"] += n
    return total, busy, layers, selfs, callers


def report(raw: Path, top: int) -> str:
    """The Markdown for ``raw`` and its ``.json`` sidecar. Every-thread
    profile: shares of the busy samples, scaled to the CPU per operation.
    GIL profile: shares of the whole CPU, the kernel's (system time from
    /proc) on a row of its own and the user time split by the samples."""
    meta = json.loads(raw.with_suffix(".json").read_text())
    user, system = meta["user_s"], meta["system_s"]
    cpu = user + system
    ops, unit, gil = meta["ops"], meta["unit"], meta.get("gil", False)
    per_op = cpu / ops
    #: what one busy sample stands for, as a fraction of the CPU
    weight = (user / cpu) if gil else 1.0
    total, busy, layers, selfs, callers = analyse(raw)
    units = unit[:-1] + "ies" if unit.endswith("y") else unit if unit == "MiB" else unit + "s"

    def us(x: float) -> str:
        return f"{x:,.1f}" if per_op < 100e-6 else f"{x:,.0f}"

    def row(name: str, n: int) -> str:
        share = n / busy * weight
        return f"| {name} | {share:.1%} | {us(share * per_op * 1e6)} |"

    policy = "".join(f", {k} = {v}" for k, v in meta.get("policy", {}).items())
    policy += "".join(f", after {k}" for k in meta.get("before", []))
    lines = [f"### {meta['protocol']} {meta['title']}: {meta['runs']} runs, {ops:,} {units}{policy}", "",
             f"- gateway CPU {cpu:.2f} s (user {user:.2f}, system {system:.2f}: {system / cpu:.0%} kernel), "
             f"{per_op * 1e6:,.0f} µs per {unit}; wall {meta['wall_s']:.1f} s",
             (f"- py-spy {meta['rate']} Hz, the thread holding the GIL: {busy:,} samples; they split the user "
              f"time, the kernel's is the process's system time" if gil else
              f"- py-spy {meta['rate']} Hz, every thread: {total:,} samples, {busy:,} busy (the rest blocked "
              f"in a wait; a thread in a system call counts, waiting on the disk or preempted too)"), "",
             f"| layer | share of CPU | µs per {unit} |", "| --- | --- | --- |"]
    if gil:
        lines.append(f"| kernel (system calls of every layer: files, sockets) | {system / cpu:.1%} | "
                     f"{us(system / ops * 1e6)} |")
    lines += [row(layer, n) for layer, n in layers.most_common()]
    lines += ["", f"Top {top} functions by self time (innermost frame):", "",
              f"| function | share of CPU | µs per {unit} |", "| --- | --- | --- |"]
    lines += [row(func, n) for func, n in selfs.most_common(top)]
    lines += ["", "Libraries by the innermost gateway function that called them:", "",
              f"| library ← gateway function | share of CPU | µs per {unit} |", "| --- | --- | --- |"]
    lines += [row(key, n) for key, n in callers.most_common(top)]
    return "\n".join(lines) + "\n"


def table(raws: list[Path]) -> str:
    """One Markdown table of several GIL profiles: a column per profile, a
    row per layer (the kernel's first, then by the largest share in any
    column), each cell "share (µs per operation)"."""
    cols, cells = [], {}
    kernel = "kernel (system time: files, sockets)"
    for raw in raws:
        meta = json.loads(raw.with_suffix(".json").read_text())
        if not meta.get("gil"):
            raise SystemExit(f"{raw}: not a --gil profile")
        user, system, ops = meta["user_s"], meta["system_s"], meta["ops"]
        cpu = user + system
        per_op = cpu / ops * 1e6
        _, busy, layers, _, _ = analyse(raw)
        fmt = (lambda x: f"{x:,.1f}") if per_op < 100 else (lambda x: f"{x:,.0f}")
        col = len(cols)
        cols.append(f"{meta['protocol']} {meta['workload']} ({fmt(per_op)} µs/{meta['unit']}, {busy:,} samples)")
        shares = {kernel: system / cpu, **{layer: n / busy * user / cpu for layer, n in layers.items()}}
        for layer, share in shares.items():
            cells.setdefault(layer, {})[col] = (share, f"{share:.1%} ({fmt(share * per_op)})")
    order = sorted(cells, key=lambda k: (k != kernel, -max(s for s, _ in cells[k].values())))
    lines = ["| layer | " + " | ".join(cols) + " |", "| --- |" + " --- |" * len(cols)]
    for layer in order:
        lines.append(f"| {layer} | " + " | ".join(cells[layer].get(i, (0, "–"))[1] for i in range(len(cols))) + " |")
    return "\n".join(lines) + "\n"


def record(args: argparse.Namespace) -> Path:
    """Run the workload under py-spy; returns the raw file (beside it, its .json)."""
    workload = next(w for w in WORKLOADS if w.key == args.workload)
    sizes = SIZES[args.sizes]
    if args.big or "big" not in args.workload:
        sizes = dataclasses.replace(sizes, big=args.big or (4 << 20))
    tmp = Path(tempfile.mkdtemp(prefix="gateway-profile-"))
    (tmp / "logs").mkdir()
    out = args.out or Path(tempfile.mkdtemp(prefix="gateway-profile-out-"))
    out.mkdir(parents=True, exist_ok=True)
    spy_bin = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    raw = out / (f"{args.protocol}-{args.workload}{'-gil' if args.gil else ''}"
                 f"{'-nosums' if args.no_upload_checksums else ''}{''.join('-after-' + k for k in args.before)}.raw")
    procs = Procs(tmp / "logs")
    ctx = Context(tmp, procs, {args.protocol}, args.budget_ms, None, "")
    if args.no_upload_checksums:
        ctx.gateway_policy["upload_checksums"] = []
    try:
        for name in ("client_key", "host_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / name)], check=True)
            setattr(ctx, name, tmp / name)
        ep = next(e for e in start_gateway(ctx) if e.protocol == args.protocol)
        if ep.note:
            raise SystemExit(f"gateway not available: {ep.note}")
        pid = ep.server.pid
        fx = Fixtures(tmp / "fixtures", sizes)
        for i, key in enumerate(args.before, start=100):
            before = next(w for w in WORKLOADS if w.key == key)
            r = run_once(before, Run(ep, fx, ctx.client_key, i, 900))
            if "done_s" not in r:
                raise SystemExit(f"--before {key} failed: {r}")
        warm = run_once(workload, Run(ep, fx, ctx.client_key, 0, 900))
        if "done_s" not in warm:
            raise SystemExit(f"warm-up run failed: {warm}")
        if args.strace:
            # Every thread's system calls, counted (strace slows the gateway: its CPU is not the point here).
            argv = ["strace", "-f", "-c", "-o", str(raw.with_suffix(".strace")), "-p", str(pid)]
        else:
            argv = ["nice", "-n", str(args.nice), spy_bin, "record", "--pid", str(pid), "--rate", str(args.rate),
                    "--format", "raw", "--nonblocking", "--full-filenames", "--output", str(raw),
                    *(["--gil"] if args.gil else ["--idle"])]
        with open(out / "py-spy.log", "wb") as log:
            spy = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        time.sleep(1.0)  # py-spy attaches
        u0, s0 = _cpu_ticks(pid)
        ops, wall = 0, 0.0
        for i in range(1, args.repeat + 1):
            r = run_once(workload, Run(ep, fx, ctx.client_key, i, 900))
            if "done_s" not in r:
                raise SystemExit(f"run {i} failed: {r}")
            ops += r["ops"]
            wall += r["done_s"]
        u1, s1 = _cpu_ticks(pid)
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
    finally:
        procs.stop_all()
        subprocess.run(["rm", "-rf", str(tmp)])
    if args.strace:
        text = raw.with_suffix(".strace").read_text()
        print(f"system calls of the gateway over {ops:,} {workload.unit}s (per {workload.unit}: calls / ops):\n")
        for line in text.splitlines():
            f = line.split()
            if len(f) >= 5 and f[3].isdigit():
                print(f"{line}    {int(f[3]) / ops:8.2f} per {workload.unit}")
            elif f and f[0] != "------" and "calls" not in line:
                print(line)
        raise SystemExit(0)
    if not raw.exists():
        raise SystemExit("py-spy wrote nothing: " + (out / "py-spy.log").read_text(errors="replace")[-500:])
    raw.with_suffix(".json").write_text(json.dumps({
        "protocol": args.protocol, "workload": args.workload, "title": workload.title.format(**sizes.words()),
        "unit": workload.unit, "runs": args.repeat, "gil": args.gil, "policy": ctx.gateway_policy,
        "before": args.before, "ops": ops, "wall_s": wall, "rate": args.rate,
        "user_s": (u1 - u0) / _TICK, "system_s": (s1 - s0) / _TICK}, indent=1) + "\n")
    return raw


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/bench/profile.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", choices=["ftp", "sftp", "webdav"])
    p.add_argument("--workload", choices=[w.key for w in WORKLOADS if not w.remote])
    p.add_argument("--repeat", type=int, default=3, help="profiled runs (after one warm-up run)")
    p.add_argument("--rate", type=int, default=50,
                   help="py-spy samples per second (it walks every thread: 50 is what it keeps up with here)")
    p.add_argument("--sizes", default="full", choices=sorted(SIZES))
    p.add_argument("--big", type=int, help="bytes of the big file (default: the size set's for *_big, else 4 MiB)")
    p.add_argument("--budget-ms", type=int, default=100, help="the gateway's policy.sync_budget_ms")
    p.add_argument("--top", type=int, default=15, help="functions to list by self time")
    p.add_argument("--nice", type=int, default=-10, help="py-spy's niceness: on a loaded machine it falls behind (default -10, needs root)")
    p.add_argument("--out", type=Path, help="keep the raw py-spy file here (default: a new temporary folder)")
    p.add_argument("--gil", action="store_true",
                   help="sample only the thread holding the GIL: Python's own time, without the kernel's and "
                        "without C code that releases the GIL (a cipher, SQLite's engine)")
    p.add_argument("--no-upload-checksums", action="store_true",
                   help="run the gateway with [policy] upload_checksums = [] (default: its default, SHA1 and MD5)")
    p.add_argument("--before", action="append", default=[], metavar="WORKLOAD",
                   help="run this workload first, unprofiled (e.g. upload_small: the file id table then has rows, "
                        "as in the full run, where deletes update it)")
    p.add_argument("--strace", action="store_true",
                   help="count the gateway's system calls per operation with strace -c -f instead of profiling")
    p.add_argument("--analyse", type=Path, metavar="RAW", help="run nothing: report an earlier raw file")
    p.add_argument("--table", type=Path, nargs="+", metavar="RAW",
                   help="run nothing: one table of the layers of several earlier --gil raw files")
    args = p.parse_args(argv)
    if args.table:
        print(table(args.table))
        return 0
    if args.analyse:
        raw = args.analyse
    else:
        if not (args.protocol and args.workload):
            p.error("--protocol and --workload are required (or --analyse RAW)")
        install_signal_handlers()
        raw = record(args)
    print(report(raw, args.top))
    print(f"raw profile: {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
