"""The one error hierarchy of the gateway.

Every layer below the protocol adapters raises these; ``backends/`` turns
fsspec/``OSError`` failures into them in one table, and each adapter turns
them into wire replies in one table of its own.

    GatewayError
    ├── NotFound
    │   └── MissingParent        the parent of a path to create does not exist
    ├── AlreadyExists
    ├── NotADirectory
    ├── IsADirectory
    ├── DirectoryNotEmpty
    ├── PermissionDenied
    │   └── AuthenticationFailed (also LoginBanned)
    ├── Conflict                 the request contradicts the current state
    │   ├── Busy                 a running job owns the path
    │   ├── Locked               a WebDAV lock someone else holds bars the change
    │   └── InvalidState         a job cannot do that in its current state
    ├── QuotaExceeded
    ├── ReadOnly
    ├── Unsupported
    ├── BadRequest               malformed input: path, name, argument
    └── BackendError             the storage failed
        └── BackendUnavailable   ... and may work again later (retryable)

``retryable`` says whether trying the same call again may succeed; the job
engine consults it, not each caller.
"""

from __future__ import annotations

__all__ = [
    "GatewayError",
    "NotFound",
    "MissingParent",
    "AlreadyExists",
    "NotADirectory",
    "IsADirectory",
    "DirectoryNotEmpty",
    "PermissionDenied",
    "AuthenticationFailed",
    "LoginBanned",
    "Conflict",
    "Busy",
    "Locked",
    "InvalidState",
    "QuotaExceeded",
    "ReadOnly",
    "Unsupported",
    "BadRequest",
    "BackendError",
    "BackendUnavailable",
    "ALL_ERRORS",
    "by_name",
]


class GatewayError(Exception):
    """Base of every error the core raises on purpose.

    ``path`` names the (user-visible) path concerned when there is one.
    """

    retryable = False

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return self.message


class NotFound(GatewayError):
    pass


class MissingParent(NotFound):
    """The folder that should hold a new path does not exist (WebDAV: 409)."""


class AlreadyExists(GatewayError):
    pass


class NotADirectory(GatewayError):
    pass


class IsADirectory(GatewayError):
    pass


class DirectoryNotEmpty(GatewayError):
    pass


class PermissionDenied(GatewayError):
    pass


class AuthenticationFailed(PermissionDenied):
    pass


class LoginBanned(AuthenticationFailed):
    pass


class Conflict(GatewayError):
    pass


class Busy(Conflict):
    """A running job owns the path; try again when it has finished."""

    retryable = True


class Locked(Conflict):
    """A WebDAV lock bars changing the path (on it, on a folder above it
    with depth infinity, or below a tree the operation would change) and the
    request does not hold it: only its owner, sending its token, may. Not
    retryable: a lock lasts until its owner unlocks it or it times out."""


class InvalidState(Conflict):
    """A job cannot be cancelled/stopped in the state it is in."""


class QuotaExceeded(GatewayError):
    pass


class ReadOnly(GatewayError):
    pass


class Unsupported(GatewayError):
    pass


class BadRequest(GatewayError):
    pass


class BackendError(GatewayError):
    pass


class BackendUnavailable(BackendError):
    retryable = True


def _all_subclasses(cls: type) -> list[type]:
    out: list[type] = []
    sub: type
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


ALL_ERRORS: tuple[type[GatewayError], ...] = (GatewayError, *_all_subclasses(GatewayError))


def by_name(name: str) -> type[GatewayError]:
    """The error class called ``name`` (used to re-raise a job's journaled error)."""
    for cls in ALL_ERRORS:
        if cls.__name__ == name:
            return cls
    return BackendError


def lookup(table: dict, error: BaseException):
    """The entry of ``table`` for the most specific class of ``error``.

    Adapters keep one dict {error class: wire reply}; this walks the MRO so a
    subclass without its own row takes its parent's.
    """
    for cls in type(error).__mro__:
        if cls in table:
            return table[cls]
    return table[GatewayError]
