"""Analytics after a sync: aggregates, correlations, scores, CGM metrics, anomalies → alerts.

``analysis.analyse`` does the maths with no I/O; ``analyse_run`` feeds it a user's last 90
days and stores what it found.  Re-running it changes nothing: results are upserted or
replaced, and alerts are deduplicated by (rule, user, metric, day).
"""

from __future__ import annotations

__all__ = ["AnalysisOutcome", "analyse_run"]

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from db import alerts, events, metrics, sync_runs
from db import analytics as stored
from db import scores as db_scores
from pipeline.analytics.analysis import CGM_DAYS, CORRELATION_DAYS, Analysis, analyse, check_from
from pipeline.analytics.columns import ReadingColumns
from pipeline.analytics.findings import to_alert
from pipeline.analytics.thresholds import Thresholds

log = logging.getLogger(__name__)

# Only what survives the false-discovery control is kept: 30 metrics give ~3,000 pairs × lags a
# run, and a care team acts on the significant few (the analyze command prints them all).
SIGNIFICANT_Q = 0.05


@dataclass(frozen=True, slots=True)
class AnalysisOutcome:
    run_id: int
    user_id: int
    new_alert_ids: tuple[int, ...]
    analysis: Analysis | None


async def analyse_run(pool: asyncpg.Pool, run_id: int) -> AnalysisOutcome | None:
    """Analyse what the run stored.  None when the run is unknown or has no window.

    Only alerts created by this call are returned, so the caller notifies each once.
    """
    async with pool.acquire() as conn:
        run = await conn.fetchrow(
            "SELECT r.window_start, r.window_end, c.user_id, u.tenant_id, u.timezone, u.alert_thresholds"
            " FROM sync_runs r JOIN connections c ON c.id = r.connection_id JOIN users u ON u.id = c.user_id"
            " WHERE r.id = $1",
            run_id,
        )
        if run is None or run["window_start"] is None:
            return None
        user_id, timezone = run["user_id"], run["timezone"]
        since = run["window_end"] - timedelta(days=CORRELATION_DAYS + 1)
        # As arrays: a tenth of the cost of a Reading object per row (docs/benchmarks.md).
        found = await metrics.latest_arrays(conn, [user_id], since)
    readings = ReadingColumns.from_metric_arrays(found[user_id])

    zone = ZoneInfo(timezone)
    first_day = run["window_start"].astimezone(zone).date()
    latest = datetime.fromtimestamp(float(readings.seconds.max()), zone).date() if len(readings) else None
    result = (
        analyse(
            readings,
            timezone,
            check_from=check_from(first_day, latest),
            today=run["window_end"].astimezone(zone).date(),
            thresholds=_thresholds(run, user_id),
            max_q=SIGNIFICANT_Q,
        )
        if latest is not None
        else None
    )
    new_ids: list[int] = []
    async with pool.acquire() as conn, conn.transaction():
        if result is not None:
            await _store(conn, user_id, result, first_day)
            await _publish_scores(conn, run["tenant_id"], user_id, run_id, result)
            for finding in result.findings:
                alert_id = await alerts.insert(conn, to_alert(finding, user_id))
                if alert_id is not None:
                    new_ids.append(alert_id)
        await sync_runs.mark_analysed(conn, run_id)
    if result is not None:
        scored = ", ".join(f"{d} {s.value:g}" for d, s in result.scores.items() if s.value is not None)
        log.info("score user %s %s: %s", user_id, result.day, scored or "insufficient data")
    if new_ids:
        log.info("user %s: %d new alert(s) %s", user_id, len(new_ids), new_ids)
    return AnalysisOutcome(run_id, user_id, tuple(new_ids), result)


def _thresholds(run: asyncpg.Record, user_id: int) -> Thresholds:
    try:
        return Thresholds.from_dict(run["alert_thresholds"] or {})
    except ValueError as exc:
        # A bad override must not silence every rule: fall back to the defaults, loudly.
        log.error("user %s: invalid alert thresholds (%s); using the defaults", user_id, exc)
        return Thresholds()


async def _store(conn: asyncpg.Connection, user_id: int, result: Analysis, first_day: date) -> None:
    # Days before the window did not change, except through rolling averages, which only look back.
    await stored.upsert_daily_stats(
        conn,
        user_id,
        [
            (s.metric, s.day, s.avg, s.min, s.max, s.count, s.avg_7d, s.avg_30d)
            for s in result.daily.stats_since(first_day)
        ],
    )
    await stored.replace_correlations(
        conn,
        user_id,
        result.day,
        [
            (c.a, c.b, c.lag_days, c.n, c.spearman, c.pearson, c.p, c.q, c.ci[0], c.ci[1], c.describe())
            for c in result.correlations
        ],
    )
    for score in result.scores.values():
        if score.value is not None:
            await db_scores.upsert(conn, user_id, score.day, score.domain, score.value, score.contributors)
    if result.cgm is not None:
        await stored.upsert_cgm_summary(conn, user_id, result.day, CGM_DAYS, result.cgm.as_dict())


async def _publish_scores(
    conn: asyncpg.Connection, tenant_id: int, user_id: int, run_id: int, result: Analysis
) -> None:
    """``score.updated`` for integrators: the day's score per domain, nothing beneath them."""
    scores = {domain: s.value for domain, s in result.scores.items() if s.value is not None}
    if scores:
        data = {"user_id": user_id, "sync_run_id": run_id, "day": result.day.isoformat(), "scores": scores}
        await events.publish(conn, tenant_id, events.SCORE_UPDATED, data)
