"""Three gateway processes on one PostgreSQL store, over shared local
folders (``/`` and a ``slow::`` mount at ``/slow``: a 40-file job lasts ~5 s)
and a moto S3 bucket (``/s3``), with HAProxy in front for HTTP, SFTP and
FTP (see cluster_harness): one job seen and
controlled from every node, a node lost mid-job, a node that comes back
after its job was taken, state shared between nodes, and the operations
commands."""

from __future__ import annotations

import ftplib
import hashlib
import json
import re
import time
from pathlib import Path

import asyncio
import asyncssh
import httpx
import pytest
import sqlalchemy as sa

from cluster_harness import LB_ADDR, PASSWORDS, create_database, drop_database, module_cluster  # noqa: F401
from conftest import wait_until

pytestmark = pytest.mark.timeout(120)

FILES = 40
STALL_S = 2.0


@pytest.fixture(scope="module")
def nodes(module_cluster):
    """Nodes a, b and c, started together (so their schema migration
    races), with HAProxy in front; the tests below run in order on them."""
    module_cluster.start_s3()
    module_cluster.start(3, stall_after_s=STALL_S,
                         sections={"policy": {"sync_budget_ms": 100}, "auth": {"max_failures": 3, "ban_s": 600},
                                   # FTP through the balancer: each node announces its address
                                   "ftp": {"masquerade_address": LB_ADDR}})
    module_cluster.haproxy()
    return module_cluster


def make_tree(root: Path, n: int = FILES) -> dict[str, str]:
    """``n`` files under ``root`` in a few folders; their sha256 manifest."""
    for i in range(n):
        p = root / f"d{i % 4}" / f"f{i:03}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(f"file {i} ".encode() * 2000)  # ~20 kB: 0.1 s each through /slow
    return manifest(root)


def manifest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def job(node, job_id: str) -> dict:
    with node.client() as c:
        r = c.get(f"/api/v1/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()


def ftp_login(node) -> ftplib.FTP:
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", node.ftp_port, timeout=30)
    ftp.login("alice", PASSWORDS["alice"])
    return ftp


def start_copy(node, src: str, dst: str) -> str:
    with node.client() as c:
        r = c.post("/api/v1/fs/copy", json={"from": src, "to": dst}, headers={"Prefer": "respond-async"})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def test_a_move_started_over_ftp_on_a_is_followed_on_b_and_stopped_from_c(nodes):
    cluster = nodes
    a, b, c = cluster.nodes
    lb = cluster.lb
    before = make_tree(cluster.slow / "tree")
    ftp = ftp_login(a)
    try:
        ftp.sendcmd("RNFR /slow/tree")
        reply = ftp.sendcmd("RNTO /moved")
    finally:
        ftp.close()
    job_id = re.search(r"running in background as job (\S+)", reply)[1]

    # Node B's REST shows it with progress, as does the event stream of any
    # node (here through HAProxy).
    seen = wait_until(lambda: (j := job(b, job_id))["state"] == "running" and j["percentageComplete"] > 0 and j, 30)
    assert seen["operation"] == "ItemMove" and seen["node"] in ("a", "b", "c")
    assert seen["sizeKnown"] and 0 < seen["itemsDone"] < seen["itemsTotal"] == FILES + 4 + 1
    events = []
    with httpx.Client(base_url=f"http://{LB_ADDR}:{lb['http']}", auth=("alice", PASSWORDS["alice"]),
                      timeout=30) as lbc:
        with lbc.stream("GET", "/api/v1/events") as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if any(e["id"] == job_id for e in events):
                        break
        # Other sessions still see the tree where it was, through any node.
        assert lbc.get("/api/v1/fs/list", params={"path": "/slow/tree"}).status_code == 200

    with c.client() as cc:
        r = cc.post(f"/api/v1/jobs/{job_id}/stop")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "stopped"
    assert manifest(cluster.slow / "tree") == before
    assert not (cluster.data / "moved").exists()

    # SFTP through HAProxy reaches a node that sees the same tree.
    async def sftp_list() -> list[str]:
        async with asyncssh.connect(LB_ADDR, lb["sftp"], username="alice", password=PASSWORDS["alice"],
                                    known_hosts=None) as conn:
            async with conn.start_sftp_client() as sftp:
                return sorted(await sftp.listdir("/slow/tree"))

    assert [n for n in asyncio.run(sftp_list()) if n not in (".", "..")] == ["d0", "d1", "d2", "d3"]

    # So does FTP through HAProxy: control to one node, passive data through
    # that node's own port range on the balancer.
    ftp = ftplib.FTP()
    ftp.connect(LB_ADDR, lb["ftp"], timeout=30)
    try:
        ftp.login("alice", PASSWORDS["alice"])
        assert sorted(ftp.nlst("/slow/tree")) == ["d0", "d1", "d2", "d3"]
        assert ftp.sendcmd("PASV").split("(")[1].startswith(LB_ADDR.replace(".", ","))
    finally:
        ftp.close()


def test_locks_bans_sessions_tokens_and_keys_hold_on_every_node(nodes):
    cluster = nodes
    a, b, c = cluster.nodes
    (cluster.data / "doc.txt").write_text("v1")

    # A WebDAV lock taken on A blocks a PUT on B (and C), and its holder may write on B.
    lock_body = ('<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
                 '<D:locktype><D:write/></D:locktype></D:lockinfo>')
    with a.client() as ca, b.client("bob") as cb, b.client() as cb_alice:
        r = ca.request("LOCK", "/dav/doc.txt", content=lock_body, headers={"Timeout": "Second-300"})
        assert r.status_code == 200, r.text
        token = r.headers["Lock-Token"]
        assert cb.put("/dav/doc.txt", content=b"v2").status_code == 423
        assert cb_alice.put("/dav/doc.txt", content=b"v2", headers={"If": f"({token})"}).status_code in (200, 204)
        # A dead property set on A is read on C.
        prop = ('<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z"><D:set><D:prop>'
                '<Z:colour>blue</Z:colour></D:prop></D:set></D:propertyupdate>')
        assert ca.request("PROPPATCH", "/dav/doc.txt", content=prop,
                          headers={"If": f"({token})"}).status_code == 207
    with c.client() as cc:
        r = cc.request("PROPFIND", "/dav/doc.txt", headers={"Depth": "0"},
                       content='<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><Z:colour '
                               'xmlns:Z="urn:z"/></D:prop></D:propfind>')
        assert r.status_code == 207 and "blue" in r.text
    assert (cluster.data / "doc.txt").read_text() == "v2"

    # An Idempotency-Key answered on A is answered the same on B; a monitor
    # token made on A is read on C.
    (cluster.data / "big").mkdir()
    for i in range(30):
        (cluster.data / "big" / f"f{i}").write_bytes(b"x" * 1000)
    key = {"Idempotency-Key": "k-123", "Prefer": "respond-async"}
    with a.client() as ca, b.client() as cb, c.client() as cc:
        first = ca.post("/api/v1/fs/copy", json={"from": "/big", "to": "/slow/big"}, headers=key)
        again = cb.post("/api/v1/fs/copy", json={"from": "/big", "to": "/slow/big"}, headers=key)
        assert first.status_code == again.status_code == 202 and first.json() == again.json()
        monitor = first.headers["Location"]
        assert cc.get(monitor, follow_redirects=False).status_code in (200, 202, 303)

    # A portal session made on A works on B, and on both after a restart of both.
    with httpx.Client(base_url=a.url, timeout=30) as pa:
        r = pa.post("/ui/login", json={"user": "alice", "password": PASSWORDS["alice"]})
        assert r.status_code == 200, r.text
        cookie = {"gw_portal": pa.cookies["gw_portal"]}
        csrf = r.json()["csrf"]

    def portal_works(node) -> bool:
        with httpx.Client(base_url=node.url, cookies=cookie, timeout=30) as p:
            ok = p.get("/ui/session").status_code == 200
            made = p.post("/api/v1/fs/mkdir", json={"path": f"/from-portal-{node.name}-{time.monotonic_ns()}"},
                          headers={"X-CSRF-Token": csrf})
            return ok and made.status_code == 201

    assert portal_works(b)
    for node in (a, b):
        assert node.stop() == 0
    for node in (a, b):
        node.spawn()
    for node in (a, b):
        node.wait_ready()
    assert portal_works(a) and portal_works(b)

    # Failed logins counted on A ban the address on B, good password or not
    # (from 127.0.0.3, so the rest of the test's address stays welcome).
    def from_3(node, password: str) -> int:
        transport = httpx.HTTPTransport(local_address="127.0.0.3")
        with httpx.Client(base_url=node.url, auth=("alice", password), transport=transport, timeout=30) as x:
            return x.get("/api/v1/fs/list", params={"path": "/"}).status_code

    assert from_3(b, PASSWORDS["alice"]) == 200
    assert [from_3(a, "wrong") for _ in range(3)] == [401, 401, 401]
    assert from_3(a, PASSWORDS["alice"]) == 429
    # Another node rechecks an address it found clean after a second at most.
    wait_until(lambda: from_3(b, PASSWORDS["alice"]) == 429, 10)
    assert from_3(c, PASSWORDS["alice"]) == 429
    with c.client() as cc:  # the other addresses are not banned
        assert cc.get("/api/v1/fs/list", params={"path": "/"}).status_code == 200


def test_a_node_lost_mid_job_is_taken_over_and_a_returning_node_is_fenced(nodes):
    cluster, stall = nodes, STALL_S
    a, b, c = cluster.nodes
    before = make_tree(cluster.slow / "src")

    # A node frozen mid-job (SIGSTOP): its job goes to another node, and
    # once thawed it finds its attempt superseded and writes no more.
    first = start_copy(a, "/slow/src", "/first")
    wait_until(lambda: job(b, first)["itemsDone"] > 0, 30)
    runner = next(n for n in (a, b, c) if n.name == job(b, first)["node"])
    runner.pause()
    try:
        taken = wait_until(lambda: (j := job(next(n for n in (a, b, c) if n is not runner), first))["node"]
                           != runner.name and j["state"] == "running" and j, stall + 20)
    finally:
        runner.resume()
    assert taken["attempts"] >= 2
    # Thawed, its next journal write is refused (or, when its connection
    # died while frozen, fails): it gives the job up.
    wait_until(lambda: re.search(rf"job {first} (left for a later attempt|attempt \d+ failed)", runner.log_text()), 30)
    done = wait_until(lambda: (j := job(a, first))["state"] == "completed" and j, 60)
    assert done["node"] != runner.name
    assert manifest(cluster.data / "first") == before
    assert done["itemsDone"] == done["itemsTotal"] == FILES + 4 + 1 and done["bytesDone"] == done["bytesTotal"]

    # A node killed mid-job (SIGKILL): the others resume it from the journal
    # once its heartbeat is stall_after_s old; nothing twice, nothing lost
    # (here into the S3 bucket every node mounts).
    undo = only_on(cluster, a)
    second = start_copy(a, "/slow/src", "/s3/second")
    wait_until(lambda: (j := job(b, second))["itemsDone"] > 0 and j["node"] == "a", 30)
    a.kill()
    undo()  # b and c claim again: one of them takes the job over
    done = wait_until(lambda: (j := job(b, second))["state"] == "completed" and j, stall + 30)
    assert done["node"] in ("b", "c") and done["attempts"] >= 2
    s3 = cluster.s3
    assert {k: hashlib.sha256(s3.read(f"cluster/second/{k}")).hexdigest()
            for k in s3.files("cluster/second") if k} == before  # "": the folder's own marker
    assert done["itemsDone"] == done["itemsTotal"] == FILES + 4 + 1 and done["bytesDone"] == done["bytesTotal"]
    assert manifest(cluster.slow / "src") == before
    leftovers = [p for p in cluster.data.rglob(".gw-*")]
    assert leftovers == [], leftovers
    a.start()  # back, with the same node id, for the tests that follow


def only_on(cluster, node):
    """Drain the other nodes until ``undo()``, so that ``node`` claims the
    next job: an enqueue wakes an idle worker on every node, and any may
    take it."""
    others = [n for n in cluster.nodes if n is not node]
    for n in others:
        out = cluster.gateway("drain", n.name, "--wait", "0")
        assert out.returncode == 0, out.stdout + out.stderr
    for n in others:
        wait_until(lambda: not n.ready(), 10)

    def undo() -> None:
        for n in others:
            assert cluster.gateway("drain", n.name, "--undo").returncode == 0
        for n in others:
            wait_until(n.ready, 10)

    return undo


def test_nodes_lists_the_nodes_and_drain_hands_jobs_over(nodes):
    cluster = nodes
    a, b, c = cluster.nodes
    # A long job (~15 s) running on a is listed with a; drained, a hands it
    # over at its next step and another node resumes it from the journal.
    before = make_tree(cluster.slow / "drain-src", 120)
    undo = only_on(cluster, a)
    job_id = start_copy(a, "/slow/drain-src", "/drained")
    wait_until(lambda: (j := job(b, job_id))["itemsDone"] > 0 and j["node"] == "a", 30)
    undo()
    out = cluster.gateway("nodes", "--json", node=c)
    assert out.returncode == 0, out.stderr
    listed = {n["node"]: n for n in json.loads(out.stdout)}
    assert {k: v["state"] for k, v in listed.items()} == {"a": "live", "b": "live", "c": "live"}
    assert listed["a"]["jobs"] == [job_id] and listed["b"]["jobs"] == listed["c"]["jobs"] == []
    drained = cluster.gateway("drain", "a", "--wait", "30")
    assert drained.returncode == 0, drained.stdout + drained.stderr
    assert "node a drained" in drained.stdout
    assert f"job {job_id} handed back to the queue (node a draining)" in a.log_text()
    r = httpx.get(f"{a.url}/readyz")
    assert r.status_code == 503 and r.json()["checks"]["draining"] != "ok"
    table = cluster.gateway("nodes").stdout
    assert re.search(r"^a\s+draining\s+.*\s0$", table, re.M), table
    done = wait_until(lambda: (j := job(b, job_id))["state"] == "completed" and j, 60)
    assert done["node"] in ("b", "c")
    assert manifest(cluster.data / "drained") == before

    assert cluster.gateway("drain", "a", "--undo").returncode == 0
    wait_until(a.ready, 10)
    assert cluster.gateway("drain", "nobody", "--wait", "0").returncode == 1
    metrics = httpx.get(f"{b.url}/metrics").text
    samples = [line for line in metrics.splitlines() if line and not line.startswith("#")]
    assert samples and all('node="b"}' in line for line in samples), metrics
    assert c.stop() == 0  # a clean stop leaves the list
    assert sorted(n["node"] for n in json.loads(cluster.gateway("nodes", "--json").stdout)) == ["a", "b"]
    # Every log line names its node.
    starts = [line for line in b.log_text().splitlines() if re.match(r"\d{4}-\d\d-\d\dT\S+Z ", line)]
    unnamed = [line for line in starts if not re.match(r"\S+Z b ", line)]  # (not continuation lines)
    assert not unnamed, unnamed[:5]


def test_a_node_refuses_a_schema_newer_than_it_knows(tmp_path):
    from gateway.jobs.store import JobStore

    from cluster_harness import Cluster

    db = create_database()
    try:
        JobStore(db[0]).close()  # today's schema
        with sa.create_engine(db[0]).begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
        cluster = Cluster(tmp_path, db)
        node = cluster.add()
        node.spawn()
        assert node.proc.wait(60) == 2
        errors = [line for line in node.log_text().splitlines() if "9999" in line]
        assert len(errors) == 1 and "newer than this gateway knows" in errors[0], node.log_text()[-2000:]
    finally:
        drop_database(db[0])
