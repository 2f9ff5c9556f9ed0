"""The one table that turns fsspec / OSError failures into gateway errors."""

from __future__ import annotations

import errno
import socket
import ssl
from contextlib import contextmanager
from typing import Iterator

from gateway import errors as E

__all__ = ["translated", "translate"]

_ERRNO = {
    errno.ENOENT: E.NotFound,
    errno.EEXIST: E.AlreadyExists,
    errno.ENOTDIR: E.NotADirectory,
    errno.EISDIR: E.IsADirectory,
    errno.ENOTEMPTY: E.DirectoryNotEmpty,
    errno.EACCES: E.PermissionDenied,
    errno.EPERM: E.PermissionDenied,
    errno.ENOSPC: E.QuotaExceeded,
    errno.EDQUOT: E.QuotaExceeded,
    errno.EROFS: E.ReadOnly,
    errno.ENAMETOOLONG: E.BadRequest,
    errno.EINVAL: E.BadRequest,
    errno.ETIMEDOUT: E.BackendUnavailable,
    errno.ECONNREFUSED: E.BackendUnavailable,
    errno.ECONNRESET: E.BackendUnavailable,
    errno.EHOSTUNREACH: E.BackendUnavailable,
    errno.ENETUNREACH: E.BackendUnavailable,
    errno.EPIPE: E.BackendUnavailable,
    errno.EBUSY: E.BackendUnavailable,  # S3 SlowDown / ServiceUnavailable
    errno.EREMOTEIO: E.BackendUnavailable,  # S3 InternalError
    errno.ECONNABORTED: E.BackendUnavailable,
    errno.ENOTCONN: E.BackendUnavailable,
}
_TYPES: tuple[tuple[type[BaseException], type[E.GatewayError]], ...] = (
    (FileNotFoundError, E.NotFound),
    (FileExistsError, E.AlreadyExists),
    (NotADirectoryError, E.NotADirectory),
    (IsADirectoryError, E.IsADirectory),
    (PermissionError, E.PermissionDenied),
    (TimeoutError, E.BackendUnavailable),
    (ConnectionError, E.BackendUnavailable),
    (socket.gaierror, E.BackendUnavailable),
    (EOFError, E.BackendUnavailable),  # ftplib: the server closed the control connection
    (NotImplementedError, E.Unsupported),
)
_WORDS = {
    E.NotFound: "no such file or folder",
    E.AlreadyExists: "already exists",
    E.NotADirectory: "not a folder",
    E.IsADirectory: "is a folder",
    E.DirectoryNotEmpty: "folder is not empty",
    E.PermissionDenied: "permission denied by the storage",
    E.QuotaExceeded: "storage is full or over quota",
    E.ReadOnly: "storage is read-only",
    E.Unsupported: "not supported by this storage",
    E.BadRequest: "rejected by the storage as invalid",
    E.MissingParent: "parent folder does not exist",
    E.Busy: "locked by the storage",
}


# Storage libraries' own exceptions, by "<top package>.<class name>" along the
# MRO, so this module needs none of them imported.
_NAMED: dict[str, type[E.GatewayError]] = {
    "fsspec.FSTimeoutError": E.BackendUnavailable,
    # asyncssh (sshfs): SFTPError is refined by its FX_* code below
    "asyncssh.DisconnectError": E.BackendUnavailable,
    "asyncssh.ChannelOpenError": E.BackendUnavailable,
    "asyncssh.ConnectionLost": E.BackendUnavailable,
    # ftplib: 4xx replies are transient, 5xx are refined by their text below
    "ftplib.error_temp": E.BackendUnavailable,
    "ftplib.error_reply": E.BackendUnavailable,
    "ftplib.error_proto": E.BackendUnavailable,
    # httpx (webdav4) and botocore (s3fs) transport failures
    "httpx.TransportError": E.BackendUnavailable,
    "httpcore.NetworkError": E.BackendUnavailable,
    "httpcore.TimeoutException": E.BackendUnavailable,
    "botocore.EndpointConnectionError": E.BackendUnavailable,
    "botocore.ConnectionError": E.BackendUnavailable,
    "botocore.ReadTimeoutError": E.BackendUnavailable,
    "botocore.NoCredentialsError": E.PermissionDenied,
    "botocore.FlexibleChecksumError": E.BackendUnavailable,  # corrupted on the way: worth another try
    "aiohttp.ClientConnectionError": E.BackendUnavailable,
    # a server whose TLS certificate is not trusted is refused, not retried
    "ssl.SSLCertVerificationError": E.PermissionDenied,
    # a TLS connection (FTPS) the server dropped mid-record or closed: as EOFError
    "ssl.SSLEOFError": E.BackendUnavailable,
    "ssl.SSLZeroReturnError": E.BackendUnavailable,
    # webdav4's client (used directly for COPY/MOVE)
    "webdav4.ResourceNotFound": E.NotFound,
    "webdav4.ResourceConflict": E.MissingParent,
    "webdav4.ResourceAlreadyExists": E.AlreadyExists,
    "webdav4.ForbiddenOperation": E.PermissionDenied,
    "webdav4.InsufficientStorage": E.QuotaExceeded,
    "webdav4.ResourceLocked": E.Busy,
    "webdav4.BadGatewayError": E.BackendUnavailable,
    "webdav4.IsACollectionError": E.IsADirectory,
    "webdav4.IsAResourceError": E.NotADirectory,
}
_SFTP_CODES: dict[int, type[E.GatewayError]] = {
    2: E.NotFound,  # FX_NO_SUCH_FILE
    3: E.PermissionDenied,  # FX_PERMISSION_DENIED
    6: E.BackendUnavailable,  # FX_NO_CONNECTION
    7: E.BackendUnavailable,  # FX_CONNECTION_LOST
    8: E.Unsupported,  # FX_OP_UNSUPPORTED
    10: E.NotFound,  # FX_NO_SUCH_PATH
    11: E.AlreadyExists,  # FX_FILE_ALREADY_EXISTS
    12: E.ReadOnly,  # FX_WRITE_PROTECT
    14: E.QuotaExceeded,  # FX_NO_SPACE_ON_FILESYSTEM
    15: E.QuotaExceeded,  # FX_QUOTA_EXCEEDED
    18: E.DirectoryNotEmpty,  # FX_DIR_NOT_EMPTY
    19: E.NotADirectory,  # FX_NOT_A_DIRECTORY
    20: E.BadRequest,  # FX_INVALID_FILENAME
    24: E.IsADirectory,  # FX_FILE_IS_A_DIRECTORY
}
# A refusal's text, for protocols whose codes are too coarse (FTP 550).
_TEXT: tuple[tuple[str, type[E.GatewayError]], ...] = (
    ("not empty", E.DirectoryNotEmpty),
    ("no such file", E.NotFound),
    ("not found", E.NotFound),
    ("does not exist", E.NotFound),
    ("not a directory", E.NotADirectory),
    ("is a directory", E.IsADirectory),
    ("already exists", E.AlreadyExists),
    ("file exists", E.AlreadyExists),
    ("permission denied", E.PermissionDenied),
    ("not allowed", E.PermissionDenied),
    ("quota", E.QuotaExceeded),
    ("no space", E.QuotaExceeded),
)


def _named(exc: BaseException) -> type[E.GatewayError] | None:
    for klass in type(exc).__mro__:
        key = f"{klass.__module__.split('.')[0]}.{klass.__name__}"
        if key == "asyncssh.SFTPError":
            return _SFTP_CODES.get(getattr(exc, "code", None) or 0) or _by_text(exc) or E.BackendError
        if key == "ftplib.error_perm":
            text = str(exc)
            if text.startswith(("530", "532")):
                return E.PermissionDenied
            if text.startswith("552"):
                return E.QuotaExceeded
            return _by_text(exc) or E.BackendError
        if key == "ftplib.error_temp" and str(exc).startswith("452"):
            return E.QuotaExceeded
        if key == "webdav4.HTTPError":
            status = getattr(exc, "status_code", 0)
            if status in (401, 403):
                return E.PermissionDenied
            if status == 423:
                return E.Busy
            if status == 507:
                return E.QuotaExceeded
            return E.BackendUnavailable if status in (408, 429) or status >= 500 else E.BackendError
        if key in _NAMED:
            return _NAMED[key]
    return None


def _by_text(exc: BaseException) -> type[E.GatewayError] | None:
    text = str(exc).lower()
    for words, cls in _TEXT:
        if words in text:
            return cls
    return None


def translate(exc: BaseException, path: str | None = None) -> E.GatewayError:
    """The gateway error for a storage exception (GatewayErrors pass through)."""
    if isinstance(exc, E.GatewayError):
        return exc
    where = f"{path}: " if path else ""
    refused = _certificate_error(exc)
    if refused is not None:
        return E.PermissionDenied(f"{where}the server's TLS certificate is not trusted ({refused.verify_message})",
                                  path)
    cls: type[E.GatewayError] | None = _named(exc)
    code = getattr(exc, "errno", None)
    if cls is None and code in _ERRNO:
        cls = _ERRNO[code]
    if cls is None:
        for etype, gcls in _TYPES:
            if isinstance(exc, etype):
                cls = gcls
                break
    if cls is None:
        name = type(exc).__name__.lower()
        retry = any(w in name for w in ("timeout", "connect", "disconnect", "channel", "endpoint", "unavailable"))
        cls = E.BackendUnavailable if retry else E.BackendError
    detail = _WORDS.get(cls) or f"storage error: {type(exc).__name__}: {exc}"
    return cls(f"{where}{detail}", path)


def _certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate check that failed, if one did: raised as it is
    (ftplib) or as the cause of a connection error (httpx, aiohttp)."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 10:
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        current = current.__cause__ or current.__context__
        seen += 1
    return None


@contextmanager
def translated(path: str | None = None) -> Iterator[None]:
    """Run a storage call; re-raise its failure as a gateway error."""
    try:
        yield
    except E.GatewayError:
        raise
    except Exception as exc:  # noqa: BLE001 - this is the translation boundary
        raise translate(exc, path) from exc
