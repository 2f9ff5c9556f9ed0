"""Plain WebDAV requests answered in front of wsgidav's layers.

Every request passed WsgiDAVApp (the path re-encoded and normalised, the
provider resolved, its start_response wrapped), its ErrorPrinter, our
TextErrors, its HTTPAuthenticator, the folder browser and its
RequestResolver (a RequestServer built per request) before the provider's
fast paths could answer it. :class:`Dispatcher` does what those layers do
for a request the fast paths may take — a GET, HEAD, PUT, PROPFIND (Depth 0
or 1), MKCOL, DELETE, MOVE or COPY on ``/dav`` with HTTP Basic credentials
the gateway's login cache remembers — and asks the provider for its own
reply (``GatewayProvider.fast_reply``). Anything else (no or unknown
credentials, the sync-API mounts, a folder's page, OPTIONS, LOCK, ...) and
any request the fast paths do not take goes to wsgidav as it came, so the
replies are the same either way (tests/protocols/webdav/
test_webdav_fast_paths.py). Authorisation stays the core's: this module
only finds out who asks.
"""

from __future__ import annotations

import base64
from typing import Any, Callable, Iterable, Iterator

from wsgidav import util
from wsgidav.dav_error import DAVError

from gateway import errors as E
from gateway.auth import RememberedLogin
from gateway.types import Session
from protocols.http_conn import CONNECTION_KEY
from protocols.webdav.auth import SESSION_KEY, REALM, session_id
from protocols.webdav.errors import REFUSED_KEY, as_text
from protocols.webdav.get import ENTRY_KEY
from protocols.webdav.owncloud import MOUNT_KEY
from protocols.webdav.provider import CONDITIONS

__all__ = ["Dispatcher"]

#: CONNECTION_KEY entries: the Authorization header that authenticated, its login.
_HEADER, _LOGIN = "webdav.authorization", "webdav.login"

_METHODS = frozenset(("GET", "HEAD", "PUT", "PROPFIND", "MKCOL", "DELETE", "MOVE", "COPY"))


class Dispatcher:
    """WSGI app in front of ``dav`` (the WsgiDAVApp) for ``provider``'s fast
    paths; ``logins`` the gateway's CachedLogins, ``ops`` its Operations."""

    def __init__(self, dav: Any, provider: Any, logins: Any, ops: Any) -> None:
        self.dav = dav
        self.provider = provider
        self.logins = logins
        self.ops = ops

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        if (method not in _METHODS or environ.get(MOUNT_KEY) or "HTTP_RANGE" in environ
                or any(h in environ for h in CONDITIONS)
                or (method == "PROPFIND" and environ.get("HTTP_DEPTH") not in ("0", "1"))):
            return self.dav(environ, start_response)
        found = self._session(environ)
        if found is None:
            return self.dav(environ, start_response)
        name, session = found
        try:
            path = util.normalize_path(util.re_encode_wsgi(environ["PATH_INFO"]))
        except DAVError:
            return self.dav(environ, start_response)
        original = environ.copy()  # what wsgidav gets if the fast paths do not answer
        # As WsgiDAVApp, the HTTPAuthenticator and the RequestServer would.
        dav = self.dav
        environ.update({
            "PATH_INFO": path, "wsgidav.app": dav, "wsgidav.config": dav.config,
            "wsgidav.provider": self.provider, "wsgidav.verbose": dav.verbose, "wsgidav.auth.realm": REALM,
            "wsgidav.auth.user_name": name, "wsgidav.auth.roles": None, "wsgidav.auth.permissions": None,
            "wsgidav.user_name": name, SESSION_KEY: session,
        })
        if "HTTP_DEPTH" in environ:
            environ["HTTP_DEPTH"] = environ["HTTP_DEPTH"].lower()
        if "HTTP_OVERWRITE" in environ:
            environ["HTTP_OVERWRITE"] = environ["HTTP_OVERWRITE"].upper()
        self.ops.logged_in(session, "password")
        try:
            if method in ("GET", "HEAD"):  # the folder browser's look at the path
                entry = environ[ENTRY_KEY] = self.provider.entry_of(environ["PATH_INFO"], environ)
                reply = None if entry is not None and entry.is_dir else self.provider.fast_reply(
                    environ, start_response)
            else:
                reply = self.provider.fast_reply(environ, start_response)
        except DAVError as e:
            return _error(as_text(e), start_response)
        if reply is None:
            original.update({SESSION_KEY: session, "wsgi.input": environ["wsgi.input"],
                             "CONTENT_LENGTH": environ.get("CONTENT_LENGTH", "")})
            if REFUSED_KEY in environ:
                original[REFUSED_KEY] = environ[REFUSED_KEY]
            return self.dav(original, start_response)
        return reply

    def _session(self, environ: dict) -> tuple[str, Session] | None:
        """The name sent and the session of a request whose Basic credentials
        the login cache remembers (a user who must use TLS only over TLS);
        None for wsgidav's authenticator to judge. A kept-alive connection
        keeps the Authorization header that authenticated and its login, so
        its next requests with the same header skip decoding and hashing the
        password; whether the login still holds (ban, changed or removed
        user, cleared cache) is asked every time."""
        header = environ.get("HTTP_AUTHORIZATION", "")
        kept = environ.get(CONNECTION_KEY)
        remote = environ.get("REMOTE_ADDR", "")
        try:
            user = None
            if kept is not None and kept.get(_HEADER) == header:
                login = kept[_LOGIN]
                user = self.logins.user_of(login, remote)
            if user is None:
                login = self._recall(header)
                user = self.logins.user_of(login, remote) if login is not None else None
        except E.GatewayError:
            user = None
        if user is None or (user.require_tls and environ.get("wsgi.url_scheme") != "https"):
            if kept is not None:
                kept.pop(_HEADER, None)
            return None
        if kept is not None:
            kept[_HEADER], kept[_LOGIN] = header, login
        return login.name, Session(user, "webdav", remote, id=session_id(user.name, environ))

    def _recall(self, header: str) -> RememberedLogin | None:
        """The login the cache remembers for a Basic Authorization header."""
        method, _, value = header.partition(" ")
        if method.lower() != "basic":
            return None
        try:
            name, sep, password = base64.decodebytes(value.strip().encode()).decode().partition(":")
        except (ValueError, UnicodeError):
            return None
        return self.logins.recall(name, password) if sep else None


def _error(e: DAVError, start_response: Callable) -> Iterator[bytes]:
    """The reply wsgidav's ErrorPrinter gives to ``e``."""
    status = util.get_http_status_string(e)
    if e.value in (304, 204):
        start_response(status, [("Content-Length", "0"), ("Date", util.get_rfc1123_time())])
        return iter((b"",))
    content_type, body = e.get_response_page()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                            ("Date", util.get_rfc1123_time()), *(e.add_headers or [])])
    return iter((body if e.add_body else b"",))
