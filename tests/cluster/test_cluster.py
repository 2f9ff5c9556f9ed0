"""Three gateway nodes on one PostgreSQL store, over shared local folders,
with HAProxy in front (see cluster_harness)."""

from __future__ import annotations

import httpx
import pytest

from cluster_harness import LB_ADDR, cluster, pg_database  # noqa: F401 - fixtures

pytestmark = pytest.mark.timeout(120)


def test_nodes_start_together_and_are_ready_behind_haproxy(cluster):
    a, b, c = cluster.start(3)
    for node in (a, b, c):
        r = httpx.get(f"{node.url}/readyz")
        assert r.status_code == 200 and r.json()["node"] == node.name, r.text
        assert httpx.get(f"{node.url}/healthz").json() == {"status": "ok", "node": node.name}
    lb = cluster.haproxy()
    seen = {httpx.get(f"http://{LB_ADDR}:{lb['http']}/healthz").json()["node"] for _ in range(6)}
    assert seen == {"a", "b", "c"}
