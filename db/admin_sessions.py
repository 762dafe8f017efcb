"""Admin console sessions: a random id in an HttpOnly cookie, kept here as its SHA-256 hash.

A session is either bound to an admin-scope API key (it sees that key's tenant, and dies with
the key: revoked or expired, the lookup finds nothing) or made with the deployment's admin
password (``tenant_id`` None: it sees every tenant).  Each carries its own CSRF token.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg

LIFETIME = timedelta(hours=12)


@dataclass(frozen=True, slots=True)
class AdminSession:
    tenant_id: int | None
    api_key_id: int | None
    csrf_token: str = field(repr=False)

    @property
    def deployment_wide(self) -> bool:
        return self.tenant_id is None


def _hash(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


async def create(
    conn: asyncpg.Connection, *, api_key_id: int | None = None, tenant_id: int | None = None
) -> tuple[str, AdminSession]:
    """A new session; returns the plain id for the cookie (never stored) and the session."""
    if (api_key_id is None) != (tenant_id is None):
        raise ValueError("a key session names both its key and its tenant; a password session neither")
    session_id = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    # Expired sessions are dropped as new ones are made: the table stays the size of its use.
    await conn.execute("DELETE FROM admin_sessions WHERE expires_at < now()")
    await conn.execute(
        "INSERT INTO admin_sessions (id_hash, api_key_id, tenant_id, csrf_token, expires_at)"
        " VALUES ($1, $2, $3, $4, now() + $5::interval)",
        _hash(session_id),
        api_key_id,
        tenant_id,
        csrf,
        LIFETIME,
    )
    return session_id, AdminSession(tenant_id, api_key_id, csrf)


async def find(conn: asyncpg.Connection, session_id: str) -> AdminSession | None:
    """The live session with this id, or None (unknown, expired, or its key revoked or expired)."""
    row = await conn.fetchrow(
        "SELECT s.tenant_id, s.api_key_id, s.csrf_token FROM admin_sessions s"
        " LEFT JOIN api_keys k ON k.id = s.api_key_id"
        " WHERE s.id_hash = $1 AND s.expires_at > now() AND (s.api_key_id IS NULL OR"
        "  (k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())))",
        _hash(session_id),
    )
    return AdminSession(row["tenant_id"], row["api_key_id"], row["csrf_token"]) if row else None


async def delete(conn: asyncpg.Connection, session_id: str) -> None:
    await conn.execute("DELETE FROM admin_sessions WHERE id_hash = $1", _hash(session_id))
