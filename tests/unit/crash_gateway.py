"""A gateway process for the crash test: mounts two slow:: local folders,
optionally submits a move of /a/tree to /b/tree, and runs until no job is
left. The test SIGKILLs it at random points and starts it again.
``CRASH_MOUNTS`` (JSON {path: [url, options]}), ``CRASH_MOVE`` ("from
to") and ``CRASH_OP`` (move, copy, or delete of "from") in the environment
replace the mounts and the move (the S3 tests)."""

import json
import os
import sys
import time

from gateway.app import Gateway
from gateway.types import Session
from gateway.users import User


def main(state: str, a: str, b: str, submit: bool) -> int:
    opts = {"slow": {"latency_ms": 2}}
    mounts = {"/a": (f"slow::file://{a}", opts), "/b": (f"slow::file://{b}", opts)}
    if os.environ.get("CRASH_MOUNTS"):
        mounts = {k: tuple(v) for k, v in json.loads(os.environ["CRASH_MOUNTS"]).items()}
    src, dst = os.environ.get("CRASH_MOVE", "/a/tree /b/tree").split()
    gw = Gateway.build(mounts, state, node="crash-node", heartbeat_s=0.05).start()
    if submit:
        session, op = Session(User("alice"), "ftp"), os.environ.get("CRASH_OP", "move")
        if op == "delete":
            out = gw.ops.delete(session, src, recursive=True, budget_s=0)
        else:
            out = getattr(gw.ops, op)(session, src, dst, budget_s=0)
        print("SUBMITTED", out.job_id, flush=True)
    while gw.store.list(state="queued") or gw.store.list(state="running"):
        time.sleep(0.05)
    print("DONE", flush=True)
    gw.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], "--submit" in sys.argv))
