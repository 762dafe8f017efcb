"""OAuth states: a random state per flow, bound to the user who started it, kept as a hash."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

LIFETIME = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class OAuthState:
    user_id: int
    provider: str
    redirect_uri: str


def _hash(state: str) -> bytes:
    return hashlib.sha256(state.encode()).digest()


async def create(conn: asyncpg.Connection, user_id: int, provider: str, redirect_uri: str) -> tuple[str, datetime]:
    """A new state for the user's flow; returns it (never stored) and when it expires.
    Expired states of any user are swept on the way."""
    state = secrets.token_urlsafe(32)
    await conn.execute("DELETE FROM oauth_states WHERE expires_at < now()")
    expires_at: datetime = await conn.fetchval(
        "INSERT INTO oauth_states (state_hash, user_id, provider, redirect_uri, expires_at)"
        " VALUES ($1, $2, $3, $4, now() + $5::interval) RETURNING expires_at",
        _hash(state),
        user_id,
        provider,
        redirect_uri,
        LIFETIME,
    )
    return state, expires_at


async def consume(conn: asyncpg.Connection, state: str, provider: str) -> OAuthState | None:
    """The flow ``state`` belongs to, once: the row is deleted.  None when unknown, expired or
    started for another provider."""
    row = await conn.fetchrow(
        "DELETE FROM oauth_states WHERE state_hash = $1 RETURNING user_id, provider, redirect_uri, expires_at",
        _hash(state),
    )
    if row is None or row["provider"] != provider or row["expires_at"] < await conn.fetchval("SELECT now()"):
        return None
    return OAuthState(row["user_id"], row["provider"], row["redirect_uri"])
