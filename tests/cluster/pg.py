"""Helpers for tests of several nodes on this machine's PostgreSQL
(127.0.0.1:5432, trust): a database of its own per test, dropped after it
(cluster_harness makes its clusters' the same way),
and a few things done to the server from outside (cut a node's listener,
refuse new connections, restart it)."""

from __future__ import annotations

import subprocess
import uuid
from contextlib import contextmanager
from typing import Iterator

import pytest
import sqlalchemy as sa
from conftest import wait_until

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def create_database() -> tuple[str, str]:
    """A new, empty database on 127.0.0.1:5432: (its SQLAlchemy URL, the
    gateway's ``[jobs] store`` URL)."""
    name = f"gw_cluster_{uuid.uuid4().hex[:8]}"
    admin_sql(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", f"postgresql://postgres@127.0.0.1:5432/{name}"


def drop_database(url: str) -> None:
    """Drop ``url``'s database (either form of URL), its connections forced
    out; waits up to 60 s for a server coming back from a restart, then
    raises AssertionError. Idempotent."""
    name = url.rsplit("/", 1)[1]

    def dropped() -> bool:
        try:
            admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return True
        except sa.exc.OperationalError:
            return False

    wait_until(dropped, 60, f"PostgreSQL to drop {name}", step=0.5)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """``postgresql://...`` of a new, empty database (a config's
    ``jobs.store``), dropped after the test."""
    url = create_database()[1]
    yield url
    drop_database(url)


def admin_sql(sql: str) -> None:
    """Run ``sql`` on the server as postgres (autocommit)."""
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.exec_driver_sql(sql)
    finally:
        admin.dispose()


@contextmanager
def database_unreachable(url: str) -> Iterator[None]:
    """Within the block nobody can connect to ``url``'s database and every
    connection to it but the store pools' idle ones is cut: what a node
    sees when its network to PostgreSQL fails."""
    name = url.rsplit("/", 1)[1]
    admin_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        admin_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  f"WHERE datname = '{name}' AND left(application_name, 11) = 'gateway-bus'")
        yield
    finally:
        admin_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def restart_postgresql() -> None:
    """Restart this machine's PostgreSQL 15 cluster (``pg_ctlcluster``)
    and wait until it accepts connections again. Every test on this server
    sees it for a second or two."""
    subprocess.run(["pg_ctlcluster", "15", "main", "restart"], check=True, timeout=120)
    wait_until(_accepts, 60, "PostgreSQL to accept connections after the restart")


def _accepts() -> bool:
    try:
        admin_sql("SELECT 1")
        return True
    except sa.exc.OperationalError:
        return False
