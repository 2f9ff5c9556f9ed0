"""gateway serve: first-start admin, front ends up, clean stop on signals."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import free_port
from gateway.auth import Authenticator
from gateway.config import load_config

REPO = Path(__file__).resolve().parents[2]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def serve(config: Path, sig: signal.Signals) -> tuple[int, str, str]:
    port = load_config(config).http.port
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
        cwd=config.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )
    try:
        wait_for_port(port, proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def test_serve_bootstraps_admin_once_and_stops_cleanly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths in the config are relative to the working directory
    (tmp_path / "data").mkdir()
    config = tmp_path / "gateway.toml"
    port = free_port()
    config.write_text(
        "[server]\nstate_dir = 'var'\n"
        "[ftp]\nenabled = false\n[sftp]\nenabled = false\n"
        f"[http]\nport = {port}\n"
        f"[[mounts]]\npath = '/'\nurl = 'file://{tmp_path / 'data'}'\n"
    )

    code, out, err = serve(config, signal.SIGTERM)
    assert code == 0, err
    match = re.fullmatch(r"created user admin with password: (\S+)\n", out)
    assert match, out
    assert f"http listening on 127.0.0.1:{port}" in err
    password = match[1]
    users_file = (tmp_path / "var" / "users.toml").read_text()
    assert password not in users_file

    code, out, err = serve(config, signal.SIGINT)
    assert code == 0, err
    assert out == ""  # printed once, on the first start only

    cfg = load_config(config)
    assert cfg.server.state_dir == tmp_path / "var"
    assert Authenticator.from_config(cfg).login_password("admin", password, "127.0.0.1").admin


def test_logins_on_many_threads_give_their_memory_back():
    """Each argon2 check maps its memory cost (7 MiB; 19 MiB before); the gateway's threads
    must not keep it (glibc's floating mmap threshold made twelve threads
    hold ~230 MiB)."""
    probe = """
import threading
from gateway.server import tune_malloc
assert tune_malloc()
from gateway.auth import hash_password, _hasher
rss = lambda: int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) // 1024
h = hash_password('pw')
before = rss()
threads = [threading.Thread(target=lambda: [_hasher.verify(h, 'pw') for _ in range(3)]) for _ in range(12)]
[t.start() for t in threads]
[t.join() for t in threads]
print(rss() - before)
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert int(out.stdout) < 40, f"{out.stdout.strip()} MiB kept after 36 logins on 12 threads"


def test_a_running_gateway_gives_freed_memory_back(tmp_path):
    """Memory freed on a worker thread (an upload's buffers, a large listing)
    stays in glibc's arena until trimmed: the running gateway trims it."""
    config = tmp_path / "gateway.toml"
    config.write_text(f"[server]\nstate_dir = '{tmp_path / 'var'}'\n"
                      "[ftp]\nenabled = false\n[sftp]\nenabled = false\n[http]\nenabled = false\n"
                      f"[[mounts]]\npath = '/'\nurl = 'file://{tmp_path}'\n")
    probe = f"""
import threading, time
import gateway.server as server
from gateway.config import load_config
server.TRIM_EVERY_S = 0.1
rss = lambda: int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) // 1024
stop = threading.Event()
def work():
    time.sleep(1)  # the gateway is up, its malloc tuned
    held = [bytes(2000) for _ in range(50_000)]  # 100 MB in blocks below the mmap threshold
    freed_at = rss()
    del held
    time.sleep(1)
    print(freed_at, rss())
    stop.set()
threading.Thread(target=work).start()
raise SystemExit(server.run(load_config({str(config)!r}), stop))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    peak, later = map(int, out.stdout.splitlines()[-1].split())  # after the admin password line
    assert peak - later > 60, f"{peak} MiB with 100 MB held, {later} MiB a second after it was freed"


def test_busy_threads_share_two_malloc_arenas():
    """glibc gives each thread its own arena (up to 8 per core), each keeping
    what was freed in it; the gateway caps them at two."""
    probe = """
import ctypes, threading
from gateway.server import ARENA_MAX, tune_malloc
assert tune_malloc()
def work():
    for _ in range(200):
        blocks = [bytearray(64 << 10) for _ in range(8)]
        del blocks
threads = [threading.Thread(target=work) for _ in range(16)]
[t.start() for t in threads]
[t.join() for t in threads]
ctypes.CDLL("libc.so.6").malloc_stats()
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    arenas = [line for line in out.stderr.splitlines() if line.startswith("Arena ")]
    assert 1 <= len(arenas) <= 2, out.stderr
