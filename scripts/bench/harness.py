"""``scripts/bench/run``: the gateway against peer servers, side by side.

    scripts/bench/run [--quick | --smoke] [--only ftp,sftp,webdav,s3] [--json out.json]
                      [--repeat N] [--budget-ms MS] [--keep] [--no-install]

Installs what the selected protocols need (apt-get, PyPI), starts every
server on 127.0.0.1 high ports with its own temporary config, runs each
workload ``--repeat`` times per server (round-robin, each round starting one
server later), prints a Markdown table on stdout and writes the JSON of every
run. Everything started is stopped on
exit, Ctrl-C or SIGTERM. Exit code: 0 when every run worked or was not
supported, 1 when a run failed, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from install import ensure_tools, rclone_binary
from peers import REPO, Context, start_all
from procs import Procs, install_signal_handlers, tree_rss
from report import Cell, markdown, misses, summarise
from workloads import SIZES, WORKLOADS, Fixtures, Run, run_once

PROTOCOLS = ("ftp", "sftp", "webdav", "s3")


def _log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/bench/run", description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes; finishes in under 3 minutes")
    mode.add_argument("--smoke", action="store_true", help="tiny sizes, one run each (CI keeps the harness working)")
    p.add_argument("--only", default=",".join(PROTOCOLS),
                   help="comma-separated protocols: ftp, sftp, webdav, s3 (the remote-mount rename) (default: all)")
    p.add_argument("--workloads", default="", help="comma-separated workload keys (default: all)")
    p.add_argument("--json", type=Path, help="write every run here as JSON")
    p.add_argument("--markdown", type=Path, help="write a results document (machine, versions, table) here")
    p.add_argument("--repeat", type=int, help="runs per workload and server (default 3; --quick 2; --smoke 1)")
    p.add_argument("--budget-ms", type=int, default=100,
                   help="the gateway's policy.sync_budget_ms (default 100: long operations reply at once)")
    p.add_argument("--timeout", type=float, help="seconds one client action may take (default 900; --smoke 60)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (configs, logs)")
    p.add_argument("--no-install", action="store_true", help="never run apt-get or pip")
    p.add_argument("--render", type=Path, metavar="JSON",
                   help="run nothing: print (and --markdown) the results of an earlier --json file")
    args = p.parse_args(argv)
    args.protocols = {x.strip() for x in args.only.split(",") if x.strip()}
    bad = args.protocols - set(PROTOCOLS)
    if bad or not args.protocols:
        p.error(f"--only: expected some of {', '.join(PROTOCOLS)}, got {args.only!r}")
    args.mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    args.repeat = args.repeat or {"full": 3, "quick": 2, "smoke": 1}[args.mode]
    args.timeout = args.timeout or (60 if args.smoke else 900)
    return args


def _out(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        return (r.stdout or r.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine() -> dict:
    mem = next((line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal:")), "0")
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    return {"nproc": os.cpu_count(), "ram_gib": round(int(mem) / 2**20, 1), "cpu": cpu,
            "kernel": platform.release(), "os": _out(["sh", "-c", ". /etc/os-release; echo $PRETTY_NAME"])}


def _first(pattern: str, text: str) -> str:
    m = re.search(pattern, text)
    return (m.group(1) if m.groups() else m.group(0)) if m else ""


def versions(endpoints) -> dict:
    v = {"python": platform.python_version(),
         "gateway_commit": _out(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
         "lftp": _first(r"Version ([\d.]+)", _out(["lftp", "--version"])),
         "curl": _first(r"curl ([\d.]+)", _out(["curl", "--version"])),
         "openssh_client": _first(r"OpenSSH_\S+", _out(["ssh", "-V"]))}
    for ep in endpoints:
        if ep.server.version:
            v[ep.server.name] = ep.server.version
    try:
        import moto
        v["moto"] = moto.__version__
    except ImportError:
        pass
    return v


def _idle_rss(endpoints) -> dict[str, int]:
    """Resident memory of each server (process tree) before any workload."""
    return {ep.server.label: tree_rss(ep.server.pid) for ep in endpoints if ep.server.pid}


def document(doc: dict, cells: list[Cell]) -> str:
    """The Markdown results document: when, where, with what, and the table."""
    m, v = doc["machine"], doc["versions"]
    lines = [f"# Benchmark results ({doc['mode']} run)", "",
             f"- date: {doc['date']}, {doc['elapsed_s']:.0f} s; `scripts/bench/run {' '.join(doc['argv'])}`",
             f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']} GiB RAM, {m['os']}, Linux {m['kernel']}",
             "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
             f"- sizes: {doc['sizes']}; {doc['repeat']} runs per workload and server, round-robin (each round "
             f"starts one server later); the gateway "
             f"runs its default config with `policy.sync_budget_ms = {doc['budget_ms']}`",
             "- idle RSS before the first workload: " + ", ".join(
                 f"{k} {b / 2**20:.0f} MiB" for k, b in doc["idle_rss_bytes"].items()),
             "", markdown(cells), ""]
    if doc["misses"]:
        lines += ["Gateway rows that miss a target or could not run:", ""] + [f"- {g}" for g in doc["misses"]]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    sizes = SIZES[args.mode]
    selected = [w for w in WORKLOADS if not args.workloads or w.key in args.workloads.split(",")]
    if not args.no_install:
        ensure_tools(args.protocols)
    rclone, rclone_note = rclone_binary(install=not args.no_install)
    tmp = Path(tempfile.mkdtemp(prefix="gateway-bench-", dir=os.environ.get("BENCH_TMP")))
    (tmp / "logs").mkdir()
    procs = Procs(tmp / "logs")
    ctx = Context(tmp, procs, args.protocols, args.budget_ms, rclone, rclone_note)
    cells: list[Cell] = []
    endpoints: list = []
    idle: dict[str, int] = {}
    interrupted = False
    started = time.monotonic()
    try:
        _log(f"{args.mode} run in {tmp}; starting servers")
        endpoints = start_all(ctx)
        for ep in endpoints:
            _log(f"  {ep.name:8s} {ep.protocol:6s} {'s3' if ep.remote else 'local':5s} "
                 f"{'port ' + str(ep.port) if ep.available else 'n/a: ' + ep.note}")
        idle = _idle_rss(endpoints)
        fx = Fixtures(tmp / "fixtures", sizes)
        for w in selected:
            eps = [ep for ep in endpoints if ep.remote == w.remote]
            if w.remote and "s3" not in args.protocols:
                continue
            title = w.title.format(**sizes.words())
            row = {id(ep): Cell(w.key, title, ep.protocol, ep.name, w.target, w.kind, ep.note, unit=w.unit)
                   for ep in eps}
            cells += row.values()
            for i in range(args.repeat):
                # Each round starts one server later: the first run after the fixtures were written (or
                # after the previous workload) is no longer always the gateway's.
                k = i % len(eps) if eps else 0
                for ep in eps[k:] + eps[:k]:
                    cell = row[id(ep)]
                    if cell.note or any("unsupported" in r for r in cell.runs):
                        continue
                    result = run_once(w, Run(ep, fx, ctx.client_key, i, args.timeout))
                    cell.runs.append(result)
                    _log(f"{w.key} {ep.protocol} {ep.name}#{i}: " +
                         (f"{result['done_s']:.3f} s, CPU {result['cpu_s']:.2f} s" if "done_s" in result
                          else str(result)[:300]))
    except KeyboardInterrupt:
        interrupted = True
        _log("interrupted; stopping every server")
    finally:
        procs.stop_all()
    gaps = misses(cells)
    doc = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "mode": args.mode, "repeat": args.repeat, "sizes": sizes.__dict__, "budget_ms": args.budget_ms,
           "argv": sys.argv[1:], "machine": machine(), "versions": versions(endpoints),
           "idle_rss_bytes": idle, "elapsed_s": round(time.monotonic() - started, 1),
           "interrupted": interrupted, "results": summarise(cells), "misses": gaps}
    print(markdown(cells))
    if gaps:
        print("\nGateway rows that miss a target or could not run:\n" + "\n".join(f"- {g}" for g in gaps))
    if args.markdown:
        args.markdown.write_text(document(doc, cells))
        _log(f"wrote {args.markdown}")
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
        _log(f"wrote {args.json}")
    if args.keep:
        _log(f"kept {tmp}")
    else:
        subprocess.run(["rm", "-rf", str(tmp)])
    if interrupted:
        return 130
    return 1 if any("error" in r for c in cells for r in c.runs) else 0


def render(args: argparse.Namespace) -> int:
    doc = json.loads(args.render.read_text())
    workloads = {w.key: w for w in WORKLOADS}
    cells = []
    for d in doc["results"]:
        w = workloads[d["workload"]]
        note = "" if d["runs"] else d["status"]
        cells.append(Cell(d["workload"], d["title"], d["protocol"], d["server"], w.target, w.kind, note, d["runs"],
                          w.unit))
    doc["misses"] = misses(cells)  # judged by today's targets
    print(markdown(cells))
    if args.markdown:
        args.markdown.write_text(document(doc, cells))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        return render(args)
    install_signal_handlers()
    return run(args)
