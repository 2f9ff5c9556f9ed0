"""CPU per small WebDAV request of two (or more) gateway trees, side by side.

    python scripts/bench/side_by_side.py --tree base=/tmp/base --tree new=. \
        [--op put|get|head|propfind0|propfind1|list|mkcol|delete|move|copy] [--n 1000] [--rounds 3] [--floor]
        [--entries 20000]

Each tree runs as its own gateway process (its own temporary config, state
dir and local mount) at the same time; the rounds are interleaved (round r:
tree 1, tree 2, ..., then round r+1) so machine load hits them alike. One
client (Python http.client, one kept-alive connection, Basic auth) sends
``--n`` requests per round on files of 4 KiB (PUTs replace 200 files over and
over, or with ``--fresh`` each make a new file; PROPFIND Depth 0 of one such
file or Depth 1 of a folder of ten; DELETE and MOVE of files PUT before the
round, untimed; COPY to a new name); ``--op list`` instead sends ``--n``
PROPFINDs (Depth 1, empty body: allprop, as the benchmark's curl sends
them) of a folder of ``--entries`` empty files made in each mount's folder
before the first round, and reports µs per entry. The CPU is the gateway
process's utime+stime from /proc/PID/stat before and after the round; the
wall time per request is the client's, its reading of the reply included. ``--floor`` adds
an empty WSGI app on cheroot (reads the body, answers 201) as the floor.
A benchmark, not a test: it prints µs of CPU per request.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

USER, PASSWORD = "bench", "bench-password"
TICK = os.sysconf("SC_CLK_TCK")

FLOOR_APP = r'''
import sys
from cheroot import wsgi
def app(environ, start_response):
    n = int(environ.get("CONTENT_LENGTH") or 0)
    if n:
        environ["wsgi.input"].read(n)
    start_response("201 Created", [("Content-Length", "0")])
    return [b""]
s = wsgi.Server(("127.0.0.1", int(sys.argv[1])), app, numthreads=10)
s.start()
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu(pid: int) -> tuple[float, float]:
    """Seconds of user and of system CPU of process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def wait_port(port: int, proc: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server on {port} exited {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server on {port} did not start")


def start_gateway(tree: Path, tmp: Path, password_hash: str) -> tuple[subprocess.Popen, dict[str, int]]:
    """The gateway of ``tree`` serving ``tmp``/root on local disk to USER,
    with every front end listening: (process, ports by "http", "ftp", "sftp")."""
    root, state = tmp / "root", tmp / "var"
    root.mkdir(parents=True)
    ports = {name: free_port() for name in ("http", "ftp", "sftp")}
    config = tmp / "gateway.toml"
    config.write_text(
        "[server]\nhost = \"127.0.0.1\"\n"
        f"state_dir = \"{state}\"\n"
        + "".join(f"[{name}]\nport = {port}\n" for name, port in ports.items())
        + f"[[mounts]]\npath = \"/\"\nurl = \"file://{root}\"\n"
        f"[[users]]\nname = \"{USER}\"\npassword_hash = \"{password_hash}\"\n"
        "[logging]\nlevel = \"INFO\"\n")
    log = open(tmp / "gateway.log", "wb")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
                            cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT)
    for port in ports.values():
        wait_port(port, proc)
    return proc, ports


def stop(procs) -> None:
    """Terminate each server process, killing one that is not gone in 10 s."""
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


#: The requests ``--op`` can time (each of 4 KiB files or small folders).
OPS = ("put", "get", "head", "propfind0", "propfind1", "list", "mkcol", "delete", "move", "copy")


def _conn(port: int) -> tuple[http.client.HTTPConnection, dict]:
    auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return http.client.HTTPConnection("127.0.0.1", port, timeout=30), {"Authorization": auth}


def _send(conn: http.client.HTTPConnection, method: str, path: str, headers: dict, body: bytes | None = None
          ) -> None:
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    r.read()
    if r.status >= 300:
        raise SystemExit(f"{method} {path}: {r.status} {r.reason}")


def setup(port: int, op: str, n: int, prefix: str, body: bytes, tag: str, root: Path | None = None,
          entries: int = 0) -> None:
    """What round ``tag`` of ``op`` needs and does not time: the files a
    DELETE or MOVE takes away, the small folder a PROPFIND lists, the big
    folder a ``list`` lists (made in the mount's folder ``root``)."""
    if op == "list":
        if tag == "r0-" and root is not None:
            (root / "big").mkdir()
            for i in range(entries):
                (root / "big" / f"e{i:06d}").touch()
        return
    conn, headers = _conn(port)
    if op in ("delete", "move"):
        for i in range(n):
            _send(conn, "PUT", f"{prefix}/{tag}{op}{i}.bin", headers, body)
    elif op == "propfind1" and tag == "r0-":
        _send(conn, "MKCOL", f"{prefix}/small", headers)
        for i in range(10):
            _send(conn, "PUT", f"{prefix}/small/s{i}.bin", headers, body)
    conn.close()


def run(port: int, op: str, n: int, prefix: str, body: bytes, tag: str = "", fresh: bool = False) -> None:
    """``n`` requests of ``op``; ``fresh``: PUT new files named after
    ``tag`` (else the 200 files of the warm-up are replaced, over and over)."""
    conn, headers = _conn(port)
    for i in range(n):
        name = f"{prefix}/f{i % 200}.bin"
        if op == "put":
            _send(conn, "PUT", f"{prefix}/{tag}{i}.bin" if fresh else name, headers, body)
        elif op in ("get", "head"):
            _send(conn, op.upper(), name, headers)
        elif op == "propfind0":
            _send(conn, "PROPFIND", name, {**headers, "Depth": "0"})
        elif op == "propfind1":
            _send(conn, "PROPFIND", f"{prefix}/small/" if prefix else "/", {**headers, "Depth": "1"})
        elif op == "list":
            _send(conn, "PROPFIND", f"{prefix}/big/" if prefix else "/",
                  {**headers, "Depth": "1", "Content-Type": "application/xml"})
        elif op == "mkcol":
            _send(conn, "MKCOL", f"{prefix}/{tag}d{i}", headers)
        elif op == "delete":
            _send(conn, "DELETE", f"{prefix}/{tag}{op}{i}.bin", headers)
        elif op == "move":
            _send(conn, "MOVE", f"{prefix}/{tag}{op}{i}.bin",
                  {**headers, "Destination": f"http://127.0.0.1:{port}{prefix}/{tag}moved{i}.bin"})
        else:
            _send(conn, "COPY", name, {**headers, "Destination": f"http://127.0.0.1:{port}{prefix}/{tag}c{i}.bin"})
    conn.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tree", action="append", required=True, help="name=path of a gateway source tree")
    p.add_argument("--op", choices=OPS, default="put")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--floor", action="store_true", help="also an empty WSGI app on cheroot")
    p.add_argument("--entries", type=int, default=20000, help="files of the folder --op list lists")
    p.add_argument("--fresh", action="store_true", help="PUT new files (else replace the same 200)")
    p.add_argument("--hold", type=float, default=0, help="seconds to keep the servers up after (for py-spy)")
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(args.tree[0].split("=", 1)[1]).resolve()))
    from gateway.auth import hash_password

    body = os.urandom(4096)
    servers: dict[str, tuple[subprocess.Popen, int, str]] = {}
    with tempfile.TemporaryDirectory(prefix="sbs-") as t:
        try:
            for spec in args.tree:
                name, path = spec.split("=", 1)
                proc, ports = start_gateway(Path(path).resolve(), Path(t) / name, hash_password(PASSWORD))
                port = ports["http"]
                servers[name] = (proc, port, "/dav", Path(t) / name / "root")
                print(f"{name}: pid {proc.pid} port {port}", flush=True)
            if args.floor:
                port = free_port()
                proc = subprocess.Popen([sys.executable, "-c", FLOOR_APP, str(port)])
                wait_port(port, proc)
                servers["empty app on cheroot"] = (proc, port, "", None)
            for _, port, prefix, _ in servers.values():  # warm up; files exist for GET
                run(port, "put", 200, prefix, body)
            results: dict[str, list[tuple[float, float]]] = {k: [] for k in servers}
            for r in range(args.rounds):
                for name, (proc, port, prefix, root) in servers.items():
                    setup(port, args.op, args.n, prefix, body, f"r{r}-", root, args.entries)
                    user, system = cpu(proc.pid)
                    started = time.monotonic()
                    run(port, args.op, args.n, prefix, body, f"r{r}-", args.fresh)
                    wall = time.monotonic() - started
                    user2, system2 = cpu(proc.pid)
                    per = args.n * (args.entries if args.op == "list" else 1)
                    results[name].append(((user2 - user) / per * 1e6, (system2 - system) / per * 1e6,
                                          wall / args.n * 1e3))
            for name, rounds in results.items():
                us = [u + s for u, s, _ in rounds]
                walls = sorted(w for _, _, w in rounds)
                unit, digits = ("entry", 2) if args.op == "list" else ("request", 0)
                print(f"{args.op.upper()} {name}: " + " / ".join(f"{u:.{digits}f}" for u in us)
                      + f" µs CPU per {unit} (median {sorted(us)[len(us) // 2]:.{digits}f}; system "
                      + " / ".join(f"{s:.{digits}f}" for _, s, _ in rounds)
                      + f"); wall per request, client's read included: median {walls[len(walls) // 2]:.2f} ms"
                      + f" (min {walls[0]:.2f})", flush=True)
            if args.hold:
                time.sleep(args.hold)
        finally:
            stop(proc for proc, _, _, _ in servers.values())
    return 0


if __name__ == "__main__":
    sys.exit(main())
