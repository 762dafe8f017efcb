"""Weekly health reports: a pending row per user and period first, then its content.

The reports job creates the rows and sends one message each; the report actor calls
``build``.  A report is built once: a replayed message finds it ready and leaves it alone.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import asyncpg

JSON = dict[str, Any]


async def create_pending(conn: asyncpg.Connection, start: date, end: date) -> list[int]:
    """A pending report for [start, end] (inclusive) for every user with readings in it; returns
    the new ids.  A report that exists for the period is left as it is."""
    # Local days run from UTC−12 to UTC+14, so a day either side catches every user whose local
    # week had readings; probing metrics per user uses its (user_id, recorded_at) index.
    rows = await conn.fetch(
        "INSERT INTO reports (user_id, period_start, period_end)"
        " SELECT u.id, $1, $2 FROM users u WHERE EXISTS (SELECT 1 FROM metrics m WHERE m.user_id = u.id"
        "   AND m.recorded_at >= $3 AND m.recorded_at < $4)"
        " ORDER BY u.id ON CONFLICT (user_id, period_start, period_end) DO NOTHING RETURNING id",
        start,
        end,
        _utc_midnight(start - timedelta(days=1)),
        _utc_midnight(end + timedelta(days=2)),
    )
    return [row["id"] for row in rows]


async def pending(conn: asyncpg.Connection, limit: int = 10_000) -> list[int]:
    """Reports still waiting for their content, oldest first."""
    rows = await conn.fetch("SELECT id FROM reports WHERE status = 'pending' ORDER BY created_at, id LIMIT $1", limit)
    return [row["id"] for row in rows]


async def unbuilt(conn: asyncpg.Connection, older_than: timedelta) -> list[int]:
    """Pending reports created longer than ``older_than`` ago: their message may be lost."""
    rows = await conn.fetch(
        "SELECT id FROM reports WHERE status = 'pending' AND created_at < now() - $1::interval ORDER BY id LIMIT 1000",
        older_than,
    )
    return [row["id"] for row in rows]


async def build(conn: asyncpg.Connection, report_id: int) -> bool:
    """Fill in a pending report and mark it ready.  False when it is unknown, already ready,
    or being built by another worker right now (its row is locked)."""
    async with conn.transaction():
        report = await conn.fetchrow(
            "SELECT user_id, period_start, period_end FROM reports WHERE id = $1 AND status = 'pending'"
            " FOR UPDATE SKIP LOCKED",
            report_id,
        )
        if report is None:
            return False
        content = await weekly_summary(conn, report["user_id"], report["period_start"], report["period_end"])
        await conn.execute(
            "UPDATE reports SET status = 'ready', content = $2, finished_at = now() WHERE id = $1", report_id, content
        )
    return True


async def weekly_summary(conn: asyncpg.Connection, user_id: int, start: date, end: date) -> JSON:
    """Per metric, the period's mean (of every reading: daily means weighted by their counts),
    minimum and maximum; per score domain, the latest score in the period."""
    metrics = await conn.fetch(
        "SELECT metric, sum(avg * count) / sum(count) AS avg, min(min) AS min, max(max) AS max,"
        " sum(count)::int AS readings, count(*)::int AS days"
        " FROM daily_stats WHERE user_id = $1 AND day BETWEEN $2 AND $3 GROUP BY metric ORDER BY metric",
        user_id,
        start,
        end,
    )
    scores = await conn.fetch(
        "SELECT DISTINCT ON (domain) domain, day, score FROM health_scores"
        " WHERE user_id = $1 AND day BETWEEN $2 AND $3 ORDER BY domain, day DESC",
        user_id,
        start,
        end,
    )
    return {
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "metrics": {
            m["metric"]: {
                "avg": round(m["avg"], 4),
                "min": m["min"],
                "max": m["max"],
                "readings": m["readings"],
                "days": m["days"],
            }
            for m in metrics
        },
        "scores": {s["domain"]: {"day": s["day"].isoformat(), "score": s["score"]} for s in scores},
    }


def _utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)
