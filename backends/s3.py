"""S3 mounts (s3fs): ``s3://bucket/prefix``.

Folders are key prefixes. ``mkdir`` writes a zero-byte ``folder/`` marker
object (the convention of the AWS console and most S3 tools), so an empty
folder made through the gateway lists; markers never show as files. A copy
inside the mount is CopyObject (server-side; s3fs switches to multipart
UploadPartCopy past 5 GiB); uploads over 5 MiB go multipart; the ETag of a
single-part object is its MD5, used as the native ``md5`` checksum (set
the option ``etag_is_md5 = false`` for buckets where it is not, e.g. SSE-KMS).

Options are s3fs's (``key``, ``secret``, ``token``, ``endpoint_url``,
``client_kwargs``...); without ``key``/``secret`` botocore's usual chain
applies (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, profiles, roles).
"""

from __future__ import annotations

import posixpath
from typing import Any

from fsspec.asyn import sync
from s3fs.core import MANAGED_COPY_THRESHOLD

from backends.base import Backend
from gateway import errors as E
from gateway.types import Entry

__all__ = ["S3Backend", "s3_options"]

#: DeleteObjects' per-key error codes that are not a plain storage error.
_DELETE_ERRORS: dict[str, type[E.GatewayError]] = {
    "AccessDenied": E.PermissionDenied,
    "InternalError": E.BackendUnavailable,
    "SlowDown": E.BackendUnavailable,
    "ServiceUnavailable": E.BackendUnavailable,
}


def s3_options(options: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """s3fs options with the mount's timeout. Retries belong to the mount
    (Backend.retries, and the job runner's step retries), so botocore's are
    off (and s3fs's: see the registry); fsspec's listing cache is off too
    (the mount keeps its own, invalidated by the gateway's writes)."""
    opts = dict(options)
    opts["use_listings_cache"] = False
    opts["skip_instance_cache"] = True
    config = dict(opts.get("config_kwargs") or {})
    config.setdefault("connect_timeout", timeout_s)
    config.setdefault("read_timeout", timeout_s)
    config.setdefault("retries", {"max_attempts": 1, "mode": "standard"})
    opts["config_kwargs"] = config
    return opts


class S3Backend(Backend):
    def _marker(self, path: str) -> str:
        return path.rstrip("/") + "/"

    def _is_root(self, path: str) -> bool:
        return path.rstrip("/") == self.root.rstrip("/")

    def _info(self, path: str) -> Entry:
        try:
            return super()._info(path)
        except FileNotFoundError:
            if self._is_root(path):  # an empty prefix is an empty mount, not a missing one
                return Entry(posixpath.basename(path), path, True)
            raise

    def _list(self, path: str) -> tuple[Entry, list[Entry]]:
        # One LIST answers both "what is in it" and "is it a folder" (a
        # prefix has no date of its own).
        own = Entry(posixpath.basename(path.rstrip("/")), path, True)
        try:
            listing = self.fs.ls(path, detail=True)
        except FileNotFoundError:
            if self._is_root(path):
                return own, []
            raise
        base = path.rstrip("/")
        if len(listing) == 1 and listing[0]["name"] == base and listing[0].get("type") != "directory":
            raise E.NotADirectory("not a folder")
        return own, self._entries(path, listing)

    def _server_copy(self, src: str, dst: str) -> int | None:
        # s3fs's cp_file HEADs the source for its size first; the listing
        # cache usually knows it, which saves a round trip per object.
        size = self.info(src).size
        if size > MANAGED_COPY_THRESHOLD:
            self.fs.cp_file(src, dst)  # multipart UploadPartCopy
        else:
            sync(self.fs.loop, self.fs._copy_basic, src, dst)
        return size

    def remove_many(self, paths: list[str]) -> None:
        """DeleteObjects, 1,000 keys a call (missing keys count as deleted).
        Raises the first refusal it reports: a batch that comes back with
        errors is not done."""
        step = self.capabilities.batch_remove
        for i in range(0, len(paths), step):
            part = paths[i:i + step]
            bucket = self.fs.split_path(part[0])[0]
            objects = [{"Key": self.fs.split_path(p)[1]} for p in part]
            try:
                with self._io():
                    out = sync(self.fs.loop, self.fs._call_s3, "delete_objects", Bucket=bucket,
                               Delete={"Objects": objects, "Quiet": True})
            finally:
                for p in part:
                    self.invalidate(p)
            errors = out.get("Errors") or []
            if errors:
                first = errors[0]
                key = f"{bucket}/{first.get('Key', '')}"
                where = key[len(self.root):].lstrip("/") if key.startswith(self.root) else key
                cls = _DELETE_ERRORS.get(first.get("Code", ""), E.BackendError)
                raise cls(f"{len(errors)} of {len(part)} objects not deleted (first {where}: "
                          f"{first.get('Code')} {first.get('Message', '')}".rstrip() + ")", where)

    def _mkdir(self, path: str) -> None:
        self.fs.pipe_file(self._marker(path), b"")

    def _rmdir(self, path: str) -> None:
        if self.listing(path):
            raise E.DirectoryNotEmpty("folder is not empty")
        with self._io():
            self.fs.rm_file(self._marker(path))  # S3 deletes are idempotent: no marker is fine
