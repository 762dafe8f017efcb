"""Analytics results: daily stats, correlations and CGM summaries, replaced idempotently."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import asyncpg


async def upsert_daily_stats(conn: asyncpg.Connection, user_id: int, rows: Sequence[tuple[Any, ...]]) -> None:
    """``rows`` are (metric, day, avg, min, max, count, avg_7d, avg_30d)."""
    await upsert_daily_stats_many(conn, [(user_id, *row) for row in rows])


async def upsert_daily_stats_many(conn: asyncpg.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """``rows`` are (user_id, metric, day, avg, min, max, count, avg_7d, avg_30d), of any users."""
    if not rows:
        return
    columns = list(zip(*rows, strict=True))
    await conn.execute(
        "INSERT INTO daily_stats (user_id, metric, day, avg, min, max, count, avg_7d, avg_30d)"
        " SELECT * FROM unnest($1::bigint[], $2::text[], $3::date[], $4::float8[], $5::float8[], $6::float8[],"
        "                      $7::int[], $8::float8[], $9::float8[])"
        " ON CONFLICT (user_id, metric, day) DO UPDATE SET avg = excluded.avg, min = excluded.min,"
        " max = excluded.max, count = excluded.count, avg_7d = excluded.avg_7d, avg_30d = excluded.avg_30d",
        *[list(column) for column in columns],
    )


async def replace_correlations(
    conn: asyncpg.Connection, user_id: int, period_end: date, rows: Sequence[tuple[Any, ...]]
) -> None:
    """``rows`` are (a, b, lag, n, spearman, pearson, p, q, ci_low, ci_high, description); the old set goes."""
    await replace_correlations_many(conn, [user_id], [(user_id, *row, period_end) for row in rows])


async def replace_correlations_many(
    conn: asyncpg.Connection, user_ids: Sequence[int], rows: Sequence[tuple[Any, ...]]
) -> None:
    """The sets of ``user_ids`` become ``rows``: (user_id, a, b, lag, n, spearman, pearson, p, q,
    ci_low, ci_high, description, period_end)."""
    await conn.execute("DELETE FROM correlations WHERE user_id = ANY($1::bigint[])", list(user_ids))
    if rows:
        columns = list(zip(*rows, strict=True))
        await conn.execute(
            "INSERT INTO correlations (user_id, metric_a, metric_b, lag_days, n, spearman, pearson, p_value,"
            " q_value, ci_low, ci_high, description, period_end)"
            " SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::smallint[], $5::int[],"
            " $6::float8[], $7::float8[], $8::float8[], $9::float8[], $10::float8[], $11::float8[],"
            " $12::text[], $13::date[])",
            *[list(column) for column in columns],
        )


async def upsert_cgm_summary(
    conn: asyncpg.Connection, user_id: int, period_end: date, days: int, metrics: dict[str, Any]
) -> None:
    await conn.execute(
        "INSERT INTO cgm_summaries (user_id, period_end, days, metrics) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (user_id, period_end, days) DO UPDATE SET metrics = excluded.metrics",
        user_id,
        period_end,
        days,
        metrics,
    )


async def upsert_cgm_summaries(conn: asyncpg.Connection, rows: Sequence[tuple[int, date, int, dict[str, Any]]]) -> None:
    """``upsert_cgm_summary`` for many (user_id, period_end, days, metrics), in one round trip."""
    await conn.executemany(
        "INSERT INTO cgm_summaries (user_id, period_end, days, metrics) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (user_id, period_end, days) DO UPDATE SET metrics = excluded.metrics",
        rows,
    )


async def thresholds(conn: asyncpg.Connection, user_id: int) -> dict[str, Any]:
    found: dict[str, Any] = await conn.fetchval("SELECT alert_thresholds FROM users WHERE id = $1", user_id) or {}
    return found
