"""The composition root: mounts, job store, dispatcher, view and operations
wired together once, for ``gateway serve`` and for tests."""

from __future__ import annotations

import logging
import socket
import stat
from pathlib import Path
from typing import Any

from backends import open_backend
from backends.registry import redact_url
from gateway.auth import CachedLogins
from gateway.bus import Bus, Change, LocalBus
from gateway.descriptors import DescriptorGuard, raise_limit
from gateway.errors import GatewayError
from gateway.health import Readiness
from gateway.jobs.dispatcher import EmbeddedDispatcher
from gateway.jobs.runner import JobRunner, RunnerSettings
from gateway.jobs.store import JobStore, SchemaTooNew
from gateway.namespace import Mount, Namespace, normalise, set_name_form
from gateway.nodes import NodeIdInUse, NodeRegistry
from gateway.ops import Limits, Operations, Policy
from gateway.private import create_private, private_dir
from gateway.sweep import Sweeper
from gateway.view import View

__all__ = ["Gateway"]

log = logging.getLogger("gateway.server")

DEFAULT_QUEUES = {"copy": 4, "move": 4, "delete": 4}
DEFAULT_DESCRIPTOR_RESERVE = 64


class Gateway:
    """Everything a front end needs: ``ops`` (the operations core) and ``auth``."""

    def __init__(self, namespace: Namespace, store: JobStore, dispatcher: EmbeddedDispatcher, ops: Operations,
                 auth: Any = None, config: Any = None, state_dir: Path | None = None,
                 sweeper: Sweeper | None = None, descriptors: DescriptorGuard | None = None,
                 nodes: NodeRegistry | None = None, bus: Bus | None = None) -> None:
        self.namespace = namespace
        self.store = store
        self.dispatcher = dispatcher
        self.ops = ops
        self.auth = auth
        #: Password logins for every protocol: a success is remembered for a
        #: minute, so clients that log in per connection or per request
        #: (lftp's parallel transfers, HTTP Basic) skip the argon2 check.
        self.logins = CachedLogins(auth) if auth is not None else None
        self.config = config
        self.state_dir = state_dir
        #: Removes abandoned temporaries from the mounts (None: never).
        self.sweeper = sweeper
        #: Admission of new connections against the descriptor limit.
        self.descriptors = descriptors or DescriptorGuard(DEFAULT_DESCRIPTOR_RESERVE)
        #: This node's row in the store's ``nodes`` table (heartbeat, drain flag).
        self.nodes = nodes
        #: What ``/readyz`` checks; other parts add theirs (``readiness.add``).
        self.readiness = Readiness()
        self.readiness.add("store", store.ping)
        self.readiness.add("workers", dispatcher.health)
        self.readiness.add("draining", lambda: "draining: claiming no new jobs" if dispatcher.draining else None)
        if nodes is not None:
            self.readiness.add("heartbeat", nodes.health)
        #: What this node changed, told to the other nodes, and theirs applied here.
        self.bus: Bus = bus or dispatcher.bus
        self.bus.listeners.on_change.append(self._apply)
        self.bus.listeners.on_reset.append(self._forget_all)
        if not isinstance(self.bus, LocalBus):
            self.readiness.add("listener", lambda: None if self.bus.trusted else
                               "not listening to the other nodes' changes: caches distrusted")

    @property
    def node(self) -> str:
        """This node's id (``[server] node_id``)."""
        return self.dispatcher.node

    def _apply(self, change: Change) -> None:
        """Another node's change: drop what this node cached of it (the
        bus's thread; the job workers' wake-ups are the dispatcher's)."""
        mounts = {m.path: m.backend for m in self.namespace.mounts}
        for path, changed in change.paths.items():
            backend = mounts.get(path)
            if backend is None:
                continue
            for p in changed if changed is not None else (None,):
                backend.forget(p)
        if change.jobs:
            self.store.touch()
        if change.users:
            self._forget_users()

    def _forget_all(self) -> None:
        """The bus is back after a gap: anything may have changed."""
        for m in self.namespace.mounts:
            m.backend.forget(None)
        self.store.touch()
        self._forget_users()

    def _forget_users(self) -> None:
        if self.auth is not None and hasattr(self.auth, "reload"):  # read again at the next lookup
            self.auth.reload()
        if self.logins is not None:
            self.logins.clear()

    @classmethod
    def build(cls, mounts: dict[str, str | tuple], state_dir: Path | str, *,
              store_url: str | None = None, budget_s: float = 2.0, per_protocol: dict[str, float] | None = None,
              queues: dict[str, int] | None = None, node: str | None = None, heartbeat_s: float = 0.25,
              stall_after_s: float = 30.0, stalled_after_s: float = 600.0, max_attempts: int = 5,
              step_retries: int = 3,
              retry_backoff_s: float = 0.2, monitor_ttl_s: float = 3600.0, keep_finished_s: float = 86400.0,
              policy: Any = None, auth: Any = None, config: Any = None,
              limits: Limits = Limits(), sweep_interval_s: float = 0.0, temp_grace_s: float = 3600.0,
              descriptor_reserve: int = DEFAULT_DESCRIPTOR_RESERVE, new_store: bool = False,
              safety_poll_s: float = 10.0) -> "Gateway":
        """A gateway over ``mounts`` ({virtual path: url or (url, options)});
        the job store lives in ``state_dir`` unless ``store_url`` says
        otherwise. ``sweep_interval_s`` > 0 sweeps abandoned temporaries
        older than ``temp_grace_s`` at start and that often (gateway.sweep);
        front ends refuse connections that would leave fewer than
        ``descriptor_reserve`` descriptors (gateway.descriptors).
        ``new_store`` makes an empty SQLite job store where one existed and
        is missing (else that is a ConfigError). Raises ConfigError too when
        another running node uses ``node``, or a mount cannot be opened (a
        local folder that cannot be made). On a PostgreSQL store the nodes
        tell each other their changes by LISTEN/NOTIFY (gateway.bus); idle
        workers look in the store every ``safety_poll_s`` besides. Not
        started: call :meth:`start`."""
        state_dir = private_dir(state_dir)
        mode = stat.S_IMODE(state_dir.stat().st_mode)
        if mode & 0o077:  # made by an older version, or by hand: left alone, but said
            log.warning("state_dir %s may be read by other local users (mode %o); chmod 700 it", state_dir, mode)
        table = []
        for path, spec in mounts.items():
            # url, (url, options) or (url, options, {timeout_s, retries, cache_ttl_s})
            url, options, settings = (spec, {}, {}) if isinstance(spec, str) else (*spec, {})[:3]
            try:
                backend = open_backend(url, options, **settings, state_dir=state_dir)
            except GatewayError as e:  # a local folder it cannot make (remote mounts connect on first use)
                from gateway.config import ConfigError

                raise ConfigError(f"mount {path} ({redact_url(url)}): cannot open it: {e}") from None
            table.append(Mount(normalise(path), backend))
        namespace = Namespace(table)
        store = _open_store(store_url, state_dir, new_store)
        bus = _open_bus(store)
        if not isinstance(bus, LocalBus):
            store.publish = bus.publish
            for m in namespace.mounts:
                m.backend.on_change = _announcer(bus, m.path)
                m.backend.cache_trusted = lambda: bus.trusted
        runner = JobRunner(store, namespace, RunnerSettings(heartbeat_s=heartbeat_s, step_retries=step_retries,
                                                            retry_backoff_s=retry_backoff_s,
                                                            max_attempts=max_attempts))
        dispatcher = EmbeddedDispatcher(store, runner, queues or dict(DEFAULT_QUEUES), node or socket.gethostname(),
                                        stall_after_s=stall_after_s, stalled_after_s=stalled_after_s,
                                        max_attempts=max_attempts,
                                        retry_backoff_s=retry_backoff_s, keep_finished_s=keep_finished_s,
                                        safety_poll_s=safety_poll_s, bus=bus)
        ops = Operations(namespace, store, dispatcher, View(store, lambda: bus.trusted),
                         policy or Policy(budget_s, per_protocol), monitor_ttl_s, limits)
        ops.remote_stamp = bus.stamp
        runner.having_ids = ops.fileids.having_ids
        sweeper = Sweeper(namespace, store, temp_grace_s, sweep_interval_s) if sweep_interval_s > 0 else None
        registry = NodeRegistry(store, dispatcher.node, dispatcher, interval_s=max(heartbeat_s, 0.5))
        try:
            if not store.sqlite:  # a shared store: before any worker takes "its own" running jobs back
                registry.check_unique()
        except NodeIdInUse as e:
            from gateway.config import ConfigError

            store.close()
            raise ConfigError(str(e)) from None
        return cls(namespace, store, dispatcher, ops, auth=auth, config=config, state_dir=state_dir,
                   sweeper=sweeper, descriptors=DescriptorGuard(descriptor_reserve), nodes=registry, bus=bus)

    @classmethod
    def from_config(cls, cfg: Any, new_store: bool = False) -> "Gateway":
        """The gateway a validated config describes (see gateway.config);
        ``new_store`` as in :meth:`build`."""
        from gateway.auth import Authenticator
        from gateway.bans import StoredBans
        from gateway.userstore import StoredUsers

        set_name_form(cfg.server.unicode_normalization)
        state_dir = Path(cfg.server.state_dir)
        mounts: dict[str, str | tuple] = {
            m.path: (m.url, dict(m.options), {"timeout_s": m.timeout_s, "retries": m.retries,
                                              "cache_ttl_s": m.cache_ttl_s})
            for m in cfg.mounts}
        j = cfg.jobs
        gw = cls.build(
            mounts, state_dir, store_url=j.url(state_dir), policy=cfg.policy,
            queues={q.name: q.workers for q in j.queues}, node=cfg.server.node_id,
            heartbeat_s=j.heartbeat_s, stall_after_s=j.stall_after_s, stalled_after_s=j.stalled_after_s,
            max_attempts=j.max_attempts,
            step_retries=j.step_retries, retry_backoff_s=j.retry_backoff_ms / 1000.0,
            monitor_ttl_s=j.monitor_token_ttl_s, keep_finished_s=j.keep_finished_s, config=cfg,
            limits=Limits(property_bytes=cfg.http.max_property_bytes,
                          resource_property_bytes=cfg.http.max_resource_property_bytes),
            sweep_interval_s=cfg.server.sweep_interval_s, temp_grace_s=cfg.server.temp_grace_s,
            descriptor_reserve=cfg.server.descriptor_reserve, new_store=new_store,
            safety_poll_s=j.safety_poll_s,
        )
        # With PostgreSQL the users live in the store: shared by every node; a change commits
        # with its notice to the other nodes (gateway.userstore).
        gw.auth = Authenticator.from_config(cfg, engine=gw.store.engine)
        storage = gw.auth.storage
        if isinstance(storage, StoredUsers):
            storage.trusted = lambda: gw.bus.trusted
            storage.origin = getattr(gw.bus, "origin", storage.origin)  # this node skips its own notices
        # Bans in the job store: one earned on any node holds on every node, and across restarts.
        gw.auth.bans = StoredBans(gw.store.engine, cfg.auth)
        gw.auth.audit = gw.ops.audit = cfg.logging.audit
        gw.auth.on_change = lambda users: gw.namespace.fence_homes(u.home for u in users)
        gw.auth.on_change(gw.auth.all())
        gw.logins = CachedLogins(gw.auth)
        return gw

    def start(self) -> "Gateway":
        """Raise the process's open-files limit (gateway.descriptors), read
        the overlays once (SQLAlchemy compiles that query on first use, ~25
        ms: paid here, not by the first client request, which the SFTP front
        end would take for a slow disk), start the job workers, this node's
        heartbeat and the sweep."""
        raise_limit()
        self.ops.view.overlays()
        self.bus.start()
        self.dispatcher.start()
        if self.nodes is not None:
            self.nodes.start()
        if self.sweeper is not None:
            self.sweeper.start()
        return self

    def close(self) -> None:
        if self.sweeper is not None:
            self.sweeper.close()
        self.dispatcher.close()
        if self.nodes is not None:
            self.nodes.close()
        self.bus.close()
        self.store.close()
        self.descriptors.close()

    def __enter__(self) -> "Gateway":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def _open_bus(store: JobStore) -> Bus:
    """LISTEN/NOTIFY between the nodes of a PostgreSQL store; nobody to
    tell for the embedded SQLite one (psycopg is then never imported)."""
    if store.sqlite:
        return LocalBus()
    from gateway.jobs.pgbus import PgBus

    return PgBus(store.url)


def _announcer(bus: Bus, mount: str) -> Any:
    """A backend's ``on_change``: publish its changed path under ``mount``."""
    def announce(path: str | None) -> None:
        change = Change()
        change.add_path(mount, path)
        bus.publish(change)

    return announce


def _open_store(store_url: str | None, state_dir: Path, new_store: bool = False) -> JobStore:
    """The job store (default: ``state_dir/jobs.db``). Making the SQLite
    file leaves :data:`gateway.preflight.STORE_MARKER` in ``state_dir``; a
    missing file next to the marker means the store existed and is gone,
    which is an error unless ``new_store`` (then a warning, and an empty
    store is made: every earlier job is forgotten).

    Raises ConfigError (one line naming the file or URL and the cause) when
    the store cannot be opened, e.g. a corrupt or missing file, or holds a
    schema newer than this version knows.
    """
    from gateway.config import ConfigError
    from gateway.preflight import STORE_MARKER, check_store_file, store_error

    db = state_dir / "jobs.db"
    url = store_url or f"sqlite:///{db}"
    where: object = url.split("@")[-1] if "@" in url else url
    marker = state_dir / STORE_MARKER if url == f"sqlite:///{db}" else None
    if marker is not None:
        where = db
        check_store_file(db, new_store)
        if not db.exists() and marker.exists():
            log.warning("%s: the job store is missing; starting an empty one as --new-store asks: every "
                        "earlier job is forgotten", db)
    try:
        store = JobStore(url)
    except SchemaTooNew as e:  # a newer gateway migrated it: not a broken store
        raise ConfigError(str(e)) from None
    except Exception as e:  # the driver's own error: sqlite3/psycopg, through SQLAlchemy
        cause = str(getattr(e, "orig", None) or e).strip() or type(e).__name__
        raise ConfigError(store_error(where, cause.splitlines()[0])) from None
    if marker is not None:
        create_private(marker)
    return store
