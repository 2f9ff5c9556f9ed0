"""One small client per protocol with the same verbs, so every scenario runs
unchanged through FTP, SFTP and WebDAV. One driver = one connection = one
gateway session. Protocol errors become a neutral ``kind``."""

from __future__ import annotations

import asyncio
import ftplib
import io
import threading
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from typing import Any, Callable, Iterator
from urllib.parse import quote, unquote, urlparse

import asyncssh
import httpx


class ProtoError(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def _kind_from_text(text: str, default: str) -> str:
    t = text.lower()
    for word, kind in (("busy", "busy"), ("in use by job", "busy"), ("already exists", "exists"),
                       ("permission", "denied"), ("not empty", "not_empty"), ("reserved", "bad"),
                       ("no such", "not_found"), ("does not exist", "not_found")):
        if word in t:
            return kind
    return default


class FtpDriver:
    name = "ftp"

    def __init__(self, port: int, user: str, password: str) -> None:
        self.ftp = ftplib.FTP()
        self.ftp.encoding = "utf-8"
        self.ftp.connect("127.0.0.1", port, timeout=30)
        self.ftp.login(user, password)

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except ftplib.error_temp as e:  # 4xx
            text = str(e)
            raise ProtoError("busy" if text.startswith("450") else _kind_from_text(text, "temporary"), text) from None
        except ftplib.error_perm as e:  # 5xx
            text = str(e)
            default = "bad" if text.startswith(("553", "501")) else "not_found"
            raise ProtoError(_kind_from_text(text, default), text) from None

    def put(self, path: str, data: bytes) -> None:
        self._call(self.ftp.storbinary, f"STOR {path}", io.BytesIO(data))

    def get(self, path: str) -> bytes:
        buf = io.BytesIO()
        self._call(self.ftp.retrbinary, f"RETR {path}", buf.write)
        return buf.getvalue()

    def write_at(self, path: str, offset: int, data: bytes) -> None:
        """REST ``offset`` + STOR: a resumed upload."""
        self._call(self.ftp.storbinary, f"STOR {path}", io.BytesIO(data), 8192, None, offset)

    def append(self, path: str, data: bytes) -> None:
        self._call(self.ftp.storbinary, f"APPE {path}", io.BytesIO(data))

    def copy(self, src: str, dst: str) -> None:
        self._call(self.ftp.sendcmd, f"SITE CPFR {src}")
        self._call(self.ftp.sendcmd, f"SITE CPTO {dst}")

    def ls(self, path: str) -> list[str]:
        return sorted(name for name, _ in self._call(lambda: list(self.ftp.mlsd(path))) if name not in (".", ".."))

    def mkdir(self, path: str) -> None:
        self._call(self.ftp.mkd, path)

    def rename(self, src: str, dst: str) -> str:
        return self._call(self.ftp.rename, src, dst)

    def delete(self, path: str) -> None:
        self._call(self.ftp.delete, path)

    def rmtree(self, path: str) -> str:
        return self._call(self.ftp.rmd, path)

    def close(self) -> None:
        try:
            self.ftp.quit()
        except Exception:  # noqa: BLE001
            self.ftp.close()


class SftpDriver:
    name = "sftp"

    def __init__(self, port: int, user: str, password: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def connect():
            conn = await asyncssh.connect("127.0.0.1", port, username=user, password=password, known_hosts=None,
                                          client_keys=None)
            return conn, await conn.start_sftp_client()

        self.conn, self.sftp = self._run(connect())

    def _run(self, coro):
        try:
            return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)
        except asyncssh.SFTPNoSuchFile as e:
            raise ProtoError("not_found", str(e.reason)) from None
        except asyncssh.SFTPPermissionDenied as e:
            raise ProtoError("denied", str(e.reason)) from None
        except asyncssh.SFTPFileAlreadyExists as e:
            raise ProtoError("exists", str(e.reason)) from None
        except asyncssh.SFTPError as e:
            raise ProtoError(_kind_from_text(str(e.reason), "failure"), str(e.reason)) from None

    def put(self, path: str, data: bytes) -> None:
        async def put():
            async with self.sftp.open(path, "wb") as f:
                await f.write(data)

        self._run(put())

    def get(self, path: str) -> bytes:
        async def get():
            async with self.sftp.open(path, "rb") as f:
                return await f.read()

        return self._run(get())

    def write_at(self, path: str, offset: int, data: bytes) -> None:
        """A write at ``offset`` of an existing file opened without truncation."""
        async def write():
            async with self.sftp.open(path, "r+b") as f:
                await f.write(data, offset)

        self._run(write())

    def append(self, path: str, data: bytes) -> None:
        async def append():
            async with self.sftp.open(path, "ab") as f:
                await f.write(data)

        self._run(append())

    def move_over(self, src: str, dst: str) -> None:
        """posix-rename@openssh.com: replaces an existing file."""
        self._run(self.sftp.posix_rename(src, dst))

    def ls(self, path: str) -> list[str]:
        return sorted(n for n in self._run(self.sftp.listdir(path)) if n not in (".", ".."))

    def mkdir(self, path: str) -> None:
        self._run(self.sftp.mkdir(path))

    def rename(self, src: str, dst: str) -> str:
        self._run(self.sftp.rename(src, dst))
        return "OK"

    def delete(self, path: str) -> None:
        self._run(self.sftp.remove(path))

    def rmtree(self, path: str) -> str:
        self._run(self.sftp.rmdir(path))
        return "OK"

    def close(self) -> None:
        async def close():
            self.sftp.exit()
            self.conn.close()
            await self.conn.wait_closed()

        try:
            self._run(close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


class DavDriver:
    name = "webdav"
    _session_counter = 0

    def __init__(self, port: int, user: str, password: str) -> None:
        DavDriver._session_counter += 1
        self.base = f"http://127.0.0.1:{port}/dav"
        self.http = httpx.Client(auth=(user, password), timeout=60,
                                 headers={"Gateway-Session": f"conformance-{DavDriver._session_counter}"})

    def _url(self, path: str) -> str:
        return self.base + quote(path)

    def _check(self, r: httpx.Response, *ok: int) -> httpx.Response:
        if r.status_code in ok:
            return r
        kinds = {404: "not_found", 409: "conflict", 423: "busy", 412: "exists", 405: "exists", 403: "denied",
                 400: "bad", 401: "denied"}
        raise ProtoError(kinds.get(r.status_code, f"http{r.status_code}"), f"{r.status_code} {r.text[:200]}")

    def put(self, path: str, data: bytes) -> None:
        self._check(self.http.put(self._url(path), content=data), 201, 204)

    def get(self, path: str) -> bytes:
        return self._check(self.http.get(self._url(path)), 200).content

    def ls(self, path: str) -> list[str]:
        r = self._check(self.http.request("PROPFIND", self._url(path.rstrip("/") + "/"), headers={"Depth": "1"}), 207)
        own = urlparse(self._url(path.rstrip("/") + "/")).path.rstrip("/")
        names = []
        for href in ET.fromstring(r.content).iter("{DAV:}href"):
            p = urlparse(href.text).path.rstrip("/")
            if p != own:
                names.append(unquote(p.rsplit("/", 1)[-1]))
        return sorted(names)

    def mkdir(self, path: str) -> None:
        self._check(self.http.request("MKCOL", self._url(path)), 201)

    def rename(self, src: str, dst: str) -> str:
        r = self._check(self.http.request("MOVE", self._url(src), headers={"Destination": self._url(dst),
                                                                              "Overwrite": "F"}), 201, 204)
        return str(r.status_code)

    def delete(self, path: str) -> None:
        self._check(self.http.delete(self._url(path)), 204, 200)

    def rmtree(self, path: str) -> str:
        return str(self._check(self.http.delete(self._url(path)), 204, 200).status_code)

    def move_over(self, src: str, dst: str) -> None:
        """MOVE with ``Overwrite: T``: replaces whatever is at ``dst``."""
        self._check(self.http.request("MOVE", self._url(src), headers={"Destination": self._url(dst),
                                                                       "Overwrite": "T"}), 201, 204)

    def copy(self, src: str, dst: str) -> None:
        self._check(self.http.request("COPY", self._url(src), headers={"Destination": self._url(dst),
                                                                       "Overwrite": "F"}), 201, 204)

    def copy_over(self, src: str, dst: str) -> None:
        self._check(self.http.request("COPY", self._url(src), headers={"Destination": self._url(dst),
                                                                       "Overwrite": "T"}), 201, 204)

    def proppatch(self, path: str, name: str, value: str) -> None:
        body = ('<?xml version="1.0" encoding="utf-8"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:t:">'
                f'<D:set><D:prop><Z:{name}>{value}</Z:{name}></D:prop></D:set></D:propertyupdate>')
        r = self._check(self.http.request("PROPPATCH", self._url(path), content=body.encode(),
                                          headers={"Content-Type": "application/xml"}), 207)
        # The status of each property is in the multistatus body.
        for status in ET.fromstring(r.content).iter("{DAV:}status"):
            code = int(status.text.split()[1])
            if code != 200:
                kinds = {403: "denied", 423: "busy", 507: "too_large", 424: "failed_dependency"}
                raise ProtoError(kinds.get(code, f"http{code}"), status.text)

    def lock(self, path: str) -> str:
        """An exclusive write lock; its token."""
        body = (b'<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
                b'</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>conformance</D:owner></D:lockinfo>')
        return self._check(self.http.request("LOCK", self._url(path), content=body), 200).headers["Lock-Token"]

    def props(self, path: str) -> dict[str, str]:
        body = b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>'
        r = self._check(self.http.request("PROPFIND", self._url(path), content=body, headers={"Depth": "0"}), 207)
        return {el.tag: el.text or "" for el in ET.fromstring(r.content).iter() if el.tag.startswith("{urn:t:}")}

    def close(self) -> None:
        self.http.close()


class RestDriver:
    """The REST API (/api/v1/fs) with HTTP Basic."""

    name = "rest"

    def __init__(self, port: int, user: str, password: str) -> None:
        self.base = f"http://127.0.0.1:{port}/api/v1/fs"
        self.http = httpx.Client(auth=(user, password), timeout=60, headers={"Gateway-Session": f"rest-{user}"})

    def _check(self, r: httpx.Response, *ok: int) -> httpx.Response:
        if r.status_code in ok:
            return r
        kinds = {404: "not_found", 409: "conflict", 423: "busy", 412: "exists", 403: "denied", 400: "bad",
                 401: "denied"}
        text = r.text[:200]
        kind = kinds.get(r.status_code, f"http{r.status_code}")
        if r.status_code == 409:
            kind = _kind_from_text(text, kind)
        raise ProtoError(kind, f"{r.status_code} {text}")

    def put(self, path: str, data: bytes) -> None:
        self._check(self.http.put(f"{self.base}/content", params={"path": path}, content=data), 200, 201)

    def get(self, path: str) -> bytes:
        return self._check(self.http.get(f"{self.base}/content", params={"path": path}), 200).content

    def ls(self, path: str) -> list[str]:
        r = self._check(self.http.get(f"{self.base}/list", params={"path": path}), 200)
        return sorted(i["name"] for i in r.json()["items"])

    def mkdir(self, path: str) -> None:
        self._check(self.http.post(f"{self.base}/mkdir", json={"path": path}), 201)

    def _transfer(self, op: str, src: str, dst: str, overwrite: bool) -> str:
        r = self.http.post(f"{self.base}/{op}", json={"from": src, "to": dst, "overwrite": overwrite})
        return str(self._check(r, 201, 202).status_code)

    def rename(self, src: str, dst: str) -> str:
        return self._transfer("move", src, dst, False)

    def move_over(self, src: str, dst: str) -> None:
        self._transfer("move", src, dst, True)

    def copy(self, src: str, dst: str) -> None:
        self._transfer("copy", src, dst, False)

    def copy_over(self, src: str, dst: str) -> None:
        self._transfer("copy", src, dst, True)

    def delete(self, path: str) -> None:
        self._check(self.http.post(f"{self.base}/delete", json={"path": path}), 200, 202)

    def rmtree(self, path: str) -> str:
        return str(self._check(self.http.post(f"{self.base}/delete", json={"path": path}), 200, 202).status_code)

    def close(self) -> None:
        self.http.close()


DRIVERS = {"ftp": (FtpDriver, "ftp"), "sftp": (SftpDriver, "sftp"), "webdav": (DavDriver, "http"),
           "rest": (RestDriver, "http")}


def open_driver(gw: Any, proto: str, user: str, password: str) -> Any:
    """A driver of ``proto`` (a key of DRIVERS) logged in as ``user`` on the
    running gateway ``gw`` (conftest's Running). Raises what the client
    library raises when the login fails."""
    cls, port_of = DRIVERS[proto]
    return cls(gw.port(port_of), user, password)


@contextmanager
def driver_pool(gw: Any, password: Callable[[str], str]) -> Iterator[Callable[..., Any]]:
    """``open(proto, user="alice")``: a new logged-in driver on ``gw`` (one
    connection, one session), with ``password(user)``; every driver opened
    is closed when the block ends. What the conformance modules' ``connect``
    fixtures hand their tests."""
    opened: list[Any] = []

    def open_(proto: str, user: str = "alice") -> Any:
        driver = open_driver(gw, proto, user, password(user))
        opened.append(driver)
        return driver

    try:
        yield open_
    finally:
        for driver in opened:
            driver.close()
