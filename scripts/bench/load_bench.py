"""``scripts/bench/load``: many concurrent clients per protocol against one
running gateway while a 20,000-file job runs (issue #24).

    scripts/bench/load [--quick] [--levels 50,200,500+50] [--window S] [--json out.json]
                       [--markdown out.md] [--protocols ftp,sftp,webdav,rest] [--job local|slow-memory]

Starts the gateway (a separate process, its default config but for ports,
mounts, one user and connection limits that let the largest level in) on
127.0.0.1 with a temporary folder; then:

1. **unloaded**: one client per protocol, alone, no job, operations back to
   back for ``--unloaded-s`` seconds: the reference latencies;
2. a **background job** loop: copy a folder of ``--job-files`` files
   (``/jobs/src``, in folders of 1,000) to ``/jobs/dst`` (``--job local``) or
   to a ``slow::memory`` mount (``--job slow-memory``), then delete the copy,
   and again, through REST with ``Prefer: respond-async``, so a job of that
   size runs during every level;
3. each **level** (``N`` = N active clients per protocol; ``I+A`` = I idle
   and A active): every protocol's clients at once, each protocol's in its
   own process (``load_clients.py``); active clients cycle upload, stat,
   list, download and delete of a small file in their own folder with a
   random pause (``--think-s``, uniform 0.5–1.5× the mean) before each
   operation, for ``--window`` seconds; idle clients connect, log in and sit.

Reported per level: operations, throughput, errors, idle connections still
open at the end, CPU of the gateway and of the clients (they share the
machine), items the job did per second, the gateway's RSS (start, end, peak
from VmHWM) and peak descriptors and threads (read from /proc/PID); per
protocol and operation p50/p99 latency and the ratio of p99 to its unloaded
value. Targets: no errors; p99 under 5x unloaded at the first level (50
clients); memory flat (RSS after the last level, clients gone and job
stopped, within ``--rss-margin-mib`` of RSS before the first level), and
no growth when the last level runs a second time (RSS at the end of that
pass within a quarter of the margin of the first pass's; ``--no-repeat``
skips it).
Everything started is stopped on exit, Ctrl-C or SIGTERM. Exit code: 0 when
every target is met, 1 when one is missed, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import machine
from load_clients import OPS
from peers import REPO, _toml
from procs import Procs, free_port, install_signal_handlers, wait_port

PROTOCOLS = ("ftp", "sftp", "webdav", "rest")
P99_TARGET = 5.0
PER_FOLDER = 1000
DRIVER = Path(__file__).resolve().parent / "load_clients.py"


def _log(msg: str) -> None:
    print(f"load: {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Level:
    idle: int
    active: int

    @property
    def label(self) -> str:
        return f"{self.idle} idle + {self.active}" if self.idle else str(self.active)

    @classmethod
    def parse(cls, text: str) -> "Level":
        """``N`` (N active) or ``I+A`` (I idle, A active). Raises ValueError."""
        idle, _, active = text.strip().rpartition("+")
        level = cls(int(idle or 0), int(active))
        if level.active < 1 or level.idle < 0:
            raise ValueError(text)
        return level


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/bench/load", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="levels 5,20,50+5, 10 s windows, a 2,000-file job: about a minute")
    p.add_argument("--levels", help="comma-separated N (active clients per protocol) or I+A (idle+active); "
                                    "default 50,200,500+50 (the first level is the one the p99 target is for)")
    p.add_argument("--protocols", default=",".join(PROTOCOLS), help="comma-separated: ftp, sftp, webdav, rest")
    p.add_argument("--window", type=float, help="seconds measured per level (default 60; --quick 10)")
    p.add_argument("--unloaded-s", type=float, help="seconds of the lone client per protocol (default 15; --quick 4)")
    p.add_argument("--think-s", type=float, default=1.0, help="mean pause before each operation (default 1.0)")
    p.add_argument("--small-bytes", type=int, default=4096, help="size of the small file (default 4096)")
    p.add_argument("--job", choices=("local", "slow-memory"), default="local",
                   help="where the background copy goes: the same local mount, or a slow::memory mount")
    p.add_argument("--no-job", action="store_true",
                   help="no background job: tells its share of the latency apart from the clients'")
    p.add_argument("--job-files", type=int, help="files of the background job (default 20000; --quick 2000)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds one operation or connection may take")
    p.add_argument("--rss-margin-mib", type=float, default=32.0,
                   help="memory is flat when RSS after is at most this above RSS before (default 32)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="another gateway config value (TOML literal), e.g. --set http.threads=64")
    p.add_argument("--no-repeat", action="store_true",
                   help="do not run the last level a second time (that pass tells a one-time rise of RSS from growth)")
    p.add_argument("--json", type=Path, help="write the whole report here as JSON")
    p.add_argument("--markdown", type=Path, help="write a results document (date, machine, tables) here")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (config, logs)")
    args = p.parse_args(argv)
    args.protocols = [x.strip() for x in args.protocols.split(",") if x.strip()]
    if not args.protocols or set(args.protocols) - set(PROTOCOLS):
        p.error(f"--protocols: expected some of {', '.join(PROTOCOLS)}")
    try:
        args.levels = [Level.parse(x) for x in (args.levels or ("5,20,50+5" if args.quick else "50,200,500+50"))
                       .split(",")]
    except ValueError:
        p.error("--levels: expected N or IDLE+ACTIVE, comma-separated, e.g. 50,200,500+50")
    args.window = args.window or (10.0 if args.quick else 60.0)
    args.unloaded_s = args.unloaded_s or (4.0 if args.quick else 15.0)
    args.job_files = args.job_files or (2000 if args.quick else 20000)
    return args


# -- the gateway ------------------------------------------------------------------------------


class Gateway:
    """The gateway process with its config, folders and client key."""

    def __init__(self, args: argparse.Namespace, tmp: Path, procs: Procs) -> None:
        import asyncssh

        self.tmp, self.procs = tmp, procs
        self.user, self.password = "load", secrets.token_hex(12)
        self.root = tmp / "srv"
        self.root.mkdir()
        key = asyncssh.generate_private_key("ssh-ed25519")
        self.key = tmp / "client_key"
        key.write_private_key(str(self.key))
        self.pub = key.export_public_key().decode().strip()
        self.ports = {"ftp": free_port(), "sftp": free_port(), "http": free_port()}
        self.config = self._config(args)
        self.proc: subprocess.Popen | None = None

    def port(self, protocol: str) -> int:
        return self.ports.get(protocol) or self.ports["http"]

    def _config(self, args: argparse.Namespace) -> Path:
        from gateway.auth import hash_password

        # Above Linux's default ephemeral range (32768-60999), where the front
        # ends' own ports are, and never holding one of them (the config refuses that).
        base = 61000 + secrets.randbelow(4) * 1000
        while any(base <= p <= base + 999 for p in self.ports.values()):
            base = 40000 + secrets.randbelow(20) * 1000
        sections: dict[str, dict[str, Any]] = {
            "server": {"host": "127.0.0.1", "state_dir": str(self.tmp / "var")},
            "ftp": {"port": self.ports["ftp"], "passive_ports": f"{base}-{base + 999}"},
            "sftp": {"port": self.ports["sftp"]},
            "http": {"port": self.ports["http"]},
        }
        for name, limit in connection_limits(args.levels).items():
            sections[name].update(limit)
        for item in args.set:
            key, _, value = item.partition("=")
            section, _, name = key.strip().rpartition(".")
            try:
                parsed = tomllib.loads(f"v = {value}")["v"]
            except tomllib.TOMLDecodeError:
                parsed = value
            sections.setdefault(section, {})[name] = parsed
        lines = []
        for name, values in sections.items():
            lines.append(f"[{name}]")
            lines += [f"{k} = {_toml(v)}" for k, v in values.items()]
        lines += ["[[mounts]]", 'path = "/"', f"url = {_toml('file://' + str(self.root))}"]
        if args.job == "slow-memory":
            lines += ["[[mounts]]", 'path = "/mem"', f"url = {_toml('slow::memory://load-' + secrets.token_hex(4))}",
                      f"options = {_toml({'slow': {'latency_ms': 1}})}"]
        lines += ["[[users]]", f"name = {_toml(self.user)}", f"password_hash = {_toml(hash_password(self.password))}",
                  f"authorized_keys = {_toml([self.pub])}"]
        path = self.tmp / "gateway.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> None:
        """Raises RuntimeError when it does not come up within 90 s."""
        self.proc = self.procs.spawn("gateway", [sys.executable, "-m", "gateway.cli", "serve", "--config",
                                                 str(self.config)], env={"PYTHONPATH": str(REPO)}, cwd=REPO)
        log = self.procs.log_dir / "gateway.log"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and self.proc.poll() is None:
            if "gateway ready" in log.read_text(errors="replace"):
                break
            time.sleep(0.1)
        for port in self.ports.values():
            if not wait_port(port, 5, self.proc):
                raise RuntimeError("the gateway did not start: " + self.procs.log_tail("gateway"))

    @property
    def pid(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"the gateway exited ({self.proc.returncode}): " + self.procs.log_tail("gateway"))
        return self.proc.pid


def connection_limits(levels: list[Level]) -> dict[str, dict[str, int]]:
    """The ``max_connections*`` keys each front end of this gateway has,
    raised so that the largest level gets in: every client comes from
    127.0.0.1, an FTP transfer holds a second socket, and WebDAV and REST
    clients share the HTTP port (and one address may keep every worker busy)."""
    from gateway import config

    most = max(lv.idle + lv.active for lv in levels)
    need = {"ftp": (config.Ftp, 2 * most + 64), "sftp": (config.Sftp, most + 64),
            "http": (config.Http, 2 * most + 64)}
    keys = ("max_connections", "max_connections_per_ip", "max_workers_per_ip")
    return {name: {key: n for key in keys if key in model.model_fields} for name, (model, n) in need.items()}


def make_tree(root: Path, n: int, size: int = 1024) -> None:
    """``root`` with n files of ``size`` bytes in folders of 1,000, made on disk."""
    body = b"j" * size
    for i in range(n):
        folder = root / f"d{i // PER_FOLDER:03d}"
        if i % PER_FOLDER == 0:
            folder.mkdir(parents=True)
        (folder / f"f{i:06d}").write_bytes(body)


# -- what is measured from outside ----------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (bytes), Threads, and fds (entries of /proc/PID/fd)."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
            elif key == "Threads":
                out[key] = int(value)
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


class Sampler:
    """Peaks of the gateway's descriptors, threads and RSS while a level
    runs (VmHWM is reset at the start through /proc/PID/clear_refs, so a
    spike between samples still counts)."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid, self.interval = pid, interval
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
            self.hwm_exact = True
        except OSError:
            self.hwm_exact = False
        self.start = proc_status(pid)
        self.peak = dict(self.start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        try:
            st = proc_status(self.pid)
        except OSError:
            return
        for k, v in st.items():
            self.peak[k] = max(self.peak.get(k, 0), v)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        self._sample()
        end = proc_status(self.pid)
        peak_rss = self.peak["VmHWM"] if self.hwm_exact else self.peak["VmRSS"]
        return {"rss_start": self.start["VmRSS"], "rss_end": end["VmRSS"], "peak_rss": peak_rss,
                "peak_rss_exact": self.hwm_exact, "fds_start": self.start["fds"], "peak_fds": self.peak["fds"],
                "fds_end": end["fds"], "peak_threads": self.peak["Threads"]}


# -- the background job -------------------------------------------------------------------


class JobLoop:
    """Keeps one big job running: copy ``src`` to ``dst``, delete ``dst``,
    again, through REST. ``items()`` counts the items done so far by all of
    them; a job that fails or a refused request is an error."""

    def __init__(self, gw: Gateway, src: str, dst: str) -> None:
        import httpx

        self.http = httpx.Client(base_url=f"http://127.0.0.1:{gw.port('http')}", auth=(gw.user, gw.password),
                                 timeout=60)
        self.src, self.dst = src, dst
        self.done_items = 0
        self.current: dict[str, Any] = {}
        self.jobs: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jobs", daemon=True)

    def items(self) -> int:
        return self.done_items + int(self.current.get("itemsDone") or 0)

    def start(self, timeout: float = 60) -> None:
        """Returns once the first job runs (or has already finished). Raises RuntimeError."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while self.current.get("state") != "running" and not self.jobs and not self.errors:
            if time.monotonic() > deadline:
                raise RuntimeError("the background copy did not start running")
            time.sleep(0.1)

    def _request(self, method: str, url: str, **kw: Any) -> Any:
        """One request, tried again (up to 3 times) when the connection
        fails; each failure is counted as an error."""
        import httpx

        for attempt in range(3):
            try:
                return self.http.request(method, url, **kw)
            except httpx.TransportError as e:
                self.errors.append(f"{method} {url.split('?')[0]}: {type(e).__name__}: {e}")
                if attempt == 2:
                    raise
                time.sleep(0.5)

    def _one(self, endpoint: str, payload: dict) -> None:
        r = self._request("POST", f"/api/v1/fs/{endpoint}", json=payload, headers={"Prefer": "respond-async"})
        if r.status_code not in (200, 201, 202):
            raise RuntimeError(f"POST {endpoint} answered {r.status_code}: {r.text[:200]}")
        if r.status_code != 202:
            return
        job_id = r.json()["id"]
        t0 = time.monotonic()
        stop_sent = False
        while True:
            r = self._request("GET", f"/api/v1/jobs/{job_id}")
            if r.status_code != 200:
                raise RuntimeError(f"GET job answered {r.status_code}: {r.text[:200]}")
            self.current = r.json()
            if self.current.get("state") in ("completed", "failed", "stopped", "cancelled"):
                break
            if stop_sent:  # wait until it has stopped
                time.sleep(0.2)
            elif self._stop.wait(0.5):
                self._request("POST", f"/api/v1/jobs/{job_id}/stop")
                stop_sent = True
        done, self.current = self.current, {}
        self.done_items += int(done.get("itemsDone") or 0)
        self.jobs.append({"operation": endpoint, "state": done.get("state"), "items": done.get("itemsDone"),
                          "seconds": round(time.monotonic() - t0, 1)})
        if done.get("state") == "failed":
            raise RuntimeError(f"the {endpoint} job failed: {done.get('error')}")

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._one("copy", {"from": self.src, "to": self.dst})
                if not self._stop.is_set():
                    self._one("delete", {"path": self.dst})
        except Exception as e:  # noqa: BLE001 - reported with the results
            self.errors.append(f"{type(e).__name__}: {e}")
        finally:
            self.http.close()

    def stop(self, timeout: float = 120) -> None:
        """Stops the running job and waits (at most ``timeout``) until it has."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)


# -- one level ------------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of a sorted list."""
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def op_stats(latencies: list[float], window: float) -> dict[str, Any]:
    v = sorted(latencies)
    if not v:
        return {"n": 0}
    return {"n": len(v), "ops_per_s": len(v) / window, "p50_ms": percentile(v, 0.5) * 1e3,
            "p99_ms": percentile(v, 0.99) * 1e3, "max_ms": v[-1] * 1e3}


class Drivers:
    """One ``load_clients.py`` process per protocol for one level."""

    def __init__(self, gw: Gateway, procs: Procs, protocols: list[str], level: Level, think_s: float,
                 args: argparse.Namespace) -> None:
        self.procs = procs
        self.running: dict[str, subprocess.Popen] = {}
        for proto in protocols:
            spec = {"protocol": proto, "port": gw.port(proto), "user": gw.user, "password": gw.password,
                    "key": str(gw.key), "folder": f"/load/{proto}", "idle": level.idle, "active": level.active,
                    "think_s": think_s, "small_bytes": args.small_bytes, "timeout": args.timeout,
                    "seed": secrets.randbelow(1 << 30)}
            log = open(procs.log_dir / f"clients-{proto}.log", "ab")
            proc = subprocess.Popen([sys.executable, str(DRIVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=log, text=True, start_new_session=True, env={**os.environ,
                                                                                       "PYTHONPATH": str(REPO)})
            log.close()
            procs.started.append((f"clients-{proto}", proc))
            proc.stdin.write(json.dumps(spec) + "\n")
            proc.stdin.flush()
            self.running[proto] = proc

    def read(self, proto: str, event: str) -> dict[str, Any]:
        """The next ``event`` line of ``proto``'s driver. Raises RuntimeError."""
        proc = self.running[proto]
        line = proc.stdout.readline()
        if not line:
            proc.wait(10)
            tail = self.procs.log_tail(f"clients-{proto}")
            raise RuntimeError(f"{proto} clients exited ({proc.returncode}) before '{event}': {tail}")
        msg = json.loads(line)
        if msg.get("event") != event:
            raise RuntimeError(f"{proto} clients: expected {event}, got {line[:200]}")
        return msg

    def go(self, window: float) -> None:
        for proc in self.running.values():
            proc.stdin.write(f"go {window}\n")
            proc.stdin.flush()

    def finish(self) -> None:
        for name, proc in list(self.running.items()):
            try:
                proc.stdin.close()  # a driver still waiting for "go" ends at once
            except OSError:
                pass
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                self.procs.stop(proc)
            self.procs.started.remove((f"clients-{name}", proc))


def run_level(name: str, gw: Gateway, procs: Procs, protocols: list[str], level: Level, think_s: float,
              window: float, args: argparse.Namespace, job: JobLoop | None) -> dict[str, Any]:
    """Connect, measure ``window`` seconds, collect. Raises RuntimeError when
    the gateway or a client process dies."""
    sampler = Sampler(gw.pid)
    drivers = Drivers(gw, procs, protocols, level, think_s, args)
    t_ramp = time.monotonic()
    result: dict[str, Any] = {"name": name, "idle": level.idle, "active": level.active, "think_s": think_s,
                              "protocols": {}}
    try:
        ready = {p: drivers.read(p, "ready") for p in protocols}
        result["ramp_s"] = round(time.monotonic() - t_ramp, 2)
        items0, gw_cpu0, me0, t0 = job.items() if job else 0, proc_cpu(gw.pid), self_cpu(), time.monotonic()
        drivers.go(window)
        time.sleep(window)
        elapsed = time.monotonic() - t0
        gw_cpu, me = proc_cpu(gw.pid) - gw_cpu0, self_cpu() - me0
        items = (job.items() if job else 0) - items0
        done = {p: drivers.read(p, "result") for p in protocols}
    finally:
        drivers.finish()
        gateway = sampler.stop()
    client_cpu = me
    total_ops = total_errors = 0
    for p in protocols:
        r, d = ready[p], done[p]
        errors = dict(d["errors"])
        n_errors = sum(errors.values())
        ops = {op: op_stats(d["latency"][op], d["window_s"]) for op in OPS}
        every = [x for op in OPS for x in d["latency"][op]]
        ops["all"] = op_stats(every, d["window_s"])
        total_ops += ops["all"]["n"]
        total_errors += n_errors
        client_cpu += d["window_cpu_s"]
        result["protocols"][p] = {"connected": r["connected"], "connect_s": r["connect_s"], "ops": ops,
                                  "errors": n_errors, "errors_by_op": errors, "first_errors": d["first_errors"],
                                  "idle_alive": d["idle_alive"], "client_cpu_s": d["window_cpu_s"]}
    result.update({"window_s": elapsed, "ops": total_ops, "ops_per_s": total_ops / elapsed, "errors": total_errors,
                   "gateway_cpu": gw_cpu / elapsed, "client_cpu": client_cpu / elapsed,
                   "job_items_per_s": items / elapsed if job else None, "gateway": gateway})
    _log(f"{name}: {total_ops} operations ({total_ops / elapsed:.0f}/s), {total_errors} errors, gateway CPU "
         f"{gw_cpu / elapsed:.0%}, clients {client_cpu / elapsed:.0%}, peak fds {gateway['peak_fds']}, "
         f"peak RSS {gateway['peak_rss'] / 2**20:.0f} MiB")
    return result


# -- report ---------------------------------------------------------------------------------


def _mib(b: int) -> str:
    return f"{b / 2**20:.0f}"


def _ms(x: float) -> str:
    return f"{x:.1f}" if x < 100 else f"{x:.0f}"


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target: name, met, detail."""
    out = []
    errs = [(lv["name"], p, d["errors"], d["first_errors"]) for lv in doc["levels"]
            for p, d in lv["protocols"].items() if d["errors"]]
    job_errs = doc["job"]["errors"]
    detail = "; ".join(f"{name}/{p}: {n} ({first[0] if first else ''})" for name, p, n, first in errs)
    if job_errs:
        detail = "; ".join(filter(None, [detail, "job: " + job_errs[0]]))
    out.append({"name": "no errors", "met": not errs and not job_errs, "detail": detail or "none"})
    first = doc["levels"][0]
    misses, worst = [], 0.0
    for p, d in first["protocols"].items():
        for op in OPS:
            base = doc["unloaded"].get(p, {}).get(op, {})
            at = d["ops"][op]
            if not base.get("n") or not at.get("n"):
                misses.append(f"{p} {op}: no samples")
                continue
            ratio = at["p99_ms"] / base["p99_ms"]
            worst = max(worst, ratio)
            if ratio >= P99_TARGET:
                misses.append(f"{p} {op} {ratio:.1f}× ({_ms(at['p99_ms'])} ms against {_ms(base['p99_ms'])} ms)")
    out.append({"name": f"p99 < {P99_TARGET:g}× unloaded at {first['name']} clients", "met": not misses,
                "detail": "; ".join(misses) or f"worst {worst:.1f}×"})
    mem = doc["memory"]
    out.append({"name": "memory flat", "met": mem["after"] <= mem["before"] + mem["margin"],
                "detail": f"RSS {_mib(mem['before'])} MiB before the first level, {_mib(mem['after'])} MiB after "
                          f"the last (clients gone, job stopped); margin {_mib(mem['margin'])} MiB"})
    if not doc["settings"]["no_repeat"]:
        first, again = doc["levels"][-2]["gateway"], doc["levels"][-1]["gateway"]
        grew = again["rss_end"] - first["rss_end"]
        out.append({"name": "no growth when the last level runs again", "met": grew <= mem["margin"] / 4,
                    "detail": f"RSS at its end {_mib(first['rss_end'])} MiB, after the second pass "
                              f"{_mib(again['rss_end'])} MiB (margin {_mib(mem['margin'] / 4)} MiB)"})
    return out


def markdown(doc: dict[str, Any]) -> str:
    protos = list(doc["unloaded"])
    lines = ["| level (clients per protocol) | connections | operations | ops/s | errors | idle still open | "
             "gateway CPU | clients CPU | job items/s | gateway RSS start → end MiB | peak RSS MiB | "
             "peak fds | peak threads |", "|" + " --- |" * 13]
    for lv in doc["levels"]:
        g = lv["gateway"]
        conns = sum(d["connected"]["idle"] + d["connected"]["active"] for d in lv["protocols"].values())
        alive = sum(d["idle_alive"] for d in lv["protocols"].values())
        idle = sum(d["connected"]["idle"] for d in lv["protocols"].values())
        job = f"{lv['job_items_per_s']:.0f}" if lv["job_items_per_s"] is not None else "—"
        lines.append(f"| {lv['name']} | {conns} | {lv['ops']} | {lv['ops_per_s']:.0f} | {lv['errors']} | "
                     f"{f'{alive}/{idle}' if idle else '—'} | {lv['gateway_cpu']:.0%} | {lv['client_cpu']:.0%} | "
                     f"{job} | {_mib(g['rss_start'])} → {_mib(g['rss_end'])} | {_mib(g['peak_rss'])} | "
                     f"{g['peak_fds']} | {g['peak_threads']} |")
    head = ["protocol", "operation", "unloaded p50 / p99 ms"] + [f"{lv['name']}: p50 / p99 ms (p99 ×)"
                                                                  for lv in doc["levels"]]
    lines += ["", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for p in protos:
        for op in OPS + ("all",):
            base = doc["unloaded"][p].get(op, {})
            row = [p, op, f"{_ms(base['p50_ms'])} / {_ms(base['p99_ms'])}" if base.get("n") else "n/a"]
            for lv in doc["levels"]:
                at = lv["protocols"].get(p, {}).get("ops", {}).get(op, {})
                if not at.get("n"):
                    row.append("n/a")
                    continue
                ratio = f" ({at['p99_ms'] / base['p99_ms']:.1f}×)" if base.get("n") else ""
                row.append(f"{_ms(at['p50_ms'])} / {_ms(at['p99_ms'])}{ratio}")
            lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Targets:", ""]
    lines += [f"- {'✔' if t['met'] else '✘'} {t['name']}: {t['detail']}" for t in doc["targets"]]
    return "\n".join(lines)


def document(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    a = doc["settings"]
    return "\n".join([
        f"- date: {doc['date']}, {doc['elapsed_s']:.0f} s; commit {doc['commit']}; `scripts/bench/load "
        f"{' '.join(doc['argv'])}`",
        f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']} GiB RAM, {m['os']}, Linux {m['kernel']}; "
        f"load average before {doc['loadavg_before']}, after {doc['loadavg_after']}",
        f"- levels {', '.join(lv['name'] for lv in doc['levels'])} per protocol ({', '.join(doc['unloaded'])}), "
        f"all protocols at once, {a['window']:.0f} s each; think time {a['think_s']} s mean; small file "
        f"{a['small_bytes']} bytes; unloaded: one client alone per protocol, back to back, {a['unloaded_s']:.0f} s",
        f"- background: {doc['job']['description']}; jobs finished: " + (", ".join(
            f"{j['operation']} {j['state']} ({j['items']} items, {j['seconds']} s)" for j in doc["job"]["jobs"])
            or "none"),
        "", markdown(doc), ""])


# -- the run ----------------------------------------------------------------------------------


def _commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _loadavg() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


def run(args: argparse.Namespace) -> int:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the clients' own sockets (inherited)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="gateway-load-", dir=os.environ.get("BENCH_TMP")))
    (tmp / "logs").mkdir()
    procs = Procs(tmp / "logs")
    doc: dict[str, Any] = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                           "argv": sys.argv[1:], "commit": _commit(), "machine": machine(),
                           "loadavg_before": _loadavg(), "settings": {
                               k: getattr(args, k) for k in ("window", "unloaded_s", "think_s", "small_bytes", "job",
                                                             "job_files", "timeout", "rss_margin_mib", "no_repeat")},
                           "unloaded": {}, "levels": []}
    job: JobLoop | None = None
    interrupted = False
    try:
        gw = Gateway(args, tmp, procs)
        most = max(lv.active for lv in args.levels)
        for p in args.protocols:
            for i in range(most):
                (gw.root / "load" / p / f"c{i}").mkdir(parents=True)
        _log(f"creating {args.job_files:,} files for the background job")
        make_tree(gw.root / "jobs" / "src", args.job_files)
        gw.start()
        _log(f"gateway pid {gw.pid} in {tmp}; unloaded reference, {args.unloaded_s:.0f} s per protocol")
        for p in args.protocols:
            lv = run_level(f"unloaded {p}", gw, procs, [p], Level(0, 1), 0.0, args.unloaded_s, args, None)
            doc["unloaded"][p] = lv["protocols"][p]["ops"]
            doc.setdefault("unloaded_errors", {})[p] = lv["protocols"][p]["errors"]
        time.sleep(1)
        rss_before = proc_status(gw.pid)["VmRSS"]
        dst = "/mem/dst" if args.job == "slow-memory" else "/jobs/dst"
        slow = " (slow::memory, 1 ms a call)" if args.job == "slow-memory" else ""
        doc["job"] = {"description": f"copy of /jobs/src ({args.job_files:,} files of 1 KiB in folders of "
                                     f"{PER_FOLDER:,}) to {dst}{slow}, then delete of the copy, again and again",
                      "jobs": [], "errors": []}
        if args.no_job:
            doc["job"]["description"] = "none (--no-job)"
        else:
            job = JobLoop(gw, "/jobs/src", dst)
            job.start()
        again = [] if args.no_repeat else [(args.levels[-1], f"{args.levels[-1].label}, again")]
        for level, name in [(lv, lv.label) for lv in args.levels] + again:
            _log(f"level {name}: {level.idle} idle + {level.active} active clients per protocol")
            doc["levels"].append(run_level(name, gw, procs, args.protocols, level, args.think_s, args.window,
                                           args, job))
        if job:
            job.stop()
        time.sleep(3)
        doc["memory"] = {"before": rss_before, "after": proc_status(gw.pid)["VmRSS"],
                         "margin": int(args.rss_margin_mib * 2**20)}
    except KeyboardInterrupt:
        interrupted = True
        _log("interrupted")
    except RuntimeError as e:
        _log(f"failed: {e}")
        doc["failure"] = str(e)
    finally:
        if job:
            job.stop(10)
            doc["job"].update({"jobs": job.jobs, "errors": job.errors})
        procs.stop_all()
    doc["loadavg_after"] = _loadavg()
    doc["elapsed_s"] = round(time.monotonic() - started, 1)
    complete = not interrupted and "memory" in doc
    if complete:
        doc["targets"] = targets(doc)
        print(markdown(doc))
        if args.markdown:
            args.markdown.write_text(document(doc))
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
        _log(f"wrote {args.json}")
    if args.keep or not complete:
        _log(f"kept {tmp}")
    else:
        subprocess.run(["rm", "-rf", str(tmp)])
    if interrupted:
        return 130
    return 0 if complete and all(t["met"] for t in doc["targets"]) else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_signal_handlers()
    return run(args)
