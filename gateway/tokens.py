"""API tokens for the REST API: shown once, stored as a SHA-256 digest,
revocable. Protocol-free; lives in the job store's database."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa

from gateway.errors import NotFound
from gateway.jobs.schema import api_tokens
from gateway.jobs.store import JobStore, hash_token, write_transaction

__all__ = ["TokenStore", "TokenInfo"]


@dataclass(frozen=True)
class TokenInfo:
    id: str
    user: str
    name: str
    created_at: float
    last_used_at: float | None
    revoked: bool


class TokenStore:
    def __init__(self, store: JobStore) -> None:
        self.engine = store.engine

    def create(self, user: str, name: str = "") -> tuple[str, str]:
        """(token id, the token itself — shown once, never stored)."""
        token_id = secrets.token_hex(6)
        token = f"gwt_{token_id}_{secrets.token_urlsafe(32)}"
        with self.engine.begin() as c:
            c.execute(api_tokens.insert().values(id=token_id, user=user, name=name, token_hash=hash_token(token),
                                                 created_at=time.time(), revoked=False))
        return token_id, token

    def user_for(self, token: str) -> str | None:
        """The user a live token belongs to; None for unknown or revoked."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(api_tokens).where(api_tokens.c.token_hash == hash_token(token))).first()
        if row is None or row.revoked:
            return None
        # A write of its own: a read transaction that turns into a write
        # fails at once on SQLite ("database is locked") while a job writes.
        with write_transaction(self.engine) as c:
            c.execute(api_tokens.update().where(api_tokens.c.id == row.id).values(last_used_at=time.time()))
        return row.user

    def list(self, user: str | None = None) -> list[TokenInfo]:
        q = sa.select(api_tokens).order_by(api_tokens.c.created_at)
        if user:
            q = q.where(api_tokens.c.user == user)
        with self.engine.connect() as c:
            return [TokenInfo(r.id, r.user, r.name, r.created_at, r.last_used_at, bool(r.revoked))
                    for r in c.execute(q)]

    def revoke(self, token_id: str) -> None:
        """Raises NotFound for an unknown id. Idempotent."""
        with self.engine.begin() as c:
            res = c.execute(api_tokens.update().where(api_tokens.c.id == token_id).values(revoked=True))
        if res.rowcount != 1:
            raise NotFound(f"no API token {token_id!r}")
