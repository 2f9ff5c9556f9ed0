"""The REST API driven over HTTP (httpx) against a running gateway."""

import re
import time
from pathlib import Path

import httpx
import pytest

import gateway.api
from conftest import PASSWORDS, unique_memory

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def api(gateway_factory):
    r = gateway_factory(protocols=("http",), budget_ms=300)
    base = f"http://127.0.0.1:{r.port('http')}"
    clients = []

    def client(user="alice", **kw):
        c = httpx.Client(base_url=base, auth=(user, PASSWORDS[user]) if user else None, timeout=30, **kw)
        clients.append(c)
        return c

    r.client = client
    r.base = base
    yield r
    for c in clients:
        c.close()


def slow_tree(r, root="/slow/tree", n=60):
    s = r.session("alice")
    r.ops.mkdir(s, root)
    for i in range(n):
        r.ops.open_write(s, f"{root}/f{i:03}").commit()


def follow(c, url, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        m = httpx.get(c.base_url.join(url), follow_redirects=False)
        if m.status_code != 202:
            return m
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_files_round_trip(api):
    c = api.client()
    assert c.post("/api/v1/fs/mkdir", json={"path": "/d"}).status_code == 201
    r = c.put("/api/v1/fs/content", params={"path": "/d/a.bin"}, content=bytes(range(256)) * 100)
    assert r.status_code == 201 and r.json()["size"] == 25600
    assert c.put("/api/v1/fs/content", params={"path": "/d/a.bin"}, content=b"xy" * 50).status_code == 200
    assert c.get("/api/v1/fs/content", params={"path": "/d/a.bin"}).content == b"xy" * 50
    r = c.get("/api/v1/fs/content", params={"path": "/d/a.bin"}, headers={"Range": "bytes=2-5"})
    assert r.status_code == 206 and r.content == b"xyxy" and r.headers["content-range"] == "bytes 2-5/100"
    assert c.get("/api/v1/fs/content", params={"path": "/d/a.bin"},
                 headers={"Range": "bytes=500-"}).status_code == 416
    assert c.get("/api/v1/fs/stat", params={"path": "/d"}).json()["type"] == "folder"
    for i in range(5):
        c.put("/api/v1/fs/content", params={"path": f"/d/p{i}"}, content=b"p")
    page = c.get("/api/v1/fs/list", params={"path": "/d", "limit": 4}).json()
    rest = c.get("/api/v1/fs/list", params={"path": "/d", "limit": 4, "cursor": page["next_cursor"]}).json()
    assert len(page["items"]) == 4 and len(rest["items"]) == 2 and rest["next_cursor"] is None
    assert {i["name"] for i in page["items"] + rest["items"]} == {"a.bin", "p0", "p1", "p2", "p3", "p4"}
    r = c.post("/api/v1/fs/copy", json={"from": "/d/a.bin", "to": "/d/b.bin"})
    assert r.status_code == 201 and r.json()["path"] == "/d/b.bin"
    assert c.post("/api/v1/fs/move", json={"from": "/d/b.bin", "to": "/c.bin"}).status_code == 201
    assert c.post("/api/v1/fs/delete", json={"path": "/c.bin"}).json()["status"] == "deleted"


@pytest.mark.parametrize("call,status", [
    (lambda c: c.post("/api/v1/fs/copy", json={"from": "/missing", "to": "/x"}), 404),
    (lambda c: c.post("/api/v1/fs/copy", json={"from": "/exists", "to": "/exists2"}), 409),
    (lambda c: c.post("/api/v1/fs/move", json={"from": "/exists", "to": "/no/parent/x"}), 409),
    (lambda c: c.post("/api/v1/fs/mkdir", json={"path": "/.gw-bad"}), 400),
    (lambda c: c.post("/api/v1/fs/copy", json={"from": "/exists"}), 400),
    (lambda c: c.post("/api/v1/fs/copy", content=b"{not json", headers={"content-type": "application/json"}), 400),
    (lambda c: c.get("/api/v1/fs/stat"), 400),
    (lambda c: c.get("/api/v1/jobs/nope"), 404),
])
def test_doomed_requests_get_their_4xx_at_once_never_202(api, call, status):
    c = api.client()
    c.post("/api/v1/fs/mkdir", json={"path": "/exists"})
    c.post("/api/v1/fs/mkdir", json={"path": "/exists2"})
    r = call(c.__class__(base_url=c.base_url, auth=c.auth, headers={"Prefer": "respond-async"}))
    assert r.status_code == status, r.text
    assert "error" in r.json()


def test_auth_basic_bearer_and_ban(api):
    assert api.client(None).get("/api/v1/jobs").status_code == 401
    bad = httpx.Client(base_url=api.base, auth=("alice", "wrong"))
    assert bad.get("/api/v1/jobs").status_code == 401
    from gateway.tokens import TokenStore
    tokens = TokenStore(api.gw.store)
    token_id, token = tokens.create("alice", "ci")
    hdr = {"Authorization": f"Bearer {token}"}
    assert httpx.get(api.base + "/api/v1/fs/list?path=/", headers=hdr).status_code == 200
    tokens.revoke(token_id)
    assert httpx.get(api.base + "/api/v1/fs/list?path=/", headers=hdr).status_code == 401
    for _ in range(6):
        bad.get("/api/v1/jobs")
    r = bad.get("/api/v1/jobs")
    assert r.status_code == 429 and "too many failed logins" in r.json()["error"]
    bad.close()


def test_backgrounded_move_monitor_202_then_303(api):
    slow_tree(api)
    c, other = api.client(), api.client(headers={"Gateway-Session": "another-tab"})
    t = time.monotonic()
    r = c.post("/api/v1/fs/move", json={"from": "/slow/tree", "to": "/slow/moved"})
    assert time.monotonic() - t < 0.3 + 1.0
    assert r.status_code == 202, r.text
    job_id, monitor = r.json()["id"], r.headers["location"]
    assert monitor.startswith("/api/v1/monitor/") and len(monitor.rsplit("/", 1)[1]) >= 22
    names = lambda cl: [i["name"] for i in cl.get("/api/v1/fs/list", params={"path": "/slow"}).json()["items"]]
    assert names(c) == ["moved"] and names(other) == ["tree"]
    m = httpx.get(api.base + monitor)
    assert m.status_code == 202 and m.json()["status"] == "inProgress" and m.json()["operation"] == "ItemMove"
    assert 0 <= m.json()["percentageComplete"] < 100
    done = follow(c, monitor)
    assert done.status_code == 303
    assert done.json() == {"id": job_id, "operation": "ItemMove", "percentageComplete": 100.0,
                           "resourceId": "/slow/moved", "status": "completed"}
    assert httpx.get(api.base + done.headers["location"], auth=("alice", PASSWORDS["alice"])).json()["name"] == "moved"
    assert names(other) == ["moved"]


def test_monitor_tokens_expire(gateway_factory):
    r = gateway_factory(protocols=("http",), sections={"jobs": {"monitor_token_ttl_s": 1}})
    base = f"http://127.0.0.1:{r.port('http')}"
    s = r.session("alice")
    r.ops.mkdir(s, "/d")
    out = r.ops.copy(s, "/d", "/d2", budget_s=0)
    r.gw.dispatcher.wait(out.job_id, 30)
    token = r.ops.monitor_token(out.job)
    assert httpx.get(f"{base}/api/v1/monitor/{token}").status_code == 303
    assert httpx.get(f"{base}/api/v1/monitor/{token}x").status_code == 404
    time.sleep(1.2)
    assert httpx.get(f"{base}/api/v1/monitor/{token}").status_code == 404


def test_jobs_cancel_stop_409_and_visibility(api):
    slow_tree(api, "/slow/a", 80)
    slow_tree(api, "/slow/b", 5)
    c = api.client()
    r = c.post("/api/v1/fs/copy", json={"from": "/slow/a", "to": "/slow/a2"}, headers={"Prefer": "respond-async"})
    job_id = r.json()["id"]
    while c.get(f"/api/v1/jobs/{job_id}").json()["state"] == "queued":
        time.sleep(0.02)
    r = c.post(f"/api/v1/jobs/{job_id}/cancel")
    assert r.status_code == 409 and r.json()["state"] == "running"
    r = c.post(f"/api/v1/jobs/{job_id}/stop")  # replies once stopped, with the state it left
    assert r.status_code == 200 and r.json()["state"] == "stopped", r.text
    m = follow(c, f"/api/v1/monitor/{api.ops.monitor_token(api.gw.store.get(job_id))}")
    assert m.status_code == 200 and m.json()["status"] == "stopped" and m.json()["error"]
    assert c.post(f"/api/v1/jobs/{job_id}/stop").status_code == 409
    # bob cannot see alice's job; admin can
    bob, admin = api.client("bob"), api.client("admin")
    assert bob.get(f"/api/v1/jobs/{job_id}").status_code == 404
    assert bob.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 404
    assert job_id not in [j["id"] for j in bob.get("/api/v1/jobs").json()["jobs"]]
    assert admin.get(f"/api/v1/jobs/{job_id}").json()["owner"] == "alice"
    listed = c.get("/api/v1/jobs", params={"state": "stopped", "queue": "copy"}).json()["jobs"]
    assert [j["id"] for j in listed] == [job_id]


def test_queueinfo_compatibility(api):
    slow_tree(api, "/slow/q", 40)
    c = api.client()
    job_id = c.post("/api/v1/fs/copy", json={"from": "/slow/q", "to": "/slow/q2"},
                    headers={"Prefer": "respond-async"}).json()["id"]
    r = c.get("/api/v1/queueinfo", params={"queuename": "COPY", "queueaction": "getstatus"})
    assert r.status_code == 200 and job_id in [j["id"] for j in r.json()["jobs"]]
    r = c.get("/api/v1/queueinfo", params={"QueueName": "copy", "QueueAction": "GetStatus", "Token": job_id})
    assert [j["id"] for j in r.json()["jobs"]] == [job_id]
    assert c.get("/api/v1/queueinfo", params={"QueueName": "copy", "QueueAction": "Cancel"}).status_code == 400
    while c.get(f"/api/v1/jobs/{job_id}").json()["state"] == "queued":
        time.sleep(0.02)
    # Changes need POST (or a bearer token on GET: tests/api/test_web_origin.py).
    r = c.post("/api/v1/queueinfo", params={"QUEUENAME": "copy", "QUEUEACTION": "STOP", "TOKEN": job_id})
    assert r.status_code == 200
    assert api.gw.dispatcher.wait(job_id, 30).state == "stopped"
    r = c.post("/api/v1/queueinfo", params={"QueueName": "copy", "QueueAction": "Cancel", "Token": job_id})
    assert r.status_code == 409 and r.json()["state"] == "stopped"


def test_events_stream_job_changes(api):
    slow_tree(api, "/slow/e", 40)
    c = api.client()
    events = []
    with c.stream("GET", "/api/v1/events") as stream:
        job_id = api.client().post("/api/v1/fs/copy", json={"from": "/slow/e", "to": "/slow/e2"},
                                   headers={"Prefer": "respond-async"}).json()["id"]
        kind = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and job_id in line:
                events.append(kind)
                if '"state": "completed"' in line:
                    break
    assert events[0] == "created" and events[-1] == "state" and "progress" in events
    bob_events = []
    with api.client("bob").stream("GET", "/api/v1/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                bob_events.append(line)
            if line == "retry: 1000":
                continue
            if len(bob_events) or line == "":
                break
    assert not any(job_id in e for e in bob_events)


def test_metrics_and_openapi(api):
    c = api.client()
    c.post("/api/v1/fs/mkdir", json={"path": "/m"})
    assert httpx.get(api.base + "/metrics").status_code == 401  # [http] metrics = "authenticated"
    text = c.get("/metrics").text
    assert 'gateway_operations_total{op="mkdir",result="ok"}' in text
    assert "gateway_jobs" in text
    doc = httpx.get(api.base + "/api/v1/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    assert {"/api/v1/fs/copy", "/api/v1/monitor/{token}", "/api/v1/queueinfo", "/api/v1/events"} <= set(doc["paths"])


@pytest.mark.parametrize("mode, anonymous, user", [("public", 200, 200), ("off", 404, 404)])
def test_metrics_public_or_off(gateway_factory, mode, anonymous, user):
    r = gateway_factory(protocols=("http",), sections={"http": {"metrics": mode}})
    url = f"http://127.0.0.1:{r.port('http')}/metrics"
    assert httpx.get(url, timeout=30).status_code == anonymous
    assert httpx.get(url, auth=("alice", PASSWORDS["alice"]), timeout=30).status_code == user


def test_event_streams_are_bounded_and_end_at_shutdown(gateway_factory):
    """Each stream holds an HTTP worker: beyond half the pool the API says
    503 (the portal retries), and closing the port ends open streams."""
    r = gateway_factory(protocols=("http",), sections={"http": {"threads": 4}})
    base = f"http://127.0.0.1:{r.port('http')}"
    with httpx.Client(base_url=base, auth=("alice", PASSWORDS["alice"]), timeout=30) as c:
        streams = [c.stream("GET", "/api/v1/events") for _ in range(2)]
        for s in streams:
            assert s.__enter__().status_code == 200
        refused = c.get("/api/v1/events")
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
        assert "event streams are open" in refused.json()["error"]
        assert c.get("/api/v1/fs/stat", params={"path": "/"}).status_code == 200  # the rest still answers
        t0 = time.monotonic()
        r.handles.pop("http").close()
        assert time.monotonic() - t0 < 5
        for s in streams:
            s.__exit__(None, None, None)


def test_idempotency_key_replays_the_first_reply(api):
    """The same Idempotency-Key from the same user gets the first reply (one
    job, not a busy error); a different request under it is 422; another
    user's key is theirs alone; after a day the key is free again."""
    slow_tree(api)
    c = api.client()
    key = {"Idempotency-Key": "4f3c9c2e-move-1"}
    first = c.post("/api/v1/fs/move", json={"from": "/slow/tree", "to": "/slow/moved"}, headers=key)
    assert first.status_code == 202, first.text
    again = c.post("/api/v1/fs/move", json={"from": "/slow/tree", "to": "/slow/moved"}, headers=key)
    assert (again.status_code, again.json(), again.headers["location"]) == (
        202, first.json(), first.headers["location"])
    assert again.headers["Idempotent-Replayed"] == "true"
    other = c.post("/api/v1/fs/move", json={"from": "/slow/tree", "to": "/slow/elsewhere"}, headers=key)
    assert other.status_code == 422, other.text
    assert follow(c, first.headers["location"]).status_code == 303
    # Replayed after the job ended too: the reply, not a second move (its source is gone).
    assert c.post("/api/v1/fs/move", json={"from": "/slow/tree", "to": "/slow/moved"},
                  headers=key).json() == first.json()
    assert len([j for j in c.get("/api/v1/jobs").json()["jobs"] if j["operation"] == "ItemMove"]) == 1
    # Errors (4xx) are replayed as well; the key is the user's own.
    made = c.post("/api/v1/fs/mkdir", json={"path": "/slow/m"}, headers={"Idempotency-Key": "k2"})
    assert made.status_code == 201
    assert c.post("/api/v1/fs/mkdir", json={"path": "/slow/m"}, headers={"Idempotency-Key": "k2"}).status_code == 201
    assert c.post("/api/v1/fs/mkdir", json={"path": "/slow/m"}).status_code == 409
    bob = api.client("bob").post("/api/v1/fs/mkdir", json={"path": "/slow/b"}, headers={"Idempotency-Key": "k2"})
    assert bob.status_code == 201
    # A key is kept a day: then it is free for a new request.
    from gateway.jobs.schema import idempotency_keys as kept

    with api.gw.store.engine.begin() as conn:
        conn.execute(kept.update().values(created_at=kept.c.created_at - 86401))
    assert c.post("/api/v1/fs/mkdir", json={"path": "/slow/m2"}, headers={"Idempotency-Key": "k2"}).status_code == 201


def test_a_move_sent_again_without_a_key_attaches_to_its_job(api):
    slow_tree(api)
    c, retry = api.client(), api.client(headers={"Gateway-Session": "reconnected"})
    first = c.post("/api/v1/fs/move", json={"from": "/slow/tree", "to": "/slow/moved"})
    assert first.status_code == 202, first.text
    again = retry.post("/api/v1/fs/move", json={"from": "/slow/tree", "to": "/slow/moved"})
    assert again.status_code in (201, 202), again.text
    if again.status_code == 202:  # the same job, behind the same monitor URL
        assert again.json()["id"] == first.json()["id"]
        assert again.headers["location"] == first.headers["location"] == again.json()["monitor"]
    assert follow(c, first.headers["location"]).status_code == 303


def test_api_index_and_docs_are_public_and_list_every_operation(api):
    for path in ("/api/v1", "/api/v1/"):
        r = httpx.get(api.base + path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        index = r.json()
        assert index["openapi"] == "/api/v1/openapi.json" and index["docs"] == "/api/v1/docs"
        assert index["links"]["jobs"] == "/api/v1/jobs" and index["links"]["fs/copy"] == "/api/v1/fs/copy"
    for link in [index["openapi"], index["docs"]]:
        assert httpx.get(api.base + link).status_code == 200
    doc = httpx.get(api.base + "/api/v1/openapi.json").json()
    r = httpx.get(api.base + "/api/v1/docs")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    # One script, from the package, named by a nonce; nothing from elsewhere (no CDN).
    nonce = re.search(r"script-src 'nonce-([\w-]+)'", r.headers["content-security-policy"])[1]
    assert re.findall(r"<script[^>]*>", r.text) == [f'<script src="/api/v1/docs/try.js" nonce="{nonce}">']
    assert "connect-src 'self'" in r.headers["content-security-policy"]
    assert "http://" not in r.text and "https://" not in r.text
    script = httpx.get(api.base + "/api/v1/docs/try.js")
    assert script.status_code == 200 and script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert script.content == (Path(gateway.api.__file__).parent / "static" / "docs" / "try.js").read_bytes()
    assert "http://" not in script.text and "https://" not in script.text
    assert httpx.get(api.base + "/api/v1/docs").headers["content-security-policy"] != r.headers[
        "content-security-policy"]  # a new nonce each time
    # Its script's requests get a 401 without a Basic challenge (no browser password dialog).
    anonymous = httpx.get(api.base + "/api/v1/fs/list", params={"path": "/"})
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Basic")
    scripted = httpx.get(api.base + "/api/v1/fs/list", params={"path": "/"},
                         headers={"X-Requested-With": "XMLHttpRequest"})
    assert scripted.status_code == 401 and "www-authenticate" not in scripted.headers
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            assert f'id="{op["operationId"]}"' in r.text
            assert f"<code>{path}</code>" in r.text
            assert f'<form class="try" data-method="{method.upper()}" data-path="{path}">' in r.text
    # A body to fill in: the required fields and those with a default.
    assert '<textarea name="body" rows="3" cols="60">{&quot;from&quot;: &quot;&quot;, &quot;to&quot;: &quot;&quot;, ' \
           '&quot;overwrite&quot;: false}</textarea>' in r.text


def test_prefer_respond_async_does_what_the_spec_says(api):
    from gateway.api.openapi import PREFER_ASYNC

    doc = httpx.get(api.base + "/api/v1/openapi.json").json()
    prefer = {p["description"] for p in doc["paths"]["/api/v1/fs/copy"]["post"]["parameters"] if p["name"] == "Prefer"}
    assert prefer == {PREFER_ASYNC} and "a copy of a single file up to 4 MiB" in PREFER_ASYNC
    assert not [p for p in doc["paths"]["/api/v1/fs/mkdir"]["post"].get("parameters", []) if p["name"] == "Prefer"]
    with_prefer = {(m, p) for p, ms in doc["paths"].items() for m, op in ms.items()
                   if [x for x in op.get("parameters", []) if x["name"] == "Prefer"]}
    assert with_prefer == {("post", f"/api/v1/fs/{op}") for op in ("copy", "move", "delete")}  # those making jobs
    c = api.client(headers={"Prefer": "respond-async"})
    c.put("/api/v1/fs/content", params={"path": "/one.bin"}, content=b"x" * 1000)
    r = c.post("/api/v1/fs/copy", json={"from": "/one.bin", "to": "/two.bin"})  # done at once: no job
    assert r.status_code == 201 and "preference-applied" not in r.headers
    slow_tree(api, n=5)
    r = c.post("/api/v1/fs/copy", json={"from": "/slow/tree", "to": "/slow/copied"})  # a job: 202 at once
    assert r.status_code == 202, r.text
    assert r.headers["preference-applied"] == "respond-async"
    assert r.headers["location"] == r.json()["monitor"] and r.json()["monitor"].startswith("/api/v1/monitor/")
    assert follow(c, r.json()["monitor"]).status_code == 303
