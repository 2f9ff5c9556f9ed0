"""Build a :class:`Backend` from a mount's URL and options.

Mount URLs and what they need (options are the storage library's own):

- ``file://path``, ``memory://name``, ``slow::<url>`` (tests and demos)
- ``s3://bucket/prefix`` — s3fs: ``key``, ``secret``, ``endpoint_url``...
  (see backends.s3)
- ``sftp://user@host:port/path`` — sshfs/asyncssh: ``password``,
  ``client_keys``, ``known_hosts``, ``insecure_skip_host_key_check``...
  (see backends.sftp, backends.hostkeys)
- ``ftp://user@host:port/path`` — ``username``, ``password``, ``tls``,
  ``tls_ca_file``, ``tls_verify`` (see backends.ftp)
- ``webdav://host:port/path``, ``webdavs://...`` — ``auth`` or
  ``username``/``password``, ``tls_ca_file``, ``tls_verify``,
  ``stream_uploads`` (see backends.webdav)

**Credentials** may be written as ``${NAME}`` in the URL or in any option
string; the value comes from the environment variable NAME when the mount
opens, so secrets stay out of the config file (an unset variable is a
configuration error naming the variable). The storage libraries' own
environment conventions also apply (S3: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, profiles). Secrets are never
put in log lines or error messages: a backend keeps its URL with the
password removed.

Per remote mount (``[[mounts]]`` ``timeout_s``, ``retries``,
``cache_ttl_s``): every network call is bounded by ``timeout_s``; an
idempotent read that finds the storage unavailable is tried ``retries`` more
times (with backoff, reconnecting first); folder listings are cached for
``cache_ttl_s`` seconds and dropped on the gateway's own changes. Local,
memory and ``slow::`` mounts neither cache nor retry.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from backends.base import Backend
from backends.capabilities import for_protocol
from backends.errors import translated
from backends.local import LocalBackend
from gateway import errors as E

__all__ = ["open_backend", "check_url", "expand_env", "redact_url"]


def _fsspec() -> Any:
    """fsspec, with the ``slow::`` protocol registered. Imported on first
    need, not with this module: a gateway whose mounts are all local folders
    never loads it (nor a storage library), which keeps its resident memory
    small (tests/unit/test_lazy_storage.py)."""
    import fsspec

    import backends.slow  # noqa: F401 - registers the slow:: protocol

    return fsspec


def _local_root(url: str) -> str | None:
    """The folder a plain ``file://`` or ``local://`` URL names, absolute,
    exactly as fsspec's LocalFileSystem would strip it (POSIX); None for
    any other URL (chained, or another protocol)."""
    if "::" in url or os.sep != "/":
        return None
    for prefix in ("file://", "local://"):
        if url.startswith(prefix):
            path = url[len(prefix):]
            break
    else:
        return None
    if path.startswith("~"):
        path = os.path.expanduser(path)
    elif not path.startswith("/"):
        path = f"{os.getcwd()}/{'' if path == '.' else path.removeprefix('./')}"
    return path.rstrip("/") or "/"

log = logging.getLogger("gateway.backends")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_LOCAL = ("file", "local", "memory")


def expand_env(value: Any) -> Any:
    """``value`` with every ``${NAME}`` in its strings (recursively through
    lists and dicts) replaced by the environment variable NAME. Raises
    BadRequest naming an unset variable (never a value)."""
    if isinstance(value, str):
        def sub(m: re.Match) -> str:
            name = m.group(1)
            if name not in os.environ:
                raise E.BadRequest(f"mount option refers to ${{{name}}}, but the environment variable "
                                   f"{name} is not set")
            return os.environ[name]

        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: expand_env(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(expand_env(v) for v in value)
    return value


def redact_url(url: str) -> str:
    """``url`` without a password in its user part (for messages and logs)."""
    out = []
    for part in url.split("::"):
        try:
            p = urlsplit(part)
        except ValueError:
            out.append(part)
            continue
        if p.password is not None:
            netloc = f"{p.username}:***@" + p.netloc.rsplit("@", 1)[1]
            part = urlunsplit((p.scheme, netloc, p.path, p.query, p.fragment))
        out.append(part)
    return "::".join(out)


def check_url(url: str, options: dict[str, Any] | None = None) -> None:
    """Check a mount's URL and options without connecting: every
    ``${NAME}`` is set, every protocol of the chain is known, a network
    URL's host and port are well-formed, and a local folder is one or can be
    made. What :func:`open_backend` would
    refuse before reaching the storage. Idempotent, no side effects.

    Raises BadRequest with a message for the operator (no secrets).
    """
    url = expand_env(url)
    opts = expand_env(dict(options or {}))
    if url.split("://", 1)[0] in ("s3", "s3a"):
        from backends.s3 import gateway_options

        gateway_options(opts, 1)
    for part in url.split("::"):
        protocol = part.split("://", 1)[0] if "://" in part else part
        if protocol not in _BUILDERS and protocol not in ("file", "local"):
            try:
                _fsspec().get_filesystem_class(protocol or "file")
            except (ValueError, ImportError):
                known = sorted({*_BUILDERS, "file", "memory"})
                raise E.BadRequest(f"unknown storage protocol {protocol!r} (expected one of "
                                   f"{', '.join(known)})") from None
        if protocol in _BUILDERS and "://" in part:
            netloc = part.split("://", 1)[1].split("/", 1)[0]
            port = netloc.rsplit("@", 1)[-1].rpartition("]")[2].partition(":")[2]
            if port and not (port.isdigit() and 1 <= int(port) <= 65535):
                raise E.BadRequest(f"expected a port between 1 and 65535 after the host, got {port!r}")
            try:
                host = urlsplit(part).hostname
            except ValueError as exc:
                raise E.BadRequest(f"malformed URL ({exc})") from None
            if protocol not in ("s3", "s3a") and not host:
                raise E.BadRequest(f"expected a host name in {protocol}://[user@]host[:port]/path")
    root = _local_root(url)
    if root is not None:
        _check_local_root(Path(root))
    known_hosts = (options or {}).get("known_hosts")
    if known_hosts and url.split("::")[-1].split("://", 1)[0] in ("sftp", "ssh"):
        from backends.hostkeys import read_known_hosts

        read_known_hosts(expand_env(known_hosts))


def _check_local_root(root: Path) -> None:
    """A local mount's folder is one, or can be made (open_backend makes it):
    its nearest existing parent is a folder this process may write in."""
    if root.is_dir():
        return
    if root.exists():
        raise E.BadRequest(f"expected a folder, got {str(root)!r} (not a folder)")
    parent = root.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise E.BadRequest(f"expected a folder, got {str(root)!r} (under {str(parent)!r}, not a folder)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise E.BadRequest(f"expected a folder, got {str(root)!r} (missing, and {str(parent)!r} is not "
                           "writable to make it)")


def open_backend(url: str, options: dict[str, Any] | None = None, *, cache_ttl_s: float = 0.0,
                 timeout_s: float = 30.0, retries: int = 3, state_dir: Path | str | None = None) -> Backend:
    """Connect a mount. ``options`` are fsspec storage options (for chained
    URLs keyed by protocol, e.g. ``{"slow": {...}}``); ``${NAME}`` in the URL
    or an option string is the environment variable NAME. ``state_dir`` is
    the gateway's own folder (SFTP mounts record host keys there on first
    use, see backends.hostkeys).

    Raises BadRequest for an unknown protocol or an unset variable,
    BackendUnavailable when the storage cannot be reached, PermissionDenied
    when it refuses the credentials; creates a missing local root folder.
    """
    shown = redact_url(url)
    url = expand_env(url)
    options = expand_env(dict(options or {}))
    protocols = [p.split("://", 1)[0] if "://" in p else p for p in url.split("::")]
    target = protocols[-1] or "file"
    slow = "slow" in protocols[:-1]
    caps = for_protocol(target, slow=slow)
    remote = target not in _LOCAL and not slow  # slow:: is a test wrapper: faults it injects must show
    settings: dict[str, Any] = {"url": shown, "retries": retries if remote else 0,
                                "cache_ttl_s": cache_ttl_s if remote else 0.0}
    if target in ("sftp", "ssh") and not slow:
        settings["state_dir"] = state_dir
    local = target in ("file", "local")
    follow_links = bool(options.pop("follow_links", False)) if local else False
    builder = None if slow else _BUILDERS.get(target)
    if builder is not None:
        return builder(url, options, caps, timeout_s, settings)
    root = _local_root(url) if local and not slow and not options else None
    if root is not None:
        # LocalBackend works through the os module; fsspec's LocalFileSystem
        # is built only if a generic Backend method ever asks for it.
        backend: Backend = LocalBackend(None, root, target, caps, follow_links=follow_links,
                                        connect=lambda: _fsspec().filesystem(target), **settings)
        if not backend.exists(backend.join("")):
            backend.mkdir(backend.join(""), exist_ok=True)
        return backend
    fsspec = _fsspec()
    try:
        fsspec.get_filesystem_class(target)
    except (ValueError, ImportError) as exc:
        raise E.BadRequest(f"mount url {shown!r}: unknown storage protocol {target!r} ({exc})") from None
    with translated():
        fs, root = fsspec.core.url_to_fs(url, **options)
    if local and not slow:
        backend = LocalBackend(fs, root, target, caps, follow_links=follow_links, **settings)
    else:
        backend = Backend(fs, root, target, caps, **settings)
    if target in _LOCAL:
        backend.mkdir(backend.join(""), exist_ok=True) if not backend.exists(backend.join("")) else None
    return backend


def _flag(value: Any, name: str) -> bool:
    """A true/false mount option (a string from ``${NAME}`` too). Raises
    BadRequest for anything else."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise E.BadRequest(f"mount option {name}: expected true or false, got {value!r}")
    return value


def _connected(make: Callable[[], Any]) -> Any:
    with translated():
        return make()


def _first_connection(connect: Callable[[], Any], shown: str) -> Any:
    """The mount's first connection, or None when the server cannot be
    reached now: the gateway starts anyway and the mount connects on first
    use (refused credentials are still an error at start)."""
    try:
        return _connected(connect)
    except E.BackendUnavailable as exc:
        log.warning("mount %s is unreachable (%s); it will connect on first use", shown, exc)
        return None


def _s3(url: str, options: dict[str, Any], caps, timeout_s: float, settings: dict[str, Any]) -> Backend:
    from dataclasses import replace

    from backends.s3 import S3Backend, count_requests, gateway_options, s3_options

    options = dict(options)
    if not options.pop("etag_is_md5", True):  # e.g. SSE-KMS buckets: ETags are not MD5s
        caps = replace(caps, checksums=tuple(c for c in caps.checksums if c != "md5"))
    own = gateway_options(options, caps.copy_fan_out)
    caps = replace(caps, copy_fan_out=own.pop("copy_concurrency"))
    fsspec = _fsspec()
    fs, root = _connected(lambda: fsspec.core.url_to_fs(url, **s3_options(options, timeout_s, caps.copy_fan_out)))
    fs.retries = 1  # a class attribute in s3fs, not an option
    count_requests(fs)
    return S3Backend(fs, root, "s3", caps, **own, **settings)


def _sftp(url: str, options: dict[str, Any], caps, timeout_s: float, settings: dict[str, Any]) -> Backend:
    from dataclasses import replace

    from backends.hostkeys import HostKeyCheck
    from backends.sftp import SFTPBackend, sftp_options, supports_copy_data

    opts = sftp_options(options, timeout_s)
    parts = urlsplit(url)
    skip = _flag(opts.pop("insecure_skip_host_key_check", False), "insecure_skip_host_key_check")
    check = HostKeyCheck(parts.hostname or "localhost", parts.port or 22, known_hosts=opts.pop("known_hosts", None),
                         state_dir=settings.pop("state_dir", None), skip=skip)

    def connect() -> Any:
        try:
            return _fsspec().core.url_to_fs(url, **opts, **check.connect_options())[0]
        except Exception:
            refused = check.refused()
            if refused is not None:
                raise refused from None
            raise

    fs = _first_connection(connect, settings["url"])
    if fs is not None:
        caps = replace(caps, server_copy=_connected(lambda: supports_copy_data(fs)))
    return SFTPBackend(fs, urlsplit(url).path or "/", "sftp", caps, connect=connect, **settings)


def _ftp(url: str, options: dict[str, Any], caps, timeout_s: float, settings: dict[str, Any]) -> Backend:
    from dataclasses import replace

    from backends.ftp import FTPBackend, GatewayFTPFileSystem, settable_times

    parts = urlsplit(url)
    opts = dict(options)
    if parts.username and "username" not in opts:
        opts["username"], opts["password"] = parts.username, parts.password
    opts.setdefault("timeout", timeout_s)

    def connect() -> Any:
        return GatewayFTPFileSystem(parts.hostname or "localhost", port=parts.port or 21, **opts)

    fs = _first_connection(connect, settings["url"])
    if fs is not None:
        caps = replace(caps, mtimes=_connected(lambda: settable_times(fs)))
    return FTPBackend(fs, parts.path.rstrip("/") or "/", "ftp", caps, connect=connect, **settings)


def _webdav(url: str, options: dict[str, Any], caps, timeout_s: float, settings: dict[str, Any]) -> Backend:
    from webdav4.fsspec import WebdavFileSystem

    from backends.webdav import WebDAVBackend, webdav_target

    options = dict(options)
    stream = _flag(options.pop("stream_uploads", True), "stream_uploads")
    opts, root = webdav_target(url, options, timeout_s)
    fs = _connected(lambda: WebdavFileSystem(**opts))
    backend = WebDAVBackend(fs, root, "webdav", caps, **settings)
    backend.stream_uploads = stream
    backend.probe_mtimes()
    return backend


_BUILDERS: dict[str, Callable[..., Backend]] = {
    "s3": _s3, "s3a": _s3, "sftp": _sftp, "ssh": _sftp, "ftp": _ftp,
    "webdav": _webdav, "webdavs": _webdav, "dav": _webdav, "davs": _webdav,
}
