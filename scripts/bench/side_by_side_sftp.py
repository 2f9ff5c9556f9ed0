"""CPU and wall time of OpenSSH's ``sftp`` client against two (or more) gateway trees, side by side.

    python scripts/bench/side_by_side_sftp.py --tree base=/tmp/base --tree new=. \
        --op get-small|rm-folder|get-big|put-big [--n 2000] [--mib 1024] [--rounds 3] [--ssh-option Ciphers=...]

The benchmark's SFTP rows use OpenSSH's ``sftp`` (scripts/bench/clients.py),
which negotiates other algorithms than asyncssh's client in
``side_by_side_ops.py`` (aes128-ctr with umac-64-etm against the gateway's
offer, where asyncssh picks aes256-gcm). Each tree runs as its own gateway
process (``side_by_side.start_gateway``), rounds interleaved; the client
logs in with the password through ``sshpass``. The gateway's CPU is read
from /proc by the client itself (a ``!`` shell escape of the same sftp
session, before and after the transfer), so the login is left out:

- ``get-small``: ``get -r`` of a folder of ``--n`` 4 KiB files in 10
  subfolders (as the benchmark's small download), made on the mount's disk;
- ``rm-folder``: ``rm`` of a folder's ``--n`` 4 KiB files (a glob) and
  ``rmdir`` (as the benchmark's folder delete), made on the mount's disk;
- ``get-big`` / ``put-big``: one file of ``--mib`` MiB (the download's file
  made once on the disk; the upload's from a local file).

Prints µs of gateway CPU per file (get-small) or per MiB, the wall time,
and the client's CPU (sftp and its ssh, the login included).
A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from side_by_side import PASSWORD, USER, start_gateway, stop  # noqa: E402

OPS = ("get-small", "rm-folder", "get-big", "put-big")
_TICK = os.sysconf("SC_CLK_TCK")


def _stat_cpu(text: str) -> float:
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def session(port: int, pid: int, commands: list[str], work: Path, options: list[str]
            ) -> tuple[float, float, float]:
    """(gateway CPU s, wall s, the client's CPU s: sftp and ssh, login included) of ``commands`` in one
    logged-in sftp session."""
    marks = work / "marks"
    probe = f"!(cat /proc/{pid}/stat; date +%s.%N) >> {marks}"
    marks.unlink(missing_ok=True)
    argv = ["sshpass", "-p", PASSWORD, "sftp", "-q", "-P", str(port), "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "PubkeyAuthentication=no", "-o", "LogLevel=ERROR",
            *[a for o in options for a in ("-o", o)], f"{USER}@127.0.0.1"]
    script = "\n".join([probe, *commands, probe]) + "\n"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(argv, input=script.encode(), cwd=work, capture_output=True, timeout=900)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    lines = marks.read_text().splitlines() if marks.exists() else []
    if r.returncode or len(lines) != 4:
        raise SystemExit(f"sftp failed ({r.returncode}): {r.stderr.decode(errors='replace')[-2000:]}")
    return _stat_cpu(lines[2]) - _stat_cpu(lines[0]), float(lines[3]) - float(lines[1]), client


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tree", action="append", required=True, help="name=path of a gateway source tree")
    p.add_argument("--op", choices=OPS, required=True)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--mib", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--keep", type=Path, help="a new folder for the gateways' files, kept after (logs)")
    p.add_argument("--ssh-option", action="append", default=[], help="passed to sftp as -o (e.g. MACs=...)")
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(args.tree[0].split("=", 1)[1]).resolve()))
    from gateway.auth import hash_password

    with tempfile.TemporaryDirectory(prefix="sbs-sftp-") as t:
        tmp = args.keep or Path(t)
        gateways = []
        try:
            for spec in args.tree:
                name, path = spec.split("=", 1)
                proc, ports = start_gateway(Path(path).resolve(), tmp / name, hash_password(PASSWORD))
                gateways.append((name, proc, ports["sftp"], tmp / name / "root"))
                print(f"{name}: pid {proc.pid}", flush=True)
            big = tmp / "big.bin"
            if args.op in ("get-big", "put-big"):
                with open(big, "wb") as f:
                    block = os.urandom(1 << 20)
                    for _ in range(args.mib):
                        f.write(block)
            body = os.urandom(4096)
            for _, _, _, root in gateways:
                if args.op == "get-small":
                    for i in range(args.n):
                        d = root / "small" / f"d{i % 10}"
                        d.mkdir(parents=True, exist_ok=True)
                        (d / f"f{i}.bin").write_bytes(body)
                elif args.op == "rm-folder":
                    pass  # made before each round
                elif args.op == "get-big":
                    os.link(big, root / "big.bin")
            results: dict[str, list[tuple[float, float, float]]] = {g[0]: [] for g in gateways}
            small = args.op in ("get-small", "rm-folder")
            per = args.n if small else args.mib
            for r in range(args.rounds):
                for name, proc, port, root in gateways:
                    if args.op == "rm-folder":
                        (root / f"del{r}").mkdir()
                        for i in range(args.n):
                            (root / f"del{r}" / f"f{i}.bin").write_bytes(body)
                    work = tmp / f"work-{name}"
                    work.mkdir(exist_ok=True)
                    cmd = {"get-small": [f"get -r /small {work}/small"], "get-big": [f"get /big.bin {work}/big.bin"],
                           "put-big": [f"put {big} /up{r}.bin"],
                           "rm-folder": [f"rm /del{r}/*", f"rmdir /del{r}"]}[args.op]
                    cpu_s, wall, client = session(port, proc.pid, cmd, work, args.ssh_option)
                    results[name].append((cpu_s / per * 1e6, wall, client / per * 1e6))
                    shutil.rmtree(work / "small", ignore_errors=True)
                    (work / "big.bin").unlink(missing_ok=True)
                    (root / f"up{r}.bin").unlink(missing_ok=True)
            unit = "file" if small else "MiB"
            for name, rounds in results.items():
                us = sorted(r[0] for r in rounds)
                walls = sorted(r[1] for r in rounds)
                print(f"{args.op} {name}: " + " / ".join(f"{r[0]:.0f}" for r in rounds)
                      + f" µs CPU per {unit} (median {us[len(us) // 2]:.0f}); wall "
                      + " / ".join(f"{r[1]:.2f}" for r in rounds) + f" s (median {walls[len(walls) // 2]:.2f});"
                      f" client CPU per {unit} (sftp, ssh; login included) "
                      + " / ".join(f"{r[2]:.0f}" for r in rounds) + " µs", flush=True)
        finally:
            stop(g[1] for g in gateways)
    return 0


if __name__ == "__main__":
    sys.exit(main())
