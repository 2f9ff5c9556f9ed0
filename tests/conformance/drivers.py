"""One small client per protocol with the same verbs, so every scenario runs
unchanged through FTP, SFTP and WebDAV. One driver = one connection = one
gateway session. Protocol errors become a neutral ``kind``."""

from __future__ import annotations

import asyncio
import ftplib
import io
import threading
import xml.etree.ElementTree as ET
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

    def close(self) -> None:
        self.http.close()


DRIVERS = {"ftp": (FtpDriver, "ftp"), "sftp": (SftpDriver, "sftp"), "webdav": (DavDriver, "http")}
