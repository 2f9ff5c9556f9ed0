"""The one table from gateway errors to HTTP statuses for the REST API."""

from __future__ import annotations

import falcon

from gateway import errors as E

__all__ = ["STATUS", "status_for", "handle_gateway_error"]

STATUS: dict[type[E.GatewayError], int] = {
    E.GatewayError: 500,
    E.NotFound: 404,
    E.MissingParent: 409,
    E.AlreadyExists: 409,
    E.NotADirectory: 409,
    E.IsADirectory: 409,
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


def status_for(exc: E.GatewayError) -> int:
    return E.lookup(STATUS, exc)


def handle_gateway_error(req: falcon.Request, resp: falcon.Response, exc: E.GatewayError, params: dict) -> None:
    code = status_for(exc)
    resp.status = code
    resp.media = {"error": str(exc), "type": type(exc).__name__}
    if code == 401:
        resp.set_header("WWW-Authenticate", 'Basic realm="gateway", charset="UTF-8"')
