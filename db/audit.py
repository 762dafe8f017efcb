"""The audit trail: who did what to which subject.  Details never hold secrets or readings."""

from __future__ import annotations

from typing import Any

import asyncpg


async def record(
    conn: asyncpg.Connection,
    *,
    tenant_id: int | None,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: int | None,
    details: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO audit_events (tenant_id, actor, action, subject_type, subject_id, details)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        tenant_id,
        actor,
        action,
        subject_type,
        subject_id,
        details or {},
    )
