"""Plain values passed between the core, the backends and the adapters."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from gateway.users import User

__all__ = ["Entry", "Session", "RESERVED_PREFIX"]

#: Names the gateway keeps for itself (upload temporaries, staging folders).
#: Clients can neither see nor address them. Here, in a module that imports
#: nothing of the project, so both the core and backends/ can use it.
RESERVED_PREFIX = ".gw-"


class Entry(NamedTuple):
    """One file or folder as a client sees it.

    ``path`` is the path in the asking user's tree; ``mtime`` is POSIX seconds
    (None when the backend keeps none); ``etag`` is a backend-provided version
    tag when there is one. A named tuple rather than a frozen dataclass: a
    listing makes two per member, and this builds them 3.5 times faster.
    """

    name: str
    path: str
    is_dir: bool
    size: int = 0
    mtime: float | None = None
    etag: str | None = None
    mode: int | None = None

    def renamed(self, path: str, name: str | None = None) -> "Entry":
        """This entry at ``path`` (whose last segment is ``name``, when known)."""
        if name is None:
            name = path.rstrip("/").rsplit("/", 1)[-1] or "/"
        return Entry(name, path, self.is_dir, self.size, self.mtime, self.etag, self.mode)


_counter = itertools.count(1)


@dataclass
class Session:
    """One client conversation: an FTP control connection, an SSH connection,
    or an HTTP user + ``Gateway-Session`` value.

    The id is what the view overlay keys the initiator's projected outcome on,
    so it must be unique per conversation and stable for its lifetime.
    """

    user: "User"
    protocol: str
    remote: str = ""
    id: str = field(default="")
    #: WebDAV lock tokens this request submitted (its If header): the
    #: user's own locks with these tokens do not bar its changes (see
    #: gateway.davstate). Empty for every other protocol.
    lock_tokens: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.id:
            self.id = f"{self.protocol}:{next(_counter)}:{secrets.token_hex(4)}"
