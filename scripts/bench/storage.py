"""Where each server keeps its files, seen directly by the benchmark: to lay
out fixtures without going through a protocol, to check a result, and to
tell when a backgrounded operation has really finished."""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__all__ = ["LocalStorage", "S3Storage"]


class LocalStorage:
    """A server's folder on local disk. ``owner`` (uid, gid): the account the
    server works as (vsftpd and sshd sessions run as the bench user), given
    the folders the harness makes so the server can change them."""

    remote = False

    def __init__(self, root: Path, owner: tuple[int, int] | None = None) -> None:
        self.root = root
        self.owner = owner
        root.mkdir(parents=True, exist_ok=True)
        self._chown(root)

    def _chown(self, path: Path) -> None:
        if self.owner:
            os.chown(path, *self.owner)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def exists(self, rel: str) -> bool:
        return os.path.lexists(self.path(rel))

    def size(self, rel: str) -> int:
        try:
            return os.stat(self.path(rel)).st_size
        except OSError:
            return -1

    def count(self, rel: str) -> int:
        """Files anywhere under folder ``rel`` (0 when it is missing)."""
        return sum(len(files) for _, _, files in os.walk(self.path(rel)))

    def link_file(self, src: Path, rel: str) -> None:
        """``rel`` as a hard link to ``src`` (same disk: instant, no copy)."""
        dst = self.path(rel)
        if not dst.exists():
            os.link(src, dst)

    def link_tree(self, src: Path, rel: str) -> None:
        """A copy of folder ``src`` at ``rel`` whose files are hard links."""
        for folder, dirs, files in os.walk(src):
            target = self.path(rel) / os.path.relpath(folder, src)
            target.mkdir(parents=True, exist_ok=True)
            self._chown(target)
            for name in files:
                os.link(os.path.join(folder, name), target / name)

    def empty_files(self, rel: str, n: int) -> None:
        folder = self.path(rel)
        if folder.exists() and self.count(rel) == n:
            return
        folder.mkdir(parents=True, exist_ok=True)
        self._chown(folder)
        for i in range(n):
            (folder / f"e{i:06d}").touch()

    def remove(self, rel: str) -> None:
        p = self.path(rel)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            try:
                p.unlink()
            except OSError:
                pass


class S3Storage:
    """A prefix of a bucket on the moto server (``boto3`` client)."""

    remote = True

    def __init__(self, client, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/"

    def _key(self, rel: str) -> str:
        return self.prefix + rel.strip("/")

    def _keys(self, rel: str, limit: int | None = None) -> list[str]:
        keys: list[str] = []
        kwargs = {"Bucket": self.bucket, "Prefix": self._key(rel) + "/"}
        if limit:
            kwargs["MaxKeys"] = limit
        while True:
            page = self.client.list_objects_v2(**kwargs)
            # A key ending in "/" is a folder marker (the gateway writes one per folder), not an object.
            keys += [o["Key"] for o in page.get("Contents", ()) if not o["Key"].endswith("/")]
            if limit and len(keys) >= limit or not page.get("IsTruncated"):
                return keys
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def exists(self, rel: str) -> bool:
        return bool(self._keys(rel, limit=1))

    def count(self, rel: str) -> int:
        return len(self._keys(rel))

    def put_objects(self, rel: str, n: int, body: bytes) -> None:
        prefix = self._key(rel)
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: self.client.put_object(Bucket=self.bucket, Key=f"{prefix}/f{i:05d}",
                                                           Body=body), range(n)))

    def remove(self, rel: str) -> None:
        keys = self._keys(rel) + [self._key(rel) + "/"]
        for i in range(0, len(keys), 1000):
            self.client.delete_objects(Bucket=self.bucket,
                                       Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})
