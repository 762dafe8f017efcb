"""Analytics after a sync: scores, then clinical rules that raise alerts."""

from __future__ import annotations

__all__ = ["AnalysisOutcome", "analyse_run"]

import logging
from dataclasses import dataclass

import asyncpg

from db import alerts, metrics, sync_runs
from db import scores as db_scores
from pipeline.analytics import clinical, scores

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AnalysisOutcome:
    run_id: int
    user_id: int
    new_alert_ids: tuple[int, ...]
    scores: tuple[scores.Score, ...]


async def analyse_run(pool: asyncpg.Pool, run_id: int) -> AnalysisOutcome | None:
    """Score and check what the run's window stored.  None when the run is unknown or has no window.

    Safe to repeat: scores are upserted by (user, day, domain) and alerts deduplicated by key;
    only alerts created by this call are returned.
    """
    async with pool.acquire() as conn:
        run = await conn.fetchrow(
            "SELECT r.window_start, c.user_id, u.timezone FROM sync_runs r"
            " JOIN connections c ON c.id = r.connection_id JOIN users u ON u.id = c.user_id WHERE r.id = $1",
            run_id,
        )
        if run is None or run["window_start"] is None:
            return None
        user_id = run["user_id"]
        readings = await metrics.latest(conn, user_id, run["window_start"])
        found = [s for s in (scores.cardio(readings, run["timezone"]),) if s is not None]
        new_ids: list[int] = []
        async with conn.transaction():
            for score in found:
                await db_scores.upsert(conn, user_id, score.day, score.domain, score.value, score.contributors)
            for alert in clinical.evaluate(user_id, readings):
                alert_id = await alerts.insert(conn, alert)
                if alert_id is not None:
                    new_ids.append(alert_id)
            await sync_runs.mark_analysed(conn, run_id)
    for score in found:
        log.info("score user %s %s %s: %g", user_id, score.domain, score.day, score.value)
    if new_ids:
        log.info("user %s: %d new alert(s) %s", user_id, len(new_ids), new_ids)
    return AnalysisOutcome(run_id, user_id, tuple(new_ids), tuple(found))
