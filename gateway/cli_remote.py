"""CLI commands on the SDK against a running gateway (cp, mv, rm, jobs) and
local API-token management (token).

The SDK (gateway.client, hence httpx) is imported only when one of these
commands runs: ``gateway serve`` registers them too, and must not pay for
httpx (and the click/rich/pygments its CLI pulls in) in its resident memory."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from gateway.cli_common import EXIT_CONFIG, add_config_option, load_config_for

if TYPE_CHECKING:
    from gateway.client import Client

__all__ = ["register"]


def _connection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get("GATEWAY_URL", "http://127.0.0.1:8080"))
    p.add_argument("--user", default=os.environ.get("GATEWAY_USER"))
    p.add_argument("--password", default=os.environ.get("GATEWAY_PASSWORD"))
    p.add_argument("--token", default=os.environ.get("GATEWAY_TOKEN"))


def _client(args: argparse.Namespace) -> "Client":
    from gateway.client import Client

    return Client(args.url, user=args.user, password=args.password, token=args.token)


def _bar(status: dict) -> None:
    pct = status.get("percentageComplete") or 0.0
    filled = int(pct / 5)
    print(f"\r[{'#' * filled}{'.' * (20 - filled)}] {pct:5.1f}%", end="", file=sys.stderr, flush=True)


def _run_op(args: argparse.Namespace) -> int:
    from gateway.client import GatewayClientError

    with _client(args) as c:
        try:
            if args.op == "rm":
                out = c.delete(args.src, wait=not args.no_wait, progress=None if args.no_wait else _bar)
            else:
                call = c.copy if args.op == "cp" else c.move
                out = call(args.src, args.dst, overwrite=args.overwrite, wait=not args.no_wait,
                           progress=None if args.no_wait else _bar)
        except GatewayClientError as exc:
            print(f"\ngateway {args.op}: {exc.message} ({exc.status})", file=sys.stderr)
            return 1
    if args.no_wait:
        print(f"job {out.id} running; monitor {out.monitor}" if out.id else "done")
    else:
        print("\ndone", file=sys.stderr)
    return 0


def _line(j: dict) -> str:
    to = f" -> {j['to']}" if j.get("to") else ""
    state = j["state"] + (",stalled" if j.get("stalled") else "")
    left = f"  (left: {j['leftovers']})" if j.get("leftovers") else ""
    return f"{j['id']}  {j['operation']:10} {state:9} {j['percentageComplete']:5.1f}%  {j['from']}{to}{left}"


def _jobs(args: argparse.Namespace) -> int:
    from gateway.client import GatewayClientError

    with _client(args) as c:
        try:
            if args.action == "list":
                for j in c.jobs(queue=args.queue, state=args.state):
                    print(_line(j))
            elif args.action == "show":
                for k, v in c.job(args.id).items():
                    print(f"{k}: {v}")
            else:
                print(_line(getattr(c, args.action)(args.id)))
        except GatewayClientError as exc:
            print(f"gateway jobs {args.action}: {exc.message} ({exc.status})", file=sys.stderr)
            return 1
    return 0


def _token(args: argparse.Namespace) -> int:
    from gateway.errors import NotFound
    from gateway.jobs.store import JobStore
    from gateway.tokens import TokenStore

    cfg = load_config_for(args)
    if cfg is None:
        return EXIT_CONFIG
    store = JobStore(cfg.jobs.url(cfg.server.state_dir))
    try:
        tokens = TokenStore(store)
        if args.action == "create":
            token_id, token = tokens.create(args.user, args.name or "")
            print(f"token {token_id} for {args.user} (shown once):\n{token}")
        elif args.action == "list":
            for t in tokens.list(args.user):
                print(f"{t.id}  {t.user}  {t.name or '-'}  {'revoked' if t.revoked else 'active'}")
        else:
            try:
                tokens.revoke(args.user)
            except NotFound as exc:
                print(f"gateway token revoke: {exc}", file=sys.stderr)
                return 1
            print(f"revoked {args.user}")
    finally:
        store.close()
    return 0


def register(sub: Any) -> None:
    for op, help_ in (("cp", "copy on a running gateway"), ("mv", "move/rename on a running gateway"),
                      ("rm", "delete on a running gateway")):
        p = sub.add_parser(op, help=f"{help_} (waits for background jobs unless --no-wait)")
        p.add_argument("src")
        if op != "rm":
            p.add_argument("dst")
            p.add_argument("--overwrite", action="store_true")
        p.add_argument("--no-wait", action="store_true", help="return at once with the job id")
        _connection(p)
        p.set_defaults(func=_run_op, op=op)
    p = sub.add_parser("jobs", help="list, show, cancel, stop, retry or abandon (admins) jobs on a running gateway")
    p.add_argument("action", choices=["list", "show", "cancel", "stop", "retry", "abandon"])
    p.add_argument("id", nargs="?")
    p.add_argument("--queue")
    p.add_argument("--state")
    _connection(p)
    p.set_defaults(func=_jobs)
    p = sub.add_parser("token", help="create, list or revoke REST API tokens (local, on the config's store)")
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("user", nargs="?", help="user name (create, list) or token id (revoke)")
    p.add_argument("--name", help="a label for the token")
    add_config_option(p)
    p.set_defaults(func=_token)
