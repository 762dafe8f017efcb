"""What a weekly report shows, read from Postgres in one place: the stored weekly summary
(``db.reports.weekly_summary``) and the details a rendering adds (``db.reports.details``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from db import reports
from db.reports import Report

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ReportData:
    report: Report
    summary: JSON  # period, per-metric avg/min/max, latest score per domain
    details: JSON  # score_series, alerts, correlations, cgm


async def load(conn: asyncpg.Connection, report_id: int) -> ReportData | None:
    """The report's data; None when there is no such report.  A pending report is summarised
    now, the same way ``build`` would."""
    report = await reports.get(conn, report_id)
    if report is None:
        return None
    summary: JSON | None = None
    if report.status == "ready":
        summary = await conn.fetchval("SELECT content FROM reports WHERE id = $1", report_id)
    if summary is None:
        summary = await reports.weekly_summary(conn, report.user_id, report.start, report.end)
    details = await reports.details(conn, report.user_id, report.timezone, report.start, report.end)
    return ReportData(report, summary, details)


async def load_for_user(conn: asyncpg.Connection, user_id: int, end: date | None = None) -> ReportData | None:
    """The user's stored report ending on ``end``, else a preview of the seven days to ``end``;
    without ``end``, the user's newest report, else a preview of the seven (UTC) days to today.
    None when there is no such user."""
    report_id = await reports.latest_for_user(conn, user_id, end)
    if report_id is not None:
        return await load(conn, report_id)
    end = end or datetime.now(UTC).date()
    report = await reports.preview(conn, user_id, end - timedelta(days=6), end)
    if report is None:
        return None
    summary = await reports.weekly_summary(conn, user_id, report.start, report.end)
    return ReportData(report, summary, await reports.details(conn, user_id, report.timezone, report.start, end))
