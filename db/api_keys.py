"""API keys: ``cbk_<prefix>_<secret>``, shown once, kept as a SHA-256 hash.

The key is 256 random bits, so a plain hash is enough (no password-style stretching: nothing
to guess).  The prefix is public: it finds the row, and names the key in lists and logs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

SCOPES = ("read", "write", "admin")
KEY_PREFIX = "cbk_"


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    tenant_id: int
    name: str
    prefix: str
    scopes: tuple[str, ...]
    expires_at: datetime | None

    def allows(self, scope: str) -> bool:
        # admin implies write, write implies read.
        return SCOPES.index(scope) <= max(SCOPES.index(s) for s in self.scopes)


def _hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


async def create(
    conn: asyncpg.Connection, tenant_id: int, name: str, scopes: list[str], expires_at: datetime | None = None
) -> tuple[ApiKey, str]:
    """A new key for the tenant; returns it with the plain key, which is never stored."""
    unknown = set(scopes) - set(SCOPES)
    if unknown or not scopes:
        raise ValueError(f"scopes must be some of {', '.join(SCOPES)}")
    prefix = secrets.token_hex(4)
    plain = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    row = await conn.fetchrow(
        "INSERT INTO api_keys (tenant_id, name, prefix, key_hash, scopes, expires_at) VALUES ($1, $2, $3, $4, $5, $6)"
        " RETURNING id",
        tenant_id,
        name,
        prefix,
        _hash(plain),
        sorted(set(scopes), key=SCOPES.index),
        expires_at,
    )
    return ApiKey(row["id"], tenant_id, name, prefix, tuple(scopes), expires_at), plain


async def authenticate(conn: asyncpg.Connection, presented: str) -> ApiKey | None:
    """The live key matching ``presented``, or None (unknown, wrong, expired or revoked alike)."""
    if not presented.startswith(KEY_PREFIX):
        return None
    prefix, _, _ = presented[len(KEY_PREFIX) :].partition("_")
    row = await conn.fetchrow(
        "SELECT id, tenant_id, name, prefix, key_hash, scopes, expires_at FROM api_keys WHERE prefix = $1"
        " AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
        prefix,
    )
    if row is None or not hmac.compare_digest(row["key_hash"], _hash(presented)):
        return None
    # At most one write a minute per key: a busy integrator should not turn reads into writes.
    await conn.execute(
        "UPDATE api_keys SET last_used_at = now() WHERE id = $1"
        " AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
        row["id"],
    )
    return ApiKey(row["id"], row["tenant_id"], row["name"], row["prefix"], tuple(row["scopes"]), row["expires_at"])


async def revoke(conn: asyncpg.Connection, tenant_id: int, key_id: int) -> bool:
    status: str = await conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL",
        key_id,
        tenant_id,
    )
    return status.endswith(" 1")
