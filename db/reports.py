"""Weekly health reports: a pending row per user and period first, then its content.

The reports job creates the rows and sends one message each; the report actor calls
``build``.  A report is built once: a replayed message finds it ready and leaves it alone.
Then the actor emails it (``pipeline.reports``), reading what a rendering shows with
``details`` and whom to send it to with ``recipients``; each email sent is an audit event,
so a replay sends only what is still missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from db import audit, events
from db.notification_channels import ChannelRow

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
        tenant_id = await conn.fetchval("SELECT tenant_id FROM users WHERE id = $1", report["user_id"])
        period = {"start": report["period_start"].isoformat(), "end": report["period_end"].isoformat()}
        data = {"report_id": report_id, "user_id": report["user_id"], "period": period}
        await events.publish(conn, tenant_id, events.REPORT_READY, data)
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


@dataclass(frozen=True, slots=True)
class Report:
    id: int
    user_id: int
    tenant_id: int
    patient: str
    timezone: str
    start: date
    end: date
    status: str


@dataclass(frozen=True, slots=True)
class Recipient:
    """An email channel the report goes to; ``audience`` is "patient" when the patient's own rule
    asked for it (their opt-in), else "care_team"."""

    channel: ChannelRow
    audience: str


# How far back the score charts reach, so the week shows as a trend rather than seven points.
TREND_DAYS = 28
NOTABLE_CORRELATIONS = 5
MAX_ALERTS = 50
REPORT_CATEGORY = "report"


async def get(conn: asyncpg.Connection, report_id: int) -> Report | None:
    row = await conn.fetchrow(
        "SELECT r.id, r.user_id, u.tenant_id, u.display_name AS patient, u.timezone,"
        " r.period_start AS start, r.period_end AS end, r.status"
        " FROM reports r JOIN users u ON u.id = r.user_id WHERE r.id = $1",
        report_id,
    )
    return Report(**dict(row)) if row is not None else None


async def preview(conn: asyncpg.Connection, user_id: int, start: date, end: date) -> Report | None:
    """A report of the user for [start, end] that is not stored (id 0, status "preview"); None
    when there is no such user."""
    row = await conn.fetchrow("SELECT tenant_id, display_name, timezone FROM users WHERE id = $1", user_id)
    if row is None:
        return None
    return Report(0, user_id, row["tenant_id"], row["display_name"], row["timezone"], start, end, "preview")


async def latest_for_user(conn: asyncpg.Connection, user_id: int, end: date | None = None) -> int | None:
    """The newest report of the user (by period, ending on ``end`` when given), ready or not."""
    found: int | None = await conn.fetchval(
        "SELECT id FROM reports WHERE user_id = $1 AND ($2::date IS NULL OR period_end = $2)"
        " ORDER BY period_end DESC, id DESC LIMIT 1",
        user_id,
        end,
    )
    return found


async def details(conn: asyncpg.Connection, user_id: int, timezone: str, start: date, end: date) -> JSON:
    """What a rendering shows beyond the weekly summary: daily scores over the last TREND_DAYS,
    the week's alerts (newest first, at most MAX_ALERTS), the notable correlations of the latest
    analysis (strongest first), and the CGM summary of the latest period ending in the week."""
    scores = await conn.fetch(
        "SELECT domain, day, score FROM health_scores WHERE user_id = $1 AND day BETWEEN $2 AND $3"
        " ORDER BY domain, day",
        user_id,
        end - timedelta(days=TREND_DAYS - 1),
        end,
    )
    alerts = await conn.fetch(
        "SELECT id, severity, category, metric, title, created_at FROM alerts"
        " WHERE user_id = $1 AND created_at >= $2 AND created_at < $3 ORDER BY created_at DESC, id DESC LIMIT $4",
        user_id,
        _local_midnight(start, timezone),
        _local_midnight(end + timedelta(days=1), timezone),
        MAX_ALERTS,
    )
    correlations = await conn.fetch(
        "SELECT metric_a, metric_b, lag_days, spearman, q_value, description FROM correlations"
        " WHERE user_id = $1 ORDER BY abs(spearman) DESC, metric_a, metric_b, lag_days LIMIT $2",
        user_id,
        NOTABLE_CORRELATIONS,
    )
    cgm = await conn.fetchrow(
        "SELECT period_end, days, metrics FROM cgm_summaries WHERE user_id = $1 AND period_end BETWEEN $2 AND $3"
        " ORDER BY period_end DESC, days LIMIT 1",
        user_id,
        start,
        end,
    )
    series: dict[str, list[tuple[str, float]]] = {}
    for row in scores:
        series.setdefault(row["domain"], []).append((row["day"].isoformat(), row["score"]))
    return {
        "score_series": series,
        "alerts": [dict(a) | {"created_at": a["created_at"].isoformat()} for a in alerts],
        "correlations": [dict(c) for c in correlations],
        "cgm": None if cgm is None else dict(cgm) | {"period_end": cgm["period_end"].isoformat()},
    }


async def recipients(conn: asyncpg.Connection, report: Report) -> list[Recipient]:
    """The enabled email channels of enabled rules of the patient's tenant that cover the patient
    and list the "report" category, in channel id order.  A rule owned by the patient is the
    patient's opt-in; any other (a care team's, a tenant-wide one) is the care team's copy."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (c.id) c.id, c.tenant_id, c.kind, c.label, c.config_sealed,"
        " bool_or(r.owner_user_id IS NOT NULL) OVER (PARTITION BY c.id) AS patients"
        " FROM notification_rules r"
        " JOIN notification_rule_channels rc ON rc.rule_id = r.id AND rc.purpose = 'notify'"
        " JOIN notification_channels c ON c.id = rc.channel_id AND c.enabled AND c.tenant_id = r.tenant_id"
        " WHERE r.tenant_id = $1 AND r.enabled AND c.kind = 'email' AND $3 = ANY (r.categories)"
        " AND (r.patient_id IS NULL OR r.patient_id = $2) AND (r.owner_user_id IS NULL OR r.owner_user_id = $2)"
        " ORDER BY c.id",
        report.tenant_id,
        report.user_id,
        REPORT_CATEGORY,
    )
    return [
        Recipient(
            ChannelRow(r["id"], r["tenant_id"], r["kind"], r["label"], r["config_sealed"]),
            "patient" if r["patients"] else "care_team",
        )
        for r in rows
    ]


async def emailed_channels(conn: asyncpg.Connection, report_id: int) -> set[int]:
    """The channels the report was already emailed to."""
    rows = await conn.fetch(
        "SELECT (details->>'channel_id')::bigint AS channel_id FROM audit_events"
        " WHERE subject_type = 'report' AND subject_id = $1 AND action = 'report.emailed'",
        report_id,
    )
    return {r["channel_id"] for r in rows}


async def record_emailed(conn: asyncpg.Connection, report: Report, recipient: Recipient, detail: str | None) -> None:
    await audit.record(
        conn,
        tenant_id=report.tenant_id,
        actor="pipeline",
        action="report.emailed",
        subject_type="report",
        subject_id=report.id,
        details={"channel_id": recipient.channel.id, "audience": recipient.audience, "detail": detail},
    )


def _local_midnight(day: date, timezone: str) -> datetime:
    return datetime.combine(day, time(), ZoneInfo(timezone))


def _utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)
