"""The virtual tree: one path normaliser and the mount table.

Every path a client sends goes through :func:`normalise` once; only the
normalised value travels further. A user's path becomes a *global* path by
prefixing their home (:func:`to_global`), and only :meth:`Namespace.resolve`
turns a global path into (mount, backend path).
"""

from __future__ import annotations

import posixpath
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.errors import BadRequest, NotFound
from gateway.nameform import NAME_FORMS, name_form, set_name_form
from gateway.types import RESERVED_PREFIX

if TYPE_CHECKING:
    from collections.abc import Iterable

    from backends.base import Backend

__all__ = [
    "normalise",
    "to_global",
    "to_user",
    "is_under",
    "overlaps",
    "parent_of",
    "name_of",
    "join",
    "RESERVED_PREFIX",
    "NAME_FORMS",
    "name_form",
    "set_name_form",
    "Mount",
    "Namespace",
]

MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096



def normalise(path: str | bytes, cwd: str = "/") -> str:
    """Return ``path`` as an absolute, POSIX path normalised to
    :func:`name_form` (NFC by default).

    Relative paths are taken from ``cwd`` (itself normalised). ``.`` and empty
    components vanish and ``..`` never climbs above ``/`` (chroot semantics).

    Raises BadRequest for: bytes that are not UTF-8, NUL characters, a
    component over 255 bytes, a path over 4096 bytes, a component that starts
    with the reserved prefix ``.gw-``.
    """
    # Already in normal form (the usual case: every request's path is
    # normalised more than once): ASCII is the same in every Unicode form,
    # and no part is empty, ".", "..", reserved or too long.
    if (path.__class__ is str and path.isascii() and path[:1] == "/" and len(path) <= MAX_NAME_BYTES
            and path[-1] != "/" and "//" not in path and "/." not in path and "\x00" not in path):
        return path
    if isinstance(path, bytes):
        try:
            path = path.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("path is not valid UTF-8") from None
    if not isinstance(path, str):
        raise BadRequest("path must be a string")
    if "\x00" in path:
        raise BadRequest("path contains a NUL character")
    try:
        path = unicodedata.normalize(name_form(), path)
        encoded_len = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        raise BadRequest("path is not valid Unicode (lone surrogate)") from None
    if encoded_len > MAX_PATH_BYTES:
        raise BadRequest(f"path is longer than {MAX_PATH_BYTES} bytes")
    if not path.startswith("/"):
        path = (cwd.rstrip("/") if cwd != "/" else "") + "/" + path
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        if len(part.encode("utf-8")) > MAX_NAME_BYTES:
            raise BadRequest(f"name {part[:40]!r}... is longer than {MAX_NAME_BYTES} bytes")
        if part.startswith(RESERVED_PREFIX):
            raise BadRequest(f"names starting with {RESERVED_PREFIX!r} are reserved")
        parts.append(part)
    return "/" + "/".join(parts)


def to_global(home: str, user_path: str) -> str:
    """The global path of a normalised user path (the user's ``/`` is ``home``)."""
    if home == "/":
        return user_path
    return home if user_path == "/" else home + user_path


def to_user(home: str, global_path: str) -> str:
    """Inverse of :func:`to_global` for a path at or under ``home``."""
    if home == "/":
        return global_path
    rest = global_path[len(home):]
    return rest or "/"


def is_under(path: str, root: str) -> bool:
    """``path`` equals ``root`` or lies below it (both normalised)."""
    return root == "/" or path == root or path.startswith(root + "/")


def overlaps(a: str, b: str) -> bool:
    return is_under(a, b) or is_under(b, a)


def parent_of(path: str) -> str:
    i = path.rfind("/")
    if i <= 0:
        return "/"
    head = path[:i]
    return head if head[-1] != "/" else posixpath.dirname(path) or "/"  # "//": as posixpath strips it


def name_of(path: str) -> str:
    return posixpath.basename(path)


def join(base: str, rel: str) -> str:
    """``base`` + a relative path made of already-normalised components."""
    if not rel:
        return base
    return (base.rstrip("/") or "") + "/" + rel


def rel_of(path: str, root: str) -> str:
    """The part of ``path`` below ``root`` ('' for root itself)."""
    if path == root:
        return ""
    return path[len(root.rstrip("/")) + 1:]


@dataclass(frozen=True)
class Mount:
    """A backend attached at a global virtual path."""

    path: str
    backend: "Backend"

    def backend_path(self, global_path: str) -> str:
        return self.backend.join(rel_of(global_path, self.path))


class Namespace:
    """The mount table. Longest prefix wins; ancestors of mount points that no
    mount covers are virtual folders."""

    def __init__(self, mounts: list[Mount]) -> None:
        self.mounts = sorted(mounts, key=lambda m: len(m.path), reverse=True)

    def mount_for(self, path: str) -> Mount | None:
        for m in self.mounts:
            if is_under(path, m.path):
                return m
        return None

    def resolve(self, path: str) -> tuple[Mount, str]:
        """(mount, backend path) for a global path.

        Raises NotFound when no mount covers the path (a virtual folder is
        reported by :meth:`is_virtual_dir`, not resolved).
        """
        m = self.mount_for(path)
        if m is None:
            raise NotFound(f"{path}: no such file or folder", path)
        return m, m.backend_path(path)

    def is_mount_point(self, path: str) -> bool:
        return any(m.path == path for m in self.mounts)

    def contains_mount_point(self, path: str) -> bool:
        """A mount point is at or below ``path`` (it cannot be moved or deleted)."""
        return any(is_under(m.path, path) for m in self.mounts)

    def is_virtual_dir(self, path: str) -> bool:
        """``path`` is an ancestor of a mount point and no mount covers it."""
        return self.mount_for(path) is None and any(
            is_under(m.path, path) and m.path != path for m in self.mounts
        )

    def fence_homes(self, homes: "Iterable[str]") -> None:
        """Tell each mount which users' home folders (global paths) lie
        inside it: a path in one may not lead out of it through a link."""
        homes = set(homes)
        for m in self.mounts:
            m.backend.fence(m.backend_path(h) for h in homes if h != m.path and self.mount_for(h) is m)

    def child_mount_names(self, path: str) -> list[str]:
        """Names of the folders directly below ``path`` that exist only because a
        mount point is at or below them."""
        names = set()
        for m in self.mounts:
            if m.path != path and is_under(m.path, path):
                names.add(rel_of(m.path, path).split("/", 1)[0])
        return sorted(names)
