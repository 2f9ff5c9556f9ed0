"""A user as the core sees it: home, permissions, admin flag."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

__all__ = ["User", "PERMISSIONS"]

#: Every permission a user can hold; "*" in a list means all of them.
PERMISSIONS = ("list", "download", "upload", "overwrite", "rename", "delete", "mkdir", "copy")


@dataclass
class User:
    """``home`` is a path in the gateway's global tree that is this user's ``/``.

    ``permissions`` apply everywhere unless ``path_permissions`` has an entry for
    the path or one of its ancestors (user-visible paths; the longest wins).
    """

    name: str
    home: str = "/"
    permissions: frozenset[str] = frozenset(PERMISSIONS)
    path_permissions: dict[str, frozenset[str]] = field(default_factory=dict)
    admin: bool = False
    password_hash: str | None = None
    authorized_keys: list[str] = field(default_factory=list)
    require_tls: bool = False

    def __post_init__(self) -> None:
        self.permissions = _expand(self.permissions)
        self.path_permissions = {
            (p.rstrip("/") or "/"): _expand(v) for p, v in self.path_permissions.items()
        }
        #: The rules' paths, sorted: the rules below a path are one slice.
        self._rule_paths = sorted(self.path_permissions)

    def granted(self, path: str) -> frozenset[str]:
        """The permissions that hold at user-visible ``path`` (normalised):
        those of the longest rule at or above it, else ``permissions``."""
        rules = self.path_permissions
        if not rules:
            return self.permissions
        probe = path
        while True:
            if probe in rules:
                return rules[probe]
            if probe == "/":
                return self.permissions
            probe = probe.rsplit("/", 1)[0] or "/"

    def allowed(self, permission: str, path: str) -> bool:
        """Whether this user may do ``permission`` on user-visible ``path``
        (already normalised)."""
        return permission in self.granted(path)

    def refused_in_tree(self, permission: str, path: str) -> str | None:
        """The first path at or below ``path`` where ``permission`` is not
        granted, or None when it holds on the whole tree: ``path``'s own
        rule and every rule set on a path below it. Costs a lookup per
        rule below ``path``, never a walk of the tree."""
        if permission not in self.granted(path):
            return path
        paths = self._rule_paths
        base = "/" if path == "/" else path + "/"
        i = bisect_left(paths, base)
        while i < len(paths) and paths[i].startswith(base):
            if permission not in self.path_permissions[paths[i]]:
                return paths[i]
            i += 1
        return None


def _expand(perms) -> frozenset[str]:
    perms = frozenset(perms)
    if "*" in perms:
        return frozenset(PERMISSIONS)
    unknown = perms - set(PERMISSIONS)
    if unknown:
        raise ValueError(f"unknown permission(s) {sorted(unknown)}; expected some of {list(PERMISSIONS)} or '*'")
    return perms
