"""The one table from gateway errors to SFTP status replies.

Each row names the asyncssh exception class whose status code the client
gets; the core's message always travels as the status text, so a v3 client
(OpenSSH's ``sftp``), which only knows the first nine codes and sees the rest
as FX_FAILURE, still reads what happened ("busy, in use by job ...").
"""

from __future__ import annotations

import asyncssh

from gateway import errors as E

__all__ = ["STATUS", "STRERROR", "to_sftp_error", "strerror"]

#: gateway error class → asyncssh SFTPError subclass (its ``code`` is the status).
STATUS: dict[type[E.GatewayError], type[asyncssh.SFTPError]] = {
    E.GatewayError: asyncssh.SFTPFailure,
    E.NotFound: asyncssh.SFTPNoSuchFile,
    E.MissingParent: asyncssh.SFTPNoSuchFile,
    E.AlreadyExists: asyncssh.SFTPFileAlreadyExists,
    E.NotADirectory: asyncssh.SFTPNotADirectory,
    E.IsADirectory: asyncssh.SFTPFileIsADirectory,
    E.DirectoryNotEmpty: asyncssh.SFTPDirNotEmpty,
    E.PermissionDenied: asyncssh.SFTPPermissionDenied,
    E.AuthenticationFailed: asyncssh.SFTPPermissionDenied,
    E.LoginBanned: asyncssh.SFTPPermissionDenied,
    E.Conflict: asyncssh.SFTPFailure,
    E.Busy: asyncssh.SFTPFailure,
    E.Locked: asyncssh.SFTPLockConflict,  # to v3 clients (all we serve): FX_FAILURE
    E.InvalidState: asyncssh.SFTPFailure,
    E.QuotaExceeded: asyncssh.SFTPQuotaExceeded,
    E.ReadOnly: asyncssh.SFTPWriteProtect,
    E.Unsupported: asyncssh.SFTPOpUnsupported,
    E.BadRequest: asyncssh.SFTPFailure,
    E.BackendError: asyncssh.SFTPFailure,
    E.BackendUnavailable: asyncssh.SFTPFailure,
}


def to_sftp_error(exc: E.GatewayError) -> asyncssh.SFTPError:
    """The SFTP error to raise for ``exc``, carrying its message."""
    return E.lookup(STATUS, exc)(exc.message)


#: gateway error class → the text GNU coreutils prints for the same failure
#: (``md5sum: <path>: No such file or directory``), for the exec commands.
#: Others print the core's message.
STRERROR: dict[type[E.GatewayError], str | None] = {
    E.GatewayError: None,
    E.NotFound: "No such file or directory",
    E.NotADirectory: "Not a directory",
    E.IsADirectory: "Is a directory",
    E.PermissionDenied: "Permission denied",
}


def strerror(exc: E.GatewayError) -> str:
    """What an exec command prints after the path for ``exc``."""
    return E.lookup(STRERROR, exc) or exc.message
