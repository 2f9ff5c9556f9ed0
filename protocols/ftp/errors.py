"""The one table from gateway errors to FTP reply codes."""

from __future__ import annotations

from gateway import errors as E

__all__ = ["REPLY", "reply_code"]

#: 421 would make clients drop the control connection, so a storage that is
#: away answers 451 ("local error, try again") and the session stays usable.
REPLY: dict[type[E.GatewayError], int] = {
    E.GatewayError: 451,
    E.NotFound: 550,
    E.MissingParent: 550,
    E.AlreadyExists: 550,
    E.NotADirectory: 550,
    E.IsADirectory: 550,
    E.DirectoryNotEmpty: 550,
    E.PermissionDenied: 550,
    E.AuthenticationFailed: 530,
    E.LoginBanned: 530,
    E.Conflict: 450,
    E.Busy: 450,
    E.Locked: 450,
    E.InvalidState: 450,
    E.QuotaExceeded: 452,
    E.ReadOnly: 550,
    E.Unsupported: 504,
    E.BadRequest: 553,
    E.BackendError: 451,
    E.BackendUnavailable: 451,
}


def reply_code(exc: E.GatewayError) -> int:
    return E.lookup(REPLY, exc)
