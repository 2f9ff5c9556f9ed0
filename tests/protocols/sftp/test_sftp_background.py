"""Backgrounded operations over SFTP: the reply comes within the sync budget,
the initiating connection sees the outcome at once, another connection sees
the old tree until the job commits."""

from __future__ import annotations

import asyncio
import time

import asyncssh
import pytest

from conftest import unique_memory
from sftp_support import connect

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

#: Long enough for another connection's stat to be answered while a rename
#: waits it out on a busy machine; every operation here takes a second or more.
BUDGET_S = 0.6
SLACK_S = 1.2


@pytest.fixture
def slow_gw(gateway_factory, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    return gateway_factory(protocols=("sftp",), budget_ms=int(BUDGET_S * 1000), mounts={
        "/": f"file://{data}",
        "/slow": (f"slow::memory://{unique_memory()}", {"slow": {"latency_ms": 5, "bytes_per_s": 4e6}}),
    })


def _tree(r, folder: str, n: int) -> None:
    s = r.session("alice")
    r.ops.mkdir(s, folder)
    for i in range(n):
        up = r.ops.open_write(s, f"{folder}/f{i:03d}.txt")
        up.write(b"x" * 64)
        up.commit()


def _newest_job(r):
    jobs = r.ops.list_jobs(r.session("alice"))
    assert jobs, "no job was started"
    return jobs[0]


async def _names(sftp, path):
    return set(await sftp.listdir(path)) - {".", ".."}


async def _watch_until_commit(r, job_id, watcher, path, old):
    """Other connections see ``old`` in ``path`` for as long as the job has not
    committed; returns whether it could look at least once before commit."""
    seen_old = False
    while not r.ops.store.get(job_id).committed:
        names = await _names(watcher, path)
        if not r.ops.store.get(job_id).committed:  # the listing was before the commit
            assert names == old, names
            seen_old = True
        await asyncio.sleep(0.05)
    return seen_old


def test_rename_of_200_files_is_backgrounded_and_consistent(slow_gw):
    r = slow_gw
    _tree(r, "/slow/src", 200)

    async def go():
        async with connect(r.port("sftp")) as (conn, mover), connect(r.port("sftp")) as (_, watcher):
            t0 = time.monotonic()
            renaming = asyncio.ensure_future(mover.rename("/slow/src", "/slow/dst"))
            await asyncio.sleep(0.05)
            # While the rename waits out its budget, other connections are served.
            await watcher.stat("/slow/src")
            assert not renaming.done()
            await renaming
            assert time.monotonic() - t0 < BUDGET_S + SLACK_S
            job = _newest_job(r)
            assert job.operation == "move" and not job.terminal

            # The initiating connection sees the new name at once...
            assert await _names(mover, "/slow") == {"dst"}
            assert len(await _names(mover, "/slow/dst")) == 200
            # ...and the job, through the ssh commands.
            listed = await conn.run("jobs")
            assert listed.exit_status == 0 and job.id in listed.stdout and "ItemMove" in listed.stdout
            shown = await conn.run(f"job {job.id}")
            assert f"id: {job.id}" in shown.stdout and "from: /slow/src" in shown.stdout

            # Another connection: the source is busy, and the old tree stays until commit.
            with pytest.raises(asyncssh.SFTPFailure, match="busy"):
                await watcher.open("/slow/src/new.txt", "wb")
            assert await _watch_until_commit(r, job.id, watcher, "/slow", {"src"}), "committed before a look"
            done = await asyncio.get_running_loop().run_in_executor(None, r.gw.dispatcher.wait, job.id, 60)
            assert done.state == "completed", done
            assert await _names(watcher, "/slow") == {"dst"}
            assert len(await _names(watcher, "/slow/dst")) == 200

            # A finished job can no longer be cancelled or stopped...
            refused = await conn.run(f"cancel {job.id}")
            assert refused.exit_status == 1 and job.id in refused.stderr
            # ...a running one can be stopped: the tree stays as it was.
            await mover.rename("/slow/dst", "/slow/again")
            job = _newest_job(r)
            stopped = await conn.run(f"stop {job.id}")
            assert stopped.exit_status == 0 and f"id: {job.id}" in stopped.stdout, stopped.stderr
            done = await asyncio.get_running_loop().run_in_executor(None, r.gw.dispatcher.wait, job.id, 60)
            assert done.state == "stopped", done
            assert await _names(mover, "/slow") == {"dst"} == await _names(watcher, "/slow")
            assert len(await _names(mover, "/slow/dst")) == 200

            # rmdir of the non-empty tree: the recursive delete, under the same budget.
            t0 = time.monotonic()
            await mover.rmdir("/slow/dst")
            assert time.monotonic() - t0 < BUDGET_S + SLACK_S
            assert await _names(mover, "/slow") == set()
            job = _newest_job(r)
            assert job.operation == "delete"
            done = await asyncio.get_running_loop().run_in_executor(None, r.gw.dispatcher.wait, job.id, 60)
            assert done.state == "completed", done
            assert await _names(watcher, "/slow") == set()

    asyncio.run(go())


def test_copy_data_of_a_large_file_is_a_backgrounded_server_side_copy(slow_gw, tmp_path):
    r = slow_gw
    data = bytes(range(256)) * (24 * 1024)  # 6 MiB: above the inline copy size; read at 4 MB/s
    up = r.ops.open_write(r.session("alice"), "/slow/big.bin")
    up.write(data)
    up.commit()

    async def go():
        async with connect(r.port("sftp")) as (_, mover), connect(r.port("sftp")) as (_, watcher):
            t0 = time.monotonic()
            await mover.copy("/slow/big.bin", "/copy.bin", remote_only=True)
            assert time.monotonic() - t0 < BUDGET_S + SLACK_S
            job = _newest_job(r)
            assert (job.operation, job.src, job.dst) == ("copy", "/slow/big.bin", "/copy.bin") and not job.terminal
            assert (await mover.stat("/copy.bin")).size == len(data)
            assert await _watch_until_commit(r, job.id, watcher, "/", {"slow"}), "committed before a look"
            done = await asyncio.get_running_loop().run_in_executor(None, r.gw.dispatcher.wait, job.id, 60)
            assert done.state == "completed", done
            assert (tmp_path / "data" / "copy.bin").read_bytes() == data

    asyncio.run(go())
