"""Health scores: one row per user, local day and domain."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import asyncpg


async def upsert(
    conn: asyncpg.Connection, user_id: int, day: date, domain: str, value: float, contributors: dict[str, Any]
) -> None:
    await conn.execute(
        "INSERT INTO health_scores (user_id, day, domain, score, contributors) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (user_id, day, domain) DO UPDATE"
        " SET score = excluded.score, contributors = excluded.contributors, computed_at = now()",
        user_id,
        day,
        domain,
        value,
        contributors,
    )


async def upsert_many(conn: asyncpg.Connection, rows: Sequence[tuple[int, date, str, float, dict[str, Any]]]) -> None:
    """``upsert`` for many (user_id, day, domain, value, contributors), in one round trip."""
    await conn.executemany(
        "INSERT INTO health_scores (user_id, day, domain, score, contributors) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (user_id, day, domain) DO UPDATE"
        " SET score = excluded.score, contributors = excluded.contributors, computed_at = now()",
        rows,
    )
