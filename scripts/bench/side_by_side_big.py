"""Wall time and CPU of large uploads to two (or more) gateway trees, side by side.

    python scripts/bench/side_by_side_big.py --tree base=/tmp/base --tree new=. \
        [--mib 1024] [--rounds 3] [--proto webdav --proto ftp]

Each tree runs as its own gateway process on a local mount (as
side_by_side.py); rounds are interleaved. WebDAV: one PUT over http.client
with Content-Length, the body streamed from a repeated 1 MiB random block;
FTP: ftplib STOR (passive, 64 KiB blocks) of the same stream. CPU is the
gateway process's utime+stime from /proc/PID/stat around the upload; the
wall time is the client's, until the reply. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import base64
import ftplib
import http.client
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from side_by_side import PASSWORD, USER, cpu, start_gateway, stop  # noqa: E402

BLOCK = os.urandom(1 << 20)


class Stream:
    """``mib`` MiB of the repeated block, read in any sizes."""

    def __init__(self, mib: int) -> None:
        self.left = mib << 20
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        n = min(self.left, n if n > 0 else self.left, len(BLOCK) - self.pos)
        data = BLOCK[self.pos:self.pos + n]
        self.pos = (self.pos + n) % len(BLOCK)
        self.left -= n
        return data


def put_webdav(port: int, mib: int, name: str) -> None:
    auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300, blocksize=1 << 20)
    conn.request("PUT", f"/dav/{name}", body=Stream(mib),
                 headers={"Authorization": auth, "Content-Length": str(mib << 20)})
    r = conn.getresponse()
    r.read()
    conn.close()
    if r.status >= 300:
        raise SystemExit(f"PUT {name}: {r.status}")


def put_ftp(port: int, mib: int, name: str) -> None:
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", port, timeout=300)
    ftp.login(USER, PASSWORD)
    ftp.storbinary(f"STOR {name}", Stream(mib), blocksize=64 << 10)
    ftp.quit()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tree", action="append", required=True, help="name=path of a gateway source tree")
    p.add_argument("--mib", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--proto", action="append", choices=("webdav", "ftp"))
    args = p.parse_args(argv)
    protos = args.proto or ["webdav", "ftp"]
    sys.path.insert(0, str(Path(args.tree[0].split("=", 1)[1]).resolve()))
    from gateway.auth import hash_password

    servers: dict[str, tuple[subprocess.Popen, dict[str, int], Path]] = {}
    with tempfile.TemporaryDirectory(prefix="sbsbig-", dir=os.environ.get("SBS_TMP")) as t:
        try:
            for spec in args.tree:
                name, path = spec.split("=", 1)
                tmp = Path(t) / name
                proc, ports = start_gateway(Path(path).resolve(), tmp, hash_password(PASSWORD))
                servers[name] = (proc, {"webdav": ports["http"], "ftp": ports["ftp"]}, tmp / "root")
                print(f"{name}: pid {proc.pid}", flush=True)
            results: dict[tuple[str, str], list[tuple[float, float]]] = {}
            for r in range(args.rounds):
                for proto in protos:
                    for name, (proc, ports, root) in servers.items():
                        u0, s0 = cpu(proc.pid)
                        t0 = time.monotonic()
                        (put_webdav if proto == "webdav" else put_ftp)(ports[proto], args.mib, f"big-{proto}.bin")
                        wall = time.monotonic() - t0
                        u1, s1 = cpu(proc.pid)
                        results.setdefault((proto, name), []).append((wall, (u1 - u0) + (s1 - s0)))
                        print(f"round {r} {proto} {name}: {wall:.2f} s wall, {u1 - u0 + s1 - s0:.2f} s CPU",
                              flush=True)
                        (root / f"big-{proto}.bin").unlink(missing_ok=True)
            for (proto, name), rounds in results.items():
                walls = sorted(w for w, _ in rounds)
                cpus = sorted(c for _, c in rounds)
                print(f"{proto} {args.mib} MiB {name}: wall median {walls[len(walls) // 2]:.2f} s "
                      f"({' / '.join(f'{w:.2f}' for w, _ in rounds)}), CPU median {cpus[len(cpus) // 2]:.2f} s "
                      f"({' / '.join(f'{c:.2f}' for _, c in rounds)}) = "
                      f"{cpus[len(cpus) // 2] / args.mib * 1e6:.0f} µs/MiB", flush=True)
        finally:
            stop(proc for proc, _, _ in servers.values())
    return 0


if __name__ == "__main__":
    sys.exit(main())
