"""Who is calling: HTTP Basic (cached argon2 checks), a bearer API token or
the portal's cookie, plus the Gateway-Session header/cookie that names the
session.

A state-changing request (anything but GET, HEAD, OPTIONS) that a browser
says comes from another site (``Sec-Fetch-Site``, ``Origin``) is refused
whatever its credentials: the API offers no cross-origin access, and a
browser attaches cookies and cached Basic credentials on its own.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import urlsplit

import falcon

from gateway import errors as E
from gateway.auth import http_session_id
from gateway.logs import log_login
from gateway.tokens import TokenStore
from gateway.types import Session

__all__ = ["Authentication", "PUBLIC", "SAFE_METHODS", "from_another_site"]

#: Resources that need no credentials carry ``public = True``.
PUBLIC = "public"
#: Methods that never change anything.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def from_another_site(req: falcon.Request) -> bool:
    """Whether a browser says this request comes from a page of another
    origin: ``Sec-Fetch-Site`` is cross-site or same-site, or ``Origin``
    names another host (``null`` too: a sandboxed or opaque page). Clients
    other than browsers send neither header."""
    if (req.get_header("Sec-Fetch-Site") or "").lower() in ("cross-site", "same-site"):
        return True
    origin = req.get_header("Origin")
    return origin is not None and urlsplit(origin).netloc != (req.get_header("Host") or "")


class Authentication:
    """Falcon middleware: puts the caller's Session in ``req.context.session``
    and how it authenticated ("basic", "bearer" or "cookie") in
    ``req.context.credentials``."""

    def __init__(self, gw: Any, portal: Any = None) -> None:
        self.gw = gw
        self.logins = gw.logins
        self.tokens = TokenStore(gw.store)
        self.portal = portal  # gateway.api.portal.Portal: the browser's cookie session

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict) -> None:
        if resource is None or getattr(resource, PUBLIC, False):
            return
        if req.method not in SAFE_METHODS and from_another_site(req):
            raise E.PermissionDenied("a state-changing request from another site is refused")
        req.context.session = self.session(req)

    def session(self, req: falcon.Request) -> Session:
        """Raises AuthenticationFailed (401), LoginBanned (429), PermissionDenied
        (a user who must use TLS, over plain HTTP)."""
        remote = req.remote_addr or ""
        session_id = None
        header = req.get_header("Authorization") or ""
        scheme, _, value = header.partition(" ")
        kind = scheme.lower()
        if kind == "basic":
            try:
                name, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise E.AuthenticationFailed("malformed Basic credentials") from None
            user = self.logins.login(name, password, remote, protocol="api")
        elif kind == "bearer":
            name = self.tokens.user_for(value.strip())
            user = self.gw.auth.get(name) if name else None
            if user is None:
                if self.gw.auth.audit:
                    log_login("-", remote, "token", "error: unknown or revoked API token", "api")
                raise E.AuthenticationFailed("unknown or revoked API token")
        else:
            # No credentials of its own: the portal's cookie (CSRF-checked there).
            kind = "cookie"
            found = self.portal.authenticate(req) if self.portal is not None else None
            if found is None:
                raise E.AuthenticationFailed("authentication required (HTTP Basic or a bearer API token)")
            user, session_id = found
        if user.require_tls and req.scheme != "https":
            raise E.PermissionDenied(f"user {user.name!r} must connect over TLS (https)")
        req.context.credentials = kind
        tag = req.get_header("Gateway-Session") or req.cookies.get("Gateway-Session")
        session = Session(user, "api", remote, id=session_id or http_session_id(user.name, tag))
        self.gw.ops.logged_in(session, {"basic": "password"}.get(kind, kind))
        return session
