"""A user as the core sees it: home, permissions, admin flag."""

from __future__ import annotations

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

    def allowed(self, permission: str, path: str) -> bool:
        """Whether this user may do ``permission`` on user-visible ``path``
        (already normalised)."""
        best, perms = -1, self.permissions
        for prefix, granted in self.path_permissions.items():
            if (path == prefix or prefix == "/" or path.startswith(prefix + "/")) and len(prefix) > best:
                best, perms = len(prefix), granted
        return permission in perms


def _expand(perms) -> frozenset[str]:
    perms = frozenset(perms)
    if "*" in perms:
        return frozenset(PERMISSIONS)
    unknown = perms - set(PERMISSIONS)
    if unknown:
        raise ValueError(f"unknown permission(s) {sorted(unknown)}; expected some of {list(PERMISSIONS)} or '*'")
    return perms
