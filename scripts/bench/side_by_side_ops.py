"""CPU per small FTP or SFTP operation of two (or more) gateway trees, side by side.

    python scripts/bench/side_by_side_ops.py --tree base=/tmp/base --tree new=. \
        --op dele|stor|sftp-remove|sftp-get|sftp-put [--n 1000] [--rounds 3] [--keep DIR]

The same setup as ``side_by_side.py`` (each tree its own gateway process,
temporary config, state dir and local mount, all running at once; rounds
interleaved; CPU from /proc/PID/stat before and after each round), driven
over FTP (ftplib) or SFTP (asyncssh), one logged-in connection per round:

- ``dele``: FTP DELE of ``--n`` 4 KiB files of one folder, made on the
  mount's disk before the round (as the benchmark's folder delete: files
  the gateway never saw); ``sftp-remove``: the same by SFTP remove;
- ``stor``: FTP STOR of ``--n`` new 4 KiB files, each followed by MFMT
  (a passive data connection each, as lftp's mput); ``sftp-put``: SFTP
  open, write, close of each;
- ``sftp-get``: SFTP open, fstat, read (to EOF), close of ``--n`` 4 KiB
  files (as OpenSSH's get).

Before the rounds one file is uploaded through each gateway, so the
file-id table holds a row (a checksum), as after the benchmark's uploads.
A benchmark, not a test: it prints µs of CPU per operation.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import tempfile
import time
from ftplib import FTP
from pathlib import Path

from side_by_side import PASSWORD, USER, cpu, start_gateway, stop

OPS = ("dele", "stor", "sftp-remove", "sftp-get", "sftp-put")


class Gateway:
    """A tree's gateway (side_by_side.start_gateway): its process, root, FTP and SFTP ports."""

    def __init__(self, name: str, tree: Path, tmp: Path, password_hash: str) -> None:
        self.name = name
        self.root = tmp / "root"
        self.proc, ports = start_gateway(tree, tmp, password_hash)
        self.ftp, self.sftp = ports["ftp"], ports["sftp"]


def _files(folder: Path, n: int, body: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"f{i}.bin").write_bytes(body)


def _ftp(gw: Gateway) -> FTP:
    ftp = FTP()
    ftp.connect("127.0.0.1", gw.ftp, timeout=60)
    ftp.login(USER, PASSWORD)
    return ftp


async def _sftp(gw: Gateway, op: str, folder: str, n: int, body: bytes) -> tuple[float, float]:
    import asyncssh

    async with asyncssh.connect("127.0.0.1", gw.sftp, username=USER, password=PASSWORD, known_hosts=None,
                                client_keys=None) as conn, conn.start_sftp_client() as sftp:
        await sftp.stat("/")
        before = _settled(gw)
        for i in range(n):
            path = f"{folder}/f{i}.bin"
            if op == "sftp-remove":
                await sftp.remove(path)
            elif op == "sftp-get":
                async with sftp.open(path, "rb") as f:
                    size = (await f.stat()).size
                    data = await f.read(32768, 0)
                    while data:
                        data = await f.read(32768, size)
            else:
                async with sftp.open(path, "wb") as f:
                    await f.write(body, 0)
        return _cpu_since(gw, before)


def _settled(gw: Gateway) -> tuple[float, float]:
    """The gateway's CPU once the login's work is done (a short pause)."""
    time.sleep(0.2)
    return cpu(gw.proc.pid)


def _cpu_since(gw: Gateway, before: tuple[float, float]) -> tuple[float, float]:
    user, system = cpu(gw.proc.pid)
    return user - before[0], system - before[1]


def prepare(gw: Gateway, op: str, r: int, n: int, body: bytes) -> str:
    """The folder round ``r`` works in (its files made on the disk when the op needs them)."""
    folder = "get" if op == "sftp-get" else f"r{r}"
    if op in ("dele", "sftp-remove") or (op == "sftp-get" and not (gw.root / folder).exists()):
        _files(gw.root / folder, n, body)
    else:
        (gw.root / folder).mkdir(exist_ok=True)
    return "/" + folder


def run(gw: Gateway, op: str, folder: str, n: int, body: bytes) -> tuple[float, float]:
    """Seconds of user and system CPU the gateway spent on the ``n``
    operations (the client's connection and login left out)."""
    if op.startswith("sftp-"):
        return asyncio.run(_sftp(gw, op, folder, n, body))
    ftp = _ftp(gw)
    before = _settled(gw)
    for i in range(n):
        if op == "dele":
            ftp.delete(f"{folder}/f{i}.bin")
        else:  # then its time, as lftp's mput sends it
            ftp.storbinary(f"STOR {folder}/f{i}.bin", io.BytesIO(body))
            ftp.sendcmd(f"MFMT 20240102030405 {folder}/f{i}.bin")
    spent = _cpu_since(gw, before)
    ftp.quit()
    return spent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tree", action="append", required=True, help="name=path of a gateway source tree")
    p.add_argument("--op", choices=OPS, required=True)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--keep", type=Path, help="a new folder for the gateways' files, kept after (logs)")
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(args.tree[0].split("=", 1)[1]).resolve()))
    from gateway.auth import hash_password

    body = os.urandom(4096)
    gateways: list[Gateway] = []
    with tempfile.TemporaryDirectory(prefix="sbs-ops-") as t:
        if args.keep:  # the gateways' logs and mounts stay there
            t = str(args.keep)
        try:
            for spec in args.tree:
                name, path = spec.split("=", 1)
                gateways.append(Gateway(name, Path(path).resolve(), Path(t) / name, hash_password(PASSWORD)))
                print(f"{name}: pid {gateways[-1].proc.pid}", flush=True)
            for gw in gateways:  # a file-id row exists (its checksum), as after the benchmark's uploads
                ftp = _ftp(gw)
                ftp.storbinary("STOR /warm.bin", io.BytesIO(body))
                ftp.quit()
            results: dict[str, list[tuple[float, float]]] = {gw.name: [] for gw in gateways}
            for r in range(args.rounds):
                for gw in gateways:
                    folder = prepare(gw, args.op, r, args.n, body)
                    user, system = run(gw, args.op, folder, args.n, body)
                    results[gw.name].append((user / args.n * 1e6, system / args.n * 1e6))
            for name, rounds in results.items():
                us = [u + s for u, s in rounds]
                print(f"{args.op} {name}: " + " / ".join(f"{u:.0f}" for u in us)
                      + f" µs CPU per op (median {sorted(us)[len(us) // 2]:.0f}; system "
                      + " / ".join(f"{s:.0f}" for _, s in rounds) + ")", flush=True)
        finally:
            stop(gw.proc for gw in gateways)
    return 0


if __name__ == "__main__":
    sys.exit(main())
