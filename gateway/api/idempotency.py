"""``Idempotency-Key`` on REST requests that change something
(draft-ietf-httpapi-idempotency-key-header): the same key from the same user
within a day gets the first request's reply again, without doing the work
twice; the same key on a different request is 422; while the first is still
being answered, 409.

Replies are kept in the job store's database (table ``idempotency_keys``),
so a retry that reaches another node, or the same node after a restart, is
answered the same way. Server errors (5xx) are not kept: the client may try
again for real.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import Any

import falcon
import sqlalchemy as sa

from gateway import errors as E
from gateway.jobs.schema import idempotency_keys as table
from gateway.jobs.store import write_transaction

__all__ = ["Idempotency", "KEEP_S"]

#: How long a reply is kept for its key.
KEEP_S = 86400.0
#: The longest key accepted (the draft suggests a UUID).
MAX_KEY = 255
_HEADER = "Idempotency-Key"


class Idempotency:
    """falcon middleware; after Authentication (it keys replies by user)."""

    def __init__(self, engine: sa.Engine, keep_s: float = KEEP_S) -> None:
        self.engine = engine
        self.keep_s = keep_s
        self._last_purge = 0.0
        self._lock = threading.Lock()

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict) -> None:
        key = req.get_header(_HEADER)
        if key is None or req.method != "POST" or resource is None or getattr(resource, "public", False):
            return
        key = key.strip().strip('"')
        if not key or len(key) > MAX_KEY:
            raise E.BadRequest(f"{_HEADER} must be 1 to {MAX_KEY} characters")
        owner = req.context.session.user.name
        fingerprint = _fingerprint(req)
        self._purge()
        now = time.time()
        with write_transaction(self.engine) as c:
            row = c.execute(sa.select(table).where(table.c.owner == owner, table.c.key == key)).first()
            if row is None or row.created_at < now - self.keep_s:
                if row is not None:
                    c.execute(table.delete().where(table.c.owner == owner, table.c.key == key))
                c.execute(table.insert().values(owner=owner, key=key, fingerprint=fingerprint, created_at=now))
                req.context.idempotency = (owner, key)
                return
        if row.fingerprint != fingerprint:
            raise falcon.HTTPUnprocessableEntity(
                title="Idempotency-Key reused",
                description=f"{_HEADER} {key!r} was sent with a different request; use a new key")
        if row.status is None:
            raise E.Conflict(f"the request with {_HEADER} {key!r} is still being answered; try again shortly")
        resp.status = row.status
        resp.content_type = falcon.MEDIA_JSON
        resp.text = row.body
        if row.location:
            resp.location = row.location
        resp.set_header("Idempotent-Replayed", "true")
        resp.complete = True

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, ok: bool) -> None:
        begun = getattr(req.context, "idempotency", None)
        if begun is None:
            return
        owner, key = begun
        where = (table.c.owner == owner, table.c.key == key)
        status = int(str(resp.status).split()[0]) if resp.status else 200
        with write_transaction(self.engine) as c:
            if not ok or status >= 500:
                c.execute(table.delete().where(*where))
                return
            body = resp.text if resp.text is not None else json.dumps(resp.media)
            c.execute(table.update().where(*where).values(status=status, body=body,
                                                          location=resp.location))

    def _purge(self) -> None:
        """Forget expired keys, at most once a minute."""
        now = time.time()
        with self._lock:
            if now - self._last_purge < 60:
                return
            self._last_purge = now
        with write_transaction(self.engine) as c:
            c.execute(table.delete().where(table.c.created_at < now - self.keep_s))


def _fingerprint(req: falcon.Request) -> str:
    """What makes two requests the same: method, path, query and JSON body."""
    try:
        media = req.get_media(default_when_empty=None)
    except falcon.MediaMalformedError:
        raise E.BadRequest("the body is not valid JSON") from None
    text = json.dumps([req.method, req.path, sorted(req.params.items()), media], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
