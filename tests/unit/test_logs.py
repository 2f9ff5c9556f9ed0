"""gateway.logs: one line per operation, text and JSON."""

from __future__ import annotations

import datetime
import io
import json
import logging
import re
import time

import pytest

import gateway.logs
from gateway.config import Logging
from gateway.logs import log_op, setup_logging
from gateway.types import Session
from gateway.users import User


@pytest.fixture
def stream():
    buf = io.StringIO()
    yield buf
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_gateway_handler", False):
            root.removeHandler(h)


def test_text_op_line(stream):
    setup_logging(Logging(), stream)
    session = Session(User("alice"), "ftp", id="ftp:1:ab")
    log_op(session, "rename", ["/a b", "/c\nd"], "error NotFound", 0.01234)
    (line,) = stream.getvalue().splitlines()
    assert line.endswith(
        'INFO gateway.ops: user=alice session=ftp:1:ab protocol=ftp op=rename '
        'paths="/a b","/c\\nd" result="error NotFound" duration_ms=12.3'
    )


def test_json_op_line_and_idempotent_setup(stream):
    setup_logging(Logging(format="json", level="debug"), stream)
    setup_logging(Logging(format="json"), stream)  # replaces, does not duplicate
    log_op(Session(User("bob"), "sftp", id="s1"), "copy", ["/x", "/y"], "background job j1", 2.5)
    logging.getLogger("gateway.other").debug("hidden at INFO")
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["logger"] == "gateway.ops" and record["level"] == "INFO"
    assert {k: record[k] for k in ("user", "session", "protocol", "op", "paths", "result", "duration_ms")} == {
        "user": "bob", "session": "s1", "protocol": "sftp", "op": "copy", "paths": ["/x", "/y"],
        "result": "background job j1", "duration_ms": 2500.0,
    }


def test_any_record_with_op_extra_renders_as_an_op_line(stream):
    setup_logging(Logging(), stream)
    logging.getLogger("gateway.x").warning("ignored %s", 1, extra={"op": {"op": "mkdir", "paths": ["/n"]}})
    assert stream.getvalue().rstrip().endswith("WARNING gateway.x: op=mkdir paths=/n")


def test_op_line_time_and_extra_fields(stream):
    setup_logging(Logging(), stream)
    session = Session(User("alice"), "sftp", id="s2")
    before = time.time()
    log_op(session, "delete", ["/d"], "background job j9", 0.5, job="j9", bytes=None)
    log_op(session, "delete", ["/f"], "ok", 0.001, job=None)
    first, second = stream.getvalue().splitlines()
    stamp = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z INFO ", first).group(1)
    logged = datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.timezone.utc).timestamp()
    assert before - 0.001 <= logged <= time.time()
    assert first.endswith("op=delete paths=/d result=\"background job j9\" duration_ms=500.0 job=j9")
    assert second.endswith("op=delete paths=/f result=ok duration_ms=1.0")  # no empty job field


@pytest.mark.parametrize("paths, result, line", [
    (["/a", "/b"], "ok", "paths=/a,/b result=ok duration_ms=1.5"),
    (["/a=b"], "ok", 'paths="/a=b" result=ok duration_ms=1.5'),
    (["/a,b"], "ok", 'paths="/a,b" result=ok duration_ms=1.5'),
    (["", "/b"], "ok", 'paths="",/b result=ok duration_ms=1.5'),
    ([], "ok", "paths= result=ok duration_ms=1.5"),
    (["/ü"], "error: no\tway", 'paths=/ü result="error: no\\tway" duration_ms=1.5'),
])
def test_op_line_quotes_exactly_the_values_that_need_it(stream, paths, result, line):
    setup_logging(Logging(), stream)
    log_op(Session(User("alice"), "ftp", id="f1"), "delete", paths, result, 0.0015)
    assert stream.getvalue().rstrip().endswith(f"user=alice session=f1 protocol=ftp op=delete {line}")


def test_op_line_extra_fields_in_the_order_given(stream):
    setup_logging(Logging(), stream)
    session = Session(User("alice"), "webdav", id="h1")
    log_op(session, "upload", ["/a"], "ok", 0.0015, bytes=4096, job="j1")
    log_op(session, "upload", ["/a"], "ok", 0.0015, bytes=4096, job="j 1")
    first, second = stream.getvalue().splitlines()
    assert first.endswith("op=upload paths=/a result=ok duration_ms=1.5 bytes=4096 job=j1")
    assert second.endswith('op=upload paths=/a result=ok duration_ms=1.5 bytes=4096 job="j 1"')


def test_a_repeating_error_logs_a_handful_of_lines_with_a_count(stream):
    handler = setup_logging(Logging(), stream)
    log = logging.getLogger("gateway.test.flood")
    for i in range(10_000):
        try:
            raise OSError(24, "Too many open files")
        except OSError:
            log.exception("accept failed on port %d", 8080)
    log.error("another failure")  # a different kind passes
    lines = [ln for ln in stream.getvalue().splitlines() if ln and not ln.startswith((" ", "Traceback", "OSError"))]
    assert len(lines) <= 10, lines
    assert len(stream.getvalue()) < 20_000
    assert lines[-1].endswith("another failure")
    (repeat,) = [f for f in handler.filters if type(f).__name__ == "RepeatFilter"]
    repeat.window_s = 0.0  # the window has passed: the summary carries the count
    repeat.flush()
    assert "accept failed on port 8080 (repeated 9995 more times in the last" in stream.getvalue()


def test_repeat_window_and_burst_are_kept():
    from gateway.logs import RepeatFilter

    now = [0.0]
    out = []

    class Target(logging.Handler):
        def emit(self, record):
            out.append(record.getMessage())

    target = Target()
    f = RepeatFilter(10.0, 2, target=target, clock=lambda: now[0])
    target.addFilter(f)
    rec = lambda: logging.LogRecord("x", logging.WARNING, "", 0, "disk %s down", ("a",), None)  # noqa: E731
    for _ in range(5):
        target.handle(rec())
    assert out == ["disk a down", "disk a down"]
    info = logging.LogRecord("x", logging.INFO, "", 0, "disk %s down", ("a",), None)
    assert f.filter(info)  # below WARNING: never limited
    now[0] = 11.0
    target.handle(rec())  # a new window: the summary first, then the record
    assert out[2:] == ["disk a down (repeated 3 more times in the last 11 s)", "disk a down"]


def test_audit_logs_logins_logouts_listings_and_downloads(gateway_factory, caplog):
    """Every front end (FTP, SFTP, WebDAV, REST; the portal in
    tests/e2e/test_portal_session.py) logs each login, failed login, logout,
    listing and download as one line with user, session, protocol, address,
    path and, for a download, its bytes."""
    import asyncio
    import ftplib

    import asyncssh
    import httpx

    from conftest import PASSWORDS

    r = gateway_factory(protocols=("ftp", "sftp", "http"), sections={"logging": {"audit": True}})
    (r.data / "a.txt").write_bytes(b"x" * 1000)
    alice = ("alice", PASSWORDS["alice"])
    base = f"http://127.0.0.1:{r.port('http')}"

    def sftp_logout_logged() -> None:  # the SSH session's end is logged as its connection closes
        deadline = time.monotonic() + 10
        while not any(getattr(rec, "op", {}).get("op") == "logout" and rec.op["protocol"] == "sftp"
                      for rec in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.05)

    async def sftp_round() -> None:
        with pytest.raises(asyncssh.PermissionDenied):
            await asyncssh.connect("127.0.0.1", r.port("sftp"), username="bob", password="wrong",
                                   known_hosts=None, client_keys=None)
        async with asyncssh.connect("127.0.0.1", r.port("sftp"), username="bob", password=PASSWORDS["bob"],
                                    known_hosts=None, client_keys=None) as conn:
            async with conn.start_sftp_client() as sftp:
                assert "a.txt" in await sftp.listdir("/")
                async with sftp.open("/a.txt", "rb") as f:
                    assert len(await f.read()) == 1000

    with caplog.at_level("INFO", logger="gateway.ops"):
        with ftplib.FTP() as ftp:
            ftp.connect("127.0.0.1", r.port("ftp"), timeout=30)
            with pytest.raises(ftplib.error_perm):
                ftp.login("alice", "wrong")
        with ftplib.FTP() as ftp:
            ftp.connect("127.0.0.1", r.port("ftp"), timeout=30)
            ftp.login(*alice)
            assert "a.txt" in ftp.nlst("/")
            got = io.BytesIO()
            ftp.retrbinary("RETR /a.txt", got.write)
            assert len(got.getvalue()) == 1000
            with pytest.raises(ftplib.error_perm):
                ftp.retrbinary("RETR /none.txt", got.write)
            ftp.quit()
        url = f"{base}/api/v1/fs/content"
        for _ in range(2):  # one login cache serves every protocol: a line for each request all the same
            assert httpx.get(url, params={"path": "/a.txt"}, auth=alice, timeout=30).content == b"x" * 1000
        assert httpx.get(url, params={"path": "/a.txt"}, auth=("alice", "wrong"), timeout=30).status_code == 401
        assert httpx.get(url, params={"path": "/a.txt"}, headers={"Authorization": "Bearer nope"},
                         timeout=30).status_code == 401
        listing = httpx.request("PROPFIND", f"{base}/dav/", headers={"Depth": "1"}, auth=alice, timeout=30)
        assert listing.status_code == 207 and "a.txt" in listing.text
        assert httpx.get(f"{base}/dav/a.txt", auth=alice, timeout=30).content == b"x" * 1000
        assert httpx.get(f"{base}/dav/a.txt", auth=("alice", "wrong"), timeout=30).status_code == 401
        asyncio.run(sftp_round())
        sftp_logout_logged()
    ops = [rec.op for rec in caplog.records if rec.name == "gateway.ops" and hasattr(rec, "op")]
    for o in ops:  # every line names all of these
        assert {"user", "session", "protocol", "op", "paths", "result", "address"} <= set(o), o
        assert o["address"].startswith("127.0.0.1") and o["protocol"] in ("ftp", "sftp", "webdav", "api"), o
        assert (o["session"] == "-") == (o["op"] == "login" and o["result"] != "ok"), o  # a failure made none
    sessions = [(o["protocol"], o["op"], o["user"], o.get("method"), o["result"]) for o in ops
                if o["op"] in ("login", "logout")]
    assert sessions == [("ftp", "login", "alice", "password", "error: login incorrect"),
                        ("ftp", "login", "alice", "password", "ok"),
                        ("ftp", "logout", "alice", None, "ok"),
                        ("api", "login", "alice", "password", "ok"),
                        ("api", "login", "alice", "password", "ok"),
                        ("api", "login", "alice", "password", "error: login incorrect"),
                        ("api", "login", "-", "token", "error: unknown or revoked API token"),
                        ("webdav", "login", "alice", "password", "ok"),
                        ("webdav", "login", "alice", "password", "ok"),
                        ("webdav", "login", "alice", "password", "error: login incorrect"),
                        ("sftp", "login", "bob", "password", "error: login incorrect"),
                        ("sftp", "login", "bob", "password", "ok"),
                        ("sftp", "logout", "bob", None, "ok")]
    ftp_lines = [o for o in ops if o["protocol"] == "ftp" and o["result"] == "ok"]
    assert len({o["session"] for o in ftp_lines}) == 1  # login, reads and logout name one session
    reads = [(o["protocol"], o["op"], o["paths"], o["result"], o.get("bytes")) for o in ops
             if o["op"] in ("list", "download")]
    assert reads[0] == ("ftp", "list", ["/"], "ok", None)
    assert reads[1] == ("ftp", "download", ["/a.txt"], "ok", 1000)
    assert reads[2][:2] == ("ftp", "download") and reads[2][3].startswith("error: /none.txt: no such")
    assert reads[3:5] == [("api", "download", ["/a.txt"], "ok", 1000)] * 2
    assert reads[5:] == [("webdav", "list", ["/"], "ok", None), ("webdav", "download", ["/a.txt"], "ok", 1000),
                         ("sftp", "list", ["/"], "ok", None), ("sftp", "download", ["/a.txt"], "ok", 1000)]


def test_no_audit_lines_by_default(gateway_factory, caplog):
    r = gateway_factory(protocols=("http",))
    (r.data / "a.txt").write_bytes(b"x")
    with caplog.at_level("INFO", logger="gateway.ops"):
        with r.ops.open_read(r.session(), "/a.txt")[0] as f:
            assert f.read() == b"x"
        list(r.ops.list(r.session(), "/"))
    assert not [rec for rec in caplog.records if rec.name == "gateway.ops"]


def test_op_line_written_directly_is_the_line_the_logging_machinery_writes(stream):
    """With the gateway's handler the only one (as in `gateway serve`), an
    operation line skips the logging machinery; it must read the same."""
    handler = setup_logging(Logging(), stream)
    session = Session(User("alice"), "webdav", id="http:alice")
    root = logging.getLogger()
    others = [h for h in root.handlers if h is not handler]  # pytest's own capture handlers
    log_op(session, "upload", ["/a b/c"], "ok", 0.0012, bytes=4096)  # through the machinery
    for h in others:
        root.removeHandler(h)
    try:
        assert gateway.logs._direct_handler() is handler
        log_op(session, "upload", ["/a b/c"], "ok", 0.0012, bytes=4096)  # directly
    finally:
        for h in others:
            root.addHandler(h)
    slow, direct = stream.getvalue().splitlines()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", direct[:24])
    assert slow[24:] == direct[24:] == (' INFO gateway.ops: user=alice session=http:alice protocol=webdav op=upload '
                                        'paths="/a b/c" result=ok duration_ms=1.2 bytes=4096')
