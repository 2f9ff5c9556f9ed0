"""S3 mounts (s3fs): ``s3://bucket/prefix``.

Folders are key prefixes. **Directory markers** (zero-byte ``folder/``
objects): with the mount option ``directory_markers = false`` (the default,
as rclone) a marker stands only for an empty folder: one a user made (mkdir,
or an empty folder copied or moved), or one whose last file or sub-folder
was deleted or moved out on its own (:meth:`S3Backend.emptied`: the folder
stays until it is removed, as on a file system); it goes when the folder
gets content or is removed, and a tree a job moves, copies or deletes gets
none inside it, so the bucket holds exactly the keys a user expects. With
``true`` every folder the gateway makes keeps its marker (as the AWS
console does).

A copy inside the mount is CopyObject (server-side; past S3's 5 GiB limit a
multipart UploadPartCopy), ``copy_concurrency`` copy requests at once on the
mount (default 16: a job's copies, and the parts of a big file's copy, share
them); deletes go 1,000 keys per DeleteObjects. Uploads stream in
parts of 5 MiB (memory per upload: a few parts). A multipart copy or
upload that fails or is dropped is aborted: its parts are not left behind.
Modification times are kept in the ``mtime`` user metadata
(``X-Amz-Meta-Mtime``, seconds with a fraction, as rclone writes and reads
them): set by an upload (its time) or by a client (SETSTAT, MFMT,
X-OC-Mtime: a CopyObject of the object onto itself), carried by copies
and moves; an object without it shows its LastModified. Listings read the metadata with one HEAD per object not
seen before (kept per ETag and date; ``listing_mtimes = false`` shows
LastModified in listings instead and reads the metadata on a stat only).
Checksums without reading data: the ETag of a single-part object is its
MD5 (set ``etag_is_md5 = false`` for buckets where it is not, e.g.
SSE-KMS), and ChecksumSHA256 of an object stored with one is its SHA-256.

Options are s3fs's (``key``, ``secret``, ``token``, ``endpoint_url``,
``client_kwargs``...); without ``key``/``secret`` botocore's usual chain
applies (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, profiles, roles).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as _dt
import posixpath
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Iterable, Iterator, NamedTuple

from fsspec.asyn import sync

from backends.base import Backend, Writer
from gateway import errors as E
from gateway import metrics
from gateway.types import RESERVED_PREFIX, Entry

__all__ = ["S3Backend", "s3_options", "gateway_options", "count_requests", "mtime_text", "parse_mtime"]

#: The user metadata key of the modification time (rclone's).
META_MTIME = "mtime"
#: S3's largest CopyObject; larger objects are copied in parts.
COPY_LIMIT = 5 << 30
#: Part size of a multipart server-side copy.
COPY_PART = 512 << 20
#: Part size of a streamed upload (S3's smallest part): the memory one upload holds.
UPLOAD_PART = 5 << 20
#: HEAD requests a listing runs at once to read times.
_HEADS_AT_ONCE = 16
#: Objects whose metadata a mount remembers (per ETag and date).
_MEMO = 50_000

#: DeleteObjects' per-key error codes that are not a plain storage error.
_DELETE_ERRORS: dict[str, type[E.GatewayError]] = {
    "AccessDenied": E.PermissionDenied,
    "InternalError": E.BackendUnavailable,
    "SlowDown": E.BackendUnavailable,
    "ServiceUnavailable": E.BackendUnavailable,
}


def mtime_text(t: float) -> str:
    """``t`` as rclone writes ``X-Amz-Meta-Mtime``: seconds, and a fraction
    of up to 9 digits when there is one."""
    return f"{t:.9f}".rstrip("0").rstrip(".")


def parse_mtime(text: Any) -> float | None:
    """The time in a ``mtime`` metadata value, None when it is not one."""
    try:
        t = float(text)
    except (TypeError, ValueError):
        return None
    return t if t == t and abs(t) < 1e11 else None  # not NaN, a plausible date


def gateway_options(options: dict[str, Any], copy_concurrency: int) -> dict[str, Any]:
    """Take the gateway's own S3 mount options out of ``options`` (the rest
    are s3fs's): ``directory_markers`` (false), ``listing_mtimes`` (true),
    ``copy_concurrency`` (default given). Raises BadRequest naming a bad one."""
    out: dict[str, Any] = {}
    for name, default in (("directory_markers", False), ("listing_mtimes", True)):
        value = options.pop(name, default)
        if not isinstance(value, bool):
            raise E.BadRequest(f"mount option {name}: expected true or false, got {value!r}")
        out[name] = value
    n = options.pop("copy_concurrency", copy_concurrency)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1000:
        raise E.BadRequest(f"mount option copy_concurrency: expected a whole number from 1 to 1000, got {n!r}")
    out["copy_concurrency"] = n
    return out


def s3_options(options: dict[str, Any], timeout_s: float, copy_concurrency: int) -> dict[str, Any]:
    """s3fs options with the mount's timeout. Retries belong to the mount
    (Backend.retries, and the job runner's step retries), so botocore's are
    off (and s3fs's: see the registry); fsspec's listing cache is off too
    (the mount keeps its own, invalidated by the gateway's writes). The
    connection pool holds a job's ``copy_concurrency`` copies and a
    listing's HEADs at once (botocore's default of 10 would queue copies
    past the tenth)."""
    opts = dict(options)
    opts["use_listings_cache"] = False
    opts["skip_instance_cache"] = True
    config = dict(opts.get("config_kwargs") or {})
    config.setdefault("connect_timeout", timeout_s)
    config.setdefault("read_timeout", timeout_s)
    config.setdefault("max_pool_connections", copy_concurrency + _HEADS_AT_ONCE)
    config.setdefault("retries", {"max_attempts": 1, "mode": "standard"})
    opts["config_kwargs"] = config
    return opts


def count_requests(fs: Any) -> None:
    """Count every S3 API call of ``fs`` in the metric
    ``gateway_storage_requests_total{storage="s3"}`` (a botocore event hook
    on the session its clients are made from)."""
    from aiobotocore.session import AioSession

    if fs.session is None:
        fs.session = AioSession(**fs.kwargs)
        fs._session_is_owned = False  # kept when s3fs reconnects, with the hook

    def counted(model: Any = None, **_: Any) -> None:
        metrics.storage_request("s3", getattr(model, "name", "unknown"))

    fs.session.register("before-call.s3", counted)


class _Head(NamedTuple):
    """What a HEAD of an object said (kept per object, ETag and date)."""
    etag: str
    modified: int  # LastModified, whole seconds (listings give milliseconds, HEAD seconds)
    size: int
    mtime: float | None  # the ``mtime`` metadata
    sha256: str | None  # hex, of a whole object stored with ChecksumSHA256
    content_type: str | None
    metadata: dict[str, str]


def _seconds(v: Any) -> int:
    if isinstance(v, _dt.datetime):
        return int(v.timestamp())
    return 0


class S3Backend(Backend):
    """An S3 prefix. ``directory_markers``: every folder made keeps a marker
    (else only empty ones); ``listing_mtimes``: listings show the ``mtime``
    metadata (one HEAD per object not seen before)."""

    def __init__(self, *args: Any, directory_markers: bool = False, listing_mtimes: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.directory_markers = directory_markers
        self.listing_mtimes = listing_mtimes
        self._memo_lock = threading.Lock()
        self._heads: OrderedDict[str, _Head] = OrderedDict()
        #: folder path → whether it has a marker, as last seen by this process
        self._marked: OrderedDict[str, bool] = OrderedDict()
        #: copy requests in flight (see :meth:`_copy_slot`), made on the loop at first use
        self._copy_slots: asyncio.Semaphore | None = None

    # -- keys and small memories ---------------------------------------------------

    def _marker(self, path: str) -> str:
        return path.rstrip("/") + "/"

    def _is_root(self, path: str) -> bool:
        return path.rstrip("/") == self.root.rstrip("/")

    def _split(self, path: str) -> tuple[str, str]:
        bucket, key, _ = self.fs.split_path(path)
        return bucket, key

    def _call(self, method: str, **kwargs: Any) -> Any:
        return sync(self.fs.loop, self.fs._call_s3, method, **kwargs)

    def _remember(self, memo: OrderedDict, key: str, value: Any) -> None:
        with self._memo_lock:
            memo[key] = value
            memo.move_to_end(key)
            while len(memo) > _MEMO:
                memo.popitem(last=False)

    def _forget(self, path: str) -> None:
        with self._memo_lock:
            self._heads.pop(path.rstrip("/"), None)

    def invalidate(self, path: str | None = None) -> None:
        super().invalidate(path)
        if path is None:
            with self._memo_lock:
                self._heads.clear()
                self._marked.clear()

    # -- reads ---------------------------------------------------------------------

    async def _ahead(self, path: str) -> _Head:
        bucket, key = self._split(path)
        out = await self.fs._call_s3("head_object", Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        meta = {k.lower(): v for k, v in (out.get("Metadata") or {}).items()}
        sha = out.get("ChecksumSHA256")
        hexsha = None
        if sha and "-" not in sha and out.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
            try:
                hexsha = base64.b64decode(sha).hex()
            except ValueError:
                hexsha = None
        head = _Head(str(out.get("ETag", "")).strip('"'), _seconds(out.get("LastModified")),
                     int(out.get("ContentLength") or 0), parse_mtime(meta.get(META_MTIME)), hexsha,
                     out.get("ContentType"), meta)
        self._remember(self._heads, path.rstrip("/"), head)
        return head

    def _head(self, path: str) -> _Head:
        """HEAD of the object ``path`` (inside ``_io``). Raises NotFound."""
        return sync(self.fs.loop, self._ahead, path)

    def _known(self, path: str, etag: str | None, modified: int | None) -> _Head | None:
        """The remembered HEAD of ``path`` if it is of this version (ETag,
        and LastModified unless None), else None."""
        with self._memo_lock:
            h = self._heads.get(path.rstrip("/"))
        if h is not None and h.etag == (etag or "").strip('"') and (
                modified is None or abs(h.modified - modified) <= 1):
            return h
        return None

    def _file_entry(self, path: str, h: _Head) -> Entry:
        mtime = h.mtime if h.mtime is not None else float(h.modified)
        return Entry(posixpath.basename(path.rstrip("/")), path, False, h.size, mtime, h.etag or None)

    def _info(self, path: str) -> Entry:
        if self._is_root(path):
            return Entry(posixpath.basename(path), path, True)
        try:
            h = self._head(path)
        except FileNotFoundError:
            h = None
        if h is not None:
            return self._file_entry(path, h)
        # Not an object: a folder when anything lies under its prefix (a
        # marker sorts first, so one key also says whether it has one).
        bucket, key = self._split(path)
        prefix = key.rstrip("/") + "/"
        out = self._call("list_objects_v2", Bucket=bucket, Prefix=prefix, MaxKeys=1)
        contents = out.get("Contents") or []
        if not contents:
            raise FileNotFoundError(path)
        self._remember(self._marked, path.rstrip("/"), contents[0]["Key"] == prefix)
        return Entry(posixpath.basename(path.rstrip("/")), path, True)

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
        # s3fs lists the folder's own marker too: what filled() needs to know
        self._remember(self._marked, base, any(i["name"] == base + "/" for i in listing))
        if self.listing_mtimes:
            self._with_mtimes(listing)
        return own, self._entries(path, listing)

    def _with_mtimes(self, listing: list[dict[str, Any]]) -> None:
        """Put each file's ``mtime`` metadata into its listing item (a HEAD
        each for those not seen before, a few at once)."""
        wanted = []
        for item in listing:
            name = item["name"]
            if item.get("type") == "directory" or name.endswith("/") or \
                    posixpath.basename(name).startswith(RESERVED_PREFIX):
                continue  # folders, the folder's own marker, the gateway's temporaries
            h = self._known(item["name"], item.get("ETag"), _seconds(item.get("LastModified")))
            if h is None:
                wanted.append(item)
            else:
                item["mtime"] = self._file_entry(name, h).mtime

        async def heads() -> list[Any]:
            gate = asyncio.Semaphore(_HEADS_AT_ONCE)

            async def one(name: str) -> Any:
                async with gate:
                    try:
                        return await self._ahead(name)
                    except FileNotFoundError:  # deleted since the LIST
                        return None

            return await asyncio.gather(*(one(i["name"]) for i in wanted))

        if wanted:
            for item, h in zip(wanted, sync(self.fs.loop, heads)):
                if h is not None:  # the time a stat shows: the metadata's, else LastModified's second
                    item["mtime"] = self._file_entry(item["name"], h).mtime

    def walk(self, path: str) -> Iterator[tuple[str, Entry]]:
        """As :meth:`Backend.walk`, from one flat LIST of the prefix (1,000
        keys a request, whatever the depth): S3 lists keys in order, so the
        keys under a folder are contiguous and each folder shows before its
        content; memory grows with depth. Entries carry LastModified (no
        HEADs: a job's enumeration needs names and sizes)."""
        bucket, key = self._split(path)
        prefix = key.rstrip("/") + "/" if key else ""
        base = path.rstrip("/")
        chain: list[str] = []  # the folders (relative) of the previous key
        token = None
        while True:
            kw: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": 1000}
            if token:
                kw["ContinuationToken"] = token
            page = self._idempotent(lambda: self._call("list_objects_v2", **kw))
            for o in page.get("Contents") or []:
                rel = o["Key"][len(prefix):]
                parts = rel.rstrip("/").split("/")
                if not rel or any(not p or p.startswith(RESERVED_PREFIX) for p in parts):
                    continue
                marker = rel.endswith("/")
                folders = parts if marker else parts[:-1]
                for i in range(len(folders)):
                    frel = "/".join(folders[:i + 1])
                    if i < len(chain) and chain[i] == frel:
                        continue
                    del chain[i:]
                    chain.append(frel)
                    yield frel, Entry(folders[i], f"{base}/{frel}", True)
                del chain[len(folders):]
                if not marker:
                    modified = o.get("LastModified")
                    yield rel, Entry(parts[-1], f"{base}/{rel}", False, int(o.get("Size") or 0),
                                     modified.timestamp() if isinstance(modified, _dt.datetime) else None,
                                     str(o.get("ETag", "")).strip('"') or None)
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    def checksum(self, path: str, algorithm: str) -> str | None:
        """MD5 from the ETag of a single-part object; SHA-256 from the
        ChecksumSHA256 of an object stored with one (a HEAD, remembered per
        ETag). None otherwise: the caller reads the content."""
        if algorithm not in self.capabilities.checksums:
            return None
        if algorithm == "md5":
            return super().checksum(path, algorithm)
        if algorithm == "sha256":
            e = self.info(path)
            if e.is_dir:
                raise E.IsADirectory("is a folder")
            h = self._known(path, e.etag, None)
            if h is None:
                h = self._idempotent(lambda: self._head(path))
            return h.sha256
        return None

    # -- writes --------------------------------------------------------------------

    def open_write(self, path: str, offset: int = 0, temp_key: str | None = None) -> Writer:
        """Streamed in parts of :data:`UPLOAD_PART` (one part in memory at a
        time), the upload's time in the ``mtime`` metadata. The upload shows
        at once when committed, so the parent's empty-folder marker goes then;
        a job's writes (``temp_key``) leave that to the job's commit."""
        if offset:
            return self._open_continue(path, offset)
        with self._io():
            f = self.fs.open(path, "wb", block_size=UPLOAD_PART, Metadata={META_MTIME: mtime_text(time.time())})

        def commit(fh: Any) -> None:
            try:
                fh.close()
            finally:
                self._forget(path)
                self.invalidate(path)
            if temp_key is None:
                self.filled(path)

        def abort(fh: Any) -> None:
            fh.discard()  # AbortMultipartUpload of the parts sent so far
            fh.closed = True  # else fsspec's __del__ flushes the discarded file and fails

        return Writer(f, commit, abort, self._io)

    def set_mtime(self, path: str, mtime: float) -> bool:
        """Rewrite the object's ``mtime`` metadata (a CopyObject onto itself
        keeping its other metadata and type; in parts past 5 GiB). False
        for a folder: a prefix has no time of its own."""
        try:
            with self._io():
                h = self._head(path)
        except E.NotFound:
            if self.info(path).is_dir:
                return False
            raise
        with self._io():
            kwargs: dict[str, Any] = {"Metadata": {**h.metadata, META_MTIME: mtime_text(mtime)}}
            if h.content_type:
                kwargs["ContentType"] = h.content_type
            self._copy(path, path, h.size, replace=kwargs)
        self._forget(path)
        self.invalidate(path)
        return True

    def _copy(self, src: str, dst: str, size: int, replace: dict[str, Any] | None = None) -> None:
        """CopyObject (its metadata too; ``replace``: new metadata and type),
        multipart UploadPartCopy past S3's 5 GiB limit (inside ``_io``)."""
        if size > COPY_LIMIT:
            if replace is None:
                h = self._head(src)
                replace = {"Metadata": h.metadata, **({"ContentType": h.content_type} if h.content_type else {})}
            sync(self.fs.loop, self._copy_parts, src, dst, size, replace)
            return
        sb, sk = self._split(src)
        db, dk = self._split(dst)
        extra = {"MetadataDirective": "REPLACE", **replace} if replace is not None else {}
        sync(self.fs.loop, self._copy_request, "copy_object", Bucket=db, Key=dk, CopySource={"Bucket": sb, "Key": sk},
             **extra)

    async def _copy_request(self, method: str, **kwargs: Any) -> Any:
        """A CopyObject or UploadPartCopy, once one of the mount's
        ``copy_concurrency`` slots is free: a job's copies (each in its own
        thread) and the parts of a big file's copy share them, so no more go
        at once than the connection pool holds (a request waiting for a
        connection would count the wait against its connect timeout)."""
        if self._copy_slots is None:  # on the loop: no other coroutine runs meanwhile
            self._copy_slots = asyncio.Semaphore(max(1, self.capabilities.copy_fan_out))
        async with self._copy_slots:
            return await self.fs._call_s3(method, **kwargs)

    async def _copy_parts(self, src: str, dst: str, size: int, create: dict[str, Any]) -> None:
        """Multipart UploadPartCopy in parts of :data:`COPY_PART`, as many at
        once as the mount's copy slots allow (a 20 GiB file is 40 parts); a
        copy that fails is aborted, so its parts are not left in the bucket
        (and billed)."""
        sb, sk = self._split(src)
        db, dk = self._split(dst)
        call = self.fs._call_s3
        upload = (await call("create_multipart_upload", Bucket=db, Key=dk, **create))["UploadId"]

        async def part(number: int, start: int) -> dict[str, Any]:
            out = await self._copy_request("upload_part_copy", Bucket=db, Key=dk, UploadId=upload,
                                           PartNumber=number, CopySource={"Bucket": sb, "Key": sk},
                                           CopySourceRange=f"bytes={start}-{min(start + COPY_PART, size) - 1}")
            return {"PartNumber": number, "ETag": out["CopyPartResult"]["ETag"]}

        tasks = [asyncio.ensure_future(part(n, start)) for n, start in enumerate(range(0, size, COPY_PART), 1)]
        try:
            parts = await asyncio.gather(*tasks)
            await call("complete_multipart_upload", Bucket=db, Key=dk, UploadId=upload,
                       MultipartUpload={"Parts": list(parts)})
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # none still copying when the upload is aborted
            try:
                await call("abort_multipart_upload", Bucket=db, Key=dk, UploadId=upload)
            except Exception:  # noqa: BLE001 - the server may be gone: the copy's own error is the one to raise
                pass
            raise

    def copy_file(self, src: str, dst: str, size: int | None = None) -> int:
        """CopyObject; ``size`` (a job knows it from its journal) saves a
        HEAD per object."""
        try:
            with self._io():
                if size is None:
                    size = self.info(src).size
                self._copy(src, dst, size)
        finally:
            self._forget(dst)
            self.invalidate(dst)
        self.filled(dst)
        return size

    def remove_many(self, paths: list[str], folders: Iterable[str] = ()) -> None:
        """DeleteObjects, 1,000 keys a call (missing keys count as deleted),
        the folders' markers in the same calls (a marker of a folder that got
        new content meanwhile can go: the content keeps the folder). Raises
        the first refusal it reports: a batch that comes back with errors is
        not done."""
        keys = list(paths) + [self._marker(f) for f in folders]
        step = self.capabilities.batch_remove
        for i in range(0, len(keys), step):
            part = keys[i:i + step]
            bucket = self._split(part[0])[0]
            objects = [{"Key": self._split(p)[1].rstrip("/") + ("/" if p.endswith("/") else "")} for p in part]
            try:
                with self._io():
                    out = self._call("delete_objects", Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
            finally:
                for p in part:
                    self._forget(p)
                    if p.endswith("/"):
                        self._remember(self._marked, p.rstrip("/"), False)
                    self.invalidate(p.rstrip("/"))
            errors = out.get("Errors") or []
            if errors:
                # Count files; folder markers (which may not even exist) only when nothing else failed.
                files = [e for e in errors if not str(e.get("Key", "")).endswith("/")]
                asked = sum(1 for p in part if not p.endswith("/"))
                if files:
                    errors, part = files, part[:asked]
                first = errors[0]
                key = f"{bucket}/{first.get('Key', '')}"
                where = key[len(self.root):].lstrip("/") if key.startswith(self.root) else key
                cls = _DELETE_ERRORS.get(first.get("Code", ""), E.BackendError)
                raise cls(f"{len(errors)} of {len(part)} objects not deleted (first {where}: "
                          f"{first.get('Code')} {first.get('Message', '')}".rstrip() + ")", where)

    def remove(self, path: str, missing_ok: bool = False) -> None:
        self._forget(path)
        super().remove(path, missing_ok)

    # -- folders and their markers -------------------------------------------------

    def is_empty(self, path: str) -> bool:
        """One LIST of at most two keys: nothing under the prefix but its marker."""
        bucket, key = self._split(path)
        prefix = key.rstrip("/") + "/" if key else ""

        def call() -> bool:
            out = self._call("list_objects_v2", Bucket=bucket, Prefix=prefix, MaxKeys=2)
            return all(o["Key"] == prefix for o in out.get("Contents") or [])

        return self._idempotent(call)

    def _put_marker(self, path: str) -> None:
        self.fs.pipe_file(self._marker(path), b"")
        self._remember(self._marked, path.rstrip("/"), True)

    def _mkdir(self, path: str) -> None:
        self._put_marker(path)
        self.filled(path)

    def make_folder(self, path: str, empty: Callable[[], bool]) -> None:
        """A marker where ``directory_markers`` asks for one on every folder,
        or where the folder copied stays empty (the only way it exists);
        nothing else."""
        if self.directory_markers or empty():
            with self._io():
                self._put_marker(path)
        else:
            self._remember(self._marked, path.rstrip("/"), False)
        self.invalidate(path)

    def filled(self, path: str) -> None:
        """With ``directory_markers = false``: remove the marker of
        ``path``'s parent (one DeleteObject), unless this process saw that
        it has none. The mount's root keeps any marker it has."""
        if self.directory_markers:
            return
        parent = posixpath.dirname(path.rstrip("/"))
        if not parent or self._is_root(parent) or len(parent) < len(self.root.rstrip("/")):
            return
        with self._memo_lock:
            known = self._marked.get(parent)
        if known is False:
            return
        with self._io():
            self.fs.rm_file(self._marker(parent))  # S3 deletes are idempotent: no marker is fine
        self._remember(self._marked, parent, False)
        self.invalidate(parent)

    def emptied(self, path: str) -> None:
        """Keep ``path``'s parent as an empty folder when nothing else lies
        under it (one LIST of one key; then one PutObject of its marker):
        a client deleting a folder's files one by one, or moving its last
        file out, still finds the folder and removes it itself. The mount's
        root needs none."""
        parent = posixpath.dirname(path.rstrip("/"))
        if not parent or self._is_root(parent) or len(parent) < len(self.root.rstrip("/")):
            return
        bucket, key = self._split(parent)
        prefix = key.rstrip("/") + "/"
        with self._io():
            out = self._call("list_objects_v2", Bucket=bucket, Prefix=prefix, MaxKeys=1)
            if out.get("Contents"):
                if out["Contents"][0]["Key"] == prefix:
                    self._remember(self._marked, parent, True)
                return
            self._put_marker(parent)
        self.invalidate(parent)

    def _rmdir(self, path: str) -> None:
        if not self.is_empty(path):
            raise E.DirectoryNotEmpty("folder is not empty")
        with self._io():
            self.fs.rm_file(self._marker(path))  # S3 deletes are idempotent: no marker is fine
        self._remember(self._marked, path.rstrip("/"), False)
