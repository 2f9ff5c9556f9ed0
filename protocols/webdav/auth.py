"""HTTP Basic auth for WebDAV against ``gw.auth``, as a wsgidav domain
controller. Successful logins are remembered briefly by the core's
:class:`gateway.auth.CachedLogins` (every request carries the password)."""

from __future__ import annotations

from typing import Any

from wsgidav.dc.base_dc import BaseDomainController

from gateway import errors as E
from gateway.auth import http_session_id
from gateway.types import Session
from protocols.webdav.errors import dav_error, GatewayDAVError

__all__ = ["GatewayDomainController", "REALM", "SESSION_KEY", "session_id"]

#: Where the authenticated request's :class:`Session` is kept in the environ.
SESSION_KEY = "gateway.session"
#: The realm of the Basic challenge.
REALM = "gateway"
_SESSION_HEADER = "Gateway-Session"


def session_id(user: str, environ: dict) -> str:
    """The HTTP session of this request (user + Gateway-Session header or
    cookie): stable across a client's requests, so the view's overlay follows it."""
    tag = environ.get("HTTP_GATEWAY_SESSION") or _cookie(environ.get("HTTP_COOKIE", ""), _SESSION_HEADER)
    return http_session_id(user, tag)


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"')
    return None


class GatewayDomainController(BaseDomainController):
    """Basic auth only (the gateway keeps argon2 hashes, not digest HA1s).
    ``config["gateway_logins"]`` is the gateway's CachedLogins,
    ``config["gateway_ops"]`` its Operations (for the audit line of a login)."""

    def __init__(self, wsgidav_app: Any, config: dict) -> None:
        super().__init__(wsgidav_app, config)
        self.logins = config["gateway_logins"]
        self.ops = config["gateway_ops"]

    def __str__(self) -> str:
        return "GatewayDomainController()"

    def get_domain_realm(self, path_info: str, environ: dict | None) -> str:
        return REALM

    def require_authentication(self, realm: str, environ: dict | None) -> bool:
        return True

    def supports_http_digest_auth(self) -> bool:
        return False

    def basic_auth_user(self, realm: str, user_name: str, password: str, environ: dict) -> bool:
        """True (with the session in ``environ``) for a good password; False
        asks again (401). A banned address gets 429, a user who must use TLS
        on plain HTTP 403, with a one-line reason. A request the dispatcher
        (protocols.webdav.dispatch) authenticated and then handed over keeps
        its session (its login is not checked or logged twice)."""
        if SESSION_KEY in environ:
            return True
        remote = environ.get("REMOTE_ADDR", "")
        try:
            user = self.logins.login(user_name, password, remote, protocol="webdav")
        except E.LoginBanned as exc:
            raise dav_error(exc) from None
        except E.AuthenticationFailed:
            return False
        if user.require_tls and environ.get("wsgi.url_scheme") != "https":
            raise GatewayDAVError(403, f"user {user_name!r} must connect over TLS (https)")
        environ[SESSION_KEY] = session = Session(user, "webdav", remote, id=session_id(user.name, environ))
        self.ops.logged_in(session, "password")
        return True
