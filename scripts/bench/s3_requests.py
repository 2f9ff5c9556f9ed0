"""The 2,000-object folder rename on an S3 mount (moto): requests sent to
the storage, by API operation, and the time until the move is done, for
gateway code trees (e.g. main and a branch) side by side with ``rclone
moveto`` on the same moto server. Also counts the keys left in the bucket
(folder markers a rename should not add).

    python scripts/bench/s3_requests.py [--objects 2000] [--latency-ms 0] [--tree label=PATH ...]

Each tree runs in its own process (``PYTHONPATH=PATH``), building the
gateway from that tree with one S3 mount and moving ``/m/src`` to
``/m/dst`` through the core (the same job an FTP RNTO or SFTP rename
starts). moto runs in its own process behind a counter of requests;
``--latency-ms`` delays each request as a distant region would (a local
moto on a busy machine is bound by its own CPU, not by how many requests
are in flight). One run each: a benchmark, not a test (see RESULTS.md)."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

BUCKET = "bench"
KEY, SECRET = "AKIDBENCH", "bench-secret"
ROOT = Path(__file__).resolve().parents[2]


# -- the moto process ---------------------------------------------------------------

def _operation(environ: dict) -> str:
    method, query = environ["REQUEST_METHOD"], environ.get("QUERY_STRING", "")
    if method == "POST" and query.startswith("delete"):
        return "DeleteObjects"
    if method == "PUT" and environ.get("HTTP_X_AMZ_COPY_SOURCE"):
        return "UploadPartCopy" if "partNumber" in query else "CopyObject"
    if method == "GET" and "list-type=2" in query:
        return "ListObjectsV2"
    if method == "GET" and environ.get("PATH_INFO", "/").count("/") <= 1 and "prefix" in query:
        return "ListObjects"
    return {"HEAD": "HeadObject", "DELETE": "DeleteObject", "PUT": "PutObject", "GET": "GetObject",
            "POST": "Multipart"}.get(method, method)


def serve_moto(port: int, latency_s: float = 0.0) -> None:
    """moto's S3 with ``GET /__counts`` ({operation: n}) and ``POST /__reset``;
    each S3 request waits ``latency_s`` first."""
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import WSGIRequestHandler, make_server

    counts: Counter = Counter()
    moto_app = DomainDispatcherApplication(create_backend_app)

    def app(environ, start_response):
        if environ.get("PATH_INFO") == "/__counts":
            body = json.dumps(counts).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        if environ.get("PATH_INFO") == "/__reset":
            counts.clear()
            start_response("204 No Content", [])
            return [b""]
        counts[_operation(environ)] += 1
        if latency_s:
            time.sleep(latency_s)
        return moto_app(environ, start_response)

    class Quiet(WSGIRequestHandler):
        def log_request(self, *args, **kwargs):
            pass

    make_server("127.0.0.1", port, app, threaded=True, request_handler=Quiet).serve_forever()


# -- one gateway tree ---------------------------------------------------------------------

def run_gateway(endpoint: str, prefix: str, state: str) -> None:
    """Build the gateway of the tree on PYTHONPATH over s3://bench/<prefix>,
    move /m/src to /m/dst and print {"seconds": ...}."""
    from gateway.app import Gateway
    from gateway.types import Session
    from gateway.users import User

    opts = {"endpoint_url": endpoint, "key": KEY, "secret": SECRET}
    gw = Gateway.build({"/m": (f"s3://{BUCKET}/{prefix}", opts)}, state, budget_s=0.1).start()
    try:
        s = Session(User("alice"), "ftp")
        started = time.monotonic()
        out = gw.ops.move(s, "/m/src", "/m/dst", budget_s=0.1)
        if out.job is not None:
            job = gw.dispatcher.wait(out.job_id, 600)
            assert job.state == "completed", (job.state, job.error)
        print(json.dumps({"seconds": time.monotonic() - started}), flush=True)
    finally:
        gw.close()


# -- the driver ---------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _counts(endpoint: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{endpoint}/__counts") as r:
        return json.loads(r.read())


def _reset(endpoint: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/__reset", method="POST")).read()


def _keys(client, prefix: str) -> list[str]:
    out = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
        out += [o["Key"][len(prefix) + 1:] for o in page.get("Contents", [])]
    return out


def _populate(client, prefix: str, n: int) -> None:
    for i in range(n):
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/src/d{i % 5}/f{i:05}", Body=b"x" * 4096)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", type=int, default=2000)
    ap.add_argument("--latency-ms", type=float, default=0.0, help="delay of each S3 request")
    ap.add_argument("--tree", action="append", default=[], help="label=PATH of a gateway checkout")
    args = ap.parse_args()
    trees = [t.split("=", 1) for t in args.tree] or [["this", str(ROOT)]]

    import boto3

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto = subprocess.Popen([sys.executable, __file__, "--serve-moto", str(port), str(args.latency_ms / 1000)])
    rows = []
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                              region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        for label, path in trees:
            prefix = f"gw-{label}"
            _populate(client, prefix, args.objects)
            _reset(endpoint)
            with tempfile.TemporaryDirectory() as state:
                env = {**os.environ, "PYTHONPATH": path}
                p = subprocess.run([sys.executable, __file__, "--run-gateway", endpoint, prefix, state],
                                   capture_output=True, text=True, env=env, timeout=900)
            if p.returncode != 0:
                raise SystemExit(f"gateway tree {label} failed:\n{p.stderr[-3000:]}")
            seconds = json.loads(p.stdout.strip().splitlines()[-1])["seconds"]
            rows.append((f"gateway ({label})", seconds, _counts(endpoint), _keys(client, prefix)))

        prefix = "rc"
        _populate(client, prefix, args.objects)
        _reset(endpoint)
        env = {**os.environ, "RCLONE_CONFIG_MOTO_TYPE": "s3", "RCLONE_CONFIG_MOTO_PROVIDER": "Other",
               "RCLONE_CONFIG_MOTO_ENDPOINT": endpoint, "RCLONE_CONFIG_MOTO_ACCESS_KEY_ID": KEY,
               "RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY": SECRET, "RCLONE_CONFIG_MOTO_REGION": "us-east-1"}
        started = time.monotonic()
        subprocess.run(["rclone", "moveto", "--config", "/dev/null", f"moto:{BUCKET}/rc/src", f"moto:{BUCKET}/rc/dst"],
                       check=True, env=env, timeout=900)
        version = subprocess.run(["rclone", "version"], capture_output=True, text=True).stdout.split("\n")[0]
        rows.append((f"{version} moveto (defaults)", time.monotonic() - started, _counts(endpoint),
                     _keys(client, prefix)))
    finally:
        moto.terminate()
        moto.wait(10)

    n = args.objects
    where = f"moto, {args.latency_ms:g} ms a request" if args.latency_ms else "moto"
    print(f"| rename of {n:,} objects on S3 ({where}) | done s | requests | by operation | keys after | markers |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, seconds, counts, keys in rows:
        ops = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
        markers = sum(1 for k in keys if k.endswith("/"))
        moved = sum(1 for k in keys if k.startswith("dst/") and not k.endswith("/"))
        print(f"| {name} | {seconds:.1f} | {sum(counts.values()):,} | {ops} | {len(keys):,} ({moved:,} moved) "
              f"| {markers} |")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--serve-moto":
        serve_moto(int(sys.argv[2]), float(sys.argv[3]))
    elif len(sys.argv) > 4 and sys.argv[1] == "--run-gateway":
        run_gateway(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(main())
