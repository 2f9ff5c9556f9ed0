"""The SDK (async treated as sync) and the CLI built on it, against a
running gateway."""

import time

import pytest

from conftest import PASSWORDS
from gateway.cli import main
from gateway.client import Client, GatewayClientError

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def gw(gateway_factory):
    r = gateway_factory(protocols=("http",), budget_ms=200)
    s = r.session("alice")
    r.ops.mkdir(s, "/slow/tree")
    for i in range(60):
        up = r.ops.open_write(s, f"/slow/tree/f{i:02}")
        up.write(b"x" * 100)
        up.commit()
    r.url = f"http://127.0.0.1:{r.port('http')}"
    return r


def test_sdk_wait_true_on_a_backgrounded_copy(gw):
    seen = []
    with Client(gw.url, user="alice", password=PASSWORDS["alice"]) as c:
        final = c.copy("/slow/tree", "/slow/copy", wait=True, progress=seen.append, timeout=60)
        assert final["status"] == "completed" and final["resourceId"] == "/slow/copy"
        assert seen and seen[0]["status"] == "inProgress"  # it really ran in the background
        assert len(list(c.list("/slow/copy"))) == 60
        c.upload("/up.bin", b"abc" * 1000)
        assert c.download("/up.bin", offset=2997) == b"abc"
        assert c.stat("/up.bin")["size"] == 3000
        with pytest.raises(GatewayClientError) as ei:
            c.copy("/missing", "/x")
        assert ei.value.status == 404


def test_sdk_wait_false_gives_a_job_handle(gw):
    with Client(gw.url, user="alice", password=PASSWORDS["alice"]) as c:
        job = c.move("/slow/tree", "/slow/moved", wait=False)
        assert job.id and job.status()["status"] == "inProgress"
        deadline = time.monotonic() + 30
        while job.info()["state"] == "queued" and time.monotonic() < deadline:
            time.sleep(0.05)  # stop applies to a running job; a queued one is cancelled instead
        job.stop()
        with pytest.raises(GatewayClientError, match="stopped"):
            job.wait(timeout=30)
        assert len(list(c.list("/slow/tree"))) == 60
        job = c.copy("/slow/tree", "/slow/c2", wait=False)
        assert job.wait(timeout=60)["status"] == "completed"


def test_cli_cp_mv_rm_and_jobs(gw, capsys, monkeypatch):
    monkeypatch.setenv("GATEWAY_URL", gw.url)
    monkeypatch.setenv("GATEWAY_USER", "alice")
    monkeypatch.setenv("GATEWAY_PASSWORD", PASSWORDS["alice"])
    assert main(["cp", "/slow/tree", "/slow/cli-copy"]) == 0
    assert gw.ops.exists(gw.session("alice"), "/slow/cli-copy/f59")
    assert main(["mv", "/slow/cli-copy", "/slow/cli-moved", "--no-wait"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("job ") and "/api/v1/monitor/" in out
    job_id = out.split()[1]
    assert main(["jobs", "list"]) == 0
    assert job_id in capsys.readouterr().out
    assert main(["jobs", "show", job_id]) == 0
    assert "ItemMove" in capsys.readouterr().out
    gw.gw.dispatcher.wait(job_id, 60)
    assert main(["jobs", "cancel", job_id]) == 1
    assert "completed" in capsys.readouterr().err
    assert main(["rm", "/slow/cli-moved"]) == 0
    assert not gw.ops.exists(gw.session("alice"), "/slow/cli-moved")
    assert main(["cp", "/nope", "/x"]) == 1
    assert "no such file" in capsys.readouterr().err


def test_cli_tokens(gw, capsys):
    cfg = str(gw.tmp / "gateway.toml")
    assert main(["token", "create", "alice", "--name", "ci", "--config", cfg]) == 0
    out = capsys.readouterr().out
    token_id, token = out.split()[1], out.strip().splitlines()[-1]
    with Client(gw.url, token=token) as c:
        assert c.stat("/slow")["type"] == "folder"
    assert main(["token", "list", "alice", "--config", cfg]) == 0
    assert token_id in capsys.readouterr().out
    assert main(["token", "revoke", token_id, "--config", cfg]) == 0
    with Client(gw.url, token=token) as c, pytest.raises(GatewayClientError) as ei:
        c.stat("/slow")
    assert ei.value.status == 401
