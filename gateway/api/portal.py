"""The web portal: its static files under ``/ui`` and the browser session.

A browser logs in once (``POST /ui/login``, form or JSON ``user`` /
``password``) and gets a session cookie: an opaque random token, HttpOnly,
``SameSite=Strict``, ``Secure`` over TLS, mapped server-side to the user in
the job store (every node sharing the store knows it; it survives a restart).
Every state-changing request made with the cookie must carry the session's
CSRF token in ``X-CSRF-Token``. Requests that authenticate with Basic or
bearer credentials never use the cookie and are exempt.

Only the portal's own page learns that token: the JSON login reply (which
only the one who sent the password reads) and the page itself, into which
the server writes it (``<meta name="csrf-token">``) when a browser navigates
to it. ``/ui/session`` never returns it, and a script that fetches the page
gets it without the token (``Sec-Fetch-Dest``/``Sec-Fetch-Mode`` say it is not
a navigation); the page cannot be framed (``frame-ancestors 'none'``) nor
reached from a window another page opened (``Cross-Origin-Opener-Policy``),
and it runs only the script the server names with a per-reply nonce. Files
users upload are never run on this origin either (gateway.webcontent), so
no other page of the origin is in a position to ask. (Browsers send the
``Sec-Fetch-*`` headers to HTTPS and localhost only; over plain HTTP to
another host the page embeds the token for every request with the cookie.)

The REST layer calls :meth:`Portal.authenticate` for requests without
credentials of their own; everything the portal page does goes through the
REST API like any other client.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import importlib.resources
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable

import falcon
import sqlalchemy as sa

from gateway import errors as E
from gateway.api.auth import SAFE_METHODS, from_another_site
from gateway.api.errors import status_for
from gateway.auth import http_session_id
from gateway.jobs.schema import portal_sessions
from gateway.jobs.store import write_transaction
from gateway.namespace import is_under, to_user
from gateway.types import Session
from gateway.users import User

__all__ = ["Portal", "COOKIE", "CSRF_HEADER", "register"]

#: The session cookie's name.
COOKIE = "gw_portal"
#: The header a cookie-authenticated state-changing request must carry.
CSRF_HEADER = "X-CSRF-Token"
#: A session ends after this long without a request, or this long after login.
IDLE_S = 2 * 3600.0
MAX_AGE_S = 12 * 3600.0
#: Sessions kept at most (each needs a good password, so this only bounds the table).
MAX_SESSIONS = 10000
#: A session's last use is written at most this often (it only needs to be
#: finer than IDLE_S).
SEEN_EVERY_S = 60.0

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8"}
# Everything the page needs comes from this origin; no inline script or
# style. The page itself names its script and style sheet with a nonce
# (see _page), so not even a file under /dav could be loaded as either.
_CSP = ("default-src 'none'; script-src {src}; style-src {src}; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
# In index.html: where the server writes the nonce and the CSRF token.
_NONCE_MARK = 'nonce="NONCE"'
_TOKEN_MARK = '<meta name="csrf-token" content="">'


@dataclass
class _BrowserSession:
    """One logged-in browser; ``password_hash`` as at login, so a password
    change ends the session; ``session_id`` keys the view's overlay."""

    user: str
    password_hash: str | None
    csrf: str
    session_id: str
    created: float
    seen: float


class Portal:
    """Browser sessions for one gateway, kept in its job store (table
    ``portal_sessions``, keyed by a digest of the token): every node sharing
    the store knows them, and they outlive a restart. Thread-safe.

    ``clock`` is the wall clock in seconds (tests may pass a fake); every
    node must agree on it.
    """

    def __init__(self, gw: Any, clock: Callable[[], float] = time.time) -> None:
        self.gw = gw
        self._engine = gw.store.engine
        self._clock = clock

    # ----------------------------------------------------------- sessions

    def login(self, name: str, password: str, remote: str, tls: bool) -> tuple[str, User, _BrowserSession]:
        """A new browser session for ``name``: (cookie token, user, session).

        Raises LoginBanned, AuthenticationFailed (as ``gw.auth.login_password``)
        and PermissionDenied for a user who must use TLS on plain HTTP.
        """
        user = self.gw.auth.login_password(name, password, remote, protocol="api")
        if user.require_tls and not tls:
            raise E.PermissionDenied(f"user {name!r} must connect over TLS (https)")
        token = secrets.token_urlsafe(32)
        now = self._clock()
        # Each login is its own conversation for the view's overlay.
        login = _BrowserSession(user.name, user.password_hash, secrets.token_urlsafe(32),
                                http_session_id(user.name, "ui-" + secrets.token_hex(8)), now, now)
        with write_transaction(self._engine) as c:
            if c.execute(sa.select(sa.func.count()).select_from(portal_sessions)).scalar() >= MAX_SESSIONS:
                self._purge(c, now)
                if c.execute(sa.select(sa.func.count()).select_from(portal_sessions)).scalar() >= MAX_SESSIONS:
                    oldest = sa.select(portal_sessions.c.token_hash).order_by(portal_sessions.c.seen_at).limit(1)
                    c.execute(portal_sessions.delete().where(portal_sessions.c.token_hash.in_(oldest)))
            c.execute(portal_sessions.insert().values(
                token_hash=_key(token), user=login.user, password_hash=login.password_hash, csrf=login.csrf,
                session_id=login.session_id, created_at=now, seen_at=now))
        return token, user, login

    def logout(self, token: str | None) -> None:
        """End the session of ``token``; idempotent."""
        if not token:
            return
        with write_transaction(self._engine) as c:
            c.execute(portal_sessions.delete().where(portal_sessions.c.token_hash == _key(token)))

    def lookup(self, token: str | None) -> tuple[User, _BrowserSession] | None:
        """The user and login of a live session token, or None (unknown,
        expired, or the user was removed or changed their password)."""
        if not token:
            return None
        now = self._clock()
        key = _key(token)
        with self._engine.connect() as c:
            row = c.execute(sa.select(portal_sessions).where(portal_sessions.c.token_hash == key)).first()
        if row is None:
            return None
        login = _BrowserSession(row.user, row.password_hash, row.csrf, row.session_id, row.created_at, row.seen_at)
        if now - login.seen > IDLE_S or now - login.created > MAX_AGE_S:
            self.logout(token)
            return None
        if now - login.seen >= SEEN_EVERY_S:  # a write per minute of use, not per request
            with write_transaction(self._engine) as c:
                c.execute(portal_sessions.update().where(portal_sessions.c.token_hash == key).values(seen_at=now))
            login.seen = now
        user = self.gw.auth.get(login.user)
        if user is None or user.password_hash != login.password_hash:
            self.logout(token)
            return None
        return user, login

    def authenticate(self, req: falcon.Request) -> tuple[User, str] | None:
        """For the REST layer, on a request that has no Authorization header:
        (user, HTTP session id) from the portal cookie, or None when there is
        no live session.

        Raises PermissionDenied when a state-changing request (anything but
        GET/HEAD/OPTIONS) lacks the session's CSRF token in ``X-CSRF-Token``.
        """
        found = self.lookup(req.cookies.get(COOKIE))
        if found is None:
            return None
        user, login = found
        if req.method not in SAFE_METHODS:
            sent = req.get_header(CSRF_HEADER) or ""
            if not hmac.compare_digest(sent.encode(), login.csrf.encode()):
                raise E.PermissionDenied("missing or wrong X-CSRF-Token header for a portal session")
        return user, login.session_id

    @staticmethod
    def _purge(c: sa.Connection, now: float) -> None:
        c.execute(portal_sessions.delete().where(sa.or_(portal_sessions.c.seen_at < now - IDLE_S,
                                                        portal_sessions.c.created_at < now - MAX_AGE_S)))

    def describe(self, user: User) -> dict:
        """What the page needs to know about its session (not its CSRF
        token: see the module's docstring)."""
        home = user.home
        mounts = sorted({to_user(home, m.path) for m in self.gw.namespace.mounts if is_under(m.path, home)} | {"/"})
        return {"user": user.name, "admin": user.admin, "mounts": mounts}


def _key(token: str) -> str:
    # Keyed by a digest so the store never holds a usable token.
    return hashlib.sha256(token.encode()).hexdigest()


def _tls(req: falcon.Request) -> bool:
    return req.scheme == "https"


def _json_error(resp: falcon.Response, status: int, message: str) -> None:
    resp.status = status
    resp.media = {"error": message}
    resp.cache_control = ["no-store"]


# ------------------------------------------------------------------ resources


class _LoginResource:
    public = True

    def __init__(self, portal: Portal) -> None:
        self.portal = portal

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        form = (req.content_type or "").startswith("application/x-www-form-urlencoded")
        try:
            body = req.get_media(default_when_empty={})
        except falcon.MediaMalformedError:
            body = None
        name, password = (body.get("user"), body.get("password")) if isinstance(body, dict) else (None, None)
        if not isinstance(name, str) or not isinstance(password, str) or not name:
            return _json_error(resp, 400, "expected 'user' and 'password'")
        if from_another_site(req):
            # Another site posting a login form (login CSRF) gets no session.
            return _json_error(resp, 403, "login from another site refused")
        try:
            token, user, login = self.portal.login(name, password, req.remote_addr or "", _tls(req))
        except E.PermissionDenied as exc:  # also AuthenticationFailed 401, LoginBanned 429
            # Not the REST error handler: its Basic challenge would open the
            # browser's own password dialog.
            return _json_error(resp, status_for(exc), str(exc))
        self.portal.logout(req.cookies.get(COOKIE))  # a new login replaces the old session
        self.portal.gw.ops.logged_in(Session(user, "api", req.remote_addr or "", id=login.session_id), "password")
        resp.set_cookie(COOKIE, token, path="/", secure=_tls(req), http_only=True, same_site="Strict",
                        max_age=int(MAX_AGE_S))
        resp.cache_control = ["no-store"]
        if form:  # a plain HTML form: back to the page, which asks /ui/session
            resp.status = falcon.HTTP_303
            resp.location = "/ui/"
            return
        # The token goes to the script that sent the password, and only to it.
        resp.media = {**self.portal.describe(user), "csrf": login.csrf}


class _LogoutResource:
    public = True

    def __init__(self, portal: Portal) -> None:
        self.portal = portal

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        token = req.cookies.get(COOKIE)
        found = self.portal.lookup(token)
        if found is not None:
            try:
                self.portal.authenticate(req)  # the CSRF check
            except E.PermissionDenied as exc:
                return _json_error(resp, 403, str(exc))
            self.portal.logout(token)
            user, login = found
            self.portal.gw.ops.logged_out(Session(user, "api", req.remote_addr or "", id=login.session_id),
                                          time.time() - login.created)
        resp.unset_cookie(COOKIE, path="/", same_site="Strict")
        resp.status = falcon.HTTP_204


class _SessionResource:
    public = True

    def __init__(self, portal: Portal) -> None:
        self.portal = portal

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.cache_control = ["no-store"]
        found = self.portal.lookup(req.cookies.get(COOKIE))
        if found is None:
            return _json_error(resp, 401, "not logged in")
        resp.media = self.portal.describe(found[0])


class _StaticResource:
    """The page and its files, read from the installed package."""

    public = True

    def __init__(self, portal: Portal) -> None:
        self.portal = portal
        self.root = importlib.resources.files("gateway.api") / "static" / "ui"

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str = "index.html") -> None:
        suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
        if "/" in name or name.startswith(".") or suffix not in _TYPES:
            raise falcon.HTTPNotFound()
        item = self.root / name
        if not item.is_file():
            raise falcon.HTTPNotFound()
        nonce = secrets.token_urlsafe(16)
        resp.content_type = _TYPES[suffix]
        if suffix == ".html":
            resp.text = self._page(req, item.read_text(), nonce)
            resp.cache_control = ["no-store"]  # it may carry the session's token
            resp.set_header("Cross-Origin-Opener-Policy", "same-origin")
        else:
            resp.data = item.read_bytes()
            resp.cache_control = ["no-cache"]
        resp.set_header("Content-Security-Policy", _CSP.format(src=f"'nonce-{nonce}'"))
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("Referrer-Policy", "no-referrer")
        resp.set_header("X-Frame-Options", "DENY")

    on_head = on_get

    def _page(self, req: falcon.Request, text: str, nonce: str) -> str:
        """The page with its nonce, and with the session's CSRF token when a
        browser with a live session navigates to it (not when a script
        fetches it: the token is for the page, not for whoever asks)."""
        text = text.replace(_NONCE_MARK, f'nonce="{nonce}"')
        found = self.portal.lookup(req.cookies.get(COOKIE)) if _navigation(req) else None
        if found is not None:
            text = text.replace(_TOKEN_MARK, f'<meta name="csrf-token" content="{html.escape(found[1].csrf)}">')
        return text


def _navigation(req: falcon.Request) -> bool:
    """Whether the browser asks for a document to show in its window, as
    the Fetch Metadata headers say; a browser that sends none (plain HTTP
    to a host other than localhost) is believed."""
    dest, mode = req.get_header("Sec-Fetch-Dest"), req.get_header("Sec-Fetch-Mode")
    return dest in (None, "document") and mode in (None, "navigate")


class _RedirectResource:
    public = True

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise falcon.HTTPMovedPermanently("/ui/")


class _NoChallenge:
    """A browser holding the portal cookie gets no Basic challenge with a 401
    (an expired session): it would pop the browser's own password dialog up
    over the page, which logs in again by itself. Nor does a script's
    request that says so (``X-Requested-With: XMLHttpRequest``, as the
    docs page's "Try it" sends): the page shows the 401 itself."""

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, ok: bool) -> None:
        if COOKIE in req.cookies or req.get_header("X-Requested-With") == "XMLHttpRequest":
            resp.delete_header("WWW-Authenticate")


def register(app: falcon.App, portal: Portal) -> None:
    """Add the portal's routes (``/ui``, ``/ui/``, ``/ui/<file>``, ``/ui/login``,
    ``/ui/logout``, ``/ui/session``) to the REST app; they are ``public`` (no
    REST credentials needed). Call before the app serves its first request."""
    app.add_middleware(_NoChallenge())
    static = _StaticResource(portal)
    app.add_route("/ui", _RedirectResource())
    app.add_route("/ui/", static)
    app.add_route("/ui/login", _LoginResource(portal))
    app.add_route("/ui/logout", _LogoutResource(portal))
    app.add_route("/ui/session", _SessionResource(portal))
    app.add_route("/ui/{name}", static)
