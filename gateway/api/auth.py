"""Who is calling: HTTP Basic (cached argon2 checks) or a bearer API token,
plus the Gateway-Session header/cookie that names the session."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import falcon

from gateway import errors as E
from gateway.auth import http_session_id
from gateway.tokens import TokenStore
from gateway.types import Session

__all__ = ["Authentication", "PUBLIC"]

#: Resources that need no credentials carry ``public = True``.
PUBLIC = "public"


class Authentication:
    """Falcon middleware: puts the caller's Session in ``req.context.session``."""

    def __init__(self, gw: Any, portal: Any = None) -> None:
        self.gw = gw
        self.logins = gw.logins
        self.tokens = TokenStore(gw.store)
        self.portal = portal  # gateway.api.portal.Portal: the browser's cookie session

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict) -> None:
        if resource is None or getattr(resource, PUBLIC, False):
            return
        req.context.session = self.session(req)

    def session(self, req: falcon.Request) -> Session:
        """Raises AuthenticationFailed (401), LoginBanned (429), PermissionDenied
        (a user who must use TLS, over plain HTTP)."""
        remote = req.remote_addr or ""
        session_id = None
        header = req.get_header("Authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                name, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise E.AuthenticationFailed("malformed Basic credentials") from None
            user = self.logins.login(name, password, remote)
        elif scheme.lower() == "bearer":
            name = self.tokens.user_for(value.strip())
            user = self.gw.auth.get(name) if name else None
            if user is None:
                raise E.AuthenticationFailed("unknown or revoked API token")
        else:
            # No credentials of its own: the portal's cookie (CSRF-checked there).
            found = self.portal.authenticate(req) if self.portal is not None else None
            if found is None:
                raise E.AuthenticationFailed("authentication required (HTTP Basic or a bearer API token)")
            user, session_id = found
        if user.require_tls and req.scheme != "https":
            raise E.PermissionDenied(f"user {user.name!r} must connect over TLS (https)")
        tag = req.get_header("Gateway-Session") or req.cookies.get("Gateway-Session")
        return Session(user, "api", remote, id=session_id or http_session_id(user.name, tag))
