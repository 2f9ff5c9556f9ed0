"""The one table from gateway errors to HTTP statuses, and the DAVError that
carries them to wsgidav with a short text body."""

from __future__ import annotations

from contextlib import contextmanager
from http import HTTPStatus
from typing import Any, Iterator

from wsgidav.dav_error import ERROR_RESPONSES, DAVError
from wsgidav.mw.base_mw import BaseMiddleware

from gateway import errors as E

__all__ = ["REFUSED_KEY", "STATUS", "GatewayDAVError", "TextErrors", "as_text", "status_for", "dav_error", "refused",
           "replayed", "translated", "reason"]

#: environ key: the core's refusal of the request's operation, met by a fast
#: path that then handed the request to wsgidav (which words a refusal its
#: own checks find). wsgidav's call of the same operation raises it again
#: instead of asking the core twice: one request, one operation line.
REFUSED_KEY = "gateway.refused"

#: Gateway error → HTTP status; a dict value picks by request method (None:
#: any other method). Looked up along the MRO (``gateway.errors.lookup``).
STATUS: dict[type[E.GatewayError], int | dict[str | None, int]] = {
    E.GatewayError: 500,
    E.NotFound: 404,
    E.MissingParent: 409,
    # Overwrite: F on an existing destination; MKCOL on an existing path is 405 (RFC 4918 9.3.1).
    E.AlreadyExists: {"MKCOL": 405, None: 412},
    E.NotADirectory: 409,
    E.IsADirectory: {"PUT": 405, None: 409},
    E.DirectoryNotEmpty: 409,
    E.PermissionDenied: 403,
    E.AuthenticationFailed: 401,
    E.LoginBanned: 429,
    E.Conflict: 409,
    E.Busy: 423,
    E.Locked: 423,
    E.InvalidState: 409,
    E.QuotaExceeded: 507,
    E.ReadOnly: 403,
    E.Unsupported: 501,
    E.BadRequest: 400,
    E.BackendError: 502,
    E.BackendUnavailable: 503,
}


def reason(status: int) -> str:
    """'423 Locked': the status line wsgidav would spell '423 Status'."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Status"


class GatewayDAVError(DAVError):
    """A DAVError whose response page is one line of plain text."""

    def __init__(self, status: int, message: str, *, add_headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(status, message, add_headers=add_headers)
        self.message = message

    def get_response_page(self) -> tuple[str, bytes]:
        return "text/plain; charset=utf-8", f"{reason(self.value)}: {self.message}\n".encode()


def status_for(exc: E.GatewayError, method: str | None = None) -> int:
    entry = E.lookup(STATUS, exc)
    if isinstance(entry, dict):
        return entry[method] if method in entry else entry[None]
    return entry


def dav_error(exc: E.GatewayError, method: str | None = None) -> GatewayDAVError:
    return GatewayDAVError(status_for(exc, method), exc.message)


def refused(environ: dict, exc: E.GatewayError) -> None:
    """Keep the core's refusal of a fast path's operation (nothing changed)
    for wsgidav's answer to the same request (see :data:`REFUSED_KEY`)."""
    environ[REFUSED_KEY] = exc


def replayed(environ: dict) -> None:
    """Raise the refusal a fast path kept, if any: called where wsgidav's
    handling would ask the core for the request's operation again."""
    exc = environ.pop(REFUSED_KEY, None)
    if exc is not None:
        raise exc


@contextmanager
def translated(environ: dict) -> Iterator[None]:
    """Re-raise a gateway error as the DAVError its table row names."""
    try:
        yield
    except E.GatewayError as exc:
        raise dav_error(exc, environ.get("REQUEST_METHOD")) from None


class TextErrors(BaseMiddleware):
    """Between wsgidav's ErrorPrinter and the rest: wsgidav's own errors
    (HTML pages) become the same one line of text as ours. Errors with an
    XML precondition body (lock conflicts, ...) pass unchanged."""

    def __call__(self, environ: dict, start_response: Any) -> Iterator[bytes]:
        try:
            yield from self.next_app(environ, start_response)
        except DAVError as e:
            raise as_text(e) from None


def as_text(e: DAVError) -> DAVError:
    """``e`` with the one line of text of :class:`GatewayDAVError` (one with
    an XML precondition body as it is)."""
    if isinstance(e, GatewayDAVError) or e.err_condition is not None:
        return e
    message = e.context_info or ERROR_RESPONSES.get(e.value) or HTTPStatus(e.value).phrase
    return GatewayDAVError(e.value, str(message), add_headers=e.add_headers)
