"""``gateway serve``: one process running the core and every enabled front end.

Each front end is a module ``protocols.<name>`` exposing
``serve(gw, cfg) -> handle`` (the handle has ``close()`` and may have
``address``, a ``(host, port)`` it listens on). The core is built by
``gateway.app.Gateway.from_config``.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import re
import signal
import threading
from types import ModuleType
from typing import TYPE_CHECKING, Any

from gateway import memory

if TYPE_CHECKING:
    from gateway.config import Config

__all__ = ["run", "FRONT_ENDS"]

log = logging.getLogger("gateway.server")

#: Allocations from this size up get their own mapping, returned to the
#: system when freed (glibc's M_MMAP_THRESHOLD). glibc's default threshold
#: floats up to 32 MiB after the first large free, after which each thread's
#: arena kept the 19 MiB of every argon2 check it had made: twelve threads
#: held 230 MiB. Fixed at 4 MiB, the 1 MiB transfer blocks stay in the arenas
#: and reuse their memory while argon2's is handed back at once.
MMAP_THRESHOLD = 4 << 20

#: glibc malloc arenas (M_ARENA_MAX). By default each of the gateway's ~50
#: threads may get its own, up to 8 per core, each keeping freed memory for
#: itself; the GIL serialises most allocations anyway, so two arenas cost no
#: speed and lowered the benchmark's peaks by ~10 MiB.
ARENA_MAX = 2


#: How often the main thread gives memory freed since (an upload's buffers,
#: a large listing) back to the system with glibc's malloc_trim. Freed arena
#: memory otherwise stays in the process: after a burst of SFTP uploads it
#: kept 30-60 MiB it no longer used. A trim takes about a millisecond.
TRIM_EVERY_S = 5.0


def tune_malloc() -> bool:
    """Fix glibc's mmap threshold and arena count (see MMAP_THRESHOLD,
    ARENA_MAX) before the front ends start their threads; False where the C
    library is not glibc."""
    libc = memory.libc()
    # -3: M_MMAP_THRESHOLD, -8: M_ARENA_MAX
    return libc is not None and bool(libc.mallopt(-3, MMAP_THRESHOLD)) and bool(libc.mallopt(-8, ARENA_MAX))


#: (config section, module) of each front end, in start order.
FRONT_ENDS = (("ftp", "protocols.ftp"), ("sftp", "protocols.sftp"), ("http", "protocols.http"))


def run(cfg: "Config", stop: threading.Event | None = None, new_store: bool = False) -> int:
    """Build the gateway, start the enabled front ends and block until
    SIGINT/SIGTERM (or until ``stop`` is set, for callers in a thread), then
    close the front ends and the core. Returns the exit code: 0 after a clean
    stop, 1 when the core or a front end could not start for an unforeseen
    reason (traceback logged), 2 when state the config points to is invalid
    or a front end cannot listen (one line logged: front end, address,
    cause) or lacks a file. The first-start admin password is printed once every front end
    listens. ``new_store`` as in :meth:`gateway.app.Gateway.build`. Never raises.
    """
    from gateway.app import Gateway
    from gateway.config import ConfigError
    from gateway.logs import flush_repeated

    stop = stop or threading.Event()
    tune_malloc()
    try:
        gw = Gateway.from_config(cfg, new_store=new_store)
    except ConfigError as e:  # e.g. a hand-edited state_dir/users.toml
        log.error("%s", e)
        return 2
    except Exception:
        log.exception("the gateway could not be built from the config")
        return 1
    handles: list[tuple[str, Any]] = []
    restore = _install_signal_handlers(stop)
    previous_hook, threading.excepthook = threading.excepthook, _log_thread_exception
    try:
        gw.start()  # raises the open-files limit too
        log.info("open-files limit %d, %d kept in reserve", gw.descriptors.limit(), cfg.server.descriptor_reserve)
        for section, module_name in FRONT_ENDS:
            if not getattr(cfg, section).enabled:
                continue
            module = _import_front_end(module_name)
            if module is None:
                continue
            address = _hostport(cfg.server.host, getattr(cfg, section).port)
            try:
                handle = module.serve(gw, cfg)
            except OSError as e:  # the port is taken, the address is not ours, a file it needs
                if e.filename:
                    log.error("%s: cannot start: %s: %s", section, e.filename, _cause(e))
                else:
                    log.error("%s: cannot listen on %s: %s", section, address, _cause(e))
                return 2
            except Exception:
                log.exception("%s front end failed to start", section)
                return 1
            handles.append((section, handle))
            host, port = getattr(handle, "address", None) or (cfg.server.host, getattr(cfg, section).port)
            log.info("%s listening on %s", section, _hostport(host, port))
        if not handles:
            log.warning("no front end is running; check the enabled flags in the config")
        # Only once every front end listens, so a failed start never shows
        # a password that was not kept.
        password = gw.auth.ensure_admin()
        if password:
            print(f"created user admin with password: {password}", flush=True)
        log.info("gateway ready (node %s, state in %s)", cfg.server.node_id, cfg.server.state_dir)
        # What exists by now (modules, the core, the front ends) lives as long
        # as the process: left out of the collector's full passes, which
        # walked all of it again and again (a 20,000-entry PROPFIND spent
        # ~0.4 of its ~4 µs of CPU per entry there).
        gc.collect()
        gc.freeze()
        while not stop.wait(TRIM_EVERY_S):
            memory.trim()
            flush_repeated()
        log.info("stopping")
        return 0
    except Exception:
        log.exception("gateway failed")
        return 1
    finally:
        for section, handle in reversed(handles):
            try:
                handle.close()
            except Exception:
                log.exception("closing the %s front end failed", section)
        try:
            gw.close()
        except Exception:
            log.exception("closing the gateway failed")
        restore()
        threading.excepthook = previous_hook


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    """Uncaught exceptions of threads (a library's connection thread) go to
    the log, rate-limited like every error, instead of raw to stderr."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    log.error("uncaught exception in thread %s", name,
              exc_info=(args.exc_type, args.exc_value, args.exc_traceback))  # type: ignore[arg-type]


def _import_front_end(name: str) -> ModuleType | None:
    """The front end module, or None (with a warning) when it does not exist
    yet or has no ``serve``. Errors inside an existing module propagate."""
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name in (name, name.rpartition(".")[0]):
            log.warning("front end %s is not available; skipping it", name)
            return None
        raise
    if not callable(getattr(module, "serve", None)):
        log.warning("front end %s has no serve(gw, cfg); skipping it", name)
        return None
    return module


def _install_signal_handlers(stop: threading.Event) -> Any:
    """Make SIGINT/SIGTERM set ``stop``; returns a function restoring the old
    handlers. Outside the main thread signals cannot be caught: no-op."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: object) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    for sig in previous:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def _cause(e: OSError) -> str:
    """``address already in use`` rather than ``[Errno 98] Address already in
    use``; cheroot keeps the errno only in its message."""
    code = e.errno or next((int(m) for m in re.findall(r"\[Errno (\d+)\]", str(e))), None)
    text = os.strerror(code) if code else str(e)
    return text[:1].lower() + text[1:]


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
