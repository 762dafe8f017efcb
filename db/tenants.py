"""Tenants and their users (patients)."""

from __future__ import annotations

import asyncpg


async def ensure_tenant(conn: asyncpg.Connection, slug: str, name: str) -> int:
    """The tenant's id, creating it when the slug is new."""
    tenant_id: int = await conn.fetchval(
        "INSERT INTO tenants (slug, name) VALUES ($1, $2)"
        " ON CONFLICT (slug) DO UPDATE SET slug = excluded.slug RETURNING id",
        slug,
        name,
    )
    return tenant_id


async def ensure_user(
    conn: asyncpg.Connection, tenant_id: int, external_id: str, display_name: str, timezone: str = "UTC"
) -> int:
    user_id: int = await conn.fetchval(
        "INSERT INTO users (tenant_id, external_id, display_name, timezone) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (tenant_id, external_id) DO UPDATE SET external_id = excluded.external_id RETURNING id",
        tenant_id,
        external_id,
        display_name,
        timezone,
    )
    return user_id
