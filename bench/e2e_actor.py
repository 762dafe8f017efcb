"""The end-to-end bench's ceiling: the pipeline's chain with a trivial scorer in place of analytics.

``dramatiq pipeline.worker bench.e2e_actor --queues …`` loads these beside the real actors.  They
are declared on ``runtime.DECLARED`` and bound to the broker like the pipeline's own, so they go
through the same Redis, worker processes, queues, pools and database:

* ``ceiling_sync`` (queue ``sync``) runs the real ``pipeline.sync.run_sync``, then hands over to
  ``ceiling_analyse`` instead of ``analyse``, through the same 50 ms buffer
  (``triggers.analyse_soon``);
* ``ceiling_analyse`` (queue ``analytics``) makes ``analyse_waiting``'s database round trips: it
  locks the runs and the others waiting for analysis (``sync_runs.lock_unanalysed``), reads their
  rows and their users' 90 days (``db.analytics.readings``), then writes in one transaction the
  daily stats of each window, the correlations (replaced by none), one score per domain,
  ``score.updated``, one alert per anomalous reading, and marks the runs analysed; then the real
  ``notify`` and ``dispatch_pending``.

What it leaves out is the maths: no aggregates, correlations, score formulas or detectors.  Its
"detector" flags today's readings above a fixed line, which the bench's injected anomaly crosses.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import dramatiq

from db import alerts, events, sync_runs
from db import analytics as stored
from db import scores as db_scores
from db.alerts import NewAlert
from pipeline import runtime
from pipeline.actors import ANALYSE_BATCH, dispatch_pending, notify
from pipeline.analytics.analysis import CORRELATION_DAYS
from pipeline.sync import run_sync
from pipeline.triggers import analyse_soon

# The domains a user of the simulator's daily metrics gets a score in (no CGM: no glycemic).
DOMAINS = ("sleep", "activity", "cardio", "recovery", "overall")
# The trivial detector: a reading at or above its line is an alert.
LINES = {"resting_heart_rate": 100.0, "body_temperature": 38.0}
_RUNS = (
    "SELECT r.id, r.window_start, r.window_end, c.user_id, u.tenant_id"
    " FROM sync_runs r JOIN connections c ON c.id = r.connection_id JOIN users u ON u.id = c.user_id"
    " WHERE r.id = ANY($1::bigint[])"
)


@dramatiq.actor(broker=runtime.DECLARED, queue_name="sync", max_retries=0)
async def ceiling_sync(run_id: int) -> None:
    rt = runtime.current()
    outcome = await run_sync(await runtime.pool(), rt.keyring, rt.settings, run_id)
    if outcome is not None and outcome.status == "completed":
        analyse_soon(run_id, ceiling_analyse, ceiling_analyse_many)


@dramatiq.actor(broker=runtime.DECLARED, queue_name="analytics", max_retries=0)
async def ceiling_analyse(run_id: int) -> None:
    await _ceiling_analyse([run_id])


@dramatiq.actor(broker=runtime.DECLARED, queue_name="analytics", max_retries=0)
async def ceiling_analyse_many(run_ids: list[int]) -> None:
    await _ceiling_analyse(run_ids)


async def _ceiling_analyse(run_ids: list[int]) -> None:
    pool = await runtime.pool()
    async with pool.acquire() as conn, conn.transaction():
        # The batch ``analyse_waiting`` takes: the runs and others waiting, locked.
        locked = await sync_runs.lock_unanalysed(conn, run_ids, max(ANALYSE_BATCH, len(run_ids)))
        if not locked:
            return
        runs = await conn.fetch(_RUNS, locked)
        since = {run["user_id"]: run["window_end"] - timedelta(days=CORRELATION_DAYS + 1) for run in runs}
        found = await stored.readings(conn, since)
        stats, scores, updated, flagged = [], [], [], []
        for run in runs:
            user_id, readings = run["user_id"], found[run["user_id"]]
            # The bench's users live in UTC: a reading's day is its UTC date.
            day = run["window_end"].astimezone(UTC).date()
            start = run["window_start"].timestamp()
            for metric, seconds, value in zip(readings.metric, readings.seconds, readings.values, strict=True):
                if seconds < start:
                    continue
                name, value = readings.names[metric], float(value)
                reading_day = datetime.fromtimestamp(float(seconds), UTC).date()
                stats.append((user_id, name, reading_day, value, value, value, 1, value, value))
                line = LINES.get(name)
                if line is not None and value >= line:
                    flagged.append(_alert(user_id, name, reading_day, value, line))
            scores += [(user_id, day, domain, 50.0, {}) for domain in DOMAINS]
            data = {"user_id": user_id, "sync_run_id": run["id"], "day": day.isoformat(),
                    "scores": dict.fromkeys(DOMAINS, 50)}  # fmt: skip
            updated.append((run["tenant_id"], events.SCORE_UPDATED, data))
        async with conn.transaction():
            await stored.upsert_daily_stats_many(conn, stats)
            await stored.replace_correlations_many(conn, [run["user_id"] for run in runs], [])
            await db_scores.upsert_many(conn, scores)
            await events.publish_many(conn, updated)
            new_ids = [alert_id for alert_id in await alerts.insert_many(conn, flagged) if alert_id is not None]
            await sync_runs.mark_analysed_many(conn, locked)
    for alert_id in new_ids:
        notify.send(alert_id)
    await dispatch_pending(pool)


def _alert(user_id: int, metric: str, day: date, value: float, line: float) -> NewAlert:
    return NewAlert(
        user_id=user_id,
        category="clinical",
        severity="warning",
        metric=metric,
        title=f"{metric} high",
        body=f"{metric} {value:g} is at or above {line:g} (ceiling rule)",
        observed_value=value,
        threshold=line,
        recorded_at=datetime.combine(day, time(0), tzinfo=UTC),
        dedupe_key=f"ceiling:{user_id}:{metric}:{day.isoformat()}",
        rule="ceiling",
        rule_version=1,
    )


runtime.bind_actors()
