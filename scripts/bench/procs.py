"""Processes the benchmark starts: each in its own process group, all stopped
on exit (normal, exception, SIGINT or SIGTERM), plus port polling and a
peak-memory sampler over a process tree."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

__all__ = ["Procs", "free_port", "wait_port", "tree_pids", "tree_rss", "RssSampler", "install_signal_handlers"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None, host: str = "127.0.0.1") -> bool:
    """True once ``host:port`` accepts a connection; False after ``timeout``
    or as soon as ``proc`` has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def _table() -> dict[int, tuple[int, int, int]]:
    """pid -> (ppid, start time, own CPU ticks: utime + stime) for every
    process (one pass over /proc)."""
    table: dict[int, tuple[int, int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: split after the last ')'.
        # After it: state is field 3, ppid 4, utime 14, stime 15, starttime 22.
        fields = stat[stat.rfind(b")") + 2:].split()
        table[int(entry.name)] = (int(fields[1]), int(fields[19]), int(fields[11]) + int(fields[12]))
    return table


def _children(table: dict[int, tuple[int, int, int]] | None = None) -> dict[int, list[int]]:
    """ppid -> [pid] for every process."""
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in (table if table is not None else _table()).items():
        kids.setdefault(ppid, []).append(pid)
    return kids


def tree_pids(root: int, table: dict[int, tuple[int, int, int]] | None = None) -> list[int]:
    """``root`` and all its live descendants (sshd and vsftpd fork per session)."""
    kids = _children(table)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, ()))
    return out


class Procs:
    """Every process started for one run; :meth:`stop_all` ends them (and
    their descendants, which may have left the group, e.g. sshd sessions)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[tuple[str, subprocess.Popen]] = []

    def spawn(self, name: str, argv: list[str], *, env: dict[str, str | None] | None = None, cwd: str | Path | None = None,
              stdin: int | None = subprocess.DEVNULL) -> subprocess.Popen:
        """Start ``argv`` in a new process group, output to ``<log_dir>/<name>.log``;
        ``env`` adds variables to ours (a None value removes one)."""
        full = {**os.environ, **(env or {})}
        log = open(self.log_dir / f"{name}.log", "ab")
        try:
            proc = subprocess.Popen(argv, stdin=stdin, stdout=log, stderr=subprocess.STDOUT,
                                    env={k: v for k, v in full.items() if v is not None}, cwd=cwd,
                                    start_new_session=True)
        finally:
            log.close()
        self.started.append((name, proc))
        return proc

    def log_tail(self, name: str, lines: int = 5) -> str:
        try:
            text = (self.log_dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def stop(self, proc: subprocess.Popen, grace: float = 5.0) -> None:
        if proc.poll() is not None:
            return
        pids = tree_pids(proc.pid)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            _signal_group(proc.pid, sig)
            for pid in pids[1:]:
                _signal_pid(pid, sig)
            try:
                proc.wait(grace)
                break
            except subprocess.TimeoutExpired:
                continue
        for pid in pids[1:]:
            _signal_pid(pid, signal.SIGKILL)

    def stop_all(self) -> None:
        while self.started:
            _, proc = self.started.pop()
            try:
                self.stop(proc)
            except Exception:  # noqa: BLE001 - keep stopping the others
                pass


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_pid(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP raise KeyboardInterrupt like SIGINT, so every
    ``finally`` that stops servers runs."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def _status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line[:5]] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


def tree_rss(root: int) -> int:
    """Current resident bytes of ``root`` and its descendants."""
    return sum(_status(pid).get("VmRSS", 0) for pid in tree_pids(root))


_TICK = os.sysconf("SC_CLK_TCK")


class RssSampler:
    """Peak resident memory and CPU time of the process trees under
    ``roots`` while a workload runs. Every ``interval`` seconds: the sum
    over the live processes of their VmHWM (peak RSS; for processes already
    running at :meth:`start` it is reset there via /proc/PID/clear_refs, so
    spikes between samples count; where the reset is refused, VmRSS), and
    each process's own user + system ticks, so that the CPU of a forked
    session (sshd, vsftpd) that ends before the workload does still counts
    (its parent may never add it to its cutime); a process that lives less
    than one interval is missed."""

    def __init__(self, roots: Callable[[], Iterable[int]], interval: float = 0.02) -> None:
        self._roots = roots
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rss_only: set[int] = set()
        self._ticks: dict[tuple[int, int], int] = {}   # (pid, start time) -> last seen own ticks
        self._base: dict[tuple[int, int], int] = {}    # the same at start()
        self._lock = threading.Lock()

    def _pids(self, table: dict[int, tuple[int, int, int]] | None = None) -> list[int]:
        return [pid for root in self._roots() for pid in tree_pids(root, table)]

    def _sample(self) -> None:
        table = _table()
        total = 0
        with self._lock:
            for pid in self._pids(table):
                if pid not in table:  # the root has exited
                    continue
                st = _status(pid)
                rss = st.get("VmRSS", 0)
                total += rss if pid in self._rss_only else max(rss, st.get("VmHWM", 0))
                _, started, ticks = table[pid]
                self._ticks[(pid, started)] = ticks
            self.peak = max(self.peak, total)

    def cpu_seconds(self) -> float:
        """CPU seconds of the trees since :meth:`start`, as of now."""
        self._sample()
        with self._lock:
            return sum(t - self._base.get(k, 0) for k, t in self._ticks.items()) / _TICK

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> "RssSampler":
        for pid in self._pids():
            try:
                with open(f"/proc/{pid}/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                self._rss_only.add(pid)
        self._sample()
        self._base = dict(self._ticks)
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self._sample()
        return self.peak
