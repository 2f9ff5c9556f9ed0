"""``gateway nodes`` and ``gateway drain``: the nodes sharing the config's
job store, read and flagged there directly (gateway.nodes), so they work
from any machine that reaches the store, whichever node runs."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from gateway.cli_common import EXIT_CONFIG, add_config_option, load_config_for

__all__ = ["register"]


def _open_store(args: argparse.Namespace) -> tuple[Any, Any] | None:
    """(config, job store) of ``args.config``, or None after printing why not."""
    from gateway.jobs.store import JobStore

    cfg = load_config_for(args)
    if cfg is None:
        return None
    try:
        return cfg, JobStore(cfg.jobs.url(cfg.server.state_dir))
    except Exception as e:  # noqa: BLE001 - the driver's own error, as one line
        cause = str(getattr(e, "orig", None) or e).strip().splitlines()
        print(f"gateway {args.command}: cannot open the job store: {cause[0] if cause else type(e).__name__}",
              file=sys.stderr)
        return None


def _ago(now: float, then: float) -> str:
    return "never" if not then else f"{max(0.0, now - then):.1f}s ago"


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else "-"


def _nodes(args: argparse.Namespace) -> int:
    from gateway.nodes import list_nodes

    opened = _open_store(args)
    if opened is None:
        return EXIT_CONFIG
    cfg, store = opened
    try:
        found = list_nodes(store.engine)
    finally:
        store.close()
    now = time.time()
    gone_after = cfg.jobs.stall_after_s
    if args.json:
        print(json.dumps([{"node": n.node, "state": n.state(now, gone_after), "host": n.host, "pid": n.pid,
                           "version": n.version, "startedAt": n.started_at, "heartbeatAt": n.heartbeat_at,
                           "heartbeatAgeSeconds": round(now - n.heartbeat_at, 3) if n.heartbeat_at else None,
                           "draining": n.draining, "jobs": n.jobs} for n in found], indent=2))
        return 0
    print(f"{'NODE':16} {'STATE':9} {'HEARTBEAT':11} {'STARTED':21} {'HOST/PID':24} JOBS")
    for n in found:
        jobs = f"{len(n.jobs)}" + (f": {' '.join(n.jobs)}" if n.jobs else "")
        print(f"{n.node:16} {n.state(now, gone_after):9} {_ago(now, n.heartbeat_at):11} {_iso(n.started_at):21} "
              f"{(n.host + '/' + str(n.pid)):24} {jobs}")
    return 0


def _drain(args: argparse.Namespace) -> int:
    from gateway.errors import NotFound
    from gateway.nodes import running_jobs, set_draining

    opened = _open_store(args)
    if opened is None:
        return EXIT_CONFIG
    _, store = opened
    try:
        try:
            set_draining(store.engine, args.node, not args.undo)
        except NotFound as e:
            print(f"gateway drain: {e}", file=sys.stderr)
            return 1
        if args.undo:
            print(f"node {args.node} claims jobs again")
            return 0
        deadline = time.monotonic() + args.wait
        left = running_jobs(store.engine).get(args.node, [])
        if left and args.wait > 0:
            print(f"node {args.node} draining: waiting for {len(left)} running job(s) to be handed over",
                  file=sys.stderr)
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = running_jobs(store.engine).get(args.node, [])
    finally:
        store.close()
    if left:
        print(f"node {args.node} draining; still running: {' '.join(left)}"
              + (" (not waited for)" if args.wait <= 0 else f" after {args.wait:g} s"))
        return 0 if args.wait <= 0 else 1
    print(f"node {args.node} drained: it claims no jobs and runs none; it may be stopped now")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("nodes", help="list the nodes sharing the job store, their state, heartbeat and running jobs")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    add_config_option(p)
    p.set_defaults(func=_nodes)
    p = sub.add_parser("drain", help="make NODE claim no new jobs and hand its running jobs to the other nodes")
    p.add_argument("node", metavar="NODE", help="the node id ([server] node_id), as `gateway nodes` lists it")
    p.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                   help="wait this long for its running jobs to be handed over (default 60; 0: do not wait)")
    p.add_argument("--undo", action="store_true", help="let NODE claim jobs again")
    add_config_option(p)
    p.set_defaults(func=_drain)
