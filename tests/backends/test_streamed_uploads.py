"""An upload to a WebDAV or S3 mount streams: the remote server receives
the bytes while the client is still sending them (webdav4 alone would keep
the whole file in a spool and send it at the end; S3 gets multipart parts
of 5 MiB), and the gateway's memory stays bounded whatever the file's
size."""

from __future__ import annotations

import gc
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import PASSWORDS, stop_process, wait_until, write_config
from servers import mount_spec, servers  # noqa: F401 - servers is a fixture

from gateway.config import load_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]
SIZE = 64 << 20
PIECE = 1 << 20
#: Well above what an upload may hold, far below the file: WebDAV, 4
#: queued blocks of 1 MiB; S3, a part of 5 MiB in s3fs's buffer, the copy
#: read from it for the request and the rest left for the next part (~16 MiB
#: of Python objects; ~30 MiB of RSS with the allocator's share, the same
#: for a 192 MiB file); both, the front end's own buffers.
BOUND = {"webdav": 32 << 20, "s3": 48 << 20}


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _received(server, area) -> int:
    """Bytes of an unfinished upload the server holds: WebDAV's temporary
    file, S3's parts (5 MiB each) so far."""
    if server.kind == "s3":
        return sum(5 << 20 for m, q in list(server.requests) if m == "PUT" and "partNumber=" in q)
    return max([p.stat().st_size for p in (server.root / area.name).glob(".gw-up-*")], default=0)


@pytest.mark.parametrize("kind", ["webdav", "s3"])
def test_a_64_mib_upload_streams_to_the_server_in_bounded_memory(kind, servers, tmp_path):
    server = servers(kind)
    area = server.area()
    config = write_config(tmp_path, mounts={"/": f"file://{tmp_path / 'data'}", "/m": mount_spec(area)},
                          sections={"ftp": {"enabled": False}, "sftp": {"enabled": False}})
    port = load_config(config).http.port
    with open(tmp_path / "gateway.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        base = f"http://127.0.0.1:{port}"

        def up():
            assert proc.poll() is None, (tmp_path / "gateway.log").read_text()
            try:
                return httpx.get(f"{base}/api/v1", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, 60, "the gateway")
        # a first small upload loads what every upload shares (botocore's S3 model...)
        warm = httpx.put(f"{base}/dav/m/warm.txt", content=b"w", auth=("alice", PASSWORDS["alice"]), timeout=60)
        assert warm.status_code == 201, warm.text
        Path(f"/proc/{proc.pid}/clear_refs").write_text("5")  # peak RSS := current RSS
        before = _kib(proc.pid, "VmRSS")
        sent = hashlib.sha256()
        arrived: list[int] = []

        def body():
            for i in range(SIZE // PIECE):
                piece = (i.to_bytes(4, "big") * (PIECE // 4))
                sent.update(piece)
                yield piece
                if i == SIZE // PIECE // 2:
                    # half sent: the server already holds part of it (not yet shown under its name)
                    def received():
                        n = _received(server, area)
                        return n >= 8 * PIECE and n

                    arrived.append(wait_until(received, 60, "bytes to reach the server before the upload ends"))

        r = httpx.put(f"{base}/dav/m/big.bin", content=body(), auth=("alice", PASSWORDS["alice"]), timeout=120)
        assert r.status_code == 201, r.text
        peak = _kib(proc.pid, "VmHWM")
    finally:
        stop_process(proc)

    assert arrived and arrived[0] < SIZE
    assert area.files() == {"warm.txt": 1, "big.bin": SIZE}
    assert hashlib.sha256(area.read("big.bin")).hexdigest() == sent.hexdigest()
    assert peak - before < BOUND[kind], (before >> 20, peak >> 20)


def test_an_aborted_upload_leaves_nothing_and_spooling_can_be_chosen(servers, gateway_factory, tmp_path):
    server = servers("webdav")
    area, spooled = server.area(), server.area()
    r = gateway_factory(mounts={"/": f"file://{tmp_path}", "/m": mount_spec(area),
                                "/spooled": (spooled.url, {**spooled.options, "stream_uploads": False})})
    s = r.session("alice")
    up = r.ops.open_write(s, "/m/cut.bin")
    for _ in range(12):  # more than the queue holds: the server has part of it
        up.write(b"c" * PIECE)
    wait_until(lambda: any(p.stat().st_size for p in (server.root / area.name).glob(".gw-up-*")), 60,
               "the first bytes")
    up.abort()
    assert area.files() == {} and [e.name for e in r.ops.list(s, "/m")] == []

    up = r.ops.open_write(s, "/spooled/whole.bin")
    up.write(b"w" * (3 * PIECE))
    assert spooled.files() == {}  # spooled: nothing sent before the commit
    up.commit()
    assert spooled.files() == {"whole.bin": 3 * PIECE}


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_an_aborted_s3_upload_leaves_no_parts_behind(servers, gateway_factory, tmp_path):
    """The parts an S3 upload already sent are dropped with it
    (AbortMultipartUpload): no key, no unfinished upload the bucket would
    keep (and bill) until a lifecycle rule removes it."""
    server = servers("s3")
    area = server.area()
    r = gateway_factory(mounts={"/": f"file://{tmp_path}", "/m": mount_spec(area)})
    s = r.session("alice")

    def unfinished():
        return server.client().list_multipart_uploads(Bucket=server.bucket,
                                                      Prefix=f"{server.prefix}/{area.name}/").get("Uploads", [])

    up = r.ops.open_write(s, "/m/cut.bin")
    for _ in range(12):
        up.write(b"c" * PIECE)
    assert _received(server, area) >= 10 * PIECE and len(unfinished()) == 1
    up.abort()
    del up
    gc.collect()  # the dropped file is closed as well: nothing left to send when it goes
    assert unfinished() == [] and server.keys(area.name) == {}
