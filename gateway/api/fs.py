"""File resources: list, stat, content up/down, and copy/move/delete/mkdir
through the core's sync/background policy."""

from __future__ import annotations

import re
from typing import Any, Iterator

import falcon

from gateway import errors as E
from gateway.api.common import accepted, body, item, param, wants_async
from gateway.api.models import Accepted, Deleted, Item, Listing, PathBody, Transfer
from gateway.webcontent import content_headers

__all__ = ["ListResource", "StatResource", "ContentResource", "TransferResource", "DeleteResource",
           "MkdirResource"]

CHUNK = 1 << 20
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
PATH = ("path", True, "a path in the caller's tree")


class ListResource:
    spec = {"get": {"summary": "List a folder (paged)", "tags": ["fs"],
                    "params": [PATH, ("limit", False, "entries per page (1-5000, default 1000)"),
                               ("cursor", False, "next_cursor of the previous page")],
                    "responses": {200: Listing}}}

    def __init__(self, gw: Any) -> None:
        self.ops = gw.ops

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        path = param(req, "path")
        try:
            limit = min(5000, max(1, int(req.get_param("limit") or 1000)))
            start = int(req.get_param("cursor") or 0)
            if start < 0:
                raise ValueError
        except ValueError:
            raise E.BadRequest("limit and cursor must be non-negative integers") from None
        items, more = [], False
        for i, e in enumerate(self.ops.list(req.context.session, path)):
            if i < start:
                continue
            if len(items) == limit:
                more = True
                break
            items.append(item(e))
        resp.media = {"path": self.ops.stat(req.context.session, path).path, "items": items,
                      "next_cursor": str(start + limit) if more else None}


class StatResource:
    spec = {"get": {"summary": "Metadata of a file or folder", "tags": ["fs"], "params": [PATH],
                    "responses": {200: Item}}}

    def __init__(self, gw: Any) -> None:
        self.ops = gw.ops

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = item(self.ops.stat(req.context.session, param(req, "path")))


def _stream(f: Any, length: int | None) -> Iterator[bytes]:
    try:
        while length is None or length > 0:
            block = f.read(CHUNK if length is None else min(CHUNK, length))
            if not block:
                break
            if length is not None:
                length -= len(block)
            yield block
    finally:
        f.close()


class ContentResource:
    spec = {
        "get": {"summary": "Download a file (Range supported)", "tags": ["fs"], "params": [PATH],
                "responses": {200: "binary", 206: "binary", 416: None}},
        "put": {"summary": "Upload a file (streamed; replaces)", "tags": ["fs"], "params": [PATH],
                "body": "binary", "responses": {200: Item, 201: Item}},
    }

    def __init__(self, gw: Any) -> None:
        self.ops = gw.ops

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        s, path = req.context.session, param(req, "path")
        entry = self.ops.stat(s, path)
        if entry.is_dir:
            raise E.IsADirectory(f"{entry.path}: is a folder", entry.path)
        start, end = 0, entry.size - 1
        rng = req.get_header("Range")
        m = _RANGE.match(rng.strip()) if rng else None
        if m and (m.group(1) or m.group(2)):
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), entry.size - 1) if m.group(2) else entry.size - 1
            else:
                start = max(0, entry.size - int(m.group(2)))
            if start >= entry.size or start > end:
                resp.status = falcon.HTTP_416
                resp.set_header("Content-Range", f"bytes */{entry.size}")
                resp.media = {"error": f"range not satisfiable for a file of {entry.size} bytes"}
                return
            resp.status = falcon.HTTP_206
            resp.set_header("Content-Range", f"bytes {start}-{end}/{entry.size}")
        f, entry = self.ops.open_read(s, path, start)
        length = max(0, end - start + 1)
        resp.content_type = "application/octet-stream"
        resp.set_header("Accept-Ranges", "bytes")
        for name, value in content_headers(entry.name, resp.content_type):
            resp.set_header(name, value)
        if entry.etag:
            resp.etag = entry.etag
        resp.content_length = length
        resp.stream = _stream(f, length)

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        s, path = req.context.session, param(req, "path")
        existed = self.ops.exists(s, path)
        up = self.ops.open_write(s, path)
        # falcon's bounded_stream reads nothing of a chunked body (no Content-Length);
        # the server's own stream ends with it.
        stream = req.bounded_stream if req.content_length is not None else req.stream
        try:
            while True:
                block = stream.read(CHUNK)
                if not block:
                    break
                up.write(block)
        except BaseException:
            up.abort()
            raise
        resp.media = item(up.commit())
        resp.status = falcon.HTTP_200 if existed else falcon.HTTP_201




class TransferResource:
    """POST /fs/copy and /fs/move."""

    def __init__(self, gw: Any, op: str) -> None:
        self.ops = gw.ops
        self.op = op
        self.spec = {"post": {"summary": f"{op.capitalize()} a file or folder", "tags": ["fs"], "body": Transfer,
                              "responses": {201: Item, 202: Accepted}}}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        b = body(req, Transfer)
        call = self.ops.copy if self.op == "copy" else self.ops.move
        out = call(req.context.session, b.from_, b.to, overwrite=b.overwrite,
                   budget_s=0 if wants_async(req) else None)
        if out.backgrounded:
            accepted(req, resp, self.ops, out)
            return
        resp.status = falcon.HTTP_201
        entry = out.entry or self.ops.stat(req.context.session, b.to)
        resp.location = f"/api/v1/fs/stat?path={falcon.uri.encode_value(entry.path)}"
        resp.media = item(entry)


class DeleteResource:
    spec = {"post": {"summary": "Delete a file or folder tree", "tags": ["fs"], "body": PathBody,
                     "responses": {200: Deleted, 202: Accepted}}}

    def __init__(self, gw: Any) -> None:
        self.ops = gw.ops

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        b = body(req, PathBody)
        path = b.path or b.from_
        if not path:
            raise E.BadRequest("path: field required")
        out = self.ops.delete(req.context.session, path, recursive=True, budget_s=0 if wants_async(req) else None)
        if out.backgrounded:
            accepted(req, resp, self.ops, out)
            return
        resp.media = {"path": out.entry.path if out.entry else path, "status": "deleted"}


class MkdirResource:
    spec = {"post": {"summary": "Create a folder", "tags": ["fs"], "body": PathBody, "responses": {201: Item}}}

    def __init__(self, gw: Any) -> None:
        self.ops = gw.ops

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        b = body(req, PathBody)
        if not b.path:
            raise E.BadRequest("path: field required")
        resp.status = falcon.HTTP_201
        resp.media = item(self.ops.mkdir(req.context.session, b.path))
