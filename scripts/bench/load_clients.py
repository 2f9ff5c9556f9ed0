#!/usr/bin/env python3
"""One protocol's clients for ``scripts/bench/load``, in a process of their
own (so the protocols' clients do not share one GIL, and their CPU can be
measured apart from the gateway's).

Reads one JSON line on stdin (the :class:`Spec` fields), connects the idle
clients and then the active ones, and writes ``{"event": "ready", ...}`` on
stdout. On the stdin line ``go SECONDS`` every active client runs its cycle
of small operations (upload, stat, list, download, delete of one small file
in its own folder), each after a random think time, until the window ends;
then the driver checks that the idle connections are still open (FTP
NOOP, SFTP realpath answered; HTTP connection not closed by the server), writes
``{"event": "result", ...}`` and exits. Idle clients are connections that
logged in (FTP, SFTP) or made one keep-alive request (HTTP) and then sit.

FTP clients are ftplib in threads (one per active client; idle ones hold a
socket and no thread); SFTP clients are asyncssh and HTTP clients httpx, on
one event loop. Every failure is counted and the first few are kept."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random
import resource
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ftplib import FTP
from typing import Any, Callable

OPS = ("upload", "stat", "list", "download", "delete")
#: connections opened at once while ramping up: under the gateway's default
#: limit of connections waiting to log in from one address (16 for FTP and SFTP)
CONNECT_CONCURRENCY = 8
KEPT_ERRORS = 5


@dataclass
class Spec:
    protocol: str          # ftp | sftp | webdav | rest
    port: int
    user: str
    password: str
    key: str               # SFTP client key file
    folder: str            # the active clients' folders are <folder>/c<i>
    idle: int
    active: int
    think_s: float         # mean pause before each operation (0: back to back)
    small_bytes: int
    timeout: float
    seed: int = 0


class Tally:
    """Latencies per operation and errors, shared by threads (one lock;
    appends are cheap next to a round trip)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = {op: [] for op in OPS}
        self.errors: dict[str, int] = {}
        self.first_errors: list[str] = []

    def ok(self, op: str, seconds: float) -> None:
        with self.lock:
            self.latency[op].append(round(seconds, 6))

    def error(self, where: str, exc: BaseException) -> None:
        with self.lock:
            self.errors[where] = self.errors.get(where, 0) + 1
            if len(self.first_errors) < KEPT_ERRORS:
                self.first_errors.append(f"{where}: {type(exc).__name__}: {str(exc)[:200]}")


def _think(spec: Spec, rng: random.Random) -> float:
    return rng.uniform(0.5, 1.5) * spec.think_s if spec.think_s else 0.0


# -- FTP ----------------------------------------------------------------------------------


def _ftp_login(spec: Spec) -> FTP:
    ftp = FTP()
    ftp.connect("127.0.0.1", spec.port, timeout=spec.timeout)
    ftp.login(spec.user, spec.password)
    ftp.voidcmd("TYPE I")
    return ftp


def _ftp_ops(ftp: FTP, folder: str, data: bytes) -> dict[str, Callable[[str], Any]]:
    return {
        "upload": lambda p: ftp.storbinary(f"STOR {p}", io.BytesIO(data)),
        "stat": lambda p: ftp.sendcmd(f"MLST {p}"),
        "list": lambda p: ftp.retrlines(f"MLSD {folder}", lambda line: None),
        "download": lambda p: ftp.retrbinary(f"RETR {p}", lambda b: None),
        "delete": lambda p: ftp.delete(p),
    }


def _ftp_active(spec: Spec, i: int, ftp: FTP, tally: Tally, start: threading.Event, stop: threading.Event) -> None:
    rng = random.Random(spec.seed * 100003 + i)
    folder = f"{spec.folder}/c{i}"
    ops = _ftp_ops(ftp, folder, b"f" * spec.small_bytes)
    start.wait()
    k = 0
    while not stop.is_set():
        path = f"{folder}/f{k}"
        for op in OPS:
            if stop.wait(_think(spec, rng)):
                break
            t0 = time.perf_counter()
            try:
                ops[op](path)
            except Exception as e:  # noqa: BLE001 - ftplib raises socket and reply errors alike
                tally.error(op, e)
                try:  # a broken control connection: log in again for the next operation
                    ftp.close()
                    ftp = _ftp_login(spec)
                    ops = _ftp_ops(ftp, folder, b"f" * spec.small_bytes)
                except Exception as e2:  # noqa: BLE001
                    tally.error("reconnect", e2)
                    stop.wait(1)
                continue
            tally.ok(op, time.perf_counter() - t0)
        k += 1
    try:
        ftp.quit()
    except Exception:  # noqa: BLE001 - closing is best effort
        ftp.close()


def run_ftp(spec: Spec, tally: Tally, wait_go: Callable[[], float], report: Callable[[dict], None]) -> dict:
    with ThreadPoolExecutor(CONNECT_CONCURRENCY) as pool:
        idle = _gather(pool, spec.idle, lambda _i: _ftp_login(spec), tally, "connect idle")
        active = _gather(pool, spec.active, lambda _i: _ftp_login(spec), tally, "connect active")
    report({"idle": len(idle), "active": len(active)})
    start, stop = threading.Event(), threading.Event()
    threads = [threading.Thread(target=_ftp_active, args=(spec, i, ftp, tally, start, stop), daemon=True)
               for i, ftp in enumerate(active)]
    for t in threads:
        t.start()
    window = wait_go()
    cpu0, t0 = _cpu(), time.monotonic()
    start.set()
    time.sleep(window)
    stop.set()
    cpu, elapsed = _cpu() - cpu0, time.monotonic() - t0
    for t in threads:
        t.join(spec.timeout + 5)

    def noop(ftp: FTP) -> bool:
        try:
            ftp.voidcmd("NOOP")
            return True
        finally:
            ftp.close()

    with ThreadPoolExecutor(CONNECT_CONCURRENCY) as pool:
        alive = sum(1 for ok in pool.map(lambda f: _quietly(noop, f), idle) if ok)
    return {"window_cpu_s": cpu, "window_s": elapsed, "idle_alive": alive}


def _gather(pool: ThreadPoolExecutor, n: int, make: Callable[[int], Any], tally: Tally, where: str) -> list:
    out = []
    for fut in [pool.submit(make, i) for i in range(n)]:
        try:
            out.append(fut.result())
        except Exception as e:  # noqa: BLE001
            tally.error(where, e)
    return out


def _quietly(fn: Callable[[Any], bool], arg: Any) -> bool:
    try:
        return fn(arg)
    except Exception:  # noqa: BLE001 - a dead idle connection is counted, not raised
        return False


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# -- SFTP and HTTP (asyncio) -----------------------------------------------------------------


class _Sftp:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.conn: Any = None
        self.sftp: Any = None

    async def connect(self) -> "_Sftp":
        import asyncssh

        self.conn = await asyncssh.connect("127.0.0.1", self.spec.port, username=self.spec.user,
                                           client_keys=[self.spec.key], known_hosts=None)
        self.sftp = await self.conn.start_sftp_client()
        return self

    async def op(self, op: str, folder: str, path: str, data: bytes) -> None:
        s = self.sftp
        if op == "upload":
            async with s.open(path, "wb") as f:
                await f.write(data)
        elif op == "stat":
            await s.stat(path)
        elif op == "list":
            await s.readdir(folder)
        elif op == "download":
            async with s.open(path, "rb") as f:
                await f.read()
        else:
            await s.remove(path)

    async def alive(self) -> bool:
        await self.sftp.realpath(".")
        return True

    async def close(self) -> None:
        if self.conn:
            self.conn.close()
            await self.conn.wait_closed()


def _auth_header(spec: Spec) -> str:
    return "Basic " + base64.b64encode(f"{spec.user}:{spec.password}".encode()).decode()


_TLS: Any = None


class _Http:
    """One httpx client holding one keep-alive connection."""

    def __init__(self, spec: Spec) -> None:
        import ssl

        import httpx

        global _TLS
        if _TLS is None:  # unused over plain HTTP, but httpx builds one per client otherwise (~10 ms each)
            _TLS = ssl.create_default_context()
        self.spec = spec
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{spec.port}", timeout=spec.timeout, verify=_TLS,
                                      headers={"Authorization": _auth_header(spec)},
                                      limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))

    async def connect(self) -> "_Http":
        # One request opens and authenticates the connection, which then stays open.
        await self._check(self.http.request("OPTIONS", "/dav/"), 200)
        return self

    @staticmethod
    async def _check(call: Any, *ok: int) -> None:
        r = await call
        if r.status_code not in ok:
            raise RuntimeError(f"{r.request.method} {r.request.url.path} answered {r.status_code}: {r.text[:120]}")

    async def op(self, op: str, folder: str, path: str, data: bytes) -> None:
        h, c = self.http, self._check
        if self.spec.protocol == "webdav":
            if op == "upload":
                await c(h.put(f"/dav{path}", content=data), 201, 204)
            elif op == "stat":
                await c(h.request("PROPFIND", f"/dav{path}", headers={"Depth": "0"}), 207)
            elif op == "list":
                await c(h.request("PROPFIND", f"/dav{folder}/", headers={"Depth": "1"}), 207)
            elif op == "download":
                await c(h.get(f"/dav{path}"), 200)
            else:
                await c(h.delete(f"/dav{path}"), 204)
            return
        if op == "upload":
            await c(h.put("/api/v1/fs/content", params={"path": path}, content=data), 200, 201)
        elif op == "stat":
            await c(h.get("/api/v1/fs/stat", params={"path": path}), 200)
        elif op == "list":
            await c(h.get("/api/v1/fs/list", params={"path": folder}), 200)
        elif op == "download":
            await c(h.get("/api/v1/fs/content", params={"path": path}), 200)
        else:
            await c(h.post("/api/v1/fs/delete", json={"path": path}), 200)

    async def alive(self) -> bool:
        """Whether the connection opened at the start is still open (a server
        may close idle keep-alive connections; a new request would just open
        another)."""
        try:
            connections = self.http._transport._pool.connections  # httpx and httpcore internals
        except AttributeError:
            await self._check(self.http.request("OPTIONS", "/dav/"), 200)
            return True
        return any(not c.is_closed() and not c.has_expired() for c in connections)

    async def close(self) -> None:
        await self.http.aclose()


async def _async_active(spec: Spec, i: int, client: Any, tally: Tally, start: asyncio.Event,
                        stop: asyncio.Event) -> None:
    rng = random.Random(spec.seed * 100003 + i)
    folder = f"{spec.folder}/c{i}"
    data = b"f" * spec.small_bytes
    await start.wait()
    k = 0
    while not stop.is_set():
        path = f"{folder}/f{k}"
        for op in OPS:
            pause = _think(spec, rng)
            if pause:
                try:
                    await asyncio.wait_for(stop.wait(), pause)
                    break
                except asyncio.TimeoutError:
                    pass
            if stop.is_set():
                break
            t0 = time.perf_counter()
            try:
                await asyncio.wait_for(client.op(op, folder, path, data), spec.timeout)
            except Exception as e:  # noqa: BLE001 - asyncssh, httpx and time-outs alike
                tally.error(op, e)
                continue
            tally.ok(op, time.perf_counter() - t0)
        k += 1


async def run_async(spec: Spec, tally: Tally, wait_go: Callable[[], float], report: Callable[[dict], None]) -> dict:
    make = _Sftp if spec.protocol == "sftp" else _Http
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect(where: str) -> Any:
        async with gate:
            client = make(spec)
            try:
                return await asyncio.wait_for(client.connect(), spec.timeout)
            except Exception as e:  # noqa: BLE001
                tally.error(where, e)
                await _aquiet(client.close())
                return None

    idle = [c for c in await asyncio.gather(*(connect("connect idle") for _ in range(spec.idle))) if c]
    active = [c for c in await asyncio.gather(*(connect("connect active") for _ in range(spec.active))) if c]
    report({"idle": len(idle), "active": len(active)})
    start, stop = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(_async_active(spec, i, c, tally, start, stop)) for i, c in enumerate(active)]
    window = await asyncio.get_running_loop().run_in_executor(None, wait_go)
    cpu0, t0 = _cpu(), time.monotonic()
    start.set()
    await asyncio.sleep(window)
    stop.set()
    cpu, elapsed = _cpu() - cpu0, time.monotonic() - t0
    await asyncio.wait(tasks, timeout=spec.timeout + 5)

    async def alive(c: Any) -> bool:
        async with gate:
            try:
                return await asyncio.wait_for(c.alive(), spec.timeout)
            except Exception:  # noqa: BLE001 - a dead idle connection is counted, not raised
                return False

    alive_n = sum(await asyncio.gather(*(alive(c) for c in idle)))
    await asyncio.gather(*(_aquiet(c.close()) for c in idle + active))
    return {"window_cpu_s": cpu, "window_s": elapsed, "idle_alive": alive_n}


async def _aquiet(coro: Any) -> None:
    try:
        await asyncio.wait_for(coro, 10)
    except Exception:  # noqa: BLE001 - closing is best effort
        pass


# -- the driver -------------------------------------------------------------------------------


def _emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def main() -> int:
    spec = Spec(**json.loads(sys.stdin.readline()))
    tally = Tally()
    t_ready = time.monotonic()

    def report(connected: dict) -> None:
        _emit("ready", connected=connected, connect_s=round(time.monotonic() - t_ready, 3),
              errors=dict(tally.errors), first_errors=list(tally.first_errors))

    def wait_go() -> float:
        line = sys.stdin.readline().split()
        if not line or line[0] != "go":
            raise SystemExit("load_clients: expected 'go SECONDS' on stdin")
        return float(line[1])

    if spec.protocol == "ftp":
        out = run_ftp(spec, tally, wait_go, report)
    else:
        out = asyncio.run(run_async(spec, tally, wait_go, report))
    _emit("result", **out, latency=tally.latency, errors=tally.errors, first_errors=tally.first_errors,
          total_cpu_s=_cpu())
    return 0


if __name__ == "__main__":
    sys.exit(main())
